//! The statements of one workload collection and the parsing of their rows.
//!
//! Every list is bounded (`LIMIT`): a server with more databases, standbys or slots than
//! that reports the first ones by name.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage, SimpleQueryRow};

use super::{
    Checkpoints, Connections, Database, Error, Result, Slot, Standby, Target, WorkloadSample,
    XminAges,
};

/// Most rows read from one list (databases, activity groups, standbys, slots).
pub const ROWS_MAX: usize = 1000;

/// The WAL position a standby's lag is measured from: this server's own (its current
/// position on a primary, its replayed position on a cascading standby).
const CURRENT_LSN: &str = "(SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
     ELSE pg_current_wal_lsn() END AS lsn) cur";

async fn connect(target: &Target, timeout: Duration) -> Result<Client> {
    let mut config = tokio_postgres::Config::new();
    if target.host.starts_with('/') {
        config.host_path(&target.host);
    } else {
        config.host(&target.host);
    }
    let statement_timeout_ms = timeout.as_millis().max(1);
    config
        .port(target.port)
        .user(&target.user)
        .password(&target.password)
        .dbname("postgres")
        .application_name("rale-metrics")
        .connect_timeout(timeout)
        .options(format!("-c statement_timeout={statement_timeout_ms}"));
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| Error::Connect(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "metrics connection ended");
        }
    });
    Ok(client)
}

async fn rows(client: &Client, section: &'static str, sql: &str) -> Result<Vec<SimpleQueryRow>> {
    let messages = client.simple_query(sql).await.map_err(|e| Error::Query {
        section,
        message: match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        },
    })?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .take(ROWS_MAX)
        .collect())
}

/// Column `i` as text (`""` for NULL).
fn text(row: &SimpleQueryRow, i: usize) -> String {
    row.get(i).unwrap_or_default().to_owned()
}

/// Column `i` parsed; NULL gives `T::default()`.
fn num<T: FromStr + Default>(row: &SimpleQueryRow, section: &'static str, i: usize) -> Result<T> {
    match row.get(i) {
        None => Ok(T::default()),
        Some(v) => v.parse().map_err(|_| Error::Parse {
            section,
            column: i,
            value: v.to_owned(),
        }),
    }
}

fn boolean(row: &SimpleQueryRow, i: usize) -> bool {
    row.get(i) == Some("t")
}

/// One collection, on the cached connection (opened when `client` is `None`).
pub async fn collect_once(
    target: &Target,
    client: &mut Option<Client>,
    timeout: Duration,
) -> Result<WorkloadSample> {
    let c = match client.take() {
        Some(c) if !c.is_closed() => c,
        _ => connect(target, timeout).await?,
    };
    let sample = collect(&c).await?;
    *client = Some(c);
    Ok(sample)
}

