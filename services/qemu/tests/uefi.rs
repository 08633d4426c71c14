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

use common::{EMULATOR, by_name, skip};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use virtmesh_proto::v1::{self as pb, domain_client::DomainClient};
use virtmesh_qemu::{QemuConfig, QemuDriver};
use virtmesh_rpc::ListenAddr;
use virtmesh_rpc::serve::{Listener, serve};

const DESCRIPTOR: &str = "/usr/share/qemu/firmware/60-edk2-x86_64.json";
const TEMPLATE: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const SHELL: &str = "UEFI Interactive Shell";

/// Kill the QEMUs of this test (their command line names our directory).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let marker = self.0.display().to_string();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for pid in entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&marker) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

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
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let state = dir.path().join("state");
    let driver = QemuDriver::new(QemuConfig {
        state_dir: state.clone(),
        run_dir: dir.path().join("run"),
        emulator: PathBuf::from(EMULATOR),
        network: None,
    })
    .await
    .expect("driver");
    let addr = ListenAddr::Unix(dir.path().join("svc.sock"));
    let listener = Listener::bind(&addr).await.expect("bind");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(virtmesh_qemu::routes(driver), listener, async {
        let _ = stop_rx.await;
    }));
    let mut c = DomainClient::new(virtmesh_rpc::client::channel(&addr, &Default::default()));
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
    let (keys, rx) = tokio::sync::mpsc::channel(4);
    keys.try_send(pb::ConsoleInput {
        msg: Some(pb::console_input::Msg::Open(pb::ConsoleOpen {
            domain: Some(by_name("uefi")),
            dev_name: String::new(),
            force: false,
        })),
    })
    .expect("queue open");
    let mut output = c
        .open_console(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("console")
        .into_inner();
    c.resume(by_name("uefi")).await.expect("resume");
    let started = Instant::now();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline.into(), output.next()).await {
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("output").data));
        if seen.contains(SHELL) {
            break;
        }
    }
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
    drop(c);
    let _ = stop_tx.send(());
    let _ = server.await;
}
