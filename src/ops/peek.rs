//! `streamctl peek`: the records of a source's, a model's or any topic's partitions, decoded
//! with the relation's own codec (JSON, Avro, Debezium), with key, partition, offset, timestamp
//! and headers. A record the codec cannot decode is shown with the reason, never left out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Serialize;

use super::host::{job_topics, run_jobs};
use crate::compile::CompiledProject;
use crate::connectors::consumer::{manual_consumer, partition_offsets};
use crate::connectors::embedded::EmbeddedBroker;
use crate::connectors::kafka::{Cluster, TopicSpec};
use crate::formats::json::encode_rows;
use crate::graph::NodeId;
use crate::project::config::{RelationKind, TargetKind};
use crate::project::target::ResolvedTarget;
use crate::runtime::codec::{record_of, InputCodec, Record};
use crate::runtime::worker::{RunControl, RunOptions};
use crate::sql::dialect::PseudoColumn;

/// What a name on the command line stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    /// A source (`group.table`, or its table name when no other source or model has it).
    Source(String),
    Model(String),
    /// A topic the project does not declare: shown as it is, without decoding.
    Topic(String),
}

impl Relation {
    pub fn node(&self) -> Option<NodeId> {
        match self {
            Relation::Source(s) => Some(NodeId::Source(s.clone())),
            Relation::Model(m) => Some(NodeId::Model(m.clone())),
            Relation::Topic(_) => None,
        }
    }
}

/// Resolves a name to a source or model of the project (case-insensitively); `None` when it
/// names neither.
pub fn resolve_relation(cp: &CompiledProject, name: &str) -> Option<Relation> {
    if let Some(m) = cp.models.keys().find(|m| m.eq_ignore_ascii_case(name)) {
        return Some(Relation::Model(m.clone()));
    }
    if let Some(s) = cp.sources.keys().find(|s| s.eq_ignore_ascii_case(name)) {
        return Some(Relation::Source(s.clone()));
    }
    let by_table: Vec<&String> =
        cp.sources.iter().filter(|(_, s)| s.decl.table.name.eq_ignore_ascii_case(name)).map(|(n, _)| n).collect();
    match by_table.as_slice() {
        [one] => Some(Relation::Source((*one).clone())),
        _ => None,
    }
}

/// The name resolved to a relation, or to a topic of the project's sources or models, or
/// taken as a topic name.
pub fn resolve_peek_target(cp: &CompiledProject, name: &str) -> Relation {
    if let Some(r) = resolve_relation(cp, name) {
        return r;
    }
    if let Some((n, _)) = cp.sources.iter().find(|(_, s)| s.decl.table.topic == name) {
        return Relation::Source(n.clone());
    }
    if let Some((n, _)) = cp.models.iter().find(|(_, m)| m.topic == name) {
        return Relation::Model(n.clone());
    }
    Relation::Topic(name.to_string())
}

/// Where reading starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    /// The last records of each partition (as `tail`).
    Latest,
    /// The first record stamped at or after this time (epoch ms).
    Time(i64),
}

impl StartAt {
    /// `earliest`, `latest`, an RFC 3339 time (`2024-01-31T00:00:00Z`) or epoch milliseconds.
    pub fn parse(text: &str) -> Result<StartAt, String> {
        match text {
            "earliest" | "beginning" => Ok(StartAt::Earliest),
            "latest" | "end" => Ok(StartAt::Latest),
            t => {
                if let Ok(ms) = t.parse::<i64>() {
                    return Ok(StartAt::Time(ms));
                }
                chrono::DateTime::parse_from_rfc3339(t).map(|d| StartAt::Time(d.timestamp_millis())).map_err(|_| {
                    format!(
                        "`{t}` is not a start position: use earliest, latest, an RFC 3339 time \
                         (2024-01-31T00:00:00Z) or epoch milliseconds"
                    )
                })
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct PeekOptions {
    /// Records to show at most (`None`: no limit, with `follow`).
    pub limit: Option<usize>,
    pub start: StartAt,
    pub partition: Option<i32>,
    /// Keep reading new records until stopped.
    pub follow: bool,
}

/// A record's value as peek shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PeekedValue {
    /// Decoded with the relation's format into its columns.
    Row { row: serde_json::Map<String, serde_json::Value> },
    /// A null value: on a table, the deletion of its key.
    Tombstone,
    /// The relation's codec rejected it.
    Malformed { reason: String, raw: Option<String> },
    /// A topic the project does not declare: the value as text (JSON when it parses).
    Raw { raw: serde_json::Value },
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PeekedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Kafka timestamp, epoch ms.
    pub timestamp: i64,
    pub key: Option<String>,
    pub headers: Vec<(String, Option<String>)>,
    pub value: PeekedValue,
}

/// Bytes as text: UTF-8 as it is, anything else as hex (`0x...`).
pub fn bytes_as_text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("0x{hex}")
        }
    }
}

