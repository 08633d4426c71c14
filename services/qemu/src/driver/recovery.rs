//! Recovery after a service restart: reattach to guests a previous
//! instance started, and report those that exited meanwhile as shut off.

use super::*;

impl QemuDriver {
    /// Reattach to a guest a previous instance started.
    pub(super) async fn reconnect(&self, status: LiveStatus) {
        let paths = RunPaths::new(&self.inner.cfg.run_dir, &status.uuid);
        let dom = match self.find_uuid(&status.uuid) {
            Some(d) => d,
            None => {
                if status.persistent {
                    tracing::warn!(
                        "guest {} was persistent but its config is gone; keeping it as transient",
                        status.name
                    );
                }
                self.insert(status.uuid.clone(), status.name.clone(), None)
            }
        };
        let def = match DomainDef::parse(&status.xml) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("live status of {}: {e}", status.name);
                return self.mark_gone(&dom, &paths, &status.links).await;
            }
        };
        let alive = process::is_our_qemu(status.pid, &status.monitor);
        let qmp = if alive {
            let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
            match Qmp::connect(&status.monitor, self.sink(&dom.uuid, generation)).await {
                Ok(q) => Some((Arc::new(q), generation)),
                Err(e) => {
                    // A guest we cannot drive is a guest nobody manages:
                    // like libvirt, stop it rather than leak it.
                    tracing::error!(
                        "guest {} (pid {}) is running but its monitor is unusable ({e}); stopping it",
                        status.name,
                        status.pid
                    );
                    let _ = process::signal(status.pid, Signal::SIGTERM);
                    if !process::wait_gone(status.pid, DESTROY_GRACE).await {
                        let _ = process::signal(status.pid, Signal::SIGKILL);
                        process::wait_gone(status.pid, KILL_WAIT).await;
                    }
                    None
                }
            }
        } else {
            tracing::info!("guest {} exited while the service was down", status.name);
            None
        };
        let Some((qmp, generation)) = qmp else {
            return self.mark_gone(&dom, &paths, &status.links).await;
        };
        let run = qmp.execute(qmp::QueryStatus {}).await;
        // The live XML saved at start already names the ptys.
        let ptys = qmp::serial_ptys(&qmp).await.unwrap_or_default();
        self.inner
            .next_id
            .fetch_max(status.id + 1, Ordering::Relaxed);
        {
            let mut st = dom.lock();
            st.live = Some(Live {
                id: status.id,
                pid: status.pid,
                def,
                qmp: qmp.clone(),
                paths,
                generation,
                starting: false,
                destroying: false,
                saving: false,
                got_shutdown: false,
                fake_reboot: false,
                rebooting: false,
                pause_reason: None,
                ptys,
                console: None,
                links: status.links.clone(),
            });
            match run {
                Ok(s) if s.running => {
                    st.state = DomainState::Running;
                    st.reason = RUNNING_UNKNOWN;
                }
                Ok(s) if s.status == "shutdown" => {
                    // Powered off while we were away; finish what on_poweroff
                    // (destroy) asks.
                    st.state = DomainState::Shutdown;
                    st.reason = SHUTDOWN_USER;
                    if let Some(l) = st.live.as_mut() {
                        l.got_shutdown = true;
                        let _ = process::signal(l.pid, Signal::SIGTERM);
                    }
                }
                Ok(_) => {
                    st.state = DomainState::Paused;
                    st.reason = PAUSED_USER;
                }
                Err(e) => {
                    tracing::warn!("guest {}: query-status failed: {e}", status.name);
                    st.state = DomainState::Running;
                    st.reason = RUNNING_UNKNOWN;
                }
            }
        }
        // The network service may have restarted too: tell it again which
        // ports this guest uses (a port it still has is left as it is).
        hostnet::reclaim(&self.inner.net, &status.links).await;
        tracing::info!("reconnected to guest {} (pid {})", status.name, status.pid);
    }

    /// A guest that is gone: shut off, its files removed, and a transient
    /// one forgotten.
    pub(super) async fn mark_gone(
        &self,
        dom: &Arc<Dom>,
        paths: &RunPaths,
        links: &[crate::hostnet::OwnedLink],
    ) {
        // The links this service created for the guest, and only those.
        crate::hostnet::release(&self.inner.net, links).await;
        paths.cleanup();
        let mut st = dom.lock();
        st.live = None;
        st.state = DomainState::Shutoff;
        st.reason = SHUTOFF_UNKNOWN;
        let name = st.name.clone();
        let transient = st.config.is_none();
        if transient {
            st.removed = true;
        }
        drop(st);
        self.inner
            .events
            .lifecycle(&dom.uuid, &name, Lifecycle::StoppedFailed);
        if transient {
            self.remove_from_list(dom);
        }
    }
}
