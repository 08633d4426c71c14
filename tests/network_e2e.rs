//! The network service through the gateway: vsh on `qemu:///system` drives
//! a NAT network whose bridge, addresses and dnsmasq live in a network
//! namespace this test creates (the service runs inside it, reached over a
//! unix socket), so the host's own links are never touched.

mod common;

use common::{Netns, Proc, is_root, require, which};
use std::process::Command;

#[test]
fn nat_network_through_the_gateway_in_a_namespace() {
    let have =
        is_root() && which("ip").is_some() && which("dnsmasq").is_some() && which("nft").is_some();
    if !require(
        "root, ip, dnsmasq and nft (scripts/install-host-deps.sh)",
        have,
    ) {
        return;
    }
    let ns = Netns::create(&format!("vmgw-{}", std::process::id())).expect("ip netns add");
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
    // vsh opens the connection through the hypervisor service first, as
    // virsh does, so the mesh needs a qemu service too.
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
    let config = dir.path().join("virtmesh.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\ndefault_uri = \"qemu:///system\"\n\n\
             [[service]]\nname = \"qemu\"\nlisten = \"{}\"\nschemes = [\"qemu\"]\n\n\
             [[service]]\nname = \"network\"\nlisten = \"{}\"\nfamilies = [\"Network\"]\n",
            qemu.addr, network.addr
        ),
    )
    .expect("config");
    let gateway = Proc::start(
        env!("CARGO_BIN_EXE_virtmesh-gateway"),
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let vsh = |args: &[&str]| -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_vsh"))
            .args(["--gateway", &gateway.addr, "-c", "qemu:///system"])
            .args(args)
            .output()
            .expect("vsh");
        assert!(
            out.status.success(),
            "vsh {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let xml = dir.path().join("net.xml");
    std::fs::write(
        &xml,
        "<network><name>gwnat</name><forward mode='nat'/><bridge name='vmgwbr0'/>\
         <ip address='10.77.5.1' netmask='255.255.255.0'><dhcp><range start='10.77.5.10' end='10.77.5.50'/></dhcp></ip></network>",
    )
    .expect("xml");
    vsh(&["net-define", xml.to_str().expect("utf-8")]);
    vsh(&["net-start", "gwnat"]);
    let list = vsh(&["net-list"]);
    assert!(
        list.lines()
            .any(|l| l.contains("gwnat") && l.contains("active")),
        "{list}"
    );
    assert!(vsh(&["net-info", "gwnat"]).contains("vmgwbr0"));
    let addr = ns.ip(&["addr", "show", "vmgwbr0"]);
    assert!(
        String::from_utf8_lossy(&addr.stdout).contains("10.77.5.1/24"),
        "{addr:?}"
    );

    vsh(&["net-destroy", "gwnat"]);
    let gone = ns.ip(&["link", "show", "vmgwbr0"]);
    assert!(
        !gone.status.success(),
        "bridge still present after net-destroy"
    );
    vsh(&["net-undefine", "gwnat"]);
    drop(gateway);
    drop(network);
    drop(qemu);
}
