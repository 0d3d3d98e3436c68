//! Schedules the property tests once failed on, each with the mode it failed in and the
//! cause found (see `docs/simulation.md`, "Regression cases"). Every one must pass:
//! `cargo test -p rale --test sim_regressions`.

use rale::sim::{Mode, Report, Schedule, Sim};

fn run(mode: Mode, json: &str) -> Report {
    let schedule = Schedule::from_json(json).expect("schedule");
    Sim::with_decider(mode.config(), schedule)
        .expect("valid simulation")
        .run()
}

fn assert_ok(mode: Mode, json: &str) -> Report {
    let report = run(mode, json);
    assert!(report.ok(), "mode {mode}: {}", report.explain(200));
    report
}

/// R1 (issue 13, `async-fence`, I1): the primary's host reboots. The simulator's lease
/// keeper outlived the agent process it belongs to, so the fence deadline proven on the
/// previous boot's clock kept the rebooted primary's fence open through a partition
/// while the majority promoted another node. Cause: the simulator's model of the
/// keeper (the agent's keeper is in-memory state of the agent process).
#[test]
fn r1_keeper_state_does_not_survive_a_reboot() {
    assert_ok(
        Mode::AsyncFence,
        r#"{"seed":1876161265026161052,"faults":[{"at_ms":941,"fault":{"fault":"crash_node","target":{"node":"n1"},"down_ms":100}},{"at_ms":1051,"fault":{"fault":"partition","sides":[[],["n2","n3"],["n1"]],"client_side":0,"duration_ms":2300}},{"at_ms":471,"fault":{"fault":"slow_consensus","extra_ms":106,"duration_ms":331}}]}"#,
    );
}

/// R2 (issue 13, `tags`, I1): the same model defect as R1, reached through a host
/// crash of the primary under slow consensus followed by a stall of its HA loop.
#[test]
fn r2_keeper_state_does_not_survive_a_reboot_then_a_stall() {
    assert_ok(
        Mode::Tags,
        r#"{"seed":0,"faults":[{"at_ms":6421,"fault":{"fault":"stall_loop","target":"primary","stalled_ms":2180}},{"at_ms":2341,"fault":{"fault":"slow_consensus","extra_ms":234,"duration_ms":3611}},{"at_ms":2721,"fault":{"fault":"crash_node","target":"primary","down_ms":241}}]}"#,
    );
}

/// R3 (issue 13, `sync-first1` and `sync-strict`, I3): two quick graceful restarts of
/// the primary's agent. The second hits the new lease holder before it promoted. A lease
/// acquisition removed the taker from the recorded synchronous set, leaving `{}` with one
/// acknowledgement required once it stepped down: no member could ever be promoted.
/// Cause: the product (`ClusterState::apply`, `AcquireLease`).
#[test]
fn r3_two_quick_agent_restarts_leave_a_promotable_member() {
    let json = r#"{"seed":0,"faults":[{"at_ms":4941,"fault":{"fault":"stop_agent","target":"primary","down_ms":100}},{"at_ms":5281,"fault":{"fault":"stop_agent","target":"primary","down_ms":100}}]}"#;
    assert_ok(Mode::SyncFirst1, json);
    assert_ok(Mode::SyncStrict, json);
}

/// R4 (issue 13, `quorum-any1`, I3): the recorded set a new primary inherited without
/// itself covered nothing, so it published a set of a standby that had not caught up
/// (a vacuous "loosening"); when it stepped down, that standby was the only candidate
/// and only the timeline rule kept it from being promoted without acknowledged writes.
/// Same cause as R3.
#[test]
fn r4_new_primary_publishes_only_caught_up_standbys() {
    assert_ok(
        Mode::QuorumAny1,
        r#"{"seed":11227749347455420759,"faults":[{"at_ms":4291,"fault":{"fault":"stop_agent","target":"primary","down_ms":100}},{"at_ms":1571,"fault":{"fault":"crash_agent","target":"primary","down_ms":1861}},{"at_ms":31,"fault":{"fault":"cut_link","a":{"replica":2},"b":"primary","duration_ms":2251}}]}"#,
    );
}
