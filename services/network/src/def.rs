//! A typed view of a canonical network definition: the fields the driver
//! plumbs (bridge, addresses, DHCP, DNS, forwarding), read once from the
//! `virtmesh_conf` element tree, plus the defaults libvirt fills in at
//! define time (bridge name, bridge MAC).

use crate::error::{self as err, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use virtmesh_conf::bandwidth::{Bandwidth, BandwidthContext};
use virtmesh_conf::network::NetworkDef;
use virtmesh_conf::xml::{Element, Node};

/// virNetworkForwardType, for the modes this driver knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardMode {
    /// No `<forward>`: an isolated network.
    None,
    Nat,
    Route,
    Open,
    /// An existing host bridge: nothing is created.
    Bridge,
    /// macvtap / hostdev modes (private, vepa, passthrough, hostdev).
    Other(String),
}

impl ForwardMode {
    /// Whether libvirt gives the network a bridge of its own (and a MAC).
    pub fn has_own_bridge(&self) -> bool {
        matches!(
            self,
            ForwardMode::None | ForwardMode::Nat | ForwardMode::Route | ForwardMode::Open
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// 0 means infinite.
    pub expiry: u64,
    /// 's', 'm' or 'h'.
    pub unit: char,
}

impl Lease {
    fn parse(el: Option<&Element>) -> Option<Lease> {
        let el = el?;
        let expiry = el.attr("expiry")?.parse().ok()?;
        let unit = match el.attr("unit") {
            Some("seconds") => 's',
            Some("hours") => 'h',
            _ => 'm',
        };
        Some(Lease { expiry, unit })
    }

    /// dnsmasq's lease time text (networkBuildDnsmasqLeaseTime).
    pub fn dnsmasq(&self) -> String {
        if self.expiry == 0 {
            "infinite".to_owned()
        } else {
            format!("{}{}", self.expiry, self.unit)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpRange {
    pub start: IpAddr,
    pub end: IpAddr,
    pub lease: Option<Lease>,
}

impl DhcpRange {
    /// How many addresses the range holds (virSocketAddrGetRange).
    pub fn size(&self) -> u64 {
        let (s, e) = match (self.start, self.end) {
            (IpAddr::V4(s), IpAddr::V4(e)) => (u128::from(u32::from(s)), u128::from(u32::from(e))),
            (IpAddr::V6(s), IpAddr::V6(e)) => (u128::from(s), u128::from(e)),
            _ => return 0,
        };
        u64::try_from(e.saturating_sub(s) + 1).unwrap_or(u64::MAX)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpHost {
    pub mac: Option<String>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub ip: Option<IpAddr>,
    pub lease: Option<Lease>,
}

impl DhcpHost {
    pub fn parse(el: &Element) -> DhcpHost {
        DhcpHost {
            mac: el.attr("mac").map(str::to_owned),
            id: el.attr("id").map(str::to_owned),
            name: el.attr("name").map(str::to_owned),
            ip: el.attr("ip").and_then(|i| i.parse().ok()),
            lease: Lease::parse(el.child("lease")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpDef {
    pub address: IpAddr,
    pub prefix: u8,
    pub local_ptr: bool,
    pub tftp_root: Option<String>,
    pub ranges: Vec<DhcpRange>,
    pub hosts: Vec<DhcpHost>,
    /// `<bootp file= server=>`.
    pub bootp: Option<(String, Option<String>)>,
}

impl IpDef {
    pub fn is_v6(&self) -> bool {
        self.address.is_ipv6()
    }

    /// Whether DHCP is served on this address (ranges or static hosts).
    pub fn has_dhcp(&self) -> bool {
        !self.ranges.is_empty() || !self.hosts.is_empty()
    }

    /// The network address, e.g. 192.168.122.0 for 192.168.122.1/24.
    pub fn network(&self) -> IpAddr {
        match self.address {
            IpAddr::V4(a) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix.min(32)))
                };
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix.min(128)))
                };
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }

    /// "192.168.122.0/24".
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.network(), self.prefix)
    }

    /// The netmask of an IPv4 address as dotted quad.
    pub fn netmask_v4(&self) -> Ipv4Addr {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix.min(32)))
        };
        Ipv4Addr::from(mask)
    }
}

/// libvirt's default prefix of an IPv4 address without netmask or prefix:
/// the classful one (virSocketAddrGetIPPrefix).
fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        192..=223 => 24,
        _ => 32,
    }
}

