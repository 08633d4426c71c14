//! A qemu domain definition: the parsed `<domain>` tree with the qemu
//! driver's defaults filled in at define time (so the guest's hardware is
//! stable across restarts), and typed accessors for what the command line
//! and the lifecycle need. Parsing uses `virtmesh_conf`'s generic element
//! tree; what the tree does not model is kept as given.

use virtmesh_conf::domain_misc::cpuset_canonical;
use virtmesh_conf::error::{parse_root, parse_uuid};
use virtmesh_conf::{ConfError, Element, Node};

/// The emulator libvirt's capabilities report for x86_64 guests.
pub const DEFAULT_EMULATOR: &str = "/usr/bin/qemu-system-x86_64";

/// libvirt's order of the top-level elements of `<domain>`; unknown ones
/// go where the `*` is.
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
    "pm",
    "perf",
    "devices",
    "*",
    "seclabel",
];

/// `<domain type=...>`: which accelerator runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtType {
    /// KVM (`-accel kvm`).
    Kvm,
    /// Pure emulation, TCG (`-accel tcg`).
    Qemu,
}

impl VirtType {
    pub fn accel(self) -> &'static str {
        match self {
            VirtType::Kvm => "kvm",
            VirtType::Qemu => "tcg",
        }
    }
}

/// QEMU 10.0's aliases, as libvirt expands them from the capabilities.
pub fn expand_machine(machine: Option<&str>) -> String {
    match machine {
        None | Some("") | Some("pc") => "pc-i440fx-10.0".to_owned(),
        Some("q35") => "pc-q35-10.0".to_owned(),
        Some(other) => other.to_owned(),
    }
}

/// Turns the `machine` attribute as given into the canonical machine type.
pub type MachineResolver<'a> = dyn Fn(Option<&str>) -> Result<String, ConfError> + 'a;

/// The `<emulator>` a document names, if any, before full parsing (the
/// driver needs it to know whose capabilities apply).
pub fn emulator_of(xml: &str) -> Option<String> {
    let root = virtmesh_conf::xml::parse(xml).ok()?;
    root.child("devices")?
        .child_text("emulator")
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
}

/// A validated definition in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainDef {
    root: Element,
}

/// The namespace URI an element declares for its own prefix.
fn namespace_of(el: &Element) -> Option<&str> {
    let attr = match el.name.split_once(':') {
        Some((prefix, _)) => format!("xmlns:{prefix}"),
        None => "xmlns".to_owned(),
    };
    el.attr(&attr)
}

fn kib_element(name: &str, kib: u64) -> Element {
    Element::new(name)
        .with_attr("unit", "KiB")
        .with_text(kib.to_string())
}