/// Decodes a record's value the way the jobs decode it.
pub fn peek_value(codec: Option<&InputCodec>, record: &Record) -> PeekedValue {
    let Some(codec) = codec else {
        return match &record.value {
            None => PeekedValue::Tombstone,
            Some(v) => PeekedValue::Raw {
                raw: serde_json::from_slice(v).unwrap_or_else(|_| serde_json::Value::String(bytes_as_text(v))),
            },
        };
    };
    if record.value.is_none() && codec.kind == RelationKind::Table {
        return PeekedValue::Tombstone;
    }
    let raw = record.value.as_deref().map(bytes_as_text);
    let decoded = codec.decode(std::slice::from_ref(record));
    if let Some(bad) = decoded.bad.first() {
        return PeekedValue::Malformed { reason: bad.reason.clone(), raw };
    }
    let pseudo: Vec<&str> =
        [PseudoColumn::Rowtime, PseudoColumn::Rowpartition, PseudoColumn::Rowoffset].iter().map(|p| p.name()).collect();
    let schema = decoded.batch.schema();
    let columns: Vec<usize> =
        (0..schema.fields().len()).filter(|i| !pseudo.contains(&schema.field(*i).name().as_str())).collect();
    let row = decoded
        .batch
        .project(&columns)
        .map_err(|e| e.to_string())
        .and_then(|b| encode_rows(&b).map_err(|e| e.to_string()))
        .and_then(|rows| rows.into_iter().next().ok_or_else(|| "no row decoded".to_string()))
        .and_then(|r| {
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&r).map_err(|e| e.to_string())
        });
    match row {
        Ok(row) => PeekedValue::Row { row },
        Err(reason) => PeekedValue::Malformed { reason, raw },
    }
}

/// The topic a relation lives in.
pub fn topic_of(cp: &CompiledProject, r: &Relation) -> String {
    match r {
        Relation::Source(s) => cp.sources[s].decl.table.topic.clone(),
        Relation::Model(m) => cp.models[m].topic.clone(),
        Relation::Topic(t) => t.clone(),
    }
}

/// A flag set by Ctrl-C or SIGTERM: the command stops reading and ends cleanly.
pub fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            flag.store(true, Ordering::SeqCst);
            let _ = tokio::signal::ctrl_c().await;
            std::process::exit(130);
        });
    });
    stop
}

