//! The cluster state that consensus replicates, and the deterministic operations that
//! change it.
//!
//! Every implementation of [`crate::Consensus`] applies [`Command`]s with
//! [`ClusterState::apply`], in log order, on every node: the openraft state machine does,
//! the simulator does, the in-memory consensus does. Conditional operations (lease
//! acquisition and renewal, configuration changes with an expected version) are the
//! compare-and-set primitives the decision core builds on.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::config::DynamicConfig;
use crate::status::MemberStatus;
use crate::types::{Epoch, Lsn, Millis, NodeId, Timeline};

/// Most history entries kept in the replicated state (oldest dropped first).
pub const HISTORY_LEN_MAX: usize = 500;

/// The primary lease. The holder renews it; others may take it over once they have seen
/// it unchanged for `lease_ttl` by their own clock (see `docs/lease.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The member acting as primary, `None` once released.
    pub holder: Option<NodeId>,
    /// Epoch of this lease; +1 at every acquisition.
    pub epoch: Epoch,
    /// The holder's own clock when it started the latest successful renewal. Only the
    /// holder interprets it; observers only notice that it changed.
    pub holder_clock: Millis,
    /// Successful renewals in this epoch.
    pub renewals: u64,
    /// On a planned switchover: the member the lease was handed to. Only it may acquire
    /// the released lease before the lease would have expired anyway.
    pub successor: Option<NodeId>,
    /// Once released: the position the former holder's server was stopped at, when it
    /// said (its last commits are at most there; failover measures lag against it).
    #[serde(default)]
    pub final_position: Option<(Timeline, Lsn)>,
}

/// Who initialised the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bootstrap {
    /// The member that won the right to run `initdb` (or adopt its existing data).
    pub node: NodeId,
    /// Set once the cluster is initialised: its database system identifier.
    pub system_id: Option<u64>,
}

/// The synchronous set recorded in consensus: every member that may hold a commit the
/// primary acknowledged. Failover in synchronous mode only promotes from it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// Epoch of the primary that recorded it.
    pub epoch: Epoch,
    /// Members whose acknowledgement counts.
    pub standbys: BTreeSet<NodeId>,
    /// How many of them acknowledge each commit (`n` of `FIRST n` / `ANY n`), 0 = async.
    pub quorum: u32,
}

/// A requested planned switchover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switchover {
    /// The primary expected to step down (`None`: whoever it is).
    pub from: Option<NodeId>,
    /// The member to promote (`None`: the best candidate).
    pub to: Option<NodeId>,
    /// Not before this wall-clock time (Unix milliseconds).
    pub scheduled_at_unix_ms: Option<u64>,
    /// Who asked.
    pub requested_by: String,
}

/// What a history entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    /// The cluster was initialised.
    Bootstrap,
    /// A new primary took over an expired lease.
    Failover,
    /// A primary handed over its lease on request.
    Switchover,
    /// A primary gave up its lease.
    LeaseReleased,
    /// Maintenance mode switched on or off.
    Pause,
    /// The dynamic configuration changed.
    Config,
    /// Membership changed.
    Membership,
    /// An operator action (restart, reinitialise, …).
    Operation,
}

/// One entry of the cluster history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Sequence number, increasing.
    pub seq: u64,
    /// Wall-clock time the command was proposed (Unix milliseconds).
    pub ts_unix_ms: u64,
    /// What happened.
    pub kind: HistoryKind,
    /// The member concerned (the new primary for failovers and switchovers).
    pub node: Option<NodeId>,
    /// Lease epoch after the event.
    pub epoch: Epoch,
    /// Timeline at the event.
    pub timeline: Timeline,
    /// WAL position at the event.
    pub lsn: Lsn,
    /// Who or what caused it (`ha:node2`, `api:admin`, …).
    pub actor: String,
    /// Why, in words.
    pub reason: String,
}

