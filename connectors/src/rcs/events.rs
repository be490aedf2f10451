//! The RBM platform's webhook posts: delivery events and recipients' messages.
//!
//! RBM pushes through Cloud Pub/Sub: the body is
//! `{"message":{"data":"<base64 JSON>","messageId":"…","publishTime":"…"},"subscription":"…"}`
//! and the header `X-Goog-Signature` is
//! `base64(HMAC-SHA512(client_token, base64-decoded message.data))`. The gateway's
//! `POST /v1/webhooks/rcs` handler calls [`parse_push`], checks the signature of
//! the decoded data with [`verify`] (the agent's client token is the key), then
//! acts on the [`Event`]; [`Event::receipt`] turns delivery events into
//! [`Receipt`]s. The simulator builds the same posts with [`push_body`] and
//! [`sign`].

use std::time::SystemTime;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha512;

use crate::{Receipt, ReceiptState};

/// The header carrying the signature of a push.
pub const SIGNATURE_HEADER: &str = "X-Goog-Signature";

/// Standard base64, padded or not (Pub/Sub pads; be lenient on what we read).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a webhook body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The body is not JSON (or not a JSON object).
    #[error("the push body is not a JSON object: {0}")]
    NotJson(String),
    /// There is no `message.data` string.
    #[error("the push body has no `message.data` string")]
    NoData,
    /// `message.data` is not base64.
    #[error("`message.data` is not base64: {0}")]
    NotBase64(String),
    /// The decoded data is not an RBM event or user message.
    #[error("`message.data` is not an RBM event or user message: {0}")]
    NotEvent(String),
}

/// What the platform reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The message reached the recipient's device.
    Delivered {
        /// The agent message id: the Goniec message id the connector sent.
        message_id: String,
        /// The recipient (E.164).
        phone: String,
        at: SystemTime,
        /// The platform's event id (for de-duplication).
        event_id: String,
    },
    /// The recipient opened the message.
    Read {
        message_id: String,
        phone: String,
        at: SystemTime,
        event_id: String,
    },
    /// The recipient is typing.
    IsTyping {
        phone: String,
        at: SystemTime,
        event_id: String,
    },
    /// The recipient blocked or left the agent (`UNSUBSCRIBE`): an opt-out.
    Unsubscribe {
        phone: String,
        at: SystemTime,
        event_id: String,
    },
    /// A message from the recipient: text, a tapped suggestion, or another
    /// kind (location, file) with neither.
    UserMessage {
        /// The user's message id (not one of ours).
        message_id: String,
        phone: String,
        /// Typed text, or the tapped suggestion's text.
        text: Option<String>,
        /// The tapped suggestion's `postbackData`.
        postback: Option<String>,
        at: SystemTime,
    },
    /// Anything else (`SUBSCRIBE`, new event types): acknowledged, ignored.
    Other {
        /// The event type, or `message` for a user message of no known shape.
        kind: String,
    },
}

impl Event {
    /// When the platform says the event happened (`None` for [`Event::Other`]).
    pub fn at(&self) -> Option<SystemTime> {
        match self {
            Event::Delivered { at, .. }
            | Event::Read { at, .. }
            | Event::IsTyping { at, .. }
            | Event::Unsubscribe { at, .. }
            | Event::UserMessage { at, .. } => Some(*at),
            Event::Other { .. } => None,
        }
    }

    /// A delivery receipt for `connector` when this is `DELIVERED` or `READ`;
    /// the provider id is the message id the connector sent (see
    /// [`crate::rcs::connector`]).
    pub fn receipt(&self, connector: &str) -> Option<Receipt> {
        let (state, message_id, at) = match self {
            Event::Delivered { message_id, at, .. } => (ReceiptState::Delivered, message_id, at),
            Event::Read { message_id, at, .. } => (ReceiptState::Read, message_id, at),
            _ => return None,
        };
        Some(Receipt {
            connector: connector.to_string(),
            provider_id: message_id.clone(),
            state,
            at: *at,
            error: None,
            stored: None,
        })
    }
}

