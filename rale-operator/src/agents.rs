//! What the agents say, and what the operator does with it.
//!
//! The operator asks one agent after another for `GET /cluster` (Patroni's shape) and
//! takes the first answer: the agents agree on the primary through Raft, so any member
//! that answers knows it. From that answer come the pods' role labels
//! ([`role_labels`]), which the `-rw` and `-ro` Services select on, and the status
//! ([`instance_statuses`]). [`plan_rollout`] decides the next step of a rolling update
//! (replicas first, then a switchover, then the old primary). The HTTP calls are in
//! [`AgentClient`]; everything else here is pure.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::crd::InstanceStatus;
use crate::labels::{ROLE_PRIMARY, ROLE_REPLICA};
use crate::{Error, Result};

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
        self.members.iter().find(|m| m.role == "leader" && is_up(&m.state))
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
    let mut outdated: Vec<&PodView> = pods.iter().filter(|p| !p.updated && p.name != primary).collect();
    outdated.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(p) = outdated.first() {
        return RolloutStep::DeleteReplica(p.name.clone());
    }
    // Only the primary is outdated.
    let mut candidates: Vec<&PodView> = pods.iter().filter(|p| p.updated && p.ready && p.name != primary).collect();
    candidates.sort_by(|a, b| a.name.cmp(&b.name));
    match candidates.first() {
        Some(c) => RolloutStep::Switchover {
            from: primary.to_string(),
            to: c.name.clone(),
        },
        None => RolloutStep::DeletePrimary(primary.to_string()),
    }
}

/// Calls to the agents' REST API.
#[derive(Clone, Debug)]
pub struct AgentClient {
    http: reqwest::Client,
    username: String,
    password: String,
}

impl AgentClient {
    /// A client authenticating as `username`; `ca_pem`: the private CA of the agents'
    /// certificates, when they use TLS.
    pub fn new(username: String, password: String, ca_pem: Option<&[u8]>) -> Result<Self> {
        let mut b = reqwest::Client::builder().timeout(Duration::from_secs(5));
        if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem).map_err(|e| Error::Agent {
                agent: "-".into(),
                message: format!("CA certificate: {e}"),
            })?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|e| Error::Agent {
            agent: "-".into(),
            message: e.to_string(),
        })?;
        Ok(AgentClient { http, username, password })
    }

    fn err(agent: &str, e: impl std::fmt::Display) -> Error {
        Error::Agent {
            agent: agent.to_string(),
            message: e.to_string(),
        }
    }

    /// `GET /cluster` from the first of `urls` that answers.
    pub async fn cluster(&self, urls: &[String]) -> Result<ClusterView> {
        let mut last = Error::Agent {
            agent: "-".into(),
            message: "no member to ask".into(),
        };
        for url in urls {
            let res = self
                .http
                .get(format!("{url}/cluster"))
                .basic_auth(&self.username, Some(&self.password))
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => match r.json::<ClusterView>().await {
                    Ok(v) => return Ok(v),
                    Err(e) => last = Self::err(url, e),
                },
                Ok(r) => last = Self::err(url, format!("GET /cluster: {}", r.status())),
                Err(e) => last = Self::err(url, e),
            }
        }
        Err(last)
    }

    /// `POST /switchover` to the agent at `url`: from `leader` to `candidate`.
    pub async fn switchover(&self, url: &str, leader: &str, candidate: &str) -> Result<()> {
        let r = self
            .http
            .post(format!("{url}/switchover"))
            .basic_auth(&self.username, Some(&self.password))
            .json(&serde_json::json!({"leader": leader, "candidate": candidate}))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| Self::err(url, e))?;
        if r.status().is_success() {
            Ok(())
        } else {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            Err(Self::err(url, format!("POST /switchover: {status}: {body}")))
        }
    }

    /// `PATCH /config` with the cluster-wide PostgreSQL parameters and synchronous
    /// settings (JSON merge: a `null` resets a key).
    pub async fn patch_config(&self, url: &str, patch: &serde_json::Value) -> Result<()> {
        let r = self
            .http
            .patch(format!("{url}/config"))
            .basic_auth(&self.username, Some(&self.password))
            .json(patch)
            .send()
            .await
            .map_err(|e| Self::err(url, e))?;
        if r.status().is_success() {
            Ok(())
        } else {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            Err(Self::err(url, format!("PATCH /config: {status}: {body}")))
        }
    }

    /// `GET /config` (the cluster-wide dynamic configuration).
    pub async fn config(&self, url: &str) -> Result<serde_json::Value> {
        let r = self
            .http
            .get(format!("{url}/config"))
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await
            .map_err(|e| Self::err(url, e))?;
        if !r.status().is_success() {
            return Err(Self::err(url, format!("GET /config: {}", r.status())));
        }
        r.json().await.map_err(|e| Self::err(url, e))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(s.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["pg-0", "pg-1", "pg-2"]);
        assert_eq!(s[0].lag_bytes, Some(0));
        assert_eq!(s[2].lag_bytes, None);
        assert_eq!(s[1].timeline, Some(2));
    }

    fn pods(spec: &[(&str, bool, bool)]) -> Vec<PodView> {
        spec.iter()
            .map(|(n, u, r)| PodView { name: n.to_string(), updated: *u, ready: *r })
            .collect()
    }

    #[test]
    fn rollout_replicas_then_switchover_then_old_primary() {
        use RolloutStep::*;
        let p = Some("pg-0");
        assert_eq!(plan_rollout(&pods(&[("pg-0", false, true), ("pg-1", false, true), ("pg-2", false, true)]), p), DeleteReplica("pg-1".into()));
        assert!(matches!(plan_rollout(&pods(&[("pg-0", false, true), ("pg-1", true, false), ("pg-2", false, true)]), p), Wait(_)));
        assert_eq!(plan_rollout(&pods(&[("pg-0", false, true), ("pg-1", true, true), ("pg-2", false, true)]), p), DeleteReplica("pg-2".into()));
        assert_eq!(
            plan_rollout(&pods(&[("pg-0", false, true), ("pg-1", true, true), ("pg-2", true, true)]), p),
            Switchover { from: "pg-0".into(), to: "pg-1".into() }
        );
        // After the switchover pg-1 leads and pg-0, outdated, is a replica.
        assert_eq!(plan_rollout(&pods(&[("pg-0", false, true), ("pg-1", true, true), ("pg-2", true, true)]), Some("pg-1")), DeleteReplica("pg-0".into()));
        assert_eq!(plan_rollout(&pods(&[("pg-0", true, true), ("pg-1", true, true)]), Some("pg-1")), Done);
        assert!(matches!(plan_rollout(&pods(&[("pg-0", false, true)]), None), Wait(_)));
        assert_eq!(plan_rollout(&pods(&[("pg-0", false, true)]), Some("pg-0")), DeletePrimary("pg-0".into()));
    }

    #[test]
    fn parameters_patch_sets_changes_and_resets_removals() {
        let cur = BTreeMap::from([("work_mem".to_string(), "4MB".to_string()), ("a".to_string(), "1".to_string())]);
        let des = BTreeMap::from([("work_mem".to_string(), "8MB".to_string()), ("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())]);
        let p = parameters_patch(&cur, &des).expect("differs");
        assert_eq!(p, serde_json::json!({"postgresql_parameters": {"work_mem": "8MB", "b": "2"}}));
        let p = parameters_patch(&des, &cur).expect("differs");
        assert_eq!(p["postgresql_parameters"]["b"], serde_json::Value::Null);
        assert!(parameters_patch(&cur, &cur).is_none());
    }
}
