//! The campaign runner: every running campaign's due recipients, taken in
//! batches per partition, paced by the campaign's speed, never outside the
//! tenant's contact hours, each batch accepted under an idempotency key of
//! its own (campaign, partition, batch number) so a batch redone after a
//! crash sends nothing twice. Every instance runs one; they share the work
//! through the store's open batches.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use goniec_config::Channel;
use goniec_store::campaigns::{DueBatch, DueItem, RecipientState, StepDone};
use serde::{Deserialize, Serialize};

use super::{Condition, Recipient, StopEvent, Stored};
use crate::accept::{self, Idem, Items, Outcome, Refused};
use crate::app::App;
use crate::model::{now_ms, CampaignRef, Status};
use crate::store::{IdemBegin, StoreError};
use crate::templates::Template;
use crate::tenants::TenantCtx;

/// How often the runner looks for due recipients.
const TICK: Duration = Duration::from_millis(200);
/// Most recipients in one batch.
const MAX_BATCH: usize = 500;
/// Prefix of a campaign batch's idempotency fingerprint, before the
/// instance's name (no `|`: the store separates fields with it).
const OWNER: &str = "campaign-runner:";
/// A message over its channel's speed waits this long.
const LATER_MS: i64 = 1_000;
/// Most recipients one campaign takes per tick without a `speed` (50,000/s),
/// so one large campaign cannot hold the runner from the others.
const MAX_PER_TICK: usize = 10_000;

/// A token bucket for one campaign's (or channel's) speed.
struct Pacer {
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl Pacer {
    fn new(per_sec: f64) -> Pacer {
        Pacer {
            per_sec,
            tokens: 0.0,
            last: Instant::now(),
        }
    }

    /// Whole tokens available now (at most a second's worth is saved up).
    fn available(&mut self) -> usize {
        let now = Instant::now();
        let cap = self.per_sec.max(1.0);
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_sec).min(cap);
        self.last = now;
        self.tokens.floor() as usize
    }

    fn take(&mut self, n: usize) {
        self.tokens -= n as f64;
    }
}

#[derive(Default)]
struct Pacers {
    all: Option<Pacer>,
    by_channel: HashMap<Channel, Pacer>,
}

/// Run until the gateway stops taking work.
pub async fn run(app: Arc<App>) {
    let mut pacers: HashMap<String, Pacers> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = app.stop_work.cancelled() => return,
            _ = tick.tick() => {}
        }
        let active = match app.store.campaigns().active_campaigns().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "Could not list running campaigns.");
                continue;
            }
        };
        pacers.retain(|id, _| active.iter().any(|(_, i)| i == id));
        for (tenant, id) in active {
            let p = pacers.entry(id.clone()).or_default();
            if let Err(e) = work(&app, &tenant, &id, p).await {
                app.metrics
                    .store_errors
                    .with_label_values(&["campaign"])
                    .inc();
                tracing::warn!(campaign = %id, error = %e, "Campaign step failed; retrying.");
            }
        }
    }
}

/// Why a campaign waits.
pub fn waiting(
    app: &App,
    tenant: &TenantCtx,
    stored: &Stored,
    now: i64,
) -> Option<(&'static str, i64)> {
    let start = stored.start_ms.or(stored.started_ms).unwrap_or(now);
    if now < start {
        return Some(("start_at", start));
    }
    if app.cfg.antifraud.enabled
        && tenant.cfg.antifraud.policy == goniec_antifraud::PolicyKind::Collection
    {
        if let Some(next) = tenant.cfg.antifraud.contact.next_allowed_ms(now) {
            return Some(("contact_hours", next));
        }
    }
    None
}

