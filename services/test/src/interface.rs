//! The Interface service: host interfaces in memory, with libvirt's
//! change transactions (begin/commit/rollback).

use tonic::{Request, Response, Status};
use virtmesh_conf::misc::InterfaceDef;
use virtmesh_proto::v1::{self as pb, interface_ref::Key, interface_server::Interface};
use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

use crate::err::{self, VResult};
use crate::host::{Host, IfaceObj, State};
use crate::{BoxStream, TestDriver};

fn find(st: &State, r: Option<&pb::InterfaceRef>) -> VResult<usize> {
    let key = r
        .and_then(|r| r.key.as_ref())
        .ok_or_else(|| err::missing("interface"))?;
    let found = match key {
        Key::Name(n) => st.ifaces.iter().position(|i| i.def.name() == *n),
        Key::Mac(m) => st
            .ifaces
            .iter()
            .position(|i| i.def.mac().eq_ignore_ascii_case(m)),
    };
    found.ok_or_else(|| {
        let detail = match key {
            Key::Name(n) => format!("no interface with matching name '{n}'"),
            Key::Mac(m) => format!("no interface with matching mac '{m}'"),
        };
        err::not_found(ErrorCode::NoInterface, detail)
    })
}

fn summary(i: &IfaceObj) -> pb::InterfaceSummary {
    pb::InterfaceSummary {
        name: i.def.name(),
        mac: i.def.mac(),
        active: i.active,
    }
}

/// libvirt's test driver reports a bare "Requested operation is not valid".
fn invalid() -> VirtError {
    VirtError::new(
        ErrorCode::OperationInvalid,
        ErrorDomain::Test,
        "Requested operation is not valid",
    )
}

fn define(host: &Host, r: pb::DefineXmlRequest) -> VResult<pb::InterfaceSummary> {
    let def = InterfaceDef::parse(&r.xml).map_err(|e| err::conf(e, ErrorDomain::Interface))?;
    let mut st = host.lock();
    let idx = match st.ifaces.iter().position(|i| i.def.name() == def.name()) {
        Some(i) => {
            st.ifaces[i].def = def;
            i
        }
        None => {
            st.ifaces.push(IfaceObj { def, active: false });
            st.ifaces.len() - 1
        }
    };
    Ok(summary(&st.ifaces[idx]))
}

fn set_active(host: &Host, r: pb::InterfaceRef, active: bool) -> VResult<()> {
    let mut st = host.lock();
    let idx = find(&st, Some(&r))?;
    if st.ifaces[idx].active == active {
        return Err(invalid());
    }
    st.ifaces[idx].active = active;
    Ok(())
}

fn list(host: &Host, f: pb::ListFilter) -> VResult<Vec<pb::InterfaceSummary>> {
    let st = host.lock();
    Ok(st
        .ifaces
        .iter()
        .filter(|i| f.active == f.inactive || (f.active && i.active) || (f.inactive && !i.active))
        .map(summary)
        .collect())
}

#[tonic::async_trait]
impl Interface for TestDriver {
    type ListStream = BoxStream<pb::InterfaceSummary>;

    async fn list(
        &self,
        request: Request<pb::ListFilter>,
    ) -> Result<Response<Self::ListStream>, Status> {
        self.call_stream(request, list)
    }

    async fn lookup(
        &self,
        request: Request<pb::InterfaceRef>,
    ) -> Result<Response<pb::InterfaceSummary>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            Ok(summary(&st.ifaces[find(&st, Some(&r))?]))
        })
    }

    async fn define_xml(
        &self,
        request: Request<pb::DefineXmlRequest>,
    ) -> Result<Response<pb::InterfaceSummary>, Status> {
        self.call(request, define)
    }

    async fn undefine(&self, request: Request<pb::InterfaceRef>) -> Result<Response<()>, Status> {
        self.call(request, |h, r| {
            let mut st = h.lock();
            let idx = find(&st, Some(&r))?;
            st.ifaces.remove(idx);
            Ok(())
        })
    }

    async fn create(&self, request: Request<pb::InterfaceRef>) -> Result<Response<()>, Status> {
        self.call(request, |h, r| set_active(h, r, true))
    }

    async fn destroy(&self, request: Request<pb::InterfaceRef>) -> Result<Response<()>, Status> {
        self.call(request, |h, r| set_active(h, r, false))
    }

    async fn get_xml_desc(
        &self,
        request: Request<pb::InterfaceXmlRequest>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            let idx = find(&st, r.interface.as_ref())?;
            if r.inactive {
                return Err(err::unsupported_flags(1, "testInterfaceGetXMLDesc"));
            }
            Ok(pb::XmlDoc {
                xml: st.ifaces[idx].def.to_xml(),
            })
        })
    }

    async fn change_begin(&self, request: Request<()>) -> Result<Response<()>, Status> {
        self.call(request, |h, _| {
            let mut st = h.lock();
            if st.iface_backup.is_some() {
                return Err(err::op_invalid("there is another transaction running."));
            }
            st.iface_backup = Some(st.ifaces.clone());
            Ok(())
        })
    }

    async fn change_commit(&self, request: Request<()>) -> Result<Response<()>, Status> {
        self.call(request, |h, _| {
            let mut st = h.lock();
            if st.iface_backup.take().is_none() {
                return Err(err::op_invalid(
                    "no transaction running, nothing to be committed.",
                ));
            }
            Ok(())
        })
    }

    async fn change_rollback(&self, request: Request<()>) -> Result<Response<()>, Status> {
        self.call(request, |h, _| {
            let mut st = h.lock();
            let backup = st
                .iface_backup
                .take()
                .ok_or_else(|| err::op_invalid("no transaction running, nothing to rollback."))?;
            st.ifaces = backup;
            Ok(())
        })
    }
}
