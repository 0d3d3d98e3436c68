//! Client operations of [`RaftConsensus`]: the [`Consensus`] implementation, done locally on
//! the leader and forwarded to it from any other node.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use openraft::ChangeMembers;
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::network::{PATH_ADD_MEMBER, PATH_PROPOSE, PATH_READ, PATH_REMOVE_MEMBER, PostError};
use super::node::RaftConsensus;
use super::types::{Proposed, RaftNode, RemoveMemberRequest, WireError};
use crate::consensus::{Consensus, Membership, Peer};
use crate::state::{ClusterState, Command, Outcome};
use crate::types::NodeId;
use crate::{Error, Result};

/// Pause between attempts while no leader is known or the leader changes.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Most attempts of one operation (each also bounded by the operation's deadline).
const ATTEMPTS_MAX: u32 = 200;

/// Why a local attempt did not finish the operation.
pub(crate) enum LocalErr {
    /// This node is not the leader; the leader it knows, if any.
    NotLeader(Option<(u64, RaftNode)>),
    /// Worth another attempt (e.g. no quorum answered yet).
    Retry(String),
    /// Final.
    Fail(Error),
}

impl LocalErr {
    /// The wire form of this failure (server side of a forwarded request).
    pub(crate) fn into_wire(self) -> WireError {
        match self {
            LocalErr::NotLeader(leader) => WireError::NotLeader {
                leader_url: leader.map(|(_, n)| n.api_url),
            },
            LocalErr::Retry(message) => WireError::NoMajority { message },
            LocalErr::Fail(e) => WireError::from_error(&e),
        }
    }
}

fn forward_target(f: ForwardToLeader<u64, RaftNode>) -> LocalErr {
    LocalErr::NotLeader(f.leader_id.zip(f.leader_node))
}

fn write_err(e: RaftError<u64, ClientWriteError<u64, RaftNode>>, membership: bool) -> LocalErr {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => forward_target(f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            let text = c.to_string();
            if text.contains("undergoing a configuration change") {
                LocalErr::Retry(text)
            } else if membership {
                LocalErr::Fail(Error::Membership(text))
            } else {
                LocalErr::Fail(Error::Consensus(text))
            }
        }
        RaftError::Fatal(f) => LocalErr::Fail(Error::Consensus(format!("Raft stopped: {f}"))),
    }
}

/// How a forwarded request may be retried after a transport failure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Idempotence {
    /// Only when the request was certainly not delivered (a proposal).
    OnlyUndelivered,
    /// Always (reads, membership changes, which check before acting).
    Always,
}

impl RaftConsensus {
    fn own_id(&self) -> u64 {
        self.inner.config.raft_id
    }

    /// A proposal, here or forwarded to the leader, with its log index.
    async fn propose_indexed(&self, cmd: Command) -> Result<Proposed> {
        let timeout = self.inner.config.request_timeout;
        self.run_or_forward(
            "propose",
            timeout,
            Idempotence::OnlyUndelivered,
            PATH_PROPOSE,
            &cmd,
            || self.propose_local(cmd.clone()),
        )
        .await
    }

    /// One attempt at a proposal on this node.
    pub(crate) async fn propose_local(&self, cmd: Command) -> Result<Proposed, LocalErr> {
        self.inner
            .raft
            .client_write(cmd)
            .await
            .map(|resp| Proposed {
                outcome: resp.data,
                index: resp.log_id.index,
            })
            .map_err(|e| write_err(e, false))
    }

    /// One attempt at a linearizable read on this node.
    pub(crate) async fn read_local(&self) -> Result<Arc<ClusterState>, LocalErr> {
        match self.inner.raft.ensure_linearizable().await {
            // Applied up to the read index: the state machine has published at least that.
            Ok(_) => Ok(self.inner.state_rx.borrow().clone()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(forward_target(f))
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => {
                Err(LocalErr::Retry(q.to_string()))
            }
            Err(RaftError::Fatal(f)) => Err(LocalErr::Fail(Error::Consensus(format!(
                "Raft stopped: {f}"
            )))),
        }
    }

    fn require_leader(&self) -> Result<(), LocalErr> {
        let m = self.metrics();
        if m.current_leader == Some(self.own_id()) && m.state == openraft::ServerState::Leader {
            return Ok(());
        }
        let leader = m.current_leader.and_then(|id| {
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|n| (id, n.clone()))
        });
        Err(LocalErr::NotLeader(leader))
    }

