//! The queue + store: message records, per-tenant history indexes, idempotency
//! keys, provider-id correlation and the work queues (one lane per channel plus
//! one for customer callbacks), behind one trait with three backends:
//!
//! * [`redis::RedisStore`] on one Redis (`redis`) or a Redis Cluster
//!   (`redis-cluster`): production. Every message belongs to one of
//!   [`Partitions`]; each atomic step is one Lua script on one partition's keys
//!   (one hash tag, one cluster slot), and a round trip carries many of them
//!   (group commit, [`batcher`]). Redis Streams with a consumer group per
//!   stream (one per tenant per partition on channel lanes, so one tenant's
//!   backlog cannot hold up another's), takeover of a dead instance's entries,
//!   a scheduled set for `send_at` and retry backoff, dead-letter streams.
//! * [`memory::MemoryStore`]: the embedded default for `goniec demo` and fast
//!   tests. It keeps nothing across restarts and says so at start.
//!
//! All pass the conformance suite in `goniec-testkit` (`testkit/src/conformance.rs`).
//!
//! The contract that makes crashes safe: a queue entry leaves the pending list
//! only through [`Store::finish`], which writes the message's new state (or its
//! retry, burial or handover) in the same atomic step; what lives outside the
//! partition (receipt correlation) is written before that step.

pub mod batcher;
pub mod campaigns;
pub mod content;
pub mod keys;
pub mod memory;
pub mod model;
pub mod operator;
pub mod redis;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use goniec_antifraud::{Cap, Counters, Increment, Needs};
use goniec_config::Channel;
use serde::{Deserialize, Serialize};

use crate::model::{Event, Record, Status};

/// The partition count of a deployment and the rule that places a message in a
/// partition: a stable hash of (tenant, recipient), so a recipient's history,
/// counters and opt-out live with its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitions(u16);

impl Partitions {
    /// The most partitions an id can carry.
    pub const MAX: u16 = 1024;

    /// `n` partitions, clamped to 1 to [`Partitions::MAX`].
    pub fn new(n: u16) -> Self {
        Partitions(n.clamp(1, Self::MAX))
    }

    pub fn count(self) -> u16 {
        self.0
    }

    /// Every partition number.
    pub fn all(self) -> std::ops::Range<u16> {
        0..self.0
    }

    /// The partition of a tenant's recipient (an E.164 number or an address).
    pub fn of(self, tenant: &str, recipient: &str) -> u16 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(tenant.as_bytes());
        h.update(&[0]);
        h.update(recipient.as_bytes());
        (h.digest() % u64::from(self.0)) as u16
    }

    /// A new message id in the partition of (tenant, recipient).
    pub fn message_id(self, tenant: &str, recipient: &str) -> String {
        model::new_message_id_in(self.of(tenant, recipient))
    }
}

/// A work queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Messages waiting for a connector of this channel.
    Channel(Channel),
    /// Customer status callbacks waiting to be posted.
    Webhook,
}

impl Lane {
    pub const ALL: [Lane; 4] = [
        Lane::Channel(Channel::Sms),
        Lane::Channel(Channel::Rcs),
        Lane::Channel(Channel::Email),
        Lane::Webhook,
    ];

    /// The lane [`Lane::as_str`] names.
    pub fn named(name: &str) -> Option<Lane> {
        Lane::ALL.into_iter().find(|l| l.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Channel(c) => c.as_str(),
            Lane::Webhook => "webhook",
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One unit of queued work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Message id (channel lanes) or callback id (webhook lane).
    pub id: String,
    /// Attempts already made (0 on the first delivery).
    pub attempt: u32,
    /// What to do with it.
    pub task: Task,
}

impl Job {
    /// Deliver message `id` (attempt 0).
    pub fn deliver(id: impl Into<String>) -> Self {
        Job {
            id: id.into(),
            attempt: 0,
            task: Task::Deliver,
        }
    }
}

/// What a queued job asks for. Stored as JSON (an empty string for the common
/// [`Task::Deliver`], which is most of every channel lane).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Task {
    /// Deliver the message on the job's lane: the record holds everything.
    #[default]
    Deliver,
    /// On the SMS lane: send this RCS message by SMS now.
    RcsFallback,
    /// On the SMS lane: unless this RCS message was delivered by now, revoke it
    /// and send it by SMS.
    RcsCheck,
    /// On the SMS lane: the RCS message was revoked (or an earlier revoke's answer
    /// was lost); unless a DELIVERED event came meanwhile, send it by SMS.
    RcsRevoked,
    /// On the SMS lane: ask the SMSC about a submitted SMS whose receipt is late.
    ReceiptCheck(ReceiptCheck),
    /// On the webhook lane: post a status change to the message's callback URL.
    Callback(CallbackPayload),
    /// On the webhook lane: tell the message's callback URL that a person
    /// followed one of its tracked links.
    Clicked(ClickedPayload),
    /// On the webhook lane: forward a recipient's reply to the tenant's inbound URL.
    Inbound { tenant: String, body: String },
}

impl Task {
    /// The task without the copy of its message's callback context (what is
    /// kept in dead letters, which outlive the message's retention).
    pub fn without_context(&self) -> Task {
        match self {
            Task::Callback(p) if p.context.is_some() => Task::Callback(CallbackPayload {
                context: None,
                ..p.clone()
            }),
            t => t.clone(),
        }
    }

