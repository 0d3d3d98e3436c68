//! Who may call the API: HTTP Basic credentials for every state-changing request, an
//! optional client network allow-list, and optionally credentials for reads too. The
//! rules are an [`AuthConfig`]; this module enforces them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use subtle::ConstantTimeEq;

use super::Shared;
use super::error::ApiError;
use super::health;
use crate::config::AuthConfig;

/// Whether `auth` lets a client at `ip` change state.
fn network_allowed(auth: &AuthConfig, ip: Option<IpAddr>) -> bool {
    if auth.allow_networks.is_empty() {
        return true;
    }
    // Without a known client address (no ConnectInfo), fail closed.
    let Some(ip) = ip else { return false };
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    auth.allow_networks.iter().any(|n| n.contains(&ip))
}

/// Checks an `Authorization` header value against `auth`; returns the user name on
/// success.
fn check_basic(auth: &AuthConfig, header_value: Option<&str>) -> Result<String, ApiError> {
    let Some(password) = &auth.password else {
        return Err(ApiError::forbidden(
            "this agent has no API password configured: state-changing requests are disabled",
        ));
    };
    let unauthorized = || ApiError::unauthorized("valid HTTP Basic credentials are required");
    let encoded = header_value
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .ok_or_else(unauthorized)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| unauthorized())?;
    let text = String::from_utf8(decoded).map_err(|_| unauthorized())?;
    let (user, pass) = text.split_once(':').ok_or_else(unauthorized)?;
    let user_ok = user.as_bytes().ct_eq(auth.username.as_bytes());
    let pass_ok = pass.as_bytes().ct_eq(password.expose().as_bytes());
    if bool::from(user_ok & pass_ok) {
        Ok(user.to_owned())
    } else {
        Err(unauthorized())
    }
}

/// The access rules in force, shared between the API and whoever reloads them (the
/// daemon, on SIGHUP): requests already past the check keep the rules they were checked
/// with, new requests see the new ones.
#[derive(Clone, Debug)]
pub struct SharedAuth(Arc<std::sync::RwLock<Arc<AuthConfig>>>);

impl SharedAuth {
    /// Rules that start as `auth`.
    pub fn new(auth: AuthConfig) -> Self {
        Self(Arc::new(std::sync::RwLock::new(Arc::new(auth))))
    }

    /// The rules now.
    pub fn current(&self) -> Arc<AuthConfig> {
        // A writer cannot panic half-way through replacing an `Arc`: poisoning leaves a
        // whole value behind, which is safe to keep using.
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the rules for every later request.
    pub fn replace(&self, auth: AuthConfig) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(auth);
    }
}

impl From<AuthConfig> for SharedAuth {
    fn from(auth: AuthConfig) -> Self {
        Self::new(auth)
    }
}

/// The authenticated caller, as an extension on the request (`"anonymous"` for open reads).
#[derive(Clone, Debug)]
pub struct Caller(pub String);

/// The caller's name for the history (`"anonymous"` without one).
pub(crate) fn caller_name(caller: Option<axum::extract::Extension<Caller>>) -> String {
    caller
        .map(|axum::extract::Extension(c)| c.0)
        .unwrap_or_else(|| "anonymous".into())
}

pub(crate) fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// What [`enforce`] (and [`forged_request`]) can answer for `method` on `path` before the
/// handler runs, with why: the OpenAPI document lists these on every operation, and a test
/// drives the router to check that nothing else comes out of this layer.
pub(crate) fn refusals(
    method: &Method,
    path: &str,
    has_body: bool,
) -> Vec<(axum::http::StatusCode, &'static str)> {
    use axum::http::StatusCode;
    if is_safe(method) {
        if health::check_for_path(path).is_some() {
            return Vec::new();
        }
        return vec![(
            StatusCode::UNAUTHORIZED,
            "Credentials missing or wrong (only when [api] read_open = false)",
        )];
    }
    let mut out = vec![
        (
            StatusCode::UNAUTHORIZED,
            "Credentials missing or wrong (WWW-Authenticate: Basic)",
        ),
        (
            StatusCode::FORBIDDEN,
            "Refused: client network not in [api] allow_networks, no password configured, \
             or a cross-origin browser request",
        ),
    ];
    if has_body {
        out.push((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The body is not Content-Type: application/json",
        ));
    }
    out
}

