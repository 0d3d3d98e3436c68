//! # The agent runtime
//!
//! An [`Agent`] is one node's HA loop with its lease keeper: every `loop_interval` it
//! observes PostgreSQL and reads the cluster state, asks a [`Policy`] (by default the
//! [`Decider`]) for a [`Decision`], executes the decision's actions in order against
//! the [`PostgresControl`] and the [`Consensus`], moves the commit fence's deadline
//! ([`FenceDeadline`]) to the lease the decision holds, applies the cluster-wide
//! PostgreSQL parameters, and reports the iteration to its [`AgentHooks`]. While one
//! iteration runs longer than the renew interval (crash recovery in `pg_ctl start`, a
//! slow promotion) the lease keeper renews the lease within the policy's
//! [`RenewalGrant`](crate::decide::RenewalGrant).
//!
//! Every piece is a seam: the consensus (the built-in Raft, an in-memory one, your own),
//! the PostgreSQL control (the local server, the in-memory one, your own), the policy,
//! the clocks and timers ([`Runtime`]: `SystemRuntime` (feature `agent`) in production, the simulator's
//! virtual clock in tests) and the hooks (`ramd` publishes its REST API snapshot and runs
//! user callbacks from them).
//!
//! ```
//! use std::sync::Arc;
//! use rale::agent::{Agent, Runtime};
//! use rale::decide::NodeIdentity;
//! use rale::pg::memory::MemPostgresWorld;
//! use rale::{MemConsensus, NodeId};
//!
//! # struct Clock;
//! # impl Runtime for Clock {
//! #     fn now(&self) -> rale::Millis { rale::Millis(1) }
//! #     fn wall_ms(&self) -> u64 { 0 }
//! #     fn sleep(&self, _: std::time::Duration) -> rale::agent::BoxFuture<'static, ()> {
//! #         Box::pin(std::future::pending())
//! #     }
//! # }
//! let node = NodeId::new("n1").expect("valid name");
//! let identity = NodeIdentity {
//!     node: node.clone(),
//!     api_url: "http://127.0.0.1:8008".into(),
//!     pg_host: "127.0.0.1".into(),
//!     pg_port: 5432,
//!     tags: Default::default(),
//! };
//! let consensus = Arc::new(MemConsensus::new());
//! let pg = Arc::new(MemPostgresWorld::default().server("n1").expect("valid name"));
//! let agent = Agent::builder(identity, consensus, pg, Arc::new(Clock)).build();
//! let fence = agent.fence(); // what a commit gate would watch
//! assert!(!fence.is_open(rale::Millis(1)));
//! // `agent.run(shutdown)` runs it until `shutdown` turns true.
//! ```

mod executor;
mod failsafe;
mod fence;
mod keeper;
mod params;
mod runtime;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

pub use executor::action_name;
pub use failsafe::{FailsafeClient, FailsafeGate};
pub use fence::FenceDeadline;
pub use params::{Applied, ParameterApplier, refused_by_server};
#[cfg(feature = "agent")]
pub use runtime::SystemRuntime;
pub use runtime::{BoxFuture, Runtime, timeout};

use crate::consensus::{Consensus, Membership};
use crate::decide::{Decider, Decision, NodeIdentity, Policy};
use crate::pg::PostgresControl;
use crate::state::ClusterState;
use crate::status::PgStatus;
use crate::types::{Epoch, Millis};

/// What one HA loop iteration saw and did, for [`AgentHooks::after_iteration`].
#[derive(Debug, Clone)]
pub struct IterationReport {
    /// The node's identity during the iteration.
    pub identity: NodeIdentity,
    /// The local PostgreSQL as observed at the start of the iteration.
    pub pg: PgStatus,
    /// The cluster state read (linearizably) this iteration; `None` without a majority.
    pub cluster: Option<Arc<ClusterState>>,
    /// The lease epoch this node holds, if its lease is still valid at the end.
    pub lease_epoch: Option<Epoch>,
    /// Whether the commit fence may acknowledge at the end of the iteration.
    pub fence_open: bool,
    /// The policy's decision.
    pub decision: Decision,
    /// How long the iteration took (monotonic milliseconds).
    pub duration_ms: u64,
    /// Wall-clock Unix milliseconds at the end of the iteration.
    pub wall_ms: u64,
    /// The consensus membership, when it answered.
    pub membership: Option<Membership>,
}

