//! The device part of QEMU's command line, in libvirt 11.3's order and
//! syntax: PCI controllers, other controllers (USB, SCSI, SATA,
//! virtio-serial, CCID), USB hubs, disks, filesystems, NICs, smartcards,
//! serial/parallel ports, channels, consoles, TPM, input, audio, graphics,
//! video, sound, watchdog, USB redirection, balloon, RNG, panic, vsock.

use crate::argv::json_object;
use serde_json::Value;
use virtmesh_conf::Element;

fn attr<'a>(dev: &'a Element, k: &str) -> &'a str {
    dev.attr(k).unwrap_or_default()
}

fn index_of(dev: &Element) -> u32 {
    dev.attr("index").and_then(|i| i.parse().ok()).unwrap_or(0)
}

fn target_attr<'a>(dev: &'a Element, k: &str) -> Option<&'a str> {
    dev.child("target").and_then(|t| t.attr(k))
}

/// Command-line pieces collected in order.
#[derive(Default)]
pub struct Args(pub Vec<String>);

impl Args {
    pub fn opt(&mut self, opt: &str, val: impl Into<String>) {
        self.0.push(opt.to_owned());
        self.0.push(val.into());
    }

    pub fn device(&mut self, fields: &[(&str, Value)]) {
        self.opt("-device", json_object(fields));
    }
}

/// `bus`/`addr` (and `multifunction`) of a device's PCI address.
pub fn pci_fields(dev: &Element, q35: bool) -> Vec<(&'static str, Value)> {
    let mut f = Vec::new();
    if let Some((bus, addr)) = crate::devices::bus_addr(dev, q35) {
        f.push(("bus", bus.into()));
        if dev
            .child("address")
            .is_some_and(|a| a.attr("multifunction") == Some("on"))
        {
            f.push(("multifunction", true.into()));
        }
        f.push(("addr", addr.into()));
    }
    f
}

/// `bus`/`port` of a device on a USB port.
fn usb_fields(dev: &Element) -> Vec<(&'static str, Value)> {
    match dev
        .child("address")
        .filter(|a| a.attr("type") == Some("usb"))
    {
        Some(a) => vec![
            ("bus", format!("usb.{}", attr(a, "bus")).into()),
            ("port", attr(a, "port").into()),
        ],
        None => Vec::new(),
    }
}

