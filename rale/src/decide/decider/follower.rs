//! Followers: starting, pointing and rebuilding replicas of the holder (rejoin).

use super::*;

impl Decider {
    pub(super) fn follower(
        &mut self,
        state: &ClusterState,
        obs: &Observation<'_>,
        holder: NodeId,
    ) -> Decision {
        let mut d = self.follower_steps(state, obs, holder);
        // A base backup that rebuilt a diverged node goes into the history.
        if self.rebuilding
            && let Some(source) = obs.outcomes.iter().find_map(|o| match &o.action {
                PgAction::Clone { source } if o.error.is_none() => Some(source.clone()),
                _ => None,
            })
        {
            self.rebuilding = false;
            let me = self.node().clone();
            d.actions.push(propose(Operation::Record {
                kind: HistoryKind::Operation,
                node: Some(me.clone()),
                actor: format!("ha:{me}"),
                reason: format!(
                    "{me} was rebuilt from a base backup of {source}; it rejoins as its replica"
                ),
            }));
        }
        d
    }

    pub(super) fn follower_steps(
        &mut self,
        state: &ClusterState,
        obs: &Observation<'_>,
        holder: NodeId,
    ) -> Decision {
        let now = obs.now;
        self.expired_since = None;
        self.detached = None;
        self.switchover_stop = None;
        let p = obs.pg;
        let holder_ok = state
            .members
            .get(&holder)
            .is_some_and(|m| m.running && m.role == Role::Primary);
        if state.paused {
            return self.follower_paused(obs, holder);
        }
        self.stepped_down = None;
        if p.data == DataDirState::Empty {
            let mut d = Decision::none(
                DecisionKind::Rejoin,
                format!("empty data directory: cloning from {holder}"),
            );
            if !holder_ok {
                d.reason = format!(
                    "empty data directory: waiting for primary {holder} to run before cloning"
                );
            } else if self.once("clone", now, REBUILD_COOLDOWN_MS) {
                d.actions.push(pg(PgAction::Clone { source: holder }));
            }
            return d;
        }
        if p.running && p.reachable && p.role() == Role::Primary {
            let (rebuild, how) = self.rebuild(&holder);
            let mut d = Decision {
                kind: DecisionKind::Rejoin,
                reason: format!(
                    "running as a primary while {holder} holds the lease: stopping, then {how}"
                ),
                actions: vec![pg(PgAction::Stop {
                    mode: StopMode::Immediate,
                })],
                lease: None,
                renewal: None,
                failsafe: None,
            };
            if holder_ok && self.once("rejoin", now, REBUILD_COOLDOWN_MS) {
                d.actions.push(pg(rebuild));
            }
            return d;
        }
        if !p.running
            && let Some(d) = self.after_rebuild(obs, &holder, holder_ok)
        {
            return d;
        }
        if !p.running {
            if obs.outcomes.iter().any(|o| {
                o.error.is_some() && matches!(o.action, PgAction::Start { upstream: Some(_) })
            }) {
                self.replica_start_failures += 1;
            }
            if self.replica_start_failures >= REPLICA_START_ATTEMPTS && holder_ok {
                let (rebuild, how) = self.rebuild(&holder);
                let mut d = Decision::none(
                    DecisionKind::Rejoin,
                    format!(
                        "PostgreSQL failed to start as a replica of {holder} {} times in a row: {how}",
                        self.replica_start_failures
                    ),
                );
                if self.once("rejoin", now, REBUILD_COOLDOWN_MS) {
                    d.actions.push(pg(rebuild));
                    self.replica_start_failures = 0;
                }
                return d;
            }
            let mut d = Decision::none(
                DecisionKind::Follow,
                format!("starting PostgreSQL as a replica of {holder}"),
            );
            if self.once("start", now, ACTION_COOLDOWN_MS) {
                d.actions.push(pg(PgAction::Start {
                    upstream: Some(holder),
                }));
            }
            return d;
        }
        self.replica_start_failures = 0;
        if !p.reachable {
            return Decision::none(
                DecisionKind::Steady,
                "PostgreSQL runs but does not answer yet",
            );
        }
        if p.upstream.as_ref() != Some(&holder) {
            let mut d = Decision::none(
                DecisionKind::Follow,
                format!("pointing replication at the primary {holder}"),
            );
            if self.once("follow", now, ACTION_COOLDOWN_MS / 2) {
                d.actions.push(pg(PgAction::Follow {
                    upstream: Some(holder),
                }));
            }
            return d;
        }
        let patience = ms(self.config.member_ttl);
        if p.streaming {
            // Only streaming that lasts clears the clock below: a diverged standby's WAL
            // receiver shows `streaming` for a moment every ~0.5 s as it retries, and
            // those blips must not postpone its rewind for ever (fault campaign, seed
            // 6498057888742137941; simulator regression r14).
            let streaming = *self.streaming_since.get_or_insert(now);
            if now.since(streaming) >= patience {
                self.not_streaming_since = None;
            }
            if let Some(d) = self.logical_slot_copies(state, obs, &holder, now.since(streaming)) {
                return d;
            }
            return Decision::none(
                DecisionKind::Steady,
                format!("replica streaming from {holder}"),
            );
        }
        self.streaming_since = None;
        let since = *self.not_streaming_since.get_or_insert(now);
        // Decided from the history once per fork: should the rewind have found nothing to
        // do (the taker promoted further on than it recorded), the patience rule decides.
        let fork = diverged_by_history(state, p, &holder).filter(|f| self.fork_rewound != Some(*f));
        if holder_ok && (now.since(since) >= patience || fork.is_some()) {
            let (rebuild, how) = self.rebuild(&holder);
            let why = match fork {
                Some((tl, fork)) => format!(
                    "not streaming from {holder}: this server's WAL on timeline {tl} goes to {}, past {fork} where the cluster's history left that timeline, so it has diverged; stopping, then {how}",
                    p.wal_position()
                ),
                None => format!(
                    "not streaming from {holder} for {} ms although it runs: the timelines may have diverged; stopping, then {how}",
                    now.since(since)
                ),
            };
            let mut d = Decision::none(DecisionKind::Rejoin, why);
            if self.once("rejoin", now, REBUILD_COOLDOWN_MS * 2) {
                // A clean stop that failed last time is not tried again.
                let fast_failed = obs.outcomes.iter().any(|o| {
                    o.error.is_some()
                        && o.action
                            == PgAction::Stop {
                                mode: StopMode::Fast,
                            }
                });
                let mode = if fast_failed {
                    StopMode::Immediate
                } else {
                    StopMode::Fast
                };
                d.actions.push(pg(PgAction::Stop { mode }));
                d.actions.push(pg(rebuild));
                self.not_streaming_since = None;
                if fork.is_some() {
                    self.fork_rewound = fork;
                }
            }
            return d;
        }
        Decision::none(
            DecisionKind::Follow,
            format!("waiting for replication from {holder} to stream"),
        )
    }

