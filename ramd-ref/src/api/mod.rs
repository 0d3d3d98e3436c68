//! The per-node REST API of `ramd`: Patroni-compatible paths at the root and the
//! versioned management API under `/api/v1/`, one router, shared handlers.
//!
//! The HA loop publishes a [`NodeSnapshot`] after every iteration; the API reads it for
//! health checks and node status, reads the cluster state from consensus, and changes
//! the cluster only by proposing [`rale::state::Operation`]s through [`rale::Consensus`].
//!
//! ```no_run
//! # async fn serve(
//! #     snapshot: tokio::sync::watch::Receiver<std::sync::Arc<ramd_ref::snapshot::NodeSnapshot>>,
//! #     consensus: std::sync::Arc<dyn rale::Consensus>,
//! # ) -> std::io::Result<()> {
//! use ramd_ref::api::{ApiState, router};
//! use ramd_ref::config::AuthConfig;
//! let state = ApiState::new(snapshot, consensus, AuthConfig::basic("admin", "secret"), "demo");
//! let app = router(state); // .merge(raft_rpc_router) in ramd
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8008").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
//! # }
//! ```
//!
//! Paths, methods and bodies are listed in the OpenAPI document served at
//! `GET /openapi.json` (see [`openapi::document`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{MethodRouter, get, post};
use rale::{ClusterState, Consensus};
use tokio::sync::watch;

pub mod auth;
pub mod backup;
pub mod bodies;
pub mod cluster_metrics;
pub mod describe;
mod dynamic_config;
mod error;
pub mod health;
mod maintenance;
pub mod members;
pub mod metrics;
mod node_actions;
pub mod openapi;
mod pg_parameters;
mod primary_change;
pub(crate) mod propose;
mod status;
mod sync;
pub mod sync_role;
pub mod types;

pub use auth::{Caller, SharedAuth};
pub use dynamic_config::merge_patch;
pub use error::{ApiError, ApiJson};
pub use node_actions::NodeActions;

use crate::backup::BackupService;
use crate::config::AuthConfig;
use crate::snapshot::NodeSnapshot;
use crate::workload::WorkloadView;

/// Default bound on how long `POST /switchover` and `POST /failover` wait for the new
/// primary before answering 503 "status unknown".
pub const OPERATION_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// What the API needs from the daemon.
#[derive(Clone)]
pub struct ApiState {
    /// The HA loop's latest view of this node.
    pub snapshot: watch::Receiver<Arc<NodeSnapshot>>,
    /// The replicated cluster state.
    pub consensus: Arc<dyn Consensus>,
    /// Access rules (replaceable at run time, see [`SharedAuth`]).
    pub auth: SharedAuth,
    /// Cluster name (Patroni's `scope`).
    pub scope: String,
    /// Restart, reinitialise and reload of the local PostgreSQL; `None` answers 503
    /// "not available" on those paths.
    pub actions: Option<Arc<dyn NodeActions>>,
    /// Bound on waiting for the outcome of a switchover or failover.
    pub operation_timeout: Duration,
    /// Backups of this node; `None` answers 503 "backups are not configured on this
    /// node" on `/api/v1/backup/*`.
    pub backup: Option<Arc<BackupService>>,
    /// The workload collector's latest view ([`crate::workload`]); `None` serves no
    /// workload metrics.
    pub workload: Option<watch::Receiver<Arc<WorkloadView>>>,
}

impl ApiState {
    /// State with the defaults: no local actions, [`OPERATION_TIMEOUT_DEFAULT`].
    pub fn new(
        snapshot: watch::Receiver<Arc<NodeSnapshot>>,
        consensus: Arc<dyn Consensus>,
        auth: AuthConfig,
        scope: impl Into<String>,
    ) -> Self {
        Self {
            snapshot,
            consensus,
            auth: auth.into(),
            scope: scope.into(),
            actions: None,
            operation_timeout: OPERATION_TIMEOUT_DEFAULT,
            backup: None,
            workload: None,
        }
    }

    /// The HA loop's latest snapshot.
    pub(crate) fn snap(&self) -> Arc<NodeSnapshot> {
        self.snapshot.borrow().clone()
    }

    /// The freshest cluster state available without a network round trip: the newer of
    /// the locally applied state and the HA loop's last read.
    pub(crate) fn local_cluster(&self, snap: &NodeSnapshot) -> Arc<ClusterState> {
        let applied = self.consensus.subscribe().borrow().clone();
        if applied.revision >= snap.cluster.revision {
            applied
        } else {
            snap.cluster.clone()
        }
    }
}

pub(crate) type Shared = ApiState;
type St = Arc<ApiState>;

/// One route: an HTTP method and an axum path (`{id}` for parameters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    /// `GET`, `POST`, …
    pub method: &'static str,
    /// The path, as the router and the OpenAPI document spell it.
    pub path: &'static str,
}

struct Builder {
    router: Router<St>,
    specs: Vec<RouteSpec>,
}

impl Builder {
    fn add(mut self, path: &'static str, methods: &[&'static str], mr: MethodRouter<St>) -> Self {
        self.router = self.router.route(path, mr);
        self.specs
            .extend(methods.iter().map(|&method| RouteSpec { method, path }));
        self
    }
}

const HEALTH_METHODS: &[&str] = &["GET", "HEAD", "OPTIONS"];

