//! libvirt's PCI address assignment at define time
//! (qemuDomainAssignPCIAddresses and domain_addr.c), so a guest's PCI
//! topology is fixed in its definition: every device that plugs into PCI
//! gets a bus/slot/function, and the controllers needed for that (PCIe
//! root ports, a pcie-to-pci bridge for conventional devices on q35,
//! pci-bridges on pc) are added the way libvirt adds them.
//!
//! The algorithm is libvirt's: a dry run over a growable address set
//! counts the buses the devices need, the missing controllers are added,
//! then a second run with the final set hands out the addresses in
//! libvirt's device order (controllers, filesystems, NICs, sound, other
//! controllers, virtio disks, hostdevs, balloon, RNG, watchdog, video,
//! shmem, input, serial, IOMMU, vsock, memory, crypto, panic).

use virtmesh_conf::{ConfError, Element, Node};

// What a bus accepts / what a device needs (virDomainPCIConnectFlags).
const PCI_DEV: u32 = 1 << 0;
const PCIE_DEV: u32 = 1 << 1;
const ROOT_PORT: u32 = 1 << 2;
const SWITCH_UP: u32 = 1 << 3;
const SWITCH_DOWN: u32 = 1 << 4;
const DMI_BRIDGE: u32 = 1 << 5;
const PCIE_TO_PCI: u32 = 1 << 6;
const PXB: u32 = 1 << 7;
const PXB_PCIE: u32 = 1 << 8;
const PCI_BRIDGE: u32 = 1 << 9;
const TYPES: u32 = (1 << 10) - 1;
const ENDPOINT: u32 = PCI_DEV | PCIE_DEV;
const AUTO: u32 = 1 << 10;
const HOTPLUG: u32 = 1 << 11;
const AGGREGATE: u32 = 1 << 12;
const INTEGRATED: u32 = 1 << 13;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciAddr {
    pub bus: u32,
    pub slot: u32,
    pub function: u32,
}

impl PciAddr {
    fn text(&self) -> String {
        format!("0000:{:02x}:{:02x}.{}", self.bus, self.slot, self.function)
    }
}

#[derive(Debug, Clone)]
struct Bus {
    model: &'static str,
    flags: u32,
    min: u32,
    max: u32,
    funcs: [u8; 32],
    aggregate: [bool; 32],
}

/// The downstream side of a PCI controller model (virDomainPCIAddressBusSetModel).
fn bus_of(model: &str, hotplug: bool) -> Option<Bus> {
    let hp = if hotplug { HOTPLUG } else { 0 };
    let (model, flags, min, max): (&'static str, u32, u32, u32) = match model {
        "pci-root" => ("pci-root", AUTO | PCI_DEV | PCI_BRIDGE | PXB | hp, 1, 31),
        "pci-bridge" => ("pci-bridge", AUTO | PCI_DEV | PCI_BRIDGE | hp, 1, 31),
        "pci-expander-bus" => ("pci-expander-bus", AUTO | PCI_DEV | PCI_BRIDGE | hp, 0, 31),
        "pcie-root" => (
            "pcie-root",
            PCIE_DEV | ROOT_PORT | DMI_BRIDGE | PXB_PCIE,
            1,
            31,
        ),
        "dmi-to-pci-bridge" => ("dmi-to-pci-bridge", PCI_DEV | PCI_BRIDGE, 0, 31),
        "pcie-to-pci-bridge" => (
            "pcie-to-pci-bridge",
            AUTO | PCI_DEV | PCI_BRIDGE | hp,
            1,
            31,
        ),
        "pcie-root-port" => (
            "pcie-root-port",
            AUTO | PCIE_DEV | SWITCH_UP | PCIE_TO_PCI | hp,
            0,
            0,
        ),
        "pcie-switch-downstream-port" => (
            "pcie-switch-downstream-port",
            AUTO | PCIE_DEV | SWITCH_UP | PCIE_TO_PCI | hp,
            0,
            0,
        ),
        "pcie-switch-upstream-port" => ("pcie-switch-upstream-port", SWITCH_DOWN, 0, 31),
        "pcie-expander-bus" => ("pcie-expander-bus", ROOT_PORT | DMI_BRIDGE, 0, 31),
        _ => return None,
    };
    Some(Bus {
        model,
        flags,
        min,
        max,
        funcs: [0; 32],
        aggregate: [false; 32],
    })
}

