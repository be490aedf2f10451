//! Recipient time zones: a built-in map from country to IANA zone for the
//! EU/EEA, the UK and Crown dependencies and other European neighbours, and
//! zone lookup that works without a system
//! database.

use jiff::tz::{TimeZone, TimeZoneDatabase};
use std::collections::HashMap;
use std::sync::{OnceLock, PoisonError, RwLock};

/// The zone of each country in the built-in map (ISO code, IANA name),
/// sorted by code.
/// Countries spanning several zones use their capital's: Spain's Canary
/// Islands and Portugal's Azores and Madeira cannot be told apart by number,
/// override them per tenant if that matters.
pub const COUNTRY_ZONES: &[(&str, &str)] = &[
    ("AD", "Europe/Andorra"),
    ("AL", "Europe/Tirane"),
    ("AT", "Europe/Vienna"),
    ("AX", "Europe/Mariehamn"),
    ("BA", "Europe/Sarajevo"),
    ("BE", "Europe/Brussels"),
    ("BG", "Europe/Sofia"),
    ("BY", "Europe/Minsk"),
    ("CH", "Europe/Zurich"),
    ("CY", "Asia/Nicosia"),
    ("CZ", "Europe/Prague"),
    ("DE", "Europe/Berlin"),
    ("DK", "Europe/Copenhagen"),
    ("EE", "Europe/Tallinn"),
    ("ES", "Europe/Madrid"),
    ("FI", "Europe/Helsinki"),
    ("FO", "Atlantic/Faroe"),
    ("FR", "Europe/Paris"),
    ("GB", "Europe/London"),
    ("GG", "Europe/Guernsey"),
    ("GI", "Europe/Gibraltar"),
    ("GR", "Europe/Athens"),
    ("HR", "Europe/Zagreb"),
    ("HU", "Europe/Budapest"),
    ("IE", "Europe/Dublin"),
    ("IM", "Europe/Isle_of_Man"),
    ("IS", "Atlantic/Reykjavik"),
    ("IT", "Europe/Rome"),
    ("JE", "Europe/Jersey"),
    ("LI", "Europe/Vaduz"),
    ("LT", "Europe/Vilnius"),
    ("LU", "Europe/Luxembourg"),
    ("LV", "Europe/Riga"),
    ("MC", "Europe/Monaco"),
    ("MD", "Europe/Chisinau"),
    ("ME", "Europe/Podgorica"),
    ("MK", "Europe/Skopje"),
    ("MT", "Europe/Malta"),
    ("NL", "Europe/Amsterdam"),
    ("NO", "Europe/Oslo"),
    ("PL", "Europe/Warsaw"),
    ("PT", "Europe/Lisbon"),
    ("RO", "Europe/Bucharest"),
    ("RS", "Europe/Belgrade"),
    ("SE", "Europe/Stockholm"),
    ("SI", "Europe/Ljubljana"),
    ("SK", "Europe/Bratislava"),
    ("SM", "Europe/San_Marino"),
    ("UA", "Europe/Kyiv"),
    ("VA", "Europe/Vatican"),
];

/// The built-in zone name for `country` (ISO code, upper case).
pub fn country_zone(country: &str) -> Option<&'static str> {
    let key = match country.as_bytes() {
        [a, b] => [a.to_ascii_uppercase(), b.to_ascii_uppercase()],
        _ => return None,
    };
    COUNTRY_ZONES
        .binary_search_by(|(c, _)| c.as_bytes().cmp(&key[..]))
        .ok()
        .map(|i| COUNTRY_ZONES[i].1)
}

/// Resolves an IANA zone name: the system database (`/usr/share/zoneinfo`)
/// first, then the copy bundled into the binary (`tzdb-bundle-always`), so
/// that zones resolve on hosts without tzdata. Each name is looked up once
/// per process and cached, so a check does no file-system access.
pub(crate) fn resolve(name: &str) -> Option<TimeZone> {
    static CACHE: OnceLock<RwLock<HashMap<String, Option<TimeZone>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(name)
    {
        return hit.clone();
    }
    let found = jiff::tz::db()
        .get(name)
        .ok()
        .or_else(|| bundled().get(name).ok());
    let mut map = cache.write().unwrap_or_else(PoisonError::into_inner);
    // Bounded: only names from configuration and the built-in map get here.
    if map.len() < 1024 {
        map.insert(name.to_owned(), found.clone());
    }
    found
}

fn bundled() -> &'static TimeZoneDatabase {
    static DB: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DB.get_or_init(TimeZoneDatabase::bundled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_zone_resolves() {
        for (country, zone) in COUNTRY_ZONES {
            assert!(resolve(zone).is_some(), "{country}: {zone}");
            assert!(
                country.parse::<phonenumber::country::Id>().is_ok(),
                "{country}"
            );
        }
        assert!(COUNTRY_ZONES.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
        assert!(resolve("Mars/Olympus").is_none());
        assert_eq!(country_zone("pl"), Some("Europe/Warsaw"));
        assert_eq!(country_zone("US"), None);
        assert_eq!(country_zone("ua"), Some("Europe/Kyiv"));
        assert_eq!(country_zone("POL"), None);
    }

    #[test]
    fn bundled_database_has_warsaw() {
        // Works even where /usr/share/zoneinfo is missing.
        let tz = bundled().get("Europe/Warsaw").unwrap();
        assert_eq!(tz.iana_name(), Some("Europe/Warsaw"));
    }
}
