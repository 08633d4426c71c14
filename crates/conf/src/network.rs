//! Network XML (`<network>`), normalised as libvirt's network parser does.

use crate::ConfError;
use crate::error::{parse_root, parse_uuid};
use crate::xml::{Element, Node};

const ORDER: &[&str] = &[
    "name",
    "uuid",
    "title",
    "description",
    "metadata",
    "forward",
    "port",
    "bridge",
    "mtu",
    "mac",
    "domain",
    "dns",
    "bandwidth",
    "vlan",
    "virtualport",
    "portgroup",
    "ip",
    "route",
    "*",
];

/// A network definition in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkDef {
    root: Element,
}

impl NetworkDef {
    pub fn parse(xml: &str) -> Result<Self, ConfError> {
        Self::from_element(parse_root(xml, "network")?)
    }

    pub fn from_element(mut root: Element) -> Result<Self, ConfError> {
        root.remove_attr("connections");
        let name = root
            .child_text("name")
            .map(|n| n.trim().to_owned())
            .unwrap_or_default();
        if name.is_empty() {
            return Err(ConfError::no_name());
        }
        if name.contains('/') {
            return Err(ConfError::xml(format!("name {name} cannot contain '/'")));
        }
        root.set_child_text("name", name);
        let uuid = parse_uuid(root.child_text("uuid"))?;
        root.set_child_text("uuid", uuid.to_string());
        let mut mode = None;
        if let Some(fwd) = root.child_mut("forward") {
            if fwd.attr("mode").is_none() {
                fwd.set_attr("mode", "nat");
            }
            fwd.order_attrs(&["mode", "dev"]);
            mode = fwd.attr("mode").map(str::to_owned);
        }
        let routed = matches!(
            mode.as_deref(),
            None | Some("nat") | Some("route") | Some("open")
        );
        if let Some(br) = root.child_mut("bridge") {
            if routed {
                if br.attr("stp").is_none() {
                    br.set_attr("stp", "on");
                }
                if br.attr("delay").is_none() {
                    br.set_attr("delay", "0");
                }
            }
            br.order_attrs(&["name", "zone", "stp", "delay", "macTableManager"]);
        }
        for ip in root.elements_mut().filter(|e| e.name == "ip") {
            ip.order_attrs(&["family", "address", "netmask", "prefix", "localPtr"]);
            // libvirt always prints <ip> open and closed on two lines.
            if ip.children.is_empty() {
                ip.children.push(Node::Break);
            }
        }
        root.sort_children(ORDER);
        Ok(NetworkDef { root })
    }

    pub fn to_xml(&self) -> String {
        self.root.to_xml()
    }

    pub fn name(&self) -> String {
        self.root.child_text("name").unwrap_or_default()
    }

    pub fn uuid(&self) -> String {
        self.root.child_text("uuid").unwrap_or_default()
    }

    pub fn bridge(&self) -> Option<String> {
        self.root
            .child("bridge")
            .and_then(|b| b.attr("name"))
            .map(str::to_owned)
    }

    pub fn element(&self) -> &Element {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_network_canonical() {
        let def = NetworkDef::parse(
            "<network><name>default</name><uuid>dd8fe884-6c02-601e-7551-cca97df1c5df</uuid><bridge name='virbr0'/><forward/><ip address='192.168.122.1' netmask='255.255.255.0'><dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip></network>",
        )
        .unwrap();
        let expected = "<network>
  <name>default</name>
  <uuid>dd8fe884-6c02-601e-7551-cca97df1c5df</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
";
        assert_eq!(def.to_xml(), expected);
        let n2 = NetworkDef::parse(
            "<network><name>n2</name><ip address='10.0.0.1' netmask='255.255.255.0'/></network>",
        )
        .unwrap();
        assert!(
            n2.to_xml()
                .contains("<ip address='10.0.0.1' netmask='255.255.255.0'>\n  </ip>\n")
        );
    }
}
