//! The chart's ClusterRole grants exactly what the operator uses: every request the
//! operator made to the stand-in API server, in every scenario, is allowed by
//! `charts/rale-operator/templates/rbac.yaml`, and every verb granted there was used.

mod standin;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use rale_operator::controller::{Context, reconcile, run_with};
use rale_operator::crd::RaleCluster;
use serde_json::{Value, json};
use standin::{Agents, Store, merge_patch};

const NS: &str = "db";

fn key(resource: &str, name: &str) -> (String, String, String) {
    (resource.into(), NS.into(), name.into())
}

/// (resource, verb) pairs the ClusterRole grants.
fn granted() -> BTreeSet<(String, String)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/rale-operator/templates/rbac.yaml");
    let text = std::fs::read_to_string(path).expect("rbac.yaml");
    // Drop the template lines; what is left is plain YAML.
    let plain: String = text
        .lines()
        .filter(|l| !l.contains("{{"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut out = BTreeSet::new();
    for doc in plain.split("\n---\n") {
        let v: serde_yaml::Value = serde_yaml::from_str(doc).expect("YAML");
        if v["kind"] != "ClusterRole" {
            continue;
        }
        for rule in v["rules"].as_sequence().expect("rules") {
            for r in rule["resources"].as_sequence().expect("resources") {
                for verb in rule["verbs"].as_sequence().expect("verbs") {
                    out.insert((
                        r.as_str().expect("str").to_string(),
                        verb.as_str().expect("str").to_string(),
                    ));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_role_grants_exactly_what_the_operator_uses() {
    let store = Arc::new(Mutex::new(Store::default()));
    let agents = Arc::new(Mutex::new(Agents::default()));
    let (api, agent_addr) = standin::start(store.clone(), agents.clone()).await;
    let client = kube::Client::try_from(kube::Config::new(
        format!("http://{api}").parse().expect("url"),
    ))
    .expect("client");
    let ctx = Arc::new(Context {
        client,
        agent_route: Some(rale_operator::agents::AgentClient::prefix_route(format!(
            "http://{agent_addr}"
        ))),
    });
    store.lock().expect("store").objects.insert(
        key("raleclusters", "pg"),
        json!({"apiVersion": "rale.dev/v1alpha1", "kind": "RaleCluster",
            "metadata": {"name": "pg", "namespace": NS, "uid": "c-uid", "generation": 1},
            "spec": {"instances": 3, "images": {"agent": "a"}, "storage": {"size": "1Gi"},
                     "tls": {"secretName": "pg-tls"}}}),
    );
    // The TLS Secret is the user's; the CA is a placeholder the client must accept.
    store.lock().expect("store").objects.insert(
        key("secrets", "pg-tls"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pg-tls", "namespace": NS}, "data": {}}),
    );

    // The Controller's lists and watches.
    let task = tokio::spawn(run_with(ctx.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    task.abort();

    let get = |r: &str, n: &str| {
        store
            .lock()
            .expect("store")
            .objects
            .get(&key(r, n))
            .cloned()
    };
    let run = |ctx: Arc<Context>| {
        let c: RaleCluster =
            serde_json::from_value(get("raleclusters", "pg").expect("cluster")).expect("cluster");
        async move { reconcile(Arc::new(c), ctx).await.expect("reconcile") }
    };
    let edit = |patch: Value| {
        let mut st = store.lock().expect("store");
        let obj = st
            .objects
            .get_mut(&key("raleclusters", "pg"))
            .expect("cluster");
        merge_patch(&mut obj["spec"], &patch);
    };
    let pods = |names: &[&str], rev: &str, update: &str| {
        let mut st = store.lock().expect("store");
        if let Some(sts) = st.objects.get_mut(&key("statefulsets", "pg")) {
            sts["status"] = json!({"updateRevision": update});
        }
        let keep: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
        st.objects
            .retain(|(r, _, n), _| r != "pods" || keep.contains(n));
        for n in names {
            let labels = st
                .objects
                .get(&key("pods", n))
                .map(|p| p["metadata"]["labels"].clone())
                .unwrap_or(json!({"rale.dev/cluster": "pg"}));
            let mut labels = labels;
            labels["controller-revision-hash"] = rev.into();
            st.objects.insert(
                key("pods", n),
                json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": n, "namespace": NS, "labels": labels},
                "spec": {"containers": [{"name": "postgres"}]},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            );
        }
    };
    run(ctx.clone()).await;
    pods(&["pg-0", "pg-1", "pg-2"], "r1", "r1");
    {
        let mut a = agents.lock().expect("agents");
        a.leader = "pg-2".into();
        a.members = vec![("pg-0".into(), 1), ("pg-1".into(), 2), ("pg-2".into(), 3)];
    }
    run(ctx.clone()).await;
    // A rolling update (pod deletion), disabled Service and PDB (deletion), scale down.
    pods(&["pg-0", "pg-1", "pg-2"], "r1", "r2");
    run(ctx.clone()).await;
    edit(
        json!({"services": {"r": {"enabled": false}}, "podDisruptionBudget": {"enabled": false}, "instances": 2}),
    );
    pods(&["pg-0", "pg-1", "pg-2"], "r2", "r2");
    for _ in 0..4 {
        run(ctx.clone()).await;
    }
    pods(&["pg-0", "pg-1"], "r2", "r2");
    run(ctx.clone()).await;

    let used: BTreeSet<(String, String)> = store.lock().expect("store").verbs.clone();
    let granted = granted();
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(
        missing.is_empty(),
        "the operator used what the ClusterRole does not grant: {missing:?}"
    );
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "the ClusterRole grants what the operator never used: {unused:?}"
    );
}
