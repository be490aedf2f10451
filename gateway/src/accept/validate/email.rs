//! E-mail content: a one-line subject, a text or HTML body, attachments.

use goniec_core::Problem;

use super::{is_blank, no_controls, EmailRequest, Rules};
use crate::accept::invalid::Invalid;
use crate::model::{AttachmentData, EmailData};

/// Check an e-mail's `email` object; the plain part may come as the message's
/// `text` or as `email.text` (moved into `text` here).
pub(super) fn body(
    email: Option<EmailRequest>,
    text: &mut Option<String>,
    rules: &Rules,
) -> Result<EmailData, Invalid> {
    let Some(e) = email else {
        return Err(Invalid::new(
            Problem::MissingField,
            "an e-mail needs `email` with a `subject`",
        )
        .field("email"));
    };
    if is_blank(&e.subject) {
        return Err(
            Invalid::new(Problem::EmptyText, "`email.subject` is empty").field("email.subject")
        );
    }
    if e.subject.chars().count() > 998 || e.subject.contains(['\r', '\n']) {
        return Err(Invalid::new(
            Problem::InvalidValue,
            "`email.subject` must be one line of at most 998 characters",
        )
        .field("email.subject"));
    }
    if e.text.is_some() && text.is_some() {
        return Err(Invalid::new(
            Problem::ConflictingFields,
            "give the plain part as `text` or `email.text`, not both",
        )
        .field("email.text"));
    }
    if text.is_none() {
        *text = e.text;
    }
    let has_body = text.as_deref().is_some_and(|t| !is_blank(t))
        || e.html.as_deref().is_some_and(|h| !is_blank(h));
    if !has_body {
        return Err(
            Invalid::new(Problem::EmptyText, "an e-mail needs `text` or `email.html`")
                .field("email.html"),
        );
    }
    if let Some(h) = &e.html {
        no_controls(h, "email.html")?;
        if h.len() > rules.max_text_chars {
            return Err(Invalid::new(
                Problem::TextTooLong,
                format!("`email.html` is over {} bytes", rules.max_text_chars),
            )
            .field("email.html"));
        }
    }
    check_attachments(&e.attachments, rules.max_attachments_bytes)?;
    Ok(EmailData {
        subject: e.subject,
        html: e.html,
        attachments: e.attachments,
    })
}

/// Bytes of `n` bytes as a MIME base64 body: 4 per 3, in lines of 76 + CRLF.
pub(super) fn encoded_len(n: u64) -> u64 {
    let chars = n.div_ceil(3) * 4;
    chars + chars.div_ceil(76) * 2
}

/// Attachments: a safe file name, a `type/subtype` content type, base64 content,
/// all of them together at most `max` bytes decoded.
pub(super) fn check_attachments(list: &[AttachmentData], max: u64) -> Result<(), Invalid> {
    use base64::Engine;
    let mut total = 0u64;
    for (i, a) in list.iter().enumerate() {
        let field = |k: &str| format!("email.attachments[{i}].{k}");
        let name_ok = !a.filename.trim().is_empty()
            && a.filename.len() <= 255
            && !a.filename.contains(['/', '\\', '\r', '\n', '\0', '"']);
        if !name_ok {
            return Err(Invalid::new(Problem::InvalidAttachment,
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
            return Err(Invalid::new(
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
                Invalid::new(
                    Problem::InvalidAttachment,
                    format!("`content` is not valid base64: {e}"),
                )
                .field(field("content"))
            })?;
        // What the relay counts: base64 in 76-character lines with CRLF, so a
        // file "just under" a decoded limit cannot be refused after acceptance.
        total += encoded_len(bytes.len() as u64);
        if total > max {
            return Err(Invalid::new(
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
