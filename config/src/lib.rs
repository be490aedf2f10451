//! Typed configuration for Goniec.
//!
//! The file reads like the structs below: one struct per section, every key
//! optional with a documented default, unknown keys rejected. Loading collects
//! *every* problem with its key path (`tenants[1].api_keys[0]: …`) instead of
//! stopping at the first, so `goniec check-config` can print them all.
//!
//! Environment overrides: `GONIEC_<SECTION>__<KEY>` (double underscore between
//! levels, array items by index), e.g. `GONIEC_STORE__URL=redis://…` or
//! `GONIEC_TENANTS__0__WEBHOOK_SECRET=…`.

mod load;
pub mod net;
mod validate;
mod warnings;

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use goniec_connectors::rcs::config::Config as RcsConnector;
pub use goniec_connectors::smpp::config::Config as SmppConnector;
pub use goniec_connectors::smtp::config::{Config as SmtpConnector, DomainLimit};
pub use goniec_connectors::stub::StubConfig as StubConnector;
pub use goniec_connectors::{ConnectorConfig, ConnectorKind};
pub use goniec_core::units::humantime_serde_compat;
pub use goniec_core::units::{self, ByteSize, ParseUnitError, Rate, RateUnit};
pub use goniec_core::Channel;
pub use load::{load, load_from_str, ConfigError, ConfigErrors};
pub use warnings::{warnings, SAMPLE_KEY_HASH};

/// The whole configuration file.
///
/// Not `Deserialize` itself: [`load`] reads it section by section so that every
/// problem is reported with its key path, and `connectors` are read by `kind`.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub server: Server,
    pub log: Log,
    pub store: Store,
    pub workers: Workers,
    pub webhooks: Webhooks,
    pub admin: Admin,
    pub links: Links,
    pub antifraud: Antifraud,
    pub tenants: Vec<Tenant>,
    pub connectors: Vec<ConnectorConfig>,
    pub routes: Vec<Route>,
}

/// `[server]`: the HTTP API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    /// Address the API listens on. Default `127.0.0.1:8080`.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// The largest request body of all: `POST /v1/messages/batch` may be this big.
    /// Other routes have smaller limits of their own (a single message: what its
    /// attachments and texts can need, see `max_attachments`). Larger bodies are
    /// refused with 413, by `Content-Length` before anything is read. Default `16MiB`.
    pub max_body: ByteSize,
    /// Most items in one `POST /v1/messages/batch`. Default 10000.
    pub max_batch: usize,
    /// Region used to read national numbers (ISO 3166 alpha-2). Default `PL`.
    pub default_region: String,
    /// Most SMS segments one message may take. Default 10.
    pub max_segments: u32,
    /// Most bytes of e-mail attachments in one message as sent (base64 in
    /// 76-character lines, about 4/3 of the files), as a relay counts them.
    /// Default `10MiB`.
    pub max_attachments: ByteSize,
    /// Most characters in one e-mail body / text. Default 100000.
    pub max_text_chars: usize,
    /// Time in-flight work gets to finish after SIGTERM. Default `30s`.
    #[serde(with = "humantime_serde_compat")]
    pub shutdown_grace: Duration,
    /// A client must send a request's headers within this, counted from when its
    /// connection opens or the previous answer on it was sent; one that has sent
    /// part of a request head by then is answered 408, and either way the
    /// connection is closed (so idle kept-alive connections close after it too).
    /// Default `10s`.
    #[serde(with = "humantime_serde_compat")]
    pub header_timeout: Duration,
    /// A client must send a whole request body within this, or it is answered 408
    /// and disconnected. Default `30s`.
    #[serde(with = "humantime_serde_compat")]
    pub body_timeout: Duration,
    /// Most client connections open at once; one more is answered 503 (with
    /// `Retry-After`) and closed. Default 4096.
    pub max_connections: usize,
    /// Most bytes of request bodies held in memory across all requests at once;
    /// a body that would go over it is answered 503 (with `Retry-After`) instead of
    /// being read. At least `max_body`. Default `256MiB`.
    pub max_buffered: ByteSize,
    /// Threads of the async runtime; 0: one per CPU core (or
    /// `TOKIO_WORKER_THREADS` when set). On a small host shared with Redis and
    /// other busy processes, fewer threads than cores cost less CPU per
    /// message (fewer cross-core wake-ups). Default 0.
    pub worker_threads: usize,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// `text` or `json`. Default `text`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `goniec_gateway=debug`. Default `info`.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[store]`: where messages, queues and indexes live.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Store {
    /// `redis` (production, one server), `redis-cluster` (production, a Redis
    /// Cluster: see `nodes`) or `memory` (demo/tests; keeps nothing across
    /// restarts). Default `redis`.
    pub backend: StoreBackend,
    /// Redis URL (backend `redis`). Default `redis://127.0.0.1:6379/0`.
    pub url: String,
    /// Seed nodes of the cluster (backend `redis-cluster`), e.g.
    /// `["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"]`; the rest of the
    /// cluster is discovered from them.
    pub nodes: Vec<String>,
    /// Prefix of every Redis key. Default `goniec`.
    pub prefix: String,
    /// How long message records, events and history are kept. Default `30d`.
    #[serde(with = "humantime_serde_compat")]
    pub retention: Duration,
    /// How long an `Idempotency-Key` is remembered per tenant. Default `24h`.
    #[serde(with = "humantime_serde_compat")]
    pub idempotency_ttl: Duration,
    /// How long a provider id → message id mapping is kept for receipts. Default `72h`.
    #[serde(with = "humantime_serde_compat")]
    pub correlation_ttl: Duration,
    /// Longest wait for one Redis reply before the store counts as down. Default `2s`.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Virtual partitions (1 to 1024). Every message belongs to one, derived from
    /// its tenant and recipient, and all of a partition's keys share one Redis
    /// hash tag. Fixed for the life of a deployment: messages stored under one
    /// count are not found under another. Default 16.
    pub partitions: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreBackend {
    #[default]
    Redis,
    RedisCluster,
    Memory,
}

