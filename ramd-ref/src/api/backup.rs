//! Backups (`/api/v1/backup/*`): jobs run by [`rale_backup`] on this node, with the
//! request and response bodies of [`rale_backup::api`].
//!
//! Without a [`BackupService`] in [`super::ApiState::backup`] every backup path answers
//! 503 "backups are not configured on this node".
//!
//! # Configuration
//!
//! The daemon builds the service with [`BackupService::from_config`] from the `[backup]`
//! section of the node configuration file ([`BackupConfig`]).
//!
//! Schedules fire only once the daemon calls [`BackupService::start_schedules`] with a
//! view of the members (e.g. [`snapshot_members`]). `POST /api/v1/backup/schedule`
//! replaces this node's schedules and retention in memory: the change is neither
//! persisted nor sent to the other members.
//!
//! # WAL archiving and the repository
//!
//! A backup tool needs settings in PostgreSQL (pgBackRest and Barman: `archive_mode = on`
//! and an `archive_command` that pushes WAL into their repository).
//! [`BackupService::add_server_parameters`] adds them to the parameters of the
//! configuration file ramd writes (`rale.conf`) where the node's `[postgresql.parameters]`
//! does not set them; cluster-wide parameters (`ALTER SYSTEM`) override both.
//! The repository is prepared (pgBackRest `stanza-create`) by
//! [`BackupService::prepare_when_primary`] as soon as this node is the healthy primary,
//! and in any case before the first backup (see [`rale_backup::jobs`]). pgBackRest backs
//! up the primary only: `start` on another node answers 409 (`code: not_primary`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use rale::NodeId;
use rale_backup::api::{
    JobAccepted, JobStatusResponse, JobsResponse, ListBackupsResponse, ScheduleRequest,
    ScheduleResponse, ScheduleStatus, StartBackupRequest, StartRestoreRequest,
};
use rale_backup::schedule::{ClusterView, MemberView, Schedule, ScheduleRunner};
use rale_backup::{
    BackupTool, Barman, CustomTool, JobId, JobManager, JobSpec, PgBackRest, Retention,
    ScheduleSpec, Scheduler,
};
use tokio::sync::watch;

use super::ApiState;
use super::auth::{Caller, caller_name};
use super::error::{ApiError, ApiJson};
use super::propose::record_operation;
use super::types::ErrorBody;
use crate::config::{BackupConfig, ToolKind};
use crate::snapshot::NodeSnapshot;

type St = State<Arc<ApiState>>;

/// Backups on this node: the job manager (which holds the tool), the schedules and the
/// runner that fires them.
pub struct BackupService {
    jobs: JobManager,
    schedules: Mutex<Vec<ScheduleSpec>>,
    runner: Mutex<Option<ScheduleRunner>>,
    /// The task preparing the repository once this node is primary.
    preparer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Data directories a restore must never write into (the node's live one).
    protected_dirs: Vec<PathBuf>,
    /// Backups run only where PostgreSQL is the primary (pgBackRest without a standby
    /// configuration): `start` refuses elsewhere.
    primary_only: bool,
    /// Where schedules set through the API are kept across restarts (`None`: memory).
    schedule_file: Option<PathBuf>,
}

/// The file, in the job directory, holding the schedules and retention last set through
/// `POST /api/v1/backup/schedule`; while it exists it takes precedence over the
/// `[backup]` section's `schedules` and `retention`.
pub const SCHEDULE_FILE: &str = "schedules.json";

/// How long [`BackupService::prepare_when_primary`] waits after a failed preparation.
pub const PREPARE_RETRY_INTERVAL: Duration = Duration::from_secs(30);

impl std::fmt::Debug for BackupService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupService")
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

fn missing(section: &str) -> rale_backup::Error {
    rale_backup::Error::Config(format!(
        "[backup.{section}] is required for tool = \"{section}\""
    ))
}

impl BackupService {
    /// A service over `jobs`, with schedules (checked) and retention. Restores into any
    /// of `protected_dirs` are refused.
    pub fn new(
        jobs: JobManager,
        schedules: Vec<ScheduleSpec>,
        retention: Option<Retention>,
        protected_dirs: Vec<PathBuf>,
    ) -> rale_backup::Result<Self> {
        Scheduler::new(schedules.clone(), Utc::now())?;
        jobs.set_retention(retention);
        Ok(Self {
            jobs,
            schedules: Mutex::new(schedules),
            runner: Mutex::new(None),
            preparer: Mutex::new(None),
            protected_dirs,
            primary_only: false,
            schedule_file: None,
        })
    }

