//! The Goniec gateway daemon.
//!
//! Module map, in the direction data moves:
//! * [`http`]: the REST API: routes, extractors (authentication, query
//!   strings), body limits, problem+json; it reads requests and renders answers.
//! * [`accept`]: a submission → stored messages, apart from HTTP: validation
//!   per channel (E.164, encoding, segments, templates, times), routing, rate
//!   limits, anti-fraud and contact-policy screening, suppression, idempotency.
//! * [`address`]: phone numbers and e-mail addresses in their one stored form.
//! * [`store`]: records, indexes and work queues (Redis or memory): the `goniec-store` crate.
//! * [`dispatch`]: per-channel workers handing messages to connectors.
//! * [`receipts`]: delivery reports → status changes.
//! * [`inbound`]: replies from recipients (`STOP` → opt-out).
//! * [`webhooks`]: status changes → signed customer callbacks.
//! * [`lease`]: finishing a lane's lease (retried store writes, backoff),
//!   shared by the workers above so none of them imports another.
//! * [`model`]: the stored message (ids, statuses and the transition table
//!   are `goniec-core`'s).
//! * [`operator`]: what operators do by hand (pauses, dead letters, held
//!   messages), audited; [`console`]: their live view and its login.
//! * [`telemetry`]: metrics and logging.
//! * [`app`]: the state everything shares, built once from config.
//! * [`tenants`]: tenants' settings, limiters and API key hashes.

