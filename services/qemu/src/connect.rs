//! The Connect service: URI, versions, host facts from /proc, and
//! DomainXMLToNative from the same command-line builder a start uses.

use crate::error::{self as err, unimplemented};
use tonic::{Request, Response, Status};
use virtmesh_proto::v1::{self as pb, connect_server::Connect};
use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

/// The libvirt release whose behaviour we reproduce (11.3.0).
const LIB_VERSION: u64 = 11_003_000;
const DEFAULT_URI: &str = "qemu:///system";

#[derive(Debug, Clone)]
pub struct ConnectService {
    driver: crate::driver::QemuDriver,
    emulator: std::path::PathBuf,
}

impl ConnectService {
    pub fn new(driver: crate::driver::QemuDriver) -> Self {
        let emulator = driver.config().emulator.clone();
        ConnectService { driver, emulator }
    }
}

/// The canonical form of a URI this driver serves, or libvirt's error.
pub fn canonical_uri(uri: &str) -> Result<String, VirtError> {
    let rest = uri.strip_prefix("qemu://").ok_or_else(|| {
        VirtError::new(
            ErrorCode::NoConnect,
            ErrorDomain::Qemu,
            format!("no connection driver available for {uri}"),
        )
    })?;
    let path = rest.split('?').next().unwrap_or_default();
    match path {
        "/system" | "/session" => Ok(format!("qemu://{path}")),
        _ => Err(VirtError::new(
            ErrorCode::InternalError,
            ErrorDomain::Qemu,
            format!("internal error: unexpected QEMU URI path '{path}', try qemu:///system"),
        )),
    }
}

fn request_uri<T>(req: &Request<T>) -> &str {
    virtmesh_rpc::meta::virt_uri(req).unwrap_or(DEFAULT_URI)
}

/// QEMU's version as libvirt encodes it (major * 1e6 + minor * 1e3 +
/// micro), from `--version`.
pub fn parse_qemu_version(text: &str) -> Option<u64> {
    let v = text.split("version ").nth(1)?.split_whitespace().next()?;
    let mut it = v.split('.').map(|p| p.parse::<u64>().ok());
    let (major, minor, micro) = (it.next()??, it.next()??, it.next().flatten().unwrap_or(0));
    Some(major * 1_000_000 + minor * 1_000 + micro)
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// virNodeInfo from /proc/cpuinfo and /proc/meminfo.
pub fn node_info(cpuinfo: &str, meminfo: &str, numa_nodes: u32) -> pb::NodeInfo {
    let mut cpus = 0u32;
    let mut mhz = 0u32;
    let mut sockets = std::collections::BTreeSet::new();
    let mut cores = 1u32;
    let mut siblings = 1u32;
    for line in cpuinfo.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => cpus += 1,
            "cpu MHz" if mhz == 0 => {
                mhz = value.parse::<f64>().map(|m| m as u32).unwrap_or(0);
            }
            "physical id" => {
                sockets.insert(value.to_owned());
            }
            "cpu cores" => cores = value.parse().unwrap_or(1).max(1),
            "siblings" => siblings = value.parse().unwrap_or(1).max(1),
            _ => {}
        }
    }
    let memory_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let nodes = numa_nodes.max(1);
    let sockets_total = u32::try_from(sockets.len()).unwrap_or(1).max(1);
    pb::NodeInfo {
        model: std::env::consts::ARCH.to_owned(),
        memory_kib,
        cpus,
        mhz,
        nodes,
        // libvirt reports sockets per NUMA node.
        sockets: (sockets_total / nodes).max(1),
        cores,
        threads: (siblings / cores).max(1),
    }
}

fn numa_nodes() -> u32 {
    std::fs::read_dir("/sys/devices/system/node")
        .map(|d| {
            let n = d
                .filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.strip_prefix("node")
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
                .count();
            u32::try_from(n).unwrap_or(1)
        })
        .unwrap_or(1)
}

#[tonic::async_trait]
impl Connect for ConnectService {
    async fn open(
        &self,
        request: Request<pb::OpenRequest>,
    ) -> Result<Response<pb::OpenReply>, Status> {
        let uri = if request.get_ref().uri.is_empty() {
            request_uri(&request).to_owned()
        } else {
            request.get_ref().uri.clone()
        };
        let uri = canonical_uri(&uri)?;
        Ok(Response::new(pb::OpenReply {
            uri,
            driver: "qemu".into(),
        }))
    }

    async fn get_uri(&self, request: Request<()>) -> Result<Response<pb::UriReply>, Status> {
        let uri = canonical_uri(request_uri(&request))?;
        Ok(Response::new(pb::UriReply { uri }))
    }

