//! The OpenAPI 3.1 description of the API, served at `GET /openapi.json`.
//!
//! Handlers carry `#[utoipa::path]`; the health paths (one handler, many paths) and the
//! aliases that share a handler are added here, so that every route of
//! [`super::route_table`] is described.

use axum::Json;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, Required};
use utoipa::{Modify, OpenApi};

use super::health::{Check, HEALTH_PATHS};
use super::members::{AddMemberRequest, MembersView, PeerView};
use super::types::*;
use super::{
    backup, cluster_metrics, dynamic_config, maintenance, members, metrics, node_actions,
    pg_parameters, primary_change, status, sync,
};

struct BasicAuth;

impl Modify for BasicAuth {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "RALE agent API", description = "Per-node REST API of ramd: Patroni-compatible paths at the root, the management API under /api/v1/. State-changing methods need HTTP Basic credentials."),
    paths(
        status::patroni, status::cluster, status::history, status::api_history, status::cluster_status,
        status::cluster_health, status::nodes, status::node, status::sync, metrics::metrics, cluster_metrics::get,
        dynamic_config::get_config, dynamic_config::patch_config, dynamic_config::put_config,
        primary_change::switchover, primary_change::failover, primary_change::cancel_switchover, primary_change::promote, primary_change::demote,
        maintenance::pause, maintenance::resume, node_actions::restart, node_actions::cancel_restart, node_actions::reinitialize, node_actions::reload,
        pg_parameters::validate, pg_parameters::list, pg_parameters::info, pg_parameters::optimize,
        backup::start, backup::restore, backup::list, backup::jobs, backup::status,
        backup::schedule, backup::get_schedule,
        sync::status, sync::add, sync::remove, sync::any_n, sync::count, sync::commit_level,
        members::list, members::add, members::remove,
        serve,
    ),
    components(schemas(
        NodeStatus, Xlog, ReplicationInfo, PatroniInfo, PatroniCluster, PatroniMember,
        ScheduledSwitchover, PatroniHistoryEntry, HistoryEntryView, MemberView, LeaseView,
        SyncView, SwitchoverView, ConsensusView, ClusterStatus, ClusterHealth,
        SwitchoverRequest, RestartRequest, ReinitializeRequest, ActionResponse, ErrorBody, Lag,
        ParameterValidateRequest, RecordedSyncView, SyncStandbyView, SyncStandbysStatus,
        SyncNodeRequest, SyncAnyNRequest, SyncCountRequest, SyncCommitLevelRequest,
        SyncChangeResponse, AddMemberRequest, MembersView, PeerView,
        ClusterMetrics, WorkloadSummary, StandbyLag, SlotUsage, SlotsView, SlotView, SlotManagement,
        pg_parameters::ContextName, pg_parameters::TypeName, OptimizeBody, SwitchoverBody, FailoverBody, ConfigBody, ConfigPatch, StartBackupBody, ScheduleBody, RestoreBody,
    )),
    modifiers(&BasicAuth),
)]
struct ApiDoc;

/// Paths served by the same handler as a documented one: (alias, documented path).
const ALIASES: &[(&str, &str)] = &[
    ("/api/v1/cluster/switchover", "/switchover"),
    ("/api/v1/failover", "/failover"),
    ("/api/v1/config/reload", "/reload"),
];

fn describe(check: Check) -> &'static str {
    match check {
        Check::Primary => "200 if this node is the writable primary holding the lease",
        Check::Leader => "200 if this node holds the primary lease",
        Check::StandbyLeader => "Always 503: RALE has no standby clusters",
        Check::Replica => {
            "200 if this node is a running replica taking reads (lag, replication_state, tag_* filters)"
        }
        Check::ReadOnly => "200 if this node is the primary or a passing replica",
        Check::Sync => "200 if this node is a passing replica in the synchronous set",
        Check::Async => "200 if this node is a passing replica outside the synchronous set",
        Check::Quorum => "200 if this node is a passing replica in the quorum set",
        Check::ReadOnlySync => "200 if this node is the primary or a synchronous standby",
        Check::ReadOnlyQuorum => "200 if this node is the primary or a quorum standby",
        Check::Health => "200 if PostgreSQL runs",
        Check::Liveness => {
            "200 if the HA loop ran within twice the lease TTL (or the cluster is paused)"
        }
        Check::Readiness => {
            "200 if this node is the primary, or a streaming replica within the lag limit"
        }
    }
}

