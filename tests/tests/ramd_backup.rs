//! Backups through a running cluster: three `ramd` agents on real PostgreSQL 15 with
//! `[backup] tool = "pgbackrest"` (one pgBackRest repository and stanza shared by every
//! node, each node its own `base_dir`), driven only with `ramctrl backup …`.
//!
//! Run: `cargo test -p rale-e2e --test ramd_backup -- --nocapture`
//! (needs `pgbackrest` and PostgreSQL 15 under /usr/lib/postgresql/15/bin; as root,
//! PostgreSQL and pgBackRest run as the `postgres` OS user).
//!
//! What it shows:
//! - ramd turned WAL archiving on with pgBackRest's `archive-push` on every node, without
//!   any archive setting in the node configuration, and the primary's agent created the
//!   stanza by itself: WAL reaches the repository before any backup;
//! - `backup start --kind full --wait` takes a real backup; `jobs`, `status`, `list` (and
//!   `--json`) show it, from any member since the repository is shared;
//! - WAL written after the backup reaches the repository, and `backup restore` into a
//!   fresh directory gives a server (started here with `pg_ctl`) holding a row written
//!   before the backup and one written after it;
//! - refusals: a backup asked of a standby (409, naming the primary), restore into the
//!   live data directory or to a relative path (400), the status of an unknown job (404),
//!   a bad cron expression (400);
//! - `backup schedule` replaces the schedules and retention.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rale::pg::OsUser;
use rale_e2e::ctl::Ctl;
use rale_e2e::ramd_cluster::{ClusterOptions, RamdCluster, TABLE, serial};
use serde_json::Value;

/// Every node's `[backup]` section; see `ramd_ref::launch::node_toml` for the placeholders.
const NODE_TOML: &str = r#"
[backup]
tool = "pgbackrest"
job_dir = "{node_dir}/backup-jobs"

[backup.pgbackrest]
stanza = "rale"
base_dir = "{node_dir}/pgbackrest"
repo_path = "{cluster_dir}/pgbackrest-repo"
pg_data_dir = "{data_dir}"
pg_port = {pg_port}
pg_socket_dir = "{node_dir}/state/socket"
"#;

/// PostgreSQL 15's binaries.
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn json(text: &str, what: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{what} is not JSON: {text}"))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// A PostgreSQL server started by this test on a restored data directory; stopped
/// (`pg_ctl -m immediate`) on drop if the test did not stop it.
struct RestoredServer {
    data_dir: PathBuf,
    run_dir: PathBuf,
    os_user: Option<OsUser>,
    running: bool,
}

impl RestoredServer {
    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let mut cmd = std::process::Command::new(Path::new(PG_BIN).join("pg_ctl"));
        cmd.arg("-D").arg(&self.data_dir).args(args);
        cmd.current_dir("/").env("LC_ALL", "C");
        if let Some(u) = &self.os_user {
            cmd.uid(u.uid).gid(u.gid);
        }
        cmd.output().context("running pg_ctl")
    }

    /// Starts it on `port` with its socket in `run_dir`, loopback only, archiving off
    /// (a side copy must not push a new timeline into the cluster's repository).
    fn start(
        data_dir: &Path,
        run_dir: &Path,
        port: u16,
        os_user: Option<OsUser>,
    ) -> anyhow::Result<Self> {
        let mut server = Self {
            data_dir: data_dir.to_owned(),
            run_dir: run_dir.to_owned(),
            os_user,
            running: false,
        };
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c cluster_name=restored",
            server.run_dir.display()
        );
        let log = server.run_dir.join("postmaster.log");
        server.running = true;
        let out = server.pg_ctl(&[
            "-l",
            &log.display().to_string(),
            "-o",
            &options,
            "-w",
            "-t",
            "120",
            "start",
        ])?;
        if !out.status.success() {
            bail!(
                "pg_ctl start on the restored directory failed: {}{}\nlog:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Ok(server)
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        let out = self.pg_ctl(&["-m", "fast", "-w", "-t", "60", "stop"])?;
        ensure!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = false;
        Ok(())
    }
}

impl Drop for RestoredServer {
    fn drop(&mut self) {
        if self.running {
            let _ = self.pg_ctl(&["-m", "immediate", "-w", "-t", "30", "stop"]);
        }
    }
}

/// A private directory owned by the PostgreSQL OS user (for a socket and a log).
fn postgres_dir(path: &Path, os_user: Option<&OsUser>) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    if let Some(u) = os_user {
        std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid))
            .with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

