//! dnsmasq for a network: its configuration generated exactly as libvirt's
//! networkDnsmasqConfContents generates it (so the corpus recorded from
//! libvirt 11.3.0 is the reference), the hostsfile and addnhosts files,
//! and the daemon's start, reload and stop.

use crate::def::{ForwardMode, NetDef};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a network's dnsmasq files live. libvirt's layout with our
/// directories in place of /var/lib/libvirt and /run/libvirt (the corpus
/// README's rule 8), so the generated text compares with libvirt's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqPaths {
    pub conf: PathBuf,
    pub hostsfile: PathBuf,
    pub addnhosts: PathBuf,
    pub leases: PathBuf,
    pub pidfile: PathBuf,
}

impl DnsmasqPaths {
    pub fn new(state_dir: &Path, run_dir: &Path, name: &str) -> DnsmasqPaths {
        let dir = state_dir.join("dnsmasq");
        DnsmasqPaths {
            conf: dir.join(format!("{name}.conf")),
            hostsfile: dir.join(format!("{name}.hostsfile")),
            addnhosts: dir.join(format!("{name}.addnhosts")),
            leases: dir.join(format!("{name}.leases")),
            pidfile: run_dir.join("network").join(format!("{name}.pid")),
        }
    }
}

/// The reverse zone of a network for `localPtr='yes'`, when the prefix
/// falls on a label boundary (networkDnsmasqConfLocalPTRs).
fn reverse_zone(address: IpAddr, prefix: u8) -> Option<String> {
    match address {
        IpAddr::V4(a) => {
            if !prefix.is_multiple_of(8) || prefix == 0 {
                return None;
            }
            let o = a.octets();
            let n = usize::from(prefix / 8);
            let mut labels: Vec<String> = o[..n].iter().map(u8::to_string).collect();
            labels.reverse();
            Some(format!("{}.in-addr.arpa", labels.join(".")))
        }
        IpAddr::V6(a) => {
            if !prefix.is_multiple_of(4) || prefix == 0 {
                return None;
            }
            let hex: String = a.octets().iter().map(|b| format!("{b:02x}")).collect();
            let n = usize::from(prefix / 4);
            let mut nibbles: Vec<String> = hex.chars().take(n).map(String::from).collect();
            nibbles.reverse();
            Some(format!("{}.ip6.arpa", nibbles.join(".")))
        }
    }
}

