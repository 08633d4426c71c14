//! Interface QoS with `tc` (libvirt's virnetdevbandwidth): HTB shaping
//! on an interface's egress, a policer on its ingress, and the classes a
//! network bridge uses to guarantee guests their `floor`.
//!
//! We run the `tc` binary as libvirt does rather than speak tc netlink:
//! htb, sfq, u32 and police options have no maintained Rust encoding,
//! and libvirt's exact command lines make the result comparable with
//! `tc` output on a libvirt host. Each operation is a list of command
//! lines built by a pure function (unit-tested), then run in order.

use virtmesh_conf::bandwidth::{Bandwidth, Rate};

#[derive(Debug, thiserror::Error)]
pub enum TcError {
    #[error("Cannot find 'tc' binary (install iproute2)")]
    Missing,
    #[error("cannot run tc: {0}")]
    Spawn(std::io::Error),
    /// libvirt's virCommandRun wording: the command and what it said.
    #[error("Child process (tc {args}) unexpected exit status {status}: {stderr}")]
    Failed {
        args: String,
        status: i32,
        stderr: String,
    },
    #[error("Invalid class ID {0}")]
    ClassId(u32),
    #[error("Bridge '{bridge}' has no QoS set, therefore unable to set 'floor' on '{mac}'")]
    NoBridgeQos { bridge: String, mac: String },
}

/// One `tc` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cmd {
    args: Vec<String>,
    /// A refinement libvirt adds that shaping works without: the sfq
    /// leaf (fair queueing inside a class; without it HTB's default pfifo
    /// leaf serves) and the fw-mark hook filter. Kernels built without
    /// them (sch_sfq, cls_fw) still get the limits; see [`run_all`].
    optional: bool,
}

impl Cmd {
    fn extend(&mut self, more: impl IntoIterator<Item = String>) {
        self.args.extend(more);
    }

    fn line(&self) -> String {
        self.args.join(" ")
    }
}

fn cmd(parts: &[&str]) -> Cmd {
    Cmd {
        args: parts.iter().map(|s| (*s).to_owned()).collect(),
        optional: false,
    }
}

/// A command whose failure leaves the limits in place (see
/// [`Cmd::optional`]).
fn optional_cmd(parts: &[&str]) -> Cmd {
    Cmd {
        optional: true,
        ..cmd(parts)
    }
}

fn kbps(v: u64) -> String {
    format!("{v}kbps")
}

/// HTB's quantum (bytes served per round) from the rate, as libvirt
/// computes it: rate/r2q with an MTU of 1500, never 0.
fn quantum(rate: &Rate) -> [String; 2] {
    let q = (rate.average * 1024 / 8 / 1500).max(1);
    ["quantum".to_owned(), q.to_string()]
}

/// The commands that remove our root and ingress qdiscs (either may be
/// absent: their failure is ignored).
fn clear_commands(ifname: &str) -> Vec<Cmd> {
    vec![
        cmd(&["qdisc", "del", "dev", ifname, "root"]),
        cmd(&["qdisc", "del", "dev", ifname, "ingress"]),
    ]
}

