//! The driver core: pools, their volumes, persistence and recovery.
//!
//! `pools` runs pool lifecycles on the host, `vols` creates and removes
//! volumes.  Locking: `pools` is a short-held std mutex, never held across
//! an await; every operation that changes anything runs under the one
//! async `job` lock (pools change rarely, and one job at a time keeps the
//! files and the host consistent).  Lock order: job, then pools.

mod pools;
mod transfer;
mod vols;

use crate::error::{self as err, Result};
use crate::events::EventHub;
use crate::store::{Store, StoreError};
use crate::volume::Vol;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use virtmesh_conf::storage::{Perms, PoolDef, PoolSizes};
use virtmesh_proto::v1::{self as pb, object_ref::Key};

/// Where the driver keeps things.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Pool configs and autostart marks (default /var/lib/virtmesh/storage;
    /// libvirt's /etc/libvirt/storage).
    pub state_dir: PathBuf,
    /// Active pools' definitions (default /run/virtmesh/storage; libvirt's
    /// /run/libvirt/storage).
    pub run_dir: PathBuf,
}

impl StorageConfig {
    /// The defaults (DESIGN.md §6): as root /var/lib/virtmesh/storage and
    /// /run/virtmesh/storage; otherwise under $XDG_DATA_HOME (or
    /// ~/.local/share) and $XDG_RUNTIME_DIR.  An explicit state directory
    /// keeps everything in one place: the run directory goes beneath it.
    pub fn system(state_dir: Option<PathBuf>) -> StorageConfig {
        let d = virtmesh_util::dirs::service_dirs("storage", state_dir);
        StorageConfig {
            state_dir: d.state_dir,
            run_dir: d.run_dir,
        }
    }
}

/// Pool types with a backend in this build, as libvirt's Debian package
/// has (storage_backend.c registers these); the others fail to define
/// with "missing backend for pool type N".  Of these only `dir` runs on
/// the host; the rest are kept as definitions.
pub const BACKENDS: &[&str] = &[
    "dir", "fs", "netfs", "logical", "disk", "iscsi", "scsi", "mpath",
];

/// An active pool.
#[derive(Debug, Clone)]
struct Live {
    def: PoolDef,
    sizes: PoolSizes,
    /// The target directory's own permissions (refresh reads them).
    perms: Perms,
    vols: Vec<Vol>,
}

#[derive(Debug, Clone)]
struct Pool {
    uuid: String,
    name: String,
    /// The persistent config; `None` for a transient pool.
    config: Option<PoolDef>,
    live: Option<Live>,
    autostart: bool,
    /// What the last refresh found, kept after the pool stops while its
    /// definition is unchanged: libvirt's inactive XML and info go on
    /// showing those sizes and the directory's permissions.
    last_seen: Option<(PoolSizes, Perms)>,
}

impl Pool {
    fn summary(&self) -> pb::StoragePoolSummary {
        pb::StoragePoolSummary {
            uuid: self.uuid.clone(),
            name: self.name.clone(),
            active: self.live.is_some(),
            persistent: self.config.is_some(),
            autostart: self.autostart,
        }
    }

    /// The definition that describes the pool now.
    fn current(&self) -> Option<&PoolDef> {
        self.live.as_ref().map(|l| &l.def).or(self.config.as_ref())
    }
}

struct Inner {
    /// Held for the driver's life: one driver per state directory.
    _lock: nix::fcntl::Flock<std::fs::File>,
    cfg: StorageConfig,
    store: Store,
    pools: Mutex<Vec<Pool>>,
    job: tokio::sync::Mutex<()>,
    events: EventHub,
    /// qemu-img, when installed (non-raw volumes need it).
    qemu_img: Option<PathBuf>,
}

/// The storage driver.  Cheap to clone; every clone is the same driver.
#[derive(Clone)]
pub struct StorageDriver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StorageDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageDriver")
            .field("state_dir", &self.inner.cfg.state_dir)
            .field("run_dir", &self.inner.cfg.run_dir)
            .finish_non_exhaustive()
    }
}

/// Why the driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot lock '{path}': {message}")]
    Lock { path: String, message: String },
}

fn store_err(e: StoreError) -> virtmesh_rpc::VirtError {
    err::internal(e)
}

