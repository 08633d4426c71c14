//! virtmesh's public front door. It serves every public service of
//! `virtmesh.v1` and routes each call, by its `virt-uri` header, to the
//! driver service that owns that family for that URI (DESIGN.md §5). Calls
//! are forwarded as opaque gRPC frames, so the gateway never re-encodes a
//! message; only event streams are merged here (fan-in).

pub mod config;
pub mod events;
pub mod proxy;
pub mod routing;

use std::future::Future;
use std::sync::Arc;
use virtmesh_rpc::serve::{Listener, ServeError};

pub use config::{Config, ConfigError};
pub use routing::Routing;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Serve the gateway on an already bound listener until `shutdown`.
pub async fn serve(
    config: &Config,
    listener: Listener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GatewayError> {
    let routing = Arc::new(Routing::new(config)?);
    let routes = proxy::routes(routing.clone()).add_service(
        virtmesh_proto::v1::events_server::EventsServer::new(events::FanIn::new(routing)),
    );
    let routes =
        virtmesh_rpc::serve::standard_routes(routes, virtmesh_proto::SERVICE_NAMES).await?;
    virtmesh_rpc::serve::serve(routes, listener, shutdown).await?;
    Ok(())
}
