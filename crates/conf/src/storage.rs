//! Storage pool and volume XML (libvirt's conf/storage_conf.c): typed
//! models parsed with libvirt's rules and messages, formatted in its
//! canonical order.  Live values (pool sizes, a volume's capacity,
//! allocation, permissions and timestamps as found on disk) are passed in
//! by the driver at format time.

use crate::ConfError;
use crate::error::{parse_root, parse_uuid};
use crate::units::scale_to_bytes;
use crate::xml::{Element, escape};

/// virStoragePoolType, in libvirt's enum order (the number is in some of
/// its messages: "missing backend for pool type 11 (gluster)").
pub const POOL_TYPES: &[&str] = &[
    "dir",
    "fs",
    "netfs",
    "logical",
    "disk",
    "iscsi",
    "iscsi-direct",
    "scsi",
    "mpath",
    "rbd",
    "sheepdog",
    "gluster",
    "zfs",
    "vstorage",
];

/// virStorageFileFormat (index 0, "none", is not accepted from XML).
pub const FILE_FORMATS: &[&str] = &[
    "none", "raw", "dir", "bochs", "cloop", "dmg", "iso", "vpc", "vdi", "fat", "vhd", "ploop",
    "cow", "qcow", "qcow2", "qed", "vmdk",
];

/// virStorageFileFeature, in libvirt's order (the format order).
pub const FILE_FEATURES: &[&str] = &["lazy_refcounts", "extended_l2"];

/// virStorageVolFormatDisk: volume formats of disk pools.
const DISK_VOL_FORMATS: &[&str] = &[
    "none",
    "linux",
    "fat16",
    "fat32",
    "linux-swap",
    "linux-lvm",
    "linux-raid",
    "extended",
];

// What a pool type's <source> carries (virStoragePoolOptions.flags).
const SRC_HOST: u8 = 1 << 0;
const SRC_DEVICE: u8 = 1 << 1;
const SRC_DIR: u8 = 1 << 2;
const SRC_ADAPTER: u8 = 1 << 3;
const SRC_NAME: u8 = 1 << 4;
const SRC_INITIATOR: u8 = 1 << 5;
const SRC_NETWORK: u8 = 1 << 6;

/// Per pool type: source flags, source formats (default first) and volume
/// formats (None: the pool's volumes have no format element).
struct PoolTypeInfo {
    flags: u8,
    /// (default, all values in enum order)
    formats: Option<(&'static str, &'static [&'static str])>,
    vol_formats: Option<(&'static str, &'static [&'static str])>,
}

const FS_FORMATS: &[&str] = &[
    "auto", "ext2", "ext3", "ext4", "ufs", "iso9660", "udf", "gfs", "gfs2", "vfat", "hfs+", "xfs",
    "ocfs2", "vmfs",
];
const NETFS_FORMATS: &[&str] = &["auto", "nfs", "glusterfs", "cifs"];
const DISK_FORMATS: &[&str] = &[
    "unknown", "dos", "dvh", "gpt", "mac", "bsd", "pc98", "sun", "lvm2",
];
const LOGICAL_FORMATS: &[&str] = &["unknown", "lvm2"];
const FILE_VOLS: Option<(&str, &[&str])> = Some(("raw", FILE_FORMATS));

fn type_info(pool_type: &str) -> PoolTypeInfo {
    let (flags, formats, vol_formats) = match pool_type {
        "logical" => (SRC_NAME | SRC_DEVICE, Some(("lvm2", LOGICAL_FORMATS)), None),
        "dir" => (0, None, FILE_VOLS),
        "fs" => (SRC_DEVICE, Some(("auto", FS_FORMATS)), FILE_VOLS),
        "netfs" => (SRC_HOST | SRC_DIR, Some(("auto", NETFS_FORMATS)), FILE_VOLS),
        "iscsi" => (SRC_HOST | SRC_DEVICE | SRC_INITIATOR, None, None),
        "iscsi-direct" => (
            SRC_HOST | SRC_DEVICE | SRC_NETWORK | SRC_INITIATOR,
            None,
            None,
        ),
        "scsi" => (SRC_ADAPTER, None, None),
        "rbd" => (SRC_HOST | SRC_NETWORK | SRC_NAME, None, FILE_VOLS),
        "sheepdog" => (SRC_HOST | SRC_NETWORK | SRC_NAME, None, None),
        "gluster" => (SRC_HOST | SRC_NETWORK | SRC_NAME | SRC_DIR, None, FILE_VOLS),
        "disk" => (
            SRC_DEVICE,
            Some(("unknown", DISK_FORMATS)),
            Some(("none", DISK_VOL_FORMATS)),
        ),
        "zfs" => (SRC_NAME | SRC_DEVICE, None, None),
        "vstorage" => (SRC_NAME, None, FILE_VOLS),
        // mpath and anything else: nothing.
        _ => (0, None, None),
    };
    PoolTypeInfo {
        flags,
        formats,
        vol_formats,
    }
}

/// virXPathString: an element's text, `None` when absent or empty.
fn xpath_string(el: &Element, name: &str) -> Option<String> {
    el.child_text(name).filter(|t| !t.is_empty())
}

fn nonempty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// libvirt's number for a pool type (its enum index).
pub fn pool_type_number(pool_type: &str) -> Option<usize> {
    POOL_TYPES.iter().position(|t| *t == pool_type)
}

/// virStoragePerms: every field optional (-1 in libvirt).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Perms {
    pub mode: Option<u32>,
    pub owner: Option<i64>,
    pub group: Option<i64>,
    pub label: Option<String>,
}

impl Perms {
    fn is_empty(&self) -> bool {
        self.mode.is_none() && self.owner.is_none() && self.group.is_none() && self.label.is_none()
    }

    /// virStorageDefParsePerms on `<permissions>` (absent: all unset).
    pub fn parse(el: Option<&Element>) -> Result<Perms, ConfError> {
        let Some(el) = el else {
            return Ok(Perms::default());
        };
        let mut p = Perms::default();
        if let Some(mode) = xpath_string(el, "mode") {
            match parse_c_long(&mode, 8) {
                Some(m) if (0..=0o777).contains(&m) => p.mode = Some(m as u32),
                _ => return Err(ConfError::xml("malformed octal mode")),
            }
        }
        let id = |name: &str, what: &str| -> Result<Option<i64>, ConfError> {
            match el.child_text(name) {
                None => Ok(None),
                Some(t) => match t.trim().parse::<f64>() {
                    // XPath number(): whole numbers in uid_t range, or -1.
                    Ok(v)
                        if v.fract() == 0.0
                            && (v == -1.0 || (0.0..=u32::MAX as f64).contains(&v)) =>
                    {
                        Ok(Some(v as i64))
                    }
                    _ => Err(ConfError::xml(format!("malformed {what} element"))),
                },
            }
        };
        p.owner = id("owner", "owner")?.filter(|v| *v != -1);
        p.group = id("group", "group")?.filter(|v| *v != -1);
        p.label = xpath_string(el, "label");
        Ok(p)
    }

    fn element(&self) -> Option<Element> {
        if self.is_empty() {
            return None;
        }
        let mut el = Element::new("permissions");
        if let Some(m) = self.mode {
            el = el.with_child(Element::new("mode").with_text(format!("0{m:o}")));
        }
        if let Some(o) = self.owner {
            el = el.with_child(Element::new("owner").with_text(o.to_string()));
        }
        if let Some(g) = self.group {
            el = el.with_child(Element::new("group").with_text(g.to_string()));
        }
        if let Some(l) = &self.label {
            el = el.with_child(Element::new("label").with_text(l.clone()));
        }
        Some(el)
    }
}

/// strtol with a base, the whole (trimmed-at-end-never) string consumed:
/// libvirt's virStrToLong_i.
fn parse_c_long(s: &str, base: u32) -> Option<i64> {
    let s = s.trim_start();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() {
        return None;
    }
    let v = i64::from_str_radix(digits, base).ok()?;
    Some(if neg { -v } else { v })
}

/// virFileSanitizePath: `//` → `/`, `/./` → `/`, no trailing `/`; `..` is
/// kept (libvirt does not resolve it).  A leading `//` (not `///`) is kept.
pub fn sanitize_path(path: &str) -> String {
    let (prefix, rest) = if path.starts_with("//") && !path.starts_with("///") {
        ("/", &path[1..])
    } else {
        ("", path)
    };
    let mut out = String::with_capacity(path.len());
    let bytes: Vec<char> = rest.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == '/' && bytes.get(i + 1) == Some(&'/') {
            i += 1;
            continue;
        }
        if c == '/'
            && bytes.get(i + 1) == Some(&'.')
            && (bytes.get(i + 2) == Some(&'/') || i + 2 == bytes.len())
        {
            i += 2;
            continue;
        }
        out.push(c);
        i += 1;
    }
    if out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    if out.is_empty() && !path.is_empty() {
        out.push('/');
    }
    format!("{prefix}{out}")
}

/// `<source>` of a pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolSource {
    /// (name, port; 0 = none)
    pub hosts: Vec<(String, i32)>,
    /// (path, part_separator)
    pub devices: Vec<(String, Option<String>)>,
    pub dir: Option<String>,
    /// `<adapter>` in libvirt's canonical form.
    pub adapter: Option<Element>,
    pub name: Option<String>,
    pub initiator_iqn: Option<String>,
    pub format: Option<String>,
    /// `<auth>` in libvirt's canonical form.
    pub auth: Option<Element>,
    pub protocol_ver: Option<u32>,
    pub vendor: Option<String>,
    pub product: Option<String>,
}

/// A storage pool definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDef {
    pub pool_type: String,
    pub name: String,
    pub uuid: String,
    pub source: PoolSource,
    /// Sanitised target path (None for network pools: rbd, gluster, ...).
    pub target_path: Option<String>,
    pub target_perms: Perms,
    /// `<features><cow state=.../>`.
    pub cow: Option<String>,
    /// `<refresh><volume allocation=.../>`.
    pub refresh_allocation: Option<String>,
    /// Namespace declarations on the root (`xmlns:fs=...`), kept with the
    /// namespaced elements that use them.
    pub ns_attrs: Vec<(String, String)>,
    /// Namespaced option elements (`<fs:mount_opts>`, `<rbd:config_opts>`).
    pub ns_elements: Vec<Element>,
}

