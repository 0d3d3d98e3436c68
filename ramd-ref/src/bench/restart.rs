//! The write pause of a restart of the primary's agent alone, measured with the client
//! write loop: `kill -9` then start (a crashed agent that systemd restarts; PostgreSQL
//! keeps running and its commits wait for the fence meanwhile), and `SIGTERM` then start
//! (a planned `systemctl restart`: the agent stops PostgreSQL and releases the lease, so
//! another node takes over).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::scenarios::{dsns, longest_gap, primary_index, wait_streaming, warm_up};
use super::writer::Writer;
use super::{BenchOptions, Rows, start_cluster};
use crate::demo::Playground;

/// Delay between the agent's exit and its start, as `RestartSec=200ms` in
/// `packaging/systemd/ramd.service`.
const RESTART_DELAY: Duration = Duration::from_millis(200);

/// Waits (bounded) until agent `i` has exited.
async fn wait_exit(pg: &mut Playground, i: usize, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let child = pg.agents().child(i).context("no such agent")?;
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("agent {i} did not exit within {timeout:?}")
}

/// One cluster per run: a `kill -9` restart, then (once the cluster settled) a `SIGTERM`
/// restart of the primary's agent, each under the write loop.
pub(crate) async fn run(opts: &BenchOptions, rows: &mut Rows) -> Result<()> {
    let (mut pg, _) = start_cluster(opts).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut p = primary_index(&pg)?;
    for (label, signal) in [("kill -9", Signal::SIGKILL), ("SIGTERM", Signal::SIGTERM)] {
        let name = pg.report.nodes[p].name.clone();
        let w = Writer::start(&dsns(&pg), opts.recovery_timeout + Duration::from_secs(60));
        warm_up(&w, p).await?;
        let pid = i32::try_from(pg.report.nodes[p].pid).context("agent PID out of range")?;
        let t0 = Instant::now();
        kill(Pid::from_raw(pid), signal).with_context(|| format!("kill -{signal} {pid}"))?;
        wait_exit(&mut pg, p, Duration::from_secs(90)).await?;
        let exited = t0.elapsed();
        tokio::time::sleep(RESTART_DELAY).await;
        pg.restart_agent(p)?;
        let restarted = t0.elapsed();
        // Writes resume (on any node), then some steady state.
        let got = w
            .wait_ok_after(t0 + restarted, opts.recovery_timeout, |_| true)
            .await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let end = Instant::now();
        let attempts = w.stop().await;
        let a = got.with_context(|| {
            format!(
                "no write accepted within {:?} of the restart",
                opts.recovery_timeout
            )
        })?;
        let all: Vec<usize> = (0..pg.report.nodes.len()).collect();
        let (gap, _) = longest_gap(&attempts, t0 - Duration::from_millis(200), end, &all);
        let moved = a.node != p;
        let key = if signal == Signal::SIGKILL {
            "agent-restart (kill -9)"
        } else {
            "agent-restart (SIGTERM)"
        };
        rows.push(&format!("{key}: max write gap"), "s", gap.as_secs_f64());
        rows.push(&format!("{key}: agent down"), "s", restarted.as_secs_f64());
        if moved {
            rows.push(&format!("{key}: failed over"), "runs", 1.0);
        }
        eprintln!(
            "[ramd-bench]   {label} of {name}'s agent: exited after {:.3} s, started again at {:.3} s; \
             longest write gap {:.3} s; writes resumed on {}",
            exited.as_secs_f64(),
            restarted.as_secs_f64(),
            gap.as_secs_f64(),
            pg.report.nodes[a.node].name
        );
        wait_streaming(&pg, &http, opts.ready_timeout).await?;
        p = current_primary(&pg, &http).await.unwrap_or(a.node);
    }
    drop(pg);
    Ok(())
}

/// The node `GET /cluster` shows as leader.
async fn current_primary(pg: &Playground, http: &reqwest::Client) -> Option<usize> {
    for n in &pg.report.nodes {
        let Ok(resp) = http.get(format!("{}/cluster", n.api_url)).send().await else {
            continue;
        };
        let Ok(v) = resp.json::<serde_json::Value>().await else {
            continue;
        };
        let leader = v.get("members")?.as_array()?.iter().find_map(|m| {
            (m.get("role")?.as_str()? == "leader")
                .then(|| m.get("name")?.as_str().map(str::to_owned))?
        })?;
        return pg.report.nodes.iter().position(|n| n.name == leader);
    }
    None
}
