//! E-mail bounces: read a delivery status notification (DSN, RFC 3464) and
//! decide whether the address it reports on should be suppressed.
//!
//! This module is pure: bytes in, values out, no I/O. The gateway's
//! `POST /v1/webhooks/email-bounce` hands [`parse`] the raw RFC 5322 message a
//! mailbox-to-HTTP hook posts, looks the original message up by the ids in
//! [`Bounce`], marks it `undeliverable` with the diagnostic, and adds the
//! address to the tenant's suppression list when [`RecipientStatus::suppress`]
//! says so. A [`BounceError`] is a 400 and nothing changes.
//!
//! # What is parsed
//!
//! * The MIME structure (RFC 2045/2046): header sections, multipart
//!   boundaries (LF or CRLF), base64 and quoted-printable parts. It is read
//!   here, bounded in depth and part count, only as far as a bounce needs:
//!   attached messages are not entered except to find a forwarded bounce.
//!   (`mail-parser` 0.11 was tried first: about 2 MiB of nested
//!   `message/rfc822` overflows its stack, which aborts the process, and broken
//!   nesting trips its debug assertions; 1.x needs a newer Rust than ours.)
//! * The report: a `multipart/report` (RFC 6522) with a
//!   `message/delivery-status` part (or `message/global-delivery-status`,
//!   RFC 6533). A report forwarded as a `message/rfc822` attachment is found
//!   one level down.
//! * The delivery-status fields are read here (RFC 3464 §2.1–2.3): header-style
//!   fields, case-insensitive names, folded lines, one per-message group and
//!   then one group per recipient, separated by blank lines. Like real MTAs'
//!   readers it is lenient: groups run together without a blank line are split
//!   where a per-recipient field repeats, a missing `Status` is taken from the
//!   diagnostic (`550 5.1.1 …`, else `550` → `5.0.0`) or the action, a missing
//!   `Action` from the status class, and lines that are not fields are skipped.
//! * The original message's ids, from the returned `message/rfc822` or
//!   `text/rfc822-headers` part: `Message-ID` and the `X-Goniec-Id` header; from
//!   the report itself: `Original-Envelope-Id` (the `ENVID` of RFC 3461) and
//!   Gmail's `X-Original-Message-ID`.
//!
//! Non-standard bounces (qmail's plain text, a vacation reply) are a
//! [`BounceError`], never a guess. Everything is bounded: the input
//! ([`MAX_BOUNCE_BYTES`]), the recipients ([`MAX_RECIPIENTS`]), each kept field.
//!
//! # Hard and soft
//!
//! [`classify`] maps an enhanced status code (RFC 3463) and the diagnostic
//! text to a [`BounceKind`]; see the table in [`RULES`]. Hard means the
//! address itself is bad (no such mailbox, no such domain) and mail to it will
//! never arrive; only that suppresses. Everything else (a full mailbox, a spam
//! or policy block, a message too large, a temporary failure) is soft: the
//! message failed, the address stays. [`from_smtp_reply`] does the same for a
//! relay's synchronous `5xx` answer.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;

use BounceKind::{Hard, Other, Soft};

/// The largest bounce [`parse`] reads, in bytes (2 MiB). A DSN that returns the
/// whole original message is bounded by the relay's own size limit; ours are
/// text messages, so this leaves ample room.
pub const MAX_BOUNCE_BYTES: usize = 2 * 1024 * 1024;

/// The most recipients one DSN may report on. Goniec sends one recipient per
/// message, so a real bounce has one; a longer list is refused, not cut.
pub const MAX_RECIPIENTS: usize = 1000;

/// The headers that carry Goniec's own message id on outgoing mail, looked for
/// in the returned message, case-insensitively.
pub const GONIEC_ID_HEADERS: &[&str] = &["X-Goniec-Id", "X-Goniec-Message-Id"];

/// Longest kept diagnostic, in characters (longer ones are cut).
const MAX_DIAGNOSTIC_CHARS: usize = 1000;
/// Longest raw (unfolded) field value gathered, in bytes; the rest is dropped.
const MAX_RAW_FIELD_BYTES: usize = 8 * 1024;
/// Longest address (RFC 5321: 64 + 1 + 255).
const MAX_ADDRESS_BYTES: usize = 320;
/// Longest host name kept (Remote-MTA, Reporting-MTA).
const MAX_HOST_BYTES: usize = 255;
/// Longest id kept (an RFC 5322 line).
const MAX_ID_BYTES: usize = 998;
/// Longest header section of the returned message that is scanned for ids.
const MAX_RETURNED_HEADER_BYTES: usize = 256 * 1024;
/// Longest text quoted back in an error.
const MAX_ERROR_QUOTE: usize = 100;
/// Most header fields read from one header section.
const MAX_HEADER_FIELDS: usize = 1000;
/// Most fields read from a delivery-status part (a recipient has a handful).
const MAX_STATUS_FIELDS: usize = 16 * MAX_RECIPIENTS + 64;
/// Deepest multipart nesting entered (`multipart/report` inside
/// `multipart/mixed` is 2).
const MAX_MIME_DEPTH: usize = 8;
/// Most MIME parts looked at in one message.
const MAX_MIME_PARTS: usize = 256;
/// Most attached messages searched for a forwarded bounce.
const MAX_ATTACHED_MESSAGES: usize = 8;
/// How many levels of attached messages are searched for a forwarded bounce.
const MAX_ATTACHED_DEPTH: u8 = 1;

/// A parsed delivery status notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bounce {
    /// The returned message's `Message-ID`, angle brackets stripped: from the
    /// `message/rfc822` or `text/rfc822-headers` part, else from the report's
    /// `X-Original-Message-ID` (Gmail).
    pub original_message_id: Option<String>,
    /// The returned message's [`GONIEC_ID_HEADERS`] value, when the relay
    /// returned that header.
    pub goniec_id: Option<String>,
    /// The report's `Original-Envelope-Id`: the `ENVID` given at `MAIL FROM`
    /// (RFC 3461), as the reporting MTA wrote it.
    pub envelope_id: Option<String>,
    /// The report's `Reporting-MTA`, its type (`dns;`) stripped.
    pub reporting_mta: Option<String>,
    /// One entry per recipient reported on, in report order; never empty.
    pub recipients: Vec<RecipientStatus>,
}

impl Bounce {
    /// The ids to look the original message up by, best first:
    /// [`goniec_id`](Self::goniec_id), then
    /// [`original_message_id`](Self::original_message_id), then
    /// [`envelope_id`](Self::envelope_id).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        [
            &self.goniec_id,
            &self.original_message_id,
            &self.envelope_id,
        ]
        .into_iter()
        .filter_map(|id| id.as_deref())
    }
}

/// What a DSN says about one recipient (RFC 3464 §2.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientStatus {
    /// `Final-Recipient`, the address type (`rfc822;`) and angle brackets
    /// stripped, the domain lowercased (the local part is kept as written).
    pub final_recipient: String,
    /// `Original-Recipient` (the `ORCPT`), normalized the same way.
    pub original_recipient: Option<String>,
    /// `Action`.
    pub action: Action,
    /// `Status`, an enhanced status code (RFC 3463) such as `5.1.1`.
    pub status: String,
    /// `Diagnostic-Code` as written, type included, folding and runs of
    /// whitespace collapsed to single spaces, e.g.
    /// `smtp; 550 5.1.1 <x@y>: Recipient address rejected: User unknown`.
    pub diagnostic: Option<String>,
    /// `Remote-MTA`, its type (`dns;`) and any comment stripped.
    pub remote_mta: Option<String>,
}

impl RecipientStatus {
    /// [`classify`] of this recipient's status and diagnostic.
    pub fn kind(&self) -> BounceKind {
        classify(&self.status, self.diagnostic.as_deref())
    }

    /// Whether the address goes into the suppression list: delivery
    /// [`Action::Failed`] *and* the failure is [`BounceKind::Hard`]. A delayed
    /// report never suppresses, whatever its status says.
    pub fn suppress(&self) -> bool {
        self.action == Action::Failed && self.kind() == BounceKind::Hard
    }
}

/// The `Action` field (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Could not be delivered; the MTA gave up.
    Failed,
    /// Not delivered yet; the MTA keeps trying.
    Delayed,
    /// Delivered to the recipient's mailbox.
    Delivered,
    /// Handed to a system that sends no DSN of its own.
    Relayed,
    /// Delivered and forwarded to further recipients (an alias, a list).
    Expanded,
}

impl Action {
    /// The lowercase name used in the field.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
        }
    }

    /// Parses a field value; case-insensitive, a trailing comment is ignored
    /// (`failed (bad address)`).
    fn parse(value: &str) -> Option<Action> {
        let word = value
            .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
            .next()?;
        [
            Action::Failed,
            Action::Delayed,
            Action::Delivered,
            Action::Relayed,
            Action::Expanded,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(word))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a failure is for the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceKind {
    /// Permanent, and the address itself is bad (no such mailbox, no such
    /// domain): suppress it.
    Hard,
    /// The message failed or is late, but the address may well be good (a
    /// temporary failure, a full mailbox, a policy or spam block, a message too
    /// large): do not suppress.
    Soft,
    /// Not a failure (`2.x.x`), or no status that can be read.
    Other,
}

/// Why a body is not a bounce [`parse`] can read. Each message is written to
/// be returned as is in a 400 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BounceError {
    /// The body is empty or only whitespace.
    #[error("empty body: expected a raw RFC 5322 bounce message")]
    Empty,
    /// The body is larger than [`MAX_BOUNCE_BYTES`].
    #[error("bounce is {len} bytes, over the limit of {max} bytes")]
    TooLarge {
        /// The body's length.
        len: usize,
        /// [`MAX_BOUNCE_BYTES`].
        max: usize,
    },
    /// The body is not an RFC 5322 message, or its MIME structure is broken.
    #[error("malformed message: {reason}")]
    Malformed {
        /// What is wrong, in a few words.
        reason: &'static str,
    },
    /// A message, but not a MIME `multipart/report` (a plain-text bounce as
    /// qmail writes them, an auto-reply, any other mail).
    #[error(
        "not a delivery status notification: Content-Type is {content_type}, expected multipart/report with a message/delivery-status part"
    )]
    NotReport {
        /// The message's content type, `type/subtype`, lowercased (`none`
        /// when it has no Content-Type).
        content_type: String,
    },
    /// A `multipart/report` without a `message/delivery-status` part (a read
    /// receipt, an abuse report).
    #[error(
        "multipart/report (report-type {}) has no message/delivery-status part",
        report_type.as_deref().unwrap_or("not given")
    )]
    NoDeliveryStatus {
        /// The report's `report-type` parameter, lowercased, when given.
        report_type: Option<String>,
    },
    /// The `message/delivery-status` part reports on no recipient: no group
    /// with a usable `Final-Recipient` and an `Action` or `Status`.
    #[error(
        "the message/delivery-status part has no per-recipient fields (Final-Recipient with Action or Status)"
    )]
    NoRecipients,
    /// The report lists more than [`MAX_RECIPIENTS`] recipients.
    #[error("the delivery status notification reports on more than {max} recipients")]
    TooManyRecipients {
        /// [`MAX_RECIPIENTS`].
        max: usize,
    },
}

/// Parses a raw RFC 5322 bounce into its recipients' delivery status and the
/// ids of the message it returns. See the [module docs](self).
pub fn parse(raw: &[u8]) -> Result<Bounce, BounceError> {
    if raw.len() > MAX_BOUNCE_BYTES {
        return Err(BounceError::TooLarge {
            len: raw.len(),
            max: MAX_BOUNCE_BYTES,
        });
    }
    let start = raw
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .ok_or(BounceError::Empty)?;
    let mut input = &raw[start..];
    // A hook that writes mbox may put its `From sender date` line first.
    if input.starts_with(b"From ") {
        let next = input
            .iter()
            .position(|&b| b == b'\n')
            .map_or(input.len(), |i| i + 1);
        input = &input[next..];
    }
    if !starts_with_header_field(input) {
        return Err(BounceError::Malformed {
            reason: "it does not start with a header field",
        });
    }
    read_message(input, MAX_ATTACHED_DEPTH)
}

