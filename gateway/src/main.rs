//! `goniec`: the gateway daemon and its tools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use goniec_config::Config;
use goniec_connectors::smpp::sim::{SimConfig, SmscSim};
use goniec_gateway::tenants::hash_key;

mod demo;
use tokio_util::sync::CancellationToken;

// glibc malloc was ~12% of the gateway's CPU under load (many small, short-lived
// allocations across threads); mimalloc handles that pattern far better.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "goniec",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("GONIEC_COMMIT"), ")"),
    about = "Goniec: a high-throughput SMS, RCS and e-mail gateway"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway daemon.
    Serve {
        #[arg(long, default_value = "config/goniec.toml")]
        config: PathBuf,
    },
    /// Run a self-contained demo gateway (memory store unless --store is given).
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// API key for the demo tenant (random when omitted).
        #[arg(long)]
        api_key: Option<String>,
        /// Operator key for /v1/admin/* (random when omitted).
        #[arg(long)]
        admin_key: Option<String>,
        /// Run the demo on Redis instead of memory: `redis://HOST:PORT/DB`, or a
        /// Redis Cluster as `redis-cluster://HOST:PORT,HOST:PORT,…` (seed nodes).
        #[arg(long)]
        store: Option<String>,
        /// Print the demo's configuration (config/demo.toml filled in) and exit.
        #[arg(long)]
        print_config: bool,
    },
    /// Validate a config file and print every problem with its key path.
    CheckConfig { path: PathBuf },
    /// Print the `sha256:<hex>` form of an API key for `tenants.api_keys`. Reads
    /// the key from standard input (one line), so it stays out of the shell
    /// history and the process list: `goniec hash-key < key.txt`.
    HashKey {
        /// The key on the command line instead (visible to other users in `ps`).
        key: Option<String>,
    },
    /// Make a new random API key and print it with its hash for the config.
    GenKey,
    /// Run the SMSC simulator alone: a real SMPP 3.4 server that accepts
    /// submit_sm and sends delivery receipts (for benches and your own tests).
    SmscSim {
        #[arg(long, default_value = "127.0.0.1:2775")]
        listen: SocketAddr,
        #[arg(long, default_value = "goniec")]
        system_id: String,
        #[arg(long, default_value = "secret")]
        password: String,
        /// Delay before each delivery receipt, e.g. 50ms.
        #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
        receipt_delay: std::time::Duration,
        /// Delay before each submit_sm_resp (emulated SMSC latency).
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        response_delay: std::time::Duration,
        /// Every n-th message is reported UNDELIV (0 = never).
        #[arg(long, default_value_t = 0)]
        undeliverable_every: u64,
        /// Every n-th submit_sm is answered ESME_RTHROTTLED (0 = never).
        #[arg(long, default_value_t = 0)]
        throttle_every: u64,
        /// Send delivery receipts as data_sm instead of deliver_sm.
        #[arg(long)]
        receipts_as_data_sm: bool,
        /// Every n-th message (not UNDELIV) is reported EXPIRED (0 = never).
        #[arg(long, default_value_t = 0)]
        expired_every: u64,
        /// Every n-th message (not UNDELIV or EXPIRED) is reported REJECTD (0 = never).
        #[arg(long, default_value_t = 0)]
        rejected_every: u64,
        /// Every n-th submit_sm past throttling is refused with --reject-status (0 = never).
        #[arg(long, default_value_t = 0)]
        reject_every: u64,
        /// command_status for --reject-every: a number (0x0B, 11) or a name (ESME_RINVDSTADR).
        #[arg(long, default_value = "ESME_RINVDSTADR", value_parser = parse_status)]
        reject_status: u32,
        /// Answer ESME_RTHROTTLED above this many submit_sm per second, all binds
        /// together (0 = no limit).
        #[arg(long, default_value_t = 0)]
        max_tps: u32,
        /// Fault: close a connection abruptly when a PDU arrives after this many (0 = never).
        #[arg(long, default_value_t = 0)]
        drop_after: u64,
        /// Fault: stop answering on a connection after this many PDUs, keeping it open (0 = never).
        #[arg(long, default_value_t = 0)]
        silent_after: u64,
        /// Fault: write garbage to the ESME before every n-th PDU of a connection (0 = never).
        #[arg(long, default_value_t = 0)]
        garbage_every: u64,
        /// Fault: never send the receipt of every n-th message; query_sm still knows
        /// it (0 = never).
        #[arg(long, default_value_t = 0)]
        lose_receipts_every: u64,
        /// Serve `GET /stats`, `POST /mo` and `POST /receipts/unknown` over HTTP on this
        /// loopback address (e.g. 127.0.0.1:2776; no authentication).
        #[arg(long, value_parser = parse_loopback)]
        http: Option<SocketAddr>,
    },
    /// Run the SMTP sink alone: a real ESMTP server that accepts mail, fails a
    /// share of it on request and counts it (for benches and your own tests).
    SmtpSink {
        #[arg(long, default_value = "127.0.0.1:2525")]
        listen: SocketAddr,
        /// Name in the greeting, the EHLO reply and the self-signed certificate.
        #[arg(long, default_value = "localhost")]
        hostname: String,
        /// Every n-th message (or recipient, see --fail-at) gets 451 4.3.0 (0 = never).
        #[arg(long, default_value_t = 0)]
        temp_fail_every: u64,
        /// Every n-th message (or recipient) gets 550 5.1.1 (0 = never).
        #[arg(long, default_value_t = 0)]
        perm_fail_every: u64,
        /// Where the failure shares apply: at the end of DATA (counting messages)
        /// or at RCPT TO (counting recipients).
        #[arg(long, default_value = "data", value_parser = ["data", "rcpt"])]
        fail_at: String,
        /// Recipients whose local part starts with this always get 550 5.1.1
        /// (repeatable; `--bounce-prefix ''` for none).
        #[arg(long = "bounce-prefix", default_value = "bounce")]
        bounce_prefixes: Vec<String>,
        /// Require AUTH (PLAIN or LOGIN) with these credentials before MAIL.
        #[arg(long, value_name = "USER:PASS", value_parser = parse_user_pass)]
        auth: Option<(String, String)>,
        /// Offer STARTTLS with a self-signed certificate made at start.
        #[arg(long)]
        starttls: bool,
        /// Refuse mail before STARTTLS (implies --starttls).
        #[arg(long)]
        require_starttls: bool,
        /// Largest message in octets (552 above).
        #[arg(long, default_value_t = 10 * 1024 * 1024)]
        max_size: usize,
        /// Accepted messages kept for GET /messages.
        #[arg(long, default_value_t = 100)]
        keep: usize,
        /// Most connections at once (421 above).
        #[arg(long, default_value_t = 256)]
        max_connections: usize,
        /// Close a session idle this long with 421, e.g. 60s.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        idle_timeout: std::time::Duration,
        /// Serve `GET /stats` and `GET /messages` over HTTP on this loopback
        /// address (e.g. 127.0.0.1:2526; no authentication).
        #[arg(long, value_parser = parse_loopback)]
        http: Option<SocketAddr>,
    },
    /// Run the RCS simulator alone: Google's RBM REST API (OAuth2 token endpoint,
    /// send, capabilities, revoke) on loopback HTTP, posting signed DELIVERED and
    /// READ events to a webhook (for benches and your own tests).
    RcsSim {
        #[arg(long, default_value = "127.0.0.1:8091", value_parser = parse_loopback)]
        listen: SocketAddr,
        /// The one agent id served (others get 403).
        #[arg(long, default_value = "goniec-demo-agent")]
        agent_id: String,
        /// The agent's client token: signs webhook posts (X-Goog-Signature).
        #[arg(long, default_value = "goniec-demo-client-token")]
        client_token: String,
        /// Where events are posted, e.g. http://127.0.0.1:8080/v1/webhooks/rcs.
        #[arg(long, value_parser = parse_http_url)]
        webhook: Option<String>,
        /// Check token requests' JWT signatures against this service-account key
        /// file (unchecked when omitted).
        #[arg(long)]
        service_account_key: Option<PathBuf>,
        /// Lifetime of issued access tokens (whole seconds), e.g. 1h.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        token_ttl: std::time::Duration,
        /// Share of numbers (0.0-1.0, by a stable hash) that cannot get RCS (404).
        #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
        unreachable_share: f64,
        /// Numbers starting with this cannot get RCS (repeatable).
        #[arg(long = "unreachable-prefix")]
        unreachable_prefixes: Vec<String>,
        /// Numbers starting with this accept messages that are never delivered (repeatable).
        #[arg(long = "silent-prefix")]
        silent_prefixes: Vec<String>,
        /// Delay from an accepted send to its DELIVERED event.
        #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
        delivered_after: std::time::Duration,
        /// Delay from DELIVERED to READ, or `never`.
        #[arg(long, default_value = "1s", value_parser = parse_optional_duration)]
        read_after: OptionalDuration,
        /// Added to every API answer (emulated platform latency).
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        latency: std::time::Duration,
        /// Sends per second accepted before 429 with Retry-After (0 = no limit).
        #[arg(long, default_value_t = 0)]
        max_tps: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig { path } => match goniec_config::load(&path) {
            Ok(cfg) => {
                for w in goniec_config::warnings(&cfg) {
                    eprintln!("{}: warning: {w}", path.display());
                }
                println!(
                    "{}: OK ({} tenants, {} connectors, {} routes)",
                    path.display(),
                    cfg.tenants.len(),
                    cfg.connectors.len(),
                    cfg.routes.len()
                );
                ExitCode::SUCCESS
            }
            Err(errs) => {
                eprintln!("{errs}");
                ExitCode::FAILURE
            }
        },
        Cmd::HashKey { key } => hash_key_cmd(key),
        Cmd::GenKey => {
            let key = new_key();
            println!("key:  {key}\nhash: {}", hash_key(&key));
            eprintln!("Give the key to the client; put only the hash in the config (api_keys).");
            ExitCode::SUCCESS
        }
        Cmd::Serve { config } => {
            let cfg = match goniec_config::load(&config) {
                Ok(c) => c,
                Err(errs) => {
                    eprintln!("{errs}");
                    return ExitCode::FAILURE;
                }
            };
            run_daemon(cfg)
        }
        Cmd::SmscSim {
            listen,
            system_id,
            password,
            receipt_delay,
            response_delay,
            undeliverable_every,
            throttle_every,
            receipts_as_data_sm,
            expired_every,
            rejected_every,
            reject_every,
            reject_status,
            max_tps,
            drop_after,
            silent_after,
            garbage_every,
            lose_receipts_every,
            http,
        } => {
            let cfg = SimConfig {
                system_id,
                password,
                receipt_delay,
                response_delay,
                undeliverable_every,
                throttle_every,
                receipts_as_data_sm,
                expired_every,
                rejected_every,
                reject_every,
                reject_status,
                max_tps,
                drop_after,
                silent_after,
                garbage_every,
                lose_receipts_every,
                ..SimConfig::default()
            };
            run_sim(listen, cfg, http)
        }
        Cmd::Demo {
            listen,
            api_key,
            admin_key,
            store,
            print_config,
        } => {
            let opts = demo::Options {
                listen,
                api_key,
                admin_key,
                store,
            };
            run_demo(opts, print_config)
        }
        Cmd::SmtpSink {
            listen,
            hostname,
            temp_fail_every,
            perm_fail_every,
            fail_at,
            bounce_prefixes,
            auth,
            starttls,
            require_starttls,
            max_size,
            keep,
            max_connections,
            idle_timeout,
            http,
        } => {
            use goniec_connectors::smtp::sink::{FailAt, SinkConfig};
            let cfg = SinkConfig {
                hostname,
                temp_fail_every,
                perm_fail_every,
                fail_at: if fail_at == "rcpt" {
                    FailAt::Rcpt
                } else {
                    FailAt::Data
                },
                bounce_prefixes,
                require_auth: auth,
                starttls,
                require_starttls,
                max_size,
                keep,
                max_connections,
                idle_timeout,
                ..SinkConfig::default()
            };
            run_smtp_sink(listen, cfg, http)
        }
        Cmd::RcsSim {
            listen,
            agent_id,
            client_token,
            webhook,
            service_account_key,
            token_ttl,
            unreachable_share,
            unreachable_prefixes,
            silent_prefixes,
            delivered_after,
            read_after,
            latency,
            max_tps,
        } => {
            let cfg = goniec_connectors::rcs::sim::RcsSimConfig {
                agent_id,
                client_token,
                webhook_url: webhook,
                service_account_key,
                token_ttl,
                unreachable_share,
                unreachable_prefixes,
                silent_prefixes,
                delivered_after,
                read_after: read_after.0,
                latency,
                max_tps,
                revoke_answer_lost: false,
                revoke_ineffective: false,
            };
            run_rcs_sim(listen, cfg)
        }
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            None
        }
    }
}

