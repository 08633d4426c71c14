//! Host and connection commands (tools/virsh-host.c): uri, version,
//! hostname, capabilities, nodeinfo.

use virtmesh_proto::v1;

use super::{CmdResult, Ctl};

pub async fn uri(ctl: &Ctl) -> CmdResult {
    let r = ctl
        .conn
        .connect()
        .get_uri(())
        .await
        .map_err(crate::Error::from)?;
    ctl.print(&format!("{}\n", r.into_inner().uri));
    Ok(())
}

pub async fn hostname(ctl: &Ctl) -> CmdResult {
    let r = ctl
        .conn
        .connect()
        .get_hostname(())
        .await
        .map_err(crate::Error::from)?;
    ctl.print(&format!("{}\n", r.into_inner().hostname));
    Ok(())
}

pub async fn capabilities(ctl: &Ctl) -> CmdResult {
    let r = ctl
        .conn
        .host()
        .get_capabilities(())
        .await
        .map_err(crate::Error::from)?;
    ctl.print(&r.into_inner().xml);
    Ok(())
}

pub async fn nodeinfo(ctl: &Ctl) -> CmdResult {
    let r = ctl
        .conn
        .connect()
        .get_node_info(())
        .await
        .map_err(crate::Error::from)?;
    ctl.print(&nodeinfo_text(&r.into_inner()));
    Ok(())
}

pub async fn version(ctl: &Ctl) -> CmdResult {
    let mut c = ctl.conn.connect();
    let hv_type = c
        .get_type(())
        .await
        .map_err(crate::Error::from)?
        .into_inner()
        .hypervisor_type;
    let lib = c
        .get_lib_version(())
        .await
        .map_err(crate::Error::from)?
        .into_inner()
        .version;
    let hv = c
        .get_version(())
        .await
        .map_err(crate::Error::from)?
        .into_inner()
        .version;
    ctl.print(&version_text(lib, &hv_type, hv));
    Ok(())
}

pub async fn sysinfo(ctl: &Ctl) -> CmdResult {
    let r = ctl
        .conn
        .connect()
        .get_sysinfo(())
        .await
        .map_err(crate::Error::from)?;
    ctl.print(&r.into_inner().xml);
    Ok(())
}

pub async fn maxvcpus(ctl: &Ctl, ty: Option<&str>) -> CmdResult {
    let req = v1::MaxVcpusRequest {
        r#type: ty.unwrap_or_default().to_owned(),
    };
    let r = ctl
        .conn
        .connect()
        .get_max_vcpus(req)
        .await
        .map_err(crate::Error::from)?;
    ctl.print(&format!("{}\n", r.into_inner().max_vcpus));
    Ok(())
}

/// `freecell` without a cell: the host's free memory.
pub async fn freecell(ctl: &Ctl) -> CmdResult {
    let r = ctl
        .conn
        .host()
        .get_free_memory(())
        .await
        .map_err(crate::Error::from)?;
    ctl.print(&format!("Total: {} KiB\n", r.into_inner().bytes / 1024));
    Ok(())
}

pub async fn domxml_from_native(ctl: &Ctl, format: &str, file: &str) -> CmdResult {
    let config = super::util::read_file(file).map_err(super::CmdError::msg)?;
    let req = v1::DomainXmlFromNativeRequest {
        native_format: format.to_owned(),
        native_config: config,
    };
    let r = ctl
        .conn
        .connect()
        .domain_xml_from_native(req)
        .await
        .map_err(crate::Error::from)?;
    ctl.print(&r.into_inner().xml);
    Ok(())
}

/// `major.minor.release` of libvirt's packed version number.
pub fn version_string(v: u64) -> String {
    format!("{}.{}.{}", v / 1_000_000, (v / 1000) % 1000, v % 1000)
}

/// `virsh version`. The library virsh was compiled against is, for vsh,
/// the libvirt version virtmesh implements, so both first lines show it.
pub fn version_text(lib: u64, hv_type: &str, hv: u64) -> String {
    let lib = version_string(lib);
    let mut s = format!(
        "Compiled against library: libvirt {lib}\nUsing library: libvirt {lib}\nUsing API: {hv_type} {lib}\n"
    );
    if hv == 0 {
        s.push_str(&format!(
            "Cannot extract running {hv_type} hypervisor version\n"
        ));
    } else {
        s.push_str(&format!(
            "Running hypervisor: {hv_type} {}\n",
            version_string(hv)
        ));
    }
    s
}

