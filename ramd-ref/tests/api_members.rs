//! `/api/v1/members` over `MemConsensus`, without a socket: list, add, remove, and every
//! refusal (credentials, bad bodies, clashes, lease holder, last voter, unknown member).
//! Run: cargo test -p ramd-ref --test api_members

mod api_fixture;

use api_fixture::*;
use axum::http::{Method, StatusCode};
use rale::Consensus;
use rale::consensus::Peer;
use rale::state::Operation;

fn peer(name: &str, id: u64) -> Peer {
    Peer {
        node: n(name),
        raft_id: id,
        api_url: format!("http://127.0.0.1:{}", 8000 + id),
    }
}

/// The async fixture cluster (n2 holds the lease) with n1..n3 as consensus voters.
async fn voters() -> rale::MemConsensus {
    let c = cluster(false).await;
    for (name, id) in [("n1", 1), ("n2", 2), ("n3", 3)] {
        c.add_member(peer(name, id)).await.expect("add voter");
    }
    c
}

#[tokio::test]
async fn list_shows_voters() {
    let c = voters().await;
    let app = node(&c, "n1").await.app;
    let r = call(&app, Method::GET, "/api/v1/members", None, false).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    let names: Vec<&str> = body["voters"]
        .as_array()
        .expect("voters")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["n1", "n2", "n3"]);
    assert_eq!(body["voters"][1]["raft_id"], 2);
    assert_eq!(body["learners"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn add_needs_credentials_and_a_valid_body() {
    let c = voters().await;
    let app = node(&c, "n1").await.app;
    let body = r#"{"name":"n4","raft_id":4,"api_url":"https://10.0.0.4:8008"}"#;
    let r = call(&app, Method::POST, "/api/v1/members", Some(body), false).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    for bad in [
        r#"{"name":"n4","raft_id":0,"api_url":"http://h:1"}"#,
        r#"{"name":"bad name","raft_id":4,"api_url":"http://h:1"}"#,
        r#"{"name":"n4","raft_id":4,"api_url":"ftp://h:1"}"#,
        r#"{"name":"n4","raft_id":4}"#,
        r#"{"name":"n4","raft_id":4,"api_url":"http://h:1","extra":true}"#,
        r#"{"name":"n4","raft_id":-1,"api_url":"http://h:1"}"#,
        r#"not json"#,
    ] {
        let r = call(&app, Method::POST, "/api/v1/members", Some(bad), true).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", r.body);
    }
    assert_eq!(c.membership().await.expect("membership").voters.len(), 3);
}

#[tokio::test]
async fn add_then_refuse_duplicates_and_clashes() {
    let c = voters().await;
    let app = node(&c, "n1").await.app;
    let body = r#"{"name":"n4","raft_id":4,"api_url":"https://10.0.0.4:8008/"}"#;
    let r = call(&app, Method::POST, "/api/v1/members", Some(body), true).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.json()["node"], "n4");
    let m = c.membership().await.expect("membership");
    let added = m
        .voters
        .iter()
        .find(|p| p.node == n("n4"))
        .expect("n4 added");
    assert_eq!(added.raft_id, 4);
    assert_eq!(
        added.api_url, "https://10.0.0.4:8008",
        "trailing slash trimmed"
    );

    let r = call(&app, Method::POST, "/api/v1/members", Some(body), true).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("already"))
    );

    // Same id, other name; same name, other id.
    for clash in [
        r#"{"name":"n5","raft_id":4,"api_url":"http://h:1"}"#,
        r#"{"name":"n4","raft_id":9,"api_url":"http://h:1"}"#,
    ] {
        let r = call(&app, Method::POST, "/api/v1/members", Some(clash), true).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{clash}");
        assert!(
            r.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("clashes")),
            "{clash}"
        );
    }
    assert_eq!(c.membership().await.expect("membership").voters.len(), 4);
}

