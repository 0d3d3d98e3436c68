//! The lease-gated commit fence (design: `docs/fence.md`).
//!
//! A primary's PostgreSQL keeps acknowledging commits while its agent is frozen or dead.
//! The fence closes that window: the agent connects to its own primary as a physical
//! streaming-replication client named [`rale_sync::enforce::FENCE_APPLICATION_NAME`]
//! (`rale_fence`), which `synchronous_standby_names` lists as a mandatory synchronous
//! standby. The fence acknowledges WAL only while the agent's lease is valid
//! ([`FenceDeadline::is_open`]); when the lease runs out it keeps consuming WAL but
//! repeats the last position it acknowledged, so every new commit waits. A dead agent
//! drops the connection and a frozen one stops answering: commits wait as well.
//!
//! The fence stores nothing: `XLogData` payloads are dropped on receipt, and it uses no
//! replication slot.
//!
//! ```no_run
//! # async fn demo(local: rale::LocalPostgresConfig) {
//! use ramd_ref::fence::{self, FenceConfig};
//! use ramd_ref::ha::FenceDeadline;
//! use tokio::sync::watch;
//!
//! let deadline = FenceDeadline::default(); // the HA loop moves it with the lease
//! let (_active_tx, active) = watch::channel(true); // "this node is primary"
//! let (_shutdown_tx, shutdown) = watch::channel(false);
//! let task = tokio::spawn(fence::run(FenceConfig::from_local(&local), deadline, active, shutdown));
//! # let _ = task;
//! # }
//! ```

mod conn;
pub mod proto;
mod status;
mod task;
mod wiring;

use std::path::PathBuf;
use std::time::Duration;

use rale::{LocalPostgresConfig, Millis};

use crate::ha::FenceDeadline;
use rale_sync::enforce::FENCE_APPLICATION_NAME;

pub use conn::{Credentials, Endpoint, ReplicationConnection, SystemIdentity, parse_identify_row};
pub use status::{current, view, view_at};
pub use task::{FenceStatus, run, run_with_status};
pub use wiring::{should_fence, spawn};

/// What can go wrong on a fence connection (every error ends the session; the task
/// reconnects).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server sent something this client does not understand.
    #[error("replication protocol: {0}")]
    Protocol(String),
    /// Authentication failed or needs what is not configured.
    #[error("authentication: {0}")]
    Auth(String),
    /// The server reported an error.
    #[error("server {severity} {code}: {message}")]
    Server {
        /// `ERROR`, `FATAL`, …
        severity: String,
        /// SQLSTATE.
        code: String,
        /// Primary message.
        message: String,
    },
    /// The replication stream ended (server closed it, or `CopyDone`).
    #[error("stream ended: {0}")]
    StreamEnded(String),
    /// An operation did not finish in time.
    #[error("{operation} timed out after {after_ms} ms")]
    Timeout {
        /// What timed out.
        operation: &'static str,
        /// The bound.
        after_ms: u64,
    },
}

/// Result of fence operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the fence reaches the local server and how often it reports.
#[derive(Clone, Debug)]
pub struct FenceConfig {
    /// The local server (normally its Unix socket).
    pub endpoint: Endpoint,
    /// Login; `application_name` must be `rale_fence`.
    pub credentials: Credentials,
    /// Longest wait between status updates (also while the fence is closed, to keep
    /// `wal_sender_timeout` satisfied).
    pub status_interval: Duration,
    /// Bound of connecting, logging in and starting the stream.
    pub connect_timeout: Duration,
    /// First reconnect delay after a failure; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
}

impl FenceConfig {
    /// Connects through `socket_dir/.s.PGSQL.<port>` as `user` (trust on the local
    /// socket), with a 100 ms status interval, 5 s connect timeout and 50 ms–1 s backoff.
    pub fn unix(socket_dir: impl Into<PathBuf>, port: u16, user: impl Into<String>) -> Self {
        Self {
            endpoint: Endpoint::Unix {
                socket_dir: socket_dir.into(),
                port,
            },
            credentials: Credentials {
                user: user.into(),
                password: None,
                database: "postgres".into(),
                application_name: FENCE_APPLICATION_NAME.into(),
            },
            status_interval: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
        }
    }

    /// The daemon's settings: the local socket, port and superuser of
    /// [`LocalPostgresConfig`] (the superuser has replication rights; its password is
    /// passed in case the socket is not `trust`).
    pub fn from_local(cfg: &LocalPostgresConfig) -> Self {
        let mut c = Self::unix(cfg.socket_dir.clone(), cfg.port, cfg.superuser.clone());
        c.credentials.password = Some(cfg.superuser_password.clone());
        c
    }
}

/// What the fence asks before acknowledging: is the lease valid at `now` (monotonic
/// `CLOCK_BOOTTIME` milliseconds, [`crate::ha::monotonic_now`])? The daemon passes its
/// [`FenceDeadline`]; tests and tools may pass their own gate.
pub trait LeaseGate: Send + Sync + 'static {
    /// Whether WAL may be acknowledged at `now`.
    fn is_open_at(&self, now: Millis) -> bool;
    /// The current deadline (monotonic milliseconds, 0 = closed), for status reports;
    /// `None` when the gate has no single deadline.
    fn deadline(&self) -> Option<Millis> {
        None
    }
}

impl LeaseGate for FenceDeadline {
    fn is_open_at(&self, now: Millis) -> bool {
        self.is_open(now)
    }
    fn deadline(&self) -> Option<Millis> {
        Some(self.get())
    }
}

impl<G: LeaseGate + ?Sized> LeaseGate for std::sync::Arc<G> {
    fn is_open_at(&self, now: Millis) -> bool {
        (**self).is_open_at(now)
    }
    fn deadline(&self) -> Option<Millis> {
        (**self).deadline()
    }
}

/// Whether a `synchronous_standby_names` value mentions the fence (ASCII
/// case-insensitively, as PostgreSQL compares standby names).
pub fn names_fence(synchronous_standby_names: &str) -> bool {
    synchronous_standby_names
        .to_ascii_lowercase()
        .contains(FENCE_APPLICATION_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_local_uses_socket_and_superuser() {
        let node = rale::NodeId::new("n1").expect("valid id");
        let l = LocalPostgresConfig::new(node, "/d", "/s", 6543, "pw", "rpw");
        let c = FenceConfig::from_local(&l);
        assert_eq!(
            c.endpoint,
            Endpoint::Unix {
                socket_dir: "/s".into(),
                port: 6543
            }
        );
        assert_eq!(c.credentials.user, "postgres");
        assert_eq!(c.credentials.application_name, "rale_fence");
        assert_eq!(c.credentials.password.as_deref(), Some("pw"));
        assert!(c.status_interval <= Duration::from_millis(100));
    }

    #[test]
    fn detects_fence_in_names() {
        assert!(names_fence("FIRST 1 (rale_fence)"));
        assert!(names_fence("FIRST 2 (\"RALE_FENCE\", n2)"));
        assert!(!names_fence("ANY 1 (n2, n3)"));
        assert!(!names_fence(""));
    }
}
