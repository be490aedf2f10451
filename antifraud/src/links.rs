//! Finding the domains of the links in a message body.
//!
//! The scanner looks for *host-like runs* (letters of any script, digits,
//! `-`, `.` and the ideographic full stops that IDNA maps to `.`) and keeps a
//! run as a domain when its context says it is the host part of a link:
//!
//! - after `//` (`https://`, `HTTP://`, protocol-relative `//`, and the
//!   `https:/` and `https:\\` forms browsers repair): the host of a URL,
//!   unless an `@` follows later in the same authority (then the run is user
//!   info, and the real host is the run after the `@`);
//! - after `@` only inside a URL's authority (`https://user@evil.pl`); an
//!   `@` elsewhere means an e-mail address, whose parts are never links;
//! - before `@`: never (local part or user info);
//! - after a single `/` or `_`: never (a path segment such as `index.html`);
//! - otherwise (start of text, space, `:`, `=`, `(` …): a bare domain such as
//!   `www.foo.pl` or `pay-acme.pl/x`.
//!
//! A kept run is normalised: trailing dots stripped, lower-cased, IDN labels
//! converted to punycode (`zapłać.pl` → `xn--zapa-...`), ports, user info and
//! paths never belong to it. It counts as a domain only if it has at least two
//! labels of 1–63 characters `[a-z0-9-]` (no leading/trailing `-`), is at most
//! 253 characters, and its top-level label is alphabetic with at least two
//! letters (or an IDN TLD `xn--…`). That keeps `12.50`, `zł.`, `v1.2` and IP
//! addresses out (IP-address links are not checked; neither are
//! percent-encoded host names such as `https://%65vil.pl`). A bare word pair such as `dobry.prosimy` (a missing space)
//! does pass; such false positives are harmless, because a domain only matters
//! when it is on the blocklist or a shortener list.

/// Longest domain name in DNS presentation format without the trailing dot.
const MAX_DOMAIN_LEN: usize = 253;

/// Characters that may form part of a host-like run.
#[inline]
fn is_host_char(c: char) -> bool {
    c.is_alphanumeric() || c == '-' || c == '.' || is_ideographic_dot(c)
}

/// Full stops that UTS #46 maps to `.` (used to disguise domains).
#[inline]
fn is_ideographic_dot(c: char) -> bool {
    matches!(c, '\u{3002}' | '\u{FF0E}' | '\u{FF61}')
}

/// Characters that end a "token" (a URL cannot contain them unescaped).
#[inline]
fn is_token_boundary(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '<' | '>' | '`' | '(' | ')' | '[' | ']' | '{' | '}'
        )
}

/// Characters that end a URL authority (`scheme://authority/...`).
#[inline]
fn ends_authority(c: char) -> bool {
    is_token_boundary(c) || matches!(c, '/' | '?' | '#' | '\\')
}

/// Every domain linked from `text`, normalised, in order of appearance
/// (duplicates removed).
///
/// ```
/// use goniec_antifraud::extract_domains;
/// assert_eq!(
///     extract_domains("Zapłać na https://Pay.Example.COM./x lub www.foo.pl, kwota 12.50 zł."),
///     vec!["pay.example.com", "www.foo.pl"],
/// );
/// ```
pub fn extract_domains(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut buf = String::new();
    for_each_domain(text, &mut buf, |d| {
        if !out.iter().any(|seen| seen == d) {
            out.push(d.to_owned());
        }
    });
    out
}