pub mod accept;
pub mod address;
pub mod app;
pub mod campaigns;
pub mod console;
pub mod dispatch;
pub mod http;
pub mod inbound;
pub mod lease;
pub mod model;
pub mod operator;
pub mod receipts;
pub use goniec_store as store;
pub mod telemetry;
pub mod templates;
pub mod tenants;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use goniec_config::{Config, StoreBackend};
use goniec_connectors::{BuildContext, Connector};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{App, Router};
use crate::store::{Lane, Store};
use crate::telemetry::Metrics;
use crate::tenants::Tenants;

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A connector could not be built from its config.
    #[error(transparent)]
    Connector(#[from] goniec_connectors::BuildError),
    /// The store could not be set up.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The anti-fraud blocklist could not be loaded.
    #[error(transparent)]
    Blocklist(#[from] accept::screen::BlocklistError),
    /// A tenant's settings could not be prepared (e.g. an unreadable DKIM key).
    #[error("{0}")]
    Tenant(String),
    /// The HTTP server failed.
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Run the gateway until `shutdown` is cancelled, then drain and return.
/// `bound` receives the actual listen address (useful with port 0).
pub async fn run(
    cfg: Config,
    shutdown: CancellationToken,
    bound: Option<oneshot::Sender<SocketAddr>>,
) -> Result<(), Error> {
    let cfg = Arc::new(cfg);
    let store: Arc<dyn Store> = match cfg.store.backend {
        StoreBackend::Memory => Arc::new(store::memory::MemoryStore::new(&cfg.store)),
        StoreBackend::Redis | StoreBackend::RedisCluster => {
            let s = store::redis::RedisStore::new(&cfg.store)?;
            // Every configured tenant's queues ready before its first message.
            let tenants: Vec<String> = cfg.tenants.iter().map(|t| t.name.clone()).collect();
            if let Err(e) = s.prepare(&tenants).await {
                tracing::warn!(error = %e, "Redis is not reachable yet; starting anyway (not ready until it is).");
            }
            Arc::new(s)
        }
    };

    let screener = Arc::new(accept::screen::Screener::new(&cfg.antifraud)?);
    let (receipts_tx, receipts_rx) = mpsc::channel(10_000);
    let (inbound_tx, inbound_rx) = mpsc::channel(1_000);
    let connector_shutdown = CancellationToken::new();
    let mut connectors: Vec<Arc<dyn Connector>> = Vec::new();
    for c in &cfg.connectors {
        let cx = BuildContext {
            receipts: receipts_tx.clone(),
            inbound: inbound_tx.clone(),
            shutdown: connector_shutdown.clone(),
        };
        connectors.push(goniec_connectors::build(c, cx)?);
    }

    drop(receipts_tx);
    let (webhook_client, webhook_client_private) = webhooks::clients(cfg.webhooks.timeout);
    let app = Arc::new(App {
        batcher: store::batcher::accepts(store.clone()),
        finisher: {
            let store = store.clone();
            store::batcher::Batcher::new(move |items| {
                let store = store.clone();
                async move { store.finish_many(items).await }
            })
        },
        correlations: store::batcher::correlations(store.clone()),
        callback_batches: Default::default(),
        transitions: {
            let store = store.clone();
            store::batcher::Batcher::new(move |items| {
                let store = store.clone();
                async move { store.transition_many(items).await }
            })
        },
        metrics: Metrics::new(),
        tenants: Tenants::new(&cfg.tenants, &cfg.admin).map_err(Error::Tenant)?,
        router: Router::new(&cfg, &connectors),
        rules: accept::validate::Rules {
            max_schedule_ms: cfg.store.retention.as_millis().min(i64::MAX as u128) as i64,
            // Anti-fraud rejects unregistered senders itself (and knows sender pools).
            ..accept::validate::Rules::new(&cfg.server)
        },
        screener,
        templates: Default::default(),
        links: {
            let store = store.clone();
            store::batcher::Batcher::new(move |codes: Vec<String>| {
                let store = store.clone();
                async move { store.links().find_links(&codes, model::now_ms()).await }
            })
        },
        clicks: {
            let store = store.clone();
            store::batcher::Batcher::new(move |clicks: Vec<store::content::Click>| {
                let store = store.clone();
                async move { store.links().record_clicks(&clicks).await }
            })
        },
        // Checked by config validation.
        link_ranges: cfg
            .links
            .datacenter_ranges
            .iter()
            .filter_map(|r| r.parse().ok())
            .collect(),
        flags: Default::default(),
        stop_work: CancellationToken::new(),
        tracker: TaskTracker::new(),
        consumer: format!("{}-{}", std::process::id(), ulid::Ulid::new()),
        store,
        connectors,
        webhook_client,
        webhook_client_private,
        inbound: inbound_tx,
        paused: Default::default(),
        console: console::Console::new(cfg.admin.console_session),
        cfg: cfg.clone(),
    });
    app.flags
        .store_up
        .store(app.store.ping().await.is_ok(), Ordering::Relaxed);

    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: cfg.server.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(Error::Serve)?;
    // Metrics on an address of their own (admin.metrics_listen), bound now so a
    // taken port fails the start like the API's.
    let metrics_listener = match cfg.admin.metrics_listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .map_err(|source| Error::Listen { addr: at, source })?,
        ),
        None => None,
    };
    // Tracked-link redirects on an address of their own ([links] listen).
    let links_listener = match cfg.links.listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .map_err(|source| Error::Listen { addr: at, source })?,
        ),
        None => None,
    };
    // The phone-number metadata is built lazily by the first number parsed
    // (150–290 ms): build it before the first request, not inside it.
    let _ = address::normalize_msisdn("+48601234567", app.rules.region, true);
    tracing::info!(%addr, store = app.store.backend(), connectors = app.connectors.len(), "Goniec is listening.");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }

    // Background work that stops with the workers.
    let background = TaskTracker::new();
    background.spawn(health_loop(app.clone()));
    background.spawn(app.screener.clone().watch(app.stop_work.clone()));
    background.spawn(stats_loop(app.clone()));
    background.spawn(campaigns::runner::run(app.clone()));
    background.spawn(console::live::run(app.clone()));
    background.close();
    dispatch::spawn_all(&app);
    let receipts_stop = CancellationToken::new();
    let receipts_task = tokio::spawn(receipts::run(
        app.clone(),
        receipts_rx,
        receipts_stop.clone(),
    ));

    tokio::spawn(inbound::run(app.clone(), inbound_rx, receipts_stop.clone()));

    let http_stop = CancellationToken::new();
    // Our own accept loop rather than axum::serve: it caps connections and times
    // out slow request heads (see http::serve).
    let server = tokio::spawn(http::serve::serve(listener, app.clone(), http_stop.clone()));
    if let Some(l) = metrics_listener {
        let stop = http_stop.clone();
        let router = http::metrics_router(app.clone());
        tracing::info!(addr = ?l.local_addr().ok(), "Metrics have a listener of their own.");
        tokio::spawn(async move {
            let serve = axum::serve(l, router)
                .with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "The metrics listener failed.");
            }
        });
    }

    if let Some(l) = links_listener {
        let stop = http_stop.clone();
        let router = http::links::router(app.clone());
        tracing::info!(addr = ?l.local_addr().ok(), "Tracked links have a listener of their own.");
        tokio::spawn(async move {
            let serve = axum::serve(
                l,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "The links listener failed.");
            }
        });
    }

    shutdown.cancelled().await;
    // Drain: refuse new submissions (503) and turn readiness red while the HTTP
    // server keeps answering, stop claiming, let in-flight work finish.
    tracing::info!(grace = ?cfg.server.shutdown_grace, "Shutting down: draining in-flight work.");
    app.flags.shutting_down.store(true, Ordering::Relaxed);
    app.stop_work.cancel();
    app.tracker.close();
    if tokio::time::timeout(cfg.server.shutdown_grace, app.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("Grace period over with work in flight; unfinished messages stay queued and will be reclaimed.");
    }
    for c in &app.connectors {
        c.close().await;
    }
    connector_shutdown.cancel();
    // Apply the receipts still buffered; bounded so a dead store cannot hold shutdown.
    receipts_stop.cancel();
    if tokio::time::timeout(Duration::from_secs(5), receipts_task)
        .await
        .is_err()
    {
        tracing::warn!(
            "Receipts still unapplied at shutdown; the carrier will resend unacknowledged ones."
        );
    }
    background.wait().await;
    http_stop.cancel();
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Error::Serve(e)),
        Err(e) => tracing::error!(error = %e, "HTTP server task failed."),
    }
    tracing::info!("Goniec stopped.");
    Ok(())
}

