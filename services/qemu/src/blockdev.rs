//! Disks and NICs on QEMU's command line, as libvirt 11.3 emits them:
//! `-blockdev` storage (and, for qcow2, a format) node plus `-device`;
//! `-netdev` plus the NIC `-device`. The same JSON serves hot-plug
//! (`blockdev-add`, `device_add`, `netdev_add`).

use crate::argv::json_object;
use serde_json::Value;
use virtmesh_conf::Element;

/// The disk's source path (`file` or `dev`).
pub fn disk_source(disk: &Element) -> Option<String> {
    let s = disk.child("source")?;
    s.attr("file").or_else(|| s.attr("dev")).map(str::to_owned)
}

fn disk_format(disk: &Element) -> String {
    disk.child("driver")
        .and_then(|d| d.attr("type"))
        .unwrap_or("raw")
        .to_owned()
}

fn readonly(disk: &Element) -> bool {
    disk.child("readonly").is_some() || disk.attr("device") == Some("cdrom")
}

/// Node names of disk `n` (libvirt numbers them from the last disk up).
pub fn node_names(n: usize, disk: &Element) -> (String, Option<String>) {
    let storage = format!("libvirt-{n}-storage");
    let format = (disk_format(disk) != "raw").then(|| format!("libvirt-{n}-format"));
    (storage, format)
}

/// The `-blockdev` objects of one disk (storage, then format if any).
pub fn blockdev_objects(n: usize, disk: &Element) -> Vec<String> {
    objects(n, disk, None)
}

/// The file-backed `<backingStore>` chain of a disk, top down:
/// (path, format, whether the level below is explicitly empty).
fn backing_chain(disk: &Element) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let mut cur = disk.child("backingStore");
    while let Some(b) = cur {
        let Some(path) = b.child("source").and_then(|s| s.attr("file")) else {
            break;
        };
        let fmt = b
            .child("format")
            .and_then(|f| f.attr("type"))
            .unwrap_or("raw");
        v.push((path.to_owned(), fmt.to_owned()));
        cur = b.child("backingStore");
    }
    v
}

/// How many node indices a disk uses (itself, its backing chain, its
/// throttle filters).
pub fn chain_len(disk: &Element) -> usize {
    if is_empty(disk) {
        return 0;
    }
    1 + backing_chain(disk).len() + throttle_groups(disk).len()
}

/// A drive without a medium (a CD-ROM or floppy with no `<source>`):
/// no block nodes, a device without `drive`, filled later by a media
/// change.
pub fn is_empty(disk: &Element) -> bool {
    disk.attr("type") != Some("network") && disk_source(disk).is_none()
}

