//! vsh: a virsh-compatible command line over virtmesh.
//!
//! Output follows virsh 11.3 byte for byte where the data allows: tables
//! via [`table::Table`], `%-15s` info blocks, the same success and error
//! messages, and the blank line virsh prints after every command it runs
//! (suppressed by `-q`, like virsh's `vshPrintExtra`). Failures print
//! `error: ...` lines on stderr and exit with status 1.

pub mod cli;
pub mod cmdline;
pub mod console;
pub mod devices;
pub mod domain;
pub mod domextra;
pub mod event;
pub mod host;
pub mod iface;
pub mod network;
pub mod nodedev;
pub mod nwfilter;
pub mod secret;
pub mod snapshot;
pub mod storage;
pub mod table;
pub mod update;
pub mod util;
pub mod xml;

use std::fmt;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::connection::Connection;
use cli::{
    Cli, Command, DeviceCmd, DomainCmd, EventCmd, HostCmd, NetworkCmd, SecretCmd, SnapshotCmd,
    StorageCmd,
};
use table::Table;

/// What a command run needs: the connection and the output mode.
pub struct Ctl {
    pub conn: Connection,
    pub quiet: bool,
}

impl Ctl {
    /// vshPrint: always printed. Flushed at once, so `event --loop` output
    /// reaches a pipe as it happens.
    pub fn print(&self, s: &str) {
        let mut out = std::io::stdout().lock();
        // A closed stdout (`vsh list | head -0`) is not an error worth
        // reporting; virsh ignores it too.
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
    }

    /// vshPrintExtra: informational text that `-q` suppresses.
    pub fn extra(&self, s: &str) {
        if !self.quiet {
            self.print(s);
        }
    }

    /// vshTablePrintToStdout: the header only when not quiet.
    pub fn table(&self, t: &Table) {
        self.print(&t.render(!self.quiet));
    }

    /// vshError in the middle of a command that goes on (e.g. the warning
    /// about `--base64` on the command line).
    pub fn error_now(&self, msg: &str) {
        eprintln!("error: {msg}");
    }
}

/// A failed command: the `error: ` lines virsh prints for it, in order
/// (usually virsh's own context line, then libvirt's message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdError {
    pub lines: Vec<String>,
}

impl CmdError {
    pub fn msg(line: impl Into<String>) -> Self {
        CmdError {
            lines: vec![line.into()],
        }
    }

    /// virsh's context line followed by the underlying error.
    pub fn ctx(line: impl Into<String>, err: impl fmt::Display) -> Self {
        CmdError {
            lines: vec![line.into(), err.to_string()],
        }
    }

    /// Exit status 1 with nothing more to say (e.g. `event` that timed out).
    pub fn silent() -> Self {
        CmdError { lines: Vec::new() }
    }

    /// The stderr text.
    pub fn render(&self) -> String {
        self.lines.iter().map(|l| format!("error: {l}\n")).collect()
    }
}

impl From<crate::Error> for CmdError {
    fn from(e: crate::Error) -> Self {
        CmdError::msg(e.to_string())
    }
}

pub type CmdResult = Result<(), CmdError>;

/// The connection URI: `-c`, else `$VIRTMESH_DEFAULT_URI`, else
/// `$LIBVIRT_DEFAULT_URI`, else none (the gateway's default applies).
pub fn default_uri(
    connect: Option<String>,
    env: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    // An empty variable counts as unset, as libvirt treats it.
    let set = |k: &str| env(k).filter(|u| !u.is_empty());
    connect
        .or_else(|| set("VIRTMESH_DEFAULT_URI"))
        .or_else(|| set("LIBVIRT_DEFAULT_URI"))
        .filter(|u| !u.is_empty())
}

/// Entry point of the `vsh` binary.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // No command at all: virsh's interactive shell (which also reads a
    // script from a pipe).
    let (globals, rest) = cmdline::split_globals(&args);
    if rest.is_empty() {
        return rt.block_on(shell(globals));
    }
    let clis = match parse_all(&args) {
        Ok(clis) => clis,
        Err(code) => return code,
    };
    rt.block_on(run(clis))
}
/// Parse the command line into the commands to run. As in virsh, a single
/// argument after the global options is a command string
/// (`vsh 'define d.xml; start vm1'`); every command is parsed before any
/// runs, so a typo in the third stops the first from running.
fn parse_all(args: &[String]) -> Result<Vec<Cli>, ExitCode> {
    let (globals, rest) = cmdline::split_globals(args);
    let lines = if rest.len() == 1 {
        cmdline::split_commands(&rest[0]).map_err(|msg| {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        })?
    } else {
        vec![rest]
    };
    // An empty command string gets clap's help, like no command at all.
    let lines = if lines.is_empty() {
        vec![Vec::new()]
    } else {
        lines
    };
    let mut clis = Vec::with_capacity(lines.len());
    for line in lines {
        let argv: Vec<String> = globals.iter().cloned().chain(line).collect();
        match Cli::try_parse_from(&argv) {
            Ok(cli) => clis.push(cli),
            Err(e) => {
                // Help and --version go to stdout with status 0; usage
                // errors exit 1 as virsh's do (clap would use 2), worded as
                // virsh words them when it has a wording.
                if !e.use_stderr() {
                    let _ = e.print();
                    return Err(ExitCode::SUCCESS);
                }
                match usage_error_text(&e, &argv) {
                    Some(text) => eprint!("{text}"),
                    None => {
                        let _ = e.print();
                    }
                }
                return Err(ExitCode::FAILURE);
            }
        }
    }
    Ok(clis)
}

