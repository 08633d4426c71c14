//! The driver core: domain objects, their lifecycle on real QEMU, state
//! that follows QMP events, persistence and recovery.
//!
//! Locking: the domain list and each domain's state are short-held std
//! mutexes, never held across an await (the QMP reader calls into the
//! driver synchronously). Lifecycle operations on one domain are
//! serialised by its async `job` lock, like libvirt's domain jobs. Lock
//! order: job, then list, then domain state.

mod autostart;
mod console;
mod hotplug;
mod ifaddr;
mod lifecycle;
mod metadata;
mod monitor;
mod recovery;
mod save;
mod snapshot;
mod stats;
#[cfg(test)]
mod tests;
mod tune;
mod update;

use crate::argv::{self, ArgvOptions};
use crate::def::DomainDef;
use crate::error::{self as err, Result};
use crate::events::{DomainEvents, EventHub, Lifecycle};
use crate::hostnet;
use crate::process::{self, RunPaths};
use crate::qmp::{self, EventKind, MonitorMsg, Qmp};
use crate::state::{self, ConfigStore, LiveStatus};
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use virtmesh_proto::v1::{self as pb, DomainState};
use virtmesh_rpc::{ErrorCode, VirtError};

/// libvirt waits this long after SIGTERM before SIGKILL on destroy.
const DESTROY_GRACE: Duration = Duration::from_secs(10);
/// How long a new driver waits for the previous one to let go of the
/// state directory.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// How long SIGKILL may take to end QEMU.
const KILL_WAIT: Duration = Duration::from_secs(5);

// virDomain*Reason numbers used here (libvirt's).
pub const RUNNING_UNKNOWN: i32 = 0;
pub const RUNNING_BOOTED: i32 = 1;
pub const RUNNING_RESTORED: i32 = 3;
pub const RUNNING_UNPAUSED: i32 = 5;
pub const PAUSED_UNKNOWN: i32 = 0;
pub const PAUSED_USER: i32 = 1;
pub const PAUSED_SAVE: i32 = 3;
pub const PAUSED_STARTING_UP: i32 = 11;
pub const SHUTDOWN_USER: i32 = 1;
pub const SHUTOFF_UNKNOWN: i32 = 0;
pub const SHUTOFF_SHUTDOWN: i32 = 1;
pub const SHUTOFF_DESTROYED: i32 = 2;
pub const SHUTOFF_SAVED: i32 = 5;
pub const SHUTOFF_FAILED: i32 = 6;
pub const CRASHED_PANICKED: i32 = 1;

/// virsh's words for each state's reasons (`domstate --reason`).
pub fn reason_name(state: DomainState, reason: i32) -> &'static str {
    virtmesh_proto::names::domain_state_reason(state, reason).unwrap_or("unknown")
}

/// Where the driver keeps things and which QEMU it runs.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// Persistent configs (default /var/lib/virtmesh/qemu).
    pub state_dir: PathBuf,
    /// Live status, monitor sockets, pidfiles, logs (default
    /// /run/virtmesh/qemu).
    pub run_dir: PathBuf,
    /// The emulator used when a definition names none.
    pub emulator: PathBuf,
    /// Where the network service is reached (interfaces of type
    /// `network` get their ports from it); `None`: no network driver.
    pub network: Option<virtmesh_rpc::ListenAddr>,
}

impl QemuConfig {
    /// The defaults (DESIGN.md §6): as root, /var/lib/virtmesh/qemu and
    /// /run/virtmesh/qemu; otherwise under $XDG_DATA_HOME (or
    /// ~/.local/share) and $XDG_RUNTIME_DIR. An explicit `--state-dir`
    /// keeps everything in one place: the run directory goes beneath it.
    pub fn system(state_dir: Option<PathBuf>) -> QemuConfig {
        let d = virtmesh_util::dirs::service_dirs("qemu", state_dir);
        QemuConfig {
            state_dir: d.state_dir,
            run_dir: d.run_dir,
            emulator: PathBuf::from(crate::def::DEFAULT_EMULATOR),
            network: None,
        }
    }
}

/// What undefine does with a guest's NVRAM file (VIR_DOMAIN_UNDEFINE_NVRAM
/// / _KEEP_NVRAM; neither refuses while the file exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NvramOnUndefine {
    Refuse,
    Remove,
    Keep,
}

