//! Internal snapshots on a real KVM guest with a qcow2 disk: taken shut
//! off (qemu-img) and running (QMP snapshot-save, memory included),
//! listed with libvirt's metadata, reverted both ways (a running snapshot
//! starts the stopped guest; a shut-off one stops the running guest),
//! deleted from the images; undefine keeps its word about them.
//!
//! Needs /dev/kvm, QEMU and qemu-img; skips with the reason otherwise,
//! fails under VIRTMESH_REQUIRE_HOST=1.

mod common;

use common::{EMULATOR, by_name, driver_in, skip};
use std::path::Path;
use std::process::Command;
use virtmesh_proto::v1::{self as pb, DomainState};

/// `qemu-img snapshot -l`: (tag, VM size number) per snapshot.
fn image_snapshots(img: &Path) -> Vec<(String, String)> {
    let out = Command::new("qemu-img")
        .args(["snapshot", "-l", "-U"])
        .arg(img)
        .output()
        .expect("qemu-img snapshot -l");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(2)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Some((cols.get(1)?.to_string(), cols.get(2)?.to_string()))
        })
        .collect()
}

fn snap(domain: &str, name: &str) -> pb::SnapshotRef {
    pb::SnapshotRef {
        domain: Some(by_name(domain)),
        name: name.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_snapshots_taken_reverted_and_deleted() {
    let ready = Path::new("/dev/kvm").exists()
        && Path::new(EMULATOR).exists()
        && Command::new("qemu-img").arg("--version").output().is_ok();
    if !ready {
        skip("needs /dev/kvm, qemu-system-x86_64 and qemu-img (scripts/install-host-deps.sh)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("disk.qcow2");
    let ok = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&img)
        .arg("16M")
        .status()
        .expect("qemu-img create");
    assert!(ok.success());
    let d = driver_in(dir.path()).await;
    let xml = format!(
        "<domain type='kvm'><name>s</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>\
         <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{}'/>\
         <target dev='vda' bus='virtio'/></disk>\
         <disk type='file' device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk>\
         </devices></domain>",
        img.display()
    );
    d.define(&xml).await.expect("define");
    let r = Some(by_name("s"));
    let create = |name: &str, desc: &str| pb::SnapshotCreateRequest {
        domain: Some(by_name("s")),
        xml: format!(
            "<domainsnapshot><name>{name}</name><description>{desc}</description></domainsnapshot>"
        ),
        ..Default::default()
    };

    let off = d
        .snapshot_create(&create("off1", "cold"))
        .await
        .expect("shut-off snapshot");
    assert_eq!((off.state.as_str(), off.current), ("shutoff", true));
    d.start(r.as_ref(), false).await.expect("start");
    let run = d
        .snapshot_create(&create("run1", "warm"))
        .await
        .expect("running snapshot");
    assert_eq!(
        (run.state.as_str(), run.parent.as_str(), run.current),
        ("running", "off1", true)
    );
    assert_eq!(
        d.lookup(r.as_ref()).expect("lookup").state,
        DomainState::Running,
        "QEMU resumes the guest after saving"
    );
    let dup = d
        .snapshot_create(&create("run1", "again"))
        .await
        .expect_err("duplicate");
    assert_eq!(
        dup.message,
        "operation failed: domain moment run1 already exists"
    );
    let doc = d.snapshot_xml(&snap("s", "run1")).expect("xml");
    for want in [
        "<state>running</state>",
        "<parent>\n    <name>off1</name>\n  </parent>",
        "<memory snapshot='internal'/>",
        "<disk name='vda' snapshot='internal'/>",
        "<disk name='sda' snapshot='no'/>",
        "<description>warm</description>",
    ] {
        assert!(doc.contains(want), "{want} in {doc}");
    }
    // libvirt's own schema accepts the document (jing, as the
    // conformance tests use it).
    let doc_file = dir.path().join("snap.xml");
    std::fs::write(&doc_file, &doc).expect("write");
    match Command::new("jing")
        .arg("/usr/share/libvirt/schemas/domainsnapshot.rng")
        .arg(&doc_file)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "domainsnapshot.rng rejects {doc}: {}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(_) => {
            skip("jing is not installed (scripts/install-host-deps.sh)");
        }
    }
    let names: Vec<String> = d
        .snapshot_list(&pb::SnapshotListRequest {
            domain: Some(by_name("s")),
            ..Default::default()
        })
        .expect("list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["off1", "run1"]);

    // Back to the cold snapshot: the running guest stops.
    d.snapshot_revert(&snap("s", "off1"))
        .await
        .expect("revert off1");
    assert_eq!(
        d.lookup(r.as_ref()).expect("lookup").state,
        DomainState::Shutoff
    );
    assert_eq!(
        d.snapshot_current(r.as_ref()).expect("current").name,
        "off1"
    );
    let on_disk = image_snapshots(&img);
    let vm_size = |tag: &str| {
        on_disk
            .iter()
            .find(|(t, _)| t == tag)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("{tag} not in the image: {on_disk:?}"))
    };
    assert_eq!(vm_size("off1"), "0", "no memory in a shut-off snapshot");
    assert_ne!(vm_size("run1"), "0", "the running snapshot holds memory");

    // Back to the warm one: the stopped guest runs again from it.
    d.snapshot_revert(&snap("s", "run1"))
        .await
        .expect("revert run1");
    let v = d.lookup(r.as_ref()).expect("lookup");
    assert_eq!((v.state, v.reason), (DomainState::Running, 4));

    // Deleted from the image while the guest runs (QMP).
    d.snapshot_delete(&pb::SnapshotDeleteRequest {
        snapshot: Some(snap("s", "run1")),
        ..Default::default()
    })
    .await
    .expect("delete run1");
    assert_eq!(
        d.snapshot_current(r.as_ref()).expect("current").name,
        "off1"
    );
    d.destroy(r.as_ref(), false).await.expect("destroy");
    let tags: Vec<String> = image_snapshots(&img).into_iter().map(|(t, _)| t).collect();
    assert_eq!(tags, ["off1"]);

    let refused = d
        .undefine_with_save(
            r.as_ref(),
            false,
            virtmesh_qemu::driver::NvramOnUndefine::Refuse,
            false,
        )
        .await
        .expect_err("a snapshot is left");
    assert_eq!(
        refused.message,
        "Requested operation is not valid: cannot delete inactive domain with 1 snapshots"
    );
    d.undefine_with_save(
        r.as_ref(),
        false,
        virtmesh_qemu::driver::NvramOnUndefine::Refuse,
        true,
    )
    .await
    .expect("undefine --snapshots-metadata");
}