/// The contents of NAME.conf.
pub fn conf(def: &NetDef, paths: &DnsmasqPaths) -> String {
    let mut c = String::new();
    // `write!` into a String cannot fail; the results are ignored below.
    let _ = write!(
        c,
        "##WARNING:  THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n\
         ##OVERWRITTEN AND LOST.  Changes to this configuration should be made using:\n\
         ##    virsh net-edit {}\n\
         ## or other application using the libvirt API.\n\
         ##\n## dnsmasq conf file created by libvirt\n\
         strict-order\n",
        def.name
    );
    let want_dns = def.want_dns();
    if !want_dns {
        c.push_str("port=0\n");
    }
    if want_dns && !def.dns.forwarders.is_empty() {
        let mut no_resolv = false;
        for (domain, addr) in &def.dns.forwarders {
            c.push_str("server=");
            if let Some(d) = domain {
                let _ = write!(c, "/{d}/");
            }
            match addr {
                Some(a) => {
                    let _ = writeln!(c, "{a}");
                    if domain.is_none() {
                        no_resolv = true;
                    }
                }
                None => c.push_str("#\n"),
            }
        }
        if no_resolv {
            c.push_str("no-resolv\n");
        }
    }
    if let Some((domain, local_only)) = &def.domain {
        if *local_only == Some(true) {
            let _ = writeln!(c, "local=/{domain}/");
        }
        let _ = write!(c, "domain={domain}\nexpand-hosts\n");
    }
    if want_dns {
        for ip in def.ips.iter().filter(|i| i.local_ptr) {
            if let Some(zone) = reverse_zone(ip.address, ip.prefix) {
                let _ = writeln!(c, "local=/{zone}/");
            }
        }
    }
    if want_dns && def.dns.forward_plain_names == Some(false) {
        c.push_str("domain-needed\nlocal=//\n");
    }
    let _ = writeln!(c, "pid-file={}", paths.pidfile.display());
    c.push_str("except-interface=lo\n");
    let _ = write!(
        c,
        "bind-dynamic\ninterface={}\n",
        def.bridge.as_deref().unwrap_or("")
    );
    if def.mode == ForwardMode::None {
        c.push_str("dhcp-option=3\nno-resolv\nra-param=*,0,0\n");
    }
    if want_dns {
        for (name, value) in &def.dns.txts {
            let _ = writeln!(c, "txt-record={name},{value}");
        }
        for s in &def.dns.srvs {
            let _ = write!(c, "srv-host=_{}._{}", s.service, s.protocol);
            if let Some(d) = &s.domain {
                let _ = write!(c, ".{d}");
            }
            if let Some(t) = s.target.as_deref().filter(|t| *t != ".") {
                let _ = write!(c, ",{t}");
                if s.port != 0 || s.priority != 0 || s.weight != 0 {
                    let _ = write!(c, ",{}", if s.port != 0 { s.port } else { 1 });
                }
                if s.priority != 0 || s.weight != 0 {
                    let _ = write!(c, ",{}", s.priority);
                }
                if s.weight != 0 {
                    let _ = write!(c, ",{}", s.weight);
                }
            }
            c.push('\n');
        }
    }
    let v4_dhcp = def.ips.iter().any(|i| !i.is_v6() && i.has_dhcp());
    let v6_dhcp = def.ips.iter().any(|i| i.is_v6() && i.has_dhcp());
    let mut leases: u64 = 0;
    for ip in &def.ips {
        if !ip.is_v6()
            && let Some(root) = &ip.tftp_root
        {
            let _ = write!(c, "enable-tftp\ntftp-root={root}\n");
        }
        for r in &ip.ranges {
            if ip.is_v6() {
                let _ = write!(c, "dhcp-range={},{},{}", r.start, r.end, ip.prefix);
            } else {
                let _ = write!(c, "dhcp-range={},{},{}", r.start, r.end, ip.netmask_v4());
            }
            if let Some(l) = &r.lease {
                let _ = write!(c, ",{}", l.dnsmasq());
            }
            c.push('\n');
            leases = leases.saturating_add(r.size());
        }
        if ip.ranges.is_empty() && !ip.hosts.is_empty() {
            let _ = write!(c, "dhcp-range={},static", ip.address);
            if ip.is_v6() {
                let _ = write!(c, ",{}", ip.prefix);
            }
            c.push('\n');
        }
        if !ip.is_v6() {
            if ip.has_dhcp() {
                c.push_str("dhcp-no-override\ndhcp-authoritative\n");
            }
            if let Some((file, server)) = &ip.bootp {
                match server {
                    Some(s) => {
                        let _ = writeln!(c, "dhcp-boot={file},,{s}");
                    }
                    None => {
                        let _ = writeln!(c, "dhcp-boot={file}");
                    }
                }
            }
        }
    }
    if leases > 0 {
        let _ = writeln!(c, "dhcp-lease-max={leases}");
    }
    if v4_dhcp || v6_dhcp {
        let _ = writeln!(c, "dhcp-hostsfile={}", paths.hostsfile.display());
    }
    if want_dns {
        let _ = writeln!(c, "addn-hosts={}", paths.addnhosts.display());
    }
    if let Some(mtu) = def.mtu {
        let _ = writeln!(c, "dhcp-option=option:mtu,{mtu}");
    }
    if v6_dhcp {
        c.push_str("enable-ra\n");
    } else {
        for ip in def.ips.iter().filter(|i| i.is_v6() && !i.has_dhcp()) {
            let _ = writeln!(c, "dhcp-range={},ra-only", ip.address);
        }
    }
    for opt in &def.dnsmasq_options {
        let _ = writeln!(c, "{opt}");
    }
    c
}

