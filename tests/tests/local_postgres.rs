//! End-to-end tests of `LocalPostgres` against the real PostgreSQL on this machine.
//! Run: `cargo test -p rale-e2e --test local_postgres -- --nocapture`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rale::pg::SlotPlan;
use rale::pg::StopMode;
use rale::status::DataDirState;
use rale::{PostgresControl, Role, Timeline};
use rale_e2e::{PgNode, TempCluster, WAIT};

fn slots(nodes: &[&PgNode]) -> SlotPlan {
    SlotPlan::members_only(nodes.iter().map(|n| n.id.slot_name()).collect())
}

async fn count_rows(node: &PgNode) -> anyhow::Result<Option<String>> {
    node.query_scalar("SELECT count(*) FROM ha_check").await
}

/// The full replication life cycle: bootstrap, two clones streaming, detach/re-attach,
/// failover with a validated promotion, rewind of the old primary, status everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_life_cycle() -> anyhow::Result<()> {
    let cluster = TempCluster::new()?;
    let a = cluster.add_node("node-a")?;
    let b = cluster.add_node("node-b")?;
    let c = cluster.add_node("node-c")?;

    // Bootstrap the primary.
    let system_id = a
        .pg()
        .bootstrap(&Default::default())
        .await
        .context("bootstrap a")?;
    let sa = a.status().await?;
    ensure!(sa.role() == Role::Primary, "a is primary: {sa:?}");
    ensure!(sa.data == DataDirState::Initialized { system_id }, "{sa:?}");
    ensure!(sa.timeline == Timeline(1), "{sa:?}");
    ensure!(sa.server_version_num >= 120000, "{sa:?}");
    a.pg().ensure_slots(&slots(&[&b, &c])).await?;
    let slot_list = a
        .query_scalar(
            "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots",
        )
        .await?;
    ensure!(
        slot_list.as_deref() == Some("node_b,node_c"),
        "{slot_list:?}"
    );

    // Clone two replicas: left stopped, same system.
    b.pg().clone_from(&a.upstream()).await.context("clone b")?;
    c.pg().clone_from(&a.upstream()).await.context("clone c")?;
    let sb = b.status().await?;
    ensure!(
        !sb.running && sb.data == DataDirState::Initialized { system_id },
        "{sb:?}"
    );
    b.pg().start(None).await.context("start b")?;
    c.pg().start(Some(&a.upstream())).await.context("start c")?;

    // Both stream; the primary sees them.
    for r in [&b, &c] {
        let s = r
            .wait_status("streaming from a", WAIT, |s| s.streaming && s.in_recovery)
            .await?;
        ensure!(s.upstream.as_ref() == Some(&a.id), "{s:?}");
        ensure!(
            s.role() == Role::Replica && s.timeline == Timeline(1),
            "{s:?}"
        );
    }
    let sa = a
        .wait_status("two streaming replicas", WAIT, |s| {
            s.replicas.iter().filter(|r| r.state == "streaming").count() == 2
        })
        .await?;
    let names: Vec<_> = sa
        .replicas
        .iter()
        .map(|r| r.application_name.as_str())
        .collect();
    ensure!(names == ["node-b", "node-c"], "{names:?}");

    // A write on the primary reaches both replicas.
    a.execute("CREATE TABLE ha_check (id int PRIMARY KEY, origin text); INSERT INTO ha_check VALUES (1, 'a')")
        .await?;
    for r in [&b, &c] {
        r.wait_scalar("SELECT count(*) FROM ha_check", "1", WAIT)
            .await?;
    }

    // Detach c: its receiver stops; it stays a replica and keeps its data.
    c.pg().follow(None).await.context("detach c")?;
    let sc = c.status().await?;
    ensure!(
        !sc.streaming && sc.upstream.is_none() && sc.in_recovery,
        "{sc:?}"
    );
    a.execute("INSERT INTO ha_check VALUES (2, 'a')").await?;
    b.wait_scalar("SELECT count(*) FROM ha_check", "2", WAIT)
        .await?;
    // b has row 2, so a sent it; c, detached, has not received it.
    ensure!(
        count_rows(&c).await?.as_deref() == Some("1"),
        "detached c must not receive"
    );
    // Re-attach: streams again and catches up.
    c.pg()
        .follow(Some(&a.upstream()))
        .await
        .context("re-attach c")?;
    c.wait_status("streaming again", WAIT, |s| s.streaming)
        .await?;
    c.wait_scalar("SELECT count(*) FROM ha_check", "2", WAIT)
        .await?;

    // Failover: a dies, b is promoted (validated), c follows b.
    a.pg().stop(StopMode::Immediate).await?;
    let sa = a.status().await?;
    ensure!(!sa.running && !sa.reachable, "{sa:?}");
    let promote_started = Instant::now();
    b.pg()
        .promote(Duration::from_secs(60))
        .await
        .context("promote b")?;
    let promote_ms = promote_started.elapsed().as_millis();
    println!("FIGURE promote (pg_promote -> validated write): {promote_ms} ms");
    let sb = b.status().await?;
    ensure!(
        sb.role() == Role::Primary && sb.upstream.is_none(),
        "{sb:?}"
    );
    ensure!(sb.timeline == Timeline(2), "{sb:?}");
    ensure!(!b.data_dir().join("standby.signal").exists());
    b.execute("INSERT INTO ha_check VALUES (3, 'b')").await?;
    b.pg().ensure_slots(&slots(&[&a, &c])).await?;
    c.pg()
        .follow(Some(&b.upstream()))
        .await
        .context("c follows b")?;
    let sc = c
        .wait_status("c streams from b on timeline 2", WAIT, |s| {
            s.streaming && s.timeline == Timeline(2)
        })
        .await?;
    ensure!(sc.upstream.as_ref() == Some(&b.id), "{sc:?}");
    c.wait_scalar("SELECT count(*) FROM ha_check", "3", WAIT)
        .await?;

    // Following is refused on a primary.
    ensure!(b.pg().follow(Some(&c.upstream())).await.is_err());

    // Rewind the old primary from b and start it as b's standby.
    let rewind_started = Instant::now();
    a.pg()
        .rewind(&b.upstream())
        .await
        .context("rewind a from b")?;
    println!("FIGURE rewind: {} ms", rewind_started.elapsed().as_millis());
    let sa = a.status().await?;
    ensure!(
        !sa.running && sa.data == DataDirState::Initialized { system_id },
        "{sa:?}"
    );
    a.pg().start(None).await.context("start rewound a")?;
    let sa = a
        .wait_status("a streams from b", WAIT, |s| s.streaming && s.in_recovery)
        .await?;
    ensure!(sa.upstream.as_ref() == Some(&b.id), "{sa:?}");
    b.execute("INSERT INTO ha_check VALUES (4, 'b')").await?;
    a.wait_scalar("SELECT count(*) FROM ha_check", "4", WAIT)
        .await?;
    let sa = a.status().await?;
    ensure!(sa.timeline == Timeline(2), "{sa:?}");
    let sb = b
        .wait_status("b sees a and c", WAIT, |s| {
            s.replicas.iter().filter(|r| r.state == "streaming").count() == 2
        })
        .await?;
    ensure!(
        sb.replicas.iter().any(|r| r.application_name == "node-a"),
        "{sb:?}"
    );

    // A status round trip on a running node (cached connection).
    let t = Instant::now();
    for _ in 0..20 {
        b.status().await?;
    }
    println!(
        "FIGURE status() on a running primary: {} us each (mean of 20)",
        t.elapsed().as_micros() / 20
    );
    Ok(())
}

