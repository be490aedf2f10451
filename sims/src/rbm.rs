//! An RBM simulator: Google's RCS Business Messaging REST API on real HTTP, for
//! `goniec demo`, `goniec rcs-sim`, tests and benches.
//!
//! It serves the URL shapes the connector calls, with RBM's error bodies
//! (`{"error":{"code":404,"message":"…","status":"NOT_FOUND"}}`):
//!
//! * `POST /token`: the OAuth2 JWT-bearer grant. The grant type, the JWT's
//!   shape, `alg` (`RS256`), `aud` (this server's `/token`), `exp` (in the
//!   future, at most an hour after `iat`) and `scope` are checked, and with
//!   [`RcsSimConfig::service_account_key`] the RS256 signature against that
//!   key and `iss` against its `client_email`. Issues random opaque tokens that
//!   live [`RcsSimConfig::token_ttl`] (whole seconds, at least one).
//! * `POST /v1/phones/{E.164}/agentMessages?messageId=…&agentId=…`: send. The
//!   bearer token must be live (else 401 `UNAUTHENTICATED`), the agent the
//!   configured one (else 403), the body a valid `contentMessage` (else 400
//!   `INVALID_ARGUMENT`, checked with [`content`](goniec_connectors::rcs::content)). Numbers that cannot
//!   get RCS ([`RcsSimConfig::unreachable_prefixes`], or a share chosen by a
//!   stable hash of the number) get 404 `NOT_FOUND`; a message id seen before
//!   409 `ALREADY_EXISTS` (no second delivery); above
//!   [`RcsSimConfig::max_tps`], 429 `RESOURCE_EXHAUSTED` with `Retry-After`.
//! * `GET /v1/phones/{E.164}/capabilities?requestId=…&agentId=…`: 200 with
//!   features, or 404 for unreachable numbers.
//! * `DELETE /v1/phones/{E.164}/agentMessages/{id}?agentId=…`: revoke; 200
//!   while the message is known and neither delivered nor revoked (its events
//!   are cancelled), 404 once delivered, revoked or when unknown.
//! * `GET /stats`: the [`RcsSimStats`] JSON.
//!
//! **Events**: [`RcsSimConfig::delivered_after`] after an accepted send (unless
//! revoked, or the number matches [`RcsSimConfig::silent_prefixes`]), a
//! `DELIVERED` event is posted to the webhook as a Pub/Sub push signed with
//! `X-Goog-Signature`, then `READ` after [`RcsSimConfig::read_after`]. A failed
//! post is retried with backoff ([`POST_ATTEMPTS`] in all), then counted in
//! `events_failed`. Timers are one sorted map swept by one task, and posts run
//! at most [`POST_CONCURRENCY`] at a time over one pooled client, so thousands
//! of messages a second cost no task each while they wait.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SecureRandom as _;
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use goniec_connectors::rcs::auth::{decode_jwt, ServiceAccount, JWT_BEARER_GRANT};
use goniec_connectors::rcs::events::{push_body, sign, SIGNATURE_HEADER};
use goniec_connectors::rcs::{content, is_e164};
use goniec_core::mask::mask;

/// The demo/test service-account key (JSON). **Demo only**: a throwaway key
/// that grants nothing anywhere; the simulator trusts it when told to.
pub const DEMO_SERVICE_ACCOUNT: &str = include_str!("demo-service-account.json");

/// Attempts to post one event to the webhook before it counts as failed.
pub const POST_ATTEMPTS: u32 = 4;
/// Event posts in flight at once.
pub const POST_CONCURRENCY: usize = 256;
/// Messages remembered (for duplicates, revokes and events); the oldest go first.
pub const MAX_KNOWN: usize = 100_000;
/// Messages [`RcsSim::messages`] returns at most (the newest).
pub const MAX_LISTED: usize = 10_000;

/// First retry delay of a failed post; doubles each attempt.
const POST_BACKOFF: Duration = Duration::from_millis(100);
/// Timeout of one webhook post.
const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// Tokens kept before expired ones are swept.
const TOKEN_SWEEP_AT: usize = 10_000;
/// Clock skew allowed on a JWT's `iat`.
const CLOCK_SKEW: u64 = 300;

