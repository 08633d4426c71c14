//! Internal snapshots (libvirt's qemu_snapshot.c, internal mode): the
//! state lives inside the guest's qcow2 images.
//! - running or paused guest: QMP `snapshot-save` (disks and memory, the
//!   memory in the first snapshotted disk), `snapshot-load` to revert,
//!   `snapshot-delete`; QEMU pauses the guest while it saves;
//! - shut-off guest: `qemu-img snapshot -c/-a/-d` on each disk.
//!
//! The metadata is libvirt's: one `<domainsnapshot>` document per
//! snapshot in `<state_dir>/snapshot/DOMAIN/NAME.xml` (written
//! atomically), the current one marked `<active>1</active>`. Disks that
//! cannot hold a snapshot (CD-ROMs, read-only, empty) get
//! `snapshot='no'`; any other disk must be qcow2. External snapshots
//! and disk-only snapshots answer VIR_ERR_NO_SUPPORT.

use super::hotplug::top_node;
use super::*;
use serde_json::{Value, json};
use virtmesh_conf::snapshot::{SnapshotDef, SnapshotRequest, descendants};

/// virDomainPausedReason / virDomainRunningReason / virDomainShutoffReason
/// "from snapshot" values.
const PAUSED_SNAPSHOT: i32 = 9;
const PAUSED_FROM_SNAPSHOT: i32 = 7;
const RUNNING_FROM_SNAPSHOT: i32 = 4;

/// How long one snapshot job may run (a multi-GiB guest's memory).
const JOB_TIMEOUT: Duration = Duration::from_secs(600);

fn snap_err(code: ErrorCode, msg: String) -> VirtError {
    VirtError::new(code, virtmesh_rpc::ErrorDomain::DomainSnapshot, msg)
}

fn not_found(name: &str) -> VirtError {
    snap_err(
        ErrorCode::NoDomainSnapshot,
        format!("Domain snapshot not found: no domain snapshot with matching name '{name}'"),
    )
}

fn no_support(what: &str) -> VirtError {
    err::qemu(
        ErrorCode::NoSupport,
        format!("this function is not supported by the connection driver: {what}"),
    )
}

/// The snapshot documents of one domain, on disk.
struct Store {
    dir: PathBuf,
}

impl Store {
    fn all(&self) -> Vec<(SnapshotDef, bool)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<(SnapshotDef, bool)> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".xml"))
            .filter_map(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                match SnapshotDef::from_saved(&text) {
                    Ok(s) => Some(s),
                    Err(err) => {
                        tracing::warn!("ignoring snapshot {}: {err}", e.path().display());
                        None
                    }
                }
            })
            .collect();
        out.sort_by(|a, b| (a.0.creation_time, &a.0.name).cmp(&(b.0.creation_time, &b.0.name)));
        out
    }

    /// How many snapshots there are: the documents are counted, not read.
    fn count(&self) -> usize {
        std::fs::read_dir(&self.dir).map_or(0, |rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".xml"))
                .count()
        })
    }

    fn save(&self, s: &SnapshotDef, current: bool) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| err::internal(format!("cannot create {}: {e}", self.dir.display())))?;
        virtmesh_util::fs::write_atomic(
            &self.dir.join(format!("{}.xml", s.name)),
            s.to_element(Some(current)).to_xml().as_bytes(),
        )
        .map_err(|e| err::internal(format!("cannot save snapshot {}: {e}", s.name)))
    }

    /// Make `name` the current snapshot (none with `None`), given what
    /// is on disk: only the documents whose mark changes are rewritten.
    fn set_current(&self, all: &[(SnapshotDef, bool)], name: Option<&str>) -> Result<()> {
        for (s, was) in all {
            let now = Some(s.name.as_str()) == name;
            if now != *was {
                self.save(s, now)?;
            }
        }
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<()> {
        let path = self.dir.join(format!("{name}.xml"));
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err::internal(format!(
                "cannot remove {}: {e}",
                path.display()
            ))),
        }
    }
}

/// The snapshot called `name` among `all`, and whether it is current.
fn find<'a>(all: &'a [(SnapshotDef, bool)], name: &str) -> Result<&'a (SnapshotDef, bool)> {
    all.iter()
        .find(|(s, _)| s.name == name)
        .ok_or_else(|| not_found(name))
}

/// The current snapshot among `all`.
fn current(all: &[(SnapshotDef, bool)]) -> Option<&SnapshotDef> {
    all.iter().find(|(_, c)| *c).map(|(s, _)| s)
}

