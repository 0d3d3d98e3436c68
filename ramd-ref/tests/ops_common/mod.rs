//! Shared by the operations-asset tests (`alert_rules`, `grafana_dashboard`, and the
//! live check `tests/tests/ops_generated_cluster.rs`, which includes this file): promtool
//! discovery, the metric names `GET /metrics` can serve, the PromQL expressions of the
//! alert rules and the dashboard, and the metric names in an expression.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;

/// The workspace root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The text of `deploy/prometheus/rale-alerts.yml`.
pub fn rules_text() -> String {
    std::fs::read_to_string(repo().join("deploy/prometheus/rale-alerts.yml")).expect("rules file")
}

/// The `expr:` texts of a rules file (single-line or `|` blocks).
pub fn rule_exprs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest == "|" {
            let indent = line.len() - line.trim_start().len();
            let mut block = String::new();
            while let Some(next) = lines.peek() {
                let ni = next.len() - next.trim_start().len();
                if !next.trim().is_empty() && ni <= indent {
                    break;
                }
                block.push_str(next.trim());
                block.push('\n');
                lines.next();
            }
            out.push(block);
        } else {
            out.push(rest.to_owned());
        }
    }
    out
}

/// The dashboard `deploy/grafana/rale-dashboard.json`.
pub fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/rale-dashboard.json"))
        .expect("dashboard file");
    serde_json::from_str(&text).expect("dashboard is JSON")
}

/// Every PromQL expression of a dashboard: panel targets, annotations, and the metric
/// selectors of `label_values(…)` variables.
pub fn dashboard_exprs(d: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push(e.to_owned());
            }
        }
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(e) = a["expr"].as_str() {
            out.push(e.to_owned());
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["query"]["query"].as_str()
            && let Some((selector, _label)) = q
                .strip_prefix("label_values(")
                .and_then(|s| s.rsplit_once(','))
        {
            out.push(selector.to_owned());
        }
    }
    out
}

/// Every metric name the alert rules and the dashboard query (`up` included).
pub fn queried_by_assets() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in rule_exprs(&rules_text())
        .into_iter()
        .chain(dashboard_exprs(&dashboard()))
    {
        out.extend(queried_names(&e));
    }
    out
}

/// `promtool` on `PATH` (or `RALE_PROMTOOL`); `None`, with the reason printed, without.
pub fn promtool() -> Option<PathBuf> {
    let candidate = std::env::var_os("RALE_PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("promtool"));
    match std::process::Command::new(&candidate)
        .arg("--version")
        .output()
    {
        Ok(o) if o.status.success() => Some(candidate),
        _ => {
            eprintln!(
                "SKIP: promtool not found ({}); install Debian's `prometheus` package to run this check",
                candidate.display()
            );
            None
        }
    }
}

/// Metric names of a Prometheus text exposition (`# TYPE` families and sample names).
pub fn exposition_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.split_whitespace().next() {
                out.insert(name.to_owned());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            out.insert(line[..end].to_owned());
        }
    }
    out
}

/// `GET /metrics` of node `n1` (scope `demo`, a default cluster state, at Unix time
/// 1,700,000,005 s) with the given workload view and backup jobs.
pub fn render_with(
    workload: Option<&ramd_ref::workload::WorkloadView>,
    backup_jobs: Option<&[ramd_ref::api::metrics::BackupJob]>,
) -> String {
    let id = rale::decide::NodeIdentity {
        node: rale::NodeId::new("n1").expect("valid id"),
        api_url: "http://127.0.0.1:8008".into(),
        pg_host: "127.0.0.1".into(),
        pg_port: 5432,
        tags: Default::default(),
    };
    let snap = ramd_ref::ha::initial_snapshot(&id);
    let extras = ramd_ref::api::metrics::Extras {
        workload,
        backup_jobs,
    };
    ramd_ref::api::metrics::render(
        &snap,
        &rale::ClusterState::default(),
        "demo",
        1_700_000_005_000,
        extras,
    )
}

/// A scrape with every optional part present: a workload sample of `databases`
/// databases with every family filled, and backups configured.
pub fn full_scrape(databases: usize) -> String {
    let view = ramd_ref::workload::WorkloadView {
        sample: Some(std::sync::Arc::new(ramd_ref::workload::synthetic(
            databases,
        ))),
        enabled: true,
        ..Default::default()
    };
    render_with(Some(&view), Some(&[]))
}

/// Every name `GET /metrics` serves when each optional part is present.
pub fn served_names() -> BTreeSet<String> {
    exposition_names(&full_scrape(3))
}

/// Keywords and aggregation operators (which may be followed by `by (…)` rather than a
/// parenthesis).
const WORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

const LIST_OPENERS: &[&str] = &[
    "by",
    "on",
    "without",
    "ignoring",
    "group_left",
    "group_right",
];

/// Metric names in a PromQL expression: identifiers that are not keywords, functions,
/// label names (inside `{…}` or after `by`/`on`/…), durations or string contents.
pub fn queried_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut in_braces = false;
    let mut in_label_list = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += 1;
            }
            i += 1;
            continue;
        }
        match c {
            '{' => in_braces = true,
            '}' => in_braces = false,
            ')' => in_label_list = false,
            '[' => {
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
            }
            _ => {}
        }
        if c.is_ascii_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':' | '$'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let before = chars[..start]
                .iter()
                .rev()
                .find(|c| !c.is_whitespace())
                .copied();
            let after = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
            if LIST_OPENERS.contains(&word.as_str()) {
                in_label_list = true;
                continue;
            }
            let skip = in_braces
                || in_label_list
                || after == Some('(')
                || word.starts_with('$')
                || before.is_some_and(|b| b.is_ascii_digit())
                || WORDS.contains(&word.as_str());
            if !skip {
                out.insert(word);
            }
            continue;
        }
        i += 1;
    }
    out
}

#[test]
fn queried_names_reads_promql() {
    let names = queried_names(
        "max by (scope) (pg_up * on (scope, name) patroni_primary{name=\"x\"}) == 1 \
         unless count by (scope) (rate(pg_stat_database_xact_commit_total[5m] offset 1h)) > 64 * 1024",
    );
    let want: BTreeSet<String> = [
        "pg_up",
        "patroni_primary",
        "pg_stat_database_xact_commit_total",
    ]
    .map(String::from)
    .into();
    assert_eq!(names, want);
}