/// Replace the child named like `el`, or append it.
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
    /// Parse, validate and fill defaults.
    pub fn parse(xml: &str) -> Result<DomainDef, ConfError> {
        Self::parse_with(xml, &|m| Ok(expand_machine(m)))
    }

    /// Parse with `machine` deciding what `<type machine=...>` means (an
    /// alias or nothing resolved, or an error for an unknown machine): the
    /// driver answers from the probed emulator, [`DomainDef::parse`] from
    /// QEMU 10.0's table.
    pub fn parse_with(xml: &str, machine: &MachineResolver<'_>) -> Result<DomainDef, ConfError> {
        let mut root = parse_root(xml, "domain")?;
        // The id is runtime state, never configuration.
        root.remove_attr("id");
        match root.attr("type") {
            None => return Err(ConfError::internal("missing domain type attribute")),
            Some("kvm") | Some("qemu") => {}
            Some(t) => {
                return Err(ConfError::unsupported(format!(
                    "Emulator '{DEFAULT_EMULATOR}' does not support virt type '{t}'"
                )));
            }
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
        normalize_memory(&mut root)?;
        normalize_vcpu(&mut root)?;
        normalize_os(&mut root, machine)?;
        if root
            .child("memtune")
            .is_some_and(|m| m.child("min_guarantee").is_some())
        {
            return Err(ConfError::unsupported(
                "Parameter 'min_guarantee' not supported by QEMU.",
            ));
        }
        let bios_serial = root
            .child("os")
            .and_then(|o| o.child("bios"))
            .is_some_and(|b| b.attr("useserial") == Some("yes"));
        let has_serial = root
            .child("devices")
            .is_some_and(|d| d.children_named("serial").next().is_some());
        if bios_serial && !has_serial {
            return Err(ConfError::xml(
                "need at least one serial port to use BIOS serial output",
            ));
        }
        normalize_cpu(root.child_or_insert("cpu"));
        normalize_tuning(&mut root);
        if let Some(f) = root.child_mut("features") {
            f.sort_children(FEATURE_ORDER);
        }
        crate::numa::normalize(&mut root)?;
        for sec in root.elements_mut().filter(|e| e.name == "seclabel") {
            normalize_seclabel(sec);
        }
        let clock = root.child_or_insert("clock");
        if clock.attr("offset").is_none() {
            clock.set_attr("offset", "utc");
        }
        for (name, default) in [
            ("on_poweroff", "destroy"),
            ("on_reboot", "restart"),
            ("on_crash", "destroy"),
        ] {
            let el = root.child_or_insert(name);
            if el.text().trim().is_empty() {
                el.set_text(default);
            }
            if name != "on_crash" && el.text().trim() == "preserve" {
                return Err(ConfError::unsupported(
                    "qemu driver doesn't support the 'preserve' action for 'on_reboot'/'on_poweroff'",
                ));
            }
            if el.text().trim() == "rename-restart" {
                return Err(ConfError::unsupported(
                    "qemu driver doesn't support the 'rename-restart' action for 'on_reboot'/'on_poweroff'/'on_crash'",
                ));
            }
        }
        let devices = root.child_or_insert("devices");
        if devices.child("emulator").is_none() {
            devices.children.insert(
                0,
                Node::Element(Element::new("emulator").with_text(DEFAULT_EMULATOR)),
            );
        }
        let q35 = root
            .child("os")
            .and_then(|o| o.child("type"))
            .and_then(|t| t.attr("machine"))
            .is_some_and(|m| m.contains("q35"));
        crate::validate::domain(&root, q35)?;
        // `<ps2 state='off'>` removes the i8042 and its implicit input.
        let ps2 = root
            .child("features")
            .and_then(|f| f.child("ps2"))
            .and_then(|p| p.attr("state"))
            != Some("off");
        let devices = root.child_or_insert("devices");
        crate::devices::normalize_serials(devices);
        crate::devices::normalize_interfaces(devices);
        crate::defaults::apply(devices, q35, ps2)?;
        devices.sort_children(crate::devices::DEVICE_ORDER);
        root.sort_children(TOP_ORDER);
        Ok(DomainDef { root })
    }

    /// The XML as libvirt formats it; `id` is set for running domains.
    pub fn to_xml(&self, id: Option<i32>) -> String {
        match id {
            None => self.root.to_xml(),
            Some(id) => {
                let mut root = self.root.clone();
                root.set_attr("id", id.to_string());
                root.order_attrs(&["type", "id"]);
                root.to_xml()
            }
        }
    }

    /// The XML a client gets (virDomainGetXMLDesc): graphics passwords
    /// only with `secure` (VIR_DOMAIN_XML_SECURE), as libvirt. What is
    /// persisted keeps them ([`DomainDef::to_xml`]).
    pub fn to_xml_for_client(&self, id: Option<i32>, secure: bool) -> String {
        let has_password = self
            .devices()
            .iter()
            .any(|d| d.name == "graphics" && d.attr("passwd").is_some());
        if secure || !has_password {
            return self.to_xml(id);
        }
        let mut public = self.clone();
        public.for_each_device_mut("graphics", &mut |g: &mut Element| {
            g.remove_attr("passwd");
        });
        public.to_xml(id)
    }

    /// The I/O threads: `<iothreadids>` if given, else 1..=`<iothreads>`,
    /// with their thread-pool limits as QEMU properties.
    pub fn iothreads(&self) -> Vec<(u32, Vec<(&'static str, serde_json::Value)>)> {
        let count: u32 = self
            .root
            .child_text("iothreads")
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let ids: Vec<&Element> = self
            .root
            .child("iothreadids")
            .map(|i| i.children_named("iothread").collect())
            .unwrap_or_default();
        if ids.is_empty() {
            return (1..=count).map(|i| (i, Vec::new())).collect();
        }
        ids.iter()
            .filter_map(|t| {
                let id = t.attr("id")?.parse().ok()?;
                let mut extra = Vec::new();
                for (k, prop) in [
                    ("thread_pool_min", "thread-pool-min"),
                    ("thread_pool_max", "thread-pool-max"),
                ] {
                    if let Some(v) = t.attr(k).and_then(|v| v.parse::<u64>().ok()) {
                        extra.push((prop, v.into()));
                    }
                }
                Some((id, extra))
            })
            .collect()
    }

    /// `-object throttle-group` JSON for each `<throttlegroup>`.
    pub fn throttle_groups(&self) -> Vec<String> {
        const LIMITS: &[(&str, &str)] = &[
            ("total_bytes_sec", "bps-total"),
            ("read_bytes_sec", "bps-read"),
            ("write_bytes_sec", "bps-write"),
            ("total_iops_sec", "iops-total"),
            ("read_iops_sec", "iops-read"),
            ("write_iops_sec", "iops-write"),
            ("total_bytes_sec_max", "bps-total-max"),
            ("read_bytes_sec_max", "bps-read-max"),
            ("write_bytes_sec_max", "bps-write-max"),
            ("total_iops_sec_max", "iops-total-max"),
            ("read_iops_sec_max", "iops-read-max"),
            ("write_iops_sec_max", "iops-write-max"),
            ("size_iops_sec", "iops-size"),
        ];
        let Some(groups) = self.root.child("throttlegroups") else {
            return Vec::new();
        };
        groups
            .children_named("throttlegroup")
            .map(|g| {
                let name = g.child_text("group_name").unwrap_or_default();
                let limits: Vec<(&str, serde_json::Value)> = LIMITS
                    .iter()
                    .map(|(el, key)| {
                        let v: u64 = g
                            .child_text(el)
                            .and_then(|t| t.trim().parse().ok())
                            .unwrap_or(0);
                        (*key, v.into())
                    })
                    .collect();
                format!(
                    "{{\"qom-type\":\"throttle-group\",\"id\":{},\"limits\":{}}}",
                    serde_json::Value::from(format!("throttle-{}", name.trim())),
                    crate::argv::json_object(&limits)
                )
            })
            .collect()
    }

    /// The whole `<domain>` tree.
    pub fn element(&self) -> &Element {
        &self.root
    }

    /// The tree, for the completion steps that run after parsing
    /// (firmware selection).
    pub(crate) fn element_mut(&mut self) -> &mut Element {
        &mut self.root
    }

    pub fn name(&self) -> String {
        self.root.child_text("name").unwrap_or_default()
    }

    pub fn uuid(&self) -> String {
        self.root.child_text("uuid").unwrap_or_default()
    }

    pub fn virt_type(&self) -> VirtType {
        match self.root.attr("type") {
            Some("qemu") => VirtType::Qemu,
            _ => VirtType::Kvm,
        }
    }

    fn kib(&self, name: &str) -> u64 {
        self.root
            .child(name)
            .and_then(|e| e.text().trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn max_memory_kib(&self) -> u64 {
        self.kib("memory")
    }

    pub fn current_memory_kib(&self) -> u64 {
        self.kib("currentMemory")
    }

    pub fn vcpus(&self) -> u32 {
        self.root
            .child("vcpu")
            .and_then(|v| match v.attr("current") {
                Some(c) => c.parse().ok(),
                None => v.text().trim().parse().ok(),
            })
            .unwrap_or(1)
    }

    pub fn set_current_memory_kib(&mut self, kib: u64) {
        replace_child(&mut self.root, kib_element("currentMemory", kib));
    }

    /// The maximum; the current size is capped to it, as libvirt does.
    pub fn set_max_memory_kib(&mut self, kib: u64) {
        replace_child(&mut self.root, kib_element("memory", kib));
        if self.current_memory_kib() > kib {
            self.set_current_memory_kib(kib);
        }
    }

    /// Set the current vCPU count (≤ the maximum, checked by the caller).
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

    /// Set the maximum vCPU count; the current one is capped to it.
    pub fn set_max_vcpus(&mut self, max: u32) {
        let current = self.vcpus().min(max);
        if let Some(v) = self.root.child_mut("vcpu") {
            v.set_text(max.to_string());
        }
        self.set_vcpus(current);
    }

    /// `<title>` or `<description>` text.
    pub fn text_meta(&self, name: &str) -> Option<String> {
        self.root.child_text(name)
    }

    /// Set or (with `None`/empty) remove `<title>` or `<description>`.
    pub fn set_text_meta(&mut self, name: &str, value: Option<&str>) {
        self.root.remove_children(name);
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.root
                .children
                .push(Node::Element(Element::new(name).with_text(v)));
            self.root.sort_children(TOP_ORDER);
        }
    }

    /// The `<metadata>` child in namespace `uri`.
    pub fn metadata_element(&self, uri: &str) -> Option<&Element> {
        self.root
            .child("metadata")?
            .elements()
            .find(|e| namespace_of(e) == Some(uri))
    }

    /// Replace (or with `None` remove) the `<metadata>` child in namespace
    /// `uri`; a new one is named `key:<local name>` and declares `uri`.
    pub fn set_metadata_element(&mut self, uri: &str, key: &str, value: Option<Element>) {
        let meta = self.root.child_or_insert("metadata");
        meta.children
            .retain(|n| !matches!(n, Node::Element(e) if namespace_of(e) == Some(uri)));
        if let Some(mut el) = value {
            let local = el.name.rsplit(':').next().unwrap_or_default().to_owned();
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

    pub fn has_balloon(&self) -> bool {
        self.devices()
            .iter()
            .any(|d| d.name == "memballoon" && d.attr("model") == Some("virtio"))
    }

    pub fn max_vcpus(&self) -> u32 {
        self.root
            .child("vcpu")
            .and_then(|v| v.text().trim().parse().ok())
            .unwrap_or(1)
    }

    fn os_type_el(&self) -> Option<&Element> {
        self.root.child("os").and_then(|o| o.child("type"))
    }

    pub fn os_type(&self) -> String {
        self.os_type_el().map(|t| t.text()).unwrap_or_default()
    }

    pub fn machine(&self) -> String {
        expand_machine(self.os_type_el().and_then(|t| t.attr("machine")))
    }

    pub fn is_q35(&self) -> bool {
        self.machine().contains("q35")
    }

    pub fn emulator(&self) -> String {
        self.root
            .child("devices")
            .and_then(|d| d.child_text("emulator"))
            .map(|e| e.trim().to_owned())
            .unwrap_or_else(|| DEFAULT_EMULATOR.to_owned())
    }

    pub fn on_poweroff(&self) -> String {
        self.root
            .child_text("on_poweroff")
            .unwrap_or_else(|| "destroy".into())
    }

    /// Record where serial port `alias` (`serialN`) of a running guest
    /// went, as libvirt's live XML shows it: the pty in `<source path>`,
    /// and `tty` on the console that mirrors it.
    pub fn set_serial_pty(&mut self, alias: &str, path: &str) {
        let Some(index) = alias
            .strip_prefix("serial")
            .and_then(|i| i.parse::<usize>().ok())
        else {
            return;
        };
        let Some(devices) = self.root.child_mut("devices") else {
            return;
        };
        let mut port = None;
        if let Some(ser) = devices
            .elements_mut()
            .filter(|e| e.name == "serial")
            .nth(index)
        {
            if ser.attr("type") != Some("pty") {
                return;
            }
            ser.child_or_insert("source").set_attr("path", path);
            ser.sort_children(&["source", "target", "*"]);
            port = ser
                .child("target")
                .and_then(|t| t.attr("port"))
                .map(str::to_owned);
        }
        let port = port.unwrap_or_else(|| index.to_string());
        for con in devices.elements_mut().filter(|e| {
            e.name == "console"
                && e.attr("type") == Some("pty")
                && e.child("target").and_then(|t| t.attr("port")) == Some(port.as_str())
        }) {
            con.set_attr("tty", path);
            con.child_or_insert("source").set_attr("path", path);
            con.sort_children(&["source", "target", "*"]);
        }
    }

    /// Text of an `<os>` child (`kernel`, `initrd`, `cmdline`).
    pub fn os_text(&self, name: &str) -> Option<String> {
        self.root
            .child("os")?
            .child_text(name)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    }

    pub fn cpu_mode(&self) -> String {
        self.root
            .child("cpu")
            .and_then(|c| c.attr("mode"))
            .unwrap_or("custom")
            .to_owned()
    }

    /// `<cpu><topology>`: (sockets, dies, clusters, cores, threads).
    pub fn cpu_topology(&self) -> Option<(u32, u32, u32, u32, u32)> {
        let t = self.root.child("cpu")?.child("topology")?;
        let n = |k: &str| t.attr(k).and_then(|v| v.parse().ok()).unwrap_or(1);
        Some((
            n("sockets"),
            n("dies"),
            n("clusters"),
            n("cores"),
            n("threads"),
        ))
    }

    pub fn cpu_model(&self) -> String {
        self.root
            .child("cpu")
            .and_then(|c| c.child_text("model"))
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "qemu64".into())
    }

    pub fn clock_offset(&self) -> String {
        self.root
            .child("clock")
            .and_then(|c| c.attr("offset"))
            .unwrap_or("utc")
            .to_owned()
    }

    /// Whether `<features><acpi/>` is present (libvirt passes `acpi=off`
    /// otherwise, and then ACPI shutdown cannot work).
    pub fn has_acpi(&self) -> bool {
        self.root
            .child("features")
            .is_some_and(|f| f.child("acpi").is_some())
    }

    /// Record the host link of each interface in `<target dev>`, as
    /// libvirt's live XML shows it.
    pub fn set_interface_targets(&mut self, targets: &[Option<String>]) {
        let Some(devices) = self.root.child_mut("devices") else {
            return;
        };
        for (iface, t) in devices
            .elements_mut()
            .filter(|e| e.name == "interface")
            .zip(targets)
        {
            if let Some(name) = t {
                iface
                    .child_or_insert("target")
                    .set_attr("dev", name.as_str());
                iface.sort_children(&["mac", "source", "target", "model", "*"]);
            }
        }
    }

    /// The `<devices>` element.
    pub fn devices_el(&self) -> Option<&Element> {
        self.root.child("devices")
    }

    /// Add a device where libvirt's order puts it.
    pub fn push_device(&mut self, dev: Element) {
        let devices = self.root.child_or_insert("devices");
        devices.children.push(Node::Element(dev));
        devices.sort_children(crate::devices::DEVICE_ORDER);
    }

    /// The device a detach names (disks by target, NICs by MAC).
    pub fn find_device(&self, wanted: &Element) -> Option<&Element> {
        self.root
            .child("devices")?
            .elements()
            .find(|e| virtmesh_conf::domain::device_matches(e, wanted))
    }

    /// The disk with target `dev`.
    pub fn disk(&self, dev: &str) -> Option<&Element> {
        self.devices().into_iter().find(|d| {
            d.name == "disk" && d.child("target").and_then(|t| t.attr("dev")) == Some(dev)
        })
    }

    /// Put `new` where `old` (that very element) is; nothing if absent.
    pub fn replace_device(&mut self, old: &Element, new: Element) {
        if let Some(slot) = self
            .root
            .child_mut("devices")
            .and_then(|d| d.elements_mut().find(|e| *e == old))
        {
            *slot = new;
        }
    }

    /// Remove and return the device a detach names.
    pub fn remove_device(&mut self, wanted: &Element) -> Option<Element> {
        let devices = self.root.child_mut("devices")?;
        let pos = devices.children.iter().position(
            |n| matches!(n, Node::Element(e) if virtmesh_conf::domain::device_matches(e, wanted)),
        )?;
        match devices.children.remove(pos) {
            Node::Element(e) => Some(e),
            _ => None,
        }
    }

    /// libvirt's live aliases for disks and NICs (the ids QEMU knows them
    /// by), so a later unplug names the right device whatever was
    /// unplugged before it.
    pub fn set_aliases(&mut self) {
        let Some(devices) = self.root.child_mut("devices") else {
            return;
        };
        let mut nic = 0;
        for dev in devices.elements_mut() {
            let alias = match dev.name.as_str() {
                "disk" => crate::blockdev::disk_id(dev),
                "interface" => {
                    nic += 1;
                    Some(format!("net{}", nic - 1))
                }
                _ => None,
            };
            if let Some(a) = alias {
                set_alias(dev, &a);
            }
        }
    }

    /// `<os><boot dev>` in order.
    pub fn boot_devs(&self) -> Vec<String> {
        self.root
            .child("os")
            .map(|o| {
                o.children_named("boot")
                    .filter_map(|b| b.attr("dev").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Apply `f` to every device element named `kind`.
    pub fn for_each_device_mut(&mut self, kind: &str, f: &mut dyn FnMut(&mut Element)) {
        if let Some(devices) = self.root.child_mut("devices") {
            for d in devices.elements_mut().filter(|d| d.name == kind) {
                f(d);
            }
        }
    }

    /// Device elements other than `<emulator>`.
    pub fn devices(&self) -> Vec<&Element> {
        self.root
            .child("devices")
            .map(|d| d.elements().filter(|e| e.name != "emulator").collect())
            .unwrap_or_default()
    }
}

/// The generic memory normalisation, with the qemu driver's extras: its
/// `<memory>` keeps only the size (no `dumpCore`), and `<maxMemory>` must
/// not be below `<memory>`.
fn normalize_memory(root: &mut Element) -> Result<(), ConfError> {
    if let Some(mem) = root.child_mut("memory") {
        mem.remove_attr("dumpCore");
    }
    virtmesh_conf::domain::DomainDef::normalize_memory(root)?;
    let kib = |name: &str| {
        root.child_text(name)
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    if let (Some(max), Some(memory)) = (kib("maxMemory"), kib("memory"))
        && max < memory
    {
        return Err(ConfError::xml(
            "maximum memory size must be equal or greater than the actual memory size",
        ));
    }
    Ok(())
}

/// The generic `<vcpu>` normalisation with the qemu driver's error for a
/// zero count; this driver does not validate `placement`.
fn normalize_vcpu(root: &mut Element) -> Result<(), ConfError> {
    virtmesh_conf::domain::DomainDef::normalize_vcpu_with(root, "Invalid vCPU count", false)
}

/// libvirt's order of `<features>` children (virDomainFeature).
pub(crate) const FEATURE_ORDER: &[&str] = &[
    "acpi",
    "apic",
    "pae",
    "hap",
    "viridian",
    "privnet",
    "hyperv",
    "kvm",
    "pvspinlock",
    "capabilities",
    "pmu",
    "vmport",
    "gic",
    "smm",
    "ioapic",
    "hpt",
    "vmcoreinfo",
    "htm",
    "nested-hv",
    "msrs",
    "ccf-assist",
    "xen",
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

/// CPU sets in canonical form, pins of vCPUs that do not exist dropped
/// (an empty `<cputune>` with them), a hugepage nodeset that names the
/// only node dropped.
fn normalize_tuning(root: &mut Element) {
    let max: u32 = root
        .child("vcpu")
        .and_then(|v| v.text().trim().parse().ok())
        .unwrap_or(1);
    if let Some(v) = root.child_mut("vcpu")
        && let Some(c) = v.attr("cpuset").and_then(cpuset_canonical)
    {
        v.set_attr("cpuset", c);
    }
    if let Some(t) = root.child_mut("cputune") {
        t.children.retain(|n| match n {
            Node::Element(e) if e.name == "vcpupin" => e
                .attr("vcpu")
                .and_then(|v| v.parse::<u32>().ok())
                .is_some_and(|v| v < max),
            _ => true,
        });
        for e in t.elements_mut() {
            if let Some(c) = e.attr("cpuset").and_then(cpuset_canonical) {
                e.set_attr("cpuset", c);
            }
        }
        if t.elements().next().is_none() {
            root.remove_children("cputune");
        }
    }
    let cells = root
        .child("cpu")
        .and_then(|c| c.child("numa"))
        .map_or(0, |n| n.children_named("cell").count());
    if let Some(hp) = root
        .child_mut("memoryBacking")
        .and_then(|m| m.child_mut("hugepages"))
    {
        let pages: Vec<&mut Element> = hp.elements_mut().filter(|e| e.name == "page").collect();
        if pages.len() == 1 && cells <= 1 {
            for p in pages {
                if p.attr("nodeset") == Some("0") {
                    p.remove_attr("nodeset");
                }
            }
        }
    }
}

/// libvirt's x86 CPU defaults: no CPU at all, or only topology/NUMA, is
/// `qemu64` (custom, exact, check none); a named model is checked
/// partially and may fall back; host modes are not checked.
fn normalize_cpu(cpu: &mut Element) {
    let has_model = cpu.child("model").is_some();
    let mode = cpu.attr("mode").unwrap_or("custom").to_owned();
    cpu.set_attr("mode", mode.clone());
    if mode == "custom" {
        if cpu.attr("match").is_none() {
            cpu.set_attr("match", "exact");
        }
        if cpu.attr("check").is_none() {
            cpu.set_attr("check", if has_model { "partial" } else { "none" });
        }
        if has_model {
            if let Some(model) = cpu.child_mut("model")
                && model.attr("fallback").is_none()
            {
                model.set_attr("fallback", "allow");
            }
        } else {
            cpu.children.insert(
                0,
                Node::Element(
                    Element::new("model")
                        .with_attr("fallback", "forbid")
                        .with_text("qemu64"),
                ),
            );
        }
    } else if cpu.attr("check").is_none() {
        cpu.set_attr("check", "none");
    }
    cpu.order_attrs(&["mode", "match", "check", "migratable"]);
    if let Some(topo) = cpu.child_mut("topology") {
        for key in ["dies", "clusters"] {
            if topo.attr(key).is_none() {
                topo.set_attr(key, "1");
            }
        }
        topo.order_attrs(&["sockets", "dies", "clusters", "cores", "threads"]);
    }
}

/// `relabel` defaults by type, and `type='none'` names its model.
fn normalize_seclabel(sec: &mut Element) {
    let ty = sec.attr("type").map(str::to_owned);
    match ty.as_deref() {
        Some("none") if sec.attr("model").is_none() => sec.set_attr("model", "none"),
        Some(t) if t != "none" && sec.attr("relabel").is_none() => {
            sec.set_attr("relabel", if t == "static" { "no" } else { "yes" });
        }
        _ => {}
    }
    sec.order_attrs(&["type", "model", "relabel"]);
}

fn normalize_os(root: &mut Element, machine: &MachineResolver<'_>) -> Result<(), ConfError> {
    // Per-device boot order replaces <os><boot>.
    let device_boot = root
        .child("devices")
        .is_some_and(|d| d.elements().any(|e| e.child("boot").is_some()));
    let os = root
        .child_mut("os")
        .ok_or_else(|| ConfError::xml("an os <type> must be specified"))?;
    // Direct kernel boot still gets <boot dev='hd'/>, as in libvirt.
    let has_boot = os.child("boot").is_some() || device_boot;
    let ty = os
        .child_mut("type")
        .ok_or_else(|| ConfError::xml("an os <type> must be specified"))?;
    let os_type = ty.text().trim().to_owned();
    if os_type != "hvm" {
        return Err(ConfError::unsupported(format!(
            "Emulator '{DEFAULT_EMULATOR}' does not support os type '{os_type}'"
        )));
    }
    ty.set_text(os_type);
    let arch = ty.attr("arch").unwrap_or("x86_64").to_owned();
    if arch != "x86_64" {
        return Err(ConfError::unsupported(format!(
            "Emulator '{DEFAULT_EMULATOR}' does not support arch '{arch}'"
        )));
    }
    ty.set_attr("arch", arch);
    let machine = machine(ty.attr("machine"))?;
    ty.set_attr("machine", machine);
    ty.order_attrs(&["arch", "machine"]);
    if !has_boot {
        let pos = os
            .children
            .iter()
            .position(|n| matches!(n, Node::Element(e) if matches!(e.name.as_str(), "bootmenu" | "smbios" | "bios")))
            .unwrap_or(os.children.len());
        os.children.insert(
            pos,
            Node::Element(Element::new("boot").with_attr("dev", "hd")),
        );
    }
    Ok(())
}

/// Put `<alias name>` before `<address>`, as libvirt's live XML has it.
pub fn set_alias(dev: &mut Element, alias: &str) {
    dev.remove_children("alias");
    let at = dev
        .children
        .iter()
        .position(|n| matches!(n, Node::Element(e) if e.name == "address"))
        .unwrap_or(dev.children.len());
    dev.children.insert(
        at,
        Node::Element(Element::new("alias").with_attr("name", alias)),
    );
}

/// The live alias of a device, if it has one.
pub fn alias_of(dev: &Element) -> Option<String> {
    dev.child("alias")
        .and_then(|a| a.attr("name"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "<domain type='kvm'>\n  <name>cc-minimal-q35</name>\n  <uuid>aedba276-b2aa-5a1d-859d-ea9075fc669f</uuid>\n  <memory unit='MiB'>256</memory>\n  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n  </os>\n  <devices>\n    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n  </devices>\n</domain>\n";

    #[test]
    fn defaults_are_filled() {
        let def = DomainDef::parse(MINIMAL).expect("valid");
        assert_eq!(def.machine(), "pc-q35-10.0");
        assert_eq!(def.max_memory_kib(), 262144);
        assert_eq!(def.current_memory_kib(), 262144);
        assert_eq!(def.vcpus(), 1);
        assert_eq!(def.virt_type(), VirtType::Kvm);
        let xml = def.to_xml(None);
        assert!(
            xml.contains("<type arch='x86_64' machine='pc-q35-10.0'>hvm</type>"),
            "{xml}"
        );
        assert!(xml.contains("<boot dev='hd'/>"));
        assert!(xml.contains("<on_poweroff>destroy</on_poweroff>"));
        // Re-parsing canonical output changes nothing.
        assert_eq!(DomainDef::parse(&xml).expect("valid").to_xml(None), xml);
        assert!(
            def.to_xml(Some(3))
                .starts_with("<domain type='kvm' id='3'>")
        );
    }

    #[test]
    fn memory_and_vcpu_setters_keep_invariants() {
        let mut def = DomainDef::parse(MINIMAL).expect("valid");
        def.set_current_memory_kib(131072);
        assert_eq!(
            (def.max_memory_kib(), def.current_memory_kib()),
            (262144, 131072)
        );
        def.set_max_memory_kib(65536);
        assert_eq!(
            (def.max_memory_kib(), def.current_memory_kib()),
            (65536, 65536)
        );
        def.set_max_vcpus(4);
        assert_eq!((def.max_vcpus(), def.vcpus()), (4, 1));
        assert!(
            def.to_xml(None)
                .contains("<vcpu placement='static' current='1'>4</vcpu>")
        );
        def.set_vcpus(4);
        assert!(
            def.to_xml(None)
                .contains("<vcpu placement='static'>4</vcpu>")
        );
        def.set_max_vcpus(2);
        assert_eq!((def.max_vcpus(), def.vcpus()), (2, 2));
    }

    #[test]
    fn metadata_set_get_remove() {
        let mut def = DomainDef::parse(MINIMAL).expect("valid");
        def.set_text_meta("title", Some("A title"));
        assert_eq!(def.text_meta("title").as_deref(), Some("A title"));
        let xml = def.to_xml(None);
        assert!(xml.find("<title>").expect("title") < xml.find("<memory").expect("memory"));
        def.set_text_meta("title", None);
        assert_eq!(def.text_meta("title"), None);
        let el = virtmesh_conf::xml::parse("<foo bar='1'>x</foo>").expect("xml");
        def.set_metadata_element("http://app/", "app", Some(el));
        let got = def
            .metadata_element("http://app/")
            .expect("present")
            .to_xml();
        assert_eq!(
            got,
            "<app:foo xmlns:app='http://app/' bar='1'>x</app:foo>\n"
        );
        def.set_metadata_element("http://app/", "app", None);
        assert!(def.metadata_element("http://app/").is_none());
        assert!(!def.to_xml(None).contains("<metadata"));
    }

    /// Every domain document of both corpora, as kvm guests on q35 and
    /// pc: define-time defaults and the command line never panic,
    /// whatever the input (errors are fine).
    #[test]
    fn corpora_never_panic() {
        let base = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/conformance"
        );
        let mut seen = 0;
        for kind in ["domain-generic", "domain-qemu"] {
            let Ok(entries) = std::fs::read_dir(format!("{base}/{kind}")) else {
                continue;
            };
            for e in entries.filter_map(Result::ok) {
                let Ok(xml) = std::fs::read_to_string(e.path().join("input.xml")) else {
                    continue;
                };
                for machine in ["q35", "pc"] {
                    let xml = xml
                        .replace("type='test'", "type='kvm'")
                        .replace("machine='q35'", &format!("machine='{machine}'"));
                    if let Ok(def) = DomainDef::parse(&xml) {
                        let _ = crate::argv::native(&def);
                        let _ = def.to_xml(None);
                    }
                    seen += 1;
                }
            }
        }
        assert!(seen > 100, "corpora missing ({seen} documents)");
    }

    #[test]
    fn machine_aliases_expand() {
        assert_eq!(expand_machine(Some("q35")), "pc-q35-10.0");
        assert_eq!(expand_machine(Some("pc")), "pc-i440fx-10.0");
        assert_eq!(expand_machine(None), "pc-i440fx-10.0");
        assert_eq!(expand_machine(Some("pc-q35-8.2")), "pc-q35-8.2");
    }

    #[test]
    fn uuid_is_generated_and_bad_input_rejected() {
        let def = DomainDef::parse(
            "<domain type='qemu'><name>a</name><memory>1024</memory><os><type>hvm</type></os></domain>",
        )
        .expect("valid");
        assert_eq!(def.uuid().len(), 36);
        assert_eq!(def.virt_type(), VirtType::Qemu);
        assert_eq!(def.emulator(), DEFAULT_EMULATOR);
        for bad in [
            "<domain type='xen'><name>a</name><memory>1</memory><os><type>hvm</type></os></domain>",
            "<domain type='kvm'><memory>1</memory><os><type>hvm</type></os></domain>",
            "<domain type='kvm'><name>a</name><os><type>hvm</type></os></domain>",
            "<domain type='kvm'><name>a</name><memory>1</memory></domain>",
            "<domain type='kvm'><name>a</name>",
        ] {
            assert!(DomainDef::parse(bad).is_err(), "{bad}");
        }
    }
}
