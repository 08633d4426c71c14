//! `virsh domcapabilities` against libvirt 11.3's own: our document for
//! kvm/q35 and kvm/pc, from the real QEMU of this machine, compared line
//! by line (longest common subsequence) with the reference recorded from
//! libvirt 11.3 + QEMU 10.0.2 (tests/fixtures/conformance/reference).
//! Prints how many reference lines we reproduce and the differing lines
//! (`DOMCAPS_DIFF=1` prints them all); the floors below fail the test if
//! the match drops. The recording host was an Intel Xeon: the custom CPU
//! models' usability depends on the host CPU, so on another CPU those
//! lines differ legitimately. Also printed, for information: the
//! comparison with real libvirt recorded on an AMD development machine
//! (tests/fixtures/domcaps-live), or with `DOMCAPS_LIVE_DIR=DIR`'s
//! `q35.xml`, `pc.xml`, `capabilities.xml` recorded on THIS machine
//! (`virsh domcapabilities --virttype kvm --machine q35 > q35.xml`).
//!
//! Needs QEMU and /dev/kvm; skips saying why otherwise, and fails under
//! VIRTMESH_REQUIRE_HOST=1.

use std::path::{Path, PathBuf};
use virtmesh_qemu::domcaps::{self, HostFacts, Request};
use virtmesh_qemu::probe::{self, QemuCaps};

const EMULATOR: &str = "/usr/bin/qemu-system-x86_64";

/// Reference lines outside the custom CPU models (whose usability depends
/// on the host CPU) that we reproduce, per machine. What is left: the
/// host-model CPU (needs libvirt's CPU map; ~47 lines) and the TPM
/// emulator backend when swtpm is not installed here (6 lines).
const FLOOR_OUTSIDE_CUSTOM: usize = 190;

fn skip(why: &str) -> bool {
    if std::env::var("VIRTMESH_REQUIRE_HOST").as_deref() == Ok("1") {
        panic!("VIRTMESH_REQUIRE_HOST=1 but {why}");
    }
    eprintln!("SKIP: {why}");
    false
}

fn host_ready() -> bool {
    if !Path::new(EMULATOR).exists() {
        return skip("qemu-system-x86_64 is not installed (scripts/install-host-deps.sh)");
    }
    if !Path::new("/dev/kvm").exists() {
        return skip("/dev/kvm is absent (the references are kvm documents)");
    }
    true
}

fn reference(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/conformance/reference")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Lines of `want` that `got` reproduces in order (LCS), and the lines
/// only in one of them (`-` want, `+` got).
fn compare(want: &str, got: &str) -> (usize, Vec<String>) {
    let a: Vec<&str> = want.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut t = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[at(i, j)] = if a[i] == b[j] {
                t[at(i + 1, j + 1)] + 1
            } else {
                t[at(i + 1, j)].max(t[at(i, j + 1)])
            };
        }
    }
    let (mut i, mut j, mut diff) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < m && (i == n || t[at(i, j + 1)] >= t[at(i + 1, j)]) {
            diff.push(format!("+{:5} {}", j + 1, b[j]));
            j += 1;
        } else {
            diff.push(format!("-{:5} {}", i + 1, a[i]));
            i += 1;
        }
    }
    (t[at(0, 0)] as usize, diff)
}

fn ours(caps: &QemuCaps, host: &HostFacts, machine: &str) -> String {
    let req = Request {
        virttype: "kvm".into(),
        machine: machine.into(),
        ..Request::default()
    };
    let (_, arch) = domcaps::pick_emulator(&req, Path::new(EMULATOR)).expect("emulator");
    let r = domcaps::resolve(&req, &arch, caps).expect("resolves");
    domcaps::format(caps, &r, host)
}

fn report(label: &str, want: &str, got: &str) -> usize {
    let (same, diff) = compare(want, got);
    println!(
        "{label}: {same}/{} reference lines reproduced ({} lines ours), {} differing lines",
        want.lines().count(),
        got.lines().count(),
        diff.len()
    );
    let all = std::env::var("DOMCAPS_DIFF").is_ok();
    for d in diff.iter().take(if all { usize::MAX } else { 40 }) {
        println!("  {d}");
    }
    same
}

/// Recordings of real libvirt on a development machine (information
/// only: they depend on that machine's CPU and memory).
fn live_dir() -> PathBuf {
    std::env::var_os("DOMCAPS_LIVE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/domcaps-live")
        })
}

/// The document without the lines inside `<mode name='custom'>`.
fn outside_custom(doc: &str) -> String {
    let mut inside = false;
    let mut out = String::new();
    for l in doc.lines() {
        if l.trim_start().starts_with("<mode name='custom'") {
            inside = true;
        }
        if !inside {
            out.push_str(l);
            out.push('\n');
        }
        if inside && l.trim() == "</mode>" {
            inside = false;
        }
    }
    out
}

