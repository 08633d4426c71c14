//! The domain events this driver emits, with libvirt's numbers, as
//! convenience emitters over the shared hub (`virtmesh_rpc::events`).

use virtmesh_proto::v1::{self as pb, DomainEventType as T, event::Kind};
use virtmesh_rpc::events::{domain_lifecycle, object_id};

pub use virtmesh_rpc::events::{EventHub, EventStream, EventsService};

/// The lifecycle events this driver emits: (type, detail) pairs with
/// libvirt's numbers (virDomainEvent*DetailType).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    DefinedAdded,
    DefinedUpdated,
    UndefinedRemoved,
    StartedBooted,
    StartedRestored,
    SuspendedPaused,
    ResumedUnpaused,
    StoppedShutdown,
    StoppedDestroyed,
    StoppedSaved,
    StoppedFailed,
    ShutdownGuest,
    ShutdownHost,
    CrashedPanicked,
}

impl Lifecycle {
    /// The event type and detail number; virsh's word for the detail comes
    /// from `virtmesh_proto::names::domain_event_detail`.
    pub fn parts(self) -> (T, i32) {
        match self {
            Lifecycle::DefinedAdded => (T::DomainEventDefined, 0),
            Lifecycle::DefinedUpdated => (T::DomainEventDefined, 1),
            Lifecycle::UndefinedRemoved => (T::DomainEventUndefined, 0),
            Lifecycle::StartedBooted => (T::DomainEventStarted, 0),
            Lifecycle::StartedRestored => (T::DomainEventStarted, 2),
            Lifecycle::SuspendedPaused => (T::DomainEventSuspended, 0),
            Lifecycle::ResumedUnpaused => (T::DomainEventResumed, 0),
            Lifecycle::StoppedShutdown => (T::DomainEventStopped, 0),
            Lifecycle::StoppedDestroyed => (T::DomainEventStopped, 1),
            Lifecycle::StoppedSaved => (T::DomainEventStopped, 4),
            Lifecycle::StoppedFailed => (T::DomainEventStopped, 5),
            Lifecycle::ShutdownGuest => (T::DomainEventShutdown, 1),
            Lifecycle::ShutdownHost => (T::DomainEventShutdown, 2),
            Lifecycle::CrashedPanicked => (T::DomainEventCrashed, 0),
        }
    }
}

/// The domain emitters of this driver, on the shared hub.
pub trait DomainEvents {
    fn lifecycle(&self, uuid: &str, name: &str, ev: Lifecycle);
    fn metadata(&self, uuid: &str, name: &str, metadata_type: i32, nsuri: &str);
    fn reboot(&self, uuid: &str, name: &str);
}

impl DomainEvents for EventHub {
    fn lifecycle(&self, uuid: &str, name: &str, ev: Lifecycle) {
        let (ty, detail) = ev.parts();
        tracing::debug!(uuid, name, ?ev, "domain event");
        self.send(domain_lifecycle(uuid, name, ty, detail));
    }

    fn metadata(&self, uuid: &str, name: &str, metadata_type: i32, nsuri: &str) {
        self.send(Kind::DomainMetadata(pb::DomainMetadataChange {
            domain: object_id(uuid, name),
            metadata_type,
            nsuri: nsuri.to_owned(),
        }));
    }

    fn reboot(&self, uuid: &str, name: &str) {
        self.send(Kind::DomainReboot(pb::DomainReboot {
            domain: object_id(uuid, name),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;
    use tonic::Request;
    use virtmesh_proto::v1::{EventFamily, events_server::Events};

    #[tokio::test]
    async fn watch_filters_by_object() {
        let hub = EventHub::default();
        let svc = EventsService::new(hub.clone());
        let req = pb::WatchRequest {
            families: vec![EventFamily::Domain as i32],
            object_uuid: String::new(),
            object_name: "b".into(),
        };
        let mut stream = svc
            .watch(Request::new(req))
            .await
            .expect("watch")
            .into_inner();
        hub.lifecycle("u1", "a", Lifecycle::StartedBooted);
        hub.lifecycle("u2", "b", Lifecycle::StoppedDestroyed);
        let ev = stream.next().await.expect("event").expect("ok");
        let Some(Kind::DomainLifecycle(l)) = ev.kind else {
            panic!("not lifecycle")
        };
        assert_eq!(l.r#type, T::DomainEventStopped as i32);
        assert_eq!(l.detail, 1);
        assert_eq!(l.detail_name, "destroyed");
        assert_eq!(l.domain.expect("id").name, "b");
    }
}
