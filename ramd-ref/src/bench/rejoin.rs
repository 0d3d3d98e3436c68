//! Bringing a node back: `rejoin` (the old primary's agent starts again after a node-loss
//! failover and the node must follow the new primary, by `pg_rewind` or a fresh clone)
//! and `reclone` (`POST /reinitialize` of a streaming replica: a full `pg_basebackup`).
//!
//! "Streaming" is read from the node's own server: `pg_stat_wal_receiver` shows a
//! `streaming` receiver whose `sender_port` is the primary's port.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::scenarios::{dsns, postmaster_pid, primary_index, wait_streaming, warm_up};
use super::writer::Writer;
use super::{BenchOptions, Rows, logs, start_cluster};
use crate::demo::Playground;

/// How the old primary came back, from its `ramd.log`: the rejoin decisions' reasons
/// ("rewound from X: starting as a replica of Y"; "pg_rewind from X failed (…): taking a
/// fresh base backup from Y"; "…, stopping, then a fresh base backup from Y" when
/// `use_pg_rewind` is off). None of them: it simply followed.
fn rejoin_path(log_text: &str, since: chrono::DateTime<chrono::Utc>) -> &'static str {
    let lines: Vec<String> = log_text
        .lines()
        .map(logs::strip_ansi)
        .filter(|l| {
            l.split_whitespace()
                .next()
                .and_then(|ts| chrono::DateTime::parse_from_rfc3339(ts).ok())
                .is_some_and(|at| at.with_timezone(&chrono::Utc) >= since)
        })
        .collect();
    let any = |needle: &str| lines.iter().any(|l| l.contains(needle));
    if any("pg_rewind from") && any("failed") && any("taking a fresh base backup") {
        "fresh clone (pg_rewind failed)"
    } else if any("rewound from") {
        "pg_rewind"
    } else if any("a fresh base backup from") {
        "fresh clone"
    } else {
        "follow (no rewind needed)"
    }
}

/// Whether the server at `dsn` streams from the server listening on `sender_port`, on
/// the timeline `tli`. The timeline matters: a diverged standby's WAL receiver shows
/// `streaming` for a moment whenever it reconnects, still on its old timeline.
async fn streams_from(dsn: &str, sender_port: u16, tli: &str) -> bool {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming' AND sender_port = {sender_port} AND received_tli = {tli}"
    );
    matches!(super::pgbench::sql_one(dsn, &sql).await.as_deref(), Ok("1"))
}

/// Polls (every 50 ms, at most `timeout`) until node `i` streams from node `primary`.
async fn wait_streams_from(
    pg: &Playground,
    i: usize,
    primary: usize,
    timeout: Duration,
) -> Result<Instant> {
    let (dsn, port) = (&pg.report.nodes[i].dsn, pg.report.nodes[primary].pg_port);
    // The primary's timeline: the first 8 hex digits of its current WAL file's name.
    let tli_sql =
        "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int";
    let tli = super::pgbench::sql_one(&pg.report.nodes[primary].dsn, tli_sql)
        .await
        .context("the primary's timeline")?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if streams_from(dsn, port, &tli).await {
            return Ok(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "{} did not stream from {} within {timeout:?}",
        pg.report.nodes[i].name,
        pg.report.nodes[primary].name
    )
}

/// Bulk inserts on `dsn` (one million rows per statement, at most 20 statements) until
/// the connection dies: WAL is written faster than the replicas receive it, so a primary
/// killed meanwhile has WAL the others never got and its timeline diverges.
async fn bulk_writes(dsn: String) {
    let Ok(Ok((client, conn))) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&format!("{dsn} connect_timeout=2"), tokio_postgres::NoTls),
    )
    .await
    else {
        return;
    };
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    for _ in 0..20 {
        let sql = "INSERT INTO rale_demo (at) SELECT now() FROM generate_series(1, 1000000)";
        if !matches!(
            tokio::time::timeout(Duration::from_secs(60), client.batch_execute(sql)).await,
            Ok(Ok(()))
        ) {
            break;
        }
    }
    task.abort();
}

/// PIDs whose parent is `parent` (`/proc/*/stat`, field 4).
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command may contain spaces; fields after the closing parenthesis.
        let ppid: i32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == parent).then_some(pid)
    })
    .collect()
}