/// The throttle groups a disk's `<throttlefilters>` name, in order.
fn throttle_groups(disk: &Element) -> Vec<String> {
    disk.child("throttlefilters")
        .map(|t| {
            t.children_named("throttlefilter")
                .filter_map(|f| f.attr("group").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The node the guest device reads: the last throttle filter, else the
/// format node, else the storage node.
fn top_node(n: usize, disk: &Element) -> String {
    let filters = throttle_groups(disk).len();
    if filters > 0 {
        return format!("libvirt-{}-filter", n + backing_chain(disk).len() + filters);
    }
    let (storage, format) = node_names(n, disk);
    format.unwrap_or(storage)
}

/// `-blockdev` throttle filters stacked on a disk's top node.
fn filter_objects(n: usize, disk: &Element) -> Vec<String> {
    let (storage, format) = node_names(n, disk);
    let mut below = format.unwrap_or(storage);
    let base = n + backing_chain(disk).len();
    throttle_groups(disk)
        .iter()
        .enumerate()
        .map(|(k, g)| {
            let node = format!("libvirt-{}-filter", base + k + 1);
            let obj = json_object(&[
                ("driver", "throttle".into()),
                ("node-name", node.clone().into()),
                ("throttle-group", format!("throttle-{g}").into()),
                ("file", below.clone().into()),
            ]);
            below = node;
            obj
        })
        .collect()
}

/// The `-blockdev` objects of a disk with its backing chain, deepest
/// first, as libvirt orders them: the top is `libvirt-N`, the levels
/// below `N+1`, `N+2`, ...; each format node names the one below
/// (`"backing"`), the last one `null`.
pub fn chain_objects(n: usize, disk: &Element) -> Vec<String> {
    if is_empty(disk) {
        return Vec::new();
    }
    let chain = backing_chain(disk);
    if chain.is_empty() {
        let mut out = objects(n, disk, None);
        out.extend(filter_objects(n, disk));
        return out;
    }
    let mut out = Vec::new();
    for (level, (path, fmt)) in chain.iter().enumerate().rev() {
        let idx = n + level + 1;
        let below = (level + 1 < chain.len()).then(|| format!("libvirt-{}-format", idx + 1));
        let el = Element::new("disk")
            .with_attr("type", "file")
            .with_child(
                Element::new("driver")
                    .with_attr("name", "qemu")
                    .with_attr("type", fmt.as_str()),
            )
            .with_child(Element::new("source").with_attr("file", path.as_str()))
            .with_child(Element::new("readonly"));
        out.extend(objects(idx, &el, Some(below)));
    }
    out.extend(objects(
        n,
        disk,
        Some(Some(format!("libvirt-{}-format", n + 1))),
    ));
    out.extend(filter_objects(n, disk));
    out
}

/// `backing`: `None` leaves the key out, `Some(None)` is `null`.
fn objects(n: usize, disk: &Element, backing: Option<Option<String>>) -> Vec<String> {
    let (storage, format) = node_names(n, disk);
    let path = disk_source(disk).unwrap_or_default();
    let driver = if disk.attr("type") == Some("block") {
        "host_device"
    } else {
        "file"
    };
    let drv = disk.child("driver");
    let cache_none = drv.and_then(|d| d.attr("cache")) == Some("none");
    let mut f: Vec<(&str, Value)> = match network_source(disk) {
        Some(fields) => fields,
        None => vec![("driver", driver.into()), ("filename", path.into())],
    };
    if let Some(io) = drv.and_then(|d| d.attr("io")) {
        f.push(("aio", io.into()));
    }
    f.push(("node-name", storage.clone().into()));
    let cache = || serde_json::json!({"direct": true, "no-flush": false});
    let mut out = Vec::new();
    match &format {
        None => {
            f.push(("read-only", readonly(disk).into()));
            if cache_none {
                f.push(("cache", cache()));
            }
            out.push(json_object(&f));
        }
        Some(fmt) => {
            f.push(("auto-read-only", true.into()));
            f.push(("discard", "unmap".into()));
            if cache_none {
                f.push(("cache", cache()));
            }
            out.push(json_object(&f));
            let mut g: Vec<(&str, Value)> = vec![
                ("node-name", fmt.clone().into()),
                ("read-only", readonly(disk).into()),
            ];
            if let Some(d) = drv.and_then(|d| d.attr("discard")) {
                g.push(("discard", d.into()));
            }
            if cache_none {
                g.push(("cache", cache()));
            }
            g.push(("driver", disk_format(disk).into()));
            g.push(("file", storage.into()));
            if let Some(b) = backing {
                g.push(("backing", b.map_or(Value::Null, Value::from)));
            }
            out.push(json_object(&g));
        }
    }
    out
}

/// The storage node fields of a `<disk type='network'>` (NBD, Gluster,
/// iSCSI, HTTP(S)/FTP(S)), as libvirt's blockdev JSON has them.
fn network_source(disk: &Element) -> Option<Vec<(&'static str, Value)>> {
    if disk.attr("type") != Some("network") {
        return None;
    }
    let src = disk.child("source")?;
    let proto = src.attr("protocol")?;
    let name = src.attr("name").unwrap_or_default();
    let host = src.child("host");
    let h = |k: &str| host.and_then(|h| h.attr(k)).unwrap_or_default().to_owned();
    let inet = |default_port: &str| {
        let port = host
            .and_then(|x| x.attr("port"))
            .unwrap_or(default_port)
            .to_owned();
        serde_json::json!({"type": "inet", "host": h("name"), "port": port})
    };
    let mut f: Vec<(&'static str, Value)> = vec![("driver", proto.into())];
    match proto {
        "nbd" => {
            let server = if host.and_then(|x| x.attr("transport")) == Some("unix") {
                serde_json::json!({"type": "unix", "path": h("socket")})
            } else {
                inet("10809")
            };
            f.push(("server", server));
            if !name.is_empty() {
                f.push(("export", name.into()));
            }
        }
        "gluster" => {
            let (volume, path) = name.split_once('/').unwrap_or((name, ""));
            f.push(("volume", volume.into()));
            f.push(("path", path.into()));
            f.push(("server", Value::Array(vec![inet("24007")])));
            f.push(("debug", 4.into()));
        }
        "iscsi" => {
            let (target, lun) = name.rsplit_once('/').unwrap_or((name, "0"));
            let port = host.and_then(|x| x.attr("port")).unwrap_or("3260");
            f.push(("portal", format!("{}:{port}", h("name")).into()));
            f.push(("target", target.into()));
            f.push(("lun", lun.parse::<u64>().unwrap_or(0).into()));
            f.push(("transport", "tcp".into()));
            if let Some(iqn) = src
                .child("initiator")
                .and_then(|i| i.child("iqn"))
                .and_then(|i| i.attr("name"))
            {
                f.push(("initiator-name", iqn.into()));
            }
        }
        "http" | "https" | "ftp" | "ftps" => {
            let port = host
                .and_then(|x| x.attr("port"))
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            let sep = if name.starts_with('/') { "" } else { "/" };
            f.push((
                "url",
                format!("{proto}://{}{port}{sep}{name}", h("name")).into(),
            ));
            if let Some(v) = src.child("ssl").and_then(|x| x.attr("verify")) {
                f.push(("sslverify", (v == "yes").into()));
            }
            if let Some(t) = src
                .child("timeout")
                .and_then(|x| x.attr("seconds"))
                .and_then(|t| t.parse::<u64>().ok())
            {
                f.push(("timeout", t.into()));
            }
            if let Some(r) = src
                .child("readahead")
                .and_then(|x| x.attr("size"))
                .and_then(|t| t.parse::<u64>().ok())
            {
                f.push(("readahead", r.into()));
            }
        }
        _ => return None,
    }
    Some(f)
}

/// The id QEMU knows a disk of a live definition by: its alias (set at
/// start), else the one [`disk_id`] derives.
pub fn live_disk_id(disk: &Element) -> Option<String> {
    disk.child("alias")
        .and_then(|a| a.attr("name"))
        .map(str::to_owned)
        .or_else(|| disk_id(disk))
}

/// The QEMU id of a disk, from its target and bus (`virtio-disk1`,
/// `sata0-0-2`).
pub fn disk_id(disk: &Element) -> Option<String> {
    let target = disk.child("target")?;
    let idx = virtmesh_conf::devices::disk_index(target.attr("dev")?)?;
    match target.attr("bus")? {
        "virtio" => Some(format!("virtio-disk{idx}")),
        "sata" => {
            let unit = disk
                .child("address")
                .and_then(|a| a.attr("unit"))
                .and_then(|b| b.parse::<u64>().ok())
                .unwrap_or(idx);
            Some(format!("sata0-0-{unit}"))
        }
        _ => None,
    }
}

/// The `-device` of one disk; `bus_addr` is its PCI location for virtio.
pub fn disk_device(
    n: usize,
    disk: &Element,
    bus_addr: Option<(String, String)>,
    bootindex: Option<u32>,
) -> Option<String> {
    disk_device_in(n, disk, bus_addr, bootindex, &[])
}

fn drive_addr(disk: &Element, k: &str) -> Option<u64> {
    disk.child("address")
        .filter(|a| a.attr("type") == Some("drive"))
        .and_then(|a| a.attr(k))
        .and_then(|v| v.parse().ok())
}

/// [`disk_device`] with the definition's devices at hand (a SCSI disk's
/// syntax depends on its controller's model).
pub fn disk_device_in(
    n: usize,
    disk: &Element,
    bus_addr: Option<(String, String)>,
    bootindex: Option<u32>,
    devices: &[&Element],
) -> Option<String> {
    let drive = top_node(n, disk);
    let target = disk.child("target")?;
    let dev = target.attr("dev")?;
    let idx = virtmesh_conf::devices::disk_index(dev)?;
    let cache_none = disk.child("driver").and_then(|d| d.attr("cache")) == Some("none");
    let cdrom = disk.attr("device") == Some("cdrom");
    let ctl = drive_addr(disk, "controller").unwrap_or(0);
    let bus = drive_addr(disk, "bus").unwrap_or(0);
    let unit = drive_addr(disk, "unit").unwrap_or(idx);
    let mut f: Vec<(&str, Value)> = Vec::new();
    let drv = disk.child("driver");
    let shareable = disk.child("shareable").is_some();
    // A user alias (`ua-*`) names the device.
    let alias = disk
        .child("alias")
        .and_then(|a| a.attr("name"))
        .filter(|a| a.starts_with("ua-"))
        .map(str::to_owned);
    let id_or = |d: String| alias.clone().unwrap_or(d);
    match target.attr("bus")? {
        "virtio" => {
            f.push(("driver", "virtio-blk-pci".into()));
            if let Some(io) = drv.and_then(|d| d.attr("iothread")) {
                f.push(("iothread", format!("iothread{io}").into()));
            }
            if let Some(q) = drv
                .and_then(|d| d.attr("queues"))
                .and_then(|q| q.parse::<u64>().ok())
            {
                f.push(("num-queues", q.into()));
            }
            for (k, prop) in [
                ("iommu", "iommu_platform"),
                ("ats", "ats"),
                ("packed", "packed"),
            ] {
                if let Some(v) = drv.and_then(|d| d.attr(k)) {
                    f.push((prop, (v == "on").into()));
                }
            }
            if let Some((bus, addr)) = bus_addr {
                f.push(("bus", bus.into()));
                if disk
                    .child("address")
                    .is_some_and(|a| a.attr("multifunction") == Some("on"))
                {
                    f.push(("multifunction", true.into()));
                }
                f.push(("addr", addr.into()));
            }
            if shareable {
                f.push(("share-rw", true.into()));
            }
            f.push(("drive", drive.into()));
            f.push(("id", id_or(format!("virtio-disk{idx}")).into()));
        }
        "sata" => {
            f.push(("driver", if cdrom { "ide-cd" } else { "ide-hd" }.into()));
            // q35's built-in AHCI is `ide`; added ones are `sataN`.
            let builtin = ctl == 0
                && !devices.iter().any(|c| {
                    c.name == "controller"
                        && c.attr("type") == Some("sata")
                        && c.attr("index") == Some("0")
                        && c.child("address")
                            .and_then(|a| a.attr("slot"))
                            .is_some_and(|s| s != "0x1f")
                });
            let b = if builtin {
                format!("ide.{unit}")
            } else {
                format!("sata{ctl}.{unit}")
            };
            f.push(("bus", b.into()));
            f.push(("drive", drive.into()));
            f.push(("id", format!("sata{ctl}-0-{unit}").into()));
        }
        "ide" => {
            f.push(("driver", if cdrom { "ide-cd" } else { "ide-hd" }.into()));
            f.push(("bus", format!("ide.{bus}").into()));
            f.push(("unit", unit.into()));
            f.push(("drive", drive.into()));
            f.push(("id", format!("ide{ctl}-{bus}-{unit}").into()));
        }
        "fdc" => {
            f.push(("driver", "floppy".into()));
            f.push(("unit", unit.into()));
            f.push(("drive", drive.into()));
            f.push(("id", format!("fdc0-0-{unit}").into()));
        }
        "scsi" => {
            let model = devices
                .iter()
                .find(|c| {
                    c.name == "controller"
                        && c.attr("type") == Some("scsi")
                        && c.attr("index").and_then(|i| i.parse::<u64>().ok()) == Some(ctl)
                })
                .and_then(|c| c.attr("model"))
                .unwrap_or("lsilogic");
            let target_no = drive_addr(disk, "target").unwrap_or(0);
            let lun = disk.attr("device") == Some("lun");
            let driver = if lun {
                "scsi-block"
            } else if cdrom {
                "scsi-cd"
            } else {
                "scsi-hd"
            };
            f.push(("driver", driver.into()));
            f.push(("bus", format!("scsi{ctl}.0").into()));
            let serial = disk.child_text("serial").map(|s| s.trim().to_owned());
            if model.starts_with("virtio") {
                f.push(("channel", bus.into()));
                f.push(("scsi-id", target_no.into()));
                f.push(("lun", unit.into()));
                let id = format!("drive-scsi{ctl}-{bus}-{target_no}-{unit}");
                if !lun {
                    f.push(("device_id", serial.clone().unwrap_or(id).into()));
                }
                f.push(("drive", drive.into()));
                f.push(("id", format!("scsi{ctl}-{bus}-{target_no}-{unit}").into()));
            } else {
                f.push(("scsi-id", unit.into()));
                let id = format!("drive-scsi{ctl}-{bus}-{unit}");
                f.push(("device_id", serial.clone().unwrap_or(id).into()));
                f.push(("drive", drive.into()));
                f.push(("id", format!("scsi{ctl}-{bus}-{unit}").into()));
            }
        }
        "usb" => {
            f.push(("driver", "usb-storage".into()));
            if let Some(a) = disk
                .child("address")
                .filter(|a| a.attr("type") == Some("usb"))
            {
                f.push((
                    "bus",
                    format!("usb.{}", a.attr("bus").unwrap_or("0")).into(),
                ));
                f.push(("port", a.attr("port").unwrap_or("1").into()));
            }
            f.push(("drive", drive.into()));
            f.push(("id", format!("usb-disk{idx}").into()));
        }
        _ => return None,
    }
    if let Some(b) = bootindex {
        f.push(("bootindex", b.into()));
    }
    if let Some(bio) = disk.child("blockio") {
        for k in ["logical_block_size", "physical_block_size"] {
            if let Some(v) = bio.attr(k).and_then(|v| v.parse::<u64>().ok()) {
                f.push((k, v.into()));
            }
        }
    }
    if let Some(g) = disk.child("geometry") {
        for k in ["cyls", "heads", "secs"] {
            if let Some(v) = g.attr(k).and_then(|v| v.parse::<u64>().ok()) {
                f.push((k, v.into()));
            }
        }
        if let Some(t) = g.attr("trans") {
            f.push(("bios-chs-trans", t.into()));
        }
    }
    if let Some(w) = disk
        .child_text("wwn")
        .and_then(|w| u64::from_str_radix(w.trim(), 16).ok())
    {
        f.push(("wwn", w.into()));
    }
    for k in ["vendor", "product"] {
        if let Some(v) = disk.child_text(k) {
            f.push((k, v.trim().to_owned().into()));
        }
    }
    if target.attr("bus") == Some("usb") && target.attr("removable") == Some("on") {
        f.push(("removable", true.into()));
    }
    if cache_none {
        f.push(("write-cache", "on".into()));
    }
    if let Some(serial) = disk.child_text("serial") {
        f.push(("serial", serial.trim().to_owned().into()));
    }
    if is_empty(disk) {
        f.retain(|(k, _)| *k != "drive");
    }
    Some(json_object(&f))
}

/// QEMU's driver for a NIC model.
pub fn nic_driver(model: &str) -> Option<&'static str> {
    Some(match model {
        "virtio" => "virtio-net-pci",
        "e1000e" => "e1000e",
        "e1000" => "e1000",
        "rtl8139" => "rtl8139",
        "virtio-transitional" => "virtio-net-pci-transitional",
        _ => return None,
    })
}

pub fn nic_model(iface: &Element) -> &str {
    iface
        .child("model")
        .and_then(|m| m.attr("type"))
        .unwrap_or("virtio")
}

/// The NIC `-device` for interface `i`.
pub fn nic_device(
    i: usize,
    iface: &Element,
    bus_addr: Option<(String, String)>,
    bootindex: Option<u32>,
) -> String {
    // A model libvirt does not know is passed to QEMU as is.
    let model = nic_model(iface);
    let driver = nic_driver(model).unwrap_or(model);
    let mut f: Vec<(&str, Value)> = vec![
        ("driver", driver.into()),
        ("netdev", format!("hostnet{i}").into()),
        ("id", format!("net{i}").into()),
        ("mac", crate::hostnet::mac_of(iface).into()),
    ];
    if let Some((bus, addr)) = bus_addr {
        f.push(("bus", bus.into()));
        f.push(("addr", addr.into()));
    }
    // libvirt gives no boot index to a NIC whose option ROM is off.
    let rom_off = iface.child("rom").and_then(|r| r.attr("enabled")) == Some("no");
    if let Some(b) = bootindex.filter(|_| !rom_off) {
        f.push(("bootindex", b.into()));
    }
    json_object(&f)
}

/// The `-netdev` of a prepared backend; `fd` is the number QEMU sees.
pub fn netdev_json(i: usize, backend: &crate::hostnet::Backend, fd: Option<i32>) -> String {
    use crate::hostnet::Backend;
    let id = format!("hostnet{i}");
    match (backend, fd) {
        (Backend::User, _) => json_object(&[("type", "user".into()), ("id", id.into())]),
        (Backend::Tap(name), _) => json_object(&[
            ("type", "tap".into()),
            ("ifname", name.clone().into()),
            ("script", "no".into()),
            ("downscript", "no".into()),
            // No /dev/vhost-net on the hosts we run on (HOST.md).
            ("vhost", false.into()),
            ("id", id.into()),
        ]),
        (Backend::Fd(_), n) => json_object(&[
            ("type", "tap".into()),
            ("fd", n.unwrap_or(-1).to_string().into()),
            ("vhost", false.into()),
            ("id", id.into()),
        ]),
    }
}

/// What `DomainXMLToNative` prints for interface `i`: libvirt shows every
/// host-backed NIC as a tap descriptor it would have opened.
pub fn netdev_preview(i: usize) -> String {
    json_object(&[
        ("type", "tap".into()),
        // libvirt's preview numbers two descriptors per NIC.
        ("fd", (27 + 2 * i).to_string().into()),
        ("id", format!("hostnet{i}").into()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        virtmesh_conf::Element::parse(xml).expect("valid")
    }

    #[test]
    fn qcow2_has_a_format_node() {
        let d = el(
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/x.qcow2'/><target dev='vda' bus='virtio'/></disk>",
        );
        let b = blockdev_objects(1, &d);
        assert_eq!(
            b[0],
            r#"{"driver":"file","filename":"/x.qcow2","node-name":"libvirt-1-storage","auto-read-only":true,"discard":"unmap"}"#
        );
        assert_eq!(
            b[1],
            r#"{"node-name":"libvirt-1-format","read-only":false,"driver":"qcow2","file":"libvirt-1-storage"}"#
        );
        assert_eq!(
            disk_device(1, &d, Some(("pci.0".into(), "0x2".into())), Some(1)).as_deref(),
            Some(
                r#"{"driver":"virtio-blk-pci","bus":"pci.0","addr":"0x2","drive":"libvirt-1-format","id":"virtio-disk0","bootindex":1}"#
            )
        );
    }
}
