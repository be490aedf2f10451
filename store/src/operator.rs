//! What operators change by hand: pauses of tenants and connectors, the admin
//! log of every such action, and dead letters sent back or thrown away.
//!
//! Pauses and the log are shared by every instance on one store (an operator
//! pauses a tenant once, not once per instance). On Redis they are two small
//! keys outside the partitions (`{prefix}:pauses`, a hash of target → who and
//! when; `{prefix}:audit`, a list trimmed to [`AUDIT_KEEP`] entries, newest
//! first). A dead letter's id names its partition, so requeueing or discarding
//! it touches one slot.

use async_trait::async_trait;

use crate::{Job, Lane, StoreError};

/// Entries the admin log keeps; older ones are trimmed.
pub const AUDIT_KEEP: usize = 10_000;

/// A dead-lettered job as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its id in the dead-letter queue (`<partition>.<entry>`): what requeue and
    /// discard name.
    pub id: String,
    pub job: Job,
    pub reason: String,
}

/// Operator state. See the module docs.
#[async_trait]
pub trait Operator: Send + Sync {
    /// Pause `target` (`tenant:<name>` or `connector:<name>`) with `info` (who and
    /// when, as JSON), or resume it (`None`). Returns whether anything changed.
    async fn set_pause(&self, target: &str, info: Option<&str>) -> Result<bool, StoreError>;

    /// Every paused target with its info, sorted by target.
    async fn pauses(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Add one entry (JSON) to the admin log; it keeps the newest [`AUDIT_KEEP`].
    async fn audit(&self, entry: &str) -> Result<(), StoreError>;

    /// The newest `max` entries of the admin log, newest first.
    async fn audit_log(&self, max: usize) -> Result<Vec<String>, StoreError>;

    /// One dead letter of `lane` by its id.
    async fn dead_letter(&self, lane: Lane, id: &str) -> Result<Option<DeadLetter>, StoreError>;

    /// Take dead letter `id` out of the dead-letter queue and put `job` (the
    /// dead letter's job, usually with its attempts reset) on `lane` for
    /// `tenant`'s queue, due at `at_ms`, in one step: a second requeue of the
    /// same id finds nothing and returns false.
    async fn requeue_dead(
        &self,
        lane: Lane,
        id: &str,
        job: &Job,
        tenant: &str,
        at_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Remove dead letter `id`; whether it was there.
    async fn discard_dead(&self, lane: Lane, id: &str) -> Result<bool, StoreError>;
}

/// A dead letter's id from its partition and its entry in that partition's
/// queue; [`split_dead_id`] reads it back.
pub fn dead_id(partition: u16, entry: &str) -> String {
    format!("{partition}.{entry}")
}

/// The partition and entry of a dead letter id; `None` when malformed.
pub fn split_dead_id(id: &str) -> Option<(u16, &str)> {
    let (p, entry) = id.split_once('.')?;
    let (ms, seq) = entry.split_once('-')?;
    if ms.is_empty()
        || seq.is_empty()
        || !ms.bytes().all(|b| b.is_ascii_digit())
        || !seq.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((p.parse().ok()?, entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_ids_round_trip_and_refuse_junk() {
        let id = dead_id(7, "1733400000000-3");
        assert_eq!(id, "7.1733400000000-3");
        assert_eq!(split_dead_id(&id), Some((7, "1733400000000-3")));
        for bad in [
            "",
            "7",
            "7.",
            "x.1-2",
            "7.1-",
            "7.-1",
            "7.1-2-3",
            "7.a-1",
            "70000.1-1",
        ] {
            assert_eq!(split_dead_id(bad), None, "{bad}");
        }
    }
}
