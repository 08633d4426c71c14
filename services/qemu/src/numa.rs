//! Guest NUMA and memory devices: libvirt's define-time totals (the
//! memory is the cells plus the memory devices; `<maxMemory>` implies a
//! single cell), and the `-m`/`-numa`/memory-backend/dimm command line.

use crate::argv::json_object;
use crate::cmdline::{Args, pci_fields};
use crate::def::DomainDef;
use serde_json::Value;
use virtmesh_conf::units::scale_to_kib;
use virtmesh_conf::{ConfError, Element, Node};

fn kib_of(e: &Element) -> Result<u64, ConfError> {
    let v: u64 = e
        .text()
        .trim()
        .parse()
        .map_err(|_| ConfError::xml(format!("invalid size in <{}>", e.name)))?;
    scale_to_kib(v, e.attr("unit"))
}

/// Sizes of memory devices in KiB with `unit='KiB'`, their DIMM slots,
/// the NUMA cell libvirt adds for `<maxMemory>`, and the memory total.
pub fn normalize(root: &mut Element) -> Result<(), ConfError> {
    let mut dev_kib = 0u64;
    let mut slot = 0u32;
    if let Some(devices) = root.child_mut("devices") {
        for m in devices
            .elements_mut()
            .filter(|d| d.name == "memory" && d.attr("model").is_some())
        {
            let model = m.attr("model").unwrap_or_default().to_owned();
            if let Some(t) = m.child_mut("target") {
                for name in ["size", "block", "requested", "current"] {
                    if let Some(e) = t.child_mut(name) {
                        let k = kib_of(e)?;
                        e.set_attr("unit", "KiB");
                        e.set_text(k.to_string());
                        if name == "size" {
                            dev_kib += k;
                        }
                    }
                }
                if let Some(e) = t.child_mut("label").and_then(|l| l.child_mut("size")) {
                    let k = kib_of(e)?;
                    e.set_attr("unit", "KiB");
                    e.set_text(k.to_string());
                }
            }
            if matches!(model.as_str(), "dimm" | "nvdimm") && m.child("address").is_none() {
                m.children.push(Node::Element(
                    Element::new("address")
                        .with_attr("type", "dimm")
                        .with_attr("slot", slot.to_string()),
                ));
                slot += 1;
            }
        }
    }
    let vcpus: u32 = root
        .child("vcpu")
        .and_then(|v| v.text().trim().parse().ok())
        .unwrap_or(1);
    let memory: u64 = root
        .child_text("memory")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    let has_cells = root
        .child("cpu")
        .and_then(|c| c.child("numa"))
        .is_some_and(|n| n.child("cell").is_some());
    if root.child("maxMemory").is_some() && !has_cells {
        let cpus = if vcpus > 1 {
            format!("0-{}", vcpus - 1)
        } else {
            "0".to_owned()
        };
        let cpu = root.child_or_insert("cpu");
        cpu.child_or_insert("numa").children.push(Node::Element(
            Element::new("cell")
                .with_attr("id", "0")
                .with_attr("cpus", cpus)
                .with_attr("memory", memory.saturating_sub(dev_kib).to_string())
                .with_attr("unit", "KiB"),
        ));
    }
    let cells: Vec<u64> = match root.child("cpu").and_then(|c| c.child("numa")) {
        Some(n) => n
            .children_named("cell")
            .map(|c| {
                let v: u64 = c.attr("memory").and_then(|m| m.parse().ok()).unwrap_or(0);
                scale_to_kib(v, c.attr("unit").or(Some("KiB")))
            })
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    if !cells.is_empty() {
        let total = cells.iter().sum::<u64>() + dev_kib;
        for name in ["memory", "currentMemory"] {
            if let Some(e) = root.child_mut(name) {
                e.set_attr("unit", "KiB");
                e.set_text(total.to_string());
            }
        }
    }
    Ok(())
}

fn cells(def: &DomainDef) -> Vec<&Element> {
    def.element()
        .child("cpu")
        .and_then(|c| c.child("numa"))
        .map(|n| n.children_named("cell").collect())
        .unwrap_or_default()
}

fn mems(def: &DomainDef) -> Vec<&Element> {
    def.element()
        .child("devices")
        .map(|d| {
            d.children_named("memory")
                .filter(|m| m.attr("model").is_some())
                .collect()
        })
        .unwrap_or_default()
}

pub fn has_numa(def: &DomainDef) -> bool {
    !cells(def).is_empty()
}

fn hmat(def: &DomainDef) -> bool {
    def.element()
        .child("cpu")
        .and_then(|c| c.child("numa"))
        .is_some_and(|n| {
            n.child("interconnects").is_some()
                || n.children_named("cell").any(|c| c.child("cache").is_some())
        })
}

/// `-machine` properties NUMA and memory devices add.
pub fn machine_props(def: &DomainDef) -> String {
    let mut s = String::new();
    if mems(def).iter().any(|m| m.attr("model") == Some("nvdimm")) {
        s.push_str(",nvdimm=on");
    }
    if hmat(def) {
        s.push_str(",hmat=on");
    }
    s
}

fn cell_kib(c: &Element) -> u64 {
    let v: u64 = c.attr("memory").and_then(|m| m.parse().ok()).unwrap_or(0);
    scale_to_kib(v, c.attr("unit").or(Some("KiB"))).unwrap_or(v)
}

/// `-m size=...[,slots=N,maxmem=Mk]`.
pub fn memory_arg(def: &DomainDef) -> String {
    let initial = if has_numa(def) {
        cells(def).iter().map(|c| cell_kib(c)).sum()
    } else {
        def.max_memory_kib()
    };
    let mut m = format!("size={initial}k");
    if let Some(max) = def.element().child("maxMemory") {
        let slots = max.attr("slots").unwrap_or("0");
        let kib: u64 = max.text().trim().parse().unwrap_or(0);
        m.push_str(&format!(",slots={slots},maxmem={kib}k"));
    }
    m
}

fn size_suffix(v: &Element) -> String {
    let value = v.attr("value").unwrap_or("0");
    match v.attr("unit") {
        Some("KiB") | Some("K") => format!("{value}K"),
        Some("MiB") | Some("M") => format!("{value}M"),
        Some("GiB") | Some("G") => format!("{value}G"),
        _ => value.to_owned(),
    }
}

/// The NUMA cells: a memory backend each, `-numa node`, distances, HMAT.
/// `ram_dir` holds the files of cells with shared memory access.
pub fn numa_args(a: &mut Args, def: &DomainDef, ram_dir: &str) {
    let cells = cells(def);
    let hmat = hmat(def);
    for c in &cells {
        let id = c.attr("id").unwrap_or("0");
        let mem = format!("ram-node{id}");
        let bytes = cell_kib(c) * 1024;
        let obj = if c.attr("memAccess") == Some("shared") {
            json_object(&[
                ("qom-type", "memory-backend-file".into()),
                ("id", mem.clone().into()),
                ("mem-path", format!("{ram_dir}/{mem}").into()),
                ("share", true.into()),
                ("size", bytes.into()),
            ])
        } else {
            json_object(&[
                ("qom-type", "memory-backend-ram".into()),
                ("id", mem.clone().into()),
                ("size", bytes.into()),
            ])
        };
        a.opt("-object", obj);
        let mut n = format!("node,nodeid={id}");
        if let Some(cpus) = c.attr("cpus") {
            for part in cpus.split(',') {
                n.push_str(&format!(",cpus={part}"));
            }
        }
        if hmat {
            n.push_str(&format!(",initiator={id}"));
        }
        n.push_str(&format!(",memdev={mem}"));
        a.opt("-numa", n);
    }
    for c in &cells {
        let id = c.attr("id").unwrap_or("0");
        if let Some(d) = c.child("distances") {
            for s in d.children_named("sibling") {
                a.opt(
                    "-numa",
                    format!(
                        "dist,src={id},dst={},val={}",
                        s.attr("id").unwrap_or("0"),
                        s.attr("value").unwrap_or("0")
                    ),
                );
            }
        }
    }
    let numa = def.element().child("cpu").and_then(|c| c.child("numa"));
    if let Some(ic) = numa.and_then(|n| n.child("interconnects")) {
        for e in ic.elements() {
            let hierarchy = match e.attr("cache") {
                Some(l) => match l {
                    "1" => "first-level",
                    "2" => "second-level",
                    "3" => "third-level",
                    _ => "memory",
                },
                None => "memory",
            };
            let ty = e.attr("type").unwrap_or("access");
            let (dtype, value) = if e.name == "latency" {
                (
                    format!("{ty}-latency"),
                    format!("latency={}", e.attr("value").unwrap_or("0")),
                )
            } else {
                (
                    format!("{ty}-bandwidth"),
                    format!("bandwidth={}", size_suffix(e)),
                )
            };
            a.opt(
                "-numa",
                format!(
                    "hmat-lb,initiator={},target={},hierarchy={hierarchy},data-type={dtype},{value}",
                    e.attr("initiator").unwrap_or("0"),
                    e.attr("target").unwrap_or("0")
                ),
            );
        }
    }
    for c in &cells {
        let id = c.attr("id").unwrap_or("0");
        for cache in c.children_named("cache") {
            let size = cache.child("size").map(size_suffix).unwrap_or_default();
            let line = cache
                .child("line")
                .and_then(|l| l.attr("value"))
                .unwrap_or("0");
            let policy = match cache.attr("policy") {
                Some("writeback") => "write-back",
                Some("writethrough") => "write-through",
                _ => "none",
            };
            a.opt(
                "-numa",
                format!(
                    "hmat-cache,node-id={id},size={size},level={},associativity={},policy={policy},line={line}",
                    cache.attr("level").unwrap_or("1"),
                    cache.attr("associativity").unwrap_or("none")
                ),
            );
        }
    }
}

fn target_kib(m: &Element, name: &str) -> u64 {
    m.child("target")
        .and_then(|t| t.child(name))
        .and_then(|e| kib_of(e).ok())
        .unwrap_or(0)
}

/// Memory devices (after the controllers).
pub fn devices(a: &mut Args, mems: &[&Element], q35: bool) {
    for (i, m) in mems.iter().enumerate() {
        let node: u64 = m
            .child("target")
            .and_then(|t| t.child_text("node"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        let size = target_kib(m, "size") * 1024;
        let slot = m
            .child("address")
            .filter(|x| x.attr("type") == Some("dimm"))
            .and_then(|x| x.attr("slot"))
            .and_then(|s| s.parse::<u64>().ok());
        match m.attr("model").unwrap_or_default() {
            "dimm" => {
                let mem = format!("memdimm{i}");
                a.opt(
                    "-object",
                    json_object(&[
                        ("qom-type", "memory-backend-ram".into()),
                        ("id", mem.clone().into()),
                        ("size", size.into()),
                    ]),
                );
                let mut f: Vec<(&str, Value)> = vec![
                    ("driver", "pc-dimm".into()),
                    ("node", node.into()),
                    ("memdev", mem.into()),
                    ("id", format!("dimm{i}").into()),
                ];
                if let Some(s) = slot {
                    f.push(("slot", s.into()));
                }
                a.device(&f);
            }
            "nvdimm" => {
                let mem = format!("memnvdimm{i}");
                let path = m
                    .child("source")
                    .and_then(|s| s.child_text("path"))
                    .map(|p| p.trim().to_owned())
                    .unwrap_or_default();
                a.opt(
                    "-object",
                    json_object(&[
                        ("qom-type", "memory-backend-file".into()),
                        ("id", mem.clone().into()),
                        ("mem-path", path.into()),
                        ("share", (m.attr("access") == Some("shared")).into()),
                        ("prealloc", true.into()),
                        ("size", size.into()),
                    ]),
                );
                let mut f: Vec<(&str, Value)> =
                    vec![("driver", "nvdimm".into()), ("node", node.into())];
                let label = m
                    .child("target")
                    .and_then(|t| t.child("label"))
                    .and_then(|l| l.child("size"))
                    .and_then(|e| kib_of(e).ok());
                if let Some(l) = label {
                    f.push(("label-size", (l * 1024).into()));
                }
                f.push(("memdev", mem.into()));
                f.push(("id", format!("nvdimm{i}").into()));
                if let Some(s) = slot {
                    f.push(("slot", s.into()));
                }
                a.device(&f);
            }
            "virtio-mem" => {
                let mem = format!("memvirtiomem{i}");
                a.opt(
                    "-object",
                    json_object(&[
                        ("qom-type", "memory-backend-ram".into()),
                        ("id", mem.clone().into()),
                        ("reserve", false.into()),
                        ("size", size.into()),
                    ]),
                );
                let mut f: Vec<(&str, Value)> = vec![
                    ("driver", "virtio-mem-pci".into()),
                    ("node", node.into()),
                    ("block-size", (target_kib(m, "block") * 1024).into()),
                    ("requested-size", (target_kib(m, "requested") * 1024).into()),
                    ("memdev", mem.into()),
                    ("id", format!("virtiomem{i}").into()),
                ];
                f.extend(pci_fields(m, q35));
                a.device(&f);
            }
            _ => {}
        }
    }
}

/// The `pc.ram` backend of a guest without NUMA, from `<memoryBacking>`:
/// RAM, memfd or a file in `ram_dir`; shared or private; preallocated.
pub fn pc_ram(def: &DomainDef, ram_dir: &str) -> String {
    let mb = def.element().child("memoryBacking");
    let source = mb
        .and_then(|m| m.child("source"))
        .and_then(|s| s.attr("type"))
        .unwrap_or("anonymous");
    let access = mb
        .and_then(|m| m.child("access"))
        .and_then(|a| a.attr("mode"));
    let alloc = mb.and_then(|m| m.child("allocation"));
    let qom = match source {
        "memfd" => "memory-backend-memfd",
        "file" => "memory-backend-file",
        _ => "memory-backend-ram",
    };
    let mut f: Vec<(&str, Value)> = vec![("qom-type", qom.into()), ("id", "pc.ram".into())];
    if source == "file" {
        f.push(("mem-path", format!("{ram_dir}/pc.ram").into()));
    }
    if qom != "memory-backend-ram" {
        if let Some(a) = access {
            f.push(("share", (a == "shared").into()));
        }
        f.push(("x-use-canonical-path-for-ramblock-id", false.into()));
    }
    if alloc.and_then(|a| a.attr("mode")) == Some("immediate") {
        f.push(("prealloc", true.into()));
        if let Some(t) = alloc
            .and_then(|a| a.attr("threads"))
            .and_then(|t| t.parse::<u64>().ok())
        {
            f.push(("prealloc-threads", t.into()));
        }
    }
    f.push(("size", def.max_memory_kib().saturating_mul(1024).into()));
    json_object(&f)
}
