//! Tracked jobs: every backup, restore, expire or check runs as a [`Job`] with an id and
//! a state, persisted as one JSON file per job (written atomically) so that jobs survive
//! an agent restart. At most one heavy job (backup, restore, expire) runs per node.
//!
//! The repository is prepared on first use: before the first backup or check job of a
//! [`JobManager`] runs, it calls [`BackupTool::prepare`] (idempotent: pgBackRest
//! `stanza-create`, Barman's WAL switch) until that succeeds once, so a new cluster needs
//! no separate setup step. [`JobManager::prepare`] does the same on demand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rale::NodeId;
use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::tool::BackupTool;
use crate::types::{BackupKind, RestoreRequest, Retention};
use crate::{Error, Result};

/// The message a job found running at startup fails with.
pub const RESTARTED_MESSAGE: &str = "agent restarted during the job";

/// Finished jobs kept on disk; older ones are pruned.
pub const FINISHED_JOBS_KEPT_MAX: usize = 500;

/// A job's id (`job-20261122T023406123Z-0007`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub String);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a job does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobSpec {
    /// Take a backup.
    Backup {
        /// Full, differential or incremental.
        kind: BackupKind,
    },
    /// Restore into a data directory.
    Restore {
        /// The restore.
        request: RestoreRequest,
    },
    /// Apply retention.
    Expire {
        /// The rules.
        retention: Retention,
    },
    /// Check the tool's configuration.
    Check,
}

impl JobSpec {
    /// Heavy jobs (backup, restore, expire) run one at a time per node.
    pub fn is_heavy(&self) -> bool {
        !matches!(self, JobSpec::Check)
    }
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for the node's heavy-job slot.
    Queued,
    /// The tool is running.
    Running,
    /// Finished without error.
    Succeeded,
    /// Finished with an error (see [`Job::error`]).
    Failed,
}

impl JobState {
    /// Whether the job is over.
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }
}

/// A job record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// The node it runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeId>,
    /// The tool's name.
    pub tool: String,
    /// What it does.
    pub spec: JobSpec,
    /// The schedule that started it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Current state.
    pub state: JobState,
    /// When it was submitted.
    pub queued_at: DateTime<Utc>,
    /// When the tool started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The backup created or restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// Backups removed by retention after this job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_backup_ids: Vec<String>,
    /// The end of the tool's output.
    #[serde(default)]
    pub output_tail: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why retention after a successful backup failed (the backup itself succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_error: Option<String>,
}

impl Job {
    /// Run time in milliseconds, once finished.
    pub fn duration_ms(&self) -> Option<u64> {
        let (s, f) = (self.started_at?, self.finished_at?);
        u64::try_from((f - s).num_milliseconds()).ok()
    }
}

/// The on-disk job directory.
#[derive(Clone, Debug)]
pub struct JobStore {
    dir: PathBuf,
}

impl JobStore {
    /// Opens (creating) the directory.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, id: &JobId) -> PathBuf {
        self.dir.join(format!("{}.json", id.0))
    }

    /// Writes one job atomically.
    pub fn save(&self, job: &Job) -> Result<()> {
        atomic::write_json(&self.path(&job.id), job)
    }

    /// All jobs, oldest first. Unreadable files are skipped with a warning.
    pub fn load_all(&self) -> Result<Vec<Job>> {
        let mut jobs = Vec::new();
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| Error::io("read directory", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read directory", &self.dir, e))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with("job-") || !name.ends_with(".json") {
                continue;
            }
            match atomic::read_json::<Job>(&path) {
                Ok(Some(job)) => jobs.push(job),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping unreadable job file")
                }
            }
        }
        jobs.sort_by(|a, b| a.queued_at.cmp(&b.queued_at).then_with(|| a.id.cmp(&b.id)));
        Ok(jobs)
    }

    /// Loads all jobs and fails those an earlier agent left queued or running.
    pub fn recover(&self, now: DateTime<Utc>) -> Result<Vec<Job>> {
        let mut jobs = self.load_all()?;
        for job in &mut jobs {
            if !job.state.is_finished() {
                job.error = Some(if job.state == JobState::Running {
                    RESTARTED_MESSAGE.to_owned()
                } else {
                    "agent restarted before the job started".to_owned()
                });
                job.state = JobState::Failed;
                job.finished_at = Some(now);
                self.save(job)?;
                tracing::warn!(job = %job.id, reason = job.error.as_deref().unwrap_or(""), "job failed by restart");
            }
        }
        Ok(jobs)
    }

    fn remove(&self, id: &JobId) {
        let _ = std::fs::remove_file(self.path(id));
    }
}

