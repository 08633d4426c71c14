//! The conformance corpus recorded from real libvirt 11.3.0
//! (tests/fixtures/conformance/README.md), run against the test driver:
//! define → GetXMLDesc(inactive) must equal libvirt's output byte for byte
//! after the corpus' normalisations, and rejected inputs must fail with
//! libvirt's error. Prints the pass rate per kind, and fails when a kind
//! falls below the floor it has reached (so regressions are caught).
//!
//! Kinds run here: domain-generic, network (through the test driver and
//! through the network driver), storage (pools, through the test driver),
//! secret, nwfilter. domain-qemu belongs to the qemu driver; the storage
//! driver runs the pool and volume cases in
//! services/storage/tests/conformance.rs.

mod common;

use std::path::{Path, PathBuf};
use tonic::transport::Channel;
use virtmesh_proto::v1 as pb;
use virtmesh_rpc::client::{ChannelOptions, channel};
use virtmesh_rpc::serve::{Listener, serve, standard_routes};
use virtmesh_rpc::{ListenAddr, VirtError};

/// Pass-rate floors (percent) this implementation has reached; raise them
/// as conformance improves.
const FLOORS: &[(&str, f64)] = &[
    ("domain-generic valid", 100.0),
    ("domain-generic invalid (code)", 100.0),
    ("network valid", 92.0),
    ("network invalid (code)", 100.0),
    ("network-driver valid", 100.0),
    ("network-driver invalid (code)", 100.0),
    ("storage-pool valid", 100.0),
    ("storage-pool invalid (code)", 100.0),
    ("secret valid", 100.0),
    ("secret invalid (code)", 100.0),
    ("nwfilter valid", 100.0),
    ("nwfilter invalid (code)", 100.0),
];

struct Case {
    name: String,
    dir: PathBuf,
}

impl Case {
    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(file)).ok()
    }
    fn setups(&self) -> Vec<String> {
        (1..)
            .map_while(|n| self.read(&format!("setup-{n}.xml")))
            .collect()
    }
}

