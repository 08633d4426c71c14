//! Domain XML: parse into the fields drivers need, keep everything else,
//! and normalise to libvirt's canonical form (element order, defaults that
//! libvirt's parser adds, memory in KiB).

use crate::ConfError;
use crate::error::{parse_root, parse_uuid};
use crate::units::scale_to_kib;
use crate::xml::{Element, Node};

/// libvirt's order of the top-level elements of `<domain>`; unknown
/// elements (e.g. hypervisor namespaces) go last.
const TOP_ORDER: &[&str] = &[
    "name",
    "uuid",
    "genid",
    "title",
    "description",
    "metadata",
    "maxMemory",
    "memory",
    "currentMemory",
    "blkiotune",
    "memtune",
    "memoryBacking",
    "vcpu",
    "vcpus",
    "throttlegroups",
    "iothreads",
    "iothreadids",
    "defaultiothread",
    "cputune",
    "numatune",
    "resource",
    "sysinfo",
    "bootloader",
    "bootloader_args",
    "os",
    "idmap",
    "features",
    "cpu",
    "clock",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "on_lockfailure",
    "pm",
    "perf",
    "devices",
    "seclabel",
    "keywrap",
    "launchSecurity",
];

const OS_TYPES: &[&str] = &["hvm", "xen", "linux", "exe", "uml", "xenpvh"];
const DOMAIN_TYPES: &[&str] = &[
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
    "ch",
    "hvf",
];

/// A domain definition.  The tree is always in canonical form; the
/// accessors read and write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainDef {
    root: Element,
}

fn parse_u64(el: &Element, what: &str) -> Result<u64, ConfError> {
    let text = el.text();
    text.trim().parse::<u64>().map_err(|_| {
        ConfError::xml(format!(
            "Invalid value '{}' for element or attribute '{what}'",
            text.trim()
        ))
    })
}

fn memory_kib(root: &Element, name: &str) -> Result<Option<u64>, ConfError> {
    match root.child(name) {
        None => Ok(None),
        Some(el) => {
            let value = parse_u64(el, &format!("./{name}[1]"))?;
            Ok(Some(scale_to_kib(value, el.attr("unit"))?))
        }
    }
}

fn kib_element(name: &str, kib: u64) -> Element {
    Element::new(name)
        .with_attr("unit", "KiB")
        .with_text(kib.to_string())
}

/// Set or replace a top-level child, keeping others.
fn replace_child(root: &mut Element, el: Element) {
    match root
        .children
        .iter_mut()
        .find(|n| matches!(n, Node::Element(e) if e.name == el.name))
    {
        Some(slot) => *slot = Node::Element(el),
        None => root.children.push(Node::Element(el)),
    }
}

impl DomainDef {
    /// Parse and normalise a domain document.
    pub fn parse(xml: &str) -> Result<Self, ConfError> {
        let root = parse_root(xml, "domain")?;
        Self::from_element(root)
    }

    pub fn from_element(mut root: Element) -> Result<Self, ConfError> {
        // Runtime attributes never come from the user, and namespaces the
        // test driver has no parser for (qemu:, ...) are ignored.
        root.attrs.retain(|(k, _)| k == "type");
        match root.attr("type") {
            None => return Err(ConfError::internal("missing domain type attribute")),
            Some(t) if !DOMAIN_TYPES.contains(&t) => {
                return Err(ConfError::unsupported(format!("invalid domain type {t}")));
            }
            Some(_) => {}
        }
        let name = root
            .child_text("name")
            .map(|n| n.trim().to_owned())
            .unwrap_or_default();
        if name.is_empty() {
            return Err(ConfError::no_name());
        }
        if name.contains('/') {
            return Err(ConfError::xml(format!("name {name} cannot contain '/'")));
        }
        root.set_child_text("name", name);
        let uuid = parse_uuid(root.child_text("uuid"))?;
        root.set_child_text("uuid", uuid.to_string());

        Self::normalize_memory(&mut root)?;
        Self::normalize_vcpu(&mut root)?;
        Self::normalize_os(&mut root)?;
        Self::normalize_lifecycle(&mut root)?;
        Self::normalize_devices(&mut root)?;
        for sec in root.elements_mut().filter(|e| e.name == "seclabel") {
            if sec.attr("relabel").is_none() {
                let relabel = if sec.attr("type") == Some("static") {
                    "no"
                } else {
                    "yes"
                };
                if sec.attr("type").is_some() && sec.attr("type") != Some("none") {
                    sec.set_attr("relabel", relabel);
                }
            }
        }
        crate::domain_misc::normalize(&mut root)?;
        // libvirt's parser ignores elements it does not know.
        root.children
            .retain(|n| matches!(n, Node::Element(e) if TOP_ORDER.contains(&e.name.as_str())));
        root.sort_children(TOP_ORDER);
        Ok(DomainDef { root })
    }

