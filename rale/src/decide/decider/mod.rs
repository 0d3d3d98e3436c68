//! The default [`Policy`]: lease-based primary election with fencing, detach-then-promote
//! failover, in-place restart, rejoin and planned switchover.

use std::collections::{BTreeMap, BTreeSet};

use rale_sync::quorum::promotion_quorum;

use super::failsafe::{FailsafeMember, FailsafePromise, FailsafeRequest, FailsafeRound};
use super::{
    Action, Decision, DecisionKind, LeaseHold, NodeIdentity, Observation, ParameterOutcome,
    PgAction, Policy, RenewalGrant,
};
use crate::config::DynamicConfig;
use crate::decide::candidate::{Eligibility, rank_candidates, sync_restricted};
use crate::pg::{SlotPlan, StopMode};
use crate::state::{ClusterState, HistoryKind, Lease, Operation};
use crate::status::{DataDirState, Detachment, MemberStatus, PgStatus};
use crate::types::{Epoch, Millis, NodeId, Role};

/// What identifies one state of the lease record: any change restarts observers' timers.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LeaseKey {
    holder: Option<NodeId>,
    epoch: Epoch,
    renewals: u64,
    successor: Option<NodeId>,
}

impl LeaseKey {
    fn of(lease: Option<&Lease>) -> Self {
        match lease {
            None => LeaseKey {
                holder: None,
                epoch: Epoch(0),
                renewals: 0,
                successor: None,
            },
            Some(l) => LeaseKey {
                holder: l.holder.clone(),
                epoch: l.epoch,
                renewals: l.renewals,
                successor: l.successor.clone(),
            },
        }
    }
}

/// Cool-down between repeated PostgreSQL actions of one kind, so an action still in
/// progress is not requested again on every loop.
const ACTION_COOLDOWN_MS: u64 = 1_000;
/// Cool-down for long actions (clone, rejoin).
const REBUILD_COOLDOWN_MS: u64 = 5_000;
/// Failed starts as a replica after which the data directory is rebuilt (`pg_rewind`,
/// else a base backup) instead of started again.
const REPLICA_START_ATTEMPTS: u32 = 3;
/// How often the primary re-asserts its replication slots even when nothing changed.
const SLOTS_REFRESH_MS: u64 = 10_000;

