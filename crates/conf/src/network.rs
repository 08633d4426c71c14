//! Network XML (`<network>`), normalised as libvirt's network parser does.

use crate::ConfError;
use crate::bandwidth::{Bandwidth, BandwidthContext};
use crate::error::{parse_root, parse_uuid};
use crate::xml::{Element, Node};

const ORDER: &[&str] = &[
    "name",
    "uuid",
    "title",
    "description",
    "metadata",
    "forward",
    "bridge",
    "mtu",
    "mac",
    "port",
    "domain",
    "dns",
    "bandwidth",
    "vlan",
    "ip",
    "route",
    "virtualport",
    "portgroup",
    "*",
];

const FORWARD_MODES: &[&str] = &[
    "nat",
    "route",
    "open",
    "bridge",
    "private",
    "vepa",
    "passthrough",
    "hostdev",
];

fn parse_mac(v: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = v.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        out[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(out)
}

fn v4(s: &str) -> Option<u32> {
    s.parse::<std::net::Ipv4Addr>().ok().map(u32::from)
}

/// libvirt's semantic checks of a network definition.
fn validate(root: &Element, name: &str) -> Result<(), ConfError> {
    if let Some(mode) = root.child("forward").and_then(|f| f.attr("mode"))
        && !FORWARD_MODES.contains(&mode)
    {
        return Err(ConfError::unsupported(format!(
            "unknown forwarding type '{mode}'"
        )));
    }
    if let Some(mac) = root.child("mac").and_then(|m| m.attr("address")) {
        let bytes = parse_mac(mac).ok_or_else(|| {
            ConfError::xml(format!(
                "Invalid bridge mac address '{mac}' in network '{name}'"
            ))
        })?;
        if bytes[0] & 1 == 1 {
            return Err(ConfError::xml(format!(
                "Invalid multicast bridge mac address '{mac}' in network '{name}'"
            )));
        }
    }
    let mut v4_dhcp = 0;
    for ip in root.children_named("ip") {
        let addr = ip.attr("address").unwrap_or("");
        let is_v6 = ip.attr("family") == Some("ipv6") || addr.contains(':');
        let ok = if is_v6 {
            addr.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            addr.parse::<std::net::Ipv4Addr>().is_ok()
        };
        if !addr.is_empty() && !ok {
            return Err(ConfError::xml(format!(
                "Invalid address '{addr}' in network '{name}'"
            )));
        }
        let Some(dhcp) = ip.child("dhcp") else {
            continue;
        };
        if !is_v6 {
            v4_dhcp += 1;
        }
        let prefix = ip
            .attr("prefix")
            .and_then(|p| p.parse::<u32>().ok())
            .or_else(|| ip.attr("netmask").and_then(v4).map(u32::leading_ones))
            .unwrap_or(24);
        for range in dhcp.children_named("range") {
            if let Some(unit) = range
                .child("lease")
                .and_then(|l| l.attr("unit"))
                .filter(|u| !["seconds", "minutes", "hours"].contains(u))
            {
                return Err(ConfError::xml(format!(
                    "Invalid value for attribute 'unit' in element 'lease': '{unit}'."
                )));
            }
            if is_v6 {
                continue;
            }
            let (Some(start), Some(end)) = (range.attr("start"), range.attr("end")) else {
                continue;
            };
            let (Some(s), Some(e), Some(net)) = (v4(start), v4(end), v4(addr)) else {
                continue;
            };
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix.min(32))
            };
            if s & mask != net & mask || e & mask != net & mask {
                return Err(ConfError::internal(format!(
                    "range {start} - {end} is not entirely within network {addr}/{prefix}"
                )));
            }
            if s > e {
                return Err(ConfError::internal(format!(
                    "range {start} - {end} is reversed "
                )));
            }
        }
        for host in dhcp.children_named("host") {
            if let Some(mac) = host.attr("mac")
                && parse_mac(mac).is_none()
            {
                return Err(ConfError::xml(format!(
                    "Cannot parse MAC address '{mac}' in network '{name}'"
                )));
            }
            if host.attr("ip").is_none() {
                return Err(ConfError::xml(format!(
                    "Missing IP address in static host definition for network '{name}'"
                )));
            }
        }
    }
    if v4_dhcp > 1 {
        return Err(ConfError::unsupported(
            "Multiple IPv4 dhcp sections found -- dhcp is supported only for a single IPv4 address on each network",
        ));
    }
    if let Some(dns) = root.child("dns") {
        if dns.children_named("host").any(|h| h.attr("ip").is_none()) {
            return Err(ConfError::detail(format!(
                "Missing IP address in network '{name}' DNS HOST record"
            )));
        }
        if dns
            .children_named("srv")
            .any(|s| s.attr("service").is_none())
        {
            return Err(ConfError::detail(format!(
                "missing required service attribute in DNS SRV record of network '{name}'"
            )));
        }
    }
    let defaults: Vec<&str> = root
        .children_named("portgroup")
        .filter(|p| p.attr("default") == Some("yes"))
        .filter_map(|p| p.attr("name"))
        .collect();
    if defaults.len() > 1 {
        return Err(ConfError::unsupported(format!(
            "network '{name}' has multiple default <portgroup> elements ({} and {}), but only one default is allowed",
            defaults[0], defaults[1]
        )));
    }
    Ok(())
}

