//! The file sink's task: reads the model's topic and writes its records into the sink's
//! directory ([`FileWriter`]), or, with a `route` transform, into a subdirectory per routed name.
//!
//! Where a partition resumes: after its committed offset, or, without routes, after the newest
//! closed file when that is later (a crash between closing a file and committing leaves the file
//! ahead). Offsets are committed only up to the first record of any open part file, so every
//! record before a committed offset is in a closed file (or its dead-letter copy is flushed);
//! each directory skips the records its closed files already hold, so none is written twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::file::{self, FileWriter};
use super::transform::Names;
use super::{
    commit, committed_offsets, flush_dead_letters, jsonl_line, record_of, skip_transaction_markers, wait_for_lock,
    DeadLetters, Refused, SinkOutcome, SinkRun,
};
use crate::compile::CompiledProject;
use crate::project::config::{FileFormat, ParquetCompression, SinkConnector, SinkTransform};
use crate::project::SinkDecl;
use crate::runtime::codec::InputCodec;
use crate::runtime::worker::RunControl;

/// A routed name as one directory name: characters a file name should not hold become `_`.
pub fn dir_name(routed: &str) -> String {
    let name: String = routed
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    match name.as_str() {
        "" | "." | ".." => format!("_{name}"),
        _ if name.starts_with('.') => format!("_{name}"),
        _ => name,
    }
}

/// The writers of a sink: its directory (`""`) and, with routes, one per subdirectory.
struct Writers {
    root: PathBuf,
    format: file::Format,
    roll_bytes: u64,
    roll_after: Duration,
    fresh: bool,
    sink: String,
    topic: String,
    /// Per directory: its writer and, per partition, the offset its closed files end before.
    open: BTreeMap<String, (FileWriter, BTreeMap<i32, i64>)>,
    ends: BTreeMap<i32, i64>,
}

impl Writers {
    /// The writer of a directory, opened on first use (removing its unfinished part files).
    fn get(&mut self, route: &str) -> Result<&mut (FileWriter, BTreeMap<i32, i64>), String> {
        if !self.open.contains_key(route) {
            let dir = if route.is_empty() { self.root.clone() } else { self.root.join(route) };
            let (writer, recovered) =
                FileWriter::open(&dir, self.format.clone(), self.roll_bytes, self.roll_after, self.fresh)?;
            let name = &self.sink;
            if recovered.discarded_parts > 0 {
                eprintln!(
                    "[sink {name}] removed {} unfinished part file(s) of an earlier run in {}; their records are \
                     written again",
                    recovered.discarded_parts,
                    dir.display()
                );
            }
            if recovered.removed_closed > 0 {
                eprintln!(
                    "[sink {name}] removed {} file(s) of an earlier run in {} (the embedded broker starts empty)",
                    recovered.removed_closed,
                    dir.display()
                );
            }
            for (p, next) in &recovered.next_offsets {
                if self.ends.get(p).is_some_and(|high| next > high) {
                    // Reading from the topic's start again would write files of the same names.
                    return Err(format!(
                        "the files in {} end at offset {} of partition {p}, but {} ends at {}: they were written \
                         from another topic of that name (recreated, or another cluster). Move them away to deliver \
                         this topic there",
                        dir.display(),
                        next - 1,
                        self.topic,
                        self.ends.get(p).copied().unwrap_or_default()
                    ));
                }
            }
            self.open.insert(route.to_string(), (writer, recovered.next_offsets));
        }
        self.open.get_mut(route).ok_or_else(|| "no writer".to_string())
    }

    /// Closes the files due (`all`: every file); returns, per partition, the offset that is
    /// safe to commit: before the first record of any open part file, else `next`.
    fn roll(&mut self, all: bool, next: &BTreeMap<i32, i64>) -> Result<BTreeMap<i32, i64>, String> {
        for (w, _) in self.open.values_mut() {
            if all {
                w.finish()?;
            } else {
                w.roll_due(Instant::now())?;
            }
        }
        Ok(next
            .iter()
            .map(|(p, n)| {
                let first_open = self.open.values().filter_map(|(w, _)| w.first_open(*p)).min();
                (*p, first_open.map_or(*n, |f| f.min(*n)))
            })
            .collect())
    }

    fn closed(self) -> Vec<PathBuf> {
        self.open.into_values().flat_map(|(w, _)| w.closed).collect()
    }
}

/// Subdirectories of a routed sink written before (so a fresh run empties them too).
fn routed_dirs(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| dir_name(n) == *n)
        .collect()
}

