//! What is screened: the channel, the message ([`Screening`]), and what
//! [`needs`](crate::needs) learns about it once for [`check`](crate::check)
//! ([`Prepared`]). Every rule module reads these; none of them defines them.

use crate::blocklist::Blocklist;
use jiff::Timestamp;

pub use goniec_core::Channel;

/// One message to screen, plus the gateway-wide context it is screened
/// against (the blocklist, the key salt). Borrowed, so building one costs
/// nothing; the same value must be passed to [`needs`] and [`check`].
#[derive(Debug, Clone, Copy)]
pub struct Screening<'a> {
    /// The tenant's name (appears in store keys).
    pub tenant: &'a str,
    /// The channel.
    pub channel: Channel,
    /// E.164 number (`+48601234567`) for SMS/RCS, e-mail address for e-mail.
    pub recipient: &'a str,
    /// The recipient already parsed by the caller's validation, if it has
    /// it; otherwise [`needs`] parses `recipient` (once: [`check`] reuses the
    /// result). Must be the same number as `recipient`.
    pub number: Option<&'a phonenumber::PhoneNumber>,
    /// The type of `number` (libphonenumber's `number_type`), if the caller
    /// has it already: one pass of its regexes fewer. Ignored without `number`.
    pub number_type: Option<phonenumber::Type>,
    /// The requested sender id, number or pool name, if any.
    pub sender: Option<&'a str>,
    /// Everything to scan for links: the SMS/RCS text (including card texts
    /// and suggestion URLs), or for e-mail the subject, text and HTML
    /// concatenated (with whitespace between them).
    pub text: &'a str,
    /// The text the duplicate check compares, when it is not `text`: a
    /// templated message's text with each tracked short link written as its
    /// target (every send gets link codes of its own, so the same reminder
    /// sent twice would never read as the same text). `None`: `text`.
    pub dup_text: Option<&'a str>,
    /// Now, from the gateway's clock: counter buckets and contact hours.
    pub now: Timestamp,
    /// The requested delivery time (`send_at`), if later than `now`: contact
    /// hours are checked at this moment instead.
    pub send_at: Option<Timestamp>,
    /// A random value from the caller, used by the `random` pool strategy
    /// (the crate has no random source of its own, so checks are repeatable).
    pub seed: u64,
    /// The phishing blocklist (e.g. from [`BlocklistHandle::get`](crate::BlocklistHandle::get)).
    pub blocklist: &'a Blocklist,
    /// A gateway-wide secret mixed into the digests in store keys, so that
    /// they cannot be reversed by enumerating phone numbers. All instances
    /// sharing a store must use the same salt; changing it starts all
    /// counters afresh (sticky pool assignments do not depend on it).
    pub key_salt: &'a [u8],
}

impl<'a> Screening<'a> {
    /// A message with no sender, no `send_at`, seed 0, an empty blocklist and
    /// no salt; set the other fields directly.
    pub fn new(
        tenant: &'a str,
        channel: Channel,
        recipient: &'a str,
        text: &'a str,
        now: Timestamp,
    ) -> Self {
        Screening {
            tenant,
            channel,
            recipient,
            number: None,
            number_type: None,
            sender: None,
            text,
            dup_text: None,
            now,
            send_at: None,
            seed: 0,
            blocklist: Blocklist::empty(),
            key_salt: b"",
        }
    }
}

/// A recipient's region as libphonenumber determines it (ISO 3166 alpha-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Region([u8; 2]);

impl Region {
    fn parse(id: &str) -> Option<Region> {
        match id.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Region([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// What was learnt about a phone recipient (parsed once, in [`needs`]).
#[derive(Debug, Clone)]
pub(crate) struct PhoneInfo {
    /// E.164 digits without `+`.
    pub digits: String,
    /// The number's region, if libphonenumber knows it.
    pub region: Option<Region>,
    /// The number's type; `None` if it did not parse.
    pub number_type: Option<phonenumber::Type>,
}

impl PhoneInfo {
    /// `parsed`: the number already parsed, with its type if known.
    pub(crate) fn analyse(
        normalised: &str,
        parsed: Option<(&phonenumber::PhoneNumber, Option<phonenumber::Type>)>,
    ) -> PhoneInfo {
        let digits: String = normalised.chars().filter(char::is_ascii_digit).collect();
        let db = &*phonenumber::metadata::DATABASE;
        let owned;
        let (number, known) = match parsed {
            Some(p) => p,
            None => match phonenumber::parse(None, normalised) {
                Ok(n) => {
                    owned = n;
                    (&owned, None)
                }
                Err(_) => {
                    return PhoneInfo {
                        digits,
                        region: None,
                        number_type: None,
                    }
                }
            },
        };
        PhoneInfo {
            digits,
            region: number.metadata(db).and_then(|m| Region::parse(m.id())),
            number_type: Some(known.unwrap_or_else(|| number.number_type(db))),
        }
    }

    pub(crate) fn is_mobile(&self) -> bool {
        matches!(
            self.number_type,
            Some(phonenumber::Type::Mobile | phonenumber::Type::FixedLineOrMobile)
        )
    }
}

/// What [`needs`] works out once and [`check`] reuses.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub now: Timestamp,
    /// Identifies the screening, to catch `Counters` of another message.
    pub fingerprint: u64,
    /// `+digits` for phones, lower-cased address for e-mail.
    pub recipient: String,
    /// For SMS/RCS.
    pub phone: Option<PhoneInfo>,
}
