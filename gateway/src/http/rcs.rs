//! `POST /v1/webhooks/rcs`: events from the RCS platform (a Pub/Sub push). The
//! `X-Goog-Signature` header must be the HMAC-SHA512 of the decoded data under the
//! client token of the RCS connector serving the event's agent, or the answer is
//! 401 and nothing changes.
//!
//! A verified event is answered 200 only once it is stored, which takes one store
//! write: DELIVERED and READ go the way of every receipt (so a repeat changes
//! nothing), UNSUBSCRIBE opts the user out, and user messages go the way of SMS
//! replies (each once: a replayed one is recognised by its id). Anything that could
//! not be stored gets 503, and the platform sends it again; nothing is acknowledged
//! and then lost.

use goniec_core::Problem;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use goniec_config::{Channel, ConnectorKind};
use goniec_connectors::rcs::events::{self, Event};
use goniec_connectors::InboundMessage;
use tokio::sync::oneshot;

use super::error::ApiError;
use super::limits::{BodyKind, Incoming};
use crate::app::App;
use crate::telemetry::mask;

/// How long a user message's id is remembered to recognise the platform's repeats.
const REPLAY_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Events older than this are acknowledged and ignored (counted `stale`): the
/// platform retries an event for up to 7 days, so anything older is a replay,
/// and an old signed UNSUBSCRIBE must not re-apply an opt-out the user has
/// since taken back. Acknowledged (200), not refused, so a genuine platform
/// stops resending it.
const MAX_EVENT_AGE: Duration = REPLAY_WINDOW;

/// Clock skew tolerated on an event's time: one further in the future is
/// refused (400), or it could win every later comparison of event times.
const MAX_EVENT_SKEW: Duration = Duration::from_secs(300);

/// The longest an event waits to be stored before the platform is told to resend
/// it. Longer than a receipt is parked while its submit is being recorded.
const STORE_WITHIN: Duration = Duration::from_secs(8);

/// Signed over its body, an event cannot be authenticated before it is read: only
/// a request carrying a signature is read at all, and at most
/// [`super::limits::RCS_EVENT_BODY`] of it.
#[utoipa::path(
    operation_id = "rcs_event",
    post,
    path = "/v1/webhooks/rcs",
    tag = "webhooks",
    summary = "RCS platform events (signature verified)",
    request_body = serde_json::Value,
    responses((status = 200, description = "Stored", body = serde_json::Value)),
    security(())
)]
pub async fn event(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Incoming,
) -> Result<Response, ApiError> {
    handle(&app, &headers, body).await
}

async fn handle(app: &App, headers: &HeaderMap, body: Incoming) -> Result<Response, ApiError> {
    let unsigned = || {
        ApiError::new(
            Problem::BadSignature,
            "X-Goog-Signature does not match the event under the agent's client token",
        )
    };
    let signature = headers
        .get(events::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unsigned)?;
    let body = body.read(headers, BodyKind::RcsEvent).await?;
    let (data, event) = events::parse_push(&body)
        .map_err(|e| ApiError::new(Problem::InvalidEvent, format!("not an RCS event: {e}")))?;
    let connector = signer(app, &data, signature).ok_or_else(unsigned)?;
    if let Some(at) = event.at() {
        let now = std::time::SystemTime::now();
        if at > now + MAX_EVENT_SKEW {
            return Err(ApiError::new(
                Problem::InvalidEvent,
                "the event is dated in the future (more than 5 minutes ahead of this clock)",
            ));
        }
        if now.duration_since(at).is_ok_and(|age| age > MAX_EVENT_AGE) {
            app.metrics
                .rcs_events
                .with_label_values(&[&connector, "stale"])
                .inc();
            tracing::info!(connector, "RCS event older than 7 days ignored (a replay).");
            return Ok(StatusCode::OK.into_response());
        }
    }
    apply(app, &connector, event).await?;
    Ok(StatusCode::OK.into_response())
}

