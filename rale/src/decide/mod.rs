//! The HA decision core: observations in, actions out, no I/O.
//!
//! Each agent owns one [`Decider`]. Its HA loop observes the local PostgreSQL
//! ([`PgStatus`]), reads the replicated [`ClusterState`] (or fails to, on the minority side
//! of a partition), reads its own monotonic clock, and calls [`Policy::step`]. The returned
//! [`Decision`] lists [`Action`]s — consensus operations to propose and PostgreSQL actions
//! to execute — and says why, in words. The same code runs in `ramd` and in the
//! deterministic simulator ([`crate::sim`]).
//!
//! Rules (details in `docs/lease.md` and `docs/failover.md`):
//! - the primary is whoever holds the lease record in consensus; the holder renews it and
//!   treats it as lost `fence_margin` plus the clock-drift allowance *before* any observer
//!   can see it expire; a holder that cannot renew fences itself (stops PostgreSQL);
//! - an observer sees the lease expire `lease_ttl` after it last saw the record change,
//!   by its own clock; replicas then detach from the old primary and publish their final
//!   WAL position; the best eligible candidate (health, WAL position, priority, name)
//!   takes the lease by compare-and-set and only then promotes;
//! - a crashed postmaster under a live holder is restarted in place (bounded by
//!   `restart_timeout`) before the lease is given up;
//! - nothing is decided without a consensus majority; in maintenance mode nothing
//!   automatic happens.
//!
//! This module is deterministic: no clock reads, no randomness, no I/O, no hash-map
//! iteration order (enforced by `clippy.toml`'s disallowed methods and types).

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

use serde::{Deserialize, Serialize};

use crate::pg::{SlotAdvance, SlotPlan, StopMode};
use crate::state::{ClusterState, Operation};
use crate::status::PgStatus;
use crate::types::{Millis, NodeId, Tags};

mod candidate;
mod decider;
pub mod failsafe;
mod sync;

pub use candidate::{Candidate, Eligibility, rank_candidates};
pub use decider::Decider;

/// What the agent may do about the lease *while its HA loop is busy* executing a long
/// action (`pg_ctl start` with crash recovery, a promotion): keep renewing lease `epoch`
/// until `until` on the node's clock, each renewal valid for `validity_ms` from its own
/// clock reading.
///
/// Without it, a 1.5 s lease lapses under a loop that spends 3 s in crash recovery, and a
/// replica fails over although the primary is being restarted in place. The grant is
/// bounded: during an in-place restart until `restart_timeout` after the crash (the same
/// bound the decider itself applies), otherwise one `lease_ttl` after the decision, so a
/// wedged loop cannot keep the lease for ever.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalGrant {
    /// The lease epoch this node holds.
    pub epoch: crate::types::Epoch,
    /// No renewal on this grant after this instant (node's monotonic clock).
    pub until: Millis,
    /// How long a renewal stamped at `t` lets this node acknowledge commits: until
    /// `t + validity_ms` ([`crate::config::DynamicConfig::holder_validity_ms`]).
    pub validity_ms: u64,
    /// How often to renew.
    pub renew_interval_ms: u64,
}

/// The node a decider runs for: its identity as published to the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// Member name.
    pub node: NodeId,
    /// Base URL of the agent's API.
    pub api_url: String,
    /// Host PostgreSQL listens on.
    pub pg_host: String,
    /// PostgreSQL port.
    pub pg_port: u16,
    /// Tags from the node's configuration.
    pub tags: Tags,
}

