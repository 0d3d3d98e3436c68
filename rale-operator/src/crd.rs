//! The `RaleCluster` custom resource (`rale.dev/v1alpha1`): what a user asks for
//! ([`RaleClusterSpec`]) and what the operator observed ([`RaleClusterStatus`]).
//!
//! The CRD manifest is generated from these types ([`crd_yaml`], `rale-operator crd`) and
//! checked in twice: `deploy/crds/ralecluster.yaml` and
//! `charts/rale-operator/crds/ralecluster.yaml`; a test fails when either drifts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of RALE's resources.
pub const GROUP: &str = "rale.dev";
/// The version of [`RaleCluster`] served and stored.
pub const VERSION: &str = "v1alpha1";

/// A PostgreSQL cluster kept available by RALE agents (`ramd`), one per pod.
///
/// The agents elect the primary and fail over among themselves through embedded Raft;
/// the operator creates and updates the Kubernetes objects around them and reports what
/// the agents say. It never decides a failover.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "rale.dev",
    version = "v1alpha1",
    kind = "RaleCluster",
    plural = "raleclusters",
    shortname = "rc",
    shortname = "rale",
    namespaced,
    status = "RaleClusterStatus",
    scale(
        spec_replicas_path = ".spec.instances",
        status_replicas_path = ".status.readyInstances"
    ),
    printcolumn = r#"{"name":"Instances","type":"integer","jsonPath":".spec.instances"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyInstances"}"#,
    printcolumn = r#"{"name":"Primary","type":"string","jsonPath":".status.currentPrimary"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RaleClusterSpec {
    /// Number of PostgreSQL instances (pods), the primary included.
    #[schemars(range(min = 1, max = 32))]
    pub instances: i32,
    /// Major version of PostgreSQL in the image; parameters are validated against it.
    #[serde(default = "default_postgres_version")]
    #[schemars(range(min = 13, max = 17))]
    pub postgres_version: u8,
    /// Container images.
    pub images: ImagesSpec,
    /// Persistent volumes of each instance.
    pub storage: StorageSpec,
    /// CPU and memory of the PostgreSQL container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// PostgreSQL settings.
    #[serde(default)]
    pub postgresql: PostgresqlSpec,
    /// Synchronous replication; absent: asynchronous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous: Option<SynchronousSpec>,
    /// Backups run by the agents; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
    /// The client Services `<name>-rw`, `<name>-ro` and `<name>-r`.
    #[serde(default)]
    pub services: ServicesSpec,
    /// The PodDisruptionBudget of the instances.
    #[serde(default)]
    pub pod_disruption_budget: PdbSpec,
    /// Pod affinity and anti-affinity (default: prefer one instance per node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Topology spread constraints of the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Node selector of the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// TLS for the agents' REST API (and their Raft traffic), from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Existing Secrets to use instead of generated passwords.
    #[serde(default)]
    pub secrets: SecretsSpec,
    /// While `true` the operator changes nothing but the pods' role labels (routing
    /// follows the agents) and the status. The agents keep running and keep failing
    /// over by themselves.
    #[serde(default)]
    pub paused: bool,
}

fn default_postgres_version() -> u8 {
    15
}

/// Container images.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagesSpec {
    /// Image holding `ramd` (and, unless `postgres` is set, PostgreSQL too), e.g. the
    /// image built from `packaging/docker/ramd.Dockerfile`.
    pub agent: String,
    /// A separate PostgreSQL image (Debian layout, glibc). When set, an init container
    /// copies `ramd` from `agent` into the pod and the PostgreSQL image runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<String>,
    /// `Always`, `IfNotPresent` or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    /// Names of Secrets used to pull the images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_secrets: Vec<String>,
}

/// Image pull policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    /// Pull at every start.
    Always,
    /// Pull when the node lacks the image.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Persistent volumes of each instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of the data volume (a Kubernetes quantity, e.g. `10Gi`).
    pub size: String,
    /// StorageClass of the data volume (default: the cluster's default class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// A separate volume for `pg_wal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<VolumeSpec>,
    /// What happens to the volumes when the cluster is deleted or scaled down.
    #[serde(default)]
    pub retention: PvcRetention,
}