/// Connect as virsh does at start-up: a gateway or URI that does not work
/// stops everything before the first command.
async fn connect(cli: &Cli) -> Result<Ctl, ExitCode> {
    let uri = default_uri(cli.connect.clone(), |k| std::env::var(k).ok());
    let gateway = cli.gateway_addr(|k| std::env::var(k).ok()).map_err(|msg| {
        eprintln!("error: {msg}");
        ExitCode::FAILURE
    })?;
    let conn = Connection::open(&gateway, uri.as_deref()).map_err(|e| connect_failed(&e))?;
    match conn.verify().await {
        Ok(_) => {}
        // A driver without Connect.Open still serves everything else; only
        // a real failure to reach or open the URI stops us here.
        Err(e) if e.code() == crate::ErrorCode::NoSupport => {}
        Err(e) => return Err(connect_failed(&e)),
    }
    Ok(Ctl {
        conn,
        quiet: cli.quiet,
    })
}

/// Run the commands in order; the exit status is the last command's, as
/// in virsh.
async fn run(clis: Vec<Cli>) -> ExitCode {
    let mut ctl: Option<Ctl> = None;
    let mut code = ExitCode::SUCCESS;
    for cli in clis {
        code = match run_one(&mut ctl, cli).await {
            Ok(code) => code,
            // Without a connection nothing else can run.
            Err(code) => return code,
        };
    }
    code
}

/// Run one command, connecting first if no connection exists yet. `Err`
/// means the connection failed (already reported).
async fn run_one(ctl: &mut Option<Ctl>, cli: Cli) -> Result<ExitCode, ExitCode> {
    // `event --list` needs no hypervisor, as in virsh.
    if let Command::Event(cli::EventCmd::Event(e)) = &cli.command
        && e.list
    {
        let names: String = event::EVENT_NAMES
            .iter()
            .map(|n| format!("{n}\n"))
            .collect();
        print!("{names}");
        if !cli.quiet {
            println!();
        }
        return Ok(ExitCode::SUCCESS);
    }
    if ctl.is_none() {
        *ctl = Some(connect(&cli).await?);
    }
    let Some(ctl) = ctl.as_ref() else {
        return Err(ExitCode::FAILURE);
    };
    let code = match dispatch(ctl, cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprint!("{}", e.render());
            ExitCode::FAILURE
        }
    };
    // virsh's vshCommandRun prints this after every command it ran,
    // successful or not.
    ctl.extra("\n");
    Ok(code)
}

/// The interactive shell: a prompt per line, each line a command string.
/// From a pipe the lines are echoed after the prompt, so a transcript reads
/// like a terminal session (virsh's readline does the same).
async fn shell(globals: Vec<String>) -> ExitCode {
    use std::io::{BufRead, IsTerminal};

    // Validate the global options once, with a harmless command.
    let probe: Vec<String> = globals.iter().cloned().chain(["uri".to_owned()]).collect();
    let quiet = match Cli::try_parse_from(&probe) {
        Ok(cli) => cli.quiet,
        Err(e) => {
            let _ = e.print();
            return ExitCode::FAILURE;
        }
    };
    if !quiet {
        print!(
            "Welcome to vsh, the virtmesh interactive terminal.\n\n\
             Type:  'help' for help with commands\n       'quit' to quit\n\n"
        );
    }
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut ctl: Option<Ctl> = None;
    let mut lines = stdin.lock().lines();
    loop {
        print!("vsh # ");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let line = match lines.next() {
            Some(Ok(line)) => line,
            // EOF (or an unreadable stdin) ends the session.
            _ => {
                println!();
                return ExitCode::SUCCESS;
            }
        };
        if !interactive {
            println!("{line}");
        }
        let commands = match cmdline::split_commands(&line) {
            Ok(c) => c,
            Err(msg) => {
                eprintln!("error: {msg}");
                continue;
            }
        };
        for words in commands {
            if matches!(words.first().map(String::as_str), Some("quit" | "exit")) {
                if !quiet {
                    println!();
                }
                return ExitCode::SUCCESS;
            }
            let argv: Vec<String> = globals.iter().cloned().chain(words).collect();
            match Cli::try_parse_from(&argv) {
                Ok(cli) => {
                    // A failed connection is reported and retried with the
                    // next command, as virsh's shell stays usable.
                    let _ = run_one(&mut ctl, cli).await;
                }
                Err(e) if !e.use_stderr() => {
                    let _ = e.print();
                }
                Err(e) => match usage_error_text(&e, &argv) {
                    Some(text) => eprint!("{text}"),
                    None => {
                        let _ = e.print();
                    }
                },
            }
        }
    }
}

