//! Control-plane benchmark through the gateway (issue 2): define, lookup,
//! dumpxml, list of 1,000 domains, undefine, with one client and with 32
//! concurrent clients (one connection each). Prints ops/s and p50/p99.
//!
//! By default it starts its own `virtmesh-test` and `virtmesh-gateway`
//! (sibling binaries: `cargo build --release --bins` first); `--gateway
//! ADDR` measures a mesh that is already running.

use anyhow::{Context, bail};
use clap::Parser;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use virtmesh_proto::v1::domain_client::DomainClient;
use virtmesh_proto::v1::{
    DefineXmlRequest, GetXmlDescRequest, ListDomainsRequest, ObjectRef, UndefineRequest, object_ref,
};
use virtmesh_rpc::ListenAddr;
use virtmesh_rpc::client::{ChannelOptions, channel};

#[derive(Parser)]
#[command(
    name = "virtmesh-bench",
    about = "control-plane benchmark through the gateway"
)]
struct Cli {
    /// Measure an existing gateway instead of starting one.
    #[arg(long)]
    gateway: Option<String>,
    /// Call the test service directly, bypassing the gateway (to see what
    /// the extra hop costs).
    #[arg(long)]
    direct: bool,
    /// Connect the gateway to the test service over a unix socket.
    #[arg(long)]
    unix: bool,
    /// Number of domains to define (and list).
    #[arg(long, default_value_t = 1000)]
    domains: usize,
    /// Lookups and dumpxmls measured with one client.
    #[arg(long, default_value_t = 10_000)]
    ops: usize,
    /// Concurrent clients for the parallel phase.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Duration of the parallel phase, seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

struct Spawned(Vec<Child>);

impl Drop for Spawned {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start(bin: PathBuf, args: &[&str]) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(&bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (run `cargo build --release --bins`)",
                bin.display()
            )
        })?;
    let out = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    let mut reader = BufReader::new(out);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("{} exited before it was ready", bin.display());
        }
        if let Some(addr) = line.trim().strip_prefix("listening on ") {
            return Ok((child, addr.to_owned()));
        }
    }
}

fn spawn_mesh(direct: bool, unix: bool) -> anyhow::Result<(Spawned, String)> {
    let dir = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .context("binary directory")?;
    let test_listen = if unix {
        format!(
            "unix:{}",
            std::env::temp_dir()
                .join(format!("virtmesh-bench-{}.sock", std::process::id()))
                .display()
        )
    } else {
        "127.0.0.1:0".to_owned()
    };
    let (test, test_addr) = start(dir.join("virtmesh-test"), &["--listen", &test_listen])?;
    if direct {
        return Ok((Spawned(vec![test]), test_addr));
    }
    let config = std::env::temp_dir().join(format!("virtmesh-bench-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\n[[service]]\nname = \"test\"\nlisten = \"{test_addr}\"\nschemes = [\"test\"]\nfamilies = [\"*\"]\n"
        ),
    )?;
    let config_arg = config.display().to_string();
    let (gw, gw_addr) = start(
        dir.join("virtmesh-gateway"),
        &["--config", &config_arg, "--listen", "127.0.0.1:0"],
    )?;
    Ok((Spawned(vec![test, gw]), gw_addr))
}

fn by_name(name: &str) -> ObjectRef {
    ObjectRef {
        key: Some(object_ref::Key::Name(name.to_owned())),
    }
}

fn domain_xml(i: usize) -> String {
    format!(
        "<domain type='test'><name>bench-{i}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"
    )
}

struct Stats {
    samples: Vec<Duration>,
    wall: Duration,
}

impl Stats {
    fn report(&mut self, what: &str, reference: &str) {
        self.samples.sort();
        let n = self.samples.len().max(1);
        let pct = |p: f64| self.samples[((n as f64 * p) as usize).min(n - 1)];
        println!(
            "{what:<34} {:>9.0} ops/s   p50 {:>8.1} µs   p99 {:>8.1} µs   ({reference})",
            self.samples.len() as f64 / self.wall.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e6,
            pct(0.99).as_secs_f64() * 1e6,
        );
    }
}

