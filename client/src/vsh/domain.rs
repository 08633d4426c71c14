//! Domain commands (tools/virsh-domain.c, virsh-domain-monitor.c).

use virtmesh_proto::v1::{self, DomainState, DomainSummary};

use super::table::Table;
use super::util::{read_file, yes_no};
use super::{CmdError, CmdResult, Ctl, cli::ListArgs, host};
use crate::lookup::{Kinds, by_uuid};

/// virshDomainStateToString.
pub fn state_str(state: i32) -> &'static str {
    virtmesh_proto::names::domain_state(
        DomainState::try_from(state).unwrap_or(DomainState::Nostate),
    )
}

/// virshDomainStateReasonToString; `None` when libvirt's tables have no
/// word for this number.
pub fn state_reason_str(state: i32, reason: i32) -> Option<&'static str> {
    virtmesh_proto::names::domain_state_reason(DomainState::try_from(state).ok()?, reason)
}

/// `domstate [--reason]` text. The server's reason word is used only when
/// virsh's table has none for the number.
pub fn domstate_text(st: &v1::DomainStateInfo, with_reason: bool) -> String {
    let state = state_str(st.state);
    if !with_reason {
        return format!("{state}\n");
    }
    let reason = match state_reason_str(st.state, st.reason) {
        Some(r) => r.to_owned(),
        None if !st.reason_name.is_empty() => st.reason_name.clone(),
        None => "unknown".to_owned(),
    };
    format!("{state} ({reason})\n")
}

/// `dominfo`: `%-15s` labels; the security lines appear only when the host
/// has a security model, as in virsh.
pub fn dominfo_text(info: &v1::DomainInfo, secmodel: Option<&(String, String)>) -> String {
    let mut s = String::new();
    let mut line = |label: &str, value: &str| s.push_str(&format!("{label:<15} {value}\n"));
    let id = if info.id >= 0 {
        info.id.to_string()
    } else {
        "-".to_owned()
    };
    line("Id:", &id);
    line("Name:", &info.name);
    line("UUID:", &info.uuid);
    line("OS Type:", &info.os_type);
    line("State:", state_str(info.state));
    line("CPU(s):", &info.nr_virt_cpu.to_string());
    if info.cpu_time_ns != 0 {
        line(
            "CPU time:",
            &format!("{:.1}s", info.cpu_time_ns as f64 / 1e9),
        );
    }
    // virDomainInfo.maxMem is an unsigned long that drivers set to
    // UINT_MAX for "no limit".
    if info.max_mem_kib == u64::from(u32::MAX) {
        line("Max memory:", "no limit");
    } else {
        line("Max memory:", &format!("{} KiB", info.max_mem_kib));
    }
    line("Used memory:", &format!("{} KiB", info.memory_kib));
    line("Persistent:", yes_no(info.persistent));
    line(
        "Autostart:",
        if info.autostart { "enable" } else { "disable" },
    );
    line("Managed save:", yes_no(info.has_managed_save));
    if let Some((model, doi)) = secmodel
        && !model.is_empty()
    {
        line("Security model:", model);
        line("Security DOI:", doi);
    }
    s
}

/// virshDomainSorter: running domains by id first, then inactive ones by
/// name, case-insensitively.
pub fn sort_domains(doms: &mut [DomainSummary]) {
    doms.sort_by(|a, b| match (a.id >= 0, b.id >= 0) {
        (true, true) => a.id.cmp(&b.id),
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
    });
}

/// The text of `list` for already sorted domains.
/// `titles`, when `--title` is given, holds each domain's title in order.
pub fn list_text(doms: &[DomainSummary], a: &ListArgs, header: bool, titles: &[String]) -> String {
    let table = a.table || !(a.name || a.uuid || a.id);
    if table {
        let mut cols = vec!["Id", "Name", "State"];
        if a.title {
            cols.push("Title");
        }
        if a.uuid {
            cols.push("UUID");
        }
        let mut t = Table::new(&cols);
        for (i, d) in doms.iter().enumerate() {
            let id = if d.id >= 0 {
                d.id.to_string()
            } else {
                "-".to_owned()
            };
            let state =
                if a.managed_save && d.state == DomainState::Shutoff as i32 && d.has_managed_save {
                    "saved"
                } else {
                    state_str(d.state)
                };
            let mut row = vec![id, d.name.clone(), state.to_owned()];
            if a.title {
                row.push(titles.get(i).cloned().unwrap_or_default());
            }
            if a.uuid {
                row.push(d.uuid.clone());
            }
            t.push(row);
        }
        return t.render(header);
    }
    let mut s = String::new();
    for d in doms {
        // `--id` alone lists running domains only; combined with another
        // field an inactive domain shows "-".
        if a.id && !a.name && !a.uuid && d.id < 0 {
            continue;
        }
        let mut parts = Vec::new();
        if a.uuid {
            parts.push(d.uuid.clone());
        }
        if a.id {
            parts.push(if d.id >= 0 {
                d.id.to_string()
            } else {
                "-".to_owned()
            });
        }
        if a.name {
            parts.push(d.name.clone());
        }
        s.push_str(&parts.join(" "));
        s.push('\n');
    }
    s
}

