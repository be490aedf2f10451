//! Receipts from connectors: correlate the provider id with a message, apply the
//! status, count it. A receipt that arrives before its submit was recorded (it
//! happens: the SMSC can be faster than our store write) is parked and retried
//! for a while instead of being dropped.

use std::sync::Arc;
use std::time::Duration;

use goniec_connectors::{Receipt, ReceiptState};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::model::{now_ms, Status};
use crate::store::{Change, Transition};

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
        match app.store.correlate(&r.connector, &r.provider_id).await {
            Ok(Some(id)) => break id,
            Ok(None) if waited < PARK_FOR => waited += delay,
            Ok(None) => {
                m.receipts
                    .with_label_values(&[&r.connector, "unknown_id"])
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
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    };
    apply_to(app, &id, r, false).await;
}

/// A receipt whose provider id is the message id itself (RCS events carry the id
/// we sent): no lookup. One that arrives before its submit was recorded (the
/// message still `queued`) is parked and retried, as an unmatched one is.
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
    let mut waited = Duration::ZERO;
    let mut delay = Duration::from_millis(50);
    let t = loop {
        let t = crate::dispatch::finish_with_retries(app, "receipt", || {
            app.store.transition(id, &change)
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
        // Stored (or already final): the provider may forget it.
        Some(Transition::Applied { .. }) => {
            let channel = app
                .connectors
                .iter()
                .find(|c| c.name() == r.connector)
                .and_then(|c| c.channels().first())
                .map_or("-", |c| c.as_str());
            m.transitions
                .with_label_values(&[channel, status.as_str()])
                .inc();
            ack();
        }
        Some(Transition::Refused { current }) => {
            tracing::debug!(message_id = %id, %current, receipt = %status, "Late or repeated receipt ignored.");
            ack();
        }
        Some(Transition::Partial | Transition::Missing | Transition::InFlight) => ack(),
        // The store never answered (shutdown): no ack, so the provider resends it.
        None => {}
    }
}
