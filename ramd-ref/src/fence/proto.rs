//! The streaming-replication sub-messages carried in `CopyData` (PostgreSQL protocol,
//! "Streaming Replication Protocol"): what the server sends (`XLogData`, primary
//! keepalive) and what the fence answers (standby status update). Pure encoding and
//! decoding, no I/O.

use rale::Lsn;

use super::{Error, Result};

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 00:00:00 UTC).
pub const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// A message the server sends inside `CopyData` during `START_REPLICATION`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMessage {
    /// `w`: a chunk of WAL. Only its position and length matter to the fence.
    XLogData {
        /// Where the chunk starts.
        start: Lsn,
        /// The server's current end of WAL.
        wal_end: Lsn,
        /// Server clock at sending, µs since 2000-01-01.
        send_time_us: i64,
        /// Length of the WAL chunk in bytes (the bytes themselves are dropped).
        data_len_bytes: u64,
    },
    /// `k`: the server's keepalive.
    Keepalive {
        /// The server's end of WAL sent so far.
        wal_end: Lsn,
        /// Server clock at sending, µs since 2000-01-01.
        send_time_us: i64,
        /// Whether the server asks for an immediate status update.
        reply_requested: bool,
    },
}

impl ServerMessage {
    /// The position up to which this message proves WAL was received: the end of an
    /// `XLogData` chunk, or a keepalive's `wal_end` (everything before it was sent ahead
    /// of the keepalive on the same stream).
    pub fn received_up_to(&self) -> Lsn {
        match self {
            ServerMessage::XLogData {
                start,
                data_len_bytes,
                ..
            } => Lsn(start.0.saturating_add(*data_len_bytes)),
            ServerMessage::Keepalive { wal_end, .. } => *wal_end,
        }
    }

    /// Decodes the body of one `CopyData` message.
    pub fn decode(body: &[u8]) -> Result<Self> {
        let (&tag, rest) = body
            .split_first()
            .ok_or_else(|| Error::Protocol("empty CopyData message".into()))?;
        match tag {
            b'w' => {
                let mut r = Reader(rest);
                let start = Lsn(r.u64("XLogData start")?);
                let wal_end = Lsn(r.u64("XLogData walEnd")?);
                let send_time_us = r.i64("XLogData sendTime")?;
                let data_len_bytes = u64::try_from(r.0.len()).unwrap_or(u64::MAX);
                Ok(ServerMessage::XLogData {
                    start,
                    wal_end,
                    send_time_us,
                    data_len_bytes,
                })
            }
            b'k' => {
                let mut r = Reader(rest);
                let wal_end = Lsn(r.u64("keepalive walEnd")?);
                let send_time_us = r.i64("keepalive sendTime")?;
                let reply = r.u8("keepalive reply flag")?;
                Ok(ServerMessage::Keepalive {
                    wal_end,
                    send_time_us,
                    reply_requested: reply != 0,
                })
            }
            other => Err(Error::Protocol(format!(
                "unexpected CopyData message type {:?}",
                other as char
            ))),
        }
    }

    /// Encodes the message as the server would (tests and the round-trip property); an
    /// `XLogData` gets `data_len_bytes` zero bytes of payload.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ServerMessage::XLogData {
                start,
                wal_end,
                send_time_us,
                data_len_bytes,
            } => {
                let len = usize::try_from(*data_len_bytes).unwrap_or(0);
                let mut out = Vec::with_capacity(25 + len);
                out.push(b'w');
                out.extend_from_slice(&start.0.to_be_bytes());
                out.extend_from_slice(&wal_end.0.to_be_bytes());
                out.extend_from_slice(&send_time_us.to_be_bytes());
                out.resize(25 + len, 0);
                out
            }
            ServerMessage::Keepalive {
                wal_end,
                send_time_us,
                reply_requested,
            } => {
                let mut out = Vec::with_capacity(18);
                out.push(b'k');
                out.extend_from_slice(&wal_end.0.to_be_bytes());
                out.extend_from_slice(&send_time_us.to_be_bytes());
                out.push(u8::from(*reply_requested));
                out
            }
        }
    }
}

/// `r`: the standby status update the fence sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandbyStatus {
    /// Last WAL position received ("written").
    pub write: Lsn,
    /// Last WAL position flushed: what `synchronous_commit = on` waits for.
    pub flush: Lsn,
    /// Last WAL position applied: what `remote_apply` waits for.
    pub apply: Lsn,
    /// Client clock, µs since 2000-01-01.
    pub client_time_us: i64,
    /// Asks the server to answer at once.
    pub reply_requested: bool,
}

impl StandbyStatus {
    /// The fence's status: every position equal to `ack` (the fence holds no data, so
    /// "written", "flushed" and "applied" only mean "acknowledged under the lease").
    pub fn acknowledging(ack: Lsn, client_time_us: i64) -> Self {
        Self {
            write: ack,
            flush: ack,
            apply: ack,
            client_time_us,
            reply_requested: false,
        }
    }

    /// The 34-byte `CopyData` body.
    pub fn encode(&self) -> [u8; 34] {
        let mut out = [0u8; 34];
        out[0] = b'r';
        out[1..9].copy_from_slice(&self.write.0.to_be_bytes());
        out[9..17].copy_from_slice(&self.flush.0.to_be_bytes());
        out[17..25].copy_from_slice(&self.apply.0.to_be_bytes());
        out[25..33].copy_from_slice(&self.client_time_us.to_be_bytes());
        out[33] = u8::from(self.reply_requested);
        out
    }

