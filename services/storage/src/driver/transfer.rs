//! Volume contents over gRPC streams: virStorageVolUpload and
//! virStorageVolDownload on the volume's file (libvirt's
//! virStorageBackendVolUploadLocal / DownloadLocal open the file and
//! stream it), plus Wipe, Resize and CreateXMLFrom.

use super::StorageDriver;
use crate::error::{self as err, Result};
use crate::qemu_img;
use crate::volume::{self, Vol};
use std::io::SeekFrom;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::mpsc;
use virtmesh_proto::v1 as pb;
use virtmesh_rpc::VirtError;

/// Chunk size of downloads.
const CHUNK: usize = 256 * 1024;

/// Where a transfer starts and how much it moves, checked against the
/// file's size.
fn span(v: &Vol, offset: u64, length: u64) -> Result<(u64, u64)> {
    let size = volume::stat_of(&v.path)
        .map_err(|e| err::system(format!("cannot stat file '{}'", v.path.display()), &e))?
        .physical;
    if offset > size {
        return Err(err::invalid_arg(format!(
            "offset {offset} is beyond the end of volume '{}' ({size} bytes)",
            v.name
        )));
    }
    let room = size - offset;
    Ok((offset, if length == 0 { room } else { length.min(room) }))
}

impl StorageDriver {
    /// Stream `length` bytes (0: to the end) of a volume from `offset`.
    pub fn download(
        &self,
        range: &pb::VolTransferStart,
    ) -> Result<mpsc::Receiver<Result<pb::VolDownloadChunk, VirtError>>> {
        let (_, v) = self.find_vol(range.volume.as_ref())?;
        if v.vol_type != "file" {
            return Err(err::no_support("only file volumes can be downloaded"));
        }
        let (offset, total) = span(&v, range.offset, range.length)?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let result = async {
                let mut f = tokio::fs::File::open(&v.path).await.map_err(|e| {
                    err::system(format!("cannot open volume '{}'", v.path.display()), &e)
                })?;
                f.seek(SeekFrom::Start(offset)).await.map_err(|e| {
                    err::system(format!("cannot seek in '{}'", v.path.display()), &e)
                })?;
                let mut done = 0u64;
                while done < total {
                    let n = (total - done).min(CHUNK as u64) as usize;
                    let mut data = vec![0u8; n];
                    f.read_exact(&mut data).await.map_err(|e| {
                        err::system(format!("cannot read '{}'", v.path.display()), &e)
                    })?;
                    done += n as u64;
                    let chunk = pb::VolDownloadChunk {
                        data,
                        progress: Some(pb::Progress {
                            processed_bytes: done,
                            total_bytes: total,
                        }),
                    };
                    if tx.send(Ok(chunk)).await.is_err() {
                        // The client went away.
                        return Ok(());
                    }
                }
                Ok::<(), VirtError>(())
            }
            .await;
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(rx)
    }

