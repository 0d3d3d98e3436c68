//! Actions on this node's own PostgreSQL (`POST /restart`, `/reinitialize`, `/reload`),
//! carried out by the daemon through the [`NodeActions`] seam.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;

use super::ApiState;
use super::auth::{Caller, caller_name};
use super::error::{ApiError, ApiJson};
use super::types::{ActionResponse, ErrorBody, ReinitializeRequest, RestartRequest};

/// What the daemon does on request to its local PostgreSQL. Each method returns the
/// status and body to answer with (Patroni's: restart 200 when done, 202 when scheduled;
/// reinitialize 200 "reinitialize started"; reload 202), or an [`ApiError`] (503 when it
/// failed, 409 when one is already scheduled, 400 for a bad filter).
#[async_trait]
pub trait NodeActions: Send + Sync {
    /// Restart PostgreSQL (if the request's conditions hold).
    async fn restart(
        &self,
        req: RestartRequest,
        caller: &str,
    ) -> Result<(StatusCode, ActionResponse), ApiError>;
    /// Cancel the scheduled restart (`DELETE /restart`): 404 when none is scheduled.
    async fn cancel_restart(&self, caller: &str) -> Result<(StatusCode, ActionResponse), ApiError>;
    /// The scheduled restart, if any: when, and who asked.
    async fn scheduled_restart(&self) -> Option<(chrono::DateTime<chrono::Utc>, String)>;
    /// Throw away the data directory and clone it again (replicas only).
    async fn reinitialize(
        &self,
        req: ReinitializeRequest,
        caller: &str,
    ) -> Result<(StatusCode, ActionResponse), ApiError>;
    /// Reload the configuration (PostgreSQL's and the agent's).
    async fn reload(&self, caller: &str) -> Result<(StatusCode, ActionResponse), ApiError>;
}

type St = State<Arc<ApiState>>;
type Answer = Result<(StatusCode, Json<ActionResponse>), ApiError>;

fn actions(st: &ApiState, what: &str) -> Result<Arc<dyn NodeActions>, ApiError> {
    st.actions
        .clone()
        .ok_or_else(|| ApiError::unavailable(format!("{what} is not available yet on this agent")))
}

/// Restart this node's PostgreSQL.
#[utoipa::path(post, path = "/restart", tag = "operations", request_body(content = Option<RestartRequest>, description = "Optional, as in Patroni: an empty body restarts now"),
    responses(
        (status = 200, description = "Restarted", body = ActionResponse),
        (status = 202, description = "Scheduled (`schedule`: ISO 8601 time with zone)", body = ActionResponse),
        (status = 400, description = "Bad schedule (unparsable or in the past)", body = ErrorBody),
        (status = 409, description = "Another restart is already scheduled", body = ErrorBody),
        (status = 503, description = "Failed or not available", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn restart(
    State(st): St,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<Option<RestartRequest>>,
) -> Answer {
    // An empty body and JSON `null` both mean "no conditions", as in Patroni.
    let req = req.unwrap_or_default();
    if let Some(v) = &req.postgres_version {
        super::types::postgres_version_num(v)?;
    }
    let a = actions(&st, "restart")?;
    let (code, body) = a.restart(req, &caller_name(caller)).await?;
    Ok((code, Json(body)))
}

/// Delete this node's scheduled restart.
#[utoipa::path(delete, path = "/restart", tag = "operations",
    responses(
        (status = 200, description = "Scheduled restart deleted", body = ActionResponse),
        (status = 404, description = "No restart is scheduled", body = ErrorBody),
        (status = 409, description = "The scheduled restart is running now", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn cancel_restart(State(st): St, caller: Option<Extension<Caller>>) -> Answer {
    let a = actions(&st, "restart")?;
    let (code, body) = a.cancel_restart(&caller_name(caller)).await?;
    Ok((code, Json(body)))
}

/// Rebuild this replica from scratch.
#[utoipa::path(post, path = "/reinitialize", tag = "operations", request_body(content = Option<ReinitializeRequest>, description = "Optional, as in Patroni: an empty body is `{\"force\": false}`"),
    responses(
        (status = 200, description = "Started", body = ActionResponse),
        (status = 503, description = "Failed or not available", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn reinitialize(
    State(st): St,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<Option<ReinitializeRequest>>,
) -> Answer {
    let req = req.unwrap_or_default();
    let a = actions(&st, "reinitialize")?;
    let (code, body) = a.reinitialize(req, &caller_name(caller)).await?;
    Ok((code, Json(body)))
}

/// Reload the configuration of this node.
#[utoipa::path(post, path = "/reload", tag = "operations",
    responses(
        (status = 202, description = "Reload requested", body = ActionResponse),
        (status = 503, description = "Failed or not available", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn reload(State(st): St, caller: Option<Extension<Caller>>) -> Answer {
    let a = actions(&st, "reload")?;
    let (code, body) = a.reload(&caller_name(caller)).await?;
    Ok((code, Json(body)))
}
