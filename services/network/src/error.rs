//! How the layers' errors become libvirt errors (DESIGN.md §4): libvirt's
//! code and wording, VIR_FROM_NETWORK, and the cause kept in the message
//! (dnsmasq's stderr, nft's complaint, the netlink errno).

use virtmesh_conf::ConfError;
use virtmesh_conf::error::ConfErrorKind;
use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

pub type Result<T, E = VirtError> = std::result::Result<T, E>;

pub fn net(code: ErrorCode, msg: impl Into<String>) -> VirtError {
    VirtError::new(code, ErrorDomain::Network, msg)
}

pub fn unimplemented(call: &str) -> VirtError {
    VirtError::unimplemented("network", call, ErrorDomain::Network)
}

pub fn no_network_name(name: &str) -> VirtError {
    net(
        ErrorCode::NoNetwork,
        format!("Network not found: no network with matching name '{name}'"),
    )
}

pub fn no_network_uuid(uuid: &str) -> VirtError {
    net(
        ErrorCode::NoNetwork,
        format!("Network not found: no network with matching uuid '{uuid}'"),
    )
}

pub fn invalid_op(what: &str) -> VirtError {
    net(
        ErrorCode::OperationInvalid,
        format!("Requested operation is not valid: {what}"),
    )
}

pub fn already_active() -> VirtError {
    invalid_op("network is already active")
}

pub fn not_active() -> VirtError {
    invalid_op("network is not active")
}

pub fn operation_failed(msg: impl std::fmt::Display) -> VirtError {
    net(
        ErrorCode::OperationFailed,
        format!("operation failed: {msg}"),
    )
}

pub fn unsupported(msg: impl std::fmt::Display) -> VirtError {
    net(
        ErrorCode::ConfigUnsupported,
        format!("unsupported configuration: {msg}"),
    )
}

pub fn invalid_arg(msg: impl std::fmt::Display) -> VirtError {
    net(ErrorCode::InvalidArg, format!("invalid argument: {msg}"))
}

pub fn missing_ref() -> VirtError {
    invalid_arg("a network reference (uuid or name) is required")
}

pub fn internal(msg: impl std::fmt::Display) -> VirtError {
    net(ErrorCode::InternalError, format!("internal error: {msg}"))
}

/// A host-side failure (netlink, files, processes): VIR_ERR_SYSTEM_ERROR
/// with the cause in the message, as libvirt's virReportSystemError.
pub fn system(msg: impl std::fmt::Display) -> VirtError {
    net(ErrorCode::SystemError, msg.to_string())
}

/// A firewall failure: libvirt reports a failed firewall command as
/// VIR_ERR_INTERNAL_ERROR from VIR_FROM_FIREWALL.
pub fn firewall(msg: impl std::fmt::Display) -> VirtError {
    VirtError::new(
        ErrorCode::InternalError,
        ErrorDomain::Firewall,
        format!("internal error: {msg}"),
    )
}

pub fn conf(e: ConfError) -> VirtError {
    let code = match e.kind {
        ConfErrorKind::XmlDetail => ErrorCode::XmlDetail,
        ConfErrorKind::XmlError => ErrorCode::XmlError,
        ConfErrorKind::NoName => ErrorCode::NoName,
        ConfErrorKind::Internal => ErrorCode::InternalError,
        ConfErrorKind::InvalidArg => ErrorCode::InvalidArg,
        ConfErrorKind::ConfigUnsupported => ErrorCode::ConfigUnsupported,
        ConfErrorKind::OperationFailed => ErrorCode::OperationFailed,
    };
    // libvirt's network XML parser reports from VIR_FROM_NETWORK.
    VirtError::new(code, ErrorDomain::Network, e.message)
}
