//! `ramd` end to end: planned switchover to a named replica through `POST /switchover`.
//! Run: `cargo test -p rale-e2e --test ramd_switchover -- --nocapture`

use std::time::{Duration, Instant};

use anyhow::ensure;
use rale_e2e::WAIT;
use rale_e2e::ramd_cluster::{RamdCluster, serial};

async fn body(c: &RamdCluster) -> anyhow::Result<()> {
    let old = c.primary().await?;
    let epoch = c.status().await?.epoch;
    let others: Vec<String> = c.names().into_iter().filter(|n| *n != old).collect();
    let (candidate, via) = (others[0].clone(), others[1].clone());
    c.write(&old, 1).await?;
    c.wait_row(&candidate, 1, WAIT).await?;
    let t = Instant::now();
    let (code, body) = c.switchover(&via, &old, &candidate).await?;
    eprintln!("POST /switchover via {via}: {code} {body}");
    ensure!(code == 200, "switchover answered {code}: {body}");
    ensure!(
        body.contains(&candidate),
        "answer does not name {candidate}: {body}"
    );
    let mut id = 100;
    c.wait_for(&format!("{candidate} accepting writes"), WAIT, || {
        id += 1;
        let id = id;
        let candidate = candidate.clone();
        async move { c.write(&candidate, id).await.map(Some) }
    })
    .await?;
    eprintln!(
        "FIGURE switchover: request -> write on {candidate}: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    ensure!(
        c.primary().await? == candidate,
        "/cluster does not show {candidate} as leader"
    );
    ensure!(
        c.write(&old, 1_000_000).await.is_err(),
        "the old primary {old} still accepts writes"
    );
    c.wait_streaming(&old, Duration::from_secs(90)).await?;
    c.wait_row(&old, id, WAIT).await?;
    c.wait_streaming(&via, Duration::from_secs(90)).await?;
    c.wait_row(&via, id, WAIT).await?;
    let after = c.status().await?;
    ensure!(
        after.epoch > epoch,
        "epoch {} did not grow past {epoch}",
        after.epoch
    );
    let history = c.history().await?;
    let entry = history
        .iter()
        .find(|h| h.kind == "switchover" && h.epoch > epoch);
    ensure!(entry.is_some(), "no switchover entry in {history:?}");
    eprintln!("history: {entry:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_to_named_replica() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut c = RamdCluster::start(3, None).await?;
    let r = body(&c).await;
    if r.is_err() {
        c.keep_dir();
    }
    r
}
