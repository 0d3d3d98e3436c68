//! [`RaftConsensus`]: the [`crate::Consensus`] of real agents, on embedded Raft
//! (openraft 0.9) with a durable redb store and HTTP between agents.
//!
//! - **State machine**: the log carries [`crate::state::Command`]s; every node applies
//!   them in log order with [`crate::ClusterState::apply`] and publishes each applied
//!   state on [`crate::Consensus::subscribe`].
//! - **Storage**: `raft.redb` in [`RaftConfig::data_dir`] holds the vote, the log, the
//!   committed log id, the last purged log id and the latest snapshot (the serialized
//!   state with its last applied log id and membership). Every write is fsync'ed before
//!   it is acknowledged. A snapshot is built every [`RaftConfig::snapshot_logs`] entries
//!   and the log before it is purged (keeping [`RaftConfig::logs_kept_after_snapshot`]).
//!   A restarted node rebuilds its state from the snapshot and its log.
//! - **Network**: serve [`router`] on the agent API port; peers reach each other at
//!   [`crate::consensus::Peer::api_url`]. With [`RaftConfig::auth_token`] set, every
//!   request carries and requires `Authorization: Bearer <token>`.
//! - **Any node serves clients**: `propose`, `read`, `add_member` and `remove_member` run
//!   on the leader; other nodes forward them to it (`/raft/propose`, …). Reads are
//!   linearizable (the leader confirms its leadership with a quorum and waits until the
//!   read index is applied). Every call is bounded by [`RaftConfig::request_timeout`]
//!   (membership changes by [`RaftConfig::membership_timeout`]) and fails with
//!   [`crate::Error::NoMajority`] rather than block. A proposal that timed out may still
//!   be applied later: callers re-read before retrying.
//! - **Majority** ([`crate::Consensus::has_majority`]), with `W` =
//!   [`RaftConfig::majority_timeout`] (default 2 × `election_timeout_max` = 800 ms): the
//!   leader needs openraft's last quorum acknowledgement (a heartbeat or append answered
//!   by a majority of voters), aged by the time since openraft published it, to be younger
//!   than `W` (a single-voter cluster's leader always qualifies); any other node needs a
//!   known leader and an append or snapshot accepted from it (openraft accepted its term)
//!   less than `W` ago; a stopped node never has a majority.
//! - **Membership**: initial voters are [`RaftConfig::peers`] (each initial node lists
//!   the same set, itself included); a new node lists no peers containing itself, starts
//!   empty and is added with `add_member` (learner until caught up, then voter).
//!
//! Raft leadership is not a lease: an isolated leader keeps believing it leads. Fencing
//! PostgreSQL relies on the agent's own lease, never on [`RaftStatus::is_leader`].
//!
//! ```no_run
//! use rale::consensus::raft::{RaftConfig, RaftConsensus, router};
//! use rale::consensus::Peer;
//! use rale::{Consensus, NodeId};
//!
//! # async fn run() -> rale::Result<()> {
//! let peers: Vec<Peer> = (1..=3)
//!     .map(|i| Peer {
//!         node: NodeId::new(format!("node{i}")).expect("valid name"),
//!         raft_id: i,
//!         api_url: format!("http://10.0.0.{i}:8008"),
//!     })
//!     .collect();
//! let mut config = RaftConfig::new(
//!     NodeId::new("node1")?,
//!     1,
//!     "http://10.0.0.1:8008",
//!     "/var/lib/ramd/raft",
//!     peers,
//! );
//! config.auth_token = Some("a shared secret".into());
//! let node = RaftConsensus::start(config).await?;
//! let app = axum::Router::new().merge(router(node.clone()));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8008")
//!     .await
//!     .map_err(|e| rale::Error::io("binding the API port", e))?;
//! tokio::spawn(async move { axum::serve(listener, app).await });
//! let state = node.read().await?;
//! println!("revision {}", state.revision);
//! # Ok(())
//! # }
//! ```
//!
//! [`RaftConfig::auth_token`]: crate::consensus::raft::RaftConfig::auth_token
//! [`RaftConfig::data_dir`]: crate::consensus::raft::RaftConfig::data_dir
//! [`RaftConfig::logs_kept_after_snapshot`]: crate::consensus::raft::RaftConfig::logs_kept_after_snapshot
//! [`RaftConfig::majority_timeout`]: crate::consensus::raft::RaftConfig::majority_timeout
//! [`RaftConfig::membership_timeout`]: crate::consensus::raft::RaftConfig::membership_timeout
//! [`RaftConfig::peers`]: crate::consensus::raft::RaftConfig::peers
//! [`RaftConfig::request_timeout`]: crate::consensus::raft::RaftConfig::request_timeout
//! [`RaftConfig::snapshot_logs`]: crate::consensus::raft::RaftConfig::snapshot_logs
//! [`RaftConsensus`]: crate::consensus::raft::RaftConsensus
//! [`RaftStatus::is_leader`]: crate::consensus::raft::RaftStatus::is_leader
//! [`router`]: crate::consensus::raft::router

// openraft's `StorageError` and `redb::Error` are large by design and only on error paths.
#![allow(clippy::result_large_err)]

mod client;
mod config;
mod db;
mod log_store;
mod network;
mod node;
mod server;
mod state_machine;
mod types;

pub use config::RaftConfig;
pub use node::{RaftConsensus, RaftStatus};
pub use server::{check_rpc_bodies, router};

#[cfg(test)]
mod tests;
