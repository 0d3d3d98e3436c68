//! What the agents say, and what the operator does with it.
//!
//! The operator asks one agent after another for `GET /cluster` (Patroni's shape) and
//! takes the first answer: the agents agree on the primary through Raft, so any member
//! that answers knows it. From that answer come the pods' role labels
//! ([`role_labels`]), which the `-rw` and `-ro` Services select on, and the status
//! ([`instance_statuses`]). [`plan_rollout`] decides the next step of a rolling update
//! (replicas first, then a switchover, then the old primary), [`plan_scale`] the next
//! step of a change of `spec.instances`. The HTTP calls are in [`AgentClient`]
//! (`client.rs`); everything else here is pure.

mod client;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use client::{AgentClient, AgentRoute};

use crate::crd::InstanceStatus;
use crate::labels::{ROLE_PRIMARY, ROLE_REPLICA};

/// One member of `GET /cluster`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    /// Member name (the pod's name).
    pub name: String,
    /// `leader`, `sync_standby`, `quorum_standby` or `replica`.
    pub role: String,
    /// `running`, `streaming`, `stopped`, ….
    pub state: String,
    /// Timeline.
    #[serde(default)]
    pub timeline: Option<i64>,
    /// Bytes behind the primary, or `"unknown"`.
    #[serde(default)]
    pub lag: Option<serde_json::Value>,
    /// A setting waits for a restart.
    #[serde(default)]
    pub pending_restart: bool,
}

/// `GET /cluster` (the fields the operator uses).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    /// Members.
    pub members: Vec<MemberView>,
    /// Maintenance mode.
    #[serde(default)]
    pub pause: bool,
}

impl ClusterView {
    /// The member the agents report as leader, if any.
    pub fn primary(&self) -> Option<&MemberView> {
        self.members
            .iter()
            .find(|m| m.role == "leader" && is_up(&m.state))
    }
}

fn is_up(state: &str) -> bool {
    matches!(state, "running" | "streaming")
}

/// The role label each member's pod should carry: `primary` for the leader,
/// `replica` for a running standby; a member down (or not in the answer) gets no role
/// label, so no client Service routes to it.
pub fn role_labels(view: &ClusterView) -> BTreeMap<String, Option<&'static str>> {
    view.members
        .iter()
        .map(|m| {
            let role = if !is_up(&m.state) {
                None
            } else if m.role == "leader" {
                Some(ROLE_PRIMARY)
            } else {
                Some(ROLE_REPLICA)
            };
            (m.name.clone(), role)
        })
        .collect()
}

/// Each member as the status shows it.
pub fn instance_statuses(view: &ClusterView) -> Vec<InstanceStatus> {
    let mut out: Vec<InstanceStatus> = view
        .members
        .iter()
        .map(|m| InstanceStatus {
            name: m.name.clone(),
            role: m.role.clone(),
            state: m.state.clone(),
            lag_bytes: m
                .lag
                .as_ref()
                .and_then(|l| l.as_u64())
                .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            timeline: m.timeline,
            pending_restart: m.pending_restart,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A pod as the rolling update sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    /// Pod (member) name.
    pub name: String,
    /// It runs the StatefulSet's current template (`controller-revision-hash` equals
    /// the StatefulSet's `updateRevision`).
    pub updated: bool,
    /// The pod is Ready.
    pub ready: bool,
}

/// The next step of a rolling update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutStep {
    /// Nothing to do: every pod is up to date.
    Done,
    /// Wait: a pod is not ready, or there is no primary to reason about.
    Wait(String),
    /// Delete this replica's pod; the StatefulSet recreates it from the new template.
    DeleteReplica(String),
    /// Switch over from the outdated primary to an updated, ready replica.
    Switchover {
        /// Current primary.
        from: String,
        /// The replica to promote.
        to: String,
    },
    /// Delete the old primary's pod: it is a replica now.
    DeletePrimary(String),
}

/// Decides the next step of a rolling update, one pod at a time: outdated replicas
/// first (in name order), then a switchover to an updated ready replica, then the old
/// primary (only when it is the last member, as with one instance). Every step waits
/// for all pods to be ready.
pub fn plan_rollout(pods: &[PodView], primary: Option<&str>) -> RolloutStep {
    if pods.iter().all(|p| p.updated) {
        return RolloutStep::Done;
    }
    if let Some(p) = pods.iter().find(|p| !p.ready) {
        return RolloutStep::Wait(format!("pod {} is not ready", p.name));
    }
    let Some(primary) = primary else {
        return RolloutStep::Wait("no primary reported by the agents".into());
    };
    let mut outdated: Vec<&PodView> = pods
        .iter()
        .filter(|p| !p.updated && p.name != primary)
        .collect();
    outdated.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(p) = outdated.first() {
        return RolloutStep::DeleteReplica(p.name.clone());
    }
    // Only the primary is outdated.
    let mut candidates: Vec<&PodView> = pods
        .iter()
        .filter(|p| p.updated && p.ready && p.name != primary)
        .collect();
    candidates.sort_by(|a, b| a.name.cmp(&b.name));
    match candidates.first() {
        Some(c) => RolloutStep::Switchover {
            from: primary.to_string(),
            to: c.name.clone(),
        },
        None => RolloutStep::DeletePrimary(primary.to_string()),
    }
}

/// The consensus membership (`GET /api/v1/members`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersView {
    /// Voting members.
    pub voters: Vec<PeerView>,
    /// Members catching up before they vote.
    #[serde(default)]
    pub learners: Vec<PeerView>,
}

