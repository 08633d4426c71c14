//! StoragePool and StorageVol: dir pools with volumes held in memory
//! (key and path = target path + "/" + name), as libvirt's test driver.

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use virtmesh_conf::storage::{PoolDef, VolDef};
use virtmesh_proto::v1::{
    self as pb, StoragePoolEventType as Ev, StoragePoolState, StorageVolType, event::Kind,
    object_ref::Key, storage_pool_server::StoragePool, storage_vol_server::StorageVol, vol_ref::By,
    vol_upload_chunk::Msg,
};
use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

use crate::err::{self, VResult};
use crate::host::{Host, PoolObj, State, VolObj};
use crate::{BoxStream, TestDriver, events};

/// Transfer chunk size for downloads.
const CHUNK: usize = 256 * 1024;

/// Volume contents are kept in memory; writes past this offset are
/// refused rather than letting one upload exhaust the service's memory.
pub const MAX_IN_MEMORY: u64 = 1 << 30;

fn conf_err(e: virtmesh_conf::ConfError) -> VirtError {
    err::conf(e, ErrorDomain::Storage)
}

pub fn find_pool(st: &State, r: Option<&pb::ObjectRef>) -> VResult<usize> {
    let key = r
        .and_then(|r| r.key.as_ref())
        .ok_or_else(|| err::missing("pool"))?;
    let found = match key {
        Key::Name(n) => st.pools.iter().position(|p| p.def.name == *n),
        Key::Uuid(u) => st.pools.iter().position(|p| crate::uuid_eq(&p.def.uuid, u)),
        Key::Id(_) => None,
    };
    found.ok_or_else(|| {
        let detail = match key {
            Key::Name(n) => format!("no storage pool with matching name '{n}'"),
            Key::Uuid(u) => format!("no storage pool with matching uuid '{u}'"),
            Key::Id(id) => format!("no storage pool with matching id {id}"),
        };
        err::not_found(ErrorCode::NoStoragePool, detail)
    })
}

fn not_active(p: &PoolObj) -> VirtError {
    err::op_invalid(format!("storage pool '{}' is not active", p.def.name))
}

fn already_active(p: &PoolObj) -> VirtError {
    err::op_invalid(format!("storage pool '{}' is active", p.def.name))
}

/// (pool index, volume index) of a volume reference.
fn find_vol(st: &State, r: Option<&pb::VolRef>) -> VResult<(usize, usize)> {
    let by = r
        .and_then(|r| r.by.as_ref())
        .ok_or_else(|| err::missing("volume"))?;
    match by {
        By::PoolAndName(pn) => {
            let pi = find_pool(st, pn.pool.as_ref())?;
            let p = &st.pools[pi];
            if !p.active {
                return Err(not_active(p));
            }
            let vi = p
                .vols
                .iter()
                .position(|v| v.def.name == pn.name)
                .ok_or_else(|| {
                    err::not_found(
                        ErrorCode::NoStorageVol,
                        format!("no storage vol with matching name '{}'", pn.name),
                    )
                })?;
            Ok((pi, vi))
        }
        By::Key(k) | By::Path(k) => {
            for (pi, p) in st.pools.iter().enumerate().filter(|(_, p)| p.active) {
                if let Some(vi) = p.vols.iter().position(|v| v.path == *k) {
                    return Ok((pi, vi));
                }
            }
            let what = if matches!(by, By::Key(_)) {
                "key"
            } else {
                "path"
            };
            Err(err::not_found(
                ErrorCode::NoStorageVol,
                format!("no storage vol with matching {what} '{k}'"),
            ))
        }
    }
}

fn emit(host: &Host, p: &PoolObj, ty: Ev) {
    host.emit(Kind::PoolLifecycle(pb::StoragePoolLifecycle {
        pool: events::object_id(&p.def.uuid, &p.def.name),
        r#type: ty as i32,
    }));
}

