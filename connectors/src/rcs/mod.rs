//! RCS over Google's RCS Business Messaging (RBM) REST API.
//!
//! * [`auth`]: the OAuth2 service-account flow (an RS256-signed JWT exchanged
//!   for a bearer token), cached and refreshed single-flight.
//! * [`content`]: checks the API's `rcs` object (rich cards, carousels, files,
//!   suggestions) and builds RBM's `contentMessage` from it; the gateway calls
//!   [`content::validate`] at the API so bad content is refused with the field
//!   named, before it is queued.
//! * [`connector`]: the [`Connector`](crate::Connector): send
//!   (`agentMessages.create`, idempotent on the Goniec message id), capability
//!   checks with a bounded cache, revoke (`agentMessages.delete`), and the
//!   classification of every platform answer into a
//!   [`DeliveryError`](crate::DeliveryError).
//! * [`events`]: the platform's webhook posts (Pub/Sub push bodies signed with
//!   `X-Goog-Signature`): verification and parsing into [`events::Event`]s.

pub mod auth;
pub mod config;
pub mod connector;
pub mod content;
pub mod events;
mod reply;

/// `DeliveryError::Permanent` code of a number that cannot receive RCS (the
/// platform answered 404, or the capability cache says so): the message is not
/// sent, and a fallback channel may take it.
pub const UNREACHABLE: &str = "rcs_unreachable";

/// `DeliveryError::Permanent` code of content the platform would refuse.
pub const INVALID_MESSAGE: &str = "invalid_message";

/// Whether `s` is an E.164 number: `+`, a non-zero digit, then 1 to 14 digits.
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Percent-encodes one URL path segment or query value (everything but RFC 3986
/// unreserved characters), so `+48…` travels as `%2B48…`.
pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_shape() {
        assert!(is_e164("+48501234567"));
        assert!(is_e164("+12"));
        assert!(!is_e164("48501234567"));
        assert!(!is_e164("+048501234567"));
        assert!(!is_e164("+4850123456789012"));
        assert!(!is_e164("+48 501"));
        assert!(!is_e164("+"));
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(encode_component("+48501234567"), "%2B48501234567");
        assert_eq!(encode_component("agent-1_a.b~"), "agent-1_a.b~");
        assert_eq!(encode_component("a b/c?"), "a%20b%2Fc%3F");
    }
}
