//! Workload metrics of the local PostgreSQL server: connections, transactions, WAL,
//! replication lag per standby, slots, checkpoints, database sizes, the oldest
//! transaction and `xmin`, standby conflicts.
//!
//! A task of its own ([`spawn`]) collects them on a slow cadence (`[metrics]
//! workload_interval`, 15 s by default) over its own connection (`application_name =
//! rale-metrics`, with a `statement_timeout`), and publishes the last sample on a watch
//! channel. The HA loop never waits for it and never shares its connection: a slow
//! `pg_database_size` cannot delay a failover decision. `GET /metrics` only renders the
//! last sample ([`render::register`]); a scrape runs no SQL.
//!
//! The names follow postgres_exporter where it has one (with the `_total` suffix that
//! `promtool check metrics` asks of counters); `docs/metrics.md` lists them.
//!
//! ```no_run
//! # async fn demo(target: ramd_ref::workload::Target) {
//! use ramd_ref::workload::{WorkloadConfig, spawn};
//! let (_shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
//! let (task, view) = spawn(target, WorkloadConfig::default(), shutdown_rx);
//! // Hand `view` to the API (ApiState::workload); it renders the latest sample.
//! # drop((task, view));
//! # }
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub mod collect;
pub mod render;
pub mod slots;

/// Why a collection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection to the local server could not be opened.
    #[error("connecting to the local server: {0}")]
    Connect(String),
    /// A statement of one section failed.
    #[error("workload query {section}: {message}")]
    Query {
        /// The section (`activity`, `databases`, …).
        section: &'static str,
        /// The server's or the driver's message.
        message: String,
    },
    /// A column did not hold what the query promises.
    #[error("workload query {section}: column {column} holds {value:?}")]
    Parse {
        /// The section.
        section: &'static str,
        /// Column index.
        column: usize,
        /// The text found.
        value: String,
    },
    /// The collection took longer than its bound.
    #[error("workload collection did not finish within {after_ms} ms")]
    Timeout {
        /// The bound.
        after_ms: u64,
    },
}

/// `Result` of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The `[metrics]` section of the configuration file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadConfig {
    /// Collect workload metrics at all.
    pub workload: bool,
    /// Time between two collections.
    #[serde(with = "humantime_serde")]
    pub workload_interval: Duration,
    /// Bound on one collection (also the connection's `statement_timeout`).
    #[serde(with = "humantime_serde")]
    pub workload_timeout: Duration,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            workload: true,
            workload_interval: Duration::from_secs(15),
            workload_timeout: Duration::from_secs(5),
        }
    }
}

impl WorkloadConfig {
    /// Checks the bounds: an interval of at least 1 s, a timeout of at least 100 ms and
    /// below the interval.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.workload_interval < Duration::from_secs(1) {
            return Err("metrics.workload_interval must be at least 1s".into());
        }
        if self.workload_timeout < Duration::from_millis(100)
            || self.workload_timeout >= self.workload_interval
        {
            return Err(
                "metrics.workload_timeout must be at least 100ms and below workload_interval"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Where and as whom the collector connects (the local server's socket, as the agent's
/// superuser).
#[derive(Clone)]
pub struct Target {
    /// Unix socket directory (or a host name for TCP).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Role.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Target {
    /// The local server of a [`rale::LocalPostgresConfig`]: its socket, its superuser.
    pub fn local(cfg: &rale::LocalPostgresConfig) -> Self {
        Self {
            host: PathBuf::from(&cfg.socket_dir)
                .to_string_lossy()
                .into_owned(),
            port: cfg.port,
            user: cfg.superuser.clone(),
            password: cfg.superuser_password.clone(),
        }
    }
}

/// Client backends of one database in one state (`pg_stat_activity`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Connections {
    /// Database (empty for none).
    pub datname: String,
    /// `active`, `idle`, `idle in transaction`, …
    pub state: String,
    /// How many.
    pub count: u64,
    /// Age of the oldest open transaction among them (0 when none).
    pub max_tx_duration_seconds: f64,
}

/// One database's counters and size.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Database {
    /// Name.
    pub datname: String,
    /// Backends connected.
    pub numbackends: u64,
    /// Transactions committed (since the statistics reset).
    pub xact_commit: u64,
    /// Transactions rolled back.
    pub xact_rollback: u64,
    /// Deadlocks detected.
    pub deadlocks: u64,
    /// Queries cancelled by recovery conflicts on a standby (all kinds).
    pub conflicts: u64,
    /// Of which, by kind: tablespace, lock, snapshot, bufferpin, deadlock.
    pub conflicts_by_kind: [u64; 5],
    /// `pg_database_size`.
    pub size_bytes: u64,
}

/// The names of [`Database::conflicts_by_kind`], in order.
pub const CONFLICT_KINDS: [&str; 5] = ["tablespace", "lock", "snapshot", "bufferpin", "deadlock"];

/// One standby as its upstream sees it (`pg_stat_replication`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Standby {
    /// `application_name` (the member's name; `rale_fence` for the commit fence).
    pub application_name: String,
    /// Client address (empty for a socket).
    pub client_addr: String,
    /// `streaming`, `catchup`, …
    pub state: String,
    /// `async`, `sync`, `quorum`, `potential`.
    pub sync_state: String,
    /// Bytes between the upstream's WAL position and what the standby wrote.
    pub write_lag_bytes: u64,
    /// … flushed.
    pub flush_lag_bytes: u64,
    /// … replayed.
    pub replay_lag_bytes: u64,
    /// `write_lag` (0 when the server reports none: caught up and idle).
    pub write_lag_seconds: f64,
    /// `flush_lag`.
    pub flush_lag_seconds: f64,
    /// `replay_lag`.
    pub replay_lag_seconds: f64,
}

