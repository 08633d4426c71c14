//! A real KVM guest driven through the gateway by vsh (`qemu:///system`):
//! define, start, suspend, resume, shutdown request, destroy, undefine.

mod common;

use common::{Proc, Route, Vsh, guest_files, require, start_gateway, which};
use std::process::Output;

struct QemuMesh {
    _dir: tempfile::TempDir,
    _qemu: Proc,
    _gateway: Proc,
    vsh: Vsh,
}

impl QemuMesh {
    fn start() -> QemuMesh {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("qemu-state");
        let qemu = Proc::start(
            env!("CARGO_BIN_EXE_virtmesh-qemu"),
            &[
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                state.to_str().expect("utf-8"),
            ],
        );
        let gateway = start_gateway(
            dir.path(),
            "qemu:///system",
            &[Route {
                name: "qemu",
                addr: &qemu.addr,
                routing: "schemes = [\"qemu\"]",
            }],
        );
        let vsh = Vsh::new(&gateway.addr, "qemu:///system");
        QemuMesh {
            _dir: dir,
            _qemu: qemu,
            _gateway: gateway,
            vsh,
        }
    }

    fn vsh(&self, args: &[&str]) -> Output {
        self.vsh.run(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.vsh.ok(args)
    }
}

/// Destroys and undefines the guest even when an assertion fails.
struct Cleanup<'a>(&'a QemuMesh, &'a str);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.vsh(&["destroy", self.1]);
        let _ = self.0.vsh(&["undefine", self.1]);
    }
}

#[test]
fn kvm_guest_lifecycle_through_the_gateway() {
    let kvm = std::path::Path::new("/dev/kvm").exists();
    let qemu = which("qemu-system-x86_64").is_some();
    if !require(
        "/dev/kvm and qemu-system-x86_64 (scripts/install-host-deps.sh)",
        kvm && qemu,
    ) {
        return;
    }
    let mesh = QemuMesh::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("e2e-kvm-{}", std::process::id());
    let xml = dir.path().join("vm.xml");
    // A qcow2 disk to hold internal snapshots.
    let img = dir.path().join("disk.qcow2");
    let made = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&img)
        .arg("16M")
        .status()
        .expect("qemu-img");
    assert!(made.success());
    std::fs::write(
        &xml,
        format!(
            "<domain type='kvm'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>\
             <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
             <source file='{}'/><target dev='vda' bus='virtio'/></disk></devices></domain>",
            img.display()
        ),
    )
    .expect("xml");
    let _cleanup = Cleanup(&mesh, &name);

    assert!(
        mesh.ok(&["define", xml.to_str().expect("utf-8")])
            .contains(&format!("Domain '{name}' defined"))
    );
    let dumped = mesh.ok(&["dumpxml", &name]);
    assert!(dumped.contains("machine='pc-q35-10.0'"), "{dumped}");
    mesh.ok(&["start", &name]);
    assert_eq!(mesh.ok(&["domstate", &name]).trim(), "running");
    let again = mesh.vsh(&["start", &name]);
    assert_eq!(again.status.code(), Some(1));
    mesh.ok(&["suspend", &name]);
    assert_eq!(mesh.ok(&["domstate", &name]).trim(), "paused");
    mesh.ok(&["resume", &name]);
    assert_eq!(mesh.ok(&["domstate", &name]).trim(), "running");
    // An internal snapshot of the running guest, reverted after a stop.
    assert_eq!(
        mesh.ok(&[
            "snapshot-create-as",
            &name,
            "--name",
            "s1",
            "--description",
            "warm"
        ]),
        "Domain snapshot s1 created\n"
    );
    let listed = mesh.ok(&["snapshot-list", &name]);
    assert!(
        listed
            .lines()
            .any(|l| l.trim_start().starts_with("s1") && l.contains("running")),
        "{listed}"
    );
    assert_eq!(mesh.ok(&["snapshot-current", &name, "--name"]).trim(), "s1");
    assert!(
        mesh.ok(&["list", "--all", "--name", "--with-snapshot"])
            .lines()
            .any(|l| l == name),
        "listed with its snapshot"
    );
    mesh.ok(&["destroy", &name]);
    assert_eq!(
        mesh.ok(&["snapshot-revert", &name, "s1"]),
        "Domain snapshot s1 reverted\n\n"
    );
    assert_eq!(mesh.ok(&["domstate", &name]).trim(), "running");
    assert_eq!(
        mesh.ok(&["snapshot-delete", &name, "s1"]),
        "Domain snapshot s1 deleted\n\n"
    );
    // virsh save / restore through a file of our choosing.
    let saved = dir.path().join("vm.save");
    let saved = saved.to_str().expect("utf-8");
    assert_eq!(
        mesh.ok(&["save", &name, saved]),
        format!("\nDomain '{name}' saved to {saved}\n\n")
    );
    assert_eq!(mesh.ok(&["domstate", &name]).trim(), "shut off");
    let junk = dir.path().join("junk.save");
    std::fs::write(&junk, b"not a save file").expect("junk");
    let junk = junk.to_str().expect("utf-8");
    let refused = mesh.vsh(&["restore", junk]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("image magic is incorrect"),
        "{refused:?}"
    );
    assert_eq!(
        mesh.ok(&["restore", saved]),
        format!("Domain restored from {saved}\n\n")
    );
    assert_eq!(mesh.ok(&["domstate", &name]).trim(), "running");
    // A diskless guest has no OS to honour the power button; the request
    // itself must be accepted by QEMU.
    mesh.ok(&["shutdown", &name]);
    mesh.ok(&["destroy", &name]);
    assert_eq!(mesh.ok(&["domstate", &name]).trim(), "shut off");
    mesh.ok(&["undefine", &name]);
    let gone = mesh.vsh(&["domstate", &name]);
    assert_eq!(gone.status.code(), Some(1));
}

