//! Domain snapshot commands (tools/virsh-snapshot.c).

use virtmesh_proto::v1::{self, SnapshotSummary};

use super::domain::lookup;
use super::table::Table;
use super::util::{read_file, time_string_z};
use super::{CmdError, CmdResult, Ctl};
use crate::ErrorCode;
use crate::connection::collect;
use crate::lookup::{Kinds, by_uuid};

/// Escape text for an XML element body (virBufferEscapeString).
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The document `snapshot-create-as` builds from its arguments.
pub fn create_as_xml(name: Option<&str>, description: Option<&str>) -> String {
    let mut s = String::from("<domainsnapshot>\n");
    if let Some(n) = name {
        s.push_str(&format!("  <name>{}</name>\n", xml_escape(n)));
    }
    if let Some(d) = description {
        s.push_str(&format!("  <description>{}</description>\n", xml_escape(d)));
    }
    s.push_str("</domainsnapshot>\n");
    s
}

/// `snapshot-list`, sorted by name unless the server's (topological)
/// order was asked for.
pub fn list_text(
    snaps: &[SnapshotSummary],
    parent: bool,
    names_only: bool,
    header: bool,
) -> String {
    if names_only {
        return snaps.iter().map(|s| format!("{}\n", s.name)).collect();
    }
    let mut cols = vec!["Name", "Creation Time", "State"];
    if parent {
        cols.push("Parent");
    }
    let mut t = Table::new(&cols);
    for s in snaps {
        let mut row = vec![
            s.name.clone(),
            time_string_z(s.creation_time),
            s.state.clone(),
        ];
        if parent {
            row.push(s.parent.clone());
        }
        t.push(row);
    }
    t.render(header)
}

fn snap_ref(dom_uuid: &str, name: &str) -> v1::SnapshotRef {
    v1::SnapshotRef {
        domain: Some(by_uuid(dom_uuid.to_owned())),
        name: name.to_owned(),
    }
}

/// Flags shared by snapshot-create and snapshot-create-as.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateFlags {
    pub redefine: bool,
    pub current: bool,
    pub no_metadata: bool,
    pub halt: bool,
    pub disk_only: bool,
    pub atomic: bool,
}

async fn create(
    ctl: &Ctl,
    key: &str,
    xml: String,
    f: CreateFlags,
    from: Option<&str>,
) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let req = v1::SnapshotCreateRequest {
        domain: Some(by_uuid(d.uuid)),
        xml,
        redefine: f.redefine,
        current: f.current,
        no_metadata: f.no_metadata,
        halt: f.halt,
        disk_only: f.disk_only,
        atomic: f.atomic,
    };
    let s = ctl
        .conn
        .domain()
        .snapshot_create_xml(req)
        .await
        .map_err(crate::Error::from)?
        .into_inner();
    // No newline: virsh relies on the blank line it prints after each
    // command, so with -q nothing at all is printed.
    match from {
        Some(file) => ctl.extra(&format!("Domain snapshot {} created from '{file}'", s.name)),
        None => ctl.extra(&format!("Domain snapshot {} created", s.name)),
    }
    Ok(())
}

pub async fn create_as(
    ctl: &Ctl,
    key: &str,
    name: Option<&str>,
    description: Option<&str>,
    print_xml: bool,
    f: CreateFlags,
) -> CmdResult {
    let xml = create_as_xml(name, description);
    if print_xml {
        ctl.print(&xml);
        return Ok(());
    }
    create(ctl, key, xml, f, None).await
}

pub async fn create_from(ctl: &Ctl, key: &str, file: Option<&str>, f: CreateFlags) -> CmdResult {
    let xml = match file {
        Some(path) => read_file(path).map_err(CmdError::msg)?,
        None => "<domainsnapshot/>".to_owned(),
    };
    create(ctl, key, xml, f, file).await
}

pub async fn list(
    ctl: &Ctl,
    key: &str,
    mut req: v1::SnapshotListRequest,
    parent: bool,
    names_only: bool,
) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    req.domain = Some(by_uuid(d.uuid));
    let topological = req.topological;
    let resp = ctl
        .conn
        .domain()
        .snapshot_list(req)
        .await
        .map_err(crate::Error::from)?;
    let mut snaps = collect(resp).await?;
    if !topological {
        snaps.sort_by_cached_key(|s| s.name.to_lowercase());
    }
    ctl.print(&list_text(&snaps, parent, names_only, !ctl.quiet));
    Ok(())
}

