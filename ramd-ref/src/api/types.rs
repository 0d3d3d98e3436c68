//! Request and response bodies of the REST API, shared by the server ([`crate::api`]) and
//! the client ([`crate::client`], `ramctrl`).
//!
//! The Patroni-compatible types ([`NodeStatus`], [`PatroniCluster`],
//! [`PatroniHistoryEntry`]) keep Patroni's field names and omit the same fields Patroni
//! omits, so that HAProxy checks, scripts and dashboards written for Patroni read them
//! unchanged. Fields of ours are added, never renamed.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

mod ext;
mod fence;
mod metrics;
mod slots;
pub use ext::*;
pub use fence::FenceView;
pub use metrics::{ClusterMetrics, SlotUsage, StandbyLag, WorkloadSummary};
pub use slots::{SlotManagement, SlotView, SlotsView};

fn is_false(b: &bool) -> bool {
    !*b
}

/// The body of every error answer: `{"error": "...", ...details}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words.
    pub error: String,
    /// Extra machine-readable details (e.g. `node`, `expected_version`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// The body of a successful operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActionResponse {
    /// What happened, in words (Patroni's texts where Patroni has one).
    pub message: String,
    /// The member concerned, when there is one (new primary, restarted node, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Maintenance mode after the operation (pause and resume only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

impl ActionResponse {
    /// A response with only a message.
    pub fn message(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            node: None,
            paused: None,
        }
    }
}

/// WAL positions of a node, Patroni's `xlog` object: `location` on a primary,
/// `received_location`/`replayed_location` on a replica (byte offsets).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Xlog {
    /// Primary: current write position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<u64>,
    /// Replica: last received position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_location: Option<u64>,
    /// Replica: last replayed position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_location: Option<u64>,
    /// Replica: whether replay is paused (never, under RALE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// One row of the primary's `pg_stat_replication`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReplicationInfo {
    /// The standby's `application_name` (its member name).
    pub application_name: String,
    /// `streaming`, `catchup`, …
    pub state: String,
    /// `async`, `potential`, `sync`, `quorum`.
    pub sync_state: String,
    /// Flushed position as `X/Y`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_lsn: Option<String>,
    /// Replayed position as `X/Y`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<String>,
}

/// Patroni's `patroni` object: software version, cluster name and member name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PatroniInfo {
    /// RALE version.
    pub version: String,
    /// Cluster name.
    pub scope: String,
    /// Member name.
    pub name: String,
}

/// A node's status: Patroni's `GET /patroni` body (also the body of every health check),
/// plus fields of ours after `patroni`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeStatus {
    /// PostgreSQL state: `running`, `starting`, `stopped`, `uninitialized`.
    pub state: String,
    /// `primary` or `replica` (`uninitialized` before the data directory exists).
    pub role: String,
    /// `server_version_num` (0 when unknown).
    pub server_version: u32,
    /// WAL positions.
    pub xlog: Xlog,
    /// Current timeline.
    pub timeline: u32,
    /// Primary: `pg_stat_replication`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replication: Vec<ReplicationInfo>,
    /// Replica: `streaming` or `in archive recovery`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_state: Option<String>,
    /// Present and `true` when no member holds the primary lease.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cluster_unlocked: bool,
    /// Unix seconds of the last successful consensus contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dcs_last_seen: Option<u64>,
    /// Database system identifier, as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_system_identifier: Option<String>,
    /// Software, cluster and member names.
    pub patroni: PatroniInfo,
    /// The member's tags.
    #[schema(value_type = Object)]
    pub tags: rale::Tags,
    /// Present and `true` when a setting waits for a restart.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pending_restart: bool,
    /// Present and `true` in maintenance mode.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pause: bool,
    /// Present and `true` on a synchronous standby (`FIRST n`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub sync_standby: bool,
    /// Present and `true` on a quorum standby (`ANY n`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub quorum_standby: bool,
    /// Ours: the lease epoch this node holds, while it holds a valid lease.
    #[serde(default)]
    pub lease_epoch: Option<u64>,
    /// Ours: the cluster's current lease epoch.
    #[serde(default)]
    pub cluster_epoch: u64,
    /// Ours: whether the commit fence acknowledges WAL.
    #[serde(default)]
    pub fence_open: bool,
    /// Ours: the commit fence in detail (absent from older agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<FenceView>,
    /// Ours: whether the last consensus read succeeded.
    #[serde(default)]
    pub consensus_ok: bool,
    /// Ours: the HA loop's last decision, in words.
    #[serde(default)]
    pub last_decision: String,
}

