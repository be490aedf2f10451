//! `goniec-load`: end-to-end load generator for the Goniec REST API.
//!
//! Sends `--count` messages over `--concurrency` workers (single or batch
//! endpoint), optionally waits until each accepted message is final, and
//! prints one JSON summary line on stdout. Progress goes to stderr so stdout
//! stays machine-readable.

mod payload;
mod send;
mod summary;
mod wait;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::error::ErrorKind;
use clap::{CommandFactory as _, Parser};
use reqwest::Url;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::payload::{Channel, Payloads, DISTINCT_NUMBERS};
use crate::send::{new_histogram, Counters, SendPlan};
use crate::summary::{summarize, SummaryInput, WaitOutcome};
use crate::wait::WaitPlan;

/// The API's batch limit (DESIGN.md: up to 10,000 messages per batch).
const MAX_BATCH: u64 = 10_000;

#[derive(Debug, Parser)]
#[command(
    name = "goniec-load",
    version,
    about = "End-to-end load generator for the Goniec REST API",
    long_about = "Sends --count messages to a running Goniec gateway with --concurrency \
                  workers and prints one JSON summary line on stdout (progress on stderr). \
                  With --wait-final it also polls every accepted message until it is final."
)]
struct Args {
    /// Base URL of the gateway API.
    #[arg(long, env = "GONIEC_URL", default_value = "http://127.0.0.1:8080")]
    url: Url,

    /// API key, sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "GONIEC_API_KEY", hide_env_values = true)]
    api_key: String,

    /// Total number of messages to send.
    #[arg(long, default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=DISTINCT_NUMBERS))]
    count: u64,

    /// Messages per request; 1 uses POST /v1/messages, more uses POST /v1/messages/batch.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=MAX_BATCH))]
    batch: u64,

    /// Concurrent workers (in-flight requests); also the number of status pollers.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=4096))]
    concurrency: u64,

    /// Channel of the generated messages.
    #[arg(long, value_enum, default_value_t = Channel::Sms)]
    channel: Channel,

    /// After sending, poll until every accepted message reached a final status.
    #[arg(long)]
    wait_final: bool,

    /// With --wait-final: count `submitted` as the end too. E-mail has no delivery
    /// receipt (it stays `submitted` unless it bounces), so this measures the
    /// pipeline up to the relay's 250.
    #[arg(long)]
    until_submitted: bool,

    /// Give up waiting for final statuses after this long (e.g. 300s, 5m).
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    wait_timeout: Duration,

    /// Size in bytes of the HTML part of email messages.
    #[arg(long, default_value_t = 10_240,
          value_parser = clap::value_parser!(u64).range(0..=16 * 1024 * 1024))]
    body_size: u64,

    /// Stop sending after this long and report what was done.
    #[arg(long, default_value = "600s", value_parser = parse_positive_duration)]
    duration_limit: Duration,

    /// How recipients are chosen: `random` (a seeded permutation: distinct Polish
    /// numbers spread over every range and block, like a real list), `sequential`
    /// (consecutive numbers, which anti-fraud holds as sequential/pumping) or
    /// `world` (a mobile of every region in turn: traffic to many countries).
    #[arg(long, default_value = "random", value_parser = ["random", "sequential", "world"])]
    recipients: String,

    /// Seed of the random recipients (printed at start; the same seed repeats a run).
    #[arg(long)]
    seed: Option<u64>,

    /// Per-request timeout (connect + answer).
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    request_timeout: Duration,
}

/// A seed from the clock and the process id (no RNG crate needed for one word).
fn rand_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 300s, 5m, 1h 30m)"))
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be greater than zero".to_owned()),
        d => Ok(d),
    }
}

