//! virsh's device-update commands (tools/virsh-domain.c): update-device
//! sends a document as is; change-media and domif-setlink take the
//! device from the domain's XML, change its `<source>` or `<link>`, and
//! send that (virDomainUpdateDeviceFlags).

use virtmesh_proto::v1;

use super::devices::{DevImpact, DeviceOp, domain_doc, send};
use super::domain::lookup;
use super::snapshot::xml_escape;
use super::{CmdError, CmdResult, Ctl};
use crate::lookup::{Kinds, by_uuid};

/// `update-device DOMAIN FILE [--force]`.
pub async fn update_device(
    ctl: &Ctl,
    key: &str,
    file: &str,
    imp: DevImpact,
    force: bool,
) -> CmdResult {
    imp.check()?;
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let xml = super::util::read_file(file).map_err(CmdError::msg)?;
    send(
        ctl,
        &d.uuid,
        xml,
        imp.impact(d.id >= 0),
        DeviceOp::Update { force },
    )
    .await
    .map_err(|e| CmdError::ctx(format!("Failed to update device from {file}"), e))?;
    ctl.extra("Device updated successfully\n");
    Ok(())
}

/// The span of `<NAME ...>…</NAME>` or `<NAME .../>` in `xml` (the first
/// one after `from`).
fn element_span(xml: &str, name: &str, from: usize) -> Option<(usize, usize)> {
    let open = format!("<{name}");
    let mut at = from;
    let start = loop {
        let i = at + xml[at..].find(&open)?;
        // `<sourcex` is not `<source`.
        match xml[i + open.len()..].chars().next() {
            Some(c) if c.is_whitespace() || c == '/' || c == '>' => break i,
            _ => at = i + open.len(),
        }
    };
    let tag_end = start + xml[start..].find('>')?;
    if xml[..tag_end].ends_with('/') {
        return Some((start, tag_end + 1));
    }
    let close = format!("</{name}>");
    let end = tag_end + xml[tag_end..].find(&close)? + close.len();
    Some((start, end))
}

/// Remove an element and the indentation and line it stood on.
fn remove_element(xml: &str, name: &str) -> String {
    let Some((mut start, mut end)) = element_span(xml, name, 0) else {
        return xml.to_owned();
    };
    while start > 0 && xml.as_bytes()[start - 1] == b' ' {
        start -= 1;
    }
    if xml.as_bytes().get(end) == Some(&b'\n') {
        end += 1;
    }
    format!("{}{}", &xml[..start], &xml[end..])
}

