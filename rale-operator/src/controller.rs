//! The reconcile loop: kube-runtime's `Controller` over `RaleCluster`, applying the
//! desired objects of [`crate::resources`] with server-side apply, labelling pods with
//! the role the agents report, rolling pods after a template change, and writing the
//! status.
//!
//! One reconcile, in order (each step idempotent):
//! 1. parameters checked ([`crate::params`]); a refusal sets `ParametersValid=False`
//!    and `phase: Failed`, and nothing else changes;
//! 2. `spec.paused`: only the role labels and the status;
//! 3. Secrets created when absent (generated passwords are never overwritten);
//! 4. ConfigMap, headless and client Services, PodDisruptionBudget, StatefulSet applied
//!    (disabled Services and PDB deleted),
//!    with the StatefulSet's replicas as [`crate::agents::plan_scale`] says;
//! 5. one step of a change of `spec.instances` through the agents' membership API
//!    (`POST`/`DELETE /api/v1/members`, a switchover first when the primary leaves);
//! 6. `GET /cluster` from the agents; each pod's `rale.dev/role` label set to match;
//! 7. the cluster-wide `postgresql_parameters` and `synchronous` settings brought to the
//!    spec with `PATCH /config` on the primary's agent;
//! 8. one step of a rolling update ([`crate::agents::plan_rollout`]) when not scaling;
//! 9. status written (`phase`, `currentPrimary`, instances, conditions, Raft ids,
//!    `observedGeneration`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::agents::{self, AgentClient, ClusterView, PodView, RolloutStep, ScaleStep, ScaleView};
use crate::crd::{Phase, RaleCluster, RaleClusterStatus};
use crate::labels::{FIELD_MANAGER, ROLE};
use crate::ramd_config::member_api_url;
use crate::resources::{self, Credentials, DesiredObjects, SecretRole, secret_name};
use crate::{Error, Result};

/// How often a healthy cluster is looked at again: the agents fail over without any
/// Kubernetes event, and the role labels must follow.
pub const RESYNC: Duration = Duration::from_secs(5);

/// Shared state of the reconciler.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Test seam: where the agents' API calls go ([`AgentClient::with_route`]);
    /// `None` in production.
    pub agent_route: Option<agents::AgentRoute>,
}

/// Runs the controller until the process is stopped.
pub async fn run(client: Client) {
    run_with(Arc::new(Context {
        client,
        agent_route: None,
    }))
    .await;
}

/// Runs the controller with `ctx` (tests route the agents' calls through it).
pub async fn run_with(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let clusters: Api<RaleCluster> = Api::all(client.clone());
    Controller::new(clusters, watcher::Config::default())
        // Only the objects the operator made: not every ConfigMap of the cluster.
        .owns(Api::<StatefulSet>::all(client.clone()), owned())
        .owns(Api::<Service>::all(client.clone()), owned())
        .owns(Api::<ConfigMap>::all(client.clone()), owned())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(cluster = %obj.name, "reconciled"),
                Err(e) => warn!(error = %e, "reconcile failed"),
            }
        })
        .await;
}

fn owned() -> watcher::Config {
    watcher::Config::default().labels(&format!("{}=rale-operator", crate::labels::MANAGED_BY))
}

fn error_policy(cluster: Arc<RaleCluster>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(cluster = %cluster.name_any(), error = %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(15))
}

async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("object name"))?;
    let value = resources::typed_value(obj).map_err(|e| Error::Serialize(e.to_string()))?;
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api.patch(&name, &pp, &Patch::Apply(&value)).await?)
}

async fn delete_if_exists<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn secret_value(s: &Secret, key: &str) -> Option<String> {
    if let Some(v) = s.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(v.0.clone()).ok();
    }
    s.string_data.as_ref().and_then(|d| d.get(key)).cloned()
}

