//! The agent API and the Raft RPCs over HTTPS, in process: a CA and a server certificate
//! generated at test time, the API client trusting that CA (and failing without it), and
//! two `RaftConsensus` nodes talking over TLS while `/api/v1/members` adds and removes one.
//! Run: cargo test -p ramd-ref --test api_tls

// The determinism lints of clippy.toml apply to rale::decide only.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod api_fixture;

use std::sync::Arc;
use std::time::{Duration, Instant};

use api_fixture::*;
use rale::consensus::Peer;
use rale::consensus::raft::{RaftConfig, RaftConsensus};
use rale::state::{Command, HistoryKind, Operation};
use rale::{ClusterState, Consensus};
use ramd_ref::api::members::AddMemberRequest;
use ramd_ref::api::{ApiState, router};
use ramd_ref::client::{Client, ClientConfig, Error as ClientError};
use ramd_ref::config::{AuthConfig, Password};
use ramd_ref::tls::{ApiTls, GeneratedTls, generate_self_signed, serve};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Bound for anything that should take about a second.
const SETTLE: Duration = Duration::from_secs(30);

fn pki(dir: &std::path::Path) -> GeneratedTls {
    generate_self_signed(dir, &["127.0.0.1", "localhost"]).expect("generating a CA")
}

fn client(urls: Vec<String>, ca: Option<&GeneratedTls>) -> Client {
    Client::new(ClientConfig {
        urls,
        username: USER.into(),
        password: Some(Password::new(PASSWORD)),
        ca_cert_pem: ca.map(|t| std::fs::read(&t.ca_cert).expect("CA file")),
        request_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(5),
    })
    .expect("client")
}

/// Serves `app` over TLS on a free loopback port; returns its `https://` URL.
async fn serve_tls(app: axum::Router, tls: &GeneratedTls) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("address"));
    let config = ApiTls::load(&tls.cert, &tls.key).expect("server TLS config");
    let task = tokio::spawn(async move {
        let _ = serve(listener, app, Some(config)).await;
    });
    (url, task)
}

#[tokio::test]
async fn api_over_https_needs_the_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = pki(dir.path());
    let consensus = cluster(false).await;
    let app = node(&consensus, "n1").await.app;
    let (url, server) = serve_tls(app, &tls).await;

    let trusted = client(vec![url.clone()], Some(&tls));
    let cluster = trusted.cluster().await.expect("GET /cluster over https");
    assert_eq!(cluster.members.len(), 3);
    // A write (auth over TLS) works too.
    let paused = trusted.pause().await.expect("pause over https");
    assert_eq!(paused.paused, Some(true));

    // Without the CA the server's certificate is refused: nothing is sent.
    let untrusted = client(vec![url.clone()], None);
    match untrusted.cluster().await {
        Err(ClientError::Unreachable(text)) => {
            assert!(text.to_ascii_lowercase().contains("certificate"), "{text}");
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = client(vec![url.replace("https://", "http://")], Some(&tls));
    assert!(plain.cluster().await.is_err());
    server.abort();
}

#[tokio::test]
async fn a_renewed_certificate_is_served_after_reload() {
    let dir = tempfile::tempdir().expect("temp dir");
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).expect("dir");
    for sub in ["old", "new"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("dir");
    }
    let old = pki(&dir.path().join("old"));
    let new = pki(&dir.path().join("new"));
    // The files the server is configured with start as the old certificate.
    let (cert, key) = (live.join("api.crt"), live.join("api.key"));
    std::fs::copy(&old.cert, &cert).expect("copy");
    std::fs::copy(&old.key, &key).expect("copy");
    let consensus = cluster(false).await;
    let app = node(&consensus, "n1").await.app;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("address"));
    let tls = ApiTls::load(&cert, &key).expect("server TLS config");
    let handle = tls.clone();
    let server = tokio::spawn(async move {
        let _ = serve(listener, app, Some(tls)).await;
    });
    let trusts_old = client(vec![url.clone()], Some(&old));
    let trusts_new = client(vec![url.clone()], Some(&new));
    trusts_old.cluster().await.expect("old certificate served");
    assert!(
        trusts_new.cluster().await.is_err(),
        "new CA before the renewal"
    );

    // A broken renewal (key missing) is refused and the old certificate stays.
    std::fs::copy(&new.cert, &cert).expect("copy");
    std::fs::write(&key, "not a key").expect("write");
    let e = handle.reload().expect_err("a broken key must be refused");
    assert!(format!("{e:#}").contains("api.key"), "{e:#}");
    let fresh_old = client(vec![url.clone()], Some(&old));
    fresh_old
        .cluster()
        .await
        .expect("still the old certificate");

    // The complete renewal is served to new connections.
    std::fs::copy(&new.key, &key).expect("copy");
    handle.reload().expect("reload");
    let fresh_new = client(vec![url.clone()], Some(&new));
    fresh_new
        .cluster()
        .await
        .expect("renewed certificate served");
    let fresh_old = client(vec![url], Some(&old));
    assert!(
        fresh_old.cluster().await.is_err(),
        "old CA after the renewal"
    );
    server.abort();
}

