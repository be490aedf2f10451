//! The one-line JSON result. Kept pure (numbers in, struct out) so the rates
//! and percentiles are unit-tested without a server.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::send::Counts;

/// Last stdout line of a run; scripts parse it, so field names are stable.
#[derive(Debug, Serialize, PartialEq)]
pub struct Summary {
    pub sent: u64,
    pub accepted: u64,
    pub errors: u64,
    pub throttled: u64,
    pub accepted_per_s: f64,
    #[serde(rename = "final")]
    pub final_count: Option<u64>,
    pub final_per_s: Option<f64>,
    pub not_final: Option<u64>,
    pub api_p50_ms: Option<f64>,
    pub api_p99_ms: Option<f64>,
    pub api_max_ms: Option<f64>,
    pub elapsed_s: f64,
}

/// Result of the wait phase, reduced to what the summary needs.
#[derive(Debug, Clone, Copy)]
pub struct WaitOutcome {
    pub final_count: u64,
    pub not_final: u64,
    /// From run start to the moment the last id was seen final.
    pub last_final_after: Option<Duration>,
}

pub struct SummaryInput<'a> {
    pub counts: Counts,
    /// Wall time of the send phase alone.
    pub send_elapsed: Duration,
    /// Wall time of the whole run (send + wait).
    pub total_elapsed: Duration,
    pub latency_us: &'a Histogram<u64>,
    /// `None` without `--wait-final`.
    pub wait: Option<WaitOutcome>,
}

pub fn summarize(input: &SummaryInput<'_>) -> Summary {
    let h = input.latency_us;
    let ms = |us: u64| round3(us as f64 / 1000.0);
    let (p50, p99, max) = if h.is_empty() {
        // No answered request: a 0 ms latency would be a lie.
        (None, None, None)
    } else {
        (
            Some(ms(h.value_at_quantile(0.50))),
            Some(ms(h.value_at_quantile(0.99))),
            Some(ms(h.max())),
        )
    };
    let wait = input.wait;
    Summary {
        sent: input.counts.sent,
        accepted: input.counts.accepted,
        errors: input.counts.errors,
        throttled: input.counts.throttled,
        accepted_per_s: rate(input.counts.accepted, input.send_elapsed),
        final_count: wait.map(|w| w.final_count),
        final_per_s: wait.map(|w| match w.last_final_after {
            Some(d) => rate(w.final_count, d),
            None => 0.0,
        }),
        not_final: wait.map(|w| w.not_final),
        api_p50_ms: p50,
        api_p99_ms: p99,
        api_max_ms: max,
        elapsed_s: round3(input.total_elapsed.as_secs_f64()),
    }
}

fn rate(n: u64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        round3(n as f64 / secs)
    }
}

/// Three decimals are plenty for ms and msg/s, and keep the line readable.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::send::new_histogram;

    fn counts(sent: u64, accepted: u64, errors: u64, throttled: u64) -> Counts {
        Counts {
            sent,
            accepted,
            errors,
            throttled,
        }
    }

    #[test]
    fn rates_and_percentiles() {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap(); // 1 ms .. 1000 ms
        }
        let s = summarize(&SummaryInput {
            counts: counts(1000, 990, 6, 4),
            send_elapsed: Duration::from_secs(2),
            total_elapsed: Duration::from_secs(10),
            latency_us: &h,
            wait: Some(WaitOutcome {
                final_count: 980,
                not_final: 10,
                last_final_after: Some(Duration::from_secs(4)),
            }),
        });
        assert_eq!(s.accepted_per_s, 495.0);
        assert_eq!(s.final_count, Some(980));
        assert_eq!(s.final_per_s, Some(245.0));
        assert_eq!(s.not_final, Some(10));
        assert_eq!(s.elapsed_s, 10.0);
        // 3 significant digits: within 0.1 % of the exact value.
        let p50 = s.api_p50_ms.unwrap();
        let p99 = s.api_p99_ms.unwrap();
        let max = s.api_max_ms.unwrap();
        assert!((p50 - 500.0).abs() <= 0.5, "{p50}");
        assert!((p99 - 990.0).abs() <= 1.0, "{p99}");
        assert!((max - 1000.0).abs() <= 1.0, "{max}");
    }

    #[test]
    fn without_wait_final_fields_are_null() {
        let h = new_histogram();
        let s = summarize(&SummaryInput {
            counts: counts(0, 0, 0, 0),
            send_elapsed: Duration::ZERO,
            total_elapsed: Duration::ZERO,
            latency_us: &h,
            wait: None,
        });
        assert_eq!(s.accepted_per_s, 0.0);
        let v = serde_json::to_value(&s).unwrap();
        for key in [
            "final",
            "final_per_s",
            "not_final",
            "api_p50_ms",
            "api_p99_ms",
            "api_max_ms",
        ] {
            assert!(v[key].is_null(), "{key}");
        }
        assert_eq!(v["sent"], 0);
        assert_eq!(v.as_object().unwrap().len(), 12);
    }

    #[test]
    fn nothing_final_gives_zero_rate() {
        let h = new_histogram();
        let s = summarize(&SummaryInput {
            counts: counts(5, 5, 0, 0),
            send_elapsed: Duration::from_millis(500),
            total_elapsed: Duration::from_secs(300),
            latency_us: &h,
            wait: Some(WaitOutcome {
                final_count: 0,
                not_final: 5,
                last_final_after: None,
            }),
        });
        assert_eq!(s.accepted_per_s, 10.0);
        assert_eq!(s.final_per_s, Some(0.0));
        assert_eq!(s.not_final, Some(5));
    }

    #[test]
    fn merged_histograms_cover_all_workers() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        a.record(1_000).unwrap();
        b.record(50_000).unwrap();
        a.add(&b).unwrap();
        let s = summarize(&SummaryInput {
            counts: counts(2, 2, 0, 0),
            send_elapsed: Duration::from_secs(1),
            total_elapsed: Duration::from_secs(1),
            latency_us: &a,
            wait: None,
        });
        assert!((s.api_max_ms.unwrap() - 50.0).abs() < 0.1);
        assert!((s.api_p50_ms.unwrap() - 1.0).abs() < 0.01);
    }
}
