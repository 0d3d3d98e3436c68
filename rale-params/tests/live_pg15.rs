//! The catalog and the validator against a real PostgreSQL 15 server started in a temp dir.
//!
//! For every row of the server's `pg_settings`: the catalog must agree on type, unit, range,
//! enum values and context. For a sample of valid and invalid values per type, the
//! validator's verdict must match what the server accepts (`set_config` for `user` and
//! `superuser` parameters, `ALTER SYSTEM` for the others), and accepted values must
//! normalize to the server's own `pg_settings.setting`. A bounded proptest then checks that
//! every generated value the validator accepts is accepted by the server too.
#![allow(clippy::print_stdout)]

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rale_params::validate::validate_def;
use rale_params::{
    Context, LiveValidator, ParamDef, ParamType, PgMajor, Reason, Verdict, catalog, validate,
};
use tokio::runtime::Runtime;
use tokio_postgres::Client;

/// Parameters whose server-side check hooks look beyond type and range (the stack limit,
/// the sum of backend slots); the validator flags them with a note and they are reported,
/// not asserted.
const SERVER_CHECKED: &[&str] = &[
    "bonjour",
    "max_stack_depth",
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "autovacuum_max_workers",
];

fn literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

fn ident(v: &str) -> String {
    format!("\"{}\"", v.replace('"', "\"\""))
}

/// Whether the server accepts `value` for `def`, and the `pg_settings.setting` it stores
/// when that can be read back without side effects (session-settable parameters).
async fn server_accepts(
    client: &mut Client,
    def: &ParamDef,
    value: &str,
) -> (bool, Option<String>) {
    if matches!(def.context, Context::User | Context::Superuser) {
        // One statement in its own implicit transaction: the local setting ends with it, and
        // no client round trip happens while it is in force (think idle_in_transaction_session_timeout = 1).
        let ok = client
            .query_one("SELECT set_config($1, $2, true)", &[&def.name, &value])
            .await
            .is_ok();
        // Timeouts could fire during the read-back; tcp_keepalives_* show 0 on a Unix socket.
        if !ok || def.name.ends_with("timeout") || def.name.starts_with("tcp_keepalives") {
            return (ok, None);
        }
        // Read it back the same way: both statements of one simple query share the implicit transaction.
        let sql = format!(
            "SELECT set_config({}, {}, true); SELECT setting FROM pg_settings WHERE name = {}",
            literal(&def.name),
            literal(value),
            literal(&def.name)
        );
        let msgs = client
            .simple_query(&sql)
            .await
            .expect("set_config accepted the value a moment ago");
        let setting = msgs.iter().rev().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        });
        (ok, setting)
    } else {
        let sql = format!("ALTER SYSTEM SET {} = {}", ident(&def.name), literal(value));
        let ok = client.batch_execute(&sql).await.is_ok();
        if ok {
            client
                .batch_execute(&format!("ALTER SYSTEM RESET {}", ident(&def.name)))
                .await
                .expect("ALTER SYSTEM RESET");
        }
        (ok, None)
    }
}

fn samples(def: &ParamDef, server_setting: &str) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    match def.param_type {
        ParamType::Bool => {
            for s in [
                "on", "off", "ON", "Off", "true", "FALSE", "yes", "no", "1", "0", "t", "f", "y",
                "n", "tr", "fal", "ye", "of", "o", "2", "maybe", "", "onn", "offf", "truex", " on",
                "on ", "01",
            ] {
                v.push(s.into());
            }
        }
        ParamType::Integer | ParamType::Real => {
            let (min, max) = (
                def.min.expect("min").as_f64(),
                def.max.expect("max").as_f64(),
            );
            let fmt = |x: f64| {
                if def.param_type == ParamType::Integer {
                    format!("{}", x as i64)
                } else {
                    rale_params::value::format_g(x)
                }
            };
            v.extend([
                fmt(min),
                fmt(max),
                server_setting.to_string(),
                def.default.clone(),
            ]);
            if min > -1e300 {
                v.push(fmt(min - 1.0));
            }
            if max < 1e300 {
                v.push(fmt(max + 1.0));
            }
            v.push(fmt(((min.max(-1e6) + max.min(1e6)) / 2.0).round()));
            for s in [
                "abc", "", "1.5.5", "0x10", "010", "08", "1e3", "2.5", "inf", "-inf", "nan",
                "1e400", "+3", " 7 ", "7 x",
            ] {
                v.push(s.into());
            }
            match def.unit.map(|u| u.is_memory()) {
                Some(true) => v.extend(
                    [
                        "8kB", "1MB", "64MB", "128 MB", "1.5GB", "1GB", "1TB", "100000B", "2.5kB",
                        "64mb", "1 GB ", "1KB", "1GB x", "5min",
                    ]
                    .map(String::from),
                ),
                Some(false) => v.extend(
                    [
                        "250ms", "1s", "1.5s", "5min", "5 min", "1h", "1d", "100us", "1500us",
                        "0.5min", "5 MIN", "5m", "1s x", "1MB",
                    ]
                    .map(String::from),
                ),
                None => v.extend(["1kB", "1s"].map(String::from)),
            }
        }
        ParamType::Enum => {
            for e in &def.enum_values {
                v.push(e.clone());
                v.push(e.to_uppercase());
            }
            for s in [
                "on",
                "off",
                "true",
                "false",
                "yes",
                "no",
                "1",
                "0",
                "debug",
                "info",
                "archive",
                "hot_standby",
                "nonexistent",
                "",
                " on",
                "t",
            ] {
                v.push(s.into());
            }
        }
        ParamType::String => v.push(server_setting.to_string()),
    }
    v.sort();
    v.dedup();
    v
}

