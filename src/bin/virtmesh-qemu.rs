//! The qemu driver service alone (one container per service).
use clap::Parser;
use virtmesh::roles::{RoleArgs, block_on, run_service};

#[derive(Parser)]
#[command(
    name = "virtmesh-qemu",
    about = "libvirt's qemu driver (QEMU/KVM guests) as a gRPC service",
    version
)]
struct Cli {
    #[command(flatten)]
    args: RoleArgs,
}

fn main() -> std::process::ExitCode {
    block_on(run_service("qemu", Cli::parse().args))
}
