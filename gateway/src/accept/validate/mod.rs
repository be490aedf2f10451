//! Turning an API request into a message: JSON shape, recipient, sender,
//! text or template, then the channel's own rules ([`sms`], [`rcs`],
//! [`email`]), times ([`schedule`]) and callbacks.
//!
//! Everything here is pure and synchronous; every refusal is an [`Invalid`]
//! with a stable code and the offending field, and nothing is stored before it
//! passes.

use std::str::FromStr;

use goniec_config::{Channel, Server, Tenant};
use goniec_core::Problem;
use serde::Deserialize;

pub mod email;
pub mod rcs;
pub mod schedule;
pub mod sms;
pub mod template;
#[cfg(test)]
mod tests;

pub use template::{render_template, VarValue, Vars, MAX_VARS, MAX_VARS_BYTES, MAX_VAR_NAME_CHARS};

use crate::accept::invalid::Invalid;
use crate::address::{normalize_email, parse_msisdn};
use crate::model::{AttachmentData, MessageData, Status, TemplateRef};
use crate::store::{Callbacks, Partitions};
use crate::templates::links::Made;
use crate::templates::Template;

/// The body of `POST /v1/messages` (and each item of a batch).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    #[schema(value_type = String, example = "sms")]
    pub channel: Channel,
    pub to: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
    /// A stored template (`/v1/templates`) giving the message's content.
    #[serde(default)]
    pub template_id: Option<String>,
    /// Its version; default the newest.
    #[serde(default)]
    pub template_version: Option<u32>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub vars: Option<Vars>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub rcs: Option<serde_json::Value>,
    #[serde(default)]
    pub email: Option<EmailRequest>,
    #[serde(default)]
    pub send_at: Option<String>,
    #[serde(default)]
    pub valid_until: Option<String>,
    #[serde(default)]
    pub callback_url: Option<String>,
    /// Which status changes are posted to the callback URL (default: the
    /// tenant's `callback_events`, else every change).
    #[serde(default)]
    pub callback_events: Option<Vec<String>>,
    #[serde(default)]
    pub client_ref: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub fallback: Option<Vec<Channel>>,
    #[serde(default)]
    pub fallback_text: Option<String>,
    #[serde(default)]
    pub transliterate: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    pub subject: String,
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub attachments: Vec<AttachmentData>,
}

/// True when `s` shows nothing: only whitespace and invisible (Unicode
/// default-ignorable) characters such as the zero-width space. Such a text
/// would reach the recipient as an empty message.
pub(super) fn is_blank(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_whitespace() || goniec_antifraud::is_default_ignorable(c))
}

/// Refuse control characters other than tab and line breaks: NUL truncates
/// or corrupts the text in SMSC and mail software, the rest are invisible.
pub(super) fn no_controls(s: &str, field: &str) -> Result<(), Invalid> {
    match s
        .chars()
        .find(|&c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        Some(c) => Err(Invalid::new(Problem::InvalidText,
            format!(
                "`{field}` contains the control character U+{:04X}; only tab and line breaks are allowed",
                u32::from(c)
            ),
        )
        .field(field)),
        None => Ok(()),
    }
}

/// Parse one JSON message, mapping serde's errors to specific problems.
pub fn parse_request(json: &str) -> Result<MessageRequest, Invalid> {
    // serde would take a JSON array as a struct's fields in order: a message
    // is an object, and anything else is refused before its contents are read.
    if !json.trim_start().starts_with('{') {
        return Err(Invalid::new(
            Problem::InvalidType,
            "the body must be a JSON object (one message); use /v1/messages/batch for several",
        ));
    }
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| json_error(&e))
}

/// Map a serde error (with its path) to a problem: syntax → 400, shape → 422.
pub fn json_error(e: &serde_path_to_error::Error<serde_json::Error>) -> Invalid {
    use serde_json::error::Category;
    let inner = e.inner();
    if matches!(
        inner.classify(),
        Category::Syntax | Category::Eof | Category::Io
    ) {
        return Invalid::new(
            Problem::MalformedJson,
            format!("request body is not valid JSON: {inner}"),
        );
    }
    let msg = inner.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let named = msg.split('`').nth(1).unwrap_or_default().to_string();
    let join = |base: &str, name: &str| {
        if base.is_empty() {
            name.to_string()
        } else if base.ends_with(name) {
            base.to_string()
        } else {
            format!("{base}.{name}")
        }
    };
    let (code, field) = if msg.starts_with("missing field") {
        (Problem::MissingField, join(&path, &named))
    } else if msg.starts_with("unknown field") {
        (Problem::UnknownField, join(&path, &named))
    } else if msg.starts_with("unknown variant") {
        (Problem::InvalidValue, path)
    } else if msg.starts_with("invalid type") {
        (Problem::InvalidType, path)
    } else {
        (Problem::InvalidValue, path)
    };
    let mut err = Invalid::new(code, msg);
    if !field.is_empty() {
        err = err.field(field);
    }
    err
}

