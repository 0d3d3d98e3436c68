//! Every request body of the state-changing endpoints, parsed and checked as the
//! handlers do before they touch the cluster: JSON decoding (an empty body reads as
//! `{}`, like [`super::ApiJson`]), then the checks that need no cluster state (names,
//! URLs, timestamps, configuration rules, parameter values, tuning inputs).
//!
//! The `api_bodies` fuzz target feeds arbitrary bytes to [`check_all`]; the seed corpus
//! is replayed on stable by `ramd-ref/tests/fuzz_corpus.rs`. Whatever the bytes, nothing
//! may panic, and every body that decodes must encode and decode back to itself.
//!
//! ```
//! let results = ramd_ref::api::bodies::check_all(br#"{"name":"n4","raft_id":4,"api_url":"http://h:8008"}"#);
//! assert!(results.iter().any(|(endpoint, r)| *endpoint == "POST /api/v1/members" && r.is_ok()));
//! ```

use std::fmt::Debug;

use rale::{DynamicConfig, NodeId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::members::AddMemberRequest;
use super::types::*;

/// The outcome for one endpoint: accepted, or the reason it would answer 400.
pub type Checked = Result<(), String>;

/// Decodes as the API's body extractor does (the same function).
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    super::error::parse_body(bytes).map_err(|e| e.message)
}

/// Decodes, then checks that the value survives an encode/decode round trip.
fn decode_round_trip<T>(bytes: &[u8]) -> Result<T, String>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let v: T = decode(bytes)?;
    let text = serde_json::to_vec(&v).expect("a decoded body encodes");
    let back: T = serde_json::from_slice(&text).expect("an encoded body decodes");
    assert_eq!(back, v, "round trip changed the body");
    Ok(v)
}

fn name(text: &str, what: &str) -> Checked {
    NodeId::new(text)
        .map(|_| ())
        .map_err(|e| format!("{what}: {e}"))
}

fn timestamp(text: &str, what: &str) -> Checked {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|_| ())
        .map_err(|e| format!("{what}: {e}"))
}

fn config_patch(bytes: &[u8]) -> Checked {
    let patch: Value = decode(bytes)?;
    if !patch.is_object() {
        return Err("a configuration patch is a JSON object".into());
    }
    let mut merged =
        serde_json::to_value(DynamicConfig::default()).expect("the default configuration encodes");
    if let Some(key) = super::dynamic_config::unknown_key(&merged, &patch, "") {
        return Err(format!("unknown key {key:?}"));
    }
    super::merge_patch(&mut merged, &patch);
    let config: DynamicConfig =
        serde_json::from_value(merged).map_err(|e| format!("configuration: {e}"))?;
    config.validate().map_err(|e| e.to_string())
}

fn config_put(bytes: &[u8]) -> Checked {
    let config: DynamicConfig = decode_round_trip(bytes)?;
    config.validate().map_err(|e| e.to_string())
}

fn switchover(bytes: &[u8]) -> Checked {
    let r: SwitchoverRequest = decode_round_trip(bytes)?;
    if let Some(l) = &r.leader {
        name(l, "leader")?;
    }
    if let Some(c) = &r.candidate {
        name(c, "candidate")?;
    }
    if let Some(at) = &r.scheduled_at {
        timestamp(at, "scheduled_at")?;
    }
    Ok(())
}

fn restart(bytes: &[u8]) -> Checked {
    let r: RestartRequest = decode_round_trip(bytes)?;
    if let Some(at) = &r.schedule {
        timestamp(at, "schedule")?;
    }
    match r.role.as_deref() {
        None | Some("primary" | "master" | "replica") => Ok(()),
        Some(other) => Err(format!("role {other:?}")),
    }
}

