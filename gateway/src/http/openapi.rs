//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! attributes and the request and answer types themselves, served at
//! `/openapi.json`. `gateway/tests/openapi.rs` holds it to the router (every
//! route and method, no more, no less) and to `openapi-spec-validator`.

use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

pub use crate::accept::validate::{EmailRequest, MessageRequest};
pub use crate::campaigns::{CampaignDoc, Condition, Step, StopEvent};
pub use crate::http::campaigns::{BulkEvent, BulkEvents, EventIn};
pub use crate::http::messages::{ClicksView, OptOutRequest};
pub use crate::http::templates::PreviewRequest;
pub use crate::templates::{EmailTemplate, TemplateDoc, VarDecl};

/// An `application/problem+json` answer (RFC 9457): `code` is stable, `field`
/// names the offending field or parameter.
pub type Problem = super::error::ProblemBody<'static>;
/// `202` for one message.
pub type AcceptedBody = super::messages::AcceptedBody<'static>;
/// The answer to a batch: per item, in request order.
pub type BatchBody = super::messages::BatchBody<'static>;
pub type ItemBody = super::messages::ItemBody<'static>;
/// A message with its events.
pub type MessageView = super::messages::MessageView<'static>;
pub type EventView = super::messages::EventView<'static>;
/// What a tenant's callback URL receives (signed with `Goniec-Signature`).
pub type CallbackBody = crate::webhooks::CallbackBody<'static>;

pub use crate::http::messages::BatchRequest;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(what.to_string()))
                    .build(),
            )
        };
        c.add_security_scheme(
            "api_key",
            bearer("A tenant's API key (`[[tenants]] api_keys` holds its SHA-256)"),
        );
        c.add_security_scheme(
            "admin_key",
            bearer(
                "An operator key (`[admin] api_keys`). The console's session cookie \
                 (`goniec-console`, from `POST /console/login`) works too; with it, \
                 every request but GET needs the session's `X-CSRF-Token`",
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Goniec",
        description = "Messaging gateway: SMS (SMPP), RCS Business Messaging and e-mail (SMTP), with templates, tracked links, campaigns and reports. Errors are application/problem+json with a stable `code`; callbacks are signed with `Goniec-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>`."
    ),
    paths(
        super::messages::create,
        super::messages::create_batch,
        super::messages::history,
        super::messages::show,
        super::messages::cancel,
        super::messages::opt_out,
        super::messages::opt_in,
        super::templates::create,
        super::templates::list,
        super::templates::get,
        super::templates::update,
        super::templates::delete,
        super::templates::preview,
        super::campaigns::create,
        super::campaigns::list,
        super::campaigns::show,
        super::campaigns::audience,
        super::campaigns::rejects,
        super::campaigns::stream,
        super::campaigns::events,
        super::campaigns::event,
        super::campaigns::action,
        super::campaigns::report,
        super::campaigns::channels,
        super::admin::dead_letters,
        super::admin::held,
        super::admin::decide,
        super::admin::suppressions,
        super::admin::suppress,
        super::admin::unsuppress,
        super::admin::dead_letter_action,
        super::admin::pauses,
        super::admin::pause,
        super::admin::resume,
        super::admin::audit,
        super::console::overview,
        super::console::stream,
        super::console::page,
        super::console::login,
        super::console::logout,
        super::console::script,
        super::console::style,
        super::bounce::email_bounce,
        super::rcs::event,
        super::links::follow,
        super::healthz,
        super::readyz,
        super::metrics,
        openapi_json,
        docs,
    ),
    components(schemas(
        Problem,
        AcceptedBody,
        BatchBody,
        ItemBody,
        MessageView,
        EventView,
        ClicksView,
        CallbackBody,
        MessageRequest,
        EmailRequest,
        BatchRequest,
        OptOutRequest,
        TemplateDoc,
        EmailTemplate,
        VarDecl,
        PreviewRequest,
        CampaignDoc,
        Step,
        Condition,
        StopEvent,
        EventIn,
        BulkEvent,
        BulkEvents,
    )),
    modifiers(&Security),
    tags(
        (name = "messages", description = "Send messages and follow them"),
        (name = "templates", description = "Stored templates"),
        (name = "campaigns", description = "Campaigns: audiences, steps, progress"),
        (name = "reports", description = "Campaign and channel reports"),
        (name = "console", description = "The operator console: its page, login and logout"),
        (name = "links", description = "Tracked-link redirects (no API key)"),
        (name = "opt-outs", description = "Recipients' opt-outs"),
        (name = "admin", description = "Operator endpoints"),
        (name = "webhooks", description = "Events from carriers and relays, signed"),
        (name = "health", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// The document with the callbacks the gateway posts (OpenAPI `webhooks`):
/// status changes and clicks (`CallbackBody`) and replies, each signed.
pub fn document() -> serde_json::Value {
    let mut v = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    // Every operation but the link redirect (a plain 404 page) answers a
    // problem for bad input, and one that needs a key a 401: said once here
    // rather than on each handler.
    let problem = |what: &str| {
        serde_json::json!({"description": what, "content": {"application/problem+json": {
            "schema": {"$ref": "#/components/schemas/ProblemBody"}}}})
    };
    if let Some(paths) = v["paths"].as_object_mut() {
        for op in paths
            .values_mut()
            .filter_map(|p| p.as_object_mut())
            .flat_map(|p| p.values_mut())
        {
            // The redirect and the console's pages answer with HTML.
            if op["tags"][0] == "links" || op["tags"][0] == "console" {
                continue;
            }
            let keyed = op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|r| r.as_object().is_some_and(|o| !o.is_empty()))
            });
            if keyed {
                op["responses"]["401"] = problem("No valid key");
            }
            op["responses"]["4XX"] =
                problem("A problem (RFC 9457) with a stable `code`; see ProblemBody");
        }
    }
    // Every problem code the API answers with, from the one list of them.
    let codes: Vec<&str> = goniec_core::Problem::ALL
        .iter()
        .map(|p| p.as_str())
        .collect();
    if let Some(code) = v.pointer_mut("/components/schemas/ProblemBody/properties/code") {
        code["enum"] = serde_json::json!(codes);
    }
    let signed = |summary: &str, schema: serde_json::Value| {
        serde_json::json!({"post": {
            "summary": summary,
            "parameters": [{"name": "Goniec-Signature", "in": "header", "required": true,
                "description": "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\" with the tenant's webhook_secret>",
                "schema": {"type": "string"}}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema}}},
            "responses": {"200": {"description": "Any 2xx acknowledges it; anything else is retried with backoff, then dead-lettered"}}
        }})
    };
    v["webhooks"] = serde_json::json!({
        "status": signed(
            "A message's status changed (or, with `event: clicked`, a person followed its tracked link); a JSON array of these with `callback_batch`",
            serde_json::json!({"$ref": "#/components/schemas/CallbackBody"})),
        "inbound": signed(
            "A recipient replied (to the tenant's `inbound_url`)",
            serde_json::json!({"type": "object", "required": ["type", "id", "channel", "from", "to", "at"],
                "properties": {"type": {"const": "inbound"}, "id": {"type": "string"}, "channel": {"type": "string"},
                    "from": {"type": "string"}, "to": {"type": "string"}, "text": {"type": "string"},
                    "postback": {"type": "string"}, "connector": {"type": "string"}, "at": {"type": "string"}}})),
    });
    v
}

