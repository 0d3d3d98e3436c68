//! `LocalPostgres` against the real PostgreSQL on this machine: a replica's copy of a
//! logical slot (issue 19, item 2; `docs/slots.md`). The slot state is copied from the
//! primary (restart), advanced on the standby — never past its replay position — and,
//! after the primary is lost and the replica promoted, decodes exactly the changes after
//! the advanced position. After a rewind no logical slot of the abandoned history is left.
//! Run: `cargo test -p rale-e2e --test local_logical_slots -- --nocapture`

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use rale::config::{SlotKind, SlotSpec};
use rale::pg::{SlotAdvance, SlotPlan, StopMode};
use rale::{Lsn, PostgresControl};
use rale_e2e::{TempCluster, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_logical_slot_is_advanced_and_decodes_after_promotion() -> anyhow::Result<()> {
    let cluster = TempCluster::new()?;
    let a = cluster.add_node("lslot-a")?;
    let b = cluster.add_node("lslot-b")?;
    let mut params = BTreeMap::new();
    params.insert("wal_level".to_string(), "logical".to_string());
    a.pg().bootstrap(&params).await.context("bootstrap a")?;
    a.pg().restart().await?;
    ensure!(
        a.query_scalar("SHOW wal_level").await?.as_deref() == Some("logical"),
        "wal_level"
    );
    let plan = SlotPlan {
        members: vec![b.id.slot_name()],
        permanent: vec![(
            "cdc".to_string(),
            SlotSpec {
                kind: SlotKind::Logical,
                plugin: Some("test_decoding".into()),
                database: Some("postgres".into()),
            },
        )],
        ..SlotPlan::default()
    };
    a.pg().ensure_slots(&plan).await?;
    b.pg().clone_from(&a.upstream()).await?;
    b.pg().start(Some(&a.upstream())).await?;
    b.wait_status("streaming", WAIT, |s| s.streaming).await?;

    a.execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10)")
        .await?;
    // The consumer reads (and confirms) rows 1..10.
    let consumed = a
        .query_scalar("SELECT count(*) FROM pg_logical_slot_get_changes('cdc', NULL, NULL)")
        .await?;
    ensure!(consumed.as_deref() != Some("0"), "{consumed:?}");
    let sa = a.status().await?;
    let confirmed = sa
        .logical_slots
        .iter()
        .find(|s| s.name == "cdc")
        .and_then(|s| s.confirmed_flush_lsn)
        .context("the primary's status shows the slot")?;

    // Copy: b restarts and loads it.
    let copied = b
        .pg()
        .copy_logical_slots(&a.upstream(), &["cdc".into(), "absent".into()])
        .await?;
    ensure!(copied == ["cdc"], "{copied:?}");
    let sb = b
        .wait_status("streaming with the copy", WAIT, |s| {
            s.streaming && s.logical_slots.iter().any(|l| l.name == "cdc")
        })
        .await?;
    ensure!(sb.hot_standby_feedback, "RALE's default: {sb:?}");
    let copy = sb
        .logical_slots
        .iter()
        .find(|l| l.name == "cdc")
        .context("copy")?;
    ensure!(
        copy.plugin == "test_decoding" && copy.database == "postgres",
        "{copy:?}"
    );
    ensure!(
        copy.confirmed_flush_lsn <= Some(confirmed),
        "{copy:?} vs {confirmed}"
    );
    // Through hot_standby_feedback the primary's physical slot of b holds the copy's
    // catalog_xmin.
    let held = a
        .wait_scalar(
            &format!(
                "SELECT (catalog_xmin IS NOT NULL)::text FROM pg_replication_slots \
                 WHERE slot_name = '{}'",
                b.id.slot_name()
            ),
            "true",
            WAIT,
        )
        .await;
    ensure!(
        held.is_ok(),
        "b's physical slot on a has no catalog_xmin: {held:?}"
    );

    // More changes, confirmed by the consumer; b advances to that position.
    a.execute("INSERT INTO t SELECT generate_series(11, 20)")
        .await?;
    a.query_scalar("SELECT count(*) FROM pg_logical_slot_get_changes('cdc', NULL, NULL)")
        .await?;
    let confirmed: Lsn = a
        .query_scalar(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'cdc'",
        )
        .await?
        .context("confirmed")?
        .parse()?;
    b.wait_status("replayed the confirmed position", WAIT, |s| {
        s.replay_lsn.is_some_and(|r| r >= confirmed)
    })
    .await?;
    let advance = |lsn: Lsn| {
        vec![SlotAdvance {
            name: "cdc".into(),
            database: "postgres".into(),
            lsn,
        }]
    };
    b.pg().advance_logical_slots(&advance(confirmed)).await?;
    let at = |s: &rale::status::PgStatus| {
        s.logical_slots
            .iter()
            .find(|l| l.name == "cdc")
            .and_then(|l| l.confirmed_flush_lsn)
    };
    let sb = b.status().await?;
    ensure!(
        at(&sb) == Some(confirmed),
        "advanced to {confirmed}: {sb:?}"
    );
    // Asked past the replay position, PostgreSQL stops at it.
    let far = Lsn(confirmed.0 + (1 << 32));
    b.pg().advance_logical_slots(&advance(far)).await?;
    let sb = b.status().await?;
    ensure!(
        at(&sb) <= sb.replay_lsn && at(&sb) < Some(far),
        "past the replay position: {sb:?}"
    );
    println!(
        "FIGURE copy advanced to {confirmed}; asked for {far}, stopped at {:?} (replay {:?})",
        at(&sb),
        sb.replay_lsn
    );
    // Decoding on a standby is refused on PostgreSQL 15.
    let decode = b
        .query_scalar("SELECT count(*) FROM pg_logical_slot_peek_changes('cdc', NULL, NULL)")
        .await;
    println!("FIGURE decoding on the standby: {decode:?}");

    // Changes the consumer has not confirmed; then the primary is lost and b promoted.
    a.execute("INSERT INTO t SELECT generate_series(21, 25)")
        .await?;
    let sa = a.status().await?;
    b.wait_status("replayed rows 21..25", WAIT, |s| {
        s.replay_lsn.is_some_and(|r| r >= sa.write_lsn)
    })
    .await?;
    a.pg().stop(StopMode::Immediate).await?;
    b.pg().follow(None).await?;
    b.pg().promote(WAIT).await?;
    let rows = b
        .query_scalar(
            "SELECT string_agg(substring(data from 'id\\[integer\\]:([0-9]+)'), ',') \
             FROM pg_logical_slot_get_changes('cdc', NULL, NULL) WHERE data LIKE 'table public.t:%'",
        )
        .await?;
    println!("FIGURE decoded on the promoted copy: {rows:?}");
    // The copy stands at the confirmed position (rows 1..20; the advance asked further
    // stopped at the replay position, before rows 21..25 were written): exactly rows
    // 21..25 remain.
    ensure!(
        rows.as_deref() == Some("21,22,23,24,25"),
        "the promoted copy decodes {rows:?}, expected 21..25"
    );

    // The old primary is rewound from b: its own (now abandoned) logical slot goes.
    a.pg().start(None).await?;
    a.pg().stop(StopMode::Fast).await?;
    let slot_dirs = || -> anyhow::Result<Vec<String>> {
        let mut names = std::fs::read_dir(a.data_dir().join("pg_replslot"))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>();
        names.sort();
        Ok(names)
    };
    let before = slot_dirs()?;
    ensure!(
        before.contains(&"cdc".to_string()),
        "before the rewind: {before:?}"
    );
    a.pg().rewind(&b.upstream()).await.context("rewind a")?;
    let left = slot_dirs()?;
    println!("FIGURE pg_replslot of the rewound node: before {before:?}, after {left:?}");
    // PostgreSQL 15's pg_rewind empties pg_replslot itself (measured here); the agent
    // removes any logical slot left after a rewind in any case.
    ensure!(
        !left.iter().any(|n| n == "cdc"),
        "after the rewind: {left:?}"
    );
    Ok(())
}