/// Why a state-changing request that a web page could have forged is refused, if it is.
///
/// - A browser marks cross-origin requests (`Origin` other than the agent's own host,
///   `Sec-Fetch-Site: cross-site` or `same-site`): refused (403) unless the origin is in
///   `allow_origins`.
/// - A body must be `Content-Type: application/json` (415 otherwise): `text/plain`, form
///   and multipart bodies are what pages can send without a CORS preflight. A body with
///   no `Content-Type` is accepted only from a client that shows no browser marker at all
///   (`patronictl` sends its JSON that way); browsers always send `Origin` with such
///   requests.
pub(crate) fn forged_request(
    auth: &AuthConfig,
    method: &Method,
    headers: &axum::http::HeaderMap,
    body_hint: u64,
) -> Option<ApiError> {
    if is_safe(method) {
        return None;
    }
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let origin = text("origin");
    let fetch_site = text("sec-fetch-site").map(str::to_ascii_lowercase);
    let allowed = origin.is_some_and(|o| {
        auth.allow_origins
            .iter()
            .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(o))
    });
    let same_host = origin.is_some_and(|o| {
        let host = text("host").unwrap_or_default();
        o.split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'))
            .is_some_and(|h| !host.is_empty() && h.eq_ignore_ascii_case(host))
    });
    let cross_site = matches!(fetch_site.as_deref(), Some("cross-site" | "same-site"));
    if !allowed && ((origin.is_some() && !same_host) || cross_site) {
        return Some(ApiError::forbidden(format!(
            "cross-origin request from {} refused: state changes from web pages need [api] allow_origins",
            origin.unwrap_or("another site")
        )));
    }
    let has_body = body_hint > 0
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
        || headers.contains_key(header::TRANSFER_ENCODING);
    if !has_body {
        return None;
    }
    match text("content-type") {
        Some(ct) => {
            let essence = ct.split(';').next().unwrap_or_default().trim();
            if essence.eq_ignore_ascii_case("application/json") {
                None
            } else {
                Some(ApiError::new(
                    axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "request bodies must be Content-Type: application/json, not {essence:?} \
                         (with curl: -H 'Content-Type: application/json')"
                    ),
                ))
            }
        }
        None if origin.is_none() && fetch_site.is_none() && text("sec-fetch-mode").is_none() => {
            None
        }
        None => Some(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request bodies must be Content-Type: application/json",
        )),
    }
}

