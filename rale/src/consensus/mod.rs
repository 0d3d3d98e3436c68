//! The `Consensus` seam: a linearizable, replicated [`ClusterState`].
//!
//! Implementations: [`MemConsensus`] (in-process, for tests and examples) and the
//! openraft-backed implementation in `raft` (feature `raft`) for real agents, and the
//! etcd v3 implementation in `etcd` (feature `etcd`) for sites that run etcd already.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::Result;
use crate::state::{ClusterState, Command, Outcome};
use crate::types::NodeId;

mod memory;
pub use memory::MemConsensus;
/// The etcd v3 implementation: [`etcd::EtcdConsensus`] (feature `etcd`).
#[cfg(feature = "etcd")]
pub mod etcd;
/// The openraft-backed implementation for real agents: [`raft::RaftConsensus`]
/// (feature `raft`).
#[cfg(feature = "raft")]
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

#[cfg(feature = "raft")]
impl Peer {
    /// The agent this peer's `api_url` reaches, as `host:port` (host in lower case,
    /// without a trailing dot, the scheme's default port filled in). Two peers with the
    /// same endpoint are one agent, which would answer — and vote — for both.
    pub fn endpoint(&self) -> Result<String> {
        endpoint(&self.api_url)
    }

    /// Refuses a peer list in which two members share a name, a consensus id or an
    /// endpoint ([`Peer::endpoint`]); the error names both.
    pub fn check_distinct(peers: &[Peer]) -> Result<()> {
        for (i, a) in peers.iter().enumerate() {
            let ea = a.endpoint()?;
            for b in &peers[i + 1..] {
                let bad = |what: String| {
                    Err(crate::Error::InvalidConfig(format!(
                        "peers {} (raft_id {}) and {} (raft_id {}) {what}",
                        a.node, a.raft_id, b.node, b.raft_id
                    )))
                };
                if a.node == b.node {
                    return bad("have the same name".into());
                }
                if a.raft_id == b.raft_id {
                    return bad("have the same raft_id".into());
                }
                if ea == b.endpoint()? {
                    return bad(format!(
                        "reach the same agent at {ea}: one agent would hold two votes"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `host:port` of an agent base URL (see [`Peer::endpoint`]).
#[cfg(feature = "raft")]
pub fn endpoint(api_url: &str) -> Result<String> {
    let bad = |why: String| crate::Error::InvalidConfig(format!("api_url {api_url:?}: {why}"));
    let url = reqwest::Url::parse(api_url.trim()).map_err(|e| bad(e.to_string()))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| bad("no port and no default port for its scheme".into()))?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host".into()))?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    Ok(format!("{host}:{port}"))
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

#[cfg(all(test, feature = "raft"))]
mod tests {
    use super::*;

    fn peer(name: &str, id: u64, url: &str) -> Peer {
        Peer {
            node: NodeId::new(name).expect("name"),
            raft_id: id,
            api_url: url.into(),
        }
    }

    #[test]
    fn endpoints_are_normalised_and_duplicates_refused() {
        assert_eq!(
            endpoint("http://Node1.Example.:8008/").ok().as_deref(),
            Some("node1.example:8008")
        );
        assert_eq!(
            endpoint("https://10.0.0.1").ok().as_deref(),
            Some("10.0.0.1:443")
        );
        assert_eq!(
            endpoint("http://[::1]:8008").ok().as_deref(),
            Some("[::1]:8008")
        );
        assert!(endpoint("not a url").is_err());
        let ok = [peer("a", 1, "http://h:1"), peer("b", 2, "http://h:2")];
        assert!(Peer::check_distinct(&ok).is_ok());
        let same = [peer("a", 1, "http://h:80"), peer("b", 2, "http://H/")];
        let e = Peer::check_distinct(&same)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("same agent at h:80") && e.contains("two votes"),
            "{e}"
        );
        let e = Peer::check_distinct(&[peer("a", 1, "http://h:1"), peer("a", 2, "http://h:2")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("same name"), "{e}");
    }
}
