//! Maintenance mode on real clusters: nothing automatic happens while paused, but an
//! operator's failover to a named member works when the primary is gone (as in Patroni),
//! is recorded in the history, and a failover without a candidate is refused with the
//! reason — in the answer and in `ramd.log`.
//! Run: `cargo test -p rale-e2e --test ramd_pause -- --nocapture`

use std::time::Duration;

use anyhow::{Context, ensure};
use nix::sys::signal::Signal;
use rale_e2e::WAIT;
use rale_e2e::ramd_cluster::{RamdCluster, serial};
use reqwest::Method;
use serde_json::json;

async fn body(c: &mut RamdCluster) -> anyhow::Result<()> {
    let primary = c.primary().await?;
    let candidate = c
        .names()
        .into_iter()
        .find(|n| *n != primary)
        .context("a replica")?;
    c.write(&primary, 1).await?;
    c.wait_row(&candidate, 1, WAIT).await?;
    let (code, text) = c
        .api_request(&candidate, Method::POST, "/api/v1/pause", None)
        .await?;
    ensure!(code == 200, "pause: {code} {text}");
    c.wait_for("every node paused", WAIT, || async {
        for n in c.names() {
            if !c.status_from(&n).await?.paused {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await?;

    // The primary's host dies. Paused: nobody takes over by itself.
    let pm = c.postmaster_pid(&primary)?;
    c.kill_agent(&primary, Signal::SIGKILL)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pm), Signal::SIGKILL)
        .context("killing the primary's postmaster")?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = c.status_from(&candidate).await?;
    ensure!(
        s.members
            .iter()
            .all(|m| m.name == primary || m.pg_role != "primary"),
        "a replica was promoted while paused: {:?}",
        s.members
    );

    // A failover without a candidate is refused (400) and logged.
    let (code, text) = c
        .api_request(&candidate, Method::POST, "/failover", Some(json!({})))
        .await?;
    ensure!(code == 400, "failover without a candidate: {code} {text}");
    ensure!(
        c.log(&candidate)
            .contains("api refused a change of primary"),
        "the refusal is not in {candidate}'s ramd.log"
    );

    // A failover to a named member goes ahead.
    let (code, text) = c
        .api_request(
            &candidate,
            Method::POST,
            "/failover",
            Some(json!({ "candidate": candidate })),
        )
        .await?;
    ensure!(
        code == 200,
        "failover to {candidate} while paused: {code} {text}"
    );
    let new = c.wait_writable_leader(&[&primary], 2, WAIT).await?;
    ensure!(new == candidate, "{new} became primary, not {candidate}");
    let s = c.status_from(&candidate).await?;
    ensure!(s.paused, "the failover resumed the cluster");
    let history = c.history().await?;
    ensure!(
        history
            .iter()
            .any(|h| h.kind == "failover" && h.node.as_deref() == Some(candidate.as_str())),
        "the failover is not in the history: {history:?}"
    );
    let ids = c.ids(&candidate).await?;
    ensure!(ids.contains(&1) && ids.contains(&2), "{ids:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_while_paused() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut c = RamdCluster::start(3, None).await?;
    let r = body(&mut c).await;
    if r.is_err() {
        c.keep_dir();
    }
    r
}
