//! Pure properties of the validator (no server): normalization is idempotent, and the
//! parsers never panic on arbitrary text.

use proptest::prelude::*;
use rale_params::validate::{quote, unquote, validate_def};
use rale_params::{PgMajor, Verdict, catalog, validate};

fn version_and_param() -> impl Strategy<Value = (PgMajor, usize)> {
    (13u32..=17, 0usize..10_000).prop_map(|(v, i)| (PgMajor::new(v).expect("supported"), i))
}

fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            any::<i64>(),
            prop::sample::select(vec![
                "", " ", "kB", "MB", "GB", "TB", "B", "ms", "s", "min", "h", "d", "us", " MB"
            ])
        )
            .prop_map(|(i, u)| format!("{i}{u}")),
        (
            any::<f64>(),
            prop::sample::select(vec!["", "kB", "GB", "s", "min", "ms"])
        )
            .prop_map(|(f, u)| format!("{f}{u}")),
        "[-+0-9a-zA-Z. _']{0,16}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn normalization_is_idempotent((version, i) in version_and_param(), text in value_text()) {
        let params: Vec<_> = catalog().params(version).collect();
        let def = params[i % params.len()];
        if let Verdict::Ok(a) = validate(version, &def.name, &text) {
            // The normalized setting, written to a configuration file (quoted, as ramd
            // writes it), validates to the same value and setting.
            let again = validate(version, &def.name, &quote(&a.setting));
            let again = again.accepted().expect("normalized setting is valid");
            prop_assert_eq!(&again.value, &a.value);
            prop_assert_eq!(&again.setting, &a.setting);
            // So does the SHOW form, for everything but reals (%g keeps six digits).
            if !matches!(a.value, rale_params::ParamValue::Real(_)) {
                let shown = validate_def(def, &a.display);
                prop_assert_eq!(&shown.accepted().expect("display form is valid").value, &a.value);
            }
        }
    }

    #[test]
    fn quote_is_the_inverse_of_unquote(text in any::<String>()) {
        prop_assert_eq!(unquote(&quote(&text)), Ok(text.clone()));
    }
}
