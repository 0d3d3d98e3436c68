//! Bodies of the parameter and synchronous-standby endpoints that are ours (the backup
//! endpoints use [`rale_backup::api`] as it is, the parameter answers
//! [`rale_params::api`]).

use std::collections::BTreeMap;

use rale_params::api::InputValue;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/v1/parameter/validate`: one setting (`name` + `value`) or several
/// (`parameters`), or both.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterValidateRequest {
    /// PostgreSQL major (13..17); the cluster's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// One parameter's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its value: text as in `postgresql.conf`, a number or a boolean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<InputValue>,
    /// Several settings, name → value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, InputValue>,
}

/// The synchronous set recorded in consensus (what failover honours).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordedSyncView {
    /// Lease epoch of the primary that recorded it.
    pub epoch: u64,
    /// Members whose acknowledgement counts.
    pub standbys: Vec<String>,
    /// How many of them acknowledge each commit (0: asynchronous).
    pub quorum: u32,
    /// Recorded by the current primary (same epoch); a stale set promises nothing.
    pub current: bool,
}

/// One standby as synchronous replication sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncStandbyView {
    /// Member name (its `application_name`).
    pub name: String,
    /// `sync`, `quorum` or `async`, from the recorded set (Patroni's rule).
    pub sync_state: String,
    /// `pg_stat_replication.sync_state` on the primary, when this node is the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_sync_state: Option<String>,
    /// Pinned into the set by configuration (`synchronous.pinned`).
    pub pinned: bool,
    /// Tagged `nosync`: never synchronous.
    pub nosync: bool,
    /// PostgreSQL runs.
    pub running: bool,
    /// Streaming from the primary.
    pub streaming: bool,
    /// Bytes behind the primary, when known.
    pub lag_bytes: Option<u64>,
}

/// `GET /api/v1/sync-standbys/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncStandbysStatus {
    /// `off`, `on` (`FIRST n`) or `quorum` (`ANY n`).
    pub mode: String,
    /// Wanted number of synchronous standbys.
    pub node_count: u32,
    /// Never fall back to asynchronous.
    pub strict: bool,
    /// `synchronous_commit`.
    pub commit_level: String,
    /// Members pinned into the set.
    pub pinned: Vec<String>,
    /// Members above this flush lag are not chosen.
    pub maximum_lag_on_syncnode_bytes: Option<u64>,
    /// `synchronous_standby_names` PostgreSQL enforces on the primary; `None` when unknown.
    pub enforced_names: Option<String>,
    /// Where `enforced_names` comes from: `local_primary`, or `unknown` on a replica (the
    /// published member status does not carry it).
    pub enforced_source: String,
    /// The set recorded in consensus.
    pub recorded: RecordedSyncView,
    /// Every member but the primary.
    pub standbys: Vec<SyncStandbyView>,
    /// The primary, if any.
    pub primary: Option<String>,
    /// Dynamic configuration version.
    pub config_version: u64,
}

/// `POST /api/v1/sync-standbys/add` and `/remove`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncNodeRequest {
    /// Member name.
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,63}$")]
    pub node: String,
}

/// `POST /api/v1/sync-standbys/any-n`: quorum commit, `ANY n`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncAnyNRequest {
    /// Acknowledgements each commit waits for.
    pub n: u32,
    /// Not supported (refused when given): the synchronous configuration has no lower
    /// bound apart from `strict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// Not supported (refused when given): every eligible standby is listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

/// `POST /api/v1/sync-standbys/count`: `FIRST n` (or `ANY n` when already in quorum mode).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncCountRequest {
    /// Number of synchronous standbys.
    pub n: u32,
}

/// `POST /api/v1/sync-standbys/commit-level`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncCommitLevelRequest {
    /// `off`, `local`, `remote_write`, `on` or `remote_apply`.
    pub level: String,
}

/// Answer to a synchronous-standby change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SyncChangeResponse {
    /// What changed, in words.
    pub message: String,
    /// The configuration version after the change.
    pub config_version: u64,
    /// The synchronous configuration now in force.
    #[schema(value_type = Object)]
    pub synchronous: rale_sync::SyncConfig,
}

/// Schemas of the request bodies whose rules go beyond their fields' types: the
/// server's checks written as JSON Schema (OpenAPI 3.1), so that a client generating
/// requests from the document sends only what the server accepts. `strict_schemas_match`
/// below feeds each schema's accepted and refused examples to the same deserializer and
/// checks the handlers use.
mod strict {
    use serde_json::json;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;

    /// Marks the placeholder used if a schema of this file failed to parse (a test
    /// checks that none does).
    pub(super) const BROKEN: &str = "schema unavailable";

