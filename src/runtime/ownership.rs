//! Who runs a task: Kafka's consumer group assigns it (see [`super::group`]), and its owner writes
//! a claim, a lease record with the next epoch, in the job's checkpoint topic before it restores
//! the task. The claims are kept for two things the group does not give: `status` reads who holds
//! each task from them, and at-least-once checkpoints carry their writer's epoch, so that a reader
//! ignores what an owner that lost the task (a process paused past its session timeout that did
//! not know yet) wrote after the new owner's claim. Exactly-once needs no epoch: the task's
//! transactional id fences an old owner.

use super::checkpoint::{write_lease, CheckpointLog};
use super::error::RunError;
use super::tasks::TaskId;
use crate::connectors::lease::{hostname, now_ms, Lease, LeaseBook};
use crate::connectors::producer::RecordProducer;

/// This process's name as a task holder: host, process id, start time.
pub(crate) fn worker_id() -> String {
    format!("{}-{}-{:x}", hostname().unwrap_or_else(|| "worker".into()), std::process::id(), now_ms())
}

/// A task this worker claimed.
pub(crate) struct Claim {
    holder: String,
    epoch: u64,
    task: TaskId,
    /// Where its lease records go: the task's partition of the checkpoint topic.
    at: (String, i32),
}

impl Claim {
    /// Claims the task's next epoch. The group gave the task to this holder, so there is nothing
    /// to wait for; of two claims of one epoch the first in the log wins, and the loser claims
    /// the next one.
    pub(crate) fn take(
        log: &mut CheckpointLog,
        producer: &RecordProducer,
        holder: &str,
        task: TaskId,
    ) -> Result<Claim, RunError> {
        for _ in 0..10 {
            log.catch_up()?;
            let epoch = log.leases.get(&task).map_or(1, LeaseBook::next_epoch);
            let claim = Lease { holder: holder.to_string(), epoch, expires_ms: i64::MAX };
            write_lease(producer, (log.topic(), log.partition()), task, &claim)?;
            log.catch_up()?;
            if log.leases.get(&task).and_then(|b| b.winner(epoch)) == Some(holder) {
                let at = (log.topic().to_string(), log.partition());
                return Ok(Claim { holder: holder.to_string(), epoch, task, at });
            }
        }
        Err(RunError::Setup(format!("could not claim task {} of {}", task.name(), log.topic())))
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Marks the task as held by nobody (a clean stop).
    pub(crate) fn release(&self, producer: &RecordProducer) {
        let released = Lease { holder: self.holder.clone(), epoch: self.epoch, expires_ms: 0 };
        let _ = write_lease(producer, (&self.at.0, self.at.1), self.task, &released);
    }
}
