//! The in-process store: the default for `goniec demo` and fast tests.
//!
//! It follows the Redis backend's semantics exactly (the conformance suite runs
//! against both) but keeps everything in one mutex-guarded map: nothing survives a
//! restart, which [`MemoryStore::new`] says loudly. The lock is never held across
//! an await.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use goniec_antifraud::{Cap, Counters, Increment, Needs};
use goniec_config::Channel;
use tokio::sync::Notify;

mod campaigns;
mod content;
mod operator;

use super::{
    CallbackPayload, Callbacks, Change, Correlation, EntryRef, Handover, HistoryKey, IdemBegin,
    IdemWrite, Job, Lane, LaneStats, Lease, NewMessage, Outcome, Partitions, Store, StoreError,
    Task, Transition,
};
use crate::model::{new_message_id_in, now_ms, partition_of, Event, MessageData, Record, Status};

struct Rec {
    data_json: String,
    status: Status,
    events: Vec<Event>,
    callbacks: Callbacks,
    /// What its callbacks carry of it.
    callback_context: Option<crate::CallbackContext>,
    /// A worker is submitting it: it cannot be cancelled.
    in_flight: bool,
    /// Parts it was sent in, and the parts reported delivered so far.
    parts: u32,
    parts_delivered: std::collections::HashSet<String>,
    /// It went back from `submitted` to `queued` for its SMS fallback (once only).
    fell_back: bool,
    /// Clicks on its tracked links.
    clicks: crate::content::Clicks,
    /// A campaign's message: (campaign id, `s<step>:<channel>`, accepted ms).
    campaign: Option<(String, String, i64)>,
}

struct Pending {
    job: Job,
    tenant: String,
    since: Instant,
}

#[derive(Default)]
struct LaneState {
    /// One queue per tenant, taken from in turn (one tenant's backlog cannot
    /// hold up another's).
    ready: BTreeMap<String, VecDeque<(String, Job)>>,
    /// The tenant whose turn it is next.
    turn: Option<String>,
    pending: BTreeMap<String, Pending>,
    /// (due ms, sequence) → job and its tenant.
    sched: BTreeMap<(i64, u64), (Job, String)>,
    dead: Vec<crate::operator::DeadLetter>,
}

impl LaneState {
    fn ready_len(&self) -> usize {
        self.ready.values().map(VecDeque::len).sum()
    }

    /// The next entry, taking the tenants in turn, none of `skip`'s.
    fn pop(&mut self, skip: &HashSet<String>) -> Option<(String, String, Job)> {
        let start = self.turn.clone().unwrap_or_default();
        let tenant = self
            .ready
            .range(start..)
            .chain(self.ready.iter())
            .find(|(t, q)| !q.is_empty() && !skip.contains(*t))
            .map(|(t, _)| t.clone())?;
        let q = self.ready.get_mut(&tenant)?;
        let (entry, job) = q.pop_front()?;
        if q.is_empty() {
            self.ready.remove(&tenant);
        }
        // The next turn goes to the tenant after this one.
        self.turn = Some(format!("{tenant}\0"));
        Some((tenant, entry, job))
    }
}

#[derive(Default)]
struct Inner {
    records: HashMap<String, Rec>,
    history: HashMap<String, BTreeSet<String>>,
    idem: HashMap<String, (String, Instant)>,
    corr: HashMap<String, (String, Instant)>,
    lanes: HashMap<Lane, LaneState>,
    seq: u64,
    /// Anti-fraud counters and opt-outs.
    counters: goniec_antifraud::MemoryCounters,
    /// When each recipient's opt-out state last changed (ms), so an older event
    /// never undoes a newer change.
    opt_out_at: HashMap<String, i64>,
    /// Held messages: (accepted ms, id).
    held: BTreeSet<(i64, String)>,
    /// E-mail suppression lists: tenant → address → reason.
    suppressed: HashMap<String, BTreeMap<String, String>>,
    /// Keys seen by `first_seen`, until when; pruned when it grows past
    /// `seen_prune_at` (which doubles while the keys are live, so pruning costs
    /// amortised O(1)).
    seen: HashMap<String, Instant>,
    seen_prune_at: usize,
    /// Stored templates: (tenant, id) → every version's document, oldest first.
    templates: HashMap<(String, String), Vec<String>>,
    /// Tracked links by code.
    links: HashMap<String, crate::content::Link>,
    /// Campaigns by id.
    campaigns: HashMap<String, campaigns::MemCampaign>,
    /// Paused tenants and connectors: target → who and when.
    pauses: BTreeMap<String, String>,
    /// The admin log, newest first.
    audit: VecDeque<String>,
    /// Tenants whose channel-lane entries are not claimed (paused).
    skip: HashSet<String>,
}

