//! The driver core: domain objects, their lifecycle on real QEMU, state
//! that follows QMP events, persistence and recovery.
//!
//! Locking: the domain list and each domain's state are short-held std
//! mutexes, never held across an await (the QMP reader calls into the
//! driver synchronously). Lifecycle operations on one domain are
//! serialised by its async `job` lock, like libvirt's domain jobs. Lock
//! order: job, then list, then domain state.

use crate::argv::{self, ArgvOptions};
use crate::def::DomainDef;
use crate::error::{self as err, Result};
use crate::events::{EventHub, Lifecycle};
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
/// And this long for SIGKILL to take effect.
const KILL_WAIT: Duration = Duration::from_secs(5);

// virDomain*Reason numbers used here (libvirt's).
pub const RUNNING_UNKNOWN: i32 = 0;
pub const RUNNING_BOOTED: i32 = 1;
pub const RUNNING_UNPAUSED: i32 = 5;
pub const PAUSED_UNKNOWN: i32 = 0;
pub const PAUSED_USER: i32 = 1;
pub const PAUSED_STARTING_UP: i32 = 11;
pub const SHUTDOWN_USER: i32 = 1;
pub const SHUTOFF_UNKNOWN: i32 = 0;
pub const SHUTOFF_SHUTDOWN: i32 = 1;
pub const SHUTOFF_DESTROYED: i32 = 2;
pub const SHUTOFF_FAILED: i32 = 6;
pub const CRASHED_PANICKED: i32 = 1;

/// virsh's words for each state's reasons (`domstate --reason`).
pub fn reason_name(state: DomainState, reason: i32) -> &'static str {
    let names: &[&str] = match state {
        DomainState::Running => &[
            "unknown",
            "booted",
            "migrated",
            "restored",
            "from snapshot",
            "unpaused",
            "migration canceled",
            "save canceled",
            "event wakeup",
            "crashed",
            "post-copy",
            "post-copy failed",
        ],
        DomainState::Paused => &[
            "unknown",
            "user",
            "migrating",
            "saving",
            "dumping",
            "I/O error",
            "watchdog",
            "from snapshot",
            "shutting down",
            "creating snapshot",
            "crashed",
            "starting up",
            "post-copy",
            "post-copy failed",
            "api error",
        ],
        DomainState::Shutdown => &["unknown", "user"],
        DomainState::Shutoff => &[
            "unknown",
            "shutdown",
            "destroyed",
            "crashed",
            "migrated",
            "saved",
            "failed",
            "from snapshot",
            "daemon",
        ],
        DomainState::Crashed => &["unknown", "panicked"],
        _ => &["unknown"],
    };
    usize::try_from(reason)
        .ok()
        .and_then(|i| names.get(i))
        .copied()
        .unwrap_or("unknown")
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
}

impl QemuConfig {
    /// The defaults (DESIGN.md §6): as root, /var/lib/virtmesh/qemu and
    /// /run/virtmesh/qemu; otherwise under $XDG_DATA_HOME (or
    /// ~/.local/share) and $XDG_RUNTIME_DIR. An explicit `--state-dir`
    /// keeps everything in one place: the run directory goes beneath it.
    pub fn system(state_dir: Option<PathBuf>) -> QemuConfig {
        let emulator = PathBuf::from(crate::def::DEFAULT_EMULATOR);
        if let Some(state_dir) = state_dir {
            return QemuConfig {
                run_dir: state_dir.join("run"),
                state_dir,
                emulator,
            };
        }
        if is_root() {
            return QemuConfig {
                state_dir: PathBuf::from("/var/lib/virtmesh/qemu"),
                run_dir: PathBuf::from("/run/virtmesh/qemu"),
                emulator,
            };
        }
        let env_dir = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let data = env_dir("XDG_DATA_HOME")
            .or_else(|| env_dir("HOME").map(|h| h.join(".local/share")))
            .unwrap_or_else(std::env::temp_dir)
            .join("virtmesh/qemu");
        let run = env_dir("XDG_RUNTIME_DIR")
            .map(|r| r.join("virtmesh/qemu"))
            .unwrap_or_else(|| data.join("run"));
        QemuConfig {
            state_dir: data,
            run_dir: run,
            emulator,
        }
    }
}

