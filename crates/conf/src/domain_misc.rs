//! Domain-level canonical forms outside `<devices>`: features, CPU,
//! cputune, memtune and other scaled sizes, as libvirt formats them.

use crate::ConfError;
use crate::units::scale_to_kib;
use crate::xml::Element;

const FEATURES: &[&str] = &[
    "acpi",
    "apic",
    "pae",
    "hap",
    "viridian",
    "privnet",
    "hyperv",
    "kvm",
    "xen",
    "pvspinlock",
    "capabilities",
    "pmu",
    "vmport",
    "gic",
    "smm",
    "ioapic",
    "hpt",
    "htm",
    "nested-hv",
    "msrs",
    "ccf-assist",
    "cfpc",
    "sbbc",
    "ibs",
    "tcg",
    "async-teardown",
    "ras",
    "ps2",
    "aia",
    "*",
];

const CPUTUNE: &[&str] = &[
    "shares",
    "period",
    "quota",
    "global_period",
    "global_quota",
    "emulator_period",
    "emulator_quota",
    "iothread_period",
    "iothread_quota",
    "vcpupin",
    "emulatorpin",
    "iothreadpin",
    "emulatorsched",
    "vcpusched",
    "iothreadsched",
    "cachetune",
    "memorytune",
    "*",
];

const MEMTUNE: &[&str] = &[
    "hard_limit",
    "soft_limit",
    "min_guarantee",
    "swap_hard_limit",
    "*",
];

const CPU_POLICIES: &[&str] = &["force", "require", "optional", "disable", "forbid"];

/// Rewrite `<x unit='MiB'>128</x>` as `<x unit='KiB'>131072</x>`.
pub fn to_kib(el: &mut Element) -> Result<(), ConfError> {
    let text = el.text();
    let Ok(v) = text.trim().parse::<u64>() else {
        return Ok(());
    };
    let kib = scale_to_kib(v, el.attr("unit"))?;
    el.set_attr("unit", "KiB");
    el.set_text(kib.to_string());
    Ok(())
}

/// Parse a libvirt cpuset ("0-3,^2,8") into sorted CPU numbers.
fn parse_cpuset(s: &str) -> Option<Vec<u32>> {
    let mut set = std::collections::BTreeSet::new();
    let mut neg = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some(n) = part.strip_prefix('^') {
            neg.push(n.parse::<u32>().ok()?);
        } else if let Some((a, b)) = part.split_once('-') {
            let (a, b) = (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?);
            if a > b || b - a > 65536 {
                return None;
            }
            set.extend(a..=b);
        } else {
            set.insert(part.parse::<u32>().ok()?);
        }
    }
    for n in neg {
        set.remove(&n);
    }
    Some(set.into_iter().collect())
}

/// A CPU list (`0-3,^2,8`) in libvirt's canonical form (ascending
/// ranges), or None when it does not parse (ranges are capped, so no list
/// can make this allocate without bound).
pub fn cpuset_canonical(list: &str) -> Option<String> {
    parse_cpuset(list).map(|cpus| format_cpuset(&cpus))
}

