//! Network port XML (`<networkport>`, virNetworkPortDef): what a
//! hypervisor service hands the network driver for one guest interface,
//! and what it gets back with the `<plug>` filled in (the bridge to put
//! the tap on). Parsed into the generic element tree and put in libvirt's
//! canonical order.

use crate::error::{self as err, Result};
use virtmesh_conf::bandwidth::{Bandwidth, BandwidthContext};
use virtmesh_conf::xml::{Element, Node};

/// libvirt's element order in virNetworkPortDefFormatBuf.
const ORDER: &[&str] = &[
    "uuid",
    "owner",
    "group",
    "mac",
    "virtualport",
    "bandwidth",
    "vlan",
    "port",
    "rxfilters",
    "plug",
    "*",
];

/// A port definition in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortDef {
    root: Element,
}

fn invalid(msg: &str) -> crate::error::Result<PortDef> {
    Err(err::net(
        virtmesh_rpc::ErrorCode::XmlError,
        format!("XML error: {msg}"),
    ))
}

impl PortDef {
    /// Parse and check a port; a missing UUID is generated.
    pub fn parse(xml: &str) -> Result<PortDef> {
        let mut root = virtmesh_conf::xml::parse(xml).map_err(|e| err::conf(e.into()))?;
        if root.name != "networkport" {
            return invalid(&format!(
                "expecting root element of 'networkport', not '{}'",
                root.name
            ));
        }
        let uuid = match root.child_text("uuid") {
            Some(u) => virtmesh_conf::error::parse_uuid_str(u.trim())
                .ok_or_else(|| err::internal("Unable to parse UUID"))?,
            None => uuid::Uuid::new_v4(),
        };
        root.set_child_text("uuid", uuid.to_string());
        let owner = root.child("owner");
        if owner.and_then(|o| o.child_text("name")).is_none() {
            return invalid("missing owner name");
        }
        if owner.and_then(|o| o.child_text("uuid")).is_none() {
            return invalid("missing owner UUID");
        }
        let mac = root.child("mac").and_then(|m| m.attr("address"));
        match mac {
            None => return invalid("missing mac"),
            Some(m) if virtmesh_util::netlink::parse_mac(m).is_none() => {
                return invalid(&format!("unable to parse mac '{m}'"));
            }
            Some(_) => {}
        }
        Bandwidth::canonicalize(&mut root, BandwidthContext::PORT).map_err(err::conf)?;
        if let Some(o) = root.child_mut("owner") {
            o.sort_children(&["name", "uuid"]);
        }
        root.sort_children(ORDER);
        Ok(PortDef { root })
    }

    pub fn uuid(&self) -> String {
        self.root.child_text("uuid").unwrap_or_default()
    }

    pub fn mac(&self) -> String {
        self.root
            .child("mac")
            .and_then(|m| m.attr("address"))
            .unwrap_or_default()
            .to_owned()
    }

    pub fn owner(&self) -> (String, String) {
        let o = self.root.child("owner");
        (
            o.and_then(|o| o.child_text("uuid")).unwrap_or_default(),
            o.and_then(|o| o.child_text("name")).unwrap_or_default(),
        )
    }

    /// The portgroup the port asks for (`<group>`).
    pub fn group(&self) -> Option<String> {
        self.root.child_text("group").filter(|g| !g.is_empty())
    }

    /// The port's QoS and the class the network made on its bridge for
    /// the port's floor (`<bandwidth classID>`).
    pub fn bandwidth(&self) -> (Option<Bandwidth>, Option<u32>) {
        self.root
            .child("bandwidth")
            .and_then(|b| Bandwidth::parse(b, BandwidthContext::PORT).ok())
            .unwrap_or_default()
    }

    pub fn set_bandwidth(&mut self, bw: Option<&Bandwidth>, class_id: Option<u32>) {
        self.root.remove_children("bandwidth");
        if let Some(bw) = bw {
            self.root
                .children
                .push(Node::Element(bw.to_element(class_id)));
            self.root.sort_children(ORDER);
        }
    }

