//! Host side of a guest's interfaces: the links a start creates (macvtap,
//! tap), the backends QEMU gets, and the release of exactly the links we
//! created (DESIGN.md §6, libvirt's "Don't remove macvtaps on failed
//! start"): a link that existed before is never deleted, and what we
//! created is recorded (by name *and* ifindex) in the guest's live status,
//! so a restarted service still knows which links are its own.
//!
//! An interface of type `network` is a bridge tap whose bridge comes from
//! a port the network service hands out (`netport`): the port is held in
//! the same record as its tap, given back when the tap is released.

use crate::netport::{NetPeer, PortRecord};
use serde::{Deserialize, Serialize};
use std::path::Path;
use virtmesh_conf::Element;
use virtmesh_conf::bandwidth::{Bandwidth, BandwidthContext};
use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};
use virtmesh_util::netlink::{self, EEXIST, Netlink, NetlinkError};

/// A host link this service created for a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedLink {
    pub name: String,
    pub index: u32,
    /// The network port the link is plugged through (`type='network'`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortRecord>,
    /// Not our link (an unmanaged `ethernet` tap), only our QoS on it:
    /// released by clearing the shaping, never by deleting the link.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shaped_only: bool,
}

/// What QEMU's `-netdev` uses for one interface.
#[derive(Debug)]
pub enum Backend {
    User,
    /// A tap device QEMU opens by name (tun/tap has no netlink creation,
    /// and attaching a tun fd needs an ioctl: `ip tuntap` made it
    /// persistent, QEMU opens it).
    Tap(String),
    /// An open macvtap character device, passed as a descriptor.
    Fd(std::fs::File),
}

/// The interfaces of a start, prepared.
#[derive(Debug, Default)]
pub struct Prepared {
    pub backends: Vec<Backend>,
    /// Host link name per interface, for the live XML's `<target dev>`.
    pub targets: Vec<Option<String>>,
    pub created: Vec<OwnedLink>,
    /// The network port per interface (`type='network'`), for the live
    /// XML's `<source portid bridge>`.
    pub ports: Vec<Option<PortRecord>>,
}

/// A failure, with libvirt's wording; what this call created is already
/// released.
#[derive(Debug, thiserror::Error)]
pub enum HostNetError {
    /// Host plumbing (netlink, tuntap, device nodes).
    #[error("{0}")]
    Host(String),
    /// The network service refused or failed (its code and message kept:
    /// "Network not found: ...", "network is not active").
    #[error("{0}")]
    Peer(VirtError),
    /// A configuration this driver cannot start.
    #[error("{0}")]
    Unsupported(String),
    /// Something this mode of the service cannot do (QoS without root).
    #[error("{0}")]
    Operation(String),
}

impl From<HostNetError> for VirtError {
    fn from(e: HostNetError) -> VirtError {
        match e {
            HostNetError::Host(m) => VirtError::new(ErrorCode::SystemError, ErrorDomain::Qemu, m),
            HostNetError::Peer(v) => v,
            HostNetError::Unsupported(m) => {
                VirtError::new(ErrorCode::ConfigUnsupported, ErrorDomain::Qemu, m)
            }
            HostNetError::Operation(m) => {
                VirtError::new(ErrorCode::OperationUnsupported, ErrorDomain::Qemu, m)
            }
        }
    }
}

fn target_dev(iface: &Element) -> Option<String> {
    iface
        .child("target")
        .and_then(|t| t.attr("dev"))
        .map(str::to_owned)
}

pub fn mac_of(iface: &Element) -> String {
    iface
        .child("mac")
        .and_then(|m| m.attr("address"))
        .unwrap_or_default()
        .to_owned()
}

/// The guest the interfaces belong to (owner of network ports) and where
/// its private device nodes go.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub uuid: &'a str,
    pub name: &'a str,
    pub run_dir: &'a Path,
}

