//! Host links over rtnetlink, as libvirt's util/virnetdev*.c: look links
//! up, create bridges (with addresses and routes), macvtaps, enslave and
//! bring links up, and delete only the links a caller created.
//!
//! A connection's socket belongs to the network namespace of the thread
//! that opened it: a service running in a namespace (the tests) opens its
//! connection from a thread in that namespace and works there.

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{
    BridgeStpState, InfoBridge, LinkAttribute, LinkMessage, MacVtapMode,
};
use rtnetlink::{Handle, LinkBridge, LinkMacVtap, LinkUnspec};
use std::net::IpAddr;

/// errno values callers tell apart (no libc dependency for two numbers).
pub const EEXIST: i32 = 17;
pub const ENODEV: i32 = 19;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    /// `what` says which operation; `message` is the kernel's errno text.
    #[error("{what}: {message}")]
    Kernel {
        what: String,
        message: String,
        /// The errno, when the kernel gave one.
        errno: Option<i32>,
    },
    #[error("invalid MAC address '{0}'")]
    Mac(String),
}

impl NetlinkError {
    fn kernel(what: String, e: rtnetlink::Error) -> NetlinkError {
        let errno = match &e {
            rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
            _ => None,
        };
        let message = match errno {
            Some(n) if n != 0 => errno_text(n),
            _ => e.to_string(),
        };
        NetlinkError::Kernel {
            what,
            message,
            errno,
        }
    }

    fn other(what: String, message: &str) -> NetlinkError {
        NetlinkError::Kernel {
            what,
            message: message.to_owned(),
            errno: None,
        }
    }

    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { errno, .. } => *errno,
            NetlinkError::Socket(e) => e.raw_os_error(),
            NetlinkError::Mac(_) => None,
        }
    }

    /// The kernel's text alone ("File exists"), for libvirt's messages.
    pub fn message(&self) -> String {
        match self {
            NetlinkError::Kernel { message, .. } => message.clone(),
            NetlinkError::Socket(e) => e.to_string(),
            NetlinkError::Mac(_) => self.to_string(),
        }
    }
}

/// strerror's text alone ("File exists"), as libvirt's messages end,
/// without std's " (os error N)".
pub fn errno_text(n: i32) -> String {
    let full = std::io::Error::from_raw_os_error(n).to_string();
    match full.rfind(" (os error ") {
        Some(i) => full[..i].to_owned(),
        None => full,
    }
}

/// macvtap modes by libvirt's names (`<source mode=...>`, `<forward mode=...>`).
pub fn macvtap_mode(name: &str) -> Option<MacVtapMode> {
    Some(match name {
        "vepa" => MacVtapMode::Vepa,
        "bridge" => MacVtapMode::Bridge,
        "private" => MacVtapMode::Private,
        "passthrough" => MacVtapMode::Passthrough,
        _ => return None,
    })
}

/// `52:54:00:0a:00:05` as six bytes; `None` for anything else.
pub fn parse_mac(mac: &str) -> Option<Vec<u8>> {
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    (bytes.len() == 6).then_some(bytes)
}

/// The first `prefixN` not in `taken`, as libvirt names `macvtap0`, `vnet0`.
pub fn free_name(prefix: &str, taken: &[String]) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|n| !taken.contains(n))
        .unwrap_or_else(|| format!("{prefix}x"))
}

