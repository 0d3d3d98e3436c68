//! `ramd-bench`: timing failover, switchover, bootstrap, the health endpoint, an idle
//! cluster, `pgbench` with the commit fence on and off, agent restarts, the return of a
//! lost node (`rejoin`, `reclone`) and a no-false-failover soak under `pgbench`, on a local
//! [`crate::demo::Playground`] with real PostgreSQL, with the default timings or the
//! [`Profile::Fast`] ones.
//!
//! Every scenario runs on loopback, every loop is bounded in count and time, and every
//! process started is stopped at the end, also on error (the playground's `Drop`).
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use ramd_ref::bench::{BenchOptions, Scenario, run};
//! let opts = BenchOptions { runs: 1, scenarios: vec![Scenario::Bootstrap], ..Default::default() };
//! let rows = run(&opts).await?;
//! println!("{}", ramd_ref::bench::table(&rows));
//! # Ok(()) }
//! ```

mod health;
mod idle;
mod logs;
mod pgbench;
mod profile;
mod rejoin;
mod restart;
mod scenarios;
mod soak;
mod sync;
mod writer;

pub use pgbench::{
    FenceChoice, PgbenchOptions, PgbenchResult, parse_log_latencies_us, parse_summary,
};
pub use profile::Profile;

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::demo::{DemoOptions, Playground};

/// One benchmark scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Kill -9 the primary's agent and postmaster; time until another node accepts a write.
    NodeLoss,
    /// Kill -9 the primary's postmaster only; time until writes are accepted again.
    PostmasterCrash,
    /// Planned switchover under a write load: longest gap between successful writes.
    Switchover,
    /// Playground start until the primary writes and every replica streams.
    Bootstrap,
    /// `GET /primary` throughput and latency at 4 and 64 connections.
    Health,
    /// Agent RSS and CPU of an idle cluster.
    Idle,
    /// `pgbench` on the primary with the commit fence on and off: TPS and latency.
    Pgbench,
    /// Restart of the primary's agent alone (`kill -9` + start, `SIGTERM` + start):
    /// longest gap between successful writes.
    AgentRestart,
    /// Node loss, failover, then the old node's agent starts again: start → the old node
    /// streams from the new primary (by `pg_rewind` or a fresh clone).
    Rejoin,
    /// As `Rejoin`, with the primary's WAL senders stopped (`SIGSTOP`) for 300 ms of
    /// bulk writes before the node dies: its WAL has diverged for certain, so the old
    /// node comes back by `pg_rewind` (or a clone).
    RejoinDiverged,
    /// `POST /reinitialize` of a replica → it streams again (full `pg_basebackup`).
    Reclone,
    /// `pgbench` at full load for `--soak-secs`: role changes (must be 0), the longest
    /// HA loop seen, TPS.
    Soak,
    /// Synchronous mode `on`, node loss: how long the new primary acknowledged commits
    /// without a synchronous standby (the asynchronous window) or waited for one.
    SyncWindow,
    /// Quorum mode under `pgbench` at full load, a standby's postmaster killed: time until
    /// it is back in the recorded synchronous set, and how often the set changed.
    SyncReentry,
}

impl Scenario {
    /// Every scenario, in the order they run.
    pub const ALL: [Scenario; 14] = [
        Scenario::NodeLoss,
        Scenario::PostmasterCrash,
        Scenario::Switchover,
        Scenario::Bootstrap,
        Scenario::Health,
        Scenario::Idle,
        Scenario::Pgbench,
        Scenario::AgentRestart,
        Scenario::Rejoin,
        Scenario::RejoinDiverged,
        Scenario::Reclone,
        Scenario::Soak,
        Scenario::SyncWindow,
        Scenario::SyncReentry,
    ];
}

