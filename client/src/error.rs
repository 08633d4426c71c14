//! The client's error type: every failure is a libvirt-style [`VirtError`]
//! (code, domain, message) so callers can match on libvirt's error names.

use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A failure reported by virtmesh, or by the transport underneath it.
    #[error("{0}")]
    Virt(#[from] VirtError),
    /// The connection URI cannot travel in a gRPC header.
    #[error("invalid connection URI '{0}'")]
    InvalidUri(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Error::Virt(VirtError::from_status(&status))
    }
}

impl Error {
    /// libvirt's error number for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Virt(e) => e.code,
            Error::InvalidUri(_) => ErrorCode::InvalidArg,
        }
    }

    /// libvirt's error domain (which part raised it).
    pub fn domain(&self) -> ErrorDomain {
        match self {
            Error::Virt(e) => e.domain,
            Error::InvalidUri(_) => ErrorDomain::Remote,
        }
    }

    /// The message as libvirt words it.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// True when the failure says nothing about the object looked up but
    /// about reaching the server at all: a lookup chain must stop there
    /// rather than try the next key kind and hide the real cause.
    pub fn is_transport(&self) -> bool {
        matches!(
            self.code(),
            ErrorCode::Rpc
                | ErrorCode::NoConnect
                | ErrorCode::OpenFailed
                | ErrorCode::AuthFailed
                | ErrorCode::AccessDenied
                | ErrorCode::InvalidConn
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_keeps_libvirt_code_and_message() {
        let status = tonic::Status::from(VirtError::new(
            ErrorCode::NoNetwork,
            ErrorDomain::Network,
            "Network not found: no network with matching name 'x'",
        ));
        let err = Error::from(status);
        assert_eq!(err.code(), ErrorCode::NoNetwork);
        assert_eq!(
            err.to_string(),
            "Network not found: no network with matching name 'x'"
        );
        assert!(!err.is_transport());
    }

    #[test]
    fn transport_failures_are_recognised() {
        let err = Error::from(tonic::Status::unavailable("connection refused"));
        assert!(err.is_transport());
    }
}
