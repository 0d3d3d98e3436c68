//! Fault and switchover scenarios measured with the client write loop.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::writer::{Attempt, Writer};
use super::{BenchOptions, Rows, logs, start_cluster};
use crate::demo::Playground;

pub(crate) fn primary_index(pg: &Playground) -> Result<usize> {
    pg.report
        .nodes
        .iter()
        .position(|n| n.role == "primary")
        .context("the ready cluster has no primary")
}

pub(crate) fn postmaster_pid(data_dir: &Path) -> Result<i32> {
    rale::pg::postmaster_pid(data_dir)
        .with_context(|| format!("no PID in {}/postmaster.pid", data_dir.display()))
}

pub(crate) fn dsns(pg: &Playground) -> Vec<String> {
    pg.report.nodes.iter().map(|n| n.dsn.clone()).collect()
}

/// Waits until the writer has a success on `node` after `since` (warm connections).
pub(crate) async fn warm_up(w: &Writer, node: usize) -> Result<()> {
    let t0 = Instant::now();
    if w.wait_ok_after(t0, Duration::from_secs(10), |n| n == node)
        .await
        .is_none()
    {
        bail!("no write succeeded on the primary within 10 s");
    }
    // A little steady state before the fault.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// Kill -9 of the primary's agent and postmaster at the same instant.
pub(crate) async fn node_loss(opts: &BenchOptions, rows: &mut Rows) -> Result<()> {
    let (pg, _) = start_cluster(opts).await?;
    let p = primary_index(&pg)?;
    let node = pg.report.nodes[p].clone();
    let pm = postmaster_pid(&node.data_dir)?;
    let agent = i32::try_from(node.pid).context("agent PID out of range")?;
    let w = Writer::start(&dsns(&pg), opts.recovery_timeout + Duration::from_secs(30));
    warm_up(&w, p).await?;
    let wall0 = chrono::Utc::now();
    let t0 = Instant::now();
    let _ = kill(Pid::from_raw(agent), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
    let got = w.wait_ok_after(t0, opts.recovery_timeout, |n| n != p).await;
    w.stop().await;
    let a = got.with_context(|| {
        format!(
            "no other node accepted a write within {:?}",
            opts.recovery_timeout
        )
    })?;
    let total_s = (a.end - t0).as_secs_f64();
    rows.push("node-loss", "s", total_s);
    let new = &pg.report.nodes[a.node];
    eprintln!(
        "[ramd-bench]   {} lost, {} accepts writes after {total_s:.3} s",
        node.name, new.name
    );
    let log = new
        .config
        .parent()
        .context("config has no directory")?
        .join("ramd.log");
    for (label, needle) in [
        ("node-loss: kill→detach", "kind=Detach"),
        ("node-loss: kill→failover", "kind=Failover"),
        ("node-loss: kill→promoted", "promoted"),
    ] {
        if let Some(s) = logs::phase_s(&log, wall0, needle) {
            rows.push(label, "s", s);
        }
    }
    drop(pg);
    Ok(())
}

/// Kill -9 of the primary's postmaster only.
pub(crate) async fn postmaster_crash(opts: &BenchOptions, rows: &mut Rows) -> Result<()> {
    let (pg, _) = start_cluster(opts).await?;
    let p = primary_index(&pg)?;
    let pm = postmaster_pid(&pg.report.nodes[p].data_dir)?;
    let w = Writer::start(&dsns(&pg), opts.recovery_timeout + Duration::from_secs(30));
    warm_up(&w, p).await?;
    let t0 = Instant::now();
    let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
    // Writes that commit on the orphaned backends in the first milliseconds do not count:
    // the outage starts with the first failed write.
    let outage = w.wait_failure_after(t0, opts.recovery_timeout).await;
    let from = outage.map_or(t0, |a| a.start);
    let got = w.wait_ok_after(from, opts.recovery_timeout, |_| true).await;
    w.stop().await;
    let a = got.with_context(|| format!("no write accepted within {:?}", opts.recovery_timeout))?;
    let s = (a.end - t0).as_secs_f64();
    rows.push("postmaster-crash", "s", s);
    if a.node != p {
        rows.push("postmaster-crash: failed over", "runs", 1.0);
    }
    eprintln!(
        "[ramd-bench]   {}'s postmaster killed, writes accepted again on {} after {s:.3} s",
        pg.report.nodes[p].name, pg.report.nodes[a.node].name
    );
    drop(pg);
    Ok(())
}

/// Longest gap between consecutive successful writes (any node) in `[from, to]`, and the
/// attempts on `nodes` that failed inside it.
pub(crate) fn longest_gap(
    attempts: &[Attempt],
    from: Instant,
    to: Instant,
    nodes: &[usize],
) -> (Duration, usize) {
    let mut oks: Vec<Instant> = attempts
        .iter()
        .filter(|a| a.ok && a.end >= from && a.end <= to)
        .map(|a| a.end)
        .collect();
    oks.sort();
    let mut best = (Duration::ZERO, from, from);
    for w in oks.windows(2) {
        let gap = w[1] - w[0];
        if gap > best.0 {
            best = (gap, w[0], w[1]);
        }
    }
    let failed = attempts
        .iter()
        .filter(|a| !a.ok && a.start >= best.1 && a.start <= best.2 && nodes.contains(&a.node))
        .count();
    (best.0, failed)
}

/// Planned switchovers under the write loop, `runs` of them on one cluster.
pub(crate) async fn switchover(opts: &BenchOptions, rows: &mut Rows) -> Result<()> {
    anyhow::ensure!(opts.nodes >= 2, "switchover needs at least 2 nodes");
    let (pg, _) = start_cluster(opts).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut leader = primary_index(&pg)?;
    for i in 0..opts.runs {
        let candidate = (leader + 1) % pg.report.nodes.len();
        let (l, c) = (&pg.report.nodes[leader], &pg.report.nodes[candidate]);
        let w = Writer::start(&dsns(&pg), opts.recovery_timeout + Duration::from_secs(30));
        warm_up(&w, leader).await?;
        let t0 = Instant::now();
        let resp = http
            .post(format!("{}/switchover", l.api_url))
            .basic_auth(&pg.report.auth.user, Some(&pg.report.auth.password))
            .json(&serde_json::json!({"leader": l.name, "candidate": c.name}))
            .send()
            .await
            .context("POST /switchover")?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            w.stop().await;
            bail!("switchover {i}: {status}: {body}");
        }
        let got = w
            .wait_ok_after(t0, opts.recovery_timeout, |n| n == candidate)
            .await;
        // Some steady state on the new primary before the window closes.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let end = Instant::now();
        let attempts = w.stop().await;
        let a = got.with_context(|| {
            format!(
                "{} accepted no write within {:?} of the switchover",
                c.name, opts.recovery_timeout
            )
        })?;
        let (gap, failed) = longest_gap(
            &attempts,
            t0 - Duration::from_millis(200),
            end,
            &[leader, candidate],
        );
        rows.push("switchover: max write gap", "s", gap.as_secs_f64());
        rows.push("switchover: failed attempts", "count", failed as f64);
        rows.push(
            "switchover: POST→candidate writes",
            "s",
            (a.end - t0).as_secs_f64(),
        );
        eprintln!(
            "[ramd-bench]   {} → {}: gap {:.3} s, {failed} failed attempts",
            l.name,
            c.name,
            gap.as_secs_f64()
        );
        leader = candidate;
        // Let the old primary rejoin as a replica before the next round.
        if i + 1 < opts.runs {
            wait_streaming(&pg, &http, opts.ready_timeout).await?;
        }
    }
    drop(pg);
    Ok(())
}

/// Waits until `GET /cluster` shows one leader and every other member streaming.
pub(crate) async fn wait_streaming(
    pg: &Playground,
    http: &reqwest::Client,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        for n in &pg.report.nodes {
            let Ok(resp) = http.get(format!("{}/cluster", n.api_url)).send().await else {
                continue;
            };
            let Ok(v) = resp.json::<serde_json::Value>().await else {
                continue;
            };
            let members = v
                .get("members")
                .and_then(|m| m.as_array())
                .cloned()
                .unwrap_or_default();
            let streaming = members
                .iter()
                .filter(|m| m.get("state").and_then(|s| s.as_str()) == Some("streaming"))
                .count();
            let leaders = members
                .iter()
                .filter(|m| {
                    matches!(
                        m.get("role").and_then(|s| s.as_str()),
                        Some("leader" | "primary")
                    )
                })
                .count();
            if members.len() == pg.report.nodes.len()
                && leaders == 1
                && streaming + 1 >= members.len()
            {
                return Ok(());
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the cluster did not settle within {timeout:?} after the switchover")
}
