//! File helpers with the durability DESIGN.md §6 asks for.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why an atomic write failed; names the file and the step.
#[derive(Debug, thiserror::Error)]
#[error("cannot write '{}' ({step}): {source}", path.display())]
pub struct WriteAtomicError {
    pub path: PathBuf,
    pub step: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// Replace `path` with `bytes` so that a crash at any instant leaves either
/// the old content or the new one, never a torn file: write a temporary
/// file in the same directory (rename is atomic only within a filesystem),
/// fsync it, rename it over `path`, then fsync the directory so the rename
/// itself is durable.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteAtomicError> {
    let err = |step| {
        move |source| WriteAtomicError {
            path: path.to_path_buf(),
            step,
            source,
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per process and call, so concurrent writers never share a
    // temporary file; the leading dot keeps it out of `*.xml` scans.
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp).map_err(err("create temporary file"))?;
        file.write_all(bytes).map_err(err("write"))?;
        file.sync_all().map_err(err("fsync"))?;
        std::fs::rename(&tmp, path).map_err(err("rename"))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err("fsync directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_creates_and_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.xml");
        write_atomic(&path, b"one").expect("first write");
        assert_eq!(std::fs::read(&path).expect("read"), b"one");
        write_atomic(&path, b"two, longer").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two, longer");
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.xml")]);
    }

    #[test]
    fn write_atomic_reports_missing_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing").join("a.xml");
        let e = write_atomic(&path, b"x").expect_err("must fail");
        assert_eq!(e.step, "create temporary file");
        assert!(e.to_string().contains("a.xml"));
    }
}