    /// Keeps schedules set through the API in `file` (written on every change).
    pub fn with_schedule_file(mut self, file: PathBuf) -> Self {
        self.schedule_file = Some(file);
        self
    }

    /// Refuses `POST /api/v1/backup/start` (409) unless this node's PostgreSQL is the
    /// primary; [`Self::from_config`] sets it for pgBackRest, which backs up the primary.
    pub fn with_primary_only(mut self, primary_only: bool) -> Self {
        self.primary_only = primary_only;
        self
    }

    /// Builds the tool named by `config`, opens the job directory (failing jobs an
    /// earlier run left unfinished) and checks the schedules. Does not start them.
    pub fn from_config(config: &BackupConfig, node: NodeId) -> rale_backup::Result<Self> {
        let (tool, data_dir): (Arc<dyn BackupTool>, Option<PathBuf>) = match config.tool {
            ToolKind::Pgbackrest => {
                let c = config
                    .pgbackrest
                    .clone()
                    .ok_or_else(|| missing("pgbackrest"))?;
                let dir = c.pg_data_dir.clone();
                (Arc::new(PgBackRest::new(c)?), Some(dir))
            }
            ToolKind::Barman => {
                let c = config.barman.clone().ok_or_else(|| missing("barman"))?;
                (Arc::new(Barman::new(c)?), None)
            }
            ToolKind::Custom => {
                let c = config.custom.clone().ok_or_else(|| missing("custom"))?;
                let dir = (!c.pg_data_dir.as_os_str().is_empty()).then(|| c.pg_data_dir.clone());
                (Arc::new(CustomTool::new(c)?), dir)
            }
        };
        let jobs = JobManager::open(&config.job_dir, tool, Some(node))?;
        let file = config.job_dir.join(SCHEDULE_FILE);
        let saved: Option<ScheduleRequest> = rale_backup::atomic::read_json(&file)?;
        let (schedules, retention) = match saved {
            Some(saved) => {
                tracing::info!(file = %file.display(), "backup schedules set through the API override [backup] schedules");
                (saved.schedules, saved.retention)
            }
            None => (config.schedules.clone(), config.retention.clone()),
        };
        Ok(
            Self::new(jobs, schedules, retention, data_dir.into_iter().collect())?
                .with_primary_only(config.tool == ToolKind::Pgbackrest)
                .with_schedule_file(file),
        )
    }

    /// The job manager.
    pub fn jobs(&self) -> &JobManager {
        &self.jobs
    }

    /// Adds the PostgreSQL settings the tool needs ([`BackupTool::server_parameters`]:
    /// `archive_mode`, `archive_command`, `wal_level`, …) to `parameters` (the node's
    /// `[postgresql.parameters]`, which ramd writes into `rale.conf`), except those
    /// `parameters` already sets (names compared case-insensitively): the operator's
    /// value wins. Returns the names added.
    pub fn add_server_parameters(&self, parameters: &mut BTreeMap<String, String>) -> Vec<String> {
        add_tool_parameters(self.jobs.tool().server_parameters(), parameters)
    }