/// Observers of the HA loop. Both methods run inside the loop: they must be quick (spawn
/// anything slow).
pub trait AgentHooks: Send + Sync {
    /// PostgreSQL was observed (every iteration, before the decision).
    fn observed(&self, pg: &PgStatus) {
        let _ = pg;
    }

    /// The policy decided, at `now` on the node's monotonic clock; `cluster_read` tells
    /// whether the decision saw the cluster state (a majority answered).
    fn decided(&self, now: Millis, decision: &Decision, cluster_read: bool) {
        let _ = (now, decision, cluster_read);
    }

    /// An iteration finished.
    fn after_iteration(&self, report: &IterationReport) {
        let _ = report;
    }
}

/// Hooks that do nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl AgentHooks for NoHooks {}

/// Why an agent stopped by itself.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AgentError {
    /// A PostgreSQL action failed for a reason that will not go away by retrying
    /// ([`PostgresControl::preflight`]: permissions, binaries, a foreign data directory).
    #[error("permanent failure: {0}")]
    Permanent(String),
}

/// Builds an [`Agent`] (see [`Agent::builder`]).
pub struct AgentBuilder {
    identity: NodeIdentity,
    consensus: Arc<dyn Consensus>,
    pg: Arc<dyn PostgresControl>,
    rt: Arc<dyn Runtime>,
    policy: Option<Box<dyn Policy>>,
    identity_rx: Option<watch::Receiver<NodeIdentity>>,
    hooks: Arc<dyn AgentHooks>,
    pg_lock: Option<Arc<tokio::sync::Mutex<()>>>,
    fence: FenceDeadline,
    parameter_record: Option<PathBuf>,
    keeper: Option<(Arc<dyn Consensus>, Arc<dyn Runtime>)>,
    failsafe_gate: Arc<FailsafeGate>,
    failsafe_client: Option<Arc<dyn FailsafeClient>>,
}

impl AgentBuilder {
    /// The lease keeper proposes through `consensus` and sleeps on `rt` instead of the
    /// loop's (the simulator tells the keeper's requests from the loop's this way).
    pub(crate) fn keeper_parts(
        mut self,
        consensus: Arc<dyn Consensus>,
        rt: Arc<dyn Runtime>,
    ) -> Self {
        self.keeper = Some((consensus, rt));
        self
    }