/// Live sizes of a pool, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolSizes {
    pub capacity: u64,
    pub allocation: u64,
    pub available: u64,
}

fn parse_source(el: &Element, pool_type: &str) -> Result<PoolSource, ConfError> {
    let info = type_info(pool_type);
    let mut src = PoolSource {
        name: xpath_string(el, "name"),
        ..Default::default()
    };
    if pool_type == "rbd" && src.name.is_none() {
        return Err(ConfError::xml("element 'name' is mandatory for RBD pool"));
    }
    if let Some((default, all)) = info.formats {
        let given = el.child("format").and_then(|f| f.attr("type"));
        match given {
            None => src.format = Some(default.to_owned()),
            Some(f) if all.contains(&f) => src.format = Some(f.to_owned()),
            Some(f) => {
                return Err(ConfError::unsupported(format!(
                    "unknown pool format type {f}"
                )));
            }
        }
    }
    for h in el.children_named("host") {
        let name = h
            .attr("name")
            .ok_or_else(|| ConfError::xml("missing storage pool host name"))?;
        let port = match h.attr("port") {
            None => 0,
            Some(p) => p.trim().parse::<i32>().map_err(|_| {
                ConfError::xml(format!(
                    "Invalid value for attribute 'port' in element 'host': '{p}'. Expected integer value"
                ))
            })?,
        };
        src.hosts.push((name.to_owned(), port));
    }
    src.initiator_iqn = el
        .child("initiator")
        .and_then(|i| i.child("iqn"))
        .and_then(|i| i.attr("name"))
        .map(str::to_owned);
    for d in el.children_named("device") {
        let path = d
            .attr("path")
            .ok_or_else(|| ConfError::xml("missing storage pool source device path"))?;
        let sep = match d.attr("part_separator") {
            None => None,
            Some(v @ ("yes" | "no")) => Some(v.to_owned()),
            Some(v) => {
                return Err(ConfError::xml(format!(
                    "Invalid value for attribute 'part_separator' in element 'device': '{v}'. Expected one of 'yes', 'no'"
                )));
            }
        };
        src.devices.push((path.to_owned(), sep));
    }
    src.dir = el
        .child("dir")
        .and_then(|d| d.attr("path"))
        .map(sanitize_path);
    if src.dir.is_none() && pool_type == "gluster" {
        src.dir = Some("/".into());
    }
    src.adapter = el.child("adapter").map(parse_adapter).transpose()?;
    if let Some(auth) = el.child("auth") {
        let (ty, canonical) = parse_auth(auth)?;
        if ty == "none" {
            return Err(ConfError::unsupported("storage pool missing auth type"));
        }
        src.auth = Some(canonical);
    }
    if let Some(ver) = el.child("protocol").and_then(|p| p.attr("ver")) {
        let fmt = src.format.as_deref().unwrap_or("auto");
        if pool_type != "netfs" || (fmt != "nfs" && fmt != "auto") {
            return Err(ConfError::unsupported(format!(
                "storage pool protocol ver unsupported for pool type '{fmt}'"
            )));
        }
        // virStrToLong_uip, base 0; a version 0 is not formatted.
        let v = parse_uint0(ver).ok_or_else(|| {
            ConfError::xml(format!("storage pool protocol ver '{ver}' is malformed"))
        })?;
        src.protocol_ver = (v > 0).then_some(v);
    }
    src.vendor = el
        .child("vendor")
        .and_then(|v| v.attr("name"))
        .map(str::to_owned);
    src.product = el
        .child("product")
        .and_then(|v| v.attr("name"))
        .map(str::to_owned);
    Ok(src)
}

