//! # rale — the core of RALE, PostgreSQL high availability on embedded Raft
//!
//! - [`types`], [`status`], [`state`], [`config`]: the domain — node ids, WAL positions
//!   ([`Lsn`] printed as PostgreSQL's `X/Y`), timelines, lease epochs, member status, and
//!   the replicated [`ClusterState`] with its deterministic [`state::Operation`]s;
//! - [`consensus`]: the [`Consensus`] seam (linearizable read, compare-and-set operations,
//!   watch, membership, majority) with an in-memory and an openraft implementation;
//! - [`pg`]: the [`PostgresControl`] seam and its local implementation;
//! - [`decide`]: the sans-IO HA decision core;
//! - [`agent`]: the agent runtime that executes a policy's decisions on a node;
//! - [`sim`]: the deterministic simulation harness that attacks a policy with faults.
//!
//! Features: none by default (the domain, the seams, `decide`, `sim`, `agent` without a
//! runtime); `raft` (the openraft consensus), `local-pg` (`LocalPostgres`), `agent`
//! (`agent::SystemRuntime` on tokio), `proptest` (`sim::strategy`), `testing`
//! (conformance suites).
//!
//! Examples (run in CI as tests):
//! - `examples/zone_policy.rs` (`cargo run -p rale --example zone_policy --features proptest`):
//!   an integrator's own [`decide::Policy`] (prefer candidates in the lost primary's zone)
//!   checked by the simulator's invariants in every replication mode;
//! - `examples/custom_agent.rs` (`cargo run -p rale --example custom_agent --features agent`):
//!   agents assembled with [`agent::Agent::builder`] from in-memory consensus and
//!   PostgreSQL and hooks of their own, bootstrapping and failing over.
//!
//! ```
//! use rale::Lsn;
//! let lsn: Lsn = "16/B374D848".parse().expect("valid LSN");
//! assert_eq!(lsn.to_string(), "16/B374D848");
//! ```

// The determinism lints of clippy.toml apply to rale::decide only.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod agent;
pub mod config;
pub mod consensus;
pub mod decide;
mod error;
pub mod files;
pub mod pg;
pub mod sim;
pub mod state;
pub mod status;
#[cfg(feature = "testing")]
pub mod testing;
pub mod types;

pub use config::DynamicConfig;
pub use consensus::{Consensus, MemConsensus};
pub use error::{Error, Result};
pub use pg::PostgresControl;
#[cfg(feature = "local-pg")]
pub use pg::local::{LocalPostgres, LocalPostgresConfig};
pub use state::ClusterState;
pub use types::{Epoch, Lsn, Millis, NodeId, Role, Tags, Timeline};
