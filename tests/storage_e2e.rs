//! The storage service through the gateway: vsh on `qemu:///system` walks
//! a directory pool in a temporary directory through its whole life
//! (define, build, start, info, refresh, volumes raw and qcow2, upload
//! and download, delete, destroy, undefine) and the files on disk follow:
//! the pool directory is made with the pool's mode, volumes appear with the
//! sizes and formats asked for and disappear when deleted.  Needs qemu-img
//! (qcow2 volumes).

mod common;

use common::{EventWatcher, Proc, Route, Vsh, require, start_gateway, which};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Output};

/// The storage service, a qemu service (vsh opens the connection through
/// the hypervisor service first, as virsh does) and a gateway in front.
struct StorageMesh {
    // Dropped in declaration order: the processes (gateway first), then
    // their directory.
    gateway: Proc,
    vsh: Vsh,
    _storage: Proc,
    _qemu: Proc,
    dir: tempfile::TempDir,
}

impl StorageMesh {
    fn start() -> StorageMesh {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_owned();
        let storage = Proc::start(
            env!("CARGO_BIN_EXE_virtmesh-storage"),
            &[
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                &state("storage-state"),
            ],
        );
        let qemu = Proc::start(
            env!("CARGO_BIN_EXE_virtmesh-qemu"),
            &[
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                &state("qemu-state"),
            ],
        );
        let gateway = start_gateway(
            dir.path(),
            "qemu:///system",
            &[
                Route {
                    name: "qemu",
                    addr: &qemu.addr,
                    routing: "schemes = [\"qemu\"]",
                },
                Route {
                    name: "storage",
                    addr: &storage.addr,
                    routing: "families = [\"StoragePool\", \"StorageVol\"]",
                },
            ],
        );
        let vsh = Vsh::new(&gateway.addr, "qemu:///system");
        StorageMesh {
            dir,
            vsh,
            gateway,
            _storage: storage,
            _qemu: qemu,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.vsh.run(args)
    }

    fn vsh(&self, args: &[&str]) -> String {
        self.vsh.ok(args)
    }

    /// A dir pool definition in this mesh's temporary directory.
    fn pool_xml(&self, name: &str, uuid: &str, extra_target: &str) -> (PathBuf, PathBuf) {
        let pool_dir = self.dir.path().join("pools").join(name);
        let xml = self.dir.path().join(format!("{name}.xml"));
        std::fs::write(
            &xml,
            format!(
                "<pool type='dir'><name>{name}</name>{uuid}<target><path>{}</path>{extra_target}</target></pool>",
                pool_dir.display()
            ),
        )
        .expect("pool xml");
        (xml, pool_dir)
    }
}

#[test]
fn dir_pool_and_volumes_through_the_gateway() {
    if !require(
        "qemu-img (scripts/install-host-deps.sh)",
        which("qemu-img").is_some(),
    ) {
        return;
    }
    let mesh = StorageMesh::start();
    let dir = &mesh.dir;
    let run = |args: &[&str]| mesh.run(args);
    let vsh = |args: &[&str]| mesh.vsh(args);

    let (pool_xml, pool_dir) = mesh.pool_xml(
        "e2epool",
        "",
        "<permissions><mode>0750</mode></permissions>",
    );
    vsh(&["pool-define", pool_xml.to_str().expect("utf-8")]);
    assert!(!pool_dir.exists(), "define must not create the directory");
    // Starting before building fails with libvirt's error.
    let early = run(&["pool-start", "e2epool"]);
    assert!(!early.status.success());
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("cannot open directory"),
        "{early:?}"
    );
    vsh(&["pool-build", "e2epool"]);
    let meta = std::fs::metadata(&pool_dir).expect("pool-build made the directory");
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o777, 0o750);
    vsh(&["pool-start", "e2epool"]);
    let list = vsh(&["pool-list"]);
    assert!(
        list.lines()
            .any(|l| l.contains("e2epool") && l.contains("active")),
        "{list}"
    );
    // A running pool reports its filesystem's sizes and its directory.
    let info = vsh(&["pool-info", "e2epool"]);
    assert!(info.contains("State:          running"), "{info}");
    assert!(
        info.lines()
            .any(|l| l.starts_with("Capacity:") && !l.contains(" 0.00 B")),
        "{info}"
    );
    let live = vsh(&["pool-dumpxml", "e2epool"]);
    assert!(live.contains("<mode>0750</mode>"), "{live}");
    // A file put there behind the service's back shows up on refresh.
    std::fs::write(pool_dir.join("outside.img"), vec![0u8; 65536]).expect("outside file");
    assert!(!vsh(&["vol-list", "e2epool"]).contains("outside.img"));
    vsh(&["pool-refresh", "e2epool"]);
    assert!(vsh(&["vol-list", "e2epool"]).contains("outside.img"));
    vsh(&["vol-delete", "--pool", "e2epool", "outside.img"]);
    assert!(!pool_dir.join("outside.img").exists());

    let raw_xml = dir.path().join("raw.xml");
    std::fs::write(
        &raw_xml,
        "<volume><name>disk.raw</name><capacity unit='MiB'>8</capacity>\
         <allocation unit='MiB'>1</allocation><target><format type='raw'/></target></volume>",
    )
    .expect("raw xml");
    let qcow_xml = dir.path().join("qcow.xml");
    std::fs::write(
        &qcow_xml,
        "<volume><name>disk.qcow2</name><capacity unit='GiB'>2</capacity>\
         <target><format type='qcow2'/><permissions><mode>0640</mode></permissions></target></volume>",
    )
    .expect("qcow xml");
    vsh(&["vol-create", "e2epool", raw_xml.to_str().expect("utf-8")]);
    vsh(&["vol-create", "e2epool", qcow_xml.to_str().expect("utf-8")]);

    // The files are real: the raw one has its size and its allocation,
    // the qcow2 one is an image qemu-img reads as 2 GiB.
    let raw = pool_dir.join("disk.raw");
    let m = std::fs::metadata(&raw).expect("raw volume file");
    assert_eq!(m.len(), 8 << 20);
    assert!(
        m.blocks() * 512 >= 1 << 20,
        "1 MiB allocated: {}",
        m.blocks()
    );
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    let qcow = pool_dir.join("disk.qcow2");
    let info = Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(&qcow)
        .output()
        .expect("qemu-img info");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("\"format\": \"qcow2\""), "{info}");
    assert!(info.contains("\"virtual-size\": 2147483648,"), "{info}");
    assert_eq!(
        std::fs::metadata(&qcow)
            .expect("qcow2")
            .permissions()
            .mode()
            & 0o777,
        0o640
    );

    // Contents go in and out through the gateway's streams.
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let upload = dir.path().join("upload.bin");
    std::fs::write(&upload, &data).expect("upload file");
    vsh(&[
        "vol-upload",
        "--pool",
        "e2epool",
        "disk.raw",
        upload.to_str().expect("utf-8"),
        "--offset",
        "4096",
    ]);
    let on_disk = std::fs::read(&raw).expect("raw");
    assert_eq!(on_disk.len(), 8 << 20, "upload keeps the size");
    assert_eq!(&on_disk[4096..4096 + data.len()], &data[..]);
    let download = dir.path().join("download.bin");
    vsh(&[
        "vol-download",
        "--pool",
        "e2epool",
        "disk.raw",
        download.to_str().expect("utf-8"),
        "--offset",
        "4096",
        "--length",
        &data.len().to_string(),
    ]);
    assert_eq!(std::fs::read(&download).expect("download"), data);

    let vols = vsh(&["vol-list", "e2epool", "--details"]);
    let row = |name: &str| {
        vols.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name} not in vol-list:\n{vols}"))
            .to_owned()
    };
    let raw_row = row("disk.raw");
    assert!(raw_row.contains(raw.to_str().expect("utf-8")), "{raw_row}");
    assert!(raw_row.contains("8.00 MiB"), "{raw_row}");
    assert!(row("disk.qcow2").contains("2.00 GiB"), "{vols}");

    let xml = vsh(&["vol-dumpxml", "--pool", "e2epool", "disk.qcow2"]);
    assert!(
        xml.contains(&format!("<key>{}</key>", qcow.display())),
        "{xml}"
    );
    assert!(
        xml.contains("<capacity unit='bytes'>2147483648</capacity>"),
        "{xml}"
    );
    assert!(xml.contains("<format type='qcow2'/>"), "{xml}");
    assert!(xml.contains("<mode>0640</mode>"), "{xml}");

    vsh(&["vol-delete", "--pool", "e2epool", "disk.raw"]);
    assert!(!raw.exists(), "vol-delete left {}", raw.display());
    let after = vsh(&["vol-list", "e2epool"]);
    assert!(
        !after.contains("disk.raw") && after.contains("disk.qcow2"),
        "{after}"
    );
    vsh(&["vol-delete", "--pool", "e2epool", "disk.qcow2"]);
    assert!(!qcow.exists());

    vsh(&["pool-destroy", "e2epool"]);
    assert!(pool_dir.is_dir(), "destroy keeps the directory");
    vsh(&["pool-undefine", "e2epool"]);
    let all = vsh(&["pool-list", "--all"]);
    assert!(!all.contains("e2epool"), "{all}");
}

