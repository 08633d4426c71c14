//! A thin, typed QMP client of our own (DESIGN.md §7, HOST.md): JSON lines
//! over a unix socket, replies and events told apart by their `return` /
//! `error` / `event` keys. Unlike `qapi-qmp`'s untagged message enum, an
//! event or reply we do not know is logged and skipped, never a reason to
//! drop the connection. One connection per guest; a reader task owns the
//! read half, hands events to the driver in order and wakes the caller of
//! each command by its `id`. EOF (QEMU gone) is reported at once.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

/// How long a command may take before we give up on it. QMP answers the
/// commands we use in milliseconds; a stuck QEMU must not hang an RPC.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long QEMU may take to send its greeting once connected.
const GREETING_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("cannot connect to the QEMU monitor at '{path}': {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("QEMU monitor I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("QEMU monitor sent no greeting")]
    NoGreeting,
    #[error("QEMU monitor closed the connection (QEMU exited)")]
    Eof,
    #[error("QEMU monitor did not answer '{0}' in time")]
    Timeout(String),
    /// QEMU's own error reply, kept whole for the client.
    #[error("internal error: unable to execute QEMU command '{command}': {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    #[error("malformed QMP message: {0}")]
    Malformed(String),
}

/// One line from QEMU, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum QmpMessage {
    Greeting(Value),
    Return {
        id: Option<u64>,
        value: Value,
    },
    Error {
        id: Option<u64>,
        class: String,
        desc: String,
    },
    Event(QmpEvent),
    /// Valid JSON of a shape we do not know: skipped, never fatal.
    Unknown(Value),
}

/// An asynchronous event, with the fields the driver uses typed.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    pub name: String,
    pub data: Value,
}

/// The events the driver acts on; everything else is `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Stop,
    Resume,
    /// `guest`: the guest asked (ACPI poweroff); `reason` is QEMU's
    /// ShutdownCause (`guest-shutdown`, `host-signal`, `host-qmp-quit`...).
    Shutdown {
        guest: bool,
        reason: String,
    },
    Reset {
        guest: bool,
    },
    Powerdown,
    GuestPanicked,
    Other,
}

impl QmpEvent {
    pub fn kind(&self) -> EventKind {
        let flag = |k: &str| self.data.get(k).and_then(Value::as_bool).unwrap_or(false);
        match self.name.as_str() {
            "STOP" => EventKind::Stop,
            "RESUME" => EventKind::Resume,
            "SHUTDOWN" => EventKind::Shutdown {
                guest: flag("guest"),
                reason: self
                    .data
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            },
            "RESET" => EventKind::Reset {
                guest: flag("guest"),
            },
            "POWERDOWN" => EventKind::Powerdown,
            "GUEST_PANICKED" => EventKind::GuestPanicked,
            _ => EventKind::Other,
        }
    }
}

/// Classify one line. Only invalid JSON is an error; an unknown shape is
/// `Unknown`.
pub fn classify(line: &str) -> Result<QmpMessage, QmpError> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| QmpError::Malformed(format!("{e}: {line}")))?;
    let Some(obj) = value.as_object() else {
        return Ok(QmpMessage::Unknown(value));
    };
    let id = obj.get("id").and_then(Value::as_u64);
    if let Some(ret) = obj.get("return") {
        return Ok(QmpMessage::Return {
            id,
            value: ret.clone(),
        });
    }
    if let Some(err) = obj.get("error") {
        let text = |k: &str| {
            err.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        return Ok(QmpMessage::Error {
            id,
            class: text("class"),
            desc: text("desc"),
        });
    }
    if let Some(name) = obj.get("event").and_then(Value::as_str) {
        return Ok(QmpMessage::Event(QmpEvent {
            name: name.to_owned(),
            data: obj.get("data").cloned().unwrap_or(Value::Null),
        }));
    }
    if let Some(greeting) = obj.get("QMP") {
        return Ok(QmpMessage::Greeting(greeting.clone()));
    }
    Ok(QmpMessage::Unknown(value))
}

/// A QMP command: its wire name, its arguments (the struct itself) and the
/// type of its `return` value.
pub trait Command: Serialize {
    const NAME: &'static str;
    type Output: DeserializeOwned;
}

/// The `{}` most commands return.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Empty {}

macro_rules! no_arg_commands {
    ($($ty:ident = $name:literal;)*) => {$(
        #[derive(Debug, Clone, Copy, Serialize)]
        pub struct $ty {}
        impl Command for $ty {
            const NAME: &'static str = $name;
            type Output = Empty;
        }
    )*};
}

