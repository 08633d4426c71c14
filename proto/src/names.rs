//! virsh's words for the numbers of the contract, shared by every service
//! that reports them and by vsh, so that one table exists per vocabulary.

use crate::v1::{DomainEventType, DomainState};

const NOSTATE: &[&str] = &["unknown"];
/// virDomainRunningReason.
const RUNNING: &[&str] = &[
    "unknown",
    "booted",
    "migrated",
    "restored",
    "from snapshot",
    "unpaused",
    "migration canceled",
    "save canceled",
    "event wakeup",
    "crashed",
    "post-copy",
    "post-copy failed",
];
/// virDomainPausedReason.
const PAUSED: &[&str] = &[
    "unknown",
    "user",
    "migrating",
    "saving",
    "dumping",
    "I/O error",
    "watchdog",
    "from snapshot",
    "shutting down",
    "creating snapshot",
    "crashed",
    "starting up",
    "post-copy",
    "post-copy failed",
    "api error",
];
/// virDomainShutdownReason.
const SHUTDOWN: &[&str] = &["unknown", "user"];
/// virDomainShutoffReason.
const SHUTOFF: &[&str] = &[
    "unknown",
    "shutdown",
    "destroyed",
    "crashed",
    "migrated",
    "saved",
    "failed",
    "from snapshot",
    "daemon",
];
/// virDomainCrashedReason.
const CRASHED: &[&str] = &["unknown", "panicked"];

/// virsh's word for a domain state (`virshDomainStateToString`).
pub fn domain_state(state: DomainState) -> &'static str {
    match state {
        DomainState::Running => "running",
        DomainState::Blocked => "idle",
        DomainState::Paused => "paused",
        DomainState::Shutdown => "in shutdown",
        DomainState::Shutoff => "shut off",
        DomainState::Crashed => "crashed",
        DomainState::Pmsuspended => "pmsuspended",
        DomainState::Nostate => "no state",
    }
}

/// virsh's word for a state's reason (`virshDomainStateReasonToString`);
/// `None` when libvirt has no word for that number.
pub fn domain_state_reason(state: DomainState, reason: i32) -> Option<&'static str> {
    let table = match state {
        DomainState::Nostate | DomainState::Blocked | DomainState::Pmsuspended => NOSTATE,
        DomainState::Running => RUNNING,
        DomainState::Paused => PAUSED,
        DomainState::Shutdown => SHUTDOWN,
        DomainState::Shutoff => SHUTOFF,
        DomainState::Crashed => CRASHED,
    };
    usize::try_from(reason)
        .ok()
        .and_then(|i| table.get(i).copied())
}

/// virsh's word for a domain event's detail, per event type
/// (`virDomainEvent*DetailType`, `virshDomainEventDetailToString`);
/// `None` when libvirt has no word for that number.
pub fn domain_event_detail(ty: DomainEventType, detail: i32) -> Option<&'static str> {
    use DomainEventType as T;
    let table: &[&str] = match ty {
        T::DomainEventDefined => &["added", "updated", "renamed", "snapshot"],
        T::DomainEventUndefined => &["removed", "renamed"],
        T::DomainEventStarted => &["booted", "migrated", "restored", "snapshot", "wakeup"],
        T::DomainEventSuspended => &[
            "paused",
            "migrated",
            "ioerror",
            "watchdog",
            "restored",
            "snapshot",
            "api error",
            "post-copy",
            "post-copy failed",
        ],
        T::DomainEventResumed => &[
            "unpaused",
            "migrated",
            "snapshot",
            "post-copy",
            "post-copy failed",
        ],
        T::DomainEventStopped => &[
            "shutdown",
            "destroyed",
            "crashed",
            "migrated",
            "saved",
            "failed",
            "snapshot",
        ],
        T::DomainEventShutdown => &["finished", "guest", "host"],
        T::DomainEventPmsuspended => &["memory", "disk"],
        T::DomainEventCrashed => &["panicked", "crashloaded"],
    };
    usize::try_from(detail)
        .ok()
        .and_then(|i| table.get(i).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_follow_libvirts_numbering() {
        assert_eq!(domain_state_reason(DomainState::Running, 1), Some("booted"));
        assert_eq!(
            domain_state_reason(DomainState::Paused, 10),
            Some("crashed")
        );
        assert_eq!(
            domain_state_reason(DomainState::Paused, 14),
            Some("api error")
        );
        assert_eq!(
            domain_state_reason(DomainState::Shutoff, 2),
            Some("destroyed")
        );
        assert_eq!(domain_state_reason(DomainState::Shutoff, 99), None);
        assert_eq!(domain_state(DomainState::Shutoff), "shut off");
    }

    #[test]
    fn event_details_follow_libvirts_numbering() {
        use DomainEventType as T;
        assert_eq!(
            domain_event_detail(T::DomainEventDefined, 1),
            Some("updated")
        );
        assert_eq!(
            domain_event_detail(T::DomainEventStopped, 5),
            Some("failed")
        );
        assert_eq!(domain_event_detail(T::DomainEventShutdown, 2), Some("host"));
        assert_eq!(
            domain_event_detail(T::DomainEventCrashed, 0),
            Some("panicked")
        );
        assert_eq!(domain_event_detail(T::DomainEventStopped, -1), None);
    }
}
