//! Device normalisation for domain XML: the defaults and ordering libvirt's
//! parser and post-parse callbacks apply for the test driver (implicit
//! controllers, drive addresses, interface names, consoles, ...).

use std::collections::HashSet;

use crate::ConfError;
use crate::bandwidth::{Bandwidth, BandwidthContext};
use crate::xml::{Element, Node};

/// libvirt groups devices by kind in this order when formatting.
pub const DEVICE_ORDER: &[&str] = &[
    "emulator",
    "disk",
    "controller",
    "lease",
    "filesystem",
    "interface",
    "smartcard",
    "serial",
    "parallel",
    "console",
    "channel",
    "input",
    "tpm",
    "graphics",
    "sound",
    "audio",
    "video",
    "hostdev",
    "redirdev",
    "redirfilter",
    "hub",
    "watchdog",
    "memballoon",
    "rng",
    "panic",
    "shmem",
    "memory",
    "iommu",
    "vsock",
    "crypto",
    "pstore",
    "*",
];

/// virDomainDeviceInfoFormat's order, shared by every device.
pub const INFO_TAIL: &[&str] = &["boot", "alias", "master", "rom", "acpi", "address"];

pub const INTERFACE_ORDER: &[&str] = &[
    "mac",
    "source",
    "vlan",
    "virtualport",
    "bandwidth",
    "port",
    "ip",
    "route",
    "script",
    "downscript",
    "backenddomain",
    "target",
    "guest",
    "model",
    "driver",
    "backend",
    "filterref",
    "tune",
    "teaming",
    "link",
    "mtu",
    "coalesce",
];

pub const DISK_ORDER: &[&str] = &[
    "driver",
    "auth",
    "source",
    "backingStore",
    "backenddomain",
    "geometry",
    "blockio",
    "target",
    "iotune",
    "readonly",
    "shareable",
    "transient",
    "serial",
    "wwn",
    "vendor",
    "product",
    "encryption",
];

const DISK_BUSES: &[&str] = &[
    "ide", "fdc", "scsi", "virtio", "xen", "usb", "uml", "sata", "sd",
];
const GRAPHICS_TYPES: &[&str] = &[
    "sdl",
    "vnc",
    "rdp",
    "desktop",
    "spice",
    "egl-headless",
    "dbus",
];
const NET_TYPES: &[&str] = &[
    "user",
    "ethernet",
    "vhostuser",
    "server",
    "client",
    "mcast",
    "network",
    "bridge",
    "internal",
    "direct",
    "hostdev",
    "udp",
    "vdpa",
    "null",
    "vds",
];
const INPUT_TYPES: &[&str] = &["mouse", "tablet", "keyboard", "passthrough", "evdev"];
const TIMER_NAMES: &[&str] = &[
    "platform",
    "pit",
    "rtc",
    "hpet",
    "tsc",
    "kvmclock",
    "hypervclock",
    "armvtimer",
];
const TPM_MODELS: &[&str] = &["tpm-tis", "tpm-crb", "tpm-spapr", "spapr-tpm-proxy"];
const VIDEO_TYPES: &[&str] = &[
    "default",
    "vga",
    "cirrus",
    "vmvga",
    "xen",
    "vbox",
    "qxl",
    "parallels",
    "virtio",
    "gop",
    "none",
    "bochs",
    "ramfb",
];
const WATCHDOG_MODELS: &[&str] = &["i6300esb", "ib700", "diag288", "itco"];
const WATCHDOG_ACTIONS: &[&str] = &[
    "reset",
    "shutdown",
    "poweroff",
    "pause",
    "dump",
    "none",
    "inject-nmi",
];
const CHR_TYPES: &[&str] = &[
    "null",
    "vc",
    "pty",
    "dev",
    "file",
    "pipe",
    "stdio",
    "udp",
    "tcp",
    "unix",
    "spicevmc",
    "spiceport",
    "nmdm",
    "qemu-vdagent",
    "dbus",
];

fn invalid_attr(attr: &str, elem: &str, value: &str) -> ConfError {
    ConfError::xml(format!(
        "Invalid value for attribute '{attr}' in element '{elem}': '{value}'."
    ))
}

