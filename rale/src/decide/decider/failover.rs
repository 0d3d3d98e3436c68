//! Failover: detach, wait for reports, rank candidates, take the lease, promote.

use super::*;

impl Decider {
    pub(super) fn failover(&mut self, state: &ClusterState, obs: &Observation<'_>) -> Decision {
        let now = obs.now;
        let p = obs.pg;
        let epoch = state.epoch();
        let old_holder = state.lease.as_ref().and_then(|l| l.holder.clone());
        let successor = state.lease.as_ref().and_then(|l| l.successor.clone());
        let handed_to_me = state.holder().is_none() && successor.as_ref() == Some(self.node());
        let requested = state.switchover.as_ref().and_then(|s| s.to.clone());
        if state.paused && requested.is_none() && !handed_to_me {
            return Decision::none(
                DecisionKind::Paused,
                "maintenance mode: the primary lease lapsed but no failover is started (an operator may fail over to a named member)",
            );
        }
        if let Some(p) = self.binding_promise(now) {
            return Decision::none(
                DecisionKind::FailoverBlocked,
                format!(
                    "failsafe mode: this member promised {} (epoch {}) not to take over for {} ms more",
                    p.primary,
                    p.epoch,
                    p.until.since(now)
                ),
            );
        }
        let since = match self.expired_since {
            Some((e, t)) if e == epoch => t,
            _ => {
                self.expired_since = Some((epoch, now));
                now
            }
        };
        let mut actions = Vec::new();

        // 0. A stopped server cannot report its position nor be promoted; after a full
        //    cluster restart every server is stopped and the lease released, and nobody
        //    would ever move. Start it as a detached standby (never as a primary: the
        //    lease is not ours), then it detaches and competes like any replica.
        if !p.running && matches!(p.data, DataDirState::Initialized { .. }) {
            if self.once("start", now, ACTION_COOLDOWN_MS) {
                return Decision {
                    kind: DecisionKind::Detach,
                    reason: "primary lost and PostgreSQL is stopped here: starting it as a detached standby so that it reports its position".into(),
                    actions: vec![
                        pg(PgAction::Follow { upstream: None }),
                        pg(PgAction::Start { upstream: None }),
                    ],
                    lease: None,
                    renewal: None,
                    failsafe: None,
                };
            }
            return Decision::none(
                DecisionKind::Detach,
                "primary lost: waiting for PostgreSQL to start as a detached standby",
            );
        }

        // 1. Stop acknowledging the old primary and record our final position.
        if p.running && p.reachable && p.role() == Role::Replica {
            if p.upstream.is_some() || p.streaming {
                if !handed_to_me && self.once("detach", now, ACTION_COOLDOWN_MS / 2) {
                    actions.push(pg(PgAction::Follow { upstream: None }));
                }
            } else if self.detached.map(|d| d.epoch) != Some(epoch) {
                self.detached = Some(Detachment {
                    epoch,
                    lsn: p.wal_position(),
                    timeline: p.timeline,
                });
            }
        }
        if p.running && p.reachable && p.role() == Role::Primary {
            // We run as a primary without the lease (e.g. after our own agent restarted).
            return Decision {
                kind: DecisionKind::Fence,
                reason: "running as a primary without holding the lease: stopping PostgreSQL"
                    .into(),
                actions: vec![pg(PgAction::Stop {
                    mode: StopMode::Immediate,
                })],
                lease: None,
                renewal: None,
                failsafe: None,
            };
        }

        // 2. A planned switchover handed the lease to us: take it at once.
        if handed_to_me {
            if p.running && p.reachable && p.role() == Role::Replica {
                let renewals = state.lease.as_ref().map(|l| l.renewals).unwrap_or(0);
                actions.push(propose(Operation::AcquireLease {
                    node: self.node().clone(),
                    expected_epoch: epoch,
                    expected_renewals: renewals,
                    holder_clock: now,
                    timeline: p.timeline,
                    lsn: p.wal_position(),
                    kind: HistoryKind::Switchover,
                    reason: "planned switchover: the former primary handed over the lease".into(),
                }));
                return Decision {
                    kind: DecisionKind::Switchover,
                    reason: "taking the lease handed over by the former primary".into(),
                    actions,
                    lease: None,
                    renewal: None,
                    failsafe: None,
                };
            }
            return Decision {
                kind: DecisionKind::Switchover,
                reason: "lease handed to this node but PostgreSQL is not a running replica".into(),
                actions,
                lease: None,
                renewal: None,
                failsafe: None,
            };
        }

        // 3. Decide who takes over.
        let fresh = self.fresh_members(now);
        let ranked = rank_candidates(state, &fresh, epoch, old_holder.as_ref(), true);
        let pending: Vec<&NodeId> = state
            .members
            .values()
            .filter(|m| fresh.contains(&m.node) && Some(&m.node) != old_holder.as_ref())
            .filter(|m| m.running && m.role == Role::Replica)
            .filter(|m| m.detached.map(|d| d.epoch) != Some(epoch))
            .map(|m| &m.node)
            .collect();
        let waited = now.since(since) >= ms(self.config.detach_timeout);
        if sync_restricted(state) {
            let r = &state.sync.standbys;
            let detached_in_r = state
                .members
                .values()
                .filter(|m| r.contains(&m.node) && m.detached.map(|d| d.epoch) == Some(epoch))
                .count();
            let need = promotion_quorum(
                r.len(),
                usize::try_from(state.sync.quorum).unwrap_or(usize::MAX),
            );
            if detached_in_r < need {
                return Decision {
                    kind: DecisionKind::FailoverBlocked,
                    reason: format!(
                        "primary lost; synchronous mode needs {need} of the recorded synchronous set {:?} detached before promoting, have {detached_in_r}",
                        r.iter().map(NodeId::as_str).collect::<Vec<_>>()
                    ),
                    actions,
                    lease: None,
                    renewal: None,
                    failsafe: None,
                };
            }
        } else if !pending.is_empty() && !waited {
            return Decision {
                kind: DecisionKind::FailoverBlocked,
                reason: format!(
                    "primary lost; waiting up to {} ms for {:?} to detach and report their WAL position",
                    ms(self.config.detach_timeout),
                    pending.iter().map(|n| n.as_str()).collect::<Vec<_>>()
                ),
                actions,
                lease: None,
                renewal: None,
                failsafe: None,
            };
        }
        let eligible: Vec<_> = ranked
            .iter()
            .filter(|c| c.eligibility == Eligibility::Eligible)
            .collect();
        let wanted = requested
            .as_ref()
            .and_then(|r| eligible.iter().find(|c| &c.node == r));
        if state.paused && wanted.is_none() {
            // Maintenance mode: only the member the operator named may take over.
            let why = ranked
                .iter()
                .find(|c| Some(&c.node) == requested.as_ref())
                .map(|c| match &c.eligibility {
                    Eligibility::Ineligible(r) => r.clone(),
                    Eligibility::Eligible => "eligible".into(),
                })
                .unwrap_or_else(|| "not a member".into());
            return Decision {
                kind: DecisionKind::FailoverBlocked,
                reason: format!(
                    "maintenance mode: failover to {} requested, but it cannot be promoted ({why})",
                    requested.as_ref().map(NodeId::as_str).unwrap_or("?")
                ),
                actions,
                lease: None,
                renewal: None,
                failsafe: None,
            };
        }
        let chosen = wanted.or_else(|| eligible.first()).map(|c| c.node.clone());
        let Some(chosen) = chosen else {
            let why: Vec<String> = ranked
                .iter()
                .map(|c| match &c.eligibility {
                    Eligibility::Ineligible(r) => format!("{}: {r}", c.node),
                    Eligibility::Eligible => format!("{}: eligible", c.node),
                })
                .collect();
            return Decision {
                kind: DecisionKind::FailoverBlocked,
                reason: format!(
                    "primary lost; no member can be promoted ({})",
                    why.join("; ")
                ),
                actions,
                lease: None,
                renewal: None,
                failsafe: None,
            };
        };
        if &chosen != self.node() {
            return Decision {
                kind: DecisionKind::FailoverBlocked,
                reason: format!(
                    "primary lost; {chosen} is the best candidate, waiting for it to take over"
                ),
                actions,
                lease: None,
                renewal: None,
                failsafe: None,
            };
        }
        let my_pub = state.members.get(self.node());
        let lsn = my_pub
            .and_then(|m| m.detached)
            .map(|d| d.lsn)
            .unwrap_or(p.wal_position());
        let renewals = state.lease.as_ref().map(|l| l.renewals).unwrap_or(0);
        let reason = format!(
            "primary {} lost (lease epoch {epoch} unchanged for {} ms): {} is the best candidate at {lsn}",
            old_holder
                .as_ref()
                .map(NodeId::as_str)
                .unwrap_or("(released)"),
            now.since(
                self.lease_seen
                    .as_ref()
                    .map(|(_, t)| *t)
                    .unwrap_or(self.started)
            ),
            self.node()
        );
        actions.push(propose(Operation::AcquireLease {
            node: self.node().clone(),
            expected_epoch: epoch,
            expected_renewals: renewals,
            holder_clock: now,
            timeline: p.timeline,
            lsn,
            kind: HistoryKind::Failover,
            reason: reason.clone(),
        }));
        Decision {
            kind: DecisionKind::Failover,
            reason,
            actions,
            lease: None,
            renewal: None,
            failsafe: None,
        }
    }
}