fn check_duplicates(st: &State, def: &PoolDef) -> VResult<Option<usize>> {
    if let Some(i) = st.pools.iter().position(|p| p.def.uuid == def.uuid) {
        let p = &st.pools[i];
        if p.def.name != def.name {
            return Err(err::op_failed(
                ErrorDomain::Storage,
                format!(
                    "pool '{}' is already defined with uuid {}",
                    p.def.name, p.def.uuid
                ),
            ));
        }
        return Ok(Some(i));
    }
    if let Some(p) = st.pools.iter().find(|p| p.def.name == def.name) {
        return Err(err::op_failed(
            ErrorDomain::Storage,
            format!(
                "pool '{}' already exists with uuid {}",
                p.def.name, p.def.uuid
            ),
        ));
    }
    Ok(None)
}

fn define(host: &Host, r: pb::DefineXmlRequest) -> VResult<pb::StoragePoolSummary> {
    let def = PoolDef::parse(&r.xml).map_err(conf_err)?;
    let mut st = host.lock();
    let idx = match check_duplicates(&st, &def)? {
        Some(i) => {
            st.pools[i].def = def;
            st.pools[i].persistent = true;
            i
        }
        None => {
            st.pools.push(PoolObj::new(def));
            st.pools.len() - 1
        }
    };
    emit(host, &st.pools[idx], Ev::StoragePoolEventDefined);
    Ok(st.pools[idx].summary())
}

fn create_xml(host: &Host, r: pb::DefineXmlRequest) -> VResult<pb::StoragePoolSummary> {
    let def = PoolDef::parse(&r.xml).map_err(conf_err)?;
    let mut st = host.lock();
    if let Some(i) = check_duplicates(&st, &def)? {
        return Err(already_active(&st.pools[i]));
    }
    let mut pool = PoolObj::new(def);
    pool.active = true;
    pool.persistent = false;
    st.pools.push(pool);
    let p = &st.pools[st.pools.len() - 1];
    emit(host, p, Ev::StoragePoolEventStarted);
    Ok(p.summary())
}

fn pool_op(host: &Host, r: pb::ObjectRef, op: &str) -> VResult<()> {
    let mut st = host.lock();
    let idx = find_pool(&st, Some(&r))?;
    let p = &mut st.pools[idx];
    match op {
        "build" => {
            if p.active {
                return Err(already_active(p));
            }
        }
        "undefine" => {
            if p.active {
                return Err(err::op_invalid(format!(
                    "storage pool '{}' is still active",
                    p.def.name
                )));
            }
            emit(host, p, Ev::StoragePoolEventUndefined);
            st.pools.remove(idx);
        }
        "destroy" => {
            if !p.active {
                return Err(not_active(p));
            }
            p.active = false;
            emit(host, p, Ev::StoragePoolEventStopped);
            if !p.persistent {
                st.pools.remove(idx);
            }
        }
        "delete" => {
            if p.active {
                return Err(already_active(p));
            }
            emit(host, p, Ev::StoragePoolEventDeleted);
        }
        "refresh" => {
            if !p.active {
                return Err(not_active(p));
            }
            host.emit(Kind::PoolRefresh(pb::StoragePoolRefresh {
                pool: events::object_id(&p.def.uuid, &p.def.name),
            }));
        }
        _ => return Err(err::internal(format!("unknown pool operation {op}"))),
    }
    Ok(())
}

fn start(host: &Host, r: pb::ObjectRef) -> VResult<pb::StoragePoolSummary> {
    let mut st = host.lock();
    let idx = find_pool(&st, Some(&r))?;
    let p = &mut st.pools[idx];
    if p.active {
        return Err(already_active(p));
    }
    p.active = true;
    emit(host, p, Ev::StoragePoolEventStarted);
    Ok(p.summary())
}

