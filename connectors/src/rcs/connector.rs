//! The RBM [`Connector`]: one pooled HTTP client, bearer tokens from
//! [`TokenSource`], and every platform answer classified once, here.
//!
//! * **Send**: `POST {base}/v1/phones/{E.164}/agentMessages?messageId={id}&agentId={agent}`
//!   with `{"contentMessage": …, "expireTime": …}`. The Goniec message id is the
//!   RBM message id, so a retry of a message the platform already took is
//!   answered 409 `ALREADY_EXISTS` and counts as success (no duplicate reaches
//!   the phone), and the platform's events carry the id receipts are matched on.
//! * **Answers**: 2xx and 409 → submitted; 404 (the number cannot get RCS) →
//!   `Permanent` [`UNREACHABLE`], remembered for `capability_ttl`, so a fallback
//!   can take over and later sends to the number fail without a request; 401 →
//!   the token is dropped and the send is `Transient`; 429 → `Throttled`
//!   (honouring `Retry-After`); 5xx and connection errors → `Transient`;
//!   timeouts → `Uncertain` (the platform may have the message; the retry is
//!   idempotent anyway); other 4xx → `Permanent` with code
//!   `rcs <status> <platform status>` and the platform's message.
//! * **Capabilities** (`check_capabilities = true`): before the first send to a
//!   number, `GET {base}/v1/phones/{E.164}/capabilities`; 200 reachable, 404
//!   not. Answers are cached per number for `capability_ttl` in a bounded map.
//! * **Revoke**: `DELETE {base}/v1/phones/{E.164}/agentMessages/{id}`: 200 →
//!   withdrawn, 404 → too late (delivered) or unknown.
//! * **Health** (no I/O): `Down` while no token can be had, `Degraded` after
//!   [`DEGRADED_AFTER`] consecutive connection failures, else `Up`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use goniec_core::Channel;

use super::config::Config as RcsConfig;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{ServiceAccount, TokenSource};
use super::reply::{describe, snippet};
use super::{content, encode_component, is_e164, INVALID_MESSAGE, UNREACHABLE};
use crate::{BuildContext, BuildError, Connector, DeliveryError, Health, Outbound, Submitted};
use goniec_core::mask::mask;

const CHANNELS: [Channel; 1] = [Channel::Rcs];

/// Consecutive connection failures (no HTTP answer) after which health is `Degraded`.
pub const DEGRADED_AFTER: u32 = 3;
/// Most numbers in the capability cache; past it, expired answers are dropped,
/// then arbitrary ones.
pub const CAPABILITY_CACHE_MAX: usize = 100_000;

#[derive(Clone, Copy)]
struct Reach {
    reachable: bool,
    until: Instant,
}

/// An RBM connector.
pub struct RcsConnector {
    name: String,
    http: reqwest::Client,
    /// API root without a trailing slash.
    base: String,
    /// The agent id, percent-encoded for query strings.
    agent_q: String,
    tokens: TokenSource,
    check_capabilities: bool,
    capability_ttl: Duration,
    capabilities: Mutex<HashMap<String, Reach>>,
    connection_failures: AtomicU32,
    last_connection_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for RcsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RcsConnector")
            .field("name", &self.name)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A platform answer: status, `Retry-After`, body, and the token it was sent with.
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: bytes::Bytes,
    token: std::sync::Arc<str>,
}

#[derive(Deserialize)]
struct RbmErrorBody {
    error: RbmError,
}

#[derive(Deserialize)]
struct RbmError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