/// `virsh nodeinfo`: `%-20s` labels.
pub fn nodeinfo_text(n: &v1::NodeInfo) -> String {
    let mut s = String::new();
    s.push_str(&format!("{:<20} {}\n", "CPU model:", n.model));
    s.push_str(&format!("{:<20} {}\n", "CPU(s):", n.cpus));
    if n.mhz != 0 {
        s.push_str(&format!("{:<20} {} MHz\n", "CPU frequency:", n.mhz));
    }
    s.push_str(&format!("{:<20} {}\n", "CPU socket(s):", n.sockets));
    s.push_str(&format!("{:<20} {}\n", "Core(s) per socket:", n.cores));
    s.push_str(&format!("{:<20} {}\n", "Thread(s) per core:", n.threads));
    s.push_str(&format!("{:<20} {}\n", "NUMA cell(s):", n.nodes));
    s.push_str(&format!("{:<20} {} KiB\n", "Memory size:", n.memory_kib));
    s
}

/// The host security model from capabilities XML
/// (`<host><secmodel><model>..</model><doi>..</doi></secmodel>`), which is
/// what virNodeGetSecurityModel reports and `dominfo` prints.
pub fn secmodel_from_caps(xml: &str) -> Option<(String, String)> {
    let start = xml.find("<secmodel>")?;
    let end = start + xml[start..].find("</secmodel>")?;
    let block = &xml[start..end];
    let model = element_text(block, "model")?;
    let doi = element_text(block, "doi").unwrap_or_default();
    Some((model, doi))
}

fn element_text(block: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    if let Some(i) = block.find(&open) {
        let rest = &block[i + open.len()..];
        let j = rest.find(&format!("</{tag}>"))?;
        return Some(rest[..j].trim().to_owned());
    }
    block.contains(&format!("<{tag}/>")).then(String::new)
}

pub async fn domcapabilities(ctl: &Ctl, req: v1::DomainCapabilitiesRequest) -> CmdResult {
    let r = ctl
        .conn
        .host()
        .get_domain_capabilities(req)
        .await
        .map_err(|e| {
            // virsh's own line before the driver's error.
            super::CmdError::ctx("failed to get emulator capabilities", crate::Error::from(e))
        })?;
    ctl.print(&r.into_inner().xml);
    Ok(())
}

pub async fn cpu_models(ctl: &Ctl, arch: &str) -> CmdResult {
    let req = v1::CpuModelNamesRequest {
        arch: arch.to_owned(),
    };
    let r = ctl
        .conn
        .host()
        .get_cpu_model_names(req)
        .await
        .map_err(crate::Error::from)?;
    let text: String = r
        .into_inner()
        .models
        .iter()
        .map(|m| format!("{m}\n"))
        .collect();
    ctl.print(&text);
    Ok(())
}

/// The `<cpu>…</cpu>` elements of a document (a bare CPU definition, a
/// domain XML or capabilities), as cpu-baseline and cpu-compare take them.
/// Self-closing `<cpu …/>` elements (topology entries) are not CPU
/// definitions and are skipped.
pub fn cpu_elements(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<cpu") {
        let after = &rest[start + 4..];
        let opens_element = after.starts_with('>') || after.starts_with(char::is_whitespace);
        let tag_end = after.find('>').unwrap_or(after.len());
        let self_closing = after[..tag_end].ends_with('/');
        if !opens_element || self_closing {
            rest = &rest[start + 4..];
            continue;
        }
        match rest[start..].find("</cpu>") {
            Some(end) => {
                out.push(rest[start..start + end + "</cpu>".len()].to_owned());
                rest = &rest[start + end + "</cpu>".len()..];
            }
            None => break,
        }
    }
    out
}

/// cpu-compare's verdict lines.
pub fn compare_text(result: v1::CpuCompareResult, file: &str) -> Result<String, String> {
    match result {
        v1::CpuCompareResult::CpuCompareIdentical => Ok(format!(
            "CPU described in {file} is identical to host CPU\n"
        )),
        v1::CpuCompareResult::CpuCompareSuperset => Ok(format!(
            "Host CPU is a superset of CPU described in {file}\n"
        )),
        v1::CpuCompareResult::CpuCompareIncompatible => Err(format!(
            "CPU described in {file} is incompatible with host CPU\n"
        )),
        v1::CpuCompareResult::CpuCompareError => Err(String::new()),
    }
}

pub async fn cpu_compare(ctl: &Ctl, file: &str, fail_incompatible: bool) -> CmdResult {
    let doc = super::util::read_file(file).map_err(super::CmdError::msg)?;
    let cpu = cpu_elements(&doc)
        .into_iter()
        .next()
        .ok_or_else(|| super::CmdError::msg(format!("File '{file}' does not contain any <cpu> element or valid domain XML, host capabilities XML or domain capabilities XML")))?;
    let req = v1::CompareCpuRequest {
        cpu_xml: cpu,
        fail_incompatible,
    };
    let fail = |e: crate::Error| {
        super::CmdError::ctx(format!("Failed to compare host CPU with {file}"), e)
    };
    let r = ctl
        .conn
        .host()
        .compare_cpu(req)
        .await
        .map_err(|e| fail(crate::Error::from(e)))?
        .into_inner();
    let result =
        v1::CpuCompareResult::try_from(r.result).unwrap_or(v1::CpuCompareResult::CpuCompareError);
    match compare_text(result, file) {
        Ok(text) => {
            ctl.print(&text);
            Ok(())
        }
        // virsh prints the verdict, then fails.
        Err(text) if !text.is_empty() => {
            ctl.print(&text);
            Err(super::CmdError::silent())
        }
        Err(_) => Err(super::CmdError::msg(format!(
            "Failed to compare host CPU with {file}"
        ))),
    }
}

