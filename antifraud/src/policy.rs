//! A tenant's anti-fraud and contact policy.
//!
//! Plain structs with `Default` (the built-in defaults below) and serde
//! `Deserialize` with `deny_unknown_fields`, so the config crate can embed
//! [`TenantPolicy`] as a table. Durations are `std::time::Duration` and are
//! (de)serialised as humantime strings (`"10m"`, `"24h"`) by this crate.
//! Merging global defaults with tenant overrides is the caller's job: the
//! simplest way is to deep-merge the TOML tables before deserialising. Call
//! [`TenantPolicy::normalize`] once after loading: it normalises the lists
//! (domains to punycode, prefixes to digits, country codes upper-case,
//! holidays sorted) and returns every problem with its key path.

use crate::hours::{DayHours, HolidayCalendar};
use crate::links;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// `collection` (default): every rule. `transactional`: contact hours and
/// frequency caps do not apply; the fraud rules (links, senders, recipients,
/// pumping, duplicates) and opt-outs still do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// Debt collection and other contact-regulated traffic.
    #[default]
    Collection,
    /// Notifications the recipient expects (OTPs, receipts).
    Transactional,
}

/// One tenant's policy.
///
/// `Default` is the built-in defaults (every rule on, `collection`). Serde:
/// every key optional, unknown keys rejected (`deny_unknown_fields`; so do
/// not embed it with `#[serde(flatten)]`, which disables that), durations as
/// humantime strings (`"10m"`, `"24h"`, via [`humantime_serde`]), hours as
/// `"08:00-20:00"` / `"closed"`, dates as `"YYYY-MM-DD"`. Merging global
/// defaults with tenant overrides is the caller's job; the simplest way is to
/// deep-merge the TOML tables before deserialising. Call
/// [`normalize`](Self::normalize) once after loading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantPolicy {
    /// Which contact rules apply.
    pub policy: PolicyKind,
    /// Registered senders: SMS/RCS sender ids (alphanumeric names, numbers),
    /// e-mail addresses (`name@domain`) and e-mail domains (`@domain`: any
    /// address there, not subdomains). A message may name one of these, a
    /// pool, or a pool's number; anything else is rejected
    /// (`sender_not_registered`), also when nothing is registered: then no
    /// sender may be chosen and the connector's default applies. Compared
    /// ASCII-case-insensitively, ignoring spaces.
    pub senders: Vec<String>,
    /// Named pools of numbers to pick a sender from.
    pub sender_pools: Vec<SenderPool>,
    /// The pool used for SMS that name no sender.
    pub default_pool: Option<String>,
    /// Link rules.
    pub links: LinkPolicy,
    /// Recipient number rules (SMS and RCS).
    pub recipients: RecipientPolicy,
    /// Pumping (artificially inflated traffic) rules (SMS and RCS).
    pub pumping: PumpingPolicy,
    /// Duplicate rule.
    pub duplicates: DuplicatePolicy,
    /// Contact hours and frequency caps (`collection` only).
    pub contact: ContactPolicy,
}

impl Default for TenantPolicy {
    fn default() -> Self {
        TenantPolicy {
            policy: PolicyKind::Collection,
            senders: Vec::new(),
            sender_pools: Vec::new(),
            default_pool: None,
            links: LinkPolicy::default(),
            recipients: RecipientPolicy::default(),
            pumping: PumpingPolicy::default(),
            duplicates: DuplicatePolicy::default(),
            contact: ContactPolicy::default(),
        }
    }
}

/// How a sender is picked from a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolStrategy {
    /// The same recipient always gets the same number (rendezvous hashing of
    /// recipient and number: stable across processes and releases; adding a
    /// number moves only the recipients the new number wins). Default, so a
    /// recipient can reply to the number they know.
    #[default]
    Sticky,
    /// Numbers in turn, from a counter in the store (approximate across
    /// concurrent gateway instances).
    RoundRobin,
    /// Uniformly at random, from [`Screening::seed`](crate::Screening::seed).
    Random,
}

