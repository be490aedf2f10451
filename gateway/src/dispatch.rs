//! Per-lane workers: claim → load → checks (cancelled, expired, route) → egress
//! limit → submit → complete / retry / bury. Plus the background loops that move
//! due jobs into lanes and take over a dead worker's leases.
//!
//! Nothing leaves a lane's pending list before the connector accepted the message
//! or it reached a final state; the store writes the new status, the provider-id
//! mapping and the acknowledgement in one atomic step.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use goniec_config::Channel;
use goniec_connectors::{rcs, DeliveryError, Outbound};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::app::App;
use crate::lease::{backoff, drop_lease, finish_with_retries};
use crate::model::{now_ms, Event, MessageData, Record, Status};
use crate::store::{
    Change, Correlation, EntryRef, Handover, Job, Lane, Lease, Outcome, Task, Transition,
};
use crate::telemetry::mask;

/// What a lane's loops share: the in-flight cap and the entries being worked on.
#[derive(Clone)]
struct LaneCtx {
    lane: Lane,
    sem: Arc<Semaphore>,
    /// Entries (partition, entry id) this process holds; the heartbeat keeps them
    /// from being reclaimed.
    inflight: Arc<Mutex<HashSet<EntryRef>>>,
    /// Slots of messages waiting for their connector's rate (`tps`). While
    /// they are all taken, the lane claims nothing more: what it claimed would
    /// only wait too, and a quiet tenant's new message would queue behind a
    /// busy tenant's backlog inside this process instead of being claimed in
    /// its turn.
    paced: Arc<Semaphore>,
}

/// Most messages of a lane waiting for their connector's rate at once.
const PACED: usize = 16;

