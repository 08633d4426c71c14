//! Network ports (virNetworkPort*): a hypervisor service asks for a port
//! for each guest interface on the network and is told which bridge to
//! plug its tap into. Ports live only while the network is active; each
//! is a file `<run>/ports/NETWORK/UUID.xml`, so they survive a restart of
//! this service (the guests still use them).

use super::*;
use crate::port::PortDef;
use virtmesh_conf::bandwidth::{Bandwidth, param};

impl NetworkDriver {
    fn ports_dir(&self, network: &str) -> PathBuf {
        self.inner.cfg.run_dir.join("ports").join(network)
    }

    /// The ports of an active network found on disk (recovery).
    pub(super) fn load_ports(&self, network: &str) -> Vec<PortDef> {
        status::files_ending(&self.ports_dir(network), ".xml")
            .into_iter()
            .filter_map(|p| {
                let parsed = std::fs::read_to_string(&p)
                    .map_err(|e| e.to_string())
                    .and_then(|x| PortDef::parse(&x).map_err(|e| e.to_string()));
                match parsed {
                    Ok(port) => Some(port),
                    Err(e) => {
                        tracing::error!("ignoring network port {}: {e}", p.display());
                        None
                    }
                }
            })
            .collect()
    }

    /// A stopped network has no ports any more.
    pub(super) fn remove_all_ports(&self, network: &str) {
        let dir = self.ports_dir(network);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove {}: {e}", dir.display());
        }
    }

    fn port_summary(net: &Net, p: &PortDef) -> pb::NetworkPortSummary {
        let (owner_uuid, owner_name) = p.owner();
        pb::NetworkPortSummary {
            network_uuid: net.uuid.clone(),
            port_uuid: p.uuid(),
            owner_uuid,
            owner_name,
            mac: p.mac(),
        }
    }

    fn active(&self, r: Option<&pb::ObjectRef>) -> Result<(Net, Live)> {
        let net = self.find(r)?;
        let live = net.live.clone().ok_or_else(err::not_active)?;
        Ok((net, live))
    }

    fn find_port(&self, r: &pb::PortRef) -> Result<(Net, PortDef)> {
        let (net, live) = self.active(r.network.as_ref())?;
        let want = virtmesh_conf::error::parse_uuid_str(&r.port_uuid)
            .map(|u| u.to_string())
            .unwrap_or_else(|| r.port_uuid.clone());
        let port = live
            .ports
            .iter()
            .find(|p| p.uuid().eq_ignore_ascii_case(&want))
            .cloned()
            .ok_or_else(|| {
                err::net(
                    virtmesh_rpc::ErrorCode::NoNetworkPort,
                    format!(
                        "Network port not found: no network port with matching uuid '{}'",
                        r.port_uuid
                    ),
                )
            })?;
        Ok((net, port))
    }

    pub async fn port_create(
        &self,
        r: Option<&pb::ObjectRef>,
        xml: &str,
        reclaim: bool,
    ) -> Result<pb::NetworkPortSummary> {
        let _job = self.inner.job.lock().await;
        let net = self.find(r)?;
        // networkAllocatePort's wording: a guest started on an inactive
        // network reports the network by name.
        let live = net
            .live
            .clone()
            .ok_or_else(|| err::invalid_op(&format!("network '{}' is not active", net.name)))?;
        let mut port = PortDef::parse(xml)?;
        if let Some(what) = port.unimplemented_feature() {
            // Not built yet: UNIMPLEMENTED, never a port without it.
            return Err(err::net(
                virtmesh_rpc::ErrorCode::NoSupport,
                format!(
                    "this function is not supported by the connection driver: {what} on ports of network '{}' is not implemented by the network driver",
                    net.name
                ),
            ));
        }
        if live.ports.iter().any(|p| p.uuid() == port.uuid()) {
            return Err(err::net(
                virtmesh_rpc::ErrorCode::NetworkPortExist,
                format!("Network port with UUID {} already exists", port.uuid()),
            ));
        }
        // A reclaimed port (a guest that kept running) keeps its plug.
        if reclaim && port.has_plug() {
            check_reclaimed(&net.name, &live, &port)?;
        } else if let Some(mode) = live.def.macvtap_mode() {
            let dev = pick_pool_dev(&net.name, &live, mode)?;
            port.set_direct_plug(&dev, mode);
        } else {
            let bridge = live.def.bridge.clone().unwrap_or_default();
            match &live.def.mode {
                m if m.has_own_bridge() => port.set_plug("network", &bridge),
                ForwardMode::Bridge if !bridge.is_empty() => port.set_plug("bridge", &bridge),
                ForwardMode::Other(mode) => {
                    return Err(err::unsupported(format!(
                        "ports of network '{}' (forward mode '{mode}') are not implemented yet",
                        net.name
                    )));
                }
                _ => {
                    return Err(err::internal(format!(
                        "network '{}' has no bridge to plug ports into",
                        net.name
                    )));
                }
            }
        }
        // A reclaimed port's QoS is on the bridge already.
        if !(reclaim && port.has_plug()) {
            self.plug_port_qos(&live, &mut port).await?;
        }
        let dir = self.ports_dir(&net.name);
        let saved = status::mkdir(&dir).map_err(state_err).and_then(|()| {
            virtmesh_util::fs::write_atomic(
                &dir.join(format!("{}.xml", port.uuid())),
                port.to_xml().as_bytes(),
            )
            .map_err(err::system)
        });
        if let Err(e) = saved {
            self.unplug_port_qos(&live, &port).await;
            return Err(e);
        }
        let summary = Self::port_summary(&net, &port);
        self.with_net(&net.uuid, |n| {
            if let Some(l) = &mut n.live {
                l.ports.push(port);
            }
        });
        Ok(summary)
    }

    pub fn port_list(&self, r: Option<&pb::ObjectRef>) -> Result<Vec<pb::NetworkPortSummary>> {
        let (net, live) = self.active(r)?;
        Ok(live
            .ports
            .iter()
            .map(|p| Self::port_summary(&net, p))
            .collect())
    }

    pub fn port_lookup(&self, r: &pb::PortRef) -> Result<pb::NetworkPortSummary> {
        let (net, port) = self.find_port(r)?;
        Ok(Self::port_summary(&net, &port))
    }

    pub fn port_xml(&self, r: &pb::PortRef) -> Result<String> {
        Ok(self.find_port(r)?.1.to_xml())
    }

    /// virNetworkPortGetParameters: the port's bandwidth as libvirt's
    /// typed parameters (each present direction with all its fields).
    pub fn port_parameters(&self, r: &pb::PortRef) -> Result<pb::PortParameters> {
        let (_, port) = self.find_port(r)?;
        let mut params = Vec::new();
        if let (Some(bw), _) = port.bandwidth() {
            let mut add = |field: &str, value: u64| {
                params.push(pb::PortParameter {
                    field: field.to_owned(),
                    value,
                })
            };
            if let Some(i) = bw.inbound {
                add(param::IN_AVERAGE, i.average);
                add(param::IN_PEAK, i.peak);
                add(param::IN_FLOOR, i.floor);
                add(param::IN_BURST, i.burst);
            }
            if let Some(o) = bw.outbound {
                add(param::OUT_AVERAGE, o.average);
                add(param::OUT_PEAK, o.peak);
                add(param::OUT_BURST, o.burst);
            }
        }
        Ok(pb::PortParameters { params })
    }

    /// virNetworkPortSetParameters: the given fields make the port's new
    /// bandwidth (fields not given are zero, as in libvirt); a direction
    /// without average (or, inbound, floor) is dropped.
    pub async fn port_set_parameters(&self, req: &pb::PortSetParametersRequest) -> Result<()> {
        let _job = self.inner.job.lock().await;
        let r = req.port.as_ref().ok_or_else(err::missing_ref)?;
        let (net, mut port) = self.find_port(r)?;
        let live = net.live.clone().ok_or_else(err::not_active)?;
        // Fields not given are zero, as in libvirt (no merge).
        let new =
            Bandwidth::with_params(None, req.params.iter().map(|p| (p.field.as_str(), p.value)))
                .map_err(|other| {
                    err::net(
                        virtmesh_rpc::ErrorCode::ArgumentUnsupported,
                        format!("argument unsupported: parameter '{other}' not supported"),
                    )
                })?;
        self.update_port_qos(&live, &mut port, new).await?;
        let path = self
            .ports_dir(&net.name)
            .join(format!("{}.xml", port.uuid()));
        virtmesh_util::fs::write_atomic(&path, port.to_xml().as_bytes()).map_err(err::system)?;
        let uuid = port.uuid();
        self.with_net(&net.uuid, |n| {
            if let Some(l) = &mut n.live
                && let Some(p) = l.ports.iter_mut().find(|p| p.uuid() == uuid)
            {
                *p = port;
            }
        });
        Ok(())
    }

    pub async fn port_delete(&self, r: &pb::PortRef) -> Result<()> {
        let _job = self.inner.job.lock().await;
        let (net, port) = self.find_port(r)?;
        let uuid = port.uuid();
        status::remove_file(&self.ports_dir(&net.name).join(format!("{uuid}.xml")))
            .map_err(state_err)?;
        let mut rest = None;
        self.with_net(&net.uuid, |n| {
            if let Some(l) = &mut n.live {
                l.ports.retain(|p| p.uuid() != uuid);
                rest = Some(l.clone());
            }
        });
        if let Some(live) = rest {
            self.unplug_port_qos(&live, &port).await;
        }
        Ok(())
    }
}

