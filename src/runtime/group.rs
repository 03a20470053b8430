//! Which worker runs which task: Kafka's consumer group. Every worker hosting a job joins the job's
//! task group (`<consumer group>.tasks`) subscribed to the job's driving topic (and to its
//! repartition topic, whose partitions are the aggregating stage's tasks), with the
//! cooperative-sticky assignor; the partitions the coordinator gives a worker are its tasks
//! ([`super::tasks::Layout::task_of`]). On a rebalance a worker first stops the tasks it gives up,
//! each with a final checkpoint (inside the revoke callback, so the next owner starts from it), then
//! starts the tasks it was given; the others keep running. A worker that dies loses its tasks once
//! its session times out ([`SESSION_TIMEOUT_MS`]). The group consumer reads no records: its
//! partitions stay paused, the tasks read their inputs through their thread's input consumers
//! ([`crate::connectors::task_input`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::TopicPartitionList;

use super::error::RunError;
use super::runner::Pool;
use super::tasks::{input_info, Layout, TaskId};
use super::worker::{log, RunControl};
use crate::compile::CompiledProject;
use crate::graph::NodeId;
use crate::project::config::RelationKind;

/// How long the group waits for a silent worker before giving its tasks to the others.
pub const SESSION_TIMEOUT_MS: u64 = 10_000;

/// The group id whose members share a job's tasks.
pub fn task_group(consumer_group: &str) -> String {
    format!("{consumer_group}.tasks")
}

struct TaskGroupContext {
    cp: Arc<CompiledProject>,
    model: String,
    layout: Layout,
    pool: Arc<Pool>,
    assigned: Mutex<BTreeSet<TaskId>>,
}

impl ClientContext for TaskGroupContext {}

impl TaskGroupContext {
    fn tasks_in(&self, tpl: &TopicPartitionList) -> Vec<TaskId> {
        tpl.elements().iter().filter_map(|e| self.layout.task_of(e.topic(), e.partition())).collect()
    }
}

impl ConsumerContext for TaskGroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            for task in self.tasks_in(tpl) {
                // A bounded run still waits for it: it catches up in its new owner (or comes back).
                self.pool.stop_task(&self.model, task);
                if let Ok(mut a) = self.assigned.lock() {
                    a.remove(&task);
                }
                log(&self.model, &format!("task {} handed back to the group", task.name()));
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // The group consumer only holds the partitions: the tasks read them.
            let _ = consumer.pause(tpl);
            let tasks = self.tasks_in(tpl);
            self.pool.expect(&self.model, tasks.iter().copied());
            for task in tasks {
                if let Ok(mut a) = self.assigned.lock() {
                    a.insert(task);
                }
                self.pool.start_task(self.cp.clone(), &self.model, task);
            }
        }
    }
}

/// Takes part in `model`'s task group until the run stops (or, on a bounded run, until the model
/// is done): starts and stops its tasks in `pool` as the group assigns them.
///
/// A bounded run (`bounded`) is done once *every* task of the job has caught up, not only those the
/// group gave this worker: a task held by a worker that died (until its session times out) or by
/// another worker is waited for, and counted once the job's consumer group holds offsets at its
/// inputs' ends ([`ElsewhereCheck`]); should the group hand it here, it runs here.
pub fn coordinate(
    cp: Arc<CompiledProject>,
    model: &str,
    layout: Layout,
    client: &ClientConfig,
    pool: Arc<Pool>,
    control: Arc<RunControl>,
    bounded: bool,
) -> Result<(), RunError> {
    let m = cp.models.get(model).ok_or_else(|| RunError::Setup(format!("no model `{model}`")))?;
    let mut elsewhere = if bounded {
        pool.expect(model, layout.tasks());
        Some(ElsewhereCheck::new(&cp, model, client)?)
    } else {
        None
    };
    let context = TaskGroupContext {
        cp: cp.clone(),
        model: model.to_string(),
        layout: layout.clone(),
        pool: pool.clone(),
        assigned: Mutex::new(BTreeSet::new()),
    };
    let consumer: BaseConsumer<TaskGroupContext> = client
        .clone()
        .set("group.id", task_group(&m.resolved.consumer_group))
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
        .set("heartbeat.interval.ms", (SESSION_TIMEOUT_MS / 4).to_string())
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .create_with_context(context)
        .map_err(|e| RunError::Setup(format!("joining the task group of {model}: {e}")))?;
    consumer
        .subscribe(&layout.group_topics())
        .map_err(|e| RunError::Setup(format!("joining the task group of {model}: {e}")))?;
    loop {
        // Rebalances run their callbacks inside the poll; records (none: paused) are dropped.
        let _ = consumer.poll(Duration::from_millis(100));
        if control.stop.load(Ordering::SeqCst) || control.is_done(model) {
            break;
        }
        if let Some(check) = &mut elsewhere {
            check.run(model, &layout, &consumer.context().assigned, &pool, &control);
        }
    }
    // Stop the tasks before leaving, so that the next owners start from their final checkpoints.
    let held: Vec<TaskId> = consumer.context().assigned.lock().map(|a| a.iter().copied().collect()).unwrap_or_default();
    for task in held {
        pool.stop_task(model, task);
    }
    // Leaves the group (the revoke callback finds the tasks stopped already).
    crate::connectors::consumer::close(&consumer);
    drop(consumer);
    Ok(())
}

