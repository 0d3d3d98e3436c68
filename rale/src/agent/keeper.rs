//! The lease keeper: renews the lease while one HA-loop iteration runs longer than the
//! renew interval (`pg_ctl start` with crash recovery, a slow promotion), within the
//! policy's [`RenewalGrant`]; between iterations the loop renews by itself. See
//! `docs/lease.md`, "The lease keeper".

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::{debug, info, warn};

use super::fence::FenceDeadline;
use super::runtime::{Runtime, timeout};
use crate::consensus::Consensus;
use crate::decide::RenewalGrant;
use crate::state::{Command, Operation};
use crate::types::NodeId;

/// What the HA loop shares with its lease keeper.
#[derive(Default, Debug)]
pub(crate) struct KeeperShared {
    /// Monotonic ms at which the running iteration started; 0 between iterations.
    pub busy_since: AtomicU64,
    /// The policy's latest [`RenewalGrant`].
    grant: std::sync::Mutex<Option<RenewalGrant>>,
}

impl KeeperShared {
    pub fn grant(&self) -> Option<RenewalGrant> {
        *self.grant.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_grant(&self, g: Option<RenewalGrant>) {
        *self.grant.lock().unwrap_or_else(|e| e.into_inner()) = g;
    }
}

/// The keeper's loop (runs until dropped).
pub(crate) async fn keep_lease(
    rt: Arc<dyn Runtime>,
    shared: Arc<KeeperShared>,
    consensus: Arc<dyn Consensus>,
    fence: FenceDeadline,
    node: NodeId,
) {
    let mut renewing_since: Option<u64> = None;
    for _ in 0..u64::MAX {
        let pause_ms = shared
            .grant()
            .map(|g| g.renew_interval_ms / 2)
            .unwrap_or(100)
            .clamp(10, 1000);
        rt.sleep(Duration::from_millis(pause_ms)).await;
        let now = rt.now();
        let busy_since = shared.busy_since.load(Ordering::SeqCst);
        let Some(grant) = shared.grant() else {
            renewing_since = None;
            continue;
        };
        let busy_ms = now.0.saturating_sub(busy_since);
        if busy_since == 0 || busy_ms < grant.renew_interval_ms || now >= grant.until {
            if busy_since == 0 {
                renewing_since = None;
            }
            continue;
        }
        if renewing_since != Some(busy_since) {
            renewing_since = Some(busy_since);
            info!(node = %node, epoch = grant.epoch.0, busy_ms,
                grant_left_ms = grant.until.since(now),
                "HA loop busy: the lease keeper renews the lease meanwhile");
        }
        let cmd = Command {
            op: Operation::RenewLease {
                node: node.clone(),
                epoch: grant.epoch,
                holder_clock: now,
            },
            wall_ms: rt.wall_ms(),
        };
        let limit = Duration::from_millis(grant.validity_ms.max(100));
        match timeout(rt.as_ref(), limit, consensus.propose(cmd)).await {
            Some(Ok(outcome)) if outcome.is_applied() => {
                fence.extend(grant.epoch, now.plus(grant.validity_ms));
            }
            Some(Ok(outcome)) => {
                warn!(node = %node, epoch = grant.epoch.0, ?outcome,
                    "lease keeper: renewal refused; the lease is lost");
                shared.set_grant(None);
            }
            Some(Err(e)) => debug!(node = %node, error = %e, "lease keeper: renewal failed"),
            None => debug!(node = %node, "lease keeper: renewal timed out"),
        }
    }
}