fn build() -> (Router<St>, Vec<RouteSpec>) {
    let mut b = Builder {
        router: Router::new(),
        specs: Vec::new(),
    };
    for &(path, check) in health::HEALTH_PATHS {
        let handler = move |st: axum::extract::State<St>,
                            method: axum::http::Method,
                            q: status::HealthQueryExtract| {
            status::health(st, method, q, check)
        };
        b = b.add(path, HEALTH_METHODS, get(handler).options(handler));
    }
    let b = b
        .add("/patroni", &["GET"], get(status::patroni))
        .add("/cluster", &["GET"], get(status::cluster))
        .add("/history", &["GET"], get(status::history))
        .add("/metrics", &["GET"], get(metrics::metrics))
        .add(
            "/config",
            &["GET", "PATCH", "PUT"],
            get(dynamic_config::get_config)
                .patch(dynamic_config::patch_config)
                .put(dynamic_config::put_config),
        )
        .add(
            "/switchover",
            &["POST", "DELETE"],
            post(primary_change::switchover).delete(primary_change::cancel_switchover),
        )
        .add("/failover", &["POST"], post(primary_change::failover))
        .add(
            "/restart",
            &["POST", "DELETE"],
            post(node_actions::restart).delete(node_actions::cancel_restart),
        )
        .add("/reinitialize", &["POST"], post(node_actions::reinitialize))
        .add("/reload", &["POST"], post(node_actions::reload))
        .add("/openapi.json", &["GET"], get(openapi::serve))
        .add(
            "/api/v1/cluster/status",
            &["GET"],
            get(status::cluster_status),
        )
        .add(
            "/api/v1/cluster/health",
            &["GET"],
            get(status::cluster_health),
        )
        .add(
            "/api/v1/cluster/metrics",
            &["GET"],
            get(cluster_metrics::get),
        )
        .add(
            "/api/v1/cluster/switchover",
            &["POST", "DELETE"],
            post(primary_change::switchover).delete(primary_change::cancel_switchover),
        )
        .add(
            "/api/v1/failover",
            &["POST"],
            post(primary_change::failover),
        )
        .add(
            "/api/v1/promote/{id}",
            &["POST"],
            post(primary_change::promote),
        )
        .add(
            "/api/v1/demote/{id}",
            &["POST"],
            post(primary_change::demote),
        )
        .add("/api/v1/nodes", &["GET"], get(status::nodes))
        .add("/api/v1/nodes/{id}", &["GET"], get(status::node))
        .add("/api/v1/history", &["GET"], get(status::api_history))
        .add("/api/v1/replication/sync", &["GET"], get(status::sync))
        .add(
            "/api/v1/members",
            &["GET", "POST"],
            get(members::list).post(members::add),
        )
        .add(
            "/api/v1/members/{name}",
            &["DELETE"],
            axum::routing::delete(members::remove),
        )
        .add("/api/v1/pause", &["POST"], post(maintenance::pause))
        .add("/api/v1/resume", &["POST"], post(maintenance::resume))
        .add(
            "/api/v1/config",
            &["GET", "POST", "PATCH", "PUT"],
            get(dynamic_config::get_config)
                .post(dynamic_config::patch_config)
                .patch(dynamic_config::patch_config)
                .put(dynamic_config::put_config),
        )
        .add(
            "/api/v1/config/reload",
            &["POST"],
            post(node_actions::reload),
        )
        .add(
            "/api/v1/parameter/validate",
            &["POST"],
            post(pg_parameters::validate),
        )
        .add("/api/v1/parameter/list", &["GET"], get(pg_parameters::list))
        .add(
            "/api/v1/parameter/info/{name}",
            &["GET"],
            get(pg_parameters::info),
        )
        .add(
            "/api/v1/parameter/optimize",
            &["POST"],
            post(pg_parameters::optimize),
        )
        .add("/api/v1/backup/start", &["POST"], post(backup::start))
        .add("/api/v1/backup/restore", &["POST"], post(backup::restore))
        .add("/api/v1/backup/list", &["GET"], get(backup::list))
        .add("/api/v1/backup/jobs", &["GET"], get(backup::jobs))
        .add("/api/v1/backup/status/{id}", &["GET"], get(backup::status))
        .add(
            "/api/v1/backup/schedule",
            &["GET", "POST"],
            get(backup::get_schedule).post(backup::schedule),
        )
        .add("/api/v1/sync-standbys/status", &["GET"], get(sync::status))
        .add("/api/v1/sync-standbys/add", &["POST"], post(sync::add))
        .add(
            "/api/v1/sync-standbys/remove",
            &["POST"],
            post(sync::remove),
        )
        .add("/api/v1/sync-standbys/any-n", &["POST"], post(sync::any_n))
        .add("/api/v1/sync-standbys/count", &["POST"], post(sync::count))
        .add(
            "/api/v1/sync-standbys/commit-level",
            &["POST"],
            post(sync::commit_level),
        );
    (b.router, b.specs)
}

/// Every route of [`router`], for documentation checks and clients.
pub fn route_table() -> Vec<RouteSpec> {
    build().1
}

/// The API router. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so that the network allow-list
/// sees client addresses (without it, a non-empty allow-list refuses every write).
///
/// The router has a fallback (Patroni answers unknown `GET` paths with 503 and the node
/// status): merge routers without a fallback of their own into it.
pub fn router(state: ApiState) -> Router {
    let shared: St = Arc::new(state);
    let (routes, _) = build();
    routes
        .fallback(status::unknown)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            auth::enforce,
        ))
        .with_state(shared)
}

/// Unix milliseconds now (wall clock; used for history stamps and liveness only).
pub(crate) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