/// A bounded run's look at the tasks of a job it does not hold: each counts as caught up once the
/// job's consumer group (where every task commits its input offsets with each checkpoint) holds an
/// offset at or past each of its input partitions' ends. The ends are read once the job's upstream
/// models are done (sources: at once); the repartition topic's, once every re-keying task is.
struct ElsewhereCheck {
    /// Member of no group: reads the committed offsets of the job's consumer group.
    consumer: BaseConsumer,
    streams: Vec<String>,
    upstream: Vec<String>,
    /// Each input partition's first and end offsets: the end is where it must be committed.
    targets: BTreeMap<(String, i32), (i64, i64)>,
    inputs_known: bool,
    repartition_known: bool,
    last: Option<Instant>,
}

impl ElsewhereCheck {
    fn new(cp: &CompiledProject, model: &str, client: &ClientConfig) -> Result<ElsewhereCheck, RunError> {
        let m = cp.models.get(model).ok_or_else(|| RunError::Setup(format!("no model `{model}`")))?;
        let consumer = crate::connectors::consumer::manual_consumer(client, &m.resolved.consumer_group)
            .map_err(RunError::Setup)?;
        let streams = m
            .inputs
            .iter()
            .filter_map(|i| input_info(cp, i))
            .filter(|(_, kind, _)| *kind == RelationKind::Stream)
            .map(|(topic, _, _)| topic)
            .collect();
        let upstream =
            m.inputs.iter().filter_map(|i| if let NodeId::Model(u) = i { Some(u.clone()) } else { None }).collect();
        Ok(ElsewhereCheck {
            consumer,
            streams,
            upstream,
            targets: BTreeMap::new(),
            inputs_known: false,
            repartition_known: false,
            last: None,
        })
    }

    /// Counts the tasks neither held here (`assigned`) nor finished that have caught up elsewhere
    /// (once a second).
    fn run(
        &mut self,
        model: &str,
        layout: &Layout,
        assigned: &Mutex<BTreeSet<TaskId>>,
        pool: &Pool,
        control: &RunControl,
    ) {
        if self.last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.last = Some(Instant::now());
        let here = assigned.lock().map(|a| a.clone()).unwrap_or_default();
        let finished = pool.finished(model);
        let waiting: Vec<TaskId> =
            layout.tasks().into_iter().filter(|t| !here.contains(t) && !finished.contains(t)).collect();
        if waiting.is_empty() {
            return;
        }
        if !self.inputs_known && self.upstream.iter().all(|u| control.is_done(u)) {
            let topics: Vec<String> = match layout.partitions {
                Some(_) => vec![layout.driving_topic.clone()],
                None => self.streams.clone(),
            };
            self.inputs_known = topics.iter().all(|t| self.read_ends(t));
        }
        if let Some((topic, _)) = &layout.repartition {
            let rekeyed =
                layout.tasks().iter().filter(|t| matches!(t, TaskId::Repartition(_))).all(|t| finished.contains(t));
            if !self.repartition_known && rekeyed {
                self.repartition_known = self.read_ends(topic);
            }
        }
        for task in waiting {
            let positions: Vec<(String, i32)> = match (task, &layout.repartition) {
                (TaskId::Partition(p), Some((topic, _))) if self.repartition_known => vec![(topic.clone(), p)],
                (TaskId::Partition(_), Some(_)) => continue,
                (TaskId::Partition(p) | TaskId::Repartition(p), _) if self.inputs_known => {
                    vec![(layout.driving_topic.clone(), p)]
                }
                (TaskId::Whole, _) if self.inputs_known => {
                    self.targets.keys().filter(|(t, _)| self.streams.contains(t)).cloned().collect()
                }
                _ => continue,
            };
            if !positions.is_empty() && self.committed_at_ends(&positions) {
                log(model, &format!("task {} caught up in another worker", task.name()));
                pool.caught_up_elsewhere(model, task);
            }
        }
    }

    /// Reads the end offset of every partition of `topic`; false when it cannot.
    fn read_ends(&mut self, topic: &str) -> bool {
        match crate::connectors::consumer::partition_offsets(&self.consumer, topic) {
            Ok(Some(parts)) => {
                for (p, low, high) in parts {
                    self.targets.insert((topic.to_string(), p), (low, high));
                }
                true
            }
            _ => false,
        }
    }

    fn committed_at_ends(&self, positions: &[(String, i32)]) -> bool {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in positions {
            tpl.add_partition(t, *p);
        }
        let Ok(committed) = self.consumer.committed_offsets(tpl, Duration::from_secs(5)) else { return false };
        positions.iter().all(|(t, p)| {
            let Some((low, high)) = self.targets.get(&(t.clone(), *p)).copied() else { return false };
            // An empty partition is at its end without a commit.
            high <= low
                || committed
                    .find_partition(t, *p)
                    .is_some_and(|e| matches!(e.offset(), rdkafka::Offset::Offset(o) if o >= high))
        })
    }
}
