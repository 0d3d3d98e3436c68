//! The dynamic configuration (`/config`, `/api/v1/config`): read it, merge-patch it
//! (RFC 7386), replace it. Every change is validated, then proposed with the version it
//! was based on (compare-and-set).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rale::state::{Operation, Outcome};
use rale::{ClusterState, DynamicConfig};
use serde_json::{Map, Value};

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson};
use super::propose::propose;
use super::types::{ConfigBody, ConfigPatch, ErrorBody};

type St = State<Arc<ApiState>>;

/// Applies a JSON merge patch (RFC 7386) to `target`: objects merge key by key, `null`
/// deletes a key, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in patch {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

pub(crate) fn config_json(c: &DynamicConfig) -> Result<Value, ApiError> {
    serde_json::to_value(c).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot serialise the configuration: {e}"),
        )
    })
}

fn with_version(version: u64, body: Value) -> Response {
    let mut resp = (StatusCode::OK, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// The first key of `patch` that the configuration does not have (`a.b` for nested
/// ones), judged against `shape` (the default configuration as JSON). A merge patch
/// that resets (`null`) an unknown key would otherwise pass unnoticed. Maps such as
/// `postgresql_parameters` (empty objects in `shape`) take any key.
pub(crate) fn unknown_key(shape: &Value, patch: &Value, prefix: &str) -> Option<String> {
    let (Value::Object(known), Value::Object(given)) = (shape, patch) else {
        return None;
    };
    if known.is_empty() {
        return None;
    }
    given.iter().find_map(|(key, value)| {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match known.get(key) {
            None => Some(path),
            Some(inner) => unknown_key(inner, value, &path),
        }
    })
}

/// The version an `If-Match: "N"` header asks for.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request("If-Match must be a configuration version, e.g. \"3\"")
        })
}

/// The response header that says how `GET /config` read the configuration:
/// [`READ_LINEARIZABLE`] or [`READ_LOCAL`].
pub(crate) const READ_HEADER: &str = "x-rale-read";
/// A linearizable read through consensus: at least as new as every change acknowledged
/// before the request.
pub(crate) const READ_LINEARIZABLE: &str = "linearizable";
/// Consensus did not answer: the last configuration this node applied, possibly stale.
pub(crate) const READ_LOCAL: &str = "local";

/// The configuration as JSON, with its version in the `ETag` header and how it was read
/// in `X-Rale-Read`.
#[utoipa::path(get, path = "/config", tag = "config",
    responses((status = 200, description = "Dynamic configuration (ETag: its version)", body = Object,
        headers(
            ("ETag" = String, description = "The configuration version, e.g. \"3\""),
            ("X-Rale-Read" = String, description = "`linearizable` (read through consensus: at least as new as every change acknowledged before the request) or `local` (consensus did not answer: the last configuration this node applied, possibly stale)")))))]
pub(crate) async fn get_config(State(st): St) -> Result<Response, ApiError> {
    let (cluster, how) = match st.consensus.read().await {
        Ok(c) => (c, READ_LINEARIZABLE),
        Err(_) => (st.local_cluster(&st.snap()), READ_LOCAL),
    };
    let mut resp = with_version(cluster.config_version, config_json(&cluster.config)?);
    resp.headers_mut()
        .insert(READ_HEADER, HeaderValue::from_static(how));
    Ok(resp)
}

