//! The daemon's side of `POST /restart`, `/reinitialize` and `/reload`: operator actions on
//! this node's PostgreSQL, serialised with the HA loop's own actions and recorded in the
//! cluster history.

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::StatusCode;
use rale::pg::{StopMode, Upstream};
use rale::{Consensus, NodeId, PostgresControl, Role};
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::reload::FileReload;
use crate::api::propose::record;
use crate::api::types::{ActionResponse, ReinitializeRequest, RestartRequest};
use crate::api::{ApiError, NodeActions};
use crate::callbacks::{CallbackEvent, Callbacks};

/// Operator actions on the local PostgreSQL.
pub struct DaemonActions {
    /// This node.
    pub node: NodeId,
    /// The local PostgreSQL.
    pub pg: Arc<dyn PostgresControl>,
    /// Consensus, for the history and to find the primary.
    pub consensus: Arc<dyn Consensus>,
    /// Held while PostgreSQL is being changed (shared with the HA loop).
    pub pg_lock: Arc<Mutex<()>>,
    /// Re-reads the configuration file on reload (tags, API access rules, TLS).
    pub file_reload: FileReload,
    /// The restart scheduled with `POST /restart {"schedule": …}`, if any.
    pub scheduled: Arc<Mutex<Option<ScheduledRestart>>>,
    /// User scripts (`on_restart`, `on_reload`).
    pub callbacks: Callbacks,
}

/// A restart waiting for its time (one per node, like Patroni's).
#[derive(Debug)]
pub struct ScheduledRestart {
    /// When it runs.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Who asked.
    pub caller: String,
    task: tokio::task::JoinHandle<()>,
    /// Its time came and the restart is under way: it can no longer be cancelled
    /// (aborting it half-way could leave PostgreSQL stopped).
    started: Arc<std::sync::atomic::AtomicBool>,
}

/// The pieces a restart needs, cloneable into a scheduled task.
#[derive(Clone)]
struct Restarter {
    node: NodeId,
    pg: Arc<dyn PostgresControl>,
    consensus: Arc<dyn Consensus>,
    pg_lock: Arc<Mutex<()>>,
    callbacks: Callbacks,
}

impl Restarter {
    async fn record(&self, caller: &str, reason: String) {
        record(self.consensus.as_ref(), &self.node, caller, reason).await;
    }

    /// Checks the request's conditions now and restarts when they hold.
    async fn restart_now(
        &self,
        req: &RestartRequest,
        caller: &str,
    ) -> Result<(StatusCode, ActionResponse), ApiError> {
        let status = self.pg.status().await.map_err(|e| failed("status", e))?;
        if req.restart_pending == Some(true) && !status.pending_restart {
            return Ok((
                StatusCode::OK,
                ActionResponse::message("no restart needed: no setting waits for a restart"),
            ));
        }
        if let Some(text) = &req.postgres_version {
            let wanted = crate::api::types::postgres_version_num(text)?;
            if status.server_version_num >= wanted {
                return Ok((
                    StatusCode::OK,
                    ActionResponse::message(format!(
                        "not restarted: the server ({}) is not older than {text}",
                        status.server_version_num
                    )),
                ));
            }
        }
        if let Some(role) = &req.role {
            let mine = match status.role() {
                Role::Primary => "primary",
                Role::Replica => "replica",
                Role::Unknown => "unknown",
            };
            let wanted = if role == "master" || role == "leader" {
                "primary"
            } else {
                role.as_str()
            };
            if wanted != mine {
                return Ok((
                    StatusCode::OK,
                    ActionResponse::message(format!("not restarted: role is {mine}, not {role}")),
                ));
            }
        }
        let _guard = self.pg_lock.lock().await;
        self.pg.restart().await.map_err(|e| failed("restart", e))?;
        info!(node = %self.node, caller, "PostgreSQL restarted on request");
        self.callbacks.fire(CallbackEvent::Restart, status.role());
        self.record(
            caller,
            format!("PostgreSQL on {} restarted on request", self.node),
        )
        .await;
        Ok((
            StatusCode::OK,
            ActionResponse::message("restarted successfully"),
        ))
    }
}

/// Parses a `schedule` value: an RFC 3339 / ISO 8601 timestamp with an offset
/// (`2026-11-22T03:00:00Z`, `2026-11-22T04:00:00+01:00`).
pub fn parse_schedule(value: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    chrono::DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| {
            ApiError::bad_request(format!(
                "schedule {value:?} is not an ISO 8601 timestamp with a time zone \
                 (e.g. 2026-11-22T03:00:00Z): {e}"
            ))
        })
}

impl DaemonActions {
    async fn record(&self, caller: &str, reason: String) {
        record(self.consensus.as_ref(), &self.node, caller, reason).await;
    }

    fn restarter(&self) -> Restarter {
        Restarter {
            node: self.node.clone(),
            pg: self.pg.clone(),
            consensus: self.consensus.clone(),
            pg_lock: self.pg_lock.clone(),
            callbacks: self.callbacks.clone(),
        }
    }

