//! The console's live view: once a second this instance's metrics are read
//! (from the registry, no store I/O) into a small snapshot; rates are the
//! difference between snapshots, latency percentiles come from the histogram
//! buckets' difference over the last minute, and five minutes of per-second
//! rates are kept for the sparklines.
//!
//! The overview (JSON) is built only while someone watches: for
//! `GET /v1/admin/overview`, and once a second while a console has
//! `GET /v1/admin/stream` open, shared by every open console. Only then does
//! it read the store (held messages, dead letters, campaigns, the admin log):
//! a handful of round trips a second, whatever the traffic. The hot path pays
//! for nothing here but the counters it updates anyway and one timestamp per
//! submit ([`super::submit_times`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::proto::MetricType;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::app::App;
use crate::model::{format_ms, now_ms};
use crate::store::Lane;

/// Seconds of per-second history kept for the sparklines.
pub const HISTORY: usize = 300;
/// The window of the latency percentiles and the anti-fraud reason counts.
const WINDOW: Duration = Duration::from_secs(60);
/// Entries of each list (held messages, dead letters per lane, the admin log)
/// the overview shows.
const LIST: usize = 50;

/// Metric families the console reads; the rest of the registry is skipped.
const FAMILIES: &[&str] = &[
    "goniec_messages_accepted_total",
    "goniec_messages_refused_total",
    "goniec_status_transitions_total",
    "goniec_connector_submits_total",
    "goniec_receipts_total",
    "goniec_receipts_early_total",
    "goniec_no_receipt_total",
    "goniec_antifraud_verdicts_total",
    "goniec_antifraud_reasons_total",
    "goniec_webhook_posts_total",
    "goniec_webhook_dead_letters_total",
    "goniec_stage_duration_seconds",
    "goniec_webhook_post_duration_seconds",
];

type Labels = Vec<(String, String)>;

/// The console's families at one moment: per family, each series' labels and
/// value (histograms: one series per bucket, with `le`).
#[derive(Clone)]
struct Snap {
    at: Instant,
    fam: HashMap<&'static str, Vec<(Labels, f64)>>,
}

fn matches(labels: &Labels, filter: &[(&str, &str)]) -> bool {
    filter
        .iter()
        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
}

fn label<'a>(labels: &'a Labels, name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl Snap {
    fn read(app: &App) -> Snap {
        let mut fam: HashMap<&'static str, Vec<(Labels, f64)>> = HashMap::new();
        for mf in app.metrics.registry.gather() {
            let Some(name) = FAMILIES.iter().find(|f| **f == mf.name()) else {
                continue;
            };
            let out = fam.entry(name).or_default();
            for m in mf.get_metric() {
                let labels: Labels = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name().to_string(), l.value().to_string()))
                    .collect();
                match mf.get_field_type() {
                    MetricType::HISTOGRAM => {
                        let h = m.get_histogram();
                        for b in h.get_bucket() {
                            let mut l = labels.clone();
                            l.push(("le".into(), b.upper_bound().to_string()));
                            out.push((l, b.cumulative_count() as f64));
                        }
                        let mut l = labels.clone();
                        l.push(("le".into(), "+Inf".into()));
                        out.push((l, h.get_sample_count() as f64));
                    }
                    _ => out.push((labels, m.get_counter().get_value())),
                }
            }
        }
        Snap {
            at: Instant::now(),
            fam,
        }
    }

    fn series(&self, name: &str) -> &[(Labels, f64)] {
        self.fam.get(name).map_or(&[], Vec::as_slice)
    }

    fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.series(name)
            .iter()
            .filter(|(l, _)| matches(l, filter))
            .map(|(_, v)| v)
            .sum::<f64>()
            + 0.0 // an empty sum is -0.0
    }

    /// Sums grouped by one label's value.
    fn by(&self, name: &str, group: &str, filter: &[(&str, &str)]) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (l, v) in self.series(name) {
            if let (Some(g), true) = (label(l, group), matches(l, filter)) {
                *out.entry(g.to_string()).or_insert(0.0) += v;
            }
        }
        out
    }

    /// Cumulative bucket counts by upper bound, summed over matching series.
    fn buckets(&self, name: &str, filter: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for (l, v) in self.series(name) {
            if !matches(l, filter) {
                continue;
            }
            let le = match label(l, "le") {
                Some("+Inf") => f64::INFINITY,
                Some(x) => x.parse().unwrap_or(f64::INFINITY),
                None => continue,
            };
            let e = by_le.entry(le.to_bits()).or_insert((le, 0.0));
            e.1 += v;
        }
        let mut v: Vec<(f64, f64)> = by_le.into_values().collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    }
}

