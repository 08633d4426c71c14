//! The Network service: virtual networks in memory (no bridges, no
//! dnsmasq), with libvirt's test driver state machine.

use tonic::{Request, Response, Status};
use virtmesh_conf::network::NetworkDef;
use virtmesh_proto::v1::{
    self as pb, NetworkEventType as Ev, event::Kind, network_server::Network, object_ref::Key,
};
use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

use crate::err::{self, VResult};
use crate::host::{Host, NetworkObj, State};
use crate::{BoxStream, TestDriver, events};

fn conf_err(e: virtmesh_conf::ConfError) -> VirtError {
    err::conf(e, ErrorDomain::Network)
}

pub fn find(st: &State, r: Option<&pb::ObjectRef>) -> VResult<usize> {
    let key = r
        .and_then(|r| r.key.as_ref())
        .ok_or_else(|| err::missing("network"))?;
    let found = match key {
        Key::Name(n) => st.networks.iter().position(|x| x.def.name() == *n),
        Key::Uuid(u) => st
            .networks
            .iter()
            .position(|x| crate::uuid_eq(&x.def.uuid(), u)),
        Key::Id(_) => None,
    };
    found.ok_or_else(|| {
        let detail = match key {
            Key::Name(n) => format!("no network with matching name '{n}'"),
            Key::Uuid(u) => format!("no network with matching uuid '{u}'"),
            Key::Id(id) => format!("no network with matching id {id}"),
        };
        err::not_found(ErrorCode::NoNetwork, detail)
    })
}

fn emit(host: &Host, n: &NetworkObj, ty: Ev) {
    host.emit(Kind::NetworkLifecycle(pb::NetworkLifecycle {
        network: events::object_id(&n.def.uuid(), &n.def.name()),
        r#type: ty as i32,
    }));
}

/// virNetworkObjListAssignDef's duplicate checks.
fn check_duplicates(st: &State, def: &NetworkDef, check_active: bool) -> VResult<Option<usize>> {
    if let Some(i) = st.networks.iter().position(|n| n.def.uuid() == def.uuid()) {
        let n = &st.networks[i];
        if n.def.name() != def.name() {
            return Err(err::op_failed(
                ErrorDomain::Network,
                format!(
                    "network '{}' is already defined with uuid {}",
                    n.def.name(),
                    n.def.uuid()
                ),
            ));
        }
        if check_active && n.active {
            return Err(err::op_invalid(format!(
                "network is already active as '{}'",
                n.def.name()
            )));
        }
        return Ok(Some(i));
    }
    if let Some(n) = st.networks.iter().find(|n| n.def.name() == def.name()) {
        return Err(err::op_failed(
            ErrorDomain::Network,
            format!(
                "network '{}' already exists with uuid {}",
                n.def.name(),
                n.def.uuid()
            ),
        ));
    }
    Ok(None)
}

fn define(host: &Host, r: pb::DefineXmlRequest) -> VResult<pb::NetworkSummary> {
    let def = NetworkDef::parse(&r.xml).map_err(conf_err)?;
    let mut st = host.lock();
    let idx = match check_duplicates(&st, &def, false)? {
        Some(i) => {
            st.networks[i].def = def;
            st.networks[i].persistent = true;
            i
        }
        None => {
            st.networks.push(NetworkObj {
                def,
                active: false,
                persistent: true,
                autostart: false,
            });
            st.networks.len() - 1
        }
    };
    emit(host, &st.networks[idx], Ev::NetworkEventDefined);
    Ok(st.networks[idx].summary())
}

fn create_xml(host: &Host, r: pb::DefineXmlRequest) -> VResult<pb::NetworkSummary> {
    let def = NetworkDef::parse(&r.xml).map_err(conf_err)?;
    let mut st = host.lock();
    let idx = match check_duplicates(&st, &def, true)? {
        Some(i) => {
            st.networks[i].def = def;
            st.networks[i].active = true;
            i
        }
        None => {
            st.networks.push(NetworkObj {
                def,
                active: true,
                persistent: false,
                autostart: false,
            });
            st.networks.len() - 1
        }
    };
    emit(host, &st.networks[idx], Ev::NetworkEventStarted);
    Ok(st.networks[idx].summary())
}