impl NvramOnUndefine {
    pub fn from_flags(remove: bool, keep: bool) -> Self {
        match (remove, keep) {
            (true, _) => NvramOnUndefine::Remove,
            (false, true) => NvramOnUndefine::Keep,
            (false, false) => NvramOnUndefine::Refuse,
        }
    }
}

/// A running QEMU.
struct Live {
    id: i32,
    pid: i32,
    def: DomainDef,
    qmp: Arc<Qmp>,
    paths: RunPaths,
    /// Which connection this is, so a late event of an old one is ignored.
    generation: u64,
    /// Between spawn and `cont`: QMP's STOP/RESUME are ours, not news.
    starting: bool,
    destroying: bool,
    /// Managed save wrote the state and is ending QEMU.
    saving: bool,
    got_shutdown: bool,
    fake_reboot: bool,
    /// Between the guest's poweroff and the `cont` after the reset of a
    /// fake reboot: the STOP and RESUME of that cycle are not news.
    rebooting: bool,
    /// The reason the next STOP event gets (set by Suspend).
    pause_reason: Option<i32>,
    /// Serial ports on ptys: (`serialN`, `/dev/pts/M`).
    ptys: Vec<(String, PathBuf)>,
    /// The open console session, if any: firing (or dropping) the sender
    /// ends it; a closed sender means the session is over.
    console: Option<tokio::sync::oneshot::Sender<()>>,
    /// Host links we created for this guest (see `hostnet`).
    links: Vec<crate::hostnet::OwnedLink>,
}

struct DomState {
    name: String,
    /// The persistent config; `None` for a transient domain.
    config: Option<DomainDef>,
    live: Option<Live>,
    state: DomainState,
    reason: i32,
    /// Gone from the list (undefined, or a transient domain stopped).
    removed: bool,
    autostart: bool,
}

struct Dom {
    uuid: String,
    job: tokio::sync::Mutex<()>,
    st: Mutex<DomState>,
}

impl Dom {
    fn lock(&self) -> MutexGuard<'_, DomState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Inner {
    /// Probed capabilities per emulator (see `probe`).
    caps: tokio::sync::Mutex<std::collections::HashMap<PathBuf, Arc<crate::probe::QemuCaps>>>,
    /// Held for the driver's life (see `state::lock_dir`).
    _lock: state::StateLock,
    cfg: QemuConfig,
    store: ConfigStore,
    doms: Mutex<Vec<Arc<Dom>>>,
    next_id: AtomicI32,
    generation: AtomicU64,
    events: EventHub,
    /// The network service, for ports of `type='network'` interfaces.
    net: crate::netport::NetPeer,
}

/// The qemu driver. Cheap to clone; every clone is the same driver.
#[derive(Clone)]
pub struct QemuDriver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for QemuDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QemuDriver")
            .field("state_dir", &self.inner.cfg.state_dir)
            .field("run_dir", &self.inner.cfg.run_dir)
            .finish_non_exhaustive()
    }
}

/// A snapshot of one domain for replies.
#[derive(Debug, Clone)]
pub struct DomView {
    pub uuid: String,
    pub name: String,
    pub id: i32,
    pub state: DomainState,
    pub reason: i32,
    pub persistent: bool,
    pub def: DomainDef,
    /// The persistent config, when there is one.
    pub config: Option<DomainDef>,
    pub pid: Option<i32>,
    pub autostart: bool,
}

impl DomView {
    pub fn summary(&self) -> pb::DomainSummary {
        pb::DomainSummary {
            uuid: self.uuid.clone(),
            name: self.name.clone(),
            id: self.id,
            state: self.state as i32,
            persistent: self.persistent,
            autostart: self.autostart,
            has_managed_save: false,
            has_snapshot: false,
        }
    }

    pub fn is_active(&self) -> bool {
        self.id >= 0
    }
}

fn view(uuid: &str, st: &DomState) -> Option<DomView> {
    let def = st
        .live
        .as_ref()
        .map(|l| l.def.clone())
        .or_else(|| st.config.clone())?;
    Some(DomView {
        uuid: uuid.to_owned(),
        name: st.name.clone(),
        id: st.live.as_ref().map_or(-1, |l| l.id),
        state: st.state,
        reason: st.reason,
        persistent: st.config.is_some(),
        def,
        config: st.config.clone(),
        pid: st.live.as_ref().map(|l| l.pid),
        autostart: st.autostart,
    })
}

