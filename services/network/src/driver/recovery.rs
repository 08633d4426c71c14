//! After a restart: find the networks a previous instance left running,
//! without disturbing them, then start the autostart ones.

use super::*;

impl NetworkDriver {
    /// Find the networks a previous instance left running. A network whose
    /// bridge is still there is active again, untouched; one whose bridge
    /// vanished is cleaned up (its other remains removed) and inactive.
    pub(super) async fn recover(&self) {
        for (path, st) in self.inner.store.load_statuses() {
            let st = match st {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("ignoring live status {}: {e}", path.display());
                    continue;
                }
            };
            let def = match NetDef::parse(&st.xml) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!("live status of {}: {e}", st.name);
                    continue;
                }
            };
            let bridge_ok = match &st.bridge {
                Some((name, index)) => {
                    matches!(self.inner.netlink.link_index(name).await, Ok(Some(i)) if i == *index)
                }
                None => true,
            };
            if !bridge_ok {
                tracing::info!(
                    "network {}: bridge gone while the service was down",
                    st.name
                );
                // Remove whatever else of it remains (dnsmasq, tables); a
                // persistent network is simply inactive now, a transient
                // one is gone.
                self.undo(&st).await;
                self.remove_all_ports(&st.name);
                let _ = status::remove_file(&path);
                continue;
            }
            let mut st = st;
            let paths = self.paths(&st.name);
            let dnsmasq_ok = st
                .dnsmasq_pid
                .is_some_and(|p| dnsmasq::is_ours(p, &paths.conf));
            if def.needs_dnsmasq() && !dnsmasq_ok {
                // The bridge is there but dnsmasq died: serve again.
                match dnsmasq::start(&paths).await {
                    Ok(pid) => st.dnsmasq_pid = Some(pid),
                    Err(e) => tracing::error!("network {}: cannot restart dnsmasq: {e}", st.name),
                }
                let _ = self.save_live(&st);
            }
            let live = Live {
                def: def.clone(),
                status: st.clone(),
                // Guests keep their ports across our restart.
                ports: self.load_ports(&st.name),
            };
            let found = self.with_net(&st.uuid, |n| n.live = Some(live.clone()));
            if found.is_none() {
                self.nets().push(Net {
                    uuid: st.uuid.clone(),
                    name: st.name.clone(),
                    config: None,
                    live: Some(live),
                    autostart: false,
                });
            }
            tracing::info!("network {}: recovered", st.name);
        }
    }

    pub(super) async fn autostart(&self) {
        let _job = self.inner.job.lock().await;
        let todo: Vec<Net> = self
            .nets()
            .iter()
            .filter(|n| n.autostart && n.live.is_none() && n.config.is_some())
            .cloned()
            .collect();
        for net in todo {
            if let Err(e) = self.start_net(&net).await {
                tracing::error!("autostart of network {} failed: {e}", net.name);
            }
        }
    }
}
