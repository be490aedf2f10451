//! `/v1/admin/*`: the operator's view, behind `[admin] api_keys`.

use goniec_core::Problem;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{AdminAuth, ApiPath, ApiQuery};
use crate::app::App;
use crate::model::{now_ms, Status};
use crate::operator::{ActionError, PauseKind};
use crate::store::{Change, Lane, Transition};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    /// `sms`, `rcs`, `email` or `webhook`.
    lane: String,
    limit: Option<usize>,
}

/// `GET /v1/admin/dead-letters?lane=webhook&limit=100`: oldest first.
#[utoipa::path(
    operation_id = "admin_dead_letters",
    get,
    path = "/v1/admin/dead-letters",
    tag = "admin",
    summary = "Dead-lettered jobs of a lane, oldest first",
    params(("lane" = String, Query, description = "sms, rcs, email or webhook"), ("limit" = String, Query, description = "1 to 1000")),
    responses((status = 200, description = "Entries", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub async fn dead_letters(
    State(app): State<Arc<App>>,
    _: AdminAuth,
    ApiQuery(q): ApiQuery<DeadLetterQuery>,
) -> Result<Response, ApiError> {
    let lane = Lane::named(&q.lane).ok_or_else(|| {
        ApiError::new(
            Problem::InvalidQuery,
            "`lane` must be sms, rcs, email or webhook",
        )
        .field("lane")
    })?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(
            ApiError::new(Problem::InvalidQuery, "`limit` must be 1 to 1000").field("limit"),
        );
    }
    let entries = crate::operator::dead_letter_views(&app, lane, limit)
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    Ok::<_, ApiError>(
        axum::Json(serde_json::json!({"lane": lane.as_str(), "entries": entries})).into_response(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldQuery {
    limit: Option<usize>,
}

/// `GET /v1/admin/held?limit=100`: held messages, oldest first.
#[utoipa::path(
    operation_id = "admin_held",
    get,
    path = "/v1/admin/held",
    tag = "admin",
    summary = "Messages held by anti-fraud, oldest first",
    params(("limit" = String, Query, description = "1 to 1000")),
    responses((status = 200, description = "Entries", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub async fn held(
    State(app): State<Arc<App>>,
    _: AdminAuth,
    ApiQuery(q): ApiQuery<HeldQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(
            ApiError::new(Problem::InvalidQuery, "`limit` must be 1 to 1000").field("limit"),
        );
    }
    let entries = crate::operator::held_views(&app, limit)
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    Ok::<_, ApiError>(axum::Json(serde_json::json!({ "entries": entries })).into_response())
}

/// `POST /v1/admin/held/{id}/release` and `…/drop`: the operator's decision.
/// Released messages go out at once (or at their `send_at`); dropped ones become
/// `rejected` with reason `dropped_by_operator`. Only a message still held changes.
#[utoipa::path(
    operation_id = "admin_decide",
    post,
    path = "/v1/admin/held/{id}/{action}",
    tag = "admin",
    summary = "Release or drop a held message",
    params(("id" = String, Path, description = "Message id"), ("action" = String, Path, description = "release or drop")),
    responses((status = 200, description = "Decided", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub async fn decide(
    State(app): State<Arc<App>>,
    AdminAuth(who): AdminAuth,
    ApiPath((id, action)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let unavailable = |_| ApiError::store_unavailable();
    let rec = app
        .store
        .get(&id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError::not_found("message"))?;
    let now = now_ms();
    let change = match action.as_str() {
        "release" => Change::new(
            Status::Scheduled,
            now,
            Some("released_by_operator".into()),
            None,
        ),
        "drop" => Change::new(
            Status::Rejected,
            now,
            Some("dropped_by_operator".into()),
            None,
        ),
        _ => {
            return Err(ApiError::new(
                Problem::NotFound,
                "no such action; use release or drop",
            ))
        }
    };
    let due = rec.data.send_at.unwrap_or(now).max(now);
    match app
        .store
        .decide_held(&id, &rec.data.tenant, &change, due, rec.data.channel)
        .await
        .map_err(unavailable)?
    {
        Transition::Applied { .. } => {
            let reasons = rec
                .events
                .iter()
                .rev()
                .find(|e| e.status == Status::Held)
                .and_then(|e| e.reason.clone())
                .unwrap_or_default();
            crate::operator::audit(&app, &who, &action, &id, &reasons).await;
            Ok(axum::Json(serde_json::json!({
                "id": id,
                "status": change.to,
            }))
            .into_response())
        }
        Transition::Missing => Err(ApiError::not_found("message")),
        Transition::Refused { current } => Err(ApiError::new(
            Problem::NotHeld,
            format!("the message is {current}, not held; nothing changed"),
        )),
        Transition::InFlight | Transition::Partial => Err(ApiError::new(
            Problem::NotHeld,
            "the message is not held; nothing changed",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionQuery {
    tenant: String,
    limit: Option<usize>,
}

/// `GET /v1/admin/suppressions?tenant=acme&limit=100`: a tenant's suppressed e-mail
/// addresses (hard bounces) with the reason each was added.
#[utoipa::path(
    operation_id = "admin_suppressions",
    get,
    path = "/v1/admin/suppressions",
    tag = "admin",
    summary = "A tenant's suppressed e-mail addresses",
    params(("tenant" = String, Query, description = "Tenant"), ("limit" = String, Query, description = "At most this many")),
    responses((status = 200, description = "Entries", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub async fn suppressions(
    State(app): State<Arc<App>>,
    _: AdminAuth,
    ApiQuery(q): ApiQuery<SuppressionQuery>,
) -> Result<Response, ApiError> {
    if app.tenants.by_name(&q.tenant).is_none() {
        return Err(ApiError::not_found("tenant").field("tenant"));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(
            ApiError::new(Problem::InvalidQuery, "`limit` must be 1 to 10000").field("limit"),
        );
    }
    let list = app
        .store
        .suppressions(&q.tenant, limit)
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    let entries: Vec<serde_json::Value> = list
        .into_iter()
        .map(|(address, reason)| serde_json::json!({"address": address, "reason": reason}))
        .collect();
    Ok::<_, ApiError>(
        axum::Json(serde_json::json!({"tenant": q.tenant, "entries": entries})).into_response(),
    )
}

/// `DELETE /v1/admin/suppressions/{tenant}/{address}`: mail may go to it again.
#[utoipa::path(
    operation_id = "admin_unsuppress",
    delete,
    path = "/v1/admin/suppressions/{tenant}/{address}",
    tag = "admin",
    summary = "Remove an address from a suppression list",
    params(("tenant" = String, Path, description = "Tenant"), ("address" = String, Path, description = "Address")),
    responses((status = 200, description = "Removed", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub async fn unsuppress(
    State(app): State<Arc<App>>,
    AdminAuth(who): AdminAuth,
    ApiPath((tenant, address)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    if app.tenants.by_name(&tenant).is_none() {
        return Err(ApiError::not_found("tenant"));
    }
    let address = crate::address::suppression_key(&crate::address::normalize_email(&address)?);
    let removed = app
        .store
        .unsuppress(&tenant, &address)
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    if !removed {
        return Err(ApiError::not_found("suppressed address"));
    }
    crate::operator::audit(&app, &who, "unsuppress", &format!("{tenant}/{address}"), "").await;
    Ok::<_, ApiError>(
        axum::Json(serde_json::json!({"tenant": tenant, "address": address, "suppressed": false}))
            .into_response(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuppressRequest {
    tenant: String,
    address: String,
    reason: Option<String>,
}

/// `POST /v1/admin/suppressions` `{"tenant","address","reason"?}`: suppress an
/// address by hand (a complaint, a known-dead mailbox).
#[utoipa::path(
    operation_id = "admin_suppress",
    post,
    path = "/v1/admin/suppressions",
    tag = "admin",
    summary = "Suppress an address by hand",
    request_body = serde_json::Value,
    responses((status = 200, description = "Suppressed", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub async fn suppress(
    State(app): State<Arc<App>>,
    AdminAuth(who): AdminAuth,
    headers: HeaderMap,
    body: super::limits::Incoming,
) -> Result<Response, ApiError> {
    let req: SuppressRequest = body.json(&headers, super::limits::BodyKind::Small).await?;
    if app.tenants.by_name(&req.tenant).is_none() {
        return Err(ApiError::not_found("tenant").field("tenant"));
    }
    let address = crate::address::normalize_email(&req.address)
        .map(|a| crate::address::suppression_key(&a))
        .map_err(|e| e.field("address"))?;
    let reason = req.reason.unwrap_or_else(|| "added by an operator".into());
    app.store
        .suppress(&req.tenant, &address, &reason)
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    crate::operator::audit(
        &app,
        &who,
        "suppress",
        &format!("{}/{address}", req.tenant),
        &reason,
    )
    .await;
    Ok::<_, ApiError>(
        axum::Json(
            serde_json::json!({"tenant": req.tenant, "address": address, "suppressed": true}),
        )
        .into_response(),
    )
}

fn lane_named(name: &str) -> Result<Lane, ApiError> {
    Lane::named(name).ok_or_else(|| ApiError::not_found("lane (sms, rcs, email or webhook)"))
}

fn action_error(e: ActionError) -> ApiError {
    match e {
        ActionError::NotFound(what) => ApiError::not_found(what),
        ActionError::Refused(why) => ApiError::new(Problem::InvalidState, why),
        ActionError::Store(_) => ApiError::store_unavailable(),
    }
}

/// `POST /v1/admin/dead-letters/{lane}/{id}/requeue` (back on its lane, its
/// attempts reset) and `…/discard` (gone). Audited.
#[utoipa::path(
    operation_id = "admin_dead_letter_action",
    post,
    path = "/v1/admin/dead-letters/{lane}/{id}/{action}",
    tag = "admin",
    summary = "Requeue or discard a dead letter",
    params(
        ("lane" = String, Path, description = "sms, rcs, email or webhook"),
        ("id" = String, Path, description = "The dead letter's id (`id` in the list)"),
        ("action" = String, Path, description = "requeue or discard")
    ),
    responses((status = 200, description = "Done", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub async fn dead_letter_action(
    State(app): State<Arc<App>>,
    AdminAuth(who): AdminAuth,
    ApiPath((lane, id, action)): ApiPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    let lane = lane_named(&lane)?;
    match action.as_str() {
        "requeue" => {
            let d = crate::operator::requeue_dead(&app, &who, lane, &id)
                .await
                .map_err(action_error)?;
            Ok(axum::Json(serde_json::json!({
                "lane": lane.as_str(), "id": id, "job_id": d.job.id, "requeued": true
            }))
            .into_response())
        }
        "discard" => {
            crate::operator::discard_dead(&app, &who, lane, &id)
                .await
                .map_err(action_error)?;
            Ok(
                axum::Json(serde_json::json!({"lane": lane.as_str(), "id": id, "discarded": true}))
                    .into_response(),
            )
        }
        _ => Err(ApiError::new(
            Problem::NotFound,
            "no such action; use requeue or discard",
        )),
    }
}

/// `GET /v1/admin/pauses`: every paused tenant and connector.
#[utoipa::path(
    operation_id = "admin_pauses",
    get,
    path = "/v1/admin/pauses",
    tag = "admin",
    summary = "Paused tenants and connectors",
    responses((status = 200, description = "Pauses", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub async fn pauses(State(app): State<Arc<App>>, _: AdminAuth) -> Result<Response, ApiError> {
    let list = crate::operator::refresh_pauses(&app)
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    Ok(axum::Json(serde_json::json!({ "pauses": list })).into_response())
}

/// `PUT /v1/admin/pauses/{kind}/{name}` pauses a tenant or connector (on every
/// instance within a second), `DELETE` resumes it. A paused connector keeps
/// its binds and submits nothing; a paused tenant's messages are not
/// submitted; either way they wait and none fails. Audited.
#[utoipa::path(
    operation_id = "admin_pause",
    put,
    path = "/v1/admin/pauses/{kind}/{name}",
    tag = "admin",
    summary = "Pause a tenant or connector (DELETE resumes)",
    params(
        ("kind" = String, Path, description = "tenant or connector"),
        ("name" = String, Path, description = "Its name in the configuration")
    ),
    responses((status = 200, description = "Paused", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub async fn pause(
    State(app): State<Arc<App>>,
    who: AdminAuth,
    path: ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    set_pause(app, who, path, true).await
}

/// `DELETE /v1/admin/pauses/{kind}/{name}`: see [`pause`].
#[utoipa::path(
    operation_id = "admin_resume",
    delete,
    path = "/v1/admin/pauses/{kind}/{name}",
    tag = "admin",
    summary = "Resume a paused tenant or connector",
    params(
        ("kind" = String, Path, description = "tenant or connector"),
        ("name" = String, Path, description = "Its name in the configuration")
    ),
    responses((status = 200, description = "Resumed", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub async fn resume(
    State(app): State<Arc<App>>,
    who: AdminAuth,
    path: ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    set_pause(app, who, path, false).await
}

async fn set_pause(
    app: Arc<App>,
    AdminAuth(who): AdminAuth,
    ApiPath((kind, name)): ApiPath<(String, String)>,
    paused: bool,
) -> Result<Response, ApiError> {
    let kind = match kind.as_str() {
        "tenant" => PauseKind::Tenant,
        "connector" => PauseKind::Connector,
        _ => return Err(ApiError::not_found("kind (tenant or connector)")),
    };
    let changed = crate::operator::set_pause(&app, &who, kind, &name, paused)
        .await
        .map_err(action_error)?;
    Ok(axum::Json(serde_json::json!({
        "kind": kind, "name": name, "paused": paused, "changed": changed
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<usize>,
}

/// `GET /v1/admin/audit?limit=100`: the admin log, newest first.
#[utoipa::path(
    operation_id = "admin_audit",
    get,
    path = "/v1/admin/audit",
    tag = "admin",
    summary = "The admin log (who did what, when), newest first",
    params(("limit" = String, Query, description = "1 to 1000")),
    responses((status = 200, description = "Entries", body = serde_json::Value)),
    security(("admin_key" = []))
)]
pub async fn audit(
    State(app): State<Arc<App>>,
    _: AdminAuth,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(
            ApiError::new(Problem::InvalidQuery, "`limit` must be 1 to 1000").field("limit"),
        );
    }
    let entries = crate::operator::audit_log(&app, limit)
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    Ok(axum::Json(serde_json::json!({ "entries": entries })).into_response())
}