/// Create what `ifaces` need. On error, everything created here is
/// deleted again before returning (links and network ports), and nothing
/// else is touched.
pub async fn prepare(
    net: &NetPeer,
    ifaces: &[&Element],
    owner: Owner<'_>,
) -> Result<Prepared, HostNetError> {
    let mut p = Prepared::default();
    let needs_host = ifaces
        .iter()
        .any(|i| i.attr("type").unwrap_or_default() != "user");
    if !needs_host {
        for _ in ifaces {
            p.backends.push(Backend::User);
            p.targets.push(None);
            p.ports.push(None);
        }
        return Ok(p);
    }
    let nl = Netlink::open().map_err(|e| HostNetError::Host(e.to_string()))?;
    for iface in ifaces {
        match prepare_one(&nl, net, iface, owner, &mut p.created).await {
            Ok((backend, target, port)) => {
                p.backends.push(backend);
                p.targets.push(target);
                p.ports.push(port);
            }
            Err(e) => {
                release_with(&nl, net, &p.created).await;
                return Err(e);
            }
        }
    }
    Ok(p)
}

type PreparedOne = (Backend, Option<String>, Option<PortRecord>);

/// One interface: its host link, then its QoS on that link.
async fn prepare_one(
    nl: &Netlink,
    net: &NetPeer,
    iface: &Element,
    owner: Owner<'_>,
    created: &mut Vec<OwnedLink>,
) -> Result<PreparedOne, HostNetError> {
    let one = plumb_one(nl, net, iface, owner, created).await?;
    let shaped = shape(iface, &one).await?;
    // Shaping on a link that is not ours is recorded, so every release
    // path (stop, unplug, recovery) takes it off again.
    if let (true, Some(name)) = (shaped, &one.1)
        && !created.iter().any(|l| &l.name == name)
    {
        let index = nl
            .link_index(name)
            .await
            .map_err(|e| HostNetError::Host(e.to_string()))?
            .unwrap_or(0);
        created.push(OwnedLink {
            name: name.clone(),
            index,
            port: None,
            shaped_only: true,
        });
    }
    Ok(one)
}

/// The interface's actual `<bandwidth>` on its host link (libvirt's
/// qemuInterfaceBridgeConnect/DirectConnect → virNetDevBandwidthSet): a
/// network interface's comes from its port (its own, or its portgroup's;
/// the floor is the network's business, on the bridge). A tap on a
/// bridge sees the guest's traffic reversed (guest inbound = tap egress);
/// a macvtap or an ethernet tap shares the guest's view.
async fn shape(iface: &Element, one: &PreparedOne) -> Result<bool, HostNetError> {
    let (backend, target, port) = one;
    let kind = iface.attr("type").unwrap_or_default();
    let bw = match port {
        Some(p) => virtmesh_conf::xml::parse(&p.xml)
            .ok()
            .and_then(|root| Bandwidth::of(&root, BandwidthContext::PORT).ok().flatten()),
        None => Bandwidth::of(iface, BandwidthContext::interface(kind == "network"))
            .map_err(|e| HostNetError::Unsupported(e.message))?,
    };
    let Some(bw) = bw else { return Ok(false) };
    let Some(ifname) = target else {
        tracing::warn!("setting bandwidth on interfaces of type '{kind}' is not implemented yet");
        return Ok(false);
    };
    let shares_host_view = matches!(backend, Backend::Fd(_)) || kind == "ethernet";
    shape_link(ifname, Some(&bw), shares_host_view).await?;
    Ok(true)
}