async fn restored_ids(dsn: &str) -> anyhow::Result<(bool, Vec<i64>)> {
    let (client, conn) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(dsn, tokio_postgres::NoTls),
    )
    .await
    .context("connect timed out")??;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let recovering: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await?
        .get(0);
    let rows = client
        .query(&format!("SELECT id FROM {TABLE} ORDER BY id"), &[])
        .await?;
    Ok((recovering, rows.iter().map(|r| r.get(0)).collect()))
}

/// Switches the primary's WAL segment and waits until `pg_stat_archiver` reports it
/// archived.
async fn wait_archived(
    cluster: &RamdCluster,
    primary: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let segment = cluster
        .query_text(primary, "SELECT pg_walfile_name(pg_switch_wal())")
        .await?
        .context("switched segment")?;
    cluster
        .wait_for(&format!("{segment} archived"), timeout, || async {
            let last = cluster
                .query_text(
                    primary,
                    "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
                )
                .await?
                .unwrap_or_default();
            Ok((last.as_str() >= segment.as_str()).then_some(()))
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_through_ramctrl_on_a_real_cluster() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut cluster = RamdCluster::start_opts(ClusterOptions {
        node_toml: Some(NODE_TOML.to_owned()),
        ..ClusterOptions::new(3)
    })
    .await?;
    let r = scenario(&cluster).await;
    if r.is_err() {
        cluster.keep_dir();
    }
    r
}

async fn scenario(cluster: &RamdCluster) -> anyhow::Result<()> {
    let primary = cluster.primary().await?;
    let replica = cluster
        .names()
        .into_iter()
        .find(|n| *n != primary)
        .context("a replica")?;
    let ctl = Ctl::for_cluster(cluster)?;
    let os_user = OsUser::for_current_process(None)?;

    // 1. ramd configured WAL archiving into the repository on every node.
    for name in cluster.names() {
        let mode = cluster.query_text(&name, "SHOW archive_mode").await?;
        let command = cluster
            .query_text(&name, "SHOW archive_command")
            .await?
            .unwrap_or_default();
        eprintln!("{name}: archive_mode = {mode:?}, archive_command = {command}");
        ensure!(
            mode.as_deref() == Some("on"),
            "{name}: archive_mode {mode:?}"
        );
        ensure!(
            command.contains("pgbackrest")
                && command.contains("--stanza=rale")
                && command.contains("archive-push %p"),
            "{name}: archive_command {command:?}"
        );
    }

    // 2. The primary's agent created the stanza without being asked: WAL is archived
    //    before any backup ran (archive-push fails while the stanza is missing, and the
    //    archiver then waits 60 s before it retries, hence the bound).
    cluster.write(&primary, 1).await?;
    let t = Instant::now();
    wait_archived(cluster, &primary, Duration::from_secs(150)).await?;
    eprintln!(
        "figure: WAL archived before the first backup, {:.1} s after the switch",
        t.elapsed().as_secs_f64()
    );

    // 3. A full backup with --wait.
    let t = Instant::now();
    let done = json(
        &ctl.ok(&[
            "backup", "--node", &primary, "start", "--kind", "full", "--wait",
        ])
        .await?,
        "backup start --wait",
    )?;
    let backup_wall = t.elapsed();
    ensure!(str_at(&done, &["state"]) == Some("succeeded"), "{done}");
    let job_id = str_at(&done, &["id"]).context("job id")?.to_owned();
    let backup_id = str_at(&done, &["backup_id"])
        .context("backup id in the finished job")?
        .to_owned();
    let backup_ms = done.get("duration_ms").and_then(Value::as_u64);
    eprintln!(
        "figure: full backup {backup_id} in {backup_ms:?} ms (job), {:.1} s wall (ramctrl --wait)",
        backup_wall.as_secs_f64()
    );
    ensure!(
        str_at(&done, &["node"]) == Some(primary.as_str()),
        "ran on {primary}: {done}"
    );
    ensure!(str_at(&done, &["tool"]) == Some("pgbackrest"), "{done}");

    // 4. jobs, status, list — plain and --json.
    for args in [
        vec!["backup", "--node", &primary, "jobs"],
        vec!["--json", "backup", "--node", &primary, "jobs"],
    ] {
        let jobs = json(&ctl.ok(&args).await?, "backup jobs")?;
        let listed = jobs
            .get("jobs")
            .and_then(Value::as_array)
            .context("jobs array")?;
        ensure!(
            listed
                .iter()
                .any(|j| str_at(j, &["id"]) == Some(job_id.as_str())
                    && str_at(j, &["state"]) == Some("succeeded")
                    && str_at(j, &["spec", "type"]) == Some("backup")),
            "{args:?} lists {job_id}: {jobs}"
        );
    }
    let status = json(
        &ctl.ok(&["backup", "--node", &primary, "status", &job_id])
            .await?,
        "backup status",
    )?;
    ensure!(
        str_at(&status, &["backup_id"]) == Some(backup_id.as_str()),
        "{status}"
    );
    let table = ctl.ok(&["backup", "--node", &primary, "list"]).await?;
    ensure!(
        table.contains("1 backups (pgbackrest)") && table.contains(&backup_id),
        "list shows {backup_id}: {table}"
    );
    // The repository is shared: every member lists the same backup.
    for node in [&primary, &replica] {
        let list = json(
            &ctl.ok(&["--json", "backup", "--node", node, "list"])
                .await?,
            "backup list --json",
        )?;
        let backups = list
            .get("backups")
            .and_then(Value::as_array)
            .context("backups array")?;
        ensure!(
            str_at(&list, &["tool"]) == Some("pgbackrest")
                && backups.len() == 1
                && str_at(&backups[0], &["id"]) == Some(backup_id.as_str())
                && str_at(&backups[0], &["kind"]) == Some("full"),
            "{node} lists {backup_id}: {list}"
        );
        ensure!(
            backups[0].get("lsn_stop").is_some_and(|v| !v.is_null()),
            "{list}"
        );
    }

    // 5. WAL written after the backup reaches the repository.
    cluster.write(&primary, 2).await?;
    wait_archived(cluster, &primary, Duration::from_secs(120)).await?;

    // 6. Restore into a fresh directory, start it, find rows 1 and 2.
    let target = cluster.dir().join("restored");
    let restore_t = Instant::now();
    let restored = json(
        &ctl.ok(&[
            "--json",
            "backup",
            "--node",
            &primary,
            "restore",
            "--data-dir",
            &target.display().to_string(),
            "--no-archiving",
            "--wait",
        ])
        .await?,
        "backup restore --no-archiving --wait",
    )?;
    let restore_wall = restore_t.elapsed();
    ensure!(
        str_at(&restored, &["state"]) == Some("succeeded"),
        "restore: {restored}"
    );
    eprintln!(
        "figure: restore in {:?} ms (job), {:.1} s wall",
        restored.get("duration_ms").and_then(Value::as_u64),
        restore_wall.as_secs_f64()
    );
    ensure!(target.join("PG_VERSION").exists(), "restored files");
    let run_dir = cluster.dir().join("restored-run");
    postgres_dir(&run_dir, os_user.as_ref())?;
    let port = rale_e2e::free_port()?;
    let start_t = Instant::now();
    let mut server = RestoredServer::start(&target, &run_dir, port, os_user.clone())?;
    let dsn = cluster.node(&primary)?.dsn.replace(
        &format!("port={} ", cluster.node(&primary)?.pg_port),
        &format!("port={port} "),
    );
    ensure!(dsn.contains(&format!("port={port} ")), "dsn {dsn}");
    let ids = cluster
        .wait_for(
            "the restored server promoted with rows 1 and 2",
            Duration::from_secs(120),
            || async {
                let (recovering, ids) = restored_ids(&format!("{dsn} connect_timeout=2")).await?;
                Ok((!recovering && ids.contains(&1) && ids.contains(&2)).then_some(ids))
            },
        )
        .await?;
    eprintln!(
        "figure: restored server up and promoted in {:.1} s; rows {ids:?}",
        start_t.elapsed().as_secs_f64()
    );
    // `--no-archiving`: the side copy never pushes its new timeline into the repository.
    let mode = {
        let (client, conn) =
            tokio_postgres::connect(&format!("{dsn} connect_timeout=2"), tokio_postgres::NoTls)
                .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let row = client.query_one("SHOW archive_mode", &[]).await?;
        row.get::<_, String>(0)
    };
    ensure!(
        mode == "off",
        "restored copy archives: archive_mode = {mode}"
    );
    server.stop()?;

    // The backup and the restore are in the cluster history, with who asked.
    let history = ctl.ok(&["history"]).await?;
    ensure!(
        history.contains("full backup job") && history.contains("restore job"),
        "backup operations missing from the history: {history}"
    );

    // 7. Refusals.
    let live = cluster.node(&primary)?.data_dir.display().to_string();
    let o = ctl
        .refused(
            1,
            &["backup", "--node", &primary, "restore", "--data-dir", &live],
        )
        .await?;
    ensure!(o.said().contains("live data directory"), "{o:?}");
    let o = ctl
        .refused(
            1,
            &[
                "backup",
                "--node",
                &primary,
                "restore",
                "--data-dir",
                "relative/dir",
            ],
        )
        .await?;
    ensure!(o.said().contains("absolute"), "{o:?}");
    // pgBackRest backs up the primary only: a standby refuses (409) and names it.
    let o = ctl
        .refused(
            1,
            &[
                "backup", "--node", &replica, "start", "--kind", "full", "--wait",
            ],
        )
        .await?;
    ensure!(
        o.said()
            .contains(&format!("is not the primary: send it to {primary}")),
        "{o:?}"
    );
    let (code, body) = cluster
        .api_request(
            &replica,
            reqwest::Method::POST,
            "/api/v1/backup/start",
            Some(serde_json::json!({ "kind": "full" })),
        )
        .await?;
    ensure!(code == 409 && body.contains("not_primary"), "{code} {body}");
    let o = ctl
        .refused(1, &["backup", "--node", &primary, "status", "job-nope"])
        .await?;
    ensure!(o.said().contains("no backup job job-nope"), "{o:?}");
    let (code, body) = cluster
        .api_request(
            &primary,
            reqwest::Method::GET,
            "/api/v1/backup/status/job-nope",
            None,
        )
        .await?;
    ensure!(
        code == 404 && body.contains("no backup job job-nope") && body.contains("not_found"),
        "{code} {body}"
    );

    // 8. Schedules: set, replace, refuse a bad cron (CLI exit 1, API 400), clear.
    let set = json(
        &ctl.ok(&[
            "backup",
            "--node",
            &primary,
            "schedule",
            "--entry",
            "yearly|full|0 0 3 1 1 *|primary",
            "--entry",
            "jan2-diff|differential|0 15 4 2 1 *|primary",
            "--keep-full",
            "2",
        ])
        .await?,
        "backup schedule",
    )?;
    let names = |v: &Value| -> Vec<String> {
        v.get("schedules")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| str_at(s, &["name"]).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    ensure!(names(&set) == ["yearly", "jan2-diff"], "{set}");
    ensure!(
        set.get("schedules")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().all(|s| s.get("next_run").is_some())),
        "next runs: {set}"
    );
    ensure!(
        set.pointer("/retention/full_count").and_then(Value::as_u64) == Some(2),
        "{set}"
    );
    let replaced = json(
        &ctl.ok(&[
            "backup",
            "--node",
            &primary,
            "schedule",
            "--entry",
            "weekly|full|0 0 3 * * 0|primary",
        ])
        .await?,
        "backup schedule (replace)",
    )?;
    ensure!(names(&replaced) == ["weekly"], "{replaced}");
    ensure!(replaced.get("retention").is_none(), "{replaced}");
    // Kept across agent restarts: the job directory holds what was set.
    let saved = cluster
        .dir()
        .join(&primary)
        .join("backup-jobs")
        .join(ramd_ref::backup::SCHEDULE_FILE);
    let saved =
        std::fs::read_to_string(&saved).with_context(|| format!("reading {}", saved.display()))?;
    ensure!(
        saved.contains("weekly") && !saved.contains("yearly"),
        "{saved}"
    );
    let o = ctl
        .refused(
            1,
            &[
                "backup",
                "--node",
                &primary,
                "schedule",
                "--entry",
                "bad|full|not a cron|primary",
            ],
        )
        .await?;
    ensure!(o.said().contains("cron"), "{o:?}");
    let shown = json(
        &ctl.ok(&["backup", "--node", &primary, "schedules"]).await?,
        "backup schedules",
    )?;
    ensure!(
        names(&shown) == ["weekly"],
        "a refused schedule changed them: {shown}"
    );
    let (code, body) = cluster
        .api_request(
            &primary,
            reqwest::Method::POST,
            "/api/v1/backup/schedule",
            Some(serde_json::json!({
                "schedules": [{"name": "bad", "kind": "full", "cron": "61 * * * *", "placement": "primary"}]
            })),
        )
        .await?;
    ensure!(code == 400 && body.contains("invalid"), "{code} {body}");
    // An empty list clears them.
    let (code, body) = cluster
        .api_request(
            &primary,
            reqwest::Method::POST,
            "/api/v1/backup/schedule",
            Some(serde_json::json!({ "schedules": [] })),
        )
        .await?;
    ensure!(
        code == 200 && names(&json(&body, "schedule")?).is_empty(),
        "{code} {body}"
    );
    Ok(())
}
