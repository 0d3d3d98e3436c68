//! Patroni-compatible answers of the synchronous-replication health checks:
//! `GET /sync` (`/synchronous`), `/async` (`/asynchronous`), `/quorum`,
//! `/read-only-sync` (`/read-only-synchronous`) and `/read-only-quorum`.
//!
//! The rules follow Patroni 4.1 and reproduce the status codes captured from a real
//! Patroni cluster (`ramd-ref/tests/reference/patroni/*_status_codes.json`, replayed by this
//! module's tests):
//!
//! - a node is **replica-ready** when PostgreSQL runs as a replica, is not tagged
//!   `noloadbalance` and is not lagging beyond the request's `?lag=`;
//! - `/sync`: replica-ready and a synchronous standby (`sync`);
//! - `/quorum`: replica-ready and a quorum standby (`quorum`);
//! - `/async`: replica-ready and neither of the two; the leader is never "async";
//! - `/read-only-sync` (`/read-only-quorum`): the primary holding the leadership (or
//!   the standby leader of a standby cluster), or what `/sync` (`/quorum`) answers;
//! - without a reachable consensus every one of these answers 503, as Patroni does
//!   without its DCS.
//!
//! Patroni decides "synchronous" from its `/sync` key (the recorded set); RALE may give
//! either that ([`StandbySyncState::from_recorded`]) or what the primary shows in
//! `pg_stat_replication.sync_state` ([`StandbySyncState::from_pg`]). A `potential`
//! standby does not acknowledge commits now, so it answers like an asynchronous one.

use std::str::FromStr;

use crate::names::SyncMethod;
use crate::transition::RecordedSet;
use crate::{Error, Result};

/// HTTP status of a healthy answer.
pub const OK: u16 = 200;
/// HTTP status of an unhealthy answer.
pub const UNAVAILABLE: u16 = 503;

/// What PostgreSQL runs as on the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRole {
    /// Read-write primary.
    Primary,
    /// Streaming standby.
    Replica,
    /// The leader of a standby cluster (a replica of another cluster).
    StandbyLeader,
    /// Stopped, starting, unknown.
    Other,
}

/// How the primary treats a standby, as in `pg_stat_replication.sync_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StandbySyncState {
    /// `sync`: acknowledges commits under `FIRST n`.
    Sync,
    /// `quorum`: a candidate acknowledger under `ANY n`.
    Quorum,
    /// `potential`: listed under `FIRST n` but not among the first `n` connected.
    Potential,
    /// `async`: not listed.
    Async,
}

impl StandbySyncState {
    /// From `pg_stat_replication.sync_state` (`sync`, `quorum`, `potential`, `async`).
    pub fn from_pg(text: &str) -> Result<Self> {
        text.parse()
    }

    /// From the recorded synchronous set, as Patroni does with its `/sync` key: a member
    /// is `sync` under `FIRST`, `quorum` under `ANY`; anyone else, or anyone when the set
    /// promises nothing, is `async`.
    pub fn from_recorded(recorded: &RecordedSet, method: SyncMethod, name: &str) -> Self {
        let member = recorded.num > 0
            && recorded
                .members
                .iter()
                .any(|m| m.eq_ignore_ascii_case(name));
        match (member, method) {
            (false, _) => StandbySyncState::Async,
            (true, SyncMethod::First) => StandbySyncState::Sync,
            (true, SyncMethod::Any) => StandbySyncState::Quorum,
        }
    }
}

impl FromStr for StandbySyncState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sync" => Ok(StandbySyncState::Sync),
            "quorum" => Ok(StandbySyncState::Quorum),
            "potential" => Ok(StandbySyncState::Potential),
            "async" => Ok(StandbySyncState::Async),
            other => Err(Error::InvalidSetting(format!(
                "sync_state {other:?}: expected sync, quorum, potential or async"
            ))),
        }
    }
}