fn health_item(check: Check) -> PathItem {
    let body = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("NodeStatus")))
        .build();
    let query = |name: &str, what: &str| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(what))
            .schema(Some(
                ObjectBuilder::new().schema_type(SchemaType::new(Type::String)),
            ))
            .build()
    };
    let op = |with_body: bool| {
        let ok = ResponseBuilder::new().description("Check passes");
        let ko = ResponseBuilder::new().description("Check fails");
        let (ok, ko) = if with_body {
            (
                ok.content("application/json", body.clone()),
                ko.content("application/json", body.clone()),
            )
        } else {
            (ok, ko)
        };
        OperationBuilder::new()
            .tag("health")
            .summary(Some(describe(check)))
            .description(Some(
                "Patroni's health check. Filters, all optional: `lag` (bytes, or with a unit: \
                 16kB, 10MB, 1GB; an unparsable value fails the check), `replication_state` \
                 (e.g. `streaming`) and any number of `tag_<key>=<value>` (the member's tag \
                 must have that value). Unknown parameters are ignored, as in Patroni.",
            ))
            .parameter(query("lag", "Maximum replay lag: bytes or 16kB, 10MB, 1GB"))
            .parameter(query(
                "replication_state",
                "Required replication state, e.g. streaming",
            ))
            .response("200", ok.build())
            .response("503", ko.build())
            .build()
    };
    let mut item = PathItem::new(HttpMethod::Get, op(true));
    item.head = Some(op(false));
    item.options = Some(op(false));
    item
}

/// Operations that read only what this agent holds in memory or computes: they never
/// wait for consensus, so they never answer 503 for it.
const LOCAL_OPERATIONS: &[&str] = &[
    "/patroni",
    "/cluster",
    "/history",
    "/metrics",
    "/openapi.json",
    "/api/v1/cluster/metrics",
    "/api/v1/nodes",
    "/api/v1/nodes/{id}",
    "/api/v1/replication/sync",
    "/api/v1/parameter/validate",
    "/api/v1/parameter/list",
    "/api/v1/parameter/info/{name}",
    "/api/v1/parameter/optimize",
];

fn error_response(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

/// Adds to every operation the answers that do not come from its handler: the refusals
/// of the access layer ([`super::auth::refusals`], the same rules `enforce` applies),
/// 400 for a malformed body, and 503 when consensus does not answer.
fn complete(doc: &mut Document) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let health = super::health::check_for_path(path).is_some();
        let operations = [
            (axum::http::Method::GET, &mut item.get),
            (axum::http::Method::HEAD, &mut item.head),
            (axum::http::Method::OPTIONS, &mut item.options),
            (axum::http::Method::POST, &mut item.post),
            (axum::http::Method::PUT, &mut item.put),
            (axum::http::Method::PATCH, &mut item.patch),
            (axum::http::Method::DELETE, &mut item.delete),
        ];
        for (method, op) in operations {
            let Some(op) = op.as_mut() else { continue };
            let has_body = op.request_body.is_some();
            let responses = &mut op.responses.responses;
            for (status, why) in super::auth::refusals(&method, path, has_body) {
                responses
                    .entry(status.as_u16().to_string())
                    .or_insert_with(|| error_response(why));
            }
            if has_body {
                responses
                    .entry("400".into())
                    .or_insert_with(|| error_response("Malformed request body"));
            }
            if !health && !LOCAL_OPERATIONS.contains(&path.as_str()) {
                responses.entry("503".into()).or_insert_with(|| {
                    error_response(
                        "Consensus unavailable, outcome unknown, or not available on this node",
                    )
                });
            }
            if !super::auth::is_safe(&method) && op.security.is_none() {
                op.security = Some(vec![SecurityRequirement::new(
                    "basic",
                    Vec::<String>::new(),
                )]);
            }
        }
    }
}

/// The OpenAPI document of [`super::router`].
pub fn document() -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.version = super::describe::VERSION.to_owned();
    for &(path, check) in HEALTH_PATHS {
        doc.paths.paths.insert(path.to_owned(), health_item(check));
    }
    for &(alias, documented) in ALIASES {
        if let Some(item) = doc.paths.paths.get(documented).cloned() {
            doc.paths.paths.insert(alias.to_owned(), item);
        }
    }
    // /api/v1/config answers like /config, and POST merges like PATCH.
    if let Some(mut item) = doc.paths.paths.get("/config").cloned() {
        item.post = item.patch.clone();
        doc.paths.paths.insert("/api/v1/config".to_owned(), item);
    }
    complete(&mut doc);
    doc
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub(crate) async fn serve() -> Json<Document> {
    Json(document())
}
