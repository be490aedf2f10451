//! The simulators as commands: `goniec smsc-sim`, `goniec smtp-sink` and
//! `goniec rcs-sim`. Each one's arguments are derived here once (the `goniec`
//! CLI flattens them), turned into its config by `config()`, and run by
//! `run()` until the future it is given completes; the optional HTTP control side (loopback only,
//! no authentication) is served next to it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::rbm::{RcsSim, RcsSimConfig};
use crate::smsc::{SimConfig, SmscSim};
use crate::smtp_sink::{FailAt, SinkConfig, SmtpSink};

/// Run the SMSC simulator alone: a real SMPP 3.4 server that accepts
/// submit_sm and sends delivery receipts (for benches and your own tests).
#[derive(Debug, Clone, clap::Args)]
pub struct SmscArgs {
    #[arg(long, default_value = "127.0.0.1:2775")]
    pub listen: SocketAddr,
    #[arg(long, default_value = "goniec")]
    pub system_id: String,
    #[arg(long, default_value = "secret")]
    pub password: String,
    /// Delay before each delivery receipt, e.g. 50ms.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub receipt_delay: std::time::Duration,
    /// Delay before each submit_sm_resp (emulated SMSC latency).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub response_delay: std::time::Duration,
    /// Every n-th message is reported UNDELIV (0 = never).
    #[arg(long, default_value_t = 0)]
    pub undeliverable_every: u64,
    /// Every n-th submit_sm is answered ESME_RTHROTTLED (0 = never).
    #[arg(long, default_value_t = 0)]
    pub throttle_every: u64,
    /// Send delivery receipts as data_sm instead of deliver_sm.
    #[arg(long)]
    pub receipts_as_data_sm: bool,
    /// Every n-th message (not UNDELIV) is reported EXPIRED (0 = never).
    #[arg(long, default_value_t = 0)]
    pub expired_every: u64,
    /// Every n-th message (not UNDELIV or EXPIRED) is reported REJECTD (0 = never).
    #[arg(long, default_value_t = 0)]
    pub rejected_every: u64,
    /// Every n-th submit_sm past throttling is refused with --reject-status (0 = never).
    #[arg(long, default_value_t = 0)]
    pub reject_every: u64,
    /// command_status for --reject-every: a number (0x0B, 11) or a name (ESME_RINVDSTADR).
    #[arg(long, default_value = "ESME_RINVDSTADR", value_parser = parse_status)]
    pub reject_status: u32,
    /// Answer ESME_RTHROTTLED above this many submit_sm per second, all binds
    /// together (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub max_tps: u32,
    /// Fault: close a connection abruptly when a PDU arrives after this many (0 = never).
    #[arg(long, default_value_t = 0)]
    pub drop_after: u64,
    /// Fault: stop answering on a connection after this many PDUs, keeping it open (0 = never).
    #[arg(long, default_value_t = 0)]
    pub silent_after: u64,
    /// Fault: write garbage to the ESME before every n-th PDU of a connection (0 = never).
    #[arg(long, default_value_t = 0)]
    pub garbage_every: u64,
    /// Fault: never send the receipt of every n-th message; query_sm still knows
    /// it (0 = never).
    #[arg(long, default_value_t = 0)]
    pub lose_receipts_every: u64,
    /// Serve `GET /stats`, `POST /mo` and `POST /receipts/unknown` over HTTP on this
    /// loopback address (e.g. 127.0.0.1:2776; no authentication).
    #[arg(long, value_parser = parse_loopback)]
    pub http: Option<SocketAddr>,
}

impl SmscArgs {
    /// The simulator's settings these arguments ask for.
    pub fn config(&self) -> SimConfig {
        SimConfig {
            system_id: self.system_id.clone(),
            password: self.password.clone(),
            receipt_delay: self.receipt_delay,
            response_delay: self.response_delay,
            undeliverable_every: self.undeliverable_every,
            throttle_every: self.throttle_every,
            receipts_as_data_sm: self.receipts_as_data_sm,
            expired_every: self.expired_every,
            rejected_every: self.rejected_every,
            reject_every: self.reject_every,
            reject_status: self.reject_status,
            max_tps: self.max_tps,
            drop_after: self.drop_after,
            silent_after: self.silent_after,
            garbage_every: self.garbage_every,
            lose_receipts_every: self.lose_receipts_every,
            ..SimConfig::default()
        }
    }

