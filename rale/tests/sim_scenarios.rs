//! Hand-made simulation scenarios with the default decider: each fault kind once, and
//! replaying a schedule from `RALE_SIM_REPLAY`.
//!
//! Run: `cargo test -p rale --test sim_scenarios`

use rale::DynamicConfig;
use rale::sim::{Fault, Mode, Report, Schedule, Sim, SimConfig, Target};

fn run(cfg: SimConfig, schedule: Schedule) -> Report {
    Sim::with_decider(cfg, schedule)
        .expect("valid simulation")
        .run()
}

fn assert_ok(report: &Report) {
    assert!(report.ok(), "{}", report.explain(400));
}

#[test]
fn fault_free_cluster_bootstraps_replicates_and_loses_nothing() {
    let report = run(
        SimConfig::new(
            3,
            DynamicConfig {
                fence: true,
                ..DynamicConfig::default()
            },
        ),
        Schedule::new(1),
    );
    assert_ok(&report);
    assert!(
        report.acked.len() > 100,
        "acked only {}",
        report.acked.len()
    );
    assert_eq!(report.failovers, 0);
}

#[test]
fn primary_host_crash_fails_over() {
    let schedule = Schedule::new(2).at(
        1_000,
        Fault::CrashNode {
            target: Target::Primary,
            down_ms: 4_000,
        },
    );
    let report = run(
        SimConfig::new(
            3,
            DynamicConfig {
                fence: true,
                ..DynamicConfig::default()
            },
        ),
        schedule,
    );
    assert_ok(&report);
    assert!(report.failovers >= 1, "{}", report.explain(100));
}

/// The configuration of a named property-test mode (see `sim_props.rs`).
fn mode_config(mode: &str) -> SimConfig {
    if mode.is_empty() {
        return Mode::AsyncFence.config();
    }
    mode.parse::<Mode>()
        .unwrap_or_else(|e| panic!("RALE_SIM_MODE: {e}"))
        .config()
}

/// Replays a schedule: `RALE_SIM_REPLAY` holds its JSON (or a file holding it),
/// `RALE_SIM_MODE` the property-test mode (default `async-fence`); prints the trace.
/// Run: `RALE_SIM_REPLAY='{"seed":1,"faults":[]}' cargo test -p rale --test sim_scenarios replay -- --nocapture`
#[test]
fn replay_from_env() {
    let Ok(text) = std::env::var("RALE_SIM_REPLAY") else {
        return;
    };
    let text = std::fs::read_to_string(&text).unwrap_or(text);
    let schedule = Schedule::from_json(&text).expect("RALE_SIM_REPLAY holds a schedule");
    let mode = std::env::var("RALE_SIM_MODE").unwrap_or_default();
    let report = run(mode_config(&mode), schedule);
    println!("{}", report.trace.text(false));
    assert_ok(&report);
}

