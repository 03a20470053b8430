//! `streamctl run` and the run after an embedded `apply`: which jobs run where. On the embedded
//! target the broker lives in this process and gets the sample data; on a Kafka target the
//! deployed generation runs (following new ones), or the local files when nothing is deployed.

use std::sync::Arc;

use super::embedded::{run_embedded, EmbeddedRun};
use super::follow::run_deployed;
use super::host::{job_topics, run_jobs, stop_on_signals};
use super::sinks::{deliver_caught_up, join_sinks, spawn_sinks, SinkResult};
use crate::compile::CompiledProject;
use crate::connectors::consumer::TopicRows;
use crate::connectors::embedded::EmbeddedBroker;
use crate::connectors::kafka::Cluster;
use crate::deploy::control::ControlTopic;
use crate::deploy::Session;
use crate::graph::NodeId;
use crate::project::config::TargetKind;
use crate::project::target::ResolvedTarget;
use crate::registry::SharedRegistry;
use crate::runtime::worker::{JobOutcome, RunControl, RunOptions};

/// How the jobs of a run ended, and (embedded target) what each output topic holds.
pub struct RunOutcome {
    pub results: Vec<JobOutcome>,
    /// (model, topic, records) per job; empty on a Kafka target.
    pub outputs: Vec<(String, String, TopicRows)>,
    /// What each native sink of the jobs delivered.
    pub sinks: Vec<SinkResult>,
}

impl From<EmbeddedRun> for RunOutcome {
    fn from(run: EmbeddedRun) -> RunOutcome {
        RunOutcome { results: run.results, outputs: run.outputs, sinks: run.sinks }
    }
}

/// Runs `models` (in deploy order) on `target`. `all_selected`: no selection was given, so a
/// deployed project runs every deployed job.
pub fn run(
    cp: Arc<CompiledProject>,
    models: &[String],
    target: &ResolvedTarget,
    opts: &RunOptions,
    all_selected: bool,
) -> Result<RunOutcome, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let opts = &RunOptions { registry: Some(target_registry(target, &cp)?), ..opts.clone() };
    if target.kind == TargetKind::Embedded {
        let broker = EmbeddedBroker::start()?;
        let run = rt.block_on(run_embedded(&broker, cp, models, opts)).map_err(|e| e.to_string())?;
        return Ok(run.into());
    }
    let cluster = Cluster::Kafka {
        bootstrap: target.bootstrap_servers.clone().unwrap_or_default(),
        properties: target.properties.clone().into_iter().collect(),
        replication_factor: target.replication_factor,
    };
    cluster.check_reachable()?;
    // Workers on a Kafka target share the tasks through the jobs' consumer groups.
    let opts = &RunOptions { group: true, ..opts.clone() };
    rt.block_on(cluster.ensure_topics(&job_topics(&cp, models, false)))?;
    let control = Arc::new(RunControl::with_registry(opts.registry.clone()));
    stop_on_signals(control.clone());
    let client = cluster.client_config();
    // A deployed project runs as deployed (and follows new generations); otherwise the local
    // files run, as in development.
    let ctl = ControlTopic::new(&client, &target.control_topic, &cp.project.config.name).map_err(|e| e.to_string())?;
    let deployed = ctl.read().map_err(|e| e.to_string())?;
    // Sinks run beside the jobs until a stop; on a bounded run, after the jobs have caught up.
    let sink_threads = if opts.until_caught_up { Vec::new() } else { spawn_sinks(&cp, models, &client, &control) };
    let results = if deployed.jobs.is_empty() {
        eprintln!(
            "nothing deployed on target `{}`: running the local project files (`streamctl apply` deploys them)",
            target.name
        );
        run_jobs(cp.clone(), models, &client, opts, control.clone())
    } else {
        let select = |m: &str| all_selected || models.iter().any(|x| x == m);
        eprintln!("running the deployed project (generation {}) and following new generations", deployed.generation());
        match run_deployed(&ctl, &client, &select, opts, &target.topic_prefix, control.clone()) {
            Ok(r) => r,
            Err(e) => {
                control.stop.store(true, std::sync::atomic::Ordering::SeqCst);
                join_sinks(sink_threads);
                return Err(e);
            }
        }
    };
    let sinks = if opts.until_caught_up {
        deliver_caught_up(&cp, models, &client, &control, false)
    } else {
        // The jobs have stopped: so do their sinks.
        control.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        join_sinks(sink_threads)
    };
    Ok(RunOutcome { results, outputs: Vec::new(), sinks })
}

/// The registry the jobs read Avro writer schemas from and frame Avro outputs with: the
/// target's `schema_registry_url` (a Confluent-API registry, or `file:DIR`); when it names none
/// (the embedded target's default), the project's file registry `schemas/` of this directory:
/// a deployed generation compiles elsewhere, without it.
pub(crate) fn target_registry(target: &ResolvedTarget, cp: &CompiledProject) -> Result<SharedRegistry, String> {
    let embedded = target.kind == TargetKind::Embedded;
    let opened = crate::registry::open(
        target.schema_registry_url.as_deref(),
        &target.schema_registry_access,
        embedded,
        &cp.project.root,
    )
    .map_err(|e| e.to_string())?;
    let registry = opened.map_or_else(|| crate::runtime::codec::project_registry(cp), Arc::from);
    Ok(SharedRegistry(registry))
}

/// After `apply` on the embedded target: sample data in, every deployed job run until caught
/// up. `None` on any other target (running workers pick the new generation up).
pub fn run_after_apply(session: &Session, cp: CompiledProject) -> Result<Option<RunOutcome>, String> {
    let Some(broker) = session.embedded_broker() else { return Ok(None) };
    let deployed = session.read().map_err(|e| e.to_string())?;
    let models: Vec<String> = cp
        .order()
        .into_iter()
        .filter_map(|n| match n {
            NodeId::Model(m) if deployed.jobs.contains_key(&m) => Some(m),
            _ => None,
        })
        .collect();
    eprintln!("running {} job{} until caught up", models.len(), if models.len() == 1 { "" } else { "s" });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let registry = Some(target_registry(&session.target, &cp)?);
    let opts = RunOptions { guarantee: session.target.guarantee, registry, ..RunOptions::default() };
    let run = rt.block_on(run_embedded(broker, Arc::new(cp), &models, &opts)).map_err(|e| e.to_string())?;
    Ok(Some(run.into()))
}
