//! Changing memory and vCPUs (virDomainSetMemoryFlags,
//! virDomainSetVcpusFlags) on the live guest and/or the persistent config.

use super::*;

/// Which definitions a change applies to, resolved as libvirt's
/// virDomainObjUpdateModificationImpact does.
pub(super) struct Targets {
    pub(super) live: bool,
    pub(super) config: bool,
}

pub(super) fn targets(impact: Option<&pb::Impact>, st: &DomState) -> Result<Targets> {
    let i = impact.copied().unwrap_or_default();
    let active = st.live.as_ref().is_some_and(|l| !l.starting);
    let (live, config) = if !i.live && !i.config {
        (active, !active)
    } else {
        (i.live, i.config)
    };
    if live && !active {
        return Err(err::not_running());
    }
    if config && st.config.is_none() {
        return Err(err::invalid_op(
            "cannot change persistent config of a transient domain",
        ));
    }
    Ok(Targets { live, config })
}

impl QemuDriver {
    pub(super) fn save_config(&self, st: &mut DomState, def: DomainDef) -> Result<()> {
        self.inner.store.save(&def).map_err(err::state)?;
        st.config = Some(def);
        Ok(())
    }

    /// virDomainSetMemoryFlags: the balloon on the live guest, the
    /// current (or with `maximum`, the maximum) size in the config.
    pub async fn set_memory(
        &self,
        r: Option<&pb::ObjectRef>,
        kib: u64,
        impact: Option<&pb::Impact>,
        maximum: bool,
    ) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let (t, qmp) = {
            let st = dom.lock();
            let t = targets(impact, &st)?;
            if maximum && t.live {
                return Err(err::invalid_op(
                    "cannot resize the maximum memory on an active domain",
                ));
            }
            let check = |def: &DomainDef| {
                if !maximum && kib > def.max_memory_kib() {
                    Err(err::qemu(
                        ErrorCode::InvalidArg,
                        "invalid argument: cannot set memory higher than max memory",
                    ))
                } else {
                    Ok(())
                }
            };
            let mut qmp = None;
            if let Some(l) = st.live.as_ref().filter(|_| t.live) {
                check(&l.def)?;
                if !l.def.has_balloon() {
                    return Err(err::invalid_op(
                        "Unable to change memory of active domain without the balloon device and guest OS balloon driver",
                    ));
                }
                qmp = Some(l.qmp.clone());
            }
            if let Some(c) = st.config.as_ref().filter(|_| t.config) {
                check(c)?;
            }
            (t, qmp)
        };
        if let Some(qmp) = qmp {
            qmp.execute(qmp::Balloon {
                value: kib.saturating_mul(1024),
            })
            .await
            .map_err(err::qmp)?;
            if let Some(l) = dom.lock().live.as_mut() {
                l.def.set_current_memory_kib(kib);
            }
        }
        if t.config {
            let mut st = dom.lock();
            if let Some(mut def) = st.config.clone() {
                if maximum {
                    def.set_max_memory_kib(kib);
                } else {
                    def.set_current_memory_kib(kib);
                }
                self.save_config(&mut st, def)?;
            }
        }
        Ok(())
    }

    /// virDomainSetVcpusFlags: vCPU hot-plug on the live guest (up to the
    /// maximum; down to the count it booted with), and the persistent
    /// config's current or maximum count.
    pub async fn set_vcpus(
        &self,
        r: Option<&pb::ObjectRef>,
        count: u32,
        impact: Option<&pb::Impact>,
        maximum: bool,
    ) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        if count == 0 {
            return Err(err::qemu(
                ErrorCode::InvalidArg,
                "invalid argument: vcpus count must be at least 1",
            ));
        }
        let t = targets(impact, &dom.lock())?;
        if t.live {
            if maximum {
                return Err(err::qemu(
                    ErrorCode::InvalidArg,
                    "invalid argument: maximum vcpu count of a live domain can't be modified",
                ));
            }
            self.set_live_vcpus(&dom, count).await?;
        }
        if !t.config {
            return Ok(());
        }
        let mut st = dom.lock();
        let Some(mut def) = st.config.clone() else {
            return Err(err::internal("domain has no definition"));
        };
        if maximum {
            def.set_max_vcpus(count);
        } else {
            if count > def.max_vcpus() {
                return Err(err::qemu(
                    ErrorCode::InvalidArg,
                    format!(
                        "invalid argument: requested vcpus is greater than max allowable vcpus for the persistent domain: {count} > {}",
                        def.max_vcpus()
                    ),
                ));
            }
            def.set_vcpus(count);
        }
        self.save_config(&mut st, def)
    }

    /// qemuDomainSetVcpusLive with modern hot-plug: `device_add` of the
    /// CPU slots `query-hotpluggable-cpus` lists as free, `device_del` of
    /// the ones we plugged (newest first), each waiting for the guest.
    async fn set_live_vcpus(&self, dom: &Arc<Dom>, count: u32) -> Result<()> {
        let (qmp, def) = self.live_def(dom).ok_or_else(err::not_running)?;
        let max = def.max_vcpus();
        if count > max {
            return Err(err::qemu(
                ErrorCode::InvalidArg,
                format!(
                    "invalid argument: requested vcpus is greater than max allowable vcpus for the live domain: {count} > {max}"
                ),
            ));
        }
        let slots = qmp
            .execute_raw("query-hotpluggable-cpus", serde_json::Value::Null)
            .await
            .map_err(err::qmp)?;
        let slots = slots.as_array().cloned().unwrap_or_default();
        let present = slots.iter().filter(|s| s.get("qom-path").is_some()).count();
        let present = u32::try_from(present).unwrap_or(u32::MAX);
        if count > present {
            // Free slots, lowest socket/core/thread first.
            let mut free: Vec<&serde_json::Value> = slots
                .iter()
                .filter(|s| s.get("qom-path").is_none())
                .collect();
            let key = |s: &serde_json::Value| {
                ["socket-id", "die-id", "core-id", "thread-id"].map(|k| {
                    s["props"]
                        .get(k)
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0)
                })
            };
            free.sort_by_key(|s| key(s));
            for (i, slot) in (present..count).zip(free) {
                let mut args = slot["props"].clone();
                if let Some(o) = args.as_object_mut() {
                    o.insert("driver".into(), slot["type"].clone());
                    o.insert("id".into(), format!("vcpu{i}").into());
                    o.remove("node-id");
                }
                qmp.execute_raw("device_add", args)
                    .await
                    .map_err(err::qmp)?;
                self.record_live_vcpus(dom, i + 1);
            }
        } else {
            for i in (count..present).rev() {
                let id = format!("vcpu{i}");
                let plugged = slots.iter().any(|s| {
                    s.get("qom-path").and_then(serde_json::Value::as_str)
                        == Some(format!("/machine/peripheral/{id}").as_str())
                });
                if !plugged {
                    return Err(err::qemu(
                        ErrorCode::OperationUnsupported,
                        format!(
                            "Operation not supported: vCPU '{i}' was present at start and can't be unplugged"
                        ),
                    ));
                }
                let mut events = qmp.subscribe();
                qmp.execute_raw("device_del", serde_json::json!({ "id": id }))
                    .await
                    .map_err(err::qmp)?;
                let deleted = tokio::time::timeout(
                    Duration::from_secs(5),
                    super::hotplug::wait_deleted(&mut events, &id),
                )
                .await
                .unwrap_or(false);
                if !deleted {
                    return Err(err::qemu(
                        ErrorCode::OperationFailed,
                        "operation failed: vcpu unplug request timed out. Unplug result must be manually inspected in the domain",
                    ));
                }
                self.record_live_vcpus(dom, i);
            }
        }
        Ok(())
    }

    /// The live definition's current vCPU count, saved with the status.
    fn record_live_vcpus(&self, dom: &Arc<Dom>, count: u32) {
        self.update_live(dom, |l| l.def.set_vcpus(count));
    }
}
