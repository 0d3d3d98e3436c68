//! Describes this node and the cluster in the API's bodies (node status, members,
//! cluster status and health, history, synchronous replication), from the node snapshot
//! and the cluster state (pure functions).

use rale::state::{HistoryEntry, HistoryKind};
use rale::status::{DataDirState, MemberStatus, ReplicaConnection};
use rale::{ClusterState, Role};

use super::health::{primary_lsn, replay_lag_bytes};
use super::sync_role::{SyncRole, sync_role};
use super::types::*;
use crate::snapshot::NodeSnapshot;

/// RALE's version, reported as Patroni's `patroni.version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Unix milliseconds as ISO 8601 (UTC), e.g. `2026-11-22T01:44:50.281+00:00`.
pub fn iso8601(unix_ms: u64) -> String {
    let ms = i64::try_from(unix_ms).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, false))
        .unwrap_or_else(|| unix_ms.to_string())
}

fn replication_info(r: &ReplicaConnection) -> ReplicationInfo {
    ReplicationInfo {
        application_name: r.application_name.clone(),
        state: r.state.clone(),
        sync_state: r.sync_state.clone(),
        flush_lsn: r.flush_lsn.map(|l| l.to_string()),
        replay_lsn: r.replay_lsn.map(|l| l.to_string()),
    }
}

fn system_identifier(snap: &NodeSnapshot, cluster: &ClusterState) -> Option<String> {
    match snap.pg.data {
        DataDirState::Initialized { system_id } => Some(system_id.to_string()),
        DataDirState::Empty => cluster
            .bootstrap
            .as_ref()
            .and_then(|b| b.system_id)
            .map(|id| id.to_string()),
    }
}

/// This node's status in Patroni's `/patroni` shape, plus ours.
pub fn node_status(snap: &NodeSnapshot, cluster: &ClusterState, scope: &str) -> NodeStatus {
    let pg = &snap.pg;
    let running = pg.running && pg.reachable;
    let state = match (pg.running, pg.reachable, pg.data) {
        (_, _, DataDirState::Empty) if !pg.running => "uninitialized",
        (true, true, _) => "running",
        (true, false, _) => "starting",
        (false, _, _) => "stopped",
    };
    let role = match pg.role() {
        Role::Primary => "primary",
        Role::Replica => "replica",
        Role::Unknown if snap.lease_epoch.is_some() => "primary",
        Role::Unknown if matches!(pg.data, DataDirState::Empty) => "uninitialized",
        Role::Unknown => "replica",
    };
    let is_primary = running && pg.role() == Role::Primary;
    let xlog = if !running {
        Xlog::default()
    } else if is_primary {
        Xlog {
            location: Some(pg.write_lsn.0),
            ..Xlog::default()
        }
    } else {
        Xlog {
            received_location: Some(pg.receive_lsn.unwrap_or(pg.write_lsn).0),
            replayed_location: Some(pg.replay_lsn.unwrap_or(pg.write_lsn).0),
            paused: Some(false),
            ..Xlog::default()
        }
    };
    let replication_state = (running && !is_primary).then(|| {
        if pg.streaming {
            "streaming".to_owned()
        } else {
            "in archive recovery".to_owned()
        }
    });
    let sync = sync_role(cluster, &snap.node);
    NodeStatus {
        state: state.into(),
        role: role.into(),
        server_version: pg.server_version_num,
        xlog,
        timeline: pg.timeline.0,
        replication: if is_primary {
            pg.replicas.iter().map(replication_info).collect()
        } else {
            Vec::new()
        },
        replication_state,
        cluster_unlocked: cluster.holder().is_none(),
        dcs_last_seen: snap.consensus_ok.then_some(snap.loop_last_unix_ms / 1000),
        database_system_identifier: system_identifier(snap, cluster),
        patroni: PatroniInfo {
            version: VERSION.into(),
            scope: scope.into(),
            name: snap.node.to_string(),
        },
        tags: snap.tags.clone(),
        pending_restart: pg.pending_restart,
        pause: cluster.paused,
        sync_standby: sync == SyncRole::Sync,
        quorum_standby: sync == SyncRole::Quorum,
        lease_epoch: snap.lease_epoch.map(|e| e.0),
        cluster_epoch: cluster.epoch().0,
        fence_open: snap.fence_open,
        fence: Some(crate::fence::view(snap)),
        consensus_ok: snap.consensus_ok,
        last_decision: snap.last_decision.clone(),
    }
}

