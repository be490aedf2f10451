//! Which addresses the gateway may call on a tenant's behalf.
//!
//! Callback and inbound URLs are chosen by tenants (in a request, or in this
//! file), and the gateway posts to them from inside the operator's network,
//! so a URL must not reach anything that is not on the public Internet:
//! loopback, private and link-local networks (the cloud metadata service at
//! 169.254.169.254), CGNAT, documentation and benchmarking ranges,
//! multicast. The same rule is applied in three places, all through this
//! module: `goniec check-config` (a tenant's `callback_url` and
//! `inbound_url`), the API (a message's `callback_url`), and the callback
//! sender right before it connects (a literal address never reaches the
//! filtering resolver, and a stored URL may predate a rule).
//!
//! IPv6 addresses are judged by where traffic to them ends up: an address
//! that carries an IPv4 address (IPv4-mapped, IPv4-compatible,
//! IPv4-translated, NAT64, 6to4, Teredo) is as private as the IPv4 address it
//! carries, so `[64:ff9b::a9fe:a9fe]` (the metadata service through a NAT64
//! gateway) is refused while `[64:ff9b::808:808]` (8.8.8.8) is not. Other
//! IPv6 addresses must be global unicast (`2000::/3`) and outside the ranges
//! reserved within it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is not a public destination: loopback, private, link-local,
/// CGNAT, unspecified, "this network", IETF protocol assignments,
/// documentation, benchmarking, multicast, reserved or broadcast (IPv4); for
/// IPv6 the same judged by the IPv4 address it carries (see the module
/// docs), else anything outside global unicast `2000::/3` (so unique-local
/// `fc00::/7`, link-local `fe80::/10`, site-local `fec0::/10`, multicast
/// `ff00::/8`, discard-only `100::/64`), the local-use NAT64 prefix
/// `64:ff9b:1::/48`, the IETF protocol assignments `2001::/23` and the
/// documentation prefixes `2001:db8::/32` and `3fff::/20`.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    o[0] == 0 // "this network", 0.0.0.0/8 (incl. the unspecified address)
        || v4.is_loopback() // 127.0.0.0/8
        || v4.is_private() // 10/8, 172.16/12, 192.168/16
        || v4.is_link_local() // 169.254/16: cloud metadata services
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10: CGNAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24: IETF (DS-Lite, NAT64 discovery)
        || v4.is_documentation() // 192.0.2/24, 198.51.100/24, 203.0.113/24
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 6to4 relay anycast (deprecated)
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18/15: benchmarking
        || o[0] >= 224 // multicast 224/4, reserved 240/4, broadcast
}

fn is_private_v6(v6: Ipv6Addr) -> bool {
    let [first, second] = embedded_ipv4(v6);
    if let Some(v4) = first {
        return is_private_v4(v4) || second.is_some_and(is_private_v4);
    }
    let s = v6.segments();
    // 64:ff9b::/32 outside the well-known /96 (handled above): the local-use
    // prefix 64:ff9b:1::/48 (RFC 8215), whose IPv4 embedding is up to the
    // network, and unallocated space.
    (s[0] == 0x64 && s[1] == 0xff9b)
        // Only global unicast is public.
        || (s[0] & 0xe000) != 0x2000
        // 2001::/23: IETF protocol assignments (benchmarking 2001:2::/48,
        // ORCHID …); Teredo 2001::/32 is handled above.
        || (s[0] == 0x2001 && s[1] < 0x0200)
        // Documentation.
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x3fff && s[1] < 0x1000)
}

/// The IPv4 addresses that an IPv6 address carries, which traffic to it
/// reaches or passes through; `[None, None]` for other addresses.
///
/// | form | range | IPv4 address |
/// |---|---|---|
/// | IPv4-mapped (RFC 4291) | `::ffff:0:0/96` | last 32 bits |
/// | IPv4-translated (RFC 2765) | `::ffff:0:0:0/96` | last 32 bits |
/// | IPv4-compatible (RFC 4291, deprecated) | `::/96` | last 32 bits |
/// | NAT64 well-known prefix (RFC 6052) | `64:ff9b::/96` | last 32 bits |
/// | 6to4 (RFC 3056) | `2002::/16` | bits 16–47 |
/// | Teredo (RFC 4380) | `2001::/32` | server: bits 32–63; client: last 32 bits inverted |
pub fn embedded_ipv4(v6: Ipv6Addr) -> [Option<Ipv4Addr>; 2] {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let low = v4(s[6], s[7]);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _]
        | [0, 0, 0, 0, 0xffff, 0, _, _]
        | [0, 0, 0, 0, 0, 0, _, _]
        | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => [Some(low), None],
        [0x2002, hi, lo, ..] => [Some(v4(hi, lo)), None],
        [0x2001, 0, server_hi, server_lo, ..] => {
            [Some(v4(!s[6], !s[7])), Some(v4(server_hi, server_lo))]
        }
        _ => [None, None],
    }
}

