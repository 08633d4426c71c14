//! What the installed QEMU can do, asked of QEMU itself (as libvirt's
//! qemu capabilities cache does): machine types with their aliases and
//! CPU limits, CPU models, KVM. One short-lived `-machine none` process
//! per emulator, cached by the driver.

use crate::process;
use crate::qmp::{Command, Qmp, QmpError, Quit};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// libvirt's wording for an emulator that is not there.
    #[error("Cannot check QEMU binary {emulator}: {reason}")]
    Missing { emulator: String, reason: String },
    #[error("cannot probe {emulator}: {source}")]
    Spawn {
        emulator: String,
        source: process::ProcessError,
    },
    #[error("cannot probe {emulator}: {source}")]
    Qmp { emulator: String, source: QmpError },
}

/// One machine type of `query-machines`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct MachineInfo {
    pub name: String,
    #[serde(default)]
    pub alias: Option<String>,
    #[serde(rename = "cpu-max")]
    pub cpu_max: u32,
    #[serde(default, rename = "is-default")]
    pub is_default: bool,
    #[serde(default)]
    pub deprecated: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CpuDefinition {
    pub name: String,
    #[serde(default)]
    pub deprecated: bool,
    /// The features this accelerator cannot give the model (QEMU's
    /// names); empty means usable.
    #[serde(default, rename = "unavailable-features")]
    pub unavailable_features: Vec<String>,
    /// The versioned model an unversioned name stands for.
    #[serde(default, rename = "alias-of")]
    pub alias_of: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct KvmInfo {
    pub enabled: bool,
    pub present: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct QueryMachines {}
impl Command for QueryMachines {
    const NAME: &'static str = "query-machines";
    type Output = Vec<MachineInfo>;
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct QueryCpuDefinitions {}
impl Command for QueryCpuDefinitions {
    const NAME: &'static str = "query-cpu-definitions";
    type Output = Vec<CpuDefinition>;
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct QueryKvm {}
impl Command for QueryKvm {
    const NAME: &'static str = "query-kvm";
    type Output = KvmInfo;
}

/// The probed capabilities of one emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuCaps {
    pub emulator: PathBuf,
    pub machines: Vec<MachineInfo>,
    pub cpu_models: Vec<CpuDefinition>,
    pub kvm: bool,
    /// What domain capabilities are derived from (see `Features`).
    pub features: Features,
}

/// The rest of what libvirt's capability probing asks QEMU: the QOM
/// types (devices and backends), names in the QMP schema (commands and
/// enum values), CPU models as KVM sees them, and KVM's vCPU limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// `qom-list-types`.
    pub types: BTreeSet<String>,
    /// Every command name and enum value of `query-qmp-schema`.
    pub schema_names: BTreeSet<String>,
    /// Properties of the x86 CPU object (`qom-list-properties` of `max`).
    pub cpu_props: BTreeSet<String>,
    /// `-run-with` accepts `async-teardown` (`query-command-line-options`).
    pub async_teardown: bool,
    /// `query-cpu-definitions` of a `-accel kvm` process (usable under
    /// KVM); empty without KVM.
    pub kvm_cpu_models: Vec<CpuDefinition>,
    /// KVM_CAP_MAX_VCPUS, as QEMU reports it when asked for more.
    pub kvm_max_vcpus: Option<u32>,
    /// `query-sev-capabilities` / `query-sgx-capabilities` answered.
    pub sev: bool,
    pub sgx: bool,
}

impl Features {
    pub fn has_type(&self, t: &str) -> bool {
        self.types.contains(t)
    }
    pub fn in_schema(&self, name: &str) -> bool {
        self.schema_names.contains(name)
    }
}

impl QemuCaps {
    /// The machine a definition's `machine` attribute means: an alias
    /// resolved, none given the default machine.
    pub fn canonical_machine(&self, given: Option<&str>) -> Option<&MachineInfo> {
        match given.filter(|g| !g.is_empty()) {
            None => self.machines.iter().find(|m| m.is_default),
            Some(g) => self
                .machines
                .iter()
                .find(|m| m.name == g)
                .or_else(|| self.machines.iter().find(|m| m.alias.as_deref() == Some(g))),
        }
    }
}

/// Run `emulator -machine none` with QMP in `dir` and ask it; with KVM,
/// ask a second `-accel kvm` process for the CPU models KVM can run.
pub async fn probe(emulator: &Path, dir: &Path) -> Result<QemuCaps, ProbeError> {
    let name = emulator.display().to_string();
    if let Err(e) = std::fs::metadata(emulator) {
        return Err(ProbeError::Missing {
            emulator: name,
            reason: match e.kind() {
                std::io::ErrorKind::NotFound => "No such file or directory".to_owned(),
                _ => e.to_string(),
            },
        });
    }
    let mut caps = with_monitor(emulator, dir, "tcg", |qmp| {
        Box::pin(async move {
            let machines = qmp.execute(QueryMachines {}).await?;
            let cpu_models = qmp.execute(QueryCpuDefinitions {}).await?;
            let kvm = qmp.execute(QueryKvm {}).await?;
            let mut features = Features {
                types: names_of(
                    &qmp.execute_raw("qom-list-types", serde_json::json!({}))
                        .await?,
                ),
                schema_names: schema_names(
                    &qmp.execute_raw("query-qmp-schema", serde_json::json!({}))
                        .await?,
                ),
                ..Features::default()
            };
            // The x86 CPU class of this binary (x86_64 or i386).
            for typename in ["max-x86_64-cpu", "max-i386-cpu"] {
                if features.types.contains(typename) {
                    features.cpu_props = names_of(
                        &qmp.execute_raw(
                            "qom-list-properties",
                            serde_json::json!({ "typename": typename }),
                        )
                        .await
                        .unwrap_or_default(),
                    );
                }
            }
            let opts = qmp
                .execute_raw(
                    "query-command-line-options",
                    serde_json::json!({"option": "run-with"}),
                )
                .await
                .unwrap_or_default();
            features.async_teardown = opts.to_string().contains("\"async-teardown\"");
            Ok(QemuCaps {
                emulator: PathBuf::new(),
                machines,
                cpu_models,
                kvm: kvm.present,
                features,
            })
        })
    })
    .await?;
    caps.emulator = emulator.to_path_buf();
    caps.kvm = caps.kvm && Path::new("/dev/kvm").exists();
    if caps.kvm {
        let kvm = with_monitor(emulator, dir, "kvm", |qmp| {
            Box::pin(async move {
                let models = qmp.execute(QueryCpuDefinitions {}).await?;
                let sev = qmp
                    .execute_raw("query-sev-capabilities", serde_json::json!({}))
                    .await
                    .is_ok();
                let sgx = qmp
                    .execute_raw("query-sgx-capabilities", serde_json::json!({}))
                    .await
                    .is_ok();
                Ok((models, sev, sgx))
            })
        })
        .await;
        // Only domain capabilities need this: a KVM that QEMU cannot use
        // leaves the KVM CPU models empty rather than failing every define.
        match kvm {
            Ok(k) => {
                (
                    caps.features.kvm_cpu_models,
                    caps.features.sev,
                    caps.features.sgx,
                ) = k
            }
            Err(e) => tracing::warn!("KVM probe of {}: {e}", emulator.display()),
        }
        caps.features.kvm_max_vcpus = kvm_max_vcpus(emulator, &caps.machines).await;
    }
    Ok(caps)
}

type Probed<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, QmpError>> + Send + 'a>>;

/// One `-machine none` QEMU with the given accelerator, asked by `ask`
/// and always killed afterwards.
async fn with_monitor<T>(
    emulator: &Path,
    dir: &Path,
    accel: &str,
    ask: impl for<'a> FnOnce(&'a Qmp) -> Probed<'a, T>,
) -> Result<T, ProbeError> {
    let name = emulator.display().to_string();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let monitor = dir.join(format!("probe-{id}.qmp"));
    let log = dir.join(format!("probe-{id}.log"));
    let mut args: Vec<String> = [
        "-S",
        "-no-user-config",
        "-nodefaults",
        "-display",
        "none",
        "-machine",
        "none",
        "-accel",
        accel,
        "-chardev",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend([
        format!(
            "socket,id=charmonitor,path={},server=on,wait=off",
            monitor.display()
        ),
        "-mon".to_owned(),
        "chardev=charmonitor,id=monitor,mode=control".to_owned(),
    ]);
    let spawned = process::spawn(emulator, &args, &log, &monitor)
        .await
        .map_err(|source| ProbeError::Spawn {
            emulator: name.clone(),
            source,
        })?;
    let pid = spawned.pid;
    let result = async {
        let qmp = Qmp::from_stream(spawned.monitor, Box::new(|_| {})).await?;
        qmp.execute(crate::qmp::QmpCapabilities {}).await?;
        let out = ask(&qmp).await?;
        let _ = qmp.execute(Quit {}).await;
        Ok::<_, QmpError>(out)
    }
    .await;
    // Whatever happened, the probe process does not outlive the probe.
    let _ = process::signal(pid, nix::sys::signal::Signal::SIGKILL);
    for p in [&monitor, &log] {
        let _ = std::fs::remove_file(p);
    }
    result.map_err(|source| ProbeError::Qmp {
        emulator: name,
        source,
    })
}

/// The `name` of every object in a QMP list reply.
fn names_of(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("name").and_then(|n| n.as_str()).map(str::to_owned))
        .collect()
}

/// Command names and enum values of `query-qmp-schema` (type names are
/// masked by QEMU, values are not): enough to tell whether a command, a
/// display type or a chardev/netdev backend exists.
fn schema_names(v: &serde_json::Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in v.as_array().into_iter().flatten() {
        match e.get("meta-type").and_then(|m| m.as_str()) {
            Some("command") => {
                if let Some(n) = e.get("name").and_then(|n| n.as_str()) {
                    out.insert(n.to_owned());
                }
            }
            Some("enum") => {
                for m in e
                    .get("members")
                    .and_then(|m| m.as_array())
                    .into_iter()
                    .flatten()
                {
                    if let Some(n) = m.get("name").and_then(|n| n.as_str()) {
                        out.insert(n.to_owned());
                    }
                }
                for n in e
                    .get("values")
                    .and_then(|m| m.as_array())
                    .into_iter()
                    .flatten()
                {
                    if let Some(n) = n.as_str() {
                        out.insert(n.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// KVM_CAP_MAX_VCPUS without an ioctl: QEMU checks a machine's vCPU
/// count against it at `-accel kvm` init and names the limit when asked
/// for more ("… exceeds the maximum cpus supported by KVM (N)").
async fn kvm_max_vcpus(emulator: &Path, machines: &[MachineInfo]) -> Option<u32> {
    let big = machines.iter().max_by_key(|m| m.cpu_max)?;
    let mut cmd = tokio::process::Command::new(emulator);
    cmd.args([
        "-no-user-config",
        "-nodefaults",
        "-display",
        "none",
        "-S",
        "-accel",
        "kvm",
        "-machine",
    ])
    .arg(&big.name)
    .arg("-smp")
    .arg(format!("1,maxcpus={}", big.cpu_max))
    // When KVM allows that many, QEMU gets past accelerator init and must
    // still exit at once: a kernel that cannot exist does it.
    .args(["-kernel", "/nonexistent/virtmesh-kvm-limit-probe"])
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let child = process::spawn_locked(&mut cmd).ok()?;
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait_with_output())
        .await
        .ok()?
        .ok()?;
    parse_kvm_limit(&String::from_utf8_lossy(&out.stderr)).or(Some(big.cpu_max))
}

fn parse_kvm_limit(stderr: &str) -> Option<u32> {
    let line = stderr
        .lines()
        .find(|l| l.contains("maximum cpus supported by KVM ("))?;
    let tail = &line[line.rfind('(')? + 1..];
    tail.split(')').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> QemuCaps {
        let m = |name: &str, alias: Option<&str>, default: bool| MachineInfo {
            name: name.into(),
            alias: alias.map(Into::into),
            cpu_max: 4096,
            is_default: default,
            deprecated: false,
        };
        QemuCaps {
            emulator: "/usr/bin/qemu-system-x86_64".into(),
            machines: vec![
                m("pc-q35-10.0", Some("q35"), false),
                m("pc-i440fx-10.0", Some("pc"), true),
                m("pc-q35-8.2", None, false),
            ],
            cpu_models: Vec::new(),
            kvm: true,
            features: Features::default(),
        }
    }

    #[test]
    fn kvm_limit_is_read_from_qemus_complaint() {
        let e = "qemu-system-x86_64: -accel kvm: warning: Number of hotpluggable cpus requested (4096) exceeds the recommended cpus supported by KVM (2)\n\
                 qemu-system-x86_64: -accel kvm: Number of hotpluggable cpus requested (4096) exceeds the maximum cpus supported by KVM (1024)\n";
        assert_eq!(parse_kvm_limit(e), Some(1024));
        assert_eq!(parse_kvm_limit("no complaint"), None);
    }

    #[test]
    fn machines_resolve_by_name_alias_or_default() {
        let c = caps();
        let name = |g: Option<&str>| c.canonical_machine(g).map(|m| m.name.clone());
        assert_eq!(name(Some("q35")).as_deref(), Some("pc-q35-10.0"));
        assert_eq!(name(Some("pc-q35-8.2")).as_deref(), Some("pc-q35-8.2"));
        assert_eq!(name(None).as_deref(), Some("pc-i440fx-10.0"));
        assert_eq!(name(Some("bogus")), None);
    }

    #[test]
    fn query_machines_reply_parses() {
        let v = serde_json::json!([
            {"name": "pc-q35-10.0", "alias": "q35", "cpu-max": 4096, "hotpluggable-cpus": true, "deprecated": false, "numa-mem-supported": false, "default-ram-id": "pc.ram", "acpi": true},
            {"name": "none", "cpu-max": 1, "hotpluggable-cpus": false, "deprecated": false, "numa-mem-supported": false, "acpi": false}
        ]);
        let m: Vec<MachineInfo> = serde_json::from_value(v).expect("parses");
        assert_eq!(m[0].alias.as_deref(), Some("q35"));
        assert!(!m[1].is_default);
    }

    #[tokio::test]
    async fn missing_emulator_is_libvirts_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = probe(Path::new("/usr/bin/qemu-system-nonexistent"), dir.path())
            .await
            .expect_err("missing");
        assert_eq!(
            e.to_string(),
            "Cannot check QEMU binary /usr/bin/qemu-system-nonexistent: No such file or directory"
        );
    }
}
