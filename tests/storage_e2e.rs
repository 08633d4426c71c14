//! The storage service through the gateway: vsh on `qemu:///system` walks
//! a directory pool in a temporary directory through its whole life
//! (define, build, start, info, refresh, volumes raw and qcow2, upload
//! and download, delete, destroy, undefine) and the files on disk follow:
//! the pool directory is made with the pool's mode, volumes appear with the
//! sizes and formats asked for and disappear when deleted.  Needs qemu-img
//! (qcow2 volumes).

mod common;

use common::{Proc, require, which};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Output};

#[test]
fn dir_pool_and_volumes_through_the_gateway() {
    if !require(
        "qemu-img (scripts/install-host-deps.sh)",
        which("qemu-img").is_some(),
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let storage_state = dir.path().join("storage-state");
    let storage = Proc::start(
        env!("CARGO_BIN_EXE_virtmesh-storage"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            storage_state.to_str().expect("utf-8"),
        ],
    );
    // vsh opens the connection through the hypervisor service first, as
    // virsh does, so the mesh needs a qemu service too.
    let qemu_state = dir.path().join("qemu-state");
    let qemu = Proc::start(
        env!("CARGO_BIN_EXE_virtmesh-qemu"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            qemu_state.to_str().expect("utf-8"),
        ],
    );
    let config = dir.path().join("virtmesh.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\ndefault_uri = \"qemu:///system\"\n\n\
             [[service]]\nname = \"qemu\"\nlisten = \"{}\"\nschemes = [\"qemu\"]\n\n\
             [[service]]\nname = \"storage\"\nlisten = \"{}\"\nfamilies = [\"StoragePool\", \"StorageVol\"]\n",
            qemu.addr, storage.addr
        ),
    )
    .expect("config");
    let gateway = Proc::start(
        env!("CARGO_BIN_EXE_virtmesh-gateway"),
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let run = |args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_vsh"))
            .args(["--gateway", &gateway.addr, "-c", "qemu:///system"])
            .args(args)
            .output()
            .expect("vsh")
    };
    let vsh = |args: &[&str]| -> String {
        let out = run(args);
        assert!(
            out.status.success(),
            "vsh {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let pool_dir = dir.path().join("pools/e2epool");
    let pool_path = pool_dir.to_str().expect("utf-8");
    let pool_xml = dir.path().join("pool.xml");
    std::fs::write(
        &pool_xml,
        format!(
            "<pool type='dir'><name>e2epool</name><target><path>{pool_path}</path>\
             <permissions><mode>0750</mode></permissions></target></pool>"
        ),
    )
    .expect("pool xml");
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
    drop(gateway);
    drop(storage);
    drop(qemu);
}