    /// libvirt's generic `<memory>`/`<currentMemory>`/`<maxMemory>`
    /// post-parse: sizes in KiB, a missing or too large current size is
    /// the maximum, `dumpCore` is kept.
    pub fn normalize_memory(root: &mut Element) -> Result<(), ConfError> {
        let memory = memory_kib(root, "memory")?.unwrap_or(0);
        if memory == 0 {
            return Err(ConfError::xml(
                "Memory size must be specified via <memory> or in the <numa> configuration",
            ));
        }
        let current = memory_kib(root, "currentMemory")?.unwrap_or(memory);
        let current = if current == 0 || current > memory {
            memory
        } else {
            current
        };
        let mut mem_el = kib_element("memory", memory);
        if let Some(dmc) = root.child("memory").and_then(|m| m.attr("dumpCore")) {
            mem_el = Element::new("memory")
                .with_attr("unit", "KiB")
                .with_attr("dumpCore", dmc)
                .with_text(memory.to_string());
        }
        replace_child(root, mem_el);
        replace_child(root, kib_element("currentMemory", current));
        if let Some(max) = root.child("maxMemory").cloned() {
            let kib = scale_to_kib(parse_u64(&max, "./maxMemory[1]")?, max.attr("unit"))?;
            let mut el = Element::new("maxMemory");
            if let Some(s) = max.attr("slots") {
                el.set_attr("slots", s);
            }
            el.set_attr("unit", "KiB");
            el.set_text(kib.to_string());
            replace_child(root, el);
        }
        Ok(())
    }

    fn normalize_vcpu(root: &mut Element) -> Result<(), ConfError> {
        Self::normalize_vcpu_with(root, "CPU IDs in <numa> exceed the <vcpu> count", true)
    }

    /// `<vcpu>` normalisation: count, placement (validated when
    /// `check_placement`), cpuset and a `current` below the count.
    /// `zero_count` is the internal error a count of 0 gives, which
    /// differs between drivers.
    pub fn normalize_vcpu_with(
        root: &mut Element,
        zero_count: &str,
        check_placement: bool,
    ) -> Result<(), ConfError> {
        let old = root
            .child("vcpu")
            .cloned()
            .unwrap_or_else(|| Element::new("vcpu").with_text("1"));
        let count: u32 = old
            .text()
            .trim()
            .parse()
            .map_err(|_| ConfError::xml("maximum vcpus count must be an integer"))?;
        if count == 0 {
            return Err(ConfError::internal(zero_count));
        }
        let placement = old.attr("placement").unwrap_or("static").to_owned();
        if check_placement && placement != "static" && placement != "auto" {
            return Err(ConfError::xml(format!(
                "Invalid value for attribute 'placement' in element 'vcpu': '{placement}'."
            )));
        }
        let mut el = Element::new("vcpu").with_attr("placement", placement);
        if let Some(cpuset) = old.attr("cpuset") {
            el.set_attr("cpuset", cpuset);
        }
        if let Some(cur) = old.attr("current") {
            let cur: u32 = cur
                .parse()
                .map_err(|_| ConfError::xml("current vcpus count must be an integer"))?;
            if cur > count {
                return Err(ConfError::unsupported(
                    "maximum vCPU count must not be less than current vCPU count",
                ));
            }
            if cur != count {
                el.set_attr("current", cur.to_string());
            }
        }
        el.set_text(count.to_string());
        replace_child(root, el);
        Ok(())
    }

