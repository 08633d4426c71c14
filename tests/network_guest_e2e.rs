//! A real guest on a virtmesh network (issue 5's "done"): inside a network
//! namespace this test creates, the network and qemu services run (unix
//! sockets; the gateway outside reaches them), vsh starts a NAT network
//! and a TCG guest (Debian's kernel, busybox initramfs from
//! services/qemu/tests/fixtures/build-guest.sh) with
//! `<interface type='network'>`. The qemu service asks the network service
//! for a port, puts the guest's tap on the port's bridge; the guest takes
//! a lease from our dnsmasq and pings the bridge, which `vsh console`
//! shows. `net-dhcp-leases` and `domifaddr --source lease` report the
//! lease; destroy gives the port back, and after net-destroy no bridge,
//! dnsmasq or nft table of ours is left in the namespace.

mod common;

use common::{Netns, Proc, Vsh, guest_files, is_root, require, which};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const EMULATOR: &str = "/usr/bin/qemu-system-x86_64";
const NET: &str = "guestnat";
const BRIDGE: &str = "vmngbr0";
const GUEST: &str = "netguest";
const MAC: &str = "52:54:00:4e:77:06";
const SUBNET: &str = "10.77.6.";
const ROUTER: &str = "10.77.6.1";

/// Processes of `program` whose command line names `dir` (this test's
/// temporary directory), with their command lines.
fn procs_of(program: &str, dir: &Path) -> Vec<(i32, String)> {
    let marker = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let exe = cmd.split(' ').next().unwrap_or_default();
            (exe.ends_with(program) && cmd.contains(&marker)).then_some((pid, cmd))
        })
        .collect()
}

/// SIGKILL the processes of `program` that are this test's; how many.
fn kill_all(program: &str, dir: &Path) -> usize {
    let found = procs_of(program, dir);
    for (pid, _) in &found {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    found.len()
}

fn kill_qemus(dir: &Path) -> usize {
    kill_all("qemu-system-x86_64", dir)
}

/// What a failed assertion would leave running: our QEMUs and dnsmasqs
/// (the namespace itself is deleted by `Netns`).
struct Leftovers(PathBuf);

impl Drop for Leftovers {
    fn drop(&mut self) {
        kill_all("qemu-system-x86_64", &self.0);
        kill_all("dnsmasq", &self.0);
    }
}

/// Poll `vsh net-port-list NET --uuid` until it is empty (true) or 15 s.
fn ports_drain(vsh: &Vsh) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if vsh.ok(&["net-port-list", NET, "--uuid"]).trim().is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// One config for everyone: the qemu service finds the network service
/// in it, the gateway finds both. Returns its path.
fn mesh_config(dir: &Path) -> String {
    let path = |p: &str| dir.join(p).to_str().expect("utf-8").to_owned();
    let config = path("virtmesh.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\ndefault_uri = \"qemu:///system\"\n\n\
             [[service]]\nname = \"qemu\"\nlisten = \"unix:{}\"\nschemes = [\"qemu\"]\n\n\
             [[service]]\nname = \"network\"\nlisten = \"unix:{}\"\nfamilies = [\"Network\"]\n",
            path("qemu.sock"),
            path("network.sock")
        ),
    )
    .expect("config");
    config
}

/// A service binary run inside the namespace (`ip netns exec` also gives
/// it the namespace's sysfs, which the macvtap device lookup needs).
fn in_netns(ns: &Netns, bin: &str, config: &str, state: &str) -> Proc {
    Proc::start(
        "ip",
        &[
            "netns",
            "exec",
            &ns.0,
            bin,
            "--config",
            config,
            "--state-dir",
            state,
        ],
    )
}