fn with_pool<R>(
    host: &Host,
    r: Option<&pb::ObjectRef>,
    f: impl FnOnce(&PoolObj) -> VResult<R>,
) -> VResult<R> {
    let st = host.lock();
    let idx = find_pool(&st, r)?;
    f(&st.pools[idx])
}

fn list_pools(host: &Host, f: pb::ListFilter) -> VResult<Vec<pb::StoragePoolSummary>> {
    let pair = |a: bool, b: bool, v: bool| a == b || (a && v) || (b && !v);
    let st = host.lock();
    Ok(st
        .pools
        .iter()
        .filter(|p| {
            pair(f.active, f.inactive, p.active)
                && pair(f.persistent, f.transient, p.persistent)
                && pair(f.autostart, f.no_autostart, p.autostart)
        })
        .map(PoolObj::summary)
        .collect())
}

fn vol_summary(p: &PoolObj, v: &VolObj) -> pb::StorageVolSummary {
    pb::StorageVolSummary {
        pool: p.def.name.clone(),
        name: v.def.name.clone(),
        key: v.path.clone(),
        path: v.path.clone(),
    }
}

fn create_vol(
    host: &Host,
    pool: Option<&pb::ObjectRef>,
    xml: &str,
    clone_from: Option<&pb::VolRef>,
) -> VResult<pb::StorageVolSummary> {
    let mut def = VolDef::parse(xml).map_err(conf_err)?;
    let mut st = host.lock();
    let pi = find_pool(&st, pool)?;
    let data = match clone_from {
        Some(src) => {
            let (spi, svi) = find_vol(&st, Some(src))?;
            let src = &st.pools[spi].vols[svi];
            // A clone is at least as large as its source.
            def.capacity = def.capacity.max(src.def.capacity);
            src.data.clone()
        }
        None => Vec::new(),
    };
    let p = &mut st.pools[pi];
    if !p.active {
        return Err(not_active(p));
    }
    if p.vols.iter().any(|v| v.def.name == def.name) {
        return Err(err::op_failed(
            ErrorDomain::Storage,
            "storage vol already exists",
        ));
    }
    if p.allocation().saturating_add(def.allocation) > p.capacity {
        return Err(err::op_failed(
            ErrorDomain::Storage,
            format!("Not enough free space in pool for volume '{}'", def.name),
        ));
    }
    let path = format!("{}/{}", p.def.target_path(), def.name);
    p.vols.push(VolObj { def, path, data });
    let v = &p.vols[p.vols.len() - 1];
    Ok(vol_summary(p, v))
}

fn resize(host: &Host, r: pb::VolResizeRequest) -> VResult<()> {
    let mut st = host.lock();
    let (pi, vi) = find_vol(&st, r.volume.as_ref())?;
    let p = &mut st.pools[pi];
    let other_alloc = p.allocation() - p.vols[vi].def.allocation;
    let cap = p.capacity;
    let v = &mut p.vols[vi];
    let new_cap = if r.delta {
        v.def.capacity.saturating_add(r.capacity)
    } else {
        r.capacity
    };
    if new_cap < v.def.capacity && !r.shrink {
        return Err(err::invalid_arg(
            "Can't shrink capacity below current capacity unless shrink flag explicitly specified",
        ));
    }
    if new_cap < v.def.allocation {
        return Err(err::invalid_arg(
            "Can't shrink capacity below current allocation",
        ));
    }
    if r.allocate && other_alloc.saturating_add(new_cap) > cap {
        return Err(err::op_failed(
            ErrorDomain::Storage,
            "Not enough space left in storage pool",
        ));
    }
    v.def.capacity = new_cap;
    if r.allocate {
        v.def.allocation = new_cap;
    }
    v.data
        .truncate(usize::try_from(new_cap).unwrap_or(usize::MAX));
    Ok(())
}

#[tonic::async_trait]
impl StoragePool for TestDriver {
    type ListStream = BoxStream<pb::StoragePoolSummary>;

