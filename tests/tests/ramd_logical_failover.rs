//! `ramd` end to end: a permanent logical slot survives failover (issue 19, item 2). A
//! `pg_recvlogical` consumer (test_decoding) streams numbered inserts through the
//! primary; the primary (agent and postmaster) is killed with SIGKILL; the consumer
//! reconnects to the new primary and continues from the slot's position there — the
//! replica's copy, advanced to what the consumer had confirmed. Three rounds. Every
//! acknowledged insert that survived the failover must be in the stream (none missing);
//! duplicates are allowed only for inserts made shortly before the kill (the
//! at-least-once window of `docs/slots.md`).
//! Run: `cargo test -p rale-e2e --test ramd_logical_failover -- --nocapture`

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rale_e2e::WAIT;
use rale_e2e::ramd_cluster::{RamdCluster, serial};
use reqwest::Method;
use serde_json::json;

const LOGICAL: &str = "[bootstrap.postgresql_parameters]\nwal_level = \"logical\"\n";
const PG_RECVLOGICAL: &str = "/usr/lib/postgresql/15/bin/pg_recvlogical";
const SLOT: &str = "cdc";
const ROUNDS: i64 = 3;
/// Inserts per round before the kill and after the failover.
const INSERTS_BEFORE: i64 = 150;
const INSERTS_AFTER: i64 = 50;
/// A duplicate must be an insert acknowledged at most this long before the kill: the
/// consumer's status interval (1 s) + the primary's publishing interval (0.5 s) + the
/// replica's advance, with margin for a loaded 2-core machine.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(10);

/// One `pg_recvlogical` process this test started; killed (by PID) when dropped.
struct Consumer {
    child: Child,
    node: String,
}

impl Consumer {
    fn start(c: &RamdCluster, node: &str, out: &Path) -> anyhow::Result<Self> {
        let dsn = c.node(node)?.dsn.clone();
        let child = Command::new(PG_RECVLOGICAL)
            .args(["-d", &dsn, "--slot", SLOT, "--start", "--no-loop"])
            // -F 0: what is written counts as flushed, so the position reported every
            // second (-s 1) is what was received.
            .args(["-F", "0", "-s", "1", "-f"])
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(out.with_extension("stderr"))
                    .context("consumer stderr file")?,
            )
            .spawn()
            .context("starting pg_recvlogical")?;
        Ok(Self {
            child,
            node: node.to_string(),
        })
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops it cleanly (SIGINT: it reports its last position first), else SIGKILL.
    fn stop(&mut self) {
        if self.exited() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        }
        for _ in 0..50 {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `(active, confirmed_flush_lsn)` of the slot on `node`, `None` without it.
async fn slot_on(c: &RamdCluster, node: &str) -> anyhow::Result<Option<(bool, String)>> {
    let row = c
        .query_text(
            node,
            &format!(
                "SELECT active::text || ' ' || coalesce(confirmed_flush_lsn::text, '-') \
                 FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
            ),
        )
        .await?;
    Ok(row.and_then(|r| {
        let (active, lsn) = r.split_once(' ')?;
        Some((active == "true", lsn.to_string()))
    }))
}

/// The ids of `cdc_rows` inserts in the consumer's output files, in stream order.
fn streamed(files: &[PathBuf]) -> Vec<i64> {
    let mut ids = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("table public.cdc_rows: INSERT: id[bigint]:")
                && let Ok(id) = rest.trim().parse::<i64>()
            {
                ids.push(id);
            }
        }
    }
    ids
}

async fn ids_on(c: &RamdCluster, node: &str) -> anyhow::Result<BTreeSet<i64>> {
    let text = c
        .query_text(
            node,
            "SELECT coalesce(string_agg(id::text, ','), '') FROM cdc_rows",
        )
        .await?
        .unwrap_or_default();
    Ok(text.split(',').filter_map(|s| s.parse().ok()).collect())
}