/// The middleware enforcing [`AuthConfig`].
pub(crate) async fn enforce(
    State(st): State<Arc<Shared>>,
    mut req: Request,
    next: Next,
) -> Response {
    let auth = st.auth.current();
    let method = req.method().clone();
    let body_hint = axum::body::HttpBody::size_hint(req.body()).lower();
    if let Some(e) = forged_request(&auth, &method, req.headers(), body_hint) {
        tracing::warn!(method = %method, path = req.uri().path(),
            origin = ?req.headers().get("origin"), status = e.status.as_u16(),
            reason = %e.message, "api request refused");
        return e.into_response();
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if is_safe(&method) {
        let exempt = auth.read_open || health::check_for_path(req.uri().path()).is_some();
        if !exempt && let Err(e) = check_basic(&auth, authorization.as_deref()) {
            return e.into_response();
        }
        req.extensions_mut().insert(Caller("anonymous".into()));
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    // The extractor also finds the test-time `MockConnectInfo`.
    let ip = ConnectInfo::<SocketAddr>::from_request_parts(&mut parts, &())
        .await
        .ok()
        .map(|ConnectInfo(addr)| addr.ip());
    let mut req = Request::from_parts(parts, body);
    if !network_allowed(&auth, ip) {
        let who = ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "unknown".into());
        tracing::warn!(client = %who, method = %method, path = req.uri().path(), reason = "client network not allowed", "api request refused");
        return ApiError::forbidden(format!(
            "client address {who} is not allowed to change state"
        ))
        .into_response();
    }
    match check_basic(&auth, authorization.as_deref()) {
        Ok(user) => {
            req.extensions_mut().insert(Caller(user));
            next.run(req).await
        }
        Err(e) => {
            tracing::warn!(method = %method, path = req.uri().path(), reason = %e.message, "api request refused");
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, pass: &str) -> String {
        let raw = format!("{user}:{pass}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    #[test]
    fn basic_credentials() {
        let a = AuthConfig::basic("admin", "s3cret");
        assert_eq!(
            check_basic(&a, Some(&header("admin", "s3cret")))
                .ok()
                .as_deref(),
            Some("admin")
        );
        assert!(check_basic(&a, Some(&header("admin", "wrong"))).is_err());
        assert!(check_basic(&a, Some(&header("root", "s3cret"))).is_err());
        assert!(check_basic(&a, Some("Basic !!!")).is_err());
        assert!(check_basic(&a, None).is_err());
        let none = AuthConfig::default();
        let e = check_basic(&none, Some(&header("rale", ""))).err();
        assert_eq!(e.map(|e| e.status.as_u16()), Some(403));
    }

    #[test]
    fn shared_rules_are_replaced_for_later_readers() {
        let shared = SharedAuth::new(AuthConfig::basic("admin", "old"));
        let before = shared.current();
        shared.replace(AuthConfig::basic("admin", "new"));
        assert!(check_basic(&before, Some(&header("admin", "old"))).is_ok());
        assert!(check_basic(&shared.current(), Some(&header("admin", "old"))).is_err());
        assert!(check_basic(&shared.current(), Some(&header("admin", "new"))).is_ok());
    }

    fn headers(list: &[(&'static str, &str)]) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        for (k, v) in list {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn forgeable_requests_are_refused() {
        let a = AuthConfig::basic("u", "p");
        let post = Method::POST;
        let status = |h: &[(&'static str, &str)]| {
            forged_request(&a, &post, &headers(h), 0).map(|e| e.status.as_u16())
        };
        // JSON from any non-browser client, with or without the header.
        assert_eq!(
            status(&[
                ("content-type", "application/json"),
                ("content-length", "2")
            ]),
            None
        );
        assert_eq!(
            status(&[
                ("content-type", "Application/JSON; charset=utf-8"),
                ("content-length", "2")
            ]),
            None
        );
        assert_eq!(
            status(&[("content-length", "2")]),
            None,
            "patronictl sends no Content-Type"
        );
        assert_eq!(status(&[]), None, "no body");
        // What a page can send without a preflight.
        assert_eq!(
            status(&[("content-type", "text/plain"), ("content-length", "2")]),
            Some(415)
        );
        assert_eq!(
            status(&[
                ("content-type", "application/x-www-form-urlencoded"),
                ("content-length", "2")
            ]),
            Some(415)
        );
        assert_eq!(
            status(&[("content-length", "2"), ("sec-fetch-mode", "no-cors")]),
            Some(415),
            "a browser body without a type"
        );
        // Cross-origin browsers, whatever the body.
        assert_eq!(
            status(&[
                ("origin", "https://evil.example"),
                ("host", "10.0.0.1:8008"),
                ("content-type", "application/json"),
                ("content-length", "2")
            ]),
            Some(403)
        );
        assert_eq!(status(&[("sec-fetch-site", "cross-site")]), Some(403));
        assert_eq!(
            status(&[
                ("origin", "http://10.0.0.1:8008"),
                ("host", "10.0.0.1:8008"),
                ("sec-fetch-site", "same-origin"),
                ("content-type", "application/json"),
                ("content-length", "2")
            ]),
            None
        );
        let mut allowed = a.clone();
        allowed.allow_origins = vec!["https://console.example".into()];
        assert!(
            forged_request(
                &allowed,
                &post,
                &headers(&[
                    ("origin", "https://console.example"),
                    ("sec-fetch-site", "cross-site"),
                    ("content-type", "application/json"),
                    ("content-length", "2")
                ]),
                0
            )
            .is_none()
        );
        assert!(
            forged_request(
                &a,
                &Method::GET,
                &headers(&[("origin", "https://evil.example")]),
                0
            )
            .is_none()
        );
        // A body known from its size (no Content-Length header) counts.
        assert_eq!(
            forged_request(&a, &post, &headers(&[("content-type", "text/plain")]), 5)
                .map(|e| e.status.as_u16()),
            Some(415)
        );
    }

    #[test]
    fn networks() {
        let mut a = AuthConfig::basic("u", "p");
        assert!(network_allowed(&a, None));
        a.allow_networks = vec![
            "10.0.0.0/8".parse().expect("net"),
            "::1/128".parse().expect("net"),
        ];
        assert!(network_allowed(&a, Some("10.1.2.3".parse().expect("ip"))));
        assert!(network_allowed(
            &a,
            Some("::ffff:10.1.2.3".parse().expect("ip"))
        ));
        assert!(network_allowed(&a, Some("::1".parse().expect("ip"))));
        assert!(!network_allowed(
            &a,
            Some("192.168.1.1".parse().expect("ip"))
        ));
        assert!(!network_allowed(&a, None));
    }
}
