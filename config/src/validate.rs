//! Cross-field rules, checked once every key has a value of the right type:
//! tenants and their keys, connector names, routes against connectors, and
//! ranges no single type expresses. Every broken rule is reported with the
//! key path it is about; nothing stops at the first.

use goniec_core::check::is_http_url;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::{net, Channel, Config, ConfigError, ConfigErrors, StoreBackend};

/// Where the items of the config's lists sit in the file. The reader drops
/// items it cannot build (e.g. a route without a `channel`), so item `i` of
/// a list is not always item `i` of the file; errors must name the latter.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    pub tenants: Vec<usize>,
    pub connectors: Vec<usize>,
    pub routes: Vec<usize>,
    /// Connectors named in the file that could not be built.
    pub unusable_connectors: BTreeSet<String>,
}

impl Layout {
    fn tenant(&self, i: usize) -> String {
        format!("tenants[{}]", self.tenants.get(i).copied().unwrap_or(i))
    }

    fn connector(&self, i: usize) -> String {
        format!(
            "connectors[{}]",
            self.connectors.get(i).copied().unwrap_or(i)
        )
    }

    fn route(&self, i: usize) -> String {
        format!("routes[{}]", self.routes.get(i).copied().unwrap_or(i))
    }
}

impl Config {
    /// Checks the cross-field rules on a config built in code (files read by
    /// [`load`](crate::load) are already checked).
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let errors = check(self, &Layout::default());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors { path: None, errors })
        }
    }
}

/// Most items one batch request may carry, whatever the config says.
const MAX_BATCH_LIMIT: usize = 100_000;

pub(crate) fn check(config: &Config, layout: &Layout) -> Vec<ConfigError> {
    let mut out = Checks::default();
    out.server(config);
    out.store(config);
    out.workers(config);
    out.webhooks(config);
    out.tenants(config, layout);
    out.admin(config);
    out.links(config);
    out.connectors(config, layout);
    out.routes(config, layout);
    out.errors
}

#[derive(Default)]
struct Checks {
    errors: Vec<ConfigError>,
}

/// A section's own checks (a connector's), reporting under its path.
struct Within<'a> {
    checks: &'a mut Checks,
    path: &'a str,
}

impl goniec_core::check::Report for Within<'_> {
    fn error(&mut self, key: &str, message: String) {
        self.checks.error(format!("{}.{key}", self.path), message);
    }
}