/// Figures for `docs/simulation.md`: runs `RALE_SIM_CASES` (default 200) random
/// schedules per mode and prints what they did.
/// Run: `cargo test -p rale --test sim_scenarios figures -- --ignored --nocapture`
#[test]
#[ignore = "prints figures; run on demand"]
fn figures() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, RngSeed, TestRunner};
    use rale::sim::strategy::{FaultMix, schedule};
    use rale_sync::SyncMode;

    let n: usize = std::env::var("RALE_SIM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut sync = DynamicConfig {
        fence: true,
        ..DynamicConfig::default()
    };
    sync.synchronous.mode = SyncMode::On;
    let modes = [
        (
            "async-fence",
            DynamicConfig {
                fence: true,
                ..DynamicConfig::default()
            },
            true,
        ),
        (
            "async-nofence",
            DynamicConfig {
                fence: false,
                ..DynamicConfig::default()
            },
            false,
        ),
        ("sync-first1", sync, true),
    ];
    for (name, dynamic, agent_faults) in modes {
        let cfg = SimConfig::new(3, dynamic);
        let mut mix = FaultMix::new(
            cfg.nodes.iter().map(|n| n.name.clone()).collect(),
            cfg.dynamic.clock_drift_ppm,
        );
        mix.agent_faults = agent_faults;
        let strategy = schedule(mix);
        let mut runner = TestRunner::new(Config {
            rng_seed: RngSeed::Fixed(99),
            ..Config::default()
        });
        let started = std::time::Instant::now();
        let (mut failed, mut failovers, mut acked, mut losses, mut lost_bytes_max, mut virt) =
            (0, 0, 0, 0, 0u64, 0u64);
        let mut by_invariant = std::collections::BTreeMap::new();
        for _ in 0..n {
            let s = strategy.new_tree(&mut runner).expect("schedule").current();
            let r = run(cfg.clone(), s);
            failovers += r.failovers;
            acked += r.acked.len();
            losses += r.async_losses.len();
            lost_bytes_max =
                lost_bytes_max.max(r.async_losses.iter().map(|l| l.bytes).max().unwrap_or(0));
            virt += r.duration_ms;
            if !r.ok() {
                failed += 1;
                *by_invariant
                    .entry(r.violations[0].invariant.to_string())
                    .or_insert(0) += 1;
            }
        }
        println!(
            "{name}: {n} schedules in {:.1} s ({:.0} s virtual), {failed} failed {by_invariant:?}, \
             {failovers} failovers, {acked} acked writes, {losses} async losses (largest {lost_bytes_max} bytes)",
            started.elapsed().as_secs_f64(),
            virt as f64 / 1000.0
        );
    }
}

/// The decider without its lease keeper grant: what `ramd` did before the keeper.
struct NoKeeper(rale::decide::Decider);

impl rale::decide::Policy for NoKeeper {
    fn step(&mut self, obs: &rale::decide::Observation<'_>) -> rale::decide::Decision {
        let mut d = self.0.step(obs);
        d.renewal = None;
        d
    }
}

/// A postmaster crash whose restart (crash recovery under load) takes 3 s, twice the
/// 1.5 s lease: the lease keeper renews the lease while the HA loop waits in
/// `pg_ctl start`, so the primary is restarted in place without a failover. Without the
/// keeper the lease lapses during the restart and a replica takes over.
#[test]
fn slow_crash_recovery_is_restarted_in_place_thanks_to_the_lease_keeper() {
    let mut cfg = SimConfig::new(
        3,
        DynamicConfig {
            fence: true,
            ..DynamicConfig::default()
        },
    );
    cfg.action_times.start_ms = rale::sim::Span::new(3_000, 3_200);
    // Late enough that the replicas, whose starts take 3 s too, stream when it strikes.
    let schedule = || {
        Schedule::new(7).at(
            6_000,
            Fault::CrashPostgres {
                target: Target::Primary,
            },
        )
    };
    let kept = run(cfg.clone(), schedule());
    assert_ok(&kept);
    assert_eq!(kept.failovers, 0, "{}", kept.explain(200));
    let factory: rale::sim::PolicyFactory = Box::new(|me, now| {
        Box::new(NoKeeper(rale::decide::Decider::new(me, now))) as Box<dyn rale::decide::Policy>
    });
    let without = Sim::new(cfg, schedule(), factory)
        .expect("valid simulation")
        .run();
    assert_ok(&without);
    assert!(
        without.failovers >= 1,
        "without the keeper the 1.5 s lease should lapse during a 3 s restart: {}",
        without.explain(200)
    );
}

/// Three nodes with the fence, asynchronous or synchronous `on` (FIRST 1).
fn fenced(sync: bool) -> SimConfig {
    let mut dynamic = DynamicConfig {
        fence: true,
        ..DynamicConfig::default()
    };
    if sync {
        dynamic.synchronous.mode = rale_sync::SyncMode::On;
        dynamic.synchronous.node_count = 1;
    }
    SimConfig::new(3, dynamic)
}

