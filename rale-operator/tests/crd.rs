//! The checked-in CRD manifests are exactly what the Rust types generate.

mod common;

#[test]
fn checked_in_crds_match_the_types() {
    let generated = rale_operator::crd::crd_yaml();
    for rel in [
        "deploy/crds/ralecluster.yaml",
        "charts/rale-operator/crds/ralecluster.yaml",
    ] {
        let path = common::workspace().join(rel);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            text == generated,
            "{rel} differs from the CRD generated from rale-operator/src/crd.rs. Regenerate both with:\n  \
             cargo run -p rale-operator -- crd > deploy/crds/ralecluster.yaml && \
             cp deploy/crds/ralecluster.yaml charts/rale-operator/crds/ralecluster.yaml"
        );
    }
}

#[test]
fn crd_has_status_and_scale_subresources() {
    use kube::CustomResourceExt;
    let crd = rale_operator::crd::RaleCluster::crd();
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(v.served && v.storage);
    let sub = v.subresources.as_ref().expect("subresources");
    assert!(sub.status.is_some());
    assert_eq!(
        sub.scale.as_ref().map(|s| s.spec_replicas_path.as_str()),
        Some(".spec.instances")
    );
}