    /// Serve until `until` completes (the `goniec` command: SIGTERM or
    /// Ctrl-C), then print the counters.
    pub async fn run(self, until: impl std::future::Future<Output = ()>) -> ExitCode {
        let (listen, http, cfg) = (self.listen, self.http, self.config());

        let stop = CancellationToken::new();
        let system_id = cfg.system_id.clone();
        let sim = match SmscSim::start(listen, cfg, stop.clone()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("goniec smsc-sim: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "SMSC simulator listening on {} (SMPP 3.4). Stop with Ctrl-C.",
            sim.local_addr()
        );
        if let Some(addr) = http {
            let app = smsc_http::router(sim.clone(), system_id);
            let what = (
                "SMSC simulator",
                "GET /stats, POST /mo, POST /receipts/unknown",
            );
            if !serve_sim_http("smsc-sim", what, addr, app, &stop).await {
                return ExitCode::FAILURE;
            }
        }
        until.await;
        stop.cancel();
        println!("{:?}", sim.stats());
        ExitCode::SUCCESS
    }
}

/// Run the SMTP sink alone: a real ESMTP server that accepts mail, fails a
/// share of it on request and counts it (for benches and your own tests).
#[derive(Debug, Clone, clap::Args)]
pub struct SmtpSinkArgs {
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub listen: SocketAddr,
    /// Name in the greeting, the EHLO reply and the self-signed certificate.
    #[arg(long, default_value = "localhost")]
    pub hostname: String,
    /// Every n-th message (or recipient, see --fail-at) gets 451 4.3.0 (0 = never).
    #[arg(long, default_value_t = 0)]
    pub temp_fail_every: u64,
    /// Every n-th message (or recipient) gets 550 5.1.1 (0 = never).
    #[arg(long, default_value_t = 0)]
    pub perm_fail_every: u64,
    /// Where the failure shares apply: at the end of DATA (counting messages)
    /// or at RCPT TO (counting recipients).
    #[arg(long, default_value = "data", value_parser = ["data", "rcpt"])]
    pub fail_at: String,
    /// Recipients whose local part starts with this always get 550 5.1.1
    /// (repeatable; `--bounce-prefix ''` for none).
    #[arg(long = "bounce-prefix", default_value = "bounce")]
    pub bounce_prefixes: Vec<String>,
    /// Require AUTH (PLAIN or LOGIN) with these credentials before MAIL.
    #[arg(long, value_name = "USER:PASS", value_parser = parse_user_pass)]
    pub auth: Option<(String, String)>,
    /// Offer STARTTLS with a self-signed certificate made at start.
    #[arg(long)]
    pub starttls: bool,
    /// Refuse mail before STARTTLS (implies --starttls).
    #[arg(long)]
    pub require_starttls: bool,
    /// Largest message in octets (552 above).
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub max_size: usize,
    /// Accepted messages kept for GET /messages.
    #[arg(long, default_value_t = 100)]
    pub keep: usize,
    /// Most connections at once (421 above).
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
    /// Close a session idle this long with 421, e.g. 60s.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: std::time::Duration,
    /// Serve `GET /stats` and `GET /messages` over HTTP on this loopback
    /// address (e.g. 127.0.0.1:2526; no authentication).
    #[arg(long, value_parser = parse_loopback)]
    pub http: Option<SocketAddr>,
}

impl SmtpSinkArgs {
    /// The sink's settings these arguments ask for.
    pub fn config(&self) -> SinkConfig {
        SinkConfig {
            hostname: self.hostname.clone(),
            temp_fail_every: self.temp_fail_every,
            perm_fail_every: self.perm_fail_every,
            fail_at: if self.fail_at == "rcpt" {
                FailAt::Rcpt
            } else {
                FailAt::Data
            },
            bounce_prefixes: self.bounce_prefixes.clone(),
            require_auth: self.auth.clone(),
            starttls: self.starttls,
            require_starttls: self.require_starttls,
            max_size: self.max_size,
            keep: self.keep,
            max_connections: self.max_connections,
            idle_timeout: self.idle_timeout,
            ..SinkConfig::default()
        }
    }

