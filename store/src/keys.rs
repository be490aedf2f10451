//! Every Redis key the store uses, built in one place.
//!
//! A message's keys (record, lanes, scheduled set, dead letters, held set,
//! history by recipient) carry its partition's hash tag `{pN}`, so each atomic
//! step touches one Redis Cluster slot. Keys that cannot share a partition's slot
//! are single-key state written in their own step: idempotency records, history
//! by `client_ref` (a reference is not tied to one recipient), provider-id
//! correlation, anti-fraud counters, suppression lists, replay marks and instance
//! heartbeats. The prefix holds no braces (config validation), so the tag is the
//! first `{…}` of every partition key whatever client text follows it.

use sha2::{Digest, Sha256};

use crate::model::partition_of;
use crate::{HistoryKey, Lane};

/// The key builder of one store prefix. Public for tools and tests that look
/// at Redis directly.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn part(&self, p: u16, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}:{{p{p}}}:{rest}", self.prefix)
    }

    /// The record of a message (hash), in the partition its id carries.
    pub fn record(&self, id: &str) -> String {
        self.part(partition_of(id), format_args!("m:{id}"))
    }

    /// A lane's stream in partition `p`: one per tenant on channel lanes (so
    /// one tenant's backlog cannot hold up another's), one for all on the
    /// webhook lane.
    pub fn queue(&self, p: u16, lane: Lane, tenant: &str) -> String {
        match lane {
            Lane::Webhook => self.part(p, format_args!("q:{lane}")),
            Lane::Channel(_) => self.part(p, format_args!("q:{lane}:{tenant}")),
        }
    }

    /// The tenants with a stream of a channel lane in partition `p` (a set),
    /// which workers read to find every stream.
    pub fn tenants(&self, p: u16, lane: Lane) -> String {
        self.part(p, format_args!("qt:{lane}"))
    }

    /// A lane's jobs waiting for a time (sorted set by due ms) in partition `p`.
    pub fn scheduled(&self, p: u16, lane: Lane) -> String {
        self.part(p, format_args!("s:{lane}"))
    }

    /// A lane's dead letters (stream) in partition `p`.
    pub fn dead(&self, p: u16, lane: Lane) -> String {
        self.part(p, format_args!("dlq:{lane}"))
    }

    /// Held message ids (sorted set by accepted ms) in partition `p`.
    pub fn held(&self, p: u16) -> String {
        self.part(p, format_args!("held"))
    }

    /// A tenant's contact history: by recipient in the recipient's partition
    /// `p`; by client reference on its own.
    pub fn history(&self, p: u16, tenant: &str, key: &HistoryKey) -> String {
        match key {
            HistoryKey::To(to) => self.part(p, format_args!("h:{tenant}:to:{to}")),
            HistoryKey::ClientRef(r) => format!("{}:ref:{tenant}:{r}", self.prefix),
        }
    }

    /// Provider id → message id, for receipts.
    pub fn correlation(&self, connector: &str, provider_id: &str) -> String {
        format!("{}:c:{connector}:{provider_id}", self.prefix)
    }

    /// An idempotency record. The client's key is arbitrary text: hashed, it
    /// cannot shape our key space.
    pub fn idempotency(&self, tenant: &str, key: &str) -> String {
        let digest = hex::encode(Sha256::digest(key.as_bytes()));
        format!("{}:i:{tenant}:{digest}", self.prefix)
    }

    /// Anti-fraud counters (hash of time buckets) under their own key.
    pub fn counter(&self, key: &str) -> String {
        format!("{}:af:{key}", self.prefix)
    }

    /// An opt-out flag and the time of its last change: one hash tag for the two,
    /// which one script updates together.
    pub fn opt_out(&self, key: &str) -> (String, String) {
        (
            format!("{}:af:{{{key}}}", self.prefix),
            format!("{}:af:{{{key}}}:at", self.prefix),
        )
    }

    /// Paused tenants and connectors (hash: target → who and when).
    pub fn pauses(&self) -> String {
        format!("{}:pauses", self.prefix)
    }

    /// The admin log (list, newest first).
    pub fn audit(&self) -> String {
        format!("{}:audit", self.prefix)
    }

    /// A tenant's suppressed e-mail addresses (hash: address → reason).
    pub fn suppression(&self, tenant: &str) -> String {
        format!("{}:sup:{tenant}", self.prefix)
    }

    /// Marks an inbound event already handled, until the replay window ends.
    pub fn once(&self, key: &str) -> String {
        format!("{}:once:{key}", self.prefix)
    }

    /// A stored template (hash of versions) and the tenant's list of template
    /// ids (set), under one hash tag.
    pub fn template(&self, tenant: &str, id: &str) -> (String, String) {
        (
            format!("{}:{{tpl:{tenant}}}:t:{id}", self.prefix),
            format!("{}:{{tpl:{tenant}}}:ids", self.prefix),
        )
    }

    /// A campaign's state in partition `p`: `kind` is `cd` (due steps),
    /// `cr` (recipients), `cs` (recipient states), `ce` (recipient events),
    /// `cb` (the open batch), `cn` (batch numbers) or `cc` (report counters).
    pub fn campaign(&self, p: u16, kind: &str, id: &str) -> String {
        self.part(p, format_args!("{kind}:{id}"))
    }

    /// A campaign's keys outside the partitions, under one hash tag: `meta`
    /// (hash), `refs` (client_ref → row), `rej` (rejected rows, a list).
    pub fn campaign_own(&self, id: &str, kind: &str) -> String {
        format!("{}:{{cmp:{id}}}:{kind}", self.prefix)
    }

    /// A tenant's campaign ids (set), and the running campaigns of all (set of
    /// `tenant\tid`).
    pub fn campaign_index(&self, tenant: Option<&str>) -> String {
        match tenant {
            Some(t) => format!("{}:cmps:{t}", self.prefix),
            None => format!("{}:cmps-running", self.prefix),
        }
    }

    /// A tracked link by its code.
    pub fn link(&self, code: &str) -> String {
        format!("{}:l:{code}", self.prefix)
    }

    /// An instance's heartbeat.
    pub fn alive(&self, consumer: &str) -> String {
        format!("{}:alive:{consumer}", self.prefix)
    }
}