no_arg_commands! {
    QmpCapabilities = "qmp_capabilities";
    Cont = "cont";
    Stop = "stop";
    SystemPowerdown = "system_powerdown";
    SystemReset = "system_reset";
    Quit = "quit";
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct QueryStatus {}

/// `query-status`'s StatusInfo.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct StatusInfo {
    pub running: bool,
    /// QEMU's RunState: `running`, `paused`, `prelaunch`, `shutdown`, ...
    pub status: String,
}

impl Command for QueryStatus {
    const NAME: &'static str = "query-status";
    type Output = StatusInfo;
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct QueryBalloon {}

/// `query-balloon`'s BalloonInfo.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct BalloonInfo {
    /// Guest memory the balloon leaves to the guest, in bytes.
    pub actual: u64,
}

impl Command for QueryBalloon {
    const NAME: &'static str = "query-balloon";
    type Output = BalloonInfo;
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct QueryChardev {}

/// `query-chardev`'s ChardevInfo.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ChardevInfo {
    pub label: String,
    /// e.g. `pty:/dev/pts/3`, `file`, `unix:...`.
    pub filename: String,
}

impl Command for QueryChardev {
    const NAME: &'static str = "query-chardev";
    type Output = Vec<ChardevInfo>;
}

/// The ptys of the guest's serial ports: (`serialN`, `/dev/pts/M`).
pub async fn serial_ptys(qmp: &Qmp) -> Result<Vec<(String, std::path::PathBuf)>, QmpError> {
    let infos = qmp.execute(QueryChardev {}).await?;
    Ok(infos
        .into_iter()
        .filter_map(|c| {
            let index = c.label.strip_prefix("charserial")?;
            let path = c.filename.strip_prefix("pty:")?;
            Some((format!("serial{index}"), std::path::PathBuf::from(path)))
        })
        .collect())
}

/// `balloon`: ask the guest to use `value` bytes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Balloon {
    pub value: u64,
}

impl Command for Balloon {
    const NAME: &'static str = "balloon";
    type Output = Empty;
}

/// What the reader task hands to the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum MonitorMsg {
    Event(QmpEvent),
    /// The connection is gone: QEMU exited (or closed the monitor).
    Eof,
}

/// Called on the reader task, in the order QEMU sent things.
pub type EventSink = Box<dyn FnMut(MonitorMsg) + Send>;

type Waiter = oneshot::Sender<Result<Value, QmpError>>;

#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, Waiter>,
    closed: bool,
}

/// A connected QMP monitor. Dropping it closes the connection.
pub struct Qmp {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
    closed: tokio::sync::watch::Receiver<bool>,
    /// Every event, for callers that wait for one (DEVICE_DELETED).
    events: tokio::sync::broadcast::Sender<QmpEvent>,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp").finish_non_exhaustive()
    }
}

impl Drop for Qmp {
    fn drop(&mut self) {
        // The reader owns the read half; aborting it closes the socket, so
        // a restarted service (or a new driver) can connect in our place.
        self.reader.abort();
    }
}

