//! `ramd` end to end on a real three-member etcd (`[consensus] backend = "etcd"`, the
//! etcd started by the fixture beside the agents): bootstrap; one etcd member killed
//! (no role change, writes go on); the primary's node lost (agent and postmaster killed
//! with SIGKILL) and a new primary writing; the old node rejoining; a switchover to a
//! named replica; the primary's postmaster killed (restarted in place, no failover); the
//! primary's node lost while etcd's leader is killed too (an etcd leader change during the
//! failover). Skipped with a printed reason when `etcd` is not installed.
//! Run: `cargo test -p rale-e2e --test ramd_etcd -- --nocapture`

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use nix::sys::signal::Signal;
use rale::testing::etcd_server::EtcdServers;
use rale_e2e::WAIT;
use rale_e2e::ramd_cluster::{ClusterOptions, RamdCluster, serial};
use ramd_ref::demo::DemoConsensus;

/// Short lease: the etcd member outage below lasts longer than it.
const BOOTSTRAP: &str =
    "lease_ttl = \"5s\"\nrenew_interval = \"250ms\"\nfence_margin = \"300ms\"\n";
const LEASE_TTL: Duration = Duration::from_secs(5);

/// One etcd member killed for longer than the lease: no role change, writes go on.
async fn etcd_member_loss(c: &mut RamdCluster) -> anyhow::Result<()> {
    let primary = c.primary().await?;
    let epoch = c.status().await?.epoch;
    let etcd = c.etcd()?;
    let victim = etcd.members.len() - 1;
    let pid = etcd.members[victim].pid();
    etcd.stop_member(victim);
    eprintln!("killed etcd member {victim} (pid {pid:?})");
    let t = Instant::now();
    let mut id = 10;
    while t.elapsed() < LEASE_TTL * 2 {
        id += 1;
        c.write(&primary, id)
            .await
            .with_context(|| format!("write {id} on {primary} with one etcd member down"))?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = c.status().await?;
    ensure!(
        c.primary().await? == primary && after.epoch == epoch,
        "the roles changed with one etcd member down: epoch {epoch} -> {}",
        after.epoch
    );
    eprintln!(
        "FIGURE etcd member loss: {} writes on {primary} in {:.1} s, epoch unchanged ({epoch})",
        id - 10,
        t.elapsed().as_secs_f64()
    );
    c.etcd()?.start_member(victim)?;
    Ok(())
}

/// The primary's agent and postmaster killed together: another node takes over.
async fn node_loss(c: &mut RamdCluster) -> anyhow::Result<(String, String)> {
    let old = c.primary().await?;
    c.write(&old, 100).await?;
    let postmaster = c.postmaster_pid(&old)?;
    c.kill_agent(&old, Signal::SIGKILL)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(postmaster), Signal::SIGKILL)
        .context("killing the primary's postmaster")?;
    let killed = Instant::now();
    let mut next = 1_000;
    let cr: &RamdCluster = c;
    let new = cr
        .wait_for("another node accepting writes", WAIT, || {
            next += 1;
            let id = next;
            async move { Ok(Some(cr.try_write_any(id).await?)) }
        })
        .await?;
    ensure!(new != old, "the killed node {old} accepted a write");
    eprintln!(
        "FIGURE etcd failover: kill -> first write on {new}: {:.2} s",
        killed.elapsed().as_secs_f64()
    );
    ensure!(
        c.ids(&new).await?.contains(&100),
        "row 100, replicated before the kill, is missing on {new}"
    );
    let restarted = Instant::now();
    c.restart_agent(&old)?;
    c.wait_streaming(&old, Duration::from_secs(90)).await?;
    eprintln!(
        "FIGURE etcd rejoin: agent restart -> {old} streaming: {:.2} s",
        restarted.elapsed().as_secs_f64()
    );
    Ok((old, new))
}

/// A planned switchover to a named replica.
async fn switchover(c: &RamdCluster) -> anyhow::Result<()> {
    let old = c.primary().await?;
    let others: Vec<String> = c.names().into_iter().filter(|n| *n != old).collect();
    let (candidate, via) = (others[0].clone(), others[1].clone());
    c.write(&old, 5_000).await?;
    c.wait_row(&candidate, 5_000, WAIT).await?;
    let t = Instant::now();
    let (code, body) = c.switchover(&via, &old, &candidate).await?;
    ensure!(code == 200, "switchover answered {code}: {body}");
    let mut id = 6_000;
    c.wait_for(&format!("{candidate} accepting writes"), WAIT, || {
        id += 1;
        let (id, candidate) = (id, candidate.clone());
        async move { c.write(&candidate, id).await.map(Some) }
    })
    .await?;
    eprintln!(
        "FIGURE etcd switchover: request -> write on {candidate}: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    ensure!(
        c.write(&old, 9_999).await.is_err(),
        "the old primary {old} still accepts writes"
    );
    c.wait_streaming(&old, Duration::from_secs(90)).await?;
    Ok(())
}