impl Checks {
    fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(key, message));
    }

    fn at_least_one(&mut self, key: &str, value: u64) {
        if value < 1 {
            self.error(key, "must be at least 1");
        }
    }

    fn positive(&mut self, key: &str, value: Duration) {
        if value.is_zero() {
            self.error(key, "must be longer than 0s");
        }
    }

    fn backoff(&mut self, section: &str, base: Duration, max: Duration) {
        if base > max {
            self.error(
                format!("{section}.retry_base"),
                format!(
                    "must not exceed {section}.retry_max ({}), got {}",
                    humantime::format_duration(max),
                    humantime::format_duration(base)
                ),
            );
        }
    }

    fn server(&mut self, config: &Config) {
        let server = &config.server;
        if !(1..=MAX_BATCH_LIMIT).contains(&server.max_batch) {
            self.error(
                "server.max_batch",
                format!(
                    "must be between 1 and {MAX_BATCH_LIMIT}, got {}",
                    server.max_batch
                ),
            );
        }
        if !(1..=255).contains(&server.max_segments) {
            // 255 is the most parts a concatenated SMS header can number.
            self.error(
                "server.max_segments",
                format!("must be between 1 and 255, got {}", server.max_segments),
            );
        }
        self.at_least_one("server.max_text_chars", server.max_text_chars as u64);
        self.at_least_one("server.max_body", server.max_body.bytes());
        self.positive("server.header_timeout", server.header_timeout);
        self.positive("server.body_timeout", server.body_timeout);
        self.at_least_one("server.max_connections", server.max_connections as u64);
        if server.worker_threads > 1024 {
            self.error(
                "server.worker_threads",
                format!(
                    "must be between 0 (one per CPU core) and 1024, got {}",
                    server.worker_threads
                ),
            );
        }
        // Below max_body the largest allowed batch could never be read: every one
        // would be answered 503 however idle the gateway is.
        if server.max_buffered.bytes() < server.max_body.bytes() {
            self.error(
                "server.max_buffered",
                format!(
                    "must be at least server.max_body ({}), got {}",
                    server.max_body, server.max_buffered
                ),
            );
        }
        let region = &server.default_region;
        if !(region.len() == 2 && region.bytes().all(|b| b.is_ascii_uppercase())) {
            self.error(
                "server.default_region",
                format!(
                    "must be two uppercase letters (ISO 3166 alpha-2, e.g. \"PL\"), got {region:?}"
                ),
            );
        }
    }

    fn store(&mut self, config: &Config) {
        let store = &config.store;
        if store.backend == StoreBackend::Redis {
            let known = ["redis://", "rediss://", "unix://"];
            if !known.iter().any(|scheme| store.url.starts_with(scheme)) {
                // Name only the scheme: the rest of a Redis URL may hold a password.
                let scheme = store
                    .url
                    .split_once("://")
                    .map_or("none", |(scheme, _)| scheme);
                self.error(
                    "store.url",
                    format!(
                        "must start with redis://, rediss:// or unix:// (scheme given: {scheme})"
                    ),
                );
            }
        }
        if store.backend == StoreBackend::RedisCluster {
            if store.nodes.is_empty() {
                self.error(
                    "store.nodes",
                    "backend \"redis-cluster\" needs at least one seed node, e.g. \
                     [\"redis://10.0.0.1:6379\"]",
                );
            }
            for (i, node) in store.nodes.iter().enumerate() {
                if !(node.starts_with("redis://") || node.starts_with("rediss://")) {
                    let scheme = node.split_once("://").map_or("none", |(s, _)| s);
                    self.error(
                        format!("store.nodes[{i}]"),
                        format!("must start with redis:// or rediss:// (scheme given: {scheme})"),
                    );
                }
            }
        }
        self.positive("store.timeout", store.timeout);
        if !(1..=1024).contains(&store.partitions) {
            self.error(
                "store.partitions",
                format!("must be 1 to 1024, got {}", store.partitions),
            );
        }
        // A brace would make Redis hash the prefix instead of the partition tag.
        if store.prefix.is_empty() || store.prefix.contains(['{', '}']) {
            self.error(
                "store.prefix",
                format!(
                    "must be non-empty text without `{{` or `}}` (they would change which Redis \
                     Cluster slot a key lives in), got {:?}",
                    store.prefix
                ),
            );
        }
    }

    fn workers(&mut self, config: &Config) {
        let workers = &config.workers;
        self.at_least_one("workers.concurrency", workers.concurrency as u64);
        self.at_least_one("workers.claim_batch", workers.claim_batch as u64);
        self.at_least_one("workers.max_attempts", workers.max_attempts.into());
        self.backoff("workers", workers.retry_base, workers.retry_max);
        // Zero would make the scheduler spin and every claim look abandoned.
        self.positive("workers.schedule_poll", workers.schedule_poll);
        self.positive("workers.claim_idle", workers.claim_idle);
        self.positive("workers.takeover_after", workers.takeover_after);
    }

    fn webhooks(&mut self, config: &Config) {
        let webhooks = &config.webhooks;
        self.at_least_one("webhooks.max_attempts", webhooks.max_attempts.into());
        self.at_least_one("webhooks.concurrency", webhooks.concurrency as u64);
        self.backoff("webhooks", webhooks.retry_base, webhooks.retry_max);
        self.positive("webhooks.timeout", webhooks.timeout);
    }

    fn links(&mut self, config: &Config) {
        let links = &config.links;
        for (k, r) in links.datacenter_ranges.iter().enumerate() {
            if let Err(e) = r.parse::<goniec_core::cidr::Cidr>() {
                self.error(format!("links.datacenter_ranges[{k}]"), e);
            }
        }
        if links.listen.is_some_and(|l| l == config.server.listen) {
            self.error(
                "links.listen",
                "is the API's own address (server.listen); the API serves links at /l/{code} already",
            );
        }
    }

    fn admin(&mut self, config: &Config) {
        for (k, hash) in config.admin.metrics_keys.iter().enumerate() {
            if !is_key_hash(hash) {
                self.error(
                    format!("admin.metrics_keys[{k}]"),
                    "must be the key's hash, \"sha256:\" followed by 64 lowercase hex digits; \
                     run `goniec hash-key` and paste its output, never the key",
                );
            }
        }
        if config.admin.metrics_listen == Some(config.server.listen) {
            self.error(
                "admin.metrics_listen",
                "is the API's own address (server.listen); give metrics a port of their own",
            );
        }
        let session = config.admin.console_session;
        if session < Duration::from_secs(1) || session > Duration::from_secs(7 * 86_400) {
            self.error(
                "admin.console_session",
                "must be from 1s to 7d (how long a console login lasts)",
            );
        }
        for (k, hash) in config.admin.api_keys.iter().enumerate() {
            let path = format!("admin.api_keys[{k}]");
            if !is_key_hash(hash) {
                self.error(
                    path,
                    "must be the key's hash, \"sha256:\" followed by 64 lowercase hex digits; \
                     run `goniec hash-key KEY` and paste its output, never the key",
                );
            } else if config.tenants.iter().any(|t| t.api_keys.contains(hash)) {
                self.error(
                    path,
                    "is also a tenant's API key; the operator key must be its own",
                );
            }
        }
    }

    fn tenants(&mut self, config: &Config, layout: &Layout) {
        let mut names: BTreeMap<&str, String> = BTreeMap::new();
        // API key hash → (tenant index, where it was first seen).
        let mut hashes: BTreeMap<&str, (usize, String)> = BTreeMap::new();
        for (i, tenant) in config.tenants.iter().enumerate() {
            let path = layout.tenant(i);
            if tenant.name.trim().is_empty() {
                self.error(
                    format!("{path}.name"),
                    "missing; every tenant needs a unique name",
                );
            } else if !tenant
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                // It is part of store keys and metric labels.
                self.error(
                    format!("{path}.name"),
                    "may contain only letters, digits, `-`, `_` and `.`",
                );
            } else if let Some(first) = names.get(tenant.name.as_str()) {
                let message = format!("duplicate tenant name `{}` (also {first})", tenant.name);
                self.error(format!("{path}.name"), message);
            } else {
                names.insert(&tenant.name, path.clone());
            }

            if tenant.api_keys.is_empty() {
                self.error(
                    format!("{path}.api_keys"),
                    "needs at least one API key hash; `goniec hash-key KEY` prints one",
                );
            }
            for (k, hash) in tenant.api_keys.iter().enumerate() {
                let key_path = format!("{path}.api_keys[{k}]");
                if !is_key_hash(hash) {
                    // The value is not echoed: it may be a key pasted in by mistake.
                    self.error(
                        key_path,
                        "must be the key's hash, \"sha256:\" followed by 64 lowercase hex \
                         digits; run `goniec hash-key KEY` and paste its output, never the key",
                    );
                    continue;
                }
                match hashes.get(hash.as_str()) {
                    Some((owner, first)) if *owner != i => {
                        let message = format!(
                            "the same API key hash as {first}; a key must identify one tenant"
                        );
                        self.error(key_path, message);
                    }
                    Some(_) => {}
                    None => {
                        hashes.insert(hash, (i, key_path));
                    }
                }
            }

            let secret_len = tenant.webhook_secret.chars().count();
            if secret_len == 0 {
                self.error(
                    format!("{path}.webhook_secret"),
                    "missing; callbacks are signed with it (at least 16 characters)",
                );
            } else if secret_len < 16 {
                self.error(
                    format!("{path}.webhook_secret"),
                    format!("must be at least 16 characters, got {secret_len}"),
                );
            }

            let e = &tenant.email;
            let dkim = [&e.dkim_domain, &e.dkim_selector, &e.dkim_private_key];
            if dkim.iter().any(|v| v.is_some()) && !dkim.iter().all(|v| v.is_some()) {
                self.error(
                    format!("{path}.email"),
                    "dkim_domain, dkim_selector and dkim_private_key go together: set all three or none",
                );
            }
            if let Some(m) = &e.unsubscribe_mailto {
                if !m.contains('@') || m.contains(['<', '>', ' ', ',']) {
                    self.error(
                        format!("{path}.email.unsubscribe_mailto"),
                        "must be a plain e-mail address",
                    );
                }
            }
            if let Some(d) = tenant.rcs.fallback_after {
                self.positive(&format!("{path}.rcs.fallback_after"), d);
            }
            if let Some(b) = &tenant.callback_batch {
                if !(1..=1000).contains(&b.max) {
                    self.error(
                        format!("{path}.callback_batch.max"),
                        format!("must be 1 to 1000, got {}", b.max),
                    );
                }
                if b.linger.is_zero() || b.linger > std::time::Duration::from_secs(10) {
                    self.error(
                        format!("{path}.callback_batch.linger"),
                        "must be more than 0 and at most 10s",
                    );
                }
            }
            if let Some(events) = &tenant.callback_events {
                if events.is_empty() {
                    self.error(
                        format!("{path}.callback_events"),
                        "must name at least one status (leave it out for every change)",
                    );
                }
                for (i, e) in events.iter().enumerate() {
                    if !crate::CALLBACK_EVENTS.contains(&e.as_str()) {
                        self.error(
                            format!("{path}.callback_events[{i}]"),
                            format!(
                                "{e:?} is not a status; one of {}",
                                crate::CALLBACK_EVENTS.join(", ")
                            ),
                        );
                    }
                }
            }
            // URLs the gateway itself calls: the same rule as a message's
            // `callback_url` at the API and every call at send time.
            for (key, url) in [
                ("callback_url", &tenant.callback_url),
                ("inbound_url", &tenant.inbound_url),
            ] {
                if let Some(url) = url {
                    if let Err(e) = net::check_callback_url(url, tenant.allow_private_callbacks) {
                        self.error(format!("{path}.{key}"), e.to_string());
                    }
                }
            }
            if let Some(d) = &tenant.links.domain {
                let u = url::Url::parse(d).ok();
                if !is_http_url(d)
                    || u.is_some_and(|u| u.query().is_some() || u.fragment().is_some())
                {
                    self.error(
                        format!("{path}.links.domain"),
                        format!("must be an http:// or https:// URL with a host and no query, got {d:?}"),
                    );
                }
            }
            if tenant.links.ttl.is_zero() {
                self.error(
                    format!("{path}.links.ttl"),
                    "must be more than 0".to_string(),
                );
            }
            // A link shown to recipients: only its shape matters here.
            if let Some(url) = &e.unsubscribe_url {
                if !is_http_url(url) {
                    self.error(
                        format!("{path}.email.unsubscribe_url"),
                        format!("must be an http:// or https:// URL with a host, got {url:?}"),
                    );
                }
            }
        }
    }

    fn connectors(&mut self, config: &Config, layout: &Layout) {
        let mut names: BTreeMap<&str, String> = BTreeMap::new();
        for (i, connector) in config.connectors.iter().enumerate() {
            let path = layout.connector(i);
            if connector.name.trim().is_empty() {
                self.error(
                    format!("{path}.name"),
                    "missing; routes refer to connectors by name",
                );
            } else if let Some(first) = names.get(connector.name.as_str()) {
                let message = format!(
                    "duplicate connector name `{}` (also {first})",
                    connector.name
                );
                self.error(format!("{path}.name"), message);
            } else {
                names.insert(&connector.name, path.clone());
            }
            if connector.kind.channels().is_empty() {
                self.error(format!("{path}.channels"), "must list at least one channel");
            }
            connector.kind.check(&mut Within {
                checks: self,
                path: &path,
            });
        }
    }

    fn routes(&mut self, config: &Config, layout: &Layout) {
        let mut seen: BTreeMap<(Channel, Option<&str>, Option<&str>), String> = BTreeMap::new();
        for (i, route) in config.routes.iter().enumerate() {
            let path = layout.route(i);
            match config.connectors.iter().find(|c| c.name == route.connector) {
                Some(connector) => {
                    let channels = connector.kind.channels();
                    if !channels.contains(&route.channel) {
                        let serves: Vec<&str> = channels.iter().map(|c| c.as_str()).collect();
                        self.error(
                            format!("{path}.channel"),
                            format!(
                                "connector `{}` does not carry {} (it carries: {})",
                                route.connector,
                                route.channel,
                                serves.join(", ")
                            ),
                        );
                    }
                }
                // Already reported where that connector is defined.
                None if layout.unusable_connectors.contains(&route.connector) => {}
                None => {
                    let known: Vec<&str> =
                        config.connectors.iter().map(|c| c.name.as_str()).collect();
                    let known = if known.is_empty() {
                        "none are configured".to_owned()
                    } else {
                        format!("known: {}", known.join(", "))
                    };
                    self.error(
                        format!("{path}.connector"),
                        format!("no connector named `{}` ({known})", route.connector),
                    );
                }
            }

            if let Some(prefix) = &route.prefix {
                let prefix_path = format!("{path}.prefix");
                match route.channel {
                    Channel::Sms | Channel::Rcs => {
                        let digits = prefix.strip_prefix('+').unwrap_or_default();
                        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                            self.error(
                                prefix_path,
                                format!(
                                    "must be `+` followed by digits (an E.164 prefix such as \
                                     \"+4850\"), got {prefix:?}"
                                ),
                            );
                        }
                    }
                    Channel::Email => {
                        if prefix.is_empty() || prefix.contains(char::is_whitespace) {
                            self.error(
                                prefix_path,
                                format!(
                                    "must be a domain suffix such as \"@example.com\", got {prefix:?}"
                                ),
                            );
                        }
                    }
                }
            }

            if let Some(tenant) = &route.tenant {
                if !config.tenants.iter().any(|t| &t.name == tenant) {
                    self.error(
                        format!("{path}.tenant"),
                        format!("no tenant named `{tenant}`"),
                    );
                }
            }

            let key = (
                route.channel,
                route.prefix.as_deref(),
                route.tenant.as_deref(),
            );
            if let Some(first) = seen.get(&key) {
                let mut what = match &route.prefix {
                    Some(prefix) => format!("{} prefix {prefix:?}", route.channel),
                    None => format!("{} without prefix", route.channel),
                };
                if let Some(tenant) = &route.tenant {
                    what.push_str(&format!(" of tenant `{tenant}`"));
                }
                self.error(path, format!("duplicate route for {what} (also {first})"));
            } else {
                seen.insert(key, path);
            }
        }
    }
}

