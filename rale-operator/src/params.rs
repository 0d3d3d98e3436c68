//! The spec's PostgreSQL parameters, checked with `rale-params` before any object is
//! built from them.
//!
//! A refusal names the parameter and the reason and becomes the `ParametersValid=False`
//! condition; the operator then changes nothing until the spec is fixed.

use std::collections::BTreeMap;

use rale_params::{PgMajor, Verdict, validate};

use crate::{Error, Result};

/// Parameters RALE manages itself: setting them in the spec is refused, with the spec
/// field to use instead.
const MANAGED: &[(&str, &str)] = &[
    ("synchronous_standby_names", "spec.synchronous"),
    ("synchronous_commit", "spec.synchronous"),
    (
        "listen_addresses",
        "nothing: the agent sets it to the pod's address",
    ),
    ("port", "nothing: the operator uses 5432"),
    ("hba_file", "spec.postgresql.pgHba"),
    (
        "data_directory",
        "nothing: the operator sets the data volume",
    ),
];

/// One refused parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The parameter as written in the spec.
    pub name: String,
    /// The value as written in the spec.
    pub value: String,
    /// Why, in words (from `rale-params`).
    pub reason: String,
}

/// `name=value: reason; …` for messages and conditions.
pub fn summary(refusals: &[Refusal]) -> String {
    refusals
        .iter()
        .map(|r| format!("{} = {:?}: {}", r.name, r.value, r.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks every parameter for the PostgreSQL major `version`: the accepted set
/// (names lower-cased, values as written), or every refusal.
pub fn check(
    version: u8,
    parameters: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let major = PgMajor::new(u32::from(version))
        .map_err(|e| Error::InvalidSpec(format!("postgresVersion {version}: {e}")))?;
    let mut accepted = BTreeMap::new();
    let mut refused = Vec::new();
    for (name, value) in parameters {
        let lower = name.to_ascii_lowercase();
        if let Some((_, instead)) = MANAGED.iter().find(|(n, _)| *n == lower) {
            refused.push(Refusal {
                name: name.clone(),
                value: value.clone(),
                reason: format!("managed by RALE; use {instead}"),
            });
            continue;
        }
        match validate(major, name, value) {
            Verdict::Ok(_) => {
                accepted.insert(lower, value.clone());
            }
            Verdict::Rejected(r) => refused.push(Refusal {
                name: name.clone(),
                value: value.clone(),
                reason: r.message.clone(),
            }),
            // `Verdict` may grow; an unknown verdict is not an acceptance.
            #[allow(unreachable_patterns)]
            _ => refused.push(Refusal {
                name: name.clone(),
                value: value.clone(),
                reason: "not accepted by rale-params".into(),
            }),
        }
    }
    if refused.is_empty() {
        Ok(accepted)
    } else {
        Err(Error::Parameters(refused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn valid_parameters_pass_lower_cased() {
        let ok = check(
            15,
            &params(&[("Shared_Buffers", "1GB"), ("work_mem", "16MB")]),
        )
        .expect("valid");
        assert_eq!(ok.get("shared_buffers").map(String::as_str), Some("1GB"));
        assert_eq!(ok.len(), 2);
    }

    #[test]
    fn every_refusal_is_named_with_its_reason() {
        let err = check(
            15,
            &params(&[
                ("shared_buffers", "1GB"),
                ("wal_level", "hot_standbyy"),
                ("max_connections", "-4"),
                ("synchronous_commit", "off"),
                ("no_such_setting", "1"),
            ]),
        )
        .expect_err("refused");
        let Error::Parameters(r) = err else {
            panic!("{err}")
        };
        let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "max_connections",
                "no_such_setting",
                "synchronous_commit",
                "wal_level"
            ]
        );
        assert!(r[2].reason.contains("spec.synchronous"), "{}", r[2].reason);
        assert!(r.iter().all(|r| !r.reason.is_empty()));
        assert!(summary(&r).contains("wal_level = \"hot_standbyy\""));
    }

    #[test]
    fn version_matters() {
        // wal_keep_segments was removed in PostgreSQL 13.
        assert!(check(15, &params(&[("wal_keep_segments", "16")])).is_err());
        assert!(check(12, &BTreeMap::new()).is_err());
    }
}