fn undefine(host: &Host, r: pb::ObjectRef) -> VResult<()> {
    let mut st = host.lock();
    let idx = find(&st, Some(&r))?;
    emit(host, &st.networks[idx], Ev::NetworkEventUndefined);
    if st.networks[idx].active {
        st.networks[idx].persistent = false;
        st.networks[idx].autostart = false;
    } else {
        st.networks.remove(idx);
    }
    Ok(())
}

fn start(host: &Host, r: pb::ObjectRef) -> VResult<pb::NetworkSummary> {
    let mut st = host.lock();
    let idx = find(&st, Some(&r))?;
    let n = &mut st.networks[idx];
    if n.active {
        return Err(err::op_invalid(format!(
            "Network '{}' is already running",
            n.def.name()
        )));
    }
    n.active = true;
    emit(host, n, Ev::NetworkEventStarted);
    Ok(n.summary())
}

fn destroy(host: &Host, r: pb::ObjectRef) -> VResult<()> {
    let mut st = host.lock();
    let idx = find(&st, Some(&r))?;
    // libvirt's test driver does not check that the network is active.
    st.networks[idx].active = false;
    emit(host, &st.networks[idx], Ev::NetworkEventStopped);
    if !st.networks[idx].persistent {
        st.networks.remove(idx);
    }
    Ok(())
}

fn with_net<R>(
    host: &Host,
    r: Option<&pb::ObjectRef>,
    f: impl FnOnce(&NetworkObj) -> VResult<R>,
) -> VResult<R> {
    let st = host.lock();
    let idx = find(&st, r)?;
    f(&st.networks[idx])
}

fn list(host: &Host, f: pb::ListFilter) -> VResult<Vec<pb::NetworkSummary>> {
    let pair = |a: bool, b: bool, v: bool| a == b || (a && v) || (b && !v);
    let st = host.lock();
    Ok(st
        .networks
        .iter()
        .filter(|n| {
            pair(f.active, f.inactive, n.active)
                && pair(f.persistent, f.transient, n.persistent)
                && pair(f.autostart, f.no_autostart, n.autostart)
        })
        .map(NetworkObj::summary)
        .collect())
}

fn no_bridge(n: &NetworkObj) -> VirtError {
    err::internal(format!(
        "network '{}' does not have a bridge name.",
        n.def.name()
    ))
}

#[tonic::async_trait]
impl Network for TestDriver {
    type ListStream = BoxStream<pb::NetworkSummary>;
    type GetDHCPLeasesStream = BoxStream<pb::DhcpLease>;
    type PortListStream = BoxStream<pb::NetworkPortSummary>;

    async fn list(
        &self,
        request: Request<pb::ListFilter>,
    ) -> Result<Response<Self::ListStream>, Status> {
        self.call_stream(request, list)
    }

