//! Storage pool and volume commands (tools/virsh-pool.c, virsh-volume.c).

use virtmesh_proto::v1::{self, StoragePoolState, StoragePoolSummary, StorageVolType};

use super::cli::PoolListArgs;
use super::network::sort_by_name;
use super::table::Table;
use super::util::{capacity_2, read_file, yes_no};
use super::{CmdError, CmdResult, Ctl};
use crate::connection::collect;
use crate::lookup::by_uuid;

/// virsh's pool state words (pool-info, pool-list --details).
pub fn pool_state_str(state: i32) -> &'static str {
    match StoragePoolState::try_from(state) {
        Ok(StoragePoolState::StoragePoolInactive) => "inactive",
        Ok(StoragePoolState::StoragePoolBuilding) => "building",
        Ok(StoragePoolState::StoragePoolRunning) => "running",
        Ok(StoragePoolState::StoragePoolDegraded) => "degraded",
        Ok(StoragePoolState::StoragePoolInaccessible) => "inaccessible",
        Err(_) => "unknown",
    }
}

fn has_sizes(state: i32) -> bool {
    state == StoragePoolState::StoragePoolRunning as i32
        || state == StoragePoolState::StoragePoolDegraded as i32
}

/// virshStorageVolTypeToString.
pub fn vol_type_str(t: i32) -> &'static str {
    match StorageVolType::try_from(t) {
        Ok(StorageVolType::StorageVolFile) => "file",
        Ok(StorageVolType::StorageVolBlock) => "block",
        Ok(StorageVolType::StorageVolDir) => "dir",
        Ok(StorageVolType::StorageVolNetwork) => "network",
        Ok(StorageVolType::StorageVolNetdir) => "netdir",
        Ok(StorageVolType::StorageVolPloop) => "ploop",
        Err(_) => "unknown",
    }
}

pub fn pool_list_filter(a: &PoolListArgs) -> v1::ListFilter {
    let (active, inactive) = if a.all {
        (true, true)
    } else if a.inactive {
        (false, true)
    } else {
        (true, false)
    };
    v1::ListFilter {
        active,
        inactive,
        persistent: a.persistent,
        transient: a.transient,
        autostart: a.autostart,
        no_autostart: a.no_autostart,
    }
}

/// `pool-list` (plain, `--name`, `--uuid`).
pub fn pool_list_text(pools: &[StoragePoolSummary], a: &PoolListArgs, header: bool) -> String {
    if a.name || a.uuid {
        let mut s = String::new();
        for p in pools {
            let mut parts = Vec::new();
            if a.uuid {
                parts.push(p.uuid.as_str());
            }
            if a.name {
                parts.push(p.name.as_str());
            }
            s.push_str(&parts.join(" "));
            s.push('\n');
        }
        return s;
    }
    let mut t = Table::new(&["Name", "State", "Autostart"]);
    for p in pools {
        t.push([
            p.name.as_str(),
            if p.active { "active" } else { "inactive" },
            yes_no(p.autostart),
        ]);
    }
    t.render(header)
}

/// `pool-list --details`, from each pool's info.
pub fn pool_details_text(
    pools: &[(StoragePoolSummary, Option<v1::StoragePoolInfo>)],
    header: bool,
) -> String {
    let mut t = Table::new(&[
        "Name",
        "State",
        "Autostart",
        "Persistent",
        "Capacity",
        "Allocation",
        "Available",
    ]);
    for (p, info) in pools {
        let (state, cap, alloc, avail) = match info {
            Some(i) if has_sizes(i.state) => (
                pool_state_str(i.state),
                capacity_2(i.capacity),
                capacity_2(i.allocation),
                capacity_2(i.available),
            ),
            Some(i) => (
                pool_state_str(i.state),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
            ),
            // virsh keeps listing when one pool's info fails.
            None => (
                "unknown",
                "unknown".to_owned(),
                "unknown".to_owned(),
                "unknown".to_owned(),
            ),
        };
        t.push([
            p.name.clone(),
            state.to_owned(),
            yes_no(p.autostart).to_owned(),
            yes_no(p.persistent).to_owned(),
            cap,
            alloc,
            avail,
        ]);
    }
    t.render(header)
}

