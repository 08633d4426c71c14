//! `virsh domcapabilities` for qemu URIs (virConnectGetDomainCapabilities):
//! libvirt's argument resolution and its document, derived from what the
//! probe asked QEMU (`probe.rs`), QEMU's firmware descriptors and the host
//! (swtpm). Element order and enum value order are libvirt 11.3's.
//!
//! Not derived (documented differences from libvirt): the host-model CPU
//! (libvirt decodes the host CPUID against its own CPU map, which we do
//! not carry: the mode is reported unsupported) and libvirt's filtering
//! of custom CPU models its map does not know (we list every model QEMU
//! has).

pub use crate::firmware::{Firmware, firmware_descriptors, parse_firmware};
use crate::probe::{CpuDefinition, MachineInfo, QemuCaps};
use std::path::{Path, PathBuf};
use virtmesh_conf::Element;
use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

/// The arguments of virConnectGetDomainCapabilities, empty meaning unset.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub emulator: String,
    pub arch: String,
    pub machine: String,
    pub virttype: String,
}

/// libvirt's virDomainVirtType names.
const VIRT_TYPES: &[&str] = &[
    "none",
    "qemu",
    "kqemu",
    "kvm",
    "xen",
    "lxc",
    "uml",
    "openvz",
    "test",
    "vmware",
    "hyperv",
    "vbox",
    "phyp",
    "parallels",
    "bhyve",
    "vz",
    "hvf",
];

/// libvirt's virArch names and the QEMU binary suffix of each.
const ARCHES: &[(&str, &str)] = &[
    ("aarch64", "aarch64"),
    ("alpha", "alpha"),
    ("armv6l", "arm"),
    ("armv7l", "arm"),
    ("armv7b", "arm"),
    ("cris", "cris"),
    ("i686", "i386"),
    ("ia64", "ia64"),
    ("lm32", "lm32"),
    ("loongarch64", "loongarch64"),
    ("m68k", "m68k"),
    ("microblaze", "microblaze"),
    ("microblazeel", "microblazeel"),
    ("mips", "mips"),
    ("mipsel", "mipsel"),
    ("mips64", "mips64"),
    ("mips64el", "mips64el"),
    ("openrisc", "or1k"),
    ("parisc", "hppa"),
    ("parisc64", "hppa"),
    ("ppc", "ppc"),
    ("ppcle", "ppc"),
    ("ppc64", "ppc64"),
    ("ppc64le", "ppc64"),
    ("ppcemb", "ppcemb"),
    ("riscv32", "riscv32"),
    ("riscv64", "riscv64"),
    ("s390", "s390x"),
    ("s390x", "s390x"),
    ("sh4", "sh4"),
    ("sh4eb", "sh4eb"),
    ("sparc", "sparc"),
    ("sparc64", "sparc64"),
    ("unicore32", "unicore32"),
    ("x86_64", "x86_64"),
    ("xtensa", "xtensa"),
    ("xtensaeb", "xtensaeb"),
];

fn invalid(msg: String) -> VirtError {
    VirtError::new(
        ErrorCode::InvalidArg,
        ErrorDomain::Qemu,
        format!("invalid argument: {msg}"),
    )
}

/// The architecture a `qemu-system-SUFFIX` binary emulates.
fn arch_of_emulator(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?;
    let suffix = name.strip_prefix("qemu-system-")?;
    match suffix {
        "i386" => Some("i686"),
        "arm" => Some("armv7l"),
        "hppa" => Some("parisc"),
        "or1k" => Some("openrisc"),
        s => ARCHES.iter().find(|(a, _)| *a == s).map(|(a, _)| *a),
    }
}

fn is_x86(arch: &str) -> bool {
    arch == "x86_64" || arch == "i686"
}

