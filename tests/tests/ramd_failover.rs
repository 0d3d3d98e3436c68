//! `ramd` end to end: loss of the primary node (agent and postmaster killed together),
//! failover, bounded data loss, and the old node rejoining as a replica.
//! Run: `cargo test -p rale-e2e --test ramd_failover -- --nocapture`

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use nix::sys::signal::Signal;
use rale_e2e::WAIT;
use rale_e2e::ramd_cluster::{RamdCluster, TABLE, serial};
use tokio_postgres::NoTls;

/// First id written after the kill.
const AFTER_KILL_ID: i64 = 1_000_000;

/// What a node loss left behind.
struct Failover {
    old: String,
    new: String,
    kill_to_write: Duration,
}

/// Inserts ids 1, 2, … on one connection until it fails or `stop` is set; every id
/// whose INSERT returned is pushed to `acked`.
async fn writer(dsn: String, acked: Arc<Mutex<Vec<i64>>>, stop: Arc<AtomicBool>) {
    let Ok(Ok((client, conn))) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&format!("{dsn} connect_timeout=1"), NoTls),
    )
    .await
    else {
        return;
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    for id in 1..AFTER_KILL_ID {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let sql = format!("INSERT INTO {TABLE} (id) VALUES ({id})");
        match tokio::time::timeout(Duration::from_secs(5), client.batch_execute(&sql)).await {
            Ok(Ok(())) => {
                if let Ok(mut a) = acked.lock() {
                    a.push(id);
                }
            }
            _ => return,
        }
    }
}

/// Kills the primary's agent and postmaster together under a running writer; waits for
/// another node to accept writes and checks what survived.
async fn lose_primary(c: &mut RamdCluster) -> anyhow::Result<Failover> {
    let old = c.primary().await?;
    let replicas: Vec<String> = c.names().into_iter().filter(|n| *n != old).collect();
    let epoch_before = c.status().await?.epoch;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(writer(
        c.node(&old)?.dsn.clone(),
        acked.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut visible_before = BTreeSet::new();
    for r in &replicas {
        visible_before.extend(c.ids(r).await?);
    }
    ensure!(
        !visible_before.is_empty(),
        "no row replicated before the kill"
    );
    let postmaster = c.postmaster_pid(&old)?;
    c.kill_agent(&old, Signal::SIGKILL)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(postmaster), Signal::SIGKILL)
        .context("killing the primary's postmaster")?;
    let killed_at = Instant::now();
    let c: &RamdCluster = c;
    eprintln!("killed {old}'s agent and postmaster ({postmaster})");
    stop.store(true, Ordering::SeqCst);
    let mut next = AFTER_KILL_ID;
    let new = c
        .wait_for("another node accepting writes", WAIT, || {
            next += 1;
            let id = next;
            async move { Ok(Some(c.try_write_any(id).await?)) }
        })
        .await?;
    let kill_to_write = killed_at.elapsed();
    eprintln!(
        "FIGURE failover: kill -> first write on {new}: {:.2} s",
        kill_to_write.as_secs_f64()
    );
    ensure!(new != old, "the killed node {old} accepted a write");
    let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    let acked: Vec<i64> = acked.lock().map(|a| a.clone()).unwrap_or_default();
    let on_new = c.ids(&new).await?;
    let missing_visible: Vec<_> = visible_before.difference(&on_new).collect();
    ensure!(
        missing_visible.is_empty(),
        "{} rows visible on a replica before the kill are missing on {new}: {:?}",
        missing_visible.len(),
        missing_visible.iter().take(20).collect::<Vec<_>>()
    );
    let lost: Vec<_> = acked.iter().filter(|id| !on_new.contains(id)).collect();
    eprintln!(
        "FIGURE failover: {} rows acknowledged before the kill, {} lost (asynchronous \
         replication), {} were visible on a replica",
        acked.len(),
        lost.len(),
        visible_before.len()
    );
    let entry = c
        .wait_for("a failover entry in the history", WAIT, || async {
            Ok(c.history()
                .await?
                .into_iter()
                .find(|h| h.kind == "failover" && h.epoch > epoch_before))
        })
        .await?;
    eprintln!("history: {entry:?}");
    ensure!(
        entry.node.as_deref() == Some(new.as_str()),
        "failover entry names {:?}, the new primary is {new}",
        entry.node
    );
    ensure!(
        !entry.reason.trim().is_empty(),
        "failover entry without a reason"
    );
    ensure!(
        c.primary().await? == new,
        "/cluster does not show {new} as leader"
    );
    // The surviving replica follows the new primary.
    let other: Vec<&String> = replicas.iter().filter(|r| **r != new).collect();
    for r in other {
        c.wait_streaming(r, Duration::from_secs(90)).await?;
        c.wait_row(r, next, WAIT).await?;
    }
    Ok(Failover {
        old,
        new,
        kill_to_write,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_node_loss_fails_over() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut c = RamdCluster::start(3, None).await?;
    let r = lose_primary(&mut c).await.map(|f| {
        eprintln!("{} -> {} in {:?}", f.old, f.new, f.kill_to_write);
    });
    if r.is_err() {
        c.keep_dir();
    }
    r
}

async fn rejoin(c: &mut RamdCluster) -> anyhow::Result<()> {
    let f = lose_primary(c).await?;
    let pid = c.restart_agent(&f.old)?;
    let restarted = Instant::now();
    eprintln!("restarted {}'s agent (pid {pid})", f.old);
    c.wait_streaming(&f.old, Duration::from_secs(90)).await?;
    eprintln!(
        "FIGURE rejoin: agent restart -> {} streaming: {:.2} s",
        f.old,
        restarted.elapsed().as_secs_f64()
    );
    ensure!(
        c.primary().await? == f.new,
        "the leader changed while {} rejoined",
        f.old
    );
    let id = 2_000_000;
    c.write(&f.new, id).await?;
    c.wait_row(&f.old, id, WAIT).await?;
    ensure!(
        c.write(&f.old, id + 1).await.is_err(),
        "the rejoined node accepts writes"
    );
    let history = c.history().await?;
    if let Some(h) = history.iter().rev().find(|h| h.reason.contains("rejoined")) {
        eprintln!("history: {h:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_primary_rejoins_as_replica() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut c = RamdCluster::start(3, None).await?;
    let r = rejoin(&mut c).await;
    if r.is_err() {
        c.keep_dir();
    }
    r
}
