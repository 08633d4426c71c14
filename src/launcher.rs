//! `virtmesh up`: start the gateway and every driver service of this build,
//! each as its own process, from one config; print where each listens,
//! forward their logs, and stop them all on Ctrl-C or SIGTERM.

use crate::roles::{READY_PREFIX, SERVICES};
use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use virtmesh_gateway::Config;

/// How long a child may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long children get to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub struct UpOptions {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
}

struct Running {
    name: String,
    child: Child,
}

enum Note {
    Ready(String, String),
}

pub async fn up(opts: UpOptions) -> anyhow::Result<()> {
    virtmesh_rpc::telemetry::init("launcher");
    let config = Config::load(opts.config.as_deref())?;
    let exe = std::env::current_exe().context("locating the virtmesh binary")?;
    let (notes_tx, mut notes_rx) = mpsc::unbounded_channel();

    let mut plan: Vec<(String, Vec<String>)> = Vec::new();
    for s in &config.services {
        if SERVICES.contains(&s.name.as_str()) {
            plan.push((s.name.clone(), vec!["service".into(), s.name.clone()]));
        } else {
            eprintln!(
                "virtmesh: service '{}' is not part of this build; skipping it",
                s.name
            );
        }
    }
    let mut gateway_args = vec!["gateway".to_owned()];
    if let Some(listen) = &opts.listen {
        gateway_args.extend(["--listen".to_owned(), listen.clone()]);
    }
    plan.push(("gateway".to_owned(), gateway_args));

    let mut running = Vec::new();
    for (name, mut args) in plan {
        if let Some(path) = &opts.config {
            args.extend(["--config".to_owned(), path.display().to_string()]);
        }
        match spawn(&exe, &name, &args, notes_tx.clone()) {
            Ok(child) => running.push(Running { name, child }),
            Err(e) => {
                stop_all(&mut running).await;
                return Err(e);
            }
        }
    }

    // Everyone must report ready, or nobody stays up.
    let mut ready = 0;
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    while ready < running.len() {
        tokio::select! {
            note = notes_rx.recv() => match note {
                Some(Note::Ready(name, addr)) => {
                    println!("{name}: listening on {addr}");
                    ready += 1;
                }
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => {
                stop_all(&mut running).await;
                bail!("services did not become ready within {READY_TIMEOUT:?}");
            }
            exited = first_exit(&mut running) => {
                let (name, status) = exited;
                stop_all(&mut running).await;
                bail!("{name} exited during start-up ({status}); see its log above");
            }
        }
    }
    println!("virtmesh is up; Ctrl-C stops it");

    tokio::select! {
        _ = virtmesh_rpc::serve::shutdown_signal() => {}
        exited = first_exit(&mut running) => {
            let (name, status) = exited;
            eprintln!("virtmesh: {name} exited ({status}); stopping the mesh");
        }
    }
    stop_all(&mut running).await;
    Ok(())
}

fn spawn(
    exe: &std::path::Path,
    name: &str,
    args: &[String],
    notes: mpsc::UnboundedSender<Note>,
) -> anyhow::Result<Child> {
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    if let Some(out) = child.stdout.take() {
        let name = name.to_owned();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match line.strip_prefix(READY_PREFIX) {
                    Some(addr) => {
                        let _ = notes.send(Note::Ready(name.clone(), addr.to_owned()));
                    }
                    None => eprintln!("[{name}] {line}"),
                }
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        let name = name.to_owned();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{name}] {line}");
            }
        });
    }
    Ok(child)
}

/// Resolves when any child exits; never resolves while all run.
async fn first_exit(running: &mut [Running]) -> (String, String) {
    loop {
        for r in running.iter_mut() {
            if let Ok(Some(status)) = r.child.try_wait() {
                return (r.name.clone(), status.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stop_all(running: &mut Vec<Running>) {
    for r in running.iter() {
        if let Some(pid) = r.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    for r in running.iter_mut() {
        match tokio::time::timeout(STOP_GRACE, r.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("virtmesh: {} ignored SIGTERM; killing it", r.name);
                let _ = r.child.kill().await;
            }
        }
    }
    running.clear();
}
