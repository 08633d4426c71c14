//! The smaller documents: host interfaces, node devices, secrets, network
//! filters and filter bindings.  They are kept as trees with light
//! normalisation; the accessors give drivers the keys they index by.

use crate::ConfError;
use crate::error::{parse_root, parse_uuid};
use crate::xml::{Element, Node};

/// Parse with libvirt's "expecting root element" wording used by the
/// secret and nwfilter parsers.
fn parse_expecting(xml: &str, root: &str) -> Result<Element, ConfError> {
    let el = crate::xml::parse(xml)?;
    if el.name != root {
        return Err(ConfError::xml(format!(
            "expecting root element of '{root}', not '{}'",
            el.name
        )));
    }
    Ok(el)
}

/// A host interface (`<interface type='ethernet' name='eth1'>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceDef {
    pub root: Element,
}

impl InterfaceDef {
    pub fn parse(xml: &str) -> Result<Self, ConfError> {
        Self::from_element(parse_root(xml, "interface")?)
    }

    pub fn from_element(mut root: Element) -> Result<Self, ConfError> {
        if root.attr("type").is_none() {
            return Err(ConfError::xml("interface has no type"));
        }
        if root.attr("name").unwrap_or("").is_empty() {
            return Err(ConfError::xml("interface has no name"));
        }
        root.order_attrs(&["type", "name"]);
        root.sort_children(&[
            "start", "mtu", "protocol", "*", "mac", "link", "bridge", "bond", "vlan",
        ]);
        Ok(InterfaceDef { root })
    }

    pub fn name(&self) -> String {
        self.root.attr("name").unwrap_or("").to_owned()
    }

    pub fn mac(&self) -> String {
        self.root
            .child("mac")
            .and_then(|m| m.attr("address"))
            .unwrap_or("")
            .to_owned()
    }

    pub fn to_xml(&self) -> String {
        self.root.to_xml()
    }
}

/// A node device (`<device>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDeviceDef {
    pub root: Element,
}

impl NodeDeviceDef {
    pub fn parse(xml: &str) -> Result<Self, ConfError> {
        Self::from_element(parse_root(xml, "device")?)
    }

    /// Parse a device to be created (virNodeDeviceCreateXML): its name is
    /// chosen by the driver, so it may be left out.
    pub fn parse_new(xml: &str) -> Result<Self, ConfError> {
        let mut root = parse_root(xml, "device")?;
        if root.child("name").is_none() {
            root.children.insert(
                0,
                Node::Element(Element::new("name").with_text("new_device")),
            );
        }
        Self::from_element(root)
    }

    pub fn from_element(root: Element) -> Result<Self, ConfError> {
        if root
            .child_text("name")
            .unwrap_or_default()
            .trim()
            .is_empty()
        {
            return Err(ConfError::no_name());
        }
        if root.child("capability").is_none() {
            return Err(ConfError::xml("no device capabilities for 'device'"));
        }
        Ok(NodeDeviceDef { root })
    }

