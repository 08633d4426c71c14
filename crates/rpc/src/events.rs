//! The event plumbing every service shares for `virtmesh.v1.Events/Watch`:
//! one broadcast hub per driver or host, the Watch filter, and the stream
//! a Watch call returns.  A subscriber that falls behind loses the oldest
//! events (and is told nothing) rather than blocking the emitter or the
//! other subscribers.

use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use virtmesh_proto::names;
use virtmesh_proto::v1::{self as pb, EventFamily, event::Kind, events_server::Events};

/// How many events a slow subscriber may lag before it skips.
pub const CAPACITY: usize = 1024;

/// The stream a Watch call returns.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

/// A fan-out of typed events.  Clones share one channel.
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

impl EventHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// Publish an event stamped with the current time.  No subscriber is
    /// not an error: events are fire and forget.
    pub fn send(&self, kind: Kind) {
        let _ = self.tx.send(event(kind));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<pb::Event> {
        self.tx.subscribe()
    }
}

/// Wrap an event kind with the current time.
pub fn event(kind: Kind) -> pb::Event {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    pb::Event {
        timestamp,
        kind: Some(kind),
    }
}

pub fn object_id(uuid: &str, name: &str) -> Option<pb::ObjectId> {
    Some(pb::ObjectId {
        uuid: uuid.to_owned(),
        name: name.to_owned(),
    })
}

/// A domain lifecycle event, with virsh's word for its detail.
pub fn domain_lifecycle(uuid: &str, name: &str, ty: pb::DomainEventType, detail: i32) -> Kind {
    Kind::DomainLifecycle(pb::DomainLifecycle {
        domain: object_id(uuid, name),
        r#type: ty as i32,
        detail,
        detail_name: names::domain_event_detail(ty, detail)
            .unwrap_or("unknown")
            .to_owned(),
    })
}

/// The family and (uuid, name) of an event, for filtering.
fn classify(kind: &Kind) -> (EventFamily, Option<pb::ObjectId>) {
    match kind {
        Kind::DomainLifecycle(e) => (EventFamily::Domain, e.domain.clone()),
        Kind::DomainReboot(e) => (EventFamily::Domain, e.domain.clone()),
        Kind::DomainDevice(e) => (EventFamily::Domain, e.domain.clone()),
        Kind::DomainMetadata(e) => (EventFamily::Domain, e.domain.clone()),
        Kind::DomainRtcChange(e) => (EventFamily::Domain, e.domain.clone()),
        Kind::DomainWatchdog(e) => (EventFamily::Domain, e.domain.clone()),
        Kind::NetworkLifecycle(e) => (EventFamily::Network, e.network.clone()),
        Kind::PoolLifecycle(e) => (EventFamily::StoragePool, e.pool.clone()),
        Kind::PoolRefresh(e) => (EventFamily::StoragePool, e.pool.clone()),
        Kind::NodedevLifecycle(e) => (
            EventFamily::NodeDevice,
            Some(pb::ObjectId {
                uuid: String::new(),
                name: e.device.clone(),
            }),
        ),
        Kind::SecretLifecycle(e) => (EventFamily::Secret, e.secret.clone()),
        Kind::SecretValueChanged(e) => (EventFamily::Secret, e.secret.clone()),
    }
}

/// Whether `ev` passes the filter of a watch request.
pub fn matches(req: &pb::WatchRequest, ev: &pb::Event) -> bool {
    let Some(kind) = &ev.kind else {
        return false;
    };
    let (family, id) = classify(kind);
    let fam_ok = req.families.is_empty()
        || req
            .families
            .iter()
            .any(|f| *f == EventFamily::All as i32 || *f == family as i32);
    if !fam_ok {
        return false;
    }
    let id = id.unwrap_or_default();
    if !req.object_uuid.is_empty() && !req.object_uuid.eq_ignore_ascii_case(&id.uuid) {
        return false;
    }
    if !req.object_name.is_empty() && req.object_name != id.name {
        return false;
    }
    true
}

