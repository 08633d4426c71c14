//! virsh's device convenience commands (tools/virsh-domain.c):
//! attach-disk and attach-interface build a device document from their
//! options; detach-disk and detach-interface find the device in the
//! domain's XML and detach exactly that element. All four, and
//! attach-device/detach-device, send the device through [`send`].

use std::os::unix::fs::FileTypeExt;

use virtmesh_proto::v1;

use super::cli::{AttachDiskArgs, AttachInterfaceArgs, ImpactArgs};
use super::domain::lookup;
use super::snapshot::xml_escape;
use super::{CmdError, CmdResult, Ctl};
use crate::lookup::{Kinds, by_uuid};

/// `--persistent/--config/--live/--current` of the device commands.
#[derive(Debug, Clone, Copy, Default)]
pub struct DevImpact {
    pub args: ImpactArgs,
    pub persistent: bool,
}

impl DevImpact {
    /// virsh's VSH_EXCLUSIVE_OPTIONS_VAR checks, in its order.
    pub fn check(&self) -> Result<(), CmdError> {
        if self.persistent && self.args.current {
            return Err(CmdError::msg(
                "Options --persistent and --current are mutually exclusive",
            ));
        }
        super::domextra::impact(self.args.config, self.args.live, self.args.current).map(|_| ())
    }

    /// The flags virsh passes: `--persistent` is `--config`, plus
    /// `--live` when the domain is running.
    pub fn impact(&self, active: bool) -> v1::Impact {
        v1::Impact {
            config: self.args.config || self.persistent,
            live: self.args.live || (self.persistent && active),
            current: self.args.current,
        }
    }

    fn affects_config(&self) -> bool {
        self.args.config || self.persistent
    }
}

/// What a device document is sent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceOp {
    /// virDomainAttachDeviceFlags.
    Attach,
    /// virDomainDetachDeviceFlags.
    Detach,
    /// virDomainUpdateDeviceFlags, `force` as VIR_DOMAIN_DEVICE_MODIFY_FORCE.
    Update { force: bool },
}

/// One device document to the driver, for `op`.
pub async fn send(
    ctl: &Ctl,
    uuid: &str,
    xml: String,
    imp: v1::Impact,
    op: DeviceOp,
) -> Result<(), crate::Error> {
    let req = v1::DeviceRequest {
        domain: Some(by_uuid(uuid.to_owned())),
        device_xml: xml,
        impact: Some(imp),
        force: matches!(op, DeviceOp::Update { force: true }),
    };
    let mut c = ctl.conn.domain();
    match op {
        DeviceOp::Attach => c.attach_device(req).await?,
        DeviceOp::Detach => c.detach_device(req).await?,
        DeviceOp::Update { .. } => c.update_device(req).await?,
    };
    Ok(())
}

/// vshCommandOptStringReq's complaint about an empty value.
fn non_empty<'a>(name: &str, v: Option<&'a str>) -> Result<Option<&'a str>, CmdError> {
    match v {
        Some("") => Err(CmdError::msg(format!(
            "Failed to get option '{name}': Option argument is empty"
        ))),
        v => Ok(v),
    }
}

/// virStrToLong_uip after skipping one separator: an unsigned number in
/// `radix` (strtoul's optional `0x` for 16), the rest of the string after
/// it.
fn number(s: &str, radix: u32) -> Option<(u64, &str)> {
    let s = s.get(1..)?;
    let body = if radix == 16 {
        s.strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .filter(|r| r.starts_with(|c: char| c.is_ascii_hexdigit()))
            .unwrap_or(s)
    } else {
        s
    };
    let end = body
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(body.len());
    let n = u64::from_str_radix(&body[..end], radix).ok()?;
    Some((n, &body[end..]))
}

/// virshAddressParse + virshAddressFormat: `pci:D.B.S.F`, `scsi:`/`sata:`/
/// `ide:C.B.U`, `ccw:C.S.D`, `usb:B.P`. Returns the kind and the element
/// (with newline), None when it does not parse.
pub fn address(s: &str, multifunction: bool) -> Option<(&'static str, String)> {
    let kind = s.split_once(':')?.0;
    // From the ':' on: `number` skips one separator before each field.
    let rest = &s[kind.len()..];
    let fields = |n: usize, radix: u32, last_wide: bool| -> Option<Vec<u64>> {
        let mut out = Vec::with_capacity(n);
        let mut r = rest;
        for i in 0..n {
            let (v, next) = number(r, radix)?;
            if v > u64::from(u32::MAX) && !(last_wide && i == n - 1) {
                return None;
            }
            out.push(v);
            r = next;
        }
        Some(out)
    };
    match kind {
        "pci" => {
            let f = fields(4, 16, false)?;
            let multi = if multifunction {
                " multifunction='on'"
            } else {
                ""
            };
            Some((
                "pci",
                format!(
                    "<address type='pci' domain='0x{:04x}' bus='0x{:02x}' slot='0x{:02x}' \
                     function='0x{:x}'{multi}/>\n",
                    f[0], f[1], f[2], f[3]
                ),
            ))
        }
        "scsi" | "sata" | "ide" => {
            let f = fields(3, 10, true)?;
            let kind = match kind {
                "scsi" => "scsi",
                "sata" => "sata",
                _ => "ide",
            };
            Some((
                kind,
                format!(
                    "<address type='drive' controller='{}' bus='{}' unit='{}'/>\n",
                    f[0], f[1], f[2]
                ),
            ))
        }
        "ccw" => {
            let f = fields(3, 16, false)?;
            Some((
                "ccw",
                format!(
                    "<address type='ccw' cssid='0x{:02x}' ssid='0x{:x}' devno='0x{:04x}'/>\n",
                    f[0], f[1], f[2]
                ),
            ))
        }
        "usb" => {
            let f = fields(2, 10, false)?;
            Some((
                "usb",
                format!("<address type='usb' bus='{}' port='{}'/>\n", f[0], f[1]),
            ))
        }
        _ => None,
    }
}