fn parameters(bytes: &[u8]) -> Checked {
    let r: ParameterValidateRequest = decode_round_trip(bytes)?;
    let version = match r.version {
        Some(v) => rale_params::PgMajor::new(v).map_err(|e| e.to_string())?,
        None => rale_params::PgMajor::BASE,
    };
    let mut settings = r.parameters.clone();
    if let (Some(n), Some(v)) = (&r.name, &r.value) {
        settings.insert(n.clone(), v.clone());
    }
    let answer = rale_params::api::validate_request(&rale_params::api::ValidateRequest {
        version,
        parameters: settings,
    });
    if answer.valid {
        Ok(())
    } else {
        Err("a setting is refused".into())
    }
}

fn optimize(bytes: &[u8]) -> Checked {
    let r: rale_params::OptimizeRequest = decode_round_trip(bytes)?;
    rale_params::optimize(&r)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn members_add(bytes: &[u8]) -> Checked {
    decode_round_trip::<AddMemberRequest>(bytes)?
        .validate()
        .map(|_| ())
}

fn sync_node(bytes: &[u8]) -> Checked {
    name(&decode_round_trip::<SyncNodeRequest>(bytes)?.node, "node")
}

fn decode_only<T>(bytes: &[u8]) -> Checked
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    decode_round_trip::<T>(bytes).map(|_| ())
}

/// The check of one endpoint's body.
pub type Check = fn(&[u8]) -> Checked;

/// Every write endpoint with a body, and its check.
pub const ENDPOINTS: &[(&str, Check)] = &[
    ("PATCH /config", config_patch),
    ("PUT /config", config_put),
    ("POST /switchover", switchover),
    ("POST /failover", switchover),
    ("POST /restart", restart),
    ("POST /reinitialize", decode_only::<ReinitializeRequest>),
    ("POST /api/v1/members", members_add),
    ("POST /api/v1/parameter/validate", parameters),
    ("POST /api/v1/parameter/optimize", optimize),
    ("POST /api/v1/sync-standbys/add", sync_node),
    (
        "POST /api/v1/sync-standbys/any-n",
        decode_only::<SyncAnyNRequest>,
    ),
    (
        "POST /api/v1/sync-standbys/count",
        decode_only::<SyncCountRequest>,
    ),
    (
        "POST /api/v1/sync-standbys/commit-level",
        decode_only::<SyncCommitLevelRequest>,
    ),
    (
        "POST /api/v1/backup/start",
        decode_only::<rale_backup::api::StartBackupRequest>,
    ),
    (
        "POST /api/v1/backup/restore",
        decode_only::<rale_backup::api::StartRestoreRequest>,
    ),
    (
        "POST /api/v1/backup/schedule",
        decode_only::<rale_backup::api::ScheduleRequest>,
    ),
];

/// Checks `bytes` as the body of every endpoint of [`ENDPOINTS`].
pub fn check_all(bytes: &[u8]) -> Vec<(&'static str, Checked)> {
    ENDPOINTS
        .iter()
        .map(|(endpoint, check)| (*endpoint, check(bytes)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted_by(body: &str) -> Vec<&'static str> {
        check_all(body.as_bytes())
            .into_iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(e, _)| e)
            .collect()
    }

    #[test]
    fn valid_bodies_pass_their_endpoint() {
        assert!(accepted_by(r#"{"leader":"n1","candidate":"n2"}"#).contains(&"POST /switchover"));
        assert!(accepted_by(r#"{"lease_ttl":"5s"}"#).contains(&"PATCH /config"));
        assert!(accepted_by(r#"{"node":"n2"}"#).contains(&"POST /api/v1/sync-standbys/add"));
        assert!(
            accepted_by(r#"{"name":"work_mem","value":"8MB"}"#)
                .contains(&"POST /api/v1/parameter/validate")
        );
    }

    #[test]
    fn invalid_bodies_are_refused_without_panicking() {
        for body in ["", "{", "[]", "null", "\u{0}", r#"{"lease_ttl":"-1s"}"#] {
            let _ = check_all(body.as_bytes());
        }
        assert!(!accepted_by(r#"{"scheduled_at":"yesterday"}"#).contains(&"POST /switchover"));
        assert!(!accepted_by("[]").contains(&"PATCH /config"));
    }
}
