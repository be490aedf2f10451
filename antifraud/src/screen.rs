//! The two phases of screening: [`needs`] (which counters) and [`check`] (the verdict).

use crate::counters::{
    Cap, CounterKind, CounterRead, Counters, Increment, Needs, Window, ROUND_ROBIN_TTL,
};
use crate::hash::{digest_hex, stable_hash};
use crate::hours::Schedule;
use crate::input::{Channel, PhoneInfo, Prepared, Screening};
use crate::links::{self, is_same_or_subdomain, Host};
use crate::policy::{PolicyKind, PoolStrategy, TenantPolicy};
use crate::sender::{self, SenderChoice};
use crate::verdict::{ReasonCode, ReasonSet, Verdict};
use crate::zones;
use jiff::tz::TimeZone;
use jiff::Timestamp;

fn fingerprint(s: &Screening<'_>) -> u64 {
    stable_hash(&[
        s.tenant.as_bytes(),
        s.channel.as_str().as_bytes(),
        s.recipient.as_bytes(),
        &s.now.as_second().to_le_bytes(),
    ])
}

fn normalise_recipient(channel: Channel, recipient: &str) -> String {
    if channel.is_phone() {
        let mut out = String::with_capacity(recipient.len());
        out.push('+');
        out.extend(recipient.chars().filter(char::is_ascii_digit));
        out
    } else {
        recipient.trim().to_lowercase()
    }
}

/// `af:{kind}:{bucket_secs}:{tenant}:{id}`, or `af:{kind}:{tenant}:{id}`
/// without a window; built without the formatting machinery (hot path).
fn make_key(kind: CounterKind, bucket_secs: Option<u32>, tenant: &str, id: &str) -> String {
    let mut k = String::with_capacity(18 + tenant.len() + id.len());
    k.push_str("af:");
    k.push_str(kind.as_str());
    k.push(':');
    if let Some(b) = bucket_secs {
        let mut digits = [0u8; 10];
        let mut n = b;
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        k.push_str(std::str::from_utf8(&digits[i..]).unwrap_or("0"));
        k.push(':');
    }
    k.push_str(tenant);
    k.push(':');
    k.push_str(id);
    k
}

/// The short pumping window (10 buckets).
fn pumping_window(p: &TenantPolicy) -> Window {
    Window::covering(p.pumping.window, 10)
}

/// The trailing baseline window (24 buckets).
fn baseline_window(p: &TenantPolicy) -> Window {
    Window::covering(p.pumping.baseline, 24)
}

/// Every counter [`check`] will need for `s` under `p`, with the bucket ids
/// to read at `s.now`, and the opt-out key. The store reads them in one
/// batched round trip and builds [`Counters`] (see [`crate::counters`] for
/// the layout). The recipient's number is parsed here, once.
///
/// Which counters, and their keys (`{t}` = tenant, `{r}` = digest of the
/// recipient, `{B}` = bucket seconds; `{{r}}` is the digest in braces, a Redis
/// Cluster hash tag that puts a recipient's capped counters on one slot):
///
/// | kind | key | window | when |
/// |---|---|---|---|
/// | `fd` | `af:fd:3600:{t}:{{r}}` | sliding 24 × 1 h | `collection` with `max_per_day` |
/// | `fw` | `af:fw:86400:{t}:{{r}}` | sliding 7 × 1 day | `collection` with `max_per_week` |
/// | `dup` | `af:dup:{B}:{t}:{{r}}:{digest of recipient + text}` | sliding, 10 buckets | `duplicates.enabled` |
/// | `pw`/`pb` | `af:pw:{B}:{t}:{digest of prefix}` | sliding 10 / trailing 24 buckets | SMS/RCS, `pumping.enabled` |
/// | `cw`/`cb` | `af:cw:{B}:{t}:{country}` | sliding 10 / trailing 24 buckets | SMS/RCS, `pumping.enabled`, country known and not exempt |
/// | `sb` | `af:sb:{B}:{t}:{digest of block}` | sliding, 10 buckets | SMS/RCS, `pumping.sequential.enabled` |
/// | `sr` | `af:sr:{B}:{t}:{r}` | sliding, 10 buckets | as `sb` |
/// | `rr` | `af:rr:{t}:{pool}` | none (field `0`) | the sender is a `round_robin` pool |
pub fn needs(s: &Screening<'_>, p: &TenantPolicy) -> Needs {
    needs_of(s, p, true)
}

