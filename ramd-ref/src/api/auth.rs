//! Who may call the API: HTTP Basic credentials for every state-changing request, an
//! optional client network allow-list, and optionally credentials for reads too.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use ipnet::IpNet;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::Shared;
use super::error::ApiError;
use super::health;

/// A password: never printed, never serialised.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(p: impl Into<String>) -> Self {
        Self(p.into())
    }

    /// The secret, for sending it (client side only).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Access rules of the API.
///
/// - `POST`, `PUT`, `PATCH`, `DELETE`: the client address must be in `allow_networks`
///   (when it is not empty), else 403; then HTTP Basic credentials must match, else 401
///   with `WWW-Authenticate: Basic realm="rale"`. Without a configured password every
///   state-changing request is refused (403): there is no unauthenticated write access.
/// - `GET`, `HEAD`, `OPTIONS`: open when `read_open` (the default); otherwise they need
///   the same credentials, except the Patroni health checks (load balancers probe them).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// User name for HTTP Basic.
    pub username: String,
    /// Password for HTTP Basic; `None` disables every state-changing request.
    pub password: Option<Password>,
    /// Reads need no credentials.
    pub read_open: bool,
    /// Client networks allowed to change state (empty: any).
    pub allow_networks: Vec<IpNet>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            username: "rale".into(),
            password: None,
            read_open: true,
            allow_networks: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// Basic credentials `username`/`password`, reads open, any network.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: Some(Password::new(password)),
            ..Self::default()
        }
    }

    fn network_allowed(&self, ip: Option<IpAddr>) -> bool {
        if self.allow_networks.is_empty() {
            return true;
        }
        // Without a known client address (no ConnectInfo), fail closed.
        let Some(ip) = ip else { return false };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.allow_networks.iter().any(|n| n.contains(&ip))
    }

    /// Checks an `Authorization` header value; returns the user name on success.
    fn check_basic(&self, header_value: Option<&str>) -> Result<String, ApiError> {
        let Some(password) = &self.password else {
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
        let user_ok = user.as_bytes().ct_eq(self.username.as_bytes());
        let pass_ok = pass.as_bytes().ct_eq(password.expose().as_bytes());
        if bool::from(user_ok & pass_ok) {
            Ok(user.to_owned())
        } else {
            Err(unauthorized())
        }
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

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware enforcing [`AuthConfig`].
pub(crate) async fn enforce(
    State(st): State<Arc<Shared>>,
    mut req: Request,
    next: Next,
) -> Response {
    let auth = st.auth.current();
    let method = req.method().clone();
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if is_safe(&method) {
        let exempt = auth.read_open || health::check_for_path(req.uri().path()).is_some();
        if !exempt && let Err(e) = auth.check_basic(authorization.as_deref()) {
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
    if !auth.network_allowed(ip) {
        let who = ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "unknown".into());
        tracing::warn!(client = %who, method = %method, path = req.uri().path(), reason = "client network not allowed", "api request refused");
        return ApiError::forbidden(format!(
            "client address {who} is not allowed to change state"
        ))
        .into_response();
    }
    match auth.check_basic(authorization.as_deref()) {
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
            a.check_basic(Some(&header("admin", "s3cret")))
                .ok()
                .as_deref(),
            Some("admin")
        );
        assert!(a.check_basic(Some(&header("admin", "wrong"))).is_err());
        assert!(a.check_basic(Some(&header("root", "s3cret"))).is_err());
        assert!(a.check_basic(Some("Basic !!!")).is_err());
        assert!(a.check_basic(None).is_err());
        let none = AuthConfig::default();
        let e = none.check_basic(Some(&header("rale", ""))).err();
        assert_eq!(e.map(|e| e.status.as_u16()), Some(403));
    }

    #[test]
    fn shared_rules_are_replaced_for_later_readers() {
        let shared = SharedAuth::new(AuthConfig::basic("admin", "old"));
        let before = shared.current();
        shared.replace(AuthConfig::basic("admin", "new"));
        assert!(before.check_basic(Some(&header("admin", "old"))).is_ok());
        assert!(
            shared
                .current()
                .check_basic(Some(&header("admin", "old")))
                .is_err()
        );
        assert!(
            shared
                .current()
                .check_basic(Some(&header("admin", "new")))
                .is_ok()
        );
    }

    #[test]
    fn password_is_never_printed() {
        let a = AuthConfig::basic("admin", "s3cret");
        assert!(!format!("{a:?}").contains("s3cret"));
    }

    #[test]
    fn networks() {
        let mut a = AuthConfig::basic("u", "p");
        assert!(a.network_allowed(None));
        a.allow_networks = vec![
            "10.0.0.0/8".parse().expect("net"),
            "::1/128".parse().expect("net"),
        ];
        assert!(a.network_allowed(Some("10.1.2.3".parse().expect("ip"))));
        assert!(a.network_allowed(Some("::ffff:10.1.2.3".parse().expect("ip"))));
        assert!(a.network_allowed(Some("::1".parse().expect("ip"))));
        assert!(!a.network_allowed(Some("192.168.1.1".parse().expect("ip"))));
        assert!(!a.network_allowed(None));
    }
}
