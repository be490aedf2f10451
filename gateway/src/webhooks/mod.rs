//! Customer status callbacks: signed, retried with exponential backoff, then
//! dead-lettered and counted.
//!
//! Every applied status change of a message with a callback URL puts a job on the
//! `webhook` lane in the same atomic step as the change itself, so no change is
//! reported twice by design and none is lost by a crash.
//!
//! Signature: `Goniec-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//!
//! A tenant with `callback_batch = { max, linger }` gets its callbacks in
//! batches: one signed POST whose body is a JSON array of callbacks (each as it
//! would be alone, `event_id` included), sent when `max` are waiting for the
//! same URL or `linger` after the first. Each callback keeps its own job: a
//! failed batch is retried (and dead-lettered) callback by callback, and a
//! retried one joins whatever batch forms then.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

pub(crate) mod batch;
mod outcome;

use batch::{Group, Joined};
use outcome::{Failure, Outcome};

use crate::app::App;
use crate::lease::backoff;
use crate::model::{format_ms, now_ms, Record};
use crate::store::{self, Lease, Task};
use crate::telemetry::mask;
use crate::tenants::TenantCtx;
use goniec_config::net::check_callback_url;
use goniec_config::net::is_private;

/// The callback body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallbackBody<'a> {
    /// The same for every attempt of this status change, across retries and
    /// crashes (message id, status and the change's time): receivers
    /// de-duplicate by it, since a callback whose 2xx came back but whose
    /// acknowledgement did not reach the store before a crash is posted again.
    pub event_id: String,
    pub id: &'a str,
    pub status: &'a str,
    pub channel: &'a str,
    pub to: &'a str,
    pub client_ref: Option<&'a str>,
    pub error: Option<&'a str>,
    pub at: String,
    /// `clicked` when a person followed the message's tracked link (`status`
    /// is then the message's status at the time); absent for status changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<&'static str>,
    /// The link's target, for `clicked`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<&'a str>,
}

/// A status change's event id: `<message id>.<status>.<ms of the change>`,
/// derived from the stored callback job, so every attempt carries the same one.
pub fn event_id(message_id: &str, status: &str, at_ms: i64) -> String {
    format!("{message_id}.{status}.{at_ms}")
}

/// `t=<unix>,v1=<hex>` for `body` signed at `t`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Resolves host names and drops loopback/private/link-local addresses, so a public
/// name pointing inside cannot be used to reach internal services. reqwest never
/// asks a resolver about an IP-literal host: those are checked in [`post`].
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = keep_public(&host, tokio::net::lookup_host((host.as_str(), 0)).await?)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The public addresses `host` resolved to, or an error that says why there are
/// none (it becomes the logged cause of the failed callback).
fn keep_public(
    host: &str,
    addrs: impl IntoIterator<Item = SocketAddr>,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let addrs = public_only(addrs);
    if addrs.is_empty() {
        return Err(format!("{host} resolves to no public address").into());
    }
    Ok(addrs)
}

/// The public addresses among `addrs` (a name may resolve to NAT64-synthesised
/// or IPv4-mapped addresses too: those are judged by the IPv4 address inside).
fn public_only(addrs: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    addrs.into_iter().filter(|a| !is_private(a.ip())).collect()
}

/// The two callback clients: public-only and private-allowed. No redirects are
/// followed (a redirect could point inside).
pub fn clients(timeout: Duration) -> (reqwest::Client, reqwest::Client) {
    let base = || {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("goniec/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
    };
    let strict = base()
        .dns_resolver(Arc::new(PublicOnly))
        .build()
        .unwrap_or_default();
    let open = base().build().unwrap_or_default();
    (strict, open)
}

/// `url` for logs: scheme, host, port and path only. User info, the query and
/// the fragment often carry tokens (`?token=…`) and are never logged.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let query = if u.query().is_some() { "?…" } else { "" };
            format!("{}://{host}{port}{}{query}", u.scheme(), u.path())
        }
        Err(_) => "<not a URL>".to_string(),
    }
}

/// An error with its causes (`a: b: c`), so "connection refused" and "resolves
/// to no public address" stay distinguishable; reqwest's own message is only
/// "error sending request". The URL is left out (it may carry a token).
fn cause_chain(e: reqwest::Error) -> String {
    goniec_core::cause::chain(&e.without_url())
}

