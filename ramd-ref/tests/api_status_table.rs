//! `docs/api.md` lists, for every operation, the status codes it can answer; this test
//! derives that table from the OpenAPI document (`ramd_ref::api::openapi::document`, the
//! one `GET /openapi.json` serves and schemathesis checks against a live agent) and fails
//! when the page says otherwise. `RALE_BLESS=1` rewrites the page's table.

use std::fmt::Write as _;

const BEGIN: &str = "<!-- status-codes:begin (generated: RALE_BLESS=1 cargo test -p ramd-ref --test api_status_table) -->";
const END: &str = "<!-- status-codes:end -->";

/// The table: one row per path, each method with its codes.
fn table() -> String {
    let doc = serde_json::to_value(ramd_ref::api::openapi::document()).expect("serializes");
    let paths = doc["paths"].as_object().expect("paths");
    let mut rows: Vec<(&String, &serde_json::Value)> = paths.iter().collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::from("| path | method: status codes |\n| --- | --- |\n");
    for (path, item) in rows {
        let mut cells = Vec::new();
        for method in ["get", "head", "options", "post", "put", "patch", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let mut codes: Vec<&String> = op["responses"]
                .as_object()
                .map(|r| r.keys().collect())
                .unwrap_or_default();
            codes.sort();
            let codes: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
            cells.push(format!("`{}` {}", method.to_uppercase(), codes.join(", ")));
        }
        let _ = writeln!(out, "| `{path}` | {} |", cells.join(" · "));
    }
    out
}

#[test]
fn docs_status_code_table_matches_the_openapi_document() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/api.md");
    let page = std::fs::read_to_string(&file).expect("docs/api.md");
    let (Some(start), Some(end)) = (page.find(BEGIN), page.find(END)) else {
        panic!("docs/api.md lacks the generated status-code table ({BEGIN} … {END})");
    };
    let current = page[start + BEGIN.len()..end].trim();
    let wanted = table();
    if std::env::var_os("RALE_BLESS").is_some() {
        let updated = format!(
            "{}{BEGIN}\n{wanted}{END}{}",
            &page[..start],
            &page[end + END.len()..]
        );
        std::fs::write(&file, updated).expect("writing docs/api.md");
        return;
    }
    assert_eq!(
        current,
        wanted.trim(),
        "docs/api.md's status-code table differs from the OpenAPI document: \
         RALE_BLESS=1 cargo test -p ramd-ref --test api_status_table rewrites it"
    );
}
