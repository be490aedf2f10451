//! The operator console's page (`/console`), its assets, login and logout, and
//! the live overview (`/v1/admin/overview`, `/v1/admin/stream`). The page is one
//! HTML file with its script and style sheet, compiled into the binary (nothing
//! is fetched from anywhere else); see [`crate::console`] for its state.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{same_origin, AdminAuth};
use super::limits::{BodyKind, Incoming};
use crate::app::App;
use crate::console::live;
use crate::console::sessions::{cookie_token, Refused, COOKIE};
use crate::operator::Who;

const PAGE: &str = include_str!("../console/assets/console.html");
const LOGIN: &str = include_str!("../console/assets/login.html");
const SCRIPT: &str = include_str!("../console/assets/console.js");
const STYLE: &str = include_str!("../console/assets/console.css");

/// Headers every console page carries: nothing but our own scripts and styles
/// runs, nothing frames it, nothing is cached, no referrer leaves the site.
fn page_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Not `no-referrer`: with it browsers send `Origin: null` on the page's own
    // form posts, which the origin check must refuse. Other sites still get none.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    page_headers(&mut r);
    r
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn login_page(status: StatusCode, message: &str) -> Response {
    let note = if message.is_empty() {
        String::new()
    } else {
        format!("<p class=\"note\" role=\"alert\">{}</p>", escape(message))
    };
    html(status, LOGIN.replace("{{message}}", &note))
}

/// Whether the request came over HTTPS (directly or, per `X-Forwarded-Proto`,
/// through the operator's proxy): then the cookie is `Secure`.
fn https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn see_other(to: &'static str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    page_headers(&mut r);
    r
}

/// `GET /console`: the console for a logged-in operator, else the login form.
#[utoipa::path(
    operation_id = "console_page",
    get,
    path = "/console",
    tag = "console",
    summary = "The operator console (HTML): the live view with a session, else the login form",
    responses((status = 200, description = "HTML", body = String)),
    security(())
)]
pub async fn page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !app.tenants.admin_enabled() {
        return html(
            StatusCode::NOT_FOUND,
            "<!doctype html><title>Goniec</title><p>The console is off: no <code>[admin] api_keys</code> are configured.</p>".into(),
        );
    }
    let session = match cookie_token(&headers).map(|t| app.console.sessions.get(t)) {
        Some(Ok(s)) => s,
        Some(Err(Refused::Expired)) => {
            return login_page(StatusCode::OK, "Your session has expired. Log in again.")
        }
        _ => return login_page(StatusCode::OK, ""),
    };
    html(
        StatusCode::OK,
        PAGE.replace("{{csrf}}", &escape(&session.csrf))
            .replace("{{who}}", &escape(&session.who)),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    key: String,
    #[serde(default)]
    name: String,
}