/// A network definition in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkDef {
    root: Element,
}

impl NetworkDef {
    pub fn parse(xml: &str) -> Result<Self, ConfError> {
        Self::from_element(parse_root(xml, "network")?)
    }

    pub fn from_element(mut root: Element) -> Result<Self, ConfError> {
        root.remove_attr("connections");
        let name = root
            .child_text("name")
            .map(|n| n.trim().to_owned())
            .unwrap_or_default();
        if name.is_empty() {
            return Err(ConfError::no_name());
        }
        if name.contains('/') {
            return Err(ConfError::detail("invalid char in name: /"));
        }
        validate(&root, &name)?;
        // Network-wide and portgroup limits: no floor, no class ID.
        Bandwidth::canonicalize(&mut root, BandwidthContext::NETWORK)?;
        for pg in root.elements_mut().filter(|e| e.name == "portgroup") {
            Bandwidth::canonicalize(pg, BandwidthContext::NETWORK)?;
        }
        root.set_child_text("name", name);
        let uuid = parse_uuid(root.child_text("uuid"))?;
        root.set_child_text("uuid", uuid.to_string());
        let mut mode = None;
        if let Some(fwd) = root.child_mut("forward") {
            if fwd.attr("mode").is_none() {
                fwd.set_attr("mode", "nat");
            }
            // The forward device and the first <interface> mirror each other.
            let first_iface = fwd
                .child("interface")
                .and_then(|i| i.attr("dev"))
                .map(str::to_owned);
            match (fwd.attr("dev").map(str::to_owned), first_iface) {
                (None, Some(dev)) => fwd.set_attr("dev", dev),
                (Some(dev), None) => fwd.children.insert(
                    0,
                    Node::Element(Element::new("interface").with_attr("dev", dev)),
                ),
                _ => {}
            }
            if fwd.attr("mode") == Some("hostdev") && fwd.attr("managed").is_none() {
                fwd.set_attr("managed", "no");
            }
            fwd.order_attrs(&["dev", "mode", "managed"]);
            mode = fwd.attr("mode").map(str::to_owned);
        }
        let routed = matches!(
            mode.as_deref(),
            None | Some("nat") | Some("route") | Some("open")
        );
        if let Some(br) = root.child_mut("bridge") {
            if routed {
                if br.attr("stp").is_none() {
                    br.set_attr("stp", "on");
                }
                if br.attr("delay").is_none() {
                    br.set_attr("delay", "0");
                }
            }
            br.order_attrs(&["name", "zone", "stp", "delay", "macTableManager"]);
        }
        for ip in root.elements_mut().filter(|e| e.name == "ip") {
            ip.order_attrs(&["family", "address", "netmask", "prefix", "localPtr"]);
            // An empty <tftp/> (no root) carries nothing and is dropped.
            ip.children.retain(
                |n| !matches!(n, Node::Element(e) if e.name == "tftp" && e.attrs.is_empty()),
            );
            // libvirt always prints <ip> open and closed on two lines.
            if ip.children.is_empty() {
                ip.children.push(Node::Break);
            }
        }
        root.sort_children(ORDER);
        Ok(NetworkDef { root })
    }

    pub fn to_xml(&self) -> String {
        self.root.to_xml()
    }

    pub fn name(&self) -> String {
        self.root.child_text("name").unwrap_or_default()
    }

    pub fn uuid(&self) -> String {
        self.root.child_text("uuid").unwrap_or_default()
    }

    pub fn bridge(&self) -> Option<String> {
        self.root
            .child("bridge")
            .and_then(|b| b.attr("name"))
            .map(str::to_owned)
    }

    pub fn element(&self) -> &Element {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_network_canonical() {
        let def = NetworkDef::parse(
            "<network><name>default</name><uuid>dd8fe884-6c02-601e-7551-cca97df1c5df</uuid><bridge name='virbr0'/><forward/><ip address='192.168.122.1' netmask='255.255.255.0'><dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip></network>",
        )
        .unwrap();
        let expected = "<network>
  <name>default</name>
  <uuid>dd8fe884-6c02-601e-7551-cca97df1c5df</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
";
        assert_eq!(def.to_xml(), expected);
        let n2 = NetworkDef::parse(
            "<network><name>n2</name><ip address='10.0.0.1' netmask='255.255.255.0'/></network>",
        )
        .unwrap();
        assert!(
            n2.to_xml()
                .contains("<ip address='10.0.0.1' netmask='255.255.255.0'>\n  </ip>\n")
        );
    }
}
