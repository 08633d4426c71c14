//! libvirt's errors for the storage driver: its codes and wording, from
//! VIR_FROM_STORAGE, with the cause (errno text, qemu-img's stderr) kept.

use virtmesh_conf::ConfError;
use virtmesh_conf::error::ConfErrorKind;
use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

pub type Result<T, E = VirtError> = std::result::Result<T, E>;

pub fn storage(code: ErrorCode, msg: impl Into<String>) -> VirtError {
    VirtError::new(code, ErrorDomain::Storage, msg)
}

pub fn unimplemented(call: &str) -> VirtError {
    VirtError::unimplemented("storage", call, ErrorDomain::Storage)
}

/// VIR_ERR_NO_SUPPORT with libvirt's prefix.
pub fn no_support(msg: impl std::fmt::Display) -> VirtError {
    storage(
        ErrorCode::NoSupport,
        format!("this function is not supported by the connection driver: {msg}"),
    )
}

pub fn no_pool(what: &str, value: &str) -> VirtError {
    storage(
        ErrorCode::NoStoragePool,
        format!("Storage pool not found: no storage pool with matching {what} '{value}'"),
    )
}

/// VIR_ERR_NO_STORAGE_VOL; `detail` is libvirt's text after the prefix
/// ("no storage vol with matching name 'x'", "... matching key x").
pub fn no_vol(detail: impl std::fmt::Display) -> VirtError {
    storage(
        ErrorCode::NoStorageVol,
        format!("Storage volume not found: {detail}"),
    )
}

pub fn invalid_op(msg: impl std::fmt::Display) -> VirtError {
    storage(
        ErrorCode::OperationInvalid,
        format!("Requested operation is not valid: {msg}"),
    )
}

pub fn not_active(name: &str) -> VirtError {
    invalid_op(format!("storage pool '{name}' is not active"))
}

pub fn already_active(name: &str) -> VirtError {
    invalid_op(format!("storage pool '{name}' is already active"))
}

pub fn still_active(name: &str) -> VirtError {
    invalid_op(format!("storage pool '{name}' is still active"))
}

pub fn operation_failed(msg: impl std::fmt::Display) -> VirtError {
    storage(
        ErrorCode::OperationFailed,
        format!("operation failed: {msg}"),
    )
}

pub fn invalid_arg(msg: impl std::fmt::Display) -> VirtError {
    storage(ErrorCode::InvalidArg, format!("invalid argument: {msg}"))
}

pub fn internal(msg: impl std::fmt::Display) -> VirtError {
    storage(ErrorCode::InternalError, format!("internal error: {msg}"))
}

pub fn unsupported(msg: impl std::fmt::Display) -> VirtError {
    storage(
        ErrorCode::ConfigUnsupported,
        format!("unsupported configuration: {msg}"),
    )
}

/// virReportSystemError: VIR_ERR_SYSTEM_ERROR, "what: strerror".
pub fn system(what: impl std::fmt::Display, e: &std::io::Error) -> VirtError {
    storage(ErrorCode::SystemError, format!("{what}: {}", strerror(e)))
}

/// The C library's wording of an errno ("No such file or directory"),
/// without Rust's " (os error N)" suffix.
pub fn strerror(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_owned(),
        None => e.to_string(),
    }
}

pub fn missing_ref(what: &str) -> VirtError {
    invalid_arg(format!("a {what} reference is required"))
}

pub fn conf(e: ConfError) -> VirtError {
    // virScaleInteger's overflow is VIR_ERR_OVERFLOW ("numerical
    // overflow: value too large: …"); the conf layer has no such kind.
    if let Some(rest) = e
        .message
        .strip_prefix("unsupported configuration: value too large: ")
    {
        return storage(
            ErrorCode::Overflow,
            format!("numerical overflow: value too large: {rest}"),
        );
    }
    let code = match e.kind {
        ConfErrorKind::XmlDetail => ErrorCode::XmlDetail,
        ConfErrorKind::XmlError => ErrorCode::XmlError,
        ConfErrorKind::NoName => ErrorCode::NoName,
        ConfErrorKind::Internal => ErrorCode::InternalError,
        ConfErrorKind::InvalidArg => ErrorCode::InvalidArg,
        ConfErrorKind::ConfigUnsupported => {
            if e.message
                .starts_with("this function is not supported by the connection driver")
            {
                ErrorCode::NoSupport
            } else {
                ErrorCode::ConfigUnsupported
            }
        }
        ConfErrorKind::OperationFailed => ErrorCode::OperationFailed,
    };
    storage(code, e.message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn oversized_volumes_are_numerical_overflows() {
        let e = virtmesh_conf::storage::VolDef::parse(
            "<volume><name>v</name><capacity unit='EiB'>9</capacity></volume>",
        )
        .unwrap_err();
        let v = conf(e);
        assert_eq!(v.code, ErrorCode::Overflow);
        assert_eq!(v.message, "numerical overflow: value too large: 9EiB");
    }
}
