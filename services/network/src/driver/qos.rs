//! Network QoS (libvirt's networkPlugBandwidth and friends): the
//! network-wide `<bandwidth>` shapes the bridge as an HTB tree; a port
//! with an inbound `floor` gets a class of its own under it, guaranteed
//! that rate, and the shared class 1:2 keeps what is left.
//!
//! The floor sum and the class IDs in use are derived from the ports
//! (each port file records its `classID`), so they survive a restart of
//! this service just as the ports do.

use super::*;
use virtmesh_conf::bandwidth::Bandwidth;
use virtmesh_rpc::ErrorCode;

/// Classes 1:1 (the network's ceiling) and 1:2 (traffic without a
/// floor) exist on every shaped bridge; a port's class starts at 3.
const FIRST_PORT_CLASS: u32 = 3;

fn unsupported_op(msg: String) -> VirtError {
    err::net(
        ErrorCode::OperationUnsupported,
        format!("Operation not supported: {msg}"),
    )
}

fn tc_err(e: virtmesh_util::bandwidth::TcError) -> VirtError {
    err::system(e)
}

/// The sum of the floors of the ports that hold a class.
fn floor_sum(live: &Live) -> u64 {
    floor_sum_without(live, None)
}

/// The same, leaving out port `except` (whose floor is being changed).
fn floor_sum_without(live: &Live, except: Option<&str>) -> u64 {
    live.ports
        .iter()
        .filter(|p| except.is_none_or(|u| p.uuid() != u))
        .filter_map(|p| match p.bandwidth() {
            (Some(bw), Some(_)) => Some(bw.floor()),
            _ => None,
        })
        .sum()
}

/// The lowest class ID no port holds (networkNextClassID).
fn next_class_id(live: &Live) -> u32 {
    let used: Vec<u32> = live.ports.iter().filter_map(|p| p.bandwidth().1).collect();
    (FIRST_PORT_CLASS..)
        .find(|id| !used.contains(id))
        .unwrap_or(FIRST_PORT_CLASS)
}

/// The rate ceiling a floor is guaranteed out of: the network's inbound
/// peak, else its average.
fn ceiling(net_in: &virtmesh_conf::bandwidth::Rate) -> u64 {
    if net_in.peak > 0 {
        net_in.peak
    } else {
        net_in.average
    }
}

/// networkCheckBandwidth for a new port: `Ok(None)` when no class is
/// needed, `Ok(Some(ceiling))` when one is and the floors still fit.
fn check_floor(live: &Live, port_bw: Option<&Bandwidth>, mac: &str) -> Result<Option<u64>> {
    check_floor_change(live, port_bw, None, mac)
}

/// networkCheckBandwidth: as [`check_floor`], for port `replacing`
/// (a UUID) whose present floor is left out of the sum.
fn check_floor_change(
    live: &Live,
    port_bw: Option<&Bandwidth>,
    replacing: Option<&str>,
    mac: &str,
) -> Result<Option<u64>> {
    let def = &live.def;
    let floor = port_bw.map_or(0, Bandwidth::floor);
    if floor > 0 && !def.mode.has_own_bridge() {
        return Err(unsupported_op(format!(
            "Invalid use of 'floor' on interface with MAC address {mac} - 'floor' is only supported for interface type 'network' with forward type 'nat', 'route', 'open' or none"
        )));
    }
    let net_in = def.bandwidth.and_then(|b| b.inbound);
    if floor > 0 && net_in.is_none() {
        return Err(unsupported_op(format!(
            "Invalid use of 'floor' on interface with MAC address {mac} - network '{}' has no inbound QoS set",
            def.name
        )));
    }
    let (Some(net_in), true) = (net_in, floor > 0) else {
        return Ok(None);
    };
    let sum = floor_sum_without(live, replacing) + floor;
    let bridge = def.bridge.as_deref().unwrap_or_default();
    let (limit, what) = if net_in.peak > 0 {
        (net_in.peak, "peak")
    } else {
        (net_in.average, "average")
    };
    if sum > limit {
        return Err(err::invalid_op(&format!(
            "Cannot plug '{mac}' interface into '{bridge}' because new combined inbound floor={sum} would overcommit {what}={limit} on network '{}'",
            def.name
        )));
    }
    Ok(Some(ceiling(&net_in)))
}

/// The bridge of a network with inbound QoS, where floors get classes.
fn shaped_bridge(live: &Live) -> Result<(String, Bandwidth)> {
    match (&live.def.bridge, &live.def.bandwidth) {
        (Some(b), Some(n)) => Ok((b.clone(), *n)),
        _ => Err(err::internal(
            "network has no bridge to guarantee a floor on",
        )),
    }
}