fn lock(p: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    // A panic elsewhere must not wedge every later command.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl Qmp {
    /// Connect, read the greeting, start the reader and negotiate
    /// capabilities. `sink` receives every event, then `Eof`.
    pub async fn connect(path: &Path, sink: EventSink) -> Result<Qmp, QmpError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| QmpError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        let qmp = Self::from_stream(stream, sink).await?;
        qmp.execute(QmpCapabilities {}).await?;
        Ok(qmp)
    }

    /// Take over a connected stream: wait for the greeting, start the
    /// reader. Capabilities are not negotiated yet.
    pub async fn from_stream(stream: UnixStream, sink: EventSink) -> Result<Qmp, QmpError> {
        let (read, write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut line = String::new();
        loop {
            line.clear();
            let n = tokio::time::timeout(GREETING_TIMEOUT, read.read_line(&mut line))
                .await
                .map_err(|_| QmpError::NoGreeting)??;
            if n == 0 {
                return Err(QmpError::Eof);
            }
            match classify(line.trim()) {
                Ok(QmpMessage::Greeting(_)) => break,
                Ok(other) => tracing::debug!(?other, "QMP message before greeting ignored"),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (closed_tx, closed) = tokio::sync::watch::channel(false);
        let (events, _) = tokio::sync::broadcast::channel(64);
        let reader = tokio::spawn(read_loop(
            read,
            pending.clone(),
            sink,
            closed_tx,
            events.clone(),
        ));
        Ok(Qmp {
            writer: tokio::sync::Mutex::new(write),
            pending,
            next_id: AtomicU64::new(1),
            reader,
            closed,
            events,
        })
    }

    /// Run a typed command.
    pub async fn execute<C: Command>(&self, cmd: C) -> Result<C::Output, QmpError> {
        let args = serde_json::to_value(&cmd).map_err(|e| QmpError::Malformed(e.to_string()))?;
        let value = self.execute_raw(C::NAME, args).await?;
        serde_json::from_value(value)
            .map_err(|e| QmpError::Malformed(format!("reply to {}: {e}", C::NAME)))
    }

    /// Run a command given by name; `args` `{}` or null means none.
    pub async fn execute_raw(&self, name: &str, args: Value) -> Result<Value, QmpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = lock(&self.pending);
            if p.closed {
                return Err(QmpError::Eof);
            }
            p.waiters.insert(id, tx);
        }
        let mut msg = serde_json::json!({ "execute": name, "id": id });
        if args.as_object().is_some_and(|o| !o.is_empty()) {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string();
        line.push('\n');
        let written = {
            let mut w = self.writer.lock().await;
            w.write_all(line.as_bytes()).await
        };
        if let Err(e) = written {
            lock(&self.pending).waiters.remove(&id);
            return Err(if e.kind() == std::io::ErrorKind::BrokenPipe {
                QmpError::Eof
            } else {
                QmpError::Io(e)
            });
        }
        let reply = match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Err(_) => {
                lock(&self.pending).waiters.remove(&id);
                return Err(QmpError::Timeout(name.to_owned()));
            }
            // The reader dropped the waiter: the connection ended.
            Ok(Err(_)) => return Err(QmpError::Eof),
            Ok(Ok(r)) => r,
        };
        reply.map_err(|e| match e {
            QmpError::Command { class, desc, .. } => QmpError::Command {
                command: name.to_owned(),
                class,
                desc,
            },
            other => other,
        })
    }

    /// Events from now on (subscribe before the command that causes one).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<QmpEvent> {
        self.events.subscribe()
    }

    /// `getfd`: hand QEMU a descriptor under `name` (SCM_RIGHTS on the
    /// monitor socket, with the command line in the same message, as QEMU
    /// expects), for `netdev_add` of a macvtap.
    pub async fn getfd(&self, name: &str, fd: std::os::fd::BorrowedFd<'_>) -> Result<(), QmpError> {
        use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
        use std::os::fd::AsRawFd;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = lock(&self.pending);
            if p.closed {
                return Err(QmpError::Eof);
            }
            p.waiters.insert(id, tx);
        }
        let msg =
            serde_json::json!({ "execute": "getfd", "arguments": {"fdname": name}, "id": id });
        let mut line = msg.to_string();
        line.push('\n');
        let sent = {
            let w = self.writer.lock().await;
            let sock = w.as_ref().as_raw_fd();
            let fds = [fd.as_raw_fd()];
            let cmsg = [ControlMessage::ScmRights(&fds)];
            let iov = [std::io::IoSlice::new(line.as_bytes())];
            // Holding the writer lock: no other command interleaves. The
            // socket is non-blocking; a short command line fits at once.
            sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::empty(), None)
        };
        match sent {
            Ok(n) if n == line.len() => {}
            Ok(_) => {
                lock(&self.pending).waiters.remove(&id);
                return Err(QmpError::Malformed("getfd: short write".into()));
            }
            Err(e) => {
                lock(&self.pending).waiters.remove(&id);
                return Err(QmpError::Io(std::io::Error::from(e)));
            }
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Err(_) => {
                lock(&self.pending).waiters.remove(&id);
                Err(QmpError::Timeout("getfd".into()))
            }
            Ok(Err(_)) => Err(QmpError::Eof),
            Ok(Ok(r)) => r.map(|_| ()).map_err(|e| match e {
                QmpError::Command { class, desc, .. } => QmpError::Command {
                    command: "getfd".into(),
                    class,
                    desc,
                },
                other => other,
            }),
        }
    }

    /// True once the connection has ended.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Resolves when the connection ends (at once if it already has).
    pub async fn closed(&self) {
        let mut rx = self.closed.clone();
        // An error means the reader is gone, which also means closed.
        let _ = rx.wait_for(|c| *c).await;
    }
}

