//! The `goniec` command line: the daemon (`serve`), the demo, the simulators
//! (their arguments and runners are `goniec-sims`'), and the config and key
//! tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use goniec_config::Config;
use goniec_gateway::tenants::hash_key;

use tokio_util::sync::CancellationToken;

#[cfg(feature = "sims")]
use crate::demo;
#[cfg(feature = "sims")]
use crate::process::wait_for_signal;
use crate::process::{runtime, stop_on_signal};

#[derive(Parser)]
#[command(
    name = "goniec",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("GONIEC_COMMIT"), ")"),
    about = "Goniec: a high-throughput SMS, RCS and e-mail gateway"
)]
pub struct Cli {
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
    #[cfg(feature = "sims")]
    Demo(demo::Options),
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
    #[cfg(feature = "sims")]
    SmscSim(goniec_sims::cli::SmscArgs),
    /// Run the SMTP sink alone: a real ESMTP server that accepts mail, fails a
    /// share of it on request and counts it (for benches and your own tests).
    #[cfg(feature = "sims")]
    SmtpSink(goniec_sims::cli::SmtpSinkArgs),
    /// Run the RCS simulator alone: Google's RBM REST API (OAuth2 token endpoint,
    /// send, capabilities, revoke) on loopback HTTP, posting signed DELIVERED and
    /// READ events to a webhook (for benches and your own tests).
    #[cfg(feature = "sims")]
    RcsSim(goniec_sims::cli::RcsSimArgs),
}

/// Parse the command line and run the command.
pub fn main() -> ExitCode {
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
        #[cfg(feature = "sims")]
        Cmd::Demo(opts) => crate::demo::run(opts),
        #[cfg(feature = "sims")]
        Cmd::SmscSim(args) => run_sim(args.run(wait_for_signal())),
        #[cfg(feature = "sims")]
        Cmd::SmtpSink(args) => run_sim(args.run(wait_for_signal())),
        #[cfg(feature = "sims")]
        Cmd::RcsSim(args) => run_sim(args.run(wait_for_signal())),
    }
}

/// Run a simulator's command (logging at the default level) to its end.
#[cfg(feature = "sims")]
fn run_sim(run: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    goniec_gateway::telemetry::init_logging(&goniec_config::Log::default());
    match runtime(0) {
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
    let Some(rt) = runtime(cfg.server.worker_threads) else {
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
