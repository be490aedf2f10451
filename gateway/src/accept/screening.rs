//! Screening a submission's valid messages: anti-fraud and the contact
//! policy through the [`Screener`](super::screen::Screener) (or, with anti-fraud
//! off, only the duties: opt-outs and registered senders), then the e-mail
//! suppression list. Places under counter limits (frequency caps, duplicates)
//! are then reserved atomically in the store, so the limits hold across
//! instances, and each verdict is applied to its message. After the messages
//! are stored, [`record`] counts them in the other anti-fraud counters; if the
//! request fails before the store write, [`release`] gives the places back.

use std::time::Instant;

use goniec_antifraud::{Cap, Decision, ReasonCode, Verdict};

use super::invalid::Refused;
use super::validate::Valid;
use crate::app::App;
use crate::model::MessageData;
use crate::tenants::TenantCtx;

/// Apply what a verdict decided to the message itself: the sender picked from a
/// pool, and the next allowed contact time.
fn apply_verdict(v: &mut Valid, verdict: &Verdict) {
    if let Some(sender) = &verdict.sender {
        v.data.from = Some(sender.clone());
    }
    if let Some(at) = verdict.schedule_at {
        let at = at.as_millisecond();
        if v.data.send_at.is_none_or(|s| s < at) {
            v.data.send_at = Some(at);
        }
    }
}

/// Screen valid messages (when anti-fraud is on) and apply each verdict to its
/// message. One store round trip for all of them.
pub(super) async fn screen_all(
    app: &App,
    tenant: &TenantCtx,
    valid: &mut [&mut Valid],
    now: i64,
) -> Result<Vec<Option<Verdict>>, Refused> {
    let unavailable = |e: crate::store::StoreError| {
        app.metrics
            .store_errors
            .with_label_values(&["screen"])
            .inc();
        tracing::warn!(error = %e, "Could not read anti-fraud state; answering 503.");
        Refused::StoreUnavailable
    };
    let mut verdicts: Vec<Option<Verdict>> = if app.screener.enabled && !valid.is_empty() {
        let t0 = Instant::now();
        let data = data(valid);
        let learnt: Vec<super::screen::Learnt<'_>> = valid
            .iter()
            .map(|v| super::screen::Learnt {
                links: &v.links,
                phone: v.phone.as_ref(),
            })
            .collect();
        let v = app
            .screener
            .screen(app.store.as_ref(), tenant, &data, &learnt, now)
            .await
            .map_err(unavailable)?;
        app.metrics
            .stage_duration
            .with_label_values(&["screen", valid[0].data.channel.as_str()])
            .observe(t0.elapsed().as_secs_f64());
        v.into_iter().map(Some).collect()
    } else if !valid.is_empty() {
        // Anti-fraud off: opt-outs and registered senders still apply (duties,
        // not fraud rules). A verdict is kept where it changes something.
        let data = data(valid);
        let v = app
            .screener
            .mandatory(app.store.as_ref(), tenant, &data, now)
            .await
            .map_err(unavailable)?;
        v.into_iter()
            .map(|v| {
                (v.decision != Decision::Allow || v.sender.is_some() || !v.record.is_empty())
                    .then_some(v)
            })
            .collect()
    } else {
        Vec::new()
    };
    // The e-mail suppression list (hard bounces) applies with or without anti-fraud.
    let emails: Vec<(usize, String)> = valid
        .iter()
        .enumerate()
        .filter(|(_, v)| v.data.channel == goniec_config::Channel::Email)
        .map(|(i, v)| (i, crate::address::suppression_key(&v.data.to)))
        .collect();
    if !emails.is_empty() {
        let addresses: Vec<&str> = emails.iter().map(|(_, a)| a.as_str()).collect();
        let found = app
            .store
            .suppressed(&tenant.cfg.name, &addresses)
            .await
            .map_err(unavailable)?;
        for ((i, _), reason) in emails.iter().zip(found) {
            if reason.is_none() {
                continue;
            }
            let v = verdicts[*i].get_or_insert_with(|| Verdict {
                decision: Decision::Allow,
                reasons: Vec::new(),
                schedule_at: None,
                sender: None,
                record: Vec::new(),
                caps: Vec::new(),
            });
            v.refuse(ReasonCode::Suppressed);
        }
    }
    reserve_caps(app, &mut verdicts)
        .await
        .map_err(unavailable)?;
    for (v, verdict) in valid.iter_mut().zip(&verdicts) {
        let Some(verdict) = verdict else { continue };
        apply_verdict(v, verdict);
        if !app.screener.enabled && verdict.decision == Decision::Allow {
            continue; // not an anti-fraud verdict: only the sender was resolved
        }
        app.metrics
            .verdicts
            .with_label_values(&[&tenant.cfg.name, verdict.decision.as_str()])
            .inc();
        for r in &verdict.reasons {
            app.metrics
                .verdict_reasons
                .with_label_values(&[&tenant.cfg.name, r.as_str()])
                .inc();
        }
        if verdict.decision != Decision::Allow {
            tracing::info!(message_id = %v.data.id, tenant = %tenant.cfg.name, decision = verdict.decision.as_str(), reasons = %reason_codes(Some(verdict)).join(","), "Anti-fraud verdict.");
        }
    }
    Ok(verdicts)
}