impl Inner {
    fn next_entry(&mut self) -> String {
        self.seq += 1;
        format!("{}-{}", now_ms(), self.seq)
    }

    /// As `lua/transition.lua`'s `count_campaign`.
    fn count_campaign(&mut self, (id, cf, ca): &(String, String, i64), to: &str) {
        let Some(c) = self.campaigns.get_mut(id) else {
            return;
        };
        let now = now_ms();
        let f = format!("{cf}:{to}");
        c.count(&f, now);
        if matches!(to, "delivered" | "read" | "clicked") {
            let b = crate::campaigns::time_bucket((now - ca).max(0) as f64 / 1000.0);
            *c.counters.entry(format!("{f}:t{b}")).or_insert(0) += 1;
        }
    }

    fn push(&mut self, lane: Lane, tenant: &str, job: Job) {
        let entry = self.next_entry();
        self.lanes
            .entry(lane)
            .or_default()
            .ready
            .entry(tenant.to_string())
            .or_default()
            .push_back((entry, job));
    }

    fn schedule(&mut self, lane: Lane, tenant: &str, due: i64, job: Job) {
        self.seq += 1;
        let seq = self.seq;
        self.lanes
            .entry(lane)
            .or_default()
            .sched
            .insert((due, seq), (job, tenant.to_string()));
    }

    fn transition(&mut self, id: &str, change: &Change) -> Transition {
        let Some(rec) = self.records.get_mut(id) else {
            return Transition::Missing;
        };
        if !rec.status.can_move_to(change.to) {
            return Transition::Refused {
                current: rec.status,
            };
        }
        if change.to == Status::Cancelled && rec.in_flight {
            return Transition::InFlight;
        }
        // submitted → queued is the SMS fallback of an RCS message: once per message.
        if change.to == Status::Queued && rec.status == Status::Submitted {
            if rec.fell_back {
                return Transition::Refused {
                    current: rec.status,
                };
            }
            rec.fell_back = true;
        }
        if let (Some(part), Status::Delivered) = (&change.part, change.to) {
            if rec.parts > 1 {
                if !rec.parts_delivered.insert(part.clone()) {
                    return Transition::Refused {
                        current: rec.status,
                    };
                }
                if (rec.parts_delivered.len() as u32) < rec.parts {
                    rec.events.push(Event {
                        status: Status::Submitted,
                        at: change.event.at,
                        reason: None,
                        detail: Some(format!("part {part} delivered")),
                    });
                    return Transition::Partial;
                }
            }
        }
        let from = rec.status;
        rec.status = change.to;
        if let Some(n) = change.parts {
            rec.parts = n.max(1);
        }
        rec.events.push(change.event.clone());
        let campaign = rec.campaign.clone();
        // As in Redis: a final status removes the message's pending receipt check.
        if change.to.is_final() {
            if let Some(st) = self.lanes.get_mut(&Lane::Channel(Channel::Sms)) {
                st.sched
                    .retain(|_, (j, _)| !(j.id == id && matches!(j.task, Task::ReceiptCheck(_))));
            }
        }
        if rec.callbacks.wants(change.to) {
            let payload = CallbackPayload {
                message_id: id.to_string(),
                status: change.to,
                at: change.event.at,
                reason: change.event.reason.clone(),
                context: rec.callback_context.clone(),
            };
            let job = Job {
                id: new_message_id_in(partition_of(id)),
                attempt: 0,
                task: Task::Callback(payload),
            };
            self.push(Lane::Webhook, "", job);
        }
        if let Some(c) = campaign {
            self.count_campaign(&c, change.to.as_str());
        }
        Transition::Applied { from }
    }