/// Finds and reads the report in one message; `attached` is how many levels
/// of attached (`message/rfc822`) messages may still be searched for one.
fn read_message(raw: &[u8], attached: u8) -> Result<Bounce, BounceError> {
    let entity = Entity::split(raw);
    let content_type = entity.content_type();
    let mut found = Found::default();
    match &content_type {
        Some(ct) if ct.is_multipart() => {
            let boundary = ct.param("boundary").ok_or(BounceError::Malformed {
                reason: "a multipart message without a boundary parameter",
            })?;
            found.walk(entity.body, boundary.as_bytes(), 1);
        }
        // A bare delivery-status body, without the multipart/report around it.
        Some(ct) if ct.is_delivery_status() => found.visit(&entity, ct),
        _ => {}
    }

    let Some(status) = found.delivery_status else {
        if content_type
            .as_ref()
            .is_some_and(|ct| ct.mime == "multipart/report")
        {
            return Err(BounceError::NoDeliveryStatus {
                report_type: content_type
                    .as_ref()
                    .and_then(|ct| ct.param("report-type"))
                    .map(|t| quote(&t.to_ascii_lowercase())),
            });
        }
        // A bounce forwarded as an attachment.
        if attached > 0 {
            for message in &found.messages {
                match read_message(message, attached - 1) {
                    Err(BounceError::NotReport { .. }) => {}
                    other => return other,
                }
            }
        }
        return Err(BounceError::NotReport {
            content_type: content_type.map_or_else(|| "none".to_owned(), |ct| quote(&ct.mime)),
        });
    };

    let mut report = read_delivery_status(&String::from_utf8_lossy(&status))?;
    if let Some(returned) = &found.returned {
        let returned = &returned[..returned.len().min(MAX_RETURNED_HEADER_BYTES)];
        let headers = Entity::split(returned).fields;
        if let Some(id) = field(&headers, "message-id").and_then(normalize_id) {
            report.original_message_id = Some(id);
        }
        report.goniec_id = GONIEC_ID_HEADERS
            .iter()
            .find_map(|name| field(&headers, name))
            .and_then(normalize_id);
    }
    Ok(report)
}

/// Whether `input` begins with `name:` (RFC 5322 field name: printable ASCII
/// but `:`), so random bytes and plain text are refused before anything else.
fn starts_with_header_field(input: &[u8]) -> bool {
    let name_len = input
        .iter()
        .take_while(|&&b| (33..=126).contains(&b) && b != b':')
        .count();
    (1..=76).contains(&name_len) && input.get(name_len) == Some(&b':')
}

/// A message or MIME body part (RFC 2045): its header fields and raw body.
struct Entity<'a> {
    fields: Vec<(String, String)>,
    body: &'a [u8],
}

impl<'a> Entity<'a> {
    /// Splits at the first empty line (LF or CRLF); no empty line, no body.
    fn split(raw: &'a [u8]) -> Entity<'a> {
        let mut line_start = 0;
        let (head, body) = loop {
            let Some(len) = raw[line_start..].iter().position(|&b| b == b'\n') else {
                break (raw, &raw[raw.len()..]);
            };
            let line = &raw[line_start..line_start + len];
            if line.is_empty() || line == b"\r" {
                break (&raw[..line_start], &raw[line_start + len + 1..]);
            }
            line_start += len + 1;
        };
        let fields = field_groups(&String::from_utf8_lossy(head), MAX_HEADER_FIELDS)
            .into_iter()
            .flatten()
            .collect();
        Entity { fields, body }
    }

    fn content_type(&self) -> Option<ContentType> {
        field(&self.fields, "content-type").map(ContentType::parse)
    }

    /// The body with its Content-Transfer-Encoding (base64, quoted-printable)
    /// undone; any other encoding is taken as is.
    fn decoded_body(&self) -> Cow<'a, [u8]> {
        match field(&self.fields, "content-transfer-encoding").map(str::trim) {
            Some(cte) if cte.eq_ignore_ascii_case("base64") => decode_base64(self.body).into(),
            Some(cte) if cte.eq_ignore_ascii_case("quoted-printable") => {
                decode_quoted_printable(self.body).into()
            }
            _ => Cow::Borrowed(self.body),
        }
    }
}

/// The value of the first field called `name` (case-insensitive).
fn field<'f>(fields: &'f [(String, String)], name: &str) -> Option<&'f str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A parsed Content-Type (RFC 2045 §5.1).
struct ContentType {
    /// `type/subtype`, lowercased.
    mime: String,
    /// Parameters, names lowercased, quotes removed.
    params: Vec<(String, String)>,
}

impl ContentType {
    fn parse(value: &str) -> ContentType {
        let (mime, mut rest) = value.split_once(';').unwrap_or((value, ""));
        let mime = mime
            .split_whitespace()
            .collect::<String>()
            .to_ascii_lowercase();
        let mut params = Vec::new();
        while params.len() < 32 {
            rest = rest.trim_start_matches(|c: char| c == ';' || c.is_whitespace());
            let Some((name, after)) = rest.split_once('=') else {
                break;
            };
            if let Some(semicolon) = name.find(';') {
                // A parameter without a value: skip it.
                rest = &rest[semicolon..];
                continue;
            }
            let name = name.trim().to_ascii_lowercase();
            let after = after.trim_start();
            let (value, next) = match after.strip_prefix('"') {
                Some(quoted) => {
                    let mut value = String::new();
                    let mut chars = quoted.char_indices();
                    let mut end = quoted.len();
                    while let Some((i, c)) = chars.next() {
                        match c {
                            '"' => {
                                end = i + 1;
                                break;
                            }
                            '\\' => value.extend(chars.next().map(|(_, c)| c)),
                            c => value.push(c),
                        }
                    }
                    (value, &quoted[end..])
                }
                None => {
                    let end = after
                        .find(|c: char| c == ';' || c.is_whitespace())
                        .unwrap_or(after.len());
                    (after[..end].to_owned(), &after[end..])
                }
            };
            params.push((name, value));
            // Anything up to the next `;` is not part of a parameter.
            rest = next.find(';').map_or("", |i| &next[i..]);
        }
        ContentType { mime, params }
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn is_multipart(&self) -> bool {
        self.mime.starts_with("multipart/")
    }

    fn is_delivery_status(&self) -> bool {
        matches!(
            self.mime.as_str(),
            "message/delivery-status" | "message/global-delivery-status"
            // Seen from a few old gateways.
            | "text/delivery-status"
        )
    }

    /// The returned original message, or its header section.
    fn is_returned_message(&self) -> bool {
        self.is_attached_message()
            || matches!(
                self.mime.as_str(),
                "text/rfc822-headers" | "message/rfc822-headers" | "message/global-headers"
            )
    }

    fn is_attached_message(&self) -> bool {
        matches!(self.mime.as_str(), "message/rfc822" | "message/global")
    }
}

/// What a walk over a message's MIME parts found (bodies decoded).
#[derive(Default)]
struct Found<'a> {
    delivery_status: Option<Cow<'a, [u8]>>,
    returned: Option<Cow<'a, [u8]>>,
    /// Attached messages, where a forwarded bounce may be.
    messages: Vec<Cow<'a, [u8]>>,
    parts: usize,
}

impl<'a> Found<'a> {
    /// Visits the parts of a multipart body, into nested multiparts down to
    /// [`MAX_MIME_DEPTH`] and at most [`MAX_MIME_PARTS`] parts in all. Attached
    /// messages are not entered.
    fn walk(&mut self, body: &'a [u8], boundary: &[u8], depth: usize) {
        for raw in split_multipart(body, boundary) {
            self.parts += 1;
            if self.parts > MAX_MIME_PARTS {
                return;
            }
            let part = Entity::split(raw);
            // RFC 2045: no Content-Type is text/plain, which is of no interest.
            let Some(ct) = part.content_type() else {
                continue;
            };
            match ct.param("boundary") {
                Some(boundary) if ct.is_multipart() && depth < MAX_MIME_DEPTH => {
                    self.walk(part.body, boundary.as_bytes(), depth + 1);
                }
                _ => self.visit(&part, &ct),
            }
        }
    }

    fn visit(&mut self, part: &Entity<'a>, ct: &ContentType) {
        if ct.is_delivery_status() {
            if self.delivery_status.is_none() {
                self.delivery_status = Some(part.decoded_body());
            }
        } else if ct.is_returned_message() {
            if self.returned.is_none() {
                self.returned = Some(part.decoded_body());
            }
            if ct.is_attached_message() && self.messages.len() < MAX_ATTACHED_MESSAGES {
                self.messages.push(part.decoded_body());
            }
        }
    }
}

/// The body parts of a multipart body (RFC 2046 §5.1.1): what lies between
/// `--boundary` delimiter lines, the line break before each delimiter left
/// out, the preamble and the epilogue dropped. A body cut short (no closing
/// `--boundary--`) keeps its last part.
fn split_multipart<'a>(body: &'a [u8], boundary: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    // Start of the current part's content, once the first delimiter is seen.
    let mut open: Option<usize> = None;
    let mut line_start = 0;
    while line_start < body.len() && parts.len() <= MAX_MIME_PARTS {
        let line_end = body[line_start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| line_start + i);
        let line = &body[line_start..line_end];
        let next = (line_end + 1).min(body.len());
        if let Some(rest) = line
            .strip_prefix(b"--")
            .and_then(|l| l.strip_prefix(boundary))
        {
            let closing = rest.starts_with(b"--");
            let rest = if closing { &rest[2..] } else { rest };
            if rest.iter().all(u8::is_ascii_whitespace) {
                if let Some(from) = open {
                    // The CRLF (or LF) before the delimiter belongs to it.
                    let mut to = line_start.saturating_sub(1).max(from);
                    if to > from && body[to - 1] == b'\r' {
                        to -= 1;
                    }
                    parts.push(&body[from..to]);
                }
                if closing {
                    return parts;
                }
                open = Some(next);
            }
        }
        line_start = next;
        if line_end == body.len() {
            break;
        }
    }
    if let Some(from) = open {
        if from < body.len() {
            parts.push(&body[from..]);
        }
    }
    parts
}

/// Base64 (RFC 2045 §6.8), leniently: characters outside the alphabet
/// (line breaks, padding, junk) are skipped.
fn decode_base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in input {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Quoted-printable (RFC 2045 §6.7), leniently: a `=` that starts no escape
/// or soft line break is kept as is.
fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        i += 1;
        if c != b'=' {
            out.push(c);
            continue;
        }
        // A soft line break: `=`, perhaps trailing whitespace, the line end.
        let blanks = input[i..]
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        match &input[i + blanks..] {
            [] => {
                i = input.len();
                continue;
            }
            [b'\n', ..] => {
                i += blanks + 1;
                continue;
            }
            [b'\r', b'\n', ..] => {
                i += blanks + 2;
                continue;
            }
            _ => {}
        }
        match (hex(input.get(i)), hex(input.get(i + 1))) {
            (Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 2;
            }
            _ => out.push(b'='),
        }
    }
    out
}