/// What a PCI controller plugs into (virDomainPCIControllerModelToConnectType).
fn controller_connect(model: &str) -> u32 {
    match model {
        "pci-bridge" => PCI_BRIDGE,
        "pci-expander-bus" => PXB,
        "pcie-expander-bus" => PXB_PCIE,
        "dmi-to-pci-bridge" => DMI_BRIDGE,
        "pcie-to-pci-bridge" => PCIE_TO_PCI,
        "pcie-root-port" => ROOT_PORT | AGGREGATE,
        "pcie-switch-upstream-port" => SWITCH_UP,
        "pcie-switch-downstream-port" => SWITCH_DOWN,
        _ => 0,
    }
}

fn attr<'a>(dev: &'a Element, k: &str) -> &'a str {
    dev.attr(k).unwrap_or_default()
}

fn model_type(dev: &Element) -> &str {
    dev.child("model")
        .and_then(|m| m.attr("type"))
        .unwrap_or_default()
}

/// How a device connects to PCI (qemuDomainDeviceCalculatePCIConnectFlags);
/// 0: not a PCI device.
fn connect_flags(dev: &Element, q35: bool) -> u32 {
    let pci = PCI_DEV | AUTO;
    let pcie = if q35 { PCIE_DEV | AUTO } else { pci };
    // QEMU 10 has virtio-*-pci-transitional: virtio follows PCIe.
    let virtio = pcie;
    let virtio_model = |m: &str| match m {
        "virtio-transitional" => pci,
        _ => virtio,
    };
    match dev.name.as_str() {
        "controller" => match attr(dev, "type") {
            "pci" => controller_connect(attr(dev, "model")),
            "sata" | "ide" => pci,
            "usb" => match attr(dev, "model") {
                "nec-xhci" | "qemu-xhci" => pcie,
                "none" => 0,
                _ => pci,
            },
            "scsi" => match attr(dev, "model") {
                "" | "ncr53c90" => 0,
                "virtio-scsi" | "virtio-non-transitional" => virtio,
                _ => pci,
            },
            "virtio-serial" => virtio_model(attr(dev, "model")),
            _ => 0,
        },
        "filesystem" => match dev.child("driver").and_then(|d| d.attr("type")) {
            None | Some("path") | Some("handle") => virtio_model(attr(dev, "model")),
            Some("virtiofs") => virtio,
            _ => 0,
        },
        "interface" => {
            let m = model_type(dev);
            if attr(dev, "type") == "hostdev" || m == "usb-net" {
                0
            } else {
                match m {
                    "virtio" | "virtio-non-transitional" => virtio,
                    "virtio-transitional" => pci,
                    // Conventional models libvirt knows; any model it
                    // does not know is taken for PCI Express.
                    "rtl8139"
                    | "e1000"
                    | "vmxnet3"
                    | "ne2k_pci"
                    | "pcnet"
                    | "i82551"
                    | "i82557b"
                    | "i82559er"
                    | "virtio-transitional-net" => pci,
                    _ => pcie,
                }
            }
        }
        "sound" => match attr(dev, "model") {
            "es1370" | "ac97" | "ich6" | "ich9" => pci,
            _ => 0,
        },
        "disk" if dev.child("target").and_then(|t| t.attr("bus")) == Some("virtio") => {
            virtio_model(attr(dev, "model"))
        }
        "hostdev" => {
            let ty = attr(dev, "type");
            if attr(dev, "mode") != "subsystem" && dev.attr("mode").is_some() {
                0
            } else if matches!(ty, "pci" | "mdev") {
                pcie
            } else if ty == "scsi_host" {
                virtio_model(attr(dev, "model"))
            } else {
                0
            }
        }
        "memballoon" => match attr(dev, "model") {
            "virtio" | "virtio-non-transitional" => virtio,
            "virtio-transitional" => pci,
            _ => 0,
        },
        "rng" => virtio_model(attr(dev, "model")),
        "watchdog" if attr(dev, "model") == "i6300esb" => pci,
        "video" => match model_type(dev) {
            "virtio" => virtio,
            "bochs" => pcie,
            "vga" | "cirrus" | "vmvga" | "xen" | "vbox" | "qxl" | "parallels" => pci,
            _ => 0,
        },
        "shmem" => pci,
        "input" if attr(dev, "bus") == "virtio" => virtio_model(attr(dev, "model")),
        "serial" if dev.child("target").and_then(|t| t.attr("type")) == Some("pci-serial") => pci,
        "iommu" if attr(dev, "model") == "virtio" => virtio | INTEGRATED,
        "vsock" => virtio_model(attr(dev, "model")),
        "memory" if matches!(attr(dev, "model"), "virtio-pmem" | "virtio-mem") => virtio,
        "crypto" => pci,
        "pstore" if attr(dev, "backend") == "acpi-erst" => pci,
        "panic" if attr(dev, "model") == "pvpanic" => pci | INTEGRATED,
        _ => 0,
    }
}

