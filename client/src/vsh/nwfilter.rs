//! Network filter commands (tools/virsh-nwfilter.c).

use virtmesh_proto::v1;

use super::network::sort_by_name;
use super::table::Table;
use super::util::read_file;
use super::{CmdError, CmdResult, Ctl};
use crate::connection::collect;
use crate::lookup::by_uuid;

pub fn list_text(filters: &[v1::NwFilterSummary], header: bool) -> String {
    let mut t = Table::new(&["UUID", "Name"]);
    for f in filters {
        t.push([f.uuid.as_str(), f.name.as_str()]);
    }
    t.render(header)
}

pub fn binding_list_text(bindings: &[v1::NwFilterBindingSummary], header: bool) -> String {
    let mut t = Table::new(&["Port Dev", "Filter"]);
    for b in bindings {
        t.push([b.port_dev.as_str(), b.filter_name.as_str()]);
    }
    t.render(header)
}

async fn lookup(ctl: &Ctl, key: &str) -> Result<v1::NwFilterSummary, CmdError> {
    ctl.conn
        .lookup_nwfilter(key)
        .await
        .map_err(|e| CmdError::ctx(format!("failed to get nwfilter '{key}'"), e))
}

pub async fn list(ctl: &Ctl) -> CmdResult {
    let resp = ctl
        .conn
        .nwfilter()
        .list(())
        .await
        .map_err(|e| CmdError::ctx("Failed to list network filters", crate::Error::from(e)))?;
    let mut filters = collect(resp)
        .await
        .map_err(|e| CmdError::ctx("Failed to list network filters", e))?;
    sort_by_name(&mut filters, |f| &f.name);
    ctl.print(&list_text(&filters, !ctl.quiet));
    Ok(())
}

pub async fn binding_list(ctl: &Ctl) -> CmdResult {
    let resp = ctl.conn.nwfilter_binding().list(()).await.map_err(|e| {
        CmdError::ctx(
            "Failed to list network filter bindings",
            crate::Error::from(e),
        )
    })?;
    let mut bindings = collect(resp)
        .await
        .map_err(|e| CmdError::ctx("Failed to list network filter bindings", e))?;
    sort_by_name(&mut bindings, |b| &b.port_dev);
    ctl.print(&binding_list_text(&bindings, !ctl.quiet));
    Ok(())
}

pub async fn define(ctl: &Ctl, file: &str, validate: bool) -> CmdResult {
    let xml = read_file(file).map_err(CmdError::msg)?;
    let f = ctl
        .conn
        .nwfilter()
        .define_xml(v1::DefineXmlRequest { xml, validate })
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to define network filter from {file}"),
                crate::Error::from(e),
            )
        })?
        .into_inner();
    ctl.extra(&format!("Network filter {} defined from {file}\n", f.name));
    Ok(())
}

pub async fn undefine(ctl: &Ctl, key: &str) -> CmdResult {
    let f = lookup(ctl, key).await?;
    ctl.conn
        .nwfilter()
        .undefine(by_uuid(f.uuid.clone()))
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to undefine network filter {key}"),
                crate::Error::from(e),
            )
        })?;
    ctl.extra(&format!("Network filter {key} undefined\n"));
    Ok(())
}

pub async fn dumpxml(ctl: &Ctl, key: &str) -> CmdResult {
    let f = lookup(ctl, key).await?;
    let xml = ctl
        .conn
        .nwfilter()
        .get_xml_desc(by_uuid(f.uuid.clone()))
        .await
        .map_err(crate::Error::from)?
        .into_inner()
        .xml;
    ctl.print(&xml);
    Ok(())
}

fn binding_ref(port_dev: &str) -> v1::BindingRef {
    v1::BindingRef {
        port_dev: port_dev.to_owned(),
    }
}

async fn lookup_binding(ctl: &Ctl, port_dev: &str) -> Result<v1::NwFilterBindingSummary, CmdError> {
    ctl.conn
        .nwfilter_binding()
        .lookup(binding_ref(port_dev))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|e| {
            CmdError::ctx(
                format!("failed to get nwfilter binding '{port_dev}'"),
                crate::Error::from(e),
            )
        })
}

pub async fn binding_create(ctl: &Ctl, file: &str, validate: bool) -> CmdResult {
    let xml = read_file(file).map_err(CmdError::msg)?;
    let b = ctl
        .conn
        .nwfilter_binding()
        .create_xml(v1::DefineXmlRequest { xml, validate })
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to create network filter from {file}"),
                crate::Error::from(e),
            )
        })?
        .into_inner();
    ctl.extra(&format!(
        "Network filter binding on {} created from {file}\n",
        b.port_dev
    ));
    Ok(())
}

pub async fn binding_delete(ctl: &Ctl, port_dev: &str) -> CmdResult {
    let b = lookup_binding(ctl, port_dev).await?;
    ctl.conn
        .nwfilter_binding()
        .delete(binding_ref(&b.port_dev))
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to delete network filter binding on {port_dev}"),
                crate::Error::from(e),
            )
        })?;
    ctl.extra(&format!("Network filter binding on {port_dev} deleted\n"));
    Ok(())
}

pub async fn binding_dumpxml(ctl: &Ctl, port_dev: &str) -> CmdResult {
    let b = lookup_binding(ctl, port_dev).await?;
    let xml = ctl
        .conn
        .nwfilter_binding()
        .get_xml_desc(binding_ref(&b.port_dev))
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
    fn nwfilter_list_layout() {
        // vshTableNew("UUID", "Name") as in cmdNWFilterList.
        let f = v1::NwFilterSummary {
            uuid: "11f8d0b1-6c6e-4bd4-9b1b-2c7e4cfa4b2a".into(),
            name: "clean-traffic".into(),
        };
        assert_eq!(
            list_text(&[f], true),
            " UUID                                   Name\n\
             -------------------------------------------------------\n \
             11f8d0b1-6c6e-4bd4-9b1b-2c7e4cfa4b2a   clean-traffic\n"
        );
        assert_eq!(list_text(&[], true), " UUID   Name\n--------------\n");
    }
}
