//! `/v1/admin/*`: the operator's view, behind `[admin] api_keys`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::observe;
use crate::app::App;
use crate::store::{CallbackPayload, Lane};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    /// `sms`, `rcs`, `email` or `webhook`.
    lane: String,
    limit: Option<usize>,
}

#[derive(Serialize)]
struct DeadLetter {
    job_id: String,
    attempts: u32,
    reason: String,
    message_id: String,
    /// For callbacks: the status change that could not be reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
}

fn authorize(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    if !app.tenants.admin_enabled() {
        return Err(ApiError::new(
            404,
            "not-found",
            "admin endpoints are off (no `[admin] api_keys`)",
        ));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthorized)?;
    if app.tenants.is_admin(token.trim()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

/// `GET /v1/admin/dead-letters?lane=webhook&limit=100`: oldest first.
pub async fn dead_letters(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    q: Result<Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let start = Instant::now();
    let resp = async {
        authorize(&app, &headers)?;
        let Query(q) = q.map_err(|e| ApiError::new(422, "invalid-query", e.body_text()))?;
        let lane = Lane::ALL
            .into_iter()
            .find(|l| l.as_str() == q.lane)
            .ok_or_else(|| {
                ApiError::new(
                    422,
                    "invalid-query",
                    "`lane` must be sms, rcs, email or webhook",
                )
                .field("lane")
            })?;
        let limit = q.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(
                ApiError::new(422, "invalid-query", "`limit` must be 1 to 1000").field("limit"),
            );
        }
        let jobs = app
            .store
            .dead_letters(lane, limit)
            .await
            .map_err(|_| ApiError::store_unavailable())?;
        let entries: Vec<DeadLetter> = jobs
            .into_iter()
            .map(|(job, reason)| {
                let cb = (lane == Lane::Webhook)
                    .then(|| CallbackPayload::decode(&job.payload))
                    .flatten();
                DeadLetter {
                    message_id: cb
                        .as_ref()
                        .map_or_else(|| job.id.clone(), |c| c.message_id.clone()),
                    status: cb.map(|c| c.status.to_string()),
                    job_id: job.id,
                    attempts: job.attempt + 1,
                    reason,
                }
            })
            .collect();
        Ok::<_, ApiError>(
            axum::Json(serde_json::json!({"lane": lane.as_str(), "entries": entries}))
                .into_response(),
        )
    }
    .await
    .unwrap_or_else(IntoResponse::into_response);
    observe(&app, "admin_dead_letters", start, &resp);
    resp
}
