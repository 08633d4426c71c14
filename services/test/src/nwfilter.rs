//! NWFilter and NWFilterBinding: filters and their bindings in memory
//! (nothing is applied to any firewall).

use tonic::{Request, Response, Status};
use virtmesh_conf::misc::{NwFilterBindingDef, NwFilterDef};
use virtmesh_proto::v1::{
    self as pb, nw_filter_binding_server::NwFilterBinding, nw_filter_server::NwFilter,
    object_ref::Key,
};
use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

use crate::err::{self, VResult};
use crate::host::{Host, State};
use crate::{BoxStream, TestDriver};

fn nwf_err(code: ErrorCode, msg: String) -> VirtError {
    VirtError::new(code, ErrorDomain::Nwfilter, msg)
}

fn find(st: &State, r: Option<&pb::ObjectRef>) -> VResult<usize> {
    let key = r
        .and_then(|r| r.key.as_ref())
        .ok_or_else(|| err::missing("nwfilter"))?;
    let found = match key {
        Key::Name(n) => st.nwfilters.iter().position(|f| f.name() == *n),
        Key::Uuid(u) => st
            .nwfilters
            .iter()
            .position(|f| crate::uuid_eq(&f.uuid(), u)),
        Key::Id(_) => None,
    };
    found.ok_or_else(|| {
        let detail = match key {
            Key::Name(n) => format!("no nwfilter with matching name '{n}'"),
            Key::Uuid(u) => format!("no nwfilter with matching uuid '{u}'"),
            Key::Id(id) => format!("no nwfilter with matching id {id}"),
        };
        nwf_err(
            ErrorCode::NoNwfilter,
            format!("Network filter not found: {detail}"),
        )
    })
}

fn summary(f: &NwFilterDef) -> pb::NwFilterSummary {
    pb::NwFilterSummary {
        uuid: f.uuid(),
        name: f.name(),
    }
}

/// Whether defining `def` would make a filter reference itself.
fn has_loop(st: &State, def: &NwFilterDef) -> bool {
    let name = def.name();
    let mut todo: Vec<String> = refs(def);
    let mut seen = Vec::new();
    while let Some(r) = todo.pop() {
        if r == name {
            return true;
        }
        if seen.contains(&r) {
            continue;
        }
        seen.push(r.clone());
        if let Some(f) = st.nwfilters.iter().find(|f| f.name() == r) {
            todo.extend(refs(f));
        }
    }
    false
}

fn refs(f: &NwFilterDef) -> Vec<String> {
    f.root
        .children_named("filterref")
        .filter_map(|r| r.attr("filter").map(str::to_owned))
        .collect()
}

fn define(host: &Host, r: pb::DefineXmlRequest) -> VResult<pb::NwFilterSummary> {
    let def = NwFilterDef::parse(&r.xml).map_err(|e| err::conf(e, ErrorDomain::Nwfilter))?;
    let mut st = host.lock();
    if let Some(f) = st
        .nwfilters
        .iter()
        .find(|f| f.uuid() == def.uuid() && f.name() != def.name())
    {
        return Err(nwf_err(
            ErrorCode::OperationFailed,
            format!(
                "operation failed: filter with same UUID but different name ('{}') already exists",
                f.name()
            ),
        ));
    }
    if let Some(f) = st
        .nwfilters
        .iter()
        .find(|f| f.name() == def.name() && f.uuid() != def.uuid())
    {
        return Err(nwf_err(
            ErrorCode::OperationFailed,
            format!(
                "operation failed: filter '{}' already exists with uuid {}",
                f.name(),
                f.uuid()
            ),
        ));
    }
    if has_loop(&st, &def) {
        return Err(nwf_err(
            ErrorCode::OperationFailed,
            "operation failed: filter would introduce a loop".into(),
        ));
    }
    let out = summary(&def);
    match st.nwfilters.iter().position(|f| f.uuid() == def.uuid()) {
        Some(i) => st.nwfilters[i] = def,
        None => st.nwfilters.push(def),
    }
    Ok(out)
}