/// Insert `line` as the last child of the device's root element.
fn append_child(xml: &str, root: &str, line: &str) -> String {
    let close = format!("</{root}>");
    match xml.rfind(&close) {
        Some(i) => format!("{}  {line}\n{}", &xml[..i], &xml[i..]),
        None => xml.to_owned(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaAction {
    Eject,
    Insert,
    Update,
}

impl MediaAction {
    /// virsh's choice: one of --eject/--insert/--update, update when none.
    pub fn from_flags(eject: bool, insert: bool, update: bool) -> Result<Self, CmdError> {
        for (a, an, b, bn) in [
            (eject, "eject", insert, "insert"),
            (eject, "eject", update, "update"),
            (insert, "insert", update, "update"),
        ] {
            if a && b {
                return Err(CmdError::msg(format!(
                    "Options --{an} and --{bn} are mutually exclusive"
                )));
            }
        }
        Ok(if eject {
            MediaAction::Eject
        } else if insert {
            MediaAction::Insert
        } else {
            MediaAction::Update
        })
    }

    fn past(self) -> &'static str {
        match self {
            MediaAction::Eject => "ejected",
            MediaAction::Insert => "inserted",
            MediaAction::Update => "updated",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            MediaAction::Eject => "eject",
            MediaAction::Insert => "insert",
            MediaAction::Update => "update",
        }
    }
}

/// virshUpdateDiskXML: the drive's device document with its medium
/// removed, or replaced by `source`.
pub fn media_xml(
    disk: &str,
    target: &str,
    has_media: bool,
    action: MediaAction,
    source: Option<&str>,
    block: bool,
) -> Result<String, CmdError> {
    match action {
        MediaAction::Eject if !has_media => {
            return Err(CmdError::msg(format!(
                "The disk device '{target}' doesn't have media"
            )));
        }
        MediaAction::Insert if has_media => {
            return Err(CmdError::msg(format!(
                "The disk device '{target}' already has media"
            )));
        }
        MediaAction::Insert if source.is_none() => {
            return Err(CmdError::msg("No source is specified for inserting media"));
        }
        _ => {}
    }
    let mut xml = remove_element(disk, "source");
    if action != MediaAction::Eject
        && let Some(src) = source
    {
        let attr = if block { "dev" } else { "file" };
        xml = append_child(
            &xml,
            "disk",
            &format!("<source {attr}='{}'/>", xml_escape(src)),
        );
    }
    Ok(xml)
}

/// change-media's options, gathered by the CLI.
#[derive(Debug, Clone)]
pub struct ChangeMedia<'a> {
    pub path: &'a str,
    pub source: Option<&'a str>,
    pub action: MediaAction,
    pub force: bool,
    pub print_xml: bool,
    pub block: bool,
}

/// `change-media DOMAIN PATH [SOURCE] [--eject|--insert|--update]`.
pub async fn change_media(ctl: &Ctl, key: &str, m: ChangeMedia<'_>, imp: DevImpact) -> CmdResult {
    imp.check()?;
    if m.action == MediaAction::Eject && m.source.is_some() {
        return Err(CmdError::msg(
            "Options --eject and --source are mutually exclusive",
        ));
    }
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let config_only = imp.args.config && !imp.args.live;
    let doc = domain_doc(ctl, &d.uuid, config_only || d.id < 0).await?;
    let root =
        super::xml::parse(&doc).map_err(|_| CmdError::msg("Failed to get disk information"))?;
    let i = super::devices::pick_disk(&root, m.path)?;
    let disks: Vec<&super::xml::Element> = root
        .child("devices")
        .into_iter()
        .flat_map(|d| d.children_named("disk"))
        .collect();
    let disk = disks[i];
    if !matches!(disk.attr("device"), Some("cdrom" | "floppy")) {
        return Err(CmdError::msg(format!(
            "The disk device '{}' is not removable",
            m.path
        )));
    }
    let target = disk.child_attr("target", &["dev"]).unwrap_or(m.path);
    let has_media = disk.child("source").is_some();
    let dumped =
        super::xml::dump_device(&doc, "disk", i, &["backingStore"]).map_err(CmdError::msg)?;
    let block = m.block || disk.attr("type") == Some("block");
    let xml = media_xml(&dumped, target, has_media, m.action, m.source, block)?;
    if m.print_xml {
        ctl.print(&xml);
        return Ok(());
    }
    send(
        ctl,
        &d.uuid,
        xml,
        imp.impact(d.id >= 0),
        DeviceOp::Update { force: m.force },
    )
    .await
    .map_err(|e| {
        CmdError::ctx(
            format!("Failed to complete action {} on media", m.action.verb()),
            e,
        )
    })?;
    ctl.extra(&format!("Successfully {} media.\n", m.action.past()));
    Ok(())
}

/// The interface document with `<link state>` set.
pub fn link_xml(iface: &str, state: &str) -> String {
    let xml = remove_element(iface, "link");
    append_child(&xml, "interface", &format!("<link state='{state}'/>"))
}

fn exclusive_run_flags(running: bool, paused: bool) -> Result<(), CmdError> {
    if running && paused {
        return Err(CmdError::msg(
            "Options --running and --paused are mutually exclusive",
        ));
    }
    Ok(())
}

/// `save DOMAIN FILE [--running|--paused]` (virDomainSaveFlags).
pub async fn save(ctl: &Ctl, key: &str, file: &str, running: bool, paused: bool) -> CmdResult {
    exclusive_run_flags(running, paused)?;
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    ctl.conn
        .domain()
        .save(v1::SaveRequest {
            domain: Some(by_uuid(d.uuid.clone())),
            path: file.to_owned(),
            running,
            paused,
        })
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to save domain '{}' to {file}", d.name),
                crate::Error::from(e),
            )
        })?;
    ctl.extra(&format!("\nDomain '{}' saved to {file}\n", d.name));
    Ok(())
}

/// `restore FILE [--running|--paused]` (virDomainRestoreFlags).
pub async fn restore(ctl: &Ctl, file: &str, running: bool, paused: bool) -> CmdResult {
    exclusive_run_flags(running, paused)?;
    ctl.conn
        .domain()
        .restore(v1::RestoreRequest {
            path: file.to_owned(),
            running,
            paused,
        })
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to restore domain from {file}"),
                crate::Error::from(e),
            )
        })?;
    ctl.extra(&format!("Domain restored from {file}\n"));
    Ok(())
}

