//! Block and interface statistics of a running KVM guest (virsh
//! domblkstat / domifstat): SeaBIOS reads the boot disk, and an ARP
//! broadcast sent on the bridge reaches the guest's tap, so both
//! counters must move. Runs in a network namespace of its own (the tap
//! needs a bridge); needs root, /dev/kvm, QEMU and `ip`; skips with the
//! reason otherwise, fails under VIRTMESH_REQUIRE_HOST=1.

mod common;

use common::{Netns, by_name, host_ready};
use std::time::{Duration, Instant};
use virtmesh_qemu::QemuDriver;

#[test]
fn disk_and_interface_counters_move() {
    if !host_ready() {
        return;
    }
    let ns = Netns::new("s");
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["addr", "add", "10.77.0.1/24", "dev", "br0"]);
    ns.ip(&["link", "set", "br0", "up"]);
    let img = ns.dir.path().join("boot.raw");
    std::fs::write(&img, vec![0u8; 1 << 20]).expect("image");
    let xml = format!(
        "<domain type='kvm'><name>s</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type></os><devices>\
         <disk type='file' device='disk'><driver name='qemu' type='raw'/>\
         <source file='{}'/><target dev='vda' bus='virtio'/></disk>\
         <interface type='bridge'><mac address='52:54:00:aa:bb:01'/><source bridge='br0'/>\
         <model type='virtio'/></interface></devices></domain>",
        img.display()
    );
    let ns_name = ns.name.clone();
    let (disk, unknown_disk, by_source, iface, by_mac, unknown_iface, tap_tx) =
        ns.run(move |cfg| async move {
            let d = QemuDriver::new(cfg).await.expect("driver");
            d.define(&xml).await.expect("define");
            d.start(Some(&by_name("s")), false).await.expect("start");
            let r = Some(by_name("s"));
            // SeaBIOS reads the MBR of the boot disk soon after `cont`.
            let deadline = Instant::now() + Duration::from_secs(20);
            let disk = loop {
                let s = d.block_stats(r.as_ref(), "vda").await.expect("vda stats");
                if s.rd_req > 0 || Instant::now() > deadline {
                    break s;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let unknown_disk = d
                .block_stats(r.as_ref(), "vdz")
                .await
                .map_err(|e| e.to_string());
            let by_source = d
                .block_stats(r.as_ref(), &img.display().to_string())
                .await
                .expect("stats by source path");
            // An ARP request for an absent neighbour is flooded to every
            // bridge port: the guest receives it (the tap transmits it).
            let _ = std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ns_name,
                    "ping",
                    "-c",
                    "2",
                    "-W",
                    "1",
                    "10.77.0.9",
                ])
                .output();
            let iface = d.interface_stats(r.as_ref(), "vnet0");
            let by_mac = d.interface_stats(r.as_ref(), "52:54:00:AA:BB:01");
            let unknown_iface = d
                .interface_stats(r.as_ref(), "nope0")
                .map_err(|e| e.to_string());
            let tap_tx: i64 = std::fs::read_to_string("/sys/class/net/vnet0/statistics/tx_packets")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(-1);
            d.destroy(r.as_ref(), false).await.expect("destroy");
            (
                disk,
                unknown_disk,
                by_source,
                iface,
                by_mac,
                unknown_iface,
                tap_tx,
            )
        });
    assert!(disk.rd_req > 0 && disk.rd_bytes >= 512, "{disk:?}");
    assert!(by_source.rd_req >= disk.rd_req, "{by_source:?} vs {disk:?}");
    let e = unknown_disk.expect_err("unknown disk");
    assert!(e.contains("invalid path: vdz"), "{e}");
    let iface = iface.expect("vnet0 stats");
    // The guest's rx is the tap's tx (libvirt swaps the host view).
    assert!(iface.rx_packets >= 1, "{iface:?}");
    assert!(iface.rx_packets <= tap_tx, "{iface:?} tap tx {tap_tx}");
    assert!(by_mac.expect("stats by MAC").rx_packets >= iface.rx_packets);
    let e = unknown_iface.expect_err("unknown interface");
    assert!(e.contains("'nope0' is not a known interface"), "{e}");
}