/// When `pg_rewind` cannot work (here: the source is another database system), it fails
/// with its own message and a fresh clone is the fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_is_the_fallback_when_rewind_fails() -> anyhow::Result<()> {
    let cluster = TempCluster::new()?;
    let x = cluster.add_node("x")?;
    let y = cluster.add_node("y")?;
    let x_id = x.pg().bootstrap(&Default::default()).await?;
    let y_id = y.pg().bootstrap(&Default::default()).await?;
    ensure!(x_id != y_id);
    x.execute("CREATE TABLE ha_check (id int); INSERT INTO ha_check VALUES (1)")
        .await?;
    y.pg().stop(StopMode::Fast).await?;

    let err = y
        .pg()
        .rewind(&x.upstream())
        .await
        .err()
        .context("rewind must fail")?;
    let text = err.to_string();
    println!("rewind error (expected): {text}");
    ensure!(text.contains("pg_rewind"), "{text}");
    // Never left as a primary after a failed rewind.
    ensure!(y.data_dir().join("standby.signal").exists());

    let clone_started = Instant::now();
    y.pg().clone_from(&x.upstream()).await?;
    println!(
        "FIGURE clone of a fresh cluster: {} ms",
        clone_started.elapsed().as_millis()
    );
    ensure!(y.status().await?.data == DataDirState::Initialized { system_id: x_id });
    x.pg()
        .ensure_slots(&SlotPlan::members_only(vec![y.id.slot_name()]))
        .await?;
    y.pg().start(None).await?;
    y.wait_status("y streams from x", WAIT, |s| s.streaming)
        .await?;
    y.wait_scalar("SELECT count(*) FROM ha_check", "1", WAIT)
        .await?;
    // Slots: a removed member's inactive slot is dropped; an active one, and one that
    // RALE did not make, are kept.
    x.pg()
        .ensure_slots(&SlotPlan::members_only(vec!["spare".to_string()]))
        .await?;
    x.query_scalar("SELECT pg_create_physical_replication_slot('foreign_tool', true)::text")
        .await?;
    x.pg()
        .ensure_slots(&SlotPlan {
            removed: vec!["spare".into(), y.id.slot_name()],
            ..SlotPlan::default()
        })
        .await?;
    let left = x
        .query_scalar(
            "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots",
        )
        .await?;
    ensure!(left.as_deref() == Some("foreign_tool,y"), "{left:?}");
    Ok(())
}

