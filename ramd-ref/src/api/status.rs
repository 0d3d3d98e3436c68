//! Status reads: the Patroni health checks, this node's status (`/patroni`), the cluster
//! (`/cluster`, `/api/v1/cluster/status`, `/api/v1/cluster/health`), its members,
//! history and synchronous replication; and the answer to unknown paths.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::describe::{self, ConsensusFacts};
use super::error::ApiError;
use super::health::{Check, HealthInput, HealthQuery};
use super::types::*;
use super::{ApiState, now_unix_ms};

type St = State<Arc<ApiState>>;

/// The raw query of a health check (a malformed one is answered with 400).
pub(crate) type HealthQueryExtract =
    Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

fn status_body(st: &ApiState) -> (Arc<crate::snapshot::NodeSnapshot>, NodeStatus) {
    let snap = st.snap();
    let cluster = st.local_cluster(&snap);
    let body = describe::node_status(&snap, &cluster, &st.scope);
    (snap, body)
}

fn answer(method: &Method, code: StatusCode, body: NodeStatus) -> Response {
    if *method == Method::OPTIONS || *method == Method::HEAD {
        code.into_response()
    } else {
        (code, Json(body)).into_response()
    }
}

/// A health check: 200 or 503 with the node status (no body for HEAD and OPTIONS).
pub(crate) async fn health(
    State(st): St,
    method: Method,
    query: HealthQueryExtract,
    check: Check,
) -> Response {
    let Ok(Query(pairs)) = query else {
        return ApiError::bad_request("malformed query string").into_response();
    };
    let q = HealthQuery::from_pairs(&pairs);
    let snap = st.snap();
    let cluster = st.local_cluster(&snap);
    let input = HealthInput {
        snap: &snap,
        cluster: &cluster,
        now_unix_ms: now_unix_ms(),
    };
    let code = if input.passes(check, &q) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    answer(
        &method,
        code,
        describe::node_status(&snap, &cluster, &st.scope),
    )
}

/// Unknown paths: outside `/api/v1/`, `GET` answers 503 with the node status as Patroni
/// does; everything else 404.
pub(crate) async fn unknown(State(st): St, method: Method, uri: Uri) -> Response {
    // Patroni answers any unknown GET with the node status and 503 (load balancers probe
    // paths of their own); RALE's own namespace has no such aliases: 404 there.
    let ours = uri.path() == "/api/v1" || uri.path().starts_with("/api/v1/");
    if !ours && matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let (_, body) = status_body(&st);
        return answer(&method, StatusCode::SERVICE_UNAVAILABLE, body);
    }
    ApiError::not_found(format!("no such endpoint: {method} {}", uri.path())).into_response()
}

/// Node status in Patroni's shape, always 200.
#[utoipa::path(get, path = "/patroni", tag = "patroni",
    responses((status = 200, description = "This node's status", body = NodeStatus)))]
pub(crate) async fn patroni(State(st): St) -> Json<NodeStatus> {
    Json(status_body(&st).1)
}

/// Members, roles, lags and the pending switchover, in Patroni's shape.
#[utoipa::path(get, path = "/cluster", tag = "patroni",
    responses((status = 200, description = "The cluster", body = PatroniCluster)))]
pub(crate) async fn cluster(State(st): St) -> Json<PatroniCluster> {
    let snap = st.snap();
    let cluster = st.local_cluster(&snap);
    Json(describe::patroni_cluster(&cluster, &st.scope))
}

/// Changes of primary as `[timeline, lsn, reason, timestamp, new_leader]` rows.
#[utoipa::path(get, path = "/history", tag = "patroni",
    responses((status = 200, description = "Changes of primary", body = Vec<PatroniHistoryEntry>)))]
pub(crate) async fn history(State(st): St) -> Json<Vec<PatroniHistoryEntry>> {
    let snap = st.snap();
    let cluster = st.local_cluster(&snap);
    Json(describe::patroni_history(&cluster))
}

