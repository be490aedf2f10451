//! OAuth2 for RBM with a Google service account (RFC 7523 JWT bearer grant).
//!
//! The key file is read and its RSA key parsed when the connector is built, so a
//! bad key stops the gateway at start rather than failing every send. A token is
//! obtained by signing a JWT (`RS256`, `kid` = the key id) with the account's
//! key and posting it to the token endpoint; the answer's bearer token is cached
//! until shortly before it expires.
//!
//! Refreshing is single-flight: the fast path is a read lock and a clone of an
//! `Arc<str>`; a caller finding the token stale takes an async mutex and checks
//! again, so however many senders notice at once, one request goes out and the
//! others use its result (or its error). A token that is due for refresh but
//! not yet expired keeps serving the callers that find a refresh in flight.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{KeyPair as _, RsaKeyPair, RSA_PKCS1_SHA256};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::DeliveryError;

/// The OAuth2 grant type of a signed JWT assertion (RFC 7523).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Lifetime asked for in the JWT (`exp - iat`); Google allows at most an hour.
const ASSERTION_LIFETIME: u64 = 3600;
/// Lifetime assumed when the token endpoint does not say (`expires_in` absent).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Why a service-account key cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read the service-account key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not the JSON of a service-account key.
    #[error("the service-account key is not valid JSON of a key file: {0}")]
    Json(String),
    /// `private_key` is not a PKCS#8 PEM block.
    #[error("`private_key` is not a PKCS#8 PEM (\"-----BEGIN PRIVATE KEY-----\"): {0}")]
    Pem(String),
    /// ring refused the RSA key (wrong type, too small, inconsistent).
    #[error("`private_key` is not a usable RSA key: {0}")]
    Rejected(String),
    /// Signing failed (should not happen with a key ring accepted).
    #[error("signing the JWT failed")]
    Sign,
}

#[derive(Deserialize)]
struct KeyFile {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

/// A Google service account: who it is and its RSA signing key.
pub struct ServiceAccount {
    /// The account's e-mail: the JWT's `iss`.
    pub client_email: String,
    /// The key's id: the JWT header's `kid` (omitted when the file has none).
    pub private_key_id: Option<String>,
    /// The token endpoint the key file names, if any.
    pub token_uri: Option<String>,
    key: RsaKeyPair,
    rng: SystemRandom,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Reads and parses a service-account key file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&bytes)
    }

    /// Parses the JSON of a service-account key file.
    pub fn from_json(json: &[u8]) -> Result<Self, KeyError> {
        let file: KeyFile =
            serde_json::from_slice(json).map_err(|e| KeyError::Json(e.to_string()))?;
        if file.client_email.trim().is_empty() {
            return Err(KeyError::Json("`client_email` is empty".into()));
        }
        let der = PrivatePkcs8KeyDer::from_pem_slice(file.private_key.as_bytes())
            .map_err(|e| KeyError::Pem(e.to_string()))?;
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(ServiceAccount {
            client_email: file.client_email,
            private_key_id: file.private_key_id.filter(|k| !k.is_empty()),
            token_uri: file.token_uri.filter(|u| !u.is_empty()),
            key,
            rng: SystemRandom::new(),
        })
    }

    /// The public key (DER `RSAPublicKey`), for verifying this account's
    /// signatures with `ring::signature::RSA_PKCS1_2048_8192_SHA256`.
    pub fn public_key_der(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// A signed JWT assertion asking `audience` (the token endpoint) for `scope`,
    /// issued at `issued_at` (Unix seconds) and valid for an hour.
    pub fn assertion(
        &self,
        scope: &str,
        audience: &str,
        issued_at: u64,
    ) -> Result<String, KeyError> {
        let mut header = json!({ "alg": "RS256", "typ": "JWT" });
        if let Some(kid) = &self.private_key_id {
            header["kid"] = Value::String(kid.clone());
        }
        let claims = json!({
            "iss": self.client_email,
            "scope": scope,
            "aud": audience,
            "iat": issued_at,
            "exp": issued_at + ASSERTION_LIFETIME,
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &self.rng,
                signed.as_bytes(),
                &mut signature,
            )
            .map_err(|_| KeyError::Sign)?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// A JWT taken apart (signature not checked): what a token endpoint verifies.
#[derive(Debug, Clone)]
pub struct DecodedJwt {
    /// The header JSON.
    pub header: Value,
    /// The claims JSON.
    pub claims: Value,
    /// `header.claims` as sent: the bytes the signature covers.
    pub signed: String,
    /// The raw signature.
    pub signature: Vec<u8>,
}

/// Splits and decodes a compact JWT; errors say which part is malformed.
pub fn decode_jwt(jwt: &str) -> Result<DecodedJwt, String> {
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWT (three base64url parts separated by dots)".into());
    };
    let json = |part: &str, what: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| format!("the JWT {what} is not base64url: {e}"))?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the JWT {what} is not JSON: {e}"))?;
        if value.is_object() {
            Ok(value)
        } else {
            Err(format!("the JWT {what} is not a JSON object"))
        }
    };
    Ok(DecodedJwt {
        header: json(h, "header")?,
        claims: json(c, "claims")?,
        signed: format!("{h}.{c}"),
        signature: URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|e| format!("the JWT signature is not base64url: {e}"))?,
    })
}

