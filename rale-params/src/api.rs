//! Request and response types for the daemon's parameter endpoints. All are serde types that
//! can be returned as JSON directly:
//!
//! | endpoint | function |
//! | --- | --- |
//! | `POST /api/v1/parameter/validate`, `PATCH /config` | [`validate_request`] |
//! | `GET /api/v1/parameter/list` | [`list`] |
//! | `GET /api/v1/parameter/info/{name}` | [`info`] |
//! | `POST /api/v1/parameter/optimize` | [`crate::optimize()`] |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::PgMajor;
use crate::catalog::{ParamDef, catalog};
use crate::types::{Apply, Context, ParamType, Unit};
use crate::validate::{Reason, Rejection, Verdict, validate};

/// A value as it arrives in JSON: Patroni-style configs send numbers and booleans as well
/// as strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputValue {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Integer(i64),
    /// A number with a fraction.
    Real(f64),
    /// Text, as in `postgresql.conf` (`"128MB"`, `"'quoted'"`).
    Text(String),
}

impl InputValue {
    /// The value as configuration text (`true` -> `on`).
    pub fn to_text(&self) -> String {
        match self {
            InputValue::Bool(b) => if *b { "on" } else { "off" }.to_string(),
            InputValue::Integer(i) => i.to_string(),
            InputValue::Real(r) => crate::value::format_real_exact(*r),
            InputValue::Text(t) => t.clone(),
        }
    }
}

/// Body of `POST /api/v1/parameter/validate` (also what `PATCH /config` validates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidateRequest {
    /// PostgreSQL major of the server the settings are for.
    pub version: PgMajor,
    /// Name -> value.
    pub parameters: BTreeMap<String, InputValue>,
}

/// The verdict for one parameter of a [`ValidateRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingResult {
    /// The name as given.
    pub name: String,
    /// The value as configuration text.
    pub input: String,
    /// Accepted (normalized) or rejected (with the reason).
    pub verdict: Verdict,
}

/// Response to a [`ValidateRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidateResponse {
    /// The major validated against.
    pub version: PgMajor,
    /// True when every setting is accepted.
    pub valid: bool,
    /// One result per parameter, in name order.
    pub results: Vec<SettingResult>,
    /// Accepted settings that need a restart to apply.
    pub restart_required: Vec<String>,
}

/// Validates every setting of a request.
pub fn validate_request(req: &ValidateRequest) -> ValidateResponse {
    let results: Vec<SettingResult> = req
        .parameters
        .iter()
        .map(|(name, v)| {
            let input = v.to_text();
            let verdict = validate(req.version, name, &input);
            SettingResult {
                name: name.clone(),
                input,
                verdict,
            }
        })
        .collect();
    let restart_required = results
        .iter()
        .filter_map(|r| r.verdict.accepted())
        .filter(|a| a.apply == Apply::Restart)
        .map(|a| a.name.clone())
        .collect();
    ValidateResponse {
        version: req.version,
        valid: results.iter().all(|r| r.verdict.is_ok()),
        results,
        restart_required,
    }
}

/// Query of `GET /api/v1/parameter/list` (all fields optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListQuery {
    /// Major (default 15).
    #[serde(default)]
    pub version: Option<PgMajor>,
    /// Only parameters with this context.
    #[serde(default)]
    pub context: Option<Context>,
    /// Only parameters of this type.
    #[serde(default, rename = "type")]
    pub param_type: Option<ParamType>,
    /// Only names containing this text (case-insensitive).
    #[serde(default)]
    pub search: Option<String>,
}

/// One line of the parameter list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSummary {
    /// Name.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub param_type: ParamType,
    /// Base unit.
    pub unit: Option<Unit>,
    /// Context.
    pub context: Context,
    /// Whether changing it needs a restart.
    pub restart_required: bool,
    /// One-line description.
    pub description: String,
}

/// Response of `GET /api/v1/parameter/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListResponse {
    /// The major listed.
    pub version: PgMajor,
    /// Number of parameters returned.
    pub count: usize,
    /// The parameters, by name.
    pub parameters: Vec<ParamSummary>,
}

