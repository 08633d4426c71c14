//! What survives the service (DESIGN.md §6): persistent configs as libvirt
//! XML files in the state directory, and one live-status file per running
//! guest in the run directory, enough for a restarted service to find the
//! guest again (pid, monitor socket, id, the live definition). Every write
//! is atomic, so a service killed at any instant leaves old or new, never a
//! torn file.

use crate::def::DomainDef;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use virtmesh_util::fs::{WriteAtomicError, write_atomic};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Write(#[from] WriteAtomicError),
    #[error("cannot create directory '{path}': {source}")]
    Mkdir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot remove '{path}': {source}")]
    Remove {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read '{path}': {message}")]
    Read { path: String, message: String },
    #[error("cannot lock '{path}': {message}")]
    Lock { path: String, message: String },
}

/// Exclusive use of a state directory by one driver, held for the
/// driver's life. Two services managing the same guests would fight over
/// each guest's single QMP connection; the second one fails clearly
/// instead. The lock file is close-on-exec, so QEMU never inherits it.
#[derive(Debug)]
pub struct StateLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// Take the lock, waiting up to `wait`: a service restarted in place may
/// overlap its predecessor's last moments.
pub async fn lock_dir(dir: &Path, wait: std::time::Duration) -> Result<StateLock, StateError> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match virtmesh_util::dirs::try_lock_state_dir(dir, "qemu") {
            Ok(lock) => return Ok(StateLock { _lock: lock }),
            Err(e) if e.busy && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(e) => {
                return Err(StateError::Lock {
                    path: e.path,
                    message: e.message,
                });
            }
        }
    }
}

/// The live status of one running guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveStatus {
    pub uuid: String,
    pub name: String,
    /// libvirt's domain id.
    pub id: i32,
    pub pid: i32,
    pub monitor: PathBuf,
    /// Whether a persistent config exists (else the guest is transient and
    /// this file is all there is of it).
    pub persistent: bool,
    /// The definition the guest was started with.
    pub xml: String,
    /// Host links this service created for the guest, released on stop
    /// (absent in files of phase 1: none).
    #[serde(default)]
    pub links: Vec<crate::hostnet::OwnedLink>,
}

pub fn mkdir(dir: &Path) -> Result<(), StateError> {
    std::fs::create_dir_all(dir).map_err(|source| StateError::Mkdir {
        path: dir.display().to_string(),
        source,
    })
}

pub fn save_status(path: &Path, status: &LiveStatus) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(status).map_err(|e| StateError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    write_atomic(path, &bytes)?;
    Ok(())
}

pub fn load_status(path: &Path) -> Result<LiveStatus, StateError> {
    let err = |message: String| StateError::Read {
        path: path.display().to_string(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))
}

/// Every `*.status.json` in `run_dir`, with the ones that fail to parse
/// reported rather than silently skipped.
pub fn list_statuses(run_dir: &Path) -> Vec<Result<LiveStatus, StateError>> {
    files_ending(run_dir, ".status.json")
        .into_iter()
        .map(|p| load_status(&p))
        .collect()
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(suffix) && !n.starts_with('.'))
        })
        .collect();
    out.sort();
    out
}

/// Persistent configs: `<state_dir>/<name>.xml`, as libvirt keeps
/// `/etc/libvirt/qemu/<name>.xml`.
#[derive(Debug, Clone)]
pub struct ConfigStore {
    dir: PathBuf,
}

impl ConfigStore {
    pub fn new(dir: PathBuf) -> ConfigStore {
        ConfigStore { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.xml"))
    }

    pub fn save(&self, def: &DomainDef) -> Result<(), StateError> {
        write_atomic(&self.path(&def.name()), def.to_xml(None).as_bytes())?;
        Ok(())
    }

    pub fn remove(&self, name: &str) -> Result<(), StateError> {
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Remove {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    fn autostart_link(&self, name: &str) -> PathBuf {
        self.dir.join("autostart").join(format!("{name}.xml"))
    }

    /// Whether `name` starts with the service (libvirt's
    /// `autostart/<name>.xml` link to the config).
    pub fn autostart(&self, name: &str) -> bool {
        std::fs::symlink_metadata(self.autostart_link(name)).is_ok()
    }

    pub fn set_autostart(&self, name: &str, on: bool) -> Result<(), StateError> {
        let link = self.autostart_link(name);
        let remove = |path: &Path| match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Remove {
                path: path.display().to_string(),
                source,
            }),
        };
        if !on {
            return remove(&link);
        }
        if let Some(dir) = link.parent() {
            mkdir(dir)?;
        }
        remove(&link)?;
        std::os::unix::fs::symlink(format!("../{name}.xml"), &link).map_err(|e| StateError::Lock {
            path: link.display().to_string(),
            message: format!("cannot create autostart link: {e}"),
        })
    }

    /// Every stored config; a file that no longer parses is reported by
    /// path and skipped by the caller, so one bad file does not hide the
    /// others.
    pub fn load_all(&self) -> Vec<(PathBuf, Result<DomainDef, String>)> {
        files_ending(&self.dir, ".xml")
            .into_iter()
            .map(|p| {
                let def = std::fs::read_to_string(&p)
                    .map_err(|e| e.to_string())
                    .and_then(|x| DomainDef::parse(&x).map_err(|e| e.to_string()));
                (p, def)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = LiveStatus {
            uuid: "aedba276-b2aa-5a1d-859d-ea9075fc669f".into(),
            name: "g".into(),
            id: 7,
            pid: 1234,
            monitor: dir.path().join("x.qmp"),
            persistent: true,
            xml: "<domain type='kvm'/>".into(),
            links: vec![crate::hostnet::OwnedLink {
                port: None,
                name: "macvtap0".into(),
                index: 12,
                shaped_only: false,
            }],
        };
        let path = dir.path().join("x.status.json");
        save_status(&path, &st).expect("save");
        assert_eq!(load_status(&path).expect("load"), st);
        std::fs::write(dir.path().join("broken.status.json"), b"{").expect("write");
        let all = list_statuses(dir.path());
        assert_eq!(all.len(), 2);
        assert_eq!(all.iter().filter(|r| r.is_ok()).count(), 1);
    }

    #[tokio::test]
    async fn state_dir_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wait = std::time::Duration::from_millis(30);
        let first = lock_dir(dir.path(), wait).await.expect("first");
        let second = lock_dir(dir.path(), wait).await.expect_err("held");
        assert!(
            second.to_string().contains("another virtmesh-qemu"),
            "{second}"
        );
        drop(first);
        lock_dir(dir.path(), wait).await.expect("free again");
    }

    #[test]
    fn configs_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ConfigStore::new(dir.path().to_path_buf());
        let def = DomainDef::parse(
            "<domain type='kvm'><name>vm1</name><memory>1024</memory><os><type>hvm</type></os></domain>",
        )
        .expect("valid");
        store.save(&def).expect("save");
        let all = store.load_all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1.as_ref().expect("parses"), &def);
        assert!(!store.autostart("vm1"));
        store.set_autostart("vm1", true).expect("autostart on");
        store.set_autostart("vm1", true).expect("twice is fine");
        assert!(store.autostart("vm1"));
        store.set_autostart("vm1", false).expect("autostart off");
        assert!(!store.autostart("vm1"));
        store.remove("vm1").expect("remove");
        store.remove("vm1").expect("removing twice is fine");
        assert!(store.load_all().is_empty());
    }
}
