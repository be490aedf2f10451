//! `App`: everything built once from config and passed explicitly (no globals), so
//! two gateways can run in one test process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use goniec_config::{Channel, Config};
use goniec_connectors::Connector;
use governor::DefaultDirectRateLimiter;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accept::validate::Rules;
use crate::store::batcher::Batcher;
use crate::store::{Change, Lease, NewMessage, Outcome, Store, Transition};
use crate::telemetry::Metrics;
use crate::tenants::{limiter, Tenants};

/// A connector with its egress limiter.
pub struct Lane {
    pub connector: Arc<dyn Connector>,
    pub limiter: Option<DefaultDirectRateLimiter>,
}

/// One configured route.
struct RouteEntry {
    channel: Channel,
    prefix: Option<String>,
    tenant: Option<String>,
    lane: Arc<Lane>,
}

/// Routes (channel, tenant, destination prefix) → connector.
pub struct Router {
    routes: Vec<RouteEntry>,
}

impl Router {
    pub fn new(cfg: &Config, connectors: &[Arc<dyn Connector>]) -> Self {
        let lanes: Vec<Arc<Lane>> = connectors
            .iter()
            .map(|c| {
                let tps = cfg
                    .connectors
                    .iter()
                    .find(|k| k.name == c.name())
                    .and_then(|k| k.tps.as_ref());
                Arc::new(Lane {
                    connector: c.clone(),
                    limiter: tps.map(limiter),
                })
            })
            .collect();
        let routes = cfg
            .routes
            .iter()
            .filter_map(|r| {
                let lane = lanes.iter().find(|l| l.connector.name() == r.connector)?;
                Some(RouteEntry {
                    channel: r.channel,
                    prefix: r.prefix.as_ref().map(|p| match r.channel {
                        Channel::Email => p.to_ascii_lowercase(),
                        _ => p.clone(),
                    }),
                    tenant: r.tenant.clone(),
                    lane: lane.clone(),
                })
            })
            .collect();
        Router { routes }
    }

    /// The connector for a tenant's message: routes of that tenant win over shared
    /// ones, then the longest matching prefix of its channel.
    pub fn route(&self, channel: Channel, tenant: &str, to: &str) -> Option<&Arc<Lane>> {
        let to_lower;
        let to = if channel == Channel::Email {
            to_lower = to.to_ascii_lowercase();
            to_lower.as_str()
        } else {
            to
        };
        self.routes
            .iter()
            .filter(|r| {
                r.channel == channel
                    && r.tenant.as_deref().is_none_or(|t| t == tenant)
                    && r.prefix.as_deref().is_none_or(|p| match channel {
                        Channel::Email => to.ends_with(p),
                        _ => to.starts_with(p),
                    })
            })
            .max_by_key(|r| (r.tenant.is_some(), r.prefix.as_ref().map_or(0, String::len)))
            .map(|r| &r.lane)
    }

    /// Channels that have at least one route.
    pub fn channels(&self) -> Vec<Channel> {
        let mut v: Vec<Channel> = self.routes.iter().map(|r| r.channel).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Connectors serving a channel.
    pub fn connectors_for(&self, channel: Channel) -> impl Iterator<Item = &Arc<dyn Connector>> {
        self.routes
            .iter()
            .filter(move |r| r.channel == channel)
            .map(|r| &r.lane.connector)
    }
}

/// Liveness flags shared by the HTTP layer and the background tasks.
#[derive(Default)]
pub struct Flags {
    pub shutting_down: AtomicBool,
    pub store_up: AtomicBool,
}

impl Flags {
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
    pub fn store_up(&self) -> bool {
        self.store_up.load(Ordering::Relaxed)
    }
}

/// Everything the gateway's tasks share.
pub struct App {
    pub cfg: Arc<Config>,
    pub store: Arc<dyn Store>,
    /// Group commit for single submissions without an idempotency key.
    pub batcher: Batcher<NewMessage, ()>,
    /// Group commit for finishing leases (every lane's workers).
    pub finisher: Batcher<(Lease, Outcome), Transition>,
    /// Group commit for receipts: provider id lookups (connector, provider id)
    /// and the status changes they bring (message id, change).
    pub correlations: Batcher<(String, String), Option<String>>,
    pub transitions: Batcher<(String, Change), Transition>,
    /// Callbacks waiting to be posted together (tenants with `callback_batch`).
    pub callback_batches: crate::webhooks::batch::CallbackBatches,
    pub metrics: Metrics,
    pub tenants: Tenants,
    pub router: Router,
    pub connectors: Vec<Arc<dyn Connector>>,
    pub rules: Rules,
    /// Group commit for tracked-link lookups (code → link) and clicks.
    pub links: Batcher<String, Option<goniec_store::content::Link>>,
    pub clicks: Batcher<goniec_store::content::Click, goniec_store::content::ClickRecorded>,
    /// `[links] datacenter_ranges`, parsed.
    pub link_ranges: Vec<goniec_core::cidr::Cidr>,
    /// Stored template versions, compiled.
    pub templates: crate::templates::cache::TemplateCache,
    /// Anti-fraud screening and its blocklist.
    pub screener: Arc<crate::accept::screen::Screener>,
    pub flags: Flags,
    /// Cancelled when workers must stop taking new work.
    pub stop_work: CancellationToken,
    /// Tracks in-flight work that shutdown waits for.
    pub tracker: TaskTracker,
    /// This process's consumer name in the queue's consumer groups.
    pub consumer: String,
    /// Callback clients: one refusing private addresses, one allowing them.
    pub webhook_client: reqwest::Client,
    pub webhook_client_private: reqwest::Client,
    /// Where user messages that arrive over HTTP (RCS webhooks) go: the inbound
    /// path the connectors feed.
    pub inbound: tokio::sync::mpsc::Sender<goniec_connectors::InboundMessage>,
    /// Tenants and connectors an operator paused (refreshed every second).
    pub paused: crate::operator::paused::Paused,
    /// The operator console: sessions, the live view, submit times.
    pub console: crate::console::Console,
}
