//! Firmware selection (libvirt's qemu_firmware.c): QEMU's firmware
//! descriptors (docs/interop/firmware.json, shipped by edk2/OVMF in
//! /usr/share/qemu/firmware) decide what `<os firmware='efi'>` means, and
//! complete a `<loader>` given by path: loader type, format and secure
//! flag, the NVRAM template and its format, the firmware features
//! (secure-boot, enrolled-keys), SMM when the firmware requires it, and
//! the guest's own NVRAM file under the service's state directory.
//!
//! This runs when a definition comes in (define, create, XML to native),
//! as libvirt's post-parse does; stored definitions are complete and are
//! not selected again, so their firmware stays what it was.

use crate::def::DomainDef;
use std::path::{Path, PathBuf};
use virtmesh_conf::{ConfError, Element, Node};

/// One firmware descriptor, the parts selection and domain capabilities
/// use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    pub interfaces: Vec<String>,
    /// `flash` (pflash), `memory` (a ROM) or `kernel`.
    pub device: String,
    /// Flash mapping mode: `split` (code + NVRAM template, the default),
    /// `combined` or `stateless`.
    pub mode: String,
    pub executable: String,
    pub executable_format: String,
    /// Flash in split mode: the NVRAM template and its format.
    pub nvram_template: Option<(String, String)>,
    pub targets: Vec<(String, Vec<String>)>,
    pub features: Vec<String>,
}

/// Descriptors from /etc/qemu/firmware and /usr/share/qemu/firmware, in
/// libvirt's order: by file name, a name in /etc hiding the same name in
/// /usr/share (an empty file there disables it).
pub fn firmware_descriptors(dirs: &[&Path]) -> Vec<Firmware> {
    let mut by_name = std::collections::BTreeMap::<String, PathBuf>::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") {
                by_name.entry(name).or_insert_with(|| e.path());
            }
        }
    }
    by_name
        .values()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| parse_firmware(&t))
        .collect()
}

/// The system's descriptors, where libvirt looks for them.
pub fn system_descriptors() -> Vec<Firmware> {
    firmware_descriptors(&[
        Path::new("/etc/qemu/firmware"),
        Path::new("/usr/share/qemu/firmware"),
    ])
}

fn strings(v: Option<&serde_json::Value>) -> Vec<String> {
    v.and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn str_of<'a>(v: Option<&'a serde_json::Value>, key: &str) -> Option<&'a str> {
    v?.get(key)?.as_str()
}

pub fn parse_firmware(text: &str) -> Option<Firmware> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let mapping = v.get("mapping")?;
    let device = str_of(Some(mapping), "device")
        .unwrap_or("flash")
        .to_owned();
    let exe = mapping.get("executable");
    let executable = str_of(exe, "filename")
        .or_else(|| str_of(Some(mapping), "filename"))?
        .to_owned();
    let mode = str_of(Some(mapping), "mode").unwrap_or("split").to_owned();
    let nvram = mapping.get("nvram-template");
    let nvram_template = str_of(nvram, "filename").map(|f| {
        (
            f.to_owned(),
            str_of(nvram, "format").unwrap_or("raw").to_owned(),
        )
    });
    let targets = v
        .get("targets")
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some((
                t.get("architecture")?.as_str()?.to_owned(),
                strings(t.get("machines")),
            ))
        })
        .collect();
    Some(Firmware {
        interfaces: strings(v.get("interface-types")),
        device,
        mode,
        executable,
        executable_format: str_of(exe, "format").unwrap_or("raw").to_owned(),
        nvram_template,
        targets,
        features: strings(v.get("features")),
    })
}

/// fnmatch(3) with `*` and `?`, as the descriptors' machine globs use.
pub(crate) fn glob(pat: &[u8], s: &[u8]) -> bool {
    match (pat.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&pat[1..], s) || (!s.is_empty() && glob(pat, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&pat[1..], &s[1..]),
        (Some(p), Some(c)) if p == c => glob(&pat[1..], &s[1..]),
        _ => false,
    }
}

impl Firmware {
    pub fn serves(&self, arch: &str, machine: &str) -> bool {
        self.targets
            .iter()
            .any(|(a, ms)| a == arch && ms.iter().any(|m| glob(m.as_bytes(), machine.as_bytes())))
    }