    pub(super) fn from_json(v: serde_json::Value) -> RefOr<Schema> {
        match serde_json::from_value::<Schema>(v.clone()) {
            Ok(s) => RefOr::T(s),
            Err(e) => {
                tracing::error!(error = %e, schema = %v, "a request schema does not parse");
                from_json_or_empty(json!({"type": "object", "description": BROKEN}))
            }
        }
    }

    fn from_json_or_empty(v: serde_json::Value) -> RefOr<Schema> {
        RefOr::T(serde_json::from_value::<Schema>(v).unwrap_or_default())
    }

    fn input_value() -> serde_json::Value {
        json!({"oneOf": [
            {"type": "string"}, {"type": "number"}, {"type": "boolean"}
        ], "description": "Text as in postgresql.conf, a number or a boolean"})
    }

    fn version() -> serde_json::Value {
        json!({"type": ["integer", "null"], "minimum": 13, "maximum": 17,
               "description": "PostgreSQL major; the cluster's when absent or null"})
    }

    impl utoipa::PartialSchema for super::ParameterValidateRequest {
        fn schema() -> RefOr<Schema> {
            from_json(json!({
                "description": "`POST /api/v1/parameter/validate`: one setting (`name` and `value`) or several (`parameters`, at least one)",
                "anyOf": [
                    {"type": "object", "additionalProperties": false,
                     "required": ["name", "value"],
                     "properties": {
                        "version": version(),
                        "name": {"type": "string", "description": "One parameter's name"},
                        "value": input_value(),
                        "parameters": {"type": "object", "additionalProperties": input_value()}}},
                    {"type": "object", "additionalProperties": false,
                     "required": ["parameters"],
                     "properties": {
                        "version": version(),
                        "parameters": {"type": "object", "minProperties": 1,
                                       "additionalProperties": input_value(),
                                       "description": "Several settings, name → value"}}}
                ]
            }))
        }
    }
    impl utoipa::ToSchema for super::ParameterValidateRequest {}

    impl utoipa::PartialSchema for super::SyncAnyNRequest {
        fn schema() -> RefOr<Schema> {
            from_json(json!({
                "type": "object", "additionalProperties": false, "required": ["n"],
                "description": "`POST /api/v1/sync-standbys/any-n`: quorum commit, `ANY n` (Patroni's `min`/`max` are refused: every eligible standby is listed)",
                "properties": {"n": {"type": "integer", "minimum": 1, "maximum": rale_sync::choose::MAX_WANTED,
                                     "description": "Acknowledgements each commit waits for"}}
            }))
        }
    }
    impl utoipa::ToSchema for super::SyncAnyNRequest {}

    impl utoipa::PartialSchema for super::SyncCountRequest {
        fn schema() -> RefOr<Schema> {
            from_json(json!({
                "type": "object", "additionalProperties": false, "required": ["n"],
                "description": "`POST /api/v1/sync-standbys/count`: `FIRST n` (or `ANY n` in quorum mode)",
                "properties": {"n": {"type": "integer", "minimum": 1, "maximum": rale_sync::choose::MAX_WANTED,
                                     "description": "Number of synchronous standbys"}}
            }))
        }
    }
    impl utoipa::ToSchema for super::SyncCountRequest {}

    impl utoipa::PartialSchema for super::SyncCommitLevelRequest {
        fn schema() -> RefOr<Schema> {
            from_json(json!({
                "type": "object", "additionalProperties": false, "required": ["level"],
                "description": "`POST /api/v1/sync-standbys/commit-level`",
                "properties": {"level": {"type": "string",
                    "enum": ["off", "local", "remote_write", "on", "remote_apply"],
                    "description": "`synchronous_commit` for the cluster"}}
            }))
        }
    }
    impl utoipa::ToSchema for super::SyncCommitLevelRequest {}

    impl utoipa::PartialSchema for super::OptimizeBody {
        fn schema() -> RefOr<Schema> {
            let u32_max = u64::from(u32::MAX);
            from_json(json!({
                "type": "object", "additionalProperties": false,
                "required": ["total_memory_bytes", "cpu_count", "storage", "workload"],
                "description": "`POST /api/v1/parameter/optimize` (rale_params::OptimizeRequest)",
                "properties": {
                    "version": version(),
                    "total_memory_bytes": {"type": "integer", "minimum": 268_435_456_u64,
                        "maximum": u64::MAX, "description": "RAM available to PostgreSQL, at least 256 MiB"},
                    "cpu_count": {"type": "integer", "minimum": 1, "maximum": u32_max},
                    "storage": {"type": "string", "enum": ["ssd", "hdd", "network"]},
                    "workload": {"type": "string", "enum": ["oltp", "web", "data_warehouse", "dw", "mixed"]},
                    "max_connections": {"type": ["integer", "null"], "minimum": 1, "maximum": u32_max},
                    "standby_count": {"type": ["integer", "null"], "minimum": 0, "maximum": u32_max}
                }
            }))
        }
    }
    impl utoipa::ToSchema for super::OptimizeBody {}

