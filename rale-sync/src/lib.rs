//! # rale-sync — synchronous replication for RALE
//!
//! This crate holds everything RALE knows about PostgreSQL synchronous replication:
//!
//! - [`config`]: the modes (`off`, `on` = `FIRST n`, `quorum` = `ANY n`), strict mode and
//!   `synchronous_commit` levels;
//! - [`quorum`]: the quorum rules a safe failover follows.
//!
//! ```
//! use rale_sync::quorum::promotion_quorum;
//! // ANY 1 of 2 standbys: both must be consulted before promoting one of them.
//! assert_eq!(promotion_quorum(2, 1), 2);
//! ```

pub mod config;
pub mod quorum;

pub use config::{CommitLevel, SyncConfig, SyncMode};

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
