//! A message the accept layer refuses: which rule ([`Problem`]), which request
//! field, and why, in words a client developer can act on. The HTTP layer turns
//! it into a problem+json answer; nothing here knows about HTTP.

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