/// The facts the answers depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeHealth {
    /// What PostgreSQL runs as.
    pub role: NodeRole,
    /// PostgreSQL is up and running (Patroni's state `running`).
    pub running: bool,
    /// The node holds the cluster leadership (Patroni's leader lock).
    pub leader: bool,
    /// Tagged `noloadbalance`.
    pub noloadbalance: bool,
    /// Lagging more than the request's `?lag=` allows (false when none was given).
    pub lagging: bool,
    /// How the primary treats this node, `None` when it is not a streaming standby.
    pub sync_state: Option<StandbySyncState>,
    /// The consensus is reachable (Patroni: the DCS answers).
    pub consensus_available: bool,
}

/// One of the synchronous-replication health paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncHealthPath {
    /// `/sync`, `/synchronous`.
    Sync,
    /// `/async`, `/asynchronous`.
    Async,
    /// `/quorum`.
    Quorum,
    /// `/read-only-sync`, `/read-only-synchronous`.
    ReadOnlySync,
    /// `/read-only-quorum`.
    ReadOnlyQuorum,
}

impl SyncHealthPath {
    /// Recognises the request path (without its query string), or `None` for another path.
    pub fn from_path(path: &str) -> Option<Self> {
        Some(match path {
            "/sync" | "/synchronous" => SyncHealthPath::Sync,
            "/async" | "/asynchronous" => SyncHealthPath::Async,
            "/quorum" => SyncHealthPath::Quorum,
            "/read-only-sync" | "/read-only-synchronous" => SyncHealthPath::ReadOnlySync,
            "/read-only-quorum" => SyncHealthPath::ReadOnlyQuorum,
            _ => return None,
        })
    }
}

impl NodeHealth {
    /// Running as a replica that may take read traffic.
    pub fn replica_ready(&self) -> bool {
        self.role == NodeRole::Replica && self.running && !self.noloadbalance && !self.lagging
    }

    /// The leader: the primary, or a standby cluster's standby leader.
    pub fn leading(&self) -> bool {
        self.leader && matches!(self.role, NodeRole::Primary | NodeRole::StandbyLeader)
    }