fn undefine(host: &Host, r: pb::ObjectRef) -> VResult<()> {
    let mut st = host.lock();
    let idx = find(&st, Some(&r))?;
    let name = st.nwfilters[idx].name();
    let in_use = st.bindings.iter().any(|b| b.filter() == name)
        || st.nwfilters.iter().any(|f| refs(f).contains(&name));
    if in_use {
        return Err(nwf_err(
            ErrorCode::OperationInvalid,
            "Requested operation is not valid: nwfilter is in use".into(),
        ));
    }
    st.nwfilters.remove(idx);
    Ok(())
}

#[tonic::async_trait]
impl NwFilter for TestDriver {
    type ListStream = BoxStream<pb::NwFilterSummary>;

    async fn list(&self, request: Request<()>) -> Result<Response<Self::ListStream>, Status> {
        self.call_stream(request, |h, _| {
            Ok(h.lock().nwfilters.iter().map(summary).collect())
        })
    }

    async fn lookup(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::NwFilterSummary>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            Ok(summary(&st.nwfilters[find(&st, Some(&r))?]))
        })
    }

    async fn define_xml(
        &self,
        request: Request<pb::DefineXmlRequest>,
    ) -> Result<Response<pb::NwFilterSummary>, Status> {
        self.call(request, define)
    }

    async fn undefine(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.call(request, undefine)
    }

    async fn get_xml_desc(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            Ok(pb::XmlDoc {
                xml: st.nwfilters[find(&st, Some(&r))?].to_xml(),
            })
        })
    }
}

fn find_binding(st: &State, port_dev: &str) -> VResult<usize> {
    st.bindings.iter().position(|b| b.port_dev() == port_dev).ok_or_else(|| {
        nwf_err(
            ErrorCode::NoNwfilterBinding,
            format!("Network filter binding not found: no nwfilter binding for port dev '{port_dev}'"),
        )
    })
}

fn binding_summary(b: &NwFilterBindingDef) -> pb::NwFilterBindingSummary {
    pb::NwFilterBindingSummary {
        port_dev: b.port_dev(),
        filter_name: b.filter(),
        owner_name: b.owner_name(),
        owner_uuid: b.owner_uuid(),
        mac: b.mac(),
    }
}

fn create_binding(host: &Host, r: pb::DefineXmlRequest) -> VResult<pb::NwFilterBindingSummary> {
    let def = NwFilterBindingDef::parse(&r.xml).map_err(|e| err::conf(e, ErrorDomain::Nwfilter))?;
    let mut st = host.lock();
    if st.bindings.iter().any(|b| b.port_dev() == def.port_dev()) {
        return Err(nwf_err(
            ErrorCode::OperationFailed,
            format!(
                "operation failed: filter binding for portdev {} already exists",
                def.port_dev()
            ),
        ));
    }
    if !st.nwfilters.iter().any(|f| f.name() == def.filter()) {
        return Err(nwf_err(
            ErrorCode::InternalError,
            format!(
                "internal error: referenced filter '{}' is missing",
                def.filter()
            ),
        ));
    }
    let out = binding_summary(&def);
    st.bindings.push(def);
    Ok(out)
}

#[tonic::async_trait]
impl NwFilterBinding for TestDriver {
    type ListStream = BoxStream<pb::NwFilterBindingSummary>;

    async fn list(&self, request: Request<()>) -> Result<Response<Self::ListStream>, Status> {
        self.call_stream(request, |h, _| {
            Ok(h.lock().bindings.iter().map(binding_summary).collect())
        })
    }

    async fn lookup(
        &self,
        request: Request<pb::BindingRef>,
    ) -> Result<Response<pb::NwFilterBindingSummary>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            Ok(binding_summary(
                &st.bindings[find_binding(&st, &r.port_dev)?],
            ))
        })
    }

    async fn create_xml(
        &self,
        request: Request<pb::DefineXmlRequest>,
    ) -> Result<Response<pb::NwFilterBindingSummary>, Status> {
        self.call(request, create_binding)
    }

    async fn delete(&self, request: Request<pb::BindingRef>) -> Result<Response<()>, Status> {
        self.call(request, |h, r| {
            let mut st = h.lock();
            let idx = find_binding(&st, &r.port_dev)?;
            st.bindings.remove(idx);
            Ok(())
        })
    }

    async fn get_xml_desc(
        &self,
        request: Request<pb::BindingRef>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            Ok(pb::XmlDoc {
                xml: st.bindings[find_binding(&st, &r.port_dev)?].to_xml(),
            })
        })
    }
}
