//! Errors of the conf layer, with libvirt's message prefixes so that a
//! driver can hand them to clients unchanged.

use crate::xml::ParseError;

/// Which libvirt error number a conf failure corresponds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfErrorKind {
    /// VIR_ERR_XML_DETAIL: the document is not well-formed XML.
    XmlDetail,
    /// VIR_ERR_XML_ERROR: well-formed but semantically wrong.
    XmlError,
    /// VIR_ERR_NO_NAME.
    NoName,
    /// VIR_ERR_INTERNAL_ERROR.
    Internal,
    /// VIR_ERR_INVALID_ARG.
    InvalidArg,
    /// VIR_ERR_CONFIG_UNSUPPORTED.
    ConfigUnsupported,
    /// VIR_ERR_OPERATION_FAILED.
    OperationFailed,
}

/// A conf failure: its kind and libvirt's full message (prefix included).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfError {
    pub kind: ConfErrorKind,
    pub message: String,
}

impl ConfError {
    /// "XML error: ..." (VIR_ERR_XML_ERROR).
    pub fn xml(msg: impl AsRef<str>) -> Self {
        ConfError {
            kind: ConfErrorKind::XmlError,
            message: format!("XML error: {}", msg.as_ref()),
        }
    }
    /// "internal error: ..." (VIR_ERR_INTERNAL_ERROR).
    pub fn internal(msg: impl AsRef<str>) -> Self {
        ConfError {
            kind: ConfErrorKind::Internal,
            message: format!("internal error: {}", msg.as_ref()),
        }
    }
    /// "invalid argument: ..." (VIR_ERR_INVALID_ARG).
    pub fn invalid_arg(msg: impl AsRef<str>) -> Self {
        ConfError {
            kind: ConfErrorKind::InvalidArg,
            message: format!("invalid argument: {}", msg.as_ref()),
        }
    }
    /// "unsupported configuration: ..." (VIR_ERR_CONFIG_UNSUPPORTED).
    pub fn unsupported(msg: impl AsRef<str>) -> Self {
        ConfError {
            kind: ConfErrorKind::ConfigUnsupported,
            message: format!("unsupported configuration: {}", msg.as_ref()),
        }
    }
    /// "operation failed: ..." (VIR_ERR_OPERATION_FAILED).
    pub fn operation_failed(msg: impl AsRef<str>) -> Self {
        ConfError {
            kind: ConfErrorKind::OperationFailed,
            message: format!("operation failed: {}", msg.as_ref()),
        }
    }
    /// VIR_ERR_XML_DETAIL with a bare message (libvirt reports some
    /// semantic errors this way).
    pub fn detail(msg: impl Into<String>) -> Self {
        ConfError {
            kind: ConfErrorKind::XmlDetail,
            message: msg.into(),
        }
    }
    /// VIR_ERR_NO_NAME with libvirt's bare message.
    pub fn no_name() -> Self {
        ConfError {
            kind: ConfErrorKind::NoName,
            message: "missing name information".into(),
        }
    }
}

impl From<ParseError> for ConfError {
    fn from(e: ParseError) -> Self {
        ConfError {
            kind: ConfErrorKind::XmlDetail,
            message: e.to_string(),
        }
    }
}

/// Parse a document and check its root element name, as libvirt's
/// virXMLParse does with its expected root.
pub fn parse_root(doc: &str, root: &str) -> Result<crate::Element, ConfError> {
    let el = crate::xml::parse(doc)?;
    if el.name != root {
        return Err(ConfError::xml(format!(
            "expecting root element of '{root}', not '{}'",
            el.name
        )));
    }
    Ok(el)
}

/// Validate an optional UUID string; libvirt reports a malformed one as an
/// internal error ("malformed uuid element").
pub fn parse_uuid(text: Option<String>) -> Result<uuid::Uuid, ConfError> {
    match text {
        None => Ok(uuid::Uuid::new_v4()),
        Some(t) => {
            parse_uuid_str(t.trim()).ok_or_else(|| ConfError::internal("malformed uuid element"))
        }
    }
}

/// libvirt accepts UUIDs with or without dashes.
pub fn parse_uuid_str(s: &str) -> Option<uuid::Uuid> {
    let hex: String = s.chars().filter(|c| *c != '-' && *c != ' ').collect();
    if hex.len() != 32 {
        return None;
    }
    uuid::Uuid::parse_str(&hex).ok()
}