impl FromStr for Scenario {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "node-loss" => Scenario::NodeLoss,
            "postmaster-crash" => Scenario::PostmasterCrash,
            "switchover" => Scenario::Switchover,
            "bootstrap" => Scenario::Bootstrap,
            "health" => Scenario::Health,
            "idle" => Scenario::Idle,
            "pgbench" => Scenario::Pgbench,
            "agent-restart" => Scenario::AgentRestart,
            "rejoin" => Scenario::Rejoin,
            "rejoin-diverged" => Scenario::RejoinDiverged,
            "reclone" => Scenario::Reclone,
            "soak" => Scenario::Soak,
            "sync-window" => Scenario::SyncWindow,
            "sync-reentry" => Scenario::SyncReentry,
            other => anyhow::bail!(
                "unknown scenario {other:?} (node-loss, postmaster-crash, switchover, bootstrap, health, idle, pgbench, agent-restart, rejoin, rejoin-diverged, reclone, soak, sync-window, sync-reentry)"
            ),
        })
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Repetitions of each scenario.
    pub runs: usize,
    /// Nodes per cluster.
    pub nodes: usize,
    /// Scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// Duration of each `GET /primary` load phase.
    pub health_duration: Duration,
    /// Duration of the idle measurement.
    pub idle_duration: Duration,
    /// Bound on waiting for a cluster to become ready.
    pub ready_timeout: Duration,
    /// Bound on waiting for writes to resume after a fault.
    pub recovery_timeout: Duration,
    /// Settings of the `pgbench` scenario (and the load of `soak`).
    pub pgbench: PgbenchOptions,
    /// Duration of the `soak` load.
    pub soak_duration: Duration,
    /// Timing knobs of every playground (its `[bootstrap]` section).
    pub profile: Profile,
    /// The playgrounds' consensus: the embedded Raft or a local three-member etcd
    /// (rows prefixed `etcd: `; the idle scenario then also measures etcd's members).
    pub consensus: crate::demo::DemoConsensus,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            runs: 5,
            nodes: 3,
            scenarios: Scenario::ALL.to_vec(),
            health_duration: Duration::from_secs(10),
            idle_duration: Duration::from_secs(60),
            ready_timeout: Duration::from_secs(120),
            recovery_timeout: Duration::from_secs(60),
            pgbench: PgbenchOptions::default(),
            soak_duration: Duration::from_secs(600),
            profile: Profile::Default,
            consensus: crate::demo::DemoConsensus::Raft,
        }
    }
}

/// One line of the result table: every sample of one measured quantity.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// What was measured, e.g. `node-loss` or `health p99 (64 conn)`.
    pub scenario: String,
    /// Unit of the samples.
    pub unit: String,
    /// The samples, one per run (or per agent).
    pub samples: Vec<f64>,
    /// Median of the samples.
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Row {
    /// A row from its samples.
    pub fn new(scenario: impl Into<String>, unit: impl Into<String>, samples: Vec<f64>) -> Self {
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let median = match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Self {
            scenario: scenario.into(),
            unit: unit.into(),
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            median,
            samples,
        }
    }
}

/// Accumulates samples by row name, keeping first-seen order.
#[derive(Default)]
pub(crate) struct Rows {
    rows: Vec<(String, String, Vec<f64>)>,
    /// Put before every row name (the profile, e.g. `fast: `).
    prefix: String,
}

impl Rows {
    pub(crate) fn push(&mut self, name: &str, unit: &str, value: f64) {
        let name = format!("{}{name}", self.prefix);
        let name = name.as_str();
        if let Some(r) = self.rows.iter_mut().find(|r| r.0 == name) {
            r.2.push(value);
        } else {
            self.rows.push((name.into(), unit.into(), vec![value]));
        }
    }
    fn finish(self) -> Vec<Row> {
        self.rows
            .into_iter()
            .map(|(n, u, s)| Row::new(n, u, s))
            .collect()
    }
}

