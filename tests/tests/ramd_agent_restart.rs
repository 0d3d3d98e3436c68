//! `ramd` end to end: an agent killed with SIGKILL and started again within about a
//! second keeps its consensus state and its role; no failover happens.
//! Run: `cargo test -p rale-e2e --test ramd_agent_restart -- --nocapture`

use std::time::{Duration, Instant};

use anyhow::ensure;
use nix::sys::signal::Signal;
use rale_e2e::WAIT;
use rale_e2e::ramd_cluster::{RamdCluster, serial};
use ramd_ref::api::types::NodeStatus;

/// A lease long enough to outlive an agent restart of the primary (valid: holder
/// validity 5 s × 0.99/1.01 − 300 ms ≥ 2 × 250 ms renew interval).
const LONG_LEASE: &str =
    "lease_ttl = \"5s\"\nrenew_interval = \"250ms\"\nfence_margin = \"300ms\"\n";

/// Kills `target`'s agent, restarts it after 500 ms and checks that nothing else moved.
async fn restart(c: &mut RamdCluster, target: &str) -> anyhow::Result<()> {
    let primary = c.primary().await?;
    let before = c.status().await?;
    let epoch = before.epoch;
    c.write(&primary, 1).await?;
    let old_pid = c.kill_agent(target, Signal::SIGKILL)?;
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let new_pid = c.restart_agent(target)?;
    eprintln!("agent of {target}: killed {old_pid}, restarted as {new_pid}");
    let c: &RamdCluster = c;
    // The restarted agent answers and sees the cluster through consensus again.
    let status = c
        .wait_for(
            &format!("{target}'s agent back with consensus"),
            WAIT,
            || async {
                let s = c.status_from(target).await?;
                Ok((s.consensus.ok
                    && s.this_node == target
                    && s.members.iter().any(|m| m.name == target && m.running))
                .then_some(s))
            },
        )
        .await?;
    eprintln!(
        "FIGURE agent restart ({target}): kill -> agent back with consensus: {:.2} s",
        killed_at.elapsed().as_secs_f64()
    );
    ensure!(
        status.epoch == epoch,
        "epoch moved from {epoch} to {}",
        status.epoch
    );
    ensure!(
        status.leader.as_deref() == Some(primary.as_str()),
        "{status:?}"
    );
    if target == primary {
        // The restarted agent knows it still holds the lease of the same epoch.
        c.wait_for(
            &format!("{target} holding lease epoch {epoch}"),
            WAIT,
            || async {
                let s: NodeStatus = c.get_node_status(target).await?;
                Ok((s.lease_epoch == Some(epoch)).then_some(()))
            },
        )
        .await?;
    } else {
        c.wait_streaming(target, Duration::from_secs(90)).await?;
    }
    let id = 1_000;
    c.wait_for(&format!("write on {primary}"), WAIT, || async {
        Ok(c.write(&primary, id).await.ok())
    })
    .await?;
    for n in c.names() {
        c.wait_row(&n, id, WAIT).await?;
    }
    let after = c.status().await?;
    ensure!(
        after.epoch == epoch,
        "epoch moved from {epoch} to {} (failover)",
        after.epoch
    );
    ensure!(c.primary().await? == primary, "the leader changed");
    let history = c.history().await?;
    let changes: Vec<_> = history.iter().filter(|h| h.epoch > epoch).collect();
    ensure!(
        changes.is_empty(),
        "unexpected history entries: {changes:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_agent_restart_keeps_state() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut c = RamdCluster::start(3, None).await?;
    let primary = c.primary().await?;
    let target = c
        .names()
        .into_iter()
        .find(|n| *n != primary)
        .unwrap_or_default();
    let r = restart(&mut c, &target).await;
    if r.is_err() {
        c.keep_dir();
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_agent_restart_keeps_lease() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut c = RamdCluster::start(3, Some(LONG_LEASE)).await?;
    let primary = c.primary().await?;
    let r = restart(&mut c, &primary).await;
    if r.is_err() {
        c.keep_dir();
    }
    r
}
