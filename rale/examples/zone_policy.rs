//! An integrator's own failover policy, checked by the simulator's invariants.
//!
//! `ZonePolicy` wraps the default [`Decider`]: among candidates that are equally caught
//! up, it prefers those in the lost primary's availability zone (a cheaper, closer
//! primary for the clients that were there). It does so by raising their failover
//! priority in what the decider observes — it never touches WAL positions, the lease or
//! the synchronous set, so the decider's safety rules stay whole. The simulator attacks
//! it with random fault schedules in every replication mode and checks that no schedule
//! breaks split brain, lost writes, liveness or the promotion rules.
//!
//! ```text
//! cargo run -p rale --example zone_policy --features proptest [-- SCHEDULES [SEED]]
//! ```
//!
//! CI runs it as a test (`cargo test -p rale --features proptest --example zone_policy`).

use std::cell::Cell;
use std::collections::BTreeMap;

use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use rale::decide::{Decider, Decision, NodeIdentity, Observation, Policy};
use rale::sim::strategy::schedule;
use rale::sim::{Fault, Mode, Schedule, Sim, Target};
use rale::{ClusterState, Millis, NodeId};

/// Prefers failover candidates in the lost primary's zone, among equally caught-up ones.
struct ZonePolicy {
    inner: Decider,
    zones: BTreeMap<NodeId, String>,
}

impl ZonePolicy {
    /// Failover priorities as the decider should see them: `2p + 1` for a member with
    /// priority `p` in the primary's zone, `2p` elsewhere (order between priorities kept,
    /// zone breaks ties; `nofailover` and priority 0 untouched).
    fn zoned(&self, state: &ClusterState) -> Option<ClusterState> {
        let primary = state.lease.as_ref().and_then(|l| l.holder.as_ref())?;
        let zone = self.zones.get(primary)?;
        let mut s = state.clone();
        for m in s.members.values_mut() {
            if !m.tags.can_be_primary() {
                continue;
            }
            let same = self.zones.get(&m.node) == Some(zone);
            m.tags.failover_priority = Some(m.tags.priority() * 2 + u32::from(same));
        }
        Some(s)
    }
}

impl Policy for ZonePolicy {
    fn step(&mut self, obs: &Observation<'_>) -> Decision {
        match obs.cluster.and_then(|c| self.zoned(c)) {
            Some(state) => self.inner.step(&Observation {
                cluster: Some(&state),
                ..*obs
            }),
            None => self.inner.step(obs),
        }
    }

    fn set_identity(&mut self, me: NodeIdentity) {
        self.inner.set_identity(me);
    }
}

/// n1 and n2 in zone `a`, n3 (and n4, n5 where present) in zone `b`.
fn zones() -> BTreeMap<NodeId, String> {
    (1..=5)
        .map(|i| {
            let node = NodeId::new(format!("n{i}")).expect("valid name");
            (node, if i <= 2 { "a" } else { "b" }.to_string())
        })
        .collect()
}

fn factory() -> rale::sim::PolicyFactory {
    Box::new(|me: NodeIdentity, now: Millis| {
        Box::new(ZonePolicy {
            inner: Decider::new(me, now),
            zones: zones(),
        })
    })
}

/// What a run of the example found.
#[derive(Debug, Default)]
struct Summary {
    schedules: usize,
    failovers: usize,
}

/// Runs `per_mode` random schedules from `seed` in every mode; the first broken
/// invariant is an error with the (shrunk) schedule to replay.
fn run(per_mode: u32, seed: u64) -> Result<Summary, String> {
    let schedules = Cell::new(0);
    let failovers = Cell::new(0);
    for mode in Mode::ALL {
        let mut runner = TestRunner::new(Config {
            cases: per_mode,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(seed),
            ..Config::default()
        });
        let outcome = runner.run(&schedule(mode.fault_mix()), |s| {
            let report = Sim::new(mode.config(), s, factory())
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .run();
            if !report.ok() {
                return Err(TestCaseError::fail(report.explain(200)));
            }
            schedules.set(schedules.get() + 1);
            failovers.set(failovers.get() + report.failovers);
            Ok(())
        });
        match outcome {
            Ok(()) => {}
            Err(TestError::Fail(why, minimal)) => {
                return Err(format!(
                    "mode {mode}, seed {seed}: the zone policy broke an invariant\nschedule: {}\n{why}",
                    minimal.to_json()
                ));
            }
            Err(TestError::Abort(why)) => return Err(format!("mode {mode}: aborted: {why}")),
        }
    }
    Ok(Summary {
        schedules: schedules.get(),
        failovers: failovers.get(),
    })
}

/// The preference at work: n1 (zone a) is primary and crashes; n2 (zone a) and n3
/// (zone b) are equally caught up; n2 takes over.
fn demonstrate() -> Result<NodeId, String> {
    let cfg = Mode::AsyncFence.config();
    let schedule = Schedule::new(3).at(
        1_000,
        Fault::CrashNode {
            target: Target::Node(NodeId::new("n1").expect("valid name")),
            down_ms: 20_000,
        },
    );
    let report = Sim::new(cfg, schedule, factory())
        .map_err(|e| e.to_string())?
        .run();
    if !report.ok() {
        return Err(report.explain(200));
    }
    let text = report.trace.text(false);
    let line = text
        .lines()
        .find(|l| l.contains("[Failover]") && l.contains("is the best candidate"))
        .ok_or("no failover in the trace")?;
    let winner = line
        .split("): ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or("unreadable failover line")?;
    NodeId::new(winner).map_err(|e| e.to_string())
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let per_mode = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    let winner = demonstrate()?;
    println!("n1 (zone a) crashed; {winner} took over");
    let s = run(per_mode, seed)?;
    println!(
        "zone policy: {} schedules in {} modes from seed {seed}, {} failovers, every invariant held",
        s.schedules,
        Mode::ALL.len(),
        s.failovers
    );
    Ok(())
}

#[test]
fn the_zone_policy_keeps_every_invariant() {
    let seed = 20_261_206;
    let s = run(40, seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    assert!(s.schedules >= 40 * Mode::ALL.len(), "{s:?}");
}

#[test]
fn the_zone_policy_prefers_the_primarys_zone() {
    let winner = demonstrate().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(winner.as_str(), "n2", "n2 shares n1's zone");
}
