//! What one request may cost the gateway: a body limit per route, a deadline for
//! the body to arrive, and a budget of body bytes buffered across all requests.
//!
//! Handlers take the body as [`Incoming`], which reads nothing, and call
//! [`Incoming::read`] only once the request is authenticated: a request without a
//! valid key is answered 401 from its headers and its body is never read. Only
//! `/v1/webhooks/rcs`, signed over its body, reads before it can authenticate,
//! and its limit is small.

use goniec_core::Problem;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};
use bytes::{Bytes, BytesMut};
use goniec_config::Server;
use http_body_util::BodyExt;
use prometheus::IntGauge;

use super::error::ApiError;
use crate::accept::validate::MAX_VARS_BYTES;

/// The longest JSON spelling of one character of text: a `\u00f3` escape. Raw
/// UTF-8 takes at most 4, so a text of `max_text_chars` never overflows the limit
/// however its client encodes it.
const JSON_BYTES_PER_CHAR: u64 = 6;

/// Room in a single message for everything but attachments, texts and vars:
/// recipient, sender, subject (≤ 998 characters), times, references, RCS rich
/// content (cards, carousels and suggestions with their own length limits) and the
/// JSON around them.
const OTHER_FIELDS: u64 = 256 * 1024;

/// Opt-outs and admin requests carry a few short fields.
pub const SMALL_BODY: u64 = 64 * 1024;

/// A bounce (a DSN that may quote the whole original message).
pub const BOUNCE_BODY: u64 = 2 * 1024 * 1024;

/// An RCS platform event: a small JSON document, base64-wrapped by Pub/Sub.
pub const RCS_EVENT_BODY: u64 = 256 * 1024;

/// What a route's body is, which decides its limit and whether it must be JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `POST /v1/messages`: one message.
    Message,
    /// `POST /v1/messages/batch`: up to `server.max_batch` messages.
    Batch,
    /// Opt-outs and admin requests.
    Small,
    /// A DSN, posted raw to `/v1/webhooks/email-bounce`.
    Bounce,
    /// An RCS platform event.
    RcsEvent,
    /// A console form (`application/x-www-form-urlencoded`): as small as `Small`.
    Form,
}

impl BodyKind {
    /// Bodies the API parses as JSON; the webhooks take what their senders send.
    fn is_json(self) -> bool {
        matches!(self, BodyKind::Message | BodyKind::Batch | BodyKind::Small)
    }
}

/// The largest body of one message: its attachments as base64 (`max_attachments`
/// counts them as sent, base64 with line breaks, so the JSON's unbroken base64
/// fits in it), its text and its HTML at [`JSON_BYTES_PER_CHAR`] per character,
/// its vars, and [`OTHER_FIELDS`]; never more than `max_body`. About 11.3 MiB
/// with the defaults, nearly all of it the 10 MiB of attachments an e-mail may
/// carry.
pub fn message_limit(server: &Server) -> u64 {
    let attachments = server.max_attachments.bytes();
    let texts = (server.max_text_chars as u64).saturating_mul(2 * JSON_BYTES_PER_CHAR);
    attachments
        .saturating_add(texts)
        .saturating_add(MAX_VARS_BYTES as u64)
        .saturating_add(OTHER_FIELDS)
        .min(server.max_body.bytes())
}

/// The limits and the shared budget; one per server, reached by handlers as a
/// request extension (see [`super::router`]).
#[derive(Debug)]
pub struct Limits {
    message: u64,
    max_body: u64,
    body_timeout: Duration,
    max_buffered: u64,
    /// Body bytes held across all requests now.
    buffered: AtomicU64,
    /// The same, for `/metrics`.
    buffered_gauge: IntGauge,
}

impl Limits {
    pub fn new(server: &Server, buffered_gauge: IntGauge) -> Limits {
        Limits {
            message: message_limit(server),
            max_body: server.max_body.bytes(),
            body_timeout: server.body_timeout,
            max_buffered: server.max_buffered.bytes(),
            buffered: AtomicU64::new(0),
            buffered_gauge,
        }
    }

    /// The most bytes a body of this kind may have.
    pub fn body_limit(&self, kind: BodyKind) -> u64 {
        let own = match kind {
            BodyKind::Message => self.message,
            BodyKind::Batch => self.max_body,
            BodyKind::Small | BodyKind::Form => SMALL_BODY,
            BodyKind::Bounce => BOUNCE_BODY,
            BodyKind::RcsEvent => RCS_EVENT_BODY,
        };
        own.min(self.max_body)
    }

    /// Body bytes buffered across all requests now.
    pub fn buffered(&self) -> u64 {
        self.buffered.load(Ordering::Relaxed)
    }
}

/// A share of `server.max_buffered`, given back when dropped.
#[derive(Debug)]
struct Reservation {
    limits: Arc<Limits>,
    bytes: u64,
}

