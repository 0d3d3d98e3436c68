//! The vocabulary shared by every backup tool: kinds, backup metadata, restore targets,
//! retention and the outcomes tools report.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rale::{Lsn, Timeline};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The kind of a backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupKind {
    /// A complete copy of the data directory.
    Full,
    /// Files changed since the last full backup.
    Differential,
    /// Files changed since the last backup of any kind.
    Incremental,
}

impl BackupKind {
    /// pgBackRest's spelling (`full`, `diff`, `incr`).
    pub fn pgbackrest_name(self) -> &'static str {
        match self {
            BackupKind::Full => "full",
            BackupKind::Differential => "diff",
            BackupKind::Incremental => "incr",
        }
    }
}

impl fmt::Display for BackupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackupKind::Full => "full",
            BackupKind::Differential => "differential",
            BackupKind::Incremental => "incremental",
        })
    }
}

impl FromStr for BackupKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "full" => Ok(BackupKind::Full),
            "diff" | "differential" => Ok(BackupKind::Differential),
            "incr" | "incremental" => Ok(BackupKind::Incremental),
            other => Err(Error::Config(format!("unknown backup kind {other:?}"))),
        }
    }
}

/// One backup as listed by its tool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The tool's id (pgBackRest label, Barman backup id, our id for custom hooks).
    pub id: String,
    /// Full, differential or incremental.
    pub kind: BackupKind,
    /// For differential/incremental backups, the backup this one depends on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// When the backup started.
    pub start_time: DateTime<Utc>,
    /// When it finished.
    pub stop_time: DateTime<Utc>,
    /// WAL position where the backup starts (restore needs WAL from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn_start: Option<Lsn>,
    /// WAL position where it becomes consistent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn_stop: Option<Lsn>,
    /// Timeline the backup was taken on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Timeline>,
    /// Size of the database at backup time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Size the backup takes in the repository (after compression/deduplication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_size_bytes: Option<u64>,
}

/// Where recovery should stop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum RestoreTarget {
    /// Replay all archived WAL.
    Latest,
    /// Stop as soon as the backup is consistent.
    Immediate,
    /// Stop after the last commit at or before this time.
    Time(DateTime<Utc>),
    /// Stop at this WAL position.
    Lsn(Lsn),
    /// Stop at a restore point created with `pg_create_restore_point(name)`.
    Name(String),
}

impl RestoreTarget {
    /// The `recovery_target_*` settings PostgreSQL needs for this target.
    pub fn recovery_settings(&self) -> Vec<(String, String)> {
        match self {
            RestoreTarget::Latest => Vec::new(),
            RestoreTarget::Immediate => {
                vec![("recovery_target".into(), "immediate".into())]
            }
            RestoreTarget::Time(t) => vec![("recovery_target_time".into(), pg_timestamp(t))],
            RestoreTarget::Lsn(l) => vec![("recovery_target_lsn".into(), l.to_string())],
            RestoreTarget::Name(n) => vec![("recovery_target_name".into(), n.clone())],
        }
    }
}

/// A timestamp in the form PostgreSQL and the tools accept
/// (`2026-11-22 02:34:06.123456+00`).
pub fn pg_timestamp(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

/// What the server does once the recovery target is reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetAction {
    /// End recovery and accept writes (the usual choice for point-in-time restores).
    #[default]
    Promote,
    /// Stay in recovery, paused, so the result can be inspected.
    Pause,
    /// Shut the server down.
    Shutdown,
}

impl TargetAction {
    /// PostgreSQL's `recovery_target_action` value.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetAction::Promote => "promote",
            TargetAction::Pause => "pause",
            TargetAction::Shutdown => "shutdown",
        }
    }
}

/// How a restored data directory should follow a primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbySetup {
    /// `primary_conninfo` for streaming.
    pub primary_conninfo: String,
    /// Physical replication slot to stream from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_slot_name: Option<String>,
}

/// A restore into a data directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Destination; created if missing, must be empty (or missing).
    pub data_dir: PathBuf,
    /// Backup to restore; `None` picks the tool's natural choice for the target (the
    /// latest backup, or the latest one that ends before a time target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// Where recovery stops.
    pub target: RestoreTarget,
    /// What the server does at the target (ignored for [`RestoreTarget::Latest`] and for
    /// standbys).
    #[serde(default)]
    pub target_action: TargetAction,
    /// Set up the result as a streaming standby instead of a recovered primary.
    #[serde(
        default,
        deserialize_with = "crate::api::objects::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub standby: Option<StandbySetup>,
    /// Turn WAL archiving off in the restored server (`archive_mode = off`), so that a
    /// side copy does not push a new timeline into the repository it came from.
    #[serde(default)]
    pub disable_archiving: bool,
}

