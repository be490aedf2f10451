//! The HTTP API: routes, authentication, body limits, health and metrics.

pub mod admin;
pub mod bounce;
pub mod error;
pub mod messages;
pub mod rcs;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Json;

use crate::app::{App, TenantCtx};
use error::ApiError;

/// The API router.
pub fn router(app: Arc<App>) -> axum::Router {
    // The body limit is enforced twice: by Content-Length before reading (413 at
    // once) and while buffering chunked bodies.
    let limit = app.cfg.server.max_body.bytes() as usize;
    axum::Router::new()
        .route(
            "/v1/messages",
            post(messages::create).get(messages::history),
        )
        .route("/v1/messages/batch", post(messages::create_batch))
        .route(
            "/v1/messages/{id}",
            get(messages::show).delete(messages::cancel),
        )
        .route("/v1/admin/dead-letters", get(admin::dead_letters))
        .route("/v1/admin/held", get(admin::held))
        .route(
            "/v1/admin/suppressions",
            get(admin::suppressions).post(admin::suppress),
        )
        .route(
            "/v1/admin/suppressions/{tenant}/{address}",
            delete(admin::unsuppress),
        )
        .route("/v1/admin/held/{id}/{action}", post(admin::decide))
        .route("/v1/opt-outs", post(messages::opt_out))
        .route("/v1/webhooks/email-bounce", post(bounce::email_bounce))
        .route("/v1/webhooks/rcs", post(rcs::event))
        .route("/v1/opt-outs/{to}", delete(messages::opt_in))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(404, "not-found", "no such endpoint") })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// The tenant behind the `Authorization: Bearer` header.
pub fn authenticate(app: &App, headers: &HeaderMap) -> Result<Arc<TenantCtx>, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::unauthorized)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(ApiError::unauthorized)?;
    let tenant = app
        .tenants
        .authenticate(token)
        .ok_or_else(ApiError::unauthorized)?;
    if let Some(l) = &tenant.request_limiter {
        if let Err(not_until) = l.check() {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            return Err(ApiError::new(
                429,
                "rate-limited",
                format!(
                    "over this tenant's request rate; retry in {} ms",
                    wait.as_millis()
                ),
            )
            .retry_after(wait.as_secs_f64().ceil().max(1.0) as u64));
        }
    }
    Ok(tenant)
}

/// Refuse bodies over the limit (by Content-Length, before reading) and non-JSON
/// content types; return the body bytes.
pub fn check_body(
    app: &App,
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, ApiError> {
    let limit = app.cfg.server.max_body.bytes();
    let too_large = || {
        ApiError::new(
            413,
            "body-too-large",
            format!("request body is over the {limit}-byte limit"),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit {
            return Err(too_large());
        }
    }
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json" && !mime.ends_with("+json") {
            return Err(ApiError::new(
                415,
                "unsupported-media-type",
                format!("send JSON (`Content-Type: application/json`), not `{mime}`"),
            ));
        }
    }
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::new(
                400,
                "unreadable-body",
                format!("could not read the request body: {e}"),
            )
        }
    })
}

/// Count and time a request.
pub fn observe(app: &App, endpoint: &str, start: Instant, resp: &Response) {
    let m = &app.metrics;
    m.http_requests
        .with_label_values(&[endpoint, resp.status().as_str()])
        .inc();
    m.http_duration
        .with_label_values(&[endpoint])
        .observe(start.elapsed().as_secs_f64());
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when: not shutting down, the store answers, and every routed channel has a
/// connector that is up.
async fn readyz(State(app): State<Arc<App>>) -> Response {
    let mut problems = Vec::new();
    if app.flags.shutting_down() {
        problems.push("shutting down".to_string());
    }
    if !app.flags.store_up() {
        problems.push("store unreachable".to_string());
    }
    for ch in app.router.channels() {
        if !app.router.connectors_for(ch).any(|c| c.health().is_up()) {
            problems.push(format!("every {ch} connector is down"));
        }
    }
    // Impaired but not a reason to take traffic away: messages still go out.
    let degraded = crate::receipts::unmatched_connectors(&app.metrics.receipt_matching);
    let mut body = serde_json::json!({"ready": problems.is_empty()});
    if !problems.is_empty() {
        body["problems"] = serde_json::json!(problems);
    }
    if !degraded.is_empty() {
        body["degraded"] = serde_json::json!(degraded);
    }
    let code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}
