//! Leases recorded in a Kafka topic: who holds something (a job, the apply lock of a target),
//! under which epoch, until when. Contenders for the next epoch each write a claim; the first
//! claim in the topic's log wins, so every reader agrees on the holder without a coordinator.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lease {
    #[serde(alias = "worker")]
    pub holder: String,
    pub epoch: u64,
    /// Wall-clock epoch ms; 0 releases the lease.
    pub expires_ms: i64,
}

/// The leases read from a topic, in log order.
#[derive(Debug, Clone, Default)]
pub struct LeaseBook {
    first_claim: HashMap<u64, String>,
    current: Option<Lease>,
}

impl LeaseBook {
    /// Takes in one lease record (in log order). Only an epoch's first claimant's records count.
    pub fn observe(&mut self, value: &[u8]) {
        let Ok(l) = serde_json::from_slice::<Lease>(value) else { return };
        self.first_claim.entry(l.epoch).or_insert_with(|| l.holder.clone());
        if self.first_claim.get(&l.epoch) == Some(&l.holder) && self.current.as_ref().is_none_or(|c| l.epoch >= c.epoch)
        {
            self.current = Some(l);
        }
    }

    pub fn current(&self) -> Option<&Lease> {
        self.current.as_ref()
    }

    /// Free to claim: never held, released, or expired.
    pub fn is_free(&self, now_ms: i64) -> bool {
        self.current.as_ref().is_none_or(|l| l.expires_ms < now_ms)
    }

    pub fn next_epoch(&self) -> u64 {
        self.current.as_ref().map_or(1, |l| l.epoch + 1)
    }

    /// Whether `holder` was the first to claim `epoch`; None while no claim for it was read.
    pub fn winner(&self, epoch: u64) -> Option<&str> {
        self.first_claim.get(&epoch).map(String::as_str)
    }

    /// A newer epoch than `epoch` is held by someone.
    pub fn superseded(&self, epoch: u64) -> bool {
        self.current.as_ref().is_some_and(|l| l.epoch > epoch)
    }
}

/// This machine's name, to tell lease holders apart.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).ok().filter(|h| !h.is_empty())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(holder: &str, epoch: u64, expires_ms: i64) -> Vec<u8> {
        serde_json::to_vec(&Lease { holder: holder.into(), epoch, expires_ms }).unwrap()
    }

    #[test]
    fn first_claim_of_an_epoch_wins_and_later_claims_are_ignored() {
        let mut b = LeaseBook::default();
        assert!(b.is_free(0));
        b.observe(&rec("a", 1, 100));
        b.observe(&rec("b", 1, 200));
        assert_eq!(b.winner(1), Some("a"));
        assert_eq!(b.current().map(|l| l.holder.as_str()), Some("a"));
        assert!(!b.is_free(50));
        assert!(b.is_free(150));
        assert_eq!(b.next_epoch(), 2);
        // The loser's renewals do not count; the winner's release does.
        b.observe(&rec("b", 1, 10_000));
        assert!(b.is_free(150));
        b.observe(&rec("a", 1, 0));
        assert!(b.is_free(1));
        assert!(!b.superseded(1));
        b.observe(&rec("b", 2, 500));
        assert!(b.superseded(1));
    }

    #[test]
    fn old_field_name_is_read() {
        let mut b = LeaseBook::default();
        b.observe(br#"{"worker":"w","epoch":3,"expires_ms":9}"#);
        assert_eq!(b.winner(3), Some("w"));
    }
}
