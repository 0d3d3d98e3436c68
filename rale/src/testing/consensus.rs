//! Conformance suite for [`Consensus`] implementations: the documented contract of the
//! trait, checked against a running cluster of the implementation under test.
//!
//! Provide a [`ConsensusCluster`] — handles on the members of a fresh cluster, and, where
//! the implementation can do it, ways to cut a member off and to restart one — then call
//! [`run_suite`]. It panics with the broken promise, like a test assertion, and returns
//! what it checked and what it had to skip.
//!
//! ```
//! # async fn demo() {
//! use rale::testing::consensus::{MemCluster, run_suite};
//! let report = run_suite(&MemCluster::new(3)).await;
//! assert!(report.passed.contains(&"minority_fails_fast"));
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::consensus::{Consensus, MemConsensus};
use crate::state::{Command, HistoryKind, Operation, Outcome};
use crate::types::{Epoch, Lsn, Millis, NodeId, Timeline};
use crate::{Error, Result};

/// Bound on anything the contract says happens "soon" (a subscriber catching up, a
/// minority noticing it is one): generous, so that a loaded machine does not fail it.
pub const SOON: Duration = Duration::from_secs(15);

/// A cluster of the implementation under test.
#[async_trait]
pub trait ConsensusCluster: Send + Sync {
    /// Handles on every member of a fresh cluster (empty state: no bootstrap, no lease).
    /// At least one; the suite uses three when there are.
    fn members(&self) -> Vec<Arc<dyn Consensus>>;

    /// Cuts member `i` off from the majority (`true`) or heals that (`false`) — by a
    /// partition, or by stopping the other members and starting them again. Handles from
    /// [`ConsensusCluster::members`] taken before may be stale afterwards. Returns
    /// `false` when the implementation cannot; the checks that need it are then skipped
    /// (and reported).
    async fn isolate(&self, i: usize, isolated: bool) -> bool {
        let _ = (i, isolated);
        false
    }

    /// Stops member `i` and starts it again from its durable state; `false` when not
    /// supported.
    async fn restart(&self, i: usize) -> bool {
        let _ = i;
        false
    }
}

/// What [`run_suite`] checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Checks that ran and held.
    pub passed: Vec<&'static str>,
    /// Checks the cluster could not run (no isolation, no restart, one member).
    pub skipped: Vec<&'static str>,
}

fn record(reason: &str) -> Command {
    Command {
        op: Operation::Record {
            kind: HistoryKind::Operation,
            node: None,
            actor: "conformance".into(),
            reason: reason.into(),
        },
        wall_ms: 1,
    }
}

fn node(name: &str) -> NodeId {
    NodeId::new(name).expect("a valid test name")
}

async fn ok<T>(what: &str, f: impl std::future::Future<Output = Result<T>>) -> T {
    match tokio::time::timeout(SOON, f).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("consensus conformance: {what} failed: {e}"),
        Err(_) => panic!("consensus conformance: {what} did not return within {SOON:?}"),
    }
}

async fn read_has(c: &dyn Consensus, reason: &str) -> bool {
    ok("read", c.read())
        .await
        .history
        .iter()
        .any(|h| h.reason == reason)
}

