//! The driver core on real directories: lifecycle rules and libvirt's
//! errors, what survives a restart, refresh, transient pools and events.
//! qcow2 volumes need qemu-img; without it those tests say why and skip
//! (a failure under VIRTMESH_REQUIRE_HOST=1).

use std::path::Path;
use tokio_stream::StreamExt;
use virtmesh_proto::v1::{self as pb, StoragePoolEventType as Ev, event::Kind};
use virtmesh_rpc::ErrorCode;
use virtmesh_storage::{StorageConfig, StorageDriver};

fn have_qemu_img() -> bool {
    if virtmesh_storage::qemu_img::find().is_some() {
        return true;
    }
    if std::env::var("VIRTMESH_REQUIRE_HOST").as_deref() == Ok("1") {
        panic!("qemu-img is missing (VIRTMESH_REQUIRE_HOST=1)");
    }
    eprintln!("SKIP: qemu-img is not installed (scripts/install-host-deps.sh)");
    false
}

fn name(n: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        key: Some(pb::object_ref::Key::Name(n.to_owned())),
    }
}

fn vol(pool: &str, n: &str) -> pb::VolRef {
    pb::VolRef {
        by: Some(pb::vol_ref::By::PoolAndName(pb::PoolVolName {
            pool: Some(name(pool)),
            name: n.to_owned(),
        })),
    }
}

fn pool_xml(n: &str, dir: &Path) -> String {
    format!(
        "<pool type='dir'><name>{n}</name><target><path>{}</path></target></pool>",
        dir.display()
    )
}

async fn driver(state: &Path) -> StorageDriver {
    StorageDriver::new(StorageConfig::system(Some(state.to_owned())))
        .await
        .expect("driver")
}

