use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args as ClapArgs;

use super::common::{compiled_or_exit, plural, selected_or_exit, GlobalArgs, OutputFormat};
use crate::graph::NodeId;
use crate::jinja::Jinja;
use crate::ops::run::{run, RunOutcome};
use crate::runtime::metrics::Metrics;
use crate::runtime::worker::{JobStats, RunOptions};

#[derive(Debug, ClapArgs)]
#[command(after_help = "\
Each selected model runs as a job: it consumes its inputs, keeps its state in a checkpoint
topic, and produces to its output topic. Where the project is deployed (`streamctl apply`),
the deployed jobs run and new generations are picked up as they are applied; otherwise the
local files run. A job is a task per partition of its input stream (one task when its work cannot
be split by partition); on a Kafka target every `streamctl run` process joins each job's consumer
group, which spreads the tasks over the processes and moves them when a process joins, leaves or
dies. `--threads` tasks run in parallel in one process.

Jobs run `exactly_once` unless the target or the model sets `guarantee: at_least_once`: each
checkpoint interval is one Kafka transaction (outputs, dead letters, state, input offsets), so
outputs become visible to `read_committed` readers when it commits.

On the `embedded` target the broker lives inside this process: the sources' sample data is
loaded into it, the jobs run until caught up, and each output topic's rows are printed.

Examples:
  streamctl run --project-dir example-project                     embedded: sample data in, outputs out
  streamctl run --target prod --select tag:orders
  streamctl run --bootstrap-servers localhost:9092 --target dev --until-caught-up
  streamctl run --target prod --metrics-addr 0.0.0.0:9464        Prometheus scrapes :9464/metrics
  streamctl run --target prod --threads 4                         four tasks at a time in this process")]