/// The Redis Cluster hash slot of a key (its hash tag's, or the whole key's
/// without one), for grouping a pipeline's commands by slot.
#[cfg(test)]
pub(crate) fn slot(key: &str) -> redis::cluster_routing::Slot {
    redis::cluster_routing::Slot::for_key(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::new_message_id_in;
    use goniec_config::Channel;

    #[test]
    fn a_partitions_keys_share_one_slot() {
        let k = Keys::new("goniec");
        let id = new_message_id_in(7);
        let lane = Lane::Channel(Channel::Sms);
        let keys = [
            k.record(&id),
            k.queue(7, lane, "t"),
            k.queue(7, Lane::Webhook, ""),
            k.tenants(7, lane),
            k.scheduled(7, lane),
            k.dead(7, lane),
            k.held(7),
            k.history(7, "t", &HistoryKey::To("+48{p1}".into())),
        ];
        assert!(
            keys.iter().all(|key| slot(key) == slot(&keys[0])),
            "{keys:?}"
        );
        assert_ne!(slot(&k.queue(8, lane, "t")), slot(&keys[0]));
        let (flag, at) = k.opt_out("opt:t:+48500");
        assert_eq!(slot(&flag), slot(&at));
    }

    #[test]
    fn client_text_cannot_move_a_partition_key() {
        let k = Keys::new("goniec");
        let a = k.history(3, "t", &HistoryKey::To("{x}".into()));
        let b = k.queue(3, Lane::Webhook, "");
        assert_eq!(slot(&a), slot(&b));
    }
}
