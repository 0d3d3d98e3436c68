//! The `PostgresControl` seam: everything the agent does to its local PostgreSQL, and
//! `LocalPostgres` (feature `local-pg`), its implementation for a server on this machine.
//!
//! The decision core never calls it; the agent's executor turns the core's
//! [`crate::decide::PgAction`]s into calls on a `PostgresControl`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::config::{SlotKind, SlotMatch, SlotSpec};
use crate::status::PgStatus;
use crate::types::{Lsn, NodeId};

#[cfg(feature = "local-pg")]
mod binaries;
#[cfg(feature = "local-pg")]
mod conf;
#[cfg(feature = "local-pg")]
mod datadir;
#[cfg(feature = "local-pg")]
pub mod local;
#[cfg(feature = "local-pg")]
mod local_config;
#[cfg(feature = "local-pg")]
mod logical_slots;
pub mod memory;
#[cfg(feature = "local-pg")]
mod parameters;
#[cfg(feature = "local-pg")]
pub mod preflight;
#[cfg(feature = "local-pg")]
mod process;
#[cfg(feature = "local-pg")]
mod replication;
#[cfg(feature = "local-pg")]
mod sql;
#[cfg(feature = "local-pg")]
mod timeline;

#[cfg(feature = "local-pg")]
pub use binaries::{MAJOR_VERSION_MIN, PgBinaries};
#[cfg(feature = "local-pg")]
pub use datadir::adopt_orphans;
#[cfg(feature = "local-pg")]
pub use local::{LocalPostgres, LocalPostgresConfig};
#[cfg(feature = "local-pg")]
pub use process::OsUser;

/// The PID on the first line of `data_dir/postmaster.pid`, or `None` without a readable
/// one. The file may be stale (a killed postmaster leaves it behind): check the process
/// before relying on it.
#[cfg(feature = "local-pg")]
pub fn postmaster_pid(data_dir: &std::path::Path) -> Option<i32> {
    datadir::DataDir::new(data_dir.to_owned()).recorded_pid()
}

/// How to stop PostgreSQL (`pg_ctl stop -m …`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopMode {
    /// Wait for clients to disconnect.
    Smart,
    /// Disconnect clients, checkpoint, and send all WAL to connected standbys.
    Fast,
    /// Abort without a checkpoint (crash recovery at next start; committed data is safe).
    Immediate,
}

/// Where a replica streams from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// The member it follows.
    pub node: NodeId,
    /// Its PostgreSQL host.
    pub host: String,
    /// Its PostgreSQL port.
    pub port: u16,
}

/// What applying parameters did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Parameters applied by reload.
    pub reloaded: Vec<String>,
    /// Parameters that wait for a restart.
    pub pending_restart: Vec<String>,
}

