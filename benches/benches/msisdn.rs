//! The gateway's phone number check on the accept path (`normalize_msisdn`),
//! beside the two-pass check it replaced (`is_valid`, then the number's type
//! for mobile-only channels), so both are timed in the same run.
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
    c.bench_function("msisdn/two_pass_mobile_4_countries", |b| {
        b.iter(|| {
            for n in numbers {
                black_box(two_pass(black_box(n)));
            }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
