//! `virtmesh up` from its embedded default config: every role a process of
//! its own, all gone after SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn up_starts_the_mesh_and_stops_it_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_virtmesh"))
        .args(["up", "--listen", &listen])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning virtmesh up");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        let done = line.contains("virtmesh is up");
        seen.push(line);
        if done {
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|l| l == &format!("gateway: listening on {listen}")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.starts_with("test: listening on ")),
        "{seen:?}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_vsh"))
        .args(["--gateway", &listen, "list", "--all"])
        .output()
        .expect("vsh");
    assert!(String::from_utf8_lossy(&out.stdout).contains("running"));

    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    // The gateway is gone with it.
    assert!(std::net::TcpStream::connect(&listen).is_err());
}
