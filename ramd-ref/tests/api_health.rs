//! Health checks answer exactly what Patroni 4.1.5 answered on the same topology
//! (ramd-ref/tests/reference/patroni/{async,sync}_status_codes.json), on every member.
//! Run: cargo test -p ramd-ref --test api_health

mod api_fixture;

use api_fixture::*;
use axum::http::{Method, StatusCode};
use rale::Consensus;

async fn check_against(file: &str, sync: bool) {
    let reference = reference(file);
    let consensus = cluster(sync).await;
    let members = reference.as_object().expect("reference is an object");
    assert_eq!(members.len(), 3);
    let mut checked = 0;
    for (label, codes) in members {
        let name = label
            .split_whitespace()
            .next()
            .expect("label starts with the node name");
        let node = node(&consensus, name).await;
        for (key, expected) in codes.as_object().expect("codes object") {
            let (method, path) = match key.split_once(' ') {
                Some((m, p)) => (m.parse::<Method>().expect("method"), p),
                None => (Method::GET, key.as_str()),
            };
            let reply = call(&node.app, method.clone(), path, None, false).await;
            let expected = expected.as_u64().expect("status code");
            assert_eq!(
                u64::from(reply.status.as_u16()),
                expected,
                "{file}: {label} {method} {path}"
            );
            if method == Method::HEAD || method == Method::OPTIONS {
                assert!(reply.body.is_empty(), "{method} {path} must have no body");
            } else if path != "/metrics" {
                let body = reply.json();
                assert_eq!(
                    body["patroni"]["name"], name,
                    "{path} body is the node status"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 3 * 17, "checked only {checked} answers");
}

#[tokio::test]
async fn async_mode_matches_patroni() {
    check_against("async_status_codes.json", false).await;
}

#[tokio::test]
async fn sync_mode_matches_patroni() {
    check_against("sync_status_codes.json", true).await;
}

#[tokio::test]
async fn aliases_and_unknown_paths() {
    let consensus = cluster(true).await;
    let leader = node(&consensus, "n3").await;
    let standby = node(&consensus, "n1").await;
    let replica = node(&consensus, "n2").await;
    let get = |app, path: &'static str| async move {
        call(app, Method::GET, path, None, false).await.status
    };
    assert_eq!(get(&leader.app, "/").await, StatusCode::OK);
    assert_eq!(
        get(&replica.app, "/").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(&standby.app, "/synchronous").await, StatusCode::OK);
    assert_eq!(get(&replica.app, "/asynchronous").await, StatusCode::OK);
    assert_eq!(
        get(&standby.app, "/read-only-synchronous").await,
        StatusCode::OK
    );
    assert_eq!(get(&leader.app, "/read-only-quorum").await, StatusCode::OK);
    assert_eq!(
        get(&standby.app, "/read-only-quorum").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&leader.app, "/standby_leader").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Unknown GET: 503 with the status JSON, like Patroni.
    let unknown = call(&leader.app, Method::GET, "/no-such-check", None, false).await;
    assert_eq!(unknown.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unknown.json()["role"], "primary");
    // /patroni is always 200.
    let status = call(&replica.app, Method::GET, "/patroni", None, false).await;
    assert_eq!(status.status, StatusCode::OK);
    let body = status.json();
    assert_eq!(body["role"], "replica");
    assert_eq!(body["replication_state"], "streaming");
    assert_eq!(body["xlog"]["replayed_location"], LSN);
    assert_eq!(body["database_system_identifier"], SYSTEM_ID.to_string());
    assert_eq!(body["patroni"]["scope"], "anchor");
    assert!(
        body.get("cluster_unlocked").is_none(),
        "only present when unlocked"
    );
    let sync = call(&standby.app, Method::GET, "/patroni", None, false)
        .await
        .json();
    assert_eq!(sync["sync_standby"], true);
    let lead = call(&leader.app, Method::GET, "/patroni", None, false)
        .await
        .json();
    assert_eq!(lead["xlog"]["location"], LSN);
    assert_eq!(lead["lease_epoch"], 1);
    assert_eq!(lead["fence_open"], true);
    assert_eq!(lead["consensus_ok"], true);
}

#[tokio::test]
async fn replica_query_parameters() {
    let consensus = cluster(false).await;
    let replica = node(&consensus, "n1").await;
    // The primary moves 20 MiB ahead in its published status.
    let mut primary = member("n2", 5442, true);
    primary.lsn = rale::Lsn(LSN + 20 * 1024 * 1024);
    propose(
        &consensus,
        rale::state::Operation::PublishMember { status: primary },
    )
    .await;
    let get = |path: &'static str| {
        let app = replica.app.clone();
        async move { call(&app, Method::GET, path, None, false).await.status }
    };
    assert_eq!(get("/replica").await, StatusCode::OK);
    assert_eq!(
        get("/replica?lag=10MB").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get("/replica?lag=1GB").await, StatusCode::OK);
    assert_eq!(
        get("/replica?lag=16kB").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get("/replica?lag=30000000").await, StatusCode::OK);
    assert_eq!(
        get("/replica?lag=nonsense").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get("/replica?replication_state=streaming").await,
        StatusCode::OK
    );
    assert_eq!(
        get("/replica?replication_state=in%20archive%20recovery").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get("/replica?tag_nofailover=false").await, StatusCode::OK);
    assert_eq!(
        get("/replica?tag_nofailover=true").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get("/replica?tag_rack=a").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Readiness uses maximum_lag_on_failover (1 MiB by default).
    assert_eq!(get("/readiness").await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get("/readiness?lag=1GB").await, StatusCode::OK);
    assert_eq!(
        get("/read-only?lag=10MB").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn liveness_follows_the_ha_loop_and_noloadbalance_hides_replicas() {
    let consensus = cluster(false).await;
    let replica = node(&consensus, "n1").await;
    let state = consensus.read().await.expect("read");
    let mut snap = snapshot(state, "n1");
    snap.loop_last_unix_ms = now_ms() - 60_000;
    snap.tags.noloadbalance = true;
    replica.snapshot_tx.send_replace(std::sync::Arc::new(snap));
    let liveness = call(&replica.app, Method::GET, "/liveness", None, false).await;
    assert_eq!(
        liveness.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "loop stale for 60 s"
    );
    let r = call(&replica.app, Method::GET, "/replica", None, false).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "noloadbalance");
    assert_eq!(
        call(&replica.app, Method::GET, "/health", None, false)
            .await
            .status,
        StatusCode::OK
    );
}
