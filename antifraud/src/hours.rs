//! Contact hours: daily windows, the Polish public holidays, and the next
//! allowed moment in a recipient's time zone.

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The hours of one kind of day in which messages may be delivered:
/// `"08:00-20:00"` (from 08:00 inclusive to 20:00 exclusive, so 19:59 is in
/// and 20:00 is out), `"00:00-24:00"` (all day) or `"closed"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DayHours {
    /// `(start, end)` in minutes after midnight, `start < end <= 1440`.
    open: Option<(u16, u16)>,
}

impl DayHours {
    /// No messages on this kind of day.
    pub const CLOSED: DayHours = DayHours { open: None };

    /// From `start` to `end` (exclusive), in `(hour, minute)`; `(24, 0)` is
    /// the end of the day. `None` unless `start < end <= 24:00`.
    pub const fn new(start: (u8, u8), end: (u8, u8)) -> Option<DayHours> {
        if start.0 > 23 || start.1 > 59 || end.1 > 59 || end.0 > 24 || (end.0 == 24 && end.1 != 0) {
            return None;
        }
        let s = start.0 as u16 * 60 + start.1 as u16;
        let e = end.0 as u16 * 60 + end.1 as u16;
        if s >= e {
            return None;
        }
        Some(DayHours { open: Some((s, e)) })
    }

    /// Whether the day is closed.
    pub const fn is_closed(&self) -> bool {
        self.open.is_none()
    }

    /// Start and end as minutes after midnight.
    pub const fn minutes(&self) -> Option<(u16, u16)> {
        self.open
    }
}

/// A malformed [`DayHours`] string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid hours `{0}`: expected \"HH:MM-HH:MM\" with start before end (e.g. \"08:00-20:00\", \
     \"00:00-24:00\") or \"closed\""
)]
pub struct DayHoursError(pub String);

impl FromStr for DayHours {
    type Err = DayHoursError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DayHoursError(s.to_owned());
        let t = s.trim();
        if t.eq_ignore_ascii_case("closed") {
            return Ok(DayHours::CLOSED);
        }
        let (a, b) = t.split_once('-').ok_or_else(err)?;
        let hm = |x: &str| -> Option<(u8, u8)> {
            let (h, m) = x.trim().split_once(':')?;
            if h.is_empty() || h.len() > 2 || m.len() != 2 {
                return None;
            }
            Some((h.parse().ok()?, m.parse().ok()?))
        };
        let start = hm(a).ok_or_else(err)?;
        let end = hm(b).ok_or_else(err)?;
        DayHours::new(start, end).ok_or_else(err)
    }
}

impl fmt::Display for DayHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.open {
            None => f.write_str("closed"),
            Some((s, e)) => write!(f, "{:02}:{:02}-{:02}:{:02}", s / 60, s % 60, e / 60, e % 60),
        }
    }
}

