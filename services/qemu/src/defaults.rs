//! The qemu driver's define-time device defaults for x86 guests, in the
//! order libvirt 11.3 applies them: controller indices and models, disk
//! buses and drive addresses, the default controllers (USB, SATA on q35,
//! the PCI root), implicit controllers for disks and channels, PS/2
//! input, the default video for graphics, audio, watchdog (q35) and
//! balloon; then PCI addresses ([`crate::pci`]), virtio-serial ports and
//! USB ports.

use crate::pci::insert_controller;
use virtmesh_conf::devices::{
    DISK_ORDER, INFO_TAIL, INTERFACE_ORDER, IOTUNE_ORDER, disk_bus_for, sort_device,
};
use virtmesh_conf::{ConfError, Element, Node};

fn attr<'a>(dev: &'a Element, k: &str) -> &'a str {
    dev.attr(k).unwrap_or_default()
}

fn index_of(dev: &Element) -> u32 {
    dev.attr("index").and_then(|i| i.parse().ok()).unwrap_or(0)
}

fn has_controller(devices: &Element, ty: &str, index: u32) -> bool {
    devices
        .children_named("controller")
        .any(|c| attr(c, "type") == ty && index_of(c) == index)
}

fn controller(ty: &str, index: u32) -> Element {
    Element::new("controller")
        .with_attr("type", ty)
        .with_attr("index", index.to_string())
}

pub fn drive_address(controller: u64, bus: u64, unit: u64) -> Element {
    Element::new("address")
        .with_attr("type", "drive")
        .with_attr("controller", controller.to_string())
        .with_attr("bus", bus.to_string())
        .with_attr("target", "0")
        .with_attr("unit", unit.to_string())
}

/// virDomainDiskDefAssignAddress.
fn disk_drive_address(bus: &str, idx: u64) -> Option<Element> {
    Some(match bus {
        "scsi" => drive_address(idx / 7, 0, idx % 7),
        "ide" => drive_address(idx / 4, (idx % 4) / 2, idx % 2),
        "sata" => drive_address(idx / 6, 0, idx % 6),
        "fdc" => drive_address(idx / 2, 0, idx % 2),
        _ => return None,
    })
}

/// Index and model defaults of explicit controllers.
fn controllers(devices: &mut Element, q35: bool) {
    let mut next: Vec<(String, u32)> = Vec::new();
    for c in devices.elements_mut().filter(|d| d.name == "controller") {
        let ty = attr(c, "type").to_owned();
        let slot = match next.iter().position(|(t, _)| *t == ty) {
            Some(p) => p,
            None => {
                next.push((ty.clone(), 0));
                next.len() - 1
            }
        };
        match c.attr("index").and_then(|i| i.parse::<u32>().ok()) {
            Some(i) => next[slot].1 = next[slot].1.max(i + 1),
            None => {
                c.set_attr("index", next[slot].1.to_string());
                next[slot].1 += 1;
            }
        }
        if c.attr("model").is_none() {
            match ty.as_str() {
                "usb" => c.set_attr("model", if q35 { "qemu-xhci" } else { "piix3-uhci" }),
                "scsi" => c.set_attr("model", "lsilogic"),
                _ => {}
            }
        }
        c.order_attrs(&["type", "index", "model", "ports", "vectors"]);
    }
}

/// Sort the controllers as libvirt's insertion keeps them: grouped by
/// type in order of first appearance, each type by index.
fn sort_controllers(devices: &mut Element) {
    let mut conts = Vec::new();
    let mut rest = Vec::new();
    for n in devices.children.drain(..) {
        match n {
            Node::Element(e) if e.name == "controller" => conts.push(e),
            other => rest.push(other),
        }
    }
    devices.children = rest;
    for c in conts {
        insert_controller(devices, c);
    }
}

