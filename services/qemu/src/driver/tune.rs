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

    /// virDomainSetVcpusFlags, for the persistent config (vCPU hot-plug on
    /// the live guest is not implemented yet).
    pub async fn set_vcpus(
        &self,
        r: Option<&pb::ObjectRef>,
        count: u32,
        impact: Option<&pb::Impact>,
        maximum: bool,
    ) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let mut st = dom.lock();
        let t = targets(impact, &st)?;
        if t.live {
            return Err(err::unimplemented("SetVcpus(live)"));
        }
        if count == 0 {
            return Err(err::qemu(
                ErrorCode::InvalidArg,
                "invalid argument: vcpus count must be at least 1",
            ));
        }
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
}
