//! DHCP leases from dnsmasq's own lease file (`--dhcp-leasefile`): the
//! daemon rewrites it on every change, so reading it is always current
//! and needs no helper process of ours. Format, one lease per line:
//! IPv4 `EXPIRY MAC IP HOSTNAME CLIENTID`; after a `duid SERVER-DUID`
//! line, IPv6 `EXPIRY IAID IP HOSTNAME CLIENT-DUID`; `*` means none.

use crate::def::NetDef;
use std::net::IpAddr;
use virtmesh_proto::v1 as pb;

fn opt(s: &str) -> String {
    if s == "*" {
        String::new()
    } else {
        s.to_owned()
    }
}

/// Parse a lease file's text into libvirt's lease records for `def`
/// (whose bridge is the interface and whose addresses give the prefix).
pub fn parse(text: &str, def: &NetDef, mac_filter: Option<&str>) -> Vec<pb::DhcpLease> {
    let iface = def.bridge.clone().unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first() == Some(&"duid") || f.len() < 4 {
            continue;
        }
        let Ok(expiry) = f[0].parse::<i64>() else {
            continue;
        };
        let Ok(ip) = f[2].parse::<IpAddr>() else {
            continue;
        };
        let prefix = def
            .ips
            .iter()
            .find(|i| i.is_v6() == ip.is_ipv6())
            .map(|i| u32::from(i.prefix))
            .unwrap_or(if ip.is_ipv6() { 64 } else { 24 });
        let client = f.get(4).map(|s| opt(s)).unwrap_or_default();
        let lease = if ip.is_ipv6() {
            pb::DhcpLease {
                iface: iface.clone(),
                expiry_time: expiry,
                family: "ipv6".into(),
                mac: String::new(),
                iaid: opt(f[1]),
                ipaddr: ip.to_string(),
                prefix,
                hostname: opt(f[3]),
                client_id: client,
            }
        } else {
            pb::DhcpLease {
                iface: iface.clone(),
                expiry_time: expiry,
                family: "ipv4".into(),
                mac: opt(f[1]),
                iaid: String::new(),
                ipaddr: ip.to_string(),
                prefix,
                hostname: opt(f[3]),
                client_id: client,
            }
        };
        if let Some(m) = mac_filter
            && !lease.mac.eq_ignore_ascii_case(m)
        {
            continue;
        }
        out.push(lease);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_and_v6_leases() {
        let def = NetDef::parse(
            "<network><name>n</name><bridge name='virbr9'/><ip address='10.1.0.1' prefix='24'/><ip family='ipv6' address='fd00::1' prefix='64'/></network>",
        )
        .expect("parse");
        let text = "1700000000 52:54:00:aa:bb:cc 10.1.0.50 guest 01:52:54:00:aa:bb:cc\n\
                    1700000001 52:54:00:aa:bb:dd 10.1.0.51 * *\n\
                    duid 00:01:00:01:2c:00:00:00:52:54:00:00:00:01\n\
                    1700000002 1234 fd00::50 g6 00:04:aa\n";
        let all = parse(text, &def, None);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].hostname, "guest");
        assert_eq!(all[0].prefix, 24);
        assert_eq!(all[0].iface, "virbr9");
        assert_eq!(all[1].hostname, "");
        assert_eq!(all[2].family, "ipv6");
        assert_eq!(all[2].iaid, "1234");
        let one = parse(text, &def, Some("52:54:00:AA:BB:DD"));
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].ipaddr, "10.1.0.51");
    }
}
