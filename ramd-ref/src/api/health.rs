//! Patroni-compatible health checks: which path asks what, and the answer (200 or 503)
//! for this node's latest snapshot.

use rale::{ClusterState, Lsn, Role};

use super::sync_role::{SyncRole, sync_role};
use crate::snapshot::NodeSnapshot;

/// What a health path asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// `/`, `/primary`, `/read-write`, `/master`: writable primary holding the lease.
    Primary,
    /// `/leader`: holds the lease, whatever PostgreSQL's role.
    Leader,
    /// `/standby-leader`: leader of a standby cluster (never, under RALE).
    StandbyLeader,
    /// `/replica`: a running replica that takes reads.
    Replica,
    /// `/read-only`: primary or a passing replica.
    ReadOnly,
    /// `/sync`, `/synchronous`: a passing replica in the synchronous set.
    Sync,
    /// `/async`, `/asynchronous`: a passing replica outside the synchronous set.
    Async,
    /// `/quorum`: a passing replica in the quorum set.
    Quorum,
    /// `/read-only-sync`: primary or a synchronous standby.
    ReadOnlySync,
    /// `/read-only-quorum`: primary or a quorum standby.
    ReadOnlyQuorum,
    /// `/health`: PostgreSQL runs.
    Health,
    /// `/liveness`: the HA loop ran recently.
    Liveness,
    /// `/readiness`: primary, or a streaming replica within the lag limit.
    Readiness,
}

/// Every health path and what it asks, in routing order.
pub const HEALTH_PATHS: &[(&str, Check)] = &[
    ("/", Check::Primary),
    ("/primary", Check::Primary),
    ("/read-write", Check::Primary),
    ("/master", Check::Primary),
    ("/leader", Check::Leader),
    ("/standby-leader", Check::StandbyLeader),
    ("/standby_leader", Check::StandbyLeader),
    ("/replica", Check::Replica),
    ("/read-only", Check::ReadOnly),
    ("/sync", Check::Sync),
    ("/synchronous", Check::Sync),
    ("/async", Check::Async),
    ("/asynchronous", Check::Async),
    ("/quorum", Check::Quorum),
    ("/read-only-sync", Check::ReadOnlySync),
    ("/read-only-synchronous", Check::ReadOnlySync),
    ("/read-only-quorum", Check::ReadOnlyQuorum),
    ("/health", Check::Health),
    ("/liveness", Check::Liveness),
    ("/readiness", Check::Readiness),
];

/// The check a path asks for, if it is a health path.
pub fn check_for_path(path: &str) -> Option<Check> {
    HEALTH_PATHS
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, c)| *c)
}

/// Parses a size such as `1048576`, `16kB`, `10MB`, `1GB` (binary multiples, as
/// PostgreSQL and Patroni read them) into bytes.
pub fn parse_size_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1 << 10,
        "mb" | "m" => 1 << 20,
        "gb" | "g" => 1 << 30,
        "tb" | "t" => 1 << 40,
        _ => return None,
    };
    value.checked_mul(multiplier)
}

/// Parameters of a health request: `lag`, `replication_state`, `mode`, `tag_<k>=<v>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthQuery {
    /// `?lag=`: the text as given (parsed when checked; unparsable fails the check).
    pub lag: Option<String>,
    /// `?replication_state=`.
    pub replication_state: Option<String>,
    /// `?tag_<k>=<v>` filters.
    pub tags: Vec<(String, String)>,
}

impl HealthQuery {
    /// Collects the parameters that matter; others are ignored as Patroni does.
    pub fn from_pairs(pairs: &[(String, String)]) -> Self {
        let mut q = HealthQuery::default();
        for (k, v) in pairs {
            match k.as_str() {
                "lag" => q.lag = Some(v.clone()),
                "replication_state" => q.replication_state = Some(v.clone()),
                other => {
                    if let Some(tag) = other.strip_prefix("tag_") {
                        q.tags.push((tag.to_owned(), v.clone()));
                    }
                }
            }
        }
        q
    }
}

/// The cluster's last known primary position: the lease holder's published position, or
/// the furthest any member published when there is no holder.
pub fn primary_lsn(cluster: &ClusterState) -> Option<Lsn> {
    match cluster.holder() {
        Some(h) => cluster.members.get(h).map(|m| m.lsn),
        None => cluster.members.values().map(|m| m.lsn).max(),
    }
}

/// This replica's replay lag behind the cluster's primary, in bytes.
pub fn replay_lag_bytes(snap: &NodeSnapshot, cluster: &ClusterState) -> Option<u64> {
    let primary = primary_lsn(cluster)?;
    let replayed = snap.pg.replay_lsn.unwrap_or(snap.pg.write_lsn);
    Some(primary.bytes_after(replayed))
}

fn tag_matches(tags: &rale::Tags, key: &str, want: &str) -> bool {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(tags) else {
        return false;
    };
    match map.get(key) {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::String(s)) => s == want,
        Some(v) => v.to_string().eq_ignore_ascii_case(want),
    }
}

