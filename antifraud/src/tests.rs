//! Rule tests through the public API: for every rule a hit, a near miss and
//! the exact reason code.

use crate::*;
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

use ReasonCode as R;

/// Parses an RFC 3339 instant.
fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// Tuesday 10 March 2026, 10:00 in Warsaw (CET, UTC+1).
fn tue_10() -> Timestamp {
    at("2026-03-10T09:00:00Z")
}

const TO: &str = "+48601234567";

fn sms<'a>(to: &'a str, text: &'a str, now: Timestamp) -> Screening<'a> {
    Screening::new("acme", Channel::Sms, to, text, now)
}

/// One check against the store's current counters.
fn run(s: &Screening<'_>, p: &TenantPolicy, store: &MemoryCounters) -> Verdict {
    check(s, p, &store.snapshot(needs(s, p)))
}

/// A check whose increments are applied when the message would be stored.
fn send(s: &Screening<'_>, p: &TenantPolicy, store: &mut MemoryCounters) -> Verdict {
    let v = run(s, p, store);
    assert_eq!(
        store.reserve(&v.caps, s.now),
        None,
        "caps check() passed are free"
    );
    store.apply(&v.record, s.now);
    v
}

/// A check with hand-set counter values (others 0).
fn with_values(s: &Screening<'_>, p: &TenantPolicy, values: &[(CounterKind, u64)]) -> Verdict {
    let n = needs(s, p);
    let v: Vec<u64> = n
        .reads()
        .iter()
        .map(|r| {
            values
                .iter()
                .find(|(k, _)| *k == r.kind)
                .map_or(0, |(_, v)| *v)
        })
        .collect();
    for (kind, _) in values {
        assert!(n.read(*kind).is_some(), "policy does not read {kind:?}");
    }
    check(s, p, &Counters::new(n, v, false).unwrap())
}

fn fresh(s: &Screening<'_>, p: &TenantPolicy) -> Verdict {
    run(s, p, &MemoryCounters::new())
}

/// Rules that get in the way of a test of another rule, off.
fn quiet() -> TenantPolicy {
    let mut p = TenantPolicy::default();
    p.pumping.enabled = false;
    p.pumping.sequential.enabled = false;
    p.duplicates.enabled = false;
    p.contact.max_per_day = None;
    p.contact.max_per_week = None;
    p
}

fn assert_verdict(v: &Verdict, decision: Decision, reasons: &[ReasonCode]) {
    assert_eq!(v.reasons, reasons, "{v:?}");
    assert_eq!(v.decision, decision, "{v:?}");
}

// ---------------------------------------------------------------- links

#[test]
fn blocklisted_domain_and_parents_rejected_siblings_not() {
    let list = Blocklist::parse("# CERT\nevil.pl\nzapłać.pl\n");
    let p = quiet();
    for (text, hit) in [
        ("Zapłać: https://evil.pl/x", true),
        ("Zapłać: HTTPS://Secure.Login.EVIL.PL./x", true),
        ("Zapłać: www.evil.pl", true),
        ("Zapłać na zapłać.pl/f/1", true),
        ("Zapłać na xn--zapa-ota66a.pl", true),
        // Near misses: a sibling with the same ending, the name as a subdomain
        // of another domain, an e-mail address, no link at all.
        ("Zapłać: https://notevil.pl/x", false),
        ("Zapłać: https://evil.pl.example.com/x", false),
        ("Pytania: kontakt@evil.pl", false),
        ("Kwota 12.50 zł. Dziękujemy.", false),
    ] {
        let mut s = sms(TO, text, tue_10());
        s.blocklist = &list;
        let v = fresh(&s, &p);
        if hit {
            assert_verdict(&v, Decision::Reject, &[R::BlocklistedDomain]);
            assert!(v.record.is_empty());
        } else {
            assert_verdict(&v, Decision::Allow, &[]);
        }
    }
}

#[test]
fn blocklist_applies_to_email_html() {
    let list = Blocklist::parse("evil.pl\n");
    let body = "Faktura\n<p>Zapłać <a href=\"https://evil.pl/pay\">tutaj</a></p>";
    let mut s = Screening::new("acme", Channel::Email, "Jan@Example.com", body, tue_10());
    s.blocklist = &list;
    assert_verdict(
        &fresh(&s, &quiet()),
        Decision::Reject,
        &[R::BlocklistedDomain],
    );
}

#[test]
fn shortener_held_unless_allowed() {
    let mut p = quiet();
    for (text, hit) in [
        ("Link: bit.ly/3abc", true),
        ("Link: https://www.bit.ly/3abc", true),
        ("Link: https://TinyURL.com/x", true),
        ("Link: t.co/x", true),
        // Near misses: look-alikes that are not the shortener.
        ("Link: notbit.ly/3abc", false),
        ("Link: https://bit.ly.example.com/3abc", false),
        ("Link: https://t.com/x", false),
    ] {
        let v = fresh(&sms(TO, text, tue_10()), &p);
        if hit {
            assert_verdict(&v, Decision::Hold, &[R::UrlShortener]);
        } else {
            assert_verdict(&v, Decision::Allow, &[]);
        }
    }
    p.links.allow_shorteners = true;
    assert_verdict(
        &fresh(&sms(TO, "bit.ly/3abc", tue_10()), &p),
        Decision::Allow,
        &[],
    );
    // A configured list replaces the default.
    p.links.allow_shorteners = false;
    p.links.shorteners = vec!["krotki.pl".into()];
    assert_verdict(
        &fresh(&sms(TO, "bit.ly/3abc", tue_10()), &p),
        Decision::Allow,
        &[],
    );
    let v = fresh(&sms(TO, "krotki.pl/x", tue_10()), &p);
    assert_verdict(&v, Decision::Hold, &[R::UrlShortener]);
}

#[test]
fn payment_domains_are_exempt_from_link_rules() {
    let list = Blocklist::parse("acme.pl\nbit.ly\n");
    let mut p = quiet();
    p.links.payment_domains = vec!["pay.acme.pl".into(), "bit.ly".into()];
    p.normalize().unwrap();
    for (text, want) in [
        ("https://pay.acme.pl/f/1", Decision::Allow),
        ("https://eu.pay.acme.pl/f/1", Decision::Allow),
        ("bit.ly/x", Decision::Allow),
        // The parent is listed and the sibling is not under the allowlist.
        ("https://evil.acme.pl/f/1", Decision::Reject),
        ("https://acme.pl/f/1", Decision::Reject),
        // One exempt link does not excuse another.
        (
            "https://pay.acme.pl/f/1 albo https://login.acme.pl",
            Decision::Reject,
        ),
    ] {
        let mut s = sms(TO, text, tue_10());
        s.blocklist = &list;
        assert_eq!(fresh(&s, &p).decision, want, "{text}");
    }
}

