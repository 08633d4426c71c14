//! Storage pool events (virStoragePoolEventLifecycleType and the refresh
//! event) over the shared hub (`virtmesh_rpc::events`).

use virtmesh_proto::v1::{self as pb, StoragePoolEventType, event::Kind};
use virtmesh_rpc::events::object_id;

pub use virtmesh_rpc::events::{EventHub, EventsService};

pub trait PoolEvents {
    fn lifecycle(&self, uuid: &str, name: &str, ty: StoragePoolEventType);
    fn refreshed(&self, uuid: &str, name: &str);
}

impl PoolEvents for EventHub {
    fn lifecycle(&self, uuid: &str, name: &str, ty: StoragePoolEventType) {
        tracing::debug!(uuid, name, ?ty, "storage pool event");
        self.send(Kind::PoolLifecycle(pb::StoragePoolLifecycle {
            pool: object_id(uuid, name),
            r#type: ty as i32,
        }));
    }

    fn refreshed(&self, uuid: &str, name: &str) {
        self.send(Kind::PoolRefresh(pb::StoragePoolRefresh {
            pool: object_id(uuid, name),
        }));
    }
}