    /// `change` if there is one; no change counts as applied.
    fn apply(&mut self, id: &str, change: Option<&Change>) -> Transition {
        match change {
            Some(ch) => self.transition(id, ch),
            None => Transition::Applied {
                from: Status::Queued,
            },
        }
    }

    /// Remove a lease from the pending list; false if it was not pending.
    fn ack(&mut self, lease: &Lease) -> bool {
        self.lanes
            .entry(lease.lane)
            .or_default()
            .pending
            .remove(&lease.entry)
            .is_some()
    }
}

/// The memory backend.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    notify: HashMap<Lane, Notify>,
    idem_ttl: Duration,
    corr_ttl: Duration,
    parts: Partitions,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

fn history_key(tenant: &str, key: &HistoryKey) -> String {
    match key {
        HistoryKey::To(to) => format!("{tenant}\0to\0{to}"),
        HistoryKey::ClientRef(r) => format!("{tenant}\0ref\0{r}"),
    }
}

impl MemoryStore {
    /// Finish a lease: the change, the correlation and the ack, and `next` (only
    /// for the lease's current holder), in one step.
    fn complete(
        &self,
        lease: &Lease,
        change: Option<&Change>,
        correlation: Option<&Correlation>,
        next: Option<&Handover>,
    ) -> Transition {
        let t = {
            let mut g = self.lock();
            let t = g.apply(&lease.job.id, change);
            if let Some(c) = correlation {
                for pid in &c.provider_ids {
                    g.corr.insert(
                        format!("{}\0{pid}", c.connector),
                        (lease.job.id.clone(), Instant::now() + self.corr_ttl),
                    );
                }
            }
            if let (true, Some(next)) = (g.ack(lease), next) {
                match next.at_ms {
                    None => g.push(next.lane, &lease.tenant, next.job.clone()),
                    Some(at) => {
                        // As in Redis (a sorted set): the same job scheduled twice is one.
                        let st = g.lanes.entry(next.lane).or_default();
                        st.sched.retain(|_, (j, _)| j != &next.job);
                        g.schedule(next.lane, &lease.tenant, at, next.job.clone());
                    }
                }
                if let Some(ev) = &next.note {
                    if let Some(r) = g.records.get_mut(&lease.job.id) {
                        r.events.push(ev.clone());
                    }
                }
            }
            t
        };
        self.wake(Lane::Webhook);
        if let Some(Handover {
            lane, at_ms: None, ..
        }) = next
        {
            self.wake(*lane);
        }
        t
    }

    fn retry(&self, lease: &Lease, at_ms: i64, attempt: u32) {
        let mut g = self.lock();
        if g.ack(lease) {
            if let Some(r) = g.records.get_mut(&lease.job.id) {
                r.in_flight = false;
            }
            let job = Job {
                attempt,
                ..lease.job.clone()
            };
            g.schedule(lease.lane, &lease.tenant, at_ms, job);
        }
    }

    fn bury(&self, lease: &Lease, reason: &str, change: Option<&Change>) -> Transition {
        let t = {
            let mut g = self.lock();
            let t = g.apply(&lease.job.id, change);
            if g.ack(lease) {
                let reason = if reason.is_empty() { "dead" } else { reason };
                let id = crate::operator::dead_id(0, &g.next_entry());
                g.lanes
                    .entry(lease.lane)
                    .or_default()
                    .dead
                    .push(crate::operator::DeadLetter {
                        id,
                        job: Job {
                            task: lease.job.task.without_context(),
                            ..lease.job.clone()
                        },
                        reason: reason.to_string(),
                    });
            }
            t
        };
        self.wake(Lane::Webhook);
        t
    }