/// A number as libvirt's virXMLPropUInt with base 0 reads it (`0x1f`,
/// `017`, `31`).
fn parse_uint0(s: &str) -> Option<u32> {
    let t = s.trim();
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else if t.len() > 1 && t.starts_with('0') {
        u32::from_str_radix(&t[1..], 8).ok()
    } else {
        t.parse().ok()
    }
}

/// virValidateWWN: 16 hex digits, optionally after `0x`.
fn check_wwn(wwn: &str) -> Result<(), ConfError> {
    let digits = wwn.strip_prefix("0x").unwrap_or(wwn);
    if digits.len() == 16 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ConfError::xml(format!("Malformed wwn: {wwn}")))
    }
}

/// virStorageAdapterParseXML: the adapter in libvirt's canonical form
/// (type first, fc_host attributes in its order, the legacy name-only form
/// as scsi_host).
fn parse_adapter(a: &Element) -> Result<Element, ConfError> {
    let mut out = Element::new("adapter");
    match a.attr("type") {
        None => {
            if a.attr("wwnn").is_some() || a.attr("wwpn").is_some() || a.attr("parent").is_some() {
                return Err(ConfError::xml(
                    "Use of 'wwnn', 'wwpn', and 'parent' attributes requires use of the adapter 'type'",
                ));
            }
            if a.child("parentaddr").is_some() {
                return Err(ConfError::xml(
                    "Use of 'parentaddr' element requires use of the adapter 'type'",
                ));
            }
            // Without a name the adapter has no type: validation says so.
            if let Some(name) = a.attr("name") {
                out = out.with_attr("type", "scsi_host").with_attr("name", name);
            }
        }
        Some("fc_host") => {
            out = out.with_attr("type", "fc_host");
            let managed = match a.attr("managed") {
                None => None,
                Some(v @ ("yes" | "no")) => Some(v),
                Some(v) => {
                    return Err(ConfError::xml(format!(
                        "Invalid value for attribute 'managed' in element 'adapter': '{v}'. Expected one of 'yes', 'no'"
                    )));
                }
            };
            for k in ["parent", "parent_wwnn", "parent_wwpn", "parent_fabric_wwn"] {
                if let Some(v) = a.attr(k) {
                    out = out.with_attr(k, v);
                }
            }
            if let Some(m) = managed {
                out = out.with_attr("managed", m);
            }
            for k in ["wwnn", "wwpn"] {
                if let Some(v) = a.attr(k) {
                    out = out.with_attr(k, v);
                }
            }
        }
        Some("scsi_host") => {
            out = out.with_attr("type", "scsi_host");
            if let Some(name) = a.attr("name") {
                out = out.with_attr("name", name);
            }
            if let Some(pa) = a.child("parentaddr") {
                let addr = pa
                    .child("address")
                    .ok_or_else(|| ConfError::xml("Missing scsi_host PCI address element"))?;
                let unique_id = pa
                    .attr("unique_id")
                    .and_then(|u| u.trim().parse::<i32>().ok())
                    .filter(|u| *u >= 0)
                    .ok_or_else(|| {
                        ConfError::xml("Missing or invalid scsi adapter 'unique_id' value")
                    })?;
                let field = |k: &str| -> Result<u32, ConfError> {
                    match addr.attr(k) {
                        None => Ok(0),
                        Some(v) => parse_uint0(v).ok_or_else(|| {
                            ConfError::xml(format!(
                                "Invalid value for attribute '{k}' in element 'address': '{v}'. Expected non-negative integer value"
                            ))
                        }),
                    }
                };
                let address = Element::new("address")
                    .with_attr("domain", format!("0x{:04x}", field("domain")?))
                    .with_attr("bus", format!("0x{:02x}", field("bus")?))
                    .with_attr("slot", format!("0x{:02x}", field("slot")?))
                    .with_attr("function", format!("0x{:x}", field("function")?));
                out = out.with_child(
                    Element::new("parentaddr")
                        .with_attr("unique_id", unique_id.to_string())
                        .with_child(address),
                );
            }
        }
        Some(other) => {
            return Err(ConfError::xml(format!(
                "Invalid value for attribute 'type' in element 'adapter': '{other}'."
            )));
        }
    }
    Ok(out)
}

/// virStorageAdapterValidate on the canonical adapter.
fn validate_adapter(adapter: Option<&Element>) -> Result<(), ConfError> {
    let Some(a) = adapter.filter(|a| a.attr("type").is_some()) else {
        return Err(ConfError::xml("missing storage pool source adapter"));
    };
    if a.attr("type") == Some("fc_host") {
        let (Some(wwnn), Some(wwpn)) = (a.attr("wwnn"), a.attr("wwpn")) else {
            return Err(ConfError::xml(
                "'wwnn' and 'wwpn' must be specified for adapter type 'fchost'",
            ));
        };
        check_wwn(wwnn)?;
        check_wwn(wwpn)?;
        match (a.attr("parent_wwnn"), a.attr("parent_wwpn")) {
            (Some(n), None) => {
                return Err(ConfError::xml(format!(
                    "when providing parent_wwnn='{n}', the parent_wwpn must also be provided"
                )));
            }
            (None, Some(p)) => {
                return Err(ConfError::xml(format!(
                    "when providing parent_wwpn='{p}', the parent_wwnn must also be provided"
                )));
            }
            (Some(n), Some(p)) => {
                check_wwn(n)?;
                check_wwn(p)?;
            }
            (None, None) => {}
        }
        if let Some(f) = a.attr("parent_fabric_wwn") {
            check_wwn(f)?;
        }
        return Ok(());
    }
    let has_parent = a.child("parentaddr").is_some();
    match (a.attr("name").is_some(), has_parent) {
        (false, false) => Err(ConfError::xml(
            "Either 'name' or 'parent' must be specified for the 'scsi_host' adapter",
        )),
        (true, true) => Err(ConfError::xml(
            "Both 'name' and 'parent' cannot be specified for the 'scsi_host' adapter",
        )),
        _ => Ok(()),
    }
}

/// virSecretLookupParseSecret + format: `<secret [type] uuid|usage/>`.
fn parse_secret_ref(sec: &Element, ty: Option<&str>) -> Result<Element, ConfError> {
    let mut out = Element::new("secret");
    if let Some(t) = ty {
        out = out.with_attr("type", t);
    }
    match (sec.attr("uuid"), sec.attr("usage")) {
        (Some(_), Some(_)) => Err(ConfError::xml("either secret uuid or usage expected")),
        (Some(u), None) => {
            let uuid = crate::error::parse_uuid_str(u)
                .ok_or_else(|| ConfError::xml(format!("invalid secret uuid '{u}'")))?;
            Ok(out.with_attr("uuid", uuid.to_string()))
        }
        (None, Some(u)) => Ok(out.with_attr("usage", u)),
        (None, None) => Err(ConfError::xml("missing secret uuid or usage attribute")),
    }
}

