//! `pgbench` against the primary of a playground with the commit fence on and off: TPS and
//! latency (average from pgbench's summary, p50/p99 from its per-transaction log).
//!
//! The fence is switched with the dynamic configuration (`PATCH /config {"fence": …}`);
//! each phase starts only once the primary's `synchronous_standby_names` says so and, for
//! "on", the fence streams (`pg_stat_replication`). Phases alternate on one cluster so
//! that machine noise hits both alike.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;

use super::scenarios::primary_index;
use super::{BenchOptions, Rows, start_cluster};
use crate::demo::Playground;

/// Which fence settings the pgbench scenario measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FenceChoice {
    /// Only with the fence on.
    On,
    /// Only with the fence off.
    Off,
    /// Both, alternating off/on in every run.
    Both,
}

impl FenceChoice {
    fn settings(self) -> &'static [bool] {
        match self {
            FenceChoice::On => &[true],
            FenceChoice::Off => &[false],
            FenceChoice::Both => &[false, true],
        }
    }
}

impl std::str::FromStr for FenceChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "on" => FenceChoice::On,
            "off" => FenceChoice::Off,
            "both" => FenceChoice::Both,
            other => bail!("unknown fence choice {other:?} (on, off, both)"),
        })
    }
}

/// Settings of the pgbench scenario.
#[derive(Clone, Debug)]
pub struct PgbenchOptions {
    /// The `pgbench` binary.
    pub pgbench: PathBuf,
    /// Fence settings to measure.
    pub fence: FenceChoice,
    /// Duration of each measured phase (`pgbench -T`).
    pub duration: Duration,
    /// Client connections (`-c`; threads `-j` = min(clients, 2)).
    pub clients: u32,
    /// Scale factor of `pgbench -i`.
    pub scale: u32,
}

impl Default for PgbenchOptions {
    fn default() -> Self {
        Self {
            pgbench: PathBuf::from("/usr/lib/postgresql/15/bin/pgbench"),
            fence: FenceChoice::Both,
            duration: Duration::from_secs(30),
            clients: 8,
            scale: 10,
        }
    }
}

/// What one pgbench phase measured.
#[derive(Clone, Debug, PartialEq)]
pub struct PgbenchResult {
    /// `tps = … (without initial connection time)`.
    pub tps: f64,
    /// `latency average = … ms`.
    pub latency_avg_ms: f64,
    /// Median of the per-transaction latencies (log).
    pub latency_p50_ms: f64,
    /// 99th percentile of the per-transaction latencies (log).
    pub latency_p99_ms: f64,
    /// Transactions logged.
    pub transactions: usize,
}

/// Parses `tps = …` and `latency average = … ms` from pgbench's summary.
pub fn parse_summary(stdout: &str) -> Option<(f64, f64)> {
    let mut tps = None;
    let mut avg = None;
    for line in stdout.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("tps = ") {
            // PostgreSQL 14+ prints one "without initial connection time" line; older
            // versions print "including …" then "excluding connections establishing".
            if tps.is_none() || rest.contains("without") || rest.contains("excluding") {
                tps = rest.split_whitespace().next().and_then(|v| v.parse().ok());
            }
        } else if let Some(rest) = line.strip_prefix("latency average = ") {
            avg = rest.split_whitespace().next().and_then(|v| v.parse().ok());
        }
    }
    Some((tps?, avg?))
}

/// Per-transaction latencies (µs, third field) from pgbench `--log` lines
/// (`client_id transaction_no time_us script_no time_epoch time_us_frac …`).
pub fn parse_log_latencies_us(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect()
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank.
fn quantile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64
}

pub(crate) async fn sql_one(dsn: &str, sql: &str) -> Result<String> {
    let (client, conn) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&format!("{dsn} connect_timeout=2"), tokio_postgres::NoTls),
    )
    .await
    .context("connecting timed out")??;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let r = tokio::time::timeout(Duration::from_secs(10), client.simple_query(sql)).await;
    task.abort();
    let msgs = r.context("query timed out")??;
    Ok(msgs
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default())
}