/// Reads the records `opts` asks for, handing each to `emit` (in the order read; with
/// `Latest`, the tail sorted by timestamp first). Returns the number shown.
pub fn peek(
    cp: &CompiledProject,
    client: &ClientConfig,
    target: &Relation,
    registry: Option<&crate::registry::SharedRegistry>,
    opts: &PeekOptions,
    stop: &AtomicBool,
    emit: &mut dyn FnMut(&PeekedRecord) -> std::io::Result<()>,
) -> Result<usize, String> {
    let topic = topic_of(cp, target);
    let registry = registry.map(|r| r.0.clone()).unwrap_or_else(|| crate::runtime::codec::project_registry(cp));
    let codec = match target.node() {
        Some(id) => Some(
            InputCodec::for_input_with_registry(cp, &id, Some(registry))
                .ok_or_else(|| format!("cannot build the decoder of {id} (its format)"))?,
        ),
        None => None,
    };
    let consumer = manual_consumer(client, "streamctl-peek")?;
    let _closed = crate::connectors::consumer::ClosedOnDrop(&consumer);
    let partitions = partition_offsets(&consumer, &topic)?.ok_or_else(|| format!("topic {topic} does not exist"))?;
    let partitions: Vec<(i32, i64, i64)> =
        partitions.into_iter().filter(|(p, _, _)| opts.partition.is_none_or(|want| want == *p)).collect();
    if partitions.is_empty() {
        return Err(format!("topic {topic} has no partition {}", opts.partition.unwrap_or_default()));
    }
    let tail = opts.limit.unwrap_or(10) as i64;
    let times: BTreeMap<i32, i64> = match opts.start {
        StartAt::Time(ms) => offsets_for_time(&consumer, &topic, &partitions, ms)?,
        _ => BTreeMap::new(),
    };
    let mut tpl = TopicPartitionList::new();
    // (next offset to read, end offset at start) per partition.
    let mut progress: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for (p, low, high) in &partitions {
        let start = match opts.start {
            StartAt::Earliest => *low,
            StartAt::Latest => (*high - tail).max(*low),
            StartAt::Time(_) => times.get(p).copied().unwrap_or(*high).clamp(*low, *high),
        };
        tpl.add_partition_offset(&topic, *p, Offset::Offset(start)).map_err(|e| format!("assigning {topic}: {e}"))?;
        progress.insert(*p, (start, *high));
    }
    consumer.assign(&tpl).map_err(|e| format!("reading {topic}: {e}"))?;
    let limit = if opts.follow && opts.start != StartAt::Latest { opts.limit } else { Some(opts.limit.unwrap_or(10)) };
    let mut shown = 0usize;
    let caught_up = |progress: &BTreeMap<i32, (i64, i64)>| progress.values().all(|(next, end)| next >= end);

    // The records there are now: the tail (sorted by time), or the first `limit` as read.
    let latest = opts.start == StartAt::Latest;
    let mut tail_records: Vec<PeekedRecord> = Vec::new();
    while !caught_up(&progress) && !stop.load(Ordering::SeqCst) && (latest || limit.is_none_or(|l| shown < l)) {
        let Some(r) = poll_one(&consumer, &topic, codec.as_ref(), &mut progress)? else { continue };
        if latest {
            tail_records.push(r);
        } else {
            emit(&r).map_err(|e| e.to_string())?;
            shown += 1;
        }
    }
    tail_records.sort_by_key(|r| (r.timestamp, r.partition, r.offset));
    let skip = tail_records.len().saturating_sub(limit.unwrap_or(usize::MAX));
    for r in &tail_records[skip..] {
        emit(r).map_err(|e| e.to_string())?;
        shown += 1;
    }
    if !opts.follow {
        return Ok(shown);
    }
    // Then what arrives, until stopped or the limit.
    let follow_limit = opts.limit.filter(|_| opts.start != StartAt::Latest);
    while !stop.load(Ordering::SeqCst) && follow_limit.is_none_or(|l| shown < l) {
        if let Some(r) = poll_one(&consumer, &topic, codec.as_ref(), &mut progress)? {
            emit(&r).map_err(|e| e.to_string())?;
            shown += 1;
        }
    }
    Ok(shown)
}

fn poll_one(
    consumer: &BaseConsumer,
    topic: &str,
    codec: Option<&InputCodec>,
    progress: &mut BTreeMap<i32, (i64, i64)>,
) -> Result<Option<PeekedRecord>, String> {
    let msg = match consumer.poll(Duration::from_millis(200)) {
        None => {
            advance_to_positions(consumer, topic, progress);
            return Ok(None);
        }
        Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
        Some(Ok(m)) => m,
    };
    if let Some(p) = progress.get_mut(&msg.partition()) {
        p.0 = msg.offset() + 1;
    }
    let record = record_of(&msg);
    let headers = msg
        .headers()
        .map(|hs| hs.iter().map(|h| (h.key.to_string(), h.value.map(bytes_as_text))).collect())
        .unwrap_or_default();
    Ok(Some(PeekedRecord {
        topic: topic.to_string(),
        partition: record.partition,
        offset: record.offset,
        timestamp: record.timestamp,
        key: record.key.as_deref().map(bytes_as_text),
        headers,
        value: peek_value(codec, &record),
    }))
}

/// Moves each partition's next offset to the consumer's position: a transactional topic ends
/// with commit markers, which the consumer skips without handing them out, so the last record
/// read is not always just before the end.
pub fn advance_to_positions(consumer: &BaseConsumer, topic: &str, progress: &mut BTreeMap<i32, (i64, i64)>) {
    let Ok(positions) = consumer.position() else { return };
    for (p, (next, _)) in progress.iter_mut() {
        if let Some(Offset::Offset(o)) = positions.find_partition(topic, *p).map(|e| e.offset()) {
            *next = (*next).max(o);
        }
    }
}

/// The first offset at or after `ms` in each partition (the end where there is none).
fn offsets_for_time(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[(i32, i64, i64)],
    ms: i64,
) -> Result<BTreeMap<i32, i64>, String> {
    let mut tpl = TopicPartitionList::new();
    for (p, _, _) in partitions {
        tpl.add_partition_offset(topic, *p, Offset::Offset(ms)).map_err(|e| format!("{topic}: {e}"))?;
    }
    let found = consumer
        .offsets_for_times(tpl, Duration::from_secs(10))
        .map_err(|e| format!("looking up offsets of {topic} by time: {e}"))?;
    let mut out = BTreeMap::new();
    for (p, _, high) in partitions {
        let at = match found.find_partition(topic, *p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => *high,
        };
        out.insert(*p, at);
    }
    Ok(out)
}

