//! virConnect*: URI, versions, host name and node info.

use tonic::{Request, Response, Status};
use virtmesh_proto::v1::{self as pb, connect_server::Connect};

use crate::{TestDriver, err};

/// libvirt's test driver reports hypervisor version 2 (testConnectGetVersion).
const HV_VERSION: u64 = 2;
/// The libvirt release whose behaviour we reproduce (11.3.0).
const LIB_VERSION: u64 = 11_003_000;
/// testConnectGetMaxVcpus.
pub const MAX_VCPUS: u32 = 32;

/// The machine's host name, as virGetHostname reports it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The test driver's sysinfo (testConnectGetSysinfo).
const SYSINFO: &str = "<sysinfo type='smbios'>
  <bios>
    <entry name='vendor'>LENOVO</entry>
    <entry name='version'>G4ETA1WW (2.61 )</entry>
    <entry name='date'>05/07/2014</entry>
    <entry name='release'>2.61</entry>
  </bios>
</sysinfo>
";

#[tonic::async_trait]
impl Connect for TestDriver {
    async fn open(
        &self,
        request: Request<pb::OpenRequest>,
    ) -> Result<Response<pb::OpenReply>, Status> {
        // An explicit URI in the body wins over the header.
        let body_uri = request.get_ref().uri.clone();
        let host = if body_uri.is_empty() {
            self.host(&request)?
        } else {
            let mut r = Request::new(());
            virtmesh_rpc::meta::set_virt_uri(&mut r, &body_uri)?;
            self.host(&r)?
        };
        Ok(Response::new(pb::OpenReply {
            uri: host.uri.clone(),
            driver: "test".into(),
        }))
    }

    async fn get_uri(&self, request: Request<()>) -> Result<Response<pb::UriReply>, Status> {
        self.call(request, |h, _| Ok(pb::UriReply { uri: h.uri.clone() }))
    }

    async fn get_version(
        &self,
        request: Request<()>,
    ) -> Result<Response<pb::VersionReply>, Status> {
        self.call(request, |_, _| {
            Ok(pb::VersionReply {
                version: HV_VERSION,
            })
        })
    }

    async fn get_lib_version(
        &self,
        request: Request<()>,
    ) -> Result<Response<pb::VersionReply>, Status> {
        self.call(request, |_, _| {
            Ok(pb::VersionReply {
                version: LIB_VERSION,
            })
        })
    }

    async fn get_hostname(
        &self,
        request: Request<()>,
    ) -> Result<Response<pb::HostnameReply>, Status> {
        self.call(request, |_, _| {
            Ok(pb::HostnameReply {
                hostname: hostname(),
            })
        })
    }

    async fn get_node_info(&self, request: Request<()>) -> Result<Response<pb::NodeInfo>, Status> {
        self.call(request, |h, _| {
            let n = h.lock().node_info.clone();
            Ok(pb::NodeInfo {
                model: n.model,
                memory_kib: n.memory_kib,
                cpus: n.cpus,
                mhz: n.mhz,
                nodes: n.nodes,
                sockets: n.sockets,
                cores: n.cores,
                threads: n.threads,
            })
        })
    }

    async fn get_sysinfo(&self, request: Request<()>) -> Result<Response<pb::XmlDoc>, Status> {
        self.call(request, |_, _| {
            Ok(pb::XmlDoc {
                xml: SYSINFO.into(),
            })
        })
    }

    async fn get_max_vcpus(
        &self,
        request: Request<pb::MaxVcpusRequest>,
    ) -> Result<Response<pb::MaxVcpusReply>, Status> {
        self.call(request, |_, _| {
            Ok(pb::MaxVcpusReply {
                max_vcpus: MAX_VCPUS,
            })
        })
    }

    async fn get_type(&self, request: Request<()>) -> Result<Response<pb::TypeReply>, Status> {
        self.call(request, |_, _| {
            Ok(pb::TypeReply {
                hypervisor_type: "TEST".into(),
            })
        })
    }

    async fn domain_xml_to_native(
        &self,
        request: Request<pb::DomainXmlToNativeRequest>,
    ) -> Result<Response<pb::NativeConfig>, Status> {
        self.call(request, |_, _| Err(err::unimplemented("DomainXMLToNative")))
    }

    async fn domain_xml_from_native(
        &self,
        request: Request<pb::DomainXmlFromNativeRequest>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        self.call(request, |_, _| {
            Err(err::unimplemented("DomainXMLFromNative"))
        })
    }
}