/// Per second between two snapshots.
fn rate(new: f64, old: f64, secs: f64) -> f64 {
    ((new - old).max(0.0) / secs.max(0.001) * 10.0).round() / 10.0
}

/// The `q` quantile in ms of what a histogram counted between two snapshots
/// (linear within a bucket, as Prometheus' `histogram_quantile`); `None`
/// when it counted nothing.
fn quantile_ms(new: &[(f64, f64)], old: &[(f64, f64)], q: f64) -> Option<f64> {
    let diff: Vec<(f64, f64)> = new
        .iter()
        .map(|(le, c)| {
            let before = old.iter().find(|(l, _)| l == le).map_or(0.0, |(_, c)| *c);
            (*le, (c - before).max(0.0))
        })
        .collect();
    let total = diff.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let target = q * total;
    let mut prev = (0.0, 0.0);
    for (le, c) in &diff {
        if *c >= target {
            if le.is_infinite() {
                return Some(prev.0 * 1000.0);
            }
            let within = if c - prev.1 > 0.0 {
                (target - prev.1) / (c - prev.1)
            } else {
                1.0
            };
            let ms = (prev.0 + (le - prev.0) * within) * 1000.0;
            return Some((ms * 100.0).round() / 100.0);
        }
        prev = (*le, *c);
    }
    None
}

fn percentiles(new: &Snap, old: &Snap, name: &str, filter: &[(&str, &str)]) -> Value {
    let (n, o) = (new.buckets(name, filter), old.buckets(name, filter));
    json!({
        "p50_ms": quantile_ms(&n, &o, 0.5),
        "p99_ms": quantile_ms(&n, &o, 0.99),
    })
}

/// What the sampler keeps between seconds.
struct State {
    /// Snapshots of the last [`WINDOW`] (about one a second), oldest first.
    snaps: VecDeque<Snap>,
    /// Per-second rates for the sparklines, by series name, oldest first.
    history: BTreeMap<String, VecDeque<f64>>,
    /// The newest point of each series.
    point: BTreeMap<String, f64>,
}

/// The console's live state, one per instance.
pub struct Live {
    state: Mutex<State>,
    /// The newest overview, for every open stream; `None` until someone watches.
    frames: watch::Sender<Option<Arc<str>>>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            state: Mutex::new(State {
                snaps: VecDeque::new(),
                history: BTreeMap::new(),
                point: BTreeMap::new(),
            }),
            frames: watch::channel(None).0,
        }
    }
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open streams get every overview from here.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<str>>> {
        self.frames.subscribe()
    }

    /// Take this second's snapshot and extend the sparklines.
    fn sample(&self, app: &App) {
        let snap = Snap::read(app);
        let mut st = self.lock();
        let mut point = BTreeMap::new();
        if let Some(prev) = st.snaps.back() {
            let secs = snap.at.duration_since(prev.at).as_secs_f64();
            for ch in app.router.channels() {
                let c = ch.as_str();
                point.insert(
                    format!("{c}.accepted"),
                    rate(
                        snap.sum("goniec_messages_accepted_total", &[("channel", c)]),
                        prev.sum("goniec_messages_accepted_total", &[("channel", c)]),
                        secs,
                    ),
                );
                for s in ["submitted", "delivered", "failed"] {
                    let f = [("channel", c), ("status", s)];
                    point.insert(
                        format!("{c}.{s}"),
                        rate(
                            snap.sum("goniec_status_transitions_total", &f),
                            prev.sum("goniec_status_transitions_total", &f),
                            secs,
                        ),
                    );
                }
            }
            for t in app.tenants.all() {
                let f = [("tenant", t.cfg.name.as_str())];
                point.insert(
                    format!("tenant.{}", t.cfg.name),
                    rate(
                        snap.sum("goniec_messages_accepted_total", &f),
                        prev.sum("goniec_messages_accepted_total", &f),
                        secs,
                    ),
                );
            }
            for c in &app.connectors {
                let f = [("connector", c.name()), ("outcome", "ok")];
                point.insert(
                    format!("connector.{}", c.name()),
                    rate(
                        snap.sum("goniec_connector_submits_total", &f),
                        prev.sum("goniec_connector_submits_total", &f),
                        secs,
                    ),
                );
            }
        }
        for (k, v) in &point {
            let h = st.history.entry(k.clone()).or_default();
            h.push_back(*v);
            while h.len() > HISTORY {
                h.pop_front();
            }
        }
        st.point = point;
        st.snaps.push_back(snap);
        while st
            .snaps
            .front()
            .is_some_and(|s| s.at.elapsed() > WINDOW + Duration::from_millis(500))
        {
            st.snaps.pop_front();
        }
    }
}

