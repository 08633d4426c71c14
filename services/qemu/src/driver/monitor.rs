//! State follows QMP: the reader task of each guest's monitor calls in
//! here, in QEMU's order, and every change becomes a lifecycle event.

use super::*;

impl QemuDriver {
    /// The callback the QMP reader of one connection calls.
    pub(super) fn sink(&self, uuid: &str, generation: u64) -> qmp::EventSink {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let uuid = uuid.to_owned();
        Box::new(move |msg| {
            if let Some(inner) = weak.upgrade() {
                QemuDriver { inner }.on_monitor(&uuid, generation, msg);
            }
        })
    }

    /// State follows QMP: every change becomes a lifecycle event.
    pub(super) fn on_monitor(&self, uuid: &str, generation: u64, msg: MonitorMsg) {
        let Some(dom) = self.find_uuid(uuid) else {
            return;
        };
        let mut guard = dom.lock();
        // A plain reference, so `live` and the other fields borrow apart.
        let st: &mut DomState = &mut guard;
        let name = st.name.clone();
        let Some(live) = st.live.as_mut().filter(|l| l.generation == generation) else {
            return;
        };
        let events = &self.inner.events;
        match msg {
            MonitorMsg::Event(ev) => match ev.kind() {
                EventKind::Stop => {
                    // Our own pauses: start-up, and the stop QEMU makes
                    // after a poweroff we turn into a fake reboot.
                    if live.starting || live.rebooting {
                        return;
                    }
                    let reason = live.pause_reason.take().unwrap_or(PAUSED_UNKNOWN);
                    if st.state == DomainState::Running {
                        st.state = DomainState::Paused;
                        st.reason = reason;
                        events.lifecycle(uuid, &name, Lifecycle::SuspendedPaused);
                    }
                }
                EventKind::Resume => {
                    if live.rebooting {
                        // The `cont` after the reset: the reboot is done.
                        live.rebooting = false;
                        return;
                    }
                    if live.starting {
                        return;
                    }
                    if st.state == DomainState::Paused {
                        st.state = DomainState::Running;
                        st.reason = RUNNING_UNPAUSED;
                        events.lifecycle(uuid, &name, Lifecycle::ResumedUnpaused);
                    }
                }
                EventKind::Shutdown { guest, reason } => {
                    // During destroy the SIGTERM's SHUTDOWN is ours; after
                    // a guest poweroff, the one our SIGTERM causes repeats
                    // what was already reported.
                    if live.destroying || live.got_shutdown {
                        return;
                    }
                    if guest && live.fake_reboot {
                        // libvirt's fake reboot: the guest powered off at our
                        // request; reset and continue instead of stopping.
                        live.fake_reboot = false;
                        live.rebooting = true;
                        let qmp = live.qmp.clone();
                        tokio::spawn(async move {
                            if let Err(e) = qmp.execute(qmp::SystemReset {}).await {
                                tracing::warn!("fake reboot: system_reset failed: {e}");
                            } else if let Err(e) = qmp.execute(qmp::Cont {}).await {
                                tracing::warn!("fake reboot: cont failed: {e}");
                            }
                        });
                        return;
                    }
                    live.got_shutdown = true;
                    let pid = live.pid;
                    st.state = DomainState::Shutdown;
                    st.reason = SHUTDOWN_USER;
                    let ev = if guest {
                        Lifecycle::ShutdownGuest
                    } else {
                        Lifecycle::ShutdownHost
                    };
                    events.lifecycle(uuid, &name, ev);
                    // With -no-shutdown a guest poweroff leaves QEMU paused;
                    // on_poweroff=destroy (the default) ends it. A host-side
                    // cause (signal, quit) is ending it already.
                    if guest && reason == "guest-shutdown" {
                        let _ = process::signal(pid, Signal::SIGTERM);
                    }
                }
                EventKind::Reset { .. } => events.reboot(uuid, &name),
                EventKind::GuestPanicked => {
                    st.state = DomainState::Crashed;
                    st.reason = CRASHED_PANICKED;
                    events.lifecycle(uuid, &name, Lifecycle::CrashedPanicked);
                }
                EventKind::Powerdown | EventKind::Other => {}
            },
            MonitorMsg::Eof => {
                let (ev, reason) = if live.saving {
                    (Some(Lifecycle::StoppedSaved), SHUTOFF_SAVED)
                } else if live.destroying {
                    (Some(Lifecycle::StoppedDestroyed), SHUTOFF_DESTROYED)
                } else if live.starting {
                    // A failed start is reported to the caller, not as an event.
                    (None, SHUTOFF_FAILED)
                } else if live.got_shutdown {
                    (Some(Lifecycle::StoppedShutdown), SHUTOFF_SHUTDOWN)
                } else {
                    // Gone without a SHUTDOWN event: QEMU crashed or was
                    // killed behind our back (libvirt's "failed").
                    (Some(Lifecycle::StoppedFailed), SHUTOFF_SHUTDOWN)
                };
                live.paths.cleanup();
                let links = std::mem::take(&mut live.links);
                if !links.is_empty() {
                    // Destroy and a failed start release them too and wait
                    // for it; this covers a guest that stopped by itself.
                    let net = self.inner.net.clone();
                    tokio::spawn(async move { crate::hostnet::release(&net, &links).await });
                }
                st.live = None;
                st.state = DomainState::Shutoff;
                st.reason = reason;
                if let Some(ev) = ev {
                    events.lifecycle(uuid, &name, ev);
                }
                if st.config.is_none() {
                    st.removed = true;
                    drop(guard);
                    self.remove_from_list(&dom);
                }
            }
        }
    }
}
