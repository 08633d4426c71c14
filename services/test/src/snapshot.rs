//! Domain snapshots: metadata plus the domain definition at the time,
//! kept in memory like the test driver's snapshot list.

use std::time::{SystemTime, UNIX_EPOCH};

use virtmesh_conf::snapshot::{SnapshotDef, SnapshotRequest, descendants};
use virtmesh_proto::v1::{self as pb, DomainEventType as Ev, DomainState};
use virtmesh_rpc::{ErrorCode, ErrorDomain};

use crate::domain::{find, shutdown_state, start_state};
use crate::err::{self, VResult};
use crate::events;
use crate::host::{DomainObj, Host, Snapshot};

// virDomain*Reason "from snapshot" numbers and event details.
const RUNNING_FROM_SNAPSHOT: i32 = 4;
const PAUSED_FROM_SNAPSHOT: i32 = 7;
const SHUTOFF_FROM_SNAPSHOT: i32 = 7;
const DETAIL_SNAPSHOT_STARTED: i32 = 3;
const DETAIL_SNAPSHOT_SUSPENDED: i32 = 5;
const DETAIL_SNAPSHOT_STOPPED: i32 = 6;

fn state_word(s: DomainState) -> &'static str {
    match s {
        DomainState::Running => "running",
        DomainState::Paused => "paused",
        DomainState::Shutoff => "shutoff",
        DomainState::Shutdown => "shutdown",
        DomainState::Crashed => "crashed",
        DomainState::Pmsuspended => "pmsuspended",
        DomainState::Blocked => "blocked",
        DomainState::Nostate => "nostate",
    }
}

fn summary(d: &DomainObj, s: &Snapshot) -> pb::SnapshotSummary {
    pb::SnapshotSummary {
        domain_uuid: d.uuid(),
        name: s.name.clone(),
        parent: s.parent.clone().unwrap_or_default(),
        creation_time: s.creation_time,
        state: s.state.clone(),
        current: d.current_snapshot.as_deref() == Some(s.name.as_str()),
        description: s.description.clone().unwrap_or_default(),
    }
}

fn not_found(name: &str) -> virtmesh_rpc::VirtError {
    err::not_found(
        ErrorCode::NoDomainSnapshot,
        format!("no domain snapshot with matching name '{name}'"),
    )
}

fn snap_index(d: &DomainObj, name: &str) -> VResult<usize> {
    d.snapshots
        .iter()
        .position(|s| s.name == name)
        .ok_or_else(|| not_found(name))
}

pub fn create(host: &Host, r: pb::SnapshotCreateRequest) -> VResult<pb::SnapshotSummary> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let req =
        SnapshotRequest::parse(&r.xml).map_err(|e| err::conf(e, ErrorDomain::DomainSnapshot))?;
    let (name, description) = (req.name, req.description);
    let name = name.unwrap_or_else(|| now.to_string());
    let mut st = host.lock();
    let idx = find(&st, r.domain.as_ref())?;
    let d = &mut st.domains[idx];
    if d.snapshots.iter().any(|s| s.name == name) {
        return Err(err::op_failed(
            ErrorDomain::DomainSnapshot,
            format!("domain moment {name} already exists"),
        ));
    }
    let snap = Snapshot {
        name: name.clone(),
        description,
        parent: d.current_snapshot.clone(),
        creation_time: i64::try_from(now).unwrap_or(i64::MAX),
        state: state_word(d.state).into(),
        def: d.def.clone(),
    };
    d.snapshots.push(snap);
    if !r.no_metadata {
        d.current_snapshot = Some(name.clone());
    }
    let summary = d.snapshots.last().map(|s| summary(d, s));
    if r.halt && d.is_active() {
        shutdown_state(d, SHUTOFF_FROM_SNAPSHOT);
        host.emit(events::domain_lifecycle(
            &d.uuid(),
            &d.name(),
            Ev::DomainEventStopped,
            DETAIL_SNAPSHOT_STOPPED,
        ));
        if !d.persistent {
            st.domains.remove(idx);
        }
    }
    summary.ok_or_else(|| err::internal("snapshot vanished"))
}

fn has_children(d: &DomainObj, name: &str) -> bool {
    d.snapshots
        .iter()
        .any(|s| s.parent.as_deref() == Some(name))
}

pub fn list(host: &Host, r: pb::SnapshotListRequest) -> VResult<Vec<pb::SnapshotSummary>> {
    let st = host.lock();
    let d = &st.domains[find(&st, r.domain.as_ref())?];
    if r.no_metadata && !r.metadata {
        // Every snapshot here has metadata.
        return Ok(Vec::new());
    }
    Ok(d.snapshots
        .iter()
        .filter(|s| !r.roots || s.parent.is_none())
        .filter(|s| r.leaves == r.no_leaves || (r.leaves != has_children(d, &s.name)))
        .filter(|s| {
            let active = s.state != "shutoff";
            r.active == r.inactive || (r.active && active) || (r.inactive && !active)
        })
        .filter(|_| !r.disk_only)
        .map(|s| summary(d, s))
        .collect())
}