impl Reservation {
    /// Hold `total` bytes in all, or refuse with 503 when the budget cannot give
    /// the difference: better to turn a request away than to buffer past the limit.
    fn grow_to(&mut self, total: u64) -> Result<(), ApiError> {
        let Some(more) = total.checked_sub(self.bytes).filter(|m| *m > 0) else {
            return Ok(());
        };
        let max = self.limits.max_buffered;
        self.limits
            .buffered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more).filter(|n| *n <= max)
            })
            .map_err(|_| {
                ApiError::new(
                    Problem::BuffersFull,
                    format!(
                        "the gateway holds as many request bodies as it may ({max} bytes, \
                         `server.max_buffered`); nothing was accepted, retry shortly"
                    ),
                )
                .retry_after(1)
            })?;
        self.limits.buffered_gauge.add(more as i64);
        self.bytes = total;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.limits.buffered.fetch_sub(self.bytes, Ordering::AcqRel);
            self.limits.buffered_gauge.sub(self.bytes as i64);
        }
    }
}

/// A request body read in full, holding its share of the budget until dropped.
#[derive(Debug)]
pub struct Buffered {
    bytes: Bytes,
    _reservation: Reservation,
}

impl std::ops::Deref for Buffered {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// A request body not read yet. Extracting it reads nothing; see [`Incoming::read`].
pub struct Incoming {
    body: Body,
    limits: Arc<Limits>,
}

impl<S: Send + Sync> FromRequest<S> for Incoming {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let limits = parts
            .extensions
            .get::<Arc<Limits>>()
            .cloned()
            .ok_or_else(|| ApiError::new(Problem::Internal, "request limits are not set up"))?;
        Ok(Incoming { body, limits })
    }
}

impl Incoming {
    /// Read the body of a request of `kind`: refuse a non-JSON content type (415) or
    /// a declared length over the limit (413) before reading anything, take the
    /// bytes from the budget (503 when it is spent), and read within
    /// `server.body_timeout` (408 after it).
    /// Read the body as JSON `T`: a bad one is a problem naming its field.
    pub async fn json<T: serde::de::DeserializeOwned>(
        self,
        headers: &HeaderMap,
        kind: BodyKind,
    ) -> Result<T, ApiError> {
        let body = self.read(headers, kind).await?;
        let de = &mut serde_json::Deserializer::from_slice(&body);
        serde_path_to_error::deserialize(de)
            .map_err(|e| crate::accept::validate::json_error(&e).into())
    }

    pub async fn read(self, headers: &HeaderMap, kind: BodyKind) -> Result<Buffered, ApiError> {
        let limit = self.limits.body_limit(kind);
        let too_large = || {
            ApiError::new(
                Problem::BodyTooLarge,
                format!("request body is over this endpoint's {limit}-byte limit"),
            )
        };
        if kind.is_json() {
            check_json(headers)?;
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut reservation = Reservation {
            limits: self.limits.clone(),
            bytes: 0,
        };
        let mut buf = BytesMut::new();
        if let Some(n) = declared {
            // The whole declared body at once, so a client that stalls halfway still
            // counts for all it announced (and the buffer never reallocates).
            reservation.grow_to(n)?;
            buf.reserve(n as usize);
        }
        let mut body = self.body;
        let read = async {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| {
                    ApiError::new(
                        Problem::UnreadableBody,
                        format!("could not read the request body: {e}"),
                    )
                })?;
                let Ok(data) = frame.into_data() else {
                    continue; // trailers
                };
                let len = (buf.len() + data.len()) as u64;
                if len > limit {
                    return Err(too_large());
                }
                // Chunked bodies take from the budget as they arrive.
                reservation.grow_to(len)?;
                buf.extend_from_slice(&data);
            }
            Ok(())
        };
        match tokio::time::timeout(self.limits.body_timeout, read).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(ApiError::new(
                    Problem::BodyTimeout,
                    format!(
                        "the request body did not arrive within {} (`server.body_timeout`)",
                        humantime::format_duration(self.limits.body_timeout)
                    ),
                ))
            }
        }
        Ok(Buffered {
            bytes: buf.freeze(),
            _reservation: reservation,
        })
    }
}

