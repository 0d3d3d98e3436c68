//! Multi-node tests of `RaftConsensus` on loopback: election, forwarding, linearizable
//! reads, leader failover, restart from the store, loss of majority, membership changes
//! and authentication. Run with `cargo test -p rale --test raft_cluster -- --nocapture`
//! to see the measured figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rale::consensus::Peer;
use rale::{Consensus, Error};

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_elect_forward_fail_over_and_restart() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let followers = cluster.followers(leader);
    println!("leader elected: {}", cluster.agents[leader].config.node);

    // A follower proposes (forwarded to the leader); another follower reads it back.
    let (f1, f2) = (followers[0], followers[1]);
    let outcome = cluster.agents[f1]
        .consensus
        .propose(record("from a follower"))
        .await
        .expect("proposal from a follower commits");
    assert!(outcome.is_applied());
    let state = cluster.agents[f2].consensus.read().await.expect("read");
    assert_eq!(state.revision, 1, "linearizable read sees the proposal");
    assert_eq!(
        state.history.back().map(|h| h.reason.as_str()),
        Some("from a follower")
    );
    let state = cluster.agents[leader].consensus.read().await.expect("read");
    assert_eq!(state.revision, 1);
    let mut rx = cluster.agents[f2].consensus.subscribe();
    eventually("subscribe shows the applied state", || {
        rx.borrow_and_update().revision == 1
    })
    .await;

    let m = cluster.agents[f1]
        .consensus
        .membership()
        .await
        .expect("membership");
    assert_eq!(m.voters.len(), 3);
    assert_eq!(m.leader.as_ref(), Some(&cluster.agents[leader].config.node));
    assert!(m.term >= 1);
    for a in &cluster.agents {
        let c = a.consensus.clone();
        eventually("every node has a majority", || c.has_majority()).await;
    }
    // The seam is object-safe: the daemon holds it as `Arc<dyn Consensus>`.
    let seam: Arc<dyn Consensus> = Arc::new(cluster.agents[f1].consensus.clone());
    assert!(seam.has_majority());

    // Latency figures (sequential; each proposal is fsync'ed on a majority).
    for (label, i) in [("leader", leader), ("follower (forwarded)", f1)] {
        let rounds = 20;
        let started = Instant::now();
        for r in 0..rounds {
            cluster.agents[i]
                .consensus
                .propose(record(&format!("latency {label} {r}")))
                .await
                .expect("commit");
        }
        println!(
            "FIGURE propose latency from the {label}: {:.1} ms mean over {rounds}",
            started.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds)
        );
    }
    let started = Instant::now();
    for _ in 0..20 {
        cluster.agents[f2].consensus.read().await.expect("read");
    }
    println!(
        "FIGURE linearizable read latency from a follower: {:.1} ms mean over 20",
        started.elapsed().as_secs_f64() * 1000.0 / 20.0
    );
    let base = cluster.agents[leader]
        .consensus
        .read()
        .await
        .expect("read")
        .revision;
    assert_eq!(base, 41);

    // Kill the leader; a survivor proposes until a new leader accepts.
    let old_leader = cluster.agents[leader].config.node.clone();
    let killed_at = Instant::now();
    let before_kill = cluster.agents[leader].consensus.status();
    cluster.agents[leader].kill().await;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match cluster.agents[f1]
            .consensus
            .propose(record("after failover"))
            .await
        {
            Ok(o) => {
                assert!(o.is_applied());
                break;
            }
            Err(e) => {
                assert!(killed_at.elapsed() < SETTLE, "no failover: {e}");
            }
        }
    }
    let failover = killed_at.elapsed();
    let new_leader = cluster.leader().await;
    assert_ne!(cluster.agents[new_leader].config.node, old_leader);
    println!(
        "FIGURE leader failover (kill -> new leader accepts a proposal): {} ms, {attempts} attempt(s)",
        failover.as_millis()
    );
    let state = cluster.agents[f2].consensus.read().await.expect("read");
    assert_eq!(state.revision, base + 1);

    // The old leader restarts from its store, keeps its log and catches up.
    cluster.agents[leader].restart().await;
    let restarted = cluster.agents[leader].consensus.clone();
    let status = restarted.status();
    assert!(
        status.last_log_index >= before_kill.last_log_index,
        "log kept across restart: {status:?} vs {before_kill:?}"
    );
    let mut rx = restarted.subscribe();
    let catch_up = eventually("the restarted node catches up", || {
        rx.borrow_and_update().revision == base + 1
    })
    .await;
    println!(
        "FIGURE restarted node caught up in {} ms",
        catch_up.as_millis()
    );
    let state = restarted.read().await.expect("read on the restarted node");
    assert_eq!(state.revision, base + 1);
    let outcome = restarted
        .propose(record("from the restarted node"))
        .await
        .expect("the restarted node can propose");
    assert!(outcome.is_applied());

    // A follower stopped and restarted keeps its state and catches up on what it missed.
    let leader = cluster.leader().await;
    let f = cluster.followers(leader)[0];
    let before = cluster.agents[f].consensus.status();
    cluster.agents[f].kill().await;
    for i in 0..5 {
        cluster.agents[leader]
            .consensus
            .propose(record(&format!("while down {i}")))
            .await
            .expect("two of three commit");
    }
    cluster.agents[f].restart().await;
    let status = cluster.agents[f].consensus.status();
    assert!(
        status.last_log_index >= before.last_log_index,
        "{status:?} vs {before:?}"
    );
    let mut rx = cluster.agents[f].consensus.subscribe();
    eventually("the restarted follower applies what it missed", || {
        rx.borrow_and_update().revision == base + 7
    })
    .await;
    for a in &mut cluster.agents {
        a.kill().await;
    }
    let _ = &cluster.root;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolated_nodes_lose_the_majority() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    for a in &cluster.agents {
        let c = a.consensus.clone();
        eventually("every node has a majority", || c.has_majority()).await;
    }
    // The leader loses both followers: it still believes it leads, but has no majority.
    let followers = cluster.followers(leader);
    let stopped_at = Instant::now();
    for f in followers {
        cluster.agents[f].kill().await;
    }
    let lonely = cluster.agents[leader].consensus.clone();
    eventually("the isolated leader reports no majority", || {
        !lonely.has_majority()
    })
    .await;
    let lost = stopped_at.elapsed();
    println!(
        "FIGURE isolated leader: has_majority false {} ms after losing both followers (majority_timeout {} ms)",
        lost.as_millis(),
        lonely.config().majority_timeout.as_millis()
    );
    let started = Instant::now();
    let err = lonely
        .propose(record("no quorum"))
        .await
        .expect_err("no quorum, no commit");
    assert!(matches!(err, Error::NoMajority(_)), "{err}");
    println!(
        "FIGURE propose without quorum failed after {} ms: {err}",
        started.elapsed().as_millis()
    );
    let err = lonely.read().await.expect_err("no quorum, no read");
    assert!(matches!(err, Error::NoMajority(_)), "{err}");
    for a in &mut cluster.agents {
        a.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolated_follower_loses_the_majority() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let followers = cluster.followers(leader);
    let (keep, other) = (followers[0], followers[1]);
    let c = cluster.agents[keep].consensus.clone();
    eventually("the follower has a majority", || c.has_majority()).await;
    let stopped_at = Instant::now();
    cluster.agents[leader].kill().await;
    cluster.agents[other].kill().await;
    eventually("the isolated follower reports no majority", || {
        !c.has_majority()
    })
    .await;
    println!(
        "FIGURE isolated follower: has_majority false {} ms after losing both peers",
        stopped_at.elapsed().as_millis()
    );
    for a in &mut cluster.agents {
        a.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_member_joins_and_leaves() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    cluster.agents[leader]
        .consensus
        .propose(record("before the join"))
        .await
        .expect("commit");
    let peers: Vec<Peer> = cluster.agents[0].config.peers.clone();
    let (listener, url) = bind().await;
    let config = config_for(&cluster.root, 4, &url, peers);
    let fourth = Agent::start(config, listener).await;
    let newcomer = Peer {
        node: name(4),
        raft_id: 4,
        api_url: url,
    };
    let follower = cluster.followers(leader)[0];
    let started = Instant::now();
    cluster.agents[follower]
        .consensus
        .add_member(newcomer.clone())
        .await
        .expect("add_member through a follower");
    println!(
        "FIGURE add_member (learner catch-up + promotion) took {} ms",
        started.elapsed().as_millis()
    );
    let m = cluster.agents[leader]
        .consensus
        .membership()
        .await
        .expect("membership");
    assert_eq!(m.voters.len(), 4, "{m:?}");
    assert!(m.voters.contains(&newcomer));
    let started = Instant::now();
    loop {
        let m = fourth.consensus.membership().await.expect("membership");
        if m.voters.len() == 4 && m.learners.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < SETTLE,
            "the newcomer never saw itself voter: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = cluster.agents[leader]
        .consensus
        .add_member(newcomer.clone())
        .await
        .expect_err("already a voter");
    assert!(matches!(err, Error::Membership(_)), "{err}");
    cluster.agents[leader]
        .consensus
        .propose(record("with four"))
        .await
        .expect("commit with four voters");
    let state = fourth.consensus.read().await.expect("read on the newcomer");
    assert_eq!(state.revision, 2);
    cluster.agents.push(fourth);

    cluster.agents[follower]
        .consensus
        .remove_member(&name(4))
        .await
        .expect("remove_member through a follower");
    let m = cluster.agents[leader]
        .consensus
        .membership()
        .await
        .expect("membership");
    assert_eq!(m.voters.len(), 3, "{m:?}");
    assert!(m.voters.iter().all(|p| p.raft_id != 4));
    cluster.agents[3].kill().await;
    cluster.agents[leader]
        .consensus
        .propose(record("after the leave"))
        .await
        .expect("commit with three voters");
    for a in &mut cluster.agents {
        a.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raft_endpoints_require_the_shared_secret() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    cluster.agents[leader]
        .consensus
        .propose(record("authenticated cluster works"))
        .await
        .expect("commit");
    let url = format!("{}/raft/vote", cluster.agents[leader].config.api_url);
    let vote = serde_json::json!({
        "vote": {"leader_id": {"term": 1000, "node_id": 99}, "committed": false},
        "last_log_id": null
    });
    let http = reqwest::Client::new();
    let resp = http.post(&url).json(&vote).send().await.expect("HTTP");
    assert_eq!(resp.status(), reqwest::StatusCode::UNAUTHORIZED);
    let resp = http
        .post(&url)
        .bearer_auth("wrong-secret")
        .json(&vote)
        .send()
        .await
        .expect("HTTP");
    assert_eq!(resp.status(), reqwest::StatusCode::UNAUTHORIZED);
    let append = format!("{}/raft/append", cluster.agents[leader].config.api_url);
    let resp = http.post(&append).json(&vote).send().await.expect("HTTP");
    assert_eq!(resp.status(), reqwest::StatusCode::UNAUTHORIZED);
    let propose = format!("{}/raft/propose", cluster.agents[leader].config.api_url);
    let resp = http
        .post(&propose)
        .json(&record("sneaky"))
        .send()
        .await
        .expect("HTTP");
    assert_eq!(resp.status(), reqwest::StatusCode::UNAUTHORIZED);
    // The refused vote changed nothing: the same leader, the same term.
    let state = cluster.agents[leader].consensus.read().await.expect("read");
    assert_eq!(state.revision, 1);
    assert!(cluster.agents[leader].consensus.status().term < 1000);
    for a in &mut cluster.agents {
        a.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lagging_member_is_sent_a_snapshot() {
    let mut cluster = Cluster::start_with(3, |c| {
        c.snapshot_logs = 10;
        c.logs_kept_after_snapshot = 0;
    })
    .await;
    let leader = cluster.leader().await;
    let f = cluster.followers(leader)[0];
    let follower_before = cluster.agents[f].consensus.status();
    cluster.agents[f].kill().await;
    for i in 0..40 {
        cluster.agents[leader]
            .consensus
            .propose(record(&format!("while away {i}")))
            .await
            .expect("two of three commit");
    }
    eventually("the leader purges the entries the follower lacks", || {
        cluster.agents[leader].consensus.status().purged_index > follower_before.last_log_index
    })
    .await;
    let expected = cluster.agents[leader].consensus.read().await.expect("read");
    assert_eq!(expected.revision, 40);

    let started = Instant::now();
    cluster.agents[f].restart().await;
    let node = cluster.agents[f].consensus.clone();
    let mut rx = node.subscribe();
    eventually(
        "the lagging member installs the snapshot and catches up",
        || rx.borrow_and_update().revision == 40,
    )
    .await;
    println!(
        "FIGURE lagging member caught up through a snapshot in {} ms",
        started.elapsed().as_millis()
    );
    let status = node.status();
    assert!(
        status.snapshot_index >= Some(30),
        "caught up through a snapshot, not the log: {status:?}"
    );
    assert_eq!(*node.subscribe().borrow().clone(), *expected);
    // And it serves: a proposal through it commits.
    node.propose(record("after the snapshot"))
        .await
        .expect("commit through the caught-up member");
    for a in &mut cluster.agents {
        a.kill().await;
    }
}