/// `base` + path segments, keeping any path prefix of `base` (a gateway behind
/// a reverse proxy at `/goniec/`) and escaping each segment.
pub(crate) fn api_url(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    // Only cannot-be-a-base URLs fail here, and `main` rejects those upfront.
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    if !matches!(args.url.scheme(), "http" | "https") || args.url.cannot_be_a_base() {
        Args::command()
            .error(
                ErrorKind::ValueValidation,
                "--url must be an http:// or https:// URL",
            )
            .exit();
    }
    if args.api_key.trim().is_empty() {
        Args::command()
            .error(ErrorKind::ValueValidation, "--api-key must not be empty")
            .exit();
    }
    // The clap ranges above keep these far below usize::MAX on any target.
    let concurrency = usize::try_from(args.concurrency).context("--concurrency")?;
    let body_size = usize::try_from(args.body_size).context("--body-size")?;

    let client = reqwest::Client::builder()
        // A benchmark measures the gateway, not whatever HTTP(S)_PROXY points to.
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .connect_timeout(args.request_timeout.min(Duration::from_secs(5)))
        .timeout(args.request_timeout)
        .user_agent(concat!("goniec-load/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")?;

    let seed = args.seed.unwrap_or_else(rand_seed);
    let recipients = if args.recipients == "sequential" {
        payload::Recipients::Sequential
    } else if args.recipients == "world" {
        payload::Recipients::World
    } else {
        eprintln!("goniec-load: random recipients, --seed {seed}");
        payload::Recipients::random(seed)
    };
    // No point starting workers that would find nothing to claim.
    let workers = args.count.div_ceil(args.batch).min(args.concurrency);
    let run_start = Instant::now();
    let plan = Arc::new(SendPlan {
        client: client.clone(),
        single_url: api_url(&args.url, &["v1", "messages"]),
        batch_url: api_url(&args.url, &["v1", "messages", "batch"]),
        api_key: args.api_key.clone(),
        count: args.count,
        batch: args.batch,
        payloads: Payloads::new(args.channel, body_size).with_recipients(recipients),
        deadline: run_start + args.duration_limit,
        keep_ids: args.wait_final,
        cursor: AtomicU64::new(0),
        counters: Counters::default(),
    });

    eprintln!(
        "goniec-load: {} {} messages to {} (batch {}, {} workers, limit {})",
        args.count,
        args.channel.as_str(),
        args.url,
        args.batch,
        workers,
        humantime::format_duration(args.duration_limit),
    );

    let progress = tokio::spawn(report_progress(plan.clone(), run_start));
    let mut set = JoinSet::new();
    for _ in 0..workers {
        set.spawn(send::worker(plan.clone()));
    }
    let mut latency_us = new_histogram();
    let mut errors_by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut ids = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(report) => {
                latency_us
                    .add(&report.latency_us)
                    .context("merging latency histograms")?;
                for (kind, n) in report.errors_by_kind {
                    *errors_by_kind.entry(kind).or_default() += n;
                }
                ids.extend(report.accepted_ids);
            }
            // The counters already hold what it sent; only its latencies are lost.
            Err(e) => eprintln!("goniec-load: a worker failed: {e}"),
        }
    }
    progress.abort();
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!(); // end the progress bar's line
    }
    let send_elapsed = run_start.elapsed();
    let counts = plan.counters.snapshot();

    if counts.sent < args.count {
        eprintln!(
            "duration limit reached: {} of {} messages not sent",
            args.count - counts.sent,
            args.count
        );
    }
    eprintln!(
        "send done in {:.3}s: sent {} accepted {} errors {} throttled {}",
        send_elapsed.as_secs_f64(),
        counts.sent,
        counts.accepted,
        counts.errors,
        counts.throttled
    );
    if !errors_by_kind.is_empty() {
        eprintln!("errors: {}", serde_json::to_string(&errors_by_kind)?);
    }

    let wait = if args.wait_final {
        eprintln!(
            "waiting up to {} for {} messages to become final",
            humantime::format_duration(args.wait_timeout),
            ids.len()
        );
        let wait_plan = Arc::new(WaitPlan {
            client,
            base: args.url.clone(),
            api_key: args.api_key.clone(),
            concurrency,
            timeout: args.wait_timeout,
            until_submitted: args.until_submitted,
        });
        let report = wait::wait_final(wait_plan, ids).await;
        eprintln!(
            "final statuses: {}",
            serde_json::to_string(&report.by_status)?
        );
        if !report.poll_errors.is_empty() {
            eprintln!(
                "poll errors: {}",
                serde_json::to_string(&report.poll_errors)?
            );
        }
        if report.not_final > 0 {
            eprintln!(
                "{} messages still not final at timeout: {}",
                report.not_final,
                wait::stall_reason(&report.pending_by_status)
            );
        }
        Some(WaitOutcome {
            final_count: report.final_count,
            not_final: report.not_final,
            last_final_after: report.last_final_at.map(|t| t.duration_since(run_start)),
        })
    } else {
        None
    };

    let summary = summarize(&SummaryInput {
        counts,
        send_elapsed,
        total_elapsed: run_start.elapsed(),
        latency_us: &latency_us,
        wait,
    });
    println!("{}", serde_json::to_string(&summary)?);

    if counts.accepted == 0 {
        eprintln!("goniec-load: not a single message was accepted");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress while sending, every second: on a terminal one bar redrawn in
/// place, otherwise one line each time (logs, CI). Bounded by the send
/// deadline and aborted as soon as the workers are done; the JSON summary on
/// stdout stays last.
async fn report_progress(plan: Arc<SendPlan>, start: Instant) {
    use std::io::IsTerminal as _;
    let tty = std::io::stderr().is_terminal();
    let period = Duration::from_secs(1);
    let mut tick = tokio::time::interval_at(start + period, period);
    // After a stall, skip missed ticks rather than print a burst of lines.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut prev_accepted = 0;
    let mut prev_at = start;
    while Instant::now() < plan.deadline {
        tick.tick().await;
        let c = plan.counters.snapshot();
        let now = Instant::now();
        let dt = now.duration_since(prev_at).as_secs_f64();
        let rate = if dt > 0.0 {
            (c.accepted - prev_accepted) as f64 / dt
        } else {
            0.0
        };
        let line = format!(
            "[{:>7.1}s] sent {}/{} accepted {} errors {} throttled {} ({:.0} accepted/s)",
            now.duration_since(start).as_secs_f64(),
            c.sent,
            plan.count,
            c.accepted,
            c.errors,
            c.throttled,
            rate
        );
        if tty {
            eprint!("\r{} {line}\x1b[K", bar(c.sent, plan.count));
        } else {
            eprintln!("{line}");
        }
        prev_accepted = c.accepted;
        prev_at = now;
    }
}

/// `[#####·····]  50%` for `done` of `total`.
fn bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 20;
    let filled = (done.min(total) * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH);
    let pct = (done.min(total) * 100).checked_div(total).unwrap_or(100);
    format!(
        "[{}{}] {pct:>3}%",
        "#".repeat(filled as usize),
        "·".repeat((WIDTH - filled) as usize)
    )
}

