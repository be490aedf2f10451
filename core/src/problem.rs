//! The stable problem codes of the HTTP API (`code` in every
//! `application/problem+json` answer, and the last segment of its `type`),
//! each with the one HTTP status it is answered with. Clients match on these
//! strings, so a code is never renamed; a new kind of problem gets a new one.
//!
//! Anti-fraud reason codes (`reasons`, snake_case, `goniec-antifraud`) and a
//! message's delivery error codes (carrier statuses) are other vocabularies.

use std::fmt;

/// A kind of problem the API reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Problem {
    /// `attachments-too-large` (422)
    AttachmentsTooLarge,
    /// `bad-signature` (401)
    BadSignature,
    /// `batch-too-large` (422)
    BatchTooLarge,
    /// `body-timeout` (408)
    BodyTimeout,
    /// `body-too-large` (413)
    BodyTooLarge,
    /// `buffers-full` (503)
    BuffersFull,
    /// `conflicting-fields` (422)
    ConflictingFields,
    /// `empty-batch` (422)
    EmptyBatch,
    /// `empty-text` (422)
    EmptyText,
    /// `forbidden` (403)
    Forbidden,
    /// `header-timeout` (408)
    HeaderTimeout,
    /// `idempotency-key-reused` (409)
    IdempotencyKeyReused,
    /// `idempotency-request-in-progress` (409)
    IdempotencyRequestInProgress,
    /// `internal` (500)
    Internal,
    /// `invalid-attachment` (422)
    InvalidAttachment,
    /// `invalid-bounce` (400)
    InvalidBounce,
    /// `invalid-callback-url` (422)
    InvalidCallbackUrl,
    /// `invalid-csv` (422)
    InvalidCsv,
    /// `invalid-email` (422)
    InvalidEmail,
    /// `invalid-event` (400)
    InvalidEvent,
    /// `invalid-idempotency-key` (400)
    InvalidIdempotencyKey,
    /// `invalid-number` (422)
    InvalidNumber,
    /// `invalid-query` (422)
    InvalidQuery,
    /// `invalid-rcs` (422)
    InvalidRcs,
    /// `invalid-sender` (422)
    InvalidSender,
    /// `invalid-state` (409)
    InvalidState,
    /// `invalid-template` (422)
    InvalidTemplate,
    /// `invalid-text` (422)
    InvalidText,
    /// `invalid-timestamp` (422)
    InvalidTimestamp,
    /// `invalid-type` (422)
    InvalidType,
    /// `invalid-value` (422)
    InvalidValue,
    /// `malformed-json` (400)
    MalformedJson,
    /// `method-not-allowed` (405)
    MethodNotAllowed,
    /// `missing-field` (422)
    MissingField,
    /// `missing-variable` (422)
    MissingVariable,
    /// `no-route` (422)
    NoRoute,
    /// `not-cancellable` (409)
    NotCancellable,
    /// `not-found` (404)
    NotFound,
    /// `not-held` (409)
    NotHeld,
    /// `not-mobile` (422)
    NotMobile,
    /// `rate-limited` (429)
    RateLimited,
    /// `rejected` (422)
    Rejected,
    /// `shutting-down` (503)
    ShuttingDown,
    /// `store-unavailable` (503)
    StoreUnavailable,
    /// `template-in-use` (409)
    TemplateInUse,
    /// `text-too-long` (422)
    TextTooLong,
    /// `too-many-connections` (503)
    TooManyConnections,
    /// `too-many-segments` (422)
    TooManySegments,
    /// `too-many-vars` (422)
    TooManyVars,
    /// `unauthorized` (401)
    Unauthorized,
    /// `unavailable` (503)
    Unavailable,
    /// `unknown-message` (422)
    UnknownMessage,
    /// `unknown-field` (422)
    UnknownField,
    /// `unknown-template` (422)
    UnknownTemplate,
    /// `unreadable-body` (400)
    UnreadableBody,
    /// `unsupported-media-type` (415)
    UnsupportedMediaType,
    /// `var-name-too-long` (422)
    VarNameTooLong,
    /// `vars-too-large` (422)
    VarsTooLarge,
}

