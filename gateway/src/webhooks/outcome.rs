//! What one callback POST (alone or in a batch) came to.

/// The result of posting a callback.
#[derive(Clone)]
pub(crate) enum Outcome {
    Delivered,
    Drop(&'static str),
    Failed(Failure),
}

/// Why a callback attempt failed, and what it was for: safe to log and to keep
/// with a dead letter (the URL without user info, query or fragment, which may
/// carry tokens).
#[derive(Clone)]
pub(crate) struct Failure {
    pub cause: String,
    pub message_id: Option<String>,
    pub tenant: String,
    pub url: String,
}
