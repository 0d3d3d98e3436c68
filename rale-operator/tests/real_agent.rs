//! Real agents as the pods: `controller::reconcile` against the stand-in API server,
//! with `ramd` (and PostgreSQL 15) started from the ConfigMap files and the Secrets the
//! operator created, through the container's entrypoint, each member on its own
//! loopback ports (the files' stable DNS names and ports rewritten). One agent: labelled
//! `primary`, `Healthy`, a parameter change applied with `PATCH /config`. Three agents:
//! a rolling update's switchover (`POST /switchover`) moves the primary, then the agents
//! fail over by themselves when the primary's agent stops, and the role labels, so the
//! `-rw` Service, follow both.
//!
//! SKIPPED without a `ramd` binary (`RALE_RAMD_BIN`, or `ramd` next to the test
//! binaries as `cargo test --workspace` leaves it) or without PostgreSQL 15.

mod common;
mod standin;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rale_operator::controller::{Context, reconcile};
use rale_operator::crd::RaleCluster;
use serde_json::{Value, json};
use standin::{Agents, Store, merge_patch};

const NS: &str = "db";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn key(resource: &str, name: &str) -> (String, String, String) {
    (resource.into(), NS.into(), name.into())
}

fn ramd() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RALE_RAMD_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("ramd");
    candidate.exists().then_some(candidate)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The agent process; stopped (and its PostgreSQL with it) on drop.
struct Agent {
    child: Child,
    data: PathBuf,
    root: bool,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pgdata = self.data.join("pgdata");
        if pgdata.join("postmaster.pid").exists() {
            let mut stop = if self.root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]);
                c.arg(format!("{PG_BIN}/pg_ctl"));
                c
            } else {
                Command::new(format!("{PG_BIN}/pg_ctl"))
            };
            let _ = stop
                .args(["stop", "-m", "immediate", "-D"])
                .arg(&pgdata)
                .status();
        }
    }
}

/// A cluster of real agents behind the stand-in API server. Fields drop in order: the
/// agents (and their servers) stop before the directory is removed.
struct Real {
    agents: Vec<Option<Agent>>,
    store: Arc<Mutex<Store>>,
    ctx: Arc<Context>,
    dir: tempfile::TempDir,
    ports: Vec<(u16, u16)>,
    api_password: String,
}