/// Limits and defaults validation needs, taken from config once.
#[derive(Debug, Clone)]
pub struct Rules {
    pub region: Option<phonenumber::country::Id>,
    pub max_segments: u32,
    pub max_text_chars: usize,
    /// How far ahead `send_at` may be (the store's retention).
    pub max_schedule_ms: i64,
    /// Most bytes of e-mail attachments per message, decoded.
    pub max_attachments_bytes: u64,
}

impl Rules {
    pub fn new(server: &Server) -> Self {
        Rules {
            region: phonenumber::country::Id::from_str(&server.default_region).ok(),
            max_segments: server.max_segments,
            max_text_chars: server.max_text_chars,
            max_schedule_ms: i64::MAX,
            max_attachments_bytes: server.max_attachments.bytes(),
        }
    }
}

/// A request that passed every check, ready to store.
#[derive(Debug)]
pub struct Valid {
    pub data: MessageData,
    /// Which status changes go to a callback URL.
    pub callbacks: Callbacks,
    /// Tracked links its texts show: (code, target), stored with the message.
    pub links: Vec<(String, String)>,
    /// Its recipient's number as read here (SMS, RCS), for anti-fraud.
    pub phone: Option<crate::address::Msisdn>,
}

/// Check and normalise a request for `tenant`; a valid message gets its id in
/// its recipient's partition. `now` is Unix ms.
pub fn validate(
    mut req: MessageRequest,
    tenant: &Tenant,
    rules: &Rules,
    partitions: Partitions,
    now: i64,
    template: Option<&Template>,
) -> Result<Valid, Invalid> {
    // First: past a limit the parser kept only some of the vars, and no other
    // answer may depend on that partial set.
    if let Some(vars) = &req.vars {
        vars.check()?;
    }
    let (to, phone) = match req.channel {
        Channel::Sms | Channel::Rcs => {
            let m = parse_msisdn(&req.to, rules.region, true)?;
            (m.e164.clone(), Some(m))
        }
        Channel::Email => (normalize_email(&req.to)?, None),
    };

    // The shape of `from` here; whether it is registered for the tenant is
    // checked at screening, with or without anti-fraud (it also knows pools).
    if let Some(from) = &req.from {
        let bad = |detail: &str| Invalid::new(Problem::InvalidSender, detail).field("from");
        if from.chars().any(char::is_control) {
            return Err(bad(
                "`from` may not contain control characters (CR, LF, NUL, ...)",
            ));
        }
        match req.channel {
            Channel::Sms | Channel::Rcs => {
                if from.trim().is_empty() || from.chars().count() > 64 {
                    return Err(bad("`from` must be 1 to 64 characters"));
                }
            }
            Channel::Email => {
                if from.len() > 320 || lettre::message::Mailbox::from_str(from).is_err() {
                    return Err(bad(
                        "`from` must be an e-mail address, optionally with a name: \
                         `Name <name@example.com>`",
                    ));
                }
            }
        }
    }

    let mut made = Made::default();
    let template_ref = match template {
        Some(t) => {
            apply_template(&mut req, t, tenant, &mut made)?;
            Some(TemplateRef {
                id: t.id.clone(),
                version: t.version,
            })
        }
        None => None,
    };
    let mut text = match (&req.text, &req.template) {
        (Some(_), Some(_)) => {
            return Err(Invalid::new(
                Problem::ConflictingFields,
                "give either `text` or `template`, not both",
            )
            .field("template"))
        }
        (Some(t), None) => Some(t.clone()),
        (None, Some(tpl)) => Some(render_template(tpl, req.vars.as_ref().map(|v| &v.map))?),
        (None, None) => None,
    };
    if req.vars.is_some() && req.template.is_none() && template_ref.is_none() {
        return Err(
            Invalid::new(Problem::ConflictingFields, "`vars` needs a `template`").field("vars"),
        );
    }

    let mut segments = 1;
    let mut encoding = None;
    let mut transliterated = false;
    let mut email = None;
    match req.channel {
        Channel::Sms => {
            let shape = sms::body(text.as_mut(), req.transliterate, rules)?;
            segments = shape.segments;
            encoding = Some(shape.encoding.to_string());
            transliterated = shape.transliterated;
        }
        Channel::Rcs => rcs::body(text.as_deref(), req.rcs.as_ref())?,
        Channel::Email => email = Some(email::body(req.email, &mut text, rules)?),
    }
    if let Some(t) = &text {
        no_controls(t, "text")?;
        if t.chars().count() > rules.max_text_chars {
            return Err(Invalid::new(
                Problem::TextTooLong,
                format!("text is over {} characters", rules.max_text_chars),
            )
            .field("text"));
        }
    }

    let (send_at, valid_until) = schedule::times(
        req.send_at.as_deref(),
        req.valid_until.as_deref(),
        now,
        rules,
    )?;

    let callback_url = match &req.callback_url {
        Some(u) => Some(
            check_callback_url(u, tenant.allow_private_callbacks)
                .map_err(|e| e.field("callback_url"))?,
        ),
        None => None,
    };
    if let Some(r) = &req.client_ref {
        if r.is_empty() || r.len() > 128 || r.chars().any(char::is_control) {
            return Err(Invalid::new(
                Problem::InvalidValue,
                "`client_ref` must be 1 to 128 printable characters",
            )
            .field("client_ref"));
        }
    }
    let fallback = rcs::fallback(
        req.channel,
        req.fallback,
        req.fallback_text.as_deref(),
        text.as_deref(),
    )?;
    let callbacks = if callback_url.is_none() && tenant.callback_url.is_none() {
        Callbacks::None
    } else {
        match req
            .callback_events
            .as_ref()
            .or(tenant.callback_events.as_ref())
        {
            None => Callbacks::All,
            Some(events) => Callbacks::Only(callback_events(events)?),
        }
    };

    Ok(Valid {
        data: MessageData {
            id: partitions.message_id(&tenant.name, &to),
            tenant: tenant.name.clone(),
            channel: req.channel,
            to,
            from: req.from,
            text,
            email,
            rcs: req.rcs,
            send_at,
            valid_until,
            callback_url,
            client_ref: req.client_ref,
            fallback,
            fallback_text: req.fallback_text,
            segments,
            encoding,
            transliterated,
            created_at: now,
            template: template_ref,
            campaign: None,
        },
        callbacks,
        links: made.links,
        phone,
    })
}

