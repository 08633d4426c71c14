//! The network service as the qemu driver's peer (libvirt's "secondary
//! connection" to virtnetworkd, DESIGN.md §1/§5): interfaces of type
//! `network` get a port on the network (`PortCreateXML`), whose `<plug>`
//! names the bridge the guest's tap goes on; the port is deleted when the
//! interface goes away, and re-announced (reclaimed) when a restarted
//! service finds the guest still running. DHCP leases for `domifaddr
//! --source lease` come from the same peer. Only gRPC crosses the
//! boundary: no crate of the network service is linked here.

use serde::{Deserialize, Serialize};
use tonic::transport::Channel;
use virtmesh_conf::Element;
use virtmesh_proto::v1::{self as pb, network_client::NetworkClient, object_ref::Key};
use virtmesh_rpc::client::{ChannelOptions, channel};
use virtmesh_rpc::{ErrorCode, ErrorDomain, ListenAddr, VirtError};

/// How long one call to the network service may take: a peer that hangs
/// must not hang a guest's start.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A port this service holds on a network, recorded in the guest's live
/// status with the tap it belongs to, so a restarted service can release
/// or reclaim it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRecord {
    /// The network's name.
    pub network: String,
    pub uuid: String,
    /// The bridge the port is plugged into (empty for a direct plug).
    #[serde(default)]
    pub bridge: String,
    /// A direct plug (macvtap-family networks): the host interface and
    /// macvtap mode the guest's macvtap goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<DirectPlug>,
    /// The port XML as the network service returned it (with `<plug>`),
    /// what a reclaim sends back.
    pub xml: String,
}

/// `<plug type='direct' dev mode>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectPlug {
    pub dev: String,
    pub mode: String,
}

/// Where a port's `<plug>` puts the guest's interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plug {
    /// A tap on this bridge (`type='network'|'bridge'`).
    Bridge(String),
    /// A macvtap on a host interface (`type='direct'`).
    Direct(DirectPlug),
}

/// The network service, reached lazily (nothing happens until the first
/// call; a service that is down answers UNAVAILABLE within the connect
/// timeout).
#[derive(Debug, Clone)]
pub struct NetPeer {
    client: Option<NetworkClient<Channel>>,
    /// Where the peer is, for errors that come from the transport.
    addr: String,
}

fn by_name(name: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        key: Some(Key::Name(name.to_owned())),
    }
}

fn by_uuid(uuid: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        key: Some(Key::Uuid(uuid.to_owned())),
    }
}

impl NetPeer {
    pub fn new(addr: Option<&ListenAddr>) -> NetPeer {
        let opts = ChannelOptions {
            call_timeout: Some(CALL_TIMEOUT),
            ..ChannelOptions::default()
        };
        NetPeer {
            client: addr.map(|a| NetworkClient::new(channel(a, &opts))),
            addr: addr.map(ToString::to_string).unwrap_or_default(),
        }
    }

    /// A peer's error as libvirt would report it: the network driver's own
    /// code, domain and message when it sent one; a transport failure
    /// (service down, timeout) names the endpoint tried (DESIGN.md §5).
    fn peer_err(&self, status: &tonic::Status) -> VirtError {
        let e = VirtError::from_status(status);
        if e.domain != ErrorDomain::Rpc || e.code != ErrorCode::Rpc {
            return e;
        }
        VirtError::new(
            ErrorCode::NoConnect,
            ErrorDomain::Rpc,
            format!(
                "no connection driver available for network:///system: the network service at {} is unreachable: {}",
                self.addr, e.message
            ),
        )
    }

    /// libvirt's error when no network driver is there to open.
    fn client(&self) -> Result<NetworkClient<Channel>, VirtError> {
        self.client.clone().ok_or_else(|| {
            VirtError::new(
                ErrorCode::NoConnect,
                ErrorDomain::None,
                "no connection driver available for network:///system",
            )
        })
    }