    /// Open a volume for an upload: the file, positioned, and how many
    /// bytes may be written (never past the volume's end).
    pub async fn upload_target(
        &self,
        start: &pb::VolTransferStart,
    ) -> Result<(tokio::fs::File, u64, String)> {
        let (_, v) = self.find_vol(start.volume.as_ref())?;
        if v.vol_type != "file" {
            return Err(err::no_support("only file volumes can be uploaded to"));
        }
        let (offset, total) = span(&v, start.offset, start.length)?;
        let mut f = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&v.path)
            .await
            .map_err(|e| err::system(format!("cannot open volume '{}'", v.path.display()), &e))?;
        f.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| err::system(format!("cannot seek in '{}'", v.path.display()), &e))?;
        Ok((f, total, v.path_str()))
    }

    /// virStorageVolWipe with the default (zero) algorithm, as
    /// storageBackendVolWipeLocalFile: a sparse file is emptied and
    /// re-extended, a dense one overwritten with zeros.
    pub async fn wipe(&self, r: Option<&pb::VolRef>) -> Result<()> {
        let _job = self.inner.job.lock().await;
        let (_, v) = self.find_vol(r)?;
        if v.vol_type != "file" {
            return Err(err::no_support("only file volumes can be wiped"));
        }
        let st = volume::stat_of(&v.path)
            .map_err(|e| err::system(format!("cannot stat file '{}'", v.path.display()), &e))?;
        let mut f = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&v.path)
            .await
            .map_err(|e| {
                err::system(
                    format!(
                        "Failed to open storage volume with path '{}'",
                        v.path.display()
                    ),
                    &e,
                )
            })?;
        let io = |e: std::io::Error| {
            err::system(
                format!(
                    "Failed to wipe storage volume with path '{}'",
                    v.path.display()
                ),
                &e,
            )
        };
        if st.allocation < st.physical {
            f.set_len(0).await.map_err(io)?;
            f.set_len(st.physical).await.map_err(io)?;
        } else {
            let zeros = vec![0u8; 1 << 20];
            let mut done = 0u64;
            while done < st.physical {
                let n = (st.physical - done).min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n]).await.map_err(io)?;
                done += n as u64;
            }
        }
        f.sync_all().await.map_err(io)
    }

    /// virStorageVolResize (storage_util's virStorageBackendVolResizeLocal):
    /// raw files are truncated or extended (and preallocated with
    /// `allocate`), images are resized by qemu-img.
    pub async fn resize(&self, req: &pb::VolResizeRequest) -> Result<()> {
        let _job = self.inner.job.lock().await;
        let (pool, v) = self.find_vol(req.volume.as_ref())?;
        if v.vol_type != "file" {
            return Err(err::no_support("only file volumes can be resized"));
        }
        let tool = self.inner.qemu_img.clone();
        let st = volume::stat_volume(tool.as_deref(), &v.path, &v.def.format).await?;
        let capacity = if req.delta {
            st.capacity.saturating_add(req.capacity)
        } else {
            req.capacity
        };
        if capacity < st.capacity && !req.shrink {
            return Err(err::invalid_arg(
                "Can't shrink capacity below current capacity unless shrink flag explicitly specified",
            ));
        }
        if capacity < st.allocation && v.def.format == "raw" && req.shrink && req.allocate {
            return Err(err::invalid_arg(
                "Can't shrink capacity below current allocation",
            ));
        }
        let available = pool.live.as_ref().map(|l| l.sizes.available).unwrap_or(0);
        if req.allocate && capacity.saturating_sub(st.allocation) > available {
            return Err(err::operation_failed(
                "Not enough space left in storage pool",
            ));
        }
        if v.def.format == "raw" {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&v.path)
                .map_err(|e| err::system(format!("cannot open '{}'", v.path.display()), &e))?;
            f.set_len(capacity).map_err(|e| {
                err::system(
                    format!(
                        "Failed to truncate volume with path '{}' to {capacity} bytes",
                        v.path.display()
                    ),
                    &e,
                )
            })?;
            if req.allocate && capacity > 0 {
                volume::allocate_file(&f, &v.path, capacity)?;
            }
            return Ok(());
        }
        if req.allocate {
            return Err(err::unsupported(
                "preallocate is only supported for raw type volume",
            ));
        }
        let tool = tool.ok_or_else(|| {
            err::internal("unable to find qemu-img, needed to resize non-raw volumes")
        })?;
        let mut args = vec!["resize".to_owned()];
        if capacity < st.capacity {
            args.push("--shrink".into());
        }
        args.extend([
            "-f".to_owned(),
            v.def.format.clone(),
            v.path_str(),
            capacity.to_string(),
        ]);
        qemu_img::run(&tool, &args).await
    }

    /// virStorageVolCreateXMLFrom: a new volume holding a copy of
    /// another's data (raw to raw copied here, anything else converted by
    /// qemu-img), never smaller than its source.
    pub async fn clone_vol(
        &self,
        pool: Option<&pb::ObjectRef>,
        xml: &str,
        from: Option<&pb::VolRef>,
    ) -> Result<pb::StorageVolSummary> {
        let (_, src) = self.find_vol(from)?;
        let tool = self.inner.qemu_img.clone();
        let src_st = volume::stat_volume(tool.as_deref(), &src.path, &src.def.format).await?;
        let src_format = src.def.format.clone();
        let src_path = src.path.clone();
        let copy = move |def: virtmesh_conf::storage::VolDef, path: std::path::PathBuf| {
            let tool = tool.clone();
            async move {
                if def.format == "raw" && src_format == "raw" {
                    return copy_raw(&src_path, &path, &def);
                }
                let tool = tool.ok_or_else(|| {
                    err::internal(
                        "creation of non-raw file images is not supported without qemu-img.",
                    )
                })?;
                let mut opts_def = def.clone();
                opts_def.backing = None;
                // qemu-img convert takes create's -o options.
                let create = qemu_img::create_args(&opts_def, &path.display().to_string(), false)?;
                let opts = create
                    .iter()
                    .position(|a| a == "-o")
                    .and_then(|i| create.get(i + 1).cloned());
                let mut args = vec![
                    "convert".to_owned(),
                    "-f".into(),
                    src_format.clone(),
                    "-O".into(),
                    def.format.clone(),
                ];
                if let Some(o) = opts {
                    args.extend(["-o".to_owned(), o]);
                }
                args.push(src_path.display().to_string());
                args.push(path.display().to_string());
                qemu_img::run(&tool, &args).await?;
                volume::fix_perms(&def, &path)
            }
        };
        self.create_vol_with(pool, xml, Some(src_st.capacity), copy)
            .await
    }
}

/// Copy a raw file into a new raw volume, keeping holes (libvirt's
/// virStorageBackendCopyToFD with sparse skipping).
fn copy_raw(from: &Path, to: &Path, def: &virtmesh_conf::storage::VolDef) -> Result<()> {
    use std::io::{Read, Seek, Write};
    let mut shell = def.clone();
    shell.allocation = 0;
    volume::create_raw(&shell, to)?;
    let result = (|| {
        let mut input = std::fs::File::open(from).map_err(|e| {
            err::system(
                format!("could not open input path '{}'", from.display()),
                &e,
            )
        })?;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .open(to)
            .map_err(|e| err::system(format!("cannot open '{}'", to.display()), &e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = input.read(&mut buf).map_err(|e| {
                err::system(format!("failed reading from file '{}'", from.display()), &e)
            })?;
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            if chunk.iter().all(|b| *b == 0) {
                out.seek(std::io::SeekFrom::Current(n as i64))
                    .map_err(|e| {
                        err::system(format!("cannot extend file '{}'", to.display()), &e)
                    })?;
            } else {
                out.write_all(chunk).map_err(|e| {
                    err::system(format!("failed writing to file '{}'", to.display()), &e)
                })?;
            }
        }
        out.sync_all()
            .map_err(|e| err::system(format!("cannot sync data to file '{}'", to.display()), &e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(to);
    }
    result
}
