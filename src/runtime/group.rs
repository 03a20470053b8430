//! Which worker runs which task: Kafka's consumer group. Every worker hosting a job joins the job's
//! task group (`<consumer group>.tasks`) subscribed to the job's driving topic (and to its
//! repartition topic, whose partitions are the aggregating stage's tasks), with the
//! cooperative-sticky assignor; the partitions the coordinator gives a worker are its tasks
//! ([`super::tasks::Layout::task_of`]). On a rebalance a worker first stops the tasks it gives up,
//! each with a final checkpoint (inside the revoke callback, so the next owner starts from it), then
//! starts the tasks it was given; the others keep running. A worker that dies loses its tasks once
//! its session times out ([`SESSION_TIMEOUT_MS`]). The group consumer reads no records: its
//! partitions stay paused, each task reads its inputs with a consumer of its own.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::TopicPartitionList;

use super::error::RunError;
use super::runner::Pool;
use super::tasks::{Layout, TaskId};
use super::worker::{log, RunControl};
use crate::compile::CompiledProject;

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
                self.pool.stop_task(&self.model, task);
                self.pool.unexpect(&self.model, task);
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
pub fn coordinate(
    cp: Arc<CompiledProject>,
    model: &str,
    layout: Layout,
    client: &ClientConfig,
    pool: Arc<Pool>,
    control: Arc<RunControl>,
) -> Result<(), RunError> {
    let m = cp.models.get(model).ok_or_else(|| RunError::Setup(format!("no model `{model}`")))?;
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
