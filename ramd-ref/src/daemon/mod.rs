//! `ramd`: wires consensus (the embedded openraft, or etcd with `[consensus] backend = "etcd"`), the local PostgreSQL, the HA loop and the REST API,
//! and handles signals (SIGTERM/SIGINT: clean shutdown; SIGHUP: reload the file, see
//! [`reload`]). Operator actions on the local PostgreSQL (`POST /restart`, …) are in
//! [`actions`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rale::Consensus;
use rale::consensus::Peer;
use rale::consensus::etcd::{EtcdConfig, EtcdConsensus};
use rale::consensus::raft::{RaftConfig, RaftConsensus};
use rale::pg::local::{LocalPostgres, LocalPostgresConfig};
use rale::state::{Command, Operation};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{info, warn};

pub mod actions;
pub mod reload;

use crate::api::{self, ApiState};
use crate::backup::{BackupService, snapshot_members};
use crate::config::{AuthConfig, Backend, NodeConfig};
use crate::ha::{FenceDeadline, wall_ms};
use actions::DaemonActions;
use reload::FileReload;

/// The shared secret for consensus traffic: configured, or derived from the API password.
fn cluster_token(cfg: &NodeConfig) -> Result<Option<String>> {
    if let Some(t) = &cfg.api.cluster_token {
        return Ok(Some(t.clone()));
    }
    Ok(cfg.api.password()?.map(|p| format!("rale-cluster:{p}")))
}

fn local_pg_config(cfg: &NodeConfig) -> Result<LocalPostgresConfig> {
    let pg = &cfg.postgresql;
    let socket_dir = match &pg.socket_dir {
        Some(d) => d.clone(),
        None => cfg.state_dir.join("socket"),
    };
    let mut l = LocalPostgresConfig::new(
        cfg.name.clone(),
        pg.data_dir.clone(),
        socket_dir,
        pg.port,
        pg.superuser_password()?,
        pg.replication_password()?,
    );
    l.bin_dir = pg.bin_dir.clone();
    l.host = pg.host.clone();
    l.os_user = pg.os_user.clone();
    l.superuser = pg.superuser.clone();
    l.replication_user = pg.replication_user.clone();
    l.parameters = pg.parameters.clone();
    l.pg_hba_extra = pg.hba_extra.clone();
    l.peer_hosts = cfg
        .peers
        .iter()
        .filter(|p| p.name != cfg.name)
        .filter_map(|p| reqwest::Url::parse(&p.api_url).ok())
        .filter_map(|u| u.host_str().map(str::to_string))
        .collect();
    l.status_timeout = pg.status_timeout;
    Ok(l)
}

