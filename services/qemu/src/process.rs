//! QEMU processes: spawn detached from the service, probe, signal.
//!
//! QEMU runs as our child but in its own process group, and its handle is
//! never `kill_on_drop`: killing or restarting the service never kills a
//! guest (DESIGN.md §6). We do not use `-daemonize`: a daemonized QEMU is
//! reparented to PID 1, and where PID 1 does not reap (containers, this CI)
//! every guest that ever exited would stay a zombie. As our child, tokio's
//! reaper collects it; only guests that outlive a service restart end up
//! with PID 1, which is why liveness checks treat a zombie as dead.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::net::UnixStream;

/// How long QEMU may take to open its monitor socket.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot execute '{emulator}': {source}")]
    Exec {
        emulator: String,
        source: std::io::Error,
    },
    #[error("cannot open log file '{path}': {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
    /// QEMU exited during start-up; `log` is what it wrote to stderr.
    #[error("internal error: QEMU unexpectedly closed the monitor ({status}): {log}")]
    Exited { status: String, log: String },
    #[error("internal error: QEMU did not open its monitor socket within {0:?}")]
    Timeout(Duration),
    #[error("cannot send {signal} to process {pid}: {source}")]
    Signal {
        pid: i32,
        signal: Signal,
        source: nix::Error,
    },
}

/// A freshly started QEMU, its monitor connected but not yet greeted.
pub struct Spawned {
    pub pid: i32,
    pub monitor: UnixStream,
}

/// Start `emulator args...` with stdout/stderr appended to `log`, then
/// connect to `monitor` as soon as QEMU listens there. If QEMU exits first,
/// the error carries its stderr.
pub async fn spawn(
    emulator: &Path,
    args: &[String],
    log: &Path,
    monitor: &Path,
) -> Result<Spawned, ProcessError> {
    spawn_with_fds(emulator, &|_| args.to_vec(), &[], log, monitor).await
}

/// Every spawn of this crate holds this lock while inheritable copies of
/// passed descriptors exist, so no other child (another guest's QEMU, the
/// probe, `ip tuntap`) inherits a guest's tap or macvtap.
static SPAWN_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Run `cmd.spawn()` under the spawn lock (see [`SPAWN_LOCK`]).
pub fn spawn_locked(cmd: &mut tokio::process::Command) -> std::io::Result<tokio::process::Child> {
    let _guard = SPAWN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    cmd.spawn()
}

/// Spawn with `pass` handed to the child: each file is `dup`ed (a dup
/// does not carry FD_CLOEXEC, so the child inherits it at the same
/// number), `build` gets those numbers for `fd=N`, and the dups are closed
/// right after the spawn, all under [`SPAWN_LOCK`]. This keeps the crate
/// free of `unsafe` (`pre_exec`); the one hole is a child spawned at that
/// instant by other code in the same process that does not take the lock.
fn spawn_passing(
    cmd: &mut tokio::process::Command,
    build: &(dyn Fn(&[i32]) -> Vec<String> + Sync),
    pass: &[std::fs::File],
) -> std::io::Result<tokio::process::Child> {
    use std::os::fd::AsRawFd;
    let _guard = SPAWN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dups: Vec<std::os::fd::OwnedFd> = pass
        .iter()
        .map(|f| nix::unistd::dup(f).map_err(std::io::Error::from))
        .collect::<Result<_, _>>()?;
    let nums: Vec<i32> = dups.iter().map(|d| d.as_raw_fd()).collect();
    cmd.args(build(&nums));
    let child = cmd.spawn();
    drop(dups);
    child
}

/// [`spawn`] with descriptors passed to QEMU; `build` makes the arguments
/// from the descriptor numbers the child will see.
pub async fn spawn_with_fds(
    emulator: &Path,
    build: &(dyn Fn(&[i32]) -> Vec<String> + Sync),
    pass: &[std::fs::File],
    log: &Path,
    monitor: &Path,
) -> Result<Spawned, ProcessError> {
    let log_err = |source| ProcessError::Log {
        path: log.display().to_string(),
        source,
    };
    // A socket file left by an earlier run would make us connect to nothing
    // (ECONNREFUSED) until QEMU replaces it; remove it first.
    let _ = std::fs::remove_file(monitor);
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(log_err)?;
    let log_start = log_file.metadata().map(|m| m.len()).unwrap_or(0);
    let log_dup = log_file.try_clone().map_err(log_err)?;
    let mut cmd = tokio::process::Command::new(emulator);
    cmd.env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_dup))
        .stderr(Stdio::from(log_file))
        // Own process group: a signal to the service's group (Ctrl-C,
        // a supervisor stopping the service) does not reach the guest.
        .process_group(0)
        .kill_on_drop(false);
    let mut child = spawn_passing(&mut cmd, build, pass).map_err(|source| ProcessError::Exec {
        emulator: emulator.display().to_string(),
        source,
    })?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or_default();
    let deadline = Instant::now() + SPAWN_TIMEOUT;
    let mut delay = Duration::from_micros(500);
    let result = loop {
        match UnixStream::connect(monitor).await {
            Ok(stream) => break Ok(stream),
            Err(_) if Instant::now() < deadline => {}
            Err(_) => break Err(ProcessError::Timeout(SPAWN_TIMEOUT)),
        }
        tokio::select! {
            status = child.wait() => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                break Err(ProcessError::Exited { status, log: read_log_from(log, log_start) });
            }
            _ = tokio::time::sleep(delay) => {}
        }
        // Connecting to a path nobody listens on is a cheap syscall; a
        // small cap keeps start latency close to QEMU's own.
        delay = (delay * 2).min(Duration::from_millis(1));
    };
    match result {
        Ok(monitor) => {
            // Reap whenever it exits; the task holds nothing of the driver
            // and outlives it, which is what we want after a driver restart.
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
            Ok(Spawned { pid, monitor })
        }
        Err(e) => {
            if matches!(e, ProcessError::Timeout(_)) {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            Err(e)
        }
    }
}

