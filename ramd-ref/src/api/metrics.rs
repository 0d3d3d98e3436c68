//! `GET /metrics`: Patroni's metric names (labels `scope`, `name`) plus ours (`rale_*`), in
//! the Prometheus text format 0.0.4 that Patroni serves.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rale::state::HistoryKind;
use rale::{ClusterState, Role};

use super::ApiState;
use super::describe::{VERSION, own_lag_bytes};
use super::sync_role::{SyncRole, sync_role};
use crate::snapshot::NodeSnapshot;

/// Content type of the Prometheus text format 0.0.4 (what Patroni serves).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Turns prometheus-client's OpenMetrics text into the Prometheus text format 0.0.4: a
/// counter family is named with its `_total` suffix in `HELP`/`TYPE`, and there is no
/// `# EOF` line. Both Prometheus and `promtool check metrics` read the result.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

fn gauge(reg: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    reg.register(name, help, g);
}

/// Patroni's `patroni_postgres_state` numbers for the states we can tell apart.
fn postgres_state(snap: &NodeSnapshot) -> i64 {
    match (snap.pg.running, snap.pg.reachable) {
        (true, true) => 5,
        (true, false) => 6,
        (false, _) => 12,
    }
}

/// A backup job record, as [`Extras::backup_jobs`] takes it.
pub use rale_backup::Job as BackupJob;

/// What `GET /metrics` adds to the HA state when the agent has it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras<'a> {
    /// The workload collector's last view.
    pub workload: Option<&'a crate::workload::WorkloadView>,
    /// The backup jobs this node knows (`None`: backups are not configured).
    pub backup_jobs: Option<&'a [BackupJob]>,
}

fn unix_seconds(t: Option<chrono::DateTime<chrono::Utc>>) -> f64 {
    t.map(|t| t.timestamp_millis() as f64 / 1000.0)
        .unwrap_or(0.0)
}

/// Backup metrics from the node's job records: when the last backup succeeded and
/// failed, and the jobs by state.
fn backup_metrics(reg: &mut Registry, jobs: &[rale_backup::Job]) {
    use rale_backup::{JobSpec, JobState};
    let backups = || {
        jobs.iter()
            .filter(|j| matches!(j.spec, JobSpec::Backup { .. }))
    };
    let last = |state: JobState| {
        backups()
            .filter(|j| j.state == state)
            .filter_map(|j| j.finished_at)
            .max()
    };
    for (name, help, state) in [
        (
            "rale_backup_last_success_timestamp_seconds",
            "Unix time the last successful backup job of this node finished (0: none)",
            JobState::Succeeded,
        ),
        (
            "rale_backup_last_failure_timestamp_seconds",
            "Unix time the last failed backup job of this node finished (0: none)",
            JobState::Failed,
        ),
    ] {
        let g: Gauge<f64, AtomicU64> = Gauge::default();
        g.set(unix_seconds(last(state)));
        reg.register(name, help, g);
    }
    let by_state: Family<Vec<(String, String)>, Gauge> = Family::default();
    for (label, state) in [
        ("queued", JobState::Queued),
        ("running", JobState::Running),
        ("succeeded", JobState::Succeeded),
        ("failed", JobState::Failed),
    ] {
        by_state
            .get_or_create(&vec![("state".to_owned(), label.to_owned())])
            .set(int(backups().filter(|j| j.state == state).count() as u64));
    }
    reg.register(
        "rale_backup_jobs",
        "Backup jobs this node keeps records of, by state",
        by_state,
    );
}

