//! What a node observes of its own PostgreSQL ([`PgStatus`]) and what it publishes about
//! itself to the cluster through consensus ([`MemberStatus`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{Epoch, Lsn, NodeId, Role, Tags, Timeline};

/// What the data directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataDirState {
    /// Missing or empty: the node can be initialised or cloned.
    Empty,
    /// An initialised cluster with its `pg_controldata` system identifier.
    Initialized {
        /// Database system identifier.
        system_id: u64,
    },
}

/// One row of `pg_stat_replication` as seen on a primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaConnection {
    /// `application_name` of the standby (our members use their node name).
    pub application_name: String,
    /// `state`: `streaming`, `catchup`, `startup`, `backup`, `stopping`.
    pub state: String,
    /// `sync_state`: `async`, `potential`, `sync`, `quorum`.
    pub sync_state: String,
    /// Last position the standby wrote.
    pub write_lsn: Option<Lsn>,
    /// Last position the standby flushed.
    pub flush_lsn: Option<Lsn>,
    /// Last position the standby replayed.
    pub replay_lsn: Option<Lsn>,
}

/// A logical replication slot on the local server (`pg_replication_slots`, not temporary).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogicalSlot {
    /// Slot name.
    pub name: String,
    /// Its database.
    pub database: String,
    /// Its output plugin.
    pub plugin: String,
    /// `confirmed_flush_lsn`: what its consumer confirmed (on a replica's copy: where the
    /// copy was last advanced to). `None` while PostgreSQL reports none.
    pub confirmed_flush_lsn: Option<Lsn>,
}

/// A node's own PostgreSQL, as the agent observed it just now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgStatus {
    /// What the data directory holds.
    pub data: DataDirState,
    /// Whether a postmaster is running for the data directory.
    pub running: bool,
    /// Whether it answered a query within the status timeout.
    pub reachable: bool,
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// Current timeline.
    pub timeline: Timeline,
    /// On a primary `pg_current_wal_lsn()`, on a replica the replay position.
    pub write_lsn: Lsn,
    /// On a replica, the last position received (`pg_last_wal_receive_lsn()`).
    pub receive_lsn: Option<Lsn>,
    /// On a replica, the last position replayed (`pg_last_wal_replay_lsn()`).
    pub replay_lsn: Option<Lsn>,
    /// On a replica, whether a WAL receiver is streaming right now.
    pub streaming: bool,
    /// On a replica, the member its `primary_conninfo` points at (`None` = detached).
    pub upstream: Option<NodeId>,
    /// On a primary, `pg_stat_replication`.
    pub replicas: Vec<ReplicaConnection>,
    /// `synchronous_standby_names` currently in force.
    pub synchronous_standby_names: String,
    /// Some setting waits for a restart (`pg_settings.pending_restart`).
    pub pending_restart: bool,
    /// `server_version_num`, e.g. 150008 (0 when unknown).
    pub server_version_num: u32,
    /// The logical replication slots on this server (a primary's own, a replica's
    /// copies: see `docs/slots.md`).
    #[serde(default)]
    pub logical_slots: Vec<LogicalSlot>,
    /// `hot_standby_feedback` is on: a replica's copies of logical slots keep the
    /// primary's catalog rows they need only with it.
    #[serde(default)]
    pub hot_standby_feedback: bool,
}

impl PgStatus {
    /// A node whose PostgreSQL is not running, with the given data directory state.
    pub fn stopped(data: DataDirState) -> Self {
        Self {
            data,
            running: false,
            reachable: false,
            in_recovery: false,
            timeline: Timeline(0),
            write_lsn: Lsn::ZERO,
            receive_lsn: None,
            replay_lsn: None,
            streaming: false,
            upstream: None,
            replicas: Vec::new(),
            synchronous_standby_names: String::new(),
            pending_restart: false,
            server_version_num: 0,
            logical_slots: Vec::new(),
            hot_standby_feedback: false,
        }
    }

    /// The role this status shows.
    pub fn role(&self) -> Role {
        match (self.running && self.reachable, self.in_recovery) {
            (false, _) => Role::Unknown,
            (true, true) => Role::Replica,
            (true, false) => Role::Primary,
        }
    }

    /// The furthest WAL position this node holds: received or replayed on a replica,
    /// written on a primary.
    pub fn wal_position(&self) -> Lsn {
        let recv = self.receive_lsn.unwrap_or(Lsn::ZERO);
        let replay = self.replay_lsn.unwrap_or(Lsn::ZERO);
        self.write_lsn.max(recv).max(replay)
    }
}

/// The moment a replica stopped following a primary whose lease it saw expire, recorded so
/// that failover waits until enough replicas have stopped acknowledging the old primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detachment {
    /// The lease epoch the replica stopped following.
    pub epoch: Epoch,
    /// Its WAL position once detached (final: it receives nothing more).
    pub lsn: Lsn,
    /// Its timeline once detached.
    pub timeline: Timeline,
}

/// What a member publishes about itself into the replicated cluster state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// The member.
    pub node: NodeId,
    /// Base URL of its agent's REST API, e.g. `http://127.0.0.1:8008`.
    pub api_url: String,
    /// Host its PostgreSQL listens on.
    pub pg_host: String,
    /// Port its PostgreSQL listens on.
    pub pg_port: u16,
    /// Observed role.
    pub role: Role,
    /// Whether PostgreSQL runs and answers.
    pub running: bool,
    /// Current timeline.
    pub timeline: Timeline,
    /// Furthest WAL position held (see [`PgStatus::wal_position`]).
    pub lsn: Lsn,
    /// Replica: last received position.
    pub receive_lsn: Option<Lsn>,
    /// Replica: last replayed position.
    pub replay_lsn: Option<Lsn>,
    /// Replica: the member it follows.
    pub upstream: Option<NodeId>,
    /// Replica: streaming right now.
    pub streaming: bool,
    /// Tags from the member's configuration.
    pub tags: Tags,
    /// Set once the member stopped following an expired primary.
    pub detached: Option<Detachment>,
    /// Some setting waits for a restart.
    pub pending_restart: bool,
    /// `server_version_num`.
    pub server_version_num: u32,
    /// Database system identifier of its data directory, if initialised.
    pub system_id: Option<u64>,
    /// `confirmed_flush_lsn` of each permanent logical slot (`slots` of the dynamic
    /// configuration) on this member: on the primary what the slot's consumer confirmed —
    /// replicas advance their copies to it, never further — on a replica where its copy
    /// stands. Published with the WAL positions (at most every `publish_interval`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub logical_slots: BTreeMap<String, Lsn>,
    /// Bumped by the member on every publication, so observers see it is alive.
    pub heartbeat: u64,
}
