//! Linearizability of the cluster state, as the operator API shows it: several clients
//! change and read the dynamic configuration, pause and resume the cluster and ask for
//! switchovers, each on a node picked at random, while a seeded fault driver partitions
//! nodes, kills agents and freezes them. Every request is logged with the monotonic time
//! it was sent and answered; a checker then verifies the history:
//!
//! - **writes** (`PATCH /config`, each with a value no one else writes): every
//!   acknowledged one got its own configuration version, and versions follow real time
//!   (a change acknowledged before another was sent has the smaller version);
//! - **linearizable reads** (`GET /config` answered with `X-Rale-Read: linearizable`):
//!   the value matches the version (the value an acknowledged write gave that version,
//!   never one nobody had sent yet), and no read is stale — its version is at least that
//!   of every write acknowledged, and of every linearizable read answered, before it was
//!   sent;
//! - **read your writes**, on the node that acknowledged a write, for every later read
//!   there, linearizable or `local`;
//! - **pause/resume**: between two acknowledged pauses some resume may have taken
//!   effect (one that overlaps the interval), and the other way round;
//! - at the end, with the faults healed, a linearizable read shows the newest version
//!   acknowledged and its value.
//!
//! Run (as root, network namespaces): `cargo test -p rale-e2e --test linearizability --
//! --nocapture`. `RALE_LIN_SEED` replays the fault plan and the clients' choices (the
//! seed is printed), `RALE_LIN_SECS` (default 40) sets the length, `RALE_LIN_CLIENTS`
//! (default 4) the number of clients. Without root or `ip netns` the end-to-end test
//! prints "skipped" and passes; the checker's own tests run everywhere.

// The determinism lints of clippy.toml apply to rale::decide only.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use rale_e2e::netns::cluster::{API_PASSWORD, API_USER, NetnsCluster};
use rale_e2e::netns::skip_reason;
use rale_e2e::ramd_cluster::serial;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a request did.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// `PATCH /config` setting `work_mem` to this many kB.
    Write(u64),
    /// `GET /config`.
    Read,
    /// `POST /api/v1/pause`.
    Pause,
    /// `POST /api/v1/resume`.
    Resume,
    /// `POST /switchover` to a candidate.
    Switchover,
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// Acknowledged (2xx): the configuration version and `work_mem` (kB) it returned (for
    /// the configuration requests), and for reads whether the read was linearizable.
    Ok {
        version: Option<u64>,
        work_mem_kb: Option<u64>,
        linearizable: bool,
    },
    /// Refused (4xx): it did not take effect.
    Refused(u16),
    /// No answer, or 5xx: it may or may not have taken effect.
    Unknown,
}

/// One request of the history.
#[derive(Clone, Debug)]
struct Op {
    client: usize,
    node: String,
    kind: Kind,
    invoke: Instant,
    complete: Instant,
    outcome: Outcome,
}

impl Op {
    fn acked(&self) -> bool {
        matches!(self.outcome, Outcome::Ok { .. })
    }

    fn version(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Ok { version, .. } => version,
            _ => None,
        }
    }

    fn value(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Ok { work_mem_kb, .. } => work_mem_kb,
            _ => None,
        }
    }

    fn linearizable_read(&self) -> bool {
        self.kind == Kind::Read
            && matches!(
                self.outcome,
                Outcome::Ok {
                    linearizable: true,
                    ..
                }
            )
    }
}