impl Problem {
    /// Every problem code, in alphabetical order.
    pub const ALL: [Problem; 58] = [
        Problem::AttachmentsTooLarge,
        Problem::BadSignature,
        Problem::BatchTooLarge,
        Problem::BodyTimeout,
        Problem::BodyTooLarge,
        Problem::BuffersFull,
        Problem::ConflictingFields,
        Problem::EmptyBatch,
        Problem::EmptyText,
        Problem::Forbidden,
        Problem::HeaderTimeout,
        Problem::IdempotencyKeyReused,
        Problem::IdempotencyRequestInProgress,
        Problem::Internal,
        Problem::InvalidAttachment,
        Problem::InvalidBounce,
        Problem::InvalidCallbackUrl,
        Problem::InvalidCsv,
        Problem::InvalidEmail,
        Problem::InvalidEvent,
        Problem::InvalidIdempotencyKey,
        Problem::InvalidNumber,
        Problem::InvalidQuery,
        Problem::InvalidRcs,
        Problem::InvalidSender,
        Problem::InvalidState,
        Problem::InvalidTemplate,
        Problem::InvalidText,
        Problem::InvalidTimestamp,
        Problem::InvalidType,
        Problem::InvalidValue,
        Problem::MalformedJson,
        Problem::MethodNotAllowed,
        Problem::MissingField,
        Problem::MissingVariable,
        Problem::NoRoute,
        Problem::NotCancellable,
        Problem::NotFound,
        Problem::NotHeld,
        Problem::NotMobile,
        Problem::RateLimited,
        Problem::Rejected,
        Problem::ShuttingDown,
        Problem::StoreUnavailable,
        Problem::TemplateInUse,
        Problem::TextTooLong,
        Problem::TooManyConnections,
        Problem::TooManySegments,
        Problem::TooManyVars,
        Problem::Unauthorized,
        Problem::Unavailable,
        Problem::UnknownMessage,
        Problem::UnknownField,
        Problem::UnknownTemplate,
        Problem::UnreadableBody,
        Problem::UnsupportedMediaType,
        Problem::VarNameTooLong,
        Problem::VarsTooLarge,
    ];

