//! The driver core: network objects, their lifecycle on the host,
//! persistence and recovery.
//!
//! `lifecycle` brings networks up and down, `recovery` finds them after
//! a restart, `update` changes live and persistent definitions.
//!
//! Locking: `nets` is a short-held std mutex, never held across an await.
//! Every operation that changes anything (define, start, destroy, update,
//! …) runs under the single async `job` lock: networks change rarely, and
//! one job at a time keeps bridge-name allocation, the host plumbing and
//! the files consistent without finer locks. Lock order: job, then nets.

mod lifecycle;
mod ports;
mod qos;
mod recovery;
mod update;

use crate::def::{self, ForwardMode, NetDef};
use crate::dnsmasq::{self, DnsmasqPaths};
use crate::error::{self as err, Result};
use crate::events::{EventHub, NetworkEvents};
use crate::firewall;
use crate::leases;
use crate::port::PortDef;
use crate::status::{self, LiveStatus, StateError, Store};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use virtmesh_conf::network::NetworkDef;
use virtmesh_proto::v1::{self as pb, NetworkEventType as Ev, object_ref::Key};
use virtmesh_rpc::VirtError;
use virtmesh_util::netlink::{Netlink, NetlinkError};

/// Where the driver keeps things.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Persistent configs, autostart marks, dnsmasq configs and leases
    /// (default /var/lib/virtmesh/network; libvirt's /var/lib/libvirt).
    pub state_dir: PathBuf,
    /// Live status and dnsmasq pid files (default /run/virtmesh/network;
    /// libvirt's /run/libvirt).
    pub run_dir: PathBuf,
}

impl NetworkConfig {
    /// The defaults (DESIGN.md §6): as root, /var/lib/virtmesh/network and
    /// /run/virtmesh/network; otherwise under $XDG_DATA_HOME (or
    /// ~/.local/share) and $XDG_RUNTIME_DIR. An explicit `--state-dir`
    /// keeps everything in one place: the run directory goes beneath it.
    pub fn system(state_dir: Option<PathBuf>) -> NetworkConfig {
        let d = virtmesh_util::dirs::service_dirs("network", state_dir);
        NetworkConfig {
            state_dir: d.state_dir,
            run_dir: d.run_dir,
        }
    }
}

/// An active network: its live definition and what its start created.
#[derive(Debug, Clone)]
struct Live {
    def: NetDef,
    status: LiveStatus,
    /// Ports handed out to guests (they exist only while active).
    ports: Vec<PortDef>,
}

#[derive(Debug, Clone)]
struct Net {
    uuid: String,
    name: String,
    /// The persistent config; `None` for a transient network.
    config: Option<NetDef>,
    live: Option<Live>,
    autostart: bool,
}

impl Net {
    fn summary(&self) -> pb::NetworkSummary {
        pb::NetworkSummary {
            uuid: self.uuid.clone(),
            name: self.name.clone(),
            active: self.live.is_some(),
            persistent: self.config.is_some(),
            autostart: self.autostart,
        }
    }

    /// The definition that describes the network now: the live one when
    /// active, else the config.
    fn current(&self) -> Option<&NetDef> {
        self.live.as_ref().map(|l| &l.def).or(self.config.as_ref())
    }
}

struct Inner {
    /// Held for the driver's life: one driver per state directory.
    _lock: nix::fcntl::Flock<std::fs::File>,
    cfg: NetworkConfig,
    store: Store,
    netlink: Netlink,
    nets: Mutex<Vec<Net>>,
    job: tokio::sync::Mutex<()>,
    events: EventHub,
}

/// The network driver. Cheap to clone; every clone is the same driver.
#[derive(Clone)]
pub struct NetworkDriver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NetworkDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkDriver")
            .field("state_dir", &self.inner.cfg.state_dir)
            .field("run_dir", &self.inner.cfg.run_dir)
            .finish_non_exhaustive()
    }
}

