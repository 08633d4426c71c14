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
