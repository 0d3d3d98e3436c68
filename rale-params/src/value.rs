//! Parsing a setting's text exactly as PostgreSQL's GUC code does (`parse_bool`,
//! `parse_int`, `parse_real`, unit conversion with its rounding, enum lookup), and printing
//! values the way `SHOW` and `pg_settings.setting` do.
//!
//! [`parse_setting`] receives the string PostgreSQL's `SET`/`ALTER SYSTEM` would see (already
//! unquoted, not trimmed); [`crate::validate()`] trims and unquotes configuration-file syntax first.

use serde::{Deserialize, Serialize};

use crate::catalog::ParamDef;
use crate::types::{Number, ParamType, Unit};

/// A parsed value in the parameter's base unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum ParamValue {
    /// A boolean.
    Bool(bool),
    /// An integer in the base unit.
    Integer(i64),
    /// A real in the base unit.
    Real(f64),
    /// A string.
    String(String),
    /// The enum value as PostgreSQL shows it.
    Enum(String),
}

impl ParamValue {
    /// The value as `pg_settings.setting` would hold it: base units, no unit suffix. Reals use
    /// the shortest text that reads back to the same number, so this round-trips exactly.
    pub fn setting(&self) -> String {
        match self {
            ParamValue::Bool(b) => if *b { "on" } else { "off" }.to_string(),
            ParamValue::Integer(i) => i.to_string(),
            ParamValue::Real(r) => format_real_exact(*r),
            ParamValue::String(s) | ParamValue::Enum(s) => s.clone(),
        }
    }

    /// The value as `SHOW` prints it (largest exact unit, `%g` for reals).
    pub fn display(&self, unit: Option<Unit>) -> String {
        match (self, unit) {
            (ParamValue::Integer(i), Some(u)) if *i > 0 => {
                let (v, name) = int_from_base_unit(*i, u);
                format!("{v}{name}")
            }
            (ParamValue::Real(r), Some(u)) if *r > 0.0 => {
                let (v, name) = real_from_base_unit(*r, u);
                format!("{}{name}", format_g(v))
            }
            (ParamValue::Real(r), _) => format_g(*r),
            _ => self.setting(),
        }
    }
}

/// Why a value's text was not accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueError {
    /// Not a value of the parameter's type (PostgreSQL: "invalid value for parameter").
    Invalid {
        /// PostgreSQL's hint, if it gives one (valid units).
        hint: Option<String>,
    },
    /// Parsed, but outside the bounds (or outside the 32-bit integer range).
    OutOfRange {
        /// The parsed value in base units.
        value: f64,
    },
    /// Not one of the enum's values.
    InvalidEnum,
}

/// Parses `text` for parameter `def` as PostgreSQL would (including the range check).
pub fn parse_setting(def: &ParamDef, text: &str) -> Result<ParamValue, ValueError> {
    if text.contains('\0') {
        return Err(ValueError::Invalid {
            hint: Some("values cannot contain NUL bytes".into()),
        });
    }
    match def.param_type {
        ParamType::Bool => parse_bool(text)
            .map(ParamValue::Bool)
            .ok_or(ValueError::Invalid { hint: None }),
        ParamType::Integer => {
            let v = parse_int(text, def.unit)?;
            let min = def.min.map_or(i64::from(i32::MIN), |n| n.as_f64() as i64);
            let max = def.max.map_or(i64::from(i32::MAX), |n| n.as_f64() as i64);
            if v < min || v > max {
                return Err(ValueError::OutOfRange { value: v as f64 });
            }
            Ok(ParamValue::Integer(v))
        }
        ParamType::Real => {
            let v = parse_real(text, def.unit)?;
            let min = def.min.map_or(f64::MIN, Number::as_f64);
            let max = def.max.map_or(f64::MAX, Number::as_f64);
            if v < min || v > max {
                return Err(ValueError::OutOfRange { value: v });
            }
            Ok(ParamValue::Real(v))
        }
        ParamType::Enum => lookup_enum(def, text)
            .map(ParamValue::Enum)
            .ok_or(ValueError::InvalidEnum),
        ParamType::String => Ok(ParamValue::String(text.to_string())),
    }
}

