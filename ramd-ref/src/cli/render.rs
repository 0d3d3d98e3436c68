//! Human output of `ramctrl`: tables like `patronictl list`, the topology tree, history.

use ramd_ref::api::types::{
    ClusterStatus, HistoryEntryView, Lag, PatroniCluster, PatroniMember, SlotsView,
};

/// Lays out rows under a header in a boxed table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let rule = {
        let parts: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
        format!("+{}+", parts.join("+"))
    };
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c:<w$} "))
            .collect();
        format!("|{}|", parts.join("|"))
    };
    let mut out = vec![
        rule.clone(),
        line(header.iter().map(|h| h.to_string()).collect()),
        rule.clone(),
    ];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.push(rule);
    out.join("\n")
}

/// Lag in whole MiB as `patronictl list` shows it; empty for the primary.
pub fn lag_mb(lag: Option<Lag>) -> String {
    match lag {
        None => String::new(),
        Some(Lag::Unknown) => "unknown".into(),
        Some(Lag::Bytes(b)) => format!("{}", (b + (1 << 19)) >> 20),
    }
}

/// `ramctrl slots`: the primary's replication slots, one row each, then the limit.
pub fn slots(v: &SlotsView) -> String {
    let rows: Vec<Vec<String>> = v
        .slots
        .iter()
        .map(|s| {
            let logical = match (&s.plugin, &s.database) {
                (Some(p), Some(d)) => format!("{p}/{d}"),
                (Some(p), None) => p.clone(),
                (None, Some(d)) => format!("/{d}"),
                (None, None) => String::new(),
            };
            vec![
                s.name.clone(),
                s.slot_type.clone(),
                logical,
                if s.active { "yes" } else { "no" }.into(),
                s.retained_wal_bytes.to_string(),
                s.managed.as_str().into(),
                if s.over_limit { "OVER LIMIT" } else { "" }.into(),
            ]
        })
        .collect();
    let limit = match v.max_retained_wal_bytes {
        Some(b) => format!("{b} bytes"),
        None => "none".into(),
    };
    let over = v.slots.iter().filter(|s| s.over_limit).count();
    format!(
        "{}\nSlots on {} (primary); slots_max_retained_wal_bytes: {limit}; over the limit: {over}",
        table(
            &[
                "Slot",
                "Type",
                "Plugin/Database",
                "Active",
                "Retained WAL (bytes)",
                "Managed",
                "Flag"
            ],
            &rows
        ),
        v.node
    )
}

fn role_name(m: &PatroniMember) -> &str {
    match m.role.as_str() {
        "leader" => "Leader",
        "sync_standby" => "Sync Standby",
        "quorum_standby" => "Quorum Standby",
        "replica" => "Replica",
        other => other,
    }
}

/// `ramctrl list`.
pub fn list(cluster: &PatroniCluster, status: Option<&ClusterStatus>) -> String {
    // Like `patronictl list`: the column appears when a member waits for a restart.
    let pending = cluster.members.iter().any(|m| m.pending_restart);
    let rows: Vec<Vec<String>> = cluster
        .members
        .iter()
        .map(|m| {
            let mut row = vec![
                m.name.clone(),
                format!("{}:{}", m.host, m.port),
                role_name(m).to_owned(),
                m.state.clone(),
                m.timeline.to_string(),
                lag_mb(m.lag),
            ];
            if pending {
                row.push(if m.pending_restart { "*" } else { "" }.to_owned());
            }
            row
        })
        .collect();
    let mut header = vec!["Member", "Host", "Role", "State", "TL", "Lag in MB"];
    if pending {
        header.push("Pending restart");
    }
    let mut title = format!("Cluster: {}", cluster.scope);
    if let Some(s) = status {
        if let Some(id) = &s.system_identifier {
            title.push_str(&format!(" ({id})"));
        }
        title.push_str(&format!(
            "  Leader: {}  Epoch: {}  Consensus: term {}, leader {}",
            s.leader.as_deref().unwrap_or("none"),
            s.epoch,
            s.consensus.term,
            s.consensus.leader.as_deref().unwrap_or("unknown")
        ));
    }
    let mut out = format!("{title}\n{}", table(&header, &rows));
    if cluster.pause {
        out.push_str("\n Maintenance mode: on");
    }
    if let Some(sw) = &cluster.scheduled_switchover {
        out.push_str(&format!(
            "\n Switchover pending: {} -> {}{}",
            sw.from.as_deref().unwrap_or("?"),
            sw.to.as_deref().unwrap_or("best candidate"),
            sw.at
                .as_deref()
                .map(|a| format!(" at {a}"))
                .unwrap_or_default()
        ));
    }
    out
}