/// Every host goes down at once and the old primary stays down: the two others boot with
/// PostgreSQL stopped and the lease lapsed. They start their servers as detached
/// standbys, report their positions, and one of them takes over (found on real clusters
/// by the randomized fault campaign: nobody ever started a server, in synchronous mode).
#[test]
fn whole_cluster_down_recovers_without_the_old_primary() {
    for sync in [false, true] {
        let schedule = Schedule::new(11)
            .at(
                1_000,
                Fault::CrashNode {
                    target: Target::Primary,
                    down_ms: 30_000,
                },
            )
            .at(
                1_000,
                Fault::CrashNode {
                    target: Target::Replica(0),
                    down_ms: 2_000,
                },
            )
            .at(
                1_000,
                Fault::CrashNode {
                    target: Target::Replica(1),
                    down_ms: 2_000,
                },
            );
        let report = run(fenced(sync), schedule);
        assert_ok(&report);
        assert!(
            report.failovers >= 1,
            "sync={sync}: nobody took over while the old primary was down: {}",
            report.explain(200)
        );
    }
}

/// A full cluster restart the clean way (`systemctl restart` on every node): each agent
/// stops PostgreSQL, the primary releases its lease. The agents come back to stopped
/// servers and no lease holder; they start their servers as detached standbys and elect
/// a new primary (before the fix nobody ever started a server: found on real clusters by
/// the randomized fault campaign, in synchronous mode).
#[test]
fn full_cluster_restart_elects_a_primary_again() {
    for sync in [false, true] {
        let stop = |target| Fault::StopAgent {
            target,
            down_ms: 1_500,
        };
        let schedule = Schedule::new(12)
            .at(1_000, stop(Target::Primary))
            .at(
                1_050,
                stop(Target::Node(rale::NodeId::new("n1").expect("id"))),
            )
            .at(
                1_050,
                stop(Target::Node(rale::NodeId::new("n2").expect("id"))),
            )
            .at(
                1_050,
                stop(Target::Node(rale::NodeId::new("n3").expect("id"))),
            );
        let report = run(fenced(sync), schedule);
        assert_ok(&report);
        assert!(
            report.failovers >= 1 && report.promotions >= 1,
            "sync={sync}: no new primary after the full restart: {}",
            report.explain(200)
        );
    }
}

/// A former primary that kept writing while its agent was frozen has diverged from the
/// new primary's timeline. The decision core, step by step and with reasons: stop it,
/// `pg_rewind` from the new primary, and — when `pg_rewind` fails — a fresh base backup;
/// then it streams again and the rebuild is in the history. The executor that runs these
/// steps is the agent that ships.
fn diverged_former_primary(rewind_failure_percent: u32) -> Report {
    let mut cfg = SimConfig::new(3, DynamicConfig::default());
    cfg.rewind_failure_percent = rewind_failure_percent;
    let schedule = Schedule::new(5).at(
        1_000,
        Fault::FreezeAgent {
            target: Target::Primary,
            frozen_ms: 5_000,
        },
    );
    let report = run(cfg, schedule);
    assert_ok(&report);
    assert!(report.failovers >= 1, "{}", report.explain(100));
    report
}

#[test]
fn a_diverged_former_primary_is_rewound() {
    let report = diverged_former_primary(0);
    let text = report.trace.text(false);
    assert!(
        text.contains("stopping, then pg_rewind from"),
        "no rewind decision:\n{text}"
    );
    assert!(text.contains("action pg_rewind from"), "{text}");
    assert!(text.contains("rewound from"), "{text}");
    assert!(!text.contains("taking a fresh base backup"), "{text}");
}

#[test]
fn a_failed_rewind_is_followed_by_a_base_backup() {
    let report = diverged_former_primary(100);
    let text = report.trace.text(false);
    assert!(text.contains("pg_rewind from n"), "{text}");
    assert!(
        text.contains("failed (") && text.contains("taking a fresh base backup from"),
        "no base-backup decision after the failed rewind:\n{text}"
    );
    assert!(text.contains("action base backup from"), "{text}");
}

