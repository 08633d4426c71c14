//! Forwarding of unary and streaming calls to the backend chosen by
//! [`Routing`]. The request (headers, `virt-uri`, `traceparent`, body
//! frames) goes through untouched, so a forwarded call costs one extra
//! HTTP/2 hop and no protobuf decoding.

use crate::routing::Routing;
use http::HeaderValue;
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use tower::ServiceExt;
use virtmesh_rpc::meta::VIRT_URI;
use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

/// A public service forwarded as a whole; `Events` is not one of them (the
/// gateway merges event streams itself).
pub trait Forwarded: Send + Sync + 'static {
    /// Fully qualified gRPC service name.
    const NAME: &'static str;
    /// The API family used for routing.
    const FAMILY: &'static str;
}

macro_rules! forwarded {
    ($($ty:ident => $family:literal),* $(,)?) => {
        $(
            #[derive(Debug, Clone, Copy)]
            pub struct $ty;
            impl Forwarded for $ty {
                const NAME: &'static str = concat!("virtmesh.v1.", $family);
                const FAMILY: &'static str = $family;
            }
        )*

        /// Routes forwarding every public service but `Events`.
        pub fn routes(routing: Arc<Routing>) -> Routes {
            Routes::default()
                $(.add_service(Proxy::<$ty>::new(routing.clone())))*
        }
    };
}

forwarded! {
    ConnectFamily => "Connect",
    HostFamily => "Host",
    DomainFamily => "Domain",
    NetworkFamily => "Network",
    StoragePoolFamily => "StoragePool",
    StorageVolFamily => "StorageVol",
    SecretFamily => "Secret",
    NwFilterFamily => "NWFilter",
    NwFilterBindingFamily => "NWFilterBinding",
    NodeDeviceFamily => "NodeDevice",
    InterfaceFamily => "Interface",
}

pub struct Proxy<F> {
    routing: Arc<Routing>,
    _family: PhantomData<F>,
}

impl<F> Proxy<F> {
    pub fn new(routing: Arc<Routing>) -> Self {
        Proxy {
            routing,
            _family: PhantomData,
        }
    }
}

impl<F> Clone for Proxy<F> {
    fn clone(&self) -> Self {
        Proxy::new(self.routing.clone())
    }
}

impl<F: Forwarded> NamedService for Proxy<F> {
    const NAME: &'static str = F::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<F: Forwarded> tower::Service<http::Request<Body>> for Proxy<F> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let uri = match req.headers().get(VIRT_URI).map(|v| v.to_str()) {
            Some(Ok(uri)) => uri.to_owned(),
            Some(Err(_)) => {
                let err = VirtError::new(
                    ErrorCode::InvalidArg,
                    ErrorDomain::Uri,
                    "invalid argument: the virt-uri header is not valid text",
                );
                return Box::pin(async move { Ok(tonic::Status::from(err).into_http()) });
            }
            None => {
                // The backend must see the URI the gateway decided on.
                let uri = self.routing.default_uri().to_owned();
                if let Ok(value) = HeaderValue::from_str(&uri) {
                    req.headers_mut().insert(VIRT_URI, value);
                }
                uri
            }
        };
        let backend = match self.routing.route(F::FAMILY, &uri) {
            Ok(b) => b,
            Err(err) => return Box::pin(async move { Ok(tonic::Status::from(err).into_http()) }),
        };
        Box::pin(async move {
            match backend.channel.clone().oneshot(req).await {
                Ok(resp) => Ok(resp),
                Err(e) => {
                    let err = backend.unreachable(&uri, &e);
                    tracing::warn!(service = %backend.name, addr = %backend.addr, "{}", err.message);
                    Ok(tonic::Status::from(err).into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_public_services() {
        assert_eq!(DomainFamily::NAME, "virtmesh.v1.Domain");
        assert_eq!(NwFilterBindingFamily::FAMILY, "NWFilterBinding");
    }
}