fn check_enum(el: &Element, attr: &str, elem: &str, allowed: &[&str]) -> Result<(), ConfError> {
    match el.attr(attr) {
        Some(v) if !allowed.contains(&v) => Err(invalid_attr(attr, elem, v)),
        _ => Ok(()),
    }
}

/// Sort a device's children: `order` first, unknown ones next, then the
/// device-info tail.
pub fn sort_device(dev: &mut Element, order: &[&str]) {
    let mut full: Vec<&str> = order.to_vec();
    full.push("*");
    full.extend_from_slice(INFO_TAIL);
    dev.sort_children(&full);
}

/// Index of a disk name as virDiskNameToIndex: one of libvirt's prefixes,
/// lowercase letters, an optional partition number (sda -> 0, sdb -> 1,
/// sdaa -> 26, hdb2 -> 1).  libvirt computes it in an `int`; a name whose
/// index does not fit is no disk name here.
pub fn disk_index(dev: &str) -> Option<u64> {
    let rest = ["fd", "hd", "vd", "sd", "xvd", "ubd"]
        .iter()
        .find_map(|p| dev.strip_prefix(p))?;
    let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
    let (suffix, digits) = rest.split_at(letters);
    if suffix.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut idx: u64 = 0;
    for c in suffix.bytes() {
        idx = idx.checked_mul(26)?.checked_add(u64::from(c - b'a') + 1)?;
        if idx > i32::MAX as u64 + 1 {
            return None;
        }
    }
    Some(idx - 1)
}

/// The bus libvirt infers from a disk target name.
pub fn disk_bus_for(dev: &str, device: &str) -> &'static str {
    if device == "floppy" || dev.starts_with("fd") {
        "fdc"
    } else if dev.starts_with("hd") {
        "ide"
    } else if dev.starts_with("sd") {
        "scsi"
    } else if dev.starts_with("vd") {
        "virtio"
    } else if dev.starts_with("xvd") {
        "xen"
    } else if dev.starts_with("ubd") {
        "uml"
    } else {
        "ide"
    }
}

fn parse_hex_or_dec(v: &str) -> Option<u64> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// `0x` + hex with a fixed width, as libvirt prints PCI addresses, with
/// libvirt's range checks.
fn pci_address(addr: &mut Element) -> Result<(), ConfError> {
    for (key, width, max, max_s) in [
        ("domain", 4, 0xFFFF_u64, "0xFFFF"),
        ("bus", 2, 0xFF, "0xFF"),
        ("slot", 2, 0x1F, "0x1F"),
        ("function", 1, 7, "7"),
    ] {
        if let Some(v) = addr.attr(key) {
            let n = parse_hex_or_dec(v).ok_or_else(|| invalid_attr(key, "address", v))?;
            if n > max {
                return Err(ConfError::xml(format!(
                    "Invalid PCI address {key}='{v}', must be <= {max_s}"
                )));
            }
            addr.set_attr(key, format!("0x{n:0width$x}"));
        }
    }
    addr.order_attrs(&["type", "domain", "bus", "slot", "function", "multifunction"]);
    Ok(())
}

fn normalize_addresses(dev: &mut Element) -> Result<(), ConfError> {
    if let Some(addr) = dev
        .child_mut("address")
        .filter(|a| a.attr("type") == Some("pci"))
    {
        pci_address(addr)?;
    }
    // hostdev sources name the host's PCI address without a type.
    if dev.name == "hostdev"
        && dev.attr("type") == Some("pci")
        && let Some(addr) = dev.child_mut("source").and_then(|s| s.child_mut("address"))
    {
        pci_address(addr)?;
    }
    Ok(())
}

fn check_mac(dev: &Element) -> Result<(), ConfError> {
    if let Some(mac) = dev.child("mac").and_then(|m| m.attr("address")) {
        let bytes: Vec<Option<u8>> = mac
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).ok())
            .collect();
        if bytes.len() != 6 || bytes.iter().any(Option::is_none) {
            return Err(ConfError::xml(format!(
                "unable to parse mac address '{mac}'"
            )));
        }
        if bytes[0].is_some_and(|b| b & 1 == 1) {
            return Err(ConfError::xml(format!(
                "expected unicast mac address, found multicast '{mac}'"
            )));
        }
    }
    Ok(())
}

