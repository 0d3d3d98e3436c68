//! The fence's state as the API and metrics show it ([`FenceView`]).
//!
//! The daemon runs one fence per process; [`super::spawn`] publishes its status channel
//! and its lease gate here, so that the API reads them without further plumbing.
//! [`view`] combines them with the node's latest snapshot.

use std::sync::{Arc, Mutex};

use rale::Millis;
use tokio::sync::watch;

use super::{FenceStatus, LeaseGate, names_fence, should_fence};
use crate::api::types::FenceView;
use crate::ha::monotonic_now;
use crate::snapshot::NodeSnapshot;

/// What [`super::spawn`] published: the fence task's status and its gate.
struct Published {
    status: watch::Receiver<FenceStatus>,
    gate: Arc<dyn LeaseGate>,
}

static PUBLISHED: Mutex<Option<Published>> = Mutex::new(None);

/// Makes `status` and `gate` the process's fence, read by [`current`] and [`view`]
/// (the last call wins).
pub(crate) fn publish(status: watch::Receiver<FenceStatus>, gate: Arc<dyn LeaseGate>) {
    let mut p = PUBLISHED.lock().unwrap_or_else(|e| e.into_inner());
    *p = Some(Published { status, gate });
}

/// The published fence's latest status and its lease deadline (monotonic
/// `CLOCK_BOOTTIME` milliseconds, 0 = closed), if a fence was spawned in this process.
pub fn current() -> Option<(FenceStatus, Option<Millis>)> {
    let p = PUBLISHED.lock().unwrap_or_else(|e| e.into_inner());
    p.as_ref()
        .map(|p| (p.status.borrow().clone(), p.gate.deadline()))
}

/// The fence of the node in `snap` as the API shows it, with the published task's status
/// if there is one (see [`FenceView`] for the meaning of each field).
pub fn view(snap: &NodeSnapshot) -> FenceView {
    view_at(snap, current(), monotonic_now())
}

/// [`view`] with the task's status and the clock given (pure, for tests).
pub fn view_at(
    snap: &NodeSnapshot,
    task: Option<(FenceStatus, Option<Millis>)>,
    now: Millis,
) -> FenceView {
    let named = names_fence(&snap.pg.synchronous_standby_names);
    let (status, deadline) = task.unwrap_or_default();
    let open = match deadline {
        Some(d) => now < d,
        None => snap.fence_open,
    };
    let remaining_ms = deadline
        .filter(|d| d.0 > 0)
        .map(|d| d.0.saturating_sub(now.0));
    let waiting = status.received > status.acknowledged;
    FenceView {
        enabled: snap.cluster.config.fence,
        named,
        active: should_fence(snap),
        streaming: status.streaming,
        open,
        blocking: named && snap.pg.running && !snap.pg.in_recovery && (!status.streaming || !open),
        waiting,
        deadline_remaining_ms: remaining_ms,
        sessions: status.sessions,
        received_lsn: status.streaming.then(|| status.received.to_string()),
        acknowledged_lsn: status.streaming.then(|| status.acknowledged.to_string()),
        last_error: status.last_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rale::decide::NodeIdentity;
    use rale::{ClusterState, Lsn};

    fn primary() -> NodeSnapshot {
        let id = NodeIdentity {
            node: rale::NodeId::new("n1").expect("valid id"),
            api_url: "http://127.0.0.1:8008".into(),
            pg_host: "127.0.0.1".into(),
            pg_port: 5432,
            tags: Default::default(),
        };
        let mut s = crate::ha::initial_snapshot(&id);
        s.pg.running = true;
        s.pg.reachable = true;
        s.pg.in_recovery = false;
        s.pg.synchronous_standby_names = "FIRST 1 (rale_fence)".into();
        let mut cluster = ClusterState::default();
        cluster.config.fence = true;
        s.cluster = Arc::new(cluster);
        s
    }

    fn streaming(received: u64, acknowledged: u64) -> FenceStatus {
        FenceStatus {
            streaming: true,
            sessions: 1,
            received: Lsn(received),
            acknowledged: Lsn(acknowledged),
            open: true,
            last_error: None,
        }
    }

    #[test]
    fn open_fence_does_not_block() {
        let v = view_at(
            &primary(),
            Some((streaming(100, 100), Some(Millis(5_000)))),
            Millis(4_000),
        );
        assert!(v.enabled && v.named && v.active && v.streaming && v.open);
        assert!(!v.blocking && !v.waiting);
        assert_eq!(v.deadline_remaining_ms, Some(1_000));
        assert_eq!(v.acknowledged_lsn.as_deref(), Some("0/64"));
    }

    #[test]
    fn passed_deadline_blocks() {
        let v = view_at(
            &primary(),
            Some((streaming(200, 100), Some(Millis(5_000)))),
            Millis(6_000),
        );
        assert!(!v.open && v.blocking && v.waiting);
        assert_eq!(v.deadline_remaining_ms, Some(0));
    }

    #[test]
    fn named_but_not_streaming_blocks_and_closed_deadline_reads_none() {
        let v = view_at(
            &primary(),
            Some((FenceStatus::default(), Some(Millis(0)))),
            Millis(6_000),
        );
        assert!(v.blocking && !v.streaming);
        assert_eq!(v.deadline_remaining_ms, None);
        assert_eq!(v.received_lsn, None);
    }

    #[test]
    fn standby_never_blocks() {
        let mut s = primary();
        s.pg.in_recovery = true;
        let v = view_at(&s, None, Millis(1));
        assert!(!v.active && !v.blocking);
    }
}