impl RcsConnector {
    /// Builds the connector: reads and parses the service-account key (a bad key
    /// is a [`BuildError::Invalid`] naming the problem) and sets up the HTTP pool.
    /// No request is made until the first send.
    pub fn new(name: &str, cfg: &RcsConfig, _cx: BuildContext) -> Result<Self, BuildError> {
        let invalid = |reason: String| BuildError::Invalid {
            name: name.into(),
            reason,
        };
        let base = cfg.base_url.trim_end_matches('/').to_string();
        check_url(&base).map_err(|e| invalid(format!("`base_url` {:?}: {e}", cfg.base_url)))?;
        if cfg.agent_id.trim().is_empty() {
            return Err(invalid("`agent_id` is empty".into()));
        }
        let account = ServiceAccount::load(&cfg.service_account_key)
            .map_err(|e| invalid(format!("`service_account_key`: {e}")))?;
        let token_uri = cfg
            .token_uri
            .clone()
            .or_else(|| account.token_uri.clone())
            .ok_or_else(|| {
                invalid(format!(
                    "no token endpoint: {} has no `token_uri`; set `token_uri`",
                    cfg.service_account_key.display()
                ))
            })?;
        check_url(&token_uri).map_err(|e| invalid(format!("token URI {token_uri:?}: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .pool_max_idle_per_host(cfg.max_connections as usize)
            .user_agent(concat!("goniec/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(format!("HTTP client: {}", describe(&e))))?;
        let tokens = TokenSource::new(account, token_uri, cfg.scope.clone(), http.clone());
        Ok(RcsConnector {
            name: name.into(),
            http,
            base,
            agent_q: encode_component(&cfg.agent_id),
            tokens,
            check_capabilities: cfg.check_capabilities,
            capability_ttl: cfg.capability_ttl,
            capabilities: Mutex::new(HashMap::new()),
            connection_failures: AtomicU32::new(0),
            last_connection_error: Mutex::new(None),
        })
    }

    /// The token source (its request count is a useful metric).
    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    /// Asks the platform whether `phone` (E.164) can receive RCS from this agent,
    /// and caches the answer for `capability_ttl`.
    pub async fn check_capability(&self, phone: &str) -> Result<bool, DeliveryError> {
        let url = format!(
            "{}/v1/phones/{}/capabilities?requestId={}&agentId={}",
            self.base,
            encode_component(phone),
            ulid::Ulid::new(),
            self.agent_q
        );
        let answer = self.call(Method::GET, &url, None).await?;
        match answer.status {
            s if s.is_success() => {
                self.remember(phone, true);
                Ok(true)
            }
            StatusCode::NOT_FOUND => {
                self.remember(phone, false);
                Ok(false)
            }
            _ => Err(self.refusal(&answer)),
        }
    }

    fn cached_reach(&self, phone: &str) -> Option<bool> {
        let cache = self.capabilities.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(phone)
            .filter(|r| Instant::now() < r.until)
            .map(|r| r.reachable)
    }

    fn remember(&self, phone: &str, reachable: bool) {
        let now = Instant::now();
        let mut cache = self.capabilities.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CAPABILITY_CACHE_MAX && !cache.contains_key(phone) {
            cache.retain(|_, r| now < r.until);
            if cache.len() >= CAPABILITY_CACHE_MAX {
                // All fresh: drop a tenth, whichever; it is only a cache.
                let drop: Vec<String> = cache
                    .keys()
                    .take(CAPABILITY_CACHE_MAX / 10)
                    .cloned()
                    .collect();
                for key in drop {
                    cache.remove(&key);
                }
            }
        }
        cache.insert(
            phone.to_string(),
            Reach {
                reachable,
                until: now + self.capability_ttl,
            },
        );
    }

    /// Sends one request with the current token; errors are the token's or the
    /// connection's. Any HTTP answer comes back as an [`Answer`].
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Answer, DeliveryError> {
        let token = self.tokens.token().await?;
        let mut request = self.http.request(method, url).bearer_auth(&token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Err(self.connection_failed(&e)),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Err(self.connection_failed(&e)),
        };
        self.connection_failures.store(0, Ordering::Relaxed);
        Ok(Answer {
            status,
            retry_after,
            body,
            token,
        })
    }

    fn connection_failed(&self, e: &reqwest::Error) -> DeliveryError {
        let reason = format!("RBM platform {}: {}", self.base, describe(e));
        self.connection_failures.fetch_add(1, Ordering::Relaxed);
        *self
            .last_connection_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
        if e.is_connect() {
            // Nothing was sent: the platform is unreachable, no message is at fault
            // (retried without using up its attempts, like a relay that is down).
            DeliveryError::Unavailable { reason }
        } else if e.is_timeout() {
            DeliveryError::Uncertain { reason }
        } else {
            DeliveryError::Transient { reason }
        }
    }

    /// The error for an answer that is not a success (nor a 404/409 the caller
    /// handles); a 401 also drops the token it was sent with.
    fn refusal(&self, answer: &Answer) -> DeliveryError {
        if answer.status == StatusCode::UNAUTHORIZED {
            self.tokens.invalidate(&answer.token);
        }
        classify(answer.status, answer.retry_after, &answer.body)
    }

    fn unreachable(&self, phone: &str, why: &str) -> DeliveryError {
        tracing::debug!(connector = %self.name, to = %mask(phone), why, "Number cannot receive RCS.");
        DeliveryError::Permanent {
            code: UNREACHABLE.into(),
            reason: format!("the number cannot receive RCS from this agent ({why})"),
        }
    }
}

/// Classifies a platform answer other than success, once. Pure, for the table test.
fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> DeliveryError {
    let (platform_status, message) = match serde_json::from_slice::<RbmErrorBody>(body) {
        Ok(b) => (
            b.error.status,
            b.error.message.unwrap_or_else(|| snippet(body)),
        ),
        Err(_) => (None, snippet(body)),
    };
    let described = match &platform_status {
        Some(s) => format!("{} {s}: {message}", status.as_u16()),
        None => format!("{status}: {message}"),
    };
    match status {
        StatusCode::TOO_MANY_REQUESTS => DeliveryError::Throttled { retry_after },
        StatusCode::UNAUTHORIZED => DeliveryError::Transient {
            reason: format!(
                "the platform refused the access token ({described}); a new one is fetched"
            ),
        },
        StatusCode::REQUEST_TIMEOUT => DeliveryError::Transient { reason: described },
        s if s.is_server_error() => DeliveryError::Transient { reason: described },
        s => DeliveryError::Permanent {
            code: match platform_status {
                Some(p) => format!("rcs {} {p}", s.as_u16()),
                None => format!("rcs {}", s.as_u16()),
            },
            reason: message,
        },
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    Some(
        SystemTime::from(at)
            .duration_since(SystemTime::now())
            .unwrap_or_default(),
    )
}

fn check_url(s: &str) -> Result<(), String> {
    let url = url::Url::parse(s).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// URL with a host".into());
    }
    Ok(())
}

/// RFC 3339 UTC, whole seconds (what `expireTime` takes).
fn rfc3339(t: SystemTime) -> Option<String> {
    let ts = jiff::Timestamp::try_from(t).ok()?;
    Some(
        jiff::Timestamp::from_second(ts.as_second())
            .ok()?
            .to_string(),
    )
}

#[async_trait]
impl Connector for RcsConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &CHANNELS
    }

    async fn submit(&self, msg: &Outbound) -> Result<Submitted, DeliveryError> {
        let invalid = |reason: String| DeliveryError::Permanent {
            code: INVALID_MESSAGE.into(),
            reason,
        };
        let content = content::content_message(msg.text.as_deref(), msg.rcs.as_ref())
            .map_err(|e| invalid(e.to_string()))?;
        if !is_e164(&msg.to) {
            return Err(invalid(
                "the recipient is not an E.164 number such as +48500100200".into(),
            ));
        }
        let cached = self.cached_reach(&msg.to);
        if cached == Some(false) {
            return Err(self.unreachable(&msg.to, "cached answer"));
        }
        if cached.is_none() && self.check_capabilities && !self.check_capability(&msg.to).await? {
            return Err(self.unreachable(&msg.to, "capability check"));
        }
        let mut body = json!({ "contentMessage": content });
        if let Some(until) = msg.valid_until {
            let at = rfc3339(until).ok_or_else(|| invalid("valid_until is out of range".into()))?;
            body["expireTime"] = Value::String(at);
        }
        let url = format!(
            "{}/v1/phones/{}/agentMessages?messageId={}&agentId={}",
            self.base,
            encode_component(&msg.to),
            encode_component(&msg.message_id),
            self.agent_q
        );
        let answer = self.call(Method::POST, &url, Some(&body)).await?;
        match answer.status {
            s if s.is_success() => {
                self.remember(&msg.to, true);
                Ok(Submitted::by_message_id(msg.message_id.clone()))
            }
            StatusCode::CONFLICT => {
                // ALREADY_EXISTS: an earlier attempt of this very message was
                // accepted (its answer was lost); the platform keeps one copy.
                tracing::debug!(connector = %self.name, message_id = %msg.message_id,
                    "RBM already has this message; counted as submitted.");
                Ok(Submitted::by_message_id(msg.message_id.clone()))
            }
            StatusCode::NOT_FOUND => {
                self.remember(&msg.to, false);
                Err(self.unreachable(&msg.to, "the platform answered 404"))
            }
            _ => Err(self.refusal(&answer)),
        }
    }

    async fn revoke(&self, msg: &Outbound) -> Result<bool, DeliveryError> {
        let url = format!(
            "{}/v1/phones/{}/agentMessages/{}?agentId={}",
            self.base,
            encode_component(&msg.to),
            encode_component(&msg.message_id),
            self.agent_q
        );
        let answer = self.call(Method::DELETE, &url, None).await?;
        match answer.status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            StatusCode::TOO_MANY_REQUESTS => Err(DeliveryError::Transient {
                reason: "the platform throttled the revoke (429)".into(),
            }),
            _ => Err(self.refusal(&answer)),
        }
    }

    fn health(&self) -> Health {
        if let Some(why) = self.tokens.unusable() {
            return Health::Down(why);
        }
        if self.connection_failures.load(Ordering::Relaxed) >= DEGRADED_AFTER {
            let why = self
                .last_connection_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_default();
            return Health::Degraded(why);
        }
        Health::Up
    }

    async fn close(&self) {
        // Nothing to drain: requests in flight finish with their callers, and
        // the pool closes its idle connections when the connector is dropped.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rbm(code: u16, status: &str, message: &str) -> Vec<u8> {
        json!({ "error": { "code": code, "message": message, "status": status } })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn platform_answers_are_classified_once() {
        let s = |n: u16| StatusCode::from_u16(n).unwrap();
        let cases: Vec<(u16, Vec<u8>, DeliveryError)> = vec![
            (
                429,
                rbm(429, "RESOURCE_EXHAUSTED", "quota"),
                DeliveryError::Throttled {
                    retry_after: Some(Duration::from_secs(3)),
                },
            ),
            (
                400,
                rbm(400, "INVALID_ARGUMENT", "bad card"),
                DeliveryError::Permanent {
                    code: "rcs 400 INVALID_ARGUMENT".into(),
                    reason: "bad card".into(),
                },
            ),
            (
                403,
                rbm(403, "PERMISSION_DENIED", "agent not launched"),
                DeliveryError::Permanent {
                    code: "rcs 403 PERMISSION_DENIED".into(),
                    reason: "agent not launched".into(),
                },
            ),
            (
                400,
                b"<html>oops</html>".to_vec(),
                DeliveryError::Permanent {
                    code: "rcs 400".into(),
                    reason: "<html>oops</html>".into(),
                },
            ),
        ];
        for (status, body, want) in cases {
            assert_eq!(
                classify(s(status), Some(Duration::from_secs(3)), &body),
                want,
                "{status}"
            );
        }
        for status in [500, 502, 503, 504, 408] {
            let got = classify(s(status), None, &rbm(status, "UNAVAILABLE", "try later"));
            assert!(
                matches!(got, DeliveryError::Transient { .. }),
                "{status}: {got:?}"
            );
        }
        let got = classify(s(401), None, &rbm(401, "UNAUTHENTICATED", "expired"));
        assert!(
            matches!(got, DeliveryError::Transient { ref reason } if reason.contains("UNAUTHENTICATED")),
            "{got:?}"
        );
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(120);
        let date = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&later)
            .unwrap();
        h.insert(RETRY_AFTER, date.parse().unwrap());
        let got = retry_after(&h).unwrap();
        assert!(
            got > Duration::from_secs(100) && got <= Duration::from_secs(120),
            "{got:?}"
        );
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn expire_time_is_rfc3339_utc_seconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_772_359_200_900);
        assert_eq!(rfc3339(t).unwrap(), "2026-03-01T10:00:00Z");
    }
}
