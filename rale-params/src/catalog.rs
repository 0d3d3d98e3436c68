//! The parameter catalog: PostgreSQL 15's `pg_settings` (generated) plus the hand-written
//! differences of 13, 14, 16 and 17, both embedded from `data/`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::types::{Context, Number, ParamType, Unit};
use crate::{Error, PgMajor, Result};

const PG15_TSV: &str = include_str!("../data/pg15.tsv");
const VERSIONS_TSV: &str = include_str!("../data/versions.tsv");

/// One parameter as it exists in one PostgreSQL major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamDef {
    /// Name as PostgreSQL spells it (lookups are case-insensitive).
    pub name: String,
    /// Value type.
    #[serde(rename = "type")]
    pub param_type: ParamType,
    /// Base unit of numeric values, if any.
    pub unit: Option<Unit>,
    /// Smallest accepted value, in the base unit.
    pub min: Option<Number>,
    /// Largest accepted value, in the base unit.
    pub max: Option<Number>,
    /// Documented enum values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enum_values: Vec<String>,
    /// Other accepted spellings (lower case) and the value each stands for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub enum_aliases: BTreeMap<String, String>,
    /// When it can change.
    pub context: Context,
    /// Whether it may be set in `postgresql.conf` / `ALTER SYSTEM`.
    pub in_file: bool,
    /// Built-in default (`boot_val`), as PostgreSQL shows it in base units.
    pub default: String,
    /// One-line description.
    pub description: String,
    /// First major that has it (13 = 13 or earlier).
    pub since: PgMajor,
    /// Last major that has it; `None` when 17 still has it.
    pub until: Option<PgMajor>,
    /// The name that replaced it, if it was renamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_to: Option<String>,
}

impl ParamDef {
    /// Whether this parameter exists in `version`.
    pub fn exists_in(&self, version: PgMajor) -> bool {
        version >= self.since && self.until.is_none_or(|u| version <= u)
    }
}

/// All parameters of every supported major.
#[derive(Debug)]
pub struct Catalog {
    /// Per major (index = major - 13): lower-case name -> definition.
    versions: Vec<BTreeMap<String, ParamDef>>,
}

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    Catalog::from_data(PG15_TSV, VERSIONS_TSV)
        .expect("embedded catalog data is valid (checked by the unit tests)")
});

/// The embedded catalog (parsed once).
pub fn catalog() -> &'static Catalog {
    &CATALOG
}