/// Checks a history (see the module docs); returns every violation found, described.
/// `initial` is the (version, work_mem) before the first request.
fn check(ops: &[Op], initial: (u64, Option<u64>)) -> Vec<String> {
    let mut bad = Vec::new();
    let writes: Vec<&Op> = ops
        .iter()
        .filter(|o| matches!(o.kind, Kind::Write(_)))
        .collect();
    let acked_writes: Vec<&Op> = writes.iter().copied().filter(|o| o.acked()).collect();
    // Versions of acknowledged writes: distinct, and the answer carries the value sent.
    let mut by_version: BTreeMap<u64, &Op> = BTreeMap::new();
    for w in &acked_writes {
        let Kind::Write(sent) = w.kind else { continue };
        let Some(v) = w.version() else {
            bad.push(format!(
                "write {sent} acknowledged without a version: {w:?}"
            ));
            continue;
        };
        if w.value() != Some(sent) {
            bad.push(format!(
                "write {sent} acknowledged with work_mem {:?} in its answer",
                w.value()
            ));
        }
        if let Some(other) = by_version.insert(v, w) {
            bad.push(format!(
                "two acknowledged writes got version {v}: {:?} and {:?} (a lost update)",
                other.kind, w.kind
            ));
        }
    }
    // Real-time order of acknowledged writes.
    for a in &acked_writes {
        for b in &acked_writes {
            if a.complete < b.invoke
                && let (Some(va), Some(vb)) = (a.version(), b.version())
                && va >= vb
            {
                bad.push(format!(
                    "write {:?} (version {va}) was acknowledged before write {:?} was sent, \
                     which got version {vb}",
                    a.kind, b.kind
                ));
            }
        }
    }
    let value_of_version = |v: u64| -> Option<Option<u64>> {
        if v == initial.0 {
            return Some(initial.1);
        }
        by_version.get(&v).map(|w| w.value())
    };
    // Reads.
    for r in ops.iter().filter(|o| o.kind == Kind::Read && o.acked()) {
        let (Some(v), x) = (r.version(), r.value()) else {
            bad.push(format!("read without a version: {r:?}"));
            continue;
        };
        if let Some(expected) = value_of_version(v)
            && expected != x
        {
            bad.push(format!(
                "read on {} returned version {v} with work_mem {x:?}, but version {v} holds \
                 {expected:?}",
                r.node
            ));
        }
        if let Some(x) = x
            && Some(x) != initial.1
        {
            match writes.iter().find(|w| w.kind == Kind::Write(x)) {
                None => bad.push(format!(
                    "read on {} returned {x}, which nobody wrote",
                    r.node
                )),
                Some(w) if w.invoke > r.complete => bad.push(format!(
                    "read on {} returned {x} before anyone had sent it",
                    r.node
                )),
                Some(_) => {}
            }
        }
        // Read your writes: every acknowledged write of this node before the read.
        for w in acked_writes.iter().filter(|w| w.node == r.node) {
            if w.complete < r.invoke
                && let Some(vw) = w.version()
                && v < vw
            {
                bad.push(format!(
                    "read on {} ({}) returned version {v} after {} had acknowledged version \
                     {vw} (read your writes)",
                    r.node,
                    if r.linearizable_read() {
                        "linearizable"
                    } else {
                        "local"
                    },
                    w.node
                ));
            }
        }
        if !r.linearizable_read() {
            continue;
        }
        // No stale linearizable read: not older than anything acknowledged before it.
        let newest_before = acked_writes
            .iter()
            .copied()
            .chain(ops.iter().filter(|o| o.linearizable_read()))
            .filter(|o| o.complete < r.invoke)
            .filter_map(Op::version)
            .max();
        if let Some(nb) = newest_before
            && v < nb
        {
            bad.push(format!(
                "stale linearizable read on {} by client {}: version {v}, though version {nb} \
                 had been acknowledged or read before the request was sent",
                r.node, r.client
            ));
        }
    }
    // Pause / resume: between two acknowledged pauses, some resume (acknowledged or of
    // unknown outcome) must overlap the interval, and the other way round.
    for (same, other) in [(Kind::Pause, Kind::Resume), (Kind::Resume, Kind::Pause)] {
        let mut acked: Vec<&Op> = ops.iter().filter(|o| o.kind == same && o.acked()).collect();
        acked.sort_by_key(|o| o.complete);
        for (i, a) in acked.iter().enumerate() {
            for b in acked.iter().skip(i + 1) {
                if a.complete >= b.invoke {
                    continue; // concurrent: either order
                }
                let between = ops.iter().any(|o| {
                    o.kind == other
                        && !matches!(o.outcome, Outcome::Refused(_))
                        && o.invoke < b.complete
                        && o.complete > a.invoke
                });
                if !between {
                    bad.push(format!(
                        "{same:?} acknowledged on {} and again on {} later, with no {other:?} \
                         that could have taken effect between them",
                        a.node, b.node
                    ));
                }
            }
        }
    }
    bad
}

