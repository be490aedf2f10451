//! The gateway's phone number check on the accept path (`normalize_msisdn`),
//! beside the checks it replaced (`phonenumber`'s own number type, once or,
//! before that, twice: `is_valid`, then the type for mobile-only channels), so
//! all are timed in the same run.
//!
//! `cargo bench -p goniec-benches --bench msisdn`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use goniec_gateway::address::normalize_msisdn;
use phonenumber::{metadata::DATABASE, Mode, Type};

/// The check as it was: libphonenumber's type regexes run twice for a mobile.
fn two_pass(raw: &str) -> Option<String> {
    let num = phonenumber::parse(None, raw).ok()?;
    if !num.is_valid() {
        return None;
    }
    matches!(
        num.number_type(&DATABASE),
        Type::Mobile | Type::FixedLineOrMobile
    )
    .then(|| num.format().mode(Mode::E164).to_string())
}

/// The one-pass check before `address::ranges`: `phonenumber`'s own type
/// (a regex search per number range) and E.164 formatter.
fn one_pass_phonenumber(raw: &str) -> Option<String> {
    let num = phonenumber::parse(None, raw).ok()?;
    matches!(
        num.number_type(&DATABASE),
        Type::Mobile | Type::FixedLineOrMobile
    )
    .then(|| num.format().mode(Mode::E164).to_string())
}

fn bench(c: &mut Criterion) {
    let numbers = [
        "+48601234567",
        "+48 512 345 678",
        "+447911123456",
        "+4915112345678",
    ];
    for n in numbers {
        assert_eq!(
            normalize_msisdn(n, None, true).ok(),
            two_pass(n),
            "{n}: both answer the same"
        );
    }
    // Warm libphonenumber's lazily built database and regex cache first.
    let _ = two_pass(numbers[0]);
    c.bench_function("msisdn/normalize_mobile_4_countries", |b| {
        b.iter(|| {
            for n in numbers {
                black_box(normalize_msisdn(black_box(n), None, true).is_ok());
            }
        })
    });
    c.bench_function("msisdn/one_pass_phonenumber_4_countries", |b| {
        b.iter(|| {
            for n in numbers {
                black_box(one_pass_phonenumber(black_box(n)));
            }
        })
    });
    c.bench_function("msisdn/two_pass_mobile_4_countries", |b| {
        b.iter(|| {
            for n in numbers {
                black_box(two_pass(black_box(n)));
            }
        })
    });
}

/// 1,000 different Polish mobiles, as a reminder run sends: each number is
/// checked once, so nothing is answered from a warm cache of its own.
fn varied(c: &mut Criterion) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let numbers: Vec<String> = (0..1000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!(
                "+48{}{:08}",
                [5, 6, 7, 8][(x % 4) as usize],
                x % 100_000_000
            )
        })
        .collect();
    compare(c, "1000_polish", &numbers, None);
}

/// A mobile of every region (its metadata's example): more number ranges than
/// `phonenumber`'s cache of 100 compiled patterns holds, so there it compiles
/// patterns again and again; `address::ranges` compiles each region once.
fn world(c: &mut Criterion) {
    let numbers: Vec<String> = DATABASE
        .iter()
        .filter_map(|m| {
            let ex = m.descriptors().mobile()?.example()?;
            Some(format!("+{}{ex}", m.country_code()))
        })
        .collect();
    let label = format!("{}_regions", numbers.len());
    compare(c, &label, &numbers, Some(10));
}

/// Checks that `normalize_msisdn` answers as `phonenumber`'s own one-pass check
/// on `numbers`, then times both: `msisdn/normalize_<label>` and
/// `msisdn/one_pass_phonenumber_<label>`.
fn compare(c: &mut Criterion, label: &str, numbers: &[String], samples: Option<usize>) {
    for n in numbers {
        assert_eq!(
            normalize_msisdn(n, None, true).ok(),
            one_pass_phonenumber(n),
            "{n}"
        );
    }
    let mut g = c.benchmark_group("msisdn");
    if let Some(samples) = samples {
        g.sample_size(samples);
    }
    g.bench_function(format!("normalize_{label}"), |b| {
        b.iter(|| {
            for n in numbers {
                black_box(normalize_msisdn(black_box(n), None, true).is_ok());
            }
        })
    });
    g.bench_function(format!("one_pass_phonenumber_{label}"), |b| {
        b.iter(|| {
            for n in numbers {
                black_box(one_pass_phonenumber(black_box(n)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench, varied, world);
criterion_main!(benches);