pub fn list_request(a: &ListArgs) -> v1::ListDomainsRequest {
    // virsh starts from ACTIVE, --inactive replaces it, --all means both.
    let (active, inactive) = if a.all {
        (true, true)
    } else if a.inactive {
        (false, true)
    } else {
        (true, false)
    };
    v1::ListDomainsRequest {
        filter: Some(v1::ListFilter {
            active,
            inactive,
            persistent: a.persistent,
            transient: a.transient,
            autostart: a.autostart,
            no_autostart: a.no_autostart,
        }),
        running: a.state_running,
        paused: a.state_paused,
        shutoff: a.state_shutoff,
        other: a.state_other,
        managed_save: a.with_managed_save,
        no_managed_save: a.without_managed_save,
        has_snapshot: a.with_snapshot,
        no_snapshot: a.without_snapshot,
    }
}

pub async fn list(ctl: &Ctl, a: &ListArgs) -> CmdResult {
    let mut doms = ctl
        .conn
        .list_domains(list_request(a))
        .await
        .map_err(|e| CmdError::ctx("Failed to list domains", e))?;
    sort_domains(&mut doms);
    let mut titles = Vec::new();
    if a.title {
        let mut c = ctl.conn.domain();
        for d in &doms {
            let req = v1::GetMetadataRequest {
                domain: Some(dom_ref(d)),
                r#type: v1::MetadataType::Title as i32,
                ..Default::default()
            };
            // No title is an error in libvirt (VIR_ERR_NO_DOMAIN_METADATA);
            // virsh shows an empty cell.
            let title = c
                .get_metadata(req)
                .await
                .map(|r| r.into_inner().value)
                .unwrap_or_default();
            titles.push(title);
        }
    }
    ctl.print(&list_text(&doms, a, !ctl.quiet, &titles));
    Ok(())
}

/// Look a domain up the way virsh does. virsh resets libvirt's error after
/// a failed lookup, so only its own line is printed; a transport failure is
/// still worth showing.
pub async fn lookup(ctl: &Ctl, key: &str, kinds: Kinds) -> Result<DomainSummary, CmdError> {
    ctl.conn.lookup_domain_by(key, kinds).await.map_err(|e| {
        let line = format!("failed to get domain '{key}'");
        if e.is_transport() {
            CmdError::ctx(line, e)
        } else {
            CmdError::msg(line)
        }
    })
}

fn dom_ref(d: &DomainSummary) -> v1::ObjectRef {
    by_uuid(d.uuid.clone())
}

pub async fn dominfo(ctl: &Ctl, key: &str) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let mut info = ctl
        .conn
        .domain()
        .get_info(dom_ref(&d))
        .await
        .map_err(crate::Error::from)?
        .into_inner();
    // virsh takes these from the domain handle, not from virDomainGetInfo;
    // fill them from the lookup when the driver leaves them out.
    info.id = d.id;
    if info.name.is_empty() {
        info.name = d.name.clone();
    }
    if info.uuid.is_empty() {
        info.uuid = d.uuid.clone();
    }
    // virNodeGetSecurityModel comes from the host capabilities; a host
    // that cannot say simply gets no security lines.
    let secmodel = match ctl.conn.host().get_capabilities(()).await {
        Ok(r) => host::secmodel_from_caps(&r.into_inner().xml),
        Err(_) => None,
    };
    ctl.print(&dominfo_text(&info, secmodel.as_ref()));
    Ok(())
}