#[tokio::test]
async fn lifecycle_rules_and_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = driver(&tmp.path().join("state")).await;
    let dir = tmp.path().join("p1");
    d.define_xml(&pool_xml("p1", &dir)).await.expect("define");

    // Not built yet: start fails with the errno text and stays inactive.
    let e = d.start(Some(&name("p1"))).await.expect_err("no directory");
    assert_eq!(e.code, ErrorCode::SystemError);
    assert_eq!(
        e.message,
        format!(
            "cannot open directory '{}': No such file or directory",
            dir.display()
        )
    );
    assert!(!d.lookup(Some(&name("p1"))).expect("lookup").active);

    d.build(Some(&name("p1"))).await.expect("build");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).expect("dir").permissions().mode();
        assert_eq!(mode & 0o777, 0o711, "libvirt's default pool mode");
    }
    d.start(Some(&name("p1"))).await.expect("start");
    let e = d.start(Some(&name("p1"))).await.expect_err("twice");
    assert_eq!(e.code, ErrorCode::OperationInvalid);
    assert_eq!(
        e.message,
        "Requested operation is not valid: storage pool 'p1' is already active"
    );
    let e = d.undefine(Some(&name("p1"))).await.expect_err("active");
    assert_eq!(
        e.message,
        "Requested operation is not valid: storage pool 'p1' is still active"
    );

    // Live XML: the filesystem's sizes and the directory's permissions.
    // Unchanged since the start, the inactive XML is the same document
    // (libvirt has no separate new definition then).
    let live = d.xml_desc(Some(&name("p1")), false).expect("xml");
    assert!(
        !live.contains("<capacity unit='bytes'>0</capacity>"),
        "{live}"
    );
    assert!(live.contains("<mode>0711</mode>"), "{live}");
    assert_eq!(d.xml_desc(Some(&name("p1")), true).expect("xml"), live);
    let info = d.info(Some(&name("p1"))).expect("info");
    assert!(info.capacity > 0 && info.capacity >= info.available);
    // Redefined while running: the inactive XML is the new definition,
    // the live one stays.
    let uuid = d.lookup(Some(&name("p1"))).expect("p1").uuid;
    let changed = pool_xml("p1", &dir).replace(
        "</path>",
        "</path><permissions><mode>0700</mode></permissions>",
    );
    let changed = changed.replace(
        "<name>p1</name>",
        &format!("<name>p1</name><uuid>{uuid}</uuid>"),
    );
    d.define_xml(&changed).await.expect("redefine");
    let inactive = d.xml_desc(Some(&name("p1")), true).expect("xml");
    assert!(inactive.contains("<capacity unit='bytes'>0</capacity>"));
    assert!(inactive.contains("<mode>0700</mode>"), "{inactive}");
    assert_eq!(d.xml_desc(Some(&name("p1")), false).expect("xml"), live);

    // A second pool on the same directory is refused.
    let e = d
        .define_xml(&pool_xml("p2", &dir))
        .await
        .expect_err("same directory");
    assert_eq!(e.code, ErrorCode::OperationFailed);
    assert_eq!(
        e.message,
        "operation failed: Storage source conflict with pool: 'p1'"
    );

    // Pool types without a backend cannot be defined; ones with a
    // definition-only backend define but do not start.
    let e = d
        .define_xml(
            "<pool type='zfs'><name>z</name><source><device path='/dev/x'/></source></pool>",
        )
        .await
        .expect_err("zfs");
    assert_eq!(e.code, ErrorCode::InternalError);
    assert_eq!(
        e.message,
        "internal error: missing backend for pool type 12 (zfs)"
    );
    d.define_xml(
        "<pool type='fs'><name>f</name><source><device path='/dev/nope'/></source><target><path>/mnt/nope</path></target></pool>",
    )
    .await
    .expect("define fs");
    let e = d.start(Some(&name("f"))).await.expect_err("fs");
    assert_eq!(e.code, ErrorCode::NoSupport);
    // Building a netfs pool only makes its mount point (as libvirt without
    // build flags); deleting removes it.
    let mnt = tmp.path().join("mnt/share");
    d.define_xml(&format!(
        "<pool type='netfs'><name>n</name><source><host name='nfs.example.org'/><dir path='/export'/></source><target><path>{}</path></target></pool>",
        mnt.display()
    ))
    .await
    .expect("define netfs");
    d.build(Some(&name("n"))).await.expect("build netfs");
    assert!(mnt.is_dir());
    assert_eq!(
        d.start(Some(&name("n"))).await.expect_err("netfs").code,
        ErrorCode::NoSupport
    );
    d.delete(Some(&name("n"))).await.expect("delete netfs");
    assert!(!mnt.exists());

    // Refresh sees files that appeared behind the driver's back.
    std::fs::write(dir.join("outside.img"), vec![0u8; 4096]).expect("file");
    d.refresh(Some(&name("p1"))).await.expect("refresh");
    let vols = d.list_vols(Some(&name("p1"))).expect("vols");
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0].name, "outside.img");
    assert_eq!(vols[0].key, dir.join("outside.img").display().to_string());

    // Volume names are unique and stay inside the pool.
    let raw = "<volume><name>outside.img</name><capacity>1024</capacity></volume>";
    let e = d
        .create_vol(Some(&name("p1")), raw, false)
        .await
        .expect_err("exists");
    assert_eq!(e.code, ErrorCode::StorageVolExist);
    assert_eq!(e.message, "storage volume already exists: 'outside.img'");

    d.delete_vol(Some(&vol("p1", "outside.img")))
        .await
        .expect("delete vol");
    assert!(!dir.join("outside.img").exists());
    let e = d
        .lookup_vol(Some(&vol("p1", "outside.img")))
        .expect_err("gone");
    assert_eq!(e.code, ErrorCode::NoStorageVol);
    assert_eq!(
        e.message,
        "Storage volume not found: no storage vol with matching name 'outside.img'"
    );

    d.destroy(Some(&name("p1"))).await.expect("destroy");
    let e = d.list_vols(Some(&name("p1"))).expect_err("inactive");
    assert_eq!(e.code, ErrorCode::OperationInvalid);
    d.delete(Some(&name("p1"))).await.expect("pool-delete");
    assert!(!dir.exists(), "pool-delete removes the directory");
    d.undefine(Some(&name("p1"))).await.expect("undefine");
    let e = d.lookup(Some(&name("p1"))).expect_err("undefined");
    assert_eq!(e.code, ErrorCode::NoStoragePool);
    assert_eq!(
        e.message,
        "Storage pool not found: no storage pool with matching name 'p1'"
    );
}

