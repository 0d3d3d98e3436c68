//! The Grafana dashboard `deploy/grafana/rale-dashboard.json`: the fields file
//! provisioning needs, panels that cover the overview, replication, workload and backups,
//! and only metric names the agent serves (a live agent is checked by
//! `tests/tests/ops_generated_cluster.rs`).
//!
//! Run: `cargo test -p ramd-ref --test grafana_dashboard`.

mod ops_common;

use std::collections::BTreeSet;

use ops_common::{dashboard, dashboard_exprs, queried_names, served_names};
use serde_json::Value;

#[test]
fn has_what_file_provisioning_needs() {
    let d = dashboard();
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "title");
    let uid = d["uid"].as_str().expect("uid");
    assert!(
        !uid.is_empty() && uid.len() <= 40,
        "uid of 1..40 characters"
    );
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 30),
        "schemaVersion"
    );
    // A provisioned dashboard has no database id and no import-time `__inputs` (file
    // provisioning does not substitute them): its data source is a variable.
    assert!(
        d.get("id").is_none_or(Value::is_null),
        "id must be absent or null"
    );
    assert!(
        d.get("__inputs").is_none(),
        "__inputs cannot be provisioned"
    );
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter().any(|v| v["type"] == "datasource"
            && v["name"] == "datasource"
            && v["query"] == "prometheus"),
        "a Prometheus data source variable"
    );
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} repeated");
        assert!(p["type"].as_str().is_some(), "panel {id} type");
        assert!(p["title"].as_str().is_some(), "panel {id} title");
        let g = &p["gridPos"];
        for k in ["h", "w", "x", "y"] {
            assert!(g[k].as_u64().is_some(), "panel {id} gridPos.{k}");
        }
        assert!(
            g["x"].as_u64().unwrap_or(0) + g["w"].as_u64().unwrap_or(0) <= 24,
            "panel {id} fits 24 columns"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {id} data source"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {id} has a query");
        for t in targets {
            assert!(t["refId"].as_str().is_some(), "panel {id} refId");
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "panel {id} expr"
            );
            assert_eq!(
                t["datasource"]["uid"], "${datasource}",
                "panel {id} target data source"
            );
        }
    }
}

#[test]
fn covers_overview_replication_workload_and_backups() {
    let d = dashboard();
    let panels = d["panels"].as_array().expect("panels");
    let rows: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    assert_eq!(
        rows,
        ["Cluster overview", "Replication", "Workload", "Backups"]
    );
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Roles over time",
        "Failovers and switchovers",
        "Lease epoch",
        "Consensus",
        "Standby lag (bytes, primary's view)",
        "WAL retained by slots",
        "Connections by state",
        "Transactions per second",
        "Time since last successful backup",
    ] {
        assert!(titles.contains(&wanted), "panel {wanted:?} missing");
    }
    let list: Vec<String> = panels
        .iter()
        .map(|p| {
            format!(
                "{} ({})",
                p["title"].as_str().unwrap_or(""),
                p["type"].as_str().unwrap_or("")
            )
        })
        .collect();
    eprintln!("dashboard panels:\n  {}", list.join("\n  "));
}

#[test]
fn queries_only_served_metrics() {
    let served = served_names();
    let mut queried = BTreeSet::new();
    for e in dashboard_exprs(&dashboard()) {
        queried.extend(queried_names(&e));
    }
    assert!(queried.len() > 30, "{queried:?}");
    let missing: Vec<_> = queried
        .iter()
        .filter(|n| *n != "up" && !served.contains(*n))
        .collect();
    assert!(missing.is_empty(), "queried but not served: {missing:?}");
    eprintln!(
        "dashboard queries {} metric names, all served",
        queried.len()
    );
}