/// A netlink connection (cheap to clone).
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
    /// Needs a tokio runtime: the connection runs as a task.
    pub fn open() -> Result<Netlink, NetlinkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The ifindex of a link, `None` when there is none.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Some(msg.header.index)),
            Ok(None) => Ok(None),
            // A missing link is ENODEV, not an empty answer (HOST.md).
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == ENODEV => Ok(None),
            Err(e) => Err(NetlinkError::kernel(
                format!("cannot look up link '{name}'"),
                e,
            )),
        }
    }

    /// The names of every link in this namespace.
    pub async fn link_names(&self) -> Result<Vec<String>, NetlinkError> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetlinkError::kernel("cannot list links".into(), e))?;
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

    /// The MAC address of a link, `None` when there is no such link.
    pub async fn link_mac(&self, name: &str) -> Result<Option<Vec<u8>>, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(msg.attributes.iter().find_map(|a| match a {
                LinkAttribute::Address(m) => Some(m.clone()),
                _ => None,
            })),
            Ok(None) => Ok(None),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == ENODEV => Ok(None),
            Err(e) => Err(NetlinkError::kernel(
                format!("cannot look up link '{name}'"),
                e,
            )),
        }
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
    ) -> Result<u32, NetlinkError> {
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
            b = b.address(parse_mac(mac).ok_or_else(|| NetlinkError::Mac(mac.to_owned()))?);
        }
        self.handle
            .link()
            .add(b.build())
            .execute()
            .await
            .map_err(|e| NetlinkError::kernel(format!("cannot create bridge '{name}'"), e))?;
        self.link_index(name).await?.ok_or_else(|| {
            NetlinkError::other(format!("bridge '{name}'"), "vanished right after creation")
        })
    }

    /// Create a macvtap link, up; returns its ifindex. An existing name
    /// fails with EEXIST and is left alone.
    pub async fn create_macvtap(
        &self,
        name: &str,
        parent: u32,
        mode: MacVtapMode,
        mac: Option<&[u8]>,
    ) -> Result<u32, NetlinkError> {
        let mut b = LinkMacVtap::new(name, parent, mode).up();
        if let Some(mac) = mac {
            b = b.address(mac.to_vec());
        }
        self.handle
            .link()
            .add(b.build())
            .execute()
            .await
            .map_err(|e| NetlinkError::kernel(format!("cannot create macvtap '{name}'"), e))?;
        self.link_index(name).await?.ok_or_else(|| {
            NetlinkError::other(format!("macvtap '{name}'"), "vanished right after creation")
        })
    }

    pub async fn add_address(
        &self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        self.handle
            .address()
            .add(index, addr, prefix)
            .execute()
            .await
            .map_err(|e| NetlinkError::kernel(format!("cannot add address {addr}/{prefix}"), e))
    }

    pub async fn set_up(&self, index: u32) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| NetlinkError::kernel(format!("cannot bring link {index} up"), e))
    }

    /// Give link `index` its MAC (when given), enslave it to `bridge`
    /// (when given) and bring it up, in one request.
    pub async fn attach_up(
        &self,
        index: u32,
        bridge: Option<u32>,
        mac: Option<&[u8]>,
    ) -> Result<(), NetlinkError> {
        let mut b = LinkUnspec::new_with_index(index).up();
        if let Some(mac) = mac {
            b = b.address(mac.to_vec());
        }
        if let Some(br) = bridge {
            b = b.controller(br);
        }
        self.handle
            .link()
            .set(b.build())
            .execute()
            .await
            .map_err(|e| NetlinkError::kernel(format!("cannot set up link {index}"), e))
    }

    /// Add a static route via a gateway.
    pub async fn add_route(
        &self,
        dest: IpAddr,
        prefix: u8,
        gateway: IpAddr,
        metric: Option<u32>,
    ) -> Result<(), NetlinkError> {
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
                return Err(NetlinkError::other(
                    format!("route {dest}/{prefix} via {gateway}"),
                    "address families differ",
                ));
            }
        };
        self.handle.route().add(msg).execute().await.map_err(|e| {
            NetlinkError::kernel(format!("cannot add route {dest}/{prefix} via {gateway}"), e)
        })
    }

    /// Delete a link we created, only if `name` still has the index we
    /// recorded: an index is reused once freed, and a name may have been
    /// taken by someone else since. A link already gone is not an error.
    pub async fn delete_link(&self, name: &str, index: u32) -> Result<(), NetlinkError> {
        match self.link_index(name).await? {
            Some(i) if i == index => match self.handle.link().del(index).execute().await {
                Ok(()) => Ok(()),
                // Gone in between (QEMU's exit takes a tap with it).
                Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == ENODEV => Ok(()),
                Err(e) => Err(NetlinkError::kernel(
                    format!("cannot delete link '{name}'"),
                    e,
                )),
            },
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_names_modes_errnos() {
        assert_eq!(
            parse_mac("52:54:00:0a:00:05"),
            Some(vec![0x52, 0x54, 0, 0x0a, 0, 5])
        );
        assert_eq!(parse_mac("52:54:00"), None);
        assert_eq!(parse_mac("zz:54:00:0a:00:05"), None);
        assert_eq!(
            free_name("macvtap", &["macvtap0".into(), "lo".into()]),
            "macvtap1"
        );
        assert!(macvtap_mode("bridge").is_some());
        assert!(macvtap_mode("bogus").is_none());
        assert_eq!(errno_text(EEXIST), "File exists");
        assert_eq!(errno_text(ENODEV), "No such device");
    }
}
