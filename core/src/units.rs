//! Value types with units that the config file writes as strings: [`Rate`]
//! (`"500/s"`, `"60/min"`) and [`ByteSize`] (`"16MiB"`, `"512KiB"`).
//!
//! Both parse with [`FromStr`], print with [`Display`](fmt::Display) in a
//! form that parses back to the same value, and (de)serialize through those
//! strings so a config value means exactly what `goniec check-config` shows.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a rate or byte size could not be read. The message names the input
/// and shows valid examples, so it can be shown to an operator as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseUnitError(String);

/// Reads a non-negative integer that may use `_` as a digit separator
/// (`1_000`), like TOML integers do. `None` for anything else.
fn parse_count(s: &str) -> Option<u64> {
    let s = s.trim();
    // Separators only between digits: "_1", "1_" and "1__0" are typos, not numbers.
    if s.is_empty() || s.starts_with('_') || s.ends_with('_') || s.contains("__") {
        return None;
    }
    if !s.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return None;
    }
    s.replace('_', "").parse().ok()
}

// ---------------------------------------------------------------------------
// Rate

/// The period a [`Rate`] counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateUnit {
    Second,
    Minute,
    Hour,
    Day,
}

impl RateUnit {
    /// Spellings accepted after the `/`; the first is the one printed.
    const SPELLINGS: [(RateUnit, &'static [&'static str]); 4] = [
        (RateUnit::Second, &["s", "sec", "second"]),
        (RateUnit::Minute, &["min", "m", "minute"]),
        (RateUnit::Hour, &["h", "hr", "hour"]),
        (RateUnit::Day, &["d", "day"]),
    ];

    /// The length of one period.
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            RateUnit::Second => 1,
            RateUnit::Minute => 60,
            RateUnit::Hour => 3600,
            RateUnit::Day => 86_400,
        })
    }

    /// The short form used when printing (`s`, `min`, `h`, `d`).
    pub fn as_str(self) -> &'static str {
        match self {
            RateUnit::Second => "s",
            RateUnit::Minute => "min",
            RateUnit::Hour => "h",
            RateUnit::Day => "d",
        }
    }

    fn parse(s: &str) -> Option<RateUnit> {
        let s = s.trim().to_ascii_lowercase();
        Self::SPELLINGS
            .iter()
            .find(|(_, names)| names.contains(&s.as_str()))
            .map(|(unit, _)| *unit)
    }
}

/// A number of events per period, written `"<count>/<unit>"`: `"500/s"`,
/// `"1_000/s"`, `"60/min"`, `"10/h"`, `"100/sec"`, `"3600/hour"`, `"5/day"`.
///
/// The count is never zero: "no limit" is expressed by leaving the key out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    count: u64,
    unit: RateUnit,
}

impl Rate {
    /// `count` events per `unit`; `None` when `count` is 0.
    pub fn new(count: u64, unit: RateUnit) -> Option<Rate> {
        (count > 0).then_some(Rate { count, unit })
    }

    /// Events allowed per period.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The period the count applies to.
    pub fn unit(&self) -> RateUnit {
        self.unit
    }

    /// The length of the period.
    pub fn period(&self) -> Duration {
        self.unit.duration()
    }

    /// The same rate expressed per second (e.g. `60/min` → 1.0).
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.period().as_secs_f64()
    }
}

#[cfg(feature = "governor")]
impl Rate {
    /// A governor quota for this rate; the burst is one period's worth.
    pub fn quota(&self) -> governor::Quota {
        use std::num::NonZeroU32;
        let per_cell = self.period().div_f64(self.count().max(1) as f64);
        let burst = NonZeroU32::new(self.count().clamp(1, u32::MAX as u64) as u32)
            .unwrap_or(NonZeroU32::MIN);
        governor::Quota::with_period(per_cell.max(Duration::from_nanos(1)))
            .map(|q| q.allow_burst(burst))
            .unwrap_or_else(|| governor::Quota::per_second(burst))
    }
}

impl FromStr for Rate {
    type Err = ParseUnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            ParseUnitError(format!(
                "invalid rate `{s}`: {why} (examples: \"500/s\", \"60/min\", \"10/h\")"
            ))
        };
        let (count, unit) = s
            .split_once('/')
            .ok_or_else(|| bad("expected <count>/<unit>"))?;
        let count = parse_count(count).ok_or_else(|| bad("the count must be a whole number"))?;
        let unit = RateUnit::parse(unit).ok_or_else(|| {
            bad(&format!(
                "unknown unit `{}` (use s, min, h or d)",
                unit.trim()
            ))
        })?;
        Rate::new(count, unit)
            .ok_or_else(|| bad("the count must be at least 1; leave the key out for no limit"))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.unit.as_str())
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RateVisitor;
        impl Visitor<'_> for RateVisitor {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate such as \"500/s\" or \"60/min\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Rate, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(RateVisitor)
    }
}

