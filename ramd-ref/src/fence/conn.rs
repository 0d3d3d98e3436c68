//! A minimal physical-replication client on `postgres-protocol`: startup with
//! `replication=true`, authentication (trust, cleartext, MD5, SCRAM-SHA-256),
//! `IDENTIFY_SYSTEM`, `START_REPLICATION PHYSICAL`, then the `CopyBoth` stream.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::{ErrorResponseBody, Header, Message};
use postgres_protocol::message::frontend;
use rale::{Lsn, Timeline};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::proto::{ServerMessage, StandbyStatus};
use super::{Error, Result};

/// The largest backend message accepted (WAL chunks are at most 128 kB in practice).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Where the server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The Unix socket `<socket_dir>/.s.PGSQL.<port>`.
    Unix {
        /// Socket directory.
        socket_dir: PathBuf,
        /// Port (names the socket file).
        port: u16,
    },
    /// TCP (no TLS).
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix { socket_dir, port } => {
                write!(f, "{}/.s.PGSQL.{port}", socket_dir.display())
            }
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// How to log in.
#[derive(Clone)]
pub struct Credentials {
    /// Role with the `REPLICATION` attribute (or a superuser).
    pub user: String,
    /// Password, when the server asks for one (not needed with `trust`).
    pub password: Option<String>,
    /// Database named in the startup packet (ignored by physical replication).
    pub database: String,
    /// `application_name`: what `synchronous_standby_names` refers to.
    pub application_name: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("application_name", &self.application_name)
            .finish()
    }
}

/// `IDENTIFY_SYSTEM`'s answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemIdentity {
    /// The cluster's system identifier.
    pub system_id: u64,
    /// The server's current timeline.
    pub timeline: Timeline,
    /// The server's current WAL flush position.
    pub xlogpos: Lsn,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

enum Incoming {
    CopyBothResponse,
    Backend(Message),
}

/// One replication connection.
pub struct ReplicationConnection {
    stream: Box<dyn Stream>,
    read_buf: BytesMut,
    write_buf: BytesMut,
}

impl std::fmt::Debug for ReplicationConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationConnection")
            .finish_non_exhaustive()
    }
}

impl ReplicationConnection {
    /// Connects and logs in as a physical-replication client (`replication=true`).
    pub async fn connect(endpoint: &Endpoint, creds: &Credentials) -> Result<Self> {
        let stream: Box<dyn Stream> =
            match endpoint {
                Endpoint::Unix { socket_dir, port } => {
                    let path = socket_dir.join(format!(".s.PGSQL.{port}"));
                    Box::new(tokio::net::UnixStream::connect(&path).await.map_err(|e| {
                        Error::Io {
                            context: format!("connecting to {}", path.display()),
                            source: e,
                        }
                    })?)
                }
                Endpoint::Tcp { host, port } => {
                    let s = tokio::net::TcpStream::connect((host.as_str(), *port))
                        .await
                        .map_err(|e| Error::Io {
                            context: format!("connecting to {host}:{port}"),
                            source: e,
                        })?;
                    let _ = s.set_nodelay(true);
                    Box::new(s)
                }
            };
        let mut conn = Self {
            stream,
            read_buf: BytesMut::with_capacity(16 * 1024),
            write_buf: BytesMut::new(),
        };
        conn.startup(creds).await?;
        Ok(conn)
    }