/// virValidateWWN: 16 hex digits, optionally after `0x`.
fn valid_wwn(w: &str) -> bool {
    let digits = w
        .strip_prefix("0x")
        .or_else(|| w.strip_prefix("0X"))
        .unwrap_or(w);
    digits.len() == 16 && digits.chars().all(|c| c.is_ascii_hexdigit())
}

/// ` name='value'` for each present value (virBufferEscapeString).
fn attrs(pairs: &[(&str, Option<&str>)]) -> String {
    pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!(" {k}='{}'", xml_escape(v))))
        .collect()
}

/// The `<disk>` document attach-disk builds (cmdAttachDisk), or virsh's
/// error for the options.
pub fn disk_xml(a: &AttachDiskArgs) -> Result<String, CmdError> {
    let need = |opt: &Option<String>, required: &str, by: &str| {
        if opt.is_some() {
            return Ok(());
        }
        Err(CmdError::msg(format!(
            "Option --{required} is required by option --{by}"
        )))
    };
    if a.source_host_name.is_some() {
        need(&a.source_protocol, "source-protocol", "source-host-name")?;
    }
    if a.source_host_transport.is_some() {
        need(
            &a.source_protocol,
            "source-protocol",
            "source-host-transport",
        )?;
    }
    if a.source_host_socket.is_some() {
        need(&a.source_protocol, "source-protocol", "source-host-socket")?;
        need(
            &a.source_host_transport,
            "source-host-transport",
            "source-host-socket",
        )?;
    }
    if a.source_host_name.is_some() && a.source_host_socket.is_some() {
        return Err(CmdError::msg(
            "Options --source-host-name and --source-host-socket are mutually exclusive",
        ));
    }
    let source = a.source.get();
    let target = a.target.get();
    if target.is_empty() {
        non_empty("target", Some(target))?;
    }
    let driver = non_empty("driver", a.driver.as_deref())?;
    let subdriver = non_empty("subdriver", a.subdriver.as_deref())?;
    let device = non_empty("type", a.device_type.as_deref())?;
    let mode = if a.shareable {
        Some("shareable")
    } else {
        non_empty("mode", a.mode.as_deref())?
    };
    let iothread = non_empty("iothread", a.iothread.as_deref())?;
    let cache = non_empty("cache", a.cache.as_deref())?;
    let io = non_empty("io", a.io.as_deref())?;
    let serial = non_empty("serial", a.serial.as_deref())?;
    let wwn = non_empty("wwn", a.wwn.as_deref())?;
    let straddr = non_empty("address", a.address.as_deref())?;
    let targetbus = non_empty("targetbus", a.targetbus.as_deref())?;
    let alias = non_empty("alias", a.alias.as_deref())?;
    let stype = non_empty("sourcetype", a.sourcetype.as_deref())?;
    let protocol = non_empty("source-protocol", a.source_protocol.as_deref())?;
    let host_name = non_empty("source-host-name", a.source_host_name.as_deref())?;
    let transport = non_empty("source-host-transport", a.source_host_transport.as_deref())?;
    let socket = non_empty("source-host-socket", a.source_host_socket.as_deref())?;

    let mut kind = match stype {
        None | Some("") => "",
        Some(t @ ("file" | "block" | "network")) => t,
        Some(t) => return Err(CmdError::msg(format!("Unknown source type: '{t}'"))),
    };
    if kind.is_empty() {
        // virsh stats the source on the client: a block device there
        // makes a type='block' disk.
        let is_block = || {
            std::fs::metadata(source)
                .map(|m| m.file_type().is_block_device())
                .unwrap_or(false)
        };
        kind = if protocol.is_some() {
            "network"
        } else if driver != Some("file") && driver != Some("tap") && is_block() {
            "block"
        } else {
            "file"
        };
    }
    if (kind == "network") != protocol.is_some() {
        return Err(CmdError::msg(
            "--source-protocol option requires --sourcetype network",
        ));
    }
    if let Some(m) = mode
        && m != "readonly"
        && m != "shareable"
    {
        return Err(CmdError::msg(format!(
            "No support for {m} in command 'attach-disk'"
        )));
    }
    if let Some(w) = wwn
        && !valid_wwn(w)
    {
        return Err(CmdError::msg(format!("internal error: Malformed wwn: {w}")));
    }

    let mut x = format!("<disk type='{kind}'{}", attrs(&[("device", device)]));
    if a.rawio {
        x.push_str(" rawio='yes'");
    }
    x.push_str(">\n");
    let drv = attrs(&[
        ("name", driver),
        ("type", subdriver),
        ("iothread", iothread),
        ("cache", cache),
        ("io", io),
    ]);
    if !drv.is_empty() {
        x.push_str(&format!("  <driver{drv}/>\n"));
    }
    match kind {
        "file" => x.push_str(&format!(
            "  <source{}/>\n",
            attrs(&[("file", Some(source))])
        )),
        "block" => x.push_str(&format!("  <source{}/>\n", attrs(&[("dev", Some(source))]))),
        _ => {
            let (host, port) = match host_name.map(|h| h.split_once(':').unwrap_or((h, ""))) {
                Some((h, p)) => (Some(h), (!p.is_empty()).then_some(p)),
                None => (None, None),
            };
            let host_attrs = attrs(&[
                ("transport", transport),
                ("socket", socket),
                ("name", host),
                ("port", port),
            ]);
            let src = attrs(&[("protocol", protocol), ("name", Some(source))]);
            if host_attrs.is_empty() {
                x.push_str(&format!("  <source{src}/>\n"));
            } else {
                x.push_str(&format!(
                    "  <source{src}>\n    <host{host_attrs}/>\n  </source>\n"
                ));
            }
        }
    }
    x.push_str(&format!(
        "  <target{}/>\n",
        attrs(&[("dev", Some(target)), ("bus", targetbus)])
    ));
    if let Some(m) = mode {
        x.push_str(&format!("  <{m}/>\n"));
    }
    if let Some(s) = serial {
        x.push_str(&format!("  <serial>{}</serial>\n", xml_escape(s)));
    }
    if let Some(al) = alias {
        x.push_str(&format!("  <alias{}/>\n", attrs(&[("name", Some(al))])));
    }
    if let Some(w) = wwn {
        x.push_str(&format!("  <wwn>{}</wwn>\n", xml_escape(w)));
    }
    if let Some(s) = straddr {
        let (akind, el) =
            address(s, a.multifunction).ok_or_else(|| CmdError::msg("Invalid address."))?;
        if target.starts_with("vd") && !matches!(akind, "pci" | "ccw") {
            return Err(CmdError::msg(
                "expecting a pci:0000.00.00.00 or ccw:00.0.0000 address.",
            ));
        }
        if target.starts_with("sd") && !matches!(akind, "scsi" | "usb" | "sata") {
            return Err(CmdError::msg(
                "expecting a scsi:00.00.00 or usb:00.00 or sata:00.00.00 address.",
            ));
        }
        if target.starts_with("hd") && akind != "ide" {
            return Err(CmdError::msg("expecting an ide:00.00.00 address."));
        }
        x.push_str("  ");
        x.push_str(&el);
    }
    x.push_str("</disk>\n");
    Ok(x)
}