impl Catalog {
    /// Builds a catalog from the text of `pg15.tsv` and `versions.tsv`.
    pub fn from_data(pg15: &str, versions: &str) -> Result<Catalog> {
        let mut base: BTreeMap<String, ParamDef> = BTreeMap::new();
        for (i, line) in pg15.lines().enumerate() {
            if line.starts_with('#') || line.starts_with("name\t") || line.trim().is_empty() {
                continue;
            }
            let err = |message: String| Error::CatalogData {
                file: "pg15.tsv",
                line: i + 1,
                message,
            };
            let fields: Vec<String> = line.split('\t').map(unescape).collect();
            let def = def_from_fields(&fields, PgMajor::MIN, None).map_err(err)?;
            base.insert(def.name.to_ascii_lowercase(), def);
        }
        let mut overrides: Vec<(PgMajor, PgMajor, String, String, String)> = Vec::new();
        for (i, line) in versions.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let err = |message: String| Error::CatalogData {
                file: "versions.tsv",
                line: i + 1,
                message,
            };
            let f: Vec<String> = line.split('\t').map(unescape).collect();
            let major = |s: &str| -> std::result::Result<PgMajor, String> {
                s.parse::<PgMajor>().map_err(|e| e.to_string())
            };
            let known = |base: &mut BTreeMap<String, ParamDef>,
                         n: &str|
             -> std::result::Result<String, String> {
                let k = n.to_ascii_lowercase();
                if base.contains_key(&k) {
                    Ok(k)
                } else {
                    Err(format!("{n} is not in pg15.tsv"))
                }
            };
            match (f[0].as_str(), f.len()) {
                ("since", 3) => {
                    let k = known(&mut base, &f[1]).map_err(err)?;
                    let v = major(&f[2]).map_err(err)?;
                    base.get_mut(&k).expect("checked above").since = v;
                }
                ("until", 3) => {
                    let k = known(&mut base, &f[1]).map_err(err)?;
                    let v = major(&f[2]).map_err(err)?;
                    base.get_mut(&k).expect("checked above").until = Some(v);
                }
                ("rename", 4) => {
                    let k = known(&mut base, &f[1]).map_err(err)?;
                    base.get_mut(&k).expect("checked above").renamed_to = Some(f[2].clone());
                }
                ("attr", 6) => {
                    let from = major(&f[1]).map_err(err)?;
                    let to = major(&f[2]).map_err(err)?;
                    overrides.push((
                        from,
                        to,
                        f[3].to_ascii_lowercase(),
                        f[4].clone(),
                        f[5].clone(),
                    ));
                }
                ("param", 14) => {
                    let since = major(&f[1]).map_err(err)?;
                    let until = if f[2] == "-" {
                        None
                    } else {
                        Some(major(&f[2]).map_err(err)?)
                    };
                    let def = def_from_fields(&f[3..], since, until).map_err(err)?;
                    let k = def.name.to_ascii_lowercase();
                    if base.contains_key(&k) {
                        return Err(err(format!("{} is already in pg15.tsv", def.name)));
                    }
                    base.insert(k, def);
                }
                (kind, n) => {
                    return Err(err(format!("unknown line kind {kind:?} with {n} fields")));
                }
            }
        }
        if let Some((.., name, _, _)) = overrides.iter().find(|o| !base.contains_key(&o.2)) {
            return Err(Error::CatalogData {
                file: "versions.tsv",
                line: 0,
                message: format!("attr for unknown parameter {name}"),
            });
        }
        let mut versions_out = Vec::new();
        for v in PgMajor::all() {
            let mut map = BTreeMap::new();
            for (k, def) in &base {
                if !def.exists_in(v) {
                    continue;
                }
                let mut d = def.clone();
                for (from, to, name, field, value) in &overrides {
                    if name == k && (*from..=*to).contains(&v) {
                        apply_attr(&mut d, field, value).map_err(|message| Error::CatalogData {
                            file: "versions.tsv",
                            line: 0,
                            message,
                        })?;
                    }
                }
                map.insert(k.clone(), d);
            }
            versions_out.push(map);
        }
        Ok(Catalog {
            versions: versions_out,
        })
    }

    fn map(&self, version: PgMajor) -> &BTreeMap<String, ParamDef> {
        &self.versions[(version.get() - PgMajor::MIN.get()) as usize]
    }

    /// The definition of `name` (case-insensitive) in `version`.
    pub fn get(&self, version: PgMajor, name: &str) -> Option<&ParamDef> {
        self.map(version).get(&name.to_ascii_lowercase())
    }

    /// Every parameter of `version`, sorted by lower-case name.
    pub fn params(&self, version: PgMajor) -> impl Iterator<Item = &ParamDef> {
        self.map(version).values()
    }

    /// Number of parameters in `version`.
    pub fn len(&self, version: PgMajor) -> usize {
        self.map(version).len()
    }

    /// Always false: every major has parameters (present for clippy's `len_without_is_empty`).
    pub fn is_empty(&self, version: PgMajor) -> bool {
        self.map(version).is_empty()
    }

    /// The definition of `name` in any major (the newest that has it).
    pub fn find_any(&self, name: &str) -> Option<&ParamDef> {
        let k = name.to_ascii_lowercase();
        PgMajor::all().rev().find_map(|v| self.map(v).get(&k))
    }

    /// The parameter that was renamed to `name`, if any.
    pub fn predecessor(&self, name: &str) -> Option<&ParamDef> {
        PgMajor::all().flat_map(|v| self.map(v).values()).find(|d| {
            d.renamed_to
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }

    /// Up to three names of `version` closest to `name` (for "did you mean").
    pub fn suggest(&self, version: PgMajor, name: &str) -> Vec<String> {
        let needle = name.to_ascii_lowercase();
        let mut scored: Vec<(f64, &str)> = self
            .map(version)
            .iter()
            .map(|(k, d)| {
                let jw = strsim::jaro_winkler(&needle, k);
                let lev = strsim::normalized_levenshtein(&needle, k);
                let contains = needle.len() >= 4 && k.contains(needle.as_str());
                let score = if contains { jw.max(0.9) } else { jw.max(lev) };
                (score, d.name.as_str())
            })
            .filter(|(s, _)| *s >= 0.8)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        scored
            .into_iter()
            .take(3)
            .map(|(_, n)| n.to_string())
            .collect()
    }
}

fn def_from_fields(
    f: &[String],
    since: PgMajor,
    until: Option<PgMajor>,
) -> std::result::Result<ParamDef, String> {
    if f.len() != 11 {
        return Err(format!("expected 11 columns, found {}", f.len()));
    }
    let param_type = ParamType::from_pg(&f[1]).ok_or_else(|| format!("bad type {:?}", f[1]))?;
    let unit = if f[2].is_empty() {
        None
    } else {
        Some(Unit::from_pg(&f[2]).ok_or_else(|| format!("bad unit {:?}", f[2]))?)
    };
    let context = Context::from_pg(&f[7]).ok_or_else(|| format!("bad context {:?}", f[7]))?;
    let mut def = ParamDef {
        name: f[0].clone(),
        param_type,
        unit,
        min: None,
        max: None,
        enum_values: Vec::new(),
        enum_aliases: BTreeMap::new(),
        context,
        in_file: match f[8].as_str() {
            "yes" => true,
            "no" => false,
            other => return Err(format!("bad in_file {other:?}")),
        },
        default: f[9].clone(),
        description: f[10].clone(),
        since,
        until,
        renamed_to: None,
    };
    apply_attr(&mut def, "min", &f[3])?;
    apply_attr(&mut def, "max", &f[4])?;
    apply_attr(&mut def, "enum_values", &f[5])?;
    apply_attr(&mut def, "enum_aliases", &f[6])?;
    Ok(def)
}

fn apply_attr(d: &mut ParamDef, field: &str, value: &str) -> std::result::Result<(), String> {
    let empty = value.is_empty() || value == "-";
    match field {
        "type" => {
            d.param_type =
                ParamType::from_pg(value).ok_or_else(|| format!("bad type {value:?}"))?;
            if d.param_type != ParamType::Enum {
                d.enum_values.clear();
                d.enum_aliases.clear();
            }
        }
        "unit" => {
            d.unit = if empty {
                None
            } else {
                Some(Unit::from_pg(value).ok_or("bad unit")?)
            }
        }
        "min" | "max" => {
            let n = if empty {
                None
            } else if d.param_type == ParamType::Integer {
                Some(Number::Integer(
                    value
                        .parse()
                        .map_err(|_| format!("bad {field} {value:?}"))?,
                ))
            } else {
                Some(Number::Real(
                    value
                        .parse()
                        .map_err(|_| format!("bad {field} {value:?}"))?,
                ))
            };
            if field == "min" { d.min = n } else { d.max = n }
        }
        "enum_values" => {
            d.enum_values = if empty {
                Vec::new()
            } else {
                value
                    .split(',')
                    .map(|v| {
                        if v == "\"\"" {
                            String::new()
                        } else {
                            v.to_string()
                        }
                    })
                    .collect()
            }
        }
        "enum_aliases" => {
            d.enum_aliases.clear();
            if !empty {
                for pair in value.split(',') {
                    let (a, v) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("bad alias {pair:?}"))?;
                    d.enum_aliases.insert(a.to_ascii_lowercase(), v.to_string());
                }
            }
        }
        "context" => d.context = Context::from_pg(value).ok_or("bad context")?,
        "in_file" => d.in_file = value == "yes",
        "default" => {
            d.default = if value == "-" {
                String::new()
            } else {
                value.to_string()
            }
        }
        other => return Err(format!("unknown attribute {other:?}")),
    }
    Ok(())
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u32) -> PgMajor {
        PgMajor::new(n).expect("supported")
    }

    #[test]
    fn embedded_data_loads_with_plausible_sizes() {
        let c = Catalog::from_data(PG15_TSV, VERSIONS_TSV).expect("valid data");
        for m in PgMajor::all() {
            assert!((320..=420).contains(&c.len(m)), "{m}: {}", c.len(m));
        }
        assert_eq!(
            c.len(v(15)),
            PG15_TSV.lines().filter(|l| !l.starts_with('#')).count() - 1
        );
    }

    #[test]
    fn parameters_per_major() {
        let counts: Vec<usize> = PgMajor::all().map(|m| catalog().len(m)).collect();
        assert_eq!(counts, [332, 347, 354, 362, 378]);
    }

    #[test]
    fn version_differences_apply() {
        let c = catalog();
        assert!(c.get(v(13), "compute_query_id").is_none());
        assert!(c.get(v(14), "compute_query_id").is_some());
        assert!(c.get(v(15), "force_parallel_mode").is_some());
        assert!(c.get(v(16), "force_parallel_mode").is_none());
        assert!(c.get(v(16), "debug_parallel_query").is_some());
        assert!(c.get(v(17), "old_snapshot_threshold").is_none());
        assert!(c.get(v(17), "transaction_timeout").is_some());
        // Failover logical slots (docs/slots.md: what RALE does on PostgreSQL 17).
        for name in ["sync_replication_slots", "synchronized_standby_slots"] {
            assert!(c.get(v(16), name).is_none(), "{name}");
            assert!(c.get(v(17), name).is_some(), "{name}");
        }
        assert!(c.get(v(14), "stats_temp_directory").is_some());
        assert!(c.get(v(15), "stats_temp_directory").is_none());
        assert_eq!(
            c.get(v(14), "wal_compression").expect("exists").param_type,
            ParamType::Bool
        );
        assert_eq!(
            c.get(v(15), "wal_compression").expect("exists").param_type,
            ParamType::Enum
        );
        assert_eq!(
            c.get(v(13), "restore_command").expect("exists").context,
            Context::Postmaster
        );
        assert_eq!(
            c.get(v(14), "restore_command").expect("exists").context,
            Context::Sighup
        );
        assert_eq!(
            c.get(v(17), "maintenance_work_mem").expect("exists").min,
            Some(Number::Integer(64))
        );
        assert_eq!(
            c.get(v(16), "maintenance_work_mem").expect("exists").min,
            Some(Number::Integer(1024))
        );
        assert_eq!(
            c.get(v(15), "Shared_Buffers")
                .expect("case-insensitive")
                .name,
            "shared_buffers"
        );
    }

    #[test]
    fn suggestions_find_typos() {
        let s = catalog().suggest(v(15), "shared_buffer");
        assert_eq!(s.first().map(String::as_str), Some("shared_buffers"));
        let s = catalog().suggest(v(15), "max_conections");
        assert_eq!(s.first().map(String::as_str), Some("max_connections"));
        assert!(catalog().suggest(v(15), "zzzzqqqq").is_empty());
    }
}
