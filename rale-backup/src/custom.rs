//! Backups through the integrator's own commands ("hooks").
//!
//! Each hook is a shell command line run with `sh -c` as the `postgres` user when we are
//! root. Before running it, these placeholders are replaced by **already shell-quoted**
//! values (do not put quotes around them); the same values are exported as environment
//! variables:
//!
//! | placeholder | environment | value |
//! | --- | --- | --- |
//! | `%D` | `RALE_PGDATA` | data directory of the server backed up |
//! | `%d` | `RALE_DEST_DIR` | destination data directory of a restore |
//! | `%i` | `RALE_BACKUP_ID` | backup id (new id for `backup`, chosen id for `restore`/`delete`) |
//! | `%k` | `RALE_BACKUP_KIND` | `full`, `differential`, `incremental` |
//! | `%t` | `RALE_TARGET_TIME` | restore target time (`2026-11-22 02:34:06.000000+00`), empty if none |
//! | `%l` | `RALE_TARGET_LSN` | restore target LSN, empty if none |
//! | `%n` | `RALE_TARGET_NAME` | restore point name, empty if none |
//! | `%a` | `RALE_TARGET_ACTION` | `promote`, `pause`, `shutdown` |
//! | `%r` | `RALE_REPO_DIR` | the repository directory of the configuration |
//! | `%H` | `RALE_PGHOST` | server host or socket directory |
//! | `%P` | `RALE_PGPORT` | server port |
//! | `%U` | `RALE_PGUSER` | user to connect as |
//! | `%%` | | a literal `%` |
//!
//! A backup hook may print lines `RALE_LSN_START=X/Y`, `RALE_LSN_STOP=X/Y`,
//! `RALE_TIMELINE=n` and `RALE_SIZE_BYTES=n` on standard output; they are recorded in
//! the catalog (`<state_dir>/catalog.json`), which is how [`BackupTool::list`] answers.
//! After the restore hook has put the files in place, recovery settings
//! (`restore_command` from [`HookConfig::wal_restore_command`], targets, standby
//! settings) and the signal file are written by this crate.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rale::{Lsn, Timeline};
use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::exec::{Invocation, RunAs};
use crate::recovery::{append_auto_conf, configure_recovery, prepare_empty_data_dir};
use crate::retention;
use crate::tool::BackupTool;
use crate::types::{
    BackupInfo, BackupKind, BackupOutcome, CheckReport, ExpireOutcome, RestoreOutcome,
    RestoreRequest, RestoreTarget, Retention, ServerParameter, pg_timestamp,
};
use crate::{Error, Result};

const TOOL: &str = "custom";

/// The hooks and what they need to know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookConfig {
    /// Where the catalog of backups is kept (ours, not the hooks').
    pub state_dir: PathBuf,
    /// Takes a backup (required).
    pub backup: String,
    /// Puts backup `%i` into the empty directory `%d` (required).
    pub restore: String,
    /// Checks the setup; exit 0 means fine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Removes backup `%i` (needed for retention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<String>,
    /// The server's `archive_command`, when WAL archiving is part of the setup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_command: Option<String>,
    /// `restore_command` written into restored servers (needed for point-in-time
    /// targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_restore_command: Option<String>,
    /// Kinds the backup hook understands (`%k`); `[full]` when empty.
    #[serde(default)]
    pub kinds: Vec<BackupKind>,
    /// `%r`.
    #[serde(default)]
    pub repo_dir: PathBuf,
    /// `%D`.
    #[serde(default)]
    pub pg_data_dir: PathBuf,
    /// `%H`.
    #[serde(default)]
    pub pg_host: String,
    /// `%P`.
    #[serde(default)]
    pub pg_port: u16,
    /// `%U`.
    #[serde(default)]
    pub pg_user: String,
    /// Limit per hook run, in seconds.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
}

fn default_timeout_s() -> u64 {
    6 * 3600
}

#[derive(Default, Serialize, Deserialize)]
struct Catalog {
    backups: Vec<BackupInfo>,
}

/// The custom-hook [`BackupTool`].
#[derive(Debug)]
pub struct CustomTool {
    config: HookConfig,
    kinds: Vec<BackupKind>,
    run_as: RunAs,
    catalog_lock: tokio::sync::Mutex<()>,
}

