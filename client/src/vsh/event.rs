//! `event` (tools/virsh-domain-event.c): wait for domain events and print
//! them as virsh does, one flushed line (or block) per event.

use std::time::Duration;

use virtmesh_proto::v1::{self, DomainEventType, event::Kind};

use super::cli::{EventArgs, FamilyEventArgs};
use super::util::time_string_now;
use super::{CmdError, CmdResult, Ctl, domain};
use crate::lookup::Kinds;

/// virsh's domain event names, in libvirt's event id order (`event --list`).
pub const EVENT_NAMES: &[&str] = &[
    "lifecycle",
    "reboot",
    "rtc-change",
    "watchdog",
    "io-error",
    "graphics",
    "io-error-reason",
    "control-error",
    "block-job",
    "disk-change",
    "tray-change",
    "pm-wakeup",
    "pm-suspend",
    "balloon-change",
    "pm-suspend-disk",
    "device-removed",
    "block-job-2",
    "tunable",
    "agent-lifecycle",
    "device-added",
    "migration-iteration",
    "job-completed",
    "device-removal-failed",
    "metadata-change",
    "block-threshold",
    "memory-failure",
    "memory-device-size-change",
    "nic-mac-change",
];

/// virshDomainEventToString.
pub fn event_type_str(t: i32) -> &'static str {
    match DomainEventType::try_from(t) {
        Ok(DomainEventType::DomainEventDefined) => "Defined",
        Ok(DomainEventType::DomainEventUndefined) => "Undefined",
        Ok(DomainEventType::DomainEventStarted) => "Started",
        Ok(DomainEventType::DomainEventSuspended) => "Suspended",
        Ok(DomainEventType::DomainEventResumed) => "Resumed",
        Ok(DomainEventType::DomainEventStopped) => "Stopped",
        Ok(DomainEventType::DomainEventShutdown) => "Shutdown",
        Ok(DomainEventType::DomainEventPmsuspended) => "PMSuspended",
        Ok(DomainEventType::DomainEventCrashed) => "Crashed",
        Err(_) => "unknown",
    }
}

/// virshDomainEventDetailToString; `None` outside libvirt's tables.
pub fn event_detail_str(t: i32, detail: i32) -> Option<&'static str> {
    let table: &[&str] = match DomainEventType::try_from(t).ok()? {
        DomainEventType::DomainEventDefined => &["Added", "Updated", "Renamed", "Snapshot"],
        DomainEventType::DomainEventUndefined => &["Removed", "Renamed"],
        DomainEventType::DomainEventStarted => {
            &["Booted", "Migrated", "Restored", "Snapshot", "Event wakeup"]
        }
        DomainEventType::DomainEventSuspended => &[
            "Paused",
            "Migrated",
            "I/O Error",
            "Watchdog",
            "Restored",
            "Snapshot",
            "API error",
            "Post-copy",
            "Post-copy Error",
        ],
        DomainEventType::DomainEventResumed => &[
            "Unpaused",
            "Migrated",
            "Snapshot",
            "Post-copy",
            "Post-copy Error",
        ],
        DomainEventType::DomainEventStopped => &[
            "Shutdown",
            "Destroyed",
            "Crashed",
            "Migrated",
            "Saved",
            "Failed",
            "Snapshot",
        ],
        DomainEventType::DomainEventShutdown => &[
            "Finished",
            "Finished after guest request",
            "Finished after host request",
        ],
        DomainEventType::DomainEventPmsuspended => &["Memory", "Disk"],
        DomainEventType::DomainEventCrashed => &["Panicked", "Crashloaded"],
    };
    usize::try_from(detail)
        .ok()
        .and_then(|i| table.get(i).copied())
}

fn watchdog_action_str(action: i32) -> &'static str {
    match action {
        0 => "none",
        1 => "pause",
        2 => "reset",
        3 => "poweroff",
        4 => "shutdown",
        5 => "debug",
        6 => "inject-nmi",
        _ => "unknown",
    }
}

