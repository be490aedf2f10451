//! The phishing-domain blocklist (CERT Polska's `domains.txt` format) and a
//! cheap shareable handle for hot reloads.

use crate::hash::FxBuildHasher;
use crate::links::{self, self_and_parents};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, PoisonError, RwLock};

/// How many invalid lines [`Blocklist::parse`] keeps as examples.
pub const MAX_INVALID_EXAMPLES: usize = 10;

/// A set of blocked domains and IP addresses. A host is blocked when it or
/// any parent domain is in the set (`a.evil.pl` is blocked by `evil.pl`;
/// `notevil.pl` is not); an IP-address host when the address is (an IPv6
/// address that embeds an IPv4 address as the IPv4-mapped `::ffff:a.b.c.d`
/// or the NAT64 `64:ff9b::a.b.c.d` form — both reach that IPv4 host — is
/// also blocked by the IPv4 entry).
///
/// Lookups hash slices of the already-normalised host with an FxHash, so a
/// check allocates nothing. 130,000 entries take about 6 MB.
#[derive(Debug, Clone, Default)]
pub struct Blocklist {
    domains: HashSet<Box<str>, FxBuildHasher>,
    ips: HashSet<IpAddr, FxBuildHasher>,
    invalid_lines: usize,
    invalid_examples: Vec<InvalidLine>,
}

/// A line of a blocklist file that is not a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLine {
    /// 1-based line number.
    pub line: usize,
    /// The line, trimmed and cut to 100 characters.
    pub text: String,
}

static EMPTY: Blocklist = Blocklist {
    domains: HashSet::with_hasher(FxBuildHasher::new()),
    ips: HashSet::with_hasher(FxBuildHasher::new()),
    invalid_lines: 0,
    invalid_examples: Vec::new(),
};

impl Blocklist {
    /// An empty blocklist with a `'static` lifetime (the default of
    /// [`Screening`](crate::Screening)).
    pub fn empty() -> &'static Blocklist {
        &EMPTY
    }

    /// Parses CERT Polska's `domains.txt` format: one domain per line.
    /// Blank lines and `#` comments (whole-line or trailing) are ignored,
    /// surrounding whitespace is trimmed, names are lower-cased, IDNs are
    /// converted to punycode and a trailing dot is dropped; a leading `*.`
    /// is accepted and means the same as the bare domain. A line that is an
    /// IP address (`203.0.113.7`, `2001:db8::1`, `[2001:db8::1]`, in the
    /// standard notation only) blocks links to that address. Every other line
    /// that is not a plausible domain of at least two labels (for example a
    /// URL, two words, or a bare TLD) is counted in
    /// [`invalid_lines`](Self::invalid_lines) with the first
    /// [`MAX_INVALID_EXAMPLES`] kept, instead of failing the whole file.
    pub fn parse(text: &str) -> Blocklist {
        let mut list = Blocklist::default();
        list.domains.reserve(text.len() / 20);
        for (idx, raw) in text.lines().enumerate() {
            let line = match raw.find('#') {
                Some(hash) => &raw[..hash],
                None => raw,
            };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let bare = line.strip_prefix("*.").unwrap_or(line);
            if let Some(ip) = parse_ip_entry(line) {
                list.ips.insert(canonical_ip(ip));
                continue;
            }
            match links::normalize_domain(bare) {
                Some(domain) => {
                    list.domains.insert(domain.into_boxed_str());
                }
                None => {
                    list.invalid_lines += 1;
                    if list.invalid_examples.len() < MAX_INVALID_EXAMPLES {
                        list.invalid_examples.push(InvalidLine {
                            line: idx + 1,
                            text: line.chars().take(100).collect(),
                        });
                    }
                }
            }
        }
        list.domains.shrink_to_fit();
        list.ips.shrink_to_fit();
        list
    }

    /// A blocklist of the given domains (normalised like [`parse`](Self::parse);
    /// invalid ones are counted, not kept).
    pub fn from_domains<I, S>(domains: I) -> Blocklist
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut text = String::new();
        for d in domains {
            text.push_str(d.as_ref());
            text.push('\n');
        }
        Blocklist::parse(&text)
    }

    /// Number of distinct entries (domains and IP addresses).
    pub fn len(&self) -> usize {
        self.domains.len() + self.ips.len()
    }

    /// Whether the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.ips.is_empty()
    }

    /// Lines that [`parse`](Self::parse) could not read as a domain.
    pub fn invalid_lines(&self) -> usize {
        self.invalid_lines
    }

    /// The first few invalid lines, for a log message.
    pub fn invalid_examples(&self) -> &[InvalidLine] {
        &self.invalid_examples
    }

    /// Whether `host` — an already normalised domain, as produced by
    /// [`extract_domains`](crate::extract_domains) or
    /// [`normalize_domain`](crate::normalize_domain) — or any of its parent
    /// domains is listed. Returns the listed domain.
    pub fn matching<'h>(&self, host: &'h str) -> Option<&'h str> {
        if self.domains.is_empty() {
            return None;
        }
        self_and_parents(host).find(|d| self.domains.contains(*d))
    }

    /// Whether the IP address `ip` is listed, directly or as the IPv4
    /// address it embeds (see the type docs). Returns the listed address.
    pub fn matching_ip(&self, ip: IpAddr) -> Option<IpAddr> {
        if self.ips.is_empty() {
            return None;
        }
        let canonical = canonical_ip(ip);
        self.ips.get(&canonical).copied()
    }

    /// Whether `host` or any of its parent domains is listed; `host` is
    /// normalised first, so it may be written in any case or as an IDN. An
    /// IP address (standard notation, IPv6 with or without brackets) is
    /// looked up as by [`matching_ip`](Self::matching_ip).
    pub fn is_blocked(&self, host: &str) -> bool {
        if let Some(ip) = parse_ip_entry(host.trim()) {
            return self.matching_ip(ip).is_some();
        }
        match links::normalize_domain(host) {
            Some(h) => self.matching(&h).is_some(),
            None => false,
        }
    }
}