/// Sample every second; while a stream is open, build and publish the overview.
/// Also brings this instance's pauses up to date (they may be changed on any
/// instance) and prunes the submit times.
pub async fn run(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = app.stop_work.cancelled() => return,
        }
        n += 1;
        let live = &app.console.live;
        live.sample(&app);
        if let Ok(pauses) = crate::operator::refresh_pauses(&app).await {
            app.metrics.paused.reset();
            for p in pauses {
                app.metrics
                    .paused
                    .with_label_values(&[p.kind.as_str(), &p.name])
                    .set(1);
            }
        }
        if n.is_multiple_of(10) {
            app.console.submit_times.prune();
        }
        if live.frames.receiver_count() > 0 {
            let frame = overview(&app, false).await;
            live.frames.send_replace(Some(Arc::from(frame.to_string())));
        } else {
            live.frames.send_replace(None);
        }
    }
}

/// Everything the console shows, as JSON. `history`: include the sparklines'
/// whole history (the first frame of a stream, `GET /v1/admin/overview`);
/// otherwise only their newest point.
pub async fn overview(app: &App, history: bool) -> Value {
    let (rates, series) = {
        let st = app.console.live.lock();
        let series = if history {
            json!(st.history)
        } else {
            json!(st.point)
        };
        (computed(app, &st), series)
    };
    let mut v = rates;
    v["series"] = series;
    v["history"] = history.into();
    v["at"] = format_ms(now_ms()).into();
    v["instance"] = app.consumer.clone().into();
    v["store"] = json!({"backend": app.store.backend(), "up": app.flags.store_up()});
    v["lanes"] = lanes(app);
    let (held, dead, campaigns, pauses, audit) = tokio::join!(
        held(app),
        dead_letters(app),
        campaigns(app),
        crate::operator::refresh_pauses(app),
        crate::operator::audit_log(app, LIST),
    );
    v["held"] = held;
    v["dead_letters"] = dead;
    v["campaigns"] = campaigns;
    v["pauses"] = json!(pauses.unwrap_or_default());
    v["audit"] = json!(audit.unwrap_or_default());
    v
}

