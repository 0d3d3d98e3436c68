//! The API router without a socket: shapes, operations, configuration, auth, OpenAPI.
//! Run: cargo test -p ramd-ref --test api_router

mod api_fixture;

use std::time::Duration;

use api_fixture::*;
use axum::http::{Method, StatusCode, header};
use rale::Consensus;
use rale::state::{HistoryKind, Operation};
use ramd_ref::api::route_table;
use ramd_ref::config::AuthConfig;

#[tokio::test]
async fn cluster_has_patronis_shape() {
    for (sync, file) in [
        (false, "async_cluster_leader.json"),
        (true, "sync_cluster_leader.json"),
    ] {
        let reference = reference(file);
        let consensus = cluster(sync).await;
        let n1 = node(&consensus, "n1").await;
        let ours = call(&n1.app, Method::GET, "/cluster", None, false).await;
        assert_eq!(ours.status, StatusCode::OK);
        let ours = ours.json();
        assert_eq!(ours["scope"], reference["scope"]);
        let theirs = reference["members"].as_array().expect("members");
        let mine = ours["members"].as_array().expect("members");
        assert_eq!(mine.len(), theirs.len());
        for (m, t) in mine.iter().zip(theirs) {
            let m = m.as_object().expect("member object");
            let t = t.as_object().expect("member object");
            let mut mine_keys: Vec<_> = m.keys().collect();
            let mut their_keys: Vec<_> = t.keys().collect();
            mine_keys.sort();
            their_keys.sort();
            assert_eq!(mine_keys, their_keys, "{file}: keys of {}", t["name"]);
            for key in [
                "name",
                "role",
                "state",
                "api_url",
                "host",
                "port",
                "lag",
                "receive_lag",
                "replay_lag",
            ] {
                assert_eq!(m.get(key), t.get(key), "{file}: {key} of {}", t["name"]);
            }
            assert_eq!(m["timeline"], 3);
        }
    }
}

#[tokio::test]
async fn history_and_nodes() {
    let consensus = cluster(false).await;
    propose(
        &consensus,
        Operation::ReleaseLease {
            node: n("n2"),
            epoch: rale::Epoch(1),
            successor: Some(n("n1")),
            reason: "switchover".into(),
            final_position: None,
        },
    )
    .await;
    propose(&consensus, acquire("n1", 1, HistoryKind::Switchover)).await;
    let app = node(&consensus, "n3").await.app;
    let history = call(&app, Method::GET, "/history", None, false)
        .await
        .json();
    let rows = history.as_array().expect("array");
    assert_eq!(rows.len(), 1, "only changes of primary: {history}");
    assert_eq!(rows[0][0], 3);
    assert_eq!(rows[0][1], LSN);
    assert_eq!(rows[0][4], "n1");
    let full = call(&app, Method::GET, "/api/v1/history", None, false)
        .await
        .json();
    let kinds: Vec<_> = full
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(kinds, vec!["bootstrap", "lease_released", "switchover"]);

    let nodes = call(&app, Method::GET, "/api/v1/nodes", None, false)
        .await
        .json();
    assert_eq!(nodes.as_array().map(Vec::len), Some(3));
    let one = call(&app, Method::GET, "/api/v1/nodes/n1", None, false).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["role"], "leader");
    let missing = call(&app, Method::GET, "/api/v1/nodes/n9", None, false).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let body = missing.json();
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("n9")),
        "{body}"
    );
    assert_eq!(body["node"], "n9");

    let status = call(&app, Method::GET, "/api/v1/cluster/status", None, false)
        .await
        .json();
    assert_eq!(status["leader"], "n1");
    assert_eq!(status["epoch"], 2);
    assert_eq!(status["this_node"], "n3");
    let health = call(&app, Method::GET, "/api/v1/cluster/health", None, false).await;
    // The fixture's published statuses still say n2 is the primary: n1 does not report
    // a running primary yet, so the cluster is not healthy.
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.json()["status"], "unavailable");
}