    fn normalize_os(root: &mut Element) -> Result<(), ConfError> {
        let devices_have_boot = root
            .child("devices")
            .map(|d| d.elements().any(|dev| dev.child("boot").is_some()))
            .unwrap_or(false);
        let os = root
            .child_mut("os")
            .ok_or_else(|| ConfError::xml("an os <type> must be specified"))?;
        let ty = os
            .child_mut("type")
            .ok_or_else(|| ConfError::xml("an os <type> must be specified"))?;
        let os_type = ty.text().trim().to_owned();
        if os_type.is_empty() {
            return Err(ConfError::xml("an os <type> must be specified"));
        }
        if !OS_TYPES.contains(&os_type.as_str()) {
            return Err(ConfError::unsupported(format!(
                "unknown OS type '{os_type}'"
            )));
        }
        ty.set_text(os_type.clone());
        if ty.attr("arch").is_none() {
            // The test driver's capabilities offer i686 guests only.
            ty.set_attr("arch", "i686");
        }
        ty.order_attrs(&["arch", "machine"]);
        for boot in os.children_named("boot") {
            let dev = boot.attr("dev").unwrap_or("");
            if !["fd", "cdrom", "hd", "network"].contains(&dev) {
                return Err(ConfError::xml(format!(
                    "Invalid value for attribute 'dev' in element 'boot': '{dev}'."
                )));
            }
        }
        let has_boot = os.child("boot").is_some();
        if has_boot && devices_have_boot {
            return Err(ConfError::unsupported(
                "per-device boot elements cannot be used together with os/boot elements",
            ));
        }
        if !has_boot && !devices_have_boot && os_type == "hvm" {
            let pos = os
                .children
                .iter()
                .position(|n| matches!(n, Node::Element(e) if matches!(e.name.as_str(), "bootmenu" | "smbios" | "bios" | "cmdline" | "initrd" | "dtb" | "acpi")))
                .unwrap_or(os.children.len());
            os.children.insert(
                pos,
                Node::Element(Element::new("boot").with_attr("dev", "hd")),
            );
        }
        os.sort_children(&[
            "firmware",
            "type",
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
        ]);
        Ok(())
    }

    fn normalize_lifecycle(root: &mut Element) -> Result<(), ConfError> {
        let clock = root.child_or_insert("clock");
        let offset = clock.attr("offset").unwrap_or("utc").to_owned();
        if !["utc", "localtime", "timezone", "variable", "absolute"].contains(&offset.as_str()) {
            return Err(ConfError::unsupported(format!(
                "unknown clock offset '{offset}'"
            )));
        }
        clock.set_attr("offset", offset);
        clock.order_attrs(&["offset"]);
        let basic = ["destroy", "restart", "preserve", "rename-restart"];
        for (name, default) in [
            ("on_poweroff", "destroy"),
            ("on_reboot", "restart"),
            ("on_crash", "destroy"),
        ] {
            let el = root.child_or_insert(name);
            let value = el.text().trim().to_owned();
            let value = if value.is_empty() {
                default.to_owned()
            } else {
                value
            };
            let ok = basic.contains(&value.as_str())
                || (name == "on_crash"
                    && ["coredump-destroy", "coredump-restart"].contains(&value.as_str()));
            if !ok {
                return Err(ConfError::unsupported(format!(
                    "unknown {name} action: {value}"
                )));
            }
            el.set_text(value);
        }
        Ok(())
    }

    fn normalize_devices(root: &mut Element) -> Result<(), ConfError> {
        crate::devices::validate_clock(root)?;
        crate::devices::normalize(root.child_or_insert("devices"))
    }

    /// The canonical tree.
    pub fn element(&self) -> &Element {
        &self.root
    }

    /// The XML as libvirt formats it; `id` is set for running domains.
    pub fn to_xml(&self, id: Option<i32>) -> String {
        self.to_xml_flags(id, false)
    }

