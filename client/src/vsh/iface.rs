//! Host interface commands (tools/virsh-interface.c).

use virtmesh_proto::v1;

use super::network::sort_by_name;
use super::table::Table;
use super::{CmdError, CmdResult, Ctl};
use crate::connection::collect;

pub fn list_text(ifaces: &[v1::InterfaceSummary], header: bool) -> String {
    let mut t = Table::new(&["Name", "State", "MAC Address"]);
    for i in ifaces {
        t.push([
            i.name.as_str(),
            if i.active { "active" } else { "inactive" },
            i.mac.as_str(),
        ]);
    }
    t.render(header)
}

pub async fn list(ctl: &Ctl, inactive: bool, all: bool) -> CmdResult {
    let (active, inactive) = if all {
        (true, true)
    } else if inactive {
        (false, true)
    } else {
        (true, false)
    };
    let filter = v1::ListFilter {
        active,
        inactive,
        ..Default::default()
    };
    let resp = ctl
        .conn
        .interface()
        .list(filter)
        .await
        .map_err(|e| CmdError::ctx("Failed to list interfaces", crate::Error::from(e)))?;
    let mut ifaces = collect(resp)
        .await
        .map_err(|e| CmdError::ctx("Failed to list interfaces", e))?;
    sort_by_name(&mut ifaces, |i| &i.name);
    ctl.print(&list_text(&ifaces, !ctl.quiet));
    Ok(())
}

pub async fn dumpxml(ctl: &Ctl, key: &str, inactive: bool) -> CmdResult {
    let i = ctl
        .conn
        .lookup_interface(key)
        .await
        .map_err(|e| CmdError::ctx(format!("failed to get interface '{key}'"), e))?;
    let req = v1::InterfaceXmlRequest {
        interface: Some(v1::InterfaceRef {
            key: Some(v1::interface_ref::Key::Name(i.name)),
        }),
        inactive,
    };
    let xml = ctl
        .conn
        .interface()
        .get_xml_desc(req)
        .await
        .map_err(crate::Error::from)?
        .into_inner()
        .xml;
    ctl.print(&xml);
    Ok(())
}

fn iface_ref(name: &str) -> v1::InterfaceRef {
    v1::InterfaceRef {
        key: Some(v1::interface_ref::Key::Name(name.to_owned())),
    }
}

async fn lookup(ctl: &Ctl, key: &str) -> Result<v1::InterfaceSummary, CmdError> {
    ctl.conn
        .lookup_interface(key)
        .await
        .map_err(|e| CmdError::ctx(format!("failed to get interface '{key}'"), e))
}

pub async fn define(ctl: &Ctl, file: &str, validate: bool) -> CmdResult {
    let xml = super::util::read_file(file).map_err(CmdError::msg)?;
    let i = ctl
        .conn
        .interface()
        .define_xml(v1::DefineXmlRequest { xml, validate })
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to define interface from {file}"),
                crate::Error::from(e),
            )
        })?
        .into_inner();
    ctl.extra(&format!("Interface {} defined from {file}\n", i.name));
    Ok(())
}

/// Which lifecycle call iface-undefine/start/destroy make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Undefine,
    Start,
    Destroy,
}

pub async fn lifecycle(ctl: &Ctl, key: &str, op: Op) -> CmdResult {
    let i = lookup(ctl, key).await?;
    let mut c = ctl.conn.interface();
    let r = iface_ref(&i.name);
    let (res, verb, done) = match op {
        Op::Undefine => (c.undefine(r).await, "undefine", "undefined"),
        Op::Start => (c.create(r).await, "start", "started"),
        Op::Destroy => (c.destroy(r).await, "destroy", "destroyed"),
    };
    res.map_err(|e| {
        CmdError::ctx(
            format!("Failed to {verb} interface {key}"),
            crate::Error::from(e),
        )
    })?;
    ctl.extra(&format!("Interface {key} {done}\n"));
    Ok(())
}

/// iface-mac (`mac == true`) and iface-name.
pub async fn mac_or_name(ctl: &Ctl, key: &str, mac: bool) -> CmdResult {
    let i = lookup(ctl, key).await?;
    ctl.print(&format!("{}\n", if mac { i.mac } else { i.name }));
    Ok(())
}

/// iface-begin, iface-commit, iface-rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Txn {
    Begin,
    Commit,
    Rollback,
}

pub async fn transaction(ctl: &Ctl, t: Txn) -> CmdResult {
    let mut c = ctl.conn.interface();
    let (res, verb, done) = match t {
        Txn::Begin => (c.change_begin(()).await, "begin", "started"),
        Txn::Commit => (c.change_commit(()).await, "commit", "committed"),
        Txn::Rollback => (c.change_rollback(()).await, "rollback", "rolled back"),
    };
    res.map_err(|e| {
        CmdError::ctx(
            format!("Failed to {verb} network config change transaction"),
            crate::Error::from(e),
        )
    })?;
    ctl.extra(&format!("Network config change transaction {done}\n"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iface_list_matches_virsh() {
        let i = v1::InterfaceSummary {
            name: "eth1".into(),
            mac: "aa:bb:cc:dd:ee:ff".into(),
            active: true,
        };
        // `virsh -c test:///default iface-list`
        assert_eq!(
            list_text(&[i], true),
            " Name   State    MAC Address\n------------------------------------\n eth1   active   aa:bb:cc:dd:ee:ff\n"
        );
        // `virsh -c test:///default iface-list --inactive`
        assert_eq!(
            list_text(&[], true),
            " Name   State   MAC Address\n-----------------------------\n"
        );
    }
}