/// Renders every metric, in the Prometheus text format, for this node's latest snapshot and cluster state.
pub fn render(
    snap: &NodeSnapshot,
    cluster: &ClusterState,
    scope: &str,
    now_unix_ms: u64,
    extras: Extras<'_>,
) -> String {
    let labels = [
        (Cow::Borrowed("scope"), Cow::Owned(scope.to_owned())),
        (Cow::Borrowed("name"), Cow::Owned(snap.node.to_string())),
    ];
    let mut reg = Registry::with_labels(labels.into_iter());
    let pg = &snap.pg;
    let running = pg.running && pg.reachable;
    let replica = running && pg.role() == Role::Replica;
    let primary = snap.is_primary();
    let sync = sync_role(cluster, &snap.node);

    // Patroni's names and meanings.
    gauge(
        &mut reg,
        "patroni_postgres_running",
        "Value is 1 if Postgres is running, 0 otherwise",
        flag(running),
    );
    gauge(
        &mut reg,
        "patroni_primary",
        "Value is 1 if this node is the leader, 0 otherwise",
        flag(primary),
    );
    gauge(
        &mut reg,
        "patroni_xlog_location",
        "Current location of the Postgres transaction log, 0 if this node is not the leader",
        if primary { int(pg.write_lsn.0) } else { 0 },
    );
    gauge(
        &mut reg,
        "patroni_standby_leader",
        "Value is 1 if this node is the standby_leader, 0 otherwise",
        0,
    );
    gauge(
        &mut reg,
        "patroni_replica",
        "Value is 1 if this node is a replica, 0 otherwise",
        flag(replica && !primary),
    );
    gauge(
        &mut reg,
        "patroni_sync_standby",
        "Value is 1 if this node is a sync standby, 0 otherwise",
        flag(sync == SyncRole::Sync),
    );
    gauge(
        &mut reg,
        "patroni_quorum_standby",
        "Value is 1 if this node is a quorum standby, 0 otherwise",
        flag(sync == SyncRole::Quorum),
    );
    gauge(
        &mut reg,
        "patroni_xlog_received_location",
        "Current location of the received Postgres transaction log, 0 if this node is not a replica",
        if replica {
            int(pg.receive_lsn.unwrap_or(pg.write_lsn).0)
        } else {
            0
        },
    );
    gauge(
        &mut reg,
        "patroni_xlog_replayed_location",
        "Current location of the replayed Postgres transaction log, 0 if this node is not a replica",
        if replica {
            int(pg.replay_lsn.unwrap_or(pg.write_lsn).0)
        } else {
            0
        },
    );
    gauge(
        &mut reg,
        "patroni_xlog_paused",
        "Value is 1 if the Postgres xlog is paused, 0 otherwise",
        0,
    );
    gauge(
        &mut reg,
        "patroni_postgres_streaming",
        "Value is 1 if Postgres is streaming, 0 otherwise",
        flag(replica && pg.streaming),
    );
    gauge(
        &mut reg,
        "patroni_postgres_in_archive_recovery",
        "Value is 1 if Postgres is replicating from archive, 0 otherwise",
        flag(replica && !pg.streaming),
    );
    gauge(
        &mut reg,
        "patroni_postgres_server_version",
        "Version of Postgres (if running), 0 otherwise",
        if running {
            i64::from(pg.server_version_num)
        } else {
            0
        },
    );
    gauge(
        &mut reg,
        "patroni_cluster_unlocked",
        "Value is 1 if the cluster is unlocked, 0 if locked",
        flag(cluster.holder().is_none()),
    );
    gauge(
        &mut reg,
        "patroni_failsafe_mode_is_active",
        "Value is 1 if failsafe mode is active, 0 if inactive",
        0,
    );
    gauge(
        &mut reg,
        "patroni_postgres_timeline",
        "Postgres timeline of this node (if running), 0 otherwise",
        if running { i64::from(pg.timeline.0) } else { 0 },
    );
    gauge(
        &mut reg,
        "patroni_dcs_last_seen",
        "Epoch timestamp when DCS was last contacted successfully by Patroni",
        if snap.consensus_ok {
            int(snap.loop_last_unix_ms / 1000)
        } else {
            0
        },
    );
    gauge(
        &mut reg,
        "patroni_pending_restart",
        "Value is 1 if the node needs a restart, 0 otherwise",
        flag(pg.pending_restart),
    );
    gauge(
        &mut reg,
        "patroni_is_paused",
        "Value is 1 if auto failover is disabled, 0 otherwise",
        flag(cluster.paused),
    );
    gauge(
        &mut reg,
        "patroni_postgres_state",
        "Numeric representation of Postgres state (5=running, 6=starting, 12=stopped)",
        postgres_state(snap),
    );
    gauge(
        &mut reg,
        "patroni_failover_priority",
        "Value is used to set the priority of this node during failover",
        i64::from(snap.tags.priority()),
    );

    // Ours.
    let build: Family<Vec<(String, String)>, Gauge> = Family::default();
    build
        .get_or_create(&vec![("version".to_owned(), VERSION.to_owned())])
        .set(1);
    reg.register("rale_build_info", "RALE version, as a label", build);
    gauge(
        &mut reg,
        "rale_lease_epoch",
        "Current primary lease epoch of the cluster",
        int(cluster.epoch().0),
    );
    gauge(
        &mut reg,
        "rale_lease_held",
        "Value is 1 while this node holds a valid primary lease",
        flag(snap.lease_epoch.is_some()),
    );
    gauge(
        &mut reg,
        "rale_consensus_term",
        "Current consensus term",
        int(snap.consensus_term),
    );
    gauge(
        &mut reg,
        "rale_consensus_leader",
        "Value is 1 if this node is the consensus leader, 0 otherwise",
        flag(snap.consensus_leader.as_ref() == Some(&snap.node)),
    );
    gauge(
        &mut reg,
        "rale_consensus_ok",
        "Value is 1 if the last consensus read succeeded",
        flag(snap.consensus_ok),
    );
    gauge(
        &mut reg,
        "rale_fence_open",
        "Value is 1 while the commit fence acknowledges WAL",
        flag(snap.fence_open),
    );
    let fence = crate::fence::view(snap);
    for (name, help, value) in [
        (
            "rale_fence_enabled",
            "Value is 1 if the dynamic configuration enables the commit fence",
            fence.enabled,
        ),
        (
            "rale_fence_active",
            "Value is 1 while this node runs the commit fence (a running primary)",
            fence.active,
        ),
        (
            "rale_fence_streaming",
            "Value is 1 while a fence replication session streams from the local server",
            fence.streaming,
        ),
        (
            "rale_fence_blocking",
            "Value is 1 while the server waits for the fence and the fence does not acknowledge new WAL",
            fence.blocking,
        ),
        (
            "rale_fence_waiting",
            "Value is 1 while WAL received by the fence waits for its acknowledgement",
            fence.waiting,
        ),
    ] {
        gauge(&mut reg, name, help, flag(value));
    }
    let deadline: Gauge<f64, AtomicU64> = Gauge::default();
    deadline.set(fence.deadline_remaining_ms.unwrap_or(0) as f64 / 1000.0);
    reg.register(
        "rale_fence_deadline_seconds",
        "Time left until the lease deadline after which the fence stops acknowledging (0 when closed)",
        deadline,
    );
    let sessions: Counter = Counter::default();
    sessions.inc_by(fence.sessions);
    reg.register(
        "rale_fence_sessions",
        "Fence replication sessions that reached streaming since the agent started",
        sessions,
    );
    gauge(
        &mut reg,
        "rale_config_version",
        "Version of the dynamic configuration",
        int(cluster.config_version),
    );
    gauge(
        &mut reg,
        "rale_members",
        "Members known to the cluster state",
        int(cluster.members.len() as u64),
    );
    let loop_seconds: Gauge<f64, AtomicU64> = Gauge::default();
    loop_seconds.set(snap.loop_duration_ms as f64 / 1000.0);
    reg.register(
        "rale_ha_loop_duration_seconds",
        "Duration of the last HA loop iteration",
        loop_seconds,
    );
    let loop_age: Gauge<f64, AtomicU64> = Gauge::default();
    loop_age.set(now_unix_ms.saturating_sub(snap.loop_last_unix_ms) as f64 / 1000.0);
    reg.register(
        "rale_ha_loop_age_seconds",
        "Time since the last HA loop iteration ended",
        loop_age,
    );

    let count =
        |kind: HistoryKind| cluster.history.iter().filter(|e| e.kind == kind).count() as u64;
    let failovers: Counter = Counter::default();
    failovers.inc_by(count(HistoryKind::Failover));
    reg.register(
        "rale_failovers",
        "Failovers in the recorded cluster history",
        failovers,
    );
    let switchovers: Counter = Counter::default();
    switchovers.inc_by(count(HistoryKind::Switchover));
    reg.register(
        "rale_switchovers",
        "Switchovers in the recorded cluster history",
        switchovers,
    );

    let lag: Family<Vec<(String, String)>, Gauge> = Family::default();
    if let Some(primary_lsn) = cluster
        .holder()
        .and_then(|h| cluster.members.get(h))
        .map(|m| m.lsn)
    {
        for m in cluster.members.values() {
            if cluster.holder() != Some(&m.node) && m.running {
                lag.get_or_create(&vec![("member".to_owned(), m.node.to_string())])
                    .set(int(primary_lsn.bytes_after(m.lsn)));
            }
        }
    }
    reg.register(
        "rale_replication_lag_bytes",
        "Bytes each running replica is behind the primary, as published",
        lag,
    );
    let own: Gauge = Gauge::default();
    own.set(own_lag_bytes(snap, cluster).map(int).unwrap_or(0));
    reg.register(
        "rale_replay_lag_bytes",
        "Bytes this replica has replayed behind the primary (0 on the primary)",
        own,
    );

    let sync_cfg = &cluster.config.synchronous;
    gauge(
        &mut reg,
        "rale_synchronous_mode",
        "Synchronous replication mode of the dynamic configuration (0 off, 1 on, 2 quorum)",
        match sync_cfg.mode {
            rale_sync::SyncMode::Off => 0,
            rale_sync::SyncMode::On => 1,
            rale_sync::SyncMode::Quorum => 2,
        },
    );
    gauge(
        &mut reg,
        "rale_synchronous_strict",
        "Value is 1 if synchronous mode is strict (writes block rather than fall back to asynchronous)",
        flag(sync_cfg.mode != rale_sync::SyncMode::Off && sync_cfg.strict),
    );
    gauge(
        &mut reg,
        "rale_synchronous_standbys_wanted",
        "Synchronous standbys wanted (0 when synchronous mode is off)",
        if sync_cfg.mode == rale_sync::SyncMode::Off {
            0
        } else {
            i64::from(sync_cfg.node_count)
        },
    );
    if let Some(view) = extras.workload {
        crate::workload::render::register(&mut reg, view, now_unix_ms);
    }
    if let Some(jobs) = extras.backup_jobs {
        backup_metrics(&mut reg, jobs);
    }

    let mut text = String::new();
    if encode(&mut text, &reg).is_err() {
        return String::new();
    }
    to_prometheus_text(&text)
}