/// `pool-info`: sizes only for a running (or degraded) pool.
pub fn pool_info_text(i: &v1::StoragePoolInfo) -> String {
    let mut s = String::new();
    let mut line = |label: &str, value: &str| s.push_str(&format!("{label:<15} {value}\n"));
    line("Name:", &i.name);
    line("UUID:", &i.uuid);
    line("State:", pool_state_str(i.state));
    line("Persistent:", yes_no(i.persistent));
    line("Autostart:", yes_no(i.autostart));
    if has_sizes(i.state) {
        line("Capacity:", &capacity_2(i.capacity));
        line("Allocation:", &capacity_2(i.allocation));
        line("Available:", &capacity_2(i.available));
    }
    s
}

/// `vol-list`, plain or `--details` (then with each volume's info).
pub fn vol_list_text(
    vols: &[(v1::StorageVolSummary, Option<v1::StorageVolInfo>)],
    details: bool,
    header: bool,
) -> String {
    if !details {
        let mut t = Table::new(&["Name", "Path"]);
        for (v, _) in vols {
            t.push([v.name.as_str(), v.path.as_str()]);
        }
        return t.render(header);
    }
    let mut t = Table::new(&["Name", "Path", "Type", "Capacity", "Allocation"]);
    for (v, info) in vols {
        let (ty, cap, alloc) = match info {
            Some(i) => (
                vol_type_str(i.r#type).to_owned(),
                capacity_2(i.capacity),
                capacity_2(i.allocation),
            ),
            None => (
                "unknown".to_owned(),
                "unknown".to_owned(),
                "unknown".to_owned(),
            ),
        };
        t.push([v.name.clone(), v.path.clone(), ty, cap, alloc]);
    }
    t.render(header)
}

/// `vol-info`.
pub fn vol_info_text(i: &v1::StorageVolInfo) -> String {
    let mut s = String::new();
    let mut line = |label: &str, value: &str| s.push_str(&format!("{label:<15} {value}\n"));
    line("Name:", &i.name);
    line("Type:", vol_type_str(i.r#type));
    line("Capacity:", &capacity_2(i.capacity));
    line("Allocation:", &capacity_2(i.allocation));
    s
}

pub async fn lookup_pool(ctl: &Ctl, key: &str) -> Result<StoragePoolSummary, CmdError> {
    ctl.conn
        .lookup_pool(key)
        .await
        .map_err(|e| CmdError::ctx(format!("failed to get pool '{key}'"), e))
}

pub async fn pool_uuid(ctl: &Ctl, key: &str) -> CmdResult {
    let p = lookup_pool(ctl, key).await?;
    ctl.print(&format!("{}\n", p.uuid));
    Ok(())
}

pub async fn pool_name(ctl: &Ctl, key: &str) -> CmdResult {
    let p = lookup_pool(ctl, key).await?;
    ctl.print(&format!("{}\n", p.name));
    Ok(())
}

pub async fn pool_build(ctl: &Ctl, key: &str) -> CmdResult {
    let p = lookup_pool(ctl, key).await?;
    ctl.conn
        .storage_pool()
        .build(by_uuid(p.uuid.clone()))
        .await
        .map_err(|e| CmdError::ctx(format!("Failed to build pool {key}"), crate::Error::from(e)))?;
    ctl.extra(&format!("Pool {key} built\n"));
    Ok(())
}

pub async fn pool_delete(ctl: &Ctl, key: &str) -> CmdResult {
    let p = lookup_pool(ctl, key).await?;
    ctl.conn
        .storage_pool()
        .delete(by_uuid(p.uuid.clone()))
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to delete pool {key}"),
                crate::Error::from(e),
            )
        })?;
    ctl.extra(&format!("Pool {key} deleted\n"));
    Ok(())
}

/// Which field of a volume `vol-path`, `vol-name`, `vol-key` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolField {
    Path,
    Name,
    Key,
}

pub async fn vol_field(ctl: &Ctl, pool: Option<&str>, vol: &str, field: VolField) -> CmdResult {
    let v = lookup_vol(ctl, pool, vol).await?;
    let value = match field {
        VolField::Path => v.path,
        VolField::Name => v.name,
        VolField::Key => v.key,
    };
    ctl.print(&format!("{value}\n"));
    Ok(())
}

/// `vol-pool VOL [--uuid]`: the pool holding a volume.
pub async fn vol_pool(ctl: &Ctl, vol: &str, uuid: bool) -> CmdResult {
    let v = lookup_vol(ctl, None, vol).await?;
    let p = lookup_pool(ctl, &v.pool).await?;
    ctl.print(&format!("{}\n", if uuid { p.uuid } else { p.name }));
    Ok(())
}