fn run_sim(listen: SocketAddr, cfg: SimConfig, http: Option<SocketAddr>) -> ExitCode {
    goniec_gateway::telemetry::init_logging(&goniec_config::Log::default());
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    rt.block_on(async {
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
            let app = sim_http::router(sim.clone(), system_id);
            let what = (
                "SMSC simulator",
                "GET /stats, POST /mo, POST /receipts/unknown",
            );
            if !serve_sim_http("smsc-sim", what, addr, app, &stop).await {
                return ExitCode::FAILURE;
            }
        }
        wait_for_signal().await;
        stop.cancel();
        println!("{:?}", sim.stats());
        ExitCode::SUCCESS
    })
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

/// The simulator's HTTP side: counters, and messages injected on request.
mod sim_http {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use goniec_connectors::smpp::sim::{SimStats, SmscSim};
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

fn run_smtp_sink(
    listen: SocketAddr,
    cfg: goniec_connectors::smtp::sink::SinkConfig,
    http: Option<SocketAddr>,
) -> ExitCode {
    use goniec_connectors::smtp::sink::SmtpSink;
    goniec_gateway::telemetry::init_logging(&goniec_config::Log::default());
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    rt.block_on(async {
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
        wait_for_signal().await;
        stop.cancel();
        println!("{:?}", sink.stats());
        ExitCode::SUCCESS
    })
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

/// `USER:PASS` for `goniec smtp-sink --auth` (the password may contain `:`).
fn parse_user_pass(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((user, pass)) if !user.is_empty() => Ok((user.to_string(), pass.to_string())),
        _ => Err(format!("`{s}` is not USER:PASS")),
    }
}

/// The SMTP sink's HTTP side: counters and the kept messages.
mod smtp_sink_http {
    use axum::extract::State;
    use axum::routing::get;
    use axum::{Json, Router};
    use goniec_connectors::smtp::sink::{SinkStats, SmtpSink};
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

/// `goniec hash-key`: the key from the argument, else one line of stdin.
fn hash_key_cmd(arg: Option<String>) -> ExitCode {
    let key = match arg {
        Some(k) => {
            eprintln!(
                "note: a key on the command line is visible to other users (ps) and kept \
                 in the shell history; prefer `goniec hash-key < keyfile`"
            );
            k
        }
        None => {
            use std::io::{BufRead, IsTerminal};
            if std::io::stdin().is_terminal() {
                eprintln!("Paste the key and press Enter:");
            }
            let mut line = String::new();
            if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
                eprintln!("goniec hash-key: cannot read standard input: {e}");
                return ExitCode::FAILURE;
            }
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if key.trim().is_empty() {
        eprintln!("goniec hash-key: the key is empty (give it on standard input)");
        return ExitCode::from(2);
    }
    println!("{}", hash_key(&key));
    ExitCode::SUCCESS
}

/// A new API key: 32 random bytes, URL-safe base64 (43 characters).
fn new_key() -> String {
    use base64::Engine as _;
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    format!(
        "gk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn run_daemon(cfg: Config) -> ExitCode {
    goniec_gateway::telemetry::init_logging(&cfg.log);
    for w in goniec_config::warnings(&cfg) {
        tracing::warn!(key = %w.key, "Config: {}", w.message);
    }
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let shutdown = CancellationToken::new();
    rt.block_on(async {
        stop_on_signal(&shutdown);
        match goniec_gateway::run(cfg, shutdown, None).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("goniec: gateway failed: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Cancel `token` on SIGTERM or Ctrl-C.
fn stop_on_signal(token: &CancellationToken) {
    let token = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        token.cancel();
    });
}

fn run_demo(opts: demo::Options, print_config: bool) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(demo_main(opts, print_config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("goniec demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo_main(opts: demo::Options, print_config: bool) -> anyhow::Result<()> {
    // The simulators outlive the gateway's drain (its SMPP unbind, last mail), so
    // they stop only after it returned.
    let sims_stop = CancellationToken::new();
    let _stop_sims = sims_stop.clone().drop_guard();
    let demo = demo::start(opts, &sims_stop).await?;
    if print_config {
        print!("{}", demo.text);
        return Ok(());
    }
    goniec_gateway::telemetry::init_logging(&demo.config.log);
    let shutdown = CancellationToken::new();
    stop_on_signal(&shutdown);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let rcs = demo.rcs.clone();
    let keys = demo.keys.clone();
    tokio::spawn(async move {
        if let Ok(addr) = rx.await {
            rcs.set_webhook(Some(format!("http://{addr}/v1/webhooks/rcs")));
            println!("{}", demo::banner(addr, &keys));
        }
    });
    goniec_gateway::run(demo.config.clone(), shutdown, Some(tx))
        .await
        .context("gateway failed")
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn run_rcs_sim(listen: SocketAddr, cfg: goniec_connectors::rcs::sim::RcsSimConfig) -> ExitCode {
    use goniec_connectors::rcs::sim::RcsSim;
    goniec_gateway::telemetry::init_logging(&goniec_config::Log::default());
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    rt.block_on(async {
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
        wait_for_signal().await;
        stop.cancel();
        println!("{:?}", sim.stats());
        ExitCode::SUCCESS
    })
}

/// `--read-after`: a duration, or none.
#[derive(Debug, Clone, Copy)]
struct OptionalDuration(Option<std::time::Duration>);

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