    /// The queue form.
    pub fn encode(&self) -> String {
        match self {
            Task::Deliver => String::new(),
            // Strings, numbers and enums: serialising cannot fail.
            t => serde_json::to_string(t).unwrap_or_default(),
        }
    }

    /// Read the queue form; `None` for what this version cannot read.
    pub fn decode(s: &str) -> Option<Task> {
        if s.is_empty() {
            return Some(Task::Deliver);
        }
        serde_json::from_str(s).ok()
    }
}

/// A receipt check as it waits in the queue: which connector to ask, by which
/// ids, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptCheck {
    /// The connector that accepted the message.
    #[serde(rename = "c")]
    pub connector: String,
    /// The deadline (unix ms): validity + grace.
    #[serde(rename = "d")]
    pub deadline: i64,
    /// Per part, the id to ask by (as the SMSC wrote it) ...
    #[serde(rename = "q")]
    pub query_ids: Vec<String>,
    /// ... and the normalised id its receipt carries (the part's key in the store).
    #[serde(rename = "p")]
    pub part_ids: Vec<String>,
    /// `query_sm` rounds made so far.
    #[serde(rename = "n")]
    pub rounds: u32,
}

/// A claimed job. It stays pending, and will be reclaimed if its holder dies,
/// until it is completed, retried or buried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub lane: Lane,
    /// The partition whose queue holds the entry.
    pub partition: u16,
    /// The tenant whose queue holds it (channel lanes keep one queue per tenant
    /// in each partition, so one tenant's backlog cannot hold up another's);
    /// empty on the webhook lane.
    pub tenant: String,
    /// Backend entry id (the stream id in Redis: unique within its partition).
    pub entry: String,
    pub job: Job,
    /// True when this lease was taken over from a worker that stopped answering.
    pub reclaimed: bool,
}

impl Lease {
    /// Where its entry lives, for [`Store::touch`].
    pub fn entry_ref(&self) -> EntryRef {
        EntryRef {
            partition: self.partition,
            tenant: self.tenant.clone(),
            entry: self.entry.clone(),
        }
    }
}

/// Where a claimed entry lives: its partition, its queue's tenant and its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryRef {
    pub partition: u16,
    pub tenant: String,
    pub entry: String,
}

/// A new message to store and enqueue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub tenant: String,
    pub channel: Channel,
    pub to: String,
    pub client_ref: Option<String>,
    /// `Queued` (enqueued now) or `Scheduled` (enqueued at `due_ms`).
    pub status: Status,
    pub due_ms: Option<i64>,
    /// Serialized [`crate::model::MessageData`].
    pub data_json: String,
    /// The first events (`accepted`, then `queued`/`scheduled`).
    pub events: Vec<Event>,
    /// Which status changes are posted to a callback URL.
    pub callbacks: Callbacks,
    /// The message's own callback URL (`None`: the tenant's).
    pub callback_url: Option<String>,
    /// The campaign and step that sent it: its status changes count in the
    /// campaign's report.
    pub campaign: Option<(String, u32)>,
}

impl NewMessage {
    /// What its callbacks carry of it; `None` when it has none.
    pub fn callback_context(&self) -> Option<CallbackContext> {
        (self.callbacks != Callbacks::None).then(|| CallbackContext {
            tenant: self.tenant.clone(),
            channel: self.channel,
            to: self.to.clone(),
            client_ref: self.client_ref.clone(),
            url: self.callback_url.clone(),
        })
    }
}

