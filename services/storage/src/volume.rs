//! Volumes as files on the host: what stat(2) and `qemu-img info` say
//! about them (libvirt's virStorageBackendUpdateVolTargetInfo), creating
//! raw files the way storageBackendCreateRaw does, and finding the
//! volumes a directory already holds (virStorageBackendRefreshLocal).

use crate::error::{self as err, Result};
use crate::qemu_img;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use virtmesh_conf::storage::{BackingStore, FILE_FORMATS, Perms, VolDef, VolStat};

/// libvirt's VIR_STORAGE_DEFAULT_VOL_PERM_MODE.
pub const DEFAULT_VOL_MODE: u32 = 0o600;

/// A volume of an active pool.
#[derive(Debug, Clone)]
pub struct Vol {
    pub name: String,
    pub path: PathBuf,
    /// "file" or "dir" (virStorageVolType).
    pub vol_type: &'static str,
    /// The definition formatted for it: the creating XML, or what probing
    /// found for a volume that was already there.
    pub def: VolDef,
}

impl Vol {
    pub fn path_str(&self) -> String {
        self.path.display().to_string()
    }
}

/// Formats whose capacity is the file size (no header to read).
fn sized_by_file(format: &str) -> bool {
    matches!(format, "raw" | "iso" | "fat" | "dir" | "none" | "")
}

/// stat(2) of a path as libvirt reports it; `capacity` is the file size
/// until the caller reads a header.
pub fn stat_of(path: &Path) -> std::io::Result<VolStat> {
    let m = std::fs::metadata(path)?;
    Ok(VolStat {
        capacity: m.size(),
        allocation: m.blocks().saturating_mul(512),
        physical: m.size(),
        mode: m.mode() & 0o7777,
        owner: m.uid(),
        group: m.gid(),
        atime: (m.atime(), m.atime_nsec()),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// Everything the volume XML shows about `path` read as `format`: the
/// capacity of an image format is its virtual size (qemu-img info).
pub async fn stat_volume(tool: Option<&Path>, path: &Path, format: &str) -> Result<VolStat> {
    let mut st = stat_of(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => err::no_vol(format!(
            "no storage vol with matching path '{}'",
            path.display()
        )),
        _ => err::system(format!("cannot stat file '{}'", path.display()), &e),
    })?;
    if path.is_file()
        && !sized_by_file(format)
        && let Some(tool) = tool
    {
        match qemu_img::info(tool, path, Some(format)).await {
            Ok(info) => st.capacity = info.virtual_size,
            Err(e) => tracing::warn!("{}: {e}", path.display()),
        }
    }
    Ok(st)
}

/// The stat of a volume's backing store, if it can be read (libvirt
/// ignores an unreadable backing store here).  A relative path is not
/// resolved: libvirt opens it from its own working directory (/), where
/// it is not found, and shows no permissions or timestamps for it.
pub fn backing_stat(backing: &BackingStore) -> Option<VolStat> {
    if !backing.path.starts_with('/') {
        return None;
    }
    stat_of(Path::new(&backing.path)).ok()
}

/// A backing path relative to the pool directory, as libvirt resolves it.
pub fn resolve(pool_dir: &Path, p: &str) -> PathBuf {
    if p.starts_with('/') {
        PathBuf::from(p)
    } else {
        pool_dir.join(p)
    }
}

fn fs_err(what: String) -> impl FnOnce(std::io::Error) -> virtmesh_rpc::VirtError {
    move |e| err::system(what, &e)
}

/// chown when an owner or group is asked for (libvirt's FORCE_OWNER).
fn chown(path: &Path, perms: &Perms) -> Result<()> {
    if perms.owner.is_none() && perms.group.is_none() {
        return Ok(());
    }
    let uid = perms
        .owner
        .and_then(|u| u32::try_from(u).ok())
        .map(nix::unistd::Uid::from_raw);
    let gid = perms
        .group
        .and_then(|g| u32::try_from(g).ok())
        .map(nix::unistd::Gid::from_raw);
    nix::unistd::chown(path, uid, gid).map_err(|e| {
        err::system(
            format!(
                "cannot chown '{}' to ({}, {})",
                path.display(),
                perms.owner.unwrap_or(-1),
                perms.group.unwrap_or(-1)
            ),
            &std::io::Error::from(e),
        )
    })
}

fn chmod(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
        err::system(
            format!("cannot set mode of '{}' to {mode:04o}", path.display()),
            &e,
        )
    })
}

