//! `goniec`: the gateway daemon and its tools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use goniec_config::{
    Channel, Config, ConnectorConfig, ConnectorKind, Route, SmppConnector, StoreBackend, Tenant,
};
use goniec_connectors::smpp::sim::{SimConfig, SmscSim};
use goniec_gateway::app::hash_key;
use tokio_util::sync::CancellationToken;

// glibc malloc was ~12% of the gateway's CPU under load (many small, short-lived
// allocations across threads); mimalloc handles that pattern far better.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "goniec",
    version,
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
        /// Redis URL to run the demo on Redis instead of memory.
        #[arg(long)]
        store: Option<String>,
    },
    /// Validate a config file and print every problem with its key path.
    CheckConfig { path: PathBuf },
    /// Print the `sha256:<hex>` form of an API key for `tenants.api_keys`.
    HashKey { key: String },
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig { path } => match goniec_config::load(&path) {
            Ok(cfg) => {
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
        Cmd::HashKey { key } => {
            println!("{}", hash_key(&key));
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
            run_daemon(cfg, None)
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
        } => {
            let cfg = SimConfig {
                system_id,
                password,
                receipt_delay,
                response_delay,
                undeliverable_every,
                throttle_every,
                receipts_as_data_sm,
                ..SimConfig::default()
            };
            run_sim(listen, cfg)
        }
        Cmd::Demo {
            listen,
            api_key,
            store,
        } => {
            let key = api_key.unwrap_or_else(|| {
                format!("demo-{}", ulid::Ulid::new().to_string().to_lowercase())
            });
            let mut cfg = Config::default();
            cfg.server.listen = listen;
            match store {
                Some(url) => {
                    cfg.store.backend = StoreBackend::Redis;
                    cfg.store.url = url;
                }
                None => cfg.store.backend = StoreBackend::Memory,
            }
            cfg.tenants.push(Tenant {
                name: "demo".into(),
                api_keys: vec![hash_key(&key)],
                webhook_secret: "demo-webhook-secret-change-me".into(),
                allow_private_callbacks: true,
                // Fraud rules on; contact hours and caps off, so the demo delivers
                // at any hour.
                policy: goniec_config::Policy::Transactional,
                antifraud: goniec_antifraud::TenantPolicy {
                    policy: goniec_antifraud::PolicyKind::Transactional,
                    ..Default::default()
                },
                ..Default::default()
            });
            run_daemon(cfg, Some(key))
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

fn run_sim(listen: SocketAddr, cfg: SimConfig) -> ExitCode {
    goniec_gateway::telemetry::init_logging(&goniec_config::Log::default());
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    rt.block_on(async {
        let stop = CancellationToken::new();
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
        wait_for_signal().await;
        stop.cancel();
        println!("{:?}", sim.stats());
        ExitCode::SUCCESS
    })
}

fn run_daemon(cfg: Config, demo_key: Option<String>) -> ExitCode {
    goniec_gateway::telemetry::init_logging(&cfg.log);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(cfg, demo_key)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("goniec: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(mut cfg: Config, demo_key: Option<String>) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    // The demo brings its own SMSC: the simulator, reached over real SMPP.
    let _sim = if demo_key.is_some() {
        let sim_cfg = SimConfig::default();
        let sim = SmscSim::start("127.0.0.1:0".parse()?, sim_cfg.clone(), shutdown.clone())
            .await
            .context("cannot start the SMSC simulator")?;
        cfg.connectors.push(ConnectorConfig {
            name: "smsc-sim".into(),
            tps: None,
            kind: ConnectorKind::Smpp(SmppConnector {
                port: sim.local_addr().port(),
                system_id: sim_cfg.system_id.clone(),
                password: sim_cfg.password.clone(),
                binds: 2,
                ..SmppConnector::default()
            }),
        });
        cfg.routes.push(Route {
            channel: Channel::Sms,
            prefix: None,
            connector: "smsc-sim".into(),
        });
        Some(sim)
    } else {
        None
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let token = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        token.cancel();
    });
    if let Some(key) = demo_key {
        tokio::spawn(async move {
            if let Ok(addr) = rx.await {
                print_demo_banner(addr, &key);
            }
        });
        goniec_gateway::run(cfg, shutdown, Some(tx))
            .await
            .context("gateway failed")
    } else {
        goniec_gateway::run(cfg, shutdown, None)
            .await
            .context("gateway failed")
    }
}

fn print_demo_banner(addr: SocketAddr, key: &str) {
    println!(
        "\nGoniec demo is running.\n\
         \x20 API:      http://{addr}\n\
         \x20 API key:  {key}\n\
         \x20 Metrics:  http://{addr}/metrics\n\n\
         Send a message:\n\
         \x20 curl -s -X POST http://{addr}/v1/messages \\\n\
         \x20   -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n\
         \x20   -d '{{\"channel\":\"sms\",\"to\":\"+48501234567\",\"text\":\"Dzień dobry! Przypominamy o płatności.\"}}'\n\n\
         SMS go over SMPP to the built-in SMSC simulator, which returns delivery receipts;\n\
         follow one with:  curl -s http://{addr}/v1/messages/<id> -H 'Authorization: Bearer {key}'\n\
         (RCS and e-mail arrive with their connectors.) Stop with Ctrl-C.\n"
    );
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