    /// Serve until `until` completes (the `goniec` command: SIGTERM or
    /// Ctrl-C), then print the counters.
    pub async fn run(self, until: impl std::future::Future<Output = ()>) -> ExitCode {
        let (listen, http, cfg) = (self.listen, self.http, self.config());

        let stop = CancellationToken::new();
        let tls = if cfg.require_starttls {
            "STARTTLS required"
        } else if cfg.starttls {
            "STARTTLS offered"
        } else {
            "no TLS"
        };
        let auth = if cfg.require_auth.is_some() {
            "AUTH required"
        } else {
            "AUTH optional"
        };
        let sink = match SmtpSink::start(listen, cfg, stop.clone()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("goniec smtp-sink: cannot start on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "SMTP sink listening on {} (ESMTP, {tls}, {auth}). Stop with Ctrl-C.",
            sink.local_addr()
        );
        if let Some(addr) = http {
            let app = smtp_sink_http::router(sink.clone());
            let what = ("SMTP sink", "GET /stats, GET /messages");
            if !serve_sim_http("smtp-sink", what, addr, app, &stop).await {
                return ExitCode::FAILURE;
            }
        }
        until.await;
        stop.cancel();
        println!("{:?}", sink.stats());
        ExitCode::SUCCESS
    }
}

/// Run the RCS simulator alone: Google's RBM REST API (OAuth2 token endpoint,
/// send, capabilities, revoke) on loopback HTTP, posting signed DELIVERED and
/// READ events to a webhook (for benches and your own tests).
#[derive(Debug, Clone, clap::Args)]
pub struct RcsSimArgs {
    #[arg(long, default_value = "127.0.0.1:8091", value_parser = parse_loopback)]
    pub listen: SocketAddr,
    /// The one agent id served (others get 403).
    #[arg(long, default_value = "goniec-demo-agent")]
    pub agent_id: String,
    /// The agent's client token: signs webhook posts (X-Goog-Signature).
    #[arg(long, default_value = "goniec-demo-client-token")]
    pub client_token: String,
    /// Where events are posted, e.g. http://127.0.0.1:8080/v1/webhooks/rcs.
    #[arg(long, value_parser = parse_http_url)]
    pub webhook: Option<String>,
    /// Check token requests' JWT signatures against this service-account key
    /// file (unchecked when omitted).
    #[arg(long)]
    pub service_account_key: Option<PathBuf>,
    /// Lifetime of issued access tokens (whole seconds), e.g. 1h.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub token_ttl: std::time::Duration,
    /// Share of numbers (0.0-1.0, by a stable hash) that cannot get RCS (404).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub unreachable_share: f64,
    /// Numbers starting with this cannot get RCS (repeatable).
    #[arg(long = "unreachable-prefix")]
    pub unreachable_prefixes: Vec<String>,
    /// Numbers starting with this accept messages that are never delivered (repeatable).
    #[arg(long = "silent-prefix")]
    pub silent_prefixes: Vec<String>,
    /// Delay from an accepted send to its DELIVERED event.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    pub delivered_after: std::time::Duration,
    /// Delay from DELIVERED to READ, or `never`.
    #[arg(long, default_value = "1s", value_parser = parse_optional_duration)]
    pub read_after: OptionalDuration,
    /// Added to every API answer (emulated platform latency).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub latency: std::time::Duration,
    /// Sends per second accepted before 429 with Retry-After (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub max_tps: u32,
}

impl RcsSimArgs {
    /// The simulator's settings these arguments ask for.
    pub fn config(&self) -> RcsSimConfig {
        RcsSimConfig {
            agent_id: self.agent_id.clone(),
            client_token: self.client_token.clone(),
            webhook_url: self.webhook.clone(),
            service_account_key: self.service_account_key.clone(),
            token_ttl: self.token_ttl,
            unreachable_share: self.unreachable_share,
            unreachable_prefixes: self.unreachable_prefixes.clone(),
            silent_prefixes: self.silent_prefixes.clone(),
            delivered_after: self.delivered_after,
            read_after: self.read_after.0,
            latency: self.latency,
            max_tps: self.max_tps,
            revoke_answer_lost: false,
            revoke_ineffective: false,
        }
    }

