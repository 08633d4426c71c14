//! Small formatting helpers shared by the command modules, each mirroring a
//! helper in libvirt's tools/ (vshPrettyCapacity, virFileReadAll's errors,
//! glib's base64, virTimeStringNowRaw).

use std::time::{SystemTime, UNIX_EPOCH};

/// vshPrettyCapacity: a byte count scaled to the largest binary unit below
/// 1024 of it.
pub fn pretty_capacity(val: u64) -> (f64, &'static str) {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut limit: u128 = 1024;
    for (i, unit) in UNITS.iter().enumerate() {
        if u128::from(val) < limit || i == UNITS.len() - 1 {
            let div = limit / 1024;
            return (val as f64 / div as f64, unit);
        }
        limit *= 1024;
    }
    (val as f64, "B")
}

/// `%.2lf %s` of [`pretty_capacity`], as pool-info and vol-list print it.
pub fn capacity_2(val: u64) -> String {
    let (v, unit) = pretty_capacity(val);
    format!("{v:.2} {unit}")
}

/// virsh's yes/no.
pub fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Read an XML (or other) file the way virsh does, with its error text:
/// `Failed to open file 'x': No such file or directory`.
pub fn read_file(path: &str) -> Result<String, String> {
    std::fs::read(path)
        .map_err(|e| format!("Failed to open file '{path}': {}", strerror(&e)))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub fn read_file_bytes(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("Failed to open file '{path}': {}", strerror(&e)))
}

/// The C library's strerror text: Rust's io::Error display appends
/// " (os error N)", which virsh never prints.
pub fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (glib's g_base64_encode).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Lenient base64 decoding like glib's g_base64_decode: characters outside
/// the alphabet (newlines, spaces) are skipped, decoding stops at '='.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        if c == b'=' {
            break;
        }
        let Some(v) = B64.iter().position(|&x| x == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// virTimeStringNowRaw: `YYYY-MM-DD HH:MM:SS.mmm+0000`, in UTC.
pub fn time_string_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    time_string(d.as_secs(), d.subsec_millis())
}

pub fn time_string(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{millis:03}+0000",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// `%Y-%m-%d %H:%M:%S %z` as virsh prints snapshot creation times. virsh
/// uses local time; vsh prints UTC (identical where TZ is UTC, as in
/// containers).
pub fn time_string_z(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil conversion (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_as_virsh_prints_them() {
        // pool-info default-pool on test:///default
        assert_eq!(capacity_2(107_374_182_400), "100.00 GiB");
        assert_eq!(capacity_2(0), "0.00 B");
        assert_eq!(capacity_2(1_073_741_824), "1.00 GiB");
        assert_eq!(capacity_2(1536), "1.50 KiB");
        assert_eq!(capacity_2(u64::MAX), "16.00 EiB");
    }

    #[test]
    fn base64_round_trip() {
        for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            assert_eq!(base64_decode(&base64_encode(s.as_bytes())), s.as_bytes());
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode("Zm9v\nYmFy\n"), b"foobar");
    }

    #[test]
    fn strerror_drops_os_error_suffix() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(strerror(&e), "No such file or directory");
    }

    #[test]
    fn time_string_is_utc() {
        assert_eq!(time_string(0, 5), "1970-01-01 00:00:00.005+0000");
        assert_eq!(
            time_string(1_795_653_325, 0),
            "2026-11-26 00:35:25.000+0000"
        );
        assert_eq!(time_string_z(1_795_654_590), "2026-11-26 00:56:30 +0000");
    }
}