pub async fn domstate(ctl: &Ctl, key: &str, reason: bool) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let st = ctl
        .conn
        .domain()
        .get_state(dom_ref(&d))
        .await
        .map_err(crate::Error::from)?
        .into_inner();
    ctl.print(&domstate_text(&st, reason));
    Ok(())
}

pub async fn domid(ctl: &Ctl, key: &str) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    if d.id >= 0 {
        ctl.print(&format!("{}\n", d.id));
    } else {
        ctl.print("-\n");
    }
    Ok(())
}

pub async fn domname(ctl: &Ctl, key: &str) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    ctl.print(&format!("{}\n", d.name));
    Ok(())
}

pub async fn domuuid(ctl: &Ctl, key: &str) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    ctl.print(&format!("{}\n", d.uuid));
    Ok(())
}

pub async fn define(ctl: &Ctl, file: &str, validate: bool) -> CmdResult {
    let xml = read_file(file).map_err(CmdError::msg)?;
    let d = ctl
        .conn
        .domain()
        .define_xml(v1::DefineXmlRequest { xml, validate })
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to define domain from {file}"),
                crate::Error::from(e),
            )
        })?
        .into_inner();
    ctl.extra(&format!("Domain '{}' defined from {file}\n", d.name));
    Ok(())
}

pub async fn create(
    ctl: &Ctl,
    file: &str,
    paused: bool,
    autodestroy: bool,
    validate: bool,
) -> CmdResult {
    let xml = read_file(file).map_err(CmdError::msg)?;
    let req = v1::CreateXmlRequest {
        xml,
        start_paused: paused,
        autodestroy,
        validate,
    };
    let d = ctl
        .conn
        .domain()
        .create_xml(req)
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to create domain from {file}"),
                crate::Error::from(e),
            )
        })?
        .into_inner();
    ctl.extra(&format!("Domain '{}' created from {file}\n", d.name));
    Ok(())
}

pub async fn undefine(ctl: &Ctl, key: &str, mut req: v1::UndefineRequest) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    req.domain = Some(dom_ref(&d));
    ctl.conn.domain().undefine(req).await.map_err(|e| {
        CmdError::ctx(
            format!("Failed to undefine domain '{key}'"),
            crate::Error::from(e),
        )
    })?;
    ctl.extra(&format!("Domain '{key}' has been undefined\n"));
    Ok(())
}

pub async fn start(ctl: &Ctl, key: &str, mut req: v1::CreateRequest) -> CmdResult {
    // `start` looks up by UUID or name only: an id names a running domain,
    // which cannot be started.
    let d = lookup(ctl, key, Kinds::UUID_NAME).await?;
    if d.id >= 0 {
        return Err(CmdError::msg("Domain is already active"));
    }
    req.domain = Some(dom_ref(&d));
    ctl.conn.domain().create(req).await.map_err(|e| {
        CmdError::ctx(
            format!("Failed to start domain '{key}'"),
            crate::Error::from(e),
        )
    })?;
    ctl.extra(&format!("Domain '{key}' started\n"));
    Ok(())
}

/// virsh's `--mode` word for a shutdown/reboot method. virsh accepts a
/// comma-separated list; the contract carries one mode, so the first wins.
pub fn shutdown_mode(mode: Option<&str>) -> Result<v1::ShutdownMode, CmdError> {
    let Some(mode) = mode else {
        return Ok(v1::ShutdownMode::Default);
    };
    let first = mode.split(',').next().unwrap_or_default();
    match first {
        "" => Ok(v1::ShutdownMode::Default),
        "acpi" => Ok(v1::ShutdownMode::AcpiPowerBtn),
        "agent" => Ok(v1::ShutdownMode::GuestAgent),
        "initctl" => Ok(v1::ShutdownMode::Initctl),
        "signal" => Ok(v1::ShutdownMode::Signal),
        "paravirt" => Ok(v1::ShutdownMode::Paravirt),
        other => Err(CmdError::msg(format!(
            "Unknown mode {other} value, expecting 'acpi', 'agent', 'initctl', 'signal', or 'paravirt'"
        ))),
    }
}

pub async fn shutdown(ctl: &Ctl, key: &str, mode: Option<&str>) -> CmdResult {
    let mode = shutdown_mode(mode)?;
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let req = v1::ShutdownRequest {
        domain: Some(dom_ref(&d)),
        mode: mode as i32,
    };
    ctl.conn.domain().shutdown(req).await.map_err(|e| {
        CmdError::ctx(
            format!("Failed to shutdown domain '{key}'"),
            crate::Error::from(e),
        )
    })?;
    ctl.extra(&format!("Domain '{key}' is being shutdown\n"));
    Ok(())
}