pub fn lookup(host: &Host, r: pb::SnapshotRef) -> VResult<pb::SnapshotSummary> {
    let st = host.lock();
    let d = &st.domains[find(&st, r.domain.as_ref())?];
    Ok(summary(d, &d.snapshots[snap_index(d, &r.name)?]))
}

pub fn current(host: &Host, r: pb::ObjectRef) -> VResult<pb::SnapshotSummary> {
    let st = host.lock();
    let d = &st.domains[find(&st, Some(&r))?];
    let name = d.current_snapshot.clone().ok_or_else(|| {
        err::not_found(
            ErrorCode::NoDomainSnapshot,
            "the domain does not have a current snapshot",
        )
    })?;
    Ok(summary(d, &d.snapshots[snap_index(d, &name)?]))
}

/// virDomainSnapshotDefFormat, for the parts we record.
pub fn xml(host: &Host, r: pb::SnapshotRef) -> VResult<pb::XmlDoc> {
    let st = host.lock();
    let d = &st.domains[find(&st, r.domain.as_ref())?];
    let s = &d.snapshots[snap_index(d, &r.name)?];
    let def = SnapshotDef {
        name: s.name.clone(),
        description: s.description.clone(),
        parent: s.parent.clone(),
        creation_time: s.creation_time,
        state: s.state.clone(),
        memory: if s.state == "shutoff" {
            "no"
        } else {
            "internal"
        }
        .into(),
        disks: s
            .def
            .disks()
            .into_iter()
            .map(|(target, _)| (target.to_string(), "internal".to_owned()))
            .collect(),
        domain: s.def.element().clone(),
    };
    Ok(pb::XmlDoc { xml: def.to_xml() })
}

pub fn revert(host: &Host, r: pb::SnapshotRef) -> VResult<()> {
    let mut st = host.lock();
    let idx = find(&st, r.domain.as_ref())?;
    let sidx = snap_index(&st.domains[idx], &r.name)?;
    let snap = st.domains[idx].snapshots[sidx].clone();
    let want_active = snap.state == "running" || snap.state == "paused";
    {
        let d = &mut st.domains[idx];
        if d.persistent && d.is_active() {
            d.new_def = Some(snap.def.clone());
        }
        d.def = snap.def.clone();
        d.current_snapshot = Some(snap.name.clone());
    }
    if want_active {
        if !st.domains[idx].is_active() {
            start_state(&mut st, idx, RUNNING_FROM_SNAPSHOT);
            let d = &st.domains[idx];
            host.emit(events::domain_lifecycle(
                &d.uuid(),
                &d.name(),
                Ev::DomainEventStarted,
                DETAIL_SNAPSHOT_STARTED,
            ));
        }
        let d = &mut st.domains[idx];
        if snap.state == "paused" {
            d.state = DomainState::Paused;
            d.reason = PAUSED_FROM_SNAPSHOT;
            host.emit(events::domain_lifecycle(
                &d.uuid(),
                &d.name(),
                Ev::DomainEventSuspended,
                DETAIL_SNAPSHOT_SUSPENDED,
            ));
        } else {
            d.state = DomainState::Running;
            d.reason = RUNNING_FROM_SNAPSHOT;
        }
    } else if st.domains[idx].is_active() {
        let d = &mut st.domains[idx];
        shutdown_state(d, SHUTOFF_FROM_SNAPSHOT);
        // The snapshot's definition is also the config after the revert.
        d.def = snap.def.clone();
        host.emit(events::domain_lifecycle(
            &d.uuid(),
            &d.name(),
            Ev::DomainEventStopped,
            DETAIL_SNAPSHOT_STOPPED,
        ));
        if !d.persistent {
            st.domains.remove(idx);
        }
    }
    Ok(())
}

pub fn delete(host: &Host, r: pb::SnapshotDeleteRequest) -> VResult<()> {
    let sref = r.snapshot.ok_or_else(|| err::missing("snapshot"))?;
    let mut st = host.lock();
    let idx = find(&st, sref.domain.as_ref())?;
    let d = &mut st.domains[idx];
    let sidx = snap_index(d, &sref.name)?;
    let parent = d.snapshots[sidx].parent.clone();
    let mut doomed = Vec::new();
    if r.children || r.children_only {
        doomed.extend(descendants(
            d.snapshots
                .iter()
                .map(|s| (s.name.as_str(), s.parent.as_deref())),
            &sref.name,
        ));
    }
    if !r.children_only {
        doomed.push(sref.name.clone());
        // Children of a deleted snapshot move up to its parent.
        for s in d.snapshots.iter_mut() {
            if s.parent.as_deref() == Some(sref.name.as_str()) {
                s.parent = parent.clone();
            }
        }
    }
    if let Some(cur) = d.current_snapshot.clone()
        && doomed.contains(&cur)
    {
        d.current_snapshot = if doomed.contains(&sref.name) {
            parent
        } else {
            Some(sref.name.clone())
        };
    }
    d.snapshots.retain(|s| !doomed.contains(&s.name));
    Ok(())
}
