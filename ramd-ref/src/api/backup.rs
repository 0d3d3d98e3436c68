//! Backups (`/api/v1/backup/*`): the jobs of this node's [`BackupService`], with the
//! request and response bodies of [`rale_backup::api`].
//!
//! Without a [`BackupService`] in [`super::ApiState::backup`] every backup path answers
//! 503 "backups are not configured on this node".

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use rale_backup::api::{
    JobAccepted, JobStatusResponse, JobsResponse, ListBackupsResponse, ScheduleRequest,
    ScheduleResponse, StartBackupRequest, StartRestoreRequest,
};
use rale_backup::{JobId, JobSpec};

use super::ApiState;
use super::auth::{Caller, caller_name};
use super::error::{ApiError, ApiJson};
use super::propose::record_operation;
use super::types::{ErrorBody, RestoreBody, ScheduleBody, StartBackupBody};
use crate::backup::BackupService;

type St = State<Arc<ApiState>>;

fn backup_error(e: &rale_backup::Error) -> ApiError {
    let body = rale_backup::api::ErrorResponse::from(e);
    let status = match body.code.as_str() {
        "busy" => StatusCode::CONFLICT,
        "not_found" => StatusCode::NOT_FOUND,
        "invalid" => StatusCode::BAD_REQUEST,
        "tool_failed" => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, body.message).with("code", body.code)
}

fn service(st: &ApiState) -> Result<Arc<BackupService>, ApiError> {
    st.backup
        .clone()
        .ok_or_else(|| ApiError::unavailable("backups are not configured on this node"))
}

fn submit(svc: &BackupService, spec: JobSpec) -> Result<(StatusCode, Json<JobAccepted>), ApiError> {
    let job_id = svc.jobs().submit(spec).map_err(|e| backup_error(&e))?;
    Ok((StatusCode::ACCEPTED, Json(JobAccepted { job_id })))
}

/// Start a backup on this node (a job; follow it at `status/{job_id}`).
#[utoipa::path(post, path = "/api/v1/backup/start", tag = "backup",
    request_body(content = Option<StartBackupBody>, description = "Optional: an empty body (or `null`) is a full backup"),
    responses(
        (status = 202, description = "Queued (rale_backup::api::JobAccepted)", body = Object),
        (status = 400, description = "Kind not supported by the tool", body = ErrorBody),
        (status = 409, description = "Too many jobs queued, or a pgBackRest backup asked of a node that is not the primary", body = ErrorBody),
        (status = 503, description = "Backups not configured", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn start(
    State(st): St,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<Option<StartBackupRequest>>,
) -> Result<(StatusCode, Json<JobAccepted>), ApiError> {
    let req = req.unwrap_or(StartBackupRequest {
        kind: rale_backup::BackupKind::Full,
    });
    let svc = service(&st)?;
    if svc.primary_only() {
        let snap = st.snap();
        if snap.pg.role() != rale::Role::Primary {
            let cluster = st.local_cluster(&snap);
            let at = cluster
                .holder()
                .map(|p| format!(": send it to {p}"))
                .unwrap_or_default();
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "{} backs up the primary and {} is not the primary{at}",
                    svc.jobs().tool().name(),
                    snap.node
                ),
            )
            .with("code", "not_primary"));
        }
    }
    if !svc.jobs().tool().supported_kinds().contains(&req.kind) {
        return Err(ApiError::bad_request(format!(
            "{} does not take {:?} backups",
            svc.jobs().tool().name(),
            req.kind
        ))
        .with("code", "invalid"));
    }
    let answer = submit(&svc, JobSpec::Backup { kind: req.kind })?;
    let reason = format!(
        "{} backup job {} queued ({})",
        format!("{:?}", req.kind).to_lowercase(),
        answer.1.job_id,
        svc.jobs().tool().name()
    );
    record_operation(&st, &caller_name(caller), reason).await;
    Ok(answer)
}