/// `sha256:` and 64 lowercase hex digits, as `goniec hash-key` prints.
fn is_key_hash(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConnectorConfig, ConnectorKind, Route, StubConnector, Tenant};

    fn tenant(name: &str, key: &str) -> Tenant {
        Tenant {
            name: name.into(),
            api_keys: vec![key.into()],
            webhook_secret: "0123456789abcdef".into(),
            ..Tenant::default()
        }
    }

    fn keys(errors: &[ConfigError]) -> Vec<&str> {
        errors.iter().map(|e| e.key.as_str()).collect()
    }

    const HASH_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const HASH_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn key_hash_shape() {
        assert!(is_key_hash(HASH_A));
        assert!(!is_key_hash(&HASH_A.to_uppercase()));
        assert!(!is_key_hash(&HASH_A.replace("sha256:", "sha1:")));
        assert!(!is_key_hash(&HASH_A[..70]));
        assert!(!is_key_hash("demo-key-change-me"));
    }

    #[test]
    fn tenant_rules() {
        let config = Config {
            tenants: vec![
                tenant("a", HASH_A),
                tenant("a", HASH_A),
                Tenant {
                    webhook_secret: "short".into(),
                    ..tenant("", "sha256:XYZ")
                },
                Tenant {
                    api_keys: vec![],
                    callback_url: Some("ftp://x".into()),
                    ..tenant("c", HASH_B)
                },
                Tenant {
                    api_keys: vec![HASH_B.into(), HASH_B.into()],
                    ..tenant("d", HASH_B)
                },
            ],
            ..Config::default()
        };
        let errors = config.validate().unwrap_err().errors;
        assert_eq!(
            keys(&errors),
            [
                "tenants[1].name",
                "tenants[1].api_keys[0]",
                "tenants[2].name",
                "tenants[2].api_keys[0]",
                "tenants[2].webhook_secret",
                "tenants[3].api_keys",
                "tenants[3].callback_url",
            ],
            "{errors:#?}"
        );
        assert!(errors[3].message.contains("goniec hash-key KEY"));
        assert!(
            !errors[3].message.contains("XYZ"),
            "the value may be a secret"
        );
    }

    #[test]
    fn tenant_urls_the_gateway_calls_must_be_public_unless_allowed() {
        let config = Config {
            tenants: vec![
                Tenant {
                    callback_url: Some("http://[64:ff9b::a9fe:a9fe]/latest".into()),
                    inbound_url: Some("http://[::ffff:127.0.0.1]:9000/in".into()),
                    ..tenant("a", HASH_A)
                },
                Tenant {
                    inbound_url: Some("http://2130706433/in".into()),
                    ..tenant("b", HASH_B)
                },
                // Public addresses and names pass.
                Tenant {
                    callback_url: Some("https://hooks.example.com/cb".into()),
                    inbound_url: Some("http://[64:ff9b::808:808]/in".into()),
                    ..tenant(
                        "c",
                        "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
                    )
                },
                // The tenant's switch lets private targets through.
                Tenant {
                    callback_url: Some("http://127.0.0.1:9000/cb".into()),
                    inbound_url: Some("http://[fd00::1]/in".into()),
                    allow_private_callbacks: true,
                    ..tenant(
                        "d",
                        "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
                    )
                },
            ],
            ..Config::default()
        };
        let errors = config.validate().unwrap_err().errors;
        assert_eq!(
            keys(&errors),
            [
                "tenants[0].callback_url",
                "tenants[0].inbound_url",
                "tenants[1].inbound_url",
            ],
            "{errors:#?}"
        );
        assert!(
            errors[0].message.contains("[64:ff9b::a9fe:a9fe]")
                && errors[0].message.contains("allow_private_callbacks"),
            "{}",
            errors[0].message
        );
        assert!(
            errors[2].message.contains("127.0.0.1"),
            "{}",
            errors[2].message
        );
    }

    #[test]
    fn server_and_pipeline_ranges() {
        let mut config = Config::default();
        config.server.max_batch = 0;
        config.server.max_segments = 256;
        config.server.default_region = "pl".into();
        config.store.url = "http://user:pass@host".into();
        config.workers.concurrency = 0;
        config.workers.claim_batch = 0;
        config.workers.max_attempts = 0;
        config.workers.retry_base = Duration::from_secs(600);
        config.webhooks.retry_max = Duration::from_secs(1);
        let errors = config.validate().unwrap_err().errors;
        assert_eq!(
            keys(&errors),
            [
                "server.max_batch",
                "server.max_segments",
                "server.default_region",
                "store.url",
                "workers.concurrency",
                "workers.claim_batch",
                "workers.max_attempts",
                "workers.retry_base",
                "webhooks.retry_base",
            ]
        );
        assert!(
            !errors[3].message.contains("pass"),
            "no credentials in errors"
        );

        // The memory backend needs no URL.
        let mut config = Config::default();
        config.store.backend = StoreBackend::Memory;
        config.store.url = String::new();
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn cluster_partitions_and_prefix() {
        let mut config = Config::default();
        config.store.backend = StoreBackend::RedisCluster;
        config.store.partitions = 0;
        config.store.prefix = "a{b}".into();
        let errors = config.validate().unwrap_err().errors;
        assert_eq!(
            keys(&errors),
            ["store.nodes", "store.partitions", "store.prefix"]
        );
        config.store.nodes = vec!["redis://10.0.0.1:6379".into(), "tcp://x:1".into()];
        config.store.partitions = 1025;
        config.store.prefix = "goniec".into();
        let errors = config.validate().unwrap_err().errors;
        assert_eq!(keys(&errors), ["store.nodes[1]", "store.partitions"]);
        config.store.nodes.pop();
        config.store.partitions = 64;
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(
            crate::Store::cluster_nodes("redis-cluster://10.0.0.1:7000, 10.0.0.2:7000"),
            Some(vec![
                "redis://10.0.0.1:7000".to_string(),
                "redis://10.0.0.2:7000".to_string()
            ])
        );
        assert_eq!(crate::Store::cluster_nodes("redis://10.0.0.1:7000"), None);
    }

    #[test]
    fn callback_events_are_statuses() {
        let config = Config {
            tenants: vec![
                crate::Tenant {
                    callback_events: Some(vec![]),
                    ..tenant("a", HASH_A)
                },
                crate::Tenant {
                    callback_events: Some(vec!["delivered".into(), "sent".into()]),
                    ..tenant("b", HASH_B)
                },
            ],
            ..Config::default()
        };
        let errors = config.validate().unwrap_err().errors;
        let found = keys(&errors);
        assert!(found.contains(&"tenants[0].callback_events"), "{found:?}");
        assert!(
            found.contains(&"tenants[1].callback_events[1]"),
            "{found:?}"
        );
        assert!(
            !found.contains(&"tenants[1].callback_events[0]"),
            "{found:?}"
        );

        let batch = |max, linger_ms| crate::Tenant {
            callback_batch: Some(crate::CallbackBatch {
                max,
                linger: std::time::Duration::from_millis(linger_ms),
            }),
            ..tenant("a", HASH_A)
        };
        for (t, key) in [
            (batch(0, 50), "tenants[0].callback_batch.max"),
            (batch(1001, 50), "tenants[0].callback_batch.max"),
            (batch(100, 0), "tenants[0].callback_batch.linger"),
            (batch(100, 10_001), "tenants[0].callback_batch.linger"),
        ] {
            let config = Config {
                tenants: vec![t],
                ..Config::default()
            };
            let errors = config.validate().unwrap_err().errors;
            assert_eq!(keys(&errors), [key]);
        }
        let config = Config {
            tenants: vec![batch(100, 50)],
            ..Config::default()
        };
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn request_cost_limits() {
        let mut config = Config::default();
        config.server.header_timeout = Duration::ZERO;
        config.server.body_timeout = Duration::ZERO;
        config.server.max_connections = 0;
        config.server.worker_threads = 1025;
        config.server.max_body = crate::ByteSize::mib(16);
        config.server.max_buffered = crate::ByteSize::mib(8);
        let errors = config.validate().unwrap_err().errors;
        assert_eq!(
            keys(&errors),
            [
                "server.header_timeout",
                "server.body_timeout",
                "server.max_connections",
                "server.worker_threads",
                "server.max_buffered",
            ]
        );
        assert_eq!(
            errors[3].message,
            "must be between 0 (one per CPU core) and 1024, got 1025"
        );
        assert_eq!(
            errors[4].message,
            "must be at least server.max_body (16MiB), got 8MiB"
        );
        // Exactly one largest body fits.
        config = Config::default();
        config.server.max_buffered = config.server.max_body;
        assert_eq!(config.validate(), Ok(()));
    }

    fn stub(name: &str, channels: &[Channel]) -> ConnectorConfig {
        ConnectorConfig {
            name: name.into(),
            tps: None,
            kind: ConnectorKind::Stub(StubConnector {
                channels: channels.to_vec(),
                ..StubConnector::default()
            }),
        }
    }

    fn route(channel: Channel, prefix: Option<&str>, connector: &str) -> Route {
        Route {
            channel,
            prefix: prefix.map(Into::into),
            tenant: None,
            connector: connector.into(),
        }
    }

    #[test]
    fn connector_and_route_rules() {
        // A stub's `receipt` can no longer be wrong once read (it is typed):
        // `receipt = "maybe"` is refused by the reader (tests/load.rs).
        let s = ConnectorConfig {
            kind: ConnectorKind::Stub(StubConnector {
                channels: vec![Channel::Sms],
                ..StubConnector::default()
            }),
            ..stub("s", &[])
        };
        let config = Config {
            connectors: vec![
                stub("e", &[Channel::Email]),
                s,
                stub("e", &[]),
                stub("", &Channel::ALL),
            ],
            routes: vec![
                route(Channel::Sms, None, "s"),
                route(Channel::Sms, Some("+4850"), "s"),
                route(Channel::Sms, None, "s"),
                route(Channel::Rcs, None, "s"),
                route(Channel::Sms, Some("48"), "s"),
                route(Channel::Email, Some("@example.com"), "e"),
                route(Channel::Email, None, "nope"),
            ],
            ..Config::default()
        };
        let errors = config.validate().unwrap_err().errors;
        assert_eq!(
            keys(&errors),
            [
                "connectors[2].name",
                "connectors[2].channels",
                "connectors[3].name",
                "routes[2]",
                "routes[3].channel",
                "routes[4].prefix",
                "routes[6].connector",
            ],
            "{errors:#?}"
        );
    }
}