/// The events of `hub` that pass `filter`, from now on.
pub fn watch(hub: &EventHub, filter: pb::WatchRequest) -> EventStream {
    let stream = BroadcastStream::new(hub.subscribe()).filter_map(move |item| match item {
        Ok(ev) if matches(&filter, &ev) => Some(Ok(ev)),
        Ok(_) => None,
        // A lagging subscriber skips what it missed.
        Err(BroadcastStreamRecvError::Lagged(_)) => None,
    });
    Box::pin(stream)
}

/// The Events service over one hub.
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
        Ok(Response::new(watch(&self.hub, request.into_inner())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::DomainEventType as T;

    fn network(uuid: &str, name: &str) -> Kind {
        Kind::NetworkLifecycle(pb::NetworkLifecycle {
            network: object_id(uuid, name),
            r#type: pb::NetworkEventType::NetworkEventStarted as i32,
        })
    }

    #[test]
    fn filter_by_family_uuid_and_name() {
        let dom = event(domain_lifecycle("ABC", "vm1", T::DomainEventStarted, 0));
        let net = event(network("n1", "default"));
        let nodedev = event(Kind::NodedevLifecycle(pb::NodeDeviceLifecycle {
            device: "pci_0000_00_01_0".into(),
            ..Default::default()
        }));
        let all = pb::WatchRequest::default();
        assert!(matches(&all, &dom) && matches(&all, &net) && matches(&all, &nodedev));
        let domains = pb::WatchRequest {
            families: vec![EventFamily::Domain as i32],
            ..Default::default()
        };
        assert!(matches(&domains, &dom));
        assert!(!matches(&domains, &net));
        let every = pb::WatchRequest {
            families: vec![EventFamily::All as i32],
            ..Default::default()
        };
        assert!(matches(&every, &net));
        let by_uuid = pb::WatchRequest {
            object_uuid: "abc".into(),
            ..Default::default()
        };
        assert!(matches(&by_uuid, &dom));
        assert!(!matches(&by_uuid, &net));
        let by_name = pb::WatchRequest {
            object_name: "pci_0000_00_01_0".into(),
            ..Default::default()
        };
        assert!(matches(&by_name, &nodedev));
        assert!(!matches(&by_name, &dom));
        assert!(!matches(&all, &pb::Event::default()));
    }

    #[test]
    fn lifecycle_carries_virsh_detail_words() {
        let Kind::DomainLifecycle(l) = domain_lifecycle("u", "n", T::DomainEventStopped, 5) else {
            panic!("not lifecycle")
        };
        assert_eq!(l.detail_name, "failed");
        let Kind::DomainLifecycle(l) = domain_lifecycle("u", "n", T::DomainEventStopped, 99) else {
            panic!("not lifecycle")
        };
        assert_eq!(l.detail_name, "unknown");
    }

    #[tokio::test]
    async fn watch_filters_stamps_and_skips_lag() {
        let hub = EventHub::new();
        let mut only_b = watch(
            &hub,
            pb::WatchRequest {
                object_name: "b".into(),
                ..Default::default()
            },
        );
        let mut lagging = watch(&hub, pb::WatchRequest::default());
        hub.send(network("u1", "a"));
        hub.send(network("u2", "b"));
        let ev = only_b.next().await.expect("event").expect("ok");
        assert!(ev.timestamp > 0.0);
        let Some(Kind::NetworkLifecycle(l)) = ev.kind else {
            panic!("not a network event")
        };
        assert_eq!(l.network.expect("id").name, "b");
        for _ in 0..(CAPACITY + 10) {
            hub.send(network("u1", "a"));
        }
        // The lagging stream still delivers (newer) events, without error.
        let ev = lagging.next().await.expect("event still flows");
        assert!(ev.is_ok());
    }
}
