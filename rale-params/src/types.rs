//! Small vocabulary types shared by the catalog, the validator and the API.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The type of a parameter, as `pg_settings.vartype` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// `on`/`off` and PostgreSQL's other boolean spellings.
    Bool,
    /// 32-bit integer, possibly with a unit.
    Integer,
    /// Double precision, possibly with a unit.
    Real,
    /// Free text (some parameters have server-side syntax checks the catalog does not model).
    String,
    /// One of a fixed list of values, case-insensitive.
    Enum,
}

impl ParamType {
    /// The `pg_settings.vartype` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Bool => "bool",
            ParamType::Integer => "integer",
            ParamType::Real => "real",
            ParamType::String => "string",
            ParamType::Enum => "enum",
        }
    }

    /// Parses the `pg_settings.vartype` spelling.
    pub fn from_pg(s: &str) -> Option<Self> {
        Some(match s {
            "bool" => ParamType::Bool,
            "integer" => ParamType::Integer,
            "real" => ParamType::Real,
            "string" => ParamType::String,
            "enum" => ParamType::Enum,
            _ => return None,
        })
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The base unit of a numeric parameter (`pg_settings.unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Unit {
    /// Bytes (`B`).
    #[serde(rename = "B")]
    Bytes,
    /// Kilobytes (`kB`).
    #[serde(rename = "kB")]
    Kilobytes,
    /// Megabytes (`MB`).
    #[serde(rename = "MB")]
    Megabytes,
    /// 8 kB blocks or WAL blocks (`8kB`; the default block sizes).
    #[serde(rename = "8kB")]
    Blocks8k,
    /// Milliseconds (`ms`).
    #[serde(rename = "ms")]
    Milliseconds,
    /// Seconds (`s`).
    #[serde(rename = "s")]
    Seconds,
    /// Minutes (`min`).
    #[serde(rename = "min")]
    Minutes,
}

impl Unit {
    /// The `pg_settings.unit` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Bytes => "B",
            Unit::Kilobytes => "kB",
            Unit::Megabytes => "MB",
            Unit::Blocks8k => "8kB",
            Unit::Milliseconds => "ms",
            Unit::Seconds => "s",
            Unit::Minutes => "min",
        }
    }

    /// Parses the `pg_settings.unit` spelling.
    pub fn from_pg(s: &str) -> Option<Self> {
        Some(match s {
            "B" => Unit::Bytes,
            "kB" => Unit::Kilobytes,
            "MB" => Unit::Megabytes,
            "8kB" => Unit::Blocks8k,
            "ms" => Unit::Milliseconds,
            "s" => Unit::Seconds,
            "min" => Unit::Minutes,
            _ => return None,
        })
    }

    /// True for memory units, false for time units.
    pub fn is_memory(self) -> bool {
        matches!(
            self,
            Unit::Bytes | Unit::Kilobytes | Unit::Megabytes | Unit::Blocks8k
        )
    }

    /// Size of one unit in bytes (memory) or microseconds (time).
    pub fn finest(self) -> f64 {
        match self {
            Unit::Bytes => 1.0,
            Unit::Kilobytes => 1024.0,
            Unit::Megabytes => 1_048_576.0,
            Unit::Blocks8k => 8192.0,
            Unit::Milliseconds => 1e3,
            Unit::Seconds => 1e6,
            Unit::Minutes => 6e7,
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a parameter can be changed (`pg_settings.context`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Context {
    /// Fixed at build or initdb time, or computed; cannot be set.
    Internal,
    /// Server start only.
    Postmaster,
    /// Configuration file + reload (SIGHUP).
    Sighup,
    /// Reload, applies to sessions started afterwards; superusers may set it at connection.
    SuperuserBackend,
    /// Reload, applies to sessions started afterwards; anyone may set it at connection.
    Backend,
    /// Reload, or `SET` by a superuser (or a role granted SET).
    Superuser,
    /// Reload, or `SET` by any user.
    User,
}

impl Context {
    /// The `pg_settings.context` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Internal => "internal",
            Context::Postmaster => "postmaster",
            Context::Sighup => "sighup",
            Context::SuperuserBackend => "superuser-backend",
            Context::Backend => "backend",
            Context::Superuser => "superuser",
            Context::User => "user",
        }
    }

    /// Parses the `pg_settings.context` spelling.
    pub fn from_pg(s: &str) -> Option<Self> {
        Some(match s {
            "internal" => Context::Internal,
            "postmaster" => Context::Postmaster,
            "sighup" => Context::Sighup,
            "superuser-backend" => Context::SuperuserBackend,
            "backend" => Context::Backend,
            "superuser" => Context::Superuser,
            "user" => Context::User,
            _ => return None,
        })
    }

    /// How a new value written to the configuration takes effect.
    pub fn apply(self) -> Apply {
        match self {
            Context::Internal => Apply::Never,
            Context::Postmaster => Apply::Restart,
            Context::Sighup | Context::Superuser | Context::User => Apply::Reload,
            Context::SuperuserBackend | Context::Backend => Apply::ReloadNewSessions,
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a changed configuration value takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Apply {
    /// A server restart is needed.
    Restart,
    /// A reload (SIGHUP, `pg_reload_conf()`) applies it.
    Reload,
    /// A reload applies it, but only to sessions started afterwards.
    ReloadNewSessions,
    /// Cannot go in a configuration file: only `SET` in a session (or the command line).
    SessionOnly,
    /// Cannot be changed at all.
    Never,
    /// Unknown (a custom extension parameter the catalog does not describe).
    Unknown,
}

impl Apply {
    /// True when the change needs a restart.
    pub fn needs_restart(self) -> bool {
        self == Apply::Restart
    }
}

/// A numeric bound (integer bounds stay integers in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Number {
    /// An integer value.
    Integer(i64),
    /// A real value.
    Real(f64),
}

impl Number {
    /// The value as `f64`.
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Integer(i) => i as f64,
            Number::Real(r) => r,
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Integer(i) => write!(f, "{i}"),
            Number::Real(r) => f.write_str(&crate::value::format_g(*r)),
        }
    }
}
