//! SQL connections to the local server and the status query.
//!
//! The agent connects through the Unix socket as the superuser. `status()` runs every
//! ~100 ms, so it keeps one cached connection (with a `statement_timeout`) and reconnects
//! when it breaks; operations open their own short-lived connection.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage, SimpleQueryRow};

use super::process::duration_ms;
use crate::status::{LogicalSlot, ReplicaConnection};
use crate::types::{Lsn, Timeline};
use crate::{Error, Result};

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub(crate) struct ConnectTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl ConnectTarget {
    /// The local server through its Unix socket directory.
    pub fn socket(dir: &Path, port: u16, user: &str, password: &str) -> Self {
        Self {
            host: dir.to_string_lossy().into_owned(),
            port,
            user: user.to_string(),
            password: password.to_string(),
        }
    }
}

/// Opens a connection with a connect timeout and, when given, a `statement_timeout`; the
/// connection task is spawned on the current runtime and ends when the client is dropped.
pub(crate) async fn connect(
    target: &ConnectTarget,
    timeout: Duration,
    statement_timeout: Option<Duration>,
) -> Result<Client> {
    connect_db(target, "postgres", timeout, statement_timeout).await
}

/// [`connect`] to database `dbname`.
pub(crate) async fn connect_db(
    target: &ConnectTarget,
    dbname: &str,
    timeout: Duration,
    statement_timeout: Option<Duration>,
) -> Result<Client> {
    let mut config = tokio_postgres::Config::new();
    if target.host.starts_with('/') {
        config.host_path(&target.host);
    } else {
        config.host(&target.host);
    }
    config
        .port(target.port)
        .user(&target.user)
        .password(&target.password)
        .dbname(dbname)
        .application_name("rale-agent")
        .connect_timeout(timeout);
    if let Some(st) = statement_timeout {
        config.options(format!("-c statement_timeout={}", duration_ms(st).max(1)));
    }
    let connecting = config.connect(NoTls);
    let (client, connection) = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| Error::Timeout {
            operation: "connect",
            after_ms: duration_ms(timeout),
        })?
        .map_err(|e| Error::pg("connect", describe(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// A tokio-postgres error with the server's message, detail and hint when there are.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {}", db.code().code(), db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!(" hint: {h}"));
            }
            s
        }
        None => e.to_string(),
    }
}

/// Runs a simple (text) query and returns its rows, one `Vec` per statement.
pub(crate) async fn simple(
    client: &Client,
    operation: &'static str,
    sql: &str,
) -> Result<Vec<Vec<SimpleQueryRow>>> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| Error::pg(operation, describe(&e)))?;
    let mut out = vec![Vec::new()];
    for m in messages {
        match m {
            SimpleQueryMessage::Row(row) => {
                if let Some(last) = out.last_mut() {
                    last.push(row);
                }
            }
            SimpleQueryMessage::CommandComplete(_) => out.push(Vec::new()),
            _ => {}
        }
    }
    out.pop();
    Ok(out)
}

/// Runs `sql` (one or more statements without results).
pub(crate) async fn execute(client: &Client, operation: &'static str, sql: &str) -> Result<()> {
    client
        .batch_execute(sql)
        .await
        .map_err(|e| Error::pg(operation, describe(&e)))
}

/// First column of the first row of the first statement, as text.
pub(crate) async fn scalar(
    client: &Client,
    operation: &'static str,
    sql: &str,
) -> Result<Option<String>> {
    let rows = simple(client, operation, sql).await?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(|row| row.get(0).map(str::to_string)))
}

/// What one status query returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Observation {
    pub in_recovery: bool,
    pub timeline: Timeline,
    pub current_lsn: Option<Lsn>,
    pub receive_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
    pub streaming: bool,
    pub received_tli: Option<Timeline>,
    pub replicas: Vec<ReplicaConnection>,
    pub synchronous_standby_names: String,
    pub pending_restart: bool,
    pub server_version_num: u32,
    pub logical_slots: Vec<LogicalSlot>,
    pub hot_standby_feedback: bool,
}

