//! Constructors for the errors the test driver raises, with libvirt's
//! message prefixes (virerror.c) so clients see libvirt's exact wording.

use virtmesh_conf::{ConfError, ConfErrorKind};
use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

pub type VResult<T> = std::result::Result<T, VirtError>;

fn test(code: ErrorCode, msg: String) -> VirtError {
    VirtError::new(code, ErrorDomain::Test, msg)
}

/// "Requested operation is not valid: ..." (VIR_ERR_OPERATION_INVALID).
pub fn op_invalid(msg: impl AsRef<str>) -> VirtError {
    test(
        ErrorCode::OperationInvalid,
        format!("Requested operation is not valid: {}", msg.as_ref()),
    )
}

/// "operation failed: ..." (VIR_ERR_OPERATION_FAILED).
pub fn op_failed(domain: ErrorDomain, msg: impl AsRef<str>) -> VirtError {
    VirtError::new(
        ErrorCode::OperationFailed,
        domain,
        format!("operation failed: {}", msg.as_ref()),
    )
}

/// "internal error: ..." (VIR_ERR_INTERNAL_ERROR).
pub fn internal(msg: impl AsRef<str>) -> VirtError {
    test(
        ErrorCode::InternalError,
        format!("internal error: {}", msg.as_ref()),
    )
}

/// VIR_ERR_SYSTEM_ERROR: a host call failed (the message says which).
pub fn system(msg: impl AsRef<str>) -> VirtError {
    test(ErrorCode::SystemError, msg.as_ref().to_owned())
}

/// "invalid argument: ..." (VIR_ERR_INVALID_ARG).
pub fn invalid_arg(msg: impl AsRef<str>) -> VirtError {
    test(
        ErrorCode::InvalidArg,
        format!("invalid argument: {}", msg.as_ref()),
    )
}

/// "Operation not supported: ..." (VIR_ERR_OPERATION_UNSUPPORTED).
pub fn unsupported(msg: impl AsRef<str>) -> VirtError {
    test(
        ErrorCode::OperationUnsupported,
        format!("Operation not supported: {}", msg.as_ref()),
    )
}

/// A call the test driver does not implement.
pub fn unimplemented(call: &str) -> VirtError {
    VirtError::unimplemented("test", call, ErrorDomain::Test)
}

/// "<Kind> not found: ..." for each object family.
pub fn not_found(code: ErrorCode, detail: impl AsRef<str>) -> VirtError {
    let prefix = match code {
        ErrorCode::NoDomain => "Domain not found",
        ErrorCode::NoNetwork => "Network not found",
        ErrorCode::NoStoragePool => "Storage pool not found",
        ErrorCode::NoStorageVol => "Storage volume not found",
        ErrorCode::NoSecret => "Secret not found",
        ErrorCode::NoNwfilter => "Network filter not found",
        ErrorCode::NoNwfilterBinding => "Network filter binding not found",
        ErrorCode::NoInterface => "Interface not found",
        ErrorCode::NoNodeDevice => "Node device not found",
        ErrorCode::NoDomainSnapshot => "Domain snapshot not found",
        ErrorCode::NoDomainMetadata => "metadata not found",
        _ => "not found",
    };
    test(code, format!("{prefix}: {}", detail.as_ref()))
}

/// A conf-layer failure, in the error domain of the document kind.
pub fn conf(e: ConfError, domain: ErrorDomain) -> VirtError {
    let code = match e.kind {
        ConfErrorKind::XmlDetail => ErrorCode::XmlDetail,
        ConfErrorKind::XmlError => ErrorCode::XmlError,
        ConfErrorKind::NoName => ErrorCode::NoName,
        ConfErrorKind::Internal => ErrorCode::InternalError,
        ConfErrorKind::InvalidArg => ErrorCode::InvalidArg,
        ConfErrorKind::ConfigUnsupported => ErrorCode::ConfigUnsupported,
        ConfErrorKind::OperationFailed => ErrorCode::OperationFailed,
    };
    VirtError::new(code, domain, e.message)
}

/// A required request field that was left out.
pub fn missing(what: &str) -> VirtError {
    invalid_arg(format!("{what} must be specified"))
}

/// libvirt's virCheckFlags failure: VIR_ERR_INVALID_ARG with a bare
/// message naming the flags and the driver function.
pub fn unsupported_flags(flags: u32, function: &str) -> VirtError {
    test(
        ErrorCode::InvalidArg,
        format!("unsupported flags (0x{flags:x}) in function {function}"),
    )
}
