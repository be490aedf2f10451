//! What campaigns are made of, beside the messages themselves: stored
//! templates (every version kept), tracked links (short code → target, message)
//! and the clicks on them. Each concern is its own small trait; every backend
//! implements them and passes the conformance suite.
//!
//! Keys (Redis): a tenant's templates share the hash tag `{tpl:<tenant>}` (the
//! version counter and the list of ids change together); a link is one hash
//! under its code; a click is written to the message's record, in its
//! partition, by one script that also queues the `clicked` callback.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// One version of a stored template, as its JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTemplate {
    pub id: String,
    pub version: u32,
    /// The newest version of the template.
    pub latest: u32,
    /// The template as the gateway wrote it (JSON).
    pub doc: String,
}

/// Stored templates of each tenant, every version kept until the template is
/// deleted.
#[async_trait]
pub trait Templates: Send + Sync {
    /// Store `doc` as the next version of template `id` (1 for a new one) and
    /// return that version.
    async fn put_template(&self, tenant: &str, id: &str, doc: &str) -> Result<u32, StoreError>;

    /// Version `version` of a template, or its newest with `None`.
    async fn template(
        &self,
        tenant: &str,
        id: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredTemplate>, StoreError>;

    /// The ids of a tenant's templates, sorted.
    async fn template_ids(&self, tenant: &str) -> Result<Vec<String>, StoreError>;

    /// Delete a template with every version; false when there was none.
    async fn delete_template(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;
}

/// A tracked link: what its short code stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The code in the short URL (random, base62).
    #[serde(skip)]
    pub code: String,
    #[serde(rename = "t")]
    pub tenant: String,
    /// The message that carries the link.
    #[serde(rename = "m")]
    pub message_id: String,
    /// Where the link leads.
    #[serde(rename = "u")]
    pub target: String,
    /// Unix ms after which the code is unknown.
    #[serde(rename = "x")]
    pub expires_at: i64,
}

/// Who followed a link: a person, or software fetching it ahead of one (link
/// previews, mail security scanners).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClickKind {
    Human,
    Prefetch,
}

impl ClickKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClickKind::Human => "clicked",
            ClickKind::Prefetch => "prefetch",
        }
    }
}

/// One click to record on a message.
#[derive(Debug, Clone)]
pub struct Click {
    pub message_id: String,
    pub kind: ClickKind,
    /// Unix ms.
    pub at: i64,
    /// The `clicked` callback to queue when the message has callbacks for it
    /// (encoded [`crate::Task`]); only human clicks carry one.
    pub callback: Option<String>,
    /// The callback job's id: a new id in the message's partition.
    pub callback_id: String,
}

/// A message's clicks so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clicks {
    /// Human clicks.
    pub clicks: u64,
    /// Prefetches (previews, scanners).
    pub prefetches: u64,
    /// Unix ms of the first human click.
    pub first_click_at: Option<i64>,
    /// Unix ms of the last human click.
    pub last_click_at: Option<i64>,
}

/// What recording a click did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClickRecorded {
    /// Recorded; the message's clicks after it.
    Recorded(Clicks),
    /// The message is gone (past retention): nothing recorded.
    NoMessage,
}

/// Short links and their clicks.
#[async_trait]
pub trait Links: Send + Sync {
    /// Store new links (codes are random: a clash is as likely as guessing one).
    async fn put_links(&self, links: &[Link]) -> Result<(), StoreError>;

    /// The links behind codes, each `None` when unknown or expired at `now_ms`.
    async fn find_links(
        &self,
        codes: &[String],
        now_ms: i64,
    ) -> Result<Vec<Option<Link>>, StoreError>;

    /// Record clicks on their messages: the counts, a history event, and the
    /// callback when the message has one for `clicked`. One answer per click.
    async fn record_clicks(&self, clicks: &[Click]) -> Result<Vec<ClickRecorded>, StoreError>;
}
