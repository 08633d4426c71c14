//! Pool lifecycle (libvirt's storage_driver.c over the dir backend of
//! storage_backend_fs.c): define, build, start, refresh, destroy, delete,
//! undefine; recovery and autostart when the service starts.

use super::{BACKENDS, Live, Pool, StorageDriver, store_err};
use crate::error::{self as err, Result};
use crate::events::PoolEvents;
use crate::volume::{self, Vol};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use virtmesh_conf::storage::{Perms, PoolDef, PoolSizes, pool_type_number};
use virtmesh_proto::v1::{self as pb, StoragePoolEventType as Ev};
use virtmesh_rpc::VirtError;

/// libvirt's VIR_STORAGE_DEFAULT_POOL_PERM_MODE.
const DEFAULT_POOL_MODE: u32 = 0o711;

/// virStorageBackendForType: pool types without a backend cannot be
/// defined at all.
fn check_backend(def: &PoolDef) -> Result<()> {
    if BACKENDS.contains(&def.pool_type.as_str()) {
        return Ok(());
    }
    Err(err::internal(format!(
        "missing backend for pool type {} ({})",
        pool_type_number(&def.pool_type).unwrap_or(0),
        def.pool_type
    )))
}

/// Only directory pools run on the host.
fn check_runs(def: &PoolDef, what: &str) -> Result<()> {
    if def.pool_type == "dir" {
        return Ok(());
    }
    Err(unsupported_type(def, what))
}

fn unsupported_type(def: &PoolDef, what: &str) -> virtmesh_rpc::VirtError {
    err::no_support(format!(
        "{what} of '{}' pools is not implemented by the virtmesh storage driver (only 'dir' pools run)",
        def.pool_type
    ))
}

/// Building and deleting: for dir, fs and netfs pools without build flags
/// libvirt only makes or removes the target directory (mkfs needs the
/// overwrite flags, which the API here does not carry), so those run here
/// too.
fn check_directory_op(def: &PoolDef, what: &str) -> Result<()> {
    if matches!(def.pool_type.as_str(), "dir" | "fs" | "netfs") {
        return Ok(());
    }
    Err(unsupported_type(def, what))
}

/// virStorageBackendRefreshLocal: the volumes a directory holds and the
/// filesystem's sizes (statvfs), with the directory's own permissions.
async fn scan_dir(tool: Option<&Path>, def: &PoolDef) -> Result<Live> {
    let dir = def.target_path();
    let entries = std::fs::read_dir(&dir)
        .map_err(|e| err::system(format!("cannot open directory '{dir}'"), &e))?;
    let mut names: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    let mut vols: Vec<Vol> = Vec::new();
    for path in names {
        if let Some(v) = volume::probe(tool, &path).await {
            vols.push(v);
        }
    }
    let vfs = nix::sys::statvfs::statvfs(dir.as_str()).map_err(|e| {
        err::system(
            format!("cannot statvfs path '{dir}'"),
            &std::io::Error::from(e),
        )
    })?;
    let frsize = vfs.fragment_size();
    let capacity = frsize.saturating_mul(vfs.blocks());
    let available = frsize.saturating_mul(vfs.blocks_free());
    let m = std::fs::metadata(&dir)
        .map_err(|e| err::system(format!("cannot stat path '{dir}'"), &e))?;
    Ok(Live {
        def: def.clone(),
        sizes: PoolSizes {
            capacity,
            allocation: capacity.saturating_sub(available),
            available,
        },
        perms: Perms {
            mode: Some(m.mode() & 0o777),
            owner: Some(m.uid().into()),
            group: Some(m.gid().into()),
            // The directory's own security label would go here (libvirt
            // reads SELinux contexts); without one the live XML has none.
            label: None,
        },
        vols,
    })
}

