//! Anti-fraud rules, verdicts and contact policy for Goniec.
//!
//! Pure logic: no I/O of its own, no clock, no randomness, no async. The
//! gateway asks which counters a message needs, reads them from its store
//! in one batched round trip, gets a verdict, and — if the message is stored
//! — applies the verdict's increments in one batched round trip:
//!
//! ```
//! use goniec_antifraud::{check, needs, Blocklist, Channel, Decision, MemoryCounters, Screening, TenantPolicy};
//! use jiff::Timestamp;
//!
//! let blocklist = Blocklist::parse("# CERT Polska\nevil.pl\n");
//! let policy = TenantPolicy::default();
//! let mut store = MemoryCounters::new();
//! // Tuesday 10:00 in Warsaw.
//! let now: Timestamp = "2026-03-10T09:00:00Z".parse().unwrap();
//! let mut msg = Screening::new("acme", Channel::Sms, "+48601234567",
//!     "Dzień dobry, prosimy o wpłatę 120,50 zł: https://pay.acme.pl/f/123", now);
//! msg.blocklist = &blocklist;
//!
//! let needs = needs(&msg, &policy);          // which counters, which buckets
//! let counters = store.snapshot(needs);      // the store's one read round trip
//! let verdict = check(&msg, &policy, &counters);
//! assert_eq!(verdict.decision, Decision::Allow);
//! store.apply(&verdict.record, now);         // the store's one write round trip
//!
//! msg.text = "Zapłać na evil.pl/x";
//! let verdict = check(&msg, &policy, &store.snapshot(goniec_antifraud::needs(&msg, &policy)));
//! assert_eq!(verdict.decision, Decision::Reject);
//! assert_eq!(verdict.reasons[0].as_str(), "blocklisted_domain");
//! ```
//!
//! # Rules
//!
//! Every rule runs; every [`ReasonCode`] that fires is reported and the
//! [`Decision`] is the most severe one. The recipient rules, pumping and
//! sequential numbers apply to SMS and RCS only.
//!
//! 1. **Links** ([`extract_domains`]): every domain linked from the text,
//!    or a parent of it, on the [`Blocklist`] → reject `blocklisted_domain`;
//!    on the shortener list (unless allowed) → hold `url_shortener`. Links to
//!    the tenant's `payment_domains` (and subdomains) are exempt. A link
//!    whose host is an IP address (in any notation a browser accepts) on the
//!    blocklist → reject `blocklisted_domain`; any other IP-address link
//!    (unless allowed) → hold `ip_address_link`. Hosts are read as a browser
//!    reads them: HTML character references and percent-encoding decoded,
//!    invisible characters (soft hyphen, zero-width space …) removed, IDNA
//!    mapping applied, so `evil&#46;pl`, `evil%2Epl`, `ev\u{AD}il.pl` and
//!    `ｅｖｉｌ．ｐｌ` all count as `evil.pl`.
//! 2. **Sender**: not registered → reject `sender_not_registered`; a pool
//!    (named, or the default pool for SMS without a sender) picks the sender
//!    ([`Verdict::sender`]).
//! 3. **Recipient**: country not allowed, blocked prefix, premium-rate, or not
//!    a valid mobile number → reject with the matching code.
//! 4. **Pumping**, with counters only. For the recipient's destination prefix
//!    (first `prefix_len` digits) and country, the store counts the tenant's
//!    messages twice: in a short sliding window (10 min in 1-min buckets) and
//!    in a trailing baseline window (the 24 complete hourly buckets before the
//!    current one). The baseline per short window is `baseline_sum × short /
//!    baseline` (the average 10-min count over the last 24 h). When the short
//!    count, this message included, exceeds both the floor and `multiple ×`
//!    that average → hold `prefix_pumping` / `country_pumping`. A prefix that
//!    never had traffic has a baseline of 0, so the floor alone decides.
//!
//!    **Sequential numbers**: a number's *block* is the number without its
//!    last `block_digits` (2) digits. Counting distinct numbers needs no set:
//!    a per-recipient counter over the same window (`sr`) says whether this
//!    number was already messaged within it; only a number new to the window
//!    increments its block's counter (`sb`). So `sb` is the number of distinct
//!    numbers of the block messaged within the window, and when it reaches
//!    `threshold` (this number included) → hold `sequential_numbers`.
//!    Concurrent instances may both count the same new number once each; the
//!    rule errs towards holding.
//! 5. **Duplicates**: same tenant, recipient and text within the window →
//!    reject `duplicate` (can be turned off).
//! 6. **Contact policy** (`collection` only): outside the contact hours in
//!    the recipient's time zone → still allow, with `outside_contact_hours`
//!    and [`Verdict::schedule_at`] set to the next allowed moment (holidays
//!    and closed days skipped, correct across DST changes). Frequency caps
//!    per recipient over a rolling 24 h and 7 days (not calendar days) →
//!    reject `frequency_cap`.
//! 7. **Opt-out**: the store says the recipient opted out → reject
//!    `opted_out`. [`is_stop_keyword`] recognises opt-out replies.
//!
//! # What is counted when
//!
//! [`Verdict::record`] lists the increments; apply them when the message is
//! stored (decision `Allow`, also when deferred, or `Hold`), never on
//! `Reject` (the list is then empty). Counts are taken at acceptance time,
//! even for a message deferred to the next morning, so caps err towards
//! counting a message early. See [`counters`] for the key layout and TTLs.
//!
//! # Time zones
//!
//! Zones resolve from the system database (`/usr/share/zoneinfo`) and fall
//! back to a copy of the IANA database bundled into the binary (jiff's
//! `tzdb-bundle-always`), so `Europe/Warsaw` resolves on hosts without tzdata.

#![forbid(unsafe_code)]

mod blocklist;
pub mod counters;
mod decode;
mod hash;
mod hours;
mod input;
mod links;
mod policy;
mod screen;
mod sender;
mod stop;
mod verdict;
mod zones;

#[cfg(test)]
mod tests;

pub use blocklist::{Blocklist, BlocklistHandle, InvalidLine, MAX_INVALID_EXAMPLES};
pub use counters::{
    Cap, CounterKind, CounterRead, Counters, CountersError, Increment, MemoryCounters, Needs,
    Window,
};
pub use decode::is_default_ignorable;
pub use hours::{
    easter_sunday, is_polish_holiday, polish_holidays, DayHours, DayHoursError, HolidayCalendar,
};
pub use input::{Channel, Screening};
pub use links::{extract_domains, normalize_domain};
pub use policy::{
    humantime_serde, ContactPolicy, DuplicatePolicy, LinkPolicy, PolicyError, PolicyKind,
    PoolStrategy, PumpingPolicy, RecipientPolicy, SenderPool, SequentialPolicy, TenantPolicy,
    DEFAULT_PREMIUM_PREFIXES, DEFAULT_SATURDAY, DEFAULT_SHORTENERS, DEFAULT_WEEKDAYS,
};
pub use screen::{check, mandatory, mandatory_needs, needs};
pub use stop::{is_stop_keyword, DEFAULT_STOP_KEYWORDS};
pub use verdict::{Decision, ReasonCode, UnknownReasonCode, Verdict};
pub use zones::{country_zone, COUNTRY_ZONES};

/// An IANA time zone by name, from the system database or the built-in one.
pub fn time_zone(name: &str) -> Option<jiff::tz::TimeZone> {
    zones::resolve(name)
}
