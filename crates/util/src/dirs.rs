//! Where a service keeps its state (DESIGN.md §6), the same rule for every
//! service: as root `/var/lib/virtmesh/<service>` and
//! `/run/virtmesh/<service>`; otherwise under `$XDG_DATA_HOME` (or
//! `~/.local/share`) and `$XDG_RUNTIME_DIR`. An explicit state directory
//! (`--state-dir`) keeps everything in one place: the run directory goes
//! beneath it.

use std::path::PathBuf;

/// A service's persistent and run-time directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDirs {
    /// Persistent configs (libvirt's /etc/libvirt or /var/lib/libvirt).
    pub state_dir: PathBuf,
    /// Live status, sockets, pid files (libvirt's /run/libvirt).
    pub run_dir: PathBuf,
}

/// The directories of `service` (`qemu`, `network`, ...), honouring an
/// explicit state directory.
pub fn service_dirs(service: &str, state_dir: Option<PathBuf>) -> ServiceDirs {
    if let Some(state_dir) = state_dir {
        return ServiceDirs {
            run_dir: state_dir.join("run"),
            state_dir,
        };
    }
    if is_root() {
        return ServiceDirs {
            state_dir: PathBuf::from("/var/lib/virtmesh").join(service),
            run_dir: PathBuf::from("/run/virtmesh").join(service),
        };
    }
    let env_dir = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let data = env_dir("XDG_DATA_HOME")
        .or_else(|| env_dir("HOME").map(|h| h.join(".local/share")))
        .unwrap_or_else(std::env::temp_dir)
        .join("virtmesh")
        .join(service);
    let run = env_dir("XDG_RUNTIME_DIR")
        .map(|r| r.join("virtmesh").join(service))
        .unwrap_or_else(|| data.join("run"));
    ServiceDirs {
        state_dir: data,
        run_dir: run,
    }
}

/// Why a state directory could not be locked; `busy` when another
/// process holds it.
#[derive(Debug, thiserror::Error)]
#[error("cannot lock '{path}': {message}")]
pub struct LockError {
    pub path: String,
    pub message: String,
    pub busy: bool,
}

/// Take `<dir>/.lock` exclusively, without waiting: two instances of one
/// service on one directory would fight over the same host resources, so
/// the second fails clearly. The descriptor is close-on-exec, so children
/// (QEMU, dnsmasq) never inherit the lock; it is held until dropped.
pub fn try_lock_state_dir(
    dir: &std::path::Path,
    service: &str,
) -> Result<nix::fcntl::Flock<std::fs::File>, LockError> {
    use nix::fcntl::{Flock, FlockArg};
    let path = dir.join(".lock");
    let e = |message: String, busy: bool| LockError {
        path: path.display().to_string(),
        message,
        busy,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|x| e(x.to_string(), false))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            e(
                format!("another virtmesh-{service} is using this state directory"),
                true,
            )
        } else {
            e(errno.to_string(), false)
        }
    })
}

/// Whether we run as root: /proc/self belongs to the effective uid.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_state_dir_holds_the_run_dir() {
        let d = service_dirs("qemu", Some(PathBuf::from("/srv/vm")));
        assert_eq!(d.state_dir, PathBuf::from("/srv/vm"));
        assert_eq!(d.run_dir, PathBuf::from("/srv/vm/run"));
    }

    #[test]
    fn a_held_state_dir_is_busy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let held = try_lock_state_dir(dir.path(), "test").expect("first");
        let e = try_lock_state_dir(dir.path(), "test").expect_err("held");
        assert!(e.busy && e.message.contains("another virtmesh-test"), "{e}");
        drop(held);
        try_lock_state_dir(dir.path(), "test").expect("free again");
    }

    #[test]
    fn default_dirs_name_the_service() {
        let d = service_dirs("network", None);
        assert!(d.state_dir.ends_with("virtmesh/network"), "{d:?}");
        assert!(d.run_dir.ends_with("virtmesh/network") || d.run_dir.ends_with("network/run"));
    }
}
