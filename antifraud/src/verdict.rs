//! Decisions, reason codes and the verdict.

use crate::counters::{Cap, CounterKind, Increment};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What happens to a message. Ordered by severity: `Reject` beats `Hold`
/// beats `Allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Accept (possibly deferred: see [`Verdict::schedule_at`]).
    Allow,
    /// Store as `held`: an operator releases or drops it.
    Hold,
    /// Refuse before queueing (`rejected`).
    Reject,
}

impl Decision {
    /// `allow`, `hold` or `reject`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Hold => "hold",
            Decision::Reject => "reject",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a rule fired. The snake_case codes from [`as_str`](Self::as_str) are
/// stable: they appear in API errors, message history and the `reason`
/// metric label. Each code always leads to the same [`Decision`]
/// ([`decision`](Self::decision)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// `blocklisted_domain` (reject): a link's domain, or a parent domain of
    /// it, is on the phishing blocklist; or a link's host is an IP address
    /// on it.
    BlocklistedDomain,
    /// `url_shortener` (hold): a link goes through a public URL shortener,
    /// which hides the destination, and the tenant does not allow shorteners.
    UrlShortener,
    /// `ip_address_link` (hold): a link's host is an IP address
    /// (`http://3232235777/`, `http://[::1]/`, `192.168.1.1/admin`), and the
    /// tenant does not allow IP-address links. Senders with a legitimate
    /// purpose link to their domain; a bare address hides who is behind the
    /// link, dodges domain blocklists and reputation, and may point into the
    /// recipient's own network (a router's admin page). Held rather than
    /// rejected, like a shortener: an operator can release a genuine one.
    IpAddressLink,
    /// `sender_not_registered` (reject): the sender id, number or pool is not
    /// registered for the tenant.
    SenderNotRegistered,
    /// `country_not_allowed` (reject): the recipient's country is not on the
    /// tenant's allowlist (or the number's country cannot be determined while
    /// an allowlist is set).
    CountryNotAllowed,
    /// `blocked_prefix` (reject): the recipient number starts with a blocked
    /// prefix.
    BlockedPrefix,
    /// `premium_rate` (reject): the recipient number is premium-rate (a
    /// configured prefix, or libphonenumber classifies it so).
    PremiumRate,
    /// `not_mobile` (reject, SMS/RCS only): the number is not a valid mobile
    /// number (`MOBILE` or `FIXED_LINE_OR_MOBILE`), or cannot be parsed.
    NotMobile,
    /// `prefix_pumping` (hold): traffic to the recipient's number prefix in
    /// the short window exceeds both the floor and the multiple of its
    /// trailing baseline (artificially inflated traffic).
    PrefixPumping,
    /// `country_pumping` (hold): as `prefix_pumping`, per destination country.
    CountryPumping,
    /// `sequential_numbers` (hold): many distinct numbers differing only in
    /// their last digits were messaged within a few minutes.
    SequentialNumbers,
    /// `duplicate` (reject): the same tenant sent the same text to the same
    /// recipient within the duplicate window.
    Duplicate,
    /// `outside_contact_hours` (informational; the decision stays allow): the
    /// message may not be delivered now, [`Verdict::schedule_at`] says when.
    OutsideContactHours,
    /// `frequency_cap` (reject): the recipient already got the maximum number
    /// of messages from this tenant in the last 24 hours or 7 days.
    FrequencyCap,
    /// `opted_out` (reject): the recipient asked this tenant to stop.
    OptedOut,
    /// `suppressed` (reject): the e-mail address bounced hard before and is on
    /// the tenant's suppression list. Set by the gateway from its store, not by
    /// [`check`](crate::check).
    Suppressed,
}

