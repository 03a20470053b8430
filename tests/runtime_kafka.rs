//! Jobs on a real Kafka protocol peer: librdkafka's mock broker, in-process. Restarts restore
//! state from the checkpoint topic; a crash between checkpoints loses no input and counts
//! nothing twice; bad records reach the dead-letter topic with their headers.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::json;
use streamctl::compile::{compile, CompiledProject};
use streamctl::connectors::consumer::read_topic;
use streamctl::connectors::embedded::EmbeddedBroker;
use streamctl::connectors::kafka::Cluster;
use streamctl::diagnostics::Diagnostics;
use streamctl::graph::NodeId;
use streamctl::ops::host::{job_topics, run_jobs, source_topics};
use streamctl::project::config::Guarantee;
use streamctl::project::Project;
use streamctl::runtime::bounded::{run_model, BoundedOptions};
use streamctl::runtime::codec::Record;
use streamctl::runtime::task_context;
use streamctl::runtime::worker::{JobStats, KafkaJob, RunControl, RunOptions};

fn project() -> Arc<CompiledProject> {
    let mut diags = Diagnostics::new();
    let p = Project::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runtime"), &mut diags).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    Arc::new(rt.block_on(compile(p, diags)))
}

/// 200 clicks over ~60 s of event time, slightly out of order, users 1..=7.
fn clicks() -> Vec<serde_json::Value> {
    (0..200i64)
        .map(|i| {
            let jitter = if i % 10 == 3 { -700 } else { 0 };
            json!({"user_id": 1 + (i * 7919) % 7, "url": format!("/p{}", i % 5), "ts": 1_000 + i * 300 + jitter})
        })
        .collect()
}

fn setup(cp: &CompiledProject, models: &[String]) -> EmbeddedBroker {
    let broker = EmbeddedBroker::start().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut topics = source_topics(cp, models);
    topics.extend(job_topics(cp, models, true));
    rt.block_on(Cluster::Embedded(&broker).ensure_topics(&topics)).unwrap();
    broker
}

