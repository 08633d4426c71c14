fn main() -> std::process::ExitCode {
    virtmesh_client::vsh::main()
}
