//! Changes of primary: switchover (now or scheduled) and its cancellation, failover,
//! promote and demote. Each one is validated against a linearizable read, then proposed
//! through consensus; refusals carry the reason.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use rale::state::{Operation, Outcome, Switchover};
use rale::{ClusterState, NodeId, Role};
use rale_sync::SyncMode;

use super::auth::{Caller, caller_name};
use super::error::{ApiError, ApiJson};
use super::propose::propose;
use super::sync_role::{SyncRole, sync_role};
use super::types::{ActionResponse, ErrorBody, FailoverBody, SwitchoverBody, SwitchoverRequest};
use super::{ApiState, now_unix_ms};

type St = State<Arc<ApiState>>;
type Answer = Result<(StatusCode, Json<ActionResponse>), ApiError>;

/// Interval between two reads while waiting for the outcome of an operation.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Failover or switchover: the texts and rules differ slightly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Switchover,
    Failover,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Switchover => "switchover",
            Kind::Failover => "failover",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Kind::Switchover => "Switchover",
            Kind::Failover => "Failover",
        }
    }
    fn done(self) -> &'static str {
        match self {
            Kind::Switchover => "switched over",
            Kind::Failover => "failed over",
        }
    }
}

fn node_name(text: &str, what: &str) -> Result<NodeId, ApiError> {
    NodeId::new(text).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
}

fn parse_schedule(text: &str, kind: Kind, cluster: &ClusterState) -> Result<u64, ApiError> {
    if kind == Kind::Failover {
        return Err(ApiError::bad_request("Failover can't be scheduled"));
    }
    if cluster.paused {
        return Err(ApiError::bad_request(
            "Can't schedule switchover in the paused state",
        ));
    }
    let at = chrono::DateTime::parse_from_rfc3339(text.trim()).map_err(|e| {
        ApiError::bad_request(format!(
            "Unable to parse scheduled timestamp {text:?} ({e}): use ISO 8601 with a time zone, \
             e.g. 2030-01-01T10:00:00+00:00"
        ))
    })?;
    let at_ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    if at_ms <= now_unix_ms() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Can't schedule switchover in the past",
        ));
    }
    Ok(at_ms)
}

/// 404 unless `id`, named in a request path, is a member (the resource the path
/// addresses does not exist); the body-addressed Patroni paths answer 412 instead.
fn addressed_member(st: &ApiState, id: &str) -> Result<(), ApiError> {
    let cluster = st.local_cluster(&st.snap());
    if cluster.members.keys().any(|n| n.as_str() == id) {
        Ok(())
    } else {
        Err(
            ApiError::not_found(format!("node {id:?} is not a member of this cluster"))
                .with("node", id),
        )
    }
}

/// Why `candidate` cannot become primary now, if it cannot.
fn candidate_problem(cluster: &ClusterState, candidate: &NodeId, force: bool) -> Option<String> {
    if cluster.holder() == Some(candidate) {
        return Some(format!("candidate {candidate} is already the primary"));
    }
    let Some(m) = cluster.members.get(candidate) else {
        return Some(format!(
            "candidate {candidate} is not a member of this cluster"
        ));
    };
    if !m.running || m.role != Role::Replica {
        return Some(format!("candidate {candidate} is not running as a replica"));
    }
    if !m.streaming && !force {
        return Some(format!(
            "candidate {candidate} is not streaming from the primary (use force to accept it)"
        ));
    }
    if !m.tags.can_be_primary() {
        return Some(format!(
            "candidate {candidate} is tagged nofailover (or failover_priority 0)"
        ));
    }
    if cluster.config.synchronous.mode != SyncMode::Off
        && cluster.holder().is_some()
        && sync_role(cluster, candidate) == SyncRole::Async
    {
        return Some(format!(
            "candidate {candidate} is not a synchronous standby: in synchronous mode only \
             members of the synchronous set can be promoted"
        ));
    }
    None
}

/// A validated request: leader, candidate, schedule (Unix ms).
type Validated = (Option<NodeId>, Option<NodeId>, Option<u64>);

