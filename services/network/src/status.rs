//! What survives the service (DESIGN.md §6): persistent configs as libvirt
//! XML in the state directory, autostart marks, and one live-status file
//! per active network in the run directory that records exactly what the
//! start created (bridge, firewall tables, dnsmasq), so that destroy and
//! recovery undo that and nothing else. Every write is atomic.

use crate::firewall::Table;
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
}

/// The live status of one active network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveStatus {
    pub uuid: String,
    pub name: String,
    /// Whether a persistent config exists (else this file is all there is
    /// of a transient network).
    pub persistent: bool,
    /// The live definition.
    pub xml: String,
    /// The bridge we created: (name, ifindex). `None` when we created no
    /// bridge (forward mode bridge, or a start that failed before).
    pub bridge: Option<(String, u32)>,
    /// Our nftables tables.
    pub tables: Vec<Table>,
    /// Our dnsmasq.
    pub dnsmasq_pid: Option<i32>,
    /// The interface pool of a macvtap network as its start found it
    /// (the `<interface>`s, or the virtual functions of its `<pf>`):
    /// ports are handed out from it. Nothing on the host is created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pool: Vec<String>,
    /// A host bridge (forward mode bridge) we put the network's
    /// `<bandwidth>` on: the bridge is not ours, its root and ingress
    /// qdiscs are, and go at stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shaped_host_bridge: Option<String>,
}

pub fn mkdir(dir: &Path) -> Result<(), StateError> {
    std::fs::create_dir_all(dir).map_err(|source| StateError::Mkdir {
        path: dir.display().to_string(),
        source,
    })
}

pub fn remove_file(path: &Path) -> Result<(), StateError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StateError::Remove {
            path: path.display().to_string(),
            source,
        }),
    }
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

/// Every file in `dir` whose name ends with `suffix`, sorted, hidden
/// (temporary) files excluded.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
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

/// The driver's files: `<state>/NAME.xml` (as libvirt keeps
/// /etc/libvirt/qemu/networks/NAME.xml), `<state>/autostart/NAME` marks,
/// `<run>/NAME.status.json`.
#[derive(Debug, Clone)]
pub struct Store {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
}

impl Store {
    pub fn config(&self, name: &str) -> PathBuf {
        self.state_dir.join(format!("{name}.xml"))
    }

    pub fn autostart(&self, name: &str) -> PathBuf {
        self.state_dir.join("autostart").join(name)
    }

    pub fn status(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.status.json"))
    }

    pub fn save_config(&self, name: &str, xml: &str) -> Result<(), StateError> {
        write_atomic(&self.config(name), xml.as_bytes())?;
        Ok(())
    }

    pub fn set_autostart(&self, name: &str, on: bool) -> Result<(), StateError> {
        let path = self.autostart(name);
        if on {
            mkdir(&self.state_dir.join("autostart"))?;
            write_atomic(&path, b"")?;
            Ok(())
        } else {
            remove_file(&path)
        }
    }

    pub fn is_autostart(&self, name: &str) -> bool {
        self.autostart(name).exists()
    }

    /// Every stored config as (path, text or read error).
    pub fn load_configs(&self) -> Vec<(PathBuf, Result<String, String>)> {
        files_ending(&self.state_dir, ".xml")
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).map_err(|e| e.to_string());
                (p, text)
            })
            .collect()
    }

    pub fn load_statuses(&self) -> Vec<(PathBuf, Result<LiveStatus, StateError>)> {
        files_ending(&self.run_dir, ".status.json")
            .into_iter()
            .map(|p| {
                let st = load_status(&p);
                (p, st)
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
            uuid: "u".into(),
            name: "n".into(),
            persistent: true,
            xml: "<network/>".into(),
            bridge: Some(("virbr3".into(), 7)),
            tables: vec![Table {
                family: "ip".into(),
                name: "virtmesh_virbr3".into(),
            }],
            dnsmasq_pid: Some(42),
            pool: vec!["vp0".into()],
            shaped_host_bridge: Some("br0".into()),
        };
        let path = dir.path().join("n.status.json");
        save_status(&path, &st).expect("save");
        assert_eq!(load_status(&path).expect("load"), st);
    }
}