/// Deliver one callback job and finish its lease.
/// `loaded`: the message record when the batch it came in loaded it already
/// (`None`: not loaded, fetch it).
/// `permit`: the lane's concurrency permit; a callback that joins a batch gives
/// it back while it waits, others hold it to the end.
pub async fn handle(
    app: Arc<App>,
    lease: Lease,
    loaded: Option<Option<Record>>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let mut permit = Some(permit);
    let outcome = deliver(&app, &lease, loaded, &mut permit).await;
    let wh = &app.cfg.webhooks;
    let m = &app.metrics;
    let end = match outcome {
        Outcome::Delivered => {
            m.webhooks.with_label_values(&["ok"]).inc();
            ("webhook_ack", store::Outcome::done())
        }
        Outcome::Drop(why) => {
            tracing::debug!(job = %lease.job.id, why, "Callback dropped.");
            m.webhooks.with_label_values(&["dropped"]).inc();
            ("webhook_ack", store::Outcome::done())
        }
        Outcome::Failed(f) if lease.job.attempt + 1 >= wh.max_attempts => {
            tracing::warn!(job = %lease.job.id, message_id = f.message_id.as_deref().unwrap_or("-"), tenant = %f.tenant, url = %f.url, attempts = lease.job.attempt + 1, cause = %f.cause, "Callback dead-lettered.");
            m.webhooks.with_label_values(&["dead"]).inc();
            m.webhook_dead.with_label_values(&[&f.tenant]).inc();
            m.dead_letters.with_label_values(&["webhook"]).inc();
            let reason = format!("max_attempts: {} ({})", f.cause, f.url);
            (
                "webhook_bury",
                store::Outcome::Bury {
                    reason,
                    change: None,
                },
            )
        }
        Outcome::Failed(f) => {
            tracing::debug!(job = %lease.job.id, message_id = f.message_id.as_deref().unwrap_or("-"), tenant = %f.tenant, url = %f.url, attempt = lease.job.attempt, cause = %f.cause, "Callback failed; will retry.");
            m.webhooks.with_label_values(&["retry"]).inc();
            let at_ms = now_ms()
                + backoff(lease.job.attempt, wh.retry_base, wh.retry_max).as_millis() as i64;
            let attempt = lease.job.attempt + 1;
            ("webhook_retry", store::Outcome::Retry { at_ms, attempt })
        }
    };
    crate::lease::finish(&app, end.0, &lease, end.1).await;
    drop(permit);
}