/// Proposes the file's `[bootstrap]` dynamic configuration if the cluster has none yet
/// (compare-and-set on version 0: exactly one node's proposal wins).
async fn seed_dynamic_config(consensus: &dyn Consensus, cfg: &NodeConfig) {
    for _ in 0..300 {
        match consensus.read().await {
            Ok(s) if s.config_version > 0 => return,
            Ok(_) => {
                let cmd = Command {
                    op: Operation::SetConfig {
                        expected_version: Some(0),
                        config: cfg.bootstrap.clone(),
                        actor: format!("bootstrap:{}", cfg.name),
                        reason: format!(
                            "initial dynamic configuration from {}'s [bootstrap] section",
                            cfg.name
                        ),
                    },
                    wall_ms: wall_ms(),
                };
                if consensus.propose(cmd).await.is_ok() {
                    continue;
                }
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    warn!("could not seed the dynamic configuration within 30 s; continuing with the defaults");
}

/// Everything `ramd` builds from its configuration file before it starts anything, with
/// every rule the start applies already checked. `ramd --check` runs exactly this.
pub struct Prepared {
    /// Consensus settings (validated: peers distinct by name, id and endpoint).
    pub raft: RaftConfig,
    /// With `[consensus] backend = "etcd"`: the etcd connection (validated; the Raft
    /// settings above are then unused).
    pub etcd: Option<EtcdConfig>,
    /// The local PostgreSQL control (binaries found, OS user resolved).
    pub pg: LocalPostgres,
    /// What the permanent-failure checks found ([`LocalPostgres::check_permanent`]).
    pub pg_summary: String,
    /// The API's TLS certificate and key, loaded.
    pub tls: Option<crate::tls::ApiTls>,
    /// The API's access rules.
    pub auth: AuthConfig,
    /// Backups, when configured.
    pub backup: Option<BackupService>,
}

/// Builds and checks everything the start needs from `cfg` (see [`Prepared`]); the
/// error names the rule that is broken. Creates nothing but the backup job directory.
pub fn prepare(cfg: &NodeConfig) -> Result<Prepared> {
    cfg.validate()?;
    // A joining node is not an initial voter: without itself in the initial membership
    // it waits to be added rather than founding a cluster of its own.
    let peers: Vec<Peer> = cfg
        .peers
        .iter()
        .filter(|p| !(cfg.consensus.join && p.name == cfg.name))
        .map(Peer::from)
        .collect();
    // Every configured peer, the joining node included, must be a distinct agent.
    Peer::check_distinct(&cfg.peers.iter().map(Peer::from).collect::<Vec<_>>())?;
    let mut raft = RaftConfig::new(
        cfg.name.clone(),
        cfg.raft_id(),
        cfg.api.url(),
        cfg.state_dir.join("raft"),
        peers,
    );
    raft.heartbeat_interval = cfg.consensus.heartbeat_interval;
    raft.election_timeout_min = cfg.consensus.election_timeout_min;
    raft.election_timeout_max = cfg.consensus.election_timeout_max;
    raft.auth_token = cluster_token(cfg)?;
    raft.tls_ca = cfg.api.tls_ca.clone();
    raft.validate().context("[consensus] and [[peers]]")?;
    let etcd = match cfg.consensus.backend {
        Backend::Raft => None,
        Backend::Etcd => Some(
            cfg.consensus
                .etcd_config(cfg.peers.iter().map(Peer::from).collect())
                .context("[consensus]")?,
        ),
    };
    // TLS files are checked before anything starts: a bad file is a clear startup error.
    let tls = crate::tls::from_api_config(&cfg.api)?;
    let auth = cfg.api.auth()?;
    // Backups first: their tool's WAL-archiving settings go into the managed
    // configuration (`rale.conf`) unless `[postgresql.parameters]` sets them.
    let backup = match &cfg.backup {
        Some(bcfg) => Some(
            BackupService::from_config(bcfg, cfg.name.clone()).context("configuring backups")?,
        ),
        None => None,
    };
    let mut pg_cfg = local_pg_config(cfg)?;
    if let Some(service) = &backup {
        service.add_server_parameters(&mut pg_cfg.parameters);
    }
    let pg = LocalPostgres::new(pg_cfg).context("configuring PostgreSQL control")?;
    let pg_summary = pg.check_permanent().context("[postgresql]")?;
    // With etcd, another cluster's state under the prefix is refused by its system
    // identifier too (the embedded Raft's state lives in state_dir, beside the data).
    let etcd = etcd.map(|mut e| {
        e.system_id = pg.system_id();
        e
    });
    Ok(Prepared {
        raft,
        etcd,
        pg,
        pg_summary,
        tls,
        auth,
        backup,
    })
}

/// Runs the agent until SIGTERM/SIGINT, or until a permanent failure (then the error is
/// a [`PermanentFailure`] that says what is wrong).
pub async fn run(cfg: NodeConfig, config_path: PathBuf) -> Result<()> {
    let Prepared {
        raft: raft_cfg,
        etcd: etcd_cfg,
        pg,
        pg_summary,
        tls,
        auth,
        backup,
    } = prepare(&cfg).map_err(|e| PermanentFailure(format!("{e:#}")))?;
    info!(node = %cfg.name, "{pg_summary}");
    // Orphaned PostgreSQL processes (a killed postmaster, its backends) become ours to
    // reap, so a restart in place never waits for a slow PID 1 (`rale::pg::adopt_orphans`).
    if !rale::pg::adopt_orphans() {
        tracing::debug!("not a child subreaper: exited postmasters are left to PID 1");
    }
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("creating state_dir {}", cfg.state_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("binding the API to {}", cfg.api.listen))?;
    let (raft, consensus): (Option<RaftConsensus>, Arc<dyn Consensus>) = match etcd_cfg {
        None => {
            let raft = RaftConsensus::start(raft_cfg)
                .await
                .context("starting consensus")?;
            (Some(raft.clone()), Arc::new(raft))
        }
        Some(etcd_cfg) => (None, Arc::new(connect_etcd(etcd_cfg).await?)),
    };
    let pg = Arc::new(pg);

    let id = cfg.identity();
    let (identity_tx, identity_rx) = watch::channel(id.clone());
    let (snap_tx, snap_rx) = watch::channel(Arc::new(crate::ha::initial_snapshot(&id)));
    let fence = FenceDeadline::default();

    let pg_lock = Arc::new(tokio::sync::Mutex::new(()));
    let callbacks =
        crate::callbacks::Callbacks::new(cfg.callbacks.clone(), "rale", cfg.name.as_str());
    let fence_snapshots = snap_rx.clone();
    let backup_view = snapshot_members(snap_rx.clone());
    let mut api_state = ApiState::new(snap_rx, consensus.clone(), auth, "rale");
    let file_reload = FileReload::new(
        config_path.clone(),
        cfg.clone(),
        identity_tx.clone(),
        api_state.auth.clone(),
        tls.clone(),
    );
    if let Some(service) = backup {
        service.prepare_when_primary(
            cfg.name.clone(),
            backup_view.clone(),
            Duration::from_secs(1),
        );
        service.start_schedules(cfg.name.clone(), backup_view, Duration::from_secs(1));
        api_state.backup = Some(Arc::new(service));
    }
    api_state.actions = Some(Arc::new(DaemonActions {
        node: cfg.name.clone(),
        pg: pg.clone(),
        consensus: consensus.clone(),
        pg_lock: pg_lock.clone(),
        file_reload: file_reload.clone(),
        scheduled: Default::default(),
        callbacks: callbacks.clone(),
    }));
    // Workload metrics: a task and a connection of their own, never in the HA loop's path.
    let (workload_shutdown_tx, workload_shutdown_rx) = watch::channel(false);
    let (workload_task, workload_view) = crate::workload::spawn(
        crate::workload::Target::local(pg.config()),
        cfg.metrics.clone(),
        workload_shutdown_rx.clone(),
    );
    // Warns about slots retaining more WAL than slots_max_retained_wal_bytes.
    let slot_watch_task = crate::workload::slots::spawn_watch(
        workload_view.clone(),
        consensus.subscribe(),
        workload_shutdown_rx,
    );
    api_state.workload = Some(workload_view);
    let mut app = api::router(api_state);
    // Failsafe mode: the route other members' primaries ask for confirmations on, and
    // the client this agent asks them with (used only while failsafe_mode is on and
    // consensus does not answer).
    let failsafe_gate = Arc::new(rale::agent::FailsafeGate::default());
    let failsafe_client = crate::failsafe::HttpFailsafeClient::new(
        cluster_token(&cfg)?,
        cfg.api.tls_ca.as_deref(),
        Duration::from_secs(2),
    )?;
    app = app.merge(crate::failsafe::router(
        failsafe_gate.clone(),
        cluster_token(&cfg)?,
    ));
    if let Some(raft) = &raft {
        app = app.merge(rale::consensus::raft::router(raft.clone()));
    }
    let server = tokio::spawn(async move {
        if let Err(e) = crate::tls::serve(listener, app, tls).await {
            warn!(error = %e, "API server stopped");
        }
    });
    info!(node = %cfg.name, api = %cfg.api.url(), "ramd started");

    seed_dynamic_config(consensus.as_ref(), &cfg).await;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // The commit fence: a synchronous standby of our own primary that acknowledges WAL
    // only under the lease (docs/fence.md).
    let (fence_task, _fence_status) = crate::fence::spawn(
        crate::fence::FenceConfig::from_local(pg.config()),
        fence.clone(),
        fence_snapshots,
        shutdown_rx.clone(),
    );
    let agent = crate::ha::agent(
        identity_rx,
        pg,
        consensus.clone(),
        snap_tx,
        fence,
        pg_lock,
        Some(callbacks),
        cfg.state_dir.join("postgresql_parameters.json"),
        (failsafe_gate, Arc::new(failsafe_client)),
    );
    let mut ha_task = tokio::spawn(agent.run(shutdown_rx));

    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let mut fatal = None;
    let mut consensus_stopped = None;
    // The embedded Raft core stopping for good ends the agent (etcd has no such core
    // here: its client reconnects by itself).
    let raft_for_watch = raft.clone();
    let raft_stopped = async move {
        match &raft_for_watch {
            Some(r) => r.stopped().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(raft_stopped);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            why = &mut raft_stopped => {
                consensus_stopped = Some(why);
                break;
            }
            _ = hup.recv() => if let Err(e) = file_reload.apply() {
                warn!(error = %format!("{e:#}"), "reload failed; keeping the running configuration");
            },
            ended = &mut ha_task => {
                fatal = Some(match ended {
                    Ok(Err(why)) => why.to_string(),
                    Ok(Ok(())) => "the HA loop stopped".to_string(),
                    Err(e) => format!("the HA loop panicked: {e}"),
                });
                break;
            }
        }
    }
    if let Some(why) = consensus_stopped {
        // Like a crash: PostgreSQL keeps running (a primary's commits wait for the fence,
        // which stops with this process), and the agent started again adopts it.
        tracing::error!(node = %cfg.name, reason = %why,
            "consensus stopped for good (a full or failing disk under state_dir?); exiting so \
             that the service manager starts the agent again, PostgreSQL left running");
        ha_task.abort();
        let _ = shutdown_tx.send(true);
        let _ = workload_shutdown_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), fence_task).await;
        if let Some(raft) = &raft {
            let _ = raft.shutdown().await;
        }
        server.abort();
        workload_task.abort();
        slot_watch_task.abort();
        return Err(ConsensusStopped(why).into());
    }
    info!(node = %cfg.name, "shutting down");
    let _ = shutdown_tx.send(true);
    let _ = workload_shutdown_tx.send(true);
    if fatal.is_none()
        && tokio::time::timeout(Duration::from_secs(60), &mut ha_task)
            .await
            .is_err()
    {
        warn!("HA loop did not stop within 60 s");
    }
    if tokio::time::timeout(Duration::from_secs(5), fence_task)
        .await
        .is_err()
    {
        warn!("commit fence did not stop within 5 s");
    }
    if let Some(raft) = raft
        && let Err(e) = raft.shutdown().await
    {
        warn!(error = %e, "consensus shutdown");
    }
    server.abort();
    workload_task.abort();
    slot_watch_task.abort();
    match fatal {
        Some(why) => Err(PermanentFailure(why).into()),
        None => Ok(()),
    }
}

/// The local consensus core stopped for good (a storage error): `ramd` exits with
/// [`ConsensusStopped::EXIT_CODE`] so that the service manager restarts it, leaving
/// PostgreSQL running.
#[derive(Debug, thiserror::Error)]
#[error("consensus stopped: {0}")]
pub struct ConsensusStopped(pub String);

impl ConsensusStopped {
    /// `EX_IOERR` (sysexits.h): an input/output error; restarted by the systemd unit.
    pub const EXIT_CODE: i32 = 74;
}

/// Connects to etcd, retrying while it cannot be reached (one warning line per attempt
/// that names the endpoints and the cause); refused credentials or certificates, another
/// cluster under the prefix and invalid settings end the start with a
/// [`PermanentFailure`] that names the endpoints and the cause.
async fn connect_etcd(cfg: EtcdConfig) -> Result<EtcdConsensus> {
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        match EtcdConsensus::connect(cfg.clone()).await {
            Ok(c) => {
                info!(
                    endpoints = %cfg.endpoints_text(),
                    prefix = %cfg.prefix,
                    attempt,
                    "consensus: connected to etcd"
                );
                return Ok(c);
            }
            Err(e @ (rale::Error::NoMajority(_) | rale::Error::Timeout { .. })) => {
                warn!(
                    endpoints = %cfg.endpoints_text(),
                    attempt,
                    error = %e,
                    "consensus: etcd unreachable; retrying in 1 s"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(PermanentFailure(format!(
                    "consensus: etcd at {}: {e}",
                    cfg.endpoints_text()
                ))
                .into());
            }
        }
    }
}

/// A failure that restarting the agent cannot cure (a configuration the start refuses,
/// a data directory the PostgreSQL user cannot use, missing binaries): `ramd` exits with
/// [`PermanentFailure::EXIT_CODE`], and the systemd unit does not restart it
/// (`RestartPreventExitStatus`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PermanentFailure(pub String);

impl PermanentFailure {
    /// `EX_CONFIG` (sysexits.h): configuration error.
    pub const EXIT_CODE: i32 = 78;
}