    /// Like [`DomainDef::to_xml`]; without `secure`, passwords are left out
    /// as libvirt does without VIR_DOMAIN_XML_SECURE.
    pub fn to_xml_flags(&self, id: Option<i32>, secure: bool) -> String {
        let mut root = self.root.clone();
        if !secure && let Some(devs) = root.child_mut("devices") {
            for g in devs.elements_mut().filter(|e| e.name == "graphics") {
                g.remove_attr("passwd");
            }
        }
        if let Some(id) = id {
            root.set_attr("id", id.to_string());
            root.order_attrs(&["type", "id"]);
        }
        root.to_xml()
    }

    pub fn name(&self) -> String {
        self.root.child_text("name").unwrap_or_default()
    }

    pub fn uuid(&self) -> String {
        self.root.child_text("uuid").unwrap_or_default()
    }

    pub fn virt_type(&self) -> String {
        self.root.attr("type").unwrap_or("test").to_owned()
    }

    fn kib(&self, name: &str) -> u64 {
        self.root
            .child_text(name)
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// `<memory>` in KiB.
    pub fn max_memory_kib(&self) -> u64 {
        self.kib("memory")
    }

    /// `<currentMemory>` in KiB.
    pub fn current_memory_kib(&self) -> u64 {
        self.kib("currentMemory")
    }

    pub fn set_max_memory_kib(&mut self, kib: u64) {
        replace_child(&mut self.root, kib_element("memory", kib));
        if self.current_memory_kib() > kib {
            self.set_current_memory_kib(kib);
        }
    }

    pub fn set_current_memory_kib(&mut self, kib: u64) {
        replace_child(&mut self.root, kib_element("currentMemory", kib));
    }

    /// Maximum vCPUs (`<vcpu>` text).
    pub fn max_vcpus(&self) -> u32 {
        self.root
            .child_text("vcpu")
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(1)
    }

    /// Current vCPUs (`current=` or the maximum).
    pub fn vcpus(&self) -> u32 {
        self.root
            .child("vcpu")
            .and_then(|v| v.attr("current"))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| self.max_vcpus())
    }

    pub fn set_vcpus(&mut self, current: u32) {
        let max = self.max_vcpus();
        if let Some(v) = self.root.child_mut("vcpu") {
            if current == max {
                v.remove_attr("current");
            } else {
                v.set_attr("current", current.to_string());
                v.order_attrs(&["placement", "cpuset", "current"]);
            }
        }
    }

    pub fn set_max_vcpus(&mut self, max: u32) {
        let current = self.vcpus().min(max);
        if let Some(v) = self.root.child_mut("vcpu") {
            v.set_text(max.to_string());
        }
        self.set_vcpus(current);
    }

    pub fn os_type(&self) -> String {
        self.root
            .child("os")
            .and_then(|o| o.child_text("type"))
            .unwrap_or_default()
    }

    pub fn on_poweroff(&self) -> String {
        self.root
            .child_text("on_poweroff")
            .unwrap_or_else(|| "destroy".into())
    }

    pub fn on_reboot(&self) -> String {
        self.root
            .child_text("on_reboot")
            .unwrap_or_else(|| "restart".into())
    }

    pub fn title(&self) -> Option<String> {
        self.root.child_text("title")
    }

    pub fn description(&self) -> Option<String> {
        self.root.child_text("description")
    }

    /// Set or (with `None`/empty) remove `<title>` or `<description>`.
    pub fn set_text_meta(&mut self, name: &str, value: Option<&str>) {
        match value {
            Some(v) if !v.is_empty() => {
                self.root.set_child_text(name, v);
                self.root.sort_children(TOP_ORDER);
            }
            _ => {
                self.root.remove_children(name);
            }
        }
    }

    /// The `<metadata>` child element in namespace `uri`.
    pub fn metadata_element(&self, uri: &str) -> Option<&Element> {
        self.root.child("metadata")?.elements().find(|e| {
            e.attrs
                .iter()
                .any(|(k, v)| k.starts_with("xmlns") && v == uri)
        })
    }