/// storageBackendCreateRaw + createRawFile: a new file of `capacity`
/// bytes with `allocation` bytes really allocated (fallocate, or zeros
/// where the filesystem cannot), synced; removed again on failure.
pub fn create_raw(vol: &VolDef, path: &Path) -> Result<()> {
    let mode = vol.perms.mode.unwrap_or(DEFAULT_VOL_MODE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(fs_err(format!(
            "Failed to create file '{}'",
            path.display()
        )))?;
    let result = (|| {
        // The umask must not narrow the mode asked for.
        chmod(path, mode)?;
        chown(path, &vol.perms)?;
        file.set_len(vol.capacity)
            .map_err(fs_err(format!("cannot extend file '{}'", path.display())))?;
        if vol.allocation > 0 {
            allocate_file(&file, path, vol.allocation)?;
        }
        file.sync_all().map_err(fs_err(format!(
            "cannot sync data to file '{}'",
            path.display()
        )))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// fallocate `len` bytes from the start (zeros where the filesystem
/// cannot preallocate).
pub fn allocate_file(file: &std::fs::File, path: &Path, len: u64) -> Result<()> {
    use nix::fcntl::{FallocateFlags, fallocate};
    let Ok(len_i) = i64::try_from(len) else {
        return Err(err::invalid_arg(format!("allocation {len} is too large")));
    };
    match fallocate(file, FallocateFlags::empty(), 0, len_i) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::ENOSYS) => {
            write_zeros(file, path, len)
        }
        Err(e) => Err(err::system(
            format!("cannot allocate {len} bytes in file '{}'", path.display()),
            &std::io::Error::from(e),
        )),
    }
}

/// libvirt's safezero fallback: write zeros block by block.
fn write_zeros(file: &std::fs::File, path: &Path, len: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        file.write_all_at(&buf[..n], done)
            .map_err(fs_err(format!("cannot fill file '{}'", path.display())))?;
        done += n as u64;
    }
    Ok(())
}

/// createFileDir: a directory volume.
pub fn create_dir(vol: &VolDef, path: &Path) -> Result<()> {
    if vol.backing.is_some() {
        return Err(err::no_support(
            "backing storage not supported for directories volumes",
        ));
    }
    let mode = vol.perms.mode.unwrap_or(DEFAULT_VOL_MODE);
    std::fs::create_dir(path)
        .map_err(fs_err(format!("cannot create path '{}'", path.display())))?;
    chmod(path, mode)?;
    chown(path, &vol.perms)
}

/// virStorageBackendCreateExecCommand after qemu-img made the file: the
/// owner and mode asked for (qemu-img creates 0644).
pub fn fix_perms(vol: &VolDef, path: &Path) -> Result<()> {
    chown(path, &vol.perms)?;
    chmod(path, vol.perms.mode.unwrap_or(DEFAULT_VOL_MODE))
}

/// Remove a volume's file or directory; one already gone is not an error
/// (virStorageBackendVolDeleteLocal).
pub fn delete(vol: &Vol) -> Result<()> {
    let r = if vol.vol_type == "dir" {
        std::fs::remove_dir(&vol.path)
    } else {
        std::fs::remove_file(&vol.path)
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err::system(
            if vol.vol_type == "dir" {
                format!("cannot remove directory '{}'", vol.path.display())
            } else {
                format!("cannot unlink file '{}'", vol.path.display())
            },
            &e,
        )),
    }
}

/// The definition of a file found in a pool directory: its format and
/// backing file as qemu-img probes them (virStorageBackendRefreshVolTargetUpdate).
pub async fn probe(tool: Option<&Path>, path: &Path) -> Option<Vol> {
    let m = std::fs::metadata(path).ok()?;
    let name = path.file_name()?.to_str()?.to_owned();
    let mut def = VolDef {
        name: name.clone(),
        key: None,
        vol_type: None,
        capacity: m.size(),
        has_capacity: true,
        allocation: m.blocks().saturating_mul(512),
        has_allocation: true,
        path: Some(path.display().to_string()),
        format: "raw".into(),
        perms: Perms::default(),
        encryption: None,
        compat: None,
        nocow: false,
        cluster_size: 0,
        features: None,
        backing: None,
    };
    if m.is_dir() {
        def.format = "dir".into();
        return Some(Vol {
            name,
            path: path.to_owned(),
            vol_type: "dir",
            def,
        });
    }
    if !m.is_file() {
        // Sockets, fifos, devices: libvirt skips them in directory pools.
        return None;
    }
    match sniff(path) {
        Sniffed::Raw => return Some(file_vol(name, path, def)),
        Sniffed::Iso => {
            def.format = "iso".into();
            return Some(file_vol(name, path, def));
        }
        Sniffed::Image => {}
    }
    if let Some(tool) = tool
        && let Ok(info) = qemu_img::info(tool, path, None).await
    {
        if FILE_FORMATS.contains(&info.format.as_str()) && info.format != "none" {
            def.format = info.format.clone();
        }
        if !sized_by_file(&def.format) {
            def.capacity = info.virtual_size;
        }
        if def.format == "qcow2" && info.compat.as_deref() == Some("1.1") {
            def.compat = Some("1.1".into());
            let mut f = Vec::new();
            if info.lazy_refcounts {
                f.push("lazy_refcounts".to_owned());
            }
            if info.extended_l2 {
                f.push("extended_l2".to_owned());
            }
            def.features = Some(f);
        }
        if let Some((b, fmt)) = info.backing {
            def.backing = Some(BackingStore {
                path: b,
                format: fmt
                    .filter(|f| FILE_FORMATS.contains(&f.as_str()))
                    .unwrap_or_else(|| "raw".into()),
                perms: Perms::default(),
            });
        }
    }
    Some(Vol {
        name,
        path: path.to_owned(),
        vol_type: "file",
        def,
    })
}