fn disks(devices: &mut Element) {
    for d in devices.elements_mut().filter(|d| d.name == "disk") {
        if d.attr("type").is_none() {
            d.set_attr("type", "file");
        }
        // The qemu driver names itself and does not probe formats: an
        // image without a type is raw.
        if (d.child("source").is_some() && d.attr("type") != Some("network"))
            || d.child("driver").is_some()
        {
            let drv = d.child_or_insert("driver");
            if drv.attr("name").is_none() {
                drv.set_attr("name", "qemu");
            }
            if drv.attr("type").is_none() {
                drv.set_attr("type", "raw");
            }
            drv.order_attrs(&["name", "type"]);
            sort_device(d, DISK_ORDER);
        }
        if d.attr("device").is_none() {
            d.set_attr("device", "disk");
        }
        let device = attr(d, "device").to_owned();
        let Some(t) = d.child_mut("target") else {
            continue;
        };
        let name = attr(t, "dev").to_owned();
        if t.attr("bus").is_none() {
            t.set_attr("bus", disk_bus_for(&name, &device));
        }
        t.order_attrs(&["dev", "bus", "tray", "removable", "rotation_rate"]);
        let bus = attr(t, "bus").to_owned();
        if d.child("address").is_none()
            && let Some(a) =
                virtmesh_conf::devices::disk_index(&name).and_then(|i| disk_drive_address(&bus, i))
        {
            d.children.push(Node::Element(a));
        }
    }
}

/// Controllers libvirt adds by itself, in its order: qemu's defaults
/// (USB, SATA on q35, the PCI root), then one per disk bus index in use,
/// virtio-serial for virtio channels and consoles, CCID for smartcards.
fn implicit_controllers(devices: &mut Element, q35: bool) {
    if !has_controller(devices, "usb", 0) {
        insert_controller(
            devices,
            controller("usb", 0).with_attr("model", if q35 { "qemu-xhci" } else { "piix3-uhci" }),
        );
    }
    if q35 && !has_controller(devices, "sata", 0) {
        insert_controller(devices, controller("sata", 0));
    }
    if !has_controller(devices, "pci", 0) {
        insert_controller(
            devices,
            controller("pci", 0).with_attr("model", if q35 { "pcie-root" } else { "pci-root" }),
        );
    }
    for (ty, bus) in [
        ("scsi", "scsi"),
        ("fdc", "fdc"),
        ("ide", "ide"),
        ("sata", "sata"),
    ] {
        let mut max: Option<u32> = None;
        for d in devices.elements() {
            let on_bus = (d.name == "disk"
                && d.child("target").and_then(|t| t.attr("bus")) == Some(bus))
                || (ty == "scsi" && d.name == "hostdev" && attr(d, "type") == "scsi");
            if !on_bus {
                continue;
            }
            let c = d
                .child("address")
                .filter(|a| a.attr("type") == Some("drive"))
                .and_then(|a| a.attr("controller"))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            max = Some(max.map_or(c, |m: u32| m.max(c)));
        }
        for i in 0..=max.unwrap_or(0) {
            if max.is_some() && !has_controller(devices, ty, i) {
                let mut c = controller(ty, i);
                if ty == "scsi" {
                    c.set_attr("model", "lsilogic");
                }
                insert_controller(devices, c);
            }
        }
    }
    let virtio_chr = devices.elements().any(|d| {
        matches!(d.name.as_str(), "channel" | "console")
            && d.child("target").and_then(|t| t.attr("type")) == Some("virtio")
    });
    if virtio_chr && !has_controller(devices, "virtio-serial", 0) {
        insert_controller(devices, controller("virtio-serial", 0));
    }
    if devices.child("smartcard").is_some() && !has_controller(devices, "ccid", 0) {
        insert_controller(devices, controller("ccid", 0));
    }
}

fn push(devices: &mut Element, el: Element) {
    devices.children.push(Node::Element(el));
}

