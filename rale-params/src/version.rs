//! PostgreSQL major versions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A PostgreSQL major version supported by the catalog (13 to 17).
///
/// Parses `"15"`, `"15.4"`, `"150004"` (`server_version_num`) and
/// `"15.4 (Debian 15.4-1)"` (`server_version`); prints as `15`. Serialized as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct PgMajor(u8);

impl PgMajor {
    /// Oldest major in the catalog.
    pub const MIN: PgMajor = PgMajor(13);
    /// Newest major in the catalog.
    pub const MAX: PgMajor = PgMajor(17);
    /// The major whose `pg_settings` the base table was generated from.
    pub const BASE: PgMajor = PgMajor(15);

    /// A supported major, or [`Error::UnsupportedVersion`].
    pub fn new(major: u32) -> Result<Self> {
        if (13..=17).contains(&major) {
            Ok(PgMajor(major as u8))
        } else {
            Err(Error::UnsupportedVersion(major.to_string()))
        }
    }

    /// The major number (e.g. 15).
    pub fn get(self) -> u32 {
        u32::from(self.0)
    }

    /// Every supported major, oldest first.
    pub fn all() -> impl DoubleEndedIterator<Item = PgMajor> + Clone {
        (13u8..=17).map(PgMajor)
    }
}

impl TryFrom<u32> for PgMajor {
    type Error = Error;
    fn try_from(v: u32) -> Result<Self> {
        PgMajor::new(v)
    }
}

impl From<PgMajor> for u32 {
    fn from(v: PgMajor) -> u32 {
        v.get()
    }
}

impl fmt::Display for PgMajor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for PgMajor {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::UnsupportedVersion(s.to_string());
        let t = s.trim();
        let t = t
            .strip_prefix("PostgreSQL")
            .map(str::trim_start)
            .unwrap_or(t);
        let digits: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
        let n: u32 = digits.parse().map_err(|_| bad())?;
        // server_version_num: 150004 -> 15
        let major = if n >= 10_000 { n / 10_000 } else { n };
        PgMajor::new(major).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spellings_servers_report() {
        for s in [
            "15",
            "15.4",
            "150004",
            "15.18 (Debian 15.18-0+deb12u1)",
            "PostgreSQL 15.2",
        ] {
            assert_eq!(s.parse::<PgMajor>().expect(s).get(), 15, "{s}");
        }
        assert!("12".parse::<PgMajor>().is_err());
        assert!("18beta1".parse::<PgMajor>().is_err());
        assert!("x".parse::<PgMajor>().is_err());
        assert_eq!(PgMajor::all().count(), 5);
    }

    #[test]
    fn serde_as_number() {
        let v: PgMajor = serde_json::from_str("16").expect("number");
        assert_eq!(serde_json::to_string(&v).expect("json"), "16");
        assert!(serde_json::from_str::<PgMajor>("11").is_err());
    }
}
