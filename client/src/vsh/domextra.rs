//! Domain tuning, devices and statistics (tools/virsh-domain.c,
//! virsh-domain-monitor.c): setmem, setvcpus, attach-device,
//! detach-device, domblkstat, domifstat, dommemstat, domifaddr.

use virtmesh_proto::v1;

use super::domain::lookup;
use super::util::read_file;
use super::{CmdError, CmdResult, Ctl};
use crate::lookup::{Kinds, by_uuid};

/// virsh's `--config/--live/--current` triple; `--current` excludes the
/// other two.
pub fn impact(config: bool, live: bool, current: bool) -> Result<v1::Impact, CmdError> {
    if current && live {
        return Err(CmdError::msg(
            "Options --current and --live are mutually exclusive",
        ));
    }
    if current && config {
        return Err(CmdError::msg(
            "Options --current and --config are mutually exclusive",
        ));
    }
    Ok(v1::Impact {
        live,
        config,
        current,
    })
}

/// vshCommandOptScaledInt: a number with an optional unit suffix, in bytes.
/// `default_scale` applies to a bare number (virsh uses KiB for memory).
pub fn parse_scaled(s: &str, default_scale: u64) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let scale: u64 = match unit {
        "" => default_scale,
        "b" | "B" | "byte" | "bytes" => 1,
        "KB" => 1000,
        "k" | "K" | "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "m" | "M" | "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "g" | "G" | "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "t" | "T" | "TiB" => 1 << 40,
        "PB" => 1_000_000_000_000_000,
        "p" | "P" | "PiB" => 1 << 50,
        "EB" => 1_000_000_000_000_000_000,
        "e" | "E" | "EiB" => 1 << 60,
        _ => return None,
    };
    n.checked_mul(scale)
}

pub async fn setmem(ctl: &Ctl, key: &str, size: &str, imp: v1::Impact) -> CmdResult {
    let bytes = parse_scaled(size, 1024).ok_or_else(|| {
        CmdError::msg(format!(
            "Numeric value '{size}' for <size> option is malformed or out of range"
        ))
    })?;
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let req = v1::SetMemoryRequest {
        domain: Some(by_uuid(d.uuid)),
        memory_kib: bytes.div_ceil(1024),
        impact: Some(imp),
        maximum: false,
    };
    ctl.conn
        .domain()
        .set_memory(req)
        .await
        .map_err(crate::Error::from)?;
    Ok(())
}

pub async fn setvcpus(
    ctl: &Ctl,
    key: &str,
    count: u32,
    imp: v1::Impact,
    maximum: bool,
    guest: bool,
) -> CmdResult {
    if maximum && !imp.config {
        return Err(CmdError::msg(
            "Option --config is required by option --maximum",
        ));
    }
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let req = v1::SetVcpusRequest {
        domain: Some(by_uuid(d.uuid)),
        count,
        impact: Some(imp),
        maximum,
        guest,
    };
    ctl.conn
        .domain()
        .set_vcpus(req)
        .await
        .map_err(crate::Error::from)?;
    Ok(())
}

/// attach-device (`attach == true`) and detach-device.
pub async fn device(
    ctl: &Ctl,
    key: &str,
    file: &str,
    imp: super::devices::DevImpact,
    attach: bool,
) -> CmdResult {
    imp.check()?;
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let xml = read_file(file).map_err(CmdError::msg)?;
    let verb = if attach { "attach" } else { "detach" };
    let op = if attach {
        super::devices::DeviceOp::Attach
    } else {
        super::devices::DeviceOp::Detach
    };
    super::devices::send(ctl, &d.uuid, xml, imp.impact(d.id >= 0), op)
        .await
        .map_err(|e| CmdError::ctx(format!("Failed to {verb} device from {file}"), e))?;
    ctl.extra(&format!("Device {verb}ed successfully\n"));
    Ok(())
}

/// `domblkstat DOMAIN DEV`: libvirt's -1 means "not supported", not shown.
pub fn blkstat_text(dev: &str, s: &v1::BlockStatsReply) -> String {
    let fields = [
        ("rd_req", s.rd_req),
        ("rd_bytes", s.rd_bytes),
        ("wr_req", s.wr_req),
        ("wr_bytes", s.wr_bytes),
        ("errs", s.errs),
    ];
    fields
        .iter()
        .filter(|(_, v)| *v >= 0)
        .map(|(k, v)| format!("{dev} {k} {v}\n"))
        .collect()
}

