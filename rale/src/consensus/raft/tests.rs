//! Unit tests of the Raft store (openraft's conformance suite) and of a single node.

use std::sync::Arc;
use std::time::Duration;

use openraft::StorageIOError;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;
use tokio::sync::watch;

use super::db::Db;
use super::log_store::LogStore;
use super::state_machine::StateMachineStore;
use super::types::{StorageError, TypeConfig};
use super::{RaftConfig, RaftConsensus};
use crate::consensus::{Consensus, Peer};
use crate::state::{ClusterState, Command, HistoryKind, Operation};
use crate::types::NodeId;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let db = Db::open(dir.path())
            .await
            .map_err(|e| StorageIOError::write(&e))?;
        let (tx, _rx) = watch::channel(Arc::new(ClusterState::default()));
        let sm = StateMachineStore::open(db.clone(), tx)
            .await
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        Ok((dir, LogStore::new(db), sm))
    }
}

#[test]
fn store_passes_openraft_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft storage suite failed: {e}");
    }
}

fn record(i: u64) -> Command {
    Command {
        op: Operation::Record {
            kind: HistoryKind::Operation,
            node: None,
            actor: "test".into(),
            reason: format!("entry {i}"),
        },
        wall_ms: i,
    }
}

fn single_node_config(dir: &std::path::Path) -> RaftConfig {
    let node = NodeId::new("solo").expect("valid name");
    let api_url = "http://127.0.0.1:9";
    let peers = vec![Peer {
        node: node.clone(),
        raft_id: 1,
        api_url: api_url.into(),
    }];
    let mut config = RaftConfig::new(node, 1, api_url, dir, peers);
    config.snapshot_logs = 20;
    config.logs_kept_after_snapshot = 5;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_compacts_and_survives_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = single_node_config(dir.path());

    let node = RaftConsensus::start(config.clone()).await.expect("starts");
    node.wait_for_leader(Duration::from_secs(10))
        .await
        .expect("a single voter elects itself");
    assert!(node.has_majority(), "a single voter is its own majority");
    let mut rx = node.subscribe();
    for i in 0..60 {
        let outcome = node.propose(record(i)).await.expect("proposal commits");
        assert!(outcome.is_applied());
    }
    let before = node.read().await.expect("linearizable read");
    assert_eq!(before.revision, 60);
    assert_eq!(
        rx.borrow_and_update().revision,
        60,
        "subscribe sees the applied state"
    );

    // Compaction: a snapshot was built and the log before it purged.
    let mut compacted = false;
    for _ in 0..100 {
        let m = node.metrics();
        if m.snapshot.is_some() && m.purged.is_some() {
            compacted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        compacted,
        "snapshot built and log purged: {:?}",
        node.status()
    );
    node.shutdown().await.expect("stops");
    drop(node);

    let node = RaftConsensus::start(config)
        .await
        .expect("restarts from its store");
    node.wait_for_leader(Duration::from_secs(10))
        .await
        .expect("elects itself again");
    let after = node.read().await.expect("read after restart");
    assert_eq!(*after, *before, "state rebuilt from snapshot + log");
    let outcome = node
        .propose(record(60))
        .await
        .expect("proposal after restart");
    assert!(outcome.is_applied());
    assert_eq!(node.read().await.expect("read").revision, 61);
    let status = node.status();
    assert!(status.is_leader);
    assert!(status.snapshot_index.is_some(), "snapshot kept: {status:?}");
    node.shutdown().await.expect("stops");
}

#[tokio::test]
async fn membership_and_status_of_a_single_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = RaftConsensus::start(single_node_config(dir.path()))
        .await
        .expect("starts");
    let leader = node
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    assert_eq!(leader.as_str(), "solo");
    let m = node.membership().await.expect("membership");
    assert_eq!(m.voters.len(), 1);
    assert_eq!(m.voters[0].raft_id, 1);
    assert!(m.learners.is_empty());
    assert_eq!(m.leader, Some(leader));
    let err = node
        .remove_member(&NodeId::new("solo").expect("valid name"))
        .await
        .expect_err("the last voter cannot be removed");
    assert!(matches!(err, crate::Error::Membership(_)), "{err}");
    let err = node
        .remove_member(&NodeId::new("ghost").expect("valid name"))
        .await
        .expect_err("unknown member");
    assert!(matches!(err, crate::Error::Membership(_)), "{err}");
    node.shutdown().await.expect("stops");
    assert!(!node.has_majority(), "a stopped node has no majority");
    assert!(node.propose(record(0)).await.is_err());
}

/// The seed corpus of the `raft_rpc` fuzz target: one body of each RPC, encoded as
/// peers send them. Each is accepted by [`super::check_rpc_bodies`];
/// `RALE_WRITE_FUZZ_SEEDS=1` (re)writes them into `fuzz/corpus/raft_rpc`.
#[test]
fn rpc_bodies_of_every_kind_are_accepted() {
    use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, SnapshotMeta, Vote};

    let log_id = |term: u64, index: u64| LogId::new(CommittedLeaderId::new(term, 1), index);
    let vote = Vote::new_committed(2, 1);
    let entries: Vec<Entry<TypeConfig>> = vec![
        Entry {
            log_id: log_id(2, 7),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(2, 8),
            payload: EntryPayload::Normal(record(8)),
        },
    ];
    let bodies: Vec<(&str, String)> = vec![
        (
            "vote.json",
            serde_json::to_string(&VoteRequest::new(vote, Some(log_id(1, 6)))).expect("json"),
        ),
        (
            "append.json",
            serde_json::to_string(&AppendEntriesRequest::<TypeConfig> {
                vote,
                prev_log_id: Some(log_id(1, 6)),
                entries,
                leader_commit: Some(log_id(1, 6)),
            })
            .expect("json"),
        ),
        (
            "heartbeat.json",
            serde_json::to_string(&AppendEntriesRequest::<TypeConfig> {
                vote,
                prev_log_id: None,
                entries: vec![],
                leader_commit: None,
            })
            .expect("json"),
        ),
        (
            "snapshot.json",
            serde_json::to_string(&InstallSnapshotRequest::<TypeConfig> {
                vote,
                meta: SnapshotMeta {
                    last_log_id: Some(log_id(2, 9)),
                    last_membership: Default::default(),
                    snapshot_id: "2-9".into(),
                },
                offset: 0,
                data: b"{}".to_vec(),
                done: true,
            })
            .expect("json"),
        ),
        (
            "propose.json",
            serde_json::to_string(&record(3)).expect("json"),
        ),
        (
            "add_member.json",
            serde_json::to_string(&Peer {
                node: NodeId::new("n4").expect("name"),
                raft_id: 4,
                api_url: "http://127.0.0.1:8004".into(),
            })
            .expect("json"),
        ),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/raft_rpc");
    for (name, body) in &bodies {
        assert!(
            super::check_rpc_bodies(body.as_bytes()) >= 1,
            "{name}: {body}"
        );
        if std::env::var_os("RALE_WRITE_FUZZ_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).expect("corpus directory");
            std::fs::write(dir.join(name), body).expect("seed written");
        }
    }
    // The corpus as kept in the repository replays (what CI runs on stable).
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/raft_rpc") {
        let data = std::fs::read(entry.expect("entry").path()).expect("readable");
        let _ = super::check_rpc_bodies(&data);
        seen += 1;
    }
    assert!(
        seen >= bodies.len(),
        "the seed corpus is in {}",
        dir.display()
    );
}
