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
    /// Observes a run of records of one partition with the clock read once (`now`), and pushes
    /// to `out` the watermark each arrived under: what [`watermark_at`](Self::watermark_at) then
    /// [`observe_at`](Self::observe_at) per record would give. The other partitions do not move
    /// during the run, so they are looked at once, not once per record (3.5% of a join's CPU).
    #[allow(clippy::too_many_arguments)]
    pub fn observe_run(
        &mut self,
        inputs: &[NodeId],
        input: &NodeId,
        partition: i32,
        event_times: impl IntoIterator<Item = i64>,
        lateness_ms: i64,
        now: Instant,
        out: &mut Vec<i64>,
    ) {
        let mut times = event_times.into_iter();
        let Some(first) = times.next() else { return };
        out.push(self.watermark_at(inputs, now));
        self.observe_at(input, partition, first, lateness_ms, now);
        // From here on the partition is active (just seen, not caught up), so the watermark is
        // the least of its own (max event time - lateness) and the other active partitions'.
        let counts = inputs.contains(input);
        let mut others: Option<i64> = None;
        let mut own: Option<&mut PartitionTime> = None;
        for ((i, p), t) in self.partitions.iter_mut() {
            if *p == partition && i == input {
                own = Some(t);
                continue;
            }
            if !inputs.contains(i) || (t.caught_up && now.duration_since(t.last_seen) >= self.idle_timeout) {
                continue;
            }
            let w = if t.max_event_time == i64::MIN { i64::MIN } else { t.max_event_time - t.lateness_ms };
            others = Some(others.map_or(w, |x| x.min(w)));
        }
        let Some(own) = own else { return };
        for t in times {
            if counts {
                let w = if own.max_event_time == i64::MIN { i64::MIN } else { own.max_event_time - own.lateness_ms };
                out.push(others.map_or(w, |o| o.min(w)));
            } else {
                // The partition does not count towards these inputs' watermark: nothing moves it.
                out.push(*out.last().unwrap_or(&i64::MIN));
            }
            own.max_event_time = own.max_event_time.max(t);
        }
    }

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

    /// A run observed at once gives each record the watermark it gets observed one by one, with
    /// partitions that are ahead, behind, idle, without data yet, and of another input.
    #[test]
    fn a_run_gets_the_watermarks_of_its_records_observed_one_by_one() {
        let (s, t) = (NodeId::Source("s.a".into()), NodeId::Source("s.b".into()));
        let mut seed = 7u64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for case in 0..300 {
            let mut w = WatermarkTracker::new(Duration::from_millis(next(2) * 50));
            for p in 0..3 {
                w.add_partition(&s, p, 100 * p as i64);
            }
            w.add_partition(&t, 0, 0);
            let mut one_by_one = w.clone();
            let inputs = if case % 3 == 0 { vec![s.clone()] } else { vec![s.clone(), t.clone()] };
            let now = Instant::now() + Duration::from_millis(100);
            for _ in 0..6 {
                let (input, partition) = if next(4) == 0 { (&t, 0) } else { (&s, next(3) as i32) };
                if next(3) == 0 {
                    w.caught_up(input, partition);
                    one_by_one.caught_up(input, partition);
                    continue;
                }
                let times: Vec<i64> = (0..next(5)).map(|_| 1_000 + next(1_000) as i64).collect();
                let mut run = Vec::new();
                w.observe_run(&inputs, input, partition, times.iter().copied(), 50, now, &mut run);
                let mut expected = Vec::new();
                for t in &times {
                    expected.push(one_by_one.watermark_at(&inputs, now));
                    one_by_one.observe_at(input, partition, *t, 50, now);
                }
                assert_eq!(run, expected, "case {case}: {input} p{partition} {times:?}");
            }
        }
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