    async fn get_version(&self, _: Request<()>) -> Result<Response<pb::VersionReply>, Status> {
        let out = tokio::process::Command::new(&self.emulator)
            .arg("--version")
            .output()
            .await
            .map_err(|e| err::internal(format!("cannot run '{}': {e}", self.emulator.display())))?;
        let version = parse_qemu_version(&String::from_utf8_lossy(&out.stdout))
            .ok_or_else(|| err::internal("cannot parse QEMU's version"))?;
        Ok(Response::new(pb::VersionReply { version }))
    }

    async fn get_lib_version(&self, _: Request<()>) -> Result<Response<pb::VersionReply>, Status> {
        Ok(Response::new(pb::VersionReply {
            version: LIB_VERSION,
        }))
    }

    async fn get_hostname(&self, _: Request<()>) -> Result<Response<pb::HostnameReply>, Status> {
        Ok(Response::new(pb::HostnameReply {
            hostname: hostname(),
        }))
    }

    async fn get_node_info(&self, _: Request<()>) -> Result<Response<pb::NodeInfo>, Status> {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map_err(|e| err::qemu(ErrorCode::SystemError, format!("cannot read {p}: {e}")))
        };
        let info = node_info(
            &read("/proc/cpuinfo")?,
            &read("/proc/meminfo")?,
            numa_nodes(),
        );
        Ok(Response::new(info))
    }

    async fn get_sysinfo(&self, _: Request<()>) -> Result<Response<pb::XmlDoc>, Status> {
        Err(unimplemented("GetSysinfo").into())
    }

    async fn get_max_vcpus(
        &self,
        request: Request<pb::MaxVcpusRequest>,
    ) -> Result<Response<pb::MaxVcpusReply>, Status> {
        // libvirt's qemu driver: 16 for TCG (or no type); for KVM it asks
        // /dev/kvm with an ioctl, which needs unsafe code we do not have yet.
        let ty = request.into_inner().r#type;
        match ty.to_ascii_lowercase().as_str() {
            "" | "qemu" => Ok(Response::new(pb::MaxVcpusReply { max_vcpus: 16 })),
            "kvm" => Err(unimplemented("GetMaxVcpus(kvm)").into()),
            _ => Err(VirtError::new(
                ErrorCode::InvalidArg,
                ErrorDomain::Qemu,
                format!("invalid argument: unknown type '{ty}'"),
            )
            .into()),
        }
    }

    async fn get_type(&self, _: Request<()>) -> Result<Response<pb::TypeReply>, Status> {
        Ok(Response::new(pb::TypeReply {
            hypervisor_type: "QEMU".into(),
        }))
    }

    async fn domain_xml_to_native(
        &self,
        request: Request<pb::DomainXmlToNativeRequest>,
    ) -> Result<Response<pb::NativeConfig>, Status> {
        let req = request.into_inner();
        if req.native_format != "qemu-argv" {
            return Err(VirtError::new(
                ErrorCode::InvalidArg,
                ErrorDomain::Qemu,
                format!(
                    "invalid argument: unsupported config type {}",
                    req.native_format
                ),
            )
            .into());
        }
        // Checked as a define would be, so the preview is what would run.
        let def = self.driver.parse_checked(&req.domain_xml).await?;
        Ok(Response::new(pb::NativeConfig {
            native_format: req.native_format,
            config: crate::argv::native(&def),
        }))
    }

    async fn domain_xml_from_native(
        &self,
        _: Request<pb::DomainXmlFromNativeRequest>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        Err(unimplemented("DomainXMLFromNative").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(
            canonical_uri("qemu:///system").expect("ok"),
            "qemu:///system"
        );
        assert_eq!(
            canonical_uri("qemu:///session").expect("ok"),
            "qemu:///session"
        );
        assert!(canonical_uri("qemu:///nope").is_err());
        assert_eq!(
            canonical_uri("test:///default").expect_err("not ours").code,
            ErrorCode::NoConnect
        );
    }

    #[test]
    fn qemu_version_parses() {
        let text = "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright";
        assert_eq!(parse_qemu_version(text), Some(10_000_002));
        assert_eq!(parse_qemu_version("garbage"), None);
    }

    #[test]
    fn node_info_from_proc_text() {
        let cpuinfo = "processor\t: 0\nphysical id\t: 0\nsiblings\t: 2\ncpu cores\t: 2\ncpu MHz\t\t: 2600.000\n\nprocessor\t: 1\nphysical id\t: 0\nsiblings\t: 2\ncpu cores\t: 2\ncpu MHz\t\t: 2600.000\n";
        let meminfo = "MemTotal:       24567890 kB\nMemFree: 1 kB\n";
        let n = node_info(cpuinfo, meminfo, 1);
        assert_eq!(
            (n.cpus, n.mhz, n.sockets, n.cores, n.threads, n.nodes),
            (2, 2600, 1, 2, 1, 1)
        );
        assert_eq!(n.memory_kib, 24_567_890);
    }
}
