//! The storage driver service alone (one container per service).
use clap::Parser;
use virtmesh::roles::{RoleArgs, block_on, run_service};

#[derive(Parser)]
#[command(
    name = "virtmesh-storage",
    about = "libvirt's storage driver (dir pools, volumes via qemu-img) as a gRPC service",
    version
)]
struct Cli {
    #[command(flatten)]
    args: RoleArgs,
}

fn main() -> std::process::ExitCode {
    block_on(run_service("storage", Cli::parse().args))
}
