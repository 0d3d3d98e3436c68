//! Barman in local mode: a private configuration (`barman -c`), `backup_method = postgres`
//! (pg_basebackup) and WAL shipped by `archive_command` into Barman's incoming directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rale::{Lsn, Timeline};
use serde::{Deserialize, Serialize};

use crate::exec::{Invocation, RunAs};
use crate::recovery::{append_auto_conf, prepare_empty_data_dir};
use crate::retention;
use crate::tool::BackupTool;
use crate::types::{
    BackupInfo, BackupKind, BackupOutcome, CheckReport, ExpireOutcome, RestoreOutcome,
    RestoreRequest, RestoreTarget, Retention, ServerParameter, pg_timestamp,
};
use crate::{Error, Result};

const TOOL: &str = "barman";

/// Our description of a Barman server; [`Barman::new`] writes it as
/// `<base_dir>/barman.conf` with `barman_home = <base_dir>/home`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BarmanConfig {
    /// Barman's name for the PostgreSQL server.
    pub server_name: String,
    /// Directory for the configuration, Barman's home (backups, WAL) and log.
    pub base_dir: PathBuf,
    /// libpq connection string to the server (`host=/run/pg port=5432 user=postgres
    /// dbname=postgres`).
    pub conninfo: String,
    /// Replication connection string; `conninfo` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaming_conninfo: Option<String>,
    /// Directory with `pg_basebackup` & co (`path_prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_bin_dir: Option<PathBuf>,
    /// How long a backup waits for its WAL to be archived, in seconds.
    #[serde(default = "default_wait_timeout_s")]
    pub wal_wait_timeout_s: u32,
    /// The Barman program.
    #[serde(default = "default_program")]
    pub program: PathBuf,
}

fn default_wait_timeout_s() -> u32 {
    120
}
fn default_program() -> PathBuf {
    PathBuf::from("barman")
}

impl BarmanConfig {
    /// A configuration with defaults.
    pub fn new(server_name: &str, base_dir: &Path, conninfo: &str) -> Self {
        Self {
            server_name: server_name.to_owned(),
            base_dir: base_dir.to_owned(),
            conninfo: conninfo.to_owned(),
            streaming_conninfo: None,
            pg_bin_dir: None,
            wal_wait_timeout_s: default_wait_timeout_s(),
            program: default_program(),
        }
    }

    /// Path of the generated configuration file.
    pub fn config_file(&self) -> PathBuf {
        self.base_dir.join("barman.conf")
    }

    /// Barman's home directory.
    pub fn home_dir(&self) -> PathBuf {
        self.base_dir.join("home")
    }

    /// Where the server's `archive_command` drops WAL files.
    pub fn incoming_dir(&self) -> PathBuf {
        self.home_dir().join(&self.server_name).join("incoming")
    }

    /// The configuration file text for OS user `user`.
    pub fn render(&self, user: &str) -> String {
        let mut s = String::from("[barman]\n");
        s.push_str(&format!("barman_home = {}\n", self.home_dir().display()));
        s.push_str(&format!("barman_user = {user}\n"));
        s.push_str(&format!(
            "log_file = {}\n",
            self.base_dir.join("barman.log").display()
        ));
        s.push_str("log_level = INFO\n");
        s.push_str(&format!("\n[{}]\n", self.server_name));
        s.push_str("description = \"PostgreSQL server managed by RALE\"\n");
        s.push_str(&format!("conninfo = {}\n", self.conninfo));
        s.push_str(&format!(
            "streaming_conninfo = {}\n",
            self.streaming_conninfo.as_deref().unwrap_or(&self.conninfo)
        ));
        s.push_str("backup_method = postgres\n");
        s.push_str("archiver = on\n");
        s.push_str("streaming_archiver = off\n");
        s.push_str(&format!(
            "incoming_wals_directory = {}\n",
            self.incoming_dir().display()
        ));
        if let Some(bin) = &self.pg_bin_dir {
            s.push_str(&format!("path_prefix = {}\n", bin.display()));
        }
        s
    }
}

/// The Barman [`BackupTool`]. Takes full backups only (`backup_method = postgres` has no
/// incremental mode).
#[derive(Debug)]
pub struct Barman {
    config: BarmanConfig,
    run_as: RunAs,
    timeout: Duration,
}

