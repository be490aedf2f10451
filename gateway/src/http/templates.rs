//! `/v1/templates`: a tenant's stored templates. Every update is a new version;
//! old versions stay readable (`?version=N`) and messages record the version
//! they used. `POST /v1/templates/{id}/preview` fills one with sample values
//! and tells an SMS's encoding and segments, with and without transliteration.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use goniec_config::Channel;
use goniec_connectors::text;
use goniec_core::Problem;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery, AuthTenant};
use super::limits::{BodyKind, Incoming};
use crate::accept::invalid::{Invalid, Refused};
use crate::accept::templates::fetch;
use crate::accept::validate::{self, MessageRequest};
use crate::app::App;
use crate::model::{format_ms, now_ms};
use crate::templates::{check_id, Content, StoredDoc, Template, TemplateDoc};
use crate::tenants::TenantCtx;

/// `POST /v1/templates` and `PUT /v1/templates/{id}`: the template and its id.
#[derive(Debug)]
pub struct CreateRequest {
    pub id: String,
    pub template: TemplateDoc,
}

/// Read a template body: `id` (or the path's) and the document, each
/// problem naming its field.
fn parse_body(
    mut doc: serde_json::Value,
    path_id: Option<&str>,
) -> Result<CreateRequest, ApiError> {
    let Some(o) = doc.as_object_mut() else {
        return Err(ApiError::new(
            Problem::InvalidType,
            "the body must be a JSON object",
        ));
    };
    let id = match (o.remove("id"), path_id) {
        (Some(serde_json::Value::String(b)), Some(p)) if b != p => {
            return Err(ApiError::new(
                Problem::ConflictingFields,
                "`id` in the body differs from the path's",
            )
            .field("id"))
        }
        (_, Some(p)) => p.to_string(),
        (Some(serde_json::Value::String(b)), None) => b,
        (Some(_), None) => {
            return Err(ApiError::new(Problem::InvalidType, "`id` must be a string").field("id"))
        }
        (None, None) => {
            return Err(
                ApiError::new(Problem::MissingField, "a template needs an `id`").field("id"),
            )
        }
    };
    let template: TemplateDoc = serde_path_to_error::deserialize(doc)
        .map_err(|e| ApiError::from(crate::accept::validate::json_error(&e)))?;
    Ok(CreateRequest { id, template })
}

#[derive(Debug, Serialize)]
struct TemplateView<'a> {
    id: &'a str,
    version: u32,
    latest: u32,
    created_at: String,
    #[serde(flatten)]
    template: &'a TemplateDoc,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionQuery {
    #[serde(default)]
    version: Option<u32>,
}

/// Check a document as a message would be checked: compiled, then filled
/// with sample values and validated for a sample recipient of its channel
/// (RCS content, attachments, segment limits).
fn check(app: &App, tenant: &TenantCtx, id: &str, doc: TemplateDoc) -> Result<(), Invalid> {
    check_id(id)?;
    let t = Template::compile(id, 1, doc)?;
    let samples = t.sample_values();
    let content = t.fill(&|n| samples.get(n).cloned(), &mut |_| sample_link(tenant))?;
    let req = sample_request(t.doc.channel, content);
    validate::validate(
        req,
        &tenant.cfg,
        &app.rules,
        app.store.partitions(),
        now_ms(),
        None,
    )
    .map(|_| ())
}

/// A short link as it will look (the code is random per recipient).
fn sample_link(tenant: &TenantCtx) -> String {
    format!(
        "{}/xxxxxxxxxx",
        tenant
            .cfg
            .links
            .domain
            .as_deref()
            .unwrap_or("https://link.invalid")
            .trim_end_matches('/')
    )
}

fn sample_request(channel: Channel, c: Content) -> MessageRequest {
    let json = serde_json::json!({
        "channel": channel,
        "to": match channel { Channel::Email => "sample@example.com", _ => "+48600000000" },
        "text": c.text,
        "rcs": c.rcs,
        "email": c.email,
        "fallback": if channel == Channel::Rcs && c.fallback_text.is_some() { Some(["sms"]) } else { None },
        "fallback_text": c.fallback_text,
        "transliterate": c.transliterate,
    });
    // Built from our own types: it always parses.
    serde_json::from_value(strip_nulls(json)).expect("a sample request parses")
}

fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(o) => o.into_iter().filter(|(_, v)| !v.is_null()).collect(),
        v => v,
    }
}

async fn store_version(
    app: &App,
    tenant: &TenantCtx,
    req: CreateRequest,
    must_be_new: bool,
) -> Result<Response, ApiError> {
    check(app, tenant, &req.id, req.template.clone())?;
    let name = &tenant.cfg.name;
    let templates = app.store.templates();
    if must_be_new
        && templates
            .template(name, &req.id, None)
            .await
            .map_err(|_| ApiError::store_unavailable())?
            .is_some()
    {
        return Err(ApiError::new(
            Problem::InvalidState,
            format!(
                "template `{}` exists; PUT /v1/templates/{} stores a new version",
                req.id, req.id
            ),
        )
        .field("id"));
    }
    let now = now_ms();
    let doc = serde_json::to_string(&StoredDoc {
        created_at: now,
        template: req.template.clone(),
    })
    .map_err(|e| ApiError::from(Refused::Internal(e.to_string())))?;
    let version = templates
        .put_template(name, &req.id, &doc)
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    tracing::info!(tenant = %name, template = %req.id, version, "Template stored.");
    let view = TemplateView {
        id: &req.id,
        version,
        latest: version,
        created_at: format_ms(now),
        template: &req.template,
    };
    let status = if version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

/// `POST /v1/templates`: a new template (version 1).
#[utoipa::path(
    operation_id = "templates_create",
    post,
    path = "/v1/templates",
    tag = "templates",
    summary = "Store a new template (version 1); the body is the template with its `id`",
    request_body = crate::templates::TemplateDoc,
    responses((status = 201, description = "Stored", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn create(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    headers: HeaderMap,
    body: Incoming,
) -> Result<Response, ApiError> {
    let doc: serde_json::Value = body.json(&headers, BodyKind::Message).await?;
    store_version(&app, &tenant, parse_body(doc, None)?, true).await
}

/// `PUT /v1/templates/{id}`: the next version (or the first).
#[utoipa::path(
    operation_id = "templates_update",
    put,
    path = "/v1/templates/{id}",
    tag = "templates",
    summary = "Store the next version of a template",
    params(("id" = String, Path, description = "Template id")),
    request_body = crate::templates::TemplateDoc,
    responses((status = 200, description = "Stored (201 for a first version)", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn update(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Incoming,
) -> Result<Response, ApiError> {
    let doc: serde_json::Value = body.json(&headers, BodyKind::Message).await?;
    let req = parse_body(doc, Some(&id))?;
    store_version(&app, &tenant, req, false).await
}

async fn load(
    app: &App,
    tenant: &TenantCtx,
    id: &str,
    version: Option<u32>,
) -> Result<(crate::store::content::StoredTemplate, StoredDoc), ApiError> {
    let stored = app
        .store
        .templates()
        .template(&tenant.cfg.name, id, version)
        .await
        .map_err(|_| ApiError::store_unavailable())?
        .ok_or_else(|| ApiError::not_found("template"))?;
    let doc: StoredDoc = serde_json::from_str(&stored.doc)
        .map_err(|e| ApiError::from(Refused::Internal(format!("stored template: {e}"))))?;
    Ok((stored, doc))
}

/// `GET /v1/templates/{id}[?version=N]`.
#[utoipa::path(
    operation_id = "templates_get",
    get,
    path = "/v1/templates/{id}",
    tag = "templates",
    summary = "A template (its newest version, or `?version=N`)",
    params(("id" = String, Path, description = "Template id"), ("version" = String, Query, description = "A version")),
    responses((status = 200, description = "The template", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn get(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> Result<Response, ApiError> {
    let (stored, doc) = load(&app, &tenant, &id, q.version).await?;
    Ok(Json(TemplateView {
        id: &stored.id,
        version: stored.version,
        latest: stored.latest,
        created_at: format_ms(doc.created_at),
        template: &doc.template,
    })
    .into_response())
}

/// `GET /v1/templates`: every template's newest version.
#[utoipa::path(
    operation_id = "templates_list",
    get,
    path = "/v1/templates",
    tag = "templates",
    summary = "Every template's newest version",
    responses((status = 200, description = "Templates", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn list(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
) -> Result<Response, ApiError> {
    let ids = app
        .store
        .templates()
        .template_ids(&tenant.cfg.name)
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        // Deleted between the two reads: skipped.
        if let Ok((stored, doc)) = load(&app, &tenant, &id, None).await {
            out.push(serde_json::json!({
                "id": stored.id,
                "version": stored.version,
                "channel": doc.template.channel,
                "name": doc.template.name,
                "created_at": format_ms(doc.created_at),
            }));
        }
    }
    Ok(Json(serde_json::json!({ "templates": out })).into_response())
}

/// `DELETE /v1/templates/{id}`: refused while a running campaign uses it.
#[utoipa::path(
    operation_id = "templates_delete",
    delete,
    path = "/v1/templates/{id}",
    tag = "templates",
    summary = "Delete a template (409 template-in-use while a campaign uses it)",
    params(("id" = String, Path, description = "Template id")),
    responses((status = 204, description = "Deleted")),
    security(("api_key" = []))
)]
pub async fn delete(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let user = crate::campaigns::using_template(&app, &tenant.cfg.name, &id)
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    if let Some(c) = user {
        return Err(ApiError::new(
            Problem::TemplateInUse,
            format!("campaign {c} uses template `{id}` and has not finished; cancel it or wait"),
        ));
    }
    let gone = app
        .store
        .templates()
        .delete_template(&tenant.cfg.name, &id)
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    app.templates.forget(&tenant.cfg.name, &id);
    if !gone {
        return Err(ApiError::not_found("template"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    #[serde(default)]
    #[schema(value_type = Object)]
    vars: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    version: Option<u32>,
}

#[derive(Serialize)]
struct SmsCost {
    encoding: &'static str,
    segments: u32,
    characters: usize,
}

fn cost(t: &str) -> SmsCost {
    let a = text::analyze(t);
    SmsCost {
        encoding: a.encoding.as_str(),
        segments: a.segments,
        characters: t.chars().count(),
    }
}

/// `POST /v1/templates/{id}/preview`: the filled content for sample `vars`,
/// and for SMS what it costs as it is and transliterated. Short links are
/// shown with a placeholder code; nothing is stored.
#[utoipa::path(
    operation_id = "templates_preview",
    post,
    path = "/v1/templates/{id}/preview",
    tag = "templates",
    summary = "Fill a template with sample values; for SMS, what it costs",
    params(("id" = String, Path, description = "Template id")),
    request_body = crate::http::templates::PreviewRequest,
    responses((status = 200, description = "Rendered content and SMS cost", body = serde_json::Value)),
    security(("api_key" = []))
)]
pub async fn preview(
    State(app): State<Arc<App>>,
    AuthTenant(tenant): AuthTenant,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Incoming,
) -> Result<Response, ApiError> {
    let req: PreviewRequest = body.json(&headers, BodyKind::Small).await?;
    let t = fetch(&app, &tenant.cfg.name, &id, req.version)
        .await?
        .ok_or_else(|| ApiError::not_found("template"))?;
    let value = |n: &str| match req.vars.get(n) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
            Some(v.to_string())
        }
        _ => None,
    };
    let content = t.fill(&value, &mut |_| sample_link(&tenant))?;
    let sms = match (t.doc.channel, &content.text) {
        (Channel::Sms, Some(body)) => {
            let plain = cost(body);
            let translit = text::transliterate(body).map(|b| cost(&b));
            Some(serde_json::json!({
                "as_written": plain,
                "transliterated": translit.unwrap_or_else(|| cost(body)),
                "sent_as": if content.transliterate { "transliterated" } else { "as_written" },
            }))
        }
        _ => None,
    };
    let rendered = serde_json::json!({
        "text": content.text,
        "rcs": content.rcs,
        "email": content.email,
        "fallback_text": content.fallback_text,
    });
    Ok(Json(serde_json::json!({
        "id": t.id,
        "version": t.version,
        "channel": t.doc.channel,
        "rendered": strip_nulls(rendered),
        "sms": sms,
    }))
    .into_response())
}