/// `[workers]`: the delivery pipeline, per channel.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Workers {
    /// Most messages of one channel in flight to connectors at once. Default 256.
    pub concurrency: usize,
    /// Most queue entries claimed in one read. Default 128.
    pub claim_batch: usize,
    /// A claimed entry idle this long belonged to a dead worker and is reclaimed. Default `60s`.
    #[serde(with = "humantime_serde_compat")]
    pub claim_idle: Duration,
    /// An instance whose heartbeat is this old is dead: the others take over its
    /// entries at once, whatever their idle time. Default `5s`.
    #[serde(with = "humantime_serde_compat")]
    pub takeover_after: Duration,
    /// Delivery attempts before a message is dead-lettered as `failed`. Default 10.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with jitter. Default `1s`.
    #[serde(with = "humantime_serde_compat")]
    pub retry_base: Duration,
    /// Longest retry delay. Default `5m`.
    #[serde(with = "humantime_serde_compat")]
    pub retry_max: Duration,
    /// How often due scheduled messages and retries are moved to the queue. Default `200ms`.
    #[serde(with = "humantime_serde_compat")]
    pub schedule_poll: Duration,
}

/// `[webhooks]`: customer status callbacks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Webhooks {
    /// Timeout of one callback request. Default `5s`.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Attempts before a callback is dead-lettered. Default 8.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with jitter. Default `2s`.
    #[serde(with = "humantime_serde_compat")]
    pub retry_base: Duration,
    /// Longest retry delay. Default `1h`.
    #[serde(with = "humantime_serde_compat")]
    pub retry_max: Duration,
    /// Callbacks in flight at once. Default 64.
    pub concurrency: usize,
}

/// `[admin]`: the operator's access to `/v1/admin/*` and the console.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Admin {
    /// SHA-256 hashes of operator keys, `sha256:<64 hex>` (`goniec hash-key KEY`).
    /// Empty (the default) turns the admin endpoints off.
    pub api_keys: Vec<String>,
    /// Hashes of keys that may read `GET /metrics` (a Prometheus scraper's
    /// bearer token); operator keys may too. Empty (the default): `/metrics`
    /// is open to anyone who reaches its listener.
    pub metrics_keys: Vec<String>,
    /// Serve `GET /metrics` on this address only (e.g. `127.0.0.1:9464`, a
    /// port your Prometheus reaches and clients do not); the API listener then
    /// answers 404 there. Default: on the API listener.
    #[serde(default, deserialize_with = "opt_socket_addr")]
    pub metrics_listen: Option<SocketAddr>,
    /// How long a console login lasts (`/console`: an operator key exchanged
    /// for a session cookie). Default `8h`; 1 s to 7 days.
    #[serde(with = "humantime_serde_compat")]
    pub console_session: Duration,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            api_keys: Vec::new(),
            metrics_keys: Vec::new(),
            metrics_listen: None,
            console_session: Duration::from_secs(8 * 3600),
        }
    }
}

/// `[antifraud]`: screening of every message before it is queued.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Antifraud {
    /// Screen messages (rules, contact policy, counters). Default true.
    pub enabled: bool,
    /// Phishing blocklist in CERT Polska's `domains.txt` format (one domain per
    /// line). Reloaded when the file changes and on SIGHUP. Default none.
    pub blocklist: Option<String>,
    /// How often the blocklist file is checked for changes. Default `10s`.
    #[serde(with = "humantime_serde_compat")]
    pub reload_every: Duration,
    /// Secret mixed into the hashed counter keys, so stored keys cannot be
    /// reversed by enumerating phone numbers; the same on every instance sharing a
    /// store. Default empty (set it in production).
    pub key_salt: String,
    /// Every tenant's policy starts from these; `[tenants.antifraud]` overrides
    /// key by key. `policy` and `senders` are set on the tenant itself.
    pub defaults: goniec_antifraud::TenantPolicy,
}

