//! DESIGN.md §2: a service crate may depend on proto, conf, util and rpc,
//! and on nothing else of ours; no service depends on another service or on
//! the gateway.

use std::path::Path;

const ALLOWED: &[&str] = &[
    "virtmesh-proto",
    "virtmesh-conf",
    "virtmesh-util",
    "virtmesh-rpc",
];

fn deps_of(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).expect("reading manifest");
    let doc: toml::Table = text.parse().expect("parsing manifest");
    let mut out = Vec::new();
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(t) = doc.get(section).and_then(|v| v.as_table()) {
            out.extend(t.keys().cloned());
        }
    }
    out
}

#[test]
fn services_depend_only_on_shared_crates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("services")).expect("services dir") {
        let manifest = entry.expect("entry").path().join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        checked += 1;
        for dep in deps_of(&manifest) {
            if dep.starts_with("virtmesh") {
                assert!(
                    ALLOWED.contains(&dep.as_str()),
                    "{} depends on {dep}: services may only use {ALLOWED:?}",
                    manifest.display()
                );
            }
        }
    }
    assert!(checked > 0, "no service crates found");
}

#[test]
fn the_rule_catches_a_forbidden_dependency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("Cargo.toml");
    std::fs::write(
        &manifest,
        "[dependencies]\nvirtmesh-gateway = { path = \"x\" }\n",
    )
    .expect("write");
    let deps = deps_of(&manifest);
    assert!(
        deps.iter()
            .any(|d| d.starts_with("virtmesh") && !ALLOWED.contains(&d.as_str()))
    );
}