/// The replicated cluster state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Commands applied so far.
    pub revision: u64,
    /// Set once a member claimed the bootstrap.
    pub bootstrap: Option<Bootstrap>,
    /// The primary lease.
    pub lease: Option<Lease>,
    /// Members' published statuses.
    pub members: BTreeMap<NodeId, MemberStatus>,
    /// When each member last published, by its proposer's wall clock (Unix ms). For
    /// display only ("is its agent still reporting?"); decisions time heartbeats on the
    /// observer's own monotonic clock.
    #[serde(default)]
    pub members_seen_unix_ms: BTreeMap<NodeId, u64>,
    /// Recorded synchronous set.
    pub sync: SyncState,
    /// Dynamic configuration.
    pub config: DynamicConfig,
    /// Bumped on each configuration change.
    pub config_version: u64,
    /// Maintenance mode: no automatic failover, restart or rebuild.
    pub paused: bool,
    /// A pending planned switchover.
    pub switchover: Option<Switchover>,
    /// Recent history, oldest first.
    pub history: VecDeque<HistoryEntry>,
    /// Members removed from the cluster (`RemoveMember`): their publications, lease and
    /// bootstrap claims are refused, so that an agent still running after its removal
    /// cannot take part again by itself. [`Operation::AdmitMember`] lifts it.
    #[serde(default)]
    pub removed: BTreeSet<NodeId>,
    /// Last history sequence number used.
    pub history_seq: u64,
}

/// A change to the cluster state. Conditional operations are rejected, not retried, when
/// their condition does not hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// Insert or replace a member's status.
    PublishMember {
        /// The status.
        status: MemberStatus,
    },
    /// Forget a member, and refuse its publications and claims from now on.
    RemoveMember {
        /// The member.
        node: NodeId,
    },
    /// Accept a member again after a removal (it is being added back).
    AdmitMember {
        /// The member.
        node: NodeId,
    },
    /// Claim the right to initialise the cluster; only the first claim wins.
    ClaimBootstrap {
        /// The claimant.
        node: NodeId,
    },
    /// The claimant initialised the cluster.
    CompleteBootstrap {
        /// The claimant.
        node: NodeId,
        /// Database system identifier.
        system_id: u64,
    },
    /// Take the lease for epoch `expected_epoch + 1`, if its epoch is still `expected_epoch`.
    AcquireLease {
        /// The new holder.
        node: NodeId,
        /// The epoch the taker saw expire (or released).
        expected_epoch: Epoch,
        /// The renewal count the taker saw unchanged for a whole lease period: a renewal
        /// that landed since then makes the acquisition fail.
        expected_renewals: u64,
        /// The taker's clock when it sent this.
        holder_clock: Millis,
        /// The taker's timeline.
        timeline: Timeline,
        /// The taker's WAL position.
        lsn: Lsn,
        /// Failover, switchover or bootstrap.
        kind: HistoryKind,
        /// Why, in words.
        reason: String,
    },
    /// Renew the lease, if `node` still holds `epoch`.
    RenewLease {
        /// The holder.
        node: NodeId,
        /// Its epoch.
        epoch: Epoch,
        /// The holder's clock when it sent this.
        holder_clock: Millis,
    },
    /// Give the lease up (optionally to a named successor), if `node` holds `epoch`.
    ReleaseLease {
        /// The holder.
        node: NodeId,
        /// Its epoch.
        epoch: Epoch,
        /// Only this member may take it before it would have expired.
        successor: Option<NodeId>,
        /// Why, in words.
        reason: String,
        /// Where its server's WAL ended when it was stopped, if known.
        #[serde(default)]
        final_position: Option<(Timeline, Lsn)>,
    },
    /// Record the synchronous set, if `epoch` is the current lease epoch.
    SetSync {
        /// The primary's epoch.
        epoch: Epoch,
        /// Members whose acknowledgements count.
        standbys: BTreeSet<NodeId>,
        /// How many acknowledge each commit.
        quorum: u32,
    },
    /// Replace the dynamic configuration, if its version is still `expected_version`.
    SetConfig {
        /// Compare-and-set guard (`None`: unconditional).
        expected_version: Option<u64>,
        /// The new configuration.
        config: DynamicConfig,
        /// Who asked.
        actor: String,
        /// What changed, in words.
        reason: String,
    },
    /// Enter or leave maintenance mode.
    SetPaused {
        /// Paused or not.
        paused: bool,
        /// Who asked.
        actor: String,
    },
    /// Ask for a planned switchover (replaces any pending one).
    RequestSwitchover {
        /// The request.
        switchover: Switchover,
    },
    /// Drop the pending switchover.
    CancelSwitchover {
        /// Who asked.
        actor: String,
        /// Why.
        reason: String,
    },
    /// Append a free-form entry to the history.
    Record {
        /// What happened.
        kind: HistoryKind,
        /// Member concerned.
        node: Option<NodeId>,
        /// Who or what did it.
        actor: String,
        /// Why.
        reason: String,
    },
}