/// Which status changes of a message are posted to its callback URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callbacks {
    /// No callback URL.
    None,
    /// Every change.
    All,
    /// Only changes to these statuses (`callback_events`).
    Only(Vec<Status>),
}

impl Callbacks {
    pub fn wants(&self, to: Status) -> bool {
        match self {
            Callbacks::None => false,
            Callbacks::All => true,
            Callbacks::Only(list) => list.contains(&to),
        }
    }

    /// The record's `cb` field: `0`, `1`, or `,delivered,failed,` (what
    /// `lua/transition.lua` reads).
    pub(crate) fn field(&self) -> String {
        match self {
            Callbacks::None => "0".into(),
            Callbacks::All => "1".into(),
            Callbacks::Only(list) => list.iter().fold(String::from(","), |mut s, st| {
                s.push_str(st.as_str());
                s.push(',');
                s
            }),
        }
    }
}

/// A status change to apply atomically.
#[derive(Debug, Clone)]
pub struct Change {
    pub to: Status,
    pub event: Event,
    /// On `submitted`: how many parts the message went out in (multipart SMS).
    pub parts: Option<u32>,
    /// On a receipt: the provider id of the part it reports. A multipart message
    /// becomes `delivered` only when every part is; each part counts once.
    pub part: Option<String>,
}

impl Change {
    pub fn new(to: Status, at: i64, reason: Option<String>, detail: Option<String>) -> Self {
        let event = Event {
            status: to,
            at,
            reason,
            detail,
        };
        Change {
            to,
            event,
            parts: None,
            part: None,
        }
    }
}

/// Work handed to another lane when a lease finishes (an RCS message falling back
/// to SMS), written in the same atomic step.
#[derive(Debug, Clone)]
pub struct Handover {
    pub lane: Lane,
    pub job: Job,
    /// Unix ms when it is due; `None` = at once. The same job scheduled twice is
    /// one job.
    pub at_ms: Option<i64>,
    /// An event for the message's history that changes no status.
    pub note: Option<Event>,
}

/// Provider ids that map to a message, for its receipts (several for a
/// multipart SMS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correlation {
    /// The connector that issued the ids.
    pub connector: String,
    pub provider_ids: Vec<String>,
}

/// How a lease ends ([`Store::finish`]).
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Done: apply `change` (if any), record `correlation` (if any), acknowledge.
    Complete {
        change: Option<Change>,
        correlation: Option<Correlation>,
    },
    /// Give the job back to be tried again at `at_ms` with `attempt` as its new
    /// attempt count (raised for a failed try, kept for throttling or an outage).
    Retry { at_ms: i64, attempt: u32 },
    /// Move the job to the lane's dead-letter queue with `reason`, applying
    /// `change` (if any).
    Bury {
        reason: String,
        change: Option<Change>,
    },
    /// [`Outcome::Complete`], and put `next` on its lane in the same step.
    Handover {
        change: Option<Change>,
        correlation: Option<Correlation>,
        next: Box<Handover>,
    },
}

impl Outcome {
    /// Acknowledge with nothing else to record.
    pub fn done() -> Self {
        Outcome::Complete {
            change: None,
            correlation: None,
        }
    }

    /// Acknowledge with a status change.
    pub fn change(change: Change) -> Self {
        Outcome::Complete {
            change: Some(change),
            correlation: None,
        }
    }
}

/// What became of a requested status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Applied; the message was in `from`.
    Applied { from: Status },
    /// Refused: the message is in `current`, from which the move is not allowed.
    Refused { current: Status },
    /// No such message (never existed or past retention).
    Missing,
    /// Refused: a cancel while a worker is submitting the message.
    InFlight,
    /// One part of a multipart message was delivered and recorded as an event; the
    /// message waits for its other parts.
    Partial,
}

impl Transition {
    pub fn applied(self) -> bool {
        matches!(self, Transition::Applied { .. })
    }
}

/// Where a tenant's contact history is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryKey {
    To(String),
    ClientRef(String),
}

/// An idempotency key's state when a request arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdemBegin {
    /// First use: the key is now reserved for this request.
    New,
    /// An earlier request with this key completed.
    Done {
        fingerprint: String,
        status: u16,
        body: String,
    },
    /// An earlier request with this key is still being processed.
    InProgress { fingerprint: String },
}

