//! Node device commands (tools/virsh-nodedev.c).

use virtmesh_proto::v1;

use super::{CmdError, CmdResult, Ctl};
use crate::connection::collect;

/// `--cap a,b` as the contract's list of capability names.
pub fn caps_of(cap: Option<&str>) -> Vec<String> {
    cap.map(|c| {
        c.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

/// One name per line, sorted case-insensitively as virsh does.
pub fn list_text(devs: &[v1::NodeDeviceSummary]) -> String {
    let mut names: Vec<&str> = devs.iter().map(|d| d.name.as_str()).collect();
    names.sort_by_cached_key(|n| n.to_lowercase());
    names.iter().map(|n| format!("{n}\n")).collect()
}

pub async fn list(ctl: &Ctl, cap: Option<&str>, inactive: bool, all: bool) -> CmdResult {
    // As in virsh, no flag lists active devices; --all lists both.
    let req = v1::ListNodeDevicesRequest {
        caps: caps_of(cap),
        active: all || !inactive,
        inactive: all || inactive,
    };
    let resp = ctl
        .conn
        .node_device()
        .list(req)
        .await
        .map_err(|e| CmdError::ctx("Failed to count node devices", crate::Error::from(e)))?;
    let devs = collect(resp)
        .await
        .map_err(|e| CmdError::ctx("Failed to count node devices", e))?;
    ctl.print(&list_text(&devs));
    Ok(())
}

pub async fn dumpxml(ctl: &Ctl, name: &str) -> CmdResult {
    let xml = ctl
        .conn
        .node_device()
        .get_xml_desc(v1::NodeDeviceRef {
            name: name.to_owned(),
        })
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Could not find matching device '{name}'"),
                crate::Error::from(e),
            )
        })?
        .into_inner()
        .xml;
    ctl.print(&xml);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: &str) -> v1::NodeDeviceSummary {
        v1::NodeDeviceSummary {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn nodedev_list_matches_virsh() {
        // `virsh -c test:///default nodedev-list`
        let devs = [
            dev("scsi_host2"),
            dev("computer"),
            dev("scsi_host11"),
            dev("scsi_host1"),
        ];
        assert_eq!(
            list_text(&devs),
            "computer\nscsi_host1\nscsi_host11\nscsi_host2\n"
        );
        assert_eq!(list_text(&[]), "");
    }

    #[test]
    fn caps_are_split_on_commas() {
        assert_eq!(caps_of(Some("system,scsi_host")), ["system", "scsi_host"]);
        assert!(caps_of(None).is_empty());
    }
}