fn failsafe_config(on: bool) -> SimConfig {
    let mut cfg = fenced(true);
    cfg.dynamic.failsafe_mode = on;
    cfg
}

/// Acknowledged writes within `[from, to)` ms after the warm-up, by node.
fn acked_between(report: &Report, cfg: &SimConfig, from: u64, to: u64) -> Vec<String> {
    report
        .acked
        .iter()
        .filter(|w| w.at_ms >= cfg.warmup_ms + from && w.at_ms < cfg.warmup_ms + to)
        .map(|w| w.node.to_string())
        .collect()
}

/// The consensus store is down for every member for 10 s. With failsafe mode on, every
/// member confirms the primary over the agents' API: it keeps acknowledging writes and
/// nothing changes role. Off, it stops acknowledging within its lease and acknowledges
/// again once the store is back — with no failover either way.
#[test]
fn a_consensus_outage_with_failsafe_keeps_the_primary_and_without_it_fences() {
    for on in [true, false] {
        let cfg = failsafe_config(on);
        let schedule = Schedule::new(21).at(
            1_000,
            Fault::ConsensusUnavailable {
                target: None,
                duration_ms: 10_000,
            },
        );
        let report = run(cfg.clone(), schedule);
        assert_ok(&report);
        assert_eq!(
            report.failovers,
            0,
            "failsafe={on}: {}",
            report.explain(100)
        );
        let during = acked_between(&report, &cfg, 3_000, 11_000);
        let after = acked_between(&report, &cfg, 12_000, 20_000);
        assert!(
            !after.is_empty(),
            "failsafe={on}: no write after the outage"
        );
        if on {
            assert!(
                during.len() > 20,
                "failsafe on: only {} writes acknowledged during the outage: {}",
                during.len(),
                report.explain(200)
            );
            let first = &during[0];
            assert!(during.iter().all(|n| n == first), "one primary throughout");
        } else {
            assert!(
                during.is_empty(),
                "failsafe off: {} writes acknowledged after the lease ran out",
                during.len()
            );
        }
    }
}

/// Failsafe mode on, the store down for everyone, and one replica's agent crashes during
/// the outage: the primary no longer hears from every member and stops acknowledging
/// within its lease; nothing is lost.
#[test]
fn a_silent_member_during_a_consensus_outage_fences_the_primary() {
    let cfg = failsafe_config(true);
    let schedule = Schedule::new(22)
        .at(
            1_000,
            Fault::ConsensusUnavailable {
                target: None,
                duration_ms: 10_000,
            },
        )
        .at(
            4_000,
            Fault::CrashAgent {
                target: Target::Replica(0),
                down_ms: 20_000,
            },
        );
    let report = run(cfg.clone(), schedule);
    assert_ok(&report);
    assert!(
        !acked_between(&report, &cfg, 2_000, 4_000).is_empty(),
        "confirmed before the crash"
    );
    let during = acked_between(&report, &cfg, 6_000, 11_000);
    assert!(
        during.is_empty(),
        "{} writes acknowledged without every member's confirmation: {}",
        during.len(),
        report.explain(200)
    );
}

/// Failsafe mode on, and only the primary loses the store (the replicas still reach it
/// and see the lease go unrenewed): every replica confirms the primary, so none takes
/// over and the primary keeps acknowledging.
#[test]
fn a_primary_cut_from_the_store_alone_keeps_its_role_with_failsafe() {
    let cfg = failsafe_config(true);
    let schedule = Schedule::new(23).at(
        1_000,
        Fault::ConsensusUnavailable {
            target: Some(Target::Primary),
            duration_ms: 8_000,
        },
    );
    let report = run(cfg.clone(), schedule);
    assert_ok(&report);
    assert_eq!(report.failovers, 0, "{}", report.explain(200));
    let during = acked_between(&report, &cfg, 3_000, 9_000);
    assert!(during.len() > 20, "only {} writes", during.len());
}