impl LaneCtx {
    fn new(lane: Lane, concurrency: usize) -> Self {
        LaneCtx {
            lane,
            sem: Arc::new(Semaphore::new(concurrency)),
            inflight: Default::default(),
            paced: Arc::new(Semaphore::new(PACED)),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashSet<EntryRef>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Start every lane's workers and background loops on the app's tracker.
pub fn spawn_all(app: &Arc<App>) {
    let mut lanes: Vec<LaneCtx> = app
        .router
        .channels()
        .into_iter()
        .map(|c| LaneCtx::new(Lane::Channel(c), app.cfg.workers.concurrency))
        .collect();
    lanes.push(LaneCtx::new(Lane::Webhook, app.cfg.webhooks.concurrency));
    let app = app.clone();
    let tracker = app.tracker.clone();
    tracker.spawn(async move {
        // Alive before claiming anything: an instance that claimed without a
        // heartbeat would look dead to the others and be robbed at once.
        if !announce(&app).await {
            return;
        }
        app.tracker.spawn(presence_loop(app.clone()));
        for cx in lanes {
            app.tracker.spawn(claim_loop(app.clone(), cx.clone()));
            app.tracker.spawn(reclaim_loop(app.clone(), cx.clone()));
            app.tracker.spawn(takeover_loop(app.clone(), cx.clone()));
            app.tracker.spawn(heartbeat_loop(app.clone(), cx.clone()));
            app.tracker.spawn(promote_loop(app.clone(), cx.lane));
        }
    });
}

/// Publish this instance's first heartbeat, retrying while the store is down;
/// false when shutting down first.
async fn announce(app: &App) -> bool {
    loop {
        match app
            .store
            .beat(&app.consumer, app.cfg.workers.takeover_after)
            .await
        {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot publish the instance heartbeat yet; retrying.");
                if !pause(app, Duration::from_millis(500)).await {
                    return false;
                }
            }
        }
    }
}

/// Keeps this instance's heartbeat alive: refreshed five times per
/// `takeover_after`, so a few missed beats (a slow store) never make a live
/// instance look dead.
async fn presence_loop(app: Arc<App>) {
    let ttl = app.cfg.workers.takeover_after;
    let every = (ttl / 5).max(Duration::from_millis(50));
    while pause(&app, every).await {
        if let Err(e) = app.store.beat(&app.consumer, ttl).await {
            app.metrics.store_errors.with_label_values(&["beat"]).inc();
            tracing::warn!(error = %e, "Instance heartbeat failed.");
        }
    }
}

/// Takes over the entries of instances whose heartbeat lapsed (killed), within
/// about `takeover_after` of their death instead of `claim_idle`.
async fn takeover_loop(app: Arc<App>, cx: LaneCtx) {
    let every = (app.cfg.workers.takeover_after / 4).max(Duration::from_millis(100));
    while pause(&app, every).await {
        let take = |max| app.store.take_over_dead(cx.lane, &app.consumer, max);
        if !adopt(&app, &cx, "takeover", take).await {
            return;
        }
    }
}

/// Start work on entries taken from other consumers, batch by batch as
/// permits free up, until `fetch` finds none; false when shutting down.
async fn adopt<F, Fut>(app: &Arc<App>, cx: &LaneCtx, op: &'static str, fetch: F) -> bool
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<Vec<crate::store::Lease>, crate::store::StoreError>>,
{
    let batch = app.cfg.workers.claim_batch.max(1);
    loop {
        let Some(mut held) = permits(app, &cx.sem, batch).await else {
            return false;
        };
        match fetch(held.len()).await {
            Ok(leases) if leases.is_empty() => return true,
            Ok(leases) => {
                tracing::info!(lane = %cx.lane, op, count = leases.len(), "Took over leases of another instance.");
                app.metrics
                    .reclaimed
                    .with_label_values(&[cx.lane.as_str()])
                    .inc_by(leases.len() as u64);
                held.truncate(leases.len());
                start(app, cx, leases, held).await;
            }
            Err(e) => {
                app.metrics.store_errors.with_label_values(&[op]).inc();
                tracing::warn!(lane = %cx.lane, op, error = %e, "Taking over entries failed.");
                return true;
            }
        }
    }
}

/// Keeps this process's in-flight entries fresh, so a slow submit (or one waiting for
/// the connector's rate limit) is never mistaken for a dead worker's and sent twice.
async fn heartbeat_loop(app: Arc<App>, cx: LaneCtx) {
    let every = (app.cfg.workers.claim_idle / 3).max(Duration::from_millis(100));
    while pause(&app, every).await {
        let held: Vec<EntryRef> = cx.held().iter().cloned().collect();
        for chunk in held.chunks(500) {
            if let Err(e) = app.store.touch(cx.lane, &app.consumer, chunk).await {
                app.metrics.store_errors.with_label_values(&["touch"]).inc();
                tracing::warn!(lane = %cx.lane, error = %e, "Lease heartbeat failed.");
                break;
            }
        }
    }
}

/// Take as many permits as are free now (at least one, waiting for it), up to `max`.
async fn permits(app: &App, sem: &Arc<Semaphore>, max: usize) -> Option<Vec<OwnedSemaphorePermit>> {
    let first = tokio::select! {
        p = sem.clone().acquire_owned() => p.ok()?,
        _ = app.stop_work.cancelled() => return None,
    };
    let mut v = vec![first];
    while v.len() < max {
        match sem.clone().try_acquire_owned() {
            Ok(p) => v.push(p),
            Err(_) => break,
        }
    }
    Some(v)
}

async fn pause(app: &App, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = app.stop_work.cancelled() => false,
    }
}

async fn claim_loop(app: Arc<App>, cx: LaneCtx) {
    let (lane, sem) = (cx.lane, &cx.sem);
    let batch = app.cfg.workers.claim_batch.max(1);
    loop {
        // While messages wait for their connector's rate, claim only as many
        // as there are free pacing slots (and none while there are none).
        let free = tokio::select! {
            p = cx.paced.acquire() => match p {
                Ok(p) => { drop(p); cx.paced.available_permits().max(1) }
                Err(_) => return,
            },
            _ = app.stop_work.cancelled() => return,
        };
        let max = if free < PACED { free } else { batch };
        // Every connector of this lane paused by an operator: claim nothing,
        // the messages wait in the queue (a paused tenant's are left out by
        // the store's claim itself).
        if let Lane::Channel(ch) = lane {
            if app.paused.any()
                && app
                    .router
                    .connectors_for(ch)
                    .all(|c| app.paused.connector(c.name()))
            {
                if !pause(&app, Duration::from_millis(250)).await {
                    return;
                }
                continue;
            }
        }
        let Some(mut held) = permits(&app, sem, max).await else {
            return;
        };
        let claimed = tokio::select! {
            r = app.store.claim(lane, &app.consumer, held.len(), Duration::from_secs(1)) => r,
            _ = app.stop_work.cancelled() => return,
        };
        match claimed {
            Ok(leases) => {
                held.truncate(leases.len());
                start(&app, &cx, leases, held).await;
            }
            Err(e) => {
                app.metrics.store_errors.with_label_values(&["claim"]).inc();
                tracing::warn!(%lane, error = %e, "Claiming from the queue failed.");
                drop(held);
                if !pause(&app, Duration::from_millis(500)).await {
                    return;
                }
            }
        }
    }
}

/// Takes over entries whose holder stopped answering after `claim_idle`: the
/// backstop behind [`takeover_loop`] (a consumer that never published a
/// heartbeat, or one whose heartbeat key was lost with a Redis restart).
async fn reclaim_loop(app: Arc<App>, cx: LaneCtx) {
    let idle = app.cfg.workers.claim_idle;
    let every = (idle / 4).clamp(Duration::from_millis(200), Duration::from_secs(15));
    while pause(&app, every).await {
        let take = |max| app.store.reclaim(cx.lane, &app.consumer, idle, max);
        if !adopt(&app, &cx, "reclaim", take).await {
            return;
        }
    }
}

/// Moves due scheduled messages and retries into the lane.
async fn promote_loop(app: Arc<App>, lane: Lane) {
    let every = app.cfg.workers.schedule_poll;
    while pause(&app, every).await {
        loop {
            match app.store.promote_due(lane, now_ms(), 1000).await {
                Ok(1000) => continue,
                Ok(_) => break,
                Err(e) => {
                    app.metrics
                        .store_errors
                        .with_label_values(&["promote"])
                        .inc();
                    tracing::warn!(%lane, error = %e, "Moving due messages failed.");
                    break;
                }
            }
        }
    }
}

/// Hand claimed leases to tasks, one permit each.
async fn start(
    app: &Arc<App>,
    cx: &LaneCtx,
    leases: Vec<Lease>,
    mut permits: Vec<OwnedSemaphorePermit>,
) {
    if leases.is_empty() {
        return;
    }
    cx.held().extend(leases.iter().map(Lease::entry_ref));
    // A claim may bring up to one entry per stream more than it was asked
    // for: they wait here for their permits, kept fresh by the heartbeat.
    while permits.len() < leases.len() {
        tokio::select! {
            p = cx.sem.clone().acquire_owned() => match p {
                Ok(p) => permits.push(p),
                Err(_) => return,
            },
            _ = app.stop_work.cancelled() => {
                // Left pending: reclaimed by another instance or after a restart.
                let mut held = cx.held();
                for l in &leases {
                    held.remove(&l.entry_ref());
                }
                return;
            }
        }
    }
    let mut loaded = true;
    let records: Vec<Option<Record>> = match cx.lane {
        // The messages of the callbacks that need them (clicks, and status
        // changes queued before callbacks carried their message's context) in
        // one round trip; on failure each callback fetches its own (and
        // retries as a failed post would).
        Lane::Webhook => {
            let (at, ids): (Vec<usize>, Vec<String>) = leases
                .iter()
                .enumerate()
                .filter_map(|(i, l)| match &l.job.task {
                    Task::Callback(p) if p.context.is_none() => Some((i, p.message_id.clone())),
                    Task::Clicked(c) => Some((i, c.message_id.clone())),
                    _ => None,
                })
                .unzip();
            let mut records = vec![None; leases.len()];
            if !ids.is_empty() {
                match app.store.get_many(&ids).await {
                    Ok(found) => {
                        for (i, r) in at.into_iter().zip(found) {
                            records[i] = r;
                        }
                    }
                    Err(_) => loaded = false,
                }
            }
            records
        }
        Lane::Channel(_) => {
            // One round trip for the whole batch: load, and mark in flight.
            let ids: Vec<String> = leases.iter().map(|l| l.job.id.clone()).collect();
            loop {
                match app.store.begin_delivery(&ids).await {
                    Ok(r) => break r,
                    Err(e) => {
                        app.metrics.store_errors.with_label_values(&["load"]).inc();
                        tracing::warn!(error = %e, "Loading claimed messages failed; retrying.");
                        if !pause(app, Duration::from_millis(500)).await {
                            // Leases stay pending and are reclaimed after claim_idle.
                            let mut held = cx.held();
                            for l in &leases {
                                held.remove(&l.entry_ref());
                            }
                            return;
                        }
                    }
                }
            }
        }
    };
    for ((lease, rec), permit) in leases.into_iter().zip(records).zip(permits) {
        let app2 = app.clone();
        let cx2 = cx.clone();
        app.tracker.spawn(async move {
            let entry = lease.entry_ref();
            match lease.lane {
                // A callback waiting in a batch gives its permit back at once:
                // the batch's wait must not hold the lane's concurrency.
                Lane::Webhook => {
                    crate::webhooks::handle(app2, lease, loaded.then_some(rec), permit).await
                }
                Lane::Channel(channel) => {
                    deliver(&app2, channel, lease, rec, &cx2.paced).await;
                    drop(permit);
                }
            }
            cx2.held().remove(&entry);
        });
    }
}

fn record_transition(app: &App, channel: Channel, to: Status, t: Option<Transition>) {
    if let Some(Transition::Applied { .. }) = t {
        app.metrics
            .transitions
            .with_label_values(&[channel.as_str(), to.as_str()])
            .inc();
    }
}

/// Finish a lease with a status change.
async fn finish(
    app: &App,
    channel: Channel,
    lease: &Lease,
    change: Change,
    correlation: Option<Correlation>,
) {
    let to = change.to;
    let outcome = Outcome::Complete {
        change: Some(change),
        correlation,
    };
    let t = crate::lease::finish(app, "complete", lease, outcome).await;
    record_transition(app, channel, to, t);
}

/// Deliver one message.
async fn deliver(
    app: &App,
    channel: Channel,
    lease: Lease,
    rec: Option<Record>,
    paced: &Semaphore,
) {
    // A submitted SMS's receipt check (see `receipts`): nothing to send.
    if matches!(lease.job.task, Task::ReceiptCheck(_)) {
        return crate::receipts::run_check(app, &lease, rec).await;
    }
    let Some(mut rec) = rec else {
        // Past retention or never stored: nothing to deliver.
        drop_lease(app, &lease).await;
        return;
    };
    // An RCS message on another channel's lane: its fallback.
    let fallback = Lane::Channel(rec.data.channel) != lease.lane;
    if fallback && rec.status == Status::Submitted {
        let step = match lease.job.task {
            Task::RcsCheck => {
                revoke_for_fallback(app, &lease, &rec).await;
                Some(None)
            }
            Task::RcsRevoked => {
                let why = format!(
                    "no DELIVERED within {}, nor in the {} after the RCS message was revoked",
                    human(fallback_after(app, &rec)),
                    human(revoke_grace(app, &rec))
                );
                Some(fall_back(app, channel, &lease, &rec, why).await)
            }
            _ => None,
        };
        match step {
            Some(Some(now_queued)) => rec.status = now_queued,
            Some(None) => return,
            None => {}
        }
    }
    let id = rec.data.id.as_str();
    if rec.status != Status::Queued {
        // Cancelled, expired, or already submitted before a crash: do not send again.
        tracing::debug!(message_id = %id, status = %rec.status, "Dropping queue entry of a message not in `queued`.");
        drop_lease(app, &lease).await;
        return;
    }
    let now = now_ms();
    if rec.data.valid_until.is_some_and(|v| v <= now) {
        let ch = Change::new(
            Status::Expired,
            now,
            Some("valid_until passed before submission".into()),
            None,
        );
        return finish(app, channel, &lease, ch, None).await;
    }
    // Paused by an operator: wait (no attempt used), look again later.
    if app.paused.tenant(&rec.data.tenant) {
        return wait_paused(app, channel, &lease, &rec, now).await;
    }
    let Some(route) = app.router.route(channel, &rec.data.tenant, &rec.data.to) else {
        let ch = Change::new(
            Status::Failed,
            now,
            Some("no_route".into()),
            Some(format!("no connector serves this {channel} destination")),
        );
        return finish(app, channel, &lease, ch, None).await;
    };
    let connector = &route.connector;
    let name = connector.name();
    if app.paused.connector(name) {
        return wait_paused(app, channel, &lease, &rec, now).await;
    }
    app.metrics
        .stage_duration
        .with_label_values(&["queue_wait", channel.as_str()])
        .observe(((now - rec.data.send_at.unwrap_or(rec.data.created_at)).max(0) as f64) / 1000.0);
    if let Some(l) = &route.limiter {
        // Over the connector's rate: wait holding a pacing slot (see `LaneCtx`).
        if l.check().is_err() {
            let _slot = paced.acquire().await;
            l.until_ready().await;
        }
    }
    let out = Outbound {
        message_id: rec.data.id.clone(),
        channel,
        to: rec.data.to.clone(),
        from: rec.data.from.clone(),
        text: if fallback {
            Some(fallback_text(&rec.data))
        } else {
            rec.data.text.clone()
        },
        email: rec.data.email.as_ref().map(|e| {
            let mail = app
                .tenants
                .by_name(&rec.data.tenant)
                .map(|t| t.mail.clone())
                .unwrap_or_default();
            goniec_connectors::EmailContent {
                subject: e.subject.clone(),
                html: e.html.clone(),
                attachments: e.attachments.iter().filter_map(decode_attachment).collect(),
                list_unsubscribe: mail.list_unsubscribe,
                one_click: mail.one_click,
                dkim: mail.dkim,
            }
        }),
        rcs: if fallback { None } else { rec.data.rcs.clone() },
        attempt: lease.job.attempt,
        valid_until: rec
            .data
            .valid_until
            .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)),
    };
    let t0 = Instant::now();
    let result = match tokio::time::timeout(Duration::from_secs(60), connector.submit(&out)).await {
        Ok(r) => r,
        Err(_) => Err(DeliveryError::Transient {
            reason: "connector did not answer within 60s".into(),
        }),
    };
    app.metrics
        .stage_duration
        .with_label_values(&["submit", channel.as_str()])
        .observe(t0.elapsed().as_secs_f64());
    let m = &app.metrics;
    match result {
        Ok(sub) => {
            m.submits.with_label_values(&[name, "ok"]).inc();
            m.stage_duration
                .with_label_values(&["accepted_submitted", channel.as_str()])
                .observe(
                    ((now_ms() - rec.data.send_at.unwrap_or(rec.data.created_at)).max(0) as f64)
                        / 1000.0,
                );
            // Timed by the id its receipt will carry: the first part's normalised
            // id, or (RCS: events carry our id) the message id.
            let receipt_id = sub.provider_ids.first().unwrap_or(&rec.data.id);
            app.console.submit_times.submitted(name, receipt_id);
            tracing::debug!(message_id = %id, connector = name, to = %mask(&rec.data.to), "Message submitted.");
            let mut ch = Change::new(
                Status::Submitted,
                now_ms(),
                None,
                Some(format!(
                    "connector={name} provider_id={} parts={}",
                    sub.provider_id, sub.parts
                )),
            );
            ch.parts = Some(sub.parts);
            let corr = Some(Correlation {
                connector: name.to_string(),
                provider_ids: sub.provider_ids.clone(),
            });
            // At most one job follows a submit: an RCS message's fallback check, or
            // an SMS's receipt check. Either is written in the same step as
            // `submitted`, so a crash cannot lose it.
            let next = fallback_check(app, channel, &rec)
                .or_else(|| crate::receipts::first_check(app, name, &rec, &sub, now_ms()));
            match next {
                // Revoke and fall back unless DELIVERED comes in time; or ask the SMSC
                // unless the receipt comes in time.
                Some(next) => {
                    let outcome = Outcome::Handover {
                        change: Some(ch),
                        correlation: corr,
                        next: Box::new(next),
                    };
                    let t = crate::lease::finish(app, "complete", &lease, outcome).await;
                    record_transition(app, channel, Status::Submitted, t);
                }
                None => finish(app, channel, &lease, ch, corr).await,
            }
        }
        Err(e) => {
            m.submits.with_label_values(&[name, e.kind()]).inc();
            handle_failure(app, channel, &lease, &rec, name, e).await;
        }
    }
}