/// A lag in bytes, or `"unknown"` (Patroni's convention in `GET /cluster`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lag {
    /// Bytes behind the primary.
    Bytes(u64),
    /// Cannot be computed (no primary, member down).
    Unknown,
}

impl Lag {
    /// The lag in bytes, when known.
    pub fn bytes(self) -> Option<u64> {
        match self {
            Lag::Bytes(b) => Some(b),
            Lag::Unknown => None,
        }
    }
}

impl Serialize for Lag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Lag::Bytes(b) => s.serialize_u64(*b),
            Lag::Unknown => s.serialize_str("unknown"),
        }
    }
}

impl<'de> Deserialize<'de> for Lag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => Ok(n.as_u64().map(Lag::Bytes).unwrap_or(Lag::Unknown)),
            _ => Ok(Lag::Unknown),
        }
    }
}

/// One member in Patroni's `GET /cluster` shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PatroniMember {
    /// Member name.
    pub name: String,
    /// `leader`, `sync_standby`, `quorum_standby` or `replica`.
    pub role: String,
    /// `running`, `streaming`, `stopped`.
    pub state: String,
    /// The member's `/patroni` URL.
    pub api_url: String,
    /// PostgreSQL host.
    pub host: String,
    /// PostgreSQL port.
    pub port: u16,
    /// Timeline.
    pub timeline: u32,
    /// Replicas: bytes received behind the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_lag: Option<Lag>,
    /// Replicas: last received position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_lsn: Option<String>,
    /// Replicas: bytes replayed behind the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lag: Option<Lag>,
    /// Replicas: last replayed position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<String>,
    /// Replicas: bytes behind the primary (`"unknown"` when it cannot be computed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<Lag>,
    /// Replicas: furthest WAL position held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<String>,
    /// Tags, when any is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub tags: Option<rale::Tags>,
    /// Present and `true` when a setting waits for a restart.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pending_restart: bool,
}

/// Patroni's `scheduled_switchover` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScheduledSwitchover {
    /// When (ISO 8601); absent for a switchover requested to happen now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// The primary expected to step down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The member to promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// Patroni's `GET /cluster` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PatroniCluster {
    /// Members, by name.
    pub members: Vec<PatroniMember>,
    /// Cluster name.
    pub scope: String,
    /// Present and `true` in maintenance mode.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pause: bool,
    /// A pending planned switchover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_switchover: Option<ScheduledSwitchover>,
    /// Whether the lease-gated commit fence is configured (dynamic configuration
    /// `fence`; RALE's addition: the primary acknowledges commits only under its lease).
    #[serde(default)]
    pub fence: bool,
}

/// One row of Patroni's `GET /history`: `[timeline, lsn, reason, timestamp, new_leader]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatroniHistoryEntry(
    /// Timeline at the change.
    pub u32,
    /// WAL position (bytes) at the change.
    pub u64,
    /// Why.
    pub String,
    /// When (ISO 8601).
    pub String,
    /// The new primary.
    pub Option<String>,
);

/// One entry of `GET /api/v1/history`: everything the cluster recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntryView {
    /// Sequence number.
    pub seq: u64,
    /// When (ISO 8601).
    pub ts: String,
    /// When (Unix milliseconds).
    pub ts_unix_ms: u64,
    /// `bootstrap`, `failover`, `switchover`, `lease_released`, `pause`, `config`,
    /// `membership`, `operation`.
    pub kind: String,
    /// Member concerned.
    pub node: Option<String>,
    /// Lease epoch after the event.
    pub epoch: u64,
    /// Timeline at the event.
    pub timeline: u32,
    /// WAL position at the event (`X/Y`).
    pub lsn: String,
    /// Who or what caused it.
    pub actor: String,
    /// Why, in words.
    pub reason: String,
}

/// A member as our management API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    /// Member name.
    pub name: String,
    /// Cluster role: `leader`, `sync_standby`, `quorum_standby`, `replica`.
    pub role: String,
    /// Role its PostgreSQL reports: `primary`, `replica`, `unknown`.
    pub pg_role: String,
    /// `running`, `streaming`, `stopped`.
    pub state: String,
    /// Whether PostgreSQL runs and answers.
    pub running: bool,
    /// Replica: streaming now.
    pub streaming: bool,
    /// Base URL of the member's agent API.
    pub api_url: String,
    /// PostgreSQL host.
    pub host: String,
    /// PostgreSQL port.
    pub port: u16,
    /// Timeline.
    pub timeline: u32,
    /// Furthest WAL position held (`X/Y`).
    pub lsn: String,
    /// Replica: received position.
    pub receive_lsn: Option<String>,
    /// Replica: replayed position.
    pub replay_lsn: Option<String>,
    /// Bytes behind the primary (`None` for the primary or when unknown).
    pub lag_bytes: Option<u64>,
    /// Replica: the member it follows.
    pub upstream: Option<String>,
    /// Tags.
    #[schema(value_type = Object)]
    pub tags: rale::Tags,
    /// A setting waits for a restart.
    pub pending_restart: bool,
    /// `server_version_num`.
    pub server_version: u32,
    /// Publication counter (changes while the member is alive).
    pub heartbeat: u64,
    /// Whether the member stopped following an expired primary.
    pub detached: bool,
}