/// The demo key's JSON: [`DEMO_SERVICE_ACCOUNT`].
pub fn demo_service_account() -> &'static str {
    DEMO_SERVICE_ACCOUNT
}

/// Writes the demo key to `dir/goniec-demo-service-account.json` and returns its
/// path (for a connector config, which names a key file).
pub fn write_demo_service_account(dir: &Path) -> std::io::Result<PathBuf> {
    let path = dir.join("goniec-demo-service-account.json");
    std::fs::write(&path, DEMO_SERVICE_ACCOUNT)?;
    Ok(path)
}

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct RcsSimConfig {
    /// The one agent id it serves (others get 403).
    pub agent_id: String,
    /// The client token signing webhook posts (`X-Goog-Signature`).
    pub client_token: String,
    /// Where events are posted; `None`: nowhere (see [`RcsSim::set_webhook`]).
    pub webhook_url: Option<String>,
    /// Verify token requests' JWT signatures against this service-account key
    /// file (and `iss` against its `client_email`); `None`: signatures unchecked.
    pub service_account_key: Option<PathBuf>,
    /// Lifetime of issued tokens (whole seconds, at least 1). Default 1h.
    pub token_ttl: Duration,
    /// Share of numbers (0.0–1.0) that cannot get RCS, chosen by a stable hash
    /// of the number so a number always answers the same. Default 0.
    pub unreachable_share: f64,
    /// Numbers starting with one of these cannot get RCS.
    pub unreachable_prefixes: Vec<String>,
    /// Numbers starting with one of these accept messages that are never
    /// delivered (for fallback tests).
    pub silent_prefixes: Vec<String>,
    /// Delay from an accepted send to its `DELIVERED` event. Default 200ms.
    pub delivered_after: Duration,
    /// Delay from `DELIVERED` to `READ`; `None`: never read. Default 1s.
    pub read_after: Option<Duration>,
    /// Added to every API answer. Default 0.
    pub latency: Duration,
    /// Sends per second accepted before 429 (0 = no limit). Default 0.
    pub max_tps: u32,
    /// Withdraw a revoked message but answer its first revoke 503, as if the
    /// answer were lost on the way (the caller's retry then gets 404). Default off.
    pub revoke_answer_lost: bool,
    /// Answer revokes 200 but deliver the message anyway, as when the platform was
    /// delivering it at that moment (its 200 does not prove the withdrawal).
    /// Default off.
    pub revoke_ineffective: bool,
}

impl Default for RcsSimConfig {
    fn default() -> Self {
        RcsSimConfig {
            agent_id: "goniec-demo-agent".into(),
            client_token: "goniec-demo-client-token".into(),
            webhook_url: None,
            service_account_key: None,
            token_ttl: Duration::from_secs(3600),
            unreachable_share: 0.0,
            unreachable_prefixes: Vec::new(),
            silent_prefixes: Vec::new(),
            delivered_after: Duration::from_millis(200),
            read_after: Some(Duration::from_secs(1)),
            latency: Duration::ZERO,
            max_tps: 0,
            revoke_answer_lost: false,
            revoke_ineffective: false,
        }
    }
}

/// A snapshot of the simulator's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RcsSimStats {
    /// Tokens issued by `POST /token`.
    pub tokens_issued: u64,
    /// Token requests refused (bad grant, JWT, signature, audience, expiry).
    pub token_rejected: u64,
    /// Messages accepted (200).
    pub sent: u64,
    /// Sends of a message id already accepted (409).
    pub duplicates: u64,
    /// Sends to numbers that cannot get RCS (404).
    pub unreachable: u64,
    /// Capability requests answered (200 or 404).
    pub capability_checks: u64,
    /// Messages revoked before delivery (200).
    pub revoked: u64,
    /// Revokes too late or of unknown messages (404).
    pub revoke_too_late: u64,
    /// Requests refused for a missing, unknown or expired token (401).
    pub unauthorized: u64,
    /// Sends refused over [`RcsSimConfig::max_tps`] (429).
    pub throttled: u64,
    /// Events posted to the webhook (2xx).
    pub events_posted: u64,
    /// Events given up on after [`POST_ATTEMPTS`] failed posts.
    pub events_failed: u64,
}

