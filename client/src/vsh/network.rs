//! Network commands (tools/virsh-network.c).

use virtmesh_proto::v1::{self, NetworkSummary};

use super::cli::NetListArgs;
use super::table::Table;
use super::util::{read_file, yes_no};
use super::{CmdError, CmdResult, Ctl};
use crate::lookup::by_uuid;

pub fn list_filter(a: &NetListArgs) -> v1::ListFilter {
    let (active, inactive) = if a.all {
        (true, true)
    } else if a.inactive {
        (false, true)
    } else {
        (true, false)
    };
    v1::ListFilter {
        active,
        inactive,
        persistent: a.persistent,
        transient: a.transient,
        autostart: a.autostart,
        no_autostart: a.no_autostart,
    }
}

/// Case-insensitive by name, as virsh's vshStrcasecmp sorters.
pub fn sort_by_name<T>(v: &mut [T], name: impl Fn(&T) -> &str) {
    v.sort_by_cached_key(|x| name(x).to_lowercase());
}

pub fn list_text(nets: &[NetworkSummary], a: &NetListArgs, header: bool) -> String {
    if a.table || !(a.name || a.uuid) {
        let mut t = Table::new(&["Name", "State", "Autostart", "Persistent"]);
        for n in nets {
            t.push([
                n.name.as_str(),
                if n.active { "active" } else { "inactive" },
                yes_no(n.autostart),
                yes_no(n.persistent),
            ]);
        }
        return t.render(header);
    }
    let mut s = String::new();
    for n in nets {
        let mut parts = Vec::new();
        if a.uuid {
            parts.push(n.uuid.as_str());
        }
        if a.name {
            parts.push(n.name.as_str());
        }
        s.push_str(&parts.join(" "));
        s.push('\n');
    }
    s
}

/// `net-info`: `%-15s` labels; no Bridge line when there is no bridge.
pub fn info_text(i: &v1::NetworkInfo) -> String {
    let mut s = String::new();
    let mut line = |label: &str, value: &str| s.push_str(&format!("{label:<15} {value}\n"));
    line("Name:", &i.name);
    line("UUID:", &i.uuid);
    line("Active:", yes_no(i.active));
    line("Persistent:", yes_no(i.persistent));
    line("Autostart:", yes_no(i.autostart));
    if !i.bridge.is_empty() {
        line("Bridge:", &i.bridge);
    }
    s
}

pub async fn lookup(ctl: &Ctl, key: &str) -> Result<NetworkSummary, CmdError> {
    ctl.conn
        .lookup_network(key)
        .await
        .map_err(|e| CmdError::ctx(format!("failed to get network '{key}'"), e))
}

pub async fn uuid(ctl: &Ctl, key: &str) -> CmdResult {
    let n = lookup(ctl, key).await?;
    ctl.print(&format!("{}\n", n.uuid));
    Ok(())
}

pub async fn name(ctl: &Ctl, key: &str) -> CmdResult {
    let n = lookup(ctl, key).await?;
    ctl.print(&format!("{}\n", n.name));
    Ok(())
}

pub async fn list(ctl: &Ctl, a: &NetListArgs) -> CmdResult {
    let mut nets = ctl
        .conn
        .list_networks(list_filter(a))
        .await
        .map_err(|e| CmdError::ctx("Failed to list networks", e))?;
    sort_by_name(&mut nets, |n| &n.name);
    ctl.print(&list_text(&nets, a, !ctl.quiet));
    Ok(())
}

/// net-define (`transient == false`) and net-create.
pub async fn define(ctl: &Ctl, file: &str, validate: bool, transient: bool) -> CmdResult {
    let xml = read_file(file).map_err(CmdError::msg)?;
    let req = v1::DefineXmlRequest { xml, validate };
    let mut c = ctl.conn.network();
    let (res, verb) = if transient {
        (c.create_xml(req).await, "create")
    } else {
        (c.define_xml(req).await, "define")
    };
    let n = res
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to {verb} network from {file}"),
                crate::Error::from(e),
            )
        })?
        .into_inner();
    ctl.extra(&format!("Network {} {verb}d from {file}\n", n.name));
    Ok(())
}

