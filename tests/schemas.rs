//! The JSON Schemas checked in under `schemas/` must be the ones generated from the config
//! types. Regenerate with `STREAMCTL_BLESS=1 cargo test --test schemas`.

use streamctl::compile::manifest::Manifest;
use streamctl::deploy::plan::ChangePlan;
use streamctl::project::schemas::FileKind;

fn check(file: &str, schema: &serde_json::Value) {
    let path = format!("{}/schemas/{file}", env!("CARGO_MANIFEST_DIR"));
    let generated = serde_json::to_string_pretty(schema).unwrap() + "\n";
    if std::env::var_os("STREAMCTL_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "schemas/{file} differs from the schema generated from the Rust types; run `STREAMCTL_BLESS=1 cargo test --test schemas` and commit it"
    );
}

#[test]
fn checked_in_schemas_match_the_config_types() {
    for kind in FileKind::ALL {
        check(kind.schema_file(), kind.schema());
    }
    check("manifest.schema.json", &Manifest::schema());
    check("plan.schema.json", &ChangePlan::schema());
}
