//! The Domain service: libvirt's test driver domain state machine.

use std::time::{SystemTime, UNIX_EPOCH};

use tonic::{Request, Response, Status, Streaming};
use virtmesh_conf::domain::{DomainDef, parse_device};
use virtmesh_proto::v1::{
    self as pb, DomainEventType as Ev, DomainState, MetadataType, domain_server::Domain,
    event::Kind, object_ref::Key, typed_param::Value,
};
use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

use crate::err::{self, VResult};
use crate::host::{DomainObj, Host, State};
use crate::{BoxStream, TestDriver, events};

/// virsh's words for each state's reasons.
pub fn reason_name(state: DomainState, reason: i32) -> &'static str {
    virtmesh_proto::names::domain_state_reason(state, reason).unwrap_or("unknown")
}

// Reason numbers (virDomain*Reason) used below.
const RUNNING_BOOTED: i32 = 1;
const RUNNING_RESTORED: i32 = 3;
const RUNNING_UNPAUSED: i32 = 5;
const PAUSED_USER: i32 = 1;
const SHUTOFF_SHUTDOWN: i32 = 1;
const SHUTOFF_DESTROYED: i32 = 2;
const SHUTOFF_SAVED: i32 = 5;

fn conf_err(e: virtmesh_conf::ConfError) -> VirtError {
    err::conf(e, ErrorDomain::Domain)
}

/// Index of the domain a reference names, or libvirt's not-found error.
pub fn find(st: &State, r: Option<&pb::ObjectRef>) -> VResult<usize> {
    let key = r
        .and_then(|r| r.key.as_ref())
        .ok_or_else(|| err::missing("domain"))?;
    let found = match key {
        Key::Name(n) => st.domains.iter().position(|d| d.name() == *n),
        Key::Uuid(u) => st.domains.iter().position(|d| crate::uuid_eq(&d.uuid(), u)),
        Key::Id(id) => st.domains.iter().position(|d| d.is_active() && d.id == *id),
    };
    found.ok_or_else(|| {
        let detail = match key {
            Key::Name(n) => format!("no domain with matching name '{n}'"),
            Key::Uuid(u) => format!("no domain with matching uuid '{u}'"),
            Key::Id(id) => format!("no domain with matching id {id}"),
        };
        err::not_found(ErrorCode::NoDomain, detail)
    })
}

fn lifecycle(host: &Host, d: &DomainObj, ty: Ev, detail: i32) {
    host.emit(events::domain_lifecycle(&d.uuid(), &d.name(), ty, detail));
}

fn not_running() -> VirtError {
    err::op_invalid("domain is not running")
}

/// Put a domain into the running state (testDomainStartState).
pub fn start_state(st: &mut State, idx: usize, reason: i32) {
    let id = st.alloc_id();
    let d = &mut st.domains[idx];
    d.id = id;
    d.state = DomainState::Running;
    d.reason = reason;
    if d.persistent && d.new_def.is_none() {
        d.new_def = Some(d.def.clone());
    }
    d.managed_save = false;
}

/// Put a domain into shutoff (testDomainShutdownState): the live
/// definition is dropped in favour of the persistent one.
pub fn shutdown_state(d: &mut DomainObj, reason: i32) {
    if let Some(cfg) = d.new_def.take() {
        d.def = cfg;
    }
    d.state = DomainState::Shutoff;
    d.reason = reason;
    d.id = -1;
}

/// Remove a stopped transient domain, as libvirt does after it stops.
fn reap_transient(st: &mut State, idx: usize) {
    if !st.domains[idx].persistent && !st.domains[idx].is_active() {
        st.domains.remove(idx);
    }
}

/// libvirt's virDomainObjListAdd checks: returns the index of an existing
/// object the new definition replaces.
fn check_duplicates(st: &State, def: &DomainDef, check_live: bool) -> VResult<Option<usize>> {
    let uuid = def.uuid();
    let name = def.name();
    if let Some(i) = st
        .domains
        .iter()
        .position(|d| d.uuid().eq_ignore_ascii_case(&uuid))
    {
        let d = &st.domains[i];
        if d.name() != name {
            return Err(err::op_failed(
                ErrorDomain::Domain,
                format!(
                    "domain '{}' is already defined with uuid {}",
                    d.name(),
                    d.uuid()
                ),
            ));
        }
        if check_live && d.is_active() {
            return Err(err::op_invalid(format!(
                "domain '{}' is already active",
                d.name()
            )));
        }
        return Ok(Some(i));
    }
    if let Some(d) = st.domains.iter().find(|d| d.name() == name) {
        return Err(err::op_failed(
            ErrorDomain::Domain,
            format!(
                "domain '{}' already exists with uuid {}",
                d.name(),
                d.uuid()
            ),
        ));
    }
    Ok(None)
}

pub fn define(host: &Host, xml: &str) -> VResult<pb::DomainSummary> {
    let def = DomainDef::parse(xml).map_err(conf_err)?;
    let mut st = host.lock();
    let existing = check_duplicates(&st, &def, false)?;
    let (idx, detail) = match existing {
        Some(i) => {
            let d = &mut st.domains[i];
            let was_persistent = d.persistent;
            if d.is_active() {
                d.new_def = Some(def);
            } else {
                d.def = def;
            }
            d.persistent = true;
            (i, if was_persistent { 1 } else { 0 })
        }
        None => {
            st.domains.push(DomainObj::new(def, true));
            (st.domains.len() - 1, 0)
        }
    };
    let d = &st.domains[idx];
    lifecycle(host, d, Ev::DomainEventDefined, detail);
    Ok(d.summary())
}

