//! One real agent as the pod: `controller::reconcile` against the stand-in API server,
//! with `ramd` (and PostgreSQL 15) started from the ConfigMap file and the Secrets the
//! operator created, through the container's entrypoint. The operator reads the real
//! agent's `GET /cluster`, labels the pod `primary`, reports the cluster `Healthy`, and
//! a changed parameter reaches the agent with `PATCH /config`.
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
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The agent process; stopped (and its PostgreSQL with it) on drop.
struct Agent {
    child: Child,
    data: PathBuf,
    root: bool,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
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
            let _ = stop.args(["stop", "-m", "immediate", "-D"]).arg(&pgdata).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_follows_a_real_agent() {
    let Some(ramd) = ramd() else {
        println!("SKIPPED: no ramd binary (set RALE_RAMD_BIN, or cargo build -p ramd-ref --bin ramd)");
        return;
    };
    if !Path::new(PG_BIN).join("postgres").exists() {
        println!("SKIPPED: no PostgreSQL 15 in {PG_BIN}");
        return;
    }
    let root = is_root();
    let (api_port, pg_port) = (free_port(), free_port());

    let store = Arc::new(Mutex::new(Store::default()));
    let (api, _) = standin::start(store.clone(), Arc::new(Mutex::new(Agents::default()))).await;
    let client = kube::Client::try_from(kube::Config::new(format!("http://{api}").parse().expect("url"))).expect("client");
    let agent_url = format!("http://127.0.0.1:{api_port}");
    let route_to = agent_url.clone();
    let ctx = Arc::new(Context { client, agent_route: Some(Arc::new(move |_: &str| route_to.clone())) });
    store.lock().expect("store").objects.insert(
        key("raleclusters", "pg"),
        json!({"apiVersion": "rale.dev/v1alpha1", "kind": "RaleCluster",
            "metadata": {"name": "pg", "namespace": NS, "uid": "c-uid", "generation": 1},
            "spec": {"instances": 1, "images": {"agent": "a"}, "storage": {"size": "1Gi"},
                     "postgresql": {"parameters": {"work_mem": "8MB"}}}}),
    );
    let get = |r: &str, n: &str| store.lock().expect("store").objects.get(&key(r, n)).cloned();
    let run = |ctx: Arc<Context>| {
        let c: RaleCluster = serde_json::from_value(get("raleclusters", "pg").expect("cluster")).expect("cluster");
        async move { reconcile(Arc::new(c), ctx).await.expect("reconcile") }
    };
    run(ctx.clone()).await;

    // The pod's volumes, from what the operator created.
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_path_buf();
    let cm = get("configmaps", "pg-config").expect("ConfigMap");
    let file = cm["data"]["pg-0.toml"]
        .as_str()
        .expect("pg-0.toml")
        .replace("/var/lib/rale/data", &format!("{}/data", d.display()))
        .replace("/etc/rale/secrets", &format!("{}/secrets", d.display()))
        .replace("0.0.0.0:8008", &format!("127.0.0.1:{api_port}"))
        .replace("http://pg-0.pg-agents.db.svc:8008", &agent_url)
        .replace("host = \"pg-0.pg-agents.db.svc\"", "host = \"127.0.0.1\"")
        .replace("port = 5432", &format!("port = {pg_port}"));
    std::fs::create_dir_all(d.join("config")).expect("mkdir");
    std::fs::create_dir_all(d.join("data")).expect("mkdir");
    std::fs::write(d.join("config/pg-0.toml"), file).expect("write");
    for role in ["superuser", "replication", "api"] {
        let s = get("secrets", &format!("pg-{role}")).expect("generated Secret");
        let pw = base64::engine::general_purpose::STANDARD
            .decode(s["data"]["password"].as_str().expect("password"))
            .expect("base64");
        std::fs::create_dir_all(d.join("secrets").join(role)).expect("mkdir");
        std::fs::write(d.join("secrets").join(role).join("password"), pw).expect("write");
    }
    let api_password = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(get("secrets", "pg-api").expect("api")["data"]["password"].as_str().expect("pw"))
            .expect("b64"),
    )
    .expect("utf-8");
    if root {
        // The pod runs as the PostgreSQL user: so does this agent.
        let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&d).status().expect("chown").success();
        assert!(ok);
        let _ = Command::new("chmod").args(["0755"]).arg(&d).status();
    }
    let entrypoint = common::workspace().join("packaging/docker/rale-entrypoint.sh");
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh"]);
        c
    } else {
        Command::new("sh")
    };
    cmd.arg(&entrypoint)
        .env("RALE_MEMBER", "pg-0")
        .env("RALE_CONFIG_DIR", d.join("config"))
        .env("RALE_SECRETS_DIR", d.join("secrets"))
        .env("RALE_RUN_DIR", d.join("run"))
        .env("RALE_RAMD", &ramd)
        .env("RALE_PG_BIN", PG_BIN)
        .env("RALE_LOG", "warn")
        .stdout(std::fs::File::create(d.join("ramd.log")).expect("log"))
        .stderr(std::fs::File::create(d.join("ramd.err")).expect("log"));
    let _agent = Agent { child: cmd.spawn().expect("start the agent"), data: d.join("data"), root };

    // Bootstrap: initdb under consensus, then a primary.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r = http.get(format!("{agent_url}/cluster")).basic_auth("admin", Some(&api_password)).send().await;
        if let Ok(r) = r
            && let Ok(v) = r.json::<Value>().await
            && v["members"][0]["role"] == "leader"
            && v["members"][0]["state"] == "running"
        {
            break;
        }
        let log = std::fs::read_to_string(d.join("ramd.err")).unwrap_or_default();
        assert!(Instant::now() < deadline, "the agent did not become primary in 90 s:\n{log}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The StatefulSet controller's pod, ready.
    {
        let mut st = store.lock().expect("store");
        st.objects.get_mut(&key("statefulsets", "pg")).expect("sts")["status"] = json!({"updateRevision": "r1"});
        st.objects.insert(
            key("pods", "pg-0"),
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "pg-0", "namespace": NS,
                    "labels": {"rale.dev/cluster": "pg", "controller-revision-hash": "r1"}},
                "spec": {"containers": [{"name": "postgres"}]},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
    }
    run(ctx.clone()).await;
    let pod = get("pods", "pg-0").expect("pod");
    assert_eq!(pod["metadata"]["labels"]["rale.dev/role"], "primary");
    let status = get("raleclusters", "pg").expect("cluster")["status"].clone();
    assert_eq!(status["phase"], "Healthy", "{status}");
    assert_eq!(status["currentPrimary"], "pg-0");
    assert_eq!(status["instances"][0]["role"], "leader");
    assert_eq!(status["raftIds"], json!({"pg-0": 1}));

    // A parameter changed in the spec reaches the real agent's dynamic configuration.
    {
        let mut st = store.lock().expect("store");
        let c = st.objects.get_mut(&key("raleclusters", "pg")).expect("cluster");
        merge_patch(&mut c["spec"], &json!({"postgresql": {"parameters": {"work_mem": "16MB"}}}));
    }
    run(ctx.clone()).await;
    let config: Value = http
        .get(format!("{agent_url}/config"))
        .basic_auth("admin", Some(&api_password))
        .send()
        .await
        .expect("GET /config")
        .json()
        .await
        .expect("JSON");
    assert_eq!(config["postgresql_parameters"]["work_mem"], "16MB", "{config}");
}
