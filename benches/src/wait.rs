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
    errors: BTreeMap<String, u64>,
}

/// Polls `ids` in rounds until all are final or `plan.timeout` has passed.
/// Rounds are bounded by the timeout; a round is bounded by its id count.
pub async fn wait_final(plan: Arc<WaitPlan>, ids: Vec<String>) -> WaitReport {
    let deadline = Instant::now() + plan.timeout;
    let mut report = WaitReport::default();
    let total = ids.len() as u64;
    let mut pending = ids;
    let mut last_line = Instant::now();

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
        }
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
                Ok(_) => {}
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