fn cluster_role(cluster: &ClusterState, m: &MemberStatus) -> &'static str {
    if cluster.holder() == Some(&m.node) {
        return "leader";
    }
    match sync_role(cluster, &m.node) {
        SyncRole::Sync => "sync_standby",
        SyncRole::Quorum => "quorum_standby",
        SyncRole::Async => "replica",
    }
}

/// A member's state as published, or `unknown` when its agent has not published for
/// twice `member_ttl` (by wall clocks: display only), since then nobody knows.
fn member_state(cluster: &ClusterState, m: &MemberStatus) -> &'static str {
    let stale_ms = 2 * u64::try_from(cluster.config.member_ttl.as_millis()).unwrap_or(u64::MAX);
    if cluster
        .members_seen_unix_ms
        .get(&m.node)
        .is_some_and(|seen| super::now_unix_ms().saturating_sub(*seen) > stale_ms)
    {
        return "unknown";
    }
    match (m.running, m.role) {
        (false, _) => "stopped",
        (true, Role::Replica) if m.streaming => "streaming",
        (true, _) => "running",
    }
}

/// A member's lags behind the primary: (furthest, received, replayed). `None` for the
/// primary itself; `Unknown` when there is no primary position or the member is down.
fn member_lags(cluster: &ClusterState, m: &MemberStatus) -> Option<(Lag, Lag, Lag)> {
    if cluster.holder() == Some(&m.node) {
        return None;
    }
    let primary = cluster
        .holder()
        .and_then(|h| cluster.members.get(h))
        .map(|p| p.lsn);
    let lag = |l: Option<rale::Lsn>| match (primary, l, m.running) {
        (Some(p), Some(l), true) => Lag::Bytes(p.bytes_after(l)),
        _ => Lag::Unknown,
    };
    Some((lag(Some(m.lsn)), lag(m.receive_lsn), lag(m.replay_lsn)))
}

fn tags_if_set(tags: &rale::Tags) -> Option<rale::Tags> {
    (tags != &rale::Tags::default()).then(|| tags.clone())
}

/// The cluster in Patroni's `/cluster` shape.
pub fn patroni_cluster(cluster: &ClusterState, scope: &str) -> PatroniCluster {
    let members = cluster
        .members
        .values()
        .map(|m| {
            let lags = member_lags(cluster, m);
            PatroniMember {
                name: m.node.to_string(),
                role: cluster_role(cluster, m).into(),
                state: member_state(cluster, m).into(),
                api_url: format!("{}/patroni", m.api_url.trim_end_matches('/')),
                host: m.pg_host.clone(),
                port: m.pg_port,
                timeline: m.timeline.0,
                receive_lag: lags.map(|l| l.1),
                receive_lsn: lags.and(m.receive_lsn).map(|l| l.to_string()),
                replay_lag: lags.map(|l| l.2),
                replay_lsn: lags.and(m.replay_lsn).map(|l| l.to_string()),
                lag: lags.map(|l| l.0),
                lsn: lags.map(|_| m.lsn.to_string()),
                tags: tags_if_set(&m.tags),
                pending_restart: m.pending_restart,
            }
        })
        .collect();
    PatroniCluster {
        members,
        scope: scope.into(),
        pause: cluster.paused,
        scheduled_switchover: cluster.switchover.as_ref().map(|s| ScheduledSwitchover {
            at: s.scheduled_at_unix_ms.map(iso8601),
            from: s.from.as_ref().map(|n| n.to_string()),
            to: s.to.as_ref().map(|n| n.to_string()),
        }),
        fence: cluster.config.fence,
    }
}