/// Calls `f` with every normalised link domain in `text` (duplicates
/// included). `buf` is scratch space reused between calls, so that an ASCII
/// text allocates nothing after the first domain.
pub(crate) fn for_each_domain(text: &str, buf: &mut String, mut f: impl FnMut(&str)) {
    // Every domain contains a dot, so only the runs around dots are looked
    // at: the text is scanned byte-wise for `.` and for the lead bytes of the
    // ideographic full stops (0xE3, 0xEF), and each such run is expanded to
    // its ends. Text without dots costs one pass over its bytes.
    let bytes = text.as_bytes();
    // Where the search goes on, and how far left a run may extend (the end
    // of the last run: a non-host character or the start of the text).
    let mut pos = 0;
    let mut floor = 0;
    while pos < bytes.len() {
        let Some(off) = bytes[pos..]
            .iter()
            .position(|&b| b == b'.' || b == 0xE3 || b == 0xEF)
        else {
            break;
        };
        let at = pos + off;
        // `at` is a char boundary: '.' is ASCII and 0xE3/0xEF are lead bytes.
        let dot = match text[at..].chars().next() {
            Some(c) if c == '.' || is_ideographic_dot(c) => c,
            Some(c) => {
                pos = at + c.len_utf8();
                continue;
            }
            None => break,
        };
        let mut ascii = true;
        let mut start = at;
        for c in text[floor..at].chars().rev() {
            if !is_host_char(c) {
                break;
            }
            ascii &= c.is_ascii();
            start -= c.len_utf8();
        }
        let mut end = at + dot.len_utf8();
        ascii &= dot.is_ascii();
        for c in text[end..].chars() {
            if !is_host_char(c) {
                break;
            }
            ascii &= c.is_ascii();
            end += c.len_utf8();
        }
        pos = end;
        floor = end;
        if is_link_context(text, start, end) {
            if let Some(domain) = normalize_run(&text[start..end], ascii, buf) {
                f(domain);
            }
        }
    }
}

/// Decides from the characters around `text[start..end]` whether the run is
/// a link's host (see the module docs).
fn is_link_context(text: &str, start: usize, end: usize) -> bool {
    let before = &text[..start];
    let after = &text[end..];
    if after.starts_with('@') {
        return false;
    }
    if follows_scheme(before) {
        // The host of a URL, unless user info: an `@` later in the authority.
        for c in after.chars() {
            if ends_authority(c) {
                break;
            }
            if c == '@' {
                return false;
            }
        }
        return true;
    }
    match before.chars().next_back() {
        None => true,
        Some('@') => {
            // Inside `scheme://user@host`? Look back through the authority.
            let authority = &before[..before.len() - 1];
            for (idx, c) in authority.char_indices().rev() {
                if c == '/' || c == '\\' {
                    return follows_scheme(&authority[..=idx]);
                }
                if is_token_boundary(c) || matches!(c, '?' | '#') {
                    return false;
                }
            }
            false
        }
        Some('/' | '_' | '\\') => false,
        Some(_) => true,
    }
}

/// Whether `before` ends where a URL's authority starts: `//` (after a
/// scheme, or protocol-relative), or the forms browsers repair for http(s):
/// `:/` and backslashes (`https:\\evil.pl`, `https:/evil.pl`).
fn follows_scheme(before: &str) -> bool {
    matches!(
        before.as_bytes(),
        [.., b'/' | b'\\', b'/' | b'\\'] | [.., b':', b'/' | b'\\']
    )
}

/// Normalises a run to a domain (see [`normalize_domain`]); the result lives
/// in `buf`.
fn normalize_run<'b>(run: &str, ascii: bool, buf: &'b mut String) -> Option<&'b str> {
    let run = run.trim_start_matches(['.', '-']);
    let run = run.trim_end_matches(|c: char| c == '.' || is_ideographic_dot(c));
    if run.is_empty() || run.len() > MAX_DOMAIN_LEN * 4 {
        return None;
    }
    buf.clear();
    if ascii {
        buf.extend(run.chars().map(|c| c.to_ascii_lowercase()));
    } else {
        let mapped = idna::domain_to_ascii(run).ok()?;
        buf.push_str(mapped.trim_end_matches('.'));
    }
    if is_valid_domain(buf) {
        Some(buf.as_str())
    } else {
        None
    }
}