/// How many of the network's ports use pool interface `dev`: the count
/// libvirt keeps per `<forward><interface>`, here derived from the ports
/// themselves, which are persisted, so it survives a restart.
pub(super) fn connections(live: &Live, dev: &str) -> usize {
    live.ports
        .iter()
        .filter(|p| p.direct_dev() == Some(dev))
        .count()
}

/// networkAllocatePort's choice for the direct modes: passthrough needs a
/// device of its own (the first with no connection); the other modes
/// share, and take the least used (the first of those).
fn pick_pool_dev(network: &str, live: &Live, mode: &str) -> Result<String> {
    let pool = &live.status.pool;
    if pool.is_empty() {
        return Err(err::internal(format!(
            "network '{network}' uses a direct mode, but has no forward dev and no interface pool"
        )));
    }
    let dev = if mode == "passthrough" {
        pool.iter().find(|d| connections(live, d) == 0)
    } else {
        pool.iter().min_by_key(|d| connections(live, d))
    };
    dev.cloned().ok_or_else(|| {
        err::internal(format!(
            "network '{network}' requires exclusive access to interfaces, but none are available"
        ))
    })
}

/// networkNotifyPort's checks for a port handed back with its plug after
/// the guest's service restarted: a direct plug must name a pool device,
/// and a passthrough device must not be in use by another port.
fn check_reclaimed(network: &str, live: &Live, port: &PortDef) -> Result<()> {
    match (port.plug_type(), live.def.macvtap_mode()) {
        (Some("direct"), Some(mode)) => {
            let dev = port.direct_dev().unwrap_or_default();
            if !live.status.pool.iter().any(|d| d == dev) {
                return Err(err::internal(format!(
                    "network '{network}' doesn't have dev='{dev}' in use by network port '{}'",
                    port.uuid()
                )));
            }
            if mode == "passthrough" && connections(live, dev) > 0 {
                return Err(err::internal(format!(
                    "network '{network}' claims dev='{dev}' is already in use by a different port"
                )));
            }
            Ok(())
        }
        (Some("network" | "bridge"), _) if live.def.bridge.is_none() => Err(err::internal(
            "Unexpectedly got a network port without a network bridge",
        )),
        (Some("direct"), None) => Err(err::internal(format!(
            "network '{network}' doesn't have dev='{}' in use by network port '{}'",
            port.direct_dev().unwrap_or_default(),
            port.uuid()
        ))),
        _ => Ok(()),
    }
}
