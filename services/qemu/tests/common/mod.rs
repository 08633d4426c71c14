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

/// SIGKILL every process whose command line names `dir` (the QEMUs a
/// test's driver started with its state and run directories there).
pub fn kill_processes_naming(dir: &Path) {
    let marker = dir.display().to_string();
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

/// On drop, [`kill_processes_naming`] the directory: a failing test
/// leaves no QEMU behind.
pub struct KillQemus(pub PathBuf);

impl Drop for KillQemus {
    fn drop(&mut self) {
        kill_processes_naming(&self.0);
    }
}

/// A driver with its state under `dir`, served on `dir/svc.sock`, and a
/// Domain client for it.
pub struct Served {
    pub client: virtmesh_proto::v1::domain_client::DomainClient<tonic::transport::Channel>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), virtmesh_rpc::serve::ServeError>>,
}

/// A driver with its state and run directories under `dir`.
pub async fn driver_in(dir: &Path) -> virtmesh_qemu::QemuDriver {
    virtmesh_qemu::QemuDriver::new(QemuConfig {
        state_dir: dir.join("state"),
        run_dir: dir.join("run"),
        emulator: PathBuf::from(EMULATOR),
        network: None,
    })
    .await
    .expect("driver")
}

impl Served {
    pub async fn start(dir: &Path) -> Served {
        use virtmesh_rpc::serve::{Listener, serve};
        let driver = driver_in(dir).await;
        let addr = virtmesh_rpc::ListenAddr::Unix(dir.join("svc.sock"));
        let listener = Listener::bind(&addr).await.expect("bind");
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(virtmesh_qemu::routes(driver), listener, async {
            let _ = stop_rx.await;
        }));
        let client = virtmesh_proto::v1::domain_client::DomainClient::new(
            virtmesh_rpc::client::channel(&addr, &Default::default()),
        );
        Served {
            client,
            stop,
            server,
        }
    }

    /// Stop serving (within 10 s).
    pub async fn stop(self) {
        drop(self.client);
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.server).await;
    }
}

/// The console of domain `name`: the input side (keep it to keep the
/// session) and its output.
pub async fn open_console(
    c: &mut virtmesh_proto::v1::domain_client::DomainClient<tonic::transport::Channel>,
    name: &str,
) -> (
    tokio::sync::mpsc::Sender<pb::ConsoleInput>,
    tonic::Streaming<pb::ConsoleOutput>,
) {
    let (keys, rx) = tokio::sync::mpsc::channel(4);
    keys.try_send(pb::ConsoleInput {
        msg: Some(pb::console_input::Msg::Open(pb::ConsoleOpen {
            domain: Some(by_name(name)),
            dev_name: String::new(),
            force: false,
        })),
    })
    .expect("queue open");
    let output = c
        .open_console(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("console")
        .into_inner();
    (keys, output)
}

/// Console output until `marker` shows or `within` passes; everything
/// read (the caller asserts on it).
pub async fn read_until(
    output: &mut tonic::Streaming<pb::ConsoleOutput>,
    marker: &str,
    within: std::time::Duration,
) -> String {
    use tokio_stream::StreamExt;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, output.next()).await {
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("output").data));
        if seen.contains(marker) {
            break;
        }
    }
    seen
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_processes_naming(self.dir.path());
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
