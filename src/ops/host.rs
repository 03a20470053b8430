//! Hosting jobs: the topics they need, their tasks on the run's threads (assigned by the jobs'
//! consumer groups on a Kafka target), a clean stop on SIGINT/SIGTERM.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rdkafka::config::ClientConfig;

use crate::compile::names::TopicRole;
use crate::compile::repartition::Repartitioning;
use crate::compile::CompiledProject;
use crate::connectors::consumer::{manual_consumer, partition_offsets, ClosedOnDrop};
use crate::connectors::kafka::grow_topic;
use crate::connectors::kafka::TopicSpec;
use crate::graph::NodeId;
use crate::project::config::RelationKind;
use crate::runtime::checkpoint::partition_count;
use crate::runtime::group::coordinate;
use crate::runtime::runner::{merge, Pool};
use crate::runtime::tasks::{layout, Layout};
use crate::runtime::worker::{bad_record_writers, JobStats, RunControl, RunOptions};
use crate::runtime::RunError;

/// Topics the selected models write: outputs, checkpoints, dead-letter topics of their sources,
/// repartition topics (unless `embedded`, which runs the jobs that have one as one task).
pub fn job_topics(cp: &CompiledProject, models: &[String], embedded: bool) -> Vec<TopicSpec> {
    let mut out: BTreeMap<String, TopicSpec> = BTreeMap::new();
    for name in models {
        let Some(m) = cp.models.get(name) else { continue };
        for t in m.resolved.topics.iter().filter(|t| !(embedded && t.role == TopicRole::Repartition)) {
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
    let jobs: Vec<(String, Arc<CompiledProject>)> = models.iter().map(|m| (m.clone(), cp.clone())).collect();
    run_tasks(&jobs, client, opts, control)
}

/// Runs jobs (each model with the project it was compiled in) as tasks on `opts.threads` threads:
/// on a Kafka target (`opts.group`) the tasks the jobs' consumer groups give this worker, else every
/// task. Returns each job's outcome (its tasks' in this process, merged), in the order given.
pub fn run_tasks(
    jobs: &[(String, Arc<CompiledProject>)],
    client: &ClientConfig,
    opts: &RunOptions,
    control: Arc<RunControl>,
) -> Vec<(String, Result<JobStats, RunError>)> {
    // One copy of each bad record on the dead-letter topic, written by one of the jobs here.
    let writers = bad_record_writers(jobs.iter().map(|(m, cp)| (m.as_str(), &**cp)));
    let opts = RunOptions { bad_record_writers: Arc::new(writers), ..opts.clone() };
    let pool = match Pool::start(client, &opts, control.clone()) {
        Ok(p) => Arc::new(p),
        Err(e) => return jobs.iter().map(|(m, _)| (m.clone(), Err(RunError::Setup(e.to_string())))).collect(),
    };
    if opts.until_caught_up {
        // An upstream model this run does not host will not finish here: its topic as it is now
        // is the input to catch up with (else the downstream job would wait for it forever).
        for (model, cp) in jobs {
            let Some(m) = cp.models.get(model) else { continue };
            for input in &m.inputs {
                if let NodeId::Model(up) = input {
                    if !jobs.iter().any(|(j, _)| j == up) {
                        control.mark_done(up);
                    }
                }
            }
        }
    }
    let mut failed: Vec<(String, RunError)> = Vec::new();
    let mut coordinators = Vec::new();
    for (model, cp) in jobs {
        let layout = match job_layout(cp, model, client, opts.group) {
            Ok(l) => l,
            Err(e) => {
                if opts.until_caught_up {
                    control.stop.store(true, Ordering::SeqCst);
                }
                failed.push((model.clone(), e));
                continue;
            }
        };
        match (&layout.partitions, &layout.whole_because, &layout.repartition) {
            (Some(n), _, Some((topic, r))) => eprintln!(
                "[{model}] {n} tasks re-keying each partition of {} by the GROUP BY into {topic}, then {r} tasks \
                 aggregating, one per partition of {topic}",
                layout.driving_topic
            ),
            (Some(n), _, None) => eprintln!("[{model}] {n} tasks, one per partition of {}", layout.driving_topic),
            (None, Some(why), _) => eprintln!("[{model}] runs as one task: {why}"),
            (None, None, _) => {}
        }
        if !opts.group {
            // One process runs every task (the embedded target): they share the checkpoint
            // topic's first partition.
            pool.expect(model, layout.tasks());
            for task in layout.tasks() {
                pool.start_task(cp.clone(), model, task);
            }
            continue;
        }
        // A partition of the checkpoint topic per task: a task's owner reads its own partition.
        if let (Some(n), Some(m)) = (layout.partitions, cp.models.get(model)) {
            let n = n.max(layout.repartition.as_ref().map_or(0, |(_, r)| *r));
            let topic = &m.resolved.checkpoint_topic;
            let grown = partition_count(client, topic)
                .map_err(|e| e.to_string())
                .and_then(|now| grow_topic(client, topic, now, n));
            if let Err(e) = grown {
                eprintln!("[{model}] {e}: its tasks share the checkpoint topic's first partition");
            }
        }
        let (cp, model, client, pool, control) =
            (cp.clone(), model.clone(), client.clone(), pool.clone(), control.clone());
        let name = model.clone();
        let bounded = opts.until_caught_up;
        let h = std::thread::Builder::new()
            .name(format!("group-{model}"))
            .spawn(move || coordinate(cp, &model, layout, &client, pool, control, bounded));
        coordinators.push((name, h));
    }
    let mut coordinators: Vec<(String, std::thread::JoinHandle<Result<(), RunError>>)> =
        coordinators.into_iter().filter_map(|(m, h)| h.ok().map(|h| (m, h))).collect();
    while !coordinators.is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (ended, running): (Vec<_>, Vec<_>) = coordinators.into_iter().partition(|(_, h)| h.is_finished());
        coordinators = running;
        for (model, h) in ended {
            if let Ok(Err(e)) = h.join() {
                // Without its group the worker runs none of the job's tasks: the run stops.
                eprintln!("[{model}] stopped: {e}");
                control.stop.store(true, Ordering::SeqCst);
                failed.push((model, e));
            }
        }
    }
    let outcomes = pool.finish();
    jobs.iter()
        .map(|(model, _)| {
            if let Some((_, e)) = failed.iter().find(|(m, _)| m == model) {
                return (model.clone(), Err(RunError::Setup(e.to_string())));
            }
            let mine: Vec<&Result<JobStats, RunError>> =
                outcomes.iter().filter(|((m, _), _)| m == model).map(|(_, r)| r).collect();
            let mut merged = merge(model, &mine);
            if let (Ok(stats), Some(cp)) = (&mut merged, jobs.iter().find(|(m, _)| m == model).map(|(_, cp)| cp)) {
                if let Some(m) = cp.models.get(model) {
                    stats.guarantee = m.resolved.guarantee_on(opts.guarantee).word();
                }
            }
            (model.clone(), merged)
        })
        .collect()
}

/// How a job is cut into tasks, from its inputs' partition counts on the cluster.
/// `group`: a Kafka target, where workers share the tasks; else (the embedded target, one process
/// and the sample data) a job with a repartition topic is one task: the topic would only add a
/// produce and a read in the same process.
fn job_layout(cp: &CompiledProject, model: &str, client: &ClientConfig, group: bool) -> Result<Layout, RunError> {
    let m = cp.models.get(model).ok_or_else(|| RunError::Setup(format!("no model `{model}`")))?;
    let consumer = manual_consumer(client, "streamctl-metadata").map_err(RunError::Setup)?;
    let _closed = ClosedOnDrop(&consumer);
    let mut counts = std::collections::HashMap::new();
    for input in &m.inputs {
        let topic = match input {
            NodeId::Source(s) => cp.sources.get(s).map(|s| s.decl.table.topic.clone()),
            NodeId::Model(u) => cp.models.get(u).map(|u| u.topic.clone()),
            NodeId::Sink(_) | NodeId::Connector(_) => None,
        };
        let Some(topic) = topic else { continue };
        match partition_offsets(&consumer, &topic).map_err(RunError::Setup)? {
            Some(p) => counts.insert(topic, p.len() as i32),
            None => return Err(RunError::Setup(format!("input topic {topic} ({input}) does not exist"))),
        };
    }
    if let Repartitioning::Topic(r) = &m.resolved.repartition {
        if !group {
            // Without its repartition topic's count, the layout is one task (the topic is missing).
            let l = layout(cp, m, &|t| counts.get(t).copied());
            let why = "its GROUP BY does not include its input's key, and on the embedded target every task runs in \
                       this process: it needs no repartition topic";
            return Ok(Layout { whole_because: l.whole_because.map(|_| why.to_string()), ..l });
        }
        // Not grown with its input: more partitions would move groups whose state is elsewhere.
        if let Some(p) = partition_offsets(&consumer, &r.topic).map_err(RunError::Setup)? {
            counts.insert(r.topic.clone(), p.len() as i32);
        }
    }
    Ok(layout(cp, m, &|t| counts.get(t).copied()))
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
