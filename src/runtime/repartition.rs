//! The two stages of a job whose `GROUP BY` goes through a repartition topic
//! ([`crate::compile::repartition`]).
//!
//! The first stage (tasks [`TaskId::Repartition`](super::tasks::TaskId)) decodes each record of
//! its input partition (bad records are handled there, as the input's `on_error` says) and
//! produces it to the repartition topic unchanged but for its key: the JSON array of its group
//! columns' values, which Kafka's default partitioner (murmur2, as the Java client and librdkafka's
//! `murmur2_random` compute it) turns into the partition. Where the record came from (partition,
//! offset) and its own key travel in headers. Exactly-once, the produce and the input offsets
//! commit in one transaction per task.
//!
//! The second stage (tasks `Partition(q)`) reads partition `q` of the repartition topic
//! `read_committed`, restores each record as it was read from the input, and runs the job. Event
//! time is tracked per partition of the *input* (each input partition's records reach `q` in their
//! order), so windows close as they would reading the input itself. After a batch that moved its
//! event time, a first-stage task sends a marker to every partition of the repartition topic, so
//! that `q` learns how far each input partition got even when none of its records went to `q`.
//! An input partition that has been read to its end and stayed quiet for the idle timeout sends
//! an idle marker instead (again every idle timeout while it stays so): it stops holding the
//! watermark back, as an idle partition does for a job reading it itself ([`Idleness`]).

use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;

use super::codec::Record;
use super::tasks::TaskId;
use crate::compile::repartition::{Repartition, Repartitioning};
use crate::compile::CompiledModel;
use crate::connectors::consumer::partition_offsets;
use crate::graph::NodeId;

/// Which stage of its job a task runs.
#[derive(Debug, Clone)]
pub(crate) enum Stage {
    /// The job as compiled, reading its inputs (no repartition topic, or the job is one task).
    Whole,
    /// Re-keys its partition of the input into the repartition topic, which has `partitions`;
    /// `seen` is the largest event time re-keyed, `marked` the largest sent to every partition;
    /// `quiet_since` when it last re-keyed a record, `idle_sent` when it last sent idle markers.
    Rekey { r: Repartition, partitions: i32, seen: i64, marked: i64, quiet_since: Instant, idle_sent: Option<Instant> },
    /// Runs the job over its partition of the repartition topic; the input has this many
    /// partitions (each holds the watermark back until it is seen or idles).
    Aggregate(Repartition, i32, Idleness),
}

impl Stage {
    pub(crate) fn of(m: &CompiledModel, task: TaskId) -> Stage {
        match (&m.resolved.repartition, task) {
            (Repartitioning::Topic(r), TaskId::Repartition(_)) => Stage::Rekey {
                r: r.clone(),
                partitions: 0,
                seen: i64::MIN,
                marked: i64::MIN,
                quiet_since: Instant::now(),
                idle_sent: None,
            },
            (Repartitioning::Topic(r), TaskId::Partition(_)) => {
                Stage::Aggregate(r.clone(), 0, Idleness::new(0, Instant::now()))
            }
            _ => Stage::Whole,
        }
    }

    /// The topic a task reads `input` (whose topic is `topic`) from.
    pub(crate) fn topic_of<'a>(&'a self, input: &NodeId, topic: &'a str) -> &'a str {
        match self {
            Stage::Aggregate(r, ..) if &r.input == input => &r.topic,
            _ => topic,
        }
    }

    /// Whether what the task reads is all written (a bounded run): the first stage's input,
    /// as far as the aggregating stage is concerned, once it has been re-keyed up to its end.
    pub(crate) fn upstream_done(&self, consumer: &BaseConsumer, polled_nothing: bool) -> bool {
        match self {
            Stage::Aggregate(r, ..) => polled_nothing && first_stage_done(consumer, &r.input_topic),
            Stage::Whole | Stage::Rekey { .. } => true,
        }
    }
}