/// One consensus member.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// Member name.
    pub name: String,
    /// Raft id.
    pub raft_id: u64,
    /// Its agent's API.
    pub api_url: String,
}

impl MembersView {
    /// Every member, voters and learners.
    pub fn all(&self) -> impl Iterator<Item = &PeerView> {
        self.voters.iter().chain(self.learners.iter())
    }
}

/// The next step of a change of `spec.instances`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScaleStep {
    /// Nothing to do.
    Done,
    /// Wait (why).
    Wait(String),
    /// Set the StatefulSet's replicas: up, so that the new pods start and wait to be
    /// added (`join = true`); down, once no leaving member is the primary.
    SetReplicas(u32),
    /// `POST /api/v1/members` for a started pod that waits to join.
    AddMember {
        /// Member (pod) name.
        name: String,
        /// Its new Raft id.
        raft_id: u64,
    },
    /// The primary is among the leaving members: switch over to a staying one first.
    Switchover {
        /// Current primary.
        from: String,
        /// The staying replica to promote.
        to: String,
    },
    /// `DELETE /api/v1/members/NAME` for a member whose pod is gone.
    RemoveMember(String),
}

/// What [`plan_scale`] looks at.
#[derive(Clone, Debug)]
pub struct ScaleView<'a> {
    /// The cluster's name (pods are `<cluster>-<index>`).
    pub cluster: &'a str,
    /// `spec.instances`.
    pub want: u32,
    /// The StatefulSet's current replicas.
    pub replicas: u32,
    /// The consensus membership the agents report.
    pub members: &'a MembersView,
    /// The primary the agents report.
    pub primary: Option<&'a str>,
    /// Pods that exist, and those that are ready.
    pub pods: &'a [PodView],
    /// Raft ids of the members the files describe (joining ones included).
    pub topology: &'a crate::ramd_config::Topology,
}