/// `PATCH /config {"fence": on}` through the primary's agent, then waits until the
/// primary's server reflects it (and, for on, the fence streams).
async fn set_fence(pg: &Playground, p: usize, on: bool) -> Result<()> {
    let node = &pg.report.nodes[p];
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let resp = http
        .patch(format!("{}/config", node.api_url))
        .basic_auth(&pg.report.auth.user, Some(&pg.report.auth.password))
        .json(&serde_json::json!({ "fence": on }))
        .send()
        .await
        .context("PATCH /config")?;
    let status = resp.status();
    ensure!(
        status.is_success(),
        "PATCH /config fence={on}: {status}: {}",
        resp.text().await.unwrap_or_default()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let names = sql_one(&node.dsn, "SHOW synchronous_standby_names")
            .await
            .unwrap_or_default();
        let streaming = sql_one(
            &node.dsn,
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'rale_fence' AND state = 'streaming'",
        )
        .await
        .unwrap_or_default();
        let named = crate::fence::names_fence(&names);
        if named == on && (!on || streaming == "1") {
            eprintln!(
                "[ramd-bench]   fence {}: synchronous_standby_names = {names:?}",
                if on { "on" } else { "off" }
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the primary did not apply fence = {on} within 60 s")
}

pub(crate) async fn run_pgbench(
    bin: &Path,
    dsn: &str,
    args: &[String],
    dir: &Path,
    limit: Duration,
) -> Result<String> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args)
        .arg(dsn)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .with_context(|| format!("pgbench {args:?} did not finish within {limit:?}"))?
        .with_context(|| format!("running {}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "pgbench {args:?} failed ({}): {}{}",
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// One measured phase: `pgbench -T` with a per-transaction log in a fresh directory.
async fn phase(po: &PgbenchOptions, dsn: &str, dir: &Path) -> Result<PgbenchResult> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let args = vec![
        "-n".to_string(),
        format!("-c{}", po.clients),
        format!("-j{}", po.clients.clamp(1, 2)),
        format!("-T{}", po.duration.as_secs().max(1)),
        "--log".to_string(),
        "--log-prefix=tx".to_string(),
    ];
    let stdout = run_pgbench(
        &po.pgbench,
        dsn,
        &args,
        dir,
        po.duration + Duration::from_secs(120),
    )
    .await?;
    let (tps, latency_avg_ms) =
        parse_summary(&stdout).with_context(|| format!("no tps/latency in: {stdout}"))?;
    let mut lat = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("tx"))
        {
            lat.extend(parse_log_latencies_us(&std::fs::read_to_string(&p)?));
        }
    }
    lat.sort_unstable();
    Ok(PgbenchResult {
        tps,
        latency_avg_ms,
        latency_p50_ms: quantile(&lat, 0.50) / 1000.0,
        latency_p99_ms: quantile(&lat, 0.99) / 1000.0,
        transactions: lat.len(),
    })
}

/// A ready cluster with `pgbench -i -s <scale>` done on its primary: the playground, the
/// primary's index, its DSN and a work directory `<playground>/<dir>` for pgbench files.
pub(crate) async fn start_initialised(
    opts: &BenchOptions,
    dir: &str,
) -> Result<(Playground, usize, String, PathBuf)> {
    let po = &opts.pgbench;
    ensure!(
        po.pgbench.exists(),
        "{} not found (set --pgbench)",
        po.pgbench.display()
    );
    let (pg, _) = start_cluster(opts).await?;
    let p = primary_index(&pg)?;
    let dsn = pg.report.nodes[p].dsn.clone();
    let work = pg.report.dir.join(dir);
    std::fs::create_dir_all(&work)?;
    eprintln!(
        "[ramd-bench]   pgbench -i -s {} on {}",
        po.scale, pg.report.nodes[p].name
    );
    run_pgbench(
        &po.pgbench,
        &dsn,
        &["-i".into(), "-q".into(), format!("-s{}", po.scale)],
        &work,
        Duration::from_secs(600),
    )
    .await?;
    Ok((pg, p, dsn, work))
}

/// The scenario: one cluster, `pgbench -i`, then `runs` rounds of the chosen settings.
pub(crate) async fn run(opts: &BenchOptions, rows: &mut Rows) -> Result<()> {
    let po = &opts.pgbench;
    let (pg, p, dsn, work) = start_initialised(opts, "pgbench").await?;
    for run in 0..opts.runs {
        for &on in po.fence.settings() {
            set_fence(&pg, p, on).await?;
            let label = if on { "on" } else { "off" };
            let r = phase(po, &dsn, &work.join(format!("run{run}-{label}"))).await?;
            eprintln!(
                "[ramd-bench]   fence {label}: {:.0} tps, latency avg {:.3} ms, p50 {:.3} ms, p99 {:.3} ms ({} transactions)",
                r.tps, r.latency_avg_ms, r.latency_p50_ms, r.latency_p99_ms, r.transactions
            );
            let c = po.clients;
            rows.push(
                &format!("pgbench fence {label}: tps ({c} cl)"),
                "tps",
                r.tps,
            );
            rows.push(
                &format!("pgbench fence {label}: lat avg"),
                "ms",
                r.latency_avg_ms,
            );
            rows.push(
                &format!("pgbench fence {label}: lat p50"),
                "ms",
                r.latency_p50_ms,
            );
            rows.push(
                &format!("pgbench fence {label}: lat p99"),
                "ms",
                r.latency_p99_ms,
            );
        }
    }
    // Leave the cluster as it started (the playground is dropped anyway).
    let _ = set_fence(&pg, p, true).await;
    drop(pg);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pg15_summary() {
        let out = "transaction type: <builtin: TPC-B (sort of)>\nscaling factor: 10\n\
                   number of clients: 8\nlatency average = 4.321 ms\n\
                   initial connection time = 12.5 ms\n\
                   tps = 1851.234567 (without initial connection time)\n";
        assert_eq!(parse_summary(out), Some((1851.234567, 4.321)));
        assert_eq!(parse_summary("nothing"), None);
    }

    #[test]
    fn parses_older_summary_preferring_without_connections() {
        let out = "latency average = 2.0 ms\ntps = 10.0 (including connections establishing)\n\
                   tps = 12.5 (excluding connections establishing)\n";
        assert_eq!(parse_summary(out), Some((12.5, 2.0)));
        let out15 = "latency average = 2.0 ms\ntps = 10.0 (including connections establishing)\n\
                     tps = 12.5 (without initial connection time)\n";
        assert_eq!(parse_summary(out15), Some((12.5, 2.0)));
    }

    #[test]
    fn log_latencies_and_quantiles() {
        let log = "0 1 1500 0 1700000000 123456\n1 1 2500 0 1700000000 223456\nbad line\n";
        let mut v = parse_log_latencies_us(log);
        v.sort_unstable();
        assert_eq!(v, vec![1500, 2500]);
        let s: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&s, 0.99), 99.0);
        assert_eq!(quantile(&s, 0.5), 50.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn fence_choice_parses() {
        assert_eq!("both".parse::<FenceChoice>().ok(), Some(FenceChoice::Both));
        assert_eq!(FenceChoice::Both.settings(), &[false, true]);
        assert!("maybe".parse::<FenceChoice>().is_err());
    }
}
