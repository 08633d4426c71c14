//! A connection to the virtmesh gateway.
//!
//! The gateway routes each call by its `virt-uri` header (DESIGN.md §5), so
//! a [`Connection`] is a channel plus a URI; every generated client it hands
//! out goes through [`UriInterceptor`], which stamps that header on each
//! request. The channel is lazy: opening never blocks, and a gateway that is
//! down surfaces on the first call (use [`Connection::verify`] to find out
//! early, as virsh does when it connects).

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use virtmesh_proto::v1;
use virtmesh_rpc::ListenAddr;
use virtmesh_rpc::client::{ChannelOptions, channel};
use virtmesh_rpc::meta::VIRT_URI;

use crate::error::{Error, Result};

/// Sets the `virt-uri` header on every outgoing call. Without a URI the
/// header is left out and the gateway applies its default URI.
#[derive(Debug, Clone, Default)]
pub struct UriInterceptor {
    uri: Option<AsciiMetadataValue>,
}

impl UriInterceptor {
    pub fn new(uri: Option<&str>) -> Result<Self> {
        let uri = match uri {
            Some(u) => {
                Some(MetadataValue::try_from(u).map_err(|_| Error::InvalidUri(u.to_owned()))?)
            }
            None => None,
        };
        Ok(UriInterceptor { uri })
    }
}

impl tonic::service::Interceptor for UriInterceptor {
    fn call(
        &mut self,
        mut req: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        if let Some(uri) = &self.uri {
            req.metadata_mut().insert(VIRT_URI, uri.clone());
        }
        Ok(req)
    }
}

/// The transport every generated client of a [`Connection`] uses.
pub type Intercepted = InterceptedService<Channel, UriInterceptor>;

/// A connection to the gateway for one libvirt URI.
#[derive(Debug, Clone)]
pub struct Connection {
    channel: Channel,
    /// Where the gateway is, for error messages.
    gateway: Option<String>,
    uri: Option<String>,
    interceptor: UriInterceptor,
}

impl Connection {
    /// Open a (lazy) connection to `gateway` for `uri`; `None` leaves the
    /// choice of URI to the gateway's default.
    ///
    /// Call it from within a Tokio runtime: the channel spawns its
    /// connection task there (tonic's default executor).
    pub fn open(gateway: &ListenAddr, uri: Option<&str>) -> Result<Self> {
        Self::open_with(gateway, uri, &ChannelOptions::default())
    }

    /// Like [`Connection::open`], with explicit timeouts.
    pub fn open_with(
        gateway: &ListenAddr,
        uri: Option<&str>,
        opts: &ChannelOptions,
    ) -> Result<Self> {
        let mut conn = Self::from_channel(channel(gateway, opts), uri)?;
        conn.gateway = Some(gateway.to_string());
        Ok(conn)
    }

    /// Wrap an existing channel (tests, custom transports).
    pub fn from_channel(channel: Channel, uri: Option<&str>) -> Result<Self> {
        let interceptor = UriInterceptor::new(uri)?;
        Ok(Connection {
            channel,
            gateway: None,
            uri: uri.map(str::to_owned),
            interceptor,
        })
    }

    /// The URI this connection was opened with (not the gateway default).
    pub fn uri(&self) -> Option<&str> {
        self.uri.as_deref()
    }

    /// virConnectOpen: ask the gateway to validate the URI and name the
    /// driver serving it. This is the first real round trip, so it is where
    /// an unreachable gateway or an unknown URI scheme shows up.
    pub async fn verify(&self) -> Result<v1::OpenReply> {
        let req = v1::OpenRequest {
            uri: self.uri.clone().unwrap_or_default(),
            read_only: false,
        };
        match self.connect().open(req).await {
            Ok(r) => Ok(r.into_inner()),
            Err(status) => {
                let err = Error::from(status);
                // Say which gateway could not be reached, as libvirt names
                // the socket it failed to connect to.
                match (&err, &self.gateway) {
                    (Error::Virt(v), Some(gw)) if v.domain == virtmesh_rpc::ErrorDomain::Rpc => {
                        Err(Error::Virt(virtmesh_rpc::VirtError::new(
                            virtmesh_rpc::ErrorCode::NoConnect,
                            virtmesh_rpc::ErrorDomain::Rpc,
                            format!(
                                "Failed to connect to the virtmesh gateway at '{gw}': {}",
                                v.message
                            ),
                        )))
                    }
                    _ => Err(err),
                }
            }
        }
    }