/// A message the simulator accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimMessage {
    /// The recipient (E.164).
    pub phone: String,
    /// The agent message id.
    pub message_id: String,
    /// The `contentMessage` as sent.
    pub content: Value,
    /// The `expireTime` as sent.
    pub expire_time: Option<String>,
    /// Revoked before delivery.
    pub revoked: bool,
    /// `DELIVERED` was due (and posted, when a webhook is set).
    pub delivered: bool,
}

#[derive(Default)]
struct Counters {
    tokens_issued: AtomicU64,
    token_rejected: AtomicU64,
    sent: AtomicU64,
    duplicates: AtomicU64,
    unreachable: AtomicU64,
    capability_checks: AtomicU64,
    revoked: AtomicU64,
    revoke_too_late: AtomicU64,
    unauthorized: AtomicU64,
    throttled: AtomicU64,
    events_posted: AtomicU64,
    events_failed: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Known {
    phone: Arc<str>,
    content: String,
    expire_time: Option<String>,
    revoked: bool,
    delivered: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EventKind {
    Delivered,
    Read,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Delivered => "DELIVERED",
            EventKind::Read => "READ",
        }
    }
}

struct Job {
    id: Arc<str>,
    kind: EventKind,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct SimState {
    messages: HashMap<Arc<str>, Known>,
    order: VecDeque<Arc<str>>,
    /// Due events, by time and insertion order.
    due: BTreeMap<(Instant, u64), Job>,
    seq: u64,
    bucket: Bucket,
}

struct Shared {
    cfg: RcsSimConfig,
    addr: SocketAddr,
    /// `client_email` and DER public key of the trusted service account.
    trusted: Option<(String, Vec<u8>)>,
    webhook: RwLock<Option<Arc<str>>>,
    tokens: Mutex<HashMap<String, Instant>>,
    state: Mutex<SimState>,
    wake: Notify,
    counters: Counters,
    http: reqwest::Client,
    posts: Arc<Semaphore>,
    rng: ring::rand::SystemRandom,
    stop: CancellationToken,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn webhook(&self) -> Option<Arc<str>> {
        self.webhook
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Queues an event `after` from now; wakes the sweeper when it is the earliest.
    fn schedule(&self, id: Arc<str>, kind: EventKind, after: Duration) {
        let at = Instant::now() + after;
        let earliest = {
            let mut state = self.state();
            state.seq += 1;
            let key = (at, state.seq);
            state.due.insert(key, Job { id, kind });
            state.due.first_key_value().is_some_and(|(k, _)| *k == key)
        };
        if earliest {
            self.wake.notify_one();
        }
    }

    fn unreachable(&self, phone: &str) -> bool {
        if self
            .cfg
            .unreachable_prefixes
            .iter()
            .any(|p| phone.starts_with(p.as_str()))
        {
            return true;
        }
        let share = self.cfg.unreachable_share.clamp(0.0, 1.0);
        share > 0.0 && (fnv1a(phone.as_bytes()) % 10_000) < (share * 10_000.0).round() as u64
    }

    fn silent(&self, phone: &str) -> bool {
        self.cfg
            .silent_prefixes
            .iter()
            .any(|p| phone.starts_with(p.as_str()))
    }
}

/// FNV-1a: a stable hash (the same on every run, unlike `std`'s).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The simulator: a cheap handle; it runs until the token given to
/// [`RcsSim::start`] is cancelled.
#[derive(Clone)]
pub struct RcsSim {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RcsSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RcsSim")
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

impl RcsSim {
    /// Listens on `listen` and serves until `stop` is cancelled. Fails when the
    /// address cannot be bound or the trusted key file cannot be used.
    pub async fn start(
        listen: SocketAddr,
        cfg: RcsSimConfig,
        stop: CancellationToken,
    ) -> std::io::Result<RcsSim> {
        let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
        if !(0.0..=1.0).contains(&cfg.unreachable_share) {
            return Err(invalid(format!(
                "unreachable_share must be within 0.0..=1.0, got {}",
                cfg.unreachable_share
            )));
        }
        let trusted = match &cfg.service_account_key {
            Some(path) => {
                let account = ServiceAccount::load(path).map_err(|e| invalid(e.to_string()))?;
                Some((
                    account.client_email.clone(),
                    account.public_key_der().to_vec(),
                ))
            }
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .pool_max_idle_per_host(POST_CONCURRENCY)
            .build()
            .map_err(|e| std::io::Error::other(format!("HTTP client: {e}")))?;
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let max_tps = f64::from(cfg.max_tps);
        let shared = Arc::new(Shared {
            webhook: RwLock::new(cfg.webhook_url.as_deref().map(Arc::from)),
            cfg,
            addr,
            trusted,
            tokens: Mutex::new(HashMap::new()),
            state: Mutex::new(SimState {
                messages: HashMap::new(),
                order: VecDeque::new(),
                due: BTreeMap::new(),
                seq: 0,
                bucket: Bucket {
                    tokens: max_tps,
                    at: Instant::now(),
                },
            }),
            wake: Notify::new(),
            counters: Counters::default(),
            http,
            posts: Arc::new(Semaphore::new(POST_CONCURRENCY)),
            rng: ring::rand::SystemRandom::new(),
            stop: stop.clone(),
        });
        let app = Router::new()
            .route("/token", post(token))
            .route("/v1/phones/{phone}/agentMessages", post(send))
            .route("/v1/phones/{phone}/agentMessages/{id}", delete(revoke))
            .route("/v1/phones/{phone}/capabilities", get(capabilities))
            .route("/stats", get(stats))
            .with_state(shared.clone());
        let serve_stop = stop.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { serve_stop.cancelled().await });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "RCS simulator HTTP server failed.");
            }
        });
        tokio::spawn(sweep(shared.clone()));
        Ok(RcsSim { shared })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://<addr>`: the connector's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// `http://<addr>/token`: the connector's `token_uri`.
    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.shared.addr)
    }

    /// Where events go from now on (`None`: nowhere).
    pub fn set_webhook(&self, url: Option<String>) {
        *self
            .shared
            .webhook
            .write()
            .unwrap_or_else(|p| p.into_inner()) = url.map(Arc::from);
    }

    /// Forgets every issued token, as a platform revoking credentials would: the
    /// next request with one gets 401.
    pub fn revoke_tokens(&self) {
        self.shared
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RcsSimStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RcsSimStats {
            tokens_issued: get(&c.tokens_issued),
            token_rejected: get(&c.token_rejected),
            sent: get(&c.sent),
            duplicates: get(&c.duplicates),
            unreachable: get(&c.unreachable),
            capability_checks: get(&c.capability_checks),
            revoked: get(&c.revoked),
            revoke_too_late: get(&c.revoke_too_late),
            unauthorized: get(&c.unauthorized),
            throttled: get(&c.throttled),
            events_posted: get(&c.events_posted),
            events_failed: get(&c.events_failed),
        }
    }

    /// The newest accepted messages (at most [`MAX_LISTED`]), oldest first.
    pub fn messages(&self) -> Vec<SimMessage> {
        let state = self.shared.state();
        let skip = state.order.len().saturating_sub(MAX_LISTED);
        state
            .order
            .iter()
            .skip(skip)
            .filter_map(|id| {
                let m = state.messages.get(id)?;
                Some(SimMessage {
                    phone: m.phone.to_string(),
                    message_id: id.to_string(),
                    content: serde_json::from_str(&m.content).unwrap_or(Value::Null),
                    expire_time: m.expire_time.clone(),
                    revoked: m.revoked,
                    delivered: m.delivered,
                })
            })
            .collect()
    }

    /// Posts `event` (an RBM event or user message JSON, e.g.
    /// `{"senderPhoneNumber":"+48…","messageId":"…","text":"STOP"}`) to the
    /// webhook now, signed, with the usual retries. False when no webhook is set
    /// or every attempt failed.
    pub async fn push_event(&self, event: &Value) -> bool {
        match self.shared.webhook() {
            Some(url) => post_event(&self.shared, &url, event.to_string().into_bytes()).await,
            None => false,
        }
    }
}

