//! Serving a set of gRPC services on TCP or a unix socket, with
//! `grpc.health.v1` and reflection (v1 and v1alpha: grpcurl 1.8 only speaks
//! v1alpha) added to every server.

use crate::ListenAddr;
use std::future::Future;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: ListenAddr,
        source: std::io::Error,
    },
    #[error("reflection set-up failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("server on {addr} failed: {source}")]
    Transport {
        addr: ListenAddr,
        source: tonic::transport::Error,
    },
}

/// The routes every virtmesh server carries besides its own services:
/// health (each name in `served` reported SERVING, and the server as a
/// whole under "") and reflection over our descriptor set plus the
/// `google.rpc` error details, so grpcurl decodes ErrorInfo.
pub async fn standard_routes(routes: Routes, served: &[&str]) -> Result<Routes, ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    for name in served {
        reporter
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }
    // The same descriptor sets for both reflection versions.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(virtmesh_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = reflection().build_v1()?;
    let v1alpha = reflection().build_v1alpha()?;
    Ok(routes
        .add_service(health)
        .add_service(v1)
        .add_service(v1alpha))
}

/// A bound listener, so that callers learn the real address (port 0 gives
/// an ephemeral port) before serving starts.
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, std::path::PathBuf),
}

impl Listener {
    pub async fn bind(addr: &ListenAddr) -> Result<Self, ServeError> {
        let bind_err = |source| ServeError::Bind {
            addr: addr.clone(),
            source,
        };
        match addr {
            ListenAddr::Tcp(a) => Ok(Listener::Tcp(
                tokio::net::TcpListener::bind(a).await.map_err(bind_err)?,
            )),
            ListenAddr::Host(h, p) => Ok(Listener::Tcp(
                tokio::net::TcpListener::bind((h.as_str(), *p))
                    .await
                    .map_err(bind_err)?,
            )),
            ListenAddr::Unix(path) => {
                // A socket file left by a previous run of ours would make bind
                // fail; anything that is not a socket is not ours to remove.
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    use std::os::unix::fs::FileTypeExt;
                    if meta.file_type().is_socket() {
                        let _ = std::fs::remove_file(path);
                    }
                }
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(bind_err)?;
                }
                Ok(Listener::Unix(
                    tokio::net::UnixListener::bind(path).map_err(bind_err)?,
                    path.clone(),
                ))
            }
        }
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> ListenAddr {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(ListenAddr::Tcp)
                .unwrap_or_else(|_| ListenAddr::Tcp(([0, 0, 0, 0], 0).into())),
            Listener::Unix(_, p) => ListenAddr::Unix(p.clone()),
        }
    }
}

/// Serve `routes` (plus the standard ones) until `shutdown` resolves.
pub async fn serve(
    routes: Routes,
    listener: Listener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let addr = listener.local_addr();
    let transport = |source| ServeError::Transport {
        addr: addr.clone(),
        source,
    };
    // Small unary calls dominate the control plane: no Nagle delay, and
    // HTTP/2 windows large enough that streamed lists are not throttled.
    let mut server = Server::builder()
        .initial_connection_window_size(4 << 20)
        .initial_stream_window_size(2 << 20);
    let router = server.add_routes(routes);
    match listener {
        Listener::Tcp(l) => {
            let incoming = TcpIncoming::from(l).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
                .map_err(transport)
        }
        Listener::Unix(l, path) => {
            let result = router
                .serve_with_incoming_shutdown(UnixListenerStream::new(l), shutdown)
                .await
                .map_err(transport);
            let _ = std::fs::remove_file(&path);
            result
        }
    }
}

/// Resolves on SIGINT or SIGTERM: the shutdown signal of every service.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