impl StorageDriver {
    /// Parse and check against the other pools (virStoragePoolObjListAdd's
    /// rules: one UUID per name, one pool per directory).
    fn prepare(&self, xml: &str) -> Result<PoolDef> {
        let def = PoolDef::parse(xml).map_err(err::conf)?;
        if def.name.contains('\n') {
            return Err(err::storage(
                virtmesh_rpc::ErrorCode::XmlDetail,
                "invalid char in name: \n",
            ));
        }
        check_backend(&def)?;
        let pools = self.pools();
        if let Some(p) = pools.iter().find(|p| p.uuid == def.uuid)
            && p.name != def.name
        {
            return Err(err::operation_failed(format!(
                "pool '{}' is already defined with uuid {}",
                p.name, p.uuid
            )));
        }
        if let Some(p) = pools
            .iter()
            .find(|p| p.name == def.name && p.uuid != def.uuid)
        {
            return Err(err::operation_failed(format!(
                "pool '{}' already exists with uuid {}",
                p.name, p.uuid
            )));
        }
        if matches!(def.pool_type.as_str(), "dir" | "fs" | "netfs")
            && let Some(p) = pools.iter().find(|p| {
                p.uuid != def.uuid
                    && p.current().is_some_and(|d| {
                        d.pool_type == def.pool_type && d.target_path == def.target_path
                    })
            })
        {
            return Err(err::operation_failed(format!(
                "Storage source conflict with pool: '{}'",
                p.name
            )));
        }
        Ok(def)
    }

    pub async fn define_xml(&self, xml: &str) -> Result<pb::StoragePoolSummary> {
        let _job = self.inner.job.lock().await;
        let def = self.prepare(xml)?;
        self.inner
            .store
            .save_config(&def.name, &def.format(PoolSizes::default(), None))
            .map_err(store_err)?;
        let (uuid, name) = (def.uuid.clone(), def.name.clone());
        let updated = self.with_pool(&uuid, |p| {
            p.config = Some(def.clone());
            // A new definition has never been seen running.
            p.last_seen = None;
        });
        if updated.is_none() {
            self.pools().push(Pool {
                uuid: uuid.clone(),
                name: name.clone(),
                config: Some(def),
                live: None,
                autostart: false,
                last_seen: None,
            });
        }
        tracing::info!(pool = %name, "defined storage pool");
        self.inner
            .events
            .lifecycle(&uuid, &name, Ev::StoragePoolEventDefined);
        self.lookup_uuid(&uuid)
    }

    fn lookup_uuid(&self, uuid: &str) -> Result<pb::StoragePoolSummary> {
        self.lookup(Some(&pb::ObjectRef {
            key: Some(pb::object_ref::Key::Uuid(uuid.to_owned())),
        }))
    }

    /// virStoragePoolCreateXML: a transient pool, started.
    pub async fn create_xml(&self, xml: &str) -> Result<pb::StoragePoolSummary> {
        let _job = self.inner.job.lock().await;
        let def = self.prepare(xml)?;
        let known = self
            .pools()
            .iter()
            .find(|p| p.uuid == def.uuid)
            .map(|p| (p.name.clone(), p.live.is_some()));
        if let Some((name, true)) = &known {
            return Err(err::already_active(name));
        }
        check_runs(&def, "starting")?;
        let live = self.start_live(&def).await?;
        let (uuid, name) = (def.uuid.clone(), def.name.clone());
        if known.is_some() {
            // A defined, inactive pool starts with this definition as its
            // live one and stays persistent (virStoragePoolObjListAdd with
            // the LIVE flag).
            self.with_pool(&uuid, |p| p.live = Some(live));
        } else {
            self.pools().push(Pool {
                uuid: uuid.clone(),
                name: name.clone(),
                config: None,
                live: Some(live),
                autostart: false,
                last_seen: None,
            });
        }
        self.inner
            .events
            .lifecycle(&uuid, &name, Ev::StoragePoolEventStarted);
        self.lookup_uuid(&uuid)
    }

    /// Record the pool as active, then read its directory; the run file
    /// goes again if the directory cannot be read.
    async fn start_live(&self, def: &PoolDef) -> Result<Live> {
        self.inner
            .store
            .save_live(&def.name, &def.format(PoolSizes::default(), None))
            .map_err(store_err)?;
        match scan_dir(self.inner.qemu_img.as_deref(), def).await {
            Ok(live) => Ok(live),
            Err(e) => {
                let _ = crate::store::remove_file(&self.inner.store.live(&def.name));
                Err(e)
            }
        }
    }

