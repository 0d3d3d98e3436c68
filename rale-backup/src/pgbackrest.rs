//! pgBackRest, driven as a process with a configuration file generated from ours.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rale::{Lsn, Timeline};
use serde::{Deserialize, Serialize};

use crate::exec::{Invocation, RunAs};
use crate::recovery::prepare_empty_data_dir;
use crate::retention;
use crate::tool::BackupTool;
use crate::types::{
    BackupInfo, BackupKind, BackupOutcome, CheckReport, ExpireOutcome, RestoreOutcome,
    RestoreRequest, RestoreTarget, Retention, ServerParameter, pg_timestamp,
};
use crate::{Error, Result};

const TOOL: &str = "pgbackrest";

/// Our description of a pgBackRest setup; [`PgBackRest::new`] writes it as
/// `<base_dir>/pgbackrest.conf`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgBackRestConfig {
    /// The stanza (one per cluster).
    pub stanza: String,
    /// Directory for the generated configuration, logs, locks and spool.
    pub base_dir: PathBuf,
    /// `repo1-path`: where backups and archived WAL go.
    pub repo_path: PathBuf,
    /// `repo1-retention-full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_full: Option<u32>,
    /// `repo1-retention-diff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_diff: Option<u32>,
    /// `process-max`: parallel processes for backup and restore.
    #[serde(default = "default_process_max")]
    pub process_max: u32,
    /// `pg1-path`: the data directory of the server backed up.
    pub pg_data_dir: PathBuf,
    /// `pg1-port`.
    pub pg_port: u16,
    /// `pg1-socket-path`: the Unix socket directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_socket_dir: Option<PathBuf>,
    /// `pg1-user`.
    #[serde(default = "default_pg_user")]
    pub pg_user: String,
    /// `compress-type` (`gz`, `lz4`, `zst`, `none`); pgBackRest's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress_type: Option<String>,
    /// `start-fast`: ask for an immediate checkpoint at backup start.
    #[serde(default = "default_true")]
    pub start_fast: bool,
    /// `archive-timeout` in seconds (how long backups wait for their WAL).
    #[serde(default = "default_archive_timeout_s")]
    pub archive_timeout_s: u32,
    /// The pgBackRest program.
    #[serde(default = "default_program")]
    pub program: PathBuf,
}

fn default_process_max() -> u32 {
    2
}
fn default_pg_user() -> String {
    "postgres".into()
}
fn default_true() -> bool {
    true
}
fn default_archive_timeout_s() -> u32 {
    120
}
fn default_program() -> PathBuf {
    PathBuf::from("pgbackrest")
}

impl PgBackRestConfig {
    /// A configuration with defaults for everything but the essentials.
    pub fn new(
        stanza: &str,
        base_dir: &Path,
        repo_path: &Path,
        pg_data_dir: &Path,
        pg_port: u16,
    ) -> Self {
        Self {
            stanza: stanza.to_owned(),
            base_dir: base_dir.to_owned(),
            repo_path: repo_path.to_owned(),
            retention_full: None,
            retention_diff: None,
            process_max: default_process_max(),
            pg_data_dir: pg_data_dir.to_owned(),
            pg_port,
            pg_socket_dir: None,
            pg_user: default_pg_user(),
            compress_type: None,
            start_fast: true,
            archive_timeout_s: default_archive_timeout_s(),
            program: default_program(),
        }
    }

    /// Path of the generated configuration file.
    pub fn config_file(&self) -> PathBuf {
        self.base_dir.join("pgbackrest.conf")
    }

    /// The configuration file text.
    pub fn render(&self) -> String {
        let mut g = String::from("[global]\n");
        let mut line = |k: &str, v: &dyn std::fmt::Display| g.push_str(&format!("{k}={v}\n"));
        line("repo1-path", &self.repo_path.display());
        if let Some(n) = self.retention_full {
            line("repo1-retention-full", &n);
        }
        if let Some(n) = self.retention_diff {
            line("repo1-retention-diff", &n);
        }
        line("process-max", &self.process_max);
        line("log-path", &self.base_dir.join("log").display());
        line("lock-path", &self.base_dir.join("lock").display());
        line("spool-path", &self.base_dir.join("spool").display());
        line("log-level-console", &"info");
        line("log-level-stderr", &"warn");
        line("log-level-file", &"detail");
        line("start-fast", &if self.start_fast { "y" } else { "n" });
        line("archive-timeout", &self.archive_timeout_s);
        if let Some(c) = &self.compress_type {
            line("compress-type", c);
        }
        g.push_str(&format!("\n[{}]\n", self.stanza));
        g.push_str(&format!("pg1-path={}\n", self.pg_data_dir.display()));
        g.push_str(&format!("pg1-port={}\n", self.pg_port));
        if let Some(s) = &self.pg_socket_dir {
            g.push_str(&format!("pg1-socket-path={}\n", s.display()));
        }
        g.push_str(&format!("pg1-user={}\n", self.pg_user));
        g
    }
}

