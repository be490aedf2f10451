//! Campaigns: a definition and its state, an audience of recipients, and the
//! per-recipient progress through the steps, kept so that a gateway killed at
//! any moment continues where it was and no recipient gets a step twice.
//!
//! Each recipient lives in one partition (by campaign and row), with its due
//! step in that partition's due set. A runner takes a *batch* of due
//! recipients of one partition ([`Campaigns::begin_batch`]): the batch is
//! written before any message is made, and an unfinished batch is handed out
//! again, whole and with the same number, until [`Campaigns::commit_batch`]
//! records its outcome in one atomic step. The messages of a batch are
//! accepted under an idempotency key made of the campaign, partition and batch
//! number, so a batch redone after a crash is answered from the first
//! attempt's stored result instead of sending again.
//!
//! Counters for reports live in each partition (`cc`): the status transitions
//! of a campaign's messages increment them in the same script (see
//! `lua/transition.lua`), and a report sums the partitions.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// A campaign as stored: its definition (JSON, the gateway's) and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignMeta {
    pub tenant: String,
    pub id: String,
    /// `draft`, `running`, `paused`, `completed` or `cancelled`.
    pub state: String,
    pub doc: String,
    /// Unix ms.
    pub created_at: i64,
    /// Audience rows read (good and rejected) and rejected so far.
    pub rows: u64,
    pub rejected: u64,
}

/// A recipient to add to the audience.
#[derive(Debug, Clone)]
pub struct NewRecipient {
    /// The row number (from 1; the file's line numbers are kept in `data`).
    pub row: u64,
    pub client_ref: Option<String>,
    /// The recipient as the gateway wrote it (JSON).
    pub data: String,
    /// When its first step is due (Unix ms).
    pub due_ms: i64,
}

/// What happened to a recipient so far, written by the runner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientState {
    /// Per step, the message sent (`None`: the step was skipped).
    #[serde(default, rename = "m")]
    pub messages: Vec<Option<String>>,
    /// Why it gets nothing more (`paid`, `opted_out`, `replied`, `cancelled`, …).
    #[serde(default, rename = "x", skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    /// Unix ms of its first message.
    #[serde(default, rename = "f", skip_serializing_if = "Option::is_none")]
    pub first_at: Option<i64>,
}

/// A recipient whose step is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueItem {
    pub row: u64,
    pub step: u32,
    /// The recipient as added (JSON).
    pub recipient: String,
    pub state: RecipientState,
    /// Events reported for it (`paid`, `replied`, `opted_out`).
    pub events: Vec<String>,
}

/// A batch of due recipients of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueBatch {
    /// Numbers batches of a partition; the same batch handed out again keeps it.
    pub seq: u64,
    pub items: Vec<DueItem>,
}

/// The outcome of one item of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDone {
    pub row: u64,
    pub step: u32,
    pub state: RecipientState,
    /// The next step and when it is due.
    pub next: Option<(u32, i64)>,
    /// Report counters to add one to.
    pub counts: Vec<String>,
}

/// A rejected audience row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    pub line: u64,
    pub reason: String,
    pub detail: String,
}

#[async_trait]
pub trait Campaigns: Send + Sync {
    /// Store a new campaign; false when the id exists.
    async fn create_campaign(&self, c: &CampaignMeta) -> Result<bool, StoreError>;

    async fn campaign(&self, tenant: &str, id: &str) -> Result<Option<CampaignMeta>, StoreError>;

    /// A tenant's campaign ids, sorted (oldest first: ids are ULIDs).
    async fn campaign_ids(&self, tenant: &str) -> Result<Vec<String>, StoreError>;

    /// Move a campaign from one of `from` to `to`; the state before, or `None`
    /// when it does not exist. Nothing changes unless it was in `from`.
    async fn set_campaign_state(
        &self,
        tenant: &str,
        id: &str,
        from: &[&str],
        to: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Campaigns the runners work on: (tenant, id) of every `running` one.
    async fn active_campaigns(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Add recipients (a row already there, or already past its first step,
    /// is left as it is, so uploading a file twice adds nothing) and rejected
    /// rows; `read` is the number of rows read so far, good and bad (the
    /// campaign's `rows` becomes the largest seen).
    async fn add_recipients(
        &self,
        id: &str,
        rows: &[NewRecipient],
        rejects: &[Reject],
        read: u64,
    ) -> Result<(), StoreError>;

    /// Rejected rows from `offset`, at most `max`.
    async fn rejects(&self, id: &str, offset: u64, max: u64) -> Result<Vec<Reject>, StoreError>;

    /// The unfinished batch of a partition, or a new one of at most `max`
    /// recipients due by `now_ms`; `None` when nothing is due.
    async fn begin_batch(
        &self,
        id: &str,
        partition: u16,
        now_ms: i64,
        max: usize,
    ) -> Result<Option<DueBatch>, StoreError>;

    /// Record a batch's outcome, atomically; false (and nothing written) when
    /// batch `seq` is no longer the partition's open batch (another runner
    /// finished it).
    async fn commit_batch(
        &self,
        id: &str,
        partition: u16,
        seq: u64,
        done: &[StepDone],
    ) -> Result<bool, StoreError>;

    /// Record an event (`paid`, `replied`, `opted_out`) for the recipient with
    /// `client_ref` at `at_ms`: `None` when the campaign has no such
    /// recipient, else whether it is new. A new one counts once in the report
    /// (`ev:<event>`, by day `ev:<event>:d<days since epoch>`, and its time
    /// since the recipient's first message in `ev:<event>:t<bucket>`, see
    /// [`time_bucket`]).
    async fn recipient_event(
        &self,
        id: &str,
        client_ref: &str,
        event: &str,
        at_ms: i64,
    ) -> Result<Option<bool>, StoreError>;

    /// Recipients with a step still due (or in an open batch).
    async fn pending(&self, id: &str) -> Result<u64, StoreError>;

    /// Drop every due step (a cancelled campaign) and return the ids of the
    /// messages each recipient got last, for cancelling those not yet sent.
    async fn drop_due(&self, id: &str) -> Result<Vec<String>, StoreError>;

    /// The report counters, summed over partitions.
    async fn campaign_counters(&self, id: &str) -> Result<BTreeMap<String, i64>, StoreError>;
}

/// The histogram bucket of a duration in seconds: `floor(4 × log2(s + 1))`,
/// so a bucket spans a factor of about 1.19 (the Lua scripts compute the same).
pub fn time_bucket(secs: f64) -> u32 {
    (4.0 * (secs.max(0.0) + 1.0).log2()).floor() as u32
}

/// The middle of a bucket, in seconds.
pub fn bucket_secs(bucket: u32) -> f64 {
    let lo = 2f64.powf(f64::from(bucket) / 4.0) - 1.0;
    let hi = 2f64.powf(f64::from(bucket + 1) / 4.0) - 1.0;
    (lo + hi) / 2.0
}

/// Days since the Unix epoch (UTC) of a Unix ms time: the `d<day>` of counters.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}