/// [`needs`] with every rule (`all`), or only what [`mandatory`] reads: the
/// opt-out key and a round-robin pool's counter, without analysing the number
/// (libphonenumber's regexes) or digesting keys nobody reads.
fn needs_of(s: &Screening<'_>, p: &TenantPolicy, all: bool) -> Needs {
    let recipient = normalise_recipient(s.channel, s.recipient);
    let parsed = s.number.map(|n| (n, s.number_type));
    let phone = (all && s.channel.is_phone()).then(|| PhoneInfo::analyse(&recipient, parsed));
    let tenant = s.tenant;
    let now = s.now;
    let salt = s.key_salt;
    let rhash = digest_hex(salt, &[b"r", tenant.as_bytes(), recipient.as_bytes()]);
    let rhash = rhash.as_str();
    let mut reads = Vec::with_capacity(10);
    let mut add = |kind: CounterKind, window: Window, trailing: bool, id: &str| {
        reads.push(CounterRead {
            kind,
            key: make_key(kind, Some(window.bucket_secs()), tenant, id),
            window: Some(window),
            fields: if trailing {
                window.trailing(now)
            } else {
                window.sliding(now)
            },
        });
    };

    // The capped counters (reserved together, atomically: see `Cap`) share the
    // recipient's digest as a Redis Cluster hash tag, so one script on one slot
    // can check and count them all. The mandatory checks read none of them.
    if all {
        let tag = format!("{{{rhash}}}");
        if p.policy == PolicyKind::Collection {
            if p.contact.max_per_day.is_some() {
                add(CounterKind::FreqDay, Window::DAY, false, &tag);
            }
            if p.contact.max_per_week.is_some() {
                add(CounterKind::FreqWeek, Window::WEEK, false, &tag);
            }
        }
        if p.duplicates.enabled {
            let id = digest_hex(
                salt,
                &[
                    b"d",
                    tenant.as_bytes(),
                    recipient.as_bytes(),
                    s.dup_text.unwrap_or(s.text).as_bytes(),
                ],
            );
            add(
                CounterKind::Duplicate,
                Window::covering(p.duplicates.window, 10),
                false,
                &format!("{tag}:{}", id.as_str()),
            );
        }
    }
    if let Some(ph) = &phone {
        if p.pumping.enabled {
            let short = pumping_window(p);
            let base = baseline_window(p);
            let len = usize::from(p.pumping.prefix_len);
            if len > 0 && ph.digits.len() >= len {
                let id = digest_hex(salt, &[b"p", &ph.digits.as_bytes()[..len]]);
                add(CounterKind::PrefixWindow, short, false, id.as_str());
                add(CounterKind::PrefixBaseline, base, true, id.as_str());
            }
            if let Some(region) = ph.region {
                let exempt = p
                    .pumping
                    .exempt_countries
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(region.as_str()));
                if !exempt {
                    add(CounterKind::CountryWindow, short, false, region.as_str());
                    add(CounterKind::CountryBaseline, base, true, region.as_str());
                }
            }
        }
        let seq = &p.pumping.sequential;
        let vary = usize::from(seq.block_digits);
        if seq.enabled && vary > 0 && ph.digits.len() > vary {
            let block = &ph.digits[..ph.digits.len() - vary];
            let id = digest_hex(salt, &[b"b", &[seq.block_digits], block.as_bytes()]);
            let w = Window::covering(seq.window, 10);
            add(CounterKind::SequenceBlock, w, false, id.as_str());
            add(CounterKind::SequenceRecipient, w, false, rhash);
        }
    }
    if let SenderChoice::Pool(pool) = sender::resolve(s, p) {
        if pool.strategy == PoolStrategy::RoundRobin {
            reads.push(CounterRead {
                kind: CounterKind::RoundRobin,
                key: make_key(CounterKind::RoundRobin, None, tenant, &pool.name),
                window: None,
                fields: 0..=0,
            });
        }
    }
    Needs {
        reads,
        opt_out_key: {
            let mut k = String::with_capacity(8 + tenant.len() + rhash.len());
            k.push_str("af:oo:");
            k.push_str(tenant);
            k.push(':');
            k.push_str(rhash);
            k
        },
        prepared: Prepared {
            now,
            fingerprint: fingerprint(s),
            recipient,
            phone,
        },
    }
}

