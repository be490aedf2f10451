//! `POST /v1/webhooks/email-bounce`: an asynchronous bounce (a DSN, RFC 3464) as a
//! mailbox-to-HTTP hook posts it, raw. The original message is found by its
//! `Message-ID` (ours: `<ulid@domain>`), becomes `undeliverable` with the
//! diagnostic, and its recipient, if hard-bounced, goes on the tenant's
//! suppression list. Other recipients a DSN lists are ignored (and counted):
//! the DSN comes from whoever posts it, so it can only speak for the message it
//! names.
//! Anything that is not a DSN gets a 400 and changes nothing.

use goniec_core::Problem;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use goniec_connectors::bounce::{self, Action};

use super::authenticate;
use super::error::ApiError;
use super::limits::{BodyKind, Incoming};
use crate::app::App;
use crate::model::{is_message_id, now_ms, Status};
use crate::store::{Change, Transition};

/// The body may be at most [`super::limits::BOUNCE_BODY`] (a DSN quoting a whole
/// statement with attachments); it is read only once the tenant key is checked.
#[utoipa::path(
    operation_id = "bounce_email_bounce",
    post,
    path = "/v1/webhooks/email-bounce",
    tag = "webhooks",
    summary = "A DSN (RFC 3464) from the relay; signed with the tenant's secret",
    request_body = String,
    responses((status = 200, description = "Applied", body = serde_json::Value)),
    security(())
)]
pub async fn email_bounce(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Incoming,
) -> Result<Response, ApiError> {
    handle(&app, &headers, body).await
}

async fn handle(app: &App, headers: &HeaderMap, body: Incoming) -> Result<Response, ApiError> {
    let tenant = authenticate(app, headers)?;
    let body = body.read(headers, BodyKind::Bounce).await?;
    let dsn = bounce::parse(&body)
        .map_err(|e| ApiError::new(Problem::InvalidBounce, format!("not a usable DSN: {e}")))?;
    // Our Message-IDs are `<ulid@domain>`; the ULID is the message id.
    let id = dsn
        .ids()
        .filter_map(|v| v.trim_matches(['<', '>']).split('@').next())
        .map(str::to_ascii_uppercase)
        .find(|v| is_message_id(v))
        .ok_or_else(|| {
            ApiError::new(
                Problem::UnknownMessage,
                "the bounce names no Goniec message (no matching Message-ID)",
            )
        })?;
    let rec = match app.store.get(&id).await {
        Ok(Some(r)) if r.data.tenant == tenant.cfg.name => r,
        Ok(_) => return Err(ApiError::not_found("message")),
        Err(_) => return Err(ApiError::store_unavailable()),
    };
    // Only the recipient of the message the DSN refers to counts: a DSN is
    // written by whoever posts it, and listing other addresses in it must not
    // suppress them (a forged bounce naming one real Message-ID could otherwise
    // cut anyone off). Our messages have one recipient.
    let ours = crate::address::suppression_key(&rec.data.to);
    let is_ours = |r: &&bounce::RecipientStatus| {
        crate::address::suppression_key(&r.final_recipient) == ours
            || r.original_recipient
                .as_deref()
                .is_some_and(|o| crate::address::suppression_key(o) == ours)
    };
    let ignored = dsn.recipients.iter().filter(|r| !is_ours(r)).count();
    if ignored > 0 {
        tracing::warn!(message_id = %id, tenant = %tenant.cfg.name, ignored, "Bounce lists recipients the message was not sent to; ignoring them.");
    }
    let failed: Vec<&bounce::RecipientStatus> = dsn
        .recipients
        .iter()
        .filter(is_ours)
        .filter(|r| r.action == Action::Failed)
        .collect();
    let mut suppressed = Vec::new();
    for r in failed.iter().filter(|r| r.suppress()) {
        let key = crate::address::suppression_key(&r.final_recipient);
        let why = format!(
            "bounce {}: {}",
            r.status,
            r.diagnostic.as_deref().unwrap_or("")
        );
        app.store
            .suppress(&tenant.cfg.name, &key, &why)
            .await
            .map_err(|_| ApiError::store_unavailable())?;
        suppressed.push(key);
    }
    let mut status = rec.status;
    if let Some(first) = failed.first() {
        let change = Change::new(
            Status::Undeliverable,
            now_ms(),
            Some(format!("bounce {}", first.status)),
            first.diagnostic.clone(),
        );
        match app.store.transition(&id, &change).await {
            Ok(Transition::Applied { .. }) => {
                status = Status::Undeliverable;
                app.metrics
                    .transitions
                    .with_label_values(&[rec.data.channel.as_str(), "undeliverable"])
                    .inc();
            }
            Ok(_) => {}
            Err(_) => return Err(ApiError::store_unavailable()),
        }
    }
    tracing::info!(message_id = %id, recipients = dsn.recipients.len(), suppressed = suppressed.len(), "Bounce applied.");
    Ok(axum::Json(serde_json::json!({
        "id": id,
        "status": status,
        "recipients": dsn.recipients.iter().map(|r| serde_json::json!({
            "action": r.action.as_str(),
            "status": r.status,
        })).collect::<Vec<_>>(),
        "suppressed": suppressed,
        "ignored_recipients": ignored,
    }))
    .into_response())
}
