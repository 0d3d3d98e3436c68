//! `ramd` end to end: permanent replication slots (issue 19, item 1). A physical and a
//! logical slot declared in the dynamic configuration are created on the primary, again
//! on the new primary after a failover; a slot made by someone else (a backup tool's) is
//! never dropped; invalid slot settings are refused with 400 and change nothing.
//! Run: `cargo test -p rale-e2e --test ramd_slots -- --nocapture`

use std::time::Duration;

use anyhow::{Context, ensure};
use nix::sys::signal::Signal;
use rale_e2e::WAIT;
use rale_e2e::ramd_cluster::{RamdCluster, serial};
use reqwest::Method;
use serde_json::json;

const LOGICAL: &str = "[bootstrap.postgresql_parameters]\nwal_level = \"logical\"\n";

/// `name:type:plugin:database` of every non-temporary slot on `node`, sorted.
async fn slots(c: &RamdCluster, node: &str) -> anyhow::Result<String> {
    Ok(c.query_text(
        node,
        "SELECT coalesce(string_agg(slot_name || ':' || slot_type || ':' || coalesce(plugin, '') \
         || ':' || coalesce(database, ''), ',' ORDER BY slot_name), '') \
         FROM pg_replication_slots WHERE NOT temporary",
    )
    .await?
    .unwrap_or_default())
}

async fn wait_slots(c: &RamdCluster, node: &str, want: &[&str]) -> anyhow::Result<String> {
    c.wait_for(&format!("slots {want:?} on {node}"), WAIT, || async {
        let have = slots(c, node).await?;
        Ok(want
            .iter()
            .all(|w| have.split(',').any(|s| s == *w))
            .then_some(have))
    })
    .await
}

async fn body(c: &mut RamdCluster) -> anyhow::Result<()> {
    let primary = c.primary().await?;
    // A backup tool's slot, made behind RALE's back.
    c.sql(
        &primary,
        "SELECT pg_create_physical_replication_slot('barman', true)",
    )
    .await?;

    // Invalid settings: 400 with the reason, nothing applied.
    for (bad, why) in [
        (
            json!({"slots": {"Bad-Name": {"type": "physical"}}}),
            "invalid replication slot name",
        ),
        (
            json!({"slots": {"cdc": {"type": "logical", "plugin": "test_decoding"}}}),
            "needs both plugin and database",
        ),
        (json!({"ignore_slots": [{}]}), "gives no field"),
    ] {
        let (code, text) = c
            .api_request(&primary, Method::PATCH, "/config", Some(bad.clone()))
            .await?;
        ensure!(code == 400 && text.contains(why), "{bad}: {code} {text}");
    }
    let (_, config) = c
        .api_request(&primary, Method::GET, "/config", None)
        .await?;
    ensure!(
        config.contains("\"slots\":{}"),
        "a refused patch changed the configuration: {config}"
    );

    let permanent = json!({"slots": {
        "cdc": {"type": "logical", "plugin": "test_decoding", "database": "postgres"},
        "archive": {"type": "physical"}
    }});
    let (code, text) = c
        .api_request(&primary, Method::PATCH, "/config", Some(permanent))
        .await?;
    ensure!(code == 200, "PATCH slots: {code} {text}");
    let have = wait_slots(
        c,
        &primary,
        &["cdc:logical:test_decoding:postgres", "archive:physical::"],
    )
    .await?;
    eprintln!("slots on {primary}: {have}");
    ensure!(
        have.split(',').any(|s| s == "barman:physical::"),
        "the backup tool's slot was dropped: {have}"
    );

    // Failover: the new primary gets the permanent slots too.
    c.kill_agent(&primary, Signal::SIGKILL)?;
    c.kill_postmaster(&primary, Signal::SIGKILL).ok();
    let new = c
        .wait_for("a new primary", WAIT, || async {
            Ok(c.primary().await.ok().filter(|p| *p != primary))
        })
        .await?;
    let have = wait_slots(
        c,
        &new,
        &["cdc:logical:test_decoding:postgres", "archive:physical::"],
    )
    .await?;
    eprintln!("slots on the new primary {new}: {have}");
    // The logical slot decodes on the new primary.
    c.sql(&new, "CREATE TABLE IF NOT EXISTS slot_probe (id int)")
        .await?;
    c.sql(&new, "INSERT INTO slot_probe VALUES (1)").await?;
    let changes = c
        .query_text(
            &new,
            "SELECT count(*)::text FROM pg_logical_slot_peek_changes('cdc', NULL, NULL)",
        )
        .await?
        .context("no answer")?;
    ensure!(
        changes.parse::<u64>().unwrap_or(0) > 0,
        "the logical slot on {new} decodes nothing"
    );
    c.restart_agent(&primary)?;
    c.wait_streaming(&primary, Duration::from_secs(120)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_slots_survive_failover_and_foreign_slots_are_kept() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut c = RamdCluster::start(3, Some(LOGICAL)).await?;
    let r = body(&mut c).await;
    if r.is_err() {
        c.keep_dir();
    }
    r
}