#[tokio::test]
async fn state_changes_need_credentials() {
    let consensus = cluster(false).await;
    let app = node(&consensus, "n1").await.app;
    for (method, path) in [
        (Method::POST, "/switchover"),
        (Method::POST, "/failover"),
        (Method::DELETE, "/switchover"),
        (Method::PATCH, "/config"),
        (Method::PUT, "/config"),
        (Method::POST, "/api/v1/pause"),
        (Method::POST, "/restart"),
    ] {
        let r = call(&app, method.clone(), path, Some("{}"), false).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(
            r.headers
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok()),
            Some("Basic realm=\"rale\"")
        );
        let wrong = call_with(
            &app,
            method.clone(),
            path,
            Some("{}"),
            Some(basic(USER, "nope")),
            &[],
        )
        .await;
        assert_eq!(
            wrong.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} wrong password"
        );
    }
    let state = consensus.read().await.expect("read");
    assert!(!state.paused && state.switchover.is_none());
    // Reads stay open.
    assert_eq!(
        call(&app, Method::GET, "/config", None, false).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn allow_list_and_closed_reads() {
    let consensus = cluster(false).await;
    let node = node_with(&consensus, "n1", |api| {
        api.auth = AuthConfig {
            read_open: false,
            allow_networks: vec!["10.0.0.0/8".parse().expect("net")],
            ..AuthConfig::basic(USER, PASSWORD)
        }
        .into();
    })
    .await;
    let app = node.app.layer(axum::extract::connect_info::MockConnectInfo(
        std::net::SocketAddr::from(([192, 168, 1, 5], 4000)),
    ));
    let r = call(&app, Method::POST, "/api/v1/pause", None, true).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "client outside the allow-list"
    );
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("192.168.1.5"))
    );
    assert_eq!(
        call(&app, Method::GET, "/cluster", None, false)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, Method::GET, "/cluster", None, true).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, Method::GET, "/replica", None, false)
            .await
            .status,
        StatusCode::OK,
        "health checks stay open"
    );
    let inside = node_with(&consensus, "n1", |api| {
        api.auth = AuthConfig {
            allow_networks: vec!["10.0.0.0/8".parse().expect("net")],
            ..(*api.auth.current()).clone()
        }
        .into();
    })
    .await
    .app
    .layer(axum::extract::connect_info::MockConnectInfo(
        std::net::SocketAddr::from(([10, 1, 2, 3], 4000)),
    ));
    assert_eq!(
        call(&inside, Method::POST, "/api/v1/pause", None, true)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn malformed_json_is_400() {
    let consensus = cluster(false).await;
    let app = node(&consensus, "n1").await.app;
    for (method, path, body) in [
        (Method::POST, "/switchover", "{\"leader\": "),
        (Method::POST, "/failover", "[1,2"),
        (Method::PATCH, "/config", "not json"),
        (Method::PUT, "/config", "{\"lease_ttl\": }"),
        (Method::POST, "/switchover", "{\"leader\": 42}"),
    ] {
        let r = call(&app, method.clone(), path, Some(body), true).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {path} {body}");
        assert!(r.json()["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
}

#[tokio::test]
async fn config_merge_patch_validation_and_conflict() {
    let consensus = cluster(false).await;
    let app = node(&consensus, "n1").await.app;
    let got = call(&app, Method::GET, "/config", None, false).await;
    assert_eq!(
        got.headers.get(header::ETAG).and_then(|v| v.to_str().ok()),
        Some("\"0\"")
    );
    assert_eq!(got.json()["lease_ttl"], "1s 500ms");

    // Merge: change one key, nested keys merge, others unchanged.
    let patch = r#"{"lease_ttl": "3s", "synchronous": {"strict": true}, "postgresql_parameters": {"work_mem": "8MB"}}"#;
    let r = call(&app, Method::PATCH, "/config", Some(patch), true).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    let c = r.json();
    assert_eq!(c["lease_ttl"], "3s");
    assert_eq!(c["synchronous"]["strict"], true);
    assert_eq!(c["synchronous"]["mode"], "off");
    assert_eq!(c["postgresql_parameters"]["work_mem"], "8MB");
    assert_eq!(c["renew_interval"], "250ms");
    let state = consensus.read().await.expect("read");
    assert_eq!(state.config_version, 1);
    assert_eq!(state.config.lease_ttl, Duration::from_secs(3));

    // null resets to the default / deletes the map entry.
    let r = call(
        &app,
        Method::PATCH,
        "/api/v1/config",
        Some(r#"{"lease_ttl": null, "postgresql_parameters": {"work_mem": null}}"#),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["lease_ttl"], "1s 500ms");
    assert!(
        r.json()["postgresql_parameters"]
            .as_object()
            .is_some_and(|m| m.is_empty())
    );

    // Invalid: unknown key, wrong type, broken rule; state unchanged.
    for bad in [
        r#"{"ttl": 30}"#,
        r#"{"lease_ttl": 5}"#,
        r#"{"lease_ttl": "400ms"}"#,
        "[1]",
    ] {
        let r = call(&app, Method::PATCH, "/config", Some(bad), true).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.json()["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    assert_eq!(consensus.read().await.expect("read").config_version, 2);

    // Compare-and-set: a change based on an old version is refused with 409.
    let r = call_with(
        &app,
        Method::PATCH,
        "/config",
        Some(r#"{"use_pg_rewind": false}"#),
        Some(basic(USER, PASSWORD)),
        &[("if-match", "\"1\"")],
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["config_version"], 2);
    let r = call_with(
        &app,
        Method::PATCH,
        "/config",
        Some(r#"{"use_pg_rewind": false}"#),
        Some(basic(USER, PASSWORD)),
        &[("if-match", "\"2\"")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers.get(header::ETAG).and_then(|v| v.to_str().ok()),
        Some("\"3\"")
    );

    // PUT replaces: missing keys take their defaults.
    let r = call(
        &app,
        Method::PUT,
        "/config",
        Some(r#"{"renew_interval": "200ms"}"#),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let state = consensus.read().await.expect("read");
    assert!(state.config.fence, "fence back to its default");
    assert_eq!(state.config.renew_interval, Duration::from_millis(200));
}

#[tokio::test]
async fn switchover_refusals_leave_the_state_unchanged() {
    let consensus = cluster(false).await;
    let app = node(&consensus, "n1").await.app;
    let post = |path: &'static str, body: &'static str| {
        let app = app.clone();
        async move { call(&app, Method::POST, path, Some(body), true).await }
    };
    let r = post("/switchover", r#"{"candidate": "n1"}"#).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "switchover needs a leader"
    );
    let r = post("/failover", r#"{"leader": "n2"}"#).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "failover needs a candidate"
    );
    let r = post("/switchover", r#"{"leader": "n1", "candidate": "n3"}"#).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "leader mismatch");
    assert!(r.json()["error"].as_str().is_some_and(|e| e.contains("n2")));
    let r = post("/switchover", r#"{"leader": "n2", "candidate": "n7"}"#).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "not a member");
    let r = post("/switchover", r#"{"leader": "n2", "candidate": "n2"}"#).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "already primary");
    let r = post(
        "/failover",
        r#"{"candidate": "n1", "scheduled_at": "2099-01-01T00:00:00+00:00"}"#,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "failover cannot be scheduled"
    );
    let r = post(
        "/switchover",
        r#"{"leader": "n2", "scheduled_at": "tomorrow"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = post(
        "/switchover",
        r#"{"leader": "n2", "scheduled_at": "2001-01-01T00:00:00Z"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // nofailover candidate.
    let mut n3 = member("n3", 5443, false);
    n3.tags.nofailover = true;
    propose(&consensus, Operation::PublishMember { status: n3 }).await;
    let r = post("/switchover", r#"{"leader": "n2", "candidate": "n3"}"#).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("nofailover"))
    );

    // Paused: a change of primary needs a named candidate (400 without, as in Patroni),
    // nothing proposed; scheduling is refused.
    let r = post("/api/v1/pause", "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["paused"], true);
    let again = post("/api/v1/pause", "").await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let before = consensus.read().await.expect("read");
    let r = post("/switchover", r#"{"leader": "n2"}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("specific candidate in a paused state")),
        "{:?}",
        r.json()
    );
    let r = post(
        "/api/v1/cluster/switchover",
        r#"{"from": "n2", "to": "n1", "scheduled_at": "2099-01-01T00:00:00Z"}"#,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "no scheduling while paused"
    );
    let after = consensus.read().await.expect("read");
    assert_eq!(after.switchover, None);
    assert_eq!(after.holder(), Some(&n("n2")));
    assert_eq!(after.revision, before.revision, "nothing proposed");
    assert_eq!(post("/api/v1/resume", "").await.status, StatusCode::OK);
    assert_eq!(
        post("/api/v1/resume", "").await.status,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn scheduled_switchover_and_cancel() {
    let consensus = cluster(false).await;
    let app = node(&consensus, "n1").await.app;
    let r = call(
        &app,
        Method::POST,
        "/switchover",
        Some(r#"{"leader": "n2", "candidate": "n1", "scheduled_at": "2099-01-01T10:00:00+02:00"}"#),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.json());
    let pending = consensus
        .read()
        .await
        .expect("read")
        .switchover
        .clone()
        .expect("pending");
    assert_eq!(pending.to, Some(n("n1")));
    assert_eq!(pending.from, Some(n("n2")));
    assert_eq!(pending.scheduled_at_unix_ms, Some(4_070_937_600_000));
    assert_eq!(pending.requested_by, format!("api:{USER}"));
    let cluster = call(&app, Method::GET, "/cluster", None, false)
        .await
        .json();
    assert_eq!(
        cluster["scheduled_switchover"]["at"],
        "2099-01-01T08:00:00.000+00:00"
    );
    let twice = call(
        &app,
        Method::POST,
        "/switchover",
        Some(r#"{"leader": "n2"}"#),
        true,
    )
    .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert_eq!(
        call(&app, Method::DELETE, "/switchover", None, true)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, Method::DELETE, "/switchover", None, true)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert!(consensus.read().await.expect("read").switchover.is_none());
}

/// Plays the HA loop: hands the lease to the requested member once a switchover appears.
fn spawn_ha(consensus: rale::MemConsensus) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let Ok(s) = consensus.read().await else {
                continue;
            };
            let Some(sw) = s.switchover.clone() else {
                continue;
            };
            let (Some(holder), Some(to)) = (s.holder().cloned(), sw.to.clone()) else {
                continue;
            };
            let epoch = s.epoch();
            propose(
                &consensus,
                Operation::ReleaseLease {
                    node: holder,
                    epoch,
                    successor: Some(to.clone()),
                    reason: "switchover".into(),
                    final_position: None,
                },
            )
            .await;
            propose(
                &consensus,
                acquire(to.as_str(), epoch.0, HistoryKind::Switchover),
            )
            .await;
            return;
        }
    })
}

#[tokio::test]
async fn switchover_waits_for_the_new_primary() {
    let consensus = cluster(false).await;
    let app = node(&consensus, "n3").await.app;
    let ha = spawn_ha(consensus.handle());
    let r = call(
        &app,
        Method::POST,
        "/switchover",
        Some(r#"{"leader": "n2", "candidate": "n1"}"#),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    assert_eq!(r.json()["message"], "Successfully switched over to n1");
    ha.await.expect("ha task");
    let ha = spawn_ha(consensus.handle());
    let r = call(
        &app,
        Method::POST,
        "/api/v1/failover",
        Some(r#"{"candidate": "n2"}"#),
        true,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::PRECONDITION_FAILED,
        "n2 still publishes itself as primary: {:?}",
        r.json()
    );
    ha.abort();
    propose(
        &consensus,
        Operation::PublishMember {
            status: member("n3", 5443, false),
        },
    )
    .await;
    let ha = spawn_ha(consensus.handle());
    let r = call(&app, Method::POST, "/api/v1/promote/n3", None, true).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    assert_eq!(r.json()["message"], "Successfully failed over to n3");
    ha.await.expect("ha task");
}

#[tokio::test]
async fn switchover_without_ha_loop_is_unknown() {
    let consensus = cluster(false).await;
    let app = node_with(&consensus, "n3", |api| {
        api.operation_timeout = Duration::from_millis(600)
    })
    .await
    .app;
    let r = call(
        &app,
        Method::POST,
        "/switchover",
        Some(r#"{"leader": "n2"}"#),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown"))
    );
    assert!(
        consensus.read().await.expect("read").switchover.is_some(),
        "the request stays pending"
    );
}

#[tokio::test]
async fn node_actions_are_not_available_without_the_daemon() {
    let consensus = cluster(false).await;
    let app = node(&consensus, "n1").await.app;
    for path in [
        "/restart",
        "/reinitialize",
        "/reload",
        "/api/v1/config/reload",
    ] {
        let r = call(&app, Method::POST, path, None, true).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(
            r.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("not available"))
        );
    }
}

#[tokio::test]
async fn every_route_is_served_and_documented() {
    let consensus = cluster(false).await;
    let app = node(&consensus, "n1").await.app;
    let doc = call(&app, Method::GET, "/openapi.json", None, false).await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let table = route_table();
    assert!(table.len() > 60, "{} routes", table.len());
    for route in &table {
        let item = &doc["paths"][route.path];
        assert!(item.is_object(), "{} missing from openapi.json", route.path);
        assert!(
            item[route.method.to_ascii_lowercase()].is_object(),
            "{} {} missing from openapi.json",
            route.method,
            route.path
        );
        // The router really serves it (no 405/404 from routing). Read-only routes only
        // plus writes answered before any effect (bad body).
        let path = route.path.replace("{id}", "n1");
        let method: Method = route.method.parse().expect("method");
        if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let r = call(&app, method.clone(), &path, None, true).await;
            assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                r.status != StatusCode::NOT_FOUND || path.contains("/nodes/"),
                "{method} {path}"
            );
        }
    }
    let documented: usize = doc["paths"].as_object().map(|p| p.len()).unwrap_or(0);
    let mut served: Vec<_> = table.iter().map(|r| r.path).collect();
    served.dedup();
    assert_eq!(documented, served.len(), "every documented path is served");
    // Writes are wired to handlers: an empty body to each answers 4xx/5xx of the handler,
    // never 405.
    for route in table
        .iter()
        .filter(|r| !matches!(r.method, "GET" | "HEAD" | "OPTIONS"))
    {
        let path = route.path.replace("{id}", "n9");
        let method: Method = route.method.parse().expect("method");
        let r = call(&app, method.clone(), &path, Some("[]"), true).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        let body = String::from_utf8_lossy(&r.body).to_string();
        assert!(
            !body.contains("no such endpoint"),
            "{method} {path}: {body}"
        );
    }
}

#[tokio::test]
async fn metrics_use_patroni_names_in_prometheus_text() {
    let consensus = cluster(false).await;
    let primary = node(&consensus, "n2").await.app;
    let r = call(&primary, Method::GET, "/metrics", None, false).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4"))
    );
    let text = String::from_utf8(r.body.to_vec()).expect("utf-8");
    // For checking with `promtool check metrics` by hand.
    if let Ok(path) = std::env::var("RALE_METRICS_DUMP") {
        std::fs::write(path, &text).expect("write metrics dump");
    }
    for line in [
        "patroni_primary{scope=\"anchor\",name=\"n2\"} 1",
        "patroni_replica{scope=\"anchor\",name=\"n2\"} 0",
        &format!("patroni_xlog_location{{scope=\"anchor\",name=\"n2\"}} {LSN}"),
        "patroni_postgres_timeline{scope=\"anchor\",name=\"n2\"} 3",
        "patroni_is_paused{scope=\"anchor\",name=\"n2\"} 0",
        "patroni_cluster_unlocked{scope=\"anchor\",name=\"n2\"} 0",
        "rale_lease_epoch{scope=\"anchor\",name=\"n2\"} 1",
        "rale_consensus_term{scope=\"anchor\",name=\"n2\"} 4",
        "rale_fence_open{scope=\"anchor\",name=\"n2\"} 1",
        "rale_failovers_total{scope=\"anchor\",name=\"n2\"} 0",
        "# TYPE rale_switchovers_total counter",
        "rale_replication_lag_bytes{scope=\"anchor\",name=\"n2\",member=\"n1\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    for l in text.lines().filter(|l| l.starts_with("# TYPE")) {
        let name = l.split_whitespace().nth(2).expect("name");
        assert!(text.contains(&format!("# HELP {name} ")), "HELP for {name}");
    }
    let replica = node(&consensus, "n1").await.app;
    let text = String::from_utf8(
        call(&replica, Method::GET, "/metrics", None, false)
            .await
            .body
            .to_vec(),
    )
    .expect("utf-8");
    assert!(text.contains(&format!(
        "patroni_xlog_replayed_location{{scope=\"anchor\",name=\"n1\"}} {LSN}"
    )));
    assert!(text.contains("patroni_replica{scope=\"anchor\",name=\"n1\"} 1"));
}

/// `docs/api.md` names every route the router serves (the operator's reference).
#[test]
fn the_api_reference_names_every_route() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/api.md");
    let doc = std::fs::read_to_string(&path).expect("docs/api.md");
    let mut missing = Vec::new();
    for route in ramd_ref::api::route_table() {
        let named = [" ", "`", ",", "?"].iter().any(|end| {
            doc.contains(&format!("`{}{end}", route.path))
                || doc.contains(&format!(" {}{end}", route.path))
        });
        if !named {
            missing.push(route.path);
        }
    }
    missing.dedup();
    assert!(missing.is_empty(), "docs/api.md does not name {missing:?}");
}

/// Issue 14, item 5: state changes a web page could forge. Bodies must be JSON (415),
/// cross-origin browsers are refused (403), `patronictl`'s JSON without a Content-Type
/// is still accepted.
#[tokio::test]
async fn forgeable_state_changes_are_refused() {
    use tower::ServiceExt;
    let consensus = cluster(false).await;
    let n1 = node(&consensus, "n1").await;
    let send = |method: Method,
                path: &'static str,
                body: &'static str,
                content_type: Option<&'static str>,
                origin: Option<&'static str>| {
        let app = n1.app.clone();
        async move {
            let mut req = axum::http::Request::builder()
                .method(method)
                .uri(path)
                .header(header::AUTHORIZATION, basic(USER, PASSWORD))
                .header(header::CONTENT_LENGTH, body.len().to_string())
                .header(header::HOST, "10.0.0.1:8008");
            if let Some(ct) = content_type {
                req = req.header(header::CONTENT_TYPE, ct);
            }
            if let Some(o) = origin {
                req = req
                    .header("origin", o)
                    .header("sec-fetch-site", "cross-site");
            }
            let req = req.body(axum::body::Body::from(body)).expect("request");
            app.oneshot(req).await.expect("infallible").status()
        }
    };
    let before = consensus.read().await.expect("read").config_version;
    let patch = r#"{"lease_ttl": "3s"}"#;
    assert_eq!(
        send(Method::PATCH, "/config", patch, Some("text/plain"), None).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        send(
            Method::PATCH,
            "/config",
            patch,
            Some("application/x-www-form-urlencoded"),
            None
        )
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        send(
            Method::PATCH,
            "/config",
            patch,
            Some("application/json"),
            Some("https://evil.example")
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        consensus.read().await.expect("read").config_version,
        before,
        "a refused request changed the configuration"
    );
    let switchover = r#"{"leader": "n1", "candidate": "nobody"}"#;
    assert_eq!(
        send(
            Method::POST,
            "/switchover",
            switchover,
            None,
            Some("https://evil.example")
        )
        .await,
        StatusCode::FORBIDDEN
    );
    // patronictl: JSON without a Content-Type, no browser headers — reaches the handler.
    let s = send(Method::POST, "/switchover", switchover, None, None).await;
    assert!(
        s != StatusCode::UNSUPPORTED_MEDIA_TYPE && s != StatusCode::FORBIDDEN,
        "patronictl-style request refused: {s}"
    );
    assert_eq!(
        send(
            Method::PATCH,
            "/config",
            patch,
            Some("application/json"),
            None
        )
        .await,
        StatusCode::OK
    );
}

/// Unknown paths: Patroni's root keeps its behaviour (a `GET` answers 503 with the node
/// status, for load balancers' own probe paths); RALE's namespace answers 404 (JSON).
#[tokio::test]
async fn unknown_paths_answer_404_under_api_v1_and_503_at_patronis_root() {
    let consensus = cluster(false).await;
    let app = node(&consensus, "n1").await.app;
    let r = call(&app, Method::GET, "/api/v1/no-such-thing", None, false).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("no such endpoint"))
    );
    let r = call(&app, Method::GET, "/api/v1", None, false).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(&app, Method::GET, "/some-probe-path", None, false).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.json()["state"].is_string(), "the node status");
    let r = call(&app, Method::POST, "/some-probe-path", Some("{}"), true).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
