//! Sources' sample data into their topics: `streamctl seed` on any target, and the load that
//! starts every embedded run. Every record is acknowledged by the broker, or the command fails.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;

use crate::compile::CompiledProject;
use crate::connectors::kafka::TopicSpec;
use crate::connectors::producer::{OutRecord, RecordProducer};
use crate::deploy::Session;
use crate::project::config::RelationKind;
use crate::registry::SchemaRegistry;
use crate::runtime::codec::project_registry;
use crate::runtime::samples::sample_records;

/// One source's sample data, produced.
#[derive(Debug, Clone)]
pub struct SeededSource {
    pub source: String,
    pub topic: String,
    /// The sample data file, as the source names it.
    pub file: String,
    pub records: usize,
}

/// Produces each source's sample data file into its topic and waits until the broker has every
/// record. `own_partitions(topic)`: whether the topic has the partition count its source
/// declares, so that each record goes where the source's key would put it; otherwise the
/// producer's partitioner (murmur2, like Java's) picks from the key. Avro values are framed with
/// the ids of `registry` (the target's; `None`: the project's file registry `schemas/`).
pub fn produce_samples(
    cp: &CompiledProject,
    client: &ClientConfig,
    sources: &[String],
    own_partitions: &dyn Fn(&str) -> bool,
    registry: Option<&dyn SchemaRegistry>,
) -> Result<Vec<SeededSource>, String> {
    let project_registry = project_registry(cp);
    let registry = registry.unwrap_or(project_registry.as_ref());
    let producer = RecordProducer::new(client)?;
    let mut seeded = Vec::new();
    for name in sources {
        let Some(src) = cp.sources.get(name) else { continue };
        let Some(path) = &src.decl.table.sample_data else { continue };
        let text = std::fs::read_to_string(cp.project.root.join(path))
            .map_err(|e| format!("cannot read sample data {path}: {e}"))?;
        let topic = &src.decl.table.topic;
        let declared = own_partitions(topic);
        let records = sample_records(cp, name, &text, registry)?;
        for r in &records {
            let rec = OutRecord {
                partition: declared.then_some(r.partition),
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                timestamp: r.timestamp,
            };
            let headers = crate::runtime::codec::kafka_headers(&r.headers);
            producer
                .send(topic, rec, headers.as_ref())
                .map_err(|e| format!("producing sample data to {topic}: {e}"))?;
        }
        seeded.push(SeededSource {
            source: name.clone(),
            topic: topic.clone(),
            file: path.clone(),
            records: records.len(),
        });
    }
    producer.flush().map_err(|e| format!("producing sample data: {e}"))?;
    Ok(seeded)
}

/// What `seed` did.
#[derive(Debug)]
pub struct SeedReport {
    pub sources: Vec<SeededSource>,
    /// Topics this command created.
    pub created: Vec<String>,
    /// Records each topic holds now, read back from the broker: the proof they arrived.
    pub holds: BTreeMap<String, i64>,
}

/// Why `seed` did nothing.
#[derive(Debug)]
pub enum SeedError {
    /// Source topics that do not exist (and were not to be created).
    MissingTopics(Vec<String>),
    Failed(String),
}

/// `streamctl seed`: the selected sources' sample data into their topics on the session's
/// target; missing topics are created (with the sources' partitions) when `create_topics`, or
/// on the embedded target, else nothing is produced.
pub fn seed(
    cp: &CompiledProject,
    session: &Session,
    sources: &[String],
    create_topics: bool,
) -> Result<SeedReport, SeedError> {
    let cluster = session.cluster();
    let topics: Vec<String> =
        sources.iter().filter_map(|s| cp.sources.get(s)).map(|s| s.decl.table.topic.clone()).collect();
    let existing = cluster.topic_facts(&topics).map_err(SeedError::Failed)?;
    let missing: Vec<TopicSpec> = sources
        .iter()
        .filter_map(|s| cp.sources.get(s))
        .filter(|s| !existing.contains_key(&s.decl.table.topic))
        .map(|s| TopicSpec {
            name: s.decl.table.topic.clone(),
            partitions: s.partitions,
            compacted: s.decl.table.kind == RelationKind::Table,
        })
        .collect();
    if !missing.is_empty() && !create_topics && !session.is_embedded() {
        return Err(SeedError::MissingTopics(missing.into_iter().map(|t| t.name).collect()));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SeedError::Failed(e.to_string()))?;
    rt.block_on(cluster.ensure_topics(&missing)).map_err(SeedError::Failed)?;
    let declared_partitions: BTreeMap<&str, i32> =
        sources.iter().filter_map(|s| cp.sources.get(s)).map(|s| (s.decl.table.topic.as_str(), s.partitions)).collect();
    let own_partitions =
        |topic: &str| existing.get(topic).is_none_or(|(n, _)| Some(n) == declared_partitions.get(topic));
    let seeded = produce_samples(cp, &cluster.client_config(), sources, &own_partitions, session.registry.as_deref())
        .map_err(SeedError::Failed)?;
    let after = cluster.topic_facts(&topics).map_err(SeedError::Failed)?;
    let holds = after.into_iter().map(|(t, (_, n))| (t, n)).collect();
    Ok(SeedReport { sources: seeded, created: missing.into_iter().map(|t| t.name).collect(), holds })
}
