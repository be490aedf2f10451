//! When each message was submitted, by (connector, provider id), so the
//! receipt that comes back to this instance can time submitted → receipt.
//!
//! In memory and bounded: at most [`MAX`] entries (beyond that, new submits are
//! not timed); entries older than [`KEEP`] are pruned, so receipts that never
//! come cost nothing for long. A receipt that reaches another instance (or
//! comes after a restart) is simply not timed. Entries are keyed by a 64-bit
//! keyed hash of (connector, id), so a submit allocates nothing (two ids
//! colliding would only mis-time one receipt), and sharded by it so the
//! workers do not queue on one lock.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept at most (about 32 bytes each).
pub const MAX: usize = 200_000;
/// How long an entry waits for its receipt.
pub const KEEP: Duration = Duration::from_secs(15 * 60);

const SHARDS: usize = 16;

type Shard = HashMap<u64, Instant>;

pub struct SubmitTimes {
    shards: Vec<Mutex<Shard>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for SubmitTimes {
    fn default() -> Self {
        SubmitTimes {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
        }
    }
}

impl SubmitTimes {
    /// The entry's key and its shard.
    fn slot(&self, connector: &str, provider_id: &str) -> (u64, std::sync::MutexGuard<'_, Shard>) {
        let key = self.hasher.hash_one((connector, provider_id));
        let shard = self.shards[(key % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        (key, shard)
    }

    /// A message was submitted now.
    pub fn submitted(&self, connector: &str, provider_id: &str) {
        let (key, mut s) = self.slot(connector, provider_id);
        if s.len() < MAX / SHARDS {
            s.insert(key, Instant::now());
        }
    }

    /// How long ago the message with this provider id was submitted, if it was
    /// timed here; forgets it.
    pub fn receipt(&self, connector: &str, provider_id: &str) -> Option<Duration> {
        let (key, mut s) = self.slot(connector, provider_id);
        Some(s.remove(&key)?.elapsed())
    }

    /// Forget entries older than [`KEEP`].
    pub fn prune(&self) {
        for s in &self.shards {
            let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
            s.retain(|_, at| at.elapsed() < KEEP);
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_finds_its_submit_once() {
        let t = SubmitTimes::default();
        t.submitted("smsc", "abc");
        assert_eq!(t.len(), 1);
        assert!(t.receipt("other", "abc").is_none());
        assert!(t.receipt("smsc", "abc").is_some());
        assert!(t.receipt("smsc", "abc").is_none());
        assert!(t.is_empty());
        t.submitted("smsc", "x");
        t.prune();
        assert_eq!(t.len(), 1, "young entries stay");
    }
}
