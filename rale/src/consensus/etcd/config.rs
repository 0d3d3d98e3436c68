//! [`EtcdConfig`]: where the etcd cluster is, how to authenticate to it and where under
//! its key space this RALE cluster lives; validated before any connection is tried.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::consensus::Peer;
use crate::{Error, Result};

/// TLS material for the connection to etcd, as PEM files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    /// CA certificate(s) that signed the etcd servers' certificates (etcd's
    /// `--trusted-ca-file`). Without it, the server certificate must chain to one of the
    /// roots compiled into the client, which a private etcd CA does not.
    pub ca_file: Option<PathBuf>,
    /// Client certificate, for an etcd started with `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    /// Private key of [`EtcdTls::cert_file`].
    pub key_file: Option<PathBuf>,
    /// Name the server certificate must carry, when it is not the endpoint's host.
    pub server_name: Option<String>,
}

/// How an [`super::EtcdConsensus`] reaches etcd and lays out its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs of the etcd members (`http://10.0.0.1:2379`, `https://…` with
    /// [`EtcdConfig::tls`]). Every request may go to any of them; etcd forwards writes to
    /// its leader and confirms linearizable reads with its quorum.
    pub endpoints: Vec<String>,
    /// The cluster's name, stored under [`EtcdConfig::prefix`] on first use: an agent of
    /// another cluster pointed at the same prefix is refused.
    pub cluster: String,
    /// Key prefix of this cluster, starting and ending with `/` (default
    /// `/rale/<cluster>/`).
    pub prefix: String,
    /// The agents of the cluster: the membership stored on first use (the agents' API
    /// URLs matter for the REST API and the agents' own checks; etcd's membership is
    /// etcd's business).
    pub peers: Vec<Peer>,
    /// TLS to etcd; `None` for plain HTTP.
    pub tls: Option<EtcdTls>,
    /// etcd user (with [`EtcdConfig::password`]) when etcd has authentication enabled.
    pub user: Option<String>,
    /// Password of [`EtcdConfig::user`].
    pub password: Option<String>,
    /// Bound on every single etcd request (connection included); a request that takes
    /// longer fails with [`Error::NoMajority`]. Default 2 s.
    pub request_timeout: Duration,
    /// [`crate::Consensus::has_majority`] is `true` only while a linearizable request
    /// succeeded less than this long ago. Default 3 s.
    pub majority_window: Duration,
    /// How often the background probe reads the state linearizably (keeping
    /// [`EtcdConfig::majority_window`] fresh on an idle agent, and re-reading after a
    /// lost watch). Default 1 s; must be below the window.
    pub probe_interval: Duration,
    /// Compare-and-set attempts of one proposal before it fails with
    /// [`Error::Consensus`] (each conflict means another agent's write went first).
    /// Default 16.
    pub propose_attempts_max: u32,
    /// When set: the system identifier of this node's data directory. A state under the
    /// prefix recording another system identifier is refused at connection.
    pub system_id: Option<u64>,
}

impl EtcdConfig {
    /// A configuration with the defaults: prefix `/rale/<cluster>/`, no TLS, no user.
    pub fn new(endpoints: Vec<String>, cluster: impl Into<String>, peers: Vec<Peer>) -> Self {
        let cluster = cluster.into();
        Self {
            endpoints,
            prefix: default_prefix(&cluster),
            cluster,
            peers,
            tls: None,
            user: None,
            password: None,
            request_timeout: Duration::from_secs(2),
            majority_window: Duration::from_secs(3),
            probe_interval: Duration::from_secs(1),
            propose_attempts_max: 16,
            system_id: None,
        }
    }