fn parse_ip(el: &Element) -> Option<IpDef> {
    let address: IpAddr = el.attr("address")?.parse().ok()?;
    let prefix = match (el.attr("prefix"), el.attr("netmask"), address) {
        (Some(p), _, _) => p.parse().ok()?,
        (None, Some(m), _) => {
            let m: Ipv4Addr = m.parse().ok()?;
            u8::try_from(u32::from(m).leading_ones()).ok()?
        }
        (None, None, IpAddr::V4(a)) => classful_prefix(a),
        (None, None, IpAddr::V6(_)) => 64,
    };
    let dhcp = el.child("dhcp");
    let ranges = dhcp
        .map(|d| {
            d.children_named("range")
                .filter_map(|r| {
                    Some(DhcpRange {
                        start: r.attr("start")?.parse().ok()?,
                        end: r.attr("end")?.parse().ok()?,
                        lease: Lease::parse(r.child("lease")),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let hosts = dhcp
        .map(|d| d.children_named("host").map(DhcpHost::parse).collect())
        .unwrap_or_default();
    let bootp = dhcp.and_then(|d| d.child("bootp")).and_then(|b| {
        Some((
            b.attr("file")?.to_owned(),
            b.attr("server").map(str::to_owned),
        ))
    });
    Some(IpDef {
        address,
        prefix,
        local_ptr: el.attr("localPtr") == Some("yes"),
        tftp_root: el
            .child("tftp")
            .and_then(|t| t.attr("root"))
            .map(str::to_owned),
        ranges,
        hosts,
        bootp,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub service: String,
    pub protocol: String,
    pub domain: Option<String>,
    pub target: Option<String>,
    pub port: u32,
    pub priority: u32,
    pub weight: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    /// `<dns enable=>`; absent means yes.
    pub enable: Option<bool>,
    pub forward_plain_names: Option<bool>,
    /// (domain, address) pairs of `<forwarder>`.
    pub forwarders: Vec<(Option<String>, Option<String>)>,
    pub txts: Vec<(String, String)>,
    pub srvs: Vec<Srv>,
    /// (ip, hostnames) of `<host>`.
    pub hosts: Vec<(String, Vec<String>)>,
}

fn yes_no(v: Option<&str>) -> Option<bool> {
    match v {
        Some("yes") => Some(true),
        Some("no") => Some(false),
        _ => None,
    }
}

fn parse_dns(el: Option<&Element>) -> Dns {
    let Some(el) = el else {
        return Dns::default();
    };
    let num = |e: &Element, k: &str| e.attr(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    Dns {
        enable: yes_no(el.attr("enable")),
        forward_plain_names: yes_no(el.attr("forwardPlainNames")),
        forwarders: el
            .children_named("forwarder")
            .map(|f| {
                (
                    f.attr("domain").map(str::to_owned),
                    f.attr("addr").map(str::to_owned),
                )
            })
            .collect(),
        txts: el
            .children_named("txt")
            .filter_map(|t| Some((t.attr("name")?.to_owned(), t.attr("value")?.to_owned())))
            .collect(),
        srvs: el
            .children_named("srv")
            .filter_map(|s| {
                Some(Srv {
                    service: s.attr("service")?.to_owned(),
                    protocol: s.attr("protocol").unwrap_or("tcp").to_owned(),
                    domain: s.attr("domain").map(str::to_owned),
                    target: s.attr("target").map(str::to_owned),
                    port: num(s, "port"),
                    priority: num(s, "priority"),
                    weight: num(s, "weight"),
                })
            })
            .collect(),
        hosts: el
            .children_named("host")
            .filter_map(|h| {
                Some((
                    h.attr("ip")?.to_owned(),
                    h.children_named("hostname")
                        .map(|n| n.text().trim().to_owned())
                        .collect(),
                ))
            })
            .collect(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    pub address: IpAddr,
    pub prefix: u8,
    pub gateway: IpAddr,
    pub metric: Option<u32>,
}

/// A network definition with its typed view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDef {
    pub def: NetworkDef,
    pub name: String,
    pub uuid: String,
    pub mode: ForwardMode,
    /// `<forward dev=>`: the only host interface traffic may leave by.
    pub forward_dev: Option<String>,
    /// `<forward><interface dev=>`: the pool of host interfaces of a
    /// macvtap network; libvirt's parser makes a lone `<forward dev=>`
    /// the pool's one member.
    pub pool: Vec<String>,
    /// `<forward><pf dev=>`: an SR-IOV physical function whose virtual
    /// functions become the pool when there is no `<interface>`.
    pub pf: Option<String>,
    /// `<nat><address start end>`.
    pub nat_addr: Option<(Ipv4Addr, Ipv4Addr)>,
    /// `<nat><port start end>`; libvirt's default is 1024-65535.
    pub nat_ports: (u16, u16),
    pub nat_ipv6: bool,
    pub bridge: Option<String>,
    pub stp: bool,
    /// Forward delay in seconds.
    pub delay: u32,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    pub domain: Option<(String, Option<bool>)>,
    pub dns: Dns,
    pub ips: Vec<IpDef>,
    pub routes: Vec<StaticRoute>,
    /// `<dnsmasq:options>` values, passed through verbatim.
    pub dnsmasq_options: Vec<String>,
    /// The network-wide `<bandwidth>`: shaping on the bridge, and what
    /// guests' floors are guaranteed out of.
    pub bandwidth: Option<Bandwidth>,
}

impl NetDef {
    pub fn parse(xml: &str) -> Result<NetDef> {
        NetworkDef::parse(xml)
            .map_err(err::conf)
            .map(Self::from_def)
    }

    pub fn from_def(def: NetworkDef) -> NetDef {
        let root = def.element();
        let fwd = root.child("forward");
        let mode = match fwd.and_then(|f| f.attr("mode")) {
            None if fwd.is_none() => ForwardMode::None,
            None | Some("nat") => ForwardMode::Nat,
            Some("route") => ForwardMode::Route,
            Some("open") => ForwardMode::Open,
            Some("bridge") => ForwardMode::Bridge,
            Some(other) => ForwardMode::Other(other.to_owned()),
        };
        let nat = fwd.and_then(|f| f.child("nat"));
        let nat_addr = nat.and_then(|n| n.child("address")).and_then(|a| {
            let start: Ipv4Addr = a.attr("start")?.parse().ok()?;
            let end = a.attr("end").and_then(|e| e.parse().ok()).unwrap_or(start);
            Some((start, end))
        });
        let nat_ports = nat
            .and_then(|n| n.child("port"))
            .and_then(|p| {
                let s: u16 = p.attr("start")?.parse().ok()?;
                let e: u16 = p.attr("end").and_then(|e| e.parse().ok()).unwrap_or(s);
                Some((s, e))
            })
            .unwrap_or((1024, 65535));
        let bridge = root.child("bridge");
        let dnsmasq_options = root
            .elements()
            .filter(|e| e.name.ends_with(":options"))
            .flat_map(|o| o.elements())
            .filter_map(|o| o.attr("value").map(str::to_owned))
            .collect();
        let forward_dev = fwd.and_then(|f| f.attr("dev")).map(str::to_owned);
        let mut pool: Vec<String> = fwd
            .map(|f| {
                f.children_named("interface")
                    .filter_map(|i| i.attr("dev").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if pool.is_empty()
            && let Some(d) = &forward_dev
        {
            pool.push(d.clone());
        }
        NetDef {
            name: def.name(),
            uuid: def.uuid(),
            pool,
            pf: fwd
                .and_then(|f| f.child("pf"))
                .and_then(|p| p.attr("dev"))
                .map(str::to_owned),
            forward_dev,
            nat_addr,
            nat_ports,
            nat_ipv6: nat.and_then(|n| n.attr("ipv6")) == Some("yes"),
            bridge: bridge.and_then(|b| b.attr("name")).map(str::to_owned),
            stp: bridge.and_then(|b| b.attr("stp")) != Some("off"),
            delay: bridge
                .and_then(|b| b.attr("delay"))
                .and_then(|d| d.parse().ok())
                .unwrap_or(0),
            mac: root
                .child("mac")
                .and_then(|m| m.attr("address"))
                .map(str::to_owned),
            mtu: root
                .child("mtu")
                .and_then(|m| m.attr("size"))
                .and_then(|s| s.parse().ok()),
            domain: root
                .child("domain")
                .and_then(|d| Some((d.attr("name")?.to_owned(), yes_no(d.attr("localOnly"))))),
            dns: parse_dns(root.child("dns")),
            ips: root.children_named("ip").filter_map(parse_ip).collect(),
            routes: root
                .children_named("route")
                .filter_map(|r| {
                    let address: IpAddr = r.attr("address")?.parse().ok()?;
                    let prefix = match (r.attr("prefix"), r.attr("netmask")) {
                        (Some(p), _) => p.parse().ok()?,
                        (None, Some(m)) => {
                            let m: Ipv4Addr = m.parse().ok()?;
                            u8::try_from(u32::from(m).leading_ones()).ok()?
                        }
                        (None, None) => match address {
                            IpAddr::V4(a) => classful_prefix(a),
                            IpAddr::V6(_) => 64,
                        },
                    };
                    Some(StaticRoute {
                        address,
                        prefix,
                        gateway: r.attr("gateway")?.parse().ok()?,
                        metric: r.attr("metric").and_then(|m| m.parse().ok()),
                    })
                })
                .collect(),
            dnsmasq_options,
            bandwidth: Bandwidth::of(root, BandwidthContext::NETWORK)
                .ok()
                .flatten(),
            mode,
            def,
        }
    }

    /// The `<bandwidth>` of portgroup `group`, or of the default
    /// portgroup when the port names none (virPortGroupFindByName).
    pub fn portgroup_bandwidth(&self, group: Option<&str>) -> Option<Bandwidth> {
        let root = self.def.element();
        let pg = root.children_named("portgroup").find(|p| match group {
            Some(g) => p.attr("name") == Some(g),
            None => p.attr("default") == Some("yes"),
        })?;
        Bandwidth::of(pg, BandwidthContext::NETWORK).ok().flatten()
    }

    /// The forward mode as libvirt names it in messages.
    pub fn mode_name(&self) -> &str {
        match &self.mode {
            ForwardMode::None => "none",
            ForwardMode::Nat => "nat",
            ForwardMode::Route => "route",
            ForwardMode::Open => "open",
            ForwardMode::Bridge => "bridge",
            ForwardMode::Other(m) => m,
        }
    }

    /// networkValidate's QoS rules: network-wide and portgroup limits
    /// only where there is a bridge to shape (the routed modes, or
    /// forward mode bridge with a named bridge); none on hostdev
    /// portgroups.
    pub fn check_bandwidth(&self) -> Result<()> {
        let allowed = self.mode.has_own_bridge()
            || (self.mode == ForwardMode::Bridge && self.bridge.is_some());
        let mode = self.mode_name();
        if self.bandwidth.is_some() && !allowed {
            return Err(err::unsupported(format!(
                "Unsupported network-wide <bandwidth> element in network {} with forward mode='{mode}'",
                self.name
            )));
        }
        for pg in self.def.element().children_named("portgroup") {
            if pg.child("bandwidth").is_none() {
                continue;
            }
            let pg_name = pg.attr("name").unwrap_or_default();
            if !allowed {
                return Err(err::unsupported(format!(
                    "Unsupported <bandwidth> element in network '{}' in portgroup '{pg_name}' with forward mode='{mode}'",
                    self.name
                )));
            }
        }
        Ok(())
    }

    pub fn to_xml(&self) -> String {
        self.def.to_xml()
    }

    /// The macvtap mode of a network whose guests get a macvtap on one of
    /// its pool's interfaces (libvirt's "direct" forward modes): private,
    /// vepa, passthrough, and bridge without a `<bridge name>`.
    pub fn macvtap_mode(&self) -> Option<&str> {
        match &self.mode {
            ForwardMode::Bridge if self.bridge.is_none() => Some("bridge"),
            ForwardMode::Other(m) if matches!(m.as_str(), "private" | "vepa" | "passthrough") => {
                Some(m.as_str())
            }
            _ => None,
        }
    }

    /// Whether DNS is served (`<dns enable='no'>` turns it off).
    pub fn want_dns(&self) -> bool {
        self.dns.enable != Some(false)
    }

    /// Whether starting this network runs dnsmasq: there is an address to
    /// serve on and something to serve (DNS, DHCP, or IPv6 RA).
    pub fn needs_dnsmasq(&self) -> bool {
        self.mode.has_own_bridge()
            && !self.ips.is_empty()
            && (self.want_dns() || self.ips.iter().any(|i| i.has_dhcp() || i.is_v6()))
    }
}

/// A random locally administered MAC in QEMU/libvirt's 52:54:00 prefix.
pub fn random_mac() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// Fill in what libvirt fills in when a network is defined: a bridge name
/// (`virbrN`, the first free one, or a `%d` template expanded) and a bridge
/// MAC for networks that get a bridge of their own. `taken` says whether a
/// bridge name is already used by another network or exists on the host.
pub fn fill_defaults(def: NetworkDef, taken: &dyn Fn(&str) -> bool) -> Result<NetworkDef> {
    let typed = NetDef::from_def(def.clone());
    typed.check_bandwidth()?;
    if !typed.mode.has_own_bridge() {
        return Ok(def);
    }
    let mut root = def.element().clone();
    let template = match typed.bridge.as_deref() {
        None => Some("virbr%d".to_owned()),
        Some(t) if t.contains("%d") => Some(t.to_owned()),
        Some(_) => None,
    };
    let mut changed = false;
    if let Some(template) = template {
        let name = (0..256)
            .map(|i| template.replace("%d", &i.to_string()))
            .find(|n| !taken(n))
            .ok_or_else(|| err::internal(format!("Bridge generation exceeded max id {}", 256)))?;
        root.child_or_insert("bridge").set_attr("name", name);
        changed = true;
    }
    if typed.mac.is_none() {
        root.children.push(Node::Element(
            Element::new("mac").with_attr("address", random_mac()),
        ));
        changed = true;
    }
    if !changed {
        return Ok(def);
    }
    NetworkDef::from_element(root).map_err(err::conf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_bridge_and_mac() {
        let def = NetworkDef::parse(
            "<network><name>n</name><forward mode='nat'/><ip address='10.9.0.1' prefix='24'/></network>",
        )
        .expect("parse");
        let filled = fill_defaults(def, &|n| n == "virbr0").expect("fill");
        let xml = filled.to_xml();
        assert!(
            xml.contains("<bridge name='virbr1' stp='on' delay='0'/>"),
            "{xml}"
        );
        assert!(xml.contains("<mac address='52:54:00:"), "{xml}");
        let typed = NetDef::from_def(filled);
        assert_eq!(typed.ips[0].cidr(), "10.9.0.0/24");
        assert_eq!(typed.mode, ForwardMode::Nat);
    }

    #[test]
    fn bridge_mode_gets_nothing() {
        let def = NetworkDef::parse(
            "<network><name>b</name><forward mode='bridge'/><bridge name='br0'/></network>",
        )
        .expect("parse");
        let filled = fill_defaults(def.clone(), &|_| false).expect("fill");
        assert_eq!(filled, def);
    }
}

#[cfg(test)]
mod macvtap_tests {
    use super::*;

    fn typed(xml: &str) -> NetDef {
        NetDef::parse(xml).expect("parse")
    }

    #[test]
    fn macvtap_modes_and_pools() {
        let vepa = typed(
            "<network><name>v</name><forward mode='vepa'><interface dev='eth1'/><interface dev='eth2'/></forward></network>",
        );
        assert_eq!(vepa.macvtap_mode(), Some("vepa"));
        assert_eq!(vepa.pool, ["eth1", "eth2"]);
        let lone =
            typed("<network><name>p</name><forward mode='passthrough' dev='eth3'/></network>");
        assert_eq!(lone.macvtap_mode(), Some("passthrough"));
        assert_eq!(lone.pool, ["eth3"]);
        let pf = typed(
            "<network><name>f</name><forward mode='private'><pf dev='eth4'/></forward></network>",
        );
        assert_eq!(pf.pf.as_deref(), Some("eth4"));
        assert!(pf.pool.is_empty());
        // bridge mode is macvtap only without a bridge of its own.
        let macvtap_bridge = typed(
            "<network><name>b</name><forward mode='bridge'><interface dev='eth1'/></forward></network>",
        );
        assert_eq!(macvtap_bridge.macvtap_mode(), Some("bridge"));
        let host_bridge =
            typed("<network><name>h</name><forward mode='bridge'/><bridge name='br0'/></network>");
        assert_eq!(host_bridge.macvtap_mode(), None);
        let nat = typed("<network><name>n</name><forward mode='nat' dev='eth0'/></network>");
        assert_eq!(nat.macvtap_mode(), None);
    }
}
