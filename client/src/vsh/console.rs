//! `console`: attach the terminal to a domain's serial console over the
//! bidirectional Domain.OpenConsole stream, until the escape key (^]).

use std::io::{IsTerminal, Read, Write};

use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};
use virtmesh_proto::v1::{self, DomainState, console_input::Msg};

use super::domain::lookup;
use super::{CmdError, CmdResult, Ctl};
use crate::lookup::{Kinds, by_uuid};

/// ^] — virsh's default escape character.
const ESCAPE: u8 = 0x1d;

/// Puts the terminal in raw mode and restores it when dropped, so an error
/// or the end of the session never leaves the user's terminal raw.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Result<Self, CmdError> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin)
            .map_err(|e| CmdError::msg(format!("unable to get tty attributes: {e}")))?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSAFLUSH, &raw)
            .map_err(|e| CmdError::msg(format!("unable to set tty attributes: {e}")))?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSAFLUSH, &self.saved);
    }
}

/// The bytes typed before the escape character, and whether it was seen.
pub fn split_at_escape(buf: &[u8]) -> (&[u8], bool) {
    match buf.iter().position(|b| *b == ESCAPE) {
        Some(i) => (&buf[..i], true),
        None => (buf, false),
    }
}

pub async fn console(ctl: &Ctl, key: &str, dev_name: Option<&str>, force: bool) -> CmdResult {
    let d = lookup(ctl, key, Kinds::DOMAIN).await?;
    if d.state == DomainState::Shutoff as i32 {
        return Err(CmdError::msg("The domain is not running"));
    }
    if !std::io::stdin().is_terminal() {
        return Err(CmdError::msg(
            "Cannot run interactive console without a controlling TTY",
        ));
    }
    ctl.extra(&format!(
        "Connected to domain '{}'\nEscape character is ^] (Ctrl + ])\n",
        d.name
    ));

    let (tx, rx) = tokio::sync::mpsc::channel::<v1::ConsoleInput>(16);
    let open = v1::ConsoleInput {
        msg: Some(Msg::Open(v1::ConsoleOpen {
            domain: Some(by_uuid(d.uuid)),
            dev_name: dev_name.unwrap_or_default().to_owned(),
            force,
        })),
    };
    tx.send(open)
        .await
        .map_err(|_| CmdError::msg("console session closed"))?;
    let (esc_tx, mut esc_rx) = tokio::sync::oneshot::channel::<()>();

    let _raw = RawMode::enter()?;
    // Keystrokes come from a plain thread: stdin reads block, and the
    // thread simply stays blocked (and dies with the process) once the
    // session is over.
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 1024];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let (data, escaped) = split_at_escape(&buf[..n]);
            if !data.is_empty() {
                let msg = v1::ConsoleInput {
                    msg: Some(Msg::Data(data.to_vec())),
                };
                if tx.blocking_send(msg).is_err() {
                    break;
                }
            }
            if escaped {
                let _ = esc_tx.send(());
                break;
            }
        }
    });

    let mut output = ctl
        .conn
        .domain()
        .open_console(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(crate::Error::from)?
        .into_inner();
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            _ = &mut esc_rx => break,
            msg = output.message() => match msg.map_err(crate::Error::from)? {
                Some(chunk) => {
                    let _ = stdout.write_all(&chunk.data);
                    let _ = stdout.flush();
                }
                // The guest side went away (domain stopped).
                None => break,
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_ends_input() {
        assert_eq!(split_at_escape(b"ls\r"), (&b"ls\r"[..], false));
        assert_eq!(split_at_escape(b"q\x1dmore"), (&b"q"[..], true));
        assert_eq!(split_at_escape(b"\x1d"), (&b""[..], true));
    }
}