/// Runs a file sink task. `fresh`: the topic's offsets start over (the embedded broker), so
/// earlier files are replaced rather than resumed after.
pub fn run(
    cp: &CompiledProject,
    sink: &SinkDecl,
    client: &ClientConfig,
    how: SinkRun,
    control: &RunControl,
    fresh: bool,
) -> Result<SinkOutcome, String> {
    let name = &sink.sink.name;
    let model_name = &sink.sink.from;
    let model = cp.models.get(model_name).ok_or_else(|| format!("no model `{model_name}`"))?;
    let SinkConnector::File { path, format, compression, roll_bytes, roll_seconds, transforms } = &sink.sink.connector
    else {
        return Err("not a file sink".into());
    };
    let format = file_format(model, *format, *compression, transforms)?;
    let parquet = !matches!(format, file::Format::Jsonl);
    let codec = InputCodec::for_model_output(cp, model_name, control.registry.as_ref())
        .ok_or_else(|| format!("cannot decode the output of `{model_name}`"))?;
    let routed = transforms.iter().any(|t| matches!(t, SinkTransform::Route { .. }));
    let dir = cp.project.root.join(path);
    let outcome = |records, dead_lettered, files| SinkOutcome {
        sink: name.clone(),
        model: model_name.clone(),
        location: dir.display().to_string(),
        records,
        dead_lettered,
        to_files: true,
        files,
    };
    let Some(_lock) = wait_for_lock(name, &dir, how, control)? else {
        return Ok(outcome(0, 0, Vec::new()));
    };
    let topic = &model.topic;
    let (consumer, partitions) = super::output_consumer(cp, client, name, model_name)?;
    let _closed = crate::connectors::consumer::ClosedOnDrop(&consumer);
    let committed = committed_offsets(&consumer, topic, &partitions, fresh)?;
    let mut writers = Writers {
        root: dir.clone(),
        format: format.clone(),
        roll_bytes: roll_bytes.unwrap_or(file::DEFAULT_ROLL_BYTES),
        roll_after: Duration::from_secs(roll_seconds.unwrap_or(file::DEFAULT_ROLL_SECONDS)),
        fresh,
        sink: name.clone(),
        topic: topic.clone(),
        open: BTreeMap::new(),
        ends: partitions.iter().map(|(p, _, high)| (*p, *high)).collect(),
    };
    writers.get("")?;
    if routed {
        for d in routed_dirs(&dir) {
            writers.get(&d)?;
        }
    }

    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    let mut ahead = BTreeMap::new();
    for (p, low, _) in &partitions {
        // Without routes the directory's closed files may be ahead of the group.
        let from_files = if routed { None } else { writers.open.get("").and_then(|(_, n)| n.get(p).copied()) };
        let from_group = committed.get(p).copied();
        let resume = from_files.max(from_group).unwrap_or(*low).max(*low);
        if from_files > from_group {
            ahead.insert(*p, resume);
        }
        next.insert(*p, resume);
        assignment
            .add_partition_offset(topic, *p, Offset::Offset(resume))
            .map_err(|e| format!("assigning {topic}: {e}"))?;
    }
    commit(&consumer, topic, &ahead, name);
    consumer.assign(&assignment).map_err(|e| format!("assigning {topic}: {e}"))?;

    let label = Names { project: &cp.project.config.name, model: model_name, sink: name };
    let ends = writers.ends.clone();
    let caught_up = |next: &BTreeMap<i32, i64>| ends.iter().all(|(p, end)| next.get(p).is_some_and(|n| n >= end));
    let mut records = 0u64;
    let mut dead_letters = DeadLetters::for_sink(cp, sink, client)?;
    let mut waiting = super::BoundedWait::new(how);
    let mut committed_at = next.clone();
    loop {
        if control.stop.load(Ordering::SeqCst) || (how == SinkRun::UntilCaughtUp && caught_up(&next)) {
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let row = jsonl_line(&codec, transforms, label, m.key(), m.payload());
                let row = match row {
                    Ok((route, line)) if m.payload().is_none() => parquet_tombstone(&format, line)
                        .map(|l| (route, l))
                        .map_err(|reason| Refused { reason, written: None }),
                    // A Parquet file has no place for a value that is not a row.
                    Err(Refused { reason, .. }) if parquet => Err(Refused { reason, written: None }),
                    row => row,
                };
                match (row, dead_letters.as_mut()) {
                    (Ok((route, line)), _) => {
                        let (w, skip) = writers.get(&route.as_deref().map(dir_name).unwrap_or_default())?;
                        // A record a closed file of this directory holds is not written again.
                        if skip.get(&m.partition()).is_none_or(|s| m.offset() >= *s) {
                            w.write(m.partition(), m.offset(), &line)?;
                            records += 1;
                        }
                    }
                    (Err(refused), Some(d)) => d.send(topic, &record_of(&m), &refused.reason)?,
                    (Err(Refused { written: Some(line), .. }), None) => {
                        writers.get("")?.0.write(m.partition(), m.offset(), &line)?;
                        records += 1;
                    }
                    (Err(Refused { reason, written: None }), None) => {
                        return Err(format!(
                            "offset {} of partition {} of {topic}: {reason} (the sink stalls here; with `on_error: \
                             dead_letter` such records are copied to a dead-letter topic)",
                            m.offset(),
                            m.partition()
                        ))
                    }
                }
                next.insert(m.partition(), m.offset() + 1);
                waiting.record_arrived();
            }
            Some(Err(e)) => eprintln!("[sink {name}] reading {topic}: {e} (retrying)"),
            None => {
                skip_transaction_markers(&consumer, topic, &mut next);
                waiting.nothing_polled((name, topic), &consumer, &next, &ends)?;
            }
        }
        let safe = writers.roll(false, &next)?;
        committed_at = commit_moved(&consumer, topic, &dead_letters, safe, committed_at, name)?;
    }
    let safe = writers.roll(true, &next)?;
    commit_moved(&consumer, topic, &dead_letters, safe, committed_at, name)?;
    Ok(outcome(records, dead_letters.as_ref().map_or(0, |d| d.count), writers.closed()))
}