impl Barman {
    /// Writes the configuration and directories and returns the tool. Runs Barman as the
    /// `postgres` user when we are root.
    pub fn new(config: BarmanConfig) -> Result<Self> {
        Self::with_user(config, RunAs::postgres_if_root()?)
    }

    /// Like [`Self::new`] with an explicit OS user.
    pub fn with_user(config: BarmanConfig, run_as: RunAs) -> Result<Self> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !valid(&config.server_name) || config.server_name == "barman" {
            return Err(Error::Config(format!(
                "bad Barman server name {:?}",
                config.server_name
            )));
        }
        run_as.create_private_dir(&config.base_dir)?;
        run_as.create_private_dir(&config.home_dir())?;
        run_as.create_private_dir(&config.home_dir().join(&config.server_name))?;
        run_as.create_private_dir(&config.incoming_dir())?;
        run_as.write_file(&config.config_file(), &config.render(&run_as.user_name))?;
        Ok(Self {
            config,
            run_as,
            timeout: Duration::from_secs(6 * 3600),
        })
    }

    /// Sets the limit for each Barman run (default six hours).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &BarmanConfig {
        &self.config
    }

    fn command(&self, command: &str, json: bool) -> Invocation {
        let mut inv = Invocation::new(TOOL, command, self.config.program.clone())
            .arg(format!("--config={}", self.config.config_file().display()))
            .timeout(self.timeout);
        if json {
            inv = inv.args(["--format", "json"]);
        }
        inv.arg(command)
    }

    /// `archive_command` for the server: a local copy into Barman's incoming directory.
    pub fn archive_command(&self) -> String {
        let dir = self.config.incoming_dir();
        format!("test ! -f '{d}/%f' && cp %p '{d}/%f'", d = dir.display())
    }

    /// Moves WAL from the incoming directory into Barman's archive.
    pub async fn archive_wal(&self) -> Result<()> {
        self.command("archive-wal", false)
            .arg(&self.config.server_name)
            .run(&self.run_as)
            .await?;
        Ok(())
    }

    async fn show_backup(&self, id: &str) -> Result<BackupInfo> {
        let out = self
            .command("show-backup", true)
            .args([self.config.server_name.as_str(), id])
            .run(&self.run_as)
            .await?;
        parse_show_backup(&out.stdout, &self.config.server_name)
    }

    async fn choose_backup(&self, request: &RestoreRequest) -> Result<String> {
        if let Some(id) = &request.backup_id {
            return Ok(id.clone());
        }
        let list = self.list().await?;
        let chosen = match &request.target {
            RestoreTarget::Time(t) => list.iter().rev().find(|b| b.stop_time <= *t),
            RestoreTarget::Lsn(l) => list
                .iter()
                .rev()
                .find(|b| b.lsn_stop.is_some_and(|s| s <= *l)),
            _ => list.last(),
        };
        chosen.map(|b| b.id.clone()).ok_or_else(|| {
            Error::BackupNotFound(format!("no Barman backup fits {:?}", request.target))
        })
    }
}

#[async_trait]
impl BackupTool for Barman {
    fn name(&self) -> &str {
        TOOL
    }

    fn supported_kinds(&self) -> &[BackupKind] {
        &[BackupKind::Full]
    }

    fn server_parameters(&self) -> Vec<ServerParameter> {
        vec![
            ServerParameter::restart("wal_level", "replica"),
            ServerParameter::restart("archive_mode", "on"),
            ServerParameter::reload("archive_command", self.archive_command()),
            ServerParameter::restart("max_wal_senders", "10"),
        ]
    }

    async fn prepare(&self) -> Result<()> {
        // Force a WAL switch and wait until it reached Barman's archive, so that `check`
        // sees archiving working.
        self.command("switch-wal", false)
            .args(["--force", "--archive", "--archive-timeout"])
            .arg(self.config.wal_wait_timeout_s.to_string())
            .arg(&self.config.server_name)
            .run(&self.run_as)
            .await?;
        Ok(())
    }

    async fn check(&self) -> Result<CheckReport> {
        let out = self
            .command("check", false)
            .arg(&self.config.server_name)
            .run(&self.run_as)
            .await?;
        Ok(CheckReport {
            ok: true,
            output_tail: out.combined_tail(),
        })
    }