/// The partition of `n` Kafka's default partitioner gives `key`: murmur2 as the Java client
/// computes it (`Utils.murmur2`, sign bit cleared), modulo `n`.
pub(crate) fn partition_of(key: &[u8], n: i32) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ key.len() as u32;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]).wrapping_mul(M);
        k ^= k >> 24;
        h = h.wrapping_mul(M) ^ k.wrapping_mul(M);
    }
    let rest = chunks.remainder();
    if rest.len() == 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    ((h & 0x7fff_ffff) % n.max(1) as u32) as i32
}

/// After a batch of the first stage: when event time moved on, a marker for every partition of the
/// repartition topic (see [`marker`]).
pub(crate) fn markers(stage: &mut Stage, input_partition: i32) -> Vec<Record> {
    let Stage::Rekey { partitions, seen, marked, .. } = stage else { return Vec::new() };
    if *seen <= *marked {
        return Vec::new();
    }
    *marked = *seen;
    (0..*partitions).map(|q| marker(q, input_partition, EVENT_TIME_HEADER, *seen)).collect()
}

/// When the first stage's input partition is read to its end (`caught_up`) and has given it no
/// record for `idle_timeout`: an idle marker for every partition of the repartition topic, then
/// again every `idle_timeout` while it stays so (an aggregating task that restarts learns it).
pub(crate) fn idle_markers(
    stage: &mut Stage,
    input_partition: i32,
    caught_up: bool,
    idle_timeout: Duration,
    now: Instant,
) -> Vec<Record> {
    let Stage::Rekey { partitions, quiet_since, idle_sent, .. } = stage else { return Vec::new() };
    let due = idle_sent.is_none_or(|t| now.duration_since(t) >= idle_timeout);
    if !caught_up || now.duration_since(*quiet_since) < idle_timeout || !due {
        return Vec::new();
    }
    *idle_sent = Some(now);
    (0..*partitions).map(|q| marker(q, input_partition, IDLE_HEADER, 0)).collect()
}

/// The first stage re-keyed records: its partition is not idle.
pub(crate) fn heard_from_input(stage: &mut Stage, now: Instant) {
    if let Stage::Rekey { quiet_since, idle_sent, .. } = stage {
        *quiet_since = now;
        *idle_sent = None;
    }
}

/// A record with no key and no value telling partition `to` of the repartition topic about
/// `input_partition` of the input (`header`: [`EVENT_TIME_HEADER`], it has reached `value`:
/// everything before it from that partition is in `to` already, so the aggregating task's
/// watermark may pass it even if none of the partition's records went there; [`IDLE_HEADER`]: it
/// is idle). (`partition` is where it goes, not where it came from.)
fn marker(to: i32, input_partition: i32, header: &str, value: i64) -> Record {
    let headers = vec![
        (PARTITION_HEADER.to_string(), Some(input_partition.to_string().into_bytes())),
        (header.to_string(), Some(value.to_string().into_bytes())),
    ];
    Record { partition: to, offset: -1, timestamp: value.max(0), key: None, value: None, headers }
}

/// What a marker of the first stage says about an input partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// The partition has reached this event time.
    EventTime(i32, i64),
    /// The partition is read to its end and quiet.
    Idle(i32),
}

/// The marker a record of the repartition topic is (`None`: a re-keyed record).
pub(crate) fn marker_of(r: &Record) -> Option<Marker> {
    let header = |name: &str| {
        let v = r.headers.iter().find(|(n, _)| n == name)?.1.as_deref()?;
        std::str::from_utf8(v).ok()?.parse::<i64>().ok()
    };
    if r.key.is_some() {
        return None;
    }
    let partition = i32::try_from(header(PARTITION_HEADER)?).ok()?;
    if let Some(t) = header(EVENT_TIME_HEADER) {
        return Some(Marker::EventTime(partition, t));
    }
    header(IDLE_HEADER).map(|_| Marker::Idle(partition))
}

