//! The network driver on real plumbing, inside network namespaces these
//! tests create (`ip netns add vmnet-<pid>-<n>`, deleted on drop): the
//! driver runs on a thread that entered the namespace (its netlink socket,
//! the processes it spawns and /proc/sys/net all follow that thread) and
//! serves on a unix socket; the tests drive it with the generated client
//! and look at the namespace with `ip -n` and `ip netns exec … nft`.
//! Nothing here touches the host's links, addresses or ruleset.
//!
//! Needs root, iproute2, dnsmasq and nft; without them the tests say why
//! and pass, unless VIRTMESH_REQUIRE_HOST=1, where that is a failure.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use virtmesh_network::{NetworkConfig, NetworkDriver, dnsmasq, firewall};
use virtmesh_proto::v1::{
    self as pb, NetworkEventType, event::Kind, events_client::EventsClient,
    network_client::NetworkClient, object_ref::Key,
};
use virtmesh_rpc::client::{ChannelOptions, channel};
use virtmesh_rpc::serve::{Listener, serve};
use virtmesh_rpc::{ErrorCode, ListenAddr, VirtError};

/// Whether this host can run the tests; prints why not, and panics when
/// the environment demands a capable host.
fn host_ready() -> bool {
    let mut missing = Vec::new();
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    });
    if !root {
        missing.push("not root (network namespaces need CAP_SYS_ADMIN)".to_owned());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        missing.push("`ip` (iproute2) is not installed".into());
    }
    if dnsmasq::binary().is_none() {
        missing.push("dnsmasq is not installed (scripts/install-host-deps.sh)".into());
    }
    if firewall::binary().is_none() {
        missing.push("nft is not installed (scripts/install-host-deps.sh)".into());
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

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A network namespace and a temporary state directory. On drop: kill
/// every process whose command line names the directory (our dnsmasq,
/// whatever the test left), then delete the namespace.
struct Ns {
    name: String,
    dir: tempfile::TempDir,
}

impl Ns {
    fn new() -> Ns {
        let name = format!(
            "vmnet-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip netns add");
        assert!(ok.success(), "ip netns add {name} failed");
        Ns {
            name,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn config(&self) -> NetworkConfig {
        NetworkConfig {
            state_dir: self.dir.path().join("state"),
            run_dir: self.dir.path().join("run"),
        }
    }

    /// `ip -n NS ARGS…` → (success, stdout).
    fn ip(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("run ip");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// `ip netns exec NS CMD…` → stdout.
    fn exec(&self, cmd: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .expect("run ip netns exec");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn ruleset(&self) -> String {
        self.exec(&["nft", "list", "ruleset"])
    }

    fn link_exists(&self, name: &str) -> bool {
        self.ip(&["link", "show", "dev", name]).0
    }

    fn dnsmasq_pid(&self, net: &str) -> Option<i32> {
        let paths =
            dnsmasq::DnsmasqPaths::new(&self.config().state_dir, &self.config().run_dir, net);
        dnsmasq::read_pid(&paths.pidfile)
            .ok()
            .filter(|p| dnsmasq::is_ours(*p, &paths.conf))
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let needle = self.dir.path().to_string_lossy().into_owned();
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmd).contains(&needle) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// A driver served from inside the namespace, on its own thread.
struct Served {
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
    socket: PathBuf,
}

impl Served {
    fn start(ns: &Ns, tag: &str) -> Served {
        let socket = ns.dir.path().join(format!("network-{tag}.sock"));
        let netns = PathBuf::from("/run/netns").join(&ns.name);
        let cfg = ns.config();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let sock = socket.clone();
        let thread = std::thread::spawn(move || {
            let fail = |e: String| {
                let _ = ready_tx.send(Err(e));
            };
            let f = match std::fs::File::open(&netns) {
                Ok(f) => f,
                Err(e) => return fail(format!("open {}: {e}", netns.display())),
            };
            if let Err(e) = nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET) {
                return fail(format!("setns: {e}"));
            }
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(format!("runtime: {e}")),
            };
            let fail = |e: String| {
                let _ = ready_tx.send(Err(e));
            };
            rt.block_on(async {
                let driver = match NetworkDriver::new(cfg).await {
                    Ok(d) => d,
                    Err(e) => return fail(format!("driver: {e}")),
                };
                let listener = match Listener::bind(&ListenAddr::Unix(sock)).await {
                    Ok(l) => l,
                    Err(e) => return fail(format!("bind: {e}")),
                };
                let _ = ready_tx.send(Ok(()));
                let mut graceful = stop_rx.clone();
                let mut hard = stop_rx;
                // Graceful shutdown waits for open streams (an Events
                // watch never ends); a test that failed with one open
                // must not hang, so give up on grace after a moment.
                tokio::select! {
                    _ = serve(virtmesh_network::routes(driver), listener, async move {
                        let _ = graceful.wait_for(|s| *s).await;
                    }) => {}
                    _ = async move {
                        let _ = hard.wait_for(|s| *s).await;
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    } => {}
                }
            });
        });
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("driver in {} did not start: {e}", ns.name),
            Err(e) => panic!("driver in {} did not start: {e}", ns.name),
        }
        Served {
            stop: Some(stop),
            thread: Some(thread),
            socket,
        }
    }

    fn channel(&self) -> Channel {
        channel(
            &ListenAddr::Unix(self.socket.clone()),
            &ChannelOptions::default(),
        )
    }

    fn client(&self) -> NetworkClient<Channel> {
        NetworkClient::new(self.channel())
    }

    /// Stop serving, as a killed service would (nothing is torn down).
    fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn by_name(name: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        key: Some(Key::Name(name.to_owned())),
    }
}

fn define_req(xml: &str) -> pb::DefineXmlRequest {
    pb::DefineXmlRequest {
        xml: xml.to_owned(),
        validate: false,
    }
}

const PORT: &str = "<networkport>
  <uuid>2b4bd1c5-1b39-4b8e-a0a2-4b2f6c0a0b01</uuid>
  <owner><name>guest1</name><uuid>6a3e3c4e-6a8b-4c54-9f3e-111111111111</uuid></owner>
  <mac address='52:54:00:00:09:01'/>
</networkport>";

const NAT: &str = "<network>
  <name>tnat</name>
  <forward mode='nat'/>
  <bridge name='vmbr-nat' stp='off' delay='0'/>
  <ip address='10.231.1.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='10.231.1.100' end='10.231.1.150'/>
      <host mac='52:54:00:00:01:01' name='fixed' ip='10.231.1.10'/>
    </dhcp>
  </ip>
</network>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_network_with_dhcp_starts_and_stops_cleanly() {
    if !host_ready() {
        return;
    }
    let ns = Ns::new();
    let served = Served::start(&ns, "a");
    let mut net = served.client();
    let mut events = EventsClient::new(served.channel())
        .watch(pb::WatchRequest {
            families: vec![pb::EventFamily::Network as i32],
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();

    let s = net
        .define_xml(define_req(NAT))
        .await
        .expect("define")
        .into_inner();
    assert!(!s.active && s.persistent);
    let xml = net
        .get_xml_desc(pb::GetXmlDescRequest {
            object: Some(by_name("tnat")),
            ..Default::default()
        })
        .await
        .expect("xml")
        .into_inner()
        .xml;
    assert!(
        xml.contains("<mac address='52:54:00:"),
        "a MAC is generated: {xml}"
    );

    net.create(by_name("tnat")).await.expect("start");
    let (_, addr) = ns.ip(&["addr", "show", "dev", "vmbr-nat"]);
    assert!(
        addr.contains("inet 10.231.1.1/24"),
        "bridge address: {addr}"
    );
    let (_, link) = ns.ip(&["-d", "link", "show", "dev", "vmbr-nat"]);
    assert!(
        link.contains("bridge") && link.contains("UP"),
        "bridge up: {link}"
    );
    let pid = ns.dnsmasq_pid("tnat").expect("dnsmasq runs");
    let rules = ns.ruleset();
    assert!(rules.contains("table ip virtmesh_vmbr_nat"), "{rules}");
    assert!(rules.contains("masquerade to :1024-65535"), "{rules}");
    assert_eq!(
        ns.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "1"
    );

    // Starting again is libvirt's error.
    let e = net.create(by_name("tnat")).await.expect_err("twice");
    let e = VirtError::from_status(&e);
    assert_eq!(e.code, ErrorCode::OperationInvalid);
    assert_eq!(
        e.message,
        "Requested operation is not valid: network is already active"
    );

    let info = net
        .get_info(by_name("tnat"))
        .await
        .expect("info")
        .into_inner();
    assert!(info.active);
    assert_eq!(info.bridge, "vmbr-nat");

    // A live DHCP host is added to the hostsfile; dnsmasq reloads in place.
    net.update(pb::NetworkUpdateRequest {
        network: Some(by_name("tnat")),
        command: pb::NetworkUpdateCommand::AddLast as i32,
        section: pb::NetworkUpdateSection::NetworkSectionIpDhcpHost as i32,
        parent_index: -1,
        xml: "<host mac='52:54:00:00:01:02' name='added' ip='10.231.1.11'/>".into(),
        live: true,
        config: true,
    })
    .await
    .expect("update");
    let hosts = std::fs::read_to_string(ns.config().state_dir.join("dnsmasq/tnat.hostsfile"))
        .expect("hostsfile");
    assert!(
        hosts.contains("52:54:00:00:01:02,10.231.1.11,added"),
        "{hosts}"
    );
    assert_eq!(ns.dnsmasq_pid("tnat"), Some(pid), "SIGHUP, not a restart");

    // A live DNS host goes to addnhosts, also re-read on SIGHUP (that
    // dnsmasq answers DNS is checked from a guest in the lease test).
    net.update(pb::NetworkUpdateRequest {
        network: Some(by_name("tnat")),
        command: pb::NetworkUpdateCommand::AddLast as i32,
        section: pb::NetworkUpdateSection::NetworkSectionDnsHost as i32,
        parent_index: -1,
        xml: "<host ip='10.231.1.7'><hostname>dbhost</hostname></host>".into(),
        live: true,
        config: false,
    })
    .await
    .expect("dns update");
    let addn = std::fs::read_to_string(ns.config().state_dir.join("dnsmasq/tnat.addnhosts"))
        .expect("addnhosts");
    assert_eq!(addn, "10.231.1.7\tdbhost\t\n");
    assert_eq!(ns.dnsmasq_pid("tnat"), Some(pid), "SIGHUP, not a restart");
    let config_xml = net
        .get_xml_desc(pb::GetXmlDescRequest {
            object: Some(by_name("tnat")),
            inactive: true,
            ..Default::default()
        })
        .await
        .expect("inactive xml")
        .into_inner()
        .xml;
    assert!(
        config_xml.contains("name='added'"),
        "config got the DHCP host"
    );
    assert!(
        !config_xml.contains("dbhost"),
        "live-only DNS host: {config_xml}"
    );
    let leases: Vec<pb::DhcpLease> = net
        .get_dhcp_leases(pb::DhcpLeasesRequest {
            network: Some(by_name("tnat")),
            mac: String::new(),
        })
        .await
        .expect("leases")
        .into_inner()
        .collect::<Result<_, _>>()
        .await
        .expect("lease stream");
    assert!(leases.is_empty(), "no guest, no lease: {leases:?}");

    net.destroy(by_name("tnat")).await.expect("destroy");
    assert!(!ns.link_exists("vmbr-nat"), "bridge removed");
    assert!(!dnsmasq::is_ours(
        pid,
        &ns.config().state_dir.join("dnsmasq/tnat.conf")
    ));
    let rules = ns.ruleset();
    assert!(!rules.contains("virtmesh_"), "our table is gone: {rules}");
    let e = VirtError::from_status(&net.destroy(by_name("tnat")).await.expect_err("again"));
    assert_eq!(
        e.message,
        "Requested operation is not valid: network is not active"
    );

    net.undefine(by_name("tnat")).await.expect("undefine");
    let e = VirtError::from_status(&net.lookup(by_name("tnat")).await.expect_err("gone"));
    assert_eq!(e.code, ErrorCode::NoNetwork);
    assert_eq!(
        e.message,
        "Network not found: no network with matching name 'tnat'"
    );

    let mut seen = Vec::new();
    while seen.len() < 4 {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("event");
        if let Some(Kind::NetworkLifecycle(l)) = ev.kind {
            seen.push(l.r#type);
        }
    }
    assert_eq!(
        seen,
        vec![
            NetworkEventType::NetworkEventDefined as i32,
            NetworkEventType::NetworkEventStarted as i32,
            NetworkEventType::NetworkEventStopped as i32,
            NetworkEventType::NetworkEventUndefined as i32,
        ]
    );
    drop(events);
    served.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_network_rejects_forwarding() {
    if !host_ready() {
        return;
    }
    let ns = Ns::new();
    let served = Served::start(&ns, "a");
    let mut net = served.client();
    let xml = "<network><name>tiso</name><bridge name='vmbr-iso'/>
        <ip address='10.231.2.1' prefix='24'><dhcp><range start='10.231.2.10' end='10.231.2.20'/></dhcp></ip>
        <ip family='ipv6' address='fd00:231:2::1' prefix='64'/></network>";
    net.define_xml(define_req(xml)).await.expect("define");
    net.create(by_name("tiso")).await.expect("start");
    let (_, addr) = ns.ip(&["addr", "show", "dev", "vmbr-iso"]);
    assert!(addr.contains("inet 10.231.2.1/24"), "{addr}");
    assert!(addr.contains("inet6 fd00:231:2::1/64"), "{addr}");
    assert!(ns.dnsmasq_pid("tiso").is_some(), "dnsmasq runs");
    let conf =
        std::fs::read_to_string(ns.config().state_dir.join("dnsmasq/tiso.conf")).expect("conf");
    assert!(conf.contains("dhcp-option=3\nno-resolv\n"), "{conf}");
    let rules = ns.ruleset();
    assert!(rules.contains("table ip virtmesh_vmbr_iso"), "{rules}");
    assert!(rules.contains("table ip6 virtmesh_vmbr_iso"), "{rules}");
    assert!(
        rules.contains("oifname \"vmbr-iso\" counter packets 0 bytes 0 reject"),
        "{rules}"
    );
    assert!(!rules.contains("masquerade"), "{rules}");

    // A live range change is in dnsmasq.conf: dnsmasq restarts on it.
    let before = ns.dnsmasq_pid("tiso").expect("dnsmasq");
    net.update(pb::NetworkUpdateRequest {
        network: Some(by_name("tiso")),
        command: pb::NetworkUpdateCommand::AddLast as i32,
        section: pb::NetworkUpdateSection::NetworkSectionIpDhcpRange as i32,
        parent_index: -1,
        xml: "<range start='10.231.2.30' end='10.231.2.40'/>".into(),
        live: true,
        config: false,
    })
    .await
    .expect("range update");
    let after = ns.dnsmasq_pid("tiso").expect("dnsmasq runs again");
    assert_ne!(before, after, "restarted");
    let conf =
        std::fs::read_to_string(ns.config().state_dir.join("dnsmasq/tiso.conf")).expect("conf");
    assert!(
        conf.contains("dhcp-range=10.231.2.30,10.231.2.40,255.255.255.0\n"),
        "{conf}"
    );
    assert!(conf.contains("dhcp-lease-max=22\n"), "{conf}");
    net.destroy(by_name("tiso")).await.expect("destroy");
    assert!(!ns.link_exists("vmbr-iso"));
    assert!(!ns.ruleset().contains("virtmesh_"));
    assert!(ns.dnsmasq_pid("tiso").is_none());
    served.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_and_open_networks() {
    if !host_ready() {
        return;
    }
    let ns = Ns::new();
    let served = Served::start(&ns, "a");
    let mut net = served.client();
    let routed = "<network><name>troute</name><forward mode='route'/><bridge name='vmbr-rt'/>
        <ip address='10.231.3.1' prefix='24'/>
        <route address='10.232.9.0' prefix='24' gateway='10.231.3.2' metric='5'/></network>";
    net.define_xml(define_req(routed))
        .await
        .expect("define routed");
    net.create(by_name("troute")).await.expect("start routed");
    let rules = ns.ruleset();
    assert!(rules.contains("table ip virtmesh_vmbr_rt"), "{rules}");
    assert!(
        rules.contains("oifname \"vmbr-rt\" ip daddr 10.231.3.0/24"),
        "{rules}"
    );
    assert!(
        !rules.contains("masquerade") && !rules.contains("ct state"),
        "{rules}"
    );
    assert_eq!(
        ns.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "1"
    );
    let (_, routes) = ns.ip(&["route", "show", "10.232.9.0/24"]);
    assert!(
        routes.contains("via 10.231.3.2") && routes.contains("metric 5"),
        "static route: {routes}"
    );

    // Open: a bridge and dnsmasq, but no firewall rules at all.
    let open = "<network><name>topen</name><forward mode='open'/><bridge name='vmbr-open'/>
        <ip address='10.231.4.1' prefix='24'/></network>";
    net.create_xml(define_req(open))
        .await
        .expect("create transient open");
    assert!(ns.link_exists("vmbr-open"));
    assert!(!ns.ruleset().contains("virtmesh_vmbr_open"));
    let list: Vec<pb::NetworkSummary> = net
        .list(pb::ListFilter {
            transient: true,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .collect::<Result<_, _>>()
        .await
        .expect("stream");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "topen");
    assert!(list[0].active);

    // A transient network is gone once destroyed.
    net.destroy(by_name("topen")).await.expect("destroy open");
    assert!(net.lookup(by_name("topen")).await.is_err());
    assert!(!ns.link_exists("vmbr-open"));
    net.destroy(by_name("troute"))
        .await
        .expect("destroy routed");
    assert!(!ns.link_exists("vmbr-rt"));
    assert!(!ns.ruleset().contains("virtmesh_"));
    served.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_link_fails_start_and_is_left_alone() {
    if !host_ready() {
        return;
    }
    let ns = Ns::new();
    let (ok, _) = ns.ip(&[
        "link",
        "add",
        "vmbr-taken",
        "type",
        "veth",
        "peer",
        "name",
        "vmbr-peer",
    ]);
    assert!(ok, "create the squatting veth");
    let served = Served::start(&ns, "a");
    let mut net = served.client();
    let xml = "<network><name>tclash</name><forward mode='nat'/><bridge name='vmbr-taken'/>
        <ip address='10.231.5.1' prefix='24'><dhcp><range start='10.231.5.10' end='10.231.5.20'/></dhcp></ip></network>";
    net.define_xml(define_req(xml)).await.expect("define");
    let e = VirtError::from_status(
        &net.create(by_name("tclash"))
            .await
            .expect_err("start must fail"),
    );
    assert!(
        e.message.contains("Unable to create bridge vmbr-taken")
            && e.message.contains("File exists"),
        "clear error: {}",
        e.message
    );
    assert!(
        ns.link_exists("vmbr-taken"),
        "the link that was there is NOT removed"
    );
    assert!(ns.link_exists("vmbr-peer"));
    assert!(
        !ns.ruleset().contains("virtmesh_"),
        "nothing of ours is left"
    );
    assert!(ns.dnsmasq_pid("tclash").is_none());
    let s = net
        .lookup(by_name("tclash"))
        .await
        .expect("lookup")
        .into_inner();
    assert!(!s.active);
    served.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_driver_finds_running_network_and_autostarts() {
    if !host_ready() {
        return;
    }
    let ns = Ns::new();
    let served = Served::start(&ns, "a");
    let mut net = served.client();
    net.define_xml(define_req(NAT)).await.expect("define");
    net.create(by_name("tnat")).await.expect("start");
    let auto = "<network><name>tauto</name><bridge name='vmbr-auto'/><ip address='10.231.6.1' prefix='24'/></network>";
    net.define_xml(define_req(auto)).await.expect("define auto");
    net.set_autostart(pb::SetAutostartRequest {
        object: Some(by_name("tauto")),
        autostart: true,
    })
    .await
    .expect("autostart");
    let pid = ns.dnsmasq_pid("tnat").expect("dnsmasq");
    let (_, before) = ns.ip(&["-o", "link", "show", "dev", "vmbr-nat"]);
    // A guest's port, which must survive the restart.
    let port = net
        .port_create_xml(pb::PortCreateRequest {
            network: Some(by_name("tnat")),
            xml: PORT.into(),
            reclaim: false,
            validate: false,
        })
        .await
        .expect("port")
        .into_inner();
    assert_eq!(port.port_uuid, "2b4bd1c5-1b39-4b8e-a0a2-4b2f6c0a0b01");
    assert_eq!(port.owner_name, "guest1");
    assert_eq!(port.mac, "52:54:00:00:09:01");
    let e = net
        .port_create_xml(pb::PortCreateRequest {
            network: Some(by_name("tnat")),
            xml: PORT.into(),
            reclaim: false,
            validate: false,
        })
        .await
        .expect_err("same port twice");
    assert_eq!(VirtError::from_status(&e).code, ErrorCode::NetworkPortExist);
    drop(net);
    served.shutdown();

    // The network keeps running while no driver is there.
    assert!(ns.link_exists("vmbr-nat"));
    assert_eq!(ns.dnsmasq_pid("tnat"), Some(pid));

    let served = Served::start(&ns, "b");
    let mut net = served.client();
    let s = net
        .lookup(by_name("tnat"))
        .await
        .expect("lookup")
        .into_inner();
    assert!(s.active, "recovered as active");
    assert_eq!(ns.dnsmasq_pid("tnat"), Some(pid), "dnsmasq undisturbed");
    let (_, after) = ns.ip(&["-o", "link", "show", "dev", "vmbr-nat"]);
    assert_eq!(
        before.split(':').next(),
        after.split(':').next(),
        "same ifindex"
    );
    let port_ref = pb::PortRef {
        network: Some(by_name("tnat")),
        port_uuid: "2b4bd1c5-1b39-4b8e-a0a2-4b2f6c0a0b01".into(),
    };
    let xml = net
        .port_get_xml_desc(port_ref.clone())
        .await
        .expect("port survives")
        .into_inner()
        .xml;
    assert!(
        xml.contains("<plug type='network' bridge='vmbr-nat'/>"),
        "{xml}"
    );
    net.port_delete(port_ref.clone())
        .await
        .expect("port delete");
    let e = VirtError::from_status(&net.port_lookup(port_ref).await.expect_err("deleted"));
    assert_eq!(e.code, ErrorCode::NoNetworkPort);
    let a = net
        .lookup(by_name("tauto"))
        .await
        .expect("lookup auto")
        .into_inner();
    assert!(a.active && a.autostart, "autostarted: {a:?}");
    assert!(ns.link_exists("vmbr-auto"));

    net.destroy(by_name("tnat")).await.expect("destroy");
    net.destroy(by_name("tauto")).await.expect("destroy auto");
    assert!(!ns.link_exists("vmbr-nat") && !ns.link_exists("vmbr-auto"));
    assert!(!ns.ruleset().contains("virtmesh_"));
    served.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_mode_uses_an_existing_bridge_without_plumbing() {
    if !host_ready() {
        return;
    }
    let ns = Ns::new();
    let (ok, _) = ns.ip(&["link", "add", "vmbr-host", "type", "bridge"]);
    assert!(ok, "create the host bridge");
    let served = Served::start(&ns, "a");
    let mut net = served.client();
    let xml =
        "<network><name>thost</name><forward mode='bridge'/><bridge name='vmbr-host'/></network>";
    net.define_xml(define_req(xml)).await.expect("define");
    let out = net
        .get_xml_desc(pb::GetXmlDescRequest {
            object: Some(by_name("thost")),
            ..Default::default()
        })
        .await
        .expect("xml")
        .into_inner()
        .xml;
    assert!(!out.contains("<mac"), "no MAC for a host bridge: {out}");
    net.create(by_name("thost")).await.expect("start");
    net.port_create_xml(pb::PortCreateRequest {
        network: Some(by_name("thost")),
        xml: PORT.into(),
        reclaim: false,
        validate: false,
    })
    .await
    .expect("port on a host bridge");
    let xml = net
        .port_get_xml_desc(pb::PortRef {
            network: Some(by_name("thost")),
            port_uuid: "2b4bd1c5-1b39-4b8e-a0a2-4b2f6c0a0b01".into(),
        })
        .await
        .expect("port xml")
        .into_inner()
        .xml;
    assert!(
        xml.contains("<plug type='bridge' bridge='vmbr-host'/>"),
        "{xml}"
    );
    let live = net
        .get_xml_desc(pb::GetXmlDescRequest {
            object: Some(by_name("thost")),
            ..Default::default()
        })
        .await
        .expect("live xml")
        .into_inner()
        .xml;
    assert!(live.starts_with("<network connections='1'>\n"), "{live}");
    assert!(ns.dnsmasq_pid("thost").is_none());
    assert!(!ns.ruleset().contains("virtmesh_"));
    net.destroy(by_name("thost")).await.expect("destroy");
    assert!(ns.link_exists("vmbr-host"), "the host's bridge stays");
    served.shutdown();
}

/// A guest in a namespace of its own, cabled to the network's bridge by a
/// veth pair, takes a lease from our dnsmasq with busybox's udhcpc; the
/// lease then shows in GetDHCPLeases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_namespace_gets_a_dhcp_lease_and_dns_answers() {
    if !host_ready() {
        return;
    }
    if Command::new("busybox").arg("true").status().is_err() {
        let why = "busybox (udhcpc) is not installed (scripts/install-host-deps.sh)";
        if std::env::var("VIRTMESH_REQUIRE_HOST").as_deref() == Ok("1") {
            panic!("VIRTMESH_REQUIRE_HOST=1 but {why}");
        }
        eprintln!("skipping: {why}");
        return;
    }
    let ns = Ns::new();
    let guest = Ns::new();
    let served = Served::start(&ns, "a");
    let mut net = served.client();
    let xml = "<network><name>tlease</name><forward mode='nat'/><bridge name='vmbr-lease' stp='off'/>
        <domain name='lab.test'/><dns><host ip='10.231.7.7'><hostname>dbhost</hostname></host></dns>
        <ip address='10.231.7.1' prefix='24'><dhcp><range start='10.231.7.100' end='10.231.7.110'/></dhcp></ip></network>";
    net.define_xml(define_req(xml)).await.expect("define");
    net.create(by_name("tlease")).await.expect("start");
    let cable = [
        vec![
            "link",
            "add",
            "vmg0",
            "type",
            "veth",
            "peer",
            "name",
            "vmg1",
            "netns",
            &guest.name,
        ],
        vec!["link", "set", "vmg0", "master", "vmbr-lease", "up"],
    ];
    for args in &cable {
        assert!(ns.ip(args).0, "ip {args:?}");
    }
    assert!(
        guest
            .ip(&["link", "set", "vmg1", "address", "52:54:00:00:07:01", "up"])
            .0
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &guest.name])
        .args([
            "busybox", "udhcpc", "-i", "vmg1", "-n", "-q", "-f", "-t", "10", "-T", "1",
        ])
        .args(["-x", "hostname:guest1", "-s", "/bin/true"])
        .output()
        .expect("run udhcpc");
    assert!(
        out.status.success(),
        "udhcpc got no lease: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // dnsmasq writes its lease file right after the ACK; allow a moment.
    let mut leases = Vec::new();
    for _ in 0..50 {
        leases = net
            .get_dhcp_leases(pb::DhcpLeasesRequest {
                network: Some(by_name("tlease")),
                mac: "52:54:00:00:07:01".into(),
            })
            .await
            .expect("leases")
            .into_inner()
            .collect::<Result<Vec<_>, _>>()
            .await
            .expect("lease stream");
        if !leases.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(leases.len(), 1, "one lease: {leases:?}");
    let l = &leases[0];
    assert_eq!(l.iface, "vmbr-lease");
    assert_eq!(l.family, "ipv4");
    assert_eq!(l.prefix, 24);
    assert_eq!(l.hostname, "guest1");
    assert!(l.ipaddr.starts_with("10.231.7.1"), "in range: {}", l.ipaddr);
    assert!(l.expiry_time > 0);

    // With the leased address, the guest asks our dnsmasq for a DNS host
    // of the network (the <dns><host> of the definition, via addnhosts).
    let cidr = format!("{}/24", l.ipaddr);
    assert!(guest.ip(&["addr", "add", &cidr, "dev", "vmg1"]).0);
    let mut answer = String::new();
    for _ in 0..5 {
        answer = guest.exec(&["busybox", "nslookup", "dbhost", "10.231.7.1"]);
        if answer.contains("10.231.7.7") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(answer.contains("10.231.7.7"), "DNS answer: {answer}");
    net.destroy(by_name("tlease")).await.expect("destroy");
    assert!(!ns.link_exists("vmbr-lease"));
    served.shutdown();
}

/// A network whose bridge vanished while no driver ran is found stopped
/// by the next driver, which removes the rest of it (dnsmasq, our table)
/// and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_driver_cleans_up_a_network_whose_bridge_vanished() {
    if !host_ready() {
        return;
    }
    let ns = Ns::new();
    let served = Served::start(&ns, "a");
    let mut net = served.client();
    net.define_xml(define_req(NAT)).await.expect("define");
    net.create(by_name("tnat")).await.expect("start");
    let pid = ns.dnsmasq_pid("tnat").expect("dnsmasq");
    drop(net);
    served.shutdown();

    assert!(
        ns.ip(&["link", "del", "vmbr-nat"]).0,
        "someone removes the bridge"
    );
    let served = Served::start(&ns, "b");
    let mut net = served.client();
    let s = net
        .lookup(by_name("tnat"))
        .await
        .expect("lookup")
        .into_inner();
    assert!(!s.active && s.persistent, "found stopped: {s:?}");
    let conf = ns.config().state_dir.join("dnsmasq/tnat.conf");
    assert!(!dnsmasq::is_ours(pid, &conf), "its dnsmasq is stopped");
    assert!(!ns.ruleset().contains("virtmesh_"), "its table is removed");
    // And it starts again normally.
    net.create(by_name("tnat")).await.expect("start again");
    assert!(ns.link_exists("vmbr-nat"));
    net.destroy(by_name("tnat")).await.expect("destroy");
    served.shutdown();
}

/// A start that fails midway (here: a table of our name exists already,
/// made by someone else) undoes what it did (the bridge) and leaves the
/// other party's table alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_start_midway_undoes_only_its_own_work() {
    if !host_ready() {
        return;
    }
    let ns = Ns::new();
    ns.exec(&["nft", "add", "table", "ip", "virtmesh_vmbr_mid"]);
    assert!(ns.ruleset().contains("table ip virtmesh_vmbr_mid"));
    let served = Served::start(&ns, "a");
    let mut net = served.client();
    let xml = "<network><name>tmid</name><forward mode='nat'/><bridge name='vmbr-mid'/>
        <ip address='10.231.8.1' prefix='24'><dhcp><range start='10.231.8.10' end='10.231.8.20'/></dhcp></ip></network>";
    net.define_xml(define_req(xml)).await.expect("define");
    let e = VirtError::from_status(&net.create(by_name("tmid")).await.expect_err("must fail"));
    assert!(e.message.contains("already exists"), "{}", e.message);
    assert!(!ns.link_exists("vmbr-mid"), "our bridge is undone");
    assert!(ns.dnsmasq_pid("tmid").is_none());
    assert!(
        ns.ruleset().contains("table ip virtmesh_vmbr_mid"),
        "the table we did not create stays"
    );
    assert!(
        !net.lookup(by_name("tmid"))
            .await
            .expect("lookup")
            .into_inner()
            .active
    );
    served.shutdown();
}

/// Every corpus network that libvirt started, started for real here: the
/// dnsmasq files our start wrote equal libvirt's once our directories are
/// put back to libvirt's (the corpus README's rule 8), the set of files
/// included. Each network is destroyed and undefined afterwards, leaving
/// nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_networks_start_with_libvirts_dnsmasq_files() {
    if !host_ready() {
        return;
    }
    let ns = Ns::new();
    let served = Served::start(&ns, "a");
    let mut net = served.client();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/network");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("dnsmasq.conf").exists())
        .collect();
    cases.sort();
    let cfg = ns.config();
    let (state, run) = (
        cfg.state_dir.to_string_lossy().into_owned(),
        cfg.run_dir.to_string_lossy().into_owned(),
    );
    let unmap = |s: String| {
        s.replace(&state, "/var/lib/libvirt")
            .replace(&run, "/run/libvirt")
    };
    let (mut pass, mut failures) = (0, Vec::new());
    for case in &cases {
        let input = std::fs::read_to_string(case.join("input.xml")).expect("input");
        let s = net
            .define_xml(define_req(&input))
            .await
            .expect("define")
            .into_inner();
        if let Err(e) = net.create(by_name(&s.name)).await {
            failures.push(format!("{}: start failed: {}", s.name, e.message()));
            net.undefine(by_name(&s.name)).await.expect("undefine");
            continue;
        }
        let mut ok = true;
        for ext in ["conf", "hostsfile", "addnhosts"] {
            let want = std::fs::read_to_string(case.join(format!("dnsmasq.{ext}"))).ok();
            let got = std::fs::read_to_string(
                cfg.state_dir
                    .join("dnsmasq")
                    .join(format!("{}.{ext}", s.name)),
            )
            .ok()
            .map(unmap);
            let norm = |t: Option<String>| t.map(|t| t.trim_end_matches('\n').to_owned());
            if norm(want.clone()) != norm(got.clone()) {
                ok = false;
                failures.push(format!("{}.{ext}: want {want:?}, got {got:?}", s.name));
            }
        }
        if ok {
            pass += 1;
        }
        net.destroy(by_name(&s.name)).await.expect("destroy");
        net.undefine(by_name(&s.name)).await.expect("undefine");
    }
    println!(
        "started corpus networks with libvirt's dnsmasq files: {pass}/{}",
        cases.len()
    );
    for f in &failures {
        println!("  FAIL {f}");
    }
    let (_, links) = ns.ip(&["-o", "link", "show"]);
    assert_eq!(links.lines().count(), 1, "only lo is left: {links}");
    assert!(!ns.ruleset().contains("virtmesh_"));
    assert!(cases.len() >= 20);
    assert!(pass * 10 >= cases.len() * 9, "below 90%: {failures:?}");
    served.shutdown();
}

/// A port of guest `n` (its own UUID and MAC).
fn port_xml(n: u8) -> String {
    format!(
        "<networkport><uuid>2b4bd1c5-1b39-4b8e-a0a2-4b2f6c0a0c{n:02x}</uuid>\
         <owner><name>guest{n}</name><uuid>6a3e3c4e-6a8b-4c54-9f3e-2222222222{n:02x}</uuid></owner>\
         <mac address='52:54:00:00:0a:{n:02x}'/></networkport>"
    )
}

fn port_req(net: &str, xml: String, reclaim: bool) -> pb::PortCreateRequest {
    pb::PortCreateRequest {
        network: Some(by_name(net)),
        xml,
        reclaim,
        validate: false,
    }
}

fn port_ref(net: &str, n: u8) -> pb::PortRef {
    pb::PortRef {
        network: Some(by_name(net)),
        port_uuid: format!("2b4bd1c5-1b39-4b8e-a0a2-4b2f6c0a0c{n:02x}"),
    }
}

async fn port_plug(net: &mut NetworkClient<Channel>, name: &str, n: u8) -> String {
    let xml = net
        .port_get_xml_desc(port_ref(name, n))
        .await
        .expect("port xml")
        .into_inner()
        .xml;
    xml.lines()
        .find(|l| l.contains("<plug "))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

async fn live_xml(net: &mut NetworkClient<Channel>, name: &str) -> String {
    net.get_xml_desc(pb::GetXmlDescRequest {
        object: Some(by_name(name)),
        ..Default::default()
    })
    .await
    .expect("live xml")
    .into_inner()
    .xml
}

/// macvtap networks (libvirt's direct forward modes): starting creates
/// nothing on the host; each port gets a pool interface as libvirt's
/// networkAllocatePort picks it (least used; passthrough: a free one),
/// with libvirt's error when none is free; the counts come back after a
/// restart of the service and drop when a port is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macvtap_pools_hand_out_interfaces_and_survive_a_restart() {
    if !host_ready() {
        return;
    }
    let ns = Ns::new();
    for (a, b) in [
        ("vp0", "vp0-peer"),
        ("vp1", "vp1-peer"),
        ("vp2", "vp2-peer"),
    ] {
        let (ok, _) = ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        assert!(ok, "veth {a}");
    }
    let (_, links_before) = ns.ip(&["-o", "link"]);
    let served = Served::start(&ns, "a");
    let mut net = served.client();
    let vepa = "<network><name>tvepa</name><forward mode='vepa'>\
                <interface dev='vp0'/><interface dev='vp1'/></forward></network>";
    let pass = "<network><name>tpass</name><forward mode='passthrough' dev='vp2'/></network>";
    for xml in [vepa, pass] {
        net.define_xml(define_req(xml)).await.expect("define");
    }
    net.create(by_name("tvepa")).await.expect("start vepa");
    net.create(by_name("tpass"))
        .await
        .expect("start passthrough");
    let (_, links_started) = ns.ip(&["-o", "link"]);
    assert_eq!(links_before, links_started, "a start creates no link");
    assert!(ns.dnsmasq_pid("tvepa").is_none());
    assert!(!ns.ruleset().contains("virtmesh_"));

    for n in 1..=3 {
        net.port_create_xml(port_req("tvepa", port_xml(n), false))
            .await
            .expect("vepa port");
    }
    // Least used first, ties to the first in the pool: vp0, vp1, vp0.
    for (n, dev) in [(1, "vp0"), (2, "vp1"), (3, "vp0")] {
        assert_eq!(
            port_plug(&mut net, "tvepa", n).await,
            format!("<plug type='direct' dev='{dev}' mode='vepa'/>")
        );
    }
    let live = live_xml(&mut net, "tvepa").await;
    assert!(live.starts_with("<network connections='3'>"), "{live}");
    assert!(
        live.contains("<interface dev='vp0' connections='2'/>")
            && live.contains("<interface dev='vp1' connections='1'/>"),
        "{live}"
    );

    net.port_create_xml(port_req("tpass", port_xml(4), false))
        .await
        .expect("passthrough port");
    assert_eq!(
        port_plug(&mut net, "tpass", 4).await,
        "<plug type='direct' dev='vp2' mode='passthrough'/>"
    );
    let e = VirtError::from_status(
        &net.port_create_xml(port_req("tpass", port_xml(5), false))
            .await
            .expect_err("vp2 is taken"),
    );
    assert_eq!(e.code, ErrorCode::InternalError);
    assert_eq!(
        e.message,
        "internal error: network 'tpass' requires exclusive access to interfaces, but none are available"
    );
    drop(net);
    served.shutdown();

    // A restarted service knows which interfaces are in use.
    let served = Served::start(&ns, "b");
    let mut net = served.client();
    let live = live_xml(&mut net, "tvepa").await;
    assert!(
        live.contains("<interface dev='vp0' connections='2'/>")
            && live.contains("<interface dev='vp1' connections='1'/>"),
        "{live}"
    );
    net.port_create_xml(port_req("tvepa", port_xml(6), false))
        .await
        .expect("vepa port after restart");
    assert_eq!(
        port_plug(&mut net, "tvepa", 6).await,
        "<plug type='direct' dev='vp1' mode='vepa'/>"
    );
    let e = VirtError::from_status(
        &net.port_create_xml(port_req("tpass", port_xml(5), false))
            .await
            .expect_err("vp2 is still taken"),
    );
    assert!(e.message.contains("requires exclusive access"), "{e:?}");
    // A guest's port handed back with a plug the pool does not have.
    let foreign = port_xml(7).replace(
        "</networkport>",
        "<plug type='direct' dev='eth9' mode='passthrough'/></networkport>",
    );
    let e = VirtError::from_status(
        &net.port_create_xml(port_req("tpass", foreign, true))
            .await
            .expect_err("eth9 is not in the pool"),
    );
    assert_eq!(
        e.message,
        "internal error: network 'tpass' doesn't have dev='eth9' in use by network port \
         '2b4bd1c5-1b39-4b8e-a0a2-4b2f6c0a0c07'"
    );
    // Deleting the port frees the device.
    net.port_delete(port_ref("tpass", 4)).await.expect("delete");
    net.port_create_xml(port_req("tpass", port_xml(5), false))
        .await
        .expect("vp2 is free again");

    // Update forward-interface: a pool interface in use cannot go; one
    // added live takes the next port (it has no connection yet).
    let fwd_update = |command: pb::NetworkUpdateCommand, dev: &str| pb::NetworkUpdateRequest {
        network: Some(by_name("tvepa")),
        command: command as i32,
        section: pb::NetworkUpdateSection::NetworkSectionForwardInterface as i32,
        parent_index: -1,
        xml: format!("<interface dev='{dev}'/>"),
        live: true,
        config: true,
    };
    let e = VirtError::from_status(
        &net.update(fwd_update(pb::NetworkUpdateCommand::Delete, "vp0"))
            .await
            .expect_err("vp0 is in use"),
    );
    assert_eq!(
        e.message,
        "Requested operation is not valid: unable to delete interface 'vp0' in network 'tvepa'. \
         It is currently being used by 2 domains."
    );
    net.update(fwd_update(pb::NetworkUpdateCommand::AddLast, "vp3"))
        .await
        .expect("add vp3");
    net.port_create_xml(port_req("tvepa", port_xml(8), false))
        .await
        .expect("port on vp3");
    assert_eq!(
        port_plug(&mut net, "tvepa", 8).await,
        "<plug type='direct' dev='vp3' mode='vepa'/>"
    );
    let config = net
        .get_xml_desc(pb::GetXmlDescRequest {
            object: Some(by_name("tvepa")),
            inactive: true,
            ..Default::default()
        })
        .await
        .expect("config xml")
        .into_inner()
        .xml;
    assert!(config.contains("<interface dev='vp3'/>"), "{config}");

    // An SR-IOV pool from a device without virtual functions.
    let pf = "<network><name>tpf</name><forward mode='private'><pf dev='vp0'/></forward></network>";
    net.define_xml(define_req(pf)).await.expect("define pf");
    let e = VirtError::from_status(&net.create(by_name("tpf")).await.expect_err("no VFs"));
    assert_eq!(
        e.message,
        "internal error: Could not get Virtual functions on vp0"
    );

    net.destroy(by_name("tvepa")).await.expect("destroy");
    net.destroy(by_name("tpass")).await.expect("destroy");
    let (_, links_after) = ns.ip(&["-o", "link"]);
    assert_eq!(links_before, links_after, "the pool's links are not ours");
    served.shutdown();
}

/// `tc -s`-free listing of `what` (qdisc/class/filter) on `dev`.
fn tc_show(ns: &Ns, what: &str, dev: &str) -> String {
    ns.exec(&["tc", what, "show", "dev", dev])
}

fn port_with(n: u8, extra: &str) -> String {
    port_xml(n).replace("</networkport>", &format!("{extra}</networkport>"))
}

/// Network QoS as libvirt does it: the network's `<bandwidth>` is an HTB
/// tree on the bridge plus an ingress policer; a port's inbound floor
/// becomes a class of its own (classID in the port XML), what is left
/// goes to the shared class 1:2, a floor that would overcommit the
/// network is refused, a portgroup's limits go to ports without their
/// own, and deleting the port gives its share back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_bandwidth_shapes_the_bridge_and_guarantees_floors() {
    if !host_ready() {
        return;
    }
    let ns = Ns::new();
    let served = Served::start(&ns, "a");
    let mut net = served.client();
    let xml = "<network><name>qos</name><forward mode='nat'/><bridge name='vmqos0'/>\
        <bandwidth><inbound average='1000' peak='2000'/></bandwidth>\
        <portgroup name='sales'><bandwidth><outbound average='10' peak='50' burst='64'/></bandwidth></portgroup>\
        <ip address='10.77.0.1' prefix='24'/></network>";
    net.define_xml(define_req(xml)).await.expect("define");
    net.create(by_name("qos")).await.expect("start");
    let qdiscs = tc_show(&ns, "qdisc", "vmqos0");
    assert!(qdiscs.contains("qdisc htb 1: root"), "{qdiscs}");
    let classes = tc_show(&ns, "class", "vmqos0");
    // 2000 KiB/s = 16 Mbit/s ceiling on the network's class 1:1.
    assert!(
        classes.contains("class htb 1:1 root rate 8Mbit ceil 16Mbit"),
        "{classes}"
    );

    net.port_create_xml(port_req(
        "qos",
        port_with(1, "<bandwidth><inbound floor='600'/></bandwidth>"),
        false,
    ))
    .await
    .expect("port with a floor");
    let port1 = net
        .port_get_xml_desc(port_ref("qos", 1))
        .await
        .expect("port xml")
        .into_inner()
        .xml;
    assert!(
        port1.contains("<bandwidth classID='3'>\n    <inbound floor='600'/>"),
        "{port1}"
    );
    // libvirt's schema accepts the port as we hand it out.
    let port_file = ns.dir.path().join("port1.xml");
    std::fs::write(&port_file, &port1).expect("write");
    let jing = Command::new("jing")
        .arg("/usr/share/libvirt/schemas/networkport.rng")
        .arg(&port_file)
        .output();
    match jing {
        Ok(out) => assert!(
            out.status.success(),
            "networkport.rng rejects {port1}: {}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(_) => assert!(
            std::env::var("VIRTMESH_REQUIRE_HOST").as_deref() != Ok("1"),
            "VIRTMESH_REQUIRE_HOST=1 but jing is not installed"
        ),
    }
    let classes = tc_show(&ns, "class", "vmqos0");
    // 600 KiB/s guaranteed, up to the network's peak; the shared class
    // keeps 2000 - 600 KiB/s. (A leaf qdisc, sfq where the kernel has
    // it, shows as "leaf N:" between parent and prio.)
    assert!(
        class_line(&classes, "1:3").contains("rate 4800Kbit ceil 16Mbit"),
        "{classes}"
    );
    assert!(
        class_line(&classes, "1:2").contains("rate 11200Kbit ceil 16Mbit"),
        "{classes}"
    );
    let filters = tc_show(&ns, "filter", "vmqos0");
    assert!(filters.contains("flowid 1:3"), "{filters}");

    let over = net
        .port_create_xml(port_req(
            "qos",
            port_with(2, "<bandwidth><inbound floor='1500'/></bandwidth>"),
            false,
        ))
        .await
        .expect_err("overcommit");
    let e = VirtError::from_status(&over);
    assert_eq!(e.code, ErrorCode::OperationInvalid, "{e:?}");
    assert!(
        e.message.contains(
            "new combined inbound floor=2100 would overcommit peak=2000 on network 'qos'"
        ),
        "{}",
        e.message
    );

    net.port_create_xml(port_req("qos", port_with(3, "<group>sales</group>"), false))
        .await
        .expect("port in a portgroup");
    let port3 = net
        .port_get_xml_desc(port_ref("qos", 3))
        .await
        .expect("port xml")
        .into_inner()
        .xml;
    assert!(
        port3.contains("<bandwidth>\n    <outbound average='10' peak='50' burst='64'/>"),
        "the portgroup's limits: {port3}"
    );

    // Typed parameters: libvirt's field names; a new floor re-rates the
    // port's class and the shared one.
    let params = net
        .port_get_parameters(port_ref("qos", 1))
        .await
        .expect("parameters")
        .into_inner()
        .params;
    let fields: Vec<(String, u64)> = params.into_iter().map(|p| (p.field, p.value)).collect();
    assert_eq!(
        fields,
        [
            ("inbound.average".to_owned(), 0),
            ("inbound.peak".to_owned(), 0),
            ("inbound.floor".to_owned(), 600),
            ("inbound.burst".to_owned(), 0),
        ]
    );
    let set = |floor: u64| pb::PortSetParametersRequest {
        port: Some(port_ref("qos", 1)),
        params: vec![pb::PortParameter {
            field: "inbound.floor".into(),
            value: floor,
        }],
    };
    net.port_set_parameters(set(800)).await.expect("floor 800");
    let classes = tc_show(&ns, "class", "vmqos0");
    assert!(
        class_line(&classes, "1:3").contains("rate 6400Kbit ceil 16Mbit"),
        "{classes}"
    );
    assert!(
        class_line(&classes, "1:2").contains("rate 9600Kbit ceil 16Mbit"),
        "{classes}"
    );
    let too_much = net
        .port_set_parameters(set(2500))
        .await
        .expect_err("overcommit");
    assert_eq!(
        VirtError::from_status(&too_much).code,
        ErrorCode::OperationInvalid
    );
    let unknown = net
        .port_set_parameters(pb::PortSetParametersRequest {
            port: Some(port_ref("qos", 1)),
            params: vec![pb::PortParameter {
                field: "inbound.nonsense".into(),
                value: 1,
            }],
        })
        .await
        .expect_err("unknown field");
    assert_eq!(
        VirtError::from_status(&unknown).message,
        "argument unsupported: parameter 'inbound.nonsense' not supported"
    );

    net.port_delete(port_ref("qos", 1)).await.expect("delete");
    let classes = tc_show(&ns, "class", "vmqos0");
    assert!(class_line(&classes, "1:3").is_empty(), "{classes}");
    assert!(
        class_line(&classes, "1:2").contains("rate 16Mbit ceil 16Mbit"),
        "{classes}"
    );
    assert!(!tc_show(&ns, "filter", "vmqos0").contains("flowid 1:3"));
    // Parameters without a floor take the port's class away.
    net.port_create_xml(port_req(
        "qos",
        port_with(4, "<bandwidth><inbound floor='100'/></bandwidth>"),
        false,
    ))
    .await
    .expect("port 4");
    assert!(!class_line(&tc_show(&ns, "class", "vmqos0"), "1:3").is_empty());
    net.port_set_parameters(pb::PortSetParametersRequest {
        port: Some(port_ref("qos", 4)),
        params: vec![pb::PortParameter {
            field: "inbound.average".into(),
            value: 100,
        }],
    })
    .await
    .expect("no floor");
    let classes = tc_show(&ns, "class", "vmqos0");
    assert!(class_line(&classes, "1:3").is_empty(), "{classes}");
    assert!(
        class_line(&classes, "1:2").contains("rate 16Mbit ceil 16Mbit"),
        "{classes}"
    );
    let port4 = net
        .port_get_xml_desc(port_ref("qos", 4))
        .await
        .expect("port xml")
        .into_inner()
        .xml;
    assert!(
        port4.contains("<bandwidth>\n    <inbound average='100'/>"),
        "{port4}"
    );

    net.destroy(by_name("qos")).await.expect("destroy");
    assert!(!ns.link_exists("vmqos0"));

    // Outbound limits police the bridge's ingress; a kernel without the
    // police action (CONFIG_NET_ACT_POLICE, as on the CI machines) makes
    // the start fail with tc's own words, and leaves nothing behind.
    let out = "<network><name>qosout</name><bridge name='vmqos1'/>\
        <bandwidth><outbound average='500'/></bandwidth><ip address='10.78.0.1' prefix='24'/></network>";
    net.define_xml(define_req(out)).await.expect("define");
    match (kernel_has_police(&ns), net.create(by_name("qosout")).await) {
        (true, Ok(_)) => {
            let f = ns.exec(&["tc", "filter", "show", "dev", "vmqos1", "parent", "ffff:"]);
            assert!(f.contains("police"), "{f}");
            net.destroy(by_name("qosout")).await.expect("destroy");
        }
        (false, Err(status)) => {
            let e = VirtError::from_status(&status);
            assert!(
                e.message.contains("tc filter add dev vmqos1 parent ffff: protocol all u32 match u32 0 0 police rate 500kbps"),
                "{}",
                e.message
            );
        }
        (police, started) => panic!("police action available: {police}, start: {started:?}"),
    }
    assert!(!ns.link_exists("vmqos1"));

    // Nothing to shape on a macvtap network: refused at define.
    let refused = net
        .define_xml(define_req(
            "<network><name>mv</name><forward mode='vepa'><interface dev='eth9'/></forward>\
             <bandwidth><inbound average='10'/></bandwidth></network>",
        ))
        .await
        .expect_err("bandwidth on vepa");
    assert_eq!(
        VirtError::from_status(&refused).message,
        "unsupported configuration: Unsupported network-wide <bandwidth> element in network mv with forward mode='vepa'"
    );
    served.shutdown();
}

/// Whether the kernel has tc's police action: tried on a throwaway veth
/// in the test's namespace.
fn kernel_has_police(ns: &Ns) -> bool {
    let (ok, _) = ns.ip(&[
        "link", "add", "vmprobe0", "type", "veth", "peer", "name", "vmprobe1",
    ]);
    assert!(ok, "veth for the police probe");
    let tc = |args: &[&str]| {
        Command::new("ip")
            .args(["netns", "exec", &ns.name, "tc"])
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let has = tc(&["qdisc", "add", "dev", "vmprobe0", "ingress"])
        && tc(&[
            "filter", "add", "dev", "vmprobe0", "parent", "ffff:", "protocol", "all", "u32",
            "match", "u32", "0", "0", "police", "rate", "1kbps", "burst", "1kb", "drop",
        ]);
    let _ = ns.ip(&["link", "del", "vmprobe0"]);
    has
}

/// The `tc class show` line of class `id` ("" when there is none).
fn class_line<'a>(classes: &'a str, id: &str) -> &'a str {
    let head = format!("class htb {id} parent 1:1 ");
    classes.lines().find(|l| l.starts_with(&head)).unwrap_or("")
}

/// A running NAT network's forward interfaces changed live: the firewall
/// follows (libvirt's networkReloadFirewallRules), our table replaced,
/// the traffic now allowed out only by the new first interface.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_interface_update_reloads_a_nat_firewall() {
    if !host_ready() {
        return;
    }
    let ns = Ns::new();
    let served = Served::start(&ns, "a");
    let mut net = served.client();
    let xml = "<network><name>fwd</name><forward mode='nat'><interface dev='vmup0'/>\
        <interface dev='vmup1'/></forward><bridge name='vmfwd0'/>\
        <ip address='10.79.0.1' prefix='24'/></network>";
    net.define_xml(define_req(xml)).await.expect("define");
    net.create(by_name("fwd")).await.expect("start");
    let rules = ns.ruleset();
    assert!(rules.contains("oifname \"vmup0\""), "{rules}");
    net.update(pb::NetworkUpdateRequest {
        network: Some(by_name("fwd")),
        command: pb::NetworkUpdateCommand::Delete as i32,
        section: pb::NetworkUpdateSection::NetworkSectionForwardInterface as i32,
        parent_index: -1,
        xml: "<interface dev='vmup0'/>".into(),
        live: true,
        config: false,
    })
    .await
    .expect("live update of a nat network's forward interfaces");
    let rules = ns.ruleset();
    assert!(
        rules.contains("oifname \"vmup1\"") && !rules.contains("vmup0"),
        "{rules}"
    );
    assert_eq!(
        rules.matches("table ip virtmesh_vmfwd0").count(),
        1,
        "{rules}"
    );
    net.destroy(by_name("fwd")).await.expect("destroy");
    assert!(!ns.ruleset().contains("virtmesh_"));
    served.shutdown();
}