    /// Replace (or with `None`, remove) the metadata element of `uri`,
    /// giving it the prefix `key`.
    pub fn set_metadata_element(&mut self, uri: &str, key: &str, value: Option<Element>) {
        let meta = self.root.child_or_insert("metadata");
        meta.children.retain(|n| {
            !matches!(n, Node::Element(e) if e.attrs.iter().any(|(k, v)| k.starts_with("xmlns") && v == uri))
        });
        if let Some(mut el) = value {
            let local = el.name.rsplit(':').next().unwrap_or("").to_owned();
            el.name = format!("{key}:{local}");
            el.attrs.retain(|(k, _)| !k.starts_with("xmlns"));
            el.attrs.insert(0, (format!("xmlns:{key}"), uri.to_owned()));
            meta.children.push(Node::Element(el));
        }
        if meta.children.is_empty() {
            self.root.remove_children("metadata");
        }
        self.root.sort_children(TOP_ORDER);
    }

    pub fn devices(&self) -> impl Iterator<Item = &Element> {
        self.root
            .child("devices")
            .into_iter()
            .flat_map(|d| d.elements())
    }

    /// Disk targets (`vda`, ...) and their source paths.
    pub fn disks(&self) -> Vec<(String, Option<String>)> {
        self.devices()
            .filter(|d| d.name == "disk")
            .map(|d| {
                let target = d
                    .child("target")
                    .and_then(|t| t.attr("dev"))
                    .unwrap_or("")
                    .to_owned();
                let source = d
                    .child("source")
                    .and_then(|s| s.attr("file").or(s.attr("dev")).or(s.attr("name")))
                    .map(str::to_owned);
                (target, source)
            })
            .collect()
    }

    /// Interfaces: (target dev, mac).
    pub fn interfaces(&self) -> Vec<(String, String)> {
        self.devices()
            .filter(|d| d.name == "interface")
            .map(|d| {
                let target = d
                    .child("target")
                    .and_then(|t| t.attr("dev"))
                    .unwrap_or("")
                    .to_owned();
                let mac = d
                    .child("mac")
                    .and_then(|t| t.attr("address"))
                    .unwrap_or("")
                    .to_owned();
                (target, mac)
            })
            .collect()
    }

    /// Add a device (parsed from its own XML) and renormalise.
    pub fn attach_device(&mut self, dev: Element) -> Result<(), ConfError> {
        let mut root = self.root.clone();
        root.child_or_insert("devices")
            .children
            .push(Node::Element(dev));
        *self = DomainDef::from_element(root)?;
        Ok(())
    }

    /// Remove the device matching `dev`; returns false when none matches.
    pub fn detach_device(&mut self, dev: &Element) -> bool {
        let Some(devices) = self.root.child_mut("devices") else {
            return false;
        };
        let pos = devices
            .children
            .iter()
            .position(|n| matches!(n, Node::Element(e) if device_matches(e, dev)));
        match pos {
            Some(p) => {
                devices.children.remove(p);
                // An emptied <devices> still prints on two lines.
                if devices.children.is_empty() {
                    devices.children.push(Node::Break);
                }
                true
            }
            None => false,
        }
    }

    /// Replace the device matching `dev` by `dev`; false when none matches.
    pub fn update_device(&mut self, dev: Element) -> Result<bool, ConfError> {
        let mut root = self.root.clone();
        let Some(devices) = root.child_mut("devices") else {
            return Ok(false);
        };
        let Some(slot) = devices
            .children
            .iter_mut()
            .find(|n| matches!(n, Node::Element(e) if device_matches(e, &dev)))
        else {
            return Ok(false);
        };
        *slot = Node::Element(dev);
        *self = DomainDef::from_element(root)?;
        Ok(true)
    }
}

/// How libvirt identifies the device a detach/update names: disks by
/// target, interfaces by MAC, others by alias or full equality.
pub fn device_matches(existing: &Element, wanted: &Element) -> bool {
    if existing.name != wanted.name {
        return false;
    }
    let attr_of = |e: &Element, child: &str, key: &str| {
        e.child(child).and_then(|c| c.attr(key)).map(str::to_owned)
    };
    match wanted.name.as_str() {
        "disk" => {
            let w = attr_of(wanted, "target", "dev");
            w.is_some() && w == attr_of(existing, "target", "dev")
        }
        "interface" => {
            if let Some(mac) = attr_of(wanted, "mac", "address") {
                Some(mac.to_ascii_lowercase()) == attr_of(existing, "mac", "address")
            } else {
                // Without a MAC, libvirt matches the only interface.
                true
            }
        }
        _ => {
            if let Some(alias) = attr_of(wanted, "alias", "name") {
                Some(alias) == attr_of(existing, "alias", "name")
            } else {
                existing.attrs == wanted.attrs
            }
        }
    }
}