/// Whether we run as root: /proc/self belongs to the effective uid.
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
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
    got_shutdown: bool,
    fake_reboot: bool,
    /// The reason the next STOP event gets (set by Suspend).
    pause_reason: Option<i32>,
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
    cfg: QemuConfig,
    store: ConfigStore,
    doms: Mutex<Vec<Arc<Dom>>>,
    next_id: AtomicI32,
    generation: AtomicU64,
    events: EventHub,
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
}

impl DomView {
    pub fn summary(&self) -> pb::DomainSummary {
        pb::DomainSummary {
            uuid: self.uuid.clone(),
            name: self.name.clone(),
            id: self.id,
            state: self.state as i32,
            persistent: self.persistent,
            autostart: false,
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
    })
}

impl QemuDriver {
    /// Open the driver: create the directories, load the persistent
    /// configs, and reconnect to every guest a previous instance left
    /// running (reporting those that exited meanwhile as shut off).
    pub async fn new(cfg: QemuConfig) -> Result<QemuDriver> {
        state::mkdir(&cfg.state_dir).map_err(err::state)?;
        state::mkdir(&cfg.run_dir).map_err(err::state)?;
        let inner = Arc::new(Inner {
            store: ConfigStore::new(cfg.state_dir.clone()),
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
                    driver.insert(def.uuid(), def.name(), Some(def));
                }
                Err(e) => tracing::error!("ignoring config {}: {e}", path.display()),
            }
        }
        for status in state::list_statuses(&driver.inner.cfg.run_dir) {
            match status {
                Ok(status) => driver.reconnect(status).await,
                Err(e) => tracing::error!("ignoring live status: {e}"),
            }
        }
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

