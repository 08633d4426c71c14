//! vsh against the test driver, through the gateway, each a real process.

mod common;

use common::{EventWatcher, Mesh};

const DOMAIN_XML: &str = "<domain type='test'>
  <name>e2e-vm</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
</domain>
";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn default_host_shows_test_running() {
    let mesh = Mesh::start();
    let list = mesh.vsh_ok(&["list", "--all"]);
    let row = list
        .lines()
        .find(|l| l.contains(" test "))
        .unwrap_or_else(|| panic!("no row for domain test in:\n{list}"));
    assert!(row.contains("running"), "{row}");
    assert!(
        list.lines().next().unwrap_or_default().contains("Name"),
        "{list}"
    );
    assert_eq!(mesh.vsh_ok(&["domstate", "test"]).trim(), "running");
    assert_eq!(mesh.vsh_ok(&["uri"]).trim(), "test:///default");
    let xml = mesh.vsh_ok(&["dumpxml", "test"]);
    assert!(
        xml.contains("<uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>"),
        "{xml}"
    );
}

#[test]
fn domain_lifecycle_and_state_survive_between_vsh_runs() {
    let mesh = Mesh::start();
    let file = mesh.write("vm.xml", DOMAIN_XML);
    let out = mesh.vsh_ok(&["define", file.to_str().unwrap_or_default()]);
    assert!(out.contains("Domain 'e2e-vm' defined"), "{out}");
    assert_eq!(mesh.vsh_ok(&["domstate", "e2e-vm"]).trim(), "shut off");
    assert!(
        mesh.vsh_ok(&["start", "e2e-vm"])
            .contains("Domain 'e2e-vm' started")
    );
    assert_eq!(mesh.vsh_ok(&["domstate", "e2e-vm"]).trim(), "running");

    // Starting it again fails; virsh itself says so before calling libvirt.
    let again = mesh.vsh(&["start", "e2e-vm"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("error: Domain is already active"),
        "{}",
        stderr(&again)
    );

    mesh.vsh_ok(&["suspend", "e2e-vm"]);
    assert_eq!(mesh.vsh_ok(&["domstate", "e2e-vm"]).trim(), "paused");
    mesh.vsh_ok(&["resume", "e2e-vm"]);
    assert_eq!(mesh.vsh_ok(&["domstate", "e2e-vm"]).trim(), "running");
    let info = mesh.vsh_ok(&["dominfo", "e2e-vm"]);
    assert!(info.contains("Max memory:     131072 KiB"), "{info}");
    // virsh save / restore with the test driver's image format.
    let image = mesh.write("vm.save", "");
    let image = image.to_str().unwrap_or_default();
    assert_eq!(
        mesh.vsh_ok(&["save", "e2e-vm", image]),
        format!("\nDomain 'e2e-vm' saved to {image}\n\n")
    );
    assert_eq!(
        mesh.vsh_ok(&["domstate", "e2e-vm", "--reason"]).trim(),
        "shut off (saved)"
    );
    assert!(
        std::fs::read(image).is_ok_and(|b| b.starts_with(b"TestGuestMagic")),
        "libvirt's test driver image layout"
    );
    assert_eq!(
        mesh.vsh_ok(&["restore", image]),
        format!("Domain restored from {image}\n\n")
    );
    assert_eq!(
        mesh.vsh_ok(&["domstate", "e2e-vm", "--reason"]).trim(),
        "running (restored)"
    );
    mesh.vsh_ok(&["destroy", "e2e-vm"]);
    assert_eq!(mesh.vsh_ok(&["domstate", "e2e-vm"]).trim(), "shut off");
    assert!(
        mesh.vsh_ok(&["undefine", "e2e-vm"])
            .contains("Domain 'e2e-vm' has been undefined")
    );

    let gone = mesh.vsh(&["dominfo", "e2e-vm"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        stderr(&gone).contains("error: failed to get domain 'e2e-vm'"),
        "{}",
        stderr(&gone)
    );
}

#[test]
fn secondary_families_through_vsh() {
    let mesh = Mesh::start();
    let nets = mesh.vsh_ok(&["net-list", "--all"]);
    assert!(
        nets.lines()
            .any(|l| l.contains("default") && l.contains("active")),
        "{nets}"
    );
    assert!(
        mesh.vsh_ok(&["net-dumpxml", "default"])
            .contains("<bridge name='virbr0'")
    );
    let pools = mesh.vsh_ok(&["pool-list", "--all"]);
    assert!(pools.contains("default-pool"), "{pools}");
    let ifaces = mesh.vsh_ok(&["iface-list", "--all"]);
    assert!(ifaces.contains("eth1"), "{ifaces}");
    let devs = mesh.vsh_ok(&["nodedev-list"]);
    for d in ["computer", "scsi_host1", "scsi_host2", "scsi_host11"] {
        assert!(
            devs.lines().any(|l| l.trim() == d),
            "{d} missing from {devs}"
        );
    }

    let net = mesh.write(
        "net.xml",
        "<network><name>e2e-net</name><bridge name='e2ebr0'/><ip address='10.9.8.1' netmask='255.255.255.0'/></network>",
    );
    mesh.vsh_ok(&["net-define", net.to_str().unwrap_or_default()]);
    mesh.vsh_ok(&["net-start", "e2e-net"]);
    let info = mesh.vsh_ok(&["net-info", "e2e-net"]);
    assert!(info.contains("e2ebr0"), "{info}");
    mesh.vsh_ok(&["net-destroy", "e2e-net"]);
    mesh.vsh_ok(&["net-undefine", "e2e-net"]);
    let missing = mesh.vsh(&["net-info", "e2e-net"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("Network not found"),
        "{}",
        stderr(&missing)
    );

    let secret = mesh.write(
        "secret.xml",
        "<secret ephemeral='no' private='no'><uuid>0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f</uuid><usage type='volume'><volume>/var/lib/e2e.img</volume></usage></secret>",
    );
    mesh.vsh_ok(&["secret-define", secret.to_str().unwrap_or_default()]);
    mesh.vsh_ok(&[
        "secret-set-value",
        "0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f",
        "--base64",
        "aGVsbG8=",
    ]);
    assert_eq!(
        mesh.vsh_ok(&["secret-get-value", "0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f"])
            .trim(),
        "aGVsbG8="
    );

    let filter = mesh.write(
        "filter.xml",
        "<filter name='e2e-filter' chain='ipv4'><rule action='accept' direction='out' priority='500'><ip/></rule></filter>",
    );
    mesh.vsh_ok(&["nwfilter-define", filter.to_str().unwrap_or_default()]);
    assert!(mesh.vsh_ok(&["nwfilter-list"]).contains("e2e-filter"));
}

#[test]
fn bad_input_gets_libvirt_errors() {
    let mesh = Mesh::start();
    let bad = mesh.write("bad.xml", "<domain type='test'><name>x</name>");
    let out = mesh.vsh(&["define", bad.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));

    let clash = mesh.write(
        "clash.xml",
        "<domain type='test'><name>test</name><uuid>11111111-2222-3333-4444-555555555555</uuid><memory>1024</memory><os><type>hvm</type></os></domain>",
    );
    let out = mesh.vsh(&["define", clash.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already exists with uuid"),
        "{}",
        stderr(&out)
    );

    let out = mesh.vsh(&["-c", "nosuch:///system", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nosuch:///system"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn events_reach_a_watcher_through_the_gateway() {
    let mesh = Mesh::start();
    let watcher = EventWatcher::start(
        &mesh.gateway.addr,
        &["event", "--all", "--loop", "--timeout", "20"],
    );
    // The watch is registered asynchronously: redefine a probe domain (a
    // fixed UUID makes each define an update) until its event shows the
    // stream is live, then run the lifecycle under test.
    let probe = DOMAIN_XML.replace(
        "<name>e2e-vm</name>",
        "<name>probe-vm</name><uuid>3f1c9a52-7c1e-4d3a-9a57-2b6a1e0c4d11</uuid>",
    );
    let probe = mesh.write("probe.xml", &probe);
    let live = watcher.wait_live(
        || {
            mesh.vsh_ok(&["define", probe.to_str().unwrap_or_default()]);
        },
        |_| true,
    );
    assert!(live, "no event reached the watcher");
    let file = mesh.write("ev.xml", &DOMAIN_XML.replace("e2e-vm", "ev-vm"));
    mesh.vsh_ok(&["define", file.to_str().unwrap_or_default()]);
    mesh.vsh_ok(&["start", "ev-vm"]);
    mesh.vsh_ok(&["destroy", "ev-vm"]);
    mesh.vsh_ok(&["undefine", "ev-vm"]);
    let seen = watcher.collect(4, |l| l.contains("'probe-vm'"));
    assert_eq!(
        seen,
        [
            "event 'lifecycle' for domain 'ev-vm': Defined Added",
            "event 'lifecycle' for domain 'ev-vm': Started Booted",
            "event 'lifecycle' for domain 'ev-vm': Stopped Destroyed",
            "event 'lifecycle' for domain 'ev-vm': Undefined Removed",
        ]
    );
}