    pub fn name(&self) -> String {
        self.root
            .child_text("name")
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    pub fn parent(&self) -> Option<String> {
        self.root.child_text("parent").map(|p| p.trim().to_owned())
    }

    /// Capability types, including nested ones (fc_host, vport_ops) as
    /// libvirt's list filters see them.
    pub fn caps(&self) -> Vec<String> {
        let mut caps = Vec::new();
        for cap in self.root.children_named("capability") {
            if let Some(t) = cap.attr("type") {
                caps.push(t.to_owned());
            }
            for inner in cap.children_named("capability") {
                if let Some(t) = inner.attr("type") {
                    caps.push(t.to_owned());
                }
            }
        }
        caps
    }

    /// (wwnn, wwpn) of an fc_host capability.
    pub fn wwn(&self) -> Option<(String, String)> {
        let cap = self
            .root
            .children_named("capability")
            .find(|c| c.attr("type") == Some("scsi_host"))?;
        let fc = cap
            .children_named("capability")
            .find(|c| c.attr("type") == Some("fc_host"))?;
        Some((fc.child_text("wwnn")?, fc.child_text("wwpn")?))
    }

    pub fn to_xml(&self) -> String {
        self.root.to_xml()
    }
}

/// libvirt's secret usage types, with the element naming the usage id.
pub const SECRET_USAGES: &[(&str, &str, &str)] = &[
    (
        "volume",
        "volume",
        "volume usage specified, but volume path is missing",
    ),
    ("ceph", "name", "Ceph usage specified, but name is missing"),
    (
        "iscsi",
        "target",
        "iSCSI usage specified, but target is missing",
    ),
    ("tls", "name", "TLS usage specified, but name is missing"),
    ("vtpm", "name", "vTPM usage specified, but name is missing"),
];

/// A secret definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDef {
    pub uuid: String,
    pub ephemeral: bool,
    pub private: bool,
    pub description: Option<String>,
    /// (usage type, usage id); None for usage-less secrets.
    pub usage: Option<(String, String)>,
}

fn yes_no(root: &Element, attr: &str) -> Result<bool, ConfError> {
    match root.attr(attr) {
        None | Some("no") => Ok(false),
        Some("yes") => Ok(true),
        Some(_) => Err(ConfError::xml(format!("invalid value of '{attr}'"))),
    }
}

impl SecretDef {
    pub fn parse(xml: &str) -> Result<Self, ConfError> {
        let root = parse_expecting(xml, "secret")?;
        let ephemeral = yes_no(&root, "ephemeral")?;
        let private = yes_no(&root, "private")?;
        let uuid = parse_uuid(root.child_text("uuid"))?.to_string();
        let usage = match root.child("usage") {
            None => None,
            Some(u) => {
                let ty = u.attr("type").unwrap_or("");
                let (_, elem, missing) = SECRET_USAGES
                    .iter()
                    .find(|(t, _, _)| *t == ty)
                    .ok_or_else(|| {
                        ConfError::internal(format!("unknown secret usage type {ty}"))
                    })?;
                let id = u
                    .child_text(elem)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| ConfError::internal(*missing))?;
                Some((ty.to_owned(), id))
            }
        };
        Ok(SecretDef {
            uuid,
            ephemeral,
            private,
            description: root.child_text("description").filter(|d| !d.is_empty()),
            usage,
        })
    }

    pub fn to_xml(&self) -> String {
        let yn = |b: bool| if b { "yes" } else { "no" };
        let mut root = Element::new("secret")
            .with_attr("ephemeral", yn(self.ephemeral))
            .with_attr("private", yn(self.private))
            .with_child(Element::new("uuid").with_text(&self.uuid));
        if let Some(d) = &self.description {
            root = root.with_child(Element::new("description").with_text(d));
        }
        if let Some((ty, id)) = &self.usage {
            let elem = SECRET_USAGES
                .iter()
                .find(|(t, _, _)| t == ty)
                .map(|u| u.1)
                .unwrap_or("name");
            root = root.with_child(
                Element::new("usage")
                    .with_attr("type", ty)
                    .with_child(Element::new(elem).with_text(id)),
            );
        }
        root.to_xml()
    }
}

/// A network filter (`<filter name=...>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NwFilterDef {
    pub root: Element,
}