/// A named pool of sender numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderPool {
    /// The name a message uses as its `from`.
    pub name: String,
    /// The numbers (at least one).
    pub numbers: Vec<String>,
    /// How a number is picked.
    #[serde(default)]
    pub strategy: PoolStrategy,
}

/// The public URL shorteners held by default.
pub const DEFAULT_SHORTENERS: &[&str] = &[
    "bit.ly",
    "bitly.com",
    "j.mp",
    "tinyurl.com",
    "t.co",
    "goo.gl",
    "ow.ly",
    "is.gd",
    "v.gd",
    "buff.ly",
    "cutt.ly",
    "rebrand.ly",
    "shorturl.at",
    "tiny.cc",
    "tiny.pl",
    "t.ly",
    "s.id",
    "rb.gy",
    "bit.do",
    "shorte.st",
    "adf.ly",
    "bl.ink",
    "lnkd.in",
    "qrco.de",
    "u.to",
    "clck.ru",
];

/// Link rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkPolicy {
    /// Allow links through public URL shorteners (off: hold `url_shortener`).
    pub allow_shorteners: bool,
    /// Allow links whose host is an IP address instead of a name (off: hold
    /// `ip_address_link`). Addresses on the blocklist are rejected either way.
    pub allow_ip_links: bool,
    /// The shortener domains (subdomains included). Default:
    /// [`DEFAULT_SHORTENERS`].
    pub shorteners: Vec<String>,
    /// The tenant's own payment domains (subdomains included): links to them
    /// are never held or rejected by the link rules. Entries are compared
    /// case-insensitively; IDN entries must be converted by
    /// [`TenantPolicy::normalize`] (as must IDN shortener entries).
    pub payment_domains: Vec<String>,
    /// The host of the tenant's own short links (`[tenants.links] domain`, a
    /// name or an address), never held or rejected. Set from that key, not
    /// written in this table.
    #[serde(skip)]
    pub own_link_host: Option<String>,
}

impl Default for LinkPolicy {
    fn default() -> Self {
        LinkPolicy {
            allow_shorteners: false,
            allow_ip_links: false,
            shorteners: DEFAULT_SHORTENERS.iter().map(|s| (*s).to_owned()).collect(),
            payment_domains: Vec::new(),
            own_link_host: None,
        }
    }
}

/// Premium-rate prefixes rejected by default (E.164 digits): Polish
/// premium-rate numbers (+48 70x) and the international premium-rate and
/// shared-cost codes (+979, +881, +882 satellite/international networks
/// often used for pumping).
pub const DEFAULT_PREMIUM_PREFIXES: &[&str] = &["4870", "979", "881", "882"];

/// Recipient number rules (SMS and RCS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecipientPolicy {
    /// ISO 3166 alpha-2 codes the tenant may send to (the number's region as
    /// libphonenumber determines it); empty = all.
    pub allowed_countries: Vec<String>,
    /// E.164 digit prefixes (`"+48700"` or `"48700"`) that are rejected.
    pub blocked_prefixes: Vec<String>,
    /// Premium-rate prefixes, rejected as `premium_rate`; numbers that
    /// libphonenumber classifies as premium-rate are rejected as well.
    /// Default: [`DEFAULT_PREMIUM_PREFIXES`].
    pub premium_prefixes: Vec<String>,
    /// Reject SMS/RCS to numbers that are not valid mobile numbers.
    pub require_mobile: bool,
}

impl Default for RecipientPolicy {
    fn default() -> Self {
        RecipientPolicy {
            allowed_countries: Vec::new(),
            blocked_prefixes: Vec::new(),
            premium_prefixes: DEFAULT_PREMIUM_PREFIXES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            require_mobile: true,
        }
    }
}

