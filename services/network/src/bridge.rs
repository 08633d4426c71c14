//! The network's bridge over rtnetlink: create it (STP, forward delay,
//! MTU, MAC), give it its addresses, bring it up, and delete it. A link
//! that already exists under the requested name is an error (EEXIST) and
//! is never touched afterwards: only what `create` made is ever deleted.

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{BridgeStpState, InfoBridge, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec};
use std::net::IpAddr;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("{what}: {message}")]
    Netlink {
        what: String,
        message: String,
        /// The errno, when the kernel gave one.
        errno: Option<i32>,
    },
    #[error("invalid MAC address '{0}'")]
    Mac(String),
}

impl BridgeError {
    fn netlink(what: String, e: rtnetlink::Error) -> BridgeError {
        let errno = match &e {
            rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
            _ => None,
        };
        let message = match errno {
            Some(n) if n != 0 => std::io::Error::from_raw_os_error(n).to_string(),
            _ => e.to_string(),
        };
        BridgeError::Netlink {
            what,
            message,
            errno,
        }
    }

    pub fn errno(&self) -> Option<i32> {
        match self {
            BridgeError::Netlink { errno, .. } => *errno,
            _ => None,
        }
    }
}

/// A netlink connection. Its socket belongs to the network namespace of
/// the thread that opened it, which is how the tests run the driver in a
/// namespace of their own.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Netlink")
    }
}

impl Netlink {
    pub fn open() -> Result<Netlink, BridgeError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(BridgeError::Socket)?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The ifindex of a link, or `None` when there is no such link.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, BridgeError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Some(msg.header.index)),
            Ok(None) => Ok(None),
            // rtnetlink reports a missing link as ENODEV (HOST.md).
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == libc_enodev() => {
                Ok(None)
            }
            Err(e) => Err(BridgeError::netlink(
                format!("cannot look up link '{name}'"),
                e,
            )),
        }
    }

    /// The names of every link in this namespace.
    pub async fn link_names(&self) -> Result<Vec<String>, BridgeError> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| BridgeError::netlink("cannot list links".into(), e))?;
        Ok(links
            .iter()
            .filter_map(|l| {
                l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })
            })
            .collect())
    }

    /// Create a bridge, down, with libvirt's settings; returns its ifindex.
    /// The forward delay is set before STP is switched on because the
    /// kernel refuses a delay under 2 s once STP runs (and the kernel
    /// applies the attributes in that order).
    pub async fn create_bridge(
        &self,
        name: &str,
        stp: bool,
        delay_s: u32,
        mtu: Option<u32>,
        mac: Option<&str>,
    ) -> Result<u32, BridgeError> {
        let mut b = LinkBridge::new(name)
            .down()
            .append_info_data(InfoBridge::ForwardDelay(delay_s.saturating_mul(100)))
            .append_info_data(InfoBridge::StpState(if stp {
                BridgeStpState::KernelStp
            } else {
                BridgeStpState::Disabled
            }));
        if let Some(mtu) = mtu {
            b = b.mtu(mtu);
        }
        if let Some(mac) = mac {
            b = b.address(parse_mac(mac).ok_or_else(|| BridgeError::Mac(mac.to_owned()))?);
        }
        self.handle
            .link()
            .add(b.build())
            .execute()
            .await
            .map_err(|e| BridgeError::netlink(format!("cannot create bridge '{name}'"), e))?;
        self.link_index(name)
            .await?
            .ok_or_else(|| BridgeError::Netlink {
                what: format!("bridge '{name}'"),
                message: "vanished right after creation".into(),
                errno: None,
            })
    }

    pub async fn add_address(
        &self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<(), BridgeError> {
        self.handle
            .address()
            .add(index, addr, prefix)
            .execute()
            .await
            .map_err(|e| BridgeError::netlink(format!("cannot add address {addr}/{prefix}"), e))
    }

    pub async fn set_up(&self, index: u32) -> Result<(), BridgeError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| BridgeError::netlink(format!("cannot bring link {index} up"), e))
    }

    /// Add a static route via a gateway on the bridge.
    pub async fn add_route(
        &self,
        dest: IpAddr,
        prefix: u8,
        gateway: IpAddr,
        metric: Option<u32>,
    ) -> Result<(), BridgeError> {
        use rtnetlink::RouteMessageBuilder;
        let msg = match (dest, gateway) {
            (IpAddr::V4(d), IpAddr::V4(g)) => {
                let mut b = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                    .destination_prefix(d, prefix)
                    .gateway(g);
                if let Some(m) = metric {
                    b = b.priority(m);
                }
                b.build()
            }
            (IpAddr::V6(d), IpAddr::V6(g)) => {
                let mut b = RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                    .destination_prefix(d, prefix)
                    .gateway(g);
                if let Some(m) = metric {
                    b = b.priority(m);
                }
                b.build()
            }
            _ => {
                return Err(BridgeError::Netlink {
                    what: format!("route {dest}/{prefix} via {gateway}"),
                    message: "address families differ".into(),
                    errno: None,
                });
            }
        };
        self.handle.route().add(msg).execute().await.map_err(|e| {
            BridgeError::netlink(format!("cannot add route {dest}/{prefix} via {gateway}"), e)
        })
    }

    /// Delete a link we created, by index, after checking that the index
    /// still carries the name we gave it (an index is reused once freed).
    pub async fn delete_link(&self, name: &str, index: u32) -> Result<(), BridgeError> {
        match self.link_index(name).await? {
            Some(i) if i == index => self
                .handle
                .link()
                .del(index)
                .execute()
                .await
                .map_err(|e| BridgeError::netlink(format!("cannot delete bridge '{name}'"), e)),
            // Gone already, or someone else's link now: nothing of ours.
            _ => Ok(()),
        }
    }
}

/// ENODEV without a libc dependency.
const fn libc_enodev() -> i32 {
    19
}

pub fn parse_mac(mac: &str) -> Option<Vec<u8>> {
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    (bytes.len() == 6).then_some(bytes)
}
