//! `/v1/campaigns` and `/v1/reports`: create a campaign (idempotently), give
//! it an audience (CSV or NDJSON, streamed), start, pause, resume or cancel
//! it, follow its progress (JSON or a `text/event-stream`), report payments
//! and replies, and read its report (JSON or CSV).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use goniec_core::Problem;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery, AuthTenant};
use super::limits::{BodyKind, Incoming};
use crate::accept::idempotency::{self, Idem};
use crate::accept::invalid::Refused;
use crate::app::App;
use crate::campaigns::audience::{self, Kind};
use crate::campaigns::{self as camp, report, runner, CampaignDoc, Stored};
use crate::model::{format_ms, now_ms, Status};
use crate::store::campaigns::CampaignMeta;
use crate::store::{Change, IdemWrite};
use crate::templates::Template;
use crate::tenants::TenantCtx;

fn store_err<E>(_: E) -> ApiError {
    ApiError::store_unavailable()
}

async fn load(app: &App, tenant: &TenantCtx, id: &str) -> Result<(CampaignMeta, Stored), ApiError> {
    if !crate::model::is_message_id(id) {
        return Err(ApiError::not_found("campaign"));
    }
    let meta = app
        .store
        .campaigns()
        .campaign(&tenant.cfg.name, id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| ApiError::not_found("campaign"))?;
    let stored: Stored = serde_json::from_str(&meta.doc)
        .map_err(|e| ApiError::from(Refused::Internal(format!("stored campaign: {e}"))))?;
    Ok((meta, stored))
}

/// Each step's template, pinned to a version, checked against its channel.
async fn templates(
    app: &App,
    tenant: &TenantCtx,
    doc: &mut CampaignDoc,
) -> Result<Vec<Arc<Template>>, ApiError> {
    let mut out = Vec::new();
    for (i, s) in doc.steps.iter_mut().enumerate() {
        let t = crate::accept::templates::fetch(
            app,
            &tenant.cfg.name,
            &s.template_id,
            s.template_version,
        )
        .await?
        .ok_or_else(|| {
            ApiError::new(
                Problem::UnknownTemplate,
                format!("this tenant has no template `{}`", s.template_id),
            )
            .field(format!("steps[{i}].template_id"))
        })?;
        if t.doc.channel != s.channel {
            return Err(ApiError::new(
                Problem::ConflictingFields,
                format!(
                    "template `{}` is for {} messages, not {}",
                    t.id, t.doc.channel, s.channel
                ),
            )
            .field(format!("steps[{i}].channel")));
        }
        if t.has_links() && tenant.cfg.links.domain.is_none() {
            return Err(ApiError::new(
                Problem::InvalidTemplate,
                format!(
                    "template `{}` has tracked links but this tenant has no link domain",
                    t.id
                ),
            )
            .field(format!("steps[{i}].template_id")));
        }
        s.template_version = Some(t.version);
        out.push(t);
    }
    Ok(out)
}

fn view(
    meta: &CampaignMeta,
    stored: &Stored,
    counters: &BTreeMap<String, i64>,
    pending: u64,
    waiting: Option<(&str, i64)>,
) -> serde_json::Value {
    let r = report::build(counters, Some((0, -1)));
    let speed = stored.doc.speed.map(|s| s.per_second());
    serde_json::json!({
        "id": meta.id,
        "name": stored.doc.name,
        "state": meta.state,
        "created_at": format_ms(meta.created_at),
        "start_at": stored.start_ms.map(format_ms),
        "end_at": stored.end_ms.map(format_ms),
        "audience": {"rows": meta.rows, "rejected": meta.rejected},
        "pending": pending,
        "waiting": waiting.map(|(why, until)| serde_json::json!({"reason": why, "until": format_ms(until)})),
        "speed_per_second": speed,
        "eta_seconds": speed.filter(|s| *s > 0.0).map(|s| (pending as f64 / s).ceil()),
        "steps": r.steps,
        "total": r.total,
        "stopped": r.stopped,
        "paid": r.paid,
    })
}

pub(crate) async fn progress(
    app: &App,
    tenant: &TenantCtx,
    id: &str,
) -> Result<serde_json::Value, ApiError> {
    let (meta, stored) = load(app, tenant, id).await?;
    let c = app.store.campaigns();
    let counters = c.campaign_counters(id).await.map_err(store_err)?;
    let pending = c.pending(id).await.map_err(store_err)?;
    let waiting = (meta.state == "running")
        .then(|| runner::waiting(app, tenant, &stored, now_ms()))
        .flatten();
    Ok(view(&meta, &stored, &counters, pending, waiting))
}

