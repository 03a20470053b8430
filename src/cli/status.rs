use std::process::ExitCode;

use clap::Args as ClapArgs;

use super::common::{GlobalArgs, OutputFormat};
use super::plan::session_or_exit;
use crate::ops::status::{connectors, jobs};

#[derive(Debug, ClapArgs)]
#[command(after_help = "\
What the target's control topic records as deployed for this project (generation, when, from
which commit); per Kafka Connect connector its state and its tasks' (a FAILED one with the
first line of its trace); and per job: the workers running its tasks (and, for a job cut into
tasks, which worker and thread holds each task), its lag (input records not yet processed,
from its consumer group's committed offsets), its throughput over the last minute (records in
and out per second, from the counters its checkpoints recorded in that minute), and its
counters since it was first deployed (records in and out, bad records, dead letters, late
events).

Examples:
  streamctl status --target prod
  streamctl status --target prod --format json")]
pub struct Args {}

pub fn exec(global: &GlobalArgs, _args: &Args) -> anyhow::Result<ExitCode> {
    let (cp, session) = match session_or_exit(global, "reading status") {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    if session.is_embedded() {
        return Ok(super::common::fail(
            global,
            "the embedded target lives only inside one streamctl process: `streamctl apply` prints its outcome; use a \
             Kafka target for status",
            &crate::diagnostics::Diagnostics::new(),
        ));
    }
    let state = session.read()?;
    let project = &cp.project.config.name;
    let job_status = jobs(&session.cluster().client_config(), &state);
    let connector_status = connectors(&session.connect, &state);
    match global.format {
        OutputFormat::Json => {
            let v = serde_json::json!({
                "project": project,
                "target": session.target.name,
                "generation": state.generation(),
                "deployment": state.deployment,
                "topics": state.topics.values().map(|t| serde_json::json!({"name": t.spec.name, "role": t.spec.role, "partitions": t.spec.partitions, "generation": t.meta.generation})).collect::<Vec<_>>(),
                "schemas": state.schemas.values().map(|s| serde_json::json!({"subject": s.spec.subject, "version": s.version, "id": s.id, "generation": s.meta.generation})).collect::<Vec<_>>(),
                "jobs": job_status,
                "connectors": connector_status,
            });
            super::common::print_json(&v)?;
        }
        OutputFormat::Text => {
            match &state.deployment {
                None => {
                    println!("Project {project} is not deployed on target {}.", session.target.name);
                    return Ok(ExitCode::SUCCESS);
                }
                Some(d) => println!(
                    "Project {project} on target {}: generation {} ({}), applied {} by {}{}",
                    session.target.name,
                    d.meta.generation,
                    format!("{:?}", d.status).to_lowercase(),
                    d.meta.applied_at,
                    d.meta.applied_by,
                    d.meta.git_commit.as_ref().map(|c| format!(" at {c}")).unwrap_or_default()
                ),
            }
            println!(
                "{} topics, {} schemas, {} jobs, {} connectors\n",
                state.topics.len(),
                state.schemas.len(),
                state.jobs.len(),
                state.connectors.len()
            );
            println!(
                "{:<24} {:>4} {:<28} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>6} {:>6}",
                "job", "gen", "worker", "lag", "in/s", "out/s", "in", "out", "bad", "dlq", "late"
            );
            for j in &job_status {
                let t = j.totals.unwrap_or_default();
                // Tasks over several workers: how many (each task's holder is listed below).
                let held: Vec<&str> = j.tasks.iter().filter_map(|t| t.worker.as_deref()).collect();
                let mut processes: Vec<&str> = held.iter().map(|h| h.split('/').next().unwrap_or(h)).collect();
                processes.sort();
                processes.dedup();
                let worker = match (held.len(), processes.len()) {
                    (0, _) => "(not running)".to_string(),
                    (1, _) => held[0].to_string(),
                    (n, 1) => format!("{} ({n} tasks)", processes[0]),
                    (n, p) => format!("{p} workers, {n} tasks"),
                };
                let lag = j.lag.map_or("?".into(), |l| l.to_string());
                let rate = |r: Option<f64>| r.map_or("?".into(), |r| format!("{r:.1}"));
                println!(
                    "{:<24} {:>4} {:<28} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>6} {:>6}",
                    j.model,
                    j.generation,
                    worker,
                    lag,
                    rate(j.throughput.map(|t| t.records_in_per_second)),
                    rate(j.throughput.map(|t| t.records_out_per_second)),
                    t.records_in,
                    t.records_out,
                    t.bad_records,
                    t.dead_lettered,
                    t.late
                );
            }
            // Jobs cut into tasks: who holds each.
            for j in job_status.iter().filter(|j| j.tasks.iter().any(|t| t.task != "all")) {
                println!("\n{} tasks:", j.model);
                let width = j.tasks.iter().map(|t| t.task.len()).max().unwrap_or(0).max(6);
                for t in &j.tasks {
                    println!("  {:<width$} {}", t.task, t.worker.as_deref().unwrap_or("(not running)"));
                }
            }
            print_connectors(&connector_status);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_connectors(rows: &[crate::ops::status::ConnectorStatus]) {
    if rows.is_empty() {
        return;
    }
    println!("\n{:<24} {:<6} {:<10} {:>4} {:<10} {:<28}", "connector", "type", "cluster", "gen", "state", "worker");
    for c in rows {
        println!(
            "{:<24} {:<6} {:<10} {:>4} {:<10} {:<28}",
            c.name,
            c.kind,
            c.cluster,
            c.generation,
            c.state.as_deref().unwrap_or("?"),
            c.worker.as_deref().unwrap_or("")
        );
        if let Some(e) = &c.error {
            println!("    {e}");
        }
        for t in &c.tasks {
            println!("    task {:<3} {:<10} {}", t.id, t.state, t.worker);
            if let Some(e) = &t.error {
                println!("        {e}");
            }
        }
    }
}