    /// How a diverged node becomes a replica of `holder` again: `pg_rewind` when
    /// configured (a base backup follows if it fails), else a fresh base backup.
    pub(super) fn rebuild(&mut self, holder: &NodeId) -> (PgAction, String) {
        self.rebuilding = !self.config.use_pg_rewind;
        if self.config.use_pg_rewind {
            (
                PgAction::Rewind {
                    source: holder.clone(),
                },
                format!("pg_rewind from {holder}"),
            )
        } else {
            (
                PgAction::Clone {
                    source: holder.clone(),
                },
                format!("a fresh base backup from {holder}"),
            )
        }
    }

    /// The steps after a `pg_rewind` of the previous decision, for a stopped follower: a
    /// successful one is followed by a start as a replica (and recorded), a failed one by
    /// a fresh base backup.
    pub(super) fn after_rebuild(
        &mut self,
        obs: &Observation<'_>,
        holder: &NodeId,
        holder_ok: bool,
    ) -> Option<Decision> {
        let me = self.node().clone();
        let now = obs.now;
        let outcome = obs
            .outcomes
            .iter()
            .rev()
            .find(|o| matches!(o.action, PgAction::Rewind { .. }))?;
        let record = |reason: String| {
            propose(Operation::Record {
                kind: HistoryKind::Operation,
                node: Some(me.clone()),
                actor: format!("ha:{me}"),
                reason,
            })
        };
        match (&outcome.action, &outcome.error) {
            (PgAction::Rewind { source }, None) => {
                let mut d = Decision::none(
                    DecisionKind::Rejoin,
                    format!("rewound from {source}: starting as a replica of {holder}"),
                );
                d.actions.push(record(format!(
                    "{me} rewound from {source} with pg_rewind; it rejoins as a replica of {holder}"
                )));
                d.actions.push(pg(PgAction::Start {
                    upstream: Some(holder.clone()),
                }));
                self.last_action.insert("start", now);
                Some(d)
            }
            (PgAction::Rewind { source }, Some(error)) => {
                if obs.pg.data == DataDirState::Empty {
                    return None;
                }
                let mut d = Decision::none(
                    DecisionKind::Rejoin,
                    format!(
                        "pg_rewind from {source} failed ({error}): taking a fresh base backup from {holder}"
                    ),
                );
                if holder_ok {
                    d.actions.push(pg(PgAction::Clone {
                        source: holder.clone(),
                    }));
                    self.last_action.insert("clone", now);
                    self.rebuilding = true;
                } else {
                    d.reason = format!(
                        "pg_rewind from {source} failed ({error}): waiting for primary {holder} to run before a base backup"
                    );
                }
                Some(d)
            }
            _ => None,
        }
    }

