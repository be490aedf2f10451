//! Reports from a campaign's counters (kept as statuses change, never a scan
//! of messages): per step and channel, per day, and over channels.
//!
//! Counter fields (see `goniec_store::campaigns`): `s<k>:<channel>:<what>`
//! totals, `…:d<day>` per UTC day, `…:t<bucket>` time histograms,
//! `ev:<event>` recipient events and `stop:<why>` stopped recipients.

use std::collections::BTreeMap;

use goniec_store::campaigns::bucket_secs;
use serde::Serialize;

/// One step's figures.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Figures {
    pub accepted: i64,
    pub rejected: i64,
    pub skipped: i64,
    pub sent: i64,
    pub delivered: i64,
    pub undeliverable: i64,
    pub expired: i64,
    pub failed: i64,
    pub read: i64,
    pub clicked: i64,
    pub delivery_rate: Option<f64>,
    pub click_rate: Option<f64>,
    pub median_seconds_to_delivery: Option<f64>,
    pub median_seconds_to_click: Option<f64>,
}

impl Figures {
    fn add(&mut self, what: &str, n: i64) {
        match what {
            "accepted" => self.accepted += n,
            "rejected" => self.rejected += n,
            "skipped" | "no_address" | "invalid" => self.skipped += n,
            "submitted" => self.sent += n,
            "delivered" => self.delivered += n,
            "undeliverable" => self.undeliverable += n,
            "expired" => self.expired += n,
            "failed" => self.failed += n,
            "read" => self.read += n,
            "clicked" => self.clicked += n,
            _ => {}
        }
    }

    fn rates(&mut self) {
        let ratio = |a: i64, b: i64| (b > 0).then(|| (a as f64 / b as f64 * 1e4).round() / 1e4);
        self.delivery_rate = ratio(self.delivered, self.sent);
        // Of those delivered; e-mail has no delivery receipt: of those sent.
        let base = if self.delivered > 0 {
            self.delivered
        } else {
            self.sent
        };
        self.click_rate = ratio(self.clicked, base);
    }
}

/// The median of a histogram of `bucket → count`.
fn median(h: &BTreeMap<u32, i64>) -> Option<f64> {
    let total: i64 = h.values().sum();
    if total == 0 {
        return None;
    }
    let mut seen = 0;
    for (b, n) in h {
        seen += n;
        if seen * 2 >= total {
            return Some((bucket_secs(*b) * 10.0).round() / 10.0);
        }
    }
    None
}

/// A campaign report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `s<k>:<channel>` → figures.
    pub steps: BTreeMap<String, Figures>,
    pub channels: BTreeMap<String, Figures>,
    pub total: Figures,
    pub paid: i64,
    pub replied: i64,
    pub opted_out: i64,
    pub median_seconds_to_payment: Option<f64>,
    /// Recipients stopped, by reason.
    pub stopped: BTreeMap<String, i64>,
    pub days: Vec<DayRow>,
}

/// One day's count of one thing of one step.
#[derive(Debug, Serialize, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DayRow {
    pub date: String,
    pub step: String,
    pub channel: String,
    pub what: String,
    pub count: i64,
}

