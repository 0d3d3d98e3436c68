//! In-process stand-ins for reconcile tests: a Kubernetes API server that keeps objects
//! in memory (GET, list with a label selector, POST, DELETE, server-side apply as a
//! deep merge, JSON merge patch, the status subresource) and stand-in agents answering
//! the few REST calls the operator makes. Neither is a full implementation: the API
//! server has no watch, no field ownership (apply merges maps and replaces lists), no
//! validation and no controllers (the test plays the StatefulSet controller and the
//! kubelet); the agents are a table the test edits.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

/// Objects by (resource, namespace, name).
#[derive(Default)]
pub struct Store {
    pub objects: BTreeMap<(String, String, String), Value>,
    pub version: u64,
    /// Every write, as `METHOD resource/name`.
    pub writes: Vec<String>,
    /// Every (resource or resource/subresource, RBAC verb) requested.
    pub verbs: std::collections::BTreeSet<(String, String)>,
}

pub type Shared = Arc<Mutex<Store>>;

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    (
        StatusCode::from_u16(code).expect("status code"),
        axum::Json(body),
    )
        .into_response()
}

/// RFC 7386 JSON merge patch (`null` removes).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn selector_matches(obj: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => obj["metadata"]["labels"][k].as_str() == Some(v),
            None => false,
        })
}

fn kind_of(resource: &str) -> (&'static str, &'static str) {
    match resource {
        "secrets" => ("v1", "Secret"),
        "configmaps" => ("v1", "ConfigMap"),
        "services" => ("v1", "Service"),
        "pods" => ("v1", "Pod"),
        "statefulsets" => ("apps/v1", "StatefulSet"),
        "poddisruptionbudgets" => ("policy/v1", "PodDisruptionBudget"),
        "raleclusters" => ("rale.dev/v1alpha1", "RaleCluster"),
        _ => ("v1", "Unknown"),
    }
}

