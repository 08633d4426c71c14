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
        let mut err = VirtError::from_status(&status);
        // A transport failure's Status says only "tcp connect error"; the
        // cause that tells the user what to fix ("Connection refused", "No
        // such file or directory") is at the end of its source chain.
        if err.domain == ErrorDomain::Rpc
            && let Some(cause) = root_cause(&status)
            && !err.message.contains(&cause)
        {
            err.message = if err.message.is_empty() {
                cause
            } else {
                format!("{}: {cause}", err.message)
            };
        }
        if err.domain == ErrorDomain::Rpc {
            err.message = strip_os_error(&err.message);
        }
        Error::Virt(err)
    }
}

/// Remove Rust's " (os error N)" suffixes: libvirt prints strerror text
/// alone.
pub(crate) fn strip_os_error(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(" (os error ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + " (os error ".len()..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with(')') {
            rest = &tail[digits + 1..];
        } else {
            out.push_str(" (os error ");
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// The innermost error under `status`, without Rust's " (os error N)".
pub(crate) fn root_cause(status: &tonic::Status) -> Option<String> {
    let mut src = std::error::Error::source(status);
    let mut last = None;
    while let Some(e) = src {
        last = Some(e.to_string());
        src = e.source();
    }
    last.map(|s| strip_os_error(&s))
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
    fn os_error_suffixes_are_dropped() {
        assert_eq!(
            strip_os_error("No such file or directory (os error 2)"),
            "No such file or directory"
        );
        assert_eq!(
            strip_os_error("a (os error 111): b (os error x)"),
            "a: b (os error x)"
        );
    }

    #[test]
    fn transport_failures_are_recognised() {
        let err = Error::from(tonic::Status::unavailable("connection refused"));
        assert!(err.is_transport());
    }
}
