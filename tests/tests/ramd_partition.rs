//! `ramd` end to end under network partitions (Linux network namespaces, see
//! `rale_e2e::netns`): the primary cut off from every replica while a client in its
//! partition keeps writing (asynchronous, synchronous `on` and `quorum` ANY 1), a replica
//! cut off, a 2|3 split of five nodes with the primary on the minority side, and a slow
//! primary link. Checks: no commit is acknowledged by the old primary once the new
//! primary accepted a write (no split brain), acknowledged commits survive in synchronous
//! modes (loss is measured in asynchronous mode), a new primary is elected on the
//! majority side and is writable, the old primary rejoins as a streaming replica after the
//! partition heals, and cutting off a replica changes no role and stops no write.
//! Run (as root): `cargo test -p rale-e2e --test ramd_partition -- --nocapture --test-threads 1`
//! (`RALE_FAULT_ROUNDS` sets the partition rounds per primary-isolation test, default 1).
//! Without root or `ip netns` every test prints "skipped: needs root and ip netns" and passes.

// The determinism lints of clippy.toml apply to rale::decide only.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rale_e2e::WAIT;
use rale_e2e::netns::cluster::NetnsCluster;
use rale_e2e::netns::skip_reason;
use rale_e2e::netns::writer::Writer;
use rale_e2e::ramd_cluster::serial;

const SYNC_ON: &str = "[bootstrap.synchronous]\nmode = \"on\"\nnode_count = 1\n";
const QUORUM_ANY_1: &str = "[bootstrap.synchronous]\nmode = \"quorum\"\nnode_count = 1\n";