/// Why the driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot lock '{path}': {message}")]
    Lock { path: String, message: String },
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// `<forward><interface dev connections>` for a macvtap network's pool
/// (virNetworkForwardDefFormat, live only): the pool as the start found
/// it, so VFs of a `<pf>` show too, each with its count when in use.
fn show_pool_connections(root: &mut virtmesh_conf::xml::Element, live: &Live) {
    use virtmesh_conf::xml::{Element, Node};
    if live.def.macvtap_mode().is_none() {
        return;
    }
    let Some(fwd) = root.child_mut("forward") else {
        return;
    };
    for dev in &live.status.pool {
        let n = ports::connections(live, dev);
        let exists = fwd
            .children_named("interface")
            .any(|i| i.attr("dev") == Some(dev.as_str()));
        if !exists {
            fwd.children.push(Node::Element(
                Element::new("interface").with_attr("dev", dev.as_str()),
            ));
        }
        if let Some(iface) = fwd
            .elements_mut()
            .find(|i| i.name == "interface" && i.attr("dev") == Some(dev.as_str()))
            && n > 0
        {
            iface.set_attr("connections", n.to_string());
        }
    }
}

fn state_err(e: StateError) -> VirtError {
    err::system(e)
}

/// Take the state directory (util::dirs): a second driver on it would
/// fight over the same host resources.
fn lock_dir(dir: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>, DriverError> {
    virtmesh_util::dirs::try_lock_state_dir(dir, "network").map_err(|e| DriverError::Lock {
        path: e.path,
        message: e.message,
    })
}

impl NetworkDriver {
    /// Open the driver: load configs, find the networks a previous instance
    /// left running (without disturbing them), then start the autostart
    /// networks. Must run inside a tokio runtime, on a thread in the
    /// network namespace the driver is to manage.
    pub async fn new(cfg: NetworkConfig) -> Result<NetworkDriver, DriverError> {
        for d in [
            cfg.state_dir.clone(),
            cfg.state_dir.join("dnsmasq"),
            cfg.run_dir.clone(),
            cfg.run_dir.join("network"),
        ] {
            status::mkdir(&d)?;
        }
        let lock = lock_dir(&cfg.state_dir)?;
        let store = Store {
            state_dir: cfg.state_dir.clone(),
            run_dir: cfg.run_dir.clone(),
        };
        let mut nets = Vec::new();
        for (path, text) in store.load_configs() {
            let parsed = text.and_then(|t| NetDef::parse(&t).map_err(|e| e.to_string()));
            match parsed {
                Ok(def) => nets.push(Net {
                    uuid: def.uuid.clone(),
                    name: def.name.clone(),
                    autostart: store.is_autostart(&def.name),
                    config: Some(def),
                    live: None,
                }),
                Err(e) => tracing::error!("skipping network config {}: {e}", path.display()),
            }
        }
        let driver = NetworkDriver {
            inner: Arc::new(Inner {
                _lock: lock,
                netlink: Netlink::open()?,
                cfg,
                store,
                nets: Mutex::new(nets),
                job: tokio::sync::Mutex::new(()),
                events: EventHub::default(),
            }),
        };
        driver.recover().await;
        driver.autostart().await;
        Ok(driver)
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.inner.cfg
    }

    pub fn events(&self) -> EventHub {
        self.inner.events.clone()
    }

    fn nets(&self) -> MutexGuard<'_, Vec<Net>> {
        self.inner.nets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn paths(&self, name: &str) -> DnsmasqPaths {
        DnsmasqPaths::new(&self.inner.cfg.state_dir, &self.inner.cfg.run_dir, name)
    }

    /// Find a network by reference; returns a snapshot.
    fn find(&self, r: Option<&pb::ObjectRef>) -> Result<Net> {
        let key = r
            .and_then(|r| r.key.as_ref())
            .ok_or_else(err::missing_ref)?;
        let nets = self.nets();
        match key {
            Key::Uuid(u) => {
                let want = virtmesh_conf::error::parse_uuid_str(u)
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| u.clone());
                nets.iter()
                    .find(|n| n.uuid.eq_ignore_ascii_case(&want))
                    .cloned()
                    .ok_or_else(|| err::no_network_uuid(u))
            }
            Key::Name(name) => nets
                .iter()
                .find(|n| &n.name == name)
                .cloned()
                .ok_or_else(|| err::no_network_name(name)),
            Key::Id(_) => Err(err::invalid_arg("networks have no numeric id")),
        }
    }

    fn with_net<T>(&self, uuid: &str, f: impl FnOnce(&mut Net) -> T) -> Option<T> {
        let mut nets = self.nets();
        nets.iter_mut().find(|n| n.uuid == uuid).map(f)
    }

    fn remove_net(&self, uuid: &str) {
        self.nets().retain(|n| n.uuid != uuid);
    }

    pub fn lookup(&self, r: Option<&pb::ObjectRef>) -> Result<pb::NetworkSummary> {
        Ok(self.find(r)?.summary())
    }

    pub fn list(&self, f: &pb::ListFilter) -> Vec<pb::NetworkSummary> {
        // Within a pair, neither or both set means no filter (libvirt).
        let pass = |yes: bool, no: bool, v: bool| yes == no || (yes && v) || (no && !v);
        let mut out: Vec<pb::NetworkSummary> = self
            .nets()
            .iter()
            .map(Net::summary)
            .filter(|s| {
                pass(f.active, f.inactive, s.active)
                    && pass(f.persistent, f.transient, s.persistent)
                    && pass(f.autostart, f.no_autostart, s.autostart)
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn xml_desc(&self, r: Option<&pb::ObjectRef>, inactive: bool) -> Result<String> {
        let net = self.find(r)?;
        if !inactive && let Some(live) = &net.live {
            // The live XML counts the ports in use, as libvirt's does,
            // for the network and for each pool interface in use.
            if live.ports.is_empty() && live.def.macvtap_mode().is_none() {
                return Ok(live.def.to_xml());
            }
            let mut root = live.def.def.element().clone();
            if !live.ports.is_empty() {
                root.set_attr("connections", live.ports.len().to_string());
            }
            show_pool_connections(&mut root, live);
            return Ok(root.to_xml());
        }
        net.config
            .as_ref()
            .or(net.live.as_ref().map(|l| &l.def))
            .map(NetDef::to_xml)
            .ok_or_else(|| err::internal("network has no definition"))
    }

    pub fn info(&self, r: Option<&pb::ObjectRef>) -> Result<pb::NetworkInfo> {
        let net = self.find(r)?;
        let s = net.summary();
        Ok(pb::NetworkInfo {
            uuid: s.uuid,
            name: s.name,
            active: s.active,
            persistent: s.persistent,
            autostart: s.autostart,
            bridge: net
                .current()
                .and_then(|d| d.bridge.clone())
                .unwrap_or_default(),
        })
    }

    pub fn bridge_name(&self, r: Option<&pb::ObjectRef>) -> Result<String> {
        let net = self.find(r)?;
        net.current().and_then(|d| d.bridge.clone()).ok_or_else(|| {
            err::internal(format!(
                "network '{}' does not have a bridge name.",
                net.name
            ))
        })
    }

    pub fn get_autostart(&self, r: Option<&pb::ObjectRef>) -> Result<bool> {
        Ok(self.find(r)?.autostart)
    }

    pub async fn set_autostart(&self, r: Option<&pb::ObjectRef>, on: bool) -> Result<()> {
        let _job = self.inner.job.lock().await;
        let net = self.find(r)?;
        if net.config.is_none() {
            return Err(err::invalid_op(
                "cannot set autostart for transient network",
            ));
        }
        self.inner
            .store
            .set_autostart(&net.name, on)
            .map_err(state_err)?;
        self.with_net(&net.uuid, |n| n.autostart = on);
        Ok(())
    }

    /// Whether a bridge name is used by a network other than `uuid`.
    fn bridge_used_by_other(&self, bridge: &str, uuid: &str) -> bool {
        self.nets().iter().any(|n| {
            n.uuid != uuid
                && [n.config.as_ref(), n.live.as_ref().map(|l| &l.def)]
                    .into_iter()
                    .flatten()
                    .any(|d| d.bridge.as_deref() == Some(bridge))
        })
    }

    /// Parse, check against existing networks (libvirt's
    /// virNetworkObjAssignDef rules) and fill defaults.
    async fn prepare(&self, xml: &str, check_live: bool) -> Result<NetDef> {
        let parsed = NetworkDef::parse(xml).map_err(err::conf)?;
        let had_uuid = virtmesh_conf::xml::parse(xml)
            .ok()
            .is_some_and(|root| root.child("uuid").is_some());
        let mut parsed = parsed;
        let same_name = self
            .nets()
            .iter()
            .find(|n| n.name == parsed.name())
            .cloned();
        if !had_uuid && let Some(existing) = &same_name {
            // A redefinition without a UUID keeps the network's UUID.
            let mut root = parsed.element().clone();
            root.set_child_text("uuid", existing.uuid.clone());
            parsed = NetworkDef::from_element(root).map_err(err::conf)?;
        }
        let uuid = parsed.uuid();
        let name = parsed.name();
        let by_uuid = self.nets().iter().find(|n| n.uuid == uuid).cloned();
        match (by_uuid, same_name) {
            (Some(existing), _) if existing.name != name => {
                return Err(err::operation_failed(format!(
                    "network '{}' is already defined with uuid {uuid}",
                    existing.name
                )));
            }
            (Some(existing), _) if check_live && existing.live.is_some() => {
                return Err(err::invalid_op(&format!(
                    "network is already active as '{}'",
                    existing.name
                )));
            }
            (None, Some(existing)) => {
                return Err(err::operation_failed(format!(
                    "network '{name}' already exists with uuid {}",
                    existing.uuid
                )));
            }
            _ => {}
        }
        // Bridge names taken: other networks' and the host's links.
        let host_links = self.inner.netlink.link_names().await.unwrap_or_default();
        let keep_bridge = self
            .nets()
            .iter()
            .find(|n| n.uuid == uuid)
            .and_then(|n| n.current().and_then(|d| d.bridge.clone()));
        let filled = def::fill_defaults(parsed, &|b: &str| {
            self.bridge_used_by_other(b, &uuid)
                || (host_links.iter().any(|l| l == b) && keep_bridge.as_deref() != Some(b))
        })?;
        let def = NetDef::from_def(filled);
        if let Some(b) = &def.bridge
            && def.mode.has_own_bridge()
            && self.bridge_used_by_other(b, &uuid)
        {
            return Err(err::internal(format!("bridge name '{b}' already in use.")));
        }
        Ok(def)
    }

    pub async fn define_xml(&self, xml: &str) -> Result<pb::NetworkSummary> {
        let _job = self.inner.job.lock().await;
        let def = self.prepare(xml, false).await?;
        self.inner
            .store
            .save_config(&def.name, &def.to_xml())
            .map_err(state_err)?;
        let (uuid, name) = (def.uuid.clone(), def.name.clone());
        let updated = self.with_net(&uuid, |n| n.config = Some(def.clone()));
        if updated.is_none() {
            self.nets().push(Net {
                uuid: uuid.clone(),
                name: name.clone(),
                config: Some(def),
                live: None,
                autostart: false,
            });
        }
        self.inner
            .events
            .lifecycle(&uuid, &name, Ev::NetworkEventDefined);
        self.lookup_uuid(&uuid)
    }

    fn lookup_uuid(&self, uuid: &str) -> Result<pb::NetworkSummary> {
        self.find(Some(&pb::ObjectRef {
            key: Some(Key::Uuid(uuid.to_owned())),
        }))
        .map(|n| n.summary())
    }

    pub async fn undefine(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let _job = self.inner.job.lock().await;
        let net = self.find(r)?;
        if net.config.is_none() {
            return Err(err::invalid_op("can't undefine transient network"));
        }
        status::remove_file(&self.inner.store.config(&net.name)).map_err(state_err)?;
        self.inner
            .store
            .set_autostart(&net.name, false)
            .map_err(state_err)?;
        if net.live.is_some() {
            // An active network stays up, now transient (libvirt).
            self.with_net(&net.uuid, |n| {
                n.config = None;
                n.autostart = false;
                if let Some(l) = &mut n.live {
                    l.status.persistent = false;
                }
            });
            if let Some(st) = self
                .with_net(&net.uuid, |n| n.live.as_ref().map(|l| l.status.clone()))
                .flatten()
            {
                status::save_status(&self.inner.store.status(&net.name), &st).map_err(state_err)?;
            }
        } else {
            self.remove_net(&net.uuid);
            // Gone for good: its dnsmasq files and leases go too, as
            // libvirt's networkRemoveInactive removes them.
            let p = self.paths(&net.name);
            for f in [&p.conf, &p.hostsfile, &p.addnhosts, &p.leases] {
                if let Err(e) = status::remove_file(f) {
                    tracing::warn!("network {}: {e}", net.name);
                }
            }
        }
        self.inner
            .events
            .lifecycle(&net.uuid, &net.name, Ev::NetworkEventUndefined);
        Ok(())
    }
}