    /// The gateway address this connection was opened to, if known.
    pub fn gateway(&self) -> Option<&str> {
        self.gateway.as_deref()
    }

    fn svc(&self) -> Intercepted {
        InterceptedService::new(self.channel.clone(), self.interceptor.clone())
    }

    pub fn connect(&self) -> v1::connect_client::ConnectClient<Intercepted> {
        v1::connect_client::ConnectClient::new(self.svc())
    }
    pub fn host(&self) -> v1::host_client::HostClient<Intercepted> {
        v1::host_client::HostClient::new(self.svc())
    }
    pub fn domain(&self) -> v1::domain_client::DomainClient<Intercepted> {
        v1::domain_client::DomainClient::new(self.svc())
    }
    pub fn network(&self) -> v1::network_client::NetworkClient<Intercepted> {
        v1::network_client::NetworkClient::new(self.svc())
    }
    pub fn storage_pool(&self) -> v1::storage_pool_client::StoragePoolClient<Intercepted> {
        v1::storage_pool_client::StoragePoolClient::new(self.svc())
    }
    pub fn storage_vol(&self) -> v1::storage_vol_client::StorageVolClient<Intercepted> {
        v1::storage_vol_client::StorageVolClient::new(self.svc())
    }
    pub fn secret(&self) -> v1::secret_client::SecretClient<Intercepted> {
        v1::secret_client::SecretClient::new(self.svc())
    }
    pub fn nwfilter(&self) -> v1::nw_filter_client::NwFilterClient<Intercepted> {
        v1::nw_filter_client::NwFilterClient::new(self.svc())
    }
    pub fn nwfilter_binding(
        &self,
    ) -> v1::nw_filter_binding_client::NwFilterBindingClient<Intercepted> {
        v1::nw_filter_binding_client::NwFilterBindingClient::new(self.svc())
    }
    pub fn node_device(&self) -> v1::node_device_client::NodeDeviceClient<Intercepted> {
        v1::node_device_client::NodeDeviceClient::new(self.svc())
    }
    pub fn interface(&self) -> v1::interface_client::InterfaceClient<Intercepted> {
        v1::interface_client::InterfaceClient::new(self.svc())
    }
    pub fn events(&self) -> v1::events_client::EventsClient<Intercepted> {
        v1::events_client::EventsClient::new(self.svc())
    }
}

