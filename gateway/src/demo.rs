//! `goniec demo`: the gateway with its own SMSC, SMTP sink and RBM simulator,
//! reached over the real protocols, on the memory store (or Redis with
//! `--store`). Its configuration is an ordinary config file,
//! `config/demo.toml`, read and checked by the same loader as `goniec serve`'s,
//! with the simulators' ports, the key hashes and the files written at start
//! filled in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use goniec_config::Config;
use goniec_gateway::tenants::hash_key;
use goniec_sims::rbm::{RcsSim, RcsSimConfig};
use goniec_sims::smsc::{SimConfig, SmscSim};
use goniec_sims::smtp_sink::{SinkConfig, SmtpSink};
use tokio_util::sync::CancellationToken;

const TEMPLATE: &str = include_str!("../../config/demo.toml");
const BLOCKLIST: &str = include_str!("../../config/demo-blocklist.txt");

/// Demo numbers that cannot get RCS, and that never confirm delivery.
pub const NO_RCS: &str = "+48690";
pub const RCS_SILENT: &str = "+48691";

/// What the user chose on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// API key for the demo tenant (random when omitted).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Operator key for /v1/admin/* (random when omitted).
    #[arg(long)]
    pub admin_key: Option<String>,
    /// Run the demo on Redis instead of memory: `redis://HOST:PORT/DB`, or a
    /// Redis Cluster as `redis-cluster://HOST:PORT,HOST:PORT,…` (seed nodes).
    #[arg(long)]
    pub store: Option<String>,
    /// Print the demo's configuration (config/demo.toml filled in) and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// The keys and secrets the banner prints.
#[derive(Clone)]
pub struct Keys {
    pub api_key: String,
    pub admin_key: String,
    pub webhook_secret: String,
}