impl Default for Antifraud {
    fn default() -> Self {
        Antifraud {
            enabled: true,
            blocklist: None,
            reload_every: Duration::from_secs(10),
            key_salt: String::new(),
            defaults: goniec_antifraud::TenantPolicy::default(),
        }
    }
}

/// `[tenants.email]`: how a tenant's e-mail is signed and how recipients leave.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantEmail {
    /// DKIM: the signing domain (`d=`), selector (`s=`) and the RSA private key
    /// (PKCS#1 PEM file). All three or none; a key that cannot be read or parsed
    /// stops the gateway at start.
    pub dkim_domain: Option<String>,
    pub dkim_selector: Option<String>,
    pub dkim_private_key: Option<String>,
    /// One-click unsubscribe URL: `List-Unsubscribe: <url>` and
    /// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
    pub unsubscribe_url: Option<String>,
    /// Unsubscribe address: `List-Unsubscribe: <mailto:address>`.
    pub unsubscribe_mailto: Option<String>,
}

/// `callback_batch = { max = 100, linger = "50ms" }`: batched callbacks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackBatch {
    /// Most callbacks in one POST (1 to 1000).
    pub max: usize,
    /// Longest a callback waits for others to join its batch (at most 10 s).
    #[serde(with = "humantime_serde_compat")]
    pub linger: Duration,
}

/// `[links]`: how tracked links (`{{link:https://…}}` in a text) are served.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Links {
    /// Also serve the redirects on this address, at `/{code}` (point a tenant's
    /// link domain here). They are always served on the API listener at `/l/{code}`.
    /// Default: none.
    #[serde(deserialize_with = "opt_socket_addr")]
    pub listen: Option<SocketAddr>,
    /// Networks (CIDR, e.g. `"66.249.64.0/19"`) of data centres whose fetches
    /// within a second of a message's delivery are link previews or scanners,
    /// recorded as `prefetch`, not as a click. Default: none.
    pub datacenter_ranges: Vec<String>,
    /// Take the client address from the first `X-Forwarded-For` entry (behind
    /// a reverse proxy you run). Default false.
    pub trust_forwarded_for: bool,
}

/// `[tenants.links]`: the tenant's tracked links.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantLinks {
    /// The base of short links, e.g. `https://acme.link` (its DNS pointing at
    /// `[links] listen`) or `https://gw.example.com/l`; a short link is this,
    /// `/`, and a random code of 10 base62 characters. Default: none
    /// (`{{link:…}}` is refused). The anti-fraud link rules never hold it.
    pub domain: Option<String>,
    /// How long a short link works. Default `90d`.
    #[serde(with = "humantime_serde_compat")]
    pub ttl: Duration,
}

impl Default for TenantLinks {
    fn default() -> Self {
        TenantLinks {
            domain: None,
            ttl: Duration::from_secs(90 * 86_400),
        }
    }
}

/// `[tenants.rcs]`: how a tenant's RCS messages fall back to SMS.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantRcs {
    /// A message with `fallback: ["sms"]` that has no DELIVERED event this long
    /// after the platform took it is revoked and, only if the revoke succeeded,
    /// sent by SMS, so the recipient never gets both. Default: none (fall back
    /// only when the number is not reachable over RCS at all).
    #[serde(with = "humantime_serde_compat::option")]
    pub fallback_after: Option<Duration>,
}

/// The statuses a callback can report (`callback_events`): every status a
/// message can move to.
pub const CALLBACK_EVENTS: [&str; 11] = [
    "scheduled",
    "queued",
    "submitted",
    "delivered",
    "undeliverable",
    "expired",
    "failed",
    "read",
    "rejected",
    "held",
    "cancelled",
];