fn create_xml(host: &Host, r: pb::CreateXmlRequest) -> VResult<pb::DomainSummary> {
    let def = DomainDef::parse(&r.xml).map_err(conf_err)?;
    run_definition(host, def, RUNNING_BOOTED, 0, r.start_paused)
}

/// Run `def` (virDomainObjListAdd with the live checks, then
/// testDomainStartState): an inactive persistent domain of that
/// identity runs it live, otherwise it is a new transient domain; the
/// start has `reason` and event detail `detail`, optionally paused.
fn run_definition(
    host: &Host,
    def: DomainDef,
    reason: i32,
    detail: i32,
    paused: bool,
) -> VResult<pb::DomainSummary> {
    let mut st = host.lock();
    let idx = match check_duplicates(&st, &def, true)? {
        Some(i) => {
            let d = &mut st.domains[i];
            d.new_def = Some(d.def.clone());
            d.def = def;
            i
        }
        None => {
            st.domains.push(DomainObj::new(def, false));
            st.domains.len() - 1
        }
    };
    start_state(&mut st, idx, reason);
    lifecycle(host, &st.domains[idx], Ev::DomainEventStarted, detail);
    if paused {
        let d = &mut st.domains[idx];
        d.state = DomainState::Paused;
        d.reason = PAUSED_USER;
        lifecycle(host, &st.domains[idx], Ev::DomainEventSuspended, 0);
    }
    Ok(st.domains[idx].summary())
}

fn create(host: &Host, r: pb::CreateRequest) -> VResult<pb::DomainSummary> {
    let mut st = host.lock();
    let idx = find(&st, r.domain.as_ref())?;
    if st.domains[idx].state != DomainState::Shutoff {
        return Err(err::op_invalid("domain is already running"));
    }
    start_state(&mut st, idx, RUNNING_BOOTED);
    lifecycle(host, &st.domains[idx], Ev::DomainEventStarted, 0);
    if r.start_paused {
        let d = &mut st.domains[idx];
        d.state = DomainState::Paused;
        d.reason = PAUSED_USER;
        lifecycle(host, &st.domains[idx], Ev::DomainEventSuspended, 0);
    }
    Ok(st.domains[idx].summary())
}

fn undefine(host: &Host, r: pb::UndefineRequest) -> VResult<()> {
    let mut st = host.lock();
    let idx = find(&st, r.domain.as_ref())?;
    let d = &st.domains[idx];
    if d.managed_save && !r.managed_save {
        return Err(err::op_invalid(
            "Refusing to undefine while domain managed save image exists",
        ));
    }
    if !d.snapshots.is_empty() && !r.snapshots_metadata {
        return Err(err::op_invalid(format!(
            "cannot delete inactive domain with {} snapshots",
            d.snapshots.len()
        )));
    }
    lifecycle(host, d, Ev::DomainEventUndefined, 0);
    if d.is_active() {
        let d = &mut st.domains[idx];
        d.persistent = false;
        d.new_def = None;
        d.autostart = false;
        d.managed_save = false;
    } else {
        st.domains.remove(idx);
    }
    Ok(())
}

fn destroy(host: &Host, r: pb::DestroyRequest) -> VResult<()> {
    let mut st = host.lock();
    let idx = find(&st, r.domain.as_ref())?;
    if !st.domains[idx].is_active() {
        return Err(not_running());
    }
    shutdown_state(&mut st.domains[idx], SHUTOFF_DESTROYED);
    lifecycle(host, &st.domains[idx], Ev::DomainEventStopped, 1);
    reap_transient(&mut st, idx);
    Ok(())
}

fn suspend(host: &Host, r: pb::ObjectRef) -> VResult<()> {
    let mut st = host.lock();
    let idx = find(&st, Some(&r))?;
    let d = &mut st.domains[idx];
    if matches!(d.state, DomainState::Shutoff | DomainState::Paused) {
        return Err(err::internal(format!("domain '{}' not running", d.name())));
    }
    d.state = DomainState::Paused;
    d.reason = PAUSED_USER;
    lifecycle(host, d, Ev::DomainEventSuspended, 0);
    Ok(())
}

fn resume(host: &Host, r: pb::ObjectRef) -> VResult<()> {
    let mut st = host.lock();
    let idx = find(&st, Some(&r))?;
    let d = &mut st.domains[idx];
    if d.state != DomainState::Paused {
        return Err(err::internal(format!("domain '{}' not paused", d.name())));
    }
    d.state = DomainState::Running;
    d.reason = RUNNING_UNPAUSED;
    lifecycle(host, d, Ev::DomainEventResumed, 0);
    Ok(())
}

/// Apply a lifecycle action (on_poweroff / on_reboot) the way
/// testDomainActionSetState does; returns true when the domain stopped.
fn apply_action(d: &mut DomainObj, action: &str) -> bool {
    match action {
        "restart" | "rename-restart" => {
            d.state = DomainState::Running;
            d.reason = RUNNING_BOOTED;
            false
        }
        _ => {
            shutdown_state(d, SHUTOFF_SHUTDOWN);
            true
        }
    }
}

