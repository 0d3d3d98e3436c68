//! Re-reading the configuration file in a running agent (SIGHUP and `POST /reload`).

use std::path::PathBuf;

use anyhow::Result;
use rale::decide::NodeIdentity;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::SharedAuth;
use crate::config::{NodeConfig, Password};
use crate::tls::ApiTls;

/// What re-reading the configuration file changes in a running agent (SIGHUP and
/// `POST /reload`): the tags, the API's access rules (user, password or password file,
/// `read_open`, `allow_networks`) and the TLS certificate and key (same paths, renewed
/// contents).
#[derive(Clone)]
pub struct FileReload {
    path: PathBuf,
    /// The configuration the agent started with (what needs a restart is compared to it).
    running: NodeConfig,
    identity: watch::Sender<NodeIdentity>,
    auth: SharedAuth,
    tls: Option<ApiTls>,
}

impl FileReload {
    /// Reloads of the file at `path`, which the agent started with as `running`: they
    /// publish the new identity on `identity` and replace the rules in `auth` and the
    /// certificate of `tls`.
    pub fn new(
        path: PathBuf,
        running: NodeConfig,
        identity: watch::Sender<NodeIdentity>,
        auth: SharedAuth,
        tls: Option<ApiTls>,
    ) -> Self {
        Self {
            path,
            running,
            identity,
            auth,
            tls,
        }
    }

    /// Re-reads the file and applies it. A file that does not load changes nothing (the
    /// error says why); a part that cannot be applied (password file unreadable, renewed
    /// certificate broken) is logged and keeps its running value.
    pub fn apply(&self) -> Result<()> {
        let new = NodeConfig::load(&self.path)?;
        let current = &self.running;
        if new.name != current.name
            || new.api.listen != current.api.listen
            || new.peers.len() != current.peers.len()
            || new.api.tls_cert != current.api.tls_cert
            || new.api.tls_key != current.api.tls_key
        {
            warn!(
                "reload: name, listen address, peers, and turning TLS on or off or moving its \
                 files need a restart; those stay as they are"
            );
        }
        self.identity.send_replace(new.identity());
        match new.api.auth() {
            Ok(auth) => {
                let old = self.auth.current();
                let rotated = old.password.as_ref().map(Password::expose)
                    != auth.password.as_ref().map(Password::expose);
                if rotated && current.api.cluster_token.is_none() {
                    warn!(
                        "reload: the API password changed and the consensus token is derived \
                         from it: this agent keeps its old token until it restarts, and members \
                         must agree on it; set [api] cluster_token on every member before \
                         rotating passwords"
                    );
                }
                self.auth.replace(auth);
            }
            Err(e) => warn!(error = %format!("{e:#}"), "reload: API access rules not changed"),
        }
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => {
                    info!(cert = %tls.files().0.display(), "reload: TLS certificate reloaded")
                }
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "reload: keeping the TLS certificate in use")
                }
            }
        }
        info!(path = %self.path.display(), "configuration file reloaded");
        Ok(())
    }
}
