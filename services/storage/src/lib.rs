//! libvirt's storage driver as a virtmesh service (virtstoraged).
//!
//! Pools of every type libvirt's Debian build has a backend for can be
//! defined (dir, fs, netfs, logical, disk, iscsi, scsi, mpath); only
//! directory pools are built, started, refreshed and deleted on the host,
//! the other types answer VIR_ERR_NO_SUPPORT when asked to do so.  Volumes
//! in a directory pool are real files: raw ones are created and
//! preallocated by the driver itself, every other format with `qemu-img
//! create` exactly as libvirt's storage_util builds the command; their XML
//! reports what stat(2) and `qemu-img info` find.
//!
//! State (DESIGN.md §6): pool configs as libvirt XML in the state
//! directory, autostart marks beside them, and one file per active pool in
//! the run directory, so a restarted service finds its active pools again.

pub mod driver;
pub mod error;
pub mod events;
pub mod qemu_img;
pub mod service;
pub mod store;
pub mod volume;

pub use driver::{DriverError, StorageConfig, StorageDriver};

use tonic::service::Routes;
use virtmesh_proto::v1::{
    events_server::EventsServer, storage_pool_server::StoragePoolServer,
    storage_vol_server::StorageVolServer,
};

/// The gRPC services this crate serves (for health reporting).
pub const SERVED: &[&str] = &[
    "virtmesh.v1.StoragePool",
    "virtmesh.v1.StorageVol",
    "virtmesh.v1.Events",
];

/// The driver's gRPC routes: StoragePool, StorageVol and Events.
pub fn routes(driver: StorageDriver) -> Routes {
    let events = events::EventsService::new(driver.events());
    Routes::new(StoragePoolServer::new(service::PoolService::new(
        driver.clone(),
    )))
    .add_service(StorageVolServer::new(service::VolService::new(driver)))
    .add_service(EventsServer::new(events))
}