/// Finds the value `text` stands for among the enum's values and hidden spellings.
pub fn lookup_enum(def: &ParamDef, text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    if let Some(v) = def.enum_aliases.get(&lower) {
        return Some(v.clone());
    }
    def.enum_values
        .iter()
        .find(|v| v.eq_ignore_ascii_case(text))
        .cloned()
}

/// PostgreSQL's `parse_bool`: `on`, `off`, and any case-insensitive prefix of `true`,
/// `false`, `yes`, `no`; `of` for off (a lone `o` is ambiguous); `1` and `0` exactly.
pub fn parse_bool(text: &str) -> Option<bool> {
    let lower = text.to_ascii_lowercase();
    let l = lower.as_str();
    let prefix_of = |word: &str| !l.is_empty() && word.starts_with(l);
    match l.as_bytes().first()? {
        b't' if prefix_of("true") => Some(true),
        b'f' if prefix_of("false") => Some(false),
        b'y' if prefix_of("yes") => Some(true),
        b'n' if prefix_of("no") => Some(false),
        b'o' if l == "on" => Some(true),
        b'o' if l.len() >= 2 && "off".starts_with(l) => Some(false),
        b'1' if l.len() == 1 => Some(true),
        b'0' if l.len() == 1 => Some(false),
        _ => None,
    }
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// PostgreSQL's `parse_int`: C `strtol` (base 0: decimal, `0x` hex, leading-0 octal), a
/// float re-parse when a `.`/`e` follows or the number overflows, an optional unit after
/// optional spaces, rounding half to even, and the 32-bit range check.
pub fn parse_int(text: &str, unit: Option<Unit>) -> Result<i64, ValueError> {
    let b = text.as_bytes();
    let (lval, mut end, overflow) = strtol0(b);
    let mut val = lval as f64;
    let mut erange = overflow;
    if overflow || matches!(b.get(end), Some(b'.' | b'e' | b'E')) {
        let (d, e2, er2) = strtod(b);
        val = d;
        end = e2;
        erange = er2;
    }
    if end == 0 || erange || val.is_nan() {
        return Err(ValueError::Invalid { hint: None });
    }
    val = apply_unit(val, b, end, unit)?;
    val = val.round_ties_even();
    if val > f64::from(i32::MAX) || val < f64::from(i32::MIN) {
        return Err(ValueError::OutOfRange { value: val });
    }
    Ok(val as i64)
}

/// PostgreSQL's `parse_real`: C `strtod`, then an optional unit (no range check here).
pub fn parse_real(text: &str, unit: Option<Unit>) -> Result<f64, ValueError> {
    let b = text.as_bytes();
    let (val, end, erange) = strtod(b);
    if end == 0 || erange || val.is_nan() {
        return Err(ValueError::Invalid { hint: None });
    }
    apply_unit(val, b, end, unit)
}

fn apply_unit(val: f64, b: &[u8], mut end: usize, unit: Option<Unit>) -> Result<f64, ValueError> {
    while end < b.len() && is_c_space(b[end]) {
        end += 1;
    }
    if end == b.len() {
        return Ok(val);
    }
    let Some(base) = unit else {
        return Err(ValueError::Invalid { hint: None });
    };
    convert_to_base_unit(val, &b[end..], base).ok_or_else(|| ValueError::Invalid {
        hint: Some(if base.is_memory() {
            "Valid units for this parameter are \"B\", \"kB\", \"MB\", \"GB\", and \"TB\".".into()
        } else {
            "Valid units for this parameter are \"us\", \"ms\", \"s\", \"min\", \"h\", and \"d\"."
                .into()
        }),
    })
}

/// User-facing units, largest first, with their size in bytes or microseconds.
const MEMORY_UNITS: [(&str, f64); 5] = [
    ("TB", 1_099_511_627_776.0),
    ("GB", 1_073_741_824.0),
    ("MB", 1_048_576.0),
    ("kB", 1024.0),
    ("B", 1.0),
];
const TIME_UNITS: [(&str, f64); 6] = [
    ("d", 86_400_000_000.0),
    ("h", 3_600_000_000.0),
    ("min", 60_000_000.0),
    ("s", 1_000_000.0),
    ("ms", 1000.0),
    ("us", 1.0),
];

fn user_units(base: Unit) -> &'static [(&'static str, f64)] {
    if base.is_memory() {
        &MEMORY_UNITS
    } else {
        &TIME_UNITS
    }
}