fn hex(v: Option<&str>) -> Option<u32> {
    let v = v?;
    match v.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// The device's PCI address if its config has one.
pub fn pci_addr_of(dev: &Element) -> Option<PciAddr> {
    let a = dev
        .child("address")
        .filter(|a| a.attr("type") == Some("pci"))?;
    let addr = PciAddr {
        bus: hex(a.attr("bus")).unwrap_or(0),
        slot: hex(a.attr("slot")).unwrap_or(0),
        function: hex(a.attr("function")).unwrap_or(0),
    };
    // An all-zero address is libvirt's "assign one for me".
    (addr
        != PciAddr {
            bus: 0,
            slot: 0,
            function: 0,
        })
    .then_some(addr)
}

/// Whether libvirt would pick an address for the device.
fn wanted(dev: &Element) -> bool {
    match dev.child("address") {
        None => true,
        Some(a) => a.attr("type") == Some("pci") && pci_addr_of(dev).is_none(),
    }
}

pub fn pci_address(addr: PciAddr, multi: Option<&str>) -> Element {
    let mut a = Element::new("address")
        .with_attr("type", "pci")
        .with_attr("domain", "0x0000")
        .with_attr("bus", format!("0x{:02x}", addr.bus))
        .with_attr("slot", format!("0x{:02x}", addr.slot))
        .with_attr("function", format!("0x{:x}", addr.function));
    if let Some(m) = multi {
        a.set_attr("multifunction", m);
    }
    a
}

fn set_address(dev: &mut Element, addr: PciAddr) {
    let multi = dev
        .child("address")
        .and_then(|a| a.attr("multifunction"))
        .map(str::to_owned);
    dev.remove_children("address");
    dev.children
        .push(Node::Element(pci_address(addr, multi.as_deref())));
}

struct AddrSet {
    buses: Vec<Bus>,
    dry: bool,
}

impl AddrSet {
    fn flags_compatible(
        addr: &PciAddr,
        bus_flags: u32,
        dev: u32,
        config: bool,
    ) -> Result<(), String> {
        let mut bus_flags = bus_flags;
        let mut dev = dev;
        let s = addr.text();
        if dev & INTEGRATED != 0 {
            if addr.bus == 0 {
                bus_flags |= PCI_DEV | AUTO;
            } else {
                return Err(format!(
                    "The device at PCI address {s} needs to be an integrated device (bus=0)"
                ));
            }
        }
        if config {
            if bus_flags & ENDPOINT != 0 {
                bus_flags |= ENDPOINT;
            }
            if dev & PCI_BRIDGE != 0 {
                dev |= PCI_DEV;
            }
        } else if dev & AUTO != 0 && bus_flags & AUTO == 0 {
            return Err(format!(
                "The device at PCI address {s} was auto-assigned this address, but the PCI controller with index='{}' doesn't allow auto-assignment",
                addr.bus
            ));
        }
        if dev & HOTPLUG != 0 && bus_flags & HOTPLUG == 0 {
            return Err(format!(
                "The device at PCI address {s} requires hotplug capability, but the PCI controller with index='{}' doesn't support hotplug",
                addr.bus
            ));
        }
        if dev & bus_flags & TYPES == 0 {
            let what = [
                (PCI_DEV, "standard PCI device"),
                (PCIE_DEV, "PCI Express device"),
                (ROOT_PORT, "pcie-root-port"),
                (SWITCH_UP, "pcie-switch-upstream-port"),
                (SWITCH_DOWN, "pcie-switch-downstream-port"),
                (DMI_BRIDGE, "dmi-to-pci-bridge"),
                (PCIE_TO_PCI, "pcie-to-pci-bridge"),
                (PXB, "pci-expander-bus"),
                (PXB_PCIE, "pcie-expander-bus"),
                (PCI_BRIDGE, "pci-bridge"),
            ]
            .iter()
            .find(|(f, _)| dev & f != 0)
            .map(|(_, w)| *w)
            .unwrap_or("device");
            return Err(format!(
                "The device at PCI address {s} cannot be plugged into the PCI controller with index='{}'. It requires a controller that accepts a {what}.",
                addr.bus
            ));
        }
        Ok(())
    }

    fn err(config: bool, msg: String) -> ConfError {
        if config {
            ConfError::xml(msg)
        } else {
            ConfError::internal(msg)
        }
    }

    fn validate(&self, addr: &PciAddr, flags: u32, config: bool) -> Result<(), ConfError> {
        let s = addr.text();
        if self.buses.is_empty() {
            return Err(Self::err(config, "No PCI buses available".into()));
        }
        let n = self.buses.len();
        let Some(bus) = self.buses.get(addr.bus as usize) else {
            return Err(Self::err(
                config,
                format!(
                    "Invalid PCI address {s}. Only PCI buses up to {} are available",
                    n - 1
                ),
            ));
        };
        Self::flags_compatible(addr, bus.flags, flags, config).map_err(|m| Self::err(config, m))?;
        if bus.min > 0 && addr.slot < bus.min {
            return Err(Self::err(
                config,
                format!("Invalid PCI address {s}. slot must be >= {}", bus.min),
            ));
        }
        if addr.slot > bus.max {
            return Err(Self::err(
                config,
                format!("Invalid PCI address {s}. slot must be <= {}", bus.max),
            ));
        }
        if addr.function > 7 {
            return Err(Self::err(
                config,
                format!("Invalid PCI address {s}. function must be <= 7"),
            ));
        }
        Ok(())
    }

    /// Add buses so `addr.bus` exists (virDomainPCIAddressSetGrow); the
    /// address may move when a bridge pair has to be added first.
    fn grow(&mut self, addr: &mut PciAddr, flags: u32) -> Result<(), ConfError> {
        let n = self.buses.len() as i64;
        let mut add = i64::from(addr.bus) - n + 1;
        if add <= 0 {
            return Ok(());
        }
        let mut need_bridge_pair = false;
        let model = if flags & PCI_DEV != 0 {
            need_bridge_pair = !self.buses.iter().any(|b| b.flags & PCI_BRIDGE != 0);
            if need_bridge_pair && add == 1 {
                add += 1;
                addr.bus += 1;
            }
            "pci-bridge"
        } else if flags & (PCIE_DEV | SWITCH_UP) != 0 {
            "pcie-root-port"
        } else {
            return Err(match controller_model_for(flags) {
                Some(m) => ConfError::internal(format!(
                    "a PCI slot is needed to connect a PCI controller model='{m}', but none is available, and it cannot be automatically added"
                )),
                None => ConfError::internal(format!(
                    "Cannot automatically add a new PCI bus for a device with connect flags {:02x}",
                    flags & TYPES
                )),
            });
        };
        let mut remaining = add;
        if need_bridge_pair {
            // A root port only the bridge may use, then the bridge.
            let mut port = bus_of("pcie-root-port", true).ok_or_else(bus_err)?;
            port.flags = PCIE_TO_PCI;
            self.buses.push(port);
            self.buses
                .push(bus_of("pcie-to-pci-bridge", true).ok_or_else(bus_err)?);
            remaining -= 2;
        }
        for _ in 0..remaining {
            self.buses.push(bus_of(model, true).ok_or_else(bus_err)?);
        }
        Ok(())
    }

    fn reserve(&mut self, addr: &mut PciAddr, flags: u32, config: bool) -> Result<(), ConfError> {
        if self.dry {
            self.grow(addr, flags)?;
        }
        self.validate(addr, flags, config)?;
        let bus = &mut self.buses[addr.bus as usize];
        let slot = addr.slot as usize;
        if bus.funcs[slot] & (1 << addr.function) != 0 {
            return Err(Self::err(
                config,
                format!("Attempted double use of PCI Address {}", addr.text()),
            ));
        }
        if bus.funcs[slot] == 0 && flags & AGGREGATE != 0 {
            bus.aggregate[slot] = true;
        }
        bus.funcs[slot] |= 1 << addr.function;
        Ok(())
    }

    fn in_use(&self, addr: &PciAddr) -> bool {
        self.buses
            .get(addr.bus as usize)
            .is_some_and(|b| b.funcs[addr.slot as usize] != 0)
    }

    fn next(&mut self, flags: u32, function: Option<u32>) -> Result<PciAddr, ConfError> {
        if self.buses.is_empty() {
            return Err(ConfError::xml("No PCI buses available"));
        }
        let f0 = function.unwrap_or(0);
        for (b, bus) in self.buses.iter().enumerate() {
            let mut a = PciAddr {
                bus: b as u32,
                slot: bus.min,
                function: f0,
            };
            if Self::flags_compatible(&a, bus.flags, flags, false).is_err() {
                continue;
            }
            while a.slot <= bus.max {
                let s = a.slot as usize;
                if bus.funcs[s] == 0 {
                    return Ok(a);
                }
                if flags & AGGREGATE != 0 && bus.aggregate[s] {
                    if bus.funcs[s] & (1 << a.function) == 0 {
                        return Ok(a);
                    }
                    if function.is_none() {
                        while a.function < 8 {
                            if bus.funcs[s] & (1 << a.function) == 0 {
                                return Ok(a);
                            }
                            a.function += 1;
                        }
                        a.function = 0;
                    }
                }
                a.slot += 1;
            }
        }
        if self.dry {
            let mut a = PciAddr {
                bus: self.buses.len() as u32,
                slot: 0,
                function: f0,
            };
            self.grow(&mut a, flags)?;
            a.slot = self.buses[a.bus as usize].min;
            return Ok(a);
        }
        Err(ConfError::internal("No more available PCI slots"))
    }

    fn reserve_next(&mut self, flags: u32, function: Option<u32>) -> Result<PciAddr, ConfError> {
        let mut a = self.next(flags, function)?;
        self.reserve(&mut a, flags, false)?;
        Ok(a)
    }
}

fn bus_err() -> ConfError {
    ConfError::internal("PCI controller model was not set correctly")
}

fn controller_model_for(flags: u32) -> Option<&'static str> {
    [
        (ROOT_PORT, "pcie-root-port"),
        (SWITCH_UP, "pcie-switch-upstream-port"),
        (SWITCH_DOWN, "pcie-switch-downstream-port"),
        (DMI_BRIDGE, "dmi-to-pci-bridge"),
        (PXB, "pci-expander-bus"),
        (PXB_PCIE, "pcie-expander-bus"),
        (PCI_BRIDGE, "pci-bridge"),
    ]
    .iter()
    .find(|(f, _)| flags & f != 0)
    .map(|(_, m)| *m)
}