impl ReasonCode {
    /// Every code, in the order rules report them.
    pub const ALL: [ReasonCode; 16] = [
        ReasonCode::BlocklistedDomain,
        ReasonCode::UrlShortener,
        ReasonCode::IpAddressLink,
        ReasonCode::SenderNotRegistered,
        ReasonCode::CountryNotAllowed,
        ReasonCode::BlockedPrefix,
        ReasonCode::PremiumRate,
        ReasonCode::NotMobile,
        ReasonCode::PrefixPumping,
        ReasonCode::CountryPumping,
        ReasonCode::SequentialNumbers,
        ReasonCode::Duplicate,
        ReasonCode::OutsideContactHours,
        ReasonCode::FrequencyCap,
        ReasonCode::OptedOut,
        ReasonCode::Suppressed,
    ];

    /// The stable snake_case code.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReasonCode::BlocklistedDomain => "blocklisted_domain",
            ReasonCode::UrlShortener => "url_shortener",
            ReasonCode::IpAddressLink => "ip_address_link",
            ReasonCode::SenderNotRegistered => "sender_not_registered",
            ReasonCode::CountryNotAllowed => "country_not_allowed",
            ReasonCode::BlockedPrefix => "blocked_prefix",
            ReasonCode::PremiumRate => "premium_rate",
            ReasonCode::NotMobile => "not_mobile",
            ReasonCode::PrefixPumping => "prefix_pumping",
            ReasonCode::CountryPumping => "country_pumping",
            ReasonCode::SequentialNumbers => "sequential_numbers",
            ReasonCode::Duplicate => "duplicate",
            ReasonCode::OutsideContactHours => "outside_contact_hours",
            ReasonCode::FrequencyCap => "frequency_cap",
            ReasonCode::OptedOut => "opted_out",
            ReasonCode::Suppressed => "suppressed",
        }
    }

    /// The decision this reason leads to on its own.
    pub const fn decision(self) -> Decision {
        match self {
            ReasonCode::UrlShortener
            | ReasonCode::IpAddressLink
            | ReasonCode::PrefixPumping
            | ReasonCode::CountryPumping
            | ReasonCode::SequentialNumbers => Decision::Hold,
            ReasonCode::OutsideContactHours => Decision::Allow,
            ReasonCode::BlocklistedDomain
            | ReasonCode::SenderNotRegistered
            | ReasonCode::CountryNotAllowed
            | ReasonCode::BlockedPrefix
            | ReasonCode::PremiumRate
            | ReasonCode::NotMobile
            | ReasonCode::Duplicate
            | ReasonCode::FrequencyCap
            | ReasonCode::OptedOut
            | ReasonCode::Suppressed => Decision::Reject,
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown reason code string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown reason code `{0}`")]
pub struct UnknownReasonCode(pub String);

impl FromStr for ReasonCode {
    type Err = UnknownReasonCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReasonCode::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownReasonCode(s.to_owned()))
    }
}

/// The outcome of [`check`](crate::check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The most severe decision of all reasons (`Allow` when none fired).
    pub decision: Decision,
    /// Every reason that fired, in [`ReasonCode::ALL`] order, without repeats.
    pub reasons: Vec<ReasonCode>,
    /// Set when the message is outside the recipient's contact hours (reason
    /// `outside_contact_hours`) and not rejected: the earliest moment it may
    /// be delivered. The gateway stores it as the message's `send_at`.
    pub schedule_at: Option<Timestamp>,
    /// The sender to use: the registered spelling of the requested sender,
    /// or the number picked from a pool. `None` when the message named no
    /// sender and the tenant has no default pool (the route's default applies).
    pub sender: Option<String>,
    /// Counter increments to apply, in one batched round trip, when the
    /// message is stored (decision `Allow` or `Hold`). Empty on `Reject`.
    pub record: Vec<Increment>,
    /// Counters with a limit (frequency caps, duplicates) to reserve before
    /// the message is stored (decision `Allow` or `Hold`); a denied
    /// reservation is applied with [`refuse`](Self::refuse). Empty on `Reject`.
    pub caps: Vec<Cap>,
}

impl Verdict {
    /// Whether `reason` fired.
    pub fn has(&self, reason: ReasonCode) -> bool {
        self.reasons.contains(&reason)
    }