pub async fn pool_list(ctl: &Ctl, a: &PoolListArgs) -> CmdResult {
    let resp = ctl
        .conn
        .storage_pool()
        .list(pool_list_filter(a))
        .await
        .map_err(|e| CmdError::ctx("Failed to list pools", crate::Error::from(e)))?;
    let mut pools = collect(resp)
        .await
        .map_err(|e| CmdError::ctx("Failed to list pools", e))?;
    sort_by_name(&mut pools, |p| &p.name);
    if !a.details {
        ctl.print(&pool_list_text(&pools, a, !ctl.quiet));
        return Ok(());
    }
    let mut rows = Vec::with_capacity(pools.len());
    let mut c = ctl.conn.storage_pool();
    for p in pools {
        let info = match c.get_info(by_uuid(p.uuid.clone())).await {
            Ok(r) => Some(r.into_inner()),
            Err(_) => {
                ctl.error_now("Could not retrieve pool information");
                None
            }
        };
        rows.push((p, info));
    }
    ctl.print(&pool_details_text(&rows, !ctl.quiet));
    Ok(())
}

/// pool-define (`transient == false`) and pool-create.
pub async fn pool_define(ctl: &Ctl, file: &str, validate: bool, transient: bool) -> CmdResult {
    let xml = read_file(file).map_err(CmdError::msg)?;
    let req = v1::DefineXmlRequest { xml, validate };
    let mut c = ctl.conn.storage_pool();
    let (res, verb) = if transient {
        (c.create_xml(req).await, "create")
    } else {
        (c.define_xml(req).await, "define")
    };
    let p = res
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to {verb} pool from {file}"),
                crate::Error::from(e),
            )
        })?
        .into_inner();
    ctl.extra(&format!("Pool {} {verb}d from {file}\n", p.name));
    Ok(())
}

pub async fn pool_start(ctl: &Ctl, key: &str) -> CmdResult {
    let p = lookup_pool(ctl, key).await?;
    ctl.conn
        .storage_pool()
        .create(by_uuid(p.uuid.clone()))
        .await
        .map_err(|e| CmdError::ctx(format!("Failed to start pool {key}"), crate::Error::from(e)))?;
    ctl.extra(&format!("Pool {key} started\n"));
    Ok(())
}

pub async fn pool_destroy(ctl: &Ctl, key: &str) -> CmdResult {
    let p = lookup_pool(ctl, key).await?;
    ctl.conn
        .storage_pool()
        .destroy(by_uuid(p.uuid.clone()))
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to destroy pool {key}"),
                crate::Error::from(e),
            )
        })?;
    ctl.extra(&format!("Pool {key} destroyed\n"));
    Ok(())
}

pub async fn pool_undefine(ctl: &Ctl, key: &str) -> CmdResult {
    let p = lookup_pool(ctl, key).await?;
    ctl.conn
        .storage_pool()
        .undefine(by_uuid(p.uuid.clone()))
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to undefine pool {key}"),
                crate::Error::from(e),
            )
        })?;
    ctl.extra(&format!("Pool {key} has been undefined\n"));
    Ok(())
}

pub async fn pool_refresh(ctl: &Ctl, key: &str) -> CmdResult {
    let p = lookup_pool(ctl, key).await?;
    ctl.conn
        .storage_pool()
        .refresh(by_uuid(p.uuid.clone()))
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to refresh pool {key}"),
                crate::Error::from(e),
            )
        })?;
    ctl.extra(&format!("Pool {key} refreshed\n"));
    Ok(())
}

pub async fn pool_dumpxml(ctl: &Ctl, key: &str, inactive: bool) -> CmdResult {
    let p = lookup_pool(ctl, key).await?;
    let req = v1::GetXmlDescRequest {
        object: Some(by_uuid(p.uuid.clone())),
        inactive,
        ..Default::default()
    };
    let xml = ctl
        .conn
        .storage_pool()
        .get_xml_desc(req)
        .await
        .map_err(crate::Error::from)?
        .into_inner()
        .xml;
    ctl.print(&xml);
    Ok(())
}

pub async fn pool_info(ctl: &Ctl, key: &str) -> CmdResult {
    let p = lookup_pool(ctl, key).await?;
    let i = ctl
        .conn
        .storage_pool()
        .get_info(by_uuid(p.uuid.clone()))
        .await
        .map_err(crate::Error::from)?
        .into_inner();
    ctl.print(&pool_info_text(&i));
    Ok(())
}