async fn timed<F, Fut>(count: usize, mut op: F) -> anyhow::Result<Stats>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut samples = Vec::with_capacity(count);
    let start = Instant::now();
    for i in 0..count {
        let t = Instant::now();
        op(i).await?;
        samples.push(t.elapsed());
    }
    Ok(Stats {
        samples,
        wall: start.elapsed(),
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (_mesh, gateway) = match &cli.gateway {
        Some(g) => (Spawned(Vec::new()), g.clone()),
        None => spawn_mesh(cli.direct, cli.unix)?,
    };
    let addr: ListenAddr = gateway.parse()?;
    let connect = || DomainClient::new(channel(&addr, &ChannelOptions::default()));
    let mut client: DomainClient<Channel> = connect();
    let target = if cli.direct {
        "test service (no gateway)"
    } else {
        "gateway"
    };
    println!(
        "virtmesh-bench: {target} {gateway}, {} domains, {} ops, {} clients",
        cli.domains, cli.ops, cli.clients
    );

    // Warm the connection so the first sample is not a TCP handshake.
    client.lookup(by_name("test")).await?;

    let mut s = timed(cli.domains, |i| {
        let mut c = client.clone();
        async move {
            c.define_xml(DefineXmlRequest {
                xml: domain_xml(i),
                validate: false,
            })
            .await?;
            Ok(())
        }
    })
    .await?;
    s.report("define", "libvirtd test driver: 3,300/s");

    let n = cli.domains.max(1);
    let mut s = timed(cli.ops, |i| {
        let mut c = client.clone();
        async move {
            c.lookup(by_name(&format!("bench-{}", i % n))).await?;
            Ok(())
        }
    })
    .await?;
    s.report("lookup", "libvirtd: 11,400/s, p50 85 µs");

    let mut s = timed(cli.ops, |i| {
        let mut c = client.clone();
        async move {
            c.get_xml_desc(GetXmlDescRequest {
                object: Some(by_name(&format!("bench-{}", i % n))),
                ..Default::default()
            })
            .await?;
            Ok(())
        }
    })
    .await?;
    s.report("dumpxml", "libvirtd: 9,400/s");

    let mut s = timed(200, |_| {
        let mut c = client.clone();
        async move {
            let mut stream = c.list(ListDomainsRequest::default()).await?.into_inner();
            let mut count = 0;
            while stream.message().await?.is_some() {
                count += 1;
            }
            anyhow::ensure!(count > n, "list returned {count} domains");
            Ok(())
        }
    })
    .await?;
    s.report(
        &format!("list of {} domains", n + 1),
        "libvirtd: p50 2.7 ms",
    );

    // 32 clients, one connection each, looping lookup + dumpxml.
    let deadline = Instant::now() + Duration::from_secs(cli.seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..cli.clients {
        let mut c = connect();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut i = k;
            while Instant::now() < deadline {
                let name = format!("bench-{}", i % n);
                let t = Instant::now();
                c.lookup(by_name(&name)).await?;
                c.get_xml_desc(GetXmlDescRequest {
                    object: Some(by_name(&name)),
                    ..Default::default()
                })
                .await?;
                samples.push(t.elapsed());
                i += 7;
            }
            Ok::<_, anyhow::Error>(samples)
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await??);
    }
    let mut s = Stats {
        samples,
        wall: start.elapsed(),
    };
    s.report(
        &format!("{} clients lookup+dumpxml pairs", cli.clients),
        "libvirtd qemu driver: 9,700 pairs/s, p99 18.9 ms",
    );

    let mut s = timed(cli.domains, |i| {
        let mut c = client.clone();
        async move {
            c.undefine(UndefineRequest {
                domain: Some(by_name(&format!("bench-{i}"))),
                ..Default::default()
            })
            .await?;
            Ok(())
        }
    })
    .await?;
    s.report("undefine", "(no libvirt figure)");
    Ok(())
}

fn main() -> std::process::ExitCode {
    virtmesh::roles::block_on(run(Cli::parse()))
}