    /// Whether the message may be accepted now or later (`Allow`).
    pub fn is_allowed(&self) -> bool {
        self.decision == Decision::Allow
    }

    /// The store denied a reservation of [`caps`](Self::caps) (another
    /// message took the last place first): `reason` fires and the verdict
    /// becomes what [`check`](crate::check) would have given had it read the
    /// counters after that message. On `Reject` nothing is recorded or
    /// scheduled and the caps are dropped: call it before reserving, or for a
    /// denied reservation (which, all or nothing, counted none of them).
    pub fn refuse(&mut self, reason: ReasonCode) {
        if !self.has(reason) {
            self.reasons.push(reason);
            self.reasons
                .sort_by_key(|r| ReasonCode::ALL.iter().position(|a| a == r));
        }
        self.decision = self.decision.max(reason.decision());
        if self.decision == Decision::Reject {
            self.schedule_at = None;
            self.record.clear();
            self.caps.clear();
        }
    }
}

impl Cap {
    /// What a message refused a place under this cap is rejected for.
    pub fn reason(&self) -> ReasonCode {
        match self.kind {
            CounterKind::Duplicate => ReasonCode::Duplicate,
            _ => ReasonCode::FrequencyCap,
        }
    }
}

/// The reasons collected while checking, in a fixed order. One bit per
/// code (32 bits leave room for codes to come).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReasonSet(u32);

impl ReasonSet {
    pub(crate) fn add(&mut self, r: ReasonCode) {
        self.0 |= 1 << (r as u32);
    }

    pub(crate) fn contains(self, r: ReasonCode) -> bool {
        self.0 & (1 << (r as u32)) != 0
    }

    pub(crate) fn decision(self) -> Decision {
        ReasonCode::ALL
            .into_iter()
            .filter(|r| self.contains(*r))
            .map(ReasonCode::decision)
            .max()
            .unwrap_or(Decision::Allow)
    }

    pub(crate) fn to_vec(self) -> Vec<ReasonCode> {
        ReasonCode::ALL
            .into_iter()
            .filter(|r| self.contains(*r))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_round_trip() {
        let codes: Vec<&str> = ReasonCode::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            codes,
            [
                "blocklisted_domain",
                "url_shortener",
                "ip_address_link",
                "sender_not_registered",
                "country_not_allowed",
                "blocked_prefix",
                "premium_rate",
                "not_mobile",
                "prefix_pumping",
                "country_pumping",
                "sequential_numbers",
                "duplicate",
                "outside_contact_hours",
                "frequency_cap",
                "opted_out",
                "suppressed",
            ]
        );
        for r in ReasonCode::ALL {
            assert_eq!(r.as_str().parse::<ReasonCode>(), Ok(r));
            assert_eq!(r.to_string(), r.as_str());
            // serde uses the same spelling.
            let json = format!("{:?}", r.as_str());
            let via_serde: ReasonCode =
                serde::Deserialize::deserialize(serde::de::value::StrDeserializer::<
                    serde::de::value::Error,
                >::new(r.as_str()))
                .unwrap();
            assert_eq!(via_serde, r, "{json}");
        }
        assert!("nope".parse::<ReasonCode>().is_err());
    }

    #[test]
    fn severity_order() {
        assert!(Decision::Reject > Decision::Hold);
        assert!(Decision::Hold > Decision::Allow);
        let mut set = ReasonSet::default();
        assert_eq!(set.decision(), Decision::Allow);
        set.add(ReasonCode::OutsideContactHours);
        assert_eq!(set.decision(), Decision::Allow);
        set.add(ReasonCode::UrlShortener);
        assert_eq!(set.decision(), Decision::Hold);
        set.add(ReasonCode::OptedOut);
        set.add(ReasonCode::OptedOut);
        assert_eq!(set.decision(), Decision::Reject);
        assert_eq!(
            set.to_vec(),
            [
                ReasonCode::UrlShortener,
                ReasonCode::OutsideContactHours,
                ReasonCode::OptedOut
            ]
        );
    }
}
