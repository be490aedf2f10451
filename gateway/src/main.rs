//! `goniec`: the gateway daemon and its tools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use goniec_config::Config;
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
    SmscSim(goniec_sims::cli::SmscArgs),
    /// Run the SMTP sink alone: a real ESMTP server that accepts mail, fails a
    /// share of it on request and counts it (for benches and your own tests).
    SmtpSink(goniec_sims::cli::SmtpSinkArgs),
    /// Run the RCS simulator alone: Google's RBM REST API (OAuth2 token endpoint,
    /// send, capabilities, revoke) on loopback HTTP, posting signed DELIVERED and
    /// READ events to a webhook (for benches and your own tests).
    RcsSim(goniec_sims::cli::RcsSimArgs),
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
        Cmd::SmscSim(args) => run_sim(args.run()),
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
        Cmd::SmtpSink(args) => run_sim(args.run()),
        Cmd::RcsSim(args) => run_sim(args.run()),
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

/// Run a simulator's command (logging at the default level) to its end.
fn run_sim(run: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    goniec_gateway::telemetry::init_logging(&goniec_config::Log::default());
    match runtime() {
        Some(rt) => rt.block_on(run),
        None => ExitCode::FAILURE,
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
        goniec_sims::cli::wait_for_signal().await;
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
