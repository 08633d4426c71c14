//! Block and interface statistics of running guests (virsh domblkstat /
//! domifstat, and the block/net groups of domstats): SeaBIOS reads the
//! boot disk of a KVM guest, and the test guest (Debian's kernel, busybox
//! udhcpc) sends DHCP requests out of its tap. Runs in a network
//! namespace of its own (the tap needs a bridge); needs root, /dev/kvm,
//! QEMU, `ip` and the test guest; skips with the reason otherwise, fails
//! under VIRTMESH_REQUIRE_HOST=1.

mod common;

use common::{Netns, by_name, guest_files, host_ready};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use virtmesh_proto::v1 as pb;
use virtmesh_qemu::QemuDriver;

/// One domain's all-domain stats as `field → value` (Debug text).
fn params(all: &[pb::DomainStats], name: &str) -> HashMap<String, String> {
    all.iter()
        .find(|s| s.name == name)
        .map(|s| {
            s.params
                .iter()
                .map(|p| (p.field.clone(), format!("{:?}", p.value)))
                .collect()
        })
        .unwrap_or_default()
}

fn sysfs_counter(link: &str, what: &str) -> i64 {
    std::fs::read_to_string(format!("/sys/class/net/{link}/statistics/{what}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(-1)
}

#[test]
fn disk_and_interface_counters_move() {
    if !host_ready() {
        return;
    }
    let Some(files) = guest_files() else {
        return;
    };
    let ns = Netns::new("s");
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["link", "set", "br0", "up"]);
    let img = ns.dir.path().join("boot.raw");
    std::fs::write(&img, vec![0u8; 1 << 20]).expect("image");
    let disk_guest = format!(
        "<domain type='kvm'><name>s</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type></os><devices>\
         <disk type='file' device='disk'><driver name='qemu' type='raw'/>\
         <source file='{}'/><target dev='vda' bus='virtio'/></disk></devices></domain>",
        img.display()
    );
    let net_guest = format!(
        "<domain type='qemu'><name>n</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='q35'>hvm</type><kernel>{}</kernel><initrd>{}</initrd>\
         <cmdline>console=ttyS0 panic=-1</cmdline></os><devices>\
         <interface type='bridge'><mac address='52:54:00:aa:bb:01'/><source bridge='br0'/>\
         <model type='virtio'/></interface></devices></domain>",
        files.join("vmlinuz").display(),
        files.join("initrd-net.cpio").display()
    );
    let img_path = img.display().to_string();
    let (all, disk, unknown_disk, by_source, iface, by_mac, unknown_iface, tap_rx) =
        ns.run(move |cfg| async move {
            let d = QemuDriver::new(cfg).await.expect("driver");
            d.define(&disk_guest).await.expect("define s");
            d.define(&net_guest).await.expect("define n");
            let (s, n) = (Some(by_name("s")), Some(by_name("n")));
            d.start(s.as_ref(), false).await.expect("start s");
            d.start(n.as_ref(), false).await.expect("start n");
            // SeaBIOS reads the MBR of the boot disk soon after `cont`.
            let deadline = Instant::now() + Duration::from_secs(20);
            let disk = loop {
                let st = d.block_stats(s.as_ref(), "vda").await.expect("vda stats");
                if st.rd_req > 0 || Instant::now() > deadline {
                    break st;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let unknown_disk = d
                .block_stats(s.as_ref(), "vdz")
                .await
                .map_err(|e| e.to_string());
            let by_source = d
                .block_stats(s.as_ref(), &img_path)
                .await
                .expect("stats by source path");
            // The booted guest's udhcpc broadcasts DHCP discovers, which
            // the tap receives on the host side.
            let deadline = Instant::now() + Duration::from_secs(90);
            while sysfs_counter("vnet0", "rx_packets") < 1 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let iface = d.interface_stats(n.as_ref(), "vnet0");
            let by_mac = d.interface_stats(n.as_ref(), "52:54:00:AA:BB:01");
            let unknown_iface = d
                .interface_stats(n.as_ref(), "nope0")
                .map_err(|e| e.to_string());
            let tap_rx = sysfs_counter("vnet0", "rx_packets");
            let all = d.all_stats(|_| true).await;
            d.destroy(s.as_ref(), false).await.expect("destroy s");
            d.destroy(n.as_ref(), false).await.expect("destroy n");
            (
                all,
                disk,
                unknown_disk,
                by_source,
                iface,
                by_mac,
                unknown_iface,
                tap_rx,
            )
        });
    assert!(disk.rd_req > 0 && disk.rd_bytes >= 512, "{disk:?}");
    assert!(by_source.rd_req >= disk.rd_req, "{by_source:?} vs {disk:?}");
    let e = unknown_disk.expect_err("unknown disk");
    assert!(e.contains("invalid path: vdz"), "{e}");
    let iface = iface.expect("vnet0 stats");
    // The guest's tx is the tap's rx (libvirt swaps the host view).
    assert!(iface.tx_packets >= 1, "{iface:?}");
    assert!(iface.tx_packets <= tap_rx, "{iface:?} tap rx {tap_rx}");
    assert!(by_mac.expect("stats by MAC").tx_packets >= iface.tx_packets);
    let e = unknown_iface.expect_err("unknown interface");
    assert!(e.contains("'nope0' is not a known interface"), "{e}");
    // The same counters in the all-domain stats' block and net groups.
    let s = params(&all, "s");
    assert_eq!(
        s.get("block.count").map(String::as_str),
        Some("Some(Uint(1))")
    );
    assert!(
        s.get("block.0.name").is_some_and(|v| v.contains("vda")),
        "{s:?}"
    );
    assert!(
        s.get("block.0.rd.reqs")
            .is_some_and(|v| v != "Some(Uint(0))"),
        "{s:?}"
    );
    assert_eq!(
        s.get("net.count").map(String::as_str),
        Some("Some(Uint(0))")
    );
    let n = params(&all, "n");
    assert_eq!(
        n.get("net.count").map(String::as_str),
        Some("Some(Uint(1))")
    );
    assert!(
        n.get("net.0.name").is_some_and(|v| v.contains("vnet0")),
        "{n:?}"
    );
    assert!(
        n.get("net.0.tx.pkts").is_some_and(|v| v != "Some(Uint(0))"),
        "{n:?}"
    );
}
