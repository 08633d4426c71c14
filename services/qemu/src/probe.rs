//! What the installed QEMU can do, asked of QEMU itself (as libvirt's
//! qemu capabilities cache does): machine types with their aliases and
//! CPU limits, CPU models, KVM. One short-lived `-machine none` process
//! per emulator, cached by the driver.

use crate::process;
use crate::qmp::{Command, Qmp, QmpError, Quit};
use serde::{Deserialize, Serialize};
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

/// Run `emulator -machine none` with QMP in `dir` and ask it.
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
    let id = uuid::Uuid::new_v4().simple().to_string();
    let monitor = dir.join(format!("probe-{id}.qmp"));
    let log = dir.join(format!("probe-{id}.log"));
    let args: Vec<String> = [
        "-S",
        "-no-user-config",
        "-nodefaults",
        "-display",
        "none",
        "-machine",
        "none",
        "-accel",
        "tcg",
        "-chardev",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([
        format!(
            "socket,id=charmonitor,path={},server=on,wait=off",
            monitor.display()
        ),
        "-mon".to_owned(),
        "chardev=charmonitor,id=monitor,mode=control".to_owned(),
    ])
    .collect();
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
        let machines = qmp.execute(QueryMachines {}).await?;
        let cpu_models = qmp.execute(QueryCpuDefinitions {}).await?;
        let kvm = qmp.execute(QueryKvm {}).await?;
        let _ = qmp.execute(Quit {}).await;
        Ok::<_, QmpError>(QemuCaps {
            emulator: emulator.to_path_buf(),
            machines,
            cpu_models,
            kvm: kvm.present && Path::new("/dev/kvm").exists(),
        })
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
        }
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