    async fn startup(&mut self, creds: &Credentials) -> Result<()> {
        let params = [
            ("user", creds.user.as_str()),
            ("database", creds.database.as_str()),
            ("application_name", creds.application_name.as_str()),
            ("replication", "true"),
        ];
        frontend::startup_message(params.iter().copied(), &mut self.write_buf).map_err(proto_io)?;
        self.flush().await?;
        let password = || {
            creds.password.as_deref().ok_or_else(|| {
                Error::Auth("the server asks for a password and none is configured".into())
            })
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            match self.read_backend().await? {
                Message::AuthenticationOk => break,
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password()?.as_bytes(), &mut self.write_buf)
                        .map_err(proto_io)?;
                    self.flush().await?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = postgres_protocol::authentication::md5_hash(
                        creds.user.as_bytes(),
                        password()?.as_bytes(),
                        body.salt(),
                    );
                    frontend::password_message(hash.as_bytes(), &mut self.write_buf)
                        .map_err(proto_io)?;
                    self.flush().await?;
                }
                Message::AuthenticationSasl(body) => {
                    let mut mechanisms = body.mechanisms();
                    let mut offered = Vec::new();
                    while let Some(m) = mechanisms.next().map_err(proto_io)? {
                        offered.push(m.to_string());
                    }
                    if !offered.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(Error::Auth(format!(
                            "no supported SASL mechanism among {offered:?}"
                        )));
                    }
                    let s = ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(
                        SCRAM_SHA_256,
                        s.message(),
                        &mut self.write_buf,
                    )
                    .map_err(proto_io)?;
                    self.flush().await?;
                    scram = Some(s);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| Error::Protocol("SASL continue before SASL start".into()))?;
                    s.update(body.data())
                        .map_err(|e| Error::Auth(format!("SCRAM: {e}")))?;
                    frontend::sasl_response(s.message(), &mut self.write_buf).map_err(proto_io)?;
                    self.flush().await?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| Error::Protocol("SASL final before SASL start".into()))?;
                    s.finish(body.data())
                        .map_err(|e| Error::Auth(format!("SCRAM server signature: {e}")))?;
                }
                Message::ErrorResponse(body) => return Err(server_error(&body)),
                Message::NoticeResponse(_) => {}
                _ => return Err(Error::Auth("unsupported authentication method".into())),
            }
        }
        loop {
            match self.read_backend().await? {
                Message::ReadyForQuery(_) => return Ok(()),
                Message::ErrorResponse(body) => return Err(server_error(&body)),
                Message::ParameterStatus(_)
                | Message::BackendKeyData(_)
                | Message::NoticeResponse(_) => {}
                _ => return Err(Error::Protocol("unexpected message during startup".into())),
            }
        }
    }

    /// `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<SystemIdentity> {
        frontend::query("IDENTIFY_SYSTEM", &mut self.write_buf).map_err(proto_io)?;
        self.flush().await?;
        let mut row: Option<Vec<Option<String>>> = None;
        loop {
            match self.read_backend().await? {
                Message::RowDescription(_)
                | Message::CommandComplete(_)
                | Message::NoticeResponse(_) => {}
                Message::DataRow(body) => {
                    let buf = body.buffer();
                    let mut ranges = body.ranges();
                    let mut cols = Vec::new();
                    while let Some(r) = ranges.next().map_err(proto_io)? {
                        let v =
                            match r {
                                Some(r) => Some(
                                    std::str::from_utf8(buf.get(r).ok_or_else(|| {
                                        Error::Protocol("bad DataRow range".into())
                                    })?)
                                    .map_err(|_| {
                                        Error::Protocol("IDENTIFY_SYSTEM: non-UTF-8 column".into())
                                    })?
                                    .to_string(),
                                ),
                                None => None,
                            };
                        cols.push(v);
                    }
                    row = Some(cols);
                }
                Message::ErrorResponse(body) => {
                    let e = server_error(&body);
                    self.drain_until_ready().await?;
                    return Err(e);
                }
                Message::ReadyForQuery(_) => break,
                _ => {
                    return Err(Error::Protocol(
                        "unexpected message answering IDENTIFY_SYSTEM".into(),
                    ));
                }
            }
        }
        let row = row.ok_or_else(|| Error::Protocol("IDENTIFY_SYSTEM returned no row".into()))?;
        parse_identify_row(&row)
    }

    /// `START_REPLICATION PHYSICAL <start> TIMELINE <timeline>`; on success the
    /// connection is in `CopyBoth` mode.
    pub async fn start_replication(&mut self, start: Lsn, timeline: Timeline) -> Result<()> {
        let sql = format!("START_REPLICATION PHYSICAL {start} TIMELINE {}", timeline.0);
        frontend::query(&sql, &mut self.write_buf).map_err(proto_io)?;
        self.flush().await?;
        loop {
            match self.read_incoming().await? {
                Incoming::CopyBothResponse => return Ok(()),
                Incoming::Backend(Message::NoticeResponse(_)) => {}
                Incoming::Backend(Message::ErrorResponse(body)) => {
                    let e = server_error(&body);
                    self.drain_until_ready().await?;
                    return Err(e);
                }
                Incoming::Backend(_) => {
                    return Err(Error::Protocol(
                        "unexpected answer to START_REPLICATION".into(),
                    ));
                }
            }
        }
    }

    /// The next replication message. Cancel-safe (partial reads stay buffered), so it can
    /// be raced against a timer. `CopyDone` from the server (end of timeline) and errors
    /// end the stream with an error: the caller reconnects.
    pub async fn next_message(&mut self) -> Result<ServerMessage> {
        loop {
            match self.read_incoming().await? {
                Incoming::Backend(Message::CopyData(body)) => {
                    return ServerMessage::decode(body.data());
                }
                Incoming::Backend(Message::NoticeResponse(_) | Message::ParameterStatus(_)) => {}
                Incoming::Backend(Message::CopyDone) => {
                    return Err(Error::StreamEnded(
                        "the server ended the stream (CopyDone)".into(),
                    ));
                }
                Incoming::Backend(Message::ErrorResponse(body)) => return Err(server_error(&body)),
                Incoming::Backend(_) | Incoming::CopyBothResponse => {
                    return Err(Error::Protocol("unexpected message while streaming".into()));
                }
            }
        }
    }

    /// Sends a standby status update.
    pub async fn send_status(&mut self, status: &StandbyStatus) -> Result<()> {
        let body = status.encode();
        frontend::CopyData::new(Bytes::copy_from_slice(&body))
            .map_err(proto_io)?
            .write(&mut self.write_buf);
        self.flush().await
    }

    /// Ends the session politely (`CopyDone`, `Terminate`); errors are ignored.
    pub async fn close(mut self) {
        frontend::copy_done(&mut self.write_buf);
        frontend::terminate(&mut self.write_buf);
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }

    async fn flush(&mut self) -> Result<()> {
        self.stream
            .write_all(&self.write_buf)
            .await
            .map_err(|e| Error::Io {
                context: "writing to the server".into(),
                source: e,
            })?;
        self.write_buf.clear();
        self.stream.flush().await.map_err(|e| Error::Io {
            context: "flushing to the server".into(),
            source: e,
        })
    }

    async fn drain_until_ready(&mut self) -> Result<()> {
        for _ in 0..64 {
            if let Incoming::Backend(Message::ReadyForQuery(_)) = self.read_incoming().await? {
                return Ok(());
            }
        }
        Err(Error::Protocol("no ReadyForQuery after an error".into()))
    }

    async fn read_backend(&mut self) -> Result<Message> {
        match self.read_incoming().await? {
            Incoming::Backend(m) => Ok(m),
            Incoming::CopyBothResponse => {
                Err(Error::Protocol("unexpected CopyBothResponse".into()))
            }
        }
    }

    async fn read_incoming(&mut self) -> Result<Incoming> {
        loop {
            if let Some(header) = Header::parse(&self.read_buf).map_err(proto_io)? {
                let total = usize::try_from(header.len())
                    .unwrap_or(usize::MAX)
                    .saturating_add(1);
                if total > MAX_MESSAGE_BYTES {
                    return Err(Error::Protocol(format!(
                        "backend message of {total} bytes is too large"
                    )));
                }
                if header.tag() == b'W' {
                    if self.read_buf.len() >= total {
                        let _ = self.read_buf.split_to(total);
                        return Ok(Incoming::CopyBothResponse);
                    }
                } else if let Some(m) = Message::parse(&mut self.read_buf).map_err(proto_io)? {
                    return Ok(Incoming::Backend(m));
                }
            }
            let n = self
                .stream
                .read_buf(&mut self.read_buf)
                .await
                .map_err(|e| Error::Io {
                    context: "reading from the server".into(),
                    source: e,
                })?;
            if n == 0 {
                return Err(Error::StreamEnded(
                    "the server closed the connection".into(),
                ));
            }
        }
    }
}