    /// virStoragePoolBuild for a directory: the parents with default
    /// permissions, the directory with the pool's (0711 when new).
    pub async fn build(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let _job = self.inner.job.lock().await;
        let p = self.find(r)?;
        if p.live.is_some() {
            return Err(err::already_active(&p.name));
        }
        let def = p
            .current()
            .cloned()
            .ok_or_else(|| err::internal("storage pool has no definition"))?;
        check_directory_op(&def, "building")?;
        build_dir(&def)?;
        self.inner
            .events
            .lifecycle(&p.uuid, &p.name, Ev::StoragePoolEventCreated);
        Ok(())
    }

    pub async fn start(&self, r: Option<&pb::ObjectRef>) -> Result<pb::StoragePoolSummary> {
        let _job = self.inner.job.lock().await;
        let p = self.find(r)?;
        if p.live.is_some() {
            return Err(err::already_active(&p.name));
        }
        let def = p
            .config
            .clone()
            .ok_or_else(|| err::internal("storage pool has no definition"))?;
        check_runs(&def, "starting")?;
        let live = self.start_live(&def).await?;
        self.with_pool(&p.uuid, |x| x.live = Some(live));
        tracing::info!(pool = %p.name, "started storage pool");
        self.inner
            .events
            .lifecycle(&p.uuid, &p.name, Ev::StoragePoolEventStarted);
        self.lookup_uuid(&p.uuid)
    }

    pub async fn destroy(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let _job = self.inner.job.lock().await;
        let p = self.find(r)?;
        if p.live.is_none() {
            return Err(err::not_active(&p.name));
        }
        self.stop(&p)
    }

    /// Forget the active state (nothing to undo on the host for a
    /// directory); a transient pool is gone with it.
    fn stop(&self, p: &Pool) -> Result<()> {
        tracing::info!(pool = %p.name, "stopping storage pool");
        crate::store::remove_file(&self.inner.store.live(&p.name)).map_err(store_err)?;
        if p.config.is_none() {
            self.pools().retain(|x| x.uuid != p.uuid);
        } else {
            self.with_pool(&p.uuid, |x| {
                // libvirt's def keeps what the last refresh wrote into it,
                // unless a new definition waits (then that one takes over).
                x.last_seen = match (&x.live, &x.config) {
                    (Some(l), Some(cfg)) if *cfg == l.def => Some((l.sizes, l.perms.clone())),
                    _ => None,
                };
                x.live = None;
            });
        }
        self.inner
            .events
            .lifecycle(&p.uuid, &p.name, Ev::StoragePoolEventStopped);
        Ok(())
    }

    pub async fn undefine(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let _job = self.inner.job.lock().await;
        let p = self.find(r)?;
        if p.live.is_some() {
            return Err(err::still_active(&p.name));
        }
        if p.config.is_none() {
            return Err(err::invalid_op(format!(
                "storage pool '{}' is not persistent",
                p.name
            )));
        }
        crate::store::remove_file(&self.inner.store.config(&p.name)).map_err(store_err)?;
        self.inner
            .store
            .set_autostart(&p.name, false)
            .map_err(store_err)?;
        self.pools().retain(|x| x.uuid != p.uuid);
        self.inner
            .events
            .lifecycle(&p.uuid, &p.name, Ev::StoragePoolEventUndefined);
        Ok(())
    }