pub async fn start(ctl: &Ctl, key: &str) -> CmdResult {
    let n = lookup(ctl, key).await?;
    ctl.conn
        .network()
        .create(by_uuid(n.uuid.clone()))
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to start network {key}"),
                crate::Error::from(e),
            )
        })?;
    ctl.extra(&format!("Network {key} started\n"));
    Ok(())
}

pub async fn destroy(ctl: &Ctl, key: &str) -> CmdResult {
    let n = lookup(ctl, key).await?;
    ctl.conn
        .network()
        .destroy(by_uuid(n.uuid.clone()))
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to destroy network {key}"),
                crate::Error::from(e),
            )
        })?;
    ctl.extra(&format!("Network {key} destroyed\n"));
    Ok(())
}

pub async fn undefine(ctl: &Ctl, key: &str) -> CmdResult {
    let n = lookup(ctl, key).await?;
    ctl.conn
        .network()
        .undefine(by_uuid(n.uuid.clone()))
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to undefine network {key}"),
                crate::Error::from(e),
            )
        })?;
    ctl.extra(&format!("Network {key} has been undefined\n"));
    Ok(())
}

pub async fn dumpxml(ctl: &Ctl, key: &str, inactive: bool) -> CmdResult {
    let n = lookup(ctl, key).await?;
    let req = v1::GetXmlDescRequest {
        object: Some(by_uuid(n.uuid.clone())),
        inactive,
        ..Default::default()
    };
    let xml = ctl
        .conn
        .network()
        .get_xml_desc(req)
        .await
        .map_err(crate::Error::from)?
        .into_inner()
        .xml;
    ctl.print(&xml);
    Ok(())
}

pub async fn info(ctl: &Ctl, key: &str) -> CmdResult {
    let n = lookup(ctl, key).await?;
    let i = ctl
        .conn
        .network()
        .get_info(by_uuid(n.uuid.clone()))
        .await
        .map_err(crate::Error::from)?
        .into_inner();
    ctl.print(&info_text(&i));
    Ok(())
}

pub async fn autostart(ctl: &Ctl, key: &str, disable: bool) -> CmdResult {
    let n = lookup(ctl, key).await?;
    let req = v1::SetAutostartRequest {
        object: Some(by_uuid(n.uuid.clone())),
        autostart: !disable,
    };
    ctl.conn.network().set_autostart(req).await.map_err(|e| {
        let line = if disable {
            format!("failed to unmark network {key} as autostarted")
        } else {
            format!("failed to mark network {key} as autostarted")
        };
        CmdError::ctx(line, crate::Error::from(e))
    })?;
    if disable {
        ctl.extra(&format!("Network {key} unmarked as autostarted\n"));
    } else {
        ctl.extra(&format!("Network {key} marked as autostarted\n"));
    }
    Ok(())
}

/// `net-dhcp-leases`: sorted by MAC; absent fields print as `-`. The
/// expiry time is printed in UTC (virsh uses local time).
pub fn leases_text(leases: &[v1::DhcpLease], header: bool) -> String {
    let mut sorted: Vec<&v1::DhcpLease> = leases.iter().collect();
    sorted.sort_by_cached_key(|l| l.mac.to_lowercase());
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let mut t = Table::new(&[
        "Expiry Time",
        "MAC address",
        "Protocol",
        "IP address",
        "Hostname",
        "Client ID or DUID",
    ]);
    for l in sorted {
        let when = super::util::time_string_z(l.expiry_time);
        // time_string_z ends in " +0000"; this column has no zone.
        let when = when.trim_end_matches(" +0000").to_owned();
        t.push([
            when,
            dash(&l.mac),
            dash(&l.family),
            format!("{}/{}", l.ipaddr, l.prefix),
            dash(&l.hostname),
            dash(&l.client_id),
        ]);
    }
    t.render(header)
}