pub async fn reboot(ctl: &Ctl, key: &str, mode: Option<&str>) -> CmdResult {
    let mode = shutdown_mode(mode)?;
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let req = v1::RebootRequest {
        domain: Some(dom_ref(&d)),
        mode: mode as i32,
    };
    ctl.conn.domain().reboot(req).await.map_err(|e| {
        CmdError::ctx(
            format!("Failed to reboot domain '{key}'"),
            crate::Error::from(e),
        )
    })?;
    ctl.extra(&format!("Domain '{key}' is being rebooted\n"));
    Ok(())
}

pub async fn destroy(ctl: &Ctl, key: &str, graceful: bool) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let req = v1::DestroyRequest {
        domain: Some(dom_ref(&d)),
        graceful,
    };
    ctl.conn.domain().destroy(req).await.map_err(|e| {
        CmdError::ctx(
            format!("Failed to destroy domain '{key}'"),
            crate::Error::from(e),
        )
    })?;
    ctl.extra(&format!("Domain '{key}' destroyed\n"));
    Ok(())
}

pub async fn suspend(ctl: &Ctl, key: &str) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    ctl.conn.domain().suspend(dom_ref(&d)).await.map_err(|e| {
        CmdError::ctx(
            format!("Failed to suspend domain '{key}'"),
            crate::Error::from(e),
        )
    })?;
    ctl.extra(&format!("Domain '{key}' suspended\n"));
    Ok(())
}

pub async fn resume(ctl: &Ctl, key: &str) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    ctl.conn.domain().resume(dom_ref(&d)).await.map_err(|e| {
        CmdError::ctx(
            format!("Failed to resume domain '{key}'"),
            crate::Error::from(e),
        )
    })?;
    ctl.extra(&format!("Domain '{key}' resumed\n"));
    Ok(())
}

pub async fn reset(ctl: &Ctl, key: &str) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    ctl.conn.domain().reset(dom_ref(&d)).await.map_err(|e| {
        CmdError::ctx(
            format!("Failed to reset domain '{key}'"),
            crate::Error::from(e),
        )
    })?;
    ctl.extra(&format!("Domain '{key}' was reset\n"));
    Ok(())
}

pub async fn dumpxml(ctl: &Ctl, key: &str, mut req: v1::GetXmlDescRequest) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    req.object = Some(dom_ref(&d));
    let xml = ctl
        .conn
        .domain()
        .get_xml_desc(req)
        .await
        .map_err(crate::Error::from)?
        .into_inner()
        .xml;
    ctl.print(&xml);
    Ok(())
}

pub async fn autostart(ctl: &Ctl, key: &str, disable: bool) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let req = v1::SetAutostartRequest {
        object: Some(dom_ref(&d)),
        autostart: !disable,
    };
    ctl.conn.domain().set_autostart(req).await.map_err(|e| {
        let line = if disable {
            format!("Failed to unmark domain '{key}' as autostarted")
        } else {
            format!("Failed to mark domain '{key}' as autostarted")
        };
        CmdError::ctx(line, crate::Error::from(e))
    })?;
    if disable {
        ctl.extra(&format!("Domain '{key}' unmarked as autostarted\n"));
    } else {
        ctl.extra(&format!("Domain '{key}' marked as autostarted\n"));
    }
    Ok(())
}

pub async fn domxml_to_native(ctl: &Ctl, format: &str, file: &str) -> CmdResult {
    let xml = read_file(file).map_err(CmdError::msg)?;
    let req = v1::DomainXmlToNativeRequest {
        native_format: format.to_owned(),
        domain_xml: xml,
    };
    let native = ctl
        .conn
        .connect()
        .domain_xml_to_native(req)
        .await
        .map_err(crate::Error::from)?
        .into_inner();
    ctl.print(&native.config);
    Ok(())
}

pub async fn managedsave(ctl: &Ctl, key: &str) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    ctl.conn
        .domain()
        .managed_save(dom_ref(&d))
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to save domain '{key}' state"),
                crate::Error::from(e),
            )
        })?;
    // The leading newline ends virsh's job-progress line.
    ctl.extra(&format!("\nDomain '{key}' state saved by libvirt\n"));
    Ok(())
}

