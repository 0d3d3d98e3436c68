//! Validation against a running server: its `pg_settings` is the authority, the catalog is
//! compared with it, and `pg_file_settings` reports what a reload would make of the files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::catalog::{ParamDef, catalog};
use crate::types::{Context, Number, ParamType, Unit};
use crate::validate::{Reason, Rejection, Verdict, unquote, validate, validate_def};
use crate::{Error, PgMajor, Result};

/// A difference between the catalog and a live server's `pg_settings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disagreement {
    /// Parameter name.
    pub name: String,
    /// Which attribute differs (`exists`, `type`, `unit`, `min`, `max`, `enum_values`, `context`).
    pub field: String,
    /// The catalog's value.
    pub catalog: String,
    /// The server's value.
    pub server: String,
}

/// Result of [`LiveValidator::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveVerdict {
    /// The verdict using the server's own definitions (and its own check when it could be
    /// asked without side effects).
    pub verdict: Verdict,
    /// The catalog's verdict for the same major.
    pub catalog_verdict: Verdict,
    /// True when the server itself checked the value (`set_config` in a rolled-back
    /// statement; possible for `user` and, as superuser, `superuser` parameters).
    pub server_checked: bool,
    /// Set when the catalog and the server disagree on acceptance.
    pub disagreement: Option<String>,
}

/// A line of `pg_file_settings` (what the configuration files say, and whether it applies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSetting {
    /// File, if readable.
    pub sourcefile: Option<String>,
    /// Line number.
    pub sourceline: Option<i32>,
    /// Parameter name.
    pub name: Option<String>,
    /// Value text.
    pub setting: Option<String>,
    /// Whether the value is (or would be, after reload) in effect.
    pub applied: bool,
    /// Why not, if it is invalid (e.g. "setting could not be applied").
    pub error: Option<String>,
}

/// Validates settings against a connected server.
pub struct LiveValidator {
    client: Client,
    version: PgMajor,
    server_version: String,
    defs: BTreeMap<String, ParamDef>,
}

