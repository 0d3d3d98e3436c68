//! Configuration of a [`super::RaftConsensus`] node.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::consensus::Peer;
use crate::types::NodeId;
use crate::{Error, Result};

/// How a node takes part in Raft. Durations are human strings in files (`"100ms"`).
///
/// Timing rules (checked by [`RaftConfig::validate`]):
/// `heartbeat_interval < election_timeout_min < election_timeout_max`,
/// `rpc_timeout < election_timeout_min`, `election_timeout_max <= majority_timeout`.
///
/// Leader loss to new leader: openraft 0.9 makes a follower honour its leader's lease
/// (`election_timeout_max`) and then wait its own random election timeout, so a new
/// leader is elected `election_timeout_max + [election_timeout_min, election_timeout_max)`
/// (plus up to 1.5 × `heartbeat_interval` of timer granularity) after the last heartbeat:
/// 600–875 ms with the defaults (heartbeat 50 ms, elections 200–400 ms).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftConfig {
    /// This member's name.
    pub node: NodeId,
    /// This member's numeric Raft id; unique in the cluster and never reused.
    pub raft_id: u64,
    /// Base URL of this member's agent API (where [`super::router`] is served).
    pub api_url: String,
    /// Directory of the durable Raft store (`raft.redb`).
    pub data_dir: PathBuf,
    /// The initial voters. A node that lists itself here initialises the cluster with
    /// exactly this set on first start (every initial member must list the same set); a
    /// node that does not list itself starts empty and waits to be added with
    /// [`crate::Consensus::add_member`].
    pub peers: Vec<Peer>,
    /// How often the leader sends heartbeats.
    #[serde(default = "default_heartbeat_interval", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A follower that hears nothing from a leader for a random time in
    /// `[election_timeout_min, election_timeout_max)` starts an election.
    #[serde(default = "default_election_timeout_min", with = "humantime_serde")]
    pub election_timeout_min: Duration,
    /// See `election_timeout_min`.
    #[serde(default = "default_election_timeout_max", with = "humantime_serde")]
    pub election_timeout_max: Duration,
    /// Time allowed to send a snapshot chunk to a lagging member.
    #[serde(default = "default_install_snapshot_timeout", with = "humantime_serde")]
    pub install_snapshot_timeout: Duration,
    /// Time allowed for one vote or append RPC.
    #[serde(default = "default_rpc_timeout", with = "humantime_serde")]
    pub rpc_timeout: Duration,
    /// Bound on `propose` and `read` (including forwarding to the leader).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Bound on `add_member` (catching up included) and `remove_member`.
    #[serde(default = "default_membership_timeout", with = "humantime_serde")]
    pub membership_timeout: Duration,
    /// `has_majority` window: a leader needs a quorum acknowledgement, a follower a
    /// message from the current leader, at most this long ago.
    #[serde(default = "default_majority_timeout", with = "humantime_serde")]
    pub majority_timeout: Duration,
    /// Build a snapshot (and compact the log) every this many applied entries.
    #[serde(default = "default_snapshot_logs")]
    pub snapshot_logs: u64,
    /// Entries kept in the log behind the latest snapshot (for followers slightly behind).
    #[serde(default = "default_logs_kept_after_snapshot")]
    pub logs_kept_after_snapshot: u64,
    /// Shared secret every member sends (`Authorization: Bearer …`) and requires on the
    /// Raft endpoints. `None`: no authentication (trusted networks and tests only).
    #[serde(default)]
    pub auth_token: Option<String>,
    /// PEM bundle of CA certificates trusted, in addition to the public web roots, when
    /// connecting to members whose `api_url` is `https://` (a private CA). Read when the
    /// node starts; an unreadable or empty bundle fails the start.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
}