impl Real {
    async fn new(instances: u32) -> Option<Real> {
        let Some(ramd) = ramd() else {
            println!(
                "SKIPPED: no ramd binary (set RALE_RAMD_BIN, or cargo build -p ramd-ref --bin ramd)"
            );
            return None;
        };
        if !Path::new(PG_BIN).join("postgres").exists() {
            println!("SKIPPED: no PostgreSQL 15 in {PG_BIN}");
            return None;
        }
        let root = is_root();
        let ports: Vec<(u16, u16)> = (0..instances).map(|_| (free_port(), free_port())).collect();
        let store = Arc::new(Mutex::new(Store::default()));
        let (api, _) = standin::start(store.clone(), Arc::new(Mutex::new(Agents::default()))).await;
        let client = kube::Client::try_from(kube::Config::new(
            format!("http://{api}").parse().expect("url"),
        ))
        .expect("client");
        let routes: Vec<(String, String)> = ports
            .iter()
            .enumerate()
            .map(|(i, (a, _))| {
                (
                    format!("http://pg-{i}.pg-agents.db.svc:8008"),
                    format!("http://127.0.0.1:{a}"),
                )
            })
            .collect();
        let route_table = routes.clone();
        let route = move |url: &str| {
            route_table
                .iter()
                .find(|(from, _)| from == url)
                .map(|(_, to)| to.clone())
                .unwrap_or_else(|| url.to_string())
        };
        let ctx = Arc::new(Context {
            client,
            agent_route: Some(Arc::new(route)),
        });
        store.lock().expect("store").objects.insert(
            key("raleclusters", "pg"),
            json!({"apiVersion": "rale.dev/v1alpha1", "kind": "RaleCluster",
                "metadata": {"name": "pg", "namespace": NS, "uid": "c-uid", "generation": 1},
                "spec": {"instances": instances, "images": {"agent": "a"}, "storage": {"size": "1Gi"},
                         "postgresql": {"parameters": {"work_mem": "8MB"}}}}),
        );
        let mut real = Real {
            agents: Vec::new(),
            store,
            ctx,
            dir: tempfile::tempdir().expect("temp dir"),
            ports,
            api_password: String::new(),
        };
        real.reconcile().await;

        // Each pod's volumes, from what the operator created.
        let d = real.dir.path().to_path_buf();
        let cm = real.get("configmaps", "pg-config").expect("ConfigMap");
        for (role, _) in [("superuser", ()), ("replication", ()), ("api", ())] {
            let s = real
                .get("secrets", &format!("pg-{role}"))
                .expect("generated Secret");
            let pw = base64::engine::general_purpose::STANDARD
                .decode(s["data"]["password"].as_str().expect("password"))
                .expect("base64");
            std::fs::create_dir_all(d.join("secrets").join(role)).expect("mkdir");
            std::fs::write(d.join("secrets").join(role).join("password"), &pw).expect("write");
            if role == "api" {
                real.api_password = String::from_utf8(pw).expect("utf-8");
            }
        }
        for i in 0..instances as usize {
            let m = d.join(format!("pg-{i}"));
            let mut file = cm["data"][format!("pg-{i}.toml")]
                .as_str()
                .expect("member file")
                .replace("/var/lib/rale/data", &format!("{}/data", m.display()))
                .replace("/etc/rale/secrets", &format!("{}/secrets", d.display()))
                .replace("0.0.0.0:8008", &format!("127.0.0.1:{}", real.ports[i].0))
                .replace(
                    &format!("host = \"pg-{i}.pg-agents.db.svc\""),
                    "host = \"127.0.0.1\"",
                )
                .replace("port = 5432", &format!("port = {}", real.ports[i].1));
            for (from, to) in &routes {
                file = file.replace(from.as_str(), to);
            }
            std::fs::create_dir_all(m.join("config")).expect("mkdir");
            std::fs::create_dir_all(m.join("data")).expect("mkdir");
            std::fs::write(m.join("config").join(format!("pg-{i}.toml")), file).expect("write");
        }
        if root {
            // The pods run as the PostgreSQL user: so do these agents.
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&d)
                .status()
                .expect("chown")
                .success();
            assert!(ok);
            let _ = Command::new("chmod").args(["0755"]).arg(&d).status();
        }
        for i in 0..instances as usize {
            let m = d.join(format!("pg-{i}"));
            let mut cmd = if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--", "sh"]);
                c
            } else {
                Command::new("sh")
            };
            cmd.arg(common::workspace().join("packaging/docker/rale-entrypoint.sh"))
                .env("RALE_MEMBER", format!("pg-{i}"))
                .env("RALE_CONFIG_DIR", m.join("config"))
                .env("RALE_SECRETS_DIR", d.join("secrets"))
                .env("RALE_RUN_DIR", m.join("run"))
                .env("RALE_RAMD", &ramd)
                .env("RALE_PG_BIN", PG_BIN)
                .env("RALE_LOG", "warn")
                .stdout(std::fs::File::create(m.join("ramd.log")).expect("log"))
                .stderr(std::fs::File::create(m.join("ramd.err")).expect("log"));
            real.agents.push(Some(Agent {
                child: cmd.spawn().expect("start the agent"),
                data: m.join("data"),
                root,
            }));
        }
        Some(real)
    }

    fn get(&self, r: &str, n: &str) -> Option<Value> {
        self.store
            .lock()
            .expect("store")
            .objects
            .get(&key(r, n))
            .cloned()
    }

    async fn reconcile(&self) {
        let c: RaleCluster =
            serde_json::from_value(self.get("raleclusters", "pg").expect("cluster"))
                .expect("cluster");
        reconcile(Arc::new(c), self.ctx.clone())
            .await
            .expect("reconcile");
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i].0)
    }

    /// `GET /cluster` from the first running agent that answers.
    async fn cluster(&self) -> Option<Value> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        for (i, a) in self.agents.iter().enumerate() {
            if a.is_none() {
                continue;
            }
            if let Ok(r) = http
                .get(format!("{}/cluster", self.url(i)))
                .basic_auth("admin", Some(&self.api_password))
                .send()
                .await
                && let Ok(v) = r.json::<Value>().await
            {
                return Some(v);
            }
        }
        None
    }

    /// Waits until `check` holds for the agents' `GET /cluster` (bounded).
    async fn wait_for(&self, what: &str, secs: u64, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = self.cluster().await
                && check(&v)
            {
                return v;
            }
            if Instant::now() > deadline {
                let mut logs = String::new();
                for i in 0..self.ports.len() {
                    let p = self.dir.path().join(format!("pg-{i}/ramd.err"));
                    let text = std::fs::read_to_string(p).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(15).collect();
                    logs.push_str(&format!(
                        "--- pg-{i}\n{}\n",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    ));
                }
                panic!(
                    "{what}: not within {secs} s; last /cluster {:?}\n{logs}",
                    self.cluster().await
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The StatefulSet controller's pods, ready.
    fn pods(&self) {
        let mut st = self.store.lock().expect("store");
        st.objects.get_mut(&key("statefulsets", "pg")).expect("sts")["status"] =
            json!({"updateRevision": "r1"});
        for i in 0..self.ports.len() {
            let name = format!("pg-{i}");
            let labels = st
                .objects
                .get(&key("pods", &name))
                .map(|p| p["metadata"]["labels"].clone())
                .unwrap_or(json!({"rale.dev/cluster": "pg", "controller-revision-hash": "r1"}));
            st.objects.insert(
                key("pods", &name),
                json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": NS, "labels": labels},
                    "spec": {"containers": [{"name": "postgres"}]},
                    "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
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
}

fn leader(v: &Value) -> Option<String> {
    v["members"]
        .as_array()?
        .iter()
        .find(|m| m["role"] == "leader" && m["state"] == "running")
        .and_then(|m| m["name"].as_str())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_follows_a_real_agent() {
    let Some(real) = Real::new(1).await else {
        return;
    };
    real.wait_for("a primary", 90, |v| leader(v).is_some())
        .await;
    real.pods();
    real.reconcile().await;
    assert_eq!(real.role("pg-0").as_deref(), Some("primary"));
    let status = real.get("raleclusters", "pg").expect("cluster")["status"].clone();
    assert_eq!(status["phase"], "Healthy", "{status}");
    assert_eq!(status["currentPrimary"], "pg-0");
    assert_eq!(status["instances"][0]["role"], "leader");
    assert_eq!(status["raftIds"], json!({"pg-0": 1}));

    // A parameter changed in the spec reaches the real agent's dynamic configuration.
    {
        let mut st = real.store.lock().expect("store");
        let c = st
            .objects
            .get_mut(&key("raleclusters", "pg"))
            .expect("cluster");
        merge_patch(
            &mut c["spec"],
            &json!({"postgresql": {"parameters": {"work_mem": "16MB"}}}),
        );
    }
    real.reconcile().await;
    let config: Value = reqwest::Client::new()
        .get(format!("{}/config", real.url(0)))
        .basic_auth("admin", Some(&real.api_password))
        .send()
        .await
        .expect("GET /config")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        config["postgresql_parameters"]["work_mem"], "16MB",
        "{config}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_follow_a_failover_between_real_agents() {
    let Some(mut real) = Real::new(3).await else {
        return;
    };
    let v = real
        .wait_for("a primary and two streaming replicas", 120, |v| {
            leader(v).is_some()
                && v["members"]
                    .as_array()
                    .is_some_and(|m| m.iter().filter(|m| m["state"] == "streaming").count() == 2)
        })
        .await;
    let first = leader(&v).expect("leader");
    real.pods();
    real.reconcile().await;
    assert_eq!(real.role(&first).as_deref(), Some("primary"));
    let status = real.get("raleclusters", "pg").expect("cluster")["status"].clone();
    assert_eq!(status["phase"], "Healthy", "{status}");
    assert_eq!(status["raftIds"], json!({"pg-0": 1, "pg-1": 2, "pg-2": 3}));

    // A rolling update whose replicas are already done: the operator switches over
    // from the outdated primary with a real `POST /switchover`, and the label follows.
    let target = (0..3)
        .map(|i| format!("pg-{i}"))
        .find(|n| *n != first)
        .expect("a replica");
    let set_revisions = |update: &str, outdated: Option<&str>| {
        let mut st = real.store.lock().expect("store");
        st.objects.get_mut(&key("statefulsets", "pg")).expect("sts")["status"]["updateRevision"] =
            update.into();
        for i in 0..3 {
            let name = format!("pg-{i}");
            let rev = if Some(name.as_str()) == outdated {
                "r1"
            } else {
                update
            };
            st.objects.get_mut(&key("pods", &name)).expect("pod")["metadata"]["labels"]["controller-revision-hash"] =
                rev.into();
        }
    };
    set_revisions("r2", Some(&first));
    real.reconcile().await;
    // Settled: the new primary, and both replicas streaming from it (the old primary
    // rejoined), before anything else happens.
    real.wait_for("the switchover, then both replicas streaming", 90, |v| {
        leader(v).as_deref() == Some(target.as_str())
            && v["members"]
                .as_array()
                .is_some_and(|m| m.iter().filter(|m| m["state"] == "streaming").count() == 2)
    })
    .await;
    set_revisions("r2", None);
    real.reconcile().await;
    assert_eq!(
        real.role(&target).as_deref(),
        Some("primary"),
        "the label follows the switchover"
    );
    let first = target;

    // The primary's agent stops (as when its pod is deleted): the agents elect another.
    let i: usize = first.trim_start_matches("pg-").parse().expect("index");
    drop(real.agents[i].take());
    let v = real
        .wait_for("a new primary", 60, |v| {
            leader(v).is_some_and(|l| l != first)
        })
        .await;
    let second = leader(&v).expect("leader");
    real.reconcile().await;
    assert_eq!(
        real.role(&second).as_deref(),
        Some("primary"),
        "the label follows the agents"
    );
    assert_ne!(
        real.role(&first).as_deref(),
        Some("primary"),
        "the old primary lost its label"
    );
    assert_eq!(
        real.get("raleclusters", "pg").expect("cluster")["status"]["currentPrimary"],
        second.as_str()
    );

    // Once the agents stop reporting the stopped member as running (its published
    // status expires), it loses every role label and the cluster is Degraded.
    real.wait_for("the stopped member reported down", 60, |v| {
        v["members"].as_array().is_some_and(|m| {
            !m.iter().any(|m| {
                m["name"] == first.as_str()
                    && (m["state"] == "running" || m["state"] == "streaming")
            })
        })
    })
    .await;
    real.reconcile().await;
    assert_eq!(
        real.role(&first),
        None,
        "no Service routes to a member that is down"
    );
    let status = real.get("raleclusters", "pg").expect("cluster")["status"].clone();
    assert_eq!(status["phase"], "Degraded", "{status}");
    assert_eq!(status["currentPrimary"], second.as_str());
}
