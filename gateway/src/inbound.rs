//! Replies from recipients (SMS mobile-originated messages to one of a tenant's
//! senders, RCS user messages to a tenant's agent): a reply that is just a stop keyword (`STOP`, `NIE`, per tenant) opts the
//! recipient out for that tenant, and every reply is forwarded, signed, to the
//! tenant's `inbound_url` through the webhook lane (so it is retried and
//! dead-lettered like callbacks). The connector acknowledges the reply to the
//! carrier only after both are stored.

use std::sync::Arc;

use goniec_antifraud::{is_stop_keyword, DEFAULT_STOP_KEYWORDS};
use goniec_config::Channel;
use goniec_connectors::InboundMessage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::store::{Job, Lane, Task};
use crate::telemetry::mask;
use crate::tenants::TenantCtx;

/// Handle inbound messages until the connectors close or `stop`.
pub async fn run(app: Arc<App>, mut rx: mpsc::Receiver<InboundMessage>, stop: CancellationToken) {
    loop {
        let m = tokio::select! {
            _ = stop.cancelled() => return,
            m = rx.recv() => match m {
                Some(m) => m,
                None => return,
            },
        };
        let outcome = handle(&app, &m).await;
        app.metrics
            .inbound
            .with_label_values(&[&m.connector, outcome])
            .inc();
        if outcome != "store_error" {
            if let Some(stored) = m.stored {
                let _ = stored.send(());
            }
        }
    }
}

/// Digits of an address, for comparing `+48500100200` with `48500100200`.
fn digits(a: &str) -> &str {
    a.trim_start_matches('+')
}

/// Whether `to` is one of the tenant's senders or pool numbers.
fn owns(t: &TenantCtx, to: &str) -> bool {
    let p = &t.cfg.antifraud;
    let same = |s: &String| digits(s).eq_ignore_ascii_case(digits(to));
    t.cfg.senders.iter().any(same)
        || p.senders.iter().any(same)
        || p.sender_pools
            .iter()
            .any(|pool| pool.numbers.iter().any(same))
}

/// The tenants an RCS user's message or UNSUBSCRIBE belongs to: those whose RCS
/// route to the user goes through `connector` and who have messaged the user
/// (within the store's retention). A shared agent never hands one tenant's
/// debtor's reply, or opt-out, to another.
pub async fn rcs_owners(
    app: &App,
    connector: &str,
    phone: &str,
) -> Result<Vec<Arc<TenantCtx>>, crate::store::StoreError> {
    let mut out = Vec::new();
    for t in app.tenants.all() {
        let routed = app
            .router
            .route(Channel::Rcs, &t.cfg.name, phone)
            .is_some_and(|l| l.connector.name() == connector);
        if !routed {
            continue;
        }
        let key = crate::store::HistoryKey::To(phone.to_owned());
        if !app
            .store
            .history(&t.cfg.name, &key, None, 1)
            .await?
            .is_empty()
        {
            out.push(t.clone());
        }
    }
    Ok(out)
}

async fn handle(app: &App, m: &InboundMessage) -> &'static str {
    let Ok(from) = crate::address::normalize_msisdn(&m.from, app.rules.region, false) else {
        tracing::info!(connector = %m.connector, from = %mask(&m.from), "Reply from an unusable number; ignored.");
        return "bad_sender";
    };
    // An SMS reply belongs to whoever sends from the number it went to; a message to
    // an RCS agent to the tenants that message the user through it.
    let owners: Vec<Arc<TenantCtx>> = match m.channel {
        Channel::Rcs => match rcs_owners(app, &m.connector, &from).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "Could not look up who messaged the sender; the platform will resend.");
                return "store_error";
            }
        },
        _ => app
            .tenants
            .all()
            .filter(|t| owns(t, &m.to))
            .cloned()
            .collect(),
    };
    if owners.is_empty() {
        tracing::info!(connector = %m.connector, to = %mask(&m.to), "Reply to an address no tenant sends from; ignored.");
        return "unknown_recipient";
    }
    let mut outcome = "ignored";
    let at = crate::model::format_ms(crate::model::now_ms());
    for t in owners {
        if t.cfg.inbound_url.is_some() {
            // In the sender's partition, beside the tenant's messages to them.
            let id = app.store.partitions().message_id(&t.cfg.name, &from);
            let body = serde_json::json!({
                "type": "inbound",
                "id": id,
                "channel": m.channel.as_str(),
                "from": from,
                "to": m.to,
                "text": m.text,
                "postback": m.postback,
                "connector": m.connector,
                "at": at,
            });
            let job = Job {
                id,
                attempt: 0,
                task: Task::Inbound {
                    tenant: t.cfg.name.clone(),
                    body: body.to_string(),
                },
            };
            if let Err(e) = app.store.enqueue(Lane::Webhook, job).await {
                tracing::warn!(error = %e, "Could not store a reply; the carrier will resend it.");
                return "store_error";
            }
            outcome = "forwarded";
        }
        let stop = match &t.cfg.stop_keywords {
            Some(words) => is_stop_keyword(&m.text, words),
            None => is_stop_keyword(&m.text, DEFAULT_STOP_KEYWORDS),
        };
        if !stop {
            continue;
        }
        let key = app.screener.opt_out_key(&t, m.channel, &from);
        if let Err(e) = app
            .store
            .set_opt_out(&key, true, crate::model::now_ms())
            .await
        {
            tracing::warn!(error = %e, "Could not store an opt-out; the carrier will resend the reply.");
            return "store_error";
        }
        tracing::info!(tenant = %t.cfg.name, from = %mask(&from), "Recipient opted out by reply.");
        outcome = "opt_out";
    }
    outcome
}