/// `set_parameters` reloads what it can and says what needs a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_reload_or_wait_for_restart() -> anyhow::Result<()> {
    let cluster = TempCluster::new()?;
    let n = cluster.add_node("p1")?;
    n.pg().bootstrap(&Default::default()).await?;
    ensure!(!n.status().await?.pending_restart);

    let mut params = BTreeMap::new();
    params.insert("max_connections".to_string(), "123".to_string());
    params.insert("work_mem".to_string(), "7MB".to_string());
    let report = n.pg().set_parameters(&params).await?;
    ensure!(report.pending_restart == ["max_connections"], "{report:?}");
    ensure!(report.reloaded == ["work_mem"], "{report:?}");
    n.wait_scalar("SHOW work_mem", "7MB", WAIT).await?;
    ensure!(n.query_scalar("SHOW max_connections").await?.as_deref() == Some("100"));
    ensure!(n.status().await?.pending_restart);

    n.pg().restart().await?;
    ensure!(n.query_scalar("SHOW max_connections").await?.as_deref() == Some("123"));
    ensure!(!n.status().await?.pending_restart);

    let mut bad = BTreeMap::new();
    bad.insert("work_mem; DROP TABLE x".to_string(), "1".to_string());
    ensure!(n.pg().set_parameters(&bad).await.is_err());
    let mut bad_value = BTreeMap::new();
    bad_value.insert("work_mem".to_string(), "lots".to_string());
    ensure!(n.pg().set_parameters(&bad_value).await.is_err());
    Ok(())
}

/// Status of empty and stopped nodes: no error, no connection attempt, quick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_empty_and_stopped_nodes() -> anyhow::Result<()> {
    let cluster = TempCluster::new()?;
    let n = cluster.add_node("s1")?;
    let s = n.status().await?;
    ensure!(
        s.data == DataDirState::Empty && !s.running && !s.reachable,
        "{s:?}"
    );
    ensure!(
        n.pg().start(None).await.is_err(),
        "starting an empty data dir must fail"
    );

    let system_id = n.pg().bootstrap(&Default::default()).await?;
    ensure!(
        n.pg().bootstrap(&Default::default()).await.is_err(),
        "bootstrap twice must fail"
    );
    n.pg().stop(StopMode::Fast).await?;
    n.pg()
        .stop(StopMode::Fast)
        .await
        .context("stopping a stopped server succeeds")?;
    let t = Instant::now();
    let s = n.status().await?;
    let elapsed = t.elapsed();
    println!(
        "FIGURE status() of a stopped node: {} us",
        elapsed.as_micros()
    );
    ensure!(!s.running && !s.reachable, "{s:?}");
    ensure!(s.data == DataDirState::Initialized { system_id }, "{s:?}");
    ensure!(s.role() == Role::Unknown);
    ensure!(
        elapsed <= n.pg().config().status_timeout * 5,
        "status of a stopped node took {elapsed:?}"
    );

    // Start again as a primary: same system, back to reachable.
    n.pg().start(None).await?;
    let s = n.status().await?;
    ensure!(s.reachable && s.role() == Role::Primary, "{s:?}");

    // A hung postmaster (SIGSTOP: it accepts no new connection): a fresh LocalPostgres
    // (no cached connection) reports it running but unreachable, within its timeout.
    let fresh = cluster.add_node_with(n.pg().config().clone())?;
    let pid = std::fs::read_to_string(n.data_dir().join("postmaster.pid"))?
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
        .context("postmaster pid")?;
    let pid = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP)?;
    let t = Instant::now();
    let hung = fresh.status().await;
    let elapsed = t.elapsed();
    // Resume before any assertion, so cleanup can stop it.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT)?;
    let hung = hung?;
    println!(
        "FIGURE status() of a hung postmaster: {} ms",
        elapsed.as_millis()
    );
    ensure!(hung.running && !hung.reachable, "{hung:?}");
    ensure!(
        elapsed <= fresh.pg().config().status_timeout * 5,
        "status of a hung server took {elapsed:?}"
    );
    let s = fresh
        .wait_status("reachable again", WAIT, |s| s.reachable)
        .await?;
    ensure!(s.role() == Role::Primary, "{s:?}");
    Ok(())
}

/// `LocalPostgres` passes the `PostgresControl` conformance suite of `rale::testing` on
/// real PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_postgres_passes_the_conformance_suite() -> anyhow::Result<()> {
    let cluster = TempCluster::new()?;
    let a = cluster.add_node("suite-a")?;
    let b = cluster.add_node("suite-b")?;
    rale::testing::postgres::run_suite(rale::testing::postgres::Pair {
        a: a.pg_arc(),
        a_at: a.upstream(),
        b: b.pg_arc(),
        b_at: b.upstream(),
    })
    .await;
    Ok(())
}
