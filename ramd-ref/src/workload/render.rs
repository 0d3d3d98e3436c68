//! The workload sample as Prometheus metric families, registered into the registry of
//! `GET /metrics` (which adds the `scope` and `name` labels to every one).

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{CONFLICT_KINDS, WorkloadSample, WorkloadView};

type Labels = Vec<(String, String)>;
type GaugeF = Gauge<f64, AtomicU64>;
type CounterF = Counter<f64, AtomicU64>;

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn gauge_i(reg: &mut Registry, name: &str, help: &str, v: i64) {
    let g: Gauge = Gauge::default();
    g.set(v);
    reg.register(name, help, g);
}

fn gauge_f(reg: &mut Registry, name: &str, help: &str, v: f64) {
    let g: GaugeF = Gauge::default();
    g.set(v);
    reg.register(name, help, g);
}

fn counter_i(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

fn counter_f(reg: &mut Registry, name: &str, help: &str, v: f64) {
    let c: CounterF = Counter::default();
    c.inc_by(v.max(0.0));
    reg.register(name, help, c);
}

/// Registers the collector's own health (when collection is on) and, when the last
/// collection succeeded, the sample's families. Names are listed in `docs/metrics.md`.
/// With `[metrics] workload = false` nothing is registered, so that `pg_up` does not
/// report a server as unreachable that nobody asked to watch.
pub fn register(reg: &mut Registry, view: &WorkloadView, now_unix_ms: u64) {
    if !view.enabled {
        return;
    }
    gauge_i(
        reg,
        "pg_up",
        "Value is 1 if the last workload collection from the local server succeeded",
        i64::from(view.sample.is_some()),
    );
    counter_i(
        reg,
        "rale_workload_collect_errors",
        "Workload collections that failed since the agent started",
        view.errors,
    );
    let Some(s) = view.sample.as_deref() else {
        return;
    };
    gauge_f(
        reg,
        "rale_workload_collect_duration_seconds",
        "Duration of the last workload collection",
        s.duration_ms as f64 / 1000.0,
    );
    gauge_f(
        reg,
        "rale_workload_collect_age_seconds",
        "Time since the last workload collection ended",
        now_unix_ms.saturating_sub(s.collected_unix_ms) as f64 / 1000.0,
    );
    register_sample(reg, s);
}

fn register_sample(reg: &mut Registry, s: &WorkloadSample) {
    gauge_i(
        reg,
        "pg_settings_max_connections",
        "Server setting max_connections",
        int(s.max_connections),
    );
    gauge_f(
        reg,
        "rale_connections_used_ratio",
        "Client backends as a fraction of max_connections",
        s.connections_used_ratio(),
    );
    let count: Family<Labels, Gauge> = Family::default();
    let max_tx: Family<Labels, GaugeF> = Family::default();
    for c in &s.connections {
        let l = labels(&[("datname", &c.datname), ("state", &c.state)]);
        count.get_or_create(&l).set(int(c.count));
        max_tx.get_or_create(&l).set(c.max_tx_duration_seconds);
    }
    reg.register(
        "pg_stat_activity_connections",
        "Client backends by database and state",
        count,
    );
    reg.register(
        "pg_stat_activity_max_tx_duration",
        "Age in seconds of the oldest open transaction by database and state",
        max_tx,
    );
    gauge_f(
        reg,
        "rale_oldest_xact_age_seconds",
        "Age of the oldest open transaction of any client backend (0 when none)",
        s.oldest_xact_age_seconds,
    );
    let xmin: Family<Labels, Gauge> = Family::default();
    for (source, age) in [
        ("backend", s.xmin_age.backend),
        ("slot", s.xmin_age.slot),
        ("slot_catalog", s.xmin_age.slot_catalog),
        ("prepared", s.xmin_age.prepared),
    ] {
        xmin.get_or_create(&labels(&[("source", source)]))
            .set(int(age));
    }
    reg.register(
        "rale_oldest_xmin_age",
        "Age in transactions of the oldest xmin horizon held, by what holds it",
        xmin,
    );

    let db = |reg: &mut Registry, name: &str, help: &str, f: &dyn Fn(&super::Database) -> u64| {
        let fam: Family<Labels, Counter> = Family::default();
        for d in &s.databases {
            fam.get_or_create(&labels(&[("datname", &d.datname)]))
                .inc_by(f(d));
        }
        reg.register(name, help, fam);
    };
    db(
        reg,
        "pg_stat_database_xact_commit",
        "Transactions committed in this database",
        &|d| d.xact_commit,
    );
    db(
        reg,
        "pg_stat_database_xact_rollback",
        "Transactions rolled back in this database",
        &|d| d.xact_rollback,
    );
    db(
        reg,
        "pg_stat_database_deadlocks",
        "Deadlocks detected in this database",
        &|d| d.deadlocks,
    );
    db(
        reg,
        "pg_stat_database_conflicts",
        "Queries cancelled by recovery conflicts in this database (standbys)",
        &|d| d.conflicts,
    );
    let numbackends: Family<Labels, Gauge> = Family::default();
    let size: Family<Labels, Gauge> = Family::default();
    for d in &s.databases {
        let l = labels(&[("datname", &d.datname)]);
        numbackends.get_or_create(&l).set(int(d.numbackends));
        size.get_or_create(&l).set(int(d.size_bytes));
    }
    reg.register(
        "pg_stat_database_numbackends",
        "Backends connected to this database",
        numbackends,
    );
    reg.register(
        "pg_database_size_bytes",
        "Disk space used by the database",
        size,
    );
    for (k, kind) in CONFLICT_KINDS.iter().enumerate() {
        let fam: Family<Labels, Counter> = Family::default();
        for d in &s.databases {
            fam.get_or_create(&labels(&[("datname", &d.datname)]))
                .inc_by(d.conflicts_by_kind[k]);
        }
        reg.register(
            format!("pg_stat_database_conflicts_confl_{kind}"),
            format!("Queries cancelled by recovery conflicts with {kind} (standbys)"),
            fam,
        );
    }

    if let Some(b) = s.wal_bytes {
        counter_i(
            reg,
            "pg_stat_wal_bytes",
            "WAL generated by this server, bytes (pg_stat_wal.wal_bytes)",
            b,
        );
    }
    gauge_i(
        reg,
        "pg_wal_segments",
        "Files in pg_wal",
        int(s.wal_segments),
    );
    gauge_i(
        reg,
        "pg_wal_size_bytes",
        "Total size of the files in pg_wal",
        int(s.wal_size_bytes),
    );

    let lag_bytes: Family<Labels, Gauge> = Family::default();
    let lag_seconds: Family<Labels, GaugeF> = Family::default();
    for st in &s.standbys {
        for (point, bytes, secs) in [
            ("write", st.write_lag_bytes, st.write_lag_seconds),
            ("flush", st.flush_lag_bytes, st.flush_lag_seconds),
            ("replay", st.replay_lag_bytes, st.replay_lag_seconds),
        ] {
            let l = labels(&[("application_name", &st.application_name), ("point", point)]);
            lag_bytes.get_or_create(&l).set(int(bytes));
            lag_seconds.get_or_create(&l).set(secs);
        }
    }
    reg.register(
        "pg_stat_replication_lag_bytes",
        "WAL bytes between this server's position and what each standby wrote, flushed, replayed",
        lag_bytes,
    );
    reg.register(
        "pg_stat_replication_lag_seconds",
        "Write, flush and replay lag of each standby as the upstream measures it (0 when idle)",
        lag_seconds,
    );
    let standby_info: Family<Labels, Gauge> = Family::default();
    for st in &s.standbys {
        standby_info
            .get_or_create(&labels(&[
                ("application_name", &st.application_name),
                ("client_addr", &st.client_addr),
                ("state", &st.state),
                ("sync_state", &st.sync_state),
            ]))
            .set(1);
    }
    reg.register(
        "pg_stat_replication_info",
        "One series per standby streaming from this server, with its state and sync_state",
        standby_info,
    );

    let slot_active: Family<Labels, Gauge> = Family::default();
    let retained: Family<Labels, Gauge> = Family::default();
    let safe: Family<Labels, Gauge> = Family::default();
    for sl in &s.slots {
        let l = labels(&[("slot_name", &sl.slot_name), ("slot_type", &sl.slot_type)]);
        slot_active.get_or_create(&l).set(i64::from(sl.active));
        retained.get_or_create(&l).set(int(sl.retained_wal_bytes));
        if let Some(b) = sl.safe_wal_size_bytes {
            safe.get_or_create(&l).set(b);
        }
    }
    reg.register(
        "pg_replication_slot_slot_is_active",
        "Value is 1 if a consumer is connected to the slot",
        slot_active,
    );
    reg.register(
        "pg_replication_slot_retained_wal_bytes",
        "WAL kept for the slot: this server's position minus the slot's restart_lsn",
        retained,
    );
    reg.register(
        "pg_replication_slot_safe_wal_size_bytes",
        "WAL that can still be written before the slot is invalidated (max_slot_wal_keep_size)",
        safe,
    );

    let c = &s.checkpoints;
    counter_i(
        reg,
        "pg_stat_bgwriter_checkpoints_timed",
        "Scheduled checkpoints performed",
        c.timed,
    );
    counter_i(
        reg,
        "pg_stat_bgwriter_checkpoints_req",
        "Requested checkpoints performed",
        c.requested,
    );
    counter_f(
        reg,
        "pg_stat_bgwriter_checkpoint_write_time",
        "Time checkpoints spent writing files, in milliseconds",
        c.write_time_ms,
    );
    counter_f(
        reg,
        "pg_stat_bgwriter_checkpoint_sync_time",
        "Time checkpoints spent syncing files, in milliseconds",
        c.sync_time_ms,
    );
    counter_i(
        reg,
        "pg_stat_bgwriter_buffers_checkpoint",
        "Buffers written by checkpoints",
        c.buffers_written,
    );
}
