//! How the daemon drives the fence: it fences while its PostgreSQL is a running primary
//! and the cluster asks for the fence (or the server's `synchronous_standby_names`
//! still names it, e.g. while the setting is being changed).

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{FenceConfig, FenceStatus, LeaseGate, names_fence, run_with_status};
use crate::snapshot::NodeSnapshot;

/// Whether the node in `snap` should run the fence: PostgreSQL runs as a primary, and
/// either the dynamic configuration enables the fence or the server's
/// `synchronous_standby_names` names `rale_fence` (then commits wait for it anyway).
pub fn should_fence(snap: &NodeSnapshot) -> bool {
    snap.pg.running
        && !snap.pg.in_recovery
        && (snap.cluster.config.fence || names_fence(&snap.pg.synchronous_standby_names))
}

/// Spawns the fence for the daemon: one task follows the HA loop's snapshots and
/// switches the fence on and off with [`should_fence`]; the fence itself
/// ([`run_with_status`]) runs until `shutdown`. Returns the fence task and its status.
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
        loop {
            tokio::select! {
                r = snapshots.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let on = should_fence(&snapshots.borrow_and_update());
                    active_tx.send_if_modified(|a| std::mem::replace(a, on) != on);
                }
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    });
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

    use crate::ha::HaLoop;

    fn snapshot() -> NodeSnapshot {
        let id = NodeIdentity {
            node: rale::NodeId::new("n1").expect("valid id"),
            api_url: "http://127.0.0.1:8008".into(),
            pg_host: "127.0.0.1".into(),
            pg_port: 5432,
            tags: Default::default(),
        };
        HaLoop::initial_snapshot(&id)
    }

    #[test]
    fn fences_only_a_running_primary_that_asks_for_it() {
        let mut s = snapshot();
        assert!(!should_fence(&s), "stopped");
        s.pg.running = true;
        s.pg.in_recovery = false;
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
