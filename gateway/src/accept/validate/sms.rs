//! SMS text: not blank, optionally transliterated to GSM-7, within the
//! tenant's segment limit (the carrier bills per segment).

use goniec_connectors::text;
use goniec_core::Problem;

use super::{is_blank, Rules};
use crate::accept::invalid::Invalid;

/// How an SMS text will be sent.
pub(super) struct Shape {
    pub segments: u32,
    pub encoding: &'static str,
    pub transliterated: bool,
}

/// Check an SMS's text (transliterated in place when asked and it helps).
pub(super) fn body(
    text: Option<&mut String>,
    transliterate: bool,
    rules: &Rules,
) -> Result<Shape, Invalid> {
    let Some(t) = text else {
        return Err(
            Invalid::new(Problem::MissingField, "an SMS needs `text` or `template`").field("text"),
        );
    };
    if is_blank(t) {
        return Err(Invalid::new(
            Problem::EmptyText,
            "`text` is empty (or only spaces and invisible characters)",
        )
        .field("text"));
    }
    let mut transliterated = false;
    if transliterate {
        if let Some(changed) = text::transliterate(t) {
            *t = changed;
            transliterated = true;
        }
    }
    let info = text::analyze(t);
    if info.segments > rules.max_segments {
        return Err(Invalid::new(
            Problem::TooManySegments,
            format!(
                "text needs {} {} segments; the most allowed is {}{}",
                info.segments,
                info.encoding.as_str(),
                rules.max_segments,
                if info.encoding == text::Encoding::Ucs2 && !transliterate {
                    " (try \"transliterate\": true)"
                } else {
                    ""
                }
            ),
        )
        .field("text"));
    }
    Ok(Shape {
        segments: info.segments,
        encoding: info.encoding.as_str(),
        transliterated,
    })
}