/// An aggregating task's view of which input partitions are idle. A partition is idle from its
/// idle marker until its next record or event-time marker, or until its marker expires: a live
/// first-stage task renews it every idle timeout, so a marker older than one and a half is from
/// a task that died, and its partition holds the watermark back again until its new owner reports
/// (else the others would close windows that its records, re-keyed late, still belong to). When an
/// idle partition wakes up (new records were written to the input), the others, idle or not, hold
/// the watermark back for twice the idle timeout: their first-stage tasks may be a little behind
/// with new records of their own, and a dead one's marker must expire within that time.
#[derive(Debug, Clone)]
pub(crate) struct Idleness {
    /// When each partition's last idle marker came (`None`: not idle).
    idle: Vec<Option<Instant>>,
    woke: Instant,
}

impl Idleness {
    pub(crate) fn new(partitions: i32, now: Instant) -> Idleness {
        Idleness { idle: vec![None; usize::try_from(partitions).unwrap_or(0)], woke: now }
    }

    /// A record or event-time marker of `partition`: true when it was idle (it woke up).
    pub(crate) fn heard(&mut self, partition: i32, now: Instant) -> bool {
        match usize::try_from(partition).ok().and_then(|p| self.idle.get_mut(p)) {
            Some(idle) if idle.is_some() => {
                *idle = None;
                self.woke = now;
                true
            }
            _ => false,
        }
    }

    /// An idle marker of `partition`, come at `now`.
    pub(crate) fn idled(&mut self, partition: i32, now: Instant) {
        if let Some(idle) = usize::try_from(partition).ok().and_then(|p| self.idle.get_mut(p)) {
            *idle = Some(now);
        }
    }

    /// The partitions marked idle (whatever the time).
    pub(crate) fn marked(&self) -> Vec<i32> {
        (0..).zip(&self.idle).filter(|(_, idle)| idle.is_some()).map(|(p, _)| p).collect()
    }

    /// The partitions whose idle marker was not renewed in time: no longer idle (returned, for
    /// the caller to hold the watermark back on them again).
    pub(crate) fn expire(&mut self, now: Instant, idle_timeout: Duration) -> Vec<i32> {
        let limit = idle_timeout * 3 / 2;
        let mut expired = Vec::new();
        for (p, idle) in (0..).zip(self.idle.iter_mut()) {
            if idle.is_some_and(|t| now.duration_since(t) > limit) {
                *idle = None;
                expired.push(p);
            }
        }
        expired
    }

    /// The partitions idle now: those with an idle marker, once twice `idle_timeout` has passed
    /// since a partition last woke up.
    pub(crate) fn idle_at(&self, now: Instant, idle_timeout: Duration) -> Vec<i32> {
        if now.duration_since(self.woke) < idle_timeout * 2 {
            return Vec::new();
        }
        self.marked()
    }
}

/// Headers a first-stage record carries: the input partition and offset it was read at, and its
/// own key (no value: it had none).
pub(crate) const PARTITION_HEADER: &str = "streamctl.repartition.partition";
pub(crate) const OFFSET_HEADER: &str = "streamctl.repartition.offset";
pub(crate) const KEY_HEADER: &str = "streamctl.repartition.key";
/// The header of a watermark marker: the input partition's largest event time.
pub(crate) const EVENT_TIME_HEADER: &str = "streamctl.repartition.event-time";
/// The header of an idle marker: the input partition is read to its end and quiet.
pub(crate) const IDLE_HEADER: &str = "streamctl.repartition.idle";

/// The repartition key of each row of `batch`: the JSON array of its `columns`' values as text
/// (`null` for a null).
pub(crate) fn row_keys(batch: &RecordBatch, columns: &[String]) -> Result<Vec<Vec<u8>>, String> {
    let options = FormatOptions::default();
    let mut formatters = Vec::with_capacity(columns.len());
    for c in columns {
        let array = batch.column_by_name(c).ok_or_else(|| format!("the repartition column {c} is not decoded"))?;
        formatters.push((array, ArrayFormatter::try_new(array.as_ref(), &options).map_err(|e| e.to_string())?));
    }
    let mut keys = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let values: Vec<Value> = formatters
            .iter()
            .map(|(a, f)| if a.is_null(row) { Value::Null } else { Value::String(f.value(row).to_string()) })
            .collect();
        keys.push(serde_json::to_vec(&values).map_err(|e| e.to_string())?);
    }
    Ok(keys)
}

