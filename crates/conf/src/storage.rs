//! Storage pool and volume XML.  Pools are formatted from their fields (the
//! sizes are live values), volumes likewise.

use crate::ConfError;
use crate::error::{parse_root, parse_uuid};
use crate::units::scale_to_bytes;
use crate::xml::{Element, Node};

const POOL_TYPES: &[&str] = &[
    "dir",
    "fs",
    "netfs",
    "logical",
    "disk",
    "iscsi",
    "iscsi-direct",
    "scsi",
    "mpath",
    "rbd",
    "sheepdog",
    "gluster",
    "zfs",
    "vstorage",
];

/// A storage pool definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDef {
    pub pool_type: String,
    pub name: String,
    pub uuid: String,
    /// `<source>` as given (None when absent).
    pub source: Option<Element>,
    /// `<target>` as given (path sanitised).
    pub target: Option<Element>,
    /// `<features>`, kept as given.
    pub features: Option<Element>,
    /// Namespace declarations on the root (`xmlns:fs=...`).
    pub ns_attrs: Vec<(String, String)>,
    /// Elements after `<target>`: `<refresh>`, namespaced options.
    pub extra: Vec<Element>,
}

/// virFileSanitizePath: collapse repeated slashes and drop a trailing one.
pub fn sanitize_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    if out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    out
}

impl PoolDef {
    pub fn parse(xml: &str) -> Result<Self, ConfError> {
        Self::from_element(parse_root(xml, "pool")?)
    }

    pub fn from_element(root: Element) -> Result<Self, ConfError> {
        let pool_type = root.attr("type").unwrap_or("").to_owned();
        if !POOL_TYPES.contains(&pool_type.as_str()) {
            return Err(ConfError::xml(format!(
                "Invalid value for attribute 'type' in element 'pool': '{pool_type}'."
            )));
        }
        let name = root
            .child_text("name")
            .map(|n| n.trim().to_owned())
            .unwrap_or_default();
        if name.is_empty() {
            return Err(ConfError::xml("missing pool source name element"));
        }
        if name.contains('/') {
            return Err(ConfError::xml(format!("name {name} cannot contain '/'")));
        }
        let uuid = parse_uuid(root.child_text("uuid"))
            .map_err(|_| ConfError::xml("malformed uuid element"))?
            .to_string();
        let mut target = root.child("target").cloned();
        if let Some(t) = target.as_mut()
            && let Some(p) = t.child_text("path")
        {
            t.set_child_text("path", sanitize_path(p.trim()));
        }
        let mut source = root.child("source").cloned();
        let src_has = |name: &str| source.as_ref().is_some_and(|s| s.child(name).is_some());
        if matches!(
            pool_type.as_str(),
            "netfs" | "rbd" | "gluster" | "iscsi" | "sheepdog"
        ) && !src_has("host")
        {
            return Err(ConfError::xml("missing storage pool source host name"));
        }
        if pool_type == "scsi" && !src_has("adapter") {
            return Err(ConfError::xml("missing storage pool source adapter"));
        }
        let default_format = match pool_type.as_str() {
            "fs" | "netfs" => Some("auto"),
            "logical" => Some("lvm2"),
            "disk" => Some("unknown"),
            _ => None,
        };
        if let Some(fmt) = default_format {
            let src = source.get_or_insert_with(|| Element::new("source"));
            if src.child("format").is_none() {
                src.children
                    .push(Node::Element(Element::new("format").with_attr("type", fmt)));
            }
        }
        let known = [
            "name",
            "uuid",
            "capacity",
            "allocation",
            "available",
            "features",
            "source",
            "target",
        ];
        let extra = root
            .elements()
            .filter(|e| !known.contains(&e.name.as_str()))
            .cloned()
            .collect();
        let ns_attrs = root
            .attrs
            .iter()
            .filter(|(k, _)| k.starts_with("xmlns"))
            .cloned()
            .collect();
        if matches!(
            pool_type.as_str(),
            "dir" | "fs" | "netfs" | "logical" | "disk"
        ) && target.as_ref().and_then(|t| t.child_text("path")).is_none()
        {
            return Err(ConfError::xml("missing storage pool target path"));
        }
        Ok(PoolDef {
            pool_type,
            name,
            uuid,
            source,
            target,
            features: root.child("features").cloned(),
            ns_attrs,
            extra,
        })
    }

    /// The target path (`/default-pool`).
    pub fn target_path(&self) -> String {
        self.target
            .as_ref()
            .and_then(|t| t.child_text("path"))
            .map(|p| p.trim().to_owned())
            .unwrap_or_default()
    }