/// Refuse a body declared as anything but JSON (none declared is taken as JSON).
fn check_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" && !mime.ends_with("+json") {
        return Err(ApiError::new(
            Problem::UnsupportedMediaType,
            format!("send JSON (`Content-Type: application/json`), not `{mime}`"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use goniec_config::ByteSize;

    fn server() -> Server {
        Server {
            max_body: ByteSize::kib(64),
            max_buffered: ByteSize::kib(96),
            body_timeout: Duration::from_millis(200),
            max_attachments: ByteSize::kib(3),
            max_text_chars: 100,
            ..Server::default()
        }
    }

    fn limits(server: &Server) -> Arc<Limits> {
        Arc::new(Limits::new(server, IntGauge::new("b", "b").unwrap()))
    }

    fn incoming(limits: &Arc<Limits>, body: Body) -> Incoming {
        Incoming {
            body,
            limits: limits.clone(),
        }
    }

    fn with_length(n: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, n.into());
        h
    }

    #[test]
    fn a_message_may_be_as_large_as_what_it_can_carry_and_no_larger_than_max_body() {
        let s = server();
        // 3 KiB of attachments as sent, 2 × 100 characters × 6 bytes, 16 KiB of
        // vars, 256 KiB for the rest: over max_body, which caps it.
        assert_eq!(message_limit(&s), 64 * 1024);
        let s = Server {
            max_body: ByteSize::mib(1),
            ..server()
        };
        assert_eq!(message_limit(&s), 3072 + 1200 + 16384 + 262144);
        // The documented default.
        let d = Server::default();
        assert_eq!(message_limit(&d), 10_485_760 + 1_200_000 + 16_384 + 262_144);
        let l = Limits::new(&s, IntGauge::new("b", "b").unwrap());
        assert_eq!(l.body_limit(BodyKind::Batch), 1024 * 1024);
        assert_eq!(l.body_limit(BodyKind::Small), SMALL_BODY);
        // Every kind is capped by max_body.
        assert_eq!(l.body_limit(BodyKind::Bounce), 1024 * 1024);
    }

    #[tokio::test]
    async fn declared_lengths_over_the_limit_are_refused_before_reading() {
        let l = limits(&server());
        // The body would fail if polled: only the declared length may decide.
        let e = incoming(&l, stalled())
            .read(&with_length(65 * 1024), BodyKind::Batch)
            .await
            .unwrap_err();
        assert_eq!((e.status, e.code), (413, "body-too-large"));
        assert_eq!(l.buffered(), 0);
    }

    #[tokio::test]
    async fn undeclared_bodies_are_cut_at_the_limit() {
        let l = limits(&server());
        let e = incoming(&l, Body::from(vec![b' '; 64 * 1024 + 1]))
            .read(&HeaderMap::new(), BodyKind::Batch)
            .await
            .unwrap_err();
        assert_eq!((e.status, e.code), (413, "body-too-large"));
        let ok = incoming(&l, Body::from(vec![b' '; 64 * 1024]))
            .read(&HeaderMap::new(), BodyKind::Batch)
            .await
            .unwrap();
        assert_eq!(ok.len(), 64 * 1024);
        assert_eq!(l.buffered(), 64 * 1024);
        drop(ok);
        assert_eq!(l.buffered(), 0);
    }

    #[tokio::test]
    async fn the_budget_refuses_with_503_and_is_given_back() {
        let l = limits(&server());
        let first = incoming(&l, Body::from(vec![b' '; 60 * 1024]))
            .read(&with_length(60 * 1024), BodyKind::Batch)
            .await
            .unwrap();
        // 60 + 40 KiB > 96 KiB: refused before reading.
        let e = incoming(&l, stalled())
            .read(&with_length(40 * 1024), BodyKind::Batch)
            .await
            .unwrap_err();
        assert_eq!(
            (e.status, e.code, e.retry_after),
            (503, "buffers-full", Some(1))
        );
        assert_eq!(l.buffered(), 60 * 1024);
        drop(first);
        let second = incoming(&l, Body::from(vec![b' '; 40 * 1024]))
            .read(&with_length(40 * 1024), BodyKind::Batch)
            .await
            .unwrap();
        assert_eq!(second.len(), 40 * 1024);
    }

    #[tokio::test]
    async fn a_stalled_body_times_out_and_frees_its_share() {
        let l = limits(&server());
        let t0 = std::time::Instant::now();
        let e = incoming(&l, stalled())
            .read(&with_length(1000), BodyKind::Message)
            .await
            .unwrap_err();
        assert_eq!((e.status, e.code), (408, "body-timeout"));
        assert!(t0.elapsed() >= Duration::from_millis(200));
        assert_eq!(l.buffered(), 0);
    }

    #[tokio::test]
    async fn only_json_is_taken_where_json_is_expected() {
        let l = limits(&server());
        let mut h = with_length(2);
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        let e = incoming(&l, Body::from("hi"))
            .read(&h, BodyKind::Message)
            .await
            .unwrap_err();
        assert_eq!((e.status, e.code), (415, "unsupported-media-type"));
        // A DSN is not JSON and need not be.
        let ok = incoming(&l, Body::from("hi"))
            .read(&h, BodyKind::Bounce)
            .await
            .unwrap();
        assert_eq!(&*ok, b"hi");
    }

    /// A body that never yields a byte: a client that stopped sending.
    fn stalled() -> Body {
        struct Stalled;
        impl axum::body::HttpBody for Stalled {
            type Data = Bytes;
            type Error = std::convert::Infallible;
            fn poll_frame(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>>
            {
                std::task::Poll::Pending
            }
        }
        Body::new(Stalled)
    }
}
