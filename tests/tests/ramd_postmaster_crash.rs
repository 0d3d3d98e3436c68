//! `ramd` end to end: the primary's postmaster crashes (kill -9) under a live agent; the
//! agent restarts it in place: same primary, same lease epoch, no failover.
//! Run: `cargo test -p rale-e2e --test ramd_postmaster_crash -- --nocapture`

use std::time::{Duration, Instant};

use anyhow::ensure;
use nix::sys::signal::Signal;
use rale_e2e::WAIT;
use rale_e2e::ramd_cluster::{RamdCluster, serial};

async fn body(c: &RamdCluster) -> anyhow::Result<()> {
    let primary = c.primary().await?;
    let before = c.status().await?;
    let epoch = before.epoch;
    ensure!(
        before.leader.as_deref() == Some(primary.as_str()),
        "{before:?}"
    );
    c.write(&primary, 1).await?;
    let old_pid = c.kill_postmaster(&primary, Signal::SIGKILL)?;
    let crashed_at = Instant::now();
    eprintln!("killed {primary}'s postmaster ({old_pid})");
    let mut id = 100;
    let writer = c
        .wait_for("a write accepted again", WAIT, || {
            id += 1;
            let id = id;
            async move { Ok(Some(c.try_write_any(id).await?)) }
        })
        .await?;
    let elapsed = crashed_at.elapsed();
    eprintln!(
        "FIGURE postmaster crash: kill -> write accepted again on {writer}: {:.2} s",
        elapsed.as_secs_f64()
    );
    ensure!(
        writer == primary,
        "{writer} accepted the write, not the crashed primary {primary}"
    );
    ensure!(
        c.postmaster_pid(&primary)? != old_pid,
        "the postmaster PID did not change"
    );
    let after = c.status().await?;
    ensure!(
        after.epoch == epoch,
        "the lease epoch changed from {epoch} to {} (a failover happened)",
        after.epoch
    );
    ensure!(c.primary().await? == primary, "the leader changed");
    let history = c.history().await?;
    let changes: Vec<_> = history
        .iter()
        .filter(|h| h.epoch > epoch || h.kind == "failover")
        .collect();
    ensure!(
        changes.is_empty(),
        "unexpected history entries: {changes:?}"
    );
    for r in c.names().iter().filter(|n| **n != primary) {
        c.wait_streaming(r, Duration::from_secs(90)).await?;
        c.wait_row(r, id, WAIT).await?;
    }
    Ok(())
}

/// A lease that outlives the agent's blocking `pg_ctl start` with crash recovery on a
/// loaded machine (holder validity 10 s × 0.99/1.01 − 300 ms ≥ 2 × 250 ms).
const LONG_LEASE: &str =
    "lease_ttl = \"10s\"\nrenew_interval = \"250ms\"\nfence_margin = \"300ms\"\n";

async fn run(bootstrap_toml: Option<&str>) -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut c = RamdCluster::start(3, bootstrap_toml).await?;
    let r = body(&c).await;
    if r.is_err() {
        c.keep_dir();
    }
    r
}

/// Default timings (lease 1.5 s, restart_timeout 5 s). The HA loop waits in `pg_ctl start`
/// (crash recovery, ~3 s on a loaded machine) while its lease keeper renews the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_postmaster_is_restarted_in_place() -> anyhow::Result<()> {
    run(None).await
}

/// A 10 s lease: the restart in place itself, with no renewal needed during it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_postmaster_is_restarted_in_place_long_lease() -> anyhow::Result<()> {
    run(Some(LONG_LEASE)).await
}
