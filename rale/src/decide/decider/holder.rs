//! The lease holder: renewing, fencing, restarting in place, the synchronous set, slots.

use super::*;

impl Decider {
    pub(super) fn renew(&mut self, epoch: Epoch, now: Millis) -> Option<Action> {
        let due = match self.last_renew_sent {
            Some(t) => now.since(t) >= ms(self.config.renew_interval),
            None => true,
        };
        if !due {
            return None;
        }
        self.last_renew_sent = Some(now);
        Some(propose(Operation::RenewLease {
            node: self.node().clone(),
            epoch,
            holder_clock: now,
        }))
    }

    pub(super) fn holder(&mut self, state: &ClusterState, obs: &Observation<'_>) -> Decision {
        let now = obs.now;
        let epoch = state.epoch();
        let deadline = self.lease_deadline.map(|(_, d)| d).unwrap_or(now);
        if obs.pg.running && obs.pg.reachable && obs.pg.role() == Role::Primary {
            self.last_primary_position = Some((obs.pg.timeline, obs.pg.wal_position()));
            self.note_standbys_streaming(epoch, obs.pg, now);
        }
        self.detached = None;
        self.expired_since = None;
        self.not_streaming_since = None;
        self.streaming_since = None;
        self.stepped_down = None;
        let renew = self.renew(epoch, now);
        let with_renew = |mut d: Decision| {
            if let Some(r) = renew.clone() {
                d.actions.insert(0, r);
            }
            d
        };

        // Planned switchover in progress: PostgreSQL was stopped on purpose.
        if let Some((e, target)) = self.switchover_stop.clone() {
            if e == epoch {
                if obs.pg.running {
                    return with_renew(Decision::none(
                        DecisionKind::Switchover,
                        format!("switchover to {target}: waiting for PostgreSQL to stop"),
                    ));
                }
                self.stepped_down = Some(epoch);
                return Decision {
                    kind: DecisionKind::Switchover,
                    reason: format!(
                        "switchover: PostgreSQL stopped cleanly, handing the lease to {target}"
                    ),
                    actions: vec![propose(Operation::ReleaseLease {
                        node: self.node().clone(),
                        epoch,
                        successor: Some(target.clone()),
                        reason: format!("switchover from {} to {target}", self.node()),
                        final_position: self.last_primary_position,
                    })],
                    lease: None,
                    renewal: None,
                    failsafe: None,
                };
            }
            self.switchover_stop = None;
        }

        // A new agent process starts with an unproven deadline (see `observe`); without the
        // fence, a running primary is given one validity period from the agent's start for
        // its first renewal to land before it is stopped — no more than a dead agent would
        // have left it.
        let settled = now.since(self.started) >= self.config.holder_validity_ms();
        if now >= deadline
            && settled
            && !self.config.fence
            && obs.pg.running
            && obs.pg.role() == Role::Primary
        {
            // Renewals did not land in time: stop accepting writes now; renewing later is
            // safe because a takeover needs the lease unchanged.
            return with_renew(Decision {
                kind: DecisionKind::Fence,
                reason: format!("lease epoch {epoch} not renewed in time: stopping PostgreSQL"),
                actions: vec![pg(PgAction::Stop {
                    mode: StopMode::Immediate,
                })],
                lease: None,
                renewal: None,
                failsafe: None,
            });
        }

        if !obs.pg.running || !obs.pg.reachable {
            if state.paused {
                return with_renew(Decision::none(
                    DecisionKind::Paused,
                    "maintenance mode: PostgreSQL is down and will not be restarted automatically",
                ));
            }
            if !self.config.fence && now >= deadline {
                // Without the commit fence, a primary started now could accept writes
                // after its lease ran out: renew first, restart once the lease is valid.
                return with_renew(Decision::none(
                    DecisionKind::Restart,
                    format!(
                        "PostgreSQL is down and lease epoch {epoch} must be renewed before restarting it as primary"
                    ),
                ));
            }
            let since = *self.crash_since.get_or_insert(now);
            let limit = ms(self.config.restart_timeout);
            if now.since(since) < limit {
                let mut d = with_renew(Decision::none(
                    DecisionKind::Restart,
                    format!(
                        "PostgreSQL is down under a live agent: restarting it in place ({} ms left before giving up the lease)",
                        limit - now.since(since)
                    ),
                ));
                if obs.pg.running && !obs.pg.reachable {
                    // A postmaster that runs but does not answer: wait for it.
                    d.reason =
                        "PostgreSQL runs but does not answer: waiting before restarting it".into();
                } else if self.once("start", now, ACTION_COOLDOWN_MS) {
                    d.actions.push(pg(PgAction::Start { upstream: None }));
                }
                return d;
            }
            self.crash_since = None;
            return Decision {
                kind: DecisionKind::Release,
                reason: format!(
                    "PostgreSQL did not come back within restart_timeout ({limit} ms): giving up the lease"
                ),
                actions: vec![
                    pg(PgAction::Stop {
                        mode: StopMode::Immediate,
                    }),
                    propose(Operation::ReleaseLease {
                        node: self.node().clone(),
                        epoch,
                        successor: None,
                        reason: "PostgreSQL could not be restarted in place".into(),
                        final_position: self.last_primary_position,
                    }),
                ],
                lease: None,
                renewal: None,
                failsafe: None,
            };
        }
        self.crash_since = None;

        if obs.pg.in_recovery {
            let mut d = with_renew(Decision::none(
                DecisionKind::Promote,
                format!("holding lease epoch {epoch}: promoting this standby"),
            ));
            // While paused a lease changes hands only on an operator's switchover or
            // failover: that one is completed.
            let taken_over = state.history.iter().rev().any(|h| {
                h.epoch == epoch
                    && h.node.as_ref() == Some(self.node())
                    && matches!(h.kind, HistoryKind::Failover | HistoryKind::Switchover)
            });
            if let Some(p) = self.binding_promise(now) {
                // The lease was claimed before this member promised another primary not
                // to take over: that primary may still act until the promise ends.
                d.kind = DecisionKind::FailoverBlocked;
                d.reason = format!(
                    "holding lease epoch {epoch}, but failsafe mode: this member promised {} (epoch {}) not to promote for {} ms more",
                    p.primary,
                    p.epoch,
                    p.until.since(now)
                );
            } else if state.paused && !taken_over {
                d.kind = DecisionKind::Paused;
                d.reason = "maintenance mode: holding the lease but not promoting".into();
            } else if self.once("promote", now, ACTION_COOLDOWN_MS) {
                self.promoted = Some((epoch, None));
                if state.config.synchronous.mode != rale_sync::SyncMode::Off {
                    // Acknowledge nothing until the new synchronous set is in place.
                    d.actions.push(pg(PgAction::SetSynchronousStandbyNames {
                        value: crate::decide::sync::blocked_names(),
                    }));
                }
                d.actions.push(pg(PgAction::Promote));
            }
            return d;
        }

        // A running primary holding the lease. In maintenance mode only a switchover to a
        // member the operator named goes ahead (nothing automatic happens while paused).
        let manual = state.switchover.as_ref().is_some_and(|s| s.to.is_some());
        if (!state.paused || manual)
            && let Some(d) = self.switchover(state, obs, epoch)
        {
            return d;
        }
        let mut d = with_renew(Decision::none(
            if renew.is_some() {
                DecisionKind::Renew
            } else {
                DecisionKind::Steady
            },
            format!("primary with lease epoch {epoch}"),
        ));
        if crate::decide::sync::wanted(state, obs.pg) {
            let fresh = self.fresh_members(now);
            let me = self.node().clone();
            // Right after a promotion no standby streams from us yet: for one member_ttl,
            // the replicas that are healthy count as synchronous candidates, so that
            // commits wait for them to reconnect instead of going asynchronous.
            let since = match &mut self.promoted {
                Some((e, t)) if *e == epoch => Some(*t.get_or_insert(now)),
                _ => None,
            };
            let mut expected = crate::decide::sync::Expected {
                settled: self.settled_standbys(epoch, now),
                ..Default::default()
            };
            if since.is_some_and(|t| now.since(t) < ms(self.config.member_ttl)) {
                expected.reconnecting = state
                    .members
                    .values()
                    .filter(|m| m.node != me && fresh.contains(&m.node))
                    .filter(|m| m.running && m.role == Role::Replica)
                    .filter(|m| m.timeline <= obs.pg.timeline)
                    .map(|m| m.node.clone())
                    .collect();
            }
            if let Some((a, why)) = crate::decide::sync::next_step(
                &me,
                epoch,
                state,
                obs.pg,
                &fresh,
                &expected,
                &mut self.catch_up,
            ) {
                let is_pg = matches!(a, Action::Pg { .. });
                if !is_pg || self.once("sync", now, ACTION_COOLDOWN_MS / 2) {
                    d.kind = DecisionKind::Replication;
                    d.reason = why;
                    d.actions.push(a);
                }
            }
        }
        if let Some(a) = self.slots(state, now) {
            d.actions.push(a);
        }
        d
    }