/// Normalises one domain name as written in a list or configuration:
/// surrounding whitespace and trailing dots removed, lower-cased, IDN labels
/// in punycode. Returns `None` when the result is not a plausible domain (see
/// the module docs for the rules).
///
/// ```
/// use goniec_antifraud::normalize_domain;
/// assert_eq!(normalize_domain(" Pay.Example.COM. ").as_deref(), Some("pay.example.com"));
/// assert_eq!(normalize_domain("zapłać.pl").as_deref(), Some("xn--zapa-ota66a.pl"));
/// assert_eq!(normalize_domain("12.50"), None);
/// ```
pub fn normalize_domain(s: &str) -> Option<String> {
    let s = s.trim();
    let ascii = s.is_ascii();
    if s.is_empty() || !s.chars().all(is_host_char) {
        return None;
    }
    let mut buf = String::new();
    normalize_run(s, ascii, &mut buf)?;
    Some(buf)
}

/// Whether `d` (lower-case ASCII) is a plausible domain name.
pub(crate) fn is_valid_domain(d: &str) -> bool {
    if d.len() > MAX_DOMAIN_LEN || d.is_empty() {
        return false;
    }
    let mut labels = 0usize;
    let mut last = "";
    for label in d.split('.') {
        let lb = label.as_bytes();
        if lb.is_empty() || lb.len() > 63 {
            return false;
        }
        if lb[0] == b'-' || lb[lb.len() - 1] == b'-' {
            return false;
        }
        if !lb
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        {
            return false;
        }
        labels += 1;
        last = label;
    }
    if labels < 2 {
        return false;
    }
    let tld = last.as_bytes();
    (tld.len() >= 2 && tld.iter().all(u8::is_ascii_lowercase))
        || (last.starts_with("xn--") && last.len() > 4)
}

/// `host` or one of its parent domains: `a.b.pl`, then `b.pl`, then `pl`.
/// Slices only, no allocation.
pub(crate) fn self_and_parents(host: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(host);
    std::iter::from_fn(move || {
        let cur = next?;
        next = cur.find('.').map(|dot| &cur[dot + 1..]);
        Some(cur)
    })
}

