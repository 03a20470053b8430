//! Exactly-once on Apache Kafka (a broker process started by the test, see `e2e_common::kafka`):
//! a worker killed with SIGKILL between producing and committing leaves only an aborted
//! transaction behind; after a restart a `read_committed` reader (kcat) sees every output exactly
//! once, while a `read_uncommitted` reader also sees the aborted rows. And a zombie: a job whose
//! transactional producer was fenced by a newer owner stops with a clear error and commits nothing.
//!
//! Needs Java, Kafka's jars (`tests/kafka/fetch.sh`), kcat and python3, like `e2e_run`.

mod common;
mod e2e_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_common::kafka::KafkaCluster;
use e2e_common::*;
use serde_json::Value;
use streamctl::connectors::kafka::Cluster;
use streamctl::ops::host::{job_topics, source_topics};
use streamctl::runtime::worker::{JobStats, KafkaJob, Progress, RunOptions};
use streamctl::runtime::RunError;

/// `(key, value)` of every record of a topic, read with kcat at an isolation level.
fn kcat_read(kcat: &Path, bootstrap: &str, topic: &str, isolation: &str) -> Vec<(String, Value)> {
    let out = Command::new(kcat)
        .args(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n"])
        .args(["-X", &format!("isolation.level={isolation}")])
        .output()
        .unwrap();
    // A topic not created yet reads as empty.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once('\t').unwrap_or(("", l));
            (k.to_string(), serde_json::from_str(v).unwrap_or(Value::Null))
        })
        .collect()
}

/// Rows of `want` not matched one-to-one in `got`, and rows of `got` left over (duplicates
/// included): both empty when `got` is `want` exactly, as a multiset.
fn multiset_difference(want: &[Value], got: &[Value]) -> (Vec<Value>, Vec<Value>) {
    let mut left: Vec<Value> = got.to_vec();
    let mut missing = Vec::new();
    for w in want {
        match left.iter().position(|g| same(g, w)) {
            Some(i) => {
                left.swap_remove(i);
            }
            None => missing.push(w.clone()),
        }
    }
    (missing, left)
}