/// Lists the catalog for a major, filtered.
pub fn list(q: &ListQuery) -> ListResponse {
    let version = q.version.unwrap_or(PgMajor::BASE);
    let needle = q.search.as_deref().map(str::to_ascii_lowercase);
    let parameters: Vec<ParamSummary> = catalog()
        .params(version)
        .filter(|d| q.context.is_none_or(|c| c == d.context))
        .filter(|d| q.param_type.is_none_or(|t| t == d.param_type))
        .filter(|d| {
            needle
                .as_deref()
                .is_none_or(|n| d.name.to_ascii_lowercase().contains(n))
        })
        .map(|d| ParamSummary {
            name: d.name.clone(),
            param_type: d.param_type,
            unit: d.unit,
            context: d.context,
            restart_required: d.context == Context::Postmaster,
            description: d.description.clone(),
        })
        .collect();
    ListResponse {
        version,
        count: parameters.len(),
        parameters,
    }
}

/// Response of `GET /api/v1/parameter/info/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InfoResponse {
    /// The major described.
    pub version: PgMajor,
    /// The full definition in that major.
    pub parameter: ParamDef,
    /// Majors (13..=17) where the parameter exists.
    pub versions: Vec<PgMajor>,
    /// Whether changing it needs a restart.
    pub restart_required: bool,
    /// How a change applies.
    pub apply: Apply,
}

/// Describes one parameter; a [`Rejection`] (unknown name, or not in this major) otherwise,
/// which the daemon returns with 404.
pub fn info(version: PgMajor, name: &str) -> Result<InfoResponse, Rejection> {
    match catalog().get(version, name) {
        Some(def) => Ok(InfoResponse {
            version,
            parameter: def.clone(),
            versions: PgMajor::all()
                .filter(|v| catalog().get(*v, name).is_some())
                .collect(),
            restart_required: def.context == Context::Postmaster,
            apply: def.context.apply(),
        }),
        None => match validate(version, name, "") {
            Verdict::Rejected(r) => Err(r),
            // A custom (extension) name: the catalog does not describe it.
            Verdict::Ok(_) => Err(Rejection {
                message: format!("parameter \"{name}\" is not described by the catalog"),
                reason: Reason::UnknownParameter {
                    name: name.to_string(),
                    suggestions: Vec::new(),
                },
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_request_from_patroni_style_json() {
        let req: ValidateRequest = serde_json::from_str(
            r#"{"version": 15, "parameters": {"max_connections": 200, "hot_standby": true,
                "work_mem": "64MB", "random_page_cost": 1.1, "shared_bufers": "1GB"}}"#,
        )
        .expect("valid JSON");
        let resp = validate_request(&req);
        assert!(!resp.valid);
        assert_eq!(resp.restart_required, ["hot_standby", "max_connections"]);
        let bad: Vec<_> = resp
            .results
            .iter()
            .filter(|r| !r.verdict.is_ok())
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(bad, ["shared_bufers"]);
        let json = serde_json::to_value(&resp).expect("serializable");
        let back: ValidateResponse = serde_json::from_value(json).expect("round-trips");
        assert_eq!(back, resp);
    }

    #[test]
    fn list_and_info() {
        let l = list(&ListQuery {
            context: Some(Context::Postmaster),
            search: Some("wal".into()),
            ..ListQuery::default()
        });
        assert!(l.parameters.iter().any(|p| p.name == "wal_level"));
        assert!(l.parameters.iter().all(|p| p.restart_required));
        let i = info(PgMajor::BASE, "wal_compression").expect("known");
        assert_eq!(i.versions.len(), 5);
        assert!(info(PgMajor::BASE, "transaction_timeout").is_err());
        let json = serde_json::to_string(&i).expect("serializable");
        assert_eq!(
            serde_json::from_str::<InfoResponse>(&json).expect("round-trips"),
            i
        );
    }
}