/// The primary lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaseView {
    /// Holder, `None` once released.
    pub holder: Option<String>,
    /// Epoch.
    pub epoch: u64,
    /// Renewals in this epoch.
    pub renewals: u64,
    /// Designated successor after a planned hand-over.
    pub successor: Option<String>,
}

/// Synchronous replication as recorded in consensus and configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncView {
    /// `off`, `on` (`FIRST n`) or `quorum` (`ANY n`).
    pub mode: String,
    /// Wanted number of synchronous standbys.
    pub node_count: u32,
    /// Never fall back to asynchronous.
    pub strict: bool,
    /// `synchronous_commit`.
    pub commit_level: String,
    /// Epoch of the primary that recorded the set.
    pub epoch: u64,
    /// Members whose acknowledgement counts.
    pub standbys: Vec<String>,
    /// How many of them acknowledge each commit.
    pub quorum: u32,
    /// This node's `synchronous_standby_names`, when it is the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous_standby_names: Option<String>,
    /// This node's `pg_stat_replication`, when it is the primary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replication: Vec<ReplicationInfo>,
}

/// A pending switchover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SwitchoverView {
    /// The primary expected to step down.
    pub from: Option<String>,
    /// The member to promote.
    pub to: Option<String>,
    /// Not before (ISO 8601).
    pub scheduled_at: Option<String>,
    /// Who asked.
    pub requested_by: String,
}

/// Consensus as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsensusView {
    /// The last consensus read of the HA loop succeeded.
    pub ok: bool,
    /// This node can reach a majority now.
    pub has_majority: bool,
    /// Consensus term.
    pub term: u64,
    /// Consensus leader, if known.
    pub leader: Option<String>,
}

/// `GET /api/v1/cluster/status`: everything about the cluster in one answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatus {
    /// Cluster name.
    pub scope: String,
    /// The member that answered.
    pub this_node: String,
    /// The current primary (lease holder).
    pub leader: Option<String>,
    /// Current lease epoch.
    pub epoch: u64,
    /// The lease.
    pub lease: Option<LeaseView>,
    /// Members, by name.
    pub members: Vec<MemberView>,
    /// Synchronous replication.
    pub sync: SyncView,
    /// Maintenance mode.
    pub paused: bool,
    /// Pending switchover.
    pub switchover: Option<SwitchoverView>,
    /// Dynamic configuration version.
    pub config_version: u64,
    /// Commands applied to the cluster state.
    pub revision: u64,
    /// Database system identifier, once bootstrapped.
    pub system_identifier: Option<String>,
    /// Consensus.
    pub consensus: ConsensusView,
    /// The primary's replication slots with the WAL they retain: present only when the
    /// answering member is the primary and its workload collector has read them (ask
    /// the `leader`'s agent otherwise; see `docs/slots.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<SlotsView>,
}

/// `GET /api/v1/cluster/health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterHealth {
    /// `healthy`, `degraded` or `unavailable` (no writable primary).
    pub status: String,
    /// Whether `status` is `healthy`.
    pub healthy: bool,
    /// The primary.
    pub leader: Option<String>,
    /// Members known.
    pub members_total: usize,
    /// Members whose PostgreSQL runs.
    pub members_running: usize,
    /// Replicas streaming.
    pub replicas_streaming: usize,
    /// This node reaches a consensus majority.
    pub consensus_ok: bool,
    /// Maintenance mode.
    pub paused: bool,
    /// Each problem found, in words.
    pub problems: Vec<String>,
}

/// `POST /switchover` and `POST /failover` (Patroni's names; `from`/`to`/`target` are
/// accepted as aliases).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchoverRequest {
    /// The current primary (required for a switchover).
    #[serde(default, alias = "from", skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The member to promote (required for a failover).
    #[serde(
        default,
        alias = "to",
        alias = "target",
        skip_serializing_if = "Option::is_none"
    )]
    pub candidate: Option<String>,
    /// Not before this time (ISO 8601 with a time zone). Switchover only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
    /// Accept a candidate that runs as a replica but is not streaming right now.
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
}

