//! Typed events: one shared hub (`virtmesh_rpc::events`) per host, and the
//! Events service over it.

use tonic::{Request, Response, Status};
use virtmesh_proto::v1::{self as pb, events_server::Events};

#[cfg(test)]
pub use virtmesh_rpc::events::CAPACITY;
pub use virtmesh_rpc::events::{EventStream, domain_lifecycle, object_id};

use crate::TestDriver;

#[tonic::async_trait]
impl Events for TestDriver {
    type WatchStream = EventStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let host = self.host(&request)?;
        let filter = request.into_inner();
        Ok(Response::new(virtmesh_rpc::events::watch(
            &host.events,
            filter,
        )))
    }
}