fn is_pci_controller(dev: &Element) -> bool {
    dev.name == "controller" && dev.attr("type") == Some("pci")
}

fn index_of(dev: &Element) -> u32 {
    dev.attr("index").and_then(|i| i.parse().ok()).unwrap_or(0)
}

/// Indices of `<devices>` children, in libvirt's per-kind order.
fn positions(devices: &Element, kind: &str) -> Vec<usize> {
    devices
        .children
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match n {
            Node::Element(e) if e.name == kind => Some(i),
            _ => None,
        })
        .collect()
}

fn el(devices: &Element, i: usize) -> &Element {
    match &devices.children[i] {
        Node::Element(e) => e,
        _ => unreachable!("positions() yields elements only"),
    }
}

fn el_mut(devices: &mut Element, i: usize) -> &mut Element {
    match &mut devices.children[i] {
        Node::Element(e) => e,
        _ => unreachable!("positions() yields elements only"),
    }
}

/// One pass over the devices (qemuDomainAssignPCIAddresses' inner part).
struct Pass<'a> {
    devices: &'a mut Element,
    set: AddrSet,
    q35: bool,
}

impl Pass<'_> {
    fn new(
        devices: &mut Element,
        q35: bool,
        nbuses: usize,
        dry: bool,
    ) -> Result<Pass<'_>, ConfError> {
        let mut buses: Vec<Option<Bus>> = vec![None; nbuses];
        for i in positions(devices, "controller") {
            let c = el(devices, i);
            if !is_pci_controller(c) {
                continue;
            }
            let idx = index_of(c) as usize;
            if idx >= nbuses {
                return Err(ConfError::internal(format!(
                    "Inappropriate new pci controller index {idx} exceeds addrs array length"
                )));
            }
            let hotplug = c.child("target").and_then(|t| t.attr("hotplug")) != Some("off");
            buses[idx] = bus_of(attr(c, "model"), hotplug);
        }
        let has_pcie_root = buses
            .first()
            .is_some_and(|b| b.as_ref().is_some_and(|b| b.model == "pcie-root"));
        let default = if has_pcie_root {
            "pcie-root-port"
        } else {
            "pci-bridge"
        };
        let mut out = Vec::with_capacity(nbuses);
        for (i, b) in buses.into_iter().enumerate() {
            let fallback = if i == 0 { "pci-root" } else { default };
            out.push(match b {
                Some(b) => b,
                None => bus_of(fallback, true).ok_or_else(bus_err)?,
            });
        }
        let mut pass = Pass {
            devices,
            set: AddrSet { buses: out, dry },
            q35,
        };
        pass.collect()?;
        Ok(pass)
    }

    /// Reserve the addresses the config already has.
    fn collect(&mut self) -> Result<(), ConfError> {
        let all: Vec<usize> = (0..self.devices.children.len())
            .filter(|i| matches!(self.devices.children[*i], Node::Element(_)))
            .collect();
        for i in all {
            let d = el(self.devices, i);
            let Some(mut addr) = pci_addr_of(d) else {
                continue;
            };
            let mut flags = connect_flags(d, self.q35);
            if flags == 0 {
                flags = PCI_DEV;
            }
            // The PIIX3's own IDE and USB functions.
            if d.name == "controller" && addr.bus == 0 && addr.slot == 1 && index_of(d) == 0 {
                let ty = attr(d, "type");
                let model = attr(d, "model");
                if (ty == "ide" && addr.function == 1)
                    || (ty == "usb" && matches!(model, "" | "piix3-uhci") && addr.function == 2)
                {
                    continue;
                }
            }
            self.set.reserve(&mut addr, flags, true)?;
        }
        Ok(())
    }

    fn assign(&mut self, i: usize) -> Result<(), ConfError> {
        let d = el(self.devices, i);
        if !wanted(d) {
            return Ok(());
        }
        let flags = connect_flags(d, self.q35);
        if flags == 0 {
            return Ok(());
        }
        let a = self.set.reserve_next(flags, None)?;
        if !self.set.dry {
            set_address(el_mut(self.devices, i), a);
        }
        Ok(())
    }

    /// Fixed places of the chipsets' own devices and the primary video
    /// (qemuDomainValidateDevicePCISlotsPIIX3 / Q35).
    fn chipset(&mut self) -> Result<(), ConfError> {
        let fixed = |slot, function| PciAddr {
            bus: 0,
            slot,
            function,
        };
        let conts = positions(self.devices, "controller");
        if self.q35 {
            for &i in &conts {
                let c = el(self.devices, i);
                let ty = attr(c, "type");
                if ty == "sata" && index_of(c) == 0 {
                    let want = fixed(0x1f, 2);
                    match pci_addr_of(c) {
                        Some(a) if a != want => {
                            return Err(ConfError::internal(
                                "Primary SATA controller must have PCI address 0:0:1f.2",
                            ));
                        }
                        Some(_) => {}
                        None => set_address(el_mut(self.devices, i), want),
                    }
                } else if ty == "usb"
                    && attr(c, "model") == "ich9-uhci1"
                    && c.child("address").is_none()
                {
                    let mut a = fixed(0x1d, 0);
                    if self.set.in_use(&a) {
                        a.slot = 0x1a;
                    }
                    if !self.set.in_use(&a) {
                        self.set.reserve(&mut a, PCIE_DEV, true)?;
                        let c = el_mut(self.devices, i);
                        c.children.push(Node::Element(pci_address(a, Some("on"))));
                    }
                } else if ty == "pci"
                    && attr(c, "model") == "dmi-to-pci-bridge"
                    && c.child("address").is_none()
                {
                    let mut a = fixed(0x1e, 0);
                    if !self.set.in_use(&a) {
                        self.set.reserve(&mut a, PCIE_DEV, true)?;
                        set_address(el_mut(self.devices, i), a);
                    }
                }
            }
            for (s, f) in [(0x1f, 0), (0x1f, 3)] {
                let mut a = fixed(s, f);
                self.set.reserve(&mut a, PCIE_DEV, true)?;
            }
        } else {
            for &i in &conts {
                let c = el(self.devices, i);
                let ty = attr(c, "type");
                let want = if ty == "ide" && index_of(c) == 0 {
                    Some((
                        fixed(1, 1),
                        "Primary IDE controller must have PCI address 0:0:1.1",
                    ))
                } else if ty == "usb"
                    && index_of(c) == 0
                    && matches!(attr(c, "model"), "" | "piix3-uhci")
                {
                    Some((
                        fixed(1, 2),
                        "PIIX3 USB controller at index 0 must have PCI address 0:0:1.2",
                    ))
                } else {
                    None
                };
                let Some((mut want, msg)) = want else {
                    continue;
                };
                match pci_addr_of(c) {
                    Some(a) if a != want => return Err(ConfError::internal(msg)),
                    Some(_) => {}
                    None => set_address(el_mut(self.devices, i), want),
                }
                self.set.reserve(&mut want, PCI_DEV | AUTO, true)?;
            }
            for (s, f) in [(1, 0), (1, 3)] {
                let mut a = fixed(s, f);
                self.set.reserve(&mut a, PCI_DEV | AUTO, true)?;
            }
        }
        // The primary video: the first free slot QEMU would give it.
        if let Some(&v) = positions(self.devices, "video").first() {
            let vd = el(self.devices, v);
            let ty = model_type(vd);
            if !matches!(ty, "none" | "ramfb") && wanted(vd) {
                let mut a = fixed(if self.q35 { 1 } else { 2 }, 0);
                let flags = if self.q35 { PCIE_DEV } else { PCI_DEV | AUTO };
                self.set.validate(&a, flags, true)?;
                if self.set.in_use(&a) {
                    let f = connect_flags(vd, self.q35);
                    a = self.set.reserve_next(f, None)?;
                } else {
                    self.set.reserve(&mut a, flags, true)?;
                }
                set_address(el_mut(self.devices, v), a);
            }
        }
        if self.q35 {
            let mut a = fixed(0x1b, 0);
            if !self.set.in_use(&a)
                && let Some(s) = positions(self.devices, "sound").into_iter().find(|&s| {
                    let d = el(self.devices, s);
                    attr(d, "model") == "ich9" && wanted(d)
                })
            {
                self.set.reserve(&mut a, PCIE_DEV, true)?;
                set_address(el_mut(self.devices, s), a);
            }
        }
        Ok(())
    }

    /// qemuDomainAssignDevicePCISlots: libvirt's order of kinds.
    fn devices(&mut self) -> Result<(), ConfError> {
        let conts = positions(self.devices, "controller");
        for &i in &conts {
            let c = el(self.devices, i);
            if is_pci_controller(c) && !matches!(attr(c, "model"), "pci-root" | "pcie-root") {
                self.assign(i)?;
            }
        }
        for kind in ["filesystem", "interface", "sound"] {
            for i in positions(self.devices, kind) {
                let d = el(self.devices, i);
                if kind == "sound" && matches!(attr(d, "model"), "sb16" | "pcspk" | "usb") {
                    continue;
                }
                self.assign(i)?;
            }
        }
        for &i in &conts {
            let c = el(self.devices, i);
            let ty = attr(c, "type");
            let skip = ty == "pci"
                || (ty == "usb" && attr(c, "model") == "none")
                || matches!(ty, "fdc" | "ccid")
                || (ty == "ide" && index_of(c) == 0)
                || (ty == "scsi" && attr(c, "model") == "ncr53c90");
            if skip || !wanted(c) {
                continue;
            }
            if ty == "usb"
                && let Some(f) = usb2_function(attr(c, "model"))
            {
                self.assign_usb2(i, f)?;
                continue;
            }
            self.assign(i)?;
        }
        for kind in [
            "disk",
            "hostdev",
            "memballoon",
            "rng",
            "watchdog",
            "video",
            "shmem",
            "input",
            "serial",
            "iommu",
            "vsock",
            "memory",
            "crypto",
            "panic",
            "pstore",
        ] {
            for i in positions(self.devices, kind) {
                self.assign(i)?;
            }
        }
        Ok(())
    }

    /// USB2 companions share the slot of their EHCI (or first UHCI).
    fn assign_usb2(&mut self, i: usize, function: u32) -> Result<(), ConfError> {
        let c = el(self.devices, i);
        let index = index_of(c);
        let flags = connect_flags(c, self.q35);
        let found = positions(self.devices, "controller")
            .into_iter()
            .find_map(|j| {
                let o = el(self.devices, j);
                (attr(o, "type") == "usb"
                    && usb2_function(attr(o, "model")).is_some()
                    && index_of(o) == index)
                    .then(|| pci_addr_of(o))
                    .flatten()
            });
        let multi = (function == 0).then_some("on");
        let a = match found {
            Some(mut a) => {
                a.function = function;
                self.set.reserve(&mut a, flags, true)?;
                a
            }
            None => self.set.reserve_next(flags, Some(function))?,
        };
        if !self.set.dry {
            let c = el_mut(self.devices, i);
            c.remove_children("address");
            c.children.push(Node::Element(pci_address(a, multi)));
        }
        Ok(())
    }
}

