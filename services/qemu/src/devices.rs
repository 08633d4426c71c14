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

fn root_port(index: u32, function: u32) -> Element {
    Element::new("controller")
        .with_attr("type", "pci")
        .with_attr("index", index.to_string())
        .with_attr("model", "pcie-root-port")
        .with_child(Element::new("model").with_attr("name", "pcie-root-port"))
        .with_child(
            Element::new("target")
                .with_attr("chassis", index.to_string())
                .with_attr("port", format!("0x{:x}", 7 + index)),
        )
        .with_child(pci_addr(0, 1, function, function == 0))
}

/// libvirt 11.3's defaults for a device-less x86 guest on `q35` or `pc`.
pub fn defaults(q35: bool) -> Vec<Element> {
    let mut v = Vec::new();
    if q35 {
        v.push(
            Element::new("controller")
                .with_attr("type", "usb")
                .with_attr("index", "0")
                .with_attr("model", "qemu-xhci")
                .with_child(pci_addr(1, 0, 0, false)),
        );
        v.push(
            Element::new("controller")
                .with_attr("type", "sata")
                .with_attr("index", "0")
                .with_child(pci_addr(0, 0x1f, 2, false)),
        );
        v.push(
            Element::new("controller")
                .with_attr("type", "pci")
                .with_attr("index", "0")
                .with_attr("model", "pcie-root"),
        );
        // One port for USB, one for the balloon, one free for hot-plug.
        for (index, function) in [(1, 0), (2, 1), (3, 2)] {
            v.push(root_port(index, function));
        }
    } else {
        v.push(
            Element::new("controller")
                .with_attr("type", "usb")
                .with_attr("index", "0")
                .with_attr("model", "piix3-uhci")
                .with_child(pci_addr(0, 1, 2, false)),
        );
        v.push(
            Element::new("controller")
                .with_attr("type", "pci")
                .with_attr("index", "0")
                .with_attr("model", "pci-root"),
        );
    }
    v.push(
        Element::new("input")
            .with_attr("type", "mouse")
            .with_attr("bus", "ps2"),
    );
    v.push(
        Element::new("input")
            .with_attr("type", "keyboard")
            .with_attr("bus", "ps2"),
    );
    v.push(
        Element::new("audio")
            .with_attr("id", "1")
            .with_attr("type", "none"),
    );
    if q35 {
        v.push(
            Element::new("watchdog")
                .with_attr("model", "itco")
                .with_attr("action", "reset"),
        );
    }
    let balloon = if q35 {
        pci_addr(2, 0, 0, false)
    } else {
        pci_addr(0, 2, 0, false)
    };
    v.push(
        Element::new("memballoon")
            .with_attr("model", "virtio")
            .with_child(balloon),
    );
    v
}

/// libvirt's order of device kinds inside `<devices>`.
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

/// Devices that take no PCI address: with only these, the implicit set's
/// fixed addresses are exactly what libvirt would allocate.
pub fn needs_no_pci(dev: &Element) -> bool {
    matches!(dev.name.as_str(), "emulator" | "serial" | "console")
}

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
pub fn argv(devices: &[&Element], q35: bool) -> Vec<String> {
    let mut a = Vec::new();
    let of = |name: &'static str| devices.iter().copied().filter(move |d| d.name == name);
    let hex =
        |v: Option<&str>| v.and_then(|p| u32::from_str_radix(p.trim_start_matches("0x"), 16).ok());
    for c in of("controller").filter(|c| c.attr("model") == Some("pcie-root-port")) {
        let index: u32 = c.attr("index").and_then(|i| i.parse().ok()).unwrap_or(0);
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