fn rounds() -> usize {
    std::env::var("RALE_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Prints the skip line and returns true when namespaces cannot be used here.
fn skipped() -> bool {
    match skip_reason() {
        Some(why) => {
            eprintln!("skipped: needs root and ip netns ({why})");
            true
        }
        None => false,
    }
}

/// Figures of one primary-isolation round.
struct Round {
    old: String,
    new: String,
    acked: usize,
    lost: usize,
    stop_acking: Duration,
    new_writable: Duration,
    rejoin: Duration,
}

/// Cuts `minority` (the primary and maybe more nodes) off from the others while a client
/// in the minority's partition writes on the primary; checks and measures failover, then
/// heals and waits until the old primary streams from the new one.
async fn cut_primary(
    c: &NetnsCluster,
    minority: &[String],
    next: &Arc<AtomicI64>,
    probe_base: i64,
    sync: bool,
    label: &str,
) -> anyhow::Result<Round> {
    let old = minority.first().context("empty minority")?.clone();
    ensure!(c.primary().await? == old, "{old} is not the primary");
    let majority: Vec<String> = c
        .names()
        .into_iter()
        .filter(|n| !minority.contains(n))
        .collect();
    let epoch_before = c.status_from(&old).await?.epoch;
    let writer = Writer::start(
        c.node(&old)?.mgmt_dsn(),
        next.clone(),
        Duration::from_secs(2),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        writer.acked() > 0,
        "{label}: nothing acknowledged before the cut"
    );
    let groups: Vec<&str> = minority.iter().map(String::as_str).collect();
    c.partition(&[&groups])?;
    let cut = Instant::now();
    eprintln!("{label}: cut {minority:?} off from {majority:?}");

    // The majority elects a new primary that accepts a write.
    let mut probe = probe_base;
    let mut found = None;
    while cut.elapsed() < WAIT && found.is_none() {
        for n in &majority {
            probe += 1;
            if c.write_within(n, probe, Duration::from_secs(2))
                .await
                .is_ok()
            {
                found = Some((n.clone(), Instant::now(), probe));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Some((new, new_first_ack, new_probe)) = found else {
        let _ = writer.finish().await;
        anyhow::bail!("{label}: no node of {majority:?} accepted a write within {WAIT:?}");
    };
    let new_writable = new_first_ack - cut;
    // Let the client on the old primary's side keep trying a while longer.
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The old primary must still refuse (block) a write while cut off.
    let late_probe = probe + 1;
    let old_late_write = c
        .write_within(&old, late_probe, Duration::from_secs(3))
        .await;
    let written = writer.finish().await;
    let acks = written.acks;

    // Split brain: an acknowledgement from the old primary after the new one accepted.
    // PRODUCT CHECK (split-brain prevention, docs/lease.md, docs/fence.md): if this fails,
    // the old primary acknowledged commits while another node was writable.
    let after_new: Vec<(i64, f64)> = acks
        .iter()
        .filter(|(_, t)| *t >= new_first_ack)
        .map(|(id, t)| (*id, (*t - new_first_ack).as_secs_f64()))
        .collect();
    let last_ack = acks.iter().map(|(_, t)| *t).max();
    let stop_acking = last_ack
        .map(|t| t.saturating_duration_since(cut))
        .unwrap_or_default();
    let acked_after_cut = acks.iter().filter(|(_, t)| *t > cut).count();
    eprintln!(
        "FIGURE {label}: partition -> old primary {old} stops acknowledging: {:.2} s \
         ({acked_after_cut} commits acknowledged after the cut)",
        stop_acking.as_secs_f64()
    );
    eprintln!(
        "FIGURE {label}: partition -> new primary {new} writable: {:.2} s",
        new_writable.as_secs_f64()
    );
    ensure!(
        after_new.is_empty(),
        "SPLIT BRAIN ({label}): {old} acknowledged {} commit(s) after {new} accepted its first \
         write (id, seconds after): {:?}; logs in {}",
        after_new.len(),
        after_new.iter().take(10).collect::<Vec<_>>(),
        c.dir().display()
    );
    ensure!(
        old_late_write.is_err(),
        "SPLIT BRAIN ({label}): {old} accepted write {late_probe} while cut off, after {new} \
         was writable; logs in {}",
        c.dir().display()
    );
    ensure!(
        !majority.is_empty() && majority.contains(&new),
        "{label}: new primary {new} not on the majority side"
    );

    // What survived on the new primary.
    let present = c.ids(&new).await?;
    let lost_before: BTreeSet<i64> = acks
        .iter()
        .filter(|(id, t)| *t <= cut && !present.contains(id))
        .map(|(id, _)| *id)
        .collect();
    let lost_after: BTreeSet<i64> = acks
        .iter()
        .filter(|(id, t)| *t > cut && !present.contains(id))
        .map(|(id, _)| *id)
        .collect();
    let lost = lost_before.len() + lost_after.len();
    eprintln!(
        "FIGURE {label}: {} commits acknowledged by {old}, {lost} missing on {new} \
         ({} acknowledged before the cut, {} after)",
        acks.len(),
        lost_before.len(),
        lost_after.len()
    );
    if sync {
        // PRODUCT CHECK (synchronous mode `on`): no acknowledged commit may be lost.
        ensure!(
            lost == 0,
            "{label}: acknowledged commits lost in synchronous mode: before the cut \
             {lost_before:?}, after {lost_after:?}; logs in {}",
            c.dir().display()
        );
    }

    // Heal: the old primary rejoins as a replica of the new one.
    c.heal()?;
    let healed = Instant::now();
    for n in minority {
        c.wait_streaming(n, &new, Duration::from_secs(120))
            .await
            .with_context(|| format!("{label}: {n} rejoining after the heal"))?;
    }
    let rejoin = healed.elapsed();
    eprintln!(
        "FIGURE {label}: heal -> {old} streaming from {new}: {:.2} s",
        rejoin.as_secs_f64()
    );
    let after_heal = probe + 2;
    c.write(&new, after_heal).await?;
    for n in minority {
        c.wait_row(n, after_heal, WAIT).await?;
        ensure!(
            c.in_recovery(n).await == Some(true),
            "{label}: {n} is not in recovery after rejoining"
        );
    }
    ensure!(
        c.ids(&old).await?.contains(&new_probe),
        "{label}: {old} lacks the new primary's first write after rejoining"
    );
    ensure!(
        c.leader_seen_by(&new).await? == Some(new.clone()),
        "{label}: the leader changed while {old} rejoined"
    );
    let history = c.history_from(&new).await?;
    let entry = history
        .iter()
        .find(|h| h.kind == "failover" && h.epoch > epoch_before)
        .with_context(|| format!("{label}: no failover entry after epoch {epoch_before}"))?;
    ensure!(
        entry.node.as_deref() == Some(new.as_str()),
        "{label}: the failover entry names {:?}, the new primary is {new}",
        entry.node
    );
    Ok(Round {
        old,
        new,
        acked: acks.len(),
        lost,
        stop_acking,
        new_writable,
        rejoin,
    })
}

/// Runs `rounds` primary-isolation rounds on a fresh cluster of `nodes`; the minority is
/// the primary plus `extra_minority` replicas.
async fn campaign(
    label: &str,
    nodes: usize,
    extra_minority: usize,
    bootstrap: Option<&str>,
    sync: bool,
    rounds: usize,
) -> anyhow::Result<()> {
    let mut c = NetnsCluster::start(nodes, bootstrap).await?;
    let next = Arc::new(AtomicI64::new(1));
    let mut figures = Vec::new();
    for round in 1..=rounds {
        let r = async {
            let primary = c.primary().await?;
            let mut minority = vec![primary.clone()];
            minority.extend(
                c.names()
                    .into_iter()
                    .filter(|n| *n != primary)
                    .take(extra_minority),
            );
            let probe_base = 1_000_000_000 + 1_000_000 * i64::try_from(round)?;
            cut_primary(
                &c,
                &minority,
                &next,
                probe_base,
                sync,
                &format!("{label} round {round}"),
            )
            .await
        }
        .await;
        match r {
            Ok(f) => figures.push(f),
            Err(e) => {
                c.keep_dir();
                return Err(e);
            }
        }
    }
    for f in &figures {
        eprintln!(
            "{label}: {} -> {}: stops acking {:.2} s, new writable {:.2} s, rejoin {:.2} s, \
             {} acknowledged, {} lost",
            f.old,
            f.new,
            f.stop_acking.as_secs_f64(),
            f.new_writable.as_secs_f64(),
            f.rejoin.as_secs_f64(),
            f.acked,
            f.lost
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_primary_async() -> anyhow::Result<()> {
    if skipped() {
        return Ok(());
    }
    let _serial = serial().await;
    campaign("async 1|2", 3, 0, None, false, rounds()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_primary_sync_on() -> anyhow::Result<()> {
    if skipped() {
        return Ok(());
    }
    let _serial = serial().await;
    campaign("sync on 1|2", 3, 0, Some(SYNC_ON), true, rounds()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_primary_quorum_any_1() -> anyhow::Result<()> {
    if skipped() {
        return Ok(());
    }
    let _serial = serial().await;
    campaign("quorum ANY 1 1|2", 3, 0, Some(QUORUM_ANY_1), true, rounds()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_primary_on_minority_side() -> anyhow::Result<()> {
    if skipped() {
        return Ok(());
    }
    let _serial = serial().await;
    campaign("async 2|3", 5, 1, None, false, 1).await
}

async fn replica_cut(c: &NetnsCluster) -> anyhow::Result<()> {
    let primary = c.primary().await?;
    let replica = c
        .names()
        .into_iter()
        .find(|n| *n != primary)
        .context("no replica")?;
    let epoch_before = c.status_from(&primary).await?.epoch;
    let next = Arc::new(AtomicI64::new(1));
    let writer = Writer::start(
        c.node(&primary)?.mgmt_dsn(),
        next.clone(),
        Duration::from_secs(10),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(writer.acked() > 0, "nothing acknowledged before the cut");
    // This case cuts the link itself (carrier loss on both veth ends), not the bridge.
    let replica_index = c.index(&replica)?;
    c.net().link_down(replica_index)?;
    let cut = Instant::now();
    eprintln!("replica cut: {replica}'s data link down");
    let isolated_for = Duration::from_secs(10 * u64::try_from(rounds())?);
    while cut.elapsed() < isolated_for {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let seen = c.leader_seen_by(&primary).await?;
        ensure!(
            seen.as_deref() == Some(primary.as_str()),
            "{primary} no longer sees itself as leader while {replica} is cut off: {seen:?}"
        );
    }
    c.net().link_up(replica_index)?;
    let healed = Instant::now();
    eprintln!(
        "replica cut: link up again after {:.1} s",
        cut.elapsed().as_secs_f64()
    );
    // Cover the moment the returning replica disturbs consensus (a higher Raft term).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let written = writer.finish().await;
    let during = written
        .acks
        .iter()
        .filter(|(_, t)| *t > cut && *t < healed)
        .count();
    let mut max_gap = Duration::ZERO;
    for pair in written.acks.windows(2) {
        max_gap = max_gap.max(pair[1].1 - pair[0].1);
    }
    eprintln!(
        "FIGURE replica cut: {} commits acknowledged ({during} while {replica} was cut off), \
         {} failed, longest pause between acknowledgements {:.2} s",
        written.acks.len(),
        written.failures.len(),
        max_gap.as_secs_f64()
    );
    ensure!(
        written.failures.is_empty(),
        "the primary refused or stalled writes while a replica was cut off: {:?}",
        written.failures.iter().take(5).collect::<Vec<_>>()
    );
    ensure!(
        during > 0,
        "no commit acknowledged while {replica} was cut off"
    );
    let status = c.status_from(&primary).await?;
    ensure!(
        status.epoch == epoch_before && status.leader.as_deref() == Some(primary.as_str()),
        "role change while a replica was cut off: epoch {epoch_before} -> {}, leader {:?}",
        status.epoch,
        status.leader
    );
    c.wait_streaming(&replica, &primary, Duration::from_secs(90))
        .await?;
    eprintln!(
        "FIGURE replica cut: heal -> {replica} streaming: {:.2} s",
        healed.elapsed().as_secs_f64()
    );
    let last = written.acks.last().map(|(id, _)| *id).context("no ack")?;
    c.wait_row(&replica, last, WAIT).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_replica_changes_nothing() -> anyhow::Result<()> {
    if skipped() {
        return Ok(());
    }
    let _serial = serial().await;
    let mut c = NetnsCluster::start(3, None).await?;
    let r = replica_cut(&c).await;
    if r.is_err() {
        c.keep_dir();
    }
    r
}

/// The primary's link slowed to 256 kbit/s both ways (a queue of at most 200 ms, excess
/// dropped) for 15 s while it takes writes: whether or not this costs a failover, no two
/// nodes may acknowledge writes at once, and once the link recovers the cluster has one
/// writable primary and every other node streams from it.
async fn slow_link(c: &NetnsCluster) -> anyhow::Result<()> {
    let old = c.primary().await?;
    let others: Vec<String> = c.names().into_iter().filter(|n| *n != old).collect();
    let next = Arc::new(AtomicI64::new(1));
    let writer = Writer::start(
        c.node(&old)?.mgmt_dsn(),
        next.clone(),
        Duration::from_secs(3),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        writer.acked() > 0,
        "nothing acknowledged before slowing the link"
    );
    let index = c.index(&old)?;
    c.net().throttle(index, 256, 200)?;
    let slowed = Instant::now();
    eprintln!("slow link: {old}'s data link limited to 256 kbit/s");
    let mut probe = 2_000_000_000;
    let mut new_first = None;
    while slowed.elapsed() < Duration::from_secs(15) {
        for n in &others {
            probe += 1;
            if c.write_within(n, probe, Duration::from_secs(1))
                .await
                .is_ok()
            {
                new_first = Some((n.clone(), Instant::now()));
                break;
            }
        }
        if new_first.is_some() {
            // Keep the old side's client writing a little longer, then stop looking.
            tokio::time::sleep(Duration::from_secs(3)).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    c.net().clear_impairment(index)?;
    let restored = Instant::now();
    let written = writer.finish().await;
    let during = written
        .acks
        .iter()
        .filter(|(_, t)| *t > slowed && *t < restored)
        .count();
    let mut max_gap = Duration::ZERO;
    for pair in written.acks.windows(2) {
        max_gap = max_gap.max(pair[1].1 - pair[0].1);
    }
    match &new_first {
        Some((new, at)) => {
            let after: Vec<i64> = written
                .acks
                .iter()
                .filter(|(_, t)| t >= at)
                .map(|(id, _)| *id)
                .collect();
            eprintln!(
                "FIGURE slow link: failover to {new} {:.2} s after the slowdown; {old} \
                 acknowledged {during} commits while slow, {} after {new}'s first write",
                (*at - slowed).as_secs_f64(),
                after.len()
            );
            // PRODUCT CHECK (split-brain prevention) under a degraded, not cut, link.
            ensure!(
                after.is_empty(),
                "SPLIT BRAIN (slow link): {old} acknowledged {after:?} after {new} accepted a \
                 write; logs in {}",
                c.dir().display()
            );
        }
        None => eprintln!(
            "FIGURE slow link: no failover in 15 s; {old} acknowledged {during} commits while \
             slow, longest pause {:.2} s",
            max_gap.as_secs_f64()
        ),
    }
    // Recovery: one writable leader, everybody else streaming from it.
    // A fresh id per attempt: a timed-out attempt may still commit later.
    let attempt = AtomicI64::new(probe + 1);
    let (leader, final_id) = c
        .wait_for("one leader after the link recovered", WAIT, || async {
            let p = c.primary().await?;
            let id = attempt.fetch_add(1, Ordering::SeqCst);
            c.write_within(&p, id, Duration::from_secs(3)).await?;
            Ok(Some((p, id)))
        })
        .await?;
    for n in c.names().into_iter().filter(|n| *n != leader) {
        c.wait_streaming(&n, &leader, Duration::from_secs(120))
            .await?;
        c.wait_row(&n, final_id, WAIT).await?;
    }
    eprintln!(
        "FIGURE slow link: link restored -> {leader} writable and all streaming: {:.2} s",
        restored.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_primary_link_keeps_one_primary() -> anyhow::Result<()> {
    if skipped() {
        return Ok(());
    }
    let _serial = serial().await;
    let mut c = NetnsCluster::start(3, None).await?;
    let r = slow_link(&c).await;
    if r.is_err() {
        c.keep_dir();
    }
    r
}
