//! One anti-fraud verdict for a 160-character Polish SMS with one link,
//! against a 130,000-domain blocklist, with every rule on and counters that
//! look like a tenant with steady traffic.
//!
//! `cargo bench -p goniec-benches --bench verdict`

use criterion::{criterion_group, criterion_main, Criterion};
use goniec_antifraud::{
    check, mandatory_needs, needs, Blocklist, Channel, Decision, MemoryCounters, PoolStrategy,
    ReasonCode, Screening, SenderPool, TenantPolicy,
};
use jiff::{SignedDuration, Timestamp};
use std::hint::black_box;

/// 160 characters, one link (on no list, three labels, so the blocklist
/// walk checks three names).
const TEXT: &str = "Dzień dobry, przypominamy o zaległej płatności 249,99 zł \
                    za FV/03/118. Zapłać dziś: https://platnosci.acme-windykacja.pl/f/8kLQ9 \
                    Dziękujemy i pozdrawiamy, ACME.";

const DOMAINS: usize = 130_000;

/// Deterministic synthetic blocklist in CERT Polska's format.
fn blocklist_text() -> String {
    const TLDS: [&str; 10] = [
        "pl", "com", "net", "info", "online", "xyz", "top", "shop", "com.pl", "site",
    ];
    const WORDS: [&str; 16] = [
        "platnosc",
        "dopłata",
        "inpost",
        "paczka",
        "olx",
        "allegro",
        "bank",
        "login",
        "weryfikacja",
        "faktura",
        "przesylka",
        "energa",
        "pge",
        "blik",
        "konto",
        "zwrot",
    ];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = String::from("# Synthetic CERT Polska domains.txt for the verdict bench\n");
    for i in 0..DOMAINS {
        let r = next();
        let word = WORDS[(r % 16) as usize];
        let tld = TLDS[((r >> 8) % 10) as usize];
        match (r >> 16) % 4 {
            0 => out.push_str(&format!("{word}-{i}.{tld}\n")),
            1 => out.push_str(&format!("{word}{:x}.{tld}\n", r >> 40)),
            2 => out.push_str(&format!("secure.{word}-{i}.{tld}\n")),
            _ => out.push_str(&format!(
                "{}-{word}-{i}.{tld}\n",
                ["pay", "my", "e"][((r >> 20) % 3) as usize]
            )),
        }
    }
    out
}

fn policy() -> TenantPolicy {
    let mut p = TenantPolicy {
        senders: vec!["ACME".into(), "+48500100200".into()],
        sender_pools: vec![SenderPool {
            name: "windykacja".into(),
            numbers: (1..=8).map(|i| format!("+4850010020{i}")).collect(),
            strategy: PoolStrategy::Sticky,
        }],
        default_pool: Some("windykacja".into()),
        ..TenantPolicy::default()
    };
    p.links.payment_domains = vec!["pay.acme.pl".into()];
    p.recipients.allowed_countries = vec!["PL".into(), "DE".into(), "CZ".into()];
    p.recipients.blocked_prefixes = vec!["48800".into(), "48801".into()];
    p.contact.extra_holidays = vec!["2026-12-31".parse().unwrap()];
    p.normalize().expect("valid policy");
    p
}