#[tokio::test]
async fn a_restart_finds_active_pools_their_volumes_and_autostart() {
    if !have_qemu_img() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    {
        let d = driver(&state).await;
        d.define_xml(&pool_xml("a", &a)).await.expect("define a");
        d.build(Some(&name("a"))).await.expect("build a");
        d.start(Some(&name("a"))).await.expect("start a");
        d.create_vol(
            Some(&name("a")),
            "<volume><name>v.qcow2</name><capacity unit='MiB'>64</capacity><target><format type='qcow2'/><compat>1.1</compat><features><lazy_refcounts/></features></target></volume>",
            false,
        )
        .await
        .expect("qcow2 volume");
        d.define_xml(&pool_xml("b", &b)).await.expect("define b");
        d.build(Some(&name("b"))).await.expect("build b");
        d.set_autostart(Some(&name("b")), true)
            .await
            .expect("autostart");
        // libvirt allows names that start with a dot.
        d.define_xml(&pool_xml(".dot", &tmp.path().join("dot")))
            .await
            .expect("define .dot");
        // A second driver on the same state directory is refused.
        let e = StorageDriver::new(StorageConfig::system(Some(state.clone())))
            .await
            .expect_err("locked");
        assert!(e.to_string().contains("another virtmesh-storage"), "{e}");
    }
    let d = driver(&state).await;
    let a_info = d.lookup(Some(&name("a"))).expect("a");
    assert!(a_info.active && a_info.persistent);
    assert!(d.lookup(Some(&name("b"))).expect("b").active, "autostarted");
    assert!(d.lookup(Some(&name(".dot"))).expect(".dot").persistent);
    // The volume is found again, probed from its header.
    let xml = d
        .vol_xml(Some(&vol("a", "v.qcow2")))
        .await
        .expect("vol xml");
    assert!(xml.contains("<format type='qcow2'/>"), "{xml}");
    assert!(
        xml.contains("<capacity unit='bytes'>67108864</capacity>"),
        "{xml}"
    );
    assert!(
        xml.contains(
            "<compat>1.1</compat>\n    <features>\n      <lazy_refcounts/>\n    </features>"
        ),
        "{xml}"
    );
}

#[tokio::test]
async fn transient_pools_and_events() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = driver(&tmp.path().join("state")).await;
    let mut events = tokio_stream::wrappers::BroadcastStream::new(d.events().subscribe());
    let dir = tmp.path().join("t");
    std::fs::create_dir(&dir).expect("dir");
    let s = d.create_xml(&pool_xml("t", &dir)).await.expect("create");
    assert!(s.active && !s.persistent);
    d.refresh(Some(&name("t"))).await.expect("refresh");
    let e = d
        .set_autostart(Some(&name("t")), true)
        .await
        .expect_err("transient");
    assert_eq!(e.code, ErrorCode::InternalError);
    assert_eq!(e.message, "internal error: pool has no config file");
    d.destroy(Some(&name("t"))).await.expect("destroy");
    assert_eq!(
        d.lookup(Some(&name("t"))).expect_err("gone").code,
        ErrorCode::NoStoragePool
    );
    // CreateXML of a defined, inactive pool starts it; it stays persistent.
    // (Without a UUID the second document would be another pool of the
    // same name, which libvirt refuses.)
    let xml = pool_xml("t", &dir).replace(
        "<name>t</name>",
        "<name>t</name><uuid>7a1f2c44-0c1e-4b4e-9d38-5b1c5b1e0001</uuid>",
    );
    let e = d
        .define_xml(&pool_xml("t", &dir))
        .await
        .map(|_| ())
        .and(d.define_xml(&pool_xml("t", &dir)).await.map(|_| ()))
        .expect_err("same name, new uuid");
    assert_eq!(e.code, ErrorCode::OperationFailed);
    d.undefine(Some(&name("t"))).await.expect("undefine");
    let def = d.define_xml(&xml).await.expect("define");
    assert!(!def.active && def.persistent);
    let s = d.create_xml(&xml).await.expect("create");
    assert!(s.active && s.persistent);
    let e = d.create_xml(&xml).await.expect_err("twice");
    assert_eq!(
        e.message,
        "Requested operation is not valid: storage pool 't' is already active"
    );
    // Stopped, it goes on reporting what its last refresh saw.
    d.destroy(Some(&name("t"))).await.expect("destroy");
    assert!(d.info(Some(&name("t"))).expect("info").capacity > 0);
    let after = d.xml_desc(Some(&name("t")), true).expect("xml");
    assert!(!after.contains("<capacity unit='bytes'>0<"), "{after}");
    assert!(after.contains("<permissions>"), "{after}");
    // Lifecycle types, and -1 for a refresh.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let ev = events.next().await.expect("event").expect("not lagged");
        match ev.kind {
            Some(Kind::PoolLifecycle(l)) => seen.push(l.r#type),
            Some(Kind::PoolRefresh(_)) => seen.push(-1),
            _ => {}
        }
    }
    assert_eq!(
        seen,
        vec![
            Ev::StoragePoolEventStarted as i32,
            -1,
            Ev::StoragePoolEventStopped as i32
        ]
    );
}

