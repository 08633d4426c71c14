//! libvirt's own output parses and formats back byte for byte.

#![allow(clippy::unwrap_used)]

use virtmesh_conf::domain::DomainDef;
use virtmesh_conf::misc::{InterfaceDef, NodeDeviceDef};
use virtmesh_conf::network::NetworkDef;
use virtmesh_conf::storage::PoolDef;

fn fixture(name: &str) -> String {
    // The recordings end with virsh's extra blank line.
    let text =
        std::fs::read_to_string(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    format!("{}\n", text.trim_end())
}

#[test]
fn domain_inactive() {
    let xml = fixture("test-dumpxml-test-inactive.xml");
    assert_eq!(DomainDef::parse(&xml).unwrap().to_xml(None), xml);
}

#[test]
fn domain_active_gets_id() {
    let xml = fixture("test-dumpxml-test.xml");
    assert_eq!(DomainDef::parse(&xml).unwrap().to_xml(Some(1)), xml);
}

#[test]
fn network() {
    let xml = fixture("test-net-dumpxml-default.xml");
    assert_eq!(NetworkDef::parse(&xml).unwrap().to_xml(), xml);
}

#[test]
fn pool() {
    let xml = fixture("test-pool-dumpxml-default-pool.xml");
    let def = PoolDef::parse(&xml).unwrap();
    assert_eq!(def.to_xml(107_374_182_400, 0, 107_374_182_400), xml);
}

#[test]
fn interface() {
    let xml = fixture("test-iface-dumpxml-eth1.xml");
    assert_eq!(InterfaceDef::parse(&xml).unwrap().to_xml(), xml);
}

#[test]
fn node_devices() {
    for name in ["computer", "scsi_host1", "scsi_host2", "scsi_host11"] {
        let xml = fixture(&format!("test-nodedev-dumpxml-{name}.xml"));
        assert_eq!(NodeDeviceDef::parse(&xml).unwrap().to_xml(), xml, "{name}");
    }
}

#[test]
fn capabilities_tree() {
    // A generic document keeps its content through the element tree.
    let xml = fixture("test-capabilities.xml");
    let el = virtmesh_conf::xml::parse(&xml).unwrap();
    assert_eq!(el.name, "capabilities");
    assert_eq!(el.children_named("guest").count(), 2);
}
