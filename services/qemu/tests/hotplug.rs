//! Hot-plug and unplug of disks and interfaces on real QEMU/KVM, checked
//! with QMP `query-block` / `query-pci`, inside a network namespace of the
//! test's own (the interfaces need host links). Needs root, /dev/kvm, QEMU
//! and `ip`; skips with the reason otherwise, fails under
//! VIRTMESH_REQUIRE_HOST=1.

mod common;

use common::{Netns, by_name, host_ready};
use serde_json::Value;
use virtmesh_proto::v1 as pb;
use virtmesh_qemu::QemuDriver;

fn live() -> Option<pb::Impact> {
    Some(pb::Impact {
        live: true,
        config: false,
        current: false,
    })
}

/// Every qdev id on the guest's PCI buses.
fn pci_ids(v: &Value) -> Vec<String> {
    fn walk(devs: &Value, out: &mut Vec<String>) {
        for d in devs.as_array().into_iter().flatten() {
            if let Some(id) = d.get("qdev_id").and_then(Value::as_str) {
                out.push(id.to_owned());
            }
            if let Some(b) = d.get("pci_bridge").and_then(|b| b.get("devices")) {
                walk(b, out);
            }
        }
    }
    let mut out = Vec::new();
    for bus in v.as_array().into_iter().flatten() {
        walk(&bus["devices"], &mut out);
    }
    out
}

#[test]
fn disk_and_interfaces_hotplug_and_unplug() {
    if !host_ready() {
        return;
    }
    let ns = Netns::new("h");
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["link", "set", "br0", "up"]);
    let img = ns.dir.path().join("hot.raw");
    std::fs::write(&img, vec![0u8; 1 << 20]).expect("image");
    let img = img.display().to_string();
    ns.ip(&[
        "link", "add", "link", "veth0", "name", "keep0", "type", "macvtap", "mode", "bridge",
    ]);
    let (pci_before, blocks, pci_plugged, links_plugged, pci_after, links_after, more) =
        ns.run(move |cfg| async move {
            let links = || {
                std::fs::read_dir("/sys/class/net")
                    .map(|d| {
                        d.filter_map(Result::ok)
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            };
            let d = QemuDriver::new(cfg).await.expect("driver");
            // pc with ACPI: hot-plug on bus 0, with slots to spare.
            d.define(
                "<domain type='kvm'><name>h</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
                 <os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features></domain>",
            )
            .await
            .expect("define");
            d.start(Some(&by_name("h")), true).await.expect("start");
            let r = Some(by_name("h"));
            let q = |c: &'static str| {
                let d = d.clone();
                let r = r.clone();
                async move {
                    d.monitor_command(r.as_ref(), &format!("{{\"execute\":\"{c}\"}}"))
                        .await
                        .expect("qmp")
                }
            };
            let pci_before = pci_ids(&q("query-pci").await);
            let disk = format!(
                "<disk type='file' device='disk'><driver name='qemu' type='raw'/>\
                 <source file='{img}'/><target dev='vdb' bus='virtio'/></disk>"
            );
            let bridge = "<interface type='bridge'><mac address='52:54:00:aa:cc:01'/>\
                          <source bridge='br0'/><model type='virtio'/></interface>";
            let direct = "<interface type='direct'><mac address='52:54:00:aa:cc:02'/>\
                          <source dev='veth0' mode='bridge'/><model type='virtio'/></interface>";
            for x in [disk.as_str(), bridge, direct] {
                d.attach_device(r.as_ref(), x, live().as_ref())
                    .await
                    .unwrap_or_else(|e| panic!("attach {x}: {e}"));
            }
            let blocks = q("query-block").await.to_string();
            let pci_plugged = pci_ids(&q("query-pci").await);
            let links_plugged = links();
            // A failed hot-plug leaves nothing behind: a macvtap whose
            // name exists (kept, not ours) and a disk QEMU cannot open.
            let clash = "<interface type='direct'><mac address='52:54:00:aa:cc:03'/>\
                         <source dev='veth0' mode='bridge'/><target dev='keep0'/>\
                         <model type='virtio'/></interface>";
            let clash_err = d
                .attach_device(r.as_ref(), clash, live().as_ref())
                .await
                .err()
                .map(|e| e.message);
            let missing = "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
                           <source file='/nonexistent/hot.qcow2'/><target dev='vdc' bus='virtio'/></disk>";
            let missing_err = d
                .attach_device(r.as_ref(), missing, live().as_ref())
                .await
                .err()
                .map(|e| e.message);
            let nodes = q("query-named-block-nodes").await.to_string();
            // Unplug needs the guest's cooperation (ACPI eject); this one
            // runs no OS, so, as in libvirt, the request is sent (success)
            // and the device stays, consistently, in QEMU and in the live
            // XML until the guest lets it go (tests/boot.rs has one that
            // does).
            let unplug = d
                .detach_device(r.as_ref(), bridge, live().as_ref())
                .await
                .err()
                .map(|e| e.to_string());
            let pci_after = pci_ids(&q("query-pci").await);
            let xml = d
                .lookup(r.as_ref())
                .map(|v| v.def.to_xml(Some(v.id)))
                .unwrap_or_default();
            d.destroy(r.as_ref(), false).await.expect("destroy");
            let links_after = links();
            (
                pci_before,
                blocks,
                pci_plugged,
                links_plugged,
                pci_after,
                links_after,
                (clash_err, missing_err, nodes, unplug, xml),
            )
        });
    let (clash_err, missing_err, nodes, unplug, xml) = more;
    assert!(!pci_before.contains(&"virtio-disk1".to_owned()));
    assert!(blocks.contains("hot.raw"), "query-block: {blocks}");
    for id in ["virtio-disk1", "net0", "net1"] {
        assert!(
            pci_plugged.contains(&id.to_owned()),
            "{id}: {pci_plugged:?}"
        );
        assert!(pci_after.contains(&id.to_owned()), "{id}: {pci_after:?}");
    }
    assert!(
        links_plugged.contains(&"vnet0".to_owned()),
        "{links_plugged:?}"
    );
    assert!(
        links_plugged.contains(&"macvtap0".to_owned()),
        "{links_plugged:?}"
    );
    assert_eq!(
        clash_err.as_deref(),
        Some("error creating macvtap interface keep0@veth0 (52:54:00:aa:cc:03): File exists")
    );
    assert!(ns.link_index("keep0").is_some(), "{}", ns.links());
    assert!(
        missing_err
            .as_deref()
            .is_some_and(|m| m.contains("/nonexistent/hot.qcow2")),
        "{missing_err:?}"
    );
    assert!(!nodes.contains("nonexistent"), "{nodes}");
    assert_eq!(unplug, None, "the unplug request is sent");
    assert!(xml.contains("<alias name='net0'/>"), "{xml}");
    assert!(xml.contains("<target dev='vnet0'/>"), "{xml}");
    // Destroy releases the links hot-plug created, and only those.
    assert!(
        !links_after.contains(&"vnet0".to_owned()),
        "{links_after:?}"
    );
    assert!(
        !links_after.contains(&"macvtap0".to_owned()),
        "{links_after:?}"
    );
    assert!(ns.link_index("keep0").is_some(), "{}", ns.links());
}
