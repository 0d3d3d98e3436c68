//! Every desired object from a spec.

use super::*;
use crate::crd::RaleCluster;

/// A cluster from a YAML spec (metadata filled in).
pub(crate) fn cluster(name: &str, spec_yaml: &str) -> RaleCluster {
    let spec: serde_yaml::Value = serde_yaml::from_str(spec_yaml).expect("spec YAML");
    let v = serde_json::json!({
        "apiVersion": "rale.dev/v1alpha1",
        "kind": "RaleCluster",
        "metadata": {"name": name, "namespace": "db", "uid": "7c0f3a52-0000-4000-8000-000000000001", "generation": 3},
        "spec": spec,
    });
    serde_json::from_value(v).expect("RaleCluster")
}

fn minimal(instances: i32) -> RaleCluster {
    cluster(
        "pg",
        &format!("instances: {instances}\nimages: {{agent: 'ramd:1'}}\nstorage: {{size: 1Gi}}\n"),
    )
}

fn sts_spec(o: &DesiredObjects) -> &k8s_openapi::api::apps::v1::StatefulSetSpec {
    o.stateful_set.spec.as_ref().expect("spec")
}

fn pod_spec(o: &DesiredObjects) -> &k8s_openapi::api::core::v1::PodSpec {
    sts_spec(o).template.spec.as_ref().expect("pod spec")
}

fn owned_by_cluster(meta: &ObjectMeta) {
    let refs = meta.owner_references.as_ref().expect("owner references");
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].kind, "RaleCluster");
    assert_eq!(refs[0].api_version, "rale.dev/v1alpha1");
    assert_eq!(refs[0].name, "pg");
    assert_eq!(refs[0].uid, "7c0f3a52-0000-4000-8000-000000000001");
    assert_eq!(refs[0].controller, Some(true));
    assert_eq!(meta.namespace.as_deref(), Some("db"));
    assert_eq!(
        meta.labels
            .as_ref()
            .and_then(|l| l.get(labels::CLUSTER))
            .map(String::as_str),
        Some("pg")
    );
}

#[test]
fn one_three_and_seven_instances() {
    for n in [1, 3, 7] {
        let o = desired_objects(&minimal(n), &Credentials::default()).expect("valid");
        assert_eq!(sts_spec(&o).replicas, Some(n));
        assert_eq!(sts_spec(&o).service_name.as_deref(), Some("pg-agents"));
        assert_eq!(
            sts_spec(&o).pod_management_policy.as_deref(),
            Some("Parallel")
        );
        assert_eq!(
            sts_spec(&o)
                .update_strategy
                .as_ref()
                .and_then(|u| u.type_.as_deref()),
            Some("OnDelete")
        );
        let data = o.config_map.data.as_ref().expect("data");
        assert_eq!(data.len(), n as usize);
        for i in 0..n {
            let file = &data[&format!("pg-{i}.toml")];
            let t: toml::Table = toml::from_str(file).expect("valid TOML");
            assert_eq!(t["peers"].as_array().map(Vec::len), Some(n as usize));
        }
        assert_eq!(o.secrets.len(), 3);
        assert_eq!(o.client_services.len(), 3);
        assert!(o.disabled_services.is_empty());
        assert!(o.pdb.is_some());
        // Every object is owned by the cluster.
        for s in &o.secrets {
            owned_by_cluster(&s.metadata);
        }
        owned_by_cluster(&o.config_map.metadata);
        owned_by_cluster(&o.stateful_set.metadata);
        owned_by_cluster(&o.headless_service.metadata);
        for s in &o.client_services {
            owned_by_cluster(&s.metadata);
        }
        owned_by_cluster(&o.pdb.as_ref().expect("pdb").metadata);
        assert_eq!(
            o.to_values().expect("serializes").len(),
            3 + 1 + 1 + 1 + 3 + 1
        );
    }
}