/// An IP address in standard notation, IPv6 optionally in brackets.
fn parse_ip_entry(s: &str) -> Option<IpAddr> {
    let s = s
        .strip_prefix('[')
        .and_then(|v6| v6.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

/// The address a connection to `ip` reaches, for comparing entries: the IPv4
/// address of an IPv4-mapped (`::ffff:a.b.c.d`) or NAT64 well-known-prefix
/// (`64:ff9b::a.b.c.d`, RFC 6052) IPv6 address, else `ip` itself.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    const NAT64: [u16; 6] = [0x64, 0xff9b, 0, 0, 0, 0];
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            if v6.segments()[..6] == NAT64 {
                return IpAddr::V4(embedded_low_v4(v6));
            }
            ip
        }
        IpAddr::V4(_) => ip,
    }
}

/// The IPv4 address in the last 32 bits of `v6`.
fn embedded_low_v4(v6: Ipv6Addr) -> Ipv4Addr {
    let o = v6.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

/// A cheap, cloneable handle to the current blocklist, for hot reloads: the
/// gateway keeps one, calls [`get`](Self::get) per message (a read lock and an
/// `Arc` clone, no copying) and [`replace`](Self::replace) when the file
/// changes (watching the file or SIGHUP is the gateway's job). Readers that
/// already hold the old `Arc` finish with it; the lock is never held while
/// screening.
#[derive(Debug, Clone, Default)]
pub struct BlocklistHandle {
    current: Arc<RwLock<Arc<Blocklist>>>,
}

impl BlocklistHandle {
    /// A handle to `list`.
    pub fn new(list: Blocklist) -> Self {
        BlocklistHandle {
            current: Arc::new(RwLock::new(Arc::new(list))),
        }
    }

    /// The current list.
    pub fn get(&self) -> Arc<Blocklist> {
        // A poisoned lock only means a writer panicked between two complete
        // states (the swap is a single assignment), so the value is usable.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Installs `list` for every clone of this handle; returns the previous one.
    pub fn replace(&self, list: Blocklist) -> Arc<Blocklist> {
        let new = Arc::new(list);
        let mut guard = self.current.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *guard, new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# CERT Polska - lista ostrzeżeń przed niebezpiecznymi stronami
# https://hole.cert.pl/domains/domains.txt
# generated 2026-05-20

evil.pl
  Pay-Acme.PL.
platnosci-inpost.com.pl   # comment after the entry
zapłać-teraz.pl
*.wildcard.net
xn--bezpieczna-patno-2bc.pl

this is not a domain
http://url.example/path
com
12.50
EVIL.pl
\tspaced.info\t
";

    #[test]
    fn parses_realistic_sample() {
        let list = Blocklist::parse(SAMPLE);
        assert_eq!(list.len(), 7, "{list:?}");
        for d in [
            "evil.pl",
            "pay-acme.pl",
            "platnosci-inpost.com.pl",
            "xn--zapa-teraz-thb02e.pl",
            "wildcard.net",
            "xn--bezpieczna-patno-2bc.pl",
            "spaced.info",
        ] {
            assert!(list.matching(d).is_some(), "{d} should be listed");
        }
        assert_eq!(list.invalid_lines(), 4);
        let lines: Vec<usize> = list.invalid_examples().iter().map(|l| l.line).collect();
        assert_eq!(lines, [12, 13, 14, 15]);
        assert_eq!(list.invalid_examples()[0].text, "this is not a domain");
    }

    #[test]
    fn parent_domains_match_siblings_do_not() {
        let list = Blocklist::parse("evil.pl\nbad.com.pl\n");
        assert_eq!(list.matching("evil.pl"), Some("evil.pl"));
        assert_eq!(list.matching("a.b.evil.pl"), Some("evil.pl"));
        assert_eq!(list.matching("notevil.pl"), None);
        assert_eq!(list.matching("evil.pl.example.com"), None);
        assert_eq!(list.matching("com.pl"), None);
        assert_eq!(list.matching("good.com.pl"), None);
        assert!(list.is_blocked("WWW.Evil.PL."));
        assert!(!list.is_blocked("pl"));
    }

    #[test]
    fn idn_entries_match_unicode_and_punycode() {
        let list = Blocklist::parse("zapłać.pl\n");
        assert!(list.is_blocked("zapłać.pl"));
        assert!(list.is_blocked("ZAPŁAĆ.PL"));
        assert!(list.is_blocked("xn--zapa-ota66a.pl"));
        assert!(!list.is_blocked("zaplac.pl"));
    }

    #[test]
    fn ip_entries_match_the_address_however_it_embeds() {
        let list = Blocklist::parse("203.0.113.66\n[2001:db8::66]\n2001:db8::77\n1.2.3\n");
        assert_eq!(list.len(), 3);
        assert_eq!(list.invalid_lines(), 1, "{:?}", list.invalid_examples());
        let v4: IpAddr = "203.0.113.66".parse().unwrap();
        for ip in ["203.0.113.66", "::ffff:203.0.113.66", "64:ff9b::cb00:7142"] {
            assert_eq!(list.matching_ip(ip.parse().unwrap()), Some(v4), "{ip}");
        }
        assert!(list.matching_ip("2001:db8::66".parse().unwrap()).is_some());
        assert!(list.matching_ip("2001:db8::77".parse().unwrap()).is_some());
        // Neighbours and other embeddings are not the listed host.
        for ip in ["203.0.113.67", "2001:db8::67", "2002:cb00:7142::", "::1"] {
            assert_eq!(list.matching_ip(ip.parse().unwrap()), None, "{ip}");
        }
        assert!(list.is_blocked("203.0.113.66"));
        assert!(list.is_blocked("[2001:DB8::66]"));
        assert!(!list.is_blocked("203.0.113.67"));
        // A list of domains only matches no address.
        assert_eq!(Blocklist::parse("evil.pl").matching_ip(v4), None);
    }

    #[test]
    fn invalid_examples_are_bounded() {
        let text = "bad line\n".repeat(50);
        let list = Blocklist::parse(&text);
        assert_eq!(list.invalid_lines(), 50);
        assert_eq!(list.invalid_examples().len(), MAX_INVALID_EXAMPLES);
        assert!(list.is_empty());
    }

    #[test]
    fn handle_swaps_for_all_clones() {
        let handle = BlocklistHandle::new(Blocklist::parse("old.pl"));
        let other = handle.clone();
        let held = handle.get();
        let previous = other.replace(Blocklist::parse("new.pl"));
        assert!(previous.is_blocked("old.pl"));
        // A reader keeps the list it took.
        assert!(held.is_blocked("old.pl"));
        assert!(handle.get().is_blocked("new.pl"));
        assert!(!handle.get().is_blocked("old.pl"));
        assert!(BlocklistHandle::default().get().is_empty());
        assert!(Blocklist::empty().is_empty());
    }
}