    /// virStoragePoolDelete for a directory: remove it (it must be empty).
    pub async fn delete(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let _job = self.inner.job.lock().await;
        let p = self.find(r)?;
        if p.live.is_some() {
            return Err(err::still_active(&p.name));
        }
        let def = p
            .current()
            .cloned()
            .ok_or_else(|| err::internal("storage pool has no definition"))?;
        check_directory_op(&def, "deleting")?;
        let dir = def.target_path();
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(err::system(format!("failed to remove pool '{dir}'"), &e));
            }
        }
        self.inner
            .events
            .lifecycle(&p.uuid, &p.name, Ev::StoragePoolEventDeleted);
        Ok(())
    }

    /// virStoragePoolRefresh: read the directory again; a pool whose
    /// directory went away stops (libvirt does the same).
    pub async fn refresh(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let _job = self.inner.job.lock().await;
        let p = self.find(r)?;
        let Some(live) = &p.live else {
            return Err(err::not_active(&p.name));
        };
        match scan_dir(self.inner.qemu_img.as_deref(), &live.def).await {
            Ok(fresh) => {
                self.with_pool(&p.uuid, |x| x.live = Some(fresh));
                self.inner.events.refreshed(&p.uuid, &p.name);
                Ok(())
            }
            Err(e) => {
                self.stop(&p)?;
                Err(e)
            }
        }
    }

    /// After a restart: pools with a run file whose directory still exists
    /// are active again (virStoragePoolObjLoadAllState + checkPool).
    pub(super) async fn recover(&self) {
        for (path, text) in self.inner.store.lives() {
            let def = match text.and_then(|t| PoolDef::parse(&t).map_err(|e| e.to_string())) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!("dropping pool state {}: {e}", path.display());
                    let _ = crate::store::remove_file(&path);
                    continue;
                }
            };
            let live = if def.pool_type == "dir" && Path::new(&def.target_path()).is_dir() {
                scan_dir(self.inner.qemu_img.as_deref(), &def)
                    .await
                    .map_err(|e| tracing::warn!("pool {}: {e}", def.name))
                    .ok()
            } else {
                None
            };
            let Some(live) = live else {
                let _ = crate::store::remove_file(&path);
                continue;
            };
            let known = self
                .with_pool(&def.uuid, |p| p.live = Some(live.clone()))
                .is_some();
            if !known {
                self.pools().push(Pool {
                    uuid: def.uuid.clone(),
                    name: def.name.clone(),
                    config: None,
                    live: Some(live),
                    autostart: false,
                    last_seen: None,
                });
            }
        }
    }

    pub(super) async fn autostart(&self) {
        let names: Vec<String> = self
            .pools()
            .iter()
            .filter(|p| p.autostart && p.live.is_none())
            .map(|p| p.name.clone())
            .collect();
        for name in names {
            let r = pb::ObjectRef {
                key: Some(pb::object_ref::Key::Name(name.clone())),
            };
            if let Err(e) = self.start(Some(&r)).await {
                tracing::error!("autostart of pool '{name}' failed: {e}");
            }
        }
    }
}

/// virStorageBackendBuildLocal for a directory pool.
fn build_dir(def: &PoolDef) -> Result<()> {
    let dir = def.target_path();
    let path = Path::new(&dir);
    if !dir.starts_with('/') {
        return Err(err::invalid_arg(format!("path '{dir}' is not absolute")));
    }
    if let Some(parent) = path.parent()
        && parent != Path::new("/")
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| err::system(format!("cannot create path '{}'", parent.display()), &e))?;
    }
    let existed = path.is_dir();
    if !existed {
        std::fs::create_dir(path).map_err(|e| sys(format!("cannot create path '{dir}'"), e))?;
    }
    let perms = &def.target_perms;
    let mode = perms.mode.or((!existed).then_some(DEFAULT_POOL_MODE));
    if perms.owner.is_some() || perms.group.is_some() {
        let uid = perms
            .owner
            .and_then(|u| u32::try_from(u).ok())
            .map(nix::unistd::Uid::from_raw);
        let gid = perms
            .group
            .and_then(|g| u32::try_from(g).ok())
            .map(nix::unistd::Gid::from_raw);
        nix::unistd::chown(path, uid, gid)
            .map_err(|e| sys(format!("cannot chown '{dir}'"), e.into()))?;
    }
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| sys(format!("cannot set mode of '{dir}' to {mode:04o}"), e))?;
    }
    Ok(())
}

fn sys(what: String, e: std::io::Error) -> VirtError {
    err::system(what, &e)
}