/// `server_version_num` of a `postgres_version` condition of `POST /restart`, as
/// Patroni reads it: `15`, `15.4` (major.minor from PostgreSQL 10 on) or `9.6.24`. 400
/// for anything else.
pub fn postgres_version_num(text: &str) -> Result<u32, super::error::ApiError> {
    let bad = || {
        super::error::ApiError::bad_request(format!(
            "postgres_version {text:?}: use major.minor, e.g. 15.4"
        ))
    };
    let parts: Vec<u32> = text
        .trim()
        .split('.')
        .map(|p| p.parse::<u32>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [major] if *major >= 10 && *major < 100 => Ok(major * 10_000),
        [major, minor] if *major >= 10 && *major < 100 && *minor < 100 => {
            Ok(major * 10_000 + minor)
        }
        [major, minor, patch] if *major < 10 && *minor < 100 && *patch < 100 => {
            Ok(major * 10_000 + minor * 100 + patch)
        }
        _ => Err(bad()),
    }
}

/// `POST /restart` (Patroni's fields).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartRequest {
    /// Only when a setting waits for a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_pending: Option<bool>,
    /// Only when the node has this role (`primary` / `replica`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Only when the server version is older than this (`15.4`; `9.6.24` before 10).
    #[schema(pattern = r"^([1-9][0-9](\.[0-9]{1,2})?|[1-9]\.[0-9]{1,2}\.[0-9]{1,2})$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_version: Option<String>,
    /// Seconds to wait for the restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub timeout: Option<u32>,
    /// Not before this time (ISO 8601).
    #[schema(format = DateTime)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

/// `POST /reinitialize` (Patroni's fields).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReinitializeRequest {
    /// Go ahead even when PostgreSQL runs.
    #[serde(default)]
    pub force: bool,
    /// Clone from the primary rather than any replica.
    #[serde(default)]
    pub from_leader: bool,
}

mod schemas {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{
        ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
    };

    fn integer() -> ObjectBuilder {
        ObjectBuilder::new().schema_type(SchemaType::new(Type::Integer))
    }

    fn string() -> ObjectBuilder {
        ObjectBuilder::new().schema_type(SchemaType::new(Type::String))
    }

    impl utoipa::PartialSchema for super::Lag {
        fn schema() -> RefOr<Schema> {
            OneOfBuilder::new()
                .item(integer().minimum(Some(0)))
                .item(string().enum_values(Some(["unknown"])))
                .description(Some("Bytes behind the primary, or \"unknown\""))
                .into()
        }
    }
    impl utoipa::ToSchema for super::Lag {}

    impl utoipa::PartialSchema for super::PatroniHistoryEntry {
        fn schema() -> RefOr<Schema> {
            let item = OneOfBuilder::new().item(integer()).item(string());
            ArrayBuilder::new()
                .items(item)
                .min_items(Some(5))
                .max_items(Some(5))
                .description(Some("[timeline, lsn, reason, timestamp, new_leader]"))
                .into()
        }
    }
    impl utoipa::ToSchema for super::PatroniHistoryEntry {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_a_number_or_unknown() {
        let text = serde_json::to_string(&[Lag::Bytes(5), Lag::Unknown]).expect("serialise");
        assert_eq!(text, r#"[5,"unknown"]"#);
        let back: Vec<Lag> = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, vec![Lag::Bytes(5), Lag::Unknown]);
    }

    #[test]
    fn history_row_is_an_array() {
        let row = PatroniHistoryEntry(2, 67224288, "r".into(), "t".into(), Some("n2".into()));
        let text = serde_json::to_string(&row).expect("serialise");
        assert_eq!(text, r#"[2,67224288,"r","t","n2"]"#);
    }

    #[test]
    fn switchover_request_accepts_aliases() {
        let r: SwitchoverRequest = serde_json::from_str(r#"{"from":"a","to":"b"}"#).expect("parse");
        assert_eq!(r.leader.as_deref(), Some("a"));
        assert_eq!(r.candidate.as_deref(), Some("b"));
    }
}

#[cfg(test)]
mod version_tests {
    use super::postgres_version_num;

    #[test]
    fn postgres_versions_read_as_patroni_reads_them() {
        assert_eq!(postgres_version_num("15").ok(), Some(150_000));
        assert_eq!(postgres_version_num("15.4").ok(), Some(150_004));
        assert_eq!(postgres_version_num("9.6.24").ok(), Some(90_624));
        for bad in ["", "9", "15.4.1", "x", "1.2", "150.1"] {
            assert!(postgres_version_num(bad).is_err(), "{bad}");
        }
    }
}
