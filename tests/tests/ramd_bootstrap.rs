//! `ramd` end to end: a fresh three-node cluster bootstraps one primary and two streaming
//! replicas, and rows written on the primary reach both replicas.
//! Run: `cargo test -p rale-e2e --test ramd_bootstrap -- --nocapture`

use std::time::Instant;

use anyhow::ensure;
use rale_e2e::WAIT;
use rale_e2e::ramd_cluster::{RamdCluster, serial};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_bootstrap_and_replicate() -> anyhow::Result<()> {
    let _serial = serial().await;
    let t = Instant::now();
    let mut c = RamdCluster::start(3, None).await?;
    eprintln!("ready in {:.1} s", t.elapsed().as_secs_f64());
    let r = body(&c).await;
    if r.is_err() {
        c.keep_dir();
    }
    r
}

async fn body(c: &RamdCluster) -> anyhow::Result<()> {
    let view = c.cluster().await?;
    let leaders: Vec<_> = view.members.iter().filter(|m| m.role == "leader").collect();
    ensure!(
        leaders.len() == 1,
        "one leader expected: {:?}",
        view.members
    );
    let primary = leaders[0].name.clone();
    let replicas: Vec<String> = c.names().into_iter().filter(|n| *n != primary).collect();
    ensure!(replicas.len() == 2);
    for r in &replicas {
        c.wait_streaming(r, WAIT).await?;
    }
    for id in 1..=100 {
        c.write(&primary, id).await?;
    }
    for r in &replicas {
        c.wait_for(&format!("100 rows on {r}"), WAIT, || async {
            Ok((c.count_rows(r).await? == 100).then_some(()))
        })
        .await?;
        // A replica refuses writes.
        ensure!(
            c.write(r, 10_000).await.is_err(),
            "replica {r} accepted a write"
        );
    }
    let status = c.status().await?;
    ensure!(
        status.leader.as_deref() == Some(primary.as_str()),
        "{status:?}"
    );
    ensure!(status.epoch >= 1, "epoch {}", status.epoch);
    let history = c.history().await?;
    ensure!(
        history.iter().any(|h| h.kind == "bootstrap"),
        "no bootstrap entry in {history:?}"
    );
    Ok(())
}