    /// Format with the given sizes in bytes.
    pub fn to_xml(&self, capacity: u64, allocation: u64, available: u64) -> String {
        let mut root = Element::new("pool").with_attr("type", &self.pool_type);
        for (k, v) in &self.ns_attrs {
            root.set_attr(k, v.clone());
        }
        root = root
            .with_child(Element::new("name").with_text(&self.name))
            .with_child(Element::new("uuid").with_text(&self.uuid))
            .with_child(
                Element::new("capacity")
                    .with_attr("unit", "bytes")
                    .with_text(capacity.to_string()),
            )
            .with_child(
                Element::new("allocation")
                    .with_attr("unit", "bytes")
                    .with_text(allocation.to_string()),
            )
            .with_child(
                Element::new("available")
                    .with_attr("unit", "bytes")
                    .with_text(available.to_string()),
            );
        let mut source = self
            .source
            .clone()
            .unwrap_or_else(|| Element::new("source"));
        if source.children.is_empty() {
            // libvirt prints an empty <source> on two lines.
            source.children.push(Node::Break);
        }
        root = root.with_child(source);
        if let Some(t) = &self.target {
            root = root.with_child(t.clone());
        }
        for e in &self.extra {
            root = root.with_child(e.clone());
        }
        root.to_xml()
    }
}

/// A storage volume definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolDef {
    pub name: String,
    pub capacity: u64,
    pub allocation: u64,
    pub format: String,
    /// Extra `<target>` children (permissions, ...), kept as given.
    pub target_extra: Vec<Element>,
}

fn sized(root: &Element, name: &str) -> Result<Option<u64>, ConfError> {
    match root.child(name) {
        None => Ok(None),
        Some(el) => {
            let text = el.text();
            let value: u64 = text
                .trim()
                .parse()
                .map_err(|_| ConfError::xml(format!("malformed {name} element")))?;
            Ok(Some(scale_to_bytes(value, el.attr("unit"), "bytes")?))
        }
    }
}

impl VolDef {
    pub fn parse(xml: &str) -> Result<Self, ConfError> {
        let root = parse_root(xml, "volume")?;
        let name = root
            .child_text("name")
            .map(|n| n.trim().to_owned())
            .unwrap_or_default();
        if name.is_empty() {
            return Err(ConfError::no_name());
        }
        if name.contains('/') {
            return Err(ConfError::xml(format!(
                "volume name '{name}' cannot contain '/'"
            )));
        }
        let capacity =
            sized(&root, "capacity")?.ok_or_else(|| ConfError::xml("missing capacity element"))?;
        let allocation = sized(&root, "allocation")?.unwrap_or(capacity);
        let target = root.child("target");
        let format = target
            .and_then(|t| t.child("format"))
            .and_then(|f| f.attr("type"))
            .unwrap_or("raw")
            .to_owned();
        let target_extra = target
            .map(|t| {
                t.elements()
                    .filter(|e| e.name != "format" && e.name != "path")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Ok(VolDef {
            name,
            capacity,
            allocation,
            format,
            target_extra,
        })
    }

    /// Format as libvirt's test driver does for a file volume at `path`.
    pub fn to_xml(&self, path: &str) -> String {
        let mut target = Element::new("target")
            .with_child(Element::new("path").with_text(path))
            .with_child(Element::new("format").with_attr("type", &self.format));
        for extra in &self.target_extra {
            target = target.with_child(extra.clone());
        }
        Element::new("volume")
            .with_attr("type", "file")
            .with_child(Element::new("name").with_text(&self.name))
            .with_child(Element::new("key").with_text(path))
            .with_child(
                Element::new("capacity")
                    .with_attr("unit", "bytes")
                    .with_text(self.capacity.to_string()),
            )
            .with_child(
                Element::new("allocation")
                    .with_attr("unit", "bytes")
                    .with_text(self.allocation.to_string()),
            )
            .with_child(target)
            .to_xml()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_format() {
        let v = VolDef::parse("<volume><name>v1</name><capacity unit='M'>10</capacity><allocation>0</allocation></volume>").unwrap();
        assert_eq!(
            v.to_xml("/default-pool/v1"),
            "<volume type='file'>\n  <name>v1</name>\n  <key>/default-pool/v1</key>\n  <capacity unit='bytes'>10485760</capacity>\n  <allocation unit='bytes'>0</allocation>\n  <target>\n    <path>/default-pool/v1</path>\n    <format type='raw'/>\n  </target>\n</volume>\n"
        );
    }
}
