//! Validation of a parameter name and value for a PostgreSQL major.

use serde::{Deserialize, Serialize};

use crate::PgMajor;
use crate::catalog::{ParamDef, catalog};
use crate::types::{Apply, Context, Number, ParamType, Unit};
use crate::value::{self, ParamValue, ValueError};

/// The outcome of validating one setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verdict {
    /// The value is valid.
    Ok(Accepted),
    /// The value (or name) is not valid.
    Rejected(Rejection),
}

impl Verdict {
    /// True for [`Verdict::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok(_))
    }

    /// The accepted value, if any.
    pub fn accepted(&self) -> Option<&Accepted> {
        match self {
            Verdict::Ok(a) => Some(a),
            Verdict::Rejected(_) => None,
        }
    }

    /// The rejection, if any.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            Verdict::Ok(_) => None,
            Verdict::Rejected(r) => Some(r),
        }
    }
}

/// A valid setting, normalized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accepted {
    /// The parameter's name as PostgreSQL spells it.
    pub name: String,
    /// The value in base units.
    pub value: ParamValue,
    /// Base unit of `value`, if any.
    pub unit: Option<Unit>,
    /// As `pg_settings.setting` holds it (base units, no suffix); validating it again gives
    /// the same result.
    pub setting: String,
    /// As `SHOW` prints it (e.g. `128MB`).
    pub display: String,
    /// The parameter's context.
    pub context: Option<Context>,
    /// What it takes for the new value to apply.
    pub apply: Apply,
    /// Anything the caller should know (e.g. checks only the server can make).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Why a setting was rejected: a machine-readable reason and a sentence for humans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// The reason, with its details.
    pub reason: Reason,
    /// The reason as one sentence.
    pub message: String,
}

/// The reasons a setting can be rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// No such parameter in any supported major.
    UnknownParameter {
        /// The name given.
        name: String,
        /// Closest known names.
        suggestions: Vec<String>,
    },
    /// The parameter exists, but not in this major.
    NotInVersion {
        /// The parameter.
        name: String,
        /// The major asked about.
        version: PgMajor,
        /// First major that has it, when that is later than `version`.
        added_in: Option<PgMajor>,
        /// First major without it, when that is `version` or earlier.
        removed_in: Option<PgMajor>,
        /// What replaced it, if it was renamed.
        renamed_to: Option<String>,
        /// Its name in earlier majors, if it was renamed.
        renamed_from: Option<String>,
    },
    /// Not a value of the parameter's type (or bad unit / syntax).
    WrongType {
        /// The parameter.
        name: String,
        /// Its type.
        expected: ParamType,
        /// What PostgreSQL would add as a hint.
        hint: Option<String>,
    },
    /// A number outside the bounds.
    OutOfRange {
        /// The parameter.
        name: String,
        /// The value in base units.
        value: f64,
        /// Bounds in base units.
        min: Option<Number>,
        /// Bounds in base units.
        max: Option<Number>,
        /// Base unit.
        unit: Option<Unit>,
        /// The range in the unit the user wrote (or the base unit), e.g. `128kB .. 8TB`.
        range: String,
    },
    /// Not one of the enum's values.
    InvalidEnum {
        /// The parameter.
        name: String,
        /// The documented values.
        allowed: Vec<String>,
    },
    /// Cannot be set (internal) or cannot be set in a configuration file.
    NotSettable {
        /// The parameter.
        name: String,
        /// Why.
        why: String,
    },
    /// The value text itself is malformed (e.g. an unterminated quote).
    BadSyntax {
        /// What is wrong.
        why: String,
    },
}