    /// A follower in maintenance mode: nothing automatic, except what an operator's
    /// switchover implies — a running replica is pointed at the new primary, and the
    /// former primary that handed the lease over starts again as its replica.
    pub(super) fn follower_paused(&mut self, obs: &Observation<'_>, holder: NodeId) -> Decision {
        let now = obs.now;
        let p = obs.pg;
        if !p.running && self.stepped_down.is_some() && p.data != DataDirState::Empty {
            let mut d = Decision::none(
                DecisionKind::Follow,
                format!(
                    "maintenance mode: this node handed the lease to {holder} in a switchover; starting it as its replica"
                ),
            );
            if self.once("start", now, ACTION_COOLDOWN_MS) {
                d.actions.push(pg(PgAction::Start {
                    upstream: Some(holder),
                }));
            }
            return d;
        }
        if p.running
            && p.reachable
            && p.role() == Role::Replica
            && p.upstream.as_ref() != Some(&holder)
        {
            let mut d = Decision::none(
                DecisionKind::Follow,
                format!("maintenance mode: pointing replication at the primary {holder}"),
            );
            if self.once("follow", now, ACTION_COOLDOWN_MS / 2) {
                d.actions.push(pg(PgAction::Follow {
                    upstream: Some(holder),
                }));
            }
            return d;
        }
        if p.running && p.streaming {
            self.stepped_down = None;
        }
        Decision::none(
            DecisionKind::Paused,
            format!("maintenance mode: {holder} is primary"),
        )
    }
}

