//! Event-time progress of one job's inputs.
//!
//! The watermark is the minimum, over the input partitions that still have data to deliver, of
//! (largest event time seen − allowed lateness). A partition that has caught up with its end and
//! stays quiet for the idle timeout stops holding the watermark back, so one idle partition does
//! not stall every window (a pitfall users of other engines hit).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::graph::NodeId;

#[derive(Debug, Clone)]
struct PartitionTime {
    max_event_time: i64,
    lateness_ms: i64,
    last_seen: Instant,
    caught_up: bool,
}

#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    partitions: BTreeMap<(NodeId, i32), PartitionTime>,
    idle_timeout: Duration,
}

impl WatermarkTracker {
    pub fn new(idle_timeout: Duration) -> WatermarkTracker {
        WatermarkTracker { partitions: BTreeMap::new(), idle_timeout }
    }

    /// Registers a partition before any data (it holds the watermark until it has data or idles).
    pub fn add_partition(&mut self, input: &NodeId, partition: i32, lateness_ms: i64) {
        self.partitions.entry((input.clone(), partition)).or_insert(PartitionTime {
            max_event_time: i64::MIN,
            lateness_ms,
            last_seen: Instant::now(),
            caught_up: false,
        });
    }

    pub fn observe(&mut self, input: &NodeId, partition: i32, event_time: i64, lateness_ms: i64) {
        self.observe_at(input, partition, event_time, lateness_ms, Instant::now());
    }

    /// As [`observe`](Self::observe), with the clock read once by the caller (per batch).
    pub fn observe_at(&mut self, input: &NodeId, partition: i32, event_time: i64, lateness_ms: i64, now: Instant) {
        let key = (input.clone(), partition);
        let p = match self.partitions.get_mut(&key) {
            Some(p) => p,
            None => self.partitions.entry(key).or_insert(PartitionTime {
                max_event_time: i64::MIN,
                lateness_ms,
                last_seen: now,
                caught_up: false,
            }),
        };
        p.max_event_time = p.max_event_time.max(event_time);
        p.last_seen = now;
        p.caught_up = false;
    }

    /// The partition has delivered everything there is for now.
    pub fn caught_up(&mut self, input: &NodeId, partition: i32) {
        if let Some(p) = self.partitions.get_mut(&(input.clone(), partition)) {
            p.caught_up = true;
        }
    }

    /// The largest event time seen on a partition, for the checkpoint.
    pub fn max_event_time(&self, input: &NodeId, partition: i32) -> Option<i64> {
        self.partitions.get(&(input.clone(), partition)).map(|p| p.max_event_time).filter(|t| *t != i64::MIN)
    }

    /// Only partitions of these inputs count (tables do not drive event time).
    pub fn watermark(&self, inputs: &[NodeId]) -> i64 {
        self.watermark_at(inputs, Instant::now())
    }

    pub fn watermark_at(&self, inputs: &[NodeId], now: Instant) -> i64 {
        let mut wm: Option<i64> = None;
        let mut any_active = false;
        for ((input, _), p) in &self.partitions {
            if !inputs.contains(input) {
                continue;
            }
            let idle = p.caught_up && now.duration_since(p.last_seen) >= self.idle_timeout;
            if idle && p.max_event_time == i64::MIN {
                continue;
            }
            if idle {
                continue;
            }
            any_active = true;
            let w = if p.max_event_time == i64::MIN { i64::MIN } else { p.max_event_time - p.lateness_ms };
            wm = Some(wm.map_or(w, |x| x.min(w)));
        }
        if !any_active {
            // Every partition idles: the watermark is where the data got to.
            return self
                .partitions
                .iter()
                .filter(|((i, _), p)| inputs.contains(i) && p.max_event_time != i64::MIN)
                .map(|(_, p)| p.max_event_time - p.lateness_ms)
                .max()
                .unwrap_or(i64::MIN);
        }
        wm.unwrap_or(i64::MIN)
    }
}

impl WatermarkTracker {
    /// The watermark once every partition of these inputs has delivered everything and idles:
    /// the largest (event time − lateness) seen.
    pub fn watermark_at_end(&self, inputs: &[NodeId]) -> i64 {
        self.partitions
            .iter()
            .filter(|((i, _), p)| inputs.contains(i) && p.max_event_time != i64::MIN)
            .map(|(_, p)| p.max_event_time - p.lateness_ms)
            .max()
            .unwrap_or(i64::MIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_over_partitions_minus_lateness() {
        let s = NodeId::Source("s.t".into());
        let mut w = WatermarkTracker::new(Duration::from_secs(3600));
        w.add_partition(&s, 0, 1000);
        w.add_partition(&s, 1, 1000);
        w.observe(&s, 0, 10_000, 1000);
        assert_eq!(w.watermark(std::slice::from_ref(&s)), i64::MIN, "partition 1 has no data yet");
        w.observe(&s, 1, 5_000, 1000);
        assert_eq!(w.watermark(std::slice::from_ref(&s)), 4_000);
        w.observe(&s, 1, 20_000, 1000);
        assert_eq!(w.watermark(std::slice::from_ref(&s)), 9_000);
    }

    #[test]
    fn idle_caught_up_partitions_do_not_stall() {
        let s = NodeId::Source("s.t".into());
        let mut w = WatermarkTracker::new(Duration::ZERO);
        w.observe(&s, 0, 10_000, 0);
        w.add_partition(&s, 1, 0);
        assert_eq!(w.watermark(std::slice::from_ref(&s)), i64::MIN);
        w.caught_up(&s, 1);
        assert_eq!(w.watermark(std::slice::from_ref(&s)), 10_000);
    }
}
