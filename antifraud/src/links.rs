//! Finding the hosts of the links in a message body.
//!
//! # What a browser would open
//!
//! Before looking for hosts, a text is also read the way a browser reads a
//! link ([`crate::decode`]): HTML character references and percent-encoding
//! decoded, invisible (default-ignorable) characters removed, and tab and
//! newline removed inside a URL's authority. Both the text as written and
//! that reading are scanned, so `https://evil&#46;pl`, `evil%2Epl`,
//! `ev\u{AD}il.pl` and `bit\u{200B}.ly` are found, and nothing found in
//! the text as written is lost.
//!
//! # Domains
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
//! converted to punycode with UTS #46 mapping (`zapłać.pl` → `xn--zapa-...`,
//! fullwidth `ｅｖｉｌ．ｐｌ` → `evil.pl`), ports, user info and paths never
//! belong to it. It counts as a domain only if it has at least two labels of
//! 1–63 characters `[a-z0-9-]` (no leading/trailing `-`), is at most 253
//! characters, and its top-level label is alphabetic with at least two
//! letters (or an IDN TLD `xn--…`). That keeps `12.50`, `zł.` and `v1.2` out.
//! A bare word pair such as `dobry.prosimy` (a missing space) does pass; such
//! false positives are harmless, because a domain only matters when it is on
//! the blocklist or a shortener list.
//!
//! # IP addresses
//!
//! A link's host may be an IP address instead of a name ([`Host::Ip`]):
//!
//! - the host of a URL (after `scheme://`, `scheme:/`, `scheme:\\`, or a
//!   protocol-relative `//` at the start of a token), parsed as the WHATWG
//!   URL standard parses an http(s) host: IDNA-mapped first (fullwidth
//!   digits and dots), then any name ending in a number is an IPv4 address
//!   in decimal, octal or hex parts, one to four of them
//!   (`http://3232235777/`, `http://0xC0.0250.1.1/`, `http://127.1/` are all
//!   addresses); `[…]` is an IPv6 address;
//! - a bare dotted quad in a link context (`192.168.1.1/admin`, or alone:
//!   phones link those too).
//!
//! The verdict decides what an IP-address link means (see
//! [`ReasonCode::IpAddressLink`](crate::ReasonCode::IpAddressLink)).

use crate::decode::{percent_char, Decoder};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

/// The host of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Host<'a> {
    /// A normalised domain name (lower-case ASCII, IDN labels in punycode).
    Domain(&'a str),
    /// An IP address literal.
    Ip(IpAddr),
}

/// Scratch space for [`for_each_host`], reused between the texts of one
/// check: an ASCII text allocates nothing after its first domain, and a text
/// that needs no decoding allocates nothing for decoding.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    host: String,
    decoder: Decoder,
}

/// Every domain linked from `text`, normalised, in order of appearance
/// (duplicates removed). Hosts that are IP addresses are not included.
///
/// ```
/// use goniec_antifraud::extract_domains;
/// assert_eq!(
///     extract_domains("Zapłać na https://Pay.Example.COM./x lub www.foo.pl, kwota 12.50 zł."),
///     vec!["pay.example.com", "www.foo.pl"],
/// );
/// // Spellings a browser undoes are undone.
/// assert_eq!(
///     extract_domains("<a href=\"https://evil&#46;pl\">x</a> bit\u{200B}.ly/x"),
///     vec!["evil.pl", "bit.ly"],
/// );
/// ```
pub fn extract_domains(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for_each_host(text, &mut Scratch::default(), |host| {
        if let Host::Domain(d) = host {
            if !out.iter().any(|seen| seen == d) {
                out.push(d.to_owned());
            }
        }
    });
    out
}