/// Reject what libvirt's device parsers reject, with their messages.
fn validate(dev: &Element) -> Result<(), ConfError> {
    match dev.name.as_str() {
        "disk" => {
            if let Some(t) = dev.child("target") {
                check_enum(t, "bus", "target", DISK_BUSES)?;
                if dev.attr("device") == Some("floppy")
                    && let Some(bus) = t.attr("bus").filter(|b| *b != "fdc")
                {
                    return Err(ConfError::internal(format!(
                        "Invalid bus type '{bus}' for floppy disk"
                    )));
                }
            }
            if dev.attr("type") == Some("network")
                && let Some(src) = dev.child("source")
                && src.attr("protocol").is_none()
            {
                return Err(ConfError::xml(
                    "Missing required attribute 'protocol' in element 'source'",
                ));
            }
            if dev.attr("sgio") == Some("unfiltered") {
                return Err(ConfError::unsupported(
                    "unfiltered sgio is no longer supported",
                ));
            }
            if let Some(io) = dev.child("iotune") {
                for what in ["bytes_sec", "iops_sec"] {
                    let total = io.child(&format!("total_{what}")).is_some();
                    let rw = io.child(&format!("read_{what}")).is_some()
                        || io.child(&format!("write_{what}")).is_some();
                    if total && rw {
                        return Err(ConfError::xml(format!(
                            "total and read/write {what} cannot be set at the same time"
                        )));
                    }
                }
            }
        }
        "interface" => {
            check_enum(dev, "type", "interface", NET_TYPES)?;
            check_mac(dev)?;
            if dev.attr("type") == Some("bridge")
                && dev.child("target").and_then(|t| t.attr("managed")) == Some("no")
            {
                return Err(ConfError::unsupported(
                    "unmanaged target dev is not supported on interfaces of type 'bridge'",
                ));
            }
        }
        "graphics" => check_enum(dev, "type", "graphics", GRAPHICS_TYPES)?,
        "input" => {
            if let Some(t) = dev.attr("type").filter(|t| !INPUT_TYPES.contains(t)) {
                return Err(ConfError::unsupported(format!(
                    "unknown input device type '{t}'"
                )));
            }
        }
        "tpm" => check_enum(dev, "model", "tpm", TPM_MODELS)?,
        "video" => {
            if let Some(m) = dev.child("model") {
                check_enum(m, "type", "model", VIDEO_TYPES)?;
            }
        }
        "watchdog" => {
            check_enum(dev, "model", "watchdog", WATCHDOG_MODELS)?;
            check_enum(dev, "action", "watchdog", WATCHDOG_ACTIONS)?;
        }
        "serial" | "parallel" | "console" | "channel" => {
            if let Some(t) = dev.attr("type").filter(|t| !CHR_TYPES.contains(t)) {
                return Err(ConfError::unsupported(format!(
                    "unknown type presented to host for character device: {t}"
                )));
            }
        }
        "rng" if dev.children_named("backend").count() != 1 => {
            return Err(ConfError::xml("only one RNG backend is supported"));
        }
        "controller" => {
            if let Some(i) = dev.attr("index")
                && i.parse::<u32>().is_err()
            {
                return Err(ConfError::xml(format!(
                    "Invalid value for attribute 'index' in element 'controller': '{i}'. Expected non-negative value"
                )));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Validation across devices: boot orders, video 'none', audio ids.
fn validate_all(devices: &Element) -> Result<(), ConfError> {
    let mut orders = Vec::new();
    for dev in devices.elements() {
        if let Some(o) = dev.child("boot").and_then(|b| b.attr("order")) {
            if orders.contains(&o) {
                return Err(ConfError::unsupported(format!(
                    "boot order '{o}' used for more than one device"
                )));
            }
            orders.push(o);
        }
    }
    let videos: Vec<&Element> = devices.children_named("video").collect();
    if videos.len() > 1
        && videos
            .iter()
            .any(|v| v.child("model").and_then(|m| m.attr("type")) == Some("none"))
    {
        return Err(ConfError::unsupported(
            "a 'none' video type must be the only video device defined for the domain",
        ));
    }
    let mut ids = Vec::new();
    for a in devices.children_named("audio") {
        if let Some(id) = a.attr("id") {
            if ids.contains(&id) {
                return Err(ConfError::xml(format!(
                    "audio ID {id} is used multiple times"
                )));
            }
            ids.push(id);
        }
    }
    Ok(())
}

/// Timers live under `<clock>`; checked here with the other enums.
pub fn validate_clock(root: &Element) -> Result<(), ConfError> {
    if let Some(clock) = root.child("clock") {
        for t in clock.children_named("timer") {
            check_enum(t, "name", "timer", TIMER_NAMES)?;
        }
    }
    Ok(())
}

/// A drive address for a disk on `bus` with index `idx`.
fn drive_address(bus: &str, idx: u64) -> Option<Element> {
    let (controller, bus_no, unit) = match bus {
        "scsi" => (idx / 7, 0, idx % 7),
        "ide" => (idx / 4, (idx % 4) / 2, idx % 2),
        "sata" => (idx / 6, 0, idx % 6),
        "fdc" => (0, 0, idx),
        _ => return None,
    };
    Some(
        Element::new("address")
            .with_attr("type", "drive")
            .with_attr("controller", controller.to_string())
            .with_attr("bus", bus_no.to_string())
            .with_attr("target", "0")
            .with_attr("unit", unit.to_string()),
    )
}

fn normalize_disk(dev: &mut Element) {
    if dev.attr("type").is_none() {
        dev.set_attr("type", "file");
    }
    if dev.attr("device").is_none() {
        dev.set_attr("device", "disk");
    }
    // libvirt reads only the attributes it knows and formats only those:
    // anything else on <disk> is dropped, not echoed back.
    const DISK_ATTRS: &[&str] = &["type", "device", "model", "rawio", "sgio", "snapshot"];
    dev.attrs.retain(|(k, _)| DISK_ATTRS.contains(&k.as_str()));
    dev.order_attrs(DISK_ATTRS);
    let device = dev.attr("device").unwrap_or("disk").to_owned();
    if let Some(target) = dev.child_mut("target") {
        let name = target.attr("dev").unwrap_or("").to_owned();
        if target.attr("bus").is_none() {
            target.set_attr("bus", disk_bus_for(&name, &device));
        }
        target.order_attrs(&["dev", "bus", "tray", "removable", "rotation_rate"]);
        let bus = target.attr("bus").unwrap_or("").to_owned();
        if dev.child("address").is_none()
            && let Some(addr) = disk_index(&name).and_then(|i| drive_address(&bus, i))
        {
            dev.children.push(Node::Element(addr));
        }
    }
    if let Some(io) = dev.child_mut("iotune") {
        io.sort_children(IOTUNE_ORDER);
    }
    sort_device(dev, DISK_ORDER);
}

pub const IOTUNE_ORDER: &[&str] = &[
    "total_bytes_sec",
    "read_bytes_sec",
    "write_bytes_sec",
    "total_iops_sec",
    "read_iops_sec",
    "write_iops_sec",
    "total_bytes_sec_max",
    "read_bytes_sec_max",
    "write_bytes_sec_max",
    "total_iops_sec_max",
    "read_iops_sec_max",
    "write_iops_sec_max",
    "size_iops_sec",
    "group_name",
    "total_bytes_sec_max_length",
    "read_bytes_sec_max_length",
    "write_bytes_sec_max_length",
    "total_iops_sec_max_length",
    "read_iops_sec_max_length",
    "write_iops_sec_max_length",
    "*",
];

fn disk_bus(dev: &Element) -> String {
    dev.child("target")
        .and_then(|t| t.attr("bus"))
        .unwrap_or("")
        .to_owned()
}

fn disk_idx(dev: &Element) -> u64 {
    dev.child("target")
        .and_then(|t| t.attr("dev"))
        .and_then(disk_index)
        .unwrap_or(0)
}

/// virDomainDiskInsert: disks on the same bus are kept in target order;
/// a disk on a new bus goes last.
fn sort_disks(disks: Vec<Element>) -> Vec<Element> {
    let mut out: Vec<Element> = Vec::with_capacity(disks.len());
    for disk in disks {
        let bus = disk_bus(&disk);
        let idx = disk_idx(&disk);
        let mut insert_at: Option<usize> = None;
        for i in (0..out.len()).rev() {
            if disk_bus(&out[i]) == bus {
                if disk_idx(&out[i]) > idx {
                    insert_at = Some(i);
                } else if insert_at.is_none() {
                    insert_at = Some(i + 1);
                }
            }
        }
        let at = insert_at.unwrap_or(out.len());
        out.insert(at, disk);
    }
    out
}

fn normalize_interface(
    dev: &mut Element,
    used: &mut Vec<String>,
    next: &mut usize,
) -> Result<(), ConfError> {
    if dev.child("mac").is_none() {
        dev.children.insert(
            0,
            Node::Element(Element::new("mac").with_attr("address", crate::domain::random_mac())),
        );
    }
    if let Some(lower) = dev
        .child("mac")
        .and_then(|m| m.attr("address"))
        .map(str::to_ascii_lowercase)
    {
        dev.child_or_insert("mac").set_attr("address", lower);
    }
    let is_network = dev.attr("type") == Some("network");
    Bandwidth::canonicalize(dev, BandwidthContext::interface(is_network))?;
    if is_network {
        let src = dev.child_mut("source").ok_or_else(|| {
            ConfError::xml("interface type='network' requires a 'source' element")
        })?;
        // The bridge is runtime state of the network, not config.
        src.remove_attr("bridge");
    }
    for ip in dev
        .elements_mut()
        .filter(|e| e.name == "ip" || e.name == "route")
    {
        if ip.name == "route" {
            ip.order_attrs(&[
                "family", "address", "netmask", "prefix", "gateway", "metric",
            ]);
        } else {
            ip.order_attrs(&["address", "family", "prefix", "peer"]);
        }
    }
    if dev.child("target").is_none() {
        let name = loop {
            let candidate = format!("testnet{next}");
            *next += 1;
            if !used.contains(&candidate) {
                break candidate;
            }
        };
        used.push(name.clone());
        dev.children
            .push(Node::Element(Element::new("target").with_attr("dev", name)));
    }
    if let Some(fref) = dev.child_mut("filterref") {
        // libvirt keeps filter parameters in a hash table and prints them
        // sorted by name.
        fref.sort_children_by(|_| 0);
        let mut params: Vec<Node> = fref.children.drain(..).collect();
        params.sort_by(|a, b| match (a, b) {
            (Node::Element(x), Node::Element(y)) => x.attr("name").cmp(&y.attr("name")),
            _ => std::cmp::Ordering::Equal,
        });
        fref.children = params;
    }
    sort_device(dev, INTERFACE_ORDER);
    Ok(())
}

fn normalize_video(dev: &mut Element, first: bool) {
    let model = dev.child_or_insert("model");
    let ty = model.attr("type").unwrap_or("").to_owned();
    if ty.is_empty() {
        model.set_attr("type", "cirrus");
    }
    let ty = model.attr("type").unwrap_or("").to_owned();
    match ty.as_str() {
        "vga" | "cirrus" | "vmvga" | "bochs" | "virtio"
            if (ty != "virtio" || model.attr("vram").is_some()) && model.attr("vram").is_none() =>
        {
            model.set_attr("vram", "16384");
        }
        "qxl" => {
            if model.attr("ram").is_none() {
                model.set_attr("ram", "65536");
            }
            if model.attr("vram").is_none() {
                model.set_attr("vram", "65536");
            }
            if model.attr("vgamem").is_none() {
                model.set_attr("vgamem", "16384");
            }
        }
        _ => {}
    }
    if ty != "none" {
        if model.attr("heads").is_none() {
            model.set_attr("heads", "1");
        }
        if first && model.attr("primary").is_none() {
            model.set_attr("primary", "yes");
        }
    }
    model.order_attrs(&[
        "type", "ram", "vram", "vram64", "vgamem", "heads", "primary", "blob",
    ]);
    sort_device(dev, &["driver", "model"]);
}

/// A TCP character device speaks raw unless told otherwise.
fn chardev_protocol(dev: &mut Element) {
    if dev.attr("type") == Some("tcp") && dev.child("protocol").is_none() {
        let at = dev
            .children
            .iter()
            .position(|n| matches!(n, Node::Element(e) if e.name == "source"))
            .map(|p| p + 1)
            .unwrap_or(0);
        dev.children.insert(
            at,
            Node::Element(Element::new("protocol").with_attr("type", "raw")),
        );
    }
}

fn normalize_graphics(dev: &mut Element) {
    let ty = dev.attr("type").unwrap_or("").to_owned();
    if ty == "rdp" && dev.attr("port").is_none() {
        dev.set_attr("port", "0");
        dev.order_attrs(&["type", "port"]);
    }
    if ty == "desktop" && dev.attr("fullscreen") == Some("no") {
        dev.remove_attr("fullscreen");
    }
    if ty == "spice" && dev.attr("defaultMode") == Some("any") {
        dev.remove_attr("defaultMode");
    }
    if (ty == "vnc" || ty == "spice" || ty == "rdp") && dev.attr("listen").is_none() {
        // The first address listener is mirrored in the listen attribute.
        let addr = dev
            .children_named("listen")
            .next()
            .filter(|l| l.attr("type") == Some("address"))
            .and_then(|l| l.attr("address"))
            .map(str::to_owned);
        if let Some(addr) = addr {
            dev.set_attr("listen", addr);
            dev.order_attrs(&["type", "port", "tlsPort", "autoport", "websocket", "listen"]);
        }
    }
    if ty == "spice" {
        dev.sort_children(&[
            "listen",
            "channel",
            "image",
            "jpeg",
            "zlib",
            "playback",
            "streaming",
            "mouse",
            "clipboard",
            "filetransfer",
            "gl",
            "*",
        ]);
    }
    if (ty == "vnc" || ty == "spice" || ty == "rdp") && dev.child("listen").is_none() {
        let listen = if let Some(sock) = dev.attr("socket") {
            Element::new("listen")
                .with_attr("type", "socket")
                .with_attr("socket", sock)
        } else if let Some(addr) = dev.attr("listen") {
            Element::new("listen")
                .with_attr("type", "address")
                .with_attr("address", addr)
        } else {
            Element::new("listen").with_attr("type", "address")
        };
        dev.children.insert(0, Node::Element(listen));
    }
    if ty == "vnc" && dev.attr("socket").is_none() {
        let sock: Option<String> = dev
            .children_named("listen")
            .find(|l| l.attr("type") == Some("socket"))
            .and_then(|l| l.attr("socket"))
            .map(str::to_owned);
        if let Some(sock) = sock {
            dev.set_attr("socket", sock);
        }
    }
}

/// The highest disk controller index implied controllers are added up to.
const MAX_DRIVE_CONTROLLER: u32 = 4095;

/// Child order of character devices (serial, parallel, channel, console).
const CHR_ORDER: &[&str] = &["source", "protocol", "log", "target"];

/// The `<console>` libvirt derives from the first serial port.
fn console_for(serial: &Element) -> Element {
    let mut console = Element::new("console");
    if let Some(t) = serial.attr("type") {
        console.set_attr("type", t);
    }
    for child in serial.elements() {
        if child.name != "target"
            && !INFO_TAIL.contains(&child.name.as_str())
            && child.name != "log"
        {
            console.children.push(Node::Element(child.clone()));
        }
    }
    console.children.push(Node::Element(
        Element::new("target")
            .with_attr("type", "serial")
            .with_attr("port", "0"),
    ));
    console
}

/// Normalise `<devices>` in place.
pub fn normalize(devices: &mut Element) -> Result<(), ConfError> {
    for dev in devices.elements() {
        validate(dev)?;
    }
    validate_all(devices)?;
    let mut used_ifnames: Vec<String> = devices
        .children_named("interface")
        .filter_map(|i| {
            i.child("target")
                .and_then(|t| t.attr("dev"))
                .map(str::to_owned)
        })
        .collect();
    let mut next_ifname = 0usize;
    let mut first_video = true;
    let mut serial_port = 0u32;
    let mut parallel_port = 0u32;
    for dev in devices.elements_mut() {
        normalize_addresses(dev)?;
        match dev.name.as_str() {
            "disk" => normalize_disk(dev),
            "interface" => normalize_interface(dev, &mut used_ifnames, &mut next_ifname)?,
            "video" => {
                normalize_video(dev, first_video);
                first_video = false;
            }
            "graphics" => normalize_graphics(dev),
            "hostdev" => {
                if dev.attr("mode").unwrap_or("subsystem") == "subsystem"
                    && dev.attr("managed").is_none()
                {
                    dev.set_attr("managed", "no");
                }
                dev.order_attrs(&[
                    "mode", "type", "managed", "sgio", "rawio", "model", "display", "ramfb",
                ]);
                sort_device(
                    dev,
                    &["driver", "source", "origstates", "readonly", "shareable"],
                );
            }
            "filesystem" => {
                let virtiofs = dev.child("driver").and_then(|d| d.attr("type")) == Some("virtiofs");
                if dev.attr("accessmode").is_none() && !virtiofs {
                    dev.set_attr("accessmode", "passthrough");
                }
                dev.order_attrs(&["type", "accessmode", "model", "multidevs", "fmode", "dmode"]);
            }
            "redirdev" => {
                if dev.attr("type") == Some("tcp") && dev.child("protocol").is_none() {
                    let at = dev
                        .children
                        .iter()
                        .position(|n| matches!(n, Node::Element(e) if e.name == "source"))
                        .map(|p| p + 1)
                        .unwrap_or(0);
                    dev.children.insert(
                        at,
                        Node::Element(Element::new("protocol").with_attr("type", "raw")),
                    );
                }
                if dev.children.is_empty() {
                    dev.children.push(Node::Break);
                }
            }
            "redirfilter" => {
                for usb in dev.elements_mut() {
                    for key in ["vendor", "product"] {
                        if let Some(n) = usb.attr(key).and_then(parse_hex_or_dec) {
                            usb.set_attr(key, format!("0x{n:04X}"));
                        }
                    }
                }
            }
            "serial" | "parallel" => {
                let port = if dev.name == "serial" {
                    &mut serial_port
                } else {
                    &mut parallel_port
                };
                let target = dev.child_or_insert("target");
                match target.attr("port").and_then(|p| p.parse::<u32>().ok()) {
                    Some(p) => *port = p + 1,
                    None => {
                        target.set_attr("port", port.to_string());
                        *port += 1;
                    }
                }
                target.order_attrs(&["type", "port"]);
                chardev_protocol(dev);
                sort_device(dev, CHR_ORDER);
            }
            "channel" | "console" => {
                chardev_protocol(dev);
                sort_device(dev, CHR_ORDER);
            }
            "rng" => sort_device(dev, &["rate", "backend"]),
            "controller" | "smartcard" | "sound" | "input" | "memballoon" | "watchdog" | "tpm"
            | "shmem" | "panic" | "vsock" | "iommu" | "memory" => {
                sort_device(dev, &["driver", "model", "source", "backend", "target"])
            }
            _ => {}
        }
    }

    // SCSI hostdevs get drive addresses after the SCSI disks' units.
    let mut used_units: Vec<String> = devices
        .elements()
        .filter_map(|d| d.child("address"))
        .filter(|a| a.attr("type") == Some("drive") && a.attr("controller") == Some("0"))
        .filter_map(|a| a.attr("unit").map(str::to_owned))
        .collect();
    for hd in devices.elements_mut().filter(|d| {
        d.name == "hostdev" && d.attr("type") == Some("scsi") && d.child("address").is_none()
    }) {
        let unit = (0u32..)
            .find(|u| !used_units.contains(&u.to_string()))
            .unwrap_or(0);
        used_units.push(unit.to_string());
        hd.children.push(Node::Element(
            drive_address("scsi", u64::from(unit)).unwrap_or_else(|| Element::new("address")),
        ));
    }

    // Controllers without an index get the next free one of their type.
    let mut next_index: Vec<(String, u32)> = Vec::new();
    for c in devices.elements_mut().filter(|d| d.name == "controller") {
        let ty = c.attr("type").unwrap_or("").to_owned();
        let slot = match next_index.iter_mut().find(|(t, _)| *t == ty) {
            Some(slot) => slot,
            None => {
                next_index.push((ty.clone(), 0));
                let last = next_index.len() - 1;
                &mut next_index[last]
            }
        };
        match c.attr("index").and_then(|i| i.parse::<u32>().ok()) {
            Some(i) => slot.1 = slot.1.max(i + 1),
            None => {
                c.set_attr("index", slot.1.to_string());
                slot.1 += 1;
            }
        }
        c.order_attrs(&["type", "index", "model"]);
    }

    // Implicit controllers, in the order libvirt adds them: one per
    // controller index a drive address names.
    let mut wanted: Vec<(String, String)> = Vec::new();
    let mut wanted_set: HashSet<(String, String)> = HashSet::new();
    for ty in ["ide", "fdc", "scsi", "sata"] {
        for d in devices.elements() {
            let is_disk_on_bus = d.name == "disk" && disk_bus(d) == ty;
            let is_scsi_hostdev =
                ty == "scsi" && d.name == "hostdev" && d.attr("type") == Some("scsi");
            if !(is_disk_on_bus || is_scsi_hostdev) {
                continue;
            }
            let idx = d
                .child("address")
                .filter(|a| a.attr("type") == Some("drive"))
                .and_then(|a| a.attr("controller"))
                .unwrap_or("0")
                .to_owned();
            // libvirt adds every controller index up to the one named.
            // It has no bound, so a drive address (or disk name) naming
            // controller 4000000000 would make it allocate that many; we
            // refuse instead.
            let max: u32 = idx.parse().unwrap_or(0);
            if max > MAX_DRIVE_CONTROLLER {
                return Err(ConfError::unsupported(format!(
                    "{ty} controller index {max} is out of range (at most {MAX_DRIVE_CONTROLLER})"
                )));
            }
            for i in 0..=max {
                let key = (ty.to_owned(), i.to_string());
                if wanted_set.insert(key.clone()) {
                    wanted.push(key);
                }
            }
        }
    }
    let has_virtio_chr = devices.elements().any(|d| {
        (d.name == "channel" || d.name == "console")
            && d.child("target").and_then(|t| t.attr("type")) == Some("virtio")
    });
    if has_virtio_chr {
        wanted.push(("virtio-serial".into(), "0".into()));
    }
    if devices.child("smartcard").is_some() {
        wanted.push(("ccid".into(), "0".into()));
    }
    let existing: HashSet<(String, String)> = devices
        .children_named("controller")
        .map(|c| {
            let attr = |k| c.attr(k).unwrap_or("").to_owned();
            (attr("type"), attr("index"))
        })
        .collect();
    for (ty, idx) in wanted {
        if !existing.contains(&(ty.clone(), idx.clone())) {
            devices.children.push(Node::Element(
                Element::new("controller")
                    .with_attr("type", ty)
                    .with_attr("index", idx),
            ));
        }
    }
    let mut slot = 0;
    for sc in devices.elements_mut().filter(|d| d.name == "smartcard") {
        if sc.child("address").is_none() {
            sc.children.push(Node::Element(
                Element::new("address")
                    .with_attr("type", "ccid")
                    .with_attr("controller", "0")
                    .with_attr("slot", slot.to_string()),
            ));
            slot += 1;
        }
    }

    // A serial port without a console gets one, as on x86.
    if devices.child("console").is_none()
        && let Some(serial) = devices.child("serial").filter(|s| {
            matches!(
                s.child("target").and_then(|t| t.attr("type")),
                None | Some("isa-serial") | Some("system-serial")
            )
        })
    {
        let mut console = console_for(serial);
        // Sorted as a parsed <console> is, so a re-parse keeps the order.
        sort_device(&mut console, CHR_ORDER);
        devices.children.push(Node::Element(console));
    }
    // Graphics without video get the default (cirrus) card.
    let has_graphics = devices.child("graphics").is_some();
    if has_graphics && devices.child("video").is_none() {
        let mut video =
            Element::new("video").with_child(Element::new("model").with_attr("type", "cirrus"));
        normalize_video(&mut video, true);
        devices.children.push(Node::Element(video));
    }

    // Disks: libvirt's insertion order; then group every device by kind.
    let mut disks = Vec::new();
    let mut rest = Vec::new();
    for n in devices.children.drain(..) {
        match n {
            Node::Element(e) if e.name == "disk" => disks.push(e),
            other => rest.push(other),
        }
    }
    devices.children = sort_disks(disks)
        .into_iter()
        .map(Node::Element)
        .chain(rest)
        .collect();
    devices.sort_children(DEVICE_ORDER);
    if devices.children.is_empty() {
        devices.children.push(Node::Break);
    }
    Ok(())
}