/// Values substituted into a hook.
#[derive(Clone, Debug, Default)]
struct Vars {
    dest_dir: String,
    backup_id: String,
    kind: String,
    target_time: String,
    target_lsn: String,
    target_name: String,
    target_action: String,
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl CustomTool {
    /// Checks the configuration and returns the tool; runs hooks as the `postgres` user
    /// when we are root.
    pub fn new(config: HookConfig) -> Result<Self> {
        Self::with_user(config, RunAs::postgres_if_root()?)
    }

    /// Like [`Self::new`] with an explicit OS user.
    pub fn with_user(config: HookConfig, run_as: RunAs) -> Result<Self> {
        if config.backup.trim().is_empty() || config.restore.trim().is_empty() {
            return Err(Error::Config(
                "custom tool needs backup and restore hooks".into(),
            ));
        }
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|e| Error::io("create directory", &config.state_dir, e))?;
        let kinds = if config.kinds.is_empty() {
            vec![BackupKind::Full]
        } else {
            config.kinds.clone()
        };
        Ok(Self {
            config,
            kinds,
            run_as,
            catalog_lock: tokio::sync::Mutex::new(()),
        })
    }

    fn catalog_path(&self) -> PathBuf {
        self.config.state_dir.join("catalog.json")
    }

    fn load(&self) -> Result<Catalog> {
        Ok(atomic::read_json(&self.catalog_path())?.unwrap_or_default())
    }

    /// Expands placeholders in `template`.
    fn expand(&self, template: &str, vars: &Vars) -> String {
        let mut out = String::with_capacity(template.len() + 64);
        let mut chars = template.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let value = match chars.next() {
                Some('%') => {
                    out.push('%');
                    continue;
                }
                Some('D') => self.config.pg_data_dir.display().to_string(),
                Some('d') => vars.dest_dir.clone(),
                Some('i') => vars.backup_id.clone(),
                Some('k') => vars.kind.clone(),
                Some('t') => vars.target_time.clone(),
                Some('l') => vars.target_lsn.clone(),
                Some('n') => vars.target_name.clone(),
                Some('a') => vars.target_action.clone(),
                Some('r') => self.config.repo_dir.display().to_string(),
                Some('H') => self.config.pg_host.clone(),
                Some('P') => self.config.pg_port.to_string(),
                Some('U') => self.config.pg_user.clone(),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                    continue;
                }
                None => {
                    out.push('%');
                    break;
                }
            };
            out.push_str(&shell_quote(&value));
        }
        out
    }

    fn hook(&self, name: &str, template: &str, vars: &Vars) -> Invocation {
        let script = self.expand(template, vars);
        Invocation::new(TOOL, name, "sh")
            .args(["-c".to_owned(), script])
            .env("RALE_PGDATA", &self.config.pg_data_dir)
            .env("RALE_DEST_DIR", &vars.dest_dir)
            .env("RALE_BACKUP_ID", &vars.backup_id)
            .env("RALE_BACKUP_KIND", &vars.kind)
            .env("RALE_TARGET_TIME", &vars.target_time)
            .env("RALE_TARGET_LSN", &vars.target_lsn)
            .env("RALE_TARGET_NAME", &vars.target_name)
            .env("RALE_TARGET_ACTION", &vars.target_action)
            .env("RALE_REPO_DIR", &self.config.repo_dir)
            .env("RALE_PGHOST", &self.config.pg_host)
            .env("RALE_PGPORT", self.config.pg_port.to_string())
            .env("RALE_PGUSER", &self.config.pg_user)
            .timeout(Duration::from_secs(self.config.timeout_s))
    }

    fn new_id(&self, catalog: &Catalog, kind: BackupKind) -> String {
        let stamp = Utc::now().format("%Y%m%dT%H%M%S%3fZ");
        let base = format!("{stamp}-{}", kind.pgbackrest_name());
        let mut id = base.clone();
        let mut n = 1;
        while catalog.backups.iter().any(|b| b.id == id) && n < 1000 {
            n += 1;
            id = format!("{base}-{n}");
        }
        id
    }
}

/// Reads `RALE_*=value` report lines from a backup hook's output into `info`.
fn apply_report(stdout: &str, info: &mut BackupInfo) {
    for line in stdout.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key {
            "RALE_LSN_START" => info.lsn_start = value.parse::<Lsn>().ok(),
            "RALE_LSN_STOP" => info.lsn_stop = value.parse::<Lsn>().ok(),
            "RALE_TIMELINE" => info.timeline = value.parse::<u32>().ok().map(Timeline),
            "RALE_SIZE_BYTES" => info.size_bytes = value.parse().ok(),
            _ => {}
        }
    }
}

#[async_trait]
impl BackupTool for CustomTool {
    fn name(&self) -> &str {
        TOOL
    }

    fn supported_kinds(&self) -> &[BackupKind] {
        &self.kinds
    }

    fn server_parameters(&self) -> Vec<ServerParameter> {
        match &self.config.archive_command {
            Some(cmd) => vec![
                ServerParameter::restart("wal_level", "replica"),
                ServerParameter::restart("archive_mode", "on"),
                ServerParameter::reload("archive_command", cmd.clone()),
            ],
            None => vec![ServerParameter::restart("wal_level", "replica")],
        }
    }

