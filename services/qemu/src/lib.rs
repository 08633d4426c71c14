//! libvirt's qemu driver as a virtmesh service (`qemu:///system`,
//! `qemu:///session`): real QEMU processes, driven over QMP.
//!
//! Define/undefine/lookup/list of kvm and qemu (TCG) domains with
//! persistent configs and libvirt's define-time addresses; the lifecycle
//! (start, create from XML, suspend, resume, shutdown, reboot, reset,
//! destroy) with state that follows QMP events; disks and interfaces
//! (user, ethernet, bridge, direct/macvtap, and network: a port from the
//! network service, `netport`) at start and hot-plugged;
//! host links released exactly when this service created them (DESIGN.md
//! §6); recovery of running guests after a service restart;
//! `DomainXMLToNative("qemu-argv")`. Everything else answers UNIMPLEMENTED
//! (see README.md).

pub mod argv;
pub mod blockdev;
pub mod cmdline;
pub mod connect;
pub mod console;
pub mod def;
pub mod defaults;
pub mod devices;
pub mod domain;
pub mod domcaps;
pub mod driver;
pub mod error;
pub mod events;
pub mod firmware;
pub mod graphics;
pub mod host;
pub mod hostnet;
pub mod machine;
pub mod netport;
pub mod numa;
pub mod pci;
pub mod probe;
pub mod process;
pub mod qmp;
pub mod state;
pub mod validate;

pub use driver::{QemuConfig, QemuDriver};

use tonic::service::Routes;
use virtmesh_proto::v1::{
    connect_server::ConnectServer, domain_server::DomainServer, events_server::EventsServer,
    host_server::HostServer,
};

/// The gRPC services this crate serves (for health reporting).
pub const SERVED: &[&str] = &[
    "virtmesh.v1.Connect",
    "virtmesh.v1.Host",
    "virtmesh.v1.Domain",
    "virtmesh.v1.Events",
];

/// The driver's gRPC routes: Domain, Connect, Host and Events.
pub fn routes(driver: QemuDriver) -> Routes {
    let connect = connect::ConnectService::new(driver.clone());
    let events = events::EventsService::new(driver.events());
    let host = host::HostService::new(driver.clone());
    Routes::new(DomainServer::new(domain::DomainService::new(driver)))
        .add_service(ConnectServer::new(connect))
        .add_service(HostServer::new(host))
        .add_service(EventsServer::new(events))
}
