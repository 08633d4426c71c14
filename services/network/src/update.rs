//! virNetworkUpdate on the element tree, for `<ip><dhcp><host>`,
//! `<ip><dhcp><range>`, `<dns>`'s `<host>`, `<txt>` and `<srv>`,
//! `<portgroup>` and `<forward><interface>`: add first/last, delete,
//! modify (DHCP hosts and portgroups only, as in libvirt), with libvirt's
//! messages when an entry is missing or already there.

use crate::error::{self as err, Result};
use std::net::IpAddr;
use virtmesh_conf::xml::{Element, Node};
use virtmesh_proto::v1::{NetworkUpdateCommand as C, NetworkUpdateSection as S};

/// Whether an `<ip>` element is of the family of `addr`.
fn same_family(ip: &Element, addr: Option<IpAddr>) -> bool {
    let v6 =
        ip.attr("family") == Some("ipv6") || ip.attr("address").is_some_and(|a| a.contains(':'));
    match addr {
        Some(a) => a.is_ipv6() == v6,
        // Without an address to go by, libvirt picks the IPv4 one.
        None => !v6,
    }
}

fn item_addr(item: &Element) -> Option<IpAddr> {
    item.attr("ip")
        .or_else(|| item.attr("start"))
        .and_then(|a| a.parse().ok())
}

/// Two host entries describe the same host: any identifying attribute in
/// common (what libvirt refuses on add, and matches on modify).
fn host_overlaps(a: &Element, b: &Element) -> bool {
    ["mac", "name", "ip", "id"]
        .iter()
        .any(|k| a.attr(k).is_some() && a.attr(k) == b.attr(k))
}

/// The host entry `b` is exactly `a` (what delete requires).
fn host_equal(a: &Element, b: &Element) -> bool {
    ["mac", "name", "ip", "id"]
        .iter()
        .all(|k| a.attr(k) == b.attr(k))
}

fn range_equal(a: &Element, b: &Element) -> bool {
    a.attr("start") == b.attr("start") && a.attr("end") == b.attr("end")
}

/// Apply one update to a network's element tree. `connections` says how
/// many ports use a forward interface (0 for a config, as libvirt's
/// inactive definition has no counts).
pub fn apply(
    root: &Element,
    name: &str,
    section: S,
    command: C,
    parent_index: i32,
    item: &Element,
    connections: &dyn Fn(&str) -> usize,
) -> Result<Element> {
    match section {
        S::NetworkSectionDnsHost | S::NetworkSectionDnsTxt | S::NetworkSectionDnsSrv => {
            apply_dns(root, name, section, command, item)
        }
        S::NetworkSectionPortgroup => apply_portgroup(root, name, command, item),
        S::NetworkSectionForwardInterface => {
            apply_forward_interface(root, name, command, item, connections)
        }
        _ => apply_dhcp(root, name, section, command, parent_index, item),
    }
}

/// virNetworkDefUpdatePortGroup: portgroups are matched by name; only
/// one may be the default.
fn apply_portgroup(root: &Element, name: &str, command: C, item: &Element) -> Result<Element> {
    wrong_element("portgroup", name, item)?;
    let Some(pg) = item.attr("name") else {
        return Err(err::net(
            virtmesh_rpc::ErrorCode::XmlError,
            "XML error: Missing required name attribute in portgroup",
        ));
    };
    let mut root = root.clone();
    let found = root.children.iter().position(
        |n| matches!(n, Node::Element(e) if e.name == "portgroup" && e.attr("name") == Some(pg)),
    );
    let other_default = root.children.iter().any(|n| {
        matches!(n, Node::Element(e) if e.name == "portgroup"
            && e.attr("default") == Some("yes") && e.attr("name") != Some(pg))
    });
    match (command, found) {
        (C::Modify | C::Delete, None) => {
            return Err(err::invalid_op(&format!(
                "couldn't find a portgroup entry in network '{name}' matching <portgroup name='{pg}'>"
            )));
        }
        (C::AddFirst | C::AddLast, Some(_)) => {
            return Err(err::invalid_op(&format!(
                "there is an existing portgroup entry in network '{name}' that matches \"<portgroup name='{pg}'>\""
            )));
        }
        (C::None, _) => return Err(err::invalid_arg("unrecognized network update command")),
        _ => {}
    }
    if command != C::Delete && item.attr("default") == Some("yes") && other_default {
        return Err(err::invalid_op(&format!(
            "a different portgroup entry in network '{name}' is already set as the default. Only one default is allowed."
        )));
    }
    match (command, found) {
        (C::Modify, Some(i)) => root.children[i] = Node::Element(item.clone()),
        (C::Delete, Some(i)) => {
            root.children.remove(i);
        }
        _ => insert(&mut root, item, command == C::AddFirst),
    }
    Ok(root)
}

