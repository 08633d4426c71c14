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

impl SaveImage {
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
        let (qmp, pid, name, running, xml, links) = {
            let st = dom.lock();
            let live = st
                .live
                .as_ref()
                .filter(|l| !l.starting)
                .ok_or_else(err::not_running)?;
            if st.config.is_none() {
                return Err(err::invalid_op(
                    "cannot do managed save for transient domain",
                ));
            }
            (
                live.qmp.clone(),
                live.pid,
                st.name.clone(),
                st.state == DomainState::Running,
                live.def.to_xml(None),
                live.links.clone(),
            )
        };
        let img = self.save_image(&name);
        state::mkdir(img.image.parent().unwrap_or(Path::new("."))).map_err(err::state)?;
        let partial = img.partial();
        let _ = std::fs::remove_file(&partial);
        if running {
            if let Some(l) = dom.lock().live.as_mut() {
                l.pause_reason = Some(PAUSED_SAVE);
            }
            qmp.execute(qmp::Stop {}).await.map_err(err::qmp)?;
        }
        let uri = format!("file:{}", partial.display());
        let saved = async {
            qmp.execute_raw("migrate", serde_json::json!({ "uri": uri }))
                .await
                .map_err(err::qmp)?;
            wait_migration(&qmp, "save").await?;
            let record = SaveRecord { xml, running };
            let bytes = serde_json::to_vec_pretty(&record).map_err(err::internal)?;
            virtmesh_util::fs::write_atomic(&img.record, &bytes)
                .map_err(|e| err::qemu(ErrorCode::SystemError, e.to_string()))?;
            std::fs::rename(&partial, &img.image).map_err(|e| {
                err::qemu(
                    ErrorCode::SystemError,
                    format!(
                        "cannot rename {} to {}: {e}",
                        partial.display(),
                        img.image.display()
                    ),
                )
            })
        }
        .await;
        if let Err(e) = saved {
            // The guest goes on as it was; nothing half-written stays.
            let _ = img.remove();
            if running && let Err(cont) = qmp.execute(qmp::Cont {}).await {
                tracing::warn!("managed save failed and the guest could not resume: {cont}");
            }
            return Err(e);
        }
        // The state is safe on disk: end QEMU. The EOF handler records
        // shut off (saved) and releases the guest's host links.
        if let Some(l) = dom.lock().live.as_mut() {
            l.saving = true;
        }
        if let Err(e) = qmp.execute(qmp::Quit {}).await {
            tracing::debug!("quit after managed save: {e}");
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

    /// Load the guest state of `img` into a QEMU started with
    /// `-incoming defer` and still stopped (`-S`).
    pub(super) async fn restore_image(qmp: &Qmp, img: &SaveImage) -> Result<()> {
        let uri = format!("file:{}", img.image.display());
        qmp.execute_raw("migrate-incoming", serde_json::json!({ "uri": uri }))
            .await
            .map_err(err::qmp)?;
        wait_migration(qmp, "restore").await
    }
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