/// Count stored messages in the anti-fraud counters. A failure here is logged: the
/// messages are stored, and the counters only err towards allowing a few more.
pub(super) async fn record(app: &App, verdicts: &[Option<Verdict>]) {
    let incs: Vec<goniec_antifraud::Increment> = verdicts
        .iter()
        .flatten()
        .filter(|v| v.decision != Decision::Reject)
        .flat_map(|v| v.record.iter().cloned())
        .collect();
    if let Err(e) = app.store.count(&incs).await {
        app.metrics.store_errors.with_label_values(&["count"]).inc();
        tracing::warn!(error = %e, "Could not record anti-fraud counters.");
    }
}

/// Reserve the places the verdicts' capped counters need (frequency caps,
/// duplicates), message by message in order, in one round trip. A message
/// refused a place gets the full cap's reason, as if its screening had read the
/// counters after the message that took the place (both reasons reject); a
/// refused message counted nothing.
async fn reserve_caps(
    app: &App,
    verdicts: &mut [Option<Verdict>],
) -> Result<(), crate::store::StoreError> {
    if verdicts.iter().flatten().all(|v| v.caps.is_empty()) {
        return Ok(());
    }
    let groups: Vec<&[Cap]> = verdicts
        .iter()
        .flatten()
        .map(|v| v.caps.as_slice())
        .collect();
    let full = app.store.reserve(&groups).await?;
    for (v, full) in verdicts.iter_mut().flatten().zip(full) {
        if let Some(i) = full {
            let reason = v.caps.get(i).map_or(ReasonCode::FrequencyCap, Cap::reason);
            // Nothing of this message was counted: nothing to give back.
            v.caps.clear();
            v.refuse(reason);
        }
    }
    Ok(())
}

/// Give back the places the verdicts reserved: their messages were certainly
/// not stored (the request failed before the store write).
pub(super) async fn release(app: &App, verdicts: &[Option<Verdict>]) {
    let caps: Vec<&Cap> = verdicts.iter().flatten().flat_map(|v| &v.caps).collect();
    if caps.is_empty() {
        return;
    }
    if let Err(e) = app.store.release(&caps).await {
        app.metrics.store_errors.with_label_values(&["count"]).inc();
        tracing::warn!(error = %e, "Could not give back reserved anti-fraud places; the counters count a few messages too many until their window passes.");
    }
}

/// The anti-fraud reason codes of a verdict.
pub fn reason_codes(verdict: Option<&Verdict>) -> Vec<&'static str> {
    verdict.map_or_else(Vec::new, |v| v.reasons.iter().map(|r| r.as_str()).collect())
}

/// The data of the messages being screened.
fn data<'a>(valid: &'a [&mut Valid]) -> Vec<&'a MessageData> {
    valid.iter().map(|v| &v.data).collect()
}