/// A MAC in QEMU's locally administered range, as libvirt generates.
pub fn random_mac() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// Parse one `<disk>`/`<interface>`/... device document.
pub fn parse_device(xml: &str) -> Result<Element, ConfError> {
    Ok(crate::xml::parse(xml)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "<domain type='test'>
  <name>vm1</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><source file='/x.img'/><target dev='sda'/></disk>
    <interface type='network'><source network='default'/><mac address='52:54:00:62:71:80'/></interface>
    <interface type='bridge'><source bridge='br0'/><mac address='52:54:00:11:22:33'/></interface>
  </devices>
</domain>";

    #[test]
    fn defaults_like_the_test_driver() {
        let def = DomainDef::parse(MIN).unwrap();
        let xml = def.to_xml(None);
        let expected = format!(
            "<domain type='test'>
  <name>vm1</name>
  <uuid>{}</uuid>
  <memory unit='KiB'>131072</memory>
  <currentMemory unit='KiB'>131072</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='i686'>hvm</type>
    <boot dev='hd'/>
  </os>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <source file='/x.img'/>
      <target dev='sda' bus='scsi'/>
      <address type='drive' controller='0' bus='0' target='0' unit='0'/>
    </disk>
    <controller type='scsi' index='0'/>
    <interface type='network'>
      <mac address='52:54:00:62:71:80'/>
      <source network='default'/>
      <target dev='testnet0'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:11:22:33'/>
      <source bridge='br0'/>
      <target dev='testnet1'/>
    </interface>
  </devices>
</domain>
",
            def.uuid()
        );
        assert_eq!(xml, expected);
    }

    #[test]
    fn errors_carry_libvirt_messages() {
        let e = DomainDef::parse(
            "<domain type='test'><memory>1024</memory><os><type>hvm</type></os></domain>",
        )
        .unwrap_err();
        assert_eq!(e.message, "missing name information");
        let e =
            DomainDef::parse("<domain type='test'><name>x</name><memory>1024</memory></domain>")
                .unwrap_err();
        assert_eq!(e.message, "XML error: an os <type> must be specified");
        let e = DomainDef::parse(
            "<domain type='test'><name>x</name><os><type>hvm</type></os></domain>",
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "XML error: Memory size must be specified via <memory> or in the <numa> configuration"
        );
        let e = DomainDef::parse("<domain type='test'><name>x</name><memory unit='bogus'>1</memory><os><type>hvm</type></os></domain>").unwrap_err();
        assert_eq!(e.message, "invalid argument: unknown suffix 'bogus'");
        let e = DomainDef::parse("<domain type='test'><name>x</name>").unwrap_err();
        assert_eq!(e.kind, crate::error::ConfErrorKind::XmlDetail);
    }
}

#[cfg(test)]
mod device_tests {
    use super::*;

    #[test]
    fn attach_and_detach_keep_canonical_form() {
        let mut def = DomainDef::parse(
            "<domain type='test'><name>d</name><memory>1024</memory><os><type>hvm</type></os></domain>",
        )
        .unwrap();
        assert!(def.to_xml(None).contains("  <devices>\n  </devices>\n"));
        let disk = parse_device(
            "<disk type='file' device='disk'><source file='/a'/><target dev='sdb'/></disk>",
        )
        .unwrap();
        def.attach_device(disk.clone()).unwrap();
        let xml = def.to_xml(None);
        assert!(xml.contains("<target dev='sdb' bus='scsi'/>\n      <address type='drive' controller='0' bus='0' target='0' unit='1'/>"));
        assert!(xml.contains("<controller type='scsi' index='0'/>"));
        assert!(def.detach_device(&disk));
        assert!(!def.detach_device(&disk));
    }
}