    /// Decides with `policy` instead of the [`Decider`].
    pub fn policy(mut self, policy: Box<dyn Policy>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Takes new identities (tags, advertised addresses) from `rx` on configuration
    /// reload; the policy hears of them through [`Policy::set_identity`].
    pub fn identity_updates(mut self, rx: watch::Receiver<NodeIdentity>) -> Self {
        self.identity_rx = Some(rx);
        self
    }

    /// Reports iterations to `hooks`.
    pub fn hooks(mut self, hooks: Arc<dyn AgentHooks>) -> Self {
        self.hooks = hooks;
        self
    }

    /// Shares the lock held while PostgreSQL is being changed (operator actions that
    /// restart or reinitialise the server take it too).
    pub fn pg_lock(mut self, lock: Arc<tokio::sync::Mutex<()>>) -> Self {
        self.pg_lock = Some(lock);
        self
    }

    /// Moves `fence` (shared with a commit gate) instead of a deadline of its own.
    pub fn fence(mut self, fence: FenceDeadline) -> Self {
        self.fence = fence;
        self
    }

    /// Keeps the record of the PostgreSQL parameters this agent set in `file`, so that
    /// parameters the configuration drops are removed across agent restarts too.
    pub fn parameter_record(mut self, file: PathBuf) -> Self {
        self.parameter_record = Some(file);
        self
    }

    /// Failsafe mode: asks other members' agents for confirmations through `client`
    /// when consensus does not answer (without a client, a primary that lost consensus
    /// always fences within its lease).
    pub fn failsafe_client(mut self, client: Arc<dyn FailsafeClient>) -> Self {
        self.failsafe_client = Some(client);
        self
    }

    /// Answers confirmation requests through `gate` (shared with the agents' API) instead
    /// of a gate of its own.
    pub fn failsafe_gate(mut self, gate: Arc<FailsafeGate>) -> Self {
        self.failsafe_gate = gate;
        self
    }

    /// The agent.
    pub fn build(self) -> Agent {
        let policy = self
            .policy
            .unwrap_or_else(|| Box::new(Decider::new(self.identity.clone(), self.rt.now())));
        let parameters = match self.parameter_record {
            Some(file) => ParameterApplier::load(file),
            None => ParameterApplier::default(),
        };
        let keeper = Arc::new(keeper::KeeperShared::default());
        let (keeper_consensus, keeper_rt) = self
            .keeper
            .unwrap_or_else(|| (self.consensus.clone(), self.rt.clone()));
        Agent {
            keeper_consensus,
            keeper_rt,
            ha: executor::HaLoop {
                rt: self.rt,
                policy,
                identity: self.identity,
                identity_rx: self.identity_rx,
                pg: self.pg,
                consensus: self.consensus,
                fence: self.fence,
                hooks: self.hooks,
                last_logged: None,
                pg_lock: self
                    .pg_lock
                    .unwrap_or_else(|| Arc::new(tokio::sync::Mutex::new(()))),
                parameters,
                keeper,
                fatal: None,
                outcomes: Vec::new(),
                parameter_failure: None,
                failsafe: self.failsafe_gate,
                failsafe_client: self.failsafe_client,
                failsafe_round: None,
                failsafe_missing: Vec::new(),
                read_failed: false,
                hurry: false,
            },
        }
    }
}

/// One node's agent (see the [module documentation](self)).
pub struct Agent {
    ha: executor::HaLoop,
    keeper_consensus: Arc<dyn Consensus>,
    keeper_rt: Arc<dyn Runtime>,
}

impl Agent {
    /// An agent for `identity` on `consensus` and `pg`, with the clocks of `rt`, deciding
    /// with the [`Decider`] unless [`AgentBuilder::policy`] says otherwise.
    pub fn builder(
        identity: NodeIdentity,
        consensus: Arc<dyn Consensus>,
        pg: Arc<dyn PostgresControl>,
        rt: Arc<dyn Runtime>,
    ) -> AgentBuilder {
        AgentBuilder {
            identity,
            consensus,
            pg,
            rt,
            policy: None,
            identity_rx: None,
            hooks: Arc::new(NoHooks),
            pg_lock: None,
            fence: FenceDeadline::default(),
            parameter_record: None,
            keeper: None,
            failsafe_gate: failsafe::new_gate(),
            failsafe_client: None,
        }
    }

    /// The gate this agent answers failsafe confirmation requests through (the agents'
    /// API hands requests to it).
    pub fn failsafe_gate(&self) -> Arc<FailsafeGate> {
        self.ha.failsafe.clone()
    }

    /// The commit fence's deadline this agent moves.
    pub fn fence(&self) -> FenceDeadline {
        self.ha.fence.clone()
    }

    /// Runs the HA loop and the lease keeper until `shutdown` turns true; a primary then
    /// stops PostgreSQL and releases its lease (recording where its WAL ends) so that a
    /// replica takes over at once, and in maintenance mode PostgreSQL is left running.
    /// Stops by itself, after the same shutdown, when a PostgreSQL action failed for a
    /// permanent reason.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), AgentError> {
        use futures_util::future::{Either, select};
        let keeper = keeper::keep_lease(
            self.keeper_rt,
            self.ha.keeper.clone(),
            self.keeper_consensus,
            self.ha.fence.clone(),
            self.ha.identity.node.clone(),
        );
        let ha = self.ha.run(shutdown);
        let ha = std::pin::pin!(ha);
        let keeper = std::pin::pin!(keeper);
        let ended = match select(ha, keeper).await {
            Either::Left((ended, _)) => ended,
            Either::Right(((), ha)) => ha.await,
        };
        ended.map_err(AgentError::Permanent)
    }

    /// One iteration, for tests that step an agent by hand; returns the cluster state it
    /// read.
    pub async fn iterate(&mut self) -> Option<Arc<ClusterState>> {
        self.ha.iterate().await
    }
}