pub(crate) async fn start_cluster(opts: &BenchOptions) -> Result<(Playground, Duration)> {
    let demo = DemoOptions {
        nodes: opts.nodes,
        ready_timeout: opts.ready_timeout,
        bootstrap_toml: opts.profile.bootstrap_toml().map(str::to_owned),
        consensus: opts.consensus,
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let mut pg = Playground::start(&demo)?;
    pg.wait_ready(opts.ready_timeout).await?;
    Ok((pg, t.elapsed()))
}

/// Runs the scenarios and returns one row per measured quantity. A failed run is reported
/// on stderr and counted in a `… failed runs` row; the other runs go on.
pub async fn run(opts: &BenchOptions) -> Result<Vec<Row>> {
    anyhow::ensure!(opts.runs >= 1, "--runs must be at least 1");
    let mut rows = Rows {
        prefix: format!(
            "{}{}",
            match opts.consensus {
                crate::demo::DemoConsensus::Raft => "",
                crate::demo::DemoConsensus::Etcd => "etcd: ",
            },
            opts.profile.row_prefix()
        ),
        ..Default::default()
    };
    for &sc in &opts.scenarios {
        let mut failed = 0usize;
        let runs = match sc {
            // One cluster serves every switchover run (and every pgbench round).
            Scenario::Switchover | Scenario::Pgbench | Scenario::Reclone => 1,
            _ => opts.runs,
        };
        for i in 0..runs {
            eprintln!("[ramd-bench] {sc:?} run {}/{runs}", i + 1);
            let res = match sc {
                Scenario::Bootstrap => start_cluster(opts).await.map(|(mut pg, d)| {
                    rows.push("bootstrap", "s", d.as_secs_f64());
                    pg.stop();
                }),
                Scenario::NodeLoss => scenarios::node_loss(opts, &mut rows).await,
                Scenario::PostmasterCrash => scenarios::postmaster_crash(opts, &mut rows).await,
                Scenario::Switchover => scenarios::switchover(opts, &mut rows).await,
                Scenario::Health => health::run(opts, &mut rows).await,
                Scenario::Idle => idle::run(opts, &mut rows).await,
                Scenario::Pgbench => pgbench::run(opts, &mut rows).await,
                Scenario::AgentRestart => restart::run(opts, &mut rows).await,
                Scenario::Rejoin => rejoin::rejoin(opts, &mut rows, false).await,
                Scenario::RejoinDiverged => rejoin::rejoin(opts, &mut rows, true).await,
                Scenario::Reclone => rejoin::reclone(opts, &mut rows).await,
                Scenario::Soak => soak::run(opts, &mut rows).await,
                Scenario::SyncWindow => sync::window(opts, &mut rows).await,
                Scenario::SyncReentry => sync::reentry(opts, &mut rows).await,
            };
            if let Err(e) = res {
                eprintln!("[ramd-bench] {sc:?} run {} failed: {e:#}", i + 1);
                failed += 1;
            }
        }
        if failed > 0 {
            rows.push(&format!("{sc:?} failed runs"), "runs", failed as f64);
        }
    }
    Ok(rows.finish())
}

/// The rows as a text table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<34} {:>10} {:>10} {:>10}  {:<6} {:>2}",
        "SCENARIO", "MEDIAN", "MIN", "MAX", "UNIT", "N"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<34} {:>10.3} {:>10.3} {:>10.3}  {:<6} {:>2}",
            r.scenario,
            r.median,
            r.min,
            r.max,
            r.unit,
            r.samples.len()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd() {
        let r = Row::new("x", "s", vec![3.0, 1.0, 2.0]);
        assert_eq!((r.median, r.min, r.max), (2.0, 1.0, 3.0));
        let r = Row::new("x", "s", vec![4.0, 1.0, 2.0, 3.0]);
        assert_eq!(r.median, 2.5);
    }

    #[test]
    fn scenarios_parse() {
        assert_eq!(
            "postmaster-crash".parse::<Scenario>().ok(),
            Some(Scenario::PostmasterCrash)
        );
        assert_eq!("soak".parse::<Scenario>().ok(), Some(Scenario::Soak));
        assert!("nope".parse::<Scenario>().is_err());
    }
}