/// `qemu-system-SUFFIX` on PATH (libvirt's virFindFileInPath).
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Step one of qemuConnectGetDomainCapabilities: validate the virt type
/// and arch and pick the emulator, before anything is probed.
pub fn pick_emulator(
    req: &Request,
    default_emulator: &Path,
) -> Result<(PathBuf, String), VirtError> {
    if !req.virttype.is_empty() && !VIRT_TYPES.contains(&req.virttype.as_str()) {
        return Err(invalid(format!("unknown virttype: {}", req.virttype)));
    }
    let arch = if req.arch.is_empty() {
        std::env::consts::ARCH.to_owned()
    } else {
        if !ARCHES.iter().any(|(a, _)| *a == req.arch) {
            return Err(invalid(format!("unknown architecture: {}", req.arch)));
        }
        req.arch.clone()
    };
    if !req.emulator.is_empty() {
        return Ok((PathBuf::from(&req.emulator), arch));
    }
    let default_arch = arch_of_emulator(default_emulator);
    if default_arch == Some(arch.as_str()) {
        return Ok((default_emulator.to_path_buf(), arch));
    }
    let suffix = ARCHES
        .iter()
        .find(|(a, _)| *a == arch)
        .map(|(_, s)| *s)
        .unwrap_or("x86_64");
    match find_in_path(&format!("qemu-system-{suffix}")) {
        Some(p) => Ok((p, arch)),
        None => Err(VirtError::new(
            ErrorCode::ConfigUnsupported,
            ErrorDomain::Qemu,
            format!(
                "unsupported configuration: unable to find any emulator to serve '{arch}' architecture"
            ),
        )),
    }
}

/// What the request resolves to once the emulator is probed.
#[derive(Debug, Clone)]
pub struct Resolved<'a> {
    pub arch: String,
    pub virttype: &'static str,
    pub machine: &'a MachineInfo,
}

/// Step two: arch against the emulator, virt type against KVM, machine
/// (alias or default) against QEMU's table, with libvirt's errors.
pub fn resolve<'a>(
    req: &Request,
    arch: &str,
    caps: &'a QemuCaps,
) -> Result<Resolved<'a>, VirtError> {
    let binary = caps.emulator.display().to_string();
    let emu_arch = arch_of_emulator(&caps.emulator).unwrap_or("x86_64");
    if emu_arch != arch && !(is_x86(emu_arch) && is_x86(arch)) {
        return Err(invalid(format!(
            "architecture from emulator '{emu_arch}' doesn't match given architecture '{arch}'"
        )));
    }
    let virttype = match req.virttype.as_str() {
        "" if caps.kvm => "kvm",
        "" | "qemu" => "qemu",
        "kvm" if caps.kvm => "kvm",
        other => {
            return Err(invalid(format!(
                "Emulator '{binary}' does not support virt type '{other}'"
            )));
        }
    };
    let machine = caps
        .canonical_machine(Some(req.machine.as_str()))
        .filter(|m| m.name != "none")
        .ok_or_else(|| {
            invalid(format!(
                "the machine '{}' is not supported by emulator '{binary}'",
                req.machine
            ))
        })?;
    Ok(Resolved {
        arch: arch.to_owned(),
        virttype,
        machine,
    })
}

/// swtpm's answers, for the TPM emulator backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swtpm {
    pub present: bool,
    pub versions: Vec<&'static str>,
}

impl Swtpm {
    /// `swtpm` on PATH; TPM versions from `swtpm_setup --print-capabilities`.
    pub fn detect() -> Swtpm {
        if find_in_path("swtpm").is_none() {
            return Swtpm::default();
        }
        let caps = find_in_path("swtpm_setup")
            .and_then(|p| {
                std::process::Command::new(p)
                    .arg("--print-capabilities")
                    .stdin(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .output()
                    .ok()
            })
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let versions = [("\"tpm-1.2\"", "1.2"), ("\"tpm-2.0\"", "2.0")]
            .iter()
            .filter(|(k, _)| caps.contains(k))
            .map(|(_, v)| *v)
            .collect();
        Swtpm {
            present: true,
            versions,
        }
    }
}

/// Everything outside QEMU the document depends on.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    pub firmware: Vec<Firmware>,
    pub swtpm: Swtpm,
}

impl HostFacts {
    pub fn detect() -> HostFacts {
        HostFacts {
            firmware: crate::firmware::system_descriptors(),
            swtpm: Swtpm::detect(),
        }
    }
}

fn value(v: &str) -> Element {
    Element::new("value").with_text(v)
}

/// `<enum name=N>` with the values whose condition holds, in order.
fn enum_of(name: &str, values: &[(&str, bool)]) -> Element {
    let mut e = Element::new("enum").with_attr("name", name);
    for (v, on) in values {
        if *on {
            e = e.with_child(value(v));
        }
    }
    e
}