fn default_heartbeat_interval() -> Duration {
    Duration::from_millis(50)
}
fn default_election_timeout_min() -> Duration {
    Duration::from_millis(200)
}
fn default_election_timeout_max() -> Duration {
    Duration::from_millis(400)
}
fn default_install_snapshot_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_rpc_timeout() -> Duration {
    Duration::from_millis(150)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_membership_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_majority_timeout() -> Duration {
    Duration::from_millis(800)
}
fn default_snapshot_logs() -> u64 {
    1000
}
fn default_logs_kept_after_snapshot() -> u64 {
    500
}

impl RaftConfig {
    /// A configuration with default timings and no authentication.
    pub fn new(
        node: NodeId,
        raft_id: u64,
        api_url: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        peers: Vec<Peer>,
    ) -> Self {
        Self {
            node,
            raft_id,
            api_url: api_url.into(),
            data_dir: data_dir.into(),
            peers,
            heartbeat_interval: default_heartbeat_interval(),
            election_timeout_min: default_election_timeout_min(),
            election_timeout_max: default_election_timeout_max(),
            install_snapshot_timeout: default_install_snapshot_timeout(),
            rpc_timeout: default_rpc_timeout(),
            request_timeout: default_request_timeout(),
            membership_timeout: default_membership_timeout(),
            majority_timeout: default_majority_timeout(),
            snapshot_logs: default_snapshot_logs(),
            logs_kept_after_snapshot: default_logs_kept_after_snapshot(),
            auth_token: None,
            tls_ca: None,
        }
    }

    /// Whether this node is one of the initial voters.
    pub fn is_initial_voter(&self) -> bool {
        self.peers.iter().any(|p| p.raft_id == self.raft_id)
    }

    /// Checks the rules above and the peer list.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(format!("raft: {m}")));
        if self.raft_id == 0 {
            return bad("raft_id must be at least 1".into());
        }
        if !(self.api_url.starts_with("http://") || self.api_url.starts_with("https://")) {
            return bad(format!(
                "api_url {:?} must start with http:// or https://",
                self.api_url
            ));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.election_timeout_min
        {
            return bad("heartbeat_interval must be above 0 and below election_timeout_min".into());
        }
        if self.election_timeout_min >= self.election_timeout_max {
            return bad("election_timeout_min must be below election_timeout_max".into());
        }
        if self.rpc_timeout.is_zero() || self.rpc_timeout >= self.election_timeout_min {
            return bad("rpc_timeout must be above 0 and below election_timeout_min".into());
        }
        if self.majority_timeout < self.election_timeout_max {
            return bad("majority_timeout must be at least election_timeout_max".into());
        }
        if self.install_snapshot_timeout < self.election_timeout_max {
            return bad("install_snapshot_timeout must be at least election_timeout_max".into());
        }
        if self.request_timeout.is_zero() || self.membership_timeout.is_zero() {
            return bad("request_timeout and membership_timeout must be above 0".into());
        }
        if self.snapshot_logs == 0 {
            return bad("snapshot_logs must be at least 1".into());
        }
        if matches!(&self.auth_token, Some(t) if t.is_empty()) {
            return bad("auth_token must not be empty when set".into());
        }
        crate::consensus::Peer::check_distinct(&self.peers)?;
        let mut ids = BTreeSet::new();
        let mut names = BTreeSet::new();
        for p in &self.peers {
            if p.raft_id == 0 {
                return bad(format!("peer {} has raft_id 0", p.node));
            }
            if !ids.insert(p.raft_id) || !names.insert(p.node.clone()) {
                return bad(format!(
                    "peer {} (raft_id {}) is listed twice",
                    p.node, p.raft_id
                ));
            }
            if p.raft_id == self.raft_id && p.node != self.node {
                return bad(format!(
                    "raft_id {} is this node's but the peer list names it {}",
                    p.raft_id, p.node
                ));
            }
            if p.node == self.node && p.raft_id != self.raft_id {
                return bad(format!(
                    "peer {} has raft_id {} but this node's raft_id is {}",
                    p.node, p.raft_id, self.raft_id
                ));
            }
        }
        Ok(())
    }

    /// The openraft configuration for these settings.
    pub(crate) fn openraft_config(&self) -> Result<openraft::Config> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let config = openraft::Config {
            cluster_name: "rale".into(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            install_snapshot_timeout: ms(self.install_snapshot_timeout),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            // Small chunks: each one is a JSON array of numbers on the wire.
            snapshot_max_chunk_size: 256 * 1024,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| Error::InvalidConfig(format!("raft: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, id: u64) -> Peer {
        Peer {
            node: NodeId::new(name).expect("valid name"),
            raft_id: id,
            api_url: format!("http://127.0.0.1:{}", 8000 + id),
        }
    }

    fn config() -> RaftConfig {
        RaftConfig::new(
            NodeId::new("a").expect("valid name"),
            1,
            "http://127.0.0.1:8001",
            "/tmp/x",
            vec![peer("a", 1), peer("b", 2), peer("c", 3)],
        )
    }

    #[test]
    fn defaults_validate_and_map_to_openraft() {
        let c = config();
        assert!(c.validate().is_ok());
        assert!(c.is_initial_voter());
        let o = c.openraft_config().expect("valid openraft config");
        assert_eq!(o.heartbeat_interval, 50);
        assert_eq!(o.election_timeout_min, 200);
        assert_eq!(o.election_timeout_max, 400);
        assert!(o.install_snapshot_timeout >= 5000);
    }

    #[test]
    fn rejects_bad_timings_and_peers() {
        let mut c = config();
        c.rpc_timeout = c.election_timeout_min;
        assert!(matches!(c.validate(), Err(Error::InvalidConfig(_))));

        let mut c = config();
        c.election_timeout_max = c.election_timeout_min;
        assert!(c.validate().is_err());

        let mut c = config();
        c.peers.push(peer("d", 2));
        assert!(c.validate().is_err());

        let mut c = config();
        c.peers[0].node = NodeId::new("z").expect("valid name");
        assert!(c.validate().is_err());

        let mut c = config();
        c.auth_token = Some(String::new());
        assert!(c.validate().is_err());
    }

    #[test]
    fn parses_human_durations() {
        let text = r#"{"node":"a","raft_id":1,"api_url":"http://h:1","data_dir":"/d",
            "peers":[],"heartbeat_interval":"50ms","election_timeout_min":"300ms",
            "election_timeout_max":"600ms"}"#;
        let c: RaftConfig = serde_json::from_str(text).expect("parses");
        assert_eq!(c.heartbeat_interval, Duration::from_millis(50));
        assert_eq!(c.rpc_timeout, default_rpc_timeout());
        assert!(!c.is_initial_voter());
        assert!(c.validate().is_ok());
    }
}
