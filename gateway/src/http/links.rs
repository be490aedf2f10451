//! `GET /l/{code}`: a tracked link's redirect, with no API key. It answers
//! 302 to the target and records the click on the message (group-committed
//! with other clicks); a person's click also posts a signed `clicked` callback.
//!
//! Software that fetches links ahead of people is told apart and recorded as
//! `prefetch`: `HEAD` requests, the user agents of link-preview fetchers and
//! mail scanners, and fetches from `[links] datacenter_ranges` within a second
//! of the message's delivery. An unknown or expired code gets a plain 404
//! page that says nothing about any link.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::app::App;
use crate::model::{new_message_id_in, now_ms, partition_of, Status};
use crate::store::content::{Click, ClickKind, Link};
use crate::store::{ClickedPayload, Task};
use crate::templates::links::is_code;

/// User-agent fragments (lowercase) of link-preview fetchers and mail
/// security scanners.
const PREFETCH_AGENTS: &[&str] = &[
    "facebookexternalhit",
    "facebot",
    "whatsapp",
    "telegrambot",
    "twitterbot",
    "slackbot",
    "slack-imgproxy",
    "discordbot",
    "linkedinbot",
    "skypeuripreview",
    "googleimageproxy",
    "google-pagerenderer",
    "applebot",
    "bingpreview",
    "microsoft office",
    "ms-office",
    "viber",
    "snapchat",
    "pinterest",
    "embedly",
    "mimecast",
    "proofpoint",
    "barracuda",
    "zscaler",
    "symantec",
    "forcepoint",
    "bot",
    "crawler",
    "spider",
    "curl/",
    "python-requests",
    "go-http-client",
];

/// How long after delivery a fetch from a data centre is taken for a scanner.
const SCANNER_WINDOW_MS: i64 = 1_000;

/// The plain 404 page: the same for every unknown or expired code.
fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        "<!doctype html><title>Link not found</title><p>This link does not exist or has expired.</p>\n",
    )
        .into_response()
}

fn is_prefetch_agent(headers: &HeaderMap) -> bool {
    let Some(ua) = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    else {
        // Browsers always send one.
        return true;
    };
    let ua = ua.to_ascii_lowercase();
    PREFETCH_AGENTS.iter().any(|a| ua.contains(a))
}

fn client_ip(app: &App, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
    if app.cfg.links.trust_forwarded_for {
        if let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
        {
            return Some(ip);
        }
    }
    peer.map(|p| p.ip())
}

/// A fetch from a data centre within a second of the message's delivery.
async fn is_scanner(app: &App, link: &Link, ip: Option<IpAddr>, now: i64) -> bool {
    let Some(ip) = ip else { return false };
    if !app.link_ranges.iter().any(|r| r.contains(ip)) {
        return false;
    }
    match app.store.get(&link.message_id).await {
        Ok(Some(rec)) => rec
            .events
            .iter()
            .rev()
            .find(|e| e.status == Status::Delivered && e.reason.is_none())
            .is_some_and(|e| now - e.at <= SCANNER_WINDOW_MS),
        _ => false,
    }
}

/// `GET|HEAD /l/{code}` (and `/{code}` on `[links] listen`).
#[utoipa::path(
    operation_id = "links_follow",
    get,
    path = "/l/{code}",
    tag = "links",
    summary = "A tracked link: 302 to its target, the click recorded",
    params(("code" = String, Path, description = "10 base62 characters")),
    responses((status = 302, description = "Redirect to the target")),
    security(())
)]
pub async fn follow(
    State(app): State<Arc<App>>,
    Path(code): Path<String>,
    method: Method,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Response {
    if !is_code(&code) {
        return not_found();
    }
    let now = now_ms();
    let link = match app.links.run(code).await {
        Ok(Some(l)) if l.expires_at > now => l,
        Ok(_) => return not_found(),
        Err(e) => {
            tracing::warn!(error = %e, "Could not read a tracked link; answering 503.");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again shortly\n").into_response();
        }
    };
    let ip = client_ip(&app, &headers, peer.map(|Extension(c)| c.0));
    let kind = if method == Method::HEAD
        || is_prefetch_agent(&headers)
        || is_scanner(&app, &link, ip, now).await
    {
        ClickKind::Prefetch
    } else {
        ClickKind::Human
    };
    let callback = (kind == ClickKind::Human).then(|| {
        Task::Clicked(ClickedPayload {
            message_id: link.message_id.clone(),
            at: now,
            url: link.target.clone(),
        })
        .encode()
    });
    let click = Click {
        callback_id: new_message_id_in(partition_of(&link.message_id)),
        message_id: link.message_id.clone(),
        kind,
        at: now,
        callback,
    };
    // The redirect does not wait on a failed write: the person gets where
    // they are going, and the miss is counted.
    if let Err(e) = app.clicks.run(click).await {
        app.metrics.store_errors.with_label_values(&["click"]).inc();
        tracing::warn!(error = %e, "Could not record a click.");
    }
    app.metrics
        .link_clicks
        .with_label_values(&[kind.as_str()])
        .inc();
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, link.target.as_str()),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
    )
        .into_response()
}

/// The router of `[links] listen`: only redirects, at `/{code}` and `/l/{code}`.
pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/{code}", axum::routing::get(follow))
        .route("/l/{code}", axum::routing::get(follow))
        .fallback(|| async { not_found() })
        .with_state(app)
}
