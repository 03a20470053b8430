//! The broken-project corpus: each folder under `tests/fixtures/broken/` is a small project with
//! one kind of mistake; `streamctl validate` must exit 1 and print exactly the snapshot, with
//! the file, line and column of the mistake.

use assert_cmd::Command;

fn validate(case: &str) -> (i32, String, String) {
    let dir = format!("{}/tests/fixtures/broken/{case}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::cargo_bin("streamctl")
        .unwrap()
        .args(["validate", "--project-dir", &dir])
        .env("NO_COLOR", "1")
        .env_remove("STREAMCTL_TARGET")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

macro_rules! broken {
    ($($case:ident),* $(,)?) => {$(
        #[test]
        fn $case() {
            let (code, stdout, stderr) = validate(stringify!($case));
            assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
            assert_eq!(stdout, "");
            insta::assert_snapshot!(stringify!($case), stderr);
        }
    )*};
}

broken!(
    yaml_type_error,
    yaml_unknown_field,
    yaml_enum_error,
    unknown_ref,
    cycle,
    sql_syntax_error,
    unknown_column,
    type_mismatch,
    contract_violation,
    duplicate_model,
    bad_jinja,
    bad_window,
    stream_stream_join,
    many_errors,
    group_by_not_selected,
    session_changes,
    unknown_default_target,
    target_env_unset,
    unsupported_version,
    test_unknown_names,
    window_out_of_range,
    topic_names,
    runaway_template,
    streaming_rejections,
    file_encoding,
    macro_errors,
    duplicate_output_column,
    yaml_any_of,
    target_topic_names,
    sink_configs,
    sink_transforms,
    every_error,
    key_formats,
    key_format_unknown,
    connector_configs,
    headers,
);

#[test]
fn json_output_lists_every_problem_with_positions() {
    let dir = format!("{}/tests/fixtures/broken/many_errors", env!("CARGO_MANIFEST_DIR"));
    let out = Command::cargo_bin("streamctl")
        .unwrap()
        .args(["validate", "--format", "json", "--project-dir", &dir])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"], 3);
    let located: Vec<String> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!("{}:{}:{} {}", d["file"].as_str().unwrap(), d["line"], d["column"], d["code"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        located,
        ["models/one.sql:1:8 sql-plan", "models/three.sql:2:1 sql-window", "models/two.sql:1:29 unknown-ref"]
    );
}
