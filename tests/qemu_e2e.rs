//! A real KVM guest driven through the gateway by vsh (`qemu:///system`):
//! define, start, suspend, resume, shutdown request, destroy, undefine.

mod common;

use common::{Proc, require, which};
use std::process::{Command, Output};

struct QemuMesh {
    _dir: tempfile::TempDir,
    _qemu: Proc,
    gateway: Proc,
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
        let config = dir.path().join("virtmesh.toml");
        std::fs::write(
            &config,
            format!(
                "[gateway]\nlisten = \"127.0.0.1:0\"\ndefault_uri = \"qemu:///system\"\n\n\
                 [[service]]\nname = \"qemu\"\nlisten = \"{}\"\nschemes = [\"qemu\"]\n",
                qemu.addr
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
        QemuMesh {
            _dir: dir,
            _qemu: qemu,
            gateway,
        }
    }

    fn vsh(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vsh"))
            .args(["--gateway", &self.gateway.addr, "-c", "qemu:///system"])
            .args(args)
            .output()
            .expect("vsh")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.vsh(args);
        assert!(
            out.status.success(),
            "vsh {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
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
    std::fs::write(
        &xml,
        format!(
            "<domain type='kvm'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='q35'>hvm</type></os></domain>"
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
    // A diskless guest has no OS to honour the power button; the request
    // itself must be accepted by QEMU.
    mesh.ok(&["shutdown", &name]);
    mesh.ok(&["destroy", &name]);
    assert_eq!(mesh.ok(&["domstate", &name]).trim(), "shut off");
    mesh.ok(&["undefine", &name]);
    let gone = mesh.vsh(&["domstate", &name]);
    assert_eq!(gone.status.code(), Some(1));
}