/// The record as the first stage produces it: keyed by `key`, where it came from in headers.
pub(crate) fn rekeyed(r: &Record, key: Vec<u8>) -> Record {
    let mut headers = r.headers.clone();
    headers.push((PARTITION_HEADER.to_string(), Some(r.partition.to_string().into_bytes())));
    headers.push((OFFSET_HEADER.to_string(), Some(r.offset.to_string().into_bytes())));
    headers.push((KEY_HEADER.to_string(), r.key.as_deref().map(<[u8]>::to_vec)));
    Record {
        partition: r.partition,
        offset: r.offset,
        timestamp: r.timestamp,
        key: Some(key.into()),
        value: r.value.clone(),
        headers,
    }
}

/// A record read from the repartition topic, back as it was read from the input.
pub(crate) fn restore(r: &mut Record) {
    let number = |v: &Option<Vec<u8>>| v.as_deref().and_then(|b| std::str::from_utf8(b).ok()?.parse::<i64>().ok());
    let mut key = None;
    r.headers.retain(|(name, value)| match name.as_str() {
        PARTITION_HEADER => {
            if let Some(p) = number(value) {
                r.partition = p as i32;
            }
            false
        }
        OFFSET_HEADER => {
            if let Some(o) = number(value) {
                r.offset = o;
            }
            false
        }
        KEY_HEADER => {
            key = Some(value.clone());
            false
        }
        _ => true,
    });
    if let Some(k) = key {
        r.key = k.map(bytes::Bytes::from);
    }
}