fn metadata_type_str(t: i32) -> &'static str {
    match t {
        0 => "description",
        1 => "title",
        2 => "element",
        _ => "unsupported value",
    }
}

fn name_of(id: &Option<v1::ObjectId>) -> &str {
    id.as_ref().map(|d| d.name.as_str()).unwrap_or_default()
}

/// The virsh event name and text of a domain event; `None` for events of
/// other object families, which `event` does not watch.
pub fn format_event(ev: &v1::Event) -> Option<(&'static str, String)> {
    Some(match ev.kind.as_ref()? {
        Kind::DomainLifecycle(l) => {
            let detail = match event_detail_str(l.r#type, l.detail) {
                Some(d) => d.to_owned(),
                None if !l.detail_name.is_empty() => l.detail_name.clone(),
                None => "unknown".to_owned(),
            };
            (
                "lifecycle",
                format!(
                    "event 'lifecycle' for domain '{}': {} {detail}\n",
                    name_of(&l.domain),
                    event_type_str(l.r#type)
                ),
            )
        }
        Kind::DomainReboot(r) => (
            "reboot",
            format!("event 'reboot' for domain '{}'\n", name_of(&r.domain)),
        ),
        Kind::DomainRtcChange(r) => (
            "rtc-change",
            format!(
                "event 'rtc-change' for domain '{}': {}\n",
                name_of(&r.domain),
                r.utc_offset
            ),
        ),
        Kind::DomainWatchdog(w) => (
            "watchdog",
            format!(
                "event 'watchdog' for domain '{}': {}\n",
                name_of(&w.domain),
                watchdog_action_str(w.action)
            ),
        ),
        Kind::DomainDevice(d) => {
            let name = if d.added {
                "device-added"
            } else {
                "device-removed"
            };
            (
                name,
                format!(
                    "event '{name}' for domain '{}': {}\n",
                    name_of(&d.domain),
                    d.device_alias
                ),
            )
        }
        Kind::DomainMetadata(m) => (
            "metadata-change",
            format!(
                "event 'metadata-change' for domain '{}': type {}, uri {}\n",
                name_of(&m.domain),
                metadata_type_str(m.metadata_type),
                if m.nsuri.is_empty() {
                    "<null>"
                } else {
                    m.nsuri.as_str()
                }
            ),
        ),
        _ => return None,
    })
}

/// How the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Done,
    TimedOut,
    Interrupted,
}

/// The lines virsh prints after the wait.
pub fn summary_text(ending: Ending, count: usize) -> String {
    let head = match ending {
        Ending::Done => "",
        Ending::TimedOut => "event loop timed out\n",
        Ending::Interrupted => "event loop interrupted\n",
    };
    format!("{head}events received: {count}\n")
}

pub async fn event(ctl: &Ctl, a: &EventArgs) -> CmdResult {
    if a.event.is_none() && !a.all {
        return Err(CmdError::msg(
            "one of --list, --all, or --event <type> is required",
        ));
    }
    if let Some(name) = &a.event
        && !EVENT_NAMES.contains(&name.as_str())
    {
        return Err(CmdError::msg(format!("unknown event type {name}")));
    }
    let mut req = v1::WatchRequest {
        families: vec![v1::EventFamily::Domain as i32],
        ..Default::default()
    };
    if let Some(key) = &a.domain {
        let d = domain::lookup(ctl, key, Kinds::DOMAIN).await?;
        req.object_uuid = d.uuid;
    }
    watch(
        ctl,
        req,
        a.event.as_deref(),
        a.r#loop,
        a.timeout,
        a.timestamp,
        format_event,
    )
    .await
}

