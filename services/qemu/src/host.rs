//! The Host service for qemu URIs: capabilities from the probed emulator
//! and the host, CPU model names, free memory. Domain capabilities and CPU
//! comparison belong to later phases (and to the cpu service).

use crate::connect::node_info;
use crate::domcaps;
use crate::driver::QemuDriver;
use crate::error::unimplemented;
use crate::probe::QemuCaps;
use tonic::{Request, Response, Status};
use virtmesh_conf::Element;
use virtmesh_proto::v1::{self as pb, host_server::Host};
use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

#[derive(Debug, Clone)]
pub struct HostService {
    driver: QemuDriver,
}

impl HostService {
    pub fn new(driver: QemuDriver) -> Self {
        HostService { driver }
    }
}

/// The host's UUID as libvirt reports it: SMBIOS, else the machine id.
fn host_uuid() -> String {
    if let Ok(u) = std::fs::read_to_string("/sys/class/dmi/id/product_uuid") {
        let u = u.trim().to_ascii_lowercase();
        if uuid::Uuid::parse_str(&u).is_ok() {
            return u;
        }
    }
    std::fs::read_to_string("/etc/machine-id")
        .ok()
        .and_then(|m| uuid::Uuid::parse_str(m.trim()).ok())
        .map(|u| u.to_string())
        .unwrap_or_default()
}

/// libvirt's capabilities document, for the parts phase 1 knows: host
/// UUID, arch and topology; the x86_64 guest with every machine type (the
/// default first, each alias after its machine) and the domain types.
pub fn capabilities_xml(caps: &QemuCaps, node: &pb::NodeInfo, uuid: &str) -> String {
    let topology = Element::new("topology")
        .with_attr("sockets", node.sockets.to_string())
        .with_attr("dies", "1")
        .with_attr("clusters", "1")
        .with_attr("cores", node.cores.to_string())
        .with_attr("threads", node.threads.to_string());
    let host = Element::new("host")
        .with_child(Element::new("uuid").with_text(uuid))
        .with_child(
            Element::new("cpu")
                .with_child(Element::new("arch").with_text(std::env::consts::ARCH))
                .with_child(topology),
        );
    let mut arch = Element::new("arch")
        .with_attr("name", "x86_64")
        .with_child(Element::new("wordsize").with_text("64"))
        .with_child(Element::new("emulator").with_text(caps.emulator.display().to_string()));
    let mut machines: Vec<_> = caps.machines.iter().filter(|m| m.name != "none").collect();
    machines.sort_by_key(|m| !m.is_default);
    for m in machines {
        let mut el = Element::new("machine").with_attr("maxCpus", m.cpu_max.to_string());
        if m.deprecated {
            el.set_attr("deprecated", "yes");
        }
        arch = arch.with_child(el.with_text(m.name.clone()));
        if let Some(alias) = &m.alias {
            let mut el = Element::new("machine")
                .with_attr("canonical", m.name.clone())
                .with_attr("maxCpus", m.cpu_max.to_string());
            if m.deprecated {
                el.set_attr("deprecated", "yes");
            }
            arch = arch.with_child(el.with_text(alias.clone()));
        }
    }
    arch = arch.with_child(Element::new("domain").with_attr("type", "qemu"));
    if caps.kvm {
        arch = arch.with_child(Element::new("domain").with_attr("type", "kvm"));
    }
    let guest = Element::new("guest")
        .with_child(Element::new("os_type").with_text("hvm"))
        .with_child(arch)
        .with_child(
            Element::new("features")
                .with_child(
                    Element::new("acpi")
                        .with_attr("default", "on")
                        .with_attr("toggle", "yes"),
                )
                .with_child(
                    Element::new("apic")
                        .with_attr("default", "on")
                        .with_attr("toggle", "no"),
                )
                .with_child(Element::new("cpuselection"))
                .with_child(Element::new("deviceboot")),
        );
    Element::new("capabilities")
        .with_child(host)
        .with_child(guest)
        .to_xml()
}