fn shutdown(host: &Host, r: pb::ShutdownRequest) -> VResult<()> {
    let mut st = host.lock();
    let idx = find(&st, r.domain.as_ref())?;
    let d = &mut st.domains[idx];
    if d.state == DomainState::Shutoff {
        return Err(err::internal(format!("domain '{}' not running", d.name())));
    }
    let action = d.def.on_poweroff();
    if apply_action(d, &action) {
        lifecycle(host, d, Ev::DomainEventShutdown, 0);
        lifecycle(host, d, Ev::DomainEventStopped, 0);
        reap_transient(&mut st, idx);
    }
    Ok(())
}

fn reboot(host: &Host, r: pb::RebootRequest) -> VResult<()> {
    let mut st = host.lock();
    let idx = find(&st, r.domain.as_ref())?;
    let d = &mut st.domains[idx];
    if !d.is_active() {
        return Err(not_running());
    }
    let action = d.def.on_reboot();
    if apply_action(d, &action) {
        lifecycle(host, d, Ev::DomainEventStopped, 0);
        reap_transient(&mut st, idx);
    } else {
        host.emit(Kind::DomainReboot(pb::DomainReboot {
            domain: events::object_id(&d.uuid(), &d.name()),
        }));
    }
    Ok(())
}

fn reset(host: &Host, r: pb::ObjectRef) -> VResult<()> {
    let st = host.lock();
    let idx = find(&st, Some(&r))?;
    if !st.domains[idx].is_active() {
        return Err(not_running());
    }
    Ok(())
}