/// One `average,peak,burst,floor` rate of --inbound/--outbound
/// (virshParseRateStr); empty fields stay 0.
fn rate(s: &str) -> Result<[u64; 4], CmdError> {
    let toks: Vec<&str> = s.split(',').collect();
    if toks.len() > 4 {
        return Err(CmdError::msg(format!(
            "Rate string '{s}' has too many fields"
        )));
    }
    let mut r = [0u64; 4];
    for (i, (t, name)) in toks
        .iter()
        .zip(["average", "peak", "burst", "floor"])
        .enumerate()
    {
        if t.is_empty() {
            continue;
        }
        r[i] = t
            .parse()
            .map_err(|_| CmdError::msg(format!("field '{name}' is malformed")))?;
    }
    Ok(r)
}

/// The `<interface>` document attach-interface builds
/// (cmdAttachInterface), or virsh's error for the options.
pub fn interface_xml(a: &AttachInterfaceArgs) -> Result<String, CmdError> {
    let ty = a.r#type.get();
    let source = a.source.get();
    non_empty("type", Some(ty))?;
    non_empty("source", Some(source))?;
    let target = non_empty("target", a.target.as_deref())?;
    let mac = non_empty("mac", a.mac.as_deref())?;
    let script = non_empty("script", a.script.as_deref())?;
    let model = non_empty("model", a.model.as_deref())?;
    let alias = non_empty("alias", a.alias.as_deref())?;
    let inbound = non_empty("inbound", a.inbound.as_deref())?;
    let outbound = non_empty("outbound", a.outbound.as_deref())?;
    let source_mode = non_empty("source-mode", a.source_mode.as_deref())?;
    let unsupported =
        || CmdError::msg(format!("No support for {ty} in command 'attach-interface'"));
    // virDomainNetType's names; the ones attach-interface cannot build
    // are refused below with the same message.
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
    if !NET_TYPES.contains(&ty) {
        return Err(unsupported());
    }
    if let Some(m) = source_mode
        && m != "server"
        && m != "client"
    {
        return Err(CmdError::msg(format!("Invalid source mode: {m}")));
    }
    let inbound = inbound.map(rate).transpose()?;
    if let Some(r) = inbound
        && r[0] == 0
        && r[3] == 0
    {
        return Err(CmdError::msg(
            "either inbound average or floor is mandatory",
        ));
    }
    let outbound = outbound.map(rate).transpose()?;
    if let Some(r) = outbound {
        if r[0] == 0 {
            return Err(CmdError::msg("outbound average is mandatory"));
        }
        if r[3] != 0 {
            return Err(CmdError::msg("outbound floor is unsupported yet"));
        }
    }
    let managed = if a.managed { " managed='yes'" } else { "" };
    let mut x = format!("<interface type='{ty}'{managed}>\n");
    let src = xml_escape(source);
    match ty {
        "network" | "bridge" => x.push_str(&format!("  <source {ty}='{src}'/>\n")),
        "direct" => x.push_str(&format!("  <source dev='{src}'/>\n")),
        "hostdev" => {
            let (_, el) = address(&format!("pci:{source}"), false)
                .filter(|(k, _)| *k == "pci")
                .ok_or_else(|| {
                    CmdError::msg(format!(
                        "cannot parse pci address '{source}' for network interface"
                    ))
                })?;
            x.push_str(&format!("  <source>\n    {el}  </source>\n"));
        }
        "vhostuser" => {
            let m = source_mode.ok_or_else(|| CmdError::msg("source-mode is mandatory"))?;
            x.push_str(&format!(
                "  <source type='unix' path='{src}' mode='{m}'/>\n"
            ));
        }
        _ => return Err(unsupported()),
    }
    let mut child = |el: &str, attr: &str, v: Option<&str>| {
        if let Some(v) = v {
            x.push_str(&format!("  <{el} {attr}='{}'/>\n", xml_escape(v)));
        }
    };
    child("target", "dev", target);
    child("mac", "address", mac);
    child("script", "path", script);
    child("model", "type", model);
    child("alias", "name", alias);
    if inbound.is_some() || outbound.is_some() {
        x.push_str("  <bandwidth>\n");
        if let Some(r) = inbound {
            x.push_str("    <inbound");
            for (v, k) in r.iter().zip(["average", "peak", "burst", "floor"]) {
                if *v > 0 {
                    x.push_str(&format!(" {k}='{v}'"));
                }
            }
            x.push_str("/>\n");
        }
        if let Some(r) = outbound {
            x.push_str("    <outbound");
            for (v, k) in r.iter().zip(["average", "peak", "burst"]) {
                if *v > 0 {
                    x.push_str(&format!(" {k}='{v}'"));
                }
            }
            x.push_str("/>\n");
        }
        x.push_str("  </bandwidth>\n");
    }
    x.push_str("</interface>\n");
    Ok(x)
}

