//! The Helm chart lints, renders, and every rendered object (CRD included) validates
//! against the Kubernetes OpenAPI schemas. SKIPPED when `helm` (or `RALE_HELM`) or
//! `kubernetes-validate` is absent; docs/kubernetes.md says where Helm 4 comes from.

mod common;

use std::process::Command;

fn chart() -> std::path::PathBuf {
    common::workspace().join("charts/rale-operator")
}

#[test]
fn helm_lint_passes() {
    let Some(helm) = common::tool("helm", "RALE_HELM", "version") else {
        return;
    };
    let (ok, out) = common::run(Command::new(&helm).args(["lint", "--strict"]).arg(chart()));
    println!("{out}");
    assert!(ok, "helm lint failed:\n{out}");
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

#[test]
fn helm_template_output_validates() {
    let Some(helm) = common::tool("helm", "RALE_HELM", "version") else {
        return;
    };
    let Some(kv) = common::tool("kubernetes-validate", "KUBERNETES_VALIDATE", "--version") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let cases: [(&str, &[&str]); 2] = [
        ("defaults", &[]),
        (
            "custom",
            &[
                "--set",
                "serviceAccount.name=ops",
                "--set",
                "image.tag=9.9.9",
                "--set",
                "imagePullSecrets[0].name=regcred",
                "--set",
                "nodeSelector.disktype=ssd",
                "--set",
                "podAnnotations.a=b",
                "--set",
                "logLevel=debug",
            ],
        ),
    ];
    for (label, extra) in cases {
        let (ok, rendered) = common::run(
            Command::new(&helm)
                .args([
                    "template",
                    "rale",
                    "--namespace",
                    "rale-system",
                    "--include-crds",
                ])
                .arg(chart())
                .args(extra),
        );
        assert!(ok, "helm template ({label}) failed:\n{rendered}");
        let kinds: Vec<&str> = rendered
            .lines()
            .filter_map(|l| l.strip_prefix("kind: "))
            .collect();
        for k in [
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
        ] {
            assert!(kinds.contains(&k), "{label}: no {k} in {kinds:?}");
        }
        if label == "custom" {
            assert!(rendered.contains(":9.9.9\""), "image tag");
            assert!(rendered.contains("name: ops"), "service account name");
        }
        let file = dir.path().join(format!("{label}.yaml"));
        std::fs::write(&file, &rendered).expect("write");
        let (ok, out) = common::run(
            Command::new(&kv)
                .args([
                    "--strict",
                    "--kubernetes-version",
                    common::KUBERNETES_VERSION,
                ])
                .arg(&file),
        );
        println!("{out}");
        assert!(ok, "{label}: rendered chart does not validate:\n{out}");
        assert_eq!(
            out.matches(" passed ").count(),
            kinds.len(),
            "{label}: every object validated:\n{out}"
        );
    }
}

#[test]
fn the_clusterrole_grants_no_wildcards_and_no_secret_listing() {
    let text = std::fs::read_to_string(chart().join("templates/rbac.yaml")).expect("rbac.yaml");
    assert!(!text.contains("\"*\""), "no wildcard verbs or resources");
    let secrets = text
        .lines()
        .skip_while(|l| !l.contains("resources: [\"secrets\"]"))
        .nth(1)
        .expect("secrets rule");
    assert_eq!(secrets.trim(), "verbs: [\"get\", \"create\"]");
}

#[test]
fn values_schema_refuses_typos_and_two_replicas() {
    let Some(helm) = common::tool("helm", "RALE_HELM", "version") else {
        return;
    };
    for bad in [
        "imagee.tag=1",
        "replicaCount=2",
        "image.pullPolicy=Sometimes",
    ] {
        let (ok, out) = common::run(
            Command::new(&helm)
                .args(["template", "rale"])
                .arg(chart())
                .args(["--set", bad]),
        );
        assert!(
            !ok && out.contains("schema"),
            "--set {bad} was accepted:\n{out}"
        );
    }
}
