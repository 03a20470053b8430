//! Each operator of the runtime on small, hand-made inputs, with the exact output expected.
//! The project is `tests/fixtures/runtime/`; records go through the same decoding, operators
//! and watermarks as on Kafka (the bounded driver), in the order given.

use std::path::Path;

use serde_json::{json, Value};
use streamctl::compile::{compile, CompiledProject};
use streamctl::diagnostics::Diagnostics;
use streamctl::graph::NodeId;
use streamctl::project::Project;
use streamctl::runtime::bounded::{run_model, BoundedOptions, RunError, RunResult};
use streamctl::runtime::codec::Record;

fn project() -> CompiledProject {
    let mut diags = Diagnostics::new();
    let p = Project::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runtime"), &mut diags).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let c = rt.block_on(compile(p, diags));
    assert!(!c.diagnostics.has_errors(), "{:?}", c.diagnostics);
    c
}

fn source(name: &str) -> NodeId {
    NodeId::Source(format!("web.{name}"))
}

/// A click on partition 0 at event time `ts` ms.
fn click(user: i64, url: &str, ts: i64) -> (NodeId, Record) {
    click_on(0, user, url, ts)
}

fn click_on(partition: i32, user: i64, url: &str, ts: i64) -> (NodeId, Record) {
    let v = json!({"user_id": user, "url": url, "ts": ts});
    (
        source("clicks"),
        Record {
            partition,
            offset: 0,
            timestamp: 0,
            key: None,
            value: Some(v.to_string().into_bytes().into()),
            headers: Vec::new(),
        },
    )
}

fn raw(value: &str) -> (NodeId, Record) {
    (
        source("clicks"),
        Record {
            partition: 0,
            offset: 7,
            timestamp: 0,
            key: None,
            value: Some(value.as_bytes().to_vec().into()),
            headers: Vec::new(),
        },
    )
}

fn user(id: i64, name: Option<&str>) -> (NodeId, Record) {
    let value = name.map(|n| json!({"user_id": id, "name": n}).to_string().into_bytes());
    (
        source("users"),
        Record {
            partition: 0,
            offset: 0,
            timestamp: 0,
            key: Some(id.to_string().into_bytes().into()),
            value: value.map(Into::into),
            headers: Vec::new(),
        },
    )
}

fn with_source(mut records: Vec<(NodeId, Record)>, name: &str) -> Vec<(NodeId, Record)> {
    for (id, _) in &mut records {
        *id = source(name);
    }
    records
}

fn run(
    c: &CompiledProject,
    model: &str,
    records: &[(NodeId, Record)],
    batch_size: usize,
    end: bool,
) -> Result<RunResult, RunError> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let task = streamctl::runtime::task_context();
    rt.block_on(run_model(c, model, records, BoundedOptions { batch_size, end_of_input: end }, task))
}

fn values(r: &RunResult) -> Vec<Value> {
    r.outputs.iter().map(|o| o.value.as_ref().map_or(Value::Null, |v| serde_json::from_slice(v).unwrap())).collect()
}

fn window(start_s: i64, size_s: i64) -> (i64, i64) {
    (start_s * 1000, (start_s + size_s) * 1000)
}

