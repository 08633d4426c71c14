//! Harness of the end-to-end tests: starts the real binaries (a driver
//! service and the gateway) on ephemeral ports, and tears them down when
//! dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const READY_PREFIX: &str = "listening on ";

pub struct Proc {
    pub child: Child,
    pub addr: String,
}

impl Proc {
    /// Start `bin args…` and wait for its ready line on stdout.
    pub fn start(bin: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {bin}: {e}"));
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{bin}: no stdout pipe");
        };
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            if !matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                let _ = child.kill();
                let status = child.wait();
                panic!("{bin} exited before it was ready: {status:?}");
            }
            if let Some(addr) = line.trim().strip_prefix(READY_PREFIX) {
                let addr = addr.to_owned();
                // Keep draining stdout so the child never blocks on a full pipe.
                std::thread::spawn(move || {
                    let mut sink = String::new();
                    while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                        sink.clear();
                    }
                });
                return Proc { child, addr };
            }
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The test driver service plus a gateway routing `test` to it.
pub struct Mesh {
    pub dir: tempfile::TempDir,
    pub test: Proc,
    pub gateway: Proc,
}

impl Mesh {
    pub fn start() -> Mesh {
        let dir = tempfile::tempdir().expect("tempdir");
        let test = Proc::start(
            env!("CARGO_BIN_EXE_virtmesh-test"),
            &["--listen", "127.0.0.1:0"],
        );
        let config = write_config(dir.path(), &test.addr);
        let gateway = Proc::start(
            env!("CARGO_BIN_EXE_virtmesh-gateway"),
            &[
                "--config",
                config.to_str().expect("utf-8 path"),
                "--listen",
                "127.0.0.1:0",
            ],
        );
        Mesh { dir, test, gateway }
    }

    /// Restart the test service on the address it had.
    pub fn restart_test(&mut self) {
        self.test.kill();
        let addr = self.test.addr.clone();
        // The port was just released; retry briefly in case of TIME_WAIT.
        for _ in 0..50 {
            let probe = std::net::TcpListener::bind(&addr);
            if probe.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.test = Proc::start(env!("CARGO_BIN_EXE_virtmesh-test"), &["--listen", &addr]);
    }

    /// Run vsh against this mesh.
    pub fn vsh(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vsh"))
            .arg("--gateway")
            .arg(&self.gateway.addr)
            .args(args)
            .env_remove("VIRTMESH_DEFAULT_URI")
            .env_remove("LIBVIRT_DEFAULT_URI")
            .output()
            .expect("running vsh")
    }

    /// vsh that must succeed; returns its stdout.
    pub fn vsh_ok(&self, args: &[&str]) -> String {
        let out = self.vsh(args);
        assert!(
            out.status.success(),
            "vsh {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("writing fixture");
        path
    }
}

pub fn write_config(dir: &Path, test_addr: &str) -> PathBuf {
    let path = dir.join("virtmesh.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\ndefault_uri = \"test:///default\"\n\n\
             [[service]]\nname = \"test\"\nlisten = \"{test_addr}\"\nschemes = [\"test\"]\nfamilies = [\"*\"]\n"
        ),
    )
    .expect("writing config");
    path
}

/// Whether a host prerequisite is present; when it is not, the test skips
/// with the reason, unless VIRTMESH_REQUIRE_HOST=1 makes the skip a failure.
pub fn require(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("VIRTMESH_REQUIRE_HOST").as_deref() == Ok("1") {
        panic!("required host prerequisite missing: {what} (VIRTMESH_REQUIRE_HOST=1)");
    }
    eprintln!(
        "SKIP: {what} is not available (scripts/install-test-tools.sh or scripts/install-host-deps.sh installs it)"
    );
    false
}

/// Tools installed by scripts/install-test-tools.sh live under target/tools.
pub fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("tools")
}

pub fn grpcurl() -> Option<PathBuf> {
    let local = tools_dir().join("grpcurl");
    if local.is_file() {
        return Some(local);
    }
    which("grpcurl")
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// A network namespace a test creates (`ip netns add`) and deletes when
/// dropped, with every link in it: host links, bridges, dnsmasq and nft
/// tables of a test stay inside it.
pub struct Netns(pub String);

impl Netns {
    pub fn create(name: &str) -> Option<Netns> {
        let ok = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Netns(name.to_owned()))
    }

    /// `ip -n NS ARGS`.
    pub fn ip(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args)
            .output()
            .expect("ip")
    }

    /// `ip netns exec NS CMD ARGS`.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, cmd])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// One `[[service]]` of a gateway config: its name, where it listens, and
/// its routing lines (`schemes = [...]` / `families = [...]`).
pub struct Route<'a> {
    pub name: &'a str,
    pub addr: &'a str,
    pub routing: &'a str,
}