async fn api(
    State(store): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let segs: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let Some(i) = segs.iter().position(|s| *s == "namespaces") else {
        return cluster_wide(&store, &method, &uri, &segs);
    };
    let ns = segs.get(i + 1).copied().unwrap_or_default().to_string();
    let resource = segs.get(i + 2).copied().unwrap_or_default().to_string();
    let name = segs.get(i + 3).map(|s| s.to_string());
    let sub = segs.get(i + 4).map(|s| s.to_string());
    let mut st = store.lock().expect("store");
    st.version += 1;
    let rv = st.version;
    let verb = match (&method, &name) {
        (&Method::GET, None) => "list",
        (&Method::GET, Some(_)) => "get",
        (&Method::POST, _) => "create",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, _) => "delete",
        _ => "other",
    };
    let rbac_resource = match &sub {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.clone(),
    };
    st.verbs.insert((rbac_resource, verb.to_string()));
    let query: BTreeMap<String, String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.replace("%3D", "=")
                    .replace("%2C", ",")
                    .replace("%2F", "/"),
            )
        })
        .collect();
    let (api_version, kind) = kind_of(&resource);
    match (method, name) {
        (Method::GET, None) => {
            let sel = query.get("labelSelector").cloned().unwrap_or_default();
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|((r, n, _), o)| *r == resource && *n == ns && selector_matches(o, &sel))
                .map(|(_, o)| o.clone())
                .collect();
            axum::Json(
                json!({"apiVersion": api_version, "kind": format!("{kind}List"),
                "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
            )
            .into_response()
        }
        (Method::GET, Some(n)) => {
            match st.objects.get(&(resource.clone(), ns.clone(), n.clone())) {
                Some(o) => axum::Json(o.clone()).into_response(),
                None => status(404, "NotFound", &format!("{resource} \"{n}\" not found")),
            }
        }
        (Method::POST, None) => {
            let Ok(mut obj) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "body is not JSON");
            };
            let n = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let key = (resource.clone(), ns.clone(), n.clone());
            if st.objects.contains_key(&key) {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("{resource} \"{n}\" already exists"),
                );
            }
            if let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
                let data: serde_json::Map<String, Value> = sd
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| {
                        let b = base64::engine::general_purpose::STANDARD
                            .encode(v.as_str().unwrap_or_default());
                        (k.clone(), Value::String(b))
                    })
                    .collect();
                obj["data"] = Value::Object(data);
            }
            obj["apiVersion"] = api_version.into();
            obj["kind"] = kind.into();
            obj["metadata"]["namespace"] = ns.clone().into();
            obj["metadata"]["resourceVersion"] = rv.to_string().into();
            obj["metadata"]["uid"] = format!("uid-{rv}").into();
            st.writes.push(format!("POST {resource}/{n}"));
            st.objects.insert(key, obj.clone());
            (StatusCode::CREATED, axum::Json(obj)).into_response()
        }
        (Method::PATCH, Some(n)) => {
            let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "body is not JSON");
            };
            let ctype = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let key = (resource.clone(), ns.clone(), n.clone());
            let apply = ctype.starts_with("application/apply-patch");
            if apply && query.get("fieldManager").is_none_or(|m| m.is_empty()) {
                return status(422, "Invalid", "server-side apply needs a fieldManager");
            }
            let existing = st.objects.get(&key).cloned();
            let mut obj = match (existing.clone(), apply) {
                (Some(o), _) => o,
                (None, true) => json!({"metadata": {"uid": format!("uid-{rv}")}}),
                (None, false) => {
                    return status(404, "NotFound", &format!("{resource} \"{n}\" not found"));
                }
            };
            if sub.as_deref() == Some("status") {
                merge_patch(&mut obj["status"], &patch["status"]);
            } else {
                // Apply: a deep merge (maps merged, lists replaced); merge patch: RFC 7386.
                merge_patch(&mut obj, &patch);
            }
            obj["apiVersion"] = api_version.into();
            obj["kind"] = kind.into();
            obj["metadata"]["namespace"] = ns.clone().into();
            obj["metadata"]["name"] = n.clone().into();
            let changed = {
                let mut a = obj.clone();
                let mut b = existing.clone().unwrap_or(Value::Null);
                for v in [&mut a, &mut b] {
                    if let Some(m) = v["metadata"].as_object_mut() {
                        m.remove("resourceVersion");
                    }
                }
                a != b
            };
            if changed {
                obj["metadata"]["resourceVersion"] = rv.to_string().into();
                st.writes.push(format!(
                    "PATCH {resource}/{n}{}",
                    sub.map(|s| format!("/{s}")).unwrap_or_default()
                ));
                st.objects.insert(key, obj.clone());
            }
            axum::Json(obj).into_response()
        }
        (Method::DELETE, Some(n)) => {
            match st
                .objects
                .remove(&(resource.clone(), ns.clone(), n.clone()))
            {
                Some(o) => {
                    st.writes.push(format!("DELETE {resource}/{n}"));
                    axum::Json(o).into_response()
                }
                None => status(404, "NotFound", &format!("{resource} \"{n}\" not found")),
            }
        }
        (m, n) => status(405, "MethodNotAllowed", &format!("{m} {resource} {n:?}")),
    }
}

/// `GET /api/v1/<resource>` or `/apis/<group>/<version>/<resource>`: a list over every
/// namespace, or (`watch=true`) a watch that stays open and never reports an event (the
/// controller's requeues drive it).
fn cluster_wide(store: &Shared, method: &Method, uri: &Uri, segs: &[&str]) -> Response {
    if *method != Method::GET {
        return status(405, "MethodNotAllowed", &format!("{method} {uri}"));
    }
    let resource = segs.last().copied().unwrap_or_default().to_string();
    let (api_version, kind) = kind_of(&resource);
    let watch = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    store.lock().expect("store").verbs.insert((
        resource.clone(),
        if watch { "watch" } else { "list" }.to_string(),
    ));
    if watch {
        let never = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
        return Response::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from_stream(never))
            .expect("watch response");
    }
    let mut st = store.lock().expect("store");
    st.version += 1;
    let items: Vec<Value> = st
        .objects
        .iter()
        .filter(|((r, _, _), _)| *r == resource)
        .map(|(_, o)| o.clone())
        .collect();
    axum::Json(
        json!({"apiVersion": api_version, "kind": format!("{kind}List"),
        "metadata": {"resourceVersion": st.version.to_string()}, "items": items}),
    )
    .into_response()
}

/// The stand-in agents: who leads, who is a member, the dynamic parameters.
#[derive(Default)]
pub struct Agents {
    pub leader: String,
    /// (name, raft id) of the consensus members.
    pub members: Vec<(String, u64)>,
    pub parameters: BTreeMap<String, Value>,
    pub synchronous: Value,
    /// Every state-changing call, as `METHOD path body`.
    pub calls: Vec<String>,
}

