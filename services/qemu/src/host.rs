//! The Host service for qemu URIs: capabilities from the probed emulator
//! and the host, CPU model names, free memory. Domain capabilities and CPU
//! comparison belong to later phases (and to the cpu service).

use crate::connect::node_info;
use crate::domcaps;
use crate::driver::QemuDriver;
use crate::error::unimplemented;
use crate::probe::QemuCaps;
use std::path::Path;
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
pub fn host_uuid() -> String {
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

/// libvirt's capabilities document: the host (from /proc and sysfs, see
/// `host_xml`) and one guest per probed emulator (x86_64, and i686 when
/// qemu-system-i386 is installed) with every machine type (QEMU's order,
/// the default first, each alias after its machine) and the domain types.
/// Not reported, unlike libvirt: the host CPU model and features and the
/// TSC counter (libvirt decodes CPUID against its CPU map and asks KVM by
/// ioctl), migration features and snapshot features (not implemented
/// here), and the `dac` security model (QEMU runs as root, unlabelled).
pub fn capabilities_xml(guests: &[(&str, &QemuCaps)], host: Element) -> String {
    let mut root = Element::new("capabilities").with_child(host);
    for (arch_name, caps) in guests {
        root = root.with_child(guest_xml(arch_name, caps));
    }
    // libvirt separates the top-level elements with an empty line.
    let mut out = String::new();
    for line in root.to_xml().lines() {
        if line == "  <host>" || line == "  <guest>" || line == "</capabilities>" {
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn guest_xml(arch_name: &str, caps: &QemuCaps) -> Element {
    let wordsize = if arch_name == "i686" { "32" } else { "64" };
    let mut arch = Element::new("arch")
        .with_attr("name", arch_name)
        .with_child(Element::new("wordsize").with_text(wordsize))
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
    let mut features = Element::new("features");
    if arch_name == "i686" {
        features = features
            .with_child(Element::new("pae"))
            .with_child(Element::new("nonpae"));
    }
    features = features
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
        .with_child(Element::new("deviceboot"));
    Element::new("guest")
        .with_child(Element::new("os_type").with_text("hvm"))
        .with_child(arch)
        .with_child(features)
}

/// The first value of `key` in /proc/cpuinfo.
fn cpuinfo_value<'a>(cpuinfo: &'a str, key: &str) -> Option<&'a str> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then_some(v.trim())
    })
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

/// Huge page sizes in KiB, ascending (/sys/kernel/mm/hugepages).
fn huge_page_sizes(dir: &Path) -> Vec<u64> {
    let mut sizes: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()
        })
        .collect();
    sizes.sort_unstable();
    sizes
}

/// A kernel CPU list ("0-3,6") expanded.
fn cpu_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

/// The host's `<cpu>`: what /proc/cpuinfo says (vendor, microcode,
/// signature, physical address bits), the topology and the page sizes.
fn host_cpu(cpuinfo: &str, node: &pb::NodeInfo, sys: &Path) -> Element {
    let mut cpu =
        Element::new("cpu").with_child(Element::new("arch").with_text(std::env::consts::ARCH));
    let vendor = match cpuinfo_value(cpuinfo, "vendor_id") {
        Some("GenuineIntel") => Some("Intel"),
        Some("AuthenticAMD") => Some("AMD"),
        Some("HygonGenuine") => Some("Hygon"),
        Some("CentaurHauls") | Some("  Shanghai  ") => Some("Zhaoxin"),
        _ => None,
    };
    if let Some(v) = vendor {
        cpu = cpu.with_child(Element::new("vendor").with_text(v));
    }
    if let Some(m) = cpuinfo_value(cpuinfo, "microcode")
        .and_then(|m| u64::from_str_radix(m.trim_start_matches("0x"), 16).ok())
    {
        cpu = cpu.with_child(Element::new("microcode").with_attr("version", m.to_string()));
    }
    if let (Some(f), Some(m), Some(s)) = (
        cpuinfo_value(cpuinfo, "cpu family"),
        cpuinfo_value(cpuinfo, "model"),
        cpuinfo_value(cpuinfo, "stepping"),
    ) {
        cpu = cpu.with_child(
            Element::new("signature")
                .with_attr("family", f)
                .with_attr("model", m)
                .with_attr("stepping", s),
        );
    }
    cpu = cpu.with_child(
        Element::new("topology")
            .with_attr("sockets", node.sockets.to_string())
            .with_attr("dies", "1")
            .with_attr("clusters", "1")
            .with_attr("cores", node.cores.to_string())
            .with_attr("threads", node.threads.to_string()),
    );
    if let Some(bits) = cpuinfo_value(cpuinfo, "address sizes")
        .and_then(|a| a.split_whitespace().next())
        .and_then(|b| b.parse::<u32>().ok())
    {
        cpu = cpu.with_child(
            Element::new("maxphysaddr")
                .with_attr("mode", "emulate")
                .with_attr("bits", bits.to_string()),
        );
    }
    let page = |kib: u64| {
        Element::new("pages")
            .with_attr("unit", "KiB")
            .with_attr("size", kib.to_string())
    };
    cpu = cpu.with_child(page(4));
    for size in huge_page_sizes(&sys.join("kernel/mm/hugepages")) {
        cpu = cpu.with_child(page(size));
    }
    cpu
}

