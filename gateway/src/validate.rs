//! Turning an API request into a message: JSON shape, E.164 numbers, e-mail
//! addresses, SMS encoding and segments, templates, times and callback URLs.
//!
//! Everything here is pure and synchronous; every refusal is an [`ApiError`] with a
//! stable code and the offending field, and nothing is stored before it passes.

use goniec_core::Problem;
use std::collections::BTreeMap;
use std::str::FromStr;

use goniec_config::{Channel, Server, Tenant};
use goniec_connectors::text;
use serde::Deserialize;

use crate::http::error::ApiError;
use crate::model::Status;
use crate::model::{AttachmentData, EmailData, MessageData};
use crate::store::{Callbacks, Partitions};

/// The body of `POST /v1/messages` (and each item of a batch).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    pub channel: Channel,
    pub to: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub vars: Option<Vars>,
    #[serde(default)]
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
    pub fallback: Option<Vec<Channel>>,
    #[serde(default)]
    pub fallback_text: Option<String>,
    #[serde(default)]
    pub transliterate: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    pub subject: String,
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub attachments: Vec<AttachmentData>,
}

/// True when `s` shows nothing: only whitespace and invisible (Unicode
/// default-ignorable) characters such as the zero-width space. Such a text
/// would reach the recipient as an empty message.
fn is_blank(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_whitespace() || goniec_antifraud::is_default_ignorable(c))
}

/// Refuse control characters other than tab and line breaks: NUL truncates
/// or corrupts the text in SMSC and mail software, the rest are invisible.
fn no_controls(s: &str, field: &str) -> Result<(), ApiError> {
    match s
        .chars()
        .find(|&c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        Some(c) => Err(ApiError::new(Problem::InvalidText,
            format!(
                "`{field}` contains the control character U+{:04X}; only tab and line breaks are allowed",
                u32::from(c)
            ),
        )
        .field(field)),
        None => Ok(()),
    }
}

/// Most template variables one message may carry.
pub const MAX_VARS: usize = 100;
/// Longest variable name, in characters.
pub const MAX_VAR_NAME_CHARS: usize = 64;
/// Most bytes of `vars` in all: names plus values as written in the request.
pub const MAX_VARS_BYTES: usize = 16 * 1024;

/// A message's template variables, read within [`MAX_VARS`], [`MAX_VAR_NAME_CHARS`]
/// and [`MAX_VARS_BYTES`]. Past a limit the parser stops keeping entries and only
/// skips over the rest, so a body of a million variables costs no more memory than
/// one of a hundred; [`validate`] then refuses the message with the limit's code.
#[derive(Debug, Default)]
pub struct Vars {
    pub map: BTreeMap<String, VarValue>,
    /// The first limit the request broke, if any.
    over: Option<VarsOver>,
}

/// One template variable's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarValue {
    Text(String),
    /// A JSON number exactly as the request wrote it.
    Number(String),
    Bool(bool),
    /// An array, object or null: refused when the template uses it.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VarsOver {
    Count,
    Name,
    Bytes,
}

impl Vars {
    /// The refusal for a broken limit.
    fn check(&self) -> Result<(), ApiError> {
        let Some(over) = self.over else {
            return Ok(());
        };
        let e = match over {
            VarsOver::Count => ApiError::new(
                Problem::TooManyVars,
                format!("`vars` may have at most {MAX_VARS} entries"),
            ),
            VarsOver::Name => ApiError::new(
                Problem::VarNameTooLong,
                format!("`vars` names may be at most {MAX_VAR_NAME_CHARS} characters"),
            ),
            VarsOver::Bytes => ApiError::new(
                Problem::VarsTooLarge,
                format!(
                    "`vars` may take at most {MAX_VARS_BYTES} bytes (names and values as sent)"
                ),
            ),
        };
        Err(e.field("vars"))
    }
}