// ---------------------------------------------------------------------------
// ByteSize

/// Units a [`ByteSize`] may be written in, largest first so that printing
/// picks the shortest exact form.
const BYTE_UNITS: [(&str, u64); 9] = [
    ("TiB", 1 << 40),
    ("TB", 1_000_000_000_000),
    ("GiB", 1 << 30),
    ("GB", 1_000_000_000),
    ("MiB", 1 << 20),
    ("MB", 1_000_000),
    ("KiB", 1 << 10),
    ("KB", 1_000),
    ("B", 1),
];

/// A size in bytes, written `"16MiB"`, `"512KiB"`, `"1MB"`, `"100B"` or as a
/// bare integer number of bytes. `KiB`/`MiB`/… are powers of 1024, `KB`/`MB`/…
/// powers of 1000; units are matched without regard to case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(u64);

impl ByteSize {
    pub const fn new(bytes: u64) -> ByteSize {
        ByteSize(bytes)
    }

    pub const fn kib(n: u64) -> ByteSize {
        ByteSize(n * 1024)
    }

    pub const fn mib(n: u64) -> ByteSize {
        ByteSize(n * 1024 * 1024)
    }

    /// The size in bytes.
    pub const fn bytes(&self) -> u64 {
        self.0
    }

    /// The size as a `usize`, saturating on targets where it does not fit
    /// (a limit that large is "unlimited" there anyway).
    pub fn as_usize(&self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl From<u64> for ByteSize {
    fn from(bytes: u64) -> Self {
        ByteSize(bytes)
    }
}

impl FromStr for ByteSize {
    type Err = ParseUnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            ParseUnitError(format!(
                "invalid size `{s}`: {why} (examples: \"16MiB\", \"512KiB\", \"1MB\", \"100B\")"
            ))
        };
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '_'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let number = parse_count(number)
            .ok_or_else(|| bad("expected a whole number of bytes or a number with a unit"))?;
        let unit = unit.trim();
        let factor = if unit.is_empty() {
            1
        } else {
            BYTE_UNITS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(unit))
                .map(|(_, factor)| *factor)
                .ok_or_else(|| {
                    bad(&format!(
                        "unknown unit `{unit}` (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
                    ))
                })?
        };
        number
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| bad("too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0B");
        }
        let (name, factor) = BYTE_UNITS
            .iter()
            .find(|(_, factor)| self.0.is_multiple_of(*factor))
            .copied()
            .unwrap_or(("B", 1));
        write!(f, "{}{}", self.0 / factor, name)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"16MiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
            }
        }
        d.deserialize_any(SizeVisitor)
    }
}