#[test]
fn pool_events_reach_a_watcher_through_the_gateway() {
    let mesh = StorageMesh::start();
    let watcher = EventWatcher::start(
        &mesh.gateway.addr,
        &[
            "-c",
            "qemu:///system",
            "pool-event",
            "--event",
            "lifecycle",
            "--loop",
            "--timeout",
            "20",
        ],
    );
    // The watch is registered asynchronously: redefine a probe pool (its
    // fixed UUID makes each define an update) until its event arrives.
    let (probe, _) = mesh.pool_xml(
        "probe",
        "<uuid>5b0c7e1a-2f4d-4c61-9a3e-6d2f1b7c8e01</uuid>",
        "",
    );
    let live = watcher.wait_live(
        || {
            mesh.vsh(&["pool-define", probe.to_str().expect("utf-8")]);
        },
        |l| l.contains("storage pool probe"),
    );
    assert!(live, "no pool event reached the watcher");
    let (xml, _) = mesh.pool_xml("evpool", "", "");
    mesh.vsh(&["pool-define", xml.to_str().expect("utf-8")]);
    for step in [
        "pool-build",
        "pool-start",
        "pool-refresh",
        "pool-destroy",
        "pool-delete",
        "pool-undefine",
    ] {
        mesh.vsh(&[step, "evpool"]);
    }
    let seen = watcher.collect(6, |l| l.contains(" probe"));
    assert_eq!(
        seen,
        [
            "event 'lifecycle' for storage pool evpool: Defined",
            "event 'lifecycle' for storage pool evpool: Created",
            "event 'lifecycle' for storage pool evpool: Started",
            "event 'lifecycle' for storage pool evpool: Stopped",
            "event 'lifecycle' for storage pool evpool: Deleted",
            "event 'lifecycle' for storage pool evpool: Undefined",
        ]
    );
}