/// `domifstat DOMAIN IFACE`.
pub fn ifstat_text(iface: &str, s: &v1::InterfaceStatsReply) -> String {
    let fields = [
        ("rx_bytes", s.rx_bytes),
        ("rx_packets", s.rx_packets),
        ("rx_errs", s.rx_errs),
        ("rx_drop", s.rx_drop),
        ("tx_bytes", s.tx_bytes),
        ("tx_packets", s.tx_packets),
        ("tx_errs", s.tx_errs),
        ("tx_drop", s.tx_drop),
    ];
    fields
        .iter()
        .filter(|(_, v)| *v >= 0)
        .map(|(k, v)| format!("{iface} {k} {v}\n"))
        .collect()
}

/// `dommemstat`. virsh prints the stats in the order the driver returns
/// them; the contract carries a map, so vsh uses the order libvirt's test
/// driver returns, which is the reference output.
pub fn memstat_text(s: &v1::MemoryStatsReply) -> String {
    const ORDER: &[&str] = &[
        "actual",
        "swap_in",
        "swap_out",
        "major_fault",
        "minor_fault",
        "unused",
        "available",
        "usable",
        "last_update",
        "disk_caches",
        "hugetlb_pgalloc",
        "hugetlb_pgfail",
        "rss",
    ];
    let mut out = String::new();
    for tag in ORDER {
        if let Some(v) = s.stats.get(*tag) {
            out.push_str(&format!("{tag} {v}\n"));
        }
    }
    out
}

/// `domifaddr`: virsh's fixed-width layout (printf, not vshTable).
pub fn ifaddr_text(ifaces: &[v1::DomainInterface], full: bool, header: bool) -> String {
    let mut s = String::new();
    if header {
        s.push_str(&format!(
            " {:<10} {:<20} {:<8}     {}\n{}\n",
            "Name",
            "MAC address",
            "Protocol",
            "Address",
            "-".repeat(79)
        ));
    }
    for iface in ifaces {
        let hwaddr = if iface.hwaddr.is_empty() {
            "N/A"
        } else {
            iface.hwaddr.as_str()
        };
        if iface.addrs.is_empty() {
            s.push_str(&format!(
                " {:<10} {:<17}    {}\n",
                iface.name, hwaddr, "N/A"
            ));
            continue;
        }
        for (j, a) in iface.addrs.iter().enumerate() {
            let ip = format!("{:<12} {}/{}", a.family, a.address, a.prefix);
            let (name, mac) = if j > 0 && !full {
                ("-", "-")
            } else {
                (iface.name.as_str(), hwaddr)
            };
            s.push_str(&format!(" {name:<10} {mac:<17}    {ip}\n"));
        }
    }
    s
}

pub async fn domblkstat(ctl: &Ctl, key: &str, dev: &str) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let req = v1::BlockStatsRequest {
        domain: Some(by_uuid(d.uuid)),
        disk: dev.to_owned(),
    };
    let s = ctl
        .conn
        .domain()
        .block_stats(req)
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to get block stats for domain '{key}' device '{dev}'"),
                crate::Error::from(e),
            )
        })?
        .into_inner();
    ctl.print(&blkstat_text(dev, &s));
    Ok(())
}

pub async fn domifstat(ctl: &Ctl, key: &str, iface: &str) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let req = v1::InterfaceStatsRequest {
        domain: Some(by_uuid(d.uuid)),
        interface: iface.to_owned(),
    };
    let s = ctl
        .conn
        .domain()
        .interface_stats(req)
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to get interface stats {key} {iface}"),
                crate::Error::from(e),
            )
        })?
        .into_inner();
    ctl.print(&ifstat_text(iface, &s));
    Ok(())
}

pub async fn dommemstat(ctl: &Ctl, key: &str) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let s = ctl
        .conn
        .domain()
        .memory_stats(by_uuid(d.uuid))
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to get memory statistics for domain {key}"),
                crate::Error::from(e),
            )
        })?
        .into_inner();
    ctl.print(&memstat_text(&s));
    Ok(())
}

/// virsh's `--source` word.
pub fn address_source(s: Option<&str>) -> Result<v1::AddressSource, CmdError> {
    match s.unwrap_or("lease") {
        "lease" => Ok(v1::AddressSource::Lease),
        "agent" => Ok(v1::AddressSource::Agent),
        "arp" => Ok(v1::AddressSource::Arp),
        other => Err(CmdError::msg(format!("Unknown data source '{other}'"))),
    }
}

