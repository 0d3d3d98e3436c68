//! The rest of the operator's surface end to end, on a real 3-node cluster: the OpenAPI
//! document served by a live agent, malformed JSON on every endpoint that takes a body
//! (400 with a message, nothing changed), unknown members (404 with a message), the
//! synchronous-standby commands (`ramctrl sync count|add|any-n|commit-level|remove`,
//! checked against what the primary's PostgreSQL enforces), parameters
//! (`ramctrl params list|optimize` and their endpoints), `ramctrl member`, and
//! `POST /api/v1/promote/{id}`; every `GET` route on a live agent, a scheduled switchover
//! cancelled, `PUT /config`; PostgreSQL parameters set, removed, and rolled back when
//! the server refuses them; no password in any log or answer.
//! Run: `cargo test -p rale-e2e --test ramd_api_surface -- --nocapture`

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rale_e2e::ctl::Ctl;
use rale_e2e::ramd_cluster::{RamdCluster, serial};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn parse(text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("not JSON: {text}"))
}

/// The error message of a refusal, required to be present and not empty.
fn message(code: u16, text: &str) -> anyhow::Result<String> {
    let v = parse(text)?;
    let m = v["error"]
        .as_str()
        .or_else(|| v["message"].as_str())
        .with_context(|| format!("{code} without a message: {text}"))?;
    ensure!(!m.trim().is_empty(), "{code} with an empty message: {text}");
    Ok(m.to_owned())
}

/// What a refused request must leave alone: the dynamic configuration, the history, the
/// leader, the maintenance flag and the consensus members.
async fn fingerprint(c: &RamdCluster, via: &str) -> anyhow::Result<Value> {
    let mut out = serde_json::Map::new();
    for path in ["/api/v1/config", "/api/v1/history", "/api/v1/members"] {
        let (code, text) = c.api_request(via, Method::GET, path, None).await?;
        ensure!(code == 200, "GET {path}: {code} {text}");
        out.insert(path.into(), parse(&text)?);
    }
    let status = c.status_from(via).await?;
    out.insert("leader".into(), json!(status.leader));
    out.insert("paused".into(), json!(status.paused));
    Ok(Value::Object(out))
}