/// The multiplier from a user unit to `base`, computed the way PostgreSQL's table is.
fn multiplier(user_finest: f64, base: Unit) -> f64 {
    user_finest / base.finest()
}

/// Size of user unit `name` (e.g. `"GB"`) in `base` units, if it is one of its units.
pub fn unit_multiplier(name: &str, base: Unit) -> Option<f64> {
    user_units(base)
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| multiplier(*f, base))
}

fn convert_to_base_unit(value: f64, unit: &[u8], base: Unit) -> Option<f64> {
    // At most three non-space characters, then only spaces (MAX_UNIT_LEN).
    let mut len = 0;
    while len < unit.len() && !is_c_space(unit[len]) && len < 3 {
        len += 1;
    }
    if unit[len..].iter().any(|c| !is_c_space(*c)) {
        return None;
    }
    let name = std::str::from_utf8(&unit[..len]).ok()?;
    let table = user_units(base);
    let i = table.iter().position(|(n, _)| *n == name)?;
    let mut cvalue = value * multiplier(table[i].1, base);
    // A fractional value is rounded to a multiple of the next smaller unit, if any.
    if let Some((_, next)) = table.get(i + 1) {
        let m = multiplier(*next, base);
        cvalue = (cvalue / m).round_ties_even() * m;
    }
    Some(cvalue)
}

fn int_from_base_unit(v: i64, base: Unit) -> (i64, &'static str) {
    for (name, finest) in user_units(base) {
        let m = multiplier(*finest, base);
        if m <= 1.0 || v % (m as i64) == 0 {
            return ((v as f64 / m).round_ties_even() as i64, name);
        }
    }
    (v, base.as_str())
}

fn real_from_base_unit(v: f64, base: Unit) -> (f64, &'static str) {
    let mut out = (v, base.as_str());
    for (name, finest) in user_units(base) {
        let value = v / multiplier(*finest, base);
        out = (value, name);
        if value > 0.0 && ((value.round_ties_even() / value) - 1.0).abs() <= 1e-8 {
            break;
        }
    }
    out
}

/// C `strtol(s, &end, 0)` on a 64-bit `long`: (value, end index, overflowed).
/// `end` is 0 when no digits were found.
fn strtol0(b: &[u8]) -> (i64, usize, bool) {
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    let mut neg = false;
    if let Some(c @ (b'+' | b'-')) = b.get(i) {
        neg = *c == b'-';
        i += 1;
    }
    let radix: u32 = if b.get(i) == Some(&b'0')
        && matches!(b.get(i + 1), Some(b'x' | b'X'))
        && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    {
        i += 2;
        16
    } else if b.get(i) == Some(&b'0') {
        8
    } else {
        10
    };
    let start = i;
    let mut acc: i128 = 0;
    let mut overflow = false;
    while let Some(d) = b.get(i).and_then(|c| (*c as char).to_digit(radix)) {
        if !overflow {
            acc = acc * i128::from(radix) + i128::from(d);
            if acc > i128::from(i64::MAX) + 1 {
                overflow = true;
            }
        }
        i += 1;
    }
    if i == start {
        return (0, 0, false);
    }
    let signed = if neg { -acc } else { acc };
    if overflow || signed > i128::from(i64::MAX) || signed < i128::from(i64::MIN) {
        return (if neg { i64::MIN } else { i64::MAX }, i, true);
    }
    (signed as i64, i, false)
}

