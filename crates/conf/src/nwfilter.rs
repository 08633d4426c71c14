//! Network filter rules: libvirt's per-protocol attribute tables decide
//! which attributes are kept, their order and their canonical values.

use crate::ConfError;
use crate::xml::{Element, Node};

const IP_PROPS: &[&str] = &[
    "srcmacaddr",
    "srcipaddr",
    "srcipmask",
    "dstipaddr",
    "dstipmask",
    "srcipfrom",
    "srcipto",
    "dstipfrom",
    "dstipto",
    "dscp",
    "connlimit-above",
    "state",
];
const PORTS: &[&str] = &["srcportstart", "srcportend", "dstportstart", "dstportend"];
const MAC_PROPS: &[&str] = &["srcmacaddr", "srcmacmask", "dstmacaddr", "dstmacmask"];
const ARP_PROPS: &[&str] = &[
    "hwtype",
    "protocoltype",
    "opcode",
    "arpsrcmacaddr",
    "arpsrcipaddr",
    "arpsrcipmask",
    "arpdstmacaddr",
    "arpdstipaddr",
    "arpdstipmask",
    "gratuitous",
];
const STP_PROPS: &[&str] = &[
    "type",
    "flags",
    "root-priority",
    "root-priority-hi",
    "root-address",
    "root-address-mask",
    "root-cost",
    "root-cost-hi",
    "sender-priority",
    "sender-priority-hi",
    "sender-address",
    "sender-address-mask",
    "port",
    "port-hi",
    "age",
    "age-hi",
    "max-age",
    "max-age-hi",
    "hello-time",
    "hello-time-hi",
    "forward-delay",
    "forward-delay-hi",
];

/// The attributes a protocol element accepts, in libvirt's output order.
fn attrs_for(proto: &str) -> Option<Vec<&'static str>> {
    let mut v: Vec<&'static str> = Vec::new();
    let base = proto.trim_end_matches("-ipv6");
    match proto {
        "mac" => {
            v.extend(MAC_PROPS);
            v.push("protocolid");
        }
        "vlan" => {
            v.extend(MAC_PROPS);
            v.extend(["vlanid", "encap-protocol"]);
        }
        "stp" => {
            v.extend(["srcmacaddr", "srcmacmask"]);
            v.extend(STP_PROPS);
        }
        "arp" | "rarp" => {
            v.extend(MAC_PROPS);
            v.extend(ARP_PROPS);
        }
        "ip" | "ipv6" => {
            v.extend(MAC_PROPS);
            v.extend([
                "srcipaddr",
                "srcipmask",
                "dstipaddr",
                "dstipmask",
                "protocol",
            ]);
            v.extend(PORTS);
            v.push("dscp");
            if proto == "ipv6" {
                v.extend(["type", "typeend", "code", "codeend"]);
            }
        }
        _ => match base {
            "tcp" => {
                v.extend(IP_PROPS);
                v.extend(PORTS);
                v.extend(["option", "flags"]);
            }
            "udp" | "sctp" => {
                v.extend(IP_PROPS);
                v.extend(PORTS);
            }
            "icmp" | "icmpv6" => {
                v.extend(IP_PROPS);
                v.extend(["type", "code"]);
            }
            "all" => {
                v.extend(IP_PROPS);
                v.extend(["ipset", "ipsetflags"]);
            }
            "udplite" | "esp" | "ah" | "igmp" => v.extend(IP_PROPS),
            _ => return None,
        },
    }
    v.push("comment");
    Some(v)
}

fn illegal(attr: &str, value: &str) -> ConfError {
    ConfError::internal(format!("{attr} has illegal value {value}"))
}

fn is_var(v: &str) -> bool {
    v.starts_with('$')
}

fn parse_num(v: &str) -> Option<u64> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

fn canon_mac(v: &str) -> Option<String> {
    let parts: Vec<&str> = v.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let bytes: Option<Vec<u8>> = parts
        .iter()
        .map(|p| {
            if p.is_empty() || p.len() > 2 {
                None
            } else {
                u8::from_str_radix(p, 16).ok()
            }
        })
        .collect();
    bytes.map(|b| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    })
}

/// A dotted IPv4 mask as a prefix length.
fn mask_prefix(v: &str) -> Option<u32> {
    let ip: std::net::Ipv4Addr = v.parse().ok()?;
    let bits = u32::from(ip);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones)
}

const STATES: &[&str] = &["NEW", "ESTABLISHED", "RELATED", "INVALID"];
const TCP_FLAGS: &[&str] = &["FIN", "SYN", "RST", "PSH", "ACK", "URG"];
const ARP_OPCODES: &[&str] = &[
    "Request",
    "Reply",
    "Request_Reverse",
    "Reply_Reverse",
    "DRARP_Request",
    "DRARP_Reply",
    "DRARP_Error",
    "InARP_Request",
    "ARP_NAK",
];

fn canon_list(v: &str, names: &[&str], attr: &str) -> Result<String, ConfError> {
    if v == "NONE" || v == "ALL" {
        return Ok(v.to_owned());
    }
    let given: Vec<&str> = v.split(',').collect();
    if given.iter().any(|g| !names.contains(g)) {
        return Err(illegal(attr, v));
    }
    Ok(names
        .iter()
        .filter(|n| given.contains(n))
        .copied()
        .collect::<Vec<_>>()
        .join(","))
}

