//! virNetworkUpdate for the sections libvirt's test driver edits in place:
//! DHCP hosts and ranges, DNS hosts, TXT and SRV records, port groups and
//! forward interfaces.

use virtmesh_conf::network::NetworkDef;
use virtmesh_conf::xml::{self, Element, Node};
use virtmesh_proto::v1::{self as pb, NetworkUpdateCommand as Cmd, NetworkUpdateSection as Sec};
use virtmesh_rpc::ErrorDomain;

use crate::err::{self, VResult};

fn section_name(sec: Sec) -> &'static str {
    match sec {
        Sec::NetworkSectionNone => "none",
        Sec::NetworkSectionBridge => "bridge",
        Sec::NetworkSectionDomain => "domain",
        Sec::NetworkSectionIp => "ip",
        Sec::NetworkSectionIpDhcpHost => "ip-dhcp-host",
        Sec::NetworkSectionIpDhcpRange => "ip-dhcp-range",
        Sec::NetworkSectionForward => "forward",
        Sec::NetworkSectionForwardInterface => "forward-interface",
        Sec::NetworkSectionForwardPf => "forward-pf",
        Sec::NetworkSectionPortgroup => "portgroup",
        Sec::NetworkSectionDnsHost => "dns-host",
        Sec::NetworkSectionDnsTxt => "dns-txt",
        Sec::NetworkSectionDnsSrv => "dns-srv",
    }
}

/// Insert `el` among `parent`'s children: first or last of its kind.
fn insert(parent: &mut Element, el: Element, first: bool) {
    let same: Vec<usize> = parent
        .children
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n, Node::Element(e) if e.name == el.name))
        .map(|(i, _)| i)
        .collect();
    let at = match (first, same.first(), same.last()) {
        (true, Some(i), _) => *i,
        (false, _, Some(i)) => i + 1,
        _ => parent.children.len(),
    };
    parent.children.retain(|n| !matches!(n, Node::Break));
    let at = at.min(parent.children.len());
    parent.children.insert(at, Node::Element(el));
}

/// Remove the first child matching `pred`; false when none does.
fn remove(parent: &mut Element, pred: impl Fn(&Element) -> bool) -> bool {
    match parent
        .children
        .iter()
        .position(|n| matches!(n, Node::Element(e) if pred(e)))
    {
        Some(i) => {
            parent.children.remove(i);
            true
        }
        None => false,
    }
}

fn attr_eq(a: &Element, b: &Element, key: &str) -> bool {
    a.attr(key).is_some() && a.attr(key) == b.attr(key)
}

/// The `<ip>` an IP-related update applies to.
fn ip_for(root: &mut Element, parent_index: i32, v6: bool) -> VResult<&mut Element> {
    let ips: Vec<usize> = root
        .children
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n, Node::Element(e) if e.name == "ip"))
        .map(|(i, _)| i)
        .collect();
    let chosen = if parent_index >= 0 {
        ips.get(usize::try_from(parent_index).unwrap_or(usize::MAX))
            .copied()
    } else {
        ips.iter().copied().find(|i| {
            matches!(&root.children[*i], Node::Element(e)
                if (e.attr("family") == Some("ipv6") || e.attr("address").is_some_and(|a| a.contains(':'))) == v6)
        })
    };
    match chosen.and_then(|i| match &mut root.children[i] {
        Node::Element(e) => Some(e),
        _ => None,
    }) {
        Some(ip) => Ok(ip),
        None => Err(err::invalid_arg(format!(
            "couldn't find an appropriate {} <ip> element in network",
            if v6 { "IPv6" } else { "IPv4" }
        ))),
    }
}

fn dhcp_host_text(h: &Element) -> String {
    format!(
        "<host mac='{}' name='{}' ip='{}'/>",
        h.attr("mac").unwrap_or("(null)"),
        h.attr("name").unwrap_or("(null)"),
        h.attr("ip").unwrap_or("(null)")
    )
}

