//! `ramctrl restart --all`: every member's PostgreSQL, one at a time, replicas first and
//! the primary last, each back in service before the next.
//!
//! Replicas first because some settings must be at least as large on a standby as on
//! its primary (`max_connections`, `max_worker_processes`, `max_wal_senders`,
//! `max_prepared_transactions`, `max_locks_per_transaction`): a primary restarted first
//! with a larger value would stop its standbys' replay.

use std::time::{Duration, Instant};

use ramd_ref::api::types::RestartRequest;

use super::{CliError, Ctx, confirm};

/// How long one member may take to be back in service after its restart.
const BACK_TIMEOUT: Duration = Duration::from_secs(180);

/// Restarts every member (only those waiting for a restart with `pending`).
pub async fn all(ctx: &Ctx, pending: bool, force: bool) -> Result<(), CliError> {
    let cluster = ctx.client.cluster().await?;
    let mut order: Vec<_> = cluster.members.iter().collect();
    // Replicas first, the primary last; by name otherwise.
    order.sort_by_key(|m| (m.role == "leader", m.name.clone()));
    let names: Vec<&str> = order.iter().map(|m| m.name.as_str()).collect();
    let what = if pending {
        "members waiting for a restart"
    } else {
        "every member"
    };
    confirm(
        &format!(
            "Restart PostgreSQL on {what}, in this order: {}?",
            names.join(", ")
        ),
        force,
    )?;
    let mut restarted = Vec::new();
    for m in order {
        if pending && !m.pending_restart {
            println!("{}: no restart needed", m.name);
            continue;
        }
        let url = m.api_url.trim_end_matches("/patroni").to_owned();
        let req = RestartRequest {
            restart_pending: pending.then_some(true),
            ..RestartRequest::default()
        };
        let (_, resp) = ctx.client.restart(&url, &req).await?;
        println!("{}: {}", m.name, resp.message);
        wait_back(ctx, &m.name, &url).await?;
        restarted.push(m.name.clone());
    }
    if ctx.json {
        println!("{}", serde_json::json!({ "restarted": restarted }));
    }
    Ok(())
}

/// Waits (bounded) until `name` runs again by its own agent's account: running, and a
/// replica streaming from the primary again.
async fn wait_back(ctx: &Ctx, name: &str, url: &str) -> Result<(), CliError> {
    let deadline = Instant::now() + BACK_TIMEOUT;
    // The agent publishes its view once per HA loop: let it see the restarted server.
    tokio::time::sleep(Duration::from_secs(1)).await;
    while Instant::now() < deadline {
        if let Ok(s) = ctx.client.node_status_at(url).await
            && s.state == "running"
            && (s.role != "replica" || s.replication_state.as_deref() == Some("streaming"))
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(CliError::Local(format!(
        "{name} is not back in service {} s after its restart: stopping here",
        BACK_TIMEOUT.as_secs()
    )))
}
