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
async fn r3_two_quick_clean_restarts_of_the_primary_agent_leave_a_primary() -> anyhow::Result<()> {
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
    // A standby recorded: right after the bootstrap the primary records itself alone
    // until a standby has streamed for a while (two publishing intervals), and a primary
    // stopped then rightly blocks failover until it is back.
    c.wait_for("a recorded synchronous standby", RECOVERY, || async {
        let s = c.status().await?;
        Ok((s.sync.quorum > 0 && s.sync.standbys.iter().any(|m| *m != first)).then_some(()))
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
        ensure!(
            Instant::now() < deadline,
            "no new lease holder after {first} stopped"
        );
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
        ensure!(
            ids.contains(&id),
            "acknowledged row {id} missing on {primary}"
        );
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

/// `pg_current_wal_lsn()` of node `name` (a primary; read-only, answered even while
/// commits wait).
async fn wal_lsn(c: &RamdCluster, name: &str) -> anyhow::Result<Lsn> {
    Ok(c.query_text(name, "SELECT pg_current_wal_lsn()::text")
        .await?
        .map(|t| lsn(&t))
        .unwrap_or(Lsn::ZERO))
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
    // Freeze the primary's agent: its fence stops acknowledging and the cluster fails
    // over; the frozen primary's server keeps running.
    c.kill_agent(&old, Signal::SIGSTOP)?;
    let new = c
        .wait_for("a new leader", RECOVERY, || async {
            let p = c.primary().await.ok();
            Ok(p.filter(|p| *p != old))
        })
        .await?;
    eprintln!("{new} took over from the frozen {old}");
    c.wait_writable_leader(&[&old], 2, RECOVERY).await?;
    // Now write on the old primary, whose standbys have left it: about 12 MB of WAL on
    // timeline 1, far beyond maximum_lag_on_failover (1 MiB), never acknowledged.
    let dsn = c.node(&old)?.dsn.clone();
    let (client, conn) = tokio_postgres::connect(&format!("{dsn} connect_timeout=2"), NoTls)
        .await
        .context("connecting to the frozen primary")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let blocked = tokio::spawn(async move {
        client
            .batch_execute(
                "INSERT INTO rale_e2e_big SELECT g, repeat('x', 1000) FROM generate_series(1, 10000) g",
            )
            .await
    });
    let at_new = wal_lsn(c, &new).await?;
    c.wait_for(
        &format!("{old} 8 MB ahead on its old timeline"),
        RECOVERY,
        || async {
            let at_old = wal_lsn(c, &old).await?;
            Ok((at_old.bytes_after(at_new) > 8 << 20).then_some(()))
        },
    )
    .await?;
    ensure!(
        !blocked.is_finished(),
        "the frozen primary acknowledged a commit"
    );
    let diverged_end = wal_lsn(c, &old).await?;
    let third = c
        .names()
        .into_iter()
        .find(|n| *n != old && *n != new)
        .context("three nodes")?;
    c.wait_row(&third, 2, RECOVERY).await?;

    // The old primary's agent wakes up: another node holds the lease, so it stops its
    // server and rejoins the new primary. While it does, the new primary's host dies:
    // the rejoin fails, and the old node reports its timeline-1 position, far ahead of
    // the third node's, then starts as a standby of its own WAL and detaches there.
    c.kill_agent(&old, Signal::SIGCONT)?;
    let data_dir = c.node(&old)?.data_dir.clone();
    let deadline = Instant::now() + RECOVERY;
    while rale::pg::postmaster_pid(&data_dir).is_some() {
        ensure!(Instant::now() < deadline, "{old} never stopped its server");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pm = c.postmaster_pid(&new)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pm), Signal::SIGKILL)
        .context("killing the new primary's postmaster")?;
    c.kill_agent(&new, Signal::SIGKILL)?;
    let killed = Instant::now();
    eprintln!("{new}'s host died while {old} was rejoining it");
    let primary = c
        .wait_writable_leader(&[&old, &new], 3, RECOVERY)
        .await
        .with_context(|| format!("{third} was never promoted; see its ramd.log"))?;
    ensure!(primary == third, "{primary} is primary, expected {third}");
    eprintln!(
        "FIGURE R5: {third} writable {:.2} s after {new}'s host died",
        killed.elapsed().as_secs_f64()
    );
    // The diverged node reports its own timeline with its position until it is rewound:
    // never the new timelines (a history file it fetched does not make its WAL theirs).
    for _ in 0..30 {
        let s = c.status_from(&third).await?;
        if let Some(m) = s.members.iter().find(|m| m.name == old) {
            ensure!(
                !(m.timeline > 1 && lsn(&m.lsn) >= diverged_end),
                "{old} reported timeline {} at {} (its timeline-1 WAL ends at {diverged_end})",
                m.timeline,
                m.lsn
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = c.status_from(&third).await?;
    for m in &s.members {
        eprintln!(
            "  {}: timeline {} at {} ({})",
            m.name, m.timeline, m.lsn, m.state
        );
    }
    let ids = c.ids(&third).await?;
    ensure!(
        ids.contains(&1) && ids.contains(&2) && ids.contains(&3),
        "{ids:?}"
    );
    Ok(())
}