/// A TCG guest that really boots: its init's marker read back through
/// `vsh console` over the gateway, and `vsh shutdown` (the ACPI power
/// button, handled by busybox acpid in the guest) ends in shut off.
#[test]
fn tcg_guest_console_and_acpi_shutdown_through_the_gateway() {
    if !require(
        "qemu-system-x86_64 (scripts/install-host-deps.sh)",
        which("qemu-system-x86_64").is_some(),
    ) {
        return;
    }
    let Some(files) = guest_files() else {
        return;
    };
    let mesh = QemuMesh::start();
    let name = format!("e2e-tcg-{}", std::process::id());
    let dir = tempfile::tempdir().expect("tempdir");
    let xml = dir.path().join("vm.xml");
    std::fs::write(
        &xml,
        format!(
            "<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='q35'>hvm</type><kernel>{}</kernel><initrd>{}</initrd>\
             <cmdline>console=ttyS0 panic=-1</cmdline></os><features><acpi/></features>\
             <devices><serial type='pty'/></devices></domain>",
            files.join("vmlinuz").display(),
            files.join("initrd-net.cpio").display()
        ),
    )
    .expect("xml");
    let _cleanup = Cleanup(&mesh, &name);
    mesh.ok(&["define", xml.to_str().expect("utf-8")]);
    mesh.ok(&["start", &name]);
    // The guest has no NIC: its init says so every second once up.
    let seen = mesh
        .vsh
        .console_until(&name, std::time::Duration::from_secs(120), |s| {
            s.contains("VIRTMESH-NO-LEASE")
        });
    assert!(
        seen.contains("VIRTMESH-NO-LEASE"),
        "no marker on the console; it showed:\n{seen}"
    );
    mesh.ok(&["shutdown", &name]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let state = mesh.ok(&["domstate", &name]);
        if state.trim() == "shut off" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the guest did not power off on the ACPI button: {state}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        mesh.ok(&["domstate", &name, "--reason"]).trim(),
        "shut off (shutdown)"
    );
}