/// The pgBackRest [`BackupTool`].
#[derive(Debug)]
pub struct PgBackRest {
    config: PgBackRestConfig,
    run_as: RunAs,
    timeout: Duration,
}

impl PgBackRest {
    /// Writes the configuration file (and its directories) and returns the tool. Runs
    /// pgBackRest as the `postgres` user when we are root.
    pub fn new(config: PgBackRestConfig) -> Result<Self> {
        Self::with_user(config, RunAs::postgres_if_root()?)
    }

    /// Like [`Self::new`] with an explicit OS user.
    pub fn with_user(config: PgBackRestConfig, run_as: RunAs) -> Result<Self> {
        if config.stanza.is_empty()
            || !config
                .stanza
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::Config(format!(
                "bad stanza name {:?}",
                config.stanza
            )));
        }
        for dir in ["", "log", "lock", "spool"] {
            run_as.create_private_dir(&config.base_dir.join(dir))?;
        }
        // The server process (postgres) reads the file for archive-push.
        run_as.write_file(&config.config_file(), &config.render())?;
        Ok(Self {
            config,
            run_as,
            timeout: Duration::from_secs(6 * 3600),
        })
    }

    /// Sets the limit for each pgBackRest run (default six hours).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &PgBackRestConfig {
        &self.config
    }

    fn command(&self, command: &str) -> Invocation {
        Invocation::new(TOOL, command, self.config.program.clone())
            .arg(format!("--config={}", self.config.config_file().display()))
            .arg(format!("--stanza={}", self.config.stanza))
            .timeout(self.timeout)
    }

    /// `archive_command` for the server.
    pub fn archive_command(&self) -> String {
        format!(
            "{} --config={} --stanza={} archive-push %p",
            self.config.program.display(),
            self.config.config_file().display(),
            self.config.stanza
        )
    }

    /// `restore_command` for a server recovering from this repository.
    pub fn restore_command(&self) -> String {
        format!(
            "{} --config={} --stanza={} archive-get %f \"%p\"",
            self.config.program.display(),
            self.config.config_file().display(),
            self.config.stanza
        )
    }

    /// Runs `pgbackrest info --output=json` and returns its raw text.
    pub async fn info_json(&self) -> Result<String> {
        let out = self
            .command("info")
            .args(["--output=json", "info"])
            .run(&self.run_as)
            .await?;
        Ok(out.stdout)
    }

    fn restore_args(&self, request: &RestoreRequest) -> Vec<String> {
        let mut args = vec![format!("--pg1-path={}", request.data_dir.display())];
        if let Some(set) = &request.backup_id {
            args.push(format!("--set={set}"));
        }
        if let Some(standby) = &request.standby {
            args.push("--type=standby".into());
            args.push(format!(
                "--recovery-option=primary_conninfo={}",
                standby.primary_conninfo
            ));
            if let Some(slot) = &standby.primary_slot_name {
                args.push(format!("--recovery-option=primary_slot_name={slot}"));
            }
            return args;
        }
        let action = format!("--target-action={}", request.target_action.as_str());
        match &request.target {
            RestoreTarget::Latest => args.push("--type=default".into()),
            RestoreTarget::Immediate => {
                args.extend(["--type=immediate".into(), action]);
            }
            RestoreTarget::Time(t) => {
                args.extend([
                    "--type=time".into(),
                    format!("--target={}", pg_timestamp(t)),
                    action,
                ]);
            }
            RestoreTarget::Lsn(l) => {
                args.extend(["--type=lsn".into(), format!("--target={l}"), action]);
            }
            RestoreTarget::Name(n) => {
                args.extend(["--type=name".into(), format!("--target={n}"), action]);
            }
        }
        if request.disable_archiving {
            args.push("--archive-mode=off".into());
        }
        args
    }
}

#[async_trait]
impl BackupTool for PgBackRest {
    fn name(&self) -> &str {
        TOOL
    }

    fn supported_kinds(&self) -> &[BackupKind] {
        &[
            BackupKind::Full,
            BackupKind::Differential,
            BackupKind::Incremental,
        ]
    }

    fn server_parameters(&self) -> Vec<ServerParameter> {
        vec![
            ServerParameter::restart("wal_level", "replica"),
            ServerParameter::restart("archive_mode", "on"),
            ServerParameter::reload("archive_command", self.archive_command()),
        ]
    }

