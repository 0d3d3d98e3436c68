//! `ramd` end to end on PostgreSQL 15: replication slots shown with the WAL they retain
//! (issue 19, item 1). An inactive physical slot made behind RALE's back holds WAL while
//! the primary writes and switches segments; `GET /api/v1/cluster/status` on the
//! primary and `ramctrl slots` show it (foreign, non-zero retained WAL) beside the
//! replica's member slot, and once `slots_max_retained_wal_bytes` is set below what it
//! holds, it is flagged and the primary's agent logs a warning naming it.
//! Run: `cargo test -p rale-e2e --test ramd_slot_retention -- --nocapture`

use anyhow::{Context, ensure};
use rale_e2e::WAIT;
use rale_e2e::ctl::Ctl;
use rale_e2e::ramd_cluster::{ClusterOptions, RamdCluster, serial};
use ramd_ref::api::types::{SlotManagement, SlotsView};
use reqwest::Method;
use serde_json::json;

/// Collect workload (and with it the slots) every second instead of every 15 s.
const FAST_WORKLOAD: &str =
    "[metrics]\nworkload = true\nworkload_interval = \"1s\"\nworkload_timeout = \"900ms\"\n";

/// The slots the primary's agent shows, once `ok` accepts them (bounded by `WAIT`).
async fn wait_view(
    c: &RamdCluster,
    primary: &str,
    what: &str,
    ok: impl Fn(&SlotsView) -> bool,
) -> anyhow::Result<SlotsView> {
    c.wait_for(what, WAIT, || async {
        let s = c.status_from(primary).await?;
        Ok(s.slots.filter(|v| ok(v)))
    })
    .await
}

async fn body(c: &mut RamdCluster) -> anyhow::Result<()> {
    let primary = c.primary().await?;
    let replica = c
        .names()
        .into_iter()
        .find(|n| *n != primary)
        .context("no replica")?;
    // A slot nobody consumes, reserving WAL from now on.
    c.sql(
        &primary,
        "SELECT pg_create_physical_replication_slot('held', true)",
    )
    .await?;
    // Three segments of WAL it keeps (bounded: 3 writes, 3 switches).
    for id in 0..3 {
        c.write(&primary, 1_000 + id).await?;
        c.sql(&primary, "SELECT pg_switch_wal()").await?;
    }
    let view = wait_view(c, &primary, "slot held retaining WAL", |v| {
        v.slots
            .iter()
            .any(|s| s.name == "held" && s.retained_wal_bytes >= 2 * 16 * 1024 * 1024)
    })
    .await?;
    eprintln!("{}", serde_json::to_string_pretty(&view)?);
    ensure!(view.node == primary, "read on {} not {primary}", view.node);
    ensure!(view.max_retained_wal_bytes.is_none(), "no limit by default");
    let held = view
        .slots
        .iter()
        .find(|s| s.name == "held")
        .context("held")?;
    ensure!(
        held.slot_type == "physical"
            && !held.active
            && held.managed == SlotManagement::Foreign
            && !held.over_limit,
        "{held:?}"
    );
    let member_slot = replica.to_lowercase().replace(['-', '.'], "_");
    ensure!(
        view.slots
            .iter()
            .any(|s| s.name == member_slot && s.managed == SlotManagement::Member),
        "the replica's slot {member_slot} is not shown as a member slot: {view:?}"
    );
    // Replicas' agents do not show slots: the view names the primary's.
    let from_replica = c.status_from(&replica).await?;
    ensure!(
        from_replica.slots.is_none(),
        "{replica} showed slots: {:?}",
        from_replica.slots
    );

    // The limit: 0 is refused; 1 MiB flags `held`.
    let (code, text) = c
        .api_request(
            &primary,
            Method::PATCH,
            "/config",
            Some(json!({"slots_max_retained_wal_bytes": 0})),
        )
        .await?;
    ensure!(
        code == 400 && text.contains("slots_max_retained_wal_bytes must be positive"),
        "{code} {text}"
    );
    let (code, text) = c
        .api_request(
            &primary,
            Method::PATCH,
            "/config",
            Some(json!({"slots_max_retained_wal_bytes": 1_048_576})),
        )
        .await?;
    ensure!(
        code == 200,
        "PATCH slots_max_retained_wal_bytes: {code} {text}"
    );
    let view = wait_view(c, &primary, "slot held flagged", |v| {
        v.max_retained_wal_bytes == Some(1_048_576)
            && v.slots.iter().any(|s| s.name == "held" && s.over_limit)
    })
    .await?;
    ensure!(
        view.slots
            .iter()
            .filter(|s| s.over_limit)
            .all(|s| s.retained_wal_bytes > 1_048_576),
        "{view:?}"
    );
    c.wait_for(
        "the retention warning in the primary's log",
        WAIT,
        || async {
            Ok(c.log(&primary)
                .lines()
                .any(|l| l.contains("replication slot held retains") && l.contains("1048576"))
                .then_some(()))
        },
    )
    .await?;

    // ramctrl, whichever agent answers first: it asks the primary.
    let ctl = Ctl::for_cluster(c)?;
    let out = ctl.ok(&["slots"]).await?;
    let row = out
        .lines()
        .find(|l| l.starts_with("| held "))
        .with_context(|| format!("no row for held: {out}"))?;
    ensure!(
        row.contains("physical") && row.contains("foreign") && row.contains("OVER LIMIT"),
        "{row}"
    );
    ensure!(out.contains(&format!("| {member_slot} ")), "{out}");
    let json_out = ctl.ok(&["--json", "slots"]).await?;
    let parsed: SlotsView = serde_json::from_str(&json_out).context("ramctrl --json slots")?;
    ensure!(
        parsed
            .slots
            .iter()
            .any(|s| s.name == "held" && s.over_limit),
        "{parsed:?}"
    );

    // Dropped by its owner: no longer shown.
    c.sql(&primary, "SELECT pg_drop_replication_slot('held')")
        .await?;
    wait_view(c, &primary, "slot held gone", |v| {
        v.slots.iter().all(|s| s.name != "held")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_show_retained_wal_and_the_limit_flags_them() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut c = RamdCluster::start_opts(ClusterOptions {
        node_toml: Some(FAST_WORKLOAD.into()),
        ..ClusterOptions::new(2)
    })
    .await?;
    let r = body(&mut c).await;
    if r.is_err() {
        c.keep_dir();
    }
    r
}
