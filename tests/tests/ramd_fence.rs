//! `ramd` end to end: the lease-gated commit fence prevents split brain when the primary's
//! agent freezes (`SIGSTOP`) or dies (`kill -9`) while its PostgreSQL keeps running and
//! clients keep writing to it. Another node is promoted; the old primary must acknowledge
//! no commit after the new primary's first acknowledged write, and when its agent resumes
//! (`SIGCONT`) or is started again it steps down and rejoins as a replica. Runs in the
//! asynchronous mode (fence only), `on` (FIRST 1) and `quorum` (ANY 1).
//!
//! Run: `cargo test -p rale-e2e --test ramd_fence -- --nocapture --test-threads 1`
//! (`RALE_FENCE_ROUNDS` sets the rounds per mode, default 1; each round is one `SIGSTOP`
//! and one `kill -9` of the primary's agent).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rale_e2e::WAIT;
use rale_e2e::ramd_cluster::{RamdCluster, TABLE, serial};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

/// Client connections writing to the old primary.
const WRITERS: usize = 4;
/// Bound on one writer statement; a commit held by the fence times out and the writer
/// reconnects (the held commit never counts as acknowledged).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the old primary's clients keep writing after the new primary's first write,
/// before its agent resumes.
const AFTER_FAILOVER: Duration = Duration::from_secs(2);