/// Check and canonicalise one attribute value.
fn canon_value(proto: &str, attr: &str, v: &str) -> Result<String, ConfError> {
    if is_var(v) {
        return Ok(v.to_owned());
    }
    let v6 = proto.ends_with("-ipv6") || proto == "ipv6" || proto == "icmpv6";
    Ok(match attr {
        "srcmacaddr"
        | "dstmacaddr"
        | "srcmacmask"
        | "dstmacmask"
        | "arpsrcmacaddr"
        | "arpdstmacaddr"
        | "root-address"
        | "root-address-mask"
        | "sender-address"
        | "sender-address-mask" => canon_mac(v).ok_or_else(|| illegal(attr, v))?,
        "srcipaddr" | "dstipaddr" | "srcipfrom" | "srcipto" | "dstipfrom" | "dstipto"
        | "arpsrcipaddr" | "arpdstipaddr" => {
            let ok = if v6 {
                v.parse::<std::net::Ipv6Addr>().is_ok()
            } else {
                v.parse::<std::net::Ipv4Addr>().is_ok()
            };
            if !ok {
                return Err(illegal(attr, v));
            }
            v.to_owned()
        }
        "srcipmask" | "dstipmask" | "arpsrcipmask" | "arpdstipmask" => {
            match (v.parse::<u32>(), mask_prefix(v)) {
                (Ok(n), _) if n <= if v6 { 128 } else { 32 } => n.to_string(),
                (_, Some(p)) if !v6 => p.to_string(),
                _ => return Err(illegal(attr, v)),
            }
        }
        "dscp" => match parse_num(v) {
            Some(n) if n <= 63 => v.to_owned(),
            _ => return Err(illegal(attr, v)),
        },
        "type" | "code" if !matches!(proto, "stp") => match parse_num(v) {
            Some(n) if n <= 255 => v.to_owned(),
            _ => return Err(illegal(attr, v)),
        },
        "connlimit-above" => match parse_num(v) {
            Some(_) => v.to_owned(),
            None => return Err(illegal(attr, v)),
        },
        "state" => canon_list(v, STATES, attr)?,
        "flags" if proto.starts_with("tcp") => {
            let (mask, set) = v.split_once('/').ok_or_else(|| illegal(attr, v))?;
            // libvirt names the whole value when either half is bad.
            let whole = |_| illegal(attr, v);
            format!(
                "{}/{}",
                canon_list(mask, TCP_FLAGS, attr).map_err(whole)?,
                canon_list(set, TCP_FLAGS, attr).map_err(whole)?
            )
        }
        "protocol" if proto == "ip" || proto == "ipv6" => match parse_num(v) {
            Some(1) => "icmp".into(),
            Some(2) => "igmp".into(),
            Some(6) => "tcp".into(),
            Some(17) => "udp".into(),
            Some(50) => "esp".into(),
            Some(51) => "ah".into(),
            Some(58) => "icmpv6".into(),
            Some(132) => "sctp".into(),
            Some(136) => "udplite".into(),
            _ => v.to_owned(),
        },
        "protocolid" if proto == "mac" => match parse_num(v) {
            Some(0x0800) => "ipv4".into(),
            Some(0x0806) => "arp".into(),
            Some(0x8035) => "rarp".into(),
            Some(0x86dd) => "ipv6".into(),
            Some(0x8100) => "vlan".into(),
            _ => v.to_owned(),
        },
        "opcode" => match v.parse::<usize>() {
            Ok(n) if (1..=ARP_OPCODES.len()).contains(&n) => ARP_OPCODES[n - 1].to_owned(),
            _ => v.to_owned(),
        },
        _ => v.to_owned(),
    })
}

/// Canonicalise a `<rule>`'s protocol elements.
pub fn normalize_rule(rule: &mut Element) -> Result<(), ConfError> {
    let mut kept = Vec::new();
    for node in rule.children.drain(..) {
        let Node::Element(mut el) = node else {
            continue;
        };
        // Unknown protocols are ignored by libvirt's parser.
        let Some(order) = attrs_for(&el.name) else {
            continue;
        };
        let negated_match = el.attr("match") == Some("no");
        let mut attrs = Vec::new();
        if negated_match {
            attrs.push(("match".to_owned(), "no".to_owned()));
        }
        for name in &order {
            if let Some(v) = el.attr(name) {
                attrs.push(((*name).to_owned(), canon_value(&el.name, name, v)?));
            }
        }
        el.attrs = attrs;
        kept.push(Node::Element(el));
    }
    rule.children = kept;
    Ok(())
}

/// Default chain priorities by chain prefix (virNWFilterChainPriority).
pub fn chain_priority(chain: &str) -> Option<&'static str> {
    [
        ("mac", "-800"),
        ("vlan", "-750"),
        ("ipv4", "-700"),
        ("ipv6", "-600"),
        ("arp", "-500"),
        ("rarp", "-400"),
    ]
    .iter()
    .find(|(p, _)| chain == *p || chain.starts_with(&format!("{p}-")))
    .map(|(_, v)| *v)
}