/// `[[tenants]]`: one API client (a collection firm).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tenant {
    /// Unique name; appears in metrics. Required.
    pub name: String,
    /// SHA-256 hashes of the API keys, `sha256:<64 hex>` (`goniec hash-key KEY`). At least one.
    pub api_keys: Vec<String>,
    /// Secret for `Goniec-Signature` on callbacks. Required, at least 16 characters.
    pub webhook_secret: String,
    /// Callback URL used when a message has none.
    pub callback_url: Option<String>,
    /// Post status changes in batches: one signed POST carrying a JSON array of
    /// up to `max` callbacks, sent when it is full or `linger` after its first
    /// one. Default: none (one POST per change).
    pub callback_batch: Option<CallbackBatch>,
    /// Which status changes are posted to the callback URL, e.g.
    /// `["delivered", "undeliverable", "expired", "failed"]` for final states
    /// only; a message's own `callback_events` wins. Default: every change.
    pub callback_events: Option<Vec<String>>,
    /// Where replies from recipients (SMS to this tenant's senders) are posted,
    /// signed like callbacks. Default: none (replies are not forwarded).
    pub inbound_url: Option<String>,
    /// Allow callback URLs on loopback/private addresses (off: the gateway is no SSRF proxy).
    pub allow_private_callbacks: bool,
    /// What this tenant may put in `from`: SMS/RCS sender ids and numbers,
    /// e-mail addresses (`name@domain`) and e-mail domains (`@domain`). Empty:
    /// no `from` may be given (the connector's default sender is used).
    pub senders: Vec<String>,
    /// Contact policy; `collection` (default) or `transactional`.
    pub policy: Policy,
    /// Messages per second this tenant may submit (e.g. `"1000/s"`); none = unlimited.
    pub rate: Option<Rate>,
    /// API requests per second this tenant may make (any endpoint, e.g. `"50/s"`);
    /// none = unlimited. Above it: 429 with `Retry-After`.
    pub request_rate: Option<Rate>,
    /// A reply (SMS to one of this tenant's senders) that is just one of these words
    /// opts the recipient out; compared ignoring case and diacritics. Default
    /// `["STOP", "NIE"]`; `[]` turns it off.
    pub stop_keywords: Option<Vec<String>>,
    /// E-mail settings: DKIM signing and List-Unsubscribe.
    pub email: TenantEmail,
    /// RCS settings: the delivery-based SMS fallback.
    pub rcs: TenantRcs,
    /// Tracked links: the short-link domain and how long links work.
    pub links: TenantLinks,
    /// Anti-fraud and contact policy: `[antifraud.defaults]` with this table's keys
    /// laid over it, and the tenant's `policy` and `senders`.
    pub antifraud: goniec_antifraud::TenantPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    #[default]
    Collection,
    Transactional,
}

/// `[[routes]]`: which connector serves a channel (optionally per destination prefix).
/// The longest matching prefix wins; a route without prefix matches everything of its channel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub channel: Channel,
    /// E.164 prefix such as `+4850`, or for e-mail a domain suffix such as `@example.com`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Only this tenant's messages take the route (its own relay or SMSC account);
    /// a tenant's route wins over the shared ones. Default: every tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    pub connector: String,
}

// ---------------------------------------------------------------------------
// Defaults: exactly the values the field docs above state.

const MIB: u64 = 1024 * 1024;

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body: ByteSize::new(16 * MIB),
            max_batch: 10_000,
            default_region: "PL".to_owned(),
            max_segments: 10,
            max_attachments: ByteSize::new(10 * MIB),
            max_text_chars: 100_000,
            shutdown_grace: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_buffered: ByteSize::new(256 * MIB),
            worker_threads: 0,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

impl Store {
    /// The seed nodes named by a `redis-cluster://HOST:PORT,HOST:PORT,…` URL
    /// (the `--store` form of the demo and the tests), as `redis://` URLs;
    /// `None` for any other URL.
    pub fn cluster_nodes(url: &str) -> Option<Vec<String>> {
        let hosts = url.strip_prefix("redis-cluster://")?;
        Some(
            hosts
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(|h| format!("redis://{h}"))
                .collect(),
        )
    }
}

impl Default for Store {
    fn default() -> Self {
        Store {
            backend: StoreBackend::Redis,
            url: "redis://127.0.0.1:6379/0".to_owned(),
            nodes: Vec::new(),
            prefix: "goniec".to_owned(),
            retention: Duration::from_secs(30 * DAY),
            idempotency_ttl: Duration::from_secs(24 * HOUR),
            correlation_ttl: Duration::from_secs(72 * HOUR),
            timeout: Duration::from_secs(2),
            partitions: 16,
        }
    }
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            concurrency: 256,
            claim_batch: 128,
            claim_idle: Duration::from_secs(60),
            takeover_after: Duration::from_secs(5),
            max_attempts: 10,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(5 * MINUTE),
            schedule_poll: Duration::from_millis(200),
        }
    }
}

impl Default for Webhooks {
    fn default() -> Self {
        Webhooks {
            timeout: Duration::from_secs(5),
            max_attempts: 8,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(HOUR),
            concurrency: 64,
        }
    }
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// A listen address, with a hint for the usual mistake (a host name).
fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "invalid address `{text}`: expected IP:port such as \"127.0.0.1:8080\" or \"[::]:8080\" \
             (host names are not resolved)"
        ))
    })
}

/// An optional listen address (see [`socket_addr`]).
fn opt_socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    socket_addr(d).map(Some)
}
