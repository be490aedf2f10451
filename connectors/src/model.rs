//! What goes out to a provider and what comes back.

use std::time::{Duration, SystemTime};

use goniec_core::Channel;

/// A message ready for a connector.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Goniec's message id (a ULID); providers that accept a client id get it (idempotent retries).
    pub message_id: String,
    pub channel: Channel,
    /// E.164 number or e-mail address.
    pub to: String,
    /// Sender id, number or address; `None` lets the connector choose.
    pub from: Option<String>,
    /// Text body (SMS, RCS text, e-mail plain part).
    pub text: Option<String>,
    /// E-mail specifics.
    pub email: Option<EmailContent>,
    /// RCS content as the API received it.
    pub rcs: Option<serde_json::Value>,
    /// How many attempts came before this one (0 on the first).
    pub attempt: u32,
    /// When the message stops being worth delivering (RCS `expireTime`).
    pub valid_until: Option<SystemTime>,
}

#[derive(Debug, Clone)]
pub struct EmailContent {
    pub subject: String,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// The `List-Unsubscribe` value (`<mailto:…>, <https://…>`), if the tenant
    /// has one, and whether the URL takes RFC 8058 one-click posts.
    pub list_unsubscribe: Option<String>,
    pub one_click: bool,
    /// The tenant's DKIM signer.
    pub dkim: Option<std::sync::Arc<lettre::message::dkim::DkimConfig>>,
}

/// A file attached to an e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// The provider accepted the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The provider's id for it (SMSC message id, RBM message name, SMTP queue id);
    /// receipts are matched on it. For a multipart SMS, the first part's id.
    pub provider_id: String,
    /// Every id receipts may carry for this message (one per SMS part), normalised
    /// the way the connector normalises receipt ids; includes `provider_id`. Empty
    /// when the provider's events carry our message id itself (RCS): then nothing
    /// needs to be looked up, so no mapping is stored.
    pub provider_ids: Vec<String>,
    /// Parts the provider was handed (SMS segments), 1 otherwise.
    pub parts: u32,
    /// The provider's ids exactly as it wrote them (not normalised), one per part,
    /// for asking it later what became of the message ([`crate::Connector::query`]:
    /// SMPP `query_sm` must repeat the id byte for byte). Empty when the connector
    /// cannot be asked.
    pub query_ids: Vec<String>,
}

impl Submitted {
    /// A submission the provider knows by our message id, which its events carry.
    pub fn by_message_id(message_id: String) -> Self {
        Submitted {
            provider_id: message_id,
            provider_ids: Vec::new(),
            parts: 1,
            query_ids: Vec::new(),
        }
    }

    /// A single-part submission.
    pub fn single(provider_id: String) -> Self {
        Submitted {
            provider_ids: vec![provider_id.clone()],
            provider_id,
            parts: 1,
            query_ids: Vec::new(),
        }
    }
}

/// Why a submit did not succeed. Each protocol maps its codes here, once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The provider asked us to slow down; retry later, never fail for this.
    #[error("throttled by provider")]
    Throttled { retry_after: Option<Duration> },
    /// The connector cannot take messages right now (no bind/connection is up);
    /// retry later without counting an attempt against the message.
    #[error("connector unavailable: {reason}")]
    Unavailable { reason: String },
    /// No answer in time: the provider may or may not have the message. Retried;
    /// counted apart because a retry may deliver it twice.
    #[error("no answer in time (possible duplicate on retry): {reason}")]
    Uncertain { reason: String },
    /// A fault that may pass (connection lost, timeout, 4xx SMTP, 5xx HTTP); retry.
    #[error("transient failure: {reason}")]
    Transient { reason: String },
    /// The provider refused the message for good; do not retry.
    #[error("permanent failure {code}: {reason}")]
    Permanent { code: String, reason: String },
}

impl DeliveryError {
    pub fn is_retryable(&self) -> bool {
        !matches!(self, DeliveryError::Permanent { .. })
    }

    /// Whether this failure counts against the message's attempts. Throttling and a
    /// connector outage say nothing about the message: they never make it fail.
    pub fn counts_as_attempt(&self) -> bool {
        !matches!(
            self,
            DeliveryError::Throttled { .. } | DeliveryError::Unavailable { .. }
        )
    }

    /// A short bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DeliveryError::Throttled { .. } => "throttled",
            DeliveryError::Unavailable { .. } => "unavailable",
            DeliveryError::Uncertain { .. } => "uncertain",
            DeliveryError::Transient { .. } => "transient",
            DeliveryError::Permanent { .. } => "permanent",
        }
    }
}