/// Prometheus metrics of this node.
#[utoipa::path(get, path = "/metrics", tag = "patroni",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(State(st): State<Arc<ApiState>>) -> Response {
    let snap = st.snap();
    let cluster = st.local_cluster(&snap);
    let workload = st.workload.as_ref().map(|w| w.borrow().clone());
    let jobs = st.backup.as_ref().map(|b| b.jobs().list());
    let extras = Extras {
        workload: workload.as_deref(),
        backup_jobs: jobs.as_deref(),
    };
    let text = render(&snap, &cluster, &st.scope, super::now_unix_ms(), extras);
    if text.is_empty() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be encoded",
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_get_their_total_names() {
        let om = "# HELP a_x Things.\n# TYPE a_x counter\na_x_total 3\n# HELP g G.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_x_total Things.\n# TYPE a_x_total counter\na_x_total 3\n# HELP g G.\n# TYPE g gauge\ng 1\n"
        );
    }
    #[test]
    fn fence_metrics_are_rendered() {
        let id = rale::decide::NodeIdentity {
            node: rale::NodeId::new("n1").expect("valid id"),
            api_url: "http://127.0.0.1:8008".into(),
            pg_host: "127.0.0.1".into(),
            pg_port: 5432,
            tags: Default::default(),
        };
        let mut snap = crate::ha::initial_snapshot(&id);
        snap.pg.running = true;
        snap.pg.reachable = true;
        snap.pg.in_recovery = false;
        snap.pg.synchronous_standby_names = "FIRST 1 (rale_fence)".into();
        let cluster = ClusterState::default();
        let text = render(&snap, &cluster, "s", 0, Extras::default());
        for line in [
            "rale_fence_enabled{scope=\"s\",name=\"n1\"} 1",
            "rale_fence_active{scope=\"s\",name=\"n1\"} 1",
            // Named by the server, no fence streaming in this process: commits wait.
            "rale_fence_blocking{scope=\"s\",name=\"n1\"} 1",
            "rale_fence_deadline_seconds{scope=\"s\",name=\"n1\"} 0",
            "# TYPE rale_fence_sessions_total counter",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
