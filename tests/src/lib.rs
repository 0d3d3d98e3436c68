//! Shared fixtures for RALE's end-to-end tests: real PostgreSQL servers on loopback,
//! free ports chosen at run time, temporary directories removed on drop.
//!
//! A [`TempCluster`] owns one temporary directory (under `/tmp`, so Unix socket paths stay
//! short) and every [`PgNode`] created in it. Dropping the cluster — also when a test
//! panics — stops every server still running with `pg_ctl stop -m immediate` and removes
//! the directory. Run as root, PostgreSQL runs as the `postgres` OS user and the
//! directory is handed to it.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use rale::PostgresControl;
//! use rale::pg::SlotPlan;
//! use rale_e2e::TempCluster;
//!
//! let cluster = TempCluster::new()?;
//! let primary = cluster.add_node("n1")?;
//! primary.pg().bootstrap(&Default::default()).await?;
//! primary.pg().ensure_slots(&SlotPlan::members_only(vec!["n2".to_string()])).await?;
//! let replica = cluster.add_node("n2")?;
//! replica.pg().clone_from(&primary.upstream()).await?;
//! replica.pg().start(None).await?;
//! primary.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)").await?;
//! rale_e2e::wait_until("row on replica", rale_e2e::WAIT, || async {
//!     Ok(replica.query_scalar("SELECT count(*) FROM t").await.ok().flatten()
//!         .filter(|n| n == "1"))
//! }).await?;
//! # Ok(()) }
//! ```

// The determinism lints of clippy.toml apply to rale::decide only.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod ctl;
pub mod netns;
pub mod ramd_cluster;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rale::pg::{OsUser, Upstream};
use rale::status::PgStatus;
use rale::{LocalPostgres, LocalPostgresConfig, NodeId, PostgresControl};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Superuser password of every fixture node.
pub const SUPERUSER_PASSWORD: &str = "rale-e2e-superuser";
/// Replication password of every fixture node.
pub const REPLICATION_PASSWORD: &str = "rale-e2e-replication";
/// A generous default bound for waiting on replication in tests.
pub const WAIT: Duration = Duration::from_secs(60);

/// Ports handed out by this process, so two nodes never get the same one.
static PORTS_GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A TCP port on 127.0.0.1 that was free just now and was not handed out before by this
/// process.
pub fn free_port() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .context("binding 127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut given = PORTS_GIVEN
            .lock()
            .map_err(|_| anyhow::anyhow!("port registry poisoned"))?;
        if given.insert(port) {
            return Ok(port);
        }
    }
    bail!("no free port found in 100 attempts")
}

/// Turns on `tracing` output for tests (`RUST_LOG`, default `rale=info`); idempotent.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("rale=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Polls `probe` every 50 ms until it returns `Ok(Some(value))`, at most `timeout`.
/// Errors from `probe` count as "not yet"; the last one is reported on timeout.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match probe().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            match last_error {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A temporary directory holding the data of several PostgreSQL nodes; stops them and
/// removes everything on drop.
pub struct TempCluster {
    nodes: Mutex<Vec<Arc<LocalPostgres>>>,
    os_user: Option<OsUser>,
    // Declared last: removed after the servers are stopped.
    root: tempfile::TempDir,
}

impl TempCluster {
    /// A new empty cluster directory under `/tmp` (private, owned by the PostgreSQL user
    /// when running as root).
    pub fn new() -> anyhow::Result<Self> {
        init_tracing();
        let root = tempfile::Builder::new()
            .prefix("rale-e2e-")
            .tempdir_in("/tmp")
            .context("creating the cluster's temp dir")?;
        let os_user = OsUser::for_current_process(None)?;
        if let Some(user) = &os_user {
            chown(root.path(), user)?;
        }
        Ok(Self {
            nodes: Mutex::new(Vec::new()),
            os_user,
            root,
        })
    }

    /// The cluster's directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A configuration for node `name`: a free port, `<root>/<name>/data` and
    /// `<root>/<name>/sock`, the fixture passwords, a 1 s status timeout.
    pub fn node_config(&self, name: &str) -> anyhow::Result<LocalPostgresConfig> {
        let node = NodeId::new(name)?;
        let dir = self.root().join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if let Some(user) = &self.os_user {
            chown(&dir, user)?;
        }
        Ok(LocalPostgresConfig::new(
            node,
            dir.join("data"),
            dir.join("sock"),
            free_port()?,
            SUPERUSER_PASSWORD,
            REPLICATION_PASSWORD,
        ))
    }

    /// Adds node `name` with [`TempCluster::node_config`]'s configuration.
    pub fn add_node(&self, name: &str) -> anyhow::Result<PgNode> {
        self.add_node_with(self.node_config(name)?)
    }