/// Every way of writing a link that a browser (or an e-mail's HTML parser
/// before it) turns into the listed host, on both the SMS and the e-mail
/// path; and the near misses that must stay untouched.
#[test]
fn disguised_links_are_judged_as_a_browser_reads_them() {
    let list = Blocklist::parse("evil.pl\nevil.example\n203.0.113.66\n");
    let blocked = (Decision::Reject, &[R::BlocklistedDomain][..]);
    let shortener = (Decision::Hold, &[R::UrlShortener][..]);
    let ip_link = (Decision::Hold, &[R::IpAddressLink][..]);
    let allowed = (Decision::Allow, &[][..]);
    let cases: &[(&str, (Decision, &[ReasonCode]))] = &[
        // Invisible characters.
        ("Zapłać: ev\u{AD}il.pl/x", blocked),
        ("Zapłać: https://evil\u{200B}.pl/x", blocked),
        ("https://e\u{200C}v\u{200D}il.pl", blocked),
        ("https://evil\u{2060}.pl \u{FEFF}", blocked),
        ("https://ev\u{FE0F}il.pl", blocked),
        ("https://login.evi\u{202E}l.pl", blocked),
        ("<a href=\"https://ev&shy;il.pl\">x</a>", blocked),
        ("<a href=\"https://evil&ZeroWidthSpace;.pl\">x</a>", blocked),
        // Percent-encoding and character references in an `href`.
        ("<a href=\"https://evil%2Epl/x\">Zapłać</a>", blocked),
        ("<a href=\"https://evil%2epl/x\">Zapłać</a>", blocked),
        ("<a href=\"https://evil&#46;pl/x\">Zapłać</a>", blocked),
        ("<a href=\"https://evil&#x2E;pl/x\">Zapłać</a>", blocked),
        ("<a href=\"https://evil&#x2e;pl/x\">Zapłać</a>", blocked),
        ("<a href=\"https://evil&period;pl/x\">Zapłać</a>", blocked),
        (
            "<a href=\"https://e&#118;i&#x6C;.pl/x\">Zapłać</a>",
            blocked,
        ),
        ("<a href=\"https://%65%76%69%6C.pl/x\">Zapłać</a>", blocked),
        ("<a href=\"https://ev\nil.pl/x\">Zapłać</a>", blocked),
        // Fullwidth and ideographic dots and letters, case, trailing dot.
        ("evil．pl/x", blocked),
        ("evil。pl/x", blocked),
        ("ｅｖｉｌ．ｐｌ", blocked),
        ("HTTPS://EVIL.PL/X", blocked),
        ("https://evil.pl./x", blocked),
        // User info is not the host.
        ("http://good.pl@evil.example/", blocked),
        ("http://good.pl@ev\u{AD}il.example/", blocked),
        // A listed IP address, however a browser accepts it written.
        ("http://203.0.113.66/", blocked),
        ("http://3405803842/", blocked),
        ("http://0xCB007142/", blocked),
        ("http://0313.0.0161.0102/", blocked),
        ("http://203.0.28994/", blocked),
        ("http://[::ffff:203.0.113.66]/", blocked),
        ("http://[64:ff9b::cb00:7142]/", blocked),
        ("Wejdź na 203.0.113.66/login", blocked),
        ("<a href=\"http://203&#46;0&#46;113&#46;66\">x</a>", blocked),
        // Shorteners in disguise are still shorteners.
        ("Link: bit\u{200B}.ly/3abc", shortener),
        ("<a href=\"https://bit&#46;ly/3abc\">x</a>", shortener),
        ("<a href=\"https://bit%2Ely/3abc\">x</a>", shortener),
        ("ＢＩＴ．ＬＹ/3abc", shortener),
        // Any other IP-address link is held.
        ("http://3232235777/", ip_link),
        ("http://0x7f.1/admin", ip_link),
        ("http://[::1]:8080/", ip_link),
        ("http://[2001:db8::1]/", ip_link),
        ("Router: 192.168.1.1/apply.cgi", ip_link),
        ("<a href=\"//0300.0250.1.1/\">x</a>", ip_link),
        // Near misses.
        ("Kwota 12.50 zł. Termin 10.03.2026.", allowed),
        ("Do zapłaty 1.234,50 zł, rabat 50% &amp; więcej.", allowed),
        (
            "Pytania: kontakt@evil.pl lub jan.kowalski@evil.example",
            allowed,
        ),
        ("Zapłać: https://notevil.pl/x", allowed),
        ("Zapłać: https://evil.pl.example.com/x", allowed),
        ("https://acme.pl/faktury//12345", allowed),
        // Encoded twice: a browser decodes once and opens no `evil.pl`.
        ("<a href=\"https://evil%252Epl/\">x</a>", allowed),
        ("<p>evil&amp;#46;pl</p>", allowed),
    ];
    let p = quiet();
    let mut bad = Vec::new();
    for (text, (decision, reasons)) in cases {
        for (channel, to) in [(Channel::Sms, TO), (Channel::Email, "jan@example.com")] {
            let mut s = Screening::new("acme", channel, to, text, tue_10());
            s.blocklist = &list;
            let v = fresh(&s, &p);
            if v.decision != *decision || v.reasons != *reasons {
                bad.push(format!(
                    "{channel} {text:?}: {:?} {:?}",
                    v.decision, v.reasons
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn ip_address_links_allowed_by_policy_unless_listed() {
    let list = Blocklist::parse("10.9.8.7\n");
    let mut p = quiet();
    p.links.allow_ip_links = true;
    for (text, want) in [
        ("http://3232235777/", Decision::Allow),
        ("http://[2001:db8::1]/", Decision::Allow),
        ("http://10.9.8.7/", Decision::Reject),
        ("http://0xa090807/", Decision::Reject),
    ] {
        let mut s = sms(TO, text, tue_10());
        s.blocklist = &list;
        assert_eq!(fresh(&s, &p).decision, want, "{text}");
    }
}

// ---------------------------------------------------------------- senders

fn with_senders() -> TenantPolicy {
    let mut p = quiet();
    p.senders = vec!["ACME".into(), "+48500100200".into()];
    p.sender_pools = vec![
        SenderPool {
            name: "windykacja".into(),
            numbers: vec![
                "+48500100201".into(),
                "+48500100202".into(),
                "+48500100203".into(),
            ],
            strategy: PoolStrategy::RoundRobin,
        },
        SenderPool {
            name: "stali".into(),
            numbers: vec![
                "+48500100301".into(),
                "+48500100302".into(),
                "+48500100303".into(),
            ],
            strategy: PoolStrategy::Sticky,
        },
        SenderPool {
            name: "losowo".into(),
            numbers: vec![
                "+48500100401".into(),
                "+48500100402".into(),
                "+48500100403".into(),
            ],
            strategy: PoolStrategy::Random,
        },
    ];
    p
}

#[test]
fn email_senders_are_registered_addresses_or_domains() {
    let mut p = quiet();
    p.senders = vec![
        "ACME".into(),
        "windykacja@acme.pl".into(),
        "@faktury.acme.pl".into(),
    ];
    let mail = |from: &'static str| {
        let mut s = Screening::new(
            "t",
            Channel::Email,
            "jan@example.com",
            "Dzień dobry",
            tue_10(),
        );
        s.sender = Some(from);
        s
    };
    for from in [
        "windykacja@acme.pl",
        "WINDYKACJA@ACME.PL",
        "ACME Windykacja <windykacja@acme.pl>",
        "noreply@faktury.acme.pl",
        "Faktury <ktokolwiek@faktury.acme.pl>",
    ] {
        let v = fresh(&mail(from), &p);
        assert_verdict(&v, Decision::Allow, &[]);
        assert_eq!(v.sender.as_deref(), Some(from));
    }
    for from in [
        "security@pkobp.pl",
        "ACME",
        "inny@acme.pl",
        "x@sub.faktury.acme.pl",
        "faktury.acme.pl",
        "Windykacja <security@pkobp.pl> windykacja@acme.pl",
    ] {
        let v = fresh(&mail(from), &p);
        assert_verdict(&v, Decision::Reject, &[R::SenderNotRegistered]);
    }
    // Nothing registered: no e-mail sender may be chosen either.
    let v = fresh(&mail("security@pkobp.pl"), &quiet());
    assert_verdict(&v, Decision::Reject, &[R::SenderNotRegistered]);
}

#[test]
fn registered_senders_pass_others_rejected() {
    let p = with_senders();
    for (from, want) in [
        ("ACME", Some("ACME")),
        ("acme", Some("ACME")),
        ("+48 500 100 200", Some("+48500100200")),
        // A pool's number may be named directly.
        ("+48500100202", Some("+48500100202")),
    ] {
        let mut s = sms(TO, "Dzień dobry", tue_10());
        s.sender = Some(from);
        let v = fresh(&s, &p);
        assert_verdict(&v, Decision::Allow, &[]);
        assert_eq!(v.sender.as_deref(), want, "{from}");
    }
    for from in ["ACME2", "ACM", "+48500100299", "windykacja2"] {
        let mut s = sms(TO, "Dzień dobry", tue_10());
        s.sender = Some(from);
        let v = fresh(&s, &p);
        assert_verdict(&v, Decision::Reject, &[R::SenderNotRegistered]);
        assert_eq!(v.sender, None);
    }
    // Nothing registered: no sender may be chosen (impersonation), while a
    // message naming none is fine (the connector's default sender).
    let mut s = sms(TO, "Dzień dobry", tue_10());
    s.sender = Some("PKO-BANK-FAKE");
    let v = fresh(&s, &quiet());
    assert_verdict(&v, Decision::Reject, &[R::SenderNotRegistered]);
    assert_eq!(fresh(&sms(TO, "x", tue_10()), &quiet()).sender, None);
    // No sender and no default pool: the route decides.
    assert_eq!(fresh(&sms(TO, "x", tue_10()), &p).sender, None);
}

#[test]
fn round_robin_pool_cycles_through_the_store_counter() {
    let p = with_senders();
    let mut store = MemoryCounters::new();
    let mut got = Vec::new();
    for i in 0..4 {
        let to = format!("+4860123456{i}");
        let mut s = sms(&to, "Dzień dobry", tue_10());
        s.sender = Some("windykacja");
        let v = send(&s, &p, &mut store);
        assert_verdict(&v, Decision::Allow, &[]);
        assert!(v
            .record
            .iter()
            .any(|i| i.key == "af:rr:acme:windykacja" && i.field == 0));
        got.push(v.sender.unwrap());
    }
    assert_eq!(
        got,
        [
            "+48500100201",
            "+48500100202",
            "+48500100203",
            "+48500100201"
        ]
    );
    // A rejected message does not advance the position.
    let mut s = sms(TO, "Dzień dobry", tue_10());
    s.sender = Some("windykacja");
    let mut rejecting = p.clone();
    rejecting.recipients.blocked_prefixes = vec!["48".into()];
    assert!(send(&s, &rejecting, &mut store).record.is_empty());
    assert_eq!(
        send(&s, &p, &mut store).sender.as_deref(),
        Some("+48500100202")
    );
}

#[test]
fn default_pool_sticky_and_random() {
    let mut p = with_senders();
    p.default_pool = Some("stali".into());
    let first = fresh(&sms(TO, "a", tue_10()), &p).sender.unwrap();
    assert!(first.starts_with("+48500100"));
    for (i, when) in [tue_10(), at("2026-03-11T09:00:00Z")]
        .into_iter()
        .enumerate()
    {
        let mut s = sms(TO, "b", when);
        s.seed = i as u64 * 77;
        assert_eq!(fresh(&s, &p).sender.as_deref(), Some(first.as_str()));
    }
    // Recipients spread over the pool.
    let numbers: std::collections::HashSet<String> = (0..60)
        .map(|i| format!("+48601{i:06}"))
        .map(|to| fresh(&sms(&to, "c", tue_10()), &p).sender.unwrap())
        .collect();
    assert_eq!(numbers.len(), 3);
    // E-mail does not take a number from the default pool.
    let e = Screening::new("acme", Channel::Email, "jan@example.com", "x", tue_10());
    assert_eq!(fresh(&e, &p).sender, None);

    // Random: decided by the seed only.
    let mut s = sms(TO, "d", tue_10());
    s.sender = Some("losowo");
    let picks: std::collections::HashSet<String> = (0..50)
        .map(|seed| {
            s.seed = seed;
            fresh(&s, &p).sender.unwrap()
        })
        .collect();
    assert_eq!(picks.len(), 3);
    s.seed = 7;
    assert_eq!(fresh(&s, &p).sender, fresh(&s, &p).sender);
}

// ---------------------------------------------------------------- recipients

#[test]
fn country_allowlist() {
    let mut p = quiet();
    p.recipients.allowed_countries = vec!["PL".into()];
    // A German mobile at a time inside the hours in Berlin too.
    let v = fresh(&sms("+4915112345678", "Hallo", tue_10()), &p);
    assert_verdict(&v, Decision::Reject, &[R::CountryNotAllowed]);
    assert_verdict(
        &fresh(&sms(TO, "Cześć", tue_10()), &p),
        Decision::Allow,
        &[],
    );
    p.recipients.allowed_countries = vec!["pl".into(), "DE".into()];
    let v = fresh(&sms("+4915112345678", "Hallo", tue_10()), &p);
    assert_verdict(&v, Decision::Allow, &[]);
    // A number whose country is unknown fails an allowlist.
    let v = fresh(&sms("+999123456789", "x", tue_10()), &p);
    assert!(v.has(R::CountryNotAllowed), "{v:?}");
}

#[test]
fn blocked_prefixes() {
    let mut p = quiet();
    p.recipients.blocked_prefixes = vec!["+48601".into()];
    assert_verdict(
        &fresh(&sms(TO, "x", tue_10()), &p),
        Decision::Reject,
        &[R::BlockedPrefix],
    );
    // Near miss: the next range.
    let v = fresh(&sms("+48602234567", "x", tue_10()), &p);
    assert_verdict(&v, Decision::Allow, &[]);
    p.recipients.blocked_prefixes = vec!["486012345678".into()];
    assert_verdict(&fresh(&sms(TO, "x", tue_10()), &p), Decision::Allow, &[]);
}

#[test]
fn premium_rate_prefixes_and_types() {
    let mut p = quiet();
    // +48 70x is Polish premium rate: the default list, and libphonenumber.
    let v = fresh(&sms("+48701234567", "x", tue_10()), &p);
    assert_verdict(&v, Decision::Reject, &[R::PremiumRate, R::NotMobile]);
    p.recipients.premium_prefixes.clear();
    p.recipients.require_mobile = false;
    let v = fresh(&sms("+48701234567", "x", tue_10()), &p);
    assert_verdict(&v, Decision::Reject, &[R::PremiumRate]);
    // A configured prefix alone, on a mobile number.
    p.recipients.premium_prefixes = vec!["4860123".into()];
    assert_verdict(
        &fresh(&sms(TO, "x", tue_10()), &p),
        Decision::Reject,
        &[R::PremiumRate],
    );
    // Near miss: one digit further along.
    let v = fresh(&sms("+48601334567", "x", tue_10()), &p);
    assert_verdict(&v, Decision::Allow, &[]);
}

#[test]
fn not_mobile_for_sms_and_rcs_only() {
    let p = quiet();
    // Warsaw landline.
    for channel in [Channel::Sms, Channel::Rcs] {
        let s = Screening::new("acme", channel, "+48221234567", "x", tue_10());
        assert_verdict(&fresh(&s, &p), Decision::Reject, &[R::NotMobile]);
    }
    // Unparseable and invalid numbers are not mobiles either.
    for bad in ["+999123", "+4860123", "not a number"] {
        assert!(
            fresh(&sms(bad, "x", tue_10()), &p).has(R::NotMobile),
            "{bad}"
        );
    }
    // Near miss: a mobile, and a US number (FIXED_LINE_OR_MOBILE) at a time
    // that is fine in the default zone.
    assert_verdict(&fresh(&sms(TO, "x", tue_10()), &p), Decision::Allow, &[]);
    let v = fresh(&sms("+16502530000", "x", tue_10()), &p);
    assert_verdict(&v, Decision::Allow, &[]);
    // The rule can be turned off.
    let mut off = p.clone();
    off.recipients.require_mobile = false;
    assert_verdict(
        &fresh(&sms("+48221234567", "x", tue_10()), &off),
        Decision::Allow,
        &[],
    );
}

#[test]
fn pre_parsed_number_gives_the_same_verdict() {
    let p = TenantPolicy::default();
    let parsed = phonenumber::parse(None, "+48221234567").unwrap();
    let mut s = sms("+48221234567", "x", tue_10());
    let without = fresh(&s, &p);
    s.number = Some(&parsed);
    assert_eq!(fresh(&s, &p), without);
    assert!(without.has(R::NotMobile));
    // With its type given (as validation computed it): the same verdict.
    s.number_type = Some(parsed.number_type(&phonenumber::metadata::DATABASE));
    assert_eq!(fresh(&s, &p), without);
    // The given type is what is used: it is not computed again.
    s.number_type = Some(phonenumber::Type::Mobile);
    assert!(!fresh(&s, &p).has(R::NotMobile));
}

// ---------------------------------------------------------------- pumping

fn pumping() -> TenantPolicy {
    let mut p = quiet();
    p.pumping.enabled = true;
    p.pumping.prefix_floor = 5;
    p.pumping.prefix_multiple = 5.0;
    p.pumping.country_floor = 1_000_000;
    p
}

#[test]
fn prefix_pumping_floor_and_baseline() {
    let p = pumping();
    let s = sms(TO, "x", tue_10());
    use CounterKind::{PrefixBaseline as B, PrefixWindow as W};
    // No baseline: the floor decides. 4 earlier + this one = 5, not above 5.
    assert_verdict(&with_values(&s, &p, &[(W, 4)]), Decision::Allow, &[]);
    assert_verdict(
        &with_values(&s, &p, &[(W, 5)]),
        Decision::Hold,
        &[R::PrefixPumping],
    );
    // Baseline 1440 over 24 h = 10 per 10 minutes, × 5 = 50.
    assert_verdict(
        &with_values(&s, &p, &[(W, 49), (B, 1440)]),
        Decision::Allow,
        &[],
    );
    let v = with_values(&s, &p, &[(W, 50), (B, 1440)]);
    assert_verdict(&v, Decision::Hold, &[R::PrefixPumping]);
    // A held message is still counted.
    assert!(v.record.iter().any(|i| i.key.starts_with("af:pw:60:acme:")));
}

#[test]
fn country_pumping_floor_and_baseline() {
    let mut p = pumping();
    p.pumping.prefix_floor = 1_000_000;
    p.pumping.country_floor = 100;
    p.pumping.country_multiple = 3.0;
    let s = sms(TO, "x", tue_10());
    use CounterKind::{CountryBaseline as B, CountryWindow as W};
    assert_verdict(&with_values(&s, &p, &[(W, 99)]), Decision::Allow, &[]);
    assert_verdict(
        &with_values(&s, &p, &[(W, 100)]),
        Decision::Hold,
        &[R::CountryPumping],
    );
    // Baseline 14400 / 144 = 100 per window, × 3 = 300.
    assert_verdict(
        &with_values(&s, &p, &[(W, 299), (B, 14_400)]),
        Decision::Allow,
        &[],
    );
    let v = with_values(&s, &p, &[(W, 300), (B, 14_400)]);
    assert_verdict(&v, Decision::Hold, &[R::CountryPumping]);
    // Exempt countries are not counted at all.
    p.pumping.exempt_countries = vec!["PL".into()];
    assert!(needs(&s, &p).read(CounterKind::CountryWindow).is_none());
}

#[test]
fn pumping_through_the_store() {
    let p = pumping();
    let mut store = MemoryCounters::new();
    let t0 = tue_10();
    // Five numbers of the same 6-digit prefix (4860 12), a minute apart.
    for i in 0..5 {
        let to = format!("+4860120000{i}");
        let v = send(
            &sms(&to, "x", t0 + SignedDuration::from_mins(i)),
            &p,
            &mut store,
        );
        assert_verdict(&v, Decision::Allow, &[]);
    }
    let v = send(
        &sms("+48601299999", "x", t0 + SignedDuration::from_mins(5)),
        &p,
        &mut store,
    );
    assert_verdict(&v, Decision::Hold, &[R::PrefixPumping]);
    // Another prefix is unaffected.
    let v = run(
        &sms("+48602299999", "x", t0 + SignedDuration::from_mins(5)),
        &p,
        &store,
    );
    assert_verdict(&v, Decision::Allow, &[]);
    // Once the burst has left the 10-minute window, the hour's traffic is
    // baseline: 6 / 144 per window is far below the floor, so it passes.
    let later = t0 + SignedDuration::from_mins(80);
    let v = run(&sms("+48601288888", "x", later), &p, &store);
    assert_verdict(&v, Decision::Allow, &[]);
}

#[test]
fn sequential_numbers() {
    let mut p = quiet();
    p.pumping.sequential.enabled = true;
    p.pumping.sequential.threshold = 10;
    let s = sms(TO, "x", tue_10());
    use CounterKind::{SequenceBlock as B, SequenceRecipient as R1};
    // 9 other numbers of the block + this new one = 10.
    assert_verdict(
        &with_values(&s, &p, &[(B, 9)]),
        Decision::Hold,
        &[R::SequentialNumbers],
    );
    // Near misses: 8 + this one; or this number was already counted.
    assert_verdict(&with_values(&s, &p, &[(B, 8)]), Decision::Allow, &[]);
    assert_verdict(
        &with_values(&s, &p, &[(B, 9), (R1, 1)]),
        Decision::Allow,
        &[],
    );
}

#[test]
fn sequential_numbers_through_the_store() {
    let mut p = quiet();
    p.pumping.sequential.enabled = true;
    p.pumping.sequential.threshold = 5;
    let mut store = MemoryCounters::new();
    let t0 = tue_10();
    // Four consecutive numbers, then one of them again: still four distinct.
    for (i, to) in [
        "+48601234500",
        "+48601234501",
        "+48601234502",
        "+48601234503",
        "+48601234501",
    ]
    .iter()
    .enumerate()
    {
        let v = send(
            &sms(to, "x", t0 + SignedDuration::from_secs(i as i64 * 20)),
            &p,
            &mut store,
        );
        assert_verdict(&v, Decision::Allow, &[]);
    }
    // A number of another block does not count.
    let v = send(
        &sms("+48601234699", "x", t0 + SignedDuration::from_secs(100)),
        &p,
        &mut store,
    );
    assert_verdict(&v, Decision::Allow, &[]);
    // The fifth distinct number of the block is held.
    let v = send(
        &sms("+48601234504", "x", t0 + SignedDuration::from_secs(120)),
        &p,
        &mut store,
    );
    assert_verdict(&v, Decision::Hold, &[R::SequentialNumbers]);
    // Six minutes later the early ones have left the 5-minute window.
    let later = t0 + SignedDuration::from_secs(120 + 360);
    let v = run(&sms("+48601234505", "x", later), &p, &store);
    assert_verdict(&v, Decision::Allow, &[]);
}

// ---------------------------------------------------------------- duplicates

#[test]
fn duplicates_within_the_window() {
    let mut p = quiet();
    p.duplicates.enabled = true;
    p.duplicates.window = Duration::from_secs(3600);
    let mut store = MemoryCounters::new();
    let t0 = tue_10();
    let first = send(&sms(TO, "Twój kod: 1234", t0), &p, &mut store);
    assert_verdict(&first, Decision::Allow, &[]);
    let again = run(
        &sms(TO, "Twój kod: 1234", t0 + SignedDuration::from_mins(59)),
        &p,
        &store,
    );
    assert_verdict(&again, Decision::Reject, &[R::Duplicate]);
    // Near misses: another text, another recipient, another tenant.
    let v = run(
        &sms(TO, "Twój kod: 1235", t0 + SignedDuration::from_mins(1)),
        &p,
        &store,
    );
    assert_verdict(&v, Decision::Allow, &[]);
    let v = run(&sms("+48601234568", "Twój kod: 1234", t0), &p, &store);
    assert_verdict(&v, Decision::Allow, &[]);
    let mut other = sms(TO, "Twój kod: 1234", t0);
    other.tenant = "other";
    assert_verdict(&run(&other, &p, &store), Decision::Allow, &[]);
    // After the window (plus at most one 6-minute bucket) it is allowed again.
    let later = t0 + SignedDuration::from_mins(66);
    assert_verdict(
        &run(&sms(TO, "Twój kod: 1234", later), &p, &store),
        Decision::Allow,
        &[],
    );
    // Off for OTP-like traffic.
    p.duplicates.enabled = false;
    let v = run(
        &sms(TO, "Twój kod: 1234", t0 + SignedDuration::from_mins(1)),
        &p,
        &store,
    );
    assert_verdict(&v, Decision::Allow, &[]);
}

// ---------------------------------------------------------------- contact hours

fn hours_case(p: &TenantPolicy, to: &str, now: &str) -> Verdict {
    fresh(&sms(to, "x", at(now)), p)
}

fn assert_scheduled(v: &Verdict, when: &str) {
    assert_verdict(v, Decision::Allow, &[R::OutsideContactHours]);
    assert_eq!(v.schedule_at, Some(at(when)), "{v:?}");
}

fn assert_now(v: &Verdict) {
    assert_verdict(v, Decision::Allow, &[]);
    assert_eq!(v.schedule_at, None);
}

#[test]
fn weekday_window_edges() {
    let p = quiet();
    // Tuesday 10 March 2026, Warsaw is UTC+1.
    assert_now(&hours_case(&p, TO, "2026-03-10T18:59:59Z")); // 19:59:59
    assert_scheduled(
        &hours_case(&p, TO, "2026-03-10T19:00:00Z"),
        "2026-03-11T07:00:00Z",
    ); // 20:00
    assert_scheduled(
        &hours_case(&p, TO, "2026-03-10T06:59:00Z"),
        "2026-03-10T07:00:00Z",
    ); // 07:59
    assert_now(&hours_case(&p, TO, "2026-03-10T07:00:00Z")); // 08:00
                                                             // Friday 20:00 → Saturday 10:00.
    assert_scheduled(
        &hours_case(&p, TO, "2026-03-13T19:00:00Z"),
        "2026-03-14T09:00:00Z",
    );
}

#[test]
fn saturday_and_sunday_windows() {
    let p = quiet();
    assert_scheduled(
        &hours_case(&p, TO, "2026-03-14T08:59:00Z"),
        "2026-03-14T09:00:00Z",
    ); // Sat 09:59
    assert_now(&hours_case(&p, TO, "2026-03-14T14:59:00Z")); // Sat 15:59
                                                             // Sat 16:00 → Sunday closed → Monday 08:00.
    assert_scheduled(
        &hours_case(&p, TO, "2026-03-14T15:00:00Z"),
        "2026-03-16T07:00:00Z",
    );
    assert_scheduled(
        &hours_case(&p, TO, "2026-03-15T11:00:00Z"),
        "2026-03-16T07:00:00Z",
    );
    // An open Sunday window.
    let mut open = p.clone();
    open.contact.sunday = "12:00-14:00".parse().unwrap();
    assert_scheduled(
        &hours_case(&open, TO, "2026-03-15T10:00:00Z"),
        "2026-03-15T11:00:00Z",
    );
    assert_now(&hours_case(&open, TO, "2026-03-15T12:59:00Z"));
}

#[test]
fn dst_spring_forward() {
    let p = quiet();
    // Sunday 29 March 2026, 01:30 CET: clocks go 02:00 → 03:00. Next:
    // Monday 08:00 CEST = 06:00 UTC (not 07:00).
    assert_scheduled(
        &hours_case(&p, TO, "2026-03-29T00:30:00Z"),
        "2026-03-30T06:00:00Z",
    );
    // Saturday 18:00 CET → Monday 08:00 CEST.
    assert_scheduled(
        &hours_case(&p, TO, "2026-03-28T17:00:00Z"),
        "2026-03-30T06:00:00Z",
    );
    // A window opening inside the skipped hour opens when it ends.
    let mut gap = p.clone();
    gap.contact.sunday = "02:30-05:00".parse().unwrap();
    assert_scheduled(
        &hours_case(&gap, TO, "2026-03-29T00:30:00Z"),
        "2026-03-29T01:00:00Z",
    );
    assert_now(&hours_case(&gap, TO, "2026-03-29T02:59:00Z")); // 04:59 CEST
    assert_scheduled(
        &hours_case(&gap, TO, "2026-03-29T03:00:00Z"),
        "2026-03-30T06:00:00Z",
    );
    // A window ending inside the skipped hour ends at the change.
    let mut end = p.clone();
    end.contact.sunday = "01:00-02:30".parse().unwrap();
    assert_now(&hours_case(&end, TO, "2026-03-29T00:59:00Z")); // 01:59 CET
    assert_scheduled(
        &hours_case(&end, TO, "2026-03-29T01:00:00Z"),
        "2026-03-30T06:00:00Z",
    ); // 03:00 CEST
}

#[test]
fn dst_fall_back() {
    let p = quiet();
    // Saturday 24 October 2026, 20:00 CEST → Monday 26th 08:00 CET = 07:00 UTC.
    assert_scheduled(
        &hours_case(&p, TO, "2026-10-24T18:00:00Z"),
        "2026-10-26T07:00:00Z",
    );
    // Sunday 25th, 02:30 in the first (CEST) pass of the repeated hour.
    assert_scheduled(
        &hours_case(&p, TO, "2026-10-25T00:30:00Z"),
        "2026-10-26T07:00:00Z",
    );
    // Weekday 19:59 / 20:00 just after the change (Monday 26th, CET).
    assert_now(&hours_case(&p, TO, "2026-10-26T18:59:00Z"));
    assert_scheduled(
        &hours_case(&p, TO, "2026-10-26T19:00:00Z"),
        "2026-10-27T07:00:00Z",
    );
    // The repeated hour is open for both passes when the window spans it.
    let mut night = p.clone();
    night.contact.sunday = "01:00-04:00".parse().unwrap();
    assert_now(&hours_case(&night, TO, "2026-10-25T00:30:00Z")); // 02:30 CEST
    assert_now(&hours_case(&night, TO, "2026-10-25T01:30:00Z")); // 02:30 CET
    assert_now(&hours_case(&night, TO, "2026-10-25T02:59:00Z")); // 03:59 CET
    assert_scheduled(
        &hours_case(&night, TO, "2026-10-25T03:00:00Z"),
        "2026-10-26T07:00:00Z",
    );
}

#[test]
fn polish_holidays_are_closed() {
    let p = quiet();
    // Wednesday 11 November 2026, Independence Day → Thursday 08:00.
    assert_scheduled(
        &hours_case(&p, TO, "2026-11-11T09:00:00Z"),
        "2026-11-12T07:00:00Z",
    );
    // Near miss: the day before.
    assert_now(&hours_case(&p, TO, "2026-11-10T09:00:00Z"));
    // Easter 2027 is 28 March, the day clocks go forward; Easter Monday the
    // 29th. Saturday 27th 16:00 CET → Tuesday 30th 08:00 CEST.
    assert_scheduled(
        &hours_case(&p, TO, "2027-03-27T15:00:00Z"),
        "2027-03-30T06:00:00Z",
    );
    assert_scheduled(
        &hours_case(&p, TO, "2027-03-29T08:00:00Z"),
        "2027-03-30T06:00:00Z",
    );
    assert_now(&hours_case(&p, TO, "2027-03-30T06:00:00Z"));
    // Christmas Eve 2026 (Thursday) to Boxing Day, then Sunday: Monday 28th.
    assert_scheduled(
        &hours_case(&p, TO, "2026-12-24T09:00:00Z"),
        "2026-12-28T07:00:00Z",
    );
    // Holidays follow Sunday's hours when Sunday is open.
    let mut open = p.clone();
    open.contact.sunday = "12:00-14:00".parse().unwrap();
    assert_scheduled(
        &hours_case(&open, TO, "2026-11-11T09:00:00Z"),
        "2026-11-11T11:00:00Z",
    );
    // No built-in calendar: an ordinary Wednesday.
    let mut none = p.clone();
    none.contact.holidays = HolidayCalendar::None;
    assert_now(&hours_case(&none, TO, "2026-11-11T09:00:00Z"));
    // Extra dates.
    let mut extra = p.clone();
    extra.contact.extra_holidays = vec!["2026-12-31".parse().unwrap()];
    extra.normalize().unwrap();
    assert_scheduled(
        &hours_case(&extra, TO, "2026-12-31T09:00:00Z"),
        "2027-01-02T09:00:00Z",
    );
    assert_now(&hours_case(&extra, TO, "2026-12-30T09:00:00Z"));
}

#[test]
fn time_zone_from_the_number_or_the_default() {
    let p = quiet();
    // Tuesday 19:30 UTC: 19:30 in London (open), 20:30 in Warsaw (closed).
    assert_now(&hours_case(&p, "+447400123456", "2026-03-10T19:30:00Z"));
    assert_scheduled(
        &hours_case(&p, TO, "2026-03-10T19:30:00Z"),
        "2026-03-11T07:00:00Z",
    );
    // Tenant override of a country's zone.
    let mut o = p.clone();
    o.contact
        .time_zones
        .insert("GB".into(), "Europe/Warsaw".into());
    assert_scheduled(
        &hours_case(&o, "+447400123456", "2026-03-10T19:30:00Z"),
        "2026-03-11T07:00:00Z",
    );
    // E-mail uses the tenant's default zone.
    let email = |p: &TenantPolicy| {
        let s = Screening::new(
            "acme",
            Channel::Email,
            "jan@example.com",
            "x",
            at("2026-03-10T19:30:00Z"),
        );
        fresh(&s, p)
    };
    assert_scheduled(&email(&p), "2026-03-11T07:00:00Z");
    let mut london = p.clone();
    london.contact.default_time_zone = "Europe/London".into();
    assert_now(&email(&london));
    // A country outside the built-in map uses the default zone too.
    let v = hours_case(&p, "+16502530000", "2026-03-10T19:30:00Z");
    assert_scheduled(&v, "2026-03-11T07:00:00Z");
}

#[test]
fn send_at_is_checked_instead_of_now() {
    let p = quiet();
    let mut s = sms(TO, "x", at("2026-03-10T21:00:00Z"));
    s.send_at = Some(at("2026-03-11T08:00:00Z")); // Wednesday 09:00
    assert_now(&fresh(&s, &p));
    s.send_at = Some(at("2026-03-11T20:00:00Z")); // Wednesday 21:00
    assert_scheduled(&fresh(&s, &p), "2026-03-12T07:00:00Z");
    // A send_at in the past counts as now.
    s.send_at = Some(at("2026-03-10T09:00:00Z"));
    assert_scheduled(&fresh(&s, &p), "2026-03-11T07:00:00Z");
}

#[test]
fn transactional_bypasses_hours_and_caps_not_fraud_rules() {
    let mut p = TenantPolicy {
        policy: PolicyKind::Transactional,
        ..TenantPolicy::default()
    };
    p.contact.max_per_day = Some(1);
    let night = at("2026-03-10T22:00:00Z");
    let mut store = MemoryCounters::new();
    for i in 0..3 {
        let text = format!("Kod {i}");
        assert_now(&send(&sms(TO, &text, night), &p, &mut store));
    }
    let n = needs(&sms(TO, "x", night), &p);
    assert!(n.read(CounterKind::FreqDay).is_none());
    // Fraud rules still apply.
    assert_verdict(
        &fresh(&sms(TO, "bit.ly/x", night), &p),
        Decision::Hold,
        &[R::UrlShortener],
    );
    let v = run(&sms(TO, "Kod 0", night), &p, &store);
    assert_verdict(&v, Decision::Reject, &[R::Duplicate]);
}

// ---------------------------------------------------------------- frequency caps

#[test]
fn frequency_cap_per_day() {
    let mut p = quiet();
    p.contact.max_per_day = Some(3);
    let s = sms(TO, "x", tue_10());
    assert_verdict(
        &with_values(&s, &p, &[(CounterKind::FreqDay, 2)]),
        Decision::Allow,
        &[],
    );
    let v = with_values(&s, &p, &[(CounterKind::FreqDay, 3)]);
    assert_verdict(&v, Decision::Reject, &[R::FrequencyCap]);
    assert!(v.record.is_empty());

    let mut store = MemoryCounters::new();
    let t0 = tue_10();
    for i in 0..3 {
        let text = format!("Przypomnienie {i}");
        let v = send(
            &sms(TO, &text, t0 + SignedDuration::from_mins(i * 30)),
            &p,
            &mut store,
        );
        assert_now(&v);
    }
    let v = send(
        &sms(TO, "Jeszcze raz", t0 + SignedDuration::from_hours(3)),
        &p,
        &mut store,
    );
    assert_verdict(&v, Decision::Reject, &[R::FrequencyCap]);
    // Another recipient is not affected.
    assert_now(&run(
        &sms("+48601234568", "x", t0 + SignedDuration::from_hours(3)),
        &p,
        &store,
    ));
    // Rolling 24 h in hourly buckets: 23 h later all three still count; 25 h
    // later the 10:00 and 10:30 ones have left (the 11:00 one counts: 1 < 3).
    let next = t0 + SignedDuration::from_hours(23);
    let v = run(&sms(TO, "Dzień później", next), &p, &store);
    assert_verdict(&v, Decision::Reject, &[R::FrequencyCap]);
    let next = t0 + SignedDuration::from_hours(25);
    assert_now(&run(&sms(TO, "Dzień później", next), &p, &store));
}

/// Two instances screen the same recipient at the same moment: both read 2
/// of 3 and pass `check`; the reservations let only one through, and a
/// released reservation frees the place again.
#[test]
fn cap_reservation_is_exact_between_concurrent_checks() {
    let mut p = quiet();
    p.contact.max_per_day = Some(3);
    p.duplicates.enabled = true;
    let mut store = MemoryCounters::new();
    let t0 = tue_10();
    for i in 0..2 {
        send(&sms(TO, &format!("Nr {i}"), t0), &p, &mut store);
    }
    let a = run(&sms(TO, "A", t0), &p, &store);
    let mut b = run(&sms(TO, "B", t0), &p, &store);
    assert_now(&a);
    assert_now(&b);
    let caps_b = b.caps.clone();
    assert_eq!(store.reserve(&a.caps, t0), None);
    let full = store.reserve(&caps_b, t0).expect("the last place is taken");
    assert_eq!(caps_b[full].reason(), R::FrequencyCap);
    b.refuse(caps_b[full].reason());
    assert_verdict(&b, Decision::Reject, &[R::FrequencyCap]);
    assert!(b.caps.is_empty() && b.record.is_empty() && b.schedule_at.is_none());
    // All or nothing: B's duplicate counter was not counted.
    let dup = caps_b.iter().find(|c| c.reason() == R::Duplicate).unwrap();
    assert_eq!(store.field_count(&dup.inc.key), 0);
    // A was not stored after all: its places are free again, once.
    for cap in &a.caps {
        store.release(cap, t0);
    }
    assert_eq!(store.reserve(&caps_b, t0), None);
    assert!(store.reserve(&a.caps, t0).is_some());
    // A refusal for a reason that only holds keeps the reservations.
    let mut held = run(&sms(TO, "C", t0), &p, &MemoryCounters::new());
    let n = held.caps.len();
    held.refuse(R::UrlShortener);
    assert_verdict(&held, Decision::Hold, &[R::UrlShortener]);
    assert_eq!(held.caps.len(), n);
}

#[test]
fn frequency_cap_per_week() {
    let mut p = quiet();
    p.contact.max_per_week = Some(3);
    let s = sms(TO, "x", tue_10());
    assert_verdict(
        &with_values(&s, &p, &[(CounterKind::FreqWeek, 2)]),
        Decision::Allow,
        &[],
    );
    let v = with_values(&s, &p, &[(CounterKind::FreqWeek, 3)]);
    assert_verdict(&v, Decision::Reject, &[R::FrequencyCap]);

    let mut store = MemoryCounters::new();
    // Tuesday, Wednesday, Thursday at 10:00, then Friday.
    for day in 0..3 {
        let text = format!("Dzień {day}");
        assert_now(&send(
            &sms(TO, &text, tue_10() + SignedDuration::from_hours(24 * day)),
            &p,
            &mut store,
        ));
    }
    let friday = tue_10() + SignedDuration::from_hours(72);
    assert_verdict(
        &run(&sms(TO, "Piątek", friday), &p, &store),
        Decision::Reject,
        &[R::FrequencyCap],
    );
    // Rolling 7 days in daily buckets: a week after the first one all three
    // still count; eight days after, the first has left (2 < 3).
    let week = tue_10() + SignedDuration::from_hours(24 * 7);
    assert_verdict(
        &run(&sms(TO, "Tydzień", week), &p, &store),
        Decision::Reject,
        &[R::FrequencyCap],
    );
    let later = tue_10() + SignedDuration::from_hours(24 * 8);
    assert_now(&run(&sms(TO, "Później", later), &p, &store));
}

// ---------------------------------------------------------------- opt-out

#[test]
fn opted_out_recipients_are_rejected() {
    let p = quiet();
    let s = sms(TO, "x", tue_10());
    let n = needs(&s, &p);
    let key = n.opt_out_key().to_owned();
    let v = check(
        &s,
        &p,
        &Counters::new(n, vec![0; needs(&s, &p).reads().len()], true).unwrap(),
    );
    assert_verdict(&v, Decision::Reject, &[R::OptedOut]);
    assert!(v.record.is_empty());

    let mut store = MemoryCounters::new();
    store.set_opted_out(&key, true);
    assert_verdict(&run(&s, &p, &store), Decision::Reject, &[R::OptedOut]);
    // Near misses: another tenant, another recipient, after opting back in.
    let mut other = s;
    other.tenant = "other";
    assert_now(&run(&other, &p, &store));
    assert_now(&run(&sms("+48601234568", "x", tue_10()), &p, &store));
    let transactional = TenantPolicy {
        policy: PolicyKind::Transactional,
        ..quiet()
    };
    assert_verdict(
        &run(&s, &transactional, &store),
        Decision::Reject,
        &[R::OptedOut],
    );
    store.set_opted_out(&key, false);
    assert_now(&run(&s, &p, &store));
}

// ---------------------------------------------------------------- verdict shape

#[test]
fn all_reasons_collected_most_severe_wins() {
    let list = Blocklist::parse("evil.pl");
    let mut p = with_senders();
    p.recipients.allowed_countries = vec!["DE".into()];
    let mut s = sms(TO, "evil.pl i bit.ly/x", at("2026-03-10T21:00:00Z"));
    s.blocklist = &list;
    s.sender = Some("NIKT");
    let v = fresh(&s, &p);
    assert_verdict(
        &v,
        Decision::Reject,
        &[
            R::BlocklistedDomain,
            R::UrlShortener,
            R::SenderNotRegistered,
            R::CountryNotAllowed,
            R::OutsideContactHours,
        ],
    );
    // Rejected: nothing to schedule, nothing to count.
    assert_eq!(v.schedule_at, None);
    assert!(v.record.is_empty());
    // Hold plus outside hours: held, with the moment it may go.
    let v = fresh(&sms(TO, "bit.ly/x", at("2026-03-10T21:00:00Z")), &quiet());
    assert_verdict(
        &v,
        Decision::Hold,
        &[R::UrlShortener, R::OutsideContactHours],
    );
    assert_eq!(v.schedule_at, Some(at("2026-03-11T07:00:00Z")));
}

#[test]
fn needs_keys_and_record_layout() {
    let mut p = with_senders();
    p.contact.max_per_day = Some(3);
    p.contact.max_per_week = Some(10);
    p.duplicates.enabled = true;
    p.pumping.enabled = true;
    p.pumping.sequential.enabled = true;
    let mut s = sms(TO, "Tajny tekst wiadomości", tue_10());
    s.sender = Some("windykacja");
    s.key_salt = b"salt";
    let n = needs(&s, &p);
    let kinds: Vec<CounterKind> = n.reads().iter().map(|r| r.kind).collect();
    use CounterKind::*;
    assert_eq!(
        kinds,
        [
            FreqDay,
            FreqWeek,
            Duplicate,
            PrefixWindow,
            PrefixBaseline,
            CountryWindow,
            CountryBaseline,
            SequenceBlock,
            SequenceRecipient,
            RoundRobin
        ]
    );
    let now = tue_10().as_second();
    for r in n.reads() {
        // No personal data or text in keys.
        for secret in ["601234567", "48601", "Tajny", "tekst"] {
            assert!(!r.key.contains(secret), "{}", r.key);
        }
        assert!(
            r.key.starts_with(&format!("af:{}:", r.kind.as_str())),
            "{}",
            r.key
        );
        assert!(r.key.contains(":acme:"), "{}", r.key);
        if let Some(w) = r.window {
            assert!(r.key.contains(&format!(":{}:", w.bucket_secs())));
            let cur = now.div_euclid(i64::from(w.bucket_secs()));
            match r.kind {
                PrefixBaseline | CountryBaseline => assert_eq!(*r.fields.end(), cur - 1),
                _ => assert_eq!(*r.fields.end(), cur),
            }
        }
    }
    assert_eq!(
        n.read(FreqDay).unwrap().key.len(),
        "af:fd:3600:acme:{}".len() + 20
    );
    assert_eq!(n.read(FreqDay).unwrap().fields.clone().count(), 25);
    assert_eq!(n.read(FreqWeek).unwrap().fields.clone().count(), 8);
    assert_eq!(n.read(PrefixBaseline).unwrap().fields.clone().count(), 24);
    assert_eq!(n.read(CountryWindow).unwrap().key, "af:cw:60:acme:PL");
    assert_eq!(n.read(RoundRobin).unwrap().key, "af:rr:acme:windykacja");
    assert!(n.opt_out_key().starts_with("af:oo:acme:"));
    // The salt changes every digest.
    let mut unsalted = s;
    unsalted.key_salt = b"";
    assert_ne!(
        needs(&unsalted, &p).read(FreqDay).unwrap().key,
        n.read(FreqDay).unwrap().key
    );
    // Same recipient, same digest in the frequency and sequential keys.
    let digest = |k: CounterKind| {
        n.read(k)
            .unwrap()
            .key
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        digest(FreqDay),
        format!("{{{}}}", digest(SequenceRecipient))
    );
    // The capped counters share that digest as their hash tag.
    assert!(n.read(Duplicate).unwrap().key.contains(&digest(FreqDay)));

    // A first message increments every counter read, in the current bucket.
    // The capped ones (the frequency caps and the duplicate check, read
    // first) as reservations with their limits and reasons.
    let v = check(&s, &p, &Counters::zero(n.clone()));
    let caps: Vec<(CounterKind, u64, ReasonCode)> = v
        .caps
        .iter()
        .map(|c| {
            (
                n.reads().iter().find(|r| r.key == c.inc.key).unwrap().kind,
                c.limit,
                c.reason(),
            )
        })
        .collect();
    assert_eq!(
        caps,
        [
            (FreqDay, 3, R::FrequencyCap),
            (FreqWeek, 10, R::FrequencyCap),
            (Duplicate, 1, R::Duplicate)
        ]
    );
    for c in &v.caps {
        let read = n.reads().iter().find(|r| r.key == c.inc.key).unwrap();
        assert_eq!(c.read, read.fields);
    }
    let incs: Vec<&Increment> = v.caps.iter().map(|c| &c.inc).chain(&v.record).collect();
    assert_eq!(incs.len(), 10);
    for (inc, read) in incs.into_iter().zip(n.reads()) {
        assert_eq!(inc.key, read.key);
        assert_eq!(inc.by, 1);
        match read.window {
            Some(w) => {
                assert_eq!(inc.field, w.bucket_of(tue_10()));
                assert_eq!(inc.ttl, w.ttl(tue_10()));
                assert_eq!(inc.stale, w.stale(tue_10()));
            }
            None => {
                assert_eq!(inc.field, 0);
                assert_eq!(inc.ttl, counters::ROUND_ROBIN_TTL);
            }
        }
    }
    // A number already seen in the window does not count again for its block.
    let values: Vec<u64> = n
        .reads()
        .iter()
        .map(|r| u64::from(r.kind == SequenceRecipient))
        .collect();
    let v = check(&s, &p, &Counters::new(n.clone(), values, false).unwrap());
    assert!(v.record.iter().all(|i| !i.key.starts_with("af:sb:")));
    assert_eq!(v.record.len() + v.caps.len(), 9);
    // E-mail reads no phone counters.
    let e = Screening::new("acme", Channel::Email, "Jan@Example.com", "x", tue_10());
    let kinds: Vec<CounterKind> = needs(&e, &p).reads().iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [FreqDay, FreqWeek, Duplicate]);
    let lower = Screening::new("acme", Channel::Email, "jan@example.com", "x", tue_10());
    assert_eq!(needs(&e, &p).opt_out_key(), needs(&lower, &p).opt_out_key());
}

#[test]
fn counters_must_match_needs() {
    let p = TenantPolicy::default();
    let s = sms(TO, "x", tue_10());
    let n = needs(&s, &p);
    let len = n.reads().len();
    let err = Counters::new(n, vec![0; len + 1], false).unwrap_err();
    assert_eq!(
        err,
        CountersError {
            expected: len,
            got: len + 1
        }
    );
}

#[test]
fn default_policy_first_message_is_allowed() {
    let list = Blocklist::parse("evil.pl");
    let p = TenantPolicy::default();
    let mut s = sms(
        TO,
        "Dzień dobry, prosimy o wpłatę 120,50 zł: https://pay.acme.pl/f/1",
        tue_10(),
    );
    s.blocklist = &list;
    let mut store = MemoryCounters::new();
    let v = send(&s, &p, &mut store);
    assert_now(&v);
    assert!(!v.record.is_empty());
    // The same message again is a duplicate.
    assert_verdict(&run(&s, &p, &store), Decision::Reject, &[R::Duplicate]);
}

/// The duplicate check compares `dup_text` when the caller gives one (a
/// templated message's text with its short links as their targets): two sends
/// of one reminder with different link codes are the same text; another
/// target is not.
#[test]
fn duplicate_key_compares_the_dup_text_when_given() {
    let mut p = with_senders();
    p.duplicates.enabled = true;
    let dup_key = |text: &str, dup_text: Option<&str>| {
        let mut s = sms(TO, text, tue_10());
        s.key_salt = b"salt";
        s.dup_text = dup_text;
        needs(&s, &p)
            .reads()
            .iter()
            .find(|r| r.kind == CounterKind::Duplicate)
            .expect("duplicates are on")
            .key
            .clone()
    };
    let target = "Zaplac: https://pay.example.com/FV1";
    let first = dup_key("Zaplac: https://acme.link/aaaaaaaaaa", Some(target));
    let again = dup_key("Zaplac: https://acme.link/bbbbbbbbbb", Some(target));
    assert_eq!(first, again);
    let other = dup_key(
        "Zaplac: https://acme.link/cccccccccc",
        Some("Zaplac: https://pay.example.com/FV2"),
    );
    assert_ne!(first, other);
    // Without one, the text itself: different codes, different texts.
    assert_ne!(
        dup_key("Zaplac: https://acme.link/aaaaaaaaaa", None),
        dup_key("Zaplac: https://acme.link/bbbbbbbbbb", None)
    );
}
