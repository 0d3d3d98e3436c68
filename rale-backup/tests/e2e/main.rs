//! End-to-end tests of rale-backup against real PostgreSQL 15, pgBackRest and Barman.
//! Run: `cargo test -p rale-backup --test e2e` (the benchmark: add `-- --ignored bench`).

mod fixture;
mod scenarios;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rale::{NodeId, Role};
use rale_backup::exec::RunAs;
use rale_backup::jobs::{JobManager, JobSpec, JobState};
use rale_backup::replica::{BaseBackupSource, ReplicaMethod, ReplicaRequest, build_replica};
use rale_backup::schedule::{ClusterView, MemberView, Placement, ScheduleRunner, Scheduler};
use rale_backup::{
    BackupKind, BackupTool, Barman, BarmanConfig, CustomTool, HookConfig, PgBackRest,
    PgBackRestConfig, Retention, ScheduleSpec, StandbySetup,
};

use fixture::{PG_BIN, Pg, run_as, scratch};

/// Starts a primary (port chosen first) whose archive settings come from a pgBackRest
/// tool configured for it; the stanza is created and checked.
async fn pgbackrest_primary(base: &Path, name: &str) -> Result<(Pg, Arc<PgBackRest>)> {
    let port = fixture::free_port();
    let mut c = PgBackRestConfig::new(
        "main",
        &base.join(format!("{name}-pgbackrest")),
        &base.join(format!("{name}-repo")),
        &base.join(name),
        port,
    );
    c.pg_socket_dir = Some(base.join(format!("{name}-sock")));
    c.compress_type = Some("lz4".into());
    let tool = Arc::new(PgBackRest::new(c)?);
    let pg = Pg::init_primary_on(base, name, port, &tool.server_parameters())?;
    tool.prepare().await?;
    ensure!(tool.check().await?.ok);
    Ok((pg, tool))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbackrest_full_incremental_then_point_in_time_restore() -> Result<()> {
    let base = scratch();
    let (pg, tool) = pgbackrest_primary(base.path(), "pri").await?;
    scenarios::pitr(tool.as_ref(), &pg, base.path(), true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barman_backup_then_point_in_time_recover() -> Result<()> {
    let base = scratch();
    let sock = base.path().join("pri-sock");
    let port = fixture::free_port();
    let mut cfg = BarmanConfig::new(
        "pri",
        &base.path().join("barman"),
        &format!(
            "host={} port={port} user=postgres dbname=postgres",
            sock.display()
        ),
    );
    cfg.pg_bin_dir = Some(PG_BIN.into());
    let tool = Barman::new(cfg)?;
    let pg = Pg::init_primary_on(base.path(), "pri", port, &tool.server_parameters())?;
    let t0 = std::time::Instant::now();
    tool.prepare().await?;
    let report = tool.check().await?;
    ensure!(report.ok, "barman check: {}", report.output_tail);
    eprintln!("barman prepare+check: {:?}", t0.elapsed());
    scenarios::pitr(&tool, &pg, base.path(), false).await?;
    eprintln!("barman pitr: {:?}", t0.elapsed());
    ensure!(matches!(
        tool.backup(BackupKind::Incremental).await,
        Err(rale_backup::Error::Unsupported { .. })
    ));
    // The shared contract, including retention removing the oldest backup.
    rale_backup::testing::run_suite(Arc::new(tool), base.path()).await;
    Ok(())
}

fn custom_tool(base: &Path, pg_sock: &Path, port: u16) -> Result<CustomTool> {
    let repo = base.join("custom-repo");
    let arch = base.join("custom-wal");
    run_as().create_private_dir(&arch)?;
    let cfg = HookConfig {
        state_dir: base.join("custom-state"),
        backup: format!(
            "set -e; {PG_BIN}/pg_basebackup -h %H -p %P -U %U -D %r/%i.tmp -X stream -c fast; \
             echo RALE_LSN_START=$(awk '/^START WAL LOCATION/ {{print $4}}' %r/%i.tmp/backup_label); \
             echo RALE_TIMELINE=$(awk '/^START TIMELINE/ {{print $3}}' %r/%i.tmp/backup_label); \
             echo RALE_LSN_STOP=$(grep -o 'End-LSN\": \"[^\"]*' %r/%i.tmp/backup_manifest | cut -d'\"' -f3); \
             tar -C %r/%i.tmp -czf %r/%i.tar.gz .; rm -rf %r/%i.tmp; \
             echo RALE_SIZE_BYTES=$(stat -c %%s %r/%i.tar.gz)"
        ),
        restore: "tar -C %d -xzf %r/%i.tar.gz".into(),
        check: Some(format!("{PG_BIN}/pg_isready -h %H -p %P")),
        delete: Some("rm -f %r/%i.tar.gz".into()),
        archive_command: Some(format!(
            "test ! -f {a}/%f && cp %p {a}/%f",
            a = arch.display()
        )),
        wal_restore_command: Some(format!("cp {}/%f %p", arch.display())),
        kinds: vec![BackupKind::Full],
        repo_dir: repo,
        pg_data_dir: base.join("pri"),
        pg_host: pg_sock.display().to_string(),
        pg_port: port,
        pg_user: "postgres".into(),
        timeout_s: 600,
    };
    Ok(CustomTool::new(cfg)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_hooks_round_trip() -> Result<()> {
    let base = scratch();
    let sock = base.path().join("pri-sock");
    let port = fixture::free_port();
    let tool = custom_tool(base.path(), &sock, port)?;
    let pg = Pg::init_primary_on(base.path(), "pri", port, &tool.server_parameters())?;
    tool.prepare().await?;
    ensure!(tool.check().await?.ok);
    scenarios::pitr(&tool, &pg, base.path(), false).await?;
    let list = tool.list().await?;
    ensure!(
        list.iter().all(|b| b.size_bytes.is_some_and(|s| s > 0)),
        "size reported: {list:?}"
    );
    rale_backup::testing::run_suite(Arc::new(tool), base.path()).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbackrest_conformance_suite_and_retention() -> Result<()> {
    let base = scratch();
    let (pg, tool) = pgbackrest_primary(base.path(), "pri").await?;
    pg.exec("create table t(x int); insert into t values (1)")
        .await?;
    rale_backup::testing::run_suite(tool.clone(), base.path()).await;
    // Retention after backups through the job manager: keep one full chain.
    let jobs = JobManager::open(&base.path().join("jobs"), tool.clone(), None)?;
    jobs.set_retention(Some(Retention {
        full_count: Some(1),
        ..Retention::default()
    }));
    let before = tool.list().await?;
    let id = jobs.submit(JobSpec::Backup {
        kind: BackupKind::Full,
    })?;
    let job = jobs.wait(&id, Duration::from_secs(300)).await?;
    ensure!(job.state == JobState::Succeeded, "{job:?}");
    let after = tool.list().await?;
    ensure!(after.len() == 1, "one backup left: {after:?}");
    ensure!(Some(&after[0].id) == job.backup_id.as_ref());
    let oldest = before.first().context("a backup before")?;
    ensure!(job.removed_backup_ids.contains(&oldest.id), "{job:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_from_pgbackrest_streams_and_basebackup_fallback() -> Result<()> {
    let base = scratch();
    let (pg, tool) = pgbackrest_primary(base.path(), "pri").await?;
    pg.exec("create table t(x int); insert into t select generate_series(1, 10)")
        .await?;
    tool.backup(BackupKind::Full).await?;
    // Written after the backup: must arrive through archived WAL or streaming.
    pg.exec("insert into t select generate_series(11, 20)")
        .await?;
    pg.switch_wal_and_wait_archived().await?;

    let fallback = BaseBackupSource {
        pg_bin_dir: PG_BIN.into(),
        host: pg.sock_dir.display().to_string(),
        port: pg.port,
        user: "postgres".into(),
        timeout_s: 300,
    };
    let request = |name: &str| ReplicaRequest {
        data_dir: base.path().join(name),
        standby: StandbySetup {
            primary_conninfo: format!("{} application_name={name}", pg.conninfo()),
            primary_slot_name: None,
        },
        fallback: Some(fallback.clone()),
    };
    let run_as = RunAs::postgres_if_root()?;

    let r1 = request("rep1");
    let out = build_replica(Some(tool.as_ref() as &dyn BackupTool), &r1, &run_as).await?;
    ensure!(
        out.method
            == ReplicaMethod::Backup {
                tool: "pgbackrest".into()
            },
        "{out:?}"
    );
    ensure!(r1.data_dir.join("standby.signal").exists());
    let rep1 = Pg::start_existing(base.path(), "rep1", &r1.data_dir)?;

    // A tool whose restore fails: the fallback must produce a streaming replica too.
    let broken = CustomTool::new(HookConfig {
        state_dir: base.path().join("broken-state"),
        backup: "true".into(),
        restore: "echo 'repository unreachable' >&2; exit 7".into(),
        check: None,
        delete: None,
        archive_command: None,
        wal_restore_command: None,
        kinds: vec![],
        repo_dir: Default::default(),
        pg_data_dir: Default::default(),
        pg_host: String::new(),
        pg_port: 0,
        pg_user: String::new(),
        timeout_s: 60,
    })?;
    broken.backup(BackupKind::Full).await?;
    let r2 = request("rep2");
    let out2 = build_replica(Some(&broken), &r2, &run_as).await?;
    ensure!(out2.method == ReplicaMethod::PgBasebackup, "{out2:?}");
    ensure!(
        out2.restore_error
            .as_deref()
            .unwrap_or("")
            .contains("repository unreachable"),
        "{out2:?}"
    );
    let rep2 = Pg::start_existing(base.path(), "rep2", &r2.data_dir)?;

    pg.exec("insert into t select generate_series(21, 30)")
        .await?;
    for rep in [&rep1, &rep2] {
        rep.wait_for_i64("select count(*) from t", 30).await?;
        ensure!(rep.query_text("select pg_is_in_recovery()::text").await? == "true");
    }
    pg.wait_for_i64(
        "select count(*) from pg_stat_replication where state = 'streaming' and application_name in ('rep1', 'rep2')",
        2,
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backup_fires_on_the_chosen_node_only() -> Result<()> {
    let base = scratch();
    let (_pg, tool) = pgbackrest_primary(base.path(), "pri").await?;
    let n1 = NodeId::new("n1")?;
    let n2 = NodeId::new("n2")?;
    let view = Arc::new(Mutex::new(vec![
        MemberView {
            node: n1.clone(),
            role: Role::Primary,
            healthy: true,
        },
        MemberView {
            node: n2.clone(),
            role: Role::Replica,
            healthy: true,
        },
    ]));
    let shared = view.clone();
    let cluster: Arc<dyn ClusterView> = Arc::new(move || shared.lock().expect("view lock").clone());
    let spec = ScheduleSpec {
        name: "every-2s".into(),
        kind: BackupKind::Full,
        cron: "*/2 * * * * *".into(),
        placement: Placement::Primary,
    };
    // Both nodes run the same schedule against the same view (one shared repository).
    let jobs1 = JobManager::open(&base.path().join("jobs-n1"), tool.clone(), Some(n1.clone()))?;
    let jobs2 = JobManager::open(&base.path().join("jobs-n2"), tool.clone(), Some(n2.clone()))?;

    // Runs both nodes' schedulers until `runner` has queued a backup (bounded), then
    // stops them and waits for `runner`'s jobs to finish.
    let fire = |runner: (JobManager, NodeId), idle: (JobManager, NodeId)| {
        let (cluster, spec) = (cluster.clone(), spec.clone());
        async move {
            let mut tasks = Vec::new();
            for (jobs, me) in [runner.clone(), idle] {
                tasks.push(ScheduleRunner::spawn(
                    Scheduler::new(vec![spec.clone()], chrono::Utc::now())?,
                    jobs,
                    me,
                    cluster.clone(),
                    Duration::from_millis(200),
                ));
            }
            let jobs = runner.0;
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while std::time::Instant::now() < deadline && jobs.list().is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            for t in tasks {
                t.stop();
            }
            for j in jobs.list() {
                jobs.wait(&j.id, Duration::from_secs(300)).await?;
            }
            anyhow::Ok(())
        }
    };

    // n1 is primary: only n1 backs up.
    fire((jobs1.clone(), n1.clone()), (jobs2.clone(), n2.clone())).await?;
    let done1 = jobs1.list();
    ensure!(
        !done1.is_empty() && done1.iter().all(|j| j.state == JobState::Succeeded),
        "{done1:?}"
    );
    ensure!(
        done1
            .iter()
            .all(|j| j.schedule.as_deref() == Some("every-2s"))
    );
    ensure!(
        jobs2.list().is_empty(),
        "n2 must not run: {:?}",
        jobs2.list()
    );

    // Failover: n2 is primary now, n1 is gone. Only n2 backs up.
    *view.lock().expect("view lock") = vec![
        MemberView {
            node: n1.clone(),
            role: Role::Unknown,
            healthy: false,
        },
        MemberView {
            node: n2.clone(),
            role: Role::Primary,
            healthy: true,
        },
    ];
    let n1_jobs_before = jobs1.list().len();
    fire((jobs2.clone(), n2.clone()), (jobs1.clone(), n1.clone())).await?;
    ensure!(jobs2.list().iter().any(|j| j.state == JobState::Succeeded));
    ensure!(
        jobs1.list().len() == n1_jobs_before,
        "n1 must not run after failover"
    );
    let backups = tool.list().await?;
    ensure!(backups.len() >= 2, "{backups:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_backup_is_a_failed_job_and_nothing_else_breaks() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let base = scratch();
    let (pg, tool) = pgbackrest_primary(base.path(), "pri").await?;
    pg.exec("create table t(x int); insert into t values (1)")
        .await?;
    let dir = base.path().join("jobs");
    let jobs = JobManager::open(&dir, tool.clone(), None)?;

    let ok = jobs.submit(JobSpec::Backup {
        kind: BackupKind::Full,
    })?;
    ensure!(jobs.wait(&ok, Duration::from_secs(300)).await?.state == JobState::Succeeded);

    // Make the backup part of the repository unwritable (archiving keeps working).
    let backup_dir = base.path().join("pri-repo").join("backup").join("main");
    std::fs::set_permissions(&backup_dir, std::fs::Permissions::from_mode(0o500))?;
    let bad = jobs.submit(JobSpec::Backup {
        kind: BackupKind::Incremental,
    })?;
    let failed = jobs.wait(&bad, Duration::from_secs(300)).await?;
    std::fs::set_permissions(&backup_dir, std::fs::Permissions::from_mode(0o750))?;
    ensure!(failed.state == JobState::Failed, "{failed:?}");
    let error = failed.error.clone().unwrap_or_default();
    eprintln!("failed job error: {error}");
    ensure!(error.contains("pgbackrest backup failed"), "{error}");
    ensure!(
        error.contains("Permission denied") || error.contains("unable to"),
        "the tool's own message is kept: {error}"
    );
    ensure!(!failed.output_tail.is_empty());

    // Nothing else broke: the server writes, archiving works, the next backup succeeds
    // and the list still shows the first backup.
    pg.exec("insert into t values (2)").await?;
    pg.switch_wal_and_wait_archived().await?;
    let again = jobs.submit(JobSpec::Backup {
        kind: BackupKind::Incremental,
    })?;
    let again = jobs.wait(&again, Duration::from_secs(300)).await?;
    ensure!(again.state == JobState::Succeeded, "{again:?}");
    ensure!(tool.list().await?.len() == 2);

    // The jobs are on disk and visible to a restarted agent.
    drop(jobs);
    let reopened = JobManager::open(&dir, tool.clone(), None)?;
    let states: Vec<JobState> = reopened.list().iter().map(|j| j.state).collect();
    ensure!(
        states == [JobState::Succeeded, JobState::Failed, JobState::Succeeded],
        "{states:?}"
    );
    Ok(())
}

/// Backup and restore times for a pgbench database of scale 10, with each tool.
/// Run: `cargo test -p rale-backup --test e2e -- --ignored bench --nocapture`
#[ignore]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_pgbench_scale_10() -> Result<()> {
    scenarios::bench().await
}