    /// Serve until `until` completes (the `goniec` command: SIGTERM or
    /// Ctrl-C), then print the counters.
    pub async fn run(self, until: impl std::future::Future<Output = ()>) -> ExitCode {
        let (listen, cfg) = (self.listen, self.config());

        let stop = CancellationToken::new();
        let webhook = cfg.webhook_url.clone();
        let sim = match RcsSim::start(listen, cfg, stop.clone()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("goniec rcs-sim: cannot start on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!(
        "RCS simulator listening on {} (RBM REST API: POST /token, /v1/phones/..., GET /stats).",
        sim.base_url()
    );
        println!(
            "Connector settings: base_url = \"{}\", token_uri = \"{}\".",
            sim.base_url(),
            sim.token_uri()
        );
        match webhook {
            Some(url) => println!("Events go to {url}. Stop with Ctrl-C."),
            None => println!("No --webhook: events are not posted. Stop with Ctrl-C."),
        }
        until.await;
        stop.cancel();
        println!("{:?}", sim.stats());
        ExitCode::SUCCESS
    }
}

/// Serve a simulator's HTTP side on `addr` until `stop`; false (and `stop`
/// cancelled) when the address cannot be bound.
async fn serve_sim_http(
    cmd: &str,
    (name, endpoints): (&str, &str),
    addr: SocketAddr,
    app: axum::Router,
    stop: &CancellationToken,
) -> bool {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("goniec {cmd}: cannot listen on {addr} for HTTP: {e}");
            stop.cancel();
            return false;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    println!("{name} HTTP on http://{local} ({endpoints}).");
    let stopped = stop.clone();
    let cmd = cmd.to_string();
    tokio::spawn(async move {
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped.cancelled().await });
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, cmd, "Simulator HTTP server failed.");
        }
    });
    true
}

/// An SMPP command_status: `0x0B`, `11` or a name such as `ESME_RINVDSTADR`.
fn parse_status(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let number = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    };
    number
        .or_else(|| {
            let name = s.to_ascii_uppercase();
            (0u32..0x100).find(|&v| goniec_connectors::smpp::status::name(v) == name)
        })
        .ok_or_else(|| format!("`{s}` is not a command_status (0x0B, 11 or ESME_RINVDSTADR)"))
}

/// A loopback socket address (the simulator's HTTP endpoint has no authentication).
fn parse_loopback(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s
        .parse()
        .map_err(|e| format!("`{s}` is not an address like 127.0.0.1:2776: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address: the endpoint has no authentication"
        ));
    }
    Ok(addr)
}

/// `USER:PASS` for `goniec smtp-sink --auth` (the password may contain `:`).
fn parse_user_pass(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((user, pass)) if !user.is_empty() => Ok((user.to_string(), pass.to_string())),
        _ => Err(format!("`{s}` is not USER:PASS")),
    }
}

/// `--read-after`: a duration, or none.
#[derive(Debug, Clone, Copy)]
pub struct OptionalDuration(pub Option<std::time::Duration>);

/// A duration such as `1s`, or `never`/`none`/`off`.
fn parse_optional_duration(s: &str) -> Result<OptionalDuration, String> {
    match s.trim() {
        "never" | "none" | "off" => Ok(OptionalDuration(None)),
        other => humantime::parse_duration(other)
            .map(|d| OptionalDuration(Some(d)))
            .map_err(|e| format!("`{s}` is not a duration such as 1s, or `never`: {e}")),
    }
}

/// A share within 0.0..=1.0.
fn parse_share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a share between 0.0 and 1.0")),
    }
}

/// An http:// or https:// URL.
fn parse_http_url(s: &str) -> Result<String, String> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok(s.to_string())
        }
        _ => Err(format!("`{s}` is not an http:// or https:// URL")),
    }
}

/// The simulator's HTTP side: counters, and messages injected on request.
mod smsc_http {
    use crate::smsc::{SimStats, SmscSim};
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use serde::Deserialize;
    use serde_json::{json, Value};

    #[derive(Clone)]
    struct Sim {
        sim: SmscSim,
        /// For requests that name no system_id.
        system_id: String,
    }

    /// `GET /stats` (the [`SimStats`] JSON), `POST /mo`
    /// (`{"system_id":"goniec","from":"+48...","to":"...","text":"..."}`, system_id
    /// optional) and `POST /receipts/unknown` (`{"system_id":"goniec"}` or no body).
    pub fn router(sim: SmscSim, system_id: String) -> Router {
        Router::new()
            .route("/stats", get(stats))
            .route("/mo", post(mo))
            .route("/receipts/unknown", post(unknown_receipt))
            .with_state(Sim { sim, system_id })
    }