    fn member_name(what: &str) -> serde_json::Value {
        json!({"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,63}$", "description": what})
    }

    const ALIASES: &str = "`from` is accepted for `leader`, `to` and `target` for `candidate` \
        (give one spelling of each)";

    impl utoipa::PartialSchema for super::SwitchoverBody {
        fn schema() -> RefOr<Schema> {
            from_json(json!({
                "type": "object", "additionalProperties": false, "required": ["leader"],
                "description": format!("`POST /switchover` (Patroni's fields). {ALIASES}."),
                "properties": {
                    "leader": member_name("The current primary"),
                    "candidate": {"oneOf": [member_name("The member to promote; the best one when absent"), {"type": "null"}]},
                    "scheduled_at": {"oneOf": [{"type": "string", "format": "date-time",
                        "description": "Not before this time (RFC 3339, with a time zone)"}, {"type": "null"}]},
                    "force": {"type": "boolean", "description": "Accept a candidate that is not streaming right now"}
                }
            }))
        }
    }
    impl utoipa::ToSchema for super::SwitchoverBody {}

    impl utoipa::PartialSchema for super::FailoverBody {
        fn schema() -> RefOr<Schema> {
            from_json(json!({
                "type": "object", "additionalProperties": false, "required": ["candidate"],
                "description": format!("`POST /failover` (Patroni's fields; a failover cannot be scheduled). {ALIASES}."),
                "properties": {
                    "candidate": member_name("The member to promote"),
                    "leader": {"oneOf": [member_name("The primary expected to be replaced"), {"type": "null"}]},
                    "force": {"type": "boolean", "description": "Accept a candidate that is not streaming right now"}
                }
            }))
        }
    }
    impl utoipa::ToSchema for super::FailoverBody {}

    /// Whether the configuration accepts `null` at `path` (an `Option` field), asked of
    /// the type itself.
    fn accepts_null(path: &[String]) -> bool {
        let mut value = serde_json::Value::Null;
        for key in path.iter().rev() {
            let mut o = serde_json::Map::new();
            o.insert(key.clone(), value);
            value = serde_json::Value::Object(o);
        }
        serde_json::from_value::<rale::DynamicConfig>(value).is_ok()
    }

    /// The schema of a configuration value shaped like `default` at `path`: objects list
    /// their keys (unknown keys are refused, as the configuration's types do), empty maps
    /// take text values, `null` is allowed where the type accepts it (or everywhere, for
    /// a merge patch, where it resets a key).
    fn like(default: &serde_json::Value, path: &[String], patch: bool) -> serde_json::Value {
        let kind = json!({"type": "string", "enum": ["physical", "logical"]});
        let text = json!({"type": "string", "minLength": 1, "maxLength": 63});
        let plain = match (path.first().map(String::as_str), path.len(), default) {
            // Maps and lists of objects, whose shape the (empty) default cannot show.
            (Some("slots"), 1, _) => json!({
                "type": "object",
                "description": "Permanent replication slots by name ([a-z0-9_], 1-63)",
                "additionalProperties": {
                    "type": "object", "additionalProperties": false, "required": ["type"],
                    "properties": {"type": kind, "plugin": text, "database": text}
                }
            }),
            (Some("ignore_slots"), 1, _) => json!({
                "type": "array",
                "description": "Slots RALE leaves alone: each entry matches when all the fields it gives match",
                "items": {
                    "type": "object", "additionalProperties": false, "minProperties": 1,
                    "properties": {"name": text, "type": kind, "plugin": text, "database": text}
                }
            }),
            // Unset by default (its schema already admits null): not wrapped again, or
            // `oneOf` would match null twice.
            (_, _, serde_json::Value::Null) => return plain_like(default, path, patch),
            (_, _, default) => plain_like(default, path, patch),
        };
        if !path.is_empty() && (patch || accepts_null(path)) {
            json!({"oneOf": [plain, {"type": "null"}]})
        } else {
            plain
        }
    }