/// `POST /v1/campaigns`: the definition, optionally `recipients` (a JSON
/// list) and `"start": true`. `Idempotency-Key` honoured.
#[utoipa::path(
    operation_id = "campaigns_create",
    post,
    path = "/v1/campaigns",
    tag = "campaigns",
    summary = "Create a campaign (`Idempotency-Key` honoured); optional inline `recipients` and `start`",
    request_body = crate::campaigns::CampaignDoc,
    responses((status = 201, description = "The campaign's progress", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn create(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    headers: HeaderMap,
    body: Incoming,
) -> Result<Response, ApiError> {
    let raw = body.read(&headers, BodyKind::Batch).await?;
    let key = headers.get("idempotency-key").map(HeaderValue::as_bytes);
    let idem = idempotency::begin(&app, &tenant, key, &raw).await?;
    if let Idem::Replay { status, body } = idem {
        let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        return Ok(r);
    }
    let result = create_inner(&app, &tenant, &raw, &idem).await;
    if result.is_err() {
        idempotency::release(&app, &tenant, &idem).await;
    }
    result
}

async fn create_inner(
    app: &App,
    tenant: &TenantCtx,
    raw: &[u8],
    idem: &Idem,
) -> Result<Response, ApiError> {
    let mut v: serde_json::Value = serde_json::from_slice(raw).map_err(|e| {
        ApiError::new(
            Problem::MalformedJson,
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    let Some(o) = v.as_object_mut() else {
        return Err(ApiError::new(
            Problem::InvalidType,
            "the body must be a JSON object",
        ));
    };
    let recipients = o.remove("recipients");
    let start = match o.remove("start") {
        None => false,
        Some(serde_json::Value::Bool(b)) => b,
        Some(_) => {
            return Err(
                ApiError::new(Problem::InvalidType, "`start` is true or false").field("start"),
            )
        }
    };
    let mut doc: CampaignDoc = serde_path_to_error::deserialize(v)
        .map_err(|e| ApiError::from(crate::accept::validate::json_error(&e)))?;
    let now = now_ms();
    let (start_ms, end_ms) = camp::check(&doc, now)?;
    let tpls = templates(app, tenant, &mut doc).await?;
    let id = crate::model::new_message_id();
    let stored = Stored {
        doc,
        start_ms,
        end_ms,
        started_ms: None,
    };
    let meta = CampaignMeta {
        tenant: tenant.cfg.name.clone(),
        id: id.clone(),
        state: "draft".into(),
        doc: serde_json::to_string(&stored)
            .map_err(|e| ApiError::from(Refused::Internal(e.to_string())))?,
        created_at: now,
        rows: 0,
        rejected: 0,
    };
    let c = app.store.campaigns();
    c.create_campaign(&meta).await.map_err(store_err)?;
    let mut summary = None;
    if let Some(list) = recipients {
        let serde_json::Value::Array(items) = list else {
            return Err(
                ApiError::new(Problem::InvalidType, "`recipients` is a list").field("recipients"),
            );
        };
        let mut nd = Vec::new();
        for r in items {
            nd.extend_from_slice(r.to_string().as_bytes());
            nd.push(b'\n');
        }
        let rules = audience::Rules::new(app, &stored, &tpls, runner::time_zone(tenant), now)?;
        summary =
            Some(audience::ingest(app, tenant, &id, Kind::NdJson, Body::from(nd), &rules).await?);
    }
    if start {
        c.set_campaign_state(&tenant.cfg.name, &id, &["draft"], "running")
            .await
            .map_err(store_err)?;
    }
    tracing::info!(tenant = %tenant.cfg.name, campaign = %id, start, "Campaign created.");
    let mut body = progress(app, tenant, &id).await?;
    body["upload"] = serde_json::json!(summary);
    let text = body.to_string();
    if let Idem::Fresh { key, fingerprint } = idem {
        app.store
            .accept(
                &[],
                Some(IdemWrite {
                    tenant: &tenant.cfg.name,
                    key,
                    fingerprint,
                    status: 201,
                    body: &text,
                }),
            )
            .await
            .map_err(store_err)?;
    }
    let mut r = (StatusCode::CREATED, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// `PUT /v1/campaigns/{id}/audience`: `text/csv` or `application/x-ndjson`,
/// streamed; only while the campaign is a draft or paused.
#[utoipa::path(
    operation_id = "campaigns_audience",
    put,
    path = "/v1/campaigns/{id}/audience",
    tag = "campaigns",
    summary = "Add the audience: text/csv or application/x-ndjson, streamed",
    params(("id" = String, Path, description = "Campaign id")),
    request_body = String,
    responses((status = 200, description = "Rows read, accepted and rejected", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn audience(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (meta, stored) = load(&app, &tenant, &id).await?;
    if !matches!(meta.state.as_str(), "draft" | "paused") {
        return Err(ApiError::new(
            Problem::InvalidState,
            format!(
                "the campaign is {}; an audience is added while it is a draft or paused",
                meta.state
            ),
        ));
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let kind = if ct.starts_with("text/csv") {
        Kind::Csv
    } else if ct.starts_with("application/x-ndjson") {
        Kind::NdJson
    } else {
        return Err(ApiError::new(
            Problem::UnsupportedMediaType,
            "send the audience as text/csv or application/x-ndjson",
        ));
    };
    let now = now_ms();
    let mut doc = stored.doc.clone();
    let tpls = templates(&app, &tenant, &mut doc).await?;
    let rules = audience::Rules::new(&app, &stored, &tpls, runner::time_zone(&tenant), now)?;
    let summary = audience::ingest(&app, &tenant, &id, kind, body, &rules).await?;
    tracing::info!(campaign = %id, rows = summary.rows, rejected = summary.rejected, "Campaign audience added.");
    Ok(Json(serde_json::json!({
        "id": id,
        "rows": summary.rows,
        "accepted": summary.accepted,
        "rejected": summary.rejected,
        "rejects": format!("/v1/campaigns/{id}/rejects"),
    }))
    .into_response())
}

/// `GET /v1/campaigns/{id}/rejects`: the rejected rows as CSV (`line;reason;detail`), streamed.
#[utoipa::path(
    operation_id = "campaigns_rejects",
    get,
    path = "/v1/campaigns/{id}/rejects",
    tag = "campaigns",
    summary = "Rejected audience rows (text/csv: line;reason;detail)",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, description = "CSV", body = String)),
    security(("api_key" = []))
)]
pub async fn rejects(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    load(&app, &tenant, &id).await?;
    let (mut tx, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(4);
    tokio::spawn(async move {
        let _ = tx
            .send_data(Bytes::from_static(b"line;reason;detail\r\n"))
            .await;
        let mut offset = 0;
        loop {
            let Ok(page) = app.store.campaigns().rejects(&id, offset, 1000).await else {
                return;
            };
            if page.is_empty() {
                return;
            }
            offset += page.len() as u64;
            let mut w = csv::WriterBuilder::new()
                .delimiter(b';')
                .terminator(csv::Terminator::CRLF)
                .from_writer(Vec::new());
            for r in &page {
                let _ = w.write_record([r.line.to_string().as_str(), &r.reason, &r.detail]);
            }
            let Ok(buf) = w.into_inner() else { return };
            if tx.send_data(Bytes::from(buf)).await.is_err() {
                return;
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        Body::new(body),
    )
        .into_response())
}

/// `GET /v1/campaigns/{id}`: state and progress.
#[utoipa::path(
    operation_id = "campaigns_show",
    get,
    path = "/v1/campaigns/{id}",
    tag = "campaigns",
    summary = "State and progress",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, description = "Progress", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn show(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(Json(progress(&app, &tenant, &id).await?).into_response())
}

/// `GET /v1/campaigns`.
#[utoipa::path(
    operation_id = "campaigns_list",
    get,
    path = "/v1/campaigns",
    tag = "campaigns",
    summary = "The tenant's campaigns, newest first",
    responses((status = 200, description = "Campaigns", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn list(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
) -> Result<Response, ApiError> {
    let c = app.store.campaigns();
    let ids = c.campaign_ids(&tenant.cfg.name).await.map_err(store_err)?;
    let mut out = Vec::new();
    for id in ids.iter().rev().take(1000) {
        if let Some(m) = c.campaign(&tenant.cfg.name, id).await.map_err(store_err)? {
            let name = serde_json::from_str::<Stored>(&m.doc)
                .ok()
                .and_then(|s| s.doc.name);
            out.push(
                serde_json::json!({"id": m.id, "name": name, "state": m.state,
                "created_at": format_ms(m.created_at), "rows": m.rows}),
            );
        }
    }
    Ok(Json(serde_json::json!({ "campaigns": out })).into_response())
}

/// `POST /v1/campaigns/{id}/{action}`: `start`, `pause`, `resume`, `cancel`.
#[utoipa::path(
    operation_id = "campaigns_action",
    post,
    path = "/v1/campaigns/{id}/{action}",
    tag = "campaigns",
    summary = "start, pause, resume or cancel",
    params(("id" = String, Path, description = "Campaign id"), ("action" = String, Path, description = "start, pause, resume or cancel")),
    responses((status = 200, description = "The campaign's progress", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn action(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    ApiPath((id, action)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let (meta, _) = load(&app, &tenant, &id).await?;
    let (from, to): (&[&str], &str) = match action.as_str() {
        "start" => (&["draft"], "running"),
        "pause" => (&["running"], "paused"),
        "resume" => (&["paused"], "running"),
        "cancel" => (&["draft", "running", "paused"], "cancelled"),
        _ => return Err(ApiError::not_found("action (start, pause, resume, cancel)")),
    };
    let c = app.store.campaigns();
    let prev = c
        .set_campaign_state(&tenant.cfg.name, &id, from, to)
        .await
        .map_err(store_err)?
        .unwrap_or(meta.state);
    if !from.contains(&prev.as_str()) {
        return Err(ApiError::new(
            Problem::InvalidState,
            format!("cannot {action} a campaign that is {prev}"),
        ));
    }
    if to == "cancelled" {
        // Nothing more is due, and what was accepted but not yet sent is cancelled.
        let last = c.drop_due(&id).await.map_err(store_err)?;
        let app2 = app.clone();
        let id2 = id.clone();
        app.tracker
            .spawn(async move { cancel_messages(&app2, &id2, last).await });
    }
    tracing::info!(campaign = %id, from = %prev, to, "Campaign state changed.");
    Ok(Json(progress(&app, &tenant, &id).await?).into_response())
}

async fn cancel_messages(app: &App, campaign: &str, ids: Vec<String>) {
    let mut cancelled = 0;
    for chunk in ids.chunks(500) {
        let now = now_ms();
        let items: Vec<(String, Change)> = chunk
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    Change::new(
                        Status::Cancelled,
                        now,
                        Some("campaign_cancelled".into()),
                        None,
                    ),
                )
            })
            .collect();
        match app.store.transition_many(items).await {
            Ok(t) => {
                cancelled += t
                    .iter()
                    .filter(|t| matches!(t, crate::store::Transition::Applied { .. }))
                    .count()
            }
            Err(e) => {
                tracing::warn!(campaign, error = %e, "Could not cancel a campaign's messages.")
            }
        }
    }
    tracing::info!(campaign, cancelled, "Campaign's unsent messages cancelled.");
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkEvent {
    client_ref: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkEvents {
    events: Vec<BulkEvent>,
}

fn event_kind(kind: &str, field: &str) -> Result<&'static str, ApiError> {
    camp::StopEvent::parse(kind)
        .map(|e| e.as_str())
        .ok_or_else(|| {
            ApiError::new(
                Problem::InvalidValue,
                "`type` is one of paid, replied, opted_out",
            )
            .field(field)
        })
}

/// `POST /v1/campaigns/{id}/recipients/{client_ref}/events` `{"type":"paid"}`.
#[utoipa::path(
    operation_id = "campaigns_event",
    post,
    path = "/v1/campaigns/{id}/recipients/{client_ref}/events",
    tag = "campaigns",
    summary = "Report a recipient's payment, reply or opt-out",
    params(("id" = String, Path, description = "Campaign id"), ("client_ref" = String, Path, description = "The recipient's client_ref")),
    request_body = crate::http::campaigns::EventIn,
    responses((status = 200, description = "Recorded", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn event(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    ApiPath((id, client_ref)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Incoming,
) -> Result<Response, ApiError> {
    load(&app, &tenant, &id).await?;
    let e: EventIn = body.json(&headers, BodyKind::Small).await?;
    let kind = event_kind(&e.kind, "type")?;
    let new = app
        .store
        .campaigns()
        .recipient_event(&id, &client_ref, kind, now_ms())
        .await
        .map_err(store_err)?
        .ok_or_else(|| ApiError::not_found("recipient (client_ref)"))?;
    Ok(
        Json(serde_json::json!({"client_ref": client_ref, "type": kind, "new": new}))
            .into_response(),
    )
}

/// `POST /v1/campaigns/{id}/events` `{"events":[{"client_ref","type"}]}`: at most 10,000.
#[utoipa::path(
    operation_id = "campaigns_events",
    post,
    path = "/v1/campaigns/{id}/events",
    tag = "campaigns",
    summary = "Report events for up to 10,000 recipients",
    params(("id" = String, Path, description = "Campaign id")),
    request_body = crate::http::campaigns::BulkEvents,
    responses((status = 200, description = "Per-event results", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn events(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Incoming,
) -> Result<Response, ApiError> {
    load(&app, &tenant, &id).await?;
    let b: BulkEvents = body.json(&headers, BodyKind::Batch).await?;
    if b.events.is_empty() || b.events.len() > 10_000 {
        return Err(ApiError::new(Problem::InvalidValue, "1 to 10000 events").field("events"));
    }
    let kinds = b
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| event_kind(&e.kind, &format!("events[{i}].type")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(b.events.len());
    let now = now_ms();
    for (e, kind) in b.events.iter().zip(kinds) {
        let r = app
            .store
            .campaigns()
            .recipient_event(&id, &e.client_ref, kind, now)
            .await
            .map_err(store_err)?;
        out.push(match r {
            Some(new) => serde_json::json!({"client_ref": e.client_ref, "new": new}),
            None => serde_json::json!({"client_ref": e.client_ref, "error": "unknown client_ref"}),
        });
    }
    Ok(Json(serde_json::json!({ "results": out })).into_response())
}

/// `GET /v1/campaigns/{id}/stream`: progress as server-sent events, every
/// second, until the campaign is completed or cancelled.
#[utoipa::path(
    operation_id = "campaigns_stream",
    get,
    path = "/v1/campaigns/{id}/stream",
    tag = "campaigns",
    summary = "Progress as server-sent events, every second",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, description = "text/event-stream", body = String)),
    security(("api_key" = []))
)]
pub async fn stream(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let first = progress(&app, &tenant, &id).await?;
    let (mut tx, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(2);
    let stop = app.stop_work.clone();
    tokio::spawn(async move {
        let mut p = first;
        let mut last: Option<(std::time::Instant, i64)> = None;
        loop {
            let sent = p["total"]["accepted"].as_i64().unwrap_or(0)
                + p["total"]["rejected"].as_i64().unwrap_or(0);
            if let Some((t, n)) = last {
                let secs = t.elapsed().as_secs_f64().max(0.001);
                let rate = ((sent - n) as f64 / secs * 10.0).round() / 10.0;
                p["rate_per_second"] = rate.into();
            }
            last = Some((std::time::Instant::now(), sent));
            let done = matches!(p["state"].as_str(), Some("completed" | "cancelled"));
            let ev = format!("event: progress\ndata: {p}\n\n");
            if tx.send_data(Bytes::from(ev)).await.is_err() || done {
                return;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            match progress(&app, &tenant, &id).await {
                Ok(n) => p = n,
                Err(_) => return,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

fn day_range(q: &ReportQuery) -> Result<Option<(i64, i64)>, ApiError> {
    let day = |s: &Option<String>, field: &str, dflt: i64| -> Result<i64, ApiError> {
        match s {
            None => Ok(dflt),
            Some(s) => s
                .parse::<jiff::civil::Date>()
                .map_err(|_| {
                    ApiError::new(
                        Problem::InvalidQuery,
                        format!("`{field}` is a date, YYYY-MM-DD"),
                    )
                    .field(field)
                })
                .and_then(|d| {
                    d.to_zoned(jiff::tz::TimeZone::UTC)
                        .map(|z| z.timestamp().as_second().div_euclid(86_400))
                        .map_err(|e| {
                            ApiError::new(Problem::InvalidQuery, e.to_string()).field(field)
                        })
                }),
        }
    };
    if q.from.is_none() && q.to.is_none() {
        return Ok(None);
    }
    Ok(Some((
        day(&q.from, "from", i64::MIN)?,
        day(&q.to, "to", i64::MAX)?,
    )))
}

fn csv_report(r: &report::Report) -> Response {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "scope",
        "step",
        "channel",
        "accepted",
        "rejected",
        "skipped",
        "sent",
        "delivered",
        "undeliverable",
        "expired",
        "failed",
        "read",
        "clicked",
        "delivery_rate",
        "click_rate",
        "median_seconds_to_delivery",
        "median_seconds_to_click",
    ]);
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let mut row = |scope: &str, step: &str, ch: &str, f: &report::Figures| {
        let _ = w.write_record([
            scope.to_string(),
            step.to_string(),
            ch.to_string(),
            f.accepted.to_string(),
            f.rejected.to_string(),
            f.skipped.to_string(),
            f.sent.to_string(),
            f.delivered.to_string(),
            f.undeliverable.to_string(),
            f.expired.to_string(),
            f.failed.to_string(),
            f.read.to_string(),
            f.clicked.to_string(),
            opt(f.delivery_rate),
            opt(f.click_rate),
            opt(f.median_seconds_to_delivery),
            opt(f.median_seconds_to_click),
        ]);
    };
    for (k, f) in &r.steps {
        let (s, ch) = k.split_once(':').unwrap_or((k, ""));
        row("step", s, ch, f);
    }
    for (ch, f) in &r.channels {
        row("channel", "", ch, f);
    }
    row("total", "", "", &r.total);
    let mut out = w.into_inner().unwrap_or_default();
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(["date", "step", "channel", "what", "count"]);
    for d in &r.days {
        let _ = w.write_record([&d.date, &d.step, &d.channel, &d.what, &d.count.to_string()]);
    }
    out.extend_from_slice(b"\n");
    out.extend(w.into_inner().unwrap_or_default());
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response()
}

/// `GET /v1/reports/campaigns/{id}[?format=csv&from=&to=]`.
#[utoipa::path(
    operation_id = "campaigns_report",
    get,
    path = "/v1/reports/campaigns/{id}",
    tag = "reports",
    summary = "A campaign's report (JSON, or `?format=csv`)",
    params(("id" = String, Path, description = "Campaign id"), ("format" = String, Query, description = "json or csv"), ("from" = String, Query, description = "YYYY-MM-DD"), ("to" = String, Query, description = "YYYY-MM-DD")),
    responses((status = 200, description = "The report", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn report(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let (meta, stored) = load(&app, &tenant, &id).await?;
    let counters = app
        .store
        .campaigns()
        .campaign_counters(&id)
        .await
        .map_err(store_err)?;
    let r = report::build(&counters, day_range(&q)?);
    match q.format.as_deref() {
        Some("csv") => Ok(csv_report(&r)),
        None | Some("json") => {
            let recipients = meta.rows - meta.rejected.min(meta.rows);
            Ok(Json(serde_json::json!({
                "id": meta.id,
                "name": stored.doc.name,
                "state": meta.state,
                "recipients": recipients,
                "payment_rate": (recipients > 0)
                    .then(|| (r.paid as f64 / recipients as f64 * 1e4).round() / 1e4),
                "report": r,
            }))
            .into_response())
        }
        Some(_) => {
            Err(ApiError::new(Problem::InvalidQuery, "`format` is json or csv").field("format"))
        }
    }
}

/// `GET /v1/reports/channels?from=&to=`: SMS, RCS and e-mail compared over
/// the tenant's campaigns, by the days their messages' statuses changed.
#[utoipa::path(
    operation_id = "campaigns_channels",
    get,
    path = "/v1/reports/channels",
    tag = "reports",
    summary = "SMS, RCS and e-mail compared over the tenant's campaigns",
    params(("from" = String, Query, description = "YYYY-MM-DD"), ("to" = String, Query, description = "YYYY-MM-DD"), ("format" = String, Query, description = "json or csv")),
    responses((status = 200, description = "By channel", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn channels(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let range = day_range(&q)?;
    let c = app.store.campaigns();
    let mut sum: BTreeMap<String, i64> = BTreeMap::new();
    for id in c.campaign_ids(&tenant.cfg.name).await.map_err(store_err)? {
        let counters = c.campaign_counters(&id).await.map_err(store_err)?;
        for (k, v) in counters {
            // Within a range, only the per-day counts of those days.
            match (range, k.rsplit_once(":d")) {
                (Some((a, b)), Some((base, day))) if day.parse::<i64>().is_ok() => {
                    let d: i64 = day.parse().unwrap_or(0);
                    if (a..=b).contains(&d) {
                        *sum.entry(base.to_string()).or_insert(0) += v;
                    }
                }
                (None, Some((_, day))) if day.parse::<i64>().is_ok() => {}
                (Some(_), _) if !k.contains(":t") => {}
                _ => *sum.entry(k).or_insert(0) += v,
            }
        }
    }
    let r = report::build(&sum, Some((0, -1)));
    match q.format.as_deref() {
        Some("csv") => Ok(csv_report(&r)),
        _ => Ok(Json(serde_json::json!({
            "from": q.from, "to": q.to,
            "channels": r.channels,
            "total": r.total,
        }))
        .into_response()),
    }
}
