//! Bringing networks up and down: every thing a start creates is
//! recorded in the live status before the next step, and exactly the
//! recorded things are undone on failure and on destroy.

use super::*;

impl NetworkDriver {
    pub async fn create_xml(&self, xml: &str) -> Result<pb::NetworkSummary> {
        let _job = self.inner.job.lock().await;
        let def = self.prepare(xml, true).await?;
        let (uuid, name) = (def.uuid.clone(), def.name.clone());
        let existed = self.with_net(&uuid, |_| ()).is_some();
        if !existed {
            self.nets().push(Net {
                uuid: uuid.clone(),
                name: name.clone(),
                config: None,
                live: None,
                autostart: false,
            });
        }
        let persistent = self
            .with_net(&uuid, |n| n.config.is_some())
            .unwrap_or(false);
        match self.start_def(def, persistent).await {
            Ok(live) => {
                self.with_net(&uuid, |n| n.live = Some(live));
            }
            Err(e) => {
                if !existed {
                    self.remove_net(&uuid);
                }
                return Err(e);
            }
        }
        self.inner
            .events
            .lifecycle(&uuid, &name, Ev::NetworkEventStarted);
        self.lookup_uuid(&uuid)
    }

    pub async fn create(&self, r: Option<&pb::ObjectRef>) -> Result<pb::NetworkSummary> {
        let _job = self.inner.job.lock().await;
        let net = self.find(r)?;
        self.start_net(&net).await?;
        self.lookup_uuid(&net.uuid)
    }

    /// Start a persistent, inactive network (job lock held).
    pub(super) async fn start_net(&self, net: &Net) -> Result<()> {
        if net.live.is_some() {
            return Err(err::already_active());
        }
        let def = net
            .config
            .clone()
            .ok_or_else(|| err::internal("network has no config"))?;
        let live = self.start_def(def, true).await?;
        self.with_net(&net.uuid, |n| n.live = Some(live));
        self.inner
            .events
            .lifecycle(&net.uuid, &net.name, Ev::NetworkEventStarted);
        Ok(())
    }

    pub async fn destroy(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let _job = self.inner.job.lock().await;
        let net = self.find(r)?;
        let Some(live) = net.live.clone() else {
            return Err(err::not_active());
        };
        self.undo(&live.status).await;
        self.remove_all_ports(&net.name);
        status::remove_file(&self.inner.store.status(&net.name)).map_err(state_err)?;
        if net.config.is_some() {
            self.with_net(&net.uuid, |n| n.live = None);
        } else {
            self.remove_net(&net.uuid);
        }
        self.inner
            .events
            .lifecycle(&net.uuid, &net.name, Ev::NetworkEventStopped);
        Ok(())
    }

    /// Write the dnsmasq files of a definition.
    pub(super) fn write_dnsmasq_files(&self, def: &NetDef, paths: &DnsmasqPaths) -> Result<()> {
        let write = |p: &std::path::Path, text: String| {
            virtmesh_util::fs::write_atomic(p, text.as_bytes()).map_err(err::system)
        };
        write(&paths.hostsfile, dnsmasq::hostsfile(def))?;
        // Both files exist even when empty (or unused, with DNS off), as
        // libvirt writes them, so runtime additions have a place to go.
        write(&paths.addnhosts, dnsmasq::addnhosts(def))?;
        write(&paths.conf, dnsmasq::conf(def, paths))
    }

    pub(super) fn save_live(&self, st: &LiveStatus) -> Result<()> {
        status::save_status(&self.inner.store.status(&st.name), st).map_err(state_err)
    }

    /// Bring a definition up on the host. Each thing created is recorded
    /// in the live status (saved at once, so even a crash midway leaves a
    /// record); on failure, exactly the recorded things are undone.
    async fn start_def(&self, def: NetDef, persistent: bool) -> Result<Live> {
        let mut st = LiveStatus {
            uuid: def.uuid.clone(),
            name: def.name.clone(),
            persistent,
            xml: def.to_xml(),
            ..LiveStatus::default()
        };
        match self.plumb(&def, &mut st).await {
            Ok(()) => {
                self.save_live(&st)?;
                Ok(Live {
                    def,
                    status: st,
                    ports: Vec::new(),
                })
            }
            Err(e) => {
                tracing::warn!("network {}: start failed: {e}; undoing", def.name);
                self.undo(&st).await;
                let _ = status::remove_file(&self.inner.store.status(&def.name));
                Err(e)
            }
        }
    }