/// Header-style fields in groups separated by blank lines (RFC 3464 §2.1,
/// RFC 5322 §2.2): `(name, value)` with folded lines unfolded. Lines that are
/// not fields are skipped; reading stops after `max_fields` fields.
fn field_groups(text: &str, max_fields: usize) -> Vec<Vec<(String, String)>> {
    let mut groups: Vec<Vec<(String, String)>> = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    let mut count = 0;
    // Whether the last line was a field that a folded line may continue.
    let mut open = false;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if !current.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
            open = false;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let (true, Some((_, value))) = (open, current.last_mut()) {
                if value.len() < MAX_RAW_FIELD_BYTES {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            }
            continue;
        }
        match line.split_once(':') {
            Some((name, value))
                if !name.is_empty()
                    && name.len() <= 76
                    && name.bytes().all(|b| (33..=126).contains(&b)) =>
            {
                if count == max_fields {
                    break;
                }
                count += 1;
                let mut value = value.trim().to_owned();
                if value.len() > MAX_RAW_FIELD_BYTES {
                    value.truncate(floor_char_boundary(&value, MAX_RAW_FIELD_BYTES));
                }
                current.push((name.to_owned(), value));
                open = true;
            }
            _ => open = false,
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// The per-recipient fields of one recipient, as found.
#[derive(Default)]
struct Draft {
    final_recipient: Option<String>,
    original_recipient: Option<String>,
    action: Option<String>,
    status: Option<String>,
    diagnostic: Option<String>,
    remote_mta: Option<String>,
}

impl Draft {
    fn is_empty(&self) -> bool {
        self.final_recipient.is_none()
            && self.original_recipient.is_none()
            && self.action.is_none()
            && self.status.is_none()
            && self.diagnostic.is_none()
            && self.remote_mta.is_none()
    }

    /// The slot a per-recipient field goes to; `None` for other fields.
    fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        let slot = match name.to_ascii_lowercase().as_str() {
            "final-recipient" => &mut self.final_recipient,
            "original-recipient" => &mut self.original_recipient,
            "action" => &mut self.action,
            "status" => &mut self.status,
            "diagnostic-code" => &mut self.diagnostic,
            "remote-mta" => &mut self.remote_mta,
            _ => return None,
        };
        Some(slot)
    }

    /// The recipient's status, or `None` when the group is not usable.
    fn finish(self) -> Option<RecipientStatus> {
        let address = self
            .final_recipient
            .as_deref()
            .or(self.original_recipient.as_deref())?;
        let final_recipient = normalize_address(address)?;
        let original_recipient = self
            .original_recipient
            .as_deref()
            .and_then(normalize_address);
        let diagnostic = self.diagnostic.as_deref().and_then(clean_diagnostic);
        let parsed_action = self.action.as_deref().and_then(Action::parse);
        let diag = diagnostic.as_deref().unwrap_or("");
        let status = self
            .status
            .as_deref()
            .and_then(|s| s.split_whitespace().next())
            .and_then(Enhanced::parse)
            .or_else(|| Enhanced::find(diag))
            .or_else(|| reply_code(diag).map(Enhanced::generic))
            .or_else(|| {
                parsed_action.map(|a| {
                    Enhanced::generic(match a {
                        Action::Failed => 5,
                        Action::Delayed => 4,
                        Action::Delivered | Action::Relayed | Action::Expanded => 2,
                    })
                })
            })?;
        let action = parsed_action.or(match status.class {
            5 => Some(Action::Failed),
            4 => Some(Action::Delayed),
            2 => Some(Action::Delivered),
            _ => None,
        })?;
        Some(RecipientStatus {
            final_recipient,
            original_recipient,
            action,
            status: status.to_string(),
            diagnostic,
            remote_mta: self.remote_mta.as_deref().and_then(host_of),
        })
    }
}

/// Reads the body of a `message/delivery-status` part.
fn read_delivery_status(text: &str) -> Result<Bounce, BounceError> {
    let mut bounce = Bounce {
        original_message_id: None,
        goniec_id: None,
        envelope_id: None,
        reporting_mta: None,
        recipients: Vec::new(),
    };
    let mut drafts: Vec<Draft> = Vec::new();
    for group in field_groups(text, MAX_STATUS_FIELDS) {
        let mut draft = Draft::default();
        for (name, value) in group {
            if let Some(filled) = draft.slot(&name).map(|slot| slot.is_some()) {
                if filled {
                    // Two recipients' groups run together: a repeated field
                    // starts the next recipient.
                    drafts.push(std::mem::take(&mut draft));
                    if drafts.len() > MAX_RECIPIENTS {
                        return Err(BounceError::TooManyRecipients {
                            max: MAX_RECIPIENTS,
                        });
                    }
                }
                if let Some(slot) = draft.slot(&name) {
                    *slot = Some(value);
                }
                continue;
            }
            let name = name.to_ascii_lowercase();
            match name.as_str() {
                "reporting-mta" if bounce.reporting_mta.is_none() => {
                    bounce.reporting_mta = host_of(&value);
                }
                "original-envelope-id" if bounce.envelope_id.is_none() => {
                    bounce.envelope_id = normalize_id(&value);
                }
                "x-original-message-id" if bounce.original_message_id.is_none() => {
                    bounce.original_message_id = normalize_id(&value);
                }
                _ => {}
            }
        }
        if !draft.is_empty() {
            drafts.push(draft);
            if drafts.len() > MAX_RECIPIENTS {
                return Err(BounceError::TooManyRecipients {
                    max: MAX_RECIPIENTS,
                });
            }
        }
    }
    bounce.recipients = drafts.into_iter().filter_map(Draft::finish).collect();
    if bounce.recipients.is_empty() {
        return Err(BounceError::NoRecipients);
    }
    Ok(bounce)
}

/// The value after an RFC 3464 `type;` prefix (`rfc822;`, `dns;`, `smtp;`),
/// or the whole value when it has none.
fn strip_type(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest))
            if !kind.trim().is_empty()
                && !kind
                    .trim()
                    .contains(|c: char| c.is_whitespace() || c == '@' || c == '<') =>
        {
            rest.trim()
        }
        _ => value.trim(),
    }
}

/// An address from `Final-Recipient`/`Original-Recipient`: type and angle
/// brackets stripped, domain lowercased; `None` when unusable.
fn normalize_address(value: &str) -> Option<String> {
    let value = strip_type(value);
    let value = match (value.find('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value,
    };
    let address = value.split_whitespace().next()?;
    let address = address.trim_matches(|c| c == '<' || c == '>');
    if address.is_empty()
        || address.len() > MAX_ADDRESS_BYTES
        || address.chars().any(char::is_control)
    {
        return None;
    }
    Some(match address.rsplit_once('@') {
        Some((local, domain)) => {
            if local.is_empty() || domain.is_empty() {
                return None;
            }
            format!("{local}@{}", domain.to_lowercase())
        }
        None => address.to_owned(),
    })
}

/// A host from `Remote-MTA`/`Reporting-MTA`: `dns; mx.example.com. (1.2.3.4)`
/// is `mx.example.com`.
fn host_of(value: &str) -> Option<String> {
    let host = strip_type(value).split_whitespace().next()?;
    let host = host.trim_end_matches('.');
    (!host.is_empty() && host.len() <= MAX_HOST_BYTES && !host.chars().any(char::is_control))
        .then(|| host.to_owned())
}

/// A message id: the first `<…>` when there is one, else the first word.
fn normalize_id(value: &str) -> Option<String> {
    let value = value.trim();
    let id = match value.find('<') {
        Some(open) => {
            let rest = &value[open + 1..];
            &rest[..rest.find('>').unwrap_or(rest.len())]
        }
        None => value.split_whitespace().next().unwrap_or(""),
    };
    let id = id.trim();
    (!id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && !id.chars().any(|c| c.is_whitespace() || c.is_control()))
    .then(|| id.to_owned())
}

/// The diagnostic with folding and whitespace runs collapsed, at most
/// [`MAX_DIAGNOSTIC_CHARS`] characters.
fn clean_diagnostic(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len().min(MAX_DIAGNOSTIC_CHARS));
    for word in value.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().filter(|c| !c.is_control()));
    }
    if let Some((cut, _)) = out.char_indices().nth(MAX_DIAGNOSTIC_CHARS) {
        out.truncate(cut);
    }
    (!out.is_empty()).then_some(out)
}

/// A short, printable copy of untrusted text for an error message.
fn quote(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_QUOTE)
        .collect()
}

fn floor_char_boundary(s: &str, mut at: usize) -> usize {
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// An enhanced mail system status code (RFC 3463): `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Enhanced {
    class: u8,
    subject: u16,
    detail: u16,
}

impl Enhanced {
    /// `class.0.0`.
    fn generic(class: u8) -> Enhanced {
        Enhanced {
            class,
            subject: 0,
            detail: 0,
        }
    }

    /// Parses exactly `class.subject.detail`: class 2, 4 or 5, subject and
    /// detail of one to three digits.
    fn parse(text: &str) -> Option<Enhanced> {
        let mut parts = text.split('.');
        let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let number = |s: &str| (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
        if !matches!(class, "2" | "4" | "5") || !number(subject) || !number(detail) {
            return None;
        }
        Some(Enhanced {
            class: class.parse().ok()?,
            subject: subject.parse().ok()?,
            detail: detail.parse().ok()?,
        })
    }

    /// The first enhanced code standing as a word of its own in `text`
    /// (`550-5.1.1 The email account…`, `… said: 550 5.1.1 <x@y>: …`); an IP
    /// address or a version number is not one.
    fn find(text: &str) -> Option<Enhanced> {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if !b.is_ascii_digit() {
                i += 1;
                continue;
            }
            let end = i + bytes[i..]
                .iter()
                .take_while(|c| c.is_ascii_digit() || **c == b'.')
                .count();
            let before_ok = i == 0 || !bytes[i - 1].is_ascii_alphanumeric() && bytes[i - 1] != b'_';
            let after_ok = bytes.get(end).is_none_or(|c| !c.is_ascii_alphanumeric());
            if before_ok && after_ok {
                // A code ending a sentence keeps its full stop outside.
                if let Some(code) = Enhanced::parse(text[i..end].trim_end_matches('.')) {
                    return Some(code);
                }
            }
            i = end;
        }
        None
    }
}

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// The first three-digit SMTP reply code in `text` (`smtp; 550 No such user`).
fn reply_code(text: &str) -> Option<u8> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let end = i + bytes[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        let before_ok = i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b';' | b':' | b'(');
        let after_ok = bytes.get(end).is_none_or(|&c| c == b' ' || c == b'-');
        if end - i == 3 && before_ok && after_ok && matches!(bytes[i], b'2' | b'4' | b'5') {
            return Some(bytes[i] - b'0');
        }
        i = end;
    }
    None
}

/// What a rule in [`RULES`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Always this kind.
    Is(BounceKind),
    /// Hard when the diagnostic says the address does not exist (see
    /// [`GONE`]) and names no block or sender problem (see [`NOT_GONE`]);
    /// soft otherwise. For codes too generic to decide alone.
    HardIfGone,
    /// Hard unless the diagnostic says the condition passes (see
    /// [`TEMPORARY`]).
    HardUnlessTemporary,
}

/// One row of the classification table.
#[derive(Debug)]
pub struct ClassRule {
    /// `5.1.1`, or a wildcard `5.7.*` (any detail) or `5.*.*` (any subject).
    pub code: &'static str,
    rule: Rule,
    /// Why, in a few words.
    pub reason: &'static str,
}

