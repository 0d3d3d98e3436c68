//! Load generator for `GET /primary`: N keep-alive connections for a bounded time.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{BenchOptions, Rows, start_cluster};

/// Bound on requests per worker in one phase.
const MAX_REQUESTS_PER_WORKER: usize = 2_000_000;

struct Phase {
    ok: usize,
    errors: usize,
    latencies_us: Vec<u32>,
    elapsed: Duration,
}

async fn phase(url: &str, conns: usize, duration: Duration) -> Result<Phase> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(conns);
    for _ in 0..conns {
        // One client per worker: one keep-alive connection each.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(5))
            .build()?;
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut ok, mut errors) = (0usize, 0usize);
            for _ in 0..MAX_REQUESTS_PER_WORKER {
                if Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                match client.get(&url).send().await {
                    Ok(r) => {
                        let good = r.status().is_success();
                        let _ = r.bytes().await;
                        if good {
                            ok += 1;
                            lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                        } else {
                            errors += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            (ok, errors, lat)
        }));
    }
    let mut out = Phase {
        ok: 0,
        errors: 0,
        latencies_us: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        let (ok, errors, lat) = t.await.context("load worker panicked")?;
        out.ok += ok;
        out.errors += errors;
        out.latencies_us.extend(lat);
    }
    out.elapsed = started.elapsed();
    out.latencies_us.sort_unstable();
    Ok(out)
}

fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted_us[idx.min(sorted_us.len() - 1)]) / 1000.0
}

/// `GET /primary` on the primary's agent at 4 and 64 connections.
pub(crate) async fn run(opts: &BenchOptions, rows: &mut Rows) -> Result<()> {
    let (pg, _) = start_cluster(opts).await?;
    let p = pg
        .report
        .nodes
        .iter()
        .find(|n| n.role == "primary")
        .context("no primary")?;
    let url = format!("{}/primary", p.api_url);
    for conns in [4usize, 64] {
        let ph = phase(&url, conns, opts.health_duration).await?;
        let rps = ph.ok as f64 / ph.elapsed.as_secs_f64();
        rows.push(&format!("health: req/s ({conns} conn)"), "req/s", rps);
        rows.push(
            &format!("health: p50 ({conns} conn)"),
            "ms",
            percentile_ms(&ph.latencies_us, 0.50),
        );
        rows.push(
            &format!("health: p99 ({conns} conn)"),
            "ms",
            percentile_ms(&ph.latencies_us, 0.99),
        );
        rows.push(
            &format!("health: errors ({conns} conn)"),
            "count",
            ph.errors as f64,
        );
        eprintln!(
            "[ramd-bench]   {conns} conn: {rps:.0} req/s, {} errors",
            ph.errors
        );
    }
    drop(pg);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 0.5), 51.0);
        assert_eq!(percentile_ms(&v, 0.99), 99.0);
        assert!(percentile_ms(&[], 0.5).is_nan());
    }
}