/// virsh's wording for the usage errors it has words for: unknown
/// command, unknown option, missing required argument.
pub fn usage_error_text(e: &clap::Error, args: &[String]) -> Option<String> {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue, ErrorKind};

    let names: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    let command = args.iter().skip(1).find(|a| names.contains(a));
    let invalid = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    let line = match e.kind() {
        ErrorKind::InvalidSubcommand => {
            format!(
                "unknown command: '{}'",
                invalid(ContextKind::InvalidSubcommand)?
            )
        }
        ErrorKind::UnknownArgument => {
            let arg = invalid(ContextKind::InvalidArg)?;
            if arg.starts_with('-') {
                format!("command '{}' doesn't support option {arg}", command?)
            } else {
                format!("unexpected data '{arg}'")
            }
        }
        ErrorKind::ArgumentConflict => {
            // clap shows `--pool <POOL>`; virsh names only the option.
            let flag =
                |kind| invalid(kind).map(|a| a.split(' ').next().unwrap_or_default().to_owned());
            let (a, b) = (flag(ContextKind::InvalidArg)?, flag(ContextKind::PriorArg)?);
            if !a.starts_with("--") || !b.starts_with("--") {
                return None;
            }
            format!("Options {a} and {b} are mutually exclusive")
        }
        ErrorKind::MissingRequiredArgument => {
            // clap names the argument `<DOMAIN>` or `<DOMAIN|--domain <DOMAIN>>`;
            // virsh says `<domain>`. clap also lists a positional that was
            // given in its `--name` form, so the first one not given is it.
            let listed = match e.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(s)) => vec![s.clone()],
                Some(ContextValue::Strings(v)) => v.clone(),
                _ => Vec::new(),
            };
            let names: Vec<String> = listed
                .iter()
                .map(|arg| {
                    arg.trim_start_matches('<')
                        .split(['|', '>'])
                        .next()
                        .unwrap_or_default()
                        .trim_start_matches("--")
                        .to_lowercase()
                })
                .collect();
            let given = |n: &str| {
                args.iter()
                    .any(|a| a == &format!("--{n}") || a.starts_with(&format!("--{n}=")))
            };
            let name = names
                .iter()
                .find(|n| !given(n))
                .or(names.first())
                .cloned()?;
            format!("command '{}' requires <{name}> option", command?)
        }
        _ => return None,
    };
    Some(format!("error: {line}\n"))
}

fn connect_failed(e: &crate::Error) -> ExitCode {
    eprint!(
        "{}",
        CmdError::ctx("failed to connect to the hypervisor", e).render()
    );
    ExitCode::FAILURE
}