/// The interface `iface` names (MAC or host device) in a domain
/// document, with its index among the interfaces, and whether it was
/// named by MAC.
fn find_iface<'a>(
    root: &'a super::xml::Element,
    iface: &str,
) -> (Option<(usize, &'a super::xml::Element)>, bool) {
    let by_mac = iface.contains(':') && iface.len() == 17;
    let found = root
        .child("devices")
        .into_iter()
        .flat_map(|d| d.children_named("interface"))
        .enumerate()
        .find(|(_, i)| {
            if by_mac {
                i.child_attr("mac", &["address"])
                    .is_some_and(|m| m.eq_ignore_ascii_case(iface))
            } else {
                i.child_attr("target", &["dev"]) == Some(iface)
            }
        });
    (found, by_mac)
}

/// `domif-getlink DOMAIN INTERFACE [--config]`: "IFACE up|down".
pub async fn domif_getlink(ctl: &Ctl, key: &str, iface: &str, config: bool) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let doc = domain_doc(ctl, &d.uuid, config || d.id < 0).await?;
    let root = super::xml::parse(&doc)
        .map_err(|_| CmdError::msg("Failed to get interface information"))?;
    let (found, by_mac) = find_iface(&root, iface);
    let Some((_, found)) = found else {
        let how = if by_mac { "mac" } else { "dev" };
        return Err(CmdError::msg(format!(
            "Interface ({how}: {iface}) not found."
        )));
    };
    let state = found.child_attr("link", &["state"]).unwrap_or("up");
    ctl.print(&format!("{iface} {state}\n"));
    Ok(())
}

/// `domif-setlink DOMAIN INTERFACE up|down [--config]`: the interface by
/// its MAC or host device name.
pub async fn domif_setlink(
    ctl: &Ctl,
    key: &str,
    iface: &str,
    state: &str,
    config: bool,
) -> CmdResult {
    if state != "up" && state != "down" {
        return Err(CmdError::msg(format!("invalid link state '{state}'")));
    }
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let inactive = config || d.id < 0;
    let doc = domain_doc(ctl, &d.uuid, inactive).await?;
    let root = super::xml::parse(&doc)
        .map_err(|_| CmdError::msg("Failed to get interface information"))?;
    let (found, by_mac) = find_iface(&root, iface);
    let Some((i, _)) = found else {
        let how = if by_mac { "mac" } else { "dev" };
        return Err(CmdError::msg(format!(
            "interface ({how}: {iface}) not found"
        )));
    };
    let dumped = super::xml::dump_device(&doc, "interface", i, &[]).map_err(CmdError::msg)?;
    let imp = v1::Impact {
        live: !inactive,
        config: inactive,
        current: false,
    };
    send(
        ctl,
        &d.uuid,
        link_xml(&dumped, state),
        imp,
        DeviceOp::Update { force: false },
    )
    .await
    .map_err(|e| CmdError::ctx("Failed to update interface link state", e))?;
    ctl.extra("Device updated successfully\n");
    Ok(())
}

/// virshParseRateStr: `average[,peak[,burst[,floor]]]`, empty parts 0;
/// `max` parts at most (outbound has no floor).
pub fn parse_rate(s: &str, max: usize) -> Option<Vec<u64>> {
    let parts: Vec<&str> = s.split(',').collect();
    if parts.len() > max {
        return None;
    }
    parts
        .iter()
        .map(|p| {
            if p.is_empty() {
                Some(0)
            } else {
                p.parse().ok()
            }
        })
        .collect()
}

/// The typed parameters `--inbound`/`--outbound` stand for: the average
/// always (0 clears), the rest when given.
pub fn rate_params(
    inbound: Option<&str>,
    outbound: Option<&str>,
) -> Result<Vec<v1::InterfaceParameter>, CmdError> {
    let mut out = Vec::new();
    for (dir, text, names) in [
        (
            "inbound",
            inbound,
            &[
                "inbound.average",
                "inbound.peak",
                "inbound.burst",
                "inbound.floor",
            ][..],
        ),
        (
            "outbound",
            outbound,
            &["outbound.average", "outbound.peak", "outbound.burst"][..],
        ),
    ] {
        let Some(text) = text else { continue };
        let rate = parse_rate(text, names.len())
            .ok_or_else(|| CmdError::msg(format!("{dir} format is incorrect")))?;
        for (i, (name, value)) in names.iter().zip(rate).enumerate() {
            if i == 0 || value > 0 {
                out.push(v1::InterfaceParameter {
                    field: (*name).to_owned(),
                    value,
                });
            }
        }
    }
    Ok(out)
}

