//! A Python client generated from proto/ by grpcio-tools drives the mesh.

mod common;

use common::{Mesh, require, tools_dir};
use std::path::{Path, PathBuf};
use std::process::Command;

fn python_with_grpc() -> Option<(PathBuf, Option<PathBuf>)> {
    // scripts/install-test-tools.sh installs grpcio and grpcio-tools into target/tools/py.
    let local = tools_dir().join("py");
    let site = local.is_dir().then_some(local);
    let mut probe = Command::new("python3");
    probe.args(["-c", "import grpc, grpc_tools"]);
    if let Some(s) = &site {
        probe.env("PYTHONPATH", s);
    }
    match probe.output() {
        Ok(o) if o.status.success() => Some((PathBuf::from("python3"), site)),
        _ => None,
    }
}

#[test]
fn python_stubs_define_start_and_list() {
    let Some((python, site)) = python_with_grpc() else {
        require("python3 with grpcio and grpcio-tools", false);
        return;
    };
    let mesh = Mesh::start();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stubs = mesh.dir.path().join("stubs");
    std::fs::create_dir_all(&stubs).expect("stubs dir");
    let protos: Vec<PathBuf> = std::fs::read_dir(root.join("proto/virtmesh/v1"))
        .expect("proto dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    let mut protoc = Command::new(&python);
    protoc
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(root.join("proto"))
        .arg(format!("--python_out={}", stubs.display()))
        .arg(format!("--grpc_python_out={}", stubs.display()))
        .args(&protos);
    if let Some(s) = &site {
        protoc.env("PYTHONPATH", s);
    }
    let out = protoc.output().expect("running grpc_tools.protoc");
    assert!(
        out.status.success(),
        "protoc: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut client = Command::new(&python);
    client
        .arg(root.join("tests/python/client.py"))
        .arg(&mesh.gateway.addr)
        .arg(&stubs);
    if let Some(s) = &site {
        client.env("PYTHONPATH", s);
    }
    let out = client.output().expect("running the python client");
    assert!(
        out.status.success(),
        "python client failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python client ok"));
}