    pub fn new(cfg: &goniec_config::Store) -> Self {
        tracing::warn!(
            "Store backend is `memory`: queued messages, statuses and history live in this \
             process only and are LOST on restart. Use `backend = \"redis\"` in production."
        );
        MemoryStore {
            inner: Mutex::new(Inner::default()),
            notify: Lane::ALL.into_iter().map(|l| (l, Notify::new())).collect(),
            idem_ttl: cfg.idempotency_ttl,
            corr_ttl: cfg.correlation_ttl,
            parts: Partitions::new(cfg.partitions),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way
        // that matters more than stopping the gateway would; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self, lane: Lane) {
        if let Some(n) = self.notify.get(&lane) {
            n.notify_waiters();
        }
    }

    fn take(&self, lane: Lane, max: usize) -> Vec<Lease> {
        let mut g = self.lock();
        let Inner { lanes, skip, .. } = &mut *g;
        let none = HashSet::new();
        let skip = if lane == Lane::Webhook { &none } else { &*skip };
        let st = lanes.entry(lane).or_default();
        let mut out = Vec::new();
        while out.len() < max {
            let Some((tenant, entry, job)) = st.pop(skip) else {
                break;
            };
            st.pending.insert(
                entry.clone(),
                Pending {
                    job: job.clone(),
                    tenant: tenant.clone(),
                    since: Instant::now(),
                },
            );
            out.push(Lease {
                lane,
                partition: partition_of(&job.id),
                tenant,
                entry,
                job,
                reclaimed: false,
            });
        }
        out
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn templates(&self) -> &dyn crate::content::Templates {
        self
    }

    fn links(&self) -> &dyn crate::content::Links {
        self
    }

    fn campaigns(&self) -> &dyn crate::campaigns::Campaigns {
        self
    }

    fn operator(&self) -> &dyn crate::operator::Operator {
        self
    }

    fn skip_tenants(&self, tenants: HashSet<String>) {
        let wake = {
            let mut g = self.lock();
            let resumed = g.skip.iter().any(|t| !tenants.contains(t));
            g.skip = tenants;
            resumed
        };
        if wake {
            for lane in Lane::ALL {
                self.wake(lane);
            }
        }
    }

    fn backend(&self) -> &'static str {
        "memory"
    }

    fn partitions(&self) -> Partitions {
        self.parts
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn accept(
        &self,
        msgs: &[NewMessage],
        idem: Option<IdemWrite<'_>>,
    ) -> Result<(), StoreError> {
        let mut lanes = Vec::new();
        {
            let mut g = self.lock();
            for m in msgs {
                g.records.insert(
                    m.id.clone(),
                    Rec {
                        data_json: m.data_json.clone(),
                        status: m.status,
                        events: m.events.clone(),
                        callbacks: m.callbacks.clone(),
                        callback_context: m.callback_context(),
                        in_flight: false,
                        parts: 1,
                        parts_delivered: Default::default(),
                        fell_back: false,
                        clicks: Default::default(),
                        campaign: m.campaign.as_ref().map(|(c, step)| {
                            (c.clone(), format!("s{step}:{}", m.channel), now_ms())
                        }),
                    },
                );
                let lane = Lane::Channel(m.channel);
                let job = Job::deliver(&m.id);
                match (m.status, m.due_ms) {
                    (Status::Scheduled, Some(due)) => g.schedule(lane, &m.tenant, due, job),
                    (Status::Held, _) => {
                        g.held.insert((now_ms(), m.id.clone()));
                    }
                    // Refused before queueing: kept for status and history only.
                    (Status::Rejected, _) => {}
                    _ => {
                        g.push(lane, &m.tenant, job);
                        lanes.push(lane);
                    }
                }
                g.history
                    .entry(history_key(&m.tenant, &HistoryKey::To(m.to.clone())))
                    .or_default()
                    .insert(m.id.clone());
                if let Some(r) = &m.client_ref {
                    g.history
                        .entry(history_key(&m.tenant, &HistoryKey::ClientRef(r.clone())))
                        .or_default()
                        .insert(m.id.clone());
                }
            }
            if let Some(w) = idem {
                let v = super::encode_idem_done(&w);
                g.idem.insert(
                    format!("{}\0{}", w.tenant, w.key),
                    (v, Instant::now() + self.idem_ttl),
                );
            }
        }
        lanes.dedup();
        for l in lanes {
            self.wake(l);
        }
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let g = self.lock();
        let Some(r) = g.records.get(id) else {
            return Ok(None);
        };
        let data: MessageData =
            serde_json::from_str(&r.data_json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some(Record {
            data,
            status: r.status,
            events: r.events.clone(),
            clicks: r.clicks,
        }))
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<Record>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.get(id).await?);
        }
        Ok(out)
    }

