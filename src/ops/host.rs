//! Hosting jobs: the topics they need, one thread per job, a clean stop on SIGINT/SIGTERM.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rdkafka::config::ClientConfig;

use crate::compile::CompiledProject;
use crate::connectors::kafka::TopicSpec;
use crate::graph::NodeId;
use crate::project::config::RelationKind;
use crate::runtime::worker::{bad_record_writers, run_job, JobStats, RunControl, RunOptions};
use crate::runtime::RunError;

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
    // One copy of each bad record on the dead-letter topic, written by one of the jobs here.
    let writers = bad_record_writers(models.iter().map(|m| (m.as_str(), &*cp)));
    let opts = RunOptions { bad_record_writers: Arc::new(writers), ..opts.clone() };
    let mut handles = Vec::new();
    for name in models {
        let (cp, model, client, opts, control) =
            (cp.clone(), name.clone(), client.clone(), opts.clone(), control.clone());
        let h = std::thread::Builder::new().name(format!("job-{name}")).spawn(move || {
            let stop_all = control.clone();
            let until_caught_up = opts.until_caught_up;
            let r = run_job_restarting(cp, &model, &client, &opts, control);
            // A bounded run stops: the failed job's downstream would wait for it forever.
            if r.is_err() && until_caught_up {
                stop_all.stop.store(true, Ordering::SeqCst);
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

/// Runs one job (`run_job`). A long-running worker restarts a job that failed, after a pause that grows
/// with each failure in a row (2 s up to 64 s): it resumes from its last checkpoint, as a fresh process
/// would. Broker restarts and leader moves surface as such failures (a connection reset while reading
/// offsets or checkpoints); without the restart a job would stay stopped in every worker that saw one.
/// A bounded run (`until_caught_up`) stops at the first failure.
pub fn run_job_restarting(
    cp: Arc<CompiledProject>,
    model: &str,
    client: &ClientConfig,
    opts: &RunOptions,
    control: Arc<RunControl>,
) -> Result<JobStats, RunError> {
    let mut failures: u32 = 0;
    loop {
        let started = std::time::Instant::now();
        let r = run_job(cp.clone(), model.to_string(), client.clone(), opts.clone(), control.clone());
        let Err(e) = &r else { return r };
        if opts.until_caught_up || control.stop.load(Ordering::SeqCst) {
            eprintln!("[{model}] stopped: {e}");
            return r;
        }
        // A job that ran a while before failing starts the count again.
        failures = if started.elapsed() > std::time::Duration::from_secs(300) { 1 } else { failures + 1 };
        let pause = std::time::Duration::from_secs(1 << failures.min(6));
        eprintln!("[{model}] stopped: {e}; restarting from its last checkpoint in {} s", pause.as_secs());
        let until = std::time::Instant::now() + pause;
        while std::time::Instant::now() < until {
            if control.stop.load(Ordering::SeqCst) {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
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