fn cases(kind: &str) -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/conformance")
        .join(kind);
    let mut out: Vec<Case> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("input.xml").is_file())
        .map(|e| Case {
            name: e.file_name().to_string_lossy().into_owned(),
            dir: e.path(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Rule 1 and the per-kind rules 3–4 of the corpus README.
fn normalise(text: &str, input: &str) -> String {
    let mut s = text.replace("\r\n", "\n").trim_end_matches('\n').to_owned();
    if !input.contains("<uuid>") {
        s = replace_first_between(&s, "<uuid>", "</uuid>", "@UUID@");
    }
    if input.starts_with("<network")
        && !input.contains("<mac ")
        && let Some(start) = s.find("<mac address='")
    {
        let from = start + "<mac address='".len();
        if let Some(len) = s[from..].find('\'') {
            s.replace_range(from..from + len, "@MAC@");
        }
    }
    s
}

fn replace_first_between(s: &str, open: &str, close: &str, with: &str) -> String {
    match s.find(open) {
        Some(start) => {
            let from = start + open.len();
            match s[from..].find(close) {
                Some(len) => format!("{}{with}{}", &s[..from], &s[from + len..]),
                None => s.to_owned(),
            }
        }
        None => s.to_owned(),
    }
}

#[derive(Default)]
struct Tally {
    /// Every document we emitted, for the schema check: (case, xml).
    emitted: Vec<(String, String)>,
    valid: usize,
    valid_pass: usize,
    invalid: usize,
    invalid_code: usize,
    invalid_exact: usize,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, case: &Case, outcome: Result<String, VirtError>, input: &str) {
        match (case.read("output.xml"), case.read("error.txt")) {
            (Some(expected), _) => {
                self.valid += 1;
                if let Ok(got) = &outcome {
                    self.emitted.push((case.name.clone(), got.clone()));
                }
                match outcome {
                    Ok(got) if normalise(&got, input) == normalise(&expected, input) => {
                        self.valid_pass += 1
                    }
                    Ok(_) => self.failures.push(format!("{}: output differs", case.name)),
                    Err(e) => self.failures.push(format!(
                        "{}: rejected: {} {}",
                        case.name,
                        e.code.name(),
                        e.message
                    )),
                }
            }
            (None, Some(error)) => {
                self.invalid += 1;
                let mut lines = error.splitn(2, '\n');
                let code = lines.next().unwrap_or_default().trim();
                let message = lines.next().unwrap_or_default().trim_end();
                match outcome {
                    Ok(_) => self
                        .failures
                        .push(format!("{}: accepted, libvirt says {code}", case.name)),
                    Err(e) => {
                        if e.code.name() == code {
                            self.invalid_code += 1;
                            if e.message.trim_end() == message {
                                self.invalid_exact += 1;
                            }
                        } else {
                            self.failures.push(format!(
                                "{}: {} instead of {code}",
                                case.name,
                                e.code.name()
                            ));
                        }
                    }
                }
            }
            (None, None) => {}
        }
    }

    fn report(
        &self,
        kind: &str,
        rates: &mut Vec<(String, f64)>,
        schemas: &mut Vec<(String, Vec<(String, String)>)>,
    ) {
        schemas.push((kind.to_owned(), self.emitted.clone()));
        let pct = |a: usize, b: usize| {
            if b == 0 {
                100.0
            } else {
                a as f64 * 100.0 / b as f64
            }
        };
        println!(
            "conformance {kind:<16} valid {:>3}/{:<3} ({:5.1}%)   invalid: code {:>3}/{:<3} ({:5.1}%), exact message {:>3} ({:5.1}%)",
            self.valid_pass,
            self.valid,
            pct(self.valid_pass, self.valid),
            self.invalid_code,
            self.invalid,
            pct(self.invalid_code, self.invalid),
            self.invalid_exact,
            pct(self.invalid_exact, self.invalid),
        );
        if std::env::var("CONFORMANCE_VERBOSE").is_ok() {
            for f in &self.failures {
                println!("    {f}");
            }
        }
        rates.push((format!("{kind} valid"), pct(self.valid_pass, self.valid)));
        rates.push((
            format!("{kind} invalid (code)"),
            pct(self.invalid_code, self.invalid),
        ));
    }
}

fn status(e: tonic::Status) -> VirtError {
    VirtError::from_status(&e)
}

fn define(xml: &str) -> pb::DefineXmlRequest {
    pb::DefineXmlRequest {
        xml: xml.to_owned(),
        validate: false,
    }
}

fn uuid_ref(uuid: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        key: Some(pb::object_ref::Key::Uuid(uuid.to_owned())),
    }
}

fn xml_req(uuid: &str) -> pb::GetXmlDescRequest {
    pb::GetXmlDescRequest {
        object: Some(uuid_ref(uuid)),
        inactive: true,
        ..Default::default()
    }
}

async fn run_domains(ch: Channel, tally: &mut Tally) {
    let mut c = pb::domain_client::DomainClient::new(ch);
    for case in cases("domain-generic") {
        let Some(input) = case.read("input.xml") else {
            continue;
        };
        let outcome = match c.define_xml(define(&input)).await {
            Ok(d) => {
                let uuid = d.into_inner().uuid;
                let xml = c
                    .get_xml_desc(xml_req(&uuid))
                    .await
                    .map(|x| x.into_inner().xml)
                    .map_err(status);
                let _ = c
                    .undefine(pb::UndefineRequest {
                        domain: Some(uuid_ref(&uuid)),
                        ..Default::default()
                    })
                    .await;
                xml
            }
            Err(e) => Err(status(e)),
        };
        tally.record(&case, outcome, &input);
    }
}

async fn run_networks(ch: Channel, tally: &mut Tally) {
    let mut c = pb::network_client::NetworkClient::new(ch);
    for case in cases("network") {
        let Some(input) = case.read("input.xml") else {
            continue;
        };
        let outcome = match c.define_xml(define(&input)).await {
            Ok(n) => {
                let uuid = n.into_inner().uuid;
                let xml = c
                    .get_xml_desc(xml_req(&uuid))
                    .await
                    .map(|x| x.into_inner().xml)
                    .map_err(status);
                let _ = c.undefine(uuid_ref(&uuid)).await;
                xml
            }
            Err(e) => Err(status(e)),
        };
        tally.record(&case, outcome, &input);
    }
}

/// The corpus' network outputs were recorded with libvirt's network driver
/// (qemu:///system), which gives a network with a bridge of its own a
/// random bridge MAC (virNetworkSetBridgeMacAddr from bridge_driver.c's
/// networkValidate; the corpus README's rule 4 masks it as @MAC@). libvirt's
/// test driver never adds one, nor does ours, so the test-driver line
/// misses exactly the cases whose input has no <mac>. Run the same cases
/// through our real network driver too (state in a temporary directory;
/// defining creates nothing on the host).
async fn run_networks_network_driver(tally: &mut Tally) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = virtmesh_network::NetworkConfig {
        state_dir: dir.path().join("state"),
        run_dir: dir.path().join("run"),
    };
    let driver = virtmesh_network::NetworkDriver::new(cfg)
        .await
        .expect("network driver");
    let routes = standard_routes(virtmesh_network::routes(driver), virtmesh_network::SERVED)
        .await
        .expect("routes");
    let addr = ListenAddr::Unix(dir.path().join("network.sock"));
    let listener = Listener::bind(&addr).await.expect("bind");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(routes, listener, async {
        let _ = stop_rx.await;
    }));
    run_networks(channel(&addr, &ChannelOptions::default()), tally).await;
    let _ = stop_tx.send(());
    let _ = server.await;
}

