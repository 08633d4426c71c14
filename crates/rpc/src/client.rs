//! Channels to peer services and to the gateway, over TCP or a unix socket,
//! with a connect timeout (a peer that is down fails fast) and a per-call
//! timeout.

use crate::ListenAddr;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Default time allowed to establish a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct ChannelOptions {
    pub connect_timeout: Duration,
    /// Deadline for each unary call; `None` for no deadline (streams).
    pub call_timeout: Option<Duration>,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            connect_timeout: CONNECT_TIMEOUT,
            call_timeout: None,
        }
    }
}

/// A lazily connected channel: nothing happens until the first call, and a
/// peer that is down shows up as UNAVAILABLE on that call within the
/// connect timeout.
pub fn channel(addr: &ListenAddr, opts: &ChannelOptions) -> Channel {
    match addr {
        ListenAddr::Tcp(_) | ListenAddr::Host(..) => {
            let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                .unwrap_or_else(|_| Endpoint::from_static("http://127.0.0.1:1"));
            configure(endpoint, opts).connect_lazy()
        }
        ListenAddr::Unix(path) => {
            let path = path.clone();
            // The authority is ignored for unix sockets but h2 needs a
            // valid one.
            let endpoint = Endpoint::from_static("http://localhost");
            configure(endpoint, opts).connect_with_connector_lazy(tower::service_fn(
                move |_: http::Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                },
            ))
        }
    }
}

fn configure(endpoint: Endpoint, opts: &ChannelOptions) -> Endpoint {
    let endpoint = endpoint
        .connect_timeout(opts.connect_timeout)
        .tcp_nodelay(true)
        .initial_connection_window_size(4 << 20)
        .initial_stream_window_size(2 << 20);
    match opts.call_timeout {
        Some(t) => endpoint.timeout(t),
        None => endpoint,
    }
}