/// The shared log of requests.
#[derive(Clone, Default)]
struct History(Arc<Mutex<Vec<Op>>>);

impl History {
    fn push(&self, op: Op) {
        if let Ok(mut v) = self.0.lock() {
            v.push(op);
        }
    }

    fn ops(&self) -> Vec<Op> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// `work_mem` in kB from a configuration document.
fn work_mem_kb(config: &serde_json::Value) -> Option<u64> {
    let s = config
        .get("postgresql_parameters")?
        .get("work_mem")?
        .as_str()?;
    s.strip_suffix("kB")?.parse().ok()
}

fn etag_version(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(reqwest::header::ETAG)?
        .to_str()
        .ok()?
        .trim_matches('"')
        .parse()
        .ok()
}

/// Sends one request and records it.
async fn request(
    http: &reqwest::Client,
    base: &str,
    client: usize,
    node: &str,
    kind: Kind,
    candidate: &str,
    history: &History,
) {
    // A switchover names the leader (as Patroni's API wants): the one this node shows.
    let mut leader = String::new();
    if kind == Kind::Switchover
        && let Ok(resp) = http.get(format!("{base}/cluster")).send().await
        && let Ok(view) = resp.json::<serde_json::Value>().await
        && let Some(members) = view.get("members").and_then(|m| m.as_array())
    {
        for m in members {
            if m.get("role").and_then(|r| r.as_str()) == Some("leader") {
                leader = m
                    .get("name")
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .to_string();
            }
        }
    }
    let invoke = Instant::now();
    let req = match &kind {
        Kind::Write(kb) => http
            .patch(format!("{base}/config"))
            .json(&serde_json::json!({"postgresql_parameters": {"work_mem": format!("{kb}kB")}})),
        Kind::Read => http.get(format!("{base}/config")),
        Kind::Pause => http.post(format!("{base}/api/v1/pause")),
        Kind::Resume => http.post(format!("{base}/api/v1/resume")),
        Kind::Switchover => http
            .post(format!("{base}/switchover"))
            .json(&serde_json::json!({"leader": leader, "candidate": candidate})),
    };
    let sent = req.basic_auth(API_USER, Some(API_PASSWORD)).send().await;
    let outcome = match sent {
        Err(_) => Outcome::Unknown,
        Ok(resp) => {
            let status = resp.status();
            if status.is_success() {
                let version = etag_version(&resp);
                let linearizable = resp
                    .headers()
                    .get("x-rale-read")
                    .and_then(|v| v.to_str().ok())
                    == Some("linearizable");
                let body: Option<serde_json::Value> = resp.json().await.ok();
                let work_mem = body.as_ref().and_then(work_mem_kb);
                // A PATCH answers the new configuration; its version is in the body's
                // ETag too (`with_version`).
                Outcome::Ok {
                    version,
                    work_mem_kb: work_mem,
                    linearizable,
                }
            } else if status.is_client_error() {
                Outcome::Refused(status.as_u16())
            } else {
                Outcome::Unknown
            }
        }
    };
    history.push(Op {
        client,
        node: node.to_string(),
        kind,
        invoke,
        complete: Instant::now(),
        outcome,
    });
}

fn env_parse<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_api_history_is_linearizable_under_faults() -> anyhow::Result<()> {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: needs root and ip netns ({why})");
        return Ok(());
    }
    let _serial = serial().await;
    let seed: u64 = std::env::var("RALE_LIN_SEED")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(rand::random);
    let secs: u64 = env_parse("RALE_LIN_SECS", 40);
    let clients: usize = env_parse("RALE_LIN_CLIENTS", 4);
    eprintln!(
        "LIN seed {seed}; replay: RALE_LIN_SEED={seed} RALE_LIN_SECS={secs} \
         RALE_LIN_CLIENTS={clients}"
    );
    let mut c = NetnsCluster::start(3, None).await?;
    let names = c.names();
    let urls: Vec<String> = names
        .iter()
        .map(|n| c.node(n).map(|x| x.mgmt_api_url()))
        .collect::<anyhow::Result<_>>()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .no_proxy()
        .build()?;
    // The starting point.
    let first = http
        .get(format!("{}/config", urls[0]))
        .send()
        .await
        .context("the first GET /config")?;
    let initial_version = etag_version(&first).context("no ETag on GET /config")?;
    let initial_body: serde_json::Value = first.json().await?;
    let initial = (initial_version, work_mem_kb(&initial_body));

