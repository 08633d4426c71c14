//! Network lifecycle events (virNetworkEventLifecycleType) and the Events
//! service. One broadcast channel per driver: a subscriber that falls
//! behind skips the oldest events instead of blocking anyone.

use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use virtmesh_proto::v1::{
    self as pb, EventFamily, NetworkEventType, event::Kind, events_server::Events,
};

/// How many events a slow subscriber may lag before it skips.
const CAPACITY: usize = 1024;

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
    pub fn lifecycle(&self, uuid: &str, name: &str, ty: NetworkEventType) {
        tracing::debug!(uuid, name, ?ty, "network event");
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        // No subscriber is not an error: events are fire and forget.
        let _ = self.tx.send(pb::Event {
            timestamp,
            kind: Some(Kind::NetworkLifecycle(pb::NetworkLifecycle {
                network: Some(pb::ObjectId {
                    uuid: uuid.to_owned(),
                    name: name.to_owned(),
                }),
                r#type: ty as i32,
            })),
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<pb::Event> {
        self.tx.subscribe()
    }
}

/// Whether `ev` passes a Watch request's filters.
fn wanted(req: &pb::WatchRequest, ev: &pb::Event) -> bool {
    let Some(Kind::NetworkLifecycle(e)) = &ev.kind else {
        return false;
    };
    let net = e.network.as_ref();
    let families_ok = req.families.is_empty()
        || req
            .families
            .iter()
            .any(|f| *f == EventFamily::All as i32 || *f == EventFamily::Network as i32);
    let uuid_ok = req.object_uuid.is_empty()
        || net.is_some_and(|d| d.uuid.eq_ignore_ascii_case(&req.object_uuid));
    let name_ok = req.object_name.is_empty() || net.is_some_and(|d| d.name == req.object_name);
    families_ok && uuid_ok && name_ok
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

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
    async fn watch_filters_by_family_and_name() {
        let hub = EventHub::default();
        let svc = EventsService::new(hub.clone());
        let req = pb::WatchRequest {
            families: vec![EventFamily::Network as i32],
            object_uuid: String::new(),
            object_name: "b".into(),
        };
        let mut stream = svc
            .watch(Request::new(req))
            .await
            .expect("watch")
            .into_inner();
        hub.lifecycle("u1", "a", NetworkEventType::NetworkEventStarted);
        hub.lifecycle("u2", "b", NetworkEventType::NetworkEventStopped);
        let ev = stream.next().await.expect("event").expect("ok");
        let Some(Kind::NetworkLifecycle(l)) = ev.kind else {
            panic!("not a network event")
        };
        assert_eq!(l.r#type, NetworkEventType::NetworkEventStopped as i32);
        assert_eq!(l.network.expect("id").name, "b");
    }
}
