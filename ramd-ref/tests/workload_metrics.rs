//! The workload metrics as `GET /metrics` renders them: every name documented in
//! `docs/metrics.md`, `promtool check metrics` clean, and the cost of rendering a scrape
//! at 100 databases (a scrape renders the last sample and runs no SQL; the collection
//! itself is timed on a live server by `tests/tests/ops_generated_cluster.rs`).
//!
//! Run: `cargo test -p ramd-ref --test workload_metrics -- --nocapture`

mod ops_common;

use std::time::Instant;

use ops_common::{exposition_names, full_scrape, promtool, render_with};
use ramd_ref::workload::WorkloadView;

fn scrape(databases: usize) -> String {
    full_scrape(databases)
}

#[test]
fn every_served_name_is_documented() {
    let doc = std::fs::read_to_string(ops_common::repo().join("docs/metrics.md"))
        .expect("docs/metrics.md");
    let names = exposition_names(&scrape(2));
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !doc.contains(&format!("`{n}`")) && !doc.contains(&format!("`{n}{{")))
        .collect();
    assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
    assert!(names.len() > 70, "{}", names.len());
}

#[test]
fn workload_families_are_rendered() {
    let text = scrape(2);
    for line in [
        "pg_up{scope=\"demo\",name=\"n1\"} 1",
        "pg_stat_activity_connections{scope=\"demo\",name=\"n1\",datname=\"db000\",state=\"active\"} 2",
        "rale_connections_used_ratio{scope=\"demo\",name=\"n1\"} 0.1",
        "pg_stat_database_xact_commit_total{scope=\"demo\",name=\"n1\",datname=\"db001\"} 1001",
        "pg_database_size_bytes{scope=\"demo\",name=\"n1\",datname=\"db000\"} 7500000",
        "pg_stat_replication_lag_bytes{scope=\"demo\",name=\"n1\",application_name=\"n2\",point=\"replay\"} 4096",
        "pg_stat_replication_lag_seconds{scope=\"demo\",name=\"n1\",application_name=\"n2\",point=\"flush\"} 0.002",
        "pg_replication_slot_retained_wal_bytes{scope=\"demo\",name=\"n1\",slot_name=\"cdc\",slot_type=\"logical\"} 1048576",
        "pg_stat_bgwriter_checkpoints_timed_total{scope=\"demo\",name=\"n1\"} 10",
        "rale_oldest_xmin_age{scope=\"demo\",name=\"n1\",source=\"slot_catalog\"} 40",
        "rale_workload_collect_age_seconds{scope=\"demo\",name=\"n1\"} 5.0",
        "# TYPE pg_stat_wal_bytes_total counter",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn a_failed_collection_serves_no_stale_numbers() {
    let view = WorkloadView {
        sample: None,
        last_error: Some("connecting: refused".into()),
        errors: 3,
        enabled: true,
        attempt_unix_ms: 1,
    };
    let text = render_with(Some(&view), None);
    assert!(text.contains("pg_up{scope=\"demo\",name=\"n1\"} 0"));
    assert!(text.contains("rale_workload_collect_errors_total{scope=\"demo\",name=\"n1\"} 3"));
    assert!(!text.contains("pg_stat_database_xact_commit_total"));
    assert!(!text.contains("rale_backup_"));
    // Collection turned off: no pg_up at all (no alert about a server nobody watches).
    let off = WorkloadView::default();
    assert!(!render_with(Some(&off), None).contains("pg_up"));
}

#[test]
fn promtool_accepts_a_full_scrape_and_rendering_100_databases_is_cheap() {
    let text = scrape(100);
    let rounds = 50;
    let started = Instant::now();
    for _ in 0..rounds {
        assert!(!scrape(100).is_empty());
    }
    let per_scrape = started.elapsed() / rounds;
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    eprintln!(
        "FIGURE render of /metrics at 100 databases: {per_scrape:?} per scrape ({rounds} rounds), {} bytes, {series} series",
        text.len()
    );
    let Some(promtool) = promtool() else { return };
    use std::io::Write;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("promtool check metrics: clean");
}