/// PS/2 input, video for graphics, audio, the q35 watchdog and balloon.
fn implicit_devices(devices: &mut Element, q35: bool, ps2: bool) {
    for ty in ["mouse", "keyboard"].into_iter().filter(|_| ps2) {
        if !devices
            .children_named("input")
            .any(|i| attr(i, "type") == ty && attr(i, "bus") == "ps2")
        {
            push(
                devices,
                Element::new("input")
                    .with_attr("type", ty)
                    .with_attr("bus", "ps2"),
            );
        }
    }
    let first_graphics = devices
        .child("graphics")
        .map(|g| attr(g, "type").to_owned());
    if first_graphics.is_some() && devices.child("video").is_none() {
        push(
            devices,
            Element::new("video").with_child(Element::new("model").with_attr("type", "cirrus")),
        );
    }
    let mut first = true;
    for v in devices.elements_mut().filter(|e| e.name == "video") {
        video(v, first);
        first = false;
    }
    if devices.child("audio").is_none() {
        let ty = match first_graphics.as_deref() {
            None | Some("vnc") => Some("none"),
            Some("spice") => Some("spice"),
            Some("sdl") => Some("sdl"),
            _ => None,
        };
        if let Some(ty) = ty {
            push(
                devices,
                Element::new("audio")
                    .with_attr("id", "1")
                    .with_attr("type", ty),
            );
        }
    }
    // q35's iTCO is always there; QEMU has one action for all watchdogs.
    if q35
        && !devices
            .children_named("watchdog")
            .any(|w| attr(w, "model") == "itco")
    {
        let action = devices
            .child("watchdog")
            .and_then(|w| w.attr("action"))
            .unwrap_or("reset")
            .to_owned();
        push(
            devices,
            Element::new("watchdog")
                .with_attr("model", "itco")
                .with_attr("action", action),
        );
    }
    for w in devices.elements_mut().filter(|e| e.name == "watchdog") {
        if w.attr("action").is_none() {
            w.set_attr("action", "reset");
        }
    }
    if devices.child("memballoon").is_none() {
        push(
            devices,
            Element::new("memballoon").with_attr("model", "virtio"),
        );
    }
}

/// libvirt's video model defaults.
fn video(v: &mut Element, primary: bool) {
    let model = v.child_or_insert("model");
    if model.attr("type").is_none() {
        model.set_attr("type", "cirrus");
    }
    let ty = attr(model, "type").to_owned();
    match ty.as_str() {
        "vga" | "cirrus" | "vmvga" | "bochs" if model.attr("vram").is_none() => {
            model.set_attr("vram", "16384");
        }
        "qxl" => {
            for (k, d) in [("ram", "65536"), ("vram", "65536"), ("vgamem", "16384")] {
                if model.attr(k).is_none() {
                    model.set_attr(k, d);
                }
            }
        }
        _ => {}
    }
    if !matches!(ty.as_str(), "none") {
        if model.attr("heads").is_none() {
            model.set_attr("heads", "1");
        }
        if primary && model.attr("primary").is_none() {
            model.set_attr("primary", "yes");
        }
    }
    model.order_attrs(&[
        "type", "ram", "vram", "vram64", "vgamem", "heads", "primary", "blob",
    ]);
    v.sort_children(&["driver", "model", "*", "alias", "address"]);
}

/// virtio-serial ports: consoles may take port 0, channels start at 1.
fn virtio_serial(devices: &mut Element) {
    let mut used: Vec<(String, u32)> = devices
        .elements()
        .filter_map(|d| d.child("address"))
        .filter(|a| a.attr("type") == Some("virtio-serial"))
        .filter_map(|a| {
            Some((
                a.attr("controller").unwrap_or("0").to_owned(),
                a.attr("port")?.parse().ok()?,
            ))
        })
        .collect();
    for kind in ["channel"] {
        for d in devices.elements_mut().filter(|d| d.name == kind) {
            if d.child("target").and_then(|t| t.attr("type")) != Some("virtio")
                || d.child("address").is_some()
            {
                continue;
            }
            let start = 1;
            let port = (start..)
                .find(|p| !used.contains(&("0".to_owned(), *p)))
                .unwrap_or(start);
            used.push(("0".into(), port));
            d.children.push(Node::Element(
                Element::new("address")
                    .with_attr("type", "virtio-serial")
                    .with_attr("controller", "0")
                    .with_attr("bus", "0")
                    .with_attr("port", port.to_string()),
            ));
        }
    }
}

/// Whether a device plugs into a USB port.
fn is_usb_device(d: &Element) -> bool {
    match d.name.as_str() {
        "hostdev" => attr(d, "type") == "usb",
        "disk" => d.child("target").and_then(|t| t.attr("bus")) == Some("usb"),
        "controller" => attr(d, "type") == "ccid",
        "input" => attr(d, "bus") == "usb",
        "serial" => d.child("target").and_then(|t| t.attr("type")) == Some("usb-serial"),
        "sound" => attr(d, "model") == "usb",
        "redirdev" => attr(d, "bus") == "usb",
        "hub" => attr(d, "type") == "usb",
        _ => false,
    }
}