/// What QEMU wrote to its log since `start`, trimmed, for error messages.
pub fn read_log_from(log: &Path, start: u64) -> String {
    let bytes = std::fs::read(log).unwrap_or_default();
    let start = usize::try_from(start).unwrap_or(0).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

/// Whether `pid` is a live process (not a zombie) whose command line
/// contains `marker` (the monitor socket path), so a recycled pid is never
/// mistaken for our guest.
pub fn is_our_qemu(pid: i32, marker: &Path) -> bool {
    if !is_alive(pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let marker = marker.display().to_string();
    String::from_utf8_lossy(&cmdline).contains(&marker)
}

/// Whether `pid` exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command,
        // which may itself contain spaces or parentheses.
        Ok(stat) => match stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
        {
            Some(state) => !matches!(state, "Z" | "X" | "x"),
            None => false,
        },
        Err(_) => false,
    }
}

/// Send `signal`; a process already gone is not an error.
pub fn signal(pid: i32, signal: Signal) -> Result<(), ProcessError> {
    if pid <= 0 {
        return Ok(());
    }
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(source) => Err(ProcessError::Signal {
            pid,
            signal,
            source,
        }),
    }
}

/// Poll until `pid` is gone (or a zombie) or `timeout` passes; returns
/// whether it is gone. Used after QMP EOF, which comes first, so this
/// normally returns within a few milliseconds.
pub async fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !is_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// CPU time of a QEMU process (all its threads), from /proc. Clock ticks
/// are 100 per second on Linux x86-64 (USER_HZ).
pub fn cpu_time_ns(pid: i32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    // After the command: state is field 3; utime and stime are 14 and 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)).saturating_mul(10_000_000)
}

/// Resident memory of a process in KiB (VmRSS), as libvirt's `rss` stat.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Files of one running guest in the run directory.
#[derive(Debug, Clone)]
pub struct RunPaths {
    pub monitor: PathBuf,
    pub pidfile: PathBuf,
    pub log: PathBuf,
    pub status: PathBuf,
}

impl RunPaths {
    /// Named by UUID: names may be long or odd, and a unix socket path must
    /// stay under 108 bytes.
    pub fn new(run_dir: &Path, uuid: &str) -> RunPaths {
        RunPaths {
            monitor: run_dir.join(format!("{uuid}.qmp")),
            pidfile: run_dir.join(format!("{uuid}.pid")),
            log: run_dir.join(format!("{uuid}.log")),
            status: run_dir.join(format!("{uuid}.status.json")),
        }
    }

    /// Remove what a stopped guest leaves behind (the log stays, as
    /// libvirt keeps its domain logs).
    pub fn cleanup(&self) {
        for p in [&self.monitor, &self.pidfile, &self.status] {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_bogus_pids_are_not() {
        assert!(is_alive(
            i32::try_from(std::process::id()).expect("pid fits")
        ));
        assert!(!is_alive(0));
        assert!(!is_alive(-5));
        assert!(!is_alive(i32::MAX));
    }

    #[test]
    fn own_cpu_time_and_rss_are_readable() {
        let pid = i32::try_from(std::process::id()).expect("pid fits");
        assert!(cpu_time_ns(pid) < 10_000_000_000_000);
        assert_eq!(cpu_time_ns(-1), 0);
        assert!(rss_kib(pid).is_some_and(|r| r > 0));
        assert_eq!(rss_kib(-1), None);
    }

    #[tokio::test]
    async fn spawn_failure_carries_stderr() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = spawn(
            Path::new("/bin/sh"),
            &["-c".into(), "echo 'qemu: bad option' >&2; exit 1".into()],
            &dir.path().join("log"),
            &dir.path().join("mon.sock"),
        )
        .await
        .err()
        .expect("must fail");
        let msg = e.to_string();
        assert!(msg.contains("qemu: bad option"), "{msg}");
    }

    #[tokio::test]
    async fn missing_emulator_is_an_exec_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = spawn(
            Path::new("/nonexistent/qemu"),
            &[],
            &dir.path().join("log"),
            &dir.path().join("mon.sock"),
        )
        .await
        .err()
        .expect("must fail");
        assert!(matches!(e, ProcessError::Exec { .. }));
    }
}
