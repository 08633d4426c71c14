//! Typed domain events with libvirt's numbers, and the Events service.
//! One broadcast channel per driver: a subscriber that falls behind skips
//! the oldest events instead of blocking the driver or other subscribers.

use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use virtmesh_proto::v1::{
    self as pb, DomainEventType as T, EventFamily, event::Kind, events_server::Events,
};

/// How many events a slow subscriber may lag before it skips.
const CAPACITY: usize = 1024;

/// The lifecycle events this driver emits: (type, detail) pairs with
/// libvirt's numbers (virDomainEvent*DetailType).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    DefinedAdded,
    DefinedUpdated,
    UndefinedRemoved,
    StartedBooted,
    SuspendedPaused,
    ResumedUnpaused,
    StoppedShutdown,
    StoppedDestroyed,
    StoppedFailed,
    ShutdownGuest,
    ShutdownHost,
    CrashedPanicked,
}

impl Lifecycle {
    pub fn parts(self) -> (T, i32, &'static str) {
        match self {
            Lifecycle::DefinedAdded => (T::DomainEventDefined, 0, "added"),
            Lifecycle::DefinedUpdated => (T::DomainEventDefined, 1, "updated"),
            Lifecycle::UndefinedRemoved => (T::DomainEventUndefined, 0, "removed"),
            Lifecycle::StartedBooted => (T::DomainEventStarted, 0, "booted"),
            Lifecycle::SuspendedPaused => (T::DomainEventSuspended, 0, "paused"),
            Lifecycle::ResumedUnpaused => (T::DomainEventResumed, 0, "unpaused"),
            Lifecycle::StoppedShutdown => (T::DomainEventStopped, 0, "shutdown"),
            Lifecycle::StoppedDestroyed => (T::DomainEventStopped, 1, "destroyed"),
            Lifecycle::StoppedFailed => (T::DomainEventStopped, 5, "failed"),
            Lifecycle::ShutdownGuest => (T::DomainEventShutdown, 1, "guest"),
            Lifecycle::ShutdownHost => (T::DomainEventShutdown, 2, "host"),
            Lifecycle::CrashedPanicked => (T::DomainEventCrashed, 0, "panicked"),
        }
    }
}

/// The driver's event fan-out.
#[derive(Debug, Clone)]
pub struct EventHub {
    tx: broadcast::Sender<pb::Event>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

fn object_id(uuid: &str, name: &str) -> Option<pb::ObjectId> {
    Some(pb::ObjectId {
        uuid: uuid.to_owned(),
        name: name.to_owned(),
    })
}

impl EventHub {
    fn send(&self, kind: Kind) {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        // No subscriber is not an error: events are fire and forget.
        let _ = self.tx.send(pb::Event {
            timestamp,
            kind: Some(kind),
        });
    }

    pub fn lifecycle(&self, uuid: &str, name: &str, ev: Lifecycle) {
        let (ty, detail, detail_name) = ev.parts();
        tracing::debug!(uuid, name, ?ev, "domain event");
        self.send(Kind::DomainLifecycle(pb::DomainLifecycle {
            domain: object_id(uuid, name),
            r#type: ty as i32,
            detail,
            detail_name: detail_name.to_owned(),
        }));
    }

    pub fn metadata(&self, uuid: &str, name: &str, metadata_type: i32, nsuri: &str) {
        self.send(Kind::DomainMetadata(pb::DomainMetadataChange {
            domain: object_id(uuid, name),
            metadata_type,
            nsuri: nsuri.to_owned(),
        }));
    }

    pub fn reboot(&self, uuid: &str, name: &str) {
        self.send(Kind::DomainReboot(pb::DomainReboot {
            domain: object_id(uuid, name),
        }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<pb::Event> {
        self.tx.subscribe()
    }
}

/// Whether `ev` passes a Watch request's filters.
fn wanted(req: &pb::WatchRequest, ev: &pb::Event) -> bool {
    let domain = match &ev.kind {
        Some(Kind::DomainLifecycle(e)) => e.domain.as_ref(),
        Some(Kind::DomainReboot(e)) => e.domain.as_ref(),
        Some(Kind::DomainMetadata(e)) => e.domain.as_ref(),
        _ => return false,
    };
    let families_ok = req.families.is_empty()
        || req
            .families
            .iter()
            .any(|f| *f == EventFamily::All as i32 || *f == EventFamily::Domain as i32);
    let uuid_ok = req.object_uuid.is_empty()
        || domain.is_some_and(|d| d.uuid.eq_ignore_ascii_case(&req.object_uuid));
    let name_ok = req.object_name.is_empty() || domain.is_some_and(|d| d.name == req.object_name);
    families_ok && uuid_ok && name_ok
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

/// The Events service of one driver.
#[derive(Debug, Clone)]
pub struct EventsService {
    hub: EventHub,
}

impl EventsService {
    pub fn new(hub: EventHub) -> Self {
        EventsService { hub }
    }
}

#[tonic::async_trait]
impl Events for EventsService {
    type WatchStream = EventStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let req = request.into_inner();
        let stream = BroadcastStream::new(self.hub.subscribe()).filter_map(move |r| match r {
            Ok(ev) if wanted(&req, &ev) => Some(Ok(ev)),
            // Lagged: the oldest events are gone; carry on with the rest.
            _ => None,
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