/// Rates, latencies and states from the snapshots and the connectors.
fn computed(app: &App, st: &State) -> Value {
    // Before the sampler's second snapshot (just after start) the rates are 0,
    // but the connectors, their binds and the tenants are all there.
    let empty = Snap {
        at: Instant::now(),
        fam: HashMap::new(),
    };
    let new = st.snaps.back().unwrap_or(&empty);
    let prev = st.snaps.iter().rev().nth(1).unwrap_or(new);
    let old = st.snaps.front().unwrap_or(new);
    let secs = new.at.duration_since(prev.at).as_secs_f64();
    let r = |name: &str, f: &[(&str, &str)]| rate(new.sum(name, f), prev.sum(name, f), secs);
    let channels: Vec<Value> = app
        .router
        .channels()
        .into_iter()
        .map(|ch| {
            let c = ch.as_str();
            let t = |s: &str| r("goniec_status_transitions_total", &[("channel", c), ("status", s)]);
            json!({
                "channel": c,
                "accepted": r("goniec_messages_accepted_total", &[("channel", c)]),
                "submitted": t("submitted"),
                "delivered": t("delivered"),
                "failed": t("failed") + t("undeliverable") + t("expired") + t("rejected"),
                "accepted_to_submitted": percentiles(new, old, "goniec_stage_duration_seconds", &[("stage", "accepted_submitted"), ("channel", c)]),
                "submitted_to_receipt": percentiles(new, old, "goniec_stage_duration_seconds", &[("stage", "submitted_receipt"), ("channel", c)]),
            })
        })
        .collect();
    let connectors: Vec<Value> = app
        .connectors
        .iter()
        .map(|c| {
            let n = c.name();
            let f = [("connector", n)];
            let receipts = new.sum("goniec_receipts_total", &f);
            let unknown = new.sum("goniec_receipts_total", &[("connector", n), ("state", "unknown_id")]);
            let ok_total = new.sum("goniec_connector_submits_total", &[("connector", n), ("outcome", "ok")]);
            let no_receipt = new.sum("goniec_no_receipt_total", &f);
            let health = c.health();
            json!({
                "name": n,
                "channels": c.channels().iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                "up": health.is_up(),
                "health": match &health {
                    goniec_connectors::Health::Up => "up".to_string(),
                    goniec_connectors::Health::Degraded(r) => format!("degraded: {r}"),
                    goniec_connectors::Health::Down(r) => format!("down: {r}"),
                },
                "paused": app.paused.connector(n),
                "submits": new.by("goniec_connector_submits_total", "outcome", &f)
                    .keys()
                    .map(|o| (o.clone(), json!(r("goniec_connector_submits_total", &[("connector", n), ("outcome", o)]))))
                    .collect::<serde_json::Map<_, _>>(),
                "receipts": {
                    "matched": receipts - unknown,
                    "unmatched": unknown,
                    "early": new.sum("goniec_receipts_early_total", &f),
                    "per_second": r("goniec_receipts_total", &f),
                    "unmatched_share_recent": app.metrics.receipts_unmatched_ratio.with_label_values(&[n]).get(),
                },
                "no_receipt": no_receipt,
                "no_receipt_share": if ok_total > 0.0 { no_receipt / ok_total } else { 0.0 },
                "binds": c.binds(),
            })
        })
        .collect();
    let tenants: Vec<Value> = app
        .tenants
        .all()
        .map(|t| {
            let n = t.cfg.name.as_str();
            let f = [("tenant", n)];
            let reasons: BTreeMap<String, f64> = new
                .by("goniec_antifraud_reasons_total", "reason", &f)
                .into_iter()
                .map(|(k, v)| {
                    let before = old.sum("goniec_antifraud_reasons_total", &[("tenant", n), ("reason", &k)]);
                    (k, (v - before).max(0.0))
                })
                .filter(|(_, v)| *v > 0.0)
                .collect();
            let posts_ok = r("goniec_webhook_posts_total", &[("tenant", n), ("result", "ok")]);
            let posts_failed = r("goniec_webhook_posts_total", &[("tenant", n), ("result", "failed")]);
            let window_ok = new.sum("goniec_webhook_posts_total", &[("tenant", n), ("result", "ok")])
                - old.sum("goniec_webhook_posts_total", &[("tenant", n), ("result", "ok")]);
            let window_all = new.sum("goniec_webhook_posts_total", &f) - old.sum("goniec_webhook_posts_total", &f);
            json!({
                "name": n,
                "paused": app.paused.tenant(n),
                "accepted": r("goniec_messages_accepted_total", &f),
                "refused": r("goniec_messages_refused_total", &f),
                "limit": t.cfg.rate.as_ref().map(|r| r.per_second()),
                "antifraud": {
                    "decisions": new.by("goniec_antifraud_verdicts_total", "decision", &f)
                        .keys()
                        .map(|d| (d.clone(), json!(r("goniec_antifraud_verdicts_total", &[("tenant", n), ("decision", d)]))))
                        .collect::<serde_json::Map<_, _>>(),
                    "reasons_last_minute": reasons,
                },
                "callbacks": {
                    "ok": posts_ok,
                    "failed": posts_failed,
                    "success_last_minute": if window_all > 0.0 { Some(window_ok / window_all) } else { None },
                    "latency": percentiles(new, old, "goniec_webhook_post_duration_seconds", &f),
                    "dead_letters": new.sum("goniec_webhook_dead_letters_total", &f),
                },
            })
        })
        .collect();
    json!({"channels": channels, "connectors": connectors, "tenants": tenants})
}

