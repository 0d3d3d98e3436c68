//! Parameter endpoints (`/api/v1/parameter/*`) and the parameter check of `PATCH`/`PUT
//! /config`, through the router without a socket.
//! Run: cargo test -p ramd-ref --test api_params

mod api_fixture;

use api_fixture::*;
use axum::http::{Method, StatusCode};
use rale::Consensus;

#[tokio::test]
async fn validate_one_and_many() {
    let consensus = cluster(false).await;
    let n1 = node(&consensus, "n1").await;
    let r = call(
        &n1.app,
        Method::POST,
        "/api/v1/parameter/validate",
        Some(r#"{"name": "shared_buffers", "value": "1.5GB"}"#),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["version"], 15, "from the snapshot's server_version_num");
    assert_eq!(v["valid"], true);
    assert_eq!(v["results"][0]["verdict"]["status"], "ok");
    assert_eq!(v["results"][0]["verdict"]["setting"], "196608");
    assert_eq!(v["restart_required"][0], "shared_buffers");

    let r = call(
        &n1.app,
        Method::POST,
        "/api/v1/parameter/validate",
        Some(r#"{"version": 13, "parameters": {"shared_bufers": "1GB", "work_mem": 65536, "hot_standby": true}}"#),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["version"], 13);
    assert_eq!(v["valid"], false);
    let bad = v["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|x| x["name"] == "shared_bufers")
        .expect("the misspelt one");
    assert_eq!(bad["verdict"]["status"], "rejected");
    let msg = bad["verdict"]["message"].as_str().expect("message");
    assert!(
        msg.contains("did you mean") && msg.contains("shared_buffers"),
        "{msg}"
    );

    // Refusals: nothing to validate, a name without a value, an unsupported major, no
    // credentials.
    for body in [
        "{}",
        r#"{"name": "work_mem"}"#,
        r#"{"name": "work_mem", "value": "1MB", "version": 12}"#,
    ] {
        let r = call(
            &n1.app,
            Method::POST,
            "/api/v1/parameter/validate",
            Some(body),
            true,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(r.json()["error"].is_string());
    }
    let r = call(
        &n1.app,
        Method::POST,
        "/api/v1/parameter/validate",
        Some(r#"{"name": "work_mem", "value": "1MB"}"#),
        false,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn list_and_info() {
    let consensus = cluster(false).await;
    let n1 = node(&consensus, "n1").await;
    let r = call(
        &n1.app,
        Method::GET,
        "/api/v1/parameter/list?context=postmaster",
        None,
        false,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let params = v["parameters"].as_array().expect("parameters");
    assert!(params.iter().any(|p| p["name"] == "shared_buffers"));
    assert!(
        params
            .iter()
            .all(|p| p["context"] == "postmaster" && p["restart_required"] == true)
    );
    assert_eq!(v["count"], params.len());

    let all = call(
        &n1.app,
        Method::GET,
        "/api/v1/parameter/list?version=17",
        None,
        false,
    )
    .await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.json()["version"], 17);
    assert!(all.json()["count"].as_u64().expect("count") > params.len() as u64);
    for bad in ["?version=12", "?context=sometimes", "?version=x"] {
        let r = call(
            &n1.app,
            Method::GET,
            &format!("/api/v1/parameter/list{bad}"),
            None,
            false,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }

    let r = call(
        &n1.app,
        Method::GET,
        "/api/v1/parameter/info/wal_level",
        None,
        false,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["restart_required"], true);
    assert_eq!(v["versions"].as_array().expect("versions").len(), 5);

    let r = call(
        &n1.app,
        Method::GET,
        "/api/v1/parameter/info/shared_bufers",
        None,
        false,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let v = r.json();
    assert!(
        v["error"].as_str().expect("error").contains("did you mean"),
        "{v}"
    );
    assert_eq!(v["suggestions"][0], "shared_buffers");

    let r = call(
        &n1.app,
        Method::GET,
        "/api/v1/parameter/info/work%20mem",
        None,
        false,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "not a parameter name");

    // Added in 17: unknown to 15 (the cluster's), known with ?version=17.
    let r = call(
        &n1.app,
        Method::GET,
        "/api/v1/parameter/info/transaction_timeout",
        None,
        false,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(
        &n1.app,
        Method::GET,
        "/api/v1/parameter/info/transaction_timeout?version=17",
        None,
        false,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn optimize_recommends_or_refuses() {
    let consensus = cluster(false).await;
    let n1 = node(&consensus, "n1").await;
    let body = r#"{"total_memory_bytes": 8589934592, "cpu_count": 4, "storage": "ssd", "workload": "oltp", "max_connections": 200}"#;
    let r = call(
        &n1.app,
        Method::POST,
        "/api/v1/parameter/optimize",
        Some(body),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["version"], 15);
    let recs = v["recommendations"].as_array().expect("recommendations");
    let get = |name: &str| {
        recs.iter()
            .find(|x| x["name"] == name)
            .map(|x| x["value"].clone())
    };
    assert_eq!(get("shared_buffers"), Some("2GB".into()));
    assert_eq!(get("max_connections"), Some("200".into()));
    let tiny =
        r#"{"total_memory_bytes": 1000, "cpu_count": 4, "storage": "ssd", "workload": "oltp"}"#;
    let r = call(
        &n1.app,
        Method::POST,
        "/api/v1/parameter/optimize",
        Some(tiny),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(
        &n1.app,
        Method::POST,
        "/api/v1/parameter/optimize",
        Some(r#"{"cpu_count": 4}"#),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn config_changes_refuse_invalid_parameters() {
    let consensus = cluster(false).await;
    let n1 = node(&consensus, "n1").await;
    let before = consensus.read().await.expect("read");
    let patch = r#"{"postgresql_parameters": {"shared_bufers": "1GB", "work_mem": "lots", "wal_level": "replica"}}"#;
    for (method, path) in [
        (Method::PATCH, "/config"),
        (Method::PATCH, "/api/v1/config"),
        (Method::POST, "/api/v1/config"),
    ] {
        let r = call(&n1.app, method.clone(), path, Some(patch), true).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {path}");
        let v = r.json();
        let msg = v["error"].as_str().expect("error");
        assert!(
            msg.contains("shared_bufers") && msg.contains("did you mean"),
            "{msg}"
        );
        assert!(msg.contains("work_mem"), "{msg}");
        assert!(
            !msg.contains("wal_level"),
            "valid entries are not listed: {msg}"
        );
        let listed: Vec<_> = v["parameters"]
            .as_array()
            .expect("details")
            .iter()
            .map(|p| p["name"].clone())
            .collect();
        assert_eq!(listed, ["shared_bufers", "work_mem"]);
    }
    let put = r#"{"postgresql_parameters": {"max_connections": "0"}}"#;
    let r = call(&n1.app, Method::PUT, "/config", Some(put), true).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["error"]
            .as_str()
            .expect("error")
            .contains("max_connections")
    );
    let after = consensus.read().await.expect("read");
    assert_eq!(
        after.config_version, before.config_version,
        "nothing proposed"
    );
    assert_eq!(after.config, before.config);

    let good = r#"{"postgresql_parameters": {"work_mem": "64MB", "wal_level": "replica"}}"#;
    let r = call(&n1.app, Method::PATCH, "/config", Some(good), true).await;
    assert_eq!(r.status, StatusCode::OK);
    let after = consensus.read().await.expect("read");
    assert_eq!(after.config_version, before.config_version + 1);
    assert_eq!(
        after
            .config
            .postgresql_parameters
            .get("work_mem")
            .map(String::as_str),
        Some("64MB")
    );
}