pub async fn managedsave_remove(ctl: &Ctl, key: &str) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let mut c = ctl.conn.domain();
    let has = c
        .has_managed_save(dom_ref(&d))
        .await
        .map_err(|e| {
            CmdError::ctx(
                "Failed to check for domain managed save image",
                crate::Error::from(e),
            )
        })?
        .into_inner()
        .has_managed_save;
    // Both messages lack a newline in virsh; the blank line after the
    // command ends them.
    if !has {
        ctl.extra(&format!(
            "Domain '{key}' has no manage save image; removal skipped"
        ));
        return Ok(());
    }
    c.managed_save_remove(dom_ref(&d)).await.map_err(|e| {
        CmdError::ctx(
            format!("Failed to remove managed save image for domain '{key}'"),
            crate::Error::from(e),
        )
    })?;
    ctl.extra(&format!("Removed managedsave image for domain '{key}'"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(id: i32, name: &str, state: DomainState, uuid: &str) -> DomainSummary {
        DomainSummary {
            uuid: uuid.into(),
            name: name.into(),
            id,
            state: state as i32,
            persistent: true,
            ..Default::default()
        }
    }

    fn test_domains() -> Vec<DomainSummary> {
        let mut v = vec![
            summary(
                -1,
                "vm1",
                DomainState::Shutoff,
                "207aa170-806b-4dbd-9ef3-0e8749c3a862",
            ),
            summary(
                1,
                "test",
                DomainState::Running,
                "6695eb01-f6a4-8304-79aa-97f2502e193f",
            ),
        ];
        sort_domains(&mut v);
        v
    }

    #[test]
    fn list_all_matches_virsh() {
        let a = ListArgs {
            all: true,
            ..Default::default()
        };
        // virsh -c test:///default "define d.xml; list --all"
        assert_eq!(
            list_text(&test_domains(), &a, true, &[]),
            " Id   Name   State\n-----------------------\n 1    test   running\n -    vm1    shut off\n"
        );
    }

    #[test]
    fn list_field_modes_match_virsh() {
        let d = test_domains();
        let mk = |id, name, uuid| ListArgs {
            all: true,
            id,
            name,
            uuid,
            ..Default::default()
        };
        assert_eq!(list_text(&d, &mk(true, false, false), true, &[]), "1\n");
        assert_eq!(
            list_text(&d, &mk(true, true, false), true, &[]),
            "1 test\n- vm1\n"
        );
        assert_eq!(
            list_text(&d, &mk(true, true, true), true, &[]),
            "6695eb01-f6a4-8304-79aa-97f2502e193f 1 test\n207aa170-806b-4dbd-9ef3-0e8749c3a862 - vm1\n"
        );
        assert_eq!(
            list_text(&d, &mk(false, true, false), true, &[]),
            "test\nvm1\n"
        );
    }

    #[test]
    fn list_table_with_uuid_matches_virsh() {
        let d = vec![summary(
            1,
            "test",
            DomainState::Running,
            "6695eb01-f6a4-8304-79aa-97f2502e193f",
        )];
        let a = ListArgs {
            table: true,
            uuid: true,
            ..Default::default()
        };
        assert_eq!(
            list_text(&d, &a, true, &[]),
            " Id   Name   State     UUID\n\
             -------------------------------------------------------------\n \
             1    test   running   6695eb01-f6a4-8304-79aa-97f2502e193f\n"
        );
    }

    #[test]
    fn list_with_title_matches_virsh() {
        let d = vec![summary(
            1,
            "test",
            DomainState::Running,
            "6695eb01-f6a4-8304-79aa-97f2502e193f",
        )];
        let a = ListArgs {
            table: true,
            title: true,
            uuid: true,
            ..Default::default()
        };
        // virsh -c test:///default "desc test --title 'My Title'; list --table --title --uuid"
        assert_eq!(
            list_text(&d, &a, true, &["My Title".to_owned()]),
            " Id   Name   State     Title      UUID\n\
             ------------------------------------------------------------------------\n \
             1    test   running   My Title   6695eb01-f6a4-8304-79aa-97f2502e193f\n"
        );
        let no_title = ListArgs {
            title: true,
            ..Default::default()
        };
        assert_eq!(
            list_text(&d, &no_title, true, &[String::new()]),
            " Id   Name   State     Title\n------------------------------\n 1    test   running   \n"
        );
    }

    #[test]
    fn list_flags() {
        let r = list_request(&ListArgs::default());
        let f = r.filter.unwrap_or_default();
        assert!(f.active && !f.inactive);
        let r = list_request(&ListArgs {
            inactive: true,
            ..Default::default()
        });
        let f = r.filter.unwrap_or_default();
        assert!(!f.active && f.inactive);
    }

    #[test]
    fn sorting_puts_running_first_by_id() {
        let mut v = vec![
            summary(-1, "b", DomainState::Shutoff, ""),
            summary(7, "z", DomainState::Running, ""),
            summary(-1, "A", DomainState::Shutoff, ""),
            summary(2, "y", DomainState::Running, ""),
        ];
        sort_domains(&mut v);
        let names: Vec<_> = v.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["y", "z", "A", "b"]);
    }

    fn test_info() -> v1::DomainInfo {
        v1::DomainInfo {
            state: DomainState::Running as i32,
            max_mem_kib: 8_388_608,
            memory_kib: 2_097_152,
            nr_virt_cpu: 2,
            cpu_time_ns: 1_795_653_232_200_000_000,
            os_type: "linux".into(),
            persistent: true,
            autostart: false,
            has_managed_save: false,
            id: 1,
            uuid: "6695eb01-f6a4-8304-79aa-97f2502e193f".into(),
            name: "test".into(),
        }
    }

    #[test]
    fn dominfo_matches_virsh() {
        let sec = ("testSecurity".to_owned(), String::new());
        // `virsh -c test:///default dominfo test`, less the security label
        // line (no contract call reports a domain's label yet).
        assert_eq!(
            dominfo_text(&test_info(), Some(&sec)),
            "Id:             1\n\
             Name:           test\n\
             UUID:           6695eb01-f6a4-8304-79aa-97f2502e193f\n\
             OS Type:        linux\n\
             State:          running\n\
             CPU(s):         2\n\
             CPU time:       1795653232.2s\n\
             Max memory:     8388608 KiB\n\
             Used memory:    2097152 KiB\n\
             Persistent:     yes\n\
             Autostart:      disable\n\
             Managed save:   no\n\
             Security model: testSecurity\n\
             Security DOI:   \n"
        );
    }

    #[test]
    fn dominfo_of_inactive_domain() {
        let mut info = test_info();
        info.id = -1;
        info.state = DomainState::Shutoff as i32;
        info.cpu_time_ns = 0;
        info.autostart = true;
        let text = dominfo_text(&info, None);
        assert!(text.starts_with("Id:             -\n"));
        assert!(text.contains("State:          shut off\n"));
        assert!(!text.contains("CPU time:"));
        assert!(text.contains("Autostart:      enable\n"));
        assert!(text.ends_with("Managed save:   no\n"));
    }

    #[test]
    fn domstate_reasons_match_virsh() {
        let st = |state: DomainState, reason: i32| v1::DomainStateInfo {
            state: state as i32,
            reason,
            reason_name: String::new(),
        };
        assert_eq!(
            domstate_text(&st(DomainState::Running, 0), false),
            "running\n"
        );
        assert_eq!(
            domstate_text(&st(DomainState::Running, 0), true),
            "running (unknown)\n"
        );
        assert_eq!(
            domstate_text(&st(DomainState::Running, 1), true),
            "running (booted)\n"
        );
        assert_eq!(
            domstate_text(&st(DomainState::Paused, 1), true),
            "paused (user)\n"
        );
        assert_eq!(
            domstate_text(&st(DomainState::Shutoff, 1), true),
            "shut off (shutdown)\n"
        );
        assert_eq!(
            domstate_text(&st(DomainState::Shutoff, 2), true),
            "shut off (destroyed)\n"
        );
        assert_eq!(
            domstate_text(&st(DomainState::Shutoff, 99), true),
            "shut off (unknown)\n"
        );
        let mut odd = st(DomainState::Shutoff, 99);
        odd.reason_name = "vendor".into();
        assert_eq!(domstate_text(&odd, true), "shut off (vendor)\n");
    }

    #[test]
    fn shutdown_modes() {
        assert!(matches!(shutdown_mode(None), Ok(v1::ShutdownMode::Default)));
        assert!(matches!(
            shutdown_mode(Some("agent,acpi")),
            Ok(v1::ShutdownMode::GuestAgent)
        ));
        assert!(shutdown_mode(Some("bogus")).is_err());
    }
}
