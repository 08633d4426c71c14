//! The one configuration file shared by the launcher (`virtmesh up`), the
//! gateway and docker-compose: which service listens where, and which URI
//! schemes and API families each serves.

use serde::Deserialize;
use std::path::Path;
use virtmesh_rpc::ListenAddr;

/// Used when no `--config` is given: the gateway on libvirt's TCP port and
/// every service that exists today on loopback.
pub const DEFAULT_CONFIG: &str = r#"
[gateway]
listen = "127.0.0.1:16509"
default_uri = "test:///default"

[[service]]
name = "test"
listen = "127.0.0.1:16610"
schemes = ["test"]
families = ["*"]

[[service]]
name = "qemu"
listen = "127.0.0.1:16611"
schemes = ["qemu"]

[[service]]
name = "network"
listen = "127.0.0.1:16612"
families = ["Network"]

[[service]]
name = "storage"
listen = "127.0.0.1:16613"
families = ["StoragePool", "StorageVol"]
"#;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub gateway: GatewayConfig,
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub listen: String,
    /// The URI used for calls that carry no `virt-uri` header.
    #[serde(default = "default_uri")]
    pub default_uri: String,
}

fn default_uri() -> String {
    "test:///default".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The driver: `test`, `qemu`, `network`, ... (also the launcher's role
    /// name for it).
    pub name: String,
    /// Where the service binds.
    pub listen: String,
    /// Where peers reach it, when that differs from `listen` (containers
    /// bind 0.0.0.0 but are reached by service name).
    #[serde(default)]
    pub connect: Option<String>,
    /// URI schemes for which this is the hypervisor service.
    #[serde(default)]
    pub schemes: Vec<String>,
    /// API families served: service names without the package
    /// (`Network`, `StoragePool`, ...), or `*` for every family (the test
    /// driver implements them all, as libvirt's does).
    #[serde(default)]
    pub families: Vec<String>,
}

impl ServiceConfig {
    pub fn listen_addr(&self) -> Result<ListenAddr, ConfigError> {
        parse_addr(&self.name, &self.listen)
    }

    pub fn connect_addr(&self) -> Result<ListenAddr, ConfigError> {
        parse_addr(&self.name, self.connect.as_deref().unwrap_or(&self.listen))
    }
}

fn parse_addr(who: &str, s: &str) -> Result<ListenAddr, ConfigError> {
    s.parse()
        .map_err(|e| ConfigError::Invalid(format!("service '{who}': {e}")))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            None => Config::parse(DEFAULT_CONFIG),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Config::parse(&text)
            }
        }
    }

    pub fn gateway_listen(&self) -> Result<ListenAddr, ConfigError> {
        parse_addr("gateway", &self.gateway.listen)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.gateway_listen()?;
        let mut names = std::collections::HashSet::new();
        for s in &self.services {
            if !names.insert(s.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "service '{}' is listed twice",
                    s.name
                )));
            }
            s.listen_addr()?;
            s.connect_addr()?;
            for f in &s.families {
                if f != "*" && !crate::routing::is_family(f) {
                    return Err(ConfigError::Invalid(format!(
                        "service '{}': unknown API family '{f}'",
                        s.name
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let c = Config::parse(DEFAULT_CONFIG).expect("default config");
        assert_eq!(c.gateway.default_uri, "test:///default");
        assert_eq!(c.services[0].name, "test");
    }

    #[test]
    fn rejects_unknown_family_and_duplicates() {
        let bad = "[gateway]\nlisten='127.0.0.1:1'\n[[service]]\nname='n'\nlisten='127.0.0.1:2'\nfamilies=['Nope']\n";
        assert!(Config::parse(bad).is_err());
        let dup = "[gateway]\nlisten='127.0.0.1:1'\n[[service]]\nname='n'\nlisten='127.0.0.1:2'\n[[service]]\nname='n'\nlisten='127.0.0.1:3'\n";
        assert!(Config::parse(dup).is_err());
    }
}
