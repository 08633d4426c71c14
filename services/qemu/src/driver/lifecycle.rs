//! Lifecycle operations on real QEMU: start (`-S`, QMP, live status,
//! `cont`), suspend, resume, shutdown, reboot, reset, destroy.

use super::*;

impl QemuDriver {
    /// virDomainCreate.
    pub async fn start(&self, r: Option<&pb::ObjectRef>, paused: bool) -> Result<DomView> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let def = {
            let st = dom.lock();
            if st.removed {
                return Err(err::no_domain_uuid(&dom.uuid));
            }
            if st.live.is_some() {
                return Err(err::invalid_op("domain is already running"));
            }
            st.config
                .clone()
                .ok_or_else(|| err::internal("domain has no definition"))?
        };
        // A managed save image is restored instead of booting, with the
        // hardware the guest had when it was saved.
        let img = self.save_image(&def.name());
        if img.exists() {
            let record = img.load()?;
            let saved_def =
                DomainDef::parse(&save::restorable_xml(&record.xml)?).map_err(err::conf)?;
            let view = self
                .start_with(
                    &dom,
                    saved_def,
                    paused,
                    Some((&img.incoming(), record.running)),
                )
                .await?;
            img.remove()?;
            return Ok(view);
        }
        self.start_locked(&dom, def, paused).await
    }

    /// virDomainCreateXML: a transient domain, started at once.
    pub async fn create_xml(&self, xml: &str, paused: bool) -> Result<DomView> {
        let def = self.parse_checked(xml).await?;
        let (uuid, name) = (def.uuid(), def.name());
        let dom = {
            let mut list = self.list_lock();
            if let Some(d) = list.iter().find(|d| {
                let st = d.lock();
                !st.removed && (st.name == name || d.uuid.eq_ignore_ascii_case(&uuid))
            }) {
                let st = d.lock();
                return Err(if st.live.is_some() {
                    err::invalid_op(&format!("domain '{name}' is already active"))
                } else {
                    err::qemu(
                        ErrorCode::OperationFailed,
                        format!(
                            "operation failed: domain '{}' already exists with uuid {}",
                            st.name, d.uuid
                        ),
                    )
                });
            }
            let dom = new_transient(&uuid, &name);
            list.push(dom.clone());
            dom
        };
        let _job = dom.job.lock().await;
        let result = self.start_locked(&dom, def, paused).await;
        if result.is_err() {
            dom.lock().removed = true;
            self.remove_from_list(&dom);
        }
        result
    }

    /// Spawn QEMU (`-S`), connect QMP, record live status, `cont`.
    pub(super) async fn start_locked(
        &self,
        dom: &Arc<Dom>,
        def: DomainDef,
        paused: bool,
    ) -> Result<DomView> {
        self.start_with(dom, def, paused, None).await
    }

    /// Start, or with `restore` (a managed save image and whether the
    /// guest was running) load the saved state before the guest runs.
    pub(super) async fn start_with(
        &self,
        dom: &Arc<Dom>,
        def: DomainDef,
        paused: bool,
        restore: Option<(&save::Incoming, bool)>,
    ) -> Result<DomView> {
        let mut def = def;
        crate::graphics::assign_ports(&mut def);
        // Phase 1 runs diskless guests: refuse what the command line
        // cannot express rather than silently drop it.
        if let Some(dev) = def
            .devices()
            .into_iter()
            .find(|d| !crate::devices::supported(d))
        {
            return Err(err::qemu(
                ErrorCode::ConfigUnsupported,
                format!(
                    "unsupported configuration: device <{}> is not supported by the qemu driver yet",
                    dev.name
                ),
            ));
        }
        // The guest's UEFI variable store, from its template the first
        // time (before anything else is made: nothing to undo).
        crate::firmware::prepare_nvram(&def)
            .map_err(|m| err::qemu(ErrorCode::OperationFailed, format!("operation failed: {m}")))?;
        let paths = RunPaths::new(&self.inner.cfg.run_dir, &dom.uuid);
        let ifaces: Vec<&virtmesh_conf::Element> = def
            .devices()
            .into_iter()
            .filter(|d| d.name == "interface")
            .collect();
        // Host links first; on error `prepare` has removed what it made
        // and left alone what was there (the macvtap rule).
        let owner_name = dom.lock().name.clone();
        let owner = hostnet::Owner {
            uuid: &dom.uuid,
            name: &owner_name,
            run_dir: &self.inner.cfg.run_dir,
        };
        let net = hostnet::prepare(&self.inner.net, &ifaces, owner)
            .await
            .map_err(VirtError::from)?;
        let created = net.created.clone();
        // Record the links before anything else can fail or the service
        // can die: a restarted service finds this status (pid 0: no
        // guest) and releases exactly these links.
        if !created.is_empty() {
            let (name, persistent) = {
                let st = dom.lock();
                (st.name.clone(), st.config.is_some())
            };
            let pre = LiveStatus {
                uuid: dom.uuid.clone(),
                name,
                id: 0,
                pid: 0,
                monitor: paths.monitor.clone(),
                persistent,
                xml: def.to_xml(None),
                links: created.clone(),
            };
            if let Err(e) = state::save_status(&paths.status, &pre) {
                hostnet::release(&self.inner.net, &created).await;
                return Err(err::state(e));
            }
        }
        // Descriptors to pass, and which interface each belongs to.
        let (fd_of, files): (Vec<Option<usize>>, Vec<std::fs::File>) = {
            let mut fd_of = Vec::new();
            let mut files = Vec::new();
            for b in net.backends.iter() {
                match b {
                    hostnet::Backend::Fd(f) => match f.try_clone() {
                        Ok(f) => {
                            fd_of.push(Some(files.len()));
                            files.push(f);
                        }
                        Err(e) => {
                            hostnet::release(&self.inner.net, &created).await;
                            paths.cleanup();
                            return Err(err::qemu(
                                ErrorCode::SystemError,
                                format!("cannot duplicate the macvtap descriptor: {e}"),
                            ));
                        }
                    },
                    _ => fd_of.push(None),
                }
            }
            (fd_of, files)
        };
        let build = |nums: &[i32]| {
            let netdevs = net
                .backends
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let fd = fd_of
                        .get(i)
                        .copied()
                        .flatten()
                        .and_then(|k| nums.get(k).copied());
                    crate::blockdev::netdev_json(i, b, fd)
                })
                .collect();
            let mut args = argv::build(
                &def,
                &ArgvOptions {
                    monitor: paths.monitor.clone(),
                    master_key: None,
                    pidfile: Some(paths.pidfile.clone()),
                    netdevs: Some(netdevs),
                },
            );
            if restore.is_some() {
                // The state comes with `migrate-incoming` once QMP is up.
                args.extend(["-incoming".to_owned(), "defer".to_owned()]);
            }
            args
        };
        let emulator = self.emulator_path(&def.emulator());
        let log_start = std::fs::metadata(&paths.log).map(|m| m.len()).unwrap_or(0);
        let spawned =
            match process::spawn_with_fds(&emulator, &build, &files, &paths.log, &paths.monitor)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    hostnet::release(&self.inner.net, &created).await;
                    paths.cleanup();
                    return Err(err::process(e));
                }
            };
        // QEMU holds its own copies now.
        drop(files);
        drop(net.backends);
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
        let sink = self.sink(&dom.uuid, generation);
        // Undo a start that failed after the spawn: kill QEMU, remove its
        // files, and add what it wrote to stderr to the error.
        let fail = |e: VirtError, pid: i32| {
            let paths = paths.clone();
            let created = created.clone();
            async move {
                let _ = process::signal(pid, Signal::SIGKILL);
                process::wait_gone(pid, KILL_WAIT).await;
                hostnet::release(&self.inner.net, &created).await;
                paths.cleanup();
                let log = process::read_log_from(&paths.log, log_start);
                if log.is_empty() || e.message.contains(&log) {
                    e
                } else {
                    VirtError::new(e.code, e.domain, format!("{}: {log}", e.message))
                }
            }
        };
        let qmp = match Qmp::from_stream(spawned.monitor, sink).await {
            Ok(q) => Arc::new(q),
            Err(e) => return Err(fail(err::qmp(e), spawned.pid).await),
        };
        if let Err(e) = qmp.execute(qmp::QmpCapabilities {}).await {
            return Err(fail(err::qmp(e), spawned.pid).await);
        }
        if let Some((incoming, _)) = restore
            && let Err(e) = Self::restore_image(&qmp, incoming).await
        {
            return Err(fail(e, spawned.pid).await);
        }
        if let Err(e) = crate::graphics::set_passwords(&qmp, &def).await {
            return Err(fail(err::qmp(e), spawned.pid).await);
        }
        // A restored guest runs again only if it was running when saved.
        let paused = paused || restore.is_some_and(|(_, running)| !running);
        let ptys = match qmp::serial_ptys(&qmp).await {
            Ok(p) => p,
            Err(e) => return Err(fail(err::qmp(e), spawned.pid).await),
        };
        let mut live_def = def.clone();
        live_def.set_interface_targets(&net.targets);
        hostnet::show_ports(&mut live_def, &net.ports);
        live_def.set_aliases();
        for (alias, path) in &ptys {
            live_def.set_serial_pty(alias, &path.display().to_string());
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let live = Live {
            id,
            pid: spawned.pid,
            def: live_def,
            qmp: qmp.clone(),
            paths: paths.clone(),
            generation,
            starting: true,
            destroying: false,
            saving: false,
            got_shutdown: false,
            fake_reboot: false,
            rebooting: false,
            pause_reason: None,
            ptys,
            console: None,
            links: created.clone(),
        };
        let saved = {
            let mut st = dom.lock();
            let persistent = st.config.is_some();
            let saved = self.save_status(&dom.uuid, &st.name, &live, persistent);
            if saved.is_ok() {
                st.live = Some(live);
                st.state = DomainState::Paused;
                st.reason = PAUSED_STARTING_UP;
            }
            saved
        };
        if let Err(e) = saved {
            return Err(fail(e, spawned.pid).await);
        }
        if !paused && let Err(e) = qmp.execute(qmp::Cont {}).await {
            let e = err::qmp(e);
            self.abort_start(dom, generation);
            return Err(fail(e, spawned.pid).await);
        }
        let mut guard = dom.lock();
        let st: &mut DomState = &mut guard;
        let Some(live) = st.live.as_mut().filter(|l| l.generation == generation) else {
            // QEMU died between `cont` and here; the EOF handler has
            // already recorded it.
            return Err(err::qemu(
                ErrorCode::OperationFailed,
                format!(
                    "operation failed: guest exited during start-up: {}",
                    process::read_log_from(&paths.log, log_start)
                ),
            ));
        };
        live.starting = false;
        let name = st.name.clone();
        let started = if restore.is_some() {
            Lifecycle::StartedRestored
        } else {
            Lifecycle::StartedBooted
        };
        self.inner.events.lifecycle(&dom.uuid, &name, started);
        if paused {
            st.state = DomainState::Paused;
            st.reason = PAUSED_USER;
            self.inner
                .events
                .lifecycle(&dom.uuid, &name, Lifecycle::SuspendedPaused);
        } else {
            st.state = DomainState::Running;
            st.reason = if restore.is_some() {
                RUNNING_RESTORED
            } else {
                RUNNING_BOOTED
            };
        }
        view(&dom.uuid, st).ok_or_else(|| err::internal("domain has no definition"))
    }

    /// Forget a start that failed after the live state was recorded.
    pub(super) fn abort_start(&self, dom: &Arc<Dom>, generation: u64) {
        let mut st = dom.lock();
        if st.live.as_ref().is_some_and(|l| l.generation == generation) {
            st.live = None;
            st.state = DomainState::Shutoff;
            st.reason = SHUTOFF_FAILED;
        }
    }

    /// The running guest's monitor, or "domain is not running".
    pub(super) fn active(&self, dom: &Dom) -> Result<Arc<Qmp>> {
        let st = dom.lock();
        match &st.live {
            Some(l) if !l.starting => Ok(l.qmp.clone()),
            _ => Err(err::not_running()),
        }
    }

    pub async fn suspend(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let qmp = {
            let mut guard = dom.lock();
            let st: &mut DomState = &mut guard;
            match st.live.as_mut() {
                Some(l) if !l.starting => {
                    if st.state == DomainState::Paused {
                        return Ok(());
                    }
                    l.pause_reason = Some(PAUSED_USER);
                    l.qmp.clone()
                }
                _ => return Err(err::not_running()),
            }
        };
        qmp.execute(qmp::Stop {}).await.map_err(err::qmp)?;
        // QEMU sends STOP before the reply, so the event handler has run;
        // this only covers a QEMU that did not send it.
        let mut st = dom.lock();
        if st.live.is_some() && st.state == DomainState::Running {
            st.state = DomainState::Paused;
            st.reason = PAUSED_USER;
            let name = st.name.clone();
            self.inner
                .events
                .lifecycle(&dom.uuid, &name, Lifecycle::SuspendedPaused);
        }
        Ok(())
    }

    pub async fn resume(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let qmp = self.active(&dom)?;
        if dom.lock().state != DomainState::Paused {
            return Ok(());
        }
        qmp.execute(qmp::Cont {}).await.map_err(err::qmp)?;
        let mut st = dom.lock();
        if st.live.is_some() && st.state == DomainState::Paused {
            st.state = DomainState::Running;
            st.reason = RUNNING_UNPAUSED;
            let name = st.name.clone();
            self.inner
                .events
                .lifecycle(&dom.uuid, &name, Lifecycle::ResumedUnpaused);
        }
        Ok(())
    }

    /// ACPI power button; the guest decides.
    pub async fn shutdown(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let qmp = self.active(&dom)?;
        qmp.execute(qmp::SystemPowerdown {})
            .await
            .map_err(err::qmp)?;
        Ok(())
    }

    /// libvirt's fake reboot: power button, and on the guest's SHUTDOWN a
    /// reset and `cont` instead of stopping.
    pub async fn reboot(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let qmp = {
            let mut st = dom.lock();
            match st.live.as_mut() {
                Some(l) if !l.starting => {
                    l.fake_reboot = true;
                    l.qmp.clone()
                }
                _ => return Err(err::not_running()),
            }
        };
        qmp.execute(qmp::SystemPowerdown {})
            .await
            .map_err(err::qmp)?;
        Ok(())
    }

    pub async fn reset(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let qmp = self.active(&dom)?;
        qmp.execute(qmp::SystemReset {}).await.map_err(err::qmp)?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL after a grace period (never with
    /// `graceful`); returns once QEMU is gone and the state recorded.
    pub async fn destroy(&self, r: Option<&pb::ObjectRef>, graceful: bool) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let (qmp, pid, links) = {
            let mut st = dom.lock();
            match st.live.as_mut() {
                Some(l) => {
                    l.destroying = true;
                    (l.qmp.clone(), l.pid, l.links.clone())
                }
                None => return Err(err::not_running()),
            }
        };
        process::signal(pid, Signal::SIGTERM).map_err(err::process)?;
        let exited = tokio::time::timeout(DESTROY_GRACE, qmp.closed())
            .await
            .is_ok();
        if !exited {
            if graceful {
                if let Some(l) = dom.lock().live.as_mut() {
                    l.destroying = false;
                }
                return Err(err::qemu(
                    ErrorCode::SystemError,
                    format!(
                        "Failed to terminate process {pid} with SIGTERM: Device or resource busy"
                    ),
                ));
            }
            process::signal(pid, Signal::SIGKILL).map_err(err::process)?;
            if tokio::time::timeout(KILL_WAIT, qmp.closed()).await.is_err() {
                return Err(err::qemu(
                    ErrorCode::SystemError,
                    format!("Failed to kill process {pid}: Device or resource busy"),
                ));
            }
        }
        // The monitor closes as QEMU exits; wait until the process itself
        // is gone too, so its memory and devices are released on return.
        process::wait_gone(pid, KILL_WAIT).await;
        // The EOF handler releases them too; waiting here means the links
        // are gone when destroy returns.
        hostnet::release(&self.inner.net, &links).await;
        Ok(())
    }
}

/// A transient domain not started yet (the caller adds it to the list
/// under the same lock as its uniqueness check).
pub(super) fn new_transient(uuid: &str, name: &str) -> Arc<Dom> {
    Arc::new(Dom {
        uuid: uuid.to_owned(),
        job: tokio::sync::Mutex::new(()),
        st: Mutex::new(DomState {
            name: name.to_owned(),
            config: None,
            live: None,
            state: DomainState::Shutoff,
            reason: SHUTOFF_UNKNOWN,
            removed: false,
            autostart: false,
        }),
    })
}
