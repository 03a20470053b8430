//! The embedded target: the sources' sample data loaded into the broker in this process, the
//! jobs run until they have caught up, and what they wrote. `run` and `apply` share it.

use std::collections::BTreeMap;
use std::sync::Arc;

use rdkafka::config::ClientConfig;

use super::host::{job_topics, run_jobs, source_topics, stop_on_signals};
use super::seed::produce_samples;
use super::sinks::{deliver_caught_up, SinkResult};
use crate::compile::CompiledProject;
use crate::connectors::consumer::{read_topic, TopicRows};
use crate::connectors::embedded::EmbeddedBroker;
use crate::connectors::kafka::Cluster;
use crate::graph::NodeId;
use crate::runtime::worker::{JobOutcome, RunControl, RunOptions};
use crate::runtime::RunError;

/// Produces the sample data of every source the models read into its topic. Returns records
/// per topic.
pub fn load_samples(
    cp: &CompiledProject,
    client: &ClientConfig,
    models: &[String],
    registry: Option<&crate::registry::SharedRegistry>,
) -> Result<BTreeMap<String, usize>, RunError> {
    let mut sources: Vec<String> = Vec::new();
    for name in models {
        let Some(m) = cp.models.get(name) else { continue };
        for input in &m.inputs {
            if let NodeId::Source(s) = input {
                if !sources.contains(s) {
                    sources.push(s.clone());
                }
            }
        }
    }
    // The topics were just created from the sources' declarations.
    let seeded =
        produce_samples(cp, client, &sources, &|_| true, registry.map(|r| r.0.as_ref())).map_err(RunError::Setup)?;
    Ok(seeded.into_iter().map(|s| (s.topic, s.records)).collect())
}

/// How long a job's poll waits to fill a micro-batch on the embedded target. Its input is all in
/// the broker in this process before the jobs start, so a poll that finds nothing more has
/// reached the end, and waiting the default 100 ms for more (for a Kafka of producers that keep
/// writing) only delays every job's end, and so its downstream jobs' start.
const EMBEDDED_BATCH_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// Threads running the tasks of an embedded run, at least.
const EMBEDDED_THREADS: usize = 16;

/// The embedded target: the sources' sample data loaded into the broker in this process, the
/// jobs run until they have caught up, and what they wrote.
pub struct EmbeddedRun {
    pub results: Vec<JobOutcome>,
    /// (model, topic, records) per job.
    pub outputs: Vec<(String, String, TopicRows)>,
    /// The native sinks of the jobs, delivered after them.
    pub sinks: Vec<SinkResult>,
}

pub async fn run_embedded(
    broker: &EmbeddedBroker,
    cp: Arc<CompiledProject>,
    models: &[String],
    opts: &RunOptions,
) -> Result<EmbeddedRun, RunError> {
    let cluster = Cluster::Embedded(broker);
    let mut topics = source_topics(&cp, models);
    topics.extend(job_topics(&cp, models, true));
    cluster.ensure_topics(&topics).await.map_err(RunError::Setup)?;
    let client = cluster.client_config();
    let loaded = load_samples(&cp, &client, models, opts.registry.as_ref())?;
    for (topic, n) in &loaded {
        eprintln!("loaded {n} sample records into {topic}");
    }
    let control = Arc::new(RunControl::with_registry(opts.registry.clone()));
    stop_on_signals(control.clone());
    let opts = RunOptions {
        until_caught_up: true,
        max_batch_wait: opts.max_batch_wait.min(EMBEDDED_BATCH_WAIT),
        // A task's start (its checkpoint read, its transactional producer's set-up) is mostly
        // waiting on the broker: with a thread per task or so, the tasks start side by side
        // instead of in turns of as many as the machine has cores (+1.2 s on the example).
        threads: opts.threads.max(EMBEDDED_THREADS),
        ..opts.clone()
    };
    let results = run_jobs(cp.clone(), models, &client, &opts, control.clone());
    let sinks = deliver_caught_up(&cp, models, &client, &control, true);
    // Read side by side: each reader's start (metadata, offsets, the first fetch) is mostly waiting.
    let outputs = std::thread::scope(|scope| {
        let readers: Vec<_> = models
            .iter()
            .map(|m| {
                let topic = cp.models[m].topic.clone();
                let client = &client;
                (m.clone(), scope.spawn(move || (read_topic(client, &topic).unwrap_or_default(), topic)))
            })
            .collect();
        readers
            .into_iter()
            .map(|(m, reader)| {
                let (rows, topic) = reader.join().unwrap_or_default();
                (m, topic, rows)
            })
            .collect()
    });
    Ok(EmbeddedRun { results, outputs, sinks })
}
