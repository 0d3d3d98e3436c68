//! Property tests: random fault schedules against the default decider, in every
//! replication mode ([`rale::sim::Mode`]), shrinking to a minimal failing schedule.
//!
//! Run: `cargo test -p rale --test sim_props` (`--release` for large runs).
//!
//! - `RALE_SIM_CASES`: schedules per mode (default 1000: 6 modes, 6,000 schedules);
//! - `RALE_SIM_SEED`: the proptest seed. Unset, every run draws a new one and prints it,
//!   so each CI run explores schedules no earlier run tried; set it to replay a run;
//! - a failure prints the violation, the seed with the command that replays the whole
//!   run, the shrunk schedule as JSON (replay it alone with `RALE_SIM_REPLAY='<json>'
//!   RALE_SIM_MODE=<mode> cargo test -p rale --test sim_scenarios replay -- --nocapture`)
//!   and the end of the trace; the full trace goes to `$CARGO_TARGET_TMPDIR/sim-<mode>.trace`.

use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use rale::sim::strategy::schedule;
use rale::sim::{Mode, Sim};

fn cases() -> u32 {
    std::env::var("RALE_SIM_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1000)
        .max(1)
}

/// The seed of this run: `RALE_SIM_SEED`, or a new one from the wall clock.
fn seed() -> u64 {
    if let Some(s) = std::env::var("RALE_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return s;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // Fold the nanoseconds so that seeds drawn by parallel tests differ.
    (nanos as u64) ^ ((nanos >> 64) as u64).rotate_left(17) ^ u64::from(std::process::id())
}

fn check(mode: Mode, s: rale::sim::Schedule) -> Result<(), TestCaseError> {
    let report = Sim::with_decider(mode.config(), s)
        .expect("valid simulation")
        .run();
    if report.ok() {
        return Ok(());
    }
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sim-{mode}.trace"));
    let _ = std::fs::write(&path, report.trace.text(true));
    Err(TestCaseError::fail(format!(
        "mode {mode}: {}\n(full trace: {})",
        report.explain(400),
        path.display()
    )))
}

/// Runs `cases()` random schedules of `mode` from one seed; on failure panics with the
/// shrunk schedule and both replay commands.
fn run_mode(mode: Mode, test: &str) {
    let seed = seed();
    let cases = cases();
    let replay = format!(
        "RALE_SIM_SEED={seed} RALE_SIM_CASES={cases} cargo test -p rale --release --test sim_props {test}"
    );
    println!("mode {mode}: {cases} schedules from seed {seed} (replay: {replay})");
    let config = Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_iters: 2_000,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    match runner.run(&schedule(mode.fault_mix()), |s| check(mode, s)) {
        Ok(()) => {}
        Err(TestError::Fail(why, minimal)) => panic!(
            "mode {mode}, seed {seed}: a schedule breaks an invariant.\n\
             replay this run: {replay}\n\
             replay the schedule: RALE_SIM_REPLAY='{}' RALE_SIM_MODE={mode} cargo test -p rale --test sim_scenarios replay -- --nocapture\n{why}",
            minimal.to_json()
        ),
        Err(TestError::Abort(why)) => panic!("mode {mode}, seed {seed}: aborted: {why}"),
    }
}

/// Asynchronous replication with the lease-gated commit fence: every fault kind.
#[test]
fn async_with_fence() {
    run_mode(Mode::AsyncFence, "async_with_fence");
}

/// Asynchronous replication without the fence: the agent itself must stop PostgreSQL,
/// so faults of the agent alone are left out.
#[test]
fn async_without_fence() {
    run_mode(Mode::AsyncNoFence, "async_without_fence");
}

/// `FIRST 1` synchronous replication.
#[test]
fn sync_first_1() {
    run_mode(Mode::SyncFirst1, "sync_first_1");
}

/// `ANY 1` quorum commit over three nodes.
#[test]
fn quorum_any_1() {
    run_mode(Mode::QuorumAny1, "quorum_any_1");
}

/// Strict synchronous mode.
#[test]
fn sync_strict() {
    run_mode(Mode::SyncStrict, "sync_strict");
}

/// Four nodes with `nofailover`, `failover_priority` 3 and 0.
#[test]
fn tagged_nodes() {
    run_mode(Mode::Tags, "tagged_nodes");
}

/// `FIRST 1` with failsafe mode on; consensus store outages (for every member or one)
/// weigh more among the faults: a primary that confirmed with every member keeps its
/// role, and still no split brain and no acknowledged write lost.
#[test]
fn failsafe() {
    run_mode(Mode::Failsafe, "failsafe");
}