fn supported(name: &str, yes: bool) -> Element {
    Element::new(name).with_attr("supported", if yes { "yes" } else { "no" })
}

/// The document for a resolved request.
pub fn format(caps: &QemuCaps, r: &Resolved<'_>, host: &HostFacts) -> String {
    let kvm = r.virttype == "kvm";
    let mut vcpu_max = r.machine.cpu_max;
    if let (true, Some(limit)) = (kvm, caps.features.kvm_max_vcpus) {
        vcpu_max = vcpu_max.min(limit);
    }
    Element::new("domainCapabilities")
        .with_child(Element::new("path").with_text(caps.emulator.display().to_string()))
        .with_child(Element::new("domain").with_text(r.virttype))
        .with_child(Element::new("machine").with_text(r.machine.name.clone()))
        .with_child(Element::new("arch").with_text(r.arch.clone()))
        .with_child(Element::new("vcpu").with_attr("max", vcpu_max.to_string()))
        .with_child(supported("iothreads", caps.features.has_type("iothread")))
        .with_child(os(r, host))
        .with_child(cpu(caps, kvm))
        .with_child(memory_backing(caps))
        .with_child(devices(caps, r, host))
        .with_child(features(caps, r, kvm))
        .to_xml()
}

fn os(r: &Resolved<'_>, host: &HostFacts) -> Element {
    let fw: Vec<&Firmware> = host
        .firmware
        .iter()
        .filter(|f| f.serves(&r.arch, &r.machine.name))
        .collect();
    let has = |i: &str| fw.iter().any(|f| f.interfaces.iter().any(|x| x == i));
    let mut loader = supported("loader", true);
    let mut seen = Vec::new();
    for f in &fw {
        if !seen.contains(&&f.executable) {
            seen.push(&f.executable);
            loader = loader.with_child(value(&f.executable));
        }
    }
    let secure = fw
        .iter()
        .any(|f| f.features.iter().any(|x| x == "secure-boot"));
    loader = loader
        .with_child(enum_of("type", &[("rom", true), ("pflash", true)]))
        .with_child(enum_of("readonly", &[("yes", true), ("no", true)]))
        .with_child(enum_of("secure", &[("yes", secure), ("no", true)]));
    supported("os", true)
        .with_child(enum_of(
            "firmware",
            &[("bios", has("bios")), ("efi", has("uefi"))],
        ))
        .with_child(loader)
}

/// libvirt's names for the QEMU CPU features whose spelling differs.
fn libvirt_feature(qemu: &str) -> &str {
    match qemu {
        "cmp-legacy" => "cmp_legacy",
        "ds-cpl" => "ds_cpl",
        "fxsr-opt" => "fxsr_opt",
        "kvm-pv-eoi" => "kvm_pv_eoi",
        "kvm-pv-unhalt" => "kvm_pv_unhalt",
        "lahf-lm" => "lahf_lm",
        "nodeid-msr" => "nodeid_msr",
        "pclmulqdq" => "pclmuldq",
        "perfctr-core" => "perfctr_core",
        "perfctr-nb" => "perfctr_nb",
        "tsc-adjust" => "tsc_adjust",
        other => other,
    }
}

/// The vendor libvirt's CPU map gives a model family: the generic models
/// have none, AMD's and Hygon's are named, the rest are Intel's.
fn vendor(model: &str) -> &'static str {
    let family = model.split("-v").next().unwrap_or(model);
    const GENERIC: &[&str] = &[
        "486", "pentium", "pentium2", "pentium3", "qemu32", "qemu64", "kvm32", "kvm64",
    ];
    if GENERIC.contains(&family) {
        "unknown"
    } else if family.starts_with("EPYC")
        || family.starts_with("Opteron")
        || family == "athlon"
        || family == "phenom"
    {
        "AMD"
    } else if family.starts_with("Dhyana") {
        "Hygon"
    } else if family.starts_with("YongFeng") {
        "Zhaoxin"
    } else {
        "Intel"
    }
}