    async fn begin_delivery(&self, ids: &[String]) -> Result<Vec<Option<Record>>, StoreError> {
        {
            let mut g = self.lock();
            for id in ids {
                if let Some(r) = g.records.get_mut(id) {
                    if r.status == Status::Queued {
                        r.in_flight = true;
                    }
                }
            }
        }
        self.get_many(ids).await
    }

    async fn touch(
        &self,
        lane: Lane,
        _consumer: &str,
        entries: &[EntryRef],
    ) -> Result<(), StoreError> {
        let mut g = self.lock();
        let st = g.lanes.entry(lane).or_default();
        let now = Instant::now();
        for e in entries {
            if let Some(p) = st.pending.get_mut(&e.entry) {
                p.since = now;
            }
        }
        Ok(())
    }

    async fn transition(&self, id: &str, change: &Change) -> Result<Transition, StoreError> {
        let t = self.lock().transition(id, change);
        self.wake(Lane::Webhook);
        Ok(t)
    }

    async fn history(
        &self,
        tenant: &str,
        key: &HistoryKey,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let g = self.lock();
        let Some(set) = g.history.get(&history_key(tenant, key)) else {
            return Ok(Vec::new());
        };
        let it: Box<dyn Iterator<Item = &String>> = match before {
            Some(b) => Box::new(set.range::<String, _>(..b.to_string()).rev()),
            None => Box::new(set.iter().rev()),
        };
        Ok(it.take(limit).cloned().collect())
    }

    async fn idem_begin(
        &self,
        tenant: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<IdemBegin, StoreError> {
        let mut g = self.lock();
        let k = format!("{tenant}\0{key}");
        let now = Instant::now();
        if let Some((v, exp)) = g.idem.get(&k) {
            if *exp > now {
                return super::parse_idem(v);
            }
        }
        g.idem.insert(
            k,
            (format!("P|{fingerprint}"), now + Duration::from_secs(60)),
        );
        Ok(IdemBegin::New)
    }

    async fn idem_abort(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        let mut g = self.lock();
        let k = format!("{tenant}\0{key}");
        if g.idem.get(&k).is_some_and(|(v, _)| v.starts_with("P|")) {
            g.idem.remove(&k);
        }
        Ok(())
    }

    async fn claim(
        &self,
        lane: Lane,
        _consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        let notify = self
            .notify
            .get(&lane)
            .ok_or_else(|| StoreError::Corrupt("unknown lane".into()))?;
        let notified = notify.notified();
        tokio::pin!(notified);
        // Register interest before looking, so a push between the look and the wait is not missed.
        notified.as_mut().enable();
        let got = self.take(lane, max);
        if !got.is_empty() || block.is_zero() {
            return Ok(got);
        }
        let _ = tokio::time::timeout(block, notified).await;
        Ok(self.take(lane, max))
    }

    async fn reclaim(
        &self,
        lane: Lane,
        _consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        let mut g = self.lock();
        let st = g.lanes.entry(lane).or_default();
        let now = Instant::now();
        let mut out = Vec::new();
        for (entry, p) in st.pending.iter_mut() {
            if out.len() >= max {
                break;
            }
            if now.duration_since(p.since) >= min_idle {
                p.since = now;
                out.push(Lease {
                    lane,
                    partition: partition_of(&p.job.id),
                    tenant: p.tenant.clone(),
                    entry: entry.clone(),
                    job: p.job.clone(),
                    reclaimed: true,
                });
            }
        }
        Ok(out)
    }

    async fn finish(&self, lease: Lease, outcome: Outcome) -> Result<Transition, StoreError> {
        Ok(match outcome {
            Outcome::Complete {
                change,
                correlation,
            } => self.complete(&lease, change.as_ref(), correlation.as_ref(), None),
            Outcome::Handover {
                change,
                correlation,
                next,
            } => self.complete(&lease, change.as_ref(), correlation.as_ref(), Some(&next)),
            Outcome::Retry { at_ms, attempt } => {
                self.retry(&lease, at_ms, attempt);
                Transition::Applied {
                    from: Status::Queued,
                }
            }
            Outcome::Bury { reason, change } => self.bury(&lease, &reason, change.as_ref()),
        })
    }

    async fn first_seen(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let now = Instant::now();
        if g.seen.len() >= g.seen_prune_at.max(100_000) {
            g.seen.retain(|_, until| *until > now);
            g.seen_prune_at = g.seen.len() * 2;
        }
        match g.seen.get(key) {
            Some(until) if *until > now => Ok(false),
            _ => {
                g.seen.insert(key.to_owned(), now + ttl);
                Ok(true)
            }
        }
    }

    async fn forget_seen(&self, key: &str) -> Result<(), StoreError> {
        self.lock().seen.remove(key);
        Ok(())
    }

    async fn promote_due(&self, lane: Lane, now: i64, max: usize) -> Result<usize, StoreError> {
        let n = {
            let mut g = self.lock();
            let st = g.lanes.entry(lane).or_default();
            let mut due = Vec::new();
            while due.len() < max {
                match st.sched.first_key_value() {
                    Some((&(at, _), _)) if at <= now => {
                        if let Some((_, job)) = st.sched.pop_first() {
                            due.push(job);
                        }
                    }
                    _ => break,
                }
            }
            let n = due.len();
            for (job, tenant) in due {
                if let Lane::Channel(_) = lane {
                    if let Some(rec) = g.records.get_mut(&job.id) {
                        if rec.status == Status::Scheduled {
                            rec.status = Status::Queued;
                            rec.events.push(Event {
                                status: Status::Queued,
                                at: now,
                                reason: None,
                                detail: None,
                            });
                        }
                    }
                }
                g.push(lane, &tenant, job);
            }
            n
        };
        if n > 0 {
            self.wake(lane);
        }
        Ok(n)
    }

    async fn correlate(
        &self,
        connector: &str,
        provider_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let g = self.lock();
        Ok(g.corr
            .get(&format!("{connector}\0{provider_id}"))
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(id, _)| id.clone()))
    }

