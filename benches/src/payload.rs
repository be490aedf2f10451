//! Message bodies for the load: deterministic in the sequence number `n`, so a
//! run is reproducible and every message can be traced back (`client_ref`).

use clap::ValueEnum;
use serde::Serialize;

/// Polish mobile ranges (first two digits of the 9-digit national number).
/// Rotating through several ranges exercises prefix routing, not just one route.
pub const MOBILE_PREFIXES: [&str; 12] = [
    "50", "51", "53", "57", "60", "66", "69", "72", "73", "78", "79", "88",
];

/// Seven digits follow the two-digit range prefix.
const SUBSCRIBERS_PER_PREFIX: u64 = 10_000_000;

/// How many distinct numbers `phone_number` can produce; `--count` is capped at
/// this so that no two messages of a run share a recipient.
pub const DISTINCT_NUMBERS: u64 = MOBILE_PREFIXES.len() as u64 * SUBSCRIBERS_PER_PREFIX;

/// How recipients are drawn from the `DISTINCT_NUMBERS` space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipients {
    /// `n` itself: consecutive numbers per range (what the anti-fraud rules
    /// against sequential numbers and prefix pumping are made to catch).
    Sequential,
    /// A seeded permutation `n → (a·n + b) mod N`: every number distinct, spread
    /// over all ranges and subscriber blocks like a real debtor list.
    Random { a: u64, b: u64 },
    /// A mobile of every region in turn (libphonenumber's example numbers):
    /// traffic to many countries, which exercises every region's number ranges.
    World,
}

/// The example mobile of every region that libphonenumber takes as a mobile,
/// in a fixed order.
fn world_numbers() -> &'static [String] {
    static WORLD: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        use phonenumber::{metadata::DATABASE, Type};
        let mut all: Vec<String> = DATABASE
            .iter()
            .filter_map(|m| {
                let raw = format!(
                    "+{}{}",
                    m.country_code(),
                    m.descriptors().mobile()?.example()?
                );
                let num = phonenumber::parse(None, &raw).ok()?;
                matches!(
                    num.number_type(&DATABASE),
                    Type::Mobile | Type::FixedLineOrMobile
                )
                .then_some(raw)
            })
            .collect();
        all.sort();
        all.dedup();
        all
    });
    &WORLD
}

impl Recipients {
    /// A random permutation from `seed` (the same seed gives the same numbers).
    pub fn random(seed: u64) -> Self {
        // SplitMix64: two well-mixed words from one seed.
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        // N = 2^9 * 3 * 5^7: `a` coprime to it makes `a·n + b` a bijection mod N.
        let mut a = next() % DISTINCT_NUMBERS;
        while a < 1_000_000 || a.is_multiple_of(2) || a.is_multiple_of(3) || a.is_multiple_of(5) {
            a = next() % DISTINCT_NUMBERS;
        }
        Recipients::Random {
            a,
            b: next() % DISTINCT_NUMBERS,
        }
    }

    /// The phone number of recipient index `r`.
    pub fn phone(self, r: u64) -> String {
        match self {
            Recipients::World => {
                let all = world_numbers();
                all[(r % all.len() as u64) as usize].clone()
            }
            _ => phone_number(r),
        }
    }

    /// The recipient index of message `n`.
    pub fn index(self, n: u64) -> u64 {
        match self {
            Recipients::Sequential | Recipients::World => n,
            Recipients::Random { a, b } => {
                let n = u128::from(n % DISTINCT_NUMBERS);
                ((n * u128::from(a) + u128::from(b)) % u128::from(DISTINCT_NUMBERS)) as u64
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Channel {
    Sms,
    Email,
    Rcs,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Email => "email",
            Channel::Rcs => "rcs",
        }
    }
}

/// E.164 Polish mobile number for sequence number `n`.
///
/// `n -> (n % 12, n / 12)` is a bijection on `0..DISTINCT_NUMBERS`, so numbers
/// are distinct within a run while consecutive messages still spread over all
/// ranges.
pub fn phone_number(n: u64) -> String {
    let n = n % DISTINCT_NUMBERS;
    // The index is < 12, so the cast cannot truncate.
    let prefix = MOBILE_PREFIXES[(n % MOBILE_PREFIXES.len() as u64) as usize];
    let subscriber = n / MOBILE_PREFIXES.len() as u64;
    format!("+48{prefix}{subscriber:07}")
}

#[derive(Debug, Serialize, PartialEq)]
pub struct EmailPart {
    pub subject: String,
    pub html: String,
}

/// One item of `POST /v1/messages` (or of the batch's `messages` array).
#[derive(Debug, Serialize, PartialEq)]
pub struct Message {
    pub channel: &'static str,
    pub to: String,
    pub text: String,
    pub client_ref: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailPart>,
}

/// Body of `POST /v1/messages/batch`.
#[derive(Debug, Serialize)]
pub struct Batch<'a> {
    pub messages: &'a [Message],
}

/// ASCII only, so the filler can be cut at any byte and the HTML lands on
/// exactly `--body-size` bytes.
const FILLER: &str = "Saldo rachunku i lista operacji za okres rozliczeniowy. ";
const HTML_TAIL: &str = "</p></body></html>";

/// Builds the message bodies of one run.
#[derive(Debug, Clone)]
pub struct Payloads {
    channel: Channel,
    body_size: usize,
    recipients: Recipients,
}

impl Payloads {
    pub fn new(channel: Channel, body_size: usize) -> Self {
        Self {
            channel,
            body_size,
            recipients: Recipients::Sequential,
        }
    }

