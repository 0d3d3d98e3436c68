//! Synchronous standbys (`/api/v1/sync-standbys/*`): what is configured, recorded and
//! enforced, and changes to `synchronous` in the dynamic configuration.
//!
//! Every change goes through the same path as `PATCH /config`
//! ([`super::dynamic_config::change_config`]): the whole configuration is validated, proposed
//! with the version it was based on (compare-and-set) and recorded in the history. The
//! HA loop of the primary then chooses the set and moves PostgreSQL and consensus to it
//! in the safe order (`rale_sync::transition`); these endpoints never touch either
//! directly.
//!
//! `add` pins a member into the set (`synchronous.pinned`); `remove` un-pins it. The
//! synchronous configuration has no exclusion list: a member is kept out of the set for
//! good by its `nosync` tag (node configuration), so `remove` of a member that is not
//! pinned answers 412 and says so.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use rale::{ClusterState, NodeId};
use rale_sync::{CommitLevel, SyncConfig, SyncMode};

use super::ApiState;
use super::auth::Caller;
use super::dynamic_config::{change_config, config_json};
use super::error::{ApiError, ApiJson};
use super::sync_role::{SyncRole, sync_role};
use super::types::{
    ErrorBody, RecordedSyncView, SyncAnyNRequest, SyncChangeResponse, SyncCommitLevelRequest,
    SyncCountRequest, SyncNodeRequest, SyncStandbyView, SyncStandbysStatus,
};

type St = State<Arc<ApiState>>;
type Change = Result<Json<SyncChangeResponse>, ApiError>;

/// The view of synchronous replication from `snap`'s node over `cluster`.
fn status_of(snap: &crate::snapshot::NodeSnapshot, cluster: &ClusterState) -> SyncStandbysStatus {
    let c = &cluster.config.synchronous;
    let local_primary = snap.is_primary() && cluster.holder() == Some(&snap.node);
    let primary = cluster.holder().cloned();
    let standbys = cluster
        .members
        .values()
        .filter(|m| Some(&m.node) != primary.as_ref())
        .map(|m| {
            let name = m.node.to_string();
            let view = super::describe::member_view(cluster, m);
            SyncStandbyView {
                sync_state: match sync_role(cluster, &m.node) {
                    SyncRole::Sync => "sync",
                    SyncRole::Quorum => "quorum",
                    SyncRole::Async => "async",
                }
                .into(),
                pg_sync_state: local_primary
                    .then(|| {
                        snap.pg
                            .replicas
                            .iter()
                            .find(|r| r.application_name.eq_ignore_ascii_case(&name))
                            .map(|r| r.sync_state.clone())
                    })
                    .flatten(),
                pinned: c.pinned.iter().any(|p| p.eq_ignore_ascii_case(&name)),
                nosync: m.tags.nosync,
                running: m.running,
                streaming: m.streaming,
                lag_bytes: view.lag_bytes,
                name,
            }
        })
        .collect();
    SyncStandbysStatus {
        mode: c.mode.to_string(),
        node_count: c.node_count,
        strict: c.strict,
        commit_level: c.commit_level.to_string(),
        pinned: c.pinned.clone(),
        maximum_lag_on_syncnode_bytes: c.maximum_lag_on_syncnode_bytes,
        enforced_names: local_primary.then(|| snap.pg.synchronous_standby_names.clone()),
        enforced_source: if local_primary {
            "local_primary"
        } else {
            "unknown"
        }
        .into(),
        recorded: RecordedSyncView {
            epoch: cluster.sync.epoch.0,
            standbys: cluster
                .sync
                .standbys
                .iter()
                .map(|n| n.to_string())
                .collect(),
            quorum: cluster.sync.quorum,
            current: cluster.holder().is_some() && cluster.sync.epoch == cluster.epoch(),
        },
        standbys,
        primary: primary.map(|p| p.to_string()),
        config_version: cluster.config_version,
    }
}

/// Synchronous replication: configuration, the set recorded in consensus, the value the
/// primary enforces, and each standby's state and lag.
#[utoipa::path(get, path = "/api/v1/sync-standbys/status", tag = "synchronous",
    responses((status = 200, description = "Synchronous replication", body = SyncStandbysStatus)))]
pub(crate) async fn status(State(st): St) -> Json<SyncStandbysStatus> {
    let snap = st.snap();
    let cluster = match st.consensus.read().await {
        Ok(c) => c,
        Err(_) => st.local_cluster(&snap),
    };
    Json(status_of(&snap, &cluster))
}

/// Applies `edit` to the synchronous configuration and proposes the result like
/// `PATCH /config`.
async fn change(
    st: &ApiState,
    caller: Option<Extension<Caller>>,
    edit: impl FnOnce(&mut SyncConfig, &ClusterState) -> Result<String, ApiError>,
) -> Change {
    let cluster = st.consensus.read().await.map_err(ApiError::consensus)?;
    let mut config = cluster.config.clone();
    let message = edit(&mut config.synchronous, &cluster)?;
    let json = config_json(&config)?;
    let (config_version, _) = change_config(
        st,
        &cluster,
        cluster.config_version,
        json,
        caller,
        Some(format!("synchronous standbys: {message}")),
    )
    .await?;
    Ok(Json(SyncChangeResponse {
        message,
        config_version,
        synchronous: config.synchronous,
    }))
}