    async fn list(
        &self,
        request: Request<pb::ListFilter>,
    ) -> Result<Response<Self::ListStream>, Status> {
        self.call_stream(request, list_pools)
    }

    async fn lookup(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::StoragePoolSummary>, Status> {
        self.call(request, |h, r| with_pool(h, Some(&r), |p| Ok(p.summary())))
    }

    async fn lookup_by_volume(
        &self,
        request: Request<pb::VolRef>,
    ) -> Result<Response<pb::StoragePoolSummary>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            let (pi, _) = find_vol(&st, Some(&r))?;
            Ok(st.pools[pi].summary())
        })
    }

    async fn define_xml(
        &self,
        request: Request<pb::DefineXmlRequest>,
    ) -> Result<Response<pb::StoragePoolSummary>, Status> {
        self.call(request, define)
    }

    async fn create_xml(
        &self,
        request: Request<pb::DefineXmlRequest>,
    ) -> Result<Response<pb::StoragePoolSummary>, Status> {
        self.call(request, create_xml)
    }

    async fn build(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.call(request, |h, r| pool_op(h, r, "build"))
    }

    async fn undefine(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.call(request, |h, r| pool_op(h, r, "undefine"))
    }

    async fn create(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::StoragePoolSummary>, Status> {
        self.call(request, start)
    }

    async fn destroy(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.call(request, |h, r| pool_op(h, r, "destroy"))
    }

    async fn delete(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.call(request, |h, r| pool_op(h, r, "delete"))
    }

    async fn refresh(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.call(request, |h, r| pool_op(h, r, "refresh"))
    }

    async fn get_xml_desc(
        &self,
        request: Request<pb::GetXmlDescRequest>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        self.call(request, |h, r| {
            with_pool(h, r.object.as_ref(), |p| Ok(pb::XmlDoc { xml: p.xml() }))
        })
    }

    async fn get_info(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::StoragePoolInfo>, Status> {
        self.call(request, |h, r| {
            with_pool(h, Some(&r), |p| {
                let state = if p.active {
                    StoragePoolState::StoragePoolRunning
                } else {
                    StoragePoolState::StoragePoolInactive
                };
                Ok(pb::StoragePoolInfo {
                    uuid: p.def.uuid.clone(),
                    name: p.def.name.clone(),
                    state: state as i32,
                    capacity: p.capacity,
                    allocation: p.allocation(),
                    available: p.available(),
                    persistent: p.persistent,
                    autostart: p.autostart,
                })
            })
        })
    }

    async fn get_autostart(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::Autostart>, Status> {
        self.call(request, |h, r| {
            with_pool(h, Some(&r), |p| {
                Ok(pb::Autostart {
                    autostart: p.autostart,
                })
            })
        })
    }

    async fn set_autostart(
        &self,
        request: Request<pb::SetAutostartRequest>,
    ) -> Result<Response<()>, Status> {
        self.call(request, |h, r| {
            let mut st = h.lock();
            let idx = find_pool(&st, r.object.as_ref())?;
            let p = &mut st.pools[idx];
            if !p.persistent {
                return Err(err::op_invalid("cannot set autostart for transient pool"));
            }
            p.autostart = r.autostart;
            Ok(())
        })
    }

    async fn find_sources(
        &self,
        request: Request<pb::FindSourcesRequest>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        self.call(request, |_, r| match r.pool_type.as_str() {
            // testConnectFindStoragePoolSources' canned answers.
            "logical" => Ok(pb::XmlDoc {
                xml: "<sources>\n  <source>\n    <device path='/dev/sda20'/>\n    <name>testvg1</name>\n    <format type='lvm2'/>\n  </source>\n  <source>\n    <device path='/dev/sda21'/>\n    <name>testvg2</name>\n    <format type='lvm2'/>\n  </source>\n</sources>\n".into(),
            }),
            "dir" => Ok(pb::XmlDoc { xml: "<sources>\n</sources>\n".into() }),
            other => Err(err::unsupported(format!("pool type '{other}' does not support source discovery"))),
        })
    }
}

#[tonic::async_trait]
impl StorageVol for TestDriver {
    type ListStream = BoxStream<pb::StorageVolSummary>;
    type UploadStream = BoxStream<pb::Progress>;
    type DownloadStream = BoxStream<pb::VolDownloadChunk>;

    async fn list(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<Self::ListStream>, Status> {
        self.call_stream(request, |h, r| {
            with_pool(h, Some(&r), |p| {
                if !p.active {
                    return Err(err::op_invalid("storage pool is not active"));
                }
                Ok(p.vols.iter().map(|v| vol_summary(p, v)).collect())
            })
        })
    }

    async fn lookup(
        &self,
        request: Request<pb::VolRef>,
    ) -> Result<Response<pb::StorageVolSummary>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            let (pi, vi) = find_vol(&st, Some(&r))?;
            Ok(vol_summary(&st.pools[pi], &st.pools[pi].vols[vi]))
        })
    }

    async fn create_xml(
        &self,
        request: Request<pb::VolCreateRequest>,
    ) -> Result<Response<pb::StorageVolSummary>, Status> {
        self.call(request, |h, r| create_vol(h, r.pool.as_ref(), &r.xml, None))
    }

    async fn create_xml_from(
        &self,
        request: Request<pb::VolCreateFromRequest>,
    ) -> Result<Response<pb::StorageVolSummary>, Status> {
        self.call(request, |h, r| {
            let src = r
                .clone_from
                .as_ref()
                .ok_or_else(|| err::missing("clone_from"))?;
            create_vol(h, r.pool.as_ref(), &r.xml, Some(src))
        })
    }

    async fn delete(&self, request: Request<pb::VolRef>) -> Result<Response<()>, Status> {
        self.call(request, |h, r| {
            let mut st = h.lock();
            let (pi, vi) = find_vol(&st, Some(&r))?;
            st.pools[pi].vols.remove(vi);
            Ok(())
        })
    }

    async fn wipe(&self, request: Request<pb::VolRef>) -> Result<Response<()>, Status> {
        self.call(request, |h, r| {
            let mut st = h.lock();
            let (pi, vi) = find_vol(&st, Some(&r))?;
            st.pools[pi].vols[vi].data.clear();
            Ok(())
        })
    }

    async fn get_xml_desc(
        &self,
        request: Request<pb::VolRef>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            let (pi, vi) = find_vol(&st, Some(&r))?;
            let v = &st.pools[pi].vols[vi];
            Ok(pb::XmlDoc {
                xml: v.def.to_xml(&v.path),
            })
        })
    }

    async fn get_info(
        &self,
        request: Request<pb::VolRef>,
    ) -> Result<Response<pb::StorageVolInfo>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            let (pi, vi) = find_vol(&st, Some(&r))?;
            let v = &st.pools[pi].vols[vi];
            Ok(pb::StorageVolInfo {
                r#type: StorageVolType::StorageVolFile as i32,
                capacity: v.def.capacity,
                allocation: v.def.allocation,
                name: v.def.name.clone(),
                path: v.path.clone(),
            })
        })
    }

    async fn resize(&self, request: Request<pb::VolResizeRequest>) -> Result<Response<()>, Status> {
        self.call(request, resize)
    }

    async fn upload(
        &self,
        request: Request<Streaming<pb::VolUploadChunk>>,
    ) -> Result<Response<Self::UploadStream>, Status> {
        let host = self.host(&request)?;
        let mut input = request.into_inner();
        let start = match input.next().await {
            Some(Ok(pb::VolUploadChunk {
                msg: Some(Msg::Start(s)),
            })) => s,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(
                    err::invalid_arg("the first upload message must name the volume").into(),
                );
            }
        };
        let total = {
            let st = host.lock();
            let (pi, vi) = find_vol(&st, start.volume.as_ref())?;
            let cap = st.pools[pi].vols[vi].def.capacity;
            if start.offset > cap {
                return Err(err::invalid_arg(format!(
                    "offset {} is beyond the volume capacity {cap}",
                    start.offset
                ))
                .into());
            }

            if start.length == 0 {
                cap - start.offset
            } else {
                start.length.min(cap - start.offset)
            }
        };
        let (tx, rx) = mpsc::channel(16);
        // Bytes are written as they arrive; progress goes back per chunk.
        tokio::spawn(async move {
            let mut written: u64 = 0;
            while let Some(msg) = input.next().await {
                let data = match msg {
                    Ok(pb::VolUploadChunk {
                        msg: Some(Msg::Data(d)),
                    }) => d,
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let room = usize::try_from(total - written).unwrap_or(usize::MAX);
                if data.len() > room {
                    let _ = tx
                        .send(Err(err::invalid_arg(
                            "upload is larger than the requested length",
                        )
                        .into()))
                        .await;
                    return;
                }
                let end_offset = (start.offset + written).saturating_add(data.len() as u64);
                if end_offset > MAX_IN_MEMORY {
                    let _ = tx
                        .send(Err(err::unsupported(format!(
                            "the test driver keeps at most {MAX_IN_MEMORY} bytes of volume data in memory"
                        ))
                        .into()))
                        .await;
                    return;
                }
                let res = {
                    let mut st = host.lock();
                    find_vol(&st, start.volume.as_ref()).map(|(pi, vi)| {
                        let v = &mut st.pools[pi].vols[vi];
                        let off = usize::try_from(start.offset + written).unwrap_or(usize::MAX);
                        let end = off.saturating_add(data.len());
                        if v.data.len() < end {
                            v.data.resize(end, 0);
                        }
                        v.data[off..end].copy_from_slice(&data);
                    })
                };
                if let Err(e) = res {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
                written += data.len() as u64;
                let progress = pb::Progress {
                    processed_bytes: written,
                    total_bytes: total,
                };
                if tx.send(Ok(progress)).await.is_err() {
                    return;
                }
            }
            let _ = tx
                .send(Ok(pb::Progress {
                    processed_bytes: written,
                    total_bytes: total,
                }))
                .await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn download(
        &self,
        request: Request<pb::VolDownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let host = self.host(&request)?;
        let range = request.into_inner().range.unwrap_or_default();
        let total = {
            let st = host.lock();
            let (pi, vi) = find_vol(&st, range.volume.as_ref())?;
            let cap = st.pools[pi].vols[vi].def.capacity;
            if range.offset > cap {
                return Err(err::invalid_arg(format!(
                    "offset {} is beyond the volume capacity {cap}",
                    range.offset
                ))
                .into());
            }
            if range.length == 0 {
                cap - range.offset
            } else {
                range.length.min(cap - range.offset)
            }
        };
        let chunk = CHUNK as u64;
        let count = total.div_ceil(chunk);
        // Chunks are cut lazily so a large volume never sits in memory twice;
        // unwritten parts read as zeros, like a sparse file.
        let stream = tokio_stream::iter(0..count).map(move |i| {
            let done = i * chunk;
            let n = (total - done).min(chunk);
            let len = usize::try_from(n).unwrap_or(0);
            let start = usize::try_from(range.offset + done).unwrap_or(usize::MAX);
            let mut data = vec![0u8; len];
            let st = host.lock();
            let (pi, vi) = find_vol(&st, range.volume.as_ref())?;
            let stored = &st.pools[pi].vols[vi].data;
            if start < stored.len() {
                let end = start.saturating_add(len).min(stored.len());
                data[..end - start].copy_from_slice(&stored[start..end]);
            }
            Ok(pb::VolDownloadChunk {
                data,
                progress: Some(pb::Progress {
                    processed_bytes: done + n,
                    total_bytes: total,
                }),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