/// `GET /openapi.json`.
#[utoipa::path(
    operation_id = "openapi_openapi_json",
    get,
    path = "/openapi.json",
    tag = "health",
    summary = "This document",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)),
    security(())
)]
pub async fn openapi_json() -> Response {
    axum::Json(document()).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /docs`: the operations of the document as one plain page (no
/// scripts, no external assets), linking to `/openapi.json`.
#[utoipa::path(
    get,
    operation_id = "health_docs",
    path = "/docs",
    tag = "health",
    summary = "A readable reference of this API",
    responses((status = 200, description = "HTML", body = String, content_type = "text/html")),
    security(())
)]
pub async fn docs() -> Response {
    let doc = document();
    let mut rows = String::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for m in ["get", "post", "put", "delete"] {
                let Some(op) = item.get(m) else { continue };
                let params: Vec<String> = op["parameters"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|p| {
                                format!(
                                    "<code>{}</code> ({}): {}",
                                    escape(p["name"].as_str().unwrap_or("")),
                                    escape(p["in"].as_str().unwrap_or("")),
                                    escape(p["description"].as_str().unwrap_or(""))
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let body = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                    .as_str()
                    .and_then(|r| r.rsplit('/').next())
                    .map(|s| format!("<br>body: <code>{}</code>", escape(s)))
                    .unwrap_or_default();
                let auth = match op["security"][0].as_object().and_then(|o| o.keys().next()) {
                    Some(k) => escape(k),
                    None => "none".into(),
                };
                rows.push_str(&format!(
                    "<tr><td><b>{}</b></td><td><code>{}</code></td><td>{}{}{}</td><td>{}</td></tr>\n",
                    m.to_uppercase(),
                    escape(path),
                    escape(op["summary"].as_str().unwrap_or("")),
                    body,
                    if params.is_empty() { String::new() } else { format!("<br>{}", params.join("<br>")) },
                    auth
                ));
            }
        }
    }
    let codes = goniec_core::Problem::ALL
        .iter()
        .map(|p| format!("<code>{}</code> {}", p.as_str(), p.http_status()))
        .collect::<Vec<_>>()
        .join(", ");
    let html = format!(
        "<!doctype html><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>Goniec API</title><style>body{{font:15px/1.4 system-ui,sans-serif;margin:2em;max-width:70em}}\
         td{{padding:.3em .6em;vertical-align:top;border-bottom:1px solid #ddd}}code{{background:#f4f4f4}}</style>\
         <h1>Goniec API</h1><p>{}</p><p>The machine-readable document: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI 3.1).</p>\
         <table><tr><th>method</th><th>path</th><th>what</th><th>key</th></tr>\n{rows}</table>\
         <h2>Problem codes</h2><p>{codes}</p>",
        escape(doc["info"]["description"].as_str().unwrap_or(""))
    );
    (
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}