struct Inner {
    store: JobStore,
    tool: Arc<dyn BackupTool>,
    node: Option<NodeId>,
    jobs: Mutex<BTreeMap<JobId, Job>>,
    heavy_slot: tokio::sync::Semaphore,
    retention: Mutex<Option<Retention>>,
    queued_max: usize,
    seq: AtomicU64,
    changed: tokio::sync::watch::Sender<u64>,
    /// Whether [`BackupTool::prepare`] succeeded once in this process.
    prepared: AtomicBool,
    /// Serialises preparations (a schedule's backup and a manual one).
    preparing: tokio::sync::Mutex<()>,
}

/// Runs jobs against one tool on one node. Cheap to clone.
#[derive(Clone)]
pub struct JobManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JobManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobManager")
            .field("tool", &self.inner.tool.name())
            .field("dir", &self.inner.store.dir)
            .finish()
    }
}

impl JobManager {
    /// Opens the job directory, failing jobs left unfinished by an earlier run.
    pub fn open(dir: &Path, tool: Arc<dyn BackupTool>, node: Option<NodeId>) -> Result<Self> {
        let store = JobStore::open(dir)?;
        let jobs = store.recover(Utc::now())?;
        let seq = jobs.len() as u64;
        let (changed, _) = tokio::sync::watch::channel(0);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                tool,
                node,
                jobs: Mutex::new(jobs.into_iter().map(|j| (j.id.clone(), j)).collect()),
                heavy_slot: tokio::sync::Semaphore::new(1),
                retention: Mutex::new(None),
                queued_max: 16,
                seq: AtomicU64::new(seq),
                changed,
                prepared: AtomicBool::new(false),
                preparing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The tool jobs run with.
    pub fn tool(&self) -> &Arc<dyn BackupTool> {
        &self.inner.tool
    }

    /// Sets the retention applied after each successful backup.
    pub fn set_retention(&self, retention: Option<Retention>) {
        *self
            .inner
            .retention
            .lock()
            .expect("retention lock poisoned") = retention.filter(|r| !r.is_empty());
    }

    /// The retention applied after each successful backup.
    pub fn retention(&self) -> Option<Retention> {
        self.inner
            .retention
            .lock()
            .expect("retention lock poisoned")
            .clone()
    }

    /// Queues a job; it starts as soon as the node's heavy-job slot is free. Needs a
    /// tokio runtime.
    pub fn submit(&self, spec: JobSpec) -> Result<JobId> {
        self.submit_from_schedule(spec, None)
    }

    /// Like [`Self::submit`], recording the schedule that started the job.
    pub fn submit_from_schedule(&self, spec: JobSpec, schedule: Option<String>) -> Result<JobId> {
        let now = Utc::now();
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let id = JobId(format!("job-{}-{n:04}", now.format("%Y%m%dT%H%M%S%3fZ")));
        let job = Job {
            id: id.clone(),
            node: self.inner.node.clone(),
            tool: self.inner.tool.name().to_owned(),
            spec,
            schedule,
            state: JobState::Queued,
            queued_at: now,
            started_at: None,
            finished_at: None,
            backup_id: None,
            removed_backup_ids: Vec::new(),
            output_tail: String::new(),
            error: None,
            retention_error: None,
        };
        {
            let mut jobs = self.inner.jobs.lock().expect("jobs lock poisoned");
            let active = jobs.values().filter(|j| !j.state.is_finished()).count();
            if active >= self.inner.queued_max {
                return Err(Error::Busy { queued: active });
            }
            self.inner.store.save(&job)?;
            jobs.insert(id.clone(), job.clone());
            prune(&self.inner.store, &mut jobs);
        }
        tracing::info!(job = %id, tool = %job.tool, spec = ?job.spec, "job queued");
        self.notify();
        let me = self.clone();
        tokio::spawn(async move { me.run(job).await });
        Ok(id)
    }

    /// One job.
    pub fn get(&self, id: &JobId) -> Option<Job> {
        self.inner
            .jobs
            .lock()
            .expect("jobs lock poisoned")
            .get(id)
            .cloned()
    }

    /// All known jobs, oldest first.
    pub fn list(&self) -> Vec<Job> {
        let mut jobs: Vec<Job> = self
            .inner
            .jobs
            .lock()
            .expect("jobs lock poisoned")
            .values()
            .cloned()
            .collect();
        jobs.sort_by(|a, b| a.queued_at.cmp(&b.queued_at).then_with(|| a.id.cmp(&b.id)));
        jobs
    }

    /// Prepares the tool's repository ([`BackupTool::prepare`]) unless that already
    /// succeeded in this process; backups and checks call it first. Concurrent callers
    /// wait for one preparation.
    pub async fn prepare(&self) -> Result<()> {
        if self.is_prepared() {
            return Ok(());
        }
        let _one = self.inner.preparing.lock().await;
        if self.is_prepared() {
            return Ok(());
        }
        let tool = self.inner.tool.name().to_owned();
        tracing::info!(tool = %tool, "preparing the backup repository");
        self.inner.tool.prepare().await?;
        self.inner.prepared.store(true, Ordering::Release);
        tracing::info!(tool = %tool, "backup repository prepared");
        Ok(())
    }

    /// Whether [`Self::prepare`] succeeded in this process.
    pub fn is_prepared(&self) -> bool {
        self.inner.prepared.load(Ordering::Acquire)
    }

    /// Waits until the job finished, at most `timeout`.
    pub async fn wait(&self, id: &JobId, timeout: Duration) -> Result<Job> {
        let mut rx = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = self
                .get(id)
                .ok_or_else(|| Error::JobNotFound(id.0.clone()))?;
            if job.state.is_finished() {
                return Ok(job);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(Error::Timeout {
                        program: format!("job {id}"),
                        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                        stderr_tail: String::new(),
                    });
                }
            }
        }
    }

    fn notify(&self) {
        self.inner.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn update(&self, job: &Job) {
        if let Err(e) = self.inner.store.save(job) {
            tracing::error!(job = %job.id, error = %e, "cannot persist job");
        }
        self.inner
            .jobs
            .lock()
            .expect("jobs lock poisoned")
            .insert(job.id.clone(), job.clone());
        self.notify();
    }

    async fn run(self, mut job: Job) {
        let _permit = if job.spec.is_heavy() {
            self.inner.heavy_slot.acquire().await.ok()
        } else {
            None
        };
        job.state = JobState::Running;
        job.started_at = Some(Utc::now());
        self.update(&job);
        tracing::info!(job = %job.id, "job running");
        let tool = self.inner.tool.clone();
        let needs_repository = matches!(job.spec, JobSpec::Backup { .. } | JobSpec::Check);
        let prepared = if needs_repository {
            self.prepare().await
        } else {
            Ok(())
        };
        let result = match (&job.spec, prepared) {
            (_, Err(e)) => Err(e),
            (JobSpec::Backup { kind }, Ok(())) => tool.backup(*kind).await.map(|o| {
                job.backup_id = o.backup.map(|b| b.id);
                o.output_tail
            }),
            (JobSpec::Restore { request }, Ok(())) => tool.restore(request).await.map(|o| {
                job.backup_id = o.backup_id;
                o.output_tail
            }),
            (JobSpec::Expire { retention }, Ok(())) => tool.expire(retention).await.map(|o| {
                job.removed_backup_ids = o.removed_ids;
                o.output_tail
            }),
            (JobSpec::Check, Ok(())) => tool.check().await.map(|r| r.output_tail),
        };
        match result {
            Ok(tail) => {
                job.output_tail = tail;
                job.state = JobState::Succeeded;
                if matches!(job.spec, JobSpec::Backup { .. })
                    && let Some(retention) = self.retention()
                {
                    match tool.expire(&retention).await {
                        Ok(o) => job.removed_backup_ids = o.removed_ids,
                        Err(e) => job.retention_error = Some(e.to_string()),
                    }
                }
            }
            Err(e) => {
                if let Error::ToolFailed { stderr_tail, .. } = &e {
                    job.output_tail = stderr_tail.clone();
                }
                job.error = Some(e.to_string());
                job.state = JobState::Failed;
            }
        }
        job.finished_at = Some(Utc::now());
        tracing::info!(job = %job.id, state = ?job.state, error = job.error.as_deref().unwrap_or(""), "job finished");
        self.update(&job);
    }
}