fn reject(reason: Reason) -> Verdict {
    let message = match &reason {
        Reason::UnknownParameter { name, suggestions } if suggestions.is_empty() => {
            format!("unrecognized configuration parameter \"{name}\"")
        }
        Reason::UnknownParameter { name, suggestions } => format!(
            "unrecognized configuration parameter \"{name}\"; did you mean {}?",
            suggestions
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        Reason::NotInVersion {
            name,
            version,
            added_in,
            removed_in,
            renamed_to,
            renamed_from,
        } => {
            let mut m = format!("parameter \"{name}\" does not exist in PostgreSQL {version}");
            if let Some(a) = added_in {
                m.push_str(&format!(": it was added in {a}"));
            }
            if let Some(r) = removed_in {
                m.push_str(&format!(": it was removed in {r}"));
            }
            if let Some(n) = renamed_to {
                m.push_str(&format!(" (renamed to \"{n}\")"));
            }
            if let Some(n) = renamed_from {
                m.push_str(&format!(" (called \"{n}\" before)"));
            }
            m
        }
        Reason::WrongType {
            name,
            expected,
            hint,
        } => {
            let mut m = format!(
                "invalid value for parameter \"{name}\": expected {}",
                type_words(*expected)
            );
            if let Some(h) = hint {
                m.push_str(". ");
                m.push_str(h);
            }
            m
        }
        Reason::OutOfRange { name, range, .. } => {
            format!("value is outside the valid range for parameter \"{name}\" ({range})")
        }
        Reason::InvalidEnum { name, allowed } => format!(
            "invalid value for parameter \"{name}\"; available values: {}",
            allowed
                .iter()
                .map(|v| if v.is_empty() {
                    "\"\"".to_string()
                } else {
                    v.clone()
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Reason::NotSettable { name, why } => format!("parameter \"{name}\" cannot be set: {why}"),
        Reason::BadSyntax { why } => format!("malformed value: {why}"),
    };
    Verdict::Rejected(Rejection { reason, message })
}

fn type_words(t: ParamType) -> &'static str {
    match t {
        ParamType::Bool => "a boolean (on/off, true/false, yes/no, 1/0)",
        ParamType::Integer => "an integer",
        ParamType::Real => "a number",
        ParamType::String => "a string",
        ParamType::Enum => "one of the listed values",
    }
}

/// Validates `value` for parameter `name` in major `version`.
///
/// `value` is what would follow `name =` in `postgresql.conf`: surrounding whitespace is
/// ignored and a single-quoted value is unquoted (`''` and backslash escapes) first.
pub fn validate(version: PgMajor, name: &str, value: &str) -> Verdict {
    let text = match unquote(value) {
        Ok(t) => t,
        Err(why) => return reject(Reason::BadSyntax { why }),
    };
    let Some(def) = catalog().get(version, name) else {
        return unknown(version, name, text);
    };
    if def.context == Context::Internal {
        return reject(Reason::NotSettable {
            name: def.name.clone(),
            why: "it is read-only (fixed when PostgreSQL was built or initialized, or computed)"
                .into(),
        });
    }
    let verdict = validate_def(def, &text);
    if verdict.is_ok() && !def.in_file {
        let why = match def.context {
            Context::Postmaster => "it can only be given on the server command line",
            _ => "it can only be changed with SET inside a session",
        };
        return reject(Reason::NotSettable {
            name: def.name.clone(),
            why: why.into(),
        });
    }
    verdict
}

/// Validates the exact text PostgreSQL would receive (no trimming or unquoting) against one
/// definition: type, unit, range, enum values. Context and version are not checked here.
pub fn validate_def(def: &ParamDef, text: &str) -> Verdict {
    match value::parse_setting(def, text) {
        Ok(v) => {
            let note = server_checks_note(&def.name);
            Verdict::Ok(Accepted {
                name: def.name.clone(),
                setting: v.setting(),
                display: v.display(def.unit),
                value: v,
                unit: def.unit,
                context: Some(def.context),
                apply: def.context.apply(),
                note,
            })
        }
        Err(ValueError::Invalid { hint }) => reject(Reason::WrongType {
            name: def.name.clone(),
            expected: def.param_type,
            hint,
        }),
        Err(ValueError::OutOfRange { value }) => reject(Reason::OutOfRange {
            name: def.name.clone(),
            value,
            min: def.min,
            max: def.max,
            unit: def.unit,
            range: range_text(def, text),
        }),
        Err(ValueError::InvalidEnum) => reject(Reason::InvalidEnum {
            name: def.name.clone(),
            allowed: def.enum_values.clone(),
        }),
    }
}

fn unknown(version: PgMajor, name: &str, text: String) -> Verdict {
    if let Some(def) = catalog().find_any(name) {
        let renamed_to = def.renamed_to.clone();
        let renamed_from = catalog().predecessor(&def.name).map(|d| d.name.clone());
        let (added_in, removed_in) = if version < def.since {
            (Some(def.since), None)
        } else {
            (None, def.until.and_then(|u| PgMajor::new(u.get() + 1).ok()))
        };
        return reject(Reason::NotInVersion {
            name: def.name.clone(),
            version,
            added_in,
            removed_in,
            renamed_to,
            renamed_from,
        });
    }
    if is_custom_name(name) {
        return Verdict::Ok(Accepted {
            name: name.to_string(),
            setting: text.clone(),
            display: text.clone(),
            value: ParamValue::String(text),
            unit: None,
            context: None,
            apply: Apply::Unknown,
            note: Some("custom (extension) parameter: the value is not checked".into()),
        });
    }
    reject(Reason::UnknownParameter {
        name: name.to_string(),
        suggestions: catalog().suggest(version, name),
    })
}

/// `prefix.name` with identifier characters, as PostgreSQL allows for extension settings.
fn is_custom_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            let mut c = p.chars();
            c.next()
                .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
                && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == '$')
        })
}