impl Operation {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::PublishMember { .. } => "publish_member",
            Operation::RemoveMember { .. } => "remove_member",
            Operation::AdmitMember { .. } => "admit_member",
            Operation::ClaimBootstrap { .. } => "claim_bootstrap",
            Operation::CompleteBootstrap { .. } => "complete_bootstrap",
            Operation::AcquireLease { .. } => "acquire_lease",
            Operation::RenewLease { .. } => "renew_lease",
            Operation::ReleaseLease { .. } => "release_lease",
            Operation::SetSync { .. } => "set_sync",
            Operation::SetConfig { .. } => "set_config",
            Operation::SetPaused { .. } => "set_paused",
            Operation::RequestSwitchover { .. } => "request_switchover",
            Operation::CancelSwitchover { .. } => "cancel_switchover",
            Operation::Record { .. } => "record",
        }
    }
}

/// An operation with the proposer's wall-clock time (used only to stamp history).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The change.
    pub op: Operation,
    /// Proposer's wall clock, Unix milliseconds.
    pub wall_ms: u64,
}

/// Result of applying a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "snake_case")]
pub enum Outcome {
    /// The state changed.
    Applied,
    /// The condition did not hold; the state is unchanged (except `revision`).
    Rejected(String),
}

impl Outcome {
    /// Whether the command took effect.
    pub fn is_applied(&self) -> bool {
        matches!(self, Outcome::Applied)
    }
}

impl ClusterState {
    /// The current lease holder, if any.
    pub fn holder(&self) -> Option<&NodeId> {
        self.lease.as_ref().and_then(|l| l.holder.as_ref())
    }

    /// The current lease epoch (0 before the first primary).
    pub fn epoch(&self) -> Epoch {
        self.lease.as_ref().map(|l| l.epoch).unwrap_or_default()
    }

    fn record(
        &mut self,
        wall_ms: u64,
        kind: HistoryKind,
        node: Option<NodeId>,
        (timeline, lsn): (Timeline, Lsn),
        actor: String,
        reason: String,
    ) {
        self.history_seq += 1;
        let entry = HistoryEntry {
            seq: self.history_seq,
            ts_unix_ms: wall_ms,
            kind,
            node,
            epoch: self.epoch(),
            timeline,
            lsn,
            actor,
            reason,
        };
        self.history.push_back(entry);
        while self.history.len() > HISTORY_LEN_MAX {
            self.history.pop_front();
        }
    }

    /// The newest timeline any member reports, or the released lease's final position
    /// records: the lost primary's history is on it.
    pub fn cluster_timeline(&self) -> Timeline {
        let released = self
            .lease
            .as_ref()
            .and_then(|l| l.final_position)
            .map(|(tl, _)| tl)
            .unwrap_or_default();
        self.members
            .values()
            .map(|m| m.timeline)
            .fold(released, Timeline::max)
    }