// ---------------------------------------------------------------------------
// Events.

/// Sweeps due events: one task for all timers.
async fn sweep(shared: Arc<Shared>) {
    loop {
        let next = shared.state().due.first_key_value().map(|(k, _)| k.0);
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = shared.wake.notified() => continue,
            _ = sleep => {}
        }
        let now = Instant::now();
        let mut ready: Vec<(Arc<str>, Arc<str>, EventKind)> = Vec::new();
        {
            let mut state = shared.state();
            while let Some(entry) = state.due.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let job = entry.remove();
                let Some(m) = state.messages.get_mut(&job.id) else {
                    continue;
                };
                if job.kind == EventKind::Delivered {
                    if m.revoked || m.delivered {
                        continue;
                    }
                    m.delivered = true;
                }
                ready.push((job.id, m.phone.clone(), job.kind));
            }
        }
        for (id, phone, kind) in ready {
            let Some(url) = shared.webhook() else {
                continue;
            };
            let permit = tokio::select! {
                _ = shared.stop.cancelled() => return,
                p = shared.posts.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let data = event_json(&shared.cfg.agent_id, &phone, &id, kind);
                post_event(&shared, &url, data).await;
                drop(permit);
                if let (EventKind::Delivered, Some(after)) = (kind, shared.cfg.read_after) {
                    shared.schedule(id, EventKind::Read, after);
                }
            });
        }
    }
}