/// Control of one local PostgreSQL server.
///
/// Contract for implementers (checked by the conformance suite behind the `testing`
/// feature where a real server is available):
/// - `status` never blocks longer than the implementation's status timeout and reports an
///   unreachable server as `reachable: false`, not as an error;
/// - `promote` returns only once the server left recovery and accepted a write;
/// - `follow(None)` stops the WAL receiver (the replica keeps its data and stays in
///   recovery), `follow(Some(u))` points it at `u` without a restart where the server
///   version allows;
/// - `clone_from` replaces the data directory with a base backup of `source` and leaves
///   the server stopped and configured as a standby of `source`;
/// - `rewind` leaves the server stopped and configured as a standby of `source`.
#[async_trait]
pub trait PostgresControl: Send + Sync {
    /// Observes the server (with a short timeout).
    async fn status(&self) -> Result<PgStatus>;
    /// Initialises an empty data directory, sets `parameters` as `ALTER SYSTEM` would
    /// (before the first start, so that the server never runs without them — the
    /// decision core passes the `synchronous_standby_names` that keeps a strict or fenced
    /// cluster from acknowledging commits before its synchronous set is in place), and
    /// starts it as a primary; returns the database system identifier.
    async fn bootstrap(&self, parameters: &BTreeMap<String, String>) -> Result<u64>;
    /// Starts the server, as a standby of `upstream` if given, else with its current
    /// recovery configuration.
    async fn start(&self, upstream: Option<&Upstream>) -> Result<()>;
    /// Stops the server; stopping a stopped server succeeds.
    async fn stop(&self, mode: StopMode) -> Result<()>;
    /// Restarts the server (fast stop, then start with the same role).
    async fn restart(&self) -> Result<()>;
    /// Reloads the configuration (`pg_ctl reload`).
    async fn reload(&self) -> Result<()>;
    /// Promotes a standby, validated: left recovery and accepted a write within `timeout`.
    async fn promote(&self, timeout: Duration) -> Result<()>;
    /// Points the WAL receiver at `upstream`, or detaches it (`None`).
    async fn follow(&self, upstream: Option<&Upstream>) -> Result<()>;
    /// Rewinds the stopped data directory to `source` with `pg_rewind`.
    async fn rewind(&self, source: &Upstream) -> Result<()>;
    /// Replaces the data directory with a base backup of `source`.
    async fn clone_from(&self, source: &Upstream) -> Result<()>;
    /// Applies parameters (`ALTER SYSTEM` + reload); says which wait for a restart.
    async fn set_parameters(&self, parameters: &BTreeMap<String, String>) -> Result<ApplyReport>;
    /// Removes parameters set with [`PostgresControl::set_parameters`] (`ALTER SYSTEM
    /// RESET` + reload): they fall back to the configuration files' or built-in values.
    /// Names that need a restart to take the fallback are in `pending_restart`.
    async fn reset_parameters(&self, names: &[String]) -> Result<ApplyReport>;
    /// On a primary: creates the slots of `plan` that are missing (the members' physical
    /// slots and the permanent ones) and drops the inactive physical slots of removed
    /// members; leaves every other slot, and every slot `plan.ignore` matches, alone.
    async fn ensure_slots(&self, plan: &SlotPlan) -> Result<()>;
    /// On a replica: copies the state of the logical slots `names` from the primary
    /// `source` into this server and restarts it so that it loads them (PostgreSQL ≤ 16
    /// cannot create a logical slot on a standby; `docs/slots.md`). Slots `source` does
    /// not have are skipped, and nothing is restarted when none was found. Returns the
    /// names copied. The default copies nothing and says so.
    async fn copy_logical_slots(&self, source: &Upstream, names: &[String]) -> Result<Vec<String>> {
        let _ = (source, names);
        Err(crate::Error::pg(
            "copy_logical_slots",
            "this PostgresControl cannot copy logical slots",
        ))
    }
    /// On a replica: advances each copy of a logical slot to its position (PostgreSQL
    /// never moves a slot past the replay position, nor backwards). A copy PostgreSQL can
    /// no longer advance (the WAL it starts from is gone) is dropped, so that it is copied
    /// again. One slot that fails does not hold back the others. The default advances
    /// nothing and says so.
    async fn advance_logical_slots(&self, slots: &[SlotAdvance]) -> Result<()> {
        let _ = slots;
        Err(crate::Error::pg(
            "advance_logical_slots",
            "this PostgresControl cannot advance logical slots",
        ))
    }
    /// Checks that nothing *permanent* prevents running the server: supported binaries,
    /// a data directory the PostgreSQL OS user can reach and own, no foreign contents.
    /// `Ok` carries a one-line summary. An error here does not go away by retrying: the
    /// agent reports it and stops instead of looping. The default finds nothing wrong.
    async fn preflight(&self) -> Result<String> {
        Ok(String::new())
    }
}

/// Where to advance a replica's copy of one logical slot
/// ([`PostgresControl::advance_logical_slots`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotAdvance {
    /// Slot name.
    pub name: String,
    /// The slot's database (the advance runs connected to it).
    pub database: String,
    /// The target: what the primary's consumer confirmed, at most the replay position.
    pub lsn: Lsn,
}

/// The replication slots a primary keeps ([`PostgresControl::ensure_slots`]), decided by
/// the core from the cluster state and the dynamic configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotPlan {
    /// The physical slots of the other members (one each, [`NodeId::slot_name`]).
    pub members: Vec<String>,
    /// The permanent slots of the configuration ([`crate::DynamicConfig::slots`]) whose
    /// names are not member slots.
    pub permanent: Vec<(String, SlotSpec)>,
    /// Slot names of members removed from the cluster: dropped while inactive.
    pub removed: Vec<String>,
    /// Slots never created, dropped or changed ([`crate::DynamicConfig::ignore_slots`]).
    pub ignore: Vec<SlotMatch>,
}

impl SlotPlan {
    /// Whether a slot with these properties is left alone.
    pub fn ignored(
        &self,
        name: &str,
        kind: SlotKind,
        plugin: Option<&str>,
        database: Option<&str>,
    ) -> bool {
        self.ignore
            .iter()
            .any(|m| m.matches(name, kind, plugin, database))
    }

    /// A plan of member slots only (no permanent, removed or ignored slots).
    pub fn members_only(members: Vec<String>) -> Self {
        Self {
            members,
            ..Self::default()
        }
    }
}