    /// Draw recipients this way instead of sequentially.
    pub fn with_recipients(mut self, recipients: Recipients) -> Self {
        self.recipients = recipients;
        self
    }

    pub fn message(&self, n: u64) -> Message {
        let client_ref = format!("load-{n}");
        let r = self.recipients.index(n);
        match self.channel {
            Channel::Sms => Message {
                channel: "sms",
                to: self.recipients.phone(r),
                text: format!("Dzień dobry, przypominamy o płatności 120,50 zł. Ref {n}"),
                client_ref,
                email: None,
            },
            Channel::Rcs => Message {
                channel: "rcs",
                to: self.recipients.phone(r),
                text: format!("Dzień dobry, Twoja przesyłka nr {n} jest już w drodze."),
                client_ref,
                email: None,
            },
            Channel::Email => Message {
                channel: "email",
                to: format!("user{r}@example.com"),
                text: format!("Wyciąg {n} - wersja tekstowa."),
                client_ref,
                email: Some(EmailPart {
                    subject: format!("Wyciąg {n}"),
                    html: email_html(n, self.body_size),
                }),
            },
        }
    }

    /// Messages `start..end` (one HTTP request's worth).
    pub fn messages(&self, start: u64, end: u64) -> Vec<Message> {
        (start..end).map(|n| self.message(n)).collect()
    }
}

/// HTML part of exactly `body_size` bytes (UTF-8), or the bare skeleton when
/// `body_size` is smaller than that: realistic statement mails are tens of KiB
/// and the body size is what stresses the store and the SMTP path.
pub fn email_html(n: u64, body_size: usize) -> String {
    let head = format!("<html><body><h1>Wyciąg {n}</h1><p>");
    let pad = body_size.saturating_sub(head.len() + HTML_TAIL.len());
    let mut html = String::with_capacity(head.len() + pad + HTML_TAIL.len());
    html.push_str(&head);
    let mut left = pad;
    while left > 0 {
        let take = left.min(FILLER.len());
        html.push_str(&FILLER[..take]);
        left -= take;
    }
    html.push_str(HTML_TAIL);
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn phone_numbers_have_polish_mobile_shape() {
        for n in (0..10_000).chain([DISTINCT_NUMBERS - 1, 123_456_789]) {
            let p = phone_number(n);
            assert_eq!(p.len(), 12, "{p}");
            assert!(p.starts_with("+48"), "{p}");
            assert!(p[1..].bytes().all(|b| b.is_ascii_digit()), "{p}");
            assert!(MOBILE_PREFIXES.contains(&&p[3..5]), "{p}");
        }
    }

    #[test]
    fn phone_numbers_are_distinct() {
        let n = 200_000;
        let set: HashSet<String> = (0..n).map(phone_number).collect();
        assert_eq!(set.len() as u64, n);
        // Also around the far end of the space, where the subscriber part is large.
        let top: HashSet<String> = (DISTINCT_NUMBERS - 1000..DISTINCT_NUMBERS)
            .map(phone_number)
            .collect();
        assert_eq!(top.len(), 1000);
        assert!(top.is_disjoint(&set));
    }

    #[test]
    fn random_recipients_are_distinct_and_spread() {
        let r = Recipients::random(42);
        assert_eq!(r, Recipients::random(42), "a seed repeats its run");
        assert_ne!(r, Recipients::random(43));
        let n = 100_000;
        let numbers: Vec<String> = (0..n).map(|i| phone_number(r.index(i))).collect();
        let set: HashSet<&String> = numbers.iter().collect();
        assert_eq!(set.len() as u64, n, "a permutation never repeats a number");
        // Spread: every range, and no run of neighbours in one block of 100
        // (what the sequential-number rule looks for).
        let ranges: HashSet<&str> = numbers.iter().map(|p| &p[3..5]).collect();
        assert_eq!(ranges.len(), MOBILE_PREFIXES.len());
        let blocks: HashSet<&str> = numbers[..1000].iter().map(|p| &p[..10]).collect();
        assert!(
            blocks.len() > 990,
            "{} blocks of 100 in 1000 numbers",
            blocks.len()
        );
        // Still a bijection at the top of the space.
        let top: HashSet<u64> = (DISTINCT_NUMBERS - 1000..DISTINCT_NUMBERS)
            .map(|i| r.index(i))
            .collect();
        assert_eq!(top.len(), 1000);
    }

    #[test]
    fn phone_numbers_use_every_prefix() {
        let prefixes: HashSet<String> = (0..12).map(|n| phone_number(n)[3..5].to_owned()).collect();
        assert_eq!(prefixes.len(), MOBILE_PREFIXES.len());
    }

    #[test]
    fn world_recipients_are_mobiles_of_many_regions() {
        let r = Recipients::World;
        let numbers: HashSet<String> = (0..300).map(|n| r.phone(r.index(n))).collect();
        assert!(numbers.len() > 200, "{}", numbers.len());
        let codes: HashSet<u16> = numbers
            .iter()
            .map(|n| phonenumber::parse(None, n).unwrap().country().code())
            .collect();
        assert!(codes.len() > 150, "{}", codes.len());
    }

    #[test]
    fn phone_numbers_are_valid_mobile_per_libphonenumber() {
        for n in (0..120).chain([DISTINCT_NUMBERS - 1, 99_999_999]) {
            let p = phone_number(n);
            let parsed = phonenumber::parse(None, &p).unwrap();
            assert!(phonenumber::is_valid(&parsed), "{p}");
            assert_eq!(
                parsed.number_type(&phonenumber::metadata::DATABASE),
                phonenumber::Type::Mobile,
                "{p}"
            );
        }
    }

    #[test]
    fn sms_body_matches_the_api() {
        let m = Payloads::new(Channel::Sms, 10_240).message(13);
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "channel": "sms",
                "to": "+48510000001",
                "text": "Dzień dobry, przypominamy o płatności 120,50 zł. Ref 13",
                "client_ref": "load-13",
            })
        );
    }

    #[test]
    fn rcs_body_has_no_email_part() {
        let v = serde_json::to_value(Payloads::new(Channel::Rcs, 0).message(1)).unwrap();
        assert_eq!(v["channel"], "rcs");
        assert_eq!(v["to"], phone_number(1));
        assert!(v.get("email").is_none());
        assert!(v["text"].as_str().unwrap().contains('1'));
    }

    #[test]
    fn email_body_is_padded_to_body_size() {
        let p = Payloads::new(Channel::Email, 10_240);
        for n in [0, 9, 12_345, 99_999_999] {
            let v = serde_json::to_value(p.message(n)).unwrap();
            assert_eq!(v["channel"], "email");
            assert_eq!(v["to"], format!("user{n}@example.com"));
            assert_eq!(v["email"]["subject"], format!("Wyciąg {n}"));
            let html = v["email"]["html"].as_str().unwrap();
            assert_eq!(html.len(), 10_240);
            assert!(html.starts_with("<html>") && html.ends_with("</html>"));
            assert!(v["text"].is_string());
        }
    }

    #[test]
    fn email_html_never_shorter_than_its_skeleton() {
        let tiny = email_html(5, 0);
        assert!(tiny.starts_with("<html>") && tiny.ends_with("</html>"));
        assert_eq!(email_html(5, tiny.len()), tiny);
        assert_eq!(email_html(5, tiny.len() + 1).len(), tiny.len() + 1);
        assert_eq!(email_html(5, 1_000_003).len(), 1_000_003);
    }

    #[test]
    fn batch_serializes_as_messages_array() {
        let p = Payloads::new(Channel::Sms, 0);
        let msgs = p.messages(10, 13);
        let v = serde_json::to_value(Batch { messages: &msgs }).unwrap();
        let arr = v["messages"].as_array().unwrap();
        assert_eq!(arr.len(), 3);
        assert_eq!(arr[0]["client_ref"], "load-10");
        assert_eq!(arr[2]["client_ref"], "load-12");
    }
}