/// attach-disk and attach-interface: build, print (`--print-xml`) or
/// attach, with the command's own failure line.
pub async fn attach_built(
    ctl: &Ctl,
    key: &str,
    xml: String,
    imp: DevImpact,
    print_xml: bool,
    what: &str,
) -> CmdResult {
    if print_xml {
        ctl.print(&xml);
        return Ok(());
    }
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    send(ctl, &d.uuid, xml, imp.impact(d.id >= 0), DeviceOp::Attach)
        .await
        .map_err(|e| CmdError::ctx(format!("Failed to attach {}", what.to_lowercase()), e))?;
    ctl.extra(&format!("{what} attached successfully\n"));
    Ok(())
}

/// virMacAddrCompare: MAC addresses compared by value (case and leading
/// zeros do not matter), anything else as text.
fn mac_eq(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> Option<Vec<u8>> {
        let v: Vec<u8> = s
            .split(':')
            .map(|p| {
                if p.is_empty() || p.len() > 2 {
                    return None;
                }
                u8::from_str_radix(p, 16).ok()
            })
            .collect::<Option<_>>()?;
        (v.len() == 6).then_some(v)
    };
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// virshDomainDetachInterface's choice: the index (among all
/// `<interface>` elements) of the one to detach, or virsh's error.
pub fn pick_interface(
    root: &super::xml::Element,
    ty: &str,
    mac: Option<&str>,
) -> Result<usize, CmdError> {
    let all: Vec<&super::xml::Element> = root
        .child("devices")
        .into_iter()
        .flat_map(|d| d.children_named("interface"))
        .collect();
    let typed: Vec<usize> = (0..all.len())
        .filter(|i| all[*i].attr("type") == Some(ty))
        .collect();
    if typed.is_empty() {
        return Err(CmdError::msg(format!(
            "No interface found whose type is {ty}"
        )));
    }
    let Some(mac) = mac else {
        if typed.len() > 1 {
            return Err(CmdError::msg(format!(
                "Domain has {} interfaces. Please specify which one to detach using --mac",
                typed.len()
            )));
        }
        return Ok(typed[0]);
    };
    let mut found = None;
    for i in typed {
        if all[i]
            .child_attr("mac", &["address"])
            .is_some_and(|m| mac_eq(m, mac))
        {
            if found.is_some() {
                return Err(CmdError::msg(format!(
                    "Domain has multiple interfaces matching MAC address {mac}. You must use \
                     detach-device and specify the device pci address to remove it."
                )));
            }
            found = Some(i);
        }
    }
    found.ok_or_else(|| CmdError::msg(format!("No interface with MAC address {mac} was found")))
}

/// virshFindDisk: the index of the first `<disk>` whose target or source
/// (file, dev, dir, name) is `path`.
pub fn pick_disk(root: &super::xml::Element, path: &str) -> Result<usize, CmdError> {
    let disks: Vec<&super::xml::Element> = root
        .child("devices")
        .into_iter()
        .flat_map(|d| d.children_named("disk"))
        .collect();
    if disks.is_empty() {
        return Err(CmdError::msg("Failed to get disk information"));
    }
    disks
        .iter()
        .position(|d| {
            d.child_attr("target", &["dev"]) == Some(path)
                || d.child("source").is_some_and(|s| {
                    ["file", "dev", "dir", "name"]
                        .iter()
                        .any(|a| s.attr(a) == Some(path))
                })
        })
        .ok_or_else(|| {
            CmdError::msg(format!(
                "No disk found whose source path or target is {path}"
            ))
        })
}

/// The domain's XML document, live or inactive.
pub async fn domain_doc(ctl: &Ctl, uuid: &str, inactive: bool) -> Result<String, crate::Error> {
    let req = v1::GetXmlDescRequest {
        object: Some(by_uuid(uuid.to_owned())),
        inactive,
        ..Default::default()
    };
    Ok(ctl.conn.domain().get_xml_desc(req).await?.into_inner().xml)
}

fn parse_doc(doc: &str, what: &str) -> Result<super::xml::Element, CmdError> {
    super::xml::parse(doc).map_err(|_| CmdError::msg(format!("Failed to get {what} information")))
}

/// Why a detach-interface pass failed: virsh prints its own complaints
/// before its "Failed to detach interface" line, a driver's error after.
enum DetachFail {
    Vsh(CmdError),
    Driver(crate::Error),
}

impl From<CmdError> for DetachFail {
    fn from(e: CmdError) -> Self {
        DetachFail::Vsh(e)
    }
}

impl From<crate::Error> for DetachFail {
    fn from(e: crate::Error) -> Self {
        DetachFail::Driver(e)
    }
}

/// One pass of detach-interface over one document (virshDomainDetachInterface).
async fn detach_interface_in(
    ctl: &Ctl,
    uuid: &str,
    inactive: bool,
    imp: v1::Impact,
    ty: &str,
    mac: Option<&str>,
    print_xml: bool,
) -> Result<(), DetachFail> {
    let doc = domain_doc(ctl, uuid, inactive).await?;
    let root = parse_doc(&doc, "interface")?;
    let i = pick_interface(&root, ty, mac)?;
    let xml = super::xml::dump_device(&doc, "interface", i, &[]).map_err(CmdError::msg)?;
    if print_xml {
        ctl.print(&xml);
        return Ok(());
    }
    send(ctl, uuid, xml, imp, DeviceOp::Detach).await?;
    Ok(())
}

/// `detach-interface DOMAIN TYPE [--mac MAC]`: with `--config` (or
/// `--persistent`) from the inactive definition, and for the live guest
/// (or "current") from the live XML, as two requests like virsh.
pub async fn detach_interface(
    ctl: &Ctl,
    key: &str,
    ty: &str,
    mac: Option<&str>,
    imp: DevImpact,
    print_xml: bool,
) -> CmdResult {
    imp.check()?;
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let affect_config = imp.affects_config();
    let affect_live = imp.args.live || (imp.persistent && d.id >= 0);
    let run = async {
        non_empty("type", Some(ty))?;
        let mac = non_empty("mac", mac)?;
        if affect_config {
            let config_only = v1::Impact {
                config: true,
                current: imp.args.current,
                ..Default::default()
            };
            detach_interface_in(ctl, &d.uuid, true, config_only, ty, mac, print_xml).await?;
        }
        if affect_live || !affect_config {
            let live = v1::Impact {
                live: affect_live,
                current: imp.args.current,
                ..Default::default()
            };
            detach_interface_in(ctl, &d.uuid, false, live, ty, mac, print_xml).await?;
        }
        Ok::<(), DetachFail>(())
    };
    match run.await {
        Ok(()) if print_xml => Ok(()),
        Ok(()) => {
            ctl.extra("Interface detached successfully\n");
            Ok(())
        }
        Err(DetachFail::Driver(e)) => Err(CmdError::ctx("Failed to detach interface", e)),
        Err(DetachFail::Vsh(mut e)) => {
            e.lines.push("Failed to detach interface".to_owned());
            Err(e)
        }
    }
}

/// `detach-disk DOMAIN TARGET`: the disk from the live XML, or from the
/// inactive one when only the definition is affected.
pub async fn detach_disk(
    ctl: &Ctl,
    key: &str,
    target: &str,
    imp: DevImpact,
    print_xml: bool,
) -> CmdResult {
    imp.check()?;
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    non_empty("target", Some(target))?;
    let config_only = imp.affects_config() && !imp.args.live;
    let doc = domain_doc(ctl, &d.uuid, config_only).await?;
    let root = parse_doc(&doc, "disk")?;
    let i = pick_disk(&root, target)?;
    let xml = super::xml::dump_device(&doc, "disk", i, &["backingStore"]).map_err(CmdError::msg)?;
    if print_xml {
        ctl.print(&xml);
        return Ok(());
    }
    send(ctl, &d.uuid, xml, imp.impact(d.id >= 0), DeviceOp::Detach)
        .await
        .map_err(|e| CmdError::ctx("Failed to detach disk", e))?;
    ctl.extra("Disk detached successfully\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vsh::cli::{Cli, Command, DomainCmd};
    use clap::Parser;

    fn cmd(args: &[&str]) -> DomainCmd {
        let cli = Cli::try_parse_from(std::iter::once("vsh").chain(args.iter().copied()))
            .expect("arguments parse");
        match cli.command {
            Command::Domain(c) => c,
            other => panic!("not a domain command: {other:?}"),
        }
    }

    fn disk(args: &[&str]) -> Result<String, String> {
        let mut argv = vec!["attach-disk", "vm"];
        argv.extend_from_slice(args);
        match cmd(&argv) {
            DomainCmd::AttachDisk(a) => disk_xml(&a).map_err(|e| e.render()),
            other => panic!("{other:?}"),
        }
    }

    fn iface(args: &[&str]) -> Result<String, String> {
        let mut argv = vec!["attach-interface", "vm"];
        argv.extend_from_slice(args);
        match cmd(&argv) {
            DomainCmd::AttachInterface(a) => interface_xml(&a).map_err(|e| e.render()),
            other => panic!("{other:?}"),
        }
    }

    // Expected documents are `virsh -c test:///default attach-… --print-xml`
    // output of libvirt 11.3.

    #[test]
    fn interface_bridge_with_target_mac_model() {
        assert_eq!(
            iface(&[
                "bridge",
                "br0",
                "--mac",
                "52:54:00:aa:bb:cc",
                "--model",
                "virtio",
                "--target",
                "vnet5"
            ])
            .expect("built"),
            "<interface type='bridge'>\n  <source bridge='br0'/>\n  <target dev='vnet5'/>\n  \
             <mac address='52:54:00:aa:bb:cc'/>\n  <model type='virtio'/>\n</interface>\n"
        );
    }

    #[test]
    fn interface_network_named_options_and_bandwidth() {
        assert_eq!(
            iface(&[
                "--type",
                "network",
                "--source",
                "default",
                "--managed",
                "--inbound",
                "100,200,300,50",
                "--outbound",
                "10,,30",
                "--alias",
                "ua-x"
            ])
            .expect("built"),
            "<interface type='network' managed='yes'>\n  <source network='default'/>\n  \
             <alias name='ua-x'/>\n  <bandwidth>\n    \
             <inbound average='100' peak='200' burst='300' floor='50'/>\n    \
             <outbound average='10' burst='30'/>\n  </bandwidth>\n</interface>\n"
        );
    }

    #[test]
    fn interface_direct_ignores_source_mode_vhostuser_needs_it() {
        assert_eq!(
            iface(&["direct", "eth0", "--source-mode", "client"]).expect("built"),
            "<interface type='direct'>\n  <source dev='eth0'/>\n</interface>\n"
        );
        assert_eq!(
            iface(&["vhostuser", "/tmp/s", "--source-mode", "server"]).expect("built"),
            "<interface type='vhostuser'>\n  <source type='unix' path='/tmp/s' mode='server'/>\n\
             </interface>\n"
        );
        assert_eq!(
            iface(&["vhostuser", "/tmp/s"]).expect_err("refused"),
            "error: source-mode is mandatory\n"
        );
        assert_eq!(
            iface(&["network", "n", "--source-mode", "x"]).expect_err("refused"),
            "error: Invalid source mode: x\n"
        );
    }

    #[test]
    fn interface_hostdev_takes_a_pci_address() {
        assert_eq!(
            iface(&["hostdev", "0000:03:00.1"]).expect("built"),
            "<interface type='hostdev'>\n  <source>\n    <address type='pci' domain='0x0000' \
             bus='0x03' slot='0x00' function='0x1'/>\n  </source>\n</interface>\n"
        );
        assert_eq!(
            iface(&["hostdev", "03:00.1"]).expect_err("refused"),
            "error: cannot parse pci address '03:00.1' for network interface\n"
        );
    }

    #[test]
    fn interface_types_virsh_cannot_build() {
        // virsh 11.3 has no XML for user/ethernet/… in attach-interface.
        for ty in ["user", "ethernet", "mcast", "null"] {
            assert_eq!(
                iface(&[ty, "x"]).expect_err("refused"),
                format!("error: No support for {ty} in command 'attach-interface'\n")
            );
        }
        assert_eq!(
            iface(&["bogus", "x"]).expect_err("refused"),
            "error: No support for bogus in command 'attach-interface'\n"
        );
    }

    #[test]
    fn interface_rate_errors() {
        assert_eq!(
            iface(&["network", "d", "--inbound", "0"]).expect_err("refused"),
            "error: either inbound average or floor is mandatory\n"
        );
        assert_eq!(
            iface(&["network", "d", "--inbound", "a"]).expect_err("refused"),
            "error: field 'average' is malformed\n"
        );
        assert_eq!(
            iface(&["network", "d", "--outbound", "1,2,3,4"]).expect_err("refused"),
            "error: outbound floor is unsupported yet\n"
        );
        assert_eq!(
            iface(&["network", "d", "--outbound", "1,2,3,4,5"]).expect_err("refused"),
            "error: Rate string '1,2,3,4,5' has too many fields\n"
        );
    }

    #[test]
    fn interface_values_are_escaped() {
        let x = iface(&["bridge", "a'b&c"]).expect("built");
        assert!(x.contains("<source bridge='a&apos;b&amp;c'/>"), "{x}");
        assert!(crate::vsh::xml::parse(&x).is_ok());
    }

    #[test]
    fn disk_file_with_driver_cache_readonly() {
        assert_eq!(
            disk(&[
                "/tmp/x.raw",
                "vdb",
                "--targetbus",
                "virtio",
                "--driver",
                "qemu",
                "--subdriver",
                "raw",
                "--cache",
                "none",
                "--mode",
                "readonly"
            ])
            .expect("built"),
            "<disk type='file'>\n  <driver name='qemu' type='raw' cache='none'/>\n  \
             <source file='/tmp/x.raw'/>\n  <target dev='vdb' bus='virtio'/>\n  <readonly/>\n\
             </disk>\n"
        );
    }

    #[test]
    fn disk_all_the_small_options() {
        assert_eq!(
            disk(&[
                "--source",
                "/tmp/x.raw",
                "--target",
                "vdb",
                "--serial",
                "abc",
                "--wwn",
                "0x5000c50015ea71ac",
                "--alias",
                "ua-d",
                "--io",
                "native",
                "--iothread",
                "1",
                "--type",
                "cdrom",
                "--rawio",
                "--shareable"
            ])
            .expect("built"),
            "<disk type='file' device='cdrom' rawio='yes'>\n  <driver iothread='1' io='native'/>\n  \
             <source file='/tmp/x.raw'/>\n  <target dev='vdb'/>\n  <shareable/>\n  \
             <serial>abc</serial>\n  <alias name='ua-d'/>\n  <wwn>0x5000c50015ea71ac</wwn>\n</disk>\n"
        );
        // An empty source is allowed (an empty CD-ROM drive).
        assert_eq!(
            disk(&["", "hdc"]).expect("built"),
            "<disk type='file'>\n  <source file=''/>\n  <target dev='hdc'/>\n</disk>\n"
        );
    }

    #[test]
    fn disk_block_device_source_becomes_type_block() {
        let Some(dev) = ["/dev/loop0", "/dev/sda", "/dev/vda", "/dev/nvme0n1"]
            .into_iter()
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device()))
        else {
            eprintln!("skipped: no block device node to stat");
            return;
        };
        assert!(
            disk(&[dev, "vdb"])
                .expect("built")
                .starts_with(&format!("<disk type='block'>\n  <source dev='{dev}'/>"))
        );
        // --driver file keeps it a file, as in virsh.
        assert!(
            disk(&[dev, "vdb", "--driver", "file"])
                .expect("built")
                .starts_with("<disk type='file'>")
        );
    }

    #[test]
    fn disk_network_source() {
        assert_eq!(
            disk(&[
                "vol",
                "vdb",
                "--source-protocol",
                "nbd",
                "--source-host-name",
                "h:10809"
            ])
            .expect("built"),
            "<disk type='network'>\n  <source protocol='nbd' name='vol'>\n    \
             <host name='h' port='10809'/>\n  </source>\n  <target dev='vdb'/>\n</disk>\n"
        );
        assert_eq!(
            disk(&["vol", "vdb", "--source-host-name", "h"]).expect_err("refused"),
            "error: Option --source-protocol is required by option --source-host-name\n"
        );
        assert_eq!(
            disk(&["vol", "vdb", "--sourcetype", "network"]).expect_err("refused"),
            "error: --source-protocol option requires --sourcetype network\n"
        );
    }

    #[test]
    fn disk_addresses_and_their_errors() {
        let addr = |target: &str, a: &str| {
            disk(&["/x", target, "--address", a]).map(|x| {
                x.lines()
                    .find(|l| l.contains("<address"))
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
        };
        assert_eq!(
            addr("sdb", "scsi:0.0.1").expect("built"),
            "<address type='drive' controller='0' bus='0' unit='1'/>"
        );
        assert_eq!(
            addr("vdb", "ccw:0.0.1234").expect("built"),
            "<address type='ccw' cssid='0x00' ssid='0x0' devno='0x1234'/>"
        );
        assert_eq!(
            addr("sdb", "usb:1.2").expect("built"),
            "<address type='usb' bus='1' port='2'/>"
        );
        assert_eq!(
            addr("vdb", "scsi:0.0.1").expect_err("refused"),
            "error: expecting a pci:0000.00.00.00 or ccw:00.0.0000 address.\n"
        );
        assert_eq!(
            addr("hdb", "pci:0.0.1.0").expect_err("refused"),
            "error: expecting an ide:00.00.00 address.\n"
        );
        assert_eq!(
            addr("vdb", "bogus").expect_err("refused"),
            "error: Invalid address.\n"
        );
        assert_eq!(
            addr("vdb", "pci:0.0").expect_err("refused"),
            "error: Invalid address.\n"
        );
        let multi = disk(&[
            "/x",
            "vdb",
            "--address",
            "pci:0000.00.1f.0",
            "--multifunction",
        ])
        .expect("built");
        assert!(multi.contains(
            "<address type='pci' domain='0x0000' bus='0x00' slot='0x1f' function='0x0' \
             multifunction='on'/>"
        ));
    }

    #[test]
    fn empty_option_values_are_refused_like_virsh() {
        assert_eq!(
            disk(&["/x", ""]).expect_err("refused"),
            "error: Failed to get option 'target': Option argument is empty\n"
        );
        assert_eq!(
            disk(&["/x", "vdb", "--driver", ""]).expect_err("refused"),
            "error: Failed to get option 'driver': Option argument is empty\n"
        );
        assert_eq!(
            iface(&["bridge", ""]).expect_err("refused"),
            "error: Failed to get option 'source': Option argument is empty\n"
        );
    }

    #[test]
    fn disk_option_errors() {
        assert_eq!(
            disk(&["/x", "vdb", "--mode", "bogus"]).expect_err("refused"),
            "error: No support for bogus in command 'attach-disk'\n"
        );
        assert_eq!(
            disk(&["/x", "vdb", "--sourcetype", "foo"]).expect_err("refused"),
            "error: Unknown source type: 'foo'\n"
        );
        assert_eq!(
            disk(&["/x", "vdb", "--wwn", "12"]).expect_err("refused"),
            "error: internal error: Malformed wwn: 12\n"
        );
    }

    #[test]
    fn impact_flags() {
        let args = |config, live, current| ImpactArgs {
            config,
            live,
            current,
        };
        let p = DevImpact {
            args: args(false, false, false),
            persistent: true,
        };
        assert_eq!(
            p.impact(true),
            v1::Impact {
                config: true,
                live: true,
                current: false
            }
        );
        assert_eq!(
            p.impact(false),
            v1::Impact {
                config: true,
                live: false,
                current: false
            }
        );
        let bad = DevImpact {
            args: args(false, false, true),
            persistent: true,
        };
        assert_eq!(
            bad.check().expect_err("refused").render(),
            "error: Options --persistent and --current are mutually exclusive\n"
        );
    }

    const DOM: &str = "<domain type='kvm'>\n  <devices>\n    \
        <disk type='file' device='disk'>\n      <source file='/img/a.qcow2'/>\n      \
        <target dev='vda' bus='virtio'/>\n    </disk>\n    \
        <interface type='user'>\n      <mac address='52:54:00:00:00:01'/>\n    </interface>\n    \
        <interface type='bridge'>\n      <mac address='52:54:00:00:00:02'/>\n      \
        <source bridge='br0'/>\n    </interface>\n    \
        <interface type='bridge'>\n      <mac address='52:54:00:00:00:03'/>\n      \
        <source bridge='br1'/>\n    </interface>\n  </devices>\n</domain>\n";

    #[test]
    fn detach_interface_picks_like_virsh() {
        let root = crate::vsh::xml::parse(DOM).expect("xml");
        assert_eq!(pick_interface(&root, "user", None).expect("one"), 0);
        assert_eq!(
            pick_interface(&root, "bridge", None)
                .expect_err("refused")
                .render(),
            "error: Domain has 2 interfaces. Please specify which one to detach using --mac\n"
        );
        // Compared as MAC addresses: case and leading zeros do not matter.
        assert_eq!(
            pick_interface(&root, "bridge", Some("52:54:0:0:0:3")).expect("found"),
            2
        );
        assert_eq!(
            pick_interface(&root, "bridge", Some("52:54:00:00:00:01"))
                .expect_err("refused")
                .render(),
            "error: No interface with MAC address 52:54:00:00:00:01 was found\n"
        );
        assert_eq!(
            pick_interface(&root, "network", None)
                .expect_err("refused")
                .render(),
            "error: No interface found whose type is network\n"
        );
        let xml = crate::vsh::xml::dump_device(DOM, "interface", 2, &[]).expect("dump");
        assert_eq!(
            xml,
            "<interface type=\"bridge\">\n      <mac address=\"52:54:00:00:00:03\"/>\n      \
             <source bridge=\"br1\"/>\n    </interface>"
        );
    }

    #[test]
    fn detach_disk_finds_target_or_source() {
        let root = crate::vsh::xml::parse(DOM).expect("xml");
        assert_eq!(pick_disk(&root, "vda").expect("by target"), 0);
        assert_eq!(pick_disk(&root, "/img/a.qcow2").expect("by source"), 0);
        assert_eq!(
            pick_disk(&root, "vdz").expect_err("refused").render(),
            "error: No disk found whose source path or target is vdz\n"
        );
        let empty = crate::vsh::xml::parse("<domain><devices/></domain>").expect("xml");
        assert_eq!(
            pick_disk(&empty, "vda").expect_err("refused").render(),
            "error: Failed to get disk information\n"
        );
    }
}