/// Drain a server stream into a vector (lists are streamed, DESIGN.md §3).
pub async fn collect<T>(resp: tonic::Response<tonic::Streaming<T>>) -> Result<Vec<T>> {
    let mut stream = resp.into_inner();
    let mut out = Vec::new();
    while let Some(item) = stream.message().await? {
        out.push(item);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn interceptor_sets_uri_header() {
        let mut i = UriInterceptor::new(Some("test:///default")).expect("valid uri");
        let req = i
            .call(tonic::Request::new(()))
            .expect("interceptor never fails");
        assert_eq!(
            req.metadata().get(VIRT_URI).and_then(|v| v.to_str().ok()),
            Some("test:///default")
        );
    }

    #[test]
    fn interceptor_without_uri_leaves_header_out() {
        let mut i = UriInterceptor::new(None).expect("no uri is fine");
        let req = i
            .call(tonic::Request::new(()))
            .expect("interceptor never fails");
        assert!(req.metadata().get(VIRT_URI).is_none());
    }

    #[test]
    fn uri_with_newline_is_rejected() {
        assert!(matches!(
            UriInterceptor::new(Some("test:///x\n")),
            Err(Error::InvalidUri(_))
        ));
    }
}

/// Round trips through a real (in-process) gRPC server: the header and the
/// libvirt error detail must survive the wire, not just the interceptor.
#[cfg(test)]
mod roundtrip {
    use super::*;
    use tonic::{Request, Response, Status};
    use v1::connect_server::{Connect, ConnectServer};
    use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

    struct Echo;

    fn uri_of<T>(r: &Request<T>) -> String {
        virtmesh_rpc::meta::virt_uri(r)
            .unwrap_or("<none>")
            .to_owned()
    }

    fn nope<T>() -> std::result::Result<Response<T>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    #[tonic::async_trait]
    impl Connect for Echo {
        async fn open(
            &self,
            r: Request<v1::OpenRequest>,
        ) -> std::result::Result<Response<v1::OpenReply>, Status> {
            let uri = uri_of(&r);
            if uri == "nosuch:///" {
                return Err(VirtError::new(
                    ErrorCode::NoConnect,
                    ErrorDomain::Remote,
                    "no connection driver available for nosuch:///",
                )
                .into());
            }
            Ok(Response::new(v1::OpenReply {
                uri,
                driver: "test".into(),
            }))
        }
        async fn get_uri(
            &self,
            r: Request<()>,
        ) -> std::result::Result<Response<v1::UriReply>, Status> {
            Ok(Response::new(v1::UriReply { uri: uri_of(&r) }))
        }
        async fn get_version(
            &self,
            _: Request<()>,
        ) -> std::result::Result<Response<v1::VersionReply>, Status> {
            nope()
        }
        async fn get_lib_version(
            &self,
            _: Request<()>,
        ) -> std::result::Result<Response<v1::VersionReply>, Status> {
            nope()
        }
        async fn get_hostname(
            &self,
            _: Request<()>,
        ) -> std::result::Result<Response<v1::HostnameReply>, Status> {
            nope()
        }
        async fn get_node_info(
            &self,
            _: Request<()>,
        ) -> std::result::Result<Response<v1::NodeInfo>, Status> {
            nope()
        }
        async fn get_sysinfo(
            &self,
            _: Request<()>,
        ) -> std::result::Result<Response<v1::XmlDoc>, Status> {
            nope()
        }
        async fn get_max_vcpus(
            &self,
            _: Request<v1::MaxVcpusRequest>,
        ) -> std::result::Result<Response<v1::MaxVcpusReply>, Status> {
            nope()
        }
        async fn get_type(
            &self,
            _: Request<()>,
        ) -> std::result::Result<Response<v1::TypeReply>, Status> {
            nope()
        }
        async fn domain_xml_to_native(
            &self,
            _: Request<v1::DomainXmlToNativeRequest>,
        ) -> std::result::Result<Response<v1::NativeConfig>, Status> {
            nope()
        }
        async fn domain_xml_from_native(
            &self,
            _: Request<v1::DomainXmlFromNativeRequest>,
        ) -> std::result::Result<Response<v1::XmlDoc>, Status> {
            nope()
        }
    }

    async fn serve() -> ListenAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("bound address");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ConnectServer::new(Echo))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        ListenAddr::Tcp(addr)
    }

    #[tokio::test]
    async fn uri_header_reaches_the_server() {
        let gw = serve().await;
        let conn = Connection::open(&gw, Some("test:///default")).expect("open");
        let reply = conn.verify().await.expect("open succeeds");
        assert_eq!(reply.uri, "test:///default");
        let uri = conn
            .connect()
            .get_uri(())
            .await
            .expect("get_uri")
            .into_inner()
            .uri;
        assert_eq!(uri, "test:///default");
    }

    #[tokio::test]
    async fn without_uri_no_header_is_sent() {
        let gw = serve().await;
        let conn = Connection::open(&gw, None).expect("open");
        let uri = conn
            .connect()
            .get_uri(())
            .await
            .expect("get_uri")
            .into_inner()
            .uri;
        assert_eq!(uri, "<none>");
    }

    #[tokio::test]
    async fn libvirt_error_survives_the_wire() {
        let gw = serve().await;
        let conn = Connection::open(&gw, Some("nosuch:///")).expect("open");
        let err = conn.verify().await.expect_err("unknown scheme");
        assert_eq!(err.code(), ErrorCode::NoConnect);
        assert_eq!(
            err.to_string(),
            "no connection driver available for nosuch:///"
        );
        let unimpl = conn.connect().get_hostname(()).await.map_err(Error::from);
        assert_eq!(unimpl.err().map(|e| e.code()), Some(ErrorCode::NoSupport));
    }

    #[tokio::test]
    async fn unreachable_gateway_is_named() {
        // Bind then drop a listener so the port is (almost surely) closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let gw = ListenAddr::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        let conn = Connection::open(&gw, Some("test:///default")).expect("open");
        let err = conn.verify().await.expect_err("nothing listens");
        assert!(err.is_transport(), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "Failed to connect to the virtmesh gateway at '127.0.0.1:{port}'"
            )),
            "{msg}"
        );
        assert!(!msg.contains("os error"), "{msg}");
    }
}
