//! vCPU hot-plug on a real KVM guest: `setvcpus --live` up to the
//! maximum adds CPUs QEMU reports (`query-cpus-fast`), the live XML and
//! the config follow their own flags, and an unplug QEMU refuses is
//! reported in QEMU's words.
//!
//! Needs /dev/kvm and QEMU; skips with the reason otherwise, fails under
//! VIRTMESH_REQUIRE_HOST=1.

mod common;

use common::{EMULATOR, by_name, driver_in, skip};
use std::path::Path;
use virtmesh_proto::v1 as pb;
use virtmesh_qemu::QemuDriver;

fn impact(live: bool, config: bool) -> Option<pb::Impact> {
    Some(pb::Impact {
        live,
        config,
        current: false,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_vcpus_plugged_up_to_the_maximum() {
    if !Path::new("/dev/kvm").exists() || !Path::new(EMULATOR).exists() {
        skip("needs /dev/kvm and qemu-system-x86_64 (scripts/install-host-deps.sh)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = driver_in(dir.path()).await;
    d.define(
        "<domain type='kvm'><name>v</name><memory unit='MiB'>128</memory>\
         <vcpu placement='static' current='1'>3</vcpu>\
         <os><type arch='x86_64' machine='q35'>hvm</type></os></domain>",
    )
    .await
    .expect("define");
    let r = Some(by_name("v"));
    d.start(r.as_ref(), false).await.expect("start");
    let cpus = |d: &QemuDriver| {
        let d = d.clone();
        async move {
            d.monitor_command(Some(&by_name("v")), r#"{"execute":"query-cpus-fast"}"#)
                .await
                .expect("query-cpus-fast")
                .as_array()
                .map_or(0, Vec::len)
        }
    };
    assert_eq!(cpus(&d).await, 1);
    d.set_vcpus(r.as_ref(), 3, impact(true, false).as_ref(), false)
        .await
        .expect("plug two");
    assert_eq!(cpus(&d).await, 3);
    let v = d.lookup(r.as_ref()).expect("lookup");
    assert!(
        v.def
            .to_xml(Some(v.id))
            .contains("<vcpu placement='static'>3</vcpu>"),
        "live XML"
    );
    let config = v.config.expect("persistent").to_xml(None);
    assert!(
        config.contains("<vcpu placement='static' current='1'>3</vcpu>"),
        "the config is untouched without --config: {config}"
    );
    let over = d
        .set_vcpus(r.as_ref(), 4, impact(true, false).as_ref(), false)
        .await
        .expect_err("over the maximum");
    assert_eq!(
        over.message,
        "invalid argument: requested vcpus is greater than max allowable vcpus for the live domain: 4 > 3"
    );
    let e = d
        .set_vcpus(r.as_ref(), 0, impact(true, false).as_ref(), false)
        .await
        .expect_err("zero");
    assert_eq!(
        e.message,
        "invalid argument: vcpus count must be at least 1"
    );
    // Unplugging needs the guest's consent (ACPI eject); before an OS has
    // switched QEMU to the modern CPU hot-plug interface QEMU itself
    // refuses, and its words reach the caller; the guest keeps its CPUs.
    let e = d
        .set_vcpus(r.as_ref(), 2, impact(true, false).as_ref(), false)
        .await
        .expect_err("no OS to eject the CPU");
    assert!(
        e.message.contains("device_del") && e.message.contains("qemu64-x86_64-cpu"),
        "{}",
        e.message
    );
    assert_eq!(cpus(&d).await, 3);
    d.destroy(r.as_ref(), false).await.expect("destroy");
}