pub async fn domifaddr(
    ctl: &Ctl,
    key: &str,
    iface: Option<&str>,
    full: bool,
    source: Option<&str>,
) -> CmdResult {
    let source = address_source(source)?;
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let req = v1::InterfaceAddressesRequest {
        domain: Some(by_uuid(d.uuid)),
        source: source as i32,
    };
    let reply = ctl
        .conn
        .domain()
        .interface_addresses(req)
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to query for interfaces addresses for domain '{key}'"),
                crate::Error::from(e),
            )
        })?
        .into_inner();
    let ifaces: Vec<v1::DomainInterface> = reply
        .interfaces
        .into_iter()
        .filter(|i| iface.is_none_or(|want| i.name == want || i.hwaddr.eq_ignore_ascii_case(want)))
        .collect();
    ctl.print(&ifaddr_text(&ifaces, full, !ctl.quiet));
    Ok(())
}

/// `desc`: show or set the description (or `--title`). virsh prints
/// these messages without a newline and lets its after-command blank line
/// end them.
pub async fn desc(
    ctl: &Ctl,
    key: &str,
    title: bool,
    text: Option<&str>,
    imp: v1::Impact,
) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let (ty, what) = if title {
        (v1::MetadataType::Title, "title")
    } else {
        (v1::MetadataType::Description, "description")
    };
    let mut c = ctl.conn.domain();
    if let Some(text) = text {
        let req = v1::SetMetadataRequest {
            domain: Some(by_uuid(d.uuid)),
            r#type: ty as i32,
            value: text.to_owned(),
            impact: Some(imp),
            ..Default::default()
        };
        c.set_metadata(req).await.map_err(|e| {
            CmdError::ctx(
                format!("Failed to set new domain {what}"),
                crate::Error::from(e),
            )
        })?;
        ctl.extra(&format!("Domain {what} updated successfully"));
        return Ok(());
    }
    let req = v1::GetMetadataRequest {
        domain: Some(by_uuid(d.uuid)),
        r#type: ty as i32,
        uri: String::new(),
        impact: Some(imp),
    };
    let value = match c.get_metadata(req).await {
        Ok(r) => r.into_inner().value,
        Err(status) => {
            let e = crate::Error::from(status);
            if e.code() != crate::ErrorCode::NoDomainMetadata {
                return Err(e.into());
            }
            String::new()
        }
    };
    if value.is_empty() {
        ctl.extra(&format!("No {what} for domain: {}", d.name));
    } else {
        ctl.print(&value);
    }
    Ok(())
}

/// vshGetTypedParamValue: how virsh prints one typed parameter.
pub fn typed_param_value(p: &v1::TypedParam) -> String {
    use v1::typed_param::Value;
    match &p.value {
        Some(Value::Int(v)) => v.to_string(),
        Some(Value::Uint(v)) => v.to_string(),
        Some(Value::Double(v)) => format!("{v:.6}"),
        Some(Value::Boolean(v)) => if *v { "yes" } else { "no" }.to_owned(),
        Some(Value::String(v)) => v.clone(),
        None => String::new(),
    }
}

/// `domstats`: one block per domain, blocks separated by a blank line.
pub fn domstats_text(records: &[v1::DomainStats]) -> String {
    let blocks: Vec<String> = records
        .iter()
        .map(|r| {
            let mut s = format!("Domain: '{}'\n", r.name);
            for p in &r.params {
                s.push_str(&format!("  {}={}\n", p.field, typed_param_value(p)));
            }
            s
        })
        .collect();
    blocks.join("\n")
}

pub async fn domstats(
    ctl: &Ctl,
    doms: &[String],
    groups: Vec<String>,
    filter: v1::ListDomainsRequest,
) -> CmdResult {
    // Named domains must exist (virsh looks each up first); their stats
    // come back in the order given.
    let mut wanted = Vec::with_capacity(doms.len());
    for key in doms {
        wanted.push(lookup(ctl, key, Kinds::DOMAIN).await?.uuid);
    }
    let req = v1::GetAllStatsRequest {
        filter: Some(if wanted.is_empty() {
            filter
        } else {
            v1::ListDomainsRequest::default()
        }),
        groups,
    };
    let resp = ctl
        .conn
        .domain()
        .get_all_stats(req)
        .await
        .map_err(crate::Error::from)?;
    let mut records = crate::connection::collect(resp).await?;
    if !wanted.is_empty() {
        records = wanted
            .iter()
            .filter_map(|u| records.iter().find(|r| &r.uuid == u).cloned())
            .collect();
    }
    ctl.print(&domstats_text(&records));
    Ok(())
}

