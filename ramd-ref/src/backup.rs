//! Backups on this node: [`BackupService`] runs jobs with [`rale_backup`] (the tool named
//! by the `[backup]` section, [`BackupConfig`]), fires the schedules and prepares the
//! repository. The API serves it under `/api/v1/backup/*` (`ramd_ref::api::backup`).
//!
//! Schedules fire only once the daemon calls [`BackupService::start_schedules`] with a
//! view of the members (e.g. [`snapshot_members`]). `POST /api/v1/backup/schedule`
//! replaces this node's schedules and retention ([`BackupService::set_schedules`]): they
//! are kept in the job directory ([`SCHEDULE_FILE`]) across agent restarts, and not sent
//! to the other members.
//!
//! # WAL archiving and the repository
//!
//! A backup tool needs settings in PostgreSQL (pgBackRest and Barman: `archive_mode = on`
//! and an `archive_command` that pushes WAL into their repository).
//! [`BackupService::add_server_parameters`] adds them to the parameters of the
//! configuration file ramd writes (`rale.conf`) where the node's `[postgresql.parameters]`
//! does not set them; cluster-wide parameters (`ALTER SYSTEM`) override both.
//! The repository is prepared (pgBackRest `stanza-create`) by
//! [`BackupService::prepare_when_primary`] as soon as this node is the healthy primary,
//! and in any case before the first backup (see [`rale_backup::jobs`]). pgBackRest backs
//! up the primary only: `start` on another node answers 409 (`code: not_primary`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rale::NodeId;
use rale_backup::api::{ScheduleRequest, ScheduleResponse, ScheduleStatus};
use rale_backup::schedule::{ClusterView, MemberView, Schedule, ScheduleRunner};
use rale_backup::{
    BackupTool, Barman, CustomTool, JobManager, PgBackRest, Retention, ScheduleSpec, Scheduler,
};
use tokio::sync::watch;

use crate::config::{BackupConfig, ToolKind};
use crate::snapshot::NodeSnapshot;

/// Backups on this node: the job manager (which holds the tool), the schedules and the
/// runner that fires them.
pub struct BackupService {
    jobs: JobManager,
    schedules: Mutex<Vec<ScheduleSpec>>,
    runner: Mutex<Option<ScheduleRunner>>,
    /// The task preparing the repository once this node is primary.
    preparer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Data directories a restore must never write into (the node's live one).
    protected_dirs: Vec<PathBuf>,
    /// Backups run only where PostgreSQL is the primary (pgBackRest without a standby
    /// configuration): `start` refuses elsewhere.
    primary_only: bool,
    /// Where schedules set through the API are kept across restarts (`None`: memory).
    schedule_file: Option<PathBuf>,
}

/// The file, in the job directory, holding the schedules and retention last set through
/// `POST /api/v1/backup/schedule`; while it exists it takes precedence over the
/// `[backup]` section's `schedules` and `retention`.
pub const SCHEDULE_FILE: &str = "schedules.json";

/// How long [`BackupService::prepare_when_primary`] waits after a failed preparation.
pub const PREPARE_RETRY_INTERVAL: Duration = Duration::from_secs(30);

impl std::fmt::Debug for BackupService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupService")
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

fn missing(section: &str) -> rale_backup::Error {
    rale_backup::Error::Config(format!(
        "[backup.{section}] is required for tool = \"{section}\""
    ))
}

impl BackupService {
    /// A service over `jobs`, with schedules (checked) and retention. Restores into any
    /// of `protected_dirs` are refused.
    pub fn new(
        jobs: JobManager,
        schedules: Vec<ScheduleSpec>,
        retention: Option<Retention>,
        protected_dirs: Vec<PathBuf>,
    ) -> rale_backup::Result<Self> {
        Scheduler::new(schedules.clone(), Utc::now())?;
        jobs.set_retention(retention);
        Ok(Self {
            jobs,
            schedules: Mutex::new(schedules),
            runner: Mutex::new(None),
            preparer: Mutex::new(None),
            protected_dirs,
            primary_only: false,
            schedule_file: None,
        })
    }

    /// Keeps schedules set through the API in `file` (written on every change).
    pub fn with_schedule_file(mut self, file: PathBuf) -> Self {
        self.schedule_file = Some(file);
        self
    }

    /// Refuses `POST /api/v1/backup/start` (409) unless this node's PostgreSQL is the
    /// primary; [`Self::from_config`] sets it for pgBackRest, which backs up the primary.
    pub fn with_primary_only(mut self, primary_only: bool) -> Self {
        self.primary_only = primary_only;
        self
    }

