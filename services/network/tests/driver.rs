//! The driver's object model without host plumbing: define, redefine,
//! lookup, list filters, XML, autostart, undefine and libvirt's errors,
//! persisted across a driver restart. Needs no root (opening a netlink
//! socket does not), so it runs everywhere. It runs in the host's own
//! network namespace, so nothing here may start a network: in particular
//! no network is left marked autostart when a driver is reopened (the
//! autostart at driver start is tested in netns.rs).

use virtmesh_network::{NetworkConfig, NetworkDriver};
use virtmesh_proto::v1::{self as pb, object_ref::Key};
use virtmesh_rpc::{ErrorCode, ErrorDomain};

fn cfg(dir: &tempfile::TempDir) -> NetworkConfig {
    NetworkConfig {
        state_dir: dir.path().join("state"),
        run_dir: dir.path().join("run"),
    }
}

fn name(n: &str) -> Option<pb::ObjectRef> {
    Some(pb::ObjectRef {
        key: Some(Key::Name(n.to_owned())),
    })
}

const UUID: &str = "14f6865f-355e-56c2-afd4-2f005da5b17b";

fn net_xml(n: &str, uuid: Option<&str>, bridge: Option<&str>) -> String {
    format!(
        "<network><name>{n}</name>{}<forward mode='nat'/>{}<ip address='192.168.77.1' netmask='255.255.255.0'/></network>",
        uuid.map(|u| format!("<uuid>{u}</uuid>"))
            .unwrap_or_default(),
        bridge
            .map(|b| format!("<bridge name='{b}'/>"))
            .unwrap_or_default(),
    )
}

#[tokio::test]
async fn define_lookup_list_undefine_persist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = NetworkDriver::new(cfg(&dir)).await.expect("driver");
    let s = d
        .define_xml(&net_xml("a", Some(UUID), None))
        .await
        .expect("define");
    assert_eq!(s.uuid, UUID);
    assert!(!s.active && s.persistent && !s.autostart);
    let xml = d.xml_desc(name("a").as_ref(), false).expect("xml");
    // libvirt's defaults: a virbrN bridge not used by the host, a MAC.
    assert!(xml.contains("<bridge name='virbr"), "{xml}");
    assert!(xml.contains("stp='on' delay='0'/>"), "{xml}");
    assert!(xml.contains("<mac address='52:54:00:"), "{xml}");
    let bridge = d.bridge_name(name("a").as_ref()).expect("bridge");
    assert!(bridge.starts_with("virbr"));

    // A second network gets another bridge.
    d.define_xml(&net_xml("b", None, None))
        .await
        .expect("define b");
    let b_bridge = d.bridge_name(name("b").as_ref()).expect("bridge b");
    assert_ne!(bridge, b_bridge);

    // Redefining without a UUID keeps the UUID.
    let again = d
        .define_xml(&net_xml("a", None, Some(&bridge)))
        .await
        .expect("redefine");
    assert_eq!(again.uuid, UUID);

    // Same UUID, other name; same name, other UUID; a used bridge.
    let e = d
        .define_xml(&net_xml("c", Some(UUID), None))
        .await
        .expect_err("uuid clash");
    assert_eq!(e.code, ErrorCode::OperationFailed);
    assert_eq!(e.domain, ErrorDomain::Network);
    assert_eq!(
        e.message,
        format!("operation failed: network 'a' is already defined with uuid {UUID}")
    );
    let e = d
        .define_xml(&net_xml(
            "a",
            Some("aedba276-b2aa-5a1d-859d-ea9075fc669f"),
            None,
        ))
        .await
        .expect_err("name clash");
    assert_eq!(
        e.message,
        format!("operation failed: network 'a' already exists with uuid {UUID}")
    );
    let e = d
        .define_xml(&net_xml("c", None, Some(&bridge)))
        .await
        .expect_err("bridge clash");
    assert_eq!(
        e.message,
        format!("internal error: bridge name '{bridge}' already in use.")
    );

    // Errors of the conf layer come through with libvirt's code.
    let e = d
        .define_xml("<network><uuid>x</uuid></network>")
        .await
        .expect_err("no name");
    assert_eq!(e.code, ErrorCode::NoName);

    d.set_autostart(name("a").as_ref(), true)
        .await
        .expect("autostart");
    assert!(d.get_autostart(name("a").as_ref()).expect("get"));
    let only_auto = d.list(&pb::ListFilter {
        autostart: true,
        ..Default::default()
    });
    assert_eq!(only_auto.len(), 1);
    assert_eq!(only_auto[0].name, "a");
    assert_eq!(d.list(&pb::ListFilter::default()).len(), 2);
    assert_eq!(
        d.list(&pb::ListFilter {
            active: true,
            ..Default::default()
        })
        .len(),
        0
    );

    let e = d.destroy(name("b").as_ref()).await.expect_err("inactive");
    assert_eq!(e.code, ErrorCode::OperationInvalid);
    assert_eq!(
        e.message,
        "Requested operation is not valid: network is not active"
    );
    let e = d.lookup(name("zz").as_ref()).expect_err("missing");
    assert_eq!(e.code, ErrorCode::NoNetwork);
    assert_eq!(
        e.message,
        "Network not found: no network with matching name 'zz'"
    );
    let e = d
        .lookup(Some(&pb::ObjectRef {
            key: Some(Key::Uuid("aedba276-b2aa-5a1d-859d-ea9075fc669f".into())),
        }))
        .expect_err("missing uuid");
    assert_eq!(
        e.message,
        "Network not found: no network with matching uuid 'aedba276-b2aa-5a1d-859d-ea9075fc669f'"
    );

    assert!(dir.path().join("state/autostart/a").exists());
    // Off again before the restart below: see the module comment.
    d.set_autostart(name("a").as_ref(), false)
        .await
        .expect("autostart off");
    assert!(!dir.path().join("state/autostart/a").exists());

    d.undefine(name("b").as_ref()).await.expect("undefine b");
    let info = d.info(name("a").as_ref()).expect("info");
    assert_eq!(info.bridge, bridge);
    drop(d);

    // Everything persisted: a new driver sees the same networks.
    let d = NetworkDriver::new(cfg(&dir)).await.expect("driver again");
    let all = d.list(&pb::ListFilter::default());
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].uuid, UUID);
    assert!(!all[0].autostart && !all[0].active);
    let stored = std::fs::read_to_string(dir.path().join("state/a.xml")).expect("file");
    assert_eq!(d.xml_desc(name("a").as_ref(), true).expect("xml"), stored);
}

#[tokio::test]
async fn second_driver_on_same_state_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _d = NetworkDriver::new(cfg(&dir)).await.expect("driver");
    let e = NetworkDriver::new(cfg(&dir)).await.expect_err("locked");
    assert!(e.to_string().contains("another virtmesh-network"), "{e}");
}