fn bench(c: &mut Criterion) {
    let list = Blocklist::parse(&blocklist_text());
    assert!(list.len() > 129_000, "{}", list.len());
    assert_eq!(TEXT.chars().count(), 160);
    let policy = policy();
    // Tuesday 10:15 in Warsaw.
    let now: Timestamp = "2026-03-10T09:15:00Z".parse().unwrap();
    let recipient = "+48601234567";

    // Realistic counters: the tenant has sent to this prefix, country and
    // block over the past day, and once to this recipient yesterday.
    let mut store = MemoryCounters::new();
    for i in 0..2_000u32 {
        let t = now - SignedDuration::from_secs(i64::from(i) * 43);
        let to = format!("+486012{:05}", (i * 7919) % 100_000);
        let text = format!("Przypomnienie {i}");
        let mut m = Screening::new("acme", Channel::Sms, &to, &text, t);
        m.blocklist = &list;
        let v = check(&m, &policy, &store.snapshot(needs(&m, &policy)));
        store.reserve(&v.caps, t);
        store.apply(&v.record, t);
    }
    let yesterday = now - SignedDuration::from_hours(23);
    let earlier = Screening::new(
        "acme",
        Channel::Sms,
        recipient,
        "Wczorajsze przypomnienie",
        yesterday,
    );
    let v = check(&earlier, &policy, &store.snapshot(needs(&earlier, &policy)));
    assert_eq!(store.reserve(&v.caps, yesterday), None);
    store.apply(&v.record, yesterday);

    let mut msg = Screening::new("acme", Channel::Sms, recipient, TEXT, now);
    msg.blocklist = &list;
    msg.key_salt = b"bench-salt";
    let counters = store.snapshot(needs(&msg, &policy));
    let verdict = check(&msg, &policy, &counters);
    assert_eq!(verdict.decision, Decision::Allow, "{verdict:?}");
    assert!(!verdict.has(ReasonCode::BlocklistedDomain));
    assert!(verdict.sender.is_some());
    // The link really is checked: the same text with a listed domain is rejected.
    let bad = TEXT.replace("platnosci.acme-windykacja.pl", "secure.olx-7.pl");
    let listed = blocklist_text().lines().nth(8).unwrap().to_owned();
    let bad = bad.replace("secure.olx-7.pl", &listed);
    let mut m = msg;
    m.text = &bad;
    let v = check(&m, &policy, &store.snapshot(needs(&m, &policy)));
    assert!(v.has(ReasonCode::BlocklistedDomain), "{listed}: {v:?}");

    c.bench_function("verdict/check_160_char_sms_130k_blocklist", |b| {
        b.iter(|| check(black_box(&msg), black_box(&policy), black_box(&counters)))
    });
    c.bench_function("verdict/needs", |b| {
        b.iter(|| needs(black_box(&msg), black_box(&policy)))
    });
    // With anti-fraud off only the mandatory checks run (opt-out, sender); until
    // 2026-12 they cost a whole `needs` (the number analysed, every key digested).
    c.bench_function("verdict/mandatory_needs", |b| {
        b.iter(|| mandatory_needs(black_box(&msg), black_box(&policy)))
    });
    // The gateway's validation has usually parsed the number already.
    let parsed = phonenumber::parse(None, recipient).unwrap();
    let mut pre = msg;
    pre.number = Some(&parsed);
    c.bench_function("verdict/needs_pre_parsed_number", |b| {
        b.iter(|| needs(black_box(&pre), black_box(&policy)))
    });
    // ... and, for SMS and RCS, typed it (since 2026-12 the screener reuses both).
    let mut typed = pre;
    typed.number_type = Some(parsed.number_type(&phonenumber::metadata::DATABASE));
    c.bench_function("verdict/needs_pre_typed_number", |b| {
        b.iter(|| needs(black_box(&typed), black_box(&policy)))
    });
    c.bench_function("verdict/needs_snapshot_check_memory", |b| {
        b.iter(|| {
            let counters = store.snapshot(needs(black_box(&msg), black_box(&policy)));
            check(&msg, &policy, &counters)
        })
    });
}

/// What a hot reload of the list costs (the gateway should parse off the
/// async runtime, e.g. in `spawn_blocking`).
fn parse(c: &mut Criterion) {
    let text = blocklist_text();
    let mut g = c.benchmark_group("blocklist");
    g.sample_size(10);
    g.bench_function("parse_130k_domains", |b| {
        b.iter(|| Blocklist::parse(black_box(&text)))
    });
    g.finish();
}

criterion_group!(benches, bench, parse);
criterion_main!(benches);
