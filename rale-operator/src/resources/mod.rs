//! Every object the operator keeps for a `RaleCluster`, as a pure function of the
//! resource ([`desired_objects`]); the controller applies them with server-side apply.
//!
//! | object | name |
//! | --- | --- |
//! | Secrets (unless the spec names existing ones) | `<c>-superuser`, `<c>-replication`, `<c>-api` |
//! | ConfigMap, one `ramd` file per member | `<c>-config` |
//! | StatefulSet (pods `<c>-0 … <c>-(n-1)`) | `<c>` |
//! | headless Service (stable DNS names, Raft) | `<c>-agents` |
//! | client Services | `<c>-rw` (primary), `<c>-ro` (replicas), `<c>-r` (any) |
//! | PodDisruptionBudget | `<c>` |
//!
//! Every object carries a controller owner reference to the `RaleCluster`, so deleting
//! it deletes them (the volume claims follow `spec.storage.retention`).

mod secrets;
mod services;
mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::crd::RaleCluster;
use crate::ramd_config::{self, MemberContext, Topology};
use crate::{Error, Result, labels, params};

pub use secrets::{SecretRole, generate_password, secret_name};
pub use services::{ClientService, client_service_name};

/// User names of the three credentials (from existing Secrets' `username` keys, or the
/// defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// PostgreSQL superuser (default `postgres`).
    pub superuser: String,
    /// Replication user (default `replicator`).
    pub replication_user: String,
    /// REST API user (default `admin`).
    pub api_user: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            superuser: "postgres".into(),
            replication_user: "replicator".into(),
            api_user: "admin".into(),
        }
    }
}

/// Everything the operator keeps for one cluster.
#[derive(Clone, Debug)]
pub struct DesiredObjects {
    /// Secrets to create when absent (never overwritten: their passwords are generated
    /// here, once); empty for those the spec names.
    pub secrets: Vec<Secret>,
    /// Every member's `ramd` file.
    pub config_map: ConfigMap,
    /// The pods and their volumes.
    pub stateful_set: StatefulSet,
    /// The headless Service of the members' stable names.
    pub headless_service: Service,
    /// The enabled client Services.
    pub client_services: Vec<Service>,
    /// Names of client Services the spec disables (deleted if they exist).
    pub disabled_services: Vec<String>,
    /// The PodDisruptionBudget, unless disabled.
    pub pdb: Option<PodDisruptionBudget>,
    /// The PostgreSQL parameters accepted by `rale-params` (lower-cased names).
    pub parameters: BTreeMap<String, String>,
    /// The members the `ramd` files describe.
    pub topology: Topology,
}

impl DesiredObjects {
    /// Every object as a JSON value (for offline validation and `rale-operator render`).
    pub fn to_values(&self) -> Result<Vec<serde_json::Value>> {
        let mut out = Vec::new();
        let mut push = |v: Result<serde_json::Value, serde_json::Error>| -> Result<()> {
            out.push(v.map_err(|e| Error::Serialize(e.to_string()))?);
            Ok(())
        };
        for s in &self.secrets {
            push(typed_value(s))?;
        }
        push(typed_value(&self.config_map))?;
        push(typed_value(&self.stateful_set))?;
        push(typed_value(&self.headless_service))?;
        for s in &self.client_services {
            push(typed_value(s))?;
        }
        if let Some(p) = &self.pdb {
            push(typed_value(p))?;
        }
        Ok(out)
    }
}

/// An object with its `apiVersion` and `kind`, as server-side apply needs them.
pub fn typed_value<K>(obj: &K) -> Result<serde_json::Value, serde_json::Error>
where
    K: Resource<DynamicType = ()> + serde::Serialize,
{
    let mut v = serde_json::to_value(obj)?;
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), K::api_version(&()).into());
        m.insert("kind".into(), K::kind(&()).into());
    }
    Ok(v)
}

/// The labels every object of cluster `name` carries; the pods are selected by them.
pub fn cluster_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::NAME.to_string(), "rale".to_string()),
        (labels::INSTANCE.to_string(), name.to_string()),
        (labels::MANAGED_BY.to_string(), "rale-operator".to_string()),
        (labels::CLUSTER.to_string(), name.to_string()),
    ])
}

