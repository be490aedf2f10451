//! Send phase: C workers share one HTTP client and claim slices of the
//! sequence-number space from a shared cursor, so the N messages are split
//! evenly no matter how fast each worker's requests return.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use reqwest::header::RETRY_AFTER;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tokio::time::Instant;

use crate::payload::{Batch, Payloads};

/// Cap on a single Retry-After pause: a misbehaving server must not park a
/// worker for the whole run.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Pause after a 429/503 without a usable Retry-After, so a throttling gateway
/// is not hammered in a tight loop.
const DEFAULT_THROTTLE_PAUSE: Duration = Duration::from_millis(200);

/// Latency histogram bounds, in µs: 1 µs .. 1 h, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that satisfy the constructor's preconditions.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Live counters, read by the progress reporter while workers run.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub errors: AtomicU64,
    pub throttled: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> Counts {
        Counts {
            sent: self.sent.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub accepted: u64,
    pub errors: u64,
    pub throttled: u64,
}

/// What the send phase needs, shared by all workers.
#[derive(Debug)]
pub struct SendPlan {
    pub client: reqwest::Client,
    pub single_url: Url,
    pub batch_url: Url,
    pub api_key: String,
    pub count: u64,
    pub batch: u64,
    pub payloads: Payloads,
    /// Stop claiming new work at this instant (`--duration-limit`).
    pub deadline: Instant,
    /// Keep accepted ids only when they will be polled: at millions of
    /// messages they are real memory.
    pub keep_ids: bool,
    /// Next sequence number to claim.
    pub cursor: AtomicU64,
    pub counters: Counters,
}

/// What one worker hands back when it is done.
#[derive(Debug)]
pub struct WorkerReport {
    pub latency_us: Histogram<u64>,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub accepted_ids: Vec<String>,
}

/// Outcome of one request, per message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub accepted_ids: Vec<String>,
    pub throttled: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    fn error(&mut self, kind: impl Into<String>, n: u64) {
        if n > 0 {
            *self.errors.entry(kind.into()).or_default() += n;
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[derive(Deserialize)]
struct Accepted {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct BatchResponse {
    results: Vec<BatchItem>,
}

#[derive(Deserialize)]
struct BatchItem {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Classifies an HTTP answer to a request carrying `items` messages.
/// `batch` selects the batch response shape. Pure, so it is unit-tested.
pub fn classify(status: StatusCode, body: &[u8], items: u64, batch: bool) -> Tally {
    let mut t = Tally::default();
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        t.throttled = items;
        return t;
    }
    if !status.is_success() {
        t.error(status.as_u16().to_string(), items);
        return t;
    }
    if !batch {
        match serde_json::from_slice::<Accepted>(body) {
            Ok(Accepted { id: Some(id) }) if !id.is_empty() => t.accepted_ids.push(id),
            _ => t.error("bad_response", items),
        }
        return t;
    }
    let Ok(resp) = serde_json::from_slice::<BatchResponse>(body) else {
        t.error("bad_response", items);
        return t;
    };
    let mut seen = 0u64;
    for item in resp
        .results
        .into_iter()
        .take(usize::try_from(items).unwrap_or(usize::MAX))
    {
        seen += 1;
        match (item.id, item.error) {
            (Some(id), _) if !id.is_empty() => t.accepted_ids.push(id),
            (_, Some(problem)) => t.error(format!("item:{}", problem_kind(&problem)), 1),
            _ => t.error("bad_response", 1),
        }
    }
    // Fewer results than messages breaks the "per-item result in request
    // order" contract; the missing ones are unaccounted, hence errors.
    t.error("bad_response", items - seen);
    t
}

/// A stable key for an RFC 9457 problem: its `type`, else `code`, else `status`.
fn problem_kind(problem: &serde_json::Value) -> String {
    for key in ["type", "code"] {
        if let Some(s) = problem.get(key).and_then(|v| v.as_str()) {
            if !s.is_empty() && s != "about:blank" {
                return s.to_owned();
            }
        }
    }
    match problem.get("status") {
        Some(s) if !s.is_null() => s.to_string(),
        _ => "unknown".to_owned(),
    }
}

/// `Retry-After` is either delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let wait = at.duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

pub(crate) fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    }
}

/// One worker: claim `batch` sequence numbers, send them, account for the
/// outcome, repeat. Each iteration consumes at least one number of a finite
/// count, and the deadline is checked before every claim, so the loop is
/// bounded both in count and in time. Never panics on a bad answer.
pub async fn worker(plan: Arc<SendPlan>) -> WorkerReport {
    let mut report = WorkerReport {
        latency_us: new_histogram(),
        errors_by_kind: BTreeMap::new(),
        accepted_ids: Vec::new(),
    };
    while Instant::now() < plan.deadline {
        let start = plan.cursor.fetch_add(plan.batch, Ordering::Relaxed);
        if start >= plan.count {
            break;
        }
        let end = (start + plan.batch).min(plan.count);
        let items = end - start;
        let msgs = plan.payloads.messages(start, end);
        let req = if plan.batch > 1 {
            plan.client
                .post(plan.batch_url.clone())
                .json(&Batch { messages: &msgs })
        } else {
            plan.client.post(plan.single_url.clone()).json(&msgs[0])
        };
        let req = req.bearer_auth(&plan.api_key);

        let began = Instant::now();
        let (tally, pause) = match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let pause = throttle_pause(status, resp.headers());
                match resp.bytes().await {
                    Ok(body) => {
                        // Latency covers the whole answer, body included.
                        let us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                        report.latency_us.saturating_record(us);
                        (classify(status, &body, items, plan.batch > 1), pause)
                    }
                    Err(e) => (transport_tally(&e, items), pause),
                }
            }
            Err(e) => (transport_tally(&e, items), None),
        };

        let c = &plan.counters;
        c.sent.fetch_add(items, Ordering::Relaxed);
        c.accepted
            .fetch_add(tally.accepted_ids.len() as u64, Ordering::Relaxed);
        c.throttled.fetch_add(tally.throttled, Ordering::Relaxed);
        c.errors.fetch_add(tally.error_count(), Ordering::Relaxed);
        for (kind, n) in tally.errors {
            *report.errors_by_kind.entry(kind).or_default() += n;
        }
        if plan.keep_ids {
            report.accepted_ids.extend(tally.accepted_ids);
        }

        if let Some(pause) = pause {
            // Never sleep past the deadline: the run would overshoot the limit.
            let left = plan.deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.min(left)).await;
        }
    }
    report
}