/// glibc `strtod`: (value, end index, ERANGE). `end` is 0 when nothing was converted.
fn strtod(b: &[u8]) -> (f64, usize, bool) {
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    let mut sign = 1.0;
    if let Some(c @ (b'+' | b'-')) = b.get(i) {
        if *c == b'-' {
            sign = -1.0;
        }
        i += 1;
    }
    let rest = &b[i..];
    let starts_ci =
        |w: &str| rest.len() >= w.len() && rest[..w.len()].eq_ignore_ascii_case(w.as_bytes());
    if starts_ci("infinity") {
        return (sign * f64::INFINITY, i + 8, false);
    }
    if starts_ci("inf") {
        return (sign * f64::INFINITY, i + 3, false);
    }
    if starts_ci("nan") {
        let mut j = i + 3;
        if b.get(j) == Some(&b'(') {
            let mut k = j + 1;
            while k < b.len() && (b[k].is_ascii_alphanumeric() || b[k] == b'_') {
                k += 1;
            }
            if b.get(k) == Some(&b')') {
                j = k + 1;
            }
        }
        return (f64::NAN, j, false);
    }
    if rest.len() >= 2
        && rest[0] == b'0'
        && matches!(rest[1], b'x' | b'X')
        && let Some((v, len)) = hex_float(&rest[2..])
    {
        let v = sign * v;
        return (v, i + 2 + len, v.is_infinite());
    }
    // Decimal: digits [. digits] [e [sign] digits]
    let mut j = i;
    let mut mantissa = String::new();
    let mut nonzero = false;
    while j < b.len() && b[j].is_ascii_digit() {
        nonzero |= b[j] != b'0';
        mantissa.push(b[j] as char);
        j += 1;
    }
    let int_digits = mantissa.len();
    let mut frac = String::new();
    if b.get(j) == Some(&b'.') {
        let mut k = j + 1;
        while k < b.len() && b[k].is_ascii_digit() {
            nonzero |= b[k] != b'0';
            frac.push(b[k] as char);
            k += 1;
        }
        if int_digits + frac.len() > 0 {
            j = k;
        }
    }
    if int_digits + frac.len() == 0 {
        return (0.0, 0, false);
    }
    let mut exp = String::new();
    if matches!(b.get(j), Some(b'e' | b'E')) {
        let mut k = j + 1;
        let mut e = String::new();
        if let Some(c @ (b'+' | b'-')) = b.get(k) {
            e.push(*c as char);
            k += 1;
        }
        let digits_start = k;
        while k < b.len() && b[k].is_ascii_digit() {
            e.push(b[k] as char);
            k += 1;
        }
        if k > digits_start {
            exp = e;
            j = k;
        }
    }
    let text = format!(
        "{}{}.{}e{}",
        if sign < 0.0 { "-" } else { "" },
        if mantissa.is_empty() { "0" } else { &mantissa },
        if frac.is_empty() { "0" } else { &frac },
        if exp.is_empty() { "0" } else { &exp }
    );
    // Exponents beyond i32 overflow Rust's parser the same way as glibc: clamp them.
    let v: f64 = text.parse().unwrap_or_else(|_| {
        let neg_exp = exp.starts_with('-');
        match (neg_exp, nonzero) {
            (_, false) => 0.0,
            (true, true) => 0.0,
            (false, true) => sign * f64::INFINITY,
        }
    });
    let erange = v.is_infinite() || (nonzero && (v == 0.0 || v.abs() < f64::MIN_POSITIVE));
    (v, j, erange)
}

