//! Typed events: one tokio broadcast channel per host.  A subscriber that
//! falls behind loses the oldest events (and is told nothing) rather than
//! blocking the host or the other subscribers.

use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use virtmesh_proto::v1::{self as pb, EventFamily, event::Kind, events_server::Events};

use crate::TestDriver;

/// How many events a slow subscriber may lag before it skips.
pub const CAPACITY: usize = 1024;

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

/// virsh's words for domain event details, per event type.
pub fn domain_detail_name(ty: pb::DomainEventType, detail: i32) -> &'static str {
    use pb::DomainEventType as T;
    let names: &[&str] = match ty {
        T::DomainEventDefined => &["added", "updated", "renamed", "snapshot"],
        T::DomainEventUndefined => &["removed", "renamed"],
        T::DomainEventStarted => &["booted", "migrated", "restored", "snapshot", "wakeup"],
        T::DomainEventSuspended => &[
            "paused",
            "migrated",
            "ioerror",
            "watchdog",
            "restored",
            "snapshot",
            "api error",
            "post-copy",
            "post-copy failed",
        ],
        T::DomainEventResumed => &[
            "unpaused",
            "migrated",
            "snapshot",
            "post-copy",
            "post-copy failed",
        ],
        T::DomainEventStopped => &[
            "shutdown",
            "destroyed",
            "crashed",
            "migrated",
            "saved",
            "failed",
            "snapshot",
        ],
        T::DomainEventShutdown => &["finished", "guest", "host"],
        T::DomainEventPmsuspended => &["memory", "disk"],
        T::DomainEventCrashed => &["panicked", "crashloaded"],
    };
    usize::try_from(detail)
        .ok()
        .and_then(|i| names.get(i))
        .copied()
        .unwrap_or("unknown")
}

/// A domain lifecycle event.
pub fn domain_lifecycle(uuid: &str, name: &str, ty: pb::DomainEventType, detail: i32) -> Kind {
    Kind::DomainLifecycle(pb::DomainLifecycle {
        domain: object_id(uuid, name),
        r#type: ty as i32,
        detail,
        detail_name: domain_detail_name(ty, detail).to_owned(),
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

pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl Events for TestDriver {
    type WatchStream = EventStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let host = self.host(&request)?;
        let filter = request.into_inner();
        let rx = host.events.subscribe();
        let stream = BroadcastStream::new(rx).filter_map(move |item| match item {
            Ok(ev) if matches(&filter, &ev) => Some(Ok(ev)),
            Ok(_) => None,
            // A lagging subscriber skips what it missed.
            Err(BroadcastStreamRecvError::Lagged(_)) => None,
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