/// Take the state directory (util::dirs): a second driver on it would
/// fight over the same host resources.
fn lock_dir(dir: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>, DriverError> {
    virtmesh_util::dirs::try_lock_state_dir(dir, "storage").map_err(|e| DriverError::Lock {
        path: e.path,
        message: e.message,
    })
}

impl StorageDriver {
    /// Open the driver: load the configs, take back the pools that were
    /// active (their directories still there), then start the autostart
    /// pools.
    pub async fn new(cfg: StorageConfig) -> Result<StorageDriver, DriverError> {
        let store = Store::open(cfg.state_dir.clone(), cfg.run_dir.clone())?;
        let lock = lock_dir(&cfg.state_dir)?;
        let mut pools = Vec::new();
        for (path, text) in store.configs() {
            match text.and_then(|t| PoolDef::parse(&t).map_err(|e| e.to_string())) {
                Ok(def) => pools.push(Pool {
                    uuid: def.uuid.clone(),
                    name: def.name.clone(),
                    autostart: store.is_autostart(&def.name),
                    config: Some(def),
                    live: None,
                    last_seen: None,
                }),
                Err(e) => tracing::error!("skipping pool config {}: {e}", path.display()),
            }
        }
        let driver = StorageDriver {
            inner: Arc::new(Inner {
                _lock: lock,
                cfg,
                store,
                pools: Mutex::new(pools),
                job: tokio::sync::Mutex::new(()),
                events: EventHub::default(),
                qemu_img: crate::qemu_img::find(),
            }),
        };
        driver.recover().await;
        driver.autostart().await;
        Ok(driver)
    }

    pub fn config(&self) -> &StorageConfig {
        &self.inner.cfg
    }

    pub fn events(&self) -> EventHub {
        self.inner.events.clone()
    }

    fn pools(&self) -> MutexGuard<'_, Vec<Pool>> {
        self.inner.pools.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_pool<T>(&self, uuid: &str, f: impl FnOnce(&mut Pool) -> T) -> Option<T> {
        self.pools().iter_mut().find(|p| p.uuid == uuid).map(f)
    }

    /// Find a pool by reference; a snapshot.
    fn find(&self, r: Option<&pb::ObjectRef>) -> Result<Pool> {
        let key = r
            .and_then(|r| r.key.as_ref())
            .ok_or_else(|| err::missing_ref("storage pool"))?;
        let pools = self.pools();
        match key {
            Key::Uuid(u) => {
                let want = virtmesh_conf::error::parse_uuid_str(u)
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| u.clone());
                pools
                    .iter()
                    .find(|p| p.uuid.eq_ignore_ascii_case(&want))
                    .cloned()
                    .ok_or_else(|| err::no_pool("uuid", u))
            }
            Key::Name(n) => pools
                .iter()
                .find(|p| &p.name == n)
                .cloned()
                .ok_or_else(|| err::no_pool("name", n)),
            Key::Id(_) => Err(err::invalid_arg("storage pools have no numeric id")),
        }
    }

    pub fn lookup(&self, r: Option<&pb::ObjectRef>) -> Result<pb::StoragePoolSummary> {
        Ok(self.find(r)?.summary())
    }

    pub fn list(&self, f: &pb::ListFilter) -> Vec<pb::StoragePoolSummary> {
        // Within a pair, neither or both set means no filter (libvirt).
        let pass = |yes: bool, no: bool, v: bool| yes == no || (yes && v) || (no && !v);
        let mut out: Vec<pb::StoragePoolSummary> = self
            .pools()
            .iter()
            .map(Pool::summary)
            .filter(|s| {
                pass(f.active, f.inactive, s.active)
                    && pass(f.persistent, f.transient, s.persistent)
                    && pass(f.autostart, f.no_autostart, s.autostart)
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// virStoragePoolGetXMLDesc: the live definition with its sizes when
    /// active (the config with `inactive`), else the config, never
    /// started, with sizes 0.
    pub fn xml_desc(&self, r: Option<&pb::ObjectRef>, inactive: bool) -> Result<String> {
        let p = self.find(r)?;
        match (&p.live, &p.config) {
            // A config changed while the pool runs (libvirt's newDef).
            (Some(l), Some(cfg)) if inactive && *cfg != l.def => {
                Ok(cfg.format(PoolSizes::default(), None))
            }
            (Some(l), _) => Ok(l.def.format(l.sizes, Some(&l.perms))),
            (None, Some(cfg)) => Ok(match &p.last_seen {
                Some((sizes, perms)) => cfg.format(*sizes, Some(perms)),
                None => cfg.format(PoolSizes::default(), None),
            }),
            (None, None) => Err(err::internal("storage pool has no definition")),
        }
    }

    pub fn info(&self, r: Option<&pb::ObjectRef>) -> Result<pb::StoragePoolInfo> {
        let p = self.find(r)?;
        let (state, sizes) = match &p.live {
            Some(l) => (pb::StoragePoolState::StoragePoolRunning, l.sizes),
            None => (
                pb::StoragePoolState::StoragePoolInactive,
                p.last_seen.as_ref().map(|(s, _)| *s).unwrap_or_default(),
            ),
        };
        Ok(pb::StoragePoolInfo {
            uuid: p.uuid.clone(),
            name: p.name.clone(),
            state: state as i32,
            capacity: sizes.capacity,
            allocation: sizes.allocation,
            available: sizes.available,
            persistent: p.config.is_some(),
            autostart: p.autostart,
        })
    }

    pub fn get_autostart(&self, r: Option<&pb::ObjectRef>) -> Result<bool> {
        Ok(self.find(r)?.autostart)
    }

    pub async fn set_autostart(&self, r: Option<&pb::ObjectRef>, on: bool) -> Result<()> {
        let _job = self.inner.job.lock().await;
        let p = self.find(r)?;
        if p.config.is_none() {
            return Err(err::internal("pool has no config file"));
        }
        self.inner
            .store
            .set_autostart(&p.name, on)
            .map_err(store_err)?;
        self.with_pool(&p.uuid, |p| p.autostart = on);
        Ok(())
    }

    /// The pool holding a volume, found by key or path.
    pub fn lookup_by_volume(&self, r: Option<&pb::VolRef>) -> Result<pb::StoragePoolSummary> {
        let (pool, _) = self.find_vol(r)?;
        Ok(pool.summary())
    }
}