fn custom_models(models: &[CpuDefinition]) -> Element {
    let mut sorted: Vec<&CpuDefinition> = models
        .iter()
        .filter(|m| !matches!(m.name.as_str(), "host" | "max" | "base"))
        .collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut mode = Element::new("mode")
        .with_attr("name", "custom")
        .with_attr("supported", if sorted.is_empty() { "no" } else { "yes" });
    for m in sorted {
        let usable = m.unavailable_features.is_empty();
        let mut el = Element::new("model").with_attr("usable", if usable { "yes" } else { "no" });
        if m.deprecated {
            el.set_attr("deprecated", "yes");
        }
        el.set_attr("vendor", vendor(&m.name));
        if let Some(c) = &m.alias_of {
            el.set_attr("canonical", c.clone());
        }
        mode = mode.with_child(el.with_text(m.name.clone()));
        if !usable {
            let mut names: Vec<&str> = m
                .unavailable_features
                .iter()
                .map(|f| libvirt_feature(f))
                .collect();
            names.sort_unstable();
            names.dedup();
            let mut b = Element::new("blockers").with_attr("model", m.name.clone());
            for n in names {
                b = b.with_child(Element::new("feature").with_attr("name", n));
            }
            mode = mode.with_child(b);
        }
    }
    mode
}

fn cpu(caps: &QemuCaps, kvm: bool) -> Element {
    let onoff = |n: &str| enum_of(n, &[("on", true), ("off", true)]);
    // libvirt asks the x86_64 CPU class for `migratable` (so an i386
    // binary, which has no such class, offers only "off").
    let migratable =
        caps.features.has_type("max-x86_64-cpu") && caps.features.cpu_props.contains("migratable");
    let passthrough = if kvm {
        Element::new("mode")
            .with_attr("name", "host-passthrough")
            .with_attr("supported", "yes")
            .with_child(enum_of(
                "hostPassthroughMigratable",
                &[("on", migratable), ("off", true)],
            ))
    } else {
        Element::new("mode")
            .with_attr("name", "host-passthrough")
            .with_attr("supported", "no")
    };
    let maximum = Element::new("mode")
        .with_attr("name", "maximum")
        .with_attr("supported", "yes")
        .with_child(onoff("maximumMigratable"));
    // libvirt decodes host-model against its CPU map; see the module doc.
    let host_model = Element::new("mode")
        .with_attr("name", "host-model")
        .with_attr("supported", "no");
    let models = if kvm {
        &caps.features.kvm_cpu_models
    } else {
        &caps.cpu_models
    };
    Element::new("cpu")
        .with_child(passthrough)
        .with_child(maximum)
        .with_child(host_model)
        .with_child(custom_models(models))
}

fn memory_backing(caps: &QemuCaps) -> Element {
    let t = |n: &str| caps.features.has_type(n);
    supported("memoryBacking", true).with_child(enum_of(
        "sourceType",
        &[
            ("file", t("memory-backend-file")),
            ("anonymous", t("memory-backend-ram")),
            ("memfd", t("memory-backend-memfd")),
        ],
    ))
}

/// i440fx and isapc have IDE on the board (qemuDomainMachineHasBuiltinIDE).
fn builtin_ide(machine: &str) -> bool {
    machine == "pc"
        || machine.starts_with("pc-0.")
        || machine.starts_with("pc-1.")
        || machine.starts_with("pc-i440fx-")
        || machine == "isapc"
}

