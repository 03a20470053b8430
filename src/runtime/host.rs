//! Hosting the jobs of a project: the topics they need, one thread per job, a clean stop on
//! SIGINT/SIGTERM; and the embedded flow that loads sample data into the in-process broker.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::bounded::{sample_records, RunError};
use super::worker::{run_job, JobOutcome, JobStats, RunControl, RunOptions, TopicRows};
use crate::compile::CompiledProject;
use crate::connectors::kafka::{Cluster, TopicSpec};
use crate::graph::NodeId;
use crate::project::config::RelationKind;

/// Topics the selected models write: outputs, checkpoints, dead-letter topics of their sources.
pub fn job_topics(cp: &CompiledProject, models: &[String]) -> Vec<TopicSpec> {
    let mut out: BTreeMap<String, TopicSpec> = BTreeMap::new();
    for name in models {
        let Some(m) = cp.models.get(name) else { continue };
        for t in &m.resolved.topics {
            out.insert(
                t.name.clone(),
                TopicSpec { name: t.name.clone(), partitions: t.partitions, compacted: t.compacted },
            );
        }
    }
    out.into_values().collect()
}

/// Topics of the sources the selected models read.
pub fn source_topics(cp: &CompiledProject, models: &[String]) -> Vec<TopicSpec> {
    let mut out: BTreeMap<String, TopicSpec> = BTreeMap::new();
    for name in models {
        let Some(m) = cp.models.get(name) else { continue };
        for input in &m.inputs {
            if let NodeId::Source(s) = input {
                let src = &cp.sources[s];
                out.insert(
                    src.decl.table.topic.clone(),
                    TopicSpec {
                        name: src.decl.table.topic.clone(),
                        partitions: src.partitions,
                        compacted: src.decl.table.kind == RelationKind::Table,
                    },
                );
            }
        }
    }
    out.into_values().collect()
}

/// Runs the selected models' jobs until they stop (caught up, a stop request, or an error).
/// Returns each job's outcome, in deploy order.
pub fn run_jobs(
    cp: Arc<CompiledProject>,
    models: &[String],
    client: &ClientConfig,
    opts: &RunOptions,
    control: Arc<RunControl>,
) -> Vec<(String, Result<JobStats, RunError>)> {
    let mut handles = Vec::new();
    for name in models {
        let (cp, model, client, opts, control) =
            (cp.clone(), name.clone(), client.clone(), opts.clone(), control.clone());
        let h = std::thread::Builder::new().name(format!("job-{name}")).spawn(move || {
            let stop_all = control.clone();
            let until_caught_up = opts.until_caught_up;
            let r = run_job(cp, model.clone(), client, opts, control);
            if let Err(e) = &r {
                eprintln!("[{model}] stopped: {e}");
                // A bounded run stops: the failed job's downstream would wait for it forever.
                // A long-running worker keeps its other jobs going.
                if until_caught_up {
                    stop_all.stop.store(true, Ordering::SeqCst);
                }
            }
            r
        });
        handles.push((name.clone(), h));
    }
    handles
        .into_iter()
        .map(|(n, h)| match h {
            Ok(h) => (n, h.join().unwrap_or_else(|_| Err(RunError::Setup("the job thread panicked".into())))),
            Err(e) => (n, Err(RunError::Setup(format!("cannot start the job thread: {e}")))),
        })
        .collect()
}

/// Sets `stop` on SIGINT or SIGTERM, so jobs checkpoint and exit.
pub fn stop_on_signals(control: Arc<RunControl>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("stopping: finishing the current batches and checkpointing (Ctrl-C again to abort)");
            control.stop.store(true, Ordering::SeqCst);
            let _ = tokio::signal::ctrl_c().await;
            std::process::exit(130);
        });
    });
}

