//! # rale-sync — synchronous replication for RALE
//!
//! Everything RALE knows about PostgreSQL synchronous replication, as pure,
//! deterministic functions (no I/O, no clock):
//!
//! - [`config`]: the modes (`off`, `on` = `FIRST n`, `quorum` = `ANY n`), strict mode and
//!   `synchronous_commit` levels;
//! - [`names`]: the `synchronous_standby_names` value, parsed and printed exactly as
//!   PostgreSQL 15 reads it;
//! - [`choose`]: which standbys are synchronous, from the configuration and their state;
//! - [`enforce`]: the value PostgreSQL enforces for a choice, with the lease fence;
//! - [`transition`]: the order of consensus writes and PostgreSQL reloads that never
//!   lets a failover lose an acknowledged commit;
//! - [`quorum`]: how many synchronous standbys a failover must reach;
//! - [`health`]: Patroni-compatible `/sync`, `/async`, `/quorum`, `/read-only-sync`.
//!
//! ```
//! use rale_sync::choose::{Candidate, choose_sync_set};
//! use rale_sync::names::StandbyNames;
//! use rale_sync::transition::{RecordedSet, Step, Target, plan_transition};
//! use rale_sync::{SyncConfig, SyncMode};
//!
//! // Parse what PostgreSQL holds now, and print it canonically.
//! let now: StandbyNames = "n2, n3".parse()?;
//! assert_eq!(now.to_string(), "FIRST 1 (n2, n3)");
//!
//! // Choose two synchronous standbys among the candidates.
//! let config = SyncConfig { mode: SyncMode::On, node_count: 2, ..SyncConfig::default() };
//! let standby = |name: &str, priority| Candidate {
//!     name: name.into(), streaming: true, flush_lag_bytes: 0, replay_lag_bytes: 0,
//!     nosync: false, priority, healthy: true, recorded: false,
//! };
//! let plan = choose_sync_set(&config, &[standby("n3", 1), standby("n2", 2), standby("n4", 0)]);
//! assert_eq!(plan.standbys, ["n2", "n3"]);
//!
//! // What to enforce with the lease fence, and in which order to get there safely.
//! let target = Target::from_plan(&plan, true)?;
//! assert_eq!(target.enforced().to_string(), "FIRST 3 (rale_fence, n2, n3)");
//! let steps = plan_transition(&RecordedSet::new(["n2"], 1), &"FIRST 2 (rale_fence, n2)".parse()?, &target);
//! assert_eq!(steps, [
//!     Step::Enforce(target.enforced().clone()),           // n2 still acknowledges every commit
//!     Step::CatchUp(RecordedSet::new(["n2", "n3"], 2)),  // wait until both hold every commit
//!     Step::Publish(RecordedSet::new(["n2", "n3"], 2)),  // only now promise n = 2
//! ]);
//! # Ok::<(), rale_sync::Error>(())
//! ```

// The determinism lints of clippy.toml apply to rale::decide only.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod choose;
pub mod config;
pub mod enforce;
pub mod health;
pub mod names;
pub mod quorum;
pub mod transition;

pub use choose::{Candidate, SyncPlan, choose_sync_set};
pub use config::{CommitLevel, SyncConfig, SyncMode};
pub use enforce::{FENCE_APPLICATION_NAME, enforced_names};
pub use names::{StandbyNames, SyncList, SyncMethod};
pub use transition::{RecordedSet, Step, Target, plan_transition};

/// Errors of this crate.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is out of its domain.
    #[error("invalid synchronous replication setting: {0}")]
    InvalidSetting(String),
    /// `synchronous_standby_names` text that does not parse.
    #[error("invalid synchronous_standby_names at byte {position}: {message}")]
    Parse {
        /// Byte offset of the problem.
        position: usize,
        /// What is wrong.
        message: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
