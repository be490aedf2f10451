//! `/v1/messages`: submit one or a batch, read status and history, cancel.

use goniec_core::Problem;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::authenticate;
use super::error::{ApiError, ProblemBody};
use super::extract::{ApiPath, ApiQuery, AuthTenant};
use super::limits::{BodyKind, Incoming};
use crate::accept::{accept, idempotency, Accepted, Answer, Idem, Items, Outcome, Refused};
use crate::address::{normalize_email, normalize_msisdn};
use crate::app::App;
use crate::model::{format_ms, is_message_id, now_ms, Record, Status};
use crate::store::{Change, HistoryKey, Transition};
use crate::tenants::TenantCtx;

/// The answer for one accepted message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AcceptedBody<'a> {
    id: &'a str,
    #[schema(value_type = String)]
    status: Status,
    segments: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    transliterated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    send_at: Option<String>,
    /// Anti-fraud reasons: why it is held or scheduled.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    reasons: &'a [&'static str],
}

impl<'a> AcceptedBody<'a> {
    fn of(a: &'a Accepted) -> Self {
        AcceptedBody {
            id: &a.id,
            status: a.status,
            segments: a.segments,
            encoding: a.encoding.as_deref(),
            transliterated: a.transliterated,
            send_at: a.send_at.map(format_ms),
            reasons: &a.reasons,
        }
    }
}

/// The problem of an item anti-fraud rejected or that is not valid.
fn problem(o: &Outcome) -> Option<ApiError> {
    match o {
        Outcome::Accepted(_) => None,
        Outcome::Rejected { id, reasons, .. } => Some(ApiError::rejected(id, reasons.clone())),
        Outcome::Invalid(e) => Some(ApiError::from(e.clone())),
    }
}

fn json<T: Serialize>(value: &T) -> Result<String, Refused> {
    serde_json::to_string(value).map_err(|e| Refused::Internal(e.to_string()))
}

/// The answer to `POST /v1/messages`: the message with its status (202), or
/// the problem (422) when anti-fraud rejected it.
fn render_one(outcomes: &[Outcome]) -> Result<Answer, Refused> {
    match (outcomes.first(), outcomes.first().and_then(problem)) {
        (_, Some(e)) => Ok(Answer {
            status: e.status,
            body: json(&e.body())?,
        }),
        (Some(Outcome::Accepted(a)), None) => Ok(Answer {
            status: 202,
            body: json(&AcceptedBody::of(a))?,
        }),
        _ => Err(Refused::Internal("no outcome for the message".into())),
    }
}

/// The answer to `POST /v1/messages/batch`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchBody<'a> {
    accepted: usize,
    rejected: usize,
    /// In request order.
    results: Vec<ItemBody<'a>>,
}

/// `POST /v1/messages/batch`: up to `server.max_batch` messages (the body is
/// read item by item by `accept`; this type only describes it).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct BatchRequest {
    pub messages: Vec<crate::accept::validate::MessageRequest>,
}

