//! Every metric name, the log subscriber, and masking of personal data.
//!
//! Metric names carry the `goniec_` prefix, counters end in `_total` and durations
//! in `_seconds`. Labels are bounded: tenant and connector names come from config,
//! channel/status/outcome/reason from closed sets; never numbers or ids.

use prometheus::{
    exponential_buckets, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// All of the gateway's metrics, registered in one registry per [`crate::app::App`]
/// (no globals: two gateways can run in one process).
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Messages accepted, by tenant and channel.
    pub accepted: IntCounterVec,
    /// Messages refused at the API, by tenant, channel and reason code.
    pub refused: IntCounterVec,
    /// Anti-fraud verdicts by tenant and decision (`allow`, `hold`, `reject`).
    pub verdicts: IntCounterVec,
    /// Anti-fraud rules that fired, by tenant and reason code (`prefix_pumping` etc. alert).
    pub verdict_reasons: IntCounterVec,
    /// Replies from recipients by connector and outcome (`opt_out`, `forwarded`, `ignored`,
    /// `unknown_recipient`, `bad_sender`, `store_error`).
    pub inbound: IntCounterVec,
    /// RCS platform events by connector and kind (`delivered`, `read`, `is_typing`,
    /// `unsubscribe`, `user_message`, `replayed`, `other`).
    pub rcs_events: IntCounterVec,
    /// API requests by endpoint and HTTP status.
    pub http_requests: IntCounterVec,
    /// API latency by endpoint.
    pub http_duration: HistogramVec,
    /// Time per pipeline stage (`store_accept`, `queue_wait`, `submit`, `receipt`).
    pub stage_duration: HistogramVec,
    /// Status transitions applied, by channel and status.
    pub transitions: IntCounterVec,
    /// Connector submits by connector and outcome (`ok`, `throttled`, `transient`, `permanent`).
    pub submits: IntCounterVec,
    /// Leases taken over from a dead worker, by lane; each may be a duplicate submit.
    pub reclaimed: IntCounterVec,
    /// Jobs dead-lettered, by lane.
    pub dead_letters: IntCounterVec,
    /// Receipts by connector and state (`unknown_id` when nothing matched).
    pub receipts: IntCounterVec,
    /// Receipts whose id matched no message in any spelling tried, by connector.
    pub receipts_unmatched: IntCounterVec,
    /// Receipts that came before their message's submit was recorded (parked
    /// until it is), by connector.
    pub receipts_early: IntCounterVec,
    /// Receipts that matched only in another spelling than the declared one
    /// (decimal ↔ hex), by connector: `receipt_ids` is probably set wrong.
    pub receipt_ids_converted: IntCounterVec,
    /// Share of the connector's last [`MATCH_WINDOW`] receipts that matched no
    /// message (0..1), by connector.
    pub receipts_unmatched_ratio: prometheus::GaugeVec,
    /// `query_sm` asked about overdue receipts, by connector and outcome (`delivered`,
    /// `undeliverable`, `expired`, `rejected`, `pending`, `unknown`, `error`).
    pub receipt_queries: IntCounterVec,
    /// Messages expired with reason `no_receipt` (no receipt and no final answer to
    /// `query_sm` by validity + grace), by connector.
    pub no_receipt: IntCounterVec,
    /// How each connector's recent receipts matched, for `/readyz` and the gauge above.
    pub receipt_matching: std::sync::Arc<ReceiptMatching>,
    /// Customer callbacks by outcome (`ok`, `retry`, `dead`, `dropped`).
    pub webhooks: IntCounterVec,
    /// Callback POSTs (one per request, a batch counts once) by tenant and
    /// result (`ok`, `failed`).
    pub webhook_posts: IntCounterVec,
    /// Time per callback POST, by tenant.
    pub webhook_post_duration: HistogramVec,
    /// Callbacks dead-lettered after their last attempt, by tenant.
    pub webhook_dead: IntCounterVec,
    /// Store operations that failed, by operation.
    pub store_errors: IntCounterVec,
    /// Tracked links followed, by kind (`clicked` by a person, `prefetch`).
    pub link_clicks: IntCounterVec,
    /// Queue entries waiting or in flight, by lane.
    pub queue_depth: IntGaugeVec,
    /// Entries waiting for their time (send_at, retry backoff), by lane.
    pub queue_scheduled: IntGaugeVec,
    /// Scheduled entries due within 15 minutes, by lane.
    pub queue_due_soon: IntGaugeVec,
    /// 1 while an operator has paused a tenant or connector, by kind and name.
    pub paused: IntGaugeVec,
    /// Entries in the dead-letter queue, by lane.
    pub queue_dead: IntGaugeVec,
    /// Age of the oldest waiting or in-flight entry, by lane.
    pub queue_oldest_age: prometheus::GaugeVec,
    /// 1 while the store answers.
    pub store_up: prometheus::IntGauge,
    /// Messages held by anti-fraud, waiting for an operator.
    pub held: prometheus::IntGauge,
    /// 1 while a connector is up, by connector.
    pub connector_up: IntGaugeVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    // 100 µs .. ~100 s.
    let buckets = exponential_buckets(0.0001, 2.5, 16).expect("valid buckets");
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let queue_oldest_age = prometheus::GaugeVec::new(
            Opts::new(
                "goniec_queue_oldest_age_seconds",
                "Age of the oldest queued entry",
            ),
            &["lane"],
        )
        .expect("valid metric");
        r.register(Box::new(queue_oldest_age.clone()))
            .expect("unique metric");
        let store_up = prometheus::IntGauge::new("goniec_store_up", "1 while the store answers")
            .expect("valid metric");
        r.register(Box::new(store_up.clone()))
            .expect("unique metric");
        let receipts_unmatched_ratio = prometheus::GaugeVec::new(
            Opts::new(
                "goniec_receipts_unmatched_ratio",
                "Share of the connector's recent receipts that matched no message",
            ),
            &["connector"],
        )
        .expect("valid metric");
        r.register(Box::new(receipts_unmatched_ratio.clone()))
            .expect("unique metric");
        let held = prometheus::IntGauge::new(
            "goniec_held_messages",
            "Messages held by anti-fraud for an operator (GET /v1/admin/held)",
        )
        .expect("valid metric");
        r.register(Box::new(held.clone())).expect("unique metric");
        Metrics {
            accepted: counter(
                &r,
                "goniec_messages_accepted_total",
                "Messages accepted",
                &["tenant", "channel"],
            ),
            refused: counter(
                &r,
                "goniec_messages_refused_total",
                "Messages refused at the API",
                &["tenant", "channel", "reason"],
            ),
            verdicts: counter(
                &r,
                "goniec_antifraud_verdicts_total",
                "Anti-fraud verdicts",
                &["tenant", "decision"],
            ),
            verdict_reasons: counter(
                &r,
                "goniec_antifraud_reasons_total",
                "Anti-fraud rules that fired",
                &["tenant", "reason"],
            ),
            inbound: counter(
                &r,
                "goniec_inbound_messages_total",
                "Replies from recipients",
                &["connector", "outcome"],
            ),
            rcs_events: counter(
                &r,
                "goniec_rcs_events_total",
                "RCS platform events received",
                &["connector", "kind"],
            ),
            http_requests: counter(
                &r,
                "goniec_http_requests_total",
                "API requests",
                &["endpoint", "code"],
            ),
            http_duration: histogram(
                &r,
                "goniec_http_request_duration_seconds",
                "API latency",
                &["endpoint"],
            ),
            stage_duration: histogram(
                &r,
                "goniec_stage_duration_seconds",
                "Time per pipeline stage",
                &["stage", "channel"],
            ),
            transitions: counter(
                &r,
                "goniec_status_transitions_total",
                "Status transitions applied",
                &["channel", "status"],
            ),
            submits: counter(
                &r,
                "goniec_connector_submits_total",
                "Connector submits",
                &["connector", "outcome"],
            ),
            reclaimed: counter(
                &r,
                "goniec_queue_reclaimed_total",
                "Leases taken over from a dead worker (possible duplicates)",
                &["lane"],
            ),
            dead_letters: counter(
                &r,
                "goniec_dead_letters_total",
                "Jobs moved to the dead-letter queue",
                &["lane"],
            ),
            receipts: counter(
                &r,
                "goniec_receipts_total",
                "Receipts received",
                &["connector", "state"],
            ),
            receipts_unmatched: counter(
                &r,
                "goniec_receipts_unmatched_total",
                "Receipts whose id matched no message in any spelling tried",
                &["connector"],
            ),
            receipts_early: counter(
                &r,
                "goniec_receipts_early_total",
                "Receipts that came before their message's submit was recorded",
                &["connector"],
            ),
            receipt_ids_converted: counter(
                &r,
                "goniec_receipt_ids_converted_total",
                "Receipts matched only after converting their id (decimal <-> hex)",
                &["connector"],
            ),
            receipt_queries: counter(
                &r,
                "goniec_receipt_queries_total",
                "query_sm asked about messages whose receipt is overdue, by answer",
                &["connector", "outcome"],
            ),
            no_receipt: counter(
                &r,
                "goniec_no_receipt_total",
                "Messages expired with reason no_receipt",
                &["connector"],
            ),
            receipts_unmatched_ratio,
            receipt_matching: Default::default(),
            webhooks: counter(
                &r,
                "goniec_webhook_deliveries_total",
                "Customer callbacks",
                &["outcome"],
            ),
            webhook_posts: counter(
                &r,
                "goniec_webhook_posts_total",
                "Callback POSTs by tenant and result (ok, failed)",
                &["tenant", "result"],
            ),
            webhook_post_duration: histogram(
                &r,
                "goniec_webhook_post_duration_seconds",
                "Time per callback POST",
                &["tenant"],
            ),
            webhook_dead: counter(
                &r,
                "goniec_webhook_dead_letters_total",
                "Callbacks dead-lettered after their last attempt",
                &["tenant"],
            ),
            store_errors: counter(
                &r,
                "goniec_store_errors_total",
                "Failed store operations",
                &["op"],
            ),
            link_clicks: counter(
                &r,
                "goniec_link_clicks_total",
                "Tracked links followed, by kind: clicked (a person) or prefetch (previews, scanners)",
                &["kind"],
            ),
            queue_depth: gauge(
                &r,
                "goniec_queue_depth",
                "Entries waiting or in flight",
                &["lane"],
            ),
            queue_scheduled: gauge(
                &r,
                "goniec_queue_scheduled",
                "Entries waiting for their time",
                &["lane"],
            ),
            queue_due_soon: gauge(
                &r,
                "goniec_queue_due_soon",
                "Scheduled entries due within 15 minutes",
                &["lane"],
            ),
            paused: gauge(
                &r,
                "goniec_paused",
                "1 while an operator has paused a tenant or connector",
                &["kind", "name"],
            ),
            queue_dead: gauge(
                &r,
                "goniec_queue_dead_letters",
                "Entries in the dead-letter queue",
                &["lane"],
            ),
            connector_up: gauge(
                &r,
                "goniec_connector_up",
                "1 while a connector is up",
                &["connector"],
            ),
            queue_oldest_age,
            store_up,
            held,
            registry: r,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if enc.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Receipts a connector's match window holds.
pub const MATCH_WINDOW: usize = 200;
/// Receipts in the window before its shares mean anything.
pub const MATCH_MIN_SAMPLES: usize = 20;

/// How one receipt found its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOutcome {
    /// By its id in the declared form (`receipt_ids`).
    Declared,
    /// Only by another spelling (decimal ↔ hex).
    Converted,
    /// Not at all.
    Unmatched,
}

/// Per connector, how its last [`MATCH_WINDOW`] receipts matched: a connector whose
/// receipts mostly match nothing (its receipt ids are in another format, or another
/// bind with the same account takes our receipts and we get theirs) is reported in
/// `/readyz`; and while the declared id form mostly works, other spellings are not
/// tried (see [`ReceiptMatching::conversions_allowed`]). A mutex held for a few
/// counter updates, never across an await.
#[derive(Debug, Default)]
pub struct ReceiptMatching {
    windows: std::sync::Mutex<std::collections::HashMap<String, MatchWindow>>,
}

#[derive(Debug, Default)]
struct MatchWindow {
    last: std::collections::VecDeque<MatchOutcome>,
    declared: usize,
    converted: usize,
    unmatched: usize,
}

impl MatchWindow {
    fn count(&mut self, o: MatchOutcome, by: isize) {
        let n = match o {
            MatchOutcome::Declared => &mut self.declared,
            MatchOutcome::Converted => &mut self.converted,
            MatchOutcome::Unmatched => &mut self.unmatched,
        };
        *n = n.saturating_add_signed(by);
    }
}

impl ReceiptMatching {
    fn windows(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, MatchWindow>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record one receipt's outcome; returns the window's unmatched share.
    pub fn record(&self, connector: &str, outcome: MatchOutcome) -> f64 {
        let mut g = self.windows();
        let w = match g.get_mut(connector) {
            Some(w) => w,
            None => g.entry(connector.to_owned()).or_default(),
        };
        w.last.push_back(outcome);
        w.count(outcome, 1);
        if w.last.len() > MATCH_WINDOW {
            if let Some(old) = w.last.pop_front() {
                w.count(old, -1);
            }
        }
        w.unmatched as f64 / w.last.len() as f64
    }

    /// Whether a receipt that matched nothing in the declared form may be matched in
    /// another spelling: not while most of the connector's recent receipts (at least
    /// [`MATCH_MIN_SAMPLES`] of them) match in the declared form. Then the declared
    /// form is right and a receipt it misses belongs to no message of ours (another
    /// bind's, with a counter of its own); converting its id could match one of ours
    /// that happens to be spelt that way. When the declared form mostly fails the
    /// SMSC writes receipt ids differently, and the other spellings are tried.
    pub fn conversions_allowed(&self, connector: &str) -> bool {
        match self.windows().get(connector) {
            Some(w) if w.last.len() >= MATCH_MIN_SAMPLES => w.declared * 2 < w.last.len(),
            _ => true,
        }
    }

    /// Connectors whose receipts mostly match nothing (over half of at least
    /// [`MATCH_MIN_SAMPLES`] recent ones), each with a sentence for `/readyz`.
    pub fn unhealthy(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .windows()
            .iter()
            .filter(|(_, w)| w.last.len() >= MATCH_MIN_SAMPLES && w.unmatched * 2 > w.last.len())
            .map(|(name, w)| {
                (
                    name.clone(),
                    format!(
                        "{} of the last {} receipts matched no message (receipt ids in another format, or another bind with the same account taking our receipts?)",
                        w.unmatched,
                        w.last.len()
                    ),
                )
            })
            .collect();
        out.sort();
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Install the global tracing subscriber (text or JSON), filtered by `RUST_LOG` or the config.
pub fn init_logging(cfg: &goniec_config::Log) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: a log file, a pipe or a journal
    // gets plain text (and NO_COLOR is honoured, https://no-color.org).
    use std::io::IsTerminal;
    let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_target(false);
    let _ = match cfg.format {
        goniec_config::LogFormat::Json => builder.json().try_init(),
        goniec_config::LogFormat::Text => builder.try_init(),
    };
}

pub use goniec_core::mask::mask;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_matching_window_gates_conversions_and_reports_unmatched() {
        let m = ReceiptMatching::default();
        // Nothing known yet: other spellings may be tried, nothing is unhealthy.
        assert!(m.conversions_allowed("a"));
        for _ in 0..MATCH_MIN_SAMPLES - 1 {
            m.record("a", MatchOutcome::Unmatched);
        }
        assert!(m.unhealthy().is_empty(), "too few receipts to judge");
        assert_eq!(m.record("a", MatchOutcome::Unmatched), 1.0);
        let bad = m.unhealthy();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, "a");
        assert!(
            bad[0].1.starts_with("20 of the last 20 receipts"),
            "{bad:?}"
        );
        // The declared form works for most receipts: no guessing for the others.
        for _ in 0..MATCH_WINDOW {
            m.record("b", MatchOutcome::Declared);
        }
        m.record("b", MatchOutcome::Unmatched);
        assert!(!m.conversions_allowed("b"));
        assert!(m.conversions_allowed("a"));
        // The window slides: enough matches push the unmatched ones out.
        for _ in 0..MATCH_WINDOW {
            m.record("a", MatchOutcome::Converted);
        }
        assert!(m.unhealthy().is_empty());
        assert!(
            m.conversions_allowed("a"),
            "converted ones are not declared ones"
        );
        for _ in 0..MATCH_WINDOW / 2 + 1 {
            m.record("a", MatchOutcome::Declared);
        }
        assert!(!m.conversions_allowed("a"));
        assert_eq!(m.record("a", MatchOutcome::Declared), 0.0);
    }

    #[test]
    fn metrics_render_with_prefix() {
        let m = Metrics::new();
        m.accepted.with_label_values(&["acme", "sms"]).inc();
        let text = m.render();
        assert!(text.contains("goniec_messages_accepted_total{channel=\"sms\",tenant=\"acme\"} 1"));
    }
}
