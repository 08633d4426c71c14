//! The devices phase 1 knows: the implicit set libvirt's qemu driver adds
//! to a definition without devices (controllers with their PCI addresses,
//! PS/2 input, audio, watchdog, balloon), so the guest's hardware is fixed
//! at define time, and their command-line arguments.
//!
//! Only a definition with no devices besides `<emulator>` gets the set:
//! with other devices, libvirt's PCI address allocation decides where
//! everything goes, and that is phase 2.

use virtmesh_conf::Element;

fn pci_addr(bus: u32, slot: u32, function: u32, multifunction: bool) -> Element {
    let mut a = Element::new("address")
        .with_attr("type", "pci")
        .with_attr("domain", "0x0000")
        .with_attr("bus", format!("0x{bus:02x}"))
        .with_attr("slot", format!("0x{slot:02x}"))
        .with_attr("function", format!("0x{function:x}"));
    if multifunction {
        a.set_attr("multifunction", "on");
    }
    a
}

/// libvirt's interface defaults: a random MAC, the x86 default model
/// (`rtl8139`), `<ip>` attributes in libvirt's order.
pub fn normalize_interfaces(devices: &mut Element) {
    for iface in devices.elements_mut().filter(|e| e.name == "interface") {
        if iface.child("mac").is_none() {
            iface.children.insert(
                0,
                virtmesh_conf::Node::Element(
                    Element::new("mac").with_attr("address", virtmesh_conf::domain::random_mac()),
                ),
            );
        }
        if iface.child("model").is_none() && iface.attr("type") != Some("hostdev") {
            let at = iface
                .children
                .iter()
                .rposition(|n| {
                    matches!(n, virtmesh_conf::Node::Element(e)
                        if matches!(e.name.as_str(), "mac" | "source" | "target"))
                })
                .map_or(0, |i| i + 1);
            iface.children.insert(
                at,
                virtmesh_conf::Node::Element(Element::new("model").with_attr("type", "rtl8139")),
            );
        }
        if let Some(ip) = iface.child_mut("ip") {
            ip.order_attrs(&["address", "family", "prefix"]);
        }
    }
}

/// libvirt's order of device kinds inside `<devices>`.
pub use virtmesh_conf::devices::DEVICE_ORDER;

/// libvirt's serial defaults (`isa-serial` target and model, ports in
/// order) and the console that mirrors the first serial port.
pub fn normalize_serials(devices: &mut Element) {
    let mut first: Option<Element> = None;
    let mut port = 0u32;
    for ser in devices.elements_mut().filter(|e| e.name == "serial") {
        let target = ser.child_or_insert("target");
        if target.attr("type").is_none() {
            target.set_attr("type", "isa-serial");
        }
        match target.attr("port").and_then(|p| p.parse::<u32>().ok()) {
            Some(p) => port = p + 1,
            None => {
                target.set_attr("port", port.to_string());
                port += 1;
            }
        }
        target.order_attrs(&["type", "port"]);
        if target.child("model").is_none() {
            target.children.push(virtmesh_conf::Node::Element(
                Element::new("model").with_attr("name", "isa-serial"),
            ));
        }
        if first.is_none() {
            first = Some(ser.clone());
        }
    }
    let has_console = devices.elements().any(|e| e.name == "console");
    if let (Some(ser), false) = (first, has_console) {
        let mut console = Element::new("console");
        console.attrs = ser.attrs.clone();
        for child in ser
            .elements()
            .filter(|c| c.name != "target" && c.name != "alias" && c.name != "address")
        {
            console
                .children
                .push(virtmesh_conf::Node::Element(child.clone()));
        }
        let port = ser
            .child("target")
            .and_then(|t| t.attr("port"))
            .unwrap_or("0")
            .to_owned();
        console.children.push(virtmesh_conf::Node::Element(
            Element::new("target")
                .with_attr("type", "serial")
                .with_attr("port", port),
        ));
        devices.children.push(virtmesh_conf::Node::Element(console));
    }
}

/// Whether the driver can run a guest with `dev` (phase 1: the default set).
pub fn supported(dev: &Element) -> bool {
    let attr = |k: &str| dev.attr(k).unwrap_or_default();
    match dev.name.as_str() {
        "emulator" => true,
        "controller" => matches!(
            (attr("type"), attr("model")),
            ("pci", "pcie-root" | "pci-root" | "pcie-root-port")
                | ("usb", "qemu-xhci" | "piix3-uhci")
                | ("sata", _)
        ),
        "input" => attr("bus") == "ps2",
        "audio" => attr("type") == "none",
        "watchdog" => attr("model") == "itco",
        "memballoon" => matches!(attr("model"), "virtio" | "none"),
        "serial" => matches!(attr("type"), "file" | "null" | "pty"),
        // The console of an x86 guest is its first serial port.
        "console" => dev.child("target").and_then(|t| t.attr("type")) == Some("serial"),
        "disk" => {
            let bus = dev.child("target").and_then(|t| t.attr("bus"));
            matches!(attr("type"), "file" | "block")
                && matches!(bus, Some("virtio" | "sata"))
                && matches!(attr("device"), "" | "disk" | "cdrom")
        }
        "interface" => {
            matches!(attr("type"), "user" | "direct" | "bridge" | "ethernet")
                && crate::blockdev::nic_driver(crate::blockdev::nic_model(dev)).is_some()
        }
        _ => false,
    }
}

