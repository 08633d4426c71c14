//! The macvtap rule (libvirt's "qemu: Don't remove macvtaps on failed
//! start", DESIGN.md §6), on real netlink and real QEMU/KVM: the driver
//! runs inside a network namespace each test creates, on a thread that
//! entered it (`setns`) and mounted a sysfs of its own (so /sys shows that
//! namespace, as `ip netns exec` does). A veth is the macvtap parent (no
//! `dummy` link type here, HOST.md).
//!
//! Needs root, /dev/kvm, QEMU and `ip`; skips with the reason otherwise,
//! fails under VIRTMESH_REQUIRE_HOST=1. The Drop guard kills our QEMUs and
//! deletes the namespace (and with it every link inside).

mod common;

use common::{Netns, by_name, host_ready};
use std::process::Command;
use virtmesh_qemu::QemuDriver;

const MAC: &str = "52:54:00:aa:bb:01";

/// A diskless KVM guest with one direct interface on veth0 (and `extra`
/// devices).
fn guest(name: &str, target: Option<&str>, extra: &str) -> String {
    let target = target
        .map(|t| format!("<target dev='{t}'/>"))
        .unwrap_or_default();
    format!(
        "<domain type='kvm'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>{extra}\
         <interface type='direct'><mac address='{MAC}'/><source dev='veth0' mode='bridge'/>{target}\
         <model type='virtio'/></interface></devices></domain>"
    )
}

#[test]
fn existing_macvtap_survives_a_failed_start() {
    if !host_ready() {
        return;
    }
    let ns = Netns::new("a");
    ns.ip(&[
        "link", "add", "link", "veth0", "name", "test", "type", "macvtap", "mode", "bridge",
    ]);
    let before = ns.link_index("test").expect("test macvtap exists");
    let msg = ns.run(|cfg| async move {
        let d = QemuDriver::new(cfg).await.expect("driver");
        d.define(&guest("a", Some("test"), ""))
            .await
            .expect("define");
        let Err(e) = d.start(Some(&by_name("a")), false).await else {
            panic!("start must fail: the name exists");
        };
        e.message
    });
    assert_eq!(
        msg,
        format!("error creating macvtap interface test@veth0 ({MAC}): File exists")
    );
    assert_eq!(
        ns.link_index("test"),
        Some(before),
        "the pre-existing macvtap must not be removed: {}",
        ns.links()
    );
}

#[test]
fn created_macvtap_is_gone_after_destroy() {
    if !host_ready() {
        return;
    }
    let ns = Netns::new("b");
    let (name, during) = {
        let ns_name = ns.name.clone();
        ns.run(move |cfg| async move {
            let d = QemuDriver::new(cfg).await.expect("driver");
            d.define(&guest("b", None, "")).await.expect("define");
            let v = d.start(Some(&by_name("b")), false).await.expect("start");
            let xml = v.def.to_xml(Some(v.id));
            // The live XML names the link we made.
            let name = xml
                .split("<target dev='")
                .nth(1)
                .and_then(|s| s.split('\'').next())
                .unwrap_or_default()
                .to_owned();
            let during = Command::new("ip")
                .args(["-n", &ns_name, "-o", "link", "show", "dev", &name])
                .output()
                .is_ok_and(|o| o.status.success());
            d.destroy(Some(&by_name("b")), false)
                .await
                .expect("destroy");
            (name, during)
        })
    };
    assert!(name.starts_with("macvtap"), "live target dev: {name:?}");
    assert!(during, "{name} exists while the guest runs");
    assert_eq!(ns.link_index(&name), None, "{}", ns.links());
}