/// Calls `f` with the host of every link in `text` (duplicates included):
/// first those of the text as written, then those of the text as a browser
/// reads it, if that differs (see the module docs).
pub(crate) fn for_each_host(text: &str, scratch: &mut Scratch, mut f: impl FnMut(Host<'_>)) {
    scan(text, &mut scratch.host, &mut f);
    if let Some(decoded) = scratch.decoder.decode(text) {
        scan(decoded, &mut scratch.host, &mut f);
    }
}

/// The hosts of one reading of a text: names and dotted quads around dots,
/// then IP addresses after `//`.
fn scan(text: &str, buf: &mut String, f: &mut impl FnMut(Host<'_>)) {
    scan_runs(text, buf, f);
    scan_authorities(text, f);
}

/// Calls `f` with every normalised link domain in `text`, and every bare
/// dotted quad in a link context (duplicates included). `buf` is scratch
/// space reused between calls.
fn scan_runs(text: &str, buf: &mut String, f: &mut impl FnMut(Host<'_>)) {
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
            let run = &text[start..end];
            if let Some(domain) = normalize_run(run, ascii, buf) {
                f(Host::Domain(domain));
            } else if let Ok(ip) = run.trim_end_matches('.').parse::<Ipv4Addr>() {
                // Only the strict form (four decimal parts, no leading
                // zeros): `12.50`, dates and amounts never are one.
                f(Host::Ip(IpAddr::V4(ip)));
            }
        }
    }
}

/// Calls `f` with the host of every URL in `text` whose host is an IP
/// address, parsed as a browser parses an http(s) URL.
fn scan_authorities(text: &str, f: &mut impl FnMut(Host<'_>)) {
    let bytes = text.as_bytes();
    let mut pos = 0;
    while let Some(off) = bytes[pos..].iter().position(|&b| b == b'/' || b == b'\\') {
        let at = pos + off;
        // Browsers skip any number of slashes and backslashes after an
        // http(s) scheme.
        let mut start = at;
        while start < bytes.len() && matches!(bytes[start], b'/' | b'\\') {
            start += 1;
        }
        pos = start;
        let opens_authority = match at.checked_sub(1).map(|i| bytes[i]) {
            Some(b':') => has_scheme(&bytes[..at - 1]),
            // Protocol-relative: only at the start of a token, so that a
            // `//` inside a path (`/faktury//12345`) is not taken for one.
            Some(b) => start - at >= 2 && (b.is_ascii_whitespace() || b"\"'<>([{=`".contains(&b)),
            None => start - at >= 2,
        };
        if opens_authority {
            if let Some(ip) = authority_ip(&text[start..]) {
                f(Host::Ip(ip));
            }
        }
    }
}

/// Whether `before` ends with a URL scheme (`ALPHA *( ALPHA / DIGIT / "+" /
/// "-" / "." )`), so that `before` + `:` starts a URL.
fn has_scheme(before: &[u8]) -> bool {
    let len = before
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        .count();
    len > 0 && before[before.len() - len].is_ascii_alphabetic()
}

/// The IP address that is the host of the authority at the start of `rest`,
/// if it is one.
fn authority_ip(rest: &str) -> Option<IpAddr> {
    let end = rest
        .find(|c: char| {
            c.is_whitespace() || matches!(c, '/' | '\\' | '?' | '#' | '"' | '\'' | '<' | '>' | '`')
        })
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    // User info ends at the last `@` (`http://a@b@1.2.3.4/` goes to 1.2.3.4).
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(v6) = host_port.strip_prefix('[') {
        let inner = &v6[..v6.find(']')?];
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let host = host_port.split(':').next().unwrap_or(host_port);
    // Punctuation after a URL in running text is not part of it (as the
    // autolinkers of mail and SMS apps decide); a trailing dot is allowed.
    let host = host.trim_end_matches([',', ';', '!', ')', ']', '}', '*', '.']);
    if host.is_empty() {
        return None;
    }
    let v4 = if host.is_ascii() {
        parse_url_ipv4(host)
    } else {
        // UTS #46 first, as a browser does: fullwidth digits and dots.
        parse_url_ipv4(&idna::domain_to_ascii(host).ok()?)
    };
    v4.map(IpAddr::V4)
}

/// The WHATWG URL standard's IPv4 parser: one to four `.`-separated parts,
/// each decimal, octal (leading `0`) or hex (`0x`); every part but the last
/// is one byte, the last fills the remaining bytes. One trailing dot is
/// allowed. `None` when `host` is not such an address (for a browser, a
/// host ending in a number that is not an address is an invalid URL).
pub(crate) fn parse_url_ipv4(host: &str) -> Option<Ipv4Addr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    let mut parts = [0u64; 4];
    let mut count = 0;
    for part in host.split('.') {
        *parts.get_mut(count)? = parse_url_ipv4_number(part)?;
        count += 1;
    }
    let (last, init) = parts[..count].split_last()?;
    if init.iter().any(|&p| p > 255) || *last >= 1u64 << (8 * (5 - count)) {
        return None;
    }
    let mut addr = *last;
    for (i, part) in init.iter().enumerate() {
        addr += part << (8 * (3 - i));
    }
    u32::try_from(addr).ok().map(Ipv4Addr::from)
}

/// One part of [`parse_url_ipv4`]; values too large for an address saturate
/// (and are then refused by the range checks).
fn parse_url_ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    digits.chars().try_fold(0u64, |value, c| {
        let digit = c.to_digit(radix)?;
        Some(
            value
                .saturating_mul(u64::from(radix))
                .saturating_add(u64::from(digit)),
        )
    })
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
        // The tail of a percent escape (`%65vil.pl`, `%2Fevil.pl`) is never
        // a host by itself: the text as a browser reads it (always scanned
        // too when it has an escape) has the real one. A `%` that starts no
        // escape is just a character (`50%evil.pl`). A run after an
        // invisible character is kept: `ev\u{AD}il.pl` yields a harmless
        // `il.pl`, while `Zobacz\u{200B}evil.pl` must still yield `evil.pl`.
        Some('%') => percent_char(&text.as_bytes()[start - 1..]).is_none(),
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
            // Spellings a browser undoes: invisible characters, character
            // references, percent-encoding, fullwidth forms, tab/newline in
            // the authority; in an `href` or in running text.
            // (A run after an invisible character is kept as written too.)
            ("ev\u{AD}il.pl", &["il.pl", "evil.pl"]),
            ("Zobacz\u{200B}evil.pl", &["evil.pl", "zobaczevil.pl"]),
            ("https://evil\u{200B}.pl/x", &["evil.pl"]),
            ("bit\u{200B}.ly/3abc", &["bit.ly"]),
            ("<a href=\"https://evil&#46;pl/x\">x</a>", &["evil.pl"]),
            ("<a href=\"https://evil&#x2E;pl/x\">x</a>", &["evil.pl"]),
            (
                "<a href=\"https://e&#118;il&period;pl\">x</a>",
                &["evil.pl"],
            ),
            ("<a href=\"https://evil%2Epl/x\">x</a>", &["evil.pl"]),
            ("<a href='https://%65vil.pl'>x</a>", &["evil.pl"]),
            // (A line break reads as one in the text as written, too.)
            (
                "<a href=\"https://ev\nil.pl/\">x</a>",
                &["il.pl", "evil.pl"],
            ),
            ("ｅｖｉｌ．ｐｌ/x", &["evil.pl"]),
            ("https://ＥＶＩＬ。ＰＬ", &["evil.pl"]),
            // What decoding does not change is found once, as written.
            ("https://x.pl/?a=1&amp;b=evil.pl", &["x.pl", "evil.pl"]),
            ("Rabat 50% na acme.pl", &["acme.pl"]),
            ("Rabat 50%evil.pl i 10%ee.pl", &["evil.pl", "ee.pl"]),
        ];
        let mut bad = Vec::new();
        for (text, want) in cases {
            let got = extract_domains(text);
            if got != *want {
                bad.push(format!("{text:?}: got {got:?}, want {want:?}"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    /// Every host of `text`, deduplicated: domains as they are, IP
    /// addresses as `ip:<address>`.
    fn hosts(text: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for_each_host(text, &mut Scratch::default(), |h| {
            let h = match h {
                Host::Domain(d) => d.to_owned(),
                Host::Ip(ip) => format!("ip:{ip}"),
            };
            if !out.contains(&h) {
                out.push(h);
            }
        });
        out
    }

    #[test]
    fn ip_address_hosts_table() {
        let cases: &[(&str, &[&str])] = &[
            // Dotted quads, in URLs and bare.
            ("http://192.168.1.1/admin", &["ip:192.168.1.1"]),
            ("Wejdź: 192.168.1.1/admin", &["ip:192.168.1.1"]),
            ("Adres 203.0.113.7.", &["ip:203.0.113.7"]),
            ("http://203.0.113.7:8080/x", &["ip:203.0.113.7"]),
            ("https://203.0.113.7./x", &["ip:203.0.113.7"]),
            // The forms the WHATWG URL parser accepts in an http(s) URL.
            ("http://3232235777/", &["ip:192.168.1.1"]),
            ("http://0xC0A80101/", &["ip:192.168.1.1"]),
            ("http://0Xc0.0xA8.0x1.0x1/", &["ip:192.168.1.1"]),
            ("http://0300.0250.01.01/", &["ip:192.168.1.1"]),
            ("http://030052000401/", &["ip:192.168.1.1"]),
            ("http://192.168.257/", &["ip:192.168.1.1"]),
            ("http://192.11010305/", &["ip:192.168.1.1"]),
            ("http://127.1/", &["ip:127.0.0.1"]),
            ("http://0/", &["ip:0.0.0.0"]),
            ("HTTPS:\\\\2130706433\\x", &["ip:127.0.0.1"]),
            ("https:/2130706433", &["ip:127.0.0.1"]),
            ("<a href=\"//2130706433/x\">", &["ip:127.0.0.1"]),
            ("(http://2130706433)", &["ip:127.0.0.1"]),
            ("http://2130706433, potem", &["ip:127.0.0.1"]),
            // Fullwidth digits and dots are mapped first, as IDNA does.
            ("http://１２７．０．０．１/", &["ip:127.0.0.1"]),
            // Disguised by encoding or invisible characters.
            ("http://%31%32%37.0.0.1/", &["ip:127.0.0.1"]),
            (
                "<a href=\"http://127&#46;0&#46;0&#46;1\">",
                &["ip:127.0.0.1"],
            ),
            ("http://21307\u{200B}06433/", &["ip:127.0.0.1"]),
            // User info is not the host; the last `@` ends it.
            ("http://good.pl@3232235777/", &["ip:192.168.1.1"]),
            ("http://a@b@10.0.0.1/", &["ip:10.0.0.1"]),
            ("http://10.0.0.1@good.pl/", &["good.pl"]),
            // IPv6 literals.
            ("http://[::1]/", &["ip:::1"]),
            ("http://[2001:DB8::1]:8080/x", &["ip:2001:db8::1"]),
            // (The dotted quad inside is found on its own, too: the same host.)
            (
                "http://[::ffff:127.0.0.1]/",
                &["ip:127.0.0.1", "ip:::ffff:127.0.0.1"],
            ),
            (
                "http://user@[64:ff9b::a9fe:a9fe]/",
                &["ip:64:ff9b::a9fe:a9fe"],
            ),
            // Not addresses: invalid for a browser, names, or no URL at all.
            ("http://4294967296/", &[]),
            ("http://256.1.1.1/", &[]),
            ("http://1.2.3.4.5/", &[]),
            ("http://0x1g/", &[]),
            ("http://089/", &[]),
            ("http://[::1/", &[]),
            ("http://[fe80::1%25eth0]/", &[]),
            ("http://evil.pl.0x7f/", &[]),
            ("https://acme.pl/faktury//12345", &["acme.pl"]),
            ("Kwota 12.50 zł, termin 10.03.2026, tel. 601 234 567.", &[]),
            ("wersja v1.2.3.4, 1:/2, 10/03/2026, 50%", &[]),
            ("010.0.0.1 i 1.2.3", &[]),
            ("Pisz: jan@example.com, 10.0.0.1@example.com", &[]),
            ("https://x.pl/a/10.0.0.1", &["x.pl"]),
        ];
        let mut bad = Vec::new();
        for (text, want) in cases {
            let got = hosts(text);
            if got != *want {
                bad.push(format!("{text:?}: got {got:?}, want {want:?}"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[test]
    fn whatwg_ipv4_parser() {
        let ok = [
            ("0", "0.0.0.0"),
            ("0x", "0.0.0.0"),
            ("4294967295", "255.255.255.255"),
            ("0xffffffff", "255.255.255.255"),
            ("037777777777", "255.255.255.255"),
            ("1.16777215", "1.255.255.255"),
            ("1.2.65535", "1.2.255.255"),
            ("00000000000000000001.2.3.4", "1.2.3.4"),
            ("1.2.3.4.", "1.2.3.4"),
        ];
        for (host, want) in ok {
            assert_eq!(parse_url_ipv4(host), Some(want.parse().unwrap()), "{host}");
        }
        for host in [
            "",
            ".",
            "1..2",
            "1.2.3.4..",
            "1.2.3.4.5",
            "4294967296",
            "1.16777216",
            "256.0.0.1",
            "08",
            "0x1g",
            "1e3",
            "-1",
            "evil.pl",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_url_ipv4(host), None, "{host}");
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
