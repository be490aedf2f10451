//! `/v1/messages`: submit one or a batch, read status and history, cancel.

use goniec_core::Problem;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::limits::{BodyKind, Buffered, Incoming};
use super::{authenticate, observe};
use crate::app::App;
use crate::model::{format_ms, is_message_id, now_ms, Event, Record, Status};
use crate::store::{Change, HistoryKey, IdemBegin, IdemWrite, NewMessage, Transition};
use crate::tenants::TenantCtx;
use crate::validate::{normalize_email, normalize_msisdn, parse_request, validate, Valid};
use goniec_antifraud::{Decision, Verdict};

/// The answer for one accepted message.
#[derive(Debug, Serialize)]
struct Accepted<'a> {
    id: &'a str,
    status: Status,
    segments: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    transliterated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    send_at: Option<String>,
    /// Anti-fraud reasons: why it is held or scheduled.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    reasons: Vec<&'static str>,
}

fn accepted_body<'a>(v: &'a Valid, status: Status, verdict: Option<&Verdict>) -> Accepted<'a> {
    Accepted {
        id: &v.data.id,
        status,
        segments: v.data.segments,
        encoding: v.data.encoding.as_deref(),
        transliterated: v.data.transliterated,
        send_at: v.data.send_at.map(format_ms),
        reasons: reason_codes(verdict),
    }
}

fn reason_codes(verdict: Option<&Verdict>) -> Vec<&'static str> {
    verdict.map_or_else(Vec::new, |v| v.reasons.iter().map(|r| r.as_str()).collect())
}

/// Apply what a verdict decided to the message itself: the sender picked from a
/// pool, and the next allowed contact time.
fn apply_verdict(v: &mut Valid, verdict: &Verdict) {
    if let Some(sender) = &verdict.sender {
        v.data.from = Some(sender.clone());
    }
    if let Some(at) = verdict.schedule_at {
        let at = at.as_millisecond();
        if v.data.send_at.is_none_or(|s| s < at) {
            v.data.send_at = Some(at);
        }
    }
}

/// The stored form of a valid message (and its verdict, when screened).
fn new_message(
    v: &Valid,
    now: i64,
    verdict: Option<&Verdict>,
) -> Result<(NewMessage, Status), ApiError> {
    let decision = verdict.map(|v| v.decision);
    let status = match decision {
        Some(Decision::Reject) => Status::Rejected,
        Some(Decision::Hold) => Status::Held,
        _ if v.data.send_at.is_some() => Status::Scheduled,
        _ => Status::Queued,
    };
    let data_json = serde_json::to_string(&v.data)
        .map_err(|e| ApiError::new(Problem::Internal, e.to_string()))?;
    let reasons = reason_codes(verdict).join(",");
    let ev = |status| Event {
        status,
        at: now,
        reason: (status != Status::Accepted && !reasons.is_empty()).then(|| reasons.clone()),
        detail: None,
    };
    Ok((
        NewMessage {
            id: v.data.id.clone(),
            tenant: v.data.tenant.clone(),
            channel: v.data.channel,
            to: v.data.to.clone(),
            client_ref: v.data.client_ref.clone(),
            status,
            due_ms: v.data.send_at,
            data_json,
            events: vec![ev(Status::Accepted), ev(status)],
            callbacks: v.callbacks.clone(),
        },
        status,
    ))
}

/// Parse, validate and route one message. A refusal is counted with the message's
/// channel when the request got far enough to name one.
fn prepare(app: &App, tenant: &TenantCtx, json: &str, now: i64) -> Result<Valid, ApiError> {
    let mut channel = "-";
    let result = (|| {
        let req = parse_request(json)?;
        let ch = req.channel;
        channel = ch.as_str();
        let mut v = validate(req, &tenant.cfg, &app.rules, app.store.partitions(), now)?;
        let Some(lane) = app.router.route(ch, &v.data.tenant, &v.data.to) else {
            return Err(ApiError::new(
                Problem::NoRoute,
                format!("no connector is configured for {ch} messages to this destination"),
            )
            .field("channel"));
        };
        // 16-bit UDH leaves one character less per part: count as it will be sent.
        use goniec_connectors::text::{self, Concat};
        if let (Some(Concat::Udh16), Some(body)) = (lane.connector.concat(), &v.data.text) {
            if v.data.segments > 1 {
                let enc = text::analyze(body).encoding;
                v.data.segments = text::split(body, enc, Concat::Udh16).len() as u32;
            }
        }
        Ok(v)
    })();
    if let Err(e) = &result {
        refuse(app, &tenant.cfg.name, channel, e);
    }
    result
}

