//! The property every fuzz target checks, for any document kind: parsing
//! never panics, and whatever parses formats to XML that parses again and
//! formats to the very same string (a define / dumpxml / define cycle must
//! not drift).

/// Fuzz input as text; libvirt reads XML documents as UTF-8, so inputs that
/// are not are of no interest.
pub fn as_text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Parse `text` with `parse`; on success format it with `format`, parse the
/// output again and require it to format identically.  Panics (a fuzz
/// finding) when the formatted output is rejected or drifts.
pub fn round_trip<T, E: std::fmt::Debug>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, E>,
    format: impl Fn(&T) -> String,
) {
    let Ok(def) = parse(text) else { return };
    let first = format(&def);
    let again = match parse(&first) {
        Ok(d) => d,
        Err(e) => panic!(
            "formatted output does not parse again: {e:?}\n--- input\n{text}\n--- formatted\n{first}"
        ),
    };
    let second = format(&again);
    assert_eq!(
        first, second,
        "format is not stable across a re-parse\n--- input\n{text}"
    );
}