    let history = History::default();
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(4_096));
    let stop = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for client in 0..clients {
        let http = http.clone();
        let urls = urls.clone();
        let names = names.clone();
        let history = history.clone();
        let counter = counter.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (client as u64 + 1).wrapping_mul(0x9E37));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let i = rng.gen_range(0..urls.len());
                let roll: u32 = rng.gen_range(0..100);
                let kind = match roll {
                    0..45 => {
                        Kind::Write(counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    }
                    45..85 => Kind::Read,
                    85..91 => Kind::Pause,
                    91..97 => Kind::Resume,
                    _ => Kind::Switchover,
                };
                let candidate = &names[rng.gen_range(0..names.len())];
                request(
                    &http, &urls[i], client, &names[i], kind, candidate, &history,
                )
                .await;
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..40))).await;
            }
        }));
    }
    // The fault driver: one fault at a time, each held 1.5–4 s, 0.5–2 s apart.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut faults = Vec::new();
    while Instant::now() + Duration::from_secs(6) < stop {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(500..2_000))).await;
        let node = names[rng.gen_range(0..names.len())].clone();
        let hold = Duration::from_millis(rng.gen_range(1_500..4_000));
        let what = match rng.gen_range(0..3) {
            0 => {
                c.partition(&[&[node.as_str()]])?;
                tokio::time::sleep(hold).await;
                c.heal()?;
                format!("partition {node} for {:.1} s", hold.as_secs_f64())
            }
            1 => {
                c.signal_agent(&node, Signal::SIGKILL)?;
                tokio::time::sleep(hold).await;
                c.restart_agent(&node)?;
                format!(
                    "kill -9 {node}'s agent, restarted after {:.1} s",
                    hold.as_secs_f64()
                )
            }
            _ => {
                c.signal_agent(&node, Signal::SIGSTOP)?;
                tokio::time::sleep(hold).await;
                c.signal_agent(&node, Signal::SIGCONT)?;
                format!("SIGSTOP {node}'s agent for {:.1} s", hold.as_secs_f64())
            }
        };
        eprintln!("LIN fault: {what}");
        faults.push(what);
    }
    for t in tasks {
        t.await.context("a client task")?;
    }
    // Healed: one more linearizable read must show the newest acknowledged version.
    let mut final_read = None;
    for _ in 0..60 {
        for (i, url) in urls.iter().enumerate() {
            request(&http, url, usize::MAX, &names[i], Kind::Read, "", &history).await;
            if let Some(op) = history.ops().last()
                && op.linearizable_read()
            {
                final_read = Some(op.clone());
                break;
            }
        }
        if final_read.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Leave the cluster resumed.
    let _ = http
        .post(format!("{}/api/v1/resume", urls[0]))
        .basic_auth(API_USER, Some(API_PASSWORD))
        .send()
        .await;

    let ops = history.ops();
    let mut bad = check(&ops, initial);
    let final_read = final_read.context("no linearizable read within 30 s after the faults")?;
    let newest = ops
        .iter()
        .filter(|o| matches!(o.kind, Kind::Write(_)) && o.acked())
        .filter_map(|o| o.version().map(|v| (v, o.value())))
        .max();
    if let Some((v, x)) = newest
        && (final_read.version() < Some(v)
            || (final_read.version() == Some(v) && final_read.value() != x))
    {
        bad.push(format!(
            "the final read shows version {:?} ({:?}); the newest acknowledged is {v} ({x:?})",
            final_read.version(),
            final_read.value()
        ));
    }
    let count = |f: &dyn Fn(&Op) -> bool| ops.iter().filter(|o| f(o)).count();
    eprintln!(
        "LIN history: {} requests by {clients} clients in {secs} s with {} faults; writes \
         acknowledged {} / refused {} / unknown {}; reads linearizable {} / local {} / failed \
         {}; pause ok {} resume ok {} switchover ok {} (refused: {:?}); violations {}",
        ops.len(),
        faults.len(),
        count(&|o| matches!(o.kind, Kind::Write(_)) && o.acked()),
        count(&|o| matches!(o.kind, Kind::Write(_)) && matches!(o.outcome, Outcome::Refused(_))),
        count(&|o| matches!(o.kind, Kind::Write(_)) && o.outcome == Outcome::Unknown),
        count(&|o| o.linearizable_read()),
        count(&|o| o.kind == Kind::Read && o.acked() && !o.linearizable_read()),
        count(&|o| o.kind == Kind::Read && !o.acked()),
        count(&|o| o.kind == Kind::Pause && o.acked()),
        count(&|o| o.kind == Kind::Resume && o.acked()),
        count(&|o| o.kind == Kind::Switchover && o.acked()),
        ops.iter()
            .filter(|o| o.kind == Kind::Switchover)
            .filter_map(|o| match o.outcome {
                Outcome::Refused(code) => Some(code),
                _ => None,
            })
            .fold(BTreeMap::<u16, usize>::new(), |mut m, c| {
                *m.entry(c).or_default() += 1;
                m
            }),
        bad.len()
    );
    if !bad.is_empty() {
        c.keep_dir();
        bail!(
            "the history is not linearizable (replay with RALE_LIN_SEED={seed}; logs in {}):\n{}",
            c.dir().display(),
            bad.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

#[cfg(test)]
mod checker {
    use super::*;

    fn op(kind: Kind, node: &str, from_ms: u64, to_ms: u64, outcome: Outcome) -> Op {
        let base = base();
        Op {
            client: 0,
            node: node.into(),
            kind,
            invoke: base + Duration::from_millis(from_ms),
            complete: base + Duration::from_millis(to_ms),
            outcome,
        }
    }

    fn base() -> Instant {
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *BASE.get_or_init(Instant::now)
    }

    fn ok(version: u64, value: u64, linearizable: bool) -> Outcome {
        Outcome::Ok {
            version: Some(version),
            work_mem_kb: Some(value),
            linearizable,
        }
    }

    const INITIAL: (u64, Option<u64>) = (1, Some(4_000));

    #[test]
    fn a_sequential_history_passes() {
        let h = vec![
            op(Kind::Write(10), "n1", 0, 10, ok(2, 10, false)),
            op(Kind::Read, "n2", 20, 30, ok(2, 10, true)),
            op(Kind::Write(11), "n2", 40, 50, ok(3, 11, false)),
            op(Kind::Read, "n3", 60, 70, ok(3, 11, true)),
            op(Kind::Pause, "n1", 80, 90, ok(3, 11, false)),
            op(Kind::Resume, "n2", 100, 110, ok(3, 11, false)),
            op(Kind::Pause, "n3", 120, 130, ok(3, 11, false)),
        ];
        assert_eq!(check(&h, INITIAL), Vec::<String>::new());
    }

    #[test]
    fn concurrent_operations_may_take_either_order() {
        let h = vec![
            op(Kind::Write(10), "n1", 0, 100, ok(3, 10, false)),
            op(Kind::Write(11), "n2", 10, 90, ok(2, 11, false)),
            op(Kind::Read, "n3", 5, 50, ok(2, 11, true)),
            op(Kind::Read, "n3", 5, 50, ok(1, 4_000, true)),
            op(Kind::Pause, "n1", 0, 50, ok(0, 0, false)),
            op(Kind::Pause, "n2", 10, 60, ok(0, 0, false)),
            op(Kind::Resume, "n3", 20, 30, Outcome::Unknown),
        ];
        assert_eq!(check(&h, INITIAL), Vec::<String>::new());
    }

    #[test]
    fn a_stale_read_is_caught() {
        let h = vec![
            op(Kind::Write(10), "n1", 0, 10, ok(2, 10, false)),
            op(Kind::Read, "n2", 20, 30, ok(1, 4_000, true)),
        ];
        let bad = check(&h, INITIAL);
        assert!(bad.iter().any(|b| b.contains("stale")), "{bad:?}");
        // The same read marked local is allowed on another node …
        let h = vec![
            op(Kind::Write(10), "n1", 0, 10, ok(2, 10, false)),
            op(Kind::Read, "n2", 20, 30, ok(1, 4_000, false)),
        ];
        assert_eq!(check(&h, INITIAL), Vec::<String>::new());
        // … but not on the node that acknowledged the write (read your writes).
        let h = vec![
            op(Kind::Write(10), "n1", 0, 10, ok(2, 10, false)),
            op(Kind::Read, "n1", 20, 30, ok(1, 4_000, false)),
        ];
        let bad = check(&h, INITIAL);
        assert!(
            bad.iter().any(|b| b.contains("read your writes")),
            "{bad:?}"
        );
    }

    #[test]
    fn reads_go_back_in_time_is_caught() {
        let h = vec![
            op(Kind::Write(10), "n1", 0, 100, Outcome::Unknown),
            op(Kind::Read, "n2", 10, 20, ok(2, 10, true)),
            op(Kind::Read, "n3", 30, 40, ok(1, 4_000, true)),
        ];
        let bad = check(&h, INITIAL);
        assert!(bad.iter().any(|b| b.contains("stale")), "{bad:?}");
    }

    #[test]
    fn lost_updates_and_reordered_writes_are_caught() {
        let h = vec![
            op(Kind::Write(10), "n1", 0, 10, ok(2, 10, false)),
            op(Kind::Write(11), "n2", 5, 15, ok(2, 11, false)),
        ];
        let bad = check(&h, INITIAL);
        assert!(bad.iter().any(|b| b.contains("lost update")), "{bad:?}");
        let h = vec![
            op(Kind::Write(10), "n1", 0, 10, ok(3, 10, false)),
            op(Kind::Write(11), "n2", 20, 30, ok(2, 11, false)),
        ];
        let bad = check(&h, INITIAL);
        assert!(bad.iter().any(|b| b.contains("before write")), "{bad:?}");
    }

    #[test]
    fn values_from_nowhere_or_the_future_are_caught() {
        let h = vec![
            op(Kind::Read, "n2", 0, 10, ok(2, 10, true)),
            op(Kind::Write(10), "n1", 20, 30, Outcome::Unknown),
        ];
        let bad = check(&h, INITIAL);
        assert!(bad.iter().any(|b| b.contains("before anyone")), "{bad:?}");
        let h = vec![op(Kind::Read, "n2", 0, 10, ok(2, 99, true))];
        let bad = check(&h, INITIAL);
        assert!(bad.iter().any(|b| b.contains("nobody wrote")), "{bad:?}");
        let h = vec![
            op(Kind::Write(10), "n1", 0, 10, ok(2, 10, false)),
            op(Kind::Read, "n2", 20, 30, ok(2, 4_000, true)),
        ];
        let bad = check(&h, INITIAL);
        assert!(bad.iter().any(|b| b.contains("holds")), "{bad:?}");
    }

    #[test]
    fn two_pauses_without_a_resume_between_are_caught() {
        let h = vec![
            op(Kind::Pause, "n1", 0, 10, ok(0, 0, false)),
            op(Kind::Resume, "n2", 12, 14, Outcome::Refused(409)),
            op(Kind::Pause, "n2", 20, 30, ok(0, 0, false)),
        ];
        let bad = check(&h, INITIAL);
        assert!(bad.iter().any(|b| b.contains("Pause")), "{bad:?}");
    }
}
