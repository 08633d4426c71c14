//! The network driver service alone (one container per service).
use clap::Parser;
use virtmesh::roles::{RoleArgs, block_on, run_service};

#[derive(Parser)]
#[command(
    name = "virtmesh-network",
    about = "libvirt's network driver (bridges, NAT, dnsmasq) as a gRPC service",
    version
)]
struct Cli {
    #[command(flatten)]
    args: RoleArgs,
}

fn main() -> std::process::ExitCode {
    block_on(run_service("network", Cli::parse().args))
}