    /// The best-known WAL position of the lost primary: the furthest position published
    /// by a member on the cluster's newest timeline (the old primary itself or a replica
    /// that streamed from it), or recorded by a released lease. Positions on older
    /// timelines are not on the lost primary's history and do not count: LSNs of
    /// different timelines are not comparable.
    pub fn last_primary_lsn(&self) -> Lsn {
        let newest = self.cluster_timeline();
        let released = self
            .lease
            .as_ref()
            .and_then(|l| l.final_position)
            .filter(|(tl, _)| *tl >= newest)
            .map(|(_, lsn)| lsn)
            .unwrap_or(Lsn::ZERO);
        self.members
            .values()
            .filter(|m| m.timeline == newest)
            .map(|m| m.lsn)
            .fold(released, Lsn::max)
    }

    /// Why a failover acquisition by a member at `(timeline, lsn)` must be refused by the
    /// lag rule on this state, if it must: asynchronous replication (no recorded
    /// synchronous set restricts the candidates) with `maximum_lag_on_failover_bytes`
    /// set, and the position is further behind the best-known position of the lost
    /// primary than that.
    fn failover_lag_refusal(
        &self,
        kind: HistoryKind,
        timeline: Timeline,
        lsn: Lsn,
    ) -> Option<String> {
        if kind != HistoryKind::Failover {
            return None;
        }
        let sync_restricted =
            self.config.synchronous.mode != rale_sync::SyncMode::Off && self.sync.quorum > 0;
        if sync_restricted {
            return None;
        }
        let max_lag = self.config.maximum_lag_on_failover_bytes?;
        let newest = self.cluster_timeline();
        if timeline < newest {
            return Some(format!(
                "the taker is on timeline {timeline}, behind the cluster's timeline {newest}"
            ));
        }
        let lag = self.last_primary_lsn().bytes_after(lsn);
        (lag > max_lag).then(|| {
            format!(
                "a member has since reported {lag} bytes of WAL beyond the taker's {lsn} (maximum_lag_on_failover is {max_lag})"
            )
        })
    }

    fn member_position(&self, node: &NodeId) -> (Timeline, Lsn) {
        self.members
            .get(node)
            .map(|m| (m.timeline, m.lsn))
            .unwrap_or_default()
    }

