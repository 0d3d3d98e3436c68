//! The openraft type configuration and the messages exchanged between agents.
//!
//! Everything here is crate-private: no public item outside `consensus::raft` names an
//! openraft type.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::consensus::Peer;
use crate::state::{ClusterState, Command, Outcome};
use crate::types::NodeId;
use crate::{Error, Result};

/// What openraft keeps about a member: its name and where its agent API listens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RaftNode {
    /// The member name ([`NodeId`] as a string).
    pub name: String,
    /// Base URL of the member's agent API.
    pub api_url: String,
}

impl RaftNode {
    pub(crate) fn from_peer(peer: &Peer) -> Self {
        Self {
            name: peer.node.as_str().to_owned(),
            api_url: peer.api_url.clone(),
        }
    }

    pub(crate) fn to_peer(&self, raft_id: u64) -> Result<Peer> {
        Ok(Peer {
            node: NodeId::new(self.name.clone())?,
            raft_id,
            api_url: self.api_url.clone(),
        })
    }
}

openraft::declare_raft_types!(
    /// RALE's openraft type configuration: the log carries [`Command`]s, applying one
    /// yields an [`Outcome`].
    pub(crate) TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = u64,
        Node = RaftNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The openraft handle.
pub(crate) type Raft = openraft::Raft<TypeConfig>;
/// A log id.
pub(crate) type LogId = openraft::LogId<u64>;
/// A stored membership.
pub(crate) type StoredMembership = openraft::StoredMembership<u64, RaftNode>;
/// A storage error.
pub(crate) type StorageError = openraft::StorageError<u64>;
/// A log entry.
pub(crate) type Entry = openraft::Entry<TypeConfig>;
/// A snapshot's metadata.
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<u64, RaftNode>;

/// Why a request forwarded to another agent (`/raft/propose`, `/raft/read`,
/// `/raft/members/*`) failed; carried as JSON so the caller can rebuild an [`Error`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum WireError {
    /// The receiver is not the leader; `leader_url` is the leader it knows, if any.
    NotLeader {
        /// The leader's API URL.
        leader_url: Option<String>,
    },
    /// No majority reachable (or it did not answer in time).
    NoMajority {
        /// Details.
        message: String,
    },
    /// A membership change was refused.
    Membership {
        /// Details.
        message: String,
    },
    /// Anything else.
    Consensus {
        /// Details.
        message: String,
    },
}

impl WireError {
    /// The [`WireError`] that stands for `err` on the wire.
    pub(crate) fn from_error(err: &Error) -> Self {
        match err {
            Error::NoMajority(m) => WireError::NoMajority { message: m.clone() },
            Error::Membership(m) => WireError::Membership { message: m.clone() },
            other => WireError::Consensus {
                message: other.to_string(),
            },
        }
    }

    /// The crate error for a failure reported by the agent at `url`.
    pub(crate) fn into_error(self, url: &str) -> Error {
        match self {
            WireError::NotLeader { leader_url } => Error::NoMajority(format!(
                "{url} is not the leader (it names {})",
                leader_url.as_deref().unwrap_or("no leader")
            )),
            WireError::NoMajority { message } => Error::NoMajority(format!("{url}: {message}")),
            WireError::Membership { message } => Error::Membership(format!("{url}: {message}")),
            WireError::Consensus { message } => Error::Consensus(format!("{url}: {message}")),
        }
    }
}

/// A proposal's outcome and the index of the log entry that carried it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Proposed {
    /// What applying the command did.
    pub outcome: Outcome,
    /// Its log index: a follower that forwarded the proposal waits until it has applied
    /// this far before answering, so its own reads see the change.
    pub index: u64,
}

/// Reply to a forwarded proposal.
pub(crate) type ProposeReply = std::result::Result<Proposed, WireError>;
/// Reply to a forwarded linearizable read.
pub(crate) type ReadReply = std::result::Result<ClusterState, WireError>;
/// Reply to a forwarded membership change.
pub(crate) type MemberReply = std::result::Result<(), WireError>;

/// Body of `/raft/members/remove`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RemoveMemberRequest {
    /// The member to remove.
    pub node: NodeId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_errors_round_trip_and_map_back() {
        let cases = [
            Error::NoMajority("quorum lost".into()),
            Error::Membership("last voter".into()),
            Error::Consensus("stopped".into()),
        ];
        for err in cases {
            let wire = WireError::from_error(&err);
            let json = serde_json::to_string(&wire).expect("encodes");
            let back: WireError = serde_json::from_str(&json).expect("decodes");
            assert_eq!(back, wire);
            let mapped = back.into_error("http://leader:8008");
            assert_eq!(
                std::mem::discriminant(&mapped),
                std::mem::discriminant(&err),
                "{json}"
            );
            assert!(mapped.to_string().contains("http://leader:8008"));
        }
        let not_leader = WireError::NotLeader { leader_url: None };
        assert!(matches!(
            not_leader.into_error("http://x:1"),
            Error::NoMajority(_)
        ));
        let reply: ProposeReply = Ok(Proposed {
            outcome: Outcome::Applied,
            index: 7,
        });
        let json = serde_json::to_string(&reply).expect("encodes");
        let back: ProposeReply = serde_json::from_str(&json).expect("decodes");
        assert_eq!(back, reply);
    }

    #[test]
    fn nodes_map_to_peers() {
        let peer = Peer {
            node: NodeId::new("db-1").expect("valid name"),
            raft_id: 7,
            api_url: "http://db-1:8008".into(),
        };
        let node = RaftNode::from_peer(&peer);
        assert_eq!(node.to_peer(7).expect("valid"), peer);
        let bad = RaftNode {
            name: "bad name".into(),
            api_url: String::new(),
        };
        assert!(bad.to_peer(1).is_err());
    }
}
