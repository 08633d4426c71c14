//! The Secret service: secrets and their values in memory, with libvirt's
//! secret driver rules (usage uniqueness, private values never returned).

use tonic::{Request, Response, Status};
use virtmesh_conf::misc::SecretDef;
use virtmesh_proto::v1::{
    self as pb, SecretEventType as Ev, SecretUsageType, event::Kind, secret_ref::Key,
    secret_server::Secret,
};
use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

use crate::err::{self, VResult};
use crate::host::{Host, SecretObj, State};
use crate::{BoxStream, TestDriver, events};

const USAGES: &[(&str, SecretUsageType)] = &[
    ("volume", SecretUsageType::SecretUsageVolume),
    ("ceph", SecretUsageType::SecretUsageCeph),
    ("iscsi", SecretUsageType::SecretUsageIscsi),
    ("tls", SecretUsageType::SecretUsageTls),
    ("vtpm", SecretUsageType::SecretUsageVtpm),
];

fn usage_type(name: &str) -> SecretUsageType {
    USAGES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .unwrap_or(SecretUsageType::SecretUsageNone)
}

fn secret_err(code: ErrorCode, msg: String) -> VirtError {
    VirtError::new(code, ErrorDomain::Secret, msg)
}

fn find(st: &State, r: Option<&pb::SecretRef>) -> VResult<usize> {
    let key = r
        .and_then(|r| r.key.as_ref())
        .ok_or_else(|| err::missing("secret"))?;
    match key {
        Key::Uuid(u) => st
            .secrets
            .iter()
            .position(|s| crate::uuid_eq(&s.def.uuid, u))
            .ok_or_else(|| {
                secret_err(
                    ErrorCode::NoSecret,
                    format!("Secret not found: no secret with matching uuid '{u}'"),
                )
            }),
        Key::Usage(usage) => {
            st.secrets
                .iter()
                .position(|s| {
                    s.def.usage.as_ref().is_some_and(|(t, id)| {
                        usage_type(t) as i32 == usage.r#type && *id == usage.id
                    })
                })
                .ok_or_else(|| {
                    secret_err(
                        ErrorCode::NoSecret,
                        format!(
                            "Secret not found: no secret with matching usage '{}'",
                            usage.id
                        ),
                    )
                })
        }
    }
}

fn summary(s: &SecretObj) -> pb::SecretSummary {
    let (ty, id) = s
        .def
        .usage
        .clone()
        .map(|(t, id)| (usage_type(&t), id))
        .unwrap_or((SecretUsageType::SecretUsageNone, String::new()));
    pb::SecretSummary {
        uuid: s.def.uuid.clone(),
        usage_type: ty as i32,
        usage_id: id,
        ephemeral: s.def.ephemeral,
        private: s.def.private,
    }
}

fn emit(host: &Host, s: &SecretObj, ty: Ev) {
    let usage = s
        .def
        .usage
        .as_ref()
        .map(|u| u.1.clone())
        .unwrap_or_default();
    host.emit(Kind::SecretLifecycle(pb::SecretLifecycle {
        secret: events::object_id(&s.def.uuid, &usage),
        r#type: ty as i32,
    }));
}

fn internal(msg: String) -> VirtError {
    secret_err(ErrorCode::InternalError, format!("internal error: {msg}"))
}

/// virSecretObjListAdd's checks.
fn define(host: &Host, r: pb::DefineXmlRequest) -> VResult<pb::SecretSummary> {
    let def = SecretDef::parse(&r.xml).map_err(|e| err::conf(e, ErrorDomain::Secret))?;
    let mut st = host.lock();
    let existing = st.secrets.iter().position(|s| s.def.uuid == def.uuid);
    let usage_id = def.usage.as_ref().map(|u| u.1.clone());
    let idx = match existing {
        Some(i) => {
            let old = &st.secrets[i].def;
            if old.usage.as_ref().map(|u| &u.1) != usage_id.as_ref() {
                return Err(internal(format!(
                    "a secret with UUID {} is already defined for use with {}",
                    old.uuid,
                    old.usage.as_ref().map(|u| u.1.as_str()).unwrap_or("")
                )));
            }
            if old.private && !def.private {
                return Err(internal(
                    "cannot change private flag on existing secret".into(),
                ));
            }
            if old.ephemeral != def.ephemeral {
                return Err(internal(
                    "cannot change ephemeral flag on existing secret".into(),
                ));
            }
            st.secrets[i].def = def;
            i
        }
        None => {
            if let Some(id) = &usage_id
                && let Some(other) = st.secrets.iter().find(|s| {
                    s.def.usage.as_ref().is_some_and(|(t, u)| {
                        u == id && Some(t) == def.usage.as_ref().map(|x| &x.0)
                    })
                })
            {
                return Err(internal(format!(
                    "a secret with UUID {} already defined for use with {id}",
                    other.def.uuid
                )));
            }
            st.secrets.push(SecretObj { def, value: None });
            st.secrets.len() - 1
        }
    };
    emit(host, &st.secrets[idx], Ev::SecretEventDefined);
    Ok(summary(&st.secrets[idx]))
}