async fn work(app: &Arc<App>, tenant: &str, id: &str, pacers: &mut Pacers) -> Result<(), String> {
    let campaigns = app.store.campaigns();
    let Some(meta) = campaigns
        .campaign(tenant, id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    if meta.state != "running" {
        return Ok(());
    }
    let Some(tctx) = app.tenants.by_name(tenant).cloned() else {
        return Ok(());
    };
    let stored: Stored = serde_json::from_str(&meta.doc).map_err(|e| e.to_string())?;
    let now = now_ms();
    if stored.end_ms.is_some_and(|end| now >= end) {
        finish(app, tenant, id, "completed").await;
        return Ok(());
    }
    if waiting(app, &tctx, &stored, now).is_some() {
        return Ok(());
    }
    let all = pacers.all.get_or_insert_with(|| {
        Pacer::new(stored.doc.speed.map_or(f64::INFINITY, |r| r.per_second()))
    });
    let paced = all.per_sec.is_finite();
    let mut budget = if paced {
        all.available().min(MAX_PER_TICK)
    } else {
        MAX_PER_TICK
    };
    if budget == 0 {
        return Ok(());
    }
    let mut templates = Vec::with_capacity(stored.doc.steps.len());
    for s in &stored.doc.steps {
        let t = accept::templates::fetch(app, tenant, &s.template_id, s.template_version)
            .await
            .map_err(|e| format!("{e:?}"))?
            .ok_or_else(|| format!("template {} is gone", s.template_id))?;
        templates.push(t);
    }
    for (ch, rate) in &stored.doc.speeds {
        pacers
            .by_channel
            .entry(*ch)
            .or_insert_with(|| Pacer::new(rate.per_second()));
    }
    let parts = app.store.partitions();
    // Start from another partition each tick, so a small budget is shared.
    let offset = (now / TICK.as_millis() as i64).rem_euclid(i64::from(parts.count())) as u16;
    for k in 0..parts.count() {
        let p = (k + offset) % parts.count();
        while budget > 0 {
            // A batch is accepted at once: never more than the tenant's rate
            // lets through at once (its burst), or it would be refused for ever.
            let burst = tctx.cfg.rate.map_or(MAX_BATCH, |r| r.count() as usize);
            let max = budget.min(MAX_BATCH).min(burst.max(1));
            let Some(batch) = campaigns
                .begin_batch(id, p, now_ms(), max)
                .await
                .map_err(|e| e.to_string())?
            else {
                break;
            };
            let n = batch.items.len();
            let done = run_batch(app, &tctx, id, p, &stored, &templates, batch, pacers).await?;
            budget = budget.saturating_sub(n);
            if paced {
                if let Some(a) = pacers.all.as_mut() {
                    a.take(n);
                }
            }
            if !done {
                break;
            }
        }
    }
    if campaigns.pending(id).await.map_err(|e| e.to_string())? == 0 {
        finish(app, tenant, id, "completed").await;
    }
    Ok(())
}

async fn finish(app: &App, tenant: &str, id: &str, to: &str) {
    match app
        .store
        .campaigns()
        .set_campaign_state(tenant, id, &["running"], to)
        .await
    {
        Ok(Some(prev)) if prev == "running" => {
            tracing::info!(campaign = %id, tenant = %tenant, state = to, "Campaign finished.");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(campaign = %id, error = %e, "Could not finish a campaign."),
    }
}

/// What to do with one due recipient.
enum Plan {
    /// Stop for good, for this reason (counted when new).
    Stop(String, bool),
    /// The step's condition does not hold, or there is no address for it.
    Skip(&'static str),
    /// Over the channel's speed: try again later.
    Later,
    /// Send: index into the batch's messages.
    Send(usize),
}

/// A batch item's result as stored in the idempotent answer.
#[derive(Debug, Serialize, Deserialize)]
struct ItemResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn render(outcomes: &[Outcome]) -> Result<accept::Answer, Refused> {
    let items: Vec<ItemResult> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Accepted(a) => ItemResult {
                id: Some(a.id.clone()),
                status: Some(a.status.as_str().into()),
                reasons: a.reasons.iter().map(|r| r.to_string()).collect(),
                error: None,
            },
            Outcome::Rejected { id, reasons, .. } => ItemResult {
                id: Some(id.clone()),
                status: Some("rejected".into()),
                reasons: reasons.iter().map(|r| r.to_string()).collect(),
                error: None,
            },
            Outcome::Invalid(e) => ItemResult {
                id: None,
                status: None,
                reasons: vec![],
                error: Some(e.code.as_str().into()),
            },
        })
        .collect();
    let body = serde_json::to_string(&items).map_err(|e| Refused::Internal(e.to_string()))?;
    Ok(accept::Answer { status: 200, body })
}

/// Send one batch; false when it must wait (the store or the tenant's rate).
#[allow(clippy::too_many_arguments)]
async fn run_batch(
    app: &Arc<App>,
    tenant: &TenantCtx,
    id: &str,
    p: u16,
    stored: &Stored,
    templates: &[Arc<Template>],
    batch: DueBatch,
    pacers: &mut Pacers,
) -> Result<bool, String> {
    let now = now_ms();
    let doc = &stored.doc;
    let recipients: Vec<Recipient> = batch
        .items
        .iter()
        .map(|i| serde_json::from_str(&i.recipient).unwrap_or_default())
        .collect();
    // What became of earlier steps' messages: for conditions.
    let needs_messages = batch.items.iter().any(|i| {
        let s = &doc.steps[i.step as usize];
        s.if_all
            .iter()
            .chain(&s.if_not)
            .any(|c| !matches!(c, Condition::Paid | Condition::Replied))
    });
    let mut status: HashMap<String, (Status, u64)> = HashMap::new();
    if needs_messages {
        let ids: Vec<String> = batch
            .items
            .iter()
            .flat_map(|i| i.state.messages.iter().flatten().cloned())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !ids.is_empty() {
            let recs = app.store.get_many(&ids).await.map_err(|e| e.to_string())?;
            for (id, rec) in ids.iter().zip(recs) {
                if let Some(r) = rec {
                    status.insert(id.clone(), (r.status, r.clicks.clicks));
                }
            }
        }
    }
    let mut messages: Vec<serde_json::Value> = Vec::new();
    let mut tags: Vec<CampaignRef> = Vec::new();
    let mut plans = Vec::with_capacity(batch.items.len());
    for (item, r) in batch.items.iter().zip(&recipients) {
        plans.push(plan(
            item,
            r,
            doc,
            &status,
            pacers,
            &mut messages,
            &mut tags,
            id,
            stored,
        ));
    }
    // Accept the batch's messages, idempotently.
    let results: Vec<ItemResult> = if messages.is_empty() {
        Vec::new()
    } else {
        let key = format!("campaign:{id}:{p}:{}", batch.seq);
        // The reservation names the instance that made it: one left by a dead
        // instance is dropped at once instead of waiting for it to lapse.
        let fingerprint = format!("{OWNER}{}", app.consumer);
        match app
            .store
            .idem_begin(&tenant.cfg.name, &key, &fingerprint)
            .await
            .map_err(|e| e.to_string())?
        {
            IdemBegin::Done { body, .. } => {
                serde_json::from_str(&body).map_err(|e| e.to_string())?
            }
            IdemBegin::InProgress { fingerprint } => {
                let owner = fingerprint.strip_prefix(OWNER).unwrap_or_default();
                // This process runs its batches one at a time, so its own
                // reservation is a leftover; another's only once it is dead.
                // Only a reservation is dropped, never a stored answer
                // (`lua/idem_abort.lua`), so a batch the dead instance did
                // store is answered from it.
                let stale = owner == app.consumer
                    || !app.store.alive(owner).await.map_err(|e| e.to_string())?;
                if stale {
                    tracing::info!(campaign = %id, partition = p, batch = batch.seq, "Taking over a batch a dead instance had reserved.");
                    app.store
                        .idem_abort(&tenant.cfg.name, &key)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                return Ok(false);
            }
            IdemBegin::New => {
                let body = serde_json::to_vec(&serde_json::json!({ "messages": messages }))
                    .map_err(|e| e.to_string())?;
                let idem = Idem::Fresh { key, fingerprint };
                match accept::accept(app, tenant, Items::Campaign { body, tags }, &idem, render)
                    .await
                {
                    Ok((_, answer)) => {
                        serde_json::from_str(&answer.body).map_err(|e| e.to_string())?
                    }
                    Err(e) => {
                        accept::idempotency::release(app, tenant, &idem).await;
                        return match e {
                            Refused::RateLimited { .. } | Refused::InProgress => Ok(false),
                            e => Err(format!("{e:?}")),
                        };
                    }
                }
            }
        }
    };
    let mut done = Vec::with_capacity(batch.items.len());
    for ((item, r), plan) in batch.items.iter().zip(&recipients).zip(plans) {
        done.push(outcome(
            item, r, plan, &results, stored, templates, now, tenant,
        ));
    }
    app.store
        .campaigns()
        .commit_batch(id, p, batch.seq, &done)
        .await
        .map_err(|e: StoreError| e.to_string())?;
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
fn plan(
    item: &DueItem,
    r: &Recipient,
    doc: &super::CampaignDoc,
    status: &HashMap<String, (Status, u64)>,
    pacers: &mut Pacers,
    messages: &mut Vec<serde_json::Value>,
    tags: &mut Vec<CampaignRef>,
    id: &str,
    stored: &Stored,
) -> Plan {
    if let Some(why) = &item.state.stop {
        return Plan::Stop(why.clone(), false);
    }
    for e in &item.events {
        if StopEvent::parse(e).is_some_and(|s| doc.stop_on.contains(&s)) {
            return Plan::Stop(e.clone(), true);
        }
    }
    let step = &doc.steps[item.step as usize];
    let last = item
        .state
        .messages
        .iter()
        .rev()
        .flatten()
        .next()
        .and_then(|m| status.get(m));
    let happened = |c: &Condition| match c {
        Condition::Paid => item.events.iter().any(|e| e == "paid"),
        Condition::Replied => item.events.iter().any(|e| e == "replied"),
        Condition::Clicked => item
            .state
            .messages
            .iter()
            .flatten()
            .any(|m| status.get(m).is_some_and(|(_, c)| *c > 0)),
        Condition::Delivered => {
            last.is_some_and(|(s, _)| matches!(s, Status::Delivered | Status::Read))
        }
        Condition::Read => last.is_some_and(|(s, _)| *s == Status::Read),
        Condition::Undeliverable => last.is_some_and(|(s, _)| {
            matches!(
                s,
                Status::Undeliverable | Status::Expired | Status::Failed | Status::Rejected
            )
        }),
    };
    if !step.if_all.iter().all(happened) || step.if_not.iter().any(happened) {
        return Plan::Skip("skipped");
    }
    let to = match step.channel {
        Channel::Email => r.email.clone(),
        _ => r.to.clone(),
    };
    let Some(to) = to else {
        return Plan::Skip("no_address");
    };
    if let Some(pacer) = pacers.by_channel.get_mut(&step.channel) {
        if pacer.available() == 0 {
            return Plan::Later;
        }
        pacer.take(1);
    }
    let mut m = serde_json::json!({
        "channel": step.channel,
        "to": to,
        "template_id": step.template_id,
        "vars": r.vars,
    });
    if let Some(v) = step.template_version {
        m["template_version"] = v.into();
    }
    if let Some(c) = &r.client_ref {
        m["client_ref"] = c.clone().into();
    }
    if let Some(f) = &step.fallback {
        m["fallback"] = serde_json::json!(f);
    }
    if let Some(f) = &step.from {
        m["from"] = f.clone().into();
    }
    if let Some(u) = &doc.callback_url {
        m["callback_url"] = u.clone().into();
    }
    // Not valid past the campaign's end.
    if let Some(end) = stored.end_ms {
        m["valid_until"] = crate::model::format_ms(end).into();
    }
    messages.push(m);
    tags.push(CampaignRef {
        id: id.to_string(),
        step: item.step,
        row: item.row,
    });
    Plan::Send(messages.len() - 1)
}

#[allow(clippy::too_many_arguments)]
fn outcome(
    item: &DueItem,
    r: &Recipient,
    plan: Plan,
    results: &[ItemResult],
    stored: &Stored,
    _templates: &[Arc<Template>],
    now: i64,
    tenant: &TenantCtx,
) -> StepDone {
    let steps = &stored.doc.steps;
    let step = item.step as usize;
    let cf = format!("s{step}:{}", steps[step].channel);
    let mut state: RecipientState = item.state.clone();
    let mut counts = Vec::new();
    let mut next_ok = true;
    match plan {
        Plan::Stop(why, new) => {
            if new {
                counts.push(format!("stop:{why}"));
            }
            state.stop = Some(why);
            next_ok = false;
        }
        Plan::Later => {
            return StepDone {
                row: item.row,
                step: item.step,
                state,
                next: Some((item.step, now + LATER_MS)),
                counts,
            };
        }
        Plan::Skip(why) => {
            counts.push(format!("{cf}:{why}"));
            set_message(&mut state, step, None);
        }
        Plan::Send(i) => match results.get(i) {
            Some(ItemResult {
                id: Some(mid),
                status,
                reasons,
                ..
            }) => {
                set_message(&mut state, step, Some(mid.clone()));
                state.first_at.get_or_insert(now);
                let rejected = status.as_deref() == Some("rejected");
                counts.push(format!(
                    "{cf}:{}",
                    if rejected { "rejected" } else { "accepted" }
                ));
                if rejected && reasons.iter().any(|r| r == "opted_out") {
                    counts.push("stop:opted_out".into());
                    state.stop = Some("opted_out".into());
                    next_ok = false;
                }
            }
            Some(ItemResult { error, .. }) => {
                counts.push(format!("{cf}:invalid"));
                tracing::debug!(row = item.row, step, error = ?error, "Campaign message refused.");
                set_message(&mut state, step, None);
            }
            None => set_message(&mut state, step, None),
        },
    }
    let next = if next_ok && step + 1 < steps.len() {
        let tz = time_zone(tenant);
        steps[step + 1]
            .when(step + 1)
            .ok()
            .and_then(|w| w.due(now, &tz, &|n| r.vars.get(n).cloned()).ok())
            .map(|t| (item.step + 1, t))
    } else {
        None
    };
    StepDone {
        row: item.row,
        step: item.step,
        state,
        next,
        counts,
    }
}

fn set_message(state: &mut RecipientState, step: usize, id: Option<String>) {
    if state.messages.len() <= step {
        state.messages.resize(step + 1, None);
    }
    state.messages[step] = id;
}

/// The tenant's time zone for step times (its contact policy's default).
pub fn time_zone(tenant: &TenantCtx) -> jiff::tz::TimeZone {
    goniec_antifraud::time_zone(&tenant.cfg.antifraud.contact.default_time_zone)
        .unwrap_or(jiff::tz::TimeZone::UTC)
}

/// Counters of a campaign by step: `s<k>:<channel>:<what>` totals.
pub fn by_step(counters: &BTreeMap<String, i64>) -> BTreeMap<String, BTreeMap<String, i64>> {
    let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (k, v) in counters {
        let mut parts = k.splitn(3, ':');
        let (Some(step), Some(ch), Some(what)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if !step.starts_with('s') || what.contains(':') {
            continue;
        }
        *out.entry(format!("{step}:{ch}"))
            .or_default()
            .entry(what.to_string())
            .or_insert(0) += v;
    }
    out
}