/// The tenant's `fallback_after` (zero when it has none).
fn fallback_after(app: &App, rec: &Record) -> Duration {
    app.tenants
        .by_name(&rec.data.tenant)
        .and_then(|t| t.cfg.rcs.fallback_after)
        .unwrap_or_default()
}

/// How long to wait after a revoke for a DELIVERED event already on its way: the
/// platform may have been delivering the message while we revoked it (its 200 does
/// not always prove the withdrawal), and then the recipient must not also get the
/// SMS. `fallback_after`, at most 10 s.
fn revoke_grace(app: &App, rec: &Record) -> Duration {
    fallback_after(app, rec).min(Duration::from_secs(10))
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
/// The event reason of a fallback after the RCS message was withdrawn.
const RCS_FALLBACK_REASON: &str = "rcs_fallback";

/// Whether an RCS message can fall back to SMS: it asks for it and SMS has a route.
fn sms_fallback(app: &App, rec: &Record) -> bool {
    rec.data.channel == Channel::Rcs
        && rec.data.fallback.contains(&Channel::Sms)
        && app
            .router
            .route(Channel::Sms, &rec.data.tenant, &rec.data.to)
            .is_some()
}

/// The delivery check to schedule when an RCS message is submitted, if its
/// tenant has a `fallback_after`.
fn fallback_check(app: &App, channel: Channel, rec: &Record) -> Option<Handover> {
    if channel != Channel::Rcs || !sms_fallback(app, rec) {
        return None;
    }
    let after = app
        .tenants
        .by_name(&rec.data.tenant)?
        .cfg
        .rcs
        .fallback_after?;
    Some(Handover {
        lane: Lane::Channel(Channel::Sms),
        job: Job {
            id: rec.data.id.clone(),
            attempt: 0,
            task: Task::RcsCheck,
        },
        at_ms: Some(now_ms() + after.as_millis() as i64),
        note: None,
    })
}

/// No DELIVERED by the deadline: withdraw the RCS message and, if the platform took
/// the revoke, hand over an `RCS_REVOKED` job that sends the SMS unless a DELIVERED
/// still comes. Finishes the lease.
async fn revoke_for_fallback(app: &App, lease: &Lease, rec: &Record) {
    let id = rec.data.id.as_str();
    if fell_back(rec) {
        // Fallen back already (this is a stale copy of the check): never twice.
        drop_lease(app, lease).await;
        return;
    }
    let Some(route) = app
        .router
        .route(Channel::Rcs, &rec.data.tenant, &rec.data.to)
    else {
        tracing::warn!(message_id = %id, "No RCS route left to revoke through; no fallback.");
        drop_lease(app, lease).await;
        return;
    };
    let out = crate::model::reference(rec, Channel::Rcs);
    match route.connector.revoke(&out).await {
        // Revoked. A revoke that failed before may also have worked without our
        // hearing (the platform no longer knows the message). Either way, the SMS
        // waits a moment for a DELIVERED that was already on its way.
        Ok(revoked) if revoked || lease.job.attempt > 0 => {
            tracing::debug!(message_id = %id, "RCS message revoked; SMS after a grace period without DELIVERED.");
            let next = Handover {
                lane: lease.lane,
                job: Job {
                    id: id.to_owned(),
                    attempt: 0,
                    task: Task::RcsRevoked,
                },
                at_ms: Some(now_ms() + revoke_grace(app, rec).as_millis() as i64),
                note: None,
            };
            handover(app, lease, next).await;
        }
        Ok(_) => {
            tracing::debug!(message_id = %id, "Too late to revoke the RCS message; it stands.");
            drop_lease(app, lease).await;
        }
        Err(e) => {
            let w = &app.cfg.workers;
            let attempts = lease.job.attempt + 1;
            if attempts >= w.max_attempts {
                tracing::warn!(message_id = %id, error = %e, "Could not revoke the RCS message; no fallback.");
                drop_lease(app, lease).await;
            } else {
                let at = now_ms()
                    + backoff(lease.job.attempt, w.retry_base, w.retry_max).as_millis() as i64;
                retry_later(app, lease, at, attempts).await;
            }
        }
    }
}

/// Whether the message already went back to `queued` for its SMS fallback (its
/// `submitted` is then the SMS's).
fn fell_back(rec: &Record) -> bool {
    rec.events
        .iter()
        .any(|e| e.reason.as_deref() == Some(RCS_FALLBACK_REASON))
}

/// Move a submitted RCS message back to `queued` to go out by SMS, once.
async fn fall_back(
    app: &App,
    channel: Channel,
    lease: &Lease,
    rec: &Record,
    why: String,
) -> Option<Status> {
    let id = rec.data.id.as_str();
    // The store allows this move once per message: a stale copy is refused below.
    let ch = Change::new(
        Status::Queued,
        now_ms(),
        Some(RCS_FALLBACK_REASON.into()),
        Some(format!("{why}; sending by sms")),
    );
    let t = finish_with_retries(app, "transition", || app.store.transition(id, &ch)).await;
    if let Some(Transition::Applied { .. }) = t {
        record_transition(app, channel, Status::Queued, t);
        tracing::info!(message_id = %id, "RCS message withdrawn; falling back to SMS.");
        return Some(Status::Queued);
    }
    // Delivered, read or failed in the meantime: nothing to fall back for.
    drop_lease(app, lease).await;
    None
}

/// Give a lease back to be tried at `at` with `attempts` counted.
/// A message of a paused tenant or connector goes back to wait, its attempts
/// untouched; past its `valid_until` it expires as it would have anyway.
async fn wait_paused(app: &App, channel: Channel, lease: &Lease, rec: &Record, now: i64) {
    let at = now + crate::operator::PAUSED_RECHECK_MS;
    if rec.data.valid_until.is_some_and(|v| v <= at) {
        let ch = Change::new(
            Status::Expired,
            now,
            Some("valid_until passed while paused by an operator".into()),
            None,
        );
        return finish(app, channel, lease, ch, None).await;
    }
    retry_later(app, lease, at, lease.job.attempt).await;
}

async fn retry_later(app: &App, lease: &Lease, at_ms: i64, attempt: u32) {
    crate::lease::finish(app, "retry", lease, Outcome::Retry { at_ms, attempt }).await;
}

/// Finish a lease by putting `next` on its lane.
async fn handover(app: &App, lease: &Lease, next: Handover) {
    let outcome = Outcome::Handover {
        change: None,
        correlation: None,
        next: Box::new(next),
    };
    crate::lease::finish(app, "handover", lease, outcome).await;
}

/// The SMS text of a fallen-back RCS message: its `fallback_text`, else its text
/// followed by the first link of its cards and suggestions (the payment link).
pub fn fallback_text(data: &MessageData) -> String {
    if let Some(t) = &data.fallback_text {
        return t.clone();
    }
    let text = data.text.clone().unwrap_or_default();
    match data.rcs.as_ref().and_then(first_url) {
        Some(url) if !text.contains(url) => {
            if text.is_empty() {
                url.to_owned()
            } else {
                format!("{text} {url}")
            }
        }
        _ => text,
    }
}

/// The first `openUrlAction.url` found (keys are visited in sorted order: a card
/// before the message-level suggestions).
fn first_url(v: &serde_json::Value) -> Option<&str> {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(url) = m
                .get("openUrlAction")
                .and_then(|o| o.get("url"))
                .and_then(|u| u.as_str())
            {
                return Some(url);
            }
            m.values().find_map(first_url)
        }
        serde_json::Value::Array(a) => a.iter().find_map(first_url),
        _ => None,
    }
}