/// Hot-plug into a TCG guest that runs Linux, so the guest really takes
/// and ejects the devices: `vsh attach-disk`/`detach-disk`, and a
/// user-mode NIC (`attach-device`, since virsh 11.3's attach-interface
/// has no XML for `type='user'`) removed with `detach-interface --type
/// user`. The guest's kernel log (its serial console, written to a file)
/// shows it enumerating each hot-plugged virtio device; after each detach
/// the device leaves the lists once the guest has ejected it. Both plugs
/// use the same spare root port, one after the other.
#[test]
fn tcg_linux_guest_hotplug_and_unplug_through_the_gateway() {
    if !require(
        "qemu-system-x86_64 (scripts/install-host-deps.sh)",
        which("qemu-system-x86_64").is_some(),
    ) {
        return;
    }
    let Some(files) = guest_files() else {
        return;
    };
    let mesh = QemuMesh::start();
    let name = format!("e2e-tcg-hp-{}", std::process::id());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |p: &str| dir.path().join(p).to_str().expect("utf-8").to_owned();
    let log = path("console.log");
    let xml = path("vm.xml");
    std::fs::write(
        &xml,
        format!(
            "<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='q35'>hvm</type><kernel>{}</kernel><initrd>{}</initrd>\
             <cmdline>console=ttyS0 panic=-1</cmdline></os><features><acpi/></features>\
             <devices><serial type='file'><source path='{log}'/></serial></devices></domain>",
            files.join("vmlinuz").display(),
            files.join("initrd-net.cpio").display()
        ),
    )
    .expect("xml");
    let raw = path("x.raw");
    std::fs::File::create(&raw)
        .and_then(|f| f.set_len(16 << 20))
        .expect("raw image");
    let nic = path("nic.xml");
    let mac = "52:54:00:4e:77:21";
    std::fs::write(
        &nic,
        format!("<interface type='user'><mac address='{mac}'/><model type='virtio'/></interface>"),
    )
    .expect("nic xml");
    let _cleanup = Cleanup(&mesh, &name);
    mesh.ok(&["define", &xml]);
    mesh.ok(&["start", &name]);

    // Until `what` shows up in the guest's console log.
    let logged = |what: &str, secs: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(what) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {what:?} in the guest's console:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    };
    // Until the device is gone from a vsh table.
    let gone = |cmd: &str, what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let table = mesh.ok(&[cmd, &name]);
            if !table.contains(what) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what} still in {cmd} a minute after detach:\n{table}"
            );
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    };
    // The init's marker: Linux is up (and its hot-plug driver with it).
    logged("VIRTMESH-NO-LEASE", 120);

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
    // virtio-blk (1af4:1042, mass storage) on the spare root port's bus.
    logged("pci 0000:03:00.0: [1af4:1042] type 00 class 0x010000", 60);
    assert!(
        mesh.ok(&["domblklist", &name])
            .contains(&format!(" vdb      {raw}\n"))
    );
    assert!(
        mesh.ok(&["domblkstat", &name, "vdb"])
            .contains("vdb rd_req ")
    );
    assert_eq!(
        mesh.ok(&["detach-disk", &name, "vdb", "--live"]),
        "Disk detached successfully\n\n"
    );
    gone("domblklist", " vdb ");

    assert_eq!(
        mesh.ok(&["attach-device", &name, &nic, "--live"]),
        "Device attached successfully\n\n"
    );
    // virtio-net (1af4:1041, network controller) in the port the disk left.
    logged("pci 0000:03:00.0: [1af4:1041] type 00 class 0x020000", 60);
    assert!(
        mesh.ok(&["domiflist", &name])
            .contains(&format!(" user   -        virtio   {mac}\n")),
        "no user NIC listed"
    );
    assert_eq!(
        mesh.ok(&["detach-interface", &name, "--type", "user", "--live"]),
        "Interface detached successfully\n\n"
    );
    gone("domiflist", mac);
    // Nothing of either is left in the live XML.
    let live = mesh.ok(&["dumpxml", &name]);
    assert!(
        !live.contains("<interface") && !live.contains("vdb"),
        "{live}"
    );
}

#[test]
fn domcapabilities_and_capabilities_through_the_gateway() {
    let qemu = which("qemu-system-x86_64").is_some();
    if !require("qemu-system-x86_64 (scripts/install-host-deps.sh)", qemu) {
        return;
    }
    let kvm = std::path::Path::new("/dev/kvm").exists();
    let mesh = QemuMesh::start();
    let doc = mesh.ok(&["domcapabilities", "--machine", "q35"]);
    assert!(doc.contains("<machine>pc-q35-10.0</machine>"), "{doc}");
    let domain = if kvm { "kvm" } else { "qemu" };
    assert!(doc.contains(&format!("<domain>{domain}</domain>")), "{doc}");
    assert!(doc.contains("<path>/usr/bin/qemu-system-x86_64</path>"));
    // virsh's option name.
    let tcg = mesh.ok(&[
        "domcapabilities",
        "--virttype",
        "qemu",
        "--emulatorbin",
        "/usr/bin/qemu-system-x86_64",
    ]);
    assert!(tcg.contains("<domain>qemu</domain>"), "{tcg}");
    assert!(tcg.contains("<machine>pc-i440fx-10.0</machine>"), "{tcg}");
    let bad = mesh.vsh(&["domcapabilities", "--machine", "bogus"]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(
            "invalid argument: the machine 'bogus' is not supported by emulator '/usr/bin/qemu-system-x86_64'"
        ),
        "{err}"
    );
    let caps = mesh.ok(&["capabilities"]);
    assert!(
        caps.contains("<machine canonical='pc-q35-10.0' maxCpus='4096'>q35</machine>"),
        "{caps}"
    );
}