/// NUMA cells from /sys/devices/system/node (one cell from /proc/meminfo
/// when the kernel has no NUMA), each with memory, pages, distances and
/// CPUs with their socket/die/cluster/core ids.
fn numa_topology(sys: &Path, meminfo: &str) -> Element {
    let node_dir = sys.join("devices/system/node");
    let mut nodes: Vec<u32> = std::fs::read_dir(&node_dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("node")?.parse().ok())
        .collect();
    nodes.sort_unstable();
    let huge = huge_page_sizes(&sys.join("kernel/mm/hugepages"));
    let kib_of = |text: &str, key: &str| -> u64 {
        text.lines()
            .find(|l| l.contains(key))
            .and_then(|l| l.split_whitespace().rev().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let mut cells = Element::new("cells").with_attr("num", nodes.len().max(1).to_string());
    let all_cpus = read_trim(&sys.join("devices/system/cpu/online")).unwrap_or_default();
    let one = [0u32];
    let list: &[u32] = if nodes.is_empty() { &one } else { &nodes };
    for &n in list {
        let dir = node_dir.join(format!("node{n}"));
        let (memory, cpus) = if nodes.is_empty() {
            (kib_of(meminfo, "MemTotal:"), all_cpus.clone())
        } else {
            (
                kib_of(
                    &std::fs::read_to_string(dir.join("meminfo")).unwrap_or_default(),
                    "MemTotal:",
                ),
                read_trim(&dir.join("cpulist")).unwrap_or_default(),
            )
        };
        let mut cell = Element::new("cell")
            .with_attr("id", n.to_string())
            .with_child(
                Element::new("memory")
                    .with_attr("unit", "KiB")
                    .with_text(memory.to_string()),
            );
        let mut huge_kib = 0u64;
        let mut huge_pages = Vec::new();
        for &size in &huge {
            let count: u64 =
                read_trim(&dir.join(format!("hugepages/hugepages-{size}kB/nr_hugepages")))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
            huge_kib += count * size;
            huge_pages.push((size, count));
        }
        let page = |size: u64, count: u64| {
            Element::new("pages")
                .with_attr("unit", "KiB")
                .with_attr("size", size.to_string())
                .with_text(count.to_string())
        };
        cell = cell.with_child(page(4, memory.saturating_sub(huge_kib) / 4));
        for (size, count) in huge_pages {
            cell = cell.with_child(page(size, count));
        }
        let mut distances = Element::new("distances");
        let dist = read_trim(&dir.join("distance")).unwrap_or_else(|| "10".to_owned());
        for (i, d) in dist.split_whitespace().enumerate() {
            let id = list.get(i).copied().unwrap_or(i as u32);
            distances = distances.with_child(
                Element::new("sibling")
                    .with_attr("id", id.to_string())
                    .with_attr("value", d),
            );
        }
        cell = cell.with_child(distances);
        let ids = cpu_list(&cpus);
        let mut cpus_el = Element::new("cpus").with_attr("num", ids.len().to_string());
        for id in ids {
            let topo = sys.join(format!("devices/system/cpu/cpu{id}/topology"));
            let get = |f: &str| read_trim(&topo.join(f)).unwrap_or_else(|| "0".to_owned());
            cpus_el = cpus_el.with_child(
                Element::new("cpu")
                    .with_attr("id", id.to_string())
                    .with_attr("socket_id", get("physical_package_id"))
                    .with_attr("die_id", get("die_id"))
                    .with_attr("cluster_id", get("cluster_id"))
                    .with_attr("core_id", get("core_id"))
                    .with_attr("siblings", get("thread_siblings_list")),
            );
        }
        cells = cells.with_child(cell.with_child(cpus_el));
    }
    Element::new("topology").with_child(cells)
}

/// CPU cache banks of level 2 and up, one per (level, id, type), as
/// libvirt's virCapabilitiesInitCaches.
fn caches(sys: &Path) -> Option<Element> {
    let cpus = cpu_list(&read_trim(&sys.join("devices/system/cpu/online"))?);
    let mut banks = std::collections::BTreeMap::new();
    for cpu in cpus {
        let dir = sys.join(format!("devices/system/cpu/cpu{cpu}/cache"));
        for e in std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
        {
            let p = e.path();
            let get = |f: &str| read_trim(&p.join(f));
            let Some(level) = get("level").and_then(|l| l.parse::<u32>().ok()) else {
                continue;
            };
            if level < 2 {
                continue;
            }
            let id: u32 = get("id").and_then(|i| i.parse().ok()).unwrap_or(0);
            let ty = match get("type").as_deref() {
                Some("Data") => "data",
                Some("Instruction") => "instruction",
                _ => "both",
            };
            let kib: u64 = get("size")
                .and_then(|s| s.trim_end_matches('K').parse().ok())
                .unwrap_or(0);
            let shared = get("shared_cpu_list").unwrap_or_default();
            banks.entry((level, id, ty)).or_insert((kib, shared));
        }
    }
    if banks.is_empty() {
        return None;
    }
    let mut cache = Element::new("cache");
    for ((level, id, ty), (kib, shared)) in banks {
        let (size, unit) = if kib % 1024 == 0 && kib > 0 {
            (kib / 1024, "MiB")
        } else {
            (kib, "KiB")
        };
        cache = cache.with_child(
            Element::new("bank")
                .with_attr("id", id.to_string())
                .with_attr("level", level.to_string())
                .with_attr("type", ty)
                .with_attr("size", size.to_string())
                .with_attr("unit", unit)
                .with_attr("cpus", shared),
        );
    }
    Some(cache)
}

/// libvirt's suspend targets, from pm-utils as libvirt asks them.
fn power_management() -> Element {
    let mut pm = Element::new("power_management");
    for (arg, name) in [
        ("--suspend", "suspend_mem"),
        ("--hibernate", "suspend_disk"),
        ("--suspend-hybrid", "suspend_hybrid"),
    ] {
        let ok = std::process::Command::new("pm-is-supported")
            .arg(arg)
            .stdin(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            pm = pm.with_child(Element::new(name));
        }
    }
    pm
}

/// The `<host>` element, read from `sys` (normally /sys) and /proc.
pub fn host_xml(
    uuid: &str,
    cpuinfo: &str,
    meminfo: &str,
    node: &pb::NodeInfo,
    sys: &Path,
) -> Element {
    let iommu = std::fs::read_dir(sys.join("kernel/iommu_groups"))
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    let mut host = Element::new("host")
        .with_child(Element::new("uuid").with_text(uuid))
        .with_child(host_cpu(cpuinfo, node, sys))
        .with_child(power_management())
        .with_child(Element::new("iommu").with_attr("support", if iommu { "yes" } else { "no" }))
        .with_child(numa_topology(sys, meminfo));
    if let Some(c) = caches(sys) {
        host = host.with_child(c);
    }
    host.with_child(
        Element::new("secmodel")
            .with_child(Element::new("model").with_text("none"))
            .with_child(Element::new("doi").with_text("0")),
    )
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
        // libvirt lists i686 first when its emulator is installed.
        let i386 = emulator.with_file_name("qemu-system-i386");
        let caps32 = if i386.exists() {
            self.driver.caps_for(&i386).await.ok()
        } else {
            None
        };
        let mut guests: Vec<(&str, &QemuCaps)> = Vec::new();
        if let Some(c) = caps32.as_deref() {
            guests.push(("i686", c));
        }
        guests.push(("x86_64", &caps));
        let host = tokio::task::spawn_blocking(|| {
            let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
            let (cpuinfo, meminfo) = (read("/proc/cpuinfo"), read("/proc/meminfo"));
            let node = node_info(&cpuinfo, &meminfo, 1);
            host_xml(&host_uuid(), &cpuinfo, &meminfo, &node, Path::new("/sys"))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::XmlDoc {
            xml: capabilities_xml(&guests, host),
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
        let dir = tempfile::tempdir().expect("tempdir");
        let host = host_xml(
            "518bfbcb-5380-459e-a436-4c52e9dfae53",
            "",
            "",
            &node,
            dir.path(),
        );
        let xml = capabilities_xml(&[("x86_64", &caps)], host);
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
        assert!(!xml.contains("'>none</machine>"));
        assert!(xml.contains("<model>none</model>"));
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
