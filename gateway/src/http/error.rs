//! The one error type of the HTTP API: RFC 9457 `application/problem+json` with a
//! stable `code` (also the last segment of `type`) and the offending `field`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use goniec_core::Problem;
use serde::Serialize;

/// A problem to report to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    /// Stable machine-readable code, e.g. `invalid-number` (a [`Problem`]).
    pub code: &'static str,
    /// Human explanation.
    pub detail: String,
    /// The offending request field (dotted path), when there is one.
    pub field: Option<String>,
    /// Seconds to wait before retrying (429/503).
    pub retry_after: Option<u64>,
    /// An anti-fraud rejection: the stored message and its reason codes (boxed: rare,
    /// and errors travel in every `Result` of the API).
    pub rejection: Option<Box<Rejection>>,
}

/// The message anti-fraud refused (stored as `rejected`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub id: String,
    pub reasons: Vec<&'static str>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProblemBody<'a> {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'a str,
    pub status: u16,
    pub code: &'a str,
    pub detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_status: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub reasons: &'a [&'static str],
}

impl ApiError {
    /// A `problem` (its code and HTTP status) explained by `detail`.
    pub fn new(problem: Problem, detail: impl Into<String>) -> Self {
        ApiError {
            status: problem.http_status(),
            code: problem.as_str(),
            detail: detail.into(),
            field: None,
            retry_after: None,
            rejection: None,
        }
    }

    /// Anti-fraud refused the message, stored as `rejected` under `id`.
    pub fn rejected(id: &str, reasons: Vec<&'static str>) -> Self {
        let mut e = ApiError::new(
            Problem::Rejected,
            format!(
                "refused by the anti-fraud and contact policy: {}",
                reasons.join(", ")
            ),
        );
        e.rejection = Some(Box::new(Rejection {
            id: id.to_string(),
            reasons,
        }));
        e
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            Problem::Unauthorized,
            "missing or unknown API key; send `Authorization: Bearer <key>`",
        )
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(Problem::NotFound, format!("no such {what}"))
    }

    pub fn store_unavailable() -> Self {
        ApiError::new(
            Problem::StoreUnavailable,
            "the message store is unavailable; nothing was accepted, retry later",
        )
        .retry_after(1)
    }

    pub fn shutting_down() -> Self {
        ApiError::new(
            Problem::ShuttingDown,
            "the gateway is shutting down; nothing was accepted, retry on another instance",
        )
        .retry_after(1)
    }

    /// The problem document.
    pub fn body(&self) -> ProblemBody<'_> {
        ProblemBody {
            kind: format!("https://goniec.dev/problems/{}", self.code),
            title: title(self.status),
            status: self.status,
            code: self.code,
            detail: &self.detail,
            field: self.field.as_deref(),
            id: self.rejection.as_ref().map(|r| r.id.as_str()),
            message_status: self.rejection.as_ref().map(|_| "rejected"),
            reasons: self.rejection.as_ref().map_or(&[], |r| &r.reasons),
        }
    }
}

impl From<crate::accept::Invalid> for ApiError {
    fn from(e: crate::accept::Invalid) -> Self {
        ApiError {
            field: e.field,
            ..ApiError::new(e.code, e.detail)
        }
    }
}

impl From<crate::accept::Refused> for ApiError {
    fn from(e: crate::accept::Refused) -> Self {
        use crate::accept::Refused;
        match e {
            Refused::Invalid(e) => e.into(),
            Refused::RateLimited {
                detail,
                retry_after,
            } => ApiError::new(Problem::RateLimited, detail).retry_after(retry_after),
            Refused::StoreUnavailable => ApiError::store_unavailable(),
            Refused::InProgress => ApiError::new(
                Problem::IdempotencyRequestInProgress,
                "a request with this `Idempotency-Key` is still being processed",
            )
            .retry_after(1),
            Refused::KeyReused => ApiError::new(
                Problem::IdempotencyKeyReused,
                "this `Idempotency-Key` was used with a different request body",
            )
            .field("Idempotency-Key"),
            Refused::Internal(detail) => ApiError::new(Problem::Internal, detail),
        }
    }
}

fn title(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == 401 {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        // A request timed out halfway: whatever follows on the connection is the
        // rest of it, not a new request (RFC 9110 §15.5.9).
        if self.status == 408 {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}