    async fn correlate_many(
        &self,
        connector: &str,
        provider_ids: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let g = self.lock();
        let now = Instant::now();
        Ok(provider_ids
            .iter()
            .map(|p| {
                g.corr
                    .get(&format!("{connector}\0{p}"))
                    .filter(|(_, exp)| *exp > now)
                    .map(|(id, _)| id.clone())
            })
            .collect())
    }

    async fn lane_stats(&self, lane: Lane, now: i64) -> Result<LaneStats, StoreError> {
        let g = self.lock();
        let Some(st) = g.lanes.get(&lane) else {
            return Ok(LaneStats::default());
        };
        let oldest = st
            .pending
            .keys()
            .chain(st.ready.values().flatten().map(|(e, _)| e))
            .filter_map(|e| e.split('-').next()?.parse::<i64>().ok())
            .min();
        Ok(LaneStats {
            depth: (st.ready_len() + st.pending.len()) as u64,
            scheduled: st.sched.len() as u64,
            dead: st.dead.len() as u64,
            oldest_age_ms: oldest.map_or(0, |ms| (now - ms).max(0) as u64),
            due_soon: st
                .sched
                .range(..(now + crate::DUE_SOON_MS, u64::MAX))
                .count() as u64,
        })
    }

    async fn dead_letters(
        &self,
        lane: Lane,
        max: usize,
    ) -> Result<Vec<crate::operator::DeadLetter>, StoreError> {
        let g = self.lock();
        Ok(g.lanes
            .get(&lane)
            .map(|st| st.dead.iter().take(max).cloned().collect())
            .unwrap_or_default())
    }

    async fn suppress(&self, tenant: &str, address: &str, reason: &str) -> Result<(), StoreError> {
        self.lock()
            .suppressed
            .entry(tenant.to_string())
            .or_default()
            .insert(address.to_string(), reason.to_string());
        Ok(())
    }