/// The RCS connector the event is for: the one serving its `agentId` (any RCS
/// connector when the event names none) whose client token signed it.
fn signer(app: &App, data: &[u8], signature: &str) -> Option<String> {
    /// Only the field we need; serde skips the rest without building it.
    #[derive(serde::Deserialize)]
    struct Agent {
        #[serde(rename = "agentId")]
        agent_id: Option<String>,
    }
    let agent = serde_json::from_slice::<Agent>(data)
        .ok()
        .and_then(|a| a.agent_id);
    app.cfg.connectors.iter().find_map(|c| match &c.kind {
        ConnectorKind::Rcs(r)
            if agent.as_deref().is_none_or(|a| a == r.agent_id)
                && events::verify(&r.client_token, data, signature) =>
        {
            Some(c.name.clone())
        }
        _ => None,
    })
}

fn resend_later(what: &str) -> ApiError {
    ApiError::new(
        Problem::Unavailable,
        format!("the {what} could not be stored now; send it again"),
    )
}

/// Wait until the handler that took it says it is stored.
async fn stored(rx: oneshot::Receiver<()>, what: &str) -> Result<(), ApiError> {
    match tokio::time::timeout(STORE_WITHIN, rx).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(resend_later(what)),
    }
}

async fn apply(app: &App, connector: &str, event: Event) -> Result<(), ApiError> {
    let count = |kind: &str| {
        app.metrics
            .rcs_events
            .with_label_values(&[connector, kind])
            .inc()
    };
    if let Some(mut r) = event.receipt(connector) {
        count(r.state.as_str());
        let (tx, rx) = oneshot::channel();
        r.stored = Some(tx);
        // Applied right here (no queue hop): the answer waits for it anyway.
        let applied =
            tokio::time::timeout(STORE_WITHIN, crate::receipts::apply_direct(app, r)).await;
        return match applied {
            Ok(()) => stored(rx, "event").await,
            Err(_) => Err(resend_later("event")),
        };
    }
    match event {
        Event::IsTyping { .. } => count("is_typing"),
        Event::Unsubscribe { phone, at, .. } => {
            count("unsubscribe");
            unsubscribe(app, connector, &phone, at).await?;
        }
        Event::UserMessage {
            message_id,
            phone,
            text,
            postback,
            at,
        } => {
            let key = format!("rcs:{connector}:{message_id}");
            let first = app
                .store
                .first_seen(&key, REPLAY_WINDOW)
                .await
                .map_err(|_| resend_later("message"))?;
            if !first {
                count("replayed");
                return Ok(());
            }
            count("user_message");
            let agent = app.cfg.connectors.iter().find_map(|c| match &c.kind {
                ConnectorKind::Rcs(r) if c.name == connector => Some(r.agent_id.clone()),
                _ => None,
            });
            let (tx, rx) = oneshot::channel();
            let m = InboundMessage {
                connector: connector.to_owned(),
                channel: Channel::Rcs,
                from: phone,
                to: agent.unwrap_or_default(),
                text: text.unwrap_or_default(),
                postback,
                at,
                stored: Some(tx),
            };
            let handled = match app.inbound.send(m).await {
                Ok(()) => stored(rx, "message").await,
                Err(_) => Err(resend_later("message")),
            };
            if handled.is_err() {
                // Let the platform's resend through.
                let _ = app.store.forget_seen(&key).await;
            }
            handled?;
        }
        _ => count("other"),
    }
    Ok(())
}

/// Opt the user out in every tenant that messages them over RCS through this
/// connector (the agent is the tenant's brand).
async fn unsubscribe(
    app: &App,
    connector: &str,
    phone: &str,
    at: std::time::SystemTime,
) -> Result<(), ApiError> {
    let at_ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let Ok(phone) = crate::address::normalize_msisdn(phone, app.rules.region, false) else {
        tracing::info!(connector, from = %mask(phone), "UNSUBSCRIBE from an unusable number; ignored.");
        return Ok(());
    };
    let owners = crate::inbound::rcs_owners(app, connector, &phone)
        .await
        .map_err(|_| resend_later("event"))?;
    for t in owners {
        let key = app.screener.opt_out_key(&t, Channel::Rcs, &phone);
        let applied = app
            .store
            .set_opt_out(&key, true, at_ms)
            .await
            .map_err(|_| resend_later("event"))?;
        if applied {
            tracing::info!(tenant = %t.cfg.name, from = %mask(&phone), "Recipient unsubscribed from RCS.");
        } else {
            tracing::info!(tenant = %t.cfg.name, from = %mask(&phone), "RCS UNSUBSCRIBE older than the recipient's last opt-in or opt-out; ignored.");
        }
    }
    Ok(())
}