/// Hex float body after `0x`: hexdigits [. hexdigits] [p [sign] digits].
fn hex_float(b: &[u8]) -> Option<(f64, usize)> {
    let mut i = 0;
    let mut m = 0f64;
    let mut digits = 0;
    while i < b.len() && b[i].is_ascii_hexdigit() {
        m = m * 16.0 + f64::from((b[i] as char).to_digit(16)?);
        i += 1;
        digits += 1;
    }
    let mut scale = 0i32;
    if b.get(i) == Some(&b'.') {
        let mut k = i + 1;
        let mut fd = 0;
        while k < b.len() && b[k].is_ascii_hexdigit() {
            m = m * 16.0 + f64::from((b[k] as char).to_digit(16)?);
            k += 1;
            fd += 1;
        }
        if digits + fd > 0 {
            i = k;
            digits += fd;
            scale = scale.saturating_sub(4 * fd);
        }
    }
    if digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'p' | b'P')) {
        let mut k = i + 1;
        let mut neg = false;
        if let Some(c @ (b'+' | b'-')) = b.get(k) {
            neg = *c == b'-';
            k += 1;
        }
        let ds = k;
        let mut e: i32 = 0;
        while k < b.len() && b[k].is_ascii_digit() {
            e = e.saturating_mul(10).saturating_add(i32::from(b[k] - b'0'));
            k += 1;
        }
        if k > ds {
            scale = scale.saturating_add(if neg { -e } else { e });
            i = k;
        }
    }
    Some((m * 2f64.powi(scale), i))
}