    /// The code as clients see it (`invalid-number`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Problem::AttachmentsTooLarge => "attachments-too-large",
            Problem::BadSignature => "bad-signature",
            Problem::BatchTooLarge => "batch-too-large",
            Problem::BodyTimeout => "body-timeout",
            Problem::BodyTooLarge => "body-too-large",
            Problem::BuffersFull => "buffers-full",
            Problem::ConflictingFields => "conflicting-fields",
            Problem::EmptyBatch => "empty-batch",
            Problem::EmptyText => "empty-text",
            Problem::Forbidden => "forbidden",
            Problem::HeaderTimeout => "header-timeout",
            Problem::IdempotencyKeyReused => "idempotency-key-reused",
            Problem::IdempotencyRequestInProgress => "idempotency-request-in-progress",
            Problem::Internal => "internal",
            Problem::InvalidAttachment => "invalid-attachment",
            Problem::InvalidBounce => "invalid-bounce",
            Problem::InvalidCallbackUrl => "invalid-callback-url",
            Problem::InvalidCsv => "invalid-csv",
            Problem::InvalidEmail => "invalid-email",
            Problem::InvalidEvent => "invalid-event",
            Problem::InvalidIdempotencyKey => "invalid-idempotency-key",
            Problem::InvalidNumber => "invalid-number",
            Problem::InvalidQuery => "invalid-query",
            Problem::InvalidRcs => "invalid-rcs",
            Problem::InvalidSender => "invalid-sender",
            Problem::InvalidState => "invalid-state",
            Problem::InvalidTemplate => "invalid-template",
            Problem::InvalidText => "invalid-text",
            Problem::InvalidTimestamp => "invalid-timestamp",
            Problem::InvalidType => "invalid-type",
            Problem::InvalidValue => "invalid-value",
            Problem::MalformedJson => "malformed-json",
            Problem::MethodNotAllowed => "method-not-allowed",
            Problem::MissingField => "missing-field",
            Problem::MissingVariable => "missing-variable",
            Problem::NoRoute => "no-route",
            Problem::NotCancellable => "not-cancellable",
            Problem::NotFound => "not-found",
            Problem::NotHeld => "not-held",
            Problem::NotMobile => "not-mobile",
            Problem::RateLimited => "rate-limited",
            Problem::Rejected => "rejected",
            Problem::ShuttingDown => "shutting-down",
            Problem::StoreUnavailable => "store-unavailable",
            Problem::TemplateInUse => "template-in-use",
            Problem::TextTooLong => "text-too-long",
            Problem::TooManyConnections => "too-many-connections",
            Problem::TooManySegments => "too-many-segments",
            Problem::TooManyVars => "too-many-vars",
            Problem::Unauthorized => "unauthorized",
            Problem::Unavailable => "unavailable",
            Problem::UnknownMessage => "unknown-message",
            Problem::UnknownField => "unknown-field",
            Problem::UnknownTemplate => "unknown-template",
            Problem::UnreadableBody => "unreadable-body",
            Problem::UnsupportedMediaType => "unsupported-media-type",
            Problem::VarNameTooLong => "var-name-too-long",
            Problem::VarsTooLarge => "vars-too-large",
        }
    }

    /// The HTTP status the problem is answered with.
    pub const fn http_status(self) -> u16 {
        match self {
            Problem::InvalidBounce
            | Problem::InvalidEvent
            | Problem::InvalidIdempotencyKey
            | Problem::MalformedJson
            | Problem::UnreadableBody => 400,
            Problem::BadSignature | Problem::Unauthorized => 401,
            Problem::Forbidden => 403,
            Problem::NotFound => 404,
            Problem::MethodNotAllowed => 405,
            Problem::BodyTimeout | Problem::HeaderTimeout => 408,
            Problem::IdempotencyKeyReused
            | Problem::IdempotencyRequestInProgress
            | Problem::InvalidState
            | Problem::NotCancellable
            | Problem::NotHeld
            | Problem::TemplateInUse => 409,
            Problem::BodyTooLarge => 413,
            Problem::UnsupportedMediaType => 415,
            Problem::AttachmentsTooLarge
            | Problem::BatchTooLarge
            | Problem::ConflictingFields
            | Problem::EmptyBatch
            | Problem::EmptyText
            | Problem::InvalidAttachment
            | Problem::InvalidCallbackUrl
            | Problem::InvalidCsv
            | Problem::InvalidEmail
            | Problem::InvalidNumber
            | Problem::InvalidQuery
            | Problem::InvalidRcs
            | Problem::InvalidSender
            | Problem::InvalidTemplate
            | Problem::InvalidText
            | Problem::InvalidTimestamp
            | Problem::InvalidType
            | Problem::InvalidValue
            | Problem::MissingField
            | Problem::MissingVariable
            | Problem::NoRoute
            | Problem::NotMobile
            | Problem::Rejected
            | Problem::TextTooLong
            | Problem::TooManySegments
            | Problem::TooManyVars
            | Problem::UnknownField
            | Problem::UnknownMessage
            | Problem::UnknownTemplate
            | Problem::VarNameTooLong
            | Problem::VarsTooLarge => 422,
            Problem::RateLimited => 429,
            Problem::Internal => 500,
            Problem::BuffersFull
            | Problem::ShuttingDown
            | Problem::StoreUnavailable
            | Problem::TooManyConnections
            | Problem::Unavailable => 503,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// So tests and callers can compare with the code as clients see it.
impl PartialEq<&str> for Problem {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_kebab_case_with_an_error_status() {
        let mut seen = std::collections::HashSet::new();
        for p in Problem::ALL {
            let c = p.as_str();
            assert!(seen.insert(c), "{c} twice");
            assert!(
                c.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{c} is not kebab-case"
            );
            assert!((400..600).contains(&p.http_status()), "{c}");
        }
    }
}