/// How the sink's files are written: JSON Lines, or Parquet with the model's columns after the
/// sink's transforms (and `_delete` for a table model).
fn file_format(
    model: &crate::compile::CompiledModel,
    format: FileFormat,
    compression: Option<ParquetCompression>,
    transforms: &[SinkTransform],
) -> Result<file::Format, String> {
    match format {
        FileFormat::Jsonl => Ok(file::Format::Jsonl),
        #[cfg(feature = "parquet")]
        FileFormat::Parquet => {
            use crate::project::config::RelationKind;
            let columns = model.schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
            let columns = super::transform::columns_after(transforms, columns);
            let key = (model.kind == RelationKind::Table).then(|| {
                model.key.iter().filter_map(|k| super::transform::column_after(transforms, k)).collect::<Vec<_>>()
            });
            let f = super::parquet::ParquetFormat::new(&columns, key, compression.unwrap_or_default());
            Ok(file::Format::Parquet(std::sync::Arc::new(f)))
        }
        #[cfg(not(feature = "parquet"))]
        FileFormat::Parquet => {
            let _ = (model, compression, transforms);
            Err(crate::compile::sink_checks::NO_PARQUET.into())
        }
    }
}

/// A tombstone's row: its JSON Lines form for JSON Lines, the key columns and `_delete` for Parquet.
fn parquet_tombstone(format: &file::Format, line: Vec<u8>) -> Result<Vec<u8>, String> {
    match format {
        file::Format::Jsonl => Ok(line),
        #[cfg(feature = "parquet")]
        file::Format::Parquet(f) => f.tombstone_row(&line),
    }
}

/// Commits the partitions whose safe offset moved (dead-letter copies flushed first); returns
/// the offsets committed now.
fn commit_moved(
    consumer: &BaseConsumer,
    topic: &str,
    dead_letters: &Option<DeadLetters>,
    safe: BTreeMap<i32, i64>,
    mut committed_at: BTreeMap<i32, i64>,
    name: &str,
) -> Result<BTreeMap<i32, i64>, String> {
    let moved: BTreeMap<i32, i64> =
        safe.into_iter().filter(|(p, o)| committed_at.get(p).is_none_or(|c| o > c)).collect();
    if !moved.is_empty() {
        flush_dead_letters(dead_letters, &moved, name)?;
        commit(consumer, topic, &moved, name);
        committed_at.extend(moved);
    }
    Ok(committed_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routed_names_become_directory_names() {
        assert_eq!(dir_name("status-1"), "status-1");
        assert_eq!(dir_name("a/../b"), "a_.._b");
        assert_eq!(dir_name(".."), "_..");
        assert_eq!(dir_name(".hidden"), "_.hidden");
        assert_eq!(dir_name("in store"), "in_store");
    }
}