fn transport_tally(e: &reqwest::Error, items: u64) -> Tally {
    let mut t = Tally::default();
    t.error(transport_kind(e), items);
    t
}

pub(crate) fn throttle_pause(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let asked = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()));
    Some(asked.unwrap_or(DEFAULT_THROTTLE_PAUSE).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn single_accepted() {
        let t = classify(
            StatusCode::ACCEPTED,
            br#"{"id":"01JABC","status":"queued","segments":1,"encoding":"ucs2"}"#,
            1,
            false,
        );
        assert_eq!(t.accepted_ids, vec!["01JABC".to_owned()]);
        assert_eq!(t.error_count(), 0);
        assert_eq!(t.throttled, 0);
    }

    #[test]
    fn single_errors_by_status() {
        let t = classify(StatusCode::BAD_REQUEST, br#"{"type":"x"}"#, 1, false);
        assert_eq!(t.errors, errs(&[("400", 1)]));
        let t = classify(StatusCode::INTERNAL_SERVER_ERROR, b"", 1, false);
        assert_eq!(t.errors, errs(&[("500", 1)]));
        let t = classify(StatusCode::ACCEPTED, b"not json", 1, false);
        assert_eq!(t.errors, errs(&[("bad_response", 1)]));
        let t = classify(StatusCode::ACCEPTED, br#"{"status":"queued"}"#, 1, false);
        assert_eq!(t.errors, errs(&[("bad_response", 1)]));
    }

    #[test]
    fn throttled_is_separate_from_errors() {
        for s in [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            let t = classify(s, b"{}", 50, true);
            assert_eq!(t.throttled, 50);
            assert_eq!(t.error_count(), 0);
            assert!(t.accepted_ids.is_empty());
        }
    }

    #[test]
    fn batch_mixed_results() {
        let body = br#"{"results":[
            {"id":"A","status":"queued"},
            {"error":{"type":"https://goniec.dev/problems/invalid-to","status":400}},
            {"id":"B","status":"queued"},
            {"error":{"type":"about:blank","status":422}}
        ]}"#;
        let t = classify(StatusCode::MULTI_STATUS, body, 4, true);
        assert_eq!(t.accepted_ids, vec!["A".to_owned(), "B".to_owned()]);
        assert_eq!(
            t.errors,
            errs(&[
                ("item:https://goniec.dev/problems/invalid-to", 1),
                ("item:422", 1)
            ])
        );
    }

    #[test]
    fn batch_short_or_broken_response_counts_missing_as_errors() {
        let t = classify(StatusCode::OK, br#"{"results":[{"id":"A"}]}"#, 3, true);
        assert_eq!(t.accepted_ids.len(), 1);
        assert_eq!(t.errors, errs(&[("bad_response", 2)]));
        let t = classify(StatusCode::OK, br#"{"oops":1}"#, 3, true);
        assert_eq!(t.errors, errs(&[("bad_response", 3)]));
        // Extra results beyond what was sent are ignored, not double-counted.
        let t = classify(
            StatusCode::OK,
            br#"{"results":[{"id":"A"},{"id":"B"}]}"#,
            1,
            true,
        );
        assert_eq!(t.accepted_ids, vec!["A".to_owned()]);
        assert_eq!(t.error_count(), 0);
    }

    #[test]
    fn batch_http_error_counts_every_item() {
        let t = classify(StatusCode::UNAUTHORIZED, b"{}", 100, true);
        assert_eq!(t.errors, errs(&[("401", 100)]));
    }

    #[test]
    fn retry_after_forms() {
        let now: jiff::Timestamp = "2024-11-15T08:12:31Z".parse().unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Fri, 15 Nov 2024 08:12:41 GMT", now),
            Some(Duration::from_secs(10))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Fri, 15 Nov 2024 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn throttle_pause_is_capped_and_defaulted() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(throttle_pause(StatusCode::ACCEPTED, &h), None);
        assert_eq!(
            throttle_pause(StatusCode::TOO_MANY_REQUESTS, &h),
            Some(DEFAULT_THROTTLE_PAUSE)
        );
        h.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(
            throttle_pause(StatusCode::SERVICE_UNAVAILABLE, &h),
            Some(Duration::from_secs(2))
        );
        h.insert(RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(
            throttle_pause(StatusCode::TOO_MANY_REQUESTS, &h),
            Some(MAX_RETRY_AFTER)
        );
    }
}