/// Format CPU numbers as libvirt's virBitmapFormat does ("0-2,5").
fn format_cpuset(cpus: &[u32]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

fn canon_cpuset_attr(el: &mut Element, key: &str) {
    if let Some(set) = el.attr(key).and_then(parse_cpuset) {
        el.set_attr(key, format_cpuset(&set));
    }
}

pub fn normalize(root: &mut Element) -> Result<(), ConfError> {
    if let Some(v) = root.child_mut("vcpu") {
        canon_cpuset_attr(v, "cpuset");
    }
    if let Some(features) = root.child_mut("features") {
        if let Some(hv) = features.child("hyperv") {
            for f in hv.elements() {
                if let Some(st) = f.attr("state").filter(|s| *s != "on" && *s != "off") {
                    return Err(ConfError::xml(format!(
                        "Invalid value for attribute 'state' in element '{}': '{st}'.",
                        f.name
                    )));
                }
            }
        }
        if let Some(tb) = features
            .child_mut("tcg")
            .and_then(|t| t.child_mut("tb-cache"))
        {
            to_kib(tb)?;
        }
        features.sort_children(FEATURES);
    }
    let numa_cells = root
        .child("cpu")
        .and_then(|c| c.child("numa"))
        .map(|n| n.children_named("cell").count())
        .unwrap_or(0);
    if let Some(numa) = root.child("cpu").and_then(|c| c.child("numa")) {
        let cells: Vec<(String, Vec<u32>)> = numa
            .children_named("cell")
            .map(|c| {
                let id = c.attr("id").unwrap_or("").to_owned();
                let cpus = c.attr("cpus").and_then(parse_cpuset).unwrap_or_default();
                (id, cpus)
            })
            .collect();
        for (i, (id_a, a)) in cells.iter().enumerate() {
            for (id_b, b) in &cells[..i] {
                if a.iter().any(|x| b.contains(x)) {
                    return Err(ConfError::unsupported(format!(
                        "NUMA cells {id_a} and {id_b} have overlapping vCPU ids"
                    )));
                }
            }
        }
    }
    if numa_cells == 0
        && root.child("devices").is_some_and(|d| {
            d.children_named("memory").any(|m| {
                m.attr("model") == Some("dimm")
                    || m.attr("model") == Some("nvdimm")
                    || m.attr("model") == Some("virtio-mem")
            })
        })
    {
        return Err(ConfError::detail(
            "can't add memory backend as guest has no NUMA nodes configured",
        ));
    }
    if let Some(cpu) = root.child_mut("cpu") {
        for f in cpu.children_named("feature") {
            if f.attr("policy").is_some_and(|p| !CPU_POLICIES.contains(&p)) {
                return Err(ConfError::unsupported("Invalid CPU feature policy"));
            }
        }
        if cpu.child("model").is_some() && cpu.attr("mode").is_none() {
            cpu.set_attr("mode", "custom");
        }
        if cpu.attr("mode") == Some("custom")
            && let Some(m) = cpu.child_mut("model")
            && m.attr("fallback").is_none()
        {
            m.set_attr("fallback", "allow");
        }
        cpu.order_attrs(&["mode", "match", "check", "migratable"]);
        if let Some(t) = cpu.child_mut("topology") {
            for (k, d) in [("dies", "1"), ("clusters", "1")] {
                if t.attr(k).is_none() {
                    t.set_attr(k, d);
                }
            }
            t.order_attrs(&["sockets", "dies", "clusters", "cores", "threads"]);
        }
        cpu.sort_children(&[
            "model",
            "vendor",
            "topology",
            "cache",
            "maxphysaddr",
            "feature",
            "numa",
            "*",
        ]);
    }
    if let Some(ct) = root.child_mut("cputune") {
        for el in ct.elements_mut() {
            canon_cpuset_attr(el, "cpuset");
        }
        ct.sort_children(CPUTUNE);
    }
    if let Some(mt) = root.child_mut("memtune") {
        for el in mt.elements_mut() {
            to_kib(el)?;
        }
        mt.sort_children(MEMTUNE);
    }
    if let Some(devices) = root.child_mut("devices") {
        for mem in devices.elements_mut().filter(|d| d.name == "memory") {
            if let Some(target) = mem.child_mut("target") {
                for el in target.elements_mut() {
                    if matches!(
                        el.name.as_str(),
                        "size" | "block" | "requested" | "current" | "label"
                    ) {
                        if el.name == "label" {
                            if let Some(sz) = el.child_mut("size") {
                                to_kib(sz)?;
                            }
                        } else {
                            to_kib(el)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpusets() {
        assert_eq!(format_cpuset(&parse_cpuset("0-1,^1").unwrap()), "0");
        assert_eq!(format_cpuset(&parse_cpuset("0,1,2,5").unwrap()), "0-2,5");
    }
}