    async fn schedule_restart(
        &self,
        mut req: RestartRequest,
        value: &str,
        caller: &str,
    ) -> Result<(StatusCode, ActionResponse), ApiError> {
        let at = parse_schedule(value)?;
        let now = chrono::Utc::now();
        if at < now - chrono::Duration::seconds(5) {
            return Err(ApiError::bad_request(format!(
                "cannot schedule a restart in the past ({at}, now {now})"
            )));
        }
        let mut slot = self.scheduled.lock().await;
        if let Some(s) = slot.as_ref().filter(|s| !s.task.is_finished()) {
            return Err(ApiError::conflict(format!(
                "another restart is already scheduled for {} (by {}); DELETE /restart first",
                s.at, s.caller
            )));
        }
        req.schedule = None;
        let restarter = self.restarter();
        let who = caller.to_string();
        let delay = (at - now).to_std().unwrap_or_default();
        let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let running = started.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            running.store(true, std::sync::atomic::Ordering::SeqCst);
            match restarter.restart_now(&req, &who).await {
                Ok((_, r)) => info!(node = %restarter.node, caller = %who, result = %r.message,
                    "scheduled restart ran"),
                Err(e) => {
                    warn!(node = %restarter.node, caller = %who, error = %e.message,
                        "scheduled restart failed");
                    restarter
                        .record(
                            &who,
                            format!(
                                "scheduled restart of {} failed: {}",
                                restarter.node, e.message
                            ),
                        )
                        .await;
                }
            }
        });
        *slot = Some(ScheduledRestart {
            at,
            caller: caller.to_string(),
            task,
            started,
        });
        drop(slot);
        info!(node = %self.node, caller, %at, "PostgreSQL restart scheduled");
        self.record(
            caller,
            format!("restart of PostgreSQL on {} scheduled for {at}", self.node),
        )
        .await;
        Ok((
            StatusCode::ACCEPTED,
            ActionResponse::message(format!("restart scheduled for {at}")),
        ))
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("{what} failed: {e}"))
}

#[async_trait]
impl NodeActions for DaemonActions {
    async fn restart(
        &self,
        req: RestartRequest,
        caller: &str,
    ) -> Result<(StatusCode, ActionResponse), ApiError> {
        if let Some(value) = req.schedule.clone() {
            return self.schedule_restart(req, &value, caller).await;
        }
        self.restarter().restart_now(&req, caller).await
    }

    async fn cancel_restart(&self, caller: &str) -> Result<(StatusCode, ActionResponse), ApiError> {
        let mut slot = self.scheduled.lock().await;
        if slot.as_ref().is_some_and(|s| {
            !s.task.is_finished() && s.started.load(std::sync::atomic::Ordering::SeqCst)
        }) {
            return Err(ApiError::conflict(
                "the scheduled restart is running now and can no longer be cancelled",
            ));
        }
        match slot.take().filter(|s| !s.task.is_finished()) {
            Some(s) => {
                s.task.abort();
                drop(slot);
                info!(node = %self.node, caller, at = %s.at, "scheduled restart deleted");
                self.record(
                    caller,
                    format!("scheduled restart of {} ({}) deleted", self.node, s.at),
                )
                .await;
                Ok((
                    StatusCode::OK,
                    ActionResponse::message("scheduled restart deleted"),
                ))
            }
            None => Err(ApiError::not_found("no restart is scheduled")),
        }
    }

    async fn scheduled_restart(&self) -> Option<(chrono::DateTime<chrono::Utc>, String)> {
        let slot = self.scheduled.lock().await;
        slot.as_ref()
            .filter(|s| !s.task.is_finished())
            .map(|s| (s.at, s.caller.clone()))
    }

    async fn reinitialize(
        &self,
        req: ReinitializeRequest,
        caller: &str,
    ) -> Result<(StatusCode, ActionResponse), ApiError> {
        let state = self.consensus.read().await.map_err(ApiError::consensus)?;
        let Some(primary) = state.holder().cloned() else {
            return Err(ApiError::unavailable("no primary to clone from"));
        };
        if primary == self.node {
            return Err(ApiError::unavailable(
                "I am the primary: cannot reinitialize the primary",
            ));
        }
        let m = state
            .members
            .get(&primary)
            .ok_or_else(|| ApiError::unavailable("the primary has not published its address"))?;
        let up = Upstream {
            node: primary.clone(),
            host: m.pg_host.clone(),
            port: m.pg_port,
        };
        let status = self.pg.status().await.map_err(|e| failed("status", e))?;
        if status.running && status.reachable && status.streaming && !req.force {
            return Err(ApiError::unavailable(
                "this replica runs and streams; add \"force\": true to rebuild it anyway",
            ));
        }
        let _guard = self.pg_lock.lock().await;
        self.pg
            .stop(StopMode::Fast)
            .await
            .map_err(|e| failed("stop", e))?;
        PostgresControl::clone_from(self.pg.as_ref(), &up)
            .await
            .map_err(|e| failed("clone", e))?;
        self.pg
            .start(Some(&up))
            .await
            .map_err(|e| failed("start", e))?;
        self.record(
            caller,
            format!("{} reinitialised from {primary}", self.node),
        )
        .await;
        Ok((
            StatusCode::OK,
            ActionResponse::message("reinitialize started"),
        ))
    }

    async fn reload(&self, caller: &str) -> Result<(StatusCode, ActionResponse), ApiError> {
        self.file_reload
            .apply()
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        self.pg.reload().await.map_err(|e| failed("reload", e))?;
        if let Ok(status) = self.pg.status().await {
            self.callbacks.fire(CallbackEvent::Reload, status.role());
        }
        info!(node = %self.node, caller, "configuration reloaded on request");
        Ok((
            StatusCode::ACCEPTED,
            ActionResponse::message("reload scheduled"),
        ))
    }
}