/// One replication slot (`pg_replication_slots`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Slot {
    /// Name.
    pub slot_name: String,
    /// `physical` or `logical`.
    pub slot_type: String,
    /// Output plugin of a logical slot.
    pub plugin: Option<String>,
    /// Database of a logical slot.
    pub database: Option<String>,
    /// A consumer is connected.
    pub active: bool,
    /// WAL kept for it: the current position minus its `restart_lsn`.
    pub retained_wal_bytes: u64,
    /// `safe_wal_size` (PostgreSQL 13+, with `max_slot_wal_keep_size`); `None` when
    /// unlimited.
    pub safe_wal_size_bytes: Option<i64>,
}

/// Checkpoint counters (`pg_stat_bgwriter`, or `pg_stat_checkpointer` on 17+).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Checkpoints {
    /// Scheduled checkpoints.
    pub timed: u64,
    /// Requested checkpoints.
    pub requested: u64,
    /// Time writing files, milliseconds.
    pub write_time_ms: f64,
    /// Time syncing files, milliseconds.
    pub sync_time_ms: f64,
    /// Buffers written by checkpoints.
    pub buffers_written: u64,
}

/// Ages of the oldest `xmin` horizons, in transactions.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct XminAges {
    /// A backend's snapshot (`pg_stat_activity.backend_xmin`).
    pub backend: u64,
    /// A replication slot's `xmin` (a standby with `hot_standby_feedback`).
    pub slot: u64,
    /// A replication slot's `catalog_xmin` (logical decoding).
    pub slot_catalog: u64,
    /// A prepared transaction.
    pub prepared: u64,
}

/// One collection.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct WorkloadSample {
    /// When it ended (Unix milliseconds).
    pub collected_unix_ms: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// `server_version_num`.
    pub server_version_num: u32,
    /// The server is a standby.
    pub in_recovery: bool,
    /// `max_connections`.
    pub max_connections: u64,
    /// Client backends by database and state.
    pub connections: Vec<Connections>,
    /// Per-database counters and sizes.
    pub databases: Vec<Database>,
    /// `pg_stat_wal.wal_bytes` (PostgreSQL 14+): WAL generated by this server.
    pub wal_bytes: Option<u64>,
    /// Files in `pg_wal`.
    pub wal_segments: u64,
    /// Their total size.
    pub wal_size_bytes: u64,
    /// Standbys streaming from this server.
    pub standbys: Vec<Standby>,
    /// Replication slots on this server.
    pub slots: Vec<Slot>,
    /// Checkpoints.
    pub checkpoints: Checkpoints,
    /// Age of the oldest open transaction, seconds.
    pub oldest_xact_age_seconds: f64,
    /// Ages of the oldest `xmin` horizons.
    pub xmin_age: XminAges,
}

impl WorkloadSample {
    /// Client backends in all states.
    pub fn connections_total(&self) -> u64 {
        self.connections.iter().map(|c| c.count).sum()
    }

    /// Client backends as a fraction of `max_connections` (0 when unknown).
    pub fn connections_used_ratio(&self) -> f64 {
        if self.max_connections == 0 {
            return 0.0;
        }
        self.connections_total() as f64 / self.max_connections as f64
    }
}