/// The event loop every `*event` command shares: print each matching
/// event (flushed), stop after the first unless `looping`, on timeout or on
/// Ctrl-C, then print virsh's summary. Status 1 when nothing arrived.
pub async fn watch(
    ctl: &Ctl,
    req: v1::WatchRequest,
    want: Option<&str>,
    looping: bool,
    timeout: Option<u64>,
    timestamp: bool,
    format: fn(&v1::Event) -> Option<(&'static str, String)>,
) -> CmdResult {
    let mut stream = ctl
        .conn
        .events()
        .watch(req)
        .await
        .map_err(crate::Error::from)?
        .into_inner();

    let deadline = timeout.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut count = 0usize;
    let ending = loop {
        let next = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, stream.message()).await.ok(),
                None => Some(stream.message().await),
            }
        };
        let msg = tokio::select! {
            m = next => m,
            _ = tokio::signal::ctrl_c() => break Ending::Interrupted,
        };
        let ev = match msg {
            None => break Ending::TimedOut,
            Some(Ok(Some(ev))) => ev,
            // The server ended the stream: nothing more will come.
            Some(Ok(None)) => break Ending::Done,
            Some(Err(status)) => return Err(crate::Error::from(status).into()),
        };
        let Some((name, text)) = format(&ev) else {
            continue;
        };
        if want.is_some_and(|w| w != name) {
            continue;
        }
        if timestamp {
            ctl.print(&format!("{}: {text}", time_string_now()));
        } else {
            ctl.print(&text);
        }
        count += 1;
        if !looping {
            break Ending::Done;
        }
    };
    ctl.print(&summary_text(ending, count));
    if count > 0 {
        Ok(())
    } else {
        Err(CmdError::silent())
    }
}

/// The object families with their own `*-event` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Network,
    Pool,
    NodeDevice,
    Secret,
}

impl Family {
    /// `--list` of each command.
    pub fn event_names(self) -> &'static [&'static str] {
        match self {
            Family::Network => &["lifecycle", "metadata-change"],
            Family::Pool => &["lifecycle", "refresh"],
            Family::NodeDevice => &["lifecycle", "update"],
            Family::Secret => &["lifecycle", "value-changed"],
        }
    }

    fn proto(self) -> v1::EventFamily {
        match self {
            Family::Network => v1::EventFamily::Network,
            Family::Pool => v1::EventFamily::StoragePool,
            Family::NodeDevice => v1::EventFamily::NodeDevice,
            Family::Secret => v1::EventFamily::Secret,
        }
    }

    fn formatter(self) -> fn(&v1::Event) -> Option<(&'static str, String)> {
        match self {
            Family::Network => format_network_event,
            Family::Pool => format_pool_event,
            Family::NodeDevice => format_nodedev_event,
            Family::Secret => format_secret_event,
        }
    }
}