fn with(
    mut head: Vec<(&'static str, Value)>,
    tail: Vec<(&'static str, Value)>,
) -> Vec<(&'static str, Value)> {
    head.extend(tail);
    head
}

/// PCI controllers, in index order.
pub fn pci_controllers(a: &mut Args, conts: &[&Element], q35: bool) {
    let mut pci: Vec<&Element> = conts
        .iter()
        .copied()
        .filter(|c| attr(c, "type") == "pci")
        .collect();
    pci.sort_by_key(|c| index_of(c));
    for c in pci {
        let index = index_of(c);
        let id = format!("pci.{index}");
        let name = c
            .child("model")
            .and_then(|m| m.attr("name"))
            .unwrap_or_default();
        let num = |k: &str| {
            target_attr(c, k).and_then(|v| match v.strip_prefix("0x") {
                Some(h) => u32::from_str_radix(h, 16).ok(),
                None => v.parse().ok(),
            })
        };
        let mut f: Vec<(&str, Value)> = vec![("driver", name.into())];
        match attr(c, "model") {
            "pcie-root-port" | "pcie-switch-downstream-port" => {
                f.push(("port", num("port").unwrap_or(0).into()));
                f.push(("chassis", num("chassis").unwrap_or(index).into()));
            }
            "pci-bridge" => f.push(("chassis_nr", num("chassisNr").unwrap_or(index).into())),
            "pcie-to-pci-bridge" | "dmi-to-pci-bridge" | "pcie-switch-upstream-port" => {}
            _ => continue,
        }
        f.push(("id", id.into()));
        a.device(&with(f, pci_fields(c, q35)));
    }
}

/// The other controllers, type by type as libvirt emits them.
pub fn controllers(a: &mut Args, conts: &[&Element], q35: bool) {
    for ty in ["usb", "scsi", "ide", "sata", "virtio-serial", "ccid"] {
        for c in conts.iter().copied().filter(|c| attr(c, "type") == ty) {
            let index = index_of(c);
            match ty {
                "usb" => usb_controller(a, c, q35),
                "scsi" => {
                    let driver = match attr(c, "model") {
                        "lsilogic" => "lsi",
                        "lsisas1068" => "mptsas1068",
                        "lsisas1078" => "megasas",
                        "virtio-scsi" => "virtio-scsi-pci",
                        "virtio-transitional" => "virtio-scsi-pci-transitional",
                        "virtio-non-transitional" => "virtio-scsi-pci-non-transitional",
                        _ => continue,
                    };
                    let mut f: Vec<(&str, Value)> = vec![("driver", driver.into())];
                    let drv = c.child("driver");
                    if let Some(io) = drv.and_then(|d| d.attr("iothread")) {
                        f.push(("iothread", format!("iothread{io}").into()));
                    }
                    f.push(("id", format!("scsi{index}").into()));
                    if let Some(d) = drv {
                        for (k, q) in [
                            ("queues", "num_queues"),
                            ("cmd_per_lun", "cmd_per_lun"),
                            ("max_sectors", "max_sectors"),
                        ] {
                            if let Some(n) = d.attr(k).and_then(|v| v.parse::<u64>().ok()) {
                                f.push((q, n.into()));
                            }
                        }
                        if let Some(v) = d.attr("ioeventfd") {
                            f.push(("ioeventfd", (v == "on").into()));
                        }
                    }
                    a.device(&with(f, pci_fields(c, q35)));
                }
                // The first IDE (pc) and SATA (q35) controllers are built in.
                "ide" if index == 0 && !q35 => {}
                "sata" if index == 0 && q35 => {}
                "sata" | "ide" => a.device(&with(
                    vec![
                        ("driver", "ahci".into()),
                        ("id", format!("sata{index}").into()),
                    ],
                    pci_fields(c, q35),
                )),
                "virtio-serial" => {
                    let mut f: Vec<(&str, Value)> = vec![
                        ("driver", "virtio-serial-pci".into()),
                        ("id", format!("virtio-serial{index}").into()),
                    ];
                    if let Some(p) = c.attr("ports").and_then(|p| p.parse::<u64>().ok()) {
                        f.push(("max_ports", p.into()));
                    }
                    a.device(&with(f, pci_fields(c, q35)));
                }
                "ccid" => a.device(&with(
                    vec![
                        ("driver", "usb-ccid".into()),
                        ("id", format!("ccid{index}").into()),
                    ],
                    usb_fields(c),
                )),
                _ => {}
            }
        }
    }
}

fn usb_controller(a: &mut Args, c: &Element, q35: bool) {
    let index = index_of(c);
    let model = attr(c, "model");
    let driver = match model {
        "qemu-xhci" => "qemu-xhci",
        "nec-xhci" => "nec-usb-xhci",
        "piix3-uhci" => "piix3-usb-uhci",
        "piix4-uhci" => "piix4-usb-uhci",
        "ehci" => "usb-ehci",
        "ich9-ehci1" => "ich9-usb-ehci1",
        "ich9-uhci1" => "ich9-usb-uhci1",
        "ich9-uhci2" => "ich9-usb-uhci2",
        "ich9-uhci3" => "ich9-usb-uhci3",
        "pci-ohci" => "pci-ohci",
        _ => return,
    };
    let mut f: Vec<(&str, Value)> = vec![("driver", driver.into())];
    if let Some(first) = c.child("master").and_then(|m| m.attr("startport")) {
        let master = if index == 0 {
            "usb.0".to_owned()
        } else {
            format!("usb{index}.0")
        };
        f.push(("masterbus", master.into()));
        f.push(("firstport", first.parse::<u64>().unwrap_or(0).into()));
    } else {
        if let Some(p) = c.attr("ports").and_then(|p| p.parse::<u64>().ok())
            && matches!(model, "qemu-xhci" | "nec-xhci")
        {
            f.push(("p2", p.into()));
            f.push(("p3", p.into()));
        }
        f.push((
            "id",
            if index == 0 {
                "usb".to_owned()
            } else {
                format!("usb{index}")
            }
            .into(),
        ));
    }
    a.device(&with(f, pci_fields(c, q35)));
}

/// USB hubs (after the controllers, before the disks).
pub fn hubs(a: &mut Args, hubs: &[&Element]) {
    for (i, h) in hubs.iter().enumerate() {
        a.device(&with(
            vec![
                ("driver", "usb-hub".into()),
                ("id", format!("hub{i}").into()),
            ],
            usb_fields(h),
        ));
    }
}

/// A chardev backend (`-chardev` value) for `dev` with id `id`;
/// `default_path` names the socket of a unix channel without a path.
pub fn chardev(dev: &Element, id: &str, default_path: Option<String>) -> Option<String> {
    let src = dev.child("source");
    let s = |k: &str| src.and_then(|s| s.attr(k)).unwrap_or_default();
    let esc = |v: &str| v.replace(',', ",,");
    let mut c = match attr(dev, "type") {
        "null" | "vc" | "stdio" | "pty" => format!("{},id={id}", attr(dev, "type")),
        "file" => {
            let mut c = format!("file,id={id},path={}", esc(s("path")));
            if s("append") == "on" {
                c.push_str(",append=on");
            }
            c
        }
        "pipe" => format!("pipe,id={id},path={}", esc(s("path"))),
        "dev" => format!("serial,id={id},path={}", esc(s("path"))),
        "unix" => {
            let path = match src.and_then(|s| s.attr("path")) {
                Some(p) => p.to_owned(),
                None => default_path?,
            };
            let mut c = format!("socket,id={id},path={}", esc(&path));
            if s("mode") != "connect" {
                c.push_str(",server=on,wait=off");
            }
            c
        }
        "tcp" => {
            let mut c = format!("socket,id={id},host={},port={}", s("host"), s("service"));
            if dev.child("protocol").and_then(|p| p.attr("type")) == Some("telnet") {
                c.push_str(",telnet=on");
            }
            if s("mode") == "bind" {
                c.push_str(",server=on,wait=off");
            }
            c
        }
        "spicevmc" => {
            let name = if dev.name == "redirdev" {
                "usbredir"
            } else {
                "vdagent"
            };
            format!("spicevmc,id={id},name={name}")
        }
        "qemu-vdagent" => {
            let mut c = format!("qemu-vdagent,id={id},name=vdagent");
            if let Some(cb) = src
                .and_then(|s| s.child("clipboard"))
                .and_then(|c| c.attr("copypaste"))
            {
                c.push_str(&format!(
                    ",clipboard={}",
                    if cb == "yes" { "on" } else { "off" }
                ));
            }
            if let Some(m) = src
                .and_then(|s| s.child("mouse"))
                .and_then(|m| m.attr("mode"))
            {
                c.push_str(&format!(
                    ",mouse={}",
                    if m == "client" { "on" } else { "off" }
                ));
            }
            c
        }
        _ => return None,
    };
    if let Some(log) = dev.child("log").and_then(|l| l.attr("file")) {
        c.push_str(&format!(",logfile={}", esc(log)));
        if let Some(ap) = dev.child("log").and_then(|l| l.attr("append")) {
            c.push_str(&format!(",logappend={ap}"));
        }
    }
    Some(c)
}

/// Whether the command line of a chardev type is one we build.
pub fn chardev_supported(dev: &Element) -> bool {
    matches!(
        attr(dev, "type"),
        "null" | "pty" | "file" | "pipe" | "unix" | "tcp" | "dev"
    ) && (attr(dev, "type") != "unix" || dev.child("source").and_then(|s| s.attr("path")).is_some())
}

/// Virtio channels and consoles (`virtserialport` / `virtconsole`).
pub fn channels(a: &mut Args, channels: &[&Element], consoles: &[&Element], channel_dir: &str) {
    for (i, ch) in channels.iter().enumerate() {
        if target_attr(ch, "type") != Some("virtio") {
            continue;
        }
        let id = format!("charchannel{i}");
        let name = target_attr(ch, "name").unwrap_or_default();
        let default = (!name.is_empty()).then(|| format!("{channel_dir}/{name}"));
        let Some(c) = chardev(ch, &id, default) else {
            continue;
        };
        a.opt("-chardev", c);
        let addr = ch.child("address");
        let port: u64 = addr
            .and_then(|x| x.attr("port"))
            .and_then(|p| p.parse().ok())
            .unwrap_or(1);
        let ctl = addr.and_then(|x| x.attr("controller")).unwrap_or("0");
        let bus = addr.and_then(|x| x.attr("bus")).unwrap_or("0");
        let mut f: Vec<(&str, Value)> = vec![
            ("driver", "virtserialport".into()),
            ("bus", format!("virtio-serial{ctl}.{bus}").into()),
            ("nr", port.into()),
            ("chardev", id.into()),
            ("id", format!("channel{i}").into()),
        ];
        if !name.is_empty() {
            f.push(("name", name.into()));
        }
        a.device(&f);
    }
    for (i, con) in consoles.iter().enumerate() {
        if target_attr(con, "type") != Some("virtio") {
            continue;
        }
        let id = format!("charconsole{i}");
        let Some(c) = chardev(con, &id, None) else {
            continue;
        };
        a.opt("-chardev", c);
        a.device(&[
            ("driver", "virtconsole".into()),
            ("chardev", id.into()),
            ("id", format!("console{i}").into()),
        ]);
    }
}

/// Input devices other than the machine's own PS/2 ones.
pub fn inputs(a: &mut Args, inputs: &[&Element], q35: bool) {
    for (i, inp) in inputs.iter().enumerate() {
        let ty = attr(inp, "type");
        let id = format!("input{i}");
        match attr(inp, "bus") {
            "usb" => {
                let driver = match ty {
                    "tablet" => "usb-tablet",
                    "keyboard" => "usb-kbd",
                    "mouse" => "usb-mouse",
                    _ => continue,
                };
                a.device(&with(
                    vec![("driver", driver.into()), ("id", id.into())],
                    usb_fields(inp),
                ));
            }
            "virtio" => {
                let driver = match ty {
                    "tablet" => "virtio-tablet-pci",
                    "keyboard" => "virtio-keyboard-pci",
                    "mouse" => "virtio-mouse-pci",
                    _ => continue,
                };
                a.device(&with(
                    vec![("driver", driver.into()), ("id", id.into())],
                    pci_fields(inp, q35),
                ));
            }
            _ => {}
        }
    }
}

/// `-audiodev` for each `<audio>`.
pub fn audio(a: &mut Args, audios: &[&Element]) {
    for au in audios {
        let id = format!("audio{}", attr(au, "id"));
        let mut f: Vec<(&str, Value)> = vec![("id", id.into())];
        match attr(au, "type") {
            "none" => f.push(("driver", "none".into())),
            "spice" => f.push(("driver", "spice".into())),
            "file" => {
                f.push(("driver", "wav".into()));
                if let Some(p) = au.attr("path") {
                    f.push(("path", p.into()));
                }
            }
            "pulseaudio" => {
                f.push(("driver", "pa".into()));
                if let Some(sv) = au.attr("serverName") {
                    f.push(("server", sv.into()));
                }
            }
            other => f.push(("driver", other.into())),
        }
        // Per-direction options (pulseaudio and the like).
        for (el, key) in [("input", "in"), ("output", "out")] {
            let Some(d) = au.child(el) else { continue };
            let mut m = serde_json::Map::new();
            if let Some(v) = d.attr("mixingEngine") {
                m.insert("mixing-engine".into(), (v == "yes").into());
            }
            if let Some(v) = d.attr("streamName") {
                m.insert("stream-name".into(), v.into());
            }
            if !m.is_empty() {
                f.push((key, Value::Object(m)));
            }
        }
        a.opt("-audiodev", json_object(&f));
    }
}

fn audio_id(dev: &Element, audios: &[&Element]) -> String {
    let id = dev
        .child("audio")
        .and_then(|x| x.attr("id"))
        .or_else(|| audios.first().and_then(|x| x.attr("id")))
        .unwrap_or("1");
    format!("audio{id}")
}

/// Video devices.
pub fn videos(a: &mut Args, videos: &[&Element], q35: bool) {
    for (i, v) in videos.iter().enumerate() {
        let Some(m) = v.child("model") else { continue };
        let primary = i == 0;
        let id = format!("video{i}");
        let num = |k: &str| m.attr(k).and_then(|x| x.parse::<u64>().ok());
        let heads = num("heads").unwrap_or(1);
        let mut f: Vec<(&str, Value)> = Vec::new();
        match attr(m, "type") {
            "vga" => {
                f.push((
                    "driver",
                    if primary { "VGA" } else { "secondary-vga" }.into(),
                ));
                f.push(("id", id.into()));
                f.push(("vgamem_mb", (num("vram").unwrap_or(16384) / 1024).into()));
            }
            "cirrus" => {
                f.push(("driver", "cirrus-vga".into()));
                f.push(("id", id.into()));
            }
            "bochs" => {
                f.push(("driver", "bochs-display".into()));
                f.push(("id", id.into()));
                f.push(("vgamem", (num("vram").unwrap_or(16384) * 1024).into()));
            }
            "qxl" => {
                f.push(("driver", if primary { "qxl-vga" } else { "qxl" }.into()));
                f.push(("id", id.into()));
                f.push(("max_outputs", heads.into()));
                f.push(("ram_size", (num("ram").unwrap_or(65536) * 1024).into()));
                f.push(("vram_size", (num("vram").unwrap_or(65536) * 1024).into()));
                f.push(("vram64_size_mb", (num("vram64").unwrap_or(0) / 1024).into()));
                f.push(("vgamem_mb", (num("vgamem").unwrap_or(16384) / 1024).into()));
            }
            "ramfb" => {
                a.device(&[("driver", "ramfb".into()), ("id", id.into())]);
                continue;
            }
            "virtio" => {
                let gl = m.child("acceleration").and_then(|x| x.attr("accel3d")) == Some("yes");
                let base = if primary {
                    "virtio-vga"
                } else {
                    "virtio-gpu-pci"
                };
                let driver = if gl {
                    format!("{base}-gl")
                } else {
                    base.to_owned()
                };
                f.push(("driver", driver.into()));
                f.push(("id", id.into()));
                f.push(("max_outputs", heads.into()));
                if let Some(r) = m.child("resolution") {
                    for (k, q) in [("x", "xres"), ("y", "yres")] {
                        if let Some(n) = r.attr(k).and_then(|x| x.parse::<u64>().ok()) {
                            f.push((q, n.into()));
                        }
                    }
                }
            }
            _ => continue,
        }
        a.device(&with(f, pci_fields(v, q35)));
    }
}

/// Sound devices and their HDA codecs.
pub fn sounds(a: &mut Args, sounds: &[&Element], audios: &[&Element], q35: bool) {
    for (i, s) in sounds.iter().enumerate() {
        let id = format!("sound{i}");
        let au = audio_id(s, audios);
        match attr(s, "model") {
            m @ ("ich6" | "ich9") => {
                let driver = if m == "ich9" {
                    "ich9-intel-hda"
                } else {
                    "intel-hda"
                };
                a.device(&with(
                    vec![("driver", driver.into()), ("id", id.clone().into())],
                    pci_fields(s, q35),
                ));
                let codecs: Vec<&Element> = s.children_named("codec").collect();
                let types: Vec<&str> = if codecs.is_empty() {
                    vec!["duplex"]
                } else {
                    codecs.iter().map(|c| attr(c, "type")).collect()
                };
                for (n, t) in types.iter().enumerate() {
                    a.device(&[
                        ("driver", format!("hda-{t}").into()),
                        ("id", format!("{id}-codec{n}").into()),
                        ("bus", format!("{id}.0").into()),
                        ("cad", n.into()),
                        ("audiodev", au.clone().into()),
                    ]);
                }
            }
            m @ ("es1370" | "ac97") => a.device(&with(
                vec![
                    (
                        "driver",
                        if m == "es1370" { "ES1370" } else { "AC97" }.into(),
                    ),
                    ("id", id.into()),
                    ("audiodev", au.into()),
                ],
                pci_fields(s, q35),
            )),
            "sb16" => a.device(&[
                ("driver", "sb16".into()),
                ("id", id.into()),
                ("audiodev", au.into()),
            ]),
            "usb" => a.device(&with(
                vec![
                    ("driver", "usb-audio".into()),
                    ("id", id.into()),
                    ("audiodev", au.into()),
                ],
                usb_fields(s),
            )),
            _ => {}
        }
    }
}

/// Watchdogs: the q35 iTCO is part of the chipset, others are devices;
/// QEMU has one action for all of them.
pub fn watchdogs(a: &mut Args, dogs: &[&Element], q35: bool) {
    let mut action = None;
    for (i, w) in dogs.iter().enumerate() {
        match attr(w, "model") {
            "itco" => a.opt("-global", "ICH9-LPC.noreboot=off"),
            m @ ("ib700" | "i6300esb") => a.device(&with(
                vec![("driver", m.into()), ("id", format!("watchdog{i}").into())],
                pci_fields(w, q35),
            )),
            _ => continue,
        }
        action.get_or_insert(match attr(w, "action") {
            "dump" => "pause",
            "" => "reset",
            other => other,
        });
    }
    if let Some(act) = action {
        a.opt("-watchdog-action", act);
    }
}

/// The balloon with its options.
pub fn balloon(a: &mut Args, b: &Element, q35: bool) {
    let driver = match attr(b, "model") {
        "virtio" => "virtio-balloon-pci",
        "virtio-transitional" => "virtio-balloon-pci-transitional",
        "virtio-non-transitional" => "virtio-balloon-pci-non-transitional",
        _ => return,
    };
    let mut f: Vec<(&str, Value)> = vec![("driver", driver.into()), ("id", "balloon0".into())];
    if let Some(v) = b.attr("autodeflate") {
        f.push(("deflate-on-oom", (v == "on").into()));
    }
    if let Some(v) = b.attr("freePageReporting") {
        f.push(("free-page-reporting", (v == "on").into()));
    }
    a.device(&with(f, pci_fields(b, q35)));
}

/// RNG backends and devices.
pub fn rngs(a: &mut Args, rngs: &[&Element], q35: bool) {
    for (i, r) in rngs.iter().enumerate() {
        let Some(be) = r.child("backend") else {
            continue;
        };
        let obj = format!("objrng{i}");
        match attr(be, "model") {
            "random" => a.opt(
                "-object",
                json_object(&[
                    ("qom-type", "rng-random".into()),
                    ("id", obj.clone().into()),
                    ("filename", be.text().trim().to_owned().into()),
                ]),
            ),
            "builtin" => a.opt(
                "-object",
                json_object(&[
                    ("qom-type", "rng-builtin".into()),
                    ("id", obj.clone().into()),
                ]),
            ),
            "egd" => {
                let id = format!("charrng{i}");
                let mut fake = be.clone();
                fake.name = "rng".into();
                let Some(c) = chardev(&fake, &id, None) else {
                    continue;
                };
                a.opt("-chardev", c);
                a.opt(
                    "-object",
                    json_object(&[
                        ("qom-type", "rng-egd".into()),
                        ("id", obj.clone().into()),
                        ("chardev", id.into()),
                    ]),
                );
            }
            _ => continue,
        }
        let driver = match attr(r, "model") {
            "virtio-transitional" => "virtio-rng-pci-transitional",
            "virtio-non-transitional" => "virtio-rng-pci-non-transitional",
            _ => "virtio-rng-pci",
        };
        let mut f: Vec<(&str, Value)> = vec![
            ("driver", driver.into()),
            ("rng", obj.into()),
            ("id", format!("rng{i}").into()),
        ];
        if let Some(rate) = r.child("rate") {
            if let Some(b) = rate.attr("bytes").and_then(|x| x.parse::<u64>().ok()) {
                f.push(("max-bytes", b.into()));
            }
            if let Some(p) = rate.attr("period").and_then(|x| x.parse::<u64>().ok()) {
                f.push(("period", p.into()));
            }
        }
        a.device(&with(f, pci_fields(r, q35)));
    }
}

/// USB redirection over a chardev.
pub fn redirdevs(a: &mut Args, redirs: &[&Element], filter: Option<&Element>) {
    let filter = filter.map(|f| {
        f.children_named("usbdev")
            .map(|u| {
                let hex = |k: &str| {
                    u.attr(k)
                        .and_then(|v| {
                            u32::from_str_radix(
                                v.trim_start_matches("0x").trim_start_matches("0X"),
                                16,
                            )
                            .ok()
                        })
                        .map_or("-1".to_owned(), |n| {
                            if k == "class" {
                                format!("0x{n:02X}")
                            } else {
                                format!("0x{n:04X}")
                            }
                        })
                };
                let version = u.attr("version").map_or("-1".to_owned(), |v| {
                    let (maj, min) = v.split_once('.').unwrap_or((v, "0"));
                    let maj: u32 = maj.parse().unwrap_or(0);
                    let min: u32 = min.parse().unwrap_or(0);
                    format!("0x{maj:02X}{min:02X}")
                });
                let allow = if u.attr("allow") == Some("yes") { 1 } else { 0 };
                format!(
                    "{}:{}:{}:{version}:{allow}",
                    hex("class"),
                    hex("vendor"),
                    hex("product")
                )
            })
            .collect::<Vec<_>>()
            .join("|")
    });
    for (i, r) in redirs.iter().enumerate() {
        let id = format!("charredir{i}");
        let Some(c) = chardev(r, &id, None) else {
            continue;
        };
        a.opt("-chardev", c);
        let mut f: Vec<(&str, Value)> = vec![
            ("driver", "usb-redir".into()),
            ("chardev", id.into()),
            ("id", format!("redir{i}").into()),
        ];
        if let Some(b) = r
            .child("boot")
            .and_then(|b| b.attr("order"))
            .and_then(|o| o.parse::<u64>().ok())
        {
            f.push(("bootindex", b.into()));
        }
        if let Some(fl) = &filter {
            f.push(("filter", fl.clone().into()));
        }
        a.device(&with(f, usb_fields(r)));
    }
}

/// 9p filesystems (`-fsdev` + `virtio-9p-pci`).
pub fn filesystems(a: &mut Args, fss: &[&Element], q35: bool) {
    for (i, fs) in fss.iter().enumerate() {
        let driver = fs.child("driver");
        if !matches!(driver.and_then(|d| d.attr("type")), None | Some("path")) {
            continue;
        }
        let model = match attr(fs, "accessmode") {
            "" | "passthrough" => "passthrough",
            "mapped" => "mapped",
            "squash" => "none",
            _ => continue,
        };
        let mut v = format!("local,security_model={model}");
        if let Some(w) = driver.and_then(|d| d.attr("wrpolicy")) {
            v.push_str(&format!(",writeout={w}"));
        }
        for k in ["fmode", "dmode"] {
            if let Some(m) = fs.attr(k) {
                v.push_str(&format!(",{k}={m}"));
            }
        }
        let id = format!("fs{i}");
        let src = fs
            .child("source")
            .and_then(|s| s.attr("dir"))
            .unwrap_or_default();
        v.push_str(&format!(",id=fsdev-{id},path={}", src.replace(',', ",,")));
        if fs.child("readonly").is_some() {
            v.push_str(",readonly");
        }
        a.opt("-fsdev", v);
        let tag = target_attr(fs, "dir").unwrap_or_default();
        a.device(&with(
            vec![
                ("driver", "virtio-9p-pci".into()),
                ("id", id.clone().into()),
                ("fsdev", format!("fsdev-{id}").into()),
                ("mount_tag", tag.into()),
            ],
            pci_fields(fs, q35),
        ));
    }
}

/// Smartcards on CCID slots.
pub fn smartcards(a: &mut Args, cards: &[&Element]) {
    for (i, sc) in cards.iter().enumerate() {
        let id = format!("smartcard{i}");
        let ctl = sc
            .child("address")
            .and_then(|x| x.attr("controller"))
            .unwrap_or("0");
        let bus = format!("ccid{ctl}.0");
        match attr(sc, "mode") {
            "host" => a.device(&[
                ("driver", "ccid-card-emulated".into()),
                ("backend", "nss-emulated".into()),
                ("id", id.into()),
                ("bus", bus.into()),
            ]),
            "host-certificates" => {
                let mut f: Vec<(&str, Value)> = vec![
                    ("driver", "ccid-card-emulated".into()),
                    ("backend", "certificates".into()),
                ];
                let certs: Vec<String> = sc
                    .children_named("certificate")
                    .map(|c| c.text().trim().to_owned())
                    .collect();
                for (k, c) in ["cert1", "cert2", "cert3"].iter().zip(certs) {
                    f.push((k, c.into()));
                }
                let db = sc
                    .child_text("database")
                    .map(|d| d.trim().to_owned())
                    .unwrap_or_else(|| "/etc/pki/nssdb".into());
                f.push(("db", db.into()));
                f.push(("id", id.into()));
                f.push(("bus", bus.into()));
                a.device(&f);
            }
            "passthrough" => {
                let chr = format!("charsmartcard{i}");
                let Some(c) = chardev(sc, &chr, None) else {
                    continue;
                };
                a.opt("-chardev", c);
                a.device(&[
                    ("driver", "ccid-card-passthru".into()),
                    ("chardev", chr.into()),
                    ("id", id.into()),
                    ("bus", bus.into()),
                ]);
            }
            _ => {}
        }
    }
}

/// TPM emulator front ends (the preview's backend is a null chardev,
/// as libvirt prints it before swtpm runs).
pub fn tpms(a: &mut Args, tpms: &[&Element]) {
    for (i, t) in tpms.iter().enumerate() {
        let backend = t.child("backend").map(|b| attr(b, "type")).unwrap_or("");
        if backend != "emulator" && !backend.is_empty() {
            continue;
        }
        let id = format!("tpm{i}");
        a.opt("-chardev", "null,id=chrtpm");
        a.opt("-tpmdev", format!("emulator,id=tpm-{id},chardev=chrtpm"));
        let driver = match attr(t, "model") {
            "tpm-crb" => "tpm-crb",
            _ => "tpm-tis",
        };
        a.device(&[
            ("driver", driver.into()),
            ("tpmdev", format!("tpm-{id}").into()),
            ("id", id.into()),
        ]);
    }
}

/// IOMMUs (before the PCI controllers).
pub fn iommus(a: &mut Args, iommus: &[&Element], q35: bool) {
    for (i, m) in iommus.iter().enumerate() {
        let id = format!("iommu{i}");
        let d = m.child("driver");
        match attr(m, "model") {
            "intel" => {
                let mut f: Vec<(&str, Value)> =
                    vec![("driver", "intel-iommu".into()), ("id", id.into())];
                if let Some(d) = d {
                    if let Some(v) = d.attr("intremap") {
                        f.push(("intremap", v.into()));
                    }
                    if let Some(v) = d.attr("caching_mode") {
                        f.push(("caching-mode", (v == "on").into()));
                    }
                    if let Some(v) = d.attr("eim") {
                        f.push(("eim", v.into()));
                    }
                    if let Some(v) = d.attr("iotlb") {
                        f.push(("device-iotlb", (v == "on").into()));
                    }
                    if let Some(v) = d.attr("aw_bits").and_then(|v| v.parse::<u64>().ok()) {
                        f.push(("aw-bits", v.into()));
                    }
                }
                a.device(&f);
            }
            "virtio" => a.device(&with(
                vec![("driver", "virtio-iommu".into()), ("id", id.into())],
                pci_fields(m, q35),
            )),
            _ => {}
        }
    }
}

/// The devices libvirt adds after `-sandbox`: panic, shared memory,
/// vsock, crypto.
pub fn late(a: &mut Args, devices: &[&Element], q35: bool) {
    let of = |name: &'static str| devices.iter().copied().filter(move |d| d.name == name);
    for p in of("panic") {
        match attr(p, "model") {
            "" | "isa" => {
                let port = p
                    .child("address")
                    .and_then(|x| x.attr("iobase"))
                    .and_then(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok())
                    .unwrap_or(0x505);
                a.device(&[("driver", "pvpanic".into()), ("ioport", port.into())]);
            }
            "pvpanic" => a.device(&with(
                vec![("driver", "pvpanic-pci".into())],
                pci_fields(p, q35),
            )),
            _ => {}
        }
    }
    for (i, s) in of("shmem").enumerate() {
        let name = attr(s, "name");
        let id = format!("shmem{i}");
        let size_mib: u64 = s
            .child("size")
            .map(|z| {
                let n: u64 = z.text().trim().parse().unwrap_or(4);
                match z.attr("unit").unwrap_or("M") {
                    "G" | "GiB" => n * 1024,
                    "K" | "KiB" => n / 1024,
                    _ => n,
                }
            })
            .unwrap_or(4);
        match s
            .child("model")
            .and_then(|m| m.attr("type"))
            .unwrap_or("ivshmem-plain")
        {
            "ivshmem-plain" => {
                let mem = format!("shmmem-{id}");
                a.opt(
                    "-object",
                    json_object(&[
                        ("qom-type", "memory-backend-file".into()),
                        ("id", mem.clone().into()),
                        ("mem-path", format!("/dev/shm/{name}").into()),
                        ("size", (size_mib * 1024 * 1024).into()),
                        ("share", true.into()),
                    ]),
                );
                a.device(&with(
                    vec![
                        ("driver", "ivshmem-plain".into()),
                        ("id", id.into()),
                        ("memdev", mem.into()),
                    ],
                    pci_fields(s, q35),
                ));
            }
            "ivshmem-doorbell" => {
                let chr = format!("char{id}");
                let mut f: Vec<(&str, Value)> = vec![
                    ("driver", "ivshmem-doorbell".into()),
                    ("id", id.into()),
                    ("chardev", chr.clone().into()),
                ];
                if let Some(msi) = s.child("msi") {
                    if let Some(v) = msi.attr("vectors").and_then(|v| v.parse::<u64>().ok()) {
                        f.push(("vectors", v.into()));
                    }
                    if let Some(v) = msi.attr("ioeventfd") {
                        f.push(("ioeventfd", (v == "on").into()));
                    }
                }
                a.device(&with(f, pci_fields(s, q35)));
                let path = s
                    .child("server")
                    .and_then(|x| x.attr("path"))
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("/var/lib/libvirt/shmem-{name}-sock"));
                a.opt("-chardev", format!("socket,id={chr},path={path}"));
            }
            _ => {}
        }
    }
    for (i, v) in of("vsock").enumerate() {
        let cid: u64 = v
            .child("cid")
            .and_then(|c| c.attr("address"))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        a.device(&with(
            vec![
                ("driver", "vhost-vsock-pci".into()),
                ("id", format!("vsock{i}").into()),
                ("guest-cid", cid.into()),
                // The descriptor of /dev/vhost-vsock (none in a preview).
                ("vhostfd", "-1".into()),
            ],
            pci_fields(v, q35),
        ));
    }
    for (i, p) in of("pstore").enumerate() {
        if attr(p, "backend") != "acpi-erst" {
            continue;
        }
        let mem = format!("mempstore{i}");
        let path = p
            .child_text("path")
            .map(|x| x.trim().to_owned())
            .unwrap_or_default();
        let kib = p
            .child("size")
            .and_then(|z| {
                let v: u64 = z.text().trim().parse().ok()?;
                virtmesh_conf::units::scale_to_kib(v, z.attr("unit")).ok()
            })
            .unwrap_or(0);
        a.opt(
            "-object",
            json_object(&[
                ("qom-type", "memory-backend-file".into()),
                ("id", mem.clone().into()),
                ("mem-path", path.into()),
                ("size", (kib * 1024).into()),
                ("share", true.into()),
            ]),
        );
        a.device(&with(
            vec![
                ("driver", "acpi-erst".into()),
                ("id", format!("pstore{i}").into()),
                ("memdev", mem.into()),
            ],
            pci_fields(p, q35),
        ));
    }
    for (i, c) in of("crypto").enumerate() {
        let obj = format!("objcrypto{i}");
        let queues: u64 = c
            .child("backend")
            .and_then(|b| b.attr("queues"))
            .and_then(|q| q.parse().ok())
            .unwrap_or(1);
        a.opt(
            "-object",
            json_object(&[
                ("qom-type", "cryptodev-backend-builtin".into()),
                ("id", obj.clone().into()),
                ("queues", queues.into()),
            ]),
        );
        a.device(&with(
            vec![
                ("driver", "virtio-crypto-pci".into()),
                ("cryptodev", obj.into()),
                ("id", format!("crypto{i}").into()),
            ],
            pci_fields(c, q35),
        ));
    }
}

/// Mediated devices (vfio-pci on an mdev's sysfs node).
pub fn hostdevs(a: &mut Args, hostdevs: &[&Element], q35: bool) {
    for (i, h) in hostdevs.iter().enumerate() {
        if attr(h, "type") != "mdev" || attr(h, "model") != "vfio-pci" {
            continue;
        }
        let Some(uuid) = h
            .child("source")
            .and_then(|s| s.child("address"))
            .and_then(|x| x.attr("uuid"))
        else {
            continue;
        };
        let mut f: Vec<(&str, Value)> = vec![
            ("driver", "vfio-pci".into()),
            ("id", format!("hostdev{i}").into()),
            ("sysfsdev", format!("/sys/bus/mdev/devices/{uuid}").into()),
        ];
        if let Some(d) = h.attr("display") {
            f.push(("display", d.into()));
        }
        a.device(&with(f, pci_fields(h, q35)));
    }
}
