//! `controller::reconcile` against an in-process stand-in API server and stand-in
//! agents (`tests/standin`): objects created with owner references, role labels
//! following the agents' primary through a failover, parameters sent with
//! `PATCH /config`, a refused parameter as a condition with nothing applied, a second
//! pass writing nothing, scaling up through the membership API, and a rolling update
//! (replicas, switchover, old primary). The test plays the StatefulSet controller and
//! the kubelet (it creates and readies pods). Real agents as pods are not part of it.

mod standin;

use std::sync::{Arc, Mutex};

use rale_operator::controller::{Context, reconcile};
use rale_operator::crd::RaleCluster;
use serde_json::{Value, json};
use standin::{Agents, Store, merge_patch};

const NS: &str = "db";

fn key(resource: &str, name: &str) -> (String, String, String) {
    (resource.into(), NS.into(), name.into())
}

struct Harness {
    store: Arc<Mutex<Store>>,
    agents: Arc<Mutex<Agents>>,
    ctx: Arc<Context>,
}

impl Harness {
    async fn new(spec: Value) -> Harness {
        let store = Arc::new(Mutex::new(Store::default()));
        let agents = Arc::new(Mutex::new(Agents::default()));
        let (api, agent_addr) = standin::start(store.clone(), agents.clone()).await;
        let config = kube::Config::new(format!("http://{api}").parse().expect("url"));
        let client = kube::Client::try_from(config).expect("client");
        let ctx = Arc::new(Context {
            client,
            agent_route: Some(rale_operator::agents::AgentClient::prefix_route(format!(
                "http://{agent_addr}"
            ))),
        });
        store.lock().expect("store").objects.insert(
            key("raleclusters", "pg"),
            json!({"apiVersion": "rale.dev/v1alpha1", "kind": "RaleCluster",
                "metadata": {"name": "pg", "namespace": NS, "uid": "c-uid-1", "generation": 1},
                "spec": spec}),
        );
        Harness { store, agents, ctx }
    }

    fn get(&self, resource: &str, name: &str) -> Option<Value> {
        self.store
            .lock()
            .expect("store")
            .objects
            .get(&key(resource, name))
            .cloned()
    }

    fn edit_spec(&self, patch: Value) {
        let mut st = self.store.lock().expect("store");
        let obj = st
            .objects
            .get_mut(&key("raleclusters", "pg"))
            .expect("cluster");
        merge_patch(&mut obj["spec"], &patch);
        let g = obj["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
        obj["metadata"]["generation"] = g.into();
    }

    async fn reconcile(&self) {
        let cluster: RaleCluster =
            serde_json::from_value(self.get("raleclusters", "pg").expect("cluster"))
                .expect("RaleCluster");
        reconcile(Arc::new(cluster), self.ctx.clone())
            .await
            .expect("reconcile");
    }

    fn writes(&self) -> Vec<String> {
        std::mem::take(&mut self.store.lock().expect("store").writes)
    }

    /// Plays the StatefulSet controller and the kubelet: pods `pg-0 … pg-(n-1)` of
    /// revision `rev` exist, ready as given; the StatefulSet's updateRevision is `update`.
    fn pods(&self, ready: &[bool], rev: &[&str], update: &str) {
        let mut st = self.store.lock().expect("store");
        let sts = st
            .objects
            .get_mut(&key("statefulsets", "pg"))
            .expect("statefulset");
        sts["status"] = json!({"replicas": ready.len(), "updateRevision": update});
        for (i, r) in ready.iter().enumerate() {
            let name = format!("pg-{i}");
            let existing = st.objects.get(&key("pods", &name)).cloned();
            let mut labels = existing
                .as_ref()
                .map(|p| p["metadata"]["labels"].clone())
                .unwrap_or(json!({"rale.dev/cluster": "pg"}));
            labels["controller-revision-hash"] = rev[i].into();
            st.objects.insert(
                key("pods", &name),
                json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": NS, "labels": labels},
                    "spec": {"containers": [{"name": "postgres"}]},
                    "status": {"conditions": [{"type": "Ready", "status": if *r {"True"} else {"False"}}]}}),
            );
        }
    }

    fn role(&self, pod: &str) -> Option<String> {
        self.get("pods", pod).and_then(|p| {
            p["metadata"]["labels"]["rale.dev/role"]
                .as_str()
                .map(str::to_string)
        })
    }

    /// The pods a Service selects.
    fn endpoints(&self, service: &str) -> Vec<String> {
        let svc = self.get("services", service).expect("service");
        let sel = svc["spec"]["selector"]
            .as_object()
            .expect("selector")
            .clone();
        let st = self.store.lock().expect("store");
        st.objects
            .iter()
            .filter(|((r, _, _), p)| {
                r == "pods" && sel.iter().all(|(k, v)| &p["metadata"]["labels"][k] == v)
            })
            .map(|((_, _, n), _)| n.clone())
            .collect()
    }

    fn status(&self) -> Value {
        self.get("raleclusters", "pg").expect("cluster")["status"].clone()
    }

    fn condition(&self, type_: &str) -> Value {
        self.status()["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == type_)
            .cloned()
            .unwrap_or(Value::Null)
    }
}