/// Put `bw` on host link `ifname` (take our shaping off with `None`), as
/// libvirt's virNetDevBandwidthSet: a link that shares the guest's view
/// (macvtap, ethernet tap) takes the directions as they are, a tap on a
/// bridge swapped (the guest's inbound is its egress).
pub async fn shape_link(
    ifname: &str,
    bw: Option<&Bandwidth>,
    shares_host_view: bool,
) -> Result<(), HostNetError> {
    let Some(bw) = bw else {
        virtmesh_util::bandwidth::clear(ifname).await;
        return Ok(());
    };
    if !virtmesh_util::dirs::is_root() {
        return Err(HostNetError::Operation(
            "Operation not supported: Network bandwidth tuning is not available in session mode"
                .into(),
        ));
    }
    virtmesh_util::bandwidth::set(ifname, bw, false, !shares_host_view)
        .await
        .map_err(|e| HostNetError::Host(e.to_string()))
}

async fn plumb_one(
    nl: &Netlink,
    net: &NetPeer,
    iface: &Element,
    owner: Owner<'_>,
    created: &mut Vec<OwnedLink>,
) -> Result<PreparedOne, HostNetError> {
    let source = |k: &str| iface.child("source").and_then(|s| s.attr(k));
    match iface.attr("type").unwrap_or_default() {
        "user" => Ok((Backend::User, None, None)),
        "network" => {
            // The port first: its plug names the bridge.
            let port = net
                .create_port(iface, owner.uuid, owner.name)
                .await
                .map_err(HostNetError::Peer)?;
            // The plug says what the interface is on the host: a tap on
            // a bridge, or (macvtap-family networks) a macvtap on a pool
            // interface, made exactly as for `type='direct'`.
            let made = match &port.direct {
                Some(d) => {
                    let (dev, mode) = (d.dev.clone(), d.mode.clone());
                    macvtap(nl, iface, &dev, &mode, owner, Some(port.clone()), created).await
                }
                None => {
                    bridge_tap(nl, iface, Some(&port.bridge), Some(port.clone()), created).await
                }
            };
            match made {
                Ok((backend, target)) => Ok((backend, target, Some(port))),
                Err(e) => {
                    // Once the tap is recorded, the port goes with it when
                    // `prepare` releases what it created; before that it
                    // is given back here.
                    let recorded = created
                        .iter()
                        .any(|l| l.port.as_ref().is_some_and(|p| p.uuid == port.uuid));
                    if !recorded && let Err(d) = net.delete_port(&port).await {
                        tracing::warn!("cannot delete network port {}: {d}", port.uuid);
                    }
                    Err(e)
                }
            }
        }
        "direct" => {
            let dev = source("dev").unwrap_or_default();
            let mode = source("mode").unwrap_or("vepa");
            let (backend, target) = macvtap(nl, iface, dev, mode, owner, None, created).await?;
            Ok((backend, target, None))
        }
        kind @ ("bridge" | "ethernet") => {
            let unmanaged = iface.child("target").and_then(|t| t.attr("managed")) == Some("no");
            if kind == "ethernet" && unmanaged {
                // An existing tap the user manages: used, never created
                // nor deleted by us.
                let name = target_dev(iface).ok_or_else(|| {
                    HostNetError::Host(
                        "XML error: target dev must be supplied when managed='no'".into(),
                    )
                })?;
                return Ok((Backend::Tap(name.clone()), Some(name), None));
            }
            let bridge = (kind == "bridge").then(|| source("bridge").unwrap_or_default());
            let (backend, target) = bridge_tap(nl, iface, bridge, None, created).await?;
            Ok((backend, target, None))
        }
        other => Err(HostNetError::Unsupported(format!(
            "unsupported configuration: interface type '{other}' is not supported by the qemu driver yet"
        ))),
    }
}