    /// Prepares the tool's repository (pgBackRest `stanza-create`) as soon as `view`
    /// shows `me` as the healthy primary: checks every `tick`, retries a failure after
    /// [`PREPARE_RETRY_INTERVAL`], stops once it succeeded. Until then WAL archiving fails
    /// and PostgreSQL keeps the segments. Replaces a task started earlier.
    pub fn prepare_when_primary(&self, me: NodeId, view: Arc<dyn ClusterView>, tick: Duration) {
        let jobs = self.jobs.clone();
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick.max(Duration::from_millis(10)));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while !jobs.is_prepared() {
                interval.tick().await;
                let primary = view
                    .members()
                    .iter()
                    .any(|m| m.node == me && m.role == rale::Role::Primary && m.healthy);
                if !primary {
                    continue;
                }
                if let Err(e) = jobs.prepare().await {
                    tracing::warn!(node = %me, tool = %jobs.tool().name(), error = %e,
                        retry_ms = u64::try_from(PREPARE_RETRY_INTERVAL.as_millis()).unwrap_or(u64::MAX),
                        "backup repository not prepared");
                    tokio::time::sleep(PREPARE_RETRY_INTERVAL).await;
                }
            }
        });
        if let Some(old) = self
            .preparer
            .lock()
            .expect("preparer lock poisoned")
            .replace(task)
        {
            old.abort();
        }
    }

    /// Starts firing the schedules on this node (placement decides which member runs
    /// each backup), evaluating every `tick`. Replaces a runner started earlier.
    pub fn start_schedules(&self, me: NodeId, view: Arc<dyn ClusterView>, tick: Duration) {
        let specs = self
            .schedules
            .lock()
            .expect("schedules lock poisoned")
            .clone();
        let scheduler = match Scheduler::new(specs, Utc::now()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(node = %me, error = %e, "backup schedules not started");
                return;
            }
        };
        let runner = ScheduleRunner::spawn(scheduler, self.jobs.clone(), me, view, tick);
        if let Some(old) = self
            .runner
            .lock()
            .expect("runner lock poisoned")
            .replace(runner)
        {
            old.stop();
        }
    }

    /// Schedules and retention in force, with each schedule's next run.
    pub fn schedule_status(&self) -> ScheduleResponse {
        let now = Utc::now();
        let specs = self
            .schedules
            .lock()
            .expect("schedules lock poisoned")
            .clone();
        ScheduleResponse {
            schedules: specs
                .into_iter()
                .map(|spec| ScheduleStatus {
                    next_run: Schedule::parse(spec.clone())
                        .ok()
                        .and_then(|s| s.next_after(now)),
                    spec,
                })
                .collect(),
            retention: self.jobs.retention(),
        }
    }

    /// Replaces the schedules and retention (checked first; nothing changes on error).
    pub fn set_schedules(&self, req: ScheduleRequest) -> rale_backup::Result<ScheduleResponse> {
        Scheduler::new(req.schedules.clone(), Utc::now())?;
        if let Some(file) = &self.schedule_file {
            rale_backup::atomic::write_json(file, &req)?;
        }
        if let Some(runner) = self.runner.lock().expect("runner lock poisoned").as_ref() {
            runner.replace(req.schedules.clone())?;
        }
        *self.schedules.lock().expect("schedules lock poisoned") = req.schedules;
        self.jobs.set_retention(req.retention);
        Ok(self.schedule_status())
    }
}

impl Drop for BackupService {
    fn drop(&mut self) {
        if let Ok(mut r) = self.runner.lock()
            && let Some(runner) = r.take()
        {
            runner.stop();
        }
        if let Ok(mut p) = self.preparer.lock()
            && let Some(task) = p.take()
        {
            task.abort();
        }
    }
}

/// [`BackupService::add_server_parameters`] for a list of tool parameters.
fn add_tool_parameters(
    wanted: Vec<rale_backup::ServerParameter>,
    parameters: &mut BTreeMap<String, String>,
) -> Vec<String> {
    let mut added = Vec::new();
    for p in wanted {
        let name = p.name.to_ascii_lowercase();
        if parameters.keys().any(|k| k.eq_ignore_ascii_case(&name)) {
            continue;
        }
        parameters.insert(name.clone(), p.value);
        added.push(name);
    }
    added
}

/// The members as `snapshot`'s latest cluster state shows them, for the schedule
/// placement: healthy = PostgreSQL runs (and, for a replica, streams).
pub fn snapshot_members(snapshot: watch::Receiver<Arc<NodeSnapshot>>) -> Arc<dyn ClusterView> {
    Arc::new(move || {
        let snap = snapshot.borrow().clone();
        snap.cluster
            .members
            .values()
            .map(|m| {
                let primary = snap.cluster.holder() == Some(&m.node);
                MemberView {
                    node: m.node.clone(),
                    role: if primary { rale::Role::Primary } else { m.role },
                    healthy: m.running && (primary || m.streaming),
                }
            })
            .collect::<Vec<_>>()
    })
}

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
    let job_id = svc.jobs.submit(spec).map_err(|e| backup_error(&e))?;
    Ok((StatusCode::ACCEPTED, Json(JobAccepted { job_id })))
}

