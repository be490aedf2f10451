//! Checking one section of the config after it is read: where a problem is
//! reported (the config crate prefixes each key with the section's path, so
//! `port` becomes `connectors[1].port`), and the rules several sections share.

use std::time::Duration;

/// Where a section's checks report what is wrong with it.
pub trait Report {
    /// `key` (relative to the section) is wrong because of `message`.
    fn error(&mut self, key: &str, message: String);

    /// A count that must be at least 1.
    fn at_least_one(&mut self, key: &str, value: u64) {
        if value < 1 {
            self.error(key, "must be at least 1".into());
        }
    }

    /// A duration that must be longer than zero.
    fn positive(&mut self, key: &str, value: Duration) {
        if value.is_zero() {
            self.error(key, "must be longer than 0s".into());
        }
    }
}

/// An `http://` or `https://` URL with a host and no whitespace.
pub fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            !host.is_empty() && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_need_a_scheme_and_a_host() {
        assert!(is_http_url("https://example.com/hook"));
        assert!(is_http_url("http://10.0.0.1:8080"));
        assert!(!is_http_url("ftp://example.com"));
        assert!(!is_http_url("https:///path"));
        assert!(!is_http_url("https://exa mple.com"));
        assert!(!is_http_url("example.com"));
    }
}
