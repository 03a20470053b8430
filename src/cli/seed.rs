use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args as ClapArgs;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use serde_json::json;

use super::common::{plural, selected_or_exit, GlobalArgs, OutputFormat};
use super::plan::session_or_exit;
use crate::connectors::kafka::TopicSpec;
use crate::graph::NodeId;
use crate::project::config::RelationKind;
use crate::runtime::samples::sample_records;

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
    let cluster = session.cluster();
    let topics: Vec<String> = seeded.iter().map(|(_, s)| s.decl.table.topic.clone()).collect();
    let existing = cluster.topic_facts(&topics).map_err(anyhow::Error::msg)?;
    let missing: Vec<&(&String, &crate::compile::CompiledSource)> =
        seeded.iter().filter(|(_, s)| !existing.contains_key(&s.decl.table.topic)).collect();
    if !missing.is_empty() && !args.create_topics && !session.is_embedded() {
        let names: Vec<&str> = missing.iter().map(|(_, s)| s.decl.table.topic.as_str()).collect();
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
    let specs: Vec<TopicSpec> = missing
        .iter()
        .map(|(_, s)| TopicSpec {
            name: s.decl.table.topic.clone(),
            partitions: s.partitions,
            compacted: s.decl.table.kind == RelationKind::Table,
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(cluster.ensure_topics(&specs)).map_err(anyhow::Error::msg)?;

    // Keys go where a Java producer would put them (murmur2), also when the topic has another
    // partition count than the source declares.
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        cluster.client_config().set("partitioner", "murmur2_random").create()?;
    let mut report = Vec::new();
    for (name, s) in &seeded {
        let Some(path) = &s.decl.table.sample_data else { continue };
        let text = std::fs::read_to_string(cp.project.root.join(path))
            .map_err(|e| anyhow::anyhow!("cannot read sample data {path}: {e}"))?;
        let topic = &s.decl.table.topic;
        let declared_partitions = existing.get(topic).is_none_or(|(n, _)| *n == s.partitions);
        let records = sample_records(&cp, name, &text);
        for r in &records {
            let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).timestamp(r.timestamp);
            if declared_partitions {
                rec = rec.partition(r.partition);
            }
            if let Some(k) = &r.key {
                rec = rec.key(k.as_slice());
            }
            if let Some(v) = &r.value {
                rec = rec.payload(v.as_slice());
            }
            producer.send(rec).map_err(|(e, _)| anyhow::anyhow!("producing sample data to {topic}: {e}"))?;
        }
        report.push((name.to_string(), topic.clone(), path.clone(), records.len(), !existing.contains_key(topic)));
    }
    producer.flush(Duration::from_secs(30)).map_err(|e| anyhow::anyhow!("producing sample data: {e}"))?;
    // What the broker holds now, read back: the proof that the records arrived.
    let after = cluster.topic_facts(&topics).map_err(anyhow::Error::msg)?;
    let holds = |topic: &str| after.get(topic).map_or(0, |(_, n)| *n);
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
