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
    // Only an ISA serial port gets the mirroring console.
    let first =
        first.filter(|s| s.child("target").and_then(|t| t.attr("type")) == Some("isa-serial"));
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
            (
                "pci",
                "pcie-root" | "pci-root" | "pcie-root-port" | "pcie-to-pci-bridge" | "pci-bridge"
            ) | (
                "usb",
                "qemu-xhci"
                    | "nec-xhci"
                    | "piix3-uhci"
                    | "ich9-ehci1"
                    | "ich9-uhci1"
                    | "ich9-uhci2"
                    | "ich9-uhci3"
                    | "none"
            ) | ("sata" | "ide" | "virtio-serial", _)
                | ("scsi", "lsilogic" | "virtio-scsi")
        ),
        "input" => matches!(attr("bus"), "ps2" | "usb" | "virtio"),
        "audio" => attr("type") == "none",
        "graphics" => crate::graphics::start_supported(dev),
        "video" => {
            matches!(
                dev.child("model").and_then(|m| m.attr("type")),
                Some("vga" | "cirrus" | "bochs" | "qxl" | "virtio" | "ramfb" | "none")
            ) && dev
                .child("model")
                .and_then(|m| m.child("acceleration"))
                .is_none()
        }
        "sound" => matches!(
            attr("model"),
            "ich6" | "ich9" | "es1370" | "ac97" | "sb16" | "usb"
        ),
        "hub" => attr("type") == "usb",
        "panic" => matches!(attr("model"), "" | "isa" | "pvpanic" | "hyperv"),
        "crypto" => true,
        "iommu" => matches!(attr("model"), "intel" | "virtio"),
        "filesystem" => {
            matches!(
                dev.child("driver").and_then(|d| d.attr("type")),
                None | Some("path")
            ) && matches!(attr("accessmode"), "" | "passthrough" | "mapped" | "squash")
        }
        "rng" => dev
            .child("backend")
            .is_some_and(|b| matches!(b.attr("model"), Some("random" | "builtin"))),
        "channel" => {
            dev.child("target").and_then(|t| t.attr("type")) == Some("virtio")
                && crate::cmdline::chardev_supported(dev)
        }
        "watchdog" => matches!(attr("model"), "itco" | "ib700" | "i6300esb"),
        "memballoon" => matches!(attr("model"), "virtio" | "none"),
        "serial" => crate::cmdline::chardev_supported(dev),
        // The console of an x86 guest is its first serial port.
        "console" => match dev.child("target").and_then(|t| t.attr("type")) {
            Some("serial") => true,
            Some("virtio") => crate::cmdline::chardev_supported(dev),
            _ => false,
        },
        "disk" => {
            let bus = dev.child("target").and_then(|t| t.attr("bus"));
            matches!(attr("type"), "file" | "block")
                && matches!(
                    bus,
                    Some("virtio" | "sata" | "ide" | "scsi" | "usb" | "fdc")
                )
                && matches!(attr("device"), "" | "disk" | "cdrom")
        }
        "interface" => {
            matches!(
                attr("type"),
                "user" | "direct" | "bridge" | "ethernet" | "network"
            ) && crate::blockdev::nic_driver(crate::blockdev::nic_model(dev)).is_some()
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

/// The arguments for the devices of a definition, in libvirt's order.
/// `channel_dir` holds the sockets of unix channels without a path.
pub fn argv(
    devices: &[&Element],
    q35: bool,
    boot: &[String],
    netdev: &dyn Fn(usize) -> String,
    channel_dir: &str,
) -> Vec<String> {
    use crate::cmdline as c;
    let mut a = c::Args::default();
    let of = |name: &'static str| -> Vec<&Element> {
        devices.iter().copied().filter(|d| d.name == name).collect()
    };
    let conts = of("controller");
    c::iommus(&mut a, &of("iommu"), q35);
    c::pci_controllers(&mut a, &conts, q35);
    c::controllers(&mut a, &conts, q35);
    let mems: Vec<&Element> = of("memory")
        .into_iter()
        .filter(|m| m.attr("model").is_some())
        .collect();
    crate::numa::devices(&mut a, &mems, q35);
    c::hubs(&mut a, &of("hub"));
    let bootindex = boot_indices(devices, boot);
    let disks = of("disk");
    if q35
        && disks
            .iter()
            .any(|d| d.child("target").and_then(|t| t.attr("bus")) == Some("fdc"))
    {
        a.device(&[("driver", "isa-fdc".into())]);
    }
    // Node indices: libvirt numbers from the last disk up, a disk's
    // backing chain right after it.
    let mut start = vec![0; disks.len()];
    let mut next = 1;
    for (i, d) in disks.iter().enumerate().rev() {
        start[i] = next;
        next += crate::blockdev::chain_len(d);
    }
    for (i, d) in disks.iter().enumerate() {
        let n = start[i];
        for obj in crate::blockdev::chain_objects(n, d) {
            a.opt("-blockdev", obj);
        }
        if let Some(dev) =
            crate::blockdev::disk_device_in(n, d, pci_location(d, q35), bootindex(d), devices)
        {
            a.opt("-device", dev);
        }
    }
    c::filesystems(&mut a, &of("filesystem"), q35);
    for (i, iface) in of("interface").into_iter().enumerate() {
        a.opt("-netdev", netdev(i));
        a.opt(
            "-device",
            crate::blockdev::nic_device(i, iface, pci_location(iface, q35), bootindex(iface)),
        );
    }
    c::smartcards(&mut a, &of("smartcard"));
    for (i, ser) in of("serial").into_iter().enumerate() {
        let port = ser
            .child("target")
            .and_then(|t| t.attr("port"))
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(u32::try_from(i).unwrap_or(0));
        let id = format!("charserial{i}");
        let Some(chardev) = c::chardev(ser, &id, None) else {
            continue;
        };
        a.opt("-chardev", chardev);
        let target = ser.child("target").and_then(|t| t.attr("type"));
        if let Some(driver @ ("pci-serial" | "usb-serial")) = target {
            let mut f: Vec<(&str, serde_json::Value)> = vec![
                ("driver", driver.into()),
                ("chardev", id.into()),
                ("id", format!("serial{i}").into()),
            ];
            if driver == "pci-serial" {
                f.extend(c::pci_fields(ser, q35));
            } else if let Some(ad) = ser
                .child("address")
                .filter(|x| x.attr("type") == Some("usb"))
            {
                f.push((
                    "bus",
                    format!("usb.{}", ad.attr("bus").unwrap_or("0")).into(),
                ));
                f.push(("port", ad.attr("port").unwrap_or("1").into()));
            }
            a.device(&f);
            continue;
        }
        a.device(&[
            ("driver", "isa-serial".into()),
            ("chardev", id.into()),
            ("id", format!("serial{i}").into()),
            ("index", port.into()),
        ]);
    }
    for (i, par) in of("parallel").into_iter().enumerate() {
        let id = format!("charparallel{i}");
        let Some(chardev) = c::chardev(par, &id, None) else {
            continue;
        };
        a.opt("-chardev", chardev);
        a.device(&[
            ("driver", "isa-parallel".into()),
            ("chardev", id.into()),
            ("id", format!("parallel{i}").into()),
        ]);
    }
    c::channels(&mut a, &of("channel"), &of("console"), channel_dir);
    c::tpms(&mut a, &of("tpm"));
    c::inputs(&mut a, &of("input"), q35);
    let audios = of("audio");
    c::audio(&mut a, &audios);
    crate::graphics::argv(&mut a, &of("graphics"), &audios);
    c::videos(&mut a, &of("video"), q35);
    c::sounds(&mut a, &of("sound"), &audios, q35);
    c::watchdogs(&mut a, &of("watchdog"), q35);
    c::redirdevs(&mut a, &of("redirdev"), of("redirfilter").first().copied());
    c::hostdevs(&mut a, &of("hostdev"), q35);
    for b in of("memballoon") {
        c::balloon(&mut a, b, q35);
    }
    c::rngs(&mut a, &of("rng"), q35);
    a.0
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
                "hd" => {
                    d.name == "disk" && matches!(d.attr("device").unwrap_or("disk"), "disk" | "lun")
                }
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