    fn plain_like(default: &serde_json::Value, path: &[String], patch: bool) -> serde_json::Value {
        match default {
            serde_json::Value::Bool(_) => json!({"type": "boolean"}),
            serde_json::Value::Number(n) if n.is_u64() => json!({"type": "integer", "minimum": 0}),
            serde_json::Value::Number(_) => json!({"type": "number"}),
            serde_json::Value::String(_) => json!({"type": "string"}),
            serde_json::Value::Array(_) => json!({"type": "array"}),
            serde_json::Value::Object(fields) if fields.is_empty() => {
                json!({"type": "object", "additionalProperties": {"type": "string"}})
            }
            serde_json::Value::Object(fields) => {
                let properties: serde_json::Map<String, serde_json::Value> = fields
                    .iter()
                    .map(|(k, v)| {
                        let mut inner = path.to_vec();
                        inner.push(k.clone());
                        (k.clone(), like(v, &inner, patch))
                    })
                    .collect();
                json!({"type": "object", "additionalProperties": false, "properties": properties})
            }
            // An optional setting that is unset by default: its type is not visible in
            // the default; any value, checked by the server.
            serde_json::Value::Null => {
                json!({"type": ["string", "number", "boolean", "object", "array", "null"]})
            }
        }
    }

    fn config_schema(patch: bool, what: &str) -> RefOr<Schema> {
        let default = serde_json::to_value(rale::DynamicConfig::default()).unwrap_or_default();
        let mut schema = like(&default, &[], patch);
        if let Some(o) = schema.as_object_mut() {
            o.insert("description".into(), json!(what));
        }
        from_json(schema)
    }

    impl utoipa::PartialSchema for super::ConfigBody {
        fn schema() -> RefOr<Schema> {
            config_schema(
                false,
                "The whole dynamic configuration (`PUT`): keys left out take their defaults. Durations are text (`10s`, `500ms`); cross-field rules (e.g. `renew_interval` below `lease_ttl`) and PostgreSQL parameter values are checked by the server (400 with the reason)",
            )
        }
    }
    impl utoipa::ToSchema for super::ConfigBody {}

    impl utoipa::PartialSchema for super::ConfigPatch {
        fn schema() -> RefOr<Schema> {
            config_schema(
                true,
                "A JSON merge patch (RFC 7386) of the dynamic configuration: `null` resets a key to its default. The result is checked as a whole, like `PUT`",
            )
        }
    }
    impl utoipa::ToSchema for super::ConfigPatch {}

    fn backup_kind() -> serde_json::Value {
        json!({"type": "string", "enum": ["full", "differential", "incremental"],
               "description": "Backup kind (the tool may support fewer: 400 then)"})
    }

    impl utoipa::PartialSchema for super::StartBackupBody {
        fn schema() -> RefOr<Schema> {
            from_json(json!({
                "type": "object", "additionalProperties": false,
                "description": "`POST /api/v1/backup/start` (rale_backup::api::StartBackupRequest)",
                "properties": {"kind": backup_kind()}
            }))
        }
    }
    impl utoipa::ToSchema for super::StartBackupBody {}

    impl utoipa::PartialSchema for super::ScheduleBody {
        fn schema() -> RefOr<Schema> {
            from_json(json!({
                "type": "object", "additionalProperties": false,
                "description": "`POST /api/v1/backup/schedule` (rale_backup::api::ScheduleRequest): the schedules replace the node's; cron syntax is checked by the server (400 with the reason)",
                "properties": {
                    "schedules": {"type": "array", "items": {
                        "type": "object", "additionalProperties": false,
                        "required": ["name", "kind", "cron"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "kind": backup_kind(),
                            "cron": {"type": "string", "description": "5 fields, or 6 with seconds first (`0 30 2 * * *`), UTC"},
                            "placement": {"type": "string", "enum": ["primary", "prefer_replica", "any_replica"]}
                        }
                    }},
                    "retention": {"oneOf": [{"type": "null"}, {
                        "type": "object", "additionalProperties": false,
                        "properties": {
                            "full_count": {"type": ["integer", "null"], "minimum": 0, "maximum": u32::MAX},
                            "differential_count": {"type": ["integer", "null"], "minimum": 0, "maximum": u32::MAX},
                            "max_age": {"type": ["string", "null"], "description": "A duration: `7d`, `36h`"}
                        }
                    }]}
                }
            }))
        }
    }
    impl utoipa::ToSchema for super::ScheduleBody {}

