//! The harness must be able to fail: deliberately broken policies, each wrapping the real
//! `Decider`, must be caught — by a hand-made schedule and within a bounded number of
//! random schedules from a fixed seed — while the real `Decider` passes the same
//! hand-made schedule.
//!
//! Run: `cargo test -p rale --test sim_broken`

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngSeed, TestRunner};
use rale::decide::{
    Action, Decider, Decision, DecisionKind, LeaseHold, Observation, PgAction, Policy,
};
use rale::sim::strategy::{FaultMix, schedule};
use rale::sim::{Fault, Invariant, PolicyFactory, Report, Schedule, Sim, SimConfig, Target};
use rale::state::{ClusterState, HistoryKind, Operation};
use rale::{DynamicConfig, Lsn, Millis, NodeId, Role, Tags};
use rale_sync::SyncMode;

/// Random schedules tried before giving up on finding a violation.
const SEARCH_MAX: usize = 300;

fn run(cfg: &SimConfig, schedule: Schedule, factory: PolicyFactory) -> Report {
    Sim::new(cfg.clone(), schedule, factory)
        .expect("valid simulation")
        .run()
}

fn real() -> PolicyFactory {
    rale::sim::decider_factory()
}

/// Asserts the broken policy breaks `invariant` on `schedule` and the real decider does not.
fn caught(
    cfg: &SimConfig,
    schedule: Schedule,
    broken: fn() -> PolicyFactory,
    invariant: Invariant,
) {
    let bad = run(cfg, schedule.clone(), broken());
    assert!(
        bad.violated(invariant),
        "broken policy not caught ({invariant}):\n{}",
        bad.explain(300)
    );
    let good = run(cfg, schedule, real());
    assert!(
        good.ok(),
        "the real decider fails the same schedule:\n{}",
        good.explain(300)
    );
}

/// Runs up to `SEARCH_MAX` random schedules (fixed seed) and returns how many it took to
/// break `invariant`.
fn search(
    cfg: &SimConfig,
    mix: FaultMix,
    broken: fn() -> PolicyFactory,
    invariant: Invariant,
) -> usize {
    let mut runner = TestRunner::new(Config {
        rng_seed: RngSeed::Fixed(7),
        ..Config::default()
    });
    let strategy = schedule(mix);
    for k in 1..=SEARCH_MAX {
        let s = strategy.new_tree(&mut runner).expect("schedule").current();
        if run(cfg, s, broken()).violated(invariant) {
            return k;
        }
    }
    panic!("{invariant} not found within {SEARCH_MAX} random schedules");
}

fn mix(cfg: &SimConfig) -> FaultMix {
    FaultMix::new(
        cfg.nodes.iter().map(|n| n.name.clone()).collect(),
        cfg.dynamic.clock_drift_ppm,
    )
}

fn holder_is_me(obs: &Observation<'_>, me: &NodeId) -> Option<bool> {
    obs.cluster.map(|c| c.holder() == Some(me))
}

/// (a) No fencing: drops its own Stop actions while it holds the lease and always
/// acknowledges commits.
struct NoFencing {
    inner: Decider,
    holds: bool,
}

impl Policy for NoFencing {
    fn step(&mut self, obs: &Observation<'_>) -> Decision {
        let me = self.inner.identity().node.clone();
        self.holds = holder_is_me(obs, &me).unwrap_or(self.holds);
        let mut d = self.inner.step(obs);
        if self.holds || obs.pg.role() == Role::Primary {
            d.actions.retain(|a| {
                !matches!(
                    a,
                    Action::Pg {
                        action: PgAction::Stop { .. }
                    }
                )
            });
        }
        always_open(&mut d);
        d
    }
}

/// The broken fence of (a) and (d): open whatever the lease.
fn always_open(d: &mut Decision) {
    let epoch = d.lease.map(|l| l.epoch).unwrap_or_default();
    d.lease = Some(LeaseHold {
        epoch,
        deadline: Millis(u64::MAX),
    });
}

fn no_fencing() -> PolicyFactory {
    Box::new(|me, now| {
        Box::new(NoFencing {
            inner: Decider::new(me, now),
            holds: false,
        })
    })
}