/// What the collector publishes: the last good sample and how the last attempt went.
#[derive(Clone, Debug, Default)]
pub struct WorkloadView {
    /// The last successful collection (`None` before the first, and after a failure:
    /// stale numbers are not served).
    pub sample: Option<Arc<WorkloadSample>>,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// When the last attempt ended (Unix milliseconds; 0 before the first).
    pub attempt_unix_ms: u64,
    /// Attempts that failed since the agent started.
    pub errors: u64,
    /// Whether collection is configured on (`false`: nothing is collected).
    pub enabled: bool,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Starts the collector; it runs until `shutdown` turns `true`. With
/// `cfg.workload == false` it publishes one disabled view and ends.
pub fn spawn(
    target: Target,
    cfg: WorkloadConfig,
    mut shutdown: watch::Receiver<bool>,
) -> (JoinHandle<()>, watch::Receiver<Arc<WorkloadView>>) {
    let (tx, rx) = watch::channel(Arc::new(WorkloadView {
        enabled: cfg.workload,
        ..Default::default()
    }));
    let task = tokio::spawn(async move {
        if !cfg.workload {
            info!("workload metrics are off ([metrics] workload = false)");
            return;
        }
        let mut client: Option<tokio_postgres::Client> = None;
        let mut errors = 0u64;
        let mut logged_error = false;
        loop {
            let started = Instant::now();
            let outcome = tokio::time::timeout(
                cfg.workload_timeout,
                collect::collect_once(&target, &mut client, cfg.workload_timeout),
            )
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    after_ms: u64::try_from(cfg.workload_timeout.as_millis()).unwrap_or(u64::MAX),
                })
            });
            let now = unix_ms();
            let view = match outcome {
                Ok(mut sample) => {
                    sample.collected_unix_ms = now;
                    sample.duration_ms =
                        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    if logged_error {
                        info!("workload metrics collected again");
                        logged_error = false;
                    }
                    WorkloadView {
                        sample: Some(Arc::new(sample)),
                        last_error: None,
                        attempt_unix_ms: now,
                        errors,
                        enabled: true,
                    }
                }
                Err(e) => {
                    // A broken or timed-out connection is reopened next time.
                    client = None;
                    errors += 1;
                    // Stopped servers are normal on a standby being rebuilt: one line
                    // per outage, then debug.
                    if logged_error {
                        debug!(error = %e, "workload metrics not collected");
                    } else {
                        warn!(error = %e, "workload metrics not collected");
                        logged_error = true;
                    }
                    WorkloadView {
                        sample: None,
                        last_error: Some(e.to_string()),
                        attempt_unix_ms: now,
                        errors,
                        enabled: true,
                    }
                }
            };
            let _ = tx.send(Arc::new(view));
            tokio::select! {
                _ = tokio::time::sleep(cfg.workload_interval) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    });
    (task, rx)
}

/// A sample with every family filled: `databases` databases, two standbys, two slots.
/// For tests, documentation and the scrape-cost measurement (`docs/metrics.md`).
pub fn synthetic(databases: usize) -> WorkloadSample {
    let names = || (0..databases).map(|i| format!("db{i:03}"));
    WorkloadSample {
        collected_unix_ms: 1_700_000_000_000,
        duration_ms: 12,
        server_version_num: 150_000,
        in_recovery: false,
        max_connections: 100,
        connections: names()
            .flat_map(|d| {
                [("active", 2u64, 0.5), ("idle", 3, 0.0)].map(|(state, count, age)| Connections {
                    datname: d.clone(),
                    state: state.into(),
                    count,
                    max_tx_duration_seconds: age,
                })
            })
            .collect(),
        databases: names()
            .enumerate()
            .map(|(i, d)| Database {
                datname: d,
                numbackends: 5,
                xact_commit: 1000 + i as u64,
                xact_rollback: 3,
                deadlocks: 0,
                conflicts: 1,
                conflicts_by_kind: [0, 0, 1, 0, 0],
                size_bytes: 7_500_000,
            })
            .collect(),
        wal_bytes: Some(123_456_789),
        wal_segments: 4,
        wal_size_bytes: 4 * 16 * 1024 * 1024,
        standbys: ["n2", "rale_fence"]
            .map(|name| Standby {
                application_name: name.into(),
                client_addr: "127.0.0.1".into(),
                state: "streaming".into(),
                sync_state: "sync".into(),
                write_lag_bytes: 0,
                flush_lag_bytes: 128,
                replay_lag_bytes: 4096,
                write_lag_seconds: 0.001,
                flush_lag_seconds: 0.002,
                replay_lag_seconds: 0.004,
            })
            .to_vec(),
        slots: [("n2", "physical", true), ("cdc", "logical", false)]
            .map(|(name, kind, active)| Slot {
                slot_name: name.into(),
                slot_type: kind.into(),
                plugin: (kind == "logical").then(|| "pgoutput".into()),
                database: (kind == "logical").then(|| "postgres".into()),
                active,
                retained_wal_bytes: 1 << 20,
                safe_wal_size_bytes: Some(1 << 30),
            })
            .to_vec(),
        checkpoints: Checkpoints {
            timed: 10,
            requested: 2,
            write_time_ms: 1500.0,
            sync_time_ms: 30.0,
            buffers_written: 900,
        },
        oldest_xact_age_seconds: 0.5,
        xmin_age: XminAges {
            backend: 12,
            slot: 0,
            slot_catalog: 40,
            prepared: 0,
        },
    }
}
