//! Run: `cargo run --release -p ramd-ref --bin ramd-bench -- --runs 3`
//!
//! Benchmarks failover, switchover, bootstrap, the health endpoint, an idle cluster,
//! `pgbench` with the commit fence on and off (`--scenarios pgbench --fence both`) and
//! restarts of the primary's agent (`--scenarios agent-restart`), the return of a lost
//! node (`rejoin`, `reclone`) and a no-false-failover soak (`soak --soak-secs 600`) on
//! local playgrounds with real PostgreSQL, with the default timings or `--profile fast`
//! (see `docs/benchmarks.md`). The `ramd` binary must be next to this one or in
//! `RALE_RAMD_BIN`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use ramd_ref::bench::{BenchOptions, FenceChoice, PgbenchOptions, Profile, Scenario, run, table};

/// Benchmark a local RALE cluster.
#[derive(Parser, Debug)]
#[command(name = "ramd-bench", version)]
struct Args {
    /// Repetitions of each scenario.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Nodes per cluster.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Also write the rows as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Comma-separated scenarios: node-loss, postmaster-crash, switchover, bootstrap,
    /// health, idle, pgbench, agent-restart, rejoin, rejoin-diverged, reclone, soak,
    /// sync-window, sync-reentry (those after idle are not in the default list).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "node-loss,postmaster-crash,switchover,bootstrap,health,idle"
    )]
    scenarios: Vec<Scenario>,
    /// Seconds of each `GET /primary` load phase.
    #[arg(long, default_value_t = 10)]
    health_secs: u64,
    /// Seconds of the idle measurement.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// pgbench scenario: fence settings to measure (on, off, both; both alternates
    /// off/on in every run on one cluster).
    #[arg(long, default_value = "both")]
    fence: FenceChoice,
    /// pgbench scenario: seconds of each measured phase (`pgbench -T`).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// pgbench scenario: client connections (`pgbench -c`).
    #[arg(long, default_value_t = 8)]
    clients: u32,
    /// pgbench scenario: scale factor of `pgbench -i`.
    #[arg(long, default_value_t = 10)]
    scale: u32,
    /// soak scenario: seconds of pgbench load (`-T`; clients and scale from --clients
    /// and --scale).
    #[arg(long, default_value_t = 600)]
    soak_secs: u64,
    /// Timing knobs of the playgrounds: default, or fast (lease 1 s, renew 150 ms,
    /// loop 50 ms, member TTL 2 s; see docs/timings.md). Fast rows are prefixed `fast:`.
    #[arg(long, default_value = "default")]
    profile: Profile,
    /// Consensus of the playgrounds: raft (embedded) or etcd (a local three-member etcd;
    /// rows prefixed `etcd: `).
    #[arg(long, default_value = "raft")]
    consensus: ramd_ref::demo::DemoConsensus,
    /// The pgbench binary.
    #[arg(long, default_value = "/usr/lib/postgresql/15/bin/pgbench")]
    pgbench: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let opts = BenchOptions {
        runs: args.runs,
        nodes: args.nodes,
        scenarios: args.scenarios,
        health_duration: Duration::from_secs(args.health_secs.clamp(1, 600)),
        idle_duration: Duration::from_secs(args.idle_secs.clamp(1, 3600)),
        pgbench: PgbenchOptions {
            pgbench: args.pgbench,
            fence: args.fence,
            duration: Duration::from_secs(args.seconds.clamp(1, 3600)),
            clients: args.clients.clamp(1, 1000),
            scale: args.scale.clamp(1, 10_000),
        },
        soak_duration: Duration::from_secs(args.soak_secs.clamp(1, 24 * 3600)),
        profile: args.profile,
        consensus: args.consensus,
        ..Default::default()
    };
    let rows = run(&opts).await?;
    print!("{}", table(&rows));
    if let Some(path) = args.json {
        let text = serde_json::to_string_pretty(&rows)?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