/// Start a backup on this node (a job; follow it at `status/{job_id}`).
#[utoipa::path(post, path = "/api/v1/backup/start", tag = "backup",
    request_body(content = Object, description = "rale_backup::api::StartBackupRequest: {kind: full|differential|incremental}"),
    responses(
        (status = 202, description = "Queued (rale_backup::api::JobAccepted)", body = Object),
        (status = 400, description = "Kind not supported by the tool", body = ErrorBody),
        (status = 409, description = "Too many jobs queued, or a pgBackRest backup asked of a node that is not the primary", body = ErrorBody),
        (status = 503, description = "Backups not configured", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn start(
    State(st): St,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<StartBackupRequest>,
) -> Result<(StatusCode, Json<JobAccepted>), ApiError> {
    let svc = service(&st)?;
    if svc.primary_only {
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
                    svc.jobs.tool().name(),
                    snap.node
                ),
            )
            .with("code", "not_primary"));
        }
    }
    if !svc.jobs.tool().supported_kinds().contains(&req.kind) {
        return Err(ApiError::bad_request(format!(
            "{} does not take {:?} backups",
            svc.jobs.tool().name(),
            req.kind
        ))
        .with("code", "invalid"));
    }
    let answer = submit(&svc, JobSpec::Backup { kind: req.kind })?;
    let reason = format!(
        "{} backup job {} queued ({})",
        format!("{:?}", req.kind).to_lowercase(),
        answer.1.job_id,
        svc.jobs.tool().name()
    );
    record_operation(&st, &caller_name(caller), reason).await;
    Ok(answer)
}

/// Restore a backup into a data directory of this node (never the live one).
#[utoipa::path(post, path = "/api/v1/backup/restore", tag = "backup",
    request_body(content = Object, description = "rale_backup::api::StartRestoreRequest: data_dir, backup_id?, target, target_action, standby?, disable_archiving"),
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
    let same = |p: &PathBuf| {
        let canon = |x: &std::path::Path| std::fs::canonicalize(x).unwrap_or_else(|_| x.to_owned());
        canon(p) == canon(&req.data_dir)
    };
    if svc.protected_dirs.iter().any(same) {
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
    let tool = svc.jobs.tool().clone();
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
        jobs: svc.jobs.list(),
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
    svc.jobs
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
    request_body(content = Object, description = "rale_backup::api::ScheduleRequest: schedules [{name, kind, cron, placement}], retention?"),
    responses(
        (status = 200, description = "rale_backup::api::ScheduleResponse", body = Object),
        (status = 400, description = "Bad cron expression", body = ErrorBody),
        (status = 503, description = "Backups not configured", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn schedule(
    State(st): St,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<ScheduleRequest>,
) -> Result<Json<ScheduleResponse>, ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_parameters_do_not_override_the_operator() {
        use rale_backup::ServerParameter;
        let mut params = BTreeMap::from([
            ("Archive_Command".to_string(), "/bin/true".to_string()),
            ("shared_buffers".to_string(), "32MB".to_string()),
        ]);
        let added = add_tool_parameters(
            vec![
                ServerParameter::restart("archive_mode", "on"),
                ServerParameter::reload("archive_command", "pgbackrest archive-push %p"),
            ],
            &mut params,
        );
        assert_eq!(added, vec!["archive_mode".to_string()]);
        assert_eq!(params.get("archive_mode").map(String::as_str), Some("on"));
        assert_eq!(
            params.get("Archive_Command").map(String::as_str),
            Some("/bin/true")
        );
        assert!(!params.contains_key("archive_command"));
    }

    #[test]
    fn tool_section_is_required() {
        let c = BackupConfig {
            tool: ToolKind::Pgbackrest,
            job_dir: "/nonexistent".into(),
            pgbackrest: None,
            barman: None,
            custom: None,
            schedules: Vec::new(),
            retention: None,
        };
        let e = BackupService::from_config(&c, NodeId::new("n1").expect("name"))
            .expect_err("no [backup.pgbackrest]");
        assert!(e.to_string().contains("[backup.pgbackrest]"), "{e}");
    }
}