    async fn lookup(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::NetworkSummary>, Status> {
        self.call(request, |h, r| with_net(h, Some(&r), |n| Ok(n.summary())))
    }

    async fn define_xml(
        &self,
        request: Request<pb::DefineXmlRequest>,
    ) -> Result<Response<pb::NetworkSummary>, Status> {
        self.call(request, define)
    }

    async fn create_xml(
        &self,
        request: Request<pb::DefineXmlRequest>,
    ) -> Result<Response<pb::NetworkSummary>, Status> {
        self.call(request, create_xml)
    }

    async fn undefine(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.call(request, undefine)
    }

    async fn create(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::NetworkSummary>, Status> {
        self.call(request, start)
    }

    async fn destroy(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.call(request, destroy)
    }

    async fn get_xml_desc(
        &self,
        request: Request<pb::GetXmlDescRequest>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        self.call(request, |h, r| {
            // libvirt's test driver refuses VIR_NETWORK_XML_INACTIVE; the
            // network driver (and the conformance corpus) accepts it, and a
            // test network has one definition, so both flags give it.
            with_net(h, r.object.as_ref(), |n| {
                Ok(pb::XmlDoc {
                    xml: n.def.to_xml(),
                })
            })
        })
    }

    async fn get_info(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::NetworkInfo>, Status> {
        self.call(request, |h, r| {
            with_net(h, Some(&r), |n| {
                Ok(pb::NetworkInfo {
                    uuid: n.def.uuid(),
                    name: n.def.name(),
                    active: n.active,
                    persistent: n.persistent,
                    autostart: n.autostart,
                    bridge: n.def.bridge().unwrap_or_default(),
                })
            })
        })
    }

    async fn get_bridge_name(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::BridgeName>, Status> {
        self.call(request, |h, r| {
            with_net(h, Some(&r), |n| {
                Ok(pb::BridgeName {
                    bridge: n.def.bridge().ok_or_else(|| no_bridge(n))?,
                })
            })
        })
    }

    async fn get_autostart(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::Autostart>, Status> {
        self.call(request, |h, r| {
            with_net(h, Some(&r), |n| {
                Ok(pb::Autostart {
                    autostart: n.autostart,
                })
            })
        })
    }

    async fn set_autostart(
        &self,
        request: Request<pb::SetAutostartRequest>,
    ) -> Result<Response<()>, Status> {
        self.call(request, |h, r| {
            let mut st = h.lock();
            let idx = find(&st, r.object.as_ref())?;
            let n = &mut st.networks[idx];
            if !n.persistent {
                return Err(err::op_invalid(
                    "cannot set autostart for transient network",
                ));
            }
            n.autostart = r.autostart;
            Ok(())
        })
    }

    async fn update(
        &self,
        request: Request<pb::NetworkUpdateRequest>,
    ) -> Result<Response<()>, Status> {
        self.call(request, |h, r| {
            let mut st = h.lock();
            let idx = find(&st, r.network.as_ref())?;
            let updated = crate::netupdate::apply(&st.networks[idx].def, &r)?;
            st.networks[idx].def = updated;
            Ok(())
        })
    }

    async fn get_dhcp_leases(
        &self,
        request: Request<pb::DhcpLeasesRequest>,
    ) -> Result<Response<Self::GetDHCPLeasesStream>, Status> {
        // libvirt's test driver has no dnsmasq and refuses the call.
        self.call_stream(request, |h, r| {
            with_net(h, r.network.as_ref(), |_| {
                Err(err::unimplemented("NetworkGetDHCPLeases"))
            })
        })
    }

    async fn port_create_xml(
        &self,
        request: Request<pb::PortCreateRequest>,
    ) -> Result<Response<pb::NetworkPortSummary>, Status> {
        self.call(request, |_, _| {
            Err(err::unimplemented("NetworkPortCreateXML"))
        })
    }

    async fn port_list(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<Self::PortListStream>, Status> {
        self.call_stream(request, |_, _| {
            Err(err::unimplemented("NetworkListAllPorts"))
        })
    }

    async fn port_lookup(
        &self,
        request: Request<pb::PortRef>,
    ) -> Result<Response<pb::NetworkPortSummary>, Status> {
        self.call(request, |_, _| {
            Err(err::unimplemented("NetworkPortLookupByUUID"))
        })
    }

    async fn port_get_xml_desc(
        &self,
        request: Request<pb::PortRef>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        self.call(request, |_, _| {
            Err(err::unimplemented("NetworkPortGetXMLDesc"))
        })
    }

    async fn port_delete(&self, request: Request<pb::PortRef>) -> Result<Response<()>, Status> {
        self.call(request, |_, _| Err(err::unimplemented("NetworkPortDelete")))
    }

    async fn port_get_parameters(
        &self,
        request: Request<pb::PortRef>,
    ) -> Result<Response<pb::PortParameters>, Status> {
        self.call(request, |_, _| {
            Err(err::unimplemented("NetworkPortGetParameters"))
        })
    }

    async fn port_set_parameters(
        &self,
        request: Request<pb::PortSetParametersRequest>,
    ) -> Result<Response<()>, Status> {
        self.call(request, |_, _| {
            Err(err::unimplemented("NetworkPortSetParameters"))
        })
    }
}
