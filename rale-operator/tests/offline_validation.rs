//! Every object the operator produces validates against the Kubernetes OpenAPI schemas
//! (`kubernetes-validate --strict`), and the sample `RaleCluster`s validate against the
//! CRD's schema (`check-jsonschema`), both offline. Each test prints SKIPPED and passes
//! when its tool is absent (`pip install kubernetes-validate check-jsonschema`).

mod common;

use std::process::Command;

use kube::CustomResourceExt;
use rale_operator::crd::RaleCluster;
use rale_operator::resources::{Credentials, desired_objects};

fn sample(rel: &str) -> RaleCluster {
    let text = std::fs::read_to_string(common::workspace().join(rel)).expect("sample");
    let mut c: RaleCluster = serde_yaml::from_str(&text).expect("sample parses as RaleCluster");
    c.metadata.namespace = Some("db".into());
    c.metadata.uid = Some("7c0f3a52-0000-4000-8000-000000000001".into());
    c
}

fn with_spec(name: &str, spec: &str) -> RaleCluster {
    let spec: serde_yaml::Value = serde_yaml::from_str(spec).expect("spec");
    serde_json::from_value(serde_json::json!({
        "apiVersion": "rale.dev/v1alpha1", "kind": "RaleCluster",
        "metadata": {"name": name, "namespace": "db", "uid": "7c0f3a52-0000-4000-8000-000000000002"},
        "spec": spec,
    }))
    .expect("RaleCluster")
}

/// The clusters whose objects are validated: both samples, 1 and 7 instances, no
/// backups, custom services.
fn clusters() -> Vec<(&'static str, RaleCluster)> {
    vec![
        (
            "minimal",
            sample("deploy/examples/ralecluster-minimal.yaml"),
        ),
        ("full", sample("deploy/examples/ralecluster-full.yaml")),
        (
            "one",
            with_spec(
                "one",
                "instances: 1\nimages: {agent: a}\nstorage: {size: 1Gi}\n",
            ),
        ),
        (
            "seven",
            with_spec(
                "seven",
                "instances: 7\nimages: {agent: a}\nstorage: {size: 1Gi, wal: {size: 1Gi}}\npodDisruptionBudget: {maxUnavailable: 2}\n",
            ),
        ),
        (
            "services",
            with_spec(
                "svc",
                "instances: 3\nimages: {agent: a}\nstorage: {size: 1Gi}\nservices:\n  rw: {type: NodePort, annotations: {a.example/x: y}}\n  ro: {enabled: false}\n  r: {type: LoadBalancer, labels: {tier: db}}\n",
            ),
        ),
    ]
}

#[test]
fn every_produced_object_validates_against_kubernetes_schemas() {
    let Some(kv) = common::tool("kubernetes-validate", "KUBERNETES_VALIDATE", "--version") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = Vec::new();
    for (label, c) in clusters() {
        let objects = desired_objects(&c, &Credentials::default()).expect("valid spec");
        for (i, v) in objects
            .to_values()
            .expect("serializes")
            .into_iter()
            .enumerate()
        {
            let kind = v["kind"].as_str().unwrap_or("x").to_ascii_lowercase();
            let path = dir.path().join(format!("{label}-{i:02}-{kind}.yaml"));
            std::fs::write(&path, serde_yaml::to_string(&v).expect("YAML")).expect("write");
            files.push(path);
        }
    }
    // The CRD itself is an apiextensions.k8s.io/v1 object.
    files.push(common::workspace().join("deploy/crds/ralecluster.yaml"));
    let (ok, out) = common::run(
        Command::new(&kv)
            .args([
                "--strict",
                "--kubernetes-version",
                common::KUBERNETES_VERSION,
            ])
            .args(&files),
    );
    println!("{out}");
    assert!(ok, "kubernetes-validate refused an object:\n{out}");
    assert_eq!(
        out.matches(" passed ").count(),
        files.len(),
        "every file passed:\n{out}"
    );
}

/// The CRD's schema as a JSON Schema that also refuses unknown fields (the API server
/// would prune them silently; `kubectl --validate=strict` refuses them).
fn strict_schema() -> serde_json::Value {
    fn close(v: &mut serde_json::Value) {
        if let Some(m) = v.as_object_mut() {
            if m.contains_key("properties")
                && !m.contains_key("additionalProperties")
                && !m.contains_key("x-kubernetes-preserve-unknown-fields")
            {
                m.insert("additionalProperties".into(), false.into());
            }
            for (_, child) in m.iter_mut() {
                close(child);
            }
        } else if let Some(a) = v.as_array_mut() {
            a.iter_mut().for_each(close);
        }
    }
    let crd = RaleCluster::crd();
    let mut schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("schema"),
    )
    .expect("JSON");
    close(&mut schema);
    let props = schema["properties"].as_object_mut().expect("properties");
    props.insert(
        "apiVersion".into(),
        serde_json::json!({"const": "rale.dev/v1alpha1"}),
    );
    props.insert("kind".into(), serde_json::json!({"const": "RaleCluster"}));
    props.insert("metadata".into(), serde_json::json!({"type": "object"}));
    schema
}

#[test]
fn samples_validate_against_the_crd_and_typos_do_not() {
    let Some(cj) = common::tool("check-jsonschema", "CHECK_JSONSCHEMA", "--version") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let schema = dir.path().join("ralecluster.schema.json");
    std::fs::write(
        &schema,
        serde_json::to_string_pretty(&strict_schema()).expect("JSON"),
    )
    .expect("write");
    let check = |file: &std::path::Path| {
        common::run(Command::new(&cj).arg("--schemafile").arg(&schema).arg(file))
    };
    for rel in [
        "deploy/examples/ralecluster-minimal.yaml",
        "deploy/examples/ralecluster-full.yaml",
    ] {
        let (ok, out) = check(&common::workspace().join(rel));
        assert!(ok, "{rel} does not validate against the CRD:\n{out}");
    }
    // The check has teeth: a misspelt field, a wrong enum and a bound are refused.
    let bad = [
        ("typo", "instancez: 3\n  instances: 3"),
        ("enum", "instances: 3\n  synchronous: {mode: always}"),
        ("bound", "instances: 0"),
    ];
    let minimal = std::fs::read_to_string(
        common::workspace().join("deploy/examples/ralecluster-minimal.yaml"),
    )
    .expect("sample");
    for (label, replacement) in bad {
        let text = minimal.replace("instances: 3", replacement);
        assert_ne!(text, minimal);
        let path = dir.path().join(format!("bad-{label}.yaml"));
        std::fs::write(&path, text).expect("write");
        let (ok, out) = check(&path);
        assert!(!ok, "{label}: a broken sample passed:\n{out}");
    }
}
