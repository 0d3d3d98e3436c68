//! PostgreSQL parameters (`/api/v1/parameter/*`): validation, the catalog and tuning
//! recommendations, thin wrappers around [`rale_params`]; and the check that refuses a
//! configuration change carrying an invalid `postgresql_parameters` entry.
//!
//! The PostgreSQL major version, when a request does not give one, is the cluster's: this
//! node's `server_version_num / 10000`, else the primary's as published in the cluster
//! state, else 15. A version outside the catalog (13..=17) is clamped to the nearest one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use rale::ClusterState;
use rale_params::api::{InfoResponse, ListQuery, ListResponse, ValidateRequest, ValidateResponse};
use rale_params::{OptimizeRequest, OptimizeResponse, PgMajor, Verdict};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiQuery};
use super::types::{ErrorBody, OptimizeBody, ParameterValidateRequest};
use crate::snapshot::NodeSnapshot;

type St = State<Arc<ApiState>>;

fn major_of(server_version_num: u32) -> Option<PgMajor> {
    if server_version_num == 0 {
        return None;
    }
    let major = (server_version_num / 10_000).clamp(PgMajor::MIN.get(), PgMajor::MAX.get());
    PgMajor::new(major).ok()
}

/// The PostgreSQL major the cluster runs: this node's, else the primary's (as published),
/// else any member's, else 15.
pub(crate) fn cluster_major(snap: &NodeSnapshot, cluster: &ClusterState) -> PgMajor {
    major_of(snap.pg.server_version_num)
        .or_else(|| {
            cluster
                .holder()
                .and_then(|h| cluster.members.get(h))
                .and_then(|m| major_of(m.server_version_num))
        })
        .or_else(|| {
            cluster
                .members
                .values()
                .find_map(|m| major_of(m.server_version_num))
        })
        .unwrap_or(PgMajor::BASE)
}

fn default_major(st: &ApiState) -> PgMajor {
    let snap = st.snap();
    let cluster = st.local_cluster(&snap);
    cluster_major(&snap, &cluster)
}

/// Refuses (400) a set of `postgresql_parameters` with any entry `major` rejects; the
/// message names each entry and why, `details.parameters` lists them machine-readably.
pub(crate) fn check_parameters(
    major: PgMajor,
    parameters: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let mut reasons = Vec::new();
    let mut details = Vec::new();
    for (name, value) in parameters {
        if let Verdict::Rejected(r) = rale_params::validate(major, name, value) {
            reasons.push(format!("{name} = '{value}': {}", r.message));
            details.push(serde_json::json!({
                "name": name,
                "value": value,
                "reason": r.reason,
                "message": r.message,
            }));
        }
    }
    if reasons.is_empty() {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "invalid PostgreSQL parameters for PostgreSQL {major}: {}",
        reasons.join("; ")
    ))
    .with("version", major.get())
    .with("parameters", details))
}

/// Parses one query value with the serde spelling of `T` (e.g. `postmaster`, `bool`).
fn query_value<T: DeserializeOwned>(
    q: &HashMap<String, String>,
    key: &str,
) -> Result<Option<T>, ApiError> {
    let Some(text) = q.get(key) else {
        return Ok(None);
    };
    let value = match key {
        "version" => Value::from(text.trim().parse::<u32>().map_err(|_| {
            ApiError::bad_request(format!(
                "version must be a PostgreSQL major (13..17), not {text:?}"
            ))
        })?),
        _ => Value::String(text.clone()),
    };
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("invalid {key} {text:?}: {e}")))
}

fn version_param(q: &HashMap<String, String>, st: &ApiState) -> Result<PgMajor, ApiError> {
    Ok(query_value::<PgMajor>(q, "version")?.unwrap_or_else(|| default_major(st)))
}