fn refuse(app: &App, tenant: &str, channel: &str, e: &ApiError) {
    app.metrics
        .refused
        .with_label_values(&[tenant, channel, e.code])
        .inc();
}

fn json_response(status: u16, body: String) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Idempotency handling around an accepting operation.
enum Idem {
    None,
    Fresh { key: String, fingerprint: String },
}

async fn idem_start(
    app: &App,
    tenant: &TenantCtx,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Result<Idem, Response>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(Ok(Idem::None));
    };
    let key = raw
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::new(
                Problem::InvalidIdempotencyKey,
                "`Idempotency-Key` must be 1 to 255 visible ASCII characters",
            )
        })?
        .to_string();
    let fingerprint = hex::encode(Sha256::digest(body));
    match app
        .store
        .idem_begin(&tenant.cfg.name, &key, &fingerprint)
        .await
    {
        Ok(IdemBegin::New) => Ok(Ok(Idem::Fresh { key, fingerprint })),
        Ok(IdemBegin::Done {
            fingerprint: fp,
            status,
            body,
        }) if fp == fingerprint => {
            let mut r = json_response(status, body);
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(Err(r))
        }
        Ok(IdemBegin::InProgress { fingerprint: fp }) if fp == fingerprint => Err(ApiError::new(
            Problem::IdempotencyRequestInProgress,
            "a request with this `Idempotency-Key` is still being processed",
        )
        .retry_after(1)),
        Ok(_) => Err(ApiError::new(
            Problem::IdempotencyKeyReused,
            "this `Idempotency-Key` was used with a different request body",
        )
        .field("Idempotency-Key")),
        Err(_) => Err(ApiError::store_unavailable()),
    }
}

fn rate_limit(tenant: &TenantCtx, n: u32) -> Result<(), ApiError> {
    let Some(l) = &tenant.limiter else {
        return Ok(());
    };
    let Some(n) = std::num::NonZeroU32::new(n) else {
        return Ok(());
    };
    match l.check_n(n) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(not_until)) => {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            Err(ApiError::new(
                Problem::RateLimited,
                format!(
                    "over this tenant's message rate; retry in {} ms",
                    wait.as_millis()
                ),
            )
            .retry_after(wait.as_secs_f64().ceil().max(1.0) as u64))
        }
        Err(_) => Err(ApiError::new(
            Problem::RateLimited,
            format!("{n} messages at once exceed this tenant's rate burst; send smaller batches"),
        )
        .retry_after(1)),
    }
}

