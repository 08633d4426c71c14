//! The runtime every virtmesh service shares: serving on TCP or a unix
//! socket with health and reflection, the error model (libvirt's error
//! names carried in `google.rpc.ErrorInfo`), tracing set-up, and channels to
//! peer services with connect and call timeouts.

pub mod addr;
pub mod client;
pub mod error;
pub mod events;
pub mod meta;
pub mod serve;
pub mod telemetry;

pub use addr::ListenAddr;
pub use error::{ErrorCode, ErrorDomain, VirtError};