fn devices(caps: &QemuCaps, r: &Resolved<'_>, host: &HostFacts) -> Element {
    let f = &caps.features;
    let t = |n: &str| f.has_type(n);
    let x86 = is_x86(&r.arch);
    let virtio_models = |base: bool| {
        let transitional = t("virtio-blk-pci-transitional");
        [
            ("virtio", base),
            ("virtio-transitional", base && transitional),
            ("virtio-non-transitional", base && transitional),
        ]
    };
    let disk = supported("disk", true)
        .with_child(enum_of(
            "diskDevice",
            &[
                ("disk", true),
                ("cdrom", true),
                ("floppy", x86),
                ("lun", true),
            ],
        ))
        .with_child(enum_of(
            "bus",
            &[
                ("ide", builtin_ide(&r.machine.name)),
                ("fdc", x86 && t("isa-fdc")),
                ("scsi", true),
                ("virtio", true),
                ("usb", t("usb-storage")),
                ("sata", t("ich9-ahci")),
            ],
        ))
        .with_child(enum_of("model", &virtio_models(true)));
    let graphics = supported("graphics", true).with_child(enum_of(
        "type",
        &[
            ("sdl", f.in_schema("sdl")),
            ("vnc", f.in_schema("query-vnc")),
            ("spice", f.in_schema("query-spice")),
            ("egl-headless", f.in_schema("egl-headless")),
            ("dbus", f.in_schema("dbus")),
        ],
    ));
    let video = supported("video", true).with_child(enum_of(
        "modelType",
        &[
            ("vga", t("VGA")),
            ("cirrus", t("cirrus-vga")),
            ("vmvga", t("vmware-svga")),
            ("qxl", t("qxl-vga")),
            ("virtio", t("virtio-vga") || t("virtio-gpu-pci")),
            ("none", true),
            ("bochs", t("bochs-display")),
            ("ramfb", t("ramfb")),
        ],
    ));
    let hostdev = supported("hostdev", true)
        .with_child(enum_of("mode", &[("subsystem", true)]))
        .with_child(enum_of(
            "startupPolicy",
            &[
                ("default", true),
                ("mandatory", true),
                ("requisite", true),
                ("optional", true),
            ],
        ))
        .with_child(enum_of(
            "subsysType",
            &[
                ("usb", t("usb-host")),
                ("pci", t("vfio-pci")),
                ("scsi", t("scsi-generic")),
            ],
        ))
        .with_child(enum_of("capsType", &[]))
        .with_child(enum_of(
            "pciBackend",
            &[
                ("default", Path::new("/dev/vfio/vfio").exists()),
                ("vfio", Path::new("/dev/vfio/vfio").exists()),
            ],
        ));
    let rng = supported("rng", t("virtio-rng-pci"))
        .with_child(enum_of("model", &virtio_models(t("virtio-rng-pci"))))
        .with_child(enum_of(
            "backendModel",
            &[
                ("random", t("rng-random")),
                ("egd", t("rng-egd")),
                ("builtin", t("rng-builtin")),
            ],
        ));
    let fs9p = t("virtio-9p-pci");
    let filesystem = supported("filesystem", true).with_child(enum_of(
        "driverType",
        &[
            ("path", fs9p),
            ("handle", fs9p),
            ("virtiofs", t("vhost-user-fs-pci")),
        ],
    ));
    let emulator = t("tpm-emulator") && host.swtpm.present;
    let mut tpm = supported("tpm", t("tpm-tis") || t("tpm-crb"))
        .with_child(enum_of(
            "model",
            &[("tpm-tis", t("tpm-tis")), ("tpm-crb", t("tpm-crb"))],
        ))
        .with_child(enum_of(
            "backendModel",
            &[
                ("passthrough", t("tpm-passthrough")),
                ("emulator", emulator),
                ("external", emulator),
            ],
        ));
    if emulator {
        let v = &host.swtpm.versions;
        tpm = tpm.with_child(enum_of(
            "backendVersion",
            &[("1.2", v.contains(&"1.2")), ("2.0", v.contains(&"2.0"))],
        ));
    }
    let redirdev = supported("redirdev", t("usb-redir"))
        .with_child(enum_of("bus", &[("usb", t("usb-redir"))]));
    let channel = supported("channel", true).with_child(enum_of(
        "type",
        &[
            ("pty", true),
            ("unix", true),
            ("spicevmc", f.in_schema("spicevmc")),
        ],
    ));
    let crypto = supported("crypto", t("virtio-crypto-pci"))
        .with_child(enum_of("model", &[("virtio", t("virtio-crypto-pci"))]))
        .with_child(enum_of("type", &[("qemu", true)]))
        .with_child(enum_of(
            "backendModel",
            &[("builtin", t("cryptodev-backend-builtin"))],
        ));
    let interface = supported("interface", true).with_child(enum_of(
        "backendType",
        &[("default", true), ("passt", f.in_schema("stream"))],
    ));
    let panic = supported("panic", true).with_child(enum_of(
        "model",
        &[
            ("isa", x86 && t("pvpanic")),
            ("hyperv", x86),
            ("pvpanic", t("pvpanic-pci")),
        ],
    ));
    Element::new("devices")
        .with_child(disk)
        .with_child(graphics)
        .with_child(video)
        .with_child(hostdev)
        .with_child(rng)
        .with_child(filesystem)
        .with_child(tpm)
        .with_child(redirdev)
        .with_child(channel)
        .with_child(crypto)
        .with_child(interface)
        .with_child(panic)
}

