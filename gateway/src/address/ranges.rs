//! Which number range a phone number is in (libphonenumber's number type and
//! validity), answered exactly as `phonenumber` answers them but in one pass.
//!
//! `phonenumber` tries a region's type patterns one after another (general,
//! premium rate, toll free, … fixed line, mobile): a regex search each, every
//! one behind a lookup of the pattern's text in one shared, locked cache that
//! holds 100 compiled patterns, fewer than the world's regions use. Under load
//! that was 5% of the gateway's CPU for Polish numbers alone (perf, issue 13),
//! and a mix of countries would compile patterns again and again. Here each
//! region's patterns are compiled once, on first use, into one `RegexSet`: one
//! scan of the digits says which patterns match, and the order of the checks
//! is applied to that answer.
//!
//! A pattern `p` "matches" a number as in `phonenumber`: the number's length is
//! one of the descriptor's possible lengths (when it has any) and `p` matches
//! at its start (`find` starting at 0, which is what `^(?:p)` asks), with
//! whitespace in patterns ignored, as `phonenumber` compiles them.
//!
//! The patterns are compiled without Unicode classes: what they are matched
//! against here is always ASCII digits (a national number written out), on
//! which `\d` means the same either way, and a Unicode `\d` made each region
//! cost about 0.5 MB and up to 12 ms to compile (all 246 regions: 115 MB,
//! 0.65 s) against about 20 KB and at most 2 ms without (5 MB, 70 ms; this
//! machine, release build). Compiled on first use per region: a pattern this
//! rejects (none does today) leaves that region to `phonenumber`'s checks.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};

use phonenumber::metadata::{Descriptor, Descriptors, Metadata, DATABASE};
use phonenumber::{PhoneNumber, Type};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

/// The checks `phonenumber`'s `number_type` makes after the general one, in its
/// order; fixed line and mobile come last (see [`Ranges::classify`]).
#[allow(clippy::type_complexity)]
const ORDERED: [(fn(&Descriptors) -> Option<&Descriptor>, Type); 8] = [
    (Descriptors::premium_rate, Type::PremiumRate),
    (Descriptors::toll_free, Type::TollFree),
    (Descriptors::shared_cost, Type::SharedCost),
    (Descriptors::voip, Type::Voip),
    (Descriptors::personal_number, Type::PersonalNumber),
    (Descriptors::pager, Type::Pager),
    (Descriptors::uan, Type::Uan),
    (Descriptors::voicemail, Type::Voicemail),
];

/// One descriptor's place in the set and its possible lengths.
struct Slot {
    index: usize,
    lengths: Vec<u16>,
}

impl Slot {
    fn hit(slot: &Option<Slot>, value: &str, matched: &regex::SetMatches) -> bool {
        slot.as_ref().is_some_and(|s| {
            (s.lengths.is_empty() || s.lengths.contains(&(value.len() as u16)))
                && matched.matched(s.index)
        })
    }
}

/// One region's patterns, compiled.
struct Ranges {
    set: RegexSet,
    general: Option<Slot>,
    ordered: Vec<Option<Slot>>,
    fixed_line: Option<Slot>,
    mobile: Option<Slot>,
    /// The fixed-line and mobile patterns are the same text.
    fixed_is_mobile: bool,
    leading_digits: Option<Regex>,
}

impl Ranges {
    /// `None` when a pattern does not compile here (then `phonenumber` answers).
    fn compile(meta: &Metadata) -> Option<Ranges> {
        let d = meta.descriptors();
        let mut patterns = Vec::new();
        let mut slot = |desc: Option<&Descriptor>| {
            desc.map(|desc| {
                patterns.push(format!("^(?:{})", desc.national_number().as_str()));
                Slot {
                    index: patterns.len() - 1,
                    lengths: desc.possible_length().to_vec(),
                }
            })
        };
        let general = slot(Some(d.general()));
        let ordered = ORDERED.iter().map(|(get, _)| slot(get(d))).collect();
        let fixed_line = slot(d.fixed_line());
        let mobile = slot(d.mobile());
        let leading_digits = match meta.leading_digits() {
            Some(p) => Some(
                RegexBuilder::new(&format!("^(?:{})", p.as_str()))
                    .ignore_whitespace(true)
                    .unicode(false)
                    .build()
                    .ok()?,
            ),
            None => None,
        };
        Some(Ranges {
            set: RegexSetBuilder::new(&patterns)
                .ignore_whitespace(true)
                .unicode(false)
                .build()
                .ok()?,
            general,
            ordered,
            fixed_line,
            mobile,
            fixed_is_mobile: same_pattern(d),
            leading_digits,
        })
    }