/// Parameters whose values the server checks further than type and range.
fn server_checks_note(name: &str) -> Option<String> {
    let why = match name {
        "max_stack_depth" => {
            "the server also requires it to stay below the OS stack limit (ulimit -s) minus a safety margin"
        }
        "bonjour" => {
            "the server rejects on when it was built without Bonjour support (as Debian's packages are)"
        }
        "vacuum_buffer_usage_limit" => "the server requires 0 or a value between 128kB and 16GB",
        "max_connections"
        | "max_worker_processes"
        | "max_wal_senders"
        | "autovacuum_max_workers" => {
            "the server also requires the sum of connection and worker slots to stay within 262143"
        }
        _ => return None,
    };
    Some(why.into())
}

fn range_text(def: &ParamDef, text: &str) -> String {
    let fmt_in = |n: Option<Number>, scale: f64| match n {
        Some(Number::Integer(i)) if scale == 1.0 => i.to_string(),
        Some(n) => {
            let v = n.as_f64() / scale;
            if v.abs() >= 1e15 {
                value::format_g(v)
            } else {
                let s = format!("{v:.3}");
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            }
        }
        None => "?".into(),
    };
    match def.unit {
        Some(base) => {
            let user = value::user_unit_of(text, base).filter(|u| *u != base.as_str());
            let base_range = format!(
                "{} .. {} {}",
                fmt_in(def.min, 1.0),
                fmt_in(def.max, 1.0),
                base.as_str()
            );
            match user.and_then(|u| value::unit_multiplier(u, base).map(|m| (u, m))) {
                Some((u, m)) => format!(
                    "{} .. {} {u}, i.e. {base_range}",
                    fmt_in(def.min, m),
                    fmt_in(def.max, m)
                ),
                None => base_range,
            }
        }
        None => format!("{} .. {}", fmt_in(def.min, 1.0), fmt_in(def.max, 1.0)),
    }
}

/// Quotes `value` for a configuration file: the inverse of [`unquote`]. The result is
/// single-quoted, with `'` doubled and backslash and control characters escaped, so
/// `unquote(&quote(v)) == Ok(v)` for every `v`, leading and trailing spaces included.
///
/// ```
/// use rale_params::validate::{quote, unquote};
/// assert_eq!(quote(" it's "), "' it''s '");
/// assert_eq!(unquote(&quote("a\\b\n")).as_deref(), Ok("a\\b\n"));
/// ```
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            other => out.push(other),
        }
    }
    out.push('\'');
    out
}