/// virStorageAuthDefParse: (auth type, canonical element).
fn parse_auth(auth: &Element) -> Result<(String, Element), ConfError> {
    let username = auth
        .attr("username")
        .ok_or_else(|| ConfError::xml("missing username for auth"))?;
    let ty = match auth.attr("type") {
        None => "none",
        Some(t @ ("none" | "chap" | "ceph")) => t,
        Some(t) => return Err(ConfError::xml(format!("unknown auth type '{t}'"))),
    };
    let sec = auth
        .child("secret")
        .ok_or_else(|| ConfError::xml("Missing <secret> element in auth"))?;
    let mut out = Element::new("auth");
    if ty != "none" {
        out = out.with_attr("type", ty);
    }
    out = out
        .with_attr("username", username)
        .with_child(parse_secret_ref(sec, sec.attr("type"))?);
    Ok((ty.to_owned(), out))
}

/// virStorageEncryptionParseNode: the canonical `<encryption>`.
fn parse_encryption(enc: &Element) -> Result<Element, ConfError> {
    let format = enc
        .attr("format")
        .ok_or_else(|| ConfError::xml("unknown volume encryption format"))?;
    if !matches!(format, "default" | "qcow" | "luks" | "luks2" | "luks-any") {
        return Err(ConfError::unsupported(format!(
            "unknown volume encryption format type {format}"
        )));
    }
    let mut out = Element::new("encryption").with_attr("format", format);
    match enc.attr("engine") {
        None => {}
        Some(e @ ("qemu" | "librbd")) => out = out.with_attr("engine", e),
        Some(e) => {
            return Err(ConfError::xml(format!(
                "Invalid value for attribute 'engine' in element 'encryption': '{e}'."
            )));
        }
    }
    for sec in enc.children_named("secret") {
        let ty = sec
            .attr("type")
            .ok_or_else(|| ConfError::xml("unknown volume encryption secret type"))?;
        if ty != "passphrase" {
            return Err(ConfError::unsupported(format!(
                "unknown volume encryption secret type {ty}"
            )));
        }
        out = out.with_child(parse_secret_ref(sec, Some(ty))?);
    }
    if format == "luks" {
        let cipher = enc.child("cipher");
        if let Some(c) = cipher {
            let name = c
                .attr("name")
                .ok_or_else(|| ConfError::xml("cipher info missing 'name' attribute"))?;
            let size = c.attr("size").ok_or_else(|| {
                ConfError::xml("Missing required attribute 'size' in element 'cipher'")
            })?;
            let size: u32 = size.trim().parse().map_err(|_| {
                ConfError::xml(format!(
                    "Invalid value for attribute 'size' in element 'cipher': '{size}'. Expected non-negative integer value"
                ))
            })?;
            let mut ce = Element::new("cipher")
                .with_attr("name", name)
                .with_attr("size", size.to_string());
            for k in ["mode", "hash"] {
                if let Some(v) = c.attr(k) {
                    ce = ce.with_attr(k, v);
                }
            }
            out = out.with_child(ce);
        }
        if let Some(iv) = enc.child("ivgen") {
            if cipher.is_none() {
                return Err(ConfError::xml("ivgen element found, but cipher is missing"));
            }
            let name = iv
                .attr("name")
                .ok_or_else(|| ConfError::xml("missing ivgen info name string"))?;
            let mut ie = Element::new("ivgen").with_attr("name", name);
            if let Some(h) = iv.attr("hash") {
                ie = ie.with_attr("hash", h);
            }
            out = out.with_child(ie);
        }
    }
    Ok(out)
}

/// Namespace declarations and the option elements that use them.
type NsOptions = (Vec<(String, String)>, Vec<Element>);

/// The namespaced options of fs/netfs (`fs:mount_opts`) and rbd
/// (`rbd:config_opts`) pools, as libvirt's namespace parsers read and
/// format them: only under libvirt's namespace URI.
fn parse_ns_options(root: &Element, pool_type: &str) -> Result<NsOptions, ConfError> {
    let (prefix, href, list, with_value) = match pool_type {
        "fs" | "netfs" => (
            "fs",
            "http://libvirt.org/schemas/storagepool/fs/1.0",
            "mount_opts",
            false,
        ),
        "rbd" => (
            "rbd",
            "http://libvirt.org/schemas/storagepool/rbd/1.0",
            "config_opts",
            true,
        ),
        _ => return Ok((Vec::new(), Vec::new())),
    };
    // The prefix the document binds to libvirt's URI (usually the same).
    let Some(bound) = root
        .attrs
        .iter()
        .find_map(|(k, v)| k.strip_prefix("xmlns:").filter(|_| v == href))
    else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut opts = Element::new(format!("{prefix}:{list}"));
    for l in root.children_named(&format!("{bound}:{list}")) {
        for o in l.children_named(&format!("{bound}:option")) {
            let name = o.attr("name").ok_or_else(|| {
                ConfError::xml(if with_value {
                    "no rbd option name specified".to_owned()
                } else {
                    "no fs mount option name specified".to_owned()
                })
            })?;
            let mut oe = Element::new(format!("{prefix}:option")).with_attr("name", name);
            if with_value {
                let value = o
                    .attr("value")
                    .ok_or_else(|| ConfError::xml("no rbd option value specified"))?;
                oe = oe.with_attr("value", value);
            }
            opts = opts.with_child(oe);
        }
    }
    if opts.children.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    Ok((
        vec![(format!("xmlns:{prefix}"), href.to_owned())],
        vec![opts],
    ))
}

impl PoolDef {
    pub fn parse(xml: &str) -> Result<Self, ConfError> {
        Self::from_element(parse_root(xml, "pool")?)
    }