pub async fn pool_autostart(ctl: &Ctl, key: &str, disable: bool) -> CmdResult {
    let p = lookup_pool(ctl, key).await?;
    let req = v1::SetAutostartRequest {
        object: Some(by_uuid(p.uuid.clone())),
        autostart: !disable,
    };
    ctl.conn
        .storage_pool()
        .set_autostart(req)
        .await
        .map_err(|e| {
            let line = if disable {
                format!("failed to unmark pool {key} as autostarted")
            } else {
                format!("failed to mark pool {key} as autostarted")
            };
            CmdError::ctx(line, crate::Error::from(e))
        })?;
    if disable {
        ctl.extra(&format!("Pool {key} unmarked as autostarted\n"));
    } else {
        ctl.extra(&format!("Pool {key} marked as autostarted\n"));
    }
    Ok(())
}

pub async fn vol_list(ctl: &Ctl, pool: &str, details: bool) -> CmdResult {
    let p = lookup_pool(ctl, pool).await?;
    let resp = ctl
        .conn
        .storage_vol()
        .list(by_uuid(p.uuid.clone()))
        .await
        .map_err(|e| CmdError::ctx("Failed to list storage volumes", crate::Error::from(e)))?;
    let mut vols = collect(resp)
        .await
        .map_err(|e| CmdError::ctx("Failed to list storage volumes", e))?;
    sort_by_name(&mut vols, |v| &v.name);
    let mut rows = Vec::with_capacity(vols.len());
    let mut c = ctl.conn.storage_vol();
    for v in vols {
        let info = if details {
            // virsh shows "unknown" cells for a volume whose info fails
            // rather than failing the whole listing.
            c.get_info(vol_ref_of(&v))
                .await
                .ok()
                .map(tonic::Response::into_inner)
        } else {
            None
        };
        rows.push((v, info));
    }
    ctl.print(&vol_list_text(&rows, details, !ctl.quiet));
    Ok(())
}

fn vol_ref_of(v: &v1::StorageVolSummary) -> v1::VolRef {
    let by = if !v.key.is_empty() {
        v1::vol_ref::By::Key(v.key.clone())
    } else if !v.path.is_empty() {
        v1::vol_ref::By::Path(v.path.clone())
    } else {
        v1::vol_ref::By::PoolAndName(v1::PoolVolName {
            pool: Some(crate::lookup::by_name(v.pool.clone())),
            name: v.name.clone(),
        })
    };
    v1::VolRef { by: Some(by) }
}

/// virshCommandOptVolBy: with `--pool`, the pool must exist first; the
/// volume's error line hints at `--pool` when none was given.
pub async fn lookup_vol(
    ctl: &Ctl,
    pool: Option<&str>,
    vol: &str,
) -> Result<v1::StorageVolSummary, CmdError> {
    let pool_ref = match pool {
        Some(p) => Some(by_uuid(lookup_pool(ctl, p).await?.uuid)),
        None => None,
    };
    ctl.conn
        .lookup_vol(pool_ref.as_ref(), vol)
        .await
        .map_err(|e| {
            let line = if pool.is_some() {
                format!("failed to get vol '{vol}'")
            } else {
                format!("failed to get vol '{vol}', specifying --pool might help")
            };
            CmdError::ctx(line, e)
        })
}

pub async fn vol_create(
    ctl: &Ctl,
    pool: &str,
    file: &str,
    prealloc_metadata: bool,
    validate: bool,
) -> CmdResult {
    let p = lookup_pool(ctl, pool).await?;
    let xml = read_file(file).map_err(CmdError::msg)?;
    let req = v1::VolCreateRequest {
        pool: Some(by_uuid(p.uuid.clone())),
        xml,
        prealloc_metadata,
        validate,
    };
    let v = ctl
        .conn
        .storage_vol()
        .create_xml(req)
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to create vol from {file}"),
                crate::Error::from(e),
            )
        })?
        .into_inner();
    ctl.extra(&format!("Vol {} created from {file}\n", v.name));
    Ok(())
}

pub async fn vol_dumpxml(ctl: &Ctl, pool: Option<&str>, vol: &str) -> CmdResult {
    let v = lookup_vol(ctl, pool, vol).await?;
    let xml = ctl
        .conn
        .storage_vol()
        .get_xml_desc(vol_ref_of(&v))
        .await
        .map_err(crate::Error::from)?
        .into_inner()
        .xml;
    ctl.print(&xml);
    Ok(())
}