/// Parses `IDENTIFY_SYSTEM`'s row: systemid, timeline, xlogpos, dbname.
pub fn parse_identify_row(row: &[Option<String>]) -> Result<SystemIdentity> {
    let col = |i: usize, what: &str| {
        row.get(i)
            .and_then(|c| c.as_deref())
            .ok_or_else(|| Error::Protocol(format!("IDENTIFY_SYSTEM: missing {what}")))
    };
    let system_id = col(0, "systemid")?
        .parse::<u64>()
        .map_err(|_| Error::Protocol("IDENTIFY_SYSTEM: bad systemid".into()))?;
    let timeline = col(1, "timeline")?
        .parse::<u32>()
        .map_err(|_| Error::Protocol("IDENTIFY_SYSTEM: bad timeline".into()))?;
    let xlogpos = col(2, "xlogpos")?
        .parse::<Lsn>()
        .map_err(|_| Error::Protocol("IDENTIFY_SYSTEM: bad xlogpos".into()))?;
    Ok(SystemIdentity {
        system_id,
        timeline: Timeline(timeline),
        xlogpos,
    })
}

fn proto_io(e: std::io::Error) -> Error {
    Error::Protocol(e.to_string())
}

fn server_error(body: &ErrorResponseBody) -> Error {
    let mut severity = String::new();
    let mut code = String::new();
    let mut message = String::new();
    let mut fields = body.fields();
    while let Ok(Some(f)) = fields.next() {
        match f.type_() {
            b'S' => severity = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            b'C' => code = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            _ => {}
        }
    }
    Error::Server {
        severity,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identify_row_parses() {
        let row = vec![
            Some("7312345678901234567".to_string()),
            Some("3".to_string()),
            Some("0/3000148".to_string()),
            None,
        ];
        let id = parse_identify_row(&row).expect("valid row");
        assert_eq!(
            id,
            SystemIdentity {
                system_id: 7_312_345_678_901_234_567,
                timeline: Timeline(3),
                xlogpos: Lsn(0x300_0148)
            }
        );
    }

    #[test]
    fn identify_row_rejects_garbage() {
        assert!(parse_identify_row(&[]).is_err());
        assert!(
            parse_identify_row(&[Some("x".into()), Some("1".into()), Some("0/0".into())]).is_err()
        );
        assert!(
            parse_identify_row(&[Some("1".into()), Some("1".into()), Some("zz".into())]).is_err()
        );
    }

    #[test]
    fn endpoint_display() {
        let e = Endpoint::Unix {
            socket_dir: "/run/rale".into(),
            port: 5432,
        };
        assert_eq!(e.to_string(), "/run/rale/.s.PGSQL.5432");
    }

    #[test]
    fn credentials_debug_redacts() {
        let c = Credentials {
            user: "u".into(),
            password: Some("s3cret".into()),
            database: "d".into(),
            application_name: "a".into(),
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