/// Runs every check against `cluster` (see the module documentation).
pub async fn run_suite(cluster: &dyn ConsensusCluster) -> Report {
    let mut report = Report::default();
    let members = cluster.members();
    assert!(!members.is_empty(), "consensus conformance: no member");
    let first = members[0].clone();
    let last = members[members.len() - 1].clone();

    // propose returns once applied: a read anywhere afterwards sees it (linearizable).
    let before = ok("read", first.read()).await.revision;
    let outcome = ok("propose", first.propose(record("conformance: one"))).await;
    assert!(outcome.is_applied(), "a Record must apply: {outcome:?}");
    for (i, m) in members.iter().enumerate() {
        assert!(
            read_has(m.as_ref(), "conformance: one").await,
            "member {i} does not read a command whose propose returned"
        );
        let rev = ok("read", m.read()).await.revision;
        assert!(
            rev > before,
            "member {i}: revision did not advance ({rev} ≤ {before})"
        );
    }
    report.passed.push("propose_then_read_everywhere");

    // Compare-and-set: conditions are checked at apply time, in log order.
    let claim = |n: &str| Command {
        op: Operation::ClaimBootstrap { node: node(n) },
        wall_ms: 1,
    };
    assert!(ok("propose", first.propose(claim("a"))).await.is_applied());
    let second = ok("propose", last.propose(claim("b"))).await;
    assert!(
        matches!(second, Outcome::Rejected(_)),
        "a second bootstrap claim must be rejected, got {second:?}"
    );
    let acquire = |n: &str, expected: u64| Command {
        op: Operation::AcquireLease {
            node: node(n),
            expected_epoch: Epoch(expected),
            expected_renewals: 0,
            holder_clock: Millis(1),
            timeline: Timeline(1),
            lsn: Lsn::ZERO,
            kind: HistoryKind::Failover,
            reason: "conformance".into(),
        },
        wall_ms: 1,
    };
    assert!(
        !ok("propose", first.propose(acquire("a", 7)))
            .await
            .is_applied(),
        "an acquisition with a stale epoch must be rejected"
    );
    assert!(
        ok("propose", last.propose(acquire("a", 0)))
            .await
            .is_applied()
    );
    let renew_b = Command {
        op: Operation::RenewLease {
            node: node("b"),
            epoch: Epoch(1),
            holder_clock: Millis(2),
        },
        wall_ms: 1,
    };
    assert!(
        !ok("propose", first.propose(renew_b)).await.is_applied(),
        "a renewal by a non-holder must be rejected"
    );
    let state = ok("read", last.read()).await;
    assert_eq!(
        state.holder(),
        Some(&node("a")),
        "the holder after the CAS sequence"
    );
    report.passed.push("compare_and_set");

    // propose_visible: the proposer's own subscription shows the write at once.
    let outcome = ok(
        "propose_visible",
        last.propose_visible(record("conformance: visible")),
    )
    .await;
    assert!(outcome.is_applied());
    let local = last.subscribe().borrow().clone();
    assert!(
        local
            .history
            .iter()
            .any(|h| h.reason == "conformance: visible"),
        "propose_visible returned before the proposer's subscription showed the write"
    );
    report.passed.push("propose_visible_reads_its_own_write");

    // subscribe yields every applied state, in order, on every member.
    let mut subs: Vec<_> = members.iter().map(|m| m.subscribe()).collect();
    let target = {
        for k in 0..5 {
            let c = &members[k % members.len()];
            ok(
                "propose",
                c.propose(record(&format!("conformance: stream {k}"))),
            )
            .await;
        }
        ok("read", first.read()).await.revision
    };
    for (i, rx) in subs.iter_mut().enumerate() {
        let mut last_seen = rx.borrow().revision;
        let deadline = tokio::time::Instant::now() + SOON;
        while last_seen < target {
            let changed = tokio::time::timeout_at(deadline, rx.changed()).await;
            assert!(
                matches!(changed, Ok(Ok(()))),
                "member {i}: subscription stopped at revision {last_seen} < {target}"
            );
            let rev = rx.borrow().revision;
            assert!(
                rev >= last_seen,
                "member {i}: subscription went back in time"
            );
            last_seen = rev;
        }
    }
    report.passed.push("subscribe_sees_every_applied_state");

    // Membership answers and refuses a removal of a non-member.
    let m = ok("membership", first.membership()).await;
    let unknown = node("conformance-nobody");
    assert!(
        !m.voters
            .iter()
            .chain(&m.learners)
            .any(|p| p.node == unknown),
        "a name never added is a member"
    );
    match tokio::time::timeout(SOON, first.remove_member(&unknown)).await {
        Ok(Err(_)) => {}
        Ok(Ok(())) => panic!("removing a member that does not exist must fail"),
        Err(_) => panic!("remove_member did not return within {SOON:?}"),
    }
    report.passed.push("membership_refuses_unknown_removal");

    // A member cut off from the majority fails fast with NoMajority, then recovers.
    if members.len() >= 3 && cluster.isolate(0, true).await {
        let deadline = tokio::time::Instant::now() + SOON;
        while first.has_majority() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            !first.has_majority(),
            "an isolated member still claims a majority after {SOON:?}"
        );
        match tokio::time::timeout(SOON, first.propose(record("conformance: minority"))).await {
            Ok(Err(Error::NoMajority(_) | Error::Timeout { .. })) => {}
            Ok(Err(e)) => panic!("an isolated member must answer NoMajority, got {e}"),
            Ok(Ok(o)) => panic!("an isolated member committed a proposal: {o:?}"),
            Err(_) => panic!("an isolated member blocked instead of failing"),
        }
        // Healed, it takes part again.
        assert!(cluster.isolate(0, false).await, "healing the isolation");
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            if let Ok(Ok(o)) =
                tokio::time::timeout(SOON, first.propose(record("conformance: healed"))).await
                && o.is_applied()
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "a healed member never took part again"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            !read_has(first.as_ref(), "conformance: minority").await,
            "a proposal refused on the minority was applied later"
        );
        report.passed.push("minority_fails_fast");
    } else {
        report.skipped.push("minority_fails_fast");
    }

    // A restarted member keeps everything committed.
    if members.len() >= 3 && cluster.restart(1).await {
        let after = cluster.members();
        ok(
            "propose",
            after[0].propose(record("conformance: after restart")),
        )
        .await;
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            if let Ok(Ok(s)) = tokio::time::timeout(SOON, after[1].read()).await
                && s.history.iter().any(|h| h.reason == "conformance: one")
                && s.history
                    .iter()
                    .any(|h| h.reason == "conformance: after restart")
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "a restarted member lost committed state or never caught up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        report.passed.push("restart_keeps_committed_state");
    } else {
        report.skipped.push("restart_keeps_committed_state");
    }
    report
}

/// [`MemConsensus`] as a [`ConsensusCluster`]: `n` handles on one shared state; a handle
/// is isolated with [`MemConsensus::set_connected`]; restart is not supported (nothing
/// is durable).
pub struct MemCluster {
    handles: Vec<MemConsensus>,
}

impl MemCluster {
    /// `n` handles (at least 1) on a fresh state.
    pub fn new(n: usize) -> Self {
        let first = MemConsensus::new();
        let mut handles = vec![first.clone()];
        for _ in 1..n.max(1) {
            handles.push(first.handle());
        }
        Self { handles }
    }
}

#[async_trait]
impl ConsensusCluster for MemCluster {
    fn members(&self) -> Vec<Arc<dyn Consensus>> {
        self.handles
            .iter()
            .map(|h| Arc::new(h.clone()) as Arc<dyn Consensus>)
            .collect()
    }

    async fn isolate(&self, i: usize, isolated: bool) -> bool {
        match self.handles.get(i) {
            Some(h) => {
                h.set_connected(!isolated);
                true
            }
            None => false,
        }
    }
}
