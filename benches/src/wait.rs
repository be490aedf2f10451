//! `--wait-final`: poll every accepted id until it reaches a final state, so the
//! report covers the whole pipeline (queue, connector, receipt), not just the
//! API's accept path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::send::throttle_pause;

/// Statuses after which a message never changes again.
pub const FINAL_STATUSES: [&str; 7] = [
    "delivered",
    "undeliverable",
    "expired",
    "failed",
    "rejected",
    "cancelled",
    "read",
];

/// Pause between rounds: only non-final ids are re-polled, and a short pause
/// keeps a nearly drained set from turning into a busy loop against the API.
const ROUND_PAUSE: Duration = Duration::from_millis(200);

pub fn is_final(status: &str) -> bool {
    FINAL_STATUSES.contains(&status)
}

#[derive(Debug)]
pub struct WaitPlan {
    pub client: reqwest::Client,
    pub base: Url,
    pub api_key: String,
    pub concurrency: usize,
    pub timeout: Duration,
    /// `submitted` counts as done (`--until-submitted`).
    pub until_submitted: bool,
}

#[derive(Debug, Default)]
pub struct WaitReport {
    pub final_count: u64,
    pub not_final: u64,
    pub by_status: BTreeMap<String, u64>,
    pub poll_errors: BTreeMap<String, u64>,
    /// When the last id was first seen final.
    pub last_final_at: Option<Instant>,
    pub rounds: u32,
    /// The statuses of the ids still pending, as last seen.
    pub pending_by_status: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct StatusView {
    status: String,
}

/// What one poller saw during one round.
#[derive(Default)]
struct RoundPart {
    /// Index into the round's id list, final status, when it was seen.
    finals: Vec<(usize, String, Instant)>,
    /// Statuses seen that are not final yet.
    pending: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

/// After this long without a message becoming final, say why.
const STALL: Duration = Duration::from_secs(5);

/// Why messages are not final yet, from the statuses they are waiting in.
pub fn stall_reason(pending: &BTreeMap<String, u64>) -> String {
    let mut parts = Vec::new();
    for (status, n) in pending {
        let why = match status.as_str() {
            "held" => "held by anti-fraud for an operator (see GET /v1/admin/held)",
            "scheduled" => "scheduled for later (send_at or contact hours)",
            "accepted" | "queued" => {
                "queued, not yet sent (is a route's connector up? see /readyz)"
            }
            "submitted" => "sent, waiting for a delivery receipt",
            other => other,
        };
        parts.push(format!("{n} {why}"));
    }
    if parts.is_empty() {
        "no status could be read (see poll errors)".to_string()
    } else {
        parts.join("; ")
    }
}

/// Polls `ids` in rounds until all are final or `plan.timeout` has passed.
/// Rounds are bounded by the timeout; a round is bounded by its id count.
pub async fn wait_final(plan: Arc<WaitPlan>, ids: Vec<String>) -> WaitReport {
    let deadline = Instant::now() + plan.timeout;
    let mut report = WaitReport::default();
    let total = ids.len() as u64;
    let mut pending = ids;
    let mut last_line = Instant::now();
    let mut last_progress = (Instant::now(), 0u64);
    let mut last_stall_line = Instant::now();

    while !pending.is_empty() && Instant::now() < deadline {
        report.rounds += 1;
        let round = Arc::new(pending);
        let cursor = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        for _ in 0..plan.concurrency.min(round.len()) {
            set.spawn(poller(
                plan.clone(),
                round.clone(),
                cursor.clone(),
                deadline,
            ));
        }
        let mut done = vec![false; round.len()];
        let mut pending_now = BTreeMap::new();
        while let Some(joined) = set.join_next().await {
            // A poller that panicked only loses its own observations; those ids
            // stay pending and are polled again next round.
            let Ok(part) = joined else { continue };
            for (idx, status, seen) in part.finals {
                done[idx] = true;
                report.final_count += 1;
                *report.by_status.entry(status).or_default() += 1;
                report.last_final_at = Some(report.last_final_at.map_or(seen, |t| t.max(seen)));
            }
            for (kind, n) in part.errors {
                *report.poll_errors.entry(kind).or_default() += n;
            }
            for (status, n) in part.pending {
                *pending_now.entry(status).or_default() += n;
            }
        }
        report.pending_by_status = pending_now;
        pending = round
            .iter()
            .zip(&done)
            .filter(|(_, d)| !**d)
            .map(|(id, _)| id.clone())
            .collect();

        if last_line.elapsed() >= Duration::from_secs(1) {
            last_line = Instant::now();
            eprintln!(
                "wait: round {} final {}/{} pending {}",
                report.rounds,
                report.final_count,
                total,
                pending.len()
            );
        }
        if report.final_count > last_progress.1 {
            last_progress = (Instant::now(), report.final_count);
        } else if last_progress.0.elapsed() >= STALL && last_stall_line.elapsed() >= STALL {
            last_stall_line = Instant::now();
            eprintln!(
                "wait: no message became final for {}s: {}",
                last_progress.0.elapsed().as_secs(),
                stall_reason(&report.pending_by_status)
            );
        }
        if !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(ROUND_PAUSE.min(left)).await;
        }
    }
    report.not_final = pending.len() as u64;
    report
}

async fn poller(
    plan: Arc<WaitPlan>,
    ids: Arc<Vec<String>>,
    cursor: Arc<AtomicUsize>,
    deadline: Instant,
) -> RoundPart {
    let mut part = RoundPart::default();
    while Instant::now() < deadline {
        let idx = cursor.fetch_add(1, Ordering::Relaxed);
        let Some(id) = ids.get(idx) else { break };
        let url = crate::api_url(&plan.base, &["v1", "messages", id]);
        let resp = match plan.client.get(url).bearer_auth(&plan.api_key).send().await {
            Ok(r) => r,
            Err(e) => {
                *part
                    .errors
                    .entry(crate::send::transport_kind(&e).to_owned())
                    .or_default() += 1;
                continue;
            }
        };
        let status = resp.status();
        let pause = throttle_pause(status, resp.headers());
        let body = resp.bytes().await;
        let seen = Instant::now();
        match (status.is_success(), body) {
            (true, Ok(body)) => match serde_json::from_slice::<StatusView>(&body) {
                Ok(v)
                    if is_final(&v.status) || (plan.until_submitted && v.status == "submitted") =>
                {
                    part.finals.push((idx, v.status, seen))
                }
                Ok(v) => *part.pending.entry(v.status).or_default() += 1,
                Err(_) => *part.errors.entry("bad_response".to_owned()).or_default() += 1,
            },
            (true, Err(e)) => {
                *part
                    .errors
                    .entry(crate::send::transport_kind(&e).to_owned())
                    .or_default() += 1;
            }
            (false, _) => *part.errors.entry(status.as_u16().to_string()).or_default() += 1,
        }
        if let Some(pause) = pause {
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.min(left)).await;
        }
    }
    part
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_names_where_messages_wait() {
        let pending = BTreeMap::from([("held".to_string(), 2893), ("queued".to_string(), 3)]);
        assert_eq!(
            stall_reason(&pending),
            "2893 held by anti-fraud for an operator (see GET /v1/admin/held); \
             3 queued, not yet sent (is a route's connector up? see /readyz)"
        );
    }

    #[test]
    fn final_statuses() {
        for s in FINAL_STATUSES {
            assert!(is_final(s));
        }
        for s in [
            "queued",
            "accepted",
            "submitted",
            "sent",
            "scheduled",
            "Delivered",
            "",
        ] {
            assert!(!is_final(s), "{s}");
        }
    }
}