/// `domblklist [--details]` from a domain's XML.
pub fn blklist_text(root: &super::xml::Element, details: bool, header: bool) -> String {
    let cols: &[&str] = if details {
        &["Type", "Device", "Target", "Source"]
    } else {
        &["Target", "Source"]
    };
    let mut t = super::table::Table::new(cols);
    let disks = root
        .child("devices")
        .into_iter()
        .flat_map(|d| d.children_named("disk"));
    for disk in disks {
        let target = disk.child_attr("target", &["dev"]).unwrap_or_default();
        let source = disk
            .child_attr("source", &["file", "dev", "dir", "name", "volume", "path"])
            .unwrap_or("-");
        if details {
            t.push([
                disk.attr("type").unwrap_or_default(),
                disk.attr("device").unwrap_or_default(),
                target,
                source,
            ]);
        } else {
            t.push([target, source]);
        }
    }
    t.render(header)
}

/// `domiflist` from a domain's XML.
pub fn iflist_text(root: &super::xml::Element, header: bool) -> String {
    let mut t = super::table::Table::new(&["Interface", "Type", "Source", "Model", "MAC"]);
    let ifaces = root
        .child("devices")
        .into_iter()
        .flat_map(|d| d.children_named("interface"));
    for i in ifaces {
        t.push([
            i.child_attr("target", &["dev"]).unwrap_or("-"),
            i.attr("type").unwrap_or_default(),
            i.child_attr("source", &["bridge", "dev", "network", "name", "path"])
                .unwrap_or("-"),
            i.child_attr("model", &["type"]).unwrap_or("-"),
            i.child_attr("mac", &["address"]).unwrap_or("-"),
        ]);
    }
    t.render(header)
}

async fn domain_xml(ctl: &Ctl, key: &str, inactive: bool) -> Result<super::xml::Element, CmdError> {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    let req = v1::GetXmlDescRequest {
        object: Some(by_uuid(d.uuid)),
        inactive,
        ..Default::default()
    };
    let xml = ctl
        .conn
        .domain()
        .get_xml_desc(req)
        .await
        .map_err(crate::Error::from)?
        .into_inner()
        .xml;
    super::xml::parse(&xml).map_err(|e| CmdError::msg(format!("failed to parse domain XML: {e}")))
}

pub async fn domblklist(ctl: &Ctl, key: &str, inactive: bool, details: bool) -> CmdResult {
    let root = domain_xml(ctl, key, inactive).await?;
    ctl.print(&blklist_text(&root, details, !ctl.quiet));
    Ok(())
}

