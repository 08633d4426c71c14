//! The real grpcurl binary against the gateway alone: reflection must show
//! every public service without any .proto file.

mod common;

use common::{Mesh, grpcurl, require};
use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let bin = grpcurl().expect("grpcurl present");
    let out = Command::new(bin)
        .args(args)
        .output()
        .expect("running grpcurl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn grpcurl_lists_describes_and_calls_through_the_gateway() {
    if !require("grpcurl", grpcurl().is_some()) {
        return;
    }
    let mesh = Mesh::start();
    let gw = mesh.gateway.addr.as_str();

    let (ok, services, err) = run(&["-plaintext", gw, "list"]);
    assert!(ok, "{err}");
    for name in virtmesh_proto::SERVICE_NAMES {
        assert!(
            services.lines().any(|l| l == *name),
            "{name} not listed:\n{services}"
        );
    }
    assert!(services.contains("grpc.health.v1.Health"), "{services}");

    let (ok, desc, err) = run(&["-plaintext", gw, "describe", "virtmesh.v1.Domain"]);
    assert!(ok, "{err}");
    assert!(desc.contains("rpc DefineXML"), "{desc}");
    assert!(desc.contains("rpc List"), "{desc}");

    let (ok, out, err) = run(&["-plaintext", "-d", "{}", gw, "virtmesh.v1.Domain/List"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"name\": \"test\""), "{out}");
    assert!(out.contains("DOMAIN_STATE_RUNNING"), "{out}");

    let (ok, out, err) = run(&["-plaintext", gw, "grpc.health.v1.Health/Check"]);
    assert!(ok, "{err}");
    assert!(out.contains("SERVING"), "{out}");

    // Errors carry libvirt's name in google.rpc.ErrorInfo, decoded by grpcurl.
    let (ok, _out, err) = run(&[
        "-plaintext",
        "-d",
        r#"{"name": "nosuch"}"#,
        gw,
        "virtmesh.v1.Domain/Lookup",
    ]);
    assert!(!ok);
    assert!(err.contains("NotFound"), "{err}");
    assert!(err.contains("VIR_ERR_NO_DOMAIN"), "{err}");
    assert!(
        err.contains("no domain with matching name 'nosuch'"),
        "{err}"
    );
}