    /// Checks everything that can be checked without a connection; the error names the
    /// setting. `ramd --check` and the daemon's start run the same function.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(format!("consensus (etcd): {m}")));
        if self.endpoints.is_empty() {
            return bad("endpoints is empty: list the client URLs of the etcd members".into());
        }
        for e in &self.endpoints {
            validate_endpoint(e, self.tls.is_some())?;
        }
        if self.cluster.trim().is_empty() {
            return bad("the cluster name is empty".into());
        }
        if !self.prefix.starts_with('/') || !self.prefix.ends_with('/') || self.prefix.len() < 2 {
            return bad(format!(
                "prefix {:?} must start and end with '/' and name something, e.g. {:?}",
                self.prefix,
                default_prefix(&self.cluster)
            ));
        }
        if self
            .prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return bad(format!("prefix {:?} contains blanks", self.prefix));
        }
        match (&self.user, &self.password) {
            (Some(u), Some(_)) if !u.is_empty() => {}
            (None, None) => {}
            (Some(_), None) => return bad("user is set without a password".into()),
            (None, Some(_)) => return bad("password is set without a user".into()),
            (Some(_), Some(_)) => return bad("user is empty".into()),
        }
        if let Some(tls) = &self.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return bad("tls: cert_file and key_file go together".into());
            }
            for f in [&tls.ca_file, &tls.cert_file, &tls.key_file]
                .into_iter()
                .flatten()
            {
                if let Err(e) = std::fs::metadata(f) {
                    return Err(Error::io(
                        format!("consensus (etcd): tls file {}", f.display()),
                        e,
                    ));
                }
            }
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout must be above 0".into());
        }
        if self.probe_interval.is_zero() || self.probe_interval >= self.majority_window {
            return bad(format!(
                "probe_interval ({:?}) must be above 0 and below majority_window ({:?})",
                self.probe_interval, self.majority_window
            ));
        }
        if self.propose_attempts_max == 0 {
            return bad("propose_attempts_max must be at least 1".into());
        }
        if self.peers.is_empty() {
            return bad("no peers: list the cluster's agents".into());
        }
        Ok(())
    }

    /// The key of one item of this cluster's layout (see the module documentation).
    pub fn key(&self, item: &str) -> String {
        format!("{}{item}", self.prefix)
    }

    /// The endpoints joined for messages.
    pub fn endpoints_text(&self) -> String {
        self.endpoints.join(",")
    }
}

/// `/rale/<cluster>/`.
pub fn default_prefix(cluster: &str) -> String {
    format!("/rale/{cluster}/")
}

/// An endpoint is `host:port`, `http://host:port` or `https://host:port`; `http://` is
/// refused with TLS (etcd-client would refuse it too, later and less clearly) and
/// `https://` without it.
fn validate_endpoint(e: &str, tls: bool) -> Result<()> {
    let bad = |m: &str| {
        Err(Error::InvalidConfig(format!(
            "consensus (etcd): endpoint {e:?}: {m}"
        )))
    };
    let rest = if let Some(r) = e.strip_prefix("http://") {
        if tls {
            return bad("http:// with tls configured: use https://");
        }
        r
    } else if let Some(r) = e.strip_prefix("https://") {
        if !tls {
            return bad("https:// needs a [consensus.tls] section (at least its ca_file)");
        }
        r
    } else if e.contains("://") {
        return bad("the scheme must be http:// or https://");
    } else {
        e
    };
    let rest = rest.trim_end_matches('/');
    let Some((host, port)) = rest.rsplit_once(':') else {
        return bad("no port (etcd's client port is usually 2379)");
    };
    if host.is_empty() || host.contains('/') || host.chars().any(char::is_whitespace) {
        return bad("no valid host");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => bad("the port is not a number in 1-65535"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;

    fn config() -> EtcdConfig {
        let peer = Peer {
            node: NodeId::new("a").expect("name"),
            raft_id: 1,
            api_url: "http://127.0.0.1:8008".into(),
        };
        EtcdConfig::new(vec!["http://127.0.0.1:2379".into()], "main", vec![peer])
    }

    fn err(c: &EtcdConfig) -> String {
        c.validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn defaults_validate_and_lay_out_keys() {
        let c = config();
        assert!(c.validate().is_ok(), "{}", err(&c));
        assert_eq!(c.key("state"), "/rale/main/state");
    }

    #[test]
    fn bad_settings_are_named() {
        let mut c = config();
        c.endpoints = vec![];
        assert!(err(&c).contains("endpoints is empty"));
        let mut c = config();
        c.endpoints = vec!["https://h:2379".into()];
        assert!(err(&c).contains("needs a [consensus.tls]"));
        let mut c = config();
        c.endpoints = vec!["h".into()];
        assert!(err(&c).contains("no port"));
        let mut c = config();
        c.endpoints = vec!["ftp://h:1".into()];
        assert!(err(&c).contains("scheme"));
        let mut c = config();
        c.endpoints = vec!["h:99999".into()];
        assert!(err(&c).contains("port"));
        let mut c = config();
        c.prefix = "rale".into();
        assert!(err(&c).contains("must start and end with '/'"));
        let mut c = config();
        c.user = Some("u".into());
        assert!(err(&c).contains("without a password"));
        let mut c = config();
        c.tls = Some(EtcdTls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        });
        c.endpoints = vec!["https://h:2379".into()];
        assert!(err(&c).contains("/nonexistent/ca.pem"), "{}", err(&c));
        let mut c = config();
        c.probe_interval = c.majority_window;
        assert!(err(&c).contains("probe_interval"));
    }
}