    fn has(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}

/// What selection needs from the host: the descriptors, and where a
/// guest's NVRAM goes (libvirt's /var/lib/libvirt/qemu/nvram).
#[derive(Debug, Clone, Default)]
pub struct FirmwareHost {
    pub descriptors: Vec<Firmware>,
    pub nvram_dir: PathBuf,
}

/// libvirt's `<os>` child order.
const OS_ORDER: &[&str] = &[
    "type",
    "firmware",
    "loader",
    "nvram",
    "varstore",
    "bootloader",
    "kernel",
    "initrd",
    "cmdline",
    "shim",
    "dtb",
    "acpi",
    "init",
    "*",
    "boot",
    "bootmenu",
    "smbios",
    "bios",
];

/// The firmware features libvirt knows, in its (enum) order.
const FEATURES: &[&str] = &["enrolled-keys", "secure-boot"];

/// A tristate attribute: Some(true) for yes, Some(false) for no.
fn yes_no(el: Option<&Element>, attr: &str) -> Option<bool> {
    match el?.attr(attr)? {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

/// What the domain asks of its firmware, read once.
struct Wants<'a> {
    os: &'a Element,
    loader: Option<&'a Element>,
    interface: Option<&'static str>,
    arch: String,
    machine: String,
    smm_off: bool,
    s3: bool,
    s4: bool,
    sev: bool,
}

impl<'a> Wants<'a> {
    fn of(root: &'a Element) -> Option<Wants<'a>> {
        let os = root.child("os")?;
        let loader = os.child("loader");
        let interface = match os.attr("firmware") {
            Some("efi") => Some("uefi"),
            Some("bios") => Some("bios"),
            _ => match loader.and_then(|l| l.attr("type")) {
                Some("rom") => Some("bios"),
                Some("pflash") => Some("uefi"),
                _ => None,
            },
        };
        let ty = os.child("type");
        let pm = root.child("pm");
        let suspend = |name: &str| {
            pm.and_then(|p| p.child(name))
                .and_then(|s| s.attr("enabled"))
                == Some("yes")
        };
        Some(Wants {
            os,
            loader,
            interface,
            arch: ty
                .and_then(|t| t.attr("arch"))
                .unwrap_or("x86_64")
                .to_owned(),
            machine: ty
                .and_then(|t| t.attr("machine"))
                .unwrap_or_default()
                .to_owned(),
            smm_off: root
                .child("features")
                .and_then(|f| f.child("smm"))
                .and_then(|s| s.attr("state"))
                == Some("off"),
            s3: suspend("suspend-to-mem"),
            s4: suspend("suspend-to-disk"),
            sev: root
                .child("launchSecurity")
                .is_some_and(|l| l.attr("type") == Some("sev")),
        })
    }

    fn feature(&self, name: &str) -> Option<bool> {
        let f = self.os.child("firmware")?;
        f.children_named("feature")
            .find(|e| e.attr("name") == Some(name))
            .and_then(|e| yes_no(Some(e), "enabled"))
    }

    /// qemuFirmwareMatchDomain.
    fn matches(&self, fw: &Firmware) -> bool {
        let Some(want) = self.interface else {
            return false;
        };
        if !fw.interfaces.iter().any(|i| i == want) {
            return false;
        }
        let loader = self.loader;
        let path = loader
            .map(|l| l.text().trim().to_owned())
            .filter(|p| !p.is_empty());
        let template = self
            .os
            .child("nvram")
            .and_then(|n| n.attr("template"))
            .map(str::to_owned);
        match fw.device.as_str() {
            "flash" => {
                if path.as_ref().is_some_and(|p| *p != fw.executable) {
                    return false;
                }
                if let Some(t) = &template
                    && (fw.mode != "split" || fw.nvram_template.as_ref().map(|(f, _)| f) != Some(t))
                {
                    return false;
                }
            }
            "memory" if path.as_ref().is_some_and(|p| *p != fw.executable) => return false,
            _ => {}
        }
        if !fw.serves(&self.arch, &self.machine) {
            return false;
        }
        if (self.s3 && !fw.has("acpi-s3")) || (self.s4 && !fw.has("acpi-s4")) {
            return false;
        }
        for (feature, has) in [
            ("secure-boot", fw.has("secure-boot")),
            ("enrolled-keys", fw.has("enrolled-keys")),
        ] {
            if self.feature(feature).is_some_and(|want| want != has) {
                return false;
            }
        }
        let secure = yes_no(loader, "secure");
        if fw.has("requires-smm") {
            if self.smm_off || secure == Some(false) {
                return false;
            }
        } else if secure == Some(true) {
            return false;
        }
        if fw.device == "flash" {
            let stateless = yes_no(loader, "stateless") == Some(true);
            if stateless != (fw.mode == "stateless") {
                return false;
            }
            if yes_no(loader, "readonly") == Some(false) && fw.mode != "combined" {
                return false;
            }
            let usable = |f: &str| f == "raw" || f == "qcow2";
            if !usable(&fw.executable_format)
                || loader
                    .and_then(|l| l.attr("format"))
                    .is_some_and(|f| f != fw.executable_format)
            {
                return false;
            }
            if fw.mode == "split" {
                let Some((_, tf)) = &fw.nvram_template else {
                    return false;
                };
                if !usable(tf)
                    || self
                        .os
                        .child("nvram")
                        .and_then(|n| n.attr("format"))
                        .is_some_and(|f| f != tf)
                {
                    return false;
                }
            }
        }
        if self.sev && !fw.has("amd-sev") {
            return false;
        }
        true
    }
}

fn os_mut(root: &mut Element) -> Option<&mut Element> {
    root.child_mut("os")
}

/// qemuFirmwareFillDomain for a definition coming in (libvirt's
/// abiUpdate): select, complete, and give the NVRAM a path.
pub fn fill(def: &mut DomainDef, host: &FirmwareHost) -> Result<(), ConfError> {
    let name = def.name();
    let root = def.element_mut();
    let Some(wants) = Wants::of(root) else {
        return Ok(());
    };
    let auto = wants.os.attr("firmware").is_some();
    for (el, what) in [(wants.loader, "loader"), (wants.os.child("nvram"), "nvram")] {
        if let Some(f) = el
            .and_then(|e| e.attr("format"))
            .filter(|f| *f != "raw" && *f != "qcow2")
        {
            return Err(ConfError::unsupported(format!(
                "Unsupported {what} format '{f}'"
            )));
        }
    }
    let rom = wants.loader.is_some_and(|l| l.attr("type") == Some("rom"));
    if !auto && (wants.loader.is_none() || rom) {
        return Ok(());
    }
    let chosen = host
        .descriptors
        .iter()
        .find(|fw| wants.matches(fw))
        .cloned();
    let kind = wants.os.attr("firmware").unwrap_or_default().to_owned();
    match chosen {
        Some(fw) => enable(root, &fw),
        None if auto => {
            return Err(ConfError::operation_failed(format!(
                "Unable to find '{kind}' firmware that is compatible with the current configuration"
            )));
        }
        // Custom firmware: raw unless said otherwise.
        None => {
            if let Some(l) = os_mut(root).and_then(|o| o.child_mut("loader"))
                && l.attr("format").is_none()
            {
                l.set_attr("format", "raw");
            }
        }
    }
    ensure_nvram(root, &name, &host.nvram_dir);
    if let Some(os) = os_mut(root) {
        if let Some(fwf) = os.child_mut("firmware") {
            fwf.sort_children_by(|e| {
                FEATURES
                    .iter()
                    .position(|f| e.attr("name") == Some(f))
                    .unwrap_or(FEATURES.len())
            });
        }
        if let Some(l) = os.child_mut("loader") {
            l.order_attrs(&["readonly", "secure", "type", "stateless", "format"]);
        }
        if let Some(n) = os.child_mut("nvram") {
            n.order_attrs(&["template", "templateFormat", "type", "format"]);
        }
        os.sort_children(OS_ORDER);
    }
    Ok(())
}

/// qemuFirmwareEnableFeaturesModern: the descriptor's files and
/// features into the definition.
fn enable(root: &mut Element, fw: &Firmware) {
    let requires_smm = fw.has("requires-smm");
    if requires_smm {
        let features = root.child_or_insert("features");
        if features.child("smm").is_none() {
            features
                .children
                .push(Node::Element(Element::new("smm").with_attr("state", "on")));
            features.sort_children(crate::def::FEATURE_ORDER);
        }
    }
    let Some(os) = os_mut(root) else { return };
    match fw.device.as_str() {
        "flash" => {
            let loader = os.child_or_insert("loader");
            loader.set_attr("readonly", "yes");
            loader.set_attr("type", "pflash");
            loader.set_attr("format", fw.executable_format.clone());
            loader.set_text(fw.executable.clone());
            if requires_smm {
                loader.set_attr("secure", "yes");
            }
            if fw.mode == "split"
                && let Some((template, format)) = &fw.nvram_template
            {
                let nvram = os.child_or_insert("nvram");
                nvram.set_attr("template", template.clone());
                nvram.set_attr("templateFormat", format.clone());
            }
        }
        "memory" => {
            let loader = os.child_or_insert("loader");
            loader.set_attr("type", "rom");
            loader.set_text(fw.executable.clone());
        }
        _ => {}
    }
    if os.attr("firmware").is_none()
        && let Some(kind) = fw.interfaces.iter().find_map(|i| match i.as_str() {
            "uefi" => Some("efi"),
            "bios" => Some("bios"),
            _ => None,
        })
    {
        os.set_attr("firmware", kind);
    }
    if os.attr("firmware").is_some() {
        // qemuFirmwareSetOsFeatures: the features the firmware has.
        let pflash_local = os.child("loader").is_some_and(|l| {
            l.attr("type") == Some("pflash") && l.attr("stateless") != Some("yes")
        });
        let no_template = os.child("nvram").and_then(|n| n.attr("template")).is_none();
        let mut list = Element::new("firmware");
        for name in FEATURES {
            if *name == "enrolled-keys" && pflash_local && no_template {
                continue;
            }
            list = list.with_child(
                Element::new("feature")
                    .with_attr("enabled", if fw.has(name) { "yes" } else { "no" })
                    .with_attr("name", *name),
            );
        }
        os.remove_children("firmware");
        os.children.push(Node::Element(list));
    }
}

/// qemuFirmwareEnsureNVRAM: a read-only pflash loader with state gets an
/// NVRAM file of the guest's own, `NVRAM_DIR/NAME_VARS.fd`.
fn ensure_nvram(root: &mut Element, name: &str, nvram_dir: &Path) {
    let Some(os) = os_mut(root) else { return };
    let Some(loader) = os.child("loader") else {
        return;
    };
    if loader.attr("type") != Some("pflash")
        || loader.attr("readonly") != Some("yes")
        || loader.attr("stateless") == Some("yes")
    {
        return;
    }
    let format = loader.attr("format").unwrap_or("raw").to_owned();
    let nvram = os.child_or_insert("nvram");
    if nvram.attr("format").is_none() {
        nvram.set_attr("format", format.clone());
    }
    if !nvram.text().trim().is_empty() || nvram.child("source").is_some() {
        return;
    }
    let template_raw = nvram.attr("template").is_some_and(|t| t.ends_with(".raw"));
    let ext = match format.as_str() {
        "raw" if template_raw => ".raw",
        "raw" => ".fd",
        "qcow2" => ".qcow2",
        _ => "",
    };
    nvram.set_text(format!("{}/{name}_VARS{ext}", nvram_dir.display()));
}

/// The NVRAM a running guest needs: `(path, template)` of a pflash
/// loader's local NVRAM file, if it has one.
pub fn nvram_of(def: &DomainDef) -> Option<(PathBuf, Option<PathBuf>)> {
    let os = def.element().child("os")?;
    let nvram = os.child("nvram")?;
    let path = nvram.text().trim().to_owned();
    if path.is_empty() {
        return None;
    }
    Some((
        PathBuf::from(path),
        nvram.attr("template").map(PathBuf::from),
    ))
}

/// Create a guest's NVRAM from its template when it has none yet
/// (libvirt's qemuPrepareNVRAMFile): copied to a temporary name and
/// renamed, so a crash never leaves a half-written store behind.
pub fn prepare_nvram(def: &DomainDef) -> Result<(), String> {
    let Some((path, template)) = nvram_of(def) else {
        return Ok(());
    };
    if path.exists() {
        return Ok(());
    }
    let Some(template) = template else {
        return Err(format!(
            "unable to find any master var store for loader: {}",
            def.element()
                .child("os")
                .and_then(|o| o.child_text("loader"))
                .unwrap_or_default()
                .trim()
        ));
    };
    let data = std::fs::read(&template)
        .map_err(|e| format!("Failed to open file '{}': {e}", template.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create directory '{}': {e}", dir.display()))?;
    }
    virtmesh_util::fs::write_atomic(&path, &data)
        .map_err(|e| format!("Unable to create '{}': {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_fnmatch() {
        assert!(glob(b"pc-q35-*", b"pc-q35-10.0"));
        assert!(!glob(b"pc-q35-*", b"pc-i440fx-10.0"));
        assert!(glob(b"pc-i440fx-?0.0", b"pc-i440fx-10.0"));
    }

    #[test]
    fn firmware_descriptor_parses() {
        let fw = parse_firmware(
            r#"{"interface-types":["uefi"],"mapping":{"device":"flash","executable":{"filename":"/x/CODE.fd","format":"raw"},
               "nvram-template":{"filename":"/x/VARS.fd","format":"raw"}},
               "targets":[{"architecture":"x86_64","machines":["pc-q35-*"]}],"features":["secure-boot"]}"#,
        )
        .expect("parses");
        assert_eq!(fw.executable, "/x/CODE.fd");
        assert_eq!(fw.mode, "split");
        assert_eq!(
            fw.nvram_template,
            Some(("/x/VARS.fd".to_owned(), "raw".to_owned()))
        );
        assert!(fw.serves("x86_64", "pc-q35-10.0"));
        assert!(!fw.serves("x86_64", "pc-i440fx-10.0"));
        assert!(parse_firmware("not json").is_none());
    }

    fn descriptor(code: &str, vars: &str, machines: &str, features: &str) -> Firmware {
        parse_firmware(&format!(
            r#"{{"interface-types":["uefi"],"mapping":{{"device":"flash","executable":{{"filename":"{code}","format":"raw"}},
               "nvram-template":{{"filename":"{vars}","format":"raw"}}}},
               "targets":[{{"architecture":"x86_64","machines":[{machines}]}}],"features":[{features}]}}"#
        ))
        .expect("descriptor")
    }

    /// Debian's three OVMF descriptors, in their file-name order.
    fn debian() -> FirmwareHost {
        FirmwareHost {
            descriptors: vec![
                descriptor(
                    "/ovmf/CODE.ms.fd",
                    "/ovmf/VARS.ms.fd",
                    r#""pc-q35-*""#,
                    r#""acpi-s3","enrolled-keys","requires-smm","secure-boot""#,
                ),
                descriptor(
                    "/ovmf/CODE.secboot.fd",
                    "/ovmf/VARS.fd",
                    r#""pc-q35-*""#,
                    r#""acpi-s3","requires-smm","secure-boot""#,
                ),
                descriptor(
                    "/ovmf/CODE.fd",
                    "/ovmf/VARS.fd",
                    r#""pc-i440fx-*","pc-q35-*""#,
                    r#""acpi-s3""#,
                ),
            ],
            nvram_dir: PathBuf::from("/state/nvram"),
        }
    }

    fn filled(os: &str, features: &str) -> Result<String, ConfError> {
        let mut def = DomainDef::parse(&format!(
            "<domain type='kvm'><name>g</name><memory unit='MiB'>256</memory>\
             <features><acpi/>{features}</features>{os}</domain>"
        ))
        .expect("valid");
        fill(&mut def, &debian())?;
        let xml = def.to_xml(None);
        let start = xml.find("<os").unwrap_or(0);
        let end = xml.find("</features>").map_or(xml.len(), |e| e + 11);
        Ok(xml[start..end].to_owned())
    }

    #[test]
    fn plain_efi_takes_the_first_match_and_its_smm() {
        let xml = filled(
            "<os firmware='efi'><type arch='x86_64' machine='q35'>hvm</type></os>",
            "",
        )
        .expect("filled");
        assert!(
            xml.contains("<loader readonly='yes' secure='yes' type='pflash' format='raw'>/ovmf/CODE.ms.fd</loader>"),
            "{xml}"
        );
        assert!(
            xml.contains("<nvram template='/ovmf/VARS.ms.fd' templateFormat='raw' format='raw'>/state/nvram/g_VARS.fd</nvram>"),
            "{xml}"
        );
        assert!(
            xml.contains("<feature enabled='yes' name='enrolled-keys'/>\n      <feature enabled='yes' name='secure-boot'/>"),
            "{xml}"
        );
        assert!(xml.contains("<smm state='on'/>"), "{xml}");
    }

    #[test]
    fn features_and_smm_narrow_the_choice() {
        let no_sb = filled(
            "<os firmware='efi'><type arch='x86_64' machine='q35'>hvm</type><firmware>\
             <feature enabled='no' name='secure-boot'/></firmware></os>",
            "",
        )
        .expect("filled");
        assert!(no_sb.contains(">/ovmf/CODE.fd</loader>"), "{no_sb}");
        assert!(
            !no_sb.contains("secure='yes'") && !no_sb.contains("<smm"),
            "{no_sb}"
        );
        let smm_off = filled(
            "<os firmware='efi'><type arch='x86_64' machine='q35'>hvm</type></os>",
            "<smm state='off'/>",
        )
        .expect("filled");
        assert!(smm_off.contains(">/ovmf/CODE.fd</loader>"), "{smm_off}");
        // i440fx: only the non-SMM build serves it.
        let pc = filled(
            "<os firmware='efi'><type arch='x86_64' machine='pc'>hvm</type><firmware>\
             <feature enabled='yes' name='secure-boot'/></firmware></os>",
            "",
        )
        .expect_err("no secure-boot firmware for pc");
        assert_eq!(
            pc.message,
            "operation failed: Unable to find 'efi' firmware that is compatible with the current configuration"
        );
    }

    #[test]
    fn a_loader_path_is_completed_from_its_descriptor() {
        let xml = filled(
            "<os><type arch='x86_64' machine='q35'>hvm</type>\
             <loader readonly='yes' type='pflash'>/ovmf/CODE.fd</loader></os>",
            "",
        )
        .expect("filled");
        assert!(xml.starts_with("<os firmware='efi'>"), "{xml}");
        assert!(
            xml.contains("<nvram template='/ovmf/VARS.fd' templateFormat='raw' format='raw'>/state/nvram/g_VARS.fd</nvram>"),
            "{xml}"
        );
        // A custom build no descriptor names: raw, NVRAM path only.
        let custom = filled(
            "<os><type arch='x86_64' machine='q35'>hvm</type>\
             <loader readonly='yes' type='pflash'>/custom/CODE.fd</loader></os>",
            "",
        )
        .expect("filled");
        assert!(
            custom.contains("<loader readonly='yes' type='pflash' format='raw'>/custom/CODE.fd</loader>\n    <nvram format='raw'>/state/nvram/g_VARS.fd</nvram>"),
            "{custom}"
        );
    }

    #[test]
    fn nvram_is_made_from_its_template_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let template = dir.path().join("VARS.fd");
        std::fs::write(&template, b"template").expect("template");
        let nvram = dir.path().join("nvram/g_VARS.fd");
        let def = DomainDef::parse(&format!(
            "<domain type='kvm'><name>g</name><memory unit='MiB'>256</memory><features><acpi/></features>\
             <os><type arch='x86_64' machine='q35'>hvm</type>\
             <loader readonly='yes' type='pflash'>/x/CODE.fd</loader>\
             <nvram template='{}'>{}</nvram></os></domain>",
            template.display(),
            nvram.display()
        ))
        .expect("valid");
        prepare_nvram(&def).expect("made");
        assert_eq!(std::fs::read(&nvram).expect("nvram"), b"template");
        std::fs::write(&nvram, b"guest wrote this").expect("guest");
        prepare_nvram(&def).expect("kept");
        assert_eq!(std::fs::read(&nvram).expect("nvram"), b"guest wrote this");
    }
}