    /// Builds the tool named by `config`, opens the job directory (failing jobs an
    /// earlier run left unfinished) and checks the schedules. Does not start them.
    pub fn from_config(config: &BackupConfig, node: NodeId) -> rale_backup::Result<Self> {
        let (tool, data_dir): (Arc<dyn BackupTool>, Option<PathBuf>) = match config.tool {
            ToolKind::Pgbackrest => {
                let c = config
                    .pgbackrest
                    .clone()
                    .ok_or_else(|| missing("pgbackrest"))?;
                let dir = c.pg_data_dir.clone();
                (Arc::new(PgBackRest::new(c)?), Some(dir))
            }
            ToolKind::Barman => {
                let c = config.barman.clone().ok_or_else(|| missing("barman"))?;
                (Arc::new(Barman::new(c)?), None)
            }
            ToolKind::Custom => {
                let c = config.custom.clone().ok_or_else(|| missing("custom"))?;
                let dir = (!c.pg_data_dir.as_os_str().is_empty()).then(|| c.pg_data_dir.clone());
                (Arc::new(CustomTool::new(c)?), dir)
            }
        };
        let jobs = JobManager::open(&config.job_dir, tool, Some(node))?;
        let file = config.job_dir.join(SCHEDULE_FILE);
        let saved: Option<ScheduleRequest> = rale_backup::atomic::read_json(&file)?;
        let (schedules, retention) = match saved {
            Some(saved) => {
                tracing::info!(file = %file.display(), "backup schedules set through the API override [backup] schedules");
                (saved.schedules, saved.retention)
            }
            None => (config.schedules.clone(), config.retention.clone()),
        };
        Ok(
            Self::new(jobs, schedules, retention, data_dir.into_iter().collect())?
                .with_primary_only(config.tool == ToolKind::Pgbackrest)
                .with_schedule_file(file),
        )
    }

    /// The job manager.
    pub fn jobs(&self) -> &JobManager {
        &self.jobs
    }

    /// Whether backups run only where PostgreSQL is the primary (see
    /// [`Self::with_primary_only`]).
    pub fn primary_only(&self) -> bool {
        self.primary_only
    }

    /// Whether `data_dir` is one a restore must never write into (the node's live data
    /// directory), compared after resolving links where the paths exist.
    pub fn protects(&self, data_dir: &Path) -> bool {
        let canon = |x: &Path| std::fs::canonicalize(x).unwrap_or_else(|_| x.to_owned());
        let wanted = canon(data_dir);
        self.protected_dirs.iter().any(|p| canon(p) == wanted)
    }

    /// Adds the PostgreSQL settings the tool needs ([`BackupTool::server_parameters`]:
    /// `archive_mode`, `archive_command`, `wal_level`, …) to `parameters` (the node's
    /// `[postgresql.parameters]`, which ramd writes into `rale.conf`), except those
    /// `parameters` already sets (names compared case-insensitively): the operator's
    /// value wins. Returns the names added.
    pub fn add_server_parameters(&self, parameters: &mut BTreeMap<String, String>) -> Vec<String> {
        add_tool_parameters(self.jobs.tool().server_parameters(), parameters)
    }