    /// Applies a command deterministically. `revision` advances even when the command is
    /// rejected, so every applied log entry is visible as a new revision.
    pub fn apply(&mut self, cmd: &Command) -> Outcome {
        self.revision += 1;
        let wall_ms = cmd.wall_ms;
        let reject = |m: String| Outcome::Rejected(m);
        match &cmd.op {
            Operation::PublishMember { status } => {
                if self.removed.contains(&status.node) {
                    return reject(format!(
                        "{} was removed from the cluster; add it again first",
                        status.node
                    ));
                }
                self.members.insert(status.node.clone(), status.clone());
                self.members_seen_unix_ms
                    .insert(status.node.clone(), wall_ms);
                Outcome::Applied
            }
            Operation::RemoveMember { node } => {
                if self.holder() == Some(node) {
                    return reject(format!("{node} holds the primary lease; switch over first"));
                }
                let known = self.members.remove(node).is_some();
                if !known && self.removed.contains(node) {
                    return reject(format!("{node} is not a member"));
                }
                self.removed.insert(node.clone());
                self.members_seen_unix_ms.remove(node);
                self.sync.standbys.remove(node);
                self.record(
                    wall_ms,
                    HistoryKind::Membership,
                    Some(node.clone()),
                    Default::default(),
                    "api".into(),
                    format!("member {node} removed"),
                );
                Outcome::Applied
            }
            Operation::AdmitMember { node } => {
                if !self.removed.remove(node) {
                    return reject(format!("{node} was not removed"));
                }
                Outcome::Applied
            }
            Operation::ClaimBootstrap { node } if self.removed.contains(node) => {
                reject(format!("{node} was removed from the cluster"))
            }
            Operation::ClaimBootstrap { node } => match &self.bootstrap {
                Some(b) => reject(format!("bootstrap already claimed by {}", b.node)),
                None => {
                    self.bootstrap = Some(Bootstrap {
                        node: node.clone(),
                        system_id: None,
                    });
                    Outcome::Applied
                }
            },
            Operation::CompleteBootstrap { node, system_id } => match &mut self.bootstrap {
                Some(b) if &b.node == node && b.system_id.is_none() => {
                    b.system_id = Some(*system_id);
                    self.record(
                        wall_ms,
                        HistoryKind::Bootstrap,
                        Some(node.clone()),
                        (Timeline(1), Lsn::ZERO),
                        format!("ha:{node}"),
                        format!("cluster initialised by {node}, system identifier {system_id}"),
                    );
                    Outcome::Applied
                }
                _ => reject(format!(
                    "{node} did not claim the bootstrap or it is complete"
                )),
            },
            Operation::AcquireLease {
                node,
                expected_epoch,
                expected_renewals,
                holder_clock,
                timeline,
                lsn,
                kind,
                reason,
            } => {
                if self.removed.contains(node) {
                    return reject(format!("{node} was removed from the cluster"));
                }
                let current = self.epoch();
                if current != *expected_epoch {
                    return reject(format!(
                        "lease epoch is {current}, not the expected {expected_epoch}"
                    ));
                }
                let renewals = self.lease.as_ref().map(|l| l.renewals).unwrap_or(0);
                if renewals != *expected_renewals {
                    return reject(format!(
                        "lease epoch {current} was renewed since it was seen expiring"
                    ));
                }
                // A failover taker chose itself on the state it read; members may have
                // reported further positions since (a standby that had been busy, say,
                // cloning from the primary that was still committing). Apply the lag rule
                // again on the state as it is now, so that no failover is applied against
                // a report the cluster already holds.
                if let Some(why) = self.failover_lag_refusal(*kind, *timeline, *lsn) {
                    return reject(why);
                }
                let epoch = current.next();
                self.lease = Some(Lease {
                    holder: Some(node.clone()),
                    epoch,
                    holder_clock: *holder_clock,
                    renewals: 0,
                    successor: None,
                    final_position: None,
                });
                if matches!(kind, HistoryKind::Switchover) {
                    self.switchover = None;
                }
                // The new primary inherits the recorded set *with itself in it*: until it
                // records its own, failover stays bound by the promise of the previous
                // primary, and the taker is one of the members that may hold its commits.
                // Removing it would leave a set that no longer covers them: a taker that
                // dies or steps down before promoting, or a new primary that publishes a
                // set of standbys that have not caught up, would let failover promote a
                // member lacking acknowledged commits (or nobody at all, for ever).
                self.sync.epoch = epoch;
                self.record(
                    wall_ms,
                    *kind,
                    Some(node.clone()),
                    (*timeline, *lsn),
                    format!("ha:{node}"),
                    reason.clone(),
                );
                Outcome::Applied
            }
            Operation::RenewLease {
                node,
                epoch,
                holder_clock,
            } => match &mut self.lease {
                Some(l) if l.holder.as_ref() == Some(node) && l.epoch == *epoch => {
                    l.holder_clock = *holder_clock;
                    l.renewals += 1;
                    Outcome::Applied
                }
                _ => reject(format!("{node} does not hold lease epoch {epoch}")),
            },
            Operation::ReleaseLease {
                node,
                epoch,
                successor,
                reason,
                final_position,
            } => {
                let holds = matches!(&self.lease, Some(l) if l.holder.as_ref() == Some(node) && l.epoch == *epoch);
                if !holds {
                    return reject(format!("{node} does not hold lease epoch {epoch}"));
                }
                if let Some(l) = &mut self.lease {
                    l.holder = None;
                    l.successor = successor.clone();
                    l.final_position = *final_position;
                }
                let pos = self.member_position(node);
                self.record(
                    wall_ms,
                    HistoryKind::LeaseReleased,
                    Some(node.clone()),
                    pos,
                    format!("ha:{node}"),
                    reason.clone(),
                );
                Outcome::Applied
            }
            Operation::SetSync {
                epoch,
                standbys,
                quorum,
            } => {
                if *epoch != self.epoch() || self.holder().is_none() {
                    return reject(format!("epoch {epoch} is not the current primary's"));
                }
                self.sync = SyncState {
                    epoch: *epoch,
                    standbys: standbys.clone(),
                    quorum: *quorum,
                };
                Outcome::Applied
            }
            Operation::SetConfig {
                expected_version,
                config,
                actor,
                reason,
            } => {
                if let Some(v) = expected_version
                    && *v != self.config_version
                {
                    return reject(format!(
                        "configuration version is {}, not the expected {v}",
                        self.config_version
                    ));
                }
                if let Err(e) = config.validate() {
                    return reject(e.to_string());
                }
                self.config = config.clone();
                self.config_version += 1;
                self.record(
                    wall_ms,
                    HistoryKind::Config,
                    None,
                    Default::default(),
                    actor.clone(),
                    reason.clone(),
                );
                Outcome::Applied
            }
            Operation::SetPaused { paused, actor } => {
                if self.paused == *paused {
                    return reject(format!(
                        "cluster is already {}",
                        if *paused { "paused" } else { "running" }
                    ));
                }
                self.paused = *paused;
                let what = if *paused {
                    "maintenance mode on"
                } else {
                    "maintenance mode off"
                };
                self.record(
                    wall_ms,
                    HistoryKind::Pause,
                    None,
                    Default::default(),
                    actor.clone(),
                    what.into(),
                );
                Outcome::Applied
            }
            Operation::RequestSwitchover { switchover } => {
                self.switchover = Some(switchover.clone());
                let name = |n: &Option<NodeId>, default: &str| {
                    n.as_ref()
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| default.to_string())
                };
                let at = switchover
                    .scheduled_at_unix_ms
                    .map(|t| {
                        let when = std::time::UNIX_EPOCH + std::time::Duration::from_millis(t);
                        format!(", not before {}", humantime::format_rfc3339_millis(when))
                    })
                    .unwrap_or_default();
                self.record(
                    wall_ms,
                    HistoryKind::Operation,
                    switchover.to.clone(),
                    Default::default(),
                    switchover.requested_by.clone(),
                    format!(
                        "switchover requested from {} to {}{at}",
                        name(&switchover.from, "the current primary"),
                        name(&switchover.to, "the best candidate")
                    ),
                );
                Outcome::Applied
            }
            Operation::CancelSwitchover { actor, reason } => {
                if self.switchover.take().is_none() {
                    return reject("no switchover is pending".into());
                }
                self.record(
                    wall_ms,
                    HistoryKind::Operation,
                    None,
                    Default::default(),
                    actor.clone(),
                    format!("switchover cancelled: {reason}"),
                );
                Outcome::Applied
            }
            Operation::Record {
                kind,
                node,
                actor,
                reason,
            } => {
                let pos = node
                    .as_ref()
                    .map(|n| self.member_position(n))
                    .unwrap_or_default();
                self.record(
                    wall_ms,
                    *kind,
                    node.clone(),
                    pos,
                    actor.clone(),
                    reason.clone(),
                );
                Outcome::Applied
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeId {
        NodeId::new(s).expect("valid name")
    }

    fn cmd(op: Operation) -> Command {
        Command { op, wall_ms: 1 }
    }

    fn acquire(node: &str, expected: u64) -> Command {
        cmd(Operation::AcquireLease {
            node: n(node),
            expected_epoch: Epoch(expected),
            expected_renewals: if expected == 1 { 1 } else { 0 },
            holder_clock: Millis(5),
            timeline: Timeline(1),
            lsn: Lsn(10),
            kind: HistoryKind::Failover,
            reason: "test".into(),
        })
    }

    #[test]
    fn lease_is_compare_and_set() {
        let mut s = ClusterState::default();
        assert!(s.apply(&acquire("a", 0)).is_applied());
        assert!(
            !s.apply(&acquire("b", 0)).is_applied(),
            "stale epoch must be rejected"
        );
        assert_eq!(s.holder(), Some(&n("a")));
        let renew = |node: &str, e: u64| {
            cmd(Operation::RenewLease {
                node: n(node),
                epoch: Epoch(e),
                holder_clock: Millis(9),
            })
        };
        assert!(s.apply(&renew("a", 1)).is_applied());
        assert!(!s.apply(&renew("b", 1)).is_applied());
        assert!(s.apply(&acquire("b", 1)).is_applied());
        assert!(
            !s.apply(&renew("a", 1)).is_applied(),
            "old holder cannot renew"
        );
        assert_eq!(s.epoch(), Epoch(2));
        assert_eq!(s.history.len(), 2);
        assert_eq!(s.revision, 6);
    }

    #[test]
    fn a_failover_behind_a_newer_report_is_refused_when_it_applies() {
        let mut s = ClusterState::default();
        s.config.maximum_lag_on_failover_bytes = Some(1 << 20);
        let ahead = MemberStatus {
            node: n("c"),
            api_url: String::new(),
            pg_host: "127.0.0.1".into(),
            pg_port: 5432,
            role: crate::types::Role::Replica,
            running: true,
            timeline: Timeline(1),
            lsn: Lsn(3 << 20),
            receive_lsn: None,
            replay_lsn: None,
            upstream: None,
            streaming: false,
            tags: crate::types::Tags::default(),
            detached: None,
            pending_restart: false,
            server_version_num: 150000,
            system_id: Some(1),
            logical_slots: Default::default(),
            heartbeat: 1,
        };
        s.members.insert(n("c"), ahead);
        let refused = s.apply(&acquire("b", 0));
        assert!(
            matches!(&refused, Outcome::Rejected(r) if r.contains("maximum_lag_on_failover")),
            "{refused:?}"
        );
        assert_eq!(s.holder(), None);
        // Within the bound, or not a failover, it applies.
        s.config.maximum_lag_on_failover_bytes = Some(4 << 20);
        assert!(s.apply(&acquire("b", 0)).is_applied());
        s.config.maximum_lag_on_failover_bytes = Some(1 << 20);
        let switchover = cmd(Operation::AcquireLease {
            node: n("d"),
            expected_epoch: Epoch(1),
            expected_renewals: 0,
            holder_clock: Millis(5),
            timeline: Timeline(1),
            lsn: Lsn(10),
            kind: HistoryKind::Switchover,
            reason: "test".into(),
        });
        assert!(s.apply(&switchover).is_applied());
    }

    #[test]
    fn bootstrap_claim_is_exclusive() {
        let mut s = ClusterState::default();
        assert!(
            s.apply(&cmd(Operation::ClaimBootstrap { node: n("a") }))
                .is_applied()
        );
        assert!(
            !s.apply(&cmd(Operation::ClaimBootstrap { node: n("b") }))
                .is_applied()
        );
        let done = |node: &str| {
            cmd(Operation::CompleteBootstrap {
                node: n(node),
                system_id: 7,
            })
        };
        assert!(!s.apply(&done("b")).is_applied());
        assert!(s.apply(&done("a")).is_applied());
        assert_eq!(s.bootstrap.as_ref().and_then(|b| b.system_id), Some(7));
    }

    #[test]
    fn config_change_is_validated_and_versioned() {
        let mut s = ClusterState::default();
        let bad = DynamicConfig {
            loop_interval: std::time::Duration::ZERO,
            ..DynamicConfig::default()
        };
        let set = |c: DynamicConfig, v: Option<u64>| {
            cmd(Operation::SetConfig {
                expected_version: v,
                config: c,
                actor: "t".into(),
                reason: "r".into(),
            })
        };
        assert!(!s.apply(&set(bad, None)).is_applied());
        assert!(
            s.apply(&set(DynamicConfig::default(), Some(0)))
                .is_applied()
        );
        assert!(
            !s.apply(&set(DynamicConfig::default(), Some(0)))
                .is_applied()
        );
        assert_eq!(s.config_version, 1);
    }
}
