//! `GET /api/v1/cluster/metrics`: the cluster-wide summary in JSON ([`ClusterMetrics`]),
//! from the replicated state and the answering node's last workload sample. Like
//! `GET /metrics`, it runs no SQL: the workload collector ([`crate::workload`]) did.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use rale::state::HistoryKind;
use rale::{ClusterState, Role};

use super::ApiState;
use super::types::{ClusterMetrics, SlotUsage, StandbyLag, WorkloadSummary};
use crate::snapshot::NodeSnapshot;
use crate::workload::{WorkloadSample, WorkloadView};

/// The summary of one workload sample.
pub fn summarize(s: &WorkloadSample) -> WorkloadSummary {
    let mut by_state = BTreeMap::new();
    for c in &s.connections {
        *by_state.entry(c.state.clone()).or_insert(0) += c.count;
    }
    let x = &s.xmin_age;
    WorkloadSummary {
        collected_unix_ms: s.collected_unix_ms,
        collect_duration_ms: s.duration_ms,
        in_recovery: s.in_recovery,
        connections: s.connections_total(),
        max_connections: s.max_connections,
        connections_used_ratio: s.connections_used_ratio(),
        connections_by_state: by_state,
        xact_commit: s.databases.iter().map(|d| d.xact_commit).sum(),
        xact_rollback: s.databases.iter().map(|d| d.xact_rollback).sum(),
        databases: s.databases.len(),
        database_size_bytes: s.databases.iter().map(|d| d.size_bytes).sum(),
        wal_bytes: s.wal_bytes,
        wal_size_bytes: s.wal_size_bytes,
        checkpoints: s.checkpoints.timed + s.checkpoints.requested,
        conflicts: s.databases.iter().map(|d| d.conflicts).sum(),
        oldest_xact_age_seconds: s.oldest_xact_age_seconds,
        oldest_xmin_age: x.backend.max(x.slot).max(x.slot_catalog).max(x.prepared),
        standbys: s
            .standbys
            .iter()
            .map(|st| StandbyLag {
                name: st.application_name.clone(),
                state: st.state.clone(),
                sync_state: st.sync_state.clone(),
                write_lag_bytes: st.write_lag_bytes,
                flush_lag_bytes: st.flush_lag_bytes,
                replay_lag_bytes: st.replay_lag_bytes,
                write_lag_seconds: st.write_lag_seconds,
                flush_lag_seconds: st.flush_lag_seconds,
                replay_lag_seconds: st.replay_lag_seconds,
            })
            .collect(),
        slots: s
            .slots
            .iter()
            .map(|sl| SlotUsage {
                name: sl.slot_name.clone(),
                slot_type: sl.slot_type.clone(),
                active: sl.active,
                retained_wal_bytes: sl.retained_wal_bytes,
            })
            .collect(),
    }
}

/// The summary for this node's snapshot, cluster state and workload view.
pub fn cluster_metrics(
    snap: &NodeSnapshot,
    cluster: &ClusterState,
    workload: Option<&WorkloadView>,
) -> ClusterMetrics {
    let holder = cluster.holder();
    let primary_lsn = holder.and_then(|h| cluster.members.get(h)).map(|m| m.lsn);
    let mut roles = BTreeMap::new();
    let mut lag = BTreeMap::new();
    for m in cluster.members.values() {
        let role = if !m.running {
            "stopped"
        } else if holder == Some(&m.node) && m.role == Role::Primary {
            "primary"
        } else {
            "replica"
        };
        roles.insert(m.node.to_string(), role.to_owned());
        if let (Some(p), true) = (primary_lsn, m.running && holder != Some(&m.node)) {
            lag.insert(m.node.to_string(), p.bytes_after(m.lsn));
        }
    }
    let count =
        |kind: HistoryKind| cluster.history.iter().filter(|e| e.kind == kind).count() as u64;
    ClusterMetrics {
        node: snap.node.to_string(),
        leader: holder.map(|h| h.to_string()),
        lease_epoch: cluster.epoch().0,
        consensus_term: snap.consensus_term,
        consensus_ok: snap.consensus_ok,
        paused: cluster.paused,
        members_total: cluster.members.len(),
        members_running: cluster.members.values().filter(|m| m.running).count(),
        roles,
        replication_lag_bytes: lag,
        failovers_total: count(HistoryKind::Failover),
        switchovers_total: count(HistoryKind::Switchover),
        workload: workload.and_then(|w| w.sample.as_deref()).map(summarize),
        workload_error: workload.and_then(|w| w.last_error.clone()),
    }
}

/// The cluster-wide summary: roles, lease, consensus, failovers, lag, and this node's
/// workload (on the primary: every standby's lag as the primary measures it).
#[utoipa::path(get, path = "/api/v1/cluster/metrics", tag = "cluster",
    responses((status = 200, description = "Cluster-wide metrics summary", body = ClusterMetrics)))]
pub(crate) async fn get(State(st): State<Arc<ApiState>>) -> Json<ClusterMetrics> {
    let snap = st.snap();
    let cluster = st.local_cluster(&snap);
    let workload = st.workload.as_ref().map(|w| w.borrow().clone());
    Json(cluster_metrics(&snap, &cluster, workload.as_deref()))
}