impl LiveValidator {
    /// Connects (without TLS) and loads `pg_settings`. The connection task runs on the
    /// current tokio runtime.
    pub async fn connect(conninfo: &str) -> Result<Self> {
        let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
            .await
            .map_err(|source| Error::Postgres {
                operation: "connect",
                source,
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing_free_log(&e);
            }
        });
        Self::new(client).await
    }

    /// Wraps a connected client and loads `pg_settings`.
    pub async fn new(client: Client) -> Result<Self> {
        let mut v = LiveValidator {
            client,
            version: PgMajor::BASE,
            server_version: String::new(),
            defs: BTreeMap::new(),
        };
        v.refresh().await?;
        Ok(v)
    }

    /// Reloads `pg_settings` (e.g. after the server was upgraded or an extension loaded).
    pub async fn refresh(&mut self) -> Result<()> {
        let pg = |operation| move |source| Error::Postgres { operation, source };
        let num: String = self
            .client
            .query_one("SHOW server_version_num", &[])
            .await
            .map_err(pg("SHOW server_version_num"))?
            .get(0);
        self.version = num.parse()?;
        self.server_version = self
            .client
            .query_one("SHOW server_version", &[])
            .await
            .map_err(pg("SHOW server_version"))?
            .get(0);
        let rows = self
            .client
            .query(
                "SELECT name, vartype, coalesce(unit, ''), min_val, max_val, \
                 coalesce(enumvals, '{}'::text[]), context, coalesce(boot_val, ''), \
                 coalesce(short_desc, '') FROM pg_settings",
                &[],
            )
            .await
            .map_err(pg("reading pg_settings"))?;
        self.defs.clear();
        for row in rows {
            let name: String = row.get(0);
            let known = catalog().get(self.version, &name);
            let param_type = ParamType::from_pg(row.get::<_, &str>(1)).unwrap_or(ParamType::String);
            let num = |s: Option<String>| -> Option<Number> {
                let s = s?;
                match param_type {
                    ParamType::Integer => s.parse().ok().map(Number::Integer),
                    ParamType::Real => s.parse().ok().map(Number::Real),
                    _ => None,
                }
            };
            let def = ParamDef {
                name: name.clone(),
                param_type,
                unit: Unit::from_pg(row.get::<_, &str>(2)),
                min: num(row.get(3)),
                max: num(row.get(4)),
                enum_values: row.get(5),
                // Hidden spellings are not in pg_settings: take them from the catalog.
                enum_aliases: known.map(|k| k.enum_aliases.clone()).unwrap_or_default(),
                context: Context::from_pg(row.get::<_, &str>(6)).unwrap_or(Context::Internal),
                in_file: known.is_none_or(|k| k.in_file),
                default: row.get(7),
                description: row.get(8),
                since: known.map_or(self.version, |k| k.since),
                until: known.and_then(|k| k.until),
                renamed_to: None,
            };
            self.defs.insert(name.to_ascii_lowercase(), def);
        }
        Ok(())
    }

    /// The server's major.
    pub fn version(&self) -> PgMajor {
        self.version
    }

    /// The server's full version string.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// The server's definition of `name`, built from `pg_settings`.
    pub fn server_def(&self, name: &str) -> Option<&ParamDef> {
        self.defs.get(&name.to_ascii_lowercase())
    }

    /// Every parameter the server reports, by lower-case name.
    pub fn server_defs(&self) -> &BTreeMap<String, ParamDef> {
        &self.defs
    }

    /// Where the catalog for this major and the server's `pg_settings` differ.
    pub fn disagreements(&self) -> Vec<Disagreement> {
        let mut out = Vec::new();
        let d = |name: &str, field: &str, c: String, s: String| Disagreement {
            name: name.to_string(),
            field: field.to_string(),
            catalog: c,
            server: s,
        };
        for (k, s) in &self.defs {
            let Some(c) = catalog().get(self.version, k) else {
                out.push(d(&s.name, "exists", "absent".into(), "present".into()));
                continue;
            };
            if c.param_type != s.param_type {
                out.push(d(
                    &s.name,
                    "type",
                    c.param_type.to_string(),
                    s.param_type.to_string(),
                ));
            }
            if c.unit != s.unit {
                out.push(d(&s.name, "unit", fmt_opt(c.unit), fmt_opt(s.unit)));
            }
            if !same_bound(c.min, s.min) {
                out.push(d(&s.name, "min", fmt_opt(c.min), fmt_opt(s.min)));
            }
            if !same_bound(c.max, s.max) {
                out.push(d(&s.name, "max", fmt_opt(c.max), fmt_opt(s.max)));
            }
            if c.enum_values != s.enum_values {
                out.push(d(
                    &s.name,
                    "enum_values",
                    c.enum_values.join(","),
                    s.enum_values.join(","),
                ));
            }
            if c.context != s.context {
                out.push(d(
                    &s.name,
                    "context",
                    c.context.to_string(),
                    s.context.to_string(),
                ));
            }
        }
        for c in catalog().params(self.version) {
            if !self.defs.contains_key(&c.name.to_ascii_lowercase()) {
                out.push(d(&c.name, "exists", "present".into(), "absent".into()));
            }
        }
        out
    }

    /// Validates with the server's definitions, asks the server itself where that has no
    /// side effect, and compares with the catalog.
    pub async fn validate(&self, name: &str, value: &str) -> LiveVerdict {
        let catalog_verdict = validate(self.version, name, value);
        let (verdict, server_checked) = match (self.server_def(name), unquote(value)) {
            (_, Err(_)) | (None, _) => (catalog_verdict.clone(), false),
            (Some(def), Ok(text)) => self.validate_with(def, &text).await,
        };
        let disagreement = (verdict.is_ok() != catalog_verdict.is_ok()).then(|| {
            format!(
                "the server {} \"{value}\" for {name} but the catalog {}",
                if verdict.is_ok() {
                    "accepts"
                } else {
                    "rejects"
                },
                if catalog_verdict.is_ok() {
                    "accepts it"
                } else {
                    "rejects it"
                }
            )
        });
        LiveVerdict {
            verdict,
            catalog_verdict,
            server_checked,
            disagreement,
        }
    }

    async fn validate_with(&self, def: &ParamDef, text: &str) -> (Verdict, bool) {
        if def.context == Context::Internal {
            return (validate(self.version, &def.name, text), false);
        }
        let verdict = validate_def(def, text);
        if !verdict.is_ok() || !matches!(def.context, Context::User | Context::Superuser) {
            return (verdict, false);
        }
        // set_config(..., is_local => true) in its own implicit transaction: the server runs
        // its full check (including check hooks) and the change ends with the statement.
        match self
            .client
            .query_one("SELECT set_config($1, $2, true)", &[&def.name, &text])
            .await
        {
            Ok(_) => (verdict, true),
            Err(e) => match e.as_db_error() {
                Some(db)
                    if db.code() == &tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE =>
                {
                    let reason = Reason::WrongType {
                        name: def.name.clone(),
                        expected: def.param_type,
                        hint: Some(db.message().to_string()),
                    };
                    let message = format!("the server rejects it: {}", db.message());
                    (Verdict::Rejected(Rejection { reason, message }), true)
                }
                _ => (verdict, false),
            },
        }
    }

    /// `pg_file_settings`: what the configuration files contain and whether each line is
    /// valid; call after writing the files (before or after `pg_reload_conf()`).
    pub async fn file_settings(&self) -> Result<Vec<FileSetting>> {
        let rows = self
            .client
            .query(
                "SELECT sourcefile, sourceline, name, setting, applied, error FROM pg_file_settings",
                &[],
            )
            .await
            .map_err(|source| Error::Postgres { operation: "reading pg_file_settings", source })?;
        Ok(rows
            .iter()
            .map(|r| FileSetting {
                sourcefile: r.get(0),
                sourceline: r.get(1),
                name: r.get(2),
                setting: r.get(3),
                applied: r.get(4),
                error: r.get(5),
            })
            .collect())
    }

    /// Reloads the server configuration and returns the `pg_file_settings` lines in error.
    pub async fn reload_and_check(&self) -> Result<Vec<FileSetting>> {
        self.client
            .query_one("SELECT pg_reload_conf()", &[])
            .await
            .map_err(|source| Error::Postgres {
                operation: "pg_reload_conf()",
                source,
            })?;
        Ok(self
            .file_settings()
            .await?
            .into_iter()
            .filter(|f| f.error.is_some())
            .collect())
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn same_bound(a: Option<Number>, b: Option<Number>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => {
            let (x, y) = (x.as_f64(), y.as_f64());
            x == y || ((x - y).abs() / x.abs().max(y.abs())) < 1e-5
        }
        _ => false,
    }
}

fn fmt_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |x| x.to_string())
}

/// The connection ended with an error; the next query reports it to the caller.
fn tracing_free_log(_e: &tokio_postgres::Error) {}