    /// virStoragePoolDefParseXML: the checks in libvirt's order.
    pub fn from_element(root: Element) -> Result<Self, ConfError> {
        let pool_type = match root.attr("type") {
            None => {
                return Err(ConfError::xml(
                    "Missing required attribute 'type' in element 'pool'",
                ));
            }
            Some(t) if POOL_TYPES.contains(&t) => t.to_owned(),
            Some(t) => {
                return Err(ConfError::xml(format!(
                    "Invalid value for attribute 'type' in element 'pool': '{t}'."
                )));
            }
        };
        let info = type_info(&pool_type);
        let mut source = match root.child("source") {
            Some(s) => parse_source(s, &pool_type)?,
            None => PoolSource {
                format: info.formats.map(|(d, _)| d.to_owned()),
                ..Default::default()
            },
        };
        let name = root
            .child("name")
            .and_then(|n| nonempty(n.text()))
            .or_else(|| {
                (info.flags & SRC_NAME != 0)
                    .then(|| source.name.clone())
                    .flatten()
            })
            .ok_or_else(|| ConfError::xml("missing pool source name element"))?;
        if name.contains('/') {
            return Err(ConfError::xml(format!("name {name} cannot contain '/'")));
        }
        let uuid = parse_uuid(xpath_string(&root, "uuid"))
            .map_err(|_| ConfError::xml("malformed uuid element"))?
            .to_string();
        let cow = match root
            .child("features")
            .and_then(|f| f.child("cow"))
            .and_then(|c| c.attr("state"))
        {
            None => None,
            Some(v @ ("yes" | "no")) => {
                if pool_type != "fs" && pool_type != "dir" {
                    return Err(ConfError {
                        kind: crate::ConfErrorKind::ConfigUnsupported,
                        message: "this function is not supported by the connection driver: cow feature may only be used for 'fs' and 'dir' pools".into(),
                    });
                }
                Some(v.to_owned())
            }
            Some(v) => {
                return Err(ConfError::xml(format!(
                    "Invalid value for attribute 'state' in element 'cow': '{v}'. Expected one of 'yes', 'no'"
                )));
            }
        };
        if info.flags & SRC_HOST != 0 && source.hosts.is_empty() {
            return Err(ConfError::xml("missing storage pool source host name"));
        }
        if info.flags & SRC_DIR != 0 && source.dir.is_none() {
            return Err(ConfError::xml("missing storage pool source path"));
        }
        if info.flags & SRC_NAME != 0 && source.name.is_none() {
            source.name = Some(name.clone());
        }
        if info.flags & SRC_ADAPTER != 0 {
            validate_adapter(source.adapter.as_ref())?;
        }
        if info.flags == SRC_DEVICE && source.devices.is_empty() {
            return Err(ConfError::xml("missing storage pool source device name"));
        }
        let mut target_path = None;
        let mut target_perms = Perms::default();
        if info.flags & SRC_NETWORK == 0 {
            let src_name = source.name.clone().unwrap_or_default();
            let path = match pool_type.as_str() {
                "logical" => format!("/dev/{src_name}"),
                "zfs" => format!("/dev/zvol/{src_name}"),
                _ => root
                    .child("target")
                    .and_then(|t| xpath_string(t, "path"))
                    .ok_or_else(|| ConfError::xml("missing storage pool target path"))?,
            };
            target_path = Some(sanitize_path(&path));
            target_perms = Perms::parse(root.child("target").and_then(|t| t.child("permissions")))?;
        }
        if pool_type == "iscsi-direct" && source.initiator_iqn.is_none() {
            return Err(ConfError::unsupported("missing initiator IQN"));
        }
        let refresh_allocation = match root
            .child("refresh")
            .and_then(|r| r.child("volume"))
            .and_then(|v| v.attr("allocation"))
        {
            None => None,
            Some(a @ ("default" | "capacity")) => Some(a.to_owned()),
            Some(a) => {
                return Err(ConfError::unsupported(format!(
                    "unknown storage pool volume refresh allocation type {a}"
                )));
            }
        };
        let (ns_attrs, ns_elements) = parse_ns_options(&root, &pool_type)?;
        Ok(PoolDef {
            pool_type,
            name,
            uuid,
            source,
            target_path,
            target_perms,
            cow,
            refresh_allocation,
            ns_attrs,
            ns_elements,
        })
    }

    /// The target path (`/default-pool`); empty for network pools.
    pub fn target_path(&self) -> String {
        self.target_path.clone().unwrap_or_default()
    }

    fn source_xml(&self, out: &mut String, indent: &str) {
        let info = type_info(&self.pool_type);
        let s = &self.source;
        let i2 = format!("{indent}  ");
        out.push_str(&format!("{indent}<source>\n"));
        if info.flags & SRC_HOST != 0 {
            for (name, port) in &s.hosts {
                out.push_str(&format!("{i2}<host name='{}'", escape(name)));
                if *port != 0 {
                    out.push_str(&format!(" port='{port}'"));
                }
                out.push_str("/>\n");
            }
        }
        if info.flags & SRC_DEVICE != 0 {
            for (path, sep) in &s.devices {
                out.push_str(&format!("{i2}<device path='{}'", escape(path)));
                if let Some(sep) = sep {
                    out.push_str(&format!(" part_separator='{sep}'"));
                }
                out.push_str("/>\n");
            }
        }
        if info.flags & SRC_DIR != 0
            && let Some(dir) = &s.dir
        {
            out.push_str(&format!("{i2}<dir path='{}'/>\n", escape(dir)));
        }
        if info.flags & SRC_ADAPTER != 0
            && let Some(a) = &s.adapter
            && a.attr("type").is_some()
        {
            push_element(out, a, &i2);
        }
        if info.flags & SRC_NAME != 0
            && let Some(n) = &s.name
        {
            out.push_str(&format!("{i2}<name>{}</name>\n", escape(n)));
        }
        if info.flags & SRC_INITIATOR != 0
            && let Some(iqn) = &s.initiator_iqn
        {
            out.push_str(&format!(
                "{i2}<initiator>\n{i2}  <iqn name='{}'/>\n{i2}</initiator>\n",
                escape(iqn)
            ));
        }
        if let Some(f) = &s.format
            && info.formats.is_some()
        {
            out.push_str(&format!("{i2}<format type='{f}'/>\n"));
        }
        if let Some(a) = &s.auth {
            push_element(out, a, &i2);
        }
        if let Some(v) = s.protocol_ver {
            out.push_str(&format!("{i2}<protocol ver='{v}'/>\n"));
        }
        if let Some(v) = &s.vendor {
            out.push_str(&format!("{i2}<vendor name='{}'/>\n", escape(v)));
        }
        if let Some(p) = &s.product {
            out.push_str(&format!("{i2}<product name='{}'/>\n", escape(p)));
        }
        out.push_str(&format!("{indent}</source>\n"));
    }

    /// virStoragePoolDefFormat with the given sizes and target permissions
    /// (the live XML of an active pool shows the directory's own).
    pub fn format(&self, sizes: PoolSizes, perms: Option<&Perms>) -> String {
        let mut out = format!("<pool type='{}'", self.pool_type);
        for (k, v) in &self.ns_attrs {
            out.push_str(&format!(" {k}='{}'", escape(v)));
        }
        out.push_str(">\n");
        out.push_str(&format!("  <name>{}</name>\n", escape(&self.name)));
        out.push_str(&format!("  <uuid>{}</uuid>\n", self.uuid));
        out.push_str(&format!(
            "  <capacity unit='bytes'>{}</capacity>\n  <allocation unit='bytes'>{}</allocation>\n  <available unit='bytes'>{}</available>\n",
            sizes.capacity, sizes.allocation, sizes.available
        ));
        if let Some(cow) = &self.cow {
            out.push_str(&format!(
                "  <features>\n    <cow state='{cow}'/>\n  </features>\n"
            ));
        }
        self.source_xml(&mut out, "  ");
        if !matches!(
            self.pool_type.as_str(),
            "rbd" | "sheepdog" | "gluster" | "iscsi-direct"
        ) {
            out.push_str("  <target>\n");
            if let Some(p) = &self.target_path {
                out.push_str(&format!("    <path>{}</path>\n", escape(p)));
            }
            if let Some(el) = perms.unwrap_or(&self.target_perms).element() {
                push_element(&mut out, &el, "    ");
            }
            out.push_str("  </target>\n");
        }
        if let Some(a) = &self.refresh_allocation {
            out.push_str(&format!(
                "  <refresh>\n    <volume allocation='{a}'/>\n  </refresh>\n"
            ));
        }
        for e in &self.ns_elements {
            push_element(&mut out, e, "  ");
        }
        out.push_str("</pool>\n");
        out
    }

