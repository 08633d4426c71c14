//! A UEFI guest end to end: `<os firmware='efi'>` is resolved at define
//! from the host's firmware descriptors (Debian's ovmf), the guest's
//! NVRAM is made from its template at the first start, OVMF really runs
//! (TCG: this host's nested KVM cannot execute OVMF's early code) and
//! its UEFI shell is read on the serial console through OpenConsole;
//! undefine then refuses to drop the NVRAM silently, as libvirt does.
//!
//! Needs QEMU and ovmf (scripts/install-host-deps.sh); skips with the
//! reason otherwise, fails under VIRTMESH_REQUIRE_HOST=1.

mod common;

use common::{EMULATOR, KillQemus, Served, by_name, open_console, read_until, skip};
use std::path::Path;
use std::time::{Duration, Instant};
use virtmesh_proto::v1 as pb;

const DESCRIPTOR: &str = "/usr/share/qemu/firmware/60-edk2-x86_64.json";
const TEMPLATE: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const SHELL: &str = "UEFI Interactive Shell";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn efi_guest_gets_ovmf_and_its_own_nvram() {
    if !Path::new(EMULATOR).exists() {
        skip("qemu-system-x86_64 is not installed (scripts/install-host-deps.sh)");
        return;
    }
    if !Path::new(DESCRIPTOR).exists() || !Path::new(TEMPLATE).exists() {
        skip("ovmf is not installed (scripts/install-host-deps.sh)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let _cleanup = KillQemus(dir.path().to_path_buf());
    let state = dir.path().join("state");
    let mut served = Served::start(dir.path()).await;
    let c = &mut served.client;
    // Without Secure Boot: the plain OVMF build, whose UEFI shell starts
    // when there is nothing to boot.
    let xml = "<domain type='qemu'><name>uefi</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
         <os firmware='efi'><type arch='x86_64' machine='q35'>hvm</type><firmware>\
         <feature enabled='no' name='secure-boot'/></firmware></os><features><acpi/></features>\
         <devices><serial type='pty'/></devices></domain>";
    c.define_xml(pb::DefineXmlRequest {
        xml: xml.into(),
        validate: false,
    })
    .await
    .expect("define");
    let nvram = state.join("nvram/uefi_VARS.fd");
    let defined = c
        .get_xml_desc(pb::GetXmlDescRequest {
            object: Some(by_name("uefi")),
            ..Default::default()
        })
        .await
        .expect("xml")
        .into_inner()
        .xml;
    assert!(
        defined.contains(
            "<loader readonly='yes' type='pflash' format='raw'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>"
        ) && defined.contains(&format!(
            "<nvram template='{TEMPLATE}' templateFormat='raw' format='raw'>{}</nvram>",
            nvram.display()
        )),
        "{defined}"
    );
    assert!(!nvram.exists(), "the NVRAM is made at start, not at define");

    c.create(pb::CreateRequest {
        domain: Some(by_name("uefi")),
        start_paused: true,
        ..Default::default()
    })
    .await
    .expect("start");
    assert_eq!(
        std::fs::read(&nvram).expect("NVRAM made from the template"),
        std::fs::read(TEMPLATE).expect("template")
    );
    let (keys, mut output) = open_console(c, "uefi").await;
    c.resume(by_name("uefi")).await.expect("resume");
    let started = Instant::now();
    let seen = read_until(&mut output, SHELL, Duration::from_secs(120)).await;
    assert!(
        seen.contains(SHELL),
        "OVMF's shell did not show within 120 s; the console said: {}",
        &seen[seen.len().saturating_sub(2000)..]
    );
    eprintln!("UEFI shell after {:?}", started.elapsed());
    drop((keys, output));
    c.destroy(pb::DestroyRequest {
        domain: Some(by_name("uefi")),
        graceful: false,
    })
    .await
    .expect("destroy");

    let refused = c
        .undefine(pb::UndefineRequest {
            domain: Some(by_name("uefi")),
            ..Default::default()
        })
        .await
        .expect_err("the NVRAM is not dropped silently");
    assert_eq!(
        virtmesh_rpc::VirtError::from_status(&refused).message,
        "Requested operation is not valid: cannot undefine domain with nvram"
    );
    assert!(nvram.exists());
    c.undefine(pb::UndefineRequest {
        domain: Some(by_name("uefi")),
        nvram: true,
        ..Default::default()
    })
    .await
    .expect("undefine --nvram");
    assert!(!nvram.exists(), "undefine --nvram removes it");
    served.stop().await;
}
