//! The process roles: the gateway and each driver service.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use virtmesh_gateway::Config;
use virtmesh_rpc::ListenAddr;
use virtmesh_rpc::serve::{Listener, serve, shutdown_signal, standard_routes};

/// The line a role prints on stdout once it accepts calls; the launcher
/// and the end-to-end tests wait for it (it also reveals port 0's pick).
pub const READY_PREFIX: &str = "listening on ";

/// Driver services this build contains.
pub const SERVICES: &[&str] = &["test", "qemu", "network", "storage"];

#[derive(Debug, Clone, Args)]
pub struct RoleArgs {
    /// Configuration file (TOML); the embedded default when absent.
    #[arg(long, env = "VIRTMESH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (HOST:PORT or unix:PATH); overrides the config.
    #[arg(long)]
    pub listen: Option<String>,
    /// State directory (default /var/lib/virtmesh/<service> as root).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

fn announce(listener: &Listener) {
    println!("{READY_PREFIX}{}", listener.local_addr());
}

/// `--listen` if given, else the address the config assigns.
fn listen_addr(args: &RoleArgs, configured: Option<&str>) -> anyhow::Result<ListenAddr> {
    match args.listen.as_deref().or(configured) {
        Some(text) => Ok(text.parse::<ListenAddr>()?),
        None => anyhow::bail!("no listen address in the config; pass --listen"),
    }
}

pub async fn run_gateway(args: RoleArgs) -> anyhow::Result<()> {
    virtmesh_rpc::telemetry::init("gateway");
    let config = Config::load(args.config.as_deref())?;
    let addr = listen_addr(&args, Some(&config.gateway.listen))?;
    let listener = Listener::bind(&addr).await?;
    announce(&listener);
    virtmesh_gateway::serve(&config, listener, shutdown_signal()).await?;
    Ok(())
}

pub async fn run_service(name: &str, args: RoleArgs) -> anyhow::Result<()> {
    virtmesh_rpc::telemetry::init(name);
    let config = Config::load(args.config.as_deref())?;
    let configured = config.services.iter().find(|s| s.name == name);
    let addr = listen_addr(&args, configured.map(|s| s.listen.as_str()))
        .with_context(|| format!("service '{name}'"))?;
    let (routes, served) = match name {
        "test" => (
            virtmesh_test_driver::routes(virtmesh_test_driver::TestDriver::new()),
            virtmesh_test_driver::SERVED,
        ),
        "qemu" => {
            let mut qemu = virtmesh_qemu::QemuConfig::system(args.state_dir.clone());
            // Interfaces of type 'network' get their ports from the
            // network service, reached where the config says peers reach it.
            qemu.network = config
                .services
                .iter()
                .find(|s| s.name == "network")
                .map(|s| s.connect_addr())
                .transpose()?;
            let driver = virtmesh_qemu::QemuDriver::new(qemu)
                .await
                .context("starting the qemu driver")?;
            (virtmesh_qemu::routes(driver), virtmesh_qemu::SERVED)
        }
        "network" => {
            // The driver spawns its netlink connection on this runtime.
            let config = virtmesh_network::NetworkConfig::system(args.state_dir.clone());
            let driver = virtmesh_network::NetworkDriver::new(config)
                .await
                .context("starting the network driver")?;
            (virtmesh_network::routes(driver), virtmesh_network::SERVED)
        }
        "storage" => {
            let config = virtmesh_storage::StorageConfig::system(args.state_dir.clone());
            let driver = virtmesh_storage::StorageDriver::new(config)
                .await
                .context("starting the storage driver")?;
            (virtmesh_storage::routes(driver), virtmesh_storage::SERVED)
        }
        other => anyhow::bail!(
            "unknown service '{other}' (this build has: {})",
            SERVICES.join(", ")
        ),
    };
    let routes = standard_routes(routes, served).await?;
    let listener = Listener::bind(&addr)
        .await
        .with_context(|| format!("starting the {name} service"))?;
    announce(&listener);
    serve(routes, listener, shutdown_signal()).await?;
    Ok(())
}

/// Run a role on a fresh multi-threaded runtime and turn its error into an
/// exit status with the whole cause chain printed.
pub fn block_on(
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