/// Node loss (kill -9 of the primary's agent, postmaster and its children) while the
/// primary writes in bulk, failover, then the old node's agent starts again: agent start → the old node
/// streams from the new primary.
/// With `diverge`, no bulk writes: the primary's WAL senders are stopped for the last
/// 300 ms before the kill, so that its WAL goes past what any standby received.
pub(crate) async fn rejoin(opts: &BenchOptions, rows: &mut Rows, diverge: bool) -> Result<()> {
    let name = if diverge { "rejoin-diverged" } else { "rejoin" };
    let (mut pg, _) = start_cluster(opts).await?;
    let p = primary_index(&pg)?;
    let node = pg.report.nodes[p].clone();
    let pm = postmaster_pid(&node.data_dir)?;
    let agent = i32::try_from(node.pid).context("agent PID out of range")?;
    let w = Writer::start(&dsns(&pg), opts.recovery_timeout + Duration::from_secs(30));
    warm_up(&w, p).await?;
    // Diverging by stopped WAL senders needs no bulk: the write loop's few records that
    // nobody receives do it, and the standbys stay within maximum_lag_on_failover.
    let bulk = (!diverge).then(|| tokio::spawn(bulk_writes(node.dsn.clone())));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    if diverge {
        let senders: Vec<i32> = children_of(pm)
            .into_iter()
            .filter(|c| {
                std::fs::read(format!("/proc/{c}/cmdline"))
                    .is_ok_and(|b| String::from_utf8_lossy(&b).contains("walsender"))
            })
            .collect();
        anyhow::ensure!(!senders.is_empty(), "the primary has no WAL sender to stop");
        for c in &senders {
            let _ = kill(Pid::from_raw(*c), Signal::SIGSTOP);
        }
        // WAL nobody receives, written without waiting for any acknowledgement (the
        // write loop's commits wait for the stopped fence).
        super::pgbench::sql_one(
            &node.dsn,
            "SELECT pg_logical_emit_message(false, 'ramd-bench', repeat('x', 4000))",
        )
        .await
        .context("writing WAL past the standbys")?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let flushed = super::pgbench::sql_one(&node.dsn, "SELECT pg_current_wal_flush_lsn()")
            .await
            .unwrap_or_default();
        let mut received = Vec::new();
        for (i, n) in pg.report.nodes.iter().enumerate() {
            if i != p {
                let sql = "SELECT pg_last_wal_receive_lsn()";
                let r = super::pgbench::sql_one(&n.dsn, sql)
                    .await
                    .unwrap_or_default();
                received.push(format!("{} {r}", n.name));
            }
        }
        eprintln!(
            "[ramd-bench]   {} WAL senders stopped; primary flushed to {flushed}, standbys received {}",
            senders.len(),
            received.join(", ")
        );
    }
    // The whole machine dies: the postmaster's children too (a backend in the middle of
    // a bulk insert or a walsender would otherwise go on for a moment).
    let children = children_of(pm);
    let t0 = Instant::now();
    let _ = kill(Pid::from_raw(agent), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
    for c in children {
        let _ = kill(Pid::from_raw(c), Signal::SIGKILL);
    }
    let got = w.wait_ok_after(t0, opts.recovery_timeout, |n| n != p).await;
    w.stop().await;
    if let Some(b) = bulk {
        b.abort();
    }
    let a = got.context("no other node accepted a write after the node loss")?;
    let new = a.node;
    // The killed agent is reaped, then started again as systemd would (RestartSec).
    let deadline = Instant::now() + Duration::from_secs(10);
    while pg
        .agents()
        .child(p)
        .context("no such agent")?
        .try_wait()?
        .is_none()
    {
        if Instant::now() > deadline {
            bail!("the killed agent of {} did not exit", node.name);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Some writes on the new primary, so that the old node's timeline diverges for sure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let wall1 = chrono::Utc::now();
    let t1 = Instant::now();
    pg.restart_agent(p)?;
    let at = wait_streams_from(&pg, p, new, opts.ready_timeout).await?;
    let s = (at - t1).as_secs_f64();
    rows.push(&format!("{name}: start→streaming"), "s", s);
    let log = node
        .config
        .parent()
        .context("config has no directory")?
        .join("ramd.log");
    if let Some(r) = logs::phase_s(&log, wall1, "kind=Rejoin") {
        rows.push(&format!("{name}: start→rejoin decided (log)"), "s", r);
    }
    if let Some(r) = logs::phase_s(&log, wall1, "rewound from") {
        rows.push(&format!("{name}: start→rewound (log)"), "s", r);
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let path = rejoin_path(&text, wall1);
    // The old node's decisions since its start, the reasons of how it came back.
    for l in text
        .lines()
        .map(logs::strip_ansi)
        .filter(|l| l.contains("kind=Rejoin") || l.contains("kind=Follow"))
        .filter(|l| {
            l.split_whitespace()
                .next()
                .and_then(|ts| chrono::DateTime::parse_from_rfc3339(ts).ok())
                .is_some_and(|at| at.with_timezone(&chrono::Utc) >= wall1)
        })
        .take(6)
    {
        eprintln!(
            "[ramd-bench]     {}",
            l.chars().take(300).collect::<String>()
        );
    }
    rows.push(&format!("{name} by {path}"), "runs", 1.0);
    rows.push(&format!("{name} by {path}: start→streaming"), "s", s);
    eprintln!(
        "[ramd-bench]   {} back as a replica of {} after {s:.3} s, by {path}",
        node.name, pg.report.nodes[new].name
    );
    drop(pg);
    Ok(())
}

/// `POST /reinitialize {"force": true}` of each replica in turn on one cluster: POST →
/// the replica streams again from the primary (full `pg_basebackup`).
pub(crate) async fn reclone(opts: &BenchOptions, rows: &mut Rows) -> Result<()> {
    anyhow::ensure!(opts.nodes >= 2, "reclone needs at least 2 nodes");
    let (pg, _) = start_cluster(opts).await?;
    let p = primary_index(&pg)?;
    let http = pg.http_client(Duration::from_secs(600))?;
    let n = pg.report.nodes.len();
    for i in 0..opts.runs {
        let r = (p + 1 + i % (n - 1)) % n;
        let node = &pg.report.nodes[r];
        wait_streams_from(&pg, r, p, opts.ready_timeout).await?;
        let t0 = Instant::now();
        let resp = http
            .post(format!("{}/reinitialize", node.api_url))
            .basic_auth(&pg.report.auth.user, Some(&pg.report.auth.password))
            .json(&serde_json::json!({"force": true}))
            .send()
            .await
            .context("POST /reinitialize")?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        anyhow::ensure!(
            status.is_success(),
            "reinitialize {}: {status}: {body}",
            node.name
        );
        let returned = t0.elapsed().as_secs_f64();
        let at = wait_streams_from(&pg, r, p, opts.ready_timeout).await?;
        let s = (at - t0).as_secs_f64();
        rows.push("reclone: POST→streaming", "s", s);
        rows.push("reclone: POST returned", "s", returned);
        eprintln!(
            "[ramd-bench]   {} recloned: POST returned after {returned:.3} s, streaming after {s:.3} s",
            node.name
        );
        // The cluster view settles before the next round.
        wait_streaming(&pg, &http, opts.ready_timeout).await?;
    }
    drop(pg);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejoin_path_from_log() {
        let since = chrono::DateTime::parse_from_rfc3339("2026-11-22T03:00:00Z")
            .expect("valid")
            .with_timezone(&chrono::Utc);
        let log = "2026-11-22T02:59:00.000000Z  INFO decision kind=Rejoin reason=\"rewound from node2: starting as a replica of node2\"\n";
        assert!(
            rejoin_path(log, since).starts_with("follow"),
            "before `since`"
        );
        let log = "2026-11-22T03:00:01.000000Z  INFO decision kind=Rejoin reason=\"rewound from node2: starting as a replica of node2\"\n";
        assert_eq!(rejoin_path(log, since), "pg_rewind");
        let log = "2026-11-22T03:00:01.000000Z  INFO decision kind=Rejoin reason=\"pg_rewind from node2 failed (boom): taking a fresh base backup from node2\"\n";
        assert_eq!(rejoin_path(log, since), "fresh clone (pg_rewind failed)");
        assert!(rejoin_path("", since).starts_with("follow"));
    }
}
