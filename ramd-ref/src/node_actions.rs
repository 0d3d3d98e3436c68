//! The daemon's side of `POST /restart`, `/reinitialize` and `/reload`: operator actions on
//! this node's PostgreSQL, serialised with the HA loop's own actions and recorded in the
//! cluster history.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use axum::http::StatusCode;
use rale::decide::NodeIdentity;
use rale::pg::{StopMode, Upstream};
use rale::state::{Command, HistoryKind, Operation};
use rale::{Consensus, NodeId, PostgresControl, Role};
use tokio::sync::{Mutex, watch};
use tracing::info;

use crate::api::types::{ActionResponse, ReinitializeRequest, RestartRequest};
use crate::api::{ApiError, NodeActions};
use crate::config::NodeConfig;
use crate::ha::wall_ms;

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
    /// The configuration file, re-read on reload.
    pub config_path: PathBuf,
    /// Where a reloaded identity (tags) goes.
    pub identity_tx: watch::Sender<NodeIdentity>,
}

impl DaemonActions {
    async fn record(&self, caller: &str, reason: String) {
        let cmd = Command {
            op: Operation::Record {
                kind: HistoryKind::Operation,
                node: Some(self.node.clone()),
                actor: format!("api:{caller}"),
                reason,
            },
            wall_ms: wall_ms(),
        };
        let _ = self.consensus.propose(cmd).await;
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
        let status = self.pg.status().await.map_err(|e| failed("status", e))?;
        if req.restart_pending == Some(true) && !status.pending_restart {
            return Ok((
                StatusCode::OK,
                ActionResponse::message("no restart needed: no setting waits for a restart"),
            ));
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
        if req.schedule.is_some() {
            return Err(ApiError::bad_request(
                "scheduled restarts are not supported yet; restart now or use cron",
            ));
        }
        let _guard = self.pg_lock.lock().await;
        self.pg.restart().await.map_err(|e| failed("restart", e))?;
        info!(node = %self.node, caller, "PostgreSQL restarted on request");
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
        let cfg = NodeConfig::load(&self.config_path)
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        self.identity_tx.send_replace(crate::daemon::identity(&cfg));
        self.pg.reload().await.map_err(|e| failed("reload", e))?;
        info!(node = %self.node, caller, "configuration reloaded on request");
        Ok((
            StatusCode::ACCEPTED,
            ActionResponse::message("reload scheduled"),
        ))
    }
}
