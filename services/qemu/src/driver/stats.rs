//! Statistics: memory stats of one guest and libvirt's typed per-domain
//! stats for all of them (virConnectGetAllDomainStats).

use super::*;
use serde_json::Value;
use std::collections::HashMap;
use virtmesh_proto::v1::typed_param::Value as P;

fn param(field: &str, value: P) -> pb::TypedParam {
    pb::TypedParam {
        field: field.to_owned(),
        value: Some(value),
    }
}

impl QemuDriver {
    /// The running guest's monitor and pid, and whether it has a balloon.
    fn live_parts(&self, dom: &Dom) -> Option<(Arc<Qmp>, i32, bool)> {
        let st = dom.lock();
        let l = st.live.as_ref().filter(|l| !l.starting)?;
        Some((l.qmp.clone(), l.pid, l.def.has_balloon()))
    }

    /// The balloon's size in KiB, when the guest has one.
    async fn balloon_kib(qmp: &Qmp, balloon: bool) -> Result<Option<u64>> {
        if !balloon {
            return Ok(None);
        }
        let info = qmp.execute(qmp::QueryBalloon {}).await.map_err(err::qmp)?;
        Ok(Some(info.actual / 1024))
    }

    /// virDomainMemoryStats as `virsh dommemstat` names them: `actual`
    /// (balloon, KiB) and `rss` (the QEMU process, KiB).
    pub async fn memory_stats(&self, r: Option<&pb::ObjectRef>) -> Result<HashMap<String, u64>> {
        let dom = self.find(r)?;
        let (qmp, pid, balloon) = self.live_parts(&dom).ok_or_else(err::not_running)?;
        let mut stats = HashMap::new();
        if let Some(actual) = Self::balloon_kib(&qmp, balloon).await? {
            stats.insert("actual".to_owned(), actual);
        }
        if let Some(rss) = process::rss_kib(pid) {
            stats.insert("rss".to_owned(), rss);
        }
        Ok(stats)
    }

    /// libvirt's `state`, `cpu`, `balloon`, `vcpu`, `block` and `net` groups for each
    /// domain `keep` selects. A guest that stops meanwhile still gets its
    /// config-based fields.
    pub async fn all_stats(&self, keep: impl Fn(&DomView) -> bool) -> Vec<pb::DomainStats> {
        let mut out = Vec::new();
        for v in self.list().into_iter().filter(|v| keep(v)) {
            let mut params = vec![
                param("state.state", P::Int(v.state as i64)),
                param("state.reason", P::Int(i64::from(v.reason))),
            ];
            let live = self.find_uuid(&v.uuid).and_then(|d| self.live_parts(&d));
            let mut balloon_current = v.def.current_memory_kib();
            let mut device_params = Vec::new();
            if let Some((qmp, pid, balloon)) = live {
                params.push(param("cpu.time", P::Uint(process::cpu_time_ns(pid))));
                Self::device_params(&qmp, &v.def, &mut device_params).await;
                if let Ok(Some(actual)) = Self::balloon_kib(&qmp, balloon).await {
                    balloon_current = actual;
                }
                if let Some(rss) = process::rss_kib(pid) {
                    params.push(param("balloon.rss", P::Uint(rss)));
                }
            }
            params.push(param("balloon.current", P::Uint(balloon_current)));
            params.push(param("balloon.maximum", P::Uint(v.def.max_memory_kib())));
            params.push(param("vcpu.current", P::Uint(u64::from(v.def.vcpus()))));
            params.push(param("vcpu.maximum", P::Uint(u64::from(v.def.max_vcpus()))));
            params.extend(device_params);
            out.push(pb::DomainStats {
                uuid: v.uuid.clone(),
                name: v.name.clone(),
                params,
            });
        }
        out
    }
}

/// Block I/O counters of one disk (virDomainBlockStats and the `block`
/// group of the all-domain stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockStats {
    pub rd_req: i64,
    pub rd_bytes: i64,
    pub rd_times_ns: i64,
    pub wr_req: i64,
    pub wr_bytes: i64,
    pub wr_times_ns: i64,
    pub fl_req: i64,
    pub fl_times_ns: i64,
}

impl BlockStats {
    fn add(&mut self, o: &BlockStats) {
        self.rd_req += o.rd_req;
        self.rd_bytes += o.rd_bytes;
        self.rd_times_ns += o.rd_times_ns;
        self.wr_req += o.wr_req;
        self.wr_bytes += o.wr_bytes;
        self.wr_times_ns += o.wr_times_ns;
        self.fl_req += o.fl_req;
        self.fl_times_ns += o.fl_times_ns;
    }
}