fn member(cluster: &ClusterState, name: &str) -> Result<NodeId, ApiError> {
    let node = NodeId::new(name)
        .map_err(|e| ApiError::bad_request(format!("invalid member name {name:?}: {e}")))?;
    if !cluster.members.contains_key(&node) {
        return Err(ApiError::not_found(format!(
            "{name} is not a member of the cluster"
        )));
    }
    Ok(node)
}

/// Pin a member into the synchronous set.
#[utoipa::path(post, path = "/api/v1/sync-standbys/add", tag = "synchronous",
    request_body = SyncNodeRequest,
    responses(
        (status = 200, description = "Pinned (or already pinned)", body = SyncChangeResponse),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 404, description = "Not a member", body = ErrorBody),
        (status = 409, description = "Configuration changed meanwhile", body = ErrorBody),
        (status = 412, description = "Member is tagged nosync", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn add(
    State(st): St,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<SyncNodeRequest>,
) -> Change {
    change(&st, caller, |sync, cluster| {
        let node = member(cluster, &req.node)?;
        if cluster.members.get(&node).is_some_and(|m| m.tags.nosync) {
            return Err(ApiError::precondition(format!(
                "{node} is tagged nosync and can never be synchronous: remove the tag first"
            )));
        }
        if sync
            .pinned
            .iter()
            .any(|p| p.eq_ignore_ascii_case(node.as_str()))
        {
            return Ok(format!("{node} is already pinned"));
        }
        sync.pinned.push(node.to_string());
        let mut msg = format!("{node} pinned into the synchronous set");
        if sync.mode == SyncMode::Off {
            msg.push_str(" (synchronous mode is off: it takes effect once it is on)");
        }
        Ok(msg)
    })
    .await
}

/// Un-pin a member from the synchronous set.
#[utoipa::path(post, path = "/api/v1/sync-standbys/remove", tag = "synchronous",
    request_body = SyncNodeRequest,
    responses(
        (status = 200, description = "Un-pinned", body = SyncChangeResponse),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 409, description = "Configuration changed meanwhile", body = ErrorBody),
        (status = 412, description = "Not pinned (use the nosync tag to exclude a member)", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn remove(
    State(st): St,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<SyncNodeRequest>,
) -> Change {
    let name = req.node.trim();
    NodeId::new(name)
        .map_err(|e| ApiError::bad_request(format!("invalid member name {name:?}: {e}")))?;
    change(&st, caller, |sync, _cluster| {
        let before = sync.pinned.len();
        sync.pinned
            .retain(|p| !p.eq_ignore_ascii_case(req.node.trim()));
        if sync.pinned.len() == before {
            return Err(ApiError::precondition(format!(
                "{} is not pinned; the synchronous configuration has no exclusion list: to keep \
                 a member out of the synchronous set, tag it nosync in its node configuration",
                req.node
            )));
        }
        Ok(format!("{} un-pinned from the synchronous set", req.node))
    })
    .await
}

/// Quorum commit: `ANY n` of the eligible standbys.
#[utoipa::path(post, path = "/api/v1/sync-standbys/any-n", tag = "synchronous",
    request_body = SyncAnyNRequest,
    responses(
        (status = 200, description = "Changed", body = SyncChangeResponse),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 409, description = "Configuration changed meanwhile", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn any_n(
    State(st): St,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<SyncAnyNRequest>,
) -> Change {
    if req.min.is_some() || req.max.is_some() {
        return Err(ApiError::bad_request(
            "min and max are not supported: the synchronous configuration lists every eligible \
             standby and has no bounds besides node_count (use strict to never go below n)",
        ));
    }
    if req.n == 0 {
        return Err(ApiError::bad_request("n must be at least 1"));
    }
    change(&st, caller, |sync, _| {
        sync.mode = SyncMode::Quorum;
        sync.node_count = req.n;
        Ok(format!("quorum commit: ANY {}", req.n))
    })
    .await
}

/// Number of synchronous standbys (`FIRST n`; `ANY n` in quorum mode).
#[utoipa::path(post, path = "/api/v1/sync-standbys/count", tag = "synchronous",
    request_body = SyncCountRequest,
    responses(
        (status = 200, description = "Changed", body = SyncChangeResponse),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 409, description = "Configuration changed meanwhile", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn count(
    State(st): St,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<SyncCountRequest>,
) -> Change {
    if req.n == 0 {
        return Err(ApiError::bad_request(
            "n must be at least 1 (set synchronous.mode to off with PATCH /config to go asynchronous)",
        ));
    }
    change(&st, caller, |sync, _| {
        if sync.mode == SyncMode::Off {
            sync.mode = SyncMode::On;
        }
        sync.node_count = req.n;
        let method = if sync.mode == SyncMode::Quorum {
            "ANY"
        } else {
            "FIRST"
        };
        Ok(format!(
            "{} synchronous standbys: {method} {}",
            req.n, req.n
        ))
    })
    .await
}

/// `synchronous_commit` level.
#[utoipa::path(post, path = "/api/v1/sync-standbys/commit-level", tag = "synchronous",
    request_body = SyncCommitLevelRequest,
    responses(
        (status = 200, description = "Changed", body = SyncChangeResponse),
        (status = 400, description = "Unknown level", body = ErrorBody),
        (status = 409, description = "Configuration changed meanwhile", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn commit_level(
    State(st): St,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<SyncCommitLevelRequest>,
) -> Change {
    let level: CommitLevel = req
        .level
        .parse()
        .map_err(|e: rale_sync::Error| ApiError::bad_request(e.to_string()))?;
    change(&st, caller, |sync, _| {
        sync.commit_level = level;
        Ok(format!("synchronous_commit = {level}"))
    })
    .await
}
