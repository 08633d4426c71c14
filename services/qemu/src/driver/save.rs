//! Managed save (virDomainManagedSave): the guest's RAM and device state
//! go to `<state_dir>/save/<name>.save` through QEMU's own `file:`
//! migration, QEMU exits, and the next start restores from that image
//! (`-incoming defer`, `migrate-incoming`) instead of booting.
//!
//! Beside the image, `<name>.save.json` records the live definition the
//! guest ran with (restoring needs the same hardware, as libvirt's save
//! header carries the XML) and whether it was running. The image is
//! written as `.partial` and renamed only after QEMU reports the
//! migration completed and the record is on disk, so a crash at any
//! point leaves either a complete image or none.

use super::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// How often the migration status is polled while saving or restoring.
const MIGRATE_POLL: Duration = Duration::from_millis(10);

/// What the next start needs besides the image itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct SaveRecord {
    /// The definition the guest ran with (live XML without the run-time
    /// parts: it is parsed again like a config).
    pub xml: String,
    /// Whether the guest was running (resumed after restore) or paused.
    pub running: bool,
}

/// The image of one domain and its record.
#[derive(Debug, Clone)]
pub(super) struct SaveImage {
    pub image: PathBuf,
    record: PathBuf,
}

/// Where a restore reads the guest state from: a file and the offset of
/// QEMU's stream in it (after our header in a `virsh save` file).
#[derive(Debug, Clone)]
pub(super) struct Incoming {
    path: PathBuf,
    offset: u64,
}

impl Incoming {
    fn uri(&self) -> String {
        match self.offset {
            0 => format!("file:{}", self.path.display()),
            n => format!("file:{},offset={n}", self.path.display()),
        }
    }
}

impl SaveImage {
    pub fn incoming(&self) -> Incoming {
        Incoming {
            path: self.image.clone(),
            offset: 0,
        }
    }

    fn partial(&self) -> PathBuf {
        self.image.with_extension("save.partial")
    }

    pub fn exists(&self) -> bool {
        self.image.exists() && self.record.exists()
    }

    pub fn load(&self) -> Result<SaveRecord> {
        let bytes = std::fs::read(&self.record).map_err(|e| {
            err::qemu(
                ErrorCode::OperationFailed,
                format!(
                    "operation failed: cannot read managed save record {}: {e}",
                    self.record.display()
                ),
            )
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            err::qemu(
                ErrorCode::OperationFailed,
                format!(
                    "operation failed: corrupt managed save record {}: {e}",
                    self.record.display()
                ),
            )
        })
    }