/// Apply one update to a network definition.
pub fn apply(def: &NetworkDef, r: &pb::NetworkUpdateRequest) -> VResult<NetworkDef> {
    let name = def.name();
    let cmd = Cmd::try_from(r.command).unwrap_or(Cmd::None);
    let sec = Sec::try_from(r.section).unwrap_or(Sec::NetworkSectionNone);
    let el = xml::parse(&r.xml).map_err(|e| err::conf(e.into(), ErrorDomain::Network))?;
    let mut root = def.element().clone();
    let first = cmd == Cmd::AddFirst;
    let adding = matches!(cmd, Cmd::AddFirst | Cmd::AddLast);
    let cant = || {
        err::unsupported(format!(
            "can't update '{}' section of network '{name}'",
            section_name(sec)
        ))
    };
    if cmd == Cmd::None {
        return Err(err::invalid_arg(
            "unrecognized network update command code 0",
        ));
    }
    match sec {
        Sec::NetworkSectionIpDhcpHost => {
            let v6 = el.attr("ip").is_some_and(|ip| ip.contains(':'));
            let ip = ip_for(&mut root, r.parent_index, v6)?;
            let dhcp = ip.child_or_insert("dhcp");
            let matches = |h: &Element| {
                attr_eq(h, &el, "mac")
                    || attr_eq(h, &el, "id")
                    || (el.attr("mac").is_none() && attr_eq(h, &el, "name"))
            };
            let exists = dhcp
                .children_named("host")
                .any(|h| matches(h) || attr_eq(h, &el, "ip"));
            match cmd {
                _ if adding => {
                    if exists {
                        return Err(err::op_invalid(format!(
                            "there is an existing dhcp host entry in network '{name}' that matches \"{}\"",
                            dhcp_host_text(&el)
                        )));
                    }
                    insert(dhcp, el, first);
                }
                Cmd::Delete | Cmd::Modify => {
                    let pos = dhcp
                        .children
                        .iter()
                        .position(
                            |n| matches!(n, Node::Element(h) if h.name == "host" && matches(h)),
                        )
                        .ok_or_else(|| {
                            err::op_invalid(format!(
                                "couldn't locate a matching dhcp host entry in network '{name}'"
                            ))
                        })?;
                    if cmd == Cmd::Delete {
                        dhcp.children.remove(pos);
                    } else {
                        dhcp.children[pos] = Node::Element(el);
                    }
                }
                _ => return Err(cant()),
            }
        }
        Sec::NetworkSectionIpDhcpRange => {
            let v6 = el.attr("start").is_some_and(|s| s.contains(':'));
            let ip = ip_for(&mut root, r.parent_index, v6)?;
            let dhcp = ip.child_or_insert("dhcp");
            let same = |x: &Element| {
                x.name == "range" && attr_eq(x, &el, "start") && attr_eq(x, &el, "end")
            };
            match cmd {
                _ if adding => {
                    if dhcp.elements().any(same) {
                        return Err(err::op_invalid(format!(
                            "there is an existing dhcp range entry in network '{name}' that matches \"<range start='{}' end='{}'/>\"",
                            el.attr("start").unwrap_or(""),
                            el.attr("end").unwrap_or("")
                        )));
                    }
                    insert(dhcp, el, first);
                }
                Cmd::Delete => {
                    if !remove(dhcp, same) {
                        return Err(err::op_invalid(format!(
                            "couldn't locate a matching dhcp range entry in network '{name}'"
                        )));
                    }
                }
                _ => {
                    return Err(err::unsupported(
                        "dhcp ranges cannot be modified, only added or deleted",
                    ));
                }
            }
        }
        Sec::NetworkSectionDnsHost | Sec::NetworkSectionDnsTxt | Sec::NetworkSectionDnsSrv => {
            let (elem, what, key) = match sec {
                Sec::NetworkSectionDnsHost => ("host", "HOST", "ip"),
                Sec::NetworkSectionDnsTxt => ("txt", "TXT", "name"),
                _ => ("srv", "SRV", "service"),
            };
            let dns = root.child_or_insert("dns");
            let same = |x: &Element| x.name == elem && attr_eq(x, &el, key);
            match cmd {
                _ if adding => {
                    if dns.elements().any(same) {
                        return Err(err::op_invalid(format!(
                            "there is already at least one DNS {what} record with a matching field in network {name}"
                        )));
                    }
                    insert(dns, el, first);
                }
                Cmd::Delete => {
                    if !remove(dns, same) {
                        return Err(err::op_invalid(format!(
                            "couldn't locate a matching DNS {what} record in network {name}"
                        )));
                    }
                }
                _ => {
                    return Err(err::unsupported(format!(
                        "DNS {what} records cannot be modified, only added or deleted"
                    )));
                }
            }
        }
        Sec::NetworkSectionPortgroup => {
            let pg_name = el.attr("name").unwrap_or("").to_owned();
            let same =
                |x: &Element| x.name == "portgroup" && x.attr("name") == Some(pg_name.as_str());
            let exists = root.elements().any(same);
            match cmd {
                _ if adding => {
                    if exists {
                        return Err(err::op_invalid(format!(
                            "there is already a portgroup named '{pg_name}' in network '{name}'"
                        )));
                    }
                    insert(&mut root, el, first);
                }
                Cmd::Delete | Cmd::Modify => {
                    let pos = root
                        .children
                        .iter()
                        .position(|n| matches!(n, Node::Element(x) if same(x)))
                        .ok_or_else(|| {
                            err::op_invalid(format!(
                                "couldn't find a portgroup entry in network '{name}' matching <portgroup name='{pg_name}'>"
                            ))
                        })?;
                    if cmd == Cmd::Delete {
                        root.children.remove(pos);
                    } else {
                        root.children[pos] = Node::Element(el);
                    }
                }
                _ => return Err(cant()),
            }
        }
        Sec::NetworkSectionForwardInterface => {
            let fwd = root
                .child_mut("forward")
                .ok_or_else(|| err::op_invalid(format!("can't add an <interface> element unless network '{name}' has a <forward> element")))?;
            let same = |x: &Element| x.name == "interface" && attr_eq(x, &el, "dev");
            match cmd {
                _ if adding => {
                    if fwd.elements().any(same) {
                        return Err(err::op_invalid(format!(
                            "there is an existing interface entry in network '{name}' that matches \"<interface dev='{}'>\"",
                            el.attr("dev").unwrap_or("")
                        )));
                    }
                    insert(fwd, el, first);
                }
                Cmd::Delete => {
                    if !remove(fwd, same) {
                        return Err(err::op_invalid(format!(
                            "couldn't find an interface entry in network '{name}' matching <interface dev='{}'>",
                            el.attr("dev").unwrap_or("")
                        )));
                    }
                }
                _ => return Err(cant()),
            }
        }
        _ => return Err(cant()),
    }
    // Sections left empty are not printed by libvirt.
    root.children
        .retain(|n| !matches!(n, Node::Element(e) if e.name == "dns" && e.children.is_empty() && e.attrs.is_empty()));
    for ip in root.elements_mut().filter(|e| e.name == "ip") {
        ip.children.retain(
            |n| !matches!(n, Node::Element(e) if e.name == "dhcp" && e.children.is_empty()),
        );
    }
    NetworkDef::from_element(root).map_err(|e| err::conf(e, ErrorDomain::Network))
}
