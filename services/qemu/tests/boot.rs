//! A TCG guest that really boots Debian's kernel (HOST.md "A tiny guest
//! that really boots"): tests/fixtures/build-guest.sh fetches the kernel
//! and a static busybox into target/guest-kernel; this test packs an
//! initramfs whose init prints a marker on the serial console and runs
//! busybox acpid, so the ACPI power button powers it off. The marker is
//! read through the service's OpenConsole; Shutdown must end in shut off.
//!
//! Needs QEMU and the guest files (apt-get download works on CI); skips
//! with the reason otherwise, fails under VIRTMESH_REQUIRE_HOST=1.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use virtmesh_proto::v1::{self as pb, DomainState};
use virtmesh_qemu::{QemuConfig, QemuDriver};

const MARKER: &str = "VIRTMESH-KERNEL-UP";

use common::{EMULATOR, KillQemus, Served, by_name, guest_files, open_console, read_until, skip};

/// A `newc` cpio archive (what the kernel unpacks as initramfs), written
/// here so the test needs no cpio tool: directories, files and the
/// /dev/console node the kernel opens for init's stdio.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let len = u32::try_from(data.len()).expect("small file");
        let namesize = u32::try_from(name.len() + 1).expect("short name");
        let fields = [
            self.ino, mode, 0, 0, 1, 0, len, 0, 0, rdev.0, rdev.1, namesize, 0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, &[], (0, 0));
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | mode, data, (0, 0));
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.out
    }
}

const INIT: &str = "#!/bin/busybox sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
insmod /lib/button.ko 2>/dev/null
insmod /lib/evdev.ko 2>/dev/null
# The power button: busybox acpid runs /etc/acpi/PWRF/00000080.
# (in the foreground of a background job: there is no /var/log to log to.)
acpid -f -c /etc/acpi -l /dev/null &
# Repeated: QEMU drops what is written before a console client opened the pty.
while true; do echo VIRTMESH-KERNEL-UP; sleep 1; done
";

const POWEROFF: &str = "#!/bin/busybox sh\n/bin/busybox poweroff -f\n";

