//! `ramd` end to end: `POST /restart` now and scheduled (`{"schedule": ISO 8601}`),
//! `DELETE /restart`, and the refusals an operator can run into (bad or past schedule,
//! a second schedule while one is pending, nothing to delete), on a real cluster.
//! Run: `cargo test -p rale-e2e --test ramd_restart -- --nocapture`

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rale_e2e::WAIT;
use rale_e2e::ramd_cluster::{RamdCluster, serial};
use reqwest::Method;
use serde_json::json;

fn at(from_now: chrono::Duration) -> String {
    (chrono::Utc::now() + from_now).to_rfc3339()
}

async fn body(c: &RamdCluster) -> anyhow::Result<()> {
    let primary = c.primary().await?;
    let replica = c
        .names()
        .into_iter()
        .find(|n| *n != primary)
        .context("a replica")?;

    // Refusals.
    let (code, text) = c
        .api_request(
            &replica,
            Method::POST,
            "/restart",
            Some(json!({"schedule": "tomorrow"})),
        )
        .await?;
    ensure!(code == 400, "unparsable schedule: {code} {text}");
    let (code, text) = c
        .api_request(
            &replica,
            Method::POST,
            "/restart",
            Some(json!({"schedule": at(chrono::Duration::hours(-1))})),
        )
        .await?;
    ensure!(code == 400, "schedule in the past: {code} {text}");
    let (code, text) = c
        .api_request(&replica, Method::DELETE, "/restart", None)
        .await?;
    ensure!(code == 404, "nothing scheduled: {code} {text}");

    // Schedule far ahead, refuse a second one, delete it.
    let (code, text) = c
        .api_request(
            &replica,
            Method::POST,
            "/restart",
            Some(json!({"schedule": at(chrono::Duration::hours(1))})),
        )
        .await?;
    ensure!(code == 202, "schedule: {code} {text}");
    let (code, text) = c
        .api_request(
            &replica,
            Method::POST,
            "/restart",
            Some(json!({"schedule": at(chrono::Duration::hours(2))})),
        )
        .await?;
    ensure!(code == 409, "second schedule: {code} {text}");
    let pid = c.postmaster_pid(&replica)?;
    let (code, text) = c
        .api_request(&replica, Method::DELETE, "/restart", None)
        .await?;
    ensure!(code == 200, "delete: {code} {text}");
    ensure!(c.postmaster_pid(&replica)? == pid, "a deleted restart ran");

    // A schedule a few seconds ahead runs then: the postmaster changes, the replica streams.
    let scheduled = Instant::now();
    let (code, text) = c
        .api_request(
            &replica,
            Method::POST,
            "/restart",
            Some(json!({"schedule": at(chrono::Duration::seconds(3)), "role": "replica"})),
        )
        .await?;
    ensure!(code == 202, "schedule: {code} {text}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(
        c.postmaster_pid(&replica)? == pid,
        "the restart ran before its time"
    );
    c.wait_for("the scheduled restart", WAIT, || async {
        Ok(c.postmaster_pid(&replica)
            .ok()
            .filter(|p| *p != pid)
            .map(|_| ()))
    })
    .await?;
    eprintln!(
        "scheduled restart of {replica} ran {:.1} s after it was scheduled 3 s ahead",
        scheduled.elapsed().as_secs_f64()
    );
    c.wait_streaming(&replica, Duration::from_secs(90)).await?;
    // While the restart is under way it cannot be cancelled (409); once done, nothing is
    // left to delete (404).
    c.wait_for("the scheduled restart to finish", WAIT, || async {
        let (code, text) = c
            .api_request(&replica, Method::DELETE, "/restart", None)
            .await?;
        match code {
            404 => Ok(Some(())),
            409 => Ok(None),
            _ => anyhow::bail!("DELETE /restart after the restart ran: {code} {text}"),
        }
    })
    .await?;

    // An immediate restart of the primary keeps it primary (no failover).
    let epoch = c.status().await?.epoch;
    let pid = c.postmaster_pid(&primary)?;
    let (code, text) = c
        .api_request(&primary, Method::POST, "/restart", Some(json!({})))
        .await?;
    ensure!(code == 200, "restart now: {code} {text}");
    ensure!(
        c.postmaster_pid(&primary)? != pid,
        "the postmaster did not change"
    );
    c.wait_for("a write on the restarted primary", WAIT, || async {
        Ok(c.write(&primary, 4242).await.ok())
    })
    .await?;
    ensure!(c.primary().await? == primary, "the primary changed");
    ensure!(c.status().await?.epoch == epoch, "the lease epoch changed");
    let history = c.history().await?;
    ensure!(
        history.iter().any(|h| h.reason.contains("scheduled for")),
        "the schedule is not in the history: {history:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_now_scheduled_and_cancelled() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut c = RamdCluster::start(3, None).await?;
    let r = body(&c).await;
    if r.is_err() {
        c.keep_dir();
    }
    r
}

/// Whether process `pid` has exited (gone, or a zombie not yet reaped).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// In maintenance mode an agent can be stopped (SIGTERM, as `systemctl stop` does) and
/// started again without touching PostgreSQL: same postmaster, same primary, same epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_agent_restart_leaves_postgresql_running() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut c = RamdCluster::start(3, None).await?;
    let r = async {
        let primary = c.primary().await?;
        let epoch = c.status().await?.epoch;
        let (code, text) = c
            .api_request(&primary, Method::POST, "/api/v1/pause", None)
            .await?;
        ensure!(code == 200, "pause: {code} {text}");
        let postmaster = c.postmaster_pid(&primary)?;
        let agent = c.kill_agent(&primary, nix::sys::signal::Signal::SIGTERM)?;
        let stop = Instant::now();
        while !exited(agent) {
            ensure!(
                stop.elapsed() < WAIT,
                "the agent did not stop within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ensure!(
            !exited(u32::try_from(postmaster)?),
            "stopping the agent in maintenance mode stopped PostgreSQL"
        );
        c.restart_agent(&primary)?;
        c.wait_for("the agent back", WAIT, || async {
            Ok(c.status_from(&primary)
                .await
                .ok()
                .filter(|s| s.consensus.ok)
                .map(|_| ()))
        })
        .await?;
        let (code, text) = c
            .api_request(&primary, Method::POST, "/api/v1/resume", None)
            .await?;
        ensure!(code == 200, "resume: {code} {text}");
        c.wait_for("a write on the primary", WAIT, || async {
            Ok(c.write(&primary, 6161).await.ok())
        })
        .await?;
        ensure!(
            c.postmaster_pid(&primary)? == postmaster,
            "PostgreSQL was restarted"
        );
        ensure!(c.primary().await? == primary, "the primary changed");
        ensure!(c.status().await?.epoch == epoch, "the lease epoch changed");
        eprintln!("paused agent restart: PostgreSQL on {primary} kept running, no failover");
        Ok(())
    }
    .await;
    if r.is_err() {
        c.keep_dir();
    }
    r
}