/// Reconciles one `RaleCluster`.
pub async fn reconcile(cluster: Arc<RaleCluster>, ctx: Arc<Context>) -> Result<Action> {
    let name = cluster.name_any();
    let ns = cluster
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let client = ctx.client.clone();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let clusters: Api<RaleCluster> = Api::namespaced(client.clone(), &ns);

    // User names from the Secrets that exist (a user-named Secret may carry `username`).
    let mut creds = Credentials::default();
    let mut api_password = None;
    for role in SecretRole::ALL {
        let sname = secret_name(&name, &cluster.spec, role);
        if let Some(s) = secrets.get_opt(&sname).await? {
            if let Some(u) = secret_value(&s, "username") {
                match role {
                    SecretRole::Superuser => creds.superuser = u,
                    SecretRole::Replication => creds.replication_user = u,
                    SecretRole::Api => creds.api_user = u,
                }
            }
            if role == SecretRole::Api {
                api_password = secret_value(&s, "password");
            }
        }
    }

    let previous = cluster.status.clone().unwrap_or_default();
    let generation = cluster.metadata.generation;
    let desired = match resources::desired_objects(&cluster, &creds) {
        Ok(d) => d,
        Err(Error::Parameters(refused)) => {
            let mut status = previous.clone();
            status.phase = Some(Phase::Failed);
            status.observed_generation = generation;
            set_condition(
                &mut status.conditions,
                "ParametersValid",
                false,
                "ParameterRefused",
                &crate::params::summary(&refused),
                generation,
            );
            write_status(&clusters, &name, &previous, &status).await?;
            info!(cluster = %name, reason = "parameters refused", "nothing applied");
            return Ok(Action::requeue(Duration::from_secs(300)));
        }
        Err(e) => return Err(e),
    };

    let mut status = previous.clone();
    status.observed_generation = generation;
    set_condition(
        &mut status.conditions,
        "ParametersValid",
        true,
        "Accepted",
        "every parameter accepted by rale-params",
        generation,
    );

    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let existing_sts = sts_api.get_opt(&name).await?;
    let current_replicas = existing_sts
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas)
        .and_then(|r| u32::try_from(r).ok());
    let want = u32::try_from(cluster.spec.instances).unwrap_or(1);
    let mut progressing: Vec<String> = Vec::new();

    // What the agents say: every member that may run is asked, until one answers.
    let tls = cluster.spec.tls.is_some();
    let asked = want.max(current_replicas.unwrap_or(0));
    let urls: Vec<String> = (0..asked)
        .map(|i| member_api_url(&name, &ns, i, tls))
        .collect();
    let mut agent = None;
    let mut view = None;
    let mut membership = None;
    if let Some(pw) = api_password {
        let ca = match &cluster.spec.tls {
            Some(t) => secrets
                .get_opt(&t.secret_name)
                .await?
                .and_then(|s| s.data.and_then(|d| d.get("ca.crt").map(|b| b.0.clone()))),
            None => None,
        };
        let a = AgentClient::new(creds.api_user.clone(), pw, ca.as_deref())?
            .with_route(ctx.agent_route.clone());
        match a.cluster(&urls).await {
            Ok(v) => view = Some(v),
            Err(e) => info!(cluster = %name, error = %e, "no agent answered GET /cluster"),
        }
        match a.members(&urls).await {
            Ok(m) => membership = Some(m),
            Err(e) => info!(cluster = %name, error = %e, "no agent answered GET /api/v1/members"),
        }
        agent = Some(a);
    }

    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pods = pods_api
        .list(&ListParams::default().labels(&format!("{}={name}", crate::labels::CLUSTER)))
        .await?;
    let ready = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let update_revision = existing_sts
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.update_revision.clone());
    let pod_views: Vec<PodView> = pods
        .items
        .iter()
        .map(|p| PodView {
            name: p.name_any(),
            updated: update_revision.is_none()
                || p.labels().get("controller-revision-hash") == update_revision.as_ref(),
            ready: ready(p),
        })
        .collect();
    status.ready_instances =
        i32::try_from(pod_views.iter().filter(|p| p.ready).count()).unwrap_or(i32::MAX);
    let primary = view
        .as_ref()
        .and_then(|v| v.primary())
        .map(|m| m.name.clone());
    let primary_url = |member: &str| {
        let idx = member
            .rsplit('-')
            .next()
            .and_then(|i| i.parse::<u32>().ok())
            .unwrap_or(0);
        member_api_url(&name, &ns, idx, tls)
    };

    // Scaling: the StatefulSet's replicas move only as `plan_scale` says.
    let mut scale_step = ScaleStep::Done;
    let replicas = match current_replicas {
        None => want,
        Some(cur) if cluster.spec.paused => cur,
        Some(cur) => match &membership {
            Some(m) => {
                scale_step = agents::plan_scale(&ScaleView {
                    cluster: &name,
                    want,
                    replicas: cur,
                    members: m,
                    primary: primary.as_deref(),
                    pods: &pod_views,
                    topology: &desired.topology,
                });
                match &scale_step {
                    ScaleStep::SetReplicas(n) => *n,
                    _ => cur,
                }
            }
            None if cur != want => {
                progressing.push(format!("{want} instances requested, {cur} running: waiting for the agents' membership API"));
                cur
            }
            None => cur,
        },
    };
    if scale_step != ScaleStep::Done {
        progressing.push(format!("scaling to {want} instances: {scale_step:?}"));
    }

    if !cluster.spec.paused {
        apply_objects(&client, &ns, &desired, replicas).await?;
    }

    if let (Some(agent), false) = (&agent, cluster.spec.paused) {
        let leader_url = primary
            .as_deref()
            .map(primary_url)
            .or_else(|| urls.first().cloned());
        match (&scale_step, leader_url) {
            (
                ScaleStep::AddMember {
                    name: member,
                    raft_id,
                },
                Some(url),
            ) => {
                let idx = member
                    .rsplit('-')
                    .next()
                    .and_then(|i| i.parse::<u32>().ok())
                    .unwrap_or(0);
                info!(cluster = %name, member = %member, raft_id, reason = "spec.instances", "adding member");
                agent
                    .add_member(
                        &url,
                        member,
                        *raft_id,
                        &member_api_url(&name, &ns, idx, tls),
                    )
                    .await?;
            }
            (ScaleStep::RemoveMember(member), Some(url)) => {
                info!(cluster = %name, member = %member, reason = "spec.instances", "removing member");
                if let Err(e) = agent.remove_member(&url, member).await {
                    // Refused while its agent still reports: retried at the next pass.
                    info!(cluster = %name, member = %member, error = %e, "member removal refused for now");
                }
            }
            (ScaleStep::Switchover { from, to }, _) => {
                info!(cluster = %name, from = %from, to = %to, reason = "primary leaves with spec.instances", "switchover");
                agent.switchover(&primary_url(from), from, to).await?;
            }
            _ => {}
        }
    }

    if let (Some(agent), Some(view)) = (&agent, &view) {
        // Routing follows the agents even while paused: a paused operator must not
        // leave `-rw` on a primary the agents replaced.
        label_pods(&pods_api, &pods.items, view).await?;
        if !cluster.spec.paused {
            let url = primary
                .as_deref()
                .map(primary_url)
                .or_else(|| urls.first().cloned());
            if let (Some(url), true) = (url, primary.is_some())
                && let Some(why) =
                    sync_dynamic_config(agent, &url, &cluster, &desired.parameters).await
            {
                progressing.push(why);
            }
            // A rolling update only while no scaling is in progress.
            let all_pods = pod_views.len() == replicas as usize;
            if scale_step == ScaleStep::Done && update_revision.is_some() && !all_pods {
                progressing.push(format!("{} of {replicas} pods exist", pod_views.len()));
            }
            if scale_step == ScaleStep::Done && update_revision.is_some() && all_pods {
                match agents::plan_rollout(&pod_views, primary.as_deref()) {
                    RolloutStep::Done => {}
                    RolloutStep::Wait(why) => {
                        progressing.push(format!("rolling update waits: {why}"))
                    }
                    RolloutStep::DeleteReplica(p) | RolloutStep::DeletePrimary(p) => {
                        info!(cluster = %name, pod = %p, reason = "rolling update", "deleting pod");
                        delete_if_exists(&pods_api, &p).await?;
                        progressing.push(format!("rolling update: recreating {p}"));
                    }
                    RolloutStep::Switchover { from, to } => {
                        info!(cluster = %name, from = %from, to = %to, reason = "rolling update", "switchover");
                        agent.switchover(&primary_url(&from), &from, &to).await?;
                        progressing
                            .push(format!("rolling update: switched over from {from} to {to}"));
                    }
                }
            }
        }
        status.current_primary = primary.clone();
        status.instances = agents::instance_statuses(view);
    } else {
        status.current_primary = None;
        status.instances.clear();
    }

    // Raft ids: the agents' membership, plus the ids given to members still joining.
    let mut raft_ids: BTreeMap<String, u64> = match &membership {
        Some(m) => m.all().map(|p| (p.name.clone(), p.raft_id)).collect(),
        None => status.raft_ids.clone(),
    };
    for (i, id) in &desired.topology.members {
        if membership.is_none() || desired.topology.joining.contains(i) {
            raft_ids
                .entry(crate::ramd_config::member_name(&name, *i))
                .or_insert(*id);
        }
    }
    let highest = raft_ids
        .values()
        .chain(desired.topology.members.iter().map(|(_, id)| id))
        .copied()
        .max()
        .unwrap_or(0);
    status.next_raft_id = Some(status.next_raft_id.unwrap_or(1).max(highest + 1));
    status.raft_ids = raft_ids;
    if status.initial_instances.is_none() {
        // Recorded with the first status: the members the cluster is created with.
        status.initial_instances = Some(
            u32::try_from(desired.topology.members.len() - desired.topology.joining.len())
                .unwrap_or(want),
        );
    }

    let running = status
        .instances
        .iter()
        .filter(|i| matches!(i.state.as_str(), "running" | "streaming"))
        .count();
    let all_up = status.current_primary.is_some()
        && running == want as usize
        && status.ready_instances == cluster.spec.instances;
    status.phase = Some(if cluster.spec.paused {
        Phase::Paused
    } else if existing_sts.is_none() {
        Phase::Pending
    } else if status.current_primary.is_none() {
        Phase::Creating
    } else if all_up {
        Phase::Healthy
    } else {
        Phase::Degraded
    });
    if status.current_primary.is_none() && !cluster.spec.paused {
        progressing.push("waiting for the agents to report a primary".into());
    }
    set_condition(
        &mut status.conditions,
        "Ready",
        all_up,
        if all_up {
            "AllInstancesReady"
        } else {
            "NotAllInstancesReady"
        },
        &format!(
            "{} of {} instances ready; primary {}",
            status.ready_instances,
            cluster.spec.instances,
            status.current_primary.as_deref().unwrap_or("none")
        ),
        generation,
    );
    let degraded = status.current_primary.is_some() && !all_up;
    set_condition(
        &mut status.conditions,
        "Degraded",
        degraded,
        if degraded {
            "InstancesDown"
        } else {
            "AsExpected"
        },
        &format!("{running} of {want} members running"),
        generation,
    );
    set_condition(
        &mut status.conditions,
        "Progressing",
        !progressing.is_empty(),
        if progressing.is_empty() {
            "Stable"
        } else {
            "Changing"
        },
        &if progressing.is_empty() {
            "nothing in progress".to_string()
        } else {
            progressing.join("; ")
        },
        generation,
    );
    if status != previous {
        write_status(&clusters, &name, &previous, &status).await?;
    }
    Ok(Action::requeue(RESYNC))
}