    async fn prepare(&self) -> Result<()> {
        self.run_as.create_private_dir(&self.config.repo_path)?;
        self.command("stanza-create")
            .arg("stanza-create")
            .run(&self.run_as)
            .await?;
        Ok(())
    }

    async fn check(&self) -> Result<CheckReport> {
        let out = self.command("check").arg("check").run(&self.run_as).await?;
        Ok(CheckReport {
            ok: true,
            output_tail: out.combined_tail(),
        })
    }

    async fn backup(&self, kind: BackupKind) -> Result<BackupOutcome> {
        let before = self.list().await.unwrap_or_default();
        let out = self
            .command("backup")
            .args([
                "backup".to_owned(),
                format!("--type={}", kind.pgbackrest_name()),
            ])
            .run(&self.run_as)
            .await?;
        let after = self.list().await?;
        let backup = after
            .into_iter()
            .rev()
            .find(|b| !before.iter().any(|o| o.id == b.id));
        Ok(BackupOutcome {
            backup,
            output_tail: out.combined_tail(),
        })
    }

    async fn list(&self) -> Result<Vec<BackupInfo>> {
        parse_info(&self.info_json().await?, &self.config.stanza)
    }

    async fn restore(&self, request: &RestoreRequest) -> Result<RestoreOutcome> {
        prepare_empty_data_dir(&request.data_dir, &self.run_as)?;
        let out = self
            .command("restore")
            .arg("restore")
            .args(self.restore_args(request))
            .run(&self.run_as)
            .await?;
        Ok(RestoreOutcome {
            backup_id: request.backup_id.clone(),
            output_tail: out.combined_tail(),
        })
    }

    async fn expire(&self, retention: &Retention) -> Result<ExpireOutcome> {
        let before = self.list().await?;
        let mut tail = String::new();
        if retention.full_count.is_some() || retention.differential_count.is_some() {
            let mut cmd = self.command("expire").arg("expire");
            if let Some(n) = retention.full_count {
                cmd = cmd.arg(format!("--repo1-retention-full={}", n.max(1)));
            }
            if let Some(n) = retention.differential_count {
                cmd = cmd.arg(format!("--repo1-retention-diff={}", n.max(1)));
            }
            tail.push_str(&cmd.run(&self.run_as).await?.combined_tail());
        }
        if retention.max_age.is_some() {
            let now = Utc::now();
            let current = self.list().await?;
            let by_age = Retention {
                max_age: retention.max_age,
                ..Retention::default()
            };
            // Expire newest-first so dependents go before what they depend on.
            for id in retention::plan(&current, &by_age, now).into_iter().rev() {
                let out = self
                    .command("expire")
                    .args(["expire".to_owned(), format!("--set={id}")])
                    .run(&self.run_as)
                    .await?;
                tail.push_str(&out.combined_tail());
            }
        }
        let after = self.list().await?;
        Ok(ExpireOutcome {
            removed_ids: before
                .into_iter()
                .filter(|b| !after.iter().any(|a| a.id == b.id))
                .map(|b| b.id)
                .collect(),
            output_tail: crate::exec::tail(&tail),
        })
    }
}

#[derive(Deserialize)]
struct InfoStanza {
    name: String,
    #[serde(default)]
    backup: Vec<InfoBackup>,
}

#[derive(Deserialize)]
struct InfoBackup {
    label: String,
    #[serde(rename = "type")]
    kind: String,
    prior: Option<String>,
    timestamp: InfoTimestamp,
    #[serde(default)]
    lsn: Option<InfoLsn>,
    #[serde(default)]
    archive: Option<InfoArchive>,
    #[serde(default)]
    info: Option<InfoSizes>,
}

#[derive(Deserialize)]
struct InfoTimestamp {
    start: i64,
    stop: i64,
}

#[derive(Deserialize)]
struct InfoLsn {
    start: Option<String>,
    stop: Option<String>,
}

#[derive(Deserialize)]
struct InfoArchive {
    start: Option<String>,
}

#[derive(Deserialize)]
struct InfoSizes {
    size: Option<u64>,
    repository: Option<InfoRepoSize>,
}

#[derive(Deserialize)]
struct InfoRepoSize {
    delta: Option<u64>,
}

fn epoch(seconds: i64, what: &str) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp(seconds, 0)
        .ok_or_else(|| Error::parse("pgbackrest info", format!("bad {what} timestamp {seconds}")))
}