/// What [`mandatory`] needs: the recipient's opt-out and, for a round-robin
/// sender pool, its counter; nothing else. The gateway runs these checks even
/// with anti-fraud off: an opt-out is a legal duty and a registered sender a
/// matter of identity, not fraud rules (as e-mail suppression is).
pub fn mandatory_needs(s: &Screening<'_>, p: &TenantPolicy) -> Needs {
    needs_of(s, p, false)
}

/// The verdict of the mandatory checks, from counters filled for
/// [`mandatory_needs`]: `sender_not_registered` and `opted_out` reject; else
/// allow, with the sender to use (a pool's pick) and the pool counter to record.
pub fn mandatory(s: &Screening<'_>, p: &TenantPolicy, counters: &Counters) -> Verdict {
    let mut reasons = ReasonSet::default();
    let (chosen, round_robin_used) = choose_sender(s, p, counters, &mut reasons);
    if counters.opted_out() {
        reasons.add(ReasonCode::OptedOut);
    }
    let decision = reasons.decision();
    let rejected = decision == crate::Decision::Reject;
    Verdict {
        decision,
        reasons: reasons.to_vec(),
        schedule_at: None,
        sender: if rejected { None } else { chosen },
        record: if rejected {
            Vec::new()
        } else {
            record(
                counters,
                counters.needs.prepared.now,
                round_robin_used,
                false,
                |_| None,
            )
            .0
        },
        caps: Vec::new(),
    }
}

/// The sender rule: the sender to use, and whether a round-robin pool picked it.
fn choose_sender(
    s: &Screening<'_>,
    p: &TenantPolicy,
    counters: &Counters,
    reasons: &mut ReasonSet,
) -> (Option<String>, bool) {
    match sender::resolve(s, p) {
        SenderChoice::Unspecified => (None, false),
        SenderChoice::Fixed(x) => (Some(x.to_owned()), false),
        SenderChoice::Pool(pool) => {
            let rr = counters.value(CounterKind::RoundRobin);
            let pick = sender::pick(pool, &counters.needs.prepared.recipient, s.seed, rr);
            (
                pick.map(str::to_owned),
                pool.strategy == PoolStrategy::RoundRobin,
            )
        }
        SenderChoice::NotRegistered => {
            reasons.add(ReasonCode::SenderNotRegistered);
            (None, false)
        }
    }
}

/// The recipient's time zone: by the number's country (the policy's
/// `time_zones`, then the built-in map), else the policy's default zone.
fn recipient_zone(phone: Option<&PhoneInfo>, p: &TenantPolicy) -> TimeZone {
    let by_country = phone.and_then(|ph| ph.region).and_then(|r| {
        p.contact
            .time_zones
            .get(r.as_str())
            .map(String::as_str)
            .or_else(|| zones::country_zone(r.as_str()))
    });
    let name = by_country.unwrap_or(&p.contact.default_time_zone);
    zones::resolve(name)
        .or_else(|| zones::resolve(&p.contact.default_time_zone))
        .or_else(|| zones::resolve("Europe/Warsaw"))
        .unwrap_or(TimeZone::UTC)
}

/// Whether the pumping rule fires: the current window, this message
/// included, exceeds both the floor and `multiple` × the baseline (the
/// trailing window's average per short window).
fn pumping_fires(window: u64, baseline: u64, ratio: f64, floor: u32, multiple: f64) -> bool {
    let current = window.saturating_add(1);
    let average = baseline as f64 * ratio;
    current > u64::from(floor) && current as f64 > multiple * average
}