/// A macvtap of ours (`<target dev>` or the next free `macvtapN`) on host
/// interface `dev` in macvtap `mode_name`, with the guest's MAC, and its
/// character device opened for QEMU: a `direct` interface, or a `network`
/// one whose port has a direct plug (`port` is recorded with the link).
async fn macvtap(
    nl: &Netlink,
    iface: &Element,
    dev: &str,
    mode_name: &str,
    owner: Owner<'_>,
    port: Option<PortRecord>,
    created: &mut Vec<OwnedLink>,
) -> Result<(Backend, Option<String>), HostNetError> {
    let mode = netlink::macvtap_mode(mode_name).ok_or_else(|| {
        HostNetError::Host(format!(
            "unsupported configuration: macvtap mode '{mode_name}'"
        ))
    })?;
    let parent = nl
        .link_index(dev)
        .await
        .map_err(|e| HostNetError::Host(e.to_string()))?
        .ok_or_else(|| {
            HostNetError::Host(format!(
                "Unable to get index for interface {dev}: No such device"
            ))
        })?;
    let mac = mac_of(iface);
    let name = match target_dev(iface) {
        Some(n) => n,
        None => netlink::free_name(
            "macvtap",
            &nl.link_names()
                .await
                .map_err(|e| HostNetError::Host(e.to_string()))?,
        ),
    };
    let index = nl
        .create_macvtap(&name, parent, mode, netlink::parse_mac(&mac).as_deref())
        .await
        .map_err(|e| {
            // libvirt's message; the link that is there stays.
            HostNetError::Host(format!(
                "error creating macvtap interface {name}@{dev} ({mac}): {}",
                e.message()
            ))
        })?;
    created.push(OwnedLink {
        name: name.clone(),
        index,
        port,
        shaped_only: false,
    });
    let file = open_macvtap(&name, index, owner.run_dir, owner.uuid).map_err(HostNetError::Host)?;
    Ok((Backend::Fd(file), Some(name)))
}

/// A tap of ours (`<target dev>` or the next free `vnetN`), up, and on
/// `bridge` when there is one: a `bridge` interface, an `ethernet` one
/// (no bridge) and a `network` one (the port's bridge; `port` is recorded
/// with the tap).
async fn bridge_tap(
    nl: &Netlink,
    iface: &Element,
    bridge: Option<&str>,
    port: Option<PortRecord>,
    created: &mut Vec<OwnedLink>,
) -> Result<(Backend, Option<String>), HostNetError> {
    let bridge = match bridge {
        Some(br) => Some(
            nl.link_index(br)
                .await
                .map_err(|e| HostNetError::Host(e.to_string()))?
                .ok_or_else(|| {
                    HostNetError::Host(format!(
                        "Cannot get interface MTU on '{br}': No such device"
                    ))
                })?,
        ),
        None => None,
    };
    let name = match target_dev(iface) {
        Some(n) => n,
        None => netlink::free_name(
            "vnet",
            &nl.link_names()
                .await
                .map_err(|e| HostNetError::Host(e.to_string()))?,
        ),
    };
    let index = create_tap(nl, &name).await?;
    created.push(OwnedLink {
        name: name.clone(),
        index,
        port,
        shaped_only: false,
    });
    nl.attach_up(index, bridge, tap_mac(&mac_of(iface)).as_deref())
        .await
        .map_err(|e| HostNetError::Host(e.to_string()))?;
    Ok((Backend::Tap(name.clone()), Some(name)))
}

/// The host side's MAC of a guest's tap: the guest's MAC with 0xFE as
/// first byte (libvirt's virNetDevTapCreateInBridgePort). A bridge takes
/// the lowest MAC of its ports as its own, so a high first byte keeps a
/// bridge from adopting a tap's address while any other port (a physical
/// NIC) is on it, and the bridge's address stays put as guests come and
/// go. `None` (a random MAC) when the guest has no valid MAC.
pub fn tap_mac(guest_mac: &str) -> Option<Vec<u8>> {
    let mut mac = netlink::parse_mac(guest_mac)?;
    mac[0] = 0xFE;
    Some(mac)
}