fn produce(broker: &EmbeddedBroker, topic: &str, values: &[String]) {
    let p: ThreadedProducer<_> = Cluster::Embedded(broker).client_config().create().unwrap();
    for v in values {
        p.send(BaseRecord::<[u8], [u8]>::to(topic).partition(0).payload(v.as_bytes())).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

fn opts() -> RunOptions {
    RunOptions {
        until_caught_up: true,
        max_batch_records: 16,
        max_batch_bytes: 1 << 20,
        max_batch_wait: Duration::from_millis(50),
        checkpoint_interval: Duration::from_secs(3600),
        idle_timeout: Duration::ZERO,
        ..RunOptions::default()
    }
}

fn run(
    cp: &Arc<CompiledProject>,
    broker: &EmbeddedBroker,
    model: &str,
    opts: &RunOptions,
    control: RunControl,
) -> JobStats {
    let client = Cluster::Embedded(broker).client_config();
    let mut r = run_jobs(cp.clone(), &[model.to_string()], &client, opts, Arc::new(control));
    r.pop().unwrap().1.unwrap()
}

/// Runs a job batch by batch and drops it in the middle of batch `crash_in`: its outputs are
/// produced, its checkpoint is not written (a worker killed at that moment).
fn run_and_crash(
    cp: &Arc<CompiledProject>,
    broker: &EmbeddedBroker,
    model: &str,
    opts: &RunOptions,
    crash_in: usize,
) -> JobStats {
    let client = Cluster::Embedded(broker).client_config();
    let stats = JobStats { model: model.to_string(), ..Default::default() };
    let mut job = KafkaJob::start(cp.clone(), model, &client, opts, stats).unwrap();
    let mut batches = 0;
    loop {
        if job.poll_and_process(false).unwrap() > 0 {
            batches += 1;
            if batches == crash_in {
                return job.into_stats();
            }
        }
        job.settle(false, true).unwrap();
    }
}

fn output_values(broker: &EmbeddedBroker, topic: &str) -> Vec<String> {
    read_topic(&Cluster::Embedded(broker).client_config(), topic)
        .unwrap()
        .into_iter()
        .map(|(_, v)| String::from_utf8(v.unwrap_or_default()).unwrap())
        .collect()
}

/// What the model gives over all the clicks at once, offline.
fn reference(cp: &CompiledProject, model: &str, values: &[String]) -> BTreeSet<String> {
    let records: Vec<(NodeId, Record)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                NodeId::Source("web.clicks".into()),
                Record {
                    partition: 0,
                    offset: i as i64,
                    timestamp: 0,
                    key: None,
                    value: Some(v.clone().into_bytes().into()),
                    headers: Vec::new(),
                },
            )
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let task = streamctl::runtime::task_context();
    let r = rt
        .block_on(run_model(cp, model, &records, BoundedOptions { batch_size: 16, end_of_input: false }, task))
        .unwrap();
    r.outputs.iter().map(|o| String::from_utf8(o.value.clone().unwrap().to_vec()).unwrap()).collect()
}

#[test]
fn a_restarted_job_resumes_from_its_checkpoint() {
    let cp = project();
    let model = "tumbling_final";
    let broker = setup(&cp, &[model.to_string()]);
    let values: Vec<String> = clicks().iter().map(|v| v.to_string()).collect();
    let (first, second) = values.split_at(120);
    produce(&broker, "web.clicks", first);
    let s1 = run(&cp, &broker, model, &opts(), RunControl::default());
    assert_eq!(s1.records_in, 120);
    assert_eq!(s1.restored_epoch, None);
    produce(&broker, "web.clicks", second);
    let s2 = run(&cp, &broker, model, &opts(), RunControl::default());
    assert_eq!(s2.restored_epoch, Some(1), "the second run starts from the first run's checkpoint");
    assert_eq!(s2.records_in, 80, "and reads only what is new");
    let out = output_values(&broker, &cp.models[model].topic);
    let distinct: BTreeSet<String> = out.iter().cloned().collect();
    assert_eq!(out.len(), distinct.len(), "no output is repeated after a clean stop");
    assert_eq!(distinct, reference(&cp, model, &values));
}

#[test]
fn a_crash_between_checkpoints_loses_nothing_and_counts_nothing_twice() {
    let cp = project();
    let model = "tumbling_final";
    let broker = setup(&cp, &[model.to_string()]);
    let values: Vec<String> = clicks().iter().map(|v| v.to_string()).collect();
    produce(&broker, "web.clicks", &values);
    // Checkpoint after every batch, crash in the middle of batch 7 (outputs out, no checkpoint).
    let every_batch = RunOptions { checkpoint_interval: Duration::ZERO, ..opts() };
    let s1 = run_and_crash(&cp, &broker, model, &every_batch, 7);
    assert_eq!(s1.checkpoints, 6);
    let s2 = run(&cp, &broker, model, &every_batch, RunControl::default());
    assert_eq!(s2.restored_epoch, Some(6));
    let out = output_values(&broker, &cp.models[model].topic);
    let distinct: BTreeSet<String> = out.iter().cloned().collect();
    // Every window's count is exact; outputs after the last checkpoint may appear twice.
    assert_eq!(distinct, reference(&cp, model, &values));
    assert!(out.len() >= distinct.len());
}

/// Writes a lease record to a job's checkpoint topic, as a worker claiming (or renewing) the job would.
fn write_lease(broker: &EmbeddedBroker, topic: &str, holder: &str, epoch: u64, expires_ms: i64) {
    let p: ThreadedProducer<_> = Cluster::Embedded(broker).client_config().create().unwrap();
    let value = json!({"holder": holder, "epoch": epoch, "expires_ms": expires_ms}).to_string();
    let record = BaseRecord::<[u8], [u8]>::to(topic).partition(0).key(b"lease".as_slice()).payload(value.as_bytes());
    p.send(record).map_err(|(e, _)| e).unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
}

#[test]
fn at_least_once_checkpoints_of_an_owner_that_lost_its_lease_are_ignored() {
    let cp = project();
    let model = "tumbling_final";
    let broker = setup(&cp, &[model.to_string()]);
    let values: Vec<String> = clicks().iter().map(|v| v.to_string()).collect();
    produce(&broker, "web.clicks", &values);
    let ck_topic = cp.models[model].resolved.checkpoint_topic.clone();
    let far = 4_000_000_000_000;
    let alo = RunOptions { checkpoint_interval: Duration::ZERO, guarantee: Guarantee::AtLeastOnce, ..opts() };
    // Worker a holds lease epoch 1 and checkpoints after each of three batches.
    write_lease(&broker, &ck_topic, "a", 1, far);
    let client = Cluster::Embedded(&broker).client_config();
    let stats = JobStats { model: model.to_string(), ..Default::default() };
    let mut zombie = KafkaJob::start(cp.clone(), model, &client, &alo, stats).unwrap();
    zombie.owned_under(1);
    let batch = |job: &mut KafkaJob| {
        while job.poll_and_process(false).unwrap() == 0 {}
        job.settle(false, true).unwrap();
    };
    for _ in 0..3 {
        batch(&mut zombie);
    }
    let read_while_owner = zombie.stats().records_in;
    // Its batch is slow: worker b claims epoch 2 meanwhile (and releases it at once, so that the run below
    // can claim the job), and only then does a write its fourth checkpoint.
    write_lease(&broker, &ck_topic, "b", 2, far);
    write_lease(&broker, &ck_topic, "b", 2, 0);
    batch(&mut zombie);
    let zombie_stats = zombie.into_stats();
    assert_eq!(zombie_stats.checkpoints, 4);
    let s = run(&cp, &broker, model, &alo, RunControl::default());
    assert_eq!(s.restored_epoch, Some(3), "the checkpoint written after epoch 2 was claimed is not restored");
    assert_eq!(s.records_in + read_while_owner, values.len() as u64, "it reads on from the third checkpoint's offsets");
    let out = output_values(&broker, &cp.models[model].topic);
    let distinct: BTreeSet<String> = out.iter().cloned().collect();
    assert_eq!(distinct, reference(&cp, model, &values), "every window exact, none counts an input twice");
}

#[test]
fn bad_records_go_to_the_dead_letter_topic_with_headers() {
    let cp = project();
    let model = "enriched";
    let broker = setup(&cp, &[model.to_string()]);
    let values = [
        json!({"user_id": 1, "url": "/a", "ts": 1}).to_string(),
        r#"{"user_id": "x"}"#.to_string(),
        json!({"user_id": 2, "url": "/b", "ts": 2}).to_string(),
    ];
    // The bad record carries a header of its own: the dead-letter copy keeps it.
    let p: ThreadedProducer<_> = Cluster::Embedded(&broker).client_config().create().unwrap();
    for (i, v) in values.iter().enumerate() {
        let mut rec = BaseRecord::<[u8], [u8]>::to("web.clicks").partition(0).payload(v.as_bytes());
        if i == 1 {
            rec = rec.headers(OwnedHeaders::new().insert(Header { key: "trace-id", value: Some("abc") }));
        }
        p.send(rec).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
    let s = run(&cp, &broker, model, &opts(), RunControl::default());
    assert_eq!((s.records_in, s.records_out, s.dead_lettered), (3, 2, 1));
    let client = Cluster::Embedded(&broker).client_config();
    let consumer: BaseConsumer = client.clone().set("group.id", "t").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("web.clicks.dlq", 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let msg = loop {
        if let Some(m) = consumer.poll(Duration::from_secs(5)) {
            break m.unwrap();
        }
    };
    assert_eq!(msg.payload(), Some(values[1].as_bytes()), "the original bytes");
    let headers = msg.headers().unwrap();
    let get = |k: &str| {
        headers.iter().find(|h| h.key == k).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(get("streamctl.source.topic").as_deref(), Some("web.clicks"));
    assert_eq!(get("streamctl.source.offset").as_deref(), Some("1"));
    assert_eq!(get("streamctl.job").as_deref(), Some("enriched"));
    assert!(get("streamctl.error").unwrap().contains("x"));
    assert_eq!(get("trace-id").as_deref(), Some("abc"), "the record's own header");
    assert_eq!(headers.iter().next().map(|h| h.key), Some("trace-id"), "its own headers come first");
}

/// A source read by two jobs of one run: its bad record lands once on the dead-letter topic
/// (written by the first job by name), and both jobs count it.
#[test]
fn a_bad_record_read_by_two_jobs_is_dead_lettered_once() {
    let cp = project();
    let models = vec!["enriched".to_string(), "long_urls".to_string()];
    let broker = setup(&cp, &models);
    let values = vec![
        json!({"user_id": 1, "url": "/abc", "ts": 1}).to_string(),
        r#"{"user_id": "x"}"#.to_string(),
        json!({"user_id": 2, "url": "/bcd", "ts": 2}).to_string(),
    ];
    produce(&broker, "web.clicks", &values);
    let client = Cluster::Embedded(&broker).client_config();
    let results = run_jobs(cp.clone(), &models, &client, &opts(), Arc::new(RunControl::default()));
    let stats: Vec<JobStats> = results.into_iter().map(|(_, r)| r.unwrap()).collect();
    for s in &stats {
        assert_eq!((s.records_in, s.bad_records), (3, 1), "{}", s.model);
    }
    let written: Vec<(&str, u64)> = stats.iter().map(|s| (s.model.as_str(), s.dead_lettered)).collect();
    assert_eq!(written, vec![("enriched", 1), ("long_urls", 0)]);
    let dead = read_with_headers(&broker, "web.clicks.dlq");
    assert_eq!(dead.len(), 1, "one copy, not one per job: {dead:?}");
    assert_eq!(dead[0].0, values[1]);
}

#[test]
fn a_job_can_start_from_a_point_in_time() {
    let cp = project();
    let model = "from_time";
    let broker = setup(&cp, &[model.to_string()]);
    let p: ThreadedProducer<_> = Cluster::Embedded(&broker).client_config().create().unwrap();
    for (ts, url) in [(1_000i64, "/early"), (5_000, "/on-time"), (9_000, "/late")] {
        let v = json!({"user_id": 1, "url": url, "ts": ts}).to_string();
        p.send(BaseRecord::<[u8], [u8]>::to("web.clicks").partition(0).payload(v.as_bytes()).timestamp(ts))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
    let s = run(&cp, &broker, model, &opts(), RunControl::default());
    assert_eq!(s.records_in, 2, "replay starts at the first record at or after 00:00:04");
    let out = output_values(&broker, &cp.models[model].topic);
    assert_eq!(out, vec![r#"{"user_id":1,"url":"/on-time"}"#, r#"{"user_id":1,"url":"/late"}"#]);
}

/// Two partitions, one far ahead of the other in event time: live, the slow one holds the
/// watermark back until both idle. A job stopped before that point and restarted with no new
/// input must still close the windows its inputs had passed: the event time the partitions
/// reached is part of the checkpoint, like their offsets.
#[test]
fn a_restart_keeps_the_event_time_its_partitions_reached() {
    let cp = project();
    let model = "tumbling_final";
    let values: Vec<String> = clicks().iter().map(|v| v.to_string()).collect();
    let (early, late) = values.split_at(100);
    let load = |broker: &EmbeddedBroker| {
        let p: ThreadedProducer<_> = Cluster::Embedded(broker).client_config().create().unwrap();
        for (part, vs) in [(1, early), (0, late)] {
            for v in vs {
                p.send(BaseRecord::<[u8], [u8]>::to("web.clicks").partition(part).payload(v.as_bytes()))
                    .map_err(|(e, _)| e)
                    .unwrap();
            }
        }
        p.flush(Duration::from_secs(10)).unwrap();
    };
    // The reference: one uninterrupted run to the end of the input.
    let uninterrupted = setup(&cp, &[model.to_string()]);
    load(&uninterrupted);
    run(&cp, &uninterrupted, model, &opts(), RunControl::default());
    let want: BTreeSet<String> = output_values(&uninterrupted, &cp.models[model].topic).into_iter().collect();

    let broker = setup(&cp, &[model.to_string()]);
    load(&broker);
    // Live, with an idle timeout far away: stopped while partition 1 still holds event time back.
    let live = RunOptions { until_caught_up: false, idle_timeout: Duration::from_secs(3600), ..opts() };
    let control = Arc::new(RunControl::default());
    let stopper = {
        let control = control.clone();
        let (client, topic) = (Cluster::Embedded(&broker).client_config(), cp.models[model].topic.clone());
        // Stopped once its outputs stand still: every record read, and the windows it can close closed.
        std::thread::spawn(move || {
            let outputs = || read_topic(&client, &topic).unwrap().len();
            std::thread::sleep(Duration::from_secs(3));
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let mut last = outputs();
            while std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_secs(1));
                let now = outputs();
                if now > 0 && now == last {
                    break;
                }
                last = now;
            }
            control.stop.store(true, Ordering::SeqCst);
        })
    };
    let client = Cluster::Embedded(&broker).client_config();
    let first = run_jobs(cp.clone(), &[model.to_string()], &client, &live, control).pop().unwrap().1.unwrap();
    stopper.join().unwrap();
    assert_eq!(first.records_in, 200);
    let before: BTreeSet<String> = output_values(&broker, &cp.models[model].topic).into_iter().collect();
    assert!(before.len() < want.len(), "the slow partition held some windows open");
    // Restarted with nothing new to read.
    let second = run(&cp, &broker, model, &opts(), RunControl::default());
    assert_eq!(second.records_in, 0);
    let got: BTreeSet<String> = output_values(&broker, &cp.models[model].topic).into_iter().collect();
    assert_eq!(got, want);
}

/// `streamctl test` (the bounded driver) and a job on Kafka run records through the same
/// micro-batch driver: the same outputs, the same dead letters with the same reasons (a bad
/// record, an event for a window that had closed), the same counts.
#[test]
fn the_kafka_worker_and_the_bounded_driver_give_the_same_results() {
    let cp = project();
    let model = "tumbling_final";
    let broker = setup(&cp, &[model.to_string()]);
    let mut values: Vec<String> = clicks().iter().map(|v| v.to_string()).collect();
    values.insert(50, r#"{"user_id": "x"}"#.to_string());
    values.push(json!({"user_id": 1, "url": "/too-late", "ts": 1_000}).to_string());
    produce(&broker, "web.clicks", &values);
    let on_kafka = run(&cp, &broker, model, &opts(), RunControl::default());

    let records: Vec<(NodeId, Record)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let r = Record {
                partition: 0,
                offset: i as i64,
                timestamp: 0,
                key: None,
                value: Some(v.clone().into_bytes().into()),
                headers: Vec::new(),
            };
            (NodeId::Source("web.clicks".into()), r)
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let bounded = rt
        .block_on(run_model(
            &cp,
            model,
            &records,
            BoundedOptions { batch_size: 16, end_of_input: false },
            task_context(),
        ))
        .unwrap();

    let mut kafka_out = output_values(&broker, &cp.models[model].topic);
    let mut bounded_out: Vec<String> =
        bounded.outputs.iter().map(|o| String::from_utf8(o.value.clone().unwrap().to_vec()).unwrap()).collect();
    kafka_out.sort();
    bounded_out.sort();
    assert!(!kafka_out.is_empty());
    assert_eq!(kafka_out, bounded_out);
    assert_eq!((on_kafka.late, on_kafka.dead_lettered), (bounded.late as u64, bounded.dead_letters.len() as u64));
    assert_eq!((on_kafka.late, on_kafka.dead_lettered), (1, 2));

    let dead: Vec<(String, String)> = read_with_headers(&broker, "web.clicks.dlq")
        .into_iter()
        .map(|(value, error)| (value, error.unwrap_or_default()))
        .collect();
    let want: Vec<(String, String)> = bounded
        .dead_letters
        .iter()
        .map(|d| (String::from_utf8(d.record.value.clone().unwrap().to_vec()).unwrap(), d.reason.clone()))
        .collect();
    assert_eq!(dead, want);
}

/// Values of partition 0 of a topic with their `streamctl.error` header.
fn read_with_headers(broker: &EmbeddedBroker, topic: &str) -> Vec<(String, Option<String>)> {
    let consumer: BaseConsumer = Cluster::Embedded(broker).client_config().set("group.id", "t").create().unwrap();
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(5)).unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    while (out.len() as i64) < high {
        let Some(m) = consumer.poll(Duration::from_secs(5)) else { break };
        let m = m.unwrap();
        let error = m.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == "streamctl.error")
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into())
        });
        out.push((String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(), error));
    }
    out
}

/// The run says where event time stands when it ends: the watermark, and the windows that are
/// still open (their results come only once event time passes them).
#[test]
fn a_job_reports_its_watermark_and_the_windows_still_open() {
    let cp = project();
    let model = "tumbling_final";
    let broker = setup(&cp, &[model.to_string()]);
    let values: Vec<String> = clicks().iter().map(|v| v.to_string()).collect();
    produce(&broker, "web.clicks", &values);
    let stats = run(&cp, &broker, model, &opts(), RunControl::default());
    let lateness = cp.sources["web.clicks"].allowed_lateness_ms;
    assert_eq!(stats.watermark, Some(60_700 - lateness), "the largest event time read, less the lateness");

    let emitted = output_values(&broker, &cp.models[model].topic).len();
    let records: Vec<(NodeId, Record)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let r = Record {
                partition: 0,
                offset: i as i64,
                timestamp: 0,
                key: None,
                value: Some(v.clone().into_bytes().into()),
                headers: Vec::new(),
            };
            (NodeId::Source("web.clicks".into()), r)
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let all = rt
        .block_on(run_model(
            &cp,
            model,
            &records,
            BoundedOptions { batch_size: 16, end_of_input: true },
            task_context(),
        ))
        .unwrap();
    // One result per key and window, emitted when the window closes.
    assert!(stats.open_windows > 0);
    assert_eq!(stats.open_windows as usize, all.outputs.len() - emitted);
}

/// `run --until-caught-up --select downstream` without its upstream model: the upstream's topic
/// as it is at the start is the input (the job once waited forever for an upstream job that this
/// run does not host).
#[test]
fn a_bounded_run_without_its_upstream_model_reads_the_upstream_topic_to_its_end() {
    let cp = project();
    let models = vec!["enriched".to_string(), "downstream".to_string()];
    let broker = setup(&cp, &models);
    let users: Vec<String> = (1..=4).map(|u| json!({"user_id": u, "name": format!("user {u}")}).to_string()).collect();
    produce(&broker, "web.users", &users);
    let clicks: Vec<String> = clicks().iter().map(|c| c.to_string()).collect();
    produce(&broker, "web.clicks", &clicks);
    let upstream = run(&cp, &broker, "enriched", &opts(), RunControl::default());
    assert_eq!(upstream.records_out, 200);

    let (tx, rx) = std::sync::mpsc::channel();
    let (cp2, client) = (cp.clone(), Cluster::Embedded(&broker).client_config());
    std::thread::spawn(move || {
        let r = run_jobs(cp2, &["downstream".to_string()], &client, &opts(), Arc::new(RunControl::default()));
        let _ = tx.send(r);
    });
    let mut r = rx.recv_timeout(Duration::from_secs(60)).expect("the downstream job alone did not finish");
    let stats = r.pop().unwrap().1.unwrap();
    let enriched = output_values(&broker, &cp.models["enriched"].topic);
    let named = enriched.iter().filter(|v| !v.contains(r#""name":null"#)).count();
    assert!(named > 0 && named < 200, "{named} of the enriched clicks have a user name");
    assert_eq!((stats.records_in, stats.records_out), (200, named as u64));
    assert_eq!(output_values(&broker, &cp.models["downstream"].topic).len(), named);
}

/// Records deleted while the job was stopped, before it read them (here: the embedded broker keeps
/// at most 5 MiB per partition, so big records written meanwhile push out the small ones it had
/// not read), are not skipped quietly: the restarted job says which offsets it lost, and reads on
/// from the first record still there.
#[test]
fn records_deleted_before_they_were_read_are_reported_as_lost() {
    let cp = project();
    let model = "lenient_copy";
    let broker = setup(&cp, &[model.to_string()]);
    let click = |i: i64, url: &str| json!({"user_id": i, "url": url, "ts": 1_000 + i}).to_string();
    produce(&broker, "web.clicks", &(0..10).map(|i| click(i, "/a")).collect::<Vec<_>>());
    let first = run(&cp, &broker, model, &opts(), RunControl::default());
    assert_eq!((first.records_in, first.gaps.len()), (10, 0));

    // While the job is stopped: 10 small records, then 8 of 900 KB; the broker drops the oldest.
    produce(&broker, "web.clicks", &(10..20).map(|i| click(i, "/b")).collect::<Vec<_>>());
    let big = "x".repeat(900_000);
    produce(&broker, "web.clicks", &(20..28).map(|i| click(i, &big)).collect::<Vec<_>>());
    let client = Cluster::Embedded(&broker).client_config();
    let consumer: BaseConsumer = client.clone().set("group.id", "gap-test").create().unwrap();
    let (low, high) = consumer.fetch_watermarks("web.clicks", 0, Duration::from_secs(10)).unwrap();
    assert!(low > 10 && high == 28, "the broker kept offsets {low}..{high}");

    let second = run(&cp, &broker, model, &opts(), RunControl::default());
    assert_eq!(
        second.gaps,
        vec![format!("web.clicks partition 0 offsets 10..{low} were deleted before being processed")]
    );
    assert_eq!(second.records_in, (high - low) as u64, "every record still there is read");
}