/// QEMU's name for the PCI bus of an address, and the `addr` value.
fn pci_location(dev: &Element, q35: bool) -> Option<(String, String)> {
    let a = dev
        .child("address")
        .filter(|a| a.attr("type") == Some("pci"))?;
    let num = |k: &str| {
        let v = a.attr(k).unwrap_or("0");
        u32::from_str_radix(v.trim_start_matches("0x"), 16).unwrap_or(0)
    };
    let bus = match num("bus") {
        0 if q35 => "pcie.0".to_owned(),
        n => format!("pci.{n}"),
    };
    let (slot, function) = (num("slot"), num("function"));
    let addr = if function == 0 {
        format!("0x{slot:x}")
    } else {
        format!("0x{slot:x}.0x{function:x}")
    };
    Some((bus, addr))
}

/// A `-device` JSON object in libvirt's key order: driver, properties,
/// id, bus, [multifunction], addr.
fn device_json(
    driver: &str,
    props: Vec<(&str, serde_json::Value)>,
    id: &str,
    dev: &Element,
    q35: bool,
) -> String {
    let mut fields: Vec<(&str, serde_json::Value)> = vec![("driver", driver.into())];
    fields.extend(props);
    fields.push(("id", id.into()));
    if let Some((bus, addr)) = pci_location(dev, q35) {
        fields.push(("bus", bus.into()));
        if dev
            .child("address")
            .is_some_and(|a| a.attr("multifunction") == Some("on"))
        {
            fields.push(("multifunction", true.into()));
        }
        fields.push(("addr", addr.into()));
    }
    crate::argv::json_object(&fields)
}

/// The arguments for the devices of a definition, in libvirt's order: PCI
/// controllers, USB, audio, watchdog, balloon.
pub fn argv(
    devices: &[&Element],
    q35: bool,
    boot: &[String],
    netdev: &dyn Fn(usize) -> String,
) -> Vec<String> {
    let mut a = Vec::new();
    let of = |name: &'static str| devices.iter().copied().filter(move |d| d.name == name);
    let hex =
        |v: Option<&str>| v.and_then(|p| u32::from_str_radix(p.trim_start_matches("0x"), 16).ok());
    for c in of("controller").filter(|c| {
        matches!(
            c.attr("model"),
            Some("pcie-root-port" | "pcie-to-pci-bridge")
        )
    }) {
        let index: u32 = c.attr("index").and_then(|i| i.parse().ok()).unwrap_or(0);
        if c.attr("model") == Some("pcie-to-pci-bridge") {
            a.push("-device".to_owned());
            a.push(device_json(
                "pcie-pci-bridge",
                Vec::new(),
                &format!("pci.{index}"),
                c,
                q35,
            ));
            continue;
        }
        let target = c.child("target");
        let port = hex(target.and_then(|t| t.attr("port"))).unwrap_or(7 + index);
        let chassis: u32 = target
            .and_then(|t| t.attr("chassis"))
            .and_then(|c| c.parse().ok())
            .unwrap_or(index);
        a.push("-device".to_owned());
        a.push(device_json(
            "pcie-root-port",
            vec![("port", port.into()), ("chassis", chassis.into())],
            &format!("pci.{index}"),
            c,
            q35,
        ));
    }
    for c in of("controller").filter(|c| c.attr("type") == Some("usb")) {
        let driver = match c.attr("model") {
            Some("piix3-uhci") => "piix3-usb-uhci",
            _ => "qemu-xhci",
        };
        a.push("-device".to_owned());
        a.push(device_json(driver, Vec::new(), "usb", c, q35));
    }
    let bootindex = boot_indices(devices, boot);
    let disks: Vec<&Element> = of("disk").collect();
    for (i, d) in disks.iter().enumerate() {
        let n = disks.len() - i;
        for obj in crate::blockdev::blockdev_objects(n, d) {
            a.push("-blockdev".to_owned());
            a.push(obj);
        }
        let boot = bootindex(d);
        if let Some(dev) = crate::blockdev::disk_device(n, d, pci_location(d, q35), boot) {
            a.push("-device".to_owned());
            a.push(dev);
        }
    }
    for (i, iface) in of("interface").enumerate() {
        a.push("-netdev".to_owned());
        a.push(netdev(i));
        a.push("-device".to_owned());
        a.push(crate::blockdev::nic_device(
            i,
            iface,
            pci_location(iface, q35),
            bootindex(iface),
        ));
    }
    for (i, ser) in of("serial").enumerate() {
        let port = ser
            .child("target")
            .and_then(|t| t.attr("port"))
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(u32::try_from(i).unwrap_or(0));
        let id = format!("charserial{i}");
        let source = ser.child("source");
        let chardev = match ser.attr("type").unwrap_or_default() {
            "file" => {
                let path = source.and_then(|s| s.attr("path")).unwrap_or_default();
                let mut c = format!("file,id={id},path={}", path.replace(',', ",,"));
                if source.and_then(|s| s.attr("append")) == Some("on") {
                    c.push_str(",append=on");
                }
                c
            }
            other => format!("{other},id={id}"),
        };
        a.push("-chardev".to_owned());
        a.push(chardev);
        a.push("-device".to_owned());
        a.push(crate::argv::json_object(&[
            ("driver", "isa-serial".into()),
            ("chardev", id.into()),
            ("id", format!("serial{i}").into()),
            ("index", port.into()),
        ]));
    }
    for au in of("audio") {
        let id = au.attr("id").unwrap_or("1");
        a.push("-audiodev".to_owned());
        a.push(crate::argv::json_object(&[
            ("id", format!("audio{id}").into()),
            ("driver", "none".into()),
        ]));
    }
    for w in of("watchdog").filter(|w| w.attr("model") == Some("itco")) {
        a.push("-global".to_owned());
        a.push("ICH9-LPC.noreboot=off".to_owned());
        a.push("-watchdog-action".to_owned());
        a.push(w.attr("action").unwrap_or("reset").to_owned());
    }
    for b in of("memballoon").filter(|b| b.attr("model") == Some("virtio")) {
        a.push("-device".to_owned());
        a.push(device_json(
            "virtio-balloon-pci",
            Vec::new(),
            "balloon0",
            b,
            q35,
        ));
    }
    a
}

