//! An in-process gateway on a free port, for integration tests.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use goniec_config::Config;
use tokio_util::sync::CancellationToken;

/// The API key of the `acme` tenant in [`config_toml`].
pub const ACME_KEY: &str = "acme-test-key";
/// The API key of the `other` tenant in [`config_toml`].
pub const OTHER_KEY: &str = "other-test-key";
/// The operator key (`[admin]`).
pub const ADMIN_KEY: &str = "admin-test-key";
/// Both tenants' webhook secret.
pub const SECRET: &str = "test-webhook-secret-0123456789";

/// A test configuration: Redis at `redis_url` (memory when `None`), two tenants,
/// short timers, and `extra` TOML appended (connectors, routes).
pub fn config_toml(redis_url: Option<&str>, extra: &str) -> String {
    // Pipeline tests send many similar messages to neighbouring numbers at any hour:
    // exactly what anti-fraud holds. Its own tests turn it on.
    config_toml_with(redis_url, "[antifraud]\nenabled = false", extra)
}

/// [`config_toml`] with an `[antifraud]` section (and its subtables) of the test's own.
pub fn config_toml_with(redis_url: Option<&str>, antifraud: &str, extra: &str) -> String {
    let store = match redis_url {
        // A `redis-cluster://` URL ([`crate::RedisCluster::url`]).
        Some(u) => match goniec_config::Store::cluster_nodes(u) {
            Some(nodes) => format!(
                "backend = \"redis-cluster\"\nnodes = {nodes:?}\nprefix = \"t{}\"",
                ulid::Ulid::new()
            ),
            None => format!(
                "backend = \"redis\"\nurl = \"{u}\"\nprefix = \"t{}\"",
                ulid::Ulid::new()
            ),
        },
        None => "backend = \"memory\"".into(),
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_body = "2MiB"
shutdown_grace = "5s"

[store]
{store}
timeout = "1s"

[workers]
concurrency = 32
claim_batch = 32
claim_idle = "2s"
max_attempts = 4
retry_base = "100ms"
retry_max = "500ms"
schedule_poll = "50ms"

[webhooks]
timeout = "2s"
max_attempts = 3
retry_base = "50ms"
retry_max = "200ms"

[admin]
api_keys = ["{admin}"]

{antifraud}

[[tenants]]
name = "acme"
api_keys = ["{acme}"]
webhook_secret = "{SECRET}"
allow_private_callbacks = true
rate = "1000000/s"

[[tenants]]
name = "other"
api_keys = ["{other}"]
webhook_secret = "{SECRET}"
{extra}
"#,
        acme = goniec_gateway::tenants::hash_key(ACME_KEY),
        other = goniec_gateway::tenants::hash_key(OTHER_KEY),
        admin = goniec_gateway::tenants::hash_key(ADMIN_KEY),
    )
}

/// One stub connector `ok` for SMS, receipts 10 ms after each submit, and
/// the SMS route to it: the `extra` of [`config_toml`] for most tests that
/// need messages delivered.
pub const STUB_SMS: &str = r#"
[[connectors]]
name = "ok"
kind = "stub"
channels = ["sms"]
receipt_delay = "10ms"

[[routes]]
channel = "sms"
connector = "ok"
"#;

/// Anti-fraud on, with contact hours open around the clock (so tests do not
/// depend on when they run): an `antifraud` for [`config_toml_with`].
pub const ANTIFRAUD_OPEN_HOURS: &str = r#"[antifraud]
key_salt = "test-salt"

[antifraud.defaults.contact]
weekdays = "00:00-24:00"
saturday = "00:00-24:00"
sunday = "00:00-24:00"
holidays = "none"
"#;

/// Parse a test config, panicking with every error.
pub fn parse(toml: &str) -> Config {
    goniec_config::load_from_str(toml, std::iter::empty())
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"))
}

/// A running in-process gateway.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), goniec_gateway::Error>>,
    pub http: reqwest::Client,
}

impl TestGateway {
    pub async fn start(cfg: Config) -> TestGateway {
        let shutdown = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(goniec_gateway::run(cfg, shutdown.clone(), Some(tx)));
        let addr = match rx.await {
            Ok(a) => a,
            Err(_) => panic!("gateway did not start: {:?}", task.await),
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        TestGateway {
            addr,
            shutdown,
            task,
            http,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A request with the given tenant key.
    pub fn req(&self, method: reqwest::Method, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(key)
    }

    /// POST JSON as `acme`; returns (status, body).
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .req(reqwest::Method::POST, path, ACME_KEY)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// GET as `acme`; returns (status, body).
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .req(reqwest::Method::GET, path, ACME_KEY)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Poll a message until its status satisfies `done`, or panic after `within`.
    pub async fn wait_status(
        &self,
        id: &str,
        within: Duration,
        done: impl Fn(&str) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let (code, body) = self.get(&format!("/v1/messages/{id}")).await;
            if code == 200 && body["status"].as_str().is_some_and(&done) {
                return body;
            }
            if Instant::now() > deadline {
                panic!("message {id} did not reach the expected status in {within:?}; last: {code} {body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until `/readyz` answers `want`.
    pub async fn wait_ready(&self, want: u16, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = self.http.get(self.url("/readyz")).send().await {
                if r.status().as_u16() == want {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("/readyz did not become {want} within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The Prometheus text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// Stop and wait for the drain.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }
}

/// Sum of a metric's samples whose label set contains every `labels` pair.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Whether `sig` is a valid `Goniec-Signature` (`t=<unix>,v1=<hex>`) of `body` under
/// `secret`, recomputed from the documented formula: HMAC-SHA256 of `"<t>.<body>"`.
pub fn verify_signature(secret: &str, sig: &str, body: &str) -> bool {
    use hmac::{Hmac, Mac};
    let (mut t, mut v1) = (None, None);
    for part in sig.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&hex::decode(v1).unwrap_or_default())
        .is_ok()
}