impl RestoreRequest {
    /// Restore the latest backup and all archived WAL into `data_dir`.
    pub fn latest(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            backup_id: None,
            target: RestoreTarget::Latest,
            target_action: TargetAction::Promote,
            standby: None,
            disable_archiving: false,
        }
    }

    /// The same request with another target.
    pub fn with_target(mut self, target: RestoreTarget, action: TargetAction) -> Self {
        self.target = target;
        self.target_action = action;
        self
    }
}

/// How many backups to keep. Counts are applied by the tool's own expire where it has
/// one; ages by selecting backups with [`crate::retention::plan`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Full backups to keep (with everything that depends on them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_count: Option<u32>,
    /// Differential backups to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differential_count: Option<u32>,
    /// Drop backups older than this (the newest full backup is always kept).
    #[serde(
        default,
        with = "humantime_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_age: Option<Duration>,
}

impl Retention {
    /// Whether any rule is set.
    pub fn is_empty(&self) -> bool {
        self.full_count.is_none() && self.differential_count.is_none() && self.max_age.is_none()
    }
}

mod humantime_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format!("{}s", d.as_secs())),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| crate::types::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Parses `"90s"`, `"15m"`, `"12h"`, `"7d"`, `"250ms"` (one number, one unit).
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| Error::Config(format!("duration {text:?} has no unit")))?;
    let (num, unit) = text.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| Error::Config(format!("bad duration {text:?}")))?;
    let secs = |mult: u64| {
        n.checked_mul(mult)
            .map(Duration::from_secs)
            .ok_or_else(|| Error::Config(format!("duration {text:?} too large")))
    };
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => secs(1),
        "m" | "min" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        other => Err(Error::Config(format!("unknown duration unit {other:?}"))),
    }
}

/// The result of a configuration check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Whether everything checked passed.
    pub ok: bool,
    /// The tool's own report (tail).
    pub output_tail: String,
}

/// What a successful backup produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupOutcome {
    /// The new backup, when the tool could identify it.
    pub backup: Option<BackupInfo>,
    /// The end of the tool's output.
    pub output_tail: String,
}

/// What a successful restore produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreOutcome {
    /// The backup restored from, when known.
    pub backup_id: Option<String>,
    /// The end of the tool's output.
    pub output_tail: String,
}

/// What a retention run removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpireOutcome {
    /// Ids of the removed backups.
    pub removed_ids: Vec<String>,
    /// The end of the tool's output.
    pub output_tail: String,
}

/// A PostgreSQL setting a tool needs on the server it backs up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerParameter {
    /// Parameter name (`archive_command`).
    pub name: String,
    /// Value, unquoted.
    pub value: String,
    /// Whether changing it needs a server restart (`archive_mode`, `wal_level`).
    pub restart_required: bool,
}

impl ServerParameter {
    /// A parameter that a reload applies.
    pub fn reload(name: &str, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            restart_required: false,
        }
    }

    /// A parameter that needs a restart.
    pub fn restart(name: &str, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            restart_required: true,
        }
    }
}

/// Quotes a value for `postgresql.conf` (single quotes, embedded quotes doubled).
pub fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Renders parameters as `postgresql.conf` lines.
pub fn render_conf(params: &[ServerParameter]) -> String {
    params
        .iter()
        .map(|p| format!("{} = {}\n", p.name, conf_quote(&p.value)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in [
            BackupKind::Full,
            BackupKind::Differential,
            BackupKind::Incremental,
        ] {
            assert_eq!(k.to_string().parse::<BackupKind>().expect("parses"), k);
            assert_eq!(
                k.pgbackrest_name().parse::<BackupKind>().expect("parses"),
                k
            );
        }
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("7d").expect("ok"),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(
            parse_duration("250ms").expect("ok"),
            Duration::from_millis(250)
        );
        assert!(parse_duration("7").is_err());
        assert!(parse_duration("x7d").is_err());
    }

    #[test]
    fn retention_serde() {
        let r: Retention =
            serde_json::from_str(r#"{"full_count":2,"max_age":"7d"}"#).expect("parses");
        assert_eq!(r.full_count, Some(2));
        assert_eq!(r.max_age, Some(Duration::from_secs(604_800)));
        let back = serde_json::to_string(&r).expect("serializes");
        assert_eq!(serde_json::from_str::<Retention>(&back).expect("parses"), r);
    }

    #[test]
    fn conf_quoting() {
        assert_eq!(conf_quote("it's"), "'it''s'");
        assert_eq!(
            render_conf(&[ServerParameter::reload("archive_command", "cp %p /a/%f")]),
            "archive_command = 'cp %p /a/%f'\n"
        );
    }

    #[test]
    fn restore_target_json() {
        let t = RestoreTarget::Lsn(Lsn(0x1_0000_0028));
        let j = serde_json::to_string(&t).expect("serializes");
        assert_eq!(j, r#"{"type":"lsn","value":"1/28"}"#);
        assert_eq!(
            serde_json::from_str::<RestoreTarget>(&j).expect("parses"),
            t
        );
    }
}
