//! Whether a member counts as a synchronous or quorum standby, for health checks, the
//! `/cluster` roles and metrics.
//!
//! The classification itself is `rale_sync::health::StandbySyncState::from_recorded`;
//! this module adds what only the cluster state knows (mode, the set's epoch, the holder).

use rale::{ClusterState, NodeId};
use rale_sync::health::StandbySyncState;
use rale_sync::{RecordedSet, SyncMethod, SyncMode};

/// A member's place in synchronous replication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncRole {
    /// Not synchronous (or the cluster is asynchronous).
    Async,
    /// In the synchronous set of a `FIRST n` configuration (Patroni's `sync_standby`).
    Sync,
    /// In the quorum set of an `ANY n` configuration (Patroni's `quorum_standby`).
    Quorum,
}

/// The member's role, from the synchronous set recorded in consensus: the set the
/// current primary (same lease epoch) published, which is the set failover honours.
/// In asynchronous mode nobody is synchronous, whatever the commit fence uses.
pub fn sync_role(cluster: &ClusterState, node: &NodeId) -> SyncRole {
    let mode = cluster.config.synchronous.mode;
    let recorded = &cluster.sync;
    let current = cluster.holder().is_some() && recorded.epoch == cluster.epoch();
    if mode == SyncMode::Off || !current || recorded.quorum == 0 {
        return SyncRole::Async;
    }
    if cluster.holder() == Some(node) {
        return SyncRole::Async;
    }
    // Patroni's rule, as rale-sync states it: a member of the recorded set is `sync`
    // under FIRST, `quorum` under ANY (names compared as PostgreSQL does).
    let set = RecordedSet::new(
        recorded.standbys.iter().map(|n| n.to_string()),
        recorded.quorum,
    );
    let method = match mode {
        SyncMode::Quorum => SyncMethod::Any,
        _ => SyncMethod::First,
    };
    match StandbySyncState::from_recorded(&set, method, node.as_str()) {
        StandbySyncState::Sync => SyncRole::Sync,
        StandbySyncState::Quorum => SyncRole::Quorum,
        StandbySyncState::Potential | StandbySyncState::Async => SyncRole::Async,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rale::Epoch;
    use rale::state::{Command, Operation};

    fn n(s: &str) -> NodeId {
        NodeId::new(s).expect("name")
    }

    #[test]
    fn roles_follow_mode_and_recorded_set() {
        let mut s = ClusterState::default();
        s.apply(&Command {
            op: Operation::AcquireLease {
                node: n("a"),
                expected_epoch: Epoch(0),
                expected_renewals: 0,
                holder_clock: rale::Millis(0),
                timeline: rale::Timeline(1),
                lsn: rale::Lsn(0),
                kind: rale::state::HistoryKind::Bootstrap,
                reason: "t".into(),
            },
            wall_ms: 0,
        });
        s.apply(&Command {
            op: Operation::SetSync {
                epoch: Epoch(1),
                standbys: [n("b")].into_iter().collect(),
                quorum: 1,
            },
            wall_ms: 0,
        });
        assert_eq!(sync_role(&s, &n("b")), SyncRole::Async, "async mode");
        s.config.synchronous.mode = SyncMode::On;
        assert_eq!(sync_role(&s, &n("b")), SyncRole::Sync);
        assert_eq!(sync_role(&s, &n("c")), SyncRole::Async);
        assert_eq!(sync_role(&s, &n("a")), SyncRole::Async);
        s.config.synchronous.mode = SyncMode::Quorum;
        assert_eq!(sync_role(&s, &n("b")), SyncRole::Quorum);
        s.sync.epoch = Epoch(0);
        assert_eq!(sync_role(&s, &n("b")), SyncRole::Async, "stale epoch");
    }
}