/// (b) Promote the most lagging: inverts every member's WAL positions in what it
/// observes, so the ranking runs backwards.
struct PromoteLagging(Decider);

fn invert(l: Lsn) -> Lsn {
    Lsn((1u64 << 40).saturating_sub(l.0))
}

impl Policy for PromoteLagging {
    fn step(&mut self, obs: &Observation<'_>) -> Decision {
        let Some(state) = obs.cluster else {
            return self.0.step(obs);
        };
        let mut s: ClusterState = state.clone();
        for m in s.members.values_mut() {
            m.lsn = invert(m.lsn);
            m.receive_lsn = m.receive_lsn.map(invert);
            m.replay_lsn = m.replay_lsn.map(invert);
            if let Some(d) = &mut m.detached {
                d.lsn = invert(d.lsn);
            }
        }
        self.0.step(&Observation {
            cluster: Some(&s),
            ..*obs
        })
    }
}

fn promote_lagging() -> PolicyFactory {
    Box::new(|me, now| Box::new(PromoteLagging(Decider::new(me, now))))
}

/// (c) Ignore tags: strips `nofailover` and priorities from the members it observes.
struct IgnoreTags(Decider);

impl Policy for IgnoreTags {
    fn step(&mut self, obs: &Observation<'_>) -> Decision {
        let Some(state) = obs.cluster else {
            return self.0.step(obs);
        };
        let mut s = state.clone();
        for m in s.members.values_mut() {
            m.tags = Tags::default();
        }
        self.0.step(&Observation {
            cluster: Some(&s),
            ..*obs
        })
    }
}

fn ignore_tags() -> PolicyFactory {
    Box::new(|me, now| Box::new(IgnoreTags(Decider::new(me, now))))
}

/// (d) Acknowledge after the lease: the commit fence never closes.
struct FenceAlwaysOpen(Decider);

impl Policy for FenceAlwaysOpen {
    fn step(&mut self, obs: &Observation<'_>) -> Decision {
        let mut d = self.0.step(obs);
        always_open(&mut d);
        d
    }
}

fn fence_always_open() -> PolicyFactory {
    Box::new(|me, now| Box::new(FenceAlwaysOpen(Decider::new(me, now))))
}

/// (e) Skip the detach quorum: whenever the real decider waits before a failover, take
/// the lease at once instead.
struct SkipDetach(Decider);

impl Policy for SkipDetach {
    fn step(&mut self, obs: &Observation<'_>) -> Decision {
        let mut d = self.0.step(obs);
        if d.kind != DecisionKind::FailoverBlocked {
            return d;
        }
        let Some(state) = obs.cluster else {
            return d;
        };
        if obs.pg.role() != Role::Replica {
            return d;
        }
        d.actions.push(Action::Propose {
            op: Operation::AcquireLease {
                node: self.0.identity().node.clone(),
                expected_epoch: state.epoch(),
                expected_renewals: state.lease.as_ref().map(|l| l.renewals).unwrap_or(0),
                holder_clock: obs.now,
                timeline: obs.pg.timeline,
                lsn: obs.pg.wal_position(),
                kind: HistoryKind::Failover,
                reason: "broken: no detach quorum".into(),
            },
        });
        d
    }
}

fn skip_detach() -> PolicyFactory {
    Box::new(|me, now| Box::new(SkipDetach(Decider::new(me, now))))
}

fn isolate_primary(s: Schedule, at_ms: u64, duration_ms: u64) -> Schedule {
    s.at(
        at_ms,
        Fault::CutLink {
            a: Target::Primary,
            b: Target::Replica(0),
            duration_ms,
        },
    )
    .at(
        at_ms,
        Fault::CutLink {
            a: Target::Primary,
            b: Target::Replica(1),
            duration_ms,
        },
    )
}

#[test]
fn a_no_fencing_is_split_brain_under_partition() {
    let cfg = SimConfig::new(
        3,
        DynamicConfig {
            fence: true,
            ..DynamicConfig::default()
        },
    );
    caught(
        &cfg,
        isolate_primary(Schedule::new(11), 1_000, 6_000),
        no_fencing,
        Invariant::SplitBrain,
    );
    let k = search(&cfg, mix(&cfg), no_fencing, Invariant::SplitBrain);
    println!("no fencing: split brain found after {k} random schedules");
}