fn event_json(agent_id: &str, phone: &str, message_id: &str, kind: EventKind) -> Vec<u8> {
    json!({
        "senderPhoneNumber": phone,
        "eventType": kind.as_str(),
        "eventId": format!("sim-{}", ulid::Ulid::new()),
        "messageId": message_id,
        "sendTime": jiff::Timestamp::now().to_string(),
        "agentId": agent_id,
    })
    .to_string()
    .into_bytes()
}

/// Posts one signed push, retrying with backoff; counts the outcome.
async fn post_event(shared: &Shared, url: &str, data: Vec<u8>) -> bool {
    let signature = sign(&shared.cfg.client_token, &data);
    let body = Bytes::from(push_body(&data, &ulid::Ulid::new().to_string()));
    let mut backoff = POST_BACKOFF;
    for attempt in 1..=POST_ATTEMPTS {
        let result = shared
            .http
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, &signature)
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(r) if r.status().is_success() => {
                bump(&shared.counters.events_posted);
                return true;
            }
            Ok(r) => {
                tracing::debug!(status = %r.status(), attempt, "RCS simulator: webhook refused an event.")
            }
            Err(e) => tracing::debug!(error = %e, attempt, "RCS simulator: webhook post failed."),
        }
        if attempt < POST_ATTEMPTS {
            tokio::select! {
                _ = shared.stop.cancelled() => break,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff *= 2;
        }
    }
    bump(&shared.counters.events_failed);
    tracing::warn!(
        url,
        "RCS simulator: gave up posting an event to the webhook."
    );
    false
}

// ---------------------------------------------------------------------------
// HTTP.

type Sim = State<Arc<Shared>>;

fn rbm_error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body =
        json!({ "error": { "code": status.as_u16(), "message": message.into(), "status": kind } });
    (status, Json(body)).into_response()
}

fn oauth_error(shared: &Shared, error: &str, description: impl Into<String>) -> Response {
    bump(&shared.counters.token_rejected);
    let description = description.into();
    tracing::debug!(error, %description, "RCS simulator: token request refused.");
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

async fn token(State(shared): Sim, body: Bytes) -> Response {
    let mut grant_type = None;
    let mut assertion = None;
    for (key, value) in url::form_urlencoded::parse(&body) {
        match &*key {
            "grant_type" => grant_type = Some(value.into_owned()),
            "assertion" => assertion = Some(value.into_owned()),
            _ => {}
        }
    }
    if grant_type.as_deref() != Some(JWT_BEARER_GRANT) {
        return oauth_error(
            &shared,
            "unsupported_grant_type",
            format!("grant_type must be {JWT_BEARER_GRANT}"),
        );
    }
    let Some(assertion) = assertion else {
        return oauth_error(&shared, "invalid_request", "missing assertion");
    };
    if let Err(why) = check_assertion(&shared, &assertion) {
        return oauth_error(&shared, "invalid_grant", why);
    }
    let mut raw = [0u8; 24];
    if shared.rng.fill(&mut raw).is_err() {
        return rbm_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "no randomness",
        );
    }
    let value = format!("sim.{}", URL_SAFE_NO_PAD.encode(raw));
    let ttl = shared.cfg.token_ttl.as_secs().max(1);
    let now = Instant::now();
    {
        let mut tokens = shared.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= TOKEN_SWEEP_AT {
            tokens.retain(|_, until| *until > now);
        }
        tokens.insert(value.clone(), now + Duration::from_secs(ttl));
    }
    bump(&shared.counters.tokens_issued);
    Json(json!({ "access_token": value, "expires_in": ttl, "token_type": "Bearer" }))
        .into_response()
}