/// One item of a batch answer: the message, or `{"error": <problem>}`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ItemBody<'a> {
    Accepted(AcceptedBody<'a>),
    Refused { error: ProblemBody<'a> },
}

/// The answer to `POST /v1/messages/batch`: counts and each item's answer;
/// 207 unless all were accepted.
fn render_batch(outcomes: &[Outcome]) -> Result<Answer, Refused> {
    let problems: Vec<Option<ApiError>> = outcomes.iter().map(problem).collect();
    let results: Vec<ItemBody<'_>> = outcomes
        .iter()
        .zip(&problems)
        .filter_map(|(o, p)| match (o, p) {
            (_, Some(e)) => Some(ItemBody::Refused { error: e.body() }),
            (Outcome::Accepted(a), None) => Some(ItemBody::Accepted(AcceptedBody::of(a))),
            _ => None,
        })
        .collect();
    let accepted = problems.iter().filter(|p| p.is_none()).count();
    let rejected = outcomes.len() - accepted;
    let body = json(&BatchBody {
        accepted,
        rejected,
        results,
    })?;
    let status = if rejected == 0 { 202 } else { 207 };
    Ok(Answer { status, body })
}

fn json_response(status: u16, body: String) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn problem_response(status: u16, body: String) -> Response {
    let mut r = json_response(status, body);
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

/// `POST /v1/messages`.
#[utoipa::path(
    operation_id = "messages_create",
    post,
    path = "/v1/messages",
    tag = "messages",
    summary = "Send one message (`Idempotency-Key` honoured)",
    request_body = crate::accept::validate::MessageRequest,
    responses((status = 202, description = "Accepted (queued, scheduled or held)", body = crate::http::messages::AcceptedBody<'static>)),
    security(("api_key" = []))
)]
pub async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Incoming,
) -> Result<Response, ApiError> {
    submit(&app, &headers, body, BodyKind::Message).await
}

/// `POST /v1/messages/batch`: every item is validated on its own; the valid ones are
/// stored in one round trip; results come back in request order.
#[utoipa::path(
    operation_id = "messages_create_batch",
    post,
    path = "/v1/messages/batch",
    tag = "messages",
    summary = "Send up to 10,000 messages; each item succeeds or fails on its own",
    request_body = crate::http::messages::BatchRequest,
    responses((status = 202, description = "Per-item results in request order (207 when some were refused)", body = crate::http::messages::BatchBody<'static>)),
    security(("api_key" = []))
)]
pub async fn create_batch(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Incoming,
) -> Result<Response, ApiError> {
    submit(&app, &headers, body, BodyKind::Batch).await
}

/// Read a submission and hand it to the [`accept`] layer.
async fn submit(
    app: &App,
    headers: &HeaderMap,
    body: Incoming,
    kind: BodyKind,
) -> Result<Response, ApiError> {
    if app.flags.shutting_down() {
        return Err(ApiError::shutting_down());
    }
    // From the headers alone, before a byte of the body is read (after the
    // shutdown check: a draining gateway says so to everyone).
    let tenant = authenticate(app, headers)?;
    let body = body.read(headers, kind).await?;
    std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(Problem::MalformedJson, "request body is not UTF-8"))?;
    // A replay answers before anything else is checked: the first answer stands even
    // if the request would now be refused (rate limit, valid_until passed).
    let key = headers.get("idempotency-key").map(HeaderValue::as_bytes);
    let idem = idempotency::begin(app, &tenant, key, &body).await?;
    if let Idem::Replay { status, body } = idem {
        let mut r = json_response(status, body);
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        return Ok(r);
    }
    let single = !matches!(kind, BodyKind::Batch);
    let result = if single {
        accept(app, &tenant, Items::One(body), &idem, render_one).await
    } else {
        let max = app.cfg.server.max_batch;
        accept(
            app,
            &tenant,
            Items::Batch { body, max },
            &idem,
            render_batch,
        )
        .await
    };
    match result {
        Ok((outcomes, answer)) => Ok(
            if single && !matches!(outcomes.first(), Some(Outcome::Accepted(_))) {
                problem_response(answer.status, answer.body)
            } else {
                json_response(answer.status, answer.body)
            },
        ),
        Err(e) => {
            idempotency::release(app, &tenant, &idem).await;
            Err(e.into())
        }
    }
}

/// A message as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MessageView<'a> {
    id: &'a str,
    #[schema(value_type = String)]
    status: Status,
    channel: &'a str,
    to: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ref: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    segments: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'a str>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    send_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_until: Option<String>,
    /// The stored template (and version) its content came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    template: Option<&'a crate::model::TemplateRef>,
    /// The campaign step that sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    campaign: Option<&'a crate::model::CampaignRef>,
    /// Clicks on its tracked links, when there were any.
    #[serde(skip_serializing_if = "Option::is_none")]
    clicks: Option<ClicksView>,
    events: Vec<EventView<'a>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClicksView {
    clicks: u64,
    prefetches: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_click_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_click_at: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventView<'a> {
    #[schema(value_type = String)]
    status: Status,
    at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

