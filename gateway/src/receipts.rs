//! Receipts from connectors: correlate the provider id with a message, apply the
//! status, count it. A receipt that arrives before its submit was recorded (it
//! happens: the SMSC can be faster than our store write) is parked and retried
//! for a while instead of being dropped.
//!
//! # Receipt ids in another spelling
//!
//! SMPP receipt ids are looked up in the form the connector's `receipt_ids`
//! declares (after normalising case and leading zeros on both sides). Only when
//! that finds nothing for the whole parking time (so the receipt is not merely
//! faster than our submit's store write) are the other spellings tried, decimal ↔
//! hex ([`goniec_connectors::smpp::receipt::id_candidates`]), in one round trip,
//! and used when exactly one message matches. And only while the declared form
//! fails for most of the connector's recent receipts
//! ([`ReceiptMatching::conversions_allowed`]): while it works, a receipt it misses
//! is another bind's (same account, its own ids), and a converted spelling of that
//! id could name one of our messages. How receipts matched is counted per
//! connector; one whose receipts mostly match nothing is reported in `/readyz`.
//!
//! # The receipt check: a message whose receipt never comes
//!
//! Receipts get lost: an SMSC crash loses those it had not sent, another bind with
//! the same account takes them, an SMSC writes ids we cannot match. So every SMS an
//! SMPP connector accepts gets a *receipt check*: a job on the SMS lane, scheduled
//! in the same atomic store step that records `submitted` (one more member of that
//! script, no extra round trip), so a crash cannot lose it. When it is due:
//!
//! * the message is final (the receipt came, the usual case): the job is dropped,
//!   costing one store step and no SMSC traffic;
//! * else the SMSC is asked with `query_sm` (for every part) and a final answer is
//!   applied as a receipt would be (`DELIVERED` → `delivered`, `UNDELIVERABLE`,
//!   `REJECTED`, `DELETED` → `undeliverable`, `EXPIRED` → `expired`), with the
//!   event detail `query_sm to <connector>`; `ENROUTE`, `ACCEPTED`, `UNKNOWN` or an
//!   SMSC that does not know the id change nothing, and the next check is scheduled,
//!   each wait twice the one before (`query_after`, then 2×, 4×, …), at most
//!   `query_max` times;
//! * at the deadline — the message's validity (`valid_until`, else submission +
//!   the connector's `default_validity`) plus `receipt_grace` — the SMSC is asked
//!   once more, and without a final answer the message becomes `expired` with
//!   reason [`NO_RECEIPT`]: the carrier never said what became of it, and we stopped
//!   waiting. It may have been delivered. The transition enqueues the customer's
//!   callback like any other, and `goniec_no_receipt_total{connector}` counts it. A
//!   receipt that still comes later is ignored (final states never change).

use std::sync::Arc;
use std::time::Duration;

use goniec_config::{Channel, ConnectorKind, SmppConnector};
use goniec_connectors::{Receipt, ReceiptState, Submitted};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::lease::finish_with_retries;
use crate::model::{now_ms, Record, Status};
use crate::store::{Change, Handover, Job, Lane, Lease, Outcome, StoreError, Task, Transition};
use crate::telemetry::{MatchOutcome, ReceiptMatching};

/// How long an unmatched receipt is kept trying before it counts as unknown. The
/// race it covers (a receipt before our submit was recorded) lasts milliseconds;
/// holding the acknowledgement longer than an SMSC's resend timer (often 10 s)
/// would make it resend the same unknown receipt for ever.
const PARK_FOR: Duration = Duration::from_secs(4);

/// Our status for a receipt state; `None` for intermediate states (event only).
pub fn status_for(state: ReceiptState) -> Option<Status> {
    match state {
        ReceiptState::Delivered => Some(Status::Delivered),
        ReceiptState::Undeliverable | ReceiptState::Rejected => Some(Status::Undeliverable),
        ReceiptState::Expired => Some(Status::Expired),
        ReceiptState::Read => Some(Status::Read),
        ReceiptState::Pending | ReceiptState::Unknown => None,
    }
}

/// Consume receipts until `stop`; then apply what is still buffered (the connectors
/// are closed by then, so nothing new arrives) and wait for the applications.
pub async fn run(app: Arc<App>, mut rx: mpsc::Receiver<Receipt>, stop: CancellationToken) {
    let sem = Arc::new(Semaphore::new(512));
    let tasks = TaskTracker::new();
    loop {
        let r = tokio::select! {
            r = rx.recv() => r,
            _ = stop.cancelled() => break,
        };
        let Some(r) = r else { break };
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        let app2 = app.clone();
        tasks.spawn(async move {
            apply(&app2, r).await;
            drop(permit);
        });
    }
    while let Ok(r) = rx.try_recv() {
        let app2 = app.clone();
        tasks.spawn(async move { apply(&app2, r).await });
    }
    tasks.close();
    tasks.wait().await;
}

