//! The Host service: the test driver's capabilities document and free
//! memory; CPU model operations are not part of the test driver here.

use tonic::{Request, Response, Status};
use virtmesh_proto::v1::{self as pb, host_server::Host as HostService};

use crate::{TestDriver, err};

/// testBuildCapabilities' output for the default topology, as libvirt
/// 11.3.0 formats it.
const CAPABILITIES: &str = include_str!("capabilities.xml");

/// testNodeGetFreeMemory: the sum of the cells' free memory, in bytes.
const FREE_MEMORY_BYTES: u64 = 3 * 1024 * 1024;

#[tonic::async_trait]
impl HostService for TestDriver {
    async fn get_capabilities(&self, request: Request<()>) -> Result<Response<pb::XmlDoc>, Status> {
        self.call(request, |_, _| {
            Ok(pb::XmlDoc {
                // The recording ends with virsh's extra blank line; the
                // API's document ends with a single newline.
                xml: format!("{}\n", CAPABILITIES.trim_end()),
            })
        })
    }

    async fn get_domain_capabilities(
        &self,
        request: Request<pb::DomainCapabilitiesRequest>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        self.call(request, |_, _| {
            Err(err::unimplemented("ConnectGetDomainCapabilities"))
        })
    }

    async fn compare_cpu(
        &self,
        request: Request<pb::CompareCpuRequest>,
    ) -> Result<Response<pb::CompareCpuReply>, Status> {
        self.call(request, |_, _| Err(err::unimplemented("ConnectCompareCPU")))
    }

    async fn baseline_cpu(
        &self,
        request: Request<pb::BaselineCpuRequest>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        self.call(request, |_, _| {
            Err(err::unimplemented("ConnectBaselineCPU"))
        })
    }

    async fn get_cpu_model_names(
        &self,
        request: Request<pb::CpuModelNamesRequest>,
    ) -> Result<Response<pb::CpuModelNamesReply>, Status> {
        self.call(request, |_, _| {
            Err(err::unimplemented("ConnectGetCPUModelNames"))
        })
    }

    async fn get_free_memory(
        &self,
        request: Request<()>,
    ) -> Result<Response<pb::FreeMemoryReply>, Status> {
        self.call(request, |_, _| {
            Ok(pb::FreeMemoryReply {
                bytes: FREE_MEMORY_BYTES,
            })
        })
    }
}