/// Pumping (artificially inflated traffic) rules. See the crate docs for how
/// they work with counters only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PumpingPolicy {
    /// Prefix and country rules on or off.
    pub enabled: bool,
    /// The short window traffic is measured in (10 buckets).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// The trailing window whose average per short window is the baseline
    /// (24 buckets).
    #[serde(with = "humantime_serde")]
    pub baseline: Duration,
    /// Destination prefix length in E.164 digits, country code included.
    pub prefix_len: u8,
    /// Hold when more than this many messages (this one included) go to one
    /// prefix in the window…
    pub prefix_floor: u32,
    /// …and more than this multiple of the prefix's baseline.
    pub prefix_multiple: f64,
    /// Hold when more than this many messages (this one included) go to one
    /// country in the window…
    pub country_floor: u32,
    /// …and more than this multiple of the country's baseline.
    pub country_multiple: f64,
    /// Countries (ISO codes) exempt from the country rule, e.g. the tenant's
    /// home country when its bulk runs are bursty.
    pub exempt_countries: Vec<String>,
    /// Sequential-number rule.
    pub sequential: SequentialPolicy,
}

impl Default for PumpingPolicy {
    fn default() -> Self {
        PumpingPolicy {
            enabled: true,
            window: Duration::from_secs(600),
            baseline: Duration::from_secs(86_400),
            prefix_len: 6,
            prefix_floor: 100,
            prefix_multiple: 5.0,
            country_floor: 500,
            country_multiple: 5.0,
            exempt_countries: Vec::new(),
            sequential: SequentialPolicy::default(),
        }
    }
}

/// Sequential-number bursts: many distinct numbers that share all but their
/// last `block_digits` digits, within `window`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SequentialPolicy {
    /// On or off.
    pub enabled: bool,
    /// The window (10 buckets).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Trailing digits that vary within a block (1–4).
    pub block_digits: u8,
    /// Hold when this many distinct numbers of one block (this one included)
    /// were messaged within the window.
    pub threshold: u32,
}

impl Default for SequentialPolicy {
    fn default() -> Self {
        SequentialPolicy {
            enabled: true,
            window: Duration::from_secs(300),
            block_digits: 2,
            threshold: 10,
        }
    }
}

/// Duplicate rule: the same text to the same recipient within `window`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DuplicatePolicy {
    /// On or off (off for OTP-like traffic that repeats texts legitimately).
    pub enabled: bool,
    /// The window (10 buckets).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for DuplicatePolicy {
    fn default() -> Self {
        DuplicatePolicy {
            enabled: true,
            window: Duration::from_secs(3600),
        }
    }
}

/// Contact hours and frequency caps (`collection` policy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContactPolicy {
    /// IANA time zone for recipients whose zone is not known: e-mail, and
    /// numbers of countries outside the built-in map and `time_zones`.
    pub default_time_zone: String,
    /// Time zone per country (ISO code), overriding the built-in map of EU
    /// countries, e.g. `{ ES = "Atlantic/Canary" }`.
    pub time_zones: BTreeMap<String, String>,
    /// Monday to Friday.
    pub weekdays: DayHours,
    /// Saturday.
    pub saturday: DayHours,
    /// Sunday and holidays.
    pub sunday: DayHours,
    /// Built-in holidays (`"pl"` or `"none"`), treated like Sunday.
    pub holidays: HolidayCalendar,
    /// More holidays, `"YYYY-MM-DD"`.
    pub extra_holidays: Vec<Date>,
    /// At most this many messages per recipient in any 24 hours (rolling,
    /// not calendar days, in hourly buckets: a message counts for 24 to 25
    /// hours); none = no cap.
    pub max_per_day: Option<u32>,
    /// At most this many per recipient in any 7 days (rolling, in daily UTC
    /// buckets: a message counts for 7 to 8 days); none = no cap.
    pub max_per_week: Option<u32>,
}

/// Monday to Friday, 08:00–20:00.
pub const DEFAULT_WEEKDAYS: DayHours = match DayHours::new((8, 0), (20, 0)) {
    Some(h) => h,
    None => DayHours::CLOSED,
};
/// Saturday, 10:00–16:00.
pub const DEFAULT_SATURDAY: DayHours = match DayHours::new((10, 0), (16, 0)) {
    Some(h) => h,
    None => DayHours::CLOSED,
};

