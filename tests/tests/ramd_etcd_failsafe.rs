//! Failsafe mode end to end: three `ramd` agents on a real three-member etcd, and the
//! whole etcd stopped (every member SIGKILLed, then started again on its data).
//! - failsafe on, etcd down for `OUTAGE` (60 s): every write is acknowledged, the primary
//!   and the epoch do not change;
//! - failsafe on, etcd down, one replica's agent killed during the outage: the primary no
//!   longer hears from every member and stops acknowledging within its lease; it
//!   acknowledges again once etcd is back, and nothing acknowledged is lost;
//! - failsafe off (`PATCH /config`), etcd down: the primary stops acknowledging within its
//!   lease; it acknowledges again once etcd is back, nothing lost, no failover.
//!
//! Skipped with a printed reason when `etcd` is not installed.
//! Run: `cargo test -p rale-e2e --test ramd_etcd_failsafe -- --nocapture`
//! (`RALE_FAILSAFE_OUTAGE_S` shortens or lengthens the first outage.)

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use nix::sys::signal::Signal;
use rale::testing::etcd_server::EtcdServers;
use rale_e2e::WAIT;
use rale_e2e::ramd_cluster::{ClusterOptions, RamdCluster, serial};
use ramd_ref::demo::DemoConsensus;

const BOOTSTRAP: &str = "lease_ttl = \"5s\"\nrenew_interval = \"250ms\"\nfence_margin = \"300ms\"\nfailsafe_mode = true\n";
const LEASE_TTL: Duration = Duration::from_secs(5);
/// How long one write may wait for its acknowledgement before it counts as refused.
const WRITE_WAIT: Duration = Duration::from_secs(2);