pub async fn vol_delete(ctl: &Ctl, pool: Option<&str>, vol: &str) -> CmdResult {
    let v = lookup_vol(ctl, pool, vol).await?;
    ctl.conn
        .storage_vol()
        .delete(vol_ref_of(&v))
        .await
        .map_err(|e| CmdError::ctx(format!("Failed to delete vol {vol}"), crate::Error::from(e)))?;
    ctl.extra(&format!("Vol {vol} deleted\n"));
    Ok(())
}

pub async fn vol_info(ctl: &Ctl, pool: Option<&str>, vol: &str) -> CmdResult {
    let v = lookup_vol(ctl, pool, vol).await?;
    let i = ctl
        .conn
        .storage_vol()
        .get_info(vol_ref_of(&v))
        .await
        .map_err(crate::Error::from)?
        .into_inner();
    ctl.print(&vol_info_text(&i));
    Ok(())
}

/// Size of the data messages of an upload: big enough to amortise the
/// per-message cost, well under gRPC's default 4 MiB message limit.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// `vol-upload VOL FILE`: stream a local file into a volume.
pub async fn vol_upload(
    ctl: &Ctl,
    pool: Option<&str>,
    vol: &str,
    file: &str,
    range: (u64, u64),
    sparse: bool,
) -> CmdResult {
    use tokio::io::AsyncReadExt;
    let v = lookup_vol(ctl, pool, vol).await?;
    let mut f = tokio::fs::File::open(file)
        .await
        .map_err(|e| CmdError::msg(format!("cannot read {file}: {}", super::util::strerror(&e))))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<v1::VolUploadChunk>(4);
    let start = v1::VolUploadChunk {
        msg: Some(v1::vol_upload_chunk::Msg::Start(v1::VolTransferStart {
            volume: Some(vol_ref_of(&v)),
            offset: range.0,
            length: range.1,
            sparse,
        })),
    };
    // The reader runs beside the call: the request stream is fed while the
    // server's progress replies are drained below.
    let path = file.to_owned();
    let reader = tokio::spawn(async move {
        if tx.send(start).await.is_err() {
            return Ok(());
        }
        let mut buf = vec![0u8; UPLOAD_CHUNK];
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            let chunk = v1::VolUploadChunk {
                msg: Some(v1::vol_upload_chunk::Msg::Data(buf[..n].to_vec())),
            };
            if tx.send(chunk).await.is_err() {
                // The call ended (failed); its error is reported below.
                return Ok(());
            }
        }
    });
    let fail = |e: crate::Error| CmdError::ctx(format!("cannot upload to volume {vol}"), e);
    let resp = ctl
        .conn
        .storage_vol()
        .upload(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| fail(crate::Error::from(e)))?;
    collect(resp).await.map_err(fail)?;
    match reader.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CmdError::msg(format!(
            "cannot read {path}: {}",
            super::util::strerror(&e)
        ))),
        Err(_) => Err(CmdError::msg(format!("cannot read {path}"))),
    }
}