fn file_vol(name: String, path: &Path, def: VolDef) -> Vol {
    Vol {
        name,
        path: path.to_owned(),
        vol_type: "file",
        def,
    }
}

/// What a file's header says before asking qemu-img (libvirt probes
/// headers itself): most pool files are raw, and one qemu-img run per
/// raw file would make starting a large pool slow.
#[derive(Debug, PartialEq, Eq)]
enum Sniffed {
    Raw,
    Iso,
    /// Some image format's magic: qemu-img tells which and its details.
    Image,
}

fn sniff(path: &Path) -> Sniffed {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Sniffed::Raw;
    };
    let mut head = [0u8; 512];
    let n = f.read(&mut head).unwrap_or(0);
    let head = &head[..n];
    const MAGICS: &[(usize, &[u8])] = &[
        (0, b"QFI\xfb"),                 // qcow, qcow2
        (0, b"QED\0"),                   // qed
        (0, b"KDMV"),                    // vmdk sparse extent
        (0, b"# Disk DescriptorFile"),   // vmdk descriptor
        (0, b"conectix"),                // vpc (dynamic)
        (0, b"vhdxfile"),                // vhdx
        (0, b"Bochs Virtual HD Image"),  // bochs
        (0, b"#!/bin/sh\n#V2.0 Format"), // cloop
        (0, b"WithoutFreeSpace"),        // parallels
        (0, b"WithouFreSpacExt"),        // parallels
        (0, b"LUKS\xba\xbe"),            // luks
        (64, b"\x7f\x10\xda\xbe"),       // vdi
    ];
    if MAGICS
        .iter()
        .any(|(off, m)| head.get(*off..off + m.len()) == Some(*m))
    {
        return Sniffed::Image;
    }
    // Fixed vpc and dmg keep their magic in the last 512 bytes.
    let mut tail = [0u8; 512];
    if f.seek(SeekFrom::End(-512)).is_ok()
        && f.read_exact(&mut tail).is_ok()
        && (tail.starts_with(b"conectix") || tail.starts_with(b"koly"))
    {
        return Sniffed::Image;
    }
    // ISO 9660: "CD001" in the first volume descriptor (libvirt's iso).
    let mut cd = [0u8; 5];
    if f.seek(SeekFrom::Start(32769)).is_ok() && f.read_exact(&mut cd).is_ok() && &cd == b"CD001" {
        return Sniffed::Iso;
    }
    Sniffed::Raw
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sniffing_tells_raw_iso_and_images_apart() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::write(&raw, vec![0u8; 4096]).unwrap();
        assert_eq!(sniff(&raw), Sniffed::Raw);
        let qcow = dir.path().join("q");
        let mut bytes = b"QFI\xfb".to_vec();
        bytes.resize(1024, 0);
        std::fs::write(&qcow, bytes).unwrap();
        assert_eq!(sniff(&qcow), Sniffed::Image);
        let iso = dir.path().join("iso");
        let mut bytes = vec![0u8; 32769];
        bytes.extend_from_slice(b"CD001");
        bytes.resize(40960, 0);
        std::fs::write(&iso, bytes).unwrap();
        assert_eq!(sniff(&iso), Sniffed::Iso);
        let vpc = dir.path().join("vpc");
        let mut bytes = vec![0u8; 4096];
        bytes.extend_from_slice(b"conectix");
        bytes.resize(4096 + 512, 0);
        std::fs::write(&vpc, bytes).unwrap();
        assert_eq!(sniff(&vpc), Sniffed::Image);
    }
}
