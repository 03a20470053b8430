//! Which worker runs a job: a lease in the job's checkpoint topic, renewed every 2 s and valid
//! for 6 s. Other workers stand by; when the lease expires (the owner died) or is released,
//! they contend for the next epoch and the first claim in the topic's log wins. An owner that
//! sees a newer epoch stops. This relies on nothing but producing and consuming, so it behaves
//! the same on any Kafka-compatible broker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::checkpoint::{write_lease, CheckpointLog};
use super::error::RunError;
use crate::connectors::lease::{hostname, now_ms, Lease};
use crate::connectors::producer::RecordProducer;

/// How long a lease lasts without renewal, and how often the owner renews it.
const LEASE_TTL_MS: i64 = 6_000;
const LEASE_RENEW_MS: i64 = 2_000;

/// This process's name as a lease holder: host, process id, start time.
pub(crate) fn worker_id() -> String {
    format!("{}-{}-{:x}", hostname().unwrap_or_else(|| "worker".into()), std::process::id(), now_ms())
}

/// A lease this worker holds.
pub(crate) struct Ownership {
    holder: String,
    epoch: u64,
    renewed_at: i64,
}

/// Whether the owner still holds the job after `keep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    Yes,
    /// Another worker holds a newer epoch, or the lease could not be renewed in time.
    Lost(&'static str),
}

impl Ownership {
    /// Stands by until `holder` holds the job's lease: takes it when it is free or expired; of
    /// several contenders, the first to write the next epoch wins. `None` once `stop` is set.
    pub(crate) fn acquire(
        log: &mut CheckpointLog,
        producer: &RecordProducer,
        holder: &str,
        stop: &AtomicBool,
    ) -> Result<Option<Ownership>, RunError> {
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            log.catch_up()?;
            if log.leases.is_free(now_ms()) {
                let epoch = log.leases.next_epoch();
                let claim = Lease { holder: holder.to_string(), epoch, expires_ms: now_ms() + LEASE_TTL_MS };
                write_lease(producer, log.topic(), &claim)?;
                log.catch_up()?;
                if log.leases.winner(epoch) == Some(holder) {
                    return Ok(Some(Ownership { holder: holder.to_string(), epoch, renewed_at: now_ms() }));
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Renews the lease when due, and notices a newer owner.
    pub(crate) fn keep(&mut self, log: &mut CheckpointLog, producer: &RecordProducer) -> Result<Held, RunError> {
        if now_ms() - self.renewed_at < LEASE_RENEW_MS {
            return Ok(Held::Yes);
        }
        log.catch_up()?;
        if log.leases.superseded(self.epoch) {
            return Ok(Held::Lost("another worker took over this job"));
        }
        let renewal = Lease { holder: self.holder.clone(), epoch: self.epoch, expires_ms: now_ms() + LEASE_TTL_MS };
        if write_lease(producer, log.topic(), &renewal).is_ok() {
            self.renewed_at = now_ms();
        } else if now_ms() - self.renewed_at >= LEASE_TTL_MS {
            return Ok(Held::Lost("could not renew the lease in time"));
        }
        Ok(Held::Yes)
    }

    /// Hands the job over at once: an expired lease is free to take.
    pub(crate) fn release(&self, log: &CheckpointLog, producer: &RecordProducer) {
        let released = Lease { holder: self.holder.clone(), epoch: self.epoch, expires_ms: 0 };
        let _ = write_lease(producer, log.topic(), &released);
    }
}
