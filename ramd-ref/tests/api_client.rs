//! The client and `ramctrl` against a real socket: agent fail-over between URLs, refusals,
//! configuration editing, exit codes.
//! Run: cargo test -p ramd-ref --test api_client

mod api_fixture;

use std::net::SocketAddr;
use std::time::Duration;

use api_fixture::*;
use rale::Consensus;
use ramd_ref::api::types::SwitchoverRequest;
use ramd_ref::client::{Client, ClientConfig, Error};
use ramd_ref::config::Password;

/// Serves `node`'s router on a free loopback port; the server task ends with the test.
async fn serve(node: Node) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = node.app.into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        let _keep = node.snapshot_tx;
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), task)
}

/// A URL nobody listens on: a port bound then released.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

fn client(urls: Vec<String>, password: Option<&str>) -> Client {
    Client::new(ClientConfig {
        urls,
        username: USER.into(),
        password: password.map(Password::new),
        request_timeout: Duration::from_secs(20),
        ..ClientConfig::default()
    })
    .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_tries_agents_in_turn_and_reports_refusals() {
    let consensus = cluster(false).await;
    let (url, server) = serve(node(&consensus, "n1").await).await;
    let c = client(vec![dead_url(), url.clone()], Some(PASSWORD));
    let cluster_view = c.cluster().await.expect("second agent answers");
    assert_eq!(cluster_view.scope, "anchor");
    assert_eq!(cluster_view.members.len(), 3);
    let status = c.cluster_status().await.expect("status");
    assert_eq!(status.leader.as_deref(), Some("n2"));

    let paused = c.pause().await.expect("pause");
    assert_eq!(paused.paused, Some(true));
    match c.pause().await {
        Err(Error::Refused {
            status: 409,
            message,
        }) => assert!(message.contains("paused"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // In maintenance mode only a switchover to a named candidate is possible.
    let req = SwitchoverRequest {
        leader: Some("n2".into()),
        ..Default::default()
    };
    match c.switchover(&req).await {
        Err(Error::Refused {
            status: 400,
            message,
        }) => assert!(message.contains("paused state"), "{message}"),
        other => panic!("expected 400, got {other:?}"),
    }
    c.resume().await.expect("resume");

    // Configuration: version travels with it; a stale version is refused.
    let (config, version) = c.config().await.expect("config");
    assert_eq!(version, Some(0));
    assert_eq!(config["lease_ttl"], "1s 500ms");
    let (_, v1) = c
        .patch_config(&serde_json::json!({"lease_ttl": "2s"}), version)
        .await
        .expect("patch");
    assert_eq!(v1, Some(1));
    match c.put_config(&config, version).await {
        Err(Error::Refused { status: 409, .. }) => {}
        other => panic!("expected 409, got {other:?}"),
    }
    assert_eq!(
        consensus.read().await.expect("read").config.lease_ttl,
        Duration::from_secs(2)
    );

    // Without credentials: refused with 401.
    let anonymous = client(vec![url.clone()], None);
    match anonymous.pause().await {
        Err(Error::Refused { status: 401, .. }) => {}
        other => panic!("expected 401, got {other:?}"),
    }
    // Nobody listening at all.
    match client(vec![dead_url(), dead_url()], None).cluster().await {
        Err(Error::Unreachable(text)) => assert!(text.contains("127.0.0.1"), "{text}"),
        other => panic!("expected unreachable, got {other:?}"),
    }
    server.abort();
}

async fn ramctrl(url: &str, args: &[&str], password: Option<&str>) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ramctrl"));
    cmd.arg("--url").arg(url).arg("--user").arg(USER).args(args);
    cmd.env_remove("RALE_PASSWORD")
        .env_remove("RALE_URL")
        .env_remove("RALE_USER");
    if let Some(p) = password {
        cmd.env("RALE_PASSWORD", p);
    }
    cmd.stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("ramctrl finishes")
        .expect("ramctrl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramctrl_commands_and_exit_codes() {
    let consensus = cluster(true).await;
    let (url, server) = serve(node(&consensus, "n2").await).await;
    let urls = format!("{},{url}", dead_url());

    let (code, out, err) = ramctrl(&urls, &["list"], None).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Cluster: anchor") && out.contains("| Member"),
        "{out}"
    );
    assert!(
        out.contains("Sync Standby") && out.contains("Leader"),
        "{out}"
    );
    let (code, out, _) = ramctrl(&url, &["list", "--json"], None).await;
    assert_eq!(code, 0);
    let members: serde_json::Value = serde_json::from_str(&out).expect("JSON members");
    assert_eq!(members.as_array().map(Vec::len), Some(3));
    let (code, out, _) = ramctrl(&url, &["topology"], None).await;
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .next()
            .is_some_and(|l| l.starts_with("n3 (Leader")),
        "{out}"
    );
    let (code, out, _) = ramctrl(&url, &["status"], None).await;
    assert_eq!(code, 0);
    assert!(out.contains("Leader:         n3"), "{out}");
    let (code, out, _) = ramctrl(&url, &["history"], None).await;
    assert_eq!(code, 0);
    assert!(out.contains("bootstrap"), "{out}");
    let (code, out, _) = ramctrl(&url, &["show-config"], None).await;
    assert_eq!(code, 0);
    assert!(out.contains("\"lease_ttl\""), "{out}");

    // Changes: refused without credentials (1), applied with them (0).
    let (code, _, err) = ramctrl(&url, &["pause"], None).await;
    assert_eq!(code, 1, "{err}");
    let (code, out, err) = ramctrl(
        &url,
        &[
            "edit-config",
            "--set",
            "lease_ttl=2s",
            "--pg",
            "work_mem=8MB",
            "--force",
        ],
        Some(PASSWORD),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("+  \"lease_ttl\": \"2s\"") && out.contains("version 2"),
        "{out}"
    );
    let state = consensus.read().await.expect("read");
    assert_eq!(state.config.lease_ttl, Duration::from_secs(2));
    assert_eq!(
        state
            .config
            .postgresql_parameters
            .get("work_mem")
            .map(String::as_str),
        Some("8MB")
    );
    let (code, _, err) = ramctrl(
        &url,
        &["edit-config", "--set", "lease_ttl=100ms", "--force"],
        Some(PASSWORD),
    )
    .await;
    assert_eq!(code, 1, "invalid configuration is refused: {err}");
    assert!(err.contains("lease_ttl"), "{err}");

    // In synchronous mode only n1 (the sync standby) may take over.
    let (code, _, err) = ramctrl(
        &url,
        &["switchover", "--to", "n2", "--force"],
        Some(PASSWORD),
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("synchronous"), "{err}");
    // Confirmation needed without a terminal.
    let (code, _, err) = ramctrl(&url, &["failover", "--to", "n1"], Some(PASSWORD)).await;
    assert_eq!(code, 2, "{err}");
    // Usage errors and unreachable agents.
    let (code, _, _) = ramctrl(&url, &["failover"], None).await;
    assert_eq!(code, 2);
    let (code, _, err) = ramctrl(&dead_url(), &["list"], None).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no agent reachable"), "{err}");
    // Node actions go to the member's own agent; this one has no local actions wired.
    let mut n2 = member("n2", 5442, false);
    n2.api_url = url.clone();
    propose(
        &consensus,
        rale::state::Operation::PublishMember { status: n2 },
    )
    .await;
    let (code, _, err) = ramctrl(&url, &["reload", "n2"], Some(PASSWORD)).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not available"), "{err}");
    // An unknown member is the cluster's refusal (exit 1), as for `switchover --to`.
    let (code, _, err) = ramctrl(&url, &["restart", "n9", "--force"], Some(PASSWORD)).await;
    assert_eq!(code, 1, "not a member: {err}");
    assert!(err.contains("not a member"), "{err}");
    server.abort();
}