/// Parses `pgbackrest info --output=json` for one stanza, oldest backup first.
pub fn parse_info(json: &str, stanza: &str) -> Result<Vec<BackupInfo>> {
    let stanzas: Vec<InfoStanza> =
        serde_json::from_str(json).map_err(|e| Error::parse("pgbackrest info", e))?;
    let Some(st) = stanzas.into_iter().find(|s| s.name == stanza) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(st.backup.len());
    for b in st.backup {
        let kind: BackupKind = b
            .kind
            .parse()
            .map_err(|_| Error::parse("pgbackrest info", format!("backup type {:?}", b.kind)))?;
        let lsn = |s: Option<&String>| -> Result<Option<Lsn>> {
            s.map(|t| {
                t.parse::<Lsn>()
                    .map_err(|e| Error::parse("pgbackrest info lsn", e))
            })
            .transpose()
        };
        let (lsn_start, lsn_stop) = match &b.lsn {
            Some(l) => (lsn(l.start.as_ref())?, lsn(l.stop.as_ref())?),
            None => (None, None),
        };
        let timeline = b
            .archive
            .as_ref()
            .and_then(|a| a.start.as_deref())
            .and_then(|wal| wal.get(0..8))
            .and_then(|tli| u32::from_str_radix(tli, 16).ok())
            .map(Timeline);
        out.push(BackupInfo {
            id: b.label,
            kind,
            parent_id: b.prior,
            start_time: epoch(b.timestamp.start, "start")?,
            stop_time: epoch(b.timestamp.stop, "stop")?,
            lsn_start,
            lsn_stop,
            timeline,
            size_bytes: b.info.as_ref().and_then(|i| i.size),
            repo_size_bytes: b
                .info
                .as_ref()
                .and_then(|i| i.repository.as_ref())
                .and_then(|r| r.delta),
        });
    }
    out.sort_by(|a, b| {
        a.start_time
            .cmp(&b.start_time)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1",
      "max":"000000010000000000000006","min":"000000010000000000000003"}],
      "backup":[
        {"archive":{"start":"000000010000000000000003","stop":"000000010000000000000003"},
         "backrest":{"format":5,"version":"2.45"},"database":{"id":1,"repo-key":1},
         "error":false,"info":{"delta":23000000,"repository":{"delta":3000000,"size":3000000},"size":23000000},
         "label":"20261122-023400F","lsn":{"start":"0/3000028","stop":"0/3000100"},
         "prior":null,"reference":null,"timestamp":{"start":1795314840,"stop":1795314843},"type":"full"},
        {"archive":{"start":"000000010000000000000005","stop":"000000010000000000000005"},
         "backrest":{"format":5,"version":"2.45"},"database":{"id":1,"repo-key":1},
         "error":false,"info":{"delta":8192,"repository":{"delta":400,"size":3000000},"size":23000000},
         "label":"20261122-023400F_20261122-023410I","lsn":{"start":"0/5000028","stop":"0/5000100"},
         "prior":"20261122-023400F","reference":["20261122-023400F"],
         "timestamp":{"start":1795314850,"stop":1795314851},"type":"incr"}],
      "cipher":"none","db":[{"id":1,"repo-key":1,"system-id":7,"version":"15"}],
      "name":"main","repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}}],
      "status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]"#;

    #[test]
    fn parses_info() {
        let list = parse_info(SAMPLE, "main").expect("parses");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].kind, BackupKind::Full);
        assert_eq!(list[0].lsn_start, Some("0/3000028".parse().expect("lsn")));
        assert_eq!(list[0].timeline, Some(Timeline(1)));
        assert_eq!(list[0].size_bytes, Some(23_000_000));
        assert_eq!(list[1].kind, BackupKind::Incremental);
        assert_eq!(list[1].parent_id.as_deref(), Some("20261122-023400F"));
        assert_eq!(list[1].repo_size_bytes, Some(400));
        assert!(parse_info(SAMPLE, "other").expect("parses").is_empty());
        assert!(parse_info("{", "main").is_err());
    }

    proptest::proptest! {
        #[test]
        fn info_parser_never_panics(text in "\\PC{0,200}") {
            let _ = parse_info(&text, "main");
        }

        #[test]
        fn info_parser_survives_mutations(cut in 0usize..SAMPLE.len(), byte in 0u8..128) {
            let mut bytes = SAMPLE.as_bytes().to_vec();
            bytes[cut] = byte;
            let _ = parse_info(&String::from_utf8_lossy(&bytes), "main");
        }
    }

    #[test]
    fn renders_config() {
        let mut c = PgBackRestConfig::new(
            "main",
            Path::new("/b"),
            Path::new("/repo"),
            Path::new("/data"),
            5433,
        );
        c.retention_full = Some(2);
        c.pg_socket_dir = Some("/sock".into());
        let text = c.render();
        assert!(text.contains("repo1-path=/repo\n"));
        assert!(text.contains("repo1-retention-full=2\n"));
        assert!(text.contains(
            "[main]\npg1-path=/data\npg1-port=5433\npg1-socket-path=/sock\npg1-user=postgres\n"
        ));
    }
}