/// Ports of the USB controller index 0 (virDomainUSBAddressControllerModelToPorts).
fn usb_ports(devices: &Element) -> u32 {
    devices
        .children_named("controller")
        .filter(|c| attr(c, "type") == "usb" && index_of(c) == 0)
        .map(|c| match attr(c, "model") {
            "piix3-uhci" | "piix4-uhci" | "vt82c686b-uhci" | "ich9-uhci1" => 2,
            "ehci" | "ich9-ehci1" => 6,
            "pci-ohci" => 3,
            "qemu-xhci" | "nec-xhci" => c.attr("ports").and_then(|p| p.parse().ok()).unwrap_or(4),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// USB ports for USB devices, adding hubs when the controller runs out.
fn usb(devices: &mut Element) -> Result<(), ConfError> {
    let count = devices
        .elements()
        .filter(|d| is_usb_device(d) && d.name != "hub")
        .count() as u32;
    let usb_off = devices
        .children_named("controller")
        .any(|c| attr(c, "type") == "usb" && attr(c, "model") == "none");
    if count > 0 && usb_off {
        return Err(ConfError::unsupported(
            "USB is disabled for this domain, but USB devices are present in the domain XML",
        ));
    }
    let ports = usb_ports(devices);
    if ports == 0 {
        return Ok(());
    }
    if count > ports {
        let hubs = (count - ports + 1).div_ceil(7);
        for _ in 0..hubs {
            push(devices, Element::new("hub").with_attr("type", "usb"));
        }
    }
    let mut used: Vec<String> = devices
        .elements()
        .filter_map(|d| d.child("address"))
        .filter(|a| a.attr("type") == Some("usb"))
        .filter_map(|a| a.attr("port").map(str::to_owned))
        .collect();
    // Free ports in order: the root ports, then each hub's.
    let mut hubs_ports: Vec<String> = Vec::new();
    let next_port = |used: &mut Vec<String>, hubs: &[String]| -> Option<String> {
        let root = (1..=ports).map(|p| p.to_string());
        let hubbed = hubs
            .iter()
            .flat_map(|h| (1..=8).map(move |p| format!("{h}.{p}")));
        let p = root.chain(hubbed).find(|p| !used.contains(p))?;
        used.push(p.clone());
        Some(p)
    };
    let usb_addr = |port: String| {
        Element::new("address")
            .with_attr("type", "usb")
            .with_attr("bus", "0")
            .with_attr("port", port)
    };
    for h in devices.elements_mut().filter(|d| d.name == "hub") {
        if h.child("address").is_none() {
            let Some(p) = next_port(&mut used, &hubs_ports) else {
                return Err(ConfError::internal("No free USB ports"));
            };
            h.children.push(Node::Element(usb_addr(p.clone())));
            hubs_ports.push(p);
        }
    }
    for kind in [
        "hostdev",
        "disk",
        "controller",
        "input",
        "serial",
        "sound",
        "redirdev",
    ] {
        for d in devices.elements_mut().filter(|d| d.name == kind) {
            if !is_usb_device(d) || d.child("address").is_some() {
                continue;
            }
            let Some(p) = next_port(&mut used, &hubs_ports) else {
                return Err(ConfError::internal("No free USB ports"));
            };
            d.children.push(Node::Element(usb_addr(p)));
        }
    }
    Ok(())
}

/// VNC/SPICE listen defaults as the inactive XML shows them: the first
/// address listener mirrored in `listen`, a VNC without a port on
/// autoport (`port='-1'`), a socket mirrored in `socket`; VNC has no
/// `<gl>`. (libvirt hides `passwd` unless asked for secure XML; we keep
/// and show it, since the same XML is what is persisted.)
fn graphics(g: &mut Element) {
    let ty = attr(g, "type").to_owned();
    if ty != "vnc" && ty != "spice" {
        return;
    }
    if ty == "vnc" {
        g.remove_children("gl");
    }
    if g.child("listen").is_none() {
        let listen = if let Some(sock) = g.attr("socket") {
            Element::new("listen")
                .with_attr("type", "socket")
                .with_attr("socket", sock)
        } else if let Some(addr) = g.attr("listen") {
            Element::new("listen")
                .with_attr("type", "address")
                .with_attr("address", addr)
        } else {
            Element::new("listen").with_attr("type", "address")
        };
        g.children.insert(0, Node::Element(listen));
    }
    let first = g.child("listen").cloned();
    let first_ty = first.as_ref().map(|l| attr(l, "type").to_owned());
    match first_ty.as_deref() {
        Some("address") => {
            if let Some(addr) = first.as_ref().and_then(|l| l.attr("address"))
                && g.attr("listen").is_none()
            {
                g.set_attr("listen", addr);
            }
            if ty == "vnc" && g.attr("port").is_none() {
                g.set_attr("port", "-1");
            }
            if ty == "vnc" && g.attr("port") == Some("-1") {
                g.set_attr("autoport", "yes");
            }
        }
        Some("socket") if ty == "vnc" => {
            if let Some(sock) = first.as_ref().and_then(|l| l.attr("socket"))
                && g.attr("socket").is_none()
            {
                g.set_attr("socket", sock);
            }
        }
        _ => {}
    }
    g.order_attrs(&[
        "type",
        "socket",
        "port",
        "tlsPort",
        "autoport",
        "websocket",
        "listen",
        "keymap",
        "defaultMode",
        "sharePolicy",
        "powerControl",
    ]);
}

/// Host devices: `managed='no'` unless given; SCSI ones get drive
/// addresses after the SCSI disks' units.
fn hostdevs(devices: &mut Element) {
    let mut used: Vec<String> = devices
        .elements()
        .filter_map(|d| d.child("address"))
        .filter(|a| a.attr("type") == Some("drive") && a.attr("controller") == Some("0"))
        .filter_map(|a| a.attr("unit").map(str::to_owned))
        .collect();
    for hd in devices.elements_mut().filter(|d| d.name == "hostdev") {
        if hd.attr("mode").unwrap_or("subsystem") == "subsystem" && hd.attr("managed").is_none() {
            hd.set_attr("managed", "no");
        }
        hd.order_attrs(&[
            "mode", "type", "managed", "sgio", "rawio", "model", "display", "ramfb",
        ]);
        if attr(hd, "type") == "scsi" && hd.child("address").is_none() {
            let unit = (0u64..)
                .find(|u| !used.contains(&u.to_string()))
                .unwrap_or(0);
            used.push(unit.to_string());
            hd.children.push(Node::Element(drive_address(0, 0, unit)));
        }
    }
}

/// Smartcards sit in the slots of CCID controller 0.
fn smartcards(devices: &mut Element) {
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
}

/// Filter parameters are kept in a hash table and printed sorted.
fn filterrefs(devices: &mut Element) {
    for f in devices
        .elements_mut()
        .filter(|d| d.name == "interface")
        .filter_map(|i| i.child_mut("filterref"))
    {
        let mut params: Vec<Node> = f
            .children
            .drain(..)
            .filter(|n| matches!(n, Node::Element(_)))
            .collect();
        params.sort_by(|a, b| match (a, b) {
            (Node::Element(x), Node::Element(y)) => x.attr("name").cmp(&y.attr("name")),
            _ => std::cmp::Ordering::Equal,
        });
        f.children = params;
    }
}

/// Checks the qemu driver makes on the devices before defaults, with
/// libvirt's errors.
fn validate(devices: &Element, q35: bool) -> Result<(), ConfError> {
    let mut targets: Vec<(&str, String)> = Vec::new();
    let mut tpms = 0;
    for d in devices.elements() {
        match d.name.as_str() {
            "disk" => {
                let dev = d
                    .child("target")
                    .and_then(|t| t.attr("dev"))
                    .unwrap_or_default();
                let src = crate::blockdev::disk_source(d).unwrap_or_default();
                if let Some((_, first)) = targets.iter().find(|(t, _)| *t == dev) {
                    return Err(ConfError::xml(format!(
                        "target '{dev}' duplicated for disk sources '{first}' and '{src}'"
                    )));
                }
                targets.push((dev, src));
                let bus = d.child("target").and_then(|t| t.attr("bus"));
                let bus = bus.unwrap_or(if dev.starts_with("hd") { "ide" } else { "" });
                if q35 && bus == "ide" {
                    return Err(ConfError::unsupported(
                        "IDE controllers are unsupported for this QEMU binary or machine type",
                    ));
                }
                if matches!(attr(d, "device"), "cdrom" | "floppy")
                    && (bus == "virtio" || dev.starts_with("vd"))
                {
                    return Err(ConfError::unsupported(format!(
                        "disk type of '{dev}' does not support ejectable media"
                    )));
                }
            }
            "controller" if q35 && attr(d, "type") == "ide" => {
                return Err(ConfError::unsupported(
                    "IDE controllers are unsupported for this QEMU binary or machine type",
                ));
            }
            "tpm" if attr(d, "model") != "spapr-tpm-proxy" => {
                tpms += 1;
                if tpms > 1 {
                    return Err(ConfError::unsupported(
                        "only a single TPM non-proxy device is supported",
                    ));
                }
            }
            "watchdog" if q35 && attr(d, "model") == "ib700" => {
                return Err(ConfError::unsupported(
                    "ib700 model of watchdog cannot be used with this machine type",
                ));
            }
            "vsock" => {
                if let Some(cid) = d
                    .child("cid")
                    .and_then(|c| c.attr("address"))
                    .and_then(|a| a.parse::<u64>().ok())
                    && cid < 3
                {
                    return Err(ConfError::unsupported("guest CIDs must be >= 3"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Children in libvirt's formatting order, and the small canonical forms
/// its formatter applies (TCP chardevs speak raw, USB filter ids in upper
/// case hex, LUKS encryption by QEMU).
fn canonical_children(devices: &mut Element) {
    for d in devices.elements_mut() {
        match d.name.as_str() {
            "interface" => sort_device(d, INTERFACE_ORDER),
            "disk" => {
                if let Some(io) = d.child_mut("iotune") {
                    io.sort_children(IOTUNE_ORDER);
                }
                for enc in d
                    .elements_mut()
                    .filter(|e| e.name == "source")
                    .flat_map(|s| s.elements_mut())
                    .filter(|e| e.name == "encryption")
                {
                    if enc.attr("format") == Some("luks") && enc.attr("engine").is_none() {
                        enc.set_attr("engine", "qemu");
                    }
                }
                sort_device(d, DISK_ORDER);
            }
            "serial" | "parallel" | "channel" | "console" | "redirdev" | "smartcard" => {
                if d.attr("type") == Some("tcp") && d.child("protocol").is_none() {
                    let at = d
                        .children
                        .iter()
                        .position(|n| matches!(n, Node::Element(e) if e.name == "source"))
                        .map_or(0, |p| p + 1);
                    d.children.insert(
                        at,
                        Node::Element(Element::new("protocol").with_attr("type", "raw")),
                    );
                }
                sort_device(d, &["source", "protocol", "log", "target"]);
            }
            "redirfilter" => {
                for usb in d.elements_mut() {
                    for key in ["vendor", "product"] {
                        let n = usb.attr(key).and_then(|v| {
                            u32::from_str_radix(
                                v.trim_start_matches("0x").trim_start_matches("0X"),
                                16,
                            )
                            .ok()
                        });
                        if let Some(n) = n {
                            usb.set_attr(key, format!("0x{n:04X}"));
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// All of the above, then PCI, virtio-serial and USB addresses.
pub fn apply(devices: &mut Element, q35: bool, ps2: bool) -> Result<(), ConfError> {
    canonical_children(devices);
    validate(devices, q35)?;
    for g in devices.elements_mut().filter(|d| d.name == "graphics") {
        graphics(g);
    }
    filterrefs(devices);
    controllers(devices, q35);
    sort_controllers(devices);
    disks(devices);
    implicit_controllers(devices, q35);
    implicit_devices(devices, q35, ps2);
    hostdevs(devices);
    smartcards(devices);
    virtio_serial(devices);
    crate::pci::assign(devices, q35)?;
    usb(devices)?;
    for d in devices.elements_mut() {
        if d.child("address").is_some() {
            let mut order = vec!["*"];
            order.extend_from_slice(INFO_TAIL);
            d.sort_children(&order);
        }
    }
    Ok(())
}