fn validate(
    cluster: &ClusterState,
    req: &SwitchoverRequest,
    kind: Kind,
) -> Result<Validated, ApiError> {
    let leader = req
        .leader
        .as_deref()
        .map(|l| node_name(l, "leader"))
        .transpose()?;
    let candidate = req
        .candidate
        .as_deref()
        .map(|c| node_name(c, "candidate"))
        .transpose()?;
    match kind {
        Kind::Failover if candidate.is_none() => {
            return Err(ApiError::bad_request(
                "Failover could be performed only to a specific candidate",
            ));
        }
        Kind::Switchover if leader.is_none() => {
            return Err(ApiError::bad_request(
                "Switchover could be performed only from a specific leader",
            ));
        }
        _ => {}
    }
    let scheduled = req
        .scheduled_at
        .as_deref()
        .map(|t| parse_schedule(t, kind, cluster))
        .transpose()?;
    // Maintenance mode stops *automatic* actions; an operator may still change the
    // primary, to a member they name (as Patroni: 400 without a candidate).
    if cluster.paused && candidate.is_none() {
        return Err(ApiError::bad_request(format!(
            "{} is possible only to a specific candidate in a paused state",
            kind.title()
        )));
    }
    if let Some(l) = &leader {
        match cluster.holder() {
            Some(h) if h == l => {}
            Some(h) => {
                return Err(ApiError::precondition(format!(
                    "leader name does not match: the primary is {h}, not {l}"
                ))
                .with("leader", h.to_string()));
            }
            None => {
                return Err(ApiError::precondition(format!(
                    "leader name does not match: there is no primary (not {l})"
                )));
            }
        }
    }
    if kind == Kind::Switchover && cluster.holder().is_none() {
        return Err(ApiError::precondition(
            "there is no primary to switch over from: use failover",
        ));
    }
    if let Some(sw) = &cluster.switchover {
        let to = sw
            .to
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_else(|| "any".into());
        return Err(ApiError::conflict(format!(
            "a switchover (to {to}) is already pending: cancel it first with DELETE /switchover"
        )));
    }
    match &candidate {
        Some(c) => {
            // A failover is for a primary that is gone: its candidate cannot be streaming.
            let force = req.force || kind == Kind::Failover;
            if let Some(problem) = candidate_problem(cluster, c, force) {
                return Err(ApiError::precondition(problem).with("candidate", c.to_string()));
            }
        }
        None => {
            let any = cluster
                .members
                .keys()
                .any(|n| candidate_problem(cluster, n, req.force).is_none());
            if !any {
                return Err(ApiError::precondition(
                    "no member is a healthy candidate for switchover",
                ));
            }
        }
    }
    Ok((leader, candidate, scheduled))
}

/// Proposes the request, then waits (bounded) for the lease to change hands.
async fn run(st: &ApiState, req: SwitchoverRequest, kind: Kind, caller: &str) -> Answer {
    let cluster = st.consensus.read().await.map_err(ApiError::consensus)?;
    let (leader, candidate, scheduled) = match validate(&cluster, &req, kind) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(
                operation = kind.noun(),
                leader = ?req.leader,
                candidate = ?req.candidate,
                status = e.status.as_u16(),
                reason = %e.message,
                actor = caller,
                paused = cluster.paused,
                "api refused a change of primary"
            );
            return Err(e);
        }
    };
    let from = leader.or_else(|| cluster.holder().cloned());
    let request = Switchover {
        from: from.clone(),
        to: candidate.clone(),
        scheduled_at_unix_ms: scheduled,
        requested_by: format!("api:{caller}"),
    };
    tracing::info!(
        operation = kind.noun(),
        from = ?from,
        to = ?candidate,
        scheduled_at_unix_ms = ?scheduled,
        epoch = cluster.epoch().0,
        actor = caller,
        "api requests a change of primary"
    );
    if let Outcome::Rejected(reason) = propose(
        st,
        Operation::RequestSwitchover {
            switchover: request.clone(),
        },
    )
    .await?
    {
        return Err(ApiError::conflict(reason));
    }
    if let Some(at) = scheduled {
        let text = format!("Switchover scheduled at {}", super::describe::iso8601(at));
        return Ok((StatusCode::ACCEPTED, Json(ActionResponse::message(text))));
    }
    wait_for_new_primary(st, kind, cluster.epoch(), &request).await
}