    /// The status code of `path` on this node: [`OK`] or [`UNAVAILABLE`].
    pub fn status(&self, path: SyncHealthPath) -> u16 {
        if !self.consensus_available {
            return UNAVAILABLE;
        }
        let replica = |wanted: bool| {
            if wanted && self.replica_ready() {
                OK
            } else {
                UNAVAILABLE
            }
        };
        let standby = self.role == NodeRole::Replica;
        let sync = standby && self.sync_state == Some(StandbySyncState::Sync);
        let quorum = standby && self.sync_state == Some(StandbySyncState::Quorum);
        match path {
            SyncHealthPath::Sync => replica(sync),
            SyncHealthPath::Quorum => replica(quorum),
            SyncHealthPath::Async => replica(!sync && !quorum),
            SyncHealthPath::ReadOnlySync if self.leading() => OK,
            SyncHealthPath::ReadOnlySync => replica(sync),
            SyncHealthPath::ReadOnlyQuorum if self.leading() => OK,
            SyncHealthPath::ReadOnlyQuorum => replica(quorum),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader() -> NodeHealth {
        NodeHealth {
            role: NodeRole::Primary,
            running: true,
            leader: true,
            noloadbalance: false,
            lagging: false,
            sync_state: None,
            consensus_available: true,
        }
    }

    fn replica(sync_state: StandbySyncState) -> NodeHealth {
        NodeHealth {
            role: NodeRole::Replica,
            leader: false,
            sync_state: Some(sync_state),
            ..leader()
        }
    }

    const PATHS: [(&str, SyncHealthPath); 4] = [
        ("/sync", SyncHealthPath::Sync),
        ("/async", SyncHealthPath::Async),
        ("/read-only-sync", SyncHealthPath::ReadOnlySync),
        ("/quorum", SyncHealthPath::Quorum),
    ];

    fn assert_codes(node: &NodeHealth, expected: [u16; 4], what: &str) {
        for ((path, p), want) in PATHS.iter().zip(expected) {
            assert_eq!(SyncHealthPath::from_path(path), Some(*p));
            assert_eq!(node.status(*p), want, "{what} {path}");
        }
    }

    /// `ramd-ref/tests/reference/patroni/sync_status_codes.json` (Patroni 4.1.5, synchronous mode):
    /// n1 sync standby, n2 replica, n3 leader; order /sync, /async, /read-only-sync, /quorum.
    #[test]
    fn patroni_sync_mode_codes() {
        assert_codes(
            &replica(StandbySyncState::Sync),
            [200, 503, 200, 503],
            "n1 (sync_standby)",
        );
        assert_codes(
            &replica(StandbySyncState::Async),
            [503, 200, 503, 503],
            "n2 (replica)",
        );
        assert_codes(
            &replica(StandbySyncState::Potential),
            [503, 200, 503, 503],
            "potential",
        );
        assert_codes(&leader(), [503, 503, 200, 503], "n3 (leader)");
    }

    /// `ramd-ref/tests/reference/patroni/async_status_codes.json` (asynchronous mode):
    /// n1, n3 replicas, n2 leader.
    #[test]
    fn patroni_async_mode_codes() {
        assert_codes(
            &replica(StandbySyncState::Async),
            [503, 200, 503, 503],
            "n1/n3 (replica)",
        );
        let mut not_streaming = replica(StandbySyncState::Async);
        not_streaming.sync_state = None;
        assert_codes(
            &not_streaming,
            [503, 200, 503, 503],
            "replica unknown to the primary",
        );
        assert_codes(&leader(), [503, 503, 200, 503], "n2 (leader)");
    }

    #[test]
    fn quorum_and_conditions() {
        let q = replica(StandbySyncState::Quorum);
        assert_eq!(q.status(SyncHealthPath::Quorum), OK);
        assert_eq!(q.status(SyncHealthPath::ReadOnlyQuorum), OK);
        assert_eq!(q.status(SyncHealthPath::Async), UNAVAILABLE);
        assert_eq!(q.status(SyncHealthPath::Sync), UNAVAILABLE);
        assert_eq!(leader().status(SyncHealthPath::ReadOnlyQuorum), OK);
        let mut lagging = replica(StandbySyncState::Sync);
        lagging.lagging = true;
        assert_eq!(lagging.status(SyncHealthPath::Sync), UNAVAILABLE);
        let mut tagged = replica(StandbySyncState::Async);
        tagged.noloadbalance = true;
        assert_eq!(tagged.status(SyncHealthPath::Async), UNAVAILABLE);
        let mut stopped = replica(StandbySyncState::Sync);
        stopped.running = false;
        assert_eq!(stopped.status(SyncHealthPath::ReadOnlySync), UNAVAILABLE);
        let mut alone = leader();
        alone.consensus_available = false;
        assert_eq!(alone.status(SyncHealthPath::ReadOnlySync), UNAVAILABLE);
        let mut demoted = leader();
        demoted.leader = false;
        assert_eq!(demoted.status(SyncHealthPath::ReadOnlySync), UNAVAILABLE);
        assert_eq!(
            SyncHealthPath::from_path("/synchronous"),
            Some(SyncHealthPath::Sync)
        );
        assert_eq!(
            SyncHealthPath::from_path("/asynchronous"),
            Some(SyncHealthPath::Async)
        );
        assert_eq!(SyncHealthPath::from_path("/primary"), None);
    }

    #[test]
    fn sync_state_sources() {
        assert_eq!(
            StandbySyncState::from_pg("potential").ok(),
            Some(StandbySyncState::Potential)
        );
        assert!(StandbySyncState::from_pg("SYNC").is_err());
        let r = RecordedSet::new(["n1"], 1);
        assert_eq!(
            StandbySyncState::from_recorded(&r, SyncMethod::First, "N1"),
            StandbySyncState::Sync
        );
        assert_eq!(
            StandbySyncState::from_recorded(&r, SyncMethod::Any, "n1"),
            StandbySyncState::Quorum
        );
        assert_eq!(
            StandbySyncState::from_recorded(&r, SyncMethod::Any, "n2"),
            StandbySyncState::Async
        );
        let none = RecordedSet::new(["n1"], 0);
        assert_eq!(
            StandbySyncState::from_recorded(&none, SyncMethod::First, "n1"),
            StandbySyncState::Async
        );
    }
}