/// The verdict for `s` under `p`, given the `counters` the store filled for
/// [`needs`]`(s, p)` (same `s`, same `p`). Every rule runs and every reason
/// that fires is reported; the decision is the most severe (reject beats
/// hold beats allow). Pure: no I/O, no clock, no randomness of its own.
pub fn check(s: &Screening<'_>, p: &TenantPolicy, counters: &Counters) -> Verdict {
    let prep = &counters.needs.prepared;
    debug_assert_eq!(
        prep.fingerprint,
        fingerprint(s),
        "Counters were prepared for another message"
    );
    let mut reasons = ReasonSet::default();

    // 1. Links (hosts as a browser would read them: see `links`).
    let mut scratch = links::Scratch::default();
    links::for_each_host(s.text, &mut scratch, |host| match host {
        Host::Domain(host) => {
            if p.links
                .payment_domains
                .iter()
                .any(|d| is_same_or_subdomain(host, d))
                || p.links
                    .own_link_host
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(host))
            {
                return;
            }
            if s.blocklist.matching(host).is_some() {
                reasons.add(ReasonCode::BlocklistedDomain);
            } else if !p.links.allow_shorteners
                && p.links
                    .shorteners
                    .iter()
                    .any(|d| is_same_or_subdomain(host, d))
            {
                reasons.add(ReasonCode::UrlShortener);
            }
        }
        Host::Ip(ip) => {
            // The tenant's own short links, served from an address.
            if p.links
                .own_link_host
                .as_deref()
                .and_then(|h| h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().ok())
                == Some(ip)
            {
                return;
            }
            if s.blocklist.matching_ip(ip).is_some() {
                reasons.add(ReasonCode::BlocklistedDomain);
            } else if !p.links.allow_ip_links {
                reasons.add(ReasonCode::IpAddressLink);
            }
        }
    });

    // 2. Sender.
    let (chosen, round_robin_used) = choose_sender(s, p, counters, &mut reasons);

    // 3. Recipient number.
    let phone = prep.phone.as_ref();
    if let Some(ph) = phone {
        let r = &p.recipients;
        if !r.allowed_countries.is_empty() {
            let ok = ph.region.is_some_and(|region| {
                r.allowed_countries
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(region.as_str()))
            });
            if !ok {
                reasons.add(ReasonCode::CountryNotAllowed);
            }
        }
        let starts = |prefix: &String| {
            let digits = prefix.trim_start_matches('+');
            !digits.is_empty() && ph.digits.starts_with(digits)
        };
        if r.blocked_prefixes.iter().any(starts) {
            reasons.add(ReasonCode::BlockedPrefix);
        }
        if r.premium_prefixes.iter().any(starts)
            || ph.number_type == Some(phonenumber::Type::PremiumRate)
        {
            reasons.add(ReasonCode::PremiumRate);
        }
        if r.require_mobile && !ph.is_mobile() {
            reasons.add(ReasonCode::NotMobile);
        }
    }

    // 4. Pumping and sequential numbers.
    let needs = &counters.needs;
    let ratio = {
        let short = pumping_window(p).len().as_secs_f64();
        let base = baseline_window(p).len().as_secs_f64();
        if base > 0.0 {
            short / base
        } else {
            0.0
        }
    };
    let pump = &p.pumping;
    if needs.read(CounterKind::PrefixWindow).is_some()
        && pumping_fires(
            counters.value(CounterKind::PrefixWindow),
            counters.value(CounterKind::PrefixBaseline),
            ratio,
            pump.prefix_floor,
            pump.prefix_multiple,
        )
    {
        reasons.add(ReasonCode::PrefixPumping);
    }
    if needs.read(CounterKind::CountryWindow).is_some()
        && pumping_fires(
            counters.value(CounterKind::CountryWindow),
            counters.value(CounterKind::CountryBaseline),
            ratio,
            pump.country_floor,
            pump.country_multiple,
        )
    {
        reasons.add(ReasonCode::CountryPumping);
    }
    let new_in_block = counters.value(CounterKind::SequenceRecipient) == 0;
    if needs.read(CounterKind::SequenceBlock).is_some() {
        let distinct = counters
            .value(CounterKind::SequenceBlock)
            .saturating_add(u64::from(new_in_block));
        if distinct >= u64::from(pump.sequential.threshold) {
            reasons.add(ReasonCode::SequentialNumbers);
        }
    }

    // 5. Duplicates.
    if needs.read(CounterKind::Duplicate).is_some() && counters.value(CounterKind::Duplicate) > 0 {
        reasons.add(ReasonCode::Duplicate);
    }

    // 6. Contact hours and frequency caps.
    let mut schedule_at = None;
    if p.policy == PolicyKind::Collection {
        let c = &p.contact;
        let schedule = Schedule {
            weekdays: c.weekdays,
            saturday: c.saturday,
            sunday: c.sunday,
            calendar: c.holidays,
            extra: &c.extra_holidays,
        };
        let at = s.send_at.map_or(s.now, |t| t.max(s.now));
        if let Some(next) = schedule.next_allowed(at, &recipient_zone(phone, p)) {
            reasons.add(ReasonCode::OutsideContactHours);
            schedule_at = Some(next);
        }
        let over = |max: Option<u32>, kind| {
            max.is_some_and(|m| needs.read(kind).is_some() && counters.value(kind) >= u64::from(m))
        };
        if over(c.max_per_day, CounterKind::FreqDay) || over(c.max_per_week, CounterKind::FreqWeek)
        {
            reasons.add(ReasonCode::FrequencyCap);
        }
    }

    // 7. Opt-out.
    if counters.opted_out() {
        reasons.add(ReasonCode::OptedOut);
    }

    let decision = reasons.decision();
    let rejected = decision == crate::Decision::Reject;
    let (record, caps) = if rejected {
        (Vec::new(), Vec::new())
    } else {
        let limit = |kind| match kind {
            CounterKind::FreqDay => p.contact.max_per_day.map(u64::from),
            CounterKind::FreqWeek => p.contact.max_per_week.map(u64::from),
            CounterKind::Duplicate => Some(1),
            _ => None,
        };
        record(counters, prep.now, round_robin_used, new_in_block, limit)
    };
    Verdict {
        decision,
        reasons: reasons.to_vec(),
        schedule_at: if rejected { None } else { schedule_at },
        sender: chosen,
        record,
        caps,
    }
}

