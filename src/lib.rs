//! Support code of the virtmesh binaries: the roles a process can play
//! (gateway, or one driver service) and the launcher that runs them all.
//! Every role exists both as its own binary (`virtmesh-gateway`,
//! `virtmesh-test`, for containers) and as `virtmesh service NAME`, so that
//! `cargo run --bin virtmesh -- up` needs to build only one binary.

pub mod launcher;
pub mod roles;
