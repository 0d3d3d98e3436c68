//! # rale-backup — backups for RALE
//!
//! - [`BackupTool`]: the seam (object-safe, `Send + Sync`, held as `Arc<dyn BackupTool>`)
//!   with three implementations driven as processes: [`PgBackRest`], [`Barman`] (local
//!   mode) and [`CustomTool`] (the integrator's own hook commands);
//! - [`jobs`]: every backup/restore as a tracked, persisted [`jobs::Job`], at most one
//!   heavy job per node;
//! - [`schedule`]: cron schedules, a pure placement rule that picks exactly one node,
//!   and a tokio task that fires them;
//! - [`retention`]: which backups a retention policy removes;
//! - [`replica`]: building a standby from the latest backup, with a `pg_basebackup`
//!   fallback;
//! - [`api`]: request/response bodies of `/api/v1/backup/*`;
//! - `testing` (feature): a conformance suite for `BackupTool` implementers.
//!
//! Tools run as the `postgres` OS user when the process is root.
//!
//! Where do scheduled backups run? (a pure piece, runnable as is)
//!
//! ```
//! use rale::{NodeId, Role};
//! use rale_backup::schedule::{chosen_node, MemberView, Placement};
//!
//! let m = |n: &str, role, healthy| MemberView { node: NodeId::new(n).unwrap(), role, healthy };
//! let cluster = [m("n1", Role::Primary, true), m("n3", Role::Replica, true), m("n2", Role::Replica, true)];
//! assert_eq!(chosen_node(Placement::AnyReplica, &cluster).unwrap().as_str(), "n2");
//! assert_eq!(chosen_node(Placement::Primary, &cluster).unwrap().as_str(), "n1");
//! ```
//!
//! Driving pgBackRest (needs the tool and a server):
//!
//! ```no_run
//! use std::path::Path;
//! use std::sync::Arc;
//! use rale_backup::{BackupKind, BackupTool, PgBackRest, PgBackRestConfig, RestoreRequest};
//!
//! # async fn demo() -> rale_backup::Result<()> {
//! let mut config = PgBackRestConfig::new(
//!     "main",
//!     Path::new("/var/lib/rale/pgbackrest"),
//!     Path::new("/var/lib/pgbackrest"),
//!     Path::new("/var/lib/postgresql/15/main"),
//!     5432,
//! );
//! config.retention_full = Some(2);
//! let tool: Arc<dyn BackupTool> = Arc::new(PgBackRest::new(config)?);
//! // The daemon applies these (archive_mode, archive_command, wal_level) first.
//! for p in tool.server_parameters() {
//!     println!("{} = {} (restart: {})", p.name, p.value, p.restart_required);
//! }
//! tool.prepare().await?; // stanza-create
//! let made = tool.backup(BackupKind::Full).await?;
//! println!("backup {:?}", made.backup.map(|b| b.id));
//! tool.restore(&RestoreRequest::latest("/var/lib/postgresql/restore")).await?;
//! # Ok(()) }
//! ```

// The determinism lints of clippy.toml apply to rale::decide only.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod api;
pub mod atomic;
pub mod barman;
pub mod custom;
mod error;
pub mod exec;
pub mod jobs;
pub mod pgbackrest;
pub mod recovery;
pub mod replica;
pub mod retention;
pub mod schedule;
#[cfg(feature = "testing")]
pub mod testing;
mod tool;
pub mod types;

pub use barman::{Barman, BarmanConfig};
pub use custom::{CustomTool, HookConfig};
pub use error::{Error, Result};
pub use jobs::{Job, JobId, JobManager, JobSpec, JobState};
pub use pgbackrest::{PgBackRest, PgBackRestConfig};
pub use schedule::{Placement, ScheduleSpec, Scheduler};
pub use tool::BackupTool;
pub use types::{
    BackupInfo, BackupKind, BackupOutcome, CheckReport, ExpireOutcome, RestoreOutcome,
    RestoreRequest, RestoreTarget, Retention, ServerParameter, StandbySetup, TargetAction,
};