/// Waits until every replica (all members but `primary`) holds a copy of the slot.
async fn wait_copies(c: &RamdCluster, primary: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let replicas: Vec<String> = c.names().into_iter().filter(|n| n != primary).collect();
    c.wait_for(
        &format!("copies of {SLOT} on {replicas:?}"),
        Duration::from_secs(180),
        || async {
            for r in &replicas {
                if slot_on(c, r).await.ok().flatten().is_none() {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await?;
    Ok(started.elapsed())
}

struct Round {
    inserts: usize,
    streamed: usize,
    missing: usize,
    duplicates: usize,
    duplicate_age_max_ms: u128,
    lost_by_failover: usize,
    phantoms: usize,
    reconnect_ms: u128,
}

async fn body(c: &mut RamdCluster, dir: &Path) -> anyhow::Result<Vec<Round>> {
    let mut primary = c.primary().await?;
    c.sql(&primary, "CREATE TABLE cdc_rows (id bigint PRIMARY KEY)")
        .await?;
    let (code, text) = c
        .api_request(
            &primary,
            Method::PATCH,
            "/config",
            Some(json!({"slots": {SLOT: {"type": "logical", "plugin": "test_decoding", "database": "postgres"}}})),
        )
        .await?;
    ensure!(code == 200, "PATCH slots: {code} {text}");
    c.wait_for(&format!("{SLOT} on {primary}"), WAIT, || async {
        Ok(slot_on(c, &primary).await?.map(|_| ()))
    })
    .await?;
    let copied_after = wait_copies(c, &primary).await?;
    eprintln!(
        "copies of {SLOT} on every replica {} ms after the slot was made",
        copied_after.as_millis()
    );

    let mut files: Vec<PathBuf> = Vec::new();
    let mut session = 0;
    let mut next_file = |files: &mut Vec<PathBuf>| {
        session += 1;
        let f = dir.join(format!("stream-{session}.txt"));
        files.push(f.clone());
        f
    };
    let mut consumer = Consumer::start(c, &primary, &next_file(&mut files))?;
    let mut rounds = Vec::new();
    for round in 1..=ROUNDS {
        let base = round * 1_000_000;
        // The consumer streams from the primary.
        c.wait_for("the consumer streaming", WAIT, || async {
            Ok(slot_on(c, &primary)
                .await?
                .filter(|(active, _)| *active)
                .map(|_| ()))
        })
        .await?;
        let mut acked: BTreeMap<i64, Instant> = BTreeMap::new();
        let mut id = base;
        for _ in 0..INSERTS_BEFORE {
            id += 1;
            c.sql(&primary, &format!("INSERT INTO cdc_rows VALUES ({id})"))
                .await?;
            acked.insert(id, Instant::now());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for r in c.names().into_iter().filter(|n| *n != primary) {
            eprintln!(
                "round {round}: before the kill, {r}'s copy is {:?}, the primary's slot {:?}",
                slot_on(c, &r).await.ok().flatten(),
                slot_on(c, &primary).await.ok().flatten()
            );
        }
        // Kill the primary: agent first, then its postmaster.
        let killed = Instant::now();
        c.kill_agent(&primary, Signal::SIGKILL)?;
        c.kill_postmaster(&primary, Signal::SIGKILL).ok();
        let old = primary.clone();
        let new = c
            .wait_for("a new primary", WAIT, || async {
                Ok(c.primary().await.ok().filter(|p| *p != old))
            })
            .await?;
        // The consumer lost its server (--no-loop: it exits); connect it to the new one.
        for _ in 0..100 {
            if consumer.exited() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        consumer.stop();
        ensure!(consumer.node == old, "the consumer was not on {old}");
        // Like any consumer it retries until the new primary serves it (`/cluster` may
        // name the new leader a moment before its promotion completed).
        consumer = Consumer::start(c, &new, &next_file(&mut files))?;
        let deadline = Instant::now() + WAIT;
        let reconnect = loop {
            if slot_on(c, &new)
                .await
                .ok()
                .flatten()
                .is_some_and(|(active, _)| active)
            {
                break killed.elapsed();
            }
            ensure!(
                Instant::now() < deadline,
                "the consumer did not stream from {new} within {WAIT:?}; see {}",
                dir.display()
            );
            if consumer.exited() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                consumer = Consumer::start(c, &new, &next_file(&mut files))?;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        primary = new.clone();
        for _ in 0..INSERTS_AFTER {
            id += 1;
            c.sql(&primary, &format!("INSERT INTO cdc_rows VALUES ({id})"))
                .await?;
            acked.insert(id, Instant::now());
        }
        // Everything acknowledged that the new primary has must reach the stream.
        let survived: BTreeSet<i64> = ids_on(c, &primary)
            .await?
            .into_iter()
            .filter(|i| *i > base && *i < base + 1_000_000)
            .collect();
        let want: BTreeSet<i64> = acked
            .keys()
            .copied()
            .filter(|i| survived.contains(i))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        let ids = loop {
            let ids: Vec<i64> = streamed(&files)
                .into_iter()
                .filter(|i| *i > base && *i < base + 1_000_000)
                .collect();
            let have: BTreeSet<i64> = ids.iter().copied().collect();
            if want.is_subset(&have) || Instant::now() >= deadline {
                break ids;
            }
            if consumer.exited() {
                bail!("the consumer on {primary} exited; see {}", dir.display());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let have: BTreeSet<i64> = ids.iter().copied().collect();
        let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
        for i in &ids {
            *counts.entry(*i).or_default() += 1;
        }
        let dups: Vec<i64> = counts
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(i, _)| *i)
            .collect();
        let duplicate_age_max_ms = dups
            .iter()
            .filter_map(|i| acked.get(i))
            .map(|t| killed.saturating_duration_since(*t).as_millis())
            .max()
            .unwrap_or(0);
        let missing: Vec<i64> = want.difference(&have).copied().collect();
        let r = Round {
            inserts: acked.len(),
            streamed: ids.len(),
            missing: missing.len(),
            duplicates: ids.len() - have.len(),
            duplicate_age_max_ms,
            lost_by_failover: acked.len() - want.len(),
            phantoms: have.difference(&survived).count(),
            reconnect_ms: reconnect.as_millis(),
        };
        eprintln!(
            "round {round}: {old} killed, {new} promoted; inserts acknowledged {}, streamed {} \
             (unique {}), missing {}, duplicates {} (oldest {} ms before the kill), lost by the \
             failover itself {}, streamed but not on the new primary {}, consumer streaming \
             again {} ms after the kill",
            r.inserts,
            r.streamed,
            have.len(),
            r.missing,
            r.duplicates,
            r.duplicate_age_max_ms,
            r.lost_by_failover,
            r.phantoms,
            r.reconnect_ms
        );
        ensure!(
            missing.is_empty(),
            "round {round}: acknowledged inserts missing from the stream: {missing:?}"
        );
        ensure!(
            dups.iter().all(|i| acked
                .get(i)
                .is_some_and(|t| killed.saturating_duration_since(*t) <= DUPLICATE_WINDOW)),
            "round {round}: duplicates from more than {DUPLICATE_WINDOW:?} before the kill: {dups:?}"
        );
        rounds.push(r);
        // The old primary rejoins (rewound, its logical slot removed) and gets a copy.
        c.restart_agent(&old)?;
        c.wait_streaming(&old, Duration::from_secs(180)).await?;
        let copied = wait_copies(c, &primary).await?;
        eprintln!(
            "round {round}: {old} rejoined and holds a copy again ({} ms after streaming)",
            copied.as_millis()
        );
    }
    consumer.stop();
    Ok(rounds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logical_slot_survives_failover_without_missing_changes() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut c = RamdCluster::start(3, Some(LOGICAL)).await?;
    let dir = c.dir().join("consumer");
    std::fs::create_dir_all(&dir)?;
    let r = body(&mut c, &dir).await;
    match &r {
        Ok(rounds) => {
            for (i, r) in rounds.iter().enumerate() {
                println!(
                    "figures round {}: inserts {} streamed {} missing {} duplicates {} \
                     (oldest {} ms before the kill) lost_by_failover {} phantoms {} \
                     reconnect_ms {}",
                    i + 1,
                    r.inserts,
                    r.streamed,
                    r.missing,
                    r.duplicates,
                    r.duplicate_age_max_ms,
                    r.lost_by_failover,
                    r.phantoms,
                    r.reconnect_ms
                );
            }
        }
        Err(_) => c.keep_dir(),
    }
    r.map(|_| ())
}
