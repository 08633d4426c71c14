//! libvirt's `test:///default` driver as a virtmesh service: every object
//! family in memory, with libvirt's state machines, messages and events.
//!
//! One [`TestDriver`] serves many hosts: `test:///default` (built lazily
//! from a node document, like libvirt's defaultConnXML) and one host per
//! `test:///ABSOLUTE/PATH.xml` custom node file, each kept for the life of
//! the service.
//!
//! Where libvirt's test driver refuses a call and the virtmesh contract
//! asks for it (secrets, network filters and bindings, device detach,
//! volume resize, network update), the call works in memory with the
//! wording of libvirt's real drivers.  Calls neither offers answer
//! UNIMPLEMENTED (VIR_ERR_NO_SUPPORT): network ports, DHCP leases,
//! OpenConsole, DomainXMLToNative/FromNative, CompareCPU, persistent node
//! devices (define/undefine/create/autostart), PCI detach/reattach/reset.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod connect;
mod domain;
mod err;
mod events;
mod host;
mod hostcaps;
mod interface;
mod netupdate;
mod network;
mod node_file;
mod nodedev;
mod nwfilter;
mod secret;
mod snapshot;
mod storage;
mod uri;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use virtmesh_proto::v1::{
    connect_server::ConnectServer, domain_server::DomainServer, events_server::EventsServer,
    host_server::HostServer, interface_server::InterfaceServer, network_server::NetworkServer,
    node_device_server::NodeDeviceServer, nw_filter_binding_server::NwFilterBindingServer,
    nw_filter_server::NwFilterServer, secret_server::SecretServer,
    storage_pool_server::StoragePoolServer, storage_vol_server::StorageVolServer,
};
use virtmesh_rpc::VirtError;

use crate::host::Host;
use crate::uri::HostKey;

/// Fully-qualified names of the services in [`routes`], for health.
pub const SERVED: &[&str] = &[
    "virtmesh.v1.Connect",
    "virtmesh.v1.Host",
    "virtmesh.v1.Domain",
    "virtmesh.v1.Network",
    "virtmesh.v1.StoragePool",
    "virtmesh.v1.StorageVol",
    "virtmesh.v1.Secret",
    "virtmesh.v1.NWFilter",
    "virtmesh.v1.NWFilterBinding",
    "virtmesh.v1.NodeDevice",
    "virtmesh.v1.Interface",
    "virtmesh.v1.Events",
];

/// The test driver: a set of in-memory hosts keyed by URI.
#[derive(Clone, Default)]
pub struct TestDriver {
    hosts: Arc<Mutex<HashMap<HostKey, Arc<Host>>>>,
}

impl std::fmt::Debug for TestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDriver").finish_non_exhaustive()
    }
}

/// Whether a stored UUID and a client's UUID string name the same object;
/// libvirt accepts UUIDs in any case and with or without dashes.
pub(crate) fn uuid_eq(stored: &str, given: &str) -> bool {
    match (
        virtmesh_conf::error::parse_uuid_str(stored),
        virtmesh_conf::error::parse_uuid_str(given.trim()),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A boxed server stream, the shape every List call returns.
pub(crate) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Stream a finished list.
pub(crate) fn stream_of<T: Send + 'static>(items: Vec<T>) -> BoxStream<T> {
    Box::pin(tokio_stream::iter(items.into_iter().map(Ok)))
}

impl TestDriver {
    pub fn new() -> Self {
        TestDriver::default()
    }

    /// The host a request's `virt-uri` names, built on first use.
    pub(crate) fn host<T>(&self, req: &Request<T>) -> Result<Arc<Host>, VirtError> {
        let key = uri::parse(virtmesh_rpc::meta::virt_uri(req))?;
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = hosts.get(&key) {
            return Ok(h.clone());
        }
        // Building under the map lock keeps two first calls from creating
        // two hosts for one URI; node files are small.
        let state = match &key {
            HostKey::Default => node_file::build(node_file::DEFAULT_NODE_XML, None)?,
            HostKey::File(path) => node_file::load_file(path)?,
        };
        let host = Arc::new(Host::new(key.uri(), state));
        hosts.insert(key, host.clone());
        Ok(host)
    }

    /// Run a synchronous in-memory operation against the request's host.
    pub(crate) fn call<T, R>(
        &self,
        req: Request<T>,
        f: impl FnOnce(&Host, T) -> Result<R, VirtError>,
    ) -> Result<Response<R>, Status> {
        let host = self.host(&req)?;
        Ok(Response::new(f(&host, req.into_inner())?))
    }

    /// Like [`TestDriver::call`] for calls that stream a list back.
    pub(crate) fn call_stream<T, R: Send + 'static>(
        &self,
        req: Request<T>,
        f: impl FnOnce(&Host, T) -> Result<Vec<R>, VirtError>,
    ) -> Result<Response<BoxStream<R>>, Status> {
        let host = self.host(&req)?;
        Ok(Response::new(stream_of(f(&host, req.into_inner())?)))
    }
}

/// All twelve services of the test driver.
pub fn routes(driver: TestDriver) -> tonic::service::Routes {
    tonic::service::Routes::new(ConnectServer::new(driver.clone()))
        .add_service(HostServer::new(driver.clone()))
        .add_service(DomainServer::new(driver.clone()))
        .add_service(NetworkServer::new(driver.clone()))
        .add_service(StoragePoolServer::new(driver.clone()))
        .add_service(StorageVolServer::new(driver.clone()))
        .add_service(SecretServer::new(driver.clone()))
        .add_service(NwFilterServer::new(driver.clone()))
        .add_service(NwFilterBindingServer::new(driver.clone()))
        .add_service(NodeDeviceServer::new(driver.clone()))
        .add_service(InterfaceServer::new(driver.clone()))
        .add_service(EventsServer::new(driver))
}