fn changed_keys(old: &Value, new: &Value) -> Vec<String> {
    let (Value::Object(o), Value::Object(n)) = (old, new) else {
        return Vec::new();
    };
    let mut keys: Vec<String> = o
        .keys()
        .chain(n.keys())
        .filter(|k| o.get(*k) != n.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

async fn apply(
    st: &ApiState,
    cluster: &ClusterState,
    expected_version: u64,
    new_json: Value,
    caller: Option<Extension<Caller>>,
) -> Result<Response, ApiError> {
    let (version, body) =
        change_config(st, cluster, expected_version, new_json, caller, None).await?;
    Ok(with_version(version, body))
}

/// Validates `new_json` as the whole new configuration (including every PostgreSQL
/// parameter, for the cluster's major version) and proposes it with `expected_version`
/// (compare-and-set; the change is recorded in the history with `reason`, or the list of
/// changed keys). Returns the new version and configuration; unchanged configurations are
/// not proposed.
pub(crate) async fn change_config(
    st: &ApiState,
    cluster: &ClusterState,
    expected_version: u64,
    new_json: Value,
    caller: Option<Extension<Caller>>,
    reason: Option<String>,
) -> Result<(u64, Value), ApiError> {
    if cluster.config_version != expected_version {
        return Err(version_conflict(cluster.config_version, expected_version));
    }
    let config: DynamicConfig = serde_json::from_value(new_json)
        .map_err(|e| ApiError::bad_request(format!("invalid configuration: {e}")))?;
    config
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let major = super::pg_parameters::cluster_major(&st.snap(), cluster);
    super::pg_parameters::check_parameters(major, &config.postgresql_parameters)?;
    let old_json = config_json(&cluster.config)?;
    let new_json = config_json(&config)?;
    let keys = changed_keys(&old_json, &new_json);
    if keys.is_empty() {
        return Ok((cluster.config_version, new_json));
    }
    let actor = format!(
        "api:{}",
        caller
            .map(|Extension(c)| c.0)
            .unwrap_or_else(|| "anonymous".into())
    );
    let reason = reason.unwrap_or_else(|| format!("configuration changed: {}", keys.join(", ")));
    tracing::info!(actor = %actor, reason = %reason, expected_version, "api proposes a configuration change");
    let op = Operation::SetConfig {
        expected_version: Some(expected_version),
        config,
        actor,
        reason,
    };
    match propose(st, op).await? {
        Outcome::Applied => Ok((expected_version + 1, new_json)),
        Outcome::Rejected(reason) => {
            let now = st.consensus.read().await.map_err(ApiError::consensus)?;
            if now.config_version != expected_version {
                Err(version_conflict(now.config_version, expected_version))
            } else {
                Err(ApiError::bad_request(reason))
            }
        }
    }
}

fn version_conflict(current: u64, expected: u64) -> ApiError {
    ApiError::conflict(format!(
        "the configuration changed meanwhile: version is {current}, the change was based on {expected}"
    ))
    .with("config_version", current)
    .with("expected_version", expected)
}

/// Merge-patch the configuration (RFC 7386: `null` resets a key to its default).
#[utoipa::path(patch, path = "/config", tag = "config", request_body = ConfigPatch,
    params(("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(W/)?"?[0-9]{1,18}"?$"#, description = "Expected configuration version, as the ETag of GET /config gives it (\"3\")")),
    responses(
        (status = 200, description = "The new configuration", body = Object),
        (status = 400, description = "Invalid configuration", body = ErrorBody),
        (status = 409, description = "Changed meanwhile", body = ErrorBody),
        (status = 503, description = "Consensus unavailable", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn patch_config(
    State(st): St,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    ApiJson(patch): ApiJson<Value>,
) -> Result<Response, ApiError> {
    if !patch.is_object() {
        return Err(ApiError::bad_request(
            "a configuration patch must be a JSON object",
        ));
    }
    let shape = serde_json::to_value(rale::DynamicConfig::default()).unwrap_or_default();
    if let Some(path) = unknown_key(&shape, &patch, "") {
        return Err(ApiError::bad_request(format!(
            "invalid configuration patch: unknown key {path:?}"
        )));
    }
    let wanted = if_match(&headers)?;
    let cluster = st.consensus.read().await.map_err(ApiError::consensus)?;
    let mut merged = config_json(&cluster.config)?;
    merge_patch(&mut merged, &patch);
    let expected = wanted.unwrap_or(cluster.config_version);
    apply(&st, &cluster, expected, merged, caller).await
}

/// Replace the whole configuration (missing keys take their defaults).
#[utoipa::path(put, path = "/config", tag = "config", request_body = ConfigBody,
    params(("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(W/)?"?[0-9]{1,18}"?$"#, description = "Expected configuration version, as the ETag of GET /config gives it (\"3\")")),
    responses(
        (status = 200, description = "The new configuration", body = Object),
        (status = 400, description = "Invalid configuration", body = ErrorBody),
        (status = 409, description = "Changed meanwhile", body = ErrorBody),
        (status = 503, description = "Consensus unavailable", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn put_config(
    State(st): St,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "a configuration must be a JSON object",
        ));
    }
    let wanted = if_match(&headers)?;
    let cluster = st.consensus.read().await.map_err(ApiError::consensus)?;
    let expected = wanted.unwrap_or(cluster.config_version);
    apply(&st, &cluster, expected, body, caller).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
        let mut doc = json!({"a": [1]});
        merge_patch(&mut doc, &json!({"a": {"b": 1}, "n": null}));
        assert_eq!(doc, json!({"a": {"b": 1}}));
    }
}

#[cfg(test)]
mod patch_tests {
    use super::unknown_key;
    use serde_json::json;

    #[test]
    fn unknown_keys_of_a_patch_are_found_even_when_reset() {
        let shape = serde_json::to_value(rale::DynamicConfig::default()).expect("json");
        assert_eq!(unknown_key(&shape, &json!({"lease_ttl": null}), ""), None);
        assert_eq!(
            unknown_key(&shape, &json!({"": null}), ""),
            Some(String::new())
        );
        assert_eq!(
            unknown_key(&shape, &json!({"synchronous": {"modee": null}}), ""),
            Some("synchronous.modee".into())
        );
        assert_eq!(
            unknown_key(
                &shape,
                &json!({"postgresql_parameters": {"work_mem": null}}),
                ""
            ),
            None
        );
    }
}