fn spec() -> Value {
    json!({"instances": 3, "images": {"agent": "ramd:1"}, "storage": {"size": "1Gi"},
        "postgresql": {"parameters": {"work_mem": "8MB"}}})
}

#[tokio::test]
async fn reconcile_creates_labels_follows_failover_and_is_idempotent() {
    let h = Harness::new(spec()).await;

    // First pass: every object, owned by the cluster; no agent answers yet.
    h.reconcile().await;
    for (r, n) in [
        ("secrets", "pg-superuser"),
        ("secrets", "pg-replication"),
        ("secrets", "pg-api"),
        ("configmaps", "pg-config"),
        ("statefulsets", "pg"),
        ("services", "pg-agents"),
        ("services", "pg-rw"),
        ("services", "pg-ro"),
        ("services", "pg-r"),
        ("poddisruptionbudgets", "pg"),
    ] {
        let o = h.get(r, n).unwrap_or_else(|| panic!("{r}/{n} created"));
        assert_eq!(
            o["metadata"]["ownerReferences"][0]["uid"], "c-uid-1",
            "{r}/{n}"
        );
        assert_eq!(
            o["metadata"]["ownerReferences"][0]["controller"], true,
            "{r}/{n}"
        );
    }
    assert_eq!(
        h.get("statefulsets", "pg").expect("sts")["spec"]["replicas"],
        3
    );
    assert_eq!(h.status()["phase"], "Pending");
    assert_eq!(
        h.status()["raftIds"],
        json!({"pg-0": 1, "pg-1": 2, "pg-2": 3})
    );
    let api_password = h.get("secrets", "pg-api").expect("secret")["data"]["password"].clone();

    // Pods run; the agents elected pg-0.
    h.pods(&[true, true, true], &["r1", "r1", "r1"], "r1");
    {
        let mut a = h.agents.lock().expect("agents");
        a.leader = "pg-0".into();
        a.members = vec![("pg-0".into(), 1), ("pg-1".into(), 2), ("pg-2".into(), 3)];
    }
    h.writes();
    h.reconcile().await;
    assert_eq!(h.role("pg-0").as_deref(), Some("primary"));
    assert_eq!(h.role("pg-1").as_deref(), Some("replica"));
    assert_eq!(h.endpoints("pg-rw"), ["pg-0"]);
    assert_eq!(h.endpoints("pg-ro"), ["pg-1", "pg-2"]);
    assert_eq!(h.endpoints("pg-r").len(), 3);
    assert_eq!(h.status()["phase"], "Healthy");
    assert_eq!(h.status()["currentPrimary"], "pg-0");
    assert_eq!(h.status()["observedGeneration"], 1);
    assert_eq!(h.condition("Ready")["status"], "True");
    assert_eq!(h.status()["instances"].as_array().map(Vec::len), Some(3));
    assert!(
        h.agents
            .lock()
            .expect("agents")
            .calls
            .iter()
            .any(|c| c.contains("\"work_mem\":\"8MB\""))
    );
    assert!(
        h.agents
            .lock()
            .expect("agents")
            .calls
            .iter()
            .any(|c| c.contains("\"synchronous\":{\"mode\":\"off\"}"))
    );
    // The generated password is never rewritten.
    assert_eq!(
        h.get("secrets", "pg-api").expect("secret")["data"]["password"],
        api_password
    );

    // A pass with nothing new writes nothing.
    h.writes();
    h.reconcile().await;
    assert_eq!(h.writes(), Vec::<String>::new(), "idempotent");

    // The agents fail over to pg-2 by themselves; the labels and pg-rw follow.
    h.agents.lock().expect("agents").leader = "pg-2".into();
    h.reconcile().await;
    assert_eq!(h.endpoints("pg-rw"), ["pg-2"]);
    assert_eq!(h.endpoints("pg-ro"), ["pg-0", "pg-1"]);
    assert_eq!(h.status()["currentPrimary"], "pg-2");

    // A refused parameter: a condition naming it, nothing applied.
    h.edit_spec(
        json!({"postgresql": {"parameters": {"wal_level": "hot_standbyy"}}, "instances": 5}),
    );
    h.writes();
    h.reconcile().await;
    let writes = h.writes();
    assert_eq!(
        writes,
        ["PATCH raleclusters/pg/status"],
        "only the status is written"
    );
    assert_eq!(h.status()["phase"], "Failed");
    let c = h.condition("ParametersValid");
    assert_eq!(c["status"], "False");
    assert!(
        c["message"]
            .as_str()
            .unwrap_or_default()
            .contains("wal_level"),
        "{c}"
    );
    assert_eq!(
        h.get("statefulsets", "pg").expect("sts")["spec"]["replicas"],
        3
    );
}

