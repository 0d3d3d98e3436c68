//! `ramctrl` end to end, the real binary against a real 3-node cluster: every read
//! command (tables and `--json`), the configuration commands (`--set` and `$EDITOR`),
//! pause/resume, switchover, restart, reload, reinit, and the refusals with their exit
//! codes (0 done, 1 refused, 2 usage, 3 no agent reachable) — checking that nothing
//! changed after a refusal.
//! Run: `cargo test -p rale-e2e --test ramctrl_cli -- --nocapture`

use std::time::Duration;

use anyhow::{Context, ensure};
use rale_e2e::WAIT;
use rale_e2e::ctl::Ctl;
use rale_e2e::ramd_cluster::{RamdCluster, serial};

/// Waits until every agent's view shows maintenance mode `on` (or off).
async fn wait_paused(c: &RamdCluster, on: bool) -> anyhow::Result<()> {
    c.wait_for("the maintenance flag", Duration::from_secs(30), || async {
        for n in c.names() {
            if c.status_from(&n).await?.paused != on {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await
}

async fn body(c: &RamdCluster, ctl: &Ctl) -> anyhow::Result<()> {
    let names = c.names();
    let primary = c.primary().await?;
    let replica = names
        .iter()
        .find(|n| **n != primary)
        .cloned()
        .context("a replica")?;

    // Read commands, tables and JSON.
    let list = ctl.ok(&["list"]).await?;
    for n in &names {
        ensure!(list.contains(n.as_str()), "list lacks {n}: {list}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&ctl.ok(&["--json", "list"]).await?).context("list --json is JSON")?;
    ensure!(
        json.to_string().contains(&primary),
        "list --json lacks the primary: {json}"
    );
    let status = ctl.ok(&["status"]).await?;
    ensure!(
        status.contains(&primary),
        "status lacks the leader: {status}"
    );
    serde_json::from_str::<serde_json::Value>(&ctl.ok(&["--json", "status"]).await?)
        .context("status --json is JSON")?;
    let topo = ctl.ok(&["topology"]).await?;
    ensure!(
        names.iter().all(|n| topo.contains(n.as_str())),
        "topology lacks a member: {topo}"
    );
    ctl.ok(&["history"]).await?;
    serde_json::from_str::<serde_json::Value>(&ctl.ok(&["--json", "history"]).await?)
        .context("history --json is JSON")?;
    let config = ctl.ok(&["show-config"]).await?;
    ensure!(config.contains("lease_ttl"), "show-config: {config}");
    ctl.ok(&["sync", "status"]).await?;
    let info = ctl.ok(&["params", "info", "shared_buffers"]).await?;
    ensure!(info.contains("shared_buffers"), "params info: {info}");
    let bad = ctl
        .run(&["params", "validate", "shared_buffers", "lots"])
        .await?;
    ensure!(
        bad.code == 1,
        "an invalid value must exit 1, got {}",
        bad.code
    );

    // Configuration: --set, then $EDITOR.
    ctl.ok(&[
        "edit-config",
        "--set",
        "maximum_lag_on_failover_bytes=2097152",
        "--force",
    ])
    .await?;
    let config = ctl.ok(&["show-config"]).await?;
    ensure!(
        config.contains("2097152"),
        "the --set change is missing: {config}"
    );
    let dir = tempfile::tempdir()?;
    let editor = dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/2097152/3145728/' \"$1\"\n")?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755))?;
    }
    let editor_path = editor.to_string_lossy().into_owned();
    let o = ctl
        .run_with(
            &ctl.urls,
            &ctl.password,
            &[("EDITOR", &editor_path), ("VISUAL", &editor_path)],
            &["edit-config", "--force"],
        )
        .await?;
    ensure!(o.code == 0, "edit-config with $EDITOR exited {}", o.code);
    let config = ctl.ok(&["show-config"]).await?;
    ensure!(
        config.contains("3145728"),
        "the editor's change is missing: {config}"
    );

    // Refusals and exit codes; nothing changes.
    let o = ctl
        .run_with("http://127.0.0.1:1", &ctl.password, &[], &["list"])
        .await?;
    ensure!(
        o.code == 3,
        "no agent reachable must exit 3, got {}",
        o.code
    );
    let first_dead = format!("http://127.0.0.1:1,{}", ctl.urls);
    let o = ctl
        .run_with(&first_dead, &ctl.password, &[], &["list"])
        .await?;
    ensure!(
        o.code == 0,
        "a dead first URL must be skipped, got {}",
        o.code
    );
    let o = ctl
        .run_with(&ctl.urls, "wrong-password", &[], &["pause"])
        .await?;
    ensure!(o.code == 1, "a wrong password must exit 1, got {}", o.code);
    ensure!(
        !c.status().await?.paused,
        "a refused pause paused the cluster"
    );
    let o = ctl.run(&["no-such-command"]).await?;
    ensure!(o.code == 2, "bad usage must exit 2, got {}", o.code);
    let o = ctl
        .run(&["switchover", "--to", "no-such-node", "--force"])
        .await?;
    ensure!(
        o.code == 1,
        "switchover to an unknown member must exit 1, got {}",
        o.code
    );
    ensure!(
        c.primary().await? == primary,
        "a refused switchover changed the primary"
    );

    // Maintenance mode: no automatic action, but an operator's switchover to a member
    // they name goes ahead (as in Patroni); without a named candidate it is refused.
    ctl.ok(&["pause"]).await?;
    wait_paused(c, true).await?;
    let o = ctl.run(&["switchover", "--force"]).await?;
    ensure!(
        o.code == 1,
        "switchover without a candidate while paused must exit 1, got {}",
        o.code
    );
    ensure!(
        (o.stdout.clone() + &o.stderr).contains("specific candidate in a paused state"),
        "the refusal does not say why: {}{}",
        o.stdout,
        o.stderr
    );
    ensure!(
        c.primary().await? == primary,
        "a refused switchover changed the primary"
    );
    ensure!(
        c.names()
            .iter()
            .any(|n| c.log(n).contains("api refused a change of primary")),
        "the refusal is not in any ramd.log"
    );
    ctl.ok(&["switchover", "--to", &replica, "--force"]).await?;
    c.wait_writable_leader(&[&primary], 7_001, WAIT).await?;
    ensure!(
        c.primary().await? == replica,
        "the switchover in maintenance mode did not make {replica} primary"
    );
    ensure!(
        c.status().await?.paused,
        "the switchover resumed the cluster"
    );
    let history = c.history().await?;
    ensure!(
        history
            .iter()
            .any(|h| h.kind == "switchover" && h.node.as_deref() == Some(replica.as_str())),
        "the switchover in maintenance mode is not in the history: {history:?}"
    );
    // The former primary follows the new one, paused or not.
    c.wait_streaming(&primary, Duration::from_secs(90)).await?;
    // Back to the original primary for the rest of the test.
    ctl.ok(&["switchover", "--to", &primary, "--force"]).await?;
    c.wait_writable_leader(&[&replica], 7_002, WAIT).await?;
    ctl.ok(&["resume"]).await?;
    wait_paused(c, false).await?;

    // Node operations.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    ctl.ok(&["restart", &replica, "--at", &later, "--force"])
        .await?;
    ctl.ok(&["restart", &replica, "--cancel"]).await?;
    let o = ctl.run(&["restart", &replica, "--cancel"]).await?;
    ensure!(
        o.code == 1,
        "nothing left to cancel must exit 1, got {}",
        o.code
    );
    ctl.ok(&["reload", &replica]).await?;
    let pid = c.postmaster_pid(&replica)?;
    ctl.ok(&["restart", &replica, "--force"]).await?;
    ensure!(
        c.postmaster_pid(&replica)? != pid,
        "restart did not restart"
    );
    c.wait_streaming(&replica, Duration::from_secs(90)).await?;
    ctl.ok(&["reinit", &replica, "--force"]).await?;
    c.wait_streaming(&replica, Duration::from_secs(120)).await?;

    // Planned switchover to the replica.
    ctl.ok(&["switchover", "--to", &replica, "--force"]).await?;
    c.wait_for("the switchover", Duration::from_secs(60), || async {
        Ok((c.primary().await.ok().as_deref() == Some(replica.as_str())).then_some(()))
    })
    .await?;
    c.wait_for(
        "a write on the new primary",
        Duration::from_secs(60),
        || async { Ok(c.write(&replica, 5151).await.ok()) },
    )
    .await?;
    c.wait_streaming(&primary, Duration::from_secs(120)).await?;
    let history = ctl.ok(&["history"]).await?;
    ensure!(
        history.to_lowercase().contains("switchover"),
        "history lacks the switchover: {history}"
    );

    // Nothing to cancel: refused.
    let o = ctl.run(&["cancel-switchover"]).await?;
    ensure!(
        o.code == 1,
        "cancel-switchover with nothing pending must exit 1, got {}",
        o.code
    );

    // Manual failover back to the first primary (healthy cluster: a handover).
    ctl.ok(&["failover", "--to", &primary, "--force"]).await?;
    c.wait_for("the manual failover", Duration::from_secs(60), || async {
        Ok((c.primary().await.ok().as_deref() == Some(primary.as_str())).then_some(()))
    })
    .await?;
    c.wait_for(
        "a write after the failover",
        Duration::from_secs(60),
        || async { Ok(c.write(&primary, 5252).await.ok()) },
    )
    .await?;

    // Demote through the management API: the primary hands over to the best member.
    c.wait_streaming(&replica, Duration::from_secs(120)).await?;
    let (code, text) = c
        .api_request(
            &primary,
            reqwest::Method::POST,
            &format!("/api/v1/demote/{primary}"),
            None,
        )
        .await?;
    ensure!(code == 200, "demote: {code} {text}");
    c.wait_for(
        "a new primary after demote",
        Duration::from_secs(60),
        || async { Ok(c.primary().await.ok().filter(|p| *p != primary).map(|_| ())) },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramctrl_drives_a_real_cluster() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut c = RamdCluster::start(3, None).await?;
    let ctl = Ctl::for_cluster(&c)?;
    let r = body(&c, &ctl).await;
    if r.is_err() {
        c.keep_dir();
    }
    r
}
