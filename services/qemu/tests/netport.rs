//! Interfaces of type `network` when the network service is missing or
//! down: the start fails with libvirt's "no connection driver" error
//! (naming the endpoint when one was configured) and leaves no tap. The
//! working path, with the real network service, is the workspace's
//! `tests/network_guest_e2e.rs`.
//!
//! Needs root, /dev/kvm, QEMU and `ip` (the driver runs inside a namespace
//! the test creates); skips with the reason otherwise, fails under
//! VIRTMESH_REQUIRE_HOST=1.

mod common;

use common::{Netns, by_name, host_ready};
use virtmesh_qemu::QemuDriver;
use virtmesh_rpc::{ErrorCode, ListenAddr};

const GUEST: &str = "<domain type='kvm'><name>n</name><memory unit='MiB'>128</memory>\
    <vcpu>1</vcpu><os><type arch='x86_64' machine='q35'>hvm</type></os><devices>\
    <interface type='network'><mac address='52:54:00:aa:bb:09'/><source network='default'/>\
    <model type='virtio'/></interface></devices></domain>";

#[test]
fn network_interface_without_a_network_service() {
    if !host_ready() {
        return;
    }
    let ns = Netns::new("np");
    let down = ListenAddr::Unix(ns.dir.path().join("no-network.sock"));
    let (none, unreachable) = ns.run(move |cfg| async move {
        let mut errors = Vec::new();
        for peer in [None, Some(down)] {
            let first = peer.is_none();
            let mut cfg = cfg.clone();
            cfg.network = peer;
            let d = QemuDriver::new(cfg).await.expect("driver");
            if first {
                // The second driver finds the persistent config.
                d.define(GUEST).await.expect("define");
            }
            let Err(e) = d.start(Some(&by_name("n")), false).await else {
                panic!("start must fail without a network service");
            };
            errors.push(e);
        }
        (errors.remove(0), errors.remove(0))
    });
    assert_eq!(none.code, ErrorCode::NoConnect);
    assert_eq!(
        none.message,
        "no connection driver available for network:///system"
    );
    assert_eq!(unreachable.code, ErrorCode::NoConnect);
    assert!(
        unreachable.message.contains("no-network.sock"),
        "{}",
        unreachable.message
    );
    assert!(!ns.links().contains("vnet"), "{}", ns.links());
}