/// Everything the decision core may look at for one step.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// The node's monotonic clock.
    pub now: Millis,
    /// Wall-clock time (Unix ms), used only to decide whether a scheduled switchover is
    /// due — never for lease safety.
    pub wall_ms: u64,
    /// The local PostgreSQL, observed just now.
    pub pg: &'a PgStatus,
    /// The cluster state from a linearizable read, or `None` when no majority answered.
    pub cluster: Option<&'a ClusterState>,
    /// What became of the PostgreSQL actions of the previous decision, in order (empty on
    /// the first iteration). The core never assumes an action succeeded; where the next
    /// step depends on how one ended (a failed `pg_rewind` is followed by a base backup),
    /// it reads it here.
    pub outcomes: &'a [ActionOutcome],
    /// How applying the cluster-wide PostgreSQL parameters to the local server failed,
    /// reported once (the decision core rolls a refused change back on the primary, or
    /// records the failure).
    pub parameters: Option<&'a ParameterOutcome>,
    /// Failsafe mode, on a replica: the promise this node gave a primary over the
    /// agents' API (no lease claim, no promotion while it binds). See [`failsafe`].
    pub failsafe_promise: Option<&'a failsafe::FailsafePromise>,
    /// Failsafe mode, on the primary: the latest round of the decision's
    /// [`Decision::failsafe`] request that every member confirmed (sent while consensus
    /// did not answer).
    pub failsafe_confirmed: Option<failsafe::FailsafeConfirmed>,
}

/// A failure to apply the cluster-wide PostgreSQL parameters of a configuration version
/// to the local server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ParameterOutcome {
    /// The server refused a value or a name (`ALTER SYSTEM` failed): worth a rollback.
    Refused {
        /// The configuration version whose parameters failed.
        version: u64,
        /// The server's error.
        error: String,
        /// The parameters of the last configuration that applied on this server, if any.
        last_good: Option<ParameterSet>,
    },
    /// A transient failure (connection lost, timeout): the agent retries every
    /// `retry_s` seconds; reported once per version.
    Transient {
        /// The configuration version whose parameters failed.
        version: u64,
        /// The error.
        error: String,
        /// Seconds between retries.
        retry_s: u64,
    },
}

/// The parameter part of a dynamic configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterSet {
    /// `postgresql_parameters`.
    pub postgresql_parameters: std::collections::BTreeMap<String, String>,
    /// `synchronous.commit_level`.
    pub commit_level: rale_sync::CommitLevel,
}

/// How one PostgreSQL action of the previous decision ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionOutcome {
    /// The action.
    pub action: PgAction,
    /// `None` when it succeeded; otherwise why it failed (or was skipped).
    pub error: Option<String>,
}

/// An action on the local PostgreSQL. The executor performs it and the next observation
/// shows the effect; the core never assumes an action succeeded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum PgAction {
    /// `initdb` an empty data directory, set `parameters` (before the first start) and
    /// start it as a primary.
    Bootstrap {
        /// Settings the new server starts with (`synchronous_standby_names`, so that it
        /// acknowledges nothing before its lease or synchronous set is in place).
        #[serde(default)]
        parameters: std::collections::BTreeMap<String, String>,
    },
    /// Start PostgreSQL: as a standby of `upstream`, or (`None`) with its current role.
    Start {
        /// The primary to stream from.
        upstream: Option<NodeId>,
    },
    /// Stop PostgreSQL.
    Stop {
        /// How.
        mode: StopMode,
    },
    /// Promote this standby (validated: left recovery and accepted a write).
    Promote,
    /// Point the WAL receiver at `upstream`, or detach it (`None`).
    Follow {
        /// The primary to stream from.
        upstream: Option<NodeId>,
    },
    /// `pg_rewind` the stopped server from `source` (after it diverged); it stays stopped.
    /// The decision core starts it as a replica when this succeeded and takes a base
    /// backup instead when it failed ([`Observation::outcomes`]).
    Rewind {
        /// The current primary.
        source: NodeId,
    },
    /// Replace the data directory with a base backup of `source` (once `source` answers)
    /// and start streaming from it.
    Clone {
        /// The current primary.
        source: NodeId,
    },
    /// Set `synchronous_standby_names` and reload.
    SetSynchronousStandbyNames {
        /// The new value, in PostgreSQL syntax.
        value: String,
    },
    /// On the primary: the replication slots to keep (one physical slot per other member,
    /// the permanent slots of the configuration) and those to drop (removed members').
    EnsureSlots {
        /// The plan.
        plan: SlotPlan,
    },
    /// On a replica: copy the state of these permanent logical slots from `source` (the
    /// primary) and restart to load them (`docs/slots.md`).
    CopyLogicalSlots {
        /// The primary.
        source: NodeId,
        /// The slots to copy.
        slots: Vec<String>,
    },
    /// On a replica: advance copies of permanent logical slots to what the primary's
    /// consumer confirmed (never further).
    AdvanceLogicalSlots {
        /// Where to.
        slots: Vec<SlotAdvance>,
    },
}