/// `POST /v1/messages`.
pub async fn create(State(app): State<Arc<App>>, headers: HeaderMap, body: Incoming) -> Response {
    let start = Instant::now();
    let resp = create_inner(&app, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    observe(&app, "create", start, &resp);
    resp
}

async fn create_inner(
    app: &App,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response, ApiError> {
    if app.flags.shutting_down() {
        return Err(ApiError::shutting_down());
    }
    // From the headers alone, before a byte of the body is read.
    let tenant = authenticate(app, headers)?;
    let body = body.read(headers, BodyKind::Message).await?;
    let now = now_ms();
    let json = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(Problem::MalformedJson, "request body is not UTF-8"))?;
    // A replay answers before anything else is checked: the first answer stands even
    // if the request would now be refused (rate limit, valid_until passed).
    let idem = match idem_start(app, &tenant, headers, &body).await? {
        Ok(i) => i,
        Err(replay) => return Ok(replay),
    };
    let result = accept_one(app, &tenant, json, &idem, now).await;
    if result.is_err() {
        release(app, &tenant, &idem).await;
    }
    result
}

/// Free an idempotency reservation whose request was refused, so a corrected retry
/// with the same key is not told "in progress".
async fn release(app: &App, tenant: &TenantCtx, idem: &Idem) {
    if let Idem::Fresh { key, .. } = idem {
        let _ = app.store.idem_abort(&tenant.cfg.name, key).await;
    }
}

/// Screen valid messages (when anti-fraud is on) and apply each verdict to its
/// message. One store round trip for all of them.
async fn screen(
    app: &App,
    tenant: &TenantCtx,
    valid: &mut [&mut Valid],
    now: i64,
) -> Result<Vec<Option<Verdict>>, ApiError> {
    let unavailable = |e: crate::store::StoreError| {
        app.metrics
            .store_errors
            .with_label_values(&["screen"])
            .inc();
        tracing::warn!(error = %e, "Could not read anti-fraud state; answering 503.");
        ApiError::store_unavailable()
    };
    let mut verdicts: Vec<Option<Verdict>> = if app.screener.enabled && !valid.is_empty() {
        let t0 = Instant::now();
        let data: Vec<&crate::model::MessageData> = valid.iter().map(|v| &v.data).collect();
        let v = app
            .screener
            .screen(app.store.as_ref(), tenant, &data, now)
            .await
            .map_err(unavailable)?;
        app.metrics
            .stage_duration
            .with_label_values(&["screen", valid[0].data.channel.as_str()])
            .observe(t0.elapsed().as_secs_f64());
        v.into_iter().map(Some).collect()
    } else if !valid.is_empty() {
        // Anti-fraud off: opt-outs and registered senders still apply (duties,
        // not fraud rules). A verdict is kept where it changes something.
        let data: Vec<&crate::model::MessageData> = valid.iter().map(|v| &v.data).collect();
        let v = app
            .screener
            .mandatory(app.store.as_ref(), tenant, &data, now)
            .await
            .map_err(unavailable)?;
        v.into_iter()
            .map(|v| {
                (v.decision != Decision::Allow || v.sender.is_some() || !v.record.is_empty())
                    .then_some(v)
            })
            .collect()
    } else {
        Vec::new()
    };
    // The e-mail suppression list (hard bounces) applies with or without anti-fraud.
    let emails: Vec<(usize, String)> = valid
        .iter()
        .enumerate()
        .filter(|(_, v)| v.data.channel == goniec_config::Channel::Email)
        .map(|(i, v)| (i, crate::validate::suppression_key(&v.data.to)))
        .collect();
    if !emails.is_empty() {
        let addresses: Vec<&str> = emails.iter().map(|(_, a)| a.as_str()).collect();
        let found = app
            .store
            .suppressed(&tenant.cfg.name, &addresses)
            .await
            .map_err(unavailable)?;
        for ((i, _), reason) in emails.iter().zip(found) {
            if reason.is_none() {
                continue;
            }
            let v = verdicts[*i].get_or_insert_with(|| Verdict {
                decision: Decision::Allow,
                reasons: Vec::new(),
                schedule_at: None,
                sender: None,
                record: Vec::new(),
            });
            v.decision = Decision::Reject;
            v.reasons.push(goniec_antifraud::ReasonCode::Suppressed);
            v.schedule_at = None;
            v.record.clear();
        }
    }
    for (v, verdict) in valid.iter_mut().zip(&verdicts) {
        let Some(verdict) = verdict else { continue };
        apply_verdict(v, verdict);
        if !app.screener.enabled && verdict.decision == Decision::Allow {
            continue; // not an anti-fraud verdict: only the sender was resolved
        }
        app.metrics
            .verdicts
            .with_label_values(&[&tenant.cfg.name, verdict.decision.as_str()])
            .inc();
        for r in &verdict.reasons {
            app.metrics
                .verdict_reasons
                .with_label_values(&[r.as_str()])
                .inc();
        }
        if verdict.decision != Decision::Allow {
            tracing::info!(message_id = %v.data.id, tenant = %tenant.cfg.name, decision = verdict.decision.as_str(), reasons = %reason_codes(Some(verdict)).join(","), "Anti-fraud verdict.");
        }
    }
    Ok(verdicts)
}

/// Count stored messages in the anti-fraud counters. A failure here is logged: the
/// messages are stored, and the counters only err towards allowing a few more.
async fn record(app: &App, verdicts: &[Option<Verdict>]) {
    let incs: Vec<goniec_antifraud::Increment> = verdicts
        .iter()
        .flatten()
        .filter(|v| v.decision != Decision::Reject)
        .flat_map(|v| v.record.iter().cloned())
        .collect();
    if let Err(e) = app.store.count(&incs).await {
        app.metrics.store_errors.with_label_values(&["count"]).inc();
        tracing::warn!(error = %e, "Could not record anti-fraud counters.");
    }
}

/// The answer for one screened message: 202 with its status, or 422 (problem) when
/// anti-fraud rejected it.
fn answer(v: &Valid, status: Status, verdict: Option<&Verdict>) -> Result<(u16, String), ApiError> {
    let body = if status == Status::Rejected {
        serde_json::to_string(&ApiError::rejected(&v.data.id, reason_codes(verdict)).body())
    } else {
        serde_json::to_string(&accepted_body(v, status, verdict))
    };
    let body = body.map_err(|e| ApiError::new(Problem::Internal, e.to_string()))?;
    Ok((if status == Status::Rejected { 422 } else { 202 }, body))
}

async fn accept_one(
    app: &App,
    tenant: &TenantCtx,
    json: &str,
    idem: &Idem,
    now: i64,
) -> Result<Response, ApiError> {
    let mut v = prepare(app, tenant, json, now)?;
    rate_limit(tenant, 1)?;
    let verdicts = screen(app, tenant, &mut [&mut v], now).await?;
    let verdict = verdicts[0].as_ref();
    let (msg, status) = new_message(&v, now, verdict)?;
    let (code, resp_body) = answer(&v, status, verdict)?;
    let write = match idem {
        Idem::Fresh { key, fingerprint } => Some(IdemWrite {
            tenant: &tenant.cfg.name,
            key,
            fingerprint,
            status: code,
            body: &resp_body,
        }),
        Idem::None => None,
    };
    let t0 = Instant::now();
    let stored = match write {
        // With an idempotency key the response is written in the same transaction.
        Some(w) => app.store.accept(std::slice::from_ref(&msg), Some(w)).await,
        None => app.batcher.run(msg).await,
    };
    if let Err(e) = stored {
        app.metrics
            .store_errors
            .with_label_values(&["accept"])
            .inc();
        tracing::warn!(error = %e, "Could not store a message; answering 503.");
        return Err(ApiError::store_unavailable());
    }
    let ch = v.data.channel.as_str();
    app.metrics
        .stage_duration
        .with_label_values(&["store_accept", ch])
        .observe(t0.elapsed().as_secs_f64());
    record(app, &verdicts).await;
    if status == Status::Rejected {
        refuse(
            app,
            &tenant.cfg.name,
            ch,
            &ApiError::rejected(&v.data.id, Vec::new()),
        );
        return Ok(problem_response(code, resp_body));
    }
    app.metrics
        .accepted
        .with_label_values(&[&tenant.cfg.name, ch])
        .inc();
    tracing::debug!(message_id = %v.data.id, tenant = %tenant.cfg.name, channel = ch, to = %crate::telemetry::mask(&v.data.to), "Message accepted.");
    Ok(json_response(code, resp_body))
}

fn problem_response(status: u16, body: String) -> Response {
    let mut r = json_response(status, body);
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

/// One item's problem in a batch answer: `{"error": <problem>}`.
fn push_error(results: &mut String, problem: &str) {
    results.push_str("{\"error\":");
    results.push_str(problem);
    results.push('}');
}

/// Read `{"messages": [...]}` item by item, handing each message's JSON to `each`
/// as soon as the parser reaches it (borrowed from the body, no copy): nothing
/// holds every item's text or a tree of it, and a batch of more than `max` items
/// is refused at item `max + 1` without reading further. Shape errors name their
/// field as for single messages.
fn parse_batch(json: &str, max: usize, mut each: impl FnMut(&str)) -> Result<(), ApiError> {
    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    /// The envelope: exactly one key, `messages`.
    struct Envelope<'a, F> {
        items: Items<'a, F>,
    }
    /// The array, streamed.
    struct Items<'a, F> {
        max: usize,
        each: &'a mut F,
        /// Set when the array had more than `max` items.
        over: &'a mut bool,
    }

    impl<'de, F: FnMut(&str)> DeserializeSeed<'de> for Envelope<'_, F> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de, F: FnMut(&str)> Visitor<'de> for Envelope<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object with `messages`")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut items = Some(self.items);
            while let Some(key) = map.next_key::<String>()? {
                if key != "messages" {
                    return Err(de::Error::unknown_field(&key, &["messages"]));
                }
                let Some(items) = items.take() else {
                    return Err(de::Error::duplicate_field("messages"));
                };
                map.next_value_seed(items)?;
            }
            if items.is_some() {
                return Err(de::Error::missing_field("messages"));
            }
            Ok(())
        }
    }
    impl<'de, F: FnMut(&str)> DeserializeSeed<'de> for Items<'_, F> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de, F: FnMut(&str)> Visitor<'de> for Items<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of messages")
        }
        fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
            let mut n = 0;
            // Borrowed from the body: an item costs no copy until it is parsed.
            while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                if n == self.max {
                    *self.over = true;
                    return Err(de::Error::custom("too many messages"));
                }
                n += 1;
                (self.each)(raw.get());
            }
            Ok(())
        }
    }

    let mut over = false;
    let mut track = serde_path_to_error::Track::new();
    let mut de = serde_json::Deserializer::from_str(json);
    let envelope = Envelope {
        items: Items {
            max,
            each: &mut each,
            over: &mut over,
        },
    };
    let parsed = envelope
        .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .and_then(|()| de.end());
    if over {
        return Err(ApiError::new(
            Problem::BatchTooLarge,
            format!("more than {max} messages in one batch; the most allowed is {max}"),
        )
        .field("messages"));
    }
    parsed
        .map_err(|e| crate::validate::json_error(&serde_path_to_error::Error::new(track.path(), e)))
}

