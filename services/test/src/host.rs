//! One host of the test driver: every object family in memory behind one
//! lock, plus the host's event channel.  Calls are short and never await
//! while holding the lock, so a std mutex is the right tool.

use std::sync::{Mutex, MutexGuard};

use virtmesh_conf::domain::DomainDef;
use virtmesh_conf::misc::{
    InterfaceDef, NodeDeviceDef, NwFilterBindingDef, NwFilterDef, SecretDef,
};
use virtmesh_conf::network::NetworkDef;
use virtmesh_conf::storage::{PoolDef, VolDef};
use virtmesh_proto::v1::{self as pb, DomainState, event::Kind};

use virtmesh_rpc::events::EventHub;

/// The host's CPU and memory, as virNodeGetInfo reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub model: String,
    pub memory_kib: u64,
    pub cpus: u32,
    pub mhz: u32,
    pub nodes: u32,
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
}

impl Default for NodeInfo {
    /// libvirt's test driver defaults (defaultNodeInfo).
    fn default() -> Self {
        NodeInfo {
            model: "i686".into(),
            memory_kib: 3 * 1024 * 1024,
            cpus: 16,
            mhz: 1400,
            nodes: 2,
            sockets: 2,
            cores: 2,
            threads: 2,
        }
    }
}

/// A domain snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub name: String,
    pub description: Option<String>,
    pub parent: Option<String>,
    pub creation_time: i64,
    /// virsh's state word recorded in the snapshot ("running", "shutoff"...).
    pub state: String,
    pub def: DomainDef,
}

/// A domain, kept as libvirt's virDomainObj keeps it: `def` is the live
/// definition while running and the config otherwise; `new_def` holds the
/// persistent config while a persistent domain runs.
#[derive(Debug, Clone)]
pub struct DomainObj {
    pub def: DomainDef,
    pub new_def: Option<DomainDef>,
    pub persistent: bool,
    pub autostart: bool,
    pub state: DomainState,
    pub reason: i32,
    pub id: i32,
    pub managed_save: bool,
    pub snapshots: Vec<Snapshot>,
    pub current_snapshot: Option<String>,
}

impl DomainObj {
    pub fn new(def: DomainDef, persistent: bool) -> Self {
        DomainObj {
            def,
            new_def: None,
            persistent,
            autostart: false,
            state: DomainState::Shutoff,
            reason: 0,
            id: -1,
            managed_save: false,
            snapshots: Vec::new(),
            current_snapshot: None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.id >= 0
    }

    /// The persistent configuration (what `--inactive` shows).
    pub fn config(&self) -> &DomainDef {
        self.new_def.as_ref().unwrap_or(&self.def)
    }

    pub fn name(&self) -> String {
        self.def.name()
    }

    pub fn uuid(&self) -> String {
        self.def.uuid()
    }

    pub fn summary(&self) -> pb::DomainSummary {
        pb::DomainSummary {
            uuid: self.uuid(),
            name: self.name(),
            id: self.id,
            state: self.state as i32,
            persistent: self.persistent,
            autostart: self.autostart,
            has_managed_save: self.managed_save,
            has_snapshot: !self.snapshots.is_empty(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NetworkObj {
    pub def: NetworkDef,
    pub active: bool,
    pub persistent: bool,
    pub autostart: bool,
}

impl NetworkObj {
    pub fn summary(&self) -> pb::NetworkSummary {
        pb::NetworkSummary {
            uuid: self.def.uuid(),
            name: self.def.name(),
            active: self.active,
            persistent: self.persistent,
            autostart: self.autostart,
        }
    }
}

#[derive(Debug, Clone)]
pub struct VolObj {
    pub def: VolDef,
    pub path: String,
    /// Volume contents for upload/download, sparse up to `capacity`.
    pub data: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct PoolObj {
    pub def: PoolDef,
    pub active: bool,
    pub persistent: bool,
    pub autostart: bool,
    pub capacity: u64,
    pub vols: Vec<VolObj>,
}

/// libvirt's test driver gives every pool 100 GiB.
pub const POOL_CAPACITY: u64 = 100 * 1024 * 1024 * 1024;

impl PoolObj {
    pub fn new(def: PoolDef) -> Self {
        PoolObj {
            def,
            active: false,
            persistent: true,
            autostart: false,
            capacity: POOL_CAPACITY,
            vols: Vec::new(),
        }
    }

    pub fn allocation(&self) -> u64 {
        self.vols
            .iter()
            .fold(0u64, |acc, v| acc.saturating_add(v.def.allocation))
    }

    pub fn available(&self) -> u64 {
        self.capacity.saturating_sub(self.allocation())
    }

    pub fn summary(&self) -> pb::StoragePoolSummary {
        pb::StoragePoolSummary {
            uuid: self.def.uuid.clone(),
            name: self.def.name.clone(),
            active: self.active,
            persistent: self.persistent,
            autostart: self.autostart,
        }
    }

    pub fn xml(&self) -> String {
        self.def
            .to_xml(self.capacity, self.allocation(), self.available())
    }
}

#[derive(Debug, Clone)]
pub struct IfaceObj {
    pub def: InterfaceDef,
    pub active: bool,
}

#[derive(Debug, Clone)]
pub struct SecretObj {
    pub def: SecretDef,
    pub value: Option<Vec<u8>>,
}

/// Everything a host holds.
#[derive(Debug, Default)]
pub struct State {
    pub domains: Vec<DomainObj>,
    pub next_dom_id: i32,
    pub networks: Vec<NetworkObj>,
    pub pools: Vec<PoolObj>,
    pub ifaces: Vec<IfaceObj>,
    pub nodedevs: Vec<NodeDeviceDef>,
    pub secrets: Vec<SecretObj>,
    pub nwfilters: Vec<NwFilterDef>,
    pub bindings: Vec<NwFilterBindingDef>,
    /// Interfaces saved by ChangeBegin, restored by ChangeRollback.
    pub iface_backup: Option<Vec<IfaceObj>>,
    pub node_info: NodeInfo,
}

impl State {
    pub fn new() -> Self {
        State {
            next_dom_id: 1,
            ..State::default()
        }
    }

    /// Take the next domain id (libvirt's nextDomID counter).
    pub fn alloc_id(&mut self) -> i32 {
        let id = self.next_dom_id;
        self.next_dom_id = self.next_dom_id.saturating_add(1);
        id
    }
}

/// A test host: its state and its event channel.
#[derive(Debug)]
pub struct Host {
    pub uri: String,
    state: Mutex<State>,
    pub events: EventHub,
}

impl Host {
    pub fn new(uri: String, state: State) -> Self {
        let events = EventHub::new();
        Host {
            uri,
            state: Mutex::new(state),
            events,
        }
    }

    /// Lock the state.  A panic in another call cannot leave the state
    /// half-updated in a way we care about, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publish an event; nobody listening is fine.
    pub fn emit(&self, kind: Kind) {
        self.events.send(kind);
    }
}