#[test]
fn tumbling_emit_final_closes_windows_on_the_watermark() {
    let c = project();
    let input =
        vec![click(1, "a", 1000), click(1, "b", 2000), click(2, "a", 4999), click(1, "c", 6000), click(2, "c", 12_000)];
    let r = run(&c, "tumbling_final", &input, 1, false).unwrap();
    let (s0, e0) = window(0, 5);
    let (s1, e1) = window(5, 5);
    // Event 6000 closes [0, 5s); event 12000 closes [5s, 10s); [10s, 15s) stays open.
    assert_eq!(
        values(&r),
        vec![
            json!({"user_id": 1, "clicks": 2, "last_ts": 2000, "windowstart": s0, "windowend": e0}),
            json!({"user_id": 2, "clicks": 1, "last_ts": 4999, "windowstart": s0, "windowend": e0}),
            json!({"user_id": 1, "clicks": 1, "last_ts": 6000, "windowstart": s1, "windowend": e1}),
        ]
    );
    // Keys are the group columns and the window bounds.
    assert_eq!(
        r.outputs[0].key.as_deref(),
        Some(format!(r#"{{"user_id":1,"windowstart":{s0},"windowend":{e0}}}"#).as_bytes())
    );
    // Output timestamps are the windows' last millisecond.
    assert_eq!(r.outputs[0].timestamp, e0 - 1);
    // End of input closes the rest.
    let r = run(&c, "tumbling_final", &input, 1, true).unwrap();
    assert_eq!(values(&r).len(), 4);
}

#[test]
fn late_events_are_dead_lettered_not_counted() {
    let c = project();
    let input = vec![click(1, "a", 1000), click(1, "b", 7000), click(1, "late", 3000), click(1, "ok", 5500)];
    let r = run(&c, "tumbling_final", &input, 1, true).unwrap();
    let v = values(&r);
    assert_eq!(v[0]["clicks"], 1, "the late event must not count: {v:?}");
    assert_eq!(v[1]["clicks"], 2, "5500 is out of order but its window is open");
    assert_eq!(r.late, 1);
    assert_eq!(r.dead_letters.len(), 1);
    assert_eq!(r.dead_letters[0].reason, "late: its window had closed");
    assert!(String::from_utf8_lossy(r.dead_letters[0].record.value.as_ref().unwrap()).contains("late"));
}

#[test]
fn grace_period_keeps_windows_open_for_late_events() {
    let c = project();
    // With 2 s of grace, [0, 5s) closes only when the watermark reaches 7 s.
    let input = vec![
        click(1, "a", 1000),
        click(1, "b", 6000),
        click(1, "late-but-graced", 4000),
        click(1, "c", 7000),
        click(1, "too-late", 2000),
    ];
    let r = run(&c, "tumbling_grace", &input, 1, false).unwrap();
    let v = values(&r);
    assert_eq!(v, vec![json!({"user_id": 1, "clicks": 2, "windowstart": 0, "windowend": 5000})]);
    assert_eq!(r.late, 1);
}

#[test]
fn emit_changes_emits_every_update() {
    let c = project();
    let input = vec![click(1, "a", 1000), click(1, "b", 2000), click(2, "a", 3000), click(1, "c", 6000)];
    let r = run(&c, "tumbling_changes", &input, 1, false).unwrap();
    let counts: Vec<(i64, i64, i64)> = values(&r)
        .iter()
        .map(|v| (v["user_id"].as_i64().unwrap(), v["clicks"].as_i64().unwrap(), v["windowstart"].as_i64().unwrap()))
        .collect();
    assert_eq!(counts, vec![(1, 1, 0), (1, 2, 0), (2, 1, 0), (1, 1, 5000)]);
    // Batched input emits once per batch per touched group, with the same end state.
    let r = run(&c, "tumbling_changes", &input, 10, false).unwrap();
    let counts: Vec<(i64, i64)> =
        values(&r).iter().map(|v| (v["user_id"].as_i64().unwrap(), v["clicks"].as_i64().unwrap())).collect();
    assert_eq!(counts, vec![(1, 2), (2, 1), (1, 1)]);
}

#[test]
fn hopping_windows_count_each_event_in_every_window_it_falls_in() {
    let c = project();
    let input = vec![click(1, "a", 1000), click(2, "a", 7000), click(2, "a", 8000), click(1, "b", 9000)];
    let r = run(&c, "hopping", &input, 2, true).unwrap();
    let got: Vec<(String, i64, i64, i64)> = values(&r)
        .iter()
        .map(|v| {
            (
                v["url"].as_str().unwrap().to_string(),
                v["clicks"].as_i64().unwrap(),
                v["users"].as_i64().unwrap(),
                v["windowstart"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("a".into(), 1, 1, -5000),
            ("a".into(), 3, 2, 0),
            ("b".into(), 1, 1, 0),
            ("a".into(), 2, 1, 5000),
            ("b".into(), 1, 1, 5000),
        ]
    );
}

#[test]
fn stream_table_join_sees_the_table_as_of_each_event() {
    let c = project();
    let input = vec![
        click(1, "before", 1),
        user(1, Some("ada")),
        click(1, "x", 2),
        user(1, Some("ada lovelace")),
        click(1, "y", 3),
        user(1, None),
        click(1, "after-delete", 4),
        click(2, "z", 5),
    ];
    for batch in [1, 3, 100] {
        let r = run(&c, "enriched", &input, batch, true).unwrap();
        assert_eq!(
            values(&r),
            vec![
                json!({"user_id": 1, "url": "before", "name": null}),
                json!({"user_id": 1, "url": "x", "name": "ada"}),
                json!({"user_id": 1, "url": "y", "name": "ada lovelace"}),
                json!({"user_id": 1, "url": "after-delete", "name": null}),
                json!({"user_id": 2, "url": "z", "name": null}),
            ],
            "batches of {batch}"
        );
    }
}

#[test]
fn inner_join_drops_unmatched_rows_and_applies_extra_conditions() {
    let c = project();
    let input = vec![
        user(1, Some("ada")),
        click(1, "x", 10),
        click(1, "skip", 11),
        click(2, "y", 12),
        user(2, Some("bob")),
        click(2, "z", 13),
    ];
    let r = run(&c, "enriched_inner", &input, 2, true).unwrap();
    assert_eq!(
        values(&r),
        vec![json!({"user_id": 1, "name": "ada", "ts": 10}), json!({"user_id": 2, "name": "bob", "ts": 13})]
    );
    // Output timestamps are the clicks' event times.
    assert_eq!(r.outputs.iter().map(|o| o.timestamp).collect::<Vec<_>>(), vec![10, 13]);
}

#[test]
fn stateless_projection_and_filter() {
    let c = project();
    let input = vec![click(1, "ab", 5), click(2, "abc", 6), click(3, "abcd", 7)];
    let r = run(&c, "long_urls", &input, 2, true).unwrap();
    assert_eq!(
        values(&r),
        vec![json!({"user_id": 2, "url": "ABC", "doubled": 12}), json!({"user_id": 3, "url": "ABCD", "doubled": 14})]
    );
}

#[test]
fn running_aggregate_updates_its_groups() {
    let c = project();
    let input = vec![click(1, "a", 10), click(2, "a", 30), click(1, "a", 20), click(1, "b", 40)];
    let r = run(&c, "per_url", &input, 1, true).unwrap();
    let v = values(&r);
    assert_eq!(v.len(), 4, "one update per event with batches of 1");
    assert_eq!(v[2], json!({"url": "a", "clicks": 3, "users": 2, "first_ts": 10, "mean_ts": 20.0}));
    assert_eq!(r.outputs[2].key.as_deref(), Some(&b"\"a\""[..]));
    assert_eq!(v[3], json!({"url": "b", "clicks": 1, "users": 1, "first_ts": 40, "mean_ts": 40.0}));
}

#[test]
fn bad_records_fail_skip_or_go_to_the_dead_letter_topic() {
    let c = project();
    let input =
        vec![click(1, "a", 1), raw(r#"{"user_id": "one", "url": "a", "ts": 2}"#), raw("not json"), click(2, "b", 3)];
    // dead_letter: the two bad records, with reasons, and the good ones go through.
    let r = run(&c, "enriched", &input, 10, true).unwrap();
    assert_eq!(values(&r).len(), 2);
    let reasons: Vec<&str> = r.dead_letters.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(reasons.len(), 2);
    assert!(reasons[0].contains("one"), "{reasons:?}");
    assert_eq!(reasons[1], "not a JSON object");
    // skip: counted.
    let r = run(&c, "lenient_copy", &with_source(input.clone(), "clicks_lenient"), 10, true).unwrap();
    assert_eq!((values(&r).len(), r.skipped, r.dead_letters.len()), (2, 2, 0));
    // fail: the job stops, naming topic, partition, offset and reason.
    let e = run(&c, "strict_copy", &with_source(input, "clicks_strict"), 10, true).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("bad record on web.clicks partition 0 offset 7: "), "{msg}");
}

#[test]
fn one_partition_behind_holds_the_watermark() {
    let c = project();
    // Partition 1 is behind: windows close only when both partitions have passed them.
    let input = vec![
        click_on(0, 1, "a", 1000),
        click_on(1, 1, "b", 2000),
        click_on(0, 1, "c", 9000),
        click_on(1, 1, "d", 4000),
        click_on(1, 1, "e", 8000),
    ];
    let r = run(&c, "tumbling_final", &input, 1, false).unwrap();
    let v = values(&r);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["clicks"], 3, "the event at 4000 from the slow partition is not late");
    assert_eq!(r.late, 0);
}

#[test]
fn session_windows_merge_when_an_event_bridges_them() {
    let c = project();
    // 1000 and 2000 make one session, 6000 another (4 s > 3 s gap); 4500 arrives late but within
    // grace and joins them all; 20000 starts a new session and closes the first.
    let input = vec![
        click(1, "a", 1000),
        click(1, "b", 2000),
        click(1, "c", 6000),
        click(2, "x", 6500),
        click(1, "bridge", 4500),
        click(1, "d", 20_000),
    ];
    for batch in [1, 2, 100] {
        let r = run(&c, "sessions", &input, batch, true).unwrap();
        assert_eq!(
            values(&r),
            vec![
                json!({"user_id": 1, "clicks": 4, "first_ts": 1000, "last_ts": 6000, "windowstart": 1000, "windowend": 9000}),
                json!({"user_id": 2, "clicks": 1, "first_ts": 6500, "last_ts": 6500, "windowstart": 6500, "windowend": 9500}),
                json!({"user_id": 1, "clicks": 1, "first_ts": 20000, "last_ts": 20000, "windowstart": 20000, "windowend": 23000}),
            ],
            "batches of {batch}"
        );
    }
    // Without the bridge the two sessions stay apart.
    let apart = vec![click(1, "a", 1000), click(1, "b", 2000), click(1, "c", 6000)];
    let r = run(&c, "sessions", &apart, 1, true).unwrap();
    let counts: Vec<i64> = values(&r).iter().map(|v| v["clicks"].as_i64().unwrap()).collect();
    assert_eq!(counts, vec![2, 1]);
}

#[test]
fn a_job_decodes_only_the_columns_its_query_reads() {
    let c = project();
    let m = &c.models["tumbling_final"];
    let clicks = source("clicks");
    let schema = &m.input_schemas[&clicks];
    let read: Vec<&str> =
        m.job.root.columns_read(&clicks).into_iter().map(|i| schema.field(i).name().as_str()).collect();
    assert!(read.contains(&"user_id") && read.contains(&"ts"), "{read:?}");
    assert!(!read.contains(&"url"), "{read:?}");
}

#[test]
fn a_column_the_query_never_reads_is_still_checked() {
    // tumbling_final reads user_id and ts of clicks, not url: a url that is not a string still
    // makes its record bad (dead-lettered, as a job reading url would have it), and an escaped
    // one is still good.
    let c = project();
    let input = vec![
        click(1, "a", 1000),
        raw(r#"{"user_id": 1, "url": 5, "ts": 2000}"#),
        raw(r#"{"user_id": 1, "url": "tab\t\"quoted\"", "ts": 3000}"#),
        click(1, "b", 11_000),
    ];
    let r = run(&c, "tumbling_final", &input, 10, true).unwrap();
    assert_eq!(r.dead_letters.len(), 1, "{:?}", r.dead_letters);
    assert!(r.dead_letters[0].reason.contains("url"), "{}", r.dead_letters[0].reason);
    let v = values(&r);
    assert_eq!(v[0]["clicks"], json!(2), "{v:?}");
    assert_eq!(v[0]["last_ts"], json!(3000), "{v:?}");
}
