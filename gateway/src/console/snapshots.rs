//! The console's view of this instance's metrics: once a second the
//! families it shows are read from the registry into a [`Snap`]; rates are
//! differences between snapshots, latency percentiles come from histogram
//! buckets over the last minute ([`quantile_ms`]), and five minutes of
//! per-second values are kept for the sparklines. Kept in [`crate::app::App`],
//! filled by [`super::live`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::proto::MetricType;
use serde_json::{json, Value};
use tokio::sync::watch;

/// Seconds of per-second history kept for the sparklines.
pub const HISTORY: usize = 300;
/// The window of the latency percentiles and the anti-fraud reason counts.
const WINDOW: Duration = Duration::from_secs(60);
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
pub struct Snap {
    pub(super) at: Instant,
    pub(super) fam: HashMap<&'static str, Vec<(Labels, f64)>>,
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
    pub fn read(registry: &prometheus::Registry) -> Snap {
        let mut fam: HashMap<&'static str, Vec<(Labels, f64)>> = HashMap::new();
        for mf in registry.gather() {
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

    pub(super) fn series(&self, name: &str) -> &[(Labels, f64)] {
        self.fam.get(name).map_or(&[], Vec::as_slice)
    }

    pub(super) fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.series(name)
            .iter()
            .filter(|(l, _)| matches(l, filter))
            .map(|(_, v)| v)
            .sum::<f64>()
            + 0.0 // an empty sum is -0.0
    }

    /// Sums grouped by one label's value.
    pub(super) fn by(
        &self,
        name: &str,
        group: &str,
        filter: &[(&str, &str)],
    ) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (l, v) in self.series(name) {
            if let (Some(g), true) = (label(l, group), matches(l, filter)) {
                *out.entry(g.to_string()).or_insert(0.0) += v;
            }
        }
        out
    }

    /// Cumulative bucket counts by upper bound, summed over matching series.
    pub(super) fn buckets(&self, name: &str, filter: &[(&str, &str)]) -> Vec<(f64, f64)> {
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
pub(super) fn rate(new: f64, old: f64, secs: f64) -> f64 {
    ((new - old).max(0.0) / secs.max(0.001) * 10.0).round() / 10.0
}

/// The `q` quantile in ms of what a histogram counted between two snapshots
/// (linear within a bucket, as Prometheus' `histogram_quantile`); `None`
/// when it counted nothing.
pub(super) fn quantile_ms(new: &[(f64, f64)], old: &[(f64, f64)], q: f64) -> Option<f64> {
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

pub(super) fn percentiles(new: &Snap, old: &Snap, name: &str, filter: &[(&str, &str)]) -> Value {
    let (n, o) = (new.buckets(name, filter), old.buckets(name, filter));
    json!({
        "p50_ms": quantile_ms(&n, &o, 0.5),
        "p99_ms": quantile_ms(&n, &o, 0.99),
    })
}

/// What the sampler keeps between seconds.
pub(super) struct State {
    /// Snapshots of the last [`WINDOW`] (about one a second), oldest first.
    pub(super) snaps: VecDeque<Snap>,
    /// Per-second rates for the sparklines, by series name, oldest first.
    pub(super) history: BTreeMap<String, VecDeque<f64>>,
    /// The newest point of each series.
    pub(super) point: BTreeMap<String, f64>,
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
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open streams get every overview from here.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<str>>> {
        self.frames.subscribe()
    }

    /// Keep this second's snapshot, and `point(new, previous)` (the
    /// sparklines' newest values) in their history.
    pub fn push(
        &self,
        snap: Snap,
        point: impl FnOnce(&Snap, Option<&Snap>) -> BTreeMap<String, f64>,
    ) {
        let mut st = self.lock();
        let point = point(&snap, st.snaps.back());
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

    /// Whether any stream is open.
    pub fn watched(&self) -> bool {
        self.frames.receiver_count() > 0
    }

    /// Hand every open stream this overview (`None`: nobody watches).
    pub fn publish(&self, frame: Option<Arc<str>>) {
        self.frames.send_replace(frame);
    }
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