/// Host names that are never public: `localhost` and the names reserved for
/// local and internal use.
fn is_private_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    ["localhost", "local", "internal", "home.arpa"]
        .iter()
        .any(|suffix| {
            name == *suffix
                || name
                    .strip_suffix(suffix)
                    .is_some_and(|rest| rest.ends_with('.'))
        })
}

/// Why a callback URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackUrlError {
    /// The text is not a URL at all.
    #[error("`{url}` is not a URL: {reason}")]
    NotAUrl {
        /// The text as given.
        url: String,
        /// What the URL parser objected to.
        reason: String,
    },
    /// A scheme other than http or https.
    #[error("scheme `{0}` is not allowed; use http or https")]
    Scheme(String),
    /// User name or password in the URL (they would be sent with every call
    /// and logged wherever the URL is).
    #[error("credentials in the URL are not allowed")]
    Credentials,
    /// No host (e.g. `http:///path`).
    #[error("the URL has no host")]
    NoHost,
    /// The host is an address (in any notation, IPv4 carried in IPv6
    /// included) or a name that is not a public destination, and the tenant
    /// does not allow private callbacks.
    #[error(
        "`{host}` is a loopback, private, link-local or otherwise non-public address; \
         callbacks to it are not allowed for this tenant (allow_private_callbacks)"
    )]
    NotPublic {
        /// The host as the URL parser normalised it.
        host: String,
    },
}

