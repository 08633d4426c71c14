//! libvirt's network driver as a virtmesh service (virtnetworkd): virtual
//! networks on real host plumbing — bridges over rtnetlink, dnsmasq for
//! DHCP/DNS with the configuration libvirt generates, nftables tables of
//! our own for NAT and filtering.
//!
//! Phase 1: define/undefine/lookup/list/XML/info/bridge name/autostart,
//! transient networks, start and destroy for forward modes nat, route,
//! open, isolated and bridge (an existing host bridge), DHCP leases from
//! dnsmasq's lease file, Update of DHCP hosts/ranges and DNS records,
//! lifecycle events, recovery of running networks after a restart, network
//! ports on bridge networks and on macvtap networks (a pool interface per
//! port), QoS (`<bandwidth>` on the bridge, floors for ports, port
//! parameters). The other Update sections and the hostdev mode's ports
//! answer UNIMPLEMENTED.

pub mod def;
pub mod dnsmasq;
pub mod driver;
pub mod error;
pub mod events;
pub mod firewall;
pub mod leases;
pub mod port;
pub mod service;
pub mod status;
pub mod update;

pub use driver::{DriverError, NetworkConfig, NetworkDriver};

use tonic::service::Routes;
use virtmesh_proto::v1::{events_server::EventsServer, network_server::NetworkServer};

/// The gRPC services this crate serves (for health reporting).
pub const SERVED: &[&str] = &["virtmesh.v1.Network", "virtmesh.v1.Events"];

/// The driver's gRPC routes: Network and Events.
pub fn routes(driver: NetworkDriver) -> Routes {
    let events = events::EventsService::new(driver.events());
    Routes::new(NetworkServer::new(service::NetworkService::new(driver)))
        .add_service(EventsServer::new(events))
}