/// The response to remember for an idempotency key, written with the messages.
#[derive(Debug, Clone)]
pub struct IdemWrite<'a> {
    pub tenant: &'a str,
    pub key: &'a str,
    pub fingerprint: &'a str,
    pub status: u16,
    pub body: &'a str,
}

/// Queue gauges for one lane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaneStats {
    /// Entries waiting or being processed.
    pub depth: u64,
    /// Entries waiting for their time (scheduled and retries).
    pub scheduled: u64,
    /// Entries in the dead-letter queue.
    pub dead: u64,
    /// Age of the oldest entry waiting or being processed, in ms.
    pub oldest_age_ms: u64,
    /// Scheduled entries due within [`DUE_SOON_MS`].
    pub due_soon: u64,
}

/// What [`LaneStats::due_soon`] counts: entries due in the next 15 minutes.
pub const DUE_SOON_MS: i64 = 15 * 60 * 1000;

/// Store failures. Any of them on the request path becomes a 503.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend cannot be reached or did not answer in time.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with something this version does not understand.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
}

/// The queue + store contract. See the module docs.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `redis` or `memory`.
    fn backend(&self) -> &'static str;

    /// The partitions messages are spread over; ids of new messages must come
    /// from [`Partitions::message_id`].
    fn partitions(&self) -> Partitions;

    /// Stored templates, on this backend.
    fn templates(&self) -> &dyn content::Templates;

    /// Tracked links and their clicks, on this backend.
    fn links(&self) -> &dyn content::Links;

    /// Campaigns, their audiences and progress, on this backend.
    fn campaigns(&self) -> &dyn campaigns::Campaigns;

    /// Pauses, the admin log, dead letters by hand.
    fn operator(&self) -> &dyn operator::Operator;

    /// Leave these tenants' channel-lane streams out of [`Store::claim`] (an
    /// operator paused them): their messages wait in the queue instead of
    /// being claimed and put back. Replaces the previous set; this process only.
    fn skip_tenants(&self, tenants: std::collections::HashSet<String>);

    /// Cheap liveness check (one round trip).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Store the messages, index them and enqueue (or schedule) them, and record the
    /// idempotent response if any: all or nothing, in one round trip.
    async fn accept(
        &self,
        msgs: &[NewMessage],
        idem: Option<IdemWrite<'_>>,
    ) -> Result<(), StoreError>;

    /// Load one message.
    async fn get(&self, id: &str) -> Result<Option<Record>, StoreError>;

    /// Load several messages in one round trip, in order.
    async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<Record>>, StoreError>;

    /// Load claimed messages for delivery and mark those in `queued` as in flight, so
    /// a cancel cannot race the submit (it gets [`Transition::InFlight`]). The mark is
    /// cleared when the message is given back for a retry. One round trip.
    async fn begin_delivery(&self, ids: &[String]) -> Result<Vec<Option<Record>>, StoreError>;

    /// Tell the store this consumer is still working on these entries, so they
    /// are not reclaimed as abandoned while a slow submit or an egress limit
    /// holds them.
    async fn touch(
        &self,
        lane: Lane,
        consumer: &str,
        entries: &[EntryRef],
    ) -> Result<(), StoreError>;

    /// Make the queues of these tenants ready in every partition before their
    /// first message (the configured tenants, at start): a worker then reads
    /// them from the first message on. Tenants not prepared still work; their
    /// queues are found within a second of their first message.
    async fn prepare(&self, _tenants: &[String]) -> Result<(), StoreError> {
        Ok(())
    }

    /// Apply a status change if the transition table allows it; queue a callback when
    /// the message has one.
    async fn transition(&self, id: &str, change: &Change) -> Result<Transition, StoreError>;

    /// [`Store::transition`] for several messages at once, answered in order (on
    /// Redis: one round trip, one script call per partition).
    async fn transition_many(
        &self,
        items: Vec<(String, Change)>,
    ) -> Result<Vec<Transition>, StoreError> {
        let mut out = Vec::with_capacity(items.len());
        for (id, change) in &items {
            out.push(self.transition(id, change).await?);
        }
        Ok(out)
    }

    /// A tenant's messages for one recipient or client reference, newest first, older
    /// than `before` (a message id) when given. Returns ids.
    async fn history(
        &self,
        tenant: &str,
        key: &HistoryKey,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// Reserve an idempotency key (short-lived until the response is written).
    /// The fingerprint is stored `|`-separated and must not contain `|`.
    async fn idem_begin(
        &self,
        tenant: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<IdemBegin, StoreError>;

    /// Drop a reservation whose request failed before anything was stored.
    async fn idem_abort(&self, tenant: &str, key: &str) -> Result<(), StoreError>;

    /// Claim new entries of a lane for `consumer`, waiting up to `block`: about
    /// `max`, read fairly from every partition (a backend may return up to one
    /// more per partition than `max`).
    async fn claim(
        &self,
        lane: Lane,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Lease>, StoreError>;

    /// Take over up to `max` entries other consumers have held longer than `min_idle`.
    async fn reclaim(
        &self,
        lane: Lane,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Lease>, StoreError>;

    /// Finish a lease as `outcome` says. Only the lease's current holder
    /// changes the queue (a reclaimed duplicate's retry, burial or handover is
    /// dropped); a status change is applied whoever asks, by the transition table.
    ///
    /// Correlation keys live outside the message's partition: they are written
    /// first, then the partition's atomic step applies the change and acknowledges
    /// the entry, so a receipt can never arrive for a submitted message the store
    /// cannot find.
    async fn finish(&self, lease: Lease, outcome: Outcome) -> Result<Transition, StoreError>;

    /// [`Store::finish`] for several leases at once, answered in order (on
    /// Redis: one round trip, one script call per partition). Each lease is
    /// finished atomically on its own; a failure leaves any of them either
    /// finished or not, and retrying the finished ones changes nothing.
    async fn finish_many(
        &self,
        items: Vec<(Lease, Outcome)>,
    ) -> Result<Vec<Transition>, StoreError> {
        let mut out = Vec::with_capacity(items.len());
        for (lease, outcome) in items {
            out.push(self.finish(lease, outcome).await?);
        }
        Ok(out)
    }

    /// True the first time `key` is seen within `ttl`; false for a replay (an
    /// inbound event the platform sent again).
    async fn first_seen(&self, key: &str, ttl: std::time::Duration) -> Result<bool, StoreError>;

    /// Forget a key `first_seen` recorded (its handling failed: let a resend in).
    async fn forget_seen(&self, key: &str) -> Result<(), StoreError>;

    /// Move up to `max` scheduled jobs due by `now_ms` into the lane; `scheduled`
    /// messages become `queued`. Safe to run from several gateways at once.
    async fn promote_due(&self, lane: Lane, now_ms: i64, max: usize) -> Result<usize, StoreError>;

    /// Look up the message a provider id belongs to.
    async fn correlate(
        &self,
        connector: &str,
        provider_id: &str,
    ) -> Result<Option<String>, StoreError>;

    /// [`Store::correlate`] for several spellings of one receipt id at once (the
    /// other forms tried when the receipt's own matches nothing), in order: one round
    /// trip. Callers keep the list to a handful.
    async fn correlate_many(
        &self,
        connector: &str,
        provider_ids: &[String],
    ) -> Result<Vec<Option<String>>, StoreError>;

    /// Gauges for one lane.
    async fn lane_stats(&self, lane: Lane, now_ms: i64) -> Result<LaneStats, StoreError>;

    /// Dead-lettered jobs of a lane, oldest first (operator view).
    async fn dead_letters(
        &self,
        lane: Lane,
        max: usize,
    ) -> Result<Vec<operator::DeadLetter>, StoreError>;

    /// Put an e-mail address on a tenant's suppression list (a hard bounce), with
    /// the reason (the status and diagnostic).
    async fn suppress(&self, tenant: &str, address: &str, reason: &str) -> Result<(), StoreError>;

    /// Take an address off the list; whether it was on it.
    async fn unsuppress(&self, tenant: &str, address: &str) -> Result<bool, StoreError>;

    /// For each address, the reason it is suppressed, if it is: one round trip.
    async fn suppressed(
        &self,
        tenant: &str,
        addresses: &[&str],
    ) -> Result<Vec<Option<String>>, StoreError>;

    /// A tenant's suppressed addresses with their reasons, at most `max`, sorted by
    /// address (with more than `max`, not necessarily the first `max` of them).
    async fn suppressions(
        &self,
        tenant: &str,
        max: usize,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// Put a job on a lane (inbound replies to forward on the webhook lane).
    async fn enqueue(&self, lane: Lane, job: Job) -> Result<(), StoreError>;

    /// Anti-fraud counters and opt-out state for each screening, in order: one
    /// round trip for all of them (a batch is screened at once).
    async fn counters(&self, needs: Vec<Needs>) -> Result<Vec<Counters>, StoreError>;

    /// Apply the counter increments of stored messages: one round trip.
    async fn count(&self, record: &[Increment]) -> Result<(), StoreError>;

    /// Reserve the places of messages under counter limits before they are
    /// stored, message by message in order: a message's caps (one recipient's,
    /// on one slot) are checked and counted in one atomic step, all or
    /// nothing, so that no two instances both take the last place. One round
    /// trip; per message `None` when granted, else the index of its first full
    /// cap (and nothing counted).
    async fn reserve(&self, caps: &[&[Cap]]) -> Result<Vec<Option<usize>>, StoreError>;

    /// Give granted reservations back (their messages were not stored): one
    /// round trip. A counter that expired meanwhile is left alone.
    async fn release(&self, caps: &[&Cap]) -> Result<(), StoreError>;

    /// Record (`true`) or clear an opt-out under its key
    /// ([`goniec_antifraud::Needs::opt_out_key`] form).
    ///
    /// `at_ms` is when the change happened (the API call, the reply, the
    /// platform's event time). A change older than the last one applied to the
    /// key changes nothing and returns false: a replayed or late event never
    /// undoes a newer state.
    async fn set_opt_out(&self, key: &str, opted_out: bool, at_ms: i64)
        -> Result<bool, StoreError>;

    /// Whether each of these opt-out keys is opted out now (one round trip).
    async fn opted_out(&self, keys: &[String]) -> Result<Vec<bool>, StoreError>;

    /// Held message ids, oldest first, at most `max`.
    async fn held(&self, max: usize) -> Result<Vec<String>, StoreError>;

    /// How many messages are held.
    async fn held_count(&self) -> Result<u64, StoreError>;

    /// Decide a held message atomically: `change.to` is `scheduled` (released: it is
    /// enqueued at `due_ms`, at once when that is past) or `rejected`/`cancelled`
    /// (dropped). Only a message still `held` changes.
    async fn decide_held(
        &self,
        id: &str,
        tenant: &str,
        change: &Change,
        due_ms: i64,
        channel: Channel,
    ) -> Result<Transition, StoreError>;

    /// Say that `consumer` (this process) is alive for the next `ttl`. Instances
    /// refresh it well within `ttl`; see [`Store::take_over_dead`].
    async fn beat(&self, consumer: &str, ttl: Duration) -> Result<(), StoreError>;

    /// Whether an instance's heartbeat is current (see [`Store::beat`]).
    async fn alive(&self, consumer: &str) -> Result<bool, StoreError>;

    /// Take over, at once and whatever their idle time, up to `max` entries of
    /// `lane` held by consumers whose heartbeat ([`Store::beat`]) has lapsed (a
    /// killed instance), and forget such consumers once they hold nothing. A
    /// live consumer is never robbed here, however slow its work; `reclaim`
    /// with its long idle time remains the backstop. A backend with one
    /// process only (memory) has no one to take over from.
    async fn take_over_dead(
        &self,
        lane: Lane,
        consumer: &str,
        max: usize,
    ) -> Result<Vec<Lease>, StoreError>;
}

/// A status change to report on the webhook lane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackPayload {
    #[serde(rename = "m")]
    pub message_id: String,
    #[serde(rename = "s")]
    pub status: Status,
    pub at: i64,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The message's side of the callback, copied from its record by the step
    /// that queues the callback, so that posting it needs no load of the
    /// message. `None` in jobs queued before the record kept it: then the
    /// webhook lane loads the message.
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub context: Option<CallbackContext>,
}

/// What a status callback says of its message besides the event: kept in the
/// record (Redis: field `h`) of a message that has callbacks, and copied into
/// each of its callback jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackContext {
    #[serde(rename = "t")]
    pub tenant: String,
    #[serde(rename = "c")]
    pub channel: Channel,
    pub to: String,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub client_ref: Option<String>,
    /// The message's own callback URL; `None`: the tenant's, read when posting.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A `clicked` callback as it waits in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickedPayload {
    #[serde(rename = "m")]
    pub message_id: String,
    /// Unix ms of the click.
    pub at: i64,
    /// The link's target.
    #[serde(rename = "u")]
    pub url: String,
}

/// Encode an idempotency record: `P|fp` while in progress, `D|fp|status|body` when done.
pub(crate) fn encode_idem_done(w: &IdemWrite<'_>) -> String {
    format!("D|{}|{}|{}", w.fingerprint, w.status, w.body)
}

/// Parse an idempotency record written by [`encode_idem_done`] or a reservation.
pub(crate) fn parse_idem(v: &str) -> Result<IdemBegin, StoreError> {
    let corrupt = || StoreError::Corrupt("idempotency record".into());
    if let Some(fp) = v.strip_prefix("P|") {
        return Ok(IdemBegin::InProgress {
            fingerprint: fp.to_string(),
        });
    }
    let rest = v.strip_prefix("D|").ok_or_else(corrupt)?;
    let mut it = rest.splitn(3, '|');
    let fingerprint = it.next().ok_or_else(corrupt)?.to_string();
    let status = it.next().and_then(|s| s.parse().ok()).ok_or_else(corrupt)?;
    let body = it.next().ok_or_else(corrupt)?.to_string();
    Ok(IdemBegin::Done {
        fingerprint,
        status,
        body,
    })
}

/// Encode a job as a scheduled-set member: `attempt|id|tenant|task` (tenant
/// names hold no `|`: config validation).
pub(crate) fn encode_member(job: &Job, tenant: &str) -> String {
    format!(
        "{}|{}|{}|{}",
        job.attempt,
        job.id,
        tenant,
        job.task.encode()
    )
}

/// Read a scheduled-set member: the job and its queue's tenant.
#[cfg(test)]
pub(crate) fn decode_member(m: &str) -> Option<(Job, String)> {
    let mut it = m.splitn(4, '|');
    let attempt = it.next()?.parse().ok()?;
    let id = it.next()?.to_string();
    let tenant = it.next()?.to_string();
    let task = Task::decode(it.next().unwrap_or(""))?;
    Some((Job { id, attempt, task }, tenant))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        let p = Partitions::new(16);
        // Fixed for the life of a deployment: the same inputs, the same partition.
        assert_eq!(p.of("acme", "+48500100200"), p.of("acme", "+48500100200"));
        assert_eq!(
            p.of("acme", "+48500100200"),
            11,
            "the placement rule changed"
        );
        let mut seen = [0u32; 16];
        for i in 0..1600 {
            seen[p.of("acme", &format!("+48500{i:06}")) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (50..=150).contains(&n)), "{seen:?}");
        let id = p.message_id("acme", "+48500100200");
        assert_eq!(model::partition_of(&id), p.of("acme", "+48500100200"));
        assert_eq!(Partitions::new(0).count(), 1);
        assert_eq!(Partitions::new(5000).count(), 1024);
    }

    #[test]
    fn tasks_round_trip() {
        let cb = Task::Callback(CallbackPayload {
            message_id: "01J".into(),
            status: Status::Delivered,
            at: 42,
            reason: Some("x|y\tz".into()),
            context: Some(CallbackContext {
                tenant: "t".into(),
                channel: Channel::Sms,
                to: "+48500100200".into(),
                client_ref: Some("inv-7".into()),
                url: None,
            }),
        });
        let check = Task::ReceiptCheck(ReceiptCheck {
            connector: "smsc-a".into(),
            deadline: 7,
            query_ids: vec!["A1".into()],
            part_ids: vec!["a1".into()],
            rounds: 2,
        });
        let inbound = Task::Inbound {
            tenant: "t".into(),
            body: "{\"text\":\"STOP\"}".into(),
        };
        for t in [Task::Deliver, Task::RcsCheck, cb, check, inbound] {
            assert_eq!(Task::decode(&t.encode()), Some(t.clone()), "{t:?}");
        }
        assert_eq!(Task::Deliver.encode(), "");
        assert_eq!(Task::decode("garbage"), None);
        assert_eq!(Task::decode("{\"k\":\"nope\"}"), None);
    }

    #[test]
    fn scheduled_member_round_trips() {
        let j = Job {
            id: "01J".into(),
            attempt: 3,
            task: Task::Inbound {
                tenant: "a|b".into(),
                body: "c|d".into(),
            },
        };
        assert_eq!(
            decode_member(&encode_member(&j, "acme")),
            Some((j, "acme".to_string()))
        );
        assert_eq!(decode_member("x|y"), None);
    }
}