/// A new floor class for the port with `mac` on `bridge`; its ID.
async fn plug_class(
    live: &Live,
    bridge: &str,
    net_bw: &Bandwidth,
    mac: &str,
    bw: &Bandwidth,
) -> Result<u32> {
    let mac_bytes: [u8; 6] = virtmesh_util::netlink::parse_mac(mac)
        .and_then(|m| m.try_into().ok())
        .ok_or_else(|| err::internal(format!("unable to parse mac '{mac}'")))?;
    let id = next_class_id(live);
    virtmesh_util::bandwidth::plug(bridge, net_bw, &mac_bytes, bw, id)
        .await
        .map_err(tc_err)?;
    Ok(id)
}

impl NetworkDriver {
    /// Shape a started network's bridge (networkStartNetworkVirtual /
    /// networkStartNetworkBridge): hierarchical, so ports can be given
    /// floors; the guest-inbound direction is the bridge's egress.
    pub(super) async fn shape_bridge(&self, def: &NetDef, bridge: &str) -> Result<()> {
        let Some(bw) = &def.bandwidth else {
            return Ok(());
        };
        if !virtmesh_util::dirs::is_root() {
            return Err(unsupported_op(
                "Network bandwidth tuning is not available in session mode".into(),
            ));
        }
        virtmesh_util::bandwidth::set(bridge, bw, true, true)
            .await
            .map_err(tc_err)
    }

    /// networkAllocatePort's QoS: the portgroup's limits when the port
    /// brings none, and a class on the bridge for an inbound floor.
    pub(super) async fn plug_port_qos(&self, live: &Live, port: &mut PortDef) -> Result<()> {
        let (own, _) = port.bandwidth();
        let bw = own.or_else(|| live.def.portgroup_bandwidth(port.group().as_deref()));
        let Some(bw) = bw else {
            port.set_bandwidth(None, None);
            return Ok(());
        };
        let mac = port.mac();
        let Some(ceiling) = check_floor(live, Some(&bw), &mac)? else {
            port.set_bandwidth(Some(&bw), None);
            return Ok(());
        };
        let (bridge, net_bw) = shaped_bridge(live)?;
        let id = plug_class(live, &bridge, &net_bw, &mac, &bw).await?;
        port.set_bandwidth(Some(&bw), Some(id));
        let rest = ceiling.saturating_sub(floor_sum(live) + bw.floor());
        self.update_shared_rate(&bridge, &net_bw, rest).await;
        Ok(())
    }

    /// networkUpdatePortBandwidth (PortSetParameters): the port's
    /// limits become `new`; on the bridge only a changed floor matters:
    /// its class is re-rated, made, or removed, and class 1:2 follows.
    pub(super) async fn update_port_qos(
        &self,
        live: &Live,
        port: &mut PortDef,
        new: Option<Bandwidth>,
    ) -> Result<()> {
        let (old, class_id) = port.bandwidth();
        let (old_floor, new_floor) = (
            old.as_ref().map_or(0, Bandwidth::floor),
            new.as_ref().map_or(0, Bandwidth::floor),
        );
        let uuid = port.uuid();
        if old_floor == new_floor {
            port.set_bandwidth(new.as_ref(), class_id);
            return Ok(());
        }
        if new_floor == 0 {
            // The floor is dropped: so is its class (`port` still holds
            // its old bandwidth and class ID here).
            let mut rest = live.clone();
            rest.ports.retain(|p| p.uuid() != uuid);
            self.unplug_port_qos(&rest, port).await;
            port.set_bandwidth(new.as_ref(), None);
            return Ok(());
        }
        let Some(ceiling) = check_floor_change(live, new.as_ref(), Some(&uuid), &port.mac())?
        else {
            port.set_bandwidth(new.as_ref(), class_id);
            return Ok(());
        };
        let (bridge, net_bw) = shaped_bridge(live)?;
        let others = floor_sum_without(live, Some(&uuid));
        match class_id {
            Some(id) => {
                let net_in = net_bw.inbound.unwrap_or_default();
                virtmesh_util::bandwidth::update_rate(&bridge, id, &net_in, new_floor)
                    .await
                    .map_err(tc_err)?;
                port.set_bandwidth(new.as_ref(), Some(id));
            }
            None => {
                let Some(bw) = new else { return Ok(()) };
                let id = plug_class(live, &bridge, &net_bw, &port.mac(), &bw).await?;
                port.set_bandwidth(Some(&bw), Some(id));
            }
        }
        let rest = ceiling.saturating_sub(others + new_floor);
        self.update_shared_rate(&bridge, &net_bw, rest).await;
        Ok(())
    }

