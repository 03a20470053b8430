use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args as ClapArgs;
use serde_json::json;

use super::common::{plural, selected_or_exit, GlobalArgs, OutputFormat};
use super::plan::session_or_exit;
use crate::graph::NodeId;
use crate::ops::seed::SeedError;

#[derive(Debug, ClapArgs)]
#[command(after_help = "\
Produces each source's `sample_data` file (JSON Lines) into the source's topic: keys from the
source's key columns, timestamps from its event time column, values as the topic holds them.
dbt's `seed` for streams: it makes the example and a new project runnable on a real Kafka.
A source topic that does not exist is an error unless --create-topics (then it is created
with the source's `partitions`). On the embedded target the broker lives only as long as the
command: `apply` and `run` load the sample data there themselves.

Examples:
  streamctl seed --target local --create-topics
  streamctl seed --target local --select source:soe.orders
  streamctl seed --target local --format json")]
pub struct Args {
    /// Sources to seed (dbt selection syntax; default: every source with sample_data).
    #[arg(long, short = 's', num_args = 1.., value_name = "SELECTOR")]
    pub select: Vec<String>,
    /// Create the source topics that do not exist yet.
    #[arg(long)]
    pub create_topics: bool,
}

pub fn exec(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitCode> {
    let (cp, session) = match session_or_exit(global, "seeding") {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let chosen = match selected_or_exit(global, &cp, &args.select) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let seeded: Vec<_> = cp
        .sources
        .iter()
        .filter(|(name, s)| s.decl.table.sample_data.is_some() && chosen.contains(&NodeId::Source((*name).clone())))
        .collect();
    if seeded.is_empty() {
        return Ok(super::common::error_exit(global, "no selected source has `sample_data`"));
    }
    let sources: Vec<String> = seeded.iter().map(|(name, _)| (*name).clone()).collect();
    let report = match crate::ops::seed::seed(&cp, &session, &sources, args.create_topics) {
        Ok(r) => r,
        Err(SeedError::MissingTopics(names)) => {
            let message = format!(
                "{} on target `{}`: {}",
                plural(names.len(), "source topic does not exist"),
                session.target.name,
                names.join(", ")
            );
            let code = super::common::error_exit(global, message);
            eprintln!("help: pass --create-topics to create them with the sources' partitions");
            return Ok(code);
        }
        Err(SeedError::Failed(e)) => return Ok(super::common::error_exit(global, e)),
    };
    let holds = |topic: &str| report.holds.get(topic).copied().unwrap_or(0);
    let created = |topic: &str| report.created.iter().any(|t| t == topic);
    let report: Vec<_> = report
        .sources
        .iter()
        .map(|s| (s.source.as_str(), s.topic.as_str(), s.file.as_str(), s.records, created(&s.topic)))
        .collect();
    match global.format {
        OutputFormat::Json => {
            let sources: Vec<serde_json::Value> = report
                .iter()
                .map(|(source, topic, file, records, created)| {
                    json!({"source": source, "topic": topic, "file": file, "records": records, "created": created, "topic_records": holds(topic)})
                })
                .collect();
            super::common::print_json(&json!({"target": session.target.name, "sources": sources}))?;
        }
        OutputFormat::Text => {
            let mut by_topic: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, topic, file, records, created) in &report {
                *by_topic.entry(topic).or_default() += records;
                println!(
                    "{topic}: {} from {file}{}, the topic holds {}",
                    plural(*records, "record"),
                    if *created { " (topic created)" } else { "" },
                    holds(topic)
                );
            }
            let total: usize = by_topic.values().sum();
            eprintln!(
                "Seeded {} into {} on target `{}`.",
                plural(total, "record"),
                plural(by_topic.len(), "topic"),
                session.target.name
            );
            if session.is_embedded() {
                eprintln!("note: the embedded broker ends with this command; `streamctl apply` and `run` load the sample data there themselves");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
