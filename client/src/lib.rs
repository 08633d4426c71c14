//! virtmesh's Rust client: a [`Connection`] to the gateway that stamps the
//! connection URI on every call, lookup helpers that follow virsh's rules,
//! and [`vsh`], the virsh-compatible command line tool.

pub mod connection;
pub mod error;
pub mod lookup;
pub mod vsh;

pub use connection::{Connection, Intercepted, UriInterceptor};
pub use error::{Error, Result};
pub use lookup::{by_id, by_name, by_uuid};
pub use virtmesh_rpc::{ErrorCode, ErrorDomain, ListenAddr, VirtError};
