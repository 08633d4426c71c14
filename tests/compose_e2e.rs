//! docker-compose end to end: the gateway and the test driver service, each
//! in its own FROM-scratch container built by scripts/compose-build.sh,
//! driven by vsh on the host through the published gateway port. Checks
//! that the gateway reaches the service by its compose name, that state
//! lives in the service container across vsh runs, and that both
//! containers exit cleanly on SIGTERM.
//!
//! Needs a running Docker engine and docker-compose (scripts/start-docker.sh
//! installs and starts both). Without them the test skips, unless
//! VIRTMESH_REQUIRE_DOCKER=1 makes that a failure. The first run builds the
//! release static binaries (minutes); later runs are incremental.

mod common;

use common::which;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const DOMAIN_XML: &str = "<domain type='test'>
  <name>compose-vm</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
</domain>
";

/// How long the gateway may take to answer after `up` returns.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Like common::require, but keyed on VIRTMESH_REQUIRE_DOCKER rather than
/// VIRTMESH_REQUIRE_HOST: CI asks for the host prerequisites without
/// starting a Docker engine.
fn require_docker(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("VIRTMESH_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("required: {what} (VIRTMESH_REQUIRE_DOCKER=1)");
    }
    eprintln!("SKIP: {what} is not available (scripts/start-docker.sh installs and starts it)");
    false
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn docker_usable() -> bool {
    require_docker("docker", which("docker").is_some())
        && require_docker("docker-compose", which("docker-compose").is_some())
        && require_docker(
            "a running Docker engine (`docker info`)",
            succeeds(Command::new("docker").arg("info")),
        )
        && require_docker(
            "a working docker-compose (`docker-compose version`)",
            succeeds(Command::new("docker-compose").arg("version")),
        )
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("picking a free local port")
}

/// A compose project of this test; `down` whatever happens.
struct Project {
    root: PathBuf,
    name: String,
    port: u16,
}

impl Project {
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root)
            .env("VIRTMESH_PORT", self.port.to_string())
            .env("DOCKER_BUILDKIT", "0")
            .env("COMPOSE_DOCKER_CLI_BUILD", "0")
            .stdin(Stdio::null());
        cmd
    }

    fn compose(&self, args: &[&str]) -> Output {
        self.command("docker-compose")
            .arg("-p")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("running docker-compose")
    }

    fn compose_ok(&self, args: &[&str]) -> String {
        let out = self.compose(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?} failed ({}):\n{}",
            out.status,
            text(&out)
        );
        text(&out)
    }

    fn gateway(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn vsh(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vsh"))
            .arg("--gateway")
            .arg(self.gateway())
            .args(args)
            .env_remove("VIRTMESH_DEFAULT_URI")
            .env_remove("LIBVIRT_DEFAULT_URI")
            .stdin(Stdio::null())
            .output()
            .expect("running vsh")
    }

    fn vsh_ok(&self, args: &[&str]) -> String {
        let out = self.vsh(args);
        assert!(
            out.status.success(),
            "vsh {args:?} through the containers failed: {}\n--- logs ---\n{}",
            text(&out),
            text(&self.compose(&["logs", "--no-color"]))
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn down(&self) -> Output {
        self.compose(&["down", "--remove-orphans", "--timeout", "5"])
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- docker-compose logs of {} ---\n{}",
                self.name,
                text(&self.compose(&["logs", "--no-color"]))
            );
        }
        let out = self.down();
        if !out.status.success() {
            eprintln!(
                "docker-compose -p {} down failed ({}):\n{}",
                self.name,
                out.status,
                text(&out)
            );
        }
    }
}

fn domain_row<'a>(list: &'a str, name: &str) -> &'a str {
    list.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no row for domain {name} in:\n{list}"))
}

#[test]
fn gateway_and_test_service_in_containers() {
    if !docker_usable() {
        return;
    }
    let started = Instant::now();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    let project = Project {
        name: format!("virtmesh-e2e-{}", std::process::id()),
        port: free_port(),
        root,
    };

    // Static binaries (incremental) and the two images.
    let out = project
        .command("scripts/compose-build.sh")
        .arg("-p")
        .arg(&project.name)
        .output()
        .expect("running scripts/compose-build.sh");
    assert!(
        out.status.success(),
        "scripts/compose-build.sh failed ({}):\n{}",
        out.status,
        text(&out)
    );
    let built = started.elapsed();

    let up = Instant::now();
    project.compose_ok(&["up", "-d", "--no-build"]);

    // The published port accepts before the gateway listens; retry vsh until
    // a whole call goes through gateway and service.
    let list = loop {
        let out = project.vsh(&["list", "--all"]);
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            up.elapsed() < READY_TIMEOUT,
            "the gateway on {} did not answer within {READY_TIMEOUT:?}; last vsh: {}\n--- logs ---\n{}",
            project.gateway(),
            text(&out),
            text(&project.compose(&["logs", "--no-color"]))
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let ready = up.elapsed();
    assert!(
        domain_row(&list, "test").contains("running"),
        "domain test is not running:\n{list}"
    );
    assert_eq!(project.vsh_ok(&["uri"]).trim(), "test:///default");

    // Define, start and list through the containers: the state lives in the
    // test service and survives between vsh runs.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("vm.xml");
    std::fs::write(&file, DOMAIN_XML).expect("writing the domain XML");
    let file = file.to_str().expect("utf-8 temp path");
    let out = project.vsh_ok(&["define", file]);
    assert!(out.contains("Domain 'compose-vm' defined"), "{out}");
    let list = project.vsh_ok(&["list", "--all"]);
    assert!(
        domain_row(&list, "compose-vm").contains("shut off"),
        "{list}"
    );
    let out = project.vsh_ok(&["start", "compose-vm"]);
    assert!(out.contains("Domain 'compose-vm' started"), "{out}");
    let list = project.vsh_ok(&["list"]);
    assert!(
        domain_row(&list, "compose-vm").contains("running"),
        "{list}"
    );
    assert!(domain_row(&list, "test").contains("running"), "{list}");
    assert_eq!(
        project.vsh_ok(&["domstate", "compose-vm"]).trim(),
        "running"
    );

    // Both roles exit 0 on SIGTERM, promptly: a container that ignored it
    // would be killed after the grace period with status 137.
    let ids = project.compose_ok(&["ps", "-q"]);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    assert_eq!(ids.len(), 2, "expected two containers, got {ids:?}");
    let stop = Instant::now();
    project.compose_ok(&["stop", "--timeout", "5"]);
    let stopped = stop.elapsed();
    for id in &ids {
        let out = project
            .command("docker")
            .args(["inspect", "--format", "{{.Name}} {{.State.ExitCode}}", id])
            .output()
            .expect("running docker inspect");
        let state = text(&out);
        assert!(
            out.status.success() && state.trim().ends_with(" 0"),
            "container did not exit 0 on SIGTERM: {state}"
        );
    }
    assert!(
        stopped < Duration::from_secs(5),
        "stopping took {stopped:?}: SIGTERM did not stop the containers"
    );

    eprintln!(
        "compose e2e timings: build {built:.1?}, up to first vsh answer {ready:.1?}, \
         stop {stopped:.1?}, total {:.1?}",
        started.elapsed()
    );
}