/// Everything the cluster recorded, oldest first.
#[utoipa::path(get, path = "/api/v1/history", tag = "cluster",
    responses((status = 200, description = "Cluster history", body = Vec<HistoryEntryView>)))]
pub(crate) async fn api_history(State(st): St) -> Json<Vec<HistoryEntryView>> {
    let snap = st.snap();
    let cluster = st.local_cluster(&snap);
    Json(
        cluster
            .history
            .iter()
            .map(describe::history_entry)
            .collect(),
    )
}

/// Members, lease, synchronous set, maintenance mode, switchover, consensus; on the
/// primary, its replication slots with the WAL they retain.
#[utoipa::path(get, path = "/api/v1/cluster/status", tag = "cluster",
    responses((status = 200, description = "Cluster status", body = ClusterStatus)))]
pub(crate) async fn cluster_status(State(st): St) -> Json<ClusterStatus> {
    let snap = st.snap();
    let cluster = st.local_cluster(&snap);
    let facts = ConsensusFacts {
        has_majority: st.consensus.has_majority(),
    };
    let mut status = describe::cluster_status(&snap, &cluster, &st.scope, facts);
    // The slots of the primary's server, as its workload collector last read them
    // (docs/slots.md): only the primary's agent has them.
    if cluster.holder() == Some(&snap.node) {
        let workload = st.workload.as_ref().map(|w| w.borrow().clone());
        status.slots = workload
            .as_ref()
            .and_then(|w| w.sample.as_deref())
            .filter(|s| !s.in_recovery)
            .map(|s| crate::workload::slots::slots_view(snap.node.as_str(), s, &cluster));
    }
    Json(status)
}

/// 200 when healthy, 503 when degraded or without a primary, with the problems found.
#[utoipa::path(get, path = "/api/v1/cluster/health", tag = "cluster",
    responses(
        (status = 200, description = "Healthy", body = ClusterHealth),
        (status = 503, description = "Degraded or unavailable", body = ClusterHealth)))]
pub(crate) async fn cluster_health(State(st): St) -> (StatusCode, Json<ClusterHealth>) {
    let snap = st.snap();
    let cluster = st.local_cluster(&snap);
    let health = describe::cluster_health(&snap, &cluster);
    let code = if health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(health))
}

/// All members.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "cluster",
    responses((status = 200, description = "Members", body = Vec<MemberView>)))]
pub(crate) async fn nodes(State(st): St) -> Json<Vec<MemberView>> {
    let snap = st.snap();
    let cluster = st.local_cluster(&snap);
    Json(
        cluster
            .members
            .values()
            .map(|m| describe::member_view(&cluster, m))
            .collect(),
    )
}

/// One member.
#[utoipa::path(get, path = "/api/v1/nodes/{id}", tag = "cluster",
    params(("id" = String, Path, description = "Member name")),
    responses(
        (status = 200, description = "The member", body = MemberView),
        (status = 404, description = "Not a member", body = ErrorBody)))]
pub(crate) async fn node(
    State(st): St,
    Path(id): Path<String>,
) -> Result<Json<MemberView>, ApiError> {
    let snap = st.snap();
    let cluster = st.local_cluster(&snap);
    cluster
        .members
        .iter()
        .find(|(n, _)| n.as_str() == id)
        .map(|(_, m)| Json(describe::member_view(&cluster, m)))
        .ok_or_else(|| {
            ApiError::not_found(format!("node {id:?} is not a member of this cluster"))
                .with("node", id)
        })
}

/// Synchronous replication: configuration, recorded set, and this primary's view.
#[utoipa::path(get, path = "/api/v1/replication/sync", tag = "cluster",
    responses((status = 200, description = "Synchronous replication", body = SyncView)))]
pub(crate) async fn sync(State(st): St) -> Json<SyncView> {
    let snap = st.snap();
    let cluster = st.local_cluster(&snap);
    Json(describe::sync_view(&snap, &cluster))
}