/// virNetDevBandwidthSet after its clear: `hierarchical` builds the
/// 1:1/1:2 tree a network bridge needs for floors; `swapped` says the
/// guest's inbound is this interface's egress (a tap on a bridge), as
/// opposed to an interface that shares the guest's view (macvtap,
/// ethernet).
fn set_commands(ifname: &str, bw: &Bandwidth, hierarchical: bool, swapped: bool) -> Vec<Cmd> {
    let (rx, tx) = if swapped {
        (bw.outbound, bw.inbound)
    } else {
        (bw.inbound, bw.outbound)
    };
    let mut out = Vec::new();
    if let Some(tx) = tx.filter(|r| r.average > 0) {
        let average = kbps(tx.average);
        let peak = (tx.peak > 0).then(|| kbps(tx.peak));
        out.push(cmd(&[
            "qdisc",
            "add",
            "dev",
            ifname,
            "root",
            "handle",
            "1:",
            "htb",
            "default",
            if hierarchical { "2" } else { "1" },
        ]));
        if hierarchical {
            let mut c = cmd(&[
                "class",
                "add",
                "dev",
                ifname,
                "parent",
                "1:",
                "classid",
                "1:1",
                "htb",
                "rate",
                &average,
                "ceil",
                peak.as_deref().unwrap_or(&average),
            ]);
            c.extend(quantum(&tx));
            out.push(c);
        }
        let (parent, classid) = if hierarchical {
            ("1:1", "1:2")
        } else {
            ("1:", "1:1")
        };
        let mut c = cmd(&[
            "class", "add", "dev", ifname, "parent", parent, "classid", classid, "htb", "rate",
            &average,
        ]);
        if let Some(p) = &peak {
            c.extend(["ceil".to_owned(), p.clone()]);
        }
        if tx.burst > 0 {
            c.extend(["burst".to_owned(), format!("{}kb", tx.burst)]);
        }
        c.extend(quantum(&tx));
        out.push(c);
        out.push(optional_cmd(&[
            "qdisc", "add", "dev", ifname, "parent", classid, "handle", "2:", "sfq", "perturb",
            "10",
        ]));
        out.push(optional_cmd(&[
            "filter", "add", "dev", ifname, "parent", "1:0", "protocol", "all", "prio", "1",
            "handle", "1", "fw", "flowid", "1",
        ]));
    }
    if let Some(rx) = rx.filter(|r| r.average > 0) {
        // tc keeps the burst in bytes in a u32; libvirt's default burst
        // is the average (KiB), capped to fit.
        let burst = if rx.burst > 0 {
            rx.burst
        } else {
            rx.average.min(u64::from(u32::MAX) / 1024)
        };
        out.push(cmd(&["qdisc", "add", "dev", ifname, "ingress"]));
        out.push(cmd(&[
            "filter",
            "add",
            "dev",
            ifname,
            "parent",
            "ffff:",
            "protocol",
            "all",
            "u32",
            "match",
            "u32",
            "0",
            "0",
            "police",
            "rate",
            &kbps(rx.average),
            "burst",
            &format!("{burst}kb"),
            "mtu",
            "64kb",
            "drop",
            "flowid",
            ":1",
        ]));
    }
    out
}

fn class_id(id: u32) -> String {
    format!("1:{id:x}")
}

/// The ceiling of every class under the bridge's 1:1: the network's
/// inbound peak, else its average.
fn net_ceil(net: &Rate) -> String {
    kbps(if net.peak > 0 { net.peak } else { net.average })
}

/// virNetDevBandwidthPlug: class 1:ID guaranteeing `floor` to the guest
/// with MAC `mac` on `bridge`, its sfq, and the u32 filter that sorts
/// the guest's frames (by destination MAC) into it.
fn plug_commands(
    bridge: &str,
    net: &Bandwidth,
    mac: &[u8; 6],
    port: &Bandwidth,
    id: u32,
) -> Result<Vec<Cmd>, TcError> {
    if id <= 2 {
        return Err(TcError::ClassId(id));
    }
    let Some(net_in) = net.inbound else {
        return Err(TcError::NoBridgeQos {
            bridge: bridge.to_owned(),
            mac: format_mac(mac),
        });
    };
    let port_in = port.inbound.unwrap_or_default();
    let class = class_id(id);
    let mut c = cmd(&[
        "class",
        "add",
        "dev",
        bridge,
        "parent",
        "1:1",
        "classid",
        &class,
        "htb",
        "rate",
        &kbps(port_in.floor),
        "ceil",
        &net_ceil(&net_in),
    ]);
    c.extend(quantum(&port_in));
    Ok(vec![
        c,
        optional_cmd(&[
            "qdisc",
            "add",
            "dev",
            bridge,
            "parent",
            &class,
            "handle",
            &format!("{id:x}:"),
            "sfq",
            "perturb",
            "10",
        ]),
        cmd(&[
            "filter",
            "add",
            "dev",
            bridge,
            "protocol",
            "ip",
            "prio",
            "2",
            "handle",
            &format!("800::{id}"),
            "u32",
            "match",
            "u16",
            "0x0800",
            "0xffff",
            "at",
            "-2",
            "match",
            "u32",
            &format!("0x{:02x}{:02x}{:02x}{:02x}", mac[2], mac[3], mac[4], mac[5]),
            "0xffffffff",
            "at",
            "-12",
            "match",
            "u16",
            &format!("0x{:02x}{:02x}", mac[0], mac[1]),
            "0xffff",
            "at",
            "-14",
            "flowid",
            &class,
        ]),
    ])
}