/// The checks Google's token endpoint makes on a JWT-bearer assertion.
fn check_assertion(shared: &Shared, assertion: &str) -> Result<(), String> {
    let jwt = decode_jwt(assertion)?;
    if jwt.header["alg"] != "RS256" {
        return Err(format!("alg must be RS256, got {}", jwt.header["alg"]));
    }
    if let Some((email, key)) = &shared.trusted {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key)
            .verify(jwt.signed.as_bytes(), &jwt.signature)
            .map_err(|_| "invalid JWT signature".to_string())?;
        if jwt.claims["iss"] != email.as_str() {
            return Err(format!("iss must be {email}, got {}", jwt.claims["iss"]));
        }
    } else if jwt.claims["iss"].as_str().is_none_or(str::is_empty) {
        return Err("iss is missing".into());
    }
    let aud = jwt.claims["aud"].as_str().unwrap_or_default();
    let aud_ok = url::Url::parse(aud).is_ok_and(|u| {
        u.path() == "/token" && u.port_or_known_default() == Some(shared.addr.port())
    });
    if !aud_ok {
        return Err(format!(
            "aud must be this token endpoint ({}/token), got {aud:?}",
            shared.addr
        ));
    }
    if jwt.claims["scope"].as_str().is_none_or(str::is_empty) {
        return Err("scope is missing".into());
    }
    let (Some(iat), Some(exp)) = (jwt.claims["iat"].as_u64(), jwt.claims["exp"].as_u64()) else {
        return Err("iat and exp must be Unix times".into());
    };
    let now = unix_now();
    if exp <= now {
        return Err("the JWT has expired (exp is in the past)".into());
    }
    if iat > now + CLOCK_SKEW {
        return Err("iat is in the future".into());
    }
    if exp < iat || exp - iat > 3600 {
        return Err("exp must be at most an hour after iat".into());
    }
    Ok(())
}

/// Checks the bearer token; `Some` is the 401 to answer.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let live = bearer.is_some_and(|t| {
        shared
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(t)
            .is_some_and(|until| Instant::now() < *until)
    });
    if live {
        return None;
    }
    bump(&shared.counters.unauthorized);
    Some(rbm_error(
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token.",
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiQuery {
    agent_id: Option<String>,
    message_id: Option<String>,
}

/// Latency, token, agent and number checks shared by the `/v1/phones` routes;
/// `Some` is the refusal to answer.
async fn admit(
    shared: &Shared,
    headers: &HeaderMap,
    q: &ApiQuery,
    phone: &str,
) -> Option<Response> {
    if !shared.cfg.latency.is_zero() {
        tokio::time::sleep(shared.cfg.latency).await;
    }
    if let Some(refusal) = authorize(shared, headers) {
        return Some(refusal);
    }
    if q.agent_id.as_deref() != Some(shared.cfg.agent_id.as_str()) {
        return Some(rbm_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!("agentId must be {}", shared.cfg.agent_id),
        ));
    }
    if !is_e164(phone) {
        return Some(rbm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "the phone number is not in E.164 format",
        ));
    }
    None
}

/// Takes one send from the rate bucket; `Err(retry after)` when empty.
fn take_rate(shared: &Shared, state: &mut SimState) -> Result<(), Duration> {
    if shared.cfg.max_tps == 0 {
        return Ok(());
    }
    let rate = f64::from(shared.cfg.max_tps);
    let now = Instant::now();
    let b = &mut state.bucket;
    b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate);
    b.at = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        Ok(())
    } else {
        Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
    }
}