    /// Format with the given sizes in bytes (the config's permissions).
    pub fn to_xml(&self, capacity: u64, allocation: u64, available: u64) -> String {
        self.format(
            PoolSizes {
                capacity,
                allocation,
                available,
            },
            None,
        )
    }

    /// Whether volumes of this pool type carry a `<format>` (file formats).
    pub fn vol_formats(&self) -> Option<(&'static str, &'static [&'static str])> {
        type_info(&self.pool_type).vol_formats
    }
}

/// Append an element formatted at `indent` (two spaces per level).
/// Newlines inside its text stay as they are: indenting every line of the
/// formatted element would shift them on each define/dumpxml cycle.
fn push_element(out: &mut String, el: &Element, indent: &str) {
    out.push_str(&el.to_xml_at(indent.len() / 2));
}

/// `<backingStore>` of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackingStore {
    pub path: String,
    pub format: String,
    pub perms: Perms,
}

/// When a volume's `<capacity>` may be omitted (libvirt's parse flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// Always required (no flags).
    Required,
    /// Omitted when a backing store gives it (VIR_VOL_XML_PARSE_OPT_CAPACITY,
    /// virStorageVolCreateXML).
    OptionalWithBacking,
    /// Omitted freely (VIR_VOL_XML_PARSE_NO_CAPACITY, CreateXMLFrom: the
    /// source gives it).
    Optional,
}

/// A storage volume definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolDef {
    pub name: String,
    /// `<key>` as given (drivers replace it with their canonical key).
    pub key: Option<String>,
    /// `@type` as given.
    pub vol_type: Option<String>,
    pub capacity: u64,
    /// Whether `<capacity>` was given.
    pub has_capacity: bool,
    /// Bytes; the capacity when `<allocation>` is absent.
    pub allocation: u64,
    pub has_allocation: bool,
    /// `<target><path>` as given.
    pub path: Option<String>,
    pub format: String,
    pub perms: Perms,
    /// `<encryption>` in libvirt's canonical form.
    pub encryption: Option<Element>,
    pub compat: Option<String>,
    pub nocow: bool,
    /// Bytes (0: not set).
    pub cluster_size: u64,
    /// Set features in libvirt's order; `Some(empty)` for `<features/>`.
    pub features: Option<Vec<String>>,
    pub backing: Option<BackingStore>,
}

/// What the driver found on disk for a volume (or its backing store).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VolStat {
    pub capacity: u64,
    pub allocation: u64,
    pub physical: u64,
    pub mode: u32,
    pub owner: u32,
    pub group: u32,
    /// (seconds, nanoseconds)
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

/// virStorageSize: a scaled size whose number must parse.
fn sized(root: &Element, name: &str) -> Result<Option<u64>, ConfError> {
    let Some(el) = root.child(name) else {
        return Ok(None);
    };
    let text = el.text();
    let value: u64 =
        parse_ull(&text).ok_or_else(|| ConfError::xml("malformed capacity element"))?;
    let bytes = scale_to_bytes(value, el.attr("unit"), "bytes")?;
    if bytes > i64::MAX as u64 {
        return Err(ConfError::unsupported(format!(
            "value too large: {value}{}",
            el.attr("unit").unwrap_or("")
        )));
    }
    Ok(Some(bytes))
}