/// A member as our management API shows it.
pub fn member_view(cluster: &ClusterState, m: &MemberStatus) -> MemberView {
    MemberView {
        name: m.node.to_string(),
        role: cluster_role(cluster, m).into(),
        pg_role: m.role.to_string(),
        state: member_state(cluster, m).into(),
        running: m.running,
        streaming: m.streaming,
        api_url: m.api_url.clone(),
        host: m.pg_host.clone(),
        port: m.pg_port,
        timeline: m.timeline.0,
        lsn: m.lsn.to_string(),
        receive_lsn: m.receive_lsn.map(|l| l.to_string()),
        replay_lsn: m.replay_lsn.map(|l| l.to_string()),
        lag_bytes: member_lags(cluster, m).and_then(|l| l.0.bytes()),
        upstream: m.upstream.as_ref().map(|n| n.to_string()),
        tags: m.tags.clone(),
        pending_restart: m.pending_restart,
        server_version: m.server_version_num,
        heartbeat: m.heartbeat,
        detached: m.detached.is_some(),
    }
}

/// Synchronous replication as recorded and configured, with this node's own view when it
/// is the primary.
pub fn sync_view(snap: &NodeSnapshot, cluster: &ClusterState) -> SyncView {
    let c = &cluster.config.synchronous;
    let local_primary = snap.is_primary();
    SyncView {
        mode: c.mode.to_string(),
        node_count: c.node_count,
        strict: c.strict,
        commit_level: c.commit_level.to_string(),
        epoch: cluster.sync.epoch.0,
        standbys: cluster
            .sync
            .standbys
            .iter()
            .map(|n| n.to_string())
            .collect(),
        quorum: cluster.sync.quorum,
        synchronous_standby_names: local_primary.then(|| snap.pg.synchronous_standby_names.clone()),
        replication: if local_primary {
            snap.pg.replicas.iter().map(replication_info).collect()
        } else {
            Vec::new()
        },
    }
}

/// Inputs of [`cluster_status`] that are not in the cluster state.
pub struct ConsensusFacts {
    /// `Consensus::has_majority()` now.
    pub has_majority: bool,
}

/// `GET /api/v1/cluster/status`.
pub fn cluster_status(
    snap: &NodeSnapshot,
    cluster: &ClusterState,
    scope: &str,
    facts: ConsensusFacts,
) -> ClusterStatus {
    ClusterStatus {
        scope: scope.into(),
        this_node: snap.node.to_string(),
        leader: cluster.holder().map(|n| n.to_string()),
        epoch: cluster.epoch().0,
        lease: cluster.lease.as_ref().map(|l| LeaseView {
            holder: l.holder.as_ref().map(|n| n.to_string()),
            epoch: l.epoch.0,
            renewals: l.renewals,
            successor: l.successor.as_ref().map(|n| n.to_string()),
        }),
        members: cluster
            .members
            .values()
            .map(|m| member_view(cluster, m))
            .collect(),
        sync: sync_view(snap, cluster),
        paused: cluster.paused,
        switchover: cluster.switchover.as_ref().map(|s| SwitchoverView {
            from: s.from.as_ref().map(|n| n.to_string()),
            to: s.to.as_ref().map(|n| n.to_string()),
            scheduled_at: s.scheduled_at_unix_ms.map(iso8601),
            requested_by: s.requested_by.clone(),
        }),
        config_version: cluster.config_version,
        revision: cluster.revision,
        system_identifier: system_identifier(snap, cluster),
        consensus: ConsensusView {
            ok: snap.consensus_ok,
            has_majority: facts.has_majority,
            term: snap.consensus_term,
            leader: snap.consensus_leader.as_ref().map(|n| n.to_string()),
        },
        slots: None,
    }
}