    /// Adds a node with a given configuration (its server is stopped on drop).
    pub fn add_node_with(&self, config: LocalPostgresConfig) -> anyhow::Result<PgNode> {
        let pg = Arc::new(LocalPostgres::new(config)?);
        self.nodes
            .lock()
            .map_err(|_| anyhow::anyhow!("node list poisoned"))?
            .push(pg.clone());
        Ok(PgNode {
            id: pg.config().node.clone(),
            pg,
        })
    }

    /// Every node added so far.
    pub fn nodes(&self) -> Vec<PgNode> {
        self.nodes
            .lock()
            .map(|nodes| {
                nodes
                    .iter()
                    .map(|pg| PgNode {
                        id: pg.config().node.clone(),
                        pg: pg.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let nodes = match self.nodes.lock() {
            Ok(mut n) => std::mem::take(&mut *n),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for pg in nodes {
            if let Err(e) = pg.stop_immediate_blocking() {
                eprintln!("fixture: stopping {} failed: {e}", pg.config().node);
            }
        }
    }
}

fn chown(path: &Path, user: &OsUser) -> anyhow::Result<()> {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(user.uid)),
        Some(nix::unistd::Gid::from_raw(user.gid)),
    )
    .with_context(|| format!("chown {} to {}", path.display(), user.name))
}

/// One node of a [`TempCluster`]: its id and its [`LocalPostgres`].
#[derive(Clone, Debug)]
pub struct PgNode {
    /// The member's id.
    pub id: NodeId,
    pg: Arc<LocalPostgres>,
}

impl PgNode {
    /// Its PostgreSQL control. (A `&LocalPostgres`, so that `node.pg().clone_from(…)`
    /// calls [`PostgresControl::clone_from`], not `Clone::clone_from` of an `Arc`.)
    pub fn pg(&self) -> &LocalPostgres {
        &self.pg
    }

    /// The shared handle, e.g. to hand to an agent as `Arc<dyn PostgresControl>`.
    pub fn pg_arc(&self) -> Arc<LocalPostgres> {
        self.pg.clone()
    }

    /// How other nodes reach it.
    pub fn upstream(&self) -> Upstream {
        self.pg.as_upstream()
    }

    /// Its data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.pg.config().data_dir.clone()
    }

    /// A new superuser connection over TCP (SCRAM), as an application would connect.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let cfg = self.pg.config();
        let mut pc = tokio_postgres::Config::new();
        pc.host(&cfg.host)
            .port(cfg.port)
            .user(&cfg.superuser)
            .password(&cfg.superuser_password)
            .dbname("postgres")
            .application_name("rale-e2e")
            .connect_timeout(Duration::from_secs(5));
        let (client, connection) = tokio::time::timeout(Duration::from_secs(10), pc.connect(NoTls))
            .await
            .context("connect timed out")?
            .with_context(|| format!("connecting to {}", self.id))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Runs SQL statements (no results).
    pub async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        self.client()
            .await?
            .batch_execute(sql)
            .await
            .with_context(|| format!("on {}: {sql}", self.id))
    }

    /// Runs a query and returns the first column of its first row as text (`None` for no
    /// row or NULL).
    pub async fn query_scalar(&self, sql: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .query_rows(sql)
            .await?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten()))
    }

    /// Runs a query and returns every row as text columns.
    pub async fn query_rows(&self, sql: &str) -> anyhow::Result<Vec<Vec<Option<String>>>> {
        let messages = self
            .client()
            .await?
            .simple_query(sql)
            .await
            .with_context(|| format!("on {}: {sql}", self.id))?;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }

    /// Its current [`PgStatus`].
    pub async fn status(&self) -> anyhow::Result<PgStatus> {
        Ok(self.pg.status().await?)
    }

    /// Waits (bounded by `timeout`) until its status satisfies `pred`; returns that status.
    pub async fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&PgStatus) -> bool,
    ) -> anyhow::Result<PgStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.pg.status().await {
                Ok(s) if pred(&s) => return Ok(s),
                Ok(s) => format!("{s:?}"),
                Err(e) => format!("error: {e}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{}: timed out after {timeout:?} waiting for {what}; last status: {}",
                    self.id,
                    last
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `sql` returns `expected` as its first value.
    pub async fn wait_scalar(
        &self,
        sql: &str,
        expected: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let what = format!("{}: `{sql}` = {expected}", self.id);
        wait_until(&what, timeout, || async {
            Ok((self.query_scalar(sql).await?.as_deref() == Some(expected)).then_some(()))
        })
        .await
    }
}