pub async fn dhcp_leases(ctl: &Ctl, key: &str, mac: Option<&str>) -> CmdResult {
    let n = lookup(ctl, key).await?;
    let req = v1::DhcpLeasesRequest {
        network: Some(by_uuid(n.uuid.clone())),
        mac: mac.unwrap_or_default().to_owned(),
    };
    let fail = |e: crate::Error| CmdError::ctx(format!("Failed to get leases info for {key}"), e);
    let resp = ctl
        .conn
        .network()
        .get_dhcp_leases(req)
        .await
        .map_err(|e| fail(crate::Error::from(e)))?;
    let leases = crate::connection::collect(resp).await.map_err(fail)?;
    ctl.print(&leases_text(&leases, !ctl.quiet));
    Ok(())
}

/// `net-port-list`: virsh sorts the ports by UUID; a table with one
/// column, or with `--uuid` one UUID a line.
pub fn ports_text(ports: &[v1::NetworkPortSummary], uuid_only: bool, header: bool) -> String {
    let mut uuids: Vec<&str> = ports.iter().map(|p| p.port_uuid.as_str()).collect();
    uuids.sort_unstable();
    if uuid_only {
        return uuids.iter().map(|u| format!("{u}\n")).collect();
    }
    let mut t = Table::new(&["UUID"]);
    for u in uuids {
        t.push([u]);
    }
    t.render(header)
}

pub async fn port_list(ctl: &Ctl, key: &str, uuid: bool, table: bool) -> CmdResult {
    if uuid && table {
        return Err(CmdError::msg(
            "Only one argument from --table and --uuid may be specified.",
        ));
    }
    let n = lookup(ctl, key).await?;
    let fail = |e: crate::Error| CmdError::ctx("Failed to list network ports", e);
    let resp = ctl
        .conn
        .network()
        .port_list(by_uuid(n.uuid.clone()))
        .await
        .map_err(|e| fail(crate::Error::from(e)))?;
    let ports = crate::connection::collect(resp).await.map_err(fail)?;
    ctl.print(&ports_text(&ports, uuid, !ctl.quiet));
    Ok(())
}

fn port_ref(network_uuid: String, port: &str) -> v1::PortRef {
    v1::PortRef {
        network: Some(by_uuid(network_uuid)),
        port_uuid: port.to_owned(),
    }
}

pub async fn port_create(ctl: &Ctl, key: &str, file: &str, validate: bool) -> CmdResult {
    let xml = read_file(file).map_err(CmdError::msg)?;
    let n = lookup(ctl, key).await?;
    let port = ctl
        .conn
        .network()
        .port_create_xml(v1::PortCreateRequest {
            network: Some(by_uuid(n.uuid)),
            xml,
            reclaim: false,
            validate,
        })
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to create network from {file}"),
                crate::Error::from(e),
            )
        })?
        .into_inner();
    ctl.extra(&format!(
        "Network port {} created from {file}\n",
        port.port_uuid
    ));
    Ok(())
}

pub async fn port_dumpxml(ctl: &Ctl, key: &str, port: &str) -> CmdResult {
    let n = lookup(ctl, key).await?;
    let xml = ctl
        .conn
        .network()
        .port_get_xml_desc(port_ref(n.uuid, port))
        .await
        .map_err(crate::Error::from)?
        .into_inner()
        .xml;
    ctl.print(&xml);
    Ok(())
}