fn date_of(day: i64) -> String {
    jiff::Timestamp::from_second(day * 86_400)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Build a report; `days` limits the per-day rows to days in `[from, to]`
/// (days since the epoch), all when `None`.
pub fn build(counters: &BTreeMap<String, i64>, days: Option<(i64, i64)>) -> Report {
    let mut steps: BTreeMap<String, Figures> = BTreeMap::new();
    let mut times: BTreeMap<(String, String), BTreeMap<u32, i64>> = BTreeMap::new();
    let mut rows = Vec::new();
    let mut r = Report {
        steps: BTreeMap::new(),
        channels: BTreeMap::new(),
        total: Figures::default(),
        paid: 0,
        replied: 0,
        opted_out: 0,
        median_seconds_to_payment: None,
        stopped: BTreeMap::new(),
        days: Vec::new(),
    };
    let mut paid_times = BTreeMap::new();
    for (k, &n) in counters {
        if let Some(why) = k.strip_prefix("stop:") {
            *r.stopped.entry(why.to_string()).or_insert(0) += n;
            continue;
        }
        if let Some(ev) = k.strip_prefix("ev:") {
            match ev.split_once(':') {
                None => match ev {
                    "paid" => r.paid += n,
                    "replied" => r.replied += n,
                    "opted_out" => r.opted_out += n,
                    _ => {}
                },
                Some(("paid", rest)) => {
                    if let Some(b) = rest.strip_prefix('t').and_then(|b| b.parse().ok()) {
                        *paid_times.entry(b).or_insert(0) += n;
                    }
                }
                _ => {}
            }
            continue;
        }
        let parts: Vec<&str> = k.split(':').collect();
        let (step, ch, what) = match parts.as_slice() {
            [s, c, w, ..] if s.starts_with('s') => (*s, *c, *w),
            _ => continue,
        };
        let key = format!("{step}:{ch}");
        match parts.get(3) {
            None => steps.entry(key).or_default().add(what, n),
            Some(extra) if extra.starts_with('d') => {
                if let Ok(day) = extra[1..].parse::<i64>() {
                    if days.is_none_or(|(a, b)| (a..=b).contains(&day)) {
                        rows.push(DayRow {
                            date: date_of(day),
                            step: step.to_string(),
                            channel: ch.to_string(),
                            what: what.to_string(),
                            count: n,
                        });
                    }
                }
            }
            Some(extra) if extra.starts_with('t') => {
                if let Ok(b) = extra[1..].parse::<u32>() {
                    *times
                        .entry((key, what.to_string()))
                        .or_default()
                        .entry(b)
                        .or_insert(0) += n;
                }
            }
            _ => {}
        }
    }
    let mut by_channel_times: BTreeMap<(String, String), BTreeMap<u32, i64>> = BTreeMap::new();
    let mut all_times: BTreeMap<String, BTreeMap<u32, i64>> = BTreeMap::new();
    for ((key, what), h) in &times {
        let ch = key.split(':').nth(1).unwrap_or_default().to_string();
        for (b, n) in h {
            *by_channel_times
                .entry((ch.clone(), what.clone()))
                .or_default()
                .entry(*b)
                .or_insert(0) += n;
            *all_times
                .entry(what.clone())
                .or_default()
                .entry(*b)
                .or_insert(0) += n;
        }
    }
    for (key, f) in &mut steps {
        f.median_seconds_to_delivery = times
            .get(&(key.clone(), "delivered".into()))
            .and_then(median);
        f.median_seconds_to_click = times.get(&(key.clone(), "clicked".into())).and_then(median);
        f.rates();
        let ch = key.split(':').nth(1).unwrap_or_default().to_string();
        let c = r.channels.entry(ch).or_default();
        merge(c, f);
        merge(&mut r.total, f);
    }
    for (ch, f) in &mut r.channels {
        f.median_seconds_to_delivery = by_channel_times
            .get(&(ch.clone(), "delivered".into()))
            .and_then(median);
        f.median_seconds_to_click = by_channel_times
            .get(&(ch.clone(), "clicked".into()))
            .and_then(median);
        f.rates();
    }
    r.total.median_seconds_to_delivery = all_times.get("delivered").and_then(median);
    r.total.median_seconds_to_click = all_times.get("clicked").and_then(median);
    r.total.rates();
    r.median_seconds_to_payment = median(&paid_times);
    r.steps = steps;
    rows.sort();
    r.days = rows;
    r
}

fn merge(into: &mut Figures, f: &Figures) {
    into.accepted += f.accepted;
    into.rejected += f.rejected;
    into.skipped += f.skipped;
    into.sent += f.sent;
    into.delivered += f.delivered;
    into.undeliverable += f.undeliverable;
    into.expired += f.expired;
    into.failed += f.failed;
    into.read += f.read;
    into.clicked += f.clicked;
}

#[cfg(test)]
mod tests {
    use super::*;
    use goniec_store::campaigns::time_bucket;

    #[test]
    fn figures_rates_medians_and_days() {
        let b = |s: f64| time_bucket(s);
        let c: BTreeMap<String, i64> = [
            ("s0:sms:accepted".to_string(), 10),
            ("s0:sms:submitted".into(), 10),
            ("s0:sms:delivered".into(), 8),
            ("s0:sms:undeliverable".into(), 2),
            ("s0:sms:clicked".into(), 4),
            (format!("s0:sms:delivered:t{}", b(2.0)), 5),
            (format!("s0:sms:delivered:t{}", b(60.0)), 3),
            ("s0:sms:delivered:d20000".into(), 8),
            ("s1:email:submitted".into(), 2),
            ("s1:email:delivered".into(), 2),
            ("ev:paid".into(), 3),
            (format!("ev:paid:t{}", b(3600.0)), 3),
            ("stop:paid".into(), 3),
        ]
        .into_iter()
        .collect();
        let r = build(&c, None);
        let s0 = &r.steps["s0:sms"];
        assert_eq!((s0.sent, s0.delivered, s0.clicked), (10, 8, 4));
        assert_eq!(s0.delivery_rate, Some(0.8));
        assert_eq!(s0.click_rate, Some(0.5));
        let m = s0.median_seconds_to_delivery.unwrap();
        assert!((1.5..3.0).contains(&m), "{m}");
        assert_eq!(r.channels["email"].delivered, 2);
        assert_eq!(r.total.sent, 12);
        assert_eq!(r.paid, 3);
        let p = r.median_seconds_to_payment.unwrap();
        assert!((3000.0..4300.0).contains(&p), "{p}");
        assert_eq!(r.stopped["paid"], 3);
        assert_eq!(r.days.len(), 1);
        assert_eq!(r.days[0].date, "2024-10-04");
        assert!(build(&c, Some((0, 10))).days.is_empty());
    }
}