/// Produces every selected source's sample data file into its topic. Returns records per topic.
pub fn load_samples(
    cp: &CompiledProject,
    client: &ClientConfig,
    models: &[String],
) -> Result<BTreeMap<String, usize>, RunError> {
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        client.create().map_err(|e| RunError::Setup(format!("creating a producer: {e}")))?;
    let mut counts = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for name in models {
        let Some(m) = cp.models.get(name) else { continue };
        for input in &m.inputs {
            let NodeId::Source(s) = input else { continue };
            if !seen.insert(s.clone()) {
                continue;
            }
            let src = &cp.sources[s];
            let Some(path) = &src.decl.table.sample_data else { continue };
            let text = std::fs::read_to_string(cp.project.root.join(path))
                .map_err(|e| RunError::Setup(format!("cannot read sample data {path}: {e}")))?;
            let topic = &src.decl.table.topic;
            let records = sample_records(cp, s, &text);
            for r in &records {
                let mut rec: BaseRecord<'_, [u8], [u8]> =
                    BaseRecord::to(topic).partition(r.partition).timestamp(r.timestamp);
                if let Some(k) = &r.key {
                    rec = rec.key(k.as_slice());
                }
                if let Some(v) = &r.value {
                    rec = rec.payload(v.as_slice());
                }
                producer
                    .send(rec)
                    .map_err(|(e, _)| RunError::Setup(format!("producing sample data to {topic}: {e}")))?;
            }
            counts.insert(topic.clone(), records.len());
        }
    }
    producer.flush(Duration::from_secs(30)).map_err(|e| RunError::Setup(format!("producing sample data: {e}")))?;
    Ok(counts)
}

/// Every record of a topic, from its start to its current end.
pub fn read_topic(client: &ClientConfig, topic: &str) -> Result<Vec<(Option<Vec<u8>>, Option<Vec<u8>>)>, RunError> {
    let consumer: BaseConsumer = client
        .clone()
        .set("group.id", "streamctl-reader")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| RunError::Setup(format!("creating a consumer: {e}")))?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| RunError::Setup(format!("metadata of {topic}: {e}")))?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    let mut ends = BTreeMap::new();
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .map_err(|e| RunError::Setup(e.to_string()))?;
            if high > low {
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))
                    .map_err(|e| RunError::Setup(e.to_string()))?;
                remaining += high - low;
                ends.insert(p.id(), high);
            }
        }
    }
    let mut out = Vec::new();
    if remaining == 0 {
        return Ok(out);
    }
    consumer.assign(&tpl).map_err(|e| RunError::Setup(e.to_string()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut done: BTreeMap<i32, bool> = ends.keys().map(|p| (*p, false)).collect();
    while done.values().any(|d| !d) && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push((m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)));
                if m.offset() + 1 >= ends[&m.partition()] {
                    done.insert(m.partition(), true);
                }
            }
            Some(Err(e)) => return Err(RunError::Setup(format!("reading {topic}: {e}"))),
            None => {}
        }
    }
    Ok(out)
}

/// The embedded target: the sources' sample data loaded into the broker in this process, the
/// jobs run until they have caught up, and what they wrote.
pub struct EmbeddedRun {
    pub loaded: BTreeMap<String, usize>,
    pub results: Vec<JobOutcome>,
    /// (model, topic, records) per job.
    pub outputs: Vec<(String, String, TopicRows)>,
}

pub async fn run_embedded(
    broker: &crate::connectors::embedded::EmbeddedBroker,
    cp: Arc<CompiledProject>,
    models: &[String],
    opts: &RunOptions,
) -> Result<EmbeddedRun, RunError> {
    let cluster = Cluster::Embedded(broker);
    let mut topics = source_topics(&cp, models);
    topics.extend(job_topics(&cp, models));
    cluster.ensure_topics(&topics).await.map_err(RunError::Setup)?;
    let client = cluster.client_config();
    let loaded = load_samples(&cp, &client, models)?;
    for (topic, n) in &loaded {
        eprintln!("loaded {n} sample records into {topic}");
    }
    let control = Arc::new(RunControl::default());
    stop_on_signals(control.clone());
    let opts = RunOptions { until_caught_up: true, ..opts.clone() };
    let results = run_jobs(cp.clone(), models, &client, &opts, control);
    let outputs = models
        .iter()
        .map(|m| {
            let topic = cp.models[m].topic.clone();
            let rows = read_topic(&client, &topic).unwrap_or_default();
            (m.clone(), topic, rows)
        })
        .collect();
    Ok(EmbeddedRun { loaded, results, outputs })
}
