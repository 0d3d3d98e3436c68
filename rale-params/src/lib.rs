//! PostgreSQL parameters for RALE: a catalog of every parameter of PostgreSQL 13 to 17,
//! validation of values exactly as the server parses them, validation against a live
//! server, and tuning recommendations.
//!
//! - [`catalog()`]: type, unit, range, enum values, context, versions and description of
//!   each parameter, generated from PostgreSQL 15's `pg_settings` plus the recorded
//!   differences of the other majors (`data/`).
//! - [`validate()`]: a [`Verdict`] for a name and value: normalized value in base units and
//!   whether a reload or a restart applies it, or the exact [`Reason`] for rejection.
//! - [`LiveValidator`] (feature `live`): the same against a server's own `pg_settings`.
//! - [`optimize()`]: recommended settings from memory, CPUs, storage and workload.
//! - [`api`]: serde request/response types for the daemon's REST endpoints.
//!
//! ```
//! use rale_params::{Apply, PgMajor, Reason, Verdict, validate};
//!
//! let v15: PgMajor = "15".parse()?;
//! match validate(v15, "shared_buffers", "1GB") {
//!     Verdict::Ok(ok) => {
//!         assert_eq!(ok.setting, "131072"); // 8kB pages
//!         assert_eq!(ok.apply, Apply::Restart);
//!     }
//!     Verdict::Rejected(r) => panic!("{}", r.message),
//! }
//! let Verdict::Rejected(r) = validate(v15, "wal_level", "hot_standbyy") else { panic!() };
//! assert!(matches!(r.reason, Reason::InvalidEnum { .. }));
//! # Ok::<(), rale_params::Error>(())
//! ```

// The determinism lints of clippy.toml apply to rale::decide only.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod api;
pub mod catalog;
mod error;
#[cfg(feature = "live")]
pub mod live;
pub mod optimize;
pub mod types;
pub mod validate;
pub mod value;
mod version;

pub use catalog::{Catalog, ParamDef, catalog};
pub use error::{Error, Result};
#[cfg(feature = "live")]
pub use live::{Disagreement, FileSetting, LiveValidator, LiveVerdict};
pub use optimize::{
    OptimizeRequest, OptimizeResponse, Recommendation, StorageType, Workload, optimize,
};
pub use types::{Apply, Context, Number, ParamType, Unit};
pub use validate::{Accepted, Reason, Rejection, Verdict, validate};
pub use value::ParamValue;
pub use version::PgMajor;

/// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Fuzzing entry point shared by `fuzz/fuzz_targets/params_value.rs` and the corpus replay
/// test: the first byte picks a major and a parameter, the rest is the value text. Panics
/// if validation panics or if normalization is not idempotent.
#[doc(hidden)]
pub fn fuzz_value(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let version = PgMajor::all()
        .nth(usize::from(selector) % 5)
        .expect("five majors");
    let params: Vec<&ParamDef> = catalog().params(version).collect();
    let second = rest.first().copied().unwrap_or(0);
    let def = params[(usize::from(selector) * 7 + usize::from(second)) % params.len()];
    for verdict in [
        validate(version, &def.name, text),
        validate::validate_def(def, text),
    ] {
        if let Verdict::Ok(a) = verdict {
            let again = validate::validate_def(def, &a.setting);
            let again = again
                .accepted()
                .expect("a normalized setting is valid again");
            assert_eq!(
                again.value, a.value,
                "normalization is idempotent for {}",
                def.name
            );
            assert_eq!(again.setting, a.setting);
        }
    }
}