#[test]
fn minimal_spec_defaults() {
    let o = desired_objects(&minimal(3), &Credentials::default()).expect("valid");
    let pod = pod_spec(&o);
    assert!(
        pod.init_containers.is_none(),
        "one image: no init container"
    );
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("ramd:1"));
    assert_eq!(
        c.command.as_deref(),
        Some(&["/usr/local/bin/rale-entrypoint".to_string()][..])
    );
    let probe = c
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("probe");
    assert_eq!(probe.path.as_deref(), Some("/readiness"));
    assert_eq!(probe.scheme.as_deref(), Some("HTTP"));
    // No backup: no repository volume and no [backup] section.
    let vols: Vec<&str> = pod
        .volumes
        .as_ref()
        .expect("volumes")
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert!(!vols.contains(&"backup"), "{vols:?}");
    assert!(!vols.contains(&"tls"));
    assert!(!o.config_map.data.as_ref().expect("data")["pg-0.toml"].contains("[backup]"));
    // One data claim, retained by default.
    let claims = sts_spec(&o)
        .volume_claim_templates
        .as_ref()
        .expect("claims");
    assert_eq!(claims.len(), 1);
    let ret = sts_spec(&o)
        .persistent_volume_claim_retention_policy
        .as_ref()
        .expect("retention");
    assert_eq!(ret.when_deleted.as_deref(), Some("Retain"));
    assert_eq!(ret.when_scaled.as_deref(), Some("Retain"));
    // Default anti-affinity: one member per node, preferred.
    assert!(
        pod.affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .is_some()
    );
    assert_eq!(
        pod.security_context
            .as_ref()
            .and_then(|s| s.run_as_non_root),
        Some(true)
    );
    // Headless Service publishes members before they are ready.
    let h = o.headless_service.spec.as_ref().expect("spec");
    assert_eq!(h.cluster_ip.as_deref(), Some("None"));
    assert_eq!(h.publish_not_ready_addresses, Some(true));
    // The role selectors.
    let sel = |i: usize| {
        o.client_services[i]
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .expect("selector")
    };
    assert_eq!(o.client_services[0].metadata.name.as_deref(), Some("pg-rw"));
    assert_eq!(
        sel(0).get(labels::ROLE).map(String::as_str),
        Some("primary")
    );
    assert_eq!(o.client_services[1].metadata.name.as_deref(), Some("pg-ro"));
    assert_eq!(
        sel(1).get(labels::ROLE).map(String::as_str),
        Some("replica")
    );
    assert_eq!(o.client_services[2].metadata.name.as_deref(), Some("pg-r"));
    assert_eq!(sel(2).get(labels::ROLE), None);
    for i in 0..3 {
        assert_eq!(sel(i).get(labels::CLUSTER).map(String::as_str), Some("pg"));
        assert_eq!(
            o.client_services[i]
                .spec
                .as_ref()
                .and_then(|s| s.type_.as_deref()),
            Some("ClusterIP")
        );
    }
    // Generated secrets hold a username and a 32-character password.
    for s in &o.secrets {
        let d = s.string_data.as_ref().expect("string data");
        assert_eq!(d["password"].len(), 32);
        assert!(d.contains_key("username"));
    }
    assert_ne!(
        o.secrets[0].string_data.as_ref().map(|d| &d["password"]),
        o.secrets[1].string_data.as_ref().map(|d| &d["password"])
    );
}

/// A spec with every field set.
pub(crate) const FULL: &str = r#"
instances: 3
postgresVersion: 15
images:
  agent: registry.example/rale/ramd:0.1.0
  postgres: registry.example/postgres:15
  pullPolicy: IfNotPresent
  pullSecrets: [regcred]
storage:
  size: 20Gi
  storageClass: fast
  wal: {size: 5Gi, storageClass: fast}
  retention: {whenDeleted: Delete, whenScaled: Retain}
resources:
  requests: {cpu: "1", memory: 2Gi}
  limits: {memory: 2Gi}
postgresql:
  parameters: {shared_buffers: 512MB, max_connections: "200", work_mem: 8MB}
  pgHba: ["host app app 10.0.0.0/8 scram-sha-256"]
synchronous: {mode: quorum, nodeCount: 1, strict: true}
backup:
  tool: pgbackrest
  repository: {claimName: pg-backups, subPath: prod}
  schedules:
    - {name: nightly, kind: full, cron: "0 30 2 * * *"}
    - {name: hourly, kind: incremental, cron: "0 0 * * * *", placement: primary}
  retention: {fullCount: 2}
services:
  rw: {type: LoadBalancer, annotations: {service.beta.kubernetes.io/aws-load-balancer-internal: "true"}}
  ro: {type: NodePort, labels: {team: data}}
  r: {enabled: false}