async fn apply_objects(
    client: &Client,
    ns: &str,
    desired: &DesiredObjects,
    replicas: u32,
) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    for s in &desired.secrets {
        // Created once, never applied again: the password is generated here.
        match secrets.create(&PostParams::default(), s).await {
            Ok(_) => info!(secret = %s.name_any(), "generated"),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    apply(
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        &desired.config_map,
    )
    .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    apply(&services, &desired.headless_service).await?;
    for s in &desired.client_services {
        apply(&services, s).await?;
    }
    for n in &desired.disabled_services {
        delete_if_exists(&services, n).await?;
    }
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    match &desired.pdb {
        Some(p) => {
            apply(&pdbs, p).await?;
        }
        None => delete_if_exists(&pdbs, &desired.stateful_set.name_any()).await?,
    }
    let mut sts = desired.stateful_set.clone();
    if let Some(spec) = sts.spec.as_mut() {
        spec.replicas = Some(i32::try_from(replicas).unwrap_or(i32::MAX));
    }
    apply(&Api::<StatefulSet>::namespaced(client.clone(), ns), &sts).await?;
    Ok(())
}

async fn label_pods(pods_api: &Api<Pod>, pods: &[Pod], view: &ClusterView) -> Result<()> {
    let roles = agents::role_labels(view);
    for p in pods {
        let name = p.name_any();
        let want = roles.get(&name).copied().flatten();
        let have = p.labels().get(ROLE).map(String::as_str);
        if want == have {
            continue;
        }
        info!(pod = %name, role = want.unwrap_or("none"), reason = "agents report", "labelling pod");
        let patch = serde_json::json!({"metadata": {"labels": {ROLE: want}}});
        pods_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

/// Brings the cluster-wide dynamic configuration (`postgresql_parameters`,
/// `synchronous`) to the spec with one `PATCH /config` on the primary's agent; a
/// refusal is returned for the status.
async fn sync_dynamic_config(
    agent: &AgentClient,
    url: &str,
    cluster: &RaleCluster,
    desired: &BTreeMap<String, String>,
) -> Option<String> {
    let name = cluster.name_any();
    let current = match agent.config(url).await {
        Ok(v) => v,
        Err(e) => {
            warn!(cluster = %name, error = %e, "GET /config failed");
            return Some(format!("GET /config failed: {e}"));
        }
    };
    let current_params: BTreeMap<String, String> = current
        .get("postgresql_parameters")
        .and_then(|p| p.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut patch = serde_json::Map::new();
    for part in [
        agents::parameters_patch(&current_params, desired),
        agents::synchronous_patch(
            current
                .get("synchronous")
                .unwrap_or(&serde_json::Value::Null),
            cluster.spec.synchronous.as_ref(),
        ),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(m) = part.as_object() {
            patch.extend(m.clone());
        }
    }
    if patch.is_empty() {
        return None;
    }
    let patch = serde_json::Value::Object(patch);
    match agent.patch_config(url, &patch).await {
        Ok(()) => {
            info!(cluster = %name, reason = "spec.postgresql.parameters, spec.synchronous", "PATCH /config applied");
            None
        }
        Err(e) => {
            warn!(cluster = %name, error = %e, "PATCH /config refused");
            Some(format!("PATCH /config refused: {e}"))
        }
    }
}

async fn write_status(
    api: &Api<RaleCluster>,
    name: &str,
    previous: &RaleClusterStatus,
    status: &RaleClusterStatus,
) -> Result<()> {
    let to_value = |s: &RaleClusterStatus| {
        serde_json::to_value(s).map_err(|e| Error::Serialize(e.to_string()))
    };
    let patch =
        serde_json::json!({ "status": merge_patch_from(&to_value(previous)?, &to_value(status)?) });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// A JSON merge patch (RFC 7386) turning `old` into `new`: `new`, with `null` for every
/// key of an object in `old` that `new` lacks (a plain merge would keep them, e.g. the
/// Raft id of a removed member).
pub fn merge_patch_from(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    match (old.as_object(), new.as_object()) {
        (Some(o), Some(n)) => {
            let mut out = serde_json::Map::new();
            for (k, v) in n {
                let prev = o.get(k).unwrap_or(&serde_json::Value::Null);
                out.insert(k.clone(), merge_patch_from(prev, v));
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    out.insert(k.clone(), serde_json::Value::Null);
                }
            }
            serde_json::Value::Object(out)
        }
        _ => new.clone(),
    }
}

/// Sets condition `type_`, keeping its `lastTransitionTime` when the status is unchanged.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let status = if ok { "True" } else { "False" };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: now,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_from_nulls_removed_keys_only() {
        let old =
            serde_json::json!({"raftIds": {"pg-0": 1, "pg-2": 3}, "phase": "Healthy", "x": [1]});
        let new = serde_json::json!({"raftIds": {"pg-0": 1}, "phase": "Degraded"});
        assert_eq!(
            merge_patch_from(&old, &new),
            serde_json::json!({"raftIds": {"pg-0": 1, "pg-2": null}, "phase": "Degraded", "x": null})
        );
    }
}
