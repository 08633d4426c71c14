//! The metadata headers of virtmesh calls (DESIGN.md §3).

/// The connection URI of a call, e.g. `qemu:///system`.
pub const VIRT_URI: &str = "virt-uri";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The `virt-uri` of a request, if it carries one that is valid text.
pub fn virt_uri<T>(req: &tonic::Request<T>) -> Option<&str> {
    req.metadata().get(VIRT_URI).and_then(|v| v.to_str().ok())
}

/// Attach a connection URI to an outgoing request.
pub fn set_virt_uri<T>(req: &mut tonic::Request<T>, uri: &str) -> Result<(), crate::VirtError> {
    let value = uri.parse().map_err(|_| {
        crate::VirtError::new(
            crate::ErrorCode::InvalidArg,
            crate::ErrorDomain::Remote,
            format!("invalid connection URI '{uri}'"),
        )
    })?;
    req.metadata_mut().insert(VIRT_URI, value);
    Ok(())
}
