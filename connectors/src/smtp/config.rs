//! `kind = "smtp"`: the settings of an SMTP relay connection, and their checks.

use std::time::Duration;

use goniec_core::check::Report;
use goniec_core::units::humantime_serde_compat;
use goniec_core::units::Rate;
use serde::Deserialize;

/// TLS towards the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text (a relay on the same host).
    None,
    /// STARTTLS, required.
    Starttls,
    /// Implicit TLS (usually port 465).
    Tls,
}

impl TlsMode {
    /// As written in the config.
    pub const fn as_str(self) -> &'static str {
        match self {
            TlsMode::None => "none",
            TlsMode::Starttls => "starttls",
            TlsMode::Tls => "tls",
        }
    }
}

/// `kind = "smtp"`: e-mail through an SMTP relay (pooled connections).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Relay host. Default `127.0.0.1`.
    pub host: String,
    /// Relay port. Default 25.
    pub port: u16,
    /// `none`, `starttls` (required, default) or `tls` (implicit TLS, port 465).
    pub tls: TlsMode,
    /// Accept a self-signed or otherwise invalid certificate (test relays only).
    /// Default false.
    pub tls_accept_invalid_certs: bool,
    /// AUTH PLAIN/LOGIN credentials; both or neither. Default none.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Connections kept open to the relay. Default 8.
    pub pool_size: u32,
    /// Longest wait for the relay per command. Default `30s`.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Sender when a message has none, e.g. `ACME <noreply@acme.example>`. Required.
    pub from: String,
    /// Domain of the `Message-ID`s (`<id@domain>`), so bounces can be matched.
    /// Default: the domain of `from`.
    pub message_id_domain: Option<String>,
    /// Deliveries in flight at once to one recipient domain (`gmail.com`), so one
    /// large mailbox provider is not flooded. Default: unlimited (leave out).
    pub domain_concurrency: Option<u32>,
    /// Messages per period to one recipient domain, e.g. `"50/s"`. Default: unlimited.
    pub domain_rate: Option<Rate>,
    /// Per-domain overrides of the two limits above, keyed by the lowercase domain:
    /// `[connectors.domain_limits."gmail.com"]` with `concurrency` and/or `rate`.
    pub domain_limits: std::collections::BTreeMap<String, DomainLimit>,
}

/// Limits for one recipient domain; a key left out falls back to the connector's
/// `domain_concurrency` / `domain_rate`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainLimit {
    pub concurrency: Option<u32>,
    pub rate: Option<Rate>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 25,
            tls: TlsMode::Starttls,
            tls_accept_invalid_certs: false,
            username: None,
            password: None,
            pool_size: 8,
            timeout: Duration::from_secs(30),
            from: String::new(),
            message_id_domain: None,
            domain_concurrency: None,
            domain_rate: None,
            domain_limits: Default::default(),
        }
    }
}

impl Config {
    /// What a valid value of each key cannot say on its own.
    pub fn check(&self, r: &mut dyn Report) {
        if self.host.trim().is_empty() {
            r.error("host", "missing; the relay's host name or IP".into());
        }
        if self.port == 0 {
            r.error("port", "must be 1..=65535".into());
        }
        if self.username.is_some() != self.password.is_some() {
            r.error(
                "password",
                "username and password go together: set both or neither".into(),
            );
        }
        if !(1..=1000).contains(&self.pool_size) {
            r.error("pool_size", "must be 1..=1000".into());
        }
        let at = self.from.rfind('@');
        if self.from.trim().is_empty() || at.is_none() {
            r.error(
                "from",
                "missing or not an address; e.g. \"ACME <noreply@acme.example>\"".into(),
            );
        }
        r.positive("timeout", self.timeout);
        if self.domain_concurrency == Some(0) {
            r.error(
                "domain_concurrency",
                "must be at least 1; leave it out for no limit".into(),
            );
        }
        for (domain, limit) in &self.domain_limits {
            let at = format!("domain_limits.{domain}");
            let valid = !domain.is_empty()
                && domain == &domain.to_ascii_lowercase()
                && !domain.contains(['@', ' '])
                && domain.contains('.');
            if !valid {
                r.error(
                    &at,
                    "must be a lowercase domain such as \"gmail.com\"".into(),
                );
            }
            if limit.concurrency == Some(0) {
                r.error(
                    &format!("{at}.concurrency"),
                    "must be at least 1; leave it out for no limit".into(),
                );
            }
            if limit.concurrency.is_none() && limit.rate.is_none() {
                r.error(&at, "sets neither `concurrency` nor `rate`".into());
            }
        }
    }
}