pub async fn current(ctl: &Ctl, key: &str, name_only: bool) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let mut c = ctl.conn.domain();
    let s = match c.snapshot_current(by_uuid(d.uuid.clone())).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            let e = crate::Error::from(status);
            return Err(if e.code() == ErrorCode::NoDomainSnapshot {
                CmdError::msg(format!("domain '{key}' has no current snapshot"))
            } else {
                e.into()
            });
        }
    };
    if name_only {
        // Bare, like virsh: the blank line after the command ends it.
        ctl.print(&s.name);
        return Ok(());
    }
    let xml = c
        .snapshot_get_xml_desc(snap_ref(&d.uuid, &s.name))
        .await
        .map_err(crate::Error::from)?
        .into_inner()
        .xml;
    ctl.print(&xml);
    Ok(())
}

pub async fn dumpxml(ctl: &Ctl, key: &str, snap: &str) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let xml = ctl
        .conn
        .domain()
        .snapshot_get_xml_desc(snap_ref(&d.uuid, snap))
        .await
        .map_err(crate::Error::from)?
        .into_inner()
        .xml;
    ctl.print(&xml);
    Ok(())
}

/// The snapshot a revert/delete names: the one given, or `--current`.
async fn target(
    ctl: &Ctl,
    key: &str,
    dom_uuid: &str,
    snap: Option<&str>,
) -> Result<String, CmdError> {
    let mut c = ctl.conn.domain();
    match snap {
        Some(name) => Ok(c
            .snapshot_lookup(snap_ref(dom_uuid, name))
            .await
            .map_err(crate::Error::from)?
            .into_inner()
            .name),
        None => match c.snapshot_current(by_uuid(dom_uuid.to_owned())).await {
            Ok(r) => Ok(r.into_inner().name),
            Err(status) => {
                let e = crate::Error::from(status);
                Err(if e.code() == ErrorCode::NoDomainSnapshot {
                    CmdError::msg(format!("domain '{key}' has no current snapshot"))
                } else {
                    e.into()
                })
            }
        },
    }
}

pub async fn revert(ctl: &Ctl, key: &str, snap: Option<&str>) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let name = target(ctl, key, &d.uuid, snap).await?;
    ctl.conn
        .domain()
        .snapshot_revert(snap_ref(&d.uuid, &name))
        .await
        .map_err(crate::Error::from)?;
    ctl.extra(&format!("Domain snapshot {name} reverted\n"));
    Ok(())
}

pub async fn delete(
    ctl: &Ctl,
    key: &str,
    snap: Option<&str>,
    children: bool,
    children_only: bool,
    metadata: bool,
) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let name = target(ctl, key, &d.uuid, snap).await?;
    let req = v1::SnapshotDeleteRequest {
        snapshot: Some(snap_ref(&d.uuid, &name)),
        children,
        children_only,
        metadata_only: metadata,
    };
    ctl.conn.domain().snapshot_delete(req).await.map_err(|e| {
        CmdError::ctx(
            format!("Failed to delete snapshot {name}"),
            crate::Error::from(e),
        )
    })?;
    if children_only {
        ctl.extra(&format!("Domain snapshot {name} children deleted\n"));
    } else {
        ctl.extra(&format!("Domain snapshot {name} deleted\n"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str, parent: &str) -> SnapshotSummary {
        SnapshotSummary {
            domain_uuid: String::new(),
            name: name.into(),
            parent: parent.into(),
            creation_time: 1_795_654_590,
            state: "running".into(),
            current: false,
            description: String::new(),
        }
    }

    #[test]
    fn snapshot_list_matches_virsh() {
        let s = [snap("snap1", ""), snap("snap2", "snap1")];
        // virsh -c test:///default "snapshot-create-as test snap1;
        //   snapshot-create-as test snap2; snapshot-list test" (TZ=UTC)
        assert_eq!(
            list_text(&s, false, false, true),
            " Name    Creation Time               State\n\
             ----------------------------------------------\n \
             snap1   2026-11-26 00:56:30 +0000   running\n \
             snap2   2026-11-26 00:56:30 +0000   running\n"
        );
        // ... "snapshot-list test --parent"
        assert_eq!(
            list_text(&s, true, false, true),
            " Name    Creation Time               State     Parent\n\
             -------------------------------------------------------\n \
             snap1   2026-11-26 00:56:30 +0000   running   \n \
             snap2   2026-11-26 00:56:30 +0000   running   snap1\n"
        );
        assert_eq!(list_text(&s, false, true, true), "snap1\nsnap2\n");
        assert_eq!(
            list_text(&[], false, false, true),
            " Name   Creation Time   State\n-------------------------------\n"
        );
    }

    #[test]
    fn create_as_document() {
        assert_eq!(
            create_as_xml(Some("a<b"), Some("first snap")),
            "<domainsnapshot>\n  <name>a&lt;b</name>\n  <description>first snap</description>\n</domainsnapshot>\n"
        );
        assert_eq!(
            create_as_xml(None, None),
            "<domainsnapshot>\n</domainsnapshot>\n"
        );
    }
}
