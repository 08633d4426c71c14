//! Real QEMU through the qemu service, in process: the service is served on
//! a unix socket in a temporary directory and driven with the generated
//! gRPC clients. Needs /dev/kvm and qemu-system-x86_64; without them the
//! tests say why and pass, unless VIRTMESH_REQUIRE_HOST=1 (CI), where a
//! missing host feature is a failure. Every QEMU a test starts is killed
//! when the test ends, pass or fail (see `Host`'s Drop).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use virtmesh_proto::v1::{
    self as pb, DomainEventType, DomainState, domain_client::DomainClient, event::Kind,
    events_client::EventsClient, object_ref::Key,
};
use virtmesh_qemu::{QemuConfig, QemuDriver};
use virtmesh_rpc::serve::{Listener, serve};
use virtmesh_rpc::{ErrorCode, ErrorDomain, ListenAddr, VirtError};

const EMULATOR: &str = "/usr/bin/qemu-system-x86_64";

/// Whether this host can run the tests; prints why not, and panics when
/// the environment demands a capable host.
fn host_ready() -> bool {
    let mut missing = Vec::new();
    if !Path::new("/dev/kvm").exists() {
        missing.push("/dev/kvm is absent");
    }
    if !Path::new(EMULATOR).exists() {
        missing.push("qemu-system-x86_64 is not installed (scripts/install-host-deps.sh)");
    }
    if missing.is_empty() {
        return true;
    }
    let why = missing.join("; ");
    if std::env::var("VIRTMESH_REQUIRE_HOST").as_deref() == Ok("1") {
        panic!("VIRTMESH_REQUIRE_HOST=1 but {why}");
    }
    eprintln!("skipping: {why}");
    false
}

