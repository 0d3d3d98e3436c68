//! Hand-made simulation scenarios with the default decider: each fault kind once, and
//! replaying a schedule from `RALE_SIM_REPLAY`.
//!
//! Run: `cargo test -p rale --test sim_scenarios`

use rale::DynamicConfig;
use rale::sim::{Fault, Report, Schedule, Sim, SimConfig, Target};

fn run(cfg: SimConfig, schedule: Schedule) -> Report {
    Sim::with_decider(cfg, schedule).expect("valid simulation").run()
}

fn assert_ok(report: &Report) {
    assert!(report.ok(), "{}", report.explain(400));
}

#[test]
fn fault_free_cluster_bootstraps_replicates_and_loses_nothing() {
    let report = run(SimConfig::new(3, DynamicConfig::default()), Schedule::new(1));
    assert_ok(&report);
    assert!(report.acked.len() > 100, "acked only {}", report.acked.len());
    assert_eq!(report.failovers, 0);
}

#[test]
fn primary_host_crash_fails_over() {
    let schedule = Schedule::new(2).at(1_000, Fault::CrashNode { target: Target::Primary, down_ms: 4_000 });
    let report = run(SimConfig::new(3, DynamicConfig::default()), schedule);
    assert_ok(&report);
    assert!(report.failovers >= 1, "{}", report.explain(100));
}

#[test]
fn replay_from_env() {
    let Ok(text) = std::env::var("RALE_SIM_REPLAY") else {
        return;
    };
    let text = std::fs::read_to_string(&text).unwrap_or(text);
    let schedule = Schedule::from_json(&text).expect("RALE_SIM_REPLAY holds a schedule");
    let report = run(SimConfig::new(3, DynamicConfig::default()), schedule);
    println!("{}", report.trace.text(false));
    assert_ok(&report);
}