    /// Records since when (our clock) each standby has streamed from this primary
    /// without a break, as far as this loop saw; a standby seen not streaming starts
    /// again.
    fn note_standbys_streaming(&mut self, epoch: Epoch, pg: &PgStatus, now: Millis) {
        if self.standbys_streaming.0 != epoch {
            self.standbys_streaming = (epoch, BTreeMap::new());
        }
        let streaming: BTreeSet<NodeId> = pg
            .replicas
            .iter()
            .filter(|r| r.state == "streaming")
            .filter_map(|r| NodeId::new(r.application_name.to_ascii_lowercase()).ok())
            .collect();
        let since = &mut self.standbys_streaming.1;
        since.retain(|n, _| streaming.contains(n));
        for n in streaming {
            since.entry(n).or_insert(now);
        }
    }

    /// The standbys that have streamed from this primary for at least two publishing
    /// intervals: only these may join the recorded synchronous set. A standby whose WAL
    /// receiver keeps reconnecting (its history diverged, say) shows `streaming` for a
    /// moment now and then; recording it would make failover wait for a member that holds
    /// nothing and may never be able to start again.
    fn settled_standbys(&self, epoch: Epoch, now: Millis) -> BTreeSet<NodeId> {
        if self.standbys_streaming.0 != epoch {
            return BTreeSet::new();
        }
        let settle = ms(self.config.publish_interval).saturating_mul(2);
        self.standbys_streaming
            .1
            .iter()
            .filter(|(_, t)| now.since(**t) >= settle)
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub(super) fn slots(&mut self, state: &ClusterState, now: Millis) -> Option<Action> {
        let members: Vec<String> = state
            .members
            .keys()
            .filter(|n| *n != self.node())
            .map(NodeId::slot_name)
            .collect();
        let mine = self.node().slot_name();
        let permanent = state
            .config
            .slots
            .iter()
            .filter(|(name, _)| !members.contains(name) && **name != mine)
            .map(|(name, spec)| (name.clone(), spec.clone()))
            .collect();
        let removed = state
            .removed
            .iter()
            .filter(|n| !state.members.contains_key(*n))
            .map(NodeId::slot_name)
            .filter(|s| !members.contains(s) && !state.config.slots.contains_key(s))
            .collect();
        let plan = SlotPlan {
            members,
            permanent,
            removed,
            ignore: state.config.ignore_slots.clone(),
        };
        let due = match &self.last_slots {
            Some((at, last)) => *last != plan || now.since(*at) >= SLOTS_REFRESH_MS,
            None => true,
        };
        if !due {
            return None;
        }
        self.last_slots = Some((now, plan.clone()));
        Some(pg(PgAction::EnsureSlots { plan }))
    }
}
