//! Which pty a console session opens, and who holds the session
//! (virDomainOpenConsole's one-client rule, `force` to take over).

use super::*;
use tokio::sync::oneshot;

impl QemuDriver {
    /// The pty of console `dev_name` (empty: the first; `console0` is
    /// `serial0` on x86) and a receiver that fires when the session must
    /// end (another client forced its way in).
    pub fn console_pty(
        &self,
        r: Option<&pb::ObjectRef>,
        dev_name: &str,
        force: bool,
    ) -> Result<(PathBuf, oneshot::Receiver<()>)> {
        let dom = self.find(r)?;
        let mut st = dom.lock();
        let live = st
            .live
            .as_mut()
            .filter(|l| !l.starting)
            .ok_or_else(err::not_running)?;
        let alias = match dev_name {
            "" | "console0" => "serial0",
            other => other,
        };
        let path = live
            .ptys
            .iter()
            .find(|(a, _)| a == alias)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| {
                err::qemu(
                    ErrorCode::OperationFailed,
                    format!(
                        "operation failed: cannot find character device {}",
                        if dev_name.is_empty() {
                            "<null>"
                        } else {
                            dev_name
                        }
                    ),
                )
            })?;
        if let Some(old) = live.console.take() {
            if !old.is_closed() && !force {
                live.console = Some(old);
                return Err(err::qemu(
                    ErrorCode::OperationFailed,
                    "operation failed: Active console session exists for this domain",
                ));
            }
            // Taking over: the old session ends.
            let _ = old.send(());
        }
        let (tx, rx) = oneshot::channel();
        live.console = Some(tx);
        Ok((path, rx))
    }
}