/// The function an ICH9 USB2 controller takes in its slot.
fn usb2_function(model: &str) -> Option<u32> {
    match model {
        "ich9-ehci1" => Some(7),
        "ich9-uhci1" => Some(0),
        "ich9-uhci2" => Some(1),
        "ich9-uhci3" => Some(2),
        _ => None,
    }
}

/// Insert a controller where libvirt's virDomainControllerInsert puts it:
/// after the last controller of the same type with a lower index, else
/// before the first with a higher one, else after all devices.
pub fn insert_controller(devices: &mut Element, c: Element) {
    let ty = attr(&c, "type").to_owned();
    let idx = index_of(&c);
    let mut at: Option<usize> = None;
    for i in positions(devices, "controller").into_iter().rev() {
        let cur = el(devices, i);
        if attr(cur, "type") != ty {
            continue;
        }
        if index_of(cur) > idx {
            at = Some(i);
        } else if at.is_none() {
            at = Some(i + 1);
        }
    }
    let at = at.unwrap_or(devices.children.len());
    devices.children.insert(at, Node::Element(c));
}

/// Assign PCI addresses to every device that needs one, adding the
/// controllers that takes. Controllers must already be in libvirt's order.
pub fn assign(devices: &mut Element, q35: bool) -> Result<(), ConfError> {
    let max_idx: Option<u32> = positions(devices, "controller")
        .into_iter()
        .map(|i| el(devices, i))
        .filter(|c| is_pci_controller(c))
        .map(index_of)
        .max();
    let Some(max_idx) = max_idx else {
        return Ok(());
    };
    let nbuses = max_idx as usize + 1;
    // Pass 1: how many buses the devices need.
    let (total, added) = {
        let mut pass = Pass::new(devices, q35, nbuses, true)?;
        pass.chipset()?;
        if !q35
            && pass
                .set
                .buses
                .iter()
                .any(|b| b.min <= b.max && b.funcs[b.min as usize..=b.max as usize].contains(&0))
        {
            // A slot kept for a future pci-bridge (pci-root guests).
            pass.set.reserve_next(PCI_DEV | AUTO, None)?;
        }
        pass.devices()?;
        if max_idx == 0 && pass.set.buses.len() > 1 && q35 {
            // One spare root port for hot-plug.
            pass.set.reserve_next(PCIE_DEV | AUTO, None)?;
        }
        let models: Vec<&'static str> = pass.set.buses.iter().map(|b| b.model).collect();
        let mut added = Vec::new();
        for (i, model) in models.iter().enumerate().skip(1) {
            let exists = positions(pass.devices, "controller").into_iter().any(|j| {
                is_pci_controller(el(pass.devices, j)) && index_of(el(pass.devices, j)) == i as u32
            });
            if exists {
                continue;
            }
            let flags = controller_connect(model);
            pass.set.reserve_next(flags, None)?;
            added.push((i, *model));
        }
        (models.len(), added)
    };
    for (i, model) in added {
        insert_controller(
            devices,
            Element::new("controller")
                .with_attr("type", "pci")
                .with_attr("index", i.to_string())
                .with_attr("model", model),
        );
    }
    // Pass 2: the addresses.
    let mut pass = Pass::new(devices, q35, total, false)?;
    pass.chipset()?;
    pass.devices()?;
    set_all_multi(devices);
    controller_defaults(devices)
}

