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
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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

/// `[admin]`: the operator's access to `/v1/admin/*` (dead letters).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
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

/// `[[connectors]]`: one way out to a carrier or provider, chosen by `kind`.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// Unique name; the route key and metric label.
    pub name: String,
    /// The carrier's contracted throughput across all binds/connections, e.g. `"500/s"`.
    pub tps: Option<Rate>,
    pub kind: ConnectorKind,
}

/// The protocol-specific part of a connector.
#[derive(Debug, Clone)]
pub enum ConnectorKind {
    /// A test double: accepts every message after `latency` and reports receipts.
    /// Only builds that include the `stub` feature can run it.
    Stub(StubConnector),
    /// SMPP 3.4 to an SMSC.
    Smpp(SmppConnector),
    /// SMTP to a relay.
    Smtp(SmtpConnector),
    /// Google RCS Business Messaging over its REST API.
    Rcs(RcsConnector),
}

impl ConnectorKind {
    pub fn kind_name(&self) -> &'static str {
        match self {
            ConnectorKind::Stub(_) => "stub",
            ConnectorKind::Smpp(_) => "smpp",
            ConnectorKind::Smtp(_) => "smtp",
            ConnectorKind::Rcs(_) => "rcs",
        }
    }

    /// Channels a connector of this kind carries; routes may only send it these.
    pub fn channels(&self) -> &[Channel] {
        match self {
            ConnectorKind::Stub(stub) => &stub.channels,
            ConnectorKind::Smpp(_) => &[Channel::Sms],
            ConnectorKind::Smtp(_) => &[Channel::Email],
            ConnectorKind::Rcs(_) => &[Channel::Rcs],
        }
    }
}

/// `kind = "smtp"`: e-mail through an SMTP relay (pooled connections).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConnector {
    /// Relay host. Default `127.0.0.1`.
    pub host: String,
    /// Relay port. Default 25.
    pub port: u16,
    /// `none`, `starttls` (required, default) or `tls` (implicit TLS, port 465).
    pub tls: String,
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

