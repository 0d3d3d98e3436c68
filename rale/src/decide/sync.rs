//! The primary's management of the synchronous set: choose it with `rale_sync`, then move
//! the recorded set (consensus) and the enforced `synchronous_standby_names` (PostgreSQL)
//! to it one safe step at a time ([`rale_sync::transition::plan_transition`]).

use std::collections::BTreeSet;

use rale_sync::choose::{Candidate as SyncCandidate, choose_sync_set};
use rale_sync::names::StandbyNames;
use rale_sync::transition::{RecordedSet, Step, Target, plan_transition_for};
use rale_sync::{SyncMode, enforce};

use super::{Action, PgAction};
use crate::state::{ClusterState, Operation};
use crate::status::PgStatus;
use crate::types::{Epoch, Lsn, NodeId};

/// What a `CatchUp` step waits for: the set, and the primary's position when it started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CatchUp {
    set: RecordedSet,
    lsn: Lsn,
}

/// The recorded set as `rale_sync` sees it (members sorted: consensus keeps a set).
fn recorded(state: &ClusterState) -> RecordedSet {
    RecordedSet::new(
        state.sync.standbys.iter().map(|n| n.as_str().to_string()),
        state.sync.quorum,
    )
}

/// Whether the cluster asks for any synchronous management at all.
pub(super) fn wanted(state: &ClusterState, pg: &PgStatus) -> bool {
    state.config.synchronous.mode != SyncMode::Off
        || state.config.fence
        || state.sync.quorum > 0
        || !pg.synchronous_standby_names.trim().is_empty()
}

/// The blocking value a new primary enforces before it is promoted in synchronous mode,
/// so that it acknowledges nothing until its synchronous set is in place.
pub(super) fn blocked_names() -> String {
    format!("FIRST 1 ({})", enforce::BLOCKED_APPLICATION_NAME)
}

/// The `synchronous_standby_names` a new cluster's first server starts with: blocked in
/// strict synchronous mode (no standby exists yet), gated by the commit fence when it is
/// on (nothing is acknowledged before the first lease), nothing otherwise.
pub(super) fn bootstrap_names(config: &crate::config::DynamicConfig) -> Option<String> {
    if config.synchronous.mode != SyncMode::Off && config.synchronous.strict {
        Some(blocked_names())
    } else if config.fence {
        Some(format!("FIRST 1 ({})", enforce::FENCE_APPLICATION_NAME))
    } else {
        None
    }
}

/// Who counts as a synchronous candidate besides the standbys streaming right now.
#[derive(Clone, Debug, Default)]
pub(super) struct Expected {
    /// Members expected to stream from this new primary shortly: its replicas that were
    /// healthy when it was promoted. Counted as candidates (commits wait for them rather
    /// than go asynchronous) during the grace after promotion.
    pub reconnecting: BTreeSet<NodeId>,
    /// Standbys that have streamed from this primary without a break for long enough
    /// (see `Decider::settled_standbys`). A standby outside the recorded set becomes a
    /// candidate only once settled (or expected to reconnect); one inside stays while
    /// it streams or catches up.
    pub settled: BTreeSet<NodeId>,
}

/// Why a member is (or is not) in a set, for log reasons: `a (streaming)`.
fn describe(names: &BTreeSet<String>) -> String {
    names.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// The change from the recorded set to `to`, in words.
fn change(from: &RecordedSet, to: &RecordedSet) -> String {
    let (a, b) = (from.keys(), to.keys());
    let added: BTreeSet<String> = b.difference(&a).cloned().collect();
    let removed: BTreeSet<String> = a.difference(&b).cloned().collect();
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("adds {}", describe(&added)));
    }
    if !removed.is_empty() {
        parts.push(format!("drops {}", describe(&removed)));
    }
    if from.num != to.num {
        parts.push(format!("{} → {} acknowledgement(s)", from.num, to.num));
    }
    if parts.is_empty() {
        "no change".into()
    } else {
        parts.join(", ")
    }
}