#[tokio::test]
async fn remove_refuses_the_lease_holder_unknown_and_last_voter() {
    let c = voters().await;
    let app = node(&c, "n1").await.app;
    let r = call(&app, Method::DELETE, "/api/v1/members/n1", None, false).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // n2 holds the primary lease.
    let r = call(&app, Method::DELETE, "/api/v1/members/n2", None, true).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let e = r.json();
    assert!(
        e["error"]
            .as_str()
            .is_some_and(|t| t.contains("primary lease")),
        "{e}"
    );
    assert_eq!(e["node"], "n2");

    let r = call(&app, Method::DELETE, "/api/v1/members/n9", None, true).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(
        &app,
        Method::DELETE,
        "/api/v1/members/bad%20name",
        None,
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // A cluster whose only voter does not hold the lease (n1): the last voter stays.
    let lone = cluster(false).await;
    lone.add_member(peer("n1", 1)).await.expect("add");
    let app = node(&lone, "n1").await.app;
    let r = call(&app, Method::DELETE, "/api/v1/members/n1", None, true).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|t| t.contains("last voter"))
    );
    assert_eq!(lone.membership().await.expect("m").voters.len(), 1);
}

#[tokio::test]
async fn remove_forgets_the_member_everywhere() {
    let c = voters().await;
    let app = node(&c, "n1").await.app;
    // n3's agent published just now: refused without force (issue 14, item 4).
    let r = call(&app, Method::DELETE, "/api/v1/members/n3", None, true).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(
        String::from_utf8_lossy(&r.body).contains("still reports"),
        "{:?}",
        r.body
    );
    assert!(
        c.membership()
            .await
            .expect("membership")
            .voters
            .iter()
            .any(|p| p.node == n("n3"))
    );
    let r = call(
        &app,
        Method::DELETE,
        "/api/v1/members/n3?force=true",
        None,
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["message"], "n3 is no longer a member");
    // The removed member's agent can no longer publish itself back.
    let state = c.read().await.expect("read");
    assert!(state.removed.contains(&n("n3")));
    let mut status = state.members.get(&n("n1")).cloned().expect("n1 published");
    status.node = n("n3");
    let outcome = c
        .propose(rale::state::Command {
            op: Operation::PublishMember { status },
            wall_ms: 1,
        })
        .await
        .expect("propose");
    assert!(
        !outcome.is_applied(),
        "a removed member published itself back"
    );
    let m = c.membership().await.expect("membership");
    assert!(m.voters.iter().all(|p| p.node != n("n3")));
    let cluster = call(&app, Method::GET, "/cluster", None, false)
        .await
        .json();
    let names: Vec<&str> = cluster["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(!names.contains(&"n3"), "{names:?}");
    let history = call(&app, Method::GET, "/api/v1/history", None, false).await;
    assert!(
        String::from_utf8_lossy(&history.body).contains("n3"),
        "the removal is in the history"
    );
}

#[tokio::test]
async fn consensus_down_is_503() {
    let c = voters().await;
    let n1 = node(&c, "n1").await;
    let app = n1.app;
    n1.consensus.set_connected(false);
    let body = r#"{"name":"n4","raft_id":4,"api_url":"http://h:1"}"#;
    let r = call(&app, Method::POST, "/api/v1/members", Some(body), true).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    let r = call(&app, Method::DELETE, "/api/v1/members/n3", None, true).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

/// A member whose wall clock is an hour behind looks gone by its stamps, but it keeps
/// publishing: the removal is refused all the same (issue 22, wall-clock steps).
#[tokio::test]
async fn a_live_member_with_a_clock_behind_is_not_removed() {
    let c = voters().await;
    let app = node(&c, "n1").await.app;
    let state = c.read().await.expect("read");
    let mut status = state.members.get(&n("n1")).cloned().expect("n1 published");
    status.node = n("n3");
    let hour_ago = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits")
    .saturating_sub(3_600_000);
    let publish = |k: u64| rale::state::Command {
        op: Operation::PublishMember {
            status: status.clone(),
        },
        wall_ms: hour_ago + k,
    };
    c.propose(publish(0)).await.expect("publish");
    // n3 keeps publishing (every 100 ms, bounded) while the removal looks.
    let publisher = {
        let c = c.clone();
        let cmds: Vec<_> = (1..=60).map(publish).collect();
        tokio::spawn(async move {
            for cmd in cmds {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let _ = c.propose(cmd).await;
            }
        })
    };
    let r = call(&app, Method::DELETE, "/api/v1/members/n3", None, true).await;
    publisher.abort();
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(
        String::from_utf8_lossy(&r.body).contains("wall clock may be off"),
        "{:?}",
        r.body
    );
    // Once it is quiet, the same old stamp no longer holds the removal back.
    let r = call(&app, Method::DELETE, "/api/v1/members/n3", None, true).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}