/// `base64(HMAC-SHA512(client_token, data))`: the `X-Goog-Signature` of `data`.
pub fn sign(client_token: &str, data: &[u8]) -> String {
    let mut mac = mac(client_token);
    mac.update(data);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `signature_b64` is the signature of `data` under `client_token`
/// (compared in constant time).
pub fn verify(client_token: &str, data: &[u8], signature_b64: &str) -> bool {
    let Ok(signature) = LENIENT_BASE64.decode(signature_b64.trim()) else {
        return false;
    };
    let mut mac = mac(client_token);
    mac.update(data);
    mac.verify_slice(&signature).is_ok()
}

fn mac(client_token: &str) -> Hmac<Sha512> {
    // HMAC takes keys of any length; this cannot fail.
    <Hmac<Sha512> as Mac>::new_from_slice(client_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// A Pub/Sub push body carrying `data` (what the platform, and the simulator, post).
pub fn push_body(data: &[u8], pubsub_message_id: &str) -> Vec<u8> {
    let now = jiff::Timestamp::now().to_string();
    json!({
        "message": {
            "data": STANDARD.encode(data),
            "messageId": pubsub_message_id,
            "publishTime": now,
        },
        "subscription": "projects/rbm/subscriptions/rbm-agent",
    })
    .to_string()
    .into_bytes()
}

#[derive(Deserialize)]
struct Push {
    message: Option<PushMessage>,
}

#[derive(Deserialize)]
struct PushMessage {
    data: Option<String>,
}

/// Reads a push body: the decoded `message.data` (what the signature covers)
/// and the event it holds.
pub fn parse_push(body: &[u8]) -> Result<(Vec<u8>, Event), EventError> {
    let push: Push =
        serde_json::from_slice(body).map_err(|e| EventError::NotJson(e.to_string()))?;
    let data = push
        .message
        .and_then(|m| m.data)
        .ok_or(EventError::NoData)?;
    let data = LENIENT_BASE64
        .decode(data.trim())
        .map_err(|e| EventError::NotBase64(e.to_string()))?;
    let event = parse_event(&data)?;
    Ok((data, event))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    sender_phone_number: Option<String>,
    event_type: Option<String>,
    event_id: Option<String>,
    message_id: Option<String>,
    send_time: Option<String>,
    text: Option<String>,
    suggestion_response: Option<SuggestionResponse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SuggestionResponse {
    postback_data: Option<String>,
    text: Option<String>,
}

/// Reads the decoded data of a push: an RBM event or user message.
pub fn parse_event(data: &[u8]) -> Result<Event, EventError> {
    let raw: Raw = serde_json::from_slice(data).map_err(|e| EventError::NotEvent(e.to_string()))?;
    let at = raw
        .send_time
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or_else(SystemTime::now, SystemTime::from);
    let phone = |what: &str| {
        raw.sender_phone_number
            .clone()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| EventError::NotEvent(format!("{what} without senderPhoneNumber")))
    };
    let message_id = |what: &str| {
        raw.message_id
            .clone()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| EventError::NotEvent(format!("{what} without messageId")))
    };
    let event_id = raw.event_id.clone().unwrap_or_default();
    if let Some(kind) = raw.event_type.as_deref() {
        return Ok(match kind {
            "DELIVERED" => Event::Delivered {
                message_id: message_id("a DELIVERED event")?,
                phone: phone("a DELIVERED event")?,
                at,
                event_id,
            },
            "READ" => Event::Read {
                message_id: message_id("a READ event")?,
                phone: phone("a READ event")?,
                at,
                event_id,
            },
            "IS_TYPING" => Event::IsTyping {
                phone: phone("an IS_TYPING event")?,
                at,
                event_id,
            },
            "UNSUBSCRIBE" => Event::Unsubscribe {
                phone: phone("an UNSUBSCRIBE event")?,
                at,
                event_id,
            },
            other => Event::Other {
                kind: other.to_string(),
            },
        });
    }
    if raw.sender_phone_number.is_none() && raw.message_id.is_none() {
        return Err(EventError::NotEvent(
            "neither an event (eventType) nor a user message (senderPhoneNumber, messageId)".into(),
        ));
    }
    let suggestion = raw.suggestion_response.as_ref();
    Ok(Event::UserMessage {
        message_id: message_id("a user message")?,
        phone: phone("a user message")?,
        text: raw
            .text
            .clone()
            .or_else(|| suggestion.and_then(|s| s.text.clone())),
        postback: suggestion.and_then(|s| s.postback_data.clone()),
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const TOKEN: &str = "client-token-0123456789";

    fn push(event: serde_json::Value) -> Vec<u8> {
        push_body(event.to_string().as_bytes(), "pubsub-1")
    }

    #[test]
    fn signatures() {
        let data = br#"{"eventType":"DELIVERED"}"#;
        let sig = sign(TOKEN, data);
        assert!(verify(TOKEN, data, &sig));
        assert!(!verify("another-token-0123456", data, &sig));
        assert!(!verify(TOKEN, br#"{"eventType":"READ"}"#, &sig));
        let mut bytes = STANDARD.decode(&sig).unwrap();
        bytes[0] ^= 1;
        assert!(!verify(TOKEN, data, &STANDARD.encode(bytes)));
        assert!(!verify(TOKEN, data, "not base64!"));
        assert!(!verify(TOKEN, data, ""));
        // Known answer (RFC 4231-style HMAC-SHA512 of a fixed input).
        assert_eq!(sign("key", b"The quick brown fox jumps over the lazy dog"),
            "tCrwkFe6weLUFwjkipAuCbX/fxKrQopP6GZTxz3SSPuC+UilSfe3kaW0GRXuTR7Dk1NX5OIxclDQNyr6Lr7rOg==");
    }

    #[test]
    fn delivered_and_read() {
        let body = push(
            json!({"senderPhoneNumber":"+48500100200","eventType":"DELIVERED",
            "eventId":"ev-1","messageId":"01J0MSG","sendTime":"2026-03-01T10:00:00.5Z","agentId":"a"}),
        );
        let (data, event) = parse_push(&body).unwrap();
        assert!(String::from_utf8(data).unwrap().contains("DELIVERED"));
        let at = UNIX_EPOCH + Duration::from_millis(1_772_359_200_500);
        assert_eq!(
            event,
            Event::Delivered {
                message_id: "01J0MSG".into(),
                phone: "+48500100200".into(),
                at,
                event_id: "ev-1".into()
            }
        );
        let receipt = event.receipt("rbm").unwrap();
        assert_eq!(
            (receipt.provider_id.as_str(), receipt.state),
            ("01J0MSG", ReceiptState::Delivered)
        );
        let (_, read) = parse_push(&push(json!({"senderPhoneNumber":"+48500100200",
            "eventType":"READ","eventId":"ev-2","messageId":"01J0MSG"})))
        .unwrap();
        assert!(matches!(&read, Event::Read { message_id, .. } if message_id == "01J0MSG"));
        assert_eq!(read.receipt("rbm").unwrap().state, ReceiptState::Read);
    }

    #[test]
    fn typing_unsubscribe_and_others() {
        let (_, e) = parse_push(&push(json!({"senderPhoneNumber":"+48500100200",
            "eventType":"IS_TYPING","eventId":"ev-3"})))
        .unwrap();
        assert!(matches!(e, Event::IsTyping { ref phone, .. } if phone == "+48500100200"));
        assert!(e.receipt("rbm").is_none());
        let (_, e) = parse_push(&push(json!({"senderPhoneNumber":"+48500100200",
            "eventType":"UNSUBSCRIBE","eventId":"ev-4"})))
        .unwrap();
        assert!(matches!(e, Event::Unsubscribe { ref event_id, .. } if event_id == "ev-4"));
        let (_, e) = parse_push(&push(json!({"senderPhoneNumber":"+48500100200",
            "eventType":"SUBSCRIBE","eventId":"ev-5"})))
        .unwrap();
        assert_eq!(
            e,
            Event::Other {
                kind: "SUBSCRIBE".into()
            }
        );
    }

    #[test]
    fn user_messages() {
        let (_, e) = parse_push(&push(json!({"senderPhoneNumber":"+48500100200",
            "messageId":"user-1","sendTime":"2026-03-01T10:00:00Z","agentId":"a","text":"STOP"})))
        .unwrap();
        assert!(
            matches!(e, Event::UserMessage { ref text, postback: None, .. } if text.as_deref() == Some("STOP"))
        );
        let (_, e) = parse_push(&push(
            json!({"senderPhoneNumber":"+48500100200","messageId":"user-2",
            "suggestionResponse":{"postbackData":"pay","text":"Zapłacę","type":"REPLY"}}),
        ))
        .unwrap();
        match e {
            Event::UserMessage {
                message_id,
                text,
                postback,
                ..
            } => {
                assert_eq!(message_id, "user-2");
                assert_eq!(text.as_deref(), Some("Zapłacę"));
                assert_eq!(postback.as_deref(), Some("pay"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        assert!(matches!(parse_push(b"nope"), Err(EventError::NotJson(_))));
        assert!(matches!(parse_push(b"[1,2]"), Err(EventError::NotJson(_))));
        assert_eq!(parse_push(br#"{"message":{}}"#), Err(EventError::NoData));
        assert_eq!(
            parse_push(br#"{"subscription":"x"}"#),
            Err(EventError::NoData)
        );
        assert!(matches!(
            parse_push(br#"{"message":{"data":"***"}}"#),
            Err(EventError::NotBase64(_))
        ));
        assert!(matches!(
            parse_push(&push_body(b"not json", "1")),
            Err(EventError::NotEvent(_))
        ));
        assert!(matches!(
            parse_push(&push_body(b"{}", "1")),
            Err(EventError::NotEvent(_))
        ));
        let e = parse_push(&push(
            json!({"eventType":"DELIVERED","senderPhoneNumber":"+48500100200"}),
        ));
        assert!(matches!(e, Err(EventError::NotEvent(ref m)) if m.contains("messageId")));
    }
}