    async fn plumb(&self, def: &NetDef, st: &mut LiveStatus) -> Result<()> {
        if def.macvtap_mode().is_some() {
            // networkStartNetworkExternal: nothing is created; a `<pf>`
            // without `<interface>`s is expanded to its virtual functions.
            st.pool = match (&def.pf, def.pool.is_empty()) {
                (Some(pf), true) => virtual_functions(pf)?,
                _ => def.pool.clone(),
            };
            return Ok(());
        }
        match &def.mode {
            ForwardMode::Bridge => {
                // An existing host bridge: nothing to create, but it must
                // exist for guests to use it.
                if let Some(b) = &def.bridge
                    && self
                        .inner
                        .netlink
                        .link_index(b)
                        .await
                        .map_err(err::system)?
                        .is_none()
                {
                    return Err(err::system(format!(
                        "Cannot get interface flags on '{b}': No such device"
                    )));
                }
                // The host bridge is not ours, but the shaping we put on
                // it is: recorded first, so a stop takes it off again.
                if let (Some(b), Some(_)) = (&def.bridge, &def.bandwidth) {
                    st.shaped_host_bridge = Some(b.clone());
                    self.save_live(st)?;
                    self.shape_bridge(def, b).await?;
                }
                return Ok(());
            }
            ForwardMode::Other(mode) => {
                // macvtap/hostdev pools need no plumbing at start; their
                // interfaces are handed out per port (not implemented yet).
                tracing::info!(
                    "network {}: forward mode {mode}: nothing to plumb",
                    def.name
                );
                return Ok(());
            }
            _ => {}
        }
        let bridge = def
            .bridge
            .clone()
            .ok_or_else(|| err::internal(format!("network '{}' has no bridge name", def.name)))?;
        let nl = &self.inner.netlink;
        let index = nl
            .create_bridge(&bridge, def.stp, def.delay, def.mtu, def.mac.as_deref())
            .await
            .map_err(|e| err::system(format!("Unable to create bridge {bridge}: {e}")))?;
        st.bridge = Some((bridge.clone(), index));
        self.save_live(st)?;
        for ip in &def.ips {
            nl.add_address(index, ip.address, ip.prefix)
                .await
                .map_err(|e| {
                    err::system(format!(
                        "Failed to add IP address to bridge '{bridge}': {e}"
                    ))
                })?;
        }
        nl.set_up(index)
            .await
            .map_err(|e| err::system(format!("Failed to set bridge '{bridge}' up: {e}")))?;
        self.shape_bridge(def, &bridge).await?;
        for r in &def.routes {
            nl.add_route(r.address, r.prefix, r.gateway, r.metric)
                .await
                .map_err(err::system)?;
        }
        if matches!(def.mode, ForwardMode::Nat | ForwardMode::Route) {
            enable_forwarding(def)?;
        }
        for v6 in [false, true] {
            let Some((table, rules)) = firewall::ruleset(def, v6) else {
                continue;
            };
            if firewall::binary().is_none() {
                return Err(err::firewall(
                    "the nft binary is missing (install nftables)",
                ));
            }
            firewall::add(&table, &rules).await.map_err(err::firewall)?;
            st.tables.push(table);
            self.save_live(st)?;
        }
        if def.needs_dnsmasq() {
            if dnsmasq::binary().is_none() {
                return Err(err::system(
                    "Cannot find 'dnsmasq' binary (install dnsmasq-base)",
                ));
            }
            let paths = self.paths(&def.name);
            self.write_dnsmasq_files(def, &paths)?;
            let pid = dnsmasq::start(&paths).await.map_err(err::system)?;
            st.dnsmasq_pid = Some(pid);
            self.save_live(st)?;
        }
        Ok(())
    }

    /// Undo what a live status records, in reverse order of creation.
    /// Failures are logged: the rest is still undone.
    pub(super) async fn undo(&self, st: &LiveStatus) {
        let paths = self.paths(&st.name);
        if let Some(pid) = st.dnsmasq_pid {
            dnsmasq::stop(pid, &paths.conf).await;
            let _ = status::remove_file(&paths.pidfile);
        }
        for t in st.tables.iter().rev() {
            if let Err(e) = firewall::remove(t).await {
                tracing::error!("network {}: {e}", st.name);
            }
        }
        if let Some(b) = &st.shaped_host_bridge {
            virtmesh_util::bandwidth::clear(b).await;
        }
        if let Some((name, index)) = &st.bridge
            && let Err(e) = self.inner.netlink.delete_link(name, *index).await
        {
            tracing::error!("network {}: {e}", st.name);
        }
    }
}

/// The network interfaces of the SR-IOV virtual functions of `pf`
/// (libvirt's networkCreateInterfacePool): `/sys/class/net/PF/device/
/// virtfnN/net/NAME`; a VF bound to no network driver has no name and is
/// left out, as libvirt does.
fn virtual_functions(pf: &str) -> Result<Vec<String>> {
    let dev = std::path::Path::new("/sys/class/net")
        .join(pf)
        .join("device");
    let entries = std::fs::read_dir(&dev)
        .map_err(|_| err::internal(format!("Could not get Virtual functions on {pf}")))?;
    let mut vfs: Vec<(u32, String)> = entries
        .filter_map(std::result::Result::ok)
        .filter_map(|e| {
            let n: u32 = e
                .file_name()
                .to_str()?
                .strip_prefix("virtfn")?
                .parse()
                .ok()?;
            let name = std::fs::read_dir(e.path().join("net"))
                .ok()?
                .filter_map(std::result::Result::ok)
                .find_map(|x| x.file_name().into_string().ok())?;
            Some((n, name))
        })
        .collect();
    vfs.sort();
    if vfs.is_empty() {
        return Err(err::internal(format!(
            "No usable Vf's present on SRIOV PF {pf}"
        )));
    }
    Ok(vfs.into_iter().map(|(_, n)| n).collect())
}

/// Routed and NAT networks need the kernel to forward: libvirt turns
/// forwarding on (and never off, since others may rely on it). Written
/// with std::fs on purpose: /proc/sys/net belongs to the network namespace
/// of the writing thread, which must be the driver's own, not a pool
/// thread's.
fn enable_forwarding(def: &NetDef) -> Result<()> {
    let mut knobs = Vec::new();
    if def.ips.iter().any(|i| !i.is_v6()) {
        knobs.push("/proc/sys/net/ipv4/ip_forward");
    }
    if def.ips.iter().any(|i| i.is_v6()) {
        knobs.push("/proc/sys/net/ipv6/conf/all/forwarding");
    }
    for k in knobs {
        let on = std::fs::read_to_string(k).is_ok_and(|v| v.trim() == "1");
        if !on {
            std::fs::write(k, b"1\n")
                .map_err(|e| err::system(format!("cannot enable {k}: {e}")))?;
        }
    }
    Ok(())
}
