//! Scenarios shared by several tools.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use rale_backup::{BackupKind, BackupTool, RestoreRequest, RestoreTarget, TargetAction};

use crate::fixture::{Pg, dest, scratch};

/// Backups (full, and incremental when asked), writes after them, a point in time `t`
/// between two writes, then a restore to `t` into a new data directory: the restored
/// server has exactly the rows committed before `t`.
pub async fn pitr(tool: &dyn BackupTool, pg: &Pg, base: &Path, incremental: bool) -> Result<()> {
    pg.exec("create table t(id int primary key, batch text not null)")
        .await?;
    pg.exec("insert into t select g, 'before-backup' from generate_series(1, 100) g")
        .await?;
    let t0 = Instant::now();
    let full = tool
        .backup(BackupKind::Full)
        .await?
        .backup
        .context("full backup listed")?;
    eprintln!("{}: full backup took {:?}", tool.name(), t0.elapsed());
    ensure!(full.kind == BackupKind::Full);
    ensure!(
        full.lsn_start.is_some() && full.lsn_stop >= full.lsn_start,
        "{full:?}"
    );
    if incremental {
        pg.exec("insert into t select g, 'between-backups' from generate_series(101, 150) g")
            .await?;
        let incr = tool
            .backup(BackupKind::Incremental)
            .await?
            .backup
            .context("incremental backup listed")?;
        ensure!(incr.kind == BackupKind::Incremental, "{incr:?}");
        ensure!(
            incr.parent_id.as_deref() == Some(full.id.as_str()),
            "{incr:?}"
        );
        ensure!(incr.lsn_start > full.lsn_stop, "{incr:?} after {full:?}");
        let list = tool.list().await?;
        ensure!(
            list.iter().map(|b| b.kind).collect::<Vec<_>>()
                == [BackupKind::Full, BackupKind::Incremental]
        );
    }
    let expected = pg.query_i64("select count(*) from t").await? + 50;
    pg.exec("insert into t select g, 'after-backup' from generate_series(1001, 1050) g")
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let target = pg.clock().await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    pg.exec("insert into t select g, 'too-late' from generate_series(2001, 2050) g")
        .await?;
    pg.switch_wal_and_wait_archived().await?;

    let data_dir = dest(base, &format!("{}-pitr", tool.name()));
    let mut request = RestoreRequest::latest(&data_dir)
        .with_target(RestoreTarget::Time(target), TargetAction::Promote);
    request.disable_archiving = true;
    let t0 = Instant::now();
    tool.restore(&request).await?;
    eprintln!(
        "{}: point-in-time restore took {:?}",
        tool.name(),
        t0.elapsed()
    );
    let restored = Pg::start_existing(base, &format!("{}-pitr", tool.name()), &data_dir)?;
    restored.wait_promoted().await?;
    let rows = restored.query_i64("select count(*) from t").await?;
    let late = restored
        .query_i64("select count(*) from t where batch = 'too-late'")
        .await?;
    let after = restored
        .query_i64("select count(*) from t where batch = 'after-backup'")
        .await?;
    ensure!(
        rows == expected && late == 0 && after == 50,
        "{}: restored {rows} rows ({after} after-backup, {late} too-late), expected {expected}; log:\n{}",
        tool.name(),
        restored.log_tail()
    );
    Ok(())
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Times backup and restore of a pgbench scale-10 database with each tool.
pub async fn bench() -> Result<()> {
    use std::sync::Arc;
    let mut report = Vec::new();
    for tool_name in ["pgbackrest", "barman", "custom"] {
        let base = scratch();
        let (pg, tool): (Pg, Arc<dyn BackupTool>) = match tool_name {
            "pgbackrest" => {
                let (pg, t) = crate::pgbackrest_primary(base.path(), "pri").await?;
                (pg, t)
            }
            "barman" => {
                let sock = base.path().join("pri-sock");
                let port = crate::fixture::free_port();
                let mut cfg = rale_backup::BarmanConfig::new(
                    "pri",
                    &base.path().join("barman"),
                    &format!(
                        "host={} port={port} user=postgres dbname=postgres",
                        sock.display()
                    ),
                );
                cfg.pg_bin_dir = Some(crate::fixture::PG_BIN.into());
                let t = rale_backup::Barman::new(cfg)?;
                let pg = Pg::init_primary_on(base.path(), "pri", port, &t.server_parameters())?;
                t.prepare().await?;
                (pg, Arc::new(t))
            }
            _ => {
                let sock = base.path().join("pri-sock");
                let port = crate::fixture::free_port();
                let t = crate::custom_tool(base.path(), &sock, port)?;
                let pg = Pg::init_primary_on(base.path(), "pri", port, &t.server_parameters())?;
                t.prepare().await?;
                (pg, Arc::new(t))
            }
        };
        pg.run_bin("pgbench", &["-i", "-s", "10", "-q", "postgres"])?;
        let db_size = pg
            .query_text("select pg_size_pretty(pg_database_size('postgres'))")
            .await?;
        let t0 = Instant::now();
        let made = tool.backup(BackupKind::Full).await?;
        let backup_time = t0.elapsed();
        let repo = made
            .backup
            .and_then(|b| b.repo_size_bytes.or(b.size_bytes))
            .map(|b| format!("{:.1} MB", b as f64 / 1e6))
            .unwrap_or_else(|| "?".into());
        let data_dir = base.path().join("restored");
        let t1 = Instant::now();
        tool.restore(&RestoreRequest::latest(&data_dir)).await?;
        let restore_time = t1.elapsed();
        let restored = Pg::start_existing(base.path(), "restored", &data_dir)?;
        restored.wait_promoted().await?;
        let n = restored
            .query_i64("select count(*) from pgbench_accounts")
            .await?;
        ensure!(n == 1_000_000, "{tool_name}: restored {n} accounts");
        let line = format!(
            "{tool_name:<10} db {db_size:<7} backup {:<7} (size {repo}) restore {:<7}",
            secs(backup_time),
            secs(restore_time)
        );
        println!("{line}");
        report.push(line);
    }
    println!("\n{}", report.join("\n"));
    Ok(())
}