/// A temporary state and run directory; on drop, SIGKILL every process
/// whose command line mentions the run directory (our QEMUs, whatever
/// state the test left them in).
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        Host {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn config(&self) -> QemuConfig {
        QemuConfig {
            state_dir: self.dir.path().join("state"),
            run_dir: self.dir.path().join("run"),
            emulator: PathBuf::from(EMULATOR),
            network: None,
        }
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// Pids of live processes whose command line mentions our run dir.
    fn our_qemus(&self) -> Vec<i32> {
        let marker = self.run_dir().display().to_string();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| {
                        s.rfind(')')
                            .and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st != "Z"))
                    })
                    .unwrap_or(false);
                alive
                    && std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).contains(&marker))
                        .unwrap_or(false)
            })
            .collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for pid in self.our_qemus() {
            eprintln!("cleanup: killing leftover QEMU {pid}");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The service on a unix socket, stopped (and its driver dropped) by
/// `stop`.
struct Service {
    channel: Channel,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Service {
    async fn start(host: &Host, name: &str) -> Service {
        let driver = QemuDriver::new(host.config()).await.expect("driver");
        let sock = host.dir.path().join(format!("{name}.sock"));
        let addr = ListenAddr::Unix(sock);
        let listener = Listener::bind(&addr).await.expect("bind");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let routes = virtmesh_qemu::routes(driver);
        let task = tokio::spawn(async move {
            serve(routes, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
        });
        let channel = virtmesh_rpc::client::channel(&addr, &Default::default());
        Service {
            channel,
            stop: Some(tx),
            task: Some(task),
        }
    }

    fn domains(&self) -> DomainClient<Channel> {
        DomainClient::new(self.channel.clone())
    }

    /// Stop serving; with the server gone the driver is dropped, which
    /// closes its QMP connections (the guests keep running).
    /// Clients must be dropped first: a graceful shutdown waits for open
    /// connections.
    async fn stop(self) {
        let Service {
            channel,
            stop,
            task,
        } = self;
        drop(channel);
        if let Some(tx) = stop {
            let _ = tx.send(());
        }
        if let Some(task) = task {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server stops once its clients are gone")
                .expect("server task");
        }
    }
}

fn by_name(name: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        key: Some(Key::Name(name.to_owned())),
    }
}

fn guest_xml(name: &str, virt: &str) -> String {
    format!(
        "<domain type='{virt}'>\n  <name>{name}</name>\n  <memory unit='MiB'>128</memory>\n  <vcpu>1</vcpu>\n  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n  </os>\n</domain>\n"
    )
}

async fn state_of(c: &mut DomainClient<Channel>, name: &str) -> (DomainState, String) {
    let st = c
        .get_state(by_name(name))
        .await
        .expect("get_state")
        .into_inner();
    (
        DomainState::try_from(st.state).expect("known state"),
        st.reason_name,
    )
}

fn libvirt_error(status: &tonic::Status) -> VirtError {
    VirtError::from_status(status)
}

/// Lifecycle events on `stream` until `n` arrived, as (type, detail name).
async fn next_events(
    stream: &mut tonic::Streaming<pb::Event>,
    n: usize,
) -> Vec<(DomainEventType, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("event");
        if let Some(Kind::DomainLifecycle(l)) = ev.kind {
            out.push((
                DomainEventType::try_from(l.r#type).expect("known type"),
                l.detail_name,
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kvm_guest_define_start_suspend_resume_destroy_undefine() {
    if !host_ready() {
        return;
    }
    let host = Host::new();
    let svc = Service::start(&host, "svc").await;
    let mut c = svc.domains();
    let mut events = EventsClient::new(svc.channel.clone())
        .watch(pb::WatchRequest {
            families: vec![],
            object_uuid: String::new(),
            object_name: "lc1".into(),
        })
        .await
        .expect("watch")
        .into_inner();

    let xml = guest_xml("lc1", "kvm");
    let defined = c
        .define_xml(pb::DefineXmlRequest {
            xml,
            validate: false,
        })
        .await
        .expect("define")
        .into_inner();
    assert_eq!(defined.name, "lc1");
    assert_eq!(defined.id, -1);
    assert!(defined.persistent);
    assert_eq!(defined.state, DomainState::Shutoff as i32);
    assert!(host.config().state_dir.join("lc1.xml").exists());
    let desc = c
        .get_xml_desc(pb::GetXmlDescRequest {
            object: Some(by_name("lc1")),
            ..Default::default()
        })
        .await
        .expect("xml")
        .into_inner()
        .xml;
    assert!(desc.contains("machine='pc-q35-10.0'"), "{desc}");
    assert!(desc.contains("<uuid>"), "{desc}");

    let t = Instant::now();
    let started = c
        .create(pb::CreateRequest {
            domain: Some(by_name("lc1")),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner();
    let start_latency = t.elapsed();
    assert!(started.id > 0);
    assert_eq!(started.state, DomainState::Running as i32);
    assert_eq!(
        state_of(&mut c, "lc1").await,
        (DomainState::Running, "booted".into())
    );
    assert_eq!(host.our_qemus().len(), 1, "one QEMU runs");

    // Starting again is libvirt's OPERATION_INVALID.
    let again = c
        .create(pb::CreateRequest {
            domain: Some(by_name("lc1")),
            ..Default::default()
        })
        .await
        .expect_err("already running");
    let e = libvirt_error(&again);
    assert_eq!(e.code, ErrorCode::OperationInvalid);
    assert_eq!(e.domain, ErrorDomain::Qemu);
    assert_eq!(
        e.message,
        "Requested operation is not valid: domain is already running"
    );

    let live = c
        .get_xml_desc(pb::GetXmlDescRequest {
            object: Some(by_name("lc1")),
            ..Default::default()
        })
        .await
        .expect("xml")
        .into_inner()
        .xml;
    assert!(
        live.starts_with(&format!("<domain type='kvm' id='{}'>", started.id)),
        "{live}"
    );
    let info = c.get_info(by_name("lc1")).await.expect("info").into_inner();
    assert_eq!(info.max_mem_kib, 131072);
    assert_eq!(info.nr_virt_cpu, 1);
    assert_eq!(info.id, started.id);

    // Stats from QEMU (balloon) and /proc (rss, cpu time).
    let mem = c
        .memory_stats(by_name("lc1"))
        .await
        .expect("dommemstat")
        .into_inner()
        .stats;
    assert_eq!(mem.get("actual"), Some(&131072), "{mem:?}");
    assert!(mem.get("rss").is_some_and(|r| *r > 0), "{mem:?}");
    let all: Vec<pb::DomainStats> = c
        .get_all_stats(pb::GetAllStatsRequest::default())
        .await
        .expect("all stats")
        .into_inner()
        .collect::<Result<_, _>>()
        .await
        .expect("stream");
    assert_eq!(all.len(), 1);
    let fields: Vec<&str> = all[0].params.iter().map(|p| p.field.as_str()).collect();
    for f in ["state.state", "cpu.time", "balloon.current", "vcpu.current"] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
    // Memory through the balloon (live), vCPUs in the config.
    c.set_memory(pb::SetMemoryRequest {
        domain: Some(by_name("lc1")),
        memory_kib: 65536,
        ..Default::default()
    })
    .await
    .expect("setmem");
    let info = c.get_info(by_name("lc1")).await.expect("info").into_inner();
    assert_eq!((info.max_mem_kib, info.memory_kib), (131072, 65536));
    let too_much = c
        .set_memory(pb::SetMemoryRequest {
            domain: Some(by_name("lc1")),
            memory_kib: 1 << 30,
            ..Default::default()
        })
        .await
        .expect_err("above max");
    assert_eq!(libvirt_error(&too_much).code, ErrorCode::InvalidArg);
    let config = pb::Impact {
        config: true,
        ..Default::default()
    };
    c.set_vcpus(pb::SetVcpusRequest {
        domain: Some(by_name("lc1")),
        count: 2,
        impact: Some(config),
        maximum: true,
        guest: false,
    })
    .await
    .expect("setvcpus --maximum --config");
    let inactive = c
        .get_xml_desc(pb::GetXmlDescRequest {
            object: Some(by_name("lc1")),
            inactive: true,
            ..Default::default()
        })
        .await
        .expect("xml")
        .into_inner()
        .xml;
    assert!(
        inactive.contains("<vcpu placement='static' current='1'>2</vcpu>"),
        "{inactive}"
    );

    // Metadata on the live guest and its config.
    let both = pb::Impact {
        live: true,
        config: true,
        ..Default::default()
    };
    c.set_metadata(pb::SetMetadataRequest {
        domain: Some(by_name("lc1")),
        r#type: pb::MetadataType::Title as i32,
        value: "lifecycle guest".into(),
        impact: Some(both),
        ..Default::default()
    })
    .await
    .expect("set title");
    c.set_metadata(pb::SetMetadataRequest {
        domain: Some(by_name("lc1")),
        r#type: pb::MetadataType::Element as i32,
        value: "<owner>ci</owner>".into(),
        key: "vm".into(),
        uri: "http://virtmesh.example/vm".into(),
        impact: Some(both),
    })
    .await
    .expect("set element");
    let get = |ty: pb::MetadataType, config: bool| pb::GetMetadataRequest {
        domain: Some(by_name("lc1")),
        r#type: ty as i32,
        uri: "http://virtmesh.example/vm".into(),
        impact: Some(pb::Impact {
            config,
            ..Default::default()
        }),
    };
    for config in [false, true] {
        let title = c
            .get_metadata(get(pb::MetadataType::Title, config))
            .await
            .expect("title")
            .into_inner()
            .value;
        assert_eq!(title, "lifecycle guest");
        let el = c
            .get_metadata(get(pb::MetadataType::Element, config))
            .await
            .expect("element")
            .into_inner()
            .value;
        assert_eq!(
            el,
            "<vm:owner xmlns:vm='http://virtmesh.example/vm'>ci</vm:owner>"
        );
    }
    let none = c
        .get_metadata(get(pb::MetadataType::Description, false))
        .await
        .expect_err("no description");
    assert_eq!(libvirt_error(&none).code, ErrorCode::NoDomainMetadata);

    // Nothing saved or snapshotted: honest empty answers, not errors.
    let saved = c
        .has_managed_save(by_name("lc1"))
        .await
        .expect("has managed save")
        .into_inner();
    assert!(!saved.has_managed_save);
    let snaps: Vec<pb::SnapshotSummary> = c
        .snapshot_list(pb::SnapshotListRequest {
            domain: Some(by_name("lc1")),
            ..Default::default()
        })
        .await
        .expect("snapshot list")
        .into_inner()
        .collect::<Result<_, _>>()
        .await
        .expect("stream");
    assert!(snaps.is_empty());

    // No guest OS answers ACPI here, so these change nothing visible, but
    // QEMU must accept them.
    c.reset(by_name("lc1")).await.expect("reset");
    c.shutdown(pb::ShutdownRequest {
        domain: Some(by_name("lc1")),
        mode: 0,
    })
    .await
    .expect("shutdown (ACPI power button)");
    assert_eq!(state_of(&mut c, "lc1").await.0, DomainState::Running);

    c.suspend(by_name("lc1")).await.expect("suspend");
    assert_eq!(
        state_of(&mut c, "lc1").await,
        (DomainState::Paused, "user".into())
    );
    c.resume(by_name("lc1")).await.expect("resume");
    assert_eq!(
        state_of(&mut c, "lc1").await,
        (DomainState::Running, "unpaused".into())
    );

    let t = Instant::now();
    c.destroy(pb::DestroyRequest {
        domain: Some(by_name("lc1")),
        graceful: false,
    })
    .await
    .expect("destroy");
    let destroy_latency = t.elapsed();
    assert_eq!(
        state_of(&mut c, "lc1").await,
        (DomainState::Shutoff, "destroyed".into())
    );
    assert!(host.our_qemus().is_empty(), "QEMU is gone after destroy");
    let off = c.lookup(by_name("lc1")).await.expect("lookup").into_inner();
    assert_eq!(off.id, -1);

    c.undefine(pb::UndefineRequest {
        domain: Some(by_name("lc1")),
        ..Default::default()
    })
    .await
    .expect("undefine");
    assert!(!host.config().state_dir.join("lc1.xml").exists());
    let gone = c.lookup(by_name("lc1")).await.expect_err("undefined");
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let e = libvirt_error(&gone);
    assert_eq!(e.code, ErrorCode::NoDomain);
    assert_eq!(e.domain, ErrorDomain::Qemu);
    assert_eq!(
        e.message,
        "Domain not found: no domain with matching name 'lc1'"
    );

    use DomainEventType as T;
    assert_eq!(
        next_events(&mut events, 6).await,
        vec![
            (T::DomainEventDefined, "added".into()),
            (T::DomainEventStarted, "booted".into()),
            (T::DomainEventSuspended, "paused".into()),
            (T::DomainEventResumed, "unpaused".into()),
            (T::DomainEventStopped, "destroyed".into()),
            (T::DomainEventUndefined, "removed".into()),
        ]
    );
    println!(
        "qemu service latency (diskless 128 MiB q35 KVM guest): start->running {:.1} ms, destroy {:.1} ms",
        start_latency.as_secs_f64() * 1e3,
        destroy_latency.as_secs_f64() * 1e3
    );
    drop((c, events));
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_service_reconnects_to_running_guest() {
    if !host_ready() {
        return;
    }
    let host = Host::new();
    let svc = Service::start(&host, "svc1").await;
    let mut c = svc.domains();
    c.define_xml(pb::DefineXmlRequest {
        xml: guest_xml("rc1", "kvm"),
        validate: false,
    })
    .await
    .expect("define");
    let started = c
        .create(pb::CreateRequest {
            domain: Some(by_name("rc1")),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner();
    let pids = host.our_qemus();
    assert_eq!(pids.len(), 1);
    drop(c);
    svc.stop().await;

    // The service is gone; the guest is not.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        host.our_qemus(),
        pids,
        "stopping the service must not stop the guest"
    );

    let svc = Service::start(&host, "svc2").await;
    let mut c = svc.domains();
    let found = c.lookup(by_name("rc1")).await.expect("lookup").into_inner();
    assert_eq!(found.id, started.id);
    assert_eq!(found.state, DomainState::Running as i32);
    assert!(found.persistent);
    // Manageable through the new connection.
    c.suspend(by_name("rc1")).await.expect("suspend");
    assert_eq!(state_of(&mut c, "rc1").await.0, DomainState::Paused);
    c.resume(by_name("rc1")).await.expect("resume");
    assert_eq!(state_of(&mut c, "rc1").await.0, DomainState::Running);
    c.destroy(pb::DestroyRequest {
        domain: Some(by_name("rc1")),
        graceful: false,
    })
    .await
    .expect("destroy");
    assert_eq!(
        state_of(&mut c, "rc1").await,
        (DomainState::Shutoff, "destroyed".into())
    );
    assert!(host.our_qemus().is_empty());
    drop(c);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_that_died_while_service_was_down_is_shut_off() {
    if !host_ready() {
        return;
    }
    let host = Host::new();
    let svc = Service::start(&host, "svc1").await;
    let mut c = svc.domains();
    c.define_xml(pb::DefineXmlRequest {
        xml: guest_xml("dd1", "kvm"),
        validate: false,
    })
    .await
    .expect("define");
    c.create(pb::CreateRequest {
        domain: Some(by_name("dd1")),
        ..Default::default()
    })
    .await
    .expect("start");
    drop(c);
    svc.stop().await;
    for pid in host.our_qemus() {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !host.our_qemus().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let svc = Service::start(&host, "svc2").await;
    let mut c = svc.domains();
    let found = c.lookup(by_name("dd1")).await.expect("lookup").into_inner();
    assert_eq!(found.id, -1);
    assert_eq!(found.state, DomainState::Shutoff as i32);
    let leftovers: Vec<_> = std::fs::read_dir(host.run_dir())
        .expect("run dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".status.json") || n.ends_with(".qmp"))
        .collect();
    assert!(leftovers.is_empty(), "stale live state: {leftovers:?}");
    drop(c);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_guest_and_failed_start_reports_qemu_stderr() {
    if !host_ready() {
        return;
    }
    let host = Host::new();
    let svc = Service::start(&host, "svc").await;
    let mut c = svc.domains();

    // The machine type is checked against QEMU's own list at define time,
    // with libvirt's error.
    let unknown = guest_xml("bad0", "kvm").replace("machine='q35'", "machine='pc-q35-0.1-bogus'");
    let e = c
        .define_xml(pb::DefineXmlRequest {
            xml: unknown,
            validate: false,
        })
        .await
        .expect_err("unknown machine");
    let e = libvirt_error(&e);
    assert_eq!(e.code, ErrorCode::ConfigUnsupported);
    assert_eq!(
        e.message,
        "unsupported configuration: Emulator '/usr/bin/qemu-system-x86_64' does not support machine type 'pc-q35-0.1-bogus'"
    );

    // QEMU's own complaint reaches the client (libvirt checks CPU models
    // earlier; here QEMU is the one that refuses).
    let bad = guest_xml("bad1", "kvm").replace(
        "  <os>",
        "  <cpu mode='custom' match='exact'>\n    <model fallback='forbid'>Pentium-9000</model>\n  </cpu>\n  <os>",
    );
    c.define_xml(pb::DefineXmlRequest {
        xml: bad,
        validate: false,
    })
    .await
    .expect("define");
    let failed = c
        .create(pb::CreateRequest {
            domain: Some(by_name("bad1")),
            ..Default::default()
        })
        .await
        .expect_err("bogus CPU model");
    assert!(
        failed.message().contains("Pentium-9000"),
        "QEMU's stderr is missing: {}",
        failed.message()
    );
    assert_eq!(state_of(&mut c, "bad1").await.0, DomainState::Shutoff);
    assert!(host.our_qemus().is_empty());

    // A transient TCG guest exists while it runs, and not after.
    let created = c
        .create_xml(pb::CreateXmlRequest {
            xml: guest_xml("tr1", "qemu"),
            start_paused: true,
            ..Default::default()
        })
        .await
        .expect("create_xml")
        .into_inner();
    assert!(!created.persistent);
    assert_eq!(created.state, DomainState::Paused as i32);
    assert_eq!(
        state_of(&mut c, "tr1").await,
        (DomainState::Paused, "user".into())
    );
    c.resume(by_name("tr1")).await.expect("resume");
    assert_eq!(
        state_of(&mut c, "tr1").await,
        (DomainState::Running, "unpaused".into())
    );
    c.destroy(pb::DestroyRequest {
        domain: Some(by_name("tr1")),
        graceful: false,
    })
    .await
    .expect("destroy");
    let gone = c
        .lookup(by_name("tr1"))
        .await
        .expect_err("transient is gone");
    assert_eq!(libvirt_error(&gone).code, ErrorCode::NoDomain);
    assert!(host.our_qemus().is_empty());
    drop(c);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_calls_and_unimplemented_answers() {
    use virtmesh_proto::v1::connect_client::ConnectClient;
    let host = Host::new();
    let svc = Service::start(&host, "svc").await;
    let mut conn = ConnectClient::new(svc.channel.clone());
    let mut req = tonic::Request::new(());
    virtmesh_rpc::meta::set_virt_uri(&mut req, "qemu:///session").expect("uri");
    let uri = conn.get_uri(req).await.expect("uri").into_inner().uri;
    assert_eq!(uri, "qemu:///session");
    let opened = conn
        .open(pb::OpenRequest {
            uri: "qemu:///system".into(),
            read_only: false,
        })
        .await
        .expect("open")
        .into_inner();
    assert_eq!(
        (opened.uri.as_str(), opened.driver.as_str()),
        ("qemu:///system", "qemu")
    );
    let t = conn.get_type(()).await.expect("type").into_inner();
    assert_eq!(t.hypervisor_type, "QEMU");
    let node = conn.get_node_info(()).await.expect("node").into_inner();
    assert!(node.cpus >= 1 && node.memory_kib > 0, "{node:?}");
    assert!(
        !conn
            .get_hostname(())
            .await
            .expect("hostname")
            .into_inner()
            .hostname
            .is_empty()
    );
    if Path::new(EMULATOR).exists() {
        let v = conn
            .get_version(())
            .await
            .expect("version")
            .into_inner()
            .version;
        assert!(v >= 10_000_000, "QEMU {v}");
    }

    // DomainXMLToNative checks the definition against the probed QEMU.
    let corpus = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/conformance/domain-qemu/minimal-q35"
    ));
    if let (true, Ok(input), Ok(expected)) = (
        Path::new(EMULATOR).exists(),
        std::fs::read_to_string(corpus.join("input.xml")),
        std::fs::read_to_string(corpus.join("qemu.argv")),
    ) {
        let native = conn
            .domain_xml_to_native(pb::DomainXmlToNativeRequest {
                native_format: "qemu-argv".into(),
                domain_xml: input,
            })
            .await
            .expect("to native")
            .into_inner();
        assert_eq!(native.config, expected);
    }

    let mut hostc = virtmesh_proto::v1::host_client::HostClient::new(svc.channel.clone());
    let free = hostc
        .get_free_memory(())
        .await
        .expect("free memory")
        .into_inner();
    assert!(free.bytes > 0);
    if Path::new(EMULATOR).exists() {
        let caps = hostc
            .get_capabilities(())
            .await
            .expect("capabilities")
            .into_inner()
            .xml;
        assert!(
            caps.contains("<machine canonical='pc-q35-10.0' maxCpus='4096'>q35</machine>"),
            "{caps}"
        );
        let models = hostc
            .get_cpu_model_names(pb::CpuModelNamesRequest::default())
            .await
            .expect("cpu models")
            .into_inner()
            .models;
        assert!(models.iter().any(|m| m == "qemu64"), "{models:?}");
    }
    drop(hostc);

    let e = conn
        .domain_xml_from_native(pb::DomainXmlFromNativeRequest {
            native_format: "qemu-argv".into(),
            native_config: "qemu-system-x86_64 -m 128".into(),
        })
        .await
        .expect_err("not yet");
    assert_eq!(e.code(), tonic::Code::Unimplemented);
    let e = libvirt_error(&e);
    assert_eq!(
        (e.code, e.domain),
        (ErrorCode::NoSupport, ErrorDomain::Qemu)
    );
    drop(conn);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autostart_starts_a_guest_once_per_boot() {
    if !host_ready() {
        return;
    }
    let host = Host::new();
    let svc = Service::start(&host, "svc1").await;
    let mut c = svc.domains();
    c.define_xml(pb::DefineXmlRequest {
        xml: guest_xml("as1", "kvm"),
        validate: false,
    })
    .await
    .expect("define");
    c.set_autostart(pb::SetAutostartRequest {
        object: Some(by_name("as1")),
        autostart: true,
    })
    .await
    .expect("autostart");
    assert!(
        c.get_autostart(by_name("as1"))
            .await
            .expect("get")
            .into_inner()
            .autostart
    );
    assert!(
        c.lookup(by_name("as1"))
            .await
            .expect("lookup")
            .into_inner()
            .autostart
    );
    drop(c);
    svc.stop().await;
    assert!(host.our_qemus().is_empty(), "autostart is not a start");

    // A host reboot empties the run directory's marker.
    std::fs::remove_file(host.run_dir().join("autostarted")).expect("marker");
    let svc = Service::start(&host, "svc2").await;
    let mut c = svc.domains();
    assert_eq!(
        state_of(&mut c, "as1").await,
        (DomainState::Running, "booted".into())
    );
    c.destroy(pb::DestroyRequest {
        domain: Some(by_name("as1")),
        graceful: false,
    })
    .await
    .expect("destroy");
    drop(c);
    svc.stop().await;

    // Same boot: a service restart leaves the guest shut off.
    let svc = Service::start(&host, "svc3").await;
    let mut c = svc.domains();
    assert_eq!(state_of(&mut c, "as1").await.0, DomainState::Shutoff);
    c.undefine(pb::UndefineRequest {
        domain: Some(by_name("as1")),
        ..Default::default()
    })
    .await
    .expect("undefine");
    assert!(!host.config().state_dir.join("autostart/as1.xml").exists());
    drop(c);
    svc.stop().await;
}

/// A 104-byte multiboot guest for `-kernel`: it prints
/// `VIRTMESH-GUEST-UP` on COM1, enables the ACPI power button (PM1 at
/// SeaBIOS's 0x600), waits for it and powers off (S5). Enough to prove
/// direct kernel boot, the serial console and ACPI shutdown end to end
/// without shipping a kernel. Built from (`as --32`, `objcopy -O binary`):
//
//     .code32
//     .set LOAD, 0x100000
//     .globl _start
//     _start:
//     header:
//       .long 0x1BADB002
//       .long 0x00010000
//       .long -(0x1BADB002 + 0x00010000)
//       .long LOAD + (header - _start)
//       .long LOAD
//       .long 0
//       .long 0
//       .long LOAD + (entry - _start)
//     entry:
//       cli
//       mov $(LOAD + (msg - _start)), %esi
//     1:
//       lodsb
//       test %al, %al
//       jz 2f
//       mov $0x3f8, %dx
//       out %al, (%dx)
//       jmp 1b
//     2:
//       mov $0x602, %dx
//       mov $0x0100, %ax
//       out %ax, (%dx)
//     3:
//       mov $0x600, %dx
//       in (%dx), %ax
//       test $0x0100, %ax
//       jz 3b
//       mov $0x604, %dx
//       mov $0x2000, %ax
//       out %ax, (%dx)
//     4:
//       hlt
//       jmp 4b
//     msg:
//       .asciz "VIRTMESH-GUEST-UP\n"
const TINY_GUEST: &[u8] = &[
    0x02, 0xb0, 0xad, 0x1b, 0x00, 0x00, 0x01, 0x00, 0xfe, 0x4f, 0x51, 0xe4, 0x00, 0x00, 0x10, 0x00,
    0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x10, 0x00,
    0xfa, 0xbe, 0x55, 0x00, 0x10, 0x00, 0xac, 0x84, 0xc0, 0x74, 0x07, 0x66, 0xba, 0xf8, 0x03, 0xee,
    0xeb, 0xf4, 0x66, 0xba, 0x02, 0x06, 0x66, 0xb8, 0x00, 0x01, 0x66, 0xef, 0x66, 0xba, 0x00, 0x06,
    0x66, 0xed, 0x66, 0xa9, 0x00, 0x01, 0x74, 0xf4, 0x66, 0xba, 0x04, 0x06, 0x66, 0xb8, 0x00, 0x20,
    0x66, 0xef, 0xf4, 0xeb, 0xfd, 0x56, 0x49, 0x52, 0x54, 0x4d, 0x45, 0x53, 0x48, 0x2d, 0x47, 0x55,
    0x45, 0x53, 0x54, 0x2d, 0x55, 0x50, 0x0a, 0x00,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcg_guest_boots_and_powers_off_on_acpi_shutdown() {
    if !host_ready() {
        return;
    }
    let host = Host::new();
    let kernel = host.dir.path().join("guest.bin");
    std::fs::write(&kernel, TINY_GUEST).expect("guest image");
    let serial = host.dir.path().join("serial.log");
    let svc = Service::start(&host, "svc").await;
    let mut c = svc.domains();
    let mut events = EventsClient::new(svc.channel.clone())
        .watch(pb::WatchRequest {
            families: vec![],
            object_uuid: String::new(),
            object_name: "acpi1".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let xml = format!(
        "<domain type='qemu'>\n  <name>acpi1</name>\n  <memory unit='MiB'>64</memory>\n  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n    <kernel>{}</kernel>\n  </os>\n  <features>\n    <acpi/>\n  </features>\n  <devices>\n    <serial type='file'>\n      <source path='{}'/>\n    </serial>\n  </devices>\n</domain>\n",
        kernel.display(),
        serial.display()
    );
    c.define_xml(pb::DefineXmlRequest {
        xml,
        validate: false,
    })
    .await
    .expect("define");
    let desc = c
        .get_xml_desc(pb::GetXmlDescRequest {
            object: Some(by_name("acpi1")),
            ..Default::default()
        })
        .await
        .expect("xml")
        .into_inner()
        .xml;
    assert!(
        desc.contains("<console type='file'>"),
        "console mirrors serial0: {desc}"
    );
    c.create(pb::CreateRequest {
        domain: Some(by_name("acpi1")),
        ..Default::default()
    })
    .await
    .expect("start");

    let marker_count = |n: usize| {
        let serial = serial.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let out = std::fs::read_to_string(&serial).unwrap_or_default();
                if out.matches("VIRTMESH-GUEST-UP").count() >= n {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "marker #{n} missing on the serial console: {out:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    marker_count(1).await;

    // libvirt's fake reboot: the guest powers off on the ACPI button, the
    // driver resets and continues it, and it boots again.
    c.reboot(pb::RebootRequest {
        domain: Some(by_name("acpi1")),
        mode: 0,
    })
    .await
    .expect("reboot");
    marker_count(2).await;
    assert_eq!(
        state_of(&mut c, "acpi1").await.0,
        DomainState::Running,
        "a reboot is not a stop"
    );

    c.shutdown(pb::ShutdownRequest {
        domain: Some(by_name("acpi1")),
        mode: 0,
    })
    .await
    .expect("shutdown");
    use DomainEventType as T;
    assert_eq!(
        next_events(&mut events, 4).await,
        vec![
            (T::DomainEventDefined, "added".into()),
            (T::DomainEventStarted, "booted".into()),
            (T::DomainEventShutdown, "guest".into()),
            (T::DomainEventStopped, "shutdown".into()),
        ]
    );
    assert_eq!(
        state_of(&mut c, "acpi1").await,
        (DomainState::Shutoff, "shutdown".into())
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !host.our_qemus().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        host.our_qemus().is_empty(),
        "QEMU exits after the guest powers off"
    );
    drop((c, events));
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_streams_the_guest_serial_pty() {
    if !host_ready() {
        return;
    }
    let host = Host::new();
    let kernel = host.dir.path().join("guest.bin");
    std::fs::write(&kernel, TINY_GUEST).expect("guest image");
    let svc = Service::start(&host, "svc").await;
    let mut c = svc.domains();
    let xml = format!(
        "<domain type='qemu'>\n  <name>con1</name>\n  <memory unit='MiB'>64</memory>\n  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n    <kernel>{}</kernel>\n  </os>\n  <features>\n    <acpi/>\n  </features>\n  <devices>\n    <serial type='pty'/>\n  </devices>\n</domain>\n",
        kernel.display()
    );
    c.define_xml(pb::DefineXmlRequest {
        xml,
        validate: false,
    })
    .await
    .expect("define");
    // Paused, so nothing is printed before the console is open.
    c.create(pb::CreateRequest {
        domain: Some(by_name("con1")),
        start_paused: true,
        ..Default::default()
    })
    .await
    .expect("start");
    let live = c
        .get_xml_desc(pb::GetXmlDescRequest {
            object: Some(by_name("con1")),
            ..Default::default()
        })
        .await
        .expect("xml")
        .into_inner()
        .xml;
    assert!(live.contains("<source path='/dev/pts/"), "{live}");

    let open = |force: bool| {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let first = pb::ConsoleInput {
            msg: Some(pb::console_input::Msg::Open(pb::ConsoleOpen {
                domain: Some(by_name("con1")),
                dev_name: String::new(),
                force,
            })),
        };
        tx.try_send(first).expect("queue open");
        (tx, tokio_stream::wrappers::ReceiverStream::new(rx))
    };
    let (keys, input) = open(false);
    let mut output = c.open_console(input).await.expect("console").into_inner();
    let (_keys2, input2) = open(false);
    let busy = c
        .open_console(input2)
        .await
        .expect_err("one client at a time");
    assert!(busy.message().contains("Active console session"), "{busy}");

    // QEMU notices a newly opened pty within a second and drops what is
    // written before; reboot (a marker per boot) until one comes through.
    c.resume(by_name("con1")).await.expect("resume");
    let mut seen = String::new();
    'wait: for attempt in 0..6 {
        if attempt > 0 {
            c.reboot(pb::RebootRequest {
                domain: Some(by_name("con1")),
                mode: 0,
            })
            .await
            .expect("reboot");
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline.into(), output.next()).await {
            seen.push_str(&String::from_utf8_lossy(&chunk.expect("output").data));
            if seen.contains("VIRTMESH-GUEST-UP") {
                break 'wait;
            }
        }
    }
    assert!(seen.contains("VIRTMESH-GUEST-UP"), "console said {seen:?}");
    keys.send(pb::ConsoleInput {
        msg: Some(pb::console_input::Msg::Data(b"typed\r".to_vec())),
    })
    .await
    .expect("keys reach the service");

    c.destroy(pb::DestroyRequest {
        domain: Some(by_name("con1")),
        graceful: false,
    })
    .await
    .expect("destroy");
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = output.next().await {}
    })
    .await;
    assert!(end.is_ok(), "the console ends with the guest");
    drop((c, keys, output));
    svc.stop().await;
}

/// A VNC server on autoport really listens: QEMU serves RFB on
/// 127.0.0.1 at the port the live XML shows (5900 or the next free one),
/// and the port is free again once the guest is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vnc_autoport_listens_where_the_live_xml_says() {
    use tokio::io::AsyncReadExt;
    if !host_ready() {
        return;
    }
    let host = Host::new();
    let svc = Service::start(&host, "svc").await;
    let mut c = svc.domains();
    let xml = guest_xml("vnc1", "qemu").replace(
        "  </os>\n",
        "  </os>\n  <devices>\n    <graphics type='vnc'/>\n  </devices>\n",
    );
    let created = c
        .create_xml(pb::CreateXmlRequest {
            xml,
            start_paused: true,
            ..Default::default()
        })
        .await
        .expect("create_xml with VNC")
        .into_inner();
    assert_eq!(created.state, DomainState::Paused as i32);
    let live = c
        .get_xml_desc(pb::GetXmlDescRequest {
            object: Some(by_name("vnc1")),
            ..Default::default()
        })
        .await
        .expect("xml")
        .into_inner()
        .xml;
    let port: u16 = live
        .split("<graphics type='vnc' port='")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no VNC port in the live XML: {live}"));
    assert!(port >= 5900, "{live}");
    assert!(
        live.contains(&format!("port='{port}' autoport='yes' listen='127.0.0.1'")),
        "{live}"
    );
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("QEMU listens on the VNC port");
    let mut banner = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut banner))
        .await
        .expect("RFB banner in time")
        .expect("read banner");
    assert!(banner.starts_with(b"RFB "), "{banner:?}");
    drop(s);
    c.destroy(pb::DestroyRequest {
        domain: Some(by_name("vnc1")),
        graceful: false,
    })
    .await
    .expect("destroy");
    assert!(host.our_qemus().is_empty());
    drop(c);
    svc.stop().await;
}

/// A VNC password reaches QEMU over QMP before the guest runs (the start
/// fails if QEMU refuses it), and clients see it only with the secure
/// flag, as libvirt shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vnc_password_is_set_and_shown_only_when_secure() {
    if !host_ready() {
        return;
    }
    let host = Host::new();
    let svc = Service::start(&host, "svc").await;
    let mut c = svc.domains();
    let xml = guest_xml("vncpw", "qemu").replace(
        "  </os>\n",
        "  </os>\n  <devices>\n    <graphics type='vnc' passwd='s3cret'/>\n  </devices>\n",
    );
    c.create_xml(pb::CreateXmlRequest {
        xml,
        start_paused: true,
        ..Default::default()
    })
    .await
    .expect("create_xml with a VNC password");
    let dump = |secure: bool| {
        let mut c = c.clone();
        async move {
            c.get_xml_desc(pb::GetXmlDescRequest {
                object: Some(by_name("vncpw")),
                secure,
                ..Default::default()
            })
            .await
            .expect("xml")
            .into_inner()
            .xml
        }
    };
    let public = dump(false).await;
    assert!(
        !public.contains("s3cret") && !public.contains("passwd"),
        "{public}"
    );
    assert!(dump(true).await.contains("passwd='s3cret'"));
    c.destroy(pb::DestroyRequest {
        domain: Some(by_name("vncpw")),
        graceful: false,
    })
    .await
    .expect("destroy");
    drop(c);
    svc.stop().await;
}

/// What the corpus checks byte for byte also runs: a TCG guest with the
/// device kinds a start admits (SCSI/SATA disks, USB tablet and hub, HDA
/// sound, qxl and VGA video, virtio channels, RNG, balloon options, 9p,
/// crypto, pvpanic, an iothread, a shared NUMA cell, a throttle group)
/// starts with all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_with_many_device_kinds_starts() {
    if !host_ready() {
        return;
    }
    let host = Host::new();
    let svc = Service::start(&host, "svc").await;
    let mut c = svc.domains();
    let dir = host.dir.path();
    for f in ["scsi.raw", "sata.raw"] {
        std::fs::write(dir.join(f), vec![0u8; 1 << 20]).expect("image");
    }
    std::fs::create_dir_all(dir.join("share")).expect("share dir");
    let d = dir.display();
    let devices = format!(
        "<iothreads>1</iothreads>
  <throttlegroups>
    <throttlegroup>
      <total_bytes_sec>4000000</total_bytes_sec>
      <group_name>limit0</group_name>
    </throttlegroup>
  </throttlegroups>
  <cpu>
    <numa>
      <cell id='0' cpus='0' memory='131072' unit='KiB' memAccess='shared'/>
    </numa>
  </cpu>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{d}/scsi.raw'/>
      <target dev='sda' bus='scsi'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{d}/sata.raw'/>
      <target dev='sdb' bus='sata'/>
      <throttlefilters>
        <throttlefilter group='limit0'/>
      </throttlefilters>
    </disk>
    <controller type='scsi' model='virtio-scsi'>
      <driver iothread='1'/>
    </controller>
    <filesystem type='mount' accessmode='mapped'>
      <source dir='{d}/share'/>
      <target dir='share0'/>
    </filesystem>
    <channel type='unix'>
      <source mode='bind' path='{d}/agent.sock'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <input type='tablet' bus='usb'/>
    <hub type='usb'/>
    <graphics type='vnc'/>
    <sound model='ich9'/>
    <video><model type='qxl'/></video>
    <video><model type='vga'/></video>
    <memballoon model='virtio' autodeflate='on'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <panic model='isa'/>
    <crypto model='virtio' type='qemu'><backend model='builtin' queues='1'/></crypto>
  </devices>
"
    );
    let xml = guest_xml("many1", "qemu").replace("</domain>", &format!("  {devices}</domain>"));
    let created = c
        .create_xml(pb::CreateXmlRequest {
            xml,
            start_paused: true,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("QEMU refused the command line: {}", e.message()))
        .into_inner();
    assert_eq!(created.state, DomainState::Paused as i32);
    // QEMU exits at once on a device it cannot create, so a paused guest
    // means every -device below was accepted.
    let pids = host.our_qemus();
    assert_eq!(pids.len(), 1, "one QEMU");
    let qtree = std::fs::read(format!("/proc/{}/cmdline", pids[0]))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .expect("cmdline");
    for dev in [
        "virtio-scsi-pci",
        "scsi-hd",
        "ide-hd",
        "virtio-9p-pci",
        "virtserialport",
        "usb-tablet",
        "usb-hub",
        "ich9-intel-hda",
        "qxl-vga",
        "secondary-vga",
        "virtio-balloon-pci",
        "virtio-rng-pci",
        "pvpanic",
        "virtio-crypto-pci",
    ] {
        assert!(
            qtree.contains(&format!("\"driver\":\"{dev}\"")),
            "{dev} missing from QEMU's command line"
        );
    }
    c.destroy(pb::DestroyRequest {
        domain: Some(by_name("many1")),
        graceful: false,
    })
    .await
    .expect("destroy");
    drop(c);
    svc.stop().await;
}
