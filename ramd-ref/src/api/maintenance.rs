//! Maintenance mode (`POST /api/v1/pause`, `/api/v1/resume`): while the cluster is
//! paused, no agent fails over, restarts or rebuilds anything on its own.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use rale::state::{Operation, Outcome};

use super::ApiState;
use super::auth::{Caller, caller_name};
use super::error::ApiError;
use super::propose::propose;
use super::types::{ActionResponse, ErrorBody};

type St = State<Arc<ApiState>>;
type Answer = Result<(StatusCode, Json<ActionResponse>), ApiError>;

async fn set_paused(st: &ApiState, paused: bool, caller: Option<Extension<Caller>>) -> Answer {
    let actor = format!("api:{}", caller_name(caller));
    match propose(st, Operation::SetPaused { paused, actor }).await? {
        Outcome::Applied => {
            let text = if paused {
                "cluster paused: no automatic failover until resumed"
            } else {
                "cluster resumed: automatic failover is on"
            };
            let mut resp = ActionResponse::message(text);
            resp.paused = Some(paused);
            Ok((StatusCode::OK, Json(resp)))
        }
        Outcome::Rejected(reason) => Err(ApiError::conflict(reason)),
    }
}

/// Enter maintenance mode: no automatic failover, restart or rebuild.
#[utoipa::path(post, path = "/api/v1/pause", tag = "operations",
    responses(
        (status = 200, description = "Paused", body = ActionResponse),
        (status = 409, description = "Already paused", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn pause(State(st): St, caller: Option<Extension<Caller>>) -> Answer {
    set_paused(&st, true, caller).await
}

/// Leave maintenance mode.
#[utoipa::path(post, path = "/api/v1/resume", tag = "operations",
    responses(
        (status = 200, description = "Resumed", body = ActionResponse),
        (status = 409, description = "Not paused", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn resume(State(st): St, caller: Option<Extension<Caller>>) -> Answer {
    set_paused(&st, false, caller).await
}
