//! `streamctl test`, the test runner: passing and failing suites with their exact reports,
//! JUnit XML, errors in test files, and the batch-boundary check catching a batch-dependent
//! operator.

mod common;

use std::path::Path;

use assert_cmd::Command;
use streamctl::compile::compile;
use streamctl::diagnostics::Diagnostics;
use streamctl::project::Project;
use streamctl::runtime::bounded::{run_model_steps, BoundedOptions, Step};
use streamctl::testing::{prepare, run_test_with, Failure};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn streamctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("streamctl").unwrap().args(args).env("NO_COLOR", "1").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_example_project_tests_pass() {
    let (code, stdout, _) =
        streamctl(&["test", "--project-dir", &format!("{}/example-project", env!("CARGO_MANIFEST_DIR"))]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.ends_with("tests: 8 passed, 0 failed\n"), "{stdout}");
}

#[test]
fn the_runtime_fixture_tests_pass() {
    let (code, stdout, _) = streamctl(&["test", "--project-dir", &fixture("runtime")]);
    assert_eq!(code, 0, "{stdout}");
    insta::assert_snapshot!("runtime_fixture_tests", stdout);
}

#[test]
fn a_broken_expectation_fails_with_a_diff() {
    let tmp = tempfile::tempdir().unwrap();
    let junit = tmp.path().join("junit.xml");
    let (code, stdout, _) =
        streamctl(&["test", "--project-dir", &fixture("testing/failing"), "--junit", junit.to_str().unwrap()]);
    assert_eq!(code, 1);
    insta::assert_snapshot!("failing_tests", stdout);
    let xml = std::fs::read_to_string(junit).unwrap();
    assert!(xml.contains(r#"<testsuites name="streamctl" tests="3" failures="2""#), "{xml}");
    assert!(xml.contains(r#"<testcase classname="long_urls" name="this_one_passes""#), "{xml}");
    assert!(
        xml.contains(
            "<failure message=\"rows differ (1 expected but not produced: -, 1 produced but not expected: +)\">"
        ),
        "{xml}"
    );
}

#[test]
fn selection_picks_tests_by_model() {
    let (code, stdout, _) = streamctl(&["test", "--project-dir", &fixture("testing/failing"), "--select", "long_urls"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, "  PASS  long_urls › this_one_passes\n\ntests: 1 passed, 0 failed\n");
}

#[test]
fn errors_in_test_files_point_at_the_line() {
    let (code, _, stderr) = streamctl(&["test", "--project-dir", &fixture("testing/bad_test_file")]);
    assert_eq!(code, 1);
    insta::assert_snapshot!("bad_test_file", stderr);
}

#[test]
fn the_batch_check_catches_an_operator_that_depends_on_batch_boundaries() {
    let mut diags = Diagnostics::new();
    let p = Project::load(Path::new(&fixture("testing/failing")), &mut diags).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cp = rt.block_on(compile(p, diags));
    let decl = cp.project.unit_tests.iter().find(|t| t.test.name == "this_one_passes").unwrap();
    let t = prepare(&cp, decl).unwrap();
    let task = streamctl::runtime::task_context();
    // A stand-in operator that loses the last record of every batch of two or more.
    let outcome = rt.block_on(run_test_with(&cp, &t, |cp, t, batch| {
        let task = task.clone();
        Box::pin(async move {
            let mut steps: Vec<Step> = t.steps.clone();
            steps.push(Step::Record(
                streamctl::graph::NodeId::Source("web.clicks".into()),
                streamctl::runtime::codec::Record {
                    partition: 0,
                    offset: 1,
                    timestamp: 0,
                    key: None,
                    value: Some(br#"{"user_id": 2, "url": "xyz", "ts": 4}"#.to_vec().into()),
                    headers: Vec::new(),
                },
            ));
            if batch >= 2 {
                steps.pop();
            }
            run_model_steps(
                cp,
                &t.decl.test.model,
                &steps,
                BoundedOptions { batch_size: batch, end_of_input: true },
                task,
            )
            .await
            .map_err(|e| e.to_string())
        })
    }));
    assert!(!outcome.passed());
    let batch_failures: Vec<&Failure> =
        outcome.failures.iter().filter(|f| matches!(f, Failure::BatchDependence { .. })).collect();
    assert_eq!(batch_failures.len(), 2, "{:?}", outcome.failures);
    let report = streamctl::testing::report::describe(batch_failures[0]);
    assert!(report.contains("depends on batch boundaries: with batches of 2"), "{report}");
    assert!(report.contains(r#"- {"doubled":8,"url":"XYZ","user_id":2}"#) || report.contains("XYZ"), "{report}");
}

/// Headers given to a source (`_headers`, or a header column by name) are read into its header
/// columns; headers a model writes are compared with an expected row's `_headers`.
#[test]
fn headers_are_given_read_written_and_checked() {
    let (code, stdout, _) = streamctl(&["test", "--project-dir", &fixture("headers")]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.ends_with("tests: 2 passed, 0 failed\n"), "{stdout}");
    // A written header that differs from the expectation fails the test.
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(Path::new(&fixture("headers")), tmp.path(), &["target"]);
    common::replace_in(
        tmp.path(),
        "tests/headers.yml",
        "_headers: {trace-id: abc, source-url: /a}",
        "_headers: {trace-id: abd}",
    );
    let (code, stdout, _) = streamctl(&["test", "--project-dir", tmp.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL  traced › headers_are_read_into_columns_and_written_from_columns"), "{stdout}");
}