/// Fill a stored template into the request: its content takes the place of
/// `text`, `email`, `rcs` and `fallback_text`, which the request may not give.
fn apply_template(
    req: &mut MessageRequest,
    t: &Template,
    tenant: &Tenant,
    made: &mut Made,
) -> Result<(), Invalid> {
    for (field, set) in [
        ("text", req.text.is_some()),
        ("template", req.template.is_some()),
        ("email", req.email.is_some()),
        ("rcs", req.rcs.is_some()),
        ("fallback_text", req.fallback_text.is_some()),
    ] {
        if set {
            return Err(Invalid::new(
                Problem::ConflictingFields,
                format!("`template_id` gives the content; `{field}` cannot be given with it"),
            )
            .field(field));
        }
    }
    if t.doc.channel != req.channel {
        return Err(Invalid::new(
            Problem::ConflictingFields,
            format!(
                "template `{}` is for {} messages, not {}",
                t.id, t.doc.channel, req.channel
            ),
        )
        .field("channel"));
    }
    let base = tenant.links.domain.as_deref();
    if t.has_links() && base.is_none() {
        return Err(Invalid::new(
            Problem::InvalidTemplate,
            format!(
                "template `{}` has tracked links but this tenant has no link domain \
                 ([tenants.links] domain)",
                t.id
            ),
        )
        .field("template_id"));
    }
    let vars = req.vars.as_ref().map(|v| &v.map);
    let values = |name: &str| match vars.and_then(|v| v.get(name)) {
        Some(VarValue::Text(s) | VarValue::Number(s)) => Some(s.clone()),
        Some(VarValue::Bool(b)) => Some(b.to_string()),
        Some(VarValue::Other) | None => None,
    };
    let content = t.fill(&values, &mut |target| {
        made.short(base.unwrap_or_default(), target)
    })?;
    req.text = content.text;
    req.rcs = content.rcs;
    req.fallback_text = content.fallback_text;
    req.transliterate |= content.transliterate;
    req.email = content.email.map(|e| EmailRequest {
        subject: e.subject,
        html: e.html,
        text: e.text,
        attachments: e.attachments,
    });
    Ok(())
}

/// The statuses named in `callback_events`: at least one, each a status a
/// message can move to.
fn callback_events(events: &[String]) -> Result<Vec<Status>, Invalid> {
    let bad = |detail: String| Invalid::new(Problem::InvalidValue, detail).field("callback_events");
    if events.is_empty() || events.len() > goniec_config::CALLBACK_EVENTS.len() {
        return Err(bad(format!(
            "`callback_events` must name 1 to {} statuses",
            goniec_config::CALLBACK_EVENTS.len()
        )));
    }
    events
        .iter()
        .map(|e| match e.parse::<Status>() {
            Ok(s) if goniec_config::CALLBACK_EVENTS.contains(&s.as_str()) => Ok(s),
            _ => Err(bad(format!(
                "{e:?} is not a status a callback can report; one of {}",
                goniec_config::CALLBACK_EVENTS.join(", ")
            ))),
        })
        .collect()
}

/// Allow only http(s) callback URLs, and no loopback/private/link-local (or
/// otherwise non-public, in any notation) targets unless the tenant allows
/// them, so the gateway cannot be pointed at internal services. The rule is
/// [`goniec_config::net::check_callback_url`], shared with `check-config`;
/// host names are checked again, after resolution, when the callback is sent.
pub fn check_callback_url(raw: &str, allow_private: bool) -> Result<String, Invalid> {
    goniec_config::net::check_callback_url(raw, allow_private)
        .map(String::from)
        .map_err(|e| Invalid::new(Problem::InvalidCallbackUrl, e.to_string()))
}
