//! The NodeDevice service: the host's devices from the node document;
//! NPIV vHBAs can be created under an fc_host and destroyed.

use tonic::{Request, Response, Status};
use virtmesh_conf::misc::NodeDeviceDef;
use virtmesh_conf::xml::Element;
use virtmesh_proto::v1::{
    self as pb, NodeDeviceEventType as Ev, event::Kind, node_device_server::NodeDevice,
};
use virtmesh_rpc::{ErrorCode, ErrorDomain};

use crate::err::{self, VResult};
use crate::host::{Host, State};
use crate::{BoxStream, TestDriver};

fn find(st: &State, name: &str) -> VResult<usize> {
    st.nodedevs
        .iter()
        .position(|d| d.name() == name)
        .ok_or_else(|| {
            err::not_found(
                ErrorCode::NoNodeDevice,
                format!("no node device with matching name '{name}'"),
            )
        })
}

fn summary(d: &NodeDeviceDef) -> pb::NodeDeviceSummary {
    pb::NodeDeviceSummary {
        name: d.name(),
        parent: d.parent().unwrap_or_default(),
        caps: d.caps(),
        active: true,
        persistent: false,
        autostart: false,
    }
}

fn emit(host: &Host, name: &str, ty: Ev) {
    host.emit(Kind::NodedevLifecycle(pb::NodeDeviceLifecycle {
        device: name.to_owned(),
        r#type: ty as i32,
    }));
}

/// virsh's cap names map to these capability types ("scsi_host" etc.);
/// nested fc_host/vports count too, as in libvirt.
fn list(host: &Host, r: pb::ListNodeDevicesRequest) -> VResult<Vec<pb::NodeDeviceSummary>> {
    let st = host.lock();
    // Every device here is active; asking for inactive only gives none.
    if r.inactive && !r.active {
        return Ok(Vec::new());
    }
    Ok(st
        .nodedevs
        .iter()
        .filter(|d| {
            let caps = d.caps();
            let caps: Vec<&str> = caps
                .iter()
                .map(|c| {
                    if c == "vport_ops" {
                        "vports"
                    } else {
                        c.as_str()
                    }
                })
                .collect();
            r.caps.is_empty() || r.caps.iter().any(|c| caps.contains(&c.as_str()))
        })
        .map(summary)
        .collect())
}

/// virRandomGenerateWWN: QEMU's OUI (Qumranet) and random digits.
fn random_wwn() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    let mut hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    hex.truncate(9);
    format!("5001a4a{hex}")
}

/// testNodeDeviceCreateXML: a vHBA named after the next free SCSI host
/// number under its fc_host parent.
fn create_xml(host: &Host, r: pb::DefineXmlRequest) -> VResult<pb::NodeDeviceSummary> {
    let def = NodeDeviceDef::parse_new(&r.xml).map_err(|e| err::conf(e, ErrorDomain::Nodedev))?;
    // Missing WWNs are generated, as libvirt does for vHBAs.
    let has_fc = def.caps().iter().any(|c| c == "fc_host");
    let (wwnn, wwpn) = def
        .wwn()
        .or_else(|| has_fc.then(|| (random_wwn(), random_wwn())))
        .ok_or_else(|| {
            err::conf(
                virtmesh_conf::ConfError::xml("no fc_host capability with wwnn/wwpn"),
                ErrorDomain::Nodedev,
            )
        })?;
    let mut st = host.lock();
    let parent = def
        .parent()
        .ok_or_else(|| err::invalid_arg("parent device must be specified"))?;
    let pidx = find(&st, &parent)?;
    if !st.nodedevs[pidx].caps().iter().any(|c| c == "vport_ops") {
        return Err(err::invalid_arg(format!(
            "Parent device {parent} is not capable of vport operations"
        )));
    }
    let next = st
        .nodedevs
        .iter()
        .filter_map(|d| {
            d.name()
                .strip_prefix("scsi_host")
                .and_then(|n| n.parse::<u32>().ok())
        })
        .max()
        .unwrap_or(0)
        + 1;
    let name = format!("scsi_host{next}");
    let fc = Element::new("capability")
        .with_attr("type", "fc_host")
        .with_child(Element::new("wwnn").with_text(wwnn))
        .with_child(Element::new("wwpn").with_text(wwpn))
        .with_child(Element::new("fabric_wwn").with_text("2000000043214321"));
    let root = Element::new("device")
        .with_child(Element::new("name").with_text(&name))
        .with_child(Element::new("parent").with_text(&parent))
        .with_child(
            Element::new("capability")
                .with_attr("type", "scsi_host")
                .with_child(Element::new("host").with_text(next.to_string()))
                .with_child(Element::new("unique_id").with_text(next.to_string()))
                .with_child(fc),
        );
    let dev = NodeDeviceDef::from_element(root).map_err(|e| err::conf(e, ErrorDomain::Nodedev))?;
    let out = summary(&dev);
    st.nodedevs.push(dev);
    emit(host, &name, Ev::NodeDeviceEventCreated);
    Ok(out)
}

