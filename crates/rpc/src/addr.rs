//! Where a service listens, or where a peer is reached: `IP:PORT` or
//! `HOSTNAME:PORT` for TCP (hostnames matter in docker-compose, where peers
//! are named by service), or `unix:PATH` for a unix socket.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    /// A TCP peer named by host name, resolved when connecting or binding.
    Host(String, u16),
    Unix(PathBuf),
}

#[derive(Debug, thiserror::Error)]
#[error("invalid address '{0}': expected HOST:PORT or unix:PATH")]
pub struct InvalidAddr(pub String);

impl FromStr for ListenAddr {
    type Err = InvalidAddr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(InvalidAddr(s.to_owned()));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(ListenAddr::Tcp(addr));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| InvalidAddr(s.to_owned()))?;
        let port = port.parse().map_err(|_| InvalidAddr(s.to_owned()))?;
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        if !valid_host {
            return Err(InvalidAddr(s.to_owned()));
        }
        Ok(ListenAddr::Host(host.to_owned(), port))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Host(h, p) => write!(f, "{h}:{p}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_and_unix() {
        assert_eq!(
            "127.0.0.1:16509".parse::<ListenAddr>().ok(),
            Some(ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 16509))))
        );
        assert_eq!(
            "unix:/run/x.sock".parse::<ListenAddr>().ok(),
            Some(ListenAddr::Unix("/run/x.sock".into()))
        );
        assert_eq!(
            "test:16610".parse::<ListenAddr>().ok(),
            Some(ListenAddr::Host("test".into(), 16610))
        );
        assert!("unix:".parse::<ListenAddr>().is_err());
        assert!("bad host:1".parse::<ListenAddr>().is_err());
        assert!("localhost".parse::<ListenAddr>().is_err());
    }
}