async fn send(
    State(shared): Sim,
    UrlPath(phone): UrlPath<String>,
    Query(q): Query<ApiQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = admit(&shared, &headers, &q, &phone).await {
        return r;
    }
    let Some(id) = q.message_id.filter(|m| !m.is_empty()) else {
        return rbm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "messageId is required",
        );
    };
    let (content, expire_time) = match read_message(&body) {
        Ok(parts) => parts,
        Err(why) => return rbm_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", why),
    };
    let unreachable = shared.unreachable(&phone);
    let id: Arc<str> = id.into();
    {
        let mut state = shared.state();
        if let Err(wait) = take_rate(&shared, &mut state) {
            drop(state);
            bump(&shared.counters.throttled);
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut r = rbm_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for agent message sends.",
            );
            if let Ok(v) = secs.to_string().parse() {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        if unreachable {
            drop(state);
            bump(&shared.counters.unreachable);
            return rbm_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "Requested entity was not found.",
            );
        }
        if state.messages.contains_key(&id) {
            drop(state);
            bump(&shared.counters.duplicates);
            return rbm_error(
                StatusCode::CONFLICT,
                "ALREADY_EXISTS",
                "Requested entity already exists",
            );
        }
        state.messages.insert(
            id.clone(),
            Known {
                phone: phone.as_str().into(),
                content,
                expire_time,
                revoked: false,
                delivered: false,
            },
        );
        state.order.push_back(id.clone());
        while state.order.len() > MAX_KNOWN {
            if let Some(old) = state.order.pop_front() {
                state.messages.remove(&old);
            }
        }
    }
    bump(&shared.counters.sent);
    tracing::debug!(to = %mask(&phone), message_id = %id, "RCS simulator: message accepted.");
    if !shared.silent(&phone) {
        shared.schedule(id.clone(), EventKind::Delivered, shared.cfg.delivered_after);
    }
    Json(json!({
        "name": format!("phones/{phone}/agentMessages/{id}"),
        "sendTime": jiff::Timestamp::now().to_string(),
    }))
    .into_response()
}

/// The `contentMessage` (checked, as compact JSON) and `expireTime` of a send body.
fn read_message(body: &[u8]) -> Result<(String, Option<String>), String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Some(content) = value.get("contentMessage").and_then(Value::as_object) else {
        return Err("contentMessage is required and must be an object".into());
    };
    let text = match content.get("text") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(_) => return Err("contentMessage.text must be a string".into()),
        None => None,
    };
    let rest: Map<String, Value> = content
        .iter()
        .filter(|(k, _)| k.as_str() != "text")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    content::validate(text, Some(&Value::Object(rest))).map_err(|e| {
        let field = e.field.strip_prefix("rcs.").unwrap_or(&e.field);
        format!("contentMessage.{field}: {}", e.reason)
    })?;
    let expire_time = match value.get("expireTime") {
        None => None,
        Some(Value::String(t)) => {
            let at: jiff::Timestamp = t
                .parse()
                .map_err(|e| format!("expireTime is not an RFC 3339 time: {e}"))?;
            if at <= jiff::Timestamp::now() {
                return Err("expireTime is in the past".into());
            }
            Some(t.clone())
        }
        Some(_) => return Err("expireTime must be a string".into()),
    };
    Ok((Value::Object(content.clone()).to_string(), expire_time))
}

async fn revoke(
    State(shared): Sim,
    UrlPath((phone, id)): UrlPath<(String, String)>,
    Query(q): Query<ApiQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admit(&shared, &headers, &q, &phone).await {
        return r;
    }
    let withdrawn = {
        let mut state = shared.state();
        match state.messages.get_mut(id.as_str()) {
            // Withdrawn once: the platform no longer has it, so a second revoke
            // is a 404 like any unknown message.
            Some(m) if *m.phone == *phone && !m.delivered && !m.revoked => {
                m.revoked = !shared.cfg.revoke_ineffective;
                true
            }
            _ => false,
        }
    };
    if withdrawn {
        bump(&shared.counters.revoked);
        if shared.cfg.revoke_answer_lost {
            return rbm_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "The service is currently unavailable.",
            );
        }
        Json(json!({})).into_response()
    } else {
        bump(&shared.counters.revoke_too_late);
        rbm_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Requested entity was not found.",
        )
    }
}