    async fn prepare(&self) -> Result<()> {
        if !self.config.repo_dir.as_os_str().is_empty() {
            self.run_as.create_private_dir(&self.config.repo_dir)?;
        }
        Ok(())
    }

    async fn check(&self) -> Result<CheckReport> {
        let Some(check) = &self.config.check else {
            return Ok(CheckReport {
                ok: true,
                output_tail: "no check hook configured".into(),
            });
        };
        let out = self
            .hook("check", check, &Vars::default())
            .run(&self.run_as)
            .await?;
        Ok(CheckReport {
            ok: true,
            output_tail: out.combined_tail(),
        })
    }

    async fn backup(&self, kind: BackupKind) -> Result<BackupOutcome> {
        if !self.kinds.contains(&kind) {
            return Err(Error::Unsupported {
                tool: TOOL.into(),
                what: format!("{kind} backups"),
            });
        }
        let _guard = self.catalog_lock.lock().await;
        let mut catalog = self.load()?;
        let id = self.new_id(&catalog, kind);
        let vars = Vars {
            backup_id: id.clone(),
            kind: kind.to_string(),
            ..Vars::default()
        };
        let start_time = Utc::now();
        let out = self
            .hook("backup", &self.config.backup, &vars)
            .run(&self.run_as)
            .await?;
        let mut info = BackupInfo {
            id,
            kind,
            parent_id: if kind == BackupKind::Full {
                None
            } else {
                catalog.backups.last().map(|b| b.id.clone())
            },
            start_time,
            stop_time: Utc::now(),
            lsn_start: None,
            lsn_stop: None,
            timeline: None,
            size_bytes: None,
            repo_size_bytes: None,
        };
        apply_report(&out.stdout, &mut info);
        catalog.backups.push(info.clone());
        atomic::write_json(&self.catalog_path(), &catalog)?;
        Ok(BackupOutcome {
            backup: Some(info),
            output_tail: out.combined_tail(),
        })
    }

    async fn list(&self) -> Result<Vec<BackupInfo>> {
        let _guard = self.catalog_lock.lock().await;
        Ok(self.load()?.backups)
    }

    async fn restore(&self, request: &RestoreRequest) -> Result<RestoreOutcome> {
        let list = self.list().await?;
        let chosen = match (&request.backup_id, &request.target) {
            (Some(id), _) => list.iter().find(|b| &b.id == id),
            (None, RestoreTarget::Time(t)) => list.iter().rev().find(|b| b.stop_time <= *t),
            (None, _) => list.last(),
        };
        let backup = chosen.ok_or_else(|| {
            Error::BackupNotFound(request.backup_id.clone().unwrap_or_else(|| "latest".into()))
        })?;
        let needs_wal = request.standby.is_some() || request.target != RestoreTarget::Latest;
        if needs_wal && self.config.wal_restore_command.is_none() && request.standby.is_none() {
            return Err(Error::Unsupported {
                tool: TOOL.into(),
                what: "restore targets without wal_restore_command".into(),
            });
        }
        prepare_empty_data_dir(&request.data_dir, &self.run_as)?;
        let (t, l, n) = match &request.target {
            RestoreTarget::Time(t) => (pg_timestamp(t), String::new(), String::new()),
            RestoreTarget::Lsn(l) => (String::new(), l.to_string(), String::new()),
            RestoreTarget::Name(n) => (String::new(), String::new(), n.clone()),
            _ => Default::default(),
        };
        let vars = Vars {
            dest_dir: request.data_dir.display().to_string(),
            backup_id: backup.id.clone(),
            kind: backup.kind.to_string(),
            target_time: t,
            target_lsn: l,
            target_name: n,
            target_action: request.target_action.as_str().to_owned(),
        };
        let out = self
            .hook("restore", &self.config.restore, &vars)
            .run(&self.run_as)
            .await?;
        if needs_wal || self.config.wal_restore_command.is_some() {
            configure_recovery(
                request,
                self.config.wal_restore_command.as_deref(),
                &self.run_as,
            )?;
        }
        if request.disable_archiving {
            append_auto_conf(
                &request.data_dir,
                &[("archive_mode".to_owned(), "off".to_owned())],
                &self.run_as,
            )?;
        }
        Ok(RestoreOutcome {
            backup_id: Some(backup.id.clone()),
            output_tail: out.combined_tail(),
        })
    }