    /// Prepares the tool's repository (pgBackRest `stanza-create`) as soon as `view`
    /// shows `me` as the healthy primary: checks every `tick`, retries a failure after
    /// [`PREPARE_RETRY_INTERVAL`], stops once it succeeded. Until then WAL archiving fails
    /// and PostgreSQL keeps the segments. Replaces a task started earlier.
    pub fn prepare_when_primary(&self, me: NodeId, view: Arc<dyn ClusterView>, tick: Duration) {
        let jobs = self.jobs.clone();
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick.max(Duration::from_millis(10)));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while !jobs.is_prepared() {
                interval.tick().await;
                let primary = view
                    .members()
                    .iter()
                    .any(|m| m.node == me && m.role == rale::Role::Primary && m.healthy);
                if !primary {
                    continue;
                }
                if let Err(e) = jobs.prepare().await {
                    tracing::warn!(node = %me, tool = %jobs.tool().name(), error = %e,
                        retry_ms = u64::try_from(PREPARE_RETRY_INTERVAL.as_millis()).unwrap_or(u64::MAX),
                        "backup repository not prepared");
                    tokio::time::sleep(PREPARE_RETRY_INTERVAL).await;
                }
            }
        });
        if let Some(old) = self
            .preparer
            .lock()
            .expect("preparer lock poisoned")
            .replace(task)
        {
            old.abort();
        }
    }

    /// Starts firing the schedules on this node (placement decides which member runs
    /// each backup), evaluating every `tick`. Replaces a runner started earlier.
    pub fn start_schedules(&self, me: NodeId, view: Arc<dyn ClusterView>, tick: Duration) {
        let specs = self
            .schedules
            .lock()
            .expect("schedules lock poisoned")
            .clone();
        let scheduler = match Scheduler::new(specs, Utc::now()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(node = %me, error = %e, "backup schedules not started");
                return;
            }
        };
        let runner = ScheduleRunner::spawn(scheduler, self.jobs.clone(), me, view, tick);
        if let Some(old) = self
            .runner
            .lock()
            .expect("runner lock poisoned")
            .replace(runner)
        {
            old.stop();
        }
    }

    /// Schedules and retention in force, with each schedule's next run.
    pub fn schedule_status(&self) -> ScheduleResponse {
        let now = Utc::now();
        let specs = self
            .schedules
            .lock()
            .expect("schedules lock poisoned")
            .clone();
        ScheduleResponse {
            schedules: specs
                .into_iter()
                .map(|spec| ScheduleStatus {
                    next_run: Schedule::parse(spec.clone())
                        .ok()
                        .and_then(|s| s.next_after(now)),
                    spec,
                })
                .collect(),
            retention: self.jobs.retention(),
        }
    }

    /// Replaces the schedules and retention (checked first; nothing changes on error).
    pub fn set_schedules(&self, req: ScheduleRequest) -> rale_backup::Result<ScheduleResponse> {
        Scheduler::new(req.schedules.clone(), Utc::now())?;
        if let Some(file) = &self.schedule_file {
            rale_backup::atomic::write_json(file, &req)?;
        }
        if let Some(runner) = self.runner.lock().expect("runner lock poisoned").as_ref() {
            runner.replace(req.schedules.clone())?;
        }
        *self.schedules.lock().expect("schedules lock poisoned") = req.schedules;
        self.jobs.set_retention(req.retention);
        Ok(self.schedule_status())
    }
}

impl Drop for BackupService {
    fn drop(&mut self) {
        if let Ok(mut r) = self.runner.lock()
            && let Some(runner) = r.take()
        {
            runner.stop();
        }
        if let Ok(mut p) = self.preparer.lock()
            && let Some(task) = p.take()
        {
            task.abort();
        }
    }
}

/// [`BackupService::add_server_parameters`] for a list of tool parameters.
fn add_tool_parameters(
    wanted: Vec<rale_backup::ServerParameter>,
    parameters: &mut BTreeMap<String, String>,
) -> Vec<String> {
    let mut added = Vec::new();
    for p in wanted {
        let name = p.name.to_ascii_lowercase();
        if parameters.keys().any(|k| k.eq_ignore_ascii_case(&name)) {
            continue;
        }
        parameters.insert(name.clone(), p.value);
        added.push(name);
    }
    added
}

/// The members as `snapshot`'s latest cluster state shows them, for the schedule
/// placement: healthy = PostgreSQL runs (and, for a replica, streams).
pub fn snapshot_members(snapshot: watch::Receiver<Arc<NodeSnapshot>>) -> Arc<dyn ClusterView> {
    Arc::new(move || {
        let snap = snapshot.borrow().clone();
        snap.cluster
            .members
            .values()
            .map(|m| {
                let primary = snap.cluster.holder() == Some(&m.node);
                MemberView {
                    node: m.node.clone(),
                    role: if primary { rale::Role::Primary } else { m.role },
                    healthy: m.running && (primary || m.streaming),
                }
            })
            .collect::<Vec<_>>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_parameters_do_not_override_the_operator() {
        use rale_backup::ServerParameter;
        let mut params = BTreeMap::from([
            ("Archive_Command".to_string(), "/bin/true".to_string()),
            ("shared_buffers".to_string(), "32MB".to_string()),
        ]);
        let added = add_tool_parameters(
            vec![
                ServerParameter::restart("archive_mode", "on"),
                ServerParameter::reload("archive_command", "pgbackrest archive-push %p"),
            ],
            &mut params,
        );
        assert_eq!(added, vec!["archive_mode".to_string()]);
        assert_eq!(params.get("archive_mode").map(String::as_str), Some("on"));
        assert_eq!(
            params.get("Archive_Command").map(String::as_str),
            Some("/bin/true")
        );
        assert!(!params.contains_key("archive_command"));
    }

    #[test]
    fn tool_section_is_required() {
        let c = BackupConfig {
            tool: ToolKind::Pgbackrest,
            job_dir: "/nonexistent".into(),
            pgbackrest: None,
            barman: None,
            custom: None,
            schedules: Vec::new(),
            retention: None,
        };
        let e = BackupService::from_config(&c, NodeId::new("n1").expect("name"))
            .expect_err("no [backup.pgbackrest]");
        assert!(e.to_string().contains("[backup.pgbackrest]"), "{e}");
    }
}
