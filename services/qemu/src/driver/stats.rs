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

    /// libvirt's `state`, `cpu`, `balloon` and `vcpu` groups for each
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
            if let Some((qmp, pid, balloon)) = live {
                params.push(param("cpu.time", P::Uint(process::cpu_time_ns(pid))));
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
            out.push(pb::DomainStats {
                uuid: v.uuid.clone(),
                name: v.name.clone(),
                params,
            });
        }
        out
    }
}

/// Block I/O counters of one disk (virDomainBlockStats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockStats {
    pub rd_req: i64,
    pub rd_bytes: i64,
    pub wr_req: i64,
    pub wr_bytes: i64,
}

/// Interface counters from the guest's point of view
/// (virDomainInterfaceStats).
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
    /// The running guest's monitor and live definition.
    fn live_def(&self, dom: &Dom) -> Option<(Arc<Qmp>, DomainDef)> {
        let st = dom.lock();
        let l = st.live.as_ref().filter(|l| !l.starting)?;
        Some((l.qmp.clone(), l.def.clone()))
    }

    /// virDomainBlockStats: `path` names a disk by target (`vda`) or
    /// source; an empty path sums every disk, as libvirt does.
    pub async fn block_stats(&self, r: Option<&pb::ObjectRef>, path: &str) -> Result<BlockStats> {
        let dom = self.find(r)?;
        let (qmp, def) = self.live_def(&dom).ok_or_else(err::not_running)?;
        let disks: Vec<&virtmesh_conf::Element> = def
            .devices()
            .into_iter()
            .filter(|d| d.name == "disk")
            .collect();
        let wanted: Vec<String> = if path.is_empty() {
            disks
                .iter()
                .filter_map(|d| crate::def::alias_of(d))
                .collect()
        } else {
            let disk = disks.iter().find(|d| disk_named(d, path)).ok_or_else(|| {
                err::qemu(
                    ErrorCode::InvalidArg,
                    format!("invalid argument: invalid path: {path}"),
                )
            })?;
            crate::def::alias_of(disk).into_iter().collect()
        };
        let all = qmp
            .execute_raw("query-blockstats", Value::Null)
            .await
            .map_err(err::qmp)?;
        let mut total = BlockStats::default();
        for entry in all.as_array().map(Vec::as_slice).unwrap_or_default() {
            let qdev = entry
                .get("qdev")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !wanted.iter().any(|alias| qdev_is(qdev, alias)) {
                continue;
            }
            let s = entry.get("stats").cloned().unwrap_or(Value::Null);
            let n = |k: &str| s.get(k).and_then(Value::as_i64).unwrap_or(0);
            total.rd_req += n("rd_operations");
            total.rd_bytes += n("rd_bytes");
            total.wr_req += n("wr_operations");
            total.wr_bytes += n("wr_bytes");
        }
        Ok(total)
    }

    /// virDomainInterfaceStats: `device` is the host link (`vnet0`) or
    /// the guest MAC. Counters come from the host link's sysfs
    /// statistics; for a tap (bridge, network) the host's rx is the
    /// guest's tx, so they are swapped as libvirt swaps them, while a
    /// macvtap or ethernet link shares the guest's view.
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
        let iface = def
            .devices()
            .into_iter()
            .filter(|d| d.name == "interface")
            .find(|d| {
                let target = d.child("target").and_then(|t| t.attr("dev"));
                target == Some(device) || hostnet::mac_of(d).eq_ignore_ascii_case(device)
            })
            .ok_or_else(unknown)?;
        let link = iface
            .child("target")
            .and_then(|t| t.attr("dev"))
            .ok_or_else(unknown)?;
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
    }
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
