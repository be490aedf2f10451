//! Callbacks waiting to be posted together, per (tenant, URL): only the
//! bookkeeping (who waits in which batch, which batch is full, how many wait
//! in all). Sending a batch and its linger timer are [`super`]'s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::outcome::Outcome;

/// (tenant, URL) a batch is posted for.
pub(crate) type Key = (String, String);

/// Callbacks waiting to be posted together, per (tenant, URL).
pub struct CallbackBatches {
    groups: Mutex<HashMap<Key, Group>>,
    next_id: AtomicU64,
    /// Callbacks in batches not yet answered, across all of them: a slow
    /// endpoint makes the lane wait here instead of piling batches up.
    slots: Arc<Semaphore>,
}

/// Most callbacks waiting in batches or in batch POSTs at once.
const BATCHED_MAX: usize = 10_000;

impl Default for CallbackBatches {
    fn default() -> Self {
        CallbackBatches {
            groups: Default::default(),
            next_id: Default::default(),
            slots: Arc::new(Semaphore::new(BATCHED_MAX)),
        }
    }
}

/// One batch being gathered.
pub(crate) struct Group {
    id: u64,
    pub bodies: Vec<Vec<u8>>,
    pub waiters: Vec<oneshot::Sender<Outcome>>,
}

/// What adding a callback did to its batch.
pub(crate) enum Joined {
    /// It filled the batch: send this one now.
    Full(Group),
    /// It started a new batch with this id: start its linger timer.
    Started(u64),
    /// It joined a batch that is already waiting.
    Waiting,
}

impl CallbackBatches {
    /// One of the slots that bound how many callbacks wait in batches;
    /// `None` once closed.
    pub(crate) async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
    }

    /// Add one callback body to its batch of at most `max`; `tx` hears the
    /// batch's outcome.
    pub(crate) fn join(
        &self,
        key: &Key,
        body: Vec<u8>,
        max: usize,
        tx: oneshot::Sender<Outcome>,
    ) -> Joined {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let g = groups.entry(key.clone()).or_insert_with(|| Group {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            bodies: Vec::new(),
            waiters: Vec::new(),
        });
        g.bodies.push(body);
        g.waiters.push(tx);
        let started = (g.bodies.len() == 1).then_some(g.id);
        if g.bodies.len() >= max.max(1) {
            if let Some(g) = groups.remove(key) {
                return Joined::Full(g);
            }
        }
        match started {
            Some(id) => Joined::Started(id),
            None => Joined::Waiting,
        }
    }

    /// Batch `id` of `key` when its linger is over, unless it was sent already
    /// because it filled up (a newer batch may be gathering under the key).
    pub(crate) fn take(&self, key: &Key, id: u64) -> Option<Group> {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        match groups.get(key) {
            Some(g) if g.id == id => groups.remove(key),
            _ => None,
        }
    }
}