/// A persistent tap via `ip tuntap` (tun devices cannot be created over
/// rtnetlink, and TUNSETIFF is an ioctl). An existing name fails first,
/// so a link that was there is never adopted.
async fn create_tap(nl: &Netlink, name: &str) -> Result<u32, HostNetError> {
    let fail =
        |msg: String| HostNetError::Host(format!("Unable to create tap device {name}: {msg}"));
    if nl
        .link_index(name)
        .await
        .map_err(|e| HostNetError::Host(e.to_string()))?
        .is_some()
    {
        return Err(fail(netlink::errno_text(EEXIST)));
    }
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["tuntap", "add", "dev", name, "mode", "tap"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = crate::process::spawn_locked(&mut cmd).map_err(|e| fail(e.to_string()))?;
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    nl.link_index(name)
        .await
        .map_err(|e| HostNetError::Host(e.to_string()))?
        .ok_or_else(|| fail("vanished right after creation".into()))
}

/// Open the character device of macvtap `name` (ifindex `index`).
/// `/dev/tapN` is named after the ifindex, which is per network namespace
/// while /dev is not (HOST.md): the node is used only if its device number
/// is the one sysfs gives for our link; else a private node is made in the
/// run directory, opened and removed.
fn open_macvtap(
    name: &str,
    index: u32,
    run_dir: &Path,
    uuid: &str,
) -> Result<std::fs::File, String> {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod, stat};
    let sys = format!("/sys/class/net/{name}");
    let sys_index = std::fs::read_to_string(format!("{sys}/ifindex"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    if sys_index != Some(index) {
        return Err(format!(
            "cannot find the character device of macvtap {name}: /sys does not show this network namespace"
        ));
    }
    let dev = std::fs::read_to_string(format!("{sys}/macvtap/tap{index}/dev"))
        .map_err(|e| format!("cannot read {sys}/macvtap/tap{index}/dev: {e}"))?;
    let (major, minor) = dev
        .trim()
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .ok_or_else(|| format!("bad device number '{}' for {name}", dev.trim()))?;
    let rdev = makedev(major, minor);
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(p)
            .map_err(|e| format!("cannot open macvtap tap device {}: {e}", p.display()))
    };
    let node = std::path::PathBuf::from(format!("/dev/tap{index}"));
    if stat(&node).is_ok_and(|st| st.st_rdev == rdev) {
        return open(&node);
    }
    let private = run_dir.join(format!("{uuid}.tap{index}"));
    let _ = std::fs::remove_file(&private);
    mknod(
        &private,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o600),
        rdev,
    )
    .map_err(|e| format!("cannot create {}: {e}", private.display()))?;
    let file = open(&private);
    let _ = std::fs::remove_file(&private);
    file
}

/// Delete the links we created, then give back their network ports;
/// errors are logged, never fatal: a stop must complete even when a link
/// is already gone.
pub async fn release(net: &NetPeer, links: &[OwnedLink]) {
    if links.is_empty() {
        return;
    }
    match Netlink::open() {
        Ok(nl) => release_with(&nl, net, links).await,
        Err(e) => {
            tracing::warn!("cannot release host links {links:?}: {e}");
            release_ports(net, links).await;
        }
    }
}

async fn release_with(nl: &Netlink, net: &NetPeer, links: &[OwnedLink]) {
    for l in links.iter().rev() {
        if l.shaped_only {
            // Only if the name still is that link: never touch another.
            if matches!(nl.link_index(&l.name).await, Ok(Some(i)) if i == l.index) {
                virtmesh_util::bandwidth::clear(&l.name).await;
            }
            continue;
        }
        if let Err(e) = nl.delete_link(&l.name, l.index).await {
            log_release(l, &e);
        }
    }
    release_ports(net, links).await;
}

async fn release_ports(net: &NetPeer, links: &[OwnedLink]) {
    for port in links.iter().rev().filter_map(|l| l.port.as_ref()) {
        if let Err(e) = net.delete_port(port).await {
            tracing::warn!(
                "cannot delete port {} of network '{}': {e}",
                port.uuid,
                port.network
            );
        }
    }
}