/// Undoes configuration-file syntax: trims whitespace, and unquotes a single-quoted value
/// (`''` -> `'`, `\n`, `\t`, `\b`, `\f`, `\r`, octal `\ooo`, `\x` -> `x`).
pub fn unquote(raw: &str) -> Result<String, String> {
    let t = raw.trim_matches(|c: char| c.is_ascii_whitespace());
    let Some(inner) = t.strip_prefix('\'') else {
        return Ok(t.to_string());
    };
    let Some(inner) = inner.strip_suffix('\'') else {
        return Err("unterminated quoted string".into());
    };
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                if chars.next() != Some('\'') {
                    return Err("a quote inside a quoted value must be doubled ('')".into());
                }
                out.push('\'');
            }
            '\\' => match chars.next() {
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some(d @ '0'..='7') => {
                    let mut v = d.to_digit(8).expect("octal digit");
                    for _ in 0..2 {
                        match chars.peek().and_then(|c| c.to_digit(8)) {
                            Some(x) => {
                                v = v * 8 + x;
                                chars.next();
                            }
                            None => break,
                        }
                    }
                    out.push(char::from_u32(v & 0xff).unwrap_or('?'));
                }
                Some(o) => out.push(o),
                None => return Err("a backslash ends the quoted value".into()),
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v15() -> PgMajor {
        PgMajor::BASE
    }

    fn reason(v: Verdict) -> Reason {
        match v {
            Verdict::Rejected(r) => r.reason,
            Verdict::Ok(a) => panic!("accepted: {a:?}"),
        }
    }

    #[test]
    fn accepts_and_normalizes() {
        let a = validate(v15(), "shared_buffers", "'128MB'");
        let a = a.accepted().expect("valid");
        assert_eq!(a.value, ParamValue::Integer(16384));
        assert_eq!(a.setting, "16384");
        assert_eq!(a.display, "128MB");
        assert_eq!(a.apply, Apply::Restart);
        let a = validate(v15(), "work_mem", " 64MB ");
        assert_eq!(a.accepted().expect("valid").apply, Apply::Reload);
        let a = validate(v15(), "synchronous_commit", "TRUE");
        assert_eq!(
            a.accepted().expect("valid").value,
            ParamValue::Enum("on".into())
        );
        let a = validate(v15(), "log_connections", "of");
        assert_eq!(a.accepted().expect("valid").value, ParamValue::Bool(false));
        let a = validate(v15(), "search_path", "'\"$user\", public'");
        assert_eq!(a.accepted().expect("valid").setting, "\"$user\", public");
        let a = validate(v15(), "pg_stat_statements.max", "5000");
        assert_eq!(a.accepted().expect("custom").apply, Apply::Unknown);
    }

    #[test]
    fn rejects_with_the_exact_reason() {
        match reason(validate(v15(), "shared_bufers", "1")) {
            Reason::UnknownParameter { suggestions, .. } => {
                assert_eq!(suggestions[0], "shared_buffers")
            }
            r => panic!("{r:?}"),
        }
        match reason(validate(
            PgMajor::new(13).expect("13"),
            "compute_query_id",
            "on",
        )) {
            Reason::NotInVersion { added_in, .. } => {
                assert_eq!(added_in.map(PgMajor::get), Some(14))
            }
            r => panic!("{r:?}"),
        }
        match reason(validate(
            PgMajor::new(16).expect("16"),
            "force_parallel_mode",
            "on",
        )) {
            Reason::NotInVersion {
                removed_in,
                renamed_to,
                ..
            } => {
                assert_eq!(removed_in.map(PgMajor::get), Some(16));
                assert_eq!(renamed_to.as_deref(), Some("debug_parallel_query"));
            }
            r => panic!("{r:?}"),
        }
        assert!(matches!(
            reason(validate(v15(), "fsync", "maybe")),
            Reason::WrongType { .. }
        ));
        match reason(validate(v15(), "shared_buffers", "100TB")) {
            Reason::OutOfRange { range, .. } => assert!(range.starts_with("0 .. 8 TB"), "{range}"),
            r => panic!("{r:?}"),
        }
        match validate(v15(), "work_mem", "10kB") {
            Verdict::Rejected(r) => {
                assert!(r.message.contains("64 .. 2147483647 kB"), "{}", r.message)
            }
            v => panic!("{v:?}"),
        }
        match reason(validate(v15(), "wal_level", "archive2")) {
            Reason::InvalidEnum { allowed, .. } => {
                assert_eq!(allowed, ["minimal", "replica", "logical"])
            }
            r => panic!("{r:?}"),
        }
        assert!(matches!(
            reason(validate(v15(), "block_size", "8192")),
            Reason::NotSettable { .. }
        ));
        assert!(matches!(
            reason(validate(v15(), "transaction_isolation", "serializable")),
            Reason::NotSettable { .. }
        ));
        assert!(matches!(
            reason(validate(v15(), "work_mem", "'64MB")),
            Reason::BadSyntax { .. }
        ));
    }

    #[test]
    fn unquote_handles_conf_escapes() {
        assert_eq!(unquote("'it''s'"), Ok("it's".into()));
        assert_eq!(unquote(r"'a\tb\101'"), Ok("a\tbA".into()));
        assert_eq!(unquote("  plain  "), Ok("plain".into()));
        assert!(unquote("'x'y'").is_err());
    }
}