/// The cluster a reading command (`peek`, `query`, `shell`) reads from: a Kafka target as it is,
/// or the embedded broker, which starts empty with this process and so first gets the sample data
/// of the sources involved and the records of the models involved (their jobs run until caught
/// up), once each for as long as it lives.
pub struct ReadTarget {
    /// Kept alive for as long as the command reads.
    broker: Option<EmbeddedBroker>,
    pub client: ClientConfig,
    /// The target's schema registry (Avro writer schemas by id); `None`: the project's files.
    pub registry: Option<crate::registry::SharedRegistry>,
    /// Embedded: the sources and models whose records are in the broker.
    loaded: BTreeSet<NodeId>,
}

impl ReadTarget {
    /// `reads`: the relations the command reads (the models among them and everything
    /// upstream of them run first on the embedded target).
    pub fn open(cp: &Arc<CompiledProject>, target: &ResolvedTarget, reads: &[NodeId]) -> Result<ReadTarget, String> {
        let mut r = ReadTarget::connect(cp, target)?;
        r.load(cp, reads)?;
        Ok(r)
    }

    /// The target's cluster: a Kafka target checked reachable (with its schema registry), or an
    /// empty embedded broker.
    pub fn connect(cp: &CompiledProject, target: &ResolvedTarget) -> Result<ReadTarget, String> {
        if target.kind != TargetKind::Embedded {
            let cluster = Cluster::Kafka {
                bootstrap: target.bootstrap_servers.clone().unwrap_or_default(),
                properties: target.properties.clone().into_iter().collect(),
                replication_factor: target.replication_factor,
            };
            cluster.check_reachable()?;
            let registry = Some(super::run::target_registry(target, cp)?);
            return Ok(ReadTarget { client: cluster.client_config(), broker: None, registry, loaded: BTreeSet::new() });
        }
        let registry = Some(super::run::target_registry(target, cp)?);
        let broker = EmbeddedBroker::start()?;
        let client = Cluster::Embedded(&broker).client_config();
        Ok(ReadTarget { client, broker: Some(broker), registry, loaded: BTreeSet::new() })
    }

    /// Embedded: loads the sample data of the sources `reads` depend on and runs the models
    /// among them and upstream until caught up, skipping what an earlier call loaded. Nothing to
    /// do on a Kafka target.
    pub fn load(&mut self, cp: &Arc<CompiledProject>, reads: &[NodeId]) -> Result<(), String> {
        let Some(broker) = &self.broker else { return Ok(()) };
        let mut upstream: BTreeSet<NodeId> = BTreeSet::new();
        let mut todo: Vec<NodeId> = reads.to_vec();
        while let Some(id) = todo.pop() {
            if !self.loaded.contains(&id) && upstream.insert(id.clone()) {
                todo.extend(cp.graph.parents(&id));
            }
        }
        let models: Vec<String> = cp
            .order()
            .into_iter()
            .filter(|n| upstream.contains(n))
            .filter_map(|n| if let NodeId::Model(m) = n { Some(m) } else { None })
            .filter(|m| cp.models.contains_key(m))
            .collect();
        let sources: Vec<&String> = upstream
            .iter()
            .filter_map(|n| if let NodeId::Source(s) = n { Some(s) } else { None })
            .filter(|s| cp.sources.contains_key(*s))
            .collect();
        let cluster = Cluster::Embedded(broker);
        let mut specs: Vec<TopicSpec> = sources
            .iter()
            .map(|s| &cp.sources[*s])
            .map(|s| TopicSpec {
                name: s.decl.table.topic.clone(),
                partitions: s.partitions,
                compacted: s.decl.table.kind == RelationKind::Table,
            })
            .collect();
        specs.extend(job_topics(cp, &models, true));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(cluster.ensure_topics(&specs))?;
        let sources: Vec<String> = sources.into_iter().cloned().collect();
        let registry = self.registry.as_ref().map(|r| r.0.as_ref());
        for s in super::seed::produce_samples(cp, &self.client, &sources, &|_| true, registry)? {
            if s.records > 0 {
                eprintln!("loaded {} sample records into {}", s.records, s.topic);
            }
        }
        if !models.is_empty() {
            let opts = RunOptions { until_caught_up: true, registry: self.registry.clone(), ..RunOptions::default() };
            let control = Arc::new(RunControl::with_registry(self.registry.clone()));
            let results = run_jobs(cp.clone(), &models, &self.client, &opts, control);
            if let Some((m, Err(e))) = results.iter().find(|(_, r)| r.is_err()) {
                return Err(format!("job {m} failed on the sample data: {e}"));
            }
        }
        self.loaded.extend(upstream);
        Ok(())
    }
}