/// One extra volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    /// Size (a Kubernetes quantity).
    pub size: String,
    /// StorageClass (default: the cluster's default class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

/// Retention of the PersistentVolumeClaims (the StatefulSet's
/// `persistentVolumeClaimRetentionPolicy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcRetention {
    /// On deletion of the cluster.
    #[serde(default)]
    pub when_deleted: RetentionAction,
    /// On scale down.
    #[serde(default)]
    pub when_scaled: RetentionAction,
}

/// Keep or delete volumes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RetentionAction {
    /// Keep the claims (the default: data survives a mistaken deletion).
    #[default]
    Retain,
    /// Delete the claims.
    Delete,
}

impl RetentionAction {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionAction::Retain => "Retain",
            RetentionAction::Delete => "Delete",
        }
    }
}

/// PostgreSQL settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresqlSpec {
    /// Parameters (`postgresql.conf` names and values), validated with `rale-params`
    /// against `postgresVersion` before they reach any pod. A refused parameter is named
    /// in the `ParametersValid` condition and nothing is changed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// Extra `pg_hba.conf` lines for applications, before RALE's own rules (default:
    /// SCRAM from any address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_hba: Option<Vec<String>>,
}

/// Synchronous replication (`ramd`'s `[bootstrap.synchronous]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SynchronousSpec {
    /// `off`, `on` (`FIRST n`) or `quorum` (`ANY n`).
    pub mode: SyncMode,
    /// Number of synchronous standbys.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub node_count: u32,
    /// `true`: writes block rather than run without a synchronous standby.
    #[serde(default)]
    pub strict: bool,
}

fn one() -> u32 {
    1
}

/// Synchronous replication mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Asynchronous.
    Off,
    /// `FIRST n (…)`.
    On,
    /// `ANY n (…)`.
    Quorum,
}

impl SyncMode {
    /// The spelling of `ramd`'s configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Off => "off",
            SyncMode::On => "on",
            SyncMode::Quorum => "quorum",
        }
    }
}

/// Backups, driven by the agents (`ramd`'s `[backup]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// The tool, installed in the agent image.
    pub tool: BackupTool,
    /// Where backups and archived WAL go.
    pub repository: RepositorySpec,
    /// Scheduled backups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<BackupSchedule>,
    /// Retention applied after each successful backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<BackupRetention>,
}

/// Backup tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupTool {
    /// pgBackRest.
    Pgbackrest,
    /// Barman (local mode).
    Barman,
}

/// The backup repository: an existing ReadWriteMany claim mounted in every pod, so
/// that every member sees the same backups and a backup taken before a failover
/// restores after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositorySpec {
    /// Name of the PersistentVolumeClaim (ReadWriteMany) holding the repository.
    pub claim_name: String,
    /// Directory inside that volume (default: the cluster's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

/// One scheduled backup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSchedule {
    /// Name, unique in the cluster.
    pub name: String,
    /// `full`, `differential` or `incremental`.
    pub kind: BackupKind,
    /// Cron expression in UTC; six fields, seconds first (`0 30 2 * * *`).
    pub cron: String,
    /// `primary`, `prefer_replica` or `any_replica` (pgBackRest: `primary`).
    #[serde(default = "default_placement")]
    pub placement: String,
}

fn default_placement() -> String {
    "primary".into()
}

/// Kind of backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// Full.
    Full,
    /// Differential.
    Differential,
    /// Incremental.
    Incremental,
}

impl BackupKind {
    /// The spelling of `ramd`'s configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Full => "full",
            BackupKind::Differential => "differential",
            BackupKind::Incremental => "incremental",
        }
    }
}

/// Retention of backups.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRetention {
    /// Full backups to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_count: Option<u32>,
    /// Differential backups to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differential_count: Option<u32>,
    /// Maximum age (a human duration, e.g. `30d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
}

