//! `qemu-img`, as libvirt's storage_util drives it: the `create` command
//! line of virStorageBackendCreateQemuImgCmdFromVol and `info` for what
//! a file holds (format, virtual size, backing file, qcow2 features).

use crate::error::{self as err, Result};
use std::path::{Path, PathBuf};
use virtmesh_conf::storage::VolDef;

/// qemu-img on $PATH (libvirt's virFindFileInPath).
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("qemu-img"))
        .find(|p| p.is_file())
}

/// The format qemu-img is asked for (libvirt treats these as raw).
fn qemu_format(vol: &VolDef) -> &str {
    match vol.format.as_str() {
        "iso" | "none" => "raw",
        f => f,
    }
}

/// The checks libvirt makes before it looks at the backing file
/// (virStorageBackendCreateQemuImgSetInfo, then the first ones of
/// ...SetBacking), in its order.
pub fn check(vol: &VolDef, prealloc: bool) -> Result<()> {
    let format = qemu_format(vol);
    let qcow2 = format == "qcow2";
    if prealloc && !qcow2 {
        return Err(err::unsupported(
            "metadata preallocation only available with qcow2",
        ));
    }
    if vol.compat.is_some() && !qcow2 {
        return Err(err::unsupported(
            "compatibility option only available with qcow2",
        ));
    }
    if vol.features.is_some() && !qcow2 {
        return Err(err::unsupported(
            "format features only available with qcow2",
        ));
    }
    if vol.backing.is_some() {
        if format == "raw" {
            return Err(err::unsupported("cannot set backing store for raw volume"));
        }
        if prealloc {
            return Err(err::unsupported(
                "metadata preallocation conflicts with backing store",
            ));
        }
    }
    Ok(())
}

/// The arguments of `qemu-img create` for `vol` at `path`
/// (storageBackendCreateQemuImgOpts and ...CmdFromVol, without
/// encryption, which the caller refuses before).
pub fn create_args(vol: &VolDef, path: &str, prealloc: bool) -> Result<Vec<String>> {
    check(vol, prealloc)?;
    let format = qemu_format(vol);
    let qcow2 = format == "qcow2";
    let mut args: Vec<String> = vec!["create".into(), "-f".into(), format.into()];
    let mut opts: Vec<String> = Vec::new();
    if let Some(b) = &vol.backing {
        args.push("-b".into());
        args.push(b.path.clone());
        opts.push(format!("backing_fmt={}", b.format));
    }
    let size_k = vol.capacity.div_ceil(1024);
    if prealloc {
        if size_k > vol.allocation.div_ceil(1024) {
            opts.push("preallocation=metadata".into());
        } else {
            opts.push("preallocation=falloc".into());
        }
    }
    if vol.nocow {
        opts.push("nocow=on".into());
    }
    match &vol.compat {
        Some(c) => opts.push(format!("compat={c}")),
        None if qcow2 => opts.push("compat=0.10".into()),
        None => {}
    }
    if vol.cluster_size > 0 {
        opts.push(format!("cluster_size={}", vol.cluster_size));
    }
    if let (Some(features), true) = (&vol.features, qcow2) {
        let old = vol.compat.as_deref() == Some("0.10");
        for f in features {
            match f.as_str() {
                "lazy_refcounts" if old => {
                    return Err(err::unsupported(
                        "lazy_refcounts not supported with compat level 0.10",
                    ));
                }
                "lazy_refcounts" => opts.push("lazy_refcounts".into()),
                "extended_l2" if old => {
                    return Err(err::unsupported(
                        "'extended_l2' not supported with compat level 0.10",
                    ));
                }
                "extended_l2" => opts.push("extended_l2=on".into()),
                _ => {}
            }
        }
    }
    if !opts.is_empty() {
        args.push("-o".into());
        args.push(opts.join(","));
    }
    args.push(path.to_owned());
    // Size in KiB, rounded up; omitted when a backing file gives it.
    if size_k > 0 || vol.backing.is_none() {
        args.push(format!("{size_k}K"));
    }
    Ok(args)
}