podDisruptionBudget: {maxUnavailable: 1}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector: {matchLabels: {rale.dev/cluster: pg}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector: {matchLabels: {rale.dev/cluster: pg}}
nodeSelector: {disktype: ssd}
tolerations: [{key: dedicated, operator: Equal, value: db, effect: NoSchedule}]
tls: {secretName: pg-tls}
secrets: {superuser: my-superuser}
paused: false
"#;

#[test]
fn full_spec_custom_services_and_everything_else() {
    let c = cluster("pg", FULL);
    let o = desired_objects(&c, &Credentials::default()).expect("valid");
    // Custom services: rw LoadBalancer with its annotation, ro NodePort with a label, r off.
    assert_eq!(o.client_services.len(), 2);
    assert_eq!(o.disabled_services, ["pg-r"]);
    let rw = &o.client_services[0];
    assert_eq!(
        rw.spec.as_ref().and_then(|s| s.type_.as_deref()),
        Some("LoadBalancer")
    );
    assert_eq!(
        rw.metadata
            .annotations
            .as_ref()
            .map(|a| a["service.beta.kubernetes.io/aws-load-balancer-internal"].as_str()),
        Some("true")
    );
    let ro = &o.client_services[1];
    assert_eq!(
        ro.spec.as_ref().and_then(|s| s.type_.as_deref()),
        Some("NodePort")
    );
    assert_eq!(
        ro.metadata.labels.as_ref().map(|l| l["team"].as_str()),
        Some("data")
    );
    // The named superuser Secret is not generated; the others are.
    let names: Vec<&str> = o
        .secrets
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["pg-replication", "pg-api"]);
    let pod = pod_spec(&o);
    let vol = |n: &str| {
        pod.volumes
            .as_ref()
            .and_then(|v| v.iter().find(|v| v.name == n).cloned())
    };
    assert_eq!(
        vol("secret-superuser")
            .and_then(|v| v.secret)
            .and_then(|s| s.secret_name)
            .as_deref(),
        Some("my-superuser")
    );
    assert_eq!(
        vol("tls")
            .and_then(|v| v.secret)
            .and_then(|s| s.secret_name)
            .as_deref(),
        Some("pg-tls")
    );
    assert_eq!(
        vol("backup")
            .and_then(|v| v.persistent_volume_claim)
            .map(|p| p.claim_name)
            .as_deref(),
        Some("pg-backups")
    );
    // Two images: an init container brings ramd to the PostgreSQL image.
    let init = pod.init_containers.as_ref().expect("init container");
    assert_eq!(
        init[0].image.as_deref(),
        Some("registry.example/rale/ramd:0.1.0")
    );
    let main = &pod.containers[0];
    assert_eq!(main.image.as_deref(), Some("registry.example/postgres:15"));
    assert_eq!(main.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert!(main.resources.is_some());
    let probe = main
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("probe");
    assert_eq!(probe.scheme.as_deref(), Some("HTTPS"));
    let env: Vec<&str> = main
        .env
        .as_ref()
        .expect("env")
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert!(
        env.contains(&"RALE_WAL_DIR") && env.contains(&"RALE_RAMD"),
        "{env:?}"
    );
    // WAL claim and retention.
    let claims = sts_spec(&o)
        .volume_claim_templates
        .as_ref()
        .expect("claims");
    assert_eq!(
        claims
            .iter()
            .filter_map(|c| c.metadata.name.as_deref())
            .collect::<Vec<_>>(),
        ["data", "wal"]
    );
    assert_eq!(
        sts_spec(&o)
            .persistent_volume_claim_retention_policy
            .as_ref()
            .and_then(|r| r.when_deleted.as_deref()),
        Some("Delete")
    );
    // User affinity replaces the default; spread, selector, tolerations, pull secrets.
    assert!(
        pod.affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|p| p
                .required_during_scheduling_ignored_during_execution
                .as_ref())
            .is_some()
    );
    assert_eq!(
        pod.topology_spread_constraints.as_ref().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        pod.node_selector.as_ref().map(|n| n["disktype"].as_str()),
        Some("ssd")
    );
    assert_eq!(pod.tolerations.as_ref().map(Vec::len), Some(1));
    assert_eq!(
        pod.image_pull_secrets.as_ref().map(|p| p[0].name.as_str()),
        Some("regcred")
    );
    // The ramd files: TLS, sync, backup, parameters, hba, WAL wrappers.
    let file = &o.config_map.data.as_ref().expect("data")["pg-2.toml"];
    let t: toml::Table = toml::from_str(file).expect("valid TOML");
    assert_eq!(
        t["api"]["url"].as_str(),
        Some("https://pg-2.pg-agents.db.svc:8008")
    );
    assert_eq!(
        t["bootstrap"]["synchronous"]["strict"].as_bool(),
        Some(true)
    );
    assert_eq!(
        t["bootstrap"]["postgresql_parameters"]["max_connections"].as_str(),
        Some("200")
    );
    assert_eq!(
        t["backup"]["pgbackrest"]["repo_path"].as_str(),
        Some("/var/lib/rale/backup/prod")
    );
    assert_eq!(t["backup"]["schedules"].as_array().map(Vec::len), Some(2));
    assert_eq!(t["postgresql"]["bin_dir"].as_str(), Some("/run/rale/bin"));
    let hba: Vec<&str> = t["postgresql"]["hba_extra"]
        .as_array()
        .expect("hba")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        hba.contains(&"host app app 10.0.0.0/8 scram-sha-256"),
        "{hba:?}"
    );
    assert_eq!(o.parameters.len(), 3);
}