/// The running simulators and the temporary directory of the demo's files.
pub struct Demo {
    pub config: Config,
    /// The config text as loaded (for `--print-config`).
    pub text: String,
    pub keys: Keys,
    pub rcs: RcsSim,
    dir: PathBuf,
    _smsc: SmscSim,
    _sink: SmtpSink,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `goniec demo`: run until SIGTERM or Ctrl-C.
pub fn run(opts: Options) -> ExitCode {
    let print_config = opts.print_config;
    let Some(rt) = crate::process::runtime(0) else {
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

async fn demo_main(opts: Options, print_config: bool) -> anyhow::Result<()> {
    // The simulators outlive the gateway's drain (its SMPP unbind, last mail), so
    // they stop only after it returned.
    let sims_stop = CancellationToken::new();
    let _stop_sims = sims_stop.clone().drop_guard();
    let demo = start(opts, &sims_stop).await?;
    if print_config {
        print!("{}", demo.text);
        return Ok(());
    }
    goniec_gateway::telemetry::init_logging(&demo.config.log);
    let shutdown = CancellationToken::new();
    crate::process::stop_on_signal(&shutdown);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let rcs = demo.rcs.clone();
    let keys = demo.keys.clone();
    tokio::spawn(async move {
        if let Ok(addr) = rx.await {
            rcs.set_webhook(Some(format!("http://{addr}/v1/webhooks/rcs")));
            println!("{}", banner(addr, &keys));
        }
    });
    goniec_gateway::run(demo.config.clone(), shutdown, Some(tx))
        .await
        .context("gateway failed")
}

fn random_key(prefix: &str) -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    format!("{prefix}-{}", hex::encode(bytes))
}

/// A TOML basic string's content (the template puts the quotes).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn path_text(p: &Path) -> String {
    escape(&p.to_string_lossy())
}

/// Start the simulators (they stop with `sims_stop`) and build the config.
pub async fn start(opts: Options, sims_stop: &CancellationToken) -> anyhow::Result<Demo> {
    let dir = std::env::temp_dir().join(format!("goniec-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("cannot create the demo's temporary directory")?;
    let blocklist = dir.join("demo-blocklist.txt");
    std::fs::write(&blocklist, BLOCKLIST).context("cannot write the demo blocklist")?;
    let rcs_key = goniec_sims::rbm::write_demo_service_account(&dir)
        .context("cannot write the demo service account")?;

    let smsc_cfg = SimConfig::default();
    let smsc = SmscSim::start("127.0.0.1:0".parse()?, smsc_cfg.clone(), sims_stop.clone())
        .await
        .context("cannot start the SMSC simulator")?;
    let sink = SmtpSink::start(
        "127.0.0.1:0".parse()?,
        SinkConfig {
            starttls: true,
            ..Default::default()
        },
        sims_stop.clone(),
    )
    .await
    .context("cannot start the SMTP sink")?;
    let rcs_cfg = RcsSimConfig {
        unreachable_prefixes: vec![NO_RCS.into()],
        silent_prefixes: vec![RCS_SILENT.into()],
        ..RcsSimConfig::default()
    };
    let rcs = RcsSim::start("127.0.0.1:0".parse()?, rcs_cfg.clone(), sims_stop.clone())
        .await
        .context("cannot start the RCS simulator")?;

    let keys = Keys {
        api_key: opts.api_key.unwrap_or_else(|| random_key("demo")),
        admin_key: opts.admin_key.unwrap_or_else(|| random_key("admin")),
        webhook_secret: random_key("whsec"),
    };
    let nodes = opts
        .store
        .as_deref()
        .and_then(goniec_config::Store::cluster_nodes);
    let (backend, url) = match (&opts.store, &nodes) {
        (Some(_), Some(_)) => ("redis-cluster", "redis://127.0.0.1:6379/0"),
        (Some(url), None) => ("redis", url.as_str()),
        (None, _) => ("memory", "redis://127.0.0.1:6379/0"),
    };
    let nodes = nodes
        .unwrap_or_default()
        .iter()
        .map(|n| format!("\"{}\"", escape(n)))
        .collect::<Vec<_>>()
        .join(", ");
    let values = [
        ("listen", opts.listen.to_string()),
        ("store_backend", backend.into()),
        ("store_url", escape(url)),
        ("store_nodes", nodes),
        ("admin_key_hash", hash_key(&keys.admin_key)),
        ("api_key_hash", hash_key(&keys.api_key)),
        ("webhook_secret", escape(&keys.webhook_secret)),
        ("blocklist", path_text(&blocklist)),
        ("smsc_port", smsc.local_addr().port().to_string()),
        ("smsc_system_id", escape(&smsc_cfg.system_id)),
        ("smsc_password", escape(&smsc_cfg.password)),
        ("smtp_port", sink.local_addr().port().to_string()),
        ("rcs_base_url", escape(&rcs.base_url())),
        ("rcs_token_uri", escape(&rcs.token_uri())),
        ("rcs_agent_id", escape(&rcs_cfg.agent_id)),
        ("rcs_key", path_text(&rcs_key)),
        ("rcs_client_token", escape(&rcs_cfg.client_token)),
    ];
    let mut text = TEMPLATE.to_string();
    for (name, value) in &values {
        text = text.replace(&format!("{{{{{name}}}}}"), value);
    }
    // The demo's own file, not the environment: GONIEC_ overrides are for serve.
    let config = goniec_config::load_from_str(&text, [])
        .map_err(|e| anyhow::anyhow!("the demo config is invalid (a bug):\n{e}"))?;
    Ok(Demo {
        config,
        text,
        keys,
        rcs,
        dir,
        _smsc: smsc,
        _sink: sink,
    })
}

/// What a newcomer needs to try every example in the README.
pub fn banner(addr: SocketAddr, keys: &Keys) -> String {
    let Keys {
        api_key: key,
        admin_key,
        webhook_secret,
    } = keys;
    format!(
        "\nGoniec demo is running.\n\
         \x20 API:             http://{addr}\n\
         \x20 API key:         {key}\n\
         \x20 Admin key:       {admin_key}\n\
         \x20 Webhook secret:  {webhook_secret}\n\
         \x20 Metrics:         http://{addr}/metrics\n\
         \x20 Console:         http://{addr}/console (log in with the admin key)\n\n\
         For the README's examples:\n\
         \x20 export API=http://{addr} KEY={key} ADMIN_KEY={admin_key}\n\n\
         Send a message:\n\
         \x20 curl -s -X POST http://{addr}/v1/messages \\\n\
         \x20   -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n\
         \x20   -d '{{\"channel\":\"sms\",\"to\":\"+48501234567\",\"text\":\"Dzień dobry! Przypominamy o płatności.\"}}'\n\n\
         SMS go over SMPP to the built-in SMSC simulator, which returns delivery receipts;\n\
         e-mail (\"channel\":\"email\") goes over SMTP with STARTTLS to the built-in SMTP sink;\n\
         RCS (\"channel\":\"rcs\", \"fallback\":[\"sms\"]) goes to the built-in RBM simulator,\n\
         which posts signed DELIVERED and READ events back. Numbers starting {NO_RCS}\n\
         cannot get RCS (sent by SMS at once); those starting {RCS_SILENT} never confirm\n\
         delivery (revoked after 30 s, sent by SMS 10 s later).\n\
         Senders: \"Goniec\", \"+48500100200\" or the pool \"demo-pool\" (others are rejected).\n\
         Anti-fraud is on with a sample blocklist (a link to doplata-paczka.example is\n\
         rejected, a bit.ly link is held for the admin key); pumping checks are off\n\
         (a fresh demo has no traffic history to compare a load test with).\n\
         Callbacks are signed with the webhook secret above (Goniec-Signature).\n\
         Follow one with:  curl -s http://{addr}/v1/messages/<id> -H 'Authorization: Bearer {key}'\n\
         Stop with Ctrl-C.\n"
    )
}