/// Which disks a snapshot covers: (target, kind, qcow2 image path).
fn disk_plan(
    def: &DomainDef,
    req: &SnapshotRequest,
) -> Result<Vec<(String, String, Option<String>)>> {
    let mut plan = Vec::new();
    for d in def.devices().into_iter().filter(|d| d.name == "disk") {
        let Some(target) = d.child("target").and_then(|t| t.attr("dev")) else {
            continue;
        };
        let source = crate::blockdev::disk_source(d);
        let cannot = matches!(d.attr("device"), Some("cdrom" | "floppy"))
            || d.child("readonly").is_some()
            || source.is_none();
        let asked = req
            .disks
            .iter()
            .find(|(t, _)| t == target)
            .map(|(_, k)| k.as_str());
        let kind = match asked {
            Some("no") => "no",
            Some("external") => return Err(no_support("external disk snapshots")),
            Some(_) => "internal",
            None if cannot => "no",
            None => "internal",
        };
        if kind == "internal" {
            let format = d
                .child("driver")
                .and_then(|x| x.attr("type"))
                .unwrap_or("raw");
            if format != "qcow2" || d.attr("type") == Some("network") {
                return Err(err::qemu(
                    ErrorCode::ConfigUnsupported,
                    format!(
                        "unsupported configuration: internal snapshot for disk {target} unsupported for storage type {format}"
                    ),
                ));
            }
        }
        plan.push((target.to_owned(), kind.to_owned(), source));
    }
    Ok(plan)
}

