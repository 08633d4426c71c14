//! Scaled integers as libvirt's virScaleInteger reads them
//! (`<memory unit='MiB'>`, `<capacity unit='G'>`).

use crate::ConfError;

/// Bytes per unit for a libvirt unit suffix; `None` for an unknown suffix.
/// As virScaleInteger, "b", "byte" and "bytes" in any case are bytes
/// (libvirt itself formats `<clusterSize unit='B'>`).
pub fn unit_bytes(unit: &str) -> Option<u64> {
    if unit.is_empty()
        || ["b", "byte", "bytes"]
            .iter()
            .any(|b| unit.eq_ignore_ascii_case(b))
    {
        return Some(1);
    }
    let mut chars = unit.chars();
    let first = chars.next()?.to_ascii_lowercase();
    let rest: String = chars.collect::<String>().to_ascii_lowercase();
    let power = match first {
        'k' => 1,
        'm' => 2,
        'g' => 3,
        't' => 4,
        'p' => 5,
        'e' => 6,
        _ => return None,
    };
    let base: u64 = match rest.as_str() {
        "" | "ib" => 1024,
        "b" => 1000,
        _ => return None,
    };
    base.checked_pow(power)
}

/// `value` in `unit` (default `default_unit`) expressed in bytes.
pub fn scale_to_bytes(
    value: u64,
    unit: Option<&str>,
    default_unit: &str,
) -> Result<u64, ConfError> {
    // An empty unit='' is no unit (virXPathString gives NULL for it).
    let unit = unit.filter(|u| !u.is_empty()).unwrap_or(default_unit);
    let mult = unit_bytes(unit)
        .ok_or_else(|| ConfError::invalid_arg(format!("unknown suffix '{unit}'")))?;
    value
        .checked_mul(mult)
        .ok_or_else(|| ConfError::unsupported(format!("value too large: {value}{unit}")))
}

/// Like [`scale_to_bytes`] but in KiB, rounding up as libvirt does for
/// memory sizes.
pub fn scale_to_kib(value: u64, unit: Option<&str>) -> Result<u64, ConfError> {
    let bytes = scale_to_bytes(value, unit, "KiB")?;
    Ok(bytes.div_ceil(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(scale_to_kib(128, Some("MiB")).unwrap(), 131072);
        assert_eq!(scale_to_kib(1, Some("G")).unwrap(), 1048576);
        assert_eq!(scale_to_kib(1000, Some("KB")).unwrap(), 977);
        assert_eq!(scale_to_kib(5, None).unwrap(), 5);
        assert_eq!(scale_to_kib(5, Some("")).unwrap(), 5);
        assert_eq!(scale_to_bytes(7, Some("B"), "KiB").unwrap(), 7);
        assert_eq!(scale_to_bytes(7, Some("Bytes"), "KiB").unwrap(), 7);
        assert_eq!(scale_to_bytes(7, Some("byte"), "KiB").unwrap(), 7);
        assert_eq!(
            scale_to_kib(1, Some("furlongs")).unwrap_err().message,
            "invalid argument: unknown suffix 'furlongs'"
        );
    }
}