/// virNetDevBandwidthUnplug: the port's qdisc, filter and class go (each
/// step's failure is ignored, to remove as much as possible).
fn unplug_commands(bridge: &str, id: u32) -> Result<Vec<Cmd>, TcError> {
    if id <= 2 {
        return Err(TcError::ClassId(id));
    }
    let class = class_id(id);
    Ok(vec![
        cmd(&[
            "qdisc",
            "del",
            "dev",
            bridge,
            "parent",
            &class,
            "handle",
            &format!("{id:x}:"),
        ]),
        cmd(&[
            "filter",
            "del",
            "dev",
            bridge,
            "prio",
            "2",
            "handle",
            &format!("800::{id}"),
            "u32",
        ]),
        cmd(&["class", "del", "dev", bridge, "classid", &class]),
    ])
}

/// virNetDevBandwidthUpdateRate: class 1:ID's rate becomes `rate`.
fn update_rate_command(ifname: &str, id: u32, net: &Rate, rate: u64) -> Cmd {
    let mut c = cmd(&[
        "class",
        "change",
        "dev",
        ifname,
        "classid",
        &class_id(id),
        "htb",
        "rate",
        &kbps(rate),
        "ceil",
        &net_ceil(net),
    ]);
    c.extend(quantum(net));
    c
}

fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn tc_binary() -> Option<std::path::PathBuf> {
    ["/usr/sbin/tc", "/sbin/tc", "/usr/bin/tc"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

async fn run(c: &Cmd) -> Result<(), TcError> {
    let tc = tc_binary().ok_or(TcError::Missing)?;
    let out = tokio::process::Command::new(tc)
        .args(&c.args)
        .output()
        .await
        .map_err(TcError::Spawn)?;
    if out.status.success() {
        return Ok(());
    }
    Err(TcError::Failed {
        args: c.line(),
        status: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

async fn run_all(cmds: &[Cmd]) -> Result<(), TcError> {
    for c in cmds {
        match run(c).await {
            Err(e @ TcError::Failed { .. }) if c.optional => {
                tracing::warn!("QoS refinement left out: {e}");
            }
            r => r?,
        }
    }
    Ok(())
}

/// Removal steps: what is not there (a fresh interface has no root
/// qdisc of ours) makes tc fail, which is expected and ignored.
async fn run_ignoring_failures(cmds: &[Cmd]) {
    for c in cmds {
        let _ = run(c).await;
    }
}

/// Remove our shaping from `ifname`.
pub async fn clear(ifname: &str) {
    run_ignoring_failures(&clear_commands(ifname)).await;
}

/// Shape `ifname` (see [`set_commands`]); anything set before is replaced.
pub async fn set(
    ifname: &str,
    bw: &Bandwidth,
    hierarchical: bool,
    swapped: bool,
) -> Result<(), TcError> {
    clear(ifname).await;
    run_all(&set_commands(ifname, bw, hierarchical, swapped)).await
}

/// Guarantee a port its floor on the network's bridge; on failure what
/// was added is taken away again.
pub async fn plug(
    bridge: &str,
    net: &Bandwidth,
    mac: &[u8; 6],
    port: &Bandwidth,
    id: u32,
) -> Result<(), TcError> {
    let cmds = plug_commands(bridge, net, mac, port, id)?;
    if let Err(e) = run_all(&cmds).await {
        unplug(bridge, id).await;
        return Err(e);
    }
    Ok(())
}

/// Take a port's floor class off the bridge.
pub async fn unplug(bridge: &str, id: u32) {
    if let Ok(cmds) = unplug_commands(bridge, id) {
        run_ignoring_failures(&cmds).await;
    }
}

/// Change class 1:ID's guaranteed rate.
pub async fn update_rate(ifname: &str, id: u32, net: &Rate, rate: u64) -> Result<(), TcError> {
    run(&update_rate_command(ifname, id, net, rate)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(cmds: &[Cmd]) -> Vec<String> {
        cmds.iter().map(Cmd::line).collect()
    }

    fn rate(average: u64, peak: u64, burst: u64, floor: u64) -> Option<Rate> {
        Some(Rate {
            average,
            peak,
            burst,
            floor,
        })
    }

    #[test]
    fn tap_gets_egress_shaping_for_inbound_and_a_policer_for_outbound() {
        let bw = Bandwidth {
            inbound: rate(1000, 5000, 1024, 0),
            outbound: rate(128, 0, 0, 0),
        };
        assert_eq!(
            lines(&set_commands("vnet0", &bw, false, true)),
            [
                "qdisc add dev vnet0 root handle 1: htb default 1",
                "class add dev vnet0 parent 1: classid 1:1 htb rate 1000kbps ceil 5000kbps burst 1024kb quantum 85",
                "qdisc add dev vnet0 parent 1:1 handle 2: sfq perturb 10",
                "filter add dev vnet0 parent 1:0 protocol all prio 1 handle 1 fw flowid 1",
                "qdisc add dev vnet0 ingress",
                "filter add dev vnet0 parent ffff: protocol all u32 match u32 0 0 police rate 128kbps burst 128kb mtu 64kb drop flowid :1",
            ]
        );
        // A macvtap shares the guest's view: inbound is policed.
        let l = lines(&set_commands("macvtap0", &bw, false, false));
        assert!(l[0].starts_with("qdisc add dev macvtap0 root handle 1: htb default 1"));
        assert!(l[1].contains("rate 128kbps quantum 10"), "{l:?}");
        assert!(l[5].contains("police rate 1000kbps burst 1024kb"), "{l:?}");
    }

    #[test]
    fn only_fair_queueing_and_the_fw_hook_are_optional() {
        let bw = Bandwidth {
            inbound: rate(1000, 0, 0, 0),
            outbound: rate(10, 0, 0, 0),
        };
        let optional: Vec<String> = set_commands("t", &bw, true, true)
            .iter()
            .filter(|c| c.optional)
            .map(Cmd::line)
            .collect();
        assert_eq!(
            optional,
            [
                "qdisc add dev t parent 1:2 handle 2: sfq perturb 10",
                "filter add dev t parent 1:0 protocol all prio 1 handle 1 fw flowid 1",
            ]
        );
    }

    #[test]
    fn bridge_tree_and_floor_classes() {
        let net = Bandwidth {
            inbound: rate(1000, 5000, 0, 0),
            outbound: None,
        };
        assert_eq!(
            lines(&set_commands("virbr1", &net, true, true)),
            [
                "qdisc add dev virbr1 root handle 1: htb default 2",
                "class add dev virbr1 parent 1: classid 1:1 htb rate 1000kbps ceil 5000kbps quantum 85",
                "class add dev virbr1 parent 1:1 classid 1:2 htb rate 1000kbps ceil 5000kbps quantum 85",
                "qdisc add dev virbr1 parent 1:2 handle 2: sfq perturb 10",
                "filter add dev virbr1 parent 1:0 protocol all prio 1 handle 1 fw flowid 1",
            ]
        );
        let port = Bandwidth {
            inbound: rate(0, 0, 0, 200),
            outbound: None,
        };
        let mac = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
        assert_eq!(
            lines(&plug_commands("virbr1", &net, &mac, &port, 11).expect("plug")),
            [
                "class add dev virbr1 parent 1:1 classid 1:b htb rate 200kbps ceil 5000kbps quantum 1",
                "qdisc add dev virbr1 parent 1:b handle b: sfq perturb 10",
                "filter add dev virbr1 protocol ip prio 2 handle 800::11 u32 match u16 0x0800 0xffff at -2 match u32 0x00abcdef 0xffffffff at -12 match u16 0x5254 0xffff at -14 flowid 1:b",
            ]
        );
        assert_eq!(
            update_rate_command("virbr1", 2, &net.inbound.unwrap_or_default(), 4800).line(),
            "class change dev virbr1 classid 1:2 htb rate 4800kbps ceil 5000kbps quantum 85"
        );
        assert!(matches!(
            plug_commands("virbr1", &net, &mac, &port, 2),
            Err(TcError::ClassId(2))
        ));
        let no_qos = Bandwidth::default();
        assert_eq!(
            plug_commands("virbr1", &no_qos, &mac, &port, 3)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err("Bridge 'virbr1' has no QoS set, therefore unable to set 'floor' on '52:54:00:ab:cd:ef'".to_owned())
        );
    }
}
