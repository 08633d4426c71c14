//! Hot-plug through the gateway with virsh's convenience commands
//! (issue: `vsh attach-disk`, `attach-interface`, `detach-interface`,
//! `detach-disk`) on a real diskless q35 KVM guest.
//!
//! The qemu service runs inside a network namespace this test creates
//! (unix socket; the gateway outside reaches it), so the bridge that
//! `attach-interface --type bridge` puts the guest's tap on is ours, not
//! the host's. The guest has no OS: it never ejects a device, so a live
//! detach is what libvirt reports for such a guest: after waiting 5 s the
//! request stays sent, the command says it succeeded, and the device is
//! still listed until the guest lets go of it. Detaching from the
//! definition (`--config`) takes effect at once.

mod common;

use common::{Netns, Proc, Vsh, is_root, require, which};
use std::process::Output;
use std::time::{Duration, Instant};

const BRIDGE: &str = "hpbr0";

struct Mesh {
    // Field order is drop order: the gateway, then the service (its
    // guests were destroyed by `Cleanup` before), then the namespace.
    gateway: Proc,
    _qemu: Proc,
    ns: Netns,
    dir: tempfile::TempDir,
}

impl Mesh {
    fn start() -> Mesh {
        let ns = Netns::create(&format!("vmhp-{}", std::process::id())).expect("ip netns add");
        for args in [
            &["link", "set", "lo", "up"][..],
            &["link", "add", BRIDGE, "type", "bridge"],
            &["link", "set", BRIDGE, "up"],
        ] {
            let out = ns.ip(args);
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = |p: &str| dir.path().join(p).to_str().expect("utf-8").to_owned();
        let config = path("virtmesh.toml");
        std::fs::write(
            &config,
            format!(
                "[gateway]\nlisten = \"127.0.0.1:0\"\ndefault_uri = \"qemu:///system\"\n\n\
                 [[service]]\nname = \"qemu\"\nlisten = \"unix:{}\"\nschemes = [\"qemu\"]\n",
                path("qemu.sock")
            ),
        )
        .expect("config");
        let qemu = Proc::start(
            "ip",
            &[
                "netns",
                "exec",
                &ns.0,
                env!("CARGO_BIN_EXE_virtmesh-qemu"),
                "--config",
                &config,
                "--state-dir",
                &path("qemu-state"),
            ],
        );
        let gateway = Proc::start(
            env!("CARGO_BIN_EXE_virtmesh-gateway"),
            &["--config", &config, "--listen", "127.0.0.1:0"],
        );
        Mesh {
            gateway,
            _qemu: qemu,
            ns,
            dir,
        }
    }

    fn vsh(&self, args: &[&str]) -> Output {
        Vsh::new(&self.gateway.addr, "qemu:///system").run(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        Vsh::new(&self.gateway.addr, "qemu:///system").ok(args)
    }

    /// The command fails with exactly this stderr.
    fn fails(&self, args: &[&str], stderr: &str) {
        let out = self.vsh(args);
        assert_eq!(out.status.code(), Some(1), "vsh {args:?}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), stderr, "vsh {args:?}");
    }

    /// Names of the links enslaved to our bridge.
    fn bridge_ports(&self) -> Vec<String> {
        let out = self.ns.ip(&["-o", "link", "show", "master", BRIDGE]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or_default().to_owned())
            .collect()
    }
}

/// Destroys and undefines the guest even when an assertion fails.
struct Cleanup<'a>(&'a Mesh, &'a str);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.vsh(&["destroy", self.1]);
        let _ = self.0.vsh(&["undefine", self.1]);
    }
}

/// Rows of a vsh table (after the header and the dashes), split in
/// columns.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip_while(|l| !l.starts_with("---"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn kvm_guest_hotplug_with_virsh_shortcuts_through_the_gateway() {
    let host = std::path::Path::new("/dev/kvm").exists()
        && which("qemu-system-x86_64").is_some()
        && which("ip").is_some();
    if !require(
        "/dev/kvm, qemu-system-x86_64 and ip (scripts/install-host-deps.sh)",
        host,
    ) || !require("root (network namespace, bridge, taps)", is_root())
    {
        return;
    }
    let mesh = Mesh::start();
    let name = format!("e2e-hotplug-{}", std::process::id());
    let path = |p: &str| mesh.dir.path().join(p).to_str().expect("utf-8").to_owned();
    // q35 gives a definition one spare hot-plug root port; a disk and a
    // NIC plugged at the same time need a second one, declared as libvirt
    // users do.
    let xml = path("vm.xml");
    std::fs::write(
        &xml,
        format!(
            "<domain type='kvm'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='q35'>hvm</type></os>\
             <devices><controller type='pci' index='4' model='pcie-root-port'/>\
             <disk type='file' device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk>\
             </devices></domain>"
        ),
    )
    .expect("xml");
    let raw = path("x.raw");
    std::fs::File::create(&raw)
        .and_then(|f| f.set_len(16 << 20))
        .expect("raw image");
    let _cleanup = Cleanup(&mesh, &name);
    mesh.ok(&["define", &xml]);
    mesh.ok(&["start", &name]);