/// Checks a URL the gateway is to call on a tenant's behalf (a callback or
/// inbound URL): http or https, no credentials, a host, and — unless
/// `allow_private` — a host that is not a non-public address ([`is_private`])
/// nor a local name (`localhost`, `*.local`, `*.internal`, `*.home.arpa`).
///
/// The URL is parsed as a browser parses it (WHATWG), so every notation of an
/// address (`http://2130706433/`, `http://0x7f.1/`, `http://[::ffff:7f00:1]/`)
/// is judged by the address it means. Host names are checked again after
/// resolution, when the call is made. Returns the parsed URL.
pub fn check_callback_url(raw: &str, allow_private: bool) -> Result<url::Url, CallbackUrlError> {
    let url = url::Url::parse(raw).map_err(|e| CallbackUrlError::NotAUrl {
        url: raw.to_owned(),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CallbackUrlError::Scheme(url.scheme().to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CallbackUrlError::Credentials);
    }
    let private = match url.host().ok_or(CallbackUrlError::NoHost)? {
        url::Host::Ipv4(ip) => is_private_v4(ip),
        url::Host::Ipv6(ip) => is_private_v6(ip),
        url::Host::Domain(name) => is_private_name(name),
    };
    if private && !allow_private {
        return Err(CallbackUrlError::NotPublic {
            host: url.host_str().unwrap_or_default().to_owned(),
        });
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_address_table() {
        let private = [
            // IPv4.
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.170",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.1",
            "192.88.99.1",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            // IPv6 without IPv4 inside.
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "100::1",
            "2001:db8::1",
            "3fff::1",
            "2001:2::1",
            "2001:10::1",
            "64:ff9b:1::a00:1",
            "64:ff9b:1::808:808",
            "64:ff9b:0:1::1",
            "4000::1",
            // IPv4 carried in IPv6: as private as the IPv4 address.
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::169.254.169.254",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:0:a00:1",
            "::ffff:0:127.0.0.1",
            "::7f00:1",
            "::10.0.0.1",
            "::a9fe:a9fe",
            "2002:7f00:0001::",
            "2002:a00:1::1",
            "2002:a9fe:a9fe:1::1",
            // Teredo: client 10.0.0.1 (inverted: f5ff:fffe) behind a public
            // server; and a private server with a public client.
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
            "2001:0:a00:1:8000:63bf:f7f7:f7f7",
            // RFC 4380's own example: client 192.0.2.45 (documentation).
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ];
        for ip in private {
            let parsed: IpAddr = ip.parse().unwrap();
            assert!(is_private(parsed), "{ip} should be private");
        }
        let public = [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2001:4860:4860::8888",
            "2606:4700:4700::1111",
            "2a00:1450:4025:800::65",
            "2001:200::1",
            "64:ff9b::808:808",
            "64:ff9b::8.8.8.8",
            "::ffff:8.8.8.8",
            "::ffff:0:808:808",
            "::8.8.8.8",
            "2002:808:808::1",
            // Teredo: public server, client 8.8.8.8 (inverted f7f7:f7f7).
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
        ];
        for ip in public {
            let parsed: IpAddr = ip.parse().unwrap();
            assert!(!is_private(parsed), "{ip} should be public");
        }
    }

    #[test]
    fn embedded_ipv4_forms() {
        let v4 = |s: &str| Some(s.parse::<Ipv4Addr>().unwrap());
        let cases = [
            ("::ffff:1.2.3.4", [v4("1.2.3.4"), None]),
            ("::ffff:0:1.2.3.4", [v4("1.2.3.4"), None]),
            ("::1.2.3.4", [v4("1.2.3.4"), None]),
            ("64:ff9b::1.2.3.4", [v4("1.2.3.4"), None]),
            ("2002:102:304:5::6", [v4("1.2.3.4"), None]),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                [v4("192.0.2.45"), v4("65.54.227.120")],
            ),
            ("2001:db8::1", [None, None]),
            ("64:ff9b:1::1.2.3.4", [None, None]),
        ];
        for (ip, want) in cases {
            assert_eq!(embedded_ipv4(ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn callback_url_table() {
        let refused = [
            "http://127.0.0.1/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            // Every notation a browser (and reqwest) reads as an address.
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://0/",
            "http://%31%32%37.0.0.1/",
            "http://１２７．０．０．１/",
            // IPv6 literals.
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[fec0::1]/",
            "http://[ff02::1]/",
            "http://[::]/",
            "http://[2001:db8::1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[64:ff9b::169.254.169.254]/latest",
            "http://[::ffff:127.0.0.1]:8080/",
            "http://[::ffff:7f00:1]/",
            "http://[2002:7f00:0001::]/",
            "http://[::7f00:1]/",
            "http://[::ffff:0:a00:1]/",
            "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/",
            // Local names.
            "http://localhost:8080/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://printer.local/",
            "http://metadata.google.internal/",
            "http://router.home.arpa/",
        ];
        for url in refused {
            assert!(
                matches!(
                    check_callback_url(url, false),
                    Err(CallbackUrlError::NotPublic { .. })
                ),
                "{url}: {:?}",
                check_callback_url(url, false)
            );
            // The tenant's switch lets them through.
            assert!(check_callback_url(url, true).is_ok(), "{url}");
        }
        for url in [
            "https://hooks.example.com/goniec",
            "http://8.8.8.8/cb",
            "http://[2001:4860:4860::8888]/cb",
            "http://[64:ff9b::808:808]/cb",
            "http://[::ffff:8.8.8.8]/cb",
            "https://localhost.example.com/",
            "https://internal.example.com/",
        ] {
            assert!(check_callback_url(url, false).is_ok(), "{url}");
        }
        for (url, want) in [
            ("ftp://x.pl/", CallbackUrlError::Scheme("ftp".into())),
            ("http://user:pw@x.pl/", CallbackUrlError::Credentials),
        ] {
            assert_eq!(check_callback_url(url, true), Err(want), "{url}");
        }
        assert!(matches!(
            check_callback_url("not a url", false),
            Err(CallbackUrlError::NotAUrl { .. })
        ));
        assert_eq!(
            check_callback_url("http://[64:ff9b::a9fe:a9fe]/x", false)
                .unwrap_err()
                .to_string(),
            "`[64:ff9b::a9fe:a9fe]` is a loopback, private, link-local or otherwise non-public \
             address; callbacks to it are not allowed for this tenant (allow_private_callbacks)"
        );
    }
}