    /// What the port asks for that this driver cannot give yet (VLAN
    /// tags and virtual port profiles need OVS or SR-IOV support):
    /// refused, never silently dropped.
    pub fn unimplemented_feature(&self) -> Option<&'static str> {
        [
            ("vlan", "VLAN tags"),
            ("virtualport", "virtual port profiles"),
        ]
        .into_iter()
        .find(|(el, _)| self.root.child(el).is_some())
        .map(|(_, what)| what)
    }

    pub fn has_plug(&self) -> bool {
        self.root.child("plug").is_some()
    }

    /// Plug the port into a bridge: `type='network'` for a bridge the
    /// network made, `type='bridge'` for a host bridge (forward mode
    /// bridge), as libvirt's networkAllocatePort does.
    pub fn set_plug(&mut self, kind: &str, bridge: &str) {
        self.root.remove_children("plug");
        self.root.children.push(Node::Element(
            Element::new("plug")
                .with_attr("type", kind)
                .with_attr("bridge", bridge),
        ));
        self.root.sort_children(ORDER);
    }

    /// Plug the port into a macvtap on host interface `dev` with macvtap
    /// `mode` (`<plug type='direct' dev= mode=>`, networkAllocatePort for
    /// the direct forward modes).
    pub fn set_direct_plug(&mut self, dev: &str, mode: &str) {
        self.root.remove_children("plug");
        self.root.children.push(Node::Element(
            Element::new("plug")
                .with_attr("type", "direct")
                .with_attr("dev", dev)
                .with_attr("mode", mode),
        ));
        self.root.sort_children(ORDER);
    }

    /// `<plug type>`, when the port has a plug.
    pub fn plug_type(&self) -> Option<&str> {
        self.root.child("plug").and_then(|p| p.attr("type"))
    }

    /// The host interface of a direct plug (`<plug type='direct' dev>`).
    pub fn direct_dev(&self) -> Option<&str> {
        let plug = self.root.child("plug")?;
        (plug.attr("type") == Some("direct"))
            .then(|| plug.attr("dev"))
            .flatten()
    }

    pub fn to_xml(&self) -> String {
        self.root.to_xml()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_port_with_plug() {
        let mut p = PortDef::parse(
            "<networkport><mac address='52:54:00:aa:bb:cc'/><owner><uuid>14f6865f-355e-56c2-afd4-2f005da5b17b</uuid><name>g</name></owner><uuid>6522b7b1-97b1-5d83-b3c9-46f981b0c334</uuid></networkport>",
        )
        .expect("parse");
        p.set_plug("network", "virbr0");
        assert_eq!(
            p.to_xml(),
            "<networkport>
  <uuid>6522b7b1-97b1-5d83-b3c9-46f981b0c334</uuid>
  <owner>
    <name>g</name>
    <uuid>14f6865f-355e-56c2-afd4-2f005da5b17b</uuid>
  </owner>
  <mac address='52:54:00:aa:bb:cc'/>
  <plug type='network' bridge='virbr0'/>
</networkport>
"
        );
        assert!(
            PortDef::parse(
                "<networkport><owner><name>g</name><uuid>x</uuid></owner></networkport>"
            )
            .is_err()
        );
        assert_eq!(p.unimplemented_feature(), None);
        assert_eq!(p.direct_dev(), None);
        p.set_direct_plug("eth1", "vepa");
        assert!(
            p.to_xml()
                .contains("<plug type='direct' dev='eth1' mode='vepa'/>"),
            "{}",
            p.to_xml()
        );
        assert_eq!(p.direct_dev(), Some("eth1"));
        assert_eq!(p.plug_type(), Some("direct"));
        let qos = PortDef::parse(
            "<networkport><owner><name>g</name><uuid>14f6865f-355e-56c2-afd4-2f005da5b17b</uuid></owner>\
             <mac address='52:54:00:aa:bb:cc'/><bandwidth><inbound average='1000'/></bandwidth><vlan><tag id='4'/></vlan></networkport>",
        )
        .expect("parse");
        assert_eq!(qos.unimplemented_feature(), Some("VLAN tags"));
        assert_eq!(
            qos.bandwidth().0.and_then(|b| b.inbound).map(|r| r.average),
            Some(1000)
        );
    }
}
