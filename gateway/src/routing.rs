//! Which backend serves a call: the URI scheme picks the hypervisor
//! service; `test:///` (any service whose families include `*`) takes
//! every family, as libvirt's test driver does; other URIs send the
//! hypervisor families to the hypervisor service and the rest to the
//! secondary service configured for that family.

use crate::config::{Config, ConfigError};
use std::collections::HashMap;
use std::sync::Arc;
use tonic::transport::Channel;
use virtmesh_rpc::client::{ChannelOptions, channel};
use virtmesh_rpc::{ErrorCode, ErrorDomain, ListenAddr, VirtError};

/// Every public API family (the service name without `virtmesh.v1.`).
pub const FAMILIES: &[&str] = &[
    "Connect",
    "Host",
    "Domain",
    "Network",
    "StoragePool",
    "StorageVol",
    "Secret",
    "NWFilter",
    "NWFilterBinding",
    "NodeDevice",
    "Interface",
    "Events",
];

/// Families always served by the hypervisor service of the URI.
const HYPERVISOR_FAMILIES: &[&str] = &["Connect", "Host", "Domain"];

pub fn is_family(name: &str) -> bool {
    FAMILIES.contains(&name)
}

/// One configured service and the channel to it.
#[derive(Debug)]
pub struct Backend {
    pub name: String,
    pub addr: ListenAddr,
    pub channel: Channel,
    serves_all: bool,
}

impl Backend {
    /// The error a client sees when this backend cannot be reached: it
    /// names the service, the endpoint tried and the URI, and keeps the
    /// transport's cause.
    pub fn unreachable(&self, uri: &str, cause: &dyn std::error::Error) -> VirtError {
        VirtError::new(
            ErrorCode::NoConnect,
            ErrorDomain::Rpc,
            format!(
                "cannot reach the '{}' service at {} for URI '{uri}': {}",
                self.name,
                self.addr,
                error_chain(cause)
            ),
        )
    }
}

/// An error and its causes on one line ("transport error: Connection
/// refused (os error 111)"): the cause is what the user needs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[derive(Debug)]
pub struct Routing {
    default_uri: String,
    hypervisors: HashMap<String, Arc<Backend>>,
    secondary: HashMap<String, Arc<Backend>>,
}

impl Routing {
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        let opts = ChannelOptions::default();
        let mut hypervisors = HashMap::new();
        let mut secondary = HashMap::new();
        for s in &config.services {
            let addr = s.connect_addr()?;
            let backend = Arc::new(Backend {
                name: s.name.clone(),
                channel: channel(&addr, &opts),
                addr,
                serves_all: s.families.iter().any(|f| f == "*"),
            });
            for scheme in &s.schemes {
                hypervisors.insert(scheme.to_ascii_lowercase(), backend.clone());
            }
            if s.schemes.is_empty() {
                for f in &s.families {
                    secondary.insert(f.clone(), backend.clone());
                }
            }
        }
        Ok(Routing {
            default_uri: config.gateway.default_uri.clone(),
            hypervisors,
            secondary,
        })
    }

    pub fn default_uri(&self) -> &str {
        &self.default_uri
    }

    /// The backend for one call of `family` on connection `uri`.
    pub fn route(&self, family: &str, uri: &str) -> Result<Arc<Backend>, VirtError> {
        let hypervisor = self.hypervisor(uri)?;
        if hypervisor.serves_all || HYPERVISOR_FAMILIES.contains(&family) {
            return Ok(hypervisor);
        }
        self.secondary.get(family).cloned().ok_or_else(|| {
            VirtError::new(
                ErrorCode::NoSupport,
                ErrorDomain::Rpc,
                format!("this function is not supported by the connection driver: no service is configured for the {family} API of URI '{uri}'"),
            )
        })
    }

    /// Every backend whose events a watcher of `uri` should see.
    pub fn event_backends(&self, uri: &str) -> Result<Vec<Arc<Backend>>, VirtError> {
        let hypervisor = self.hypervisor(uri)?;
        let mut out = vec![hypervisor.clone()];
        if !hypervisor.serves_all {
            for b in self.secondary.values() {
                if !out.iter().any(|o| Arc::ptr_eq(o, b)) {
                    out.push(b.clone());
                }
            }
        }
        Ok(out)
    }

    fn hypervisor(&self, uri: &str) -> Result<Arc<Backend>, VirtError> {
        let scheme = scheme_of(uri)?;
        self.hypervisors.get(&scheme).cloned().ok_or_else(|| {
            VirtError::new(
                ErrorCode::NoConnect,
                ErrorDomain::None,
                format!("no connection driver available for {uri} (no service is configured for scheme '{scheme}')"),
            )
        })
    }
}

/// The driver part of a libvirt URI: `qemu+ssh://host/system` → `qemu`.
pub fn scheme_of(uri: &str) -> Result<String, VirtError> {
    let invalid = || {
        VirtError::new(
            ErrorCode::InvalidArg,
            ErrorDomain::Uri,
            format!("invalid argument: Unable to parse URI {uri}"),
        )
    };
    let (scheme, _) = uri.split_once(':').ok_or_else(invalid)?;
    let driver = scheme.split('+').next().unwrap_or_default();
    let valid = !driver.is_empty()
        && driver
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !valid {
        return Err(invalid());
    }
    Ok(driver.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing() -> Routing {
        let config = Config::parse(
            r#"
[gateway]
listen = "127.0.0.1:1"
[[service]]
name = "test"
listen = "127.0.0.1:2"
schemes = ["test"]
families = ["*"]
[[service]]
name = "qemu"
listen = "127.0.0.1:3"
schemes = ["qemu"]
[[service]]
name = "network"
listen = "unix:/tmp/net.sock"
families = ["Network"]
"#,
        )
        .expect("config");
        Routing::new(&config).expect("routing")
    }

    #[tokio::test]
    async fn test_uri_takes_every_family() {
        let r = routing();
        for f in FAMILIES {
            assert_eq!(
                r.route(f, "test:///default")
                    .map(|b| b.name.clone())
                    .ok()
                    .as_deref(),
                Some("test")
            );
        }
    }

    #[tokio::test]
    async fn other_uris_split_hypervisor_and_secondary() {
        let r = routing();
        assert_eq!(
            r.route("Domain", "qemu:///system")
                .map(|b| b.name.clone())
                .ok()
                .as_deref(),
            Some("qemu")
        );
        assert_eq!(
            r.route("Network", "qemu+ssh://h/system")
                .map(|b| b.name.clone())
                .ok()
                .as_deref(),
            Some("network")
        );
        let err = r.route("Secret", "qemu:///system").err().map(|e| e.code);
        assert_eq!(err, Some(ErrorCode::NoSupport));
        assert_eq!(
            r.event_backends("qemu:///system").map(|v| v.len()).ok(),
            Some(2)
        );
    }

    #[test]
    fn error_chain_keeps_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        assert!(error_chain(&io).contains("Connection refused"));
    }

    #[tokio::test]
    async fn unknown_scheme_names_the_uri() {
        let r = routing();
        let err = r.route("Domain", "xen:///system").err();
        assert_eq!(err.as_ref().map(|e| e.code), Some(ErrorCode::NoConnect));
        assert!(
            err.map(|e| e.message.contains("xen:///system"))
                .unwrap_or(false)
        );
        assert_eq!(
            scheme_of("nonsense").err().map(|e| e.code),
            Some(ErrorCode::InvalidArg)
        );
    }
}
