//! What the HA loop publishes to the API after every iteration: the node's latest view.

use std::sync::Arc;

use rale::ClusterState;
use rale::status::PgStatus;
use rale::types::{Epoch, NodeId, Tags};
use serde::Serialize;

/// The node's latest view, replaced after every HA loop iteration and read by the API.
#[derive(Clone, Debug, Serialize)]
pub struct NodeSnapshot {
    /// This node.
    pub node: NodeId,
    /// Base URL of this node's API.
    pub api_url: String,
    /// Host PostgreSQL listens on.
    pub pg_host: String,
    /// PostgreSQL port.
    pub pg_port: u16,
    /// This node's tags.
    pub tags: Tags,
    /// Latest observation of the local PostgreSQL.
    pub pg: PgStatus,
    /// Latest cluster state this node read from consensus.
    pub cluster: Arc<ClusterState>,
    /// Whether the last consensus read succeeded (a majority was reachable).
    pub consensus_ok: bool,
    /// `Some(epoch)` while this node holds a valid primary lease by its own clock.
    pub lease_epoch: Option<Epoch>,
    /// Whether the commit fence currently acknowledges WAL (lease valid).
    pub fence_open: bool,
    /// Unix milliseconds of the end of the last HA loop iteration.
    pub loop_last_unix_ms: u64,
    /// Duration of the last HA loop iteration.
    pub loop_duration_ms: u64,
    /// The last decision, in words.
    pub last_decision: String,
    /// Consensus term and leader, for metrics.
    pub consensus_term: u64,
    /// Name of the consensus leader if known.
    pub consensus_leader: Option<NodeId>,
    /// Unix milliseconds at which the agent started.
    pub started_unix_ms: u64,
}

impl NodeSnapshot {
    /// Whether this node is the writable primary: holds the lease and PostgreSQL is a
    /// running primary.
    pub fn is_primary(&self) -> bool {
        self.lease_epoch.is_some() && self.pg.role() == rale::Role::Primary
    }
}