/// `POST /v1/messages/batch`: every item is validated on its own; the valid ones are
/// stored in one round trip; results come back in request order.
pub async fn create_batch(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Incoming,
) -> Response {
    let start = Instant::now();
    let resp = batch_inner(&app, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    observe(&app, "create_batch", start, &resp);
    resp
}

async fn batch_inner(app: &App, headers: &HeaderMap, body: Incoming) -> Result<Response, ApiError> {
    if app.flags.shutting_down() {
        return Err(ApiError::shutting_down());
    }
    // From the headers alone, before a byte of the body is read.
    let tenant = authenticate(app, headers)?;
    let body = body.read(headers, BodyKind::Batch).await?;
    std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(Problem::MalformedJson, "request body is not UTF-8"))?;
    let idem = match idem_start(app, &tenant, headers, &body).await? {
        Ok(i) => i,
        Err(replay) => return Ok(replay),
    };
    let result = accept_batch(app, &tenant, body, &idem).await;
    if result.is_err() {
        release(app, &tenant, &idem).await;
    }
    result
}

async fn accept_batch(
    app: &App,
    tenant: &TenantCtx,
    body: Buffered,
    idem: &Idem,
) -> Result<Response, ApiError> {
    let json = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(Problem::MalformedJson, "request body is not UTF-8"))?;
    // First pass: the envelope's shape and the number of items, building nothing;
    // a batch over the limit is refused here before any item is looked at.
    let max = app.cfg.server.max_batch;
    let mut total = 0;
    parse_batch(json, max, |_| total += 1)?;
    if total == 0 {
        return Err(ApiError::new(Problem::EmptyBatch, "`messages` is empty").field("messages"));
    }
    // Second pass: each item validated as the parser reaches it, into a vector of
    // exactly the right size (growing one by doubling would hold up to twice it).
    let now = now_ms();
    let mut prepared: Vec<Result<Valid, ApiError>> = Vec::with_capacity(total);
    parse_batch(json, max, |item| {
        prepared.push(prepare(app, tenant, item, now));
    })?;
    // Every message now owns its data: give the body and its share of the buffer
    // budget back before the store round trip.
    drop(body);
    let n_valid = prepared.iter().filter(|r| r.is_ok()).count();
    rate_limit(tenant, n_valid as u32)?;
    let mut valid: Vec<&mut Valid> = prepared
        .iter_mut()
        .filter_map(|r| r.as_mut().ok())
        .collect();
    let mut verdicts = screen(app, tenant, &mut valid, now).await?.into_iter();

    let mut msgs = Vec::with_capacity(n_valid);
    let mut screened = Vec::with_capacity(n_valid);
    let mut results = String::with_capacity(total * 96);
    let mut n_accepted = 0;
    // Consumed in order: each validated message is dropped as soon as its stored
    // form and its answer exist, so the two are never all held at once.
    for (i, r) in prepared.into_iter().enumerate() {
        if i > 0 {
            results.push(',');
        }
        match r {
            Ok(v) => {
                let verdict = verdicts.next().flatten();
                let (msg, status) = new_message(&v, now, verdict.as_ref())?;
                let (code, body) = answer(&v, status, verdict.as_ref())?;
                msgs.push(msg);
                screened.push(verdict);
                if code == 422 {
                    push_error(&mut results, &body);
                } else {
                    n_accepted += 1;
                    results.push_str(&body);
                }
            }
            Err(e) => {
                let body = serde_json::to_string(&e.body())
                    .map_err(|e| ApiError::new(Problem::Internal, e.to_string()))?;
                push_error(&mut results, &body);
            }
        }
    }
    let mut out = String::with_capacity(results.len() + 64);
    out.push_str(&format!(
        "{{\"accepted\":{n_accepted},\"rejected\":{},\"results\":[",
        total - n_accepted
    ));
    out.push_str(&results);
    drop(results);
    out.push_str("]}");
    let status = if n_accepted == total { 202 } else { 207 };
    let write = match idem {
        Idem::Fresh { key, fingerprint } => Some(IdemWrite {
            tenant: &tenant.cfg.name,
            key,
            fingerprint,
            status,
            body: &out,
        }),
        Idem::None => None,
    };
    if !msgs.is_empty() || write.is_some() {
        let t0 = Instant::now();
        if let Err(e) = app.store.accept(&msgs, write).await {
            app.metrics
                .store_errors
                .with_label_values(&["accept"])
                .inc();
            tracing::warn!(error = %e, count = msgs.len(), "Could not store a batch; answering 503.");
            return Err(ApiError::store_unavailable());
        }
        app.metrics
            .stage_duration
            .with_label_values(&["store_accept", "batch"])
            .observe(t0.elapsed().as_secs_f64());
    }
    record(app, &screened).await;
    // One counter update per channel, not per message.
    for ch in goniec_config::Channel::ALL {
        let n = msgs
            .iter()
            .filter(|m| m.channel == ch && m.status != Status::Rejected)
            .count() as u64;
        if n > 0 {
            app.metrics
                .accepted
                .with_label_values(&[&tenant.cfg.name, ch.as_str()])
                .inc_by(n);
        }
    }
    Ok(json_response(status, out))
}