/// `POST /console/login` (a form: `key`, optional `name`): a session cookie
/// and back to the console; a wrong key gets the form again, with 401.
#[utoipa::path(
    operation_id = "console_login",
    post,
    path = "/console/login",
    tag = "console",
    summary = "Exchange an operator key (form field `key`, optional `name`) for a session cookie",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Logged in: the cookie is set, back to /console")),
    security(())
)]
pub async fn login(State(app): State<Arc<App>>, headers: HeaderMap, body: Incoming) -> Response {
    if !app.tenants.admin_enabled() {
        return login_page(StatusCode::NOT_FOUND, "The console is off.");
    }
    if !same_origin(&headers) {
        return login_page(
            StatusCode::FORBIDDEN,
            "Log in from this gateway's own page.",
        );
    }
    let raw = match body.read(&headers, BodyKind::Form).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&raw) else {
        return login_page(
            StatusCode::BAD_REQUEST,
            "Send the form with an operator key.",
        );
    };
    let Some(key) = app.tenants.admin_key(form.key.trim()) else {
        return login_page(StatusCode::UNAUTHORIZED, "That is not an operator key.");
    };
    let name: String = form
        .name
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let name = name.trim();
    let who = if name.is_empty() {
        format!("key {key}")
    } else {
        format!("{name} (key {key})")
    };
    // A login from a browser still holding a session ends that one: the
    // browser is about to forget its token, so nobody could log it out.
    if let Some(old) = cookie_token(&headers) {
        app.console.sessions.remove(old);
    }
    let (token, session) = app.console.sessions.create(who);
    crate::operator::audit(&app, &Who(session.who.clone()), "login", "console", "").await;
    let mut r = see_other("/console");
    r.headers_mut().insert(
        header::SET_COOKIE,
        cookie(
            &token,
            app.console.sessions.ttl().as_secs(),
            https(&headers),
        ),
    );
    r
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /console/logout` (a form with the session's `csrf`): the session ends
/// and the cookie is removed.
#[utoipa::path(
    operation_id = "console_logout",
    post,
    path = "/console/logout",
    tag = "console",
    summary = "End the console session (form field `csrf`)",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Logged out, back to /console")),
    security(())
)]
pub async fn logout(State(app): State<Arc<App>>, headers: HeaderMap, body: Incoming) -> Response {
    let Some(token) = cookie_token(&headers) else {
        return see_other("/console");
    };
    let raw = match body.read(&headers, BodyKind::Form).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let form: LogoutForm = serde_urlencoded::from_bytes(&raw).unwrap_or(LogoutForm {
        csrf: String::new(),
    });
    if let Ok(s) = app.console.sessions.get(token) {
        if !same_origin(&headers) || !s.csrf_ok(&form.csrf) {
            return login_page(
                StatusCode::FORBIDDEN,
                "Log out from the console's own page.",
            );
        }
        app.console.sessions.remove(token);
        crate::operator::audit(&app, &Who(s.who), "logout", "console", "").await;
    }
    let mut r = see_other("/console");
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie("", 0, https(&headers)));
    r
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, kind)], body).into_response();
    page_headers(&mut r);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[utoipa::path(
    operation_id = "console_script",
    get,
    path = "/console/console.js",
    tag = "console",
    summary = "The console's script",
    responses((status = 200, description = "JavaScript", body = String)),
    security(())
)]
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

#[utoipa::path(
    operation_id = "console_style",
    get,
    path = "/console/console.css",
    tag = "console",
    summary = "The console's style sheet",
    responses((status = 200, description = "CSS", body = String)),
    security(())
)]
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /v1/admin/overview`: everything the console shows, once.
#[utoipa::path(
    operation_id = "admin_overview",
    get,
    path = "/v1/admin/overview",
    tag = "admin",
    summary = "The live overview the console shows (rates, latency, binds, lanes, tenants, held, dead letters, campaigns, pauses, admin log)",
    responses((status = 200, description = "Overview", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub async fn overview(State(app): State<Arc<App>>, _: AdminAuth) -> Response {
    axum::Json(live::overview(&app, true).await).into_response()
}

/// `GET /v1/admin/stream`: the overview as server-sent events, one a second
/// (`event: overview`; the first with the sparklines' history, the others
/// with their newest point). With a session cookie the stream ends
/// (`event: expired`) when the session does.
#[utoipa::path(
    operation_id = "admin_stream",
    get,
    path = "/v1/admin/stream",
    tag = "admin",
    summary = "The overview as server-sent events, every second",
    responses((status = 200, description = "text/event-stream", body = String)),
    security(("admin_key" = []))
)]
pub async fn stream(
    State(app): State<Arc<App>>,
    _: AdminAuth,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Authenticated by the cookie (not a bearer key): checked again every frame.
    let session = super::bearer_token(&headers)
        .is_none()
        .then(|| cookie_token(&headers).map(str::to_string))
        .flatten();
    let first = live::overview(&app, true).await;
    let (mut tx, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(2);
    let stop = app.stop_work.clone();
    let mut frames = app.console.live.subscribe();
    tokio::spawn(async move {
        let ev = format!("event: overview\ndata: {first}\n\n");
        if tx.send_data(Bytes::from(ev)).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = frames.changed() => if changed.is_err() { return },
            }
            if let Some(t) = &session {
                if app.console.sessions.get(t).is_err() {
                    let _ = tx
                        .send_data(Bytes::from_static(b"event: expired\ndata: {}\n\n"))
                        .await;
                    return;
                }
            }
            let Some(frame) = frames.borrow_and_update().clone() else {
                continue;
            };
            let ev = format!("event: overview\ndata: {frame}\n\n");
            if tx.send_data(Bytes::from(ev)).await.is_err() {
                return;
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::new(body),
    )
        .into_response())
}