/// Interface counters from the guest's point of view
/// (virDomainInterfaceStats and the `net` group).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    pub rx_bytes: i64,
    pub rx_packets: i64,
    pub rx_errs: i64,
    pub rx_drop: i64,
    pub tx_bytes: i64,
    pub tx_packets: i64,
    pub tx_errs: i64,
    pub tx_drop: i64,
}

impl QemuDriver {
    /// virDomainBlockStats: `path` names a disk by target (`vda`) or
    /// source; an empty path sums every disk, as libvirt does.
    pub async fn block_stats(&self, r: Option<&pb::ObjectRef>, path: &str) -> Result<BlockStats> {
        let dom = self.find(r)?;
        let (qmp, def) = self.live_def(&dom).ok_or_else(err::not_running)?;
        let disks = elements(&def, "disk");
        let wanted: Vec<&virtmesh_conf::Element> = if path.is_empty() {
            disks
        } else {
            let disk = disks
                .into_iter()
                .find(|d| disk_named(d, path))
                .ok_or_else(|| {
                    err::qemu(
                        ErrorCode::InvalidArg,
                        format!("invalid argument: invalid path: {path}"),
                    )
                })?;
            vec![disk]
        };
        let all = query_blockstats(&qmp).await?;
        let mut total = BlockStats::default();
        for disk in wanted {
            if let Some(s) = disk_counters(&all, disk) {
                total.add(&s);
            }
        }
        Ok(total)
    }

    /// virDomainInterfaceStats: `device` is the host link (`vnet0`) or
    /// the guest MAC.
    pub fn interface_stats(
        &self,
        r: Option<&pb::ObjectRef>,
        device: &str,
    ) -> Result<InterfaceStats> {
        let dom = self.find(r)?;
        let def = {
            let st = dom.lock();
            let l = st
                .live
                .as_ref()
                .filter(|l| !l.starting)
                .ok_or_else(err::not_running)?;
            l.def.clone()
        };
        let unknown = || {
            err::qemu(
                ErrorCode::InvalidArg,
                format!("invalid argument: '{device}' is not a known interface"),
            )
        };
        let iface = elements(&def, "interface")
            .into_iter()
            .find(|d| {
                let target = d.child("target").and_then(|t| t.attr("dev"));
                target == Some(device) || hostnet::mac_of(d).eq_ignore_ascii_case(device)
            })
            .ok_or_else(unknown)?;
        link_counters(iface).ok_or_else(unknown)?
    }

    /// libvirt's `block` and `net` groups of one running guest.
    async fn device_params(qmp: &Qmp, def: &DomainDef, params: &mut Vec<pb::TypedParam>) {
        let disks = elements(def, "disk");
        let blockstats = query_blockstats(qmp).await.unwrap_or_default();
        params.push(param("block.count", P::Uint(disks.len() as u64)));
        for (i, disk) in disks.iter().enumerate() {
            let name = disk
                .child("target")
                .and_then(|t| t.attr("dev"))
                .unwrap_or_default();
            params.push(param(
                &format!("block.{i}.name"),
                P::String(name.to_owned()),
            ));
            if let Some(path) = disk
                .child("source")
                .and_then(|s| s.attr("file").or_else(|| s.attr("dev")))
            {
                params.push(param(
                    &format!("block.{i}.path"),
                    P::String(path.to_owned()),
                ));
            }
            if let Some(s) = disk_counters(&blockstats, disk) {
                for (k, v) in [
                    ("rd.reqs", s.rd_req),
                    ("rd.bytes", s.rd_bytes),
                    ("rd.times", s.rd_times_ns),
                    ("wr.reqs", s.wr_req),
                    ("wr.bytes", s.wr_bytes),
                    ("wr.times", s.wr_times_ns),
                    ("fl.reqs", s.fl_req),
                    ("fl.times", s.fl_times_ns),
                ] {
                    params.push(param(&format!("block.{i}.{k}"), P::Uint(v.max(0) as u64)));
                }
            }
        }
        let ifaces = elements(def, "interface");
        params.push(param("net.count", P::Uint(ifaces.len() as u64)));
        for (i, iface) in ifaces.iter().enumerate() {
            let name = iface
                .child("target")
                .and_then(|t| t.attr("dev"))
                .unwrap_or_default();
            params.push(param(&format!("net.{i}.name"), P::String(name.to_owned())));
            if let Some(Ok(s)) = link_counters(iface) {
                for (k, v) in [
                    ("rx.bytes", s.rx_bytes),
                    ("rx.pkts", s.rx_packets),
                    ("rx.errs", s.rx_errs),
                    ("rx.drop", s.rx_drop),
                    ("tx.bytes", s.tx_bytes),
                    ("tx.pkts", s.tx_packets),
                    ("tx.errs", s.tx_errs),
                    ("tx.drop", s.tx_drop),
                ] {
                    params.push(param(&format!("net.{i}.{k}"), P::Uint(v.max(0) as u64)));
                }
            }
        }
    }
}