    async fn stats(State(s): State<Sim>) -> Json<SimStats> {
        Json(s.sim.stats())
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Mo {
        system_id: Option<String>,
        from: String,
        to: String,
        text: String,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Target {
        system_id: Option<String>,
    }

    type Answer = (StatusCode, Json<Value>);

    fn bad(e: impl std::fmt::Display) -> Answer {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": e.to_string() })),
        )
    }

    async fn mo(State(s): State<Sim>, body: Bytes) -> Answer {
        let m: Mo = match serde_json::from_slice(&body) {
            Ok(m) => m,
            Err(e) => return bad(e),
        };
        let system_id = m.system_id.unwrap_or(s.system_id);
        match s.sim.send_mo(&system_id, &m.from, &m.to, &m.text) {
            Ok(()) => (
                StatusCode::ACCEPTED,
                Json(json!({ "queued": true, "system_id": system_id })),
            ),
            Err(e) => bad(e),
        }
    }

    async fn unknown_receipt(State(s): State<Sim>, body: Bytes) -> Answer {
        let t: Target = if body.iter().all(u8::is_ascii_whitespace) {
            Target::default()
        } else {
            match serde_json::from_slice(&body) {
                Ok(t) => t,
                Err(e) => return bad(e),
            }
        };
        let system_id = t.system_id.unwrap_or(s.system_id);
        let id = s.sim.send_receipt_for_unknown_id(&system_id);
        (
            StatusCode::ACCEPTED,
            Json(json!({ "queued": true, "system_id": system_id, "message_id": id })),
        )
    }
}

/// The SMTP sink's HTTP side: counters and the kept messages.
mod smtp_sink_http {
    use crate::smtp_sink::{SinkStats, SmtpSink};
    use axum::extract::State;
    use axum::routing::get;
    use axum::{Json, Router};
    use serde_json::{json, Value};

    /// `GET /stats` (the [`SinkStats`] JSON) and `GET /messages` (the kept
    /// messages, oldest first, data as text with invalid UTF-8 replaced).
    pub fn router(sink: SmtpSink) -> Router {
        Router::new()
            .route("/stats", get(stats))
            .route("/messages", get(messages))
            .with_state(sink)
    }

    async fn stats(State(sink): State<SmtpSink>) -> Json<SinkStats> {
        Json(sink.stats())
    }

    async fn messages(State(sink): State<SmtpSink>) -> Json<Value> {
        let mails: Vec<Value> = sink
            .messages()
            .into_iter()
            .map(|m| {
                json!({
                    "id": m.id,
                    "helo": m.helo,
                    "from": m.from,
                    "rcpts": m.rcpts,
                    "size": m.data.len(),
                    "tls": m.tls,
                    "auth_user": m.auth_user,
                    "data": String::from_utf8_lossy(&m.data),
                })
            })
            .collect();
        Json(json!({ "messages": mails }))
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_loopback, parse_status};

    #[test]
    fn smsc_sim_statuses_parse_as_numbers_or_names() {
        assert_eq!(parse_status("0x0B"), Ok(0x0B));
        assert_eq!(parse_status("11"), Ok(0x0B));
        assert_eq!(parse_status("esme_rinvdstadr"), Ok(0x0B));
        assert_eq!(parse_status("ESME_RTHROTTLED"), Ok(0x58));
        assert!(parse_status("SMPP error").is_err());
        assert!(parse_status("0xZZ").is_err());
    }

    #[test]
    fn smtp_sink_auth_is_user_colon_pass() {
        assert_eq!(
            super::parse_user_pass("goniec:se:cret"),
            Ok(("goniec".to_string(), "se:cret".to_string()))
        );
        assert!(super::parse_user_pass("goniec").is_err());
        assert!(super::parse_user_pass(":pass").is_err());
    }

    #[test]
    fn smsc_sim_http_binds_loopback_only() {
        assert!(parse_loopback("127.0.0.1:2776").is_ok());
        assert!(parse_loopback("[::1]:2776").is_ok());
        assert!(parse_loopback("0.0.0.0:2776").is_err());
        assert!(parse_loopback("2776").is_err());
    }
}