    /// A port for `iface` (an `<interface type='network'>`) of domain
    /// `owner`: looked up by name first, as libvirt does, so an unknown
    /// network gives "Network not found", an inactive one the network
    /// driver's "network is not active".
    pub async fn create_port(
        &self,
        iface: &Element,
        owner_uuid: &str,
        owner_name: &str,
    ) -> Result<PortRecord, VirtError> {
        let mut client = self.client()?;
        let network = iface
            .child("source")
            .and_then(|s| s.attr("network"))
            .unwrap_or_default()
            .to_owned();
        let net = client
            .lookup(by_name(&network))
            .await
            .map_err(|s| self.peer_err(&s))?
            .into_inner();
        let xml = port_xml(iface, owner_uuid, owner_name);
        let port = client
            .port_create_xml(pb::PortCreateRequest {
                network: Some(by_uuid(&net.uuid)),
                xml,
                reclaim: false,
                validate: false,
            })
            .await
            .map_err(|s| self.peer_err(&s))?
            .into_inner();
        let port_ref = pb::PortRef {
            network: Some(by_uuid(&net.uuid)),
            port_uuid: port.port_uuid.clone(),
        };
        let described = client.port_get_xml_desc(port_ref.clone()).await;
        let record = described.map_err(|s| self.peer_err(&s)).and_then(|x| {
            let xml = x.into_inner().xml;
            let plug = plug_of(&xml).ok_or_else(|| {
                VirtError::new(
                    ErrorCode::InternalError,
                    ErrorDomain::Qemu,
                    format!(
                        "internal error: network '{network}' gave port {} no bridge or device to plug into",
                        port.port_uuid
                    ),
                )
            })?;
            let (bridge, direct) = match plug {
                Plug::Bridge(b) => (b, None),
                Plug::Direct(d) => (String::new(), Some(d)),
            };
            Ok(PortRecord {
                network: network.clone(),
                uuid: port.port_uuid.clone(),
                bridge,
                direct,
                xml,
            })
        });
        if record.is_err() {
            // The port is ours and useless: give it back.
            let _ = client.port_delete(port_ref).await;
        }
        record
    }