/// Decides the next step of growing or shrinking a running cluster, through the
/// agents' membership API and never removing the primary:
///
/// - up: raise the StatefulSet's replicas (the new pods start with `join = true` and
///   wait), then add each started new member to the consensus;
/// - down: if the primary is leaving, switch over to a ready staying replica; then lower
///   the replicas (the leaving pods stop); then remove each leaving member whose pod is
///   gone (the agents refuse while its agent still reports, and the step is retried).
pub fn plan_scale(v: &ScaleView<'_>) -> ScaleStep {
    let name = |i: u32| crate::ramd_config::member_name(v.cluster, i);
    let staying: Vec<String> = (0..v.want).map(name).collect();
    if v.want > v.replicas {
        return ScaleStep::SetReplicas(v.want);
    }
    if v.want < v.replicas {
        if let Some(p) = v.primary.filter(|p| !staying.iter().any(|s| s == p)) {
            let mut ready: Vec<&PodView> = v
                .pods
                .iter()
                .filter(|pod| pod.ready && pod.name != p && staying.contains(&pod.name))
                .collect();
            ready.sort_by(|a, b| a.name.cmp(&b.name));
            return match ready.first() {
                Some(to) => ScaleStep::Switchover {
                    from: p.to_string(),
                    to: to.name.clone(),
                },
                None => ScaleStep::Wait(format!(
                    "primary {p} is leaving and no staying replica is ready"
                )),
            };
        }
        if v.primary.is_none() {
            return ScaleStep::Wait("no primary reported by the agents".into());
        }
        return ScaleStep::SetReplicas(v.want);
    }
    // Replicas as wanted: bring the consensus membership in step.
    let mut leaving: Vec<&PeerView> = v
        .members
        .all()
        .filter(|m| !staying.contains(&m.name))
        .collect();
    leaving.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(m) = leaving.first() {
        if v.pods.iter().any(|p| p.name == m.name) {
            return ScaleStep::Wait(format!("pod {} is still running", m.name));
        }
        return ScaleStep::RemoveMember(m.name.clone());
    }
    for i in 0..v.want {
        let n = name(i);
        if v.members.all().any(|m| m.name == n) || !v.topology.joining.contains(&i) {
            continue;
        }
        if !v.pods.iter().any(|p| p.name == n) {
            return ScaleStep::Wait(format!("pod {n} has not started"));
        }
        let Some(raft_id) = v.topology.raft_id(i) else {
            continue;
        };
        return ScaleStep::AddMember { name: n, raft_id };
    }
    ScaleStep::Done
}

