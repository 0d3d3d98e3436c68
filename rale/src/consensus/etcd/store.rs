//! The etcd client side: connection options (TLS, user), error mapping, value encoding.

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::EtcdConfig;
use crate::{Error, Result};

/// Connects to etcd with `config`'s TLS and credentials, bounded by its request timeout.
/// The channel connects lazily: without a user, an unreachable etcd shows on the first
/// request; with one, the authentication at connection already needs an answer.
pub(super) async fn connect(config: &EtcdConfig) -> Result<Client> {
    let mut options = ConnectOptions::new()
        .with_timeout(config.request_timeout)
        .with_connect_timeout(config.request_timeout)
        .with_require_leader(true);
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options
            .with_user(user.clone(), password.clone())
            .with_auto_token_refresh(true);
    }
    if let Some(tls) = &config.tls {
        let read = |p: &std::path::Path| {
            std::fs::read(p)
                .map_err(|e| Error::io(format!("consensus (etcd): tls file {}", p.display()), e))
        };
        let mut t = TlsOptions::new();
        if let Some(ca) = &tls.ca_file {
            t = t.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            t = t.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(name) = &tls.server_name {
            t = t.domain_name(name.clone());
        }
        options = options.with_tls(t);
    }
    match tokio::time::timeout(
        config.request_timeout,
        Client::connect(&config.endpoints, Some(options)),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(map_error(config, "connect", e)),
        Err(_) => Err(Error::NoMajority(format!(
            "etcd connect at {}: no answer within {} ms",
            config.endpoints_text(),
            config.request_timeout.as_millis()
        ))),
    }
}

/// Sorts an etcd-client error into ours: refused credentials or certificates are
/// [`Error::AccessDenied`]; no answer, no leader or a transport failure is
/// [`Error::NoMajority`] (callers retry); anything else is [`Error::Consensus`].
pub(super) fn map_error(config: &EtcdConfig, what: &str, e: etcd_client::Error) -> Error {
    use tonic::Code;
    let endpoints = config.endpoints_text();
    let denied = |cause: String| Error::AccessDenied {
        endpoints: endpoints.clone(),
        cause,
    };
    match &e {
        etcd_client::Error::GRpcStatus(s) => match s.code() {
            Code::Unauthenticated | Code::PermissionDenied => {
                denied(format!("{what}: {}", s.message()))
            }
            // etcd answers a wrong user or password with InvalidArgument.
            _ if looks_like_auth(s.message()) => denied(format!("{what}: {}", s.message())),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
                let text = format!("{s}");
                if looks_like_tls(&text) {
                    denied(format!("{what}: {text}"))
                } else {
                    Error::NoMajority(format!("etcd {what} at {endpoints}: {}", s.message()))
                }
            }
            _ => Error::Consensus(format!("etcd {what} at {endpoints}: {s}")),
        },
        etcd_client::Error::TransportError(t) => {
            let text = format!("{t}: {:?}", std::error::Error::source(t));
            if looks_like_tls(&text) {
                denied(format!("{what}: {text}"))
            } else {
                Error::NoMajority(format!("etcd {what} at {endpoints}: {text}"))
            }
        }
        etcd_client::Error::InvalidArgs(m) | etcd_client::Error::EndpointError(m) => {
            Error::InvalidConfig(format!("consensus (etcd): {what}: {m}"))
        }
        etcd_client::Error::InvalidUri(u) => {
            Error::InvalidConfig(format!("consensus (etcd): endpoint: {u}"))
        }
        _ => Error::Consensus(format!("etcd {what} at {endpoints}: {e}")),
    }
}

fn looks_like_auth(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "authentication failed",
        "invalid user id or password",
        "permission denied",
        "user name is empty",
        "invalid auth token",
    ]
    .iter()
    .any(|w| m.contains(w))
}

fn looks_like_tls(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "certificate",
        "handshake",
        "tls",
        "unknownissuer",
        "bad record",
    ]
    .iter()
    .any(|w| t.contains(w))
}

pub(super) fn to_json<T: Serialize>(what: &str, v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Consensus(format!("encoding the {what}: {e}")))
}

pub(super) fn from_json<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::Consensus(format!(
            "etcd key {key} holds something RALE cannot read ({e}); \
             is another program using this prefix?"
        ))
    })
}

/// `<dir><seq>`, zero-padded so that key order is sequence order.
pub(super) fn history_key(dir: &str, seq: u64) -> String {
    format!("{dir}{seq:020}")
}