/// Restore a backup into a data directory of this node (never the live one).
#[utoipa::path(post, path = "/api/v1/backup/restore", tag = "backup",
    request_body = RestoreBody,
    responses(
        (status = 202, description = "Queued (rale_backup::api::JobAccepted)", body = Object),
        (status = 400, description = "Invalid (e.g. the live data directory)", body = ErrorBody),
        (status = 409, description = "Too many jobs queued", body = ErrorBody),
        (status = 503, description = "Backups not configured", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn restore(
    State(st): St,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<StartRestoreRequest>,
) -> Result<(StatusCode, Json<JobAccepted>), ApiError> {
    let svc = service(&st)?;
    if !req.data_dir.is_absolute() {
        return Err(
            ApiError::bad_request("data_dir must be an absolute path").with("code", "invalid")
        );
    }
    if svc.protects(&req.data_dir) {
        return Err(ApiError::bad_request(format!(
            "{} is this node's live data directory: restore into another directory",
            req.data_dir.display()
        ))
        .with("code", "invalid"));
    }
    let into = req.data_dir.display().to_string();
    let answer = submit(&svc, JobSpec::Restore { request: req })?;
    let reason = format!("restore job {} into {into} queued", answer.1.job_id);
    record_operation(&st, &caller_name(caller), reason).await;
    Ok(answer)
}

/// Backups held by the tool.
#[utoipa::path(get, path = "/api/v1/backup/list", tag = "backup",
    responses(
        (status = 200, description = "rale_backup::api::ListBackupsResponse", body = Object),
        (status = 502, description = "The tool failed", body = ErrorBody),
        (status = 503, description = "Backups not configured", body = ErrorBody)))]
pub(crate) async fn list(State(st): St) -> Result<Json<ListBackupsResponse>, ApiError> {
    let svc = service(&st)?;
    let tool = svc.jobs().tool().clone();
    let backups = tool.list().await.map_err(|e| backup_error(&e))?;
    Ok(Json(ListBackupsResponse {
        tool: tool.name().to_owned(),
        backups,
    }))
}

/// Jobs of this node, oldest first.
#[utoipa::path(get, path = "/api/v1/backup/jobs", tag = "backup",
    responses(
        (status = 200, description = "rale_backup::api::JobsResponse", body = Object),
        (status = 503, description = "Backups not configured", body = ErrorBody)))]
pub(crate) async fn jobs(State(st): St) -> Result<Json<JobsResponse>, ApiError> {
    let svc = service(&st)?;
    Ok(Json(JobsResponse {
        jobs: svc.jobs().list(),
    }))
}

/// One job.
#[utoipa::path(get, path = "/api/v1/backup/status/{id}", tag = "backup",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "rale_backup::api::JobStatusResponse", body = Object),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 503, description = "Backups not configured", body = ErrorBody)))]
pub(crate) async fn status(
    State(st): St,
    Path(id): Path<String>,
) -> Result<Json<JobStatusResponse>, ApiError> {
    let svc = service(&st)?;
    svc.jobs()
        .get(&JobId(id.clone()))
        .map(|j| Json(j.into()))
        .ok_or_else(|| {
            ApiError::not_found(format!("no backup job {id} on this node"))
                .with("code", "not_found")
        })
}

/// This node's backup schedules (with their next run) and retention.
#[utoipa::path(get, path = "/api/v1/backup/schedule", tag = "backup",
    responses(
        (status = 200, description = "rale_backup::api::ScheduleResponse", body = Object),
        (status = 503, description = "Backups not configured", body = ErrorBody)))]
pub(crate) async fn get_schedule(State(st): St) -> Result<Json<ScheduleResponse>, ApiError> {
    Ok(Json(service(&st)?.schedule_status()))
}

/// Replace this node's backup schedules and retention (kept across agent restarts).
#[utoipa::path(post, path = "/api/v1/backup/schedule", tag = "backup",
    request_body(content = Option<ScheduleBody>, description = "An empty body (or `null`) is `{}`: no schedules set through the API (the file's apply again)"),
    responses(
        (status = 200, description = "rale_backup::api::ScheduleResponse", body = Object),
        (status = 400, description = "Bad cron expression", body = ErrorBody),
        (status = 503, description = "Backups not configured", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn schedule(
    State(st): St,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<Option<ScheduleRequest>>,
) -> Result<Json<ScheduleResponse>, ApiError> {
    let req = req.unwrap_or_default();
    let svc = service(&st)?;
    let names: Vec<String> = req.schedules.iter().map(|s| s.name.clone()).collect();
    let answer = svc.set_schedules(req).map_err(|e| backup_error(&e))?;
    let reason = if names.is_empty() {
        "backup schedules cleared".to_owned()
    } else {
        format!("backup schedules replaced: {}", names.join(", "))
    };
    record_operation(&st, &caller_name(caller), reason).await;
    Ok(Json(answer))
}