/// virNetworkDefUpdateForwardInterface: `<interface dev>` entries of
/// `<forward>`, matched by dev; one in use cannot be deleted. The
/// forward's `dev` is always the first interface's (libvirt keeps no
/// separate forward device once there is a pool).
fn apply_forward_interface(
    root: &Element,
    name: &str,
    command: C,
    item: &Element,
    connections: &dyn Fn(&str) -> usize,
) -> Result<Element> {
    wrong_element("interface", name, item)?;
    match command {
        C::Modify => {
            return Err(err::unsupported(
                "forward interface entries cannot be modified, only added or deleted",
            ));
        }
        C::None => return Err(err::invalid_arg("unrecognized network update command")),
        _ => {}
    }
    let Some(dev) = item.attr("dev") else {
        return Err(err::net(
            virtmesh_rpc::ErrorCode::XmlError,
            "XML error: missing dev attribute in <interface> element",
        ));
    };
    let mut root = root.clone();
    let Some(fwd) = root.child_mut("forward") else {
        return Err(err::invalid_op(&format!(
            "couldn't find an interface entry in network '{name}' matching <interface dev='{dev}'>"
        )));
    };
    fwd.children.retain(|n| matches!(n, Node::Element(_)));
    let found = fwd.children.iter().position(
        |n| matches!(n, Node::Element(e) if e.name == "interface" && e.attr("dev") == Some(dev)),
    );
    match (command, found) {
        (C::AddFirst | C::AddLast, Some(_)) => {
            return Err(err::invalid_op(&format!(
                "there is an existing interface entry in network '{name}' that matches \"<interface dev='{dev}'>\""
            )));
        }
        (C::AddFirst | C::AddLast, None) => {
            insert(
                fwd,
                &Element::new("interface").with_attr("dev", dev),
                command == C::AddFirst,
            );
        }
        (_, None) => {
            return Err(err::invalid_op(&format!(
                "couldn't find an interface entry in network '{name}' matching <interface dev='{dev}'>"
            )));
        }
        (_, Some(i)) => {
            let n = connections(dev);
            if n > 0 {
                return Err(err::invalid_op(&format!(
                    "unable to delete interface '{dev}' in network '{name}'. It is currently being used by {n} domains."
                )));
            }
            fwd.children.remove(i);
        }
    }
    let first = fwd
        .children_named("interface")
        .find_map(|i| i.attr("dev"))
        .map(str::to_owned);
    match first {
        Some(first) => fwd.set_attr("dev", first),
        None => {
            fwd.remove_attr("dev");
        }
    }
    Ok(root)
}

fn wrong_element(tag: &str, name: &str, item: &Element) -> crate::error::Result<()> {
    if item.name == tag {
        return Ok(());
    }
    Err(err::net(
        virtmesh_rpc::ErrorCode::XmlError,
        format!(
            "XML error: can't update '{tag}' section of network '{name}' - unrecognized element <{}>",
            item.name
        ),
    ))
}

