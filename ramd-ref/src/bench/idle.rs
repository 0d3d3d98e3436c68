//! RSS and CPU of every agent of an idle cluster, from `/proc`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{BenchOptions, Rows, start_cluster};

/// `/proc/PID/stat` times are in USER_HZ, which Linux fixes at 100 for user space.
const USER_HZ: f64 = 100.0;

/// `utime + stime` of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_cpu_ticks(&text).with_context(|| format!("parsing /proc/{pid}/stat"))
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces: fields after the last ')' only.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS of a process, in kB.
fn rss_kb(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// Measures each agent over `idle_duration` (after a 5 s settle), sampling RSS every second.
pub(crate) async fn run(opts: &BenchOptions, rows: &mut Rows) -> Result<()> {
    let (pg, _) = start_cluster(opts).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pids: Vec<u32> = pg.report.nodes.iter().map(|n| n.pid).collect();
    let start_ticks = pids
        .iter()
        .map(|&p| cpu_ticks(p))
        .collect::<Result<Vec<_>>>()?;
    let t0 = Instant::now();
    let mut max_rss = vec![0u64; pids.len()];
    let samples = opts.idle_duration.as_secs().max(1);
    for _ in 0..samples {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (m, &p) in max_rss.iter_mut().zip(&pids) {
            *m = (*m).max(rss_kb(p)?);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    for (i, &p) in pids.iter().enumerate() {
        let d = cpu_ticks(p)?.saturating_sub(start_ticks[i]);
        let cpu_pct = d as f64 / USER_HZ / secs * 100.0;
        rows.push("idle: agent RSS (max)", "MB", max_rss[i] as f64 / 1024.0);
        rows.push("idle: agent CPU", "%", cpu_pct);
        eprintln!(
            "[ramd-bench]   {}: RSS {:.1} MB, CPU {cpu_pct:.2} %",
            pg.report.nodes[i].name,
            max_rss[i] as f64 / 1024.0
        );
    }
    // etcd's own members, shown apart from the agents.
    let mut pg = pg;
    if let Some(etcd) = pg.etcd() {
        for m in &etcd.members {
            let Some(p) = m.pid() else { continue };
            let ticks = cpu_ticks(p)?;
            let rss = rss_kb(p)? as f64 / 1024.0;
            // Average over its whole life: it ran from before the agents started.
            let life = etcd_age_secs(p).unwrap_or(secs).max(1.0);
            let cpu_pct = ticks as f64 / USER_HZ / life * 100.0;
            rows.push("idle: etcd member RSS", "MB", rss);
            rows.push("idle: etcd member CPU (lifetime)", "%", cpu_pct);
            eprintln!(
                "[ramd-bench]   {}: RSS {rss:.1} MB, CPU {cpu_pct:.2} %",
                m.name
            );
        }
    }
    drop(pg);
    Ok(())
}

/// Seconds since process `pid` started (`/proc/PID/stat` field 22, in clock ticks since
/// boot, against `/proc/uptime`).
fn etcd_age_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let start_ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(uptime - start_ticks / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_name() {
        let stat = "1234 (ra md x) S 1 1234 1234 0 -1 4194560 100 0 0 0 37 5 0 0 20 0 4 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(42));
    }
}