impl<'de> Deserialize<'de> for Vars {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Vars;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of template variables")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Vars, A::Error> {
                use serde::de::IgnoredAny;
                let mut vars = Vars::default();
                let mut bytes = 0;
                while let Some(name) = m.next_key::<String>()? {
                    if vars.over.is_some() {
                        m.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    if vars.map.len() >= MAX_VARS && !vars.map.contains_key(&name) {
                        vars.over = Some(VarsOver::Count);
                    } else if name.chars().count() > MAX_VAR_NAME_CHARS {
                        vars.over = Some(VarsOver::Name);
                    }
                    if vars.over.is_some() {
                        m.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    // Measured as sent before it is built, so one huge value is
                    // refused without becoming a tree of allocations first.
                    let raw = m.next_value::<Box<serde_json::value::RawValue>>()?;
                    bytes += name.len() + raw.get().len();
                    if bytes > MAX_VARS_BYTES {
                        vars.over = Some(VarsOver::Bytes);
                        continue;
                    }
                    let value = match raw.get().as_bytes().first() {
                        // A number is kept as written: parsed, `120.50` would
                        // print as `120.5`, `18446744073709551616` as
                        // `1.8446744073709552e19` and `-0` as `-0.0`.
                        Some(b'-' | b'0'..=b'9') => VarValue::Number(raw.get().to_string()),
                        _ => match serde_json::from_str(raw.get())
                            .map_err(serde::de::Error::custom)?
                        {
                            serde_json::Value::String(s) => VarValue::Text(s),
                            serde_json::Value::Bool(b) => VarValue::Bool(b),
                            _ => VarValue::Other,
                        },
                    };
                    vars.map.insert(name, value);
                }
                Ok(vars)
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Parse one JSON message, mapping serde's errors to specific problems.
pub fn parse_request(json: &str) -> Result<MessageRequest, ApiError> {
    // serde would take a JSON array as a struct's fields in order: a message
    // is an object, and anything else is refused before its contents are read.
    if !json.trim_start().starts_with('{') {
        return Err(ApiError::new(
            Problem::InvalidType,
            "the body must be a JSON object (one message); use /v1/messages/batch for several",
        ));
    }
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| json_error(&e))
}

/// Map a serde error (with its path) to a problem: syntax → 400, shape → 422.
pub fn json_error(e: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    use serde_json::error::Category;
    let inner = e.inner();
    if matches!(
        inner.classify(),
        Category::Syntax | Category::Eof | Category::Io
    ) {
        return ApiError::new(
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
    let mut err = ApiError::new(code, msg);
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
}

/// Check and normalise a request for `tenant`; a valid message gets its id in
/// its recipient's partition. `now` is Unix ms.
pub fn validate(
    req: MessageRequest,
    tenant: &Tenant,
    rules: &Rules,
    partitions: Partitions,
    now: i64,
) -> Result<Valid, ApiError> {
    // First: past a limit the parser kept only some of the vars, and no other
    // answer may depend on that partial set.
    if let Some(vars) = &req.vars {
        vars.check()?;
    }
    let to = match req.channel {
        Channel::Sms | Channel::Rcs => normalize_msisdn(&req.to, rules.region, true)?,
        Channel::Email => normalize_email(&req.to)?,
    };

    // The shape of `from` here; whether it is registered for the tenant is
    // checked at screening, with or without anti-fraud (it also knows pools).
    if let Some(from) = &req.from {
        let bad = |detail: &str| ApiError::new(Problem::InvalidSender, detail).field("from");
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

    let mut text = match (&req.text, &req.template) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                Problem::ConflictingFields,
                "give either `text` or `template`, not both",
            )
            .field("template"))
        }
        (Some(t), None) => Some(t.clone()),
        (None, Some(tpl)) => Some(render_template(tpl, req.vars.as_ref().map(|v| &v.map))?),
        (None, None) => None,
    };
    if req.vars.is_some() && req.template.is_none() {
        return Err(
            ApiError::new(Problem::ConflictingFields, "`vars` needs a `template`").field("vars"),
        );
    }

    let mut segments = 1;
    let mut encoding = None;
    let mut transliterated = false;
    let mut email = None;
    match req.channel {
        Channel::Sms => {
            let Some(t) = text.as_mut() else {
                return Err(ApiError::new(
                    Problem::MissingField,
                    "an SMS needs `text` or `template`",
                )
                .field("text"));
            };
            if is_blank(t) {
                return Err(ApiError::new(
                    Problem::EmptyText,
                    "`text` is empty (or only spaces and invisible characters)",
                )
                .field("text"));
            }
            if req.transliterate {
                if let Some(changed) = text::transliterate(t) {
                    *t = changed;
                    transliterated = true;
                }
            }
            let info = text::analyze(t);
            if info.segments > rules.max_segments {
                return Err(ApiError::new(
                    Problem::TooManySegments,
                    format!(
                        "text needs {} {} segments; the most allowed is {}{}",
                        info.segments,
                        info.encoding.as_str(),
                        rules.max_segments,
                        if info.encoding == text::Encoding::Ucs2 && !req.transliterate {
                            " (try \"transliterate\": true)"
                        } else {
                            ""
                        }
                    ),
                )
                .field("text"));
            }
            segments = info.segments;
            encoding = Some(info.encoding.as_str().to_string());
        }
        Channel::Rcs => {
            if text.as_deref().is_none_or(is_blank) && req.rcs.is_none() {
                return Err(ApiError::new(
                    Problem::MissingField,
                    "an RCS message needs `text` or `rcs` content",
                )
                .field("text"));
            }
            if let Some(t) = &text {
                if t.chars().count() > 3072 {
                    return Err(ApiError::new(
                        Problem::TextTooLong,
                        "RCS text is limited to 3072 characters",
                    )
                    .field("text"));
                }
            }
            if let Some(r) = &req.rcs {
                if !r.is_object() {
                    return Err(
                        ApiError::new(Problem::InvalidType, "`rcs` must be an object").field("rcs"),
                    );
                }
            }
            goniec_connectors::rcs::content::validate(text.as_deref(), req.rcs.as_ref())
                .map_err(|e| ApiError::new(Problem::InvalidRcs, e.reason).field(&e.field))?;
        }
        Channel::Email => {
            let Some(e) = req.email else {
                return Err(ApiError::new(
                    Problem::MissingField,
                    "an e-mail needs `email` with a `subject`",
                )
                .field("email"));
            };
            if is_blank(&e.subject) {
                return Err(
                    ApiError::new(Problem::EmptyText, "`email.subject` is empty")
                        .field("email.subject"),
                );
            }
            if e.subject.chars().count() > 998 || e.subject.contains(['\r', '\n']) {
                return Err(ApiError::new(
                    Problem::InvalidValue,
                    "`email.subject` must be one line of at most 998 characters",
                )
                .field("email.subject"));
            }
            if e.text.is_some() && text.is_some() {
                return Err(ApiError::new(
                    Problem::ConflictingFields,
                    "give the plain part as `text` or `email.text`, not both",
                )
                .field("email.text"));
            }
            text = text.or(e.text);
            let has_body = text.as_deref().is_some_and(|t| !is_blank(t))
                || e.html.as_deref().is_some_and(|h| !is_blank(h));
            if !has_body {
                return Err(ApiError::new(
                    Problem::EmptyText,
                    "an e-mail needs `text` or `email.html`",
                )
                .field("email.html"));
            }
            if let Some(h) = &e.html {
                no_controls(h, "email.html")?;
                if h.len() > rules.max_text_chars {
                    return Err(ApiError::new(
                        Problem::TextTooLong,
                        format!("`email.html` is over {} bytes", rules.max_text_chars),
                    )
                    .field("email.html"));
                }
            }
            check_attachments(&e.attachments, rules.max_attachments_bytes)?;
            email = Some(EmailData {
                subject: e.subject,
                html: e.html,
                attachments: e.attachments,
            });
        }
    }
    if let Some(t) = &text {
        no_controls(t, "text")?;
        if t.chars().count() > rules.max_text_chars {
            return Err(ApiError::new(
                Problem::TextTooLong,
                format!("text is over {} characters", rules.max_text_chars),
            )
            .field("text"));
        }
    }

    let send_at = req
        .send_at
        .as_deref()
        .map(|s| parse_time(s, "send_at"))
        .transpose()?;
    let valid_until = req
        .valid_until
        .as_deref()
        .map(|s| parse_time(s, "valid_until"))
        .transpose()?;
    if let Some(v) = valid_until {
        if v <= now {
            return Err(
                ApiError::new(Problem::InvalidValue, "`valid_until` is in the past")
                    .field("valid_until"),
            );
        }
        if send_at.is_some_and(|s| s >= v) {
            return Err(ApiError::new(
                Problem::InvalidValue,
                "`valid_until` must be after `send_at`",
            )
            .field("valid_until"));
        }
    }
    if send_at.is_some_and(|s| s.saturating_sub(now) > rules.max_schedule_ms) {
        return Err(ApiError::new(
            Problem::InvalidValue,
            format!(
                "`send_at` is more than {} days ahead; messages are kept no longer",
                rules.max_schedule_ms / 86_400_000
            ),
        )
        .field("send_at"));
    }
    // A past send_at means "now".
    let send_at = send_at.filter(|&s| s > now);

    let callback_url = match &req.callback_url {
        Some(u) => Some(
            check_callback_url(u, tenant.allow_private_callbacks)
                .map_err(|e| e.field("callback_url"))?,
        ),
        None => None,
    };
    if let Some(r) = &req.client_ref {
        if r.is_empty() || r.len() > 128 || r.chars().any(char::is_control) {
            return Err(ApiError::new(
                Problem::InvalidValue,
                "`client_ref` must be 1 to 128 printable characters",
            )
            .field("client_ref"));
        }
    }
    let fallback = req.fallback.unwrap_or_default();
    if fallback.contains(&req.channel) {
        return Err(ApiError::new(
            Problem::InvalidValue,
            "`fallback` cannot name the message's own channel",
        )
        .field("fallback"));
    }
    if !fallback.is_empty() && (req.channel != Channel::Rcs || fallback != [Channel::Sms]) {
        return Err(ApiError::new(Problem::InvalidValue,
            "`fallback` is supported from rcs to sms only: `\"fallback\": [\"sms\"]` on an RCS message",
        )
        .field("fallback"));
    }
    if let Some(ft) = &req.fallback_text {
        if fallback.is_empty() {
            return Err(ApiError::new(
                Problem::ConflictingFields,
                "`fallback_text` needs `\"fallback\": [\"sms\"]`",
            )
            .field("fallback_text"));
        }
        if ft.trim().is_empty() || ft.chars().count() > 1600 {
            return Err(ApiError::new(
                Problem::InvalidValue,
                "`fallback_text` must be 1 to 1600 characters of SMS text",
            )
            .field("fallback_text"));
        }
    }
    if !fallback.is_empty()
        && req.fallback_text.is_none()
        && text.as_deref().is_none_or(|t| t.trim().is_empty())
    {
        return Err(ApiError::new(
            Problem::MissingField,
            "an SMS fallback needs `fallback_text` (or the message's `text`)",
        )
        .field("fallback_text"));
    }
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
        },
        callbacks,
    })
}