fn features(caps: &QemuCaps, r: &Resolved<'_>, kvm: bool) -> Element {
    let f = &caps.features;
    let x86 = is_x86(&r.arch);
    let sev = kvm && f.sev && f.has_type("sev-guest");
    let sgx = kvm && f.sgx && f.has_type("sgx-epc");
    let mut hyperv = supported("hyperv", x86 && f.cpu_props.contains("hv-spinlocks"));
    if x86 && f.cpu_props.contains("hv-spinlocks") {
        hyperv = hyperv.with_child(enum_of(
            "features",
            &[
                ("spinlocks", true),
                ("vendor_id", f.cpu_props.contains("hv-vendor-id")),
            ],
        ));
    }
    Element::new("features")
        .with_child(supported("gic", false))
        .with_child(supported("vmcoreinfo", f.has_type("vmcoreinfo")))
        .with_child(supported("genid", f.has_type("vmgenid")))
        .with_child(supported("backingStoreInput", f.in_schema("blockdev-add")))
        .with_child(supported(
            "backup",
            f.in_schema("blockdev-backup") && f.in_schema("block-dirty-bitmap-merge"),
        ))
        .with_child(supported("async-teardown", f.async_teardown))
        .with_child(supported("ps2", x86 && f.has_type("i8042")))
        .with_child(supported("sev", sev))
        .with_child(supported("sgx", sgx))
        .with_child(hyperv)
        .with_child(supported("launchSecurity", sev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked_as_libvirt_does() {
        let def = Path::new("/usr/bin/qemu-system-x86_64");
        let req = |virttype: &str, arch: &str| Request {
            virttype: virttype.into(),
            arch: arch.into(),
            ..Request::default()
        };
        let e = pick_emulator(&req("bogus", ""), def).expect_err("virttype");
        assert_eq!(e.message, "invalid argument: unknown virttype: bogus");
        let e = pick_emulator(&req("", "bogus"), def).expect_err("arch");
        assert_eq!(e.message, "invalid argument: unknown architecture: bogus");
        let (emu, arch) = pick_emulator(&req("kvm", ""), def).expect("defaults");
        assert_eq!(
            (emu.as_path(), arch.as_str()),
            (def, std::env::consts::ARCH)
        );
    }

    fn synthetic(types: &[&str], kvm_models: Vec<CpuDefinition>) -> QemuCaps {
        let m = |name: &str, alias: &str, cpu_max: u32, default: bool| MachineInfo {
            name: name.into(),
            alias: Some(alias.into()),
            cpu_max,
            is_default: default,
            deprecated: false,
        };
        QemuCaps {
            emulator: "/usr/bin/qemu-system-x86_64".into(),
            machines: vec![
                m("pc-i440fx-10.0", "pc", 255, true),
                m("pc-q35-10.0", "q35", 4096, false),
            ],
            cpu_models: Vec::new(),
            kvm: true,
            features: crate::probe::Features {
                types: types.iter().map(|t| (*t).to_owned()).collect(),
                kvm_cpu_models: kvm_models,
                kvm_max_vcpus: Some(1024),
                ..Default::default()
            },
        }
    }

    fn doc(caps: &QemuCaps, machine: &str, host: &HostFacts) -> String {
        let req = Request {
            machine: machine.into(),
            virttype: "kvm".into(),
            ..Request::default()
        };
        let r = resolve(&req, "x86_64", caps).expect("resolves");
        format(caps, &r, host)
    }

    #[test]
    fn document_follows_what_qemu_has() {
        let def = |name: &str, missing: &[&str], alias: Option<&str>| CpuDefinition {
            name: name.into(),
            deprecated: false,
            unavailable_features: missing.iter().map(|f| (*f).to_owned()).collect(),
            alias_of: alias.map(Into::into),
        };
        let caps = synthetic(
            &["ich9-ahci", "usb-storage", "isa-fdc", "VGA", "iothread"],
            vec![
                def("max", &[], None),
                def("qemu64", &["pni"], Some("qemu64-v1")),
                def("Westmere-v1", &["sse4.2", "pclmulqdq"], None),
                def("486", &[], Some("486-v1")),
            ],
        );
        let fw = parse_firmware(
            r#"{"interface-types":["uefi"],"mapping":{"device":"flash","executable":{"filename":"/fw/SB.fd"}},
               "targets":[{"architecture":"x86_64","machines":["pc-q35-*"]}],"features":["secure-boot"]}"#,
        )
        .expect("fw");
        let host = HostFacts {
            firmware: vec![fw],
            swtpm: Swtpm::default(),
        };
        let q35 = doc(&caps, "q35", &host);
        let pc = doc(&caps, "pc", &host);
        assert!(q35.contains("<machine>pc-q35-10.0</machine>"));
        assert!(q35.contains("<vcpu max='1024'/>"), "KVM's limit: {q35}");
        assert!(pc.contains("<vcpu max='255'/>"));
        assert!(q35.contains("<iothreads supported='yes'/>"));
        // Firmware only for the machines a descriptor names.
        assert!(q35.contains("<value>/fw/SB.fd</value>") && !pc.contains("/fw/SB.fd"));
        assert!(q35.contains("<value>efi</value>") && !pc.contains("<value>efi</value>"));
        // IDE only on i440fx; SATA and USB from their device types.
        assert!(pc.contains("<value>ide</value>") && !q35.contains("<value>ide</value>"));
        assert!(q35.contains("<value>sata</value>") && q35.contains("<value>usb</value>"));
        assert!(!q35.contains("<value>cirrus</value>") && q35.contains("<value>vga</value>"));
        // No swtpm: no emulator backend and no versions.
        assert!(!q35.contains("<value>emulator</value>") && !q35.contains("backendVersion"));
        // Custom models: sorted, canonical names, blockers in libvirt's
        // names, `max` left out.
        let i486 = q35
            .find("<model usable='yes' vendor='unknown' canonical='486-v1'>486</model>")
            .expect("486");
        let west = q35
            .find("<model usable='no' vendor='Intel'>Westmere-v1</model>")
            .expect("Westmere");
        let qemu64 = q35
            .find("<model usable='no' vendor='unknown' canonical='qemu64-v1'>qemu64</model>")
            .expect("qemu64");
        assert!(i486 < west && west < qemu64, "{q35}");
        assert!(q35.contains(
            "<blockers model='Westmere-v1'>\n        <feature name='pclmuldq'/>\n        <feature name='sse4.2'/>\n      </blockers>"
        ));
        assert!(!q35.contains(">max</model>"));
        assert!(q35.contains("<mode name='host-model' supported='no'/>"));
    }

    #[test]
    fn resolution_errors_name_the_emulator() {
        let caps = synthetic(&[], Vec::new());
        let msg = |req: Request| {
            resolve(&req, "x86_64", &caps)
                .expect_err("rejected")
                .message
        };
        assert_eq!(
            msg(Request {
                machine: "bogus".into(),
                ..Request::default()
            }),
            "invalid argument: the machine 'bogus' is not supported by emulator '/usr/bin/qemu-system-x86_64'"
        );
        assert!(resolve(&Request::default(), "aarch64", &caps).is_err());
        let r = resolve(&Request::default(), "x86_64", &caps).expect("defaults");
        assert_eq!(
            (r.machine.name.as_str(), r.virttype),
            ("pc-i440fx-10.0", "kvm")
        );
        let mut no_kvm = caps.clone();
        no_kvm.kvm = false;
        let r = resolve(&Request::default(), "x86_64", &no_kvm).expect("tcg");
        assert_eq!(r.virttype, "qemu");
        assert!(
            resolve(
                &Request {
                    virttype: "kvm".into(),
                    ..Request::default()
                },
                "x86_64",
                &no_kvm
            )
            .is_err()
        );
    }

    #[test]
    fn vendors_follow_libvirts_cpu_map() {
        assert_eq!(vendor("486-v1"), "unknown");
        assert_eq!(vendor("qemu64"), "unknown");
        assert_eq!(vendor("EPYC-Genoa-v2"), "AMD");
        assert_eq!(vendor("Dhyana"), "Hygon");
        assert_eq!(vendor("Skylake-Server-v1"), "Intel");
        assert_eq!(libvirt_feature("pclmulqdq"), "pclmuldq");
    }
}