    impl utoipa::PartialSchema for super::RestoreBody {
        fn schema() -> RefOr<Schema> {
            let target = json!({"oneOf": [
                {"type": "object", "additionalProperties": false, "required": ["type"],
                 "properties": {"type": {"type": "string", "enum": ["latest", "immediate"]}}},
                {"type": "object", "additionalProperties": false, "required": ["type", "value"],
                 "properties": {"type": {"type": "string", "enum": ["time"]}, "value": {"type": "string", "format": "date-time"}}},
                {"type": "object", "additionalProperties": false, "required": ["type", "value"],
                 "properties": {"type": {"type": "string", "enum": ["lsn"]}, "value": {"type": "string", "pattern": "^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$"}}},
                {"type": "object", "additionalProperties": false, "required": ["type", "value"],
                 "properties": {"type": {"type": "string", "enum": ["name"]}, "value": {"type": "string"}}}
            ]});
            from_json(json!({
                "type": "object", "additionalProperties": false, "required": ["data_dir", "target"],
                "description": "`POST /api/v1/backup/restore` (rale_backup::RestoreRequest): restores into `data_dir`, which must not be this node's live data directory",
                "properties": {
                    "data_dir": {"type": "string", "minLength": 1},
                    "backup_id": {"type": ["string", "null"]},
                    "target": target,
                    "target_action": {"type": "string", "enum": ["promote", "pause", "shutdown"]},
                    "standby": {"oneOf": [{"type": "null"}, {"type": "object",
                        "required": ["primary_conninfo"],
                        "properties": {"primary_conninfo": {"type": "string"},
                                       "primary_slot_name": {"type": ["string", "null"]}}}]},
                    "disable_archiving": {"type": "boolean"}
                }
            }))
        }
    }
    impl utoipa::ToSchema for super::RestoreBody {}
}

/// The body of `POST /api/v1/backup/start`, for the OpenAPI document.
pub struct StartBackupBody;

/// The body of `POST /api/v1/backup/schedule`, for the OpenAPI document.
pub struct ScheduleBody;

/// The body of `POST /api/v1/backup/restore`, for the OpenAPI document.
pub struct RestoreBody;

/// The body of `PUT /config`, for the OpenAPI document: the dynamic configuration, its
/// schema derived from [`rale::DynamicConfig`]'s own defaults so that it follows the type.
pub struct ConfigBody;

/// The body of `PATCH /config`, for the OpenAPI document (a merge patch of [`ConfigBody`]).
pub struct ConfigPatch;

/// The body of `POST /switchover`, for the OpenAPI document (read as [`super::SwitchoverRequest`]).
pub struct SwitchoverBody;

/// The body of `POST /failover`, for the OpenAPI document (read as [`super::SwitchoverRequest`]).
pub struct FailoverBody;

/// The body of `POST /api/v1/parameter/optimize`, for the OpenAPI document: the handler
/// reads it as [`rale_params::OptimizeRequest`] (with `version` defaulting to the
/// cluster's).
pub struct OptimizeBody;

#[cfg(test)]
mod schema_tests {
    use super::*;
    use utoipa::PartialSchema;

    /// Every hand-written request schema parses as an OpenAPI schema.
    #[test]
    fn request_schemas_parse() {
        let all = [
            (
                "ParameterValidateRequest",
                ParameterValidateRequest::schema(),
            ),
            ("SyncAnyNRequest", SyncAnyNRequest::schema()),
            ("SyncCountRequest", SyncCountRequest::schema()),
            ("SyncCommitLevelRequest", SyncCommitLevelRequest::schema()),
            ("OptimizeBody", OptimizeBody::schema()),
            ("SwitchoverBody", SwitchoverBody::schema()),
            ("FailoverBody", FailoverBody::schema()),
            ("ConfigBody", ConfigBody::schema()),
            ("ConfigPatch", ConfigPatch::schema()),
            ("StartBackupBody", StartBackupBody::schema()),
            ("ScheduleBody", ScheduleBody::schema()),
            ("RestoreBody", RestoreBody::schema()),
        ];
        for (name, schema) in all {
            let text = serde_json::to_string(&schema).expect("serializes");
            assert!(!text.contains(strict::BROKEN), "{name}: {text}");
        }
    }

    /// The configuration schema follows the type: every key of the default configuration
    /// is a property, and a patch accepts `null` for each.
    #[test]
    fn config_schema_lists_every_key() {
        let defaults = serde_json::to_value(rale::DynamicConfig::default()).expect("serializes");
        let body = serde_json::to_value(ConfigBody::schema()).expect("serializes");
        let patch = serde_json::to_value(ConfigPatch::schema()).expect("serializes");
        for key in defaults.as_object().expect("an object").keys() {
            assert!(
                body["properties"].get(key).is_some(),
                "{key} missing: {body}"
            );
            assert!(
                patch["properties"][key].to_string().contains("null"),
                "{key}: {patch}"
            );
        }
        assert_eq!(body["additionalProperties"], serde_json::Value::Bool(false));
    }
}
