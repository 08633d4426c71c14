//! Event fan-in: one `Events.Watch` stream per client, merged from every
//! backend that serves the client's URI (the hypervisor service plus the
//! secondary services). Each backend stream is consumed independently, so
//! a quiet backend never delays another's events.

use crate::routing::Routing;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::{Stream, StreamExt, StreamMap};
use tonic::{Request, Response, Status};
use virtmesh_proto::v1::events_client::EventsClient;
use virtmesh_proto::v1::events_server::Events;
use virtmesh_proto::v1::{Event, WatchRequest};
use virtmesh_rpc::meta;

pub struct FanIn {
    routing: Arc<Routing>,
}

impl FanIn {
    pub fn new(routing: Arc<Routing>) -> Self {
        FanIn { routing }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

#[tonic::async_trait]
impl Events for FanIn {
    type WatchStream = EventStream;

    async fn watch(&self, request: Request<WatchRequest>) -> Result<Response<EventStream>, Status> {
        let uri = meta::virt_uri(&request)
            .unwrap_or(self.routing.default_uri())
            .to_owned();
        let watch = request.into_inner();
        let mut merged = StreamMap::new();
        for backend in self.routing.event_backends(&uri)? {
            let mut req = Request::new(watch.clone());
            meta::set_virt_uri(&mut req, &uri)?;
            let stream = EventsClient::new(backend.channel.clone())
                .watch(req)
                .await
                .map_err(|status| {
                    if status.code() == tonic::Code::Unavailable
                        || status.code() == tonic::Code::Unknown
                    {
                        Status::from(backend.unreachable(&uri, &status))
                    } else {
                        status
                    }
                })?
                .into_inner();
            merged.insert(backend.name.clone(), stream);
        }
        let out = merged.map(|(_, item)| item);
        Ok(Response::new(Box::pin(out)))
    }
}