fn view(r: &Record) -> MessageView<'_> {
    MessageView {
        id: &r.data.id,
        status: r.status,
        channel: r.data.channel.as_str(),
        to: &r.data.to,
        from: r.data.from.as_deref(),
        client_ref: r.data.client_ref.as_deref(),
        text: r.data.text.as_deref(),
        subject: r.data.email.as_ref().map(|e| e.subject.as_str()),
        segments: r.data.segments,
        encoding: r.data.encoding.as_deref(),
        created_at: format_ms(r.data.created_at),
        send_at: r.data.send_at.map(format_ms),
        valid_until: r.data.valid_until.map(format_ms),
        template: r.data.template.as_ref(),
        campaign: r.data.campaign.as_ref(),
        clicks: Some(r.clicks)
            .filter(|c| c.clicks + c.prefetches > 0)
            .map(|c| ClicksView {
                clicks: c.clicks,
                prefetches: c.prefetches,
                first_click_at: c.first_click_at.map(format_ms),
                last_click_at: c.last_click_at.map(format_ms),
            }),
        events: r
            .events
            .iter()
            .map(|e| EventView {
                status: e.status,
                at: format_ms(e.at),
                reason: e.reason.as_deref(),
                detail: e.detail.as_deref(),
            })
            .collect(),
    }
}

/// Load a message of this tenant; another tenant's message is "not found" (404, never 403).
async fn load_own(app: &App, tenant: &TenantCtx, id: &str) -> Result<Record, ApiError> {
    if !is_message_id(id) {
        return Err(ApiError::not_found("message"));
    }
    match app.store.get(id).await {
        Ok(Some(r)) if r.data.tenant == tenant.cfg.name => Ok(r),
        Ok(_) => Err(ApiError::not_found("message")),
        Err(_) => Err(ApiError::store_unavailable()),
    }
}

