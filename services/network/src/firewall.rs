//! Firewall rules for a network, in nftables tables of our own: one table
//! per network and address family (`ip virtmesh_<bridge>`, `ip6 …`), so
//! that stopping a network deletes exactly its tables and never touches a
//! rule anyone else made. The rules are those libvirt installs (see the
//! corpus' nft.diff): DNS/DHCP to and from the bridge accepted, traffic
//! between guests accepted, forwarding out of and into the network
//! accepted or rejected by mode, and masquerading with libvirt's port
//! range for NAT. Applied with `nft -f -`, which loads a table atomically.

use crate::def::{ForwardMode, IpDef, NetDef};
use std::fmt::Write as _;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// One of our tables: family ("ip" or "ip6") and name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Table {
    pub family: String,
    pub name: String,
}

impl Table {
    pub fn spec(&self) -> String {
        format!("{} {}", self.family, self.name)
    }
}

/// Our table name for a bridge. Bridge names are at most 15 characters of
/// what the kernel allows in an interface name; nft identifiers take
/// letters, digits, `_` and `.` and `/`, so anything else becomes `_`.
pub fn table_name(bridge: &str) -> String {
    let clean: String = bridge
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("virtmesh_{clean}")
}

/// A protocol and destination port.
type Port = (&'static str, u16);

/// The rules of one family's table, or `None` when this mode adds none
/// in that family. As libvirt does, a network with a bridge of its own
/// always gets the IPv4 rules (a guest must not route around an IPv6-only
/// network through it) and gets IPv6 rules when it has an IPv6 address.
pub fn ruleset(def: &NetDef, v6: bool) -> Option<(Table, String)> {
    let bridge = def.bridge.as_deref()?;
    if !def.mode.has_own_bridge() || def.mode == ForwardMode::Open {
        return None;
    }
    let ips: Vec<&IpDef> = def.ips.iter().filter(|i| i.is_v6() == v6).collect();
    if v6 && ips.is_empty() {
        return None;
    }
    let (family, ipk) = if v6 { ("ip6", "ip6") } else { ("ip", "ip") };
    // libvirt's DNS/DHCP holes, in its order (LIBVIRT_INP / LIBVIRT_OUT).
    let (input, output): (&[Port], &[Port]) = if v6 {
        (
            &[("udp", 547), ("udp", 53), ("tcp", 53)],
            &[("udp", 546), ("udp", 53), ("tcp", 53)],
        )
    } else {
        (
            &[("udp", 53), ("tcp", 53), ("udp", 67), ("tcp", 67)],
            &[("udp", 53), ("tcp", 53), ("udp", 68), ("tcp", 68)],
        )
    };
    // TFTP (IPv4 only) comes first when an address serves it.
    let tftp = !v6 && ips.iter().any(|i| i.tftp_root.is_some());
    let tftp_rule: &[Port] = if tftp { &[("udp", 69)] } else { &[] };
    let table = Table {
        family: family.to_owned(),
        name: table_name(bridge),
    };
    let br = format!("\"{bridge}\"");
    let out_dev = def
        .forward_dev
        .as_ref()
        .map(|d| format!(" oifname \"{d}\""))
        .unwrap_or_default();
    let in_dev = def
        .forward_dev
        .as_ref()
        .map(|d| format!("iifname \"{d}\" "))
        .unwrap_or_default();
    let mut r = String::new();
    // `write!` into a String cannot fail.
    let _ = writeln!(r, "table {family} {} {{", table.name);
    let _ = writeln!(
        r,
        "  chain input {{\n    type filter hook input priority filter; policy accept;"
    );
    for (proto, port) in tftp_rule.iter().chain(input) {
        let _ = writeln!(r, "    iifname {br} {proto} dport {port} counter accept");
    }
    let _ = writeln!(r, "  }}");
    let _ = writeln!(
        r,
        "  chain output {{\n    type filter hook output priority filter; policy accept;"
    );
    for (proto, port) in tftp_rule.iter().chain(output) {
        let _ = writeln!(r, "    oifname {br} {proto} dport {port} counter accept");
    }
    let _ = writeln!(r, "  }}");
    // Forwarding, in libvirt's chain order: cross (FWX), in (FWI), out (FWO).
    let _ = writeln!(
        r,
        "  chain forward {{\n    type filter hook forward priority filter; policy accept;"
    );
    let _ = writeln!(r, "    iifname {br} oifname {br} counter accept");
    // IPv6 is NATed only with <nat ipv6='yes'>; otherwise it is routed.
    let nat_v = def.mode == ForwardMode::Nat && (!v6 || def.nat_ipv6);
    let forwards = matches!(def.mode, ForwardMode::Nat | ForwardMode::Route);
    if forwards {
        for ip in &ips {
            let net = ip.cidr();
            let ct = if nat_v {
                " ct state related,established"
            } else {
                ""
            };
            let _ = writeln!(
                r,
                "    {in_dev}oifname {br} {ipk} daddr {net}{ct} counter accept"
            );
        }
    }
    let _ = writeln!(r, "    oifname {br} counter reject");
    if forwards {
        for ip in &ips {
            let _ = writeln!(
                r,
                "    iifname {br} {ipk} saddr {}{out_dev} counter accept",
                ip.cidr()
            );
        }
    }
    let _ = writeln!(r, "    iifname {br} counter reject");
    let _ = writeln!(r, "  }}");
    if nat_v && !ips.is_empty() {
        let _ = writeln!(
            r,
            "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;"
        );
        let (lo, hi) = def.nat_ports;
        for ip in &ips {
            let net = ip.cidr();
            // Multicast and broadcast stay untranslated.
            if v6 {
                let _ = writeln!(r, "    ip6 saddr {net} ip6 daddr ff02::/16 counter return");
            } else {
                let _ = writeln!(r, "    ip saddr {net} ip daddr 224.0.0.0/24 counter return");
                let _ = writeln!(
                    r,
                    "    ip saddr {net} ip daddr 255.255.255.255 counter return"
                );
            }
            let (to, ports) = match def.nat_addr.filter(|_| !v6) {
                Some((a, b)) if a == b => (format!("snat to {a}"), format!(":{lo}-{hi}")),
                Some((a, b)) => (format!("snat to {a}-{b}"), format!(":{lo}-{hi}")),
                None => ("masquerade".to_owned(), format!(" to :{lo}-{hi}")),
            };
            for proto in ["tcp", "udp"] {
                let _ = writeln!(
                    r,
                    "    meta l4proto {proto} {ipk} saddr {net} {ipk} daddr != {net}{out_dev} counter {to}{ports}"
                );
            }
            let _ = writeln!(
                r,
                "    {ipk} saddr {net} {ipk} daddr != {net}{out_dev} counter {to}"
            );
        }
        let _ = writeln!(r, "  }}");
    }
    let _ = writeln!(r, "}}");
    Some((table, r))
}

/// The rule lines of a generated table (no table/chain/type lines).
pub fn rule_lines(rules: &str) -> Vec<String> {
    rules
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && *l != "}"
                && !l.starts_with("table ")
                && !l.starts_with("chain ")
                && !l.starts_with("type ")
        })
        .map(str::to_owned)
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("cannot execute '{binary}': {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("nftables table '{0}' already exists and is not ours to change")]
    Exists(String),
    #[error("nft {what} failed ({status}): {stderr}")]
    Failed {
        what: String,
        status: String,
        stderr: String,
    },
}