/// After a restart, re-announce the ports of a guest that kept running
/// (libvirt re-notifies the network driver on reconnect).
pub async fn reclaim(net: &NetPeer, links: &[OwnedLink]) {
    for port in links.iter().filter_map(|l| l.port.as_ref()) {
        if let Err(e) = net.reclaim_port(port).await {
            tracing::warn!(
                "network port {} of network '{}' could not be reclaimed: {e}",
                port.uuid,
                port.network
            );
        }
    }
}

/// Show the ports in a live definition's interfaces (`<source network
/// portid bridge>`), in interface order.
pub fn show_ports(def: &mut crate::def::DomainDef, ports: &[Option<PortRecord>]) {
    if ports.iter().all(Option::is_none) {
        return;
    }
    // DomainDef exposes no mutable interface access; a round trip through
    // the element tree keeps this out of the definition code.
    let Ok(mut root) = virtmesh_conf::xml::parse(&def.to_xml(None)) else {
        return;
    };
    if let Some(devices) = root.child_mut("devices") {
        for (iface, port) in devices
            .elements_mut()
            .filter(|e| e.name == "interface")
            .zip(ports)
        {
            if let Some(p) = port {
                crate::netport::show_port(iface, p);
            }
        }
    }
    match crate::def::DomainDef::parse(&root.to_xml()) {
        Ok(d) => *def = d,
        Err(e) => tracing::warn!("live XML with network ports: {e}"),
    }
}

fn log_release(l: &OwnedLink, e: &NetlinkError) {
    tracing::warn!("cannot delete host link {} ({}): {e}", l.name, l.index);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_mac_is_the_guest_mac_with_fe_first() {
        assert_eq!(
            tap_mac("52:54:00:aa:bb:02"),
            Some(vec![0xfe, 0x54, 0, 0xaa, 0xbb, 2])
        );
        assert_eq!(tap_mac(""), None);
    }

    #[test]
    fn live_xml_shows_the_device_and_mode_of_a_direct_port() {
        let mut def = crate::def::DomainDef::parse(
            "<domain type='kvm'><name>g</name><memory>65536</memory><os><type>hvm</type></os>\
             <devices><interface type='network'><mac address='52:54:00:00:00:02'/><source network='v'/>\
             <target dev='macvtap0'/></interface></devices></domain>",
        )
        .expect("def");
        let port = PortRecord {
            network: "v".into(),
            uuid: "4a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d".into(),
            bridge: String::new(),
            direct: Some(crate::netport::DirectPlug {
                dev: "eth1".into(),
                mode: "vepa".into(),
            }),
            xml: String::new(),
        };
        show_ports(&mut def, &[Some(port)]);
        let xml = def.to_xml(None);
        assert!(
            xml.contains(
                "<source network='v' portid='4a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d' dev='eth1' mode='vepa'/>"
            ),
            "{xml}"
        );
    }

    #[test]
    fn live_xml_shows_the_port_of_each_network_interface() {
        let mut def = crate::def::DomainDef::parse(
            "<domain type='qemu'><name>g</name><memory>65536</memory><os><type>hvm</type></os>\
             <devices><interface type='user'><mac address='52:54:00:00:00:01'/></interface>\
             <interface type='network'><mac address='52:54:00:00:00:02'/><source network='n'/>\
             <target dev='vnet4'/></interface></devices></domain>",
        )
        .expect("def");
        let port = PortRecord {
            network: "n".into(),
            uuid: "4a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d".into(),
            bridge: "virbr1".into(),
            direct: None,
            xml: String::new(),
        };
        show_ports(&mut def, &[None, Some(port)]);
        let xml = def.to_xml(None);
        assert!(
            xml.contains(
                "<source network='n' portid='4a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d' bridge='virbr1'/>\n      <target dev='vnet4'/>"
            ),
            "{xml}"
        );
        assert_eq!(xml.matches("portid=").count(), 1, "{xml}");
    }
}