/// `GET /v1/messages/{id}`.
#[utoipa::path(
    operation_id = "messages_show",
    get,
    path = "/v1/messages/{id}",
    tag = "messages",
    summary = "A message with its timestamped events and clicks",
    params(("id" = String, Path, description = "Message id")),
    responses((status = 200, description = "The message", body = crate::http::messages::MessageView<'static>)),
    security(("api_key" = []))
)]
pub async fn show(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let r = load_own(&app, &tenant, &id).await?;
    Ok::<_, ApiError>(axum::Json(view(&r)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptOutRequest {
    to: String,
}

/// A phone number (E.164 or national) or an e-mail address, normalised as messages
/// are, with the channel its opt-out key is computed for.
fn recipient(app: &App, raw: &str) -> Result<(goniec_config::Channel, String), ApiError> {
    use goniec_config::Channel;
    let r = if raw.contains('@') {
        normalize_email(raw).map(|to| (Channel::Email, to))
    } else {
        normalize_msisdn(raw, app.rules.region, false).map(|to| (Channel::Sms, to))
    };
    r.map_err(|e| e.field("to").into())
}

/// `POST /v1/opt-outs` `{"to": "+48…"}`: this tenant may no longer message the
/// recipient; later submissions are rejected with `opted_out`.
#[utoipa::path(
    operation_id = "messages_opt_out",
    post,
    path = "/v1/opt-outs",
    tag = "opt-outs",
    summary = "Opt a recipient out for this tenant",
    request_body = crate::http::messages::OptOutRequest,
    responses((status = 200, description = "Opted out", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn opt_out(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    headers: HeaderMap,
    body: Incoming,
) -> Result<Response, ApiError> {
    let req: OptOutRequest = body.json(&headers, BodyKind::Small).await?;
    let (channel, to) = recipient(&app, &req.to)?;
    let key = app.screener.opt_out_key(&tenant, channel, &to);
    app.store
        .set_opt_out(&key, true, crate::model::now_ms())
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    tracing::info!(tenant = %tenant.cfg.name, to = %crate::telemetry::mask(&to), "Recipient opted out.");
    Ok(axum::Json(serde_json::json!({"to": to, "opted_out": true})).into_response())
}

/// `DELETE /v1/opt-outs/{to}`: the recipient may be messaged again (they opted in).
#[utoipa::path(
    operation_id = "messages_opt_in",
    delete,
    path = "/v1/opt-outs/{to}",
    tag = "opt-outs",
    summary = "Opt a recipient back in",
    params(("to" = String, Path, description = "Number or address")),
    responses((status = 200, description = "Opted in", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn opt_in(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    ApiPath(raw): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (channel, to) = recipient(&app, &raw)?;
    let key = app.screener.opt_out_key(&tenant, channel, &to);
    app.store
        .set_opt_out(&key, false, crate::model::now_ms())
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    Ok::<_, ApiError>(axum::Json(serde_json::json!({"to": to, "opted_out": false})).into_response())
}

/// `DELETE /v1/messages/{id}`: cancel while not yet submitted.
#[utoipa::path(
    operation_id = "messages_cancel",
    delete,
    path = "/v1/messages/{id}",
    tag = "messages",
    summary = "Cancel a message not yet submitted",
    params(("id" = String, Path, description = "Message id")),
    responses((status = 200, description = "Cancelled", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn cancel(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let r = load_own(&app, &tenant, &id).await?;
    let change = Change::new(
        Status::Cancelled,
        now_ms(),
        Some("cancelled_by_client".into()),
        None,
    );
    match app.store.transition(&id, &change).await {
        Ok(Transition::Applied { .. }) => {
            app.metrics.transitions.with_label_values(&[r.data.channel.as_str(), "cancelled"]).inc();
            Ok(axum::Json(serde_json::json!({"id": id, "status": "cancelled"})).into_response())
        }
        Ok(Transition::Refused { current }) => Err(ApiError::new(Problem::NotCancellable,
            format!("the message is already `{current}`; only messages not yet submitted can be cancelled"),
        )),
        Ok(Transition::InFlight) => Err(ApiError::new(Problem::NotCancellable,
            "the message is being submitted to the carrier right now and can no longer be cancelled",
        )),
        Ok(Transition::Missing) => Err(ApiError::not_found("message")),
        // Only receipts produce Partial; a cancel never does.
        Ok(Transition::Partial) => Err(ApiError::new(Problem::NotCancellable, "the message was already submitted")),
        Err(_) => Err(ApiError::store_unavailable()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    to: Option<String>,
    client_ref: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /v1/messages?to=…` or `?client_ref=…`: newest first, `cursor` for the next page.
#[utoipa::path(
    operation_id = "messages_history",
    get,
    path = "/v1/messages",
    tag = "messages",
    summary = "Contact history of one recipient (`to`) or `client_ref`, newest first",
    params(("to" = String, Query, description = "Recipient"), ("client_ref" = String, Query, description = "Client reference"), ("limit" = String, Query, description = "At most this many"), ("cursor" = String, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "Messages", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn history(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Response, ApiError> {
    let key = match (q.to, q.client_ref) {
        (Some(to), None) => HistoryKey::To(if to.contains('@') {
            normalize_email(&to)?
        } else {
            normalize_msisdn(&to, app.rules.region, false)?
        }),
        (None, Some(r)) => HistoryKey::ClientRef(r),
        _ => {
            return Err(ApiError::new(
                Problem::InvalidQuery,
                "give exactly one of `to` or `client_ref`",
            ))
        }
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(
            ApiError::new(Problem::InvalidQuery, "`limit` must be 1 to 500").field("limit"),
        );
    }
    if let Some(c) = &q.cursor {
        if !is_message_id(c) {
            return Err(ApiError::new(
                Problem::InvalidQuery,
                "`cursor` is not one this API returned",
            )
            .field("cursor"));
        }
    }
    let ids = app
        .store
        .history(&tenant.cfg.name, &key, q.cursor.as_deref(), limit)
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    let records = app
        .store
        .get_many(&ids)
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    let next = if ids.len() == limit {
        ids.last().cloned()
    } else {
        None
    };
    let views: Vec<MessageView<'_>> = records
        .iter()
        .flatten()
        .filter(|r| r.data.tenant == tenant.cfg.name)
        .map(view)
        .collect();
    Ok::<_, ApiError>(
        axum::Json(serde_json::json!({"messages": views, "next_cursor": next})).into_response(),
    )
}
