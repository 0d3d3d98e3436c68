//! Decider findings of the simulation harness, each as the minimal schedule that shows
//! it (see `docs/simulation.md`, "Findings"). Every finding is fixed; these tests keep
//! them fixed: `cargo test -p rale --test sim_findings -- --nocapture`.

use rale::DynamicConfig;
use rale::sim::{Report, Schedule, Sim, SimConfig};
use rale_sync::SyncMode;

fn run(cfg: SimConfig, schedule: Schedule) -> Report {
    Sim::with_decider(cfg, schedule)
        .expect("valid simulation")
        .run()
}

fn assert_ok(report: &Report) {
    assert!(report.ok(), "{}", report.explain(120));
}

/// F1: in synchronous mode the decider never sets `synchronous_standby_names` nor
/// records a synchronous set, so commits are acknowledged without any standby and a
/// failover promotes a replica that lacks them.
#[test]
fn f1_sync_mode_loses_acknowledged_writes() {
    let mut d = DynamicConfig {
        fence: true,
        ..DynamicConfig::default()
    };
    d.synchronous.mode = SyncMode::On;
    d.synchronous.node_count = 1;
    let schedule = Schedule::from_json(
        r#"{"seed":3484914825695799627,"faults":[{"at_ms":0,"fault":{"fault":"partition","sides":[["n1","n2"],[],["n3"]],"client_side":2,"duration_ms":1651}}]}"#,
    )
    .expect("schedule");
    assert_ok(&run(SimConfig::new(3, d), schedule));
}

/// F2: a member tagged `nofailover` can win the bootstrap race and become primary.
#[test]
fn f2_nofailover_member_bootstraps() {
    let cfg = SimConfig::tagged_reference(DynamicConfig {
        fence: true,
        ..DynamicConfig::default()
    });
    assert_ok(&run(cfg, Schedule::new(2618872595153060707)));
}

/// F3: without the fence, a primary whose host reboots restarts PostgreSQL as a
/// primary in place ("Restart") although its lease is no longer valid (its deadline is
/// unknown after the reboot, and a failover is already under way): it acknowledges
/// writes on the old timeline while the new primary is promoted.
#[test]
fn f3_rebooted_primary_restarts_without_a_valid_lease() {
    let cfg = SimConfig::new(
        3,
        DynamicConfig {
            fence: false,
            ..DynamicConfig::default()
        },
    );
    let schedule = Schedule::from_json(
        r#"{"seed":15934816595052914105,"faults":[{"at_ms":5061,"fault":{"fault":"crash_node","target":"primary","down_ms":1981}},{"at_ms":6161,"fault":{"fault":"slow_consensus","extra_ms":94,"duration_ms":1090}}]}"#,
    )
    .expect("schedule");
    assert_ok(&run(cfg, schedule));
}

/// F5: failover ranks candidates and checks `maximum_lag_on_failover` by LSN alone.
/// Here a replica that received one more record of timeline 1 than the node promoted to
/// timeline 2 could not follow timeline 2 (its history diverged) and was still waiting
/// to be rewound when the timeline-2 primary's loop stalled; failover then promoted it,
/// losing every write acknowledged on timeline 2 (132 writes, more than
/// `maximum_lag_on_failover`, which the stale published LSN of the lost primary hid).
#[test]
fn f5_diverged_replica_on_an_older_timeline_is_promoted() {
    let schedule = Schedule::from_json(
        r#"{"seed":10080182089879605274,"faults":[{"at_ms":21,"fault":{"fault":"crash_node","target":{"node":"n2"},"down_ms":3021}},{"at_ms":4591,"fault":{"fault":"stall_loop","target":"primary","stalled_ms":2120}},{"at_ms":0,"fault":{"fault":"stall_loop","target":{"replica":0},"stalled_ms":3171}}]}"#,
    )
    .expect("schedule");
    assert_ok(&run(
        SimConfig::new(
            3,
            DynamicConfig {
                fence: true,
                ..DynamicConfig::default()
            },
        ),
        schedule,
    ));
}

/// F5, starker: the old primary's agent crashes; its PostgreSQL keeps running on
/// timeline 1 and keeps writing (unacknowledged, the fence is closed) while n1 takes
/// over on timeline 2. When n1's host dies, the old primary — now a standby still on
/// timeline 1 with the *highest* LSN thanks to those unacknowledged records — is
/// ranked best and promoted, losing every write acknowledged on timeline 2.
#[test]
fn f5_former_primary_with_unacknowledged_wal_is_promoted() {
    let schedule = Schedule::from_json(
        r#"{"seed":8527017535852038469,"faults":[{"at_ms":0,"fault":{"fault":"crash_agent","target":{"node":"n2"},"down_ms":4601}},{"at_ms":4501,"fault":{"fault":"crash_node","target":"primary","down_ms":1850}}]}"#,
    )
    .expect("schedule");
    assert_ok(&run(
        SimConfig::new(
            3,
            DynamicConfig {
                fence: true,
                ..DynamicConfig::default()
            },
        ),
        schedule,
    ));
}
