//! How the layers' errors become libvirt errors (DESIGN.md §4): the
//! libvirt code and wording, VIR_FROM_QEMU, and the cause kept in the
//! message (QEMU's stderr, QMP's error description, the errno).

use crate::process::ProcessError;
use crate::qmp::QmpError;
use crate::state::StateError;
use virtmesh_conf::ConfError;
use virtmesh_conf::error::ConfErrorKind;
use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

pub type Result<T, E = VirtError> = std::result::Result<T, E>;

pub fn qemu(code: ErrorCode, msg: impl Into<String>) -> VirtError {
    VirtError::new(code, ErrorDomain::Qemu, msg)
}

pub fn unimplemented(call: &str) -> VirtError {
    VirtError::unimplemented("qemu", call, ErrorDomain::Qemu)
}

pub fn no_domain_name(name: &str) -> VirtError {
    qemu(
        ErrorCode::NoDomain,
        format!("Domain not found: no domain with matching name '{name}'"),
    )
}

pub fn no_domain_uuid(uuid: &str) -> VirtError {
    qemu(
        ErrorCode::NoDomain,
        format!("Domain not found: no domain with matching uuid '{uuid}'"),
    )
}

pub fn no_domain_id(id: i32) -> VirtError {
    qemu(
        ErrorCode::NoDomain,
        format!("Domain not found: no domain with matching id {id}"),
    )
}

pub fn invalid_op(what: &str) -> VirtError {
    qemu(
        ErrorCode::OperationInvalid,
        format!("Requested operation is not valid: {what}"),
    )
}

pub fn not_running() -> VirtError {
    invalid_op("domain is not running")
}

pub fn missing_ref() -> VirtError {
    qemu(
        ErrorCode::InvalidArg,
        "invalid argument: a domain reference (uuid, name or id) is required",
    )
}

pub fn internal(msg: impl std::fmt::Display) -> VirtError {
    qemu(ErrorCode::InternalError, format!("internal error: {msg}"))
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
    VirtError::new(code, ErrorDomain::Domain, e.message)
}

pub fn qmp(e: QmpError) -> VirtError {
    match e {
        QmpError::Eof => qemu(
            ErrorCode::OperationFailed,
            "operation failed: domain is no longer running",
        ),
        QmpError::Timeout(_) => qemu(ErrorCode::OperationTimeout, e.to_string()),
        // Already "internal error: unable to execute QEMU command ...".
        QmpError::Command { .. } => qemu(ErrorCode::InternalError, e.to_string()),
        other => internal(other),
    }
}

pub fn process(e: ProcessError) -> VirtError {
    match e {
        // The message starts with "internal error:" and ends with QEMU's
        // own words.
        ProcessError::Exited { .. } | ProcessError::Timeout(_) => {
            qemu(ErrorCode::InternalError, e.to_string())
        }
        other => qemu(ErrorCode::SystemError, other.to_string()),
    }
}

pub fn state(e: StateError) -> VirtError {
    qemu(ErrorCode::SystemError, e.to_string())
}

pub fn probe(e: crate::probe::ProbeError) -> VirtError {
    match e {
        crate::probe::ProbeError::Missing { .. } => qemu(ErrorCode::SystemError, e.to_string()),
        other => internal(other),
    }
}