fn word(table: &[&'static str], i: i32) -> &'static str {
    usize::try_from(i)
        .ok()
        .and_then(|i| table.get(i).copied())
        .unwrap_or("unknown")
}

pub fn format_network_event(ev: &v1::Event) -> Option<(&'static str, String)> {
    match ev.kind.as_ref()? {
        Kind::NetworkLifecycle(n) => Some((
            "lifecycle",
            format!(
                "event 'lifecycle' for network {}: {}\n",
                name_of(&n.network),
                word(&["Defined", "Undefined", "Started", "Stopped"], n.r#type)
            ),
        )),
        _ => None,
    }
}

pub fn format_pool_event(ev: &v1::Event) -> Option<(&'static str, String)> {
    match ev.kind.as_ref()? {
        Kind::PoolLifecycle(p) => Some((
            "lifecycle",
            format!(
                "event 'lifecycle' for storage pool {}: {}\n",
                name_of(&p.pool),
                word(
                    &[
                        "Defined",
                        "Undefined",
                        "Started",
                        "Stopped",
                        "Created",
                        "Deleted"
                    ],
                    p.r#type
                )
            ),
        )),
        Kind::PoolRefresh(p) => Some((
            "refresh",
            format!("event 'refresh' for storage pool {}\n", name_of(&p.pool)),
        )),
        _ => None,
    }
}

pub fn format_nodedev_event(ev: &v1::Event) -> Option<(&'static str, String)> {
    match ev.kind.as_ref()? {
        Kind::NodedevLifecycle(d) => Some((
            "lifecycle",
            format!(
                "event 'lifecycle' for node device {}: {}\n",
                d.device,
                word(&["Created", "Deleted", "Defined", "Undefined"], d.r#type)
            ),
        )),
        _ => None,
    }
}

/// Secrets are named by UUID in virsh's event lines.
pub fn format_secret_event(ev: &v1::Event) -> Option<(&'static str, String)> {
    let uuid_of =
        |id: &Option<v1::ObjectId>| id.as_ref().map(|i| i.uuid.clone()).unwrap_or_default();
    match ev.kind.as_ref()? {
        Kind::SecretLifecycle(s) => Some((
            "lifecycle",
            format!(
                "event 'lifecycle' for secret {}: {}\n",
                uuid_of(&s.secret),
                word(&["Defined", "Undefined"], s.r#type)
            ),
        )),
        Kind::SecretValueChanged(s) => Some((
            "value-changed",
            format!("event 'value-changed' for secret {}\n", uuid_of(&s.secret)),
        )),
        _ => None,
    }
}

/// net-event, pool-event, nodedev-event, secret-event.
pub async fn family_event(ctl: &Ctl, family: Family, a: &FamilyEventArgs) -> CmdResult {
    if a.list {
        let names: String = family
            .event_names()
            .iter()
            .map(|n| format!("{n}\n"))
            .collect();
        ctl.print(&names);
        return Ok(());
    }
    let Some(want) = a.event.as_deref() else {
        return Err(CmdError::msg("either --list or --event <type> is required"));
    };
    if !family.event_names().contains(&want) {
        return Err(CmdError::msg(format!("unknown event type {want}")));
    }
    let mut req = v1::WatchRequest {
        families: vec![family.proto() as i32],
        ..Default::default()
    };
    if let Some(key) = a.object.as_deref() {
        match family {
            Family::Network => req.object_uuid = super::network::lookup(ctl, key).await?.uuid,
            Family::Pool => req.object_uuid = super::storage::lookup_pool(ctl, key).await?.uuid,
            Family::NodeDevice => req.object_name = key.to_owned(),
            Family::Secret => req.object_uuid = key.to_owned(),
        }
    }
    watch(
        ctl,
        req,
        Some(want),
        a.r#loop,
        a.timeout,
        a.timestamp,
        family.formatter(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(name: &str) -> Option<v1::ObjectId> {
        Some(v1::ObjectId {
            uuid: String::new(),
            name: name.into(),
        })
    }

    fn lifecycle(t: DomainEventType, detail: i32) -> v1::Event {
        v1::Event {
            timestamp: 0.0,
            kind: Some(Kind::DomainLifecycle(v1::DomainLifecycle {
                domain: dom("x"),
                r#type: t as i32,
                detail,
                detail_name: String::new(),
            })),
        }
    }

    #[test]
    fn lifecycle_lines_match_virsh() {
        assert_eq!(
            format_event(&lifecycle(DomainEventType::DomainEventStarted, 0)),
            Some((
                "lifecycle",
                "event 'lifecycle' for domain 'x': Started Booted\n".to_owned()
            ))
        );
        assert_eq!(
            format_event(&lifecycle(DomainEventType::DomainEventStopped, 1)).map(|e| e.1),
            Some("event 'lifecycle' for domain 'x': Stopped Destroyed\n".to_owned())
        );
        assert_eq!(
            format_event(&lifecycle(DomainEventType::DomainEventDefined, 0)).map(|e| e.1),
            Some("event 'lifecycle' for domain 'x': Defined Added\n".to_owned())
        );
        assert_eq!(
            format_event(&lifecycle(DomainEventType::DomainEventSuspended, 0)).map(|e| e.1),
            Some("event 'lifecycle' for domain 'x': Suspended Paused\n".to_owned())
        );
        assert_eq!(
            format_event(&lifecycle(DomainEventType::DomainEventUndefined, 9)).map(|e| e.1),
            Some("event 'lifecycle' for domain 'x': Undefined unknown\n".to_owned())
        );
    }

    #[test]
    fn other_domain_events() {
        let reboot = v1::Event {
            timestamp: 0.0,
            kind: Some(Kind::DomainReboot(v1::DomainReboot { domain: dom("x") })),
        };
        assert_eq!(
            format_event(&reboot),
            Some(("reboot", "event 'reboot' for domain 'x'\n".to_owned()))
        );
        let dev = v1::Event {
            timestamp: 0.0,
            kind: Some(Kind::DomainDevice(v1::DomainDeviceChange {
                domain: dom("x"),
                device_alias: "net0".into(),
                added: false,
            })),
        };
        assert_eq!(
            format_event(&dev),
            Some((
                "device-removed",
                "event 'device-removed' for domain 'x': net0\n".to_owned()
            ))
        );
        let net = v1::Event {
            timestamp: 0.0,
            kind: Some(Kind::NetworkLifecycle(v1::NetworkLifecycle::default())),
        };
        assert_eq!(format_event(&net), None);
    }

    #[test]
    fn other_family_lines() {
        let net = v1::Event {
            timestamp: 0.0,
            kind: Some(Kind::NetworkLifecycle(v1::NetworkLifecycle {
                network: dom("net1"),
                r#type: v1::NetworkEventType::NetworkEventStarted as i32,
            })),
        };
        assert_eq!(
            format_network_event(&net),
            Some((
                "lifecycle",
                "event 'lifecycle' for network net1: Started\n".to_owned()
            ))
        );
        assert_eq!(format_pool_event(&net), None);
        let refresh = v1::Event {
            timestamp: 0.0,
            kind: Some(Kind::PoolRefresh(v1::StoragePoolRefresh { pool: dom("p") })),
        };
        assert_eq!(
            format_pool_event(&refresh),
            Some(("refresh", "event 'refresh' for storage pool p\n".to_owned()))
        );
        let secret = v1::Event {
            timestamp: 0.0,
            kind: Some(Kind::SecretValueChanged(v1::SecretValueChanged {
                secret: Some(v1::ObjectId {
                    uuid: "c7a5fdbd-edaf-9455-926a-d65c16db1809".into(),
                    name: String::new(),
                }),
            })),
        };
        assert_eq!(
            format_secret_event(&secret).map(|e| e.1),
            Some(
                "event 'value-changed' for secret c7a5fdbd-edaf-9455-926a-d65c16db1809\n"
                    .to_owned()
            )
        );
        let dev = v1::Event {
            timestamp: 0.0,
            kind: Some(Kind::NodedevLifecycle(v1::NodeDeviceLifecycle {
                device: "scsi_host12".into(),
                r#type: v1::NodeDeviceEventType::NodeDeviceEventDeleted as i32,
            })),
        };
        assert_eq!(
            format_nodedev_event(&dev).map(|e| e.1),
            Some("event 'lifecycle' for node device scsi_host12: Deleted\n".to_owned())
        );
    }

    #[test]
    fn summaries_match_virsh() {
        // `virsh -c test:///default event --all --timeout 1`
        assert_eq!(
            summary_text(Ending::TimedOut, 0),
            "event loop timed out\nevents received: 0\n"
        );
        assert_eq!(summary_text(Ending::Done, 1), "events received: 1\n");
        assert_eq!(
            summary_text(Ending::Interrupted, 3),
            "event loop interrupted\nevents received: 3\n"
        );
    }

    #[test]
    fn event_list_has_all_virsh_names() {
        assert_eq!(EVENT_NAMES.len(), 28);
        assert_eq!(EVENT_NAMES.first(), Some(&"lifecycle"));
        assert_eq!(EVENT_NAMES.last(), Some(&"nic-mac-change"));
    }
}