/// `GET /api/v1/cluster/health`: healthy when there is a running primary, every member
/// runs, every replica streams and consensus is reachable.
pub fn cluster_health(snap: &NodeSnapshot, cluster: &ClusterState) -> ClusterHealth {
    let mut problems = Vec::new();
    let leader = cluster.holder().cloned();
    let primary_running = leader
        .as_ref()
        .and_then(|h| cluster.members.get(h))
        .map(|m| m.running && m.role == Role::Primary)
        .unwrap_or(false);
    match &leader {
        None => problems.push("no member holds the primary lease".to_owned()),
        Some(h) if !primary_running => {
            problems.push(format!("primary {h} does not report a running primary"))
        }
        Some(_) => {}
    }
    let mut running = 0;
    let mut streaming = 0;
    for m in cluster.members.values() {
        if m.running {
            running += 1;
        } else {
            problems.push(format!("{} is not running", m.node));
        }
        if leader.as_ref() != Some(&m.node) && m.running {
            if m.streaming {
                streaming += 1;
            } else {
                problems.push(format!("{} is not streaming", m.node));
            }
        }
    }
    if !snap.consensus_ok {
        problems.push(format!("{} cannot reach a consensus majority", snap.node));
    }
    let status = if !primary_running {
        "unavailable"
    } else if problems.is_empty() {
        "healthy"
    } else {
        "degraded"
    };
    ClusterHealth {
        status: status.into(),
        healthy: status == "healthy",
        leader: leader.map(|n| n.to_string()),
        members_total: cluster.members.len(),
        members_running: running,
        replicas_streaming: streaming,
        consensus_ok: snap.consensus_ok,
        paused: cluster.paused,
        problems,
    }
}

fn kind_name(kind: HistoryKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{kind:?}"))
}

/// Our full history entry.
pub fn history_entry(e: &HistoryEntry) -> HistoryEntryView {
    HistoryEntryView {
        seq: e.seq,
        ts: iso8601(e.ts_unix_ms),
        ts_unix_ms: e.ts_unix_ms,
        kind: kind_name(e.kind),
        node: e.node.as_ref().map(|n| n.to_string()),
        epoch: e.epoch.0,
        timeline: e.timeline.0,
        lsn: e.lsn.to_string(),
        actor: e.actor.clone(),
        reason: e.reason.clone(),
    }
}

/// Patroni's history: one row per change of primary (failover or switchover).
pub fn patroni_history(cluster: &ClusterState) -> Vec<PatroniHistoryEntry> {
    cluster
        .history
        .iter()
        .filter(|e| matches!(e.kind, HistoryKind::Failover | HistoryKind::Switchover))
        .map(|e| {
            PatroniHistoryEntry(
                e.timeline.0,
                e.lsn.0,
                e.reason.clone(),
                iso8601(e.ts_unix_ms),
                e.node.as_ref().map(|n| n.to_string()),
            )
        })
        .collect()
}

/// This replica's lag for metrics and status (`None` on the primary or when unknown).
pub fn own_lag_bytes(snap: &NodeSnapshot, cluster: &ClusterState) -> Option<u64> {
    if snap.is_primary() {
        return None;
    }
    replay_lag_bytes(snap, cluster)
}

/// The cluster's last known primary position (re-exported for metrics).
pub fn cluster_primary_lsn(cluster: &ClusterState) -> Option<rale::Lsn> {
    primary_lsn(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_timestamps() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000+00:00");
        assert_eq!(iso8601(1_795_311_890_281), "2026-11-22T01:44:50.281+00:00");
    }

    #[test]
    fn a_member_that_stopped_publishing_is_unknown() {
        let node = rale::NodeId::new("n1").expect("valid id");
        let m = MemberStatus {
            node: node.clone(),
            api_url: "http://127.0.0.1:8008".into(),
            pg_host: "127.0.0.1".into(),
            pg_port: 5432,
            role: Role::Replica,
            running: true,
            timeline: rale::Timeline(1),
            lsn: rale::Lsn::ZERO,
            receive_lsn: None,
            replay_lsn: None,
            upstream: None,
            streaming: true,
            tags: Default::default(),
            detached: None,
            pending_restart: false,
            server_version_num: 150_000,
            system_id: None,
            logical_slots: Default::default(),
            heartbeat: 1,
        };
        let mut cluster = ClusterState::default();
        cluster.members.insert(node.clone(), m.clone());
        assert_eq!(
            member_state(&cluster, &m),
            "streaming",
            "never seen: as published"
        );
        let now = super::super::now_unix_ms();
        cluster.members_seen_unix_ms.insert(node.clone(), now);
        assert_eq!(member_state(&cluster, &m), "streaming", "fresh");
        cluster.members_seen_unix_ms.insert(node, now - 60_000);
        assert_eq!(
            member_state(&cluster, &m),
            "unknown",
            "a minute without publishing"
        );
    }
}
