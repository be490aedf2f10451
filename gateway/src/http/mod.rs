//! The HTTP API: routes, authentication, body limits, health and metrics.

pub mod admin;
pub mod bounce;
pub mod campaigns;
pub mod console;
pub mod error;
pub mod extract;
pub mod limits;
pub mod links;
pub mod messages;
pub mod openapi;
pub mod rcs;
pub mod serve;
pub mod templates;

use goniec_core::Problem;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json};

use crate::app::App;
use crate::tenants::TenantCtx;
use error::ApiError;
use limits::Limits;

/// The API router. Handlers authenticate with [`extract::AuthTenant`] or
/// [`extract::AdminAuth`] first, then read bodies through [`limits::Incoming`]
/// (which reaches `limits` as a request extension); [`extract::timing`] counts
/// and times every matched route.
pub fn router(app: Arc<App>, limits: Arc<Limits>) -> axum::Router {
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
        .route(
            "/v1/templates",
            post(templates::create).get(templates::list),
        )
        .route(
            "/v1/templates/{id}",
            get(templates::get)
                .put(templates::update)
                .delete(templates::delete),
        )
        .route("/v1/templates/{id}/preview", post(templates::preview))
        .route(
            "/v1/campaigns",
            post(campaigns::create).get(campaigns::list),
        )
        .route("/v1/campaigns/{id}", get(campaigns::show))
        .route(
            "/v1/campaigns/{id}/audience",
            axum::routing::put(campaigns::audience),
        )
        .route("/v1/campaigns/{id}/rejects", get(campaigns::rejects))
        .route("/v1/campaigns/{id}/stream", get(campaigns::stream))
        .route("/v1/campaigns/{id}/events", post(campaigns::events))
        .route(
            "/v1/campaigns/{id}/recipients/{client_ref}/events",
            post(campaigns::event),
        )
        .route("/v1/campaigns/{id}/{action}", post(campaigns::action))
        .route("/v1/reports/campaigns/{id}", get(campaigns::report))
        .route("/v1/reports/channels", get(campaigns::channels))
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
        .route(
            "/v1/admin/dead-letters/{lane}/{id}/{action}",
            post(admin::dead_letter_action),
        )
        .route("/v1/admin/pauses", get(admin::pauses))
        .route(
            "/v1/admin/pauses/{kind}/{name}",
            axum::routing::put(admin::pause).delete(admin::resume),
        )
        .route("/v1/admin/audit", get(admin::audit))
        .route("/v1/admin/overview", get(console::overview))
        .route("/v1/admin/stream", get(console::stream))
        .route("/v1/opt-outs", post(messages::opt_out))
        .route("/v1/webhooks/email-bounce", post(bounce::email_bounce))
        .route("/v1/webhooks/rcs", post(rcs::event))
        .route("/v1/opt-outs/{to}", delete(messages::opt_in))
        .route("/l/{code}", get(links::follow))
        .route("/console", get(console::page))
        .route("/console/login", post(console::login))
        .route("/console/logout", post(console::logout))
        .route("/console/console.js", get(console::script))
        .route("/console/console.css", get(console::style))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/docs", get(openapi::docs))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(Problem::NotFound, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                Problem::MethodNotAllowed,
                "this endpoint does not take that method",
            )
        })
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            extract::timing,
        ))
        .layer(Extension(limits))
        // No handler uses axum's buffering extractors (`Bytes`, `Json`), which read
        // before the handler can authenticate; should one appear, this keeps what
        // it can buffer small.
        .layer(DefaultBodyLimit::max(limits::SMALL_BODY as usize))
        .with_state(app)
}

/// The token of an `Authorization: Bearer <token>` header. The scheme is
/// case-insensitive (RFC 9110 §11.1), so `bearer` and `BEARER` work on every
/// route alike.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The tenant behind the `Authorization: Bearer` header.
pub fn authenticate(app: &App, headers: &HeaderMap) -> Result<Arc<TenantCtx>, ApiError> {
    let token = bearer_token(headers).ok_or_else(ApiError::unauthorized)?;
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
                Problem::RateLimited,
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

#[utoipa::path(
    operation_id = "health_healthz",
    get,
    path = "/healthz",
    tag = "health",
    summary = "Liveness",
    responses((status = 200, description = "Alive", body = String)),
    security(())
)]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when: not shutting down, the store answers, and every routed channel has a
/// connector that is up.
#[utoipa::path(
    operation_id = "health_readyz",
    get,
    path = "/readyz",
    tag = "health",
    summary = "Readiness: red while the store or every connector of a channel is down",
    responses((status = 200, description = "Ready (503 when not)", body = String)),
    security(())
)]
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

/// `GET /metrics` on the API listener: 404 when metrics have a listener of
/// their own (`admin.metrics_listen`), else [`metrics_answer`].
#[utoipa::path(
    operation_id = "health_metrics",
    get,
    path = "/metrics",
    tag = "health",
    summary = "Prometheus metrics (behind admin.metrics_keys when set)",
    responses((status = 200, description = "Prometheus text", body = String)),
    security(())
)]
async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if app.cfg.admin.metrics_listen.is_some() {
        return ApiError::new(Problem::NotFound, "no such endpoint").into_response();
    }
    metrics_answer(&app, &headers)
}

/// The Prometheus text, behind `admin.metrics_keys` when any are set: the
/// metrics name tenants and connectors.
pub fn metrics_answer(app: &App, headers: &HeaderMap) -> Response {
    if app.tenants.metrics_protected()
        && !bearer_token(headers).is_some_and(|t| app.tenants.is_metrics_reader(t))
    {
        return ApiError::unauthorized().into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

/// The router of `admin.metrics_listen`: `/metrics` only.
pub fn metrics_router(app: Arc<App>) -> axum::Router {
    async fn serve_metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
        metrics_answer(&app, &headers)
    }
    axum::Router::new()
        .route("/metrics", get(serve_metrics))
        .fallback(|| async { ApiError::new(Problem::NotFound, "no such endpoint") })
        .with_state(app)
}
