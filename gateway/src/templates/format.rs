//! How a declared variable's value is written: as given (`text`), as an
//! amount with a decimal comma (`amount`: `1234.5` → `1234,50`), or as a date
//! (`date` = `date:dd.MM.yyyy`; the value is `YYYY-MM-DD` or an RFC 3339 time).

use serde::{Deserialize, Serialize};

/// A variable's format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Text,
    Amount,
    /// A date pattern of `dd`, `d`, `MM`, `M`, `yyyy`, `yy` and literal text.
    Date(String),
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "text" => Ok(Format::Text),
            "amount" => Ok(Format::Amount),
            "date" => Ok(Format::Date("dd.MM.yyyy".into())),
            _ => match s.strip_prefix("date:") {
                Some(p) if !p.is_empty() && p.len() <= 32 => Ok(Format::Date(p.into())),
                _ => Err(format!(
                    "unknown format {s:?}: one of \"text\", \"amount\", \"date\", \"date:<pattern>\" \
                     (pattern of dd, MM, yyyy, yy, d, M)"
                )),
            },
        }
    }

    pub fn as_string(&self) -> String {
        match self {
            Format::Text => "text".into(),
            Format::Amount => "amount".into(),
            Format::Date(p) => format!("date:{p}"),
        }
    }

    /// Write `value` in this format; the error says what was expected.
    pub fn apply(&self, value: &str) -> Result<String, String> {
        match self {
            Format::Text => Ok(value.to_string()),
            Format::Amount => amount(value),
            Format::Date(p) => date(value, p),
        }
    }
}

impl Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_string())
    }
}

impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Format::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `1234.5`, `1234,5`, `-12` → `1234,50`, `-12,00` (rounded half away from
/// zero to grosze).
fn amount(value: &str) -> Result<String, String> {
    let bad = || format!("{value:?} is not an amount such as 1234.50");
    let v = value.trim().replace(',', ".");
    let (neg, digits) = match v.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, v.as_str()),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty()
        || int.len() > 15
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 10
    {
        return Err(bad());
    }
    let int: u64 = int.parse().map_err(|_| bad())?;
    let mut cents = int * 100;
    let f = frac.as_bytes();
    let digit = |i: usize| f.get(i).map_or(0, |b| u64::from(b - b'0'));
    cents += digit(0) * 10 + digit(1);
    if digit(2) >= 5 {
        cents += 1;
    }
    let sign = if neg && cents > 0 { "-" } else { "" };
    Ok(format!("{sign}{},{:02}", cents / 100, cents % 100))
}

fn date(value: &str, pattern: &str) -> Result<String, String> {
    let bad = || format!("{value:?} is not a date such as 2026-12-31");
    let day = value.trim().get(..10).ok_or_else(bad)?;
    let d: jiff::civil::Date = day.parse().map_err(|_| bad())?;
    let mut out = String::new();
    let mut rest = pattern;
    while !rest.is_empty() {
        let (token, len) = if rest.starts_with("yyyy") {
            (format!("{:04}", d.year()), 4)
        } else if rest.starts_with("yy") {
            (format!("{:02}", d.year() % 100), 2)
        } else if rest.starts_with("MM") {
            (format!("{:02}", d.month()), 2)
        } else if rest.starts_with("dd") {
            (format!("{:02}", d.day()), 2)
        } else if rest.starts_with('M') {
            (d.month().to_string(), 1)
        } else if rest.starts_with('d') {
            (d.day().to_string(), 1)
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            (c.to_string(), c.len_utf8())
        };
        out.push_str(&token);
        rest = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_get_a_decimal_comma_and_two_places() {
        for (i, o) in [
            ("1234.5", "1234,50"),
            ("1234,5", "1234,50"),
            ("0.005", "0,01"),
            ("12", "12,00"),
            ("-7.1", "-7,10"),
            ("-0.001", "0,00"),
            (" 99.999 ", "100,00"),
        ] {
            assert_eq!(Format::Amount.apply(i).unwrap(), o, "{i}");
        }
        for bad in ["", "abc", "1.2.3", "1e5", "1 000", "--1"] {
            assert!(Format::Amount.apply(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_follow_the_pattern() {
        let f = Format::parse("date").unwrap();
        assert_eq!(f.apply("2026-03-07").unwrap(), "07.03.2026");
        assert_eq!(f.apply("2026-03-07T10:00:00Z").unwrap(), "07.03.2026");
        let f = Format::parse("date:d.M.yy r.").unwrap();
        assert_eq!(f.apply("2026-03-07").unwrap(), "7.3.26 r.");
        assert!(Format::parse("date").unwrap().apply("07.03.2026").is_err());
        assert!(Format::parse("money").is_err());
    }
}