/// Runs every statement of a collection on `client` (a superuser or `pg_monitor`
/// connection) and returns the sample (its time fields unset).
pub async fn collect(client: &Client) -> Result<WorkloadSample> {
    let mut s = WorkloadSample::default();

    let section = "settings";
    let r = rows(
        client,
        section,
        "SELECT current_setting('server_version_num'), current_setting('max_connections'), \
         pg_is_in_recovery()",
    )
    .await?;
    if let Some(row) = r.first() {
        s.server_version_num = num(row, section, 0)?;
        s.max_connections = num(row, section, 1)?;
        s.in_recovery = boolean(row, 2);
    }

    let section = "activity";
    for row in rows(
        client,
        section,
        &format!(
            "SELECT coalesce(datname, ''), coalesce(state, 'unknown'), count(*), \
             coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0)::float8 \
             FROM pg_stat_activity WHERE backend_type = 'client backend' \
             GROUP BY 1, 2 ORDER BY 1, 2 LIMIT {ROWS_MAX}"
        ),
    )
    .await?
    {
        let c = Connections {
            datname: text(&row, 0),
            state: text(&row, 1),
            count: num(&row, section, 2)?,
            max_tx_duration_seconds: num::<f64>(&row, section, 3)?.max(0.0),
        };
        s.oldest_xact_age_seconds = s.oldest_xact_age_seconds.max(c.max_tx_duration_seconds);
        s.connections.push(c);
    }

    let section = "xmin";
    let r = rows(
        client,
        section,
        "SELECT \
         (SELECT coalesce(max(age(backend_xmin)), 0) FROM pg_stat_activity), \
         (SELECT coalesce(max(age(xmin)), 0) FROM pg_replication_slots), \
         (SELECT coalesce(max(age(catalog_xmin)), 0) FROM pg_replication_slots), \
         (SELECT coalesce(max(age(transaction)), 0) FROM pg_prepared_xacts)",
    )
    .await?;
    if let Some(row) = r.first() {
        s.xmin_age = XminAges {
            backend: num::<i64>(row, section, 0)?.max(0).unsigned_abs(),
            slot: num::<i64>(row, section, 1)?.max(0).unsigned_abs(),
            slot_catalog: num::<i64>(row, section, 2)?.max(0).unsigned_abs(),
            prepared: num::<i64>(row, section, 3)?.max(0).unsigned_abs(),
        };
    }

    let section = "databases";
    for row in rows(
        client,
        section,
        &format!(
            "SELECT d.datname, s.numbackends, s.xact_commit, s.xact_rollback, s.deadlocks, \
             s.conflicts, c.confl_tablespace, c.confl_lock, c.confl_snapshot, \
             c.confl_bufferpin, c.confl_deadlock, \
             CASE WHEN has_database_privilege(d.oid, 'CONNECT') \
             THEN pg_database_size(d.oid) END \
             FROM pg_database d \
             LEFT JOIN pg_stat_database s ON s.datid = d.oid \
             LEFT JOIN pg_stat_database_conflicts c ON c.datid = d.oid \
             ORDER BY d.datname LIMIT {ROWS_MAX}"
        ),
    )
    .await?
    {
        let mut by_kind = [0u64; 5];
        for (k, slot) in by_kind.iter_mut().enumerate() {
            *slot = num(&row, section, 6 + k)?;
        }
        s.databases.push(Database {
            datname: text(&row, 0),
            numbackends: num(&row, section, 1)?,
            xact_commit: num(&row, section, 2)?,
            xact_rollback: num(&row, section, 3)?,
            deadlocks: num(&row, section, 4)?,
            conflicts: num(&row, section, 5)?,
            conflicts_by_kind: by_kind,
            size_bytes: num(&row, section, 11)?,
        });
    }

    let section = "wal";
    if s.server_version_num >= 140000 {
        let r = rows(client, section, "SELECT wal_bytes FROM pg_stat_wal").await?;
        if let Some(row) = r.first() {
            s.wal_bytes = Some(num(row, section, 0)?);
        }
    }
    let r = rows(
        client,
        section,
        "SELECT count(*), coalesce(sum(size), 0) FROM pg_ls_waldir()",
    )
    .await?;
    if let Some(row) = r.first() {
        s.wal_segments = num(row, section, 0)?;
        s.wal_size_bytes = num(row, section, 1)?;
    }

    let section = "replication";
    let lag =
        |col: &str| format!("greatest(coalesce(pg_wal_lsn_diff(cur.lsn, {col}), 0), 0)::bigint");
    let secs = |col: &str| format!("coalesce(extract(epoch FROM {col}), 0)::float8");
    for row in rows(
        client,
        section,
        &format!(
            "SELECT coalesce(application_name, ''), coalesce(host(client_addr), ''), \
             coalesce(state, ''), coalesce(sync_state, ''), {}, {}, {}, {}, {}, {} \
             FROM pg_stat_replication, {CURRENT_LSN} ORDER BY 1 LIMIT {ROWS_MAX}",
            lag("write_lsn"),
            lag("flush_lsn"),
            lag("replay_lsn"),
            secs("write_lag"),
            secs("flush_lag"),
            secs("replay_lag"),
        ),
    )
    .await?
    {
        s.standbys.push(Standby {
            application_name: text(&row, 0),
            client_addr: text(&row, 1),
            state: text(&row, 2),
            sync_state: text(&row, 3),
            write_lag_bytes: num(&row, section, 4)?,
            flush_lag_bytes: num(&row, section, 5)?,
            replay_lag_bytes: num(&row, section, 6)?,
            write_lag_seconds: num(&row, section, 7)?,
            flush_lag_seconds: num(&row, section, 8)?,
            replay_lag_seconds: num(&row, section, 9)?,
        });
    }

    let section = "slots";
    let safe = if s.server_version_num >= 130000 {
        "safe_wal_size"
    } else {
        "NULL::bigint"
    };
    for row in rows(
        client,
        section,
        &format!(
            "SELECT slot_name, slot_type, active, {}, {safe}, plugin, database \
             FROM pg_replication_slots, {CURRENT_LSN} ORDER BY 1 LIMIT {ROWS_MAX}",
            lag("restart_lsn"),
        ),
    )
    .await?
    {
        s.slots.push(Slot {
            slot_name: text(&row, 0),
            slot_type: text(&row, 1),
            plugin: row.get(5).map(str::to_owned),
            database: row.get(6).map(str::to_owned),
            active: boolean(&row, 2),
            retained_wal_bytes: num(&row, section, 3)?,
            safe_wal_size_bytes: match row.get(4) {
                None => None,
                Some(_) => Some(num(&row, section, 4)?),
            },
        });
    }

    let section = "checkpoints";
    let sql = if s.server_version_num >= 170000 {
        "SELECT num_timed, num_requested, write_time, sync_time, buffers_written \
         FROM pg_stat_checkpointer"
    } else {
        "SELECT checkpoints_timed, checkpoints_req, checkpoint_write_time, \
         checkpoint_sync_time, buffers_checkpoint FROM pg_stat_bgwriter"
    };
    let r = rows(client, section, sql).await?;
    if let Some(row) = r.first() {
        s.checkpoints = Checkpoints {
            timed: num(row, section, 0)?,
            requested: num(row, section, 1)?,
            write_time_ms: num(row, section, 2)?,
            sync_time_ms: num(row, section, 3)?,
            buffers_written: num(row, section, 4)?,
        };
    }
    Ok(s)
}