/// Insert `item` first or last among the children named like it.
fn insert(container: &mut Element, item: &Element, first: bool) {
    let tag = item.name.as_str();
    let node = Node::Element(item.clone());
    let same = |n: &Node| matches!(n, Node::Element(e) if e.name == tag);
    let at = if first {
        container.children.iter().position(same)
    } else {
        container.children.iter().rposition(same).map(|i| i + 1)
    };
    let at = at.unwrap_or(container.children.len());
    container.children.insert(at, node);
}

fn hostnames(e: &Element) -> Vec<String> {
    e.children_named("hostname")
        .map(|h| h.text().trim().to_owned())
        .collect()
}

fn apply_dns(
    root: &Element,
    name: &str,
    section: S,
    command: C,
    item: &Element,
) -> Result<Element> {
    let (tag, what) = match section {
        S::NetworkSectionDnsHost => ("host", "DNS HOST"),
        S::NetworkSectionDnsTxt => ("txt", "DNS TXT"),
        _ => ("srv", "DNS SRV"),
    };
    wrong_element(tag, name, item)?;
    let mut root = root.clone();
    let dns = root.child_or_insert("dns");
    dns.children.retain(|n| matches!(n, Node::Element(_)));
    // What identifies a record: a host by its address or any of its
    // names, a TXT record by name, an SRV record by all its fields.
    let overlaps = |e: &Element| {
        e.name == tag
            && match tag {
                "host" => {
                    e.attr("ip") == item.attr("ip")
                        || hostnames(e).iter().any(|h| hostnames(item).contains(h))
                }
                "txt" => e.attr("name") == item.attr("name"),
                _ => e.attrs == item.attrs,
            }
    };
    let found = dns
        .children
        .iter()
        .position(|n| matches!(n, Node::Element(e) if overlaps(e)));
    match command {
        C::AddFirst | C::AddLast => {
            if found.is_some() {
                return Err(err::invalid_op(&format!(
                    "there is already at least one {what} record with a matching field in network {name}"
                )));
            }
            insert(dns, item, command == C::AddFirst);
        }
        C::Delete => {
            let Some(i) = found else {
                return Err(err::invalid_op(&format!(
                    "couldn't locate a matching {what} record in network {name}"
                )));
            };
            dns.children.remove(i);
        }
        C::Modify => {
            return Err(err::unsupported(format!(
                "{what} records cannot be modified, only added or deleted"
            )));
        }
        C::None => return Err(err::invalid_arg("unrecognized network update command")),
    }
    if dns.children.is_empty() && dns.attrs.is_empty() {
        root.children
            .retain(|n| !matches!(n, Node::Element(e) if e.name == "dns"));
    }
    Ok(root)
}