/// The classification table [`classify`] uses: the most specific matching
/// row wins (exact code, then `class.subject.*`, then `class.*.*`).
///
/// Hard is kept to codes that name the recipient's address or domain as bad;
/// anything about the message, the sender, policy or spam is soft, so a
/// block by a receiving system never costs a customer a good address.
#[rustfmt::skip]
pub const RULES: &[ClassRule] = &[
    // Successes and temporary failures.
    ClassRule { code: "2.*.*", rule: Rule::Is(Other), reason: "success, not a failure" },
    ClassRule { code: "4.*.*", rule: Rule::Is(Soft), reason: "persistent transient failure: the MTA may still deliver" },
    // 5.1.x: addressing.
    ClassRule { code: "5.1.0", rule: Rule::HardIfGone, reason: "other address status: hard only if the text says the address does not exist" },
    ClassRule { code: "5.1.1", rule: Rule::Is(Hard), reason: "bad destination mailbox address (user unknown)" },
    ClassRule { code: "5.1.2", rule: Rule::Is(Hard), reason: "bad destination system address (no such domain, or it takes no mail)" },
    ClassRule { code: "5.1.3", rule: Rule::Is(Hard), reason: "bad destination mailbox address syntax" },
    ClassRule { code: "5.1.4", rule: Rule::Is(Soft), reason: "destination mailbox address ambiguous: the address exists, the receiver cannot pick one" },
    ClassRule { code: "5.1.5", rule: Rule::Is(Soft), reason: "destination mailbox address valid: not an address problem" },
    ClassRule { code: "5.1.6", rule: Rule::Is(Hard), reason: "destination mailbox has moved, no forwarding address" },
    ClassRule { code: "5.1.7", rule: Rule::Is(Soft), reason: "bad sender's mailbox address syntax: our side, not the recipient" },
    ClassRule { code: "5.1.8", rule: Rule::Is(Soft), reason: "bad sender's system address: our side, not the recipient" },
    ClassRule { code: "5.1.9", rule: Rule::Is(Soft), reason: "message relayed to a non-compliant mailer: not an address problem" },
    ClassRule { code: "5.1.10", rule: Rule::Is(Hard), reason: "recipient address has null MX (RFC 7505); Microsoft 365: recipient not found" },
    ClassRule { code: "5.1.*", rule: Rule::HardIfGone, reason: "other addressing status: hard only if the text says the address does not exist" },
    // 5.2.x: the mailbox.
    ClassRule { code: "5.2.0", rule: Rule::HardIfGone, reason: "other mailbox status: hard only if the text says the mailbox does not exist" },
    ClassRule { code: "5.2.1", rule: Rule::HardUnlessTemporary, reason: "mailbox disabled; soft when the text says it is rate-limited or temporary" },
    ClassRule { code: "5.2.2", rule: Rule::Is(Soft), reason: "mailbox full: the address is good" },
    ClassRule { code: "5.2.3", rule: Rule::Is(Soft), reason: "message length exceeds the limit: the message, not the address" },
    ClassRule { code: "5.2.4", rule: Rule::Is(Soft), reason: "mailing list expansion problem" },
    ClassRule { code: "5.2.*", rule: Rule::Is(Soft), reason: "other mailbox status" },
    // 5.3.x: the receiving mail system.
    ClassRule { code: "5.3.0", rule: Rule::HardIfGone, reason: "other mail system status: hard only if the text says the address does not exist" },
    ClassRule { code: "5.3.*", rule: Rule::Is(Soft), reason: "mail system full, not accepting, or message too big: not the address" },
    // 5.4.x: network and routing.
    ClassRule { code: "5.4.0", rule: Rule::HardIfGone, reason: "other network or routing status: hard only if the text says the address does not exist" },
    ClassRule { code: "5.4.1", rule: Rule::HardIfGone, reason: "no answer from host; hard only when Microsoft 365 means recipient rejected (\"Recipient address rejected: Access denied\")" },
    ClassRule { code: "5.4.4", rule: Rule::Is(Hard), reason: "unable to route: the domain does not exist or has no mail host" },
    ClassRule { code: "5.4.310", rule: Rule::Is(Hard), reason: "Microsoft 365: DNS domain does not exist" },
    ClassRule { code: "5.4.*", rule: Rule::Is(Soft), reason: "network or routing trouble (loop, timeout, bad connection): not the address" },
    // 5.5.x: protocol.
    ClassRule { code: "5.5.0", rule: Rule::HardIfGone, reason: "other protocol status: hard only if the text says the address does not exist" },
    ClassRule { code: "5.5.*", rule: Rule::Is(Soft), reason: "protocol error between the MTAs: not the address" },
    // 5.6.x: content.
    ClassRule { code: "5.6.*", rule: Rule::Is(Soft), reason: "message content or media problem: not the address" },
    // 5.7.x: security and policy.
    ClassRule { code: "5.7.*", rule: Rule::Is(Soft), reason: "security or policy (spam block 5.7.1, authentication 5.7.26, blocked IP): never suppress" },
    // Anything else permanent, including 5.0.0.
    ClassRule { code: "5.*.*", rule: Rule::HardIfGone, reason: "other or undefined permanent failure: hard only if the text says the address does not exist" },
];

/// Diagnostic phrases (lowercase) that say the address does not exist.
const GONE: &[&str] = &[
    "user unknown",
    "unknown user",
    "no such user",
    "no such mailbox",
    "no such recipient",
    "no such account",
    "no such domain",
    "unknown recipient",
    "recipient unknown",
    "recipient not found",
    "recipientnotfound",
    "invalid recipient",
    "invalid mailbox",
    "user not found",
    "mailbox not found",
    "mailbox does not exist",
    "account does not exist",
    "address does not exist",
    "does not exist",
    "doesn't exist",
    "doesn't have a",
    "not a valid mailbox",
    "no mailbox here",
    "mailbox is disabled",
    "mailbox disabled",
    "account is disabled",
    "account has been disabled",
    "account disabled",
    "domain not found",
    "host or domain name not found",
    "recipient address rejected: access denied",
];

/// Phrases (lowercase) that make a [`GONE`] phrase about something else: a
/// block, a policy, or our own sender address.
const NOT_GONE: &[&str] = &[
    "sender",
    "spam",
    "block",
    "blacklist",
    "denylist",
    "policy",
    "reputation",
    "rate limit",
];

/// Phrases (lowercase) that make a disabled mailbox temporary.
const TEMPORARY: &[&str] = &[
    "temporar",
    "try again",
    "too many",
    "rate limit",
    "receiving mail at a rate",
    "quota",
    "is full",
    "mailbox full",
    "over the limit",
];

/// Classifies a DSN `Status` (an enhanced code, RFC 3463) and its
/// `Diagnostic-Code` by [`RULES`].
///
/// When the status is generic (`5.0.0`, `5.1.0`) or missing and the diagnostic
/// carries a more specific code of the same class (`smtp; 550 5.1.1 …`), that
/// code is used. With no enhanced code at all, the diagnostic's reply code
/// (`550` → `5.0.0`) is. No readable code at all is [`BounceKind::Other`].
pub fn classify(status: &str, diagnostic: Option<&str>) -> BounceKind {
    let diagnostic = diagnostic.unwrap_or("");
    let status = status.split_whitespace().next().and_then(Enhanced::parse);
    let code = match (status, Enhanced::find(diagnostic)) {
        (Some(s), Some(d))
            if s.detail == 0
                && d.class == s.class
                && (s.subject == 0 || s.subject == d.subject) =>
        {
            d
        }
        (Some(s), _) => s,
        (None, Some(d)) => d,
        (None, None) => match reply_code(diagnostic) {
            Some(class) => Enhanced::generic(class),
            None => return Other,
        },
    };
    classify_code(code, diagnostic)
}

/// Classifies a relay's synchronous answer: the reply code, the enhanced code
/// when the client parsed one out, and the text (which may itself start with
/// the enhanced code, as lettre leaves it: `5.1.1 <x@y>: Recipient address
/// rejected`). `4xx` is soft, `2xx`/`3xx` and codes outside 200–599 are other;
/// `5xx` goes through [`RULES`] like a DSN.
pub fn from_smtp_reply(code: u16, enhanced: Option<&str>, text: &str) -> BounceKind {
    match code {
        400..=499 => Soft,
        500..=599 => {
            let given = enhanced.and_then(|e| Enhanced::parse(e.trim()));
            let specific = given
                .filter(|e| e.detail != 0)
                .or_else(|| Enhanced::find(text));
            // The reply code decides permanence; a stray class in the text does not.
            let code = specific
                .or(given)
                .map_or(Enhanced::generic(5), |e| Enhanced { class: 5, ..e });
            classify_code(code, text)
        }
        _ => Other,
    }
}

