//! Conformance suite for [`PostgresControl`] implementations: the documented contract of
//! the trait, checked on two servers of the implementation under test.
//!
//! Give [`run_suite`] two servers with empty data directories and how each is reached
//! ([`Upstream`]); it bootstraps the first, clones the second from it, streams, promotes,
//! rewinds and stops, and panics with the broken promise, like a test assertion.
//!
//! ```
//! # async fn demo() -> rale::Result<()> {
//! use std::sync::Arc;
//! use rale::pg::memory::MemPostgresWorld;
//! use rale::testing::postgres::{Pair, run_suite};
//! let world = MemPostgresWorld::default();
//! let pair = Pair::memory(&world)?;
//! run_suite(pair).await;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::pg::{PostgresControl, SlotPlan, StopMode, Upstream};
use crate::status::{DataDirState, PgStatus};
use crate::types::NodeId;

/// Bound on waiting for a server to reach a state (streaming after a start, …).
pub const SOON: Duration = Duration::from_secs(60);

/// Two servers with empty data directories, and how each is reached by the other.
pub struct Pair {
    /// The first server (bootstrapped by the suite).
    pub a: Arc<dyn PostgresControl>,
    /// How `b` reaches `a`.
    pub a_at: Upstream,
    /// The second server (cloned from `a`).
    pub b: Arc<dyn PostgresControl>,
    /// How `a` reaches `b`.
    pub b_at: Upstream,
}

impl Pair {
    /// Two in-memory servers `a` and `b` of `world` ([`crate::pg::memory`]).
    pub fn memory(world: &crate::pg::memory::MemPostgresWorld) -> crate::Result<Self> {
        let at = |n: &str| -> crate::Result<Upstream> {
            Ok(Upstream {
                node: NodeId::new(n)?,
                host: "memory".into(),
                port: 5432,
            })
        };
        Ok(Pair {
            a: Arc::new(world.server("a")?),
            a_at: at("a")?,
            b: Arc::new(world.server("b")?),
            b_at: at("b")?,
        })
    }
}

async fn status(name: &str, pg: &dyn PostgresControl) -> PgStatus {
    match tokio::time::timeout(SOON, pg.status()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => panic!("postgres conformance: status of {name} failed: {e}"),
        Err(_) => panic!("postgres conformance: status of {name} blocked for {SOON:?}"),
    }
}

async fn must<T>(what: &str, f: impl std::future::Future<Output = crate::Result<T>>) -> T {
    match tokio::time::timeout(SOON * 2, f).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("postgres conformance: {what} failed: {e}"),
        Err(_) => panic!("postgres conformance: {what} did not return"),
    }
}

async fn must_fail<T: std::fmt::Debug>(
    what: &str,
    f: impl std::future::Future<Output = crate::Result<T>>,
) {
    match tokio::time::timeout(SOON * 2, f).await {
        Ok(Err(_)) => {}
        Ok(Ok(v)) => panic!("postgres conformance: {what} must fail, returned {v:?}"),
        Err(_) => panic!("postgres conformance: {what} blocked instead of failing"),
    }
}