/// Queue gauges as the stats loop last read them (every 2 s).
fn lanes(app: &App) -> Value {
    let m = &app.metrics;
    Lane::ALL
        .iter()
        .map(|l| {
            let k = [l.as_str()];
            json!({
                "lane": l.as_str(),
                "depth": m.queue_depth.with_label_values(&k).get(),
                "oldest_age_s": m.queue_oldest_age.with_label_values(&k).get(),
                "scheduled": m.queue_scheduled.with_label_values(&k).get(),
                "due_soon": m.queue_due_soon.with_label_values(&k).get(),
                "dead": m.queue_dead.with_label_values(&k).get(),
            })
        })
        .collect()
}

async fn held(app: &App) -> Value {
    let count = app.store.held_count().await.unwrap_or(0);
    let entries = match crate::http::admin::held_views(app, LIST).await {
        Ok(v) => json!(v),
        Err(_) => json!([]),
    };
    json!({"count": count, "entries": entries})
}

async fn dead_letters(app: &App) -> Value {
    let mut out = serde_json::Map::new();
    for lane in Lane::ALL {
        if app
            .metrics
            .queue_dead
            .with_label_values(&[lane.as_str()])
            .get()
            == 0
        {
            out.insert(lane.as_str().into(), json!([]));
            continue;
        }
        let list = crate::http::admin::dead_letter_views(app, lane, LIST)
            .await
            .unwrap_or_default();
        out.insert(lane.as_str().into(), json!(list));
    }
    Value::Object(out)
}

async fn campaigns(app: &App) -> Value {
    let Ok(active) = app.store.campaigns().active_campaigns().await else {
        return json!([]);
    };
    let mut out = Vec::new();
    for (tenant, id) in active.into_iter().take(LIST) {
        let Some(t) = app.tenants.by_name(&tenant) else {
            continue;
        };
        if let Ok(p) = crate::http::campaigns::progress(app, t, &id).await {
            out.push(json!({
                "tenant": tenant,
                "id": id,
                "name": p["name"],
                "state": p["state"],
                "rows": p["audience"]["rows"],
                "pending": p["pending"],
                "total": p["total"],
                "waiting": p["waiting"],
                "speed_per_second": p["speed_per_second"],
                "eta_seconds": p["eta_seconds"],
            }));
        }
    }
    json!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_window_between_two_snapshots() {
        // Before: 10 fast ones. After: 10 more fast, 10 slow.
        let old = vec![
            (0.001, 10.0),
            (0.01, 10.0),
            (0.1, 10.0),
            (f64::INFINITY, 10.0),
        ];
        let new = vec![
            (0.001, 20.0),
            (0.01, 20.0),
            (0.1, 30.0),
            (f64::INFINITY, 30.0),
        ];
        let p50 = quantile_ms(&new, &old, 0.5).unwrap();
        assert!((0.0..=1.0).contains(&p50), "{p50}");
        let p99 = quantile_ms(&new, &old, 0.99).unwrap();
        assert!((10.0..=100.0).contains(&p99), "{p99}");
        assert_eq!(quantile_ms(&old, &old, 0.5), None, "nothing in the window");
    }

    #[test]
    fn rates_are_per_second_and_never_negative() {
        assert_eq!(rate(30.0, 10.0, 2.0), 10.0);
        assert_eq!(rate(5.0, 10.0, 1.0), 0.0);
    }
}
