//! RCS content (text and/or the `rcs` object, checked as the platform would)
//! and the SMS fallback of an RCS message.

use goniec_config::Channel;
use goniec_core::Problem;

use super::is_blank;
use crate::accept::invalid::Invalid;
use goniec_connectors::rcs::content::MAX_TEXT as MAX_TEXT_CHARS;

/// Check an RCS message's text and rich content.
pub(super) fn body(text: Option<&str>, rcs: Option<&serde_json::Value>) -> Result<(), Invalid> {
    if text.is_none_or(is_blank) && rcs.is_none() {
        return Err(Invalid::new(
            Problem::MissingField,
            "an RCS message needs `text` or `rcs` content",
        )
        .field("text"));
    }
    if text.is_some_and(|t| t.chars().count() > MAX_TEXT_CHARS) {
        return Err(Invalid::new(
            Problem::TextTooLong,
            format!("RCS text is limited to {MAX_TEXT_CHARS} characters"),
        )
        .field("text"));
    }
    if rcs.is_some_and(|r| !r.is_object()) {
        return Err(Invalid::new(Problem::InvalidType, "`rcs` must be an object").field("rcs"));
    }
    goniec_connectors::rcs::content::validate(text, rcs)
        .map_err(|e| Invalid::new(Problem::InvalidRcs, e.reason).field(&e.field))
}

/// The channels a message falls back to: `["sms"]` on an RCS message only,
/// with an SMS text (`fallback_text`, or the message's own `text`).
pub(super) fn fallback(
    channel: Channel,
    fallback: Option<Vec<Channel>>,
    fallback_text: Option<&str>,
    text: Option<&str>,
) -> Result<Vec<Channel>, Invalid> {
    let fallback = fallback.unwrap_or_default();
    if fallback.contains(&channel) {
        return Err(Invalid::new(
            Problem::InvalidValue,
            "`fallback` cannot name the message's own channel",
        )
        .field("fallback"));
    }
    if !fallback.is_empty() && (channel != Channel::Rcs || fallback != [Channel::Sms]) {
        return Err(Invalid::new(
            Problem::InvalidValue,
            "`fallback` is supported from rcs to sms only: `\"fallback\": [\"sms\"]` on an RCS message",
        )
        .field("fallback"));
    }
    if let Some(ft) = fallback_text {
        if fallback.is_empty() {
            return Err(Invalid::new(
                Problem::ConflictingFields,
                "`fallback_text` needs `\"fallback\": [\"sms\"]`",
            )
            .field("fallback_text"));
        }
        if ft.trim().is_empty() || ft.chars().count() > 1600 {
            return Err(Invalid::new(
                Problem::InvalidValue,
                "`fallback_text` must be 1 to 1600 characters of SMS text",
            )
            .field("fallback_text"));
        }
    }
    if !fallback.is_empty() && fallback_text.is_none() && text.is_none_or(|t| t.trim().is_empty()) {
        return Err(Invalid::new(
            Problem::MissingField,
            "an SMS fallback needs `fallback_text` (or the message's `text`)",
        )
        .field("fallback_text"));
    }
    Ok(fallback)
}