/// C's `%g` (six significant digits), as PostgreSQL prints reals.
pub fn format_g(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{x:.5e}");
    let (mant, exp) = sci.split_once('e').expect("{:e} output has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    if !(-4..6).contains(&exp) {
        let mant = trim_zeros(mant);
        format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        trim_zeros(&format!("{:.*}", (5 - exp) as usize, x)).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Shortest text that `strtod` reads back to exactly `x`.
pub fn format_real_exact(x: f64) -> String {
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e15).contains(&a) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// The unit the user wrote after the number, if it is one of `base`'s family.
pub fn user_unit_of(text: &str, base: Unit) -> Option<&'static str> {
    let t = text.trim_end_matches(|c: char| c.is_ascii_whitespace());
    user_units(base)
        .iter()
        .filter(|(n, _)| t.ends_with(n))
        .max_by_key(|(n, _)| n.len())
        .map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PgMajor, catalog::catalog};

    fn def(name: &str) -> &'static ParamDef {
        catalog().get(PgMajor::BASE, name).expect("known parameter")
    }

    fn int(name: &str, text: &str) -> Result<i64, ValueError> {
        match parse_setting(def(name), text)? {
            ParamValue::Integer(i) => Ok(i),
            other => panic!("not an integer: {other:?}"),
        }
    }

    #[test]
    fn booleans_follow_parse_bool() {
        for t in ["on", "ON", "true", "t", "tr", "TRU", "yes", "y", "ye", "1"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for t in ["off", "of", "OFF", "false", "f", "fa", "no", "n", "0"] {
            assert_eq!(parse_bool(t), Some(false), "{t}");
        }
        for t in [
            "o", "", "2", "onn", "offf", "truee", " on", "on ", "10", "nope",
        ] {
            assert_eq!(parse_bool(t), None, "{t:?}");
        }
    }

    #[test]
    fn integers_with_units_round_like_postgres() {
        assert_eq!(int("shared_buffers", "128MB"), Ok(16384));
        assert_eq!(int("shared_buffers", "128 MB"), Ok(16384));
        assert_eq!(int("shared_buffers", "1GB "), Ok(131072));
        assert_eq!(int("work_mem", "1.5GB"), Ok(1_572_864));
        assert_eq!(int("work_mem", "1.5MB"), Ok(1536));
        assert_eq!(int("work_mem", "100000B"), Ok(98));
        assert_eq!(int("work_mem", "0x100"), Ok(256));
        assert_eq!(int("work_mem", "0100"), Ok(64));
        assert_eq!(int("work_mem", "1e3"), Ok(1000));
        assert_eq!(int("statement_timeout", "5min"), Ok(300_000));
        assert_eq!(int("statement_timeout", "250ms"), Ok(250));
        assert_eq!(int("statement_timeout", "1.5s"), Ok(1500));
        assert_eq!(int("statement_timeout", "1500us"), Ok(2));
        assert_eq!(int("statement_timeout", "2500us"), Ok(2));
        assert_eq!(int("checkpoint_timeout", "1.5min"), Ok(90));
        assert_eq!(int("checkpoint_timeout", "1h"), Ok(3600));
        assert!(matches!(
            int("work_mem", "128mb"),
            Err(ValueError::Invalid { hint: Some(_) })
        ));
        assert!(matches!(
            int("work_mem", "08"),
            Err(ValueError::Invalid { .. })
        ));
        assert!(matches!(
            int("work_mem", "12 MB x"),
            Err(ValueError::Invalid { .. })
        ));
        assert!(matches!(
            int("max_connections", "10MB"),
            Err(ValueError::Invalid { hint: None })
        ));
        assert!(matches!(
            int("work_mem", "32"),
            Err(ValueError::OutOfRange { .. })
        ));
        assert!(matches!(
            int("work_mem", "9999999999"),
            Err(ValueError::OutOfRange { .. })
        ));
        assert!(matches!(
            int("work_mem", "inf"),
            Err(ValueError::Invalid { .. })
        ));
    }

    #[test]
    fn reals_enums_and_display() {
        let p = def("random_page_cost");
        assert_eq!(parse_setting(p, "1.1"), Ok(ParamValue::Real(1.1)));
        assert!(matches!(
            parse_setting(p, "-1"),
            Err(ValueError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse_setting(p, "nan"),
            Err(ValueError::Invalid { .. })
        ));
        assert!(matches!(
            parse_setting(p, "inf"),
            Err(ValueError::OutOfRange { .. })
        ));
        let d = def("vacuum_cost_delay");
        assert_eq!(
            parse_setting(d, "1s"),
            Err(ValueError::OutOfRange { value: 1000.0 })
        );
        assert_eq!(parse_setting(d, "500us"), Ok(ParamValue::Real(0.5)));
        let w = def("wal_level");
        assert_eq!(
            parse_setting(w, "REPLICA"),
            Ok(ParamValue::Enum("replica".into()))
        );
        assert_eq!(
            parse_setting(w, "hot_standby"),
            Ok(ParamValue::Enum("replica".into()))
        );
        assert_eq!(parse_setting(w, "bogus"), Err(ValueError::InvalidEnum));
        assert_eq!(
            ParamValue::Integer(16384).display(Some(Unit::Blocks8k)),
            "128MB"
        );
        assert_eq!(ParamValue::Integer(1).display(Some(Unit::Blocks8k)), "8kB");
        assert_eq!(
            ParamValue::Integer(300_000).display(Some(Unit::Milliseconds)),
            "5min"
        );
        assert_eq!(ParamValue::Integer(-1).display(Some(Unit::Kilobytes)), "-1");
        assert_eq!(
            ParamValue::Real(2.0).display(Some(Unit::Milliseconds)),
            "2ms"
        );
        assert_eq!(
            ParamValue::Real(0.5).display(Some(Unit::Milliseconds)),
            "500us"
        );
    }

    #[test]
    fn format_g_matches_c() {
        assert_eq!(format_g(1.79769e308), "1.79769e+308");
        assert_eq!(format_g(f64::MAX), "1.79769e+308");
        assert_eq!(format_g(100000.0), "100000");
        assert_eq!(format_g(1e6), "1e+06");
        assert_eq!(format_g(0.0025), "0.0025");
        assert_eq!(format_g(0.00001), "1e-05");
        assert_eq!(format_g(1.5), "1.5");
        assert_eq!(format_g(0.1), "0.1");
    }

    #[test]
    fn strtod_edges() {
        assert_eq!(strtod(b"  1.5xyz"), (1.5, 5, false));
        assert_eq!(strtod(b".5"), (0.5, 2, false));
        assert_eq!(strtod(b"5."), (5.0, 2, false));
        assert_eq!(strtod(b"1e"), (1.0, 1, false));
        assert_eq!(strtod(b"0x1.8"), (1.5, 5, false));
        assert_eq!(strtod(b"x"), (0.0, 0, false));
        assert!(strtod(b"1e400").2);
        assert!(strtod(b"1e-400").2);
        assert_eq!(strtol0(b"0x"), (0, 1, false));
        assert_eq!(strtol0(b"-0x1F"), (-31, 5, false));
        assert!(strtol0(b"99999999999999999999").2);
    }
}
