//! The Host service: the test driver's capabilities and domain
//! capabilities documents, free memory, x86 CPU model names and a baseline
//! for CPUs of one model.  CPU comparison is not offered (as in libvirt's
//! test driver).

use tonic::{Request, Response, Status};
use virtmesh_proto::v1::{self as pb, host_server::Host as HostService};

use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

use crate::TestDriver;
use crate::err::{self, VResult};

/// testBuildCapabilities' output for the default topology, as libvirt
/// 11.3.0 formats it.
const CAPABILITIES: &str = include_str!("capabilities.xml");

/// The x86 CPU model names of libvirt 11.3.0's CPU map, in its order.
const CPU_MODELS_X86: &str = include_str!("cpu_models_x86.txt");

/// The model and features of one `<cpu>` document (or of the `<cpu>` in
/// a domain or capabilities document).
fn cpu_of(doc: &str) -> VResult<(String, Vec<String>)> {
    let root = virtmesh_conf::xml::parse(doc).map_err(|e| err::conf(e.into(), ErrorDomain::Cpu))?;
    let cpu = if root.name == "cpu" {
        Some(&root)
    } else {
        find_cpu(&root)
    };
    let cpu = cpu.ok_or_else(|| {
        VirtError::new(
            ErrorCode::InvalidArg,
            ErrorDomain::Cpu,
            "invalid argument: no CPU model found in the CPU definition",
        )
    })?;
    let model = cpu
        .child_text("model")
        .map(|m| m.trim().to_owned())
        .unwrap_or_default();
    let features = cpu
        .children_named("feature")
        .filter(|f| !matches!(f.attr("policy"), Some("disable" | "forbid")))
        .filter_map(|f| f.attr("name").map(str::to_owned))
        .collect();
    Ok((model, features))
}

fn find_cpu(el: &virtmesh_conf::Element) -> Option<&virtmesh_conf::Element> {
    el.elements().find_map(|c| {
        if c.name == "cpu" {
            Some(c)
        } else {
            find_cpu(c)
        }
    })
}

/// virConnectBaselineCPU for CPUs of one model: that model with the
/// features all of them require.  Mixed models need libvirt's CPU map
/// ancestry, which the test driver here does not carry.
fn baseline(docs: &[String]) -> VResult<pb::XmlDoc> {
    let cpus: Vec<(String, Vec<String>)> =
        docs.iter().map(|d| cpu_of(d)).collect::<VResult<_>>()?;
    let Some((model, first_features)) = cpus.first() else {
        return Err(err::invalid_arg("no CPU definitions given"));
    };
    if model.is_empty() {
        return Err(err::invalid_arg("no CPU model found in the CPU definition"));
    }
    if cpus.iter().any(|(m, _)| m != model) {
        return Err(err::unsupported(
            "baseline of different CPU models is not supported by the test driver",
        ));
    }
    let mut xml = format!(
        "<cpu mode='custom' match='exact'>\n  <model fallback='forbid'>{}</model>\n",
        virtmesh_conf::xml::escape(model)
    );
    for f in first_features
        .iter()
        .filter(|f| cpus.iter().all(|(_, fs)| fs.contains(f)))
    {
        xml.push_str(&format!(
            "  <feature policy='require' name='{}'/>\n",
            virtmesh_conf::xml::escape(f)
        ));
    }
    xml.push_str("</cpu>\n");
    Ok(pb::XmlDoc { xml })
}

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
        self.call(request, |_, r| {
            // testConnectGetDomainCapabilities: nothing is supported, for
            // the requested (or default) virt type and arch.
            let virt = if r.virt_type.is_empty() { "test" } else { r.virt_type.as_str() };
            let arch = if r.arch.is_empty() { "i686" } else { r.arch.as_str() };
            Ok(pb::XmlDoc {
                xml: format!(
                    "<domainCapabilities>\n  <domain>{virt}</domain>\n  <arch>{arch}</arch>\n  <cpu>\n    <mode name='host-passthrough' supported='no'/>\n    <mode name='maximum' supported='no'/>\n    <mode name='host-model' supported='no'/>\n    <mode name='custom' supported='no'/>\n  </cpu>\n  <devices>\n  </devices>\n  <features>\n    <sev supported='no'/>\n    <sgx supported='no'/>\n  </features>\n</domainCapabilities>\n",
                    virt = virtmesh_conf::xml::escape(virt),
                    arch = virtmesh_conf::xml::escape(arch),
                ),
            })
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
        self.call(request, |_, r| baseline(&r.cpu_xmls))
    }

    async fn get_cpu_model_names(
        &self,
        request: Request<pb::CpuModelNamesRequest>,
    ) -> Result<Response<pb::CpuModelNamesReply>, Status> {
        self.call(request, |_, r| {
            // libvirt's x86 CPU map; other architectures accept any model
            // and list none.
            let models = match r.arch.as_str() {
                "i686" | "x86_64" => CPU_MODELS_X86
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            };
            Ok(pb::CpuModelNamesReply { models })
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