async fn dispatch(ctl: &Ctl, cmd: Command) -> CmdResult {
    use Command as C;
    match cmd {
        C::Host(HostCmd::Uri) => host::uri(ctl).await,
        C::Host(HostCmd::Version) => host::version(ctl).await,
        C::Host(HostCmd::Hostname) => host::hostname(ctl).await,
        C::Host(HostCmd::Capabilities) => host::capabilities(ctl).await,
        C::Host(HostCmd::Nodeinfo) => host::nodeinfo(ctl).await,

        C::Domain(DomainCmd::List(a)) => domain::list(ctl, &a).await,
        C::Domain(DomainCmd::Dominfo(d)) => domain::dominfo(ctl, d.get()).await,
        C::Domain(DomainCmd::Domstate { domain, reason }) => {
            domain::domstate(ctl, domain.get(), reason).await
        }
        C::Domain(DomainCmd::Domid(d)) => domain::domid(ctl, d.get()).await,
        C::Domain(DomainCmd::Domname(d)) => domain::domname(ctl, d.get()).await,
        C::Domain(DomainCmd::Domuuid(d)) => domain::domuuid(ctl, d.get()).await,
        C::Domain(DomainCmd::Define { file, validate }) => {
            domain::define(ctl, file.get(), validate).await
        }
        C::Domain(DomainCmd::Create {
            file,
            paused,
            autodestroy,
            validate,
        }) => domain::create(ctl, file.get(), paused, autodestroy, validate).await,
        C::Domain(DomainCmd::Undefine {
            domain,
            managed_save,
            snapshots_metadata,
            checkpoints_metadata,
            nvram,
            keep_nvram,
            tpm,
            keep_tpm,
        }) => {
            let req = virtmesh_proto::v1::UndefineRequest {
                domain: None,
                managed_save,
                snapshots_metadata,
                nvram,
                keep_nvram,
                checkpoints_metadata,
                tpm,
                keep_tpm,
            };
            domain::undefine(ctl, domain.get(), req).await
        }
        C::Domain(DomainCmd::Start {
            domain,
            paused,
            autodestroy,
            bypass_cache,
            force_boot,
        }) => {
            let req = virtmesh_proto::v1::CreateRequest {
                domain: None,
                start_paused: paused,
                autodestroy,
                bypass_cache,
                force_boot,
            };
            domain::start(ctl, domain.get(), req).await
        }
        C::Domain(DomainCmd::Shutdown { domain, mode }) => {
            domain::shutdown(ctl, domain.get(), mode.as_deref()).await
        }
        C::Domain(DomainCmd::Destroy { domain, graceful }) => {
            domain::destroy(ctl, domain.get(), graceful).await
        }
        C::Domain(DomainCmd::Suspend(d)) => domain::suspend(ctl, d.get()).await,
        C::Domain(DomainCmd::Resume(d)) => domain::resume(ctl, d.get()).await,
        C::Domain(DomainCmd::Reboot { domain, mode }) => {
            domain::reboot(ctl, domain.get(), mode.as_deref()).await
        }
        C::Domain(DomainCmd::Reset(d)) => domain::reset(ctl, d.get()).await,
        C::Domain(DomainCmd::Dumpxml {
            domain,
            inactive,
            security_info,
            update_cpu,
            migratable,
        }) => {
            let req = virtmesh_proto::v1::GetXmlDescRequest {
                object: None,
                inactive,
                secure: security_info,
                update_cpu,
                migratable,
            };
            domain::dumpxml(ctl, domain.get(), req).await
        }
        C::Domain(DomainCmd::Autostart { domain, disable }) => {
            domain::autostart(ctl, domain.get(), disable).await
        }
        C::Domain(DomainCmd::DomxmlToNative { format, file, xml }) => {
            let path = file.or(xml).unwrap_or_default();
            domain::domxml_to_native(ctl, &format, &path).await
        }

        C::Network(NetworkCmd::NetList(a)) => network::list(ctl, &a).await,
        C::Network(NetworkCmd::NetDefine { file, validate }) => {
            network::define(ctl, file.get(), validate, false).await
        }
        C::Network(NetworkCmd::NetCreate { file, validate }) => {
            network::define(ctl, file.get(), validate, true).await
        }
        C::Network(NetworkCmd::NetStart(n)) => network::start(ctl, n.get()).await,
        C::Network(NetworkCmd::NetDestroy(n)) => network::destroy(ctl, n.get()).await,
        C::Network(NetworkCmd::NetUndefine(n)) => network::undefine(ctl, n.get()).await,
        C::Network(NetworkCmd::NetDumpxml { network, inactive }) => {
            network::dumpxml(ctl, network.get(), inactive).await
        }
        C::Network(NetworkCmd::NetInfo(n)) => network::info(ctl, n.get()).await,
        C::Network(NetworkCmd::NetAutostart { network, disable }) => {
            network::autostart(ctl, network.get(), disable).await
        }

        C::Storage(StorageCmd::PoolList(a)) => storage::pool_list(ctl, &a).await,
        C::Storage(StorageCmd::PoolDefine { file, validate }) => {
            storage::pool_define(ctl, file.get(), validate, false).await
        }
        C::Storage(StorageCmd::PoolCreate { file, validate }) => {
            storage::pool_define(ctl, file.get(), validate, true).await
        }
        C::Storage(StorageCmd::PoolStart(p)) => storage::pool_start(ctl, p.get()).await,
        C::Storage(StorageCmd::PoolDestroy(p)) => storage::pool_destroy(ctl, p.get()).await,
        C::Storage(StorageCmd::PoolUndefine(p)) => storage::pool_undefine(ctl, p.get()).await,
        C::Storage(StorageCmd::PoolRefresh(p)) => storage::pool_refresh(ctl, p.get()).await,
        C::Storage(StorageCmd::PoolDumpxml { pool, inactive }) => {
            storage::pool_dumpxml(ctl, pool.get(), inactive).await
        }
        C::Storage(StorageCmd::PoolInfo(p)) => storage::pool_info(ctl, p.get()).await,
        C::Storage(StorageCmd::PoolAutostart { pool, disable }) => {
            storage::pool_autostart(ctl, pool.get(), disable).await
        }
        C::Storage(StorageCmd::VolList { pool, details }) => {
            storage::vol_list(ctl, pool.get(), details).await
        }
        C::Storage(StorageCmd::VolCreate {
            pool,
            file,
            prealloc_metadata,
            validate,
        }) => storage::vol_create(ctl, pool.get(), file.get(), prealloc_metadata, validate).await,
        C::Storage(StorageCmd::VolDumpxml { vol, pool }) => {
            storage::vol_dumpxml(ctl, pool.as_deref(), vol.get()).await
        }
        C::Storage(StorageCmd::VolDelete { vol, pool }) => {
            storage::vol_delete(ctl, pool.as_deref(), vol.get()).await
        }
        C::Storage(StorageCmd::VolUpload {
            vol,
            file,
            pool,
            offset,
            length,
            sparse,
        }) => {
            storage::vol_upload(
                ctl,
                pool.as_deref(),
                vol.get(),
                file.get(),
                (offset, length),
                sparse,
            )
            .await
        }
        C::Storage(StorageCmd::VolDownload {
            vol,
            file,
            pool,
            offset,
            length,
            sparse,
        }) => {
            storage::vol_download(
                ctl,
                pool.as_deref(),
                vol.get(),
                file.get(),
                (offset, length),
                sparse,
            )
            .await
        }
        C::Storage(StorageCmd::VolInfo { vol, pool }) => {
            storage::vol_info(ctl, pool.as_deref(), vol.get()).await
        }

        C::Device(DeviceCmd::IfaceList { inactive, all }) => iface::list(ctl, inactive, all).await,
        C::Device(DeviceCmd::IfaceDumpxml {
            interface,
            inactive,
        }) => iface::dumpxml(ctl, interface.get(), inactive).await,

        C::Device(DeviceCmd::NodedevList { cap, inactive, all }) => {
            nodedev::list(ctl, cap.as_deref(), inactive, all).await
        }
        C::Device(DeviceCmd::NodedevDumpxml(d)) => nodedev::dumpxml(ctl, d.get()).await,

        C::Secret(SecretCmd::SecretList {
            ephemeral,
            no_ephemeral,
            private,
            no_private,
        }) => {
            let req = virtmesh_proto::v1::ListSecretsRequest {
                ephemeral,
                no_ephemeral,
                private,
                no_private,
            };
            secret::list(ctl, req).await
        }
        C::Secret(SecretCmd::SecretDefine { file, validate }) => {
            secret::define(ctl, file.get(), validate).await
        }
        C::Secret(SecretCmd::SecretDumpxml(s)) => secret::dumpxml(ctl, s.get()).await,
        C::Secret(SecretCmd::SecretUndefine(s)) => secret::undefine(ctl, s.get()).await,
        C::Secret(SecretCmd::SecretSetValue {
            secret,
            file,
            plain,
            base64,
        }) => secret::set_value(ctl, secret.get(), file.as_deref(), plain, base64.as_deref()).await,
        C::Secret(SecretCmd::SecretGetValue { secret, plain }) => {
            secret::get_value(ctl, secret.get(), plain).await
        }

        C::Secret(SecretCmd::NwfilterList) => nwfilter::list(ctl).await,
        C::Secret(SecretCmd::NwfilterDefine { file, validate }) => {
            nwfilter::define(ctl, file.get(), validate).await
        }
        C::Secret(SecretCmd::NwfilterUndefine(f)) => nwfilter::undefine(ctl, f.get()).await,
        C::Secret(SecretCmd::NwfilterDumpxml(f)) => nwfilter::dumpxml(ctl, f.get()).await,
        C::Secret(SecretCmd::NwfilterBindingList) => nwfilter::binding_list(ctl).await,

        C::Event(EventCmd::Event(a)) => event::event(ctl, &a).await,

        C::Snapshot(SnapshotCmd::SnapshotCreateAs {
            domain,
            name,
            name_opt,
            description,
            description_opt,
            print_xml,
            flags,
        }) => {
            let name = name.or(name_opt);
            let description = description.or(description_opt);
            let f = snapshot::CreateFlags {
                no_metadata: flags.no_metadata,
                halt: flags.halt,
                disk_only: flags.disk_only,
                atomic: flags.atomic,
                ..Default::default()
            };
            snapshot::create_as(
                ctl,
                domain.get(),
                name.as_deref(),
                description.as_deref(),
                print_xml,
                f,
            )
            .await
        }
        C::Snapshot(SnapshotCmd::SnapshotCreate {
            domain,
            xmlfile,
            redefine,
            current,
            flags,
        }) => {
            let f = snapshot::CreateFlags {
                redefine,
                current,
                no_metadata: flags.no_metadata,
                halt: flags.halt,
                disk_only: flags.disk_only,
                atomic: flags.atomic,
            };
            snapshot::create_from(ctl, domain.get(), xmlfile.as_deref(), f).await
        }
        C::Snapshot(SnapshotCmd::SnapshotList {
            domain,
            parent,
            roots,
            leaves,
            no_leaves,
            metadata,
            no_metadata,
            inactive,
            active,
            disk_only,
            topological,
            name,
        }) => {
            let req = virtmesh_proto::v1::SnapshotListRequest {
                domain: None,
                roots,
                leaves,
                no_leaves,
                metadata,
                no_metadata,
                active,
                inactive,
                disk_only,
                topological,
            };
            snapshot::list(ctl, domain.get(), req, parent, name).await
        }
        C::Snapshot(SnapshotCmd::SnapshotCurrent { domain, name }) => {
            snapshot::current(ctl, domain.get(), name).await
        }
        C::Snapshot(SnapshotCmd::SnapshotDumpxml { domain, snapshot }) => {
            snapshot::dumpxml(ctl, domain.get(), snapshot.get()).await
        }
        C::Snapshot(SnapshotCmd::SnapshotRevert {
            domain,
            snapshotname,
            current,
        }) => {
            if snapshotname.is_none() && !current {
                return Err(CmdError::msg("--snapshotname or --current is required"));
            }
            snapshot::revert(ctl, domain.get(), snapshotname.as_deref()).await
        }
        C::Snapshot(SnapshotCmd::SnapshotDelete {
            domain,
            snapshotname,
            current,
            children,
            children_only,
            metadata,
        }) => {
            if snapshotname.is_none() && !current {
                return Err(CmdError::msg("--snapshotname or --current is required"));
            }
            snapshot::delete(
                ctl,
                domain.get(),
                snapshotname.as_deref(),
                children,
                children_only,
                metadata,
            )
            .await
        }

        C::Device(DeviceCmd::IfaceDefine { file, validate }) => {
            iface::define(ctl, file.get(), validate).await
        }
        C::Device(DeviceCmd::IfaceUndefine(i)) => {
            iface::lifecycle(ctl, i.get(), iface::Op::Undefine).await
        }
        C::Device(DeviceCmd::IfaceStart(i)) => {
            iface::lifecycle(ctl, i.get(), iface::Op::Start).await
        }
        C::Device(DeviceCmd::IfaceDestroy(i)) => {
            iface::lifecycle(ctl, i.get(), iface::Op::Destroy).await
        }
        C::Device(DeviceCmd::IfaceMac(i)) => iface::mac_or_name(ctl, i.get(), true).await,
        C::Device(DeviceCmd::IfaceName(i)) => iface::mac_or_name(ctl, i.get(), false).await,
        C::Device(DeviceCmd::IfaceBegin) => iface::transaction(ctl, iface::Txn::Begin).await,
        C::Device(DeviceCmd::IfaceCommit) => iface::transaction(ctl, iface::Txn::Commit).await,
        C::Device(DeviceCmd::IfaceRollback) => iface::transaction(ctl, iface::Txn::Rollback).await,

        C::Device(DeviceCmd::NodedevCreate { file, validate }) => {
            nodedev::create(ctl, file.get(), validate, false).await
        }
        C::Device(DeviceCmd::NodedevDefine { file, validate }) => {
            nodedev::create(ctl, file.get(), validate, true).await
        }
        C::Device(DeviceCmd::NodedevDestroy(d)) => {
            nodedev::op(ctl, d.get(), nodedev::Op::Destroy).await
        }
        C::Device(DeviceCmd::NodedevUndefine(d)) => {
            nodedev::op(ctl, d.get(), nodedev::Op::Undefine).await
        }
        C::Device(DeviceCmd::NodedevStart(d)) => {
            nodedev::op(ctl, d.get(), nodedev::Op::Start).await
        }
        C::Device(DeviceCmd::NodedevAutostart { device, disable }) => {
            nodedev::autostart(ctl, device.get(), disable).await
        }
        C::Device(DeviceCmd::NodedevInfo(d)) => nodedev::info(ctl, d.get()).await,
        C::Device(DeviceCmd::NodedevDetach(d)) => {
            nodedev::op(ctl, d.get(), nodedev::Op::Detach).await
        }
        C::Device(DeviceCmd::NodedevReattach(d)) => {
            nodedev::op(ctl, d.get(), nodedev::Op::Reattach).await
        }
        C::Device(DeviceCmd::NodedevReset(d)) => {
            nodedev::op(ctl, d.get(), nodedev::Op::Reset).await
        }

        C::Secret(SecretCmd::NwfilterBindingCreate { file, validate }) => {
            nwfilter::binding_create(ctl, file.get(), validate).await
        }
        C::Secret(SecretCmd::NwfilterBindingDelete(b)) => {
            nwfilter::binding_delete(ctl, b.get()).await
        }
        C::Secret(SecretCmd::NwfilterBindingDumpxml(b)) => {
            nwfilter::binding_dumpxml(ctl, b.get()).await
        }

        C::Domain(DomainCmd::Desc {
            domain,
            title,
            new_desc,
            words,
            impact,
        }) => {
            let imp = domextra::impact(impact.config, impact.live, impact.current)?;
            let text = new_desc.or_else(|| (!words.is_empty()).then(|| words.join(" ")));
            domextra::desc(ctl, domain.get(), title, text.as_deref(), imp).await
        }
        C::Event(EventCmd::NetEvent(a)) => {
            event::family_event(ctl, event::Family::Network, &a.into()).await
        }
        C::Event(EventCmd::PoolEvent(a)) => {
            event::family_event(ctl, event::Family::Pool, &a.into()).await
        }
        C::Event(EventCmd::NodedevEvent(a)) => {
            event::family_event(ctl, event::Family::NodeDevice, &a.into()).await
        }
        C::Event(EventCmd::SecretEvent(a)) => {
            event::family_event(ctl, event::Family::Secret, &a.into()).await
        }

        C::Host(HostCmd::Sysinfo) => host::sysinfo(ctl).await,
        C::Host(HostCmd::Maxvcpus { r#type }) => host::maxvcpus(ctl, r#type.as_deref()).await,
        C::Host(HostCmd::Domcapabilities {
            virttype,
            emulator,
            arch,
            machine,
        }) => {
            let req = virtmesh_proto::v1::DomainCapabilitiesRequest {
                emulator: emulator.unwrap_or_default(),
                arch: arch.unwrap_or_default(),
                machine: machine.unwrap_or_default(),
                virt_type: virttype.unwrap_or_default(),
            };
            host::domcapabilities(ctl, req).await
        }
        C::Host(HostCmd::CpuModels { arch }) => host::cpu_models(ctl, &arch).await,
        C::Host(HostCmd::CpuCompare { file, error }) => {
            host::cpu_compare(ctl, file.get(), error).await
        }
        C::Host(HostCmd::CpuBaseline {
            file,
            features,
            migratable,
        }) => host::cpu_baseline(ctl, file.get(), features, migratable).await,
        C::Host(HostCmd::Freecell) => host::freecell(ctl).await,
        C::Host(HostCmd::DomxmlFromNative { format, config }) => {
            host::domxml_from_native(ctl, &format, &config).await
        }
        C::Domain(DomainCmd::Setmem {
            domain,
            size,
            impact,
        }) => {
            let imp = domextra::impact(impact.config, impact.live, impact.current)?;
            domextra::setmem(ctl, domain.get(), size.get(), imp).await
        }
        C::Domain(DomainCmd::Setvcpus {
            domain,
            count,
            maximum,
            guest,
            impact,
        }) => {
            let imp = domextra::impact(impact.config, impact.live, impact.current)?;
            let count = count.get().parse::<u32>().map_err(|_| {
                CmdError::msg(format!(
                    "Numeric value '{}' for <count> option is malformed or out of range",
                    count.get()
                ))
            })?;
            domextra::setvcpus(ctl, domain.get(), count, imp, maximum, guest).await
        }
        C::Domain(DomainCmd::AttachDevice {
            domain,
            file,
            persistent,
            impact,
        }) => {
            let imp = devices::DevImpact {
                args: impact,
                persistent,
            };
            domextra::device(ctl, domain.get(), file.get(), imp, true).await
        }
        C::Domain(DomainCmd::DetachDevice {
            domain,
            file,
            persistent,
            impact,
        }) => {
            let imp = devices::DevImpact {
                args: impact,
                persistent,
            };
            domextra::device(ctl, domain.get(), file.get(), imp, false).await
        }
        C::Domain(DomainCmd::UpdateDevice {
            domain,
            file,
            persistent,
            impact,
            force,
        }) => {
            let imp = devices::DevImpact {
                args: impact,
                persistent,
            };
            update::update_device(ctl, domain.get(), file.get(), imp, force).await
        }
        C::Domain(DomainCmd::ChangeMedia(a)) => {
            let action = update::MediaAction::from_flags(a.eject, a.insert, a.update)?;
            let m = update::ChangeMedia {
                path: a.path.get(),
                source: a.source_pos.as_deref().or(a.source.as_deref()),
                action,
                force: a.force,
                print_xml: a.print_xml,
                block: a.block,
            };
            let imp = devices::DevImpact {
                args: a.impact,
                persistent: false,
            };
            update::change_media(ctl, a.domain.get(), m, imp).await
        }
        C::Domain(DomainCmd::Save {
            domain,
            file,
            running,
            paused,
        }) => update::save(ctl, domain.get(), file.get(), running, paused).await,
        C::Domain(DomainCmd::Restore {
            file,
            running,
            paused,
        }) => update::restore(ctl, file.get(), running, paused).await,
        C::Domain(DomainCmd::DomifGetlink {
            domain,
            interface,
            config,
        }) => update::domif_getlink(ctl, domain.get(), interface.get(), config).await,
        C::Domain(DomainCmd::Domiftune {
            domain,
            interface,
            inbound,
            outbound,
            impact,
        }) => {
            let imp = domextra::impact(impact.config, impact.live, impact.current)?;
            update::domiftune(
                ctl,
                domain.get(),
                interface.get(),
                inbound.as_deref(),
                outbound.as_deref(),
                imp,
            )
            .await
        }
        C::Domain(DomainCmd::DomifSetlink {
            domain,
            interface,
            state,
            config,
        }) => update::domif_setlink(ctl, domain.get(), interface.get(), state.get(), config).await,
        C::Domain(DomainCmd::AttachDisk(a)) => {
            let imp = devices::DevImpact {
                args: a.impact,
                persistent: a.persistent,
            };
            imp.check()?;
            let xml = devices::disk_xml(&a)?;
            devices::attach_built(ctl, a.domain.get(), xml, imp, a.print_xml, "Disk").await
        }
        C::Domain(DomainCmd::AttachInterface(a)) => {
            let imp = devices::DevImpact {
                args: a.impact,
                persistent: a.persistent,
            };
            imp.check()?;
            let xml = devices::interface_xml(&a)?;
            devices::attach_built(ctl, a.domain.get(), xml, imp, a.print_xml, "Interface").await
        }
        C::Domain(DomainCmd::DetachInterface {
            domain,
            r#type,
            mac,
            persistent,
            impact,
            print_xml,
        }) => {
            let imp = devices::DevImpact {
                args: impact,
                persistent,
            };
            devices::detach_interface(
                ctl,
                domain.get(),
                r#type.get(),
                mac.as_deref(),
                imp,
                print_xml,
            )
            .await
        }
        C::Domain(DomainCmd::DetachDisk {
            domain,
            target,
            persistent,
            impact,
            print_xml,
        }) => {
            let imp = devices::DevImpact {
                args: impact,
                persistent,
            };
            devices::detach_disk(ctl, domain.get(), target.get(), imp, print_xml).await
        }
        C::Domain(DomainCmd::Domblkstat { domain, device }) => {
            domextra::domblkstat(ctl, domain.get(), device.get()).await
        }
        C::Domain(DomainCmd::Domifstat { domain, interface }) => {
            domextra::domifstat(ctl, domain.get(), interface.get()).await
        }
        C::Domain(DomainCmd::Domstats(a)) => {
            let filter = virtmesh_proto::v1::ListDomainsRequest {
                filter: Some(virtmesh_proto::v1::ListFilter {
                    active: a.list_active,
                    inactive: a.list_inactive,
                    persistent: a.list_persistent,
                    transient: a.list_transient,
                    ..Default::default()
                }),
                running: a.list_running,
                paused: a.list_paused,
                shutoff: a.list_shutoff,
                other: a.list_other,
                ..Default::default()
            };
            domextra::domstats(ctl, &a.domains, a.groups(), filter).await
        }
        C::Domain(DomainCmd::Domblklist {
            domain,
            inactive,
            details,
        }) => domextra::domblklist(ctl, domain.get(), inactive, details).await,
        C::Domain(DomainCmd::Domiflist { domain, inactive }) => {
            domextra::domiflist(ctl, domain.get(), inactive).await
        }
        C::Domain(DomainCmd::Console {
            domain,
            devname,
            force,
        }) => console::console(ctl, domain.get(), devname.as_deref(), force).await,
        C::Domain(DomainCmd::Managedsave(d)) => domain::managedsave(ctl, d.get()).await,
        C::Domain(DomainCmd::ManagedsaveRemove(d)) => {
            domain::managedsave_remove(ctl, d.get()).await
        }
        C::Domain(DomainCmd::Dommemstat(d)) => domextra::dommemstat(ctl, d.get()).await,
        C::Domain(DomainCmd::Domifaddr {
            domain,
            interface,
            full,
            source,
        }) => {
            domextra::domifaddr(
                ctl,
                domain.get(),
                interface.as_deref(),
                full,
                source.as_deref(),
            )
            .await
        }
        C::Network(NetworkCmd::NetDhcpLeases { network, mac }) => {
            network::dhcp_leases(ctl, network.get(), mac.as_deref()).await
        }
        C::Network(NetworkCmd::NetPortList {
            network,
            uuid,
            table,
        }) => network::port_list(ctl, network.get(), uuid, table).await,
        C::Network(NetworkCmd::NetPortCreate {
            network,
            file,
            validate,
        }) => network::port_create(ctl, network.get(), file.get(), validate).await,
        C::Network(NetworkCmd::NetPortDumpxml { network, port }) => {
            network::port_dumpxml(ctl, network.get(), port.get()).await
        }
        C::Network(NetworkCmd::NetPortDelete { network, port }) => {
            network::port_delete(ctl, network.get(), port.get()).await
        }
        C::Network(NetworkCmd::NetUuid(n)) => network::uuid(ctl, n.get()).await,
        C::Network(NetworkCmd::NetName(n)) => network::name(ctl, n.get()).await,
        C::Storage(StorageCmd::PoolUuid(p)) => storage::pool_uuid(ctl, p.get()).await,
        C::Storage(StorageCmd::PoolName(p)) => storage::pool_name(ctl, p.get()).await,
        C::Storage(StorageCmd::PoolBuild(p)) => storage::pool_build(ctl, p.get()).await,
        C::Storage(StorageCmd::PoolDelete(p)) => storage::pool_delete(ctl, p.get()).await,
        C::Storage(StorageCmd::VolPath { vol, pool }) => {
            storage::vol_field(ctl, pool.as_deref(), vol.get(), storage::VolField::Path).await
        }
        C::Storage(StorageCmd::VolName(v)) => {
            storage::vol_field(ctl, None, v.get(), storage::VolField::Name).await
        }
        C::Storage(StorageCmd::VolKey { vol, pool }) => {
            storage::vol_field(ctl, pool.as_deref(), vol.get(), storage::VolField::Key).await
        }
        C::Storage(StorageCmd::VolPool { vol, uuid }) => {
            storage::vol_pool(ctl, vol.get(), uuid).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage_error(args: &[&str]) -> Option<String> {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let e = Cli::try_parse_from(&args).err()?;
        usage_error_text(&e, &args)
    }

    #[test]
    fn usage_errors_are_worded_like_virsh() {
        assert_eq!(
            usage_error(&["vsh", "nonexist"]).as_deref(),
            Some("error: unknown command: 'nonexist'\n")
        );
        assert_eq!(
            usage_error(&["vsh", "list", "--foo"]).as_deref(),
            Some("error: command 'list' doesn't support option --foo\n")
        );
        assert_eq!(
            usage_error(&["vsh", "start"]).as_deref(),
            Some("error: command 'start' requires <domain> option\n")
        );
        assert_eq!(
            usage_error(&["vsh", "uri", "x"]).as_deref(),
            Some("error: unexpected data 'x'\n")
        );
        assert_eq!(
            usage_error(&["vsh", "list", "--table", "--name"]).as_deref(),
            Some("error: Options --table and --name are mutually exclusive\n")
        );
        assert_eq!(
            usage_error(&[
                "vsh",
                "secret-set-value",
                "x",
                "--file",
                "f",
                "--base64",
                "b"
            ])
            .as_deref(),
            Some("error: Options --file and --base64 are mutually exclusive\n")
        );
        assert_eq!(
            usage_error(&["vsh", "vol-create", "default-pool"]).as_deref(),
            Some("error: command 'vol-create' requires <file> option\n")
        );
        // An earlier argument given by name is not the missing one.
        assert_eq!(
            usage_error(&["vsh", "vol-create", "--pool", "default-pool"]).as_deref(),
            Some("error: command 'vol-create' requires <file> option\n")
        );
        assert_eq!(
            usage_error(&["vsh", "attach-disk", "vm", "--source", "/x"]).as_deref(),
            Some("error: command 'attach-disk' requires <target> option\n")
        );
        assert_eq!(
            usage_error(&["vsh", "attach-interface", "vm", "--type", "user"]).as_deref(),
            Some("error: command 'attach-interface' requires <source> option\n")
        );
    }

    #[test]
    fn uri_precedence() {
        let env = |k: &str| match k {
            "VIRTMESH_DEFAULT_URI" => Some("qemu:///system".to_owned()),
            "LIBVIRT_DEFAULT_URI" => Some("test:///default".to_owned()),
            _ => None,
        };
        assert_eq!(
            default_uri(Some("lxc:///".into()), env).as_deref(),
            Some("lxc:///")
        );
        assert_eq!(default_uri(None, env).as_deref(), Some("qemu:///system"));
        let only_libvirt =
            |k: &str| (k == "LIBVIRT_DEFAULT_URI").then(|| "test:///default".to_owned());
        assert_eq!(
            default_uri(None, only_libvirt).as_deref(),
            Some("test:///default")
        );
        assert_eq!(default_uri(None, |_| None), None);
        let empty_virtmesh = |k: &str| match k {
            "VIRTMESH_DEFAULT_URI" => Some(String::new()),
            _ => Some("test:///default".to_owned()),
        };
        assert_eq!(
            default_uri(None, empty_virtmesh).as_deref(),
            Some("test:///default")
        );
    }

    #[test]
    fn errors_render_as_virsh_prints_them() {
        let e = CmdError::ctx(
            "failed to get network 'nosuch'",
            "Network not found: no network with matching name 'nosuch'",
        );
        assert_eq!(
            e.render(),
            "error: failed to get network 'nosuch'\nerror: Network not found: no network with matching name 'nosuch'\n"
        );
        assert_eq!(CmdError::silent().render(), "");
    }
}
