//! The gateway alone (one container per service).
use clap::Parser;
use virtmesh::roles::{RoleArgs, block_on, run_gateway};

#[derive(Parser)]
#[command(
    name = "virtmesh-gateway",
    about = "virtmesh's public gRPC front door",
    version
)]
struct Cli {
    #[command(flatten)]
    args: RoleArgs,
}

fn main() -> std::process::ExitCode {
    block_on(run_gateway(Cli::parse().args))
}