/// Whether this replica's WAL has certainly diverged from the holder's history, decided
/// from the cluster's history at once rather than after `member_ttl` without streaming:
/// the holder is on a newer timeline, a lease acquisition (failover or switchover)
/// recorded that its taker left this server's timeline at some position, and this
/// server's WAL goes past the lowest such position. Returns (timeline, fork position).
///
/// Sound in both directions that matter: a taker promotes at the end of the WAL it
/// received, at or after the position it recorded, so WAL past the *lowest* recorded
/// position may at worst be rewound needlessly (`pg_rewind` then finds nothing to do);
/// WAL at or before it is a prefix of the new timeline and is left to stream.
fn diverged_by_history(
    state: &ClusterState,
    p: &PgStatus,
    holder: &NodeId,
) -> Option<(crate::types::Timeline, crate::types::Lsn)> {
    let holder_tl = state.members.get(holder)?.timeline;
    if p.streaming || p.timeline >= holder_tl {
        return None;
    }
    let fork = state
        .history
        .iter()
        .filter(|e| matches!(e.kind, HistoryKind::Failover | HistoryKind::Switchover))
        .filter(|e| e.timeline == p.timeline)
        .map(|e| e.lsn)
        .min()?;
    (p.wal_position() > fork).then_some((p.timeline, fork))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{self, me, node, observation};
    use super::*;
    use crate::decide::ActionOutcome;
    use crate::status::MemberStatus;
    use crate::types::{Lsn, Timeline};

    fn primary(n: &str) -> MemberStatus {
        fixtures::primary(n, 3, 1000)
    }

    /// Issue 20 (rejoin): a replica whose WAL goes past the position where the cluster's
    /// history says the primary's timeline forked from its own is rewound at once, not
    /// after `member_ttl` without streaming; one whose WAL stops before it waits to
    /// stream.
    #[test]
    fn a_replica_past_the_recorded_fork_is_rewound_at_once() {
        let me = me();
        let mut state = ClusterState::default();
        state.members.insert(node("n3"), primary("n3"));
        state.history.push_back(crate::state::HistoryEntry {
            seq: 1,
            ts_unix_ms: 0,
            kind: HistoryKind::Failover,
            node: Some(node("n3")),
            epoch: crate::types::Epoch(3),
            timeline: Timeline(2),
            lsn: Lsn(4000),
            actor: "ha:n3".into(),
            reason: String::new(),
        });
        let standby = |lsn: u64| {
            let mut pg = PgStatus::stopped(DataDirState::Initialized { system_id: 1 });
            pg.running = true;
            pg.reachable = true;
            pg.in_recovery = true;
            pg.timeline = Timeline(2);
            pg.replay_lsn = Some(Lsn(lsn));
            pg.upstream = Some(node("n3"));
            pg
        };
        let decide = |lsn: u64| {
            let mut d = Decider::new(me.clone(), Millis(0));
            let pg = standby(lsn);
            let obs = observation(10_000, &pg, &state, &[]);
            d.follower_steps(&state, &obs, node("n3"))
        };
        let past = decide(5000);
        assert_eq!(past.kind, DecisionKind::Rejoin, "{past:?}");
        assert!(past.reason.contains("diverged"), "{}", past.reason);
        assert!(
            past.actions.iter().any(|a| matches!(
                a,
                Action::Pg {
                    action: PgAction::Rewind { .. }
                }
            )),
            "{past:?}"
        );
        let before = decide(3000);
        assert_eq!(before.kind, DecisionKind::Follow, "{before:?}");
        assert!(before.actions.is_empty(), "{before:?}");
    }

    /// A replica whose data directory cannot start as a standby of the primary (here:
    /// it holds WAL of a timeline the primary's history lacks, after a rewind that could
    /// not run because the source died) is rebuilt after three failed starts, instead of
    /// being started for ever (found by the e2e kill rounds in strict quorum mode).
    #[test]
    fn a_replica_that_cannot_start_is_rebuilt() {
        let me = me();
        let mut d = Decider::new(me, Millis(0));
        let mut state = ClusterState::default();
        state.members.insert(node("n3"), primary("n3"));
        let pg = PgStatus::stopped(DataDirState::Initialized { system_id: 1 });
        let failed = [ActionOutcome {
            action: PgAction::Start {
                upstream: Some(node("n3")),
            },
            error: Some(
                "FATAL: requested timeline 3 does not contain minimum recovery point".into(),
            ),
        }];
        let mut actions = Vec::new();
        for i in 0..4u64 {
            let outcomes: &[ActionOutcome] = if i == 0 { &[] } else { &failed };
            let obs = observation(10_000 + i * 2_000, &pg, &state, outcomes);
            let decision = d.follower_steps(&state, &obs, node("n3"));
            actions.push((decision.kind, decision.actions));
        }
        assert!(
            actions[..3].iter().all(|(_, a)| a.iter().any(|a| matches!(
                a,
                Action::Pg {
                    action: PgAction::Start { .. }
                }
            ))),
            "three starts first: {actions:?}"
        );
        let (kind, last) = &actions[3];
        assert_eq!(*kind, DecisionKind::Rejoin, "{actions:?}");
        assert!(
            last.iter().any(|a| matches!(
                a,
                Action::Pg {
                    action: PgAction::Rewind { .. } | PgAction::Clone { .. }
                }
            )),
            "then a rebuild: {last:?}"
        );
    }
}
