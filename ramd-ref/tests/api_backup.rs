//! Backup endpoints (`/api/v1/backup/*`) through the router: 503 without a backup
//! service, and a start → status → list round trip with a `custom` tool whose hooks are
//! trivial shell commands (no PostgreSQL needed).
//! Run: cargo test -p ramd-ref --test api_backup

mod api_fixture;

use std::sync::Arc;
use std::time::Duration;

use api_fixture::*;
use axum::http::{Method, StatusCode};
use rale_backup::exec::RunAs;
use rale_backup::{CustomTool, HookConfig, JobManager};
use ramd_ref::backup::BackupService;

const ROUTES: &[(&str, &str, Option<&str>)] = &[
    ("POST", "/api/v1/backup/start", Some("{}")),
    (
        "POST",
        "/api/v1/backup/restore",
        Some(r#"{"data_dir": "/tmp/x", "target": {"type": "latest"}}"#),
    ),
    ("GET", "/api/v1/backup/list", None),
    ("GET", "/api/v1/backup/jobs", None),
    ("GET", "/api/v1/backup/schedule", None),
    ("GET", "/api/v1/backup/status/job-1", None),
    (
        "POST",
        "/api/v1/backup/schedule",
        Some(r#"{"schedules": []}"#),
    ),
];

#[tokio::test]
async fn not_configured_is_503() {
    let consensus = cluster(false).await;
    let n1 = node(&consensus, "n1").await;
    for &(method, path, body) in ROUTES {
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        let r = call(&n1.app, m, path, body, true).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{method} {path}");
        assert_eq!(r.json()["error"], "backups are not configured on this node");
    }
}

fn service(dir: &std::path::Path, live_dir: &std::path::Path) -> Arc<BackupService> {
    let hooks: HookConfig = serde_json::from_value(serde_json::json!({
        "state_dir": dir.join("hooks"),
        "backup": "echo taking %k backup %i; echo RALE_SIZE_BYTES=4096; echo RALE_LSN_START=0/3000028",
        "restore": "true",
        "pg_data_dir": live_dir,
    }))
    .expect("hook config");
    let tool = CustomTool::with_user(hooks, RunAs::current().expect("current user")).expect("tool");
    let jobs = JobManager::open(&dir.join("jobs"), Arc::new(tool), Some(n("n1"))).expect("jobs");
    Arc::new(
        BackupService::new(jobs, Vec::new(), None, vec![live_dir.to_owned()]).expect("service"),
    )
}

#[tokio::test]
async fn start_status_list_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).expect("live dir");
    let svc = service(dir.path(), &live);
    let consensus = cluster(false).await;
    let n1 = node_with(&consensus, "n1", |api| api.backup = Some(svc.clone())).await;

    let r = call(
        &n1.app,
        Method::POST,
        "/api/v1/backup/start",
        Some("{}"),
        false,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "state change needs credentials"
    );
    let r = call(
        &n1.app,
        Method::POST,
        "/api/v1/backup/start",
        Some(r#"{"kind": "incremental"}"#),
        true,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "the hooks take full backups only"
    );

    let r = call(
        &n1.app,
        Method::POST,
        "/api/v1/backup/start",
        Some(r#"{"kind": "full"}"#),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let id = r.json()["job_id"].as_str().expect("job id").to_owned();

    let mut last = serde_json::Value::Null;
    for _ in 0..300 {
        let r = call(
            &n1.app,
            Method::GET,
            &format!("/api/v1/backup/status/{id}"),
            None,
            false,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        last = r.json();
        if last["state"] == "succeeded" || last["state"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["state"], "succeeded", "{last}");
    assert_eq!(last["id"], id.as_str());
    assert!(last["duration_ms"].is_u64(), "{last}");
    let backup_id = last["backup_id"].as_str().expect("backup id").to_owned();

    let list = call(&n1.app, Method::GET, "/api/v1/backup/list", None, false).await;
    assert_eq!(list.status, StatusCode::OK);
    let list = list.json();
    assert_eq!(list["tool"], "custom");
    let backups = list["backups"].as_array().expect("backups");
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0]["id"], backup_id.as_str());
    assert_eq!(backups[0]["size_bytes"], 4096);

    let jobs = call(&n1.app, Method::GET, "/api/v1/backup/jobs", None, false)
        .await
        .json();
    assert_eq!(jobs["jobs"].as_array().expect("jobs").len(), 1);

    let r = call(
        &n1.app,
        Method::GET,
        "/api/v1/backup/status/job-nope",
        None,
        false,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Restores never write into the live data directory, and need an absolute path.
    let body = serde_json::json!({"data_dir": live, "target": {"type": "latest"}}).to_string();
    let r = call(
        &n1.app,
        Method::POST,
        "/api/v1/backup/restore",
        Some(&body),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["error"]
            .as_str()
            .expect("error")
            .contains("live data directory")
    );
    let r = call(
        &n1.app,
        Method::POST,
        "/api/v1/backup/restore",
        Some(r#"{"data_dir": "rel", "target": {"type": "latest"}}"#),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let restore_dir = dir.path().join("restore");
    let body =
        serde_json::json!({"data_dir": restore_dir, "target": {"type": "latest"}}).to_string();
    let r = call(
        &n1.app,
        Method::POST,
        "/api/v1/backup/restore",
        Some(&body),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let rid = r.json()["job_id"].as_str().expect("job id").to_owned();
    let job = svc
        .jobs()
        .wait(&rale_backup::JobId(rid), Duration::from_secs(30))
        .await
        .expect("restore job finishes");
    assert!(job.state.is_finished());
}

#[tokio::test]
async fn schedules_are_checked_and_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let svc = service(dir.path(), &dir.path().join("live"));
    let consensus = cluster(false).await;
    let n1 = node_with(&consensus, "n1", |api| api.backup = Some(svc.clone())).await;
    let body = r#"{"schedules": [{"name": "nightly", "kind": "full", "cron": "0 30 2 * * *", "placement": "prefer_replica"}], "retention": {"full_count": 2}}"#;
    let r = call(
        &n1.app,
        Method::POST,
        "/api/v1/backup/schedule",
        Some(body),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["schedules"][0]["name"], "nightly");
    assert!(v["schedules"][0]["next_run"].is_string());
    assert_eq!(v["retention"]["full_count"], 2);
    assert_eq!(svc.jobs().retention().and_then(|r| r.full_count), Some(2));

    let bad = r#"{"schedules": [{"name": "x", "kind": "full", "cron": "every night", "placement": "primary"}]}"#;
    let r = call(
        &n1.app,
        Method::POST,
        "/api/v1/backup/schedule",
        Some(bad),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        svc.schedule_status().schedules.len(),
        1,
        "unchanged after a refusal"
    );
}

/// Schedules set through the API survive a restart of the agent (a new service from the
/// same configuration) and take precedence over the file's; `GET` shows them.
#[tokio::test]
async fn schedules_set_through_the_api_are_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config: ramd_ref::config::BackupConfig = serde_json::from_value(serde_json::json!({
        "tool": "custom",
        "job_dir": dir.path().join("jobs"),
        "custom": {
            "state_dir": dir.path().join("hooks"),
            "backup": "true",
            "restore": "true",
        },
        "schedules": [{"name": "from-file", "kind": "full", "cron": "0 0 3 * * *", "placement": "primary"}],
    }))
    .expect("backup config");
    let first = Arc::new(BackupService::from_config(&config, n("n1")).expect("service"));
    let consensus = cluster(false).await;
    let n1 = node_with(&consensus, "n1", |api| api.backup = Some(first.clone())).await;
    let shown = call(&n1.app, Method::GET, "/api/v1/backup/schedule", None, false).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.json()["schedules"][0]["name"], "from-file");
    let set = call(
        &n1.app,
        Method::POST,
        "/api/v1/backup/schedule",
        Some(r#"{"schedules": [{"name": "from-api", "kind": "full", "cron": "0 0 4 * * *", "placement": "primary"}], "retention": {"full_count": 3}}"#),
        true,
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    drop(n1);
    drop(first);

    let again = BackupService::from_config(&config, n("n1")).expect("service after restart");
    let status = again.schedule_status();
    let names: Vec<&str> = status
        .schedules
        .iter()
        .map(|s| s.spec.name.as_str())
        .collect();
    assert_eq!(names, ["from-api"]);
    assert_eq!(status.retention.and_then(|r| r.full_count), Some(3));
}