    /// One attempt at adding `peer` on this node (it must lead).
    pub(crate) async fn add_member_local(&self, peer: Peer) -> Result<(), LocalErr> {
        self.require_leader()?;
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        for (id, node) in membership.nodes() {
            let same_id = *id == peer.raft_id;
            let same_name = node.name == peer.node.as_str();
            if same_id != same_name {
                return Err(LocalErr::Fail(Error::Membership(format!(
                    "{} (raft_id {}) clashes with member {} (raft_id {id})",
                    peer.node, peer.raft_id, node.name
                ))));
            }
            if same_id && voters.contains(id) {
                return Err(LocalErr::Fail(Error::Membership(format!(
                    "{} is already a voter",
                    peer.node
                ))));
            }
        }
        let raft = &self.inner.raft;
        raft.add_learner(peer.raft_id, RaftNode::from_peer(&peer), true)
            .await
            .map_err(|e| write_err(e, true))?;
        tracing::info!(node = %peer.node, raft_id = peer.raft_id, "learner caught up; promoting to voter");
        raft.change_membership(
            ChangeMembers::AddVoterIds(BTreeSet::from([peer.raft_id])),
            false,
        )
        .await
        .map_err(|e| write_err(e, true))?;
        tracing::info!(node = %peer.node, raft_id = peer.raft_id, reason = "add_member", "Raft voter added");
        Ok(())
    }

    /// One attempt at removing `node` on this node (it must lead).
    ///
    /// Refused when `node` is not a member, when it is the last voter, or when fewer than a
    /// majority of the remaining voters hold every entry this leader has applied (so the
    /// new configuration could not commit).
    pub(crate) async fn remove_member_local(&self, node: &NodeId) -> Result<(), LocalErr> {
        self.require_leader()?;
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let Some(id) = membership
            .nodes()
            .find(|(_, n)| n.name == node.as_str())
            .map(|(id, _)| *id)
        else {
            return Err(LocalErr::Fail(Error::Membership(format!(
                "{node} is not a member"
            ))));
        };
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let change = if voters.contains(&id) {
            let remaining: Vec<u64> = voters.iter().copied().filter(|v| *v != id).collect();
            if remaining.is_empty() {
                return Err(LocalErr::Fail(Error::Membership(format!(
                    "{node} is the last voter"
                ))));
            }
            let applied = m.last_applied.map(|l| l.index);
            let replication = m.replication.clone().unwrap_or_default();
            let current = remaining
                .iter()
                .filter(|v| {
                    **v == self.own_id()
                        || replication
                            .get(v)
                            .is_some_and(|matched| matched.map(|l| l.index) >= applied)
                })
                .count();
            if current * 2 <= remaining.len() {
                return Err(LocalErr::Fail(Error::Membership(format!(
                    "only {current} of the {} remaining voters are up to date: they could not form a majority",
                    remaining.len()
                ))));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.inner
            .raft
            .change_membership(change, false)
            .await
            .map_err(|e| write_err(e, true))?;
        tracing::info!(node = %node, raft_id = id, reason = "remove_member", "Raft member removed");
        Ok(())
    }

    /// Runs `local` here, or forwards `req` to the leader at `path`, until done, failed or
    /// `deadline`.
    async fn run_or_forward<T, Req, Fut, L>(
        &self,
        op: &'static str,
        timeout: Duration,
        idempotence: Idempotence,
        path: &'static str,
        req: &Req,
        local: L,
    ) -> Result<T>
    where
        T: DeserializeOwned,
        Req: Serialize + Sync,
        Fut: Future<Output = Result<T, LocalErr>>,
        L: Fn() -> Fut,
    {
        let deadline = Instant::now() + timeout;
        let work = async {
            let mut why = String::from("no attempt made");
            for _ in 0..ATTEMPTS_MAX {
                match local().await {
                    Ok(v) => return Ok(v),
                    Err(LocalErr::Fail(e)) => return Err(e),
                    Err(LocalErr::Retry(w)) => why = w,
                    Err(LocalErr::NotLeader(Some((id, node)))) if id != self.own_id() => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        let reply: Result<Result<T, WireError>, PostError> = self
                            .inner
                            .client
                            .post(&node.api_url, id, path, req, left)
                            .await;
                        match reply {
                            Ok(Ok(v)) => return Ok(v),
                            Ok(Err(WireError::NotLeader { .. })) => {
                                why = format!("{} is no longer the leader", node.name);
                            }
                            Ok(Err(WireError::NoMajority { message }))
                                if idempotence == Idempotence::Always =>
                            {
                                why = format!("leader {}: {message}", node.name);
                            }
                            Ok(Err(WireError::NoMajority { message })) => {
                                // The leader may hold the entry and commit it later.
                                return Err(Error::NoMajority(format!(
                                    "{op} forwarded to leader {}: {message}; it may still be applied",
                                    node.name
                                )));
                            }
                            Ok(Err(other)) => return Err(other.into_error(&node.api_url)),
                            Err(e @ PostError::Connect(_)) => {
                                why = format!("leader {} unreachable: {e}", node.name);
                            }
                            Err(e) if idempotence == Idempotence::Always => {
                                why = format!("leader {}: {e}", node.name);
                            }
                            Err(e) => {
                                return Err(Error::NoMajority(format!(
                                    "{op} forwarded to leader {}: {e}; it may still be applied",
                                    node.name
                                )));
                            }
                        }
                    }
                    Err(LocalErr::NotLeader(_)) => {
                        why = "no leader known (election in progress)".into();
                    }
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                tokio::time::sleep(RETRY_PAUSE.min(left)).await;
            }
            Err(Error::NoMajority(format!("{op}: {why}")))
        };
        match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(result) => result,
            Err(_) => Err(Error::NoMajority(format!(
                "{op} timed out after {} ms waiting for a majority{}",
                timeout.as_millis(),
                if idempotence == Idempotence::OnlyUndelivered {
                    "; it may still be applied"
                } else {
                    ""
                }
            ))),
        }
    }
}

#[async_trait]
impl Consensus for RaftConsensus {
    async fn read(&self) -> Result<Arc<ClusterState>> {
        let timeout = self.inner.config.request_timeout;
        let state: ClusterState = self
            .run_or_forward(
                "read",
                timeout,
                Idempotence::Always,
                PATH_READ,
                &(),
                || async { self.read_local().await.map(|s| (*s).clone()) },
            )
            .await?;
        Ok(Arc::new(state))
    }