/// Whether the first stage has re-keyed `input_topic` up to its end: the offsets its tasks
/// committed to the job's group (with their last checkpoint) reach every partition's end, whichever
/// workers hold them. (The embedded broker does not keep offsets committed in transactions: there a
/// job with a repartition topic runs as one task.)
pub(crate) fn first_stage_done(consumer: &BaseConsumer, input_topic: &str) -> bool {
    let Ok(Some(parts)) = partition_offsets(consumer, input_topic) else { return false };
    let mut tpl = TopicPartitionList::new();
    for (p, _, _) in &parts {
        tpl.add_partition(input_topic, *p);
    }
    let Ok(committed) = consumer.committed_offsets(tpl, Duration::from_secs(10)) else { return false };
    parts.iter().all(|(p, low, high)| {
        let at = committed.find_partition(input_topic, *p).and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        });
        high <= low || at.is_some_and(|o| o >= *high)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn repartition() -> Repartition {
        Repartition {
            topic: "r".into(),
            partitions: 3,
            input: NodeId::Source("s.t".into()),
            input_topic: "t".into(),
            columns: vec!["g".into()],
        }
    }

    #[test]
    fn partitions_as_kafkas_default_partitioner() {
        // Kafka's own test vectors (UtilsTest.testMurmur2), sign bit cleared.
        let cases: [(&str, i32); 6] = [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            ("abc", 479470107),
        ];
        for (key, murmur2) in cases {
            assert_eq!(partition_of(key.as_bytes(), i32::MAX), murmur2 & 0x7fff_ffff, "{key}");
        }
        assert_eq!(partition_of(b"abc", 4), 479470107 % 4);
    }

    #[test]
    fn keys_are_json_arrays_of_the_group_values_and_records_come_back_as_read() {
        let schema =
            Arc::new(Schema::new(vec![Field::new("g", DataType::Utf8, true), Field::new("n", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("eu"), None])),
                Arc::new(Int64Array::from(vec![Some(3), Some(4)])),
            ],
        )
        .unwrap();
        let keys = row_keys(&batch, &["g".to_string(), "n".to_string()]).unwrap();
        assert_eq!(keys, vec![br#"["eu","3"]"#.to_vec(), br#"[null,"4"]"#.to_vec()]);
        assert!(row_keys(&batch, &["x".to_string()]).is_err());

        let read = Record {
            partition: 4,
            offset: 17,
            timestamp: 5,
            key: None,
            value: Some(bytes::Bytes::from_static(b"{}")),
            headers: vec![("h".into(), Some(b"v".to_vec()))],
        };
        let mut out = rekeyed(&read, keys[0].clone());
        assert_eq!(out.key.as_deref(), Some(&br#"["eu","3"]"#[..]));
        out.partition = 0;
        out.offset = 99;
        assert_eq!(marker_of(&out), None);
        restore(&mut out);
        assert_eq!(out, read);

        let t0 = Instant::now();
        let mut stage = Stage::Rekey {
            r: repartition(),
            partitions: 3,
            seen: 50,
            marked: i64::MIN,
            quiet_since: t0,
            idle_sent: None,
        };
        let sent = markers(&mut stage, 4);
        assert_eq!(sent.iter().map(|m| m.partition).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(sent.iter().map(marker_of).collect::<Vec<_>>(), [Some(Marker::EventTime(4, 50)); 3]);
        assert!(markers(&mut stage, 4).is_empty(), "event time did not move");
    }

    #[test]
    fn a_first_stage_task_quiet_at_its_end_for_the_idle_timeout_sends_idle_markers_every_idle_timeout() {
        let timeout = Duration::from_secs(5);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut stage = Stage::Rekey {
            r: repartition(),
            partitions: 2,
            seen: i64::MIN,
            marked: i64::MIN,
            quiet_since: t0,
            idle_sent: None,
        };
        assert!(idle_markers(&mut stage, 1, true, timeout, at(4)).is_empty(), "quiet for 4 s only");
        assert!(idle_markers(&mut stage, 1, false, timeout, at(6)).is_empty(), "not at its end");
        let sent = idle_markers(&mut stage, 1, true, timeout, at(6));
        assert_eq!(
            sent.iter().map(|m| (m.partition, marker_of(m))).collect::<Vec<_>>(),
            [(0, Some(Marker::Idle(1))), (1, Some(Marker::Idle(1)))]
        );
        assert!(idle_markers(&mut stage, 1, true, timeout, at(9)).is_empty(), "sent 3 s ago");
        assert_eq!(idle_markers(&mut stage, 1, true, timeout, at(11)).len(), 2, "again after the idle timeout");
        heard_from_input(&mut stage, at(12));
        assert!(idle_markers(&mut stage, 1, true, timeout, at(16)).is_empty(), "a record 4 s ago");
        assert_eq!(idle_markers(&mut stage, 1, true, timeout, at(17)).len(), 2);
    }

    #[test]
    fn an_aggregating_task_lets_idle_partitions_go_once_no_partition_woke_for_the_idle_timeout() {
        let timeout = Duration::from_secs(5);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut idleness = Idleness::new(3, t0);
        idleness.idled(0, at(1));
        idleness.idled(2, at(1));
        assert_eq!(idleness.idle_at(at(9), timeout), Vec::<i32>::new(), "the task started 9 s ago");
        assert_eq!(idleness.idle_at(at(10), timeout), [0, 2]);
        assert!(!idleness.heard(1, at(6)), "partition 1 was not idle");
        // Renewed markers keep them idle; partition 2 wakes up.
        idleness.idled(0, at(6));
        idleness.idled(2, at(6));
        assert!(idleness.heard(2, at(7)), "partition 2 woke up");
        assert_eq!(idleness.idle_at(at(16), timeout), Vec::<i32>::new(), "partition 0 holds back again");
        idleness.idled(0, at(11));
        assert_eq!(idleness.expire(at(17), timeout), Vec::<i32>::new(), "renewed 6 s ago");
        assert_eq!(idleness.idle_at(at(17), timeout), [0]);
        idleness.idled(7, at(17));
        assert_eq!(idleness.idle_at(at(17), timeout), [0], "no such partition");
        // Its first-stage task died: no renewal, and 7.5 s later it is not idle any more.
        assert_eq!(idleness.expire(at(19), timeout), [0]);
        assert_eq!(idleness.idle_at(at(19), timeout), Vec::<i32>::new());
    }
}