#[test]
fn created_macvtap_is_gone_after_a_start_that_failed_later() {
    if !host_ready() {
        return;
    }
    let ns = Netns::new("c");
    let missing = "<disk type='file' device='disk'><driver name='qemu' type='raw'/>\
                   <source file='/nonexistent/virtmesh-missing.raw'/><target dev='vda' bus='virtio'/></disk>";
    let msg = ns.run(move |cfg| async move {
        let d = QemuDriver::new(cfg).await.expect("driver");
        d.define(&guest("c", Some("vmqtap0"), missing))
            .await
            .expect("define");
        let Err(e) = d.start(Some(&by_name("c")), false).await else {
            panic!("start must fail: the disk is missing");
        };
        e.message
    });
    assert!(
        msg.contains("/nonexistent/virtmesh-missing.raw"),
        "QEMU's own error reaches the caller: {msg}"
    );
    assert_eq!(ns.link_index("vmqtap0"), None, "{}", ns.links());
}

#[test]
fn created_macvtap_is_gone_after_destroy_following_a_restart() {
    if !host_ready() {
        return;
    }
    let ns = Netns::new("d");
    let ns_name = ns.name.clone();
    let (during, after_restart) = ns.run(move |cfg| async move {
        let exists = |n: &str| {
            Command::new("ip")
                .args(["-n", &ns_name, "-o", "link", "show", "dev", n])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        {
            let d = QemuDriver::new(cfg.clone()).await.expect("driver");
            d.define(&guest("d", Some("vmqtap1"), ""))
                .await
                .expect("define");
            d.start(Some(&by_name("d")), false).await.expect("start");
        }
        // The first driver is gone (a service restart); the guest is not.
        let during = exists("vmqtap1");
        let d = QemuDriver::new(cfg).await.expect("restarted driver");
        let v = d.lookup(Some(&by_name("d"))).expect("guest found again");
        assert!(v.is_active(), "the guest survived the restart");
        d.destroy(Some(&by_name("d")), false)
            .await
            .expect("destroy");
        (during, exists("vmqtap1"))
    });
    assert!(during, "the link stays while the guest runs");
    assert!(!after_restart, "{}", ns.links());
}

#[test]
fn bridge_tap_is_enslaved_and_released() {
    if !host_ready() {
        return;
    }
    let ns = Netns::new("e");
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    // An uplink with a low MAC on the bridge, as a host NIC would be: the
    // bridge takes the lowest port MAC, which must stay the uplink's.
    ns.ip(&["link", "set", "veth1", "address", "02:00:00:00:00:01"]);
    ns.ip(&["link", "set", "veth1", "master", "br0"]);
    ns.ip(&["link", "set", "br0", "up"]);
    let ns_name = ns.name.clone();
    let (xml, shown, bridge) = ns.run(move |cfg| async move {
        let d = QemuDriver::new(cfg).await.expect("driver");
        let xml = "<domain type='kvm'><name>e</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>\
             <interface type='bridge'><mac address='52:54:00:aa:bb:02'/><source bridge='br0'/>\
             <model type='virtio'/></interface><interface type='user'><model type='e1000e'/></interface>\
             </devices></domain>";
        d.define(xml).await.expect("define");
        let v = d.start(Some(&by_name("e")), false).await.expect("start");
        let shown = Command::new("ip")
            .args(["-n", &ns_name, "-o", "link", "show", "dev", "vnet0"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let bridge = Command::new("ip")
            .args(["-n", &ns_name, "-o", "link", "show", "dev", "br0"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let live = v.def.to_xml(Some(v.id));
        d.destroy(Some(&by_name("e")), false)
            .await
            .expect("destroy");
        (live, shown, bridge)
    });
    assert!(shown.contains("master br0"), "vnet0 on br0: {shown}");
    // libvirt's tap MAC: the guest's with 0xFE first.
    assert!(
        shown.contains("link/ether fe:54:00:aa:bb:02 "),
        "vnet0's MAC: {shown}"
    );
    assert!(
        bridge.contains("link/ether 02:00:00:00:00:01 "),
        "br0 keeps its uplink's MAC: {bridge}"
    );
    assert!(xml.contains("<target dev='vnet0'/>"), "{xml}");
    assert_eq!(ns.link_index("vnet0"), None, "{}", ns.links());
    assert!(ns.link_index("br0").is_some(), "the bridge is not ours");
}

/// Recovery cleanup: a guest whose QEMU is gone (here: a start that died
/// before QEMU ran, pid 0) has its recorded links released by the next
/// driver; a link it did not record is left alone.
#[test]
fn recovery_releases_recorded_links_only() {
    if !host_ready() {
        return;
    }
    let ns = Netns::new("f");
    for name in ["orph0", "other0"] {
        ns.ip(&[
            "link", "add", "link", "veth0", "name", name, "type", "macvtap", "mode", "bridge",
        ]);
    }
    let index = ns.link_index("orph0").expect("orph0");
    let run = ns.dir.path().join("run");
    std::fs::create_dir_all(&run).expect("run dir");
    let uuid = "5d7c3a8e-1c1e-4e55-9a55-6f1f4f0e2a01";
    virtmesh_qemu::state::save_status(
        &run.join(format!("{uuid}.status.json")),
        &virtmesh_qemu::state::LiveStatus {
            uuid: uuid.into(),
            name: "f".into(),
            id: 0,
            pid: 0,
            monitor: run.join(format!("{uuid}.qmp")),
            persistent: false,
            xml: guest("f", Some("orph0"), ""),
            links: vec![virtmesh_qemu::hostnet::OwnedLink {
                name: "orph0".into(),
                index,
                port: None,
                shaped_only: false,
            }],
        },
    )
    .expect("status");
    let found = ns.run(|cfg| async move {
        let d = QemuDriver::new(cfg).await.expect("driver");
        d.list().len()
    });
    assert_eq!(found, 0, "the transient guest is gone");
    assert_eq!(ns.link_index("orph0"), None, "{}", ns.links());
    assert!(ns.link_index("other0").is_some(), "{}", ns.links());
}

/// `ethernet`: a tap we create is ours and goes with the guest; an
/// existing one named with `managed='no'` is used and left alone.
#[test]
fn ethernet_taps_ours_and_unmanaged() {
    if !host_ready() {
        return;
    }
    let ns = Netns::new("g");
    ns.ip(&["tuntap", "add", "dev", "mine0", "mode", "tap"]);
    let before = ns.link_index("mine0").expect("mine0");
    let ns_name = ns.name.clone();
    let during = ns.run(move |cfg| async move {
        let d = QemuDriver::new(cfg).await.expect("driver");
        let xml = "<domain type='kvm'><name>g</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>\
             <interface type='ethernet'><mac address='52:54:00:aa:bb:05'/><target dev='ours0'/>\
             <model type='virtio'/></interface>\
             <interface type='ethernet'><mac address='52:54:00:aa:bb:06'/><target dev='mine0' managed='no'/>\
             <bandwidth><outbound average='100'/></bandwidth>\
             <model type='virtio'/></interface></devices></domain>";
        d.define(xml).await.expect("define");
        d.start(Some(&by_name("g")), false).await.expect("start");
        let during = Command::new("ip")
            .args(["-n", &ns_name, "-o", "link", "show", "dev", "ours0"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let shaped = Command::new("ip")
            .args(["netns", "exec", &ns_name, "tc", "class", "show", "dev", "mine0"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        assert!(shaped.contains("rate 800Kbit"), "our QoS on mine0: {shaped}");
        d.destroy(Some(&by_name("g")), false)
            .await
            .expect("destroy");
        during
    });
    // The tap stays the user's, our shaping on it does not.
    let (_, left) = tc(&ns, &["class", "show", "dev", "mine0"]);
    assert!(left.trim().is_empty(), "shaping left on mine0: {left}");
    let during = during.expect("ours0 exists while the guest runs");
    assert!(
        during.contains("link/ether fe:54:00:aa:bb:05 "),
        "ours0's MAC is the guest's with 0xFE first: {during}"
    );
    assert_eq!(ns.link_index("ours0"), None, "{}", ns.links());
    assert_eq!(ns.link_index("mine0"), Some(before), "{}", ns.links());
}

/// `tc` in the test's namespace → (success, stdout).
fn tc(ns: &Netns, args: &[&str]) -> (bool, String) {
    Command::new("ip")
        .args(["netns", "exec", &ns.name, "tc"])
        .args(args)
        .output()
        .map(|o| {
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
            )
        })
        .unwrap_or_default()
}

/// Whether the kernel has tc's police action (tried on veth1's ingress).
fn kernel_has_police(ns: &Netns) -> bool {
    let has = tc(ns, &["qdisc", "add", "dev", "veth1", "ingress"]).0
        && tc(
            ns,
            &[
                "filter", "add", "dev", "veth1", "parent", "ffff:", "protocol", "all", "u32",
                "match", "u32", "0", "0", "police", "rate", "1kbps", "burst", "1kb", "drop",
            ],
        )
        .0;
    tc(ns, &["qdisc", "del", "dev", "veth1", "ingress"]);
    has
}

/// An interface's `<bandwidth>` on its host link, as libvirt sets it: a
/// bridge tap shapes the guest's inbound on its egress (HTB), a macvtap
/// shares the guest's view and shapes the guest's outbound; a guest
/// outbound limit on a tap needs tc's police action, and where the
/// kernel lacks it the start fails with tc's words and leaves no link.
#[test]
fn interface_bandwidth_shapes_tap_and_macvtap() {
    if !host_ready() {
        return;
    }
    let ns = Netns::new("q");
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["link", "set", "br0", "up"]);
    let police = kernel_has_police(&ns);
    let ns_name = ns.name.clone();
    let (tap, macvtap, out_start) = ns.run(move |cfg| async move {
        let d = QemuDriver::new(cfg).await.expect("driver");
        let xml = format!(
            "<domain type='kvm'><name>q</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>\
             <interface type='bridge'><mac address='52:54:00:aa:bb:07'/><source bridge='br0'/>\
             <bandwidth><inbound average='1000' peak='2000' burst='256'/></bandwidth>\
             <model type='virtio'/></interface>\
             <interface type='direct'><mac address='{MAC}'/><source dev='veth0' mode='bridge'/>\
             <bandwidth><outbound average='100'/></bandwidth><model type='virtio'/></interface>\
             </devices></domain>"
        );
        d.define(&xml).await.expect("define");
        d.start(Some(&by_name("q")), false).await.expect("start");
        let show = |dev: &str| {
            Command::new("ip")
                .args(["netns", "exec", &ns_name, "tc", "class", "show", "dev", dev])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        let (tap, macvtap) = (show("vnet0"), show("macvtap0"));
        d.destroy(Some(&by_name("q")), false)
            .await
            .expect("destroy");
        let out = xml.replace("<name>q</name>", "<name>q2</name>").replace(
            "<inbound average='1000' peak='2000' burst='256'/>",
            "<outbound average='50'/>",
        );
        d.define(&out).await.expect("define outbound");
        let started = d.start(Some(&by_name("q2")), false).await.map(|_| ());
        if started.is_ok() {
            d.destroy(Some(&by_name("q2")), false)
                .await
                .expect("destroy");
        }
        (tap, macvtap, started)
    });
    // 1000 KiB/s = 8 Mbit/s, peak 16 Mbit/s.
    assert!(
        tap.contains("class htb 1:1 root") && tap.contains("rate 8Mbit ceil 16Mbit burst 256Kb"),
        "{tap}"
    );
    assert!(
        macvtap.contains("class htb 1:1 root") && macvtap.contains("rate 800Kbit"),
        "{macvtap}"
    );
    match (police, out_start) {
        (true, Ok(())) => {}
        (false, Err(e)) => assert!(
            e.message.contains("tc filter add dev vnet0 parent ffff: protocol all u32 match u32 0 0 police rate 50kbps"),
            "{}",
            e.message
        ),
        (police, r) => panic!("police action available: {police}, start: {r:?}"),
    }
    assert_eq!(ns.link_index("vnet0"), None, "{}", ns.links());
    assert_eq!(ns.link_index("macvtap0"), None, "{}", ns.links());
}
