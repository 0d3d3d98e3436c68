//! `soak`: no false failovers under load. `pgbench` at full load on the primary for
//! `--soak-secs` while every agent is sampled once a second (`GET /metrics`:
//! `rale_ha_loop_duration_seconds`, the duration of the last HA loop, and
//! `rale_ha_loop_age_seconds`; `GET /patroni`: role and the cluster's lease epoch). At the
//! end, role changes are counted three ways, each of which must be 0: history entries
//! (`failover`, `switchover`, `lease_released`) recorded during the soak, lease epoch
//! changes, and changes of the node reporting itself primary.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use super::pgbench::{run_pgbench, start_initialised};
use super::{BenchOptions, Rows};

/// The value of the first sample of a metric in Prometheus text format (labels, if
/// any, ignored).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest = match rest.strip_prefix('{') {
            Some(labelled) => labelled.split_once('}')?.1,
            None => rest,
        };
        let rest = rest.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// History entries of a change of primary recorded at or after `since_unix_ms`.
fn role_changes(history: &Value, since_unix_ms: u64) -> usize {
    history
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| {
                    let kind = e.get("kind").and_then(Value::as_str).unwrap_or_default();
                    let ts = e.get("ts_unix_ms").and_then(Value::as_u64).unwrap_or(0);
                    ts >= since_unix_ms
                        && matches!(kind, "failover" | "switchover" | "lease_released")
                })
                .count()
        })
        .unwrap_or(0)
}

fn unix_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

async fn get_text(http: &reqwest::Client, url: &str) -> Option<String> {
    http.get(url).send().await.ok()?.text().await.ok()
}

/// What the once-a-second sampler saw.
#[derive(Default)]
struct Seen {
    samples: usize,
    max_loop_ms: f64,
    max_loop_age_ms: f64,
    epochs: Vec<u64>,
    primaries: Vec<String>,
}

/// The scenario (one cluster per run).
pub(crate) async fn run(opts: &BenchOptions, rows: &mut Rows) -> Result<()> {
    let po = &opts.pgbench;
    let (pg, p, dsn, work) = start_initialised(opts, "soak").await?;
    let http = pg.http_client(Duration::from_secs(2))?;
    let secs = opts.soak_duration.as_secs().max(1);
    let args = vec![
        "-n".to_string(),
        format!("-c{}", po.clients),
        format!("-j{}", po.clients.clamp(1, 2)),
        format!("-T{secs}"),
    ];
    eprintln!(
        "[ramd-bench]   soak: pgbench -c{} -T{secs} on {}, sampling every agent each second",
        po.clients, pg.report.nodes[p].name
    );
    let since = unix_ms();
    let bench = {
        let (bin, dsn, work) = (po.pgbench.clone(), dsn.clone(), work.clone());
        let limit = opts.soak_duration + Duration::from_secs(300);
        tokio::spawn(async move { run_pgbench(&bin, &dsn, &args, &work, limit).await })
    };
    let mut seen = Seen::default();
    let deadline = Instant::now() + opts.soak_duration + Duration::from_secs(330);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !bench.is_finished() && Instant::now() < deadline {
        tick.tick().await;
        for n in &pg.report.nodes {
            if let Some(m) = get_text(&http, &format!("{}/metrics", n.api_url)).await {
                if let Some(v) = metric(&m, "rale_ha_loop_duration_seconds") {
                    seen.max_loop_ms = seen.max_loop_ms.max(v * 1000.0);
                }
                if let Some(v) = metric(&m, "rale_ha_loop_age_seconds") {
                    seen.max_loop_age_ms = seen.max_loop_age_ms.max(v * 1000.0);
                }
                seen.samples += 1;
            }
            let status = get_text(&http, &format!("{}/patroni", n.api_url))
                .await
                .and_then(|t| serde_json::from_str::<Value>(&t).ok());
            if let Some(v) = status {
                if let Some(e) = v.get("cluster_epoch").and_then(Value::as_u64)
                    && seen.epochs.last() != Some(&e)
                {
                    seen.epochs.push(e);
                }
                if v.get("lease_epoch").is_some_and(|e| !e.is_null())
                    && seen.primaries.last() != Some(&n.name)
                {
                    seen.primaries.push(n.name.clone());
                }
            }
        }
    }
    let out = bench
        .await
        .context("pgbench task")?
        .context("soak pgbench")?;
    let (tps, lat_ms) =
        super::pgbench::parse_summary(&out).with_context(|| format!("no tps/latency in: {out}"))?;
    // History as every node sees it; the largest count wins.
    let mut history_changes = 0usize;
    for n in &pg.report.nodes {
        if let Some(v) = get_text(&http, &format!("{}/api/v1/history", n.api_url))
            .await
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        {
            history_changes = history_changes.max(role_changes(&v, since));
        }
    }
    // Epochs are pushed on change, so a node seeing an older epoch late can add entries:
    // count distinct values instead.
    let mut epochs = seen.epochs.clone();
    epochs.sort_unstable();
    epochs.dedup();
    let epoch_changes = epochs.len().saturating_sub(1);
    let mut primaries = seen.primaries.clone();
    primaries.dedup();
    let primary_changes = primaries.len().saturating_sub(1);
    let changes = history_changes.max(epoch_changes).max(primary_changes);
    eprintln!(
        "[ramd-bench]   soak: role changes: {changes} (history {history_changes}, lease epochs {epochs:?}, primaries {primaries:?}); \
         max HA loop {:.1} ms, max loop age {:.1} ms over {} samples; pgbench {tps:.0} tps, latency avg {lat_ms:.3} ms",
        seen.max_loop_ms, seen.max_loop_age_ms, seen.samples
    );
    println!(
        "soak ({secs} s, {} clients): role changes: {changes}",
        po.clients
    );
    rows.push("soak: role changes", "count", changes as f64);
    rows.push("soak: lease epoch changes", "count", epoch_changes as f64);
    rows.push("soak: max HA loop (1 s samples)", "ms", seen.max_loop_ms);
    rows.push("soak: max HA loop age", "ms", seen.max_loop_age_ms);
    rows.push(
        &format!("soak: pgbench tps ({} cl)", po.clients),
        "tps",
        tps,
    );
    rows.push("soak: pgbench lat avg", "ms", lat_ms);
    drop(pg);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_metrics_and_history() {
        let text = "# HELP rale_ha_loop_duration_seconds Duration\n\
                    # TYPE rale_ha_loop_duration_seconds gauge\n\
                    rale_ha_loop_duration_seconds 0.004\n\
                    rale_ha_loop_age_seconds 0.05\n";
        let labelled = "rale_ha_loop_duration_seconds{scope=\"rale\",name=\"n1\"} 0.002\n";
        assert_eq!(
            metric(labelled, "rale_ha_loop_duration_seconds"),
            Some(0.002)
        );
        assert_eq!(metric(text, "rale_ha_loop_duration_seconds"), Some(0.004));
        assert_eq!(metric(text, "rale_ha_loop_age_seconds"), Some(0.05));
        assert_eq!(metric(text, "rale_ha_loop"), None);
        let h = serde_json::json!([
            {"kind": "bootstrap", "ts_unix_ms": 10},
            {"kind": "failover", "ts_unix_ms": 5},
            {"kind": "failover", "ts_unix_ms": 20},
            {"kind": "config", "ts_unix_ms": 30},
        ]);
        assert_eq!(role_changes(&h, 10), 1);
    }
}
