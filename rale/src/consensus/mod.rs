//! The `Consensus` seam: a linearizable, replicated [`ClusterState`].
//!
//! Implementations: [`MemConsensus`] (in-process, for tests and examples) and the
//! openraft-backed implementation in [`raft`] for real agents.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::Result;
use crate::state::{ClusterState, Command, Outcome};
use crate::types::NodeId;

mod memory;
pub use memory::MemConsensus;
/// The openraft-backed implementation for real agents: [`raft::RaftConsensus`].
pub mod raft;

/// A consensus member as configuration names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Member name.
    pub node: NodeId,
    /// Numeric id used by the consensus protocol; unique and never reused.
    pub raft_id: u64,
    /// Base URL of the member's agent API, e.g. `http://127.0.0.1:8008`.
    pub api_url: String,
}

/// Who takes part in consensus right now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Voting members.
    pub voters: Vec<Peer>,
    /// Non-voting members catching up.
    pub learners: Vec<Peer>,
    /// The current consensus leader, if known.
    pub leader: Option<NodeId>,
    /// The current consensus term.
    pub term: u64,
}

/// Replicated, linearizable storage of the cluster state.
///
/// Contract for implementers (checked by the conformance suite, `testing` feature):
/// - `propose` returns only after the command was committed by a majority and applied
///   with [`ClusterState::apply`]; its [`Outcome`] is that of the apply;
/// - `read` returns a state at least as new as every command whose `propose` returned
///   before `read` was called (linearizable), or an error; never a stale state;
/// - `subscribe` yields every locally applied state (it may lag `read`);
/// - `has_majority` is `false` whenever this node could not have had a proposal committed
///   in the recent past; callers use it only to refuse acting, never to act;
/// - operations fail with [`crate::Error::NoMajority`] rather than block forever.
#[async_trait]
pub trait Consensus: Send + Sync {
    /// Linearizable read.
    async fn read(&self) -> Result<Arc<ClusterState>>;
    /// Commits and applies a command.
    async fn propose(&self, cmd: Command) -> Result<Outcome>;
    /// [`Consensus::propose`], and then waits (bounded) until this node has applied it
    /// too, so that [`Consensus::subscribe`] — and an API that answers from it — shows
    /// the change right away (read your writes). For operator requests; the HA loop
    /// reads linearizably and does not need it. The default is `propose`.
    async fn propose_visible(&self, cmd: Command) -> Result<Outcome> {
        self.propose(cmd).await
    }
    /// Locally applied states as they change.
    fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>>;
    /// Current membership.
    async fn membership(&self) -> Result<Membership>;
    /// Adds a member (first as a learner, then as a voter once caught up).
    async fn add_member(&self, peer: Peer) -> Result<()>;
    /// Removes a member; refused when the remaining voters could not form a majority.
    async fn remove_member(&self, node: &NodeId) -> Result<()>;
    /// Whether this node can currently reach a majority.
    fn has_majority(&self) -> bool;
}
