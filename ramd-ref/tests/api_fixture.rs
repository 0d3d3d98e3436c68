//! Shared fixture of the API tests: a three-member cluster in `MemConsensus`, node
//! snapshots seen from each member, and a one-shot request helper (no socket).
#![allow(dead_code, missing_docs)]

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine;
use rale::state::{Command, HistoryKind, Operation};
use rale::status::{DataDirState, MemberStatus, PgStatus};
use rale::{
    ClusterState, Consensus, DynamicConfig, Epoch, Lsn, MemConsensus, Millis, NodeId, Timeline,
};
use ramd_ref::api::{ApiState, router};
use ramd_ref::config::AuthConfig;
use ramd_ref::snapshot::NodeSnapshot;
use serde_json::json;
use tokio::sync::watch;
use tower::ServiceExt;

pub const USER: &str = "admin";
pub const PASSWORD: &str = "s3cret-pw";
pub const LSN: u64 = 0x0402_0710;
pub const SYSTEM_ID: u64 = 7_710_805_677_373_771_198;

pub fn n(s: &str) -> NodeId {
    NodeId::new(s).expect("valid node name")
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A member status as published, built from JSON so new optional fields keep defaults.
pub fn member(name: &str, port: u16, primary: bool) -> MemberStatus {
    let lsn = Lsn(LSN).to_string();
    let v = json!({
        "node": name,
        "api_url": format!("http://127.0.0.1:{}", 8000 + port - 5430),
        "pg_host": "127.0.0.1",
        "pg_port": port,
        "role": if primary { "primary" } else { "replica" },
        "running": true,
        "timeline": 3,
        "lsn": lsn,
        "receive_lsn": if primary { None } else { Some(lsn.clone()) },
        "replay_lsn": if primary { None } else { Some(lsn.clone()) },
        "upstream": null,
        "streaming": !primary,
        "tags": {},
        "detached": null,
        "pending_restart": false,
        "server_version_num": 150018,
        "system_id": SYSTEM_ID,
        "heartbeat": 1,
    });
    serde_json::from_value(v).expect("member status from JSON")
}

pub async fn propose(c: &MemConsensus, op: Operation) {
    let out = c
        .propose(Command {
            op,
            wall_ms: now_ms(),
        })
        .await
        .expect("in-memory consensus accepts proposals");
    assert!(out.is_applied(), "fixture operation rejected: {out:?}");
}

pub fn acquire(node: &str, expected_epoch: u64, kind: HistoryKind) -> Operation {
    Operation::AcquireLease {
        node: n(node),
        expected_epoch: Epoch(expected_epoch),
        expected_renewals: 0,
        holder_clock: Millis(1),
        timeline: Timeline(3),
        lsn: Lsn(LSN),
        kind,
        reason: "fixture".into(),
    }
}

/// Members n1..n3 (ports 5441..5443). Async: n2 is the primary. Sync: n3 is the primary
/// and n1 the synchronous standby (`FIRST 1`), as in Patroni's reference captures.
pub async fn cluster(sync: bool) -> MemConsensus {
    let c = MemConsensus::new();
    let leader = if sync { "n3" } else { "n2" };
    for (name, port) in [("n1", 5441), ("n2", 5442), ("n3", 5443)] {
        propose(
            &c,
            Operation::PublishMember {
                status: member(name, port, name == leader),
            },
        )
        .await;
    }
    propose(&c, acquire(leader, 0, HistoryKind::Bootstrap)).await;
    if sync {
        let mut config = DynamicConfig::default();
        config.synchronous.mode = rale_sync::SyncMode::On;
        config.synchronous.node_count = 1;
        propose(
            &c,
            Operation::SetConfig {
                expected_version: Some(0),
                config,
                actor: "fixture".into(),
                reason: "sync on".into(),
            },
        )
        .await;
        propose(
            &c,
            Operation::SetSync {
                epoch: Epoch(1),
                standbys: [n("n1")].into_iter().collect(),
                quorum: 1,
            },
        )
        .await;
    }
    c
}

/// What `node` sees: primary when it holds the lease, else a streaming replica.
pub fn snapshot(cluster: Arc<ClusterState>, node: &str) -> NodeSnapshot {
    let primary = cluster.holder() == Some(&n(node));
    let mut pg = PgStatus::stopped(DataDirState::Initialized {
        system_id: SYSTEM_ID,
    });
    pg.running = true;
    pg.reachable = true;
    pg.in_recovery = !primary;
    pg.timeline = Timeline(3);
    pg.write_lsn = Lsn(LSN);
    pg.server_version_num = 150018;
    if !primary {
        pg.receive_lsn = Some(Lsn(LSN));
        pg.replay_lsn = Some(Lsn(LSN));
        pg.streaming = true;
    }
    let m = cluster.members.get(&n(node)).cloned();
    NodeSnapshot {
        node: n(node),
        api_url: m.as_ref().map(|m| m.api_url.clone()).unwrap_or_default(),
        pg_host: "127.0.0.1".into(),
        pg_port: m.as_ref().map(|m| m.pg_port).unwrap_or(5432),
        tags: Default::default(),
        pg,
        lease_epoch: primary.then(|| cluster.epoch()),
        fence_open: primary,
        consensus_ok: true,
        loop_last_unix_ms: now_ms(),
        loop_duration_ms: 12,
        last_decision: "fixture".into(),
        consensus_term: 4,
        consensus_leader: Some(n("n1")),
        started_unix_ms: now_ms(),
        cluster,
    }
}

pub struct Node {
    pub app: Router,
    pub consensus: MemConsensus,
    pub snapshot_tx: watch::Sender<Arc<NodeSnapshot>>,
}

/// The router of `node` over `consensus`, with a short operation timeout.
pub async fn node(consensus: &MemConsensus, name: &str) -> Node {
    node_with(consensus, name, |_| {}).await
}

pub async fn node_with(
    consensus: &MemConsensus,
    name: &str,
    tweak: impl FnOnce(&mut ApiState),
) -> Node {
    let state = consensus.read().await.expect("read");
    let (tx, rx) = watch::channel(Arc::new(snapshot(state, name)));
    let handle = consensus.handle();
    let mut api = ApiState::new(
        rx,
        Arc::new(handle.clone()),
        AuthConfig::basic(USER, PASSWORD),
        "anchor",
    );
    api.operation_timeout = std::time::Duration::from_secs(3);
    tweak(&mut api);
    Node {
        app: router(api),
        consensus: handle,
        snapshot_tx: tx,
    }
}

pub fn basic(user: &str, pass: &str) -> String {
    let raw = format!("{user}:{pass}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One request through the router; `auth` adds the fixture's Basic credentials.
pub async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<&str>,
    auth: bool,
) -> Reply {
    call_with(
        app,
        method,
        uri,
        body,
        if auth {
            Some(basic(USER, PASSWORD))
        } else {
            None
        },
        &[],
    )
    .await
}

pub async fn call_with(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<&str>,
    authorization: Option<String>,
    extra_headers: &[(&str, &str)],
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    for (k, v) in extra_headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(
            body.map(|b| Body::from(b.to_owned()))
                .unwrap_or_else(Body::empty),
        )
        .expect("request");
    let resp = app
        .clone()
        .oneshot(req)
        .await
        .expect("router is infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .expect("body");
    Reply {
        status,
        headers,
        body,
    }
}

/// Reads one of Patroni's reference captures from `ramd-ref/tests/reference/patroni/` (a
/// copy kept in the repository, see its README), or from `RALE_PATRONI_REFERENCE`.
pub fn reference(file: &str) -> serde_json::Value {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var("RALE_PATRONI_REFERENCE")
            .ok()
            .map(std::path::PathBuf::from),
        Some(manifest.join("tests/reference/patroni")),
    ];
    for dir in candidates.into_iter().flatten() {
        let path = dir.join(file);
        if let Ok(text) = std::fs::read_to_string(&path) {
            return serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
    panic!(
        "reference capture {file} not found in ramd-ref/tests/reference/patroni (or \
         RALE_PATRONI_REFERENCE)"
    );
}