/// Storage cases whose outcome depends on the storage backends installed
/// on the recording host (corpus README): left out of the rates.
const HOST_DEPENDENT_POOLS: &[&str] =
    &["pool-gluster", "pool-rbd", "pool-zfs", "pool-iscsi-direct"];

/// The corpus recorded pools on libvirt's storage driver, never started
/// (sizes 0); libvirt's test driver gives every pool 100 GiB.  The sizes
/// are driver state, not XML: read them as 0 so the comparison measures
/// the pool model.
fn zero_pool_sizes(xml: &str) -> String {
    xml.lines()
        .map(|l| {
            for tag in ["capacity", "allocation", "available"] {
                let open = format!("  <{tag} unit='bytes'>");
                if l.starts_with(&open) && l.ends_with(&format!("</{tag}>")) {
                    return format!("{open}0</{tag}>");
                }
            }
            l.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

async fn run_pools(ch: Channel, tally: &mut Tally) {
    let mut c = pb::storage_pool_client::StoragePoolClient::new(ch);
    for case in cases("storage")
        .into_iter()
        .filter(|c| !c.name.starts_with("vol-") && !c.name.starts_with("inv-vol"))
    {
        let Some(input) = case.read("input.xml") else {
            continue;
        };
        let outcome = match c.define_xml(define(&input)).await {
            Ok(p) => {
                let uuid = p.into_inner().uuid;
                let xml = c
                    .get_xml_desc(xml_req(&uuid))
                    .await
                    .map(|x| zero_pool_sizes(&x.into_inner().xml))
                    .map_err(status);
                let _ = c.undefine(uuid_ref(&uuid)).await;
                xml
            }
            Err(e) => Err(status(e)),
        };
        if HOST_DEPENDENT_POOLS.contains(&case.name.as_str()) {
            let got = match &outcome {
                Ok(_) => "defined".to_owned(),
                Err(e) => e.code.name().to_owned(),
            };
            println!("    (host-dependent, not counted) {}: {got}", case.name);
            continue;
        }
        tally.record(&case, outcome, &input);
    }
}

async fn run_secrets(ch: Channel, tally: &mut Tally) {
    let mut c = pb::secret_client::SecretClient::new(ch);
    let by_uuid = |u: &str| pb::SecretRef {
        key: Some(pb::secret_ref::Key::Uuid(u.to_owned())),
    };
    for case in cases("secret") {
        let Some(input) = case.read("input.xml") else {
            continue;
        };
        let mut created = Vec::new();
        for setup in case.setups() {
            if let Ok(s) = c.define_xml(define(&setup)).await {
                created.push(s.into_inner().uuid);
            }
        }
        let outcome = match c.define_xml(define(&input)).await {
            Ok(s) => {
                let uuid = s.into_inner().uuid;
                created.push(uuid.clone());
                c.get_xml_desc(by_uuid(&uuid))
                    .await
                    .map(|x| x.into_inner().xml)
                    .map_err(status)
            }
            Err(e) => Err(status(e)),
        };
        for uuid in created {
            let _ = c.undefine(by_uuid(&uuid)).await;
        }
        tally.record(&case, outcome, &input);
    }
}

async fn run_nwfilters(ch: Channel, tally: &mut Tally) {
    let mut c = pb::nw_filter_client::NwFilterClient::new(ch);
    for case in cases("nwfilter") {
        let Some(input) = case.read("input.xml") else {
            continue;
        };
        let mut created = Vec::new();
        for setup in case.setups() {
            if let Ok(f) = c.define_xml(define(&setup)).await {
                created.push(f.into_inner().uuid);
            }
        }
        let outcome = match c.define_xml(define(&input)).await {
            Ok(f) => {
                let uuid = f.into_inner().uuid;
                created.push(uuid.clone());
                c.get_xml_desc(uuid_ref(&uuid))
                    .await
                    .map(|x| x.into_inner().xml)
                    .map_err(status)
            }
            Err(e) => Err(status(e)),
        };
        // Filters referring to others go first.
        for uuid in created.iter().rev() {
            let _ = c.undefine(uuid_ref(uuid)).await;
        }
        tally.record(&case, outcome, &input);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn libvirt_conformance_corpus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = ListenAddr::Unix(dir.path().join("test.sock"));
    let routes = virtmesh_test_driver::routes(virtmesh_test_driver::TestDriver::new());
    let routes = standard_routes(routes, virtmesh_test_driver::SERVED)
        .await
        .expect("routes");
    let listener = Listener::bind(&addr).await.expect("bind");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(routes, listener, async {
        let _ = stop_rx.await;
    }));
    let ch = channel(&addr, &ChannelOptions::default());

    let mut rates = Vec::new();
    let mut emitted = Vec::new();
    let mut t = Tally::default();
    run_domains(ch.clone(), &mut t).await;
    t.report("domain-generic", &mut rates, &mut emitted);
    let mut t = Tally::default();
    run_networks(ch.clone(), &mut t).await;
    t.report("network", &mut rates, &mut emitted);
    let mut t = Tally::default();
    run_networks_network_driver(&mut t).await;
    t.report("network-driver", &mut rates, &mut emitted);
    println!(
        "  (network: the test driver; network-driver: the network driver, which recorded the corpus and adds a bridge MAC)"
    );
    let mut t = Tally::default();
    run_pools(ch.clone(), &mut t).await;
    t.report("storage-pool", &mut rates, &mut emitted);
    let mut t = Tally::default();
    run_secrets(ch.clone(), &mut t).await;
    t.report("secret", &mut rates, &mut emitted);
    let mut t = Tally::default();
    run_nwfilters(ch.clone(), &mut t).await;
    t.report("nwfilter", &mut rates, &mut emitted);

    let _ = stop_tx.send(());
    let _ = server.await;
    check_schemas(&emitted);
    for (what, floor) in FLOORS {
        let rate = rates
            .iter()
            .find(|(w, _)| w == what)
            .map(|(_, r)| *r)
            .unwrap_or(0.0);
        assert!(
            rate >= *floor,
            "{what}: pass rate {rate:.1}% fell below its floor {floor}%"
        );
    }
}

/// libvirt's RelaxNG schema for each kind (Debian's libvirt-common).
const SCHEMA_DIR: &str = "/usr/share/libvirt/schemas";

fn schema_for(kind: &str) -> &'static str {
    match kind {
        "domain-generic" => "domain.rng",
        "network" | "network-driver" => "network.rng",
        "storage-pool" => "storagepool.rng",
        "secret" => "secret.rng",
        _ => "nwfilter.rng",
    }
}

/// Cases whose libvirt output does not validate either (corpus README:
/// libvirt emits `<refresh>`, which storagepool.rng does not allow).
const LIBVIRT_OWN_SCHEMA_FAILURES: &[&str] = &["pool-refresh-volume-allocation"];

/// Every document we emitted must validate against libvirt's schema, as
/// libvirt's own outputs do. The validator is jing (one JVM per kind):
/// libxml2's RelaxNG (xmllint) backtracks for longer than 17 minutes on
/// some nwfilter documents (the corpus README), jing takes a second.
fn check_schemas(emitted: &[(String, Vec<(String, String)>)]) {
    let have =
        common::which("jing").is_some() && Path::new(SCHEMA_DIR).join("domain.rng").is_file();
    if !common::require(
        "jing and libvirt's RelaxNG schemas (scripts/install-host-deps.sh)",
        have,
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut invalid = Vec::new();
    for (kind, docs) in emitted {
        let schema = Path::new(SCHEMA_DIR).join(schema_for(kind));
        let files: Vec<std::path::PathBuf> = docs
            .iter()
            .map(|(case, xml)| {
                let file = dir.path().join(format!("{kind}-{case}.xml"));
                std::fs::write(&file, xml).expect("write");
                file
            })
            .collect();
        let out = std::process::Command::new("jing")
            .arg(&schema)
            .args(&files)
            .output()
            .expect("jing");
        // jing names each offending file at the start of its error lines.
        let report = String::from_utf8_lossy(&out.stdout);
        let (mut ok, mut libvirts_own) = (0, 0);
        for ((case, _), file) in docs.iter().zip(&files) {
            let prefix = format!("{}:", file.display());
            match report.lines().find(|l| l.starts_with(&prefix)) {
                None => ok += 1,
                Some(_) if LIBVIRT_OWN_SCHEMA_FAILURES.contains(&case.as_str()) => {
                    libvirts_own += 1
                }
                Some(line) => invalid.push(format!("{kind}/{case}: {line}")),
            }
        }
        assert!(
            out.status.success() || ok + libvirts_own < docs.len() || libvirts_own > 0,
            "jing failed without naming a document: {report}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "schema {kind:<16} {ok}/{} emitted documents validate against {} ({libvirts_own} that libvirt's own output fails too)",
            docs.len(),
            schema_for(kind)
        );
    }
    assert!(
        invalid.is_empty(),
        "documents that fail libvirt's schema:\n{}",
        invalid.join("\n")
    );
}