/// The definition's devices called `name`, in order.
fn elements<'a>(def: &'a DomainDef, name: &str) -> Vec<&'a virtmesh_conf::Element> {
    def.devices()
        .into_iter()
        .filter(|d| d.name == name)
        .collect()
}

async fn query_blockstats(qmp: &Qmp) -> Result<Vec<Value>> {
    let all = qmp
        .execute_raw("query-blockstats", Value::Null)
        .await
        .map_err(err::qmp)?;
    Ok(match all {
        Value::Array(a) => a,
        _ => Vec::new(),
    })
}

/// The counters `query-blockstats` has for a disk, found by its alias.
fn disk_counters(all: &[Value], disk: &virtmesh_conf::Element) -> Option<BlockStats> {
    let alias = crate::def::alias_of(disk)?;
    let entry = all.iter().find(|e| {
        let qdev = e.get("qdev").and_then(Value::as_str).unwrap_or_default();
        qdev_is(qdev, &alias)
    })?;
    let s = entry.get("stats")?;
    let n = |k: &str| s.get(k).and_then(Value::as_i64).unwrap_or(0);
    Some(BlockStats {
        rd_req: n("rd_operations"),
        rd_bytes: n("rd_bytes"),
        rd_times_ns: n("rd_total_time_ns"),
        wr_req: n("wr_operations"),
        wr_bytes: n("wr_bytes"),
        wr_times_ns: n("wr_total_time_ns"),
        fl_req: n("flush_operations"),
        fl_times_ns: n("flush_total_time_ns"),
    })
}

/// The counters of an interface's host link (None: it has none, e.g.
/// user networking). They come from sysfs; for a tap (bridge, network)
/// the host's rx is the guest's tx, so they are swapped as libvirt swaps
/// them, while a macvtap or ethernet link shares the guest's view.
fn link_counters(iface: &virtmesh_conf::Element) -> Option<Result<InterfaceStats>> {
    let link = iface.child("target").and_then(|t| t.attr("dev"))?;
    let shares_host_view = matches!(iface.attr("type"), Some("direct" | "ethernet"));
    let read = |what: &str| -> Result<i64> {
        let p = format!("/sys/class/net/{link}/statistics/{what}");
        std::fs::read_to_string(&p)
            .map_err(|e| {
                err::qemu(
                    ErrorCode::SystemError,
                    format!("cannot read statistics of interface {link}: {e}"),
                )
            })?
            .trim()
            .parse()
            .map_err(|e| err::internal(format!("unexpected contents of {p}: {e}")))
    };
    let counters = || -> Result<InterfaceStats> {
        let host = InterfaceStats {
            rx_bytes: read("rx_bytes")?,
            rx_packets: read("rx_packets")?,
            rx_errs: read("rx_errors")?,
            rx_drop: read("rx_dropped")?,
            tx_bytes: read("tx_bytes")?,
            tx_packets: read("tx_packets")?,
            tx_errs: read("tx_errors")?,
            tx_drop: read("tx_dropped")?,
        };
        Ok(if shares_host_view {
            host
        } else {
            InterfaceStats {
                rx_bytes: host.tx_bytes,
                rx_packets: host.tx_packets,
                rx_errs: host.tx_errs,
                rx_drop: host.tx_drop,
                tx_bytes: host.rx_bytes,
                tx_packets: host.rx_packets,
                tx_errs: host.rx_errs,
                tx_drop: host.rx_drop,
            }
        })
    };
    Some(counters())
}

/// Whether a `<disk>` is the one virsh's PATH argument names: its target
/// device or its source file/device.
fn disk_named(disk: &virtmesh_conf::Element, path: &str) -> bool {
    let target = disk.child("target").and_then(|t| t.attr("dev"));
    let source = disk
        .child("source")
        .and_then(|s| s.attr("file").or_else(|| s.attr("dev")));
    target == Some(path) || source == Some(path)
}

/// `query-blockstats` names a device by its id or by its QOM path
/// (`/machine/peripheral/virtio-disk0/virtio-backend`).
fn qdev_is(qdev: &str, alias: &str) -> bool {
    qdev == alias || qdev.contains(&format!("/{alias}/")) || qdev.ends_with(&format!("/{alias}"))
}
