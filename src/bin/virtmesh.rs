//! `virtmesh`: run the whole mesh (`up`), or one role of it.
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use virtmesh::launcher::{UpOptions, up};
use virtmesh::roles::{RoleArgs, block_on, run_gateway, run_service};

#[derive(Parser)]
#[command(name = "virtmesh", about = "libvirt as a gRPC mesh", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the gateway and every service of this build, each its own process.
    Up {
        /// Configuration file (TOML); the embedded default when absent.
        #[arg(long, env = "VIRTMESH_CONFIG")]
        config: Option<PathBuf>,
        /// Gateway address (HOST:PORT or unix:PATH); default 127.0.0.1:16509.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run the gateway in this process.
    Gateway(RoleArgs),
    /// Run one driver service in this process.
    Service {
        /// The driver: test.
        name: String,
        #[command(flatten)]
        args: RoleArgs,
    },
}

fn main() -> std::process::ExitCode {
    match Cli::parse().command {
        Cmd::Up { config, listen } => block_on(up(UpOptions { config, listen })),
        Cmd::Gateway(args) => block_on(run_gateway(args)),
        Cmd::Service { name, args } => block_on(async move { run_service(&name, args).await }),
    }
}
