//! Synchronous replication continuity (issue 14, items 7 and 8).
//!
//! - `sync-window`: `synchronous.mode = on` (`FIRST 1`), `kill -9` of the primary's agent
//!   and postmaster. From the kill until 5 s after the first write on the new primary,
//!   every surviving primary's `synchronous_standby_names` is sampled every 10 ms: the
//!   **asynchronous window** is the time one allowed commits without any real standby
//!   (only the commit fence listed, or nothing), **waiting for a standby** the time it
//!   listed standbys none of which streamed yet (the price of not going asynchronous).
//!   Also: kill → first write on the new primary.
//! - `sync-reentry`: `synchronous.mode = quorum` (`ANY 1`) over three nodes with `pgbench`
//!   at full load on the primary; `kill -9` of a standby's postmaster (its agent restarts
//!   it). Measured: kill → the standby is back in the recorded synchronous set, and how
//!   many times the recorded set changed meanwhile (a stable re-entry changes it twice:
//!   out, then in).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use super::pgbench::{run_pgbench, sql_one};
use super::scenarios::{dsns, postmaster_pid, primary_index, warm_up};
use super::writer::Writer;
use super::{BenchOptions, Rows};
use crate::demo::{DemoOptions, Playground};

async fn start_with(opts: &BenchOptions, extra: &str) -> Result<Playground> {
    let bootstrap = format!(
        "{}{extra}",
        opts.profile.bootstrap_toml().unwrap_or_default()
    );
    let demo = DemoOptions {
        nodes: opts.nodes,
        ready_timeout: opts.ready_timeout,
        bootstrap_toml: Some(bootstrap),
        consensus: opts.consensus,
        ..Default::default()
    };
    let mut pg = Playground::start(&demo)?;
    pg.wait_ready(opts.ready_timeout).await?;
    Ok(pg)
}

/// Whether a `synchronous_standby_names` value needs a real standby for a commit.
fn needs_a_standby(value: &str) -> bool {
    let Ok(names) = rale_sync::names::StandbyNames::parse(value) else {
        return true;
    };
    let Some(list) = names.list() else {
        return false;
    };
    let members = list.members();
    if members
        .iter()
        .any(|m| m.eq_ignore_ascii_case(rale_sync::enforce::BLOCKED_APPLICATION_NAME))
    {
        // Commits wait: not asynchronous.
        return true;
    }
    let fence = members
        .iter()
        .filter(|m| m.eq_ignore_ascii_case(rale_sync::enforce::FENCE_APPLICATION_NAME))
        .count();
    let num = usize::try_from(list.num()).unwrap_or(usize::MAX);
    // FIRST n (rale_fence, s…): the fence takes one of the n; ANY n counts real standbys.
    match list.method() {
        rale_sync::names::SyncMethod::First => num > fence,
        rale_sync::names::SyncMethod::Any => num > 0,
    }
}

/// `sync-window`, one run.
pub(crate) async fn window(opts: &BenchOptions, rows: &mut Rows) -> Result<()> {
    let pg = start_with(
        opts,
        "[bootstrap.synchronous]\nmode = \"on\"\nnode_count = 1\n",
    )
    .await?;
    let p = primary_index(&pg)?;
    let node = pg.report.nodes[p].clone();
    let pm = postmaster_pid(&node.data_dir)?;
    let agent = i32::try_from(node.pid).context("agent PID out of range")?;
    let w = Writer::start(&dsns(&pg), opts.recovery_timeout + Duration::from_secs(30));
    warm_up(&w, p).await?;
    let t0 = Instant::now();
    let _ = kill(Pid::from_raw(agent), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
    let got = w.wait_ok_after(t0, opts.recovery_timeout, |n| n != p).await;
    let Some(first) = got else {
        w.stop().await;
        bail!(
            "no other node accepted a write within {:?}",
            opts.recovery_timeout
        );
    };
    let new = first.node;
    rows.push(
        "sync-window: kill→write",
        "s",
        (first.end - t0).as_secs_f64(),
    );
    // From the kill until 5 s after the first write, every 10 ms: is a surviving primary
    // acknowledging commits without any real standby (asynchronous), or waiting for one?
    let survivors: Vec<String> = pg
        .report
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != p)
        .map(|(_, n)| n.dsn.clone())
        .collect();
    let (mut async_ms, mut blocked_ms) = (0u64, 0u64);
    let step = Duration::from_millis(10);
    let end = first.end + Duration::from_secs(5);
    let mut samples = 0usize;
    while Instant::now() < end && samples < 2_000 {
        samples += 1;
        let tick = Instant::now();
        for dsn in &survivors {
            let primary = sql_one(dsn, "SELECT (NOT pg_is_in_recovery())::text").await;
            if primary.as_deref().ok() != Some("true") {
                continue;
            }
            let ssn = sql_one(dsn, "SHOW synchronous_standby_names")
                .await
                .unwrap_or_default();
            let streaming = sql_one(
                dsn,
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND application_name NOT LIKE 'rale\\_%'",
            )
            .await
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
            let spent = u64::try_from(tick.elapsed().as_millis())
                .unwrap_or(0)
                .max(10);
            if !needs_a_standby(&ssn) {
                async_ms += spent;
            } else if streaming == 0 {
                blocked_ms += spent;
            }
        }
        let left = step.saturating_sub(tick.elapsed());
        tokio::time::sleep(left).await;
    }
    w.stop().await;
    rows.push(
        "sync-window: asynchronous window",
        "s",
        async_ms as f64 / 1000.0,
    );
    rows.push(
        "sync-window: waiting for a standby",
        "s",
        blocked_ms as f64 / 1000.0,
    );
    eprintln!(
        "[ramd-bench]   {} promoted: asynchronous for {async_ms} ms, commits waiting for a standby {blocked_ms} ms",
        pg.report.nodes[new].name
    );
    Ok(())
}

