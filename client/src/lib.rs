//! virtmesh's Rust client: a [`Connection`] to the gateway that stamps the
//! connection URI on every call, lookup helpers that follow virsh's rules,
//! and [`vsh`], the virsh-compatible command line tool.
//!
//! ```no_run
//! # async fn demo() -> virtmesh_client::Result<()> {
//! use virtmesh_client::{Connection, ListenAddr, by_uuid};
//!
//! let gateway: ListenAddr = "127.0.0.1:16509".parse().expect("valid address");
//! let conn = Connection::open(&gateway, Some("test:///default"))?;
//! conn.verify().await?; // fails fast if the gateway or the URI is wrong
//!
//! // virsh's rule: "1" is tried as an id, a UUID as a UUID, then as a name.
//! let dom = conn.lookup_domain("test").await?;
//! let info = conn.domain().get_info(by_uuid(dom.uuid)).await?.into_inner();
//! println!("{} uses {} KiB", dom.name, info.memory_kib);
//! # Ok(())
//! # }
//! ```

pub mod connection;
pub mod error;
pub mod list;
pub mod lookup;
pub mod vsh;

pub use connection::{Connection, Intercepted, UriInterceptor};
pub use error::{Error, Result};
pub use lookup::{by_id, by_name, by_uuid};
pub use virtmesh_rpc::{ErrorCode, ErrorDomain, ListenAddr, VirtError};