/// Sign and post `body` to `url` for `tenant` (`message_id`: for logs).
async fn post(
    app: &App,
    tenant: &TenantCtx,
    url: &str,
    body: Vec<u8>,
    message_id: Option<&str>,
) -> Outcome {
    let failed = |cause: String| {
        Outcome::Failed(Failure {
            cause,
            message_id: message_id.map(str::to_string),
            tenant: tenant.cfg.name.clone(),
            url: redact_url(url),
        })
    };
    let allow_private = tenant.cfg.allow_private_callbacks;
    // Checked again at every send, before connecting: the client connects to an
    // IP-literal host without asking the filtering resolver, and the URL may have
    // been stored (or configured) before a rule was added.
    // Parsed once: the checked URL is the one posted to.
    let parsed = match check_callback_url(url, allow_private) {
        Ok(u) => u,
        Err(e) => return failed(format!("blocked: {e}")),
    };
    let t = now_ms() / 1000;
    let signature = sign(&tenant.cfg.webhook_secret, t, &body);
    let client = if allow_private {
        &app.webhook_client_private
    } else {
        &app.webhook_client
    };
    let t0 = std::time::Instant::now();
    let res = client
        .post(parsed)
        .header("content-type", "application/json")
        .header("goniec-signature", signature)
        .body(body)
        .send()
        .await;
    let name = tenant.cfg.name.as_str();
    app.metrics
        .webhook_post_duration
        .with_label_values(&[name])
        .observe(t0.elapsed().as_secs_f64());
    let outcome = match res {
        Ok(r) if r.status().is_success() => Outcome::Delivered,
        Ok(r) => failed(format!("HTTP {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => failed(format!("timed out: {}", cause_chain(e))),
        Err(e) => failed(cause_chain(e)),
    };
    let result = match outcome {
        Outcome::Delivered => "ok",
        _ => "failed",
    };
    app.metrics
        .webhook_posts
        .with_label_values(&[name, result])
        .inc();
    outcome
}

/// Forward a recipient's reply to the tenant's `inbound_url`.
async fn deliver_inbound(app: &App, tenant: &str, body: &str) -> Outcome {
    let Some(tenant) = app.tenants.by_name(tenant) else {
        return Outcome::Drop("tenant gone");
    };
    let Some(url) = tenant.cfg.inbound_url.as_deref() else {
        return Outcome::Drop("no inbound url");
    };
    post(app, tenant, url, body.as_bytes().to_vec(), None).await
}

async fn deliver(
    app: &Arc<App>,
    lease: &Lease,
    loaded: Option<Option<Record>>,
    permit: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> Outcome {
    // What happened: a status change, or a click on a tracked link.
    let (message_id, click) = match &lease.job.task {
        Task::Inbound { tenant, body } => return deliver_inbound(app, tenant, body).await,
        Task::Callback(p) => (&p.message_id, None),
        Task::Clicked(c) => (&c.message_id, Some(c)),
        _ => return Outcome::Drop("not a callback"),
    };
    // A status change carries what its POST says of the message; a click (and
    // a job queued before callbacks carried it) needs the message's record.
    let carried = match &lease.job.task {
        Task::Callback(p) => p.context.as_ref(),
        _ => None,
    };
    let rec = match carried {
        Some(_) => None,
        None => {
            let fetched = match loaded {
                Some(rec) => Ok(rec),
                None => app.store.get(message_id).await,
            };
            match fetched {
                Ok(Some(r)) => Some(r),
                Ok(None) => return Outcome::Drop("message gone"),
                Err(e) => {
                    return Outcome::Failed(Failure {
                        cause: format!("store: {e}"),
                        message_id: Some(message_id.clone()),
                        tenant: "-".to_string(),
                        url: "-".to_string(),
                    })
                }
            }
        }
    };
    let from_record;
    let ctx = match (carried, &rec) {
        (Some(c), _) => c,
        (None, Some(r)) => {
            from_record = store::CallbackContext {
                tenant: r.data.tenant.clone(),
                channel: r.data.channel,
                to: r.data.to.clone(),
                client_ref: r.data.client_ref.clone(),
                url: r.data.callback_url.clone(),
            };
            &from_record
        }
        (None, None) => return Outcome::Drop("message gone"),
    };
    let Some(tenant) = app.tenants.by_name(&ctx.tenant) else {
        return Outcome::Drop("tenant gone");
    };
    let Some(url) = ctx.url.as_deref().or(tenant.cfg.callback_url.as_deref()) else {
        return Outcome::Drop("no callback url");
    };
    let body = match (&lease.job.task, click, &rec) {
        // A click reports the message's status at the time.
        (_, Some(c), Some(r)) => CallbackBody {
            event_id: event_id(message_id, "clicked", c.at),
            id: message_id,
            status: r.status.as_str(),
            channel: ctx.channel.as_str(),
            to: &ctx.to,
            client_ref: ctx.client_ref.as_deref(),
            error: None,
            at: format_ms(c.at),
            event: Some("clicked"),
            url: Some(&c.url),
        },
        (Task::Callback(p), None, _) => CallbackBody {
            event_id: event_id(message_id, p.status.as_str(), p.at),
            id: message_id,
            status: p.status.as_str(),
            channel: ctx.channel.as_str(),
            to: &ctx.to,
            client_ref: ctx.client_ref.as_deref(),
            error: p.reason.as_deref(),
            at: format_ms(p.at),
            event: None,
            url: None,
        },
        _ => return Outcome::Drop("not a callback"),
    };
    let Ok(bytes) = serde_json::to_vec(&body) else {
        return Outcome::Drop("unserializable");
    };
    let outcome = match &tenant.cfg.callback_batch {
        Some(b) => {
            // Trade the lane's permit for a batch slot: the wait for the batch
            // must not hold the lane's concurrency, and the slots bound it.
            let Some(slot) = app.callback_batches.slot().await else {
                return Outcome::Drop("shutting down");
            };
            let batched = join_batch(app, tenant, url, bytes, b);
            drop(permit.take());
            let outcome = batched.await;
            drop(slot);
            outcome
        }
        None => post(app, tenant, url, bytes, Some(message_id)).await,
    };
    if let Outcome::Delivered = outcome {
        tracing::debug!(message_id = %message_id, to = %mask(&ctx.to), event = body.event.unwrap_or(body.status), "Callback delivered.");
    }
    outcome
}

/// Add one callback body to its (tenant, URL) batch; the returned future is
/// the batch's outcome. The first one of a batch starts its linger timer; the
/// one that fills it sends it at once.
fn join_batch(
    app: &Arc<App>,
    tenant: &TenantCtx,
    url: &str,
    body: Vec<u8>,
    cfg: &goniec_config::CallbackBatch,
) -> impl std::future::Future<Output = Outcome> + use<> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let key = (tenant.cfg.name.clone(), url.to_string());
    match app.callback_batches.join(&key, body, cfg.max, tx) {
        Joined::Full(g) => {
            let app = app.clone();
            app.tracker
                .clone()
                .spawn(async move { send_batch(&app, key, g).await });
        }
        Joined::Started(id) => {
            let (app, linger) = (app.clone(), cfg.linger);
            app.tracker.clone().spawn(async move {
                tokio::time::sleep(linger).await;
                if let Some(g) = app.callback_batches.take(&key, id) {
                    send_batch(&app, key, g).await;
                }
            });
        }
        Joined::Waiting => {}
    }
    let (tenant, url) = (tenant.cfg.name.clone(), redact_url(url));
    async move {
        rx.await.unwrap_or_else(|_| {
            Outcome::Failed(Failure {
                cause: "batch abandoned at shutdown".into(),
                message_id: None,
                tenant,
                url,
            })
        })
    }
}

/// Post one batch as a JSON array and tell every callback in it the outcome.
async fn send_batch(app: &App, (tenant, url): (String, String), g: Group) {
    let outcome = match app.tenants.by_name(&tenant) {
        Some(t) => {
            let mut body =
                Vec::with_capacity(g.bodies.iter().map(|b| b.len() + 1).sum::<usize>() + 2);
            body.push(b'[');
            for (i, b) in g.bodies.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(b);
            }
            body.push(b']');
            post(app, t, &url, body, None).await
        }
        None => Outcome::Drop("tenant gone"),
    };
    for w in g.waiters {
        let _ = w.send(outcome.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_urls_carry_no_secrets() {
        for (url, shown) in [
            (
                "https://user:pa55@hooks.example.com:8443/cb/goniec?token=s3cret#frag",
                "https://hooks.example.com:8443/cb/goniec?…",
            ),
            ("http://10.0.0.1/x?sig=abc", "http://10.0.0.1/x?…"),
            ("https://hooks.example.com", "https://hooks.example.com/"),
            ("no url at all", "<not a URL>"),
        ] {
            assert_eq!(redact_url(url), shown);
            for secret in ["pa55", "s3cret", "user", "frag", "sig=abc"] {
                assert!(!redact_url(url).contains(secret));
            }
        }
    }

    #[tokio::test]
    async fn a_failed_post_says_its_real_cause_without_the_url() {
        // A closed port on loopback: connection refused.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/cb?token=s3cret");
        let (_, open) = clients(Duration::from_secs(2));
        let err = open.post(&url).send().await.unwrap_err();
        let cause = cause_chain(err);
        assert!(
            !cause.contains("s3cret") && !cause.contains("token"),
            "{cause}"
        );
        assert!(
            cause.to_ascii_lowercase().contains("refused"),
            "the cause is named: {cause}"
        );
        // A name that resolves only inside is refused by the strict client's
        // resolver, and says so (not just "error sending request"). Judged on
        // given addresses: a minimal system may not resolve `localhost` at all.
        let inside: Vec<SocketAddr> =
            vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
        let why = keep_public("hooks.internal", inside)
            .unwrap_err()
            .to_string();
        assert_eq!(why, "hooks.internal resolves to no public address");
        let mixed: Vec<SocketAddr> =
            vec!["10.0.0.1:0".parse().unwrap(), "8.8.8.8:0".parse().unwrap()];
        assert_eq!(
            keep_public("hooks.example", mixed).unwrap(),
            vec!["8.8.8.8:0".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn the_resolver_keeps_only_public_addresses() {
        let addrs: Vec<SocketAddr> = [
            "[64:ff9b::a9fe:a9fe]:0",
            "[::ffff:127.0.0.1]:0",
            "[2002:a00:1::1]:0",
            "[fd00::1]:0",
            "10.0.0.1:0",
            "8.8.8.8:0",
            "[64:ff9b::808:808]:0",
            "[2001:4860:4860::8888]:0",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let kept: Vec<String> = public_only(addrs)
            .iter()
            .map(|a| a.ip().to_string())
            .collect();
        assert_eq!(
            kept,
            ["8.8.8.8", "64:ff9b::808:808", "2001:4860:4860::8888"]
        );
    }

    /// The check [`post`] makes before connecting: literals that never reach the
    /// resolver are refused in every notation.
    #[test]
    fn literals_are_refused_at_send_time() {
        for url in [
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::]/",
            "http://2852039166/",
        ] {
            assert!(check_callback_url(url, false).is_err(), "{url}");
        }
        assert!(check_callback_url("http://[64:ff9b::808:808]/cb", false).is_ok());
    }

    /// Known-answer test: the expected value was computed outside Rust, with Python's
    /// `hmac.new(b"secret", b"1700000000.{}", hashlib.sha256).hexdigest()`.
    #[test]
    fn signature_follows_the_documented_formula() {
        assert_eq!(
            sign("secret", 1_700_000_000, b"{}"),
            "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
        assert_ne!(
            sign("other", 1_700_000_000, b"{}"),
            sign("secret", 1_700_000_000, b"{}")
        );
    }
}
