//! [`LocalPostgres`]: the [`PostgresControl`] implementation that drives a PostgreSQL
//! server on this machine with its own tools (`initdb`, `pg_ctl`, `pg_basebackup`,
//! `pg_rewind`) and SQL over the local Unix socket.
//!
//! Layout of the work:
//! - `binaries.rs`: finding the binaries and their version;
//! - `process.rs`: running tools as the PostgreSQL OS user with timeouts;
//! - `datadir.rs`: data directory state and the files RALE manages in it;
//! - `sql.rs`: connections and the status query;
//! - `replication.rs`: clone, rewind, follow, promote and slots;
//! - this file: lifecycle (bootstrap, start, stop, reload, parameters) and `status`.
//!
//! ## Choices worth knowing
//! - **PostgreSQL 12 or newer** (`standby.signal`, `primary_conninfo` as a parameter);
//!   on 12, `follow` restarts the server because 12 reads `primary_conninfo` only at
//!   start; 13+ re-points the WAL receiver with a reload.
//! - **Users.** Run as root, every tool runs as `os_user` (default `postgres`) and every
//!   file RALE writes is handed to it; run as another user, tools run as that user.
//! - **Authentication.** `initdb --auth-local=trust --auth-host=scram-sha-256`; RALE's
//!   `pg_hba.conf` trusts only the Unix socket, whose directory is private (`0700`,
//!   checked by [`LocalPostgres::new`]); TCP is SCRAM. Passwords are sent to the server
//!   as SCRAM verifiers, never in clear text. The replication password sits in
//!   `primary_conninfo` (`postgresql.auto.conf`, mode `0600`); `pg_basebackup` and
//!   `pg_rewind` get theirs through `PGPASSWORD` in their own environment.
//! - **Settings.** `rale.conf` (included from `postgresql.conf`) carries RALE's settings
//!   and [`LocalPostgresConfig::parameters`]; it is rewritten before every start and
//!   after a clone or rewind, since both copy the source's configuration files.
//!   `initdb --data-checksums` plus `wal_log_hints = on` keep `pg_rewind` possible.
//! - **Upstream.** A server cannot tell which member a WAL sender belongs to, so the
//!   member `primary_conninfo` points at is remembered in memory and in a
//!   `rale.upstream` note (trusted at startup only when its host and port match the
//!   conninfo in `postgresql.auto.conf`).
//! - **Status** is one round trip of three statements on a cached socket connection
//!   with `statement_timeout`; an unreachable or hung server is `reachable: false`.
//! - **Logs.** `pg_ctl -l <data_dir>/postmaster.log` (no logging collector); a clone
//!   removes the copy of the source's log, a rewind replaces it with the source's.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::binaries::PgBinaries;
use super::conf::{quote_ident, quote_literal, reject_nul, validate_parameter_name};
use super::datadir::{DataDir, SERVER_LOG};
pub use super::local_config::LocalPostgresConfig;
use super::process::{OsUser, Runner, duration_ms};
use super::sql::{self, CachedClient, ConnectTarget};
use super::{ApplyReport, PostgresControl, StopMode, Upstream};
use crate::status::{DataDirState, PgStatus};
use crate::types::{Lsn, NodeId};
use crate::{Error, Result};

/// Drives one local PostgreSQL server. See the [module doc](self) and
/// [`PostgresControl`] for the contract.
///
/// ```no_run
/// # async fn demo() -> rale::Result<()> {
/// use rale::pg::local::{LocalPostgres, LocalPostgresConfig};
/// use rale::{NodeId, PostgresControl};
///
/// let cfg = LocalPostgresConfig::new(
///     NodeId::new("node1")?, "/var/lib/rale/node1", "/var/lib/rale/node1-socket",
///     5432, "superuser-secret", "replication-secret",
/// );
/// let pg = LocalPostgres::new(cfg)?;
/// let system_id = pg.bootstrap(&Default::default()).await?;
/// let status = pg.status().await?;
/// assert!(status.reachable && !status.in_recovery);
/// # let _ = system_id;
/// # Ok(()) }
/// ```
pub struct LocalPostgres {
    pub(super) cfg: LocalPostgresConfig,
    pub(super) bin: PgBinaries,
    pub(super) runner: Runner,
    pub(super) data: DataDir,
    status_client: CachedClient,
    /// The member `primary_conninfo` points at, as last configured by us.
    pub(super) upstream: Mutex<Option<NodeId>>,
}

