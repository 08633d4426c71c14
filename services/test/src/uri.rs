//! Which host a connection URI names.

use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

/// The default host's URI.
pub const DEFAULT_URI: &str = "test:///default";

/// A host the test driver serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostKey {
    /// `test:///default`: the built-in host.
    Default,
    /// `test:///ABSOLUTE/PATH.xml`: a custom node file.
    File(String),
}

impl HostKey {
    /// The canonical URI, as virConnectGetURI returns it.
    pub fn uri(&self) -> String {
        match self {
            HostKey::Default => DEFAULT_URI.to_owned(),
            HostKey::File(p) => format!("test://{p}"),
        }
    }
}

/// Parse a URI (None = the default).  Anything but `test:///default` or
/// `test:///absolute/path` is refused with VIR_ERR_INVALID_ARG naming it.
pub fn parse(uri: Option<&str>) -> Result<HostKey, VirtError> {
    let uri = match uri.map(str::trim) {
        None | Some("") => return Ok(HostKey::Default),
        Some(u) => u,
    };
    let bad = || {
        VirtError::new(
            ErrorCode::InvalidArg,
            ErrorDomain::Test,
            format!(
                "invalid argument: URI '{uri}' is not served by the test driver (expected test:///default or test:///ABSOLUTE/PATH.xml)"
            ),
        )
    };
    // Query parameters carry nothing the test driver uses.
    let base = uri.split('?').next().unwrap_or(uri);
    let path = base.strip_prefix("test://").ok_or_else(bad)?;
    // test://host/path is a remote URI; we only serve local ones.
    if !path.starts_with('/') {
        return Err(bad());
    }
    if path == "/default" {
        return Ok(HostKey::Default);
    }
    if path.len() < 2 || path.contains('\0') {
        return Err(bad());
    }
    Ok(HostKey::File(path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(parse(None).unwrap(), HostKey::Default);
        assert_eq!(parse(Some("test:///default")).unwrap(), HostKey::Default);
        assert_eq!(
            parse(Some("test:///tmp/x.xml")).unwrap(),
            HostKey::File("/tmp/x.xml".into())
        );
        let e = parse(Some("qemu:///system")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArg);
        assert!(e.message.contains("qemu:///system"));
        assert!(parse(Some("test://remote/default")).is_err());
    }
}