    /// Decodes a status update (tests; the server side of the exchange).
    pub fn decode(body: &[u8]) -> Result<Self> {
        let (&tag, rest) = body
            .split_first()
            .ok_or_else(|| Error::Protocol("empty status update".into()))?;
        if tag != b'r' {
            return Err(Error::Protocol(format!(
                "not a status update: {:?}",
                tag as char
            )));
        }
        let mut r = Reader(rest);
        let s = Self {
            write: Lsn(r.u64("write")?),
            flush: Lsn(r.u64("flush")?),
            apply: Lsn(r.u64("apply")?),
            client_time_us: r.i64("clock")?,
            reply_requested: r.u8("reply flag")? != 0,
        };
        if !r.0.is_empty() {
            return Err(Error::Protocol(
                "trailing bytes after a status update".into(),
            ));
        }
        Ok(s)
    }
}

/// The wall clock as PostgreSQL timestamps it: µs since 2000-01-01 UTC.
pub fn pg_now_us() -> i64 {
    let unix_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    unix_us.saturating_sub(PG_EPOCH_OFFSET_US)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        if self.0.len() < N {
            return Err(Error::Protocol(format!(
                "truncated message: missing {what}"
            )));
        }
        let (head, tail) = self.0.split_at(N);
        self.0 = tail;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        Ok(out)
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        self.take::<8>(what).map(u64::from_be_bytes)
    }
    fn i64(&mut self, what: &str) -> Result<i64> {
        self.take::<8>(what).map(i64::from_be_bytes)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        self.take::<1>(what).map(|b| b[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_xlogdata_by_hand() {
        let mut body = vec![b'w'];
        body.extend_from_slice(&0x1_0000_0028u64.to_be_bytes());
        body.extend_from_slice(&0x1_0000_0100u64.to_be_bytes());
        body.extend_from_slice(&42i64.to_be_bytes());
        body.extend_from_slice(&[7u8; 16]);
        let m = ServerMessage::decode(&body).expect("valid");
        assert_eq!(
            m,
            ServerMessage::XLogData {
                start: Lsn(0x1_0000_0028),
                wal_end: Lsn(0x1_0000_0100),
                send_time_us: 42,
                data_len_bytes: 16
            }
        );
        assert_eq!(m.received_up_to(), Lsn(0x1_0000_0038));
    }

    #[test]
    fn decodes_keepalive_by_hand() {
        let mut body = vec![b'k'];
        body.extend_from_slice(&0x3_0000_0000u64.to_be_bytes());
        body.extend_from_slice(&(-5i64).to_be_bytes());
        body.push(1);
        let m = ServerMessage::decode(&body).expect("valid");
        assert_eq!(
            m,
            ServerMessage::Keepalive {
                wal_end: Lsn(0x3_0000_0000),
                send_time_us: -5,
                reply_requested: true
            }
        );
        assert_eq!(m.received_up_to(), Lsn(0x3_0000_0000));
    }

    #[test]
    fn rejects_truncated_and_unknown() {
        assert!(ServerMessage::decode(&[]).is_err());
        assert!(ServerMessage::decode(b"w1234").is_err());
        assert!(ServerMessage::decode(&[b'k'; 17]).is_err());
        assert!(ServerMessage::decode(b"x").is_err());
    }

    #[test]
    fn status_update_layout() {
        let s = StandbyStatus {
            write: Lsn(0x0102_0304_0506_0708),
            flush: Lsn(1),
            apply: Lsn(2),
            client_time_us: 3,
            reply_requested: true,
        };
        let b = s.encode();
        assert_eq!(b[0], b'r');
        assert_eq!(&b[1..9], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[9..17], &1u64.to_be_bytes());
        assert_eq!(&b[17..25], &2u64.to_be_bytes());
        assert_eq!(&b[25..33], &3i64.to_be_bytes());
        assert_eq!(b[33], 1);
        assert_eq!(StandbyStatus::decode(&b).expect("valid"), s);
    }

    #[test]
    fn acknowledging_sets_every_position() {
        let s = StandbyStatus::acknowledging(Lsn(99), 7);
        assert_eq!(
            (s.write, s.flush, s.apply, s.reply_requested),
            (Lsn(99), Lsn(99), Lsn(99), false)
        );
    }

    #[test]
    fn pg_clock_is_after_2020() {
        // 2020-01-01 is 631_152_000 s after 2000-01-01.
        assert!(pg_now_us() > 631_152_000_000_000);
    }

    fn server_message() -> impl Strategy<Value = ServerMessage> {
        prop_oneof![
            (any::<u64>(), any::<u64>(), any::<i64>(), 0u64..512).prop_map(|(s, e, t, n)| {
                ServerMessage::XLogData {
                    start: Lsn(s),
                    wal_end: Lsn(e),
                    send_time_us: t,
                    data_len_bytes: n,
                }
            }),
            (any::<u64>(), any::<i64>(), any::<bool>()).prop_map(|(e, t, r)| {
                ServerMessage::Keepalive {
                    wal_end: Lsn(e),
                    send_time_us: t,
                    reply_requested: r,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn server_messages_round_trip(m in server_message()) {
            prop_assert_eq!(ServerMessage::decode(&m.encode()).expect("own encoding decodes"), m);
        }

        #[test]
        fn status_updates_round_trip(w: u64, f: u64, a: u64, t: i64, r: bool) {
            let s = StandbyStatus { write: Lsn(w), flush: Lsn(f), apply: Lsn(a), client_time_us: t, reply_requested: r };
            prop_assert_eq!(StandbyStatus::decode(&s.encode()).expect("own encoding decodes"), s);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ServerMessage::decode(&b);
            let _ = StandbyStatus::decode(&b);
        }
    }
}