impl std::fmt::Debug for LocalPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPostgres")
            .field("node", &self.cfg.node)
            .field("data_dir", &self.cfg.data_dir)
            .field("port", &self.cfg.port)
            .field("version_num", &self.bin.version_num)
            .finish_non_exhaustive()
    }
}

/// Longest Unix socket path (`sun_path` is 108 bytes with its NUL).
const SOCKET_PATH_LEN_MAX: usize = 107;

impl LocalPostgres {
    /// Checks the configuration, finds the binaries (runs `pg_config`/`pg_ctl --version`
    /// once) and the OS user, and reads which member the data directory follows.
    ///
    /// Local socket connections are trusted, so the socket directory must be private:
    /// an existing `socket_dir` with group or other permissions is refused.
    pub fn new(cfg: LocalPostgresConfig) -> Result<Self> {
        if !cfg.data_dir.is_absolute() || !cfg.socket_dir.is_absolute() {
            return Err(Error::InvalidConfig(
                "data_dir and socket_dir must be absolute paths".to_string(),
            ));
        }
        let socket_len = cfg.socket_dir.as_os_str().len() + format!("/.s.PGSQL.{}", cfg.port).len();
        if socket_len > SOCKET_PATH_LEN_MAX {
            return Err(Error::InvalidConfig(format!(
                "socket_dir {} is too long for a Unix socket path ({socket_len} > {SOCKET_PATH_LEN_MAX} bytes)",
                cfg.socket_dir.display()
            )));
        }
        if let Ok(meta) = std::fs::metadata(&cfg.socket_dir) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(Error::InvalidConfig(format!(
                    "socket_dir {} is accessible to other users (mode {:o}); local connections \
                     are trusted, so it must be private (0700)",
                    cfg.socket_dir.display(),
                    meta.permissions().mode() & 0o777
                )));
            }
        }
        for (what, v) in [
            ("superuser", &cfg.superuser),
            ("superuser_password", &cfg.superuser_password),
            ("replication_user", &cfg.replication_user),
            ("replication_password", &cfg.replication_password),
            ("host", &cfg.host),
        ] {
            reject_nul(what, v)?;
            if v.is_empty() {
                return Err(Error::InvalidConfig(format!("{what} must not be empty")));
            }
        }
        for name in cfg.parameters.keys() {
            validate_parameter_name(name)?;
        }
        let bin = PgBinaries::discover(cfg.bin_dir.as_deref())?;
        let runner = Runner::new(OsUser::for_current_process(cfg.os_user.as_deref())?);
        let data = DataDir::new(cfg.data_dir.clone());
        let upstream = Mutex::new(data.read_upstream());
        Ok(Self {
            cfg,
            bin,
            runner,
            data,
            status_client: CachedClient::default(),
            upstream,
        })
    }

    /// The permanent-failure checks of [`PostgresControl::preflight`], synchronously
    /// (`ramd --check` and the agent's start run them).
    pub fn check_permanent(&self) -> Result<String> {
        use super::preflight::{DataDirFinding, Identity, check_data_dir};
        self.bin.ensure_supported("preflight")?;
        let agent = Identity::current();
        let pg = match self.runner.user() {
            Some(u) => Identity::of_user(&u.name, u.uid, u.gid),
            None => agent.clone(),
        };
        let finding = check_data_dir(&self.cfg.data_dir, self.bin.major(), &pg, &agent)?;
        let data = match finding {
            DataDirFinding::Empty => "empty (initialised or cloned at start)".to_string(),
            DataDirFinding::Cluster { major } => format!("a PostgreSQL {major} data directory"),
        };
        Ok(format!(
            "PostgreSQL {} in {}, run as {}; {} is {data}",
            self.bin.version_num,
            self.bin.bin_dir.display(),
            pg.name,
            self.cfg.data_dir.display()
        ))
    }

    /// The configuration.
    pub fn config(&self) -> &LocalPostgresConfig {
        &self.cfg
    }

    /// The binaries in use.
    pub fn binaries(&self) -> &PgBinaries {
        &self.bin
    }

    /// The OS user tools run as, when the agent runs as root.
    pub fn os_user(&self) -> Option<&OsUser> {
        self.runner.user()
    }

    /// How other members reach this server (for their `start`/`follow`/`clone_from`).
    pub fn as_upstream(&self) -> Upstream {
        Upstream {
            node: self.cfg.node.clone(),
            host: self.cfg.host.clone(),
            port: self.cfg.port,
        }
    }

    /// The member this server's `primary_conninfo` points at, as last configured.
    pub fn configured_upstream(&self) -> Option<NodeId> {
        self.upstream.lock().map(|u| u.clone()).unwrap_or(None)
    }

    pub(super) fn set_upstream(&self, upstream: Option<&Upstream>) {
        if let Ok(mut u) = self.upstream.lock() {
            *u = upstream.map(|u| u.node.clone());
        }
    }

    /// The database system identifier of the data directory (from `global/pg_control`),
    /// `None` while it is not initialised.
    pub fn system_id(&self) -> Option<u64> {
        self.data.system_id()
    }

    /// Whether a postmaster runs for the data directory.
    pub fn is_running(&self) -> bool {
        self.data.running_pid().is_some()
    }

    /// Stops the server with `pg_ctl stop -m immediate`, blocking the thread, for `Drop`
    /// handlers and shutdown paths without a runtime. A stopped server is left alone.
    pub fn stop_immediate_blocking(&self) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        let args = self.pg_ctl_args("stop", &["-m", "immediate", "-w"]);
        let out = self.runner.run_blocking(&self.bin.tool("pg_ctl"), &args)?;
        if out.success() || !self.is_running() {
            Ok(())
        } else {
            Err(Error::pg("stop", out.tail()))
        }
    }

    pub(super) fn socket_target(&self) -> ConnectTarget {
        ConnectTarget::socket(
            &self.cfg.socket_dir,
            self.cfg.port,
            &self.cfg.superuser,
            &self.cfg.superuser_password,
        )
    }

    /// A fresh superuser connection through the socket, bounded by the operation timeout.
    pub(super) async fn admin_client(&self) -> Result<tokio_postgres::Client> {
        sql::connect(&self.socket_target(), self.cfg.operation_timeout, None).await
    }

    /// An admin connection to database `dbname` (logical slots live in one).
    pub(super) async fn admin_client_db(&self, dbname: &str) -> Result<tokio_postgres::Client> {
        sql::connect_db(
            &self.socket_target(),
            dbname,
            self.cfg.operation_timeout,
            None,
        )
        .await
    }

    pub(super) fn pg_ctl_args(&self, command: &str, extra: &[&str]) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            command.into(),
            "-D".into(),
            self.cfg.data_dir.clone().into_os_string(),
        ];
        args.extend(extra.iter().map(OsString::from));
        args
    }

    fn timeout_secs(&self) -> String {
        self.cfg.operation_timeout.as_secs().max(1).to_string()
    }

    /// Prepares the socket directory and RALE's configuration files before a start.
    pub(super) fn prepare_files(&self) -> Result<()> {
        self.runner.ensure_private_dir(&self.cfg.socket_dir)?;
        // Rewritten at every start: a changed member list or `hba_extra` takes effect.
        self.data.write_pg_hba(&self.runner, &self.cfg)?;
        self.data
            .write_managed_conf(&self.runner, &self.cfg, self.bin.major())
    }

    async fn pg_ctl_start(&self) -> Result<()> {
        // Exited servers of ours (a stopped or killed postmaster, its backends) go first.
        super::datadir::reap_orphans();
        self.prepare_files()?;
        let log = self.data.file(SERVER_LOG);
        let timeout = self.timeout_secs();
        let mut args = self.pg_ctl_args("start", &["-w", "-t", &timeout, "-l"]);
        args.push(log.into_os_string());
        let out = self
            .runner
            .run(
                "start",
                &self.bin.tool("pg_ctl"),
                &args,
                &[],
                self.cfg.operation_timeout + Duration::from_secs(5),
            )
            .await?;
        if !out.success() {
            let log_tail = std::fs::read_to_string(self.data.file(SERVER_LOG))
                .map(|t| super::process::tail(&t, 1500))
                .unwrap_or_default();
            return Err(Error::pg(
                "start",
                format!("{}; server log: {}", out.tail(), log_tail),
            ));
        }
        Ok(())
    }

    /// `ALTER SYSTEM SET name = 'value'` (or `= ''` style reset with `None`).
    pub(super) async fn alter_system(
        client: &tokio_postgres::Client,
        name: &str,
        value: Option<&str>,
    ) -> Result<()> {
        let sql = match value {
            Some(v) => {
                reject_nul(name, v)?;
                format!(
                    "ALTER SYSTEM SET {} = {}",
                    quote_ident(name),
                    quote_literal(v)
                )
            }
            None => format!("ALTER SYSTEM RESET {}", quote_ident(name)),
        };
        sql::execute(client, "ALTER SYSTEM", &sql).await
    }
}

