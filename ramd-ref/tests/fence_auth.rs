//! The fence's replication client logs in with every method it supports (trust on the
//! Unix socket, cleartext, MD5 and SCRAM-SHA-256 over TCP), runs `IDENTIFY_SYSTEM` and
//! starts streaming, against a real PostgreSQL 15.
//!
//! Run: `cargo test -p ramd-ref --test fence_auth`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use rale::pg::OsUser;
use rale::{LocalPostgres, LocalPostgresConfig, Lsn, NodeId, PostgresControl, Timeline};
use ramd_ref::fence::proto::{StandbyStatus, pg_now_us};
use ramd_ref::fence::{Credentials, Endpoint, Error, ReplicationConnection};
use tokio_postgres::NoTls;

/// One PostgreSQL 15 primary in a temp dir; stopped (immediate) and removed on drop.
struct Primary {
    pg: LocalPostgres,
    _dir: tempfile::TempDir,
}

impl Drop for Primary {
    fn drop(&mut self) {
        if let Err(e) = self.pg.stop_immediate_blocking() {
            eprintln!("fixture: stopping PostgreSQL failed: {e}");
        }
    }
}

async fn start_primary() -> anyhow::Result<Primary> {
    let dir = tempfile::Builder::new()
        .prefix("rale-fence-auth-")
        .tempdir_in("/tmp")?;
    if let Some(u) = OsUser::for_current_process(None)? {
        nix::unistd::chown(
            dir.path(),
            Some(nix::unistd::Uid::from_raw(u.uid)),
            Some(nix::unistd::Gid::from_raw(u.gid)),
        )?;
    }
    let root: PathBuf = dir.path().into();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cfg = LocalPostgresConfig::new(
        NodeId::new("n1")?,
        root.join("data"),
        root.join("sock"),
        port,
        "auth-test-superuser",
        "auth-test-replication",
    );
    cfg.pg_hba_extra = vec![
        "host replication fence_md5 127.0.0.1/32 md5".into(),
        "host replication fence_clear 127.0.0.1/32 password".into(),
    ];
    let p = Primary {
        pg: LocalPostgres::new(cfg)?,
        _dir: dir,
    };
    p.pg.bootstrap(&Default::default())
        .await
        .context("bootstrap")?;
    Ok(p)
}

fn creds(user: &str, password: Option<&str>) -> Credentials {
    Credentials {
        user: user.into(),
        password: password.map(str::to_string),
        database: "postgres".into(),
        application_name: "rale_fence_auth_test".into(),
    }
}

/// Logs in, identifies the system and starts streaming; returns the timeline.
async fn stream(endpoint: &Endpoint, c: &Credentials) -> Result<Timeline, Error> {
    let mut conn = ReplicationConnection::connect(endpoint, c).await?;
    let id = conn.identify_system().await?;
    assert!(id.xlogpos > Lsn::ZERO, "a running primary has WAL");
    assert!(id.system_id > 0);
    conn.start_replication(id.xlogpos, id.timeline).await?;
    // A status update asking for a reply makes the walsender answer with a keepalive.
    let mut ask = StandbyStatus::acknowledging(Lsn::ZERO, pg_now_us());
    ask.reply_requested = true;
    conn.send_status(&ask).await?;
    let m = tokio::time::timeout(Duration::from_secs(30), conn.next_message())
        .await
        .map_err(|_| Error::Timeout {
            operation: "first message",
            after_ms: 30_000,
        })??;
    assert!(m.received_up_to() > Lsn::ZERO);
    conn.close().await;
    Ok(id.timeline)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_supported_authentication_method_streams() -> anyhow::Result<()> {
    let p = start_primary().await?;
    let cfg = p.pg.config().clone();
    let socket = Endpoint::Unix {
        socket_dir: cfg.socket_dir.clone(),
        port: cfg.port,
    };
    let tcp = Endpoint::Tcp {
        host: "127.0.0.1".into(),
        port: cfg.port,
    };

    // Roles for MD5 and cleartext logins (an MD5-stored password, so `md5` stays MD5).
    let mut pc = tokio_postgres::Config::new();
    pc.host_path(&cfg.socket_dir)
        .port(cfg.port)
        .user(&cfg.superuser)
        .dbname("postgres");
    let (client, conn) = pc.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
        .batch_execute(
            "SET password_encryption = 'md5';
             CREATE ROLE fence_md5 LOGIN REPLICATION PASSWORD 'md5-secret';
             SET password_encryption = 'scram-sha-256';
             CREATE ROLE fence_clear LOGIN REPLICATION PASSWORD 'clear-secret';",
        )
        .await?;

    let tl = stream(&socket, &creds(&cfg.superuser, None))
        .await
        .context("trust over the socket")?;
    assert_eq!(tl, Timeline(1));
    stream(
        &tcp,
        &creds(&cfg.replication_user, Some(&cfg.replication_password)),
    )
    .await
    .context("SCRAM-SHA-256 over TCP")?;
    stream(&tcp, &creds("fence_md5", Some("md5-secret")))
        .await
        .context("MD5 over TCP")?;
    stream(&tcp, &creds("fence_clear", Some("clear-secret")))
        .await
        .context("cleartext over TCP")?;

    // Wrong password and missing password are errors, not hangs.
    match stream(&tcp, &creds(&cfg.replication_user, Some("wrong"))).await {
        Err(Error::Server { code, .. }) => assert_eq!(code, "28P01", "invalid_password"),
        other => bail!("wrong SCRAM password: expected 28P01, got {other:?}"),
    }
    match stream(&tcp, &creds("fence_md5", None)).await {
        Err(Error::Auth(_)) => {}
        other => bail!("missing password: expected an authentication error, got {other:?}"),
    }
    // A bad start position is reported by the server, and the connection stays usable.
    let mut conn = ReplicationConnection::connect(&socket, &creds(&cfg.superuser, None)).await?;
    let id = conn.identify_system().await?;
    match conn
        .start_replication(id.xlogpos, Timeline(id.timeline.0 + 5))
        .await
    {
        Err(Error::Server { .. }) => {}
        other => bail!("unknown timeline: expected a server error, got {other:?}"),
    }
    assert_eq!(conn.identify_system().await?, id);
    Ok(())
}