fn prune(store: &JobStore, jobs: &mut BTreeMap<JobId, Job>) {
    let mut finished: Vec<(DateTime<Utc>, JobId)> = jobs
        .values()
        .filter(|j| j.state.is_finished())
        .map(|j| (j.queued_at, j.id.clone()))
        .collect();
    if finished.len() <= FINISHED_JOBS_KEPT_MAX {
        return;
    }
    finished.sort();
    let excess = finished.len() - FINISHED_JOBS_KEPT_MAX;
    for (_, id) in finished.into_iter().take(excess) {
        store.remove(&id);
        jobs.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::*;
    use async_trait::async_trait;
    use std::sync::atomic::AtomicUsize;

    /// A tool whose backups sleep, counting how many run at once.
    #[derive(Default)]
    struct SlowTool {
        running: AtomicUsize,
        running_max: AtomicUsize,
        fail: bool,
        prepares: AtomicUsize,
        prepare_fails: AtomicUsize,
    }

    #[async_trait]
    impl BackupTool for SlowTool {
        fn name(&self) -> &str {
            "slow"
        }
        fn supported_kinds(&self) -> &[BackupKind] {
            &[BackupKind::Full]
        }
        fn server_parameters(&self) -> Vec<ServerParameter> {
            Vec::new()
        }
        async fn prepare(&self) -> Result<()> {
            self.prepares.fetch_add(1, Ordering::SeqCst);
            let left = self.prepare_fails.load(Ordering::SeqCst);
            if left > 0 {
                self.prepare_fails.store(left - 1, Ordering::SeqCst);
                return Err(Error::ToolFailed {
                    tool: "slow".into(),
                    command: "stanza-create".into(),
                    status: "exit status: 1".into(),
                    stderr_tail: "repository unreachable".into(),
                });
            }
            Ok(())
        }
        async fn check(&self) -> Result<CheckReport> {
            Ok(CheckReport::default())
        }
        async fn backup(&self, _kind: BackupKind) -> Result<BackupOutcome> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.running_max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            if self.fail {
                return Err(Error::ToolFailed {
                    tool: "slow".into(),
                    command: "backup".into(),
                    status: "exit status: 1".into(),
                    stderr_tail: "no space left".into(),
                });
            }
            Ok(BackupOutcome {
                backup: None,
                output_tail: "ok".into(),
            })
        }
        async fn list(&self) -> Result<Vec<BackupInfo>> {
            Ok(Vec::new())
        }
        async fn restore(&self, _r: &RestoreRequest) -> Result<RestoreOutcome> {
            Err(Error::BackupNotFound("none".into()))
        }
        async fn expire(&self, _r: &Retention) -> Result<ExpireOutcome> {
            Ok(ExpireOutcome::default())
        }
    }

    #[tokio::test]
    async fn heavy_jobs_run_one_at_a_time_and_persist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tool = Arc::new(SlowTool::default());
        let m = JobManager::open(dir.path(), tool.clone(), None).expect("open");
        let ids: Vec<JobId> = (0..4)
            .map(|_| {
                m.submit(JobSpec::Backup {
                    kind: BackupKind::Full,
                })
                .expect("submit")
            })
            .collect();
        for id in &ids {
            let job = m.wait(id, Duration::from_secs(30)).await.expect("finishes");
            assert_eq!(job.state, JobState::Succeeded);
            assert_eq!(job.output_tail, "ok");
            assert!(job.duration_ms().is_some());
        }
        assert_eq!(tool.running_max.load(Ordering::SeqCst), 1);
        assert_eq!(tool.prepares.load(Ordering::SeqCst), 1, "prepared once");
        let on_disk = JobStore::open(dir.path())
            .expect("open")
            .load_all()
            .expect("load");
        assert_eq!(on_disk.len(), 4);
        assert!(on_disk.iter().all(|j| j.state == JobState::Succeeded));
    }

    #[tokio::test]
    async fn failure_is_recorded_with_the_tool_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tool = Arc::new(SlowTool {
            fail: true,
            ..SlowTool::default()
        });
        let m = JobManager::open(dir.path(), tool, None).expect("open");
        let id = m
            .submit(JobSpec::Backup {
                kind: BackupKind::Full,
            })
            .expect("submit");
        let job = m
            .wait(&id, Duration::from_secs(30))
            .await
            .expect("finishes");
        assert_eq!(job.state, JobState::Failed);
        assert!(job.error.as_deref().unwrap_or("").contains("no space left"));
        assert_eq!(job.output_tail, "no space left");
    }

    #[tokio::test]
    async fn repository_is_prepared_before_the_first_backup_until_it_succeeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tool = Arc::new(SlowTool {
            prepare_fails: AtomicUsize::new(1),
            ..SlowTool::default()
        });
        let m = JobManager::open(dir.path(), tool.clone(), None).expect("open");
        let backup = || {
            m.submit(JobSpec::Backup {
                kind: BackupKind::Full,
            })
            .expect("submit")
        };
        let first = m
            .wait(&backup(), Duration::from_secs(30))
            .await
            .expect("finishes");
        assert_eq!(first.state, JobState::Failed);
        assert!(
            first
                .error
                .as_deref()
                .unwrap_or("")
                .contains("repository unreachable"),
            "{first:?}"
        );
        assert_eq!(tool.running_max.load(Ordering::SeqCst), 0, "no backup ran");
        assert!(!m.is_prepared());
        for _ in 0..2 {
            let job = m
                .wait(&backup(), Duration::from_secs(30))
                .await
                .expect("finishes");
            assert_eq!(job.state, JobState::Succeeded);
        }
        assert!(m.is_prepared());
        assert_eq!(
            tool.prepares.load(Ordering::SeqCst),
            2,
            "retried once, then kept"
        );
    }

    #[test]
    fn running_jobs_fail_on_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = JobStore::open(dir.path()).expect("open");
        let mut job = Job {
            id: JobId("job-1".into()),
            node: None,
            tool: "x".into(),
            spec: JobSpec::Check,
            schedule: None,
            state: JobState::Running,
            queued_at: Utc::now(),
            started_at: Some(Utc::now()),
            finished_at: None,
            backup_id: None,
            removed_backup_ids: vec![],
            output_tail: String::new(),
            error: None,
            retention_error: None,
        };
        store.save(&job).expect("save");
        job.id = JobId("job-2".into());
        job.state = JobState::Succeeded;
        store.save(&job).expect("save");
        let jobs = store.recover(Utc::now()).expect("recover");
        assert_eq!(jobs.len(), 2);
        let j1 = jobs.iter().find(|j| j.id.0 == "job-1").expect("job-1");
        assert_eq!(j1.state, JobState::Failed);
        assert_eq!(j1.error.as_deref(), Some(RESTARTED_MESSAGE));
        let again = JobStore::open(dir.path())
            .expect("open")
            .load_all()
            .expect("load");
        assert!(again.iter().all(|j| j.state.is_finished()));
        assert_eq!(
            again.iter().find(|j| j.id.0 == "job-2").map(|j| j.state),
            Some(JobState::Succeeded)
        );
    }
}