impl ContactPolicy {
    /// `None` when `at_ms` (Unix ms) is inside the contact hours in the
    /// default time zone; otherwise the next moment (Unix ms) that is. For
    /// senders that pace many recipients at once (campaigns); each message is
    /// still checked in its recipient's own zone when it is accepted.
    pub fn next_allowed_ms(&self, at_ms: i64) -> Option<i64> {
        let tz = crate::zones::resolve(&self.default_time_zone)?;
        let at = jiff::Timestamp::from_millisecond(at_ms).ok()?;
        let schedule = crate::hours::Schedule {
            weekdays: self.weekdays,
            saturday: self.saturday,
            sunday: self.sunday,
            calendar: self.holidays,
            extra: &self.extra_holidays,
        };
        schedule.next_allowed(at, &tz).map(|t| t.as_millisecond())
    }
}

impl Default for ContactPolicy {
    fn default() -> Self {
        ContactPolicy {
            default_time_zone: "Europe/Warsaw".to_owned(),
            time_zones: BTreeMap::new(),
            weekdays: DEFAULT_WEEKDAYS,
            saturday: DEFAULT_SATURDAY,
            sunday: DayHours::CLOSED,
            holidays: HolidayCalendar::Pl,
            extra_holidays: Vec::new(),
            max_per_day: Some(3),
            max_per_week: Some(10),
        }
    }
}