#[tokio::test]
async fn scale_up_goes_through_the_membership_api_and_rollout_switches_over_last() {
    let h = Harness::new(spec()).await;
    h.reconcile().await;
    h.pods(&[true, true, true], &["r1", "r1", "r1"], "r1");
    {
        let mut a = h.agents.lock().expect("agents");
        a.leader = "pg-0".into();
        a.members = vec![("pg-0".into(), 1), ("pg-1".into(), 2), ("pg-2".into(), 3)];
    }
    h.reconcile().await;

    // Scale to 4: the StatefulSet grows, pg-3's file joins with Raft id 4.
    h.edit_spec(json!({"instances": 4}));
    h.reconcile().await;
    assert_eq!(
        h.get("statefulsets", "pg").expect("sts")["spec"]["replicas"],
        4
    );
    let cm = h.get("configmaps", "pg-config").expect("cm");
    let t: toml::Table =
        toml::from_str(cm["data"]["pg-3.toml"].as_str().expect("pg-3.toml")).expect("TOML");
    assert_eq!(t["consensus"]["join"].as_bool(), Some(true));
    assert_eq!(t["peers"][3]["raft_id"].as_integer(), Some(4));
    // pg-3 starts (not ready until it is added and cloned): the operator adds it.
    h.pods(&[true, true, true, false], &["r1", "r1", "r1", "r1"], "r1");
    h.reconcile().await;
    let calls = h.agents.lock().expect("agents").calls.clone();
    assert!(
        calls.iter().any(|c| c.starts_with("POST /api/v1/members")
            && c.contains("\"raft_id\":4")
            && c.contains("pg-3.pg-agents.db.svc")),
        "{calls:?}"
    );
    h.pods(&[true, true, true, true], &["r1", "r1", "r1", "r1"], "r1");
    h.reconcile().await;
    assert_eq!(h.status()["raftIds"]["pg-3"], 4);
    assert_eq!(h.status()["phase"], "Healthy");

    // A new template revision: replicas first, one at a time, then a switchover, then
    // the old primary.
    let mut revs = ["r1", "r1", "r1", "r1"];
    h.pods(&[true; 4], &revs, "r2");
    let mut deleted = Vec::new();
    for _ in 0..6 {
        h.writes();
        h.reconcile().await;
        for w in h.writes() {
            if let Some(p) = w.strip_prefix("DELETE pods/") {
                deleted.push(p.to_string());
                // While the pod is gone, nothing else happens.
                let switchovers = h.agents.lock().expect("agents").calls.len();
                h.reconcile().await;
                assert!(
                    !h.writes().iter().any(|w| w.starts_with("DELETE")),
                    "one pod at a time"
                );
                assert_eq!(h.agents.lock().expect("agents").calls.len(), switchovers);
                let i: usize = p.trim_start_matches("pg-").parse().expect("index");
                revs[i] = "r2"; // the StatefulSet recreates it from the new template
            }
        }
        h.pods(&[true; 4], &revs, "r2");
    }
    assert_eq!(deleted, ["pg-1", "pg-2", "pg-3", "pg-0"]);
    let calls = h.agents.lock().expect("agents").calls.clone();
    assert!(
        calls.iter().any(|c| c.starts_with("POST /switchover")
            && c.contains("\"leader\":\"pg-0\"")
            && c.contains("\"candidate\":\"pg-1\"")),
        "{calls:?}"
    );
    assert_eq!(h.status()["currentPrimary"], "pg-1");
}