/// The contents of NAME.hostsfile: one `dhcp-host` line per static host
/// of the addresses that serve DHCP (dnsmasqAddDhcpHost).
pub fn hostsfile(def: &NetDef) -> String {
    let mut out = String::new();
    for ip in def.ips.iter().filter(|i| i.has_dhcp()) {
        for h in &ip.hosts {
            let Some(addr) = h.ip else { continue };
            let mut line = String::new();
            if ip.is_v6() {
                match (&h.id, &h.name, &h.mac) {
                    (Some(id), _, _) => {
                        let _ = write!(line, "id:{id},");
                        if let Some(n) = &h.name {
                            let _ = write!(line, "{n},");
                        }
                    }
                    (None, Some(n), _) => {
                        let _ = write!(line, "{n},");
                    }
                    (None, None, Some(m)) => {
                        let _ = write!(line, "{m},");
                    }
                    _ => {}
                }
                let _ = write!(line, "[{addr}]");
            } else {
                match (&h.mac, &h.name) {
                    (Some(m), Some(n)) => {
                        let _ = write!(line, "{m},{addr},{n}");
                    }
                    (Some(m), None) => {
                        let _ = write!(line, "{m},{addr}");
                    }
                    (None, Some(n)) => {
                        let _ = write!(line, "{n},{addr}");
                    }
                    (None, None) => {
                        let _ = write!(line, "{addr}");
                    }
                }
            }
            if let Some(l) = &h.lease {
                let _ = write!(line, ",{}", l.dnsmasq());
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// The contents of NAME.addnhosts: `ip\tname\t...\n`, names of one
/// address gathered on one line (dnsmasqAddHost / addnhostsWrite).
pub fn addnhosts(def: &NetDef) -> String {
    let mut merged: Vec<(String, Vec<String>)> = Vec::new();
    for (ip, names) in &def.dns.hosts {
        match merged.iter_mut().find(|(i, _)| i == ip) {
            Some((_, n)) => n.extend(names.iter().cloned()),
            None => merged.push((ip.clone(), names.clone())),
        }
    }
    let mut out = String::new();
    for (ip, names) in merged {
        out.push_str(&ip);
        out.push('\t');
        for n in names {
            out.push_str(&n);
            out.push('\t');
        }
        out.push('\n');
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum DnsmasqError {
    #[error("cannot execute '{binary}': {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("dnsmasq failed to start (exit status {status}): {stderr}")]
    Failed { status: String, stderr: String },
    #[error("dnsmasq started but its pid file '{path}' is unusable: {message}")]
    Pidfile { path: String, message: String },
}

/// The dnsmasq binary: $VIRTMESH_DNSMASQ, else the first of the usual
/// places (Debian installs it in /usr/sbin, often not on a user's PATH).
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VIRTMESH_DNSMASQ").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Start dnsmasq on a written configuration and return its pid. dnsmasq
/// forks into the background and its foreground process exits only once
/// the daemon is ready or has failed (reporting why on stderr), so its
/// exit status is the start's verdict. The daemon is in its own session:
/// a service that is killed leaves it serving (DESIGN.md §6).
pub async fn start(paths: &DnsmasqPaths) -> Result<i32, DnsmasqError> {
    let bin = binary().unwrap_or_else(|| PathBuf::from("dnsmasq"));
    let output = tokio::process::Command::new(&bin)
        .arg(format!("--conf-file={}", paths.conf.display()))
        .arg(format!("--dhcp-leasefile={}", paths.leases.display()))
        // Stay root: the lease file and pid file live in our own
        // directories, which the distribution's unprivileged dnsmasq user
        // (if it exists at all with dnsmasq-base) cannot write.
        .arg("--user=root")
        .arg("--group=root")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(false)
        .output()
        .await
        .map_err(|source| DnsmasqError::Spawn {
            binary: bin.display().to_string(),
            source,
        })?;
    if !output.status.success() {
        return Err(DnsmasqError::Failed {
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    read_pid(&paths.pidfile).map_err(|message| DnsmasqError::Pidfile {
        path: paths.pidfile.display().to_string(),
        message,
    })
}

pub fn read_pid(path: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    text.trim()
        .parse::<i32>()
        .map_err(|e| format!("'{}': {e}", text.trim()))
        .and_then(|p| {
            if p > 1 {
                Ok(p)
            } else {
                Err(format!("implausible pid {p}"))
            }
        })
}

/// Whether `pid` is a dnsmasq running on `conf` (and not a recycled pid
/// of some other process): its command line names our config file.
pub fn is_ours(pid: i32, conf: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let want = format!("--conf-file={}", conf.display());
    cmdline.split(|b| *b == 0).any(|arg| arg == want.as_bytes())
}

/// Ask dnsmasq to re-read its hostsfile and addnhosts (SIGHUP).
pub fn reload(pid: i32) -> Result<(), nix::errno::Errno> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
}

/// Stop a dnsmasq we started: SIGTERM, then SIGKILL if it lingers. A pid
/// that is no longer our dnsmasq is left alone.
pub async fn stop(pid: i32, conf: &Path) {
    use nix::sys::signal::{Signal, kill};
    let p = nix::unistd::Pid::from_raw(pid);
    if !is_ours(pid, conf) {
        return;
    }
    let _ = kill(p, Signal::SIGTERM);
    for _ in 0..100 {
        if !is_ours(pid, conf) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::warn!(pid, "dnsmasq ignored SIGTERM; killing it");
    let _ = kill(p, Signal::SIGKILL);
    for _ in 0..100 {
        if !is_ours(pid, conf) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