impl QemuDriver {
    /// Open the driver: create the directories, load the persistent
    /// configs, and reconnect to every guest a previous instance left
    /// running (reporting those that exited meanwhile as shut off).
    pub async fn new(cfg: QemuConfig) -> Result<QemuDriver> {
        state::mkdir(&cfg.state_dir).map_err(err::state)?;
        state::mkdir(&cfg.run_dir).map_err(err::state)?;
        let lock = state::lock_dir(&cfg.state_dir, LOCK_WAIT)
            .await
            .map_err(err::state)?;
        let inner = Arc::new(Inner {
            caps: tokio::sync::Mutex::new(std::collections::HashMap::new()),
            _lock: lock,
            store: ConfigStore::new(cfg.state_dir.clone()),
            net: crate::netport::NetPeer::new(cfg.network.as_ref()),
            cfg,
            doms: Mutex::new(Vec::new()),
            next_id: AtomicI32::new(1),
            generation: AtomicU64::new(1),
            events: EventHub::default(),
        });
        let driver = QemuDriver { inner };
        for (path, def) in driver.inner.store.load_all() {
            match def {
                Ok(def) => {
                    let autostart = driver.inner.store.autostart(&def.name());
                    let dom = driver.insert(def.uuid(), def.name(), Some(def));
                    dom.lock().autostart = autostart;
                }
                Err(e) => tracing::error!("ignoring config {}: {e}", path.display()),
            }
        }
        // In parallel: one guest with a stuck monitor must not delay the
        // others (each waits up to the QMP greeting timeout).
        let mut reconnects = tokio::task::JoinSet::new();
        for status in state::list_statuses(&driver.inner.cfg.run_dir) {
            match status {
                Ok(status) => {
                    let d = driver.clone();
                    reconnects.spawn(async move { d.reconnect(status).await });
                }
                Err(e) => tracing::error!("ignoring live status: {e}"),
            }
        }
        while reconnects.join_next().await.is_some() {}
        driver.autostart_once().await;
        Ok(driver)
    }

    pub fn events(&self) -> EventHub {
        self.inner.events.clone()
    }

    pub fn config(&self) -> &QemuConfig {
        &self.inner.cfg
    }