#[tokio::test]
async fn scale_down_switches_over_before_the_primary_leaves() {
    let h = Harness::new(spec()).await;
    h.reconcile().await;
    h.pods(&[true, true, true], &["r1", "r1", "r1"], "r1");
    {
        let mut a = h.agents.lock().expect("agents");
        a.leader = "pg-2".into();
        a.members = vec![("pg-0".into(), 1), ("pg-1".into(), 2), ("pg-2".into(), 3)];
    }
    h.reconcile().await;

    h.edit_spec(json!({"instances": 2}));
    h.reconcile().await;
    // The primary pg-2 leaves: switch over to pg-0 first, replicas unchanged.
    assert_eq!(h.agents.lock().expect("agents").leader, "pg-0");
    assert_eq!(
        h.get("statefulsets", "pg").expect("sts")["spec"]["replicas"],
        3
    );
    h.reconcile().await;
    assert_eq!(
        h.get("statefulsets", "pg").expect("sts")["spec"]["replicas"],
        2
    );
    // Its pod still runs: the member is not removed yet.
    h.reconcile().await;
    assert!(
        h.agents
            .lock()
            .expect("agents")
            .members
            .iter()
            .any(|(n, _)| n == "pg-2")
    );
    // The StatefulSet controller stops pg-2; the operator removes the member.
    h.store
        .lock()
        .expect("store")
        .objects
        .remove(&key("pods", "pg-2"));
    h.reconcile().await;
    {
        let a = h.agents.lock().expect("agents");
        assert_eq!(
            a.members
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["pg-0", "pg-1"]
        );
        assert!(
            a.calls.iter().any(|c| c == "DELETE /api/v1/members/pg-2"),
            "{:?}",
            a.calls
        );
    }
    h.reconcile().await;
    assert_eq!(h.status()["raftIds"], json!({"pg-0": 1, "pg-1": 2}));
    assert_eq!(h.status()["nextRaftId"], 4, "pg-2's id 3 is never reused");
    assert_eq!(h.status()["phase"], "Healthy");
}

/// The kube-runtime `Controller` itself (`controller::run_with`): its initial lists
/// trigger a reconcile, and its requeues (every 5 s) follow the agents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_loop_reconciles_and_requeues() {
    let h = Harness::new(spec()).await;
    let task = tokio::spawn(rale_operator::controller::run_with(h.ctx.clone()));
    let wait = |what: &'static str, secs: u64, check: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        let ok = loop {
            if check() {
                break true;
            }
            if std::time::Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(ok, "{what} within {secs} s");
    };
    // Blocking waits on a multi-threaded runtime would stall it: run them off it.
    let h = Arc::new(h);
    let h2 = h.clone();
    tokio::task::spawn_blocking(move || {
        wait("StatefulSet and status", 20, &|| {
            h2.get("statefulsets", "pg").is_some() && h2.status()["phase"] == "Pending"
        });
    })
    .await
    .expect("wait");
    h.pods(&[true, true, true], &["r1", "r1", "r1"], "r1");
    {
        let mut a = h.agents.lock().expect("agents");
        a.leader = "pg-1".into();
        a.members = vec![("pg-0".into(), 1), ("pg-1".into(), 2), ("pg-2".into(), 3)];
    }
    let h2 = h.clone();
    tokio::task::spawn_blocking(move || {
        wait("Healthy with pg-1 primary", 20, &|| {
            h2.status()["currentPrimary"] == "pg-1" && h2.status()["phase"] == "Healthy"
        });
        assert_eq!(h2.endpoints("pg-rw"), ["pg-1"]);
    })
    .await
    .expect("wait");
    task.abort();
}

#[tokio::test]
async fn a_paused_cluster_is_reported_and_routed_but_not_changed() {
    let h = Harness::new(spec()).await;
    h.reconcile().await;
    h.pods(&[true, true, true], &["r1", "r1", "r1"], "r1");
    {
        let mut a = h.agents.lock().expect("agents");
        a.leader = "pg-0".into();
        a.members = vec![("pg-0".into(), 1), ("pg-1".into(), 2), ("pg-2".into(), 3)];
    }
    h.reconcile().await;
    h.edit_spec(json!({"paused": true, "instances": 5, "services": {"r": {"enabled": false}}}));
    h.agents.lock().expect("agents").leader = "pg-1".into();
    h.writes();
    h.reconcile().await;
    let mut writes = h.writes();
    writes.sort();
    assert_eq!(
        writes,
        [
            "PATCH pods/pg-0",
            "PATCH pods/pg-1",
            "PATCH raleclusters/pg/status"
        ],
        "role labels and status only"
    );
    assert_eq!(h.status()["phase"], "Paused");
    assert_eq!(h.status()["currentPrimary"], "pg-1", "still reported");
    assert_eq!(
        h.endpoints("pg-rw"),
        ["pg-1"],
        "routing follows the agents even while paused"
    );
    assert_eq!(
        h.get("statefulsets", "pg").expect("sts")["spec"]["replicas"],
        3
    );
    assert!(h.get("services", "pg-r").is_some());
}