async fn read_loop(
    mut read: BufReader<OwnedReadHalf>,
    pending: Arc<Mutex<Pending>>,
    mut sink: EventSink,
    closed: tokio::sync::watch::Sender<bool>,
    events: tokio::sync::broadcast::Sender<QmpEvent>,
) {
    let mut line = String::new();
    loop {
        line.clear();
        match read.read_line(&mut line).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("QMP read failed: {e}");
                break;
            }
        }
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        match classify(text) {
            Ok(QmpMessage::Event(ev)) => {
                // No subscriber is the usual case, not an error.
                let _ = events.send(ev.clone());
                sink(MonitorMsg::Event(ev));
            }
            Ok(QmpMessage::Return {
                id: Some(id),
                value,
            }) => {
                if let Some(w) = lock(&pending).waiters.remove(&id) {
                    let _ = w.send(Ok(value));
                }
            }
            Ok(QmpMessage::Error {
                id: Some(id),
                class,
                desc,
            }) => {
                if let Some(w) = lock(&pending).waiters.remove(&id) {
                    let _ = w.send(Err(QmpError::Command {
                        command: String::new(),
                        class,
                        desc,
                    }));
                }
            }
            Ok(other) => tracing::debug!(?other, "unsolicited QMP message ignored"),
            // Never fatal: one bad line must not cost us the guest.
            Err(e) => tracing::warn!("{e}"),
        }
    }
    {
        let mut p = lock(&pending);
        p.closed = true;
        // Dropping the senders fails every command still waiting.
        p.waiters.clear();
    }
    // The driver records the guest's end before anyone waiting on
    // `closed()` (Destroy) looks at its state.
    sink(MonitorMsg::Eof);
    let _ = closed.send(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_replies_errors_events() {
        assert_eq!(
            classify(r#"{"return": {}, "id": 3}"#).expect("valid"),
            QmpMessage::Return {
                id: Some(3),
                value: serde_json::json!({})
            }
        );
        assert_eq!(
            classify(r#"{"error": {"class": "GenericError", "desc": "boom"}, "id": 4}"#)
                .expect("valid"),
            QmpMessage::Error {
                id: Some(4),
                class: "GenericError".into(),
                desc: "boom".into()
            }
        );
        let ev = classify(
            r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}"#,
        )
        .expect("valid");
        let QmpMessage::Event(ev) = ev else {
            panic!("not an event: {ev:?}")
        };
        assert_eq!(
            ev.kind(),
            EventKind::Shutdown {
                guest: true,
                reason: "guest-shutdown".into()
            }
        );
        assert!(matches!(
            classify(r#"{"QMP": {"version": {}, "capabilities": ["oob"]}}"#),
            Ok(QmpMessage::Greeting(_))
        ));
    }

    #[test]
    fn unknown_shapes_and_events_are_not_errors() {
        // An event QEMU 10 has and older schemas lack.
        let ev = classify(r#"{"event": "VFU_CLIENT_HANGUP", "data": {"x": 1}, "timestamp": {}}"#)
            .expect("valid");
        let QmpMessage::Event(ev) = ev else {
            panic!("not an event")
        };
        assert_eq!(ev.kind(), EventKind::Other);
        assert!(matches!(
            classify(r#"{"surprise": 1}"#),
            Ok(QmpMessage::Unknown(_))
        ));
        assert!(matches!(classify("[1,2]"), Ok(QmpMessage::Unknown(_))));
        assert!(matches!(classify("not json"), Err(QmpError::Malformed(_))));
    }

    #[test]
    fn status_info_parses() {
        let v = serde_json::json!({"status": "paused", "running": false, "singlestep": false});
        let s: StatusInfo = serde_json::from_value(v).expect("valid");
        assert_eq!(s.status, "paused");
        assert!(!s.running);
    }

    /// A fake QEMU on a socket pair: greeting, an unknown event, a garbage
    /// line, replies out of band; then EOF reaches the sink.
    #[tokio::test]
    async fn client_survives_unknown_events_and_reports_eof() {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let fake = tokio::spawn(async move {
            let (r, mut w) = theirs.into_split();
            let mut r = BufReader::new(r);
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .await
                .expect("write");
            let mut line = String::new();
            r.read_line(&mut line).await.expect("read");
            let cmd: Value = serde_json::from_str(&line).expect("json");
            assert_eq!(cmd["execute"], "query-status");
            let id = cmd["id"].clone();
            w.write_all(b"{\"event\": \"BRAND_NEW_EVENT\", \"data\": {}}\nnot json at all\n")
                .await
                .expect("write");
            w.write_all(b"{\"event\": \"STOP\", \"timestamp\": {}}\n")
                .await
                .expect("write");
            let reply =
                serde_json::json!({"return": {"running": false, "status": "paused"}, "id": id});
            w.write_all(format!("{reply}\n").as_bytes())
                .await
                .expect("write");
        });
        let qmp = Qmp::from_stream(
            ours,
            Box::new(move |m| {
                let _ = tx.send(m);
            }),
        )
        .await
        .expect("greeting");
        let status = qmp.execute(QueryStatus {}).await.expect("reply");
        assert_eq!(status.status, "paused");
        fake.await.expect("fake qemu");
        let mut names = Vec::new();
        while let Some(m) = rx.recv().await {
            match m {
                MonitorMsg::Event(e) => names.push(e.name),
                MonitorMsg::Eof => break,
            }
        }
        assert_eq!(names, ["BRAND_NEW_EVENT", "STOP"]);
        qmp.closed().await;
        assert!(matches!(qmp.execute(Cont {}).await, Err(QmpError::Eof)));
    }
}