/// Write a gateway config for `routes` into `dir` and start the gateway on
/// a free loopback port.
pub fn start_gateway(dir: &Path, default_uri: &str, routes: &[Route<'_>]) -> Proc {
    let mut text =
        format!("[gateway]\nlisten = \"127.0.0.1:0\"\ndefault_uri = \"{default_uri}\"\n");
    for r in routes {
        text.push_str(&format!(
            "\n[[service]]\nname = \"{}\"\nlisten = \"{}\"\n{}\n",
            r.name, r.addr, r.routing
        ));
    }
    let config = dir.join("virtmesh.toml");
    std::fs::write(&config, text).expect("writing config");
    Proc::start(
        env!("CARGO_BIN_EXE_virtmesh-gateway"),
        &[
            "--config",
            config.to_str().expect("utf-8 path"),
            "--listen",
            "127.0.0.1:0",
        ],
    )
}

/// vsh against one gateway with one connection URI.
#[derive(Clone)]
pub struct Vsh {
    pub gateway: String,
    pub uri: String,
}

impl Vsh {
    pub fn new(gateway: &str, uri: &str) -> Vsh {
        Vsh {
            gateway: gateway.to_owned(),
            uri: uri.to_owned(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vsh"))
            .args(["--gateway", &self.gateway, "-c", &self.uri])
            .args(args)
            .output()
            .expect("running vsh")
    }

    /// vsh that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "vsh {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// vsh that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "vsh {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `vsh console GUEST` on a pseudo-terminal (virsh's console needs
    /// one) until `done` accepts the complete lines it printed, then
    /// Ctrl+] to leave,
    /// which must end vsh cleanly. Returns the output.
    pub fn console_until(
        &self,
        guest: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        use std::io::{Read, Write};
        use std::os::fd::OwnedFd;
        use std::time::Instant;
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup pty"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_vsh"))
            .args([
                "--gateway",
                &self.gateway,
                "-c",
                &self.uri,
                "console",
                guest,
            ])
            .stdin(slave(&pty.slave))
            .stdout(slave(&pty.slave))
            .stderr(Stdio::piped())
            .spawn()
            .expect("vsh console");
        drop(pty.slave);
        let mut master = std::fs::File::from(pty.master);
        let mut reader = master.try_clone().expect("dup master");
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + timeout;
        let mut seen = String::new();
        // `done` sees complete lines only: a marker split across two reads
        // must not count before its line has fully arrived.
        let complete = |s: &str| s.rfind('\n').map_or(String::new(), |i| s[..=i].to_owned());
        while !done(&complete(&seen)) && Instant::now() < deadline {
            if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
        }
        let _ = master.write_all(b"\x1d");
        let exit_deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break Some(s);
            }
            if Instant::now() > exit_deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.is_some_and(|s| s.success()),
            "vsh console did not end cleanly on Ctrl+]: {status:?}"
        );
        seen
    }
}

/// The test guest of services/qemu (Debian's kernel, busybox initramfs
/// `initrd-net.cpio`), built or found by its fixture script; None (with
/// the reason, or a failure under VIRTMESH_REQUIRE_HOST=1) otherwise.
pub fn guest_files() -> Option<PathBuf> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("services/qemu/tests/fixtures/build-guest.sh");
    let out = Command::new("sh").arg(&script).output();
    let (dir, why) = match &out {
        Ok(o) if o.status.success() => (
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .lines()
                .last()
                .map(PathBuf::from),
            String::new(),
        ),
        Ok(o) => (None, String::from_utf8_lossy(&o.stderr).into_owned()),
        Err(e) => (None, e.to_string()),
    };
    let dir = dir.filter(|d| d.join("vmlinuz").exists() && d.join("initrd-net.cpio").exists());
    require(
        &format!("the test guest (build-guest.sh: {})", why.trim()),
        dir.is_some(),
    )
    .then_some(dir)
    .flatten()
}

/// A `vsh` event command running against the gateway, its output lines
/// read on a thread; killed on drop.
pub struct EventWatcher {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl EventWatcher {
    /// `vsh --gateway ADDR ARGS…` with stdout captured.
    pub fn start(gateway: &str, args: &[&str]) -> EventWatcher {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(env!("CARGO_BIN_EXE_vsh"))
            .args(["--gateway", gateway])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("vsh event watcher");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        EventWatcher { child, lines }
    }

    /// The watch registers asynchronously: repeat `poke` (up to 50 times,
    /// 100 ms apart) until a line `ready` accepts arrives.
    pub fn wait_live(&self, mut poke: impl FnMut(), ready: impl Fn(&str) -> bool) -> bool {
        for _ in 0..50 {
            poke();
            if self
                .lines
                .recv_timeout(Duration::from_millis(100))
                .is_ok_and(|l| ready(&l))
            {
                return true;
            }
        }
        false
    }

    /// Up to `n` lines that `skip` does not reject, each within 5 s.
    pub fn collect(&self, n: usize, skip: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        while seen.len() < n {
            match self.lines.recv_timeout(Duration::from_secs(5)) {
                Ok(line) if skip(&line) => {}
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        seen
    }
}

impl Drop for EventWatcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