#[test]
fn tcg_guest_takes_a_lease_on_a_nat_network_and_leaves_nothing_behind() {
    let tools = ["ip", "dnsmasq", "nft"];
    let have =
        is_root() && tools.iter().all(|t| which(t).is_some()) && Path::new(EMULATOR).exists();
    if !require(
        "root, ip, dnsmasq, nft and qemu-system-x86_64 (scripts/install-host-deps.sh)",
        have,
    ) {
        return;
    }
    let Some(files) = guest_files() else {
        return;
    };
    let started = Instant::now();
    let ns = Netns::create(&format!("vmng-{}", std::process::id())).expect("ip netns add");
    let dir = tempfile::tempdir().expect("tempdir");
    let _leftovers = Leftovers(dir.path().to_path_buf());
    let path = |p: &str| dir.path().join(p).to_str().expect("utf-8").to_owned();
    let config = mesh_config(dir.path());
    let in_ns = |bin: &str, state: &str| in_netns(&ns, bin, &config, &path(state));
    let mut network = in_ns(env!("CARGO_BIN_EXE_virtmesh-network"), "network-state");
    let mut qemu = in_ns(env!("CARGO_BIN_EXE_virtmesh-qemu"), "qemu-state");
    let gateway = Proc::start(
        env!("CARGO_BIN_EXE_virtmesh-gateway"),
        &["--config", &config, "--listen", "127.0.0.1:0"],
    );
    let vsh = Vsh::new(&gateway.addr, "qemu:///system");

    let net_xml = path("net.xml");
    std::fs::write(
        &net_xml,
        format!(
            "<network><name>{NET}</name><forward mode='nat'/><bridge name='{BRIDGE}'/>\
             <portgroup name='guests' default='yes'><bandwidth>\
             <inbound average='12500' peak='25000'/></bandwidth></portgroup>\
             <ip address='{ROUTER}' netmask='255.255.255.0'><dhcp>\
             <range start='{SUBNET}10' end='{SUBNET}50'/></dhcp></ip></network>"
        ),
    )
    .expect("net xml");
    let guest_xml = |name: &str, network: &str, mac: &str| {
        format!(
            "<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{}</kernel><initrd>{}</initrd>\
             <cmdline>console=ttyS0 quiet</cmdline></os><features><acpi/></features>\
             <devices><interface type='network'><mac address='{mac}'/>\
             <source network='{network}'/><model type='virtio'/></interface>\
             <serial type='pty'/></devices></domain>",
            files.join("vmlinuz").display(),
            files.join("initrd-net.cpio").display(),
        )
    };
    let dom_xml = path("guest.xml");
    std::fs::write(&dom_xml, guest_xml(GUEST, NET, MAC)).expect("guest xml");
    let stray_xml = path("stray.xml");
    std::fs::write(
        &stray_xml,
        guest_xml("stray", "nosuch", "52:54:00:4e:77:07"),
    )
    .expect("stray xml");
    vsh.ok(&["net-define", &net_xml]);
    vsh.ok(&["define", &dom_xml]);
    vsh.ok(&["define", &stray_xml]);
    // A start that fails after its port was taken (QEMU cannot read the
    // kernel) must give the port back.
    let broken_xml = path("broken.xml");
    std::fs::write(
        &broken_xml,
        guest_xml("broken", NET, "52:54:00:4e:77:09").replace(
            &files.join("vmlinuz").display().to_string(),
            "/nonexistent/vmlinuz",
        ),
    )
    .expect("broken xml");
    vsh.ok(&["define", &broken_xml]);

    // libvirt's errors, and nothing left behind by a start that failed.
    let err = vsh.fails(&["start", "stray"]);
    assert!(
        err.contains("Network not found: no network with matching name 'nosuch'"),
        "{err}"
    );
    let err = vsh.fails(&["start", GUEST]);
    assert!(
        err.contains(&format!(
            "Requested operation is not valid: network '{NET}' is not active"
        )),
        "{err}"
    );
    let links = String::from_utf8_lossy(&ns.ip(&["-o", "link"]).stdout).into_owned();
    assert!(
        !links.contains("vnet"),
        "a failed start left a tap: {links}"
    );

    vsh.ok(&["net-start", NET]);
    let err = vsh.fails(&["start", "broken"]);
    assert!(err.contains("/nonexistent/vmlinuz"), "{err}");
    let ports = vsh.ok(&["net-port-list", NET, "--uuid"]);
    assert!(
        ports.trim().is_empty(),
        "a failed start kept its port: {ports}"
    );
    let links = String::from_utf8_lossy(&ns.ip(&["-o", "link"]).stdout).into_owned();
    assert!(
        !links.contains("vnet"),
        "a failed start left a tap: {links}"
    );
    vsh.ok(&["start", GUEST]);
    let booted = Instant::now();

    // The port the qemu service took is the one the live XML names, on
    // the network's bridge; the tap is enslaved to it.
    let ports = vsh.ok(&["net-port-list", NET, "--uuid"]);
    let port = ports.trim().to_owned();
    assert_eq!(port.lines().count(), 1, "one port expected: {ports}");
    let live = vsh.ok(&["dumpxml", GUEST]);
    assert!(
        live.contains(&format!(
            "<source network='{NET}' portid='{port}' bridge='{BRIDGE}'/>"
        )),
        "{live}"
    );
    assert!(live.contains("<target dev='vnet0'/>"), "{live}");
    let tap = String::from_utf8_lossy(&ns.ip(&["-o", "link", "show", "vnet0"]).stdout).into_owned();
    assert!(tap.contains(&format!("master {BRIDGE}")), "{tap}");
    let port_xml = vsh.ok(&["net-port-dumpxml", NET, &port]);
    assert!(
        port_xml.contains(&format!("<name>{GUEST}</name>"))
            && port_xml.contains(&format!("<mac address='{MAC}'/>"))
            && port_xml.contains(&format!("<plug type='network' bridge='{BRIDGE}'/>")),
        "{port_xml}"
    );
    // The default portgroup's limits came with the port and are on the
    // tap: guest inbound 12500 KiB/s (100 Mbit/s), peak 200 Mbit/s.
    assert!(
        port_xml.contains("<inbound average='12500' peak='25000'/>"),
        "{port_xml}"
    );
    let shaped = String::from_utf8_lossy(&ns.exec("tc", &["class", "show", "dev", "vnet0"]).stdout)
        .into_owned();
    assert!(
        shaped.contains("class htb 1:1 root") && shaped.contains("rate 100Mbit ceil 200Mbit"),
        "{shaped}"
    );

    // The guest's own word, through the gateway's console.
    let seen = vsh.console_until(GUEST, Duration::from_secs(150), |s| {
        s.contains(&format!("VIRTMESH-PING-OK router={ROUTER}"))
    });
    let lease_line = seen
        .lines()
        .find(|l| l.contains("VIRTMESH-LEASE ip="))
        .unwrap_or_else(|| panic!("no lease within 150 s; the console said: {seen}"));
    eprintln!(
        "guest lease and ping {:?} after start: {}",
        booted.elapsed(),
        lease_line.trim()
    );
    let ip = lease_line
        .split("ip=")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_default()
        .trim()
        .to_owned();
    assert!(ip.starts_with(SUBNET), "address out of range: {lease_line}");
    assert!(
        lease_line.contains(&format!("router={ROUTER}")),
        "{lease_line}"
    );
    assert!(
        seen.contains(&format!("VIRTMESH-PING-OK router={ROUTER}")),
        "the guest did not reach the bridge: {seen}"
    );

    let leases = vsh.ok(&["net-dhcp-leases", NET]);
    assert!(
        leases
            .lines()
            .any(|l| l.contains(MAC) && l.contains(&format!("{ip}/24"))),
        "{leases}"
    );
    let addrs = vsh.ok(&["domifaddr", GUEST, "--source", "lease"]);
    assert!(
        addrs.lines().any(|l| l.contains("vnet0")
            && l.contains(MAC)
            && l.contains("ipv4")
            && l.contains(&format!("{ip}/24"))),
        "{addrs}"
    );

    // The guest pinged the bridge, so the namespace's neighbour table
    // (what the qemu service reads) knows it too.
    let arp = vsh.ok(&["domifaddr", GUEST, "--source", "arp"]);
    assert!(
        arp.lines()
            .any(|l| l.contains("vnet0") && l.contains(MAC) && l.contains(&format!("{ip}/0"))),
        "{arp}"
    );

    // Both services restart under the running guest: the network service
    // finds its port again, the qemu service reconnects and re-announces
    // it; the lease is still reported.
    network.kill();
    qemu.kill();
    network = in_ns(env!("CARGO_BIN_EXE_virtmesh-network"), "network-state");
    qemu = in_ns(env!("CARGO_BIN_EXE_virtmesh-qemu"), "qemu-state");
    assert_eq!(vsh.ok(&["net-port-list", NET, "--uuid"]).trim(), port);
    // A network service that lost the port (its file, README: Files) is
    // told again by the qemu service's reconnect: same UUID, same plug.
    qemu.kill();
    network.kill();
    let port_file = dir
        .path()
        .join(format!("network-state/run/ports/{NET}/{port}.xml"));
    std::fs::remove_file(&port_file).expect("the port's file");
    network = in_ns(env!("CARGO_BIN_EXE_virtmesh-network"), "network-state");
    qemu = in_ns(env!("CARGO_BIN_EXE_virtmesh-qemu"), "qemu-state");
    assert_eq!(vsh.ok(&["net-port-list", NET, "--uuid"]).trim(), port);
    let reclaimed = vsh.ok(&["net-port-dumpxml", NET, &port]);
    assert!(
        reclaimed.contains(&format!("<plug type='network' bridge='{BRIDGE}'/>")),
        "{reclaimed}"
    );
    let addrs = vsh.ok(&["domifaddr", GUEST, "--source", "lease"]);
    assert!(addrs.contains(&format!("{ip}/24")), "{addrs}");

    // A hot-plugged interface on the network takes a port of its own,
    // and gives it back when the guest has ejected it.
    let nic_xml = path("nic.xml");
    std::fs::write(
        &nic_xml,
        format!(
            "<interface type='network'><mac address='52:54:00:4e:77:08'/>\
             <source network='{NET}'/><model type='virtio'/></interface>"
        ),
    )
    .expect("nic xml");
    vsh.ok(&["attach-device", GUEST, &nic_xml, "--live"]);
    let ports = vsh.ok(&["net-port-list", NET, "--uuid"]);
    let second = ports
        .lines()
        .map(str::trim)
        .find(|u| !u.is_empty() && *u != port)
        .unwrap_or_else(|| panic!("no second port after attach: {ports}"))
        .to_owned();
    let live = vsh.ok(&["dumpxml", GUEST]);
    assert!(
        live.contains(&format!(
            "<source network='{NET}' portid='{second}' bridge='{BRIDGE}'/>"
        )),
        "{live}"
    );
    vsh.ok(&["detach-device", GUEST, &nic_xml, "--live"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ports = String::new();
    while Instant::now() < deadline {
        ports = vsh.ok(&["net-port-list", NET, "--uuid"]);
        if ports.trim() == port {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(ports.trim(), port, "the unplugged NIC's port stayed");

    // Destroy gives the port back and removes the tap.
    vsh.ok(&["destroy", GUEST]);
    let ports = vsh.ok(&["net-port-list", NET, "--uuid"]);
    assert!(ports.trim().is_empty(), "port left after destroy: {ports}");
    assert!(
        !ns.ip(&["link", "show", "vnet0"]).status.success(),
        "tap left after destroy"
    );

    // QEMU dying under the service: the port goes with it.
    vsh.ok(&["start", GUEST]);
    assert!(!vsh.ok(&["net-port-list", NET, "--uuid"]).trim().is_empty());
    assert_eq!(kill_qemus(dir.path()), 1);
    assert!(ports_drain(&vsh), "port left after QEMU was killed");
    // QEMU dying while the qemu service is down: recovery finds the guest
    // gone and gives the port back.
    vsh.ok(&["start", GUEST]);
    qemu.kill();
    assert_eq!(kill_qemus(dir.path()), 1);
    qemu = in_ns(env!("CARGO_BIN_EXE_virtmesh-qemu"), "qemu-state");
    assert!(
        ports_drain(&vsh),
        "port left after recovery of a gone guest"
    );
    assert!(
        !ns.ip(&["link", "show", "vnet0"]).status.success(),
        "tap left after recovery of a gone guest"
    );

    // The port commands by hand, as virsh has them.
    let port_file = path("port.xml");
    std::fs::write(
        &port_file,
        "<networkport><owner><name>manual</name>\
         <uuid>8f2a4b7c-1d3e-4f5a-9b6c-7d8e9f0a1b2c</uuid></owner>\
         <mac address='52:54:00:4e:77:0a'/></networkport>",
    )
    .expect("port xml");
    let created = vsh.ok(&["net-port-create", NET, &port_file]);
    let manual = created
        .strip_prefix("Network port ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        created.trim_end(),
        format!("Network port {manual} created from {port_file}")
    );
    assert_eq!(vsh.ok(&["net-port-list", NET, "--uuid"]).trim(), manual);
    assert_eq!(
        vsh.ok(&["net-port-delete", NET, &manual]).trim_end(),
        format!("Network port {manual} deleted")
    );
    assert!(ports_drain(&vsh));
    // A guaranteed floor needs the network's own inbound QoS.
    let qos_file = path("port-qos.xml");
    std::fs::write(
        &qos_file,
        "<networkport><owner><name>manual</name>\
         <uuid>8f2a4b7c-1d3e-4f5a-9b6c-7d8e9f0a1b2c</uuid></owner>\
         <mac address='52:54:00:4e:77:0b'/><bandwidth><inbound floor='100'/></bandwidth>\
         </networkport>",
    )
    .expect("qos port xml");
    let err = vsh.fails(&["net-port-create", NET, &qos_file]);
    assert!(
        err.contains("Invalid use of 'floor' on interface with MAC address 52:54:00:4e:77:0b - network 'guestnat' has no inbound QoS set"),
        "{err}"
    );
    assert!(ports_drain(&vsh));

    // net-destroy: no bridge, no dnsmasq, no nft table of ours.
    assert!(
        !procs_of("dnsmasq", dir.path()).is_empty(),
        "dnsmasq never ran"
    );
    vsh.ok(&["net-destroy", NET]);
    assert!(
        !ns.ip(&["link", "show", BRIDGE]).status.success(),
        "bridge left after net-destroy"
    );
    let left = procs_of("dnsmasq", dir.path());
    assert!(left.is_empty(), "dnsmasq left after net-destroy: {left:?}");
    let tables = ns.exec("nft", &["list", "tables"]);
    assert!(tables.status.success(), "{tables:?}");
    let tables = String::from_utf8_lossy(&tables.stdout).into_owned();
    assert!(!tables.contains("virtmesh_"), "nft tables left: {tables}");

    vsh.ok(&["undefine", GUEST]);
    vsh.ok(&["undefine", "stray"]);
    vsh.ok(&["undefine", "broken"]);
    vsh.ok(&["net-undefine", NET]);
    eprintln!("whole test: {:?}", started.elapsed());
    drop(gateway);
    drop(qemu);
    drop(network);
}

/// A macvtap-family network (libvirt's `<forward mode='vepa'>` with an
/// interface pool; veth pairs stand in for the host NICs): a KVM guest
/// with two `<interface type='network'>` gets one port per interface, on
/// the two pool devices in turn, and a macvtap in vepa mode on each; the
/// live XML shows the device and mode; destroy removes the macvtaps and
/// gives the ports back, and the pool devices stay.
#[test]
fn kvm_guest_on_a_vepa_network_gets_macvtaps_on_the_pool_devices() {
    let have = is_root()
        && which("ip").is_some()
        && Path::new(EMULATOR).exists()
        && Path::new("/dev/kvm").exists();
    if !require("root, ip, /dev/kvm and qemu-system-x86_64", have) {
        return;
    }
    const VNET: &str = "vepanet";
    let ns = Netns::create(&format!("vmnv-{}", std::process::id())).expect("ip netns add");
    for (a, b) in [("pool0", "pool0p"), ("pool1", "pool1p")] {
        let out = ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        assert!(out.status.success(), "veth {a}: {out:?}");
        assert!(ns.ip(&["link", "set", a, "up"]).status.success());
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let _leftovers = Leftovers(dir.path().to_path_buf());
    let path = |p: &str| dir.path().join(p).to_str().expect("utf-8").to_owned();
    let config = mesh_config(dir.path());
    let start_network = || {
        in_netns(
            &ns,
            env!("CARGO_BIN_EXE_virtmesh-network"),
            &config,
            &path("network-state"),
        )
    };
    let start_qemu = || {
        in_netns(
            &ns,
            env!("CARGO_BIN_EXE_virtmesh-qemu"),
            &config,
            &path("qemu-state"),
        )
    };
    let mut network = start_network();
    let mut qemu = start_qemu();
    let gateway = Proc::start(
        env!("CARGO_BIN_EXE_virtmesh-gateway"),
        &["--config", &config, "--listen", "127.0.0.1:0"],
    );
    let vsh = Vsh::new(&gateway.addr, "qemu:///system");
    let net_xml = path("vepa.xml");
    std::fs::write(
        &net_xml,
        format!(
            "<network><name>{VNET}</name><forward mode='vepa'>\
             <interface dev='pool0'/><interface dev='pool1'/></forward></network>"
        ),
    )
    .expect("net xml");
    let nic = |mac: &str| {
        format!(
            "<interface type='network'><mac address='{mac}'/><source network='{VNET}'/>\
             <model type='virtio'/></interface>"
        )
    };
    let dom_xml = path("vguest.xml");
    std::fs::write(
        &dom_xml,
        format!(
            "<domain type='kvm'><name>vguest</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>{}{}</devices></domain>",
            nic("52:54:00:4e:78:01"),
            nic("52:54:00:4e:78:02")
        ),
    )
    .expect("guest xml");
    vsh.ok(&["net-define", &net_xml]);
    vsh.ok(&["net-start", VNET]);
    vsh.ok(&["define", &dom_xml]);
    vsh.ok(&["start", "vguest"]);

    let live = vsh.ok(&["dumpxml", "vguest"]);
    let ports = vsh.ok(&["net-port-list", VNET, "--uuid"]);
    let ports: Vec<&str> = ports
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(ports.len(), 2, "one port per interface: {ports:?}");
    for (i, dev) in ["pool0", "pool1"].iter().enumerate() {
        let macvtap = format!("macvtap{i}");
        let shown = String::from_utf8_lossy(&ns.ip(&["-d", "-o", "link", "show", &macvtap]).stdout)
            .into_owned();
        assert!(
            shown.contains(&format!("{macvtap}@{dev}")) && shown.contains("macvtap mode vepa"),
            "{macvtap} on {dev} in vepa mode: {shown}"
        );
        // The guest's MAC, not the 0xFE one of a tap.
        assert!(
            shown.contains(&format!("link/ether 52:54:00:4e:78:0{} ", i + 1)),
            "{shown}"
        );
        let port = ports
            .iter()
            .find(|p| {
                vsh.ok(&["net-port-dumpxml", VNET, p])
                    .contains(&format!("<plug type='direct' dev='{dev}' mode='vepa'/>"))
            })
            .unwrap_or_else(|| panic!("no port plugged into {dev}"));
        assert!(
            live.contains(&format!(
                "<source network='{VNET}' portid='{port}' dev='{dev}' mode='vepa'/>\n      \
                 <target dev='{macvtap}'/>"
            )),
            "{live}"
        );
    }
    let net_live = vsh.ok(&["net-dumpxml", VNET]);
    assert!(
        net_live.contains("<network connections='2'>")
            && net_live.contains("<interface dev='pool0' connections='1'/>")
            && net_live.contains("<interface dev='pool1' connections='1'/>"),
        "{net_live}"
    );

    // A hot-plugged NIC takes a third port, on the least used device
    // (a tie: the first), and a macvtap passed to QEMU with getfd.
    let nic_xml = path("vnic.xml");
    std::fs::write(&nic_xml, nic("52:54:00:4e:78:03")).expect("nic xml");
    vsh.ok(&["attach-device", "vguest", &nic_xml, "--live"]);
    let shown = String::from_utf8_lossy(&ns.ip(&["-d", "-o", "link", "show", "macvtap2"]).stdout)
        .into_owned();
    assert!(
        shown.contains("macvtap2@pool0") && shown.contains("macvtap mode vepa"),
        "hot-plugged macvtap: {shown}"
    );
    let net_live = vsh.ok(&["net-dumpxml", VNET]);
    assert!(
        net_live.contains("<interface dev='pool0' connections='2'/>"),
        "{net_live}"
    );

    // Both services restart under the guest; the network service, having
    // lost one port's file, is told it again (reclaim) with its direct
    // plug, and the pool's counts are whole again.
    qemu.kill();
    network.kill();
    let lost = ports[0].to_owned();
    std::fs::remove_file(
        dir.path()
            .join(format!("network-state/run/ports/{VNET}/{lost}.xml")),
    )
    .expect("the port's file");
    network = start_network();
    qemu = start_qemu();
    let after = vsh.ok(&["net-port-list", VNET, "--uuid"]);
    assert_eq!(
        after.lines().filter(|l| !l.trim().is_empty()).count(),
        3,
        "{after}"
    );
    assert!(
        vsh.ok(&["net-port-dumpxml", VNET, &lost])
            .contains("<plug type='direct' dev="),
        "reclaimed with its plug"
    );
    let net_live = vsh.ok(&["net-dumpxml", VNET]);
    assert!(net_live.contains("<network connections='3'>"), "{net_live}");

    vsh.ok(&["destroy", "vguest"]);
    assert!(
        vsh.ok(&["net-port-list", VNET, "--uuid"]).trim().is_empty(),
        "ports left after destroy"
    );
    let links = String::from_utf8_lossy(&ns.ip(&["-o", "link"]).stdout).into_owned();
    assert!(
        !links.contains("macvtap"),
        "macvtap left after destroy: {links}"
    );
    assert!(
        links.contains("pool0@pool0p") && links.contains("pool1@pool1p"),
        "the pool devices are not ours: {links}"
    );
    vsh.ok(&["net-destroy", VNET]);
    vsh.ok(&["undefine", "vguest"]);
    vsh.ok(&["net-undefine", VNET]);
    drop(gateway);
    drop(qemu);
    drop(network);
}
