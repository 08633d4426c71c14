//! Domain snapshot documents (libvirt's conf/snapshot_conf.c): what a
//! client asks for in `<domainsnapshot>`, and the document a driver hands
//! back — name, description, state, parent, creation time, memory and
//! per-disk snapshot kinds, and the domain definition at that time.

use crate::error::ConfError;
use crate::xml::{Element, Node};

/// What `SnapshotCreateXML` was given (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    /// `<memory snapshot=...>`: no, internal or external.
    pub memory: Option<String>,
    /// `<disks><disk name snapshot>`: target and kind per disk named.
    pub disks: Vec<(String, String)>,
}

impl SnapshotRequest {
    /// virDomainSnapshotDefParseString for a new snapshot; an empty
    /// document asks for every default.
    pub fn parse(xml: &str) -> Result<SnapshotRequest, ConfError> {
        if xml.trim().is_empty() {
            return Ok(SnapshotRequest::default());
        }
        let root = crate::xml::parse(xml)?;
        if root.name != "domainsnapshot" {
            return Err(ConfError::xml(format!(
                "unexpected root element <{}>, expecting <domainsnapshot>",
                root.name
            )));
        }
        let name = root
            .child_text("name")
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty());
        if let Some(n) = &name
            && n.contains('/')
        {
            return Err(ConfError::xml(format!(
                "invalid snapshot name '{n}': name can't contain '/'"
            )));
        }
        let memory = root
            .child("memory")
            .and_then(|m| m.attr("snapshot"))
            .map(str::to_owned);
        if let Some(m) = &memory
            && !["no", "internal", "external"].contains(&m.as_str())
        {
            return Err(ConfError::xml(format!(
                "unknown memory snapshot setting '{m}'"
            )));
        }
        let disks = root
            .child("disks")
            .map(|d| {
                d.children_named("disk")
                    .filter_map(|e| {
                        Some((
                            e.attr("name")?.to_owned(),
                            e.attr("snapshot").unwrap_or("internal").to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(SnapshotRequest {
            name,
            description: root.child_text("description"),
            memory,
            disks,
        })
    }
}

/// A snapshot as a driver keeps and shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotDef {
    pub name: String,
    pub description: Option<String>,
    pub parent: Option<String>,
    /// Seconds since the epoch.
    pub creation_time: i64,
    /// The domain state then ("running", "paused", "shutoff", ...).
    pub state: String,
    /// `no` or `internal`.
    pub memory: String,
    /// Disk targets and their snapshot kind, in the domain's order.
    pub disks: Vec<(String, String)>,
    /// The `<domain>` definition at the time.
    pub domain: Element,
}

impl SnapshotDef {
    /// virDomainSnapshotDefFormat; `current` adds libvirt's internal
    /// `<active>1</active>` (only in what a driver stores).
    pub fn to_element(&self, current: Option<bool>) -> Element {
        let mut root =
            Element::new("domainsnapshot").with_child(Element::new("name").with_text(&self.name));
        if let Some(desc) = &self.description {
            root = root.with_child(Element::new("description").with_text(desc));
        }
        root = root.with_child(Element::new("state").with_text(&self.state));
        if let Some(p) = &self.parent {
            root = root
                .with_child(Element::new("parent").with_child(Element::new("name").with_text(p)));
        }
        root = root
            .with_child(Element::new("creationTime").with_text(self.creation_time.to_string()))
            .with_child(Element::new("memory").with_attr("snapshot", &self.memory));
        if !self.disks.is_empty() {
            let mut disks = Element::new("disks");
            for (target, kind) in &self.disks {
                disks.children.push(Node::Element(
                    Element::new("disk")
                        .with_attr("name", target)
                        .with_attr("snapshot", kind),
                ));
            }
            root = root.with_child(disks);
        }
        root = root.with_child(self.domain.clone());
        if let Some(c) = current {
            root = root.with_child(Element::new("active").with_text(if c { "1" } else { "0" }));
        }
        root
    }

    pub fn to_xml(&self) -> String {
        self.to_element(None).to_xml()
    }

    /// A document [`SnapshotDef::to_element`] wrote (a driver's own
    /// store), and whether it was the current snapshot.
    pub fn from_saved(xml: &str) -> Result<(SnapshotDef, bool), ConfError> {
        let root = crate::xml::parse(xml)?;
        let text = |n: &str| root.child_text(n).map(|t| t.trim().to_owned());
        let name = text("name").ok_or_else(|| ConfError::xml("a snapshot must have a name"))?;
        let domain = root
            .child("domain")
            .cloned()
            .ok_or_else(|| ConfError::xml("a saved snapshot needs its domain"))?;
        let def = SnapshotDef {
            name,
            description: root.child_text("description"),
            parent: root
                .child("parent")
                .and_then(|p| p.child_text("name"))
                .map(|n| n.trim().to_owned()),
            creation_time: text("creationTime")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
            state: text("state").unwrap_or_else(|| "shutoff".into()),
            memory: root
                .child("memory")
                .and_then(|m| m.attr("snapshot"))
                .unwrap_or("no")
                .to_owned(),
            disks: root
                .child("disks")
                .map(|d| {
                    d.children_named("disk")
                        .filter_map(|e| {
                            Some((
                                e.attr("name")?.to_owned(),
                                e.attr("snapshot").unwrap_or("internal").to_owned(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            domain,
        };
        Ok((def, text("active").as_deref() == Some("1")))
    }
}

/// The names of every descendant of `name` (children first).
pub fn descendants<'a>(
    snaps: impl Iterator<Item = (&'a str, Option<&'a str>)> + Clone,
    name: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![name.to_owned()];
    while let Some(n) = todo.pop() {
        for (child, _) in snaps.clone().filter(|(_, p)| *p == Some(n.as_str())) {
            out.push(child.to_owned());
            todo.push(child.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_saved_document() {
        let r = SnapshotRequest::parse(
            "<domainsnapshot><name> s1 </name><description>before upgrade</description>\
             <memory snapshot='internal'/><disks><disk name='vda'/></disks></domainsnapshot>",
        )
        .expect("valid");
        assert_eq!(r.name.as_deref(), Some("s1"));
        assert_eq!(r.disks, [("vda".to_owned(), "internal".to_owned())]);
        assert!(SnapshotRequest::parse("<domain/>").is_err());
        assert!(
            SnapshotRequest::parse("<domainsnapshot><name>a/b</name></domainsnapshot>").is_err()
        );
        let def = SnapshotDef {
            name: "s1".into(),
            description: None,
            parent: Some("s0".into()),
            creation_time: 1_700_000_000,
            state: "running".into(),
            memory: "internal".into(),
            disks: vec![("vda".into(), "internal".into())],
            domain: Element::new("domain").with_attr("type", "kvm"),
        };
        let xml = def.to_xml();
        assert_eq!(
            xml,
            "<domainsnapshot>\n  <name>s1</name>\n  <state>running</state>\n  <parent>\n    <name>s0</name>\n  </parent>\n  \
             <creationTime>1700000000</creationTime>\n  <memory snapshot='internal'/>\n  <disks>\n    \
             <disk name='vda' snapshot='internal'/>\n  </disks>\n  <domain type='kvm'/>\n</domainsnapshot>\n"
        );
        let stored = def.to_element(Some(true)).to_xml();
        assert_eq!(
            SnapshotDef::from_saved(&stored).expect("saved"),
            (def, true)
        );
        let tree = [("a", None), ("b", Some("a")), ("c", Some("b")), ("d", None)];
        assert_eq!(descendants(tree.iter().copied(), "a"), ["b", "c"]);
    }
}