impl Default for SmtpConnector {
    fn default() -> Self {
        SmtpConnector {
            host: "127.0.0.1".into(),
            port: 25,
            tls: "starttls".into(),
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

/// `kind = "rcs"`: Google RCS Business Messaging (RBM) over its REST API,
/// authenticated with an OAuth2 service account.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RcsConnector {
    /// The RBM API root. Default `https://rcsbusinessmessaging.googleapis.com`.
    pub base_url: String,
    /// The RBM agent id. Required.
    pub agent_id: String,
    /// Google service-account key file (JSON with `client_email`, `private_key`,
    /// `private_key_id`, `token_uri`). Required; a key that cannot be read or
    /// parsed stops the gateway at start.
    pub service_account_key: PathBuf,
    /// OAuth2 token endpoint; overrides the key file's `token_uri`. Default none.
    pub token_uri: Option<String>,
    /// OAuth2 scope asked for. Default `https://www.googleapis.com/auth/rcsbusinessmessaging`.
    pub scope: String,
    /// The agent's client token: the HMAC secret of `X-Goog-Signature` on the
    /// platform's webhook posts. Required, at least 16 characters.
    pub client_token: String,
    /// Ask the platform whether a number is RCS-capable before the first send to
    /// it (answers cached for `capability_ttl`). Default false.
    pub check_capabilities: bool,
    /// How long a reachable/unreachable answer is remembered per number. Default `1h`.
    #[serde(with = "humantime_serde_compat")]
    pub capability_ttl: Duration,
    /// Longest wait for one API request. Default `10s`.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Idle connections kept open to the platform. Default 64.
    pub max_connections: u32,
}

impl Default for RcsConnector {
    fn default() -> Self {
        RcsConnector {
            base_url: "https://rcsbusinessmessaging.googleapis.com".into(),
            agent_id: String::new(),
            service_account_key: PathBuf::new(),
            token_uri: None,
            scope: "https://www.googleapis.com/auth/rcsbusinessmessaging".into(),
            client_token: String::new(),
            check_capabilities: false,
            capability_ttl: Duration::from_secs(HOUR),
            timeout: Duration::from_secs(10),
            max_connections: 64,
        }
    }
}

/// `kind = "smpp"`: an SMPP 3.4 link to a carrier's SMSC.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmppConnector {
    /// SMSC host (IP or name). Default `127.0.0.1`.
    pub host: String,
    /// SMSC port. Default 2775.
    pub port: u16,
    /// Bind credentials. `system_id` default `goniec`; `password` required.
    pub system_id: String,
    pub password: String,
    /// Default empty.
    pub system_type: String,
    /// How to bind: `transceiver` (default; one connection both ways) or
    /// `transmitter_receiver` (each of the `binds` is a transmitter for submits
    /// plus a receiver for receipts, for SMSCs without transceiver support).
    pub bind_type: String,
    /// address_range sent in the bind (which MO/receipt addresses this ESME
    /// serves; at most 40 characters). Default empty.
    pub address_range: String,
    /// interface_version sent in the bind: 0x34 (52, SMPP 3.4, default), 0x33 or 0x50.
    pub interface_version: u8,
    /// Parallel transceiver binds; messages spread over the ready ones. Default 1.
    pub binds: usize,
    /// Most requests outstanding per bind. Default 100.
    pub window: usize,
    /// Longest wait for a response. Default `10s`.
    #[serde(with = "humantime_serde_compat")]
    pub response_timeout: Duration,
    /// Idle time before an enquire_link. Default `30s`.
    #[serde(with = "humantime_serde_compat")]
    pub enquire_link: Duration,
    /// A bind whose writes to the SMSC make no progress for this long (the SMSC
    /// stopped reading) is declared dead and reconnected; after a second of no
    /// progress it already takes no new submits and reports itself down. Default `15s`.
    #[serde(with = "humantime_serde_compat")]
    pub write_timeout: Duration,
    /// data_coding for GSM-7 text: 0 (SMSC default alphabet, unpacked septets) or
    /// 3 (Latin-1, when the SMSC's default is not GSM-7). UCS-2 text always uses 8.
    /// Default 0.
    pub data_coding: u8,
    /// Long messages: `udh8` (default), `udh16`, `sar` or `payload`.
    pub concat: String,
    /// Source TON/NPI override, e.g. `[5, 0]`; default derived from the sender.
    pub source_ton_npi: Option<[u8; 2]>,
    /// Default sender when a message has none. Default `Goniec`.
    pub default_sender: String,
    /// How receipt ids relate to submit_sm_resp ids: `same` (default; compared after
    /// trimming, lower-casing and dropping leading zeros), `hex_to_decimal` (the SMSC
    /// answers submits in hex and reports receipts in decimal) or `decimal_to_hex`.
    /// The declared form is tried first, and alone for a few seconds (a receipt can
    /// arrive before its submit is recorded). Only then, and only while most recent
    /// receipts of this connector do not match in the declared form, are the other
    /// spellings (decimal ↔ hex) tried, and used when exactly one of them matches:
    /// guessing while the declared form works would hand receipts of other messages
    /// (another bind's) to the wrong one.
    pub receipt_ids: String,
    /// Ask the SMSC with `query_sm` about a message whose receipt has not come this
    /// long after its submission, then again after twice the wait, and so on, at
    /// most `query_max` times, and once more at its deadline (see `receipt_grace`).
    /// `"0s"` never asks. Default `10m`.
    #[serde(with = "humantime_serde_compat")]
    pub query_after: Duration,
    /// Most `query_sm` for one message before its deadline. Default 5 (with
    /// `query_after = "10m"`: after 10, 30, 70, 150 and 310 minutes).
    pub query_max: u32,
    /// How long the SMSC is taken to keep trying a message that has no
    /// `valid_until` of its own: set it to your SMSC's default validity period.
    /// Default `48h`.
    #[serde(with = "humantime_serde_compat")]
    pub default_validity: Duration,
    /// A message still `submitted` this long after its validity ended (its
    /// `valid_until`, else submission + `default_validity`), with no receipt and no
    /// final answer to `query_sm`, becomes `expired` with reason `no_receipt`.
    /// Default `1h`.
    #[serde(with = "humantime_serde_compat")]
    pub receipt_grace: Duration,
}

impl Default for SmppConnector {
    fn default() -> Self {
        SmppConnector {
            host: "127.0.0.1".into(),
            port: 2775,
            system_id: "goniec".into(),
            password: String::new(),
            system_type: String::new(),
            bind_type: "transceiver".into(),
            address_range: String::new(),
            interface_version: 0x34,
            binds: 1,
            window: 100,
            response_timeout: Duration::from_secs(10),
            enquire_link: Duration::from_secs(30),
            write_timeout: Duration::from_secs(15),
            data_coding: 0,
            concat: "udh8".into(),
            source_ton_npi: None,
            default_sender: "Goniec".into(),
            receipt_ids: "same".into(),
            query_after: Duration::from_secs(10 * 60),
            query_max: 5,
            default_validity: Duration::from_secs(48 * HOUR),
            receipt_grace: Duration::from_secs(HOUR),
        }
    }
}

/// `kind = "stub"`: the test double connector.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StubConnector {
    /// Channels it serves. Default `["sms", "rcs", "email"]`.
    pub channels: Vec<Channel>,
    /// Time one submit takes. Default `0s`.
    #[serde(with = "humantime_serde_compat")]
    pub latency: Duration,
    /// Delay before the delivery receipt. Default `0s`.
    #[serde(with = "humantime_serde_compat")]
    pub receipt_delay: Duration,
    /// Receipt state sent after submit: `delivered`, `undeliverable` or `none`. Default `delivered`.
    pub receipt: String,
    /// Every n-th submit fails transiently (0 = never). Default 0.
    pub transient_every: u64,
    /// Every n-th submit fails permanently (0 = never). Default 0.
    pub permanent_every: u64,
    /// Append one line per submit (`<message id>`) to this file, for tests counting duplicates.
    pub record_to: Option<PathBuf>,
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

impl Default for StubConnector {
    fn default() -> Self {
        StubConnector {
            channels: Channel::ALL.to_vec(),
            latency: Duration::ZERO,
            receipt_delay: Duration::ZERO,
            receipt: "delivered".to_owned(),
            transient_every: 0,
            permanent_every: 0,
            record_to: None,
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

/// Serde adapter for durations written as `"30s"`, `"72h"`, `"200ms"`.
pub mod humantime_serde_compat {
    use serde::de::{self, Visitor};
    use serde::Deserializer;
    use std::fmt;
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        // A visitor rather than `String::deserialize` so that `timeout = 5`
        // says a duration string is expected, not just "a string".
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"5m\" or \"72h\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
                humantime::parse_duration(s).map_err(|e| {
                    E::custom(format!(
                        "invalid duration `{s}`: {e} (examples: \"30s\", \"5m\", \"72h\")"
                    ))
                })
            }
        }
        d.deserialize_str(DurationVisitor)
    }

    /// For `Option<Duration>` fields (with `#[serde(default)]` on the struct).
    pub mod option {
        use serde::Deserializer;
        use std::time::Duration;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}
