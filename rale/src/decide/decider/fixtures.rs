//! Test fixtures shared by the decider's unit tests.

use super::*;
use crate::decide::ActionOutcome;
use crate::types::{Lsn, Tags, Timeline};

/// A member name.
pub(super) fn node(n: &str) -> NodeId {
    NodeId::new(n).expect("valid name")
}

/// The identity of the node under test, `n1`.
pub(super) fn me() -> NodeIdentity {
    NodeIdentity {
        node: node("n1"),
        api_url: "http://n1:8008".into(),
        pg_host: "n1".into(),
        pg_port: 5432,
        tags: Tags::default(),
    }
}

/// The published status of a running primary `n` at `timeline` and `lsn`.
pub(super) fn primary(n: &str, timeline: u32, lsn: u64) -> MemberStatus {
    MemberStatus {
        node: node(n),
        api_url: String::new(),
        pg_host: "127.0.0.1".into(),
        pg_port: 5432,
        role: Role::Primary,
        running: true,
        timeline: Timeline(timeline),
        lsn: Lsn(lsn),
        receive_lsn: None,
        replay_lsn: None,
        upstream: None,
        streaming: false,
        tags: Tags::default(),
        detached: None,
        pending_restart: false,
        server_version_num: 150000,
        system_id: Some(1),
        logical_slots: Default::default(),
        heartbeat: 1,
    }
}

/// An observation at `now` (ms) of `pg` with the cluster state read, no failsafe input.
pub(super) fn observation<'a>(
    now: u64,
    pg: &'a PgStatus,
    state: &'a ClusterState,
    outcomes: &'a [ActionOutcome],
) -> Observation<'a> {
    Observation {
        now: Millis(now),
        wall_ms: 0,
        pg,
        cluster: Some(state),
        outcomes,
        parameters: None,
        failsafe_promise: None,
        failsafe_confirmed: None,
    }
}
