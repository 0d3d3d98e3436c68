//! The `[backup]` section of the node configuration: which tool backs this node up, where
//! its jobs are recorded, the schedules and the retention.
//!
//! ```toml
//! [backup]
//! tool = "pgbackrest"                  # pgbackrest | barman | custom
//! job_dir = "/var/lib/rale/backup-jobs" # one JSON file per job
//!
//! [backup.pgbackrest]                  # rale_backup::PgBackRestConfig
//! stanza = "main"
//! base_dir = "/var/lib/rale/pgbackrest"
//! repo_path = "/var/lib/pgbackrest"
//! pg_data_dir = "/var/lib/postgresql/15/main"
//! pg_port = 5432
//!
//! # [backup.barman]                   # rale_backup::BarmanConfig (tool = "barman")
//! # server_name = "main"
//! # base_dir = "/var/lib/rale/barman"
//! # conninfo = "host=/run/postgresql port=5432 user=postgres dbname=postgres"
//!
//! # [backup.custom]                   # rale_backup::HookConfig (tool = "custom")
//! # state_dir = "/var/lib/rale/hooks"
//! # backup = "my-backup --to %r/%i"
//! # restore = "my-restore %i %d"
//!
//! [[backup.schedules]]                 # rale_backup::ScheduleSpec
//! name = "nightly"
//! kind = "full"
//! cron = "0 30 2 * * *"
//! placement = "prefer_replica"
//!
//! [backup.retention]                   # rale_backup::Retention
//! full_count = 2
//! ```
//!
//! The daemon builds its backup service from this section
//! ([`BackupService::from_config`](crate::backup::BackupService::from_config)).

use std::path::PathBuf;

use rale_backup::{BarmanConfig, HookConfig, PgBackRestConfig, Retention, ScheduleSpec};
use serde::{Deserialize, Serialize};

/// Which backup tool a node uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolKind {
    /// pgBackRest (`[backup.pgbackrest]`).
    Pgbackrest,
    /// Barman in local mode (`[backup.barman]`).
    Barman,
    /// The integrator's hook commands (`[backup.custom]`).
    Custom,
}

/// The `[backup]` section of a node's configuration (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// The tool; its own section must be present.
    pub tool: ToolKind,
    /// Directory of the job records.
    pub job_dir: PathBuf,
    /// pgBackRest settings, for `tool = "pgbackrest"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbackrest: Option<PgBackRestConfig>,
    /// Barman settings, for `tool = "barman"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barman: Option<BarmanConfig>,
    /// Hook commands, for `tool = "custom"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<HookConfig>,
    /// Scheduled backups.
    #[serde(default)]
    pub schedules: Vec<ScheduleSpec>,
    /// Retention applied after each successful backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_section_parses_from_toml() {
        let text = r#"
            tool = "custom"
            job_dir = "/tmp/jobs"
            [custom]
            state_dir = "/tmp/hooks"
            backup = "true"
            restore = "true"
            [[schedules]]
            name = "nightly"
            kind = "full"
            cron = "0 30 2 * * *"
            placement = "prefer_replica"
            [retention]
            full_count = 2
        "#;
        let c: BackupConfig = toml::from_str(text).expect("documented shape parses");
        assert_eq!(c.tool, ToolKind::Custom);
        assert_eq!(c.schedules.len(), 1);
        assert_eq!(c.retention.and_then(|r| r.full_count), Some(2));
        assert!(toml::from_str::<BackupConfig>("tool = \"tape\"\njob_dir = \"/x\"").is_err());
    }

    #[test]
    fn example_backup_section_parses() {
        // docs/ramd.example.toml carries [backup] commented out: uncomment and parse it.
        let example = include_str!("../../../docs/ramd.example.toml");
        let start = example
            .find("# [backup]\n")
            .expect("example has a [backup] block");
        let text: String = example[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{}\n", l.trim_start_matches('#').trim_start()))
            .collect();
        let node: toml::Table = toml::from_str(&text).expect("uncommented block parses");
        let section = node.get("backup").cloned().expect("[backup]");
        let c: BackupConfig = section.try_into().expect("documented [backup] shape");
        assert_eq!(c.tool, ToolKind::Pgbackrest);
        let pgbr = c.pgbackrest.expect("[backup.pgbackrest]");
        assert_eq!(pgbr.stanza, "rale");
        assert!(pgbr.pg_socket_dir.is_some());
        assert_eq!(c.schedules.len(), 1);
        assert_eq!(c.retention.and_then(|r| r.full_count), Some(2));
    }
}