/// One problem in a policy, with the path of the offending key relative to
/// the policy table (e.g. `pumping.prefix_len`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyError {
    /// Key path, e.g. `sender_pools[0].numbers`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl TenantPolicy {
    /// Normalises the lists in place and checks the policy, returning every
    /// problem (an empty policy is valid):
    ///
    /// - domains (`links.*`) to lower-case punycode without trailing dot;
    /// - prefixes to digits (`"+48 700"` → `"48700"`);
    /// - country codes to upper case; they must be ISO codes libphonenumber
    ///   knows;
    /// - time zones must resolve (system database, else the bundled one);
    /// - `extra_holidays` sorted and deduplicated;
    /// - pools non-empty, unique names, `default_pool` exists;
    /// - windows at least one second, multiples at least 1, some day open.
    pub fn normalize(&mut self) -> Result<(), Vec<PolicyError>> {
        let mut errors = Vec::new();
        let mut err = |path: String, message: String| errors.push(PolicyError { path, message });

        // Senders and pools.
        for (i, s) in self.senders.iter().enumerate() {
            if s.trim().is_empty() {
                err(format!("senders[{i}]"), "empty sender".into());
            }
        }
        for (i, pool) in self.sender_pools.iter().enumerate() {
            if pool.name.trim().is_empty() {
                err(format!("sender_pools[{i}].name"), "empty pool name".into());
            }
            if pool.numbers.is_empty() {
                err(
                    format!("sender_pools[{i}].numbers"),
                    "a pool needs at least one number".into(),
                );
            }
            if self.sender_pools[..i].iter().any(|p| p.name == pool.name) {
                err(
                    format!("sender_pools[{i}].name"),
                    format!("duplicate pool `{}`", pool.name),
                );
            }
        }
        if let Some(def) = &self.default_pool {
            if !self.sender_pools.iter().any(|p| &p.name == def) {
                err(
                    "default_pool".into(),
                    format!("no sender pool named `{def}`"),
                );
            }
        }

        // Domains.
        for (field, list) in [
            ("links.shorteners", &mut self.links.shorteners),
            ("links.payment_domains", &mut self.links.payment_domains),
        ] {
            for (i, d) in list.iter_mut().enumerate() {
                match links::normalize_domain(d) {
                    Some(n) => *d = n,
                    None => err(
                        format!("{field}[{i}]"),
                        format!("`{d}` is not a domain name"),
                    ),
                }
            }
        }

        // Prefixes.
        for (field, list) in [
            (
                "recipients.blocked_prefixes",
                &mut self.recipients.blocked_prefixes,
            ),
            (
                "recipients.premium_prefixes",
                &mut self.recipients.premium_prefixes,
            ),
        ] {
            for (i, p) in list.iter_mut().enumerate() {
                let digits: String = p
                    .chars()
                    .filter(|c| !matches!(c, ' ' | '-' | '+'))
                    .collect();
                if digits.is_empty()
                    || digits.len() > 15
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    err(
                        format!("{field}[{i}]"),
                        format!("`{p}` is not an E.164 digit prefix"),
                    );
                } else {
                    *p = digits;
                }
            }
        }

        // Countries.
        for (field, list) in [
            (
                "recipients.allowed_countries",
                &mut self.recipients.allowed_countries,
            ),
            (
                "pumping.exempt_countries",
                &mut self.pumping.exempt_countries,
            ),
        ] {
            for (i, c) in list.iter_mut().enumerate() {
                let up = c.trim().to_ascii_uppercase();
                if up.parse::<phonenumber::country::Id>().is_err() {
                    err(
                        format!("{field}[{i}]"),
                        format!("`{c}` is not an ISO 3166 country code"),
                    );
                } else {
                    *c = up;
                }
            }
        }
        let zones = std::mem::take(&mut self.contact.time_zones);
        for (c, zone) in zones {
            let up = c.trim().to_ascii_uppercase();
            if up.parse::<phonenumber::country::Id>().is_err() {
                err(
                    format!("contact.time_zones.{c}"),
                    format!("`{c}` is not an ISO 3166 country code"),
                );
            }
            if crate::zones::resolve(&zone).is_none() {
                err(
                    format!("contact.time_zones.{c}"),
                    format!("unknown time zone `{zone}`"),
                );
            }
            self.contact.time_zones.insert(up, zone);
        }
        if crate::zones::resolve(&self.contact.default_time_zone).is_none() {
            err(
                "contact.default_time_zone".into(),
                format!("unknown time zone `{}`", self.contact.default_time_zone),
            );
        }
        self.contact.extra_holidays.sort_unstable();
        self.contact.extra_holidays.dedup();
        if self.contact.weekdays.is_closed()
            && self.contact.saturday.is_closed()
            && self.contact.sunday.is_closed()
        {
            err(
                "contact".into(),
                "every day is closed: no message could ever be delivered".into(),
            );
        }
        if self.contact.max_per_day == Some(0) || self.contact.max_per_week == Some(0) {
            err(
                "contact".into(),
                "a frequency cap of 0 blocks every message; omit it instead".into(),
            );
        }

        // Windows and thresholds.
        for (path, d) in [
            ("pumping.window", self.pumping.window),
            ("pumping.baseline", self.pumping.baseline),
            ("pumping.sequential.window", self.pumping.sequential.window),
            ("duplicates.window", self.duplicates.window),
        ] {
            if d.as_secs() < 1 {
                err(path.into(), "must be at least 1s".into());
            }
        }
        if self.pumping.baseline <= self.pumping.window {
            err(
                "pumping.baseline".into(),
                "must be longer than pumping.window".into(),
            );
        }
        if !(2..=15).contains(&self.pumping.prefix_len) {
            err("pumping.prefix_len".into(), "must be 2 to 15 digits".into());
        }
        for (path, m) in [
            ("pumping.prefix_multiple", self.pumping.prefix_multiple),
            ("pumping.country_multiple", self.pumping.country_multiple),
        ] {
            if !(m.is_finite() && m >= 1.0) {
                err(path.into(), "must be a number of at least 1".into());
            }
        }
        if !(1..=4).contains(&self.pumping.sequential.block_digits) {
            err(
                "pumping.sequential.block_digits".into(),
                "must be 1 to 4".into(),
            );
        }
        if self.pumping.sequential.threshold < 2 {
            err(
                "pumping.sequential.threshold".into(),
                "must be at least 2".into(),
            );
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Serde adapter for `Duration` as a humantime string (`"10m"`, `"24h"`).
pub mod humantime_serde {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;
    use std::time::Duration;

    /// Writes `d` as e.g. `"10m"`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    /// Reads `"30s"`, `"10m"`, `"24h"`, `"7days"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"10m\" or \"24h\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
                humantime::parse_duration(s).map_err(|e| {
                    E::custom(format!(
                        "invalid duration `{s}`: {e} (examples: \"30s\", \"10m\", \"24h\")"
                    ))
                })
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let mut p = TenantPolicy::default();
        assert_eq!(p.normalize(), Ok(()));
        assert_eq!(p, TenantPolicy::default());
    }

    #[test]
    fn toml_round_trip_and_unknown_fields() {
        let text = r#"
            policy = "transactional"
            senders = ["ACME", "+48500100200"]
            default_pool = "windykacja"

            [[sender_pools]]
            name = "windykacja"
            numbers = ["+48500100201", "+48500100202"]
            strategy = "round_robin"

            [links]
            allow_shorteners = true
            payment_domains = ["Pay.ACME.pl.", "zapłać.pl"]

            [recipients]
            allowed_countries = ["pl", "DE"]
            blocked_prefixes = ["+48 700"]

            [pumping]
            window = "15m"
            prefix_floor = 20

            [pumping.sequential]
            threshold = 5

            [duplicates]
            enabled = false

            [contact]
            weekdays = "09:00-19:00"
            sunday = "closed"
            extra_holidays = ["2026-12-31", "2026-12-30"]
            max_per_day = 2
            time_zones = { es = "Atlantic/Canary" }
        "#;
        let mut p: TenantPolicy = toml::from_str(text).unwrap();
        assert_eq!(p.policy, PolicyKind::Transactional);
        assert_eq!(p.sender_pools[0].strategy, PoolStrategy::RoundRobin);
        assert_eq!(p.pumping.window, Duration::from_secs(900));
        assert_eq!(p.pumping.prefix_len, 6, "unset keys keep their defaults");
        assert_eq!(p.contact.weekdays.to_string(), "09:00-19:00");
        assert_eq!(p.normalize(), Ok(()));
        assert_eq!(
            p.links.payment_domains,
            ["pay.acme.pl", "xn--zapa-ota66a.pl"]
        );
        assert_eq!(p.recipients.allowed_countries, ["PL", "DE"]);
        assert_eq!(p.recipients.blocked_prefixes, ["48700"]);
        assert_eq!(p.contact.time_zones["ES"], "Atlantic/Canary");
        assert_eq!(p.contact.extra_holidays[0].to_string(), "2026-12-30");
        // Serialises back to something that parses to the same policy.
        let again: TenantPolicy = toml::from_str(&toml::to_string(&p).unwrap()).unwrap();
        assert_eq!(again, p);

        let err = toml::from_str::<TenantPolicy>("polcy = \"collection\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = toml::from_str::<TenantPolicy>("[pumping]\nwindow = 5").unwrap_err();
        assert!(err.to_string().contains("duration"), "{err}");
        let err = toml::from_str::<TenantPolicy>("[contact]\nweekdays = \"20-8\"").unwrap_err();
        assert!(err.to_string().contains("invalid hours"), "{err}");
    }

    #[test]
    fn normalize_reports_every_problem_with_its_path() {
        let mut p = TenantPolicy {
            default_pool: Some("nope".into()),
            sender_pools: vec![SenderPool {
                name: "p".into(),
                numbers: vec![],
                strategy: PoolStrategy::Sticky,
            }],
            ..TenantPolicy::default()
        };
        p.links.payment_domains = vec!["not a domain".into()];
        p.recipients.allowed_countries = vec!["XX".into()];
        p.recipients.blocked_prefixes = vec!["+48abc".into()];
        p.pumping.prefix_len = 1;
        p.pumping.prefix_multiple = 0.5;
        p.pumping.window = Duration::ZERO;
        p.pumping.sequential.block_digits = 0;
        p.contact.default_time_zone = "Mars/Olympus".into();
        p.contact.weekdays = DayHours::CLOSED;
        p.contact.saturday = DayHours::CLOSED;
        p.contact.max_per_day = Some(0);
        let errors = p.normalize().unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for want in [
            "sender_pools[0].numbers",
            "default_pool",
            "links.payment_domains[0]",
            "recipients.blocked_prefixes[0]",
            "recipients.allowed_countries[0]",
            "contact.default_time_zone",
            "contact",
            "pumping.window",
            "pumping.prefix_len",
            "pumping.prefix_multiple",
            "pumping.sequential.block_digits",
        ] {
            assert!(paths.contains(&want), "missing {want} in {errors:?}");
        }
        assert!(errors
            .iter()
            .any(|e| e.to_string().starts_with("default_pool: no sender pool")));
    }
}