impl Serialize for DayHours {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DayHours {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DayHours;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("hours such as \"08:00-20:00\" or \"closed\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<DayHours, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// Which built-in public holiday calendar applies (days treated like Sunday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HolidayCalendar {
    /// Polish public holidays ([`is_polish_holiday`]).
    #[default]
    Pl,
    /// No built-in holidays (configured extra dates still apply).
    None,
}

/// Easter Sunday of `year` in the Gregorian calendar (the anonymous
/// Gregorian algorithm, a.k.a. Meeus/Jones/Butcher). `None` outside the
/// years `jiff` supports.
pub fn easter_sunday(year: i16) -> Option<Date> {
    let y = i32::from(year);
    let a = y.rem_euclid(19);
    let b = y.div_euclid(100);
    let c = y.rem_euclid(100);
    let d = b.div_euclid(4);
    let e = b.rem_euclid(4);
    let f = (b + 8).div_euclid(25);
    let g = (b - f + 1).div_euclid(3);
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c.div_euclid(4);
    let k = c.rem_euclid(4);
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l).div_euclid(451);
    let month = (h + l - 7 * m + 114).div_euclid(31);
    let day = (h + l - 7 * m + 114).rem_euclid(31) + 1;
    Date::new(year, i8::try_from(month).ok()?, i8::try_from(day).ok()?).ok()
}

/// Whether `date` is a public holiday (non-working day) in Poland:
/// fixed — 1 Jan, 6 Jan (since 2011), 1 May, 3 May, 15 Aug, 1 Nov, 11 Nov,
/// 24 Dec (since 2025), 25 Dec, 26 Dec; movable — Easter Sunday, Easter
/// Monday, Pentecost Sunday (Easter + 49 days) and Corpus Christi (Easter +
/// 60 days).
pub fn is_polish_holiday(date: Date) -> bool {
    let fixed = match (date.month(), date.day()) {
        (1, 1) | (5, 1) | (5, 3) | (8, 15) | (11, 1) | (11, 11) | (12, 25) | (12, 26) => true,
        (1, 6) => date.year() >= 2011,
        (12, 24) => date.year() >= 2025,
        _ => false,
    };
    if fixed {
        return true;
    }
    // Movable feasts fall between 22 March and 24 June.
    if !(3..=6).contains(&date.month()) {
        return false;
    }
    let Some(easter) = easter_sunday(date.year()) else {
        return false;
    };
    let offset = i32::from(date.day_of_year()) - i32::from(easter.day_of_year());
    matches!(offset, 0 | 1 | 49 | 60)
}

/// The Polish public holidays of `year`, in date order.
pub fn polish_holidays(year: i16) -> Vec<Date> {
    let mut out = Vec::new();
    let Ok(mut d) = Date::new(year, 1, 1) else {
        return out;
    };
    while d.year() == year {
        if is_polish_holiday(d) {
            out.push(d);
        }
        match d.tomorrow() {
            Ok(next) => d = next,
            Err(_) => break,
        }
    }
    out
}

/// The weekly schedule plus holidays, borrowed from a policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule<'p> {
    pub weekdays: DayHours,
    pub saturday: DayHours,
    pub sunday: DayHours,
    pub calendar: HolidayCalendar,
    /// Sorted extra holiday dates.
    pub extra: &'p [Date],
}

/// How far ahead [`Schedule::next_allowed`] searches for an open day.
const SEARCH_DAYS: usize = 400;

impl Schedule<'_> {
    fn is_holiday(&self, d: Date) -> bool {
        (self.calendar == HolidayCalendar::Pl && is_polish_holiday(d))
            || self.extra.binary_search(&d).is_ok()
    }

    /// The hours that apply on `d` (holidays like Sunday).
    pub(crate) fn hours_on(&self, d: Date) -> DayHours {
        if self.is_holiday(d) {
            return self.sunday;
        }
        match d.weekday() {
            Weekday::Saturday => self.saturday,
            Weekday::Sunday => self.sunday,
            _ => self.weekdays,
        }
    }

    /// `None` when `t` is inside the contact hours in `tz`; otherwise the
    /// next moment that is. A window starts (and ends) at the first instant
    /// whose wall clock reads its start (end) or later: a time inside the
    /// hour skipped when clocks go forward means the moment of the change, a
    /// time inside the repeated autumn hour its first pass. If no open day
    /// exists within 400 days (a misconfiguration `validate` rejects), the
    /// answer is 400 days ahead.
    pub(crate) fn next_allowed(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let mut day = tz.to_datetime(t).date();
        for _ in 0..SEARCH_DAYS {
            if let Some((start, end)) = self.hours_on(day).minutes() {
                let open = local_instant(tz, day, start);
                let close = local_instant(tz, day, end);
                if t < open {
                    return Some(open);
                }
                if t < close {
                    return None;
                }
            }
            day = match day.tomorrow() {
                Ok(d) => d,
                Err(_) => break,
            };
        }
        let days = SignedDuration::from_hours(24 * SEARCH_DAYS as i64);
        Some(t.checked_add(days).unwrap_or(Timestamp::MAX))
    }
}

