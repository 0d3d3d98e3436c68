//! Timing profiles of the benchmarked playgrounds: the defaults, or the "fast" profile of
//! `docs/timings.md` for dedicated hosts on one LAN, written into every node's
//! `[bootstrap]` section.

use std::str::FromStr;

use anyhow::{Result, bail};
use serde::Serialize;

/// The fast profile's dynamic configuration (`[bootstrap]` TOML). It passes
/// `DynamicConfig::validate`: the holder keeps 1000 × 0.99/1.01 − 200 = 780 ms per lease,
/// more than two renew intervals (300 ms); `member_ttl` is four `publish_interval`s.
pub const FAST_BOOTSTRAP_TOML: &str = "lease_ttl = \"1s\"\n\
renew_interval = \"150ms\"\n\
fence_margin = \"200ms\"\n\
loop_interval = \"50ms\"\n\
member_ttl = \"2s\"\n\
publish_interval = \"500ms\"\n\
detach_timeout = \"500ms\"\n";

/// Which timing knobs the playgrounds run with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// The defaults of `DynamicConfig` (lease 1.5 s, loop 100 ms, …).
    #[default]
    Default,
    /// `FAST_BOOTSTRAP_TOML`: lease 1 s, renew 150 ms, loop 50 ms, member TTL 2 s.
    Fast,
}

impl Profile {
    /// The `[bootstrap]` lines, if any.
    pub fn bootstrap_toml(self) -> Option<&'static str> {
        match self {
            Profile::Default => None,
            Profile::Fast => Some(FAST_BOOTSTRAP_TOML),
        }
    }

    /// Put before every row name of the result table.
    pub fn row_prefix(self) -> &'static str {
        match self {
            Profile::Default => "",
            Profile::Fast => "fast: ",
        }
    }
}

impl FromStr for Profile {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "default" => Profile::Default,
            "fast" => Profile::Fast,
            other => bail!("unknown profile {other:?} (default, fast)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_profile_is_a_valid_dynamic_config() {
        let cfg: rale::DynamicConfig =
            toml::from_str(FAST_BOOTSTRAP_TOML).expect("the fast profile parses");
        cfg.validate().expect("the fast profile validates");
        assert_eq!(cfg.lease_ttl, std::time::Duration::from_secs(1));
        assert_eq!("fast".parse::<Profile>().ok(), Some(Profile::Fast));
        assert!("slow".parse::<Profile>().is_err());
    }
}
