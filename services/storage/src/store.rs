//! What survives the service: pool configs as libvirt XML
//! (`<state>/NAME.xml`, libvirt's /etc/libvirt/storage/NAME.xml),
//! autostart marks (`<state>/autostart/NAME`) and one file per active pool
//! (`<run>/NAME.xml`, libvirt's /run/libvirt/storage/NAME.xml) holding the
//! definition it runs with.  Every write is atomic (write, fsync, rename).

use std::path::{Path, PathBuf};
use virtmesh_util::fs::{WriteAtomicError, write_atomic};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
}

pub fn mkdir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Mkdir {
        path: dir.display().to_string(),
        source,
    })
}

pub fn remove_file(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StoreError::Remove {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// The `.xml` files of a directory, sorted.  write_atomic's temporary
/// files never end in `.xml`, so a pool named `.x` is still found.
fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".xml"))
        })
        .collect();
    out.sort();
    out
}

#[derive(Debug, Clone)]
pub struct Store {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
}

impl Store {
    pub fn open(state_dir: PathBuf, run_dir: PathBuf) -> Result<Store, StoreError> {
        mkdir(&state_dir)?;
        mkdir(&run_dir)?;
        Ok(Store { state_dir, run_dir })
    }

    pub fn config(&self, name: &str) -> PathBuf {
        self.state_dir.join(format!("{name}.xml"))
    }

    pub fn live(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.xml"))
    }

    fn autostart(&self, name: &str) -> PathBuf {
        self.state_dir.join("autostart").join(name)
    }

    pub fn save_config(&self, name: &str, xml: &str) -> Result<(), StoreError> {
        Ok(write_atomic(&self.config(name), xml.as_bytes())?)
    }

    pub fn save_live(&self, name: &str, xml: &str) -> Result<(), StoreError> {
        Ok(write_atomic(&self.live(name), xml.as_bytes())?)
    }

    pub fn set_autostart(&self, name: &str, on: bool) -> Result<(), StoreError> {
        let path = self.autostart(name);
        if on {
            mkdir(&self.state_dir.join("autostart"))?;
            Ok(write_atomic(&path, b"")?)
        } else {
            remove_file(&path)
        }
    }

    pub fn is_autostart(&self, name: &str) -> bool {
        self.autostart(name).exists()
    }

    /// Every stored config: (path, text or read error).
    pub fn configs(&self) -> Vec<(PathBuf, Result<String, String>)> {
        read_all(&self.state_dir)
    }

    /// Every active pool's file.
    pub fn lives(&self) -> Vec<(PathBuf, Result<String, String>)> {
        read_all(&self.run_dir)
    }
}

fn read_all(dir: &Path) -> Vec<(PathBuf, Result<String, String>)> {
    xml_files(dir)
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).map_err(|e| e.to_string());
            (p, text)
        })
        .collect()
}