fn get_xml(host: &Host, r: pb::GetXmlDescRequest) -> VResult<pb::XmlDoc> {
    let st = host.lock();
    let idx = find(&st, r.object.as_ref())?;
    let d = &st.domains[idx];
    let xml = if r.inactive {
        d.config().to_xml_flags(None, r.secure)
    } else {
        d.def.to_xml_flags(d.is_active().then_some(d.id), r.secure)
    };
    Ok(pb::XmlDoc { xml })
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn now_us() -> i64 {
    i64::try_from(now_ns() / 1000).unwrap_or(i64::MAX)
}

fn info(host: &Host, r: pb::ObjectRef) -> VResult<pb::DomainInfo> {
    let st = host.lock();
    let d = &st.domains[find(&st, Some(&r))?];
    Ok(pb::DomainInfo {
        state: d.state as i32,
        max_mem_kib: d.def.max_memory_kib(),
        memory_kib: d.def.current_memory_kib(),
        nr_virt_cpu: d.def.vcpus(),
        // The test driver reports wall-clock time as CPU time.
        cpu_time_ns: now_ns(),
        // testDomainGetOSType always answers "linux".
        os_type: "linux".into(),
        persistent: d.persistent,
        autostart: d.autostart,
        has_managed_save: d.managed_save,
        id: d.id,
        uuid: d.uuid(),
        name: d.name(),
    })
}

fn state_info(host: &Host, r: pb::ObjectRef) -> VResult<pb::DomainStateInfo> {
    let st = host.lock();
    let d = &st.domains[find(&st, Some(&r))?];
    Ok(pb::DomainStateInfo {
        state: d.state as i32,
        reason: d.reason,
        reason_name: reason_name(d.state, d.reason).into(),
    })
}

fn set_autostart(host: &Host, r: pb::SetAutostartRequest) -> VResult<()> {
    let mut st = host.lock();
    let idx = find(&st, r.object.as_ref())?;
    let d = &mut st.domains[idx];
    if !d.persistent {
        return Err(err::op_invalid("cannot set autostart for transient domain"));
    }
    d.autostart = r.autostart;
    Ok(())
}

/// Which definitions an impact selects: (live, config).
fn impact(d: &DomainObj, i: Option<&pb::Impact>) -> VResult<(bool, bool)> {
    let i = i.cloned().unwrap_or_default();
    let (mut live, mut config) = (i.live, i.config);
    if !live && !config {
        if d.is_active() {
            live = true;
        } else {
            config = true;
        }
    }
    if live && !d.is_active() {
        return Err(not_running());
    }
    if config && !d.persistent {
        return Err(err::op_invalid(
            "transient domains do not have any persistent config",
        ));
    }
    Ok((live, config))
}

/// Apply `f` to each selected definition.
fn modify(
    d: &mut DomainObj,
    live: bool,
    config: bool,
    mut f: impl FnMut(&mut DomainDef, bool) -> VResult<()>,
) -> VResult<()> {
    // `f` learns whether it edits the live definition.
    if live {
        f(&mut d.def, true)?;
    }
    if config {
        if d.is_active() {
            let mut cfg = d.config().clone();
            f(&mut cfg, false)?;
            d.new_def = Some(cfg);
        } else {
            f(&mut d.def, false)?;
        }
    }
    Ok(())
}

fn device_alias(dev: &virtmesh_conf::Element) -> String {
    dev.child("alias")
        .and_then(|a| a.attr("name"))
        .or_else(|| dev.child("target").and_then(|t| t.attr("dev")))
        .or_else(|| dev.child("mac").and_then(|t| t.attr("address")))
        .unwrap_or(&dev.name)
        .to_owned()
}

#[derive(Clone, Copy)]
enum DevOp {
    Attach,
    Detach,
    Update,
}

fn device_op(host: &Host, r: pb::DeviceRequest, op: DevOp) -> VResult<()> {
    let dev = parse_device(&r.device_xml).map_err(conf_err)?;
    let mut st = host.lock();
    let idx = find(&st, r.domain.as_ref())?;
    let d = &mut st.domains[idx];
    let (live, config) = impact(d, r.impact.as_ref())?;
    let missing = |dev: &virtmesh_conf::Element| {
        let what = match dev.name.as_str() {
            "disk" => format!(
                "disk {} not found",
                dev.child("target")
                    .and_then(|t| t.attr("dev"))
                    .unwrap_or("")
            ),
            "interface" => format!(
                "no device matching MAC address {} found",
                dev.child("mac")
                    .and_then(|t| t.attr("address"))
                    .unwrap_or("")
            ),
            other => format!("matching {other} device was not found"),
        };
        VirtError::new(
            ErrorCode::DeviceMissing,
            ErrorDomain::Domain,
            format!("device not found: {what}"),
        )
    };
    modify(d, live, config, |def, live_target| match op {
        DevOp::Attach => {
            if dev.name == "disk" {
                let target = dev
                    .child("target")
                    .and_then(|t| t.attr("dev"))
                    .unwrap_or("");
                if def.disks().iter().any(|(t, _)| t == target) {
                    return Err(err::op_failed(
                        ErrorDomain::Domain,
                        format!("target {target} already exists"),
                    ));
                }
            }
            let mut dev = dev.clone();
            if live_target && dev.name == "disk" && dev.child("alias").is_none() {
                // A hot-plugged virtio disk gets its alias as in libvirt.
                let target = dev.child("target");
                let bus = target.and_then(|t| t.attr("bus")).unwrap_or("virtio");
                let idx = target
                    .and_then(|t| t.attr("dev"))
                    .filter(|n| n.starts_with("vd"))
                    .and_then(virtmesh_conf::devices::disk_index);
                if let (Some(idx), "virtio") = (idx, bus) {
                    dev.children.push(virtmesh_conf::Node::Element(
                        virtmesh_conf::Element::new("alias")
                            .with_attr("name", format!("virtio-disk{idx}")),
                    ));
                }
            }
            def.attach_device(dev).map_err(conf_err)
        }
        DevOp::Detach => {
            if def.detach_device(&dev) {
                Ok(())
            } else {
                Err(missing(&dev))
            }
        }
        DevOp::Update => {
            if def.update_device(dev.clone()).map_err(conf_err)? {
                Ok(())
            } else {
                Err(missing(&dev))
            }
        }
    })?;
    let added = match op {
        DevOp::Attach => Some(true),
        DevOp::Detach => Some(false),
        DevOp::Update => None,
    };
    if let (Some(added), true) = (added, live) {
        host.emit(Kind::DomainDevice(pb::DomainDeviceChange {
            domain: events::object_id(&d.uuid(), &d.name()),
            device_alias: device_alias(&dev),
            added,
        }));
    }
    Ok(())
}

fn set_vcpus(host: &Host, r: pb::SetVcpusRequest) -> VResult<()> {
    let max_supported = crate::connect::MAX_VCPUS;
    if r.count == 0 {
        return Err(err::invalid_arg(
            "argument unsupported: vcpu count must be greater than 0",
        ));
    }
    if r.count > max_supported {
        return Err(err::invalid_arg(format!(
            "requested cpu amount exceeds maximum supported amount ({} > {max_supported})",
            r.count
        )));
    }
    let mut st = host.lock();
    let idx = find(&st, r.domain.as_ref())?;
    let d = &mut st.domains[idx];
    let (live, config) = impact(d, r.impact.as_ref())?;
    if r.maximum && live {
        return Err(err::op_invalid(
            "cannot change maximum vCPU count of a running domain",
        ));
    }
    modify(d, live, config, |def, _live| {
        if r.maximum {
            def.set_max_vcpus(r.count);
        } else {
            if r.count > def.max_vcpus() {
                return Err(err::invalid_arg(format!(
                    "requested cpu amount exceeds maximum ({} > {})",
                    r.count,
                    def.max_vcpus()
                )));
            }
            def.set_vcpus(r.count);
        }
        Ok(())
    })
}

fn set_memory(host: &Host, r: pb::SetMemoryRequest) -> VResult<()> {
    let mut st = host.lock();
    let idx = find(&st, r.domain.as_ref())?;
    let d = &mut st.domains[idx];
    let (live, config) = impact(d, r.impact.as_ref())?;
    if r.maximum && live {
        return Err(err::op_invalid(
            "cannot resize the maximum memory on an active domain",
        ));
    }
    modify(d, live, config, |def, _live| {
        if r.maximum {
            def.set_max_memory_kib(r.memory_kib);
        } else {
            if r.memory_kib > def.max_memory_kib() {
                return Err(err::invalid_arg("cannot set memory higher than max memory"));
            }
            def.set_current_memory_kib(r.memory_kib);
        }
        Ok(())
    })
}

fn no_metadata() -> VirtError {
    err::not_found(
        ErrorCode::NoDomainMetadata,
        "Requested metadata element is not present",
    )
}

fn get_metadata(host: &Host, r: pb::GetMetadataRequest) -> VResult<pb::Metadata> {
    let st = host.lock();
    let d = &st.domains[find(&st, r.domain.as_ref())?];
    let (live, _) = impact(d, r.impact.as_ref())?;
    let def = if live { &d.def } else { d.config() };
    let value = match MetadataType::try_from(r.r#type).unwrap_or(MetadataType::Description) {
        MetadataType::Title => def.title().ok_or_else(no_metadata)?,
        MetadataType::Description => def.description().ok_or_else(no_metadata)?,
        MetadataType::Element => {
            if r.uri.is_empty() {
                return Err(err::invalid_arg("nsuri must be specified"));
            }
            let el = def.metadata_element(&r.uri).ok_or_else(no_metadata)?;
            let mut el = el.clone();
            // Clients get the element as they stored it: namespace
            // declaration kept, trailing newline dropped.
            el.order_attrs(&[]);
            el.to_xml_libxml().trim_end().to_owned()
        }
    };
    Ok(pb::Metadata { value })
}

fn set_metadata(host: &Host, r: pb::SetMetadataRequest) -> VResult<()> {
    let ty = MetadataType::try_from(r.r#type).unwrap_or(MetadataType::Description);
    let element = if ty == MetadataType::Element {
        if r.uri.is_empty() {
            return Err(err::invalid_arg("nsuri must be specified"));
        }
        if r.value.is_empty() {
            None
        } else {
            if r.key.is_empty() {
                return Err(err::invalid_arg("key must be specified"));
            }
            Some(virtmesh_conf::xml::parse(&r.value).map_err(|e| conf_err(e.into()))?)
        }
    } else {
        None
    };
    let mut st = host.lock();
    let idx = find(&st, r.domain.as_ref())?;
    let d = &mut st.domains[idx];
    let (live, config) = impact(d, r.impact.as_ref())?;
    modify(d, live, config, |def, _live| {
        match ty {
            MetadataType::Title => {
                if r.value.contains('\n') {
                    return Err(err::invalid_arg("title can't contain newlines"));
                }
                def.set_text_meta("title", Some(&r.value));
            }
            MetadataType::Description => def.set_text_meta("description", Some(&r.value)),
            MetadataType::Element => def.set_metadata_element(&r.uri, &r.key, element.clone()),
        }
        Ok(())
    })?;
    host.emit(Kind::DomainMetadata(pb::DomainMetadataChange {
        domain: events::object_id(&d.uuid(), &d.name()),
        metadata_type: ty as i32,
        nsuri: r.uri.clone(),
    }));
    Ok(())
}

fn block_stats(host: &Host, r: pb::BlockStatsRequest) -> VResult<pb::BlockStatsReply> {
    let st = host.lock();
    let d = &st.domains[find(&st, r.domain.as_ref())?];
    if r.disk.is_empty() {
        return Err(err::unsupported("summary statistics are not supported yet"));
    }
    if !d
        .def
        .disks()
        .iter()
        .any(|(t, s)| *t == r.disk || s.as_deref() == Some(r.disk.as_str()))
    {
        return Err(err::invalid_arg(format!("invalid path: {}", r.disk)));
    }
    if !d.is_active() {
        return Err(not_running());
    }
    // testDomainBlockStats fakes counters from the wall clock.
    let base = now_us();
    Ok(pb::BlockStatsReply {
        rd_req: base / 10,
        rd_bytes: base / 20,
        wr_req: base / 30,
        wr_bytes: base / 40,
        errs: base / 1_000_000 / 2,
    })
}

fn interface_stats(host: &Host, r: pb::InterfaceStatsRequest) -> VResult<pb::InterfaceStatsReply> {
    let st = host.lock();
    let d = &st.domains[find(&st, r.domain.as_ref())?];
    let wanted = r.interface.to_ascii_lowercase();
    if !d
        .def
        .interfaces()
        .iter()
        .any(|(t, m)| *t == r.interface || m.to_ascii_lowercase() == wanted)
    {
        return Err(err::invalid_arg(format!(
            "'{}' is not a known interface",
            r.interface
        )));
    }
    if !d.is_active() {
        return Err(not_running());
    }
    // testDomainInterfaceStats fakes counters from the wall clock.
    let base = now_us();
    Ok(pb::InterfaceStatsReply {
        rx_bytes: base / 10,
        rx_packets: base / 100,
        rx_errs: base / 1_000_000,
        rx_drop: base / 2_000_000,
        tx_bytes: base / 20,
        tx_packets: base / 110,
        tx_errs: base / 3_000_000,
        tx_drop: base / 4_000_000,
    })
}

fn memory_stats(host: &Host, r: pb::ObjectRef) -> VResult<pb::MemoryStatsReply> {
    let st = host.lock();
    let d = &st.domains[find(&st, Some(&r))?];
    if !d.is_active() {
        return Err(not_running());
    }
    // The fixed figures libvirt's test driver reports, scaled from the
    // balloon size.
    let cur = d.def.current_memory_kib();
    let stats = [
        ("actual", cur),
        ("swap_in", 0),
        ("swap_out", 0),
        ("major_fault", 0),
        ("minor_fault", 0),
        ("unused", cur / 2),
        ("available", cur),
        ("usable", cur / 2),
        ("last_update", 627_319_920),
        ("disk_caches", cur / 8),
        ("hugetlb_pgalloc", 0),
        ("hugetlb_pgfail", 0),
        ("rss", cur / 2),
    ];
    Ok(pb::MemoryStatsReply {
        stats: stats.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
    })
}

fn interface_addresses(
    host: &Host,
    r: pb::InterfaceAddressesRequest,
) -> VResult<pb::InterfaceAddressesReply> {
    let st = host.lock();
    let d = &st.domains[find(&st, r.domain.as_ref())?];
    if !d.is_active() {
        return Err(not_running());
    }
    // testDomainInterfaceAddresses: one made-up IPv4 lease per interface.
    let interfaces = d
        .def
        .interfaces()
        .into_iter()
        .enumerate()
        .map(|(i, (name, mac))| pb::DomainInterface {
            name,
            hwaddr: mac,
            addrs: vec![pb::IpAddress {
                family: "ipv4".into(),
                address: format!("192.168.122.{}", 3 + i),
                prefix: 24,
            }],
        })
        .collect();
    Ok(pb::InterfaceAddressesReply { interfaces })
}

fn pair(a: bool, b: bool, value: bool) -> bool {
    a == b || (a && value) || (b && !value)
}

/// virConnectListAllDomains filtering.
pub fn list_matches(d: &DomainObj, r: &pb::ListDomainsRequest) -> bool {
    let f = r.filter.unwrap_or_default();
    let state_ok = if r.running || r.paused || r.shutoff || r.other {
        (r.running && d.state == DomainState::Running)
            || (r.paused && d.state == DomainState::Paused)
            || (r.shutoff && d.state == DomainState::Shutoff)
            || (r.other
                && !matches!(
                    d.state,
                    DomainState::Running | DomainState::Paused | DomainState::Shutoff
                ))
    } else {
        true
    };
    state_ok
        && pair(f.active, f.inactive, d.is_active())
        && pair(f.persistent, f.transient, d.persistent)
        && pair(f.autostart, f.no_autostart, d.autostart)
        && pair(r.managed_save, r.no_managed_save, d.managed_save)
        && pair(r.has_snapshot, r.no_snapshot, !d.snapshots.is_empty())
}

fn list(host: &Host, r: pb::ListDomainsRequest) -> VResult<Vec<pb::DomainSummary>> {
    let st = host.lock();
    Ok(st
        .domains
        .iter()
        .filter(|d| list_matches(d, &r))
        .map(DomainObj::summary)
        .collect())
}

fn param(field: &str, value: Value) -> pb::TypedParam {
    pb::TypedParam {
        field: field.to_owned(),
        value: Some(value),
    }
}

/// The stats groups this driver reports, by their virsh names.
const STATS_GROUPS: &[&str] = &[
    "state",
    "cpu-total",
    "balloon",
    "vcpu",
    "interface",
    "block",
];

fn all_stats(host: &Host, r: pb::GetAllStatsRequest) -> VResult<Vec<pb::DomainStats>> {
    if let Some(bad) = r
        .groups
        .iter()
        .find(|g| !STATS_GROUPS.contains(&g.as_str()))
    {
        return Err(err::unsupported(format!(
            "stats group '{bad}' is not supported by the test driver"
        )));
    }
    let want = |g: &str| r.groups.is_empty() || r.groups.iter().any(|x| x == g);
    let filter = r.filter.unwrap_or_default();
    let st = host.lock();
    let out = st
        .domains
        .iter()
        .filter(|d| list_matches(d, &filter))
        .map(|d| {
            let mut params = Vec::new();
            let uint =
                |p: &mut Vec<pb::TypedParam>, f: &str, v: u64| p.push(param(f, Value::Uint(v)));
            if want("state") {
                params.push(param("state.state", Value::Int(d.state as i64)));
                params.push(param("state.reason", Value::Int(i64::from(d.reason))));
            }
            if want("cpu-total") && d.is_active() {
                uint(&mut params, "cpu.time", now_ns());
            }
            if want("balloon") {
                uint(&mut params, "balloon.current", d.def.current_memory_kib());
                uint(&mut params, "balloon.maximum", d.def.max_memory_kib());
            }
            if want("vcpu") {
                uint(&mut params, "vcpu.current", u64::from(d.def.vcpus()));
                uint(&mut params, "vcpu.maximum", u64::from(d.def.max_vcpus()));
            }
            // Interface and block counters are the same wall-clock fakes
            // as InterfaceStats and BlockStats, for running domains.
            let base = u64::try_from(now_us()).unwrap_or(0);
            if want("interface") && d.is_active() {
                let nets = d.def.interfaces();
                uint(&mut params, "net.count", nets.len() as u64);
                for (i, (name, _)) in nets.iter().enumerate() {
                    params.push(param(&format!("net.{i}.name"), Value::String(name.clone())));
                    for (field, div) in [
                        ("rx.bytes", 10),
                        ("rx.pkts", 100),
                        ("rx.errs", 1_000_000),
                        ("rx.drop", 2_000_000),
                        ("tx.bytes", 20),
                        ("tx.pkts", 110),
                        ("tx.errs", 3_000_000),
                        ("tx.drop", 4_000_000),
                    ] {
                        uint(&mut params, &format!("net.{i}.{field}"), base / div);
                    }
                }
            }
            if want("block") && d.is_active() {
                let disks = d.def.disks();
                uint(&mut params, "block.count", disks.len() as u64);
                for (i, (name, path)) in disks.iter().enumerate() {
                    params.push(param(
                        &format!("block.{i}.name"),
                        Value::String(name.clone()),
                    ));
                    if let Some(p) = path {
                        params.push(param(&format!("block.{i}.path"), Value::String(p.clone())));
                    }
                    for (field, div) in [
                        ("rd.reqs", 10),
                        ("rd.bytes", 20),
                        ("wr.reqs", 30),
                        ("wr.bytes", 40),
                    ] {
                        uint(&mut params, &format!("block.{i}.{field}"), base / div);
                    }
                }
            }
            pb::DomainStats {
                uuid: d.uuid(),
                name: d.name(),
                params,
            }
        })
        .collect();
    Ok(out)
}

fn managed_save(host: &Host, r: pb::ObjectRef) -> VResult<()> {
    let mut st = host.lock();
    let idx = find(&st, Some(&r))?;
    let d = &mut st.domains[idx];
    if !d.is_active() {
        return Err(not_running());
    }
    if !d.persistent {
        return Err(err::op_invalid(
            "cannot do managed save for transient domain",
        ));
    }
    shutdown_state(d, SHUTOFF_SAVED);
    d.managed_save = true;
    lifecycle(host, d, Ev::DomainEventStopped, 4);
    Ok(())
}

/// testDomainSaveImageWrite's layout: magic, the XML's length as a
/// native 32-bit int, the XML.
const TEST_SAVE_MAGIC: &[u8] = b"TestGuestMagic";

/// testDomainSaveFlags: the definition goes to the file, the domain stops
/// (shut off, saved); a transient one is gone.
fn save(host: &Host, r: pb::SaveRequest) -> VResult<()> {
    let mut st = host.lock();
    let idx = find(&st, r.domain.as_ref())?;
    let d = &mut st.domains[idx];
    if !d.is_active() {
        return Err(not_running());
    }
    let xml = d.def.to_xml_flags(None, true);
    let len = i32::try_from(xml.len()).map_err(|_| err::internal("definition too large"))?;
    let mut data = TEST_SAVE_MAGIC.to_vec();
    data.extend_from_slice(&len.to_ne_bytes());
    data.extend_from_slice(xml.as_bytes());
    virtmesh_util::fs::write_atomic(std::path::Path::new(&r.path), &data).map_err(|e| {
        err::system(format!(
            "saving domain '{}' to '{}': write failed: {e}",
            d.name(),
            r.path
        ))
    })?;
    shutdown_state(d, SHUTOFF_SAVED);
    lifecycle(host, d, Ev::DomainEventStopped, 4);
    reap_transient(&mut st, idx);
    Ok(())
}

/// testDomainRestoreFlags: the saved definition runs again (restored),
/// as the defined domain of that UUID or a transient one.
fn restore(host: &Host, r: pb::RestoreRequest) -> VResult<pb::DomainSummary> {
    let data = std::fs::read(&r.path)
        .map_err(|e| err::system(format!("cannot read domain image '{}': {e}", r.path)))?;
    let bad = || err::internal("mismatched header magic");
    let rest = data.strip_prefix(TEST_SAVE_MAGIC).ok_or_else(bad)?;
    let (len, xml) = rest.split_at_checked(4).ok_or_else(bad)?;
    let len = i32::from_ne_bytes(len.try_into().map_err(|_| bad())?);
    let len = usize::try_from(len).map_err(|_| err::internal("length of saved XML is negative"))?;
    let xml = xml
        .get(..len)
        .and_then(|x| std::str::from_utf8(x).ok())
        .ok_or_else(|| err::internal("incomplete saved image"))?;
    let def = DomainDef::parse(xml).map_err(conf_err)?;
    run_definition(host, def, RUNNING_RESTORED, 2, r.paused)
}

fn managed_save_remove(host: &Host, r: pb::ObjectRef) -> VResult<()> {
    let mut st = host.lock();
    let idx = find(&st, Some(&r))?;
    st.domains[idx].managed_save = false;
    Ok(())
}

#[tonic::async_trait]
impl Domain for TestDriver {
    type ListStream = BoxStream<pb::DomainSummary>;
    type GetAllStatsStream = BoxStream<pb::DomainStats>;
    type OpenConsoleStream = BoxStream<pb::ConsoleOutput>;
    type SnapshotListStream = BoxStream<pb::SnapshotSummary>;

    async fn list(
        &self,
        request: Request<pb::ListDomainsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        self.call_stream(request, list)
    }

    async fn lookup(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::DomainSummary>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            Ok(st.domains[find(&st, Some(&r))?].summary())
        })
    }

    async fn define_xml(
        &self,
        request: Request<pb::DefineXmlRequest>,
    ) -> Result<Response<pb::DomainSummary>, Status> {
        self.call(request, |h, r| define(h, &r.xml))
    }

    async fn create_xml(
        &self,
        request: Request<pb::CreateXmlRequest>,
    ) -> Result<Response<pb::DomainSummary>, Status> {
        self.call(request, create_xml)
    }

    async fn undefine(
        &self,
        request: Request<pb::UndefineRequest>,
    ) -> Result<Response<()>, Status> {
        self.call(request, undefine)
    }

    async fn create(
        &self,
        request: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::DomainSummary>, Status> {
        self.call(request, create)
    }

    async fn shutdown(
        &self,
        request: Request<pb::ShutdownRequest>,
    ) -> Result<Response<()>, Status> {
        self.call(request, shutdown)
    }

    async fn destroy(&self, request: Request<pb::DestroyRequest>) -> Result<Response<()>, Status> {
        self.call(request, destroy)
    }

    async fn suspend(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.call(request, suspend)
    }

    async fn resume(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.call(request, resume)
    }

    async fn reboot(&self, request: Request<pb::RebootRequest>) -> Result<Response<()>, Status> {
        self.call(request, reboot)
    }

    async fn reset(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.call(request, reset)
    }

    async fn get_xml_desc(
        &self,
        request: Request<pb::GetXmlDescRequest>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        self.call(request, get_xml)
    }

    async fn get_info(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::DomainInfo>, Status> {
        self.call(request, info)
    }

    async fn get_state(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::DomainStateInfo>, Status> {
        self.call(request, state_info)
    }

    async fn get_autostart(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::Autostart>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            Ok(pb::Autostart {
                autostart: st.domains[find(&st, Some(&r))?].autostart,
            })
        })
    }

    async fn set_autostart(
        &self,
        request: Request<pb::SetAutostartRequest>,
    ) -> Result<Response<()>, Status> {
        self.call(request, set_autostart)
    }

    async fn attach_device(
        &self,
        request: Request<pb::DeviceRequest>,
    ) -> Result<Response<()>, Status> {
        self.call(request, |h, r| device_op(h, r, DevOp::Attach))
    }

    async fn detach_device(
        &self,
        request: Request<pb::DeviceRequest>,
    ) -> Result<Response<()>, Status> {
        self.call(request, |h, r| device_op(h, r, DevOp::Detach))
    }

    async fn update_device(
        &self,
        request: Request<pb::DeviceRequest>,
    ) -> Result<Response<()>, Status> {
        self.call(request, |h, r| device_op(h, r, DevOp::Update))
    }

    async fn set_vcpus(
        &self,
        request: Request<pb::SetVcpusRequest>,
    ) -> Result<Response<()>, Status> {
        self.call(request, set_vcpus)
    }

    async fn set_memory(
        &self,
        request: Request<pb::SetMemoryRequest>,
    ) -> Result<Response<()>, Status> {
        self.call(request, set_memory)
    }

    async fn get_metadata(
        &self,
        request: Request<pb::GetMetadataRequest>,
    ) -> Result<Response<pb::Metadata>, Status> {
        self.call(request, get_metadata)
    }

    async fn set_metadata(
        &self,
        request: Request<pb::SetMetadataRequest>,
    ) -> Result<Response<()>, Status> {
        self.call(request, set_metadata)
    }

    async fn block_stats(
        &self,
        request: Request<pb::BlockStatsRequest>,
    ) -> Result<Response<pb::BlockStatsReply>, Status> {
        self.call(request, block_stats)
    }

    async fn interface_stats(
        &self,
        request: Request<pb::InterfaceStatsRequest>,
    ) -> Result<Response<pb::InterfaceStatsReply>, Status> {
        self.call(request, interface_stats)
    }

    /// libvirt's test driver has no domiftune either.
    async fn get_interface_parameters(
        &self,
        _: Request<pb::InterfaceParametersRequest>,
    ) -> Result<Response<pb::InterfaceParameters>, Status> {
        Err(err::unimplemented("virDomainGetInterfaceParameters").into())
    }

    async fn set_interface_parameters(
        &self,
        _: Request<pb::SetInterfaceParametersRequest>,
    ) -> Result<Response<()>, Status> {
        Err(err::unimplemented("virDomainSetInterfaceParameters").into())
    }

    async fn memory_stats(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::MemoryStatsReply>, Status> {
        self.call(request, memory_stats)
    }

    async fn get_all_stats(
        &self,
        request: Request<pb::GetAllStatsRequest>,
    ) -> Result<Response<Self::GetAllStatsStream>, Status> {
        self.call_stream(request, all_stats)
    }

    async fn interface_addresses(
        &self,
        request: Request<pb::InterfaceAddressesRequest>,
    ) -> Result<Response<pb::InterfaceAddressesReply>, Status> {
        self.call(request, interface_addresses)
    }

    async fn open_console(
        &self,
        request: Request<Streaming<pb::ConsoleInput>>,
    ) -> Result<Response<Self::OpenConsoleStream>, Status> {
        self.host(&request)?;
        Err(err::unimplemented("OpenConsole").into())
    }

    async fn managed_save(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.call(request, managed_save)
    }

    async fn has_managed_save(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::HasManagedSaveReply>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            Ok(pb::HasManagedSaveReply {
                has_managed_save: st.domains[find(&st, Some(&r))?].managed_save,
            })
        })
    }

    async fn managed_save_remove(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<()>, Status> {
        self.call(request, managed_save_remove)
    }

    async fn save(&self, request: Request<pb::SaveRequest>) -> Result<Response<()>, Status> {
        self.call(request, save)
    }

    async fn restore(
        &self,
        request: Request<pb::RestoreRequest>,
    ) -> Result<Response<pb::DomainSummary>, Status> {
        self.call(request, restore)
    }

    async fn snapshot_create_xml(
        &self,
        request: Request<pb::SnapshotCreateRequest>,
    ) -> Result<Response<pb::SnapshotSummary>, Status> {
        self.call(request, crate::snapshot::create)
    }

    async fn snapshot_list(
        &self,
        request: Request<pb::SnapshotListRequest>,
    ) -> Result<Response<Self::SnapshotListStream>, Status> {
        self.call_stream(request, crate::snapshot::list)
    }

    async fn snapshot_lookup(
        &self,
        request: Request<pb::SnapshotRef>,
    ) -> Result<Response<pb::SnapshotSummary>, Status> {
        self.call(request, crate::snapshot::lookup)
    }

    async fn snapshot_get_xml_desc(
        &self,
        request: Request<pb::SnapshotRef>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        self.call(request, crate::snapshot::xml)
    }

    async fn snapshot_current(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::SnapshotSummary>, Status> {
        self.call(request, crate::snapshot::current)
    }

    async fn snapshot_revert(
        &self,
        request: Request<pb::SnapshotRef>,
    ) -> Result<Response<()>, Status> {
        self.call(request, crate::snapshot::revert)
    }

    async fn snapshot_delete(
        &self,
        request: Request<pb::SnapshotDeleteRequest>,
    ) -> Result<Response<()>, Status> {
        self.call(request, crate::snapshot::delete)
    }
}