async fn capabilities(
    State(shared): Sim,
    UrlPath(phone): UrlPath<String>,
    Query(q): Query<ApiQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admit(&shared, &headers, &q, &phone).await {
        return r;
    }
    bump(&shared.counters.capability_checks);
    if shared.unreachable(&phone) {
        return rbm_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Requested entity was not found.",
        );
    }
    Json(json!({ "features": [
        "RICHCARD_STANDALONE", "RICHCARD_CAROUSEL", "ACTION_CREATE_CALENDAR_EVENT",
        "ACTION_DIAL", "ACTION_OPEN_URL", "ACTION_SHARE_LOCATION", "ACTION_VIEW_LOCATION"
    ] }))
    .into_response()
}

async fn stats(State(shared): Sim) -> Json<RcsSimStats> {
    Json(RcsSim { shared }.stats())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_key_loads_and_signs_a_verifiable_jwt() {
        let account = ServiceAccount::from_json(DEMO_SERVICE_ACCOUNT.as_bytes()).unwrap();
        assert_eq!(account.client_email, "demo@goniec-demo.iam.example");
        let jwt = account
            .assertion("scope-x", "https://token.example/token", 1_700_000_000)
            .unwrap();
        let decoded = decode_jwt(&jwt).unwrap();
        assert_eq!(decoded.header["alg"], "RS256");
        assert_eq!(decoded.header["typ"], "JWT");
        assert_eq!(decoded.header["kid"], "goniec-demo-key-1");
        assert_eq!(decoded.claims["iss"], "demo@goniec-demo.iam.example");
        assert_eq!(decoded.claims["scope"], "scope-x");
        assert_eq!(decoded.claims["aud"], "https://token.example/token");
        assert_eq!(decoded.claims["iat"], 1_700_000_000u64);
        assert_eq!(decoded.claims["exp"], 1_700_003_600u64);
        let key = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, account.public_key_der());
        key.verify(decoded.signed.as_bytes(), &decoded.signature)
            .unwrap();
        let mut tampered = decoded.signed.clone().into_bytes();
        tampered[5] ^= 1;
        assert!(key.verify(&tampered, &decoded.signature).is_err());
    }

    #[test]
    fn unreachable_share_is_stable_and_roughly_right() {
        let shared_cfg = RcsSimConfig {
            unreachable_share: 0.3,
            unreachable_prefixes: vec!["+4860".into()],
            ..RcsSimConfig::default()
        };
        let share = shared_cfg.unreachable_share;
        let pick = |phone: &str| (fnv1a(phone.as_bytes()) % 10_000) < (share * 10_000.0) as u64;
        let n = (0..10_000)
            .filter(|i| pick(&format!("+48500{i:06}")))
            .count();
        assert!((2_500..3_500).contains(&n), "{n}");
        assert_eq!(pick("+48500100200"), pick("+48500100200"));
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn send_bodies_are_checked() {
        let ok = br#"{"contentMessage":{"text":"hi"}}"#;
        assert_eq!(
            read_message(ok).unwrap(),
            (r#"{"text":"hi"}"#.to_string(), None)
        );
        let err = read_message(br#"{"contentMessage":{"text":"hi","richCard":{}}}"#).unwrap_err();
        assert!(err.starts_with("contentMessage.richCard"), "{err}");
        assert!(read_message(b"{}").unwrap_err().contains("contentMessage"));
        let past = br#"{"contentMessage":{"text":"hi"},"expireTime":"2020-01-01T00:00:00Z"}"#;
        assert!(read_message(past).unwrap_err().contains("past"));
        let later = br#"{"contentMessage":{"text":"hi"},"expireTime":"2999-01-01T00:00:00Z"}"#;
        assert_eq!(
            read_message(later).unwrap().1.as_deref(),
            Some("2999-01-01T00:00:00Z")
        );
    }

    #[test]
    fn demo_key_is_marked_demo_only() {
        let v: Value = serde_json::from_str(DEMO_SERVICE_ACCOUNT).unwrap();
        assert!(v["_comment"].as_str().unwrap().contains("DEMO ONLY"));
        assert!(v["client_email"].as_str().unwrap().ends_with(".example"));
        ServiceAccount::from_json(DEMO_SERVICE_ACCOUNT.as_bytes()).unwrap();
    }
}
