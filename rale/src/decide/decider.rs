//! The default [`Policy`]: lease-based primary election with fencing, detach-then-promote
//! failover, in-place restart, rejoin and planned switchover.

use std::collections::{BTreeMap, BTreeSet};

use rale_sync::quorum::promotion_quorum;

use super::candidate::{Eligibility, rank_candidates, sync_restricted};
use super::{
    Action, Decision, DecisionKind, LeaseHold, NodeIdentity, Observation, ParameterOutcome,
    PgAction, Policy, RenewalGrant,
};
use crate::config::DynamicConfig;
use crate::pg::StopMode;
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
    last_slots: Option<(Millis, Vec<String>)>,
    catch_up: Option<super::sync::CatchUp>,
    last_action: BTreeMap<&'static str, Millis>,
    /// A base backup of the current decision rebuilds a diverged node (recorded in the
    /// history once it succeeded).
    rebuilding: bool,
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

impl Decider {
    /// What follows a failure to apply the cluster's PostgreSQL parameters here: on the
    /// primary, a change the server refused is rolled back to the parameters of the last
    /// configuration that applied (compare-and-set on the failed version, so a newer
    /// change by an operator wins); anything else — a replica, a transient failure,
    /// nothing to go back to — is recorded in the history.
    fn parameter_failure(&self, failure: &ParameterOutcome, state: &ClusterState) -> Action {
        let me = self.node().clone();
        let actor = format!("ha:{me}");
        let failed = |version: u64, error: &str| {
            format!(
                "PostgreSQL parameters of configuration version {version} could not be applied: {error}"
            )
        };
        match failure {
            ParameterOutcome::Refused {
                version,
                error,
                last_good: Some(good),
            } if state.holder() == Some(&me)
                && (good.postgresql_parameters != state.config.postgresql_parameters
                    || good.commit_level != state.config.synchronous.commit_level) =>
            {
                let mut config = state.config.clone();
                config.postgresql_parameters = good.postgresql_parameters.clone();
                config.synchronous.commit_level = good.commit_level;
                propose(Operation::SetConfig {
                    expected_version: Some(*version),
                    config,
                    actor,
                    reason: format!(
                        "{}; rolled back to the parameters that applied (on {me})",
                        failed(*version, error)
                    ),
                })
            }
            ParameterOutcome::Refused { version, error, .. } => propose(Operation::Record {
                kind: HistoryKind::Config,
                node: Some(me.clone()),
                actor,
                reason: format!("{} (on {me})", failed(*version, error)),
            }),
            ParameterOutcome::Transient {
                version,
                error,
                retry_s,
            } => propose(Operation::Record {
                kind: HistoryKind::Config,
                node: Some(me.clone()),
                actor,
                reason: format!(
                    "{}; retrying every {retry_s} s (on {me})",
                    failed(*version, error)
                ),
            }),
        }
    }
}

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
            switchover_stop: None,
            stepped_down: None,
            promoted: None,
            last_primary_position: None,
            last_slots: None,
            catch_up: None,
            last_action: BTreeMap::new(),
            rebuilding: false,
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
                Some((l.epoch, deadline))
            }
            _ => None,
        };
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
            system_id: match p.data {
                DataDirState::Initialized { system_id } => Some(system_id),
                DataDirState::Empty => None,
            },
            heartbeat: self.heartbeat,
        }
    }

    /// Publishes our status when something significant changed or the interval passed.
    /// WAL positions alone do not trigger a publication (they would flood consensus).
    fn publish(&mut self, p: &PgStatus, now: Millis) -> Option<Action> {
        let mut status = self.member_status(p);
        let due = match &self.last_published {
            None => true,
            Some((at, last)) => {
                let mut a = last.clone();
                let mut b = status.clone();
                for s in [&mut a, &mut b] {
                    s.lsn = Default::default();
                    s.receive_lsn = None;
                    s.replay_lsn = None;
                    s.heartbeat = 0;
                }
                a != b || now.since(*at) >= ms(self.config.publish_interval)
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
                    }
                } else {
                    Decision::none(
                        DecisionKind::Fence,
                        "no consensus majority; PostgreSQL stopped",
                    )
                }
            }
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

    fn bootstrap(&mut self, state: &ClusterState, obs: &Observation<'_>) -> Decision {
        let now = obs.now;
        let me = self.node().clone();
        match &state.bootstrap {
            None if !self.me.tags.can_be_primary() => Decision::none(
                DecisionKind::Bootstrap,
                "tagged nofailover (or failover_priority 0): never initialises the cluster; waiting for another member",
            ),
            None => {
                let empty = obs.pg.data == DataDirState::Empty;
                let other_has_data = state
                    .members
                    .values()
                    .any(|m| m.node != me && m.system_id.is_some());
                if empty && other_has_data {
                    return Decision::none(
                        DecisionKind::Bootstrap,
                        "another member has a data directory: leaving the bootstrap to it",
                    );
                }
                if empty && now.since(self.started) < ms(self.config.publish_interval) {
                    return Decision::none(
                        DecisionKind::Bootstrap,
                        "waiting one publish interval so members with data can claim the bootstrap first",
                    );
                }
                Decision {
                    kind: DecisionKind::Bootstrap,
                    reason: if empty {
                        "cluster not initialised: claiming the bootstrap".into()
                    } else {
                        "cluster not initialised and this node has data: claiming the bootstrap to adopt it".into()
                    },
                    actions: vec![propose(Operation::ClaimBootstrap { node: me })],
                    lease: None,
                    renewal: None,
                }
            }
            Some(b) if b.node == me => match obs.pg.data {
                DataDirState::Empty => {
                    let mut d = Decision::none(
                        DecisionKind::Bootstrap,
                        "this node won the bootstrap: running initdb",
                    );
                    if self.once("bootstrap", now, REBUILD_COOLDOWN_MS) {
                        let parameters = super::sync::bootstrap_names(&state.config)
                            .map(|v| ("synchronous_standby_names".to_string(), v))
                            .into_iter()
                            .collect();
                        d.actions.push(pg(PgAction::Bootstrap { parameters }));
                    }
                    d
                }
                DataDirState::Initialized { system_id } if obs.pg.running => Decision {
                    kind: DecisionKind::Bootstrap,
                    reason: format!(
                        "cluster initialised (system identifier {system_id}): taking the first lease"
                    ),
                    actions: vec![
                        propose(Operation::CompleteBootstrap {
                            node: me.clone(),
                            system_id,
                        }),
                        propose(Operation::AcquireLease {
                            node: me,
                            expected_epoch: state.epoch(),
                            expected_renewals: state
                                .lease
                                .as_ref()
                                .map(|l| l.renewals)
                                .unwrap_or(0),
                            holder_clock: now,
                            timeline: obs.pg.timeline,
                            lsn: obs.pg.wal_position(),
                            kind: HistoryKind::Bootstrap,
                            reason: "first primary of the cluster".into(),
                        }),
                    ],
                    lease: None,
                    renewal: None,
                },
                DataDirState::Initialized { .. } => {
                    let mut d = Decision::none(
                        DecisionKind::Bootstrap,
                        "starting PostgreSQL to complete the bootstrap",
                    );
                    if self.once("start", now, ACTION_COOLDOWN_MS) {
                        d.actions.push(pg(PgAction::Start { upstream: None }));
                    }
                    d
                }
            },
            Some(b) => Decision::none(
                DecisionKind::Bootstrap,
                format!("waiting for {} to initialise the cluster", b.node),
            ),
        }
    }

    fn renew(&mut self, epoch: Epoch, now: Millis) -> Option<Action> {
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

    fn holder(&mut self, state: &ClusterState, obs: &Observation<'_>) -> Decision {
        let now = obs.now;
        let epoch = state.epoch();
        let deadline = self.lease_deadline.map(|(_, d)| d).unwrap_or(now);
        if obs.pg.running && obs.pg.reachable && obs.pg.role() == Role::Primary {
            self.last_primary_position = Some((obs.pg.timeline, obs.pg.wal_position()));
        }
        self.detached = None;
        self.expired_since = None;
        self.not_streaming_since = None;
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
            if state.paused && !taken_over {
                d.kind = DecisionKind::Paused;
                d.reason = "maintenance mode: holding the lease but not promoting".into();
            } else if self.once("promote", now, ACTION_COOLDOWN_MS) {
                self.promoted = Some((epoch, None));
                if state.config.synchronous.mode != rale_sync::SyncMode::Off {
                    // Acknowledge nothing until the new synchronous set is in place.
                    d.actions.push(pg(PgAction::SetSynchronousStandbyNames {
                        value: super::sync::blocked_names(),
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
        if super::sync::wanted(state, obs.pg) {
            let fresh = self.fresh_members(now);
            let me = self.node().clone();
            // Right after a promotion no standby streams from us yet: for one member_ttl,
            // the replicas that are healthy count as synchronous candidates, so that
            // commits wait for them to reconnect instead of going asynchronous.
            let since = match &mut self.promoted {
                Some((e, t)) if *e == epoch => Some(*t.get_or_insert(now)),
                _ => None,
            };
            let mut expected = super::sync::Expected::default();
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
            if let Some((a, why)) = super::sync::next_step(
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

    fn slots(&mut self, state: &ClusterState, now: Millis) -> Option<Action> {
        let slots: Vec<String> = state
            .members
            .keys()
            .filter(|n| *n != self.node())
            .map(NodeId::slot_name)
            .collect();
        let due = match &self.last_slots {
            Some((at, last)) => *last != slots || now.since(*at) >= SLOTS_REFRESH_MS,
            None => true,
        };
        if !due {
            return None;
        }
        self.last_slots = Some((now, slots.clone()));
        Some(pg(PgAction::EnsureSlots { slots }))
    }

    fn switchover(
        &mut self,
        state: &ClusterState,
        obs: &Observation<'_>,
        epoch: Epoch,
    ) -> Option<Decision> {
        let sw = state.switchover.as_ref()?;
        if sw.from.as_ref().is_some_and(|f| f != self.node()) {
            return Some(Decision {
                kind: DecisionKind::Switchover,
                reason: format!(
                    "switchover requested from {:?}, but this node is the primary",
                    sw.from
                ),
                actions: vec![propose(Operation::CancelSwitchover {
                    actor: format!("ha:{}", self.node()),
                    reason: format!(
                        "{} is not the primary",
                        sw.from.as_ref().map(|f| f.as_str()).unwrap_or("?")
                    ),
                })],
                lease: None,
                renewal: None,
            });
        }
        if sw.scheduled_at_unix_ms.is_some_and(|t| obs.wall_ms < t) {
            return None;
        }
        let fresh = self.fresh_members(obs.now);
        let me = self.node().clone();
        let usable = |m: &MemberStatus| {
            fresh.contains(&m.node)
                && m.node != me
                && m.running
                && m.role == Role::Replica
                && m.streaming
                && m.tags.can_be_primary()
                && (!sync_restricted(state) || state.sync.standbys.contains(&m.node))
        };
        let target = match &sw.to {
            Some(t) => match state.members.get(t) {
                Some(m) if usable(m) => Some(t.clone()),
                _ => {
                    return Some(Decision {
                        kind: DecisionKind::Switchover,
                        reason: format!(
                            "switchover to {t} refused: it is not a healthy, streaming, eligible replica"
                        ),
                        actions: vec![propose(Operation::CancelSwitchover {
                            actor: format!("ha:{me}"),
                            reason: format!("{t} is not a healthy, streaming, eligible replica"),
                        })],
                        lease: None,
                        renewal: None,
                    });
                }
            },
            None => {
                let mut best: Vec<&MemberStatus> =
                    state.members.values().filter(|m| usable(m)).collect();
                best.sort_by(|a, b| {
                    b.lsn
                        .cmp(&a.lsn)
                        .then(b.tags.priority().cmp(&a.tags.priority()))
                        .then(a.node.cmp(&b.node))
                });
                best.first().map(|m| m.node.clone())
            }
        };
        let Some(target) = target else {
            return Some(Decision {
                kind: DecisionKind::Switchover,
                reason: "switchover refused: no healthy, streaming, eligible replica".into(),
                actions: vec![propose(Operation::CancelSwitchover {
                    actor: format!("ha:{me}"),
                    reason: "no healthy, streaming, eligible replica".into(),
                })],
                lease: None,
                renewal: None,
            });
        };
        self.switchover_stop = Some((epoch, target.clone()));
        Some(Decision {
            kind: DecisionKind::Switchover,
            reason: format!(
                "switchover to {target}: stopping PostgreSQL cleanly so it ships all WAL"
            ),
            actions: vec![pg(PgAction::Stop {
                mode: StopMode::Fast,
            })],
            lease: None,
            renewal: None,
        })
    }

    fn follower(
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

    fn follower_steps(
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
        if p.streaming {
            self.not_streaming_since = None;
            return Decision::none(
                DecisionKind::Steady,
                format!("replica streaming from {holder}"),
            );
        }
        let since = *self.not_streaming_since.get_or_insert(now);
        let patience = ms(self.config.member_ttl);
        if holder_ok && now.since(since) >= patience {
            let (rebuild, how) = self.rebuild(&holder);
            let mut d = Decision::none(
                DecisionKind::Rejoin,
                format!(
                    "not streaming from {holder} for {} ms although it runs: the timelines may have diverged; stopping, then {how}",
                    now.since(since)
                ),
            );
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
    fn rebuild(&mut self, holder: &NodeId) -> (PgAction, String) {
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
    fn after_rebuild(
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
    fn follower_paused(&mut self, obs: &Observation<'_>, holder: NodeId) -> Decision {
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

    fn failover(&mut self, state: &ClusterState, obs: &Observation<'_>) -> Decision {
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
                };
            }
            return Decision {
                kind: DecisionKind::Switchover,
                reason: "lease handed to this node but PostgreSQL is not a running replica".into(),
                actions,
                lease: None,
                renewal: None,
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
        }
    }
}

impl Policy for Decider {
    fn step(&mut self, obs: &Observation<'_>) -> Decision {
        let mut decision = self.decide(obs);
        decision.lease = self
            .lease_deadline
            .map(|(epoch, deadline)| LeaseHold { epoch, deadline });
        decision.renewal = self.renewal_grant(obs.now);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::ParameterSet;
    use crate::types::{Epoch, Lsn, Timeline};

    fn me() -> NodeIdentity {
        NodeIdentity {
            node: NodeId::new("n1").expect("valid"),
            api_url: "http://n1:8008".into(),
            pg_host: "n1".into(),
            pg_port: 5432,
            tags: Default::default(),
        }
    }

    /// A cluster whose configuration version 7 sets `work_mem = 'lots'`, held by `holder`.
    fn state(holder: &str) -> ClusterState {
        let mut s = ClusterState {
            config_version: 7,
            ..ClusterState::default()
        };
        s.config
            .postgresql_parameters
            .insert("work_mem".into(), "lots".into());
        s.lease = Some(Lease {
            holder: Some(NodeId::new(holder).expect("valid")),
            epoch: Epoch(3),
            holder_clock: Millis(0),
            renewals: 0,
            successor: None,
            final_position: Some((Timeline(1), Lsn(0))),
        });
        s
    }

    fn refused(last_good: Option<ParameterSet>) -> ParameterOutcome {
        ParameterOutcome::Refused {
            version: 7,
            error: "22023: invalid value for parameter \"work_mem\": \"lots\"".into(),
            last_good,
        }
    }

    fn good() -> ParameterSet {
        let mut p = BTreeMap::new();
        p.insert("work_mem".to_string(), "64MB".to_string());
        ParameterSet {
            postgresql_parameters: p,
            commit_level: Default::default(),
        }
    }

    #[test]
    fn the_primary_rolls_a_refused_change_back() {
        let d = Decider::new(me(), Millis(0));
        let action = d.parameter_failure(&refused(Some(good())), &state("n1"));
        let Action::Propose {
            op:
                Operation::SetConfig {
                    expected_version,
                    config,
                    reason,
                    ..
                },
        } = action
        else {
            panic!("expected a rollback, got {action:?}");
        };
        assert_eq!(
            expected_version,
            Some(7),
            "compare-and-set on the failed version"
        );
        assert_eq!(config.postgresql_parameters["work_mem"], "64MB");
        assert!(
            reason.contains("rolled back") && reason.contains("(on n1)"),
            "{reason}"
        );
    }

    #[test]
    fn replicas_transient_failures_and_nothing_to_go_back_to_are_recorded() {
        let d = Decider::new(me(), Millis(0));
        let transient = ParameterOutcome::Transient {
            version: 7,
            error: "connection closed".into(),
            retry_s: 5,
        };
        for (failure, holder) in [
            (refused(Some(good())), "n2"),
            (refused(None), "n1"),
            (transient, "n1"),
        ] {
            let action = d.parameter_failure(&failure, &state(holder));
            assert!(
                matches!(
                    action,
                    Action::Propose {
                        op: Operation::Record {
                            kind: HistoryKind::Config,
                            ..
                        }
                    }
                ),
                "{failure:?} on a cluster held by {holder}: {action:?}"
            );
        }
    }
}