#[async_trait]
impl PostgresControl for LocalPostgres {
    async fn status(&self) -> Result<PgStatus> {
        let data = self.data.state();
        if !self.is_running() {
            self.status_client.reset().await;
            return Ok(PgStatus::stopped(data));
        }
        let timeout = self.cfg.status_timeout;
        let observed = tokio::time::timeout(timeout, async {
            let client = self
                .status_client
                .get(&self.socket_target(), timeout)
                .await?;
            sql::observe(&client).await
        })
        .await;
        let obs = match observed {
            Ok(Ok(obs)) => obs,
            Ok(Err(e)) => {
                tracing::debug!(node = %self.cfg.node, error = %e, "status query failed");
                self.status_client.reset().await;
                return Ok(PgStatus {
                    running: true,
                    ..PgStatus::stopped(data)
                });
            }
            Err(_) => {
                tracing::debug!(node = %self.cfg.node, "status query timed out");
                self.status_client.reset().await;
                return Ok(PgStatus {
                    running: true,
                    ..PgStatus::stopped(data)
                });
            }
        };
        let upstream = if obs.in_recovery {
            self.configured_upstream()
        } else {
            None
        };
        // A standby's timeline is the one its WAL at the reported position belongs to
        // (`super::timeline`): a detached standby has no received timeline, pg_control's
        // lags, and a history file alone would put a diverged node on a timeline it is
        // not on.
        let timeline = if obs.in_recovery {
            let position = obs
                .receive_lsn
                .unwrap_or(Lsn::ZERO)
                .max(obs.replay_lsn.unwrap_or(Lsn::ZERO));
            super::timeline::standby_timeline(&self.cfg.data_dir, obs.timeline, position)
        } else {
            obs.timeline
        };
        Ok(PgStatus {
            data,
            running: true,
            reachable: true,
            in_recovery: obs.in_recovery,
            timeline,
            write_lsn: if obs.in_recovery {
                obs.replay_lsn.unwrap_or(Lsn::ZERO)
            } else {
                obs.current_lsn.unwrap_or(Lsn::ZERO)
            },
            receive_lsn: obs.receive_lsn,
            replay_lsn: obs.replay_lsn,
            streaming: obs.streaming,
            upstream,
            replicas: obs.replicas,
            synchronous_standby_names: obs.synchronous_standby_names,
            pending_restart: obs.pending_restart,
            server_version_num: obs.server_version_num,
            logical_slots: obs.logical_slots,
            hot_standby_feedback: obs.hot_standby_feedback,
        })
    }