pub type SharedAgents = Arc<Mutex<Agents>>;

async fn agent(
    State(agents): State<SharedAgents>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.get("authorization").is_none() {
        return (StatusCode::UNAUTHORIZED, "credentials required").into_response();
    }
    let path = uri.path();
    // /<host:port>/<rest>
    let rest = path
        .trim_start_matches('/')
        .split_once('/')
        .map(|(_, r)| format!("/{r}"))
        .unwrap_or_default();
    let mut a = agents.lock().expect("agents");
    let body_text = String::from_utf8_lossy(&body).to_string();
    match (method.clone(), rest.as_str()) {
        (Method::GET, "/cluster") => {
            let members: Vec<Value> = a
                .members
                .iter()
                .map(|(n, _)| {
                    let leader = *n == a.leader;
                    json!({"name": n, "role": if leader {"leader"} else {"replica"},
                        "state": if leader {"running"} else {"streaming"}, "api_url": "x", "host": "h",
                        "port": 5432, "timeline": 1, "lag": if leader { Value::Null } else { json!(0) }})
                })
                .collect();
            axum::Json(json!({"scope": "pg", "members": members})).into_response()
        }
        (Method::GET, "/api/v1/members") => {
            let voters: Vec<Value> = a
                .members
                .iter()
                .map(|(n, id)| json!({"name": n, "raft_id": id, "api_url": "x"}))
                .collect();
            axum::Json(json!({"voters": voters, "learners": [], "term": 1})).into_response()
        }
        (Method::GET, "/config") => {
            axum::Json(json!({"postgresql_parameters": a.parameters, "synchronous": a.synchronous}))
                .into_response()
        }
        (Method::PATCH, "/config") => {
            a.calls.push(format!("PATCH /config {body_text}"));
            let patch: Value = serde_json::from_str(&body_text).unwrap_or_default();
            let mut cur = serde_json::to_value(&a.parameters).unwrap_or_default();
            merge_patch(&mut cur, &patch["postgresql_parameters"]);
            a.parameters = serde_json::from_value(cur).unwrap_or_default();
            if !patch["synchronous"].is_null() {
                let mut sync = a.synchronous.clone();
                merge_patch(&mut sync, &patch["synchronous"]);
                a.synchronous = sync;
            }
            axum::Json(json!({})).into_response()
        }
        (Method::POST, "/api/v1/members") => {
            a.calls.push(format!("POST /api/v1/members {body_text}"));
            let v: Value = serde_json::from_str(&body_text).unwrap_or_default();
            a.members.push((
                v["name"].as_str().unwrap_or_default().into(),
                v["raft_id"].as_u64().unwrap_or_default(),
            ));
            axum::Json(json!({"ok": true})).into_response()
        }
        (Method::POST, "/switchover") => {
            a.calls.push(format!("POST /switchover {body_text}"));
            let v: Value = serde_json::from_str(&body_text).unwrap_or_default();
            a.leader = v["candidate"].as_str().unwrap_or_default().into();
            axum::Json(json!({"ok": true})).into_response()
        }
        (m, p) if p.starts_with("/api/v1/members/") && m == Method::DELETE => {
            a.calls.push(format!("DELETE {p}"));
            let n = p.trim_start_matches("/api/v1/members/").to_string();
            a.members.retain(|(m, _)| *m != n);
            axum::Json(json!({"ok": true})).into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            format!("stand-in agent: no {method} {rest}"),
        )
            .into_response(),
    }
}

/// Starts both stand-ins on loopback ports: (API server address, agents' address).
pub async fn start(store: Shared, agents: SharedAgents) -> (SocketAddr, SocketAddr) {
    let api_app = Router::new().fallback(api).with_state(store);
    let agent_app = Router::new().fallback(agent).with_state(agents);
    let l1 = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let l2 = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (a1, a2) = (
        l1.local_addr().expect("addr"),
        l2.local_addr().expect("addr"),
    );
    tokio::spawn(async move { axum::serve(l1, api_app).await.expect("stand-in API server") });
    tokio::spawn(async move { axum::serve(l2, agent_app).await.expect("stand-in agents") });
    (a1, a2)
}