/// Validate settings the way PostgreSQL parses them: one (`name`, `value`) or many
/// (`parameters`). The answer is 200 with `valid` false and each reason when a value is
/// refused; 400 only for a malformed request.
#[utoipa::path(post, path = "/api/v1/parameter/validate", tag = "parameters",
    request_body = ParameterValidateRequest,
    responses(
        (status = 200, description = "Verdicts (rale_params::api::ValidateResponse)", body = Object),
        (status = 400, description = "Malformed request", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn validate(
    State(st): St,
    ApiJson(req): ApiJson<ParameterValidateRequest>,
) -> Result<Json<ValidateResponse>, ApiError> {
    let mut parameters = req.parameters;
    match (req.name, req.value) {
        (Some(name), Some(value)) => {
            parameters.insert(name, value);
        }
        (Some(_), None) => return Err(ApiError::bad_request("\"name\" needs a \"value\"")),
        (None, Some(_)) => return Err(ApiError::bad_request("\"value\" needs a \"name\"")),
        (None, None) => {}
    }
    if parameters.is_empty() {
        return Err(ApiError::bad_request(
            "give \"name\" and \"value\", or \"parameters\": {name: value}",
        ));
    }
    let version = match req.version {
        Some(v) => PgMajor::new(v).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => default_major(&st),
    };
    Ok(Json(rale_params::api::validate_request(&ValidateRequest {
        version,
        parameters,
    })))
}

/// The parameter catalog of a major, optionally filtered by `context`, `type` and a
/// name `search`.
#[utoipa::path(get, path = "/api/v1/parameter/list", tag = "parameters",
    params(
        ("version" = Option<u32>, Query, minimum = 13, maximum = 17, description = "PostgreSQL major (default: the cluster's)"),
        ("context" = Option<ContextName>, Query, description = "When a parameter can be changed (`pg_settings.context`)"),
        ("type" = Option<TypeName>, Query, description = "`pg_settings.vartype`"),
        ("search" = Option<String>, Query, description = "Names containing this text")),
    responses(
        (status = 200, description = "Parameters (rale_params::api::ListResponse)", body = Object),
        (status = 400, description = "Bad filter", body = ErrorBody)))]
pub(crate) async fn list(
    State(st): St,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Result<Json<ListResponse>, ApiError> {
    let query = ListQuery {
        version: Some(version_param(&q, &st)?),
        context: query_value(&q, "context")?,
        param_type: query_value(&q, "type")?,
        search: q.get("search").cloned(),
    };
    Ok(Json(rale_params::api::list(&query)))
}

/// The `?context=` values: [`rale_params::Context`] as its serde names (documentation
/// only; a test checks that each parses).
#[derive(Clone, Copy, Debug, serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // documentation of the query values; built only by the test below
#[serde(rename_all = "kebab-case")]
pub(crate) enum ContextName {
    /// `internal`
    Internal,
    /// `postmaster`
    Postmaster,
    /// `sighup`
    Sighup,
    /// `superuser-backend`
    SuperuserBackend,
    /// `backend`
    Backend,
    /// `superuser`
    Superuser,
    /// `user`
    User,
}

/// The `?type=` values: [`rale_params::ParamType`] as its serde names.
#[derive(Clone, Copy, Debug, serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // documentation of the query values; built only by the test below
#[serde(rename_all = "lowercase")]
pub(crate) enum TypeName {
    /// `bool`
    Bool,
    /// `integer`
    Integer,
    /// `real`
    Real,
    /// `string`
    String,
    /// `enum`
    Enum,
}

/// A well-formed configuration parameter name (PostgreSQL identifiers, with `.` for
/// extension parameters); anything else is a bad request rather than an unknown name.
fn is_parameter_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$'))
}

/// One parameter's definition; 400 for a malformed name, 404 with the closest names for an unknown one.
#[utoipa::path(get, path = "/api/v1/parameter/info/{name}", tag = "parameters",
    params(
        ("name" = String, Path, pattern = r"^[A-Za-z0-9_.$]{1,128}$", description = "Parameter name"),
        ("version" = Option<u32>, Query, minimum = 13, maximum = 17, description = "PostgreSQL major (default: the cluster's)")),
    responses(
        (status = 200, description = "Definition (rale_params::api::InfoResponse)", body = Object),
        (status = 400, description = "Malformed name or version", body = ErrorBody),
        (status = 404, description = "Unknown, or not in this major (with suggestions)", body = ErrorBody)))]