/// The increments for an accepted message: one per counter read, except the
/// sequential block (only when this number is new to it within the window)
/// and the round-robin position (only when a round-robin pool was used).
/// Counters with a `limit` (frequency caps, duplicates) come back as
/// reservations instead, refused for their reason when the limit is reached.
fn record(
    counters: &Counters,
    now: Timestamp,
    round_robin_used: bool,
    new_in_block: bool,
    limit: impl Fn(CounterKind) -> Option<u64>,
) -> (Vec<Increment>, Vec<Cap>) {
    let reads = counters.needs.reads();
    let mut out = Vec::with_capacity(reads.len());
    let mut caps = Vec::new();
    for read in reads {
        match read.kind {
            CounterKind::SequenceBlock if !new_in_block => continue,
            CounterKind::RoundRobin if !round_robin_used => continue,
            _ => {}
        }
        let inc = match read.window {
            Some(w) => Increment {
                key: read.key.clone(),
                field: w.bucket_of(now),
                by: 1,
                ttl: w.ttl(now),
                stale: w.stale(now),
            },
            None => Increment {
                key: read.key.clone(),
                field: 0,
                by: 1,
                ttl: ROUND_ROBIN_TTL,
                stale: 0..0,
            },
        };
        match limit(read.kind) {
            Some(limit) => caps.push(Cap {
                kind: read.kind,
                read: read.fields.clone(),
                limit,
                inc,
            }),
            None => out.push(inc),
        }
    }
    (out, caps)
}