fn worker(bootstrap: &str, log: &Path, extra: &[&str]) -> Killed {
    let log = std::fs::File::create(log).unwrap();
    Killed(
        streamctl()
            .args(["run", "--project-dir"])
            .arg(root().join("example-project"))
            .args(["--target", "local", "--bootstrap-servers", bootstrap])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

#[test]
fn killed_between_produce_and_commit_then_read_committed_sees_each_output_once() {
    let Some(kcat) = tools() else { return };
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    create_source_topics(&bootstrap);
    produce_samples(&kcat, &bootstrap, 0.0..1.0);
    let logs = tempfile::tempdir().unwrap();
    let log = |n: &str| std::fs::read_to_string(logs.path().join(n)).unwrap_or_default();

    // A checkpoint interval far longer than the test: every output of the first worker stays in
    // its open transaction.
    let mut first = worker(&bootstrap, &logs.path().join("first.log"), &["--checkpoint-interval-ms", "3600000"]);
    let stream_topic = "soe.logon-enriched";
    let deadline = Instant::now() + Duration::from_secs(120);
    let produced = loop {
        let n = kcat_read(&kcat, &bootstrap, stream_topic, "read_uncommitted").len();
        if n > 0 {
            break n;
        }
        assert!(Instant::now() < deadline, "the first worker produced nothing in 120 s:\n{}", log("first.log"));
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        kcat_read(&kcat, &bootstrap, stream_topic, "read_committed").is_empty(),
        "outputs of an open transaction are visible to read_committed readers"
    );
    // SIGKILL between produce and commit: no chance to commit or abort.
    first.0.kill().unwrap();
    let _ = first.0.wait();

    // The next owner's producer (same transactional id) aborts the open transaction; the job
    // restores the last committed checkpoint (none) and processes everything again.
    let started = Instant::now();
    let second = streamctl()
        .args(["run", "--project-dir"])
        .arg(root().join("example-project"))
        .args(["--target", "local", "--bootstrap-servers", &bootstrap, "--until-caught-up"])
        .output()
        .unwrap();
    let second_log = String::from_utf8_lossy(&second.stderr).to_string();
    assert!(second.status.success(), "the restarted run failed:\n{second_log}");
    eprintln!("restart after the kill caught up in {:.1} s", started.elapsed().as_secs_f64());

    let exp = expected();
    let mut problems = Vec::new();
    for (model, topic, table) in TOPICS {
        let committed: Vec<Value> =
            kcat_read(&kcat, &bootstrap, topic, "read_committed").into_iter().map(|(_, v)| v).collect();
        let (missing, extra) = if table {
            // A table's changelog may hold intermediate updates: its latest row per key is exact.
            let records: Vec<(String, Value)> = kcat_read(&kcat, &bootstrap, topic, "read_committed");
            multiset_difference(&exp[model], &end_rows(&records, true))
        } else {
            // A stream: every row exactly once, no duplicate.
            multiset_difference(&exp[model], &committed)
        };
        if !missing.is_empty() || !extra.is_empty() {
            problems.push(format!(
                "{model}: {} missing (first {:?}), {} extra or duplicated (first {:?})",
                missing.len(),
                missing.first(),
                extra.len(),
                extra.first()
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}\n--- killed worker\n{}\n--- restart\n{second_log}", log("first.log"));
    let uncommitted = kcat_read(&kcat, &bootstrap, stream_topic, "read_uncommitted").len();
    let committed = kcat_read(&kcat, &bootstrap, stream_topic, "read_committed").len();
    eprintln!(
        "{stream_topic}: {produced}+ rows in the aborted transaction; {committed} committed, {uncommitted} read uncommitted"
    );
    assert_eq!(committed, exp["logon_enriched"].len());
    assert!(
        uncommitted >= committed + produced,
        "read_uncommitted shows the aborted rows too: {uncommitted} < {committed} + {produced}"
    );
}

/// The example project's `logon_enriched` on a broker of its own, its topics made and the sample
/// input loaded: what the cases below start from.
struct LogonEnriched {
    kcat: std::path::PathBuf,
    bootstrap: String,
    rt: tokio::runtime::Runtime,
    cp: Arc<streamctl::compile::CompiledProject>,
    cluster: Cluster<'static>,
    client: rdkafka::ClientConfig,
    // Last: the broker stops after everything that talks to it.
    _kafka: KafkaCluster,
}

const LOGON_ENRICHED: &str = "logon_enriched";

impl LogonEnriched {
    fn start() -> Option<Self> {
        let kcat = tools()?;
        let kafka = KafkaCluster::single();
        let bootstrap = kafka.bootstrap();
        create_source_topics(&bootstrap);
        produce_samples(&kcat, &bootstrap, 0.0..1.0);

        let mut diags = streamctl::diagnostics::Diagnostics::new();
        let project = streamctl::project::Project::load(&root().join("example-project"), &mut diags).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let cp = Arc::new(rt.block_on(streamctl::compile::compile(project, diags)));
        let cluster = Cluster::Kafka { bootstrap: bootstrap.clone(), properties: vec![], replication_factor: 1 };
        let models = [LOGON_ENRICHED.to_string()];
        let mut topics = source_topics(&cp, &models);
        topics.extend(job_topics(&cp, &models, false));
        rt.block_on(cluster.ensure_topics(&topics)).unwrap();
        let client = cluster.client_config();
        Some(LogonEnriched { kcat, bootstrap, rt, cp, cluster, client, _kafka: kafka })
    }

    /// Sets a topic's `max.message.bytes`.
    fn limit(&self, topic: &str, bytes: &str) {
        let configs = [("max.message.bytes".to_string(), bytes.to_string())].into_iter().collect();
        self.rt.block_on(self.cluster.alter_configs(topic, &configs)).unwrap();
    }

    fn job(&self, opts: &RunOptions) -> KafkaJob {
        let stats = JobStats { model: LOGON_ENRICHED.to_string(), ..Default::default() };
        KafkaJob::start(self.cp.clone(), LOGON_ENRICHED, &self.client, opts, stats).unwrap()
    }

    /// The values of a topic's records, read by kcat at an isolation level.
    fn values(&self, topic: &str, isolation: &str) -> Vec<Value> {
        kcat_read(&self.kcat, &self.bootstrap, topic, isolation).into_iter().map(|(_, v)| v).collect()
    }
}

/// Two owners of one job with the same transactional id: the second's `init_transactions`
/// fences the first, whose next commit fails with a clear error and whose open transaction is
/// aborted; only the second's outputs are committed.
#[test]
fn a_fenced_zombie_commits_nothing_and_says_why() {
    let Some(t) = LogonEnriched::start() else { return };
    let opts = RunOptions {
        until_caught_up: true,
        checkpoint_interval: Duration::ZERO,
        max_batch_records: 50,
        idle_timeout: Duration::ZERO,
        ..RunOptions::default()
    };

    // The first owner never checkpoints on its own: its outputs stay in its open transaction.
    let never = RunOptions { until_caught_up: false, checkpoint_interval: Duration::from_secs(3600), ..opts.clone() };
    let mut zombie = t.job(&never);
    let deadline = Instant::now() + Duration::from_secs(60);
    while zombie.stats().records_out == 0 {
        assert!(Instant::now() < deadline, "the first owner produced nothing");
        zombie.poll_and_process(false).unwrap();
        zombie.settle(false, true).unwrap();
    }
    // The new owner starts: its producer fences the zombie's.
    let mut owner = t.job(&opts);
    // The zombie goes on and tries to commit (a stop checkpoints).
    let fenced = zombie.poll_and_process(false).and_then(|_| zombie.settle(true, true));
    match fenced {
        Err(RunError::Fenced(why)) => {
            assert!(why.contains("fenced"), "{why}");
            assert!(why.contains("transactional id `_streamctl.soe_demo.logon_enriched`"), "{why}");
        }
        other => panic!("the zombie was not fenced: {other:?}"),
    }
    drop(zombie);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        owner.poll_and_process(false).unwrap();
        if owner.settle(false, true).unwrap() == Progress::CaughtUp {
            break;
        }
        assert!(Instant::now() < deadline, "the new owner did not catch up");
    }
    let committed = t.values("soe.logon-enriched", "read_committed");
    let (missing, extra) = multiset_difference(&expected()[LOGON_ENRICHED], &committed);
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} missing, {} extra: the zombie's rows must not be committed",
        missing.len(),
        extra.len()
    );
}

/// A transaction that fails to commit (here: the broker refuses the checkpoint manifest, as the
/// checkpoint topic's `max.message.bytes` is set to 200, which still lets the transaction
/// markers through) is aborted: its outputs stay invisible
/// to `read_committed` readers, and a restart from the last committed checkpoint gives every
/// output exactly once.
#[test]
fn a_failed_commit_is_aborted_and_the_restart_gives_each_output_once() {
    let Some(t) = LogonEnriched::start() else { return };
    let opts = RunOptions {
        until_caught_up: true,
        checkpoint_interval: Duration::from_secs(3600),
        idle_timeout: Duration::ZERO,
        ..RunOptions::default()
    };
    let checkpoints = &t.cp.models[LOGON_ENRICHED].resolved.checkpoint_topic;

    let mut job = t.job(&opts);
    t.limit(checkpoints, "200");
    let deadline = Instant::now() + Duration::from_secs(120);
    let progress = loop {
        job.poll_and_process(false).unwrap();
        let p = job.settle(false, true).unwrap();
        if p != Progress::Running {
            break p;
        }
        assert!(Instant::now() < deadline, "the job did not reach the end of its input");
    };
    assert_eq!(progress, Progress::CheckpointFailed, "the final checkpoint's commit must fail");
    assert_eq!(job.stats().aborted_transactions, 1);
    let produced = job.stats().records_out as usize;
    assert!(produced > 0);
    drop(job);
    let committed = t.values("soe.logon-enriched", "read_committed");
    assert!(committed.is_empty(), "{} rows of an aborted transaction are visible", committed.len());
    assert_eq!(t.values("soe.logon-enriched", "read_uncommitted").len(), produced);

    t.limit(checkpoints, "1048588");
    let mut job = t.job(&opts);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        job.poll_and_process(false).unwrap();
        if job.settle(false, true).unwrap() == Progress::CaughtUp {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted job did not catch up");
    }
    assert_eq!(job.stats().restored_epoch, None, "nothing was committed before");
    let committed = t.values("soe.logon-enriched", "read_committed");
    let (missing, extra) = multiset_difference(&expected()[LOGON_ENRICHED], &committed);
    assert!(missing.is_empty() && extra.is_empty(), "{} missing, {} extra", missing.len(), extra.len());
}

/// A transaction that fails while its task is still queueing records (the broker refuses a batch
/// of it: here the output topic's `max.message.bytes` is 200) takes no more records, as
/// librdkafka refuses them until it is aborted. The task aborts it and resumes from its last
/// committed checkpoint, as after a failed commit, instead of stopping; the restart gives every
/// output exactly once.
#[test]
fn a_transaction_that_fails_mid_batch_is_aborted_and_the_task_resumes() {
    let Some(t) = LogonEnriched::start() else { return };
    // Micro-batches of 10 records: the input is still being read when the refusal comes back.
    let opts = RunOptions {
        until_caught_up: true,
        checkpoint_interval: Duration::from_secs(3600),
        idle_timeout: Duration::ZERO,
        max_batch_records: 10,
        ..RunOptions::default()
    };
    let output = &t.cp.models[LOGON_ENRICHED].topic;

    let mut job = t.job(&opts);
    t.limit(output, "200");
    let deadline = Instant::now() + Duration::from_secs(120);
    while job.stats().records_out == 0 {
        job.poll_and_process(false).unwrap();
        assert_eq!(job.settle(false, true).unwrap(), Progress::Running, "the input ended before any output");
        assert!(Instant::now() < deadline, "no output");
    }
    // The broker's refusal of those records reaches the producer.
    std::thread::sleep(Duration::from_secs(2));
    let progress = loop {
        if let Err(e) = job.poll_and_process(false) {
            panic!("a record queued into the failed transaction stopped the task: {e}");
        }
        let p = job.settle(false, true).unwrap();
        if p != Progress::Running {
            break p;
        }
        assert!(Instant::now() < deadline, "the job did not reach the end of its input");
    };
    assert_eq!(progress, Progress::CheckpointFailed, "the failed transaction must be aborted");
    assert_eq!(job.stats().aborted_transactions, 1);
    drop(job);
    assert!(t.values(output, "read_committed").is_empty(), "nothing was committed");

    t.limit(output, "1048588");
    let mut job = t.job(&opts);
    loop {
        job.poll_and_process(false).unwrap();
        if job.settle(false, true).unwrap() == Progress::CaughtUp {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted job did not catch up");
    }
    let committed = t.values(output, "read_committed");
    let (missing, extra) = multiset_difference(&expected()[LOGON_ENRICHED], &committed);
    assert!(missing.is_empty() && extra.is_empty(), "{} missing, {} extra", missing.len(), extra.len());
}

/// A bounded reader's end is the high watermark. A `read_committed` client is told the last
/// stable offset instead, which leaves out the records of a transaction not ended yet, and of one
/// just committed until the broker has written its markers: a sink that took that offset for its
/// end could stop short of the last records a finished job wrote.
#[test]
fn the_end_of_a_bounded_read_counts_a_transaction_not_yet_ended() {
    use streamctl::connectors::consumer::{end_offsets, manual_consumer, partition_offsets, read_topic, ClosedOnDrop};
    use streamctl::connectors::producer::{OutRecord, RecordProducer};
    let Some(t) = LogonEnriched::start() else { return };
    let topic = &t.cp.models[LOGON_ENRICHED].topic;
    let producer = RecordProducer::transactional(&t.client, "end-of-a-bounded-read", 60_000).unwrap();
    producer.begin().unwrap();
    for v in ["1", "2", "3"] {
        let record = OutRecord { partition: Some(0), key: None, value: Some(v.as_bytes()), timestamp: 0 };
        producer.send(topic, record, None).unwrap();
    }
    producer.flush().unwrap();
    let end_of_partition_0 = |p: Option<Vec<(i32, i64, i64)>>| p.unwrap().into_iter().find(|e| e.0 == 0).unwrap().2;

    let committed_reader = manual_consumer(&t.client, "end-of-a-bounded-read").unwrap();
    let _closed = ClosedOnDrop(&committed_reader);
    assert_eq!(end_of_partition_0(partition_offsets(&committed_reader, topic).unwrap()), 0, "the last stable offset");
    assert_eq!(end_of_partition_0(end_offsets(&t.client, topic).unwrap()), 3, "the high watermark");

    producer.commit().unwrap();
    let rows = read_topic(&t.client, topic).unwrap();
    let values: Vec<&[u8]> = rows.iter().filter_map(|(_, v)| v.as_deref()).collect();
    assert_eq!(values, [b"1", b"2", b"3"]);
}

/// A task claims its lease in the log of its checkpoint partition, which other transactions write
/// to as well (the other task of the partition, a worker killed mid-commit). A claim read back
/// `read_committed` is not seen while such a transaction is open, however long it stays open:
/// here another transactional producer holds one open on the partition, and the job starts, claims
/// and finishes its bounded run all the same, without waiting for that transaction to end.
#[test]
fn a_claim_is_seen_past_a_transaction_left_open_on_the_checkpoint_partition() {
    use streamctl::connectors::producer::{OutRecord, RecordProducer};
    let Some(t) = LogonEnriched::start() else { return };
    let checkpoints = &t.cp.models[LOGON_ENRICHED].resolved.checkpoint_topic;
    let open = RecordProducer::transactional(&t.client, "open-on-the-checkpoint-partition", 120_000).unwrap();
    open.begin().unwrap();
    let record = OutRecord { partition: Some(0), key: Some(b"not-a-task"), value: Some(b"x"), timestamp: 0 };
    open.send(checkpoints, record, None).unwrap();
    open.flush().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run.log");
    let started = Instant::now();
    let mut run = worker(&t.bootstrap, &log, &["--select", LOGON_ENRICHED, "--until-caught-up"]);
    let deadline = started + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = run.0.try_wait().unwrap() {
            break status;
        }
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(Instant::now() < deadline, "the run did not end within 60 s:\n{said}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{said}");
    assert!(!said.contains("could not claim"), "{said}");
    let committed = t.values("soe.logon-enriched", "read_committed");
    let (missing, extra) = multiset_difference(&expected()[LOGON_ENRICHED], &committed);
    assert!(missing.is_empty() && extra.is_empty(), "{} missing, {} extra:\n{said}", missing.len(), extra.len());
    open.abort();
}

/// Records deleted while a job runs, before it fetched them, are not skipped quietly: at the poll
/// that finds them gone, the job says which offsets it lost, and it reads on from the first record
/// still there. A transaction left open holds the job's `read_committed` reader at its first
/// record, so the records written after it cannot be fetched before DeleteRecords removes them;
/// the job has run all along (a restart would find the loss at its start instead).
#[test]
fn records_deleted_while_the_job_runs_are_reported_as_lost_at_the_next_poll() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    use streamctl::connectors::producer::{OutRecord, RecordProducer};
    let Some(t) = LogonEnriched::start() else { return };
    let opts = RunOptions {
        checkpoint_interval: Duration::from_secs(3600),
        idle_timeout: Duration::ZERO,
        ..RunOptions::default()
    };
    let watcher: BaseConsumer = t.client.clone().set("group.id", "deleted-while-running").create().unwrap();
    let end = |topic: &str, p: i32| watcher.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
    let first_unread = end(LOGON_TOPIC, 0).1;
    let mut job = t.job(&opts);
    // Steps the job until it has read `n` records.
    let read = |job: &mut KafkaJob, n: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while job.stats().records_in < n {
            job.poll_and_process(false).unwrap();
            job.settle(false, true).unwrap();
            assert!(Instant::now() < deadline, "the job read {} records of {n}", job.stats().records_in);
        }
    };
    // Every sample: the logons and the customers it joins them with.
    let samples = first_unread + end(LOGON_TOPIC, 1).1 + end("ora-ogg-SOE-CUSTOMERS", 0).1;
    read(&mut job, samples as u64);
    assert!(job.stats().gaps.is_empty(), "{:?}", job.stats().gaps);

    // An open transaction's record at `first_unread`, then 10 records after it.
    let open = RecordProducer::transactional(&t.client, "open-before-the-deleted-records", 120_000).unwrap();
    open.begin().unwrap();
    let record = OutRecord { partition: Some(0), key: None, value: Some(b"never committed"), timestamp: 0 };
    open.send(LOGON_TOPIC, record, None).unwrap();
    open.flush().unwrap();
    let (id, schema) = logon_schema();
    let logons: Vec<Vec<u8>> = sample("logon.jsonl").iter().take(10).map(|l| logon_avro(l, id, &schema)).collect();
    kcat_produce_values(&t.kcat, &t.bootstrap, LOGON_TOPIC, &logons, Some(0));
    for _ in 0..5 {
        job.poll_and_process(false).unwrap();
        job.settle(false, true).unwrap();
    }
    assert_eq!(job.stats().records_in, samples as u64, "nothing is read past the open transaction");

    // The open transaction's record and the next 5 are deleted; the transaction is aborted.
    let deleted_to = first_unread + 6;
    let admin: AdminClient<_> = t.client.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(LOGON_TOPIC, 0, Offset::Offset(deleted_to)).unwrap();
    let deleted = t.rt.block_on(admin.delete_records(&tpl, &AdminOptions::new())).unwrap();
    assert_eq!(deleted.find_partition(LOGON_TOPIC, 0).unwrap().offset(), Offset::Offset(deleted_to));
    open.abort();
    // The broker answers with the new offsets a moment later: 10 records and the abort marker
    // came after the open record.
    let deadline = Instant::now() + Duration::from_secs(30);
    while end(LOGON_TOPIC, 0) != (deleted_to, first_unread + 12) {
        assert!(Instant::now() < deadline, "the partition's offsets: {:?}", end(LOGON_TOPIC, 0));
        std::thread::sleep(Duration::from_millis(100));
    }

    read(&mut job, samples as u64 + 5);
    assert_eq!(
        job.stats().gaps,
        vec![format!(
            "{LOGON_TOPIC} partition 0 offsets {first_unread}..{deleted_to} were deleted before being processed"
        )]
    );
    assert_eq!(job.stats().records_in, samples as u64 + 5, "the 5 records still there are read, once");
}