/// A message as the API shows it.
#[derive(Serialize)]
struct MessageView<'a> {
    id: &'a str,
    status: Status,
    channel: &'a str,
    to: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ref: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    segments: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'a str>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    send_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_until: Option<String>,
    events: Vec<EventView<'a>>,
}

#[derive(Serialize)]
struct EventView<'a> {
    status: Status,
    at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

fn view(r: &Record) -> MessageView<'_> {
    MessageView {
        id: &r.data.id,
        status: r.status,
        channel: r.data.channel.as_str(),
        to: &r.data.to,
        from: r.data.from.as_deref(),
        client_ref: r.data.client_ref.as_deref(),
        text: r.data.text.as_deref(),
        subject: r.data.email.as_ref().map(|e| e.subject.as_str()),
        segments: r.data.segments,
        encoding: r.data.encoding.as_deref(),
        created_at: format_ms(r.data.created_at),
        send_at: r.data.send_at.map(format_ms),
        valid_until: r.data.valid_until.map(format_ms),
        events: r
            .events
            .iter()
            .map(|e| EventView {
                status: e.status,
                at: format_ms(e.at),
                reason: e.reason.as_deref(),
                detail: e.detail.as_deref(),
            })
            .collect(),
    }
}

/// Load a message of this tenant; another tenant's message is "not found" (404, never 403).
async fn load_own(app: &App, tenant: &TenantCtx, id: &str) -> Result<Record, ApiError> {
    if !is_message_id(id) {
        return Err(ApiError::not_found("message"));
    }
    match app.store.get(id).await {
        Ok(Some(r)) if r.data.tenant == tenant.cfg.name => Ok(r),
        Ok(_) => Err(ApiError::not_found("message")),
        Err(_) => Err(ApiError::store_unavailable()),
    }
}