#[derive(Default)]
struct Tally {
    samples: usize,
    agree: usize,
    server_checked_only: Vec<String>,
    disagree: Vec<String>,
    normalized_compared: usize,
    normalized_agree: usize,
    normalized_disagree: Vec<String>,
}

fn same_setting(ours: &str, server: &str, t: ParamType) -> bool {
    match t {
        ParamType::Real => match (ours.parse::<f64>(), server.parse::<f64>()) {
            (Ok(a), Ok(b)) => a == b || ((a - b).abs() / a.abs().max(b.abs())) < 1e-5,
            _ => false,
        },
        _ => ours == server,
    }
}

#[test]
fn catalog_and_validator_agree_with_postgresql_15() {
    let rt = Runtime::new().expect("tokio runtime");
    let pg = common::ScratchPg::start().expect("scratch PostgreSQL 15");
    let mut client = rt.block_on(pg.connect()).expect("connect");
    let v15 = PgMajor::new(15).expect("15");

    // 1. Every pg_settings row against the catalog.
    let rows = rt
        .block_on(client.query(
            "SELECT name, vartype, coalesce(unit,''), coalesce(min_val,''), coalesce(max_val,''), \
             coalesce(array_to_string(enumvals, ',', '\"\"'), ''), context, setting FROM pg_settings ORDER BY name",
            &[],
        ))
        .expect("pg_settings");
    let mut attr_agree: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut attr_disagree = Vec::new();
    for row in &rows {
        let name: String = row.get(0);
        let Some(def) = catalog().get(v15, &name) else {
            attr_disagree.push(format!("{name}: missing from the catalog"));
            continue;
        };
        let server_enum: String = row.get(5);
        let server_enum: Vec<String> = if server_enum.is_empty() {
            Vec::new()
        } else {
            server_enum
                .split(',')
                .map(|s| {
                    if s == "\"\"" {
                        String::new()
                    } else {
                        s.to_string()
                    }
                })
                .collect()
        };
        let bound = |b: Option<rale_params::Number>, s: &str| match (b, s.parse::<f64>()) {
            (None, _) => s.is_empty(),
            (Some(n), Ok(x)) => n.as_f64() == x || ((n.as_f64() - x).abs() / x.abs()) < 1e-5,
            (Some(_), Err(_)) => false,
        };
        let checks = [
            ("type", def.param_type.as_str() == row.get::<_, &str>(1)),
            (
                "unit",
                def.unit.map_or("", |u| u.as_str()) == row.get::<_, &str>(2),
            ),
            ("min", bound(def.min, row.get(3))),
            ("max", bound(def.max, row.get(4))),
            ("enum_values", def.enum_values == server_enum),
            ("context", def.context.as_str() == row.get::<_, &str>(6)),
        ];
        for (attr, ok) in checks {
            let e = attr_agree.entry(attr).or_default();
            e.1 += 1;
            if ok {
                e.0 += 1;
            } else {
                attr_disagree.push(format!("{name}: {attr}"));
            }
        }
    }
    println!(
        "PostgreSQL 15 pg_settings: {} parameters; catalog for 15: {}",
        rows.len(),
        catalog().len(v15)
    );
    for (attr, (ok, n)) in &attr_agree {
        println!("  {attr:<12} agree {ok}/{n}");
    }
    assert!(
        attr_disagree.is_empty(),
        "catalog disagrees with pg_settings: {attr_disagree:?}"
    );
    assert_eq!(
        rows.len(),
        catalog().len(v15),
        "the catalog has parameters the server does not"
    );

    // 2. Sample values per type: the validator's verdict against the server's.
    let mut tallies: BTreeMap<ParamType, Tally> = BTreeMap::new();
    let mut internal_checked = 0;
    for row in &rows {
        let name: String = row.get(0);
        let setting: String = row.get(7);
        let def = catalog().get(v15, &name).expect("checked above");
        if def.context == Context::Internal {
            // Not settable: the validator says so, and so does the server.
            assert!(matches!(
                validate(v15, &name, &setting)
                    .rejection()
                    .map(|r| &r.reason),
                Some(Reason::NotSettable { .. })
            ));
            let sql = format!("ALTER SYSTEM SET {} = {}", ident(&name), literal(&setting));
            assert!(
                rt.block_on(client.batch_execute(&sql)).is_err(),
                "server let internal {name} be set"
            );
            internal_checked += 1;
            continue;
        }
        if !def.in_file {
            // SET-only or command-line-only: rejected for configuration files, like ALTER SYSTEM does.
            assert!(matches!(
                validate(v15, &name, &setting)
                    .rejection()
                    .map(|r| &r.reason),
                Some(Reason::NotSettable { .. })
            ));
            let sql = format!("ALTER SYSTEM RESET {}", ident(&name));
            assert!(
                rt.block_on(client.batch_execute(&sql)).is_err(),
                "server let {name} be in a file"
            );
            continue;
        }
        let t = tallies.entry(def.param_type).or_default();
        for value in samples(def, &setting) {
            let ours = validate_def(def, &value);
            let (server_ok, server_setting) = rt.block_on(server_accepts(&mut client, def, &value));
            t.samples += 1;
            if ours.is_ok() == server_ok {
                t.agree += 1;
            } else if SERVER_CHECKED.contains(&name.as_str()) {
                t.server_checked_only.push(format!("{name} = {value:?}"));
            } else {
                t.disagree.push(format!(
                    "{name} = {value:?}: ours {} server {}",
                    ours.is_ok(),
                    server_ok
                ));
            }
            if let (Verdict::Ok(a), Some(s)) = (&ours, server_setting) {
                t.normalized_compared += 1;
                if same_setting(&a.setting, &s, def.param_type) {
                    t.normalized_agree += 1;
                } else {
                    t.normalized_disagree
                        .push(format!("{name} = {value:?}: ours {} server {s}", a.setting));
                }
            }
        }
    }
    println!("internal parameters refused by both: {internal_checked}");
    let (mut all, mut agree) = (0, 0);
    for (ty, t) in &tallies {
        all += t.samples;
        agree += t.agree;
        println!(
            "  {ty:<8} samples {:>5}  agree {:>5}  server-only checks {:>2}  disagree {:>2}  normalized {}/{}",
            t.samples,
            t.agree,
            t.server_checked_only.len(),
            t.disagree.len(),
            t.normalized_agree,
            t.normalized_compared
        );
        if !t.server_checked_only.is_empty() {
            println!("    server-only checks: {:?}", t.server_checked_only);
        }
    }
    println!(
        "value verdicts: {agree}/{all} agree ({:.2}%)",
        100.0 * agree as f64 / all as f64
    );
    let disagree: Vec<_> = tallies.values().flat_map(|t| t.disagree.iter()).collect();
    assert!(
        disagree.is_empty(),
        "validator and server disagree: {disagree:#?}"
    );
    let norm: Vec<_> = tallies
        .values()
        .flat_map(|t| t.normalized_disagree.iter())
        .collect();
    assert!(
        norm.is_empty(),
        "normalization differs from pg_settings.setting: {norm:#?}"
    );

    // 3. Proptest, bounded: whatever the validator accepts, the server accepts too.
    let numeric: Vec<&ParamDef> = catalog()
        .params(v15)
        .filter(|d| {
            d.context != Context::Internal
                && d.in_file
                && !SERVER_CHECKED.contains(&d.name.as_str())
        })
        .filter(|d| d.param_type != ParamType::String)
        .collect();
    let n = numeric.len();
    let generic = prop_oneof![
        (
            any::<i32>(),
            prop_oneof![Just(""), Just(" "), Just("  ")],
            prop::sample::select(vec![
                "", "B", "kB", "MB", "GB", "TB", "us", "ms", "s", "min", "h", "d", "mb", "Kb", "x",
                "e", "m"
            ])
        )
            .prop_map(|(i, sp, u)| format!("{i}{sp}{u}")),
        (
            -1e7f64..1e7,
            prop::sample::select(vec!["", "kB", "MB", "GB", "ms", "s", "min", "us"])
        )
            .prop_map(|(f, u)| format!("{f}{u}")),
        prop::sample::select(vec![
            "t", "tr", "tru", "true", "f", "fa", "of", "off", "on", "o", "y", "n", "1", "0"
        ])
        .prop_map(String::from),
        "[a-zA-Z_ 0-9.+-]{0,12}",
    ];
    // Values drawn inside each parameter's own range (in base units or a larger unit),
    // enum values in random case, and the generic mix above.
    let picked = numeric.clone();
    let cases = (0..n).prop_flat_map(move |i| {
        let def = picked[i];
        let (min, max) = (
            def.min.map_or(0.0, |m| m.as_f64()),
            def.max.map_or(1.0, |m| m.as_f64()),
        );
        let (lo, hi) = (min.max(-1e9), max.min(1e9).max(min.max(-1e9)));
        let units = match def.unit.map(|u| u.is_memory()) {
            Some(true) => vec!["", "", "kB", "MB", " kB"],
            Some(false) => vec!["", "", "ms", "s", " min"],
            None => vec![""],
        };
        let in_range =
            (lo..=hi, any::<bool>(), prop::sample::select(units)).prop_map(move |(x, frac, u)| {
                if frac {
                    format!("{x:.3}{u}")
                } else {
                    format!("{}{u}", x as i64)
                }
            });
        let enums = prop::sample::select(if def.enum_values.is_empty() {
            vec![String::from("x")]
        } else {
            def.enum_values.clone()
        })
        .prop_flat_map(|e| {
            any::<bool>().prop_map(move |up| if up { e.to_uppercase() } else { e.clone() })
        });
        (
            Just(i),
            prop_oneof![3 => in_range, 2 => enums, 3 => generic.clone()],
        )
    });
    let mut runner = TestRunner::new(Config {
        cases: 600,
        failure_persistence: None,
        ..Config::default()
    });
    let accepted = std::cell::Cell::new(0usize);
    let client_cell = std::cell::RefCell::new(&mut client);
    let result = runner.run(&cases, |(i, text)| {
        let def = numeric[i];
        let ours = validate_def(def, &text);
        if let Verdict::Ok(a) = &ours {
            accepted.set(accepted.get() + 1);
            let mut c = client_cell.borrow_mut();
            let (server_ok, server_setting) = rt.block_on(server_accepts(&mut c, def, &text));
            prop_assert!(
                server_ok,
                "{} = {text:?} accepted by the validator, refused by the server",
                def.name
            );
            if let Some(s) = server_setting {
                prop_assert!(
                    same_setting(&a.setting, &s, def.param_type),
                    "{} = {text:?}: {} vs {s}",
                    def.name,
                    a.setting
                );
            }
        }
        Ok(())
    });
    println!(
        "proptest: 600 generated values over {n} parameters, {} accepted by the validator, all accepted by the server",
        accepted.get()
    );
    result.expect("validator-accepted values are server-accepted");

    // 4. LiveValidator: no disagreement with this server, server-side checks, pg_file_settings.
    let live = rt
        .block_on(async {
            let (c, conn) = tokio_postgres::connect(&pg.conninfo(), tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            Ok::<_, tokio_postgres::Error>(c)
        })
        .expect("second connection");
    let live = rt
        .block_on(LiveValidator::new(live))
        .expect("live validator");
    assert_eq!(live.version(), v15);
    assert_eq!(live.disagreements(), Vec::new());
    let lv = rt.block_on(live.validate("work_mem", "64MB"));
    assert!(lv.verdict.is_ok() && lv.server_checked && lv.disagreement.is_none());
    let lv = rt.block_on(live.validate("DateStyle", "garbage"));
    assert!(!lv.verdict.is_ok() && lv.catalog_verdict.is_ok(), "{lv:?}");
    assert!(lv.disagreement.is_some());
    let lv = rt.block_on(live.validate("shared_buffers", "1kB"));
    assert!(!lv.verdict.is_ok() && lv.disagreement.is_none());
    // A bad line written straight into postgresql.conf shows up after reload.
    let conf = pg.data_dir().join("postgresql.conf");
    let original = std::fs::read_to_string(&conf).expect("read postgresql.conf");
    std::fs::write(&conf, format!("{original}\nwork_mem = 'lots'\n")).expect("append");
    let errors = rt.block_on(live.reload_and_check()).expect("reload");
    std::fs::write(&conf, original).expect("restore postgresql.conf");
    assert!(
        errors.iter().any(|e| e.name.as_deref() == Some("work_mem")),
        "{errors:?}"
    );
    assert!(!validate(v15, "work_mem", "'lots'").is_ok());
}