    // The empty CD-ROM drive: media in, out, refused when there is none.
    let iso = path("install.iso");
    std::fs::write(&iso, vec![0u8; 1 << 20]).expect("iso");
    assert_eq!(
        mesh.ok(&["change-media", &name, "sda", &iso, "--insert"]),
        "Successfully inserted media.\n\n"
    );
    let disks = rows(&mesh.ok(&["domblklist", &name]));
    assert!(
        disks.contains(&vec!["sda".to_owned(), iso.clone()]),
        "{disks:?}"
    );
    mesh.fails(
        &["change-media", &name, "sda", &iso, "--insert"],
        "error: The disk device 'sda' already has media\n",
    );
    assert_eq!(
        mesh.ok(&["change-media", &name, "sda", "--eject"]),
        "Successfully ejected media.\n\n"
    );
    let disks = rows(&mesh.ok(&["domblklist", &name]));
    assert!(
        disks.contains(&vec!["sda".to_owned(), "-".to_owned()]),
        "{disks:?}"
    );
    mesh.fails(
        &["change-media", &name, "sda", "--eject"],
        "error: The disk device 'sda' doesn't have media\n",
    );

    // A disk: attached live, listed, its statistics answered by QEMU.
    assert_eq!(
        mesh.ok(&[
            "attach-disk",
            &name,
            &raw,
            "vdb",
            "--targetbus",
            "virtio",
            "--live"
        ]),
        "Disk attached successfully\n\n"
    );
    let disks = rows(&mesh.ok(&["domblklist", &name]));
    assert!(
        disks.contains(&vec!["vdb".to_owned(), raw.clone()]),
        "{disks:?}"
    );
    let stats = mesh.ok(&["domblkstat", &name, "vdb"]);
    assert!(
        stats.contains("vdb rd_req 0\n") && stats.contains("vdb wr_bytes 0\n"),
        "{stats}"
    );
    // Live only: the definition does not have it.
    let inactive = rows(&mesh.ok(&["domblklist", &name, "--inactive"]));
    assert!(inactive.iter().all(|r| r[0] != "vdb"), "{inactive:?}");