pub async fn domiflist(ctl: &Ctl, key: &str, inactive: bool) -> CmdResult {
    let root = domain_xml(ctl, key, inactive).await?;
    ctl.print(&iflist_text(&root, !ctl.quiet));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domstats_matches_virsh() {
        let rec = |name: &str, state: i64| v1::DomainStats {
            uuid: String::new(),
            name: name.into(),
            params: vec![
                v1::TypedParam {
                    field: "state.state".into(),
                    value: Some(v1::typed_param::Value::Int(state)),
                },
                v1::TypedParam {
                    field: "state.reason".into(),
                    value: Some(v1::typed_param::Value::Int(0)),
                },
            ],
        };
        // virsh -c test:///default "define d.xml; domstats --state"
        assert_eq!(
            domstats_text(&[rec("vm1", 5), rec("test", 1)]),
            "Domain: 'vm1'\n  state.state=5\n  state.reason=0\n\n\
             Domain: 'test'\n  state.state=1\n  state.reason=0\n"
        );
        let d = v1::TypedParam {
            field: "x".into(),
            value: Some(v1::typed_param::Value::Double(0.5)),
        };
        assert_eq!(typed_param_value(&d), "0.500000");
    }

    const TEST_XML: &str = "<domain type='test' id='1'>\n  <name>test</name>\n  <devices>\n    \
        <disk type='file' device='disk'>\n      <source file='/guest/diskimage1'/>\n      \
        <target dev='vda' bus='virtio'/>\n    </disk>\n    <interface type='network'>\n      \
        <mac address='aa:bb:cc:dd:ee:ff'/>\n      <source network='default'/>\n      \
        <target dev='testnet0'/>\n    </interface>\n  </devices>\n</domain>\n";

    #[test]
    fn blklist_and_iflist_match_virsh() {
        let root = crate::vsh::xml::parse(TEST_XML).expect("valid XML");
        // `virsh -c test:///default domblklist test [--details]`, `domiflist test`
        assert_eq!(
            blklist_text(&root, false, true),
            " Target   Source\n-----------------------------\n vda      /guest/diskimage1\n"
        );
        assert_eq!(
            blklist_text(&root, true, true),
            " Type   Device   Target   Source\n---------------------------------------------\n \
             file   disk     vda      /guest/diskimage1\n"
        );
        assert_eq!(
            iflist_text(&root, true),
            " Interface   Type      Source    Model   MAC\n\
             ------------------------------------------------------------\n \
             testnet0    network   default   -       aa:bb:cc:dd:ee:ff\n"
        );
    }

    #[test]
    fn scaled_sizes() {
        assert_eq!(parse_scaled("1048576", 1024), Some(1_073_741_824));
        assert_eq!(parse_scaled("1G", 1024), Some(1_073_741_824));
        assert_eq!(parse_scaled("512M", 1024), Some(536_870_912));
        assert_eq!(parse_scaled("1GB", 1024), Some(1_000_000_000));
        assert_eq!(parse_scaled("10b", 1024), Some(10));
        assert_eq!(parse_scaled("1Q", 1024), None);
        assert_eq!(parse_scaled("x", 1024), None);
    }

    #[test]
    fn impact_rules() {
        assert!(impact(true, true, false).is_ok());
        assert!(impact(false, true, true).is_err());
        assert!(impact(true, false, true).is_err());
    }

    #[test]
    fn blkstat_matches_virsh() {
        let s = v1::BlockStatsReply {
            rd_req: 179_565_429_144_461,
            rd_bytes: 89_782_714_572_230,
            wr_req: 59_855_143_048_153,
            wr_bytes: 44_891_357_286_115,
            errs: 897_827_145,
        };
        // `virsh -c test:///default domblkstat test vda`
        assert_eq!(
            blkstat_text("vda", &s),
            "vda rd_req 179565429144461\nvda rd_bytes 89782714572230\nvda wr_req 59855143048153\n\
             vda wr_bytes 44891357286115\nvda errs 897827145\n"
        );
        let partial = v1::BlockStatsReply { errs: -1, ..s };
        assert!(!blkstat_text("vda", &partial).contains("errs"));
    }

    #[test]
    fn ifstat_matches_virsh() {
        let s = v1::InterfaceStatsReply {
            rx_bytes: 179_565_429_144_461,
            rx_packets: 17_956_542_914_446,
            rx_errs: 1_795_654_291,
            rx_drop: 897_827_145,
            tx_bytes: 89_782_714_572_230,
            tx_packets: 16_324_129_922_223,
            tx_errs: 598_551_430,
            tx_drop: 448_913_572,
        };
        // `virsh -c test:///default domifstat test testnet0`
        assert_eq!(
            ifstat_text("testnet0", &s),
            "testnet0 rx_bytes 179565429144461\ntestnet0 rx_packets 17956542914446\n\
             testnet0 rx_errs 1795654291\ntestnet0 rx_drop 897827145\n\
             testnet0 tx_bytes 89782714572230\ntestnet0 tx_packets 16324129922223\n\
             testnet0 tx_errs 598551430\ntestnet0 tx_drop 448913572\n"
        );
    }

    #[test]
    fn ifaddr_matches_virsh() {
        let i = v1::DomainInterface {
            name: "testnet0".into(),
            hwaddr: "aa:bb:cc:dd:ee:ff".into(),
            addrs: vec![v1::IpAddress {
                family: "ipv4".into(),
                address: "192.168.122.3".into(),
                prefix: 24,
            }],
        };
        // `virsh -c test:///default domifaddr test`
        assert_eq!(
            ifaddr_text(std::slice::from_ref(&i), false, true),
            " Name       MAC address          Protocol     Address\n\
             -------------------------------------------------------------------------------\n \
             testnet0   aa:bb:cc:dd:ee:ff    ipv4         192.168.122.3/24\n"
        );
        let mut two = i;
        two.addrs.push(v1::IpAddress {
            family: "ipv6".into(),
            address: "fe80::1".into(),
            prefix: 64,
        });
        assert!(
            ifaddr_text(&[two], false, false)
                .ends_with(" -          -                    ipv6         fe80::1/64\n")
        );
    }

    #[test]
    fn memstat_in_test_driver_order() {
        let mut s = v1::MemoryStatsReply::default();
        s.stats.insert("rss".into(), 524_288);
        s.stats.insert("actual".into(), 1_048_576);
        s.stats.insert("swap_in".into(), 0);
        assert_eq!(memstat_text(&s), "actual 1048576\nswap_in 0\nrss 524288\n");
    }
}