/// The next step towards the desired synchronous set, with a reason, or `None` when
/// recorded and enforced sets are where they should be (or we wait for a catch-up).
///
/// Candidates are the members streaming from this primary, plus (hysteresis) members of
/// the recorded set that are connected but still catching up — PostgreSQL ignores them
/// until they stream, and dropping them would make the set flap under heavy writes —
/// plus the members `expected` to reconnect after a promotion.
pub(super) fn next_step(
    me: &NodeId,
    epoch: Epoch,
    state: &ClusterState,
    pg: &PgStatus,
    fresh: &BTreeSet<NodeId>,
    expected: &Expected,
    catch_up: &mut Option<CatchUp>,
) -> Option<(Action, String)> {
    let my_lsn = pg.wal_position();
    let candidates: Vec<SyncCandidate> = state
        .members
        .values()
        .filter(|m| &m.node != me)
        .map(|m| {
            let row = pg
                .replicas
                .iter()
                .find(|r| r.application_name.eq_ignore_ascii_case(m.node.as_str()));
            let recorded = state.sync.standbys.contains(&m.node);
            let reconnecting = row.is_none() && expected.reconnecting.contains(&m.node);
            let flush = match row {
                Some(r) => r.flush_lsn.unwrap_or(Lsn::ZERO),
                None if reconnecting => m.lsn,
                None => Lsn::ZERO,
            };
            let replay = match row {
                Some(r) => r.replay_lsn.unwrap_or(Lsn::ZERO),
                None if reconnecting => m.lsn,
                None => Lsn::ZERO,
            };
            let trusted = recorded
                || expected.settled.contains(&m.node)
                || expected.reconnecting.contains(&m.node);
            let streaming = row.is_some_and(|r| {
                (r.state == "streaming" && trusted) || (recorded && r.state == "catchup")
            }) || reconnecting;
            SyncCandidate {
                name: m.node.as_str().to_string(),
                streaming,
                flush_lag_bytes: my_lsn.bytes_after(flush),
                replay_lag_bytes: my_lsn.bytes_after(replay),
                nosync: m.tags.nosync,
                priority: m.tags.priority(),
                healthy: fresh.contains(&m.node) && m.running,
                recorded,
            }
        })
        .collect();
    let mut plan = choose_sync_set(&state.config.synchronous, &candidates);
    plan.standbys.sort();
    let sync = &state.config.synchronous;
    let target = if sync.mode != SyncMode::Off && !sync.strict && plan.num == 0 {
        // Non-strict, no synchronous standby: commits go on, held by this primary alone.
        // Record exactly that — the primary as the only member — so that no failover
        // promotes a member that may lack them (it waits for this node), instead of
        // recording "asynchronous", which would let a lagging standby take over.
        Target::new_for(
            Some(me.as_str()),
            RecordedSet::new([me.as_str()], 1),
            rale_sync::enforced_names(&plan, state.config.fence),
        )
    } else {
        Target::new_for(
            Some(me.as_str()),
            RecordedSet::from_plan(&plan),
            rale_sync::enforced_names(&plan, state.config.fence),
        )
    };
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            return Some((
                Action::Propose {
                    op: Operation::Record {
                        kind: crate::state::HistoryKind::Operation,
                        node: Some(me.clone()),
                        actor: format!("ha:{me}"),
                        reason: format!("synchronous set not changed: {e}"),
                    },
                },
                format!("refusing an unsafe synchronous set: {e}"),
            ));
        }
    };
    let enforced =
        StandbyNames::parse(&pg.synchronous_standby_names).unwrap_or(StandbyNames::Empty);
    let current = recorded(state);
    let steps = plan_transition_for(Some(me.as_str()), &current, &enforced, &target);
    let publish = |r: &RecordedSet, why: &str| {
        let standbys: BTreeSet<NodeId> = r
            .members
            .iter()
            .filter(|m| !enforce::is_reserved_name(m))
            .filter_map(|m| NodeId::new(m.as_str()).ok())
            .collect();
        let names: Vec<&str> = standbys.iter().map(NodeId::as_str).collect();
        (
            Action::Propose {
                op: Operation::SetSync {
                    epoch,
                    standbys: standbys.clone(),
                    quorum: r.num,
                },
            },
            format!(
                "{why}: recording synchronous set {names:?} with {} acknowledgement(s) per commit ({})",
                r.num,
                change(&current, r)
            ),
        )
    };
    match steps.first()? {
        Step::Publish(r) => {
            *catch_up = None;
            Some(publish(r, "synchronous set"))
        }
        Step::Enforce(e) => {
            *catch_up = None;
            let value = e.to_string();
            Some((
                Action::Pg {
                    action: PgAction::SetSynchronousStandbyNames {
                        value: value.clone(),
                    },
                },
                format!(
                    "enforcing synchronous_standby_names = '{value}'{}",
                    plan.degraded
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
            ))
        }
        Step::CatchUp(r) => {
            let started = match catch_up {
                Some(c) if c.set == *r => c.lsn,
                _ => {
                    *catch_up = Some(CatchUp {
                        set: r.clone(),
                        lsn: my_lsn,
                    });
                    my_lsn
                }
            };
            let keys = r.keys();
            let caught_up = pg
                .replicas
                .iter()
                .filter(|row| keys.contains(&row.application_name.to_ascii_lowercase()))
                .filter(|row| row.flush_lsn.is_some_and(|f| f >= started))
                .count();
            if caught_up >= r.required_standby_holders(Some(me.as_str())) {
                *catch_up = None;
                Some(publish(
                    r,
                    &format!(
                        "{caught_up} member(s) of the new set hold everything written up to {started}"
                    ),
                ))
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{DataDirState, MemberStatus, ReplicaConnection};
    use crate::types::{Role, Tags, Timeline};

    fn node(name: &str) -> NodeId {
        NodeId::new(name).expect("valid name")
    }

    fn member(name: &str) -> MemberStatus {
        MemberStatus {
            node: node(name),
            api_url: String::new(),
            pg_host: "127.0.0.1".into(),
            pg_port: 5432,
            role: Role::Replica,
            running: true,
            timeline: Timeline(1),
            lsn: Lsn(1000),
            receive_lsn: Some(Lsn(1000)),
            replay_lsn: Some(Lsn(1000)),
            upstream: Some(node("n1")),
            streaming: true,
            tags: Tags::default(),
            detached: None,
            pending_restart: false,
            server_version_num: 150000,
            system_id: Some(1),
            logical_slots: Default::default(),
            heartbeat: 1,
        }
    }

    fn row(name: &str, state: &str, flush: u64) -> ReplicaConnection {
        ReplicaConnection {
            application_name: name.into(),
            state: state.into(),
            sync_state: "quorum".into(),
            write_lsn: Some(Lsn(flush)),
            flush_lsn: Some(Lsn(flush)),
            replay_lsn: Some(Lsn(flush)),
        }
    }

    /// Primary n1 in `ANY 1` quorum mode over n2 and n3, with `recorded` as the recorded
    /// set (and enforced as such), and `rows` as its `pg_stat_replication`.
    fn step(recorded: &[&str], rows: Vec<ReplicaConnection>) -> Option<(Action, String)> {
        let enforced = format!("ANY 1 ({})", recorded.join(", "));
        step_enforcing(recorded, &enforced, rows)
    }

    fn step_enforcing(
        recorded: &[&str],
        enforced: &str,
        rows: Vec<ReplicaConnection>,
    ) -> Option<(Action, String)> {
        // Every standby shown streaming has streamed long enough.
        let settled = rows
            .iter()
            .filter(|r| r.state == "streaming")
            .map(|r| node(&r.application_name))
            .collect();
        step_settled(recorded, enforced, rows, settled)
    }

    fn step_settled(
        recorded: &[&str],
        enforced: &str,
        rows: Vec<ReplicaConnection>,
        settled: BTreeSet<NodeId>,
    ) -> Option<(Action, String)> {
        let mut state = ClusterState::default();
        state.config.synchronous.mode = SyncMode::Quorum;
        state.config.synchronous.node_count = 1;
        for n in ["n1", "n2", "n3"] {
            state.members.insert(node(n), member(n));
        }
        state.sync.epoch = Epoch(2);
        state.sync.standbys = recorded.iter().map(|n| node(n)).collect();
        state.sync.quorum = 1;
        let mut pg = PgStatus::stopped(DataDirState::Initialized { system_id: 1 });
        pg.running = true;
        pg.reachable = true;
        pg.timeline = Timeline(1);
        pg.write_lsn = Lsn(5000);
        pg.replicas = rows;
        pg.synchronous_standby_names = enforced.to_string();
        let fresh: BTreeSet<NodeId> = ["n2", "n3"].iter().map(|n| node(n)).collect();
        next_step(
            &node("n1"),
            Epoch(2),
            &state,
            &pg,
            &fresh,
            &Expected {
                settled,
                ..Expected::default()
            },
            &mut None,
        )
    }

    /// Issue 22 (campaign v3b-7): a standby outside the recorded set that shows
    /// `streaming` only for a moment (a WAL receiver that keeps reconnecting) is not
    /// added; once it has streamed long enough, it is.
    #[test]
    fn a_standby_streaming_for_a_moment_is_not_added() {
        let rows = vec![row("n2", "streaming", 5000), row("n3", "streaming", 5000)];
        let only_n2: BTreeSet<NodeId> = [node("n2")].into();
        assert_eq!(
            step_settled(&["n2"], "ANY 1 (n2)", rows.clone(), only_n2),
            None
        );
        let (_, reason) = step(&["n2"], rows).expect("settled: the set grows");
        assert!(reason.contains("n3"), "{reason}");
    }

    /// Issue 14 item 8: a member of the recorded set that reconnected and is catching up
    /// under heavy writes stays in the set; the set does not flap out and back in.
    #[test]
    fn a_recorded_member_catching_up_stays_in_the_set() {
        let rows = vec![row("n2", "streaming", 5000), row("n3", "catchup", 3000)];
        assert_eq!(step(&["n2", "n3"], rows), None);
    }

    /// The hysteresis holds members in, it does not pull them in: a member outside the
    /// recorded set joins only once it streams.
    #[test]
    fn a_member_catching_up_outside_the_set_is_not_added() {
        let rows = vec![row("n2", "streaming", 5000), row("n3", "catchup", 3000)];
        assert_eq!(step(&["n2"], rows), None);
        let rows = vec![row("n2", "streaming", 5000), row("n3", "streaming", 5000)];
        let (action, reason) = step(&["n2"], rows).expect("n3 streams: the set grows");
        assert!(
            matches!(&action, Action::Pg { .. } | Action::Propose { .. }),
            "{action:?}"
        );
        assert!(
            reason.contains("n3"),
            "the reason names the member: {reason}"
        );
    }

    /// A member of the recorded set that stopped streaming altogether is dropped: first
    /// from what PostgreSQL enforces, then from the record, with a reason that says it is
    /// dropped (not "caught up").
    #[test]
    fn a_recorded_member_that_is_gone_is_dropped_and_the_reason_says_so() {
        let rows = vec![row("n2", "streaming", 5000)];
        let (action, _) = step(&["n2", "n3"], rows.clone()).expect("n3 is gone");
        let Action::Pg {
            action: PgAction::SetSynchronousStandbyNames { value },
        } = action
        else {
            panic!("enforcement shrinks first: {action:?}");
        };
        assert_eq!(value, "ANY 1 (n2)");
        let (action, reason) =
            step_enforcing(&["n2", "n3"], "ANY 1 (n2)", rows).expect("then the record");
        assert!(matches!(action, Action::Propose { .. }), "{action:?}");
        assert!(reason.contains("n3"), "{reason}");
        assert!(!reason.contains("caught up"), "{reason}");
    }
}