#[derive(Clone)]
struct CachedToken {
    value: Arc<str>,
    refresh_at: Instant,
    expires_at: Instant,
}

struct Failure {
    at: Instant,
    error: DeliveryError,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    token_type: Option<String>,
}

#[derive(Deserialize)]
struct OAuthError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// Bearer tokens for one service account: cached, refreshed single-flight.
pub struct TokenSource {
    account: ServiceAccount,
    token_uri: String,
    scope: String,
    http: reqwest::Client,
    cached: RwLock<Option<CachedToken>>,
    refresh: tokio::sync::Mutex<()>,
    failure: RwLock<Option<Failure>>,
    requests: AtomicU64,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("account", &self.account)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// Tokens for `account` from `token_uri`, for `scope`, over `http`.
    pub fn new(
        account: ServiceAccount,
        token_uri: String,
        scope: String,
        http: reqwest::Client,
    ) -> Self {
        TokenSource {
            account,
            token_uri,
            scope,
            http,
            cached: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
            failure: RwLock::new(None),
            requests: AtomicU64::new(0),
        }
    }

    /// The service account tokens are asked for.
    pub fn account(&self) -> &ServiceAccount {
        &self.account
    }

    /// Token requests made so far (successful or not).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn current(&self) -> Option<CachedToken> {
        self.cached
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A bearer token, from the cache while it is fresh. Errors are
    /// [`DeliveryError::Unavailable`]: no message is at fault.
    pub async fn token(&self) -> Result<Arc<str>, DeliveryError> {
        let now = Instant::now();
        if let Some(t) = self.current() {
            if now < t.refresh_at {
                return Ok(t.value);
            }
            if now < t.expires_at {
                // Due for refresh but still good: one caller refreshes, the others
                // keep using it meanwhile, and a failed refresh is no outage yet.
                let Ok(_guard) = self.refresh.try_lock() else {
                    return Ok(t.value);
                };
                if let Some(fresh) = self.current().filter(|c| Instant::now() < c.refresh_at) {
                    return Ok(fresh.value);
                }
                return match self.fetch().await {
                    Ok(v) => Ok(v),
                    Err(e) => {
                        tracing::warn!(error = %e, "RBM token refresh failed; the current token is still valid.");
                        Ok(t.value)
                    }
                };
            }
        }
        let waiting_since = Instant::now();
        let _guard = self.refresh.lock().await;
        if let Some(t) = self.current().filter(|c| Instant::now() < c.expires_at) {
            return Ok(t.value);
        }
        // A request made while we waited failed: share its answer rather than
        // queueing one request per waiting sender against a failing endpoint.
        if let Some(f) = self
            .failure
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|f| f.at >= waiting_since)
        {
            return Err(f.error.clone());
        }
        self.fetch().await
    }

    /// Forget `rejected` (the platform answered 401 to it), so the next
    /// [`token`](Self::token) asks for a new one; a token already replaced by
    /// another caller is left alone, so many 401s cause one refresh.
    pub fn invalidate(&self, rejected: &str) {
        let mut cached = self.cached.write().unwrap_or_else(|p| p.into_inner());
        if cached.as_ref().is_some_and(|t| &*t.value == rejected) {
            *cached = None;
        }
    }

    /// Why no token can be had, when the last request failed and no valid token
    /// is left. Cheap: no I/O.
    pub fn unusable(&self) -> Option<String> {
        let failure = self.failure.read().unwrap_or_else(|p| p.into_inner());
        let failure = failure.as_ref()?;
        let valid = self
            .current()
            .is_some_and(|t| Instant::now() < t.expires_at);
        (!valid).then(|| failure.error.to_string())
    }

    /// One token request; the result is cached or remembered as the failure.
    async fn fetch(&self) -> Result<Arc<str>, DeliveryError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let asked_at = Instant::now();
        match self.request().await {
            Ok((value, lifetime)) => {
                let value: Arc<str> = value.into();
                // A token endpoint's word is not trusted past a day (and a huge
                // `expires_in` must not overflow the clock).
                let lifetime = lifetime.min(Duration::from_secs(24 * 3600));
                // Refresh when less than min(60 s, a tenth of the lifetime) is left.
                let margin = (lifetime / 10).min(Duration::from_secs(60));
                let token = CachedToken {
                    value: value.clone(),
                    refresh_at: asked_at + lifetime - margin,
                    expires_at: asked_at + lifetime,
                };
                *self.cached.write().unwrap_or_else(|p| p.into_inner()) = Some(token);
                *self.failure.write().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(value)
            }
            Err(error) => {
                *self.failure.write().unwrap_or_else(|p| p.into_inner()) = Some(Failure {
                    at: Instant::now(),
                    error: error.clone(),
                });
                Err(error)
            }
        }
    }

    async fn request(&self) -> Result<(String, Duration), DeliveryError> {
        let unavailable = |reason: String| DeliveryError::Unavailable { reason };
        let issued_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let jwt = self
            .account
            .assertion(&self.scope, &self.token_uri, issued_at)
            .map_err(|e| unavailable(format!("cannot sign the token request: {e}")))?;
        let response = self
            .http
            .post(&self.token_uri)
            .form(&[
                ("grant_type", JWT_BEARER_GRANT),
                ("assertion", jwt.as_str()),
            ])
            .send()
            .await
            .map_err(|e| {
                unavailable(format!(
                    "token endpoint {} unreachable: {}",
                    self.token_uri,
                    super::reply::describe(&e)
                ))
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            unavailable(format!(
                "token endpoint {}: reading the answer failed: {}",
                self.token_uri,
                super::reply::describe(&e)
            ))
        })?;
        if status.is_success() {
            let answer: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
                unavailable(format!(
                    "token endpoint {} answered {status} without a token: {e}",
                    self.token_uri
                ))
            })?;
            if let Some(kind) = answer
                .token_type
                .as_deref()
                .filter(|t| !t.eq_ignore_ascii_case("bearer"))
            {
                return Err(unavailable(format!(
                    "token endpoint {} issued a `{kind}` token, not a bearer token",
                    self.token_uri
                )));
            }
            if answer.access_token.is_empty() {
                return Err(unavailable(format!(
                    "token endpoint {} issued an empty token",
                    self.token_uri
                )));
            }
            let lifetime = answer
                .expires_in
                .map(Duration::from_secs)
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_TOKEN_LIFETIME);
            return Ok((answer.access_token, lifetime));
        }
        if status.is_client_error() {
            let detail = match serde_json::from_slice::<OAuthError>(&body) {
                Ok(OAuthError {
                    error: Some(error),
                    error_description,
                }) => match error_description {
                    Some(d) => format!("{error}: {d}"),
                    None => error,
                },
                _ => super::reply::snippet(&body),
            };
            return Err(unavailable(format!(
                "token endpoint {} refused service account {} ({status}, {detail}); \
                 check the key file, that the key is not revoked and the clock is right",
                self.token_uri, self.account.client_email
            )));
        }
        Err(unavailable(format!(
            "token endpoint {} answered {status}",
            self.token_uri
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_key_files_say_what_is_wrong() {
        let err = |json: &str| ServiceAccount::from_json(json.as_bytes()).unwrap_err();
        assert!(matches!(err("not json"), KeyError::Json(_)));
        assert!(matches!(
            err(r#"{"client_email":"a@b"}"#),
            KeyError::Json(_)
        ));
        let garbage = r#"{"client_email":"a@b","private_key":"hello"}"#;
        assert!(matches!(err(garbage), KeyError::Pem(_)));
        let not_rsa = r#"{"client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHn0s1hKXg5iQ7f8sHf7v0sF2hn8x9k2iQ0qR7y0gD5V\n-----END PRIVATE KEY-----\n"}"#;
        assert!(matches!(err(not_rsa), KeyError::Rejected(_)));
        let missing = ServiceAccount::load(Path::new("/nonexistent/key.json")).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/key.json"));
    }

    #[test]
    fn malformed_jwts_are_named() {
        assert!(decode_jwt("a.b").unwrap_err().contains("three"));
        assert!(decode_jwt("a.b.c.d").unwrap_err().contains("three"));
        assert!(decode_jwt("!!.e30.AA").unwrap_err().contains("header"));
        assert!(decode_jwt("e30.bm90anNvbg.AA")
            .unwrap_err()
            .contains("claims"));
    }
}