fn recorded_set(status: &Value) -> Vec<String> {
    status["sync"]["standbys"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `sync-reentry`, one run.
pub(crate) async fn reentry(opts: &BenchOptions, rows: &mut Rows) -> Result<()> {
    let po = &opts.pgbench;
    let pg = start_with(
        opts,
        "[bootstrap.synchronous]\nmode = \"quorum\"\nnode_count = 1\n",
    )
    .await?;
    let p = primary_index(&pg)?;
    let primary = pg.report.nodes[p].clone();
    let victim = pg
        .report
        .nodes
        .iter()
        .find(|n| n.name != primary.name)
        .context("a standby")?
        .clone();
    let http = pg.http_client(Duration::from_secs(2))?;
    let status_url = format!("{}/api/v1/cluster/status", primary.api_url);
    let status = || async {
        let t = http.get(&status_url).send().await.ok()?.text().await.ok()?;
        serde_json::from_str::<Value>(&t).ok()
    };
    // Both standbys in the set before the fault.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if status().await.is_some_and(|s| recorded_set(&s).len() == 2) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the recorded set never held both standbys");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let work = pg.report.dir.join("reentry");
    std::fs::create_dir_all(&work)?;
    run_pgbench(
        &po.pgbench,
        &primary.dsn,
        &["-i".into(), "-q".into(), format!("-s{}", po.scale)],
        &work,
        Duration::from_secs(600),
    )
    .await?;
    let args = vec![
        "-n".to_string(),
        format!("-c{}", po.clients),
        format!("-j{}", po.clients.clamp(1, 2)),
        "-T60".to_string(),
    ];
    let bench = {
        let (bin, dsn, work) = (po.pgbench.clone(), primary.dsn.clone(), work.clone());
        tokio::spawn(async move {
            run_pgbench(&bin, &dsn, &args, &work, Duration::from_secs(400)).await
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pm = postmaster_pid(&victim.data_dir)?;
    let t0 = Instant::now();
    let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
    let mut changes = 0usize;
    let mut last: Option<Vec<String>> = None;
    let mut left = false;
    let mut back = None;
    let end = t0 + Duration::from_secs(50);
    while Instant::now() < end {
        if let Some(s) = status().await {
            let set = recorded_set(&s);
            if last.as_ref().is_some_and(|l| *l != set) {
                changes += 1;
            }
            let has = set.contains(&victim.name);
            if !has {
                left = true;
            } else if left && back.is_none() {
                back = Some(t0.elapsed());
            }
            last = Some(set);
        }
        if back.is_some_and(|b: Duration| t0.elapsed() > b + Duration::from_secs(5)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bench.abort();
    let back = back.with_context(|| {
        format!(
            "{} did not re-enter the recorded set within 50 s under load",
            victim.name
        )
    })?;
    rows.push(
        "sync-reentry: kill→back in the set",
        "s",
        back.as_secs_f64(),
    );
    rows.push("sync-reentry: set changes", "count", changes as f64);
    eprintln!(
        "[ramd-bench]   {} back in the synchronous set {:.2} s after its postmaster was killed under pgbench ({changes} set changes)",
        victim.name,
        back.as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_values_need_a_standby() {
        assert!(!needs_a_standby(""));
        assert!(!needs_a_standby("FIRST 1 (rale_fence)"));
        assert!(needs_a_standby("FIRST 2 (rale_fence, node2)"));
        assert!(needs_a_standby("ANY 1 (node2, node3)"));
        assert!(
            needs_a_standby("FIRST 1 (rale_blocked)"),
            "blocked waits, not async"
        );
    }
}
