//! The StatefulSet: one pod per member, each running `ramd`, which runs PostgreSQL.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, LocalObjectReference, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::secrets::{SecretRole, secret_name};
use super::{Identity, cluster_labels, config_map_name, pod_selector};
use crate::crd::RaleClusterSpec;
use crate::ramd_config::{
    API_PORT, BACKUP_MOUNT, CONFIG_MOUNT, DATA_MOUNT, PG_PORT, RUN_DIR, SECRETS_MOUNT, TLS_MOUNT,
    WAL_MOUNT, headless_service_name,
};

/// UID and GID of `postgres` in the agent image (`packaging/docker/ramd.Dockerfile`)
/// and in the Debian-based official PostgreSQL images.
pub const POSTGRES_UID: i64 = 999;

/// Where an init container copies `ramd` when PostgreSQL comes from another image.
const AGENT_BIN: &str = "/rale/bin";

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn claim(name: &str, size: &str, class: Option<&String>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: class.cloned(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(size.into()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

fn http_probe(path: &str, tls: bool, period_s: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("api".into()),
            scheme: Some(if tls { "HTTPS" } else { "HTTP" }.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_s),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// The default affinity: prefer one member per node.
fn default_affinity(cluster: &str) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(pod_selector(cluster)),
                            ..LabelSelector::default()
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

pub(super) fn stateful_set(id: &Identity, spec: &RaleClusterSpec) -> StatefulSet {
    let tls = spec.tls.is_some();
    let split_images = spec.images.postgres.is_some();
    let pull_policy = spec.images.pull_policy.map(|p| p.as_str().to_string());

    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(&id.name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "run".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        Volume {
            name: "shm".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        mount("data", DATA_MOUNT, false),
        mount("config", CONFIG_MOUNT, true),
        mount("run", RUN_DIR, false),
        mount("shm", "/dev/shm", false),
    ];
    for role in SecretRole::ALL {
        let vol = format!("secret-{}", role.as_str());
        volumes.push(Volume {
            name: vol.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret_name(&id.name, spec, role)),
                items: Some(vec![KeyToPath {
                    key: "password".into(),
                    path: "password".into(),
                    ..KeyToPath::default()
                }]),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount(
            &vol,
            &format!("{SECRETS_MOUNT}/{}", role.as_str()),
            true,
        ));
    }
    if let Some(t) = &spec.tls {
        volumes.push(Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(t.secret_name.clone()),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount("tls", TLS_MOUNT, true));
    }
    if let Some(b) = &spec.backup {
        volumes.push(Volume {
            name: "backup".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: b.repository.claim_name.clone(),
                ..PersistentVolumeClaimVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount("backup", BACKUP_MOUNT, false));
    }
    if spec.storage.wal.is_some() {
        mounts.push(mount("wal", WAL_MOUNT, false));
    }

    let field = |path: &str| EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.into(),
            ..ObjectFieldSelector::default()
        }),
        ..EnvVarSource::default()
    };
    let mut env = vec![
        EnvVar {
            name: "RALE_MEMBER".into(),
            value_from: Some(field("metadata.name")),
            ..EnvVar::default()
        },
        EnvVar {
            name: "RALE_CONFIG_DIR".into(),
            value: Some(CONFIG_MOUNT.into()),
            ..EnvVar::default()
        },
        EnvVar {
            name: "RALE_SECRETS_DIR".into(),
            value: Some(SECRETS_MOUNT.into()),
            ..EnvVar::default()
        },
        EnvVar {
            name: "RALE_RUN_DIR".into(),
            value: Some(RUN_DIR.into()),
            ..EnvVar::default()
        },
        EnvVar {
            name: "RALE_PG_BIN".into(),
            value: Some(format!("/usr/lib/postgresql/{}/bin", spec.postgres_version)),
            ..EnvVar::default()
        },
    ];
    if spec.storage.wal.is_some() {
        env.push(EnvVar {
            name: "RALE_WAL_DIR".into(),
            value: Some(format!("{WAL_MOUNT}/pg_wal")),
            ..EnvVar::default()
        });
    }
    let (image, entrypoint) = match &spec.images.postgres {
        Some(pg) => (pg.clone(), format!("{AGENT_BIN}/rale-entrypoint")),
        None => (
            spec.images.agent.clone(),
            "/usr/local/bin/rale-entrypoint".to_string(),
        ),
    };
    if split_images {
        env.push(EnvVar {
            name: "RALE_RAMD".into(),
            value: Some(format!("{AGENT_BIN}/ramd")),
            ..EnvVar::default()
        });
        volumes.push(Volume {
            name: "agent-bin".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
        mounts.push(mount("agent-bin", AGENT_BIN, true));
    }

    let restricted = SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    };
    let init_containers = split_images.then(|| {
        vec![Container {
            name: "install-ramd".into(),
            image: Some(spec.images.agent.clone()),
            image_pull_policy: pull_policy.clone(),
            command: Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("cp /usr/local/bin/ramd /usr/local/bin/rale-entrypoint {AGENT_BIN}/"),
            ]),
            volume_mounts: Some(vec![mount("agent-bin", AGENT_BIN, false)]),
            security_context: Some(restricted.clone()),
            ..Container::default()
        }]
    });

    let container = Container {
        name: "postgres".into(),
        image: Some(image),
        image_pull_policy: pull_policy,
        command: Some(vec![entrypoint]),
        env: Some(env),
        ports: Some(vec![
            ContainerPort {
                name: Some("postgresql".into()),
                container_port: i32::from(PG_PORT),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("api".into()),
                container_port: i32::from(API_PORT),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        // `/readiness`: the primary, or a streaming replica within the lag bound.
        readiness_probe: Some(http_probe("/readiness", tls, 5, 3)),
        // `/liveness`: the agent's HA loop runs. Generous: a restart of the agent of a
        // primary costs a failover.
        liveness_probe: Some(http_probe("/liveness", tls, 10, 6)),
        startup_probe: Some(http_probe("/liveness", tls, 10, 60)),
        resources: spec.resources.clone(),
        volume_mounts: Some(mounts),
        security_context: Some(restricted),
        ..Container::default()
    };

    let mut claims = vec![claim(
        "data",
        &spec.storage.size,
        spec.storage.storage_class.as_ref(),
    )];
    if let Some(w) = &spec.storage.wal {
        claims.push(claim("wal", &w.size, w.storage_class.as_ref()));
    }

    let pod_labels = cluster_labels(&id.name);
    StatefulSet {
        metadata: id.meta(id.name.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.instances),
            service_name: Some(headless_service_name(&id.name)),
            // Every member must be up for the Raft quorum that elects the first primary.
            pod_management_policy: Some("Parallel".into()),
            // The operator rolls pods itself: replicas first, then a switchover, then
            // the old primary.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(spec.storage.retention.when_deleted.as_str().into()),
                    when_scaled: Some(spec.storage.retention.when_scaled.as_str().into()),
                },
            ),
            selector: LabelSelector {
                match_labels: Some(pod_selector(&id.name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    init_containers,
                    containers: vec![container],
                    volumes: Some(volumes),
                    security_context: Some(PodSecurityContext {
                        run_as_user: Some(POSTGRES_UID),
                        run_as_group: Some(POSTGRES_UID),
                        fs_group: Some(POSTGRES_UID),
                        run_as_non_root: Some(true),
                        ..PodSecurityContext::default()
                    }),
                    // A primary's agent releases its lease on SIGTERM, so that another
                    // member takes over without waiting for the lease to expire.
                    termination_grace_period_seconds: Some(60),
                    affinity: Some(
                        spec.affinity
                            .clone()
                            .unwrap_or_else(|| default_affinity(&id.name)),
                    ),
                    topology_spread_constraints: (!spec.topology_spread_constraints.is_empty())
                        .then(|| spec.topology_spread_constraints.clone()),
                    node_selector: (!spec.node_selector.is_empty())
                        .then(|| spec.node_selector.clone()),
                    tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
                    image_pull_secrets: (!spec.images.pull_secrets.is_empty()).then(|| {
                        spec.images
                            .pull_secrets
                            .iter()
                            .map(|n| LocalObjectReference { name: n.clone() })
                            .collect()
                    }),
                    enable_service_links: Some(false),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(claims),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}