/// One round trip: four statements in one simple query.
const STATUS_SQL: &str = "\
SELECT pg_is_in_recovery(), \
 CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END, \
 CASE WHEN pg_is_in_recovery() THEN NULL ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END, \
 pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, \
 (SELECT timeline_id FROM pg_control_checkpoint()), \
 (SELECT min_recovery_end_timeline FROM pg_control_recovery()), \
 current_setting('synchronous_standby_names'), \
 current_setting('server_version_num'), \
 EXISTS (SELECT 1 FROM pg_settings WHERE pending_restart), \
 current_setting('hot_standby_feedback'); \
SELECT status, received_tli FROM pg_stat_wal_receiver; \
SELECT coalesce(application_name, ''), coalesce(state, ''), coalesce(sync_state, ''), \
 write_lsn::text, flush_lsn::text, replay_lsn::text FROM pg_stat_replication \
 ORDER BY application_name; \
SELECT slot_name, coalesce(database, ''), coalesce(plugin, ''), confirmed_flush_lsn::text \
 FROM pg_replication_slots WHERE slot_type = 'logical' AND NOT temporary ORDER BY slot_name";

/// Observes the server through `client`.
pub(crate) async fn observe(client: &Client) -> Result<Observation> {
    let results = simple(client, "status", STATUS_SQL).await?;
    let [main, receiver, replication, slots] = results.as_slice() else {
        return Err(Error::pg(
            "status",
            format!("expected 4 result sets, got {}", results.len()),
        ));
    };
    let row = main
        .first()
        .ok_or_else(|| Error::pg("status", "status query returned no row"))?;
    let text = |i: usize| row.get(i).map(str::to_string);
    let lsn = |i: usize| -> Result<Option<Lsn>> { text(i).map(|s| s.parse()).transpose() };
    let tli = |i: usize| text(i).and_then(|s| s.parse::<u32>().ok()).map(Timeline);
    let in_recovery = text(0).as_deref() == Some("t");
    let walfile_tli = text(2)
        .and_then(|s| u32::from_str_radix(&s, 16).ok())
        .map(Timeline);
    let checkpoint_tli = tli(5).unwrap_or_default();
    let recovery_tli = tli(6).unwrap_or_default();
    let (streaming, received_tli) = match receiver.first() {
        Some(r) => (
            r.get(0) == Some("streaming"),
            r.get(1)
                .and_then(|s| s.parse::<u32>().ok())
                .filter(|t| *t > 0)
                .map(Timeline),
        ),
        None => (false, None),
    };
    let timeline = if in_recovery {
        received_tli.unwrap_or(checkpoint_tli.max(recovery_tli))
    } else {
        walfile_tli.unwrap_or(checkpoint_tli)
    };
    let mut replicas = Vec::with_capacity(replication.len());
    for r in replication {
        let opt_lsn = |i: usize| -> Result<Option<Lsn>> { r.get(i).map(str::parse).transpose() };
        replicas.push(ReplicaConnection {
            application_name: r.get(0).unwrap_or_default().to_string(),
            state: r.get(1).unwrap_or_default().to_string(),
            sync_state: r.get(2).unwrap_or_default().to_string(),
            write_lsn: opt_lsn(3)?,
            flush_lsn: opt_lsn(4)?,
            replay_lsn: opt_lsn(5)?,
        });
    }
    let mut logical_slots = Vec::with_capacity(slots.len());
    for r in slots {
        logical_slots.push(LogicalSlot {
            name: r.get(0).unwrap_or_default().to_string(),
            database: r.get(1).unwrap_or_default().to_string(),
            plugin: r.get(2).unwrap_or_default().to_string(),
            confirmed_flush_lsn: r.get(3).map(str::parse).transpose()?,
        });
    }
    Ok(Observation {
        in_recovery,
        timeline,
        current_lsn: lsn(1)?,
        receive_lsn: lsn(3)?,
        replay_lsn: lsn(4)?,
        streaming,
        received_tli,
        replicas,
        synchronous_standby_names: text(7).unwrap_or_default(),
        pending_restart: text(9).as_deref() == Some("t"),
        server_version_num: text(8).and_then(|s| s.parse().ok()).unwrap_or(0),
        logical_slots,
        hot_standby_feedback: text(10).as_deref() == Some("on"),
    })
}

/// A cached connection for status queries, replaced when it breaks.
#[derive(Default)]
pub(crate) struct CachedClient {
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl CachedClient {
    /// The cached client, or a new one when there is none or it is closed.
    pub async fn get(&self, target: &ConnectTarget, timeout: Duration) -> Result<Arc<Client>> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        *slot = None;
        let client = Arc::new(connect(target, timeout, Some(timeout)).await?);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Forgets the cached connection (after an error, or when the server stopped).
    pub async fn reset(&self) {
        *self.client.lock().await = None;
    }
}
