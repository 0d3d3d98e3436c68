//! Request and response bodies of the backup endpoints under `/api/v1/backup/`, shared by
//! the daemon that serves them and the CLI that calls them. See the crate README for the
//! endpoint table.

use serde::{Deserialize, Serialize};

use crate::jobs::{Job, JobId};
use crate::schedule::ScheduleSpec;
use crate::types::{BackupInfo, BackupKind, RestoreRequest, Retention};

/// `POST /api/v1/backup/start`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBackupRequest {
    /// Backup kind (`full` when omitted).
    #[serde(default = "default_kind")]
    pub kind: BackupKind,
}

fn default_kind() -> BackupKind {
    BackupKind::Full
}

/// `POST /api/v1/backup/restore`: the restore itself (data directory, backup id, target,
/// target action, standby setup).
pub type StartRestoreRequest = RestoreRequest;

/// Answer to `start` and `restore`: the job that was queued (`202 Accepted`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobAccepted {
    /// Follow it at `GET /api/v1/backup/status/{job_id}`.
    pub job_id: JobId,
}

/// `POST /api/v1/backup/schedule`: replaces the schedules and retention.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// The new schedules (empty list: no scheduled backups).
    #[serde(default, deserialize_with = "objects::vec")]
    pub schedules: Vec<ScheduleSpec>,
    /// Retention applied after each successful backup (`null`: none).
    #[serde(
        default,
        deserialize_with = "objects::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention: Option<Retention>,
}

/// Nested request objects must be JSON objects: serde would also read a struct from an
/// array of its fields in order (`[null, null]`), which no client means.
pub(crate) mod objects {
    use serde::de::{DeserializeOwned, Error};
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    fn object<T: DeserializeOwned, E: Error>(v: Value) -> Result<T, E> {
        if v.is_object() {
            T::deserialize(v).map_err(E::custom)
        } else {
            Err(E::custom(format!("expected an object, found {v}")))
        }
    }

    /// An optional object (`null` or absent: `None`).
    pub(crate) fn option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: DeserializeOwned,
    {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(v) => object(v).map(Some),
        }
    }

    /// A list of objects.
    pub(crate) fn vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: DeserializeOwned,
    {
        Vec::<Value>::deserialize(d)?
            .into_iter()
            .map(object)
            .collect()
    }
}

/// Answer to `schedule`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleResponse {
    /// Schedules in force.
    pub schedules: Vec<ScheduleStatus>,
    /// Retention in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

/// One schedule with its next occurrence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleStatus {
    /// The schedule.
    #[serde(flatten)]
    pub spec: ScheduleSpec,
    /// Next occurrence (UTC), if the expression has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<chrono::DateTime<chrono::Utc>>,
}

/// `GET /api/v1/backup/list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListBackupsResponse {
    /// Tool that holds them.
    pub tool: String,
    /// Backups, oldest first.
    pub backups: Vec<BackupInfo>,
}

/// `GET /api/v1/backup/jobs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsResponse {
    /// Jobs, oldest first.
    pub jobs: Vec<Job>,
}

/// `GET /api/v1/backup/status/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatusResponse {
    /// The job.
    #[serde(flatten)]
    pub job: Job,
    /// Run time in milliseconds, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

impl From<Job> for JobStatusResponse {
    fn from(job: Job) -> Self {
        let duration_ms = job.duration_ms();
        Self { job, duration_ms }
    }
}

/// Error body for every backup endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// Stable machine-readable code (`busy`, `not_found`, `invalid`, `tool_failed`).
    pub code: String,
    /// Human-readable message, including the tool's own message when there is one.
    pub message: String,
}

impl From<&crate::Error> for ErrorResponse {
    fn from(e: &crate::Error) -> Self {
        use crate::Error as E;
        let code = match e {
            E::Busy { .. } => "busy",
            E::JobNotFound(_) | E::BackupNotFound(_) => "not_found",
            E::Config(_) | E::Cron { .. } | E::Unsupported { .. } => "invalid",
            E::ToolFailed { .. } | E::Timeout { .. } => "tool_failed",
            _ => "internal",
        };
        Self {
            code: code.into(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{RestoreTarget, TargetAction};

    #[test]
    fn documented_bodies_parse() {
        let s: StartBackupRequest =
            serde_json::from_str(r#"{"kind":"incremental"}"#).expect("parses");
        assert_eq!(s.kind, BackupKind::Incremental);
        let s: StartBackupRequest = serde_json::from_str("{}").expect("parses");
        assert_eq!(s.kind, BackupKind::Full);
        let r: StartRestoreRequest = serde_json::from_str(
            r#"{"data_dir":"/var/lib/pg/restore","target":{"type":"time","value":"2026-11-22T02:34:06Z"},"target_action":"pause"}"#,
        )
        .expect("parses");
        assert!(matches!(r.target, RestoreTarget::Time(_)));
        assert_eq!(r.target_action, TargetAction::Pause);
        let sch: ScheduleRequest = serde_json::from_str(
            r#"{"schedules":[{"name":"nightly","kind":"full","cron":"0 30 2 * * *","placement":"prefer_replica"}],"retention":{"full_count":2}}"#,
        )
        .expect("parses");
        assert_eq!(sch.schedules.len(), 1);
        let e = ErrorResponse::from(&crate::Error::Busy { queued: 3 });
        assert_eq!(e.code, "busy");
    }
}

#[cfg(test)]
mod object_tests {
    use super::ScheduleRequest;

    /// Nested objects must be objects, not arrays of their fields (found by schemathesis).
    #[test]
    fn nested_request_objects_must_be_objects() {
        let ok: ScheduleRequest = serde_json::from_str(
            r#"{"schedules":[{"name":"n","kind":"full","cron":"0 0 * * *"}],"retention":{"full_count":2}}"#,
        )
        .expect("objects");
        assert_eq!(ok.retention.and_then(|r| r.full_count), Some(2));
        for bad in [
            r#"{"retention":[null,null]}"#,
            r#"{"schedules":[["n","full","0 0 * * *"]]}"#,
        ] {
            assert!(
                serde_json::from_str::<ScheduleRequest>(bad).is_err(),
                "{bad}"
            );
        }
        let none: ScheduleRequest = serde_json::from_str(r#"{"retention":null}"#).expect("null");
        assert_eq!(none.retention, None);
    }
}
