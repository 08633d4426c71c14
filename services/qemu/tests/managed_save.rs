//! Managed save and restore on real QEMU/KVM (virsh managedsave, then
//! start): the guest's RAM survives. SeaBIOS writes the base memory size
//! (639 KiB, 0x27f) into the BIOS data area at 0x413 while it runs; a
//! QEMU that was only spawned has zeros there, so reading it back after a restore
//! that left the guest paused proves the state came from the image.
//! Needs root, /dev/kvm, QEMU and `ip`; skips with the reason otherwise,
//! fails under VIRTMESH_REQUIRE_HOST=1.

mod common;

use common::{Netns, by_name, host_ready};
use serde_json::Value;
use std::time::{Duration, Instant};
use virtmesh_proto::v1::DomainState;
use virtmesh_qemu::QemuDriver;

const SHUTOFF_SAVED: i32 = 5;
const RUNNING_RESTORED: i32 = 3;

/// The BDA word at guest-physical 0x413 (base memory in KiB), read with HMP `xp`.
async fn bda_base_memory(d: &QemuDriver, name: &str) -> String {
    let r = Some(by_name(name));
    let out: Value = d
        .monitor_command(
            r.as_ref(),
            r#"{"execute":"human-monitor-command","arguments":{"command-line":"xp /1hx 0x413"}}"#,
        )
        .await
        .expect("xp");
    out.to_string()
}

#[test]
fn managed_save_keeps_the_guest_state() {
    if !host_ready() {
        return;
    }
    let ns = Netns::new("ms");
    let state_dir = ns.config().state_dir;
    ns.run(move |cfg| async move {
        let d = QemuDriver::new(cfg).await.expect("driver");
        d.define(
            "<domain type='kvm'><name>ms</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type></os></domain>",
        )
        .await
        .expect("define");
        let r = Some(by_name("ms"));
        d.start(r.as_ref(), false).await.expect("start");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !bda_base_memory(&d, "ms").await.contains("0x027f") {
            assert!(Instant::now() < deadline, "SeaBIOS never set up the BDA");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        d.managed_save(r.as_ref()).await.expect("managed save");
        let v = d.lookup(r.as_ref()).expect("lookup");
        assert_eq!((v.state, v.reason), (DomainState::Shutoff, SHUTOFF_SAVED));
        assert!(d.has_managed_save(r.as_ref()).expect("has"));
        let image = state_dir.join("save/ms.save");
        assert!(image.metadata().expect("image").len() > 4096, "{image:?}");
        assert!(!state_dir.join("save/ms.save.partial").exists());
        let refused = d
            .undefine_with_save(
                r.as_ref(),
                false,
                virtmesh_qemu::driver::NvramOnUndefine::Refuse,
                false,
            )
            .await;
        let e = refused.expect_err("undefine must refuse").to_string();
        assert!(e.contains("managed save image exists"), "{e}");

        // Restore, kept paused: the RAM is the saved one.
        d.start(r.as_ref(), true).await.expect("restore");
        assert_eq!(
            d.lookup(r.as_ref()).expect("lookup").state,
            DomainState::Paused
        );
        let bda = bda_base_memory(&d, "ms").await;
        assert!(bda.contains("0x027f"), "restored RAM lacks the BDA: {bda}");
        assert!(
            !d.has_managed_save(r.as_ref()).expect("has"),
            "image consumed"
        );
        assert!(!image.exists());
        d.resume(r.as_ref()).await.expect("resume");

        // A guest saved while paused comes back paused; one saved while
        // running comes back running, with libvirt's "restored" reason.
        d.suspend(r.as_ref()).await.expect("suspend");
        d.managed_save(r.as_ref()).await.expect("save paused");
        d.start(r.as_ref(), false).await.expect("restore paused");
        assert_eq!(
            d.lookup(r.as_ref()).expect("lookup").state,
            DomainState::Paused
        );
        d.resume(r.as_ref()).await.expect("resume");
        d.managed_save(r.as_ref()).await.expect("save running");
        d.start(r.as_ref(), false).await.expect("restore running");
        let v = d.lookup(r.as_ref()).expect("lookup");
        assert_eq!(
            (v.state, v.reason),
            (DomainState::Running, RUNNING_RESTORED)
        );

        // Removing an image makes the next start a fresh boot.
        d.managed_save(r.as_ref()).await.expect("save again");
        d.managed_save_remove(r.as_ref()).await.expect("remove");
        assert!(!d.has_managed_save(r.as_ref()).expect("has"));
        d.start(r.as_ref(), true).await.expect("fresh start");
        let bda = bda_base_memory(&d, "ms").await;
        assert!(
            !bda.contains("0x027f"),
            "a fresh QEMU has no BDA yet: {bda}"
        );
        d.destroy(r.as_ref(), false).await.expect("destroy");

        // Only persistent guests have a managed save.
        d.create_xml(
            "<domain type='kvm'><name>tr</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type></os></domain>",
            false,
        )
        .await
        .expect("create transient");
        let e = d
            .managed_save(Some(&by_name("tr")))
            .await
            .expect_err("transient")
            .to_string();
        assert!(
            e.contains("cannot do managed save for transient domain"),
            "{e}"
        );
        d.destroy(Some(&by_name("tr")), false)
            .await
            .expect("destroy transient");
    });
}