/// Serde adapter for durations written as `"30s"`, `"72h"`, `"200ms"`.
pub mod humantime_serde_compat {
    use serde::de::{self, Visitor};
    use serde::Deserializer;
    use std::fmt;
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        // A visitor rather than `String::deserialize` so that `timeout = 5`
        // says a duration string is expected, not just "a string".
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"5m\" or \"72h\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
                humantime::parse_duration(s).map_err(|e| {
                    E::custom(format!(
                        "invalid duration `{s}`: {e} (examples: \"30s\", \"5m\", \"72h\")"
                    ))
                })
            }
        }
        d.deserialize_str(DurationVisitor)
    }

    /// For `Option<Duration>` fields (with `#[serde(default)]` on the struct).
    pub mod option {
        use serde::Deserializer;
        use std::time::Duration;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_every_spelling() {
        let cases = [
            ("500/s", 500, 1),
            ("1_000/s", 1000, 1),
            ("60/min", 60, 60),
            ("10/h", 10, 3600),
            ("100/sec", 100, 1),
            ("3600/hour", 3600, 3600),
            ("5/day", 5, 86_400),
            (" 7 / S ", 7, 1),
            ("2/second", 2, 1),
            ("3/m", 3, 60),
        ];
        for (text, count, secs) in cases {
            let rate: Rate = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(rate.count(), count, "{text}");
            assert_eq!(rate.period(), Duration::from_secs(secs), "{text}");
        }
    }

    #[test]
    fn rate_per_second() {
        assert_eq!("500/s".parse::<Rate>().unwrap().per_second(), 500.0);
        assert_eq!("60/min".parse::<Rate>().unwrap().per_second(), 1.0);
        assert_eq!("3600/hour".parse::<Rate>().unwrap().per_second(), 1.0);
        assert_eq!("10/h".parse::<Rate>().unwrap().per_second(), 10.0 / 3600.0);
    }

    #[test]
    fn rate_display_round_trips() {
        for text in [
            "500/s",
            "1_000/s",
            "60/min",
            "10/h",
            "100/sec",
            "3600/hour",
            "1/d",
        ] {
            let rate: Rate = text.parse().unwrap();
            let shown = rate.to_string();
            assert_eq!(shown.parse::<Rate>().unwrap(), rate, "{text} → {shown}");
        }
        assert_eq!("1_000/sec".parse::<Rate>().unwrap().to_string(), "1000/s");
        assert_eq!("60/minute".parse::<Rate>().unwrap().to_string(), "60/min");
    }

    #[test]
    fn bad_rates_say_why() {
        let err = |s: &str| s.parse::<Rate>().unwrap_err().to_string();
        assert!(
            err("abc").contains("expected <count>/<unit>"),
            "{}",
            err("abc")
        );
        assert!(err("0/s").contains("at least 1"), "{}", err("0/s"));
        let e = err("5/fortnight");
        assert!(
            e.contains("unknown unit `fortnight`") && e.contains("min"),
            "{e}"
        );
        assert!(err("-5/s").contains("whole number"));
        assert!(err("1.5/s").contains("whole number"));
        assert!(err("/s").contains("whole number"));
        assert!(err("1__0/s").contains("whole number"));
        assert!(err("99999999999999999999999/s").contains("whole number"));
        assert!(err("5/").contains("unknown unit"));
        // Every message quotes the input and shows examples.
        assert!(err("abc").starts_with("invalid rate `abc`"));
        assert!(err("abc").contains("\"500/s\""));
    }

    #[test]
    fn byte_sizes_parse() {
        let cases = [
            ("16MiB", 16 << 20),
            ("512KiB", 512 << 10),
            ("1MB", 1_000_000),
            ("100B", 100),
            ("4096", 4096),
            ("1_024", 1024),
            ("2 GiB", 2 << 30),
            ("1kb", 1000),
            ("1kib", 1024),
            ("1TiB", 1 << 40),
            ("0", 0),
        ];
        for (text, bytes) in cases {
            let size: ByteSize = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(size.bytes(), bytes, "{text}");
        }
    }

    #[test]
    fn byte_size_display_round_trips() {
        assert_eq!(ByteSize::mib(16).to_string(), "16MiB");
        assert_eq!(ByteSize::new(1_000_000).to_string(), "1MB");
        assert_eq!(ByteSize::new(100).to_string(), "100B");
        assert_eq!(ByteSize::new(0).to_string(), "0B");
        assert_eq!(ByteSize::new(1536).to_string(), "1536B");
        assert_eq!(ByteSize::new(3072).to_string(), "3KiB");
        for bytes in [
            0,
            1,
            999,
            1000,
            1024,
            1536,
            16 << 20,
            1_000_000,
            123_456_789,
            u64::MAX,
        ] {
            let size = ByteSize::new(bytes);
            assert_eq!(
                size.to_string().parse::<ByteSize>().unwrap(),
                size,
                "{size}"
            );
        }
    }

    #[test]
    fn bad_byte_sizes_say_why() {
        let err = |s: &str| s.parse::<ByteSize>().unwrap_err().to_string();
        assert!(
            err("abc").contains("expected a whole number"),
            "{}",
            err("abc")
        );
        assert!(err("").contains("expected a whole number"));
        assert!(err("-1").contains("expected a whole number"));
        assert!(
            err("1.5MiB").contains("unknown unit `.5MiB`"),
            "{}",
            err("1.5MiB")
        );
        let e = err("16 parsecs");
        assert!(
            e.contains("unknown unit `parsecs`") && e.contains("MiB"),
            "{e}"
        );
        assert!(err("99999999TiB").contains("too large"));
    }

    #[derive(Debug, Deserialize)]
    struct Holder {
        size: ByteSize,
        rate: Option<Rate>,
    }

    #[test]
    fn deserialize_from_toml() {
        let h: Holder = toml::from_str("size = \"16MiB\"\nrate = \"60/min\"").unwrap();
        assert_eq!(h.size, ByteSize::mib(16));
        assert_eq!(h.rate.unwrap().per_second(), 1.0);

        let h: Holder = toml::from_str("size = 2048").unwrap();
        assert_eq!(h.size.bytes(), 2048);
        assert!(h.rate.is_none());

        let e = toml::from_str::<Holder>("size = -1").unwrap_err();
        assert!(e.message().contains("must not be negative"), "{e}");
        let e = toml::from_str::<Holder>("size = 1\nrate = 500").unwrap_err();
        assert!(e.message().contains("a rate such as \"500/s\""), "{e}");
        let e = toml::from_str::<Holder>("size = 1\nrate = \"0/s\"").unwrap_err();
        assert!(e.message().contains("at least 1"), "{e}");
    }

    #[test]
    fn serialize_as_strings() {
        #[derive(Serialize)]
        struct Out {
            size: ByteSize,
            rate: Rate,
        }
        let out = Out {
            size: ByteSize::kib(512),
            rate: "1_000/s".parse().unwrap(),
        };
        let text = toml::to_string(&out).unwrap();
        assert_eq!(text, "size = \"512KiB\"\nrate = \"1000/s\"\n");
    }
}
