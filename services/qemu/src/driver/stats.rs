//! Statistics: memory stats of one guest and libvirt's typed per-domain
//! stats for all of them (virConnectGetAllDomainStats).

use super::*;
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
