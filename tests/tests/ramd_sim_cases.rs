//! Cases the simulator found (issue 13, `rale/tests/sim_regressions.rs`), made real on
//! `ramd` clusters with real PostgreSQL.
//!
//! - R3: two quick clean restarts of the primary's agent (`systemctl restart ramd`
//!   twice) in synchronous mode; the second hits the new lease holder before it recorded
//!   its own synchronous set. A lease acquisition used to drop the taker from the
//!   recorded set, which then named nobody: no member could ever be promoted again.
//! - R5: a former primary whose agent was frozen kept writing WAL on its old timeline
//!   (its commits held by the fence); after a second failure the only candidate was
//!   measured against that diverged position, "more than `maximum_lag_on_failover`
//!   behind", and refused for ever.
//!
//! Run: `cargo test -p rale-e2e --test ramd_sim_cases -- --nocapture`

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use nix::sys::signal::Signal;
use rale::Lsn;
use rale_e2e::ramd_cluster::{RamdCluster, serial};
use tokio_postgres::NoTls;

/// How long the cluster may take to elect a writable primary again.
const RECOVERY: Duration = Duration::from_secs(90);

async fn keep_on_error(c: &mut RamdCluster, r: anyhow::Result<()>) -> anyhow::Result<()> {
    if r.is_err() {
        c.keep_dir();
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_two_quick_clean_restarts_of_the_primary_agent_leave_a_primary() -> anyhow::Result<()>
{
    let _guard = serial().await;
    let mut c = RamdCluster::start(
        3,
        Some("[bootstrap.synchronous]\nmode = \"on\"\nnode_count = 1\n"),
    )
    .await?;
    let r = two_quick_restarts(&mut c).await;
    keep_on_error(&mut c, r).await
}

async fn two_quick_restarts(c: &mut RamdCluster) -> anyhow::Result<()> {
    let first = c.primary().await?;
    c.wait_for("a recorded synchronous standby", RECOVERY, || async {
        let s = c.status().await?;
        Ok((s.sync.quorum > 0 && !s.sync.standbys.is_empty()).then_some(()))
    })
    .await?;
    for id in 1..=20 {
        c.write(&first, id).await?;
    }
    let epoch = c.status().await?.epoch;
    let others: Vec<String> = c.names().into_iter().filter(|n| *n != first).collect();

    // First clean restart: the primary stops PostgreSQL and releases its lease.
    c.kill_agent(&first, Signal::SIGTERM)?;
    // As soon as another member holds the lease, restart that one too.
    let deadline = Instant::now() + RECOVERY;
    let second = loop {
        ensure!(Instant::now() < deadline, "no new lease holder after {first} stopped");
        let mut found = None;
        for o in &others {
            if let Ok(s) = c.status_from(o).await
                && s.epoch > epoch
                && let Some(l) = s.leader.clone()
                && l != first
            {
                found = Some((l, s));
                break;
            }
        }
        if let Some((holder, s)) = found {
            eprintln!(
                "{holder} holds lease epoch {}; recorded synchronous set {:?} (epoch {}), sending SIGTERM",
                s.epoch, s.sync.standbys, s.sync.epoch
            );
            break holder;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    c.kill_agent(&second, Signal::SIGTERM)?;
    let stopped_at = Instant::now();
    c.wait_agent_exit(&first, Duration::from_secs(60))?;
    c.wait_agent_exit(&second, Duration::from_secs(60))?;
    c.restart_agent(&first)?;
    c.restart_agent(&second)?;

    let primary = c.wait_writable_leader(&[], 1_000, RECOVERY).await?;
    eprintln!(
        "FIGURE R3: writable primary {primary} {:.2} s after the second restart",
        stopped_at.elapsed().as_secs_f64()
    );
    let ids = c.ids(&primary).await?;
    for id in 1..=20 {
        ensure!(ids.contains(&id), "acknowledged row {id} missing on {primary}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_diverged_former_primary_does_not_block_the_next_failover() -> anyhow::Result<()> {
    let _guard = serial().await;
    let mut c = RamdCluster::start(3, None).await?;
    let r = diverged_former_primary(&mut c).await;
    keep_on_error(&mut c, r).await
}

fn lsn(text: &str) -> Lsn {
    text.parse().unwrap_or(Lsn::ZERO)
}

async fn diverged_former_primary(c: &mut RamdCluster) -> anyhow::Result<()> {
    let old = c.primary().await?;
    c.sql(
        &old,
        "CREATE TABLE IF NOT EXISTS rale_e2e_big (id bigint, pad text)",
    )
    .await?;
    c.write(&old, 1).await?;
    for n in c.names() {
        c.wait_row(&n, 1, RECOVERY).await?;
    }
    // Freeze the primary's agent: its fence stops acknowledging, commits wait, but the
    // server keeps writing WAL for every transaction sent to it.
    c.kill_agent(&old, Signal::SIGSTOP)?;
    let dsn = c.node(&old)?.dsn.clone();
    let (client, conn) = tokio_postgres::connect(&format!("{dsn} connect_timeout=2"), NoTls)
        .await
        .context("connecting to the frozen primary")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // About 12 MB of WAL, far beyond maximum_lag_on_failover (1 MiB); never acknowledged.
    let blocked = tokio::spawn(async move {
        client
            .batch_execute(
                "INSERT INTO rale_e2e_big SELECT g, repeat('x', 1000) FROM generate_series(1, 10000) g",
            )
            .await
    });
    let new = c
        .wait_for("a new leader", RECOVERY, || async {
            let p = c.primary().await.ok();
            Ok(p.filter(|p| *p != old))
        })
        .await?;
    eprintln!("{new} took over from the frozen {old}");
    c.wait_writable_leader(&[&old], 2, RECOVERY).await?;
    ensure!(!blocked.is_finished(), "the frozen primary acknowledged a commit");
    let third = c
        .names()
        .into_iter()
        .find(|n| *n != old && *n != new)
        .context("three nodes")?;
    c.wait_row(&third, 2, RECOVERY).await?;

    // The new primary's host dies; then the old primary's agent wakes up: it stops its
    // server (another node holds the lease), fails to rejoin the dead primary, and
    // reports its timeline-1 position, far ahead of the third node's.
    let pm = c.postmaster_pid(&new)?;
    c.kill_agent(&new, Signal::SIGKILL)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pm), Signal::SIGKILL)
        .context("killing the new primary's postmaster")?;
    let killed = Instant::now();
    c.kill_agent(&old, Signal::SIGCONT)?;
    let seen = c
        .wait_for(
            &format!("{old} reporting its timeline-1 position"),
            RECOVERY,
            || async {
                let s = c.status_from(&third).await?;
                let o = s.members.iter().find(|m| m.name == old).cloned();
                let t = s.members.iter().find(|m| m.name == third).cloned();
                Ok(match (o, t) {
                    (Some(o), Some(t)) if o.timeline < t.timeline || s.leader.as_deref() == Some(&third) => {
                        Some((o, t))
                    }
                    _ => None,
                })
            },
        )
        .await?;
    eprintln!(
        "{old}: timeline {} at {} (ahead by {} bytes); {third}: timeline {} at {}",
        seen.0.timeline,
        seen.0.lsn,
        lsn(&seen.0.lsn).bytes_after(lsn(&seen.1.lsn)),
        seen.1.timeline,
        seen.1.lsn
    );
    let primary = c
        .wait_writable_leader(&[&old, &new], 3, RECOVERY)
        .await
        .with_context(|| format!("{third} was never promoted; see its ramd.log"))?;
    ensure!(primary == third, "{primary} is primary, expected {third}");
    eprintln!(
        "FIGURE R5: {third} writable {:.2} s after {new}'s host died",
        killed.elapsed().as_secs_f64()
    );
    let ids = c.ids(&third).await?;
    ensure!(ids.contains(&1) && ids.contains(&2) && ids.contains(&3), "{ids:?}");
    Ok(())
}