/// Keeps `store_up` and the connector gauges current, so `/readyz` costs no I/O.
async fn health_loop(app: Arc<App>) {
    let mut was_up = app.flags.store_up();
    loop {
        let up = matches!(
            tokio::time::timeout(Duration::from_secs(2), app.store.ping()).await,
            Ok(Ok(()))
        );
        app.flags.store_up.store(up, Ordering::Relaxed);
        app.metrics.store_up.set(up as i64);
        if up != was_up {
            if up {
                tracing::info!("Store reachable again.");
            } else {
                tracing::error!(
                    "Store unreachable: refusing submissions with 503 until it returns."
                );
            }
            was_up = up;
        }
        for c in &app.connectors {
            app.metrics
                .connector_up
                .with_label_values(&[c.name()])
                .set(c.health().is_up() as i64);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = app.stop_work.cancelled() => return,
        }
    }
}

/// Samples queue gauges (depth, scheduled, dead letters, oldest age) per lane.
async fn stats_loop(app: Arc<App>) {
    loop {
        for lane in Lane::ALL {
            if let Ok(s) = app.store.lane_stats(lane, model::now_ms()).await {
                let l = [lane.as_str()];
                app.metrics
                    .queue_depth
                    .with_label_values(&l)
                    .set(s.depth as i64);
                app.metrics
                    .queue_scheduled
                    .with_label_values(&l)
                    .set(s.scheduled as i64);
                app.metrics
                    .queue_dead
                    .with_label_values(&l)
                    .set(s.dead as i64);
                app.metrics
                    .queue_due_soon
                    .with_label_values(&l)
                    .set(s.due_soon as i64);
                app.metrics
                    .queue_oldest_age
                    .with_label_values(&l)
                    .set(s.oldest_age_ms as f64 / 1000.0);
            }
        }
        if let Ok(n) = app.store.held_count().await {
            app.metrics.held.set(n as i64);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = app.stop_work.cancelled() => return,
        }
    }
}
