//! Domain newtypes: node identity, WAL positions, timelines, lease epochs, roles, tags and
//! the virtual monotonic clock the decision core reads time from.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Longest node name we accept (PostgreSQL's `application_name` limit is 63 bytes).
pub const NODE_NAME_LEN_MAX: usize = 63;

/// The name of a cluster member, e.g. `node1`.
///
/// Names are 1–63 characters of `[A-Za-z0-9_.-]`, so they are safe to embed in
/// `application_name`, replication slot names (after [`NodeId::slot_name`]) and URLs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    /// Validates and wraps a node name.
    pub fn new(name: impl Into<String>) -> crate::Result<Self> {
        let name = name.into();
        let valid_chars = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if name.is_empty() || name.len() > NODE_NAME_LEN_MAX || !valid_chars {
            return Err(Error::InvalidNodeName(name));
        }
        Ok(Self(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The physical replication slot this member streams from: lower case, `-` and `.`
    /// replaced by `_` (slot names allow only `[a-z0-9_]`).
    pub fn slot_name(&self) -> String {
        self.0
            .chars()
            .map(|c| match c {
                'A'..='Z' => c.to_ascii_lowercase(),
                '-' | '.' => '_',
                other => other,
            })
            .collect()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NodeId {
    type Err = Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<String> for NodeId {
    type Error = Error;
    fn try_from(s: String) -> crate::Result<Self> {
        Self::new(s)
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.0
    }
}

/// A WAL position (PostgreSQL `pg_lsn`), printed and parsed as `X/Y` in hexadecimal.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Lsn(pub u64);

impl Lsn {
    /// The invalid/zero position `0/0`.
    pub const ZERO: Lsn = Lsn(0);

    /// Bytes from `other` up to `self`, zero when `other` is ahead.
    pub fn bytes_after(self, other: Lsn) -> u64 {
        self.0.saturating_sub(other.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        let bad = || Error::InvalidLsn(s.chars().take(64).collect());
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let valid =
            |p: &str| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid(hi) || !valid(lo) {
            return Err(bad());
        }
        let hi = u64::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn((hi << 32) | lo))
    }
}

impl TryFrom<String> for Lsn {
    type Error = Error;
    fn try_from(s: String) -> crate::Result<Self> {
        s.parse()
    }
}

impl From<Lsn> for String {
    fn from(l: Lsn) -> String {
        l.to_string()
    }
}

/// A PostgreSQL timeline id (`1` for a freshly initialised cluster, +1 per promotion).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timeline(pub u32);

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Timeline {
    type Err = Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        s.trim()
            .parse::<u32>()
            .map(Timeline)
            .map_err(|_| Error::Parse(format!("invalid timeline {s:?}")))
    }
}

/// The epoch of the primary lease: +1 every time the lease changes hands.
///
/// Epoch `0` means "never held". A node acts as primary only for the epoch it holds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The next epoch.
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A reading of a node-local monotonic clock, in milliseconds.
///
/// Readings from different nodes are never compared: a node only subtracts its own
/// readings. In `ramd` this is `CLOCK_BOOTTIME`; in the simulator, a drifting virtual clock.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + d`, saturating.
    pub fn plus(self, d_ms: u64) -> Millis {
        Millis(self.0.saturating_add(d_ms))
    }
    /// Milliseconds elapsed from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// The role a member plays, as observed from its PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Accepts writes (not in recovery).
    Primary,
    /// In recovery, streaming or replaying WAL.
    Replica,
    /// PostgreSQL is not running or could not be reached.
    Unknown,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Unknown => "unknown",
        })
    }
}

/// Per-member tags, with Patroni's vocabulary and meaning.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tags {
    /// Never promote this member.
    pub nofailover: bool,
    /// Preference among equally caught-up candidates; higher wins, `0` means never.
    /// `None` behaves as the default priority `1`.
    pub failover_priority: Option<u32>,
    /// Never put this member in the synchronous set.
    pub nosync: bool,
    /// Load balancers should not send reads here (`GET /replica` answers 503).
    pub noloadbalance: bool,
}

impl Tags {
    /// Whether this member may ever become primary by failover or switchover.
    pub fn can_be_primary(&self) -> bool {
        !self.nofailover && self.failover_priority != Some(0)
    }

    /// The effective failover priority (default 1, 0 when `nofailover`).
    pub fn priority(&self) -> u32 {
        if self.nofailover {
            0
        } else {
            self.failover_priority.unwrap_or(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lsn_prints_like_postgres() {
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert_eq!(Lsn(0x1_0000_00A0).to_string(), "1/A0");
        assert_eq!("16/B374D848".parse::<Lsn>().ok(), Some(Lsn(0x16_B374_D848)));
        assert!("16/".parse::<Lsn>().is_err());
        assert!("G/1".parse::<Lsn>().is_err());
        assert!("1/123456789".parse::<Lsn>().is_err());
        assert!(Lsn(5) < Lsn(0x1_0000_0000));
    }

    #[test]
    fn node_names_are_validated() {
        assert!(NodeId::new("node-1.a_b").is_ok());
        assert!(NodeId::new("").is_err());
        assert!(NodeId::new("a b").is_err());
        assert!(NodeId::new("x".repeat(64)).is_err());
        assert_eq!(
            NodeId::new("Node-1.a")
                .map(|n| n.slot_name())
                .ok()
                .as_deref(),
            Some("node_1_a")
        );
    }

    #[test]
    fn tags_priority() {
        let t = Tags {
            failover_priority: Some(0),
            ..Tags::default()
        };
        assert!(!t.can_be_primary());
        assert!(Tags::default().can_be_primary());
        assert_eq!(
            Tags {
                nofailover: true,
                ..Tags::default()
            }
            .priority(),
            0
        );
    }

    proptest! {
        #[test]
        fn lsn_round_trips(v in any::<u64>()) {
            let text = Lsn(v).to_string();
            prop_assert_eq!(text.parse::<Lsn>().ok(), Some(Lsn(v)));
        }

        #[test]
        fn lsn_parser_never_panics(s in ".{0,40}") {
            let _ = s.parse::<Lsn>();
        }
    }
}