/// `vol-download VOL FILE`: stream a volume into a local file.
pub async fn vol_download(
    ctl: &Ctl,
    pool: Option<&str>,
    vol: &str,
    file: &str,
    range: (u64, u64),
    sparse: bool,
) -> CmdResult {
    use tokio::io::AsyncWriteExt;
    let v = lookup_vol(ctl, pool, vol).await?;
    let req = v1::VolDownloadRequest {
        range: Some(v1::VolTransferStart {
            volume: Some(vol_ref_of(&v)),
            offset: range.0,
            length: range.1,
            sparse,
        }),
    };
    let fail = |e: crate::Error| CmdError::ctx(format!("cannot download from volume {vol}"), e);
    let mut stream = ctl
        .conn
        .storage_vol()
        .download(req)
        .await
        .map_err(|e| fail(crate::Error::from(e)))?
        .into_inner();
    let write_err = |e: std::io::Error| {
        CmdError::msg(format!(
            "cannot create {file}: {}",
            super::util::strerror(&e)
        ))
    };
    // Like virsh, a file this command created is removed again when the
    // download fails; an existing one is truncated and left.
    let created = !std::path::Path::new(file).exists();
    let mut out = tokio::fs::File::create(file).await.map_err(write_err)?;
    let copied = async {
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|e| fail(crate::Error::from(e)))?
        {
            out.write_all(&chunk.data).await.map_err(write_err)?;
        }
        out.flush().await.map_err(write_err)
    }
    .await;
    if copied.is_err() && created {
        let _ = tokio::fs::remove_file(file).await;
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool_info(name: &str, state: StoragePoolState) -> v1::StoragePoolInfo {
        v1::StoragePoolInfo {
            uuid: "dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566".into(),
            name: name.into(),
            state: state as i32,
            capacity: 107_374_182_400,
            allocation: 0,
            available: 107_374_182_400,
            persistent: true,
            autostart: false,
        }
    }

    #[test]
    fn pool_list_matches_virsh() {
        let pools = [
            StoragePoolSummary {
                uuid: String::new(),
                name: "default-pool".into(),
                active: true,
                persistent: true,
                autostart: false,
            },
            StoragePoolSummary {
                uuid: String::new(),
                name: "pool1".into(),
                active: false,
                persistent: true,
                autostart: false,
            },
        ];
        // virsh -c test:///default "pool-define p.xml; pool-list --all"
        assert_eq!(
            pool_list_text(&pools, &PoolListArgs::default(), true),
            " Name           State      Autostart\n\
             --------------------------------------\n \
             default-pool   active     no\n \
             pool1          inactive   no\n"
        );
    }

    #[test]
    fn pool_details_match_virsh() {
        let summary = |name: &str, active: bool| StoragePoolSummary {
            uuid: String::new(),
            name: name.into(),
            active,
            persistent: true,
            autostart: false,
        };
        let rows = [
            (
                summary("default-pool", true),
                Some(pool_info(
                    "default-pool",
                    StoragePoolState::StoragePoolRunning,
                )),
            ),
            (
                summary("pool1", false),
                Some(pool_info("pool1", StoragePoolState::StoragePoolInactive)),
            ),
        ];
        // virsh -c test:///default "pool-define p.xml; pool-list --all --details"
        assert_eq!(
            pool_details_text(&rows, true),
            " Name           State      Autostart   Persistent   Capacity     Allocation   Available\n\
             ------------------------------------------------------------------------------------------\n \
             default-pool   running    no          yes          100.00 GiB   0.00 B       100.00 GiB\n \
             pool1          inactive   no          yes          -            -            -\n"
        );
        let broken = [(summary("p", true), None)];
        assert!(pool_details_text(&broken, false).contains(" p   unknown   no   yes   unknown"));
    }

    #[test]
    fn pool_info_matches_virsh() {
        // `virsh -c test:///default pool-info default-pool`
        assert_eq!(
            pool_info_text(&pool_info(
                "default-pool",
                StoragePoolState::StoragePoolRunning
            )),
            "Name:           default-pool\n\
             UUID:           dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566\n\
             State:          running\n\
             Persistent:     yes\n\
             Autostart:      no\n\
             Capacity:       100.00 GiB\n\
             Allocation:     0.00 B\n\
             Available:      100.00 GiB\n"
        );
        let inactive = pool_info_text(&pool_info("pool1", StoragePoolState::StoragePoolInactive));
        assert!(
            inactive
                .ends_with("State:          inactive\nPersistent:     yes\nAutostart:      no\n")
        );
    }

    #[test]
    fn vol_list_matches_virsh() {
        let v = v1::StorageVolSummary {
            pool: "pool1".into(),
            name: "vol1.img".into(),
            key: "/tmp/pool1/vol1.img".into(),
            path: "/tmp/pool1/vol1.img".into(),
        };
        let info = v1::StorageVolInfo {
            r#type: StorageVolType::StorageVolFile as i32,
            capacity: 1_073_741_824,
            allocation: 1_073_741_824,
            name: "vol1.img".into(),
            path: "/tmp/pool1/vol1.img".into(),
        };
        let rows = vec![(v, Some(info))];
        assert_eq!(
            vol_list_text(&rows, false, true),
            " Name       Path\n---------------------------------\n vol1.img   /tmp/pool1/vol1.img\n"
        );
        assert_eq!(
            vol_list_text(&rows, true, true),
            " Name       Path                  Type   Capacity   Allocation\n\
             ----------------------------------------------------------------\n \
             vol1.img   /tmp/pool1/vol1.img   file   1.00 GiB   1.00 GiB\n"
        );
        // An empty pool still prints the header (vol-list default-pool).
        assert_eq!(
            vol_list_text(&[], false, true),
            " Name   Path\n--------------\n"
        );
        assert_eq!(
            vol_list_text(&[], true, true),
            " Name   Path   Type   Capacity   Allocation\n---------------------------------------------\n"
        );
    }
}