/// virStrToLong_ullp: decimal, leading spaces allowed, nothing after.
fn parse_ull(s: &str) -> Option<u64> {
    let t = s.trim_start();
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn file_format(f: Option<&str>, default: &str, all: &[&str]) -> Result<String, ConfError> {
    match f {
        None => Ok(default.to_owned()),
        Some(f) if f != "none" && all.contains(&f) => Ok(f.to_owned()),
        // Disk pools have a "none" volume format.
        Some("none") if all.first() == Some(&"none") && all != FILE_FORMATS => Ok("none".into()),
        Some(f) => Err(ConfError::unsupported(format!(
            "unknown volume format type {f}"
        ))),
    }
}

impl VolDef {
    /// Parse for a dir-like pool with capacity required (libvirt's test
    /// driver and virStorageVolDefParseString without flags).
    pub fn parse(xml: &str) -> Result<Self, ConfError> {
        Self::parse_for(xml, Some(("raw", FILE_FORMATS)), Capacity::Required)
    }

    /// virStorageVolDefParseXML for a pool whose volume formats are
    /// `formats` (None: no format), with `capacity` deciding whether
    /// `<capacity>` may be omitted.
    pub fn parse_for(
        xml: &str,
        formats: Option<(&str, &[&str])>,
        capacity_rule: Capacity,
    ) -> Result<Self, ConfError> {
        let root = parse_root(xml, "volume")?;
        let name = root
            .child("name")
            .and_then(|n| nonempty(n.text()))
            .ok_or_else(|| ConfError::xml("missing volume name element"))?;
        let key = xpath_string(&root, "key");
        let vol_type = match root.attr("type") {
            None => None,
            Some(t @ ("file" | "block" | "dir" | "network" | "netdir" | "ploop")) => {
                Some(t.to_owned())
            }
            Some(t) => {
                return Err(ConfError::unsupported(format!("unknown volume type '{t}'")));
            }
        };
        let backing = match root
            .child("backingStore")
            .and_then(|b| xpath_string(b, "path").map(|p| (b, p)))
        {
            None => None,
            Some((b, path)) => {
                let format = match formats {
                    Some((default, all)) => {
                        file_format(b.child("format").and_then(|f| f.attr("type")), default, all)?
                    }
                    None => String::new(),
                };
                Some(BackingStore {
                    path,
                    format,
                    perms: Perms::parse(b.child("permissions"))?,
                })
            }
        };
        let capacity = sized(&root, "capacity")?;
        let may_omit = match capacity_rule {
            Capacity::Required => false,
            Capacity::OptionalWithBacking => backing.is_some(),
            Capacity::Optional => true,
        };
        if capacity.is_none() && !may_omit {
            return Err(ConfError::xml("missing capacity element"));
        }
        let allocation = sized(&root, "allocation")?;
        let target = root.child("target");
        let format = match formats {
            Some((default, all)) => file_format(
                target
                    .and_then(|t| t.child("format"))
                    .and_then(|f| f.attr("type")),
                default,
                all,
            )?,
            None => String::new(),
        };
        let perms = Perms::parse(target.and_then(|t| t.child("permissions")))?;
        let encryption = target
            .and_then(|t| t.child("encryption"))
            .map(parse_encryption)
            .transpose()?;
        let mut compat = target.and_then(|t| xpath_string(t, "compat"));
        if let Some(c) = &compat {
            let ok = c
                .split_once('.')
                .is_some_and(|(a, b)| parse_ull(a).is_some() && parse_ull(b).is_some());
            if !ok {
                return Err(ConfError::xml("forbidden characters in 'compat' attribute"));
            }
        }
        let nocow = target.is_some_and(|t| t.child("nocow").is_some());
        let cluster_size = match target.and_then(|t| t.child("clusterSize")) {
            None => 0,
            Some(el) => {
                let text = el.text();
                let v = parse_ull(&text).ok_or_else(|| {
                    ConfError::xml("could not parse element './target/clusterSize'")
                })?;
                scale_to_bytes(v, el.attr("unit"), "bytes")?
            }
        };
        let features = match target.and_then(|t| t.child("features")) {
            None => None,
            Some(f) => {
                if compat.is_none() {
                    compat = Some("1.1".into());
                }
                let mut set = Vec::new();
                for e in f.elements() {
                    if !FILE_FEATURES.contains(&e.name.as_str()) {
                        return Err(ConfError::unsupported(format!(
                            "unsupported feature {}",
                            e.name
                        )));
                    }
                    set.push(e.name.clone());
                }
                Some(
                    FILE_FEATURES
                        .iter()
                        .filter(|f| set.iter().any(|s| s == *f))
                        .map(|f| (*f).to_owned())
                        .collect(),
                )
            }
        };
        let capacity_v = capacity.unwrap_or(0);
        Ok(VolDef {
            name,
            key,
            vol_type,
            capacity: capacity_v,
            has_capacity: capacity.is_some(),
            allocation: allocation.unwrap_or(capacity_v),
            has_allocation: allocation.is_some(),
            path: target.and_then(|t| xpath_string(t, "path")),
            format,
            perms,
            encryption,
            compat,
            nocow,
            cluster_size,
            features,
            backing,
        })
    }

    /// virStorageVolDefFormat with what the driver found on disk: `stat`
    /// for the volume, `backing_stat` for its backing store (when it could
    /// be read).  The key is the path, as in directory pools.
    pub fn format_live(
        &self,
        vol_type: &str,
        path: &str,
        stat: &VolStat,
        backing_stat: Option<&VolStat>,
    ) -> String {
        let mut out = format!("<volume type='{vol_type}'>\n");
        out.push_str(&format!("  <name>{}</name>\n", escape(&self.name)));
        out.push_str(&format!("  <key>{}</key>\n", escape(path)));
        out.push_str(&format!(
            "  <capacity unit='bytes'>{}</capacity>\n  <allocation unit='bytes'>{}</allocation>\n",
            stat.capacity, stat.allocation
        ));
        if stat.physical != 0 {
            out.push_str(&format!(
                "  <physical unit='bytes'>{}</physical>\n",
                stat.physical
            ));
        }
        let perms = Perms {
            mode: Some(stat.mode & 0o777),
            owner: Some(stat.owner.into()),
            group: Some(stat.group.into()),
            label: None,
        };
        self.target_xml(&mut out, "target", path, &self.format, &perms, Some(stat));
        if let Some(b) = &self.backing {
            let bperms = match backing_stat {
                Some(s) => Perms {
                    mode: Some(s.mode & 0o777),
                    owner: Some(s.owner.into()),
                    group: Some(s.group.into()),
                    label: None,
                },
                None => b.perms.clone(),
            };
            let bare = VolDef {
                encryption: None,
                compat: None,
                cluster_size: 0,
                features: None,
                ..self.clone()
            };
            bare.target_xml(
                &mut out,
                "backingStore",
                &b.path,
                &b.format,
                &bperms,
                backing_stat,
            );
        }
        out.push_str("</volume>\n");
        out
    }

    /// virStorageVolTargetDefFormat.
    fn target_xml(
        &self,
        out: &mut String,
        tag: &str,
        path: &str,
        format: &str,
        perms: &Perms,
        stat: Option<&VolStat>,
    ) {
        out.push_str(&format!("  <{tag}>\n"));
        out.push_str(&format!("    <path>{}</path>\n", escape(path)));
        if !format.is_empty() {
            out.push_str(&format!("    <format type='{format}'/>\n"));
        }
        if let Some(el) = perms.element() {
            push_element(out, &el, "    ");
        }
        if let Some(s) = stat {
            let ts = |name: &str, (sec, nsec): (i64, i64)| {
                if nsec != 0 {
                    format!("      <{name}>{sec}.{nsec:09}</{name}>\n")
                } else {
                    format!("      <{name}>{sec}</{name}>\n")
                }
            };
            out.push_str("    <timestamps>\n");
            out.push_str(&ts("atime", s.atime));
            out.push_str(&ts("mtime", s.mtime));
            out.push_str(&ts("ctime", s.ctime));
            // Linux has no birth time in stat(2); libvirt prints 0.
            out.push_str(&ts("btime", (0, 0)));
            out.push_str("    </timestamps>\n");
        }
        if let Some(enc) = &self.encryption {
            push_element(out, enc, "    ");
        }
        if let Some(c) = &self.compat {
            out.push_str(&format!("    <compat>{}</compat>\n", escape(c)));
        }
        if self.cluster_size > 0 {
            out.push_str(&format!(
                "    <clusterSize unit='B'>{}</clusterSize>\n",
                self.cluster_size
            ));
        }
        if let Some(f) = &self.features {
            if f.is_empty() {
                out.push_str("    <features/>\n");
            } else {
                out.push_str("    <features>\n");
                for name in f {
                    out.push_str(&format!("      <{name}/>\n"));
                }
                out.push_str("    </features>\n");
            }
        }
        out.push_str(&format!("  </{tag}>\n"));
    }

    /// Format as libvirt's test driver does for a file volume at `path`:
    /// the definition's own sizes and permissions, no timestamps.
    pub fn to_xml(&self, path: &str) -> String {
        let mut out = format!(
            "<volume type='{}'>\n",
            self.vol_type.as_deref().unwrap_or("file")
        );
        out.push_str(&format!("  <name>{}</name>\n", escape(&self.name)));
        out.push_str(&format!("  <key>{}</key>\n", escape(path)));
        out.push_str(&format!(
            "  <capacity unit='bytes'>{}</capacity>\n  <allocation unit='bytes'>{}</allocation>\n",
            self.capacity, self.allocation
        ));
        self.target_xml(&mut out, "target", path, &self.format, &self.perms, None);
        if let Some(b) = &self.backing {
            let bare = VolDef {
                encryption: None,
                compat: None,
                cluster_size: 0,
                features: None,
                ..self.clone()
            };
            bare.target_xml(&mut out, "backingStore", &b.path, &b.format, &b.perms, None);
        }
        out.push_str("</volume>\n");
        out
    }

    /// The secret UUIDs (or usages) of `<encryption><secret>`, in order:
    /// (uuid, usage).
    pub fn encryption_secrets(&self) -> Vec<(Option<String>, Option<String>)> {
        self.encryption
            .iter()
            .flat_map(|e| e.children_named("secret"))
            .map(|s| {
                (
                    s.attr("uuid").map(str::to_owned),
                    s.attr("usage").map(str::to_owned),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_format() {
        let v = VolDef::parse("<volume><name>v1</name><capacity unit='M'>10</capacity><allocation>0</allocation></volume>").unwrap();
        assert_eq!(
            v.to_xml("/default-pool/v1"),
            "<volume type='file'>\n  <name>v1</name>\n  <key>/default-pool/v1</key>\n  <capacity unit='bytes'>10485760</capacity>\n  <allocation unit='bytes'>0</allocation>\n  <target>\n    <path>/default-pool/v1</path>\n    <format type='raw'/>\n  </target>\n</volume>\n"
        );
    }

    #[test]
    fn sanitize() {
        assert_eq!(sanitize_path("/a//b/"), "/a/b");
        assert_eq!(sanitize_path("/a/./b"), "/a/b");
        assert_eq!(sanitize_path("/a/sub/../"), "/a/sub/..");
        assert_eq!(sanitize_path("/"), "/");
    }

    #[test]
    fn pool_source_in_libvirt_order() {
        let p = PoolDef::parse(
            "<pool type='netfs'><name>n</name><uuid>b227e580-0486-5ce2-8d5f-ddf7d7137857</uuid><source><format type='nfs'/><dir path='/x/'/><host name='h'/></source><target><path>/t</path></target></pool>",
        )
        .unwrap();
        assert!(p.to_xml(0, 0, 0).contains(
            "  <source>\n    <host name='h'/>\n    <dir path='/x'/>\n    <format type='nfs'/>\n  </source>\n"
        ));
    }

    #[test]
    fn logical_target_is_dev_vg() {
        let p = PoolDef::parse(
            "<pool type='logical'><name>vg</name><source><device path='/dev/sdz'/></source></pool>",
        )
        .unwrap();
        assert_eq!(p.target_path(), "/dev/vg");
        assert_eq!(p.source.name.as_deref(), Some("vg"));
    }

    #[test]
    fn volume_errors() {
        let e = |x: &str| VolDef::parse(x).unwrap_err().message;
        assert_eq!(
            e("<volume><capacity>1</capacity></volume>"),
            "XML error: missing volume name element"
        );
        assert_eq!(
            e(
                "<volume><name>a</name><capacity>1</capacity><target><permissions><mode>99999</mode></permissions></target></volume>"
            ),
            "XML error: malformed octal mode"
        );
        assert_eq!(
            e("<volume><name>a</name></volume>"),
            "XML error: missing capacity element"
        );
        assert_eq!(
            e(
                "<volume><name>a</name><capacity>1</capacity><target><format type='bogus'/></target></volume>"
            ),
            "unsupported configuration: unknown volume format type bogus"
        );
    }

    #[test]
    fn features_imply_compat_11() {
        let v = VolDef::parse("<volume><name>a</name><capacity>1</capacity><target><format type='qcow2'/><features><extended_l2/></features></target></volume>").unwrap();
        assert_eq!(v.compat.as_deref(), Some("1.1"));
        assert_eq!(v.features, Some(vec!["extended_l2".to_owned()]));
    }

    #[test]
    fn auth_adapter_and_options_in_libvirt_form() {
        let p = PoolDef::parse(
            "<pool type='rbd'><name>r</name><source><name>rbdpool</name><host name='m' port='6789'/><auth username='admin' type='ceph'><secret uuid='2ec115d73a883cebbc120ac909a6fd87'/></auth></source></pool>",
        )
        .unwrap();
        let x = p.to_xml(0, 0, 0);
        assert!(
            x.contains("    <auth type='ceph' username='admin'>\n      <secret uuid='2ec115d7-3a88-3ceb-bc12-0ac909a6fd87'/>\n    </auth>\n"),
            "{x}"
        );
        assert!(!x.contains("<target>"), "{x}");
        let p = PoolDef::parse(
            "<pool type='scsi'><name>s</name><source><adapter wwpn='10000000c9831b4b' wwnn='20000000c9831b4b' managed='no' type='fc_host'/></source><target><path>/dev/disk/by-path</path></target></pool>",
        )
        .unwrap();
        assert!(p.to_xml(0, 0, 0).contains(
            "<adapter type='fc_host' managed='no' wwnn='20000000c9831b4b' wwpn='10000000c9831b4b'/>"
        ));
        let p = PoolDef::parse(
            "<pool type='scsi'><name>s</name><source><adapter type='scsi_host'><parentaddr unique_id='1'><address domain='0' bus='0' slot='31' function='2'/></parentaddr></adapter></source><target><path>/dev/disk/by-path</path></target></pool>",
        )
        .unwrap();
        assert!(p.to_xml(0, 0, 0).contains(
            "    <adapter type='scsi_host'>\n      <parentaddr unique_id='1'>\n        <address domain='0x0000' bus='0x00' slot='0x1f' function='0x2'/>\n      </parentaddr>\n    </adapter>\n"
        ));
        let e = PoolDef::parse(
            "<pool type='scsi'><name>s</name><source><adapter type='fc_host' wwnn='xyz' wwpn='10000000c9831b4b'/></source><target><path>/p</path></target></pool>",
        )
        .unwrap_err();
        assert_eq!(e.message, "XML error: Malformed wwn: xyz");
        let p = PoolDef::parse(
            "<pool type='netfs' xmlns:x='http://libvirt.org/schemas/storagepool/fs/1.0'><name>n</name><source><host name='h'/><dir path='/e'/></source><target><path>/t</path></target><x:mount_opts><x:option name='ro'/></x:mount_opts></pool>",
        )
        .unwrap();
        let x = p.to_xml(0, 0, 0);
        assert!(
            x.starts_with(
                "<pool type='netfs' xmlns:fs='http://libvirt.org/schemas/storagepool/fs/1.0'>"
            ),
            "{x}"
        );
        assert!(
            x.contains("  <fs:mount_opts>\n    <fs:option name='ro'/>\n  </fs:mount_opts>\n"),
            "{x}"
        );
    }

    #[test]
    fn encryption_in_libvirt_form() {
        let v = VolDef::parse(
            "<volume><name>a</name><capacity>1</capacity><target><format type='qcow2'/><encryption format='luks'><secret uuid='nope' type='passphrase'/></encryption></target></volume>",
        );
        assert_eq!(
            v.unwrap_err().message,
            "XML error: invalid secret uuid 'nope'"
        );
        let v = VolDef::parse("<volume><name>a</name><capacity>1</capacity><target><encryption format='luks'><secret usage='u' type='passphrase'/><cipher size='256' name='aes' mode='xts'/></encryption></target></volume>").unwrap();
        assert!(v.to_xml("/p/a").contains(
            "    <encryption format='luks'>\n      <secret type='passphrase' usage='u'/>\n      <cipher name='aes' size='256' mode='xts'/>\n    </encryption>\n"
        ));
        let e = VolDef::parse("<volume><name>a</name><capacity>1</capacity><target><encryption format='rot13'/></target></volume>").unwrap_err();
        assert_eq!(
            e.message,
            "unsupported configuration: unknown volume encryption format type rot13"
        );
    }
}