/// The first instant at which the wall clock in `tz` reads `minutes` after
/// midnight of `day` or later (1440 = the next midnight).
fn local_instant(tz: &TimeZone, day: Date, minutes: u16) -> Timestamp {
    let (day, minutes) = if minutes >= 1440 {
        (day.tomorrow().unwrap_or(day), 0)
    } else {
        (day, minutes)
    };
    // minutes < 1440, so both parts are in range.
    let time = Time::new(
        i8::try_from(minutes / 60).unwrap_or(0),
        i8::try_from(minutes % 60).unwrap_or(0),
        0,
        0,
    )
    .unwrap_or(Time::midnight());
    let dt = DateTime::from_parts(day, time);
    let amb = tz.to_ambiguous_timestamp(dt);
    let instant = match amb.offset() {
        // In the hour skipped when clocks go forward, the first instant whose
        // wall clock reads `minutes` or later is the transition itself.
        AmbiguousOffset::Gap { .. } => amb.later().ok().map(|later| {
            tz.preceding(later)
                .next()
                .map_or(later, |tr| tr.timestamp())
        }),
        // In the repeated hour, the first pass; otherwise the only instant.
        AmbiguousOffset::Fold { .. } | AmbiguousOffset::Unambiguous { .. } => amb.earlier().ok(),
    };
    // Fails only at the edges of jiff's range.
    instant.unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn easter_known_years() {
        for (y, m, d) in [
            (2000, 4, 23),
            (2008, 3, 23),
            (2011, 4, 24),
            (2024, 3, 31),
            (2025, 4, 20),
            (2026, 4, 5),
            (2027, 3, 28),
            (2038, 4, 25),
            (2285, 3, 22),
        ] {
            assert_eq!(easter_sunday(y), Some(date(y, m, d)), "{y}");
        }
    }

    #[test]
    fn polish_holidays_2027() {
        let got = polish_holidays(2027);
        let want = [
            date(2027, 1, 1),
            date(2027, 1, 6),
            date(2027, 3, 28), // Easter Sunday
            date(2027, 3, 29), // Easter Monday
            date(2027, 5, 1),
            date(2027, 5, 3),
            date(2027, 5, 16), // Pentecost
            date(2027, 5, 27), // Corpus Christi
            date(2027, 8, 15),
            date(2027, 11, 1),
            date(2027, 11, 11),
            date(2027, 12, 24),
            date(2027, 12, 25),
            date(2027, 12, 26),
        ];
        assert_eq!(got, want);
        // Near misses.
        assert!(!is_polish_holiday(date(2027, 3, 30)));
        assert!(!is_polish_holiday(date(2027, 11, 10)));
        assert!(!is_polish_holiday(date(2027, 5, 2)));
        // Christmas Eve became a holiday in 2025, Epiphany in 2011.
        assert!(!is_polish_holiday(date(2024, 12, 24)));
        assert!(is_polish_holiday(date(2025, 12, 24)));
        assert!(!is_polish_holiday(date(2010, 1, 6)));
        assert_eq!(polish_holidays(2026).len(), 14);
        assert!(is_polish_holiday(date(2026, 6, 4)), "Corpus Christi 2026");
    }

    #[test]
    fn day_hours_parse_and_display() {
        let h: DayHours = "08:00-20:00".parse().unwrap();
        assert_eq!(h.minutes(), Some((480, 1200)));
        assert_eq!(h.to_string(), "08:00-20:00");
        assert_eq!(
            " 8:30 - 16:05 ".parse::<DayHours>().unwrap().minutes(),
            Some((510, 965))
        );
        assert_eq!(
            "00:00-24:00".parse::<DayHours>().unwrap().minutes(),
            Some((0, 1440))
        );
        assert!("Closed".parse::<DayHours>().unwrap().is_closed());
        for bad in [
            "20:00-08:00",
            "08:00-08:00",
            "8-20",
            "24:00-24:00",
            "08:60-09:00",
            "",
            "x",
        ] {
            assert!(bad.parse::<DayHours>().is_err(), "{bad}");
        }
        assert!(DayHours::new((10, 0), (24, 1)).is_none());
    }
}