pub async fn cpu_baseline(ctl: &Ctl, file: &str, features: bool, migratable: bool) -> CmdResult {
    let doc = super::util::read_file(file).map_err(super::CmdError::msg)?;
    let cpus = cpu_elements(&doc);
    if cpus.is_empty() {
        return Err(super::CmdError::msg(format!("no CPU found in {file}")));
    }
    let req = v1::BaselineCpuRequest {
        cpu_xmls: cpus,
        expand_features: features,
        migratable,
    };
    let r = ctl
        .conn
        .host()
        .baseline_cpu(req)
        .await
        .map_err(crate::Error::from)?;
    ctl.print(&r.into_inner().xml);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodeinfo_matches_virsh_test_driver() {
        let n = v1::NodeInfo {
            model: "i686".into(),
            memory_kib: 3_145_728,
            cpus: 16,
            mhz: 1400,
            nodes: 2,
            sockets: 2,
            cores: 2,
            threads: 2,
        };
        // `virsh -c test:///default nodeinfo`
        assert_eq!(
            nodeinfo_text(&n),
            "CPU model:           i686\n\
             CPU(s):              16\n\
             CPU frequency:       1400 MHz\n\
             CPU socket(s):       2\n\
             Core(s) per socket:  2\n\
             Thread(s) per core:  2\n\
             NUMA cell(s):        2\n\
             Memory size:         3145728 KiB\n"
        );
    }

    #[test]
    fn version_matches_virsh_test_driver() {
        // `virsh -c test:///default version`
        assert_eq!(
            version_text(11_003_000, "TEST", 2),
            "Compiled against library: libvirt 11.3.0\n\
             Using library: libvirt 11.3.0\n\
             Using API: TEST 11.3.0\n\
             Running hypervisor: TEST 0.0.2\n"
        );
        assert!(
            version_text(11_003_000, "QEMU", 0)
                .ends_with("Cannot extract running QEMU hypervisor version\n")
        );
    }

    #[test]
    fn cpu_elements_are_found() {
        let bare = "<cpu>\n  <arch>i686</arch>\n  <model>pentium3</model>\n</cpu>\n";
        assert_eq!(cpu_elements(bare), vec![bare.trim_end().to_owned()]);
        let caps = "<capabilities><host><cpu><arch>x86_64</arch></cpu><topology><cpus num='1'>\
                    <cpu id='0' socket_id='0'/></cpus></topology></host></capabilities>";
        assert_eq!(
            cpu_elements(caps),
            vec!["<cpu><arch>x86_64</arch></cpu>".to_owned()]
        );
        let domain = "<domain><cpu mode='custom'><model>qemu64</model></cpu><cputune/></domain>";
        assert_eq!(
            cpu_elements(domain),
            vec!["<cpu mode='custom'><model>qemu64</model></cpu>".to_owned()]
        );
        assert!(cpu_elements("<domain/>").is_empty());
    }

    #[test]
    fn compare_verdicts() {
        assert_eq!(
            compare_text(v1::CpuCompareResult::CpuCompareIdentical, "cpu.xml"),
            Ok("CPU described in cpu.xml is identical to host CPU\n".to_owned())
        );
        assert_eq!(
            compare_text(v1::CpuCompareResult::CpuCompareSuperset, "cpu.xml"),
            Ok("Host CPU is a superset of CPU described in cpu.xml\n".to_owned())
        );
        assert!(compare_text(v1::CpuCompareResult::CpuCompareIncompatible, "cpu.xml").is_err());
    }

    #[test]
    fn secmodel_is_read_from_capabilities() {
        let caps = "<capabilities>\n  <host>\n    <secmodel>\n      <model>testSecurity</model>\n      <doi></doi>\n    </secmodel>\n  </host>\n</capabilities>\n";
        assert_eq!(
            secmodel_from_caps(caps),
            Some(("testSecurity".into(), String::new()))
        );
        assert_eq!(secmodel_from_caps("<capabilities/>"), None);
        let selinux = "<secmodel><model>selinux</model><doi>0</doi></secmodel>";
        assert_eq!(
            secmodel_from_caps(selinux),
            Some(("selinux".into(), "0".into()))
        );
    }
}