pub(crate) async fn info(
    State(st): St,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Result<Json<InfoResponse>, ApiError> {
    let version = version_param(&q, &st)?;
    if !is_parameter_name(&name) {
        return Err(ApiError::bad_request(format!(
            "{name:?} is not a parameter name (letters, digits, _, . and $)"
        )));
    }
    rale_params::api::info(version, &name)
        .map(Json)
        .map_err(|r| {
            let mut e = ApiError::not_found(r.message.clone()).with("version", version.get());
            if let Ok(reason) = serde_json::to_value(&r.reason) {
                if let Some(s) = reason.get("suggestions") {
                    e = e.with("suggestions", s.clone());
                }
                e = e.with("reason", reason);
            }
            e
        })
}

/// Recommended settings for the machine and workload (`version` defaults to the
/// cluster's).
#[utoipa::path(post, path = "/api/v1/parameter/optimize", tag = "parameters",
    request_body = OptimizeBody,
    responses(
        (status = 200, description = "Recommendations (rale_params::OptimizeResponse)", body = Object),
        (status = 400, description = "Impossible or malformed request", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn optimize(
    State(st): St,
    ApiJson(mut body): ApiJson<Value>,
) -> Result<Json<OptimizeResponse>, ApiError> {
    let Value::Object(fields) = &mut body else {
        return Err(ApiError::bad_request("the request must be a JSON object"));
    };
    if fields.get("version").is_none_or(Value::is_null) {
        fields.insert("version".into(), Value::from(default_major(&st).get()));
    }
    let req: OptimizeRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid optimize request: {e}")))?;
    rale_params::optimize(&req)
        .map(Json)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_from_server_version_num() {
        assert_eq!(major_of(150018).map(PgMajor::get), Some(15));
        assert_eq!(major_of(0), None);
        assert_eq!(major_of(120005).map(PgMajor::get), Some(13), "clamped");
        assert_eq!(major_of(180000).map(PgMajor::get), Some(17), "clamped");
    }

    #[test]
    fn check_lists_every_reason() {
        let mut p = BTreeMap::new();
        p.insert("work_mem".to_owned(), "64MB".to_owned());
        p.insert("shared_bufers".to_owned(), "1GB".to_owned());
        p.insert("max_connections".to_owned(), "lots".to_owned());
        let e = check_parameters(PgMajor::BASE, &p).expect_err("two bad entries");
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(e.message.contains("shared_bufers"), "{}", e.message);
        assert!(
            e.message.contains("shared_buffers"),
            "suggestion: {}",
            e.message
        );
        assert!(e.message.contains("max_connections"), "{}", e.message);
        assert!(!e.message.contains("work_mem"), "{}", e.message);
        p.remove("shared_bufers");
        p.remove("max_connections");
        assert!(check_parameters(PgMajor::BASE, &p).is_ok());
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;

    /// The documented filter values are exactly what the catalog's types accept.
    #[test]
    fn documented_filter_values_parse() {
        use ContextName::*;
        for c in [
            Internal,
            Postmaster,
            Sighup,
            SuperuserBackend,
            Backend,
            Superuser,
            User,
        ] {
            let v = serde_json::to_value(c).expect("serializes");
            serde_json::from_value::<rale_params::Context>(v.clone())
                .unwrap_or_else(|e| panic!("{v}: {e}"));
        }
        for t in [
            TypeName::Bool,
            TypeName::Integer,
            TypeName::Real,
            TypeName::String,
            TypeName::Enum,
        ] {
            let v = serde_json::to_value(t).expect("serializes");
            serde_json::from_value::<rale_params::ParamType>(v.clone())
                .unwrap_or_else(|e| panic!("{v}: {e}"));
        }
        assert_eq!(rale_params::PgMajor::MIN.get(), 13);
        assert_eq!(rale_params::PgMajor::MAX.get(), 17);
    }
}
