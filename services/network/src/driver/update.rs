//! virNetworkUpdate and the DHCP leases of an active network.

use super::*;

impl NetworkDriver {
    pub async fn dhcp_leases(
        &self,
        r: Option<&pb::ObjectRef>,
        mac: Option<&str>,
    ) -> Result<Vec<pb::DhcpLease>> {
        let net = self.find(r)?;
        let Some(live) = net.live else {
            return Err(err::not_active());
        };
        let path = self.paths(&net.name).leases;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(err::system(format!(
                    "cannot read leases file '{}': {e}",
                    path.display()
                )));
            }
        };
        Ok(leases::parse(&text, &live.def, mac))
    }

    /// networkReloadFirewallRules: our tables replaced by the rules the
    /// changed definition makes; `st.tables` follows what exists.
    async fn reload_firewall(&self, def: &NetDef, st: &mut status::LiveStatus) -> Result<()> {
        while let Some(t) = st.tables.last() {
            firewall::remove(t).await.map_err(err::firewall)?;
            st.tables.pop();
        }
        for v6 in [false, true] {
            if let Some((table, rules)) = firewall::ruleset(def, v6) {
                firewall::add(&table, &rules).await.map_err(err::firewall)?;
                st.tables.push(table);
            }
        }
        Ok(())
    }

    /// virNetworkUpdate for the DHCP host/range, DNS host/txt/srv,
    /// portgroup and forward-interface sections.
    pub async fn update(&self, req: &pb::NetworkUpdateRequest) -> Result<()> {
        use pb::{NetworkUpdateCommand as C, NetworkUpdateSection as S};
        let _job = self.inner.job.lock().await;
        let net = self.find(req.network.as_ref())?;
        let section = S::try_from(req.section).unwrap_or(S::NetworkSectionNone);
        let command = C::try_from(req.command).unwrap_or(C::None);
        if !matches!(
            section,
            S::NetworkSectionIpDhcpHost
                | S::NetworkSectionIpDhcpRange
                | S::NetworkSectionDnsHost
                | S::NetworkSectionDnsTxt
                | S::NetworkSectionDnsSrv
                | S::NetworkSectionPortgroup
                | S::NetworkSectionForwardInterface
        ) {
            return Err(err::net(
                virtmesh_rpc::ErrorCode::NoSupport,
                format!(
                    "this function is not supported by the connection driver: can't update '{}' section of network '{}'",
                    section.as_str_name(),
                    net.name
                ),
            ));
        }
        // Neither flag: the live definition when active, else the config.
        let (live, config) = match (req.live, req.config) {
            (false, false) => (net.live.is_some(), net.live.is_none()),
            (l, c) => (l, c),
        };
        if live && net.live.is_none() {
            return Err(err::not_active());
        }
        if config && net.config.is_none() {
            return Err(err::invalid_op(
                "cannot change persistent config of a transient network",
            ));
        }
        let item = virtmesh_conf::xml::parse(&req.xml).map_err(|e| err::conf(e.into()))?;
        let apply = |def: &NetDef, counted: Option<&Live>| -> Result<NetDef> {
            let connections = |dev: &str| counted.map_or(0, |l| super::ports::connections(l, dev));
            let root = crate::update::apply(
                def.def.element(),
                &def.name,
                section,
                command,
                req.parent_index,
                &item,
                &connections,
            )?;
            Ok(NetDef::from_def(
                NetworkDef::from_element(root).map_err(err::conf)?,
            ))
        };
        let new_config = match (&net.config, config) {
            (Some(c), true) => Some(apply(c, None)?),
            _ => None,
        };
        let new_live = match (&net.live, live) {
            (Some(l), true) => Some(apply(&l.def, Some(l))?),
            _ => None,
        };
        if let Some(def) = &new_live
            && let Some(l) = &net.live
        {
            let mut st = l.status.clone();
            st.xml = def.to_xml();
            if section == S::NetworkSectionForwardInterface {
                // The pool ports are handed out from, or (nat/route) the
                // interfaces the firewall lets traffic leave by:
                // networkReloadFirewallRules, our tables replaced.
                st.pool = def.pool.clone();
            }
            let mut failure = None;
            if section == S::NetworkSectionForwardInterface
                && def.macvtap_mode().is_none()
                && !st.tables.is_empty()
            {
                // Whatever is in place when this stops is what the status
                // records, for destroy to take away.
                failure = self.reload_firewall(def, &mut st).await.err();
            }
            let dnsmasq_section = failure.is_none()
                && !matches!(
                    section,
                    S::NetworkSectionPortgroup | S::NetworkSectionForwardInterface
                );
            if let Some(pid) = st
                .dnsmasq_pid
                .filter(|_| dnsmasq_section && def.needs_dnsmasq())
            {
                let paths = self.paths(&def.name);
                self.write_dnsmasq_files(def, &paths)?;
                let reread = matches!(
                    section,
                    S::NetworkSectionIpDhcpHost | S::NetworkSectionDnsHost
                );
                if reread && dnsmasq::is_ours(pid, &paths.conf) {
                    // Static DHCP hosts and DNS hosts live in the hostsfile and
                    // addnhosts, which dnsmasq re-reads on SIGHUP.
                    dnsmasq::reload(pid)
                        .map_err(|e| err::system(format!("cannot signal dnsmasq {pid}: {e}")))?;
                } else {
                    // Ranges, TXT and SRV records are in the conf file:
                    // dnsmasq must restart to see them. If it cannot, the
                    // status must not keep the old, dead pid.
                    dnsmasq::stop(pid, &paths.conf).await;
                    match dnsmasq::start(&paths).await {
                        Ok(pid) => st.dnsmasq_pid = Some(pid),
                        Err(e) => {
                            st.dnsmasq_pid = None;
                            failure = Some(err::system(e));
                        }
                    }
                }
            }
            self.save_live(&st)?;
            let def = def.clone();
            let ports = l.ports.clone();
            self.with_net(&net.uuid, |n| {
                n.live = Some(Live {
                    def,
                    status: st,
                    ports,
                })
            });
            if let Some(e) = failure {
                return Err(e);
            }
        }
        if let Some(def) = new_config {
            self.inner
                .store
                .save_config(&def.name, &def.to_xml())
                .map_err(state_err)?;
            self.with_net(&net.uuid, |n| n.config = Some(def));
        }
        Ok(())
    }
}