/// Run qemu-img; a failure is libvirt's virCommandRun error with the
/// command line and qemu-img's stderr.
pub async fn run(tool: &Path, args: &[String]) -> Result<()> {
    let out = tokio::process::Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| err::system(format!("cannot execute binary {}", tool.display()), &e))?;
    if out.status.success() {
        return Ok(());
    }
    let cmdline = std::iter::once(tool.display().to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let status = match out.status.code() {
        Some(c) => format!("exit status {c}"),
        None => "fatal signal".to_owned(),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(err::internal(format!(
        "Child process ({cmdline}) unexpected {status}: {stderr}"
    )))
}

/// What `qemu-img info` says about an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: String,
    pub virtual_size: u64,
    pub backing: Option<(String, Option<String>)>,
    /// qcow2's compat level.
    pub compat: Option<String>,
    pub lazy_refcounts: bool,
    pub extended_l2: bool,
}

/// `qemu-img info --output=json -U [-f FORMAT] PATH` (-U: the image may
/// be in use by a guest).
pub async fn info(tool: &Path, path: &Path, format: Option<&str>) -> Result<ImageInfo> {
    let mut cmd = tokio::process::Command::new(tool);
    cmd.args(["info", "--output=json", "-U"]);
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    let out = cmd
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| err::system(format!("cannot execute binary {}", tool.display()), &e))?;
    if !out.status.success() {
        return Err(err::internal(format!(
            "cannot probe '{}': {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        )));
    }
    parse_info(&out.stdout).ok_or_else(|| {
        err::internal(format!(
            "unexpected qemu-img info output for '{}'",
            path.display()
        ))
    })
}

fn parse_info(json: &[u8]) -> Option<ImageInfo> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let data = v.get("format-specific").and_then(|f| f.get("data"));
    let flag = |k: &str| {
        data.and_then(|d| d.get(k))
            .and_then(|x| x.as_bool())
            .unwrap_or(false)
    };
    Some(ImageInfo {
        format: s("format")?,
        virtual_size: v.get("virtual-size")?.as_u64()?,
        backing: s("backing-filename").map(|b| (b, s("backing-filename-format"))),
        compat: data
            .and_then(|d| d.get("compat"))
            .and_then(|c| c.as_str())
            .map(str::to_owned),
        lazy_refcounts: flag("lazy-refcounts"),
        extended_l2: flag("extended-l2"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn vol(xml: &str) -> VolDef {
        VolDef::parse_for(
            xml,
            Some(("raw", virtmesh_conf::storage::FILE_FORMATS)),
            virtmesh_conf::storage::Capacity::OptionalWithBacking,
        )
        .unwrap()
    }

    #[test]
    fn qcow2_defaults_to_compat_010() {
        let v = vol(
            "<volume><name>a</name><capacity unit='MiB'>1</capacity><target><format type='qcow2'/></target></volume>",
        );
        assert_eq!(
            create_args(&v, "/p/a", false).unwrap().join(" "),
            "create -f qcow2 -o compat=0.10 /p/a 1024K"
        );
    }

    #[test]
    fn backing_without_capacity_omits_the_size() {
        let v = vol(
            "<volume><name>a</name><capacity>0</capacity><target><format type='qcow2'/></target><backingStore><path>/p/b</path><format type='raw'/></backingStore></volume>",
        );
        assert_eq!(
            create_args(&v, "/p/a", false).unwrap().join(" "),
            "create -f qcow2 -b /p/b -o backing_fmt=raw,compat=0.10 /p/a"
        );
    }

    #[test]
    fn features_and_cluster_size() {
        let v = vol(
            "<volume><name>a</name><capacity unit='KiB'>3</capacity><target><format type='qcow2'/><clusterSize unit='KiB'>128</clusterSize><features><lazy_refcounts/></features></target></volume>",
        );
        assert_eq!(
            create_args(&v, "/p/a", false).unwrap().join(" "),
            "create -f qcow2 -o compat=1.1,cluster_size=131072,lazy_refcounts /p/a 3K"
        );
    }

    #[test]
    fn info_json() {
        let i = parse_info(br#"{"format":"qcow2","virtual-size":1024,"backing-filename":"/b","backing-filename-format":"raw","format-specific":{"type":"qcow2","data":{"compat":"1.1","lazy-refcounts":true}}}"#).unwrap();
        assert_eq!(i.backing, Some(("/b".into(), Some("raw".into()))));
        assert!(i.lazy_refcounts && !i.extended_l2);
        assert_eq!(i.compat.as_deref(), Some("1.1"));
    }
}
