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