    async fn expire(&self, retention: &Retention) -> Result<ExpireOutcome> {
        let Some(delete) = &self.config.delete else {
            return Err(Error::Unsupported {
                tool: TOOL.into(),
                what: "retention without a delete hook".into(),
            });
        };
        let _guard = self.catalog_lock.lock().await;
        let mut catalog = self.load()?;
        let doomed = retention::plan(&catalog.backups, retention, Utc::now());
        let mut tail = String::new();
        // Newest first, so nothing is left depending on a removed backup if a hook fails.
        for id in doomed.iter().rev() {
            let vars = Vars {
                backup_id: id.clone(),
                ..Vars::default()
            };
            let out = self.hook("delete", delete, &vars).run(&self.run_as).await?;
            tail.push_str(&out.combined_tail());
            catalog.backups.retain(|b| &b.id != id);
            atomic::write_json(&self.catalog_path(), &catalog)?;
        }
        Ok(ExpireOutcome {
            removed_ids: doomed,
            output_tail: crate::exec::tail(&tail),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(dir: &std::path::Path, backup: &str) -> CustomTool {
        let config = HookConfig {
            state_dir: dir.join("state"),
            backup: backup.into(),
            restore: "cp -r %r/%i/. %d".into(),
            check: Some("test -d %r".into()),
            delete: Some("rm -rf %r/%i".into()),
            archive_command: None,
            wal_restore_command: None,
            kinds: vec![],
            repo_dir: dir.join("repo"),
            pg_data_dir: dir.join("it's data"),
            pg_host: "/tmp".into(),
            pg_port: 5432,
            pg_user: "postgres".into(),
            timeout_s: 60,
        };
        CustomTool::with_user(config, RunAs::current().expect("user")).expect("tool")
    }

    #[test]
    fn placeholders_are_quoted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = tool(dir.path(), "x");
        let vars = Vars {
            backup_id: "b1".into(),
            ..Vars::default()
        };
        let s = t.expand("tar -C %D -cf %r/%i.tar . && echo 100%% %q", &vars);
        assert!(s.contains("'\\''s data'"), "{s}");
        assert!(s.ends_with("/repo'/'b1'.tar . && echo 100% %q"), "{s}");
    }

    #[tokio::test]
    async fn catalog_round_trip_with_report_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = tool(
            dir.path(),
            "mkdir -p %r/%i && echo data > %r/%i/PG_VERSION && echo RALE_LSN_START=0/10 && echo RALE_SIZE_BYTES=5",
        );
        t.prepare().await.expect("prepare");
        assert!(t.check().await.expect("check").ok);
        let first = t
            .backup(BackupKind::Full)
            .await
            .expect("backup")
            .backup
            .expect("info");
        assert_eq!(first.lsn_start, Some(Lsn(0x10)));
        assert_eq!(first.size_bytes, Some(5));
        let second = t
            .backup(BackupKind::Full)
            .await
            .expect("backup")
            .backup
            .expect("info");
        assert_ne!(first.id, second.id);
        assert_eq!(t.list().await.expect("list").len(), 2);
        assert!(matches!(
            t.backup(BackupKind::Incremental).await,
            Err(Error::Unsupported { .. })
        ));

        let dest = dir.path().join("restored");
        t.restore(&RestoreRequest::latest(&dest))
            .await
            .expect("restore");
        assert!(dest.join("PG_VERSION").exists());

        let removed = t
            .expire(&Retention {
                full_count: Some(1),
                ..Retention::default()
            })
            .await
            .expect("expire");
        assert_eq!(removed.removed_ids, vec![first.id.clone()]);
        assert!(!dir.path().join("repo").join(&first.id).exists());
        let left = t.list().await.expect("list");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, second.id);
    }

    proptest::proptest! {
        #[test]
        fn report_lines_round_trip(start in proptest::prelude::any::<u64>(), len in 0u64..1 << 40,
                                   tli in 1u32..1000, size in proptest::prelude::any::<u64>(),
                                   noise in "[ -~]{0,40}") {
            let stop = Lsn(start.saturating_add(len));
            let text = format!("{noise}\nRALE_LSN_START={}\n  RALE_LSN_STOP={stop}\nRALE_TIMELINE={tli}\nRALE_SIZE_BYTES={size}\n",
                Lsn(start));
            let mut info = BackupInfo {
                id: "x".into(), kind: BackupKind::Full, parent_id: None,
                start_time: Utc::now(), stop_time: Utc::now(),
                lsn_start: None, lsn_stop: None, timeline: None, size_bytes: None, repo_size_bytes: None,
            };
            apply_report(&text, &mut info);
            proptest::prop_assert_eq!(info.lsn_start, Some(Lsn(start)));
            proptest::prop_assert_eq!(info.lsn_stop, Some(stop));
            proptest::prop_assert_eq!(info.timeline, Some(Timeline(tli)));
            proptest::prop_assert_eq!(info.size_bytes, Some(size));
        }
    }

    #[tokio::test]
    async fn failing_hook_reports_its_stderr() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = tool(dir.path(), "echo 'disk on fire' >&2; exit 4");
        let err = t.backup(BackupKind::Full).await.expect_err("fails");
        assert!(err.to_string().contains("disk on fire"), "{err}");
        assert!(t.list().await.expect("list").is_empty());
    }
}
