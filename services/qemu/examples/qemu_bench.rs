//! Benchmark (not a test): start -> running and destroy latencies of a
//! diskless 128 MiB q35 KVM guest through the qemu service (gRPC over a
//! unix socket, in process), beside the raw QEMU floor (spawn, QMP
//! `qmp_capabilities` + `cont`; SIGKILL + reap).
//!
//! cargo run --release -p virtmesh-qemu --example qemu_bench [-- ITERATIONS]

use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use virtmesh_proto::v1::{self as pb, domain_client::DomainClient, object_ref::Key};
use virtmesh_qemu::{QemuConfig, QemuDriver};
use virtmesh_rpc::ListenAddr;
use virtmesh_rpc::serve::{Listener, serve};

const EMULATOR: &str = "/usr/bin/qemu-system-x86_64";

fn p(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[i].as_secs_f64() * 1e3
}

/// Spawn QEMU and drive it to running over QMP with nothing in between.
async fn raw_once(dir: &Path) -> anyhow::Result<(Duration, Duration)> {
    let sock = dir.join("raw.qmp");
    let _ = std::fs::remove_file(&sock);
    let t = Instant::now();
    let mut child = tokio::process::Command::new(EMULATOR)
        .args([
            "-S",
            "-machine",
            "q35",
            "-accel",
            "kvm",
            "-m",
            "128",
            "-nodefaults",
        ])
        .args(["-display", "none", "-qmp"])
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stream = loop {
        match tokio::net::UnixStream::connect(&sock).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_micros(500)).await,
        }
    };
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await?;
    for cmd in ["qmp_capabilities", "cont"] {
        w.write_all(format!("{{\"execute\":\"{cmd}\"}}\n").as_bytes())
            .await?;
        loop {
            line.clear();
            r.read_line(&mut line).await?;
            if line.contains("\"return\"") {
                break;
            }
        }
    }
    let start = t.elapsed();
    let t = Instant::now();
    child.start_kill()?;
    child.wait().await?;
    Ok((start, t.elapsed()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    if !Path::new("/dev/kvm").exists() || !Path::new(EMULATOR).exists() {
        anyhow::bail!("needs /dev/kvm and {EMULATOR}");
    }
    let dir = tempfile::tempdir()?;

    let (mut raw_start, mut raw_kill) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (s, k) = raw_once(dir.path()).await?;
        raw_start.push(s);
        raw_kill.push(k);
    }

    let driver = QemuDriver::new(QemuConfig {
        state_dir: dir.path().join("state"),
        run_dir: dir.path().join("run"),
        emulator: EMULATOR.into(),
        network: None,
    })
    .await?;
    let addr = ListenAddr::Unix(dir.path().join("svc.sock"));
    let listener = Listener::bind(&addr).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(virtmesh_qemu::routes(driver), listener, async {
        let _ = stop_rx.await;
    }));
    let channel = virtmesh_rpc::client::channel(&addr, &Default::default());
    let mut c = DomainClient::new(channel);
    let name = pb::ObjectRef {
        key: Some(Key::Name("bench".into())),
    };
    c.define_xml(pb::DefineXmlRequest {
        xml: "<domain type='kvm'><name>bench</name><memory unit='MiB'>128</memory><os><type arch='x86_64' machine='q35'>hvm</type></os></domain>".into(),
        validate: false,
    })
    .await?;
    let (mut svc_start, mut svc_destroy) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        c.create(pb::CreateRequest {
            domain: Some(name.clone()),
            ..Default::default()
        })
        .await?;
        svc_start.push(t.elapsed());
        let t = Instant::now();
        c.destroy(pb::DestroyRequest {
            domain: Some(name.clone()),
            graceful: false,
        })
        .await?;
        svc_destroy.push(t.elapsed());
    }
    c.undefine(pb::UndefineRequest {
        domain: Some(name),
        ..Default::default()
    })
    .await?;
    drop(c);
    let _ = stop_tx.send(());
    let _ = server.await;

    println!("diskless 128 MiB q35 KVM guest, {n} runs (ms)      p50     p90");
    println!(
        "raw QEMU   spawn -> QMP running               {:7.1} {:7.1}",
        p(&mut raw_start, 0.5),
        p(&mut raw_start, 0.9)
    );
    println!(
        "raw QEMU   SIGKILL + reap                     {:7.1} {:7.1}",
        p(&mut raw_kill, 0.5),
        p(&mut raw_kill, 0.9)
    );
    println!(
        "virtmesh   Create -> running (gRPC)           {:7.1} {:7.1}",
        p(&mut svc_start, 0.5),
        p(&mut svc_start, 0.9)
    );
    println!(
        "virtmesh   Destroy (gRPC)                     {:7.1} {:7.1}",
        p(&mut svc_destroy, 0.5),
        p(&mut svc_destroy, 0.9)
    );
    Ok(())
}