impl NwFilterDef {
    pub fn parse(xml: &str) -> Result<Self, ConfError> {
        let mut root = parse_expecting(xml, "filter")?;
        if root.attr("name").unwrap_or("").is_empty() {
            return Err(ConfError::internal("filter has no name"));
        }
        if let Some(chain) = root.attr("chain") {
            let ok = chain == "root"
                || ["mac", "vlan", "stp", "arp", "rarp", "ipv4", "ipv6"]
                    .iter()
                    .any(|p| chain.starts_with(p));
            if !ok {
                return Err(ConfError::invalid_arg(format!(
                    "Invalid chain name '{chain}'. Please use a chain name called 'root' or any of the following prefixes: mac, vlan, stp, arp, rarp, ipv4, ipv6"
                )));
            }
            if chain.len() > 12 {
                return Err(ConfError::invalid_arg(
                    "Name of chain is longer than 12 characters",
                ));
            }
        }
        let uuid = parse_uuid(root.child_text("uuid"))?.to_string();
        root.remove_children("uuid");
        root.children
            .insert(0, Node::Element(Element::new("uuid").with_text(uuid)));
        let chain = root.attr("chain").unwrap_or("root").to_owned();
        root.set_attr("chain", chain.clone());
        if chain == "root" {
            // The root chain has a fixed priority that is never printed.
            root.remove_attr("priority");
        } else if root.attr("priority").is_none()
            && let Some(p) = crate::nwfilter::chain_priority(&chain)
        {
            root.set_attr("priority", p);
        }
        root.order_attrs(&["name", "chain", "priority"]);
        for rule in root.elements_mut().filter(|e| e.name == "rule") {
            match rule.attr("action") {
                Some("drop" | "accept" | "reject" | "return" | "continue") => {}
                other => {
                    return Err(ConfError::xml(format!(
                        "Invalid value for attribute 'action' in element 'rule': '{}'.",
                        other.unwrap_or("")
                    )));
                }
            }
            if rule.attr("priority").is_none() {
                rule.set_attr("priority", "500");
            }
            crate::nwfilter::normalize_rule(rule)?;
            rule.order_attrs(&["action", "direction", "priority", "statematch"]);
        }
        for fref in root.elements().filter(|e| e.name == "filterref") {
            if fref.attr("filter").is_none() {
                return Err(ConfError::xml(
                    "Missing required attribute 'filter' in element 'filterref'",
                ));
            }
        }
        Ok(NwFilterDef { root })
    }

    pub fn name(&self) -> String {
        self.root.attr("name").unwrap_or("").to_owned()
    }

    pub fn uuid(&self) -> String {
        self.root.child_text("uuid").unwrap_or_default()
    }

    pub fn to_xml(&self) -> String {
        self.root.to_xml()
    }
}

/// A filter binding (`<filterbinding>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NwFilterBindingDef {
    pub root: Element,
}

impl NwFilterBindingDef {
    pub fn parse(xml: &str) -> Result<Self, ConfError> {
        let root = parse_root(xml, "filterbinding")?;
        let def = NwFilterBindingDef { root };
        if def.owner_name().is_empty() {
            return Err(ConfError::xml("owner name must be specified"));
        }
        if def.port_dev().is_empty() {
            return Err(ConfError::xml("missing portdev name"));
        }
        if def.filter().is_empty() {
            return Err(ConfError::xml("missing filter reference"));
        }
        Ok(def)
    }

    pub fn port_dev(&self) -> String {
        self.root
            .child("portdev")
            .and_then(|p| p.attr("name"))
            .unwrap_or("")
            .to_owned()
    }

    pub fn filter(&self) -> String {
        self.root
            .child("filterref")
            .and_then(|p| p.attr("filter"))
            .unwrap_or("")
            .to_owned()
    }

    pub fn owner_name(&self) -> String {
        self.root
            .child("owner")
            .and_then(|o| o.child_text("name"))
            .unwrap_or_default()
    }

    pub fn owner_uuid(&self) -> String {
        self.root
            .child("owner")
            .and_then(|o| o.child_text("uuid"))
            .unwrap_or_default()
    }

    pub fn mac(&self) -> String {
        self.root
            .child("mac")
            .and_then(|p| p.attr("address"))
            .unwrap_or("")
            .to_owned()
    }

    pub fn to_xml(&self) -> String {
        self.root.to_xml()
    }
}