    fn list_lock(&self) -> MutexGuard<'_, Vec<Arc<Dom>>> {
        self.inner.doms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, uuid: String, name: String, config: Option<DomainDef>) -> Arc<Dom> {
        let dom = Arc::new(Dom {
            uuid,
            job: tokio::sync::Mutex::new(()),
            st: Mutex::new(DomState {
                name,
                config,
                live: None,
                state: DomainState::Shutoff,
                reason: SHUTOFF_UNKNOWN,
                removed: false,
                autostart: false,
            }),
        });
        self.list_lock().push(dom.clone());
        dom
    }

    fn remove_from_list(&self, dom: &Arc<Dom>) {
        self.list_lock().retain(|d| !Arc::ptr_eq(d, dom));
    }

    /// The domain an ObjectRef names, or libvirt's not-found error.
    fn find(&self, r: Option<&pb::ObjectRef>) -> Result<Arc<Dom>> {
        use pb::object_ref::Key;
        let key = r
            .and_then(|r| r.key.as_ref())
            .ok_or_else(err::missing_ref)?;
        let list = self.list_lock();
        let found = list.iter().find(|d| {
            let st = d.lock();
            !st.removed
                && match key {
                    Key::Uuid(u) => d.uuid.eq_ignore_ascii_case(u.trim()),
                    Key::Name(n) => st.name == *n,
                    Key::Id(id) => st.live.as_ref().is_some_and(|l| l.id == *id),
                }
        });
        match (found, key) {
            (Some(d), _) => Ok(d.clone()),
            (None, Key::Uuid(u)) => Err(err::no_domain_uuid(u)),
            (None, Key::Name(n)) => Err(err::no_domain_name(n)),
            (None, Key::Id(id)) => Err(err::no_domain_id(*id)),
        }
    }

    /// A domain looked up, viewed.
    pub fn lookup(&self, r: Option<&pb::ObjectRef>) -> Result<DomView> {
        let dom = self.find(r)?;
        let st = dom.lock();
        view(&dom.uuid, &st).ok_or_else(|| err::internal("domain has no definition"))
    }

    /// Every domain, in definition order.
    pub fn list(&self) -> Vec<DomView> {
        let doms: Vec<Arc<Dom>> = self.list_lock().clone();
        doms.iter()
            .filter_map(|d| {
                let st = d.lock();
                if st.removed { None } else { view(&d.uuid, &st) }
            })
            .collect()
    }

    /// The binary a definition's `<emulator>` means: the default one is
    /// the configured emulator (tests and odd hosts point it elsewhere).
    pub(super) fn emulator_path(&self, named: &str) -> PathBuf {
        if named == crate::def::DEFAULT_EMULATOR {
            self.inner.cfg.emulator.clone()
        } else {
            PathBuf::from(named)
        }
    }

    /// The capabilities of `emulator`, probed once and cached.
    pub async fn caps_for(
        &self,
        emulator: &std::path::Path,
    ) -> Result<Arc<crate::probe::QemuCaps>> {
        let mut cache = self.inner.caps.lock().await;
        if let Some(c) = cache.get(emulator) {
            return Ok(c.clone());
        }
        let caps = Arc::new(
            crate::probe::probe(emulator, &self.inner.cfg.run_dir)
                .await
                .map_err(err::probe)?,
        );
        cache.insert(emulator.to_path_buf(), caps.clone());
        Ok(caps)
    }

    /// Parse a definition and check it against what its emulator can do,
    /// as libvirt's post-parse validation does: the machine type (aliases
    /// resolved by QEMU's own table) and its vCPU limit.
    pub(crate) async fn parse_checked(&self, xml: &str) -> Result<DomainDef> {
        let named =
            crate::def::emulator_of(xml).unwrap_or_else(|| crate::def::DEFAULT_EMULATOR.to_owned());
        // Malformed XML is reported as such, before any probing.
        DomainDef::parse(xml).map_err(err::conf)?;
        let caps = self.caps_for(&self.emulator_path(&named)).await?;
        let resolve = |m: Option<&str>| {
            caps.canonical_machine(m)
                .map(|mi| mi.name.clone())
                .ok_or_else(|| {
                    virtmesh_conf::ConfError::unsupported(format!(
                        "Emulator '{named}' does not support machine type '{}'",
                        m.unwrap_or_default()
                    ))
                })
        };
        let mut def = DomainDef::parse_with(xml, &resolve).map_err(err::conf)?;
        // Firmware selection reads the descriptors each time, as libvirt
        // does: installing or removing firmware needs no restart.
        let host = crate::firmware::FirmwareHost {
            descriptors: crate::firmware::system_descriptors(),
            nvram_dir: self.inner.cfg.state_dir.join("nvram"),
        };
        crate::firmware::fill(&mut def, &host).map_err(err::conf)?;
        if let Some(limit) = caps
            .canonical_machine(Some(&def.machine()))
            .map(|m| m.cpu_max)
            && def.max_vcpus() > limit
        {
            return Err(err::qemu(
                ErrorCode::ConfigUnsupported,
                format!(
                    "unsupported configuration: Maximum CPUs greater than specified machine type limit {limit}"
                ),
            ));
        }
        Ok(def)
    }

    /// virDomainDefineXML.
    pub async fn define(&self, xml: &str) -> Result<DomView> {
        let def = self.parse_checked(xml).await?;
        let (uuid, name) = (def.uuid(), def.name());
        // Checked and inserted under the list lock, so two concurrent
        // defines of one name cannot both win.
        let mut list = self.list_lock();
        let existing = list.iter().find(|d| {
            let st = d.lock();
            !st.removed && (st.name == name || d.uuid.eq_ignore_ascii_case(&uuid))
        });
        let (dom, event, is_new) = match existing {
            Some(d) => {
                let st = d.lock();
                if !d.uuid.eq_ignore_ascii_case(&uuid) {
                    return Err(err::qemu(
                        ErrorCode::OperationFailed,
                        format!(
                            "operation failed: domain '{name}' is already defined with uuid {}",
                            d.uuid
                        ),
                    ));
                }
                if st.name != name {
                    return Err(err::qemu(
                        ErrorCode::OperationFailed,
                        format!(
                            "operation failed: domain '{}' already exists with uuid {uuid}",
                            st.name
                        ),
                    ));
                }
                // Making a running transient domain persistent is an
                // addition for libvirt, not an update.
                let ev = if st.config.is_some() {
                    Lifecycle::DefinedUpdated
                } else {
                    Lifecycle::DefinedAdded
                };
                drop(st);
                (d.clone(), ev, false)
            }
            None => {
                let dom = Arc::new(Dom {
                    uuid: uuid.clone(),
                    job: tokio::sync::Mutex::new(()),
                    st: Mutex::new(DomState {
                        name: name.clone(),
                        config: None,
                        live: None,
                        state: DomainState::Shutoff,
                        reason: SHUTOFF_UNKNOWN,
                        removed: false,
                        autostart: false,
                    }),
                });
                list.push(dom.clone());
                (dom, Lifecycle::DefinedAdded, true)
            }
        };
        if let Err(e) = self.inner.store.save(&def) {
            if is_new {
                list.retain(|d| !Arc::ptr_eq(d, &dom));
            }
            return Err(err::state(e));
        }
        drop(list);
        let mut st = dom.lock();
        st.config = Some(def);
        if let Some(live) = &st.live {
            // A running transient domain becomes persistent.
            let _ = self.save_status(&dom.uuid, &st.name, live, true);
        }
        self.inner.events.lifecycle(&uuid, &name, event);
        view(&dom.uuid, &st).ok_or_else(|| err::internal("domain has no definition"))
    }

    /// virDomainUndefine: a running domain becomes transient.
    pub async fn undefine(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let mut st = dom.lock();
        if st.removed {
            return Err(err::no_domain_uuid(&dom.uuid));
        }
        if st.config.is_none() {
            return Err(err::invalid_op("cannot undefine transient domain"));
        }
        self.inner
            .store
            .set_autostart(&st.name, false)
            .map_err(err::state)?;
        self.inner.store.remove(&st.name).map_err(err::state)?;
        st.config = None;
        st.autostart = false;
        match &st.live {
            Some(live) => {
                let _ = self.save_status(&dom.uuid, &st.name, live, false);
            }
            None => st.removed = true,
        }
        let removed = st.removed;
        self.inner
            .events
            .lifecycle(&dom.uuid, &st.name, Lifecycle::UndefinedRemoved);
        drop(st);
        if removed {
            self.remove_from_list(&dom);
        }
        Ok(())
    }

    /// The running guest's monitor and live definition (not while it is
    /// still starting).
    fn live_def(&self, dom: &Dom) -> Option<(Arc<Qmp>, DomainDef)> {
        let st = dom.lock();
        let l = st.live.as_ref().filter(|l| !l.starting)?;
        Some((l.qmp.clone(), l.def.clone()))
    }

    /// Change the running guest's live state with `f` and persist its
    /// status; a status that cannot be written is logged (the guest has
    /// changed already). Nothing happens when the guest is not running.
    fn update_live(&self, dom: &Dom, f: impl FnOnce(&mut Live)) {
        let mut st = dom.lock();
        let name = st.name.clone();
        let persistent = st.config.is_some();
        if let Some(l) = st.live.as_mut() {
            f(l);
            let l = &*l;
            if let Err(e) = self.save_status(&dom.uuid, &name, l, persistent) {
                tracing::warn!("live status of {name}: {e}");
            }
        }
    }

    fn save_status(&self, uuid: &str, name: &str, live: &Live, persistent: bool) -> Result<()> {
        state::save_status(
            &live.paths.status,
            &LiveStatus {
                uuid: uuid.to_owned(),
                name: name.to_owned(),
                id: live.id,
                pid: live.pid,
                monitor: live.paths.monitor.clone(),
                persistent,
                xml: live.def.to_xml(None),
                links: live.links.clone(),
            },
        )
        .map_err(err::state)
    }

    fn find_uuid(&self, uuid: &str) -> Option<Arc<Dom>> {
        self.list_lock().iter().find(|d| d.uuid == uuid).cloned()
    }
}