fn get_value(host: &Host, r: pb::SecretRef) -> VResult<pb::SecretValue> {
    let st = host.lock();
    let s = &st.secrets[find(&st, Some(&r))?];
    // Clients never see private values; peer services get them through
    // their own internal path, not through this API.
    if s.def.private {
        return Err(secret_err(
            ErrorCode::InvalidSecret,
            "Invalid secret: secret is private".into(),
        ));
    }
    let value = s.value.clone().ok_or_else(|| {
        secret_err(
            ErrorCode::NoSecret,
            format!(
                "Secret not found: secret '{}' does not have a value",
                s.def.uuid
            ),
        )
    })?;
    Ok(pb::SecretValue { value })
}

fn list(host: &Host, r: pb::ListSecretsRequest) -> VResult<Vec<pb::SecretSummary>> {
    let pair = |a: bool, b: bool, v: bool| a == b || (a && v) || (b && !v);
    let st = host.lock();
    Ok(st
        .secrets
        .iter()
        .filter(|s| {
            pair(r.ephemeral, r.no_ephemeral, s.def.ephemeral)
                && pair(r.private, r.no_private, s.def.private)
        })
        .map(summary)
        .collect())
}

#[tonic::async_trait]
impl Secret for TestDriver {
    type ListStream = BoxStream<pb::SecretSummary>;

    async fn list(
        &self,
        request: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        self.call_stream(request, list)
    }

    async fn lookup(
        &self,
        request: Request<pb::SecretRef>,
    ) -> Result<Response<pb::SecretSummary>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            Ok(summary(&st.secrets[find(&st, Some(&r))?]))
        })
    }

    async fn define_xml(
        &self,
        request: Request<pb::DefineXmlRequest>,
    ) -> Result<Response<pb::SecretSummary>, Status> {
        self.call(request, define)
    }

    async fn undefine(&self, request: Request<pb::SecretRef>) -> Result<Response<()>, Status> {
        self.call(request, |h, r| {
            let mut st = h.lock();
            let idx = find(&st, Some(&r))?;
            emit(h, &st.secrets[idx], Ev::SecretEventUndefined);
            st.secrets.remove(idx);
            Ok(())
        })
    }

    async fn get_xml_desc(
        &self,
        request: Request<pb::SecretRef>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        self.call(request, |h, r| {
            let st = h.lock();
            Ok(pb::XmlDoc {
                xml: st.secrets[find(&st, Some(&r))?].def.to_xml(),
            })
        })
    }

    async fn set_value(
        &self,
        request: Request<pb::SetSecretValueRequest>,
    ) -> Result<Response<()>, Status> {
        self.call(request, |h, r| {
            let mut st = h.lock();
            let idx = find(&st, r.secret.as_ref())?;
            st.secrets[idx].value = Some(r.value);
            let s = &st.secrets[idx];
            let usage = s
                .def
                .usage
                .as_ref()
                .map(|u| u.1.clone())
                .unwrap_or_default();
            h.emit(Kind::SecretValueChanged(pb::SecretValueChanged {
                secret: events::object_id(&s.def.uuid, &usage),
            }));
            Ok(())
        })
    }

    async fn get_value(
        &self,
        request: Request<pb::SecretRef>,
    ) -> Result<Response<pb::SecretValue>, Status> {
        self.call(request, get_value)
    }
}