    /// networkUnplugBandwidth: the port's class goes and the shared class
    /// gets its rate back. `live` no longer lists the port.
    pub(super) async fn unplug_port_qos(&self, live: &Live, port: &PortDef) {
        let (Some(_), Some(id)) = port.bandwidth() else {
            return;
        };
        let (Some(bridge), Some(net_bw)) = (&live.def.bridge, &live.def.bandwidth) else {
            tracing::warn!(
                "network {} has no bandwidth but unplug requested",
                live.def.name
            );
            return;
        };
        virtmesh_util::bandwidth::unplug(bridge, id).await;
        if let Some(net_in) = net_bw.inbound {
            let rest = ceiling(&net_in).saturating_sub(floor_sum(live));
            self.update_shared_rate(bridge, net_bw, rest).await;
        }
    }

    /// Class 1:2 (guests without a floor) gets what the floors leave; a
    /// failure is only logged, as libvirt does: the floors themselves
    /// are in place.
    async fn update_shared_rate(&self, bridge: &str, net_bw: &Bandwidth, rate: u64) {
        let Some(net_in) = net_bw.inbound else { return };
        if let Err(e) = virtmesh_util::bandwidth::update_rate(bridge, 2, &net_in, rate).await {
            tracing::warn!("Unable to update rate for 1:2 class on {bridge} bridge: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(net_xml: &str, ports: &[&str]) -> Live {
        let def = NetDef::parse(net_xml).expect("network");
        Live {
            def,
            status: LiveStatus::default(),
            ports: ports
                .iter()
                .map(|p| PortDef::parse(p).expect("port"))
                .collect(),
        }
    }

    fn port(mac: &str, bw: &str) -> String {
        format!(
            "<networkport><owner><name>g</name><uuid>14f6865f-355e-56c2-afd4-2f005da5b17b</uuid></owner>\
             <mac address='{mac}'/>{bw}</networkport>"
        )
    }

    const NAT_QOS: &str = "<network><name>q</name><forward mode='nat'/><bridge name='virbr9'/>\
         <bandwidth><inbound average='1000' peak='2000'/></bandwidth>\
         <ip address='10.1.0.1' prefix='24'/></network>";

    #[test]
    fn floors_are_counted_and_overcommit_refused() {
        let held = port(
            "52:54:00:00:00:01",
            "<bandwidth classID='3'><inbound floor='1500'/></bandwidth>",
        );
        let l = live(NAT_QOS, &[&held]);
        assert_eq!(floor_sum(&l), 1500);
        assert_eq!(next_class_id(&l), 4);
        let small = Bandwidth {
            inbound: Some(virtmesh_conf::bandwidth::Rate {
                floor: 500,
                ..Default::default()
            }),
            outbound: None,
        };
        assert_eq!(
            check_floor(&l, Some(&small), "52:54:00:00:00:02").expect("fits"),
            Some(2000)
        );
        let big = Bandwidth {
            inbound: Some(virtmesh_conf::bandwidth::Rate {
                floor: 501,
                ..Default::default()
            }),
            outbound: None,
        };
        assert_eq!(
            check_floor(&l, Some(&big), "52:54:00:00:00:02")
                .expect_err("overcommit")
                .message,
            "Requested operation is not valid: Cannot plug '52:54:00:00:00:02' interface into 'virbr9' because new combined inbound floor=2001 would overcommit peak=2000 on network 'q'"
        );
    }

    #[test]
    fn floor_needs_inbound_qos_on_a_routed_network() {
        let plain = live(
            "<network><name>p</name><bridge name='virbr8'/><ip address='10.2.0.1' prefix='24'/></network>",
            &[],
        );
        let floor = Bandwidth {
            inbound: Some(virtmesh_conf::bandwidth::Rate {
                floor: 10,
                ..Default::default()
            }),
            outbound: None,
        };
        assert_eq!(
            check_floor(&plain, Some(&floor), "52:54:00:00:00:03")
                .expect_err("no QoS")
                .message,
            "Operation not supported: Invalid use of 'floor' on interface with MAC address 52:54:00:00:00:03 - network 'p' has no inbound QoS set"
        );
        let bridged = live(
            "<network><name>b</name><forward mode='bridge'/><bridge name='br0'/></network>",
            &[],
        );
        assert!(
            check_floor(&bridged, Some(&floor), "52:54:00:00:00:03")
                .expect_err("bridge mode")
                .message
                .contains("'floor' is only supported for interface type 'network'")
        );
        // No floor: nothing to plug, whatever the network.
        assert_eq!(
            check_floor(&plain, None, "52:54:00:00:00:03").expect("ok"),
            None
        );
    }
}