    /// Remove the image, its record and any partial image; a missing file
    /// is not an error.
    pub fn remove(&self) -> Result<()> {
        for p in [&self.image, &self.record, &self.partial()] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(err::qemu(
                        ErrorCode::SystemError,
                        format!("Failed to remove managed save file '{}': {e}", p.display()),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl QemuDriver {
    /// Where the managed save image of the domain called `name` lives.
    pub(super) fn save_image(&self, name: &str) -> SaveImage {
        let dir = self.inner.cfg.state_dir.join("save");
        SaveImage {
            image: dir.join(format!("{name}.save")),
            record: dir.join(format!("{name}.save.json")),
        }
    }

    /// virDomainHasManagedSaveImage.
    pub fn has_managed_save(&self, r: Option<&pb::ObjectRef>) -> Result<bool> {
        let dom = self.find(r)?;
        let name = dom.lock().name.clone();
        Ok(self.save_image(&name).exists())
    }

    /// Whether the domain called `name` has a managed save image.
    pub fn has_managed_save_named(&self, name: &str) -> bool {
        self.save_image(name).exists()
    }

    /// virDomainUndefineFlags as to managed save: an image blocks the
    /// undefine unless `remove_image` (VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
    /// says to remove it too.
    pub async fn undefine_with_save(
        &self,
        r: Option<&pb::ObjectRef>,
        remove_image: bool,
        nvram: NvramOnUndefine,
        snapshots_metadata: bool,
    ) -> Result<()> {
        let (name, config) = {
            let dom = self.find(r)?;
            let st = dom.lock();
            (st.name.clone(), st.config.clone())
        };
        // qemuDomainUndefineFlags: snapshots keep a domain unless their
        // metadata may go with it.
        let snapshots = self.snapshot_count(&name);
        if snapshots > 0 {
            if !snapshots_metadata {
                return Err(err::invalid_op(&format!(
                    "cannot delete inactive domain with {snapshots} snapshots"
                )));
            }
            self.drop_snapshot_metadata(&name)?;
        }
        // qemuDomainUndefineFlags: a guest's NVRAM file is its UEFI
        // variables; undefine says what becomes of it, or is refused.
        if let Some((path, _)) = config.as_ref().and_then(crate::firmware::nvram_of)
            && path.exists()
        {
            match nvram {
                NvramOnUndefine::Remove => std::fs::remove_file(&path).map_err(|e| {
                    err::qemu(
                        ErrorCode::SystemError,
                        format!("failed to remove nvram: {}: {e}", path.display()),
                    )
                })?,
                NvramOnUndefine::Keep => {}
                NvramOnUndefine::Refuse => {
                    return Err(err::invalid_op("cannot undefine domain with nvram"));
                }
            }
        }
        let img = self.save_image(&name);
        if img.exists() {
            if !remove_image {
                return Err(err::invalid_op(
                    "Refusing to undefine while domain managed save image exists",
                ));
            }
            img.remove()?;
        }
        self.undefine(r).await
    }

    /// virDomainManagedSaveRemove.
    pub async fn managed_save_remove(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let name = dom.lock().name.clone();
        self.save_image(&name).remove()
    }

    /// virDomainManagedSave: pause, migrate the state to the image, stop.
    pub async fn managed_save(&self, r: Option<&pb::ObjectRef>) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let name = {
            let st = dom.lock();
            if st.live.as_ref().is_some_and(|l| !l.starting) && st.config.is_none() {
                return Err(err::invalid_op(
                    "cannot do managed save for transient domain",
                ));
            }
            st.name.clone()
        };
        let img = self.save_image(&name);
        state::mkdir(img.image.parent().unwrap_or(Path::new("."))).map_err(err::state)?;
        self.save_state(&dom, SaveDest::Managed(img), None).await
    }

    /// virDomainSaveFlags: as managed save, into one file of the caller's
    /// choosing (our header with the definition, then QEMU's stream at
    /// an offset); `run_after` overrides whether a restore resumes it.
    pub async fn save_to_file(
        &self,
        r: Option<&pb::ObjectRef>,
        path: &Path,
        run_after: Option<bool>,
    ) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        self.save_state(&dom, SaveDest::File(path.to_path_buf()), run_after)
            .await
    }

    /// virDomainRestoreFlags: a file [`QemuDriver::save_to_file`] wrote
    /// starts the guest it holds again — the defined domain of that UUID
    /// if there is one (not running), else a transient one.
    pub async fn restore_from_file(&self, path: &Path, run_after: Option<bool>) -> Result<DomView> {
        let (record, offset) = read_save_file(path)?;
        let def = DomainDef::parse(&restorable_xml(&record.xml)?).map_err(err::conf)?;
        let (uuid, name) = (def.uuid(), def.name());
        let (dom, transient) = {
            let mut list = self.list_lock();
            let existing = list
                .iter()
                .find(|d| {
                    let st = d.lock();
                    !st.removed && (d.uuid.eq_ignore_ascii_case(&uuid) || st.name == name)
                })
                .cloned();
            match existing {
                Some(d) => {
                    if d.lock().live.is_some() {
                        return Err(err::invalid_op(&format!(
                            "domain '{name}' is already active"
                        )));
                    }
                    (d, false)
                }
                None => {
                    let d = super::lifecycle::new_transient(&uuid, &name);
                    list.push(d.clone());
                    (d, true)
                }
            }
        };
        let _job = dom.job.lock().await;
        let running = run_after.unwrap_or(record.running);
        let incoming = Incoming {
            path: path.to_path_buf(),
            offset,
        };
        let result = self
            .start_with(&dom, def, false, Some((&incoming, running)))
            .await;
        if result.is_err() && transient {
            dom.lock().removed = true;
            self.remove_from_list(&dom);
        }
        result
    }

    /// Pause, migrate the guest state to `dest`, end QEMU (the EOF
    /// handler records shut off, saved). Nothing half-written stays: the
    /// image is written under a temporary name and renamed when QEMU
    /// reports completion; on failure the guest goes on as it was.
    async fn save_state(
        &self,
        dom: &Arc<Dom>,
        dest: SaveDest,
        run_after: Option<bool>,
    ) -> Result<()> {
        let (qmp, pid, running, xml, links) = {
            let st = dom.lock();
            let live = st
                .live
                .as_ref()
                .filter(|l| !l.starting)
                .ok_or_else(err::not_running)?;
            (
                live.qmp.clone(),
                live.pid,
                st.state == DomainState::Running,
                live.def.to_xml(None),
                live.links.clone(),
            )
        };
        let record = SaveRecord {
            xml,
            running: run_after.unwrap_or(running),
        };
        let (partial, uri) = match &dest {
            SaveDest::Managed(img) => {
                let partial = img.partial();
                let _ = std::fs::remove_file(&partial);
                let uri = format!("file:{}", partial.display());
                (partial, uri)
            }
            SaveDest::File(path) => {
                let partial = PathBuf::from(format!("{}.partial", path.display()));
                let offset = write_save_header(&partial, &record)?;
                let uri = format!("file:{},offset={offset}", partial.display());
                (partial, uri)
            }
        };
        if running {
            if let Some(l) = dom.lock().live.as_mut() {
                l.pause_reason = Some(PAUSED_SAVE);
            }
            qmp.execute(qmp::Stop {}).await.map_err(err::qmp)?;
        }
        let rename = |to: &Path| {
            std::fs::rename(&partial, to).map_err(|e| {
                err::qemu(
                    ErrorCode::SystemError,
                    format!(
                        "cannot rename {} to {}: {e}",
                        partial.display(),
                        to.display()
                    ),
                )
            })
        };
        let saved = async {
            qmp.execute_raw("migrate", serde_json::json!({ "uri": uri }))
                .await
                .map_err(err::qmp)?;
            wait_migration(&qmp, "save").await?;
            match &dest {
                SaveDest::Managed(img) => {
                    let bytes = serde_json::to_vec_pretty(&record).map_err(err::internal)?;
                    virtmesh_util::fs::write_atomic(&img.record, &bytes)
                        .map_err(|e| err::qemu(ErrorCode::SystemError, e.to_string()))?;
                    rename(&img.image)
                }
                SaveDest::File(path) => rename(path),
            }
        }
        .await;
        if let Err(e) = saved {
            match &dest {
                SaveDest::Managed(img) => {
                    let _ = img.remove();
                }
                SaveDest::File(_) => {
                    let _ = std::fs::remove_file(&partial);
                }
            }
            if running && let Err(cont) = qmp.execute(qmp::Cont {}).await {
                tracing::warn!("save failed and the guest could not resume: {cont}");
            }
            return Err(e);
        }
        // The state is safe on disk: end QEMU. The EOF handler records
        // shut off (saved) and releases the guest's host links.
        if let Some(l) = dom.lock().live.as_mut() {
            l.saving = true;
        }
        if let Err(e) = qmp.execute(qmp::Quit {}).await {
            tracing::debug!("quit after save: {e}");
        }
        if tokio::time::timeout(KILL_WAIT, qmp.closed()).await.is_err() {
            process::signal(pid, Signal::SIGKILL).map_err(err::process)?;
            let _ = tokio::time::timeout(KILL_WAIT, qmp.closed()).await;
        }
        process::wait_gone(pid, KILL_WAIT).await;
        // As destroy: the links are gone when the call returns.
        hostnet::release(&self.inner.net, &links).await;
        Ok(())
    }

    /// Load the guest state into a QEMU started with `-incoming defer`
    /// and still stopped (`-S`).
    pub(super) async fn restore_image(qmp: &Qmp, incoming: &Incoming) -> Result<()> {
        let uri = incoming.uri();
        qmp.execute_raw("migrate-incoming", serde_json::json!({ "uri": uri }))
            .await
            .map_err(err::qmp)?;
        wait_migration(qmp, "restore").await
    }
}

/// Where a save goes: the domain's managed save image, or a file the
/// caller names.
pub(super) enum SaveDest {
    Managed(SaveImage),
    File(PathBuf),
}

/// The first line of a `virsh save` file of ours; the next line is the
/// length of the JSON record after it, and QEMU's stream starts at the
/// next 4 KiB boundary.
const SAVE_MAGIC: &str = "VirtmeshSave1\n";
const SAVE_ALIGN: u64 = 4096;

/// Write the header of a save file; returns where QEMU's stream goes.
fn write_save_header(path: &Path, record: &SaveRecord) -> Result<u64> {
    let json = serde_json::to_vec(record).map_err(err::internal)?;
    let mut header = format!("{SAVE_MAGIC}{}\n", json.len()).into_bytes();
    header.extend_from_slice(&json);
    let len = u64::try_from(header.len()).unwrap_or(u64::MAX);
    let offset = len.div_ceil(SAVE_ALIGN) * SAVE_ALIGN;
    header.resize(usize::try_from(offset).unwrap_or(header.len()), 0);
    std::fs::write(path, &header).map_err(|e| {
        err::qemu(
            ErrorCode::SystemError,
            format!("Failed to create file '{}': {e}", path.display()),
        )
    })?;
    Ok(offset)
}

/// The record of a save file and where QEMU's stream starts in it.
fn read_save_file(path: &Path) -> Result<(SaveRecord, u64)> {
    use std::io::{BufRead, Read};
    let open_err = |e: std::io::Error| {
        err::qemu(
            ErrorCode::SystemError,
            format!("Cannot open file '{}': {e}", path.display()),
        )
    };
    let bad = || {
        err::qemu(
            ErrorCode::OperationFailed,
            "operation failed: image magic is incorrect",
        )
    };
    let mut r = std::io::BufReader::new(std::fs::File::open(path).map_err(open_err)?);
    let mut magic = String::new();
    r.by_ref()
        .take(64)
        .read_line(&mut magic)
        .map_err(open_err)?;
    if magic != SAVE_MAGIC {
        return Err(bad());
    }
    let mut len_line = String::new();
    r.by_ref()
        .take(32)
        .read_line(&mut len_line)
        .map_err(open_err)?;
    let len: u64 = len_line.trim().parse().map_err(|_| bad())?;
    if len > 64 << 20 {
        return Err(bad());
    }
    let mut json = Vec::new();
    r.take(len).read_to_end(&mut json).map_err(open_err)?;
    let record: SaveRecord = serde_json::from_slice(&json).map_err(|_| bad())?;
    let header = u64::try_from(SAVE_MAGIC.len() + len_line.len()).unwrap_or(u64::MAX) + len;
    Ok((record, header.div_ceil(SAVE_ALIGN) * SAVE_ALIGN))
}

/// Poll `query-migrate` until the migration completed; a failed one
/// answers QEMU's own description of why.
async fn wait_migration(qmp: &Qmp, what: &str) -> Result<()> {
    loop {
        let info = qmp
            .execute_raw("query-migrate", Value::Null)
            .await
            .map_err(err::qmp)?;
        match info.get("status").and_then(Value::as_str) {
            Some("completed") => return Ok(()),
            Some("failed" | "cancelled") => {
                let why = info
                    .get("error-desc")
                    .and_then(Value::as_str)
                    .unwrap_or("migration failed");
                return Err(err::qemu(
                    ErrorCode::OperationFailed,
                    format!("operation failed: {what} job: unexpectedly failed: {why}"),
                ));
            }
            _ => tokio::time::sleep(MIGRATE_POLL).await,
        }
    }
}

/// The saved live XML as a definition to start again: what the running
/// guest gained at start (aliases, generated link names, pty paths,
/// network port ids) is dropped, so the start sets it up afresh — as
/// libvirt drops them when it parses an inactive definition.
pub(super) fn restorable_xml(live_xml: &str) -> Result<String> {
    use virtmesh_conf::Element;
    let mut root = Element::parse(live_xml).map_err(|e| {
        err::qemu(
            ErrorCode::OperationFailed,
            format!("operation failed: corrupt managed save definition: {e}"),
        )
    })?;
    root.remove_attr("id");
    if let Some(devices) = root.child_mut("devices") {
        for dev in devices.elements_mut() {
            dev.remove_children("alias");
            match dev.name.as_str() {
                "interface" => {
                    let generated = dev.child("target").is_some_and(|t| {
                        t.attr("managed") != Some("no")
                            && t.attr("dev")
                                .is_some_and(|d| d.starts_with("vnet") || d.starts_with("macvtap"))
                    });
                    if generated {
                        dev.remove_children("target");
                    }
                    if let Some(src) = dev.child_mut("source")
                        && src.attr("network").is_some()
                    {
                        // What the network's port gave (a bridge, or a
                        // pool device and macvtap mode) is not config.
                        for attr in ["portid", "bridge", "dev", "mode"] {
                            src.remove_attr(attr);
                        }
                    }
                }
                "serial" | "console" if dev.attr("type") == Some("pty") => {
                    dev.remove_attr("tty");
                    dev.remove_children("source");
                }
                _ => {}
            }
        }
    }
    Ok(root.to_xml())
}

#[cfg(test)]
mod tests {
    #[test]
    fn restorable_xml_drops_what_a_network_port_gave() {
        let xml = super::restorable_xml(
            "<domain type='kvm' id='3'><name>g</name><devices>\
             <interface type='network'><source network='v' portid='4a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d' dev='eth1' mode='vepa'/>\
             <target dev='macvtap0'/></interface>\
             <interface type='direct'><source dev='eth2' mode='bridge'/></interface></devices></domain>",
        )
        .expect("restorable");
        assert!(xml.contains("<source network='v'/>"), "{xml}");
        assert!(!xml.contains("macvtap0"), "{xml}");
        // A direct interface's own device and mode are config.
        assert!(xml.contains("<source dev='eth2' mode='bridge'/>"), "{xml}");
    }
}