    /// virDomainDefineXML.
    pub fn define(&self, xml: &str) -> Result<DomView> {
        let def = DomainDef::parse(xml).map_err(err::conf)?;
        let (uuid, name) = (def.uuid(), def.name());
        // Checked and inserted under the list lock, so two concurrent
        // defines of one name cannot both win.
        let mut list = self.list_lock();
        let existing = list.iter().find(|d| {
            let st = d.lock();
            !st.removed && (st.name == name || d.uuid.eq_ignore_ascii_case(&uuid))
        });
        let (dom, event) = match existing {
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
                drop(st);
                (d.clone(), Lifecycle::DefinedUpdated)
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
                    }),
                });
                list.push(dom.clone());
                (dom, Lifecycle::DefinedAdded)
            }
        };
        if let Err(e) = self.inner.store.save(&def) {
            if event == Lifecycle::DefinedAdded {
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
        self.inner.store.remove(&st.name).map_err(err::state)?;
        st.config = None;
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
            },
        )
        .map_err(err::state)
    }

    /// virDomainCreate.
    pub async fn start(&self, r: Option<&pb::ObjectRef>, paused: bool) -> Result<DomView> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let def = {
            let st = dom.lock();
            if st.removed {
                return Err(err::no_domain_uuid(&dom.uuid));
            }
            if st.live.is_some() {
                return Err(err::invalid_op("domain is already running"));
            }
            st.config
                .clone()
                .ok_or_else(|| err::internal("domain has no definition"))?
        };
        self.start_locked(&dom, def, paused).await
    }

    /// virDomainCreateXML: a transient domain, started at once.
    pub async fn create_xml(&self, xml: &str, paused: bool) -> Result<DomView> {
        let def = DomainDef::parse(xml).map_err(err::conf)?;
        let (uuid, name) = (def.uuid(), def.name());
        let dom = {
            let mut list = self.list_lock();
            if let Some(d) = list.iter().find(|d| {
                let st = d.lock();
                !st.removed && (st.name == name || d.uuid.eq_ignore_ascii_case(&uuid))
            }) {
                let st = d.lock();
                return Err(if st.live.is_some() {
                    err::invalid_op(&format!("domain '{name}' is already active"))
                } else {
                    err::qemu(
                        ErrorCode::OperationFailed,
                        format!(
                            "operation failed: domain '{}' already exists with uuid {}",
                            st.name, d.uuid
                        ),
                    )
                });
            }
            let dom = Arc::new(Dom {
                uuid,
                job: tokio::sync::Mutex::new(()),
                st: Mutex::new(DomState {
                    name,
                    config: None,
                    live: None,
                    state: DomainState::Shutoff,
                    reason: SHUTOFF_UNKNOWN,
                    removed: false,
                }),
            });
            list.push(dom.clone());
            dom
        };
        let _job = dom.job.lock().await;
        let result = self.start_locked(&dom, def, paused).await;
        if result.is_err() {
            dom.lock().removed = true;
            self.remove_from_list(&dom);
        }
        result
    }

    /// Spawn QEMU (`-S`), connect QMP, record live status, `cont`.
    async fn start_locked(&self, dom: &Arc<Dom>, def: DomainDef, paused: bool) -> Result<DomView> {
        // Phase 1 runs diskless guests: refuse what the command line
        // cannot express rather than silently drop it.
        if let Some(dev) = def
            .devices()
            .into_iter()
            .find(|d| !crate::devices::supported(d))
        {
            return Err(err::qemu(
                ErrorCode::ConfigUnsupported,
                format!(
                    "unsupported configuration: device <{}> is not supported by the qemu driver yet",
                    dev.name
                ),
            ));
        }
        let paths = RunPaths::new(&self.inner.cfg.run_dir, &dom.uuid);
        let args = argv::build(
            &def,
            &ArgvOptions {
                monitor: paths.monitor.clone(),
                master_key: None,
                pidfile: Some(paths.pidfile.clone()),
            },
        );
        let emulator = {
            let e = def.emulator();
            // A definition naming the default emulator runs the configured
            // one (tests and odd hosts point it elsewhere).
            if e == crate::def::DEFAULT_EMULATOR {
                self.inner.cfg.emulator.clone()
            } else {
                PathBuf::from(e)
            }
        };
        let log_start = std::fs::metadata(&paths.log).map(|m| m.len()).unwrap_or(0);
        let spawned = process::spawn(&emulator, &args, &paths.log, &paths.monitor)
            .await
            .map_err(err::process)?;
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
        let sink = self.sink(&dom.uuid, generation);
        let log_path = paths.log.clone();
        let fail = |e: VirtError, pid: i32| {
            let log_path = log_path.clone();
            async move {
                let _ = process::signal(pid, Signal::SIGKILL);
                process::wait_gone(pid, KILL_WAIT).await;
                let log = process::read_log_from(&log_path, log_start);
                if log.is_empty() || e.message.contains(&log) {
                    e
                } else {
                    VirtError::new(e.code, e.domain, format!("{}: {log}", e.message))
                }
            }
        };
        let qmp = match Qmp::from_stream(spawned.monitor, sink).await {
            Ok(q) => Arc::new(q),
            Err(e) => return Err(fail(err::qmp(e), spawned.pid).await),
        };
        if let Err(e) = qmp.execute(qmp::QmpCapabilities {}).await {
            return Err(fail(err::qmp(e), spawned.pid).await);
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let live = Live {
            id,
            pid: spawned.pid,
            def: def.clone(),
            qmp: qmp.clone(),
            paths: paths.clone(),
            generation,
            starting: true,
            destroying: false,
            got_shutdown: false,
            fake_reboot: false,
            pause_reason: None,
        };
        let saved = {
            let mut st = dom.lock();
            let persistent = st.config.is_some();
            let saved = self.save_status(&dom.uuid, &st.name, &live, persistent);
            if saved.is_ok() {
                st.live = Some(live);
                st.state = DomainState::Paused;
                st.reason = PAUSED_STARTING_UP;
            }
            saved
        };
        if let Err(e) = saved {
            return Err(fail(e, spawned.pid).await);
        }
        if !paused && let Err(e) = qmp.execute(qmp::Cont {}).await {
            let e = err::qmp(e);
            self.abort_start(dom, generation);
            paths.cleanup();
            return Err(fail(e, spawned.pid).await);
        }
        let mut guard = dom.lock();
        let st: &mut DomState = &mut guard;
        let Some(live) = st.live.as_mut().filter(|l| l.generation == generation) else {
            // QEMU died between `cont` and here; the EOF handler has
            // already recorded it.
            return Err(err::qemu(
                ErrorCode::OperationFailed,
                format!(
                    "operation failed: guest exited during start-up: {}",
                    process::read_log_from(&paths.log, log_start)
                ),
            ));
        };
        live.starting = false;
        let name = st.name.clone();
        self.inner
            .events
            .lifecycle(&dom.uuid, &name, Lifecycle::StartedBooted);
        if paused {
            st.state = DomainState::Paused;
            st.reason = PAUSED_USER;
            self.inner
                .events
                .lifecycle(&dom.uuid, &name, Lifecycle::SuspendedPaused);
        } else {
            st.state = DomainState::Running;
            st.reason = RUNNING_BOOTED;
        }
        view(&dom.uuid, st).ok_or_else(|| err::internal("domain has no definition"))
    }

    /// Forget a start that failed after the live state was recorded.
    fn abort_start(&self, dom: &Arc<Dom>, generation: u64) {
        let mut st = dom.lock();
        if st.live.as_ref().is_some_and(|l| l.generation == generation) {
            st.live = None;
            st.state = DomainState::Shutoff;
            st.reason = SHUTOFF_FAILED;
        }
    }

    /// The callback the QMP reader of one connection calls.
    fn sink(&self, uuid: &str, generation: u64) -> qmp::EventSink {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let uuid = uuid.to_owned();
        Box::new(move |msg| {
            if let Some(inner) = weak.upgrade() {
                QemuDriver { inner }.on_monitor(&uuid, generation, msg);
            }
        })
    }

    fn find_uuid(&self, uuid: &str) -> Option<Arc<Dom>> {
        self.list_lock().iter().find(|d| d.uuid == uuid).cloned()
    }

    /// State follows QMP: every change becomes a lifecycle event.
    fn on_monitor(&self, uuid: &str, generation: u64, msg: MonitorMsg) {
        let Some(dom) = self.find_uuid(uuid) else {
            return;
        };
        let mut guard = dom.lock();
        // A plain reference, so `live` and the other fields borrow apart.
        let st: &mut DomState = &mut guard;
        let name = st.name.clone();
        let Some(live) = st.live.as_mut().filter(|l| l.generation == generation) else {
            return;
        };
        let events = &self.inner.events;
        match msg {
            MonitorMsg::Event(ev) => match ev.kind() {
                EventKind::Stop => {
                    if live.starting {
                        return;
                    }
                    let reason = live.pause_reason.take().unwrap_or(PAUSED_UNKNOWN);
                    if st.state == DomainState::Running {
                        st.state = DomainState::Paused;
                        st.reason = reason;
                        events.lifecycle(uuid, &name, Lifecycle::SuspendedPaused);
                    }
                }
                EventKind::Resume => {
                    if live.starting {
                        return;
                    }
                    if st.state == DomainState::Paused {
                        st.state = DomainState::Running;
                        st.reason = RUNNING_UNPAUSED;
                        events.lifecycle(uuid, &name, Lifecycle::ResumedUnpaused);
                    }
                }
                EventKind::Shutdown { guest, reason } => {
                    if live.destroying {
                        return;
                    }
                    if guest && live.fake_reboot {
                        // libvirt's fake reboot: the guest powered off at our
                        // request; reset and continue instead of stopping.
                        live.fake_reboot = false;
                        let qmp = live.qmp.clone();
                        tokio::spawn(async move {
                            if let Err(e) = qmp.execute(qmp::SystemReset {}).await {
                                tracing::warn!("fake reboot: system_reset failed: {e}");
                            } else if let Err(e) = qmp.execute(qmp::Cont {}).await {
                                tracing::warn!("fake reboot: cont failed: {e}");
                            }
                        });
                        return;
                    }
                    live.got_shutdown = true;
                    let pid = live.pid;
                    st.state = DomainState::Shutdown;
                    st.reason = SHUTDOWN_USER;
                    let ev = if guest {
                        Lifecycle::ShutdownGuest
                    } else {
                        Lifecycle::ShutdownHost
                    };
                    events.lifecycle(uuid, &name, ev);
                    // With -no-shutdown a guest poweroff leaves QEMU paused;
                    // on_poweroff=destroy (the default) ends it. A host-side
                    // cause (signal, quit) is ending it already.
                    if guest && reason == "guest-shutdown" {
                        let _ = process::signal(pid, Signal::SIGTERM);
                    }
                }
                EventKind::Reset { .. } => events.reboot(uuid, &name),
                EventKind::GuestPanicked => {
                    st.state = DomainState::Crashed;
                    st.reason = CRASHED_PANICKED;
                    events.lifecycle(uuid, &name, Lifecycle::CrashedPanicked);
                }
                EventKind::Powerdown | EventKind::Other => {}
            },
            MonitorMsg::Eof => {
                let (ev, reason) = if live.destroying {
                    (Some(Lifecycle::StoppedDestroyed), SHUTOFF_DESTROYED)
                } else if live.starting {
                    // A failed start is reported to the caller, not as an event.
                    (None, SHUTOFF_FAILED)
                } else if live.got_shutdown {
                    (Some(Lifecycle::StoppedShutdown), SHUTOFF_SHUTDOWN)
                } else {
                    // Gone without a SHUTDOWN event: QEMU crashed or was
                    // killed behind our back (libvirt's "failed").
                    (Some(Lifecycle::StoppedFailed), SHUTOFF_SHUTDOWN)
                };
                live.paths.cleanup();
                st.live = None;
                st.state = DomainState::Shutoff;
                st.reason = reason;
                if let Some(ev) = ev {
                    events.lifecycle(uuid, &name, ev);
                }
                if st.config.is_none() {
                    st.removed = true;
                    drop(guard);
                    self.remove_from_list(&dom);
                }
            }
        }
    }

    /// The running guest's monitor, or "domain is not running".
    fn active(&self, dom: &Dom) -> Result<Arc<Qmp>> {
        let st = dom.lock();
        match &st.live {
            Some(l) if !l.starting => Ok(l.qmp.clone()),
            _ => Err(err::not_running()),
        }
    }

    pub async fn suspend(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let qmp = {
            let mut guard = dom.lock();
            let st: &mut DomState = &mut guard;
            match st.live.as_mut() {
                Some(l) if !l.starting => {
                    if st.state == DomainState::Paused {
                        return Ok(());
                    }
                    l.pause_reason = Some(PAUSED_USER);
                    l.qmp.clone()
                }
                _ => return Err(err::not_running()),
            }
        };
        qmp.execute(qmp::Stop {}).await.map_err(err::qmp)?;
        // QEMU sends STOP before the reply, so the event handler has run;
        // this only covers a QEMU that did not send it.
        let mut st = dom.lock();
        if st.live.is_some() && st.state == DomainState::Running {
            st.state = DomainState::Paused;
            st.reason = PAUSED_USER;
            let name = st.name.clone();
            self.inner
                .events
                .lifecycle(&dom.uuid, &name, Lifecycle::SuspendedPaused);
        }
        Ok(())
    }

    pub async fn resume(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let qmp = self.active(&dom)?;
        if dom.lock().state != DomainState::Paused {
            return Ok(());
        }
        qmp.execute(qmp::Cont {}).await.map_err(err::qmp)?;
        let mut st = dom.lock();
        if st.live.is_some() && st.state == DomainState::Paused {
            st.state = DomainState::Running;
            st.reason = RUNNING_UNPAUSED;
            let name = st.name.clone();
            self.inner
                .events
                .lifecycle(&dom.uuid, &name, Lifecycle::ResumedUnpaused);
        }
        Ok(())
    }

    /// ACPI power button; the guest decides.
    pub async fn shutdown(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let qmp = self.active(&dom)?;
        qmp.execute(qmp::SystemPowerdown {})
            .await
            .map_err(err::qmp)?;
        Ok(())
    }

    /// libvirt's fake reboot: power button, and on the guest's SHUTDOWN a
    /// reset and `cont` instead of stopping.
    pub async fn reboot(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let qmp = {
            let mut st = dom.lock();
            match st.live.as_mut() {
                Some(l) if !l.starting => {
                    l.fake_reboot = true;
                    l.qmp.clone()
                }
                _ => return Err(err::not_running()),
            }
        };
        qmp.execute(qmp::SystemPowerdown {})
            .await
            .map_err(err::qmp)?;
        Ok(())
    }

    pub async fn reset(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let qmp = self.active(&dom)?;
        qmp.execute(qmp::SystemReset {}).await.map_err(err::qmp)?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL after a grace period (never with
    /// `graceful`); returns once QEMU is gone and the state recorded.
    pub async fn destroy(&self, r: Option<&pb::ObjectRef>, graceful: bool) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let (qmp, pid) = {
            let mut st = dom.lock();
            match st.live.as_mut() {
                Some(l) => {
                    l.destroying = true;
                    (l.qmp.clone(), l.pid)
                }
                None => return Err(err::not_running()),
            }
        };
        process::signal(pid, Signal::SIGTERM).map_err(err::process)?;
        let exited = tokio::time::timeout(DESTROY_GRACE, qmp.closed())
            .await
            .is_ok();
        if !exited {
            if graceful {
                if let Some(l) = dom.lock().live.as_mut() {
                    l.destroying = false;
                }
                return Err(err::qemu(
                    ErrorCode::SystemError,
                    format!(
                        "Failed to terminate process {pid} with SIGTERM: Device or resource busy"
                    ),
                ));
            }
            process::signal(pid, Signal::SIGKILL).map_err(err::process)?;
            if tokio::time::timeout(KILL_WAIT, qmp.closed()).await.is_err() {
                return Err(err::qemu(
                    ErrorCode::SystemError,
                    format!("Failed to kill process {pid}: Device or resource busy"),
                ));
            }
        }
        // The monitor closes as QEMU exits; wait until the process itself
        // is gone too, so its memory and devices are released on return.
        process::wait_gone(pid, KILL_WAIT).await;
        Ok(())
    }

    /// Reattach to a guest a previous instance started.
    async fn reconnect(&self, status: LiveStatus) {
        let paths = RunPaths::new(&self.inner.cfg.run_dir, &status.uuid);
        let dom = match self.find_uuid(&status.uuid) {
            Some(d) => d,
            None => {
                if status.persistent {
                    tracing::warn!(
                        "guest {} was persistent but its config is gone; keeping it as transient",
                        status.name
                    );
                }
                self.insert(status.uuid.clone(), status.name.clone(), None)
            }
        };
        let def = match DomainDef::parse(&status.xml) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("live status of {}: {e}", status.name);
                return self.mark_gone(&dom, &paths);
            }
        };
        let alive = process::is_our_qemu(status.pid, &status.monitor);
        let qmp = if alive {
            let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
            match Qmp::connect(&status.monitor, self.sink(&dom.uuid, generation)).await {
                Ok(q) => Some((Arc::new(q), generation)),
                Err(e) => {
                    tracing::warn!("guest {}: cannot reconnect: {e}", status.name);
                    None
                }
            }
        } else {
            None
        };
        let Some((qmp, generation)) = qmp else {
            tracing::info!("guest {} exited while the service was down", status.name);
            return self.mark_gone(&dom, &paths);
        };
        let run = qmp.execute(qmp::QueryStatus {}).await;
        self.inner
            .next_id
            .fetch_max(status.id + 1, Ordering::Relaxed);
        let mut st = dom.lock();
        st.live = Some(Live {
            id: status.id,
            pid: status.pid,
            def,
            qmp: qmp.clone(),
            paths,
            generation,
            starting: false,
            destroying: false,
            got_shutdown: false,
            fake_reboot: false,
            pause_reason: None,
        });
        match run {
            Ok(s) if s.running => {
                st.state = DomainState::Running;
                st.reason = RUNNING_UNKNOWN;
            }
            Ok(s) if s.status == "shutdown" => {
                // Powered off while we were away; finish what on_poweroff
                // (destroy) asks.
                st.state = DomainState::Shutdown;
                st.reason = SHUTDOWN_USER;
                if let Some(l) = st.live.as_mut() {
                    l.got_shutdown = true;
                    let _ = process::signal(l.pid, Signal::SIGTERM);
                }
            }
            Ok(_) => {
                st.state = DomainState::Paused;
                st.reason = PAUSED_USER;
            }
            Err(e) => {
                tracing::warn!("guest {}: query-status failed: {e}", status.name);
                st.state = DomainState::Running;
                st.reason = RUNNING_UNKNOWN;
            }
        }
        tracing::info!("reconnected to guest {} (pid {})", status.name, status.pid);
    }

    /// A guest that is gone: shut off, its files removed, and a transient
    /// one forgotten.
    fn mark_gone(&self, dom: &Arc<Dom>, paths: &RunPaths) {
        paths.cleanup();
        let mut st = dom.lock();
        st.live = None;
        st.state = DomainState::Shutoff;
        st.reason = SHUTOFF_UNKNOWN;
        let name = st.name.clone();
        let transient = st.config.is_none();
        if transient {
            st.removed = true;
        }
        drop(st);
        self.inner
            .events
            .lifecycle(&dom.uuid, &name, Lifecycle::StoppedFailed);
        if transient {
            self.remove_from_list(dom);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixStream;
    use virtmesh_proto::v1::event::Kind;

    const XML: &str = "<domain type='kvm'><name>sm</name><memory unit='MiB'>128</memory><os><type machine='q35'>hvm</type></os></domain>";

    /// A driver whose domain `sm` is "running" on a fake QEMU: the other
    /// end of a socket pair, through which the test sends QMP events.
    async fn fake_running(persistent: bool) -> (tempfile::TempDir, QemuDriver, UnixStream, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let driver = QemuDriver::new(QemuConfig {
            state_dir: dir.path().join("state"),
            run_dir: dir.path().join("run"),
            emulator: "/nonexistent".into(),
        })
        .await
        .expect("driver");
        let (uuid, def) = if persistent {
            let v = driver.define(XML).expect("define");
            (v.uuid, v.def)
        } else {
            let def = DomainDef::parse(XML).expect("valid");
            let uuid = def.uuid();
            driver.insert(uuid.clone(), "sm".into(), None);
            (uuid, def)
        };
        let (ours, mut theirs) = UnixStream::pair().expect("socketpair");
        theirs
            .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
            .await
            .expect("greeting");
        let generation = 42;
        let qmp = Qmp::from_stream(ours, driver.sink(&uuid, generation))
            .await
            .expect("qmp");
        let dom = driver.find_uuid(&uuid).expect("domain");
        let mut st = dom.lock();
        st.live = Some(Live {
            id: 1,
            // No real process: signals to pid 0 are skipped.
            pid: 0,
            def,
            qmp: Arc::new(qmp),
            paths: RunPaths::new(&dir.path().join("run"), &uuid),
            generation,
            starting: false,
            destroying: false,
            got_shutdown: false,
            fake_reboot: false,
            pause_reason: None,
        });
        st.state = DomainState::Running;
        st.reason = RUNNING_BOOTED;
        drop(st);
        (dir, driver, theirs, uuid)
    }

    async fn next(rx: &mut tokio::sync::broadcast::Receiver<pb::Event>) -> String {
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("event in time")
            .expect("event");
        match ev.kind {
            Some(Kind::DomainLifecycle(l)) => format!("{}/{}", l.r#type, l.detail_name),
            Some(Kind::DomainReboot(_)) => "reboot".into(),
            other => format!("{other:?}"),
        }
    }

    fn state(driver: &QemuDriver) -> (DomainState, &'static str) {
        let v = driver
            .lookup(Some(&pb::ObjectRef {
                key: Some(pb::object_ref::Key::Name("sm".into())),
            }))
            .expect("lookup");
        (v.state, reason_name(v.state, v.reason))
    }

    #[test]
    fn explicit_state_dir_holds_the_run_dir() {
        let cfg = QemuConfig::system(Some("/srv/vm".into()));
        assert_eq!(cfg.state_dir, PathBuf::from("/srv/vm"));
        assert_eq!(cfg.run_dir, PathBuf::from("/srv/vm/run"));
        assert_eq!(cfg.emulator, PathBuf::from(crate::def::DEFAULT_EMULATOR));
    }

    #[tokio::test]
    async fn state_follows_qmp_events() {
        let (_dir, driver, mut qemu, _) = fake_running(true).await;
        let mut rx = driver.events().subscribe();
        qemu.write_all(b"{\"event\": \"STOP\", \"timestamp\": {}}\n")
            .await
            .expect("write");
        assert_eq!(next(&mut rx).await, "3/paused");
        assert_eq!(state(&driver), (DomainState::Paused, "unknown"));
        qemu.write_all(
            b"{\"event\": \"RESUME\"}\n{\"event\": \"RESET\", \"data\": {\"guest\": true}}\n",
        )
        .await
        .expect("write");
        assert_eq!(next(&mut rx).await, "4/unpaused");
        assert_eq!(next(&mut rx).await, "reboot");
        assert_eq!(state(&driver), (DomainState::Running, "unpaused"));
        qemu.write_all(b"{\"event\": \"SOMETHING_NEW\"}\n{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\n")
            .await
            .expect("write");
        assert_eq!(next(&mut rx).await, "6/guest");
        assert_eq!(state(&driver), (DomainState::Shutdown, "user"));
        drop(qemu);
        assert_eq!(next(&mut rx).await, "5/shutdown");
        assert_eq!(state(&driver), (DomainState::Shutoff, "shutdown"));
    }

    #[tokio::test]
    async fn unexpected_eof_is_failed_and_transient_domains_vanish() {
        let (_dir, driver, qemu, uuid) = fake_running(false).await;
        let mut rx = driver.events().subscribe();
        drop(qemu);
        assert_eq!(next(&mut rx).await, "5/failed");
        assert!(driver.find_uuid(&uuid).is_none());
        assert!(driver.list().is_empty());
    }
}
