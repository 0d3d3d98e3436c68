//! Who may call the API, as configured: the access rules [`ApiConfig::auth`] builds from
//! the `[api]` section, and the [`Password`] they hold. The API enforces them
//! (`ramd_ref::api::auth`).
//!
//! [`ApiConfig::auth`]: super::ApiConfig::auth

use std::fmt;

use ipnet::IpNet;
use serde::Deserialize;

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
    /// Web origins (`https://console.example:8443`) whose pages may change state through
    /// a browser. Empty (the default): every cross-origin browser request that changes
    /// state is refused (403), so a web page cannot replay cached credentials.
    pub allow_origins: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            username: "rale".into(),
            password: None,
            read_open: true,
            allow_networks: Vec::new(),
            allow_origins: Vec::new(),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_never_printed() {
        let a = AuthConfig::basic("admin", "s3cret");
        assert!(!format!("{a:?}").contains("s3cret"));
    }
}