/// Whether `host` equals `domain` or is a subdomain of it (ASCII
/// case-insensitive; both already normalised otherwise).
#[inline]
pub(crate) fn is_same_or_subdomain(host: &str, domain: &str) -> bool {
    let domain = domain.trim_end_matches('.');
    if host.len() == domain.len() {
        return host.eq_ignore_ascii_case(domain);
    }
    host.len() > domain.len()
        && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
        && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction_table() {
        let cases: &[(&str, &[&str])] = &[
            // Schemes, case, trailing dot, port, path.
            ("HTTPS://Pay.Example.COM./x", &["pay.example.com"]),
            ("http://evil.pl:8080/a?b=c#d", &["evil.pl"]),
            ("Wejdź: https://sub.evil.pl/pay.", &["sub.evil.pl"]),
            ("//cdn.evil.pl/x.js", &["cdn.evil.pl"]),
            // Forms browsers repair: backslashes, one slash.
            ("https:\\\\evil.pl\\x", &["evil.pl"]),
            ("https:/evil.pl/x", &["evil.pl"]),
            ("https:\\\\user@evil.pl", &["evil.pl"]),
            // Bare domains, with and without www and path.
            ("www.foo.pl", &["www.foo.pl"]),
            ("Zapłać na pay-acme.pl/x teraz", &["pay-acme.pl"]),
            ("WWW.FOO.PL.", &["www.foo.pl"]),
            ("Link:pay-acme.pl/x", &["pay-acme.pl"]),
            ("(www.foo.pl)", &["www.foo.pl"]),
            (
                "Szczegóły na foo.pl, bar.com; baz.de!",
                &["foo.pl", "bar.com", "baz.de"],
            ),
            ("<a href=\"https://evil.pl/x\">klik</a>", &["evil.pl"]),
            // IDN: to punycode, including ideographic full stops.
            ("zapłać.pl", &["xn--zapa-ota66a.pl"]),
            ("https://ZAPŁAĆ.pl/faktura", &["xn--zapa-ota66a.pl"]),
            ("płatność.com.pl/1", &["xn--patno-kxa22byg.com.pl"]),
            ("evil\u{3002}pl", &["evil.pl"]),
            (
                "テスト.jp i 例え.com",
                &["xn--zckzah.jp", "xn--r8jz45g.com"],
            ),
            // User info is not the host; the host after it is.
            ("https://user:pass@evil.com/", &["evil.com"]),
            ("https://paypal.com@evil.com/login", &["evil.com"]),
            ("https://jan.kowalski:pw@evil.com", &["evil.com"]),
            // Open redirects: the nested URL's host is found too.
            (
                "https://google.com/url?q=https://evil.pl/x",
                &["google.com", "evil.pl"],
            ),
            ("https://x.pl/r?to=evil.pl", &["x.pl", "evil.pl"]),
            // Path segments are not domains.
            ("https://x.pl/a/b.html", &["x.pl"]),
            ("pay-acme.pl/faktura/plik_nr.pdf", &["pay-acme.pl"]),
            // No false positives.
            ("Kwota 12.50 zł.", &[]),
            ("Do zapłaty 1.234,50 zł. Dziękujemy.", &[]),
            ("Pisz na jan.kowalski@example.com lub biuro@acme.pl.", &[]),
            ("mailto:jan@example.com", &[]),
            ("wersja v1.2 i 3.14", &[]),
            ("http://192.168.1.1/admin", &[]),
            ("koniec zdania. Następne zdanie.", &[]),
            ("a.b", &[]),
            ("-.pl", &[]),
            ("bad-.pl good.pl", &["good.pl"]),
            ("", &[]),
            // Repeated domains appear once.
            ("evil.pl i evil.pl", &["evil.pl"]),
        ];
        for (text, want) in cases {
            let got = extract_domains(text);
            assert_eq!(&got, want, "text: {text:?}");
        }
    }

    #[test]
    fn long_label_and_name_rejected() {
        let label = "a".repeat(64);
        assert!(extract_domains(&format!("{label}.pl")).is_empty());
        let ok = "a".repeat(63);
        assert_eq!(
            extract_domains(&format!("{ok}.pl")),
            vec![format!("{ok}.pl")]
        );
        let long = format!("{}pl", "abcdefghi.".repeat(26));
        assert!(long.len() > MAX_DOMAIN_LEN);
        assert!(extract_domains(&long).is_empty());
    }

    #[test]
    fn normalize_domain_rules() {
        assert_eq!(
            normalize_domain("Pay.Example.COM.").as_deref(),
            Some("pay.example.com")
        );
        assert_eq!(
            normalize_domain("zapłać.pl").as_deref(),
            Some("xn--zapa-ota66a.pl")
        );
        assert_eq!(
            normalize_domain("xn--zapa-ota66a.pl").as_deref(),
            Some("xn--zapa-ota66a.pl")
        );
        assert_eq!(
            normalize_domain("пример.рф").as_deref(),
            Some("xn--e1afmkfd.xn--p1ai")
        );
        assert_eq!(normalize_domain("evil.pl extra"), None);
        assert_eq!(normalize_domain("localhost"), None);
        assert_eq!(normalize_domain("1.2.3.4"), None);
        assert_eq!(normalize_domain("under_score.pl"), None);
        assert_eq!(normalize_domain(""), None);
    }

    #[test]
    fn parents_walk() {
        let all: Vec<&str> = self_and_parents("a.b.evil.pl").collect();
        assert_eq!(all, ["a.b.evil.pl", "b.evil.pl", "evil.pl", "pl"]);
    }

    #[test]
    fn subdomain_match() {
        assert!(is_same_or_subdomain("pay.acme.pl", "acme.pl"));
        assert!(is_same_or_subdomain("acme.pl", "acme.pl"));
        assert!(is_same_or_subdomain("acme.pl", "ACME.pl"));
        // A sibling that merely ends with the same letters is not a subdomain.
        assert!(!is_same_or_subdomain("evilacme.pl", "acme.pl"));
        assert!(!is_same_or_subdomain("acme.pl.evil.com", "acme.pl"));
        assert!(!is_same_or_subdomain("pl", "acme.pl"));
    }
}