    async fn bootstrap(&self, parameters: &BTreeMap<String, String>) -> Result<u64> {
        self.bin.ensure_supported("bootstrap")?;
        if !self.data.is_empty()? {
            return Err(Error::pg(
                "bootstrap",
                format!(
                    "data directory {} is not empty",
                    self.cfg.data_dir.display()
                ),
            ));
        }
        self.runner.ensure_private_dir(&self.cfg.data_dir)?;
        let mut args: Vec<OsString> = vec![
            "-D".into(),
            self.cfg.data_dir.clone().into_os_string(),
            "-U".into(),
            self.cfg.superuser.clone().into(),
            "--auth-local=trust".into(),
            "--auth-host=scram-sha-256".into(),
            "--data-checksums".into(),
            "--encoding=UTF8".into(),
            "--locale=C".into(),
            // One syncfs below instead of initdb's fsync of every file.
            "--no-sync".into(),
        ];
        args.extend(self.cfg.initdb_args.iter().map(OsString::from));
        self.runner
            .run(
                "initdb",
                &self.bin.tool("initdb"),
                &args,
                &[],
                self.cfg.long_operation_timeout,
            )
            .await?
            .check("initdb")?;
        self.data.write_pg_hba(&self.runner, &self.cfg)?;
        self.data.remove("standby.signal")?;
        self.data.write_upstream_note(&self.runner, None)?;
        self.data.write_auto_conf(&self.runner, parameters)?;
        self.data.sync_to_disk().await?;
        self.set_upstream(None);
        self.pg_ctl_start().await?;

        let client = self.admin_client().await?;
        let su_verifier =
            postgres_protocol::password::scram_sha_256(self.cfg.superuser_password.as_bytes());
        // The server may start with commits gated (synchronous_standby_names from
        // `parameters`): these role changes are durable locally and wait for nobody.
        let mut script = format!(
            "SET synchronous_commit = local; ALTER ROLE {} PASSWORD {};",
            quote_ident(&self.cfg.superuser),
            quote_literal(&su_verifier)
        );
        if self.cfg.replication_user != self.cfg.superuser {
            let repl_verifier = postgres_protocol::password::scram_sha_256(
                self.cfg.replication_password.as_bytes(),
            );
            script.push_str(&format!(
                "CREATE ROLE {} WITH REPLICATION LOGIN PASSWORD {};",
                quote_ident(&self.cfg.replication_user),
                quote_literal(&repl_verifier)
            ));
        }
        sql::execute(&client, "bootstrap", &script).await?;
        let system_id = sql::scalar(
            &client,
            "bootstrap",
            "SELECT system_identifier::text FROM pg_control_system()",
        )
        .await?
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Error::pg("bootstrap", "no system identifier"))?;
        tracing::info!(node = %self.cfg.node, system_id, "bootstrapped a new primary");
        Ok(system_id)
    }

    async fn start(&self, upstream: Option<&Upstream>) -> Result<()> {
        self.bin.ensure_supported("start")?;
        if self.data.state() == DataDirState::Empty {
            return Err(Error::pg(
                "start",
                format!(
                    "data directory {} is not initialised",
                    self.cfg.data_dir.display()
                ),
            ));
        }
        if self.is_running() {
            // Already running: only re-point it if asked.
            return match upstream {
                Some(u) => self.follow(Some(u)).await,
                None => Ok(()),
            };
        }
        if let Some(u) = upstream {
            self.data
                .write_standby_config(&self.runner, &self.cfg, Some(u))?;
            self.set_upstream(Some(u));
        }
        self.pg_ctl_start().await?;
        tracing::info!(node = %self.cfg.node, upstream = ?upstream.map(|u| &u.node), "started PostgreSQL");
        Ok(())
    }

    async fn stop(&self, mode: StopMode) -> Result<()> {
        self.status_client.reset().await;
        if !self.is_running() {
            return Ok(());
        }
        let mode_arg = match mode {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        let timeout = self.timeout_secs();
        let args = self.pg_ctl_args("stop", &["-m", mode_arg, "-w", "-t", &timeout]);
        let out = self
            .runner
            .run(
                "stop",
                &self.bin.tool("pg_ctl"),
                &args,
                &[],
                self.cfg.operation_timeout + Duration::from_secs(5),
            )
            .await?;
        if out.success() || !self.is_running() {
            tracing::info!(node = %self.cfg.node, mode = mode_arg, "stopped PostgreSQL");
            Ok(())
        } else {
            Err(Error::pg("stop", out.tail()))
        }
    }

    async fn restart(&self) -> Result<()> {
        self.stop(StopMode::Fast).await?;
        self.start(None).await
    }

    async fn reload(&self) -> Result<()> {
        self.runner
            .run(
                "reload",
                &self.bin.tool("pg_ctl"),
                &self.pg_ctl_args("reload", &[]),
                &[],
                self.cfg.operation_timeout,
            )
            .await?
            .check("reload")?;
        Ok(())
    }

    async fn promote(&self, timeout: Duration) -> Result<()> {
        self.promote_validated(timeout).await
    }

    async fn follow(&self, upstream: Option<&Upstream>) -> Result<()> {
        self.follow_upstream(upstream).await
    }

    async fn rewind(&self, source: &Upstream) -> Result<()> {
        self.rewind_from(source).await
    }

    async fn clone_from(&self, source: &Upstream) -> Result<()> {
        self.clone_from_source(source).await
    }

    async fn set_parameters(&self, parameters: &BTreeMap<String, String>) -> Result<ApplyReport> {
        self.apply_parameters(parameters).await
    }

    async fn reset_parameters(&self, names: &[String]) -> Result<ApplyReport> {
        self.remove_parameters(names).await
    }

    async fn ensure_slots(&self, plan: &super::SlotPlan) -> Result<()> {
        self.ensure_slot_plan(plan).await
    }

    async fn copy_logical_slots(&self, source: &Upstream, names: &[String]) -> Result<Vec<String>> {
        self.copy_logical_slots_from(source, names).await
    }

    async fn advance_logical_slots(&self, slots: &[super::SlotAdvance]) -> Result<()> {
        self.advance_logical_slots_to(slots).await
    }

    async fn preflight(&self) -> Result<String> {
        self.check_permanent()
    }
}

/// Milliseconds elapsed since `start`, for log fields.
pub(super) fn elapsed_ms(start: Instant) -> u64 {
    duration_ms(start.elapsed())
}
