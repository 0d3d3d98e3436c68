//! Bodies of the parameter and synchronous-standby endpoints that are ours (the backup
//! endpoints use [`rale_backup::api`] as it is, the parameter answers
//! [`rale_params::api`]).

use std::collections::BTreeMap;

use rale_params::api::InputValue;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/v1/parameter/validate`: one setting (`name` + `value`) or several
/// (`parameters`), or both.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParameterValidateRequest {
    /// PostgreSQL major (13..17); the cluster's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// One parameter's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its value: text as in `postgresql.conf`, a number or a boolean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub value: Option<InputValue>,
    /// Several settings, name → value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub parameters: BTreeMap<String, InputValue>,
}

/// The synchronous set recorded in consensus (what failover honours).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordedSyncView {
    /// Lease epoch of the primary that recorded it.
    pub epoch: u64,
    /// Members whose acknowledgement counts.
    pub standbys: Vec<String>,
    /// How many of them acknowledge each commit (0: asynchronous).
    pub quorum: u32,
    /// Recorded by the current primary (same epoch); a stale set promises nothing.
    pub current: bool,
}

/// One standby as synchronous replication sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncStandbyView {
    /// Member name (its `application_name`).
    pub name: String,
    /// `sync`, `quorum` or `async`, from the recorded set (Patroni's rule).
    pub sync_state: String,
    /// `pg_stat_replication.sync_state` on the primary, when this node is the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_sync_state: Option<String>,
    /// Pinned into the set by configuration (`synchronous.pinned`).
    pub pinned: bool,
    /// Tagged `nosync`: never synchronous.
    pub nosync: bool,
    /// PostgreSQL runs.
    pub running: bool,
    /// Streaming from the primary.
    pub streaming: bool,
    /// Bytes behind the primary, when known.
    pub lag_bytes: Option<u64>,
}

/// `GET /api/v1/sync-standbys/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncStandbysStatus {
    /// `off`, `on` (`FIRST n`) or `quorum` (`ANY n`).
    pub mode: String,
    /// Wanted number of synchronous standbys.
    pub node_count: u32,
    /// Never fall back to asynchronous.
    pub strict: bool,
    /// `synchronous_commit`.
    pub commit_level: String,
    /// Members pinned into the set.
    pub pinned: Vec<String>,
    /// Members above this flush lag are not chosen.
    pub maximum_lag_on_syncnode_bytes: Option<u64>,
    /// `synchronous_standby_names` PostgreSQL enforces on the primary; `None` when unknown.
    pub enforced_names: Option<String>,
    /// Where `enforced_names` comes from: `local_primary`, or `unknown` on a replica (the
    /// published member status does not carry it).
    pub enforced_source: String,
    /// The set recorded in consensus.
    pub recorded: RecordedSyncView,
    /// Every member but the primary.
    pub standbys: Vec<SyncStandbyView>,
    /// The primary, if any.
    pub primary: Option<String>,
    /// Dynamic configuration version.
    pub config_version: u64,
}

/// `POST /api/v1/sync-standbys/add` and `/remove`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncNodeRequest {
    /// Member name.
    pub node: String,
}

/// `POST /api/v1/sync-standbys/any-n`: quorum commit, `ANY n`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncAnyNRequest {
    /// Acknowledgements each commit waits for.
    pub n: u32,
    /// Not supported (refused when given): the synchronous configuration has no lower
    /// bound apart from `strict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// Not supported (refused when given): every eligible standby is listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

/// `POST /api/v1/sync-standbys/count`: `FIRST n` (or `ANY n` when already in quorum mode).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncCountRequest {
    /// Number of synchronous standbys.
    pub n: u32,
}

/// `POST /api/v1/sync-standbys/commit-level`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncCommitLevelRequest {
    /// `off`, `local`, `remote_write`, `on` or `remote_apply`.
    pub level: String,
}

/// Answer to a synchronous-standby change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SyncChangeResponse {
    /// What changed, in words.
    pub message: String,
    /// The configuration version after the change.
    pub config_version: u64,
    /// The synchronous configuration now in force.
    #[schema(value_type = Object)]
    pub synchronous: rale_sync::SyncConfig,
}