    async fn backup(&self, kind: BackupKind) -> Result<BackupOutcome> {
        if kind != BackupKind::Full {
            return Err(Error::Unsupported {
                tool: TOOL.into(),
                what: format!("{kind} backups"),
            });
        }
        // Barman's begin_time has second resolution.
        let started = Utc::now() - chrono::Duration::seconds(1);
        let out = self
            .command("backup", false)
            .args(["--immediate-checkpoint", "--wait", "--wait-timeout"])
            .arg(self.config.wal_wait_timeout_s.to_string())
            .arg(&self.config.server_name)
            .run(&self.run_as)
            .await?;
        // Barman exits 0 even when it records a FAILED backup; trust the list.
        let after = self.list().await?;
        let backup = after.into_iter().rev().find(|b| b.start_time >= started);
        if backup.is_none() {
            return Err(Error::ToolFailed {
                tool: TOOL.into(),
                command: "backup".into(),
                status: out.status.clone(),
                stderr_tail: out.combined_tail(),
            });
        }
        Ok(BackupOutcome {
            backup,
            output_tail: out.combined_tail(),
        })
    }

    async fn list(&self) -> Result<Vec<BackupInfo>> {
        let out = self
            .command("list-backups", true)
            .arg(&self.config.server_name)
            .run(&self.run_as)
            .await?;
        let ids = parse_list_backups(&out.stdout, &self.config.server_name)?;
        let mut list = Vec::with_capacity(ids.len());
        for id in ids {
            list.push(self.show_backup(&id).await?);
        }
        list.sort_by(|a, b| {
            a.start_time
                .cmp(&b.start_time)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(list)
    }

    async fn restore(&self, request: &RestoreRequest) -> Result<RestoreOutcome> {
        // WAL that reached the incoming directory must be in the archive for recovery.
        self.archive_wal().await?;
        let backup_id = self.choose_backup(request).await?;
        prepare_empty_data_dir(&request.data_dir, &self.run_as)?;
        let mut cmd = self.command("recover", false);
        if request.standby.is_some() {
            cmd = cmd.arg("--standby-mode");
        } else {
            let action = [
                "--target-action".to_owned(),
                request.target_action.as_str().to_owned(),
            ];
            match &request.target {
                RestoreTarget::Latest => {}
                RestoreTarget::Immediate => cmd = cmd.arg("--target-immediate").args(action),
                RestoreTarget::Time(t) => {
                    cmd = cmd
                        .args(["--target-time".to_owned(), pg_timestamp(t)])
                        .args(action)
                }
                RestoreTarget::Lsn(l) => {
                    cmd = cmd
                        .args(["--target-lsn".to_owned(), l.to_string()])
                        .args(action)
                }
                RestoreTarget::Name(n) => {
                    cmd = cmd
                        .args(["--target-name".to_owned(), n.clone()])
                        .args(action)
                }
            }
        }
        let out = cmd
            .arg(&self.config.server_name)
            .arg(&backup_id)
            .arg(&request.data_dir)
            .run(&self.run_as)
            .await?;
        let mut extra = Vec::new();
        if let Some(standby) = &request.standby {
            extra.push((
                "primary_conninfo".to_owned(),
                standby.primary_conninfo.clone(),
            ));
            if let Some(slot) = &standby.primary_slot_name {
                extra.push(("primary_slot_name".to_owned(), slot.clone()));
            }
        }
        if request.disable_archiving {
            extra.push(("archive_mode".to_owned(), "off".to_owned()));
        }
        if !extra.is_empty() {
            append_auto_conf(&request.data_dir, &extra, &self.run_as)?;
        }
        Ok(RestoreOutcome {
            backup_id: Some(backup_id),
            output_tail: out.combined_tail(),
        })
    }

    async fn expire(&self, retention: &Retention) -> Result<ExpireOutcome> {
        let list = self.list().await?;
        let doomed = retention::plan(&list, retention, Utc::now());
        let mut tail = String::new();
        for id in &doomed {
            let out = self
                .command("delete", false)
                .args([self.config.server_name.as_str(), id])
                .run(&self.run_as)
                .await?;
            tail.push_str(&out.combined_tail());
            tail.push('\n');
        }
        Ok(ExpireOutcome {
            removed_ids: doomed,
            output_tail: crate::exec::tail(&tail),
        })
    }
}

#[derive(Deserialize)]
struct ListEntry {
    backup_id: String,
    status: String,
}

/// Parses `barman -f json list-backups <server>`: ids of completed backups.
pub fn parse_list_backups(json: &str, server: &str) -> Result<Vec<String>> {
    let mut map: std::collections::BTreeMap<String, Vec<ListEntry>> =
        serde_json::from_str(json).map_err(|e| Error::parse("barman list-backups", e))?;
    Ok(map
        .remove(server)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.status == "DONE")
        .map(|e| e.backup_id)
        .collect())
}

#[derive(Deserialize)]
struct ShowBackup {
    backup_id: String,
    base_backup_information: BaseInfo,
}

#[derive(Deserialize)]
struct BaseInfo {
    disk_usage_bytes: Option<u64>,
    timeline: Option<u32>,
    begin_time_timestamp: String,
    end_time_timestamp: String,
    begin_lsn: Option<String>,
    end_lsn: Option<String>,
}

/// Parses `barman -f json show-backup <server> <id>`.
pub fn parse_show_backup(json: &str, server: &str) -> Result<BackupInfo> {
    let mut map: std::collections::BTreeMap<String, ShowBackup> =
        serde_json::from_str(json).map_err(|e| Error::parse("barman show-backup", e))?;
    let b = map
        .remove(server)
        .ok_or_else(|| Error::parse("barman show-backup", format!("no server {server:?}")))?;
    let time = |s: &str| -> Result<DateTime<Utc>> {
        let secs: i64 = s
            .parse()
            .map_err(|_| Error::parse("barman show-backup", format!("timestamp {s:?}")))?;
        DateTime::from_timestamp(secs, 0)
            .ok_or_else(|| Error::parse("barman show-backup", format!("timestamp {s:?}")))
    };
    let lsn = |s: &Option<String>| -> Result<Option<Lsn>> {
        s.as_deref()
            .map(|t| {
                t.parse::<Lsn>()
                    .map_err(|e| Error::parse("barman show-backup lsn", e))
            })
            .transpose()
    };
    let i = &b.base_backup_information;
    Ok(BackupInfo {
        id: b.backup_id,
        kind: BackupKind::Full,
        parent_id: None,
        start_time: time(&i.begin_time_timestamp)?,
        stop_time: time(&i.end_time_timestamp)?,
        lsn_start: lsn(&i.begin_lsn)?,
        lsn_stop: lsn(&i.end_lsn)?,
        timeline: i.timeline.map(Timeline),
        size_bytes: i.disk_usage_bytes,
        repo_size_bytes: i.disk_usage_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_list() {
        let j = r#"{"pg": [{"backup_id": "20261122T023400", "status": "DONE", "size_bytes": 1},
                           {"backup_id": "20261122T023500", "status": "FAILED"}]}"#;
        assert_eq!(
            parse_list_backups(j, "pg").expect("parses"),
            ["20261122T023400"]
        );
        assert!(parse_list_backups(j, "other").expect("parses").is_empty());
        assert!(parse_list_backups("[", "pg").is_err());
    }

    #[test]
    fn parses_show() {
        let j = r#"{"pg": {"backup_id": "20261122T023400", "status": "DONE",
            "base_backup_information": {"disk_usage_bytes": 23000000, "timeline": 1,
              "begin_time_timestamp": "1795314840", "end_time_timestamp": "1795314843",
              "begin_lsn": "0/3000028", "end_lsn": "0/3000100", "begin_wal": "x"}}}"#;
        let b = parse_show_backup(j, "pg").expect("parses");
        assert_eq!(b.id, "20261122T023400");
        assert_eq!(b.lsn_stop, Some("0/3000100".parse().expect("lsn")));
        assert_eq!(b.timeline, Some(Timeline(1)));
        assert!(b.stop_time > b.start_time);
    }

    proptest::proptest! {
        #[test]
        fn json_parsers_never_panic(text in "\\PC{0,200}") {
            let _ = parse_list_backups(&text, "pg");
            let _ = parse_show_backup(&text, "pg");
        }
    }

    #[test]
    fn renders_local_config() {
        let c = BarmanConfig::new(
            "pg",
            Path::new("/b"),
            "host=/s port=5 user=postgres dbname=postgres",
        );
        let text = c.render("postgres");
        assert!(text.contains("barman_home = /b/home\n"));
        assert!(text.contains("[pg]\n"));
        assert!(text.contains("backup_method = postgres\n"));
        assert!(text.contains("incoming_wals_directory = /b/home/pg/incoming\n"));
    }
}