/// `multifunction='on'` on function 0 of any slot with more functions in use.
fn set_all_multi(devices: &mut Element) {
    let used: Vec<PciAddr> = devices
        .elements()
        .filter_map(pci_addr_of)
        .filter(|a| a.function != 0)
        .collect();
    for d in devices.elements_mut() {
        let Some(a) = pci_addr_of(d) else {
            continue;
        };
        if a.function == 0
            && used.iter().any(|u| u.bus == a.bus && u.slot == a.slot)
            && let Some(addr) = d.child_mut("address")
            && addr.attr("multifunction").is_none()
        {
            addr.set_attr("multifunction", "on");
        }
    }
}

/// Model names, chassis and port numbers of PCI controllers.
fn controller_defaults(devices: &mut Element) -> Result<(), ConfError> {
    for c in devices.elements_mut().filter(|c| is_pci_controller(c)) {
        let model = attr(c, "model").to_owned();
        let name = match model.as_str() {
            "pci-bridge" => Some("pci-bridge"),
            "dmi-to-pci-bridge" => Some("i82801b11-bridge"),
            "pcie-to-pci-bridge" => Some("pcie-pci-bridge"),
            "pcie-root-port" => Some("pcie-root-port"),
            "pcie-switch-upstream-port" => Some("x3130-upstream"),
            "pcie-switch-downstream-port" => Some("xio3130-downstream"),
            "pci-expander-bus" => Some("pxb"),
            "pcie-expander-bus" => Some("pxb-pcie"),
            _ => None,
        };
        if let Some(name) = name
            && c.child("model").is_none()
        {
            c.children.insert(
                0,
                Node::Element(Element::new("model").with_attr("name", name)),
            );
        }
        let idx = index_of(c).to_string();
        let addr = pci_addr_of(c);
        match model.as_str() {
            "pci-bridge" => {
                let t = c.child_or_insert("target");
                if t.attr("chassisNr").is_none() {
                    t.set_attr("chassisNr", idx);
                }
            }
            "pcie-root-port" | "pcie-switch-downstream-port" => {
                let a = addr.unwrap_or(PciAddr {
                    bus: 0,
                    slot: 0,
                    function: 0,
                });
                let t = c.child_or_insert("target");
                if t.attr("chassis").is_none() {
                    t.set_attr("chassis", idx);
                }
                if t.attr("port").is_none() {
                    let port = if model == "pcie-root-port" {
                        (a.slot << 3) + a.function
                    } else {
                        a.slot
                    };
                    t.set_attr("port", format!("0x{port:x}"));
                }
                t.order_attrs(&["chassisNr", "chassis", "port", "busNr", "hotplug"]);
            }
            _ => {}
        }
        c.sort_children(&["model", "target", "*", "alias", "address"]);
        if model == "pci-bridge"
            && let Some(a) = addr
            && index_of(c) <= a.bus
        {
            return Err(ConfError::unsupported(format!(
                "PCI controller at index {0} (0x{0:02x}) has bus='0x{1:02x}', but index must be larger than bus",
                index_of(c),
                a.bus
            )));
        }
    }
    Ok(())
}