/// `GET /v1/messages/{id}`.
pub async fn show(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let start = Instant::now();
    let resp = async {
        let tenant = authenticate(&app, &headers)?;
        let r = load_own(&app, &tenant, &id).await?;
        Ok::<_, ApiError>(axum::Json(view(&r)).into_response())
    }
    .await
    .unwrap_or_else(IntoResponse::into_response);
    observe(&app, "show", start, &resp);
    resp
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptOutRequest {
    to: String,
}

/// A phone number (E.164 or national) or an e-mail address, normalised as messages
/// are, with the channel its opt-out key is computed for.
fn recipient(app: &App, raw: &str) -> Result<(goniec_config::Channel, String), ApiError> {
    use goniec_config::Channel;
    let r = if raw.contains('@') {
        normalize_email(raw).map(|to| (Channel::Email, to))
    } else {
        normalize_msisdn(raw, app.rules.region, false).map(|to| (Channel::Sms, to))
    };
    r.map_err(|e| e.field("to"))
}

/// `POST /v1/opt-outs` `{"to": "+48…"}`: this tenant may no longer message the
/// recipient; later submissions are rejected with `opted_out`.
pub async fn opt_out(State(app): State<Arc<App>>, headers: HeaderMap, body: Incoming) -> Response {
    let start = Instant::now();
    let resp = async {
        let tenant = authenticate(&app, &headers)?;
        let body = body.read(&headers, BodyKind::Small).await?;
        let de = &mut serde_json::Deserializer::from_slice(&body);
        let req: OptOutRequest =
            serde_path_to_error::deserialize(de).map_err(|e| crate::validate::json_error(&e))?;
        let (channel, to) = recipient(&app, &req.to)?;
        let key = app.screener.opt_out_key(&tenant, channel, &to);
        app.store
            .set_opt_out(&key, true, crate::model::now_ms())
            .await
            .map_err(|_| ApiError::store_unavailable())?;
        tracing::info!(tenant = %tenant.cfg.name, to = %crate::telemetry::mask(&to), "Recipient opted out.");
        Ok::<_, ApiError>(axum::Json(serde_json::json!({"to": to, "opted_out": true})).into_response())
    }
    .await
    .unwrap_or_else(IntoResponse::into_response);
    observe(&app, "opt_out", start, &resp);
    resp
}

/// `DELETE /v1/opt-outs/{to}`: the recipient may be messaged again (they opted in).
pub async fn opt_in(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let start = Instant::now();
    let resp = async {
        let tenant = authenticate(&app, &headers)?;
        let (channel, to) = recipient(&app, &raw)?;
        let key = app.screener.opt_out_key(&tenant, channel, &to);
        app.store
            .set_opt_out(&key, false, crate::model::now_ms())
            .await
            .map_err(|_| ApiError::store_unavailable())?;
        Ok::<_, ApiError>(
            axum::Json(serde_json::json!({"to": to, "opted_out": false})).into_response(),
        )
    }
    .await
    .unwrap_or_else(IntoResponse::into_response);
    observe(&app, "opt_in", start, &resp);
    resp
}

/// `DELETE /v1/messages/{id}`: cancel while not yet submitted.
pub async fn cancel(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let start = Instant::now();
    let resp = async {
        let tenant = authenticate(&app, &headers)?;
        let r = load_own(&app, &tenant, &id).await?;
        let change = Change::new(Status::Cancelled, now_ms(), Some("cancelled_by_client".into()), None);
        match app.store.transition(&id, &change).await {
            Ok(Transition::Applied { .. }) => {
                app.metrics.transitions.with_label_values(&[r.data.channel.as_str(), "cancelled"]).inc();
                Ok(axum::Json(serde_json::json!({"id": id, "status": "cancelled"})).into_response())
            }
            Ok(Transition::Refused { current }) => Err(ApiError::new(Problem::NotCancellable,
                format!("the message is already `{current}`; only messages not yet submitted can be cancelled"),
            )),
            Ok(Transition::InFlight) => Err(ApiError::new(Problem::NotCancellable,
                "the message is being submitted to the carrier right now and can no longer be cancelled",
            )),
            Ok(Transition::Missing) => Err(ApiError::not_found("message")),
            // Only receipts produce Partial; a cancel never does.
            Ok(Transition::Partial) => Err(ApiError::new(Problem::NotCancellable, "the message was already submitted")),
            Err(_) => Err(ApiError::store_unavailable()),
        }
    }
    .await
    .unwrap_or_else(IntoResponse::into_response);
    observe(&app, "cancel", start, &resp);
    resp
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    to: Option<String>,
    client_ref: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /v1/messages?to=…` or `?client_ref=…`: newest first, `cursor` for the next page.
pub async fn history(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    q: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let start = Instant::now();
    let resp = async {
        let tenant = authenticate(&app, &headers)?;
        let Query(q) = q.map_err(|e| ApiError::new(Problem::InvalidQuery, e.body_text()))?;
        let key = match (q.to, q.client_ref) {
            (Some(to), None) => HistoryKey::To(if to.contains('@') {
                normalize_email(&to)?
            } else {
                normalize_msisdn(&to, app.rules.region, false)?
            }),
            (None, Some(r)) => HistoryKey::ClientRef(r),
            _ => {
                return Err(ApiError::new(
                    Problem::InvalidQuery,
                    "give exactly one of `to` or `client_ref`",
                ))
            }
        };
        let limit = q.limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(
                ApiError::new(Problem::InvalidQuery, "`limit` must be 1 to 500").field("limit"),
            );
        }
        if let Some(c) = &q.cursor {
            if !is_message_id(c) {
                return Err(ApiError::new(
                    Problem::InvalidQuery,
                    "`cursor` is not one this API returned",
                )
                .field("cursor"));
            }
        }
        let ids = app
            .store
            .history(&tenant.cfg.name, &key, q.cursor.as_deref(), limit)
            .await
            .map_err(|_| ApiError::store_unavailable())?;
        let records = app
            .store
            .get_many(&ids)
            .await
            .map_err(|_| ApiError::store_unavailable())?;
        let next = if ids.len() == limit {
            ids.last().cloned()
        } else {
            None
        };
        let views: Vec<MessageView<'_>> = records
            .iter()
            .flatten()
            .filter(|r| r.data.tenant == tenant.cfg.name)
            .map(view)
            .collect();
        Ok::<_, ApiError>(
            axum::Json(serde_json::json!({"messages": views, "next_cursor": next})).into_response(),
        )
    }
    .await
    .unwrap_or_else(IntoResponse::into_response);
    observe(&app, "history", start, &resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::parse_batch;

    fn items(json: &str, max: usize) -> Result<Vec<String>, (u16, &'static str, String)> {
        let mut seen = Vec::new();
        parse_batch(json, max, |item| seen.push(item.to_string()))
            .map(|()| seen)
            .map_err(|e| (e.status, e.code, e.field.unwrap_or_default()))
    }

    #[test]
    fn batches_are_read_item_by_item_and_stop_at_the_limit() {
        assert_eq!(
            items(r#"{"messages":[{"a":1}, "x" ,[2]]}"#, 3),
            Ok(vec![r#"{"a":1}"#.into(), r#""x""#.into(), "[2]".into()])
        );
        assert_eq!(items(r#"{"messages":[]}"#, 3), Ok(vec![]));
        // Item 4 of at most 3: refused without handing on more than 3, and without
        // reading on (the rest is not even valid JSON).
        let mut handed = 0;
        let e = parse_batch(r#"{"messages":[1,2,3,4,oops"#, 3, |_| handed += 1).unwrap_err();
        assert_eq!(
            (e.status, e.code, e.field.as_deref()),
            (422, "batch-too-large", Some("messages"))
        );
        assert_eq!(handed, 3);
    }

    #[test]
    fn batch_shape_errors_name_the_field() {
        let err = |json| items(json, 10).unwrap_err();
        assert_eq!(
            err(r#"{"messages":5}"#),
            (422, "invalid-type", "messages".into())
        );
        assert_eq!(
            err(r#"{"messages":[],"x":1}"#),
            (422, "unknown-field", "x".into())
        );
        assert_eq!(err(r#"{}"#), (422, "missing-field", "messages".into()));
        assert_eq!(err(r#"[{"channel":"sms"}]"#).1, "invalid-type");
        assert_eq!(err(r#"{"messages":[],"messages":[]}"#).1, "invalid-value");
        assert_eq!(err(r#"{"messages":[1,"#).1, "malformed-json");
        assert_eq!(err(r#"{"messages":[]} trailing"#).1, "malformed-json");
    }
}