#[tokio::test]
async fn resize_wipe_and_clone_work_on_the_files() {
    if !have_qemu_img() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = driver(&tmp.path().join("state")).await;
    let dir = tmp.path().join("r");
    std::fs::create_dir(&dir).expect("dir");
    d.create_xml(&pool_xml("r", &dir)).await.expect("pool");
    let p = Some(name("r"));
    d.create_vol(
        p.as_ref(),
        "<volume><name>a.raw</name><capacity unit='KiB'>64</capacity></volume>",
        false,
    )
    .await
    .expect("raw");
    let raw = dir.join("a.raw");
    std::fs::write(&raw, [7u8; 65536]).expect("data");

    // Raw: grow by a delta; shrinking needs the flag.
    let resize = |capacity: u64, delta: bool, shrink: bool| pb::VolResizeRequest {
        volume: Some(vol("r", "a.raw")),
        capacity,
        delta,
        shrink,
        allocate: false,
    };
    d.resize(&resize(65536, true, false)).await.expect("grow");
    assert_eq!(std::fs::metadata(&raw).expect("raw").len(), 131072);
    let e = d
        .resize(&resize(4096, false, false))
        .await
        .expect_err("shrink");
    assert_eq!(e.code, ErrorCode::InvalidArg);
    d.resize(&resize(65536, false, true)).await.expect("shrink");
    assert_eq!(std::fs::metadata(&raw).expect("raw").len(), 65536);

    // Clones: raw to raw copies the bytes, raw to qcow2 converts.
    d.clone_vol(
        p.as_ref(),
        "<volume><name>b.raw</name></volume>",
        Some(&vol("r", "a.raw")),
    )
    .await
    .expect("raw clone");
    assert_eq!(
        std::fs::read(dir.join("b.raw")).expect("clone"),
        vec![7u8; 65536]
    );
    d.clone_vol(
        p.as_ref(),
        "<volume><name>c.qcow2</name><target><format type='qcow2'/></target></volume>",
        Some(&vol("r", "a.raw")),
    )
    .await
    .expect("qcow2 clone");
    let xml = d.vol_xml(Some(&vol("r", "c.qcow2"))).await.expect("xml");
    assert!(
        xml.contains("<capacity unit='bytes'>65536</capacity>"),
        "{xml}"
    );
    // qcow2: qemu-img resizes the image.
    d.resize(&pb::VolResizeRequest {
        volume: Some(vol("r", "c.qcow2")),
        capacity: 1 << 20,
        ..Default::default()
    })
    .await
    .expect("qcow2 resize");
    let info = d.vol_info(Some(&vol("r", "c.qcow2"))).await.expect("info");
    assert_eq!(info.capacity, 1 << 20);

    // Wipe: the data is gone, the size stays.
    d.wipe(Some(&vol("r", "a.raw"))).await.expect("wipe");
    let after = std::fs::read(&raw).expect("raw");
    assert_eq!(after.len(), 65536);
    assert!(after.iter().all(|b| *b == 0));
}

#[tokio::test]
async fn volume_creation_errors_in_libvirts_order() {
    if !have_qemu_img() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = driver(&tmp.path().join("state")).await;
    let dir = tmp.path().join("e");
    std::fs::create_dir(&dir).expect("dir");
    d.create_xml(&pool_xml("e", &dir)).await.expect("pool");
    let p = Some(name("e"));
    let create = |xml: &'static str| {
        let d = d.clone();
        let p = p.clone();
        async move { d.create_vol(p.as_ref(), xml, false).await }
    };
    // A format option on a non-qcow2 image comes before the backing file.
    let e = create(
        "<volume><name>a.vdi</name><capacity>1048576</capacity><target><format type='vdi'/><compat>1.1</compat></target><backingStore><path>/nonexistent/base</path><format type='raw'/></backingStore></volume>",
    )
    .await
    .expect_err("compat on vdi");
    assert_eq!(e.code, ErrorCode::ConfigUnsupported);
    assert_eq!(
        e.message,
        "unsupported configuration: compatibility option only available with qcow2"
    );
    let e = create(
        "<volume><name>b.qcow2</name><capacity>1048576</capacity><target><format type='qcow2'/></target><backingStore><path>/nonexistent/base</path><format type='raw'/></backingStore></volume>",
    )
    .await
    .expect_err("missing backing");
    assert_eq!(e.code, ErrorCode::SystemError);
    assert_eq!(
        e.message,
        "inaccessible backing store volume /nonexistent/base: No such file or directory"
    );
    let e = create(
        "<volume><name>c.qcow2</name><capacity>1048576</capacity><target><format type='qcow2'/><compat>0.10</compat><features><lazy_refcounts/></features></target></volume>",
    )
    .await
    .expect_err("lazy refcounts on 0.10");
    assert_eq!(
        e.message,
        "unsupported configuration: lazy_refcounts not supported with compat level 0.10"
    );
    let e = create("<volume><name>d</name><capacity unit='EiB'>9</capacity></volume>")
        .await
        .expect_err("too large");
    assert_eq!(e.code, ErrorCode::Overflow);
    // Nothing was left behind by the refusals.
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
    assert!(d.list_vols(p.as_ref()).expect("vols").is_empty());
}