fn outage() -> Duration {
    let s = std::env::var("RALE_FAILSAFE_OUTAGE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(s)
}

fn stop_etcd(c: &mut RamdCluster) -> anyhow::Result<()> {
    let etcd = c.etcd()?;
    for i in 0..etcd.members.len() {
        etcd.stop_member(i);
    }
    Ok(())
}

fn start_etcd(c: &mut RamdCluster) -> anyhow::Result<()> {
    let etcd = c.etcd()?;
    for i in 0..etcd.members.len() {
        etcd.start_member(i)?;
    }
    etcd.wait_healthy(Duration::from_secs(60))?;
    Ok(())
}

/// One write with a bounded wait: `true` when acknowledged.
async fn write(c: &RamdCluster, node: &str, id: i64) -> bool {
    matches!(
        tokio::time::timeout(WRITE_WAIT, c.write(node, id)).await,
        Ok(Ok(()))
    )
}

/// Writes to `node` every 250 ms for `span`; returns (acknowledged ids, refused ids,
/// when the first write that went unacknowledged was issued, after the start).
async fn write_for(
    c: &RamdCluster,
    node: &str,
    first_id: i64,
    span: Duration,
) -> (Vec<i64>, Vec<i64>, Option<Duration>) {
    let t = Instant::now();
    let (mut acked, mut refused, mut first_refusal) = (Vec::new(), Vec::new(), None);
    let mut id = first_id;
    while t.elapsed() < span {
        id += 1;
        let issued = t.elapsed();
        if write(c, node, id).await {
            acked.push(id);
        } else {
            refused.push(id);
            first_refusal.get_or_insert(issued);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (acked, refused, first_refusal)
}

/// After etcd is back: waits until `node` acknowledges again and checks every id in
/// `acked` is there. Returns how long the wait took.
async fn recovered(
    c: &RamdCluster,
    node: &str,
    acked: &BTreeSet<i64>,
    probe: i64,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let mut id = probe;
    c.wait_for(&format!("{node} acknowledging again"), WAIT, || {
        id += 1;
        let id = id;
        async move { Ok(write(c, node, id).await.then_some(())) }
    })
    .await?;
    let took = t.elapsed();
    let have = c.ids(node).await?;
    let lost: Vec<_> = acked.difference(&have).collect();
    ensure!(lost.is_empty(), "acknowledged ids lost on {node}: {lost:?}");
    Ok(took)
}

async fn failsafe_keeps_the_primary(
    c: &mut RamdCluster,
    acked: &mut BTreeSet<i64>,
) -> anyhow::Result<()> {
    let primary = c.primary().await?;
    let epoch = c.status().await?.epoch;
    let span = outage();
    stop_etcd(c)?;
    let (ok, refused, _) = write_for(c, &primary, 10_000, span).await;
    start_etcd(c)?;
    acked.extend(&ok);
    ensure!(
        refused.is_empty(),
        "failsafe on: {} of {} writes refused during the etcd outage (first ids {:?})",
        refused.len(),
        ok.len() + refused.len(),
        &refused[..refused.len().min(5)]
    );
    let took = recovered(c, &primary, acked, 19_000).await?;
    let after = c.status().await?;
    ensure!(
        c.primary().await? == primary && after.epoch == epoch,
        "failsafe on: the roles changed over the outage (epoch {epoch} -> {})",
        after.epoch
    );
    eprintln!(
        "FIGURE failsafe on, etcd down {:.0} s: {} writes acknowledged on {primary}, 0 refused, epoch {epoch} unchanged; writable {:.2} s after etcd returned",
        span.as_secs_f64(),
        ok.len(),
        took.as_secs_f64()
    );
    Ok(())
}

async fn silent_member_fences(
    c: &mut RamdCluster,
    acked: &mut BTreeSet<i64>,
) -> anyhow::Result<()> {
    let primary = c.primary().await?;
    let replica = c
        .names()
        .into_iter()
        .find(|n| *n != primary)
        .context("a replica")?;
    stop_etcd(c)?;
    let (before, refused_before, _) = write_for(c, &primary, 20_000, Duration::from_secs(3)).await;
    acked.extend(&before);
    ensure!(
        refused_before.is_empty(),
        "refused before the replica's agent died: {refused_before:?}"
    );
    c.kill_agent(&replica, Signal::SIGKILL)?;
    let (ok, refused, first) =
        write_for(c, &primary, 21_000, LEASE_TTL * 2 + Duration::from_secs(4)).await;
    acked.extend(&ok);
    let first = first.context("the primary kept acknowledging with a member silent")?;
    // Writes acknowledged late: any after the lease would mean the primary did not fence.
    let late: Vec<_> = ok
        .iter()
        .filter(|id| **id > refused.first().copied().unwrap_or(i64::MAX))
        .collect();
    ensure!(
        late.is_empty(),
        "writes acknowledged after the first refusal, with a member silent: {late:?}"
    );
    start_etcd(c)?;
    c.restart_agent(&replica)?;
    let took = recovered(c, &primary, acked, 29_000).await?;
    eprintln!(
        "FIGURE failsafe on, etcd down, {replica}'s agent killed: the first unacknowledged write was issued {:.2} s after the kill (lease {} s); writable again {:.2} s after etcd returned; {} acknowledged ids all present",
        first.as_secs_f64(),
        LEASE_TTL.as_secs(),
        took.as_secs_f64(),
        acked.len()
    );
    ensure!(
        first <= LEASE_TTL + Duration::from_secs(1),
        "failsafe on, a member silent: the first refusal came {first:?} after the kill, later than the lease"
    );
    c.wait_streaming(&replica, Duration::from_secs(90)).await?;
    Ok(())
}

async fn without_failsafe_the_primary_fences(
    c: &mut RamdCluster,
    acked: &mut BTreeSet<i64>,
) -> anyhow::Result<()> {
    let primary = c.primary().await?;
    let (code, body) = c
        .api_request(
            &primary,
            reqwest::Method::PATCH,
            "/config",
            Some(serde_json::json!({"failsafe_mode": false})),
        )
        .await?;
    ensure!(
        code == 200,
        "PATCH /config failsafe_mode=false: {code} {body}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let epoch = c.status().await?.epoch;
    stop_etcd(c)?;
    let stopped = Instant::now();
    let (ok, _, first) = write_for(c, &primary, 30_000, LEASE_TTL * 3).await;
    acked.extend(&ok);
    let first = first.context("failsafe off: the primary kept acknowledging with etcd down")?;
    start_etcd(c)?;
    let down = stopped.elapsed();
    let took = recovered(c, &primary, acked, 39_000).await?;
    let after = c.status().await?;
    eprintln!(
        "FIGURE failsafe off, etcd down {:.0} s: the first unacknowledged write was issued {:.2} s after etcd stopped (lease {} s); writable again {:.2} s after etcd returned; epoch {epoch} -> {}; {} acknowledged ids all present",
        down.as_secs_f64(),
        first.as_secs_f64(),
        LEASE_TTL.as_secs(),
        took.as_secs_f64(),
        after.epoch,
        acked.len()
    );
    ensure!(
        first <= LEASE_TTL + Duration::from_secs(1),
        "failsafe off: the first refusal came {first:?} after etcd stopped, later than the lease"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failsafe_mode_on_a_whole_etcd_outage() -> anyhow::Result<()> {
    if EtcdServers::find_binary().is_none() {
        eprintln!("SKIPPED: no etcd binary (install etcd-server or set RALE_ETCD)");
        return Ok(());
    }
    let _serial = serial().await;
    rale_e2e::ramd_cluster::ramd_binary()?;
    let mut c = RamdCluster::start_opts(ClusterOptions {
        bootstrap_toml: Some(BOOTSTRAP.into()),
        consensus: DemoConsensus::Etcd,
        ..ClusterOptions::new(3)
    })
    .await?;
    let r = async {
        let primary = c.primary().await?;
        c.write(&primary, 1).await?;
        for n in c.names() {
            c.wait_row(&n, 1, WAIT).await?;
        }
        let mut acked = BTreeSet::from([1]);
        failsafe_keeps_the_primary(&mut c, &mut acked).await?;
        silent_member_fences(&mut c, &mut acked).await?;
        without_failsafe_the_primary_fences(&mut c, &mut acked).await
    }
    .await;
    if r.is_err() {
        c.keep_dir();
    }
    r
}