    // virsh 11.3's attach-interface has no XML for user networking: it
    // refuses before it asks the driver, and so does vsh.
    mesh.fails(
        &["attach-interface", &name, "--type", "user", "--source", "x"],
        "error: No support for user in command 'attach-interface'\n",
    );
    // A bridge NIC: its tap lands on our bridge.
    assert_eq!(
        mesh.ok(&[
            "attach-interface",
            &name,
            "bridge",
            BRIDGE,
            "--model",
            "virtio",
            "--live",
        ]),
        "Interface attached successfully\n\n"
    );
    let ifaces = rows(&mesh.ok(&["domiflist", &name]));
    let nic = ifaces
        .iter()
        .find(|r| r[1] == "bridge")
        .unwrap_or_else(|| panic!("no bridge NIC listed: {ifaces:?}"))
        .clone();
    assert_eq!(&nic[2..4], [BRIDGE, "virtio"], "{nic:?}");
    assert!(nic[4].starts_with("52:54:00:"), "a generated MAC: {nic:?}");
    assert_eq!(mesh.bridge_ports(), vec![nic[0].clone()]);
    // Its link, by host device name: down in QEMU and in the live XML.
    assert_eq!(
        mesh.ok(&["domif-setlink", &name, &nic[0], "down"]),
        "Device updated successfully\n\n"
    );
    assert!(
        mesh.ok(&["dumpxml", &name])
            .contains("<link state='down'/>"),
        "the live XML shows the link down"
    );
    assert_eq!(
        mesh.ok(&["domif-getlink", &name, &nic[0]]),
        format!("{} down\n\n", nic[0])
    );
    mesh.fails(
        &["domif-setlink", &name, "vnet99", "down"],
        "error: interface (dev: vnet99) not found\n",
    );
    // Its bandwidth with domiftune: set on the tap, shown back.
    assert_eq!(
        mesh.ok(&["domiftune", &name, &nic[0], "--inbound", "1000,2000"]),
        "\n"
    );
    let tune = mesh.ok(&["domiftune", &name, &nic[0]]);
    assert!(
        tune.starts_with("inbound.average: 1000\ninbound.peak   : 2000\ninbound.burst  : 0\n"),
        "{tune}"
    );
    assert!(
        mesh.ok(&["dumpxml", &name])
            .contains("<inbound average='1000' peak='2000'/>"),
        "the live XML shows the bandwidth"
    );
    // Two of a type need --mac to tell them apart.
    let xml2 = path("nic2.xml");
    std::fs::write(
        &xml2,
        format!("<interface type='bridge'><source bridge='{BRIDGE}'/></interface>"),
    )
    .expect("nic xml");
    // (Both root ports are taken now: QEMU's bus has no room for a third.)
    mesh.fails(
        &["attach-device", &name, &xml2, "--live"],
        &format!(
            "error: Failed to attach device from {xml2}\n\
             error: internal error: No more available PCI slots\n"
        ),
    );
    mesh.fails(
        &[
            "detach-interface",
            &name,
            "bridge",
            "--mac",
            "52:54:00:00:00:99",
        ],
        "error: No interface with MAC address 52:54:00:00:00:99 was found\n\
         error: Failed to detach interface\n",
    );
    mesh.fails(
        &["detach-interface", &name, "network"],
        "error: No interface found whose type is network\n\
         error: Failed to detach interface\n",
    );
    // What detach-interface would send: the live element, as virsh dumps it.
    let sent = mesh.ok(&["detach-interface", &name, "bridge", "--print-xml"]);
    assert!(
        sent.starts_with("<interface type=\"bridge\">")
            && sent.contains(&format!("<mac address=\"{}\"/>", nic[4]))
            && sent.contains("<alias name=\"net0\"/>")
            && sent.ends_with("</interface>\n"),
        "{sent}"
    );

    // Live detach: the guest has no OS to eject the device, so after
    // libvirt's 5 s wait the request stays sent and the command reports
    // success, with the NIC (and its tap) still there.
    let t = Instant::now();
    assert_eq!(
        mesh.ok(&[
            "detach-interface",
            &name,
            "bridge",
            "--mac",
            &nic[4].to_uppercase(),
            "--live",
        ]),
        "Interface detached successfully\n\n"
    );
    assert!(t.elapsed() >= Duration::from_secs(4), "{:?}", t.elapsed());
    let ifaces = rows(&mesh.ok(&["domiflist", &name]));
    assert!(ifaces.iter().any(|r| r[4] == nic[4]), "{ifaces:?}");
    assert_eq!(mesh.bridge_ports(), vec![nic[0].clone()]);
    let t = Instant::now();
    assert_eq!(
        mesh.ok(&["detach-disk", &name, "vdb", "--live"]),
        "Disk detached successfully\n\n"
    );
    assert!(t.elapsed() >= Duration::from_secs(4), "{:?}", t.elapsed());
    let disks = rows(&mesh.ok(&["domblklist", &name]));
    assert!(disks.iter().any(|r| r[0] == "vdb"), "{disks:?}");

    // The definition: --config adds to and removes from the inactive XML
    // only, at once, whatever the guest does.
    assert_eq!(
        mesh.ok(&[
            "attach-disk",
            &name,
            &raw,
            "vdc",
            "--targetbus",
            "virtio",
            "--config"
        ]),
        "Disk attached successfully\n\n"
    );
    let inactive = rows(&mesh.ok(&["domblklist", &name, "--inactive"]));
    assert!(
        inactive.contains(&vec!["vdc".to_owned(), raw.clone()]),
        "{inactive:?}"
    );
    let live = rows(&mesh.ok(&["domblklist", &name]));
    assert!(live.iter().all(|r| r[0] != "vdc"), "{live:?}");
    // The inactive XML is where --config looks: vdb is not in it.
    mesh.fails(
        &["detach-disk", &name, "vdb", "--config"],
        "error: No disk found whose source path or target is vdb\n",
    );
    assert_eq!(
        mesh.ok(&["detach-disk", &name, "vdc", "--config"]),
        "Disk detached successfully\n\n"
    );
    let inactive = rows(&mesh.ok(&["domblklist", &name, "--inactive"]));
    assert!(inactive.iter().all(|r| r[0] != "vdc"), "{inactive:?}");
    mesh.ok(&["destroy", &name]);
    // The hot-plugged tap went with the guest.
    assert_eq!(mesh.bridge_ports(), Vec::<String>::new());
}