    async fn propose(&self, cmd: Command) -> Result<Outcome> {
        Ok(self.propose_indexed(cmd).await?.outcome)
    }

    async fn propose_visible(&self, cmd: Command) -> Result<Outcome> {
        let timeout = self.inner.config.request_timeout;
        let started = Instant::now();
        let proposed = self.propose_indexed(cmd).await?;
        // A proposal forwarded to the leader is applied there first; wait (bounded) until
        // this node has applied it too.
        let left = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        if let Err(e) = self
            .inner
            .raft
            .wait(Some(left))
            .applied_index_at_least(Some(proposed.index), "read your writes")
            .await
        {
            tracing::debug!(index = proposed.index, error = %e,
                "the proposal is applied on the leader but not yet here");
        }
        Ok(proposed.outcome)
    }

    fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.inner.state_rx.clone()
    }

    async fn membership(&self) -> Result<Membership> {
        let m = self.metrics();
        if let Err(e) = &m.running_state {
            return Err(Error::Consensus(format!("Raft stopped: {e}")));
        }
        let membership = m.membership_config.membership();
        let peer = |id: u64| -> Result<Peer> {
            membership
                .get_node(&id)
                .ok_or_else(|| Error::Consensus(format!("member {id} has no address")))?
                .to_peer(id)
        };
        let voters = membership
            .voter_ids()
            .map(peer)
            .collect::<Result<Vec<_>>>()?;
        let learners = membership
            .learner_ids()
            .map(peer)
            .collect::<Result<Vec<_>>>()?;
        Ok(Membership {
            voters,
            learners,
            leader: m.current_leader.and_then(|id| Self::name_of(&m, id)),
            term: m.current_term,
        })
    }

    async fn add_member(&self, peer: Peer) -> Result<()> {
        if peer.raft_id == 0 {
            return Err(Error::Membership(format!("{} has raft_id 0", peer.node)));
        }
        let timeout = self.inner.config.membership_timeout;
        self.run_or_forward(
            "add_member",
            timeout,
            Idempotence::Always,
            PATH_ADD_MEMBER,
            &peer,
            || self.add_member_local(peer.clone()),
        )
        .await
    }

    async fn remove_member(&self, node: &NodeId) -> Result<()> {
        let timeout = self.inner.config.membership_timeout;
        let req = RemoveMemberRequest { node: node.clone() };
        self.run_or_forward(
            "remove_member",
            timeout,
            Idempotence::Always,
            PATH_REMOVE_MEMBER,
            &req,
            || self.remove_member_local(node),
        )
        .await
    }

    fn has_majority(&self) -> bool {
        let m = self.metrics();
        self.majority_from(&m)
    }
}
