//! The network driver against the libvirt 11.3.0 corpus (copied from
//! ../shared/conformance/network into tests/fixtures/network): generated
//! dnsmasq.conf, hostsfile and addnhosts for every case that has them,
//! the defined XML for every accepted input and libvirt's error for every
//! rejected one. Paths are generated with libvirt's own directories in
//! place of ours (the corpus README's rule 8), so files compare exactly.
//! Each family prints its pass rate; the dnsmasq one must stay >= 90%.

use std::path::{Path, PathBuf};
use virtmesh_network::def::{NetDef, fill_defaults};
use virtmesh_network::dnsmasq::{self, DnsmasqPaths};
use virtmesh_network::error::conf as conf_error;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/network");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

/// Rule 1: CRLF and trailing newlines do not count.
fn norm(s: &str) -> String {
    s.replace("\r\n", "\n").trim_end_matches('\n').to_owned()
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// Define the way the driver does: parse, then libvirt's defaults.
fn define(input: &str) -> Result<NetDef, virtmesh_rpc::VirtError> {
    let def = virtmesh_conf::network::NetworkDef::parse(input).map_err(conf_error)?;
    fill_defaults(def, &|_| false).map(NetDef::from_def)
}

fn report(what: &str, pass: usize, total: usize, failures: &[String]) -> f64 {
    let rate = if total == 0 {
        1.0
    } else {
        pass as f64 / total as f64
    };
    println!("{what}: {pass}/{total} ({:.1}%)", rate * 100.0);
    for f in failures {
        println!("  FAIL {f}");
    }
    rate
}

#[test]
fn dnsmasq_files_match_libvirt() {
    let (mut pass, mut total, mut failures) = (0, 0, Vec::new());
    for case in cases() {
        let Some(expected_conf) = read(&case.join("dnsmasq.conf")) else {
            continue;
        };
        total += 1;
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let input = read(&case.join("input.xml")).unwrap_or_default();
        let def = match define(&input) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{name}: define failed: {e}"));
                continue;
            }
        };
        let paths = DnsmasqPaths::new(
            Path::new("/var/lib/libvirt"),
            Path::new("/run/libvirt"),
            &def.name,
        );
        let mut ok = true;
        let mut check = |file: &str, got: String| {
            let want = read(&case.join(file));
            match want {
                Some(w) if norm(&w) == norm(&got) => {}
                Some(w) => {
                    ok = false;
                    failures.push(format!("{name}/{file}:\n--- want\n{w}\n--- got\n{got}"));
                }
                None => {}
            }
        };
        check("dnsmasq.conf", dnsmasq::conf(&def, &paths));
        check("dnsmasq.hostsfile", dnsmasq::hostsfile(&def));
        check("dnsmasq.addnhosts", dnsmasq::addnhosts(&def));
        let _ = &expected_conf;
        if ok {
            pass += 1;
        }
    }
    let rate = report("dnsmasq conformance", pass, total, &failures);
    assert!(
        total >= 20,
        "expected the corpus' started cases, found {total}"
    );
    assert!(rate >= 0.9, "dnsmasq conformance below 90%");
}

/// Rules 3 and 4: generated UUID and MAC become placeholders.
fn normalize_output(input: &str, xml: &str) -> String {
    let mut out = xml.to_owned();
    if !input.contains("<uuid>")
        && let (Some(a), Some(b)) = (out.find("<uuid>"), out.find("</uuid>"))
    {
        out.replace_range(a + 6..b, "@UUID@");
    }
    if !input.contains("<mac address")
        && let Some(a) = out.find("<mac address='52:54:00:")
    {
        let start = a + "<mac address='".len();
        out.replace_range(start..start + 17, "@MAC@");
    }
    out
}

#[test]
fn defined_xml_and_errors_match_libvirt() {
    let (mut pass, mut total, mut failures) = (0, 0, Vec::new());
    for case in cases() {
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let input = read(&case.join("input.xml")).unwrap_or_default();
        let got = define(&input);
        total += 1;
        match (
            read(&case.join("output.xml")),
            read(&case.join("error.txt")),
            got,
        ) {
            (Some(want), _, Ok(def)) => {
                let want = normalize_output(&input, &want);
                let got = normalize_output(&input, &def.to_xml());
                if norm(&want) == norm(&got) {
                    pass += 1;
                } else {
                    failures.push(format!("{name}:\n--- want\n{want}\n--- got\n{got}"));
                }
            }
            (None, Some(err), Err(e)) => {
                let mut lines = err.lines();
                let code = lines.next().unwrap_or_default();
                let msg: String = lines.collect::<Vec<_>>().join("\n");
                if code == e.code.name() && norm(&msg) == norm(&e.message) {
                    pass += 1;
                } else {
                    failures.push(format!(
                        "{name}: want {code} '{msg}', got {} '{}'",
                        e.code.name(),
                        e.message
                    ));
                }
            }
            (_, _, Ok(_)) => failures.push(format!("{name}: accepted, libvirt rejected it")),
            (_, _, Err(e)) => failures.push(format!("{name}: rejected ({e}), libvirt accepted it")),
        }
    }
    let rate = report("network XML conformance", pass, total, &failures);
    assert!(rate >= 0.9, "network XML conformance below 90%");
}