/// Correlate and apply one receipt; signals `r.stored` once it is stored (or known
/// to need nothing).
async fn apply(app: &App, mut r: Receipt) {
    let m = &app.metrics;
    let mut waited = Duration::ZERO;
    let mut delay = Duration::from_millis(50);
    // Only time spent finding nothing counts toward the parking limit: during a store
    // outage the mapping may simply not be readable yet. Store errors are retried for
    // as long as the gateway runs (and, at shutdown, for the drain timeout).
    let id = loop {
        let lookup = (r.connector.clone(), r.provider_id.clone());
        match app.correlations.run(lookup).await {
            Ok(Some(id)) => {
                record_match(app, &r.connector, MatchOutcome::Declared);
                break id;
            }
            Ok(None) if waited < PARK_FOR => {
                if waited.is_zero() {
                    // Before its submit was recorded (or not ours): parked.
                    m.receipts_early.with_label_values(&[&r.connector]).inc();
                }
                waited += delay;
            }
            Ok(None) => match other_spelling(app, &r.connector, &r.provider_id).await {
                Ok(Some(id)) => {
                    record_match(app, &r.connector, MatchOutcome::Converted);
                    m.receipt_ids_converted
                        .with_label_values(&[&r.connector])
                        .inc();
                    tracing::debug!(connector = %r.connector, provider_id = %r.provider_id, message_id = %id, "Receipt matched in another id spelling.");
                    break id;
                }
                Ok(None) => {
                    record_match(app, &r.connector, MatchOutcome::Unmatched);
                    m.receipts
                        .with_label_values(&[&r.connector, "unknown_id"])
                        .inc();
                    m.receipts_unmatched
                        .with_label_values(&[&r.connector])
                        .inc();
                    tracing::info!(connector = %r.connector, provider_id = %r.provider_id, "Receipt for an unknown message id.");
                    // Nothing to store, ever: acknowledge so the provider stops resending.
                    if let Some(s) = r.stored.take() {
                        let _ = s.send(());
                    }
                    return;
                }
                Err(e) => {
                    m.store_errors.with_label_values(&["correlate"]).inc();
                    tracing::warn!(error = %e, "Receipt lookup failed; retrying.");
                }
            },
            Err(e) => {
                m.store_errors.with_label_values(&["correlate"]).inc();
                tracing::warn!(error = %e, "Receipt lookup failed; retrying.");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    };
    // The correlation is written one step before `submitted` (it lives outside
    // the message's partition): a receipt that finds it may still meet `queued`.
    apply_to(app, &id, r, true).await;
}

fn record_match(app: &App, connector: &str, outcome: MatchOutcome) {
    let share = app.metrics.receipt_matching.record(connector, outcome);
    app.metrics
        .receipts_unmatched_ratio
        .with_label_values(&[connector])
        .set(share);
}

/// The message a receipt id names in another spelling than the declared one, when
/// exactly one does; see the module docs for when this is tried at all. Only SMPP
/// ids have such spellings.
async fn other_spelling(
    app: &App,
    connector: &str,
    provider_id: &str,
) -> Result<Option<String>, StoreError> {
    if smpp_settings(app, connector).is_none()
        || !app.metrics.receipt_matching.conversions_allowed(connector)
    {
        return Ok(None);
    }
    let forms = other_forms(provider_id);
    if forms.is_empty() {
        return Ok(None);
    }
    let found = app.store.correlate_many(connector, &forms).await?;
    Ok(only_one(found))
}

/// The spellings of a (normalised) receipt id other than itself: decimal ↔ hex,
/// at most two. Case and leading zeros need none: both sides are normalised.
fn other_forms(provider_id: &str) -> Vec<String> {
    let mut all = goniec_connectors::smpp::receipt::id_candidates(provider_id);
    all.retain(|c| c != provider_id);
    all
}

/// The one message the lookups found; none when they found none or disagree (two
/// messages are each spelt like this id: taking either would be a guess).
fn only_one(found: Vec<Option<String>>) -> Option<String> {
    let mut ids = found.into_iter().flatten();
    let first = ids.next()?;
    ids.all(|id| id == first).then_some(first)
}

/// A receipt whose provider id is the message id itself (RCS events carry the id
/// we sent): no lookup. One that arrives before its submit was recorded (the
/// message still `queued`) is parked and retried, as an unmatched one is, and as
/// a correlated one that meets `queued` is.
pub(crate) async fn apply_direct(app: &App, r: Receipt) {
    let id = r.provider_id.clone();
    apply_to(app, &id, r, true).await;
}

/// Apply a receipt to message `id`. `park_queued`: a message still `queued` has
/// not had its submit recorded yet; retry for a while instead of ignoring it.
async fn apply_to(app: &App, id: &str, mut r: Receipt, park_queued: bool) {
    let m = &app.metrics;
    m.receipts
        .with_label_values(&[&r.connector, r.state.as_str()])
        .inc();
    let stored = r.stored.take();
    let ack = move || {
        if let Some(s) = stored {
            let _ = s.send(());
        }
    };
    let Some(status) = status_for(r.state) else {
        // An intermediate state (ENROUTE, ACCEPTD) changes nothing: counted, acknowledged.
        ack();
        return;
    };
    if let Some(took) = app
        .console
        .submit_times
        .receipt(&r.connector, &r.provider_id)
    {
        if let Some(ch) = app
            .connectors
            .iter()
            .find(|c| c.name() == r.connector)
            .and_then(|c| c.channels().first())
        {
            m.stage_duration
                .with_label_values(&["submitted_receipt", ch.as_str()])
                .observe(took.as_secs_f64());
        }
    }
    let at =
        r.at.duration_since(std::time::UNIX_EPOCH)
            .map_or_else(|_| now_ms(), |d| d.as_millis() as i64);
    let mut change = Change::new(
        status,
        at,
        r.error.clone(),
        Some(format!("receipt from {}", r.connector)),
    );
    change.part = Some(r.provider_id.clone());
    match store_change(app, id, &r.connector, &change, park_queued).await {
        // The store never answered (shutdown): no ack, so the provider resends it.
        None => {}
        // Stored (or already final, or nothing to store): the provider may forget it.
        Some(_) => ack(),
    }
}

/// Write a status change a carrier reported (a receipt, an answer to `query_sm`),
/// retrying while the store is unreachable, and count it. `park_queued`: see
/// [`apply_to`]. `None` only when the store never answered before shutdown.
async fn store_change(
    app: &App,
    id: &str,
    connector: &str,
    change: &Change,
    park_queued: bool,
) -> Option<Transition> {
    let mut waited = Duration::ZERO;
    let mut delay = Duration::from_millis(50);
    let t = loop {
        // Through the group commit: receipts arriving together share a round trip.
        let t = finish_with_retries(app, "receipt", || {
            app.transitions.run((id.to_string(), change.clone()))
        })
        .await;
        match t {
            Some(Transition::Refused {
                current: Status::Queued,
            }) if park_queued && waited < PARK_FOR => {
                tokio::time::sleep(delay).await;
                waited += delay;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            t => break t,
        }
    };
    match t {
        Some(Transition::Applied { .. }) => {
            let channel = app
                .connectors
                .iter()
                .find(|c| c.name() == connector)
                .and_then(|c| c.channels().first())
                .map_or("-", |c| c.as_str());
            app.metrics
                .transitions
                .with_label_values(&[channel, change.to.as_str()])
                .inc();
        }
        Some(Transition::Refused { current }) => {
            tracing::debug!(message_id = %id, %current, receipt = %change.to, "Late or repeated receipt ignored.");
        }
        _ => {}
    }
    t
}

/// The event and callback reason of a message expired because its receipt never
/// came (see the module docs for exactly when).
pub const NO_RECEIPT: &str = "no_receipt";

/// The longest a `query_sm` may take, window wait included; the session's own
/// response timeout is usually far shorter.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// A receipt check as it waits in the queue.
type Check = crate::store::ReceiptCheck;

/// The SMPP settings of a connector, `None` for other kinds (their receipts are not
/// checked: RCS events carry our id, e-mail bounces are not promised).
fn smpp_settings<'a>(app: &'a App, connector: &str) -> Option<&'a SmppConnector> {
    app.cfg
        .connectors
        .iter()
        .find(|c| c.name == connector)
        .and_then(|c| match &c.kind {
            ConnectorKind::Smpp(s) => Some(s),
            _ => None,
        })
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// When the check after `queries` rounds is due: `query_after`, then each wait twice
/// the one before, while rounds remain; else (and never later than) the deadline.
fn next_at(cfg: &SmppConnector, queries: u32, now: i64, deadline: i64) -> i64 {
    if cfg.query_after.is_zero() || queries >= cfg.query_max {
        return deadline;
    }
    let wait = cfg.query_after.saturating_mul(1u32 << queries.min(20));
    now.saturating_add(ms(wait)).min(deadline)
}

/// The receipt check to schedule in the step that records `submitted`, when an SMPP
/// connector accepted the message; `None` for other connectors.
pub(crate) fn first_check(
    app: &App,
    connector: &str,
    rec: &Record,
    sub: &Submitted,
    now: i64,
) -> Option<Handover> {
    let cfg = smpp_settings(app, connector)?;
    if sub.provider_ids.is_empty() {
        return None;
    }
    let valid_until = rec
        .data
        .valid_until
        .unwrap_or_else(|| now.saturating_add(ms(cfg.default_validity)));
    let check = Check {
        connector: connector.to_owned(),
        deadline: valid_until.saturating_add(ms(cfg.receipt_grace)),
        query_ids: sub.query_ids.clone(),
        part_ids: sub.provider_ids.clone(),
        rounds: 0,
    };
    let at = next_at(cfg, 0, now, check.deadline);
    Some(check_job(&rec.data.id, &check, at))
}

fn check_job(id: &str, check: &Check, at: i64) -> Handover {
    Handover {
        lane: Lane::Channel(Channel::Sms),
        job: Job {
            id: id.to_owned(),
            attempt: 0,
            task: Task::ReceiptCheck(check.clone()),
        },
        at_ms: Some(at),
        note: None,
    }
}

/// What asking the SMSC came to.
enum Asked {
    /// The message is final now (or already was, or is gone).
    Final,
    /// Still not final; what the SMSC said, for the history.
    Open(String),
}

/// Run a due receipt check (see the module docs). Finishes the lease.
pub(crate) async fn run_check(app: &App, lease: &Lease, rec: Option<Record>) {
    let drop_lease = || crate::lease::drop_lease(app, lease);
    let Task::ReceiptCheck(check) = &lease.job.task else {
        tracing::error!(message_id = %lease.job.id, "Not a receipt check; dropped.");
        return drop_lease().await;
    };
    // The usual case: the receipt came long ago.
    let Some(rec) = rec.filter(|r| r.status == Status::Submitted) else {
        return drop_lease().await;
    };
    let cfg = smpp_settings(app, &check.connector);
    let asking = cfg.is_some_and(|c| !c.query_after.is_zero());
    let answer = match cfg {
        _ if asking => ask(app, &rec, check).await,
        Some(_) => Asked::Open("not asked (query_after = 0s)".into()),
        None => Asked::Open(format!(
            "connector {} is no longer configured",
            check.connector
        )),
    };
    let why = match answer {
        Asked::Final => return drop_lease().await,
        Asked::Open(why) => why,
    };
    let now = now_ms();
    if now >= check.deadline {
        return expire(app, lease, check, &why).await;
    }
    let next = Check {
        rounds: check.rounds + u32::from(asking),
        ..check.clone()
    };
    let at = cfg.map_or(next.deadline, |c| {
        next_at(c, next.rounds, now, next.deadline)
    });
    let job = check_job(&rec.data.id, &next, at);
    tracing::debug!(message_id = %rec.data.id, connector = %next.connector, answer = %why, next_in_ms = at - now, "Receipt still overdue.");
    let outcome = Outcome::Handover {
        change: None,
        correlation: None,
        next: Box::new(job),
    };
    crate::lease::finish(app, "handover", lease, outcome).await;
}

/// Ask the SMSC about every part and apply what it says.
async fn ask(app: &App, rec: &Record, check: &Check) -> Asked {
    let id = rec.data.id.as_str();
    let Some(connector) = app.connectors.iter().find(|c| c.name() == check.connector) else {
        return Asked::Open(format!("connector {} is gone", check.connector));
    };
    let route = app
        .router
        .route(Channel::Sms, &rec.data.tenant, &rec.data.to)
        .filter(|r| r.connector.name() == check.connector);
    let out = crate::model::reference(rec, Channel::Sms);
    let count = |outcome: &str| {
        app.metrics
            .receipt_queries
            .with_label_values(&[&check.connector, outcome])
            .inc();
    };
    let mut said = Vec::with_capacity(check.query_ids.len());
    for (query_id, part) in check.query_ids.iter().zip(&check.part_ids) {
        // query_sm counts against the SMSC's contracted rate like a submit.
        if let Some(l) = route.and_then(|r| r.limiter.as_ref()) {
            l.until_ready().await;
        }
        let answer =
            match tokio::time::timeout(QUERY_TIMEOUT, connector.query(&out, query_id)).await {
                Ok(Ok(Some(a))) => a,
                Ok(Ok(None)) => return Asked::Open(format!("{} cannot be asked", check.connector)),
                Ok(Err(e)) => {
                    count("error");
                    said.push(format!("query_sm failed: {e}"));
                    continue;
                }
                Err(_) => {
                    count("error");
                    said.push(format!("no query_sm_resp within {QUERY_TIMEOUT:?}"));
                    continue;
                }
            };
        count(answer.state.as_str());
        let Some(status) = status_for(answer.state) else {
            said.push(match (answer.state, answer.error) {
                (ReceiptState::Pending, _) => "still en route".into(),
                (_, Some(e)) => e,
                (s, None) => s.as_str().into(),
            });
            continue;
        };
        let mut change = Change::new(
            status,
            now_ms(),
            answer.error,
            Some(format!("query_sm to {}", check.connector)),
        );
        change.part = Some(part.clone());
        match store_change(app, id, &check.connector, &change, false).await {
            Some(Transition::Applied { .. }) if status.is_final() => return Asked::Final,
            Some(Transition::Refused { current }) if current.is_final() => return Asked::Final,
            Some(Transition::Missing) => return Asked::Final,
            // One part delivered (or this part's delivery known already): the others
            // are asked about too.
            _ => said.push(format!("part {part} {}", answer.state.as_str())),
        }
    }
    if said.is_empty() {
        return Asked::Open("no id to ask by".into());
    }
    Asked::Open(said.join("; "))
}

/// The deadline passed without a final word: `expired`, reason [`NO_RECEIPT`], in
/// the step that finishes the check (the callback is queued by the transition).
async fn expire(app: &App, lease: &Lease, check: &Check, why: &str) {
    let ch = Change::new(
        Status::Expired,
        now_ms(),
        Some(NO_RECEIPT.into()),
        Some(format!(
            "no receipt from {} by validity + grace; last query_sm: {why}",
            check.connector
        )),
    );
    let t = crate::lease::finish(app, "complete", lease, Outcome::change(ch)).await;
    if let Some(Transition::Applied { .. }) = t {
        app.metrics
            .no_receipt
            .with_label_values(&[&check.connector])
            .inc();
        app.metrics
            .transitions
            .with_label_values(&[Channel::Sms.as_str(), Status::Expired.as_str()])
            .inc();
        tracing::info!(message_id = %lease.job.id, connector = %check.connector, "No receipt by validity + grace: expired (no_receipt).");
    }
}

/// For `/readyz`: connectors whose recent receipts mostly matched no message.
pub fn unmatched_connectors(m: &ReceiptMatching) -> Vec<String> {
    m.unhealthy()
        .into_iter()
        .map(|(name, why)| format!("connector {name}: {why}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smpp(query_after: u64, query_max: u32) -> SmppConnector {
        SmppConnector {
            query_after: Duration::from_secs(query_after),
            query_max,
            ..SmppConnector::default()
        }
    }

    #[test]
    fn checks_double_their_wait_then_wait_for_the_deadline() {
        let cfg = smpp(600, 3);
        let deadline = 100_000_000;
        assert_eq!(next_at(&cfg, 0, 0, deadline), 600_000);
        assert_eq!(next_at(&cfg, 1, 600_000, deadline), 1_800_000);
        assert_eq!(next_at(&cfg, 2, 1_800_000, deadline), 4_200_000);
        assert_eq!(
            next_at(&cfg, 3, 4_200_000, deadline),
            deadline,
            "rounds used up"
        );
        assert_eq!(next_at(&cfg, 0, 0, 1000), 1000, "never past the deadline");
        assert_eq!(
            next_at(&smpp(0, 3), 0, 0, deadline),
            deadline,
            "0s: never ask"
        );
        assert_eq!(next_at(&smpp(600, 20), 20, 0, i64::MAX), i64::MAX);
        assert!(
            next_at(&smpp(u64::MAX / 4, 20), 19, 5, i64::MAX) > 5,
            "no overflow"
        );
    }

    #[test]
    fn other_spellings_are_base_conversions_and_must_agree() {
        assert_eq!(other_forms("255"), ["ff", "597"]);
        assert_eq!(other_forms("ff"), ["255"]);
        assert!(other_forms("msg-1").is_empty());
        assert!(other_forms("0").is_empty());
        let (a, b) = (Some("A".to_string()), Some("B".to_string()));
        assert_eq!(only_one(vec![None, a.clone()]), a);
        assert_eq!(only_one(vec![a.clone(), a.clone()]), a);
        assert_eq!(only_one(vec![a, b]), None, "two messages: a guess");
        assert_eq!(only_one(vec![None, None]), None);
    }
}
