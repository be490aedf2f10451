//! What every handler needs before its own work, as extractors: who is
//! asking ([`AuthTenant`], [`AdminAuth`]), the query string ([`ApiQuery`]) and
//! path parameters ([`ApiPath`]),
//! each refusing with problem+json; and the [`timing`] layer that counts and
//! times every request by the route it matched.
//!
//! Authentication comes first in a handler's arguments: axum runs extractors
//! in order, so an unauthenticated request is refused before anything else of
//! it is read.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use goniec_core::Problem;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::{authenticate, bearer_token};
use crate::app::App;
use crate::tenants::TenantCtx;

/// The tenant behind `Authorization: Bearer <key>`, within its request rate.
pub struct AuthTenant(pub Arc<TenantCtx>);

impl FromRequestParts<Arc<App>> for AuthTenant {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        authenticate(app, &parts.headers).map(AuthTenant)
    }
}

/// An operator (`[admin] api_keys`), by `Authorization: Bearer <operator key>`
/// or by a console session cookie; 404 when no operator key is configured.
/// With the cookie, a request that changes anything must also carry the
/// session's `X-CSRF-Token` and, when it says where it comes from (`Origin`),
/// come from this host. A tenant's key, an unknown or expired session: 401.
pub struct AdminAuth(pub crate::operator::Who);

impl FromRequestParts<Arc<App>> for AdminAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        if !app.tenants.admin_enabled() {
            return Err(ApiError::new(
                Problem::NotFound,
                "admin endpoints are off (no `[admin] api_keys`)",
            ));
        }
        use crate::console::sessions::{cookie_token, Refused};
        use crate::operator::Who;
        if let Some(token) = bearer_token(&parts.headers) {
            return match app.tenants.admin_key(token) {
                Some(key) => Ok(AdminAuth(Who(format!("key {key}")))),
                None => Err(ApiError::unauthorized()),
            };
        }
        let token = cookie_token(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        let session = app.console.sessions.get(token).map_err(|r| match r {
            Refused::Expired => ApiError::new(
                Problem::Unauthorized,
                "the console session has expired; log in again",
            ),
            Refused::Unknown => ApiError::unauthorized(),
        })?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            if !same_origin(&parts.headers) {
                return Err(ApiError::new(
                    Problem::Forbidden,
                    "the request comes from another site (Origin)",
                ));
            }
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !session.csrf_ok(sent) {
                return Err(ApiError::new(
                    Problem::Forbidden,
                    "a console request that changes something needs the session's X-CSRF-Token",
                ));
            }
        }
        Ok(AdminAuth(Who(session.who)))
    }
}

/// Whether the request's `Origin`, when it has one, is this host: the `Host`
/// the request was sent to, or the `X-Forwarded-Host` a proxy in front says it
/// was (a proxy may rewrite `Host`). Browsers send `Origin` with every
/// cross-site POST (and `null` where they hide it, which fails here); its
/// absence means a same-site form or a client that is not a browser.
pub fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let Some(origin) = headers.get(axum::http::header::ORIGIN) else {
        return true;
    };
    let origin = origin.to_str().unwrap_or("");
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    if authority.is_empty() {
        return false;
    }
    ["host", "x-forwarded-host"].iter().any(|h| {
        headers
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(authority))
    })
}

/// The query string as `T`; a bad one is `invalid-query` naming its parameter.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// Path parameters as `T`; one that cannot be read (bad percent-encoding) is
/// `not-found`, as no such resource can exist.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(t)) => Ok(ApiPath(t)),
            Err(e) => Err(ApiError::new(Problem::NotFound, e.body_text())),
        }
    }
}

/// Read a query string, naming the parameter a problem is about.
fn query<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(q.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let msg = e.inner().to_string();
        let named = msg.split('`').nth(1).unwrap_or_default();
        let path = e.path().to_string();
        let field = if msg.starts_with("unknown field") || msg.starts_with("missing field") {
            named.to_string()
        } else if path != "." {
            path
        } else {
            String::new()
        };
        let err = ApiError::new(
            Problem::InvalidQuery,
            format!("Failed to deserialize query string: {msg}"),
        );
        if field.is_empty() {
            err
        } else {
            err.field(field)
        }
    })
}

/// The name a route is counted under in `goniec_http_requests_total` and
/// `goniec_http_request_duration_seconds`; `None`: not counted (health, metrics).
fn endpoint(method: &Method, path: &str) -> Option<&'static str> {
    Some(match (method.as_str(), path) {
        ("POST", "/v1/messages") => "create",
        ("GET", "/v1/messages") => "history",
        ("POST", "/v1/messages/batch") => "create_batch",
        ("GET", "/v1/messages/{id}") => "show",
        ("DELETE", "/v1/messages/{id}") => "cancel",
        ("POST", "/v1/opt-outs") => "opt_out",
        ("DELETE", "/v1/opt-outs/{to}") => "opt_in",
        ("POST", "/v1/webhooks/email-bounce") => "email_bounce",
        ("POST", "/v1/webhooks/rcs") => "rcs_event",
        ("GET", "/v1/admin/dead-letters") => "admin_dead_letters",
        ("GET", "/v1/admin/held") => "admin_held",
        ("POST", "/v1/admin/held/{id}/{action}") => "admin_decide_held",
        ("GET", "/v1/admin/suppressions") => "admin_suppressions",
        ("POST", "/v1/admin/suppressions") => "admin_suppress",
        ("DELETE", "/v1/admin/suppressions/{tenant}/{address}") => "admin_unsuppress",
        _ => return None,
    })
}

/// Count and time every request of a known route, whatever its answer.
pub async fn timing(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let name = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| endpoint(req.method(), p.as_str()));
    let start = Instant::now();
    let resp = next.run(req).await;
    if let Some(name) = name {
        let m = &app.metrics;
        m.http_requests
            .with_label_values(&[name, resp.status().as_str()])
            .inc();
        m.http_duration
            .with_label_values(&[name])
            .observe(start.elapsed().as_secs_f64());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Q {
        lane: String,
        limit: Option<usize>,
    }

    #[test]
    fn query_problems_name_the_parameter() {
        let field = |q: &str| query::<Q>(q).unwrap_err().field;
        assert_eq!(field("lane=sms&limit=x").as_deref(), Some("limit"));
        assert_eq!(field("lane=sms&bogus=1").as_deref(), Some("bogus"));
        assert_eq!(field("limit=1").as_deref(), Some("lane"));
        let e = query::<Q>("limit=1").unwrap_err();
        assert_eq!((e.status, e.code), (422, "invalid-query"));
        assert!(query::<Q>("lane=sms&limit=5").is_ok());
    }
}

#[cfg(test)]
mod origin_tests {
    use super::same_origin;
    use axum::http::HeaderMap;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_origin_must_be_this_host_when_given() {
        assert!(same_origin(&headers(&[("host", "gw:8080")])));
        assert!(same_origin(&headers(&[
            ("host", "gw:8080"),
            ("origin", "http://gw:8080")
        ])));
        assert!(same_origin(&headers(&[
            ("host", "10.0.0.5:8080"),
            ("x-forwarded-host", "console.example.pl"),
            ("origin", "https://console.example.pl")
        ])));
        for bad in [
            "null",
            "https://evil.example",
            "http://gw:8081",
            "gw:8080",
            "",
        ] {
            assert!(
                !same_origin(&headers(&[("host", "gw:8080"), ("origin", bad)])),
                "{bad}"
            );
        }
        assert!(!same_origin(&headers(&[("origin", "http://gw:8080")])));
    }
}