async fn wait_for_new_primary(
    st: &ApiState,
    kind: Kind,
    epoch_before: rale::Epoch,
    request: &Switchover,
) -> Answer {
    let deadline = tokio::time::Instant::now() + st.operation_timeout;
    let polls_max = st.operation_timeout.as_millis() / POLL_INTERVAL.as_millis() + 2;
    for _ in 0..polls_max {
        tokio::time::sleep(POLL_INTERVAL).await;
        if let Ok(state) = st.consensus.read().await {
            if state.epoch() > epoch_before {
                if let Some(h) = state.holder() {
                    if request.to.as_ref().is_none_or(|t| t == h) {
                        let mut resp =
                            ActionResponse::message(format!("Successfully {} to {h}", kind.done()));
                        resp.node = Some(h.to_string());
                        return Ok((StatusCode::OK, Json(resp)));
                    }
                    return Err(ApiError::unavailable(format!(
                        "{} failed: {h} became the primary instead",
                        kind.noun()
                    )));
                }
            } else if state.switchover.as_ref() != Some(request) {
                let why = state
                    .history
                    .iter()
                    .rev()
                    .find(|e| e.reason.starts_with("switchover cancelled"))
                    .map(|e| e.reason.clone())
                    .unwrap_or_else(|| "the request was withdrawn".into());
                return Err(ApiError::unavailable(format!(
                    "{} failed: {why}",
                    kind.noun()
                )));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
    }
    Err(ApiError::unavailable(format!(
        "{} status unknown: the request is still pending after {} s",
        kind.noun(),
        st.operation_timeout.as_secs()
    )))
}

/// Planned switchover from `leader` to `candidate` (or the best member), now or at
/// `scheduled_at`.
#[utoipa::path(post, path = "/switchover", tag = "operations", request_body = SwitchoverBody,
    responses(
        (status = 200, description = "Switched over", body = ActionResponse),
        (status = 202, description = "Scheduled", body = ActionResponse),
        (status = 400, description = "Bad request; also, as Patroni, a schedule or no candidate while paused", body = ErrorBody),
        (status = 422, description = "Scheduled in the past (Patroni's code)", body = ErrorBody),
        (status = 401, description = "Credentials required", body = ErrorBody),
        (status = 409, description = "Refused by the cluster", body = ErrorBody),
        (status = 412, description = "Not possible now", body = ErrorBody),
        (status = 503, description = "Consensus unavailable or outcome unknown", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn switchover(
    State(st): St,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<SwitchoverRequest>,
) -> Answer {
    run(&st, req, Kind::Switchover, &caller_name(caller)).await
}

/// Manual failover to `candidate`, whether or not the primary is healthy.
#[utoipa::path(post, path = "/failover", tag = "operations", request_body = FailoverBody,
    responses(
        (status = 200, description = "Failed over", body = ActionResponse),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 401, description = "Credentials required", body = ErrorBody),
        (status = 409, description = "Refused by the cluster", body = ErrorBody),
        (status = 412, description = "Not possible now", body = ErrorBody),
        (status = 503, description = "Consensus unavailable or outcome unknown", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn failover(
    State(st): St,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<SwitchoverRequest>,
) -> Answer {
    run(&st, req, Kind::Failover, &caller_name(caller)).await
}

/// Promote `id` (a failover to it).
#[utoipa::path(post, path = "/api/v1/promote/{id}", tag = "operations",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_.-]{1,63}$", description = "Member to promote")),
    responses(
        (status = 200, description = "Promoted", body = ActionResponse),
        (status = 404, description = "Not a member", body = ErrorBody),
        (status = 412, description = "Not possible now", body = ErrorBody),
        (status = 503, description = "Outcome unknown", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn promote(
    State(st): St,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> Answer {
    addressed_member(&st, &id)?;
    let req = SwitchoverRequest {
        candidate: Some(id),
        ..SwitchoverRequest::default()
    };
    run(&st, req, Kind::Failover, &caller_name(caller)).await
}

/// Demote `id`, the current primary (a switchover from it to the best member).
#[utoipa::path(post, path = "/api/v1/demote/{id}", tag = "operations",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_.-]{1,63}$", description = "The current primary")),
    responses(
        (status = 200, description = "Demoted", body = ActionResponse),
        (status = 404, description = "Not a member", body = ErrorBody),
        (status = 412, description = "Not possible now", body = ErrorBody),
        (status = 503, description = "Outcome unknown", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn demote(
    State(st): St,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> Answer {
    addressed_member(&st, &id)?;
    let req = SwitchoverRequest {
        leader: Some(id),
        ..SwitchoverRequest::default()
    };
    run(&st, req, Kind::Switchover, &caller_name(caller)).await
}

/// Cancel the pending (scheduled) switchover.
#[utoipa::path(delete, path = "/switchover", tag = "operations",
    responses(
        (status = 200, description = "Cancelled", body = ActionResponse),
        (status = 404, description = "Nothing pending", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn cancel_switchover(State(st): St, caller: Option<Extension<Caller>>) -> Answer {
    let actor = format!("api:{}", caller_name(caller));
    let op = Operation::CancelSwitchover {
        actor,
        reason: "cancelled through the API".into(),
    };
    match propose(&st, op).await? {
        Outcome::Applied => Ok((
            StatusCode::OK,
            Json(ActionResponse::message("scheduled switchover deleted")),
        )),
        Outcome::Rejected(reason) => Err(ApiError::not_found(reason)),
    }
}