pub struct Args {
    /// Models to run (dbt selection syntax; default: all).
    #[arg(long, short = 's', num_args = 1.., value_name = "SELECTOR")]
    pub select: Vec<String>,
    /// Process every input up to the end it has at start (upstream jobs: when they finish),
    /// checkpoint, and exit 0. Always on for the embedded target.
    #[arg(long)]
    pub until_caught_up: bool,
    /// Records per micro-batch at most.
    #[arg(long, default_value_t = 10_000)]
    pub max_batch_records: usize,
    /// Bytes of record values per micro-batch at most.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_batch_bytes: usize,
    /// Milliseconds between checkpoints (outputs flushed, state and offsets saved; exactly-once:
    /// the transaction commits).
    #[arg(long, default_value_t = 2_000)]
    pub checkpoint_interval_ms: u64,
    /// Rows of each output topic to print after an embedded run.
    #[arg(long, default_value_t = 3)]
    pub show: usize,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics and a health check at /healthz
    /// (200 while no hosted job has failed, 503 otherwise).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Threads running tasks in this process (default: the machine's cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

pub fn exec(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitCode> {
    let mut cp = match compiled_or_exit(global, "running") {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let chosen = match selected_or_exit(global, &cp, &args.select) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let models: Vec<String> = cp
        .order()
        .into_iter()
        .filter(|n| chosen.contains(n))
        .filter_map(|n| if let NodeId::Model(m) = n { Some(m) } else { None })
        .filter(|m| cp.models.get(m).is_some_and(|c| c.resolved.enabled))
        .collect();
    if models.is_empty() {
        return Ok(super::common::error_exit(global, "no model selected"));
    }
    let jinja = Jinja::new(cp.project.config.vars.clone());
    let target = match cp.project.resolve_target(&global.overrides(), &jinja) {
        Ok(t) => t,
        Err(d) => {
            eprint!("{}", crate::diagnostics::render(&d, super::common::use_color()));
            let message = format!("not running: {}", d.message);
            let mut diags = crate::diagnostics::Diagnostics::new();
            diags.push(d);
            return Ok(super::common::fail(global, &message, &diags));
        }
    };
    let metrics = match &args.metrics_addr {
        None => None,
        Some(addr) => {
            let metrics = Arc::new(Metrics::new());
            match metrics.serve(addr) {
                Ok(bound) => eprintln!("metrics on http://{bound}/metrics, health on http://{bound}/healthz"),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(1));
                }
            }
            Some(metrics)
        }
    };
    crate::compile::names::prefix_derived_topics(&mut cp, &target.topic_prefix);
    let opts = RunOptions {
        metrics,
        until_caught_up: args.until_caught_up,
        max_batch_records: args.max_batch_records.max(1),
        max_batch_bytes: args.max_batch_bytes.max(1),
        checkpoint_interval: Duration::from_millis(args.checkpoint_interval_ms),
        guarantee: target.guarantee,
        threads: args.threads.unwrap_or_else(crate::runtime::worker::default_threads).max(1),
        ..RunOptions::default()
    };
    eprintln!("running {} on target `{}`", plural(models.len(), "job"), target.name);
    match run(Arc::new(cp), &models, &target, &opts, args.select.is_empty()) {
        Ok(outcome) => report(global, &outcome, args.show),
        Err(e) => Ok(super::common::error_exit(global, e)),
    }
}

/// Each job's counters, then (embedded target) each output topic's record count and first rows.
/// The outcome of a run for `--format json` (schemas/run.schema.json).
pub fn report_json(outcome: &RunOutcome) -> serde_json::Value {
    let failed = outcome.results.iter().any(|(_, r)| r.is_err());
    let jobs: Vec<&JobStats> = outcome.results.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
    let errors: Vec<serde_json::Value> = outcome
        .results
        .iter()
        .filter_map(|(model, r)| r.as_ref().err().map(|e| serde_json::json!({"model": model, "error": e.to_string()})))
        .collect();
    let outs: Vec<serde_json::Value> = outcome
        .outputs
        .iter()
        .map(|(m, t, rows)| serde_json::json!({"model": m, "topic": t, "records": rows.len()}))
        .collect();
    let failed = failed || outcome.sinks.iter().any(|(_, r)| r.is_err());
    let sinks: Vec<serde_json::Value> = outcome
        .sinks
        .iter()
        .map(|(name, r)| match r {
            Ok(s) => serde_json::json!({"sink": s.sink, "model": s.model, "location": s.location, "records": s.records, "dead_lettered": s.dead_lettered, "files": s.files}),
            Err(e) => serde_json::json!({"sink": name, "error": e.to_string()}),
        })
        .collect();
    serde_json::json!({"ok": !failed, "jobs": jobs, "errors": errors, "outputs": outs, "sinks": sinks})
}

pub fn report(global: &GlobalArgs, outcome: &RunOutcome, show: usize) -> anyhow::Result<ExitCode> {
    let (results, outputs) = (&outcome.results, &outcome.outputs);
    let mut failed = false;
    let mut stats: Vec<JobStats> = Vec::new();
    for (model, r) in results {
        match r {
            Ok(s) => stats.push(s.clone()),
            Err(e) => {
                failed = true;
                eprintln!("error: job {model}: {e}");
            }
        }
    }
    let mut sinks = Vec::new();
    for (sink, r) in &outcome.sinks {
        match r {
            Ok(s) => sinks.push(s),
            Err(e) => {
                failed = true;
                eprintln!("error: sink {sink}: {e}");
            }
        }
    }
    match global.format {
        OutputFormat::Json => super::common::print_json(&report_json(outcome))?,
        OutputFormat::Text => {
            println!(
                "{:<24} {:>8} {:>8} {:>6} {:>6} {:>6} {:>5} {:>6}  watermark",
                "job", "in", "out", "bad", "dlq", "late", "gaps", "open"
            );
            for s in &stats {
                // Windows still open hold results that come once event time passes them.
                let watermark = s
                    .watermark
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map_or_else(|| "-".to_string(), |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
                println!(
                    "{:<24} {:>8} {:>8} {:>6} {:>6} {:>6} {:>5} {:>6}  {}",
                    s.model,
                    s.records_in,
                    s.records_out,
                    s.bad_records,
                    s.dead_lettered,
                    s.late,
                    s.gaps.len(),
                    s.open_windows,
                    watermark
                );
            }
            let open: u64 = stats.iter().map(|s| s.open_windows).sum();
            if open > 0 {
                println!(
                    "\n{open} window{} (one per key) still open: their results come once event time passes their end \
                     (plus grace), when newer input arrives",
                    if open == 1 { "" } else { "s" }
                );
            }
            for (model, topic, rows) in outputs {
                println!("\n{model} → {topic}: {}", plural(rows.len(), "record"));
                for (_, v) in rows.iter().take(show) {
                    match v {
                        Some(v) => println!("  {}", String::from_utf8_lossy(v)),
                        None => println!("  (tombstone)"),
                    }
                }
            }
            for s in &sinks {
                let written = if s.to_files {
                    format!("{} in {}", plural(s.records as usize, "record"), plural(s.files.len(), "new file"))
                } else {
                    format!("{} written", plural(s.records as usize, "record"))
                };
                let written = match s.dead_lettered {
                    0 => written,
                    n => format!("{written}, {} to the dead-letter topic", plural(n as usize, "record")),
                };
                println!("\nsink {} ({} → {}): {written}", s.sink, s.model, s.location);
                for f in &s.files {
                    println!("  {}", f.display());
                }
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
