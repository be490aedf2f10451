//! What the accept layer refuses: a message ([`Invalid`]: which rule, which
//! request field, and why, in words a client developer can act on) or a whole
//! submission ([`Refused`]). The HTTP layer turns them into problem+json
//! answers; nothing here knows about HTTP.

use goniec_core::Problem;

/// Why a message was refused before anything was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The rule it broke.
    pub code: Problem,
    /// The offending request field (dotted path), when there is one.
    pub field: Option<String>,
    /// Human explanation.
    pub detail: String,
}

impl Invalid {
    /// A refusal under `code`, explained by `detail`.
    pub fn new(code: Problem, detail: impl Into<String>) -> Self {
        Invalid {
            code,
            field: None,
            detail: detail.into(),
        }
    }

    /// Name the offending field.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// Why a submission as a whole was refused (nothing was stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// One message, and it is not valid (in a batch, each item's own
    /// [`Outcome::Invalid`] says so instead).
    Invalid(Invalid),
    /// Over the tenant's message rate; retry after this many seconds.
    RateLimited { detail: String, retry_after: u64 },
    /// The store could not be read or written; retry later.
    StoreUnavailable,
    /// A request under the same idempotency key is still being processed.
    InProgress,
    /// The idempotency key was used with another request body.
    KeyReused,
    /// A bug: a message could not be serialised.
    Internal(String),
}

impl From<Invalid> for Refused {
    fn from(e: Invalid) -> Self {
        Refused::Invalid(e)
    }
}
