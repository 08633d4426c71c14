//! Addressing objects, and virsh's rule for turning a user's string into a
//! lookup: a number is tried as a running domain's id, a string that parses
//! as a UUID is tried as one, and anything is finally tried as a name. Each
//! step falls through to the next when the object is not found, because a
//! domain may well be *named* "42".

use std::future::Future;

use virtmesh_proto::v1::{self, ObjectRef, object_ref::Key};

use crate::connection::Connection;
use crate::error::{Error, Result};

pub fn by_name(name: impl Into<String>) -> ObjectRef {
    ObjectRef {
        key: Some(Key::Name(name.into())),
    }
}

pub fn by_uuid(uuid: impl Into<String>) -> ObjectRef {
    ObjectRef {
        key: Some(Key::Uuid(uuid.into())),
    }
}

pub fn by_id(id: i32) -> ObjectRef {
    ObjectRef {
        key: Some(Key::Id(id)),
    }
}

/// An id as virsh accepts one: a non-negative base-10 integer.
pub fn parse_id(s: &str) -> Option<i32> {
    s.parse::<i32>().ok().filter(|id| *id >= 0)
}

/// Whether `s` is a UUID in libvirt's textual form: 32 hex digits, either
/// bare or in the usual 8-4-4-4-12 groups.
pub fn is_uuid(s: &str) -> bool {
    let bytes = s.as_bytes();
    match bytes.len() {
        32 => bytes.iter().all(u8::is_ascii_hexdigit),
        36 => bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        }),
        _ => false,
    }
}

/// Which kinds of key a lookup may try, in virsh's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds {
    pub id: bool,
    pub uuid: bool,
    pub name: bool,
}

impl Kinds {
    /// Domains: id, then UUID, then name.
    pub const DOMAIN: Kinds = Kinds {
        id: true,
        uuid: true,
        name: true,
    };
    /// Everything else (and `start`, which only makes sense for inactive
    /// domains): UUID, then name.
    pub const UUID_NAME: Kinds = Kinds {
        id: false,
        uuid: true,
        name: true,
    };
}

/// The references to try for `key`, in order.
pub fn candidates(key: &str, kinds: Kinds) -> Vec<ObjectRef> {
    let mut out = Vec::with_capacity(3);
    if kinds.id
        && let Some(id) = parse_id(key)
    {
        out.push(by_id(id));
    }
    if kinds.uuid && is_uuid(key) {
        out.push(by_uuid(key));
    }
    if kinds.name {
        out.push(by_name(key));
    }
    out
}

/// Try each candidate reference in turn with `lookup`; the first success
/// wins. When all fail, the last error is returned (it is the one virsh
/// shows: the by-name miss). A transport failure stops the chain at once.
pub async fn first_found<T, F, Fut>(refs: Vec<ObjectRef>, mut lookup: F) -> Result<T>
where
    F: FnMut(ObjectRef) -> Fut,
    Fut: Future<Output = std::result::Result<T, tonic::Status>>,
{
    let mut last = None;
    for r in refs {
        match lookup(r).await {
            Ok(v) => return Ok(v),
            Err(status) => {
                let err = Error::from(status);
                if err.is_transport() {
                    return Err(err);
                }
                last = Some(err);
            }
        }
    }
    // No candidate at all only happens with an empty `Kinds`: a caller bug.
    Err(last.unwrap_or_else(no_candidates))
}

fn no_candidates() -> Error {
    Error::Virt(virtmesh_rpc::VirtError::new(
        virtmesh_rpc::ErrorCode::InvalidArg,
        virtmesh_rpc::ErrorDomain::None,
        "no lookup key kind allowed",
    ))
}

impl Connection {
    /// A domain by id, UUID or name (virsh's `virshLookupDomainBy`).
    pub async fn lookup_domain(&self, key: &str) -> Result<v1::DomainSummary> {
        self.lookup_domain_by(key, Kinds::DOMAIN).await
    }