fn raft_config(
    dir: &std::path::Path,
    id: u64,
    url: &str,
    peers: Vec<Peer>,
    ca: &GeneratedTls,
) -> RaftConfig {
    let mut c = RaftConfig::new(
        n(&format!("n{id}")),
        id,
        url,
        dir.join(format!("n{id}")),
        peers,
    );
    c.auth_token = Some("tls-test-token".into());
    c.tls_ca = Some(ca.ca_cert.clone());
    c
}

/// One agent: Raft node plus API, both on one HTTPS port.
async fn agent(
    config: RaftConfig,
    listener: TcpListener,
    tls: &GeneratedTls,
) -> (RaftConsensus, tokio::task::JoinHandle<()>) {
    let raft = RaftConsensus::start(config.clone())
        .await
        .expect("Raft starts");
    let name = config.node.to_string();
    let (_tx, rx) = watch::channel(Arc::new(snapshot(Arc::new(ClusterState::default()), &name)));
    let state = ApiState::new(
        rx,
        Arc::new(raft.clone()),
        AuthConfig::basic(USER, PASSWORD),
        "tls",
    );
    let app = router(state).merge(rale::consensus::raft::router(raft.clone()));
    let server_tls = ApiTls::load(&tls.cert, &tls.key).expect("server TLS config");
    let task = tokio::spawn(async move {
        let _ = serve(listener, app, Some(server_tls)).await;
    });
    (raft, task)
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < SETTLE {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {SETTLE:?}");
}

#[tokio::test]
async fn raft_over_tls_with_members_added_and_removed_through_the_api() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = pki(dir.path());
    let l1 = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let l2 = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url1 = format!("https://{}", l1.local_addr().expect("address"));
    let url2 = format!("https://{}", l2.local_addr().expect("address"));
    let first = Peer {
        node: n("n1"),
        raft_id: 1,
        api_url: url1.clone(),
    };
    // n1 bootstraps alone; n2 lists only n1, so it starts empty and waits to be added.
    let (n1, s1) = agent(
        raft_config(dir.path(), 1, &url1, vec![first.clone()], &tls),
        l1,
        &tls,
    )
    .await;
    let (n2, s2) = agent(
        raft_config(dir.path(), 2, &url2, vec![first], &tls),
        l2,
        &tls,
    )
    .await;
    eventually("n1 leads", || async { n1.status().is_leader }).await;

    let api = client(vec![url1.clone()], Some(&tls));
    let before = api.members().await.expect("GET /api/v1/members");
    assert_eq!(before.voters.len(), 1);
    let t = Instant::now();
    let added = api
        .add_member(&AddMemberRequest {
            name: "n2".into(),
            raft_id: 2,
            api_url: url2.clone(),
        })
        .await
        .expect("POST /api/v1/members: n2 catches up over TLS and votes");
    eprintln!("add_member over TLS took {} ms", t.elapsed().as_millis());
    assert_eq!(added.node.as_deref(), Some("n2"));
    let after = api.members().await.expect("members");
    let voters: Vec<&str> = after.voters.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(voters, ["n1", "n2"]);

    // n2 forwards a proposal to the leader over TLS and sees it applied.
    let out = n2
        .propose(Command {
            op: Operation::Record {
                kind: HistoryKind::Operation,
                node: None,
                actor: "test".into(),
                reason: "through n2 over TLS".into(),
            },
            wall_ms: now_ms(),
        })
        .await
        .expect("forwarded proposal");
    assert!(out.is_applied());
    let state = n2.read().await.expect("linearizable read on n2");
    assert!(
        state
            .history
            .iter()
            .any(|h| h.reason == "through n2 over TLS"),
        "n2 reads its own proposal"
    );

    // The last-voter rule is not in the way with two voters; remove n2, then n1 stays.
    let removed = api.remove_member("n2", false).await.expect("DELETE n2");
    assert_eq!(removed.node.as_deref(), Some("n2"));
    eventually("n2 gone", || async {
        api.members()
            .await
            .map(|m| m.voters.len() == 1 && m.learners.is_empty())
            .unwrap_or(false)
    })
    .await;
    match api.remove_member("n1", false).await {
        Err(ClientError::Refused { status, message }) => {
            assert_eq!(status, 409, "{message}");
            assert!(message.contains("last voter"), "{message}");
        }
        other => panic!("expected 409, got {other:?}"),
    }
    let _ = n2.shutdown().await;
    let _ = n1.shutdown().await;
    s1.abort();
    s2.abort();
}
