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
        .map_err(|e| CmdError::ctx("Failed to list node devices", crate::Error::from(e)))?;
    let devs = collect(resp)
        .await
        .map_err(|e| CmdError::ctx("Failed to list node devices", e))?;
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

fn dev_ref(name: &str) -> v1::NodeDeviceRef {
    v1::NodeDeviceRef {
        name: name.to_owned(),
    }
}

async fn lookup(ctl: &Ctl, name: &str) -> Result<v1::NodeDeviceSummary, CmdError> {
    ctl.conn
        .node_device()
        .lookup(dev_ref(name))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|e| {
            CmdError::ctx(
                format!("Could not find matching device '{name}'"),
                crate::Error::from(e),
            )
        })
}

/// `nodedev-info`.
pub fn info_text(d: &v1::NodeDeviceSummary) -> String {
    let mut s = String::new();
    let mut line = |label: &str, value: &str| s.push_str(&format!("{label:<15} {value}\n"));
    line("Name:", &d.name);
    line("Parent:", &d.parent);
    line("Active:", super::util::yes_no(d.active));
    line("Persistent:", super::util::yes_no(d.persistent));
    line("Autostart:", super::util::yes_no(d.autostart));
    s
}

pub async fn info(ctl: &Ctl, name: &str) -> CmdResult {
    let d = lookup(ctl, name).await?;
    ctl.print(&info_text(&d));
    Ok(())
}

/// nodedev-create (transient) and nodedev-define (persistent).
pub async fn create(ctl: &Ctl, file: &str, validate: bool, persistent: bool) -> CmdResult {
    let xml = super::util::read_file(file).map_err(CmdError::msg)?;
    let req = v1::DefineXmlRequest { xml, validate };
    let mut c = ctl.conn.node_device();
    if persistent {
        let d = c
            .define_xml(req)
            .await
            .map_err(|e| {
                CmdError::ctx(
                    format!("Failed to define node device from '{file}'"),
                    crate::Error::from(e),
                )
            })?
            .into_inner();
        ctl.extra(&format!("Node device '{}' defined from '{file}'\n", d.name));
    } else {
        let d = c
            .create_xml(req)
            .await
            .map_err(|e| {
                CmdError::ctx(
                    format!("Failed to create node device from {file}"),
                    crate::Error::from(e),
                )
            })?
            .into_inner();
        ctl.extra(&format!("Node device {} created from {file}\n", d.name));
    }
    Ok(())
}

/// The per-device calls with their virsh wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Destroy,
    Undefine,
    Start,
    Detach,
    Reattach,
    Reset,
}

pub async fn op(ctl: &Ctl, name: &str, op: Op) -> CmdResult {
    let d = lookup(ctl, name).await?;
    let mut c = ctl.conn.node_device();
    let r = dev_ref(&d.name);
    let (res, fail, ok) = match op {
        Op::Destroy => (
            c.destroy(r).await,
            format!("Failed to destroy node device '{name}'"),
            format!("Destroyed node device '{name}'\n"),
        ),
        Op::Undefine => (
            c.undefine(r).await,
            format!("Failed to undefine node device '{name}'"),
            format!("Undefined node device '{name}'\n"),
        ),
        Op::Start => (
            c.create(r).await,
            format!("Failed to start device {name}"),
            format!("Device {name} started\n"),
        ),
        Op::Detach => (
            c.detach(r).await,
            format!("Failed to detach device {name}"),
            format!("Device {name} detached\n"),
        ),
        Op::Reattach => (
            c.re_attach(r).await,
            format!("Failed to re-attach device {name}"),
            format!("Device {name} re-attached\n"),
        ),
        Op::Reset => (
            c.reset(r).await,
            format!("Failed to reset device {name}"),
            format!("Device {name} reset\n"),
        ),
    };
    res.map_err(|e| CmdError::ctx(fail, crate::Error::from(e)))?;
    ctl.extra(&ok);
    Ok(())
}

pub async fn autostart(ctl: &Ctl, name: &str, disable: bool) -> CmdResult {
    let d = lookup(ctl, name).await?;
    let req = v1::NodeDeviceAutostartRequest {
        device: Some(dev_ref(&d.name)),
        autostart: !disable,
    };
    ctl.conn
        .node_device()
        .set_autostart(req)
        .await
        .map_err(|e| {
            let line = if disable {
                format!("failed to unmark device {name} as autostarted")
            } else {
                format!("failed to mark device {name} as autostarted")
            };
            CmdError::ctx(line, crate::Error::from(e))
        })?;
    if disable {
        ctl.extra(&format!("Device {name} unmarked as autostarted\n"));
    } else {
        ctl.extra(&format!("Device {name} marked as autostarted\n"));
    }
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
    fn nodedev_info_layout() {
        let d = v1::NodeDeviceSummary {
            name: "scsi_host1".into(),
            parent: "computer".into(),
            caps: vec!["scsi_host".into()],
            active: true,
            persistent: false,
            autostart: false,
        };
        assert_eq!(
            info_text(&d),
            "Name:           scsi_host1\nParent:         computer\nActive:         yes\n\
             Persistent:     no\nAutostart:      no\n"
        );
    }

    #[test]
    fn caps_are_split_on_commas() {
        assert_eq!(caps_of(Some("system,scsi_host")), ["system", "scsi_host"]);
        assert!(caps_of(None).is_empty());
    }
}
