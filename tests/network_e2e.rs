//! The network service through the gateway, one test per forward mode:
//! vsh on `qemu:///system` drives networks whose bridges, addresses,
//! dnsmasq and nftables tables live in a network namespace each test
//! creates (the service runs inside it, reached over a unix socket), so
//! the host's own links are never touched. After net-destroy nothing of
//! ours may remain, and what was there before (a host bridge) must.

mod common;

use common::{Netns, Proc, Route, Vsh, is_root, require, start_gateway, which};
use std::path::PathBuf;

/// Gateway + qemu service on loopback, network service inside `ns`.
struct NetMesh {
    ns: Netns,
    dir: tempfile::TempDir,
    vsh: Vsh,
    _gateway: Proc,
    _network: Proc,
    _qemu: Proc,
}

impl NetMesh {
    /// None (with the reason printed, or a failure under
    /// VIRTMESH_REQUIRE_HOST=1) when the host lacks what it needs.
    fn start(tag: &str) -> Option<NetMesh> {
        let have = is_root()
            && which("ip").is_some()
            && which("dnsmasq").is_some()
            && which("nft").is_some();
        if !require(
            "root, ip, dnsmasq and nft (scripts/install-host-deps.sh)",
            have,
        ) {
            return None;
        }
        let ns =
            Netns::create(&format!("vmgw-{}-{tag}", std::process::id())).expect("ip netns add");
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("network.sock");
        let state = dir.path().join("network-state");
        let network = Proc::start(
            "ip",
            &[
                "netns",
                "exec",
                &ns.0,
                env!("CARGO_BIN_EXE_virtmesh-network"),
                "--listen",
                &format!("unix:{}", sock.display()),
                "--state-dir",
                state.to_str().expect("utf-8"),
            ],
        );
        // vsh opens the connection through the hypervisor service first,
        // as virsh does, so the mesh needs a qemu service too.
        let qemu_state = dir.path().join("qemu-state");
        let qemu = Proc::start(
            env!("CARGO_BIN_EXE_virtmesh-qemu"),
            &[
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                qemu_state.to_str().expect("utf-8"),
            ],
        );
        let gateway = start_gateway(
            dir.path(),
            "qemu:///system",
            &[
                Route {
                    name: "qemu",
                    addr: &qemu.addr,
                    routing: "schemes = [\"qemu\"]",
                },
                Route {
                    name: "network",
                    addr: &network.addr,
                    routing: "families = [\"Network\"]",
                },
            ],
        );
        let vsh = Vsh::new(&gateway.addr, "qemu:///system");
        Some(NetMesh {
            ns,
            dir,
            vsh,
            _gateway: gateway,
            _network: network,
            _qemu: qemu,
        })
    }

    fn vsh(&self, args: &[&str]) -> String {
        self.vsh.ok(args)
    }

    fn define(&self, xml: &str) {
        let file = self.dir.path().join("net.xml");
        std::fs::write(&file, xml).expect("xml");
        self.vsh(&["net-define", file.to_str().expect("utf-8")]);
    }

    fn link_exists(&self, name: &str) -> bool {
        self.ns.ip(&["link", "show", name]).status.success()
    }

    fn addresses(&self, link: &str) -> String {
        String::from_utf8_lossy(&self.ns.ip(&["addr", "show", link]).stdout).into_owned()
    }

    /// The rules of our nftables table for `bridge`, if it exists.
    fn nft_table(&self, bridge: &str) -> Option<String> {
        let out = self.ns.exec(
            "nft",
            &["list", "table", "ip", &format!("virtmesh_{bridge}")],
        );
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether a dnsmasq runs with this network's config file.
    fn dnsmasq_running(&self, network: &str) -> bool {
        let conf = self.state_dir().join(format!("dnsmasq/{network}.conf"));
        let conf = conf.display().to_string();
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .any(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("dnsmasq") && c.contains(&conf)
                })
            })
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("network-state")
    }
}

#[test]
fn nat_network_through_the_gateway_in_a_namespace() {
    let Some(m) = NetMesh::start("nat") else {
        return;
    };
    m.define(
        "<network><name>gwnat</name><forward mode='nat'/><bridge name='vmgwbr0'/>\
         <ip address='10.77.5.1' netmask='255.255.255.0'><dhcp><range start='10.77.5.10' end='10.77.5.50'/></dhcp></ip></network>",
    );
    m.vsh(&["net-start", "gwnat"]);
    let list = m.vsh(&["net-list"]);
    assert!(
        list.lines()
            .any(|l| l.contains("gwnat") && l.contains("active")),
        "{list}"
    );
    assert!(m.vsh(&["net-info", "gwnat"]).contains("vmgwbr0"));
    assert!(m.addresses("vmgwbr0").contains("10.77.5.1/24"));
    let rules = m.nft_table("vmgwbr0").expect("our nft table");
    assert!(rules.contains("masquerade"), "{rules}");
    assert!(m.dnsmasq_running("gwnat"));

    m.vsh(&["net-destroy", "gwnat"]);
    assert!(!m.link_exists("vmgwbr0"), "bridge still present");
    assert!(m.nft_table("vmgwbr0").is_none(), "nft table still present");
    assert!(!m.dnsmasq_running("gwnat"), "dnsmasq still running");
    m.vsh(&["net-undefine", "gwnat"]);
}