#[test]
fn no_pdb_when_disabled_and_barman_backups() {
    let c = cluster(
        "pg",
        "instances: 2\nimages: {agent: a}\nstorage: {size: 1Gi}\npodDisruptionBudget: {enabled: false}\n\
         backup: {tool: barman, repository: {claimName: b}}\n",
    );
    let o = desired_objects(&c, &Credentials::default()).expect("valid");
    assert!(o.pdb.is_none());
    let t: toml::Table =
        toml::from_str(&o.config_map.data.as_ref().expect("data")["pg-0.toml"]).expect("TOML");
    assert_eq!(t["backup"]["tool"].as_str(), Some("barman"));
    assert_eq!(
        t["backup"]["barman"]["base_dir"].as_str(),
        Some("/var/lib/rale/backup/pg")
    );
}

#[test]
fn invalid_parameter_builds_nothing_and_names_it() {
    let c = cluster(
        "pg",
        "instances: 3\nimages: {agent: a}\nstorage: {size: 1Gi}\n\
         postgresql: {parameters: {shared_buffers: 1GB, wal_level: hot_standbyy}}\n",
    );
    match desired_objects(&c, &Credentials::default()) {
        Err(Error::Parameters(r)) => {
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].name, "wal_level");
            assert!(!r[0].reason.is_empty());
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn missing_identity_and_bad_specs_are_refused() {
    let mut c = minimal(1);
    c.metadata.uid = None;
    assert!(matches!(
        desired_objects(&c, &Credentials::default()),
        Err(Error::MissingField("metadata.uid"))
    ));
    let mut c = minimal(1);
    c.spec.instances = 0;
    assert!(matches!(
        desired_objects(&c, &Credentials::default()),
        Err(Error::InvalidSpec(_))
    ));
    let c = cluster(
        &"x".repeat(41),
        "instances: 1\nimages: {agent: a}\nstorage: {size: 1Gi}\n",
    );
    assert!(matches!(
        desired_objects(&c, &Credentials::default()),
        Err(Error::InvalidSpec(_))
    ));
}

#[test]
fn user_names_from_existing_secrets_reach_the_ramd_files() {
    let creds = Credentials {
        superuser: "admin_pg".into(),
        replication_user: "streamer".into(),
        api_user: "ops".into(),
    };
    let o = desired_objects(&minimal(3), &creds).expect("valid");
    let t: toml::Table =
        toml::from_str(&o.config_map.data.as_ref().expect("data")["pg-1.toml"]).expect("TOML");
    assert_eq!(t["postgresql"]["superuser"].as_str(), Some("admin_pg"));
    assert_eq!(
        t["postgresql"]["replication_user"].as_str(),
        Some("streamer")
    );
    assert_eq!(t["api"]["username"].as_str(), Some("ops"));
}

#[test]
fn scaling_up_a_recorded_cluster_gives_new_members_fresh_ids_that_join() {
    let mut c = minimal(5);
    c.status = Some(crate::crd::RaleClusterStatus {
        raft_ids: BTreeMap::from([
            ("pg-0".to_string(), 1),
            ("pg-1".to_string(), 2),
            ("pg-2".to_string(), 3),
        ]),
        next_raft_id: Some(9),
        ..Default::default()
    });
    let o = desired_objects(&c, &Credentials::default()).expect("valid");
    assert_eq!(
        o.topology.members,
        [(0, 1), (1, 2), (2, 3), (3, 9), (4, 10)]
    );
    let data = o.config_map.data.as_ref().expect("data");
    let t: toml::Table = toml::from_str(&data["pg-4.toml"]).expect("TOML");
    assert_eq!(t["consensus"]["join"].as_bool(), Some(true));
    let t: toml::Table = toml::from_str(&data["pg-1.toml"]).expect("TOML");
    assert_eq!(t["peers"].as_array().map(Vec::len), Some(5));
    assert!(t["consensus"].get("join").is_none());
}