/// The default decision core. See the [module documentation](super) for the rules.
#[derive(Debug)]
pub struct Decider {
    me: NodeIdentity,
    started: Millis,
    /// Last known dynamic configuration (kept for decisions without a majority).
    config: DynamicConfig,
    /// The lease record as last seen, and when (our clock) it last changed.
    lease_seen: Option<(LeaseKey, Millis)>,
    /// Members' heartbeats as last seen, and when they last changed.
    members_seen: BTreeMap<NodeId, (u64, Millis)>,
    /// While we hold the lease: its epoch and our conservative deadline.
    lease_deadline: Option<(Epoch, Millis)>,
    last_renew_sent: Option<Millis>,
    heartbeat: u64,
    last_published: Option<(Millis, MemberStatus)>,
    detached: Option<Detachment>,
    expired_since: Option<(Epoch, Millis)>,
    crash_since: Option<Millis>,
    not_streaming_since: Option<Millis>,
    /// Since when the replica has been streaming without a break (see `follower`).
    streaming_since: Option<Millis>,
    /// The (timeline, fork position) for which the cluster's history already made this
    /// node rewind (see `follower::diverged_by_history`).
    fork_rewound: Option<(crate::types::Timeline, crate::types::Lsn)>,
    /// Failed starts as a replica in a row (reset by a running server): a data
    /// directory that cannot start as a standby of the primary (e.g. it holds WAL of a
    /// timeline the primary's history does not contain, after a rewind that could not
    /// run) is rebuilt instead of started for ever.
    replica_start_failures: u32,
    /// We stopped PostgreSQL to hand the lease to this member.
    switchover_stop: Option<(Epoch, NodeId)>,
    /// Where this node's server, running as the primary, last was (timeline, position):
    /// recorded when it releases the lease, for failover's lag rule.
    last_primary_position: Option<(crate::types::Timeline, crate::types::Lsn)>,
    /// This node promoted itself for that epoch, and since when (our clock) it runs as
    /// that primary (set on the first step that sees it running as one).
    promoted: Option<(Epoch, Option<Millis>)>,
    /// We handed the lease of this epoch over in a planned switchover: our stopped server
    /// is started as a replica of the new primary even in maintenance mode (the
    /// operator's switchover includes it).
    stepped_down: Option<Epoch>,
    last_slots: Option<(Millis, SlotPlan)>,
    /// On a replica: copies of each permanent logical slot requested that have not shown
    /// up yet (see `logical_slots`).
    slot_copies: BTreeMap<String, u32>,
    /// On a replica: since when it waits for a replica named before it to copy first.
    copy_wait_since: Option<Millis>,
    catch_up: Option<crate::decide::sync::CatchUp>,
    /// As the primary of this epoch: since when each standby has streamed from us.
    standbys_streaming: (Epoch, BTreeMap<NodeId, Millis>),
    last_action: BTreeMap<&'static str, Millis>,
    /// A base backup of the current decision rebuilds a diverged node (recorded in the
    /// history once it succeeded).
    rebuilding: bool,
    /// Failsafe mode, as a replica: the promise this node gave (from the observation).
    promise: Option<FailsafePromise>,
    /// Failsafe mode, as the primary: how far confirmations carried lease `epoch` while
    /// consensus did not answer (kept when consensus returns, until renewals pass it).
    failsafe_deadline: Option<(Epoch, Millis)>,
    /// Every other member of the last cluster state read: who must confirm.
    failsafe_members: Vec<FailsafeMember>,
}

fn pg(action: PgAction) -> Action {
    Action::Pg { action }
}

