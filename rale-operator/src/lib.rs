//! Kubernetes operator for RALE.
//!
//! RALE's agents (`ramd`, one per PostgreSQL pod) elect the primary and fail over among
//! themselves through embedded Raft. This crate manages the Kubernetes objects around
//! them for a [`RaleCluster`](crd::RaleCluster) resource and reports what the agents say;
//! it never decides a failover.
//!
//! - [`crd`]: the `RaleCluster` resource (`rale.dev/v1alpha1`) and its CRD manifest.
//! - [`params`]: the spec's PostgreSQL parameters checked with `rale-params` before any
//!   object is built; a refusal becomes the `ParametersValid` condition.
//! - [`ramd_config`]: each member's `ramd` configuration file.
//! - [`resources`]: every desired object (Secrets, ConfigMap, StatefulSet, Services,
//!   PodDisruptionBudget) as a pure function of the resource, with owner references.
//! - [`agents`]: the agents' `GET /cluster` answers turned into pod role labels and
//!   status.
//! - [`controller`]: the reconcile loop (kube-runtime `Controller`, server-side apply).
//!
//! Everything except [`controller`] is pure and tested without an API server:
//!
//! ```
//! use rale_operator::crd::RaleCluster;
//! use rale_operator::resources::{Credentials, desired_objects};
//!
//! let cluster: RaleCluster = serde_yaml::from_str(r#"
//! apiVersion: rale.dev/v1alpha1
//! kind: RaleCluster
//! metadata: { name: pg, namespace: db, uid: 7c0f3a52-0000-4000-8000-000000000001 }
//! spec:
//!   instances: 3
//!   images: { agent: "registry.example/rale/ramd:0.1.0" }
//!   storage: { size: 10Gi }
//!   postgresql: { parameters: { shared_buffers: 1GB } }
//! "#)?;
//! let objects = desired_objects(&cluster, &Credentials::default())?;
//! let sts = objects.stateful_set;
//! assert_eq!(sts.spec.as_ref().and_then(|s| s.replicas), Some(3));
//! // Each member's ramd configuration lists the three peers by their stable DNS names.
//! let toml = &objects.config_map.data.as_ref().unwrap()["pg-0.toml"];
//! assert!(toml.contains("http://pg-2.pg-agents.db.svc:8008"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// The determinism lints of clippy.toml apply to rale::decide only.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod agents;
pub mod controller;
pub mod crd;
pub mod params;
pub mod ramd_config;
pub mod resources;

/// Errors of the operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The resource lacks something every object needs (a name, a namespace, a uid).
    #[error("RaleCluster is missing {0}")]
    MissingField(&'static str),
    /// The spec is not valid (beyond what the CRD schema checks).
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// PostgreSQL parameters were refused by `rale-params`.
    #[error("PostgreSQL parameters refused: {}", params::summary(.0))]
    Parameters(Vec<params::Refusal>),
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A call to an agent's REST API failed.
    #[error("agent {agent}: {message}")]
    Agent {
        /// The member asked.
        agent: String,
        /// What went wrong.
        message: String,
    },
    /// Serializing an object failed.
    #[error("serialization: {0}")]
    Serialize(String),
}

/// Result with the operator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Labels the operator puts on every object it owns.
pub mod labels {
    /// `app.kubernetes.io/name`.
    pub const NAME: &str = "app.kubernetes.io/name";
    /// `app.kubernetes.io/instance`: the cluster's name.
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    /// `app.kubernetes.io/managed-by`.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// The cluster a pod belongs to.
    pub const CLUSTER: &str = "rale.dev/cluster";
    /// The role of a pod (`primary` or `replica`), set by the operator from what the
    /// agents report; the `-rw` and `-ro` Services select on it.
    pub const ROLE: &str = "rale.dev/role";
    /// Value of [`ROLE`] on the primary.
    pub const ROLE_PRIMARY: &str = "primary";
    /// Value of [`ROLE`] on a streaming standby.
    pub const ROLE_REPLICA: &str = "replica";
    /// Field manager of every apply.
    pub const FIELD_MANAGER: &str = "rale-operator";
}
