//! The stub connector itself (feature `stub`).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use goniec_core::Channel;

use super::{StubConfig, StubReceipt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    BuildContext, BuildError, Connector, DeliveryError, Health, Outbound, Receipt, ReceiptState,
    Submitted,
};

#[derive(Debug)]
pub struct StubConnector {
    name: String,
    channels: Vec<Channel>,
    latency: Duration,
    receipt_delay: Duration,
    receipt: Option<ReceiptState>,
    transient_every: u64,
    permanent_every: u64,
    record: Option<Mutex<std::fs::File>>,
    count: AtomicU64,
    receipts: mpsc::Sender<Receipt>,
    shutdown: CancellationToken,
}

impl StubConnector {
    pub fn new(name: &str, cfg: &StubConfig, cx: BuildContext) -> Result<Self, BuildError> {
        let receipt = match cfg.receipt {
            StubReceipt::Delivered => Some(ReceiptState::Delivered),
            StubReceipt::Undeliverable => Some(ReceiptState::Undeliverable),
            StubReceipt::None => None,
        };
        let record = match &cfg.record_to {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| BuildError::Invalid {
                        name: name.into(),
                        reason: format!("record_to {}: {e}", p.display()),
                    })?,
            )),
            None => None,
        };
        Ok(StubConnector {
            name: name.into(),
            channels: cfg.channels.clone(),
            latency: cfg.latency,
            receipt_delay: cfg.receipt_delay,
            receipt,
            transient_every: cfg.transient_every,
            permanent_every: cfg.permanent_every,
            record,
            count: AtomicU64::new(0),
            receipts: cx.receipts,
            shutdown: cx.shutdown,
        })
    }
}

#[async_trait]
impl Connector for StubConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn submit(&self, msg: &Outbound) -> Result<Submitted, DeliveryError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if self.transient_every > 0 && n.is_multiple_of(self.transient_every) {
            return Err(DeliveryError::Transient {
                reason: format!("stub transient failure #{n}"),
            });
        }
        if self.permanent_every > 0 && n.is_multiple_of(self.permanent_every) {
            return Err(DeliveryError::Permanent {
                code: "stub_rejected".into(),
                reason: format!("stub permanent failure #{n}"),
            });
        }
        if let Some(f) = &self.record {
            // Written before we answer, so a crash after this line is a recorded send.
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(f, "{}", msg.message_id);
            let _ = f.flush();
        }
        let provider_id = format!("stub-{}", ulid::Ulid::new());
        if let Some(state) = self.receipt {
            let receipt = Receipt {
                connector: self.name.clone(),
                provider_id: provider_id.clone(),
                stored: None,
                state,
                at: SystemTime::now(),
                error: (state != ReceiptState::Delivered)
                    .then(|| "stub: undeliverable".to_string()),
            };
            let tx = self.receipts.clone();
            let delay = self.receipt_delay;
            let stop = self.shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => { let _ = tx.send(receipt).await; }
                    _ = stop.cancelled() => {}
                }
            });
        }
        Ok(Submitted::single(provider_id))
    }

    fn health(&self) -> Health {
        Health::Up
    }

    async fn close(&self) {}
}