/// The `PATCH /config` body that brings the cluster's dynamic `postgresql_parameters`
/// from `current` to `desired`: changed and new names with their values, removed names
/// as `null`. `None` when nothing differs.
pub fn parameters_patch(
    current: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> Option<serde_json::Value> {
    let mut m = serde_json::Map::new();
    for (k, v) in desired {
        if current.get(k) != Some(v) {
            m.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
    }
    for k in current.keys() {
        if !desired.contains_key(k) {
            m.insert(k.clone(), serde_json::Value::Null);
        }
    }
    (!m.is_empty()).then(|| serde_json::json!({ "postgresql_parameters": m }))
}

/// The `synchronous` part of a `PATCH /config` body that brings the cluster's dynamic
/// synchronous settings (`current`, the `synchronous` object of `GET /config`) to the
/// spec (`None`: `mode: off`). `None` when nothing differs.
pub fn synchronous_patch(
    current: &serde_json::Value,
    desired: Option<&crate::crd::SynchronousSpec>,
) -> Option<serde_json::Value> {
    let want = match desired {
        Some(s) => {
            serde_json::json!({"mode": s.mode.as_str(), "node_count": s.node_count, "strict": s.strict})
        }
        None => serde_json::json!({"mode": "off"}),
    };
    let mut m = serde_json::Map::new();
    for (k, v) in want.as_object().into_iter().flatten() {
        if current.get(k) != Some(v) {
            m.insert(k.clone(), v.clone());
        }
    }
    (!m.is_empty()).then(|| serde_json::json!({ "synchronous": m }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synchronous_patch_sends_only_differences() {
        use crate::crd::{SyncMode, SynchronousSpec};
        let cur = serde_json::json!({"mode": "on", "node_count": 1, "strict": false, "commit_level": "on"});
        let want = SynchronousSpec {
            mode: SyncMode::Quorum,
            node_count: 1,
            strict: true,
        };
        assert_eq!(
            synchronous_patch(&cur, Some(&want)),
            Some(serde_json::json!({"synchronous": {"mode": "quorum", "strict": true}}))
        );
        assert_eq!(
            synchronous_patch(&cur, None),
            Some(serde_json::json!({"synchronous": {"mode": "off"}}))
        );
        assert_eq!(
            synchronous_patch(&serde_json::json!({"mode": "off"}), None),
            None
        );
    }

    fn view() -> ClusterView {
        serde_json::from_value(serde_json::json!({
            "scope": "pg",
            "members": [
                {"name": "pg-1", "role": "leader", "state": "running", "api_url": "x", "host": "h", "port": 5432, "timeline": 2},
                {"name": "pg-0", "role": "sync_standby", "state": "streaming", "api_url": "x", "host": "h", "port": 5432, "timeline": 2, "lag": 0},
                {"name": "pg-2", "role": "replica", "state": "stopped", "api_url": "x", "host": "h", "port": 5432, "timeline": 1, "lag": "unknown"}
            ]
        }))
        .expect("Patroni /cluster shape")
    }

    #[test]
    fn labels_follow_the_reported_leader() {
        let v = view();
        assert_eq!(v.primary().map(|m| m.name.as_str()), Some("pg-1"));
        let l = role_labels(&v);
        assert_eq!(l["pg-1"], Some(ROLE_PRIMARY));
        assert_eq!(l["pg-0"], Some(ROLE_REPLICA));
        assert_eq!(l["pg-2"], None, "a stopped member gets no traffic");
    }

    #[test]
    fn statuses_are_sorted_with_lag_and_timeline() {
        let s = instance_statuses(&view());
        assert_eq!(
            s.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["pg-0", "pg-1", "pg-2"]
        );
        assert_eq!(s[0].lag_bytes, Some(0));
        assert_eq!(s[2].lag_bytes, None);
        assert_eq!(s[1].timeline, Some(2));
    }

    fn pods(spec: &[(&str, bool, bool)]) -> Vec<PodView> {
        spec.iter()
            .map(|(n, u, r)| PodView {
                name: n.to_string(),
                updated: *u,
                ready: *r,
            })
            .collect()
    }

    #[test]
    fn rollout_replicas_then_switchover_then_old_primary() {
        use RolloutStep::*;
        let p = Some("pg-0");
        assert_eq!(
            plan_rollout(
                &pods(&[
                    ("pg-0", false, true),
                    ("pg-1", false, true),
                    ("pg-2", false, true)
                ]),
                p
            ),
            DeleteReplica("pg-1".into())
        );
        assert!(matches!(
            plan_rollout(
                &pods(&[
                    ("pg-0", false, true),
                    ("pg-1", true, false),
                    ("pg-2", false, true)
                ]),
                p
            ),
            Wait(_)
        ));
        assert_eq!(
            plan_rollout(
                &pods(&[
                    ("pg-0", false, true),
                    ("pg-1", true, true),
                    ("pg-2", false, true)
                ]),
                p
            ),
            DeleteReplica("pg-2".into())
        );
        assert_eq!(
            plan_rollout(
                &pods(&[
                    ("pg-0", false, true),
                    ("pg-1", true, true),
                    ("pg-2", true, true)
                ]),
                p
            ),
            Switchover {
                from: "pg-0".into(),
                to: "pg-1".into()
            }
        );
        // After the switchover pg-1 leads and pg-0, outdated, is a replica.
        assert_eq!(
            plan_rollout(
                &pods(&[
                    ("pg-0", false, true),
                    ("pg-1", true, true),
                    ("pg-2", true, true)
                ]),
                Some("pg-1")
            ),
            DeleteReplica("pg-0".into())
        );
        assert_eq!(
            plan_rollout(
                &pods(&[("pg-0", true, true), ("pg-1", true, true)]),
                Some("pg-1")
            ),
            Done
        );
        assert!(matches!(
            plan_rollout(&pods(&[("pg-0", false, true)]), None),
            Wait(_)
        ));
        assert_eq!(
            plan_rollout(&pods(&[("pg-0", false, true)]), Some("pg-0")),
            DeletePrimary("pg-0".into())
        );
    }

    fn members(names: &[(&str, u64)]) -> MembersView {
        MembersView {
            voters: names
                .iter()
                .map(|(n, id)| PeerView {
                    name: n.to_string(),
                    raft_id: *id,
                    api_url: String::new(),
                })
                .collect(),
            learners: Vec::new(),
        }
    }

    #[test]
    fn scale_up_starts_pods_then_adds_them() {
        use crate::ramd_config::Topology;
        let topo = Topology::grow(5, &BTreeMap::from([(0, 1), (1, 2), (2, 3)]), 4, 3);
        let v = |replicas, pods: &[PodView], m: &MembersView| {
            plan_scale(&ScaleView {
                cluster: "pg",
                want: 5,
                replicas,
                members: m,
                primary: Some("pg-0"),
                pods,
                topology: &topo,
            })
        };
        let m3 = members(&[("pg-0", 1), ("pg-1", 2), ("pg-2", 3)]);
        let three = pods(&[
            ("pg-0", true, true),
            ("pg-1", true, true),
            ("pg-2", true, true),
        ]);
        assert_eq!(v(3, &three, &m3), ScaleStep::SetReplicas(5));
        assert!(
            matches!(v(5, &three, &m3), ScaleStep::Wait(_)),
            "new pods not started"
        );
        let five = pods(&[
            ("pg-0", true, true),
            ("pg-1", true, true),
            ("pg-2", true, true),
            ("pg-3", true, false),
            ("pg-4", true, false),
        ]);
        assert_eq!(
            v(5, &five, &m3),
            ScaleStep::AddMember {
                name: "pg-3".into(),
                raft_id: 4
            }
        );
        let m4 = members(&[("pg-0", 1), ("pg-1", 2), ("pg-2", 3), ("pg-3", 4)]);
        assert_eq!(
            v(5, &five, &m4),
            ScaleStep::AddMember {
                name: "pg-4".into(),
                raft_id: 5
            }
        );
        let m5 = members(&[
            ("pg-0", 1),
            ("pg-1", 2),
            ("pg-2", 3),
            ("pg-3", 4),
            ("pg-4", 5),
        ]);
        assert_eq!(v(5, &five, &m5), ScaleStep::Done);
    }

    #[test]
    fn scale_down_never_removes_the_primary() {
        use crate::ramd_config::Topology;
        let topo = Topology::initial(3);
        let m = members(&[("pg-0", 1), ("pg-1", 2), ("pg-2", 3)]);
        let all = pods(&[
            ("pg-0", true, true),
            ("pg-1", true, true),
            ("pg-2", true, true),
        ]);
        let v = |primary, pods: &[PodView], replicas| {
            plan_scale(&ScaleView {
                cluster: "pg",
                want: 1,
                replicas,
                members: &m,
                primary,
                pods,
                topology: &topo,
            })
        };
        // The primary pg-2 leaves: switch over to the staying pg-0 first.
        assert_eq!(
            v(Some("pg-2"), &all, 3),
            ScaleStep::Switchover {
                from: "pg-2".into(),
                to: "pg-0".into()
            }
        );
        assert!(matches!(
            v(
                Some("pg-2"),
                &pods(&[
                    ("pg-0", true, false),
                    ("pg-1", true, true),
                    ("pg-2", true, true)
                ]),
                3
            ),
            ScaleStep::Wait(_)
        ));
        assert!(matches!(v(None, &all, 3), ScaleStep::Wait(_)));
        // The primary stays: stop the leaving pods, then remove them one by one.
        assert_eq!(v(Some("pg-0"), &all, 3), ScaleStep::SetReplicas(1));
        assert!(
            matches!(v(Some("pg-0"), &all, 1), ScaleStep::Wait(_)),
            "pods still running"
        );
        let one = pods(&[("pg-0", true, true)]);
        assert_eq!(
            v(Some("pg-0"), &one, 1),
            ScaleStep::RemoveMember("pg-1".into())
        );
        let m1 = members(&[("pg-0", 1)]);
        assert_eq!(
            plan_scale(&ScaleView {
                cluster: "pg",
                want: 1,
                replicas: 1,
                members: &m1,
                primary: Some("pg-0"),
                pods: &one,
                topology: &Topology::initial(1)
            }),
            ScaleStep::Done
        );
    }

    #[test]
    fn parameters_patch_sets_changes_and_resets_removals() {
        let cur = BTreeMap::from([
            ("work_mem".to_string(), "4MB".to_string()),
            ("a".to_string(), "1".to_string()),
        ]);
        let des = BTreeMap::from([
            ("work_mem".to_string(), "8MB".to_string()),
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string()),
        ]);
        let p = parameters_patch(&cur, &des).expect("differs");
        assert_eq!(
            p,
            serde_json::json!({"postgresql_parameters": {"work_mem": "8MB", "b": "2"}})
        );
        let p = parameters_patch(&des, &cur).expect("differs");
        assert_eq!(p["postgresql_parameters"]["b"], serde_json::Value::Null);
        assert!(parameters_patch(&cur, &cur).is_none());
    }
}