#[tonic::async_trait]
impl NodeDevice for TestDriver {
    type ListStream = BoxStream<pb::NodeDeviceSummary>;

    async fn list(
        &self,
        request: Request<pb::ListNodeDevicesRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        self.call_stream(request, list)
    }

    async fn lookup(
        &self,
        request: Request<pb::NodeDeviceRef>,
    ) -> Result<Response<pb::NodeDeviceSummary>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            Ok(summary(&st.nodedevs[find(&st, &r.name)?]))
        })
    }

    async fn lookup_scsi_host_by_wwn(
        &self,
        request: Request<pb::WwnRequest>,
    ) -> Result<Response<pb::NodeDeviceSummary>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            st.nodedevs
                .iter()
                .find(|d| d.wwn() == Some((r.wwnn.clone(), r.wwpn.clone())))
                .map(summary)
                .ok_or_else(|| {
                    err::not_found(
                        ErrorCode::NoNodeDevice,
                        format!(
                            "no node device with matching wwnn '{}' and wwpn '{}'",
                            r.wwnn, r.wwpn
                        ),
                    )
                })
        })
    }

    async fn get_xml_desc(
        &self,
        request: Request<pb::NodeDeviceRef>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            Ok(pb::XmlDoc {
                xml: st.nodedevs[find(&st, &r.name)?].to_xml(),
            })
        })
    }

    async fn create_xml(
        &self,
        request: Request<pb::DefineXmlRequest>,
    ) -> Result<Response<pb::NodeDeviceSummary>, Status> {
        self.call(request, create_xml)
    }

    async fn define_xml(
        &self,
        request: Request<pb::DefineXmlRequest>,
    ) -> Result<Response<pb::NodeDeviceSummary>, Status> {
        self.call(request, |_, _| {
            Err(err::unimplemented("NodeDeviceDefineXML"))
        })
    }

    async fn undefine(&self, request: Request<pb::NodeDeviceRef>) -> Result<Response<()>, Status> {
        self.call(request, |_, _| {
            Err(err::unimplemented("NodeDeviceUndefine"))
        })
    }

    async fn create(&self, request: Request<pb::NodeDeviceRef>) -> Result<Response<()>, Status> {
        self.call(request, |_, _| Err(err::unimplemented("NodeDeviceCreate")))
    }

    async fn destroy(&self, request: Request<pb::NodeDeviceRef>) -> Result<Response<()>, Status> {
        self.call(request, |h, r| {
            let mut st = h.lock();
            let idx = find(&st, &r.name)?;
            if st.nodedevs[idx].wwn().is_none() {
                return Err(err::invalid_arg(format!(
                    "Device {} is not a fibre channel HBA",
                    r.name
                )));
            }
            st.nodedevs.remove(idx);
            emit(h, &r.name, Ev::NodeDeviceEventDeleted);
            Ok(())
        })
    }

    async fn detach(&self, request: Request<pb::NodeDeviceRef>) -> Result<Response<()>, Status> {
        self.call(request, |_, _| {
            Err(err::unimplemented("NodeDeviceDetachFlags"))
        })
    }

    async fn re_attach(&self, request: Request<pb::NodeDeviceRef>) -> Result<Response<()>, Status> {
        self.call(request, |_, _| {
            Err(err::unimplemented("NodeDeviceReAttach"))
        })
    }

    async fn reset(&self, request: Request<pb::NodeDeviceRef>) -> Result<Response<()>, Status> {
        self.call(request, |_, _| Err(err::unimplemented("NodeDeviceReset")))
    }

    async fn get_autostart(
        &self,
        request: Request<pb::NodeDeviceRef>,
    ) -> Result<Response<pb::Autostart>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            find(&st, &r.name)?;
            Ok(pb::Autostart { autostart: false })
        })
    }

    async fn set_autostart(
        &self,
        request: Request<pb::NodeDeviceAutostartRequest>,
    ) -> Result<Response<()>, Status> {
        self.call(request, |_, _| {
            Err(err::unimplemented("NodeDeviceSetAutostart"))
        })
    }
}