/// The nft binary: $VIRTMESH_NFT, else the usual places.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VIRTMESH_NFT").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    ["/usr/sbin/nft", "/usr/bin/nft", "/sbin/nft"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

async fn nft(args: &[&str], stdin: Option<&str>, what: &str) -> Result<String, FirewallError> {
    let bin = binary().unwrap_or_else(|| PathBuf::from("nft"));
    let mut child = tokio::process::Command::new(&bin)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| FirewallError::Spawn {
            binary: bin.display().to_string(),
            source,
        })?;
    if let Some(mut pipe) = child.stdin.take() {
        let input = stdin.unwrap_or("");
        // A failed write shows up as nft's own error below.
        let _ = pipe.write_all(input.as_bytes()).await;
        drop(pipe);
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| FirewallError::Spawn {
            binary: bin.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(FirewallError::Failed {
            what: what.to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether one of our tables exists.
pub async fn table_exists(table: &Table) -> bool {
    nft(
        &["list", "table", &table.family, &table.name],
        None,
        "list table",
    )
    .await
    .is_ok()
}

/// Load a table. Refuses to take over a table of that name that already
/// exists: it is not ours to change.
pub async fn add(table: &Table, rules: &str) -> Result<(), FirewallError> {
    if table_exists(table).await {
        return Err(FirewallError::Exists(table.spec()));
    }
    nft(
        &["-f", "-"],
        Some(rules),
        &format!("add table {}", table.spec()),
    )
    .await
    .map(|_| ())
}

/// Delete one of our tables; a table already gone is fine.
pub async fn remove(table: &Table) -> Result<(), FirewallError> {
    if !table_exists(table).await {
        return Ok(());
    }
    nft(
        &["delete", "table", &table.family, &table.name],
        None,
        &format!("delete table {}", table.spec()),
    )
    .await
    .map(|_| ())
}