/// `ramctrl status`: a summary of the management API's status.
pub fn status(s: &ClusterStatus) -> String {
    let mut out = vec![
        format!("Cluster:        {}", s.scope),
        format!("Leader:         {}", s.leader.as_deref().unwrap_or("none")),
        format!("Lease epoch:    {}", s.epoch),
        format!("Paused:         {}", if s.paused { "yes" } else { "no" }),
        format!(
            "Synchronous:    {} (standbys: {}, quorum {})",
            s.sync.mode,
            if s.sync.standbys.is_empty() {
                "-".to_owned()
            } else {
                s.sync.standbys.join(", ")
            },
            s.sync.quorum
        ),
        format!("Config version: {}", s.config_version),
        format!(
            "Consensus:      term {}, leader {}, {}",
            s.consensus.term,
            s.consensus.leader.as_deref().unwrap_or("unknown"),
            if s.consensus.has_majority {
                "majority reachable"
            } else {
                "NO MAJORITY from this agent"
            }
        ),
        format!("Answered by:    {}", s.this_node),
    ];
    if let Some(sw) = &s.switchover {
        out.push(format!(
            "Switchover:     {} -> {}{} (by {})",
            sw.from.as_deref().unwrap_or("?"),
            sw.to.as_deref().unwrap_or("best candidate"),
            sw.scheduled_at
                .as_deref()
                .map(|a| format!(" at {a}"))
                .unwrap_or_default(),
            sw.requested_by
        ));
    }
    let rows: Vec<Vec<String>> = s
        .members
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.role.clone(),
                m.state.clone(),
                m.timeline.to_string(),
                m.lsn.clone(),
                m.lag_bytes.map(|b| b.to_string()).unwrap_or_default(),
            ]
        })
        .collect();
    out.push(table(
        &["Member", "Role", "State", "TL", "LSN", "Lag (bytes)"],
        &rows,
    ));
    out.join("\n")
}

/// `ramctrl history`.
pub fn history(entries: &[HistoryEntryView]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                e.ts.clone(),
                e.kind.clone(),
                e.node.clone().unwrap_or_default(),
                e.epoch.to_string(),
                e.timeline.to_string(),
                e.lsn.clone(),
                e.actor.clone(),
                e.reason.clone(),
            ]
        })
        .collect();
    table(
        &[
            "Seq", "Time", "Kind", "Node", "Epoch", "TL", "LSN", "Actor", "Reason",
        ],
        &rows,
    )
}

/// `ramctrl topology`: the primary, then who follows whom.
pub fn topology(cluster: &PatroniCluster, status: &ClusterStatus) -> String {
    let describe = |name: &str| {
        let m = cluster.members.iter().find(|m| m.name == name);
        match m {
            Some(m) => format!(
                "{} ({}, {}) {}:{} TL {}{}",
                m.name,
                role_name(m),
                m.state,
                m.host,
                m.port,
                m.timeline,
                match m.lag {
                    Some(l) => format!(", lag {} MB", lag_mb(Some(l))),
                    None => String::new(),
                }
            ),
            None => name.to_owned(),
        }
    };
    let upstream_of = |name: &str| {
        status
            .members
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| m.upstream.clone())
            .or_else(|| {
                (status.leader.as_deref() != Some(name))
                    .then(|| status.leader.clone())
                    .flatten()
            })
    };
    let mut out = Vec::new();
    let mut shown = std::collections::BTreeSet::new();
    fn walk(
        name: &str,
        depth: usize,
        names: &[String],
        upstream_of: &dyn Fn(&str) -> Option<String>,
        describe: &dyn Fn(&str) -> String,
        out: &mut Vec<String>,
        shown: &mut std::collections::BTreeSet<String>,
    ) {
        if depth > names.len() || !shown.insert(name.to_owned()) {
            return;
        }
        let prefix = if depth == 0 {
            String::new()
        } else {
            format!("{}+- ", "   ".repeat(depth - 1))
        };
        out.push(format!("{prefix}{}", describe(name)));
        for child in names
            .iter()
            .filter(|c| upstream_of(c).as_deref() == Some(name))
        {
            walk(child, depth + 1, names, upstream_of, describe, out, shown);
        }
    }
    let names: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
    let roots: Vec<String> = match &status.leader {
        Some(l) => vec![l.clone()],
        None => Vec::new(),
    };
    for root in &roots {
        walk(
            root,
            0,
            &names,
            &upstream_of,
            &describe,
            &mut out,
            &mut shown,
        );
    }
    for n in &names {
        if !shown.contains(n) {
            walk(n, 0, &names, &upstream_of, &describe, &mut out, &mut shown);
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_show_retention_and_the_flag() {
        use ramd_ref::api::types::{SlotManagement, SlotView};
        let v = SlotsView {
            node: "n1".into(),
            collected_unix_ms: 1,
            max_retained_wal_bytes: Some(1000),
            slots: vec![
                SlotView {
                    name: "cdc".into(),
                    slot_type: "logical".into(),
                    plugin: Some("pgoutput".into()),
                    database: Some("app".into()),
                    active: true,
                    retained_wal_bytes: 10,
                    managed: SlotManagement::Permanent,
                    over_limit: false,
                },
                SlotView {
                    name: "old".into(),
                    slot_type: "physical".into(),
                    plugin: None,
                    database: None,
                    active: false,
                    retained_wal_bytes: 5000,
                    managed: SlotManagement::Foreign,
                    over_limit: true,
                },
            ],
        };
        let out = slots(&v);
        assert!(
            out.contains("| cdc  | logical  | pgoutput/app    | yes"),
            "{out}"
        );
        assert!(out.contains("| 5000 "), "{out}");
        assert!(out.contains("OVER LIMIT"), "{out}");
        assert!(
            out.ends_with("slots_max_retained_wal_bytes: 1000 bytes; over the limit: 1"),
            "{out}"
        );
    }

    #[test]
    fn lag_rounds_to_megabytes() {
        assert_eq!(lag_mb(None), "");
        assert_eq!(lag_mb(Some(Lag::Unknown)), "unknown");
        assert_eq!(lag_mb(Some(Lag::Bytes(0))), "0");
        assert_eq!(lag_mb(Some(Lag::Bytes(3 << 20))), "3");
        assert_eq!(lag_mb(Some(Lag::Bytes((1 << 20) - 1))), "1");
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&["A", "Long header"], &[vec!["xyz".into(), "1".into()]]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count()),
            "{t}"
        );
        assert_eq!(lines[3], "| xyz | 1           |");
    }
}