/// Boot indices as libvirt gives them: per-device `<boot order>` when any
/// device has one, else `<os><boot dev>` in order, each naming the first
/// disk, cdrom or NIC.
fn boot_indices<'a>(
    devices: &[&'a Element],
    boot: &[String],
) -> impl Fn(&Element) -> Option<u32> + 'a {
    let per_device: Vec<(*const Element, u32)> = devices
        .iter()
        .filter_map(|d| {
            let o = d.child("boot")?.attr("order")?.parse().ok()?;
            Some((*d as *const Element, o))
        })
        .collect();
    let mut table = per_device;
    if table.is_empty() {
        let mut n = 0;
        for b in boot {
            let first = devices.iter().find(|d| match b.as_str() {
                "hd" => d.name == "disk" && d.attr("device").unwrap_or("disk") == "disk",
                "cdrom" => d.name == "disk" && d.attr("device") == Some("cdrom"),
                "network" => d.name == "interface",
                _ => false,
            });
            if let Some(d) = first {
                n += 1;
                table.push((*d as *const Element, n));
            }
        }
    }
    // Identity by address: the same element the caller iterates over.
    move |d: &Element| {
        table
            .iter()
            .find(|(p, _)| std::ptr::eq(*p, d))
            .map(|(_, o)| *o)
    }
}

/// An address for a device hot-plugged into `devices`: on q35 a free
/// root port (libvirt leaves one spare at define), on pc a free slot of
/// bus 0; SATA disks get their drive address. `None`: no room.
pub fn hotplug_address(devices: &Element, dev: &Element, q35: bool) -> Option<Element> {
    if let Some(a) = dev.child("address") {
        return Some(a.clone());
    }
    let bus = dev.child("target").and_then(|t| t.attr("bus"));
    if dev.name == "disk" && bus == Some("sata") {
        let idx = dev
            .child("target")
            .and_then(|t| t.attr("dev"))
            .and_then(virtmesh_conf::devices::disk_index)?;
        return Some(
            Element::new("address")
                .with_attr("type", "drive")
                .with_attr("controller", "0")
                .with_attr("bus", "0")
                .with_attr("target", "0")
                .with_attr("unit", idx.to_string()),
        );
    }
    let num = |a: &Element, k: &str| {
        a.attr(k)
            .and_then(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok())
    };
    let used: Vec<(u32, u32)> = devices
        .elements()
        .filter_map(|d| d.child("address"))
        .filter(|a| a.attr("type") == Some("pci"))
        .filter_map(|a| Some((num(a, "bus")?, num(a, "slot")?)))
        .collect();
    if q35 {
        devices
            .elements()
            .filter(|c| c.name == "controller" && c.attr("model") == Some("pcie-root-port"))
            .filter_map(|c| c.attr("index")?.parse::<u32>().ok())
            .find(|i| !used.iter().any(|(b, _)| b == i))
            .map(|i| pci_addr(i, 0, 0, false))
    } else {
        (2..32)
            .find(|s| !used.contains(&(0, *s)))
            .map(|s| pci_addr(0, s, 0, false))
    }
}

/// QEMU's bus and addr for a device's PCI address (hot-plug).
pub fn bus_addr(dev: &Element, q35: bool) -> Option<(String, String)> {
    pci_location(dev, q35)
}