/// Wall-clock "now" and the snapshot and cluster state a health check judges.
pub struct HealthInput<'a> {
    /// This node's latest view.
    pub snap: &'a NodeSnapshot,
    /// The freshest cluster state this node has.
    pub cluster: &'a ClusterState,
    /// Unix milliseconds now.
    pub now_unix_ms: u64,
}

impl HealthInput<'_> {
    fn running(&self) -> bool {
        self.snap.pg.running && self.snap.pg.reachable
    }

    fn replica_passes(&self, q: &HealthQuery) -> bool {
        let s = self.snap;
        if s.lease_epoch.is_some() || !self.running() || s.pg.role() != Role::Replica {
            return false;
        }
        if s.tags.noloadbalance {
            return false;
        }
        if let Some(text) = &q.lag {
            let Some(max) = parse_size_bytes(text) else {
                return false;
            };
            match replay_lag_bytes(s, self.cluster) {
                Some(lag) if lag <= max => {}
                _ => return false,
            }
        }
        if let Some(want) = &q.replication_state {
            let have = if s.pg.streaming {
                "streaming"
            } else {
                "in archive recovery"
            };
            if have != want {
                return false;
            }
        }
        q.tags.iter().all(|(k, v)| tag_matches(&s.tags, k, v))
    }

    fn sync(&self) -> SyncRole {
        sync_role(self.cluster, &self.snap.node)
    }

    /// Whether the check passes (200) or not (503).
    pub fn passes(&self, check: Check, q: &HealthQuery) -> bool {
        let s = self.snap;
        let primary = s.is_primary();
        match check {
            Check::Primary => primary,
            Check::Leader => s.lease_epoch.is_some(),
            Check::StandbyLeader => false,
            Check::Replica => self.replica_passes(q),
            Check::ReadOnly => primary || self.replica_passes(q),
            Check::Sync => {
                s.consensus_ok && self.sync() == SyncRole::Sync && self.replica_passes(q)
            }
            Check::Quorum => {
                s.consensus_ok && self.sync() == SyncRole::Quorum && self.replica_passes(q)
            }
            Check::Async => {
                s.consensus_ok && self.sync() == SyncRole::Async && self.replica_passes(q)
            }
            Check::ReadOnlySync => {
                primary
                    || (s.consensus_ok && self.sync() == SyncRole::Sync && self.replica_passes(q))
            }
            Check::ReadOnlyQuorum => {
                primary
                    || (s.consensus_ok && self.sync() == SyncRole::Quorum && self.replica_passes(q))
            }
            Check::Health => self.running(),
            Check::Liveness => {
                let limit_ms = 2 * self.cluster.config.lease_ttl_ms();
                self.cluster.paused
                    || self.now_unix_ms.saturating_sub(s.loop_last_unix_ms) <= limit_ms
            }
            Check::Readiness => {
                if s.lease_epoch.is_some() {
                    return true;
                }
                if !self.running() || s.pg.role() != Role::Replica || !s.pg.streaming {
                    return false;
                }
                let max = match &q.lag {
                    Some(text) => parse_size_bytes(text),
                    None => Some(
                        self.cluster
                            .config
                            .maximum_lag_on_failover_bytes
                            .unwrap_or(u64::MAX),
                    ),
                };
                match (max, replay_lag_bytes(s, self.cluster)) {
                    (Some(max), Some(lag)) => lag <= max,
                    (Some(u64::MAX), None) => true,
                    _ => false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size_bytes("0"), Some(0));
        assert_eq!(parse_size_bytes("1048576"), Some(1 << 20));
        assert_eq!(parse_size_bytes("16kB"), Some(16 << 10));
        assert_eq!(parse_size_bytes("10MB"), Some(10 << 20));
        assert_eq!(parse_size_bytes("1GB"), Some(1 << 30));
        assert_eq!(parse_size_bytes(" 2 TB "), Some(2 << 40));
        assert_eq!(parse_size_bytes("MB"), None);
        assert_eq!(parse_size_bytes("-1"), None);
        assert_eq!(parse_size_bytes("1PB"), None);
        assert_eq!(parse_size_bytes("99999999999999999999TB"), None);
    }

    #[test]
    fn paths() {
        assert_eq!(check_for_path("/master"), Some(Check::Primary));
        assert_eq!(check_for_path("/read-only-sync"), Some(Check::ReadOnlySync));
        assert_eq!(check_for_path("/nope"), None);
    }

    proptest! {
        #[test]
        fn size_round_trips(v in 0u64..(1 << 40), unit in 0usize..4) {
            let (suffix, mult) = [("", 1u64), ("kB", 1 << 10), ("MB", 1 << 20), ("GB", 1 << 30)][unit];
            let text = format!("{v}{suffix}");
            prop_assert_eq!(parse_size_bytes(&text), v.checked_mul(mult));
        }

        #[test]
        fn size_parser_never_panics(s in ".{0,30}") {
            let _ = parse_size_bytes(&s);
        }
    }
}