    /// `phonenumber::validator::number_type` for the national number `value`.
    fn classify(&self, value: &str) -> Type {
        let m = self.set.matches(value);
        let hit = |slot: &Option<Slot>| Slot::hit(slot, value, &m);
        decide(self.fixed_is_mobile, |part| match part {
            Part::General => hit(&self.general),
            Part::Ordered(i) => hit(&self.ordered[i]),
            Part::FixedLine => hit(&self.fixed_line),
            Part::Mobile => hit(&self.mobile),
        })
    }
}

/// The descriptors `number_type` consults.
#[derive(Clone, Copy)]
enum Part {
    General,
    /// `ORDERED[i]`.
    Ordered(usize),
    FixedLine,
    Mobile,
}

/// `phonenumber`'s order of checks, given which descriptors match.
fn decide(fixed_is_mobile: bool, hit: impl Fn(Part) -> bool) -> Type {
    if !hit(Part::General) {
        return Type::Unknown;
    }
    if let Some(i) = (0..ORDERED.len()).find(|&i| hit(Part::Ordered(i))) {
        return ORDERED[i].1;
    }
    if hit(Part::FixedLine) {
        return if fixed_is_mobile || hit(Part::Mobile) {
            Type::FixedLineOrMobile
        } else {
            Type::FixedLine
        };
    }
    if hit(Part::Mobile) {
        return Type::Mobile;
    }
    Type::Unknown
}

fn same_pattern(d: &Descriptors) -> bool {
    d.fixed_line().map(|x| x.national_number().as_str())
        == d.mobile().map(|x| x.national_number().as_str())
}

/// Compiled regions by the address of their metadata (`DATABASE` is static);
/// `None`: compiling failed, `phonenumber` answers for that region.
static COMPILED: LazyLock<RwLock<HashMap<usize, Option<Ranges>>>> = LazyLock::new(Default::default);

/// Runs `f` on the region's compiled patterns, compiling them first if needed.
fn with_ranges<T>(meta: &'static Metadata, f: impl Fn(Option<&Ranges>) -> T) -> T {
    let key = meta as *const Metadata as usize;
    {
        let read = COMPILED.read().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = read.get(&key) {
            return f(r.as_ref());
        }
    }
    let compiled = Ranges::compile(meta);
    let mut write = COMPILED.write().unwrap_or_else(|e| e.into_inner());
    f(write.entry(key).or_insert(compiled).as_ref())
}

/// The type of the national number `value` in the region `meta`.
fn classify(meta: &'static Metadata, value: &str) -> Type {
    with_ranges(meta, |r| match r {
        Some(r) => r.classify(value),
        None => number_type_of(meta, value),
    })
}

/// `phonenumber`'s checks one by one, for a region whose patterns did not
/// compile here.
fn number_type_of(meta: &Metadata, value: &str) -> Type {
    let d = meta.descriptors();
    let is = |desc: Option<&Descriptor>| desc.is_some_and(|x| x.is_match(value));
    decide(same_pattern(d), |part| match part {
        Part::General => is(Some(d.general())),
        Part::Ordered(i) => is(ORDERED[i].0(d)),
        Part::FixedLine => is(d.fixed_line()),
        Part::Mobile => is(d.mobile()),
    })
}

/// The metadata that applies to a national number of the country code `code`
/// (`phonenumber`'s `source_for`: the one region of most codes, or among the
/// regions sharing a code, such as +1, the first whose leading digits or number
/// ranges take the number).
fn metadata_for(code: u16, national: &str) -> Option<&'static Metadata> {
    let db = &*DATABASE;
    let by_region = |region: &str| {
        let id: phonenumber::country::Id = region.parse().ok()?;
        db.by_id(id.as_ref())
    };
    let regions = db.region(&code)?;
    if let [only] = regions[..] {
        return if only == "001" {
            db.by_code(&code)?.into_iter().next()
        } else {
            by_region(only)
        };
    }
    for region in regions {
        let meta = db.by_id(region)?;
        let takes = match meta.leading_digits() {
            Some(_) => with_ranges(meta, |r| match r.and_then(|r| r.leading_digits.as_ref()) {
                Some(re) => re.is_match(national),
                None => meta
                    .leading_digits()
                    .and_then(|p| p.find(national))
                    .is_some_and(|m| m.start() == 0),
            }),
            None => classify(meta, national) != Type::Unknown,
        };
        if takes {
            return by_region(region);
        }
    }
    None
}

/// Room in `phonenumber`'s one cache of compiled patterns (it holds 100).
/// Its parser alone uses 122 across all regions, so a mix of countries
/// recompiled patterns on most numbers: parsing a mobile of each of 244
/// regions took 30–40 ms a pass against 1.5 ms with room for all (0.6 MB
/// more). 1,024 leaves room for the type checks still made through
/// `phonenumber` (anti-fraud's, for a number validation did not type).
const PHONENUMBER_PATTERNS: usize = 1024;