    async fn unsuppress(&self, tenant: &str, address: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .suppressed
            .get_mut(tenant)
            .is_some_and(|m| m.remove(address).is_some()))
    }

    async fn suppressed(
        &self,
        tenant: &str,
        addresses: &[&str],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let g = self.lock();
        let list = g.suppressed.get(tenant);
        Ok(addresses
            .iter()
            .map(|a| list.and_then(|m| m.get(*a).cloned()))
            .collect())
    }

    async fn suppressions(
        &self,
        tenant: &str,
        max: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let g = self.lock();
        Ok(g.suppressed
            .get(tenant)
            .map(|m| {
                m.iter()
                    .take(max)
                    .map(|(a, r)| (a.clone(), r.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn enqueue(&self, lane: Lane, job: Job) -> Result<(), StoreError> {
        self.lock().push(lane, "", job);
        self.wake(lane);
        Ok(())
    }

    async fn counters(&self, needs: Vec<Needs>) -> Result<Vec<Counters>, StoreError> {
        let g = self.lock();
        Ok(needs.into_iter().map(|n| g.counters.snapshot(n)).collect())
    }

    async fn count(&self, record: &[Increment]) -> Result<(), StoreError> {
        self.lock().counters.apply(record, jiff::Timestamp::now());
        Ok(())
    }

    async fn reserve(&self, caps: &[&[Cap]]) -> Result<Vec<Option<usize>>, StoreError> {
        let now = jiff::Timestamp::now();
        let mut g = self.lock();
        Ok(caps.iter().map(|c| g.counters.reserve(c, now)).collect())
    }

    async fn release(&self, caps: &[&Cap]) -> Result<(), StoreError> {
        let now = jiff::Timestamp::now();
        let mut g = self.lock();
        for c in caps {
            g.counters.release(c, now);
        }
        Ok(())
    }

    async fn set_opt_out(
        &self,
        key: &str,
        opted_out: bool,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let last = g.opt_out_at.get(key).copied().unwrap_or(i64::MIN);
        if at_ms < last {
            return Ok(false);
        }
        g.opt_out_at.insert(key.to_string(), at_ms);
        g.counters.set_opted_out(key, opted_out);
        Ok(true)
    }

    async fn opted_out(&self, keys: &[String]) -> Result<Vec<bool>, StoreError> {
        let g = self.lock();
        Ok(keys.iter().map(|k| g.counters.is_opted_out(k)).collect())
    }

    async fn held(&self, max: usize) -> Result<Vec<String>, StoreError> {
        let g = self.lock();
        Ok(g.held.iter().take(max).map(|(_, id)| id.clone()).collect())
    }

    async fn held_count(&self) -> Result<u64, StoreError> {
        Ok(self.lock().held.len() as u64)
    }

    async fn decide_held(
        &self,
        id: &str,
        tenant: &str,
        change: &Change,
        due_ms: i64,
        channel: Channel,
    ) -> Result<Transition, StoreError> {
        let t = {
            let mut g = self.lock();
            let current = g.records.get(id).map(|r| r.status);
            let t = match current {
                None => Transition::Missing,
                Some(Status::Held) => g.transition(id, change),
                Some(current) => Transition::Refused { current },
            };
            if matches!(t, Transition::Applied { .. } | Transition::Missing) {
                g.held.retain(|(_, h)| h != id);
            }
            if t.applied() && change.to == Status::Scheduled {
                let job = Job::deliver(id);
                g.schedule(Lane::Channel(channel), tenant, due_ms, job);
            }
            t
        };
        self.wake(Lane::Webhook);
        self.wake(Lane::Channel(channel));
        Ok(t)
    }

    async fn beat(&self, _consumer: &str, _ttl: Duration) -> Result<(), StoreError> {
        Ok(())
    }

    /// One process holds the memory store: every instance it knows is itself.
    async fn alive(&self, _consumer: &str) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn take_over_dead(
        &self,
        _lane: Lane,
        _consumer: &str,
        _max: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        // One process holds all of it: a dead process took the store with it.
        Ok(Vec::new())
    }
}
