//! virtmesh's public contracts: the `virtmesh.v1` gRPC package, generated
//! from `proto/virtmesh/v1/*.proto`.

#![allow(clippy::all, missing_docs)]

pub mod names;

pub mod v1 {
    tonic::include_proto!("virtmesh.v1");
}

/// The encoded `FileDescriptorSet` of every virtmesh proto, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/virtmesh_descriptor.bin"));

/// Fully qualified names of the public services, in the order the gateway
/// lists them.
pub const SERVICE_NAMES: &[&str] = &[
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