/// Free memory in bytes: the sum over NUMA nodes, as libvirt's
/// virNodeGetFreeMemory, else /proc/meminfo.
pub fn free_memory_bytes() -> u64 {
    let kib_of = |text: &str| {
        text.lines()
            .find(|l| l.contains("MemFree:"))
            .and_then(|l| l.split_whitespace().rev().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let mut total = 0u64;
    let mut found = false;
    if let Ok(nodes) = std::fs::read_dir("/sys/devices/system/node") {
        for n in nodes.filter_map(Result::ok) {
            if let Some(kib) = std::fs::read_to_string(n.path().join("meminfo"))
                .ok()
                .as_deref()
                .and_then(kib_of)
            {
                total += kib;
                found = true;
            }
        }
    }
    if !found {
        total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .as_deref()
            .and_then(kib_of)
            .unwrap_or(0);
    }
    total.saturating_mul(1024)
}

#[tonic::async_trait]
impl Host for HostService {
    async fn get_capabilities(&self, _: Request<()>) -> Result<Response<pb::XmlDoc>, Status> {
        let emulator = self.driver.config().emulator.clone();
        let caps = self.driver.caps_for(&emulator).await?;
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let node = node_info(&read("/proc/cpuinfo"), &read("/proc/meminfo"), 1);
        Ok(Response::new(pb::XmlDoc {
            xml: capabilities_xml(&caps, &node, &host_uuid()),
        }))
    }

    async fn get_domain_capabilities(
        &self,
        request: Request<pb::DomainCapabilitiesRequest>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        let r = request.into_inner();
        let req = domcaps::Request {
            emulator: r.emulator,
            arch: r.arch,
            machine: r.machine,
            virttype: r.virt_type,
        };
        let (emulator, arch) = domcaps::pick_emulator(&req, &self.driver.config().emulator)?;
        let caps = self.driver.caps_for(&emulator).await?;
        let resolved = domcaps::resolve(&req, &arch, &caps)?;
        // Firmware descriptors and swtpm are files and processes: read
        // off the async threads.
        let host = tokio::task::spawn_blocking(domcaps::HostFacts::detect)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::XmlDoc {
            xml: domcaps::format(&caps, &resolved, &host),
        }))
    }

    async fn compare_cpu(
        &self,
        _: Request<pb::CompareCpuRequest>,
    ) -> Result<Response<pb::CompareCpuReply>, Status> {
        Err(unimplemented("CompareCPU").into())
    }

    async fn baseline_cpu(
        &self,
        _: Request<pb::BaselineCpuRequest>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        Err(unimplemented("BaselineCPU").into())
    }

    async fn get_cpu_model_names(
        &self,
        request: Request<pb::CpuModelNamesRequest>,
    ) -> Result<Response<pb::CpuModelNamesReply>, Status> {
        let arch = request.into_inner().arch;
        if !arch.is_empty() && arch != "x86_64" && arch != "i686" {
            return Err(VirtError::new(
                ErrorCode::OperationUnsupported,
                ErrorDomain::Qemu,
                format!("Operation not supported: cannot find CPU models for arch {arch}"),
            )
            .into());
        }
        let emulator = self.driver.config().emulator.clone();
        let caps = self.driver.caps_for(&emulator).await?;
        let mut models: Vec<String> = caps.cpu_models.iter().map(|c| c.name.clone()).collect();
        models.sort();
        Ok(Response::new(pb::CpuModelNamesReply { models }))
    }

    async fn get_free_memory(
        &self,
        _: Request<()>,
    ) -> Result<Response<pb::FreeMemoryReply>, Status> {
        Ok(Response::new(pb::FreeMemoryReply {
            bytes: free_memory_bytes(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::MachineInfo;

    #[test]
    fn capabilities_list_machines_default_first_with_aliases() {
        let caps = QemuCaps {
            emulator: "/usr/bin/qemu-system-x86_64".into(),
            machines: vec![
                MachineInfo {
                    name: "pc-q35-10.0".into(),
                    alias: Some("q35".into()),
                    cpu_max: 4096,
                    is_default: false,
                    deprecated: false,
                },
                MachineInfo {
                    name: "pc-i440fx-10.0".into(),
                    alias: Some("pc".into()),
                    cpu_max: 255,
                    is_default: true,
                    deprecated: false,
                },
                MachineInfo {
                    name: "none".into(),
                    alias: None,
                    cpu_max: 1,
                    is_default: false,
                    deprecated: false,
                },
            ],
            cpu_models: Vec::new(),
            kvm: true,
            features: Default::default(),
        };
        let node = pb::NodeInfo {
            sockets: 1,
            cores: 2,
            threads: 1,
            ..Default::default()
        };
        let xml = capabilities_xml(&caps, &node, "518bfbcb-5380-459e-a436-4c52e9dfae53");
        let i440 = xml
            .find("<machine maxCpus='255'>pc-i440fx-10.0</machine>")
            .expect("default");
        let alias = xml
            .find("<machine canonical='pc-i440fx-10.0' maxCpus='255'>pc</machine>")
            .expect("alias");
        let q35 = xml
            .find("<machine maxCpus='4096'>pc-q35-10.0</machine>")
            .expect("q35");
        assert!(i440 < alias && alias < q35, "{xml}");
        assert!(!xml.contains(">none<"));
        assert!(xml.contains("<domain type='kvm'/>"));
        assert!(
            xml.contains("<topology sockets='1' dies='1' clusters='1' cores='2' threads='1'/>")
        );
    }

    #[test]
    fn free_memory_is_positive() {
        assert!(free_memory_bytes() > 0);
    }
}