    /// Give a port back. A port or network that is already gone is not an
    /// error: there is nothing left to release.
    pub async fn delete_port(&self, port: &PortRecord) -> Result<(), VirtError> {
        let mut client = self.client()?;
        match client
            .port_delete(pb::PortRef {
                network: Some(by_name(&port.network)),
                port_uuid: port.uuid.clone(),
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(s) => {
                let e = self.peer_err(&s);
                if matches!(
                    e.code,
                    ErrorCode::NoNetworkPort | ErrorCode::NoNetwork | ErrorCode::OperationInvalid
                ) {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Tell the network again about a port of a guest that kept running
    /// while this service was down (libvirt's networkNotifyActualDevice:
    /// `PortCreateXML` with RECLAIM); a port it still has is fine.
    pub async fn reclaim_port(&self, port: &PortRecord) -> Result<(), VirtError> {
        let mut client = self.client()?;
        match client
            .port_create_xml(pb::PortCreateRequest {
                network: Some(by_name(&port.network)),
                xml: port.xml.clone(),
                reclaim: true,
                validate: false,
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(s) => {
                let e = self.peer_err(&s);
                if e.code == ErrorCode::NetworkPortExist {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// The network's DHCP leases for one MAC.
    pub async fn leases(&self, network: &str, mac: &str) -> Result<Vec<pb::DhcpLease>, VirtError> {
        let mut client = self.client()?;
        let mut stream = client
            .get_dhcp_leases(pb::DhcpLeasesRequest {
                network: Some(by_name(network)),
                mac: mac.to_owned(),
            })
            .await
            .map_err(|s| self.peer_err(&s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(lease) = stream.message().await.map_err(|s| self.peer_err(&s))? {
            out.push(lease);
        }
        Ok(out)
    }
}

/// libvirt's network port XML for an interface (virDomainNetDefToNetworkPort):
/// owner, portgroup, MAC and the interface's own virtualport, bandwidth,
/// vlan and port isolation. The network service assigns the UUID.
pub fn port_xml(iface: &Element, owner_uuid: &str, owner_name: &str) -> String {
    let mut root = Element::new("networkport").with_child(
        Element::new("owner")
            .with_child(Element::new("name").with_text(owner_name))
            .with_child(Element::new("uuid").with_text(owner_uuid)),
    );
    if let Some(group) = iface.child("source").and_then(|s| s.attr("portgroup")) {
        root = root.with_child(Element::new("group").with_text(group));
    }
    root = root.with_child(Element::new("mac").with_attr("address", crate::hostnet::mac_of(iface)));
    for kind in ["virtualport", "bandwidth", "vlan", "port"] {
        if let Some(e) = iface.child(kind) {
            root = root.with_child(e.clone());
        }
    }
    root.to_xml()
}

/// The bridge of a port's `<plug type='network'|'bridge' bridge='…'/>`.
pub fn plug_bridge(port_xml: &str) -> Option<String> {
    match plug_of(port_xml)? {
        Plug::Bridge(b) => Some(b),
        Plug::Direct(_) => None,
    }
}

/// A port's `<plug>`: a bridge, or (`type='direct'`) a host interface
/// and macvtap mode; `None` for a plug this driver cannot use (hostdev)
/// or one missing its bridge/device.
pub fn plug_of(port_xml: &str) -> Option<Plug> {
    let root = virtmesh_conf::xml::parse(port_xml).ok()?;
    let plug = root.child("plug")?;
    let non_empty = |k: &str| plug.attr(k).filter(|v| !v.is_empty()).map(str::to_owned);
    match plug.attr("type")? {
        "network" | "bridge" => non_empty("bridge").map(Plug::Bridge),
        "direct" => Some(Plug::Direct(DirectPlug {
            dev: non_empty("dev")?,
            // virNetworkPortDefFormat leaves out the default mode.
            mode: non_empty("mode").unwrap_or_else(|| "vepa".to_owned()),
        })),
        _ => None,
    }
}

/// What libvirt's live XML shows for an interface on a network port:
/// `<source network='N' portid='UUID' bridge='BR'/>`, or for a direct
/// plug the actual device and mode (virDomainActualNetDefContentsFormat):
/// `<source network='N' portid='UUID' dev='eth1' mode='vepa'/>`.
pub fn show_port(iface: &mut Element, port: &PortRecord) {
    let source = iface.child_or_insert("source");
    source.set_attr("network", port.network.as_str());
    source.set_attr("portid", port.uuid.as_str());
    match &port.direct {
        Some(d) => {
            source.set_attr("dev", d.dev.as_str());
            source.set_attr("mode", d.mode.as_str());
        }
        None => source.set_attr("bridge", port.bridge.as_str()),
    }
    source.order_attrs(&["network", "portgroup", "portid", "bridge", "dev", "mode"]);
    iface.sort_children(&["mac", "source", "target", "model", "*"]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_xml_carries_owner_group_mac_and_qos() {
        let iface = virtmesh_conf::xml::parse(
            "<interface type='network'><mac address='52:54:00:11:22:33'/>\
             <source network='default' portgroup='web'/><model type='virtio'/>\
             <bandwidth><inbound average='100'/></bandwidth><vlan><tag id='42'/></vlan></interface>",
        )
        .expect("parse");
        let xml = port_xml(&iface, "c7a5fdbd-cdaf-9455-926a-d65c16db1809", "g");
        let root = virtmesh_conf::xml::parse(&xml).expect("port xml");
        assert_eq!(root.name, "networkport");
        let owner = root.child("owner").expect("owner");
        assert_eq!(owner.child_text("name").as_deref(), Some("g"));
        assert_eq!(
            owner.child_text("uuid").as_deref(),
            Some("c7a5fdbd-cdaf-9455-926a-d65c16db1809")
        );
        assert_eq!(root.child_text("group").as_deref(), Some("web"));
        assert_eq!(
            root.child("mac").and_then(|m| m.attr("address")),
            Some("52:54:00:11:22:33")
        );
        assert!(root.child("bandwidth").is_some() && root.child("vlan").is_some());
        assert!(root.child("model").is_none() && root.child("uuid").is_none());
    }

    fn network_iface() -> Element {
        virtmesh_conf::xml::parse(
            "<interface type='network'><mac address='52:54:00:11:22:33'/>\
             <source network='default'/></interface>",
        )
        .expect("parse")
    }

    #[tokio::test]
    async fn without_a_network_service_libvirts_no_connect_error() {
        let e = NetPeer::new(None)
            .create_port(
                &network_iface(),
                "c7a5fdbd-cdaf-9455-926a-d65c16db1809",
                "g",
            )
            .await
            .expect_err("no peer");
        assert_eq!(e.code, ErrorCode::NoConnect);
        assert_eq!(
            e.message,
            "no connection driver available for network:///system"
        );
    }

    #[tokio::test]
    async fn a_network_service_that_is_down_fails_fast() {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = ListenAddr::Unix(dir.path().join("nobody.sock"));
        let started = std::time::Instant::now();
        let e = NetPeer::new(Some(&addr))
            .create_port(
                &network_iface(),
                "c7a5fdbd-cdaf-9455-926a-d65c16db1809",
                "g",
            )
            .await
            .expect_err("peer down");
        assert_eq!(e.code, ErrorCode::NoConnect, "{e}");
        assert!(e.message.contains(&addr.to_string()), "{e}");
        assert!(started.elapsed() < CALL_TIMEOUT);
    }

    #[test]
    fn plug_bridge_and_live_source() {
        assert_eq!(
            plug_bridge("<networkport><plug type='network' bridge='virbr3'/></networkport>")
                .as_deref(),
            Some("virbr3")
        );
        assert_eq!(plug_bridge("<networkport/>"), None);
        assert_eq!(
            plug_bridge("<networkport><plug type='direct' dev='eth0'/></networkport>"),
            None
        );
        let mut iface = virtmesh_conf::xml::parse(
            "<interface type='network'><model type='virtio'/><source network='default'/>\
             <mac address='52:54:00:11:22:33'/></interface>",
        )
        .expect("parse");
        show_port(
            &mut iface,
            &PortRecord {
                network: "default".into(),
                uuid: "2a8f3c32-1111-4c3d-9a0e-6b9e2f3d4c5b".into(),
                bridge: "virbr0".into(),
                direct: None,
                xml: String::new(),
            },
        );
        assert_eq!(
            iface.to_xml(),
            "<interface type='network'>\n  <mac address='52:54:00:11:22:33'/>\n  \
             <source network='default' portid='2a8f3c32-1111-4c3d-9a0e-6b9e2f3d4c5b' bridge='virbr0'/>\n  \
             <model type='virtio'/>\n</interface>\n"
        );
    }

    #[test]
    fn direct_plug_and_its_live_source() {
        let direct = DirectPlug {
            dev: "eth1".into(),
            mode: "vepa".into(),
        };
        assert_eq!(
            plug_of("<networkport><plug type='direct' dev='eth1' mode='vepa'/></networkport>"),
            Some(Plug::Direct(direct.clone()))
        );
        assert_eq!(
            plug_of("<networkport><plug type='direct'/></networkport>"),
            None
        );
        assert_eq!(
            plug_of("<networkport><plug type='hostdev-pci'/></networkport>"),
            None
        );
        let mut iface = network_iface();
        show_port(
            &mut iface,
            &PortRecord {
                network: "default".into(),
                uuid: "2a8f3c32-1111-4c3d-9a0e-6b9e2f3d4c5b".into(),
                bridge: String::new(),
                direct: Some(direct),
                xml: String::new(),
            },
        );
        assert!(
            iface.to_xml().contains(
                "<source network='default' portid='2a8f3c32-1111-4c3d-9a0e-6b9e2f3d4c5b' dev='eth1' mode='vepa'/>"
            ),
            "{}",
            iface.to_xml()
        );
        // A record written before direct plugs existed still loads.
        let old: PortRecord =
            serde_json::from_str(r#"{"network":"n","uuid":"u","bridge":"virbr0","xml":""}"#)
                .expect("old record");
        assert_eq!(old.direct, None);
    }
}
