//! Autostart: a persistent domain marked so is started when the service
//! comes up, once per host boot (the marker lives in the run directory,
//! which is a tmpfs in production: a service restart does not restart
//! guests someone shut down on purpose, a reboot does).

use super::*;

/// Created in the run directory once autostart has run.
const MARKER: &str = "autostarted";

impl QemuDriver {
    /// virDomainSetAutostart.
    pub fn set_autostart(&self, r: Option<&pb::ObjectRef>, on: bool) -> Result<()> {
        let dom = self.find(r)?;
        let mut st = dom.lock();
        if st.config.is_none() {
            return Err(err::invalid_op("cannot set autostart for transient domain"));
        }
        self.inner
            .store
            .set_autostart(&st.name, on)
            .map_err(err::state)?;
        st.autostart = on;
        Ok(())
    }

    /// Start every autostart domain that is not running, unless this boot
    /// already did. Failures are logged: one bad guest must not keep the
    /// service (or the other guests) down.
    pub(super) async fn autostart_once(&self) {
        let marker = self.inner.cfg.run_dir.join(MARKER);
        if marker.exists() {
            return;
        }
        if let Err(e) = std::fs::write(&marker, b"") {
            tracing::warn!("cannot create {}: {e}", marker.display());
        }
        for v in self.list() {
            if !v.autostart || v.is_active() {
                continue;
            }
            let by_uuid = pb::ObjectRef {
                key: Some(pb::object_ref::Key::Uuid(v.uuid.clone())),
            };
            match self.start(Some(&by_uuid), false).await {
                Ok(_) => tracing::info!("autostarted guest {}", v.name),
                Err(e) => tracing::error!("autostart of guest {} failed: {e}", v.name),
            }
        }
    }
}
