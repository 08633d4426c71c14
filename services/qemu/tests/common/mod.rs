//! Shared by the tests that run the driver inside a network namespace
//! (macvtap.rs, hotplug.rs): the namespace with its veth, the thread that
//! enters it, and the Drop guard that kills our QEMUs and deletes it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use virtmesh_proto::v1::{self as pb, object_ref::Key};
use virtmesh_qemu::QemuConfig;

pub const EMULATOR: &str = "/usr/bin/qemu-system-x86_64";

pub fn host_ready() -> bool {
    let mut missing = Vec::new();
    // /proc/self belongs to the effective uid.
    let root =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc/self"))
            == 0;
    if !root {
        missing.push("not root (netns, macvtap)");
    }
    if !Path::new("/dev/kvm").exists() {
        missing.push("/dev/kvm is absent");
    }
    if !Path::new(EMULATOR).exists() {
        missing.push("qemu-system-x86_64 is not installed (scripts/install-host-deps.sh)");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        missing.push("iproute2 (`ip`) is not installed");
    }
    if missing.is_empty() {
        return true;
    }
    skip(&missing.join("; "))
}

/// A network namespace with `veth0` (up) as macvtap parent, and the
/// driver's directories. Drop kills our QEMUs and deletes the namespace.
pub struct Netns {
    pub name: String,
    pub dir: tempfile::TempDir,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("vmq-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns {
            name,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        ns.ip(&[
            "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
        ]);
        ns.ip(&["link", "set", "veth0", "up"]);
        ns.ip(&["link", "set", "veth1", "up"]);
        ns
    }

    pub fn ip(&self, args: &[&str]) {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        ip(&a);
    }

    /// The ifindex of `link` in the namespace, if it exists.
    pub fn link_index(&self, link: &str) -> Option<u32> {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-o", "link", "show", "dev", link])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout)
            .split(':')
            .next()?
            .trim()
            .parse()
            .ok()
    }

    pub fn links(&self) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-o", "link"])
            .output()
            .expect("ip link");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn config(&self) -> QemuConfig {
        QemuConfig {
            state_dir: self.dir.path().join("state"),
            run_dir: self.dir.path().join("run"),
            emulator: PathBuf::from(EMULATOR),
            network: None,
        }
    }

    /// Run `f` on a thread inside the namespace, with its own sysfs and a
    /// current-thread runtime (every task, and QEMU, stays in there).
    pub fn run<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce(QemuConfig) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T>,
        T: Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        let cfg = self.config();
        std::thread::spawn(move || {
            use nix::mount::{MsFlags, mount};
            use nix::sched::{CloneFlags, setns, unshare};
            let file = std::fs::File::open(&path).expect("open netns");
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            // A mount namespace of this thread's own, private, so the
            // sysfs mounted for the netns never shows on the host.
            unshare(CloneFlags::CLONE_NEWNS).expect("unshare mount ns");
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .expect("make / private");
            mount(
                Some("sysfs"),
                "/sys",
                Some("sysfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .expect("mount sysfs");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(f(cfg))
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let marker = self.dir.path().display().to_string();
        if let Ok(entries) = std::fs::read_dir("/proc") {
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
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn by_name(name: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        key: Some(Key::Name(name.to_owned())),
    }
}

/// Print why a test skips; under VIRTMESH_REQUIRE_HOST=1 fail instead.
pub fn skip(why: &str) -> bool {
    if std::env::var("VIRTMESH_REQUIRE_HOST").as_deref() == Ok("1") {
        panic!("VIRTMESH_REQUIRE_HOST=1 but {why}");
    }
    eprintln!("skipping: {why}");
    false
}

/// The test guest's directory (vmlinuz, busybox, modules/, initrd-net.cpio, busybox and modules/, built if needed
/// (once per test process: the tests here run in parallel).
pub fn guest_files() -> Option<PathBuf> {
    static FILES: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut files = FILES.lock().unwrap_or_else(|e| e.into_inner());
    if files.is_none() {
        *files = build_guest_files();
    }
    files.clone()
}

fn build_guest_files() -> Option<PathBuf> {
    if !Path::new(EMULATOR).exists() {
        skip("qemu-system-x86_64 is not installed (scripts/install-host-deps.sh)");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/build-guest.sh");
    let out = match std::process::Command::new("sh").arg(&script).output() {
        Ok(o) => o,
        Err(e) => {
            skip(&format!("cannot run {}: {e}", script.display()));
            return None;
        }
    };
    if !out.status.success() {
        skip(&format!(
            "build-guest.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return None;
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().lines().last()?);
    dir.join("vmlinuz").exists().then_some(dir)
}