/// The three client Services.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicesSpec {
    /// `<name>-rw`: the primary.
    #[serde(default)]
    pub rw: ServiceSpec,
    /// `<name>-ro`: the replicas.
    #[serde(default)]
    pub ro: ServiceSpec,
    /// `<name>-r`: every running instance.
    #[serde(default)]
    pub r: ServiceSpec,
}

/// One client Service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `false`: the Service is not created (and deleted if it exists).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `ClusterIP`, `NodePort` or `LoadBalancer`.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Annotations of the Service (e.g. for a cloud load balancer).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Extra labels of the Service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        ServiceSpec {
            enabled: true,
            type_: ServiceType::ClusterIP,
            annotations: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// Service type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    /// Inside the cluster only.
    #[default]
    ClusterIP,
    /// A port on every node.
    NodePort,
    /// A cloud load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// The PodDisruptionBudget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PdbSpec {
    /// `false`: no PodDisruptionBudget.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Pods that voluntary disruptions (drains) may take down at once.
    #[serde(default = "one_i32")]
    #[schemars(range(min = 0))]
    pub max_unavailable: i32,
}

impl Default for PdbSpec {
    fn default() -> Self {
        PdbSpec {
            enabled: true,
            max_unavailable: 1,
        }
    }
}

fn one_i32() -> i32 {
    1
}

/// TLS for the agents' API from a Secret of type `kubernetes.io/tls` whose certificate
/// covers `*.<name>-agents.<namespace>.svc` (and `…svc.cluster.local`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Secret with `tls.crt`, `tls.key` and, for a private CA, `ca.crt`.
    pub secret_name: String,
}

/// Existing Secrets, each with a `password` key (and an optional `username`); a Secret
/// not named here is generated once by the operator and kept.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretsSpec {
    /// PostgreSQL superuser (default user `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superuser: Option<String>,
    /// Replication user (default user `replicator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<String>,
    /// The agents' REST API (default user `admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

/// What the operator observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RaleClusterStatus {
    /// `Pending`, `Creating`, `Healthy`, `Degraded`, `Paused` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The member the agents report as leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_primary: Option<String>,
    /// Pods that are ready.
    #[serde(default)]
    pub ready_instances: i32,
    /// Each member as its agents report it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceStatus>,
    /// `Ready`, `Progressing`, `Degraded`, `ParametersValid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The Raft id of each member (pod name), as assigned by the operator and confirmed
    /// by the agents' membership. Raft ids are never reused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raft_ids: BTreeMap<String, u64>,
    /// The next Raft id to give a new member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_raft_id: Option<u64>,
    /// How many members founded the cluster (Raft ids `1 … n`); every later member
    /// joins the running cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_instances: Option<u32>,
}

/// Cluster phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Objects not created yet.
    Pending,
    /// Pods starting, no primary yet.
    Creating,
    /// Every instance running, one primary.
    Healthy,
    /// A primary, but not every instance running.
    Degraded,
    /// `spec.paused`.
    Paused,
    /// The spec cannot be applied (see the conditions).
    Failed,
}

/// One member as its agents report it (`GET /cluster`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// Member (pod) name.
    pub name: String,
    /// `leader`, `sync_standby`, `quorum_standby` or `replica`.
    pub role: String,
    /// `running`, `streaming`, `stopped`, ….
    pub state: String,
    /// Bytes behind the primary, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// PostgreSQL timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<i64>,
    /// A setting waits for a restart.
    #[serde(default)]
    pub pending_restart: bool,
}

/// The CRD manifest as YAML, exactly as checked in.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = RaleCluster::crd();
    let body = serde_yaml::to_string(&crd).expect("a CRD always serializes");
    format!(
        "# Generated from rale-operator/src/crd.rs; do not edit.\n\
         # Regenerate: cargo run -p rale-operator -- crd > deploy/crds/ralecluster.yaml\n\
         # (and copy it to charts/rale-operator/crds/ralecluster.yaml)\n{body}"
    )
}