/// An attachment as the API validated it (base64 checked there).
fn decode_attachment(a: &crate::model::AttachmentData) -> Option<goniec_connectors::Attachment> {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD
        .decode(a.content.trim())
        .ok()?;
    Some(goniec_connectors::Attachment {
        filename: a.filename.clone(),
        content_type: a.content_type.clone(),
        data,
    })
}

async fn handle_failure(
    app: &App,
    channel: Channel,
    lease: &Lease,
    rec: &Record,
    connector: &str,
    e: DeliveryError,
) {
    let id = rec.data.id.as_str();
    let w = &app.cfg.workers;
    let now = now_ms();
    match e {
        DeliveryError::Permanent { code, reason } => {
            if code == rcs::UNREACHABLE && sms_fallback(app, rec) {
                tracing::info!(message_id = %id, connector, "Not reachable over RCS; falling back to SMS.");
                let next = Handover {
                    lane: Lane::Channel(Channel::Sms),
                    job: Job {
                        id: id.to_owned(),
                        attempt: 0,
                        task: Task::RcsFallback,
                    },
                    at_ms: None,
                    note: Some(Event {
                        status: Status::Queued,
                        at: now,
                        reason: Some(code),
                        detail: Some(format!("{reason}; falling back to sms")),
                    }),
                };
                handover(app, lease, next).await;
                return;
            }
            tracing::info!(message_id = %id, connector, %code, "Message failed permanently.");
            // A hard bounce: the address is bad, later mail to it is refused at the API.
            // Suppressed before the message is finished, so a crash in between only
            // repeats the (idempotent) suppression.
            if channel == Channel::Email && code.ends_with(" hard_bounce") {
                let key = crate::address::suppression_key(&rec.data.to);
                let why = format!("{code}: {reason}");
                finish_with_retries(app, "suppress", || async {
                    app.store
                        .suppress(&rec.data.tenant, &key, &why)
                        .await
                        .map(|_| Transition::Missing)
                })
                .await;
                tracing::info!(message_id = %id, to = %crate::telemetry::mask(&rec.data.to), "Address suppressed after a hard bounce.");
            }
            let ch = Change::new(Status::Failed, now, Some(code), Some(reason));
            finish(app, channel, lease, ch, None).await;
        }
        e => {
            // Throttling and connector outages wait without using up the message's tries.
            let counted = e.counts_as_attempt();
            let attempts = lease.job.attempt + u32::from(counted);
            if counted && attempts >= w.max_attempts {
                tracing::warn!(message_id = %id, connector, attempts, error = %e, "Message dead-lettered after its last attempt.");
                app.metrics
                    .dead_letters
                    .with_label_values(&[channel.as_str()])
                    .inc();
                let ch = Change::new(
                    Status::Failed,
                    now,
                    Some("max_attempts".into()),
                    Some(e.to_string()),
                );
                let outcome = Outcome::Bury {
                    reason: "max_attempts".into(),
                    change: Some(ch),
                };
                let t = crate::lease::finish(app, "bury", lease, outcome).await;
                record_transition(app, channel, Status::Failed, t);
                return;
            }
            let wait = match &e {
                DeliveryError::Throttled {
                    retry_after: Some(d),
                } => *d,
                // An outage: try again soon, but not in a tight loop.
                DeliveryError::Unavailable { .. } => backoff(2, w.retry_base, w.retry_max),
                _ => backoff(lease.job.attempt, w.retry_base, w.retry_max),
            };
            let at = now + wait.as_millis() as i64;
            if rec.data.valid_until.is_some_and(|v| v <= at) {
                let ch = Change::new(
                    Status::Expired,
                    now,
                    Some("valid_until passed while retrying".into()),
                    Some(e.to_string()),
                );
                return finish(app, channel, lease, ch, None).await;
            }
            tracing::debug!(message_id = %id, connector, attempt = attempts, error = %e, "Submit failed; retrying later.");
            retry_later(app, lease, at, attempts).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcs_data(
        text: Option<&str>,
        rcs: serde_json::Value,
        fallback_text: Option<&str>,
    ) -> MessageData {
        MessageData {
            id: "01J00000000000000000000000".into(),
            tenant: "t".into(),
            channel: Channel::Rcs,
            to: "+48601000001".into(),
            from: None,
            text: text.map(Into::into),
            email: None,
            rcs: Some(rcs),
            send_at: None,
            valid_until: None,
            callback_url: None,
            client_ref: None,
            fallback: vec![Channel::Sms],
            fallback_text: fallback_text.map(Into::into),
            segments: 1,
            encoding: None,
            transliterated: false,
            created_at: 0,
            template: None,
            campaign: None,
        }
    }

    #[test]
    fn the_sms_fallback_text_is_the_fallback_text_or_text_and_first_link() {
        let pay = serde_json::json!({"suggestions": [
            {"reply": {"text": "Later", "postbackData": "later"}},
            {"action": {"text": "Pay", "postbackData": "pay",
                        "openUrlAction": {"url": "https://pay.example/1"}}},
            {"action": {"text": "Other", "postbackData": "x",
                        "openUrlAction": {"url": "https://other.example/"}}}
        ]});
        let d = rcs_data(Some("Zaległość 10 zł."), pay.clone(), None);
        assert_eq!(fallback_text(&d), "Zaległość 10 zł. https://pay.example/1");
        let d = rcs_data(
            Some("Zaległość 10 zł."),
            pay.clone(),
            Some("Zapłać: pay.example/1"),
        );
        assert_eq!(fallback_text(&d), "Zapłać: pay.example/1");
        // The link is not repeated when the text has it; a card's link counts too.
        let d = rcs_data(Some("Zapłać https://pay.example/1"), pay, None);
        assert_eq!(fallback_text(&d), "Zapłać https://pay.example/1");
        let card = serde_json::json!({"richCard": {"standaloneCard": {"cardContent": {
            "title": "Wyciąg", "suggestions": [{"action": {"text": "Pay", "postbackData": "p",
            "openUrlAction": {"url": "https://pay.example/card"}}}]}}}});
        assert_eq!(
            fallback_text(&rcs_data(None, card, None)),
            "https://pay.example/card"
        );
    }
}