/// Gives `phonenumber`'s pattern cache room for [`PHONENUMBER_PATTERNS`], once
/// per process (before the first parse).
pub fn size_phonenumber_cache() {
    static SIZED: std::sync::Once = std::sync::Once::new();
    SIZED.call_once(|| {
        let cache = DATABASE.cache();
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.capacity() < PHONENUMBER_PATTERNS {
            cache.set_capacity(PHONENUMBER_PATTERNS);
        }
    });
}

/// `num.number_type(&DATABASE)`.
pub fn number_type(num: &PhoneNumber) -> Type {
    let national = num.national().value().to_string();
    metadata_for(num.country().code(), &national)
        .map_or(Type::Unknown, |meta| classify(meta, &national))
}

/// `num.is_valid_with(&DATABASE)`: the number is in a range of a known type
/// (its national number read with its leading zeros, as `phonenumber` does).
pub fn is_valid(num: &PhoneNumber) -> bool {
    let national = num.national().to_string();
    metadata_for(num.country().code(), &national)
        .is_some_and(|meta| classify(meta, &national) != Type::Unknown)
}

/// `num.format().mode(Mode::E164).to_string()`, without the search for a
/// national format that `phonenumber` makes first and E.164 does not use.
pub fn e164(num: &PhoneNumber) -> String {
    format!("+{}{}", num.country().code(), num.national())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every region's example numbers and neighbours of them (a digit changed,
    /// one dropped, one added): the answers are `phonenumber`'s own.
    #[test]
    fn answers_as_phonenumber_for_every_regions_examples() {
        let mut checked = 0;
        let mut kinds = std::collections::HashSet::new();
        for meta in DATABASE.iter() {
            let d = meta.descriptors();
            let examples = [Some(d.general()), d.fixed_line(), d.mobile()]
                .into_iter()
                .chain(ORDERED.iter().map(|(get, _)| get(d)))
                .flatten()
                .filter_map(|x| x.example());
            for example in examples {
                let mut variants = vec![example.to_string(), format!("{example}7")];
                variants.push(example[..example.len() - 1].to_string());
                for digit in '0'..='9' {
                    let mut v = example[..example.len() - 1].to_string();
                    v.push(digit);
                    variants.push(v);
                    variants.push(format!("{digit}{}", &example[1..]));
                }
                for v in variants {
                    let raw = format!("+{}{v}", meta.country_code());
                    let Ok(num) = phonenumber::parse(None, &raw) else {
                        continue;
                    };
                    let theirs = num.number_type(&DATABASE);
                    assert_eq!(number_type(&num), theirs, "{raw}");
                    assert_eq!(is_valid(&num), num.is_valid_with(&DATABASE), "{raw}");
                    assert_eq!(
                        e164(&num),
                        num.format().mode(phonenumber::Mode::E164).to_string(),
                        "{raw}"
                    );
                    kinds.insert(format!("{theirs:?}"));
                    checked += 1;
                }
            }
        }
        // The corpus is large and reaches the common answers, invalid included.
        assert!(checked > 10_000, "{checked}");
        for kind in [
            "Unknown",
            "Mobile",
            "FixedLine",
            "FixedLineOrMobile",
            "TollFree",
        ] {
            assert!(kinds.contains(kind), "{kind} never seen: {kinds:?}");
        }
    }

    #[test]
    fn phonenumbers_cache_is_given_room_once() {
        size_phonenumber_cache();
        let cache = DATABASE.cache();
        assert!(cache.lock().unwrap().capacity() >= PHONENUMBER_PATTERNS);
        // A parse through the accept path's check sizes it too (idempotent).
        assert!(super::super::parse_msisdn("+48601234567", None, true).is_ok());
        assert!(cache.lock().unwrap().capacity() >= PHONENUMBER_PATTERNS);
    }

    #[test]
    fn every_regions_patterns_compile_without_unicode_classes() {
        let failed: Vec<&str> = DATABASE
            .iter()
            .filter(|meta| Ranges::compile(meta).is_none())
            .map(|meta| meta.id())
            .collect();
        assert!(failed.is_empty(), "left to phonenumber: {failed:?}");
    }

    #[test]
    fn regions_sharing_a_code_are_told_apart() {
        // +1: the United States, Canada and the Caribbean; +44: the United
        // Kingdom and the Crown Dependencies; +7: Russia and Kazakhstan.
        for raw in [
            "+12015550123",
            "+16135550123",
            "+18765550123",
            "+447400123456",
            "+447781123456",
            "+441481256789",
            "+77012345678",
            "+79123456789",
            "+390669812345",
        ] {
            let num = phonenumber::parse(None, raw).unwrap();
            assert_eq!(number_type(&num), num.number_type(&DATABASE), "{raw}");
            assert_eq!(is_valid(&num), num.is_valid_with(&DATABASE), "{raw}");
        }
    }
}