#[tokio::test]
async fn domcapabilities_match_libvirt() {
    if !host_ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let caps = probe::probe(Path::new(EMULATOR), dir.path())
        .await
        .expect("probe");
    let host = HostFacts::detect();
    for (machine, file, canonical) in [
        ("q35", "qemu-domcapabilities-kvm-q35.xml", "pc-q35-10.0"),
        ("pc", "qemu-domcapabilities-kvm-pc.xml", "pc-i440fx-10.0"),
    ] {
        let got = ours(&caps, &host, machine);
        assert!(
            got.contains(&format!("<machine>{canonical}</machine>")),
            "{got}"
        );
        assert!(got.contains("<domain>kvm</domain>"));
        let want = reference(file);
        report(&format!("kvm/{machine} vs reference"), &want, &got);
        let same = report(
            &format!("kvm/{machine} vs reference, outside the custom CPU models"),
            &outside_custom(&want),
            &outside_custom(&got),
        );
        {
            let p = live_dir().join(format!("{machine}.xml"));
            match std::fs::read_to_string(&p) {
                Ok(want) => {
                    report(&format!("kvm/{machine} vs live libvirt"), &want, &got);
                }
                Err(e) => println!("{}: {e}", p.display()),
            }
        }
        assert!(
            same >= FLOOR_OUTSIDE_CUSTOM,
            "kvm/{machine}: {same} lines outside the custom CPU models match, floor {FLOOR_OUTSIDE_CUSTOM}"
        );
    }
}

#[tokio::test]
async fn bad_arguments_get_libvirts_errors() {
    if !host_ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let caps = probe::probe(Path::new(EMULATOR), dir.path())
        .await
        .expect("probe");
    let err = |req: Request| {
        let (_, arch) = domcaps::pick_emulator(&req, Path::new(EMULATOR))?;
        domcaps::resolve(&req, &arch, &caps).map(|_| ())
    };
    let msg = |req: Request| err(req).expect_err("rejected").message;
    assert_eq!(
        msg(Request {
            machine: "bogus".into(),
            ..Request::default()
        }),
        "invalid argument: the machine 'bogus' is not supported by emulator '/usr/bin/qemu-system-x86_64'"
    );
    assert_eq!(
        msg(Request {
            machine: "none".into(),
            ..Request::default()
        }),
        "invalid argument: the machine 'none' is not supported by emulator '/usr/bin/qemu-system-x86_64'"
    );
    assert_eq!(
        msg(Request {
            virttype: "xen".into(),
            ..Request::default()
        }),
        "invalid argument: Emulator '/usr/bin/qemu-system-x86_64' does not support virt type 'xen'"
    );
    assert_eq!(
        msg(Request {
            emulator: EMULATOR.into(),
            arch: "aarch64".into(),
            ..Request::default()
        }),
        "invalid argument: architecture from emulator 'x86_64' doesn't match given architecture 'aarch64'"
    );
    // The default machine and domain type, as virsh domcapabilities
    // without arguments.
    let req = Request::default();
    let (_, arch) = domcaps::pick_emulator(&req, Path::new(EMULATOR)).expect("emulator");
    let r = domcaps::resolve(&req, &arch, &caps).expect("defaults");
    assert_eq!(r.machine.name, "pc-i440fx-10.0");
    assert_eq!(r.virttype, "kvm");
}

/// Reference lines of `virsh capabilities` we reproduce; see
/// host.rs `capabilities_xml` for what is left out and why.
const FLOOR_CAPABILITIES: usize = 200;

#[tokio::test]
async fn capabilities_match_libvirt() {
    if !host_ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let caps = probe::probe(Path::new(EMULATOR), dir.path())
        .await
        .expect("probe");
    let i386 = Path::new("/usr/bin/qemu-system-i386");
    let caps32 = if i386.exists() {
        Some(probe::probe(i386, dir.path()).await.expect("probe i386"))
    } else {
        None
    };
    let mut guests: Vec<(&str, &QemuCaps)> = Vec::new();
    if let Some(c) = &caps32 {
        guests.push(("i686", c));
    }
    guests.push(("x86_64", &caps));
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let (cpuinfo, meminfo) = (read("/proc/cpuinfo"), read("/proc/meminfo"));
    let node = virtmesh_qemu::connect::node_info(&cpuinfo, &meminfo, 1);
    let host = virtmesh_qemu::host::host_xml(
        &virtmesh_qemu::host::host_uuid(),
        &cpuinfo,
        &meminfo,
        &node,
        Path::new("/sys"),
    );
    let got = virtmesh_qemu::host::capabilities_xml(&guests, host);
    assert!(got.contains("<machine canonical='pc-q35-10.0' maxCpus='4096'>q35</machine>"));
    let same = report(
        "capabilities vs reference",
        &reference("qemu-capabilities.xml"),
        &got,
    );
    {
        let p = live_dir().join("capabilities.xml");
        if let Ok(want) = std::fs::read_to_string(&p) {
            report("capabilities vs live libvirt", &want, &got);
        }
    }
    assert!(
        same >= FLOOR_CAPABILITIES,
        "{same} capabilities lines match, floor {FLOOR_CAPABILITIES}"
    );
}
