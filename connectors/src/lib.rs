//! Goniec's ways out to carriers and providers.
//!
//! This crate owns what goes out ([`Outbound`]), what comes back
//! ([`Submitted`], [`Receipt`]) and how failures are classified
//! ([`DeliveryError`]); the gateway translates these into message statuses.
//! Every protocol implements [`Connector`]; [`build`] is the only registry.
//! [`text`] holds the SMS encoding rules shared by the API (segment counts at
//! acceptance) and the SMPP connector (the actual split), so both agree.

pub mod bounce;
pub mod model;
pub mod rcs;
pub mod smpp;
pub mod smtp;
pub mod stub;
/// A small seeded generator for property tests here and in `goniec-sims`.
#[doc(hidden)]
pub mod test_rng;
pub mod text;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use goniec_core::units::Rate;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use goniec_core::Channel;
pub use model::{
    Attachment, BindStatus, DeliveryError, EmailContent, Health, InboundMessage, Outbound,
    QueryAnswer, Receipt, ReceiptState, Submitted,
};

/// `[[connectors]]`: one way out to a carrier or provider, chosen by `kind`.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// Unique name; the route key and metric label.
    pub name: String,
    /// The carrier's contracted throughput across all binds/connections, e.g. `"500/s"`.
    pub tps: Option<Rate>,
    pub kind: ConnectorKind,
}

/// The protocol-specific part of a connector.
#[derive(Debug, Clone)]
pub enum ConnectorKind {
    /// A test double: accepts every message after `latency` and reports receipts.
    /// Only builds that include the `stub` feature can run it.
    Stub(stub::StubConfig),
    /// SMPP 3.4 to an SMSC.
    Smpp(smpp::config::Config),
    /// SMTP to a relay.
    Smtp(smtp::config::Config),
    /// Google RCS Business Messaging over its REST API.
    Rcs(rcs::config::Config),
}

impl ConnectorKind {
    pub fn kind_name(&self) -> &'static str {
        match self {
            ConnectorKind::Stub(_) => "stub",
            ConnectorKind::Smpp(_) => "smpp",
            ConnectorKind::Smtp(_) => "smtp",
            ConnectorKind::Rcs(_) => "rcs",
        }
    }

    /// Channels a connector of this kind carries; routes may only send it these.
    pub fn channels(&self) -> &[Channel] {
        match self {
            ConnectorKind::Stub(stub) => &stub.channels,
            ConnectorKind::Smpp(_) => &[Channel::Sms],
            ConnectorKind::Smtp(_) => &[Channel::Email],
            ConnectorKind::Rcs(_) => &[Channel::Rcs],
        }
    }
}

impl ConnectorKind {
    /// Check the kind's own settings (what each connector owns); the config
    /// crate adds the rules that span sections.
    pub fn check(&self, r: &mut dyn goniec_core::check::Report) {
        match self {
            ConnectorKind::Stub(c) => c.check(r),
            ConnectorKind::Smpp(c) => c.check(r),
            ConnectorKind::Smtp(c) => c.check(r),
            ConnectorKind::Rcs(c) => c.check(r),
        }
    }
}

/// One way out: an SMPP link, an RCS platform, an SMTP relay.
#[async_trait]
pub trait Connector: Send + Sync + fmt::Debug {
    /// Route key and metric label.
    fn name(&self) -> &str;
    /// Channels this connector can carry.
    fn channels(&self) -> &[Channel];
    /// Hand one message to the provider. `Ok` means the provider accepted it.
    async fn submit(&self, msg: &Outbound) -> Result<Submitted, DeliveryError>;
    /// Current health. Must be cheap: no I/O, no awaits.
    fn health(&self) -> Health;
    /// Each bind or connection, for the operator console. Must be cheap like
    /// [`Connector::health`]. Default: one entry from the health.
    fn binds(&self) -> Vec<BindStatus> {
        vec![BindStatus::from_health("connection", &self.health())]
    }
    /// How this connector splits long SMS, when it does, so the API reports the
    /// segment count the carrier will see. `None`: the API's default (`udh8`) rule.
    fn concat(&self) -> Option<text::Concat> {
        None
    }
    /// Withdraw a message the provider accepted but has not delivered (RCS revoke),
    /// so a fallback can be sent without the recipient getting both. `Ok(true)`:
    /// withdrawn, it will never be delivered; `Ok(false)`: too late (delivered, or
    /// the provider does not know it) or not supported; `Err`: could not tell, try
    /// again later.
    async fn revoke(&self, msg: &Outbound) -> Result<bool, DeliveryError> {
        let _ = msg;
        Ok(false)
    }
    /// Ask the provider what became of a message it accepted (SMPP `query_sm`), by one
    /// of its [`Submitted::query_ids`]; the gateway asks when a receipt is overdue.
    /// `Ok(None)`: this connector cannot be asked (the default). `Err`: could not ask
    /// now (no connection, timeout, throttled); ask again later.
    async fn query(
        &self,
        msg: &Outbound,
        query_id: &str,
    ) -> Result<Option<QueryAnswer>, DeliveryError> {
        let _ = (msg, query_id);
        Ok(None)
    }
    /// Stop: drain in-flight requests, unbind, close connections.
    async fn close(&self);
}

/// What a connector is handed when it is built.
#[derive(Clone)]
pub struct BuildContext {
    /// Where receipts (delivery reports) go; the gateway correlates and applies them.
    pub receipts: mpsc::Sender<Receipt>,
    /// Where messages from recipients (replies, `STOP`) go.
    pub inbound: mpsc::Sender<InboundMessage>,
    /// Cancelled when the gateway shuts down.
    pub shutdown: CancellationToken,
}

/// Why a connector could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configured kind is not compiled into this binary.
    #[error("connector `{name}`: kind `{kind}` is not available in this build ({why})")]
    Unavailable {
        name: String,
        kind: &'static str,
        why: &'static str,
    },
    /// The connector's configuration cannot work.
    #[error("connector `{name}`: {reason}")]
    Invalid { name: String, reason: String },
}

/// Build the connector a config section describes.
pub fn build(cfg: &ConnectorConfig, cx: BuildContext) -> Result<Arc<dyn Connector>, BuildError> {
    match &cfg.kind {
        ConnectorKind::Stub(stub_cfg) => {
            #[cfg(feature = "stub")]
            {
                Ok(Arc::new(stub::StubConnector::new(&cfg.name, stub_cfg, cx)?))
            }
            #[cfg(not(feature = "stub"))]
            {
                let _ = (stub_cfg, cx);
                Err(BuildError::Unavailable {
                    name: cfg.name.clone(),
                    kind: "stub",
                    why: "it is a test double, compiled only with the `stub` feature",
                })
            }
        }
        ConnectorKind::Smpp(smpp_cfg) => Ok(Arc::new(smpp::connector::SmppConnector::new(
            &cfg.name, smpp_cfg, cx,
        )?)),
        ConnectorKind::Smtp(smtp_cfg) => Ok(Arc::new(smtp::connector::SmtpConnector::new(
            &cfg.name, smtp_cfg, cx,
        )?)),
        ConnectorKind::Rcs(rcs_cfg) => Ok(Arc::new(rcs::connector::RcsConnector::new(
            &cfg.name, rcs_cfg, cx,
        )?)),
    }
}