/// A delivery report from a provider.
#[derive(Debug)]
pub struct Receipt {
    /// The connector that received it.
    pub connector: String,
    /// The provider id from [`Submitted`].
    pub provider_id: String,
    pub state: ReceiptState,
    pub at: SystemTime,
    /// The provider's error code/text, kept for the sender.
    pub error: Option<String>,
    /// Signalled once the receipt is stored; a connector whose protocol acknowledges
    /// receipts (SMPP `deliver_sm_resp`) waits for it, so a crash in between makes
    /// the provider send the receipt again. Dropped unsignalled = not stored.
    pub stored: Option<tokio::sync::oneshot::Sender<()>>,
}

/// What a provider says about a message it accepted when asked
/// ([`crate::Connector::query`]), in receipt terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryAnswer {
    /// [`ReceiptState::Pending`]: it still holds the message (ENROUTE, ACCEPTED);
    /// [`ReceiptState::Unknown`]: it does not know the id (any more), or cannot say.
    pub state: ReceiptState,
    /// The provider's error or state text, kept for the sender (as a receipt's).
    pub error: Option<String>,
}

/// A message from a recipient (an SMS reply, mobile originated; an RCS user message).
#[derive(Debug)]
pub struct InboundMessage {
    /// The connector that received it.
    pub connector: String,
    /// `sms`, or `rcs` for a message to an RCS agent.
    pub channel: Channel,
    /// The sender: E.164 with `+` for international numbers, else as received.
    pub from: String,
    /// The address it was sent to (one of the tenant's numbers or short codes; the
    /// agent id for RCS).
    pub to: String,
    pub text: String,
    /// The postback data of the suggestion the user tapped (RCS).
    pub postback: Option<String>,
    pub at: SystemTime,
    /// Signalled once it is handled; as with [`Receipt::stored`].
    pub stored: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiptState {
    Delivered,
    Undeliverable,
    Expired,
    Rejected,
    Read,
    /// Intermediate (accepted/enroute): recorded as an event, status unchanged.
    Pending,
    Unknown,
}

impl ReceiptState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptState::Delivered => "delivered",
            ReceiptState::Undeliverable => "undeliverable",
            ReceiptState::Expired => "expired",
            ReceiptState::Rejected => "rejected",
            ReceiptState::Read => "read",
            ReceiptState::Pending => "pending",
            ReceiptState::Unknown => "unknown",
        }
    }
}

/// A connector's current state, for `/readyz` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Up,
    /// Working but impaired (some binds down).
    Degraded(String),
    Down(String),
}

impl Health {
    pub fn is_up(&self) -> bool {
        !matches!(self, Health::Down(_))
    }
}

/// One bind or connection of a connector, as the operator console shows it.
/// Read from counters the connection keeps anyway: cheap, no I/O.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BindStatus {
    /// `bind 1 (transceiver)`, `bind 2 (receiver)`, or the connection's name.
    pub name: String,
    /// `up`, `throttled` (the SMSC asked us to slow down), `stalled` (it stopped
    /// reading) or `down`.
    pub state: &'static str,
    /// Why it is down or stalled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unix ms of the last change between up and down (0: unknown).
    pub since_ms: i64,
    /// Requests sent and not yet answered.
    pub in_flight: usize,
    /// The congestion window now (narrowed by throttling) and its configured size.
    pub window: usize,
    pub max_window: usize,
    /// Average answer time of recent submits, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_ms: Option<f64>,
    /// Throttle answers received since start.
    pub throttles: u64,
    /// The current pause after throttling, in ms (0: none).
    pub pause_ms: u64,
    /// Established binds lost since start.
    pub reconnects: u64,
    /// While down: the wait before the next connect attempt, in ms (0: none).
    pub reconnect_in_ms: u64,
}

impl BindStatus {
    /// A connection known only by its health.
    pub fn from_health(name: &str, h: &Health) -> Self {
        let (state, reason) = match h {
            Health::Up => ("up", None),
            Health::Degraded(r) => ("up", Some(r.clone())),
            Health::Down(r) => ("down", Some(r.clone())),
        };
        BindStatus {
            name: name.to_string(),
            state,
            reason,
            since_ms: 0,
            in_flight: 0,
            window: 0,
            max_window: 0,
            response_ms: None,
            throttles: 0,
            pause_ms: 0,
            reconnects: 0,
            reconnect_in_ms: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_failures_use_up_attempts() {
        let throttled = DeliveryError::Throttled { retry_after: None };
        let down = DeliveryError::Unavailable {
            reason: "no bind".into(),
        };
        let flaky = DeliveryError::Transient {
            reason: "timeout".into(),
        };
        let refused = DeliveryError::Permanent {
            code: "x".into(),
            reason: "y".into(),
        };
        assert!(!throttled.counts_as_attempt() && !down.counts_as_attempt());
        assert!(flaky.counts_as_attempt() && refused.counts_as_attempt());
        assert!(down.is_retryable() && !refused.is_retryable());
    }
}
