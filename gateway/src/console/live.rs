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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::app::App;
use crate::model::{format_ms, now_ms};
use crate::store::Lane;

use super::snapshots::{percentiles, rate, Snap, State};

/// Entries of each list (held messages, dead letters per lane, the admin log)
/// the overview shows.
const LIST: usize = 50;

/// The sparklines' newest values: per-second rates between this snapshot and
/// the previous one (none for the first).
fn points(app: &App, snap: &Snap, prev: Option<&Snap>) -> BTreeMap<String, f64> {
    let mut point = BTreeMap::new();
    let Some(prev) = prev else {
        return point;
    };
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
    point
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
        live.push(Snap::read(&app.metrics.registry), |new, prev| {
            points(&app, new, prev)
        });
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
        if live.watched() {
            let frame = overview(&app, false).await;
            live.publish(Some(Arc::from(frame.to_string())));
        } else {
            live.publish(None);
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
    let entries = match crate::operator::held_views(app, LIST).await {
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
        let list = crate::operator::dead_letter_views(app, lane, LIST)
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
