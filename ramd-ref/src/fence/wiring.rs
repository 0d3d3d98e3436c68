//! How the daemon drives the fence: it fences while its PostgreSQL is a running primary
//! and the cluster asks for the fence (or the server's `synchronous_standby_names`
//! still names it, e.g. while the setting is being changed).

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{FenceConfig, FenceStatus, LeaseGate, names_fence, run_with_status};
use crate::snapshot::NodeSnapshot;

/// Consecutive snapshots saying "do not fence" before the fence is switched off.
const OFF_AFTER: u32 = 3;

/// Whether the node in `snap` should run the fence: PostgreSQL runs as a primary, and
/// either the dynamic configuration enables the fence or the server's
/// `synchronous_standby_names` names `rale_fence` (then commits wait for it anyway).
///
/// An unreachable server counts as "no": its role is unknown, and a fence streaming from a
/// standby would hold up the standby's fast shutdown (its walsender waits for
/// acknowledgements the closed gate never sends), as a `reinit` right after a restart
/// once showed (60 s `pg_ctl stop` timeout).
pub fn should_fence(snap: &NodeSnapshot) -> bool {
    snap.pg.running
        && snap.pg.reachable
        && !snap.pg.in_recovery
        && (snap.cluster.config.fence || names_fence(&snap.pg.synchronous_standby_names))
}

/// Switches on at once and off after [`OFF_AFTER`] "off" readings in a row.
#[derive(Debug, Default)]
struct Debounce {
    off_streak: u32,
}

impl Debounce {
    /// The switch position to apply after reading `want`, if any.
    fn step(&mut self, want: bool) -> Option<bool> {
        if want {
            self.off_streak = 0;
            return Some(true);
        }
        self.off_streak = self.off_streak.saturating_add(1);
        (self.off_streak >= OFF_AFTER).then_some(false)
    }
}

/// Spawns the fence for the daemon: one task follows the HA loop's snapshots and
/// switches the fence on and off with [`should_fence`]; the fence itself
/// ([`run_with_status`]) runs until `shutdown`. Returns the fence task and its status;
/// both the status and the gate's deadline are also published for the API
/// ([`super::current`], [`super::view`]).
pub fn spawn(
    cfg: FenceConfig,
    gate: impl LeaseGate,
    mut snapshots: watch::Receiver<Arc<NodeSnapshot>>,
    mut shutdown: watch::Receiver<bool>,
) -> (JoinHandle<()>, watch::Receiver<FenceStatus>) {
    let (active_tx, active_rx) = watch::channel(should_fence(&snapshots.borrow_and_update()));
    let (status_tx, status_rx) = watch::channel(FenceStatus::default());
    let fence_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut switch = Debounce::default();
        loop {
            tokio::select! {
                r = snapshots.changed() => {
                    if r.is_err() {
                        return;
                    }
                    // On at once; off only after OFF_AFTER snapshots in a row, so that a
                    // failed status probe (reported as "stopped") does not cut the fence
                    // and pause writes. A stopped server ends the session by itself.
                    if let Some(on) = switch.step(should_fence(&snapshots.borrow_and_update())) {
                        active_tx.send_if_modified(|a| std::mem::replace(a, on) != on);
                    }
                }
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    });
    let gate = Arc::new(gate);
    super::status::publish(status_rx.clone(), gate.clone());
    let task = tokio::spawn(run_with_status(
        cfg,
        gate,
        active_rx,
        fence_shutdown,
        status_tx,
    ));
    (task, status_rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rale::ClusterState;
    use rale::decide::NodeIdentity;

    fn snapshot() -> NodeSnapshot {
        let id = NodeIdentity {
            node: rale::NodeId::new("n1").expect("valid id"),
            api_url: "http://127.0.0.1:8008".into(),
            pg_host: "127.0.0.1".into(),
            pg_port: 5432,
            tags: Default::default(),
        };
        crate::ha::initial_snapshot(&id)
    }

    #[test]
    fn switches_on_at_once_and_off_after_a_streak() {
        let mut d = Debounce::default();
        assert_eq!(d.step(true), Some(true));
        assert_eq!(d.step(false), None);
        assert_eq!(d.step(false), None);
        assert_eq!(d.step(true), Some(true), "a blip resets the streak");
        assert_eq!(d.step(false), None);
        assert_eq!(d.step(false), None);
        assert_eq!(d.step(false), Some(false));
        assert_eq!(d.step(false), Some(false));
    }

    #[test]
    fn fences_only_a_running_primary_that_asks_for_it() {
        let mut s = snapshot();
        assert!(!should_fence(&s), "stopped");
        s.pg.running = true;
        s.pg.in_recovery = false;
        s.pg.reachable = false;
        let mut on = ClusterState::default();
        on.config.fence = true;
        s.cluster = Arc::new(on);
        assert!(!should_fence(&s), "running but not answering: role unknown");
        s.pg.reachable = true;
        let mut off = ClusterState::default();
        off.config.fence = false;
        s.cluster = Arc::new(off);
        assert!(!should_fence(&s), "fence disabled and not named");
        s.pg.synchronous_standby_names = "FIRST 1 (rale_fence)".into();
        assert!(should_fence(&s), "named by the server's setting");
        s.pg.synchronous_standby_names.clear();
        let mut cluster = ClusterState::default();
        cluster.config.fence = true;
        s.cluster = Arc::new(cluster);
        assert!(should_fence(&s), "enabled by the dynamic configuration");
        s.pg.in_recovery = true;
        assert!(!should_fence(&s), "a standby never fences");
    }
}