/// The selector of cluster `name`'s pods.
pub fn pod_selector(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(labels::CLUSTER.to_string(), name.to_string())])
}

/// Name, namespace and uid of the resource, or which is missing.
pub(crate) struct Identity {
    pub name: String,
    pub namespace: String,
    pub owner: OwnerReference,
}

pub(crate) fn identity(cluster: &RaleCluster) -> Result<Identity> {
    let name = cluster
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let namespace = cluster
        .metadata
        .namespace
        .clone()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let owner = cluster
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    Ok(Identity {
        name,
        namespace,
        owner,
    })
}

impl Identity {
    /// Metadata of an owned object called `name`.
    pub fn meta(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(cluster_labels(&self.name)),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// The members the files describe for `members` instances: the Raft ids recorded in
/// the status (members without one get fresh ids and join), or a new cluster's.
pub fn topology(cluster: &RaleCluster, members: u32) -> Topology {
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let Some(status) = &cluster.status else {
        return Topology::initial(members);
    };
    let prefix = format!("{name}-");
    let known: BTreeMap<u32, u64> = status
        .raft_ids
        .iter()
        .filter_map(|(pod, id)| {
            let index = pod.strip_prefix(&prefix)?.parse::<u32>().ok()?;
            Some((index, *id))
        })
        .collect();
    let initial = status
        .initial_instances
        .unwrap_or_else(|| u32::try_from(known.len()).unwrap_or(u32::MAX));
    Topology::grow(members, &known, status.next_raft_id.unwrap_or(1), initial)
}

/// The name of the ConfigMap holding every member's `ramd` file.
pub fn config_map_name(cluster: &str) -> String {
    format!("{cluster}-config")
}

/// Builds every desired object of `cluster`. Its PostgreSQL parameters are checked
/// first: a refusal is [`Error::Parameters`] and nothing is built.
pub fn desired_objects(cluster: &RaleCluster, creds: &Credentials) -> Result<DesiredObjects> {
    let id = identity(cluster)?;
    let spec = &cluster.spec;
    if spec.instances < 1 {
        return Err(Error::InvalidSpec(format!(
            "instances must be at least 1, not {}",
            spec.instances
        )));
    }
    if spec.storage.size.trim().is_empty() {
        return Err(Error::InvalidSpec("storage.size is empty".into()));
    }
    if id.name.len() > 40 {
        // Pod names `<name>-<i>` label the DNS name `<name>-<i>.<name>-agents`: keep
        // both well under the 63-character limit of a DNS label.
        return Err(Error::InvalidSpec(format!(
            "metadata.name {:?} is longer than 40 characters",
            id.name
        )));
    }
    let parameters = params::check(spec.postgres_version, &spec.postgresql.parameters)?;

    let mut data = BTreeMap::new();
    let members = u32::try_from(spec.instances).unwrap_or(1);
    let topology = topology(cluster, members);
    for index in 0..members {
        let ctx = MemberContext {
            cluster: &id.name,
            namespace: &id.namespace,
            index,
            parameters: &parameters,
            superuser: &creds.superuser,
            replication_user: &creds.replication_user,
            api_user: &creds.api_user,
            topology: &topology,
        };
        data.insert(
            format!("{}.toml", ramd_config::member_name(&id.name, index)),
            ramd_config::render(spec, &ctx),
        );
    }
    let config_map = ConfigMap {
        metadata: id.meta(config_map_name(&id.name)),
        data: Some(data),
        ..ConfigMap::default()
    };

    let (client_services, disabled_services) = services::client_services(&id, spec);
    Ok(DesiredObjects {
        secrets: secrets::generated_secrets(&id, spec, creds),
        config_map,
        stateful_set: statefulset::stateful_set(&id, spec),
        headless_service: services::headless_service(&id),
        client_services,
        disabled_services,
        pdb: services::pdb(&id, spec),
        parameters,
        topology,
    })
}

#[cfg(test)]
mod tests;