/// `(method, path)` of every operation in the OpenAPI document that declares a body.
fn body_routes(doc: &Value) -> anyhow::Result<Vec<(String, String)>> {
    let paths = doc["paths"].as_object().context("paths")?;
    let mut out = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().context("path item")? {
            if op.get("requestBody").is_some() {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    Ok(out)
}

async fn openapi_and_refusals(c: &RamdCluster, primary: &str, replica: &str) -> anyhow::Result<()> {
    // The document a live agent serves describes every route it routes.
    let (code, text) = c
        .api_request(replica, Method::GET, "/openapi.json", None)
        .await?;
    ensure!(code == 200, "GET /openapi.json: {code}");
    let doc = parse(&text)?;
    for route in ramd_ref::api::route_table() {
        if route.method == "HEAD" || route.method == "OPTIONS" {
            continue;
        }
        ensure!(
            doc["paths"][route.path][route.method.to_lowercase()].is_object(),
            "{} {} is served but not in /openapi.json",
            route.method,
            route.path
        );
    }
    let with_body = body_routes(&doc)?;
    ensure!(
        with_body.len() >= 17,
        "only {} operations take a body: {with_body:?}",
        with_body.len()
    );

    let before = fingerprint(c, primary).await?;
    // Malformed JSON on every operation that takes a body: 400 with the parser's
    // message, before anything is done.
    for (method, path) in &with_body {
        let path = path.replace("{id}", "node1").replace("{name}", "node1");
        let m = Method::from_bytes(method.as_bytes())?;
        for bad in [r#"{"candidate": "#, "not json at all", r#"{"n": "#] {
            let (code, text) = c.api_raw(primary, m.clone(), &path, bad, true).await?;
            ensure!(
                code == 400,
                "{method} {path} with {bad:?}: {code} {text} (want 400)"
            );
            let msg = message(code, &text)?;
            ensure!(
                msg.contains("JSON"),
                "{method} {path}: the message does not say the JSON is bad: {msg}"
            );
        }
        // Well-formed JSON of the wrong shape is a 4xx too, never a 5xx.
        for wrong in [
            "[1, 2, 3]",
            r#"{"n": "three", "node": 7, "leader": []}"#,
            "42",
        ] {
            let (code, text) = c.api_raw(primary, m.clone(), &path, wrong, true).await?;
            ensure!(
                (400..500).contains(&code),
                "{method} {path} with {wrong}: {code} {text}"
            );
            message(code, &text)?;
        }
    }

    // Unknown members: 404 and a message that names them.
    for (method, path, body) in [
        (Method::GET, "/api/v1/nodes/nobody", None),
        (Method::POST, "/api/v1/promote/nobody", None),
        (Method::POST, "/api/v1/demote/nobody", None),
        (Method::DELETE, "/api/v1/members/nobody", None),
        (
            Method::POST,
            "/api/v1/sync-standbys/add",
            Some(json!({"node": "nobody"})),
        ),
    ] {
        let (code, text) = c.api_request(primary, method.clone(), path, body).await?;
        ensure!(code == 404, "{method} {path}: {code} {text} (want 404)");
        let msg = message(code, &text)?;
        ensure!(msg.contains("nobody"), "{method} {path}: {msg}");
    }
    // Switchover to an unknown member: refused (Patroni's 412) and says why.
    for path in ["/switchover", "/api/v1/cluster/switchover", "/failover"] {
        let (code, text) = c
            .api_request(
                primary,
                Method::POST,
                path,
                Some(json!({"leader": primary, "candidate": "nobody"})),
            )
            .await?;
        ensure!(
            (400..500).contains(&code),
            "POST {path} to nobody: {code} {text}"
        );
        let msg = message(code, &text)?;
        ensure!(msg.contains("nobody"), "POST {path}: {msg}");
    }
    // Without credentials, a malformed write is refused for the credentials first.
    let (code, _) = c
        .api_raw(primary, Method::PATCH, "/config", "{oops", false)
        .await?;
    ensure!(code == 401, "anonymous malformed PATCH /config: {code}");

    let after = fingerprint(c, primary).await?;
    ensure!(
        before == after,
        "refused requests changed the cluster:\nbefore {before}\nafter  {after}"
    );
    eprintln!(
        "FIGURE refusals: {} body operations x 6 bad bodies, 8 unknown-member requests: all 4xx, nothing changed",
        with_body.len()
    );
    Ok(())
}

/// Waits until the primary's PostgreSQL enforces `synchronous_standby_names` for which
/// `want` holds; returns the value.
async fn wait_enforced(
    c: &RamdCluster,
    primary: &str,
    what: &str,
    want: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let r = c
        .wait_for(what, WAIT, || async {
            let v = c
                .query_text(primary, "SHOW synchronous_standby_names")
                .await?
                .unwrap_or_default();
            Ok(want(&v).then_some(v))
        })
        .await;
    if r.is_err() {
        let now = c
            .query_text(primary, "SHOW synchronous_standby_names")
            .await;
        eprintln!("synchronous_standby_names is {now:?}");
    }
    r
}

/// `(application_name, sync_state)` of the primary's standbys.
async fn sync_states(c: &RamdCluster, primary: &str) -> anyhow::Result<BTreeSet<String>> {
    let text = c
        .query_text(
            primary,
            "SELECT string_agg(application_name || '=' || sync_state, ',' ORDER BY 1) \
             FROM pg_stat_replication",
        )
        .await?
        .unwrap_or_default();
    Ok(text.split(',').map(str::to_owned).collect())
}

async fn synchronous_commands(
    c: &RamdCluster,
    ctl: &Ctl,
    primary: &str,
    replicas: &[String],
) -> anyhow::Result<()> {
    let (a, b) = (&replicas[0], &replicas[1]);
    // FIRST 1: one synchronous standby. With the commit fence on (the default) PostgreSQL
    // enforces it as `FIRST 2 (rale_fence, <standby>)`: the fence plus one real standby
    // (docs/fence.md). (The fence-only value before the change, `FIRST 1 (rale_fence)`,
    // must not count.)
    ctl.ok(&["sync", "count", "1"]).await?;
    let names = wait_enforced(c, primary, "FIRST 2 (rale_fence, one standby)", |v| {
        v.starts_with("FIRST 2 (rale_fence, ") && replicas.iter().any(|r| v.contains(r.as_str()))
    })
    .await?;
    eprintln!("sync count 1 -> synchronous_standby_names = {names}");

    // Pin b: b becomes the synchronous standby.
    ctl.ok(&["sync", "add", b]).await?;
    let status: Value = parse(&ctl.ok(&["--json", "sync", "status"]).await?)?;
    ensure!(
        status["pinned"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == b.as_str())),
        "{b} is not pinned: {status}"
    );
    c.wait_for(&format!("{b} sync on the primary"), WAIT, || async {
        let s = sync_states(c, primary).await?;
        Ok((s.contains(&format!("{b}=sync")) && s.contains(&format!("{a}=async"))).then_some(()))
    })
    .await
    .with_context(|| "pg_stat_replication never showed the pinned standby as sync")?;
    let again = ctl.ok(&["sync", "add", b]).await?;
    ensure!(again.contains("already"), "second add: {again}");

    // Quorum: ANY 2 of both standbys, then remote_apply: a commit is visible on both
    // standbys as soon as it returns.
    ctl.ok(&["sync", "any-n", "2"]).await?;
    let names = wait_enforced(c, primary, "ANY 2", |v| {
        v.contains("ANY 2") && v.contains(a.as_str()) && v.contains(b.as_str())
    })
    .await?;
    eprintln!("sync any-n 2 -> synchronous_standby_names = {names}");
    ctl.ok(&["sync", "commit-level", "remote_apply"]).await?;
    c.wait_for("synchronous_commit = remote_apply", WAIT, || async {
        let v = c.query_text(primary, "SHOW synchronous_commit").await?;
        Ok((v.as_deref() == Some("remote_apply")).then_some(()))
    })
    .await?;
    c.wait_for("quorum on the primary", WAIT, || async {
        let s = sync_states(c, primary).await?;
        Ok(
            (s.contains(&format!("{a}=quorum")) && s.contains(&format!("{b}=quorum")))
                .then_some(()),
        )
    })
    .await?;
    for id in 7001..7004 {
        c.write(primary, id).await?;
        for r in replicas {
            ensure!(
                c.ids(r).await?.contains(&id),
                "row {id} committed with remote_apply under ANY 2 is not on {r} yet"
            );
        }
    }
    let history = ctl.ok(&["history"]).await?;
    ensure!(
        history.contains("synchronous") || history.contains("config"),
        "the changes are not in the history: {history}"
    );

    // Refusals: nothing changes.
    let config_before = ctl.ok(&["show-config"]).await?;
    let o = ctl.refused(1, &["sync", "remove", a]).await?;
    ensure!(o.said().contains("not pinned"), "{o:?}");
    let o = ctl.refused(1, &["sync", "add", "nobody"]).await?;
    ensure!(o.said().contains("nobody"), "{o:?}");
    let o = ctl
        .refused(1, &["sync", "commit-level", "sometimes"])
        .await?;
    ensure!(o.said().contains("sometimes"), "{o:?}");
    let o = ctl.refused(1, &["sync", "count", "0"]).await?;
    ensure!(o.said().contains("at least 1"), "{o:?}");
    ensure!(
        ctl.ok(&["show-config"]).await? == config_before,
        "a refused sync command changed the configuration"
    );

    // Back: un-pin, local commits, asynchronous.
    ctl.ok(&["sync", "remove", b]).await?;
    ctl.ok(&["sync", "commit-level", "on"]).await?;
    ctl.ok(&["edit-config", "--set", "synchronous.mode=off", "--force"])
        .await?;
    // Only the lease fence (docs/fence.md) is left, no member.
    wait_enforced(c, primary, "no member synchronous", |v| {
        !v.contains(a.as_str()) && !v.contains(b.as_str())
    })
    .await?;
    Ok(())
}

async fn parameter_commands(c: &RamdCluster, ctl: &Ctl, via: &str) -> anyhow::Result<()> {
    let list = ctl
        .ok(&["params", "list", "--context", "postmaster"])
        .await?;
    ensure!(
        list.contains("shared_buffers") && !list.contains("work_mem"),
        "params list --context postmaster: {list}"
    );
    let json: Value = parse(
        &ctl.ok(&["--json", "params", "list", "--search", "wal_"])
            .await?,
    )?;
    ensure!(
        json.to_string().contains("wal_level"),
        "params list --search wal_ --json: {json}"
    );
    let (code, text) = c
        .api_request(via, Method::GET, "/api/v1/parameter/list", None)
        .await?;
    ensure!(code == 200, "GET /api/v1/parameter/list: {code}");
    ensure!(
        text.contains("max_connections"),
        "the catalog lacks max_connections"
    );
    let opt = ctl
        .ok(&[
            "params",
            "optimize",
            "--memory",
            "16GB",
            "--cpus",
            "8",
            "--workload",
            "oltp",
        ])
        .await?;
    ensure!(
        opt.contains("shared_buffers") && opt.contains("effective_cache_size"),
        "params optimize: {opt}"
    );
    let (code, text) = c
        .api_request(
            via,
            Method::POST,
            "/api/v1/parameter/optimize",
            Some(json!({"total_memory_bytes": 16u64 << 30, "cpu_count": 8, "workload": "oltp", "storage": "ssd"})),
        )
        .await?;
    ensure!(
        code == 200,
        "POST /api/v1/parameter/optimize: {code} {text}"
    );
    ensure!(text.contains("shared_buffers"), "{text}");
    let o = ctl
        .refused(
            1,
            &[
                "params",
                "optimize",
                "--memory",
                "16GB",
                "--cpus",
                "8",
                "--workload",
                "gaming",
            ],
        )
        .await?;
    ensure!(o.said().contains("gaming"), "{o:?}");
    Ok(())
}

async fn member_commands(c: &RamdCluster, ctl: &Ctl, primary: &str) -> anyhow::Result<()> {
    let list = ctl.ok(&["member", "list"]).await?;
    for n in c.names() {
        ensure!(list.contains(n.as_str()), "member list lacks {n}: {list}");
    }
    let json: Value = parse(&ctl.ok(&["--json", "members", "list"]).await?)?;
    ensure!(json["voters"].as_array().map(Vec::len) == Some(3), "{json}");
    let o = ctl
        .refused(1, &["member", "remove", primary, "--force"])
        .await?;
    ensure!(o.said().contains("primary"), "{o:?}");
    let o = ctl
        .refused(1, &["member", "remove", "nobody", "--force"])
        .await?;
    ensure!(o.said().contains("nobody"), "{o:?}");
    let o = ctl
        .refused(
            2,
            &[
                "member",
                "add",
                "node9",
                "--raft-id",
                "9",
                "--api-url",
                "not a url",
            ],
        )
        .await?;
    ensure!(o.said().contains("url"), "{o:?}");
    ensure!(
        parse(&ctl.ok(&["--json", "members", "list"]).await?)? == json,
        "a refused member command changed the membership"
    );
    Ok(())
}

async fn promote(c: &RamdCluster, primary: &str, target: &str) -> anyhow::Result<()> {
    // Promoting the primary itself is refused; nothing changes.
    let (code, text) = c
        .api_request(
            primary,
            Method::POST,
            &format!("/api/v1/promote/{primary}"),
            None,
        )
        .await?;
    ensure!(
        (400..500).contains(&code),
        "promote the primary: {code} {text}"
    );
    message(code, &text)?;
    ensure!(
        c.primary().await? == primary,
        "a refused promote moved the primary"
    );

    c.write(primary, 7100).await?;
    c.wait_row(target, 7100, WAIT).await?;
    let t = Instant::now();
    let (code, text) = c
        .api_request(
            primary,
            Method::POST,
            &format!("/api/v1/promote/{target}"),
            None,
        )
        .await?;
    ensure!(code == 200, "promote {target}: {code} {text}");
    c.wait_for("a write on the promoted member", WAIT, || async {
        Ok(c.write(target, 7101).await.ok())
    })
    .await?;
    eprintln!(
        "FIGURE promote: POST /api/v1/promote/{target} -> first write there: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    ensure!(c.primary().await? == target, "{target} is not the leader");
    c.wait_streaming(primary, Duration::from_secs(120)).await?;
    c.wait_row(primary, 7101, WAIT).await?;
    let history = c.history().await?;
    ensure!(
        history
            .iter()
            .rev()
            .take(3)
            .any(|h| h.kind == "failover" || h.kind == "switchover"),
        "the promotion is not in the history: {history:?}"
    );
    Ok(())
}

/// Every `GET` route on a live agent: 2xx with a body (JSON, or Prometheus text for
/// `/metrics`); the backup reads say 503 "not configured" on this cluster without a backup
/// tool (`tests/tests/ramd_backup.rs` has one).
async fn every_read(c: &RamdCluster, via: &str, member: &str) -> anyhow::Result<()> {
    let mut answered = 0;
    for route in ramd_ref::api::route_table() {
        if route.method != "GET" || ramd_ref::api::health::check_for_path(route.path).is_some() {
            continue;
        }
        let path = route
            .path
            .replace("{id}", member)
            .replace("{name}", "shared_buffers");
        let path = if path.starts_with("/api/v1/backup/status/") {
            "/api/v1/backup/status/job-1".to_owned()
        } else {
            path
        };
        let (code, text) = c.api_request(via, Method::GET, &path, None).await?;
        if path.starts_with("/api/v1/backup/") {
            ensure!(code == 503, "GET {path}: {code} {text}");
            ensure!(message(code, &text)?.contains("not configured"), "{text}");
        } else if path == "/metrics" {
            ensure!(
                code == 200 && text.contains("rale_consensus_term"),
                "GET {path}: {code}"
            );
        } else {
            ensure!(code == 200, "GET {path}: {code} {text}");
            parse(&text).with_context(|| format!("GET {path}"))?;
        }
        answered += 1;
    }
    eprintln!("FIGURE reads: {answered} GET routes answered on a live agent");
    Ok(())
}

/// A switchover scheduled an hour ahead through the management path, visible in
/// `GET /cluster`, cancelled through Patroni's `DELETE /switchover`; `PUT /config`
/// replaces the configuration with what `GET` returned (a no-op change, accepted).
async fn schedule_and_replace(c: &RamdCluster, primary: &str, replica: &str) -> anyhow::Result<()> {
    let at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (code, text) = c
        .api_request(
            replica,
            Method::POST,
            "/api/v1/cluster/switchover",
            Some(json!({"leader": primary, "candidate": replica, "scheduled_at": at})),
        )
        .await?;
    ensure!(
        code == 202 || code == 200,
        "scheduling a switchover: {code} {text}"
    );
    // Another agent applies the change within a moment (reads are local).
    c.wait_for("the scheduled switchover in GET /cluster", WAIT, || async {
        Ok(c.cluster_from(primary)
            .await?
            .scheduled_switchover
            .map(|_| ()))
    })
    .await?;
    let (code, text) = c
        .api_request(primary, Method::DELETE, "/switchover", None)
        .await?;
    ensure!(code == 200, "cancelling: {code} {text}");
    c.wait_for("no scheduled switchover after DELETE", WAIT, || async {
        Ok(c.cluster_from(replica)
            .await?
            .scheduled_switchover
            .is_none()
            .then_some(()))
    })
    .await?;
    ensure!(c.primary().await? == primary, "the primary moved");

    let (code, text) = c.api_request(primary, Method::GET, "/config", None).await?;
    ensure!(code == 200, "GET /config: {code}");
    let mut config = parse(&text)?;
    config["maximum_lag_on_failover_bytes"] = json!(5 * 1024 * 1024);
    let (code, text) = c
        .api_request(replica, Method::PUT, "/config", Some(config))
        .await?;
    ensure!(code == 200, "PUT /config: {code} {text}");
    c.wait_for("PUT /config seen on another agent", WAIT, || async {
        let (_, text) = c
            .api_request(primary, Method::GET, "/api/v1/config", None)
            .await?;
        Ok(
            (parse(&text)?["maximum_lag_on_failover_bytes"] == json!(5 * 1024 * 1024))
                .then_some(()),
        )
    })
    .await?;
    let (code, text) = c
        .api_request(replica, Method::POST, "/api/v1/config/reload", None)
        .await?;
    ensure!(code == 202, "POST /api/v1/config/reload: {code} {text}");
    Ok(())
}

/// `SHOW name` on every node equals `want`, within [`WAIT`].
async fn wait_setting(c: &RamdCluster, name: &str, want: &str) -> anyhow::Result<()> {
    for n in c.names() {
        c.wait_for(&format!("{name} = {want} on {n}"), WAIT, || async {
            let v = c.query_text(&n, &format!("SHOW {name}")).await?;
            Ok((v.as_deref() == Some(want)).then_some(()))
        })
        .await?;
    }
    Ok(())
}

/// PostgreSQL parameters through the dynamic configuration: set on every node, removed
/// again with `null` (back to the default), and a value the server refuses rolled back
/// by the primary and reported in the history.
async fn parameter_changes(c: &RamdCluster, via: &str) -> anyhow::Result<()> {
    let patch = |body: Value| async move {
        let (code, text) = c
            .api_request(via, Method::PATCH, "/config", Some(body))
            .await?;
        ensure!(code == 200, "PATCH /config: {code} {text}");
        anyhow::Ok(())
    };
    patch(json!({"postgresql_parameters": {"work_mem": "8MB"}})).await?;
    wait_setting(c, "work_mem", "8MB").await?;
    patch(json!({"postgresql_parameters": {"work_mem": null}})).await?;
    wait_setting(c, "work_mem", "4MB").await?;

    // A postmaster parameter waits for a restart: visible in GET /cluster and `ramctrl
    // list`; `ramctrl restart --all --pending` restarts the members one at a time,
    // replicas first, and the primary keeps its lease (no failover).
    patch(json!({"postgresql_parameters": {"max_connections": "60"}})).await?;
    let primary = c.primary().await?;
    let epoch = c.status().await?.epoch;
    c.wait_for("pending_restart on every member", WAIT, || async {
        let cl = c.cluster_from(via).await?;
        Ok(cl.members.iter().all(|m| m.pending_restart).then_some(()))
    })
    .await?;
    let ctl = Ctl::for_cluster(c)?;
    let list = ctl.ok(&["list"]).await?;
    ensure!(list.contains("Pending restart"), "ramctrl list: {list}");
    let t = Instant::now();
    let out = ctl
        .ok(&["restart", "--all", "--pending", "--force"])
        .await?;
    eprintln!(
        "FIGURE rolling restart of 3 members: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let order: Vec<&str> = out.lines().filter_map(|l| l.split(':').next()).collect();
    ensure!(
        order.last() == Some(&primary.as_str()),
        "the primary must be restarted last: {out}"
    );
    wait_setting(c, "max_connections", "60").await?;
    c.wait_for("nothing pending", WAIT, || async {
        let cl = c.cluster_from(via).await?;
        Ok(cl.members.iter().all(|m| !m.pending_restart).then_some(()))
    })
    .await?;
    ensure!(
        c.primary().await? == primary,
        "the rolling restart moved the primary"
    );
    ensure!(
        c.status().await?.epoch == epoch,
        "the rolling restart changed the epoch"
    );
    let skipped = ctl
        .ok(&["restart", "--all", "--pending", "--force"])
        .await?;
    ensure!(
        skipped.matches("no restart needed").count() == 3,
        "{skipped}"
    );
    patch(json!({"postgresql_parameters": {"max_connections": null}})).await?;

    // Managed parameters are refused with the setting to use instead.
    let (code, text) = c
        .api_request(
            via,
            Method::PATCH,
            "/config",
            Some(json!({"postgresql_parameters": {"synchronous_commit": "off"}})),
        )
        .await?;
    ensure!(code == 400, "a managed parameter: {code} {text}");
    ensure!(message(code, &text)?.contains("commit_level"), "{text}");

    // Valid for the catalog, refused by the server: the primary rolls it back.
    let before = c.query_text(via, "SHOW timezone").await?;
    patch(json!({"postgresql_parameters": {"timezone": "Mars/Olympus_Mons"}})).await?;
    c.wait_for("the rollback in the history", WAIT, || async {
        let h = c.history().await?;
        Ok(h.iter()
            .any(|e| e.reason.contains("rolled back"))
            .then_some(()))
    })
    .await?;
    c.wait_for(
        "the configuration without the refused value",
        WAIT,
        || async {
            let (_, text) = c.api_request(via, Method::GET, "/config", None).await?;
            Ok(parse(&text)?["postgresql_parameters"]
                .get("timezone")
                .is_none()
                .then_some(()))
        },
    )
    .await?;
    for n in c.names() {
        ensure!(
            c.query_text(&n, "SHOW timezone").await? == before,
            "the timezone changed on {n}"
        );
    }
    Ok(())
}

async fn body(c: &RamdCluster) -> anyhow::Result<()> {
    let ctl = Ctl::for_cluster(c)?;
    let primary = c.primary().await?;
    let replicas: Vec<String> = c.names().into_iter().filter(|n| *n != primary).collect();
    for r in &replicas {
        c.wait_streaming(r, WAIT).await?;
    }
    openapi_and_refusals(c, &primary, &replicas[0]).await?;
    every_read(c, &replicas[1], &primary).await?;
    schedule_and_replace(c, &primary, &replicas[0]).await?;
    parameter_changes(c, &replicas[1]).await?;
    parameter_commands(c, &ctl, &replicas[1]).await?;
    member_commands(c, &ctl, &primary).await?;
    synchronous_commands(c, &ctl, &primary, &replicas).await?;
    promote(c, &primary, &replicas[0]).await?;
    secrets_stay_secret(c).await
}

/// After all of the above (including refused credentials), no agent log, no
/// configuration answer and no history entry contains the API or PostgreSQL passwords.
async fn secrets_stay_secret(c: &RamdCluster) -> anyhow::Result<()> {
    let (_, api_password) = c.credentials()?;
    let mut secrets = vec![api_password];
    for n in c.names() {
        if let Some(p) = c
            .node(&n)?
            .dsn
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("password="))
        {
            secrets.push(p.to_owned());
        }
    }
    let via = c.names().first().cloned().context("a node")?;
    let mut texts = Vec::new();
    for path in [
        "/config",
        "/api/v1/history",
        "/cluster",
        "/patroni",
        "/api/v1/nodes",
    ] {
        texts.push((
            path.to_owned(),
            c.api_request(&via, Method::GET, path, None).await?.1,
        ));
    }
    for n in c.names() {
        texts.push((format!("{n}/ramd.log"), c.log(&n)));
    }
    for (what, text) in &texts {
        for secret in &secrets {
            ensure!(
                !text.contains(secret.as_str()),
                "{what} contains a password"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_surface_end_to_end() -> anyhow::Result<()> {
    let _serial = serial().await;
    let t = Instant::now();
    let mut c = RamdCluster::start(3, None).await?;
    let r = body(&c).await;
    if r.is_err() {
        c.keep_dir();
    }
    eprintln!(
        "FIGURE ramd_api_surface total: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    r
}