pub async fn port_delete(ctl: &Ctl, key: &str, port: &str) -> CmdResult {
    let n = lookup(ctl, key).await?;
    ctl.conn
        .network()
        .port_delete(port_ref(n.uuid, port))
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to delete network port {port}"),
                crate::Error::from(e),
            )
        })?;
    ctl.extra(&format!("Network port {port} deleted\n"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_port_list_matches_virsh() {
        let port = |u: &str| v1::NetworkPortSummary {
            port_uuid: u.into(),
            ..Default::default()
        };
        let ports = [
            port("f0b7f3a4-5a39-4c4e-8f0a-0f1e2d3c4b5a"),
            port("1c3e5a7b-9d1f-4a2b-8c3d-4e5f6a7b8c9d"),
        ];
        assert_eq!(
            ports_text(&ports, false, true),
            format!(
                " UUID\n{}\n 1c3e5a7b-9d1f-4a2b-8c3d-4e5f6a7b8c9d\n f0b7f3a4-5a39-4c4e-8f0a-0f1e2d3c4b5a\n",
                "-".repeat(39)
            )
        );
        assert_eq!(
            ports_text(&ports, true, true),
            "1c3e5a7b-9d1f-4a2b-8c3d-4e5f6a7b8c9d\nf0b7f3a4-5a39-4c4e-8f0a-0f1e2d3c4b5a\n"
        );
    }

    fn net(name: &str, active: bool, persistent: bool) -> NetworkSummary {
        NetworkSummary {
            uuid: format!("uuid-{name}"),
            name: name.into(),
            active,
            persistent,
            autostart: false,
        }
    }

    #[test]
    fn net_list_matches_virsh() {
        let a = NetListArgs::default();
        // `virsh -c test:///default net-list`
        assert_eq!(
            list_text(&[net("default", true, true)], &a, true),
            " Name      State    Autostart   Persistent\n\
             --------------------------------------------\n \
             default   active   no          yes\n"
        );
        // after `net-define n.xml`: `net-list --all`
        assert_eq!(
            list_text(
                &[net("default", true, true), net("net1", false, true)],
                &a,
                true
            ),
            " Name      State      Autostart   Persistent\n\
             ----------------------------------------------\n \
             default   active     no          yes\n \
             net1      inactive   no          yes\n"
        );
    }

    #[test]
    fn net_list_names_and_uuids() {
        let n = [net("default", true, true)];
        let names = NetListArgs {
            name: true,
            ..Default::default()
        };
        assert_eq!(list_text(&n, &names, true), "default\n");
        let uuids = NetListArgs {
            uuid: true,
            ..Default::default()
        };
        assert_eq!(list_text(&n, &uuids, true), "uuid-default\n");
    }

    #[test]
    fn net_info_matches_virsh() {
        let i = v1::NetworkInfo {
            uuid: "dd8fe884-6c02-601e-7551-cca97df1c5df".into(),
            name: "default".into(),
            active: true,
            persistent: true,
            autostart: false,
            bridge: "virbr0".into(),
        };
        // `virsh -c test:///default net-info default`
        assert_eq!(
            info_text(&i),
            "Name:           default\n\
             UUID:           dd8fe884-6c02-601e-7551-cca97df1c5df\n\
             Active:         yes\n\
             Persistent:     yes\n\
             Autostart:      no\n\
             Bridge:         virbr0\n"
        );
    }

    #[test]
    fn leases_layout() {
        let l = v1::DhcpLease {
            iface: "virbr0".into(),
            expiry_time: 1_795_654_590,
            family: "ipv4".into(),
            mac: "52:54:00:11:22:33".into(),
            iaid: String::new(),
            ipaddr: "192.168.122.10".into(),
            prefix: 24,
            hostname: String::new(),
            client_id: "01:52:54:00:11:22:33".into(),
        };
        assert_eq!(
            leases_text(&[l], true),
            " Expiry Time           MAC address         Protocol   IP address          Hostname   Client ID or DUID\n\
             -----------------------------------------------------------------------------------------------------------\n \
             2026-11-26 00:56:30   52:54:00:11:22:33   ipv4       192.168.122.10/24   -          01:52:54:00:11:22:33\n"
        );
    }

    #[test]
    fn list_filter_defaults_to_active() {
        let f = list_filter(&NetListArgs::default());
        assert!(f.active && !f.inactive);
        let f = list_filter(&NetListArgs {
            all: true,
            inactive: true,
            ..Default::default()
        });
        assert!(f.active && f.inactive);
    }
}