fn classify_code(code: Enhanced, diagnostic: &str) -> BounceKind {
    let exact = code.to_string();
    let subject = format!("{}.{}.*", code.class, code.subject);
    let class = format!("{}.*.*", code.class);
    let Some(row) = [exact, subject, class]
        .iter()
        .find_map(|key| RULES.iter().find(|r| r.code == key))
    else {
        return Other;
    };
    let text = diagnostic.to_ascii_lowercase();
    let says = |phrases: &[&str]| phrases.iter().any(|p| text.contains(p));
    match row.rule {
        Rule::Is(kind) => kind,
        Rule::HardIfGone if says(GONE) && !says(NOT_GONE) => Hard,
        Rule::HardIfGone => Soft,
        Rule::HardUnlessTemporary if says(TEMPORARY) => Soft,
        Rule::HardUnlessTemporary => Hard,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::TestRng;

    const GONIEC_ULID: &str = "01KAQ3Z7V8J5C2M4N6P8R0T2W4";
    const GONIEC_MSGID: &str = "01KAQ3Z7V8J5C2M4N6P8R0T2W4@goniec.test";

    /// Postfix: notification, delivery report, undelivered message headers.
    const POSTFIX: &str = r#"Return-Path: <>
Received: by mail.goniec.test (Postfix)
	id 4dGk1x0Zq5z9sWl; Mon, 23 Nov 2026 09:00:05 +0100 (CET)
Date: Mon, 23 Nov 2026 09:00:05 +0100 (CET)
From: MAILER-DAEMON@mail.goniec.test (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounces@goniec.test
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="4dGk1x0Zq5z9sWl.1763884805/mail.goniec.test"
Content-Transfer-Encoding: 8bit
Message-Id: <4dGk1y2bcdz9sWm@mail.goniec.test>

This is a MIME-encapsulated message.

--4dGk1x0Zq5z9sWl.1763884805/mail.goniec.test
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.goniec.test.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<jan.kowalski@example.pl>: host mx.example.pl[192.0.2.10] said: 550 5.1.1
    <jan.kowalski@example.pl>: Recipient address rejected: User unknown in
    virtual mailbox table (in reply to RCPT TO command)

--4dGk1x0Zq5z9sWl.1763884805/mail.goniec.test
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.goniec.test
X-Postfix-Queue-ID: 4dGk1x0Zq5z9sWl
X-Postfix-Sender: rfc822; bounces@goniec.test
Arrival-Date: Mon, 23 Nov 2026 09:00:03 +0100 (CET)

Final-Recipient: rfc822; jan.kowalski@Example.PL
Original-Recipient: rfc822;jan.kowalski@example.pl
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.pl
Diagnostic-Code: smtp; 550 5.1.1 <jan.kowalski@example.pl>: Recipient address
    rejected: User unknown in virtual mailbox table

--4dGk1x0Zq5z9sWl.1763884805/mail.goniec.test
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <bounces@goniec.test>
Received: from gw1.goniec.test (gw1.goniec.test [198.51.100.20])
	by mail.goniec.test (Postfix) with ESMTPS id 4dGk1x0Zq5z9sWl
	for <jan.kowalski@example.pl>; Mon, 23 Nov 2026 09:00:03 +0100 (CET)
From: Windykacja <noreply@goniec.test>
To: jan.kowalski@example.pl
Subject: Przypomnienie o =?UTF-8?Q?p=C5=82atno=C5=9Bci?=
Message-ID: <01KAQ3Z7V8J5C2M4N6P8R0T2W4@goniec.test>
X-Goniec-Id: 01KAQ3Z7V8J5C2M4N6P8R0T2W4
Date: Mon, 23 Nov 2026 09:00:02 +0100
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

--4dGk1x0Zq5z9sWl.1763884805/mail.goniec.test--
"#;

    /// Exim: Action before Final-Recipient, a generic 5.0.0 status, the whole
    /// message returned as message/rfc822.
    const EXIM: &str = r#"Received: from Debian-exim by relay.goniec.test with local (Exim 4.97)
	id 1vNsQf-00AbCd-2x
	for bounces@goniec.test; Mon, 23 Nov 2026 09:10:00 +0100
X-Failed-Recipients: anna.nowak@example.com
Auto-Submitted: auto-replied
From: Mail Delivery System <Mailer-Daemon@relay.goniec.test>
To: bounces@goniec.test
Content-Type: multipart/report; report-type=delivery-status; boundary=1763885400-eximdsn-1804289383
MIME-Version: 1.0
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1vNsQf-00AbCd-2x@relay.goniec.test>
Date: Mon, 23 Nov 2026 09:10:00 +0100

--1763885400-eximdsn-1804289383
Content-type: text/plain; charset=us-ascii

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  anna.nowak@example.com
    host mx1.example.com [203.0.113.25]
    SMTP error from remote mail server after RCPT TO:<anna.nowak@example.com>:
    550 No such user here

--1763885400-eximdsn-1804289383
Content-type: message/delivery-status

Reporting-MTA: dns; relay.goniec.test

Action: failed
Final-Recipient: rfc822;anna.nowak@example.com
Status: 5.0.0
Remote-MTA: dns; mx1.example.com
Diagnostic-Code: smtp; 550 No such user here

--1763885400-eximdsn-1804289383
Content-type: message/rfc822

Return-path: <bounces@goniec.test>
Received: from [198.51.100.20] (helo=gw1.goniec.test)
	by relay.goniec.test with esmtpsa (TLS1.3) tls TLS_AES_256_GCM_SHA384
	(Exim 4.97)
	id 1vNsQe-00AbCc-1w
	for anna.nowak@example.com; Mon, 23 Nov 2026 09:09:58 +0100
From: noreply@goniec.test
To: anna.nowak@example.com
Subject: Przypomnienie
Message-Id: <01KAQ4B2C3D4E5F6G7H8J9K0M1@goniec.test>
X-Goniec-Id: 01KAQ4B2C3D4E5F6G7H8J9K0M1
Date: Mon, 23 Nov 2026 09:09:58 +0100

Dzien dobry, przypominamy o platnosci.

--1763885400-eximdsn-1804289383--
"#;

    /// Gmail: an HTML notification, X-Original-Message-ID, a folded multi-line
    /// diagnostic, the original message as message/rfc822.
    const GMAIL: &str = r#"Delivered-To: bounces@goniec.test
Return-Path: <>
MIME-Version: 1.0
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: bounces@goniec.test
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
References: <01KAQ5AAAABBBBCCCCDDDDEEEE@goniec.test>
In-Reply-To: <01KAQ5AAAABBBBCCCCDDDDEEEE@goniec.test>
X-Failed-Recipients: nieistnieje.xyz@gmail.com
Message-ID: <6748a1b2.050a0220.3b1f4c.0001.GMR@mx.google.com>
Date: Mon, 23 Nov 2026 00:20:02 -0800 (PST)
Content-Type: multipart/report; boundary="000000000000c1d2e3f405a6b7c8"; report-type=delivery-status

--000000000000c1d2e3f405a6b7c8
Content-Type: multipart/related; boundary="000000000000c1d2e3f405a6b7d9"

--000000000000c1d2e3f405a6b7d9
Content-Type: multipart/alternative; boundary="000000000000c1d2e3f405a6b7ea"

--000000000000c1d2e3f405a6b7ea
Content-Type: text/plain; charset="UTF-8"


** Address not found **

Your message wasn't delivered to nieistnieje.xyz@gmail.com because the address couldn't be found, or is unable to receive mail.

--000000000000c1d2e3f405a6b7ea
Content-Type: text/html; charset="UTF-8"

<html><body><h2>Address not found</h2><p>Your message wasn't delivered.</p></body></html>

--000000000000c1d2e3f405a6b7ea--
--000000000000c1d2e3f405a6b7d9--
--000000000000c1d2e3f405a6b7c8
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Received-From-MTA: dns; noreply@goniec.test
Arrival-Date: Mon, 23 Nov 2026 00:20:01 -0800 (PST)
X-Original-Message-ID: <01KAQ5AAAABBBBCCCCDDDDEEEE@goniec.test>

Final-Recipient: rfc822; nieistnieje.xyz@gmail.com
Action: failed
Status: 5.1.1
Remote-MTA: dns; gmail-smtp-in.l.google.com. (142.250.102.26, the server for
 the domain gmail.com.)
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try
 550-5.1.1 double-checking the recipient's email address for typos or
 550-5.1.1 unnecessary spaces. For more information, go to
 550 5.1.1  https://support.google.com/mail/?p=NoSuchUser 5b1f17b1804b1-4ec3c9b8si1234567f8f.123 - gsmtp
Last-Attempt-Date: Mon, 23 Nov 2026 00:20:02 -0800 (PST)

--000000000000c1d2e3f405a6b7c8
Content-Type: message/rfc822

DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=goniec.test; s=g1;
        h=subject:message-id:date:from:to; bh=AbCdEf=; b=XyZ
From: noreply@goniec.test
To: nieistnieje.xyz@gmail.com
Subject: Przypomnienie
Message-ID: <01KAQ5AAAABBBBCCCCDDDDEEEE@goniec.test>
X-Goniec-Id: 01KAQ5AAAABBBBCCCCDDDDEEEE
Date: Mon, 23 Nov 2026 09:20:01 +0100
Content-Type: text/plain; charset="UTF-8"

Dzien dobry.

--000000000000c1d2e3f405a6b7c8--
"#;

    /// Microsoft 365 / Exchange Online: Original-Recipient first, 5.1.10,
    /// X-Display-Name, a base64 HTML part, CRLF line endings (added by the test).
    const M365: &str = r#"Received: from AM0PR01MB1234.eurprd01.prod.exchangelabs.com (2603:10a6:208::1)
 by AM0PR01MB1234.eurprd01.prod.exchangelabs.com with Microsoft SMTP Server
 id 15.20.8182.20; Mon, 23 Nov 2026 08:30:04 +0000
MIME-Version: 1.0
From: <postmaster@contoso.onmicrosoft.com>
To: <bounces@goniec.test>
Date: Mon, 23 Nov 2026 08:30:04 +0000
Content-Type: multipart/report; report-type=delivery-status;
	boundary="9f2d7c1e-1b2a-4c3d-8e9f-0a1b2c3d4e5f"
X-MS-Exchange-Message-Is-Ndr:
Content-Language: en-US
Message-ID: <a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d@AM0PR01MB1234.eurprd01.prod.exchangelabs.com>
In-Reply-To: <01KAQ6ZZZZYYYYXXXXWWWWVVVV@goniec.test>
Subject: Undeliverable: Przypomnienie
Auto-Submitted: auto-replied

--9f2d7c1e-1b2a-4c3d-8e9f-0a1b2c3d4e5f
Content-Type: multipart/alternative; differences=Content-Type;
	boundary="c0ffee00-1111-2222-3333-444455556666"

--c0ffee00-1111-2222-3333-444455556666
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

Your message to piotr@contoso.pl couldn't be delivered.
piotr wasn't found at contoso.pl.

--c0ffee00-1111-2222-3333-444455556666
Content-Type: text/html; charset="us-ascii"
Content-Transfer-Encoding: base64

PGh0bWw+PGJvZHk+cGlvdHIgd2Fzbid0IGZvdW5kIGF0IGNvbnRvc28ucGwuPC9ib2R5PjwvaHRtbD4=

--c0ffee00-1111-2222-3333-444455556666--

--9f2d7c1e-1b2a-4c3d-8e9f-0a1b2c3d4e5f
Content-Type: message/delivery-status

Reporting-MTA: dns;AM0PR01MB1234.eurprd01.prod.exchangelabs.com
Received-From-MTA: dns;gw1.goniec.test
Arrival-Date: Mon, 23 Nov 2026 08:30:03 +0000

Original-Recipient: rfc822;piotr@contoso.pl
Final-Recipient: rfc822;piotr@contoso.pl
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup
X-Display-Name: =?utf-8?Q?Piotr_Zieli=C5=84ski?=

--9f2d7c1e-1b2a-4c3d-8e9f-0a1b2c3d4e5f
Content-Type: message/rfc822

Received: from gw1.goniec.test (198.51.100.20) by
 AM0PR01MB1234.eurprd01.prod.exchangelabs.com with ESMTPS; Mon, 23 Nov 2026
 08:30:03 +0000
From: <noreply@goniec.test>
To: <piotr@contoso.pl>
Subject: Przypomnienie
Date: Mon, 23 Nov 2026 09:30:02 +0100
Message-ID:
	<01KAQ6ZZZZYYYYXXXXWWWWVVVV@goniec.test>
X-Goniec-Id: 01KAQ6ZZZZYYYYXXXXWWWWVVVV
MIME-Version: 1.0
Content-Type: text/plain

--9f2d7c1e-1b2a-4c3d-8e9f-0a1b2c3d4e5f--
"#;

    /// Postfix delay warning: Action delayed, 4.4.1, X-Postfix diagnostic.
    const DELAYED: &str = r#"From: MAILER-DAEMON@mail.goniec.test (Mail Delivery System)
Subject: Delayed Mail (still being retried)
To: bounces@goniec.test
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="4dGm0Q1Rk2z9t.1763899205/mail.goniec.test"

--4dGm0Q1Rk2z9t.1763899205/mail.goniec.test
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.goniec.test.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

--4dGm0Q1Rk2z9t.1763899205/mail.goniec.test
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.goniec.test
X-Postfix-Queue-ID: 4dGm0Q1Rk2z9t
Arrival-Date: Mon, 23 Nov 2026 09:00:03 +0100 (CET)

Final-Recipient: rfc822; ewa@slow.example
Original-Recipient: rfc822;ewa@slow.example
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.slow.example[198.51.100.7]:25:
    Connection timed out
Will-Retry-Until: Fri, 27 Nov 2026 09:00:03 +0100 (CET)

--4dGm0Q1Rk2z9t.1763899205/mail.goniec.test
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: noreply@goniec.test
To: ewa@slow.example
Message-ID: <01KAQ7DELAYDELAYDELAYDELAY@goniec.test>

--4dGm0Q1Rk2z9t.1763899205/mail.goniec.test--
"#;

    /// Three recipients; the last two groups run together without a blank
    /// line, names in odd case, an Original-Envelope-Id.
    const MULTI: &str = r#"From: MAILER-DAEMON@relay.goniec.test
To: bounces@goniec.test
Subject: Delivery Status Notification
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

Some recipients failed.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.goniec.test
Original-Envelope-Id: 01KAQ8MULTIMULTIMULTIMULTI

Final-Recipient: rfc822; a@one.example
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 user unknown

FINAL-RECIPIENT: RFC822; B@Two.Example
action: Failed
status: 5.2.2
diagnostic-code: smtp; 552 5.2.2 Mailbox full
Final-Recipient: rfc822; c@three.example
Action: relayed
Status: 2.0.0
Remote-MTA: dns; legacy.three.example

--b1
Content-Type: text/rfc822-headers

Message-ID: <01KAQ8MULTIMULTIMULTIMULTI@goniec.test>
--b1--
"#;

    /// Qmail's plain-text bounce: not a MIME report.
    const QMAIL: &str = r#"Return-Path: <>
Date: 23 Nov 2026 08:40:00 -0000
From: MAILER-DAEMON@qmail.example.net
To: bounces@goniec.test
Subject: failure notice

Hi. This is the qmail-send program at qmail.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<tomasz@qmail.example.net>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.
"#;

    /// A read receipt (RFC 8098): a multipart/report of another kind.
    const MDN: &str = r#"From: jan@example.pl
To: noreply@goniec.test
Subject: Read: Przypomnienie
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="mdn"

--mdn
Content-Type: text/plain

Your message was displayed.

--mdn
Content-Type: message/disposition-notification

Reporting-UA: mail.example.pl; Roundcube
Final-Recipient: rfc822; jan@example.pl
Original-Message-ID: <01KAQ3Z7V8J5C2M4N6P8R0T2W4@goniec.test>
Disposition: manual-action/MDN-sent-manually; displayed

--mdn--
"#;

    fn crlf(s: &str) -> String {
        s.replace("\r\n", "\n").replace('\n', "\r\n")
    }

    fn base64(data: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
            if out.len() % 77 == 76 {
                out.push('\n');
            }
        }
        out
    }

    /// Both line endings give the same answer.
    fn parse_both(fixture: &str) -> Bounce {
        let lf = parse(fixture.as_bytes()).unwrap_or_else(|e| panic!("LF: {e}"));
        let crlf = parse(crlf(fixture).as_bytes()).unwrap_or_else(|e| panic!("CRLF: {e}"));
        assert_eq!(lf, crlf);
        lf
    }

    #[test]
    fn postfix_with_rfc822_headers() {
        let b = parse_both(POSTFIX);
        assert_eq!(b.original_message_id.as_deref(), Some(GONIEC_MSGID));
        assert_eq!(b.goniec_id.as_deref(), Some(GONIEC_ULID));
        assert_eq!(b.envelope_id, None);
        assert_eq!(b.reporting_mta.as_deref(), Some("mail.goniec.test"));
        assert_eq!(b.ids().collect::<Vec<_>>(), [GONIEC_ULID, GONIEC_MSGID]);
        let [r] = b.recipients.as_slice() else {
            panic!("{:?}", b.recipients)
        };
        assert_eq!(r.final_recipient, "jan.kowalski@example.pl");
        assert_eq!(
            r.original_recipient.as_deref(),
            Some("jan.kowalski@example.pl")
        );
        assert_eq!(r.action, Action::Failed);
        assert_eq!(r.status, "5.1.1");
        assert_eq!(
            r.diagnostic.as_deref(),
            Some(
                "smtp; 550 5.1.1 <jan.kowalski@example.pl>: Recipient address rejected: \
                 User unknown in virtual mailbox table"
            )
        );
        assert_eq!(r.remote_mta.as_deref(), Some("mx.example.pl"));
        assert_eq!(r.kind(), BounceKind::Hard);
        assert!(r.suppress());
    }

    #[test]
    fn exim_with_generic_status_and_returned_message() {
        let b = parse_both(EXIM);
        assert_eq!(
            b.original_message_id.as_deref(),
            Some("01KAQ4B2C3D4E5F6G7H8J9K0M1@goniec.test")
        );
        assert_eq!(b.goniec_id.as_deref(), Some("01KAQ4B2C3D4E5F6G7H8J9K0M1"));
        let [r] = b.recipients.as_slice() else {
            panic!("{:?}", b.recipients)
        };
        assert_eq!(r.final_recipient, "anna.nowak@example.com");
        assert_eq!(r.original_recipient, None);
        assert_eq!(r.action, Action::Failed);
        assert_eq!(r.status, "5.0.0");
        assert_eq!(r.diagnostic.as_deref(), Some("smtp; 550 No such user here"));
        assert_eq!(r.remote_mta.as_deref(), Some("mx1.example.com"));
        // 5.0.0 alone says nothing; the text says the user does not exist.
        assert_eq!(r.kind(), BounceKind::Hard);
        assert!(r.suppress());
    }

    #[test]
    fn gmail_with_folded_diagnostic() {
        let b = parse_both(GMAIL);
        assert_eq!(
            b.original_message_id.as_deref(),
            Some("01KAQ5AAAABBBBCCCCDDDDEEEE@goniec.test")
        );
        assert_eq!(b.goniec_id.as_deref(), Some("01KAQ5AAAABBBBCCCCDDDDEEEE"));
        assert_eq!(b.reporting_mta.as_deref(), Some("googlemail.com"));
        let [r] = b.recipients.as_slice() else {
            panic!("{:?}", b.recipients)
        };
        assert_eq!(r.final_recipient, "nieistnieje.xyz@gmail.com");
        assert_eq!(r.status, "5.1.1");
        assert_eq!(r.remote_mta.as_deref(), Some("gmail-smtp-in.l.google.com"));
        let diagnostic = r.diagnostic.as_deref().unwrap();
        assert!(
            diagnostic.starts_with(
                "smtp; 550-5.1.1 The email account that you tried to reach does not exist. \
                 Please try 550-5.1.1 double-checking"
            ),
            "{diagnostic}"
        );
        assert!(diagnostic.ends_with("- gsmtp"), "{diagnostic}");
        assert!(!diagnostic.contains("  "), "{diagnostic}");
        assert!(r.suppress());
    }

    #[test]
    fn gmail_x_original_message_id_when_nothing_is_returned() {
        let cut = GMAIL
            .find("--000000000000c1d2e3f405a6b7c8\nContent-Type: message/rfc822")
            .unwrap();
        let b = parse(&GMAIL.as_bytes()[..cut]).unwrap();
        assert_eq!(
            b.original_message_id.as_deref(),
            Some("01KAQ5AAAABBBBCCCCDDDDEEEE@goniec.test")
        );
        assert_eq!(b.goniec_id, None);
    }

    #[test]
    fn microsoft_365() {
        let b = parse_both(M365);
        assert_eq!(
            b.original_message_id.as_deref(),
            Some("01KAQ6ZZZZYYYYXXXXWWWWVVVV@goniec.test")
        );
        assert_eq!(b.goniec_id.as_deref(), Some("01KAQ6ZZZZYYYYXXXXWWWWVVVV"));
        assert_eq!(
            b.reporting_mta.as_deref(),
            Some("AM0PR01MB1234.eurprd01.prod.exchangelabs.com")
        );
        let [r] = b.recipients.as_slice() else {
            panic!("{:?}", b.recipients)
        };
        assert_eq!(r.final_recipient, "piotr@contoso.pl");
        assert_eq!(r.original_recipient.as_deref(), Some("piotr@contoso.pl"));
        assert_eq!(r.status, "5.1.10");
        assert_eq!(
            r.diagnostic.as_deref(),
            Some(
                "smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP \
                 address lookup"
            )
        );
        assert_eq!(r.remote_mta, None);
        assert!(r.suppress());
    }

    #[test]
    fn delayed_is_not_suppressed() {
        let b = parse_both(DELAYED);
        assert_eq!(
            b.original_message_id.as_deref(),
            Some("01KAQ7DELAYDELAYDELAYDELAY@goniec.test")
        );
        let [r] = b.recipients.as_slice() else {
            panic!("{:?}", b.recipients)
        };
        assert_eq!(r.final_recipient, "ewa@slow.example");
        assert_eq!(r.action, Action::Delayed);
        assert_eq!(r.status, "4.4.1");
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("X-Postfix; connect to mx.slow.example[198.51.100.7]:25: Connection timed out")
        );
        assert_eq!(r.kind(), BounceKind::Soft);
        assert!(!r.suppress());
    }

    #[test]
    fn multiple_recipients() {
        let b = parse_both(MULTI);
        assert_eq!(b.envelope_id.as_deref(), Some("01KAQ8MULTIMULTIMULTIMULTI"));
        assert_eq!(
            b.ids().collect::<Vec<_>>(),
            [
                "01KAQ8MULTIMULTIMULTIMULTI@goniec.test",
                "01KAQ8MULTIMULTIMULTIMULTI"
            ]
        );
        let got: Vec<_> = b
            .recipients
            .iter()
            .map(|r| {
                (
                    r.final_recipient.as_str(),
                    r.action,
                    r.status.as_str(),
                    r.kind(),
                    r.suppress(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "a@one.example",
                    Action::Failed,
                    "5.1.1",
                    BounceKind::Hard,
                    true
                ),
                (
                    "B@two.example",
                    Action::Failed,
                    "5.2.2",
                    BounceKind::Soft,
                    false
                ),
                (
                    "c@three.example",
                    Action::Relayed,
                    "2.0.0",
                    BounceKind::Other,
                    false
                ),
            ]
        );
        assert_eq!(
            b.recipients[2].remote_mta.as_deref(),
            Some("legacy.three.example")
        );
    }

    #[test]
    fn base64_delivery_status_and_quoted_printable_headers() {
        let status = "Reporting-MTA: dns; mx.encoded.example\r\n\r\n\
                      Final-Recipient: rfc822; zofia@encoded.example\r\n\
                      Action: failed\r\nStatus: 5.1.1\r\n\
                      Diagnostic-Code: smtp; 550 5.1.1 Unknown recipient\r\n";
        let raw = format!(
            "From: postmaster@encoded.example\nTo: bounces@goniec.test\nMIME-Version: 1.0\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"=_enc\"\n\n\
             --=_enc\nContent-Type: text/plain\n\nFailed.\n\n\
             --=_enc\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n{}\n\n\
             --=_enc\nContent-Type: text/rfc822-headers; charset=utf-8\n\
             Content-Transfer-Encoding: quoted-printable\n\n\
             Subject: =3D?utf-8?q?Przypomnienie?=3D\n\
             Message-ID: <01KAQ9ENCODEDENCODEDENCODE=\n@goniec.test>\n\
             X-Goniec-Id: 01KAQ9ENCODEDENCODED=\nENCODE\n\n\
             --=_enc--\n",
            base64(status.as_bytes())
        );
        let b = parse_both(&raw);
        assert_eq!(
            b.original_message_id.as_deref(),
            Some("01KAQ9ENCODEDENCODEDENCODE@goniec.test")
        );
        assert_eq!(b.goniec_id.as_deref(), Some("01KAQ9ENCODEDENCODEDENCODE"));
        assert_eq!(b.reporting_mta.as_deref(), Some("mx.encoded.example"));
        let [r] = b.recipients.as_slice() else {
            panic!("{:?}", b.recipients)
        };
        assert_eq!(r.final_recipient, "zofia@encoded.example");
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("smtp; 550 5.1.1 Unknown recipient")
        );
        assert!(r.suppress());
    }

    #[test]
    fn quoted_printable_delivery_status_and_base64_returned_message() {
        let returned = "From: noreply@goniec.test\r\nTo: karol@qp.example\r\n\
                        Message-ID: <01KAQAQPQPQPQPQPQPQPQPQPQP@goniec.test>\r\n\r\nTre\u{15b}\u{107}\r\n";
        let raw = format!(
            "From: postmaster@qp.example\nMIME-Version: 1.0\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=qpb\n\n\
             --qpb\nContent-Type: message/delivery-status\n\
             Content-Transfer-Encoding: quoted-printable\n\n\
             Reporting-MTA: dns; qp.example\n\n\
             Final-Recipient: rfc822; karol@QP.example\nAction: failed\nStatus: 5.2.1\n\
             Diagnostic-Code: smtp; 550 5.2.1 The email account that you tried to reach is di=\nsabled. =3D\n\n\
             --qpb\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n{}\n\
             --qpb--\n",
            base64(returned.as_bytes())
        );
        let b = parse_both(&raw);
        assert_eq!(
            b.original_message_id.as_deref(),
            Some("01KAQAQPQPQPQPQPQPQPQPQPQP@goniec.test")
        );
        let [r] = b.recipients.as_slice() else {
            panic!("{:?}", b.recipients)
        };
        assert_eq!(r.final_recipient, "karol@qp.example");
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("smtp; 550 5.2.1 The email account that you tried to reach is disabled. =")
        );
        assert_eq!(r.kind(), BounceKind::Hard);
    }

    #[test]
    fn forwarded_bounce_is_found_one_level_down() {
        let raw = format!(
            "From: ops@goniec.test\nTo: bounces@goniec.test\nSubject: Fwd: Undelivered Mail\n\
             MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=fwd\n\n\
             --fwd\nContent-Type: text/plain\n\nSee attached.\n\n\
             --fwd\nContent-Type: message/rfc822\n\n{POSTFIX}\n--fwd--\n"
        );
        let b = parse_both(&raw);
        assert_eq!(b.original_message_id.as_deref(), Some(GONIEC_MSGID));
        assert_eq!(b.recipients[0].final_recipient, "jan.kowalski@example.pl");
    }

    #[test]
    fn mbox_from_line_and_leading_blank_lines_are_skipped() {
        let raw = format!("\r\n\nFrom MAILER-DAEMON  Mon Nov 23 09:00:05 2026\n{POSTFIX}");
        assert_eq!(
            parse(raw.as_bytes()).unwrap(),
            parse(POSTFIX.as_bytes()).unwrap()
        );
    }

    #[test]
    fn lenient_delivery_status_fields() {
        // No per-message group, no Status (taken from the diagnostic), a comment
        // after the action, angle brackets, junk lines, bare CR-less endings.
        let raw = "Content-Type: multipart/report; boundary=x\n\n--x\n\
                   Content-Type: message/delivery-status\n\n\
                   this line is not a field\n\
                   Final-Recipient: RFC822; <Ola@Example.COM>\n\
                   Action: FAILED (permanent)\n\
                   Diagnostic-Code: smtp; 550-5.1.1 No such user\n\
                   --x--\n";
        let b = parse_both(raw);
        let r = &b.recipients[0];
        assert_eq!(r.final_recipient, "Ola@example.com");
        assert_eq!(r.action, Action::Failed);
        assert_eq!(r.status, "5.1.1");
        assert!(r.suppress());

        // Only a reply code: 5.0.0 with the action; no action: from the status.
        let raw = "Content-Type: multipart/report; boundary=x\n\n--x\n\
                   Content-Type: message/delivery-status\n\n\
                   Final-Recipient: rfc822; a@b.example\nDiagnostic-Code: smtp; 554 rejected\n\n\
                   Final-Recipient: rfc822; c@d.example\nStatus: 4.2.0 (retrying)\n\
                   --x--\n";
        let b = parse(raw.as_bytes()).unwrap();
        assert_eq!(
            b.recipients
                .iter()
                .map(|r| (r.action, r.status.as_str()))
                .collect::<Vec<_>>(),
            [(Action::Failed, "5.0.0"), (Action::Delayed, "4.2.0")]
        );
    }

    #[test]
    fn garbage_is_a_specific_error() {
        assert_eq!(parse(b""), Err(BounceError::Empty));
        assert_eq!(parse(b" \r\n\t\n"), Err(BounceError::Empty));
        let mut rng = TestRng::seeded(0xB0B0, "garbage_is_a_specific_error");
        let random: Vec<u8> = (0..4096).map(|_| rng.byte()).collect();
        assert!(
            matches!(
                parse(&random),
                Err(BounceError::Malformed { .. } | BounceError::NotReport { .. })
            ),
            "{:?}",
            parse(&random)
        );
        assert_eq!(
            parse(b"\x00\x01\xff\xfe binary"),
            Err(BounceError::Malformed {
                reason: "it does not start with a header field"
            })
        );
        assert_eq!(
            parse(b"hello, this is not an e-mail"),
            Err(BounceError::Malformed {
                reason: "it does not start with a header field"
            })
        );

        let plain = "From: jan@example.pl\nTo: noreply@goniec.test\nSubject: Re: Przypomnienie\n\
                     Content-Type: text/plain; charset=utf-8\n\nZaplacilem wczoraj.\n";
        assert_eq!(
            parse(plain.as_bytes()),
            Err(BounceError::NotReport {
                content_type: "text/plain".into()
            })
        );
        let no_content_type = "From: jan@example.pl\nSubject: hi\n\nbody\n";
        assert_eq!(
            parse(no_content_type.as_bytes()),
            Err(BounceError::NotReport {
                content_type: "none".into()
            })
        );
        assert_eq!(
            parse(QMAIL.as_bytes()),
            Err(BounceError::NotReport {
                content_type: "none".into()
            })
        );
        assert_eq!(
            parse(MDN.as_bytes()),
            Err(BounceError::NoDeliveryStatus {
                report_type: Some("disposition-notification".into())
            })
        );
        let only_per_message = "Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n\
                                --x\nContent-Type: message/delivery-status\n\n\
                                Reporting-MTA: dns; mx.example\nArrival-Date: Mon, 23 Nov 2026\n\n--x--\n";
        assert_eq!(
            parse(only_per_message.as_bytes()),
            Err(BounceError::NoRecipients)
        );
        let empty_status = "Content-Type: multipart/report; boundary=x\n\n--x\n\
                            Content-Type: message/delivery-status\n\n--x--\n";
        assert_eq!(
            parse(empty_status.as_bytes()),
            Err(BounceError::NoRecipients)
        );
    }

    #[test]
    fn truncated_bounces() {
        let at = |needle: &str| &POSTFIX[..POSTFIX.find(needle).unwrap()];
        // Cut inside the top-level header section, before Content-Type.
        assert_eq!(
            parse(at("MIME-Version").as_bytes()),
            Err(BounceError::NotReport {
                content_type: "none".into()
            })
        );
        // Cut after the notification.
        assert_eq!(
            parse(
                at("--4dGk1x0Zq5z9sWl.1763884805/mail.goniec.test\nContent-Description: Delivery")
                    .as_bytes()
            ),
            Err(BounceError::NoDeliveryStatus {
                report_type: Some("delivery-status".into())
            })
        );
        // Cut after the per-message group, or mid-way into the first field.
        assert_eq!(
            parse(at("Final-Recipient").as_bytes()),
            Err(BounceError::NoRecipients)
        );
        assert_eq!(
            parse(at("ipient: rfc822; jan.kowalski@Example.PL").as_bytes()),
            Err(BounceError::NoRecipients)
        );
        // Cut before the returned headers: the report stands, the ids are gone.
        let b = parse(
            at("--4dGk1x0Zq5z9sWl.1763884805/mail.goniec.test\nContent-Description: Undelivered")
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(b.original_message_id, None);
        assert!(b.recipients[0].suppress());
        // Every prefix is an answer, never a panic.
        for cut in 0..=POSTFIX.len() {
            let _ = parse(&POSTFIX.as_bytes()[..cut]);
        }
    }

    #[test]
    fn hostile_shapes_are_bounded() {
        // Each fills the size limit with one shape: deep nesting of attached
        // messages (plain and base64-wrapped), deep and wide multiparts, a
        // boundary that never closes, endless header or status fields. None
        // may overflow the stack, and each must stay cheap.
        let fill = |head: &str, unit: &str| {
            let mut s = String::from(head);
            while s.len() + unit.len() <= MAX_BOUNCE_BYTES {
                s.push_str(unit);
            }
            s
        };
        let report = "Content-Type: multipart/report; report-type=delivery-status; boundary=a\n\n";
        let nested_encoded = format!(
            "Content-Type: multipart/mixed; boundary=z\n\n--z\nContent-Type: message/rfc822\n\
             Content-Transfer-Encoding: base64\n\n{}\n--z--\n",
            base64(fill("", "Content-Type: message/rfc822\n\n").as_bytes())
        );
        let cases = [
            fill("", "Content-Type: message/rfc822\n\n"),
            nested_encoded[..nested_encoded.len().min(MAX_BOUNCE_BYTES)].to_owned(),
            fill(report, "--a\nContent-Type: multipart/mixed; boundary=a\n\n"),
            fill(
                "Content-Type: multipart/mixed; boundary=b\n\n--b\n",
                "Content-Type: multipart/mixed; boundary=b\n\n--b\n",
            ),
            fill(report, "--a\n\n"),
            fill(report, "--a\nContent-Type: message/rfc822\n\nX: y\n\n"),
            fill("X-Header: ", "x"),
            fill("", "X:\n"),
            fill(
                &format!("{report}--a\nContent-Type: message/delivery-status\n\n"),
                "A:\n\n",
            ),
            fill(
                &format!("{report}--a\nContent-Type: message/delivery-status\n\nX: y\n"),
                " folded\n",
            ),
        ];
        for raw in &cases {
            let started = std::time::Instant::now();
            let result = parse(raw.as_bytes());
            let took = started.elapsed();
            assert!(
                took < std::time::Duration::from_secs(5),
                "{took:?}: {result:?}"
            );
        }
    }

    #[test]
    fn limits() {
        let big = vec![b'a'; MAX_BOUNCE_BYTES + 1];
        assert_eq!(
            parse(&big),
            Err(BounceError::TooLarge {
                len: MAX_BOUNCE_BYTES + 1,
                max: MAX_BOUNCE_BYTES
            })
        );
        let mut raw = String::from(
            "Content-Type: multipart/report; boundary=x\n\n--x\nContent-Type: message/delivery-status\n\n",
        );
        for i in 0..=MAX_RECIPIENTS {
            raw.push_str(&format!(
                "Final-Recipient: rfc822; u{i}@example.com\nAction: failed\nStatus: 5.1.1\n\n"
            ));
        }
        raw.push_str("--x--\n");
        assert_eq!(
            parse(raw.as_bytes()),
            Err(BounceError::TooManyRecipients {
                max: MAX_RECIPIENTS
            })
        );
        // A huge folded diagnostic is kept short.
        let long = format!(
            "Content-Type: multipart/report; boundary=x\n\n--x\nContent-Type: message/delivery-status\n\n\
             Final-Recipient: rfc822; a@b.example\nAction: failed\nStatus: 5.1.1\n\
             Diagnostic-Code: smtp; 550{}\n--x--\n",
            " more\n".repeat(100_000)
        );
        let b = parse(long.as_bytes()).unwrap();
        let diagnostic = b.recipients[0].diagnostic.as_deref().unwrap();
        assert!(diagnostic.chars().count() <= MAX_DIAGNOSTIC_CHARS);
    }

    #[test]
    fn error_messages_are_plain() {
        for e in [
            BounceError::Empty,
            BounceError::TooLarge { len: 3, max: 2 },
            BounceError::Malformed { reason: "x" },
            BounceError::NotReport {
                content_type: "text/plain".into(),
            },
            BounceError::NoDeliveryStatus { report_type: None },
            BounceError::NoRecipients,
            BounceError::TooManyRecipients { max: 1 },
        ] {
            let text = e.to_string();
            assert!(
                !text.is_empty() && text.is_ascii() && !text.contains('\n'),
                "{text}"
            );
        }
        assert_eq!(
            BounceError::NoDeliveryStatus { report_type: None }.to_string(),
            "multipart/report (report-type not given) has no message/delivery-status part"
        );
    }

    #[test]
    fn mime_pieces() {
        let ct = ContentType::parse(
            "Multipart/Report ; charset ; Report-Type = delivery-status;\
             boundary=\"a;b \\\"c\\\" d\" (comment); x=\"unterminated",
        );
        assert_eq!(ct.mime, "multipart/report");
        assert_eq!(ct.param("report-type"), Some("delivery-status"));
        assert_eq!(ct.param("boundary"), Some("a;b \"c\" d"));
        assert_eq!(ct.param("x"), Some("unterminated"));
        assert_eq!(ct.param("charset"), None);
        assert_eq!(ContentType::parse("").mime, "");

        assert_eq!(decode_base64(b"Wm9m\r\naWE=\n"), b"Zofia");
        assert_eq!(decode_base64(b"!!*"), b"");
        assert_eq!(
            decode_quoted_printable(b"a=3Db=\r\nc=  \nd=C5=82 =zz =4"),
            "a=bcd\u{142} =zz =4".as_bytes()
        );
        assert_eq!(decode_quoted_printable(b"end="), b"end");

        let body = b"preamble\r\n--b\r\none\r\n--b \r\n\r\n--bb\r\ntwo\r\n--b--\r\nepilogue";
        assert_eq!(
            split_multipart(body, b"b"),
            [&b"one"[..], &b"\r\n--bb\r\ntwo"[..]],
            "blanks after a delimiter are allowed, a longer boundary is not ours"
        );
        assert_eq!(
            split_multipart(b"--b\n--b\nx\n--b--", b"b"),
            [&b""[..], &b"x"[..]]
        );
        assert_eq!(split_multipart(b"--b\ncut sh", b"b"), [&b"cut sh"[..]]);
        assert_eq!(split_multipart(b"no delimiter", b"b"), Vec::<&[u8]>::new());

        assert_eq!(
            parse(b"Content-Type: multipart/report\n\n--x\n"),
            Err(BounceError::Malformed {
                reason: "a multipart message without a boundary parameter"
            })
        );
    }

    #[test]
    fn classification_table() {
        use BounceKind::{Hard, Other, Soft};
        let cases: &[(&str, Option<&str>, BounceKind)] = &[
            // Hard: the address or domain is bad.
            ("5.1.1", None, Hard),
            ("5.1.2", Some("smtp; 550 5.1.2 Host unknown"), Hard),
            ("5.1.3", None, Hard),
            ("5.1.6", None, Hard),
            ("5.1.10", Some("smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound"), Hard),
            ("5.4.4", Some("X-Postfix; Host or domain name not found"), Hard),
            ("5.4.310", Some("smtp; 550 5.4.310 DNS domain contoso.invalid does not exist"), Hard),
            ("5.2.1", Some("smtp; 550 5.2.1 The email account that you tried to reach is disabled."), Hard),
            ("5.2.1", None, Hard),
            ("5.4.1", Some("smtp; 550 5.4.1 Recipient address rejected: Access denied. AS(201806281)"), Hard),
            ("5.0.0", Some("smtp; 550 No such user here"), Hard),
            ("5.0.0", Some("smtp; 554 delivery error: dd This user doesn't have a yahoo.com account"), Hard),
            ("5.1.0", Some("smtp; 550 5.1.0 Address rejected: mailbox does not exist"), Hard),
            ("5.0.0", Some("smtp; 550 5.1.1 <a@b>: Recipient address rejected: User unknown"), Hard),
            ("", Some("smtp; 550 5.1.1 user unknown"), Hard),
            ("", Some("smtp; 550 unknown user"), Hard),
            ("5.1.1 (bad destination mailbox)", None, Hard),
            // Soft: the message failed, the address stays.
            ("4.2.2", Some("smtp; 452 4.2.2 Mailbox full"), Soft),
            ("4.1.1", Some("smtp; 450 4.1.1 user unknown (try later)"), Soft),
            ("4.4.1", None, Soft),
            ("4.7.0", None, Soft),
            ("5.2.2", Some("smtp; 552 5.2.2 Mailbox full"), Soft),
            ("5.2.3", None, Soft),
            ("5.2.1", Some("smtp; 550 5.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages"), Soft),
            ("5.3.4", Some("smtp; 552 5.3.4 Message size exceeds fixed limit"), Soft),
            ("5.4.1", Some("smtp; 550 5.4.1 No answer from host"), Soft),
            ("5.4.6", Some("Routing loop detected"), Soft),
            ("5.5.2", None, Soft),
            ("5.6.0", None, Soft),
            ("5.7.1", Some("smtp; 554 5.7.1 Service unavailable; Client host [198.51.100.20] blocked using zen.spamhaus.org"), Soft),
            ("5.7.1", Some("smtp; 550 5.7.1 user unknown"), Soft),
            ("5.7.26", Some("smtp; 550 5.7.26 This mail is unauthenticated"), Soft),
            ("5.7.606", Some("smtp; 550 5.7.606 Access denied, banned sending IP"), Soft),
            ("5.1.7", Some("smtp; 553 5.1.7 Sender address does not exist"), Soft),
            ("5.1.8", Some("smtp; 553 5.1.8 Sender address rejected: Domain not found"), Soft),
            ("5.0.0", None, Soft),
            ("5.0.0", Some("smtp; 550 Message rejected as spam"), Soft),
            ("5.0.0", Some("smtp; 550 Sender address does not exist"), Soft),
            ("5.0.0", Some("smtp; 554 5.7.1 rejected by policy"), Soft),
            ("5.9.9", None, Soft),
            ("", Some("smtp; 554 rejected"), Soft),
            // Other: success, or nothing to read.
            ("2.0.0", None, Other),
            ("2.1.5", Some("250 2.1.5 OK"), Other),
            ("", None, Other),
            ("garbage", Some("no code here, host 192.0.2.1"), Other),
            ("6.1.1", None, Other),
            ("5.1", None, Other),
            ("5.1.1.1", None, Other),
        ];
        for &(status, diagnostic, want) in cases {
            assert_eq!(
                classify(status, diagnostic),
                want,
                "{status:?} {diagnostic:?}"
            );
        }
    }

    #[test]
    fn rules_are_well_formed_and_unique() {
        for (i, row) in RULES.iter().enumerate() {
            assert!(!row.reason.is_empty());
            assert!(
                RULES[..i].iter().all(|other| other.code != row.code),
                "{} twice",
                row.code
            );
            let mut parts = row.code.split('.');
            let class = parts.next().unwrap();
            assert!(matches!(class, "2" | "4" | "5"), "{}", row.code);
            let rest: Vec<_> = parts.collect();
            assert_eq!(rest.len(), 2, "{}", row.code);
            if rest[0] == "*" {
                assert_eq!(rest[1], "*", "{}", row.code);
            }
        }
    }

    #[test]
    fn smtp_replies() {
        use BounceKind::{Hard, Other, Soft};
        let cases: &[(u16, Option<&str>, &str, BounceKind)] = &[
            (
                550,
                Some("5.1.1"),
                "<a@b.example>: Recipient address rejected: User unknown",
                Hard,
            ),
            (
                550,
                None,
                "5.1.1 <a@b.example>: Recipient address rejected: User unknown",
                Hard,
            ),
            (
                550,
                None,
                "5.1.1 The email account that you tried to reach does not exist.",
                Hard,
            ),
            (
                550,
                None,
                "Requested action not taken: mailbox unavailable",
                Soft,
            ),
            (550, None, "No such user here", Hard),
            (
                550,
                Some("5.0.0"),
                "5.1.10 RESOLVER.ADR.RecipientNotFound",
                Hard,
            ),
            (556, None, "5.1.10 Recipient address has null MX", Hard),
            (552, None, "5.2.2 Mailbox full", Soft),
            (554, None, "5.7.1 Message rejected as spam", Soft),
            (554, Some("5.7.1"), "Client host rejected: blocked", Soft),
            (550, Some("4.1.1"), "user unknown", Hard),
            (
                553,
                None,
                "5.1.8 Sender address rejected: Domain not found",
                Soft,
            ),
            (
                450,
                Some("4.1.1"),
                "User unknown in local recipient table",
                Soft,
            ),
            (421, None, "4.7.0 Try again later", Soft),
            (250, None, "2.0.0 OK", Other),
            (354, None, "Start mail input", Other),
            (0, None, "", Other),
            (999, None, "5.1.1 user unknown", Other),
        ];
        for &(code, enhanced, text, want) in cases {
            assert_eq!(
                from_smtp_reply(code, enhanced, text),
                want,
                "{code} {enhanced:?} {text:?}"
            );
        }
    }

    #[test]
    fn enhanced_codes_in_text() {
        let find = |t: &str| Enhanced::find(t).map(|c| c.to_string());
        assert_eq!(find("550-5.1.1 The email account"), Some("5.1.1".into()));
        assert_eq!(find("said: 550 5.1.10 RESOLVER"), Some("5.1.10".into()));
        assert_eq!(find("(#5.1.1)"), Some("5.1.1".into()));
        assert_eq!(find("ends with 4.4.1."), Some("4.4.1".into()));
        assert_eq!(find("host 192.0.2.10 and 203.0.113.5"), None);
        assert_eq!(find("version v5.1.1 and 5.1.1a"), None);
        assert_eq!(find("5.1000.1 5.1.1234"), None);
        assert_eq!(reply_code("smtp; 550 No such user"), Some(5));
        assert_eq!(reply_code("smtp;550-5.1.1"), Some(5));
        assert_eq!(
            reply_code("connect to mx[198.51.100.7]:25: timed out"),
            None
        );
    }

    /// Mutated DSNs never panic; whatever parses keeps the invariants.
    #[test]
    fn mutated_bounces_never_panic() {
        let mut rng = TestRng::seeded(0xB0_0CE, "mutated_bounces_never_panic");
        let seeds: Vec<Vec<u8>> = [POSTFIX, EXIM, GMAIL, M365, DELAYED, MULTI, MDN, QMAIL]
            .iter()
            .flat_map(|f| [f.as_bytes().to_vec(), crlf(f).into_bytes()])
            .collect();
        const SNIPPETS: &[&[u8]] = &[
            b"\n",
            b"\r\n",
            b"\n\n",
            b"--",
            b":",
            b";",
            b"=",
            b"<",
            b">",
            b" ",
            b"\t",
            b"\n ",
            b"\x00",
            b"\xff",
            b"\xc5",
            b"Content-Type: multipart/report; boundary=x\n\n--x\n",
            b"Content-Type: message/delivery-status\n\n",
            b"Content-Type: message/rfc822\n\n",
            b"Content-Transfer-Encoding: base64\n",
            b"Content-Transfer-Encoding: quoted-printable\n",
            b"Final-Recipient: rfc822; x@Y.example\n",
            b"Action: failed\n",
            b"Status: 5.1.1\n",
            b"Diagnostic-Code: smtp; 550 5.1.1 no such user\n",
            b"Message-ID: <a@b>\n",
            b"5.1.1",
            b"550",
        ];
        let mut parsed = 0;
        for round in 0..3000 {
            let mut raw = seeds[round % seeds.len()].clone();
            for _ in 0..1 + rng.below(6) {
                let at = rng.below(raw.len() + 1);
                match rng.below(7) {
                    0 => {
                        if at < raw.len() {
                            raw[at] = rng.byte();
                        }
                    }
                    1 => raw.insert(at, rng.byte()),
                    2 => {
                        let end = (at + rng.below(64)).min(raw.len());
                        raw.drain(at..end);
                    }
                    3 => raw.truncate(at),
                    4 => {
                        let s = rng.pick(SNIPPETS);
                        raw.splice(at..at, s.iter().copied());
                    }
                    5 => {
                        let end = (at + rng.below(200)).min(raw.len());
                        let copy = raw[at..end].to_vec();
                        let to = rng.below(raw.len() + 1);
                        raw.splice(to..to, copy);
                    }
                    _ => {
                        // Break a boundary line.
                        if let Some(pos) = raw.windows(2).skip(at).position(|w| w == b"--") {
                            raw.insert(at + pos + 2, b'#');
                        }
                    }
                }
            }
            match parse(&raw) {
                Ok(b) => {
                    parsed += 1;
                    assert!(!b.recipients.is_empty() && b.recipients.len() <= MAX_RECIPIENTS);
                    for r in &b.recipients {
                        assert!(!r.final_recipient.is_empty());
                        assert!(r.final_recipient.len() <= MAX_ADDRESS_BYTES);
                        assert!(Enhanced::parse(&r.status).is_some(), "{:?}", r.status);
                        assert!(r
                            .diagnostic
                            .as_ref()
                            .is_none_or(|d| d.chars().count() <= MAX_DIAGNOSTIC_CHARS));
                        let _ = (r.kind(), r.suppress());
                    }
                    for id in b.ids() {
                        assert!(!id.is_empty() && !id.contains(char::is_whitespace));
                    }
                }
                Err(e) => {
                    let _ = e.to_string();
                }
            }
            let text = String::from_utf8_lossy(&raw);
            let status: String = text.chars().take(12).collect();
            let _ = classify(&status, Some(&text));
            let _ = from_smtp_reply(500 + rng.below(100) as u16, None, &text);
        }
        // The mutations keep most bounces readable: the test exercises the happy path too.
        assert!(parsed > 300, "only {parsed} parsed");
    }
}