    pub async fn lookup_domain_by(&self, key: &str, kinds: Kinds) -> Result<v1::DomainSummary> {
        let client = self.domain();
        first_found(candidates(key, kinds), |r| {
            let mut c = client.clone();
            async move { c.lookup(r).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    /// A network by UUID or name.
    pub async fn lookup_network(&self, key: &str) -> Result<v1::NetworkSummary> {
        let client = self.network();
        first_found(candidates(key, Kinds::UUID_NAME), |r| {
            let mut c = client.clone();
            async move { c.lookup(r).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    /// A storage pool by UUID or name.
    pub async fn lookup_pool(&self, key: &str) -> Result<v1::StoragePoolSummary> {
        let client = self.storage_pool();
        first_found(candidates(key, Kinds::UUID_NAME), |r| {
            let mut c = client.clone();
            async move { c.lookup(r).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    /// A network filter by UUID or name.
    pub async fn lookup_nwfilter(&self, key: &str) -> Result<v1::NwFilterSummary> {
        let client = self.nwfilter();
        first_found(candidates(key, Kinds::UUID_NAME), |r| {
            let mut c = client.clone();
            async move { c.lookup(r).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    /// A volume the way `virsh vol-*` finds one: by name inside `pool` when
    /// a pool is given, then by key, then by path.
    pub async fn lookup_vol(
        &self,
        pool: Option<&ObjectRef>,
        vol: &str,
    ) -> Result<v1::StorageVolSummary> {
        use v1::vol_ref::By;
        let mut refs = Vec::with_capacity(3);
        if let Some(p) = pool {
            refs.push(By::PoolAndName(v1::PoolVolName {
                pool: Some(p.clone()),
                name: vol.to_owned(),
            }));
        }
        refs.push(By::Key(vol.to_owned()));
        refs.push(By::Path(vol.to_owned()));
        let client = self.storage_vol();
        let mut last = None;
        for by in refs {
            let mut c = client.clone();
            match c.lookup(v1::VolRef { by: Some(by) }).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(status) => {
                    let err = Error::from(status);
                    if err.is_transport() {
                        return Err(err);
                    }
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or_else(no_candidates))
    }

    /// A host interface by name, then by MAC address.
    pub async fn lookup_interface(&self, key: &str) -> Result<v1::InterfaceSummary> {
        use v1::interface_ref::Key as IKey;
        let mut c = self.interface();
        let by_name = c
            .lookup(v1::InterfaceRef {
                key: Some(IKey::Name(key.to_owned())),
            })
            .await;
        match by_name {
            Ok(r) => Ok(r.into_inner()),
            Err(status) => {
                let err = Error::from(status);
                if err.is_transport() || !looks_like_mac(key) {
                    return Err(err);
                }
                Ok(c.lookup(v1::InterfaceRef {
                    key: Some(IKey::Mac(key.to_owned())),
                })
                .await?
                .into_inner())
            }
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`
pub fn looks_like_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_key_tries_id_then_name() {
        assert_eq!(
            candidates("42", Kinds::DOMAIN),
            vec![by_id(42), by_name("42")]
        );
        assert_eq!(candidates("42", Kinds::UUID_NAME), vec![by_name("42")]);
        assert_eq!(candidates("-1", Kinds::DOMAIN), vec![by_name("-1")]);
    }

    #[test]
    fn uuid_key_tries_uuid_then_name() {
        let u = "6695eb01-f6a4-8304-79aa-97f2502e193f";
        assert_eq!(candidates(u, Kinds::DOMAIN), vec![by_uuid(u), by_name(u)]);
        assert!(is_uuid("6695eb01f6a4830479aa97f2502e193f"));
        assert!(!is_uuid("6695eb01-f6a4-8304-79aa-97f2502e193"));
        assert!(!is_uuid("6695eb01-f6a4-8304-79aa_97f2502e193f"));
    }

    #[test]
    fn plain_name_is_only_a_name() {
        assert_eq!(candidates("test", Kinds::DOMAIN), vec![by_name("test")]);
    }

    #[test]
    fn mac_detection() {
        assert!(looks_like_mac("aa:bb:cc:dd:ee:ff"));
        assert!(!looks_like_mac("eth1"));
    }

    #[tokio::test]
    async fn first_found_falls_through_and_keeps_last_error() {
        use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};
        let refs = candidates("7", Kinds::DOMAIN);
        let mut seen = Vec::new();
        let res: Result<()> = first_found(refs, |r| {
            seen.push(r.clone());
            async move {
                let what = match r.key {
                    Some(Key::Id(_)) => "id",
                    _ => "name",
                };
                Err(tonic::Status::from(VirtError::new(
                    ErrorCode::NoDomain,
                    ErrorDomain::Test,
                    format!("miss by {what}"),
                )))
            }
        })
        .await;
        assert_eq!(seen.len(), 2);
        assert_eq!(
            res.err().map(|e| e.to_string()).as_deref(),
            Some("miss by name")
        );
    }

    #[tokio::test]
    async fn first_found_stops_on_transport_error() {
        let mut calls = 0;
        let res: Result<()> = first_found(candidates("7", Kinds::DOMAIN), |_| {
            calls += 1;
            async { Err(tonic::Status::unavailable("connection refused")) }
        })
        .await;
        assert_eq!(calls, 1);
        assert!(res.is_err());
    }
}
