//! Message identity, lifecycle and the one table of allowed status transitions.
//!
//! `accepted → scheduled? → queued → submitted → delivered | undeliverable | expired | failed`,
//! plus `read` (RCS, also after `delivered`), `rejected` and `held` (before queueing) and
//! `cancelled` (before submission). Final states never change, except that a delivered
//! RCS message may still be read. `submitted → queued` is the SMS fallback of an RCS
//! message the platform withdrew (revoked) before it was delivered.

use std::fmt;
use std::str::FromStr;

use goniec_config::Channel;
use serde::{Deserialize, Serialize};

/// A sortable message id (ULID, 26 characters, Crockford base32) in partition 0;
/// see [`new_message_id_in`].
pub fn new_message_id() -> String {
    new_message_id_in(0)
}

/// Where a message id keeps its partition: the top ten bits of the ULID's random
/// part, which are the 11th and 12th characters of its text form. Ids of one
/// partition stay strictly increasing within this process, even inside one
/// millisecond, so a recipient's history (which lives in one partition) ordered by
/// id is ordered by acceptance.
const PARTITION_SHIFT: u32 = 70;
const PARTITION_MASK: u128 = 0x3FF;

/// A new message id carrying `partition` (below 1024). A process-wide generator
/// is harmless to share between gateways in one process: ids stay unique and
/// ordered.
pub fn new_message_id_in(partition: u16) -> String {
    use std::sync::{Mutex, OnceLock};
    static GENERATOR: OnceLock<Mutex<ulid::Generator>> = OnceLock::new();
    let g = GENERATOR.get_or_init(|| Mutex::new(ulid::Generator::new()));
    let id = {
        let mut g = g.lock().unwrap_or_else(|p| p.into_inner());
        g.generate().unwrap_or_else(|_| ulid::Ulid::new())
    };
    let bits = (id.0 & !(PARTITION_MASK << PARTITION_SHIFT))
        | ((u128::from(partition) & PARTITION_MASK) << PARTITION_SHIFT);
    ulid::Ulid(bits).to_string()
}

/// The partition a message id carries (0 for text that is not an id).
pub fn partition_of(id: &str) -> u16 {
    ulid::Ulid::from_string(id).map_or(0, |u| ((u.0 >> PARTITION_SHIFT) & PARTITION_MASK) as u16)
}

/// True when `s` has the shape of a message id (so a bad path segment is a clean 404).
pub fn is_message_id(s: &str) -> bool {
    s.len() == 26 && ulid::Ulid::from_string(s).is_ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Accepted,
    Scheduled,
    Queued,
    Submitted,
    Delivered,
    Undeliverable,
    Expired,
    Failed,
    Read,
    Rejected,
    Held,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 12] = [
        Status::Accepted,
        Status::Scheduled,
        Status::Queued,
        Status::Submitted,
        Status::Delivered,
        Status::Undeliverable,
        Status::Expired,
        Status::Failed,
        Status::Read,
        Status::Rejected,
        Status::Held,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Scheduled => "scheduled",
            Status::Queued => "queued",
            Status::Submitted => "submitted",
            Status::Delivered => "delivered",
            Status::Undeliverable => "undeliverable",
            Status::Expired => "expired",
            Status::Failed => "failed",
            Status::Read => "read",
            Status::Rejected => "rejected",
            Status::Held => "held",
            Status::Cancelled => "cancelled",
        }
    }

    /// A final status never changes again (`delivered → read` is the one exception).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Delivered
                | Status::Undeliverable
                | Status::Expired
                | Status::Failed
                | Status::Read
                | Status::Rejected
                | Status::Cancelled
        )
    }

    /// The statuses a message may be in for a move to `self` to be allowed.
    pub fn allowed_from(self) -> &'static [Status] {
        use Status::*;
        match self {
            Accepted => &[],
            Scheduled => &[Accepted, Held],
            // From `submitted` only to fall back: an RCS message the platform
            // withdrew (revoked) goes out again by SMS. The stores allow it once
            // per message.
            Queued => &[Accepted, Scheduled, Held, Submitted],
            Submitted => &[Queued],
            Delivered | Undeliverable => &[Submitted],
            Expired => &[Scheduled, Queued, Submitted, Held],
            Failed => &[Queued, Submitted],
            Read => &[Submitted, Delivered],
            Rejected => &[Accepted, Held],
            Held => &[Accepted],
            Cancelled => &[Accepted, Scheduled, Queued, Held],
        }
    }

    /// Whether a message in `self` may move to `to`.
    pub fn can_move_to(self, to: Status) -> bool {
        to.allowed_from().contains(&self)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown status `{s}`"))
    }
}

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
    use Status::*;

    /// The full transition table: every (from, to) pair, checked against the
    /// lifecycle in DESIGN.md.
    #[test]
    fn transition_table() {
        let allowed: &[(Status, &[Status])] = &[
            (Accepted, &[Scheduled, Queued, Rejected, Held, Cancelled]),
            (Scheduled, &[Queued, Expired, Cancelled]),
            (Queued, &[Submitted, Expired, Failed, Cancelled]),
            (
                Submitted,
                &[Queued, Delivered, Undeliverable, Expired, Failed, Read],
            ),
            (Delivered, &[Read]),
            (Held, &[Scheduled, Queued, Expired, Rejected, Cancelled]),
            (Undeliverable, &[]),
            (Expired, &[]),
            (Failed, &[]),
            (Read, &[]),
            (Rejected, &[]),
            (Cancelled, &[]),
        ];
        for (from, tos) in allowed {
            for to in Status::ALL {
                assert_eq!(
                    from.can_move_to(to),
                    tos.contains(&to),
                    "{from} -> {to} should be {}",
                    if tos.contains(&to) {
                        "allowed"
                    } else {
                        "refused"
                    }
                );
            }
        }
    }

    #[test]
    fn final_states_only_move_to_read_from_delivered() {
        for from in Status::ALL.into_iter().filter(|s| s.is_final()) {
            for to in Status::ALL {
                if from.can_move_to(to) {
                    assert_eq!((from, to), (Delivered, Read));
                }
            }
        }
    }

    #[test]
    fn status_names_round_trip() {
        for st in Status::ALL {
            assert_eq!(st.as_str().parse::<Status>().unwrap(), st);
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{st}\""));
        }
        assert!("bogus".parse::<Status>().is_err());
    }

    #[test]
    fn message_ids_increase_within_a_millisecond() {
        let ids: Vec<String> = (0..1000).map(|_| new_message_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn message_ids_are_sortable_ulids() {
        let a = new_message_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_message_id();
        assert!(is_message_id(&a) && is_message_id(&b));
        assert!(a < b);
        assert!(!is_message_id("not-an-id"));
        for p in [0u16, 1, 7, 15, 1023] {
            let ids: Vec<String> = (0..200).map(|_| new_message_id_in(p)).collect();
            assert!(ids.iter().all(|i| partition_of(i) == p && is_message_id(i)));
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "partition {p} ids out of order"
            );
        }
        assert!(!is_message_id("01ARZ3NDEKTSV4RRFFQ69G5FA")); // 25 chars
    }

    #[test]
    fn timestamps_format_as_rfc3339_millis() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
    }
}