/// A routed network: its own bridge, DHCP, forwarding rules, but no NAT.
#[test]
fn routed_network_through_the_gateway_in_a_namespace() {
    let Some(m) = NetMesh::start("route") else {
        return;
    };
    m.define(
        "<network><name>gwroute</name><forward mode='route'/><bridge name='vmgwbr1'/>\
         <ip address='10.77.6.1' prefix='24'><dhcp><range start='10.77.6.10' end='10.77.6.20'/></dhcp></ip>\
         <route address='10.77.60.0' prefix='24' gateway='10.77.6.2'/></network>",
    );
    m.vsh(&["net-start", "gwroute"]);
    assert!(m.addresses("vmgwbr1").contains("10.77.6.1/24"));
    let routes = String::from_utf8_lossy(&m.ns.ip(&["route", "show"]).stdout).into_owned();
    assert!(
        routes.contains("10.77.60.0/24 via 10.77.6.2 dev vmgwbr1"),
        "{routes}"
    );
    let rules = m.nft_table("vmgwbr1").expect("our nft table");
    assert!(
        !rules.contains("masquerade"),
        "a routed network NATs: {rules}"
    );
    assert!(rules.contains("10.77.6.0/24"), "{rules}");
    assert!(m.dnsmasq_running("gwroute"));

    m.vsh(&["net-destroy", "gwroute"]);
    assert!(!m.link_exists("vmgwbr1"));
    assert!(m.nft_table("vmgwbr1").is_none());
    assert!(!m.dnsmasq_running("gwroute"));
    m.vsh(&["net-undefine", "gwroute"]);
}

/// An isolated network (no `<forward>`): guests reach each other and the
/// host's DHCP/DNS only; traffic out is rejected, nothing is NATed.
#[test]
fn isolated_network_through_the_gateway_in_a_namespace() {
    let Some(m) = NetMesh::start("iso") else {
        return;
    };
    m.define(
        "<network><name>gwiso</name><bridge name='vmgwbr2'/>\
         <ip address='10.77.7.1' prefix='24'><dhcp><range start='10.77.7.10' end='10.77.7.20'/></dhcp></ip></network>",
    );
    m.vsh(&["net-start", "gwiso"]);
    assert!(m.addresses("vmgwbr2").contains("10.77.7.1/24"));
    let rules = m.nft_table("vmgwbr2").expect("our nft table");
    assert!(!rules.contains("masquerade"), "{rules}");
    assert!(
        rules.contains("reject"),
        "isolated traffic is not rejected: {rules}"
    );
    assert!(m.dnsmasq_running("gwiso"));

    m.vsh(&["net-destroy", "gwiso"]);
    assert!(!m.link_exists("vmgwbr2"));
    assert!(m.nft_table("vmgwbr2").is_none());
    assert!(!m.dnsmasq_running("gwiso"));
    m.vsh(&["net-undefine", "gwiso"]);
}

/// A network over an existing host bridge: starting it creates nothing,
/// and destroying it leaves the bridge (not ours) in place.
#[test]
fn host_bridge_network_through_the_gateway_in_a_namespace() {
    let Some(m) = NetMesh::start("br") else {
        return;
    };
    assert!(
        m.ns.ip(&["link", "add", "hostbr0", "type", "bridge"])
            .status
            .success()
    );
    m.define(
        "<network><name>gwbridge</name><forward mode='bridge'/><bridge name='hostbr0'/></network>",
    );
    m.vsh(&["net-start", "gwbridge"]);
    assert!(m.vsh(&["net-info", "gwbridge"]).contains("hostbr0"));
    assert!(
        m.nft_table("hostbr0").is_none(),
        "no firewall for a host bridge"
    );
    assert!(!m.dnsmasq_running("gwbridge"));

    m.vsh(&["net-destroy", "gwbridge"]);
    assert!(m.link_exists("hostbr0"), "the host's bridge was removed");
    m.vsh(&["net-undefine", "gwbridge"]);
}