/// Polls `pg` until `ok` holds, at most [`SOON`].
async fn until(
    what: &str,
    name: &str,
    pg: &dyn PostgresControl,
    ok: impl Fn(&PgStatus) -> bool,
) -> PgStatus {
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let s = status(name, pg).await;
        if ok(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "postgres conformance: {name} never {what}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the suite on `pair` (see the module documentation). Leaves both servers stopped.
pub async fn run_suite(pair: Pair) {
    let Pair { a, a_at, b, b_at } = pair;
    let (a, b) = (a.as_ref(), b.as_ref());

    // Empty and stopped; nothing to start.
    for (n, pg) in [("a", a), ("b", b)] {
        let s = status(n, pg).await;
        assert!(
            !s.running,
            "{n}: an empty data directory reports a running server"
        );
        assert_eq!(
            s.data,
            DataDirState::Empty,
            "{n}: data directory not reported empty"
        );
    }
    must_fail("start of an empty data directory", a.start(None)).await;

    // Bootstrap: a running primary on a timeline, and refused a second time.
    let system_id = must("bootstrap", a.bootstrap(&BTreeMap::new())).await;
    let s = until("ran as a primary", "a", a, |s| s.running && s.reachable).await;
    assert!(!s.in_recovery, "a bootstrapped server must be a primary");
    assert_eq!(s.data, DataDirState::Initialized { system_id });
    assert!(s.timeline.0 >= 1, "a primary reports its timeline");
    must_fail("a second bootstrap", a.bootstrap(&BTreeMap::new())).await;
    // The primary keeps a physical slot per member (as the agent does).
    must(
        "ensure_slots",
        a.ensure_slots(&SlotPlan::members_only(vec![b_at.node.slot_name()])),
    )
    .await;

    // Parameters: set, visible, reset.
    let mut p = BTreeMap::new();
    p.insert(
        "synchronous_standby_names".to_string(),
        "ANY 1 (conformance_nobody)".to_string(),
    );
    must("set_parameters", a.set_parameters(&p)).await;
    until("showed the new synchronous_standby_names", "a", a, |s| {
        s.synchronous_standby_names.contains("conformance_nobody")
    })
    .await;
    must(
        "reset_parameters",
        a.reset_parameters(&["synchronous_standby_names".to_string()]),
    )
    .await;
    until("reset synchronous_standby_names", "a", a, |s| {
        !s.synchronous_standby_names.contains("conformance_nobody")
    })
    .await;

    // Stop is idempotent; start brings the primary back.
    must("stop", a.stop(StopMode::Fast)).await;
    must("a second stop", a.stop(StopMode::Fast)).await;
    assert!(
        !status("a", a).await.running,
        "a stopped server reports running"
    );
    must("start", a.start(None)).await;
    until("ran again as a primary", "a", a, |s| {
        s.running && s.reachable && !s.in_recovery
    })
    .await;

    // Clone: stopped, a standby of its source; then it streams.
    must("clone_from", b.clone_from(&a_at)).await;
    let s = status("b", b).await;
    assert!(!s.running, "clone_from must leave the server stopped");
    assert_eq!(
        s.data,
        DataDirState::Initialized { system_id },
        "a clone carries its source's system identifier"
    );
    must("start as a standby", b.start(Some(&a_at))).await;
    let s = until("streamed from a", "b", b, |s| s.running && s.streaming).await;
    assert!(s.in_recovery, "a started clone must be a standby");
    assert_eq!(
        s.upstream.as_ref(),
        Some(&a_at.node),
        "the standby's upstream"
    );

    // follow(None) detaches without a restart; follow(Some) streams again.
    must("follow(None)", b.follow(None)).await;
    let s = until("stopped streaming", "b", b, |s| !s.streaming).await;
    assert!(
        s.running && s.in_recovery,
        "a detached standby stays a running standby"
    );
    must("follow(a)", b.follow(Some(&a_at))).await;
    until("streamed again", "b", b, |s| s.streaming).await;

    // Promote: left recovery on a newer timeline.
    let old = status("a", a).await.timeline;
    must("stop a", a.stop(StopMode::Fast)).await;
    must("promote", b.promote(Duration::from_secs(30))).await;
    let s = until("left recovery", "b", b, |s| s.running && !s.in_recovery).await;
    assert!(s.timeline > old, "a promotion starts a newer timeline");
    must(
        "ensure_slots",
        b.ensure_slots(&SlotPlan::members_only(vec![a_at.node.slot_name()])),
    )
    .await;

    // Rewind the former primary onto the new one; it streams from it.
    must("rewind", a.rewind(&b_at)).await;
    assert!(
        !status("a", a).await.running,
        "rewind must leave the server stopped"
    );
    must("start the rewound server", a.start(Some(&b_at))).await;
    // Streaming begins at the fork (when the rewind found nothing to do): the standby is
    // on b's timeline once it received WAL past it.
    let b_timeline = status("b", b).await.timeline;
    let s = until(
        "streamed from b after the rewind, on its timeline",
        "a",
        a,
        |s| s.streaming && s.timeline == b_timeline,
    )
    .await;
    assert!(s.in_recovery);

    // A clone from a source that does not run fails and leaves the data in place.
    must("stop b", b.stop(StopMode::Fast)).await;
    must("stop a", a.stop(StopMode::Fast)).await;
    must_fail("clone_from a stopped source", a.clone_from(&b_at)).await;
    assert_eq!(
        status("a", a).await.data,
        DataDirState::Initialized { system_id },
        "a failed clone emptied the data directory"
    );
}
