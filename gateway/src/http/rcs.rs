//! `POST /v1/webhooks/rcs`: events from the RCS platform (a Pub/Sub push). The
//! `X-Goog-Signature` header must be the HMAC-SHA512 of the decoded data under an
//! RCS connector's client token, or the answer is 401 and nothing changes. A
//! verified event is answered 200 at once (the platform retries anything else for
//! days) and applied asynchronously: DELIVERED and READ go the way of every
//! receipt (so a repeat changes nothing), UNSUBSCRIBE opts the user out for the
//! tenants that reach them through that connector, and user messages go the way
//! of SMS replies (each once: a replayed one is recognised by its id).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use goniec_config::{Channel, ConnectorKind};
use goniec_connectors::rcs::events::{self, Event};
use goniec_connectors::InboundMessage;

use super::error::ApiError;
use super::observe;
use crate::app::App;
use crate::telemetry::mask;

/// How long a user message's id is remembered to recognise the platform's repeats.
const REPLAY_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Largest event accepted (events are small JSON documents).
const MAX_EVENT: usize = 256 * 1024;

pub async fn event(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let start = Instant::now();
    let resp = handle(&app, &headers, body).unwrap_or_else(IntoResponse::into_response);
    observe(&app, "rcs_event", start, &resp);
    resp
}

fn handle(app: &Arc<App>, headers: &HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let unsigned = || {
        ApiError::new(
            401,
            "bad-signature",
            "X-Goog-Signature does not match the event under any RCS client token",
        )
    };
    let signature = headers
        .get("x-goog-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unsigned)?;
    if body.len() > MAX_EVENT {
        return Err(ApiError::new(
            413,
            "payload-too-large",
            format!("an event may be at most {MAX_EVENT} bytes"),
        ));
    }
    let (data, event) = events::parse_push(&body)
        .map_err(|e| ApiError::new(400, "invalid-event", format!("not an RCS event: {e}")))?;
    let connector = app
        .cfg
        .connectors
        .iter()
        .find_map(|c| match &c.kind {
            ConnectorKind::Rcs(r) if events::verify(&r.client_token, &data, signature) => {
                Some(c.name.clone())
            }
            _ => None,
        })
        .ok_or_else(unsigned)?;
    let app2 = app.clone();
    app.tracker
        .spawn(async move { apply(&app2, &connector, event).await });
    Ok(StatusCode::OK.into_response())
}

async fn apply(app: &App, connector: &str, event: Event) {
    let count = |kind: &str| {
        app.metrics
            .rcs_events
            .with_label_values(&[connector, kind])
            .inc()
    };
    if let Some(r) = event.receipt(connector) {
        count(r.state.as_str());
        let _ = app.receipts.send(r).await;
        return;
    }
    match event {
        Event::IsTyping { .. } => count("is_typing"),
        Event::Unsubscribe { phone, .. } => {
            count("unsubscribe");
            unsubscribe(app, connector, &phone).await;
        }
        Event::UserMessage {
            message_id,
            phone,
            text,
            postback,
            at,
        } => {
            let key = format!("rcs:{connector}:{message_id}");
            match app.store.first_seen(&key, REPLAY_WINDOW).await {
                Ok(false) => return count("replayed"),
                Ok(true) => {}
                // Better twice than never: the tenant's endpoint sees the id.
                Err(e) => {
                    tracing::warn!(error = %e, "Could not check a user message for a replay.")
                }
            }
            count("user_message");
            let agent = app.cfg.connectors.iter().find_map(|c| match &c.kind {
                ConnectorKind::Rcs(r) if c.name == connector => Some(r.agent_id.clone()),
                _ => None,
            });
            let m = InboundMessage {
                connector: connector.to_owned(),
                channel: Channel::Rcs,
                from: phone,
                to: agent.unwrap_or_default(),
                text: text.unwrap_or_default(),
                postback,
                at,
                stored: None,
            };
            let _ = app.inbound.send(m).await;
        }
        _ => count("other"),
    }
}

/// Opt the user out in every tenant whose RCS messages to them go through this
/// connector (the agent is the tenant's brand).
async fn unsubscribe(app: &App, connector: &str, phone: &str) {
    let Ok(phone) = crate::validate::normalize_msisdn(phone, app.rules.region, false) else {
        tracing::info!(connector, from = %mask(phone), "UNSUBSCRIBE from an unusable number; ignored.");
        return;
    };
    for t in app.tenants.all() {
        let routed = app
            .router
            .route(Channel::Rcs, &t.cfg.name, &phone)
            .is_some_and(|l| l.connector.name() == connector);
        if !routed {
            continue;
        }
        let key = app.screener.opt_out_key(t, Channel::Rcs, &phone);
        let stored = crate::dispatch::finish_with_retries(app, "opt_out", || async {
            app.store
                .set_opt_out(&key, true)
                .await
                .map(|_| crate::store::Transition::Missing)
        })
        .await;
        if stored.is_some() {
            tracing::info!(tenant = %t.cfg.name, from = %mask(&phone), "Recipient unsubscribed from RCS.");
        }
    }
}
