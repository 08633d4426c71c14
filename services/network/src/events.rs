//! Network lifecycle events (virNetworkEventLifecycleType) as a convenience
//! emitter over the shared hub (`virtmesh_rpc::events`).

use virtmesh_proto::v1::{self as pb, NetworkEventType, event::Kind};
use virtmesh_rpc::events::object_id;

pub use virtmesh_rpc::events::{EventHub, EventStream, EventsService};

/// The network emitter of this driver, on the shared hub.
pub trait NetworkEvents {
    fn lifecycle(&self, uuid: &str, name: &str, ty: NetworkEventType);
}

impl NetworkEvents for EventHub {
    fn lifecycle(&self, uuid: &str, name: &str, ty: NetworkEventType) {
        tracing::debug!(uuid, name, ?ty, "network event");
        self.send(Kind::NetworkLifecycle(pb::NetworkLifecycle {
            network: object_id(uuid, name),
            r#type: ty as i32,
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