/// The primary's postmaster killed under its live agent: restarted in place, same
/// primary, same epoch.
async fn crash_in_place(c: &RamdCluster) -> anyhow::Result<()> {
    let primary = c.primary().await?;
    let epoch = c.status().await?.epoch;
    c.write(&primary, 7_000).await?;
    let old_pid = c.kill_postmaster(&primary, Signal::SIGKILL)?;
    let t = Instant::now();
    let mut id = 7_000;
    let writer = c
        .wait_for("a write accepted again", WAIT, || {
            id += 1;
            let id = id;
            async move { Ok(Some(c.try_write_any(id).await?)) }
        })
        .await?;
    eprintln!(
        "FIGURE etcd crash in place: kill -9 postmaster -> write on {writer}: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    ensure!(writer == primary, "{writer} took the write, not {primary}");
    ensure!(
        c.postmaster_pid(&primary)? != old_pid,
        "same postmaster PID"
    );
    let after = c.status().await?.epoch;
    ensure!(
        after == epoch,
        "a failover happened: epoch {epoch} -> {after}"
    );
    Ok(())
}

/// The etcd member that leads (its `/v3/maintenance/status` names itself as leader).
async fn etcd_leader(c: &mut RamdCluster) -> anyhow::Result<usize> {
    let urls: Vec<String> = c
        .etcd()?
        .members
        .iter()
        .map(|m| m.client_url.clone())
        .collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    for (i, url) in urls.iter().enumerate() {
        let Ok(resp) = http
            .post(format!("{url}/v3/maintenance/status"))
            .body("{}")
            .send()
            .await
        else {
            continue;
        };
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        let me = v["header"]["member_id"].as_str().unwrap_or("");
        if !me.is_empty() && v["leader"].as_str() == Some(me) {
            return Ok(i);
        }
    }
    anyhow::bail!("no etcd member says it leads")
}

/// The primary's node lost and, at the same moment, etcd's leader killed: the agents
/// fail over while etcd elects a new leader.
async fn failover_during_etcd_leader_change(c: &mut RamdCluster) -> anyhow::Result<()> {
    let old = c.primary().await?;
    c.write(&old, 8_000).await?;
    for n in c.names() {
        c.wait_row(&n, 8_000, WAIT).await?;
    }
    let leader = etcd_leader(c).await?;
    let postmaster = c.postmaster_pid(&old)?;
    c.kill_agent(&old, Signal::SIGKILL)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(postmaster), Signal::SIGKILL)
        .context("killing the primary's postmaster")?;
    c.etcd()?.stop_member(leader);
    let killed = Instant::now();
    let mut next = 8_000;
    let cr: &RamdCluster = c;
    let new = cr
        .wait_for("another node accepting writes", WAIT, || {
            next += 1;
            let id = next;
            async move { Ok(Some(cr.try_write_any(id).await?)) }
        })
        .await?;
    ensure!(new != old, "the killed node {old} accepted a write");
    ensure!(
        c.ids(&new).await?.contains(&8_000),
        "row 8000 missing on {new}"
    );
    eprintln!(
        "FIGURE etcd failover during an etcd leader change (etcd{leader} killed): kill -> first write on {new}: {:.2} s",
        killed.elapsed().as_secs_f64()
    );
    c.etcd()?.start_member(leader)?;
    c.restart_agent(&old)?;
    c.wait_streaming(&old, Duration::from_secs(90)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramd_on_etcd() -> anyhow::Result<()> {
    if EtcdServers::find_binary().is_none() {
        eprintln!("SKIPPED: no etcd binary (install etcd-server or set RALE_ETCD)");
        return Ok(());
    }
    let _serial = serial().await;
    // Build (or find) ramd first, so that the bootstrap figure is the cluster's alone.
    rale_e2e::ramd_cluster::ramd_binary()?;
    let t = Instant::now();
    let mut c = RamdCluster::start_opts(ClusterOptions {
        bootstrap_toml: Some(BOOTSTRAP.into()),
        consensus: DemoConsensus::Etcd,
        ..ClusterOptions::new(3)
    })
    .await?;
    eprintln!(
        "FIGURE etcd bootstrap: 3 agents ready in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let r = async {
        etcd_member_loss(&mut c).await?;
        node_loss(&mut c).await?;
        switchover(&c).await?;
        crash_in_place(&c).await?;
        failover_during_etcd_leader_change(&mut c).await
    }
    .await;
    if r.is_err() {
        c.keep_dir();
    }
    r
}