fn apply_dhcp(
    root: &Element,
    name: &str,
    section: S,
    command: C,
    parent_index: i32,
    item: &Element,
) -> Result<Element> {
    let (tag, what) = match section {
        S::NetworkSectionIpDhcpHost => ("host", "dhcp host"),
        S::NetworkSectionIpDhcpRange => ("range", "dhcp range"),
        _ => return Err(err::internal("unsupported section")),
    };
    wrong_element(tag, name, item)?;
    let mut root = root.clone();
    let addr = item_addr(item);
    // The <ip> element: by index, or the first of the item's family.
    let ip_pos: Vec<usize> = root
        .children
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match n {
            Node::Element(e) if e.name == "ip" => Some(i),
            _ => None,
        })
        .collect();
    let chosen = if parent_index >= 0 {
        usize::try_from(parent_index)
            .ok()
            .and_then(|i| ip_pos.get(i))
            .copied()
    } else {
        ip_pos
            .iter()
            .copied()
            .find(|i| matches!(&root.children[*i], Node::Element(e) if same_family(e, addr)))
    };
    let Some(pos) = chosen else {
        return Err(err::invalid_op(&format!(
            "couldn't update dhcp {tag} entry - no <ip> element found in network '{name}'"
        )));
    };
    let Node::Element(ip) = &mut root.children[pos] else {
        return Err(err::internal("ip element vanished"));
    };
    let dhcp = ip.child_or_insert("dhcp");
    // Drop formatting placeholders; the formatter re-indents.
    dhcp.children.retain(|n| matches!(n, Node::Element(_)));
    let matches_item = |e: &Element, exact: bool| {
        e.name == tag
            && match (tag, exact) {
                ("host", true) => host_equal(e, item),
                ("host", false) => host_overlaps(e, item),
                _ => range_equal(e, item),
            }
    };
    let found = dhcp
        .children
        .iter()
        .position(|n| matches!(n, Node::Element(e) if matches_item(e, command == C::Delete)));
    match command {
        C::AddFirst | C::AddLast => {
            if found.is_some() {
                return Err(err::invalid_op(&format!(
                    "there is an existing {what} entry in network '{name}' that matches \"{}\"",
                    item.to_xml().trim()
                )));
            }
            let node = Node::Element(item.clone());
            if command == C::AddFirst {
                // First of its kind: before the first entry with this tag.
                let at = dhcp
                    .children
                    .iter()
                    .position(|n| matches!(n, Node::Element(e) if e.name == tag))
                    .unwrap_or(dhcp.children.len());
                dhcp.children.insert(at, node);
            } else {
                // Last of its kind: after the last entry with this tag,
                // keeping ranges before hosts as libvirt formats them.
                let at = dhcp
                    .children
                    .iter()
                    .rposition(|n| matches!(n, Node::Element(e) if e.name == tag))
                    .map(|i| i + 1)
                    .unwrap_or_else(|| {
                        if tag == "range" {
                            0
                        } else {
                            dhcp.children
                                .iter()
                                .rposition(|n| matches!(n, Node::Element(e) if e.name == "range"))
                                .map(|i| i + 1)
                                .unwrap_or(0)
                        }
                    });
                dhcp.children.insert(at, node);
            }
        }
        C::Delete => {
            let Some(i) = found else {
                return Err(err::invalid_op(&format!(
                    "couldn't locate a matching {what} entry in network '{name}'"
                )));
            };
            dhcp.children.remove(i);
        }
        C::Modify => {
            if tag == "range" {
                return Err(err::unsupported(
                    "the 'modify' command is not supported for dhcp range",
                ));
            }
            let Some(i) = found else {
                return Err(err::invalid_op(&format!(
                    "couldn't locate an existing dhcp host entry with \"mac='{}'\" in network '{name}'",
                    item.attr("mac").or(item.attr("name")).unwrap_or("")
                )));
            };
            dhcp.children[i] = Node::Element(item.clone());
        }
        C::None => {
            return Err(err::invalid_arg("unrecognized network update command"));
        }
    }
    if dhcp.children.is_empty() {
        ip.children
            .retain(|n| !matches!(n, Node::Element(e) if e.name == "dhcp"));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtmesh_conf::network::NetworkDef;

    const NET: &str = "<network><name>u</name><uuid>6522b7b1-97b1-5d83-b3c9-46f981b0c334</uuid><bridge name='virbr9'/><ip address='10.2.0.1' prefix='24'><dhcp><range start='10.2.0.10' end='10.2.0.20'/></dhcp></ip></network>";

    fn host(x: &str) -> Element {
        virtmesh_conf::xml::parse(x).expect("parse")
    }

    #[test]
    fn add_modify_delete_host() {
        let def = NetworkDef::parse(NET).expect("net");
        let h = host("<host mac='52:54:00:00:00:01' ip='10.2.0.5' name='a'/>");
        let r = apply(
            def.element(),
            "u",
            S::NetworkSectionIpDhcpHost,
            C::AddLast,
            -1,
            &h,
            &|_| 0,
        )
        .expect("add");
        let xml = NetworkDef::from_element(r.clone()).expect("canon").to_xml();
        assert!(xml.contains("<range start='10.2.0.10' end='10.2.0.20'/>\n      <host mac='52:54:00:00:00:01' ip='10.2.0.5' name='a'/>"), "{xml}");
        let again = apply(
            &r,
            "u",
            S::NetworkSectionIpDhcpHost,
            C::AddLast,
            -1,
            &h,
            &|_| 0,
        );
        assert!(again.is_err());
        let m = host("<host mac='52:54:00:00:00:01' ip='10.2.0.6' name='a'/>");
        let r = apply(
            &r,
            "u",
            S::NetworkSectionIpDhcpHost,
            C::Modify,
            -1,
            &m,
            &|_| 0,
        )
        .expect("modify");
        let e = apply(
            &r,
            "u",
            S::NetworkSectionIpDhcpHost,
            C::Delete,
            -1,
            &h,
            &|_| 0,
        )
        .expect_err("inexact");
        assert!(e.message.contains("couldn't locate"), "{}", e.message);
        let r = apply(
            &r,
            "u",
            S::NetworkSectionIpDhcpHost,
            C::Delete,
            -1,
            &m,
            &|_| 0,
        )
        .expect("delete");
        let xml = NetworkDef::from_element(r).expect("canon").to_xml();
        assert!(!xml.contains("<host"), "{xml}");
    }

    #[test]
    fn dns_host_txt_srv() {
        let def = NetworkDef::parse(NET).expect("net");
        let h = host("<host ip='10.2.0.7'><hostname>db</hostname></host>");
        let r = apply(
            def.element(),
            "u",
            S::NetworkSectionDnsHost,
            C::AddLast,
            -1,
            &h,
            &|_| 0,
        )
        .expect("add host");
        let t = host("<txt name='k' value='v'/>");
        let r = apply(
            &r,
            "u",
            S::NetworkSectionDnsTxt,
            C::AddFirst,
            -1,
            &t,
            &|_| 0,
        )
        .expect("txt");
        assert!(apply(&r, "u", S::NetworkSectionDnsTxt, C::AddLast, -1, &t, &|_| 0).is_err());
        let typed =
            crate::def::NetDef::from_def(NetworkDef::from_element(r.clone()).expect("canon"));
        assert_eq!(
            typed.dns.hosts,
            vec![("10.2.0.7".to_owned(), vec!["db".to_owned()])]
        );
        assert_eq!(typed.dns.txts, vec![("k".to_owned(), "v".to_owned())]);
        let r =
            apply(&r, "u", S::NetworkSectionDnsHost, C::Delete, -1, &h, &|_| 0).expect("del host");
        let r =
            apply(&r, "u", S::NetworkSectionDnsTxt, C::Delete, -1, &t, &|_| 0).expect("del txt");
        let xml = NetworkDef::from_element(r).expect("canon").to_xml();
        assert!(!xml.contains("<dns"), "{xml}");
    }

    #[test]
    fn add_range_first() {
        let def = NetworkDef::parse(NET).expect("net");
        let rg = host("<range start='10.2.0.100' end='10.2.0.110'/>");
        let r = apply(
            def.element(),
            "u",
            S::NetworkSectionIpDhcpRange,
            C::AddFirst,
            0,
            &rg,
            &|_| 0,
        )
        .expect("add");
        let xml = NetworkDef::from_element(r).expect("canon").to_xml();
        let a = xml.find("10.2.0.100").expect("new");
        let b = xml.find("10.2.0.10'").expect("old");
        assert!(a < b, "{xml}");
    }

    fn run(r: &Element, section: S, command: C, item: &str) -> Result<Element> {
        apply(r, "u", section, command, -1, &host(item), &|d| {
            usize::from(d == "eth1")
        })
    }

    #[test]
    fn portgroups_by_name_with_one_default() {
        let def = NetworkDef::parse(NET).expect("net");
        let pg = S::NetworkSectionPortgroup;
        let r = run(
            def.element(),
            pg,
            C::AddLast,
            "<portgroup name='web' default='yes'/>",
        )
        .expect("add");
        let r = run(&r, pg, C::AddFirst, "<portgroup name='db'/>").expect("add first");
        let xml = NetworkDef::from_element(r.clone()).expect("canon").to_xml();
        let (db, web) = (
            xml.find("'db'").expect("db"),
            xml.find("'web'").expect("web"),
        );
        assert!(db < web, "{xml}");
        let e = run(&r, pg, C::AddLast, "<portgroup name='web'/>").expect_err("twice");
        assert_eq!(
            e.message,
            "Requested operation is not valid: there is an existing portgroup entry in network 'u' that matches \"<portgroup name='web'>\""
        );
        let e =
            run(&r, pg, C::Modify, "<portgroup name='db' default='yes'/>").expect_err("2 defaults");
        assert!(
            e.message.contains("is already set as the default"),
            "{}",
            e.message
        );
        let e = run(&r, pg, C::Delete, "<portgroup name='nope'/>").expect_err("missing");
        assert_eq!(
            e.message,
            "Requested operation is not valid: couldn't find a portgroup entry in network 'u' matching <portgroup name='nope'>"
        );
        let e = run(&r, pg, C::AddLast, "<portgroup/>").expect_err("no name");
        assert_eq!(
            e.message,
            "XML error: Missing required name attribute in portgroup"
        );
        let r = run(
            &r,
            pg,
            C::Modify,
            "<portgroup name='web'><vlan><tag id='7'/></vlan></portgroup>",
        )
        .expect("modify");
        let r = run(&r, pg, C::Delete, "<portgroup name='db'/>").expect("delete");
        let xml = NetworkDef::from_element(r).expect("canon").to_xml();
        assert!(
            !xml.contains("'db'") && xml.contains("<tag id='7'/>"),
            "{xml}"
        );
    }

    #[test]
    fn forward_interfaces_by_dev_not_deleted_in_use() {
        let def = NetworkDef::parse(
            "<network><name>u</name><forward mode='vepa'><interface dev='eth1'/></forward></network>",
        )
        .expect("net");
        let fi = S::NetworkSectionForwardInterface;
        let r = run(def.element(), fi, C::AddFirst, "<interface dev='eth0'/>").expect("add");
        let xml = NetworkDef::from_element(r.clone()).expect("canon").to_xml();
        assert!(
            xml.contains("<forward dev='eth0' mode='vepa'>\n    <interface dev='eth0'/>\n    <interface dev='eth1'/>"),
            "{xml}"
        );
        let e = run(&r, fi, C::AddLast, "<interface dev='eth1'/>").expect_err("twice");
        assert!(
            e.message.contains("there is an existing interface entry"),
            "{}",
            e.message
        );
        let e = run(&r, fi, C::Delete, "<interface dev='eth1'/>").expect_err("in use");
        assert_eq!(
            e.message,
            "Requested operation is not valid: unable to delete interface 'eth1' in network 'u'. It is currently being used by 1 domains."
        );
        let e = run(&r, fi, C::Modify, "<interface dev='eth0'/>").expect_err("modify");
        assert_eq!(e.code, virtmesh_rpc::ErrorCode::ConfigUnsupported);
        let e = run(&r, fi, C::AddLast, "<interface/>").expect_err("no dev");
        assert_eq!(
            e.message,
            "XML error: missing dev attribute in <interface> element"
        );
        let r = run(&r, fi, C::Delete, "<interface dev='eth0'/>").expect("delete");
        let xml = NetworkDef::from_element(r).expect("canon").to_xml();
        assert!(xml.contains("<forward dev='eth1' mode='vepa'>"), "{xml}");
        let e = run(def.element(), fi, C::Delete, "<interface dev='eth9'/>").expect_err("missing");
        assert!(
            e.message.contains("couldn't find an interface entry"),
            "{}",
            e.message
        );
    }
}