fn lag_config() -> SimConfig {
    let d = DynamicConfig {
        maximum_lag_on_failover_bytes: Some(256 * 1024),
        ..DynamicConfig::default()
    };
    SimConfig::new(3, d)
}

#[test]
fn b_promoting_the_most_lagging_is_caught() {
    let cfg = lag_config();
    // One replica is cut off from the primary for 2 s (less than `member_ttl`, so it
    // stays a streaming-capable replica), then the primary's host dies.
    let s = Schedule::new(12)
        .at(
            0,
            Fault::CutLink {
                a: Target::Primary,
                b: Target::Replica(1),
                duration_ms: 2_000,
            },
        )
        .at(
            1_900,
            Fault::CrashNode {
                target: Target::Primary,
                down_ms: 8_000,
            },
        );
    caught(&cfg, s, promote_lagging, Invariant::BadPromotion);
    let k = search(&cfg, mix(&cfg), promote_lagging, Invariant::BadPromotion);
    println!("promote most lagging: found after {k} random schedules");
}

fn tagged_config() -> SimConfig {
    let nofailover = Tags {
        nofailover: true,
        ..Tags::default()
    };
    SimConfig::new(
        3,
        DynamicConfig {
            fence: true,
            ..DynamicConfig::default()
        },
    )
    .with_tags("n2", nofailover.clone())
    .with_tags("n3", nofailover)
}

#[test]
fn c_ignoring_tags_promotes_nofailover() {
    let cfg = tagged_config();
    // Finding F2: the real decider lets a nofailover member win the bootstrap; pick the
    // first seed whose bootstrap n1 wins, so that only failovers are judged here.
    let seed = (1..100)
        .find(|seed| run(&cfg, Schedule::new(*seed), real()).ok())
        .expect("some seed lets n1 bootstrap");
    let s = Schedule::new(seed).at(
        1_000,
        Fault::CrashNode {
            target: Target::Primary,
            down_ms: 5_000,
        },
    );
    caught(&cfg, s, ignore_tags, Invariant::BadPromotion);
}

#[test]
fn d_fence_open_after_the_lease_is_split_brain_when_the_loop_stalls() {
    let cfg = SimConfig::new(
        3,
        DynamicConfig {
            fence: true,
            ..DynamicConfig::default()
        },
    );
    let s = Schedule::new(14).at(
        1_000,
        Fault::StallLoop {
            target: Target::Primary,
            stalled_ms: 5_000,
        },
    );
    caught(&cfg, s, fence_always_open, Invariant::SplitBrain);
    let k = search(&cfg, mix(&cfg), fence_always_open, Invariant::SplitBrain);
    println!("fence always open: found after {k} random schedules");
}

fn sync_config() -> SimConfig {
    let mut d = DynamicConfig {
        fence: true,
        ..DynamicConfig::default()
    };
    d.synchronous.mode = SyncMode::On;
    d.synchronous.node_count = 1;
    SimConfig::new(3, d)
}

#[test]
fn e_skipping_the_detach_quorum_loses_writes_in_sync_mode() {
    let cfg = sync_config();
    // One replica is cut from the primary and lags; the primary dies while the other
    // replica's loop is stalled, so it cannot detach and report its position for 3 s.
    // A sync-aware decider waits for it; the broken one promotes whoever sees the lease
    // expire first.
    for lagging in [0, 1] {
        let other = 1 - lagging;
        let s = Schedule::new(15)
            .at(
                0,
                Fault::CutLink {
                    a: Target::Primary,
                    b: Target::Replica(lagging),
                    duration_ms: 6_000,
                },
            )
            .at(
                1_500,
                Fault::StallLoop {
                    target: Target::Replica(other),
                    stalled_ms: 3_000,
                },
            )
            .at(
                1_500,
                Fault::CrashNode {
                    target: Target::Primary,
                    down_ms: 6_000,
                },
            );
        let good = run(&cfg, s.clone(), real());
        assert!(
            good.ok(),
            "the real decider fails the schedule:\n{}",
            good.explain(300)
        );
        let bad = run(&cfg, s, skip_detach());
        if bad.violated(Invariant::LostWrite) {
            return;
        }
    }
    panic!("skipping the detach quorum was not caught");
}
