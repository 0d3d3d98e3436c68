//! Synchronous-standby endpoints (`/api/v1/sync-standbys/*`) through the router: status
//! from the primary and a replica, and changes that go through the configuration path.
//! Run: cargo test -p ramd-ref --test api_sync

mod api_fixture;

use api_fixture::*;
use axum::http::{Method, StatusCode};
use rale::Consensus;
use rale_sync::{CommitLevel, SyncMode};

#[tokio::test]
async fn status_from_primary_and_replica() {
    let consensus = cluster(true).await;
    let primary = node(&consensus, "n3").await;
    let r = call(
        &primary.app,
        Method::GET,
        "/api/v1/sync-standbys/status",
        None,
        false,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["mode"], "on");
    assert_eq!(v["node_count"], 1);
    assert_eq!(v["commit_level"], "on");
    assert_eq!(v["primary"], "n3");
    assert_eq!(v["recorded"]["standbys"], serde_json::json!(["n1"]));
    assert_eq!(v["recorded"]["quorum"], 1);
    assert_eq!(v["recorded"]["current"], true);
    assert_eq!(v["enforced_source"], "local_primary");
    assert!(v["enforced_names"].is_string());
    let standbys = v["standbys"].as_array().expect("standbys");
    assert_eq!(standbys.len(), 2, "every member but the primary");
    let s = |name: &str| {
        standbys
            .iter()
            .find(|x| x["name"] == name)
            .expect("listed")
            .clone()
    };
    assert_eq!(s("n1")["sync_state"], "sync");
    assert_eq!(s("n2")["sync_state"], "async");
    assert_eq!(s("n1")["lag_bytes"], 0);

    let replica = node(&consensus, "n1").await;
    let v = call(
        &replica.app,
        Method::GET,
        "/api/v1/sync-standbys/status",
        None,
        false,
    )
    .await
    .json();
    assert_eq!(v["enforced_source"], "unknown");
    assert!(v["enforced_names"].is_null());
    assert_eq!(v["recorded"]["standbys"], serde_json::json!(["n1"]));
}

async fn history_reasons(app: &axum::Router) -> Vec<String> {
    call(app, Method::GET, "/api/v1/history", None, false)
        .await
        .json()
        .as_array()
        .expect("history")
        .iter()
        .filter(|e| e["kind"] == "config")
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn changes_go_through_the_configuration() {
    let consensus = cluster(true).await;
    let n1 = node(&consensus, "n1").await;
    let v0 = consensus.read().await.expect("read").config_version;
    let post = |path: &'static str, body: &'static str| {
        let app = n1.app.clone();
        async move { call(&app, Method::POST, path, Some(body), true).await }
    };

    let r = post("/api/v1/sync-standbys/add", r#"{"node": "n2"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["config_version"], v0 + 1);
    let s = consensus.read().await.expect("read");
    assert_eq!(s.config.synchronous.pinned, ["n2"]);
    assert_eq!(s.config_version, v0 + 1);
    assert!(
        history_reasons(&n1.app)
            .await
            .iter()
            .any(|r| r.contains("n2 pinned"))
    );

    // Adding again changes nothing; unknown members and missing credentials are refused.
    let r = post("/api/v1/sync-standbys/add", r#"{"node": "n2"}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(consensus.read().await.expect("read").config_version, v0 + 1);
    let r = post("/api/v1/sync-standbys/add", r#"{"node": "n9"}"#).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(
        &n1.app,
        Method::POST,
        "/api/v1/sync-standbys/add",
        Some(r#"{"node": "n1"}"#),
        false,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = post("/api/v1/sync-standbys/remove", r#"{"node": "n2"}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    let s = consensus.read().await.expect("read");
    assert!(s.config.synchronous.pinned.is_empty());
    assert_eq!(s.config_version, v0 + 2);
    let r = post("/api/v1/sync-standbys/remove", r#"{"node": "n2"}"#).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert!(
        r.json()["error"]
            .as_str()
            .expect("error")
            .contains("nosync")
    );

    let r = post("/api/v1/sync-standbys/any-n", r#"{"n": 2}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    let s = consensus.read().await.expect("read");
    assert_eq!(s.config.synchronous.mode, SyncMode::Quorum);
    assert_eq!(s.config.synchronous.node_count, 2);
    assert_eq!(s.config_version, v0 + 3);
    for bad in [r#"{"n": 0}"#, r#"{"n": 1, "min": 1}"#, r#"{}"#] {
        let r = post("/api/v1/sync-standbys/any-n", bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }

    let r = post("/api/v1/sync-standbys/count", r#"{"n": 1}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    let s = consensus.read().await.expect("read");
    assert_eq!(
        s.config.synchronous.mode,
        SyncMode::Quorum,
        "count keeps the mode"
    );
    assert_eq!(s.config.synchronous.node_count, 1);
    let r = post("/api/v1/sync-standbys/count", r#"{"n": 0}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = post(
        "/api/v1/sync-standbys/commit-level",
        r#"{"level": "remote_apply"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["synchronous"]["commit_level"], "remote_apply");
    let s = consensus.read().await.expect("read");
    assert_eq!(s.config.synchronous.commit_level, CommitLevel::RemoteApply);
    let r = post(
        "/api/v1/sync-standbys/commit-level",
        r#"{"level": "eventually"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let after = consensus.read().await.expect("read");
    assert_eq!(after.config_version, v0 + 5);
    assert_eq!(
        history_reasons(&n1.app).await.len() as u64,
        after.config_version,
        "one entry per change"
    );
}

#[tokio::test]
async fn count_turns_synchronous_mode_on() {
    let consensus = cluster(false).await;
    let n1 = node(&consensus, "n1").await;
    let r = call(
        &n1.app,
        Method::POST,
        "/api/v1/sync-standbys/count",
        Some(r#"{"n": 2}"#),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let s = consensus.read().await.expect("read");
    assert_eq!(s.config.synchronous.mode, SyncMode::On);
    assert_eq!(s.config.synchronous.node_count, 2);
}