fn propose(op: Operation) -> Action {
    Action::Propose { op }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

mod bootstrap;
mod failover;
#[cfg(test)]
mod fixtures;
mod follower;
mod holder;
mod logical_slots;
mod parameters;
mod switchover;

impl Decider {
    /// A decider for `me`, started at `now` (its timers start conservatively: a lease seen
    /// for the first time is treated as just renewed).
    pub fn new(me: NodeIdentity, now: Millis) -> Self {
        Self {
            me,
            started: now,
            config: DynamicConfig::default(),
            lease_seen: None,
            members_seen: BTreeMap::new(),
            lease_deadline: None,
            last_renew_sent: None,
            heartbeat: 0,
            last_published: None,
            detached: None,
            expired_since: None,
            crash_since: None,
            not_streaming_since: None,
            streaming_since: None,
            fork_rewound: None,
            replica_start_failures: 0,
            switchover_stop: None,
            stepped_down: None,
            promoted: None,
            last_primary_position: None,
            last_slots: None,
            slot_copies: BTreeMap::new(),
            copy_wait_since: None,
            catch_up: None,
            standbys_streaming: (Epoch::default(), BTreeMap::new()),
            last_action: BTreeMap::new(),
            rebuilding: false,
            promise: None,
            failsafe_deadline: None,
            failsafe_members: Vec::new(),
        }
    }

    /// The node this decider runs for.
    pub fn identity(&self) -> &NodeIdentity {
        &self.me
    }

    /// Replaces the node's identity (its tags or advertised addresses changed on reload);
    /// the next publication carries the new values.
    pub fn set_identity(&mut self, me: NodeIdentity) {
        self.me = me;
    }

    fn node(&self) -> &NodeId {
        &self.me.node
    }

    /// Returns true (and records `now`) when `kind` was not requested within `cooldown_ms`.
    fn once(&mut self, kind: &'static str, now: Millis, cooldown_ms: u64) -> bool {
        match self.last_action.get(kind) {
            Some(t) if now.since(*t) < cooldown_ms => false,
            _ => {
                self.last_action.insert(kind, now);
                true
            }
        }
    }

    fn observe(&mut self, state: &ClusterState, now: Millis) {
        self.config = state.config.clone();
        let key = LeaseKey::of(state.lease.as_ref());
        match &self.lease_seen {
            Some((k, _)) if *k == key => {}
            _ => self.lease_seen = Some((key, now)),
        }
        self.lease_deadline = match &state.lease {
            Some(l) if l.holder.as_ref() == Some(self.node()) => {
                let deadline = if l.holder_clock > now || l.holder_clock < self.started {
                    // A stamp this agent process did not write: from a future reading (the
                    // host rebooted and its clock restarted) or from before this process
                    // started — possibly on another boot, whose readings mean nothing on
                    // this clock. Trust nothing until a renewal of our own lands.
                    now
                } else {
                    l.holder_clock.plus(self.config.holder_validity_ms())
                };
                // Confirmations gathered while consensus did not answer carry the lease
                // as far as a renewal sent when they were asked for would have.
                let deadline = match self.failsafe_deadline {
                    Some((e, d)) if e == l.epoch && d > deadline => d,
                    _ => deadline,
                };
                Some((l.epoch, deadline))
            }
            _ => None,
        };
        if self.lease_deadline.map(|(e, _)| e) != self.failsafe_deadline.map(|(e, _)| e) {
            self.failsafe_deadline = None;
        }
        self.failsafe_members = state
            .members
            .values()
            .filter(|m| m.node != self.me.node && !state.removed.contains(&m.node))
            .map(|m| FailsafeMember {
                node: m.node.clone(),
                api_url: m.api_url.clone(),
            })
            .collect();
        self.members_seen
            .retain(|n, _| state.members.contains_key(n));
        for (n, m) in &state.members {
            match self.members_seen.get(n) {
                Some((hb, _)) if *hb == m.heartbeat => {}
                _ => {
                    self.members_seen.insert(n.clone(), (m.heartbeat, now));
                }
            }
        }
    }

    fn fresh_members(&self, now: Millis) -> BTreeSet<NodeId> {
        let ttl = ms(self.config.member_ttl);
        self.members_seen
            .iter()
            .filter(|(_, (_, seen))| now.since(*seen) < ttl)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Whether, in this node's view, nobody validly holds the lease.
    fn lease_expired(&self, state: &ClusterState, now: Millis) -> bool {
        let since = self
            .lease_seen
            .as_ref()
            .map(|(_, t)| *t)
            .unwrap_or(self.started);
        let waited = now.since(since) >= self.config.lease_ttl_ms();
        if let (Some(p), Some(l)) = (&self.promise, &state.lease)
            && p.live(now)
            && l.holder.as_ref() == Some(&p.primary)
            && l.epoch == p.epoch
        {
            // Failsafe mode: we confirmed this very lease to its holder over the agents'
            // API, which is as good as seeing it renewed.
            return false;
        }
        match &state.lease {
            None => true,
            Some(l) if l.holder.is_none() => match &l.successor {
                Some(s) if s != self.node() => waited,
                _ => true,
            },
            Some(_) => waited,
        }
    }

    fn member_status(&self, p: &PgStatus) -> MemberStatus {
        MemberStatus {
            node: self.me.node.clone(),
            api_url: self.me.api_url.clone(),
            pg_host: self.me.pg_host.clone(),
            pg_port: self.me.pg_port,
            role: p.role(),
            running: p.running && p.reachable,
            timeline: p.timeline,
            lsn: p.wal_position(),
            receive_lsn: p.receive_lsn,
            replay_lsn: p.replay_lsn,
            upstream: p.upstream.clone(),
            streaming: p.streaming,
            tags: self.me.tags.clone(),
            detached: self.detached,
            pending_restart: p.pending_restart,
            server_version_num: p.server_version_num,
            logical_slots: logical_slots::published(&self.config, p),
            system_id: match p.data {
                DataDirState::Initialized { system_id } => Some(system_id),
                DataDirState::Empty => None,
            },
            heartbeat: self.heartbeat,
        }
    }

    /// Publishes our status when something significant changed (at once), when its WAL
    /// positions moved (every `publish_interval`: every change would flood consensus),
    /// and otherwise every `idle_publish_interval`, as a heartbeat.
    fn publish(&mut self, p: &PgStatus, now: Millis) -> Option<Action> {
        let mut status = self.member_status(p);
        let due = match &self.last_published {
            None => true,
            Some((at, last)) => {
                let mut a = last.clone();
                let mut b = status.clone();
                // Logical slot positions move with the WAL positions, and are published
                // like them.
                let moved = (a.lsn, a.receive_lsn, a.replay_lsn, &a.logical_slots)
                    != (b.lsn, b.receive_lsn, b.replay_lsn, &b.logical_slots);
                for s in [&mut a, &mut b] {
                    s.lsn = Default::default();
                    s.receive_lsn = None;
                    s.replay_lsn = None;
                    s.logical_slots.clear();
                    s.heartbeat = 0;
                }
                let since = now.since(*at);
                a != b
                    || (moved && since >= ms(self.config.publish_interval))
                    || since >= ms(self.config.idle_publish_interval())
            }
        };
        if !due {
            return None;
        }
        self.heartbeat += 1;
        status.heartbeat = self.heartbeat;
        self.last_published = Some((now, status.clone()));
        Some(propose(Operation::PublishMember { status }))
    }

    fn no_majority(&mut self, obs: &Observation<'_>) -> Decision {
        let now = obs.now;
        let mut confirmed = false;
        if self.config.failsafe_mode
            && let (Some((epoch, deadline)), Some(c)) =
                (self.lease_deadline, obs.failsafe_confirmed)
            && c.epoch == epoch
        {
            let until = c.sent_at.plus(self.config.holder_validity_ms());
            if until > deadline {
                self.lease_deadline = Some((epoch, until));
                self.failsafe_deadline = Some((epoch, until));
            }
            confirmed = now < until;
        }
        match self.lease_deadline {
            Some((epoch, deadline)) if now >= deadline => {
                if self.config.fence {
                    Decision::none(
                        DecisionKind::Fence,
                        format!(
                            "no consensus majority and lease epoch {epoch} ran out: the commit fence \
                             holds every commit until the lease is renewed or taken over"
                        ),
                    )
                } else if obs.pg.running {
                    Decision {
                        kind: DecisionKind::Fence,
                        reason: format!(
                            "no consensus majority and lease epoch {epoch} ran out: stopping PostgreSQL \
                             so that no second primary can accept writes"
                        ),
                        actions: vec![pg(PgAction::Stop {
                            mode: StopMode::Immediate,
                        })],
                        lease: None,
                        renewal: None,
                        failsafe: None,
                    }
                } else {
                    Decision::none(
                        DecisionKind::Fence,
                        "no consensus majority; PostgreSQL stopped",
                    )
                }
            }
            Some((epoch, deadline)) if confirmed => Decision::none(
                DecisionKind::NoMajority,
                format!(
                    "no consensus majority; failsafe mode: all {} other members confirmed lease epoch {epoch}, primary for {} ms more",
                    self.failsafe_members.len(),
                    deadline.since(now)
                ),
            ),
            Some((epoch, deadline)) => Decision::none(
                DecisionKind::NoMajority,
                format!(
                    "no consensus majority; still primary for epoch {epoch} for {} ms unless renewed",
                    deadline.since(now)
                ),
            ),
            None => Decision::none(
                DecisionKind::NoMajority,
                "no consensus majority: taking no decision on the minority side",
            ),
        }
    }
}

impl Policy for Decider {
    fn step(&mut self, obs: &Observation<'_>) -> Decision {
        self.promise = obs.failsafe_promise.cloned();
        let mut decision = self.decide(obs);
        decision.lease = self
            .lease_deadline
            .map(|(epoch, deadline)| LeaseHold { epoch, deadline });
        decision.renewal = self.renewal_grant(obs.now);
        decision.failsafe = self.failsafe_round();
        if let (Some(failure), Some(state)) = (obs.parameters, obs.cluster) {
            decision
                .actions
                .push(self.parameter_failure(failure, state));
        }
        decision
    }

    fn set_identity(&mut self, me: NodeIdentity) {
        Decider::set_identity(self, me);
    }
}

impl Decider {
    fn decide(&mut self, obs: &Observation<'_>) -> Decision {
        let Some(state) = obs.cluster else {
            return self.no_majority(obs);
        };
        if state.removed.contains(self.node()) {
            // Removed by an operator while its agent still runs: take no part at all —
            // publish nothing, claim nothing, and never leave a primary behind.
            self.lease_deadline = None;
            if obs.pg.running && obs.pg.reachable && obs.pg.role() == Role::Primary {
                return Decision {
                    kind: DecisionKind::Removed,
                    reason: "this member was removed from the cluster: stopping its PostgreSQL, which runs as a primary".into(),
                    actions: vec![pg(PgAction::Stop {
                        mode: StopMode::Fast,
                    })],
                    lease: None,
                    renewal: None,
                    failsafe: None,
                };
            }
            return Decision::none(
                DecisionKind::Removed,
                "this member was removed from the cluster (DELETE /api/v1/members): it takes no action until it is added again",
            );
        }
        self.observe(state, obs.now);
        let initialised = state
            .bootstrap
            .as_ref()
            .is_some_and(|b| b.system_id.is_some());
        let mut decision = if !initialised {
            self.bootstrap(state, obs)
        } else if state.holder() == Some(self.node()) {
            self.holder(state, obs)
        } else if !self.lease_expired(state, obs.now) {
            match state.holder().cloned() {
                Some(h) => self.follower(state, obs, h),
                None => Decision::none(
                    DecisionKind::Steady,
                    "lease handed over: waiting for the successor",
                ),
            }
        } else {
            self.failover(state, obs)
        };
        if let Some(publish) = self.publish(obs.pg, obs.now) {
            decision.actions.push(publish);
        }
        decision
    }

    /// Failsafe mode, while this node holds the lease and is not handing it over: whom to
    /// ask for confirmations if consensus does not answer.
    fn failsafe_round(&self) -> Option<FailsafeRound> {
        let (epoch, _) = self.lease_deadline?;
        if !self.config.failsafe_mode || self.switchover_stop.is_some() {
            return None;
        }
        Some(FailsafeRound {
            request: FailsafeRequest {
                primary: self.me.node.clone(),
                epoch,
                ttl_ms: self.config.lease_ttl_ms(),
            },
            members: self.failsafe_members.clone(),
        })
    }

    /// Failsafe mode: the promise that keeps this replica from taking over, if one binds.
    fn binding_promise(&self, now: Millis) -> Option<&FailsafePromise> {
        self.promise
            .as_ref()
            .filter(|p| p.live(now) && p.primary != self.me.node)
    }

    /// While this node holds the lease (as of the last step) and is not handing it over:
    /// how long its agent may keep renewing it while the HA loop is busy. See
    /// [`RenewalGrant`].
    fn renewal_grant(&self, now: Millis) -> Option<RenewalGrant> {
        let (epoch, _) = self.lease_deadline?;
        if self.switchover_stop.is_some() {
            return None;
        }
        let until = match self.crash_since {
            Some(since) => since.plus(ms(self.config.restart_timeout)),
            None => now.plus(self.config.lease_ttl_ms()),
        };
        Some(RenewalGrant {
            epoch,
            until,
            validity_ms: self.config.holder_validity_ms(),
            renew_interval_ms: ms(self.config.renew_interval),
        })
    }
}
