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

fn config() -> Option<pb::Impact> {
    Some(pb::Impact {
        live: false,
        config: true,
        current: false,
    })
}

/// What `query-block` says is in the drive with qdev id `id`.
fn inserted(blocks: &Value, id: &str) -> Option<String> {
    blocks.as_array()?.iter().find_map(|b| {
        (b.get("qdev").and_then(Value::as_str) == Some(id)).then(|| {
            b.get("inserted")
                .and_then(|i| i.get("file"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })?
    })
}

/// UpdateDevice as libvirt's qemu driver: a CD-ROM's medium inserted,
/// changed and ejected on the running guest (query-block), a non-removable
/// disk's source refused, a NIC's link taken down (set_link) and its tap
/// shaped, the VNC password changed, and the config's device replaced.
#[test]
fn update_device_changes_media_link_bandwidth_and_config() {
    if !host_ready() {
        return;
    }
    let ns = Netns::new("u");
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["link", "set", "br0", "up"]);
    let iso1 = ns.dir.path().join("one.iso");
    let iso2 = ns.dir.path().join("two.iso");
    let disk = ns.dir.path().join("disk.raw");
    for f in [&iso1, &iso2, &disk] {
        std::fs::write(f, vec![0u8; 1 << 20]).expect("image");
    }
    let (iso1, iso2, disk) = (
        iso1.display().to_string(),
        iso2.display().to_string(),
        disk.display().to_string(),
    );
    let ns_name = ns.name.clone();
    let (want1, want2) = (iso1.clone(), iso2.clone());
    let (after_insert, after_change, after_eject, refused, xml, shaped, cfg_xml) =
        ns.run(move |cfg| async move {
            let d = QemuDriver::new(cfg).await.expect("driver");
            let cdrom = |src: &str| {
                format!(
                    "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>{src}\
                     <target dev='sda' bus='sata'/><readonly/></disk>"
                )
            };
            let xml = format!(
                "<domain type='kvm'><name>u</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
                 <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>{}\
                 <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{disk}'/>\
                 <target dev='vda' bus='virtio'/></disk>\
                 <interface type='bridge'><mac address='52:54:00:aa:bb:31'/><source bridge='br0'/>\
                 <model type='virtio'/></interface></devices></domain>",
                cdrom("")
            );
            d.define(&xml).await.expect("define");
            let r = Some(by_name("u"));
            d.start(r.as_ref(), false).await.expect("start");
            let blocks = |d: &QemuDriver| {
                let d = d.clone();
                async move {
                    d.monitor_command(Some(&by_name("u")), r#"{"execute":"query-block"}"#)
                        .await
                        .expect("query-block")
                }
            };
            let media = |src: &str| cdrom(&format!("<source file='{src}'/>"));
            d.update_device(r.as_ref(), &media(&iso1), live().as_ref(), false)
                .await
                .expect("insert");
            let after_insert = inserted(&blocks(&d).await, "sata0-0-0");
            d.update_device(r.as_ref(), &media(&iso2), live().as_ref(), false)
                .await
                .expect("change");
            let after_change = inserted(&blocks(&d).await, "sata0-0-0");
            d.update_device(r.as_ref(), &cdrom(""), live().as_ref(), true)
                .await
                .expect("eject");
            let after_eject = inserted(&blocks(&d).await, "sata0-0-0");
            let refused = d
                .update_device(
                    r.as_ref(),
                    &format!(
                        "<disk type='file' device='disk'><driver name='qemu' type='raw'/>\
                         <source file='{iso1}'/><target dev='vda' bus='virtio'/></disk>"
                    ),
                    live().as_ref(),
                    false,
                )
                .await
                .expect_err("not removable");
            d.update_device(
                r.as_ref(),
                "<interface type='bridge'><mac address='52:54:00:aa:bb:31'/><source bridge='br0'/>\
                 <model type='virtio'/><link state='down'/>\
                 <bandwidth><inbound average='1000'/></bandwidth></interface>",
                live().as_ref(),
                false,
            )
            .await
            .expect("link down, shaped");
            let shaped = std::process::Command::new("ip")
                .args(["netns", "exec", &ns_name, "tc", "class", "show", "dev", "vnet0"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let v = d.lookup(r.as_ref()).expect("lookup");
            let xml = v.def.to_xml(Some(v.id));
            d.update_device(r.as_ref(), &media(&iso2), config().as_ref(), false)
                .await
                .expect("config");
            let cfg_xml = d
                .lookup(r.as_ref())
                .expect("lookup")
                .config
                .map(|c| c.to_xml(None))
                .unwrap_or_default();
            d.destroy(r.as_ref(), false).await.expect("destroy");
            (after_insert, after_change, after_eject, refused, xml, shaped, cfg_xml)
        });
    let (iso1, iso2) = (want1, want2);
    assert_eq!(after_insert.as_deref(), Some(iso1.as_str()));
    assert_eq!(after_change.as_deref(), Some(iso2.as_str()));
    assert_eq!(after_eject, None);
    assert_eq!(
        refused.message,
        "Operation not supported: disk source can be changed only in removable drives"
    );
    assert!(xml.contains("<link state='down'/>"), "{xml}");
    assert!(shaped.contains("rate 8Mbit"), "{shaped}");
    assert!(
        !xml.contains(&format!("<source file='{iso2}'/>")),
        "ejected: {xml}"
    );
    assert!(
        cfg_xml.contains(&format!("<source file='{iso2}'/>")),
        "{cfg_xml}"
    );
}