fn rounds() -> usize {
    std::env::var("RALE_FENCE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .clamp(1, 100)
}

/// One acknowledged commit: its id and when the client saw the acknowledgement.
#[derive(Clone, Copy, Debug)]
struct Ack {
    id: i64,
    at: Instant,
}

/// `WRITERS` client connections inserting increasing ids into one node until stopped;
/// every commit that returned success is recorded with its time.
struct Load {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(dsn: &str, next: &Arc<AtomicI64>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..WRITERS)
            .map(|_| {
                tokio::spawn(writer(
                    format!("{dsn} connect_timeout=1"),
                    next.clone(),
                    acks.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        Self { stop, acks, tasks }
    }

    fn acks(&self) -> Vec<Ack> {
        self.acks.lock().map(|a| a.clone()).unwrap_or_default()
    }

    async fn stop(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            // Each task finishes its current statement, bounded by STATEMENT_TIMEOUT.
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        let mut v = self.acks.lock().map(|a| a.clone()).unwrap_or_default();
        v.sort_by_key(|a| a.at);
        v
    }
}

async fn writer(
    dsn: String,
    next: Arc<AtomicI64>,
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
) {
    let began = Instant::now();
    let mut client: Option<(tokio_postgres::Client, JoinHandle<()>)> = None;
    for _ in 0..1_000_000 {
        if stop.load(Ordering::SeqCst) || began.elapsed() > Duration::from_secs(600) {
            break;
        }
        if client.as_ref().is_none_or(|(c, _)| c.is_closed()) {
            if let Some((_, t)) = client.take() {
                t.abort();
            }
            match tokio::time::timeout(Duration::from_secs(2), tokio_postgres::connect(&dsn, NoTls))
                .await
            {
                Ok(Ok((c, conn))) => {
                    let t = tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    client = Some((c, t));
                }
                _ => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let Some((c, _)) = &client else { continue };
        let id = next.fetch_add(1, Ordering::SeqCst);
        let sql = format!("INSERT INTO {TABLE} (id) VALUES ({id})");
        match tokio::time::timeout(STATEMENT_TIMEOUT, c.batch_execute(&sql)).await {
            Ok(Ok(())) => {
                let at = Instant::now();
                if let Ok(mut a) = acks.lock() {
                    a.push(Ack { id, at });
                }
            }
            // A read-only refusal keeps the connection; anything else (a commit held by
            // the fence, a dropped connection) closes it.
            Ok(Err(e)) if e.as_db_error().is_some() && !c.is_closed() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => {
                if let Some((_, t)) = client.take() {
                    t.abort();
                }
            }
        }
    }
    if let Some((_, t)) = client.take() {
        t.abort();
    }
}

/// One probe insert on `name` with short bounds; `Ok(())` only if it committed.
async fn probe_write(c: &RamdCluster, name: &str, id: i64) -> anyhow::Result<()> {
    let dsn = format!("{} connect_timeout=1", c.node(name)?.dsn);
    let (client, conn) =
        tokio::time::timeout(Duration::from_secs(2), tokio_postgres::connect(&dsn, NoTls))
            .await
            .context("connect timed out")??;
    let t = tokio::spawn(async move {
        let _ = conn.await;
    });
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        client.batch_execute(&format!("INSERT INTO {TABLE} (id) VALUES ({id})")),
    )
    .await;
    t.abort();
    r.context("insert timed out")?.context("insert failed")
}

/// What is done to the primary's agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// `SIGSTOP`, later `SIGCONT`.
    Freeze,
    /// `SIGKILL`, later started again.
    Kill,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Freeze => "SIGSTOP",
            Fault::Kill => "kill -9",
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Signed milliseconds from `from` to `to`.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    if to >= from {
        ms(to - from)
    } else {
        -ms(from - to)
    }
}

/// Figures of one round.
#[derive(Debug)]
struct RoundFigures {
    /// Last acknowledgement on the old primary, relative to the fault (ms, may be < 0).
    last_ack_ms: f64,
    /// Fault → the new primary's first acknowledged write (ms).
    failover_ms: f64,
}

/// One round; see the crate docs. `durable`: every acknowledged id must be on the new
/// primary (synchronous modes).
async fn round(
    c: &mut RamdCluster,
    next: &Arc<AtomicI64>,
    mode: &str,
    fault: Fault,
    durable: bool,
    probe_base: i64,
) -> anyhow::Result<RoundFigures> {
    let old = c.primary().await?;
    let others: Vec<String> = c.names().into_iter().filter(|n| *n != old).collect();
    for n in &others {
        c.wait_streaming(n, Duration::from_secs(120)).await?;
    }
    // The fence is on (default dynamic configuration), streaming and open on the
    // primary, and its status says so.
    let fence = c
        .wait_for(&format!("{old}'s fence open"), WAIT, || async {
            let s = c.get_node_status(&old).await?;
            let open = s.fence_open;
            Ok(s.fence.filter(|f| open && f.open && f.streaming))
        })
        .await?;
    ensure!(
        fence.enabled && fence.active && !fence.blocking && fence.sessions >= 1,
        "{mode}: unexpected fence status on {old}: {fence:?}"
    );
    eprintln!(
        "{mode}: {old}'s fence: named {}, deadline in {:?} ms, acknowledged {:?}",
        fence.named, fence.deadline_remaining_ms, fence.acknowledged_lsn
    );
    let postmaster = c.postmaster_pid(&old)?;
    let load = Load::start(&c.node(&old)?.dsn, next);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ensure!(
        !load.acks().is_empty(),
        "{mode}: no commit acknowledged on {old} before the fault"
    );
    let agent = c.kill_agent(
        &old,
        match fault {
            Fault::Freeze => Signal::SIGSTOP,
            Fault::Kill => Signal::SIGKILL,
        },
    )?;
    let t_fault = Instant::now();
    eprintln!(
        "{mode}: {} of {old}'s agent (pid {agent}); its PostgreSQL keeps running",
        fault.name()
    );
    let outcome = after_fault(c, &old, &others, postmaster, t_fault, probe_base).await;
    // Resume the agent whatever happened, so that it steps down (and the fixture can stop it).
    let resumed = match fault {
        Fault::Freeze => kill(Pid::from_raw(i32::try_from(agent)?), Signal::SIGCONT)
            .context("SIGCONT of the agent")
            .map(|_| ()),
        Fault::Kill => c.restart_agent(&old).map(|_| ()),
    };
    let t_resume = Instant::now();
    let (new, t_new) = match outcome {
        Ok(v) => v,
        Err(e) => {
            load.stop().await;
            return Err(e);
        }
    };
    resumed?;
    // The old node steps down and follows the new primary; its clients keep writing.
    let rejoin = c.wait_streaming(&old, Duration::from_secs(180)).await;
    let acks = load.stop().await;
    rejoin.with_context(|| format!("{old} rejoining as a replica after {}", fault.name()))?;
    let primary_now = c.primary().await?;
    ensure!(
        primary_now == new,
        "{mode}: the primary is {primary_now}, expected {new}"
    );

    let before: Vec<&Ack> = acks.iter().filter(|a| a.at <= t_fault).collect();
    let after_fault: Vec<&Ack> = acks.iter().filter(|a| a.at > t_fault).collect();
    let late: Vec<(i64, f64)> = acks
        .iter()
        .filter(|a| a.at >= t_new)
        .map(|a| (a.id, signed_ms(t_new, a.at)))
        .collect();
    let last = acks.last().context("no acknowledgement at all")?;
    let figures = RoundFigures {
        last_ack_ms: signed_ms(t_fault, last.at),
        failover_ms: ms(t_new - t_fault),
    };
    eprintln!(
        "FIGURE {mode}, {}: {} acks before the fault, {} after it; last ack on {old} at fault{:+.0} ms; \
         {new} accepted its first write at fault+{:.0} ms (margin {:.0} ms); agent resumed at fault+{:.0} ms",
        fault.name(),
        before.len(),
        after_fault.len(),
        figures.last_ack_ms,
        figures.failover_ms,
        ms(t_new - last.at.min(t_new)),
        ms(t_resume - t_fault),
    );
    ensure!(
        late.is_empty(),
        "{mode}, {}: SPLIT BRAIN: {old} acknowledged {} commits after {new}'s first write \
         (id, ms after): {:?}",
        fault.name(),
        late.len(),
        &late[..late.len().min(20)]
    );
    let present = c.ids(&new).await?;
    let missing: BTreeSet<i64> = acks
        .iter()
        .map(|a| a.id)
        .filter(|id| !present.contains(id))
        .collect();
    eprintln!(
        "{mode}, {}: {} ids acknowledged by {old}, {} missing on {new}",
        fault.name(),
        acks.len(),
        missing.len()
    );
    if durable {
        ensure!(
            missing.is_empty(),
            "{mode}: acknowledged ids missing on the new primary: {missing:?}"
        );
    }
    Ok(figures)
}

/// After the fault: checks that the old postmaster keeps running and waits for another
/// node to accept a write; returns that node and when its first write was acknowledged.
async fn after_fault(
    c: &RamdCluster,
    old: &str,
    others: &[String],
    postmaster: i32,
    t_fault: Instant,
    probe_base: i64,
) -> anyhow::Result<(String, Instant)> {
    let mut probe_id = probe_base;
    let mut found = None;
    for _ in 0..100_000 {
        if t_fault.elapsed() > WAIT {
            break;
        }
        for n in others {
            probe_id += 1;
            if probe_write(c, n, probe_id).await.is_ok() {
                found = Some((n.clone(), Instant::now()));
                break;
            }
        }
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (new, t_new) =
        found.with_context(|| format!("no other node accepted a write within {WAIT:?}"))?;
    // The old primary's clients keep writing a little longer.
    tokio::time::sleep(AFTER_FAILOVER).await;
    if kill(Pid::from_raw(postmaster), None).is_err() {
        bail!("{old}'s postmaster {postmaster} is gone: the scenario needs it running");
    }
    Ok((new, t_new))
}

async fn campaign(mode: &str, bootstrap: Option<&str>, durable: bool) -> anyhow::Result<()> {
    let _guard = serial().await;
    let mut c = RamdCluster::start(3, bootstrap).await?;
    let next = Arc::new(AtomicI64::new(1));
    let mut figures = Vec::new();
    let mut probe_base = 900_000_000;
    for r in 1..=rounds() {
        for fault in [Fault::Freeze, Fault::Kill] {
            probe_base += 100_000;
            match round(&mut c, &next, mode, fault, durable, probe_base).await {
                Ok(f) => figures.push((fault, f)),
                Err(e) => {
                    c.keep_dir();
                    eprintln!(
                        "{mode} round {r} ({}) failed; cluster kept in {}",
                        fault.name(),
                        c.dir().display()
                    );
                    return Err(e);
                }
            }
        }
    }
    for fault in [Fault::Freeze, Fault::Kill] {
        let mut last: Vec<f64> = figures
            .iter()
            .filter(|f| f.0 == fault)
            .map(|f| f.1.last_ack_ms)
            .collect();
        let mut fo: Vec<f64> = figures
            .iter()
            .filter(|f| f.0 == fault)
            .map(|f| f.1.failover_ms)
            .collect();
        last.sort_by(f64::total_cmp);
        fo.sort_by(f64::total_cmp);
        eprintln!(
            "FIGURE {mode}, {}: {} rounds, no ack after the new primary's first write; \
             last ack at fault{:+.0} ms (median), failover {:.0} ms (median)",
            fault.name(),
            fo.len(),
            last.get(last.len() / 2).copied().unwrap_or(f64::NAN),
            fo.get(fo.len() / 2).copied().unwrap_or(f64::NAN),
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_mode_fence_prevents_split_brain() -> anyhow::Result<()> {
    campaign("async (fence only)", None, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_1_fence_prevents_split_brain() -> anyhow::Result<()> {
    campaign(
        "on (FIRST 1)",
        Some("[bootstrap.synchronous]\nmode = \"on\"\nnode_count = 1\n"),
        true,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_any_1_fence_prevents_split_brain() -> anyhow::Result<()> {
    campaign(
        "quorum (ANY 1)",
        Some("[bootstrap.synchronous]\nmode = \"quorum\"\nnode_count = 1\n"),
        true,
    )
    .await
}