/// `domiftune DOMAIN INTERFACE [--inbound …] [--outbound …]`: shows the
/// interface's bandwidth, or sets it.
pub async fn domiftune(
    ctl: &Ctl,
    key: &str,
    iface: &str,
    inbound: Option<&str>,
    outbound: Option<&str>,
    impact: v1::Impact,
) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let params = rate_params(inbound, outbound)?;
    let mut c = ctl.conn.domain();
    if params.is_empty() {
        let got = c
            .get_interface_parameters(v1::InterfaceParametersRequest {
                domain: Some(by_uuid(d.uuid.clone())),
                interface: iface.to_owned(),
                impact: Some(impact),
            })
            .await
            .map_err(|e| {
                CmdError::ctx(
                    "Unable to get number of interface parameters",
                    crate::Error::from(e),
                )
            })?
            .into_inner();
        for p in got.params {
            ctl.print(&format!(
                "{:<15}: {}
",
                p.field, p.value
            ));
        }
        return Ok(());
    }
    c.set_interface_parameters(v1::SetInterfaceParametersRequest {
        domain: Some(by_uuid(d.uuid.clone())),
        interface: iface.to_owned(),
        params,
        impact: Some(impact),
    })
    .await
    .map_err(|e| CmdError::ctx("Unable to set interface parameters", crate::Error::from(e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CDROM: &str = "<disk type='file' device='cdrom'>\n  <driver name='qemu' type='raw'/>\n  <source file='/a.iso'/>\n  <target dev='sda' bus='sata'/>\n  <readonly/>\n</disk>\n";

    #[test]
    fn media_documents() {
        let ejected =
            media_xml(CDROM, "sda", true, MediaAction::Eject, None, false).expect("eject");
        assert!(!ejected.contains("<source"), "{ejected}");
        assert!(
            ejected.contains("  <target dev='sda' bus='sata'/>\n"),
            "{ejected}"
        );
        let updated = media_xml(
            CDROM,
            "sda",
            true,
            MediaAction::Update,
            Some("/b&c.iso"),
            false,
        )
        .expect("update");
        assert!(
            updated.ends_with("  <readonly/>\n  <source file='/b&amp;c.iso'/>\n</disk>\n"),
            "{updated}"
        );
        assert!(!updated.contains("/a.iso"));
        assert_eq!(
            media_xml(&ejected, "sda", false, MediaAction::Eject, None, false)
                .expect_err("empty")
                .lines
                .join(""),
            "The disk device 'sda' doesn't have media"
        );
        assert_eq!(
            media_xml(
                CDROM,
                "sda",
                true,
                MediaAction::Insert,
                Some("/b.iso"),
                false
            )
            .expect_err("full")
            .lines
            .join(""),
            "The disk device 'sda' already has media"
        );
        assert!(matches!(
            MediaAction::from_flags(true, true, false),
            Err(e) if e.lines == ["Options --eject and --insert are mutually exclusive"]
        ));
    }

    #[test]
    fn rate_options() {
        let p = rate_params(Some("100,,300"), Some("0")).expect("valid");
        let fields: Vec<(&str, u64)> = p.iter().map(|p| (p.field.as_str(), p.value)).collect();
        assert_eq!(
            fields,
            [
                ("inbound.average", 100),
                ("inbound.burst", 300),
                ("outbound.average", 0)
            ]
        );
        assert_eq!(
            rate_params(None, Some("1,2,3,4")).expect_err("floor").lines,
            ["outbound format is incorrect"]
        );
        assert!(rate_params(Some("x"), None).is_err());
    }

    #[test]
    fn link_documents() {
        let iface = "<interface type='bridge'>\n  <mac address='52:54:00:00:00:01'/>\n  <link state='up'/>\n  <sourcex/>\n</interface>\n";
        let down = link_xml(iface, "down");
        assert_eq!(down.matches("<link").count(), 1, "{down}");
        assert!(
            down.contains("  <link state='down'/>\n</interface>"),
            "{down}"
        );
        assert!(down.contains("<sourcex/>"));
    }
}