fn initramfs(files: &Path) -> Vec<u8> {
    let mut c = Cpio::default();
    for d in [
        "bin",
        "dev",
        "proc",
        "sys",
        "lib",
        "etc",
        "etc/acpi",
        "etc/acpi/PWRF",
    ] {
        c.dir(d);
    }
    c.entry("dev/console", 0o020_600, &[], (5, 1));
    c.file("init", 0o755, INIT.as_bytes());
    c.file("etc/acpi/PWRF/00000080", 0o755, POWEROFF.as_bytes());
    let busybox = std::fs::read(files.join("busybox")).expect("busybox");
    c.file("bin/busybox", 0o755, &busybox);
    for m in ["button.ko", "evdev.ko"] {
        if let Ok(data) = std::fs::read(files.join("modules").join(m)) {
            c.file(&format!("lib/{m}"), 0o644, &data);
        }
    }
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_kernel_boots_prints_its_marker_and_powers_off() {
    let Some(files) = guest_files() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let _cleanup = KillQemus(dir.path().to_path_buf());
    let initrd = dir.path().join("initrd.cpio");
    std::fs::write(&initrd, initramfs(&files)).expect("initramfs");
    let mut served = Served::start(dir.path()).await;
    let c = &mut served.client;
    let xml = format!(
        "<domain type='qemu'><name>deb</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='q35'>hvm</type><kernel>{}</kernel><initrd>{}</initrd>\
         <cmdline>console=ttyS0 panic=-1</cmdline></os><features><acpi/></features>\
         <devices><serial type='pty'/></devices></domain>",
        files.join("vmlinuz").display(),
        initrd.display()
    );
    c.define_xml(pb::DefineXmlRequest {
        xml,
        validate: false,
    })
    .await
    .expect("define");
    // Paused until the console is open.
    c.create(pb::CreateRequest {
        domain: Some(by_name("deb")),
        start_paused: true,
        ..Default::default()
    })
    .await
    .expect("start");
    let (keys, mut output) = open_console(c, "deb").await;
    c.resume(by_name("deb")).await.expect("resume");
    let started = Instant::now();
    let mut seen = read_until(&mut output, MARKER, Duration::from_secs(90)).await;
    assert!(
        seen.contains(MARKER),
        "no marker within 90 s; the console said: {}",
        &seen[seen.len().saturating_sub(3000)..]
    );
    eprintln!("marker after {:?}", started.elapsed());
    // Let acpid come up (it starts before the first marker, but give
    // the input device a moment), then press the power button.
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.shutdown(pb::ShutdownRequest {
        domain: Some(by_name("deb")),
        ..Default::default()
    })
    .await
    .expect("shutdown");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut state = DomainState::Running;
    while Instant::now() < deadline {
        state = c
            .get_state(by_name("deb"))
            .await
            .expect("state")
            .into_inner()
            .state();
        if state == DomainState::Shutoff {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if state != DomainState::Shutoff {
        let until = Instant::now() + Duration::from_secs(3);
        while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(until.into(), output.next()).await {
            seen.push_str(&String::from_utf8_lossy(&chunk.data));
        }
    }
    assert_eq!(
        state,
        DomainState::Shutoff,
        "the guest powered off on ACPI; console: {}",
        &seen[seen.len().saturating_sub(3000)..]
    );
    drop((keys, output));
    served.stop().await;
}

/// Live unplug needs a guest that ejects: the booted kernel's ACPI PCI
/// hot-plug (acpiphp, built into Debian's kernel) on a pc machine. A disk
/// and a NIC are plugged, seen by QEMU, unplugged (DEVICE_DELETED) and
/// gone from QEMU, block nodes included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booted_guest_releases_hot_unplugged_devices() {
    booted_unplug("pc").await;
}

/// q35: PCIe native hot-plug, where the kernel waits about 5 s after the
/// attention button before it ejects, so the unplug is finished by a
/// late DEVICE_DELETED after DetachDevice returned (libvirt's semantics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booted_q35_guest_finishes_a_late_unplug() {
    booted_unplug("q35").await;
}

async fn booted_unplug(machine: &str) {
    let Some(files) = guest_files() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let _cleanup = KillQemus(dir.path().to_path_buf());
    let initrd = dir.path().join("initrd.cpio");
    std::fs::write(&initrd, initramfs(&files)).expect("initramfs");
    let serial = dir.path().join("serial.log");
    let img = dir.path().join("hot.qcow2");
    let made = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&img)
        .arg("16M")
        .status();
    if !made.is_ok_and(|s| s.success()) {
        skip("qemu-img cannot create an image");
        return;
    }
    let d = QemuDriver::new(QemuConfig {
        state_dir: dir.path().join("state"),
        run_dir: dir.path().join("run"),
        emulator: PathBuf::from(EMULATOR),
        network: None,
    })
    .await
    .expect("driver");
    let xml = format!(
        "<domain type='qemu'><name>hp</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='{machine}'>hvm</type><kernel>{}</kernel><initrd>{}</initrd>\
         <cmdline>console=ttyS0 panic=-1</cmdline></os><features><acpi/></features>\
         <devices><serial type='file'><source path='{}'/></serial></devices></domain>",
        files.join("vmlinuz").display(),
        initrd.display(),
        serial.display()
    );
    d.define(&xml).await.expect("define");
    let r = Some(by_name("hp"));
    d.start(r.as_ref(), false).await.expect("start");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !std::fs::read_to_string(&serial).is_ok_and(|s| s.contains(MARKER)) {
        assert!(Instant::now() < deadline, "the guest did not boot");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let live = Some(pb::Impact {
        live: true,
        config: false,
        current: false,
    });
    let disk = format!(
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
         <source file='{}'/><target dev='vdb' bus='virtio'/></disk>",
        img.display()
    );
    let nic = "<interface type='user'><mac address='52:54:00:aa:dd:01'/><model type='virtio'/></interface>";
    let q = |c: &'static str| {
        let d = d.clone();
        let r = r.clone();
        async move {
            d.monitor_command(r.as_ref(), &format!("{{\"execute\":\"{c}\"}}"))
                .await
                .expect("qmp")
                .to_string()
        }
    };
    // q35 has one spare root port (libvirt's): the disk only.
    let devs: Vec<&str> = if machine == "pc" {
        vec![disk.as_str(), nic]
    } else {
        vec![disk.as_str()]
    };
    for x in &devs {
        d.attach_device(r.as_ref(), x, live.as_ref())
            .await
            .unwrap_or_else(|e| panic!("attach {x}: {e}"));
    }
    let pci = q("query-pci").await;
    assert!(pci.contains("\"virtio-disk1\""), "{pci}");
    assert_eq!(pci.contains("\"net0\""), machine == "pc", "{pci}");
    assert!(q("query-block").await.contains("hot.qcow2"));
    for x in &devs {
        d.detach_device(r.as_ref(), x, live.as_ref())
            .await
            .unwrap_or_else(|e| panic!("detach {x}: {e}"));
    }
    // Done at once (pc) or by the late DEVICE_DELETED (q35).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pci = q("query-pci").await;
        let nodes = q("query-named-block-nodes").await;
        let xml = d
            .lookup(r.as_ref())
            .map(|v| v.def.to_xml(Some(v.id)))
            .unwrap_or_default();
        let gone = !pci.contains("\"virtio-disk1\"")
            && !pci.contains("\"net0\"")
            && !nodes.contains("hot.qcow2")
            && !xml.contains("vdb")
            && !xml.contains("<interface");
        if gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not released: {pci}\n{nodes}\n{xml}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.destroy(r.as_ref(), false).await.expect("destroy");
}
