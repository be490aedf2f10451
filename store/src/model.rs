//! Message identity, lifecycle and the one table of allowed status transitions.
//!
//! `accepted → scheduled? → queued → submitted → delivered | undeliverable | expired | failed`,
//! plus `read` (RCS, also after `delivered`), `rejected` and `held` (before queueing) and
//! `cancelled` (before submission). Final states never change, except that a delivered
//! RCS message may still be read. `submitted → queued` is the SMS fallback of an RCS
//! message the platform withdrew (revoked) before it was delivered.

use goniec_config::Channel;
pub use goniec_core::id::{is_message_id, new_message_id, new_message_id_in, partition_of};
pub use goniec_core::Status;
use serde::{Deserialize, Serialize};

/// One entry of a message's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub status: Status,
    /// Unix milliseconds.
    pub at: i64,
    /// Machine-readable reason (`max_attempts`, `SMPP 0x0000000B`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Extra detail (provider id, attempt number, part receipts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The immutable part of a message, written once at acceptance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageData {
    pub id: String,
    pub tenant: String,
    pub channel: Channel,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcs: Option<serde_json::Value>,
    /// Unix ms; absent = send now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<i64>,
    /// Unix ms; not submitted by then → `expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<Channel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_text: Option<String>,
    pub segments: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transliterated: bool,
    /// Unix ms.
    pub created_at: i64,
    /// The stored template (and its version) the content came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRef>,
    /// The campaign step that sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CampaignRef>,
}

/// A stored template's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRef {
    pub id: String,
    pub version: u32,
}

/// A message sent by a campaign: which campaign, which step (from 0), which recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignRef {
    pub id: String,
    pub step: u32,
    /// The recipient's row number in the audience (from 1, the header not counted).
    pub row: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailData {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentData>,
}

/// An e-mail attachment as the API took it (content kept base64, as sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentData {
    pub filename: String,
    pub content_type: String,
    /// Base64 (standard alphabet).
    pub content: String,
}

/// A stored message: its data, current status and history.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub data: MessageData,
    pub status: Status,
    pub events: Vec<Event>,
    /// Clicks on its tracked links (read with the record by `get`; zero
    /// where a caller does not need them, e.g. a lane's workers).
    pub clicks: crate::content::Clicks,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// RFC 3339 with milliseconds, UTC.
pub fn format_ms(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_rfc3339_millis() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
    }
}