/// One thing to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
// A handful of actions per decision: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Action {
    /// Propose an operation to consensus.
    Propose {
        /// The operation.
        op: Operation,
    },
    /// Act on the local PostgreSQL.
    Pg {
        /// The action.
        action: PgAction,
    },
}

/// What the decision was about; a stable field in logs and simulation traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// Nothing to change.
    Steady,
    /// Consensus unreachable: no decision taken.
    NoMajority,
    /// Maintenance mode: no automatic change.
    Paused,
    /// Initialising the cluster, or waiting for it.
    Bootstrap,
    /// Primary renewing its lease.
    Renew,
    /// Primary stopping itself because its lease is (about to be) lost.
    Fence,
    /// Primary restarting its crashed postmaster in place.
    Restart,
    /// Primary giving up the lease.
    Release,
    /// Replica detaching from an expired primary.
    Detach,
    /// Taking over the lease after the primary was lost.
    Failover,
    /// Waiting before failover (quorum, detachments, candidates), with the reason.
    FailoverBlocked,
    /// Promoting this node after acquiring the lease.
    Promote,
    /// Following the current primary.
    Follow,
    /// Rebuilding this node as a replica (rewind or clone).
    Rejoin,
    /// Planned switchover steps.
    Switchover,
    /// Managing the synchronous set or slots.
    Replication,
    /// This member was removed from the cluster: it takes no part.
    Removed,
}

/// The lease this node holds, as far as the policy can prove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseHold {
    /// The lease epoch.
    pub epoch: crate::types::Epoch,
    /// Until when (this node's monotonic clock) it may act as primary: the commit fence
    /// acknowledges WAL before this instant only.
    pub deadline: Millis,
}

/// The outcome of one step: what to do, why, and everything the agent's executor needs
/// beside the actions — the lease it may act on (the commit fence's deadline) and what
/// its lease keeper may renew while the actions run. No side query on the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// What the decision is about.
    pub kind: DecisionKind,
    /// Why, in words a DBA understands.
    pub reason: String,
    /// What to do, in order.
    pub actions: Vec<Action>,
    /// While this node holds the lease: its epoch and the deadline of the commit fence.
    /// `None` closes the fence.
    #[serde(default)]
    pub lease: Option<LeaseHold>,
    /// Whether, and until when, the lease keeper may renew the lease while this
    /// decision's actions run (see [`RenewalGrant`]).
    #[serde(default)]
    pub renewal: Option<RenewalGrant>,
    /// Failsafe mode, while this node holds the lease: whom to ask for confirmations
    /// should consensus not answer (the agent sends the round only then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe: Option<failsafe::FailsafeRound>,
}

impl Decision {
    /// A decision with no action (and no lease).
    pub fn none(kind: DecisionKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
            actions: Vec::new(),
            lease: None,
            renewal: None,
            failsafe: None,
        }
    }

    /// Whether the commit fence may acknowledge at `now` under this decision's lease.
    pub fn fence_open(&self, now: Millis) -> bool {
        self.lease.is_some_and(|l| now < l.deadline)
    }
}

/// A failover policy: the decision core, or an integrator's own. The simulator and the
/// agent drive any `Policy` the same way: one [`Policy::step`] per HA loop iteration,
/// whose [`Decision`] says what to do and which lease the node may act on (the commit
/// fence acknowledges only while [`Decision::fence_open`]).
pub trait Policy: Send {
    /// One HA loop iteration.
    fn step(&mut self, obs: &Observation<'_>) -> Decision;

    /// The node's identity changed (tags or advertised addresses, on configuration
    /// reload); the next publication should carry the new values.
    fn set_identity(&mut self, me: NodeIdentity) {
        let _ = me;
    }
}
