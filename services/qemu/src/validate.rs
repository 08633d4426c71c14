//! The qemu driver's define-time validation of a whole domain (what
//! libvirt's qemuValidateDomainDef and the device validators refuse),
//! with libvirt's error codes and messages.

use virtmesh_conf::{ConfError, Element};

fn attr<'a>(e: &'a Element, k: &str) -> &'a str {
    e.attr(k).unwrap_or_default()
}

fn unsupported(msg: impl Into<String>) -> ConfError {
    ConfError::unsupported(msg.into())
}

/// Check `root` (a parsed `<domain>`, machine already resolved).
pub fn domain(root: &Element, q35: bool) -> Result<(), ConfError> {
    let features = root.child("features");
    let feature = |n: &str| features.and_then(|f| f.child(n));
    let acpi = feature("acpi").is_some();
    let empty = Element::new("devices");
    let devices = root.child("devices").unwrap_or(&empty);
    let devs = || devices.elements();

    if feature("tcg").is_some() && root.attr("type") == Some("kvm") {
        return Err(unsupported(
            "TCG features are incompatible with domain type 'kvm'",
        ));
    }
    if !q35 && feature("smm").is_some_and(|s| s.child("tseg").is_some()) {
        return Err(unsupported(
            "SMM TSEG is only supported with q35 machine type",
        ));
    }
    let os = root.child("os");
    let uefi = os.is_some_and(|o| {
        o.attr("firmware") == Some("efi")
            || o.child("loader")
                .is_some_and(|l| l.attr("type") == Some("pflash"))
    });
    if uefi && !acpi {
        return Err(unsupported("UEFI requires ACPI on this architecture"));
    }

    // I/O threads the devices name must exist.
    let count: u32 = root
        .child_text("iothreads")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    let ids: Vec<u32> = match root.child("iothreadids") {
        Some(i) => i
            .children_named("iothread")
            .filter_map(|t| t.attr("id")?.parse().ok())
            .collect(),
        None => (1..=count).collect(),
    };
    let known = |v: &str| v.parse::<u32>().is_ok_and(|n| ids.contains(&n));

    let spice = devs().any(|d| d.name == "graphics" && attr(d, "type") == "spice");
    let shared_mem = root
        .child("memoryBacking")
        .and_then(|m| m.child("access"))
        .is_some_and(|a| a.attr("mode") == Some("shared"))
        || root
            .child("cpu")
            .and_then(|c| c.child("numa"))
            .is_some_and(|n| {
                n.child("cell").is_some()
                    && n.children_named("cell")
                        .all(|c| c.attr("memAccess") == Some("shared"))
            });
    let numa_cells = root
        .child("cpu")
        .and_then(|c| c.child("numa"))
        .map_or(0, |n| n.children_named("cell").count());

    for d in devs() {
        match d.name.as_str() {
            "disk" => {
                let dev = d
                    .child("target")
                    .and_then(|t| t.attr("dev"))
                    .unwrap_or_default();
                let drv = d.child("driver");
                if let Some(name) = drv.and_then(|x| x.attr("name"))
                    && name != "qemu"
                {
                    return Err(unsupported(format!(
                        "unsupported driver name '{name}' for disk '{dev}'"
                    )));
                }
                if let Some(io) = drv.and_then(|x| x.attr("iothread"))
                    && !known(io)
                {
                    return Err(unsupported(format!(
                        "Disk iothread '{io}' not defined in iothreadid"
                    )));
                }
                if drv.and_then(|x| x.child("iothreads")).is_some()
                    && drv.and_then(|x| x.attr("queues")).is_none()
                {
                    return Err(unsupported(
                        "'queue' count must be configured for explicit iothread to queue mapping",
                    ));
                }
                if attr(d, "device") == "floppy"
                    && let Some(bus) = d
                        .child("target")
                        .and_then(|t| t.attr("bus"))
                        .filter(|b| *b != "fdc")
                {
                    return Err(ConfError::internal(format!(
                        "Invalid bus type '{bus}' for floppy disk"
                    )));
                }
            }
            "controller" => {
                if let Some(io) = d.child("driver").and_then(|x| x.attr("iothread"))
                    && !known(io)
                {
                    return Err(unsupported(format!(
                        "controller iothread '{io}' not defined in iothreadid"
                    )));
                }
                if attr(d, "type") == "pci" && attr(d, "index") == "0" {
                    let want = if q35 { "pcie-root" } else { "pci-root" };
                    let model = attr(d, "model");
                    if !model.is_empty() && model != want {
                        return Err(ConfError::xml(format!(
                            "The PCI controller with index='0' must be model='{want}' for this machine type, but model='{model}' was found instead"
                        )));
                    }
                }
                if matches!(attr(d, "model"), "pci-expander-bus" | "pcie-expander-bus")
                    && let Some(node) = d
                        .child("target")
                        .and_then(|t| t.child_text("node"))
                        .and_then(|n| n.trim().parse::<usize>().ok())
                    && node >= numa_cells
                {
                    return Err(ConfError::xml(format!(
                        "{} with index {} is configured for a NUMA node ({node}) not present in the domain's <cpu><numa> array ({numa_cells})",
                        attr(d, "model"),
                        attr(d, "index")
                    )));
                }
            }
            "graphics" => {
                if attr(d, "type") == "spice" && d.attr("tlsPort").is_some() {
                    return Err(unsupported(
                        "spice TLS port set in XML configuration, but TLS is disabled in qemu.conf",
                    ));
                }
                if attr(d, "type") == "vnc"
                    && let Some(p) = d.attr("passwd")
                    && p.chars().count() > 8
                {
                    return Err(unsupported(format!(
                        "VNC password is {} characters long, only 8 permitted",
                        p.chars().count()
                    )));
                }
            }
            "audio" if attr(d, "type") == "spice" && !spice => {
                return Err(unsupported(
                    "Spice audio is not supported without spice graphics",
                ));
            }
            "channel" | "redirdev" | "serial" | "console" | "smartcard"
                if attr(d, "type") == "spicevmc" && !spice =>
            {
                return Err(unsupported(
                    "chardev 'spicevmc' not supported without spice graphics",
                ));
            }
            "interface" => {
                if d.child("route").is_some() {
                    return Err(unsupported(
                        "Invalid attempt to set network interface guest-side IP route, not supported by QEMU",
                    ));
                }
                if attr(d, "type") == "vhostuser" && !shared_mem {
                    return Err(unsupported("'interface' requires shared memory"));
                }
            }
            "filesystem" => {
                let virtiofs = d.child("driver").and_then(|x| x.attr("type")) == Some("virtiofs");
                if virtiofs && !shared_mem {
                    return Err(unsupported("'virtiofs' requires shared memory"));
                }
                if (d.attr("fmode").is_some() || d.attr("dmode").is_some())
                    && attr(d, "accessmode") != "mapped"
                {
                    return Err(unsupported(
                        "fmode and dmode must be used with accessmode=mapped",
                    ));
                }
            }
            "iommu" if attr(d, "model") == "virtio" && !acpi => {
                return Err(unsupported("IOMMU device: 'virtio' requires ACPI"));
            }
            "tpm" => {
                let version = d.child("backend").and_then(|b| b.attr("version"));
                if attr(d, "model") == "tpm-crb" && version == Some("1.2") {
                    return Err(unsupported("TPM 1.2 is not supported for model 'tpm-crb'"));
                }
            }
            "panic" if attr(d, "model") == "pseries" => {
                return Err(unsupported(
                    "only pSeries guests support panic device of model 'pseries'",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}
