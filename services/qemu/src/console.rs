//! A console session: bytes between a gRPC stream and a guest's pty.
//! Output goes out as it comes; input goes in; the session ends when the
//! guest goes away (EIO on the pty), the client goes away, or another
//! client takes the console over.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use tonic::{Status, Streaming};
use virtmesh_proto::v1::{self as pb, console_input::Msg};
use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

use crate::domain::BoxStream;

/// Open `pty` and pump bytes both ways until one side ends.
pub fn session(
    pty: &Path,
    mut input: Streaming<pb::ConsoleInput>,
    mut cancel: oneshot::Receiver<()>,
) -> Result<BoxStream<pb::ConsoleOutput>, VirtError> {
    use nix::fcntl::OFlag;
    use std::os::unix::fs::OpenOptionsExt;
    // `AsyncFd::new` is deprecated for I/O safety (the fd could be closed
    // while registered); here the AsyncFd owns the File for its whole life,
    // and the sound replacement `register` is `unsafe`, which this
    // workspace denies.
    #[allow(deprecated)]
    let register = AsyncFd::new;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        // Never become our controlling terminal; never block the runtime.
        .custom_flags((OFlag::O_NOCTTY | OFlag::O_NONBLOCK).bits())
        .open(pty)
        .and_then(register)
        .map_err(|e| {
            VirtError::new(
                ErrorCode::SystemError,
                ErrorDomain::Qemu,
                format!("cannot open console {}: {e}", pty.display()),
            )
        })?;
    let fd = Arc::new(file);
    let done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Result<pb::ConsoleOutput, Status>>(64);

    let reader_fd = fd.clone();
    let reader_done = done.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let ready = tokio::select! {
                _ = &mut cancel => break,
                r = reader_fd.readable() => r,
            };
            let Ok(mut guard) = ready else { break };
            match guard.try_io(|f| f.get_ref().read(&mut buf)) {
                // EOF or EIO: the guest (QEMU's end of the pty) is gone.
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    let out = pb::ConsoleOutput {
                        data: buf[..n].to_vec(),
                    };
                    if tx.send(Ok(out)).await.is_err() {
                        break;
                    }
                }
                Err(_would_block) => continue,
            }
        }
        reader_done.store(true, Ordering::Relaxed);
    });

    tokio::spawn(async move {
        while let Ok(Some(msg)) = input.message().await {
            if done.load(Ordering::Relaxed) {
                break;
            }
            let Some(Msg::Data(data)) = msg.msg else {
                continue;
            };
            let mut rest: &[u8] = &data;
            while !rest.is_empty() {
                let Ok(mut guard) = fd.writable().await else {
                    return;
                };
                match guard.try_io(|f| f.get_ref().write(rest)) {
                    Ok(Ok(n)) => rest = &rest[n..],
                    Ok(Err(_)) => return,
                    Err(_would_block) => continue,
                }
            }
        }
    });

    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}