/// The statuses named in `callback_events`: at least one, each a status a
/// message can move to.
fn callback_events(events: &[String]) -> Result<Vec<Status>, ApiError> {
    let bad =
        |detail: String| ApiError::new(Problem::InvalidValue, detail).field("callback_events");
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

/// E.164-normalise a phone number; refuse invalid ones and, when `mobile_only`,
/// numbers that are not mobiles.
pub fn normalize_msisdn(
    raw: &str,
    region: Option<phonenumber::country::Id>,
    mobile_only: bool,
) -> Result<String, ApiError> {
    let bad = |why: &str| {
        ApiError::new(
            Problem::InvalidNumber,
            format!("`to` is not a valid phone number: {why}"),
        )
        .field("to")
    };
    if raw.trim().is_empty() {
        return Err(bad("empty"));
    }
    if raw.len() > 32
        || !raw
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
    {
        return Err(bad("only digits, spaces, + - ( ) . are allowed"));
    }
    let num = phonenumber::parse(region, raw).map_err(|e| bad(&e.to_string()))?;
    if !num.is_valid() {
        return Err(bad("no such number range"));
    }
    if mobile_only {
        use phonenumber::Type;
        match num.number_type(&phonenumber::metadata::DATABASE) {
            Type::Mobile | Type::FixedLineOrMobile => {}
            other => {
                return Err(ApiError::new(
                    Problem::NotMobile,
                    format!(
                        "`to` is a {other:?} number, not a mobile one; SMS and RCS need a mobile"
                    ),
                )
                .field("to"))
            }
        }
    }
    Ok(num.format().mode(phonenumber::Mode::E164).to_string())
}

/// Check an e-mail address (RFC 5321 shape: local part, domain of dotted labels).
/// Attachments: a safe file name, a `type/subtype` content type, base64 content,
/// all of them together at most `max` bytes decoded.
/// Bytes of `n` bytes as a MIME base64 body: 4 per 3, in lines of 76 + CRLF.
fn encoded_len(n: u64) -> u64 {
    let chars = n.div_ceil(3) * 4;
    chars + chars.div_ceil(76) * 2
}

fn check_attachments(list: &[AttachmentData], max: u64) -> Result<(), ApiError> {
    use base64::Engine;
    let mut total = 0u64;
    for (i, a) in list.iter().enumerate() {
        let field = |k: &str| format!("email.attachments[{i}].{k}");
        let name_ok = !a.filename.trim().is_empty()
            && a.filename.len() <= 255
            && !a.filename.contains(['/', '\\', '\r', '\n', '\0', '"']);
        if !name_ok {
            return Err(ApiError::new(Problem::InvalidAttachment,
                "`filename` must be 1 to 255 characters without path separators, quotes or line breaks",
            )
            .field(field("filename")));
        }
        let ct_ok = a.content_type.split_once('/').is_some_and(|(t, s)| {
            let token = |x: &str| {
                !x.is_empty()
                    && x.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
            };
            token(t) && token(s)
        });
        if !ct_ok {
            return Err(ApiError::new(
                Problem::InvalidAttachment,
                format!(
                    "`content_type` {:?} is not a media type like application/pdf",
                    a.content_type
                ),
            )
            .field(field("content_type")));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a.content.trim())
            .map_err(|e| {
                ApiError::new(
                    Problem::InvalidAttachment,
                    format!("`content` is not valid base64: {e}"),
                )
                .field(field("content"))
            })?;
        // What the relay counts: base64 in 76-character lines with CRLF, so a
        // file "just under" a decoded limit cannot be refused after acceptance.
        total += encoded_len(bytes.len() as u64);
        if total > max {
            return Err(ApiError::new(
                Problem::AttachmentsTooLarge,
                format!(
                    "attachments may be at most {max} bytes together as sent (base64, \
                     about 4/3 of the file sizes)"
                ),
            )
            .field(field("content")));
        }
    }
    Ok(())
}

/// The form an address has on suppression lists: case-insensitive as a whole (a
/// mailbox that bounced as `Jan@…` bounces as `jan@…` on any real server).
pub fn suppression_key(address: &str) -> String {
    address.trim().to_lowercase()
}

pub fn normalize_email(raw: &str) -> Result<String, ApiError> {
    let bad = |why: &str| {
        ApiError::new(
            Problem::InvalidEmail,
            format!("`to` is not a valid e-mail address: {why}"),
        )
        .field("to")
    };
    let addr = raw.trim();
    if addr.len() > 254 {
        return Err(bad("longer than 254 characters"));
    }
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return Err(bad("no `@`"));
    };
    if local.is_empty() || local.len() > 64 {
        return Err(bad("the part before `@` must be 1 to 64 characters"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(bad("misplaced dot before `@`"));
    }
    if !local
        .chars()
        .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
    {
        return Err(bad("unsupported character before `@`"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("the domain needs a dot"));
    }
    for l in &labels {
        if l.is_empty()
            || l.len() > 63
            || l.starts_with('-')
            || l.ends_with('-')
            || !l.chars().all(|c| c.is_alphanumeric() || c == '-')
        {
            return Err(bad("the domain is not a valid host name"));
        }
    }
    Ok(format!("{local}@{}", domain.to_lowercase()))
}

/// Fill `{{name}}` placeholders from `vars`; a missing variable is an error.
pub fn render_template(
    tpl: &str,
    vars: Option<&BTreeMap<String, VarValue>>,
) -> Result<String, ApiError> {
    let mut out = String::with_capacity(tpl.len());
    let mut rest = tpl;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(
                ApiError::new(Problem::InvalidTemplate, "`{{` without closing `}}`")
                    .field("template"),
            );
        };
        let name = after[..end].trim();
        let value = vars.and_then(|v| v.get(name)).ok_or_else(|| {
            ApiError::new(
                Problem::MissingVariable,
                format!("template uses `{{{{{name}}}}}` but `vars` has no `{name}`"),
            )
            .field(format!("vars.{name}"))
        })?;
        match value {
            VarValue::Text(s) | VarValue::Number(s) => out.push_str(s),
            VarValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            VarValue::Other => {
                return Err(ApiError::new(
                    Problem::InvalidType,
                    "template variables must be strings, numbers or booleans",
                )
                .field(format!("vars.{name}")))
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// RFC 3339 timestamp → Unix ms.
pub fn parse_time(s: &str, field: &str) -> Result<i64, ApiError> {
    // RFC 3339 offsets are at most ±23:59; jiff also takes up to ±25:59:59.
    let offset_ok = s
        .rfind(['+', '-'])
        .filter(|&i| i > s.find('T').unwrap_or(usize::MAX))
        .and_then(|i| s.get(i + 1..i + 3))
        .is_none_or(|hours| hours.parse::<u8>().is_ok_and(|h| h <= 23));
    if !offset_ok {
        return Err(ApiError::new(
            Problem::InvalidTimestamp,
            format!("`{field}` has a UTC offset beyond ±23:59, which RFC 3339 does not allow"),
        )
        .field(field));
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| {
            ApiError::new(
                Problem::InvalidTimestamp,
                format!(
                    "`{field}` must be an RFC 3339 time such as 2026-11-22T09:00:00+01:00: {e}"
                ),
            )
            .field(field)
        })
}

/// Allow only http(s) callback URLs, and no loopback/private/link-local (or
/// otherwise non-public, in any notation) targets unless the tenant allows
/// them, so the gateway cannot be pointed at internal services. The rule is
/// [`goniec_config::net::check_callback_url`], shared with `check-config`;
/// host names are checked again, after resolution, when the callback is sent.
pub fn check_callback_url(raw: &str, allow_private: bool) -> Result<String, ApiError> {
    goniec_config::net::check_callback_url(raw, allow_private)
        .map(String::from)
        .map_err(|e| ApiError::new(Problem::InvalidCallbackUrl, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> Tenant {
        Tenant {
            name: "acme".into(),
            senders: vec!["ACME".into()],
            ..Default::default()
        }
    }

    fn rules() -> Rules {
        Rules {
            region: phonenumber::country::Id::from_str("PL").ok(),
            max_segments: 3,
            max_text_chars: 1000,
            max_schedule_ms: 365 * 86_400_000,
            max_attachments_bytes: 1000,
        }
    }

    fn check(json: &str) -> Result<Valid, ApiError> {
        validate(
            parse_request(json)?,
            &tenant(),
            &rules(),
            Partitions::new(16),
            1_000,
        )
    }

    #[test]
    fn callback_events_pick_the_changes_posted() {
        let cb = r#""callback_url":"https://acme.example/cb""#;
        let v = check(&format!(
            r#"{{"channel":"sms","to":"501234567","text":"hi",{cb}}}"#
        ))
        .unwrap();
        assert_eq!(v.callbacks, Callbacks::All);
        let v = check(r#"{"channel":"sms","to":"501234567","text":"hi"}"#).unwrap();
        assert_eq!(v.callbacks, Callbacks::None, "no URL, no callbacks");
        let v = check(&format!(
            r#"{{"channel":"sms","to":"501234567","text":"hi",{cb},"callback_events":["delivered","failed"]}}"#
        ))
        .unwrap();
        assert_eq!(
            v.callbacks,
            Callbacks::Only(vec![Status::Delivered, Status::Failed])
        );
        for bad in [r#"[]"#, r#"["accepted"]"#, r#"["delivrd"]"#] {
            let e = check(&format!(
                r#"{{"channel":"sms","to":"501234567","text":"hi",{cb},"callback_events":{bad}}}"#
            ))
            .unwrap_err();
            assert_eq!(
                (e.status, e.code, e.field.as_deref()),
                (422, "invalid-value", Some("callback_events")),
                "{bad}"
            );
        }
        // The tenant's default, and a message's own list winning over it.
        let mut t = tenant();
        t.callback_url = Some("https://acme.example/cb".into());
        t.callback_events = Some(vec!["delivered".into()]);
        let run = |json: &str| {
            validate(
                parse_request(json).unwrap(),
                &t,
                &rules(),
                Partitions::new(16),
                1_000,
            )
            .unwrap()
            .callbacks
        };
        assert_eq!(
            run(r#"{"channel":"sms","to":"501234567","text":"hi"}"#),
            Callbacks::Only(vec![Status::Delivered])
        );
        assert_eq!(
            run(r#"{"channel":"sms","to":"501234567","text":"hi","callback_events":["read"]}"#),
            Callbacks::Only(vec![Status::Read])
        );
        // Every status a message can move to, and nothing else, can be asked for.
        let movable: Vec<&str> = Status::ALL
            .iter()
            .filter(|s| Status::ALL.iter().any(|f| f.can_move_to(**s)))
            .map(|s| s.as_str())
            .collect();
        assert_eq!(movable, goniec_config::CALLBACK_EVENTS);
    }

    #[test]
    fn normalises_polish_numbers() {
        let v = check(r#"{"channel":"sms","to":"501 234 567","text":"hi"}"#).unwrap();
        assert_eq!(v.data.to, "+48501234567");
        let v = check(r#"{"channel":"sms","to":"+48 (501) 234-567","text":"hi"}"#).unwrap();
        assert_eq!(v.data.to, "+48501234567");
    }

    #[test]
    fn refuses_bad_numbers_with_specific_codes() {
        let e = check(r#"{"channel":"sms","to":"12","text":"hi"}"#).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("invalid-number", Some("to")));
        let e = check(r#"{"channel":"sms","to":"+48abc","text":"hi"}"#).unwrap_err();
        assert_eq!(e.code, "invalid-number");
        // A Warsaw landline.
        let e = check(r#"{"channel":"sms","to":"+48226543210","text":"hi"}"#).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("not-mobile", Some("to")));
    }

    #[test]
    fn json_shape_errors_name_the_field() {
        let e = check(r#"{"channel":"sms","text":"hi"}"#).unwrap_err();
        assert_eq!(
            (e.status, e.code, e.field.as_deref()),
            (422, "missing-field", Some("to"))
        );
        let e = check(r#"{"channel":"sms","to":"+48501234567","text":"hi","colour":"red"}"#)
            .unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("unknown-field", Some("colour"))
        );
        let e = check(r#"{"channel":"fax","to":"+48501234567","text":"hi"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid-value", Some("channel"))
        );
        let e = check(r#"{"channel":"sms","to":48501234567,"text":"hi"}"#).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("invalid-type", Some("to")));
        let e = check(r#"{"channel":"email","to":"a@b.pl","email":{"subject":"x","colour":1}}"#)
            .unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("unknown-field", Some("email.colour"))
        );
        let e = check(r#"{"channel":"sms","#).unwrap_err();
        assert_eq!((e.status, e.code), (400, "malformed-json"));
    }

    #[test]
    fn text_rules() {
        let e = check(r#"{"channel":"sms","to":"+48501234567","text":"  "}"#).unwrap_err();
        assert_eq!(e.code, "empty-text");
        let long = "ł".repeat(300);
        let e = check(&format!(
            r#"{{"channel":"sms","to":"+48501234567","text":"{long}"}}"#
        ))
        .unwrap_err();
        assert_eq!(e.code, "too-many-segments");
        assert!(e.detail.contains("transliterate"));
        let v = check(&format!(
            r#"{{"channel":"sms","to":"+48501234567","text":"{long}","transliterate":true}}"#
        ))
        .unwrap();
        assert!(v.data.transliterated);
        assert_eq!(v.data.encoding.as_deref(), Some("gsm7"));
        assert_eq!(v.data.segments, 2);
        let v = check(r#"{"channel":"sms","to":"+48501234567","text":"Zażółć"}"#).unwrap();
        assert_eq!(
            (v.data.encoding.as_deref(), v.data.segments),
            (Some("ucs2"), 1)
        );
    }

    #[test]
    fn templates() {
        let v = check(r#"{"channel":"sms","to":"+48501234567","template":"Dzień dobry {{ first_name }}, {{amount}} zł","vars":{"first_name":"Jan","amount":120.5}}"#).unwrap();
        assert_eq!(v.data.text.as_deref(), Some("Dzień dobry Jan, 120.5 zł"));
        let e = check(r#"{"channel":"sms","to":"+48501234567","template":"{{x}}","vars":{}}"#)
            .unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("missing-variable", Some("vars.x"))
        );
        // Numbers as written, never as floats.
        for (raw, shown) in [
            ("18446744073709551616", "18446744073709551616"),
            ("-0", "-0"),
            ("120.50", "120.50"),
            ("1e3", "1e3"),
            ("7", "7"),
        ] {
            let j = format!(
                r#"{{"channel":"sms","to":"+48501234567","template":"Kwota {{{{a}}}}","vars":{{"a":{raw}}}}}"#
            );
            assert_eq!(
                check(&j).unwrap().data.text.unwrap(),
                format!("Kwota {shown}")
            );
        }
        let e =
            check(r#"{"channel":"sms","to":"+48501234567","template":"{{a}}","vars":{"a":[1]}}"#)
                .unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid-type", Some("vars.a"))
        );
    }

    /// A message with `vars` written from `entries` (name, raw JSON value).
    fn with_vars(entries: impl Iterator<Item = (String, String)>) -> String {
        let vars: Vec<String> = entries
            .map(|(name, value)| format!("{}:{value}", serde_json::to_string(&name).unwrap()))
            .collect();
        format!(
            r#"{{"channel":"sms","to":"+48501234567","template":"{{{{v0}}}}","vars":{{{}}}}}"#,
            vars.join(",")
        )
    }

    #[test]
    fn vars_are_bounded_in_count_name_and_size() {
        let code = |json: &str| {
            check(json)
                .map(|v| v.data.text.unwrap_or_default())
                .map_err(|e| (e.code, e.field.unwrap_or_default()))
        };
        let n = |count: usize| (0..count).map(|i| (format!("v{i}"), "1".to_string()));
        assert_eq!(code(&with_vars(n(MAX_VARS))), Ok("1".into()));
        assert_eq!(
            code(&with_vars(n(MAX_VARS + 1))),
            Err(("too-many-vars", "vars".into()))
        );
        // A million entries: refused the same way (the parser skips past the limit).
        assert_eq!(
            code(&with_vars(n(1_000_000))),
            Err(("too-many-vars", "vars".into()))
        );
        // Repeating a name is not a new entry.
        let repeated = n(MAX_VARS).chain(std::iter::repeat_n(("v1".into(), "2".into()), 50));
        assert!(code(&with_vars(repeated)).is_ok());

        let long = "ż".repeat(MAX_VAR_NAME_CHARS + 1);
        assert_eq!(
            code(&with_vars(n(1).chain([(long, "1".into())]))),
            Err(("var-name-too-long", "vars".into()))
        );
        let longest = "ż".repeat(MAX_VAR_NAME_CHARS);
        assert!(code(&with_vars(n(1).chain([(longest, "1".into())]))).is_ok());

        // One value over the byte budget, and many that add up past it.
        let big = format!("\"{}\"", "a".repeat(MAX_VARS_BYTES));
        assert_eq!(
            code(&with_vars(n(1).chain([("big".into(), big)]))),
            Err(("vars-too-large", "vars".into()))
        );
        let quarter = format!("\"{}\"", "a".repeat(MAX_VARS_BYTES / 4));
        let many = n(1).chain((0..4).map(|i| (format!("q{i}"), quarter.clone())));
        assert_eq!(
            code(&with_vars(many)),
            Err(("vars-too-large", "vars".into()))
        );
        let nested = format!("[{}]", vec!["[1,2,3]"; 4000].join(","));
        assert_eq!(
            code(&with_vars(n(1).chain([("deep".into(), nested)]))),
            Err(("vars-too-large", "vars".into()))
        );

        // Shape errors still name the field.
        assert_eq!(
            code(r#"{"channel":"sms","to":"+48501234567","template":"x","vars":5}"#),
            Err(("invalid-type", "vars".into()))
        );
        // The limit is checked before anything else about the message.
        let bad_number = with_vars(n(MAX_VARS + 1)).replace("+48501234567", "+48 123");
        assert_eq!(code(&bad_number), Err(("too-many-vars", "vars".into())));
    }

    #[test]
    fn contract_gaps_are_refused() {
        let code = |json: &str| {
            let e = check(json).unwrap_err();
            (e.code, e.field)
        };
        // An array is not a message (serde would read it as the fields in order).
        assert_eq!(
            parse_request(r#"["sms","+48501234567","x"]"#)
                .unwrap_err()
                .code,
            "invalid-type"
        );
        // Offsets beyond ±23:59.
        for t in ["2030-01-01T09:00:00+25:59", "2030-01-01T09:00:00-24:00"] {
            let j =
                format!(r#"{{"channel":"sms","to":"+48501234567","text":"x","send_at":"{t}"}}"#);
            assert_eq!(
                code(&j),
                ("invalid-timestamp", Some("send_at".into())),
                "{t}"
            );
        }
        assert!(parse_time("2030-01-01T09:00:00+23:59", "send_at").is_ok());
        assert!(parse_time("2030-01-01T09:00:00-05:00", "send_at").is_ok());
        // Nothing visible, or NUL.
        for text in ["\\u0000", "\\u200b\\u200b", " \\u00ad\\u2060 "] {
            let j = format!(r#"{{"channel":"sms","to":"+48501234567","text":"{text}"}}"#);
            let (c, _) = code(&j);
            assert!(c == "empty-text" || c == "invalid-text", "{text}: {c}");
        }
        assert_eq!(
            code(r#"{"channel":"sms","to":"+48501234567","text":"a\u0000b"}"#),
            ("invalid-text", Some("text".into()))
        );
        assert_eq!(
            code(
                r#"{"channel":"email","to":"jan@example.com","email":{"subject":"s","html":"<p>a\u0000</p>"}}"#
            ),
            ("invalid-text", Some("email.html".into()))
        );
        assert_eq!(
            code(
                r#"{"channel":"email","to":"jan@example.com","email":{"subject":"\u200b","text":"x"}}"#
            ),
            ("empty-text", Some("email.subject".into()))
        );
        // Tabs and line breaks are text.
        assert!(check(r#"{"channel":"sms","to":"+48501234567","text":"a\tb\r\nc"}"#).is_ok());
    }

    #[test]
    fn attachments_count_as_sent() {
        assert_eq!(encoded_len(0), 0);
        assert_eq!(encoded_len(57), 78); // one full line: 76 characters + CRLF
        assert_eq!(encoded_len(3 * 1024 * 1024), 4 * 1024 * 1024 + 2 * 55189);
        use base64::Engine;
        let att = |n: usize| {
            let content = base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
            AttachmentData {
                filename: "a.pdf".into(),
                content_type: "application/pdf".into(),
                content,
            }
        };
        // 800 bytes decoded are about 1,100 as sent: over a 1,000-byte limit.
        assert!(check_attachments(&[att(700)], 1000).is_ok());
        assert_eq!(
            check_attachments(&[att(800)], 1000).unwrap_err().code,
            "attachments-too-large"
        );
    }

    #[test]
    fn senders_are_checked_for_shape() {
        // Registration is checked at screening (tests/antifraud.rs); here the shape.
        assert!(check(r#"{"channel":"sms","to":"+48501234567","text":"x","from":"ACME"}"#).is_ok());
        for bad in [
            r#"{"channel":"sms","to":"+48501234567","text":"x","from":"AC\nME"}"#,
            r#"{"channel":"sms","to":"+48501234567","text":"x","from":" "}"#,
            r#"{"channel":"email","to":"jan@example.com","text":"x","email":{"subject":"s"},"from":"a@b.pl\r\nBcc: x@y.pl"}"#,
            r#"{"channel":"email","to":"jan@example.com","text":"x","email":{"subject":"s"},"from":"not an address"}"#,
        ] {
            let e = check(bad).unwrap_err();
            assert_eq!(
                (e.code, e.field.as_deref()),
                ("invalid-sender", Some("from")),
                "{bad}"
            );
        }
        assert!(check(
            r#"{"channel":"email","to":"jan@example.com","text":"x","email":{"subject":"s"},"from":"ACME Windykacja <windykacja@acme.pl>"}"#
        )
        .is_ok());
    }

    #[test]
    fn email_rules() {
        let v = check(r#"{"channel":"email","to":"Jan@Example.COM","email":{"subject":"Wyciąg","html":"<p>x</p>"}}"#).unwrap();
        assert_eq!(v.data.to, "Jan@example.com");
        for bad in [
            "jan",
            "jan@",
            "@x.pl",
            "jan@localhost",
            "a..b@x.pl",
            "jan@-x.pl",
        ] {
            let e = check(&format!(
                r#"{{"channel":"email","to":"{bad}","email":{{"subject":"s","html":"h"}}}}"#
            ))
            .unwrap_err();
            assert_eq!(e.code, "invalid-email", "{bad}");
        }
        let e = check(r#"{"channel":"email","to":"a@b.pl","email":{"subject":"s"}}"#).unwrap_err();
        assert_eq!(e.code, "empty-text");
    }

    #[test]
    fn times() {
        // `now` is 1970-01-01T00:00:01Z in these tests; retention allows a year ahead.
        let v = check(r#"{"channel":"sms","to":"+48501234567","text":"x","send_at":"1970-06-01T10:00:00+01:00"}"#).unwrap();
        assert_eq!(v.data.send_at, Some(13078800000));
        let e = check(r#"{"channel":"sms","to":"+48501234567","text":"x","send_at":"2099-01-01T10:00:00+01:00"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid-value", Some("send_at"))
        );
        let e = check(r#"{"channel":"sms","to":"+48501234567","text":"x","send_at":"tomorrow"}"#)
            .unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid-timestamp", Some("send_at"))
        );
        let e = check(r#"{"channel":"sms","to":"+48501234567","text":"x","valid_until":"1970-01-01T00:00:00Z"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("valid_until"));
    }

    #[test]
    fn callback_urls_refuse_internal_targets() {
        for bad in [
            "ftp://x.pl/",
            "http://127.0.0.1/",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://localhost:8080/",
            "http://169.254.169.254/latest",
            "http://user:pw@x.pl/",
            "http://[fd00::1]/",
            "http://100.64.0.1/",
            // IPv4 carried in IPv6 literals (issue 12, item 7).
            "http://[64:ff9b::a9fe:a9fe]/latest",
            "http://[::ffff:127.0.0.1]/",
            "http://[2002:7f00:0001::]/",
            "http://[::7f00:1]/",
            "http://[::ffff:0:a00:1]/",
            "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/",
            "http://[fe80::1]/",
            "http://[fec0::1]/",
            "http://[ff02::1]/",
            "http://[::]/",
            "http://[2001:db8::1]/",
        ] {
            let err = check_callback_url(bad, false).unwrap_err();
            assert_eq!(
                (err.status, err.code),
                (422, "invalid-callback-url"),
                "{bad}"
            );
        }
        for good in [
            "https://hooks.example.com/goniec",
            "http://8.8.8.8/cb",
            "http://[2001:4860:4860::8888]/cb",
            "http://[64:ff9b::808:808]/cb",
        ] {
            assert!(check_callback_url(good, false).is_ok(), "{good}");
        }
        assert!(check_callback_url("http://127.0.0.1:9000/cb", true).is_ok());
        assert!(check_callback_url("http://[64:ff9b::a9fe:a9fe]/", true).is_ok());
    }
}