async fn qemu_img(args: &[&str]) -> Result<()> {
    let out = tokio::process::Command::new("qemu-img")
        .args(args)
        .output()
        .await
        .map_err(|e| err::internal(format!("cannot run qemu-img: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(err::qemu(
        ErrorCode::OperationFailed,
        format!(
            "operation failed: qemu-img {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    ))
}

/// Run a QMP job (`snapshot-save`/`-load`/`-delete`) to its end.
async fn run_job(qmp: &crate::qmp::Qmp, cmd: &str, args: Value, id: &str) -> Result<()> {
    qmp.execute_raw(cmd, args).await.map_err(err::qmp)?;
    let deadline = tokio::time::Instant::now() + JOB_TIMEOUT;
    loop {
        let jobs = qmp
            .execute_raw("query-jobs", Value::Null)
            .await
            .map_err(err::qmp)?;
        let job = jobs.as_array().and_then(|a| {
            a.iter()
                .find(|j| j.get("id").and_then(Value::as_str) == Some(id))
        });
        let Some(job) = job else {
            return Err(err::internal(format!("QEMU lost job {id}")));
        };
        if job.get("status").and_then(Value::as_str) == Some("concluded") {
            let error = job.get("error").and_then(Value::as_str).map(str::to_owned);
            let _ = qmp.execute_raw("job-dismiss", json!({"id": id})).await;
            return match error {
                None => Ok(()),
                Some(e) => Err(err::qemu(
                    ErrorCode::OperationFailed,
                    format!("operation failed: {cmd}: {e}"),
                )),
            };
        }
        if tokio::time::Instant::now() > deadline {
            return Err(err::qemu(
                ErrorCode::OperationTimeout,
                format!("operation timed out: {cmd} did not finish"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl QemuDriver {
    fn snapshots(&self, domain_name: &str) -> Store {
        Store {
            dir: self.inner.cfg.state_dir.join("snapshot").join(domain_name),
        }
    }

    /// The number of snapshots a domain has (undefine refuses while any).
    pub fn snapshot_count(&self, domain_name: &str) -> usize {
        self.snapshots(domain_name).count()
    }

    /// Forget every snapshot of a domain (undefine with
    /// VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA; the images keep theirs).
    pub(super) fn drop_snapshot_metadata(&self, domain_name: &str) -> Result<()> {
        let dir = self.snapshots(domain_name).dir;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err::internal(format!(
                "cannot remove {}: {e}",
                dir.display()
            ))),
        }
    }

    fn summary(uuid: &str, s: &SnapshotDef, current: bool) -> pb::SnapshotSummary {
        pb::SnapshotSummary {
            domain_uuid: uuid.to_owned(),
            name: s.name.clone(),
            parent: s.parent.clone().unwrap_or_default(),
            creation_time: s.creation_time,
            state: s.state.clone(),
            current,
            description: s.description.clone().unwrap_or_default(),
        }
    }

    /// virDomainSnapshotCreateXML, internal snapshots.
    pub async fn snapshot_create(
        &self,
        r: &pb::SnapshotCreateRequest,
    ) -> Result<pb::SnapshotSummary> {
        for (set, what) in [
            (r.redefine, "redefining snapshot metadata"),
            (r.disk_only, "disk-only snapshots"),
            (r.no_metadata, "snapshots without metadata"),
        ] {
            if set {
                return Err(no_support(what));
            }
        }
        let req = SnapshotRequest::parse(&r.xml).map_err(err::conf)?;
        if req.memory.as_deref() == Some("external") {
            return Err(no_support("external memory snapshots"));
        }
        let dom = self.find(r.domain.as_ref())?;
        let _job = dom.job.lock().await;
        let (name, def, state, qmp) = {
            let st = dom.lock();
            let def = st
                .live
                .as_ref()
                .map(|l| l.def.clone())
                .or_else(|| st.config.clone())
                .ok_or_else(|| err::internal("domain has no definition"))?;
            let qmp = st
                .live
                .as_ref()
                .filter(|l| !l.starting)
                .map(|l| l.qmp.clone());
            (st.name.clone(), def, st.state, qmp)
        };
        let store = self.snapshots(&name);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let snap_name = req.name.clone().unwrap_or_else(|| now.to_string());
        let all = store.all();
        if find(&all, &snap_name).is_ok() {
            return Err(snap_err(
                ErrorCode::OperationFailed,
                format!("operation failed: domain moment {snap_name} already exists"),
            ));
        }
        let plan = disk_plan(&def, &req)?;
        let internal: Vec<&(String, String, Option<String>)> =
            plan.iter().filter(|(_, k, _)| k == "internal").collect();
        let running = qmp.is_some();
        if internal.is_empty() {
            return Err(err::qemu(
                ErrorCode::ConfigUnsupported,
                "unsupported configuration: an internal snapshot needs at least one qcow2 disk to hold it",
            ));
        }
        if let Some(qmp) = &qmp {
            // The nodes QEMU knows the disks by; the memory goes into the
            // first one.
            let mut nodes = Vec::new();
            for (target, _, _) in &internal {
                let id = live_disk_id(&def, target)
                    .ok_or_else(|| err::internal(format!("no QEMU id for disk {target}")))?;
                let node = top_node(qmp, &id)
                    .await
                    .ok_or_else(|| err::internal(format!("disk {target} has no block node")))?;
                nodes.push(node);
            }
            if let Some(l) = dom.lock().live.as_mut()
                && state == DomainState::Running
            {
                l.pause_reason = Some(PAUSED_SNAPSHOT);
            }
            run_job(
                qmp,
                "snapshot-save",
                json!({"job-id": "snapsave0", "tag": snap_name, "vmstate": nodes[0], "devices": nodes}),
                "snapsave0",
            )
            .await?;
        } else {
            for (_, _, path) in &internal {
                if let Some(p) = path {
                    qemu_img(&["snapshot", "-c", &snap_name, p]).await?;
                }
            }
        }
        let state_word = match (running, state) {
            (true, DomainState::Paused) => "paused",
            (true, _) => "running",
            (false, _) => "shutoff",
        };
        let parent = current(&all).map(|s| s.name.clone());
        let snap = SnapshotDef {
            name: snap_name.clone(),
            description: req.description.clone(),
            parent,
            creation_time: now,
            state: state_word.into(),
            memory: if running { "internal" } else { "no" }.into(),
            disks: plan
                .iter()
                .map(|(t, k, _)| (t.clone(), k.clone()))
                .collect(),
            domain: def.element().clone(),
        };
        store.set_current(&all, None)?;
        store.save(&snap, true)?;
        Ok(Self::summary(&dom.uuid, &snap, true))
    }

    pub fn snapshot_list(&self, r: &pb::SnapshotListRequest) -> Result<Vec<pb::SnapshotSummary>> {
        let dom = self.find(r.domain.as_ref())?;
        let name = dom.lock().name.clone();
        if r.no_metadata && !r.metadata {
            // Every snapshot here has metadata.
            return Ok(Vec::new());
        }
        let all = self.snapshots(&name).all();
        let tree = || {
            all.iter()
                .map(|(s, _)| (s.name.as_str(), s.parent.as_deref()))
        };
        let has_children = |n: &str| tree().any(|(_, p)| p == Some(n));
        Ok(all
            .iter()
            .filter(|(s, _)| !r.roots || s.parent.is_none())
            .filter(|(s, _)| r.leaves == r.no_leaves || (r.leaves != has_children(&s.name)))
            .filter(|(s, _)| {
                let active = s.state != "shutoff";
                r.active == r.inactive || (r.active && active) || (r.inactive && !active)
            })
            .filter(|_| !r.disk_only)
            .map(|(s, c)| Self::summary(&dom.uuid, s, *c))
            .collect())
    }

    pub fn snapshot_lookup(&self, r: &pb::SnapshotRef) -> Result<pb::SnapshotSummary> {
        let dom = self.find(r.domain.as_ref())?;
        let name = dom.lock().name.clone();
        let all = self.snapshots(&name).all();
        let (s, c) = find(&all, &r.name)?;
        Ok(Self::summary(&dom.uuid, s, *c))
    }

    pub fn snapshot_xml(&self, r: &pb::SnapshotRef) -> Result<String> {
        let dom = self.find(r.domain.as_ref())?;
        let name = dom.lock().name.clone();
        let all = self.snapshots(&name).all();
        Ok(find(&all, &r.name)?.0.to_xml())
    }

    pub fn snapshot_current(&self, r: Option<&pb::ObjectRef>) -> Result<pb::SnapshotSummary> {
        let dom = self.find(r)?;
        let name = dom.lock().name.clone();
        let all = self.snapshots(&name).all();
        let s = current(&all).ok_or_else(|| {
            snap_err(
                ErrorCode::NoDomainSnapshot,
                "Domain snapshot not found: the domain does not have a current snapshot".into(),
            )
        })?;
        Ok(Self::summary(&dom.uuid, s, true))
    }

    /// virDomainRevertToSnapshot: the guest as it was — stopped for a
    /// shut-off snapshot (its disks reverted with qemu-img), running or
    /// paused for one taken live (QEMU started paused if it is not
    /// running, then `snapshot-load`). The definition becomes the
    /// snapshot's. The steps take the domain's job one at a time.
    pub async fn snapshot_revert(&self, r: &pb::SnapshotRef) -> Result<()> {
        let dom = self.find(r.domain.as_ref())?;
        let name = dom.lock().name.clone();
        let store = self.snapshots(&name);
        let all = store.all();
        let snap = find(&all, &r.name)?.0.clone();
        let def = DomainDef::parse(&snap.domain.to_xml()).map_err(err::conf)?;
        let internal: Vec<String> = snap
            .disks
            .iter()
            .filter(|(_, k)| k == "internal")
            .map(|(t, _)| t.clone())
            .collect();
        let active = || dom.lock().live.is_some();
        if snap.state == "shutoff" {
            if active() {
                self.destroy(r.domain.as_ref(), false).await?;
            }
            let _job = dom.job.lock().await;
            for target in &internal {
                if let Some(path) = disk_path(&def, target) {
                    qemu_img(&["snapshot", "-a", &snap.name, &path]).await?;
                }
            }
            self.adopt_snapshot_def(&dom, def)?;
        } else {
            if !active() {
                {
                    let _job = dom.job.lock().await;
                    self.adopt_snapshot_def(&dom, def.clone())?;
                }
                self.start(r.domain.as_ref(), true).await?;
            }
            let _job = dom.job.lock().await;
            let qmp = {
                let mut st = dom.lock();
                let paused = st.state == DomainState::Paused;
                let l = st.live.as_mut().ok_or_else(err::not_running)?;
                if !paused {
                    l.pause_reason = Some(PAUSED_FROM_SNAPSHOT);
                }
                l.qmp.clone()
            };
            qmp.execute(crate::qmp::Stop {}).await.map_err(err::qmp)?;
            let live_def = dom
                .lock()
                .live
                .as_ref()
                .map(|l| l.def.clone())
                .unwrap_or(def);
            let mut nodes = Vec::new();
            for target in &internal {
                let id = live_disk_id(&live_def, target)
                    .ok_or_else(|| err::internal(format!("no QEMU id for disk {target}")))?;
                nodes.push(
                    top_node(&qmp, &id)
                        .await
                        .ok_or_else(|| err::internal(format!("disk {target} has no block node")))?,
                );
            }
            let vmstate = nodes.first().cloned().unwrap_or_default();
            run_job(
                &qmp,
                "snapshot-load",
                json!({"job-id": "snapload0", "tag": snap.name, "vmstate": vmstate, "devices": nodes}),
                "snapload0",
            )
            .await?;
            {
                let mut st = dom.lock();
                if st.live.is_some() {
                    st.state = DomainState::Paused;
                    st.reason = PAUSED_FROM_SNAPSHOT;
                }
            }
            if snap.state == "running" {
                qmp.execute(crate::qmp::Cont {}).await.map_err(err::qmp)?;
                // The RESUME event has usually been handled by now; either
                // way the reason is the snapshot's.
                let mut st = dom.lock();
                if st.live.is_some() {
                    if st.state == DomainState::Paused {
                        let name = st.name.clone();
                        self.inner
                            .events
                            .lifecycle(&dom.uuid, &name, Lifecycle::ResumedUnpaused);
                    }
                    st.state = DomainState::Running;
                    st.reason = RUNNING_FROM_SNAPSHOT;
                }
            }
        }
        store.set_current(&all, Some(&snap.name))
    }

    /// The snapshot's definition becomes the domain's config.
    fn adopt_snapshot_def(&self, dom: &Dom, def: DomainDef) -> Result<()> {
        let mut st = dom.lock();
        if st.config.is_some() {
            self.save_config(&mut st, def)?;
        }
        Ok(())
    }

    /// virDomainSnapshotDelete: the snapshot leaves the images (QMP
    /// `snapshot-delete` while the guest runs, qemu-img otherwise) unless
    /// only the metadata goes; children move up to its parent, or go too.
    pub async fn snapshot_delete(&self, r: &pb::SnapshotDeleteRequest) -> Result<()> {
        let sref = r.snapshot.as_ref().ok_or_else(err::missing_ref)?;
        let dom = self.find(sref.domain.as_ref())?;
        let _job = dom.job.lock().await;
        let (name, def, qmp) = {
            let st = dom.lock();
            let def = st
                .live
                .as_ref()
                .map(|l| l.def.clone())
                .or_else(|| st.config.clone())
                .ok_or_else(|| err::internal("domain has no definition"))?;
            let qmp = st
                .live
                .as_ref()
                .filter(|l| !l.starting)
                .map(|l| l.qmp.clone());
            (st.name.clone(), def, qmp)
        };
        let store = self.snapshots(&name);
        let all = store.all();
        let target = find(&all, &sref.name)?.0.clone();
        let mut doomed: Vec<String> = Vec::new();
        if r.children || r.children_only {
            doomed.extend(descendants(
                all.iter()
                    .map(|(s, _)| (s.name.as_str(), s.parent.as_deref())),
                &target.name,
            ));
        }
        if !r.children_only {
            doomed.push(target.name.clone());
        }
        let current = current(&all).map(|s| s.name.clone());
        for (s, _) in all.iter().filter(|(s, _)| doomed.contains(&s.name)) {
            if !r.metadata_only {
                let disks: Vec<&String> = s
                    .disks
                    .iter()
                    .filter(|(_, k)| k == "internal")
                    .map(|(t, _)| t)
                    .collect();
                match &qmp {
                    Some(qmp) => {
                        let mut nodes = Vec::new();
                        for t in &disks {
                            if let Some(id) = live_disk_id(&def, t)
                                && let Some(node) = top_node(qmp, &id).await
                            {
                                nodes.push(node);
                            }
                        }
                        run_job(
                            qmp,
                            "snapshot-delete",
                            json!({"job-id": "snapdel0", "tag": s.name, "devices": nodes}),
                            "snapdel0",
                        )
                        .await?;
                    }
                    None => {
                        for t in &disks {
                            if let Some(path) = disk_path(&def, t) {
                                qemu_img(&["snapshot", "-d", &s.name, &path]).await?;
                            }
                        }
                    }
                }
            }
            store.remove(&s.name)?;
        }
        // What is left; children of the deleted snapshot move up to its
        // parent.
        let mut remaining: Vec<(SnapshotDef, bool)> = all
            .into_iter()
            .filter(|(s, _)| !doomed.contains(&s.name))
            .collect();
        if !r.children_only && !r.children {
            for (s, c) in &mut remaining {
                if s.parent.as_deref() == Some(target.name.as_str()) {
                    s.parent = target.parent.clone();
                    store.save(s, *c)?;
                }
            }
        }
        if let Some(cur) = current
            && doomed.contains(&cur)
        {
            let next = if doomed.contains(&target.name) {
                target.parent.clone()
            } else {
                Some(target.name.clone())
            };
            store.set_current(&remaining, next.as_deref())?;
        }
        Ok(())
    }
}

/// The QEMU id of the disk with `target` in a (live) definition.
fn live_disk_id(def: &DomainDef, target: &str) -> Option<String> {
    def.disk(target).and_then(crate::blockdev::live_disk_id)
}

/// The image path of the disk with `target`.
fn disk_path(def: &DomainDef, target: &str) -> Option<String> {
    def.disk(target).and_then(crate::blockdev::disk_source)
}