#[cfg(test)]
mod bar_tests {
    #[test]
    fn the_bar_fills_with_progress() {
        assert_eq!(super::bar(0, 10), "[····················]   0%");
        assert_eq!(super::bar(5, 10), "[##########··········]  50%");
        assert_eq!(super::bar(12, 10), "[####################] 100%");
        assert_eq!(super::bar(0, 0), "[####################] 100%");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses_the_documented_invocation() {
        let a = Args::try_parse_from([
            "goniec-load",
            "--url",
            "http://127.0.0.1:8080",
            "--api-key",
            "k",
            "--count",
            "500",
            "--batch",
            "100",
            "--concurrency",
            "4",
            "--channel",
            "email",
            "--wait-final",
            "--wait-timeout",
            "2m",
            "--body-size",
            "2048",
            "--duration-limit",
            "90s",
        ])
        .unwrap();
        assert_eq!(a.count, 500);
        assert_eq!(a.batch, 100);
        assert_eq!(a.channel, Channel::Email);
        assert!(a.wait_final);
        assert_eq!(a.wait_timeout, Duration::from_secs(120));
        assert_eq!(a.duration_limit, Duration::from_secs(90));
        assert_eq!(a.body_size, 2048);
    }

    #[test]
    fn cli_rejects_bad_values() {
        let base = ["goniec-load", "--api-key", "k"];
        for extra in [
            &["--count", "0"][..],
            &["--batch", "10001"],
            &["--concurrency", "0"],
            &["--channel", "fax"],
            &["--duration-limit", "0s"],
            &["--wait-timeout", "soon"],
            &["--url", "not a url"],
        ] {
            let argv = base.iter().chain(extra);
            assert!(Args::try_parse_from(argv).is_err(), "{extra:?}");
        }
    }

    #[test]
    fn api_urls_keep_a_path_prefix() {
        let u: Url = "http://h:1".parse().unwrap();
        assert_eq!(
            api_url(&u, &["v1", "messages"]).as_str(),
            "http://h:1/v1/messages"
        );
        let u: Url = "http://h:1/goniec/".parse().unwrap();
        assert_eq!(
            api_url(&u, &["v1", "messages", "batch"]).as_str(),
            "http://h:1/goniec/v1/messages/batch"
        );
        let u: Url = "http://h:1/goniec".parse().unwrap();
        assert_eq!(
            api_url(&u, &["v1", "messages", "01J/x"]).as_str(),
            "http://h:1/goniec/v1/messages/01J%2Fx"
        );
    }
}
