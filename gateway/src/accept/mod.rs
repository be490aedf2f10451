//! Accepting messages, apart from HTTP: a submission (one message is a batch
//! of one) is validated item by item ([`validate`]), routed, rate-limited,
//! screened by anti-fraud, the contact policy and the suppression list
//! ([`screen`] holds the [`Screener`](screen::Screener)), and stored in one round trip, under an optional idempotency
//! key ([`idempotency`]). [`accept`] returns each item's [`Outcome`]; the HTTP
//! layer only reads requests and renders answers.
//!
//! Nothing is stored unless the whole submission can be answered: a refusal
//! of the submission as a whole ([`Refused`]) stores nothing, and a stored
//! message is always in its answer.

use std::time::Instant;

use goniec_antifraud::{Decision, Verdict};
use goniec_core::Problem;

mod batch;
pub mod idempotency;
pub mod invalid;
pub mod screen;
mod screening;
pub mod templates;
pub mod validate;

pub use idempotency::Idem;
pub use invalid::{Invalid, Refused};
pub use screening::reason_codes;

use crate::app::App;
use crate::model::{now_ms, Event, Status};
use crate::store::content::Link;
use crate::store::{IdemWrite, NewMessage};
use crate::tenants::TenantCtx;
use validate::{parse_request, validate, Valid};

/// What became of one item of a submission.
#[derive(Debug)]
pub enum Outcome {
    /// Stored (`queued`, `scheduled` or `held`).
    Accepted(Accepted),
    /// Refused by anti-fraud or the contact policy, and stored as `rejected`.
    Rejected {
        id: String,
        channel: goniec_config::Channel,
        reasons: Vec<&'static str>,
    },
    /// Not valid; nothing stored.
    Invalid(Invalid),
}

/// What the answer says about a stored message. Only this is kept of a
/// message once its stored form exists, so a batch never holds every message
/// twice.
#[derive(Debug)]
pub struct Accepted {
    pub id: String,
    pub channel: goniec_config::Channel,
    /// For logs (masked there).
    pub to: String,
    pub status: Status,
    pub segments: u32,
    pub encoding: Option<String>,
    pub transliterated: bool,
    pub send_at: Option<i64>,
    /// Anti-fraud reasons: why it is held or scheduled.
    pub reasons: Vec<&'static str>,
}

/// The answer of a submission, as the HTTP layer renders it: stored in the same
/// transaction as the messages when the submission has an idempotency key.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// A submission's body: one message, or a batch (`{"messages": [...]}` of at
/// most `max`) whose items are answered one by one. A batch's body is dropped
/// (its share of the buffer budget given back) once its items are read.
pub enum Items<B> {
    One(B),
    Batch {
        body: B,
        max: usize,
    },
    /// A campaign's batch: item `i` is sent by `tags[i]`.
    Campaign {
        body: B,
        tags: Vec<crate::model::CampaignRef>,
    },
}

/// Accept `items` for `tenant`. `render` turns the outcomes into the answer
/// (the idempotency key stores it with the messages, so a replay is answered
/// byte for byte).
pub async fn accept<B: std::ops::Deref<Target = [u8]>>(
    app: &App,
    tenant: &TenantCtx,
    items: Items<B>,
    idem: &Idem,
    render: impl FnOnce(&[Outcome]) -> Result<Answer, Refused>,
) -> Result<(Vec<Outcome>, Answer), Refused> {
    let now = now_ms();
    let (single, mut prepared) = match items {
        Items::One(body) => {
            let json = std::str::from_utf8(&body)
                .map_err(|_| Invalid::new(Problem::MalformedJson, "request body is not UTF-8"))?;
            let tpl = templates::resolve(app, &tenant.cfg.name, json, None).await?;
            (true, vec![Ok(prepare(app, tenant, json, now, &tpl)?)])
        }
        Items::Batch { .. } | Items::Campaign { .. } => {
            let (body, max, tags) = match items {
                Items::Batch { body, max } => (body, max, None),
                Items::Campaign { body, tags } => {
                    let n = tags.len();
                    (body, n, Some(tags))
                }
                Items::One(_) => unreachable!("matched above"),
            };
            let json = std::str::from_utf8(&body)
                .map_err(|_| Invalid::new(Problem::MalformedJson, "request body is not UTF-8"))?;
            let tpl = templates::resolve(app, &tenant.cfg.name, json, Some(max)).await?;
            // First pass: the envelope's shape and the number of items, building
            // nothing; a batch over the limit is refused before any item is read.
            let mut total = 0;
            batch::parse(json, max, |_| total += 1)?;
            if total == 0 {
                return Err(Invalid::new(Problem::EmptyBatch, "`messages` is empty")
                    .field("messages")
                    .into());
            }
            // Second pass: each item validated as the parser reaches it, into a
            // vector of exactly the right size.
            let mut prepared = Vec::with_capacity(total);
            batch::parse(json, max, |item| {
                prepared.push(prepare(app, tenant, item, now, &tpl));
            })?;
            // Every message now owns its data: give the body back before the
            // store round trip.
            drop(body);
            if let Some(tags) = tags {
                for (p, tag) in prepared.iter_mut().zip(tags) {
                    if let Ok(v) = p {
                        v.data.campaign = Some(tag);
                    }
                }
            }
            (false, prepared)
        }
    };
    let n_valid = prepared.iter().filter(|r| r.is_ok()).count();
    rate_limit(tenant, n_valid as u32)?;
    let mut valid: Vec<&mut Valid> = prepared
        .iter_mut()
        .filter_map(|r| r.as_mut().ok())
        .collect();
    // From here on the verdicts hold reserved places under counter limits:
    // given back if the request fails before the store write. A failed write
    // may still have stored some messages (a cluster commits per slot; a reply
    // can be lost after the write), so then the places are kept: a count too
    // high until the window passes, never a cap or duplicate check missed.
    let verdicts = screening::screen_all(app, tenant, &mut valid, now).await?;
    let writing = std::sync::atomic::AtomicBool::new(false);
    let stored = async {
        let mut verdict_of = verdicts.iter();
        let mut msgs = Vec::with_capacity(n_valid);
        let mut outcomes = Vec::with_capacity(prepared.len());
        let mut links = Vec::new();
        let link_ttl = tenant.cfg.links.ttl.as_millis().min(i64::MAX as u128) as i64;
        for r in prepared {
            match r {
                Ok(v) => {
                    links.extend(v.links.iter().map(|(code, target)| Link {
                        code: code.clone(),
                        tenant: tenant.cfg.name.clone(),
                        message_id: v.data.id.clone(),
                        target: target.clone(),
                        expires_at: now.saturating_add(link_ttl),
                    }));
                    let verdict = verdict_of.next().and_then(Option::as_ref);
                    let (msg, status) = new_message(&v, now, verdict)?;
                    let reasons = reason_codes(verdict);
                    outcomes.push(if status == Status::Rejected {
                        Outcome::Rejected {
                            id: v.data.id.clone(),
                            channel: v.data.channel,
                            reasons,
                        }
                    } else {
                        Outcome::Accepted(Accepted {
                            id: v.data.id,
                            channel: v.data.channel,
                            to: v.data.to,
                            status,
                            segments: v.data.segments,
                            encoding: v.data.encoding,
                            transliterated: v.data.transliterated,
                            send_at: v.data.send_at,
                            reasons,
                        })
                    });
                    msgs.push(msg);
                }
                Err(e) => outcomes.push(Outcome::Invalid(e)),
            }
        }
        let answer = render(&outcomes)?;
        let write = match idem {
            Idem::Fresh { key, fingerprint } => Some(IdemWrite {
                tenant: &tenant.cfg.name,
                key,
                fingerprint,
                status: answer.status,
                body: &answer.body,
            }),
            Idem::None | Idem::Replay { .. } => None,
        };
        // Links first: a message never shows a code the store does not know. Links
        // of messages that then fail to store are never shown, and expire.
        if !links.is_empty() {
            if let Err(e) = app.store.links().put_links(&links).await {
                app.metrics.store_errors.with_label_values(&["links"]).inc();
                tracing::warn!(error = %e, "Could not store tracked links; answering 503.");
                return Err(Refused::StoreUnavailable);
            }
        }
        if !msgs.is_empty() || write.is_some() {
            writing.store(true, std::sync::atomic::Ordering::Relaxed);
            let t0 = Instant::now();
            let count = msgs.len();
            let stage = if single {
                msgs.first().map_or("batch", |m| m.channel.as_str())
            } else {
                "batch"
            };
            let stored = match write {
                // Alone and without a key: group commit with other requests.
                None if single && count == 1 => match msgs.pop() {
                    Some(m) => app.batcher.run(m).await,
                    None => Ok(()),
                },
                // With an idempotency key the answer is written in the same transaction.
                write => app.store.accept(&msgs, write).await,
            };
            if let Err(e) = stored {
                app.metrics
                    .store_errors
                    .with_label_values(&["accept"])
                    .inc();
                tracing::warn!(error = %e, count, "Could not store messages; answering 503.");
                return Err(Refused::StoreUnavailable);
            }
            app.metrics
                .stage_duration
                .with_label_values(&["store_accept", stage])
                .observe(t0.elapsed().as_secs_f64());
        }
        Ok((outcomes, answer))
    }
    .await;
    match stored {
        Ok((outcomes, answer)) => {
            screening::record(app, &verdicts).await;
            count_outcomes(app, tenant, &outcomes, single);
            Ok((outcomes, answer))
        }
        Err(e) => {
            if !writing.load(std::sync::atomic::Ordering::Relaxed) {
                screening::release(app, &verdicts).await;
            }
            Err(e)
        }
    }
}

/// One counter update per channel and kind, not per message.
fn count_outcomes(app: &App, tenant: &TenantCtx, outcomes: &[Outcome], single: bool) {
    for ch in goniec_config::Channel::ALL {
        let n = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Accepted(a) if a.channel == ch))
            .count() as u64;
        if n > 0 {
            app.metrics
                .accepted
                .with_label_values(&[&tenant.cfg.name, ch.as_str()])
                .inc_by(n);
        }
    }
    for o in outcomes {
        match o {
            // A single message refused by anti-fraud is counted as refused
            // with its channel; a batch's rejections are told in its answer.
            Outcome::Rejected { channel, .. } if single => {
                refuse(app, &tenant.cfg.name, channel.as_str(), Problem::Rejected)
            }
            Outcome::Rejected { .. } => {}
            Outcome::Accepted(a) => {
                tracing::debug!(message_id = %a.id, tenant = %tenant.cfg.name, channel = a.channel.as_str(), to = %crate::telemetry::mask(&a.to), "Message accepted.");
            }
            Outcome::Invalid(_) => {}
        }
    }
}

/// The stored form of a valid message (and its verdict, when screened).
fn new_message(
    v: &Valid,
    now: i64,
    verdict: Option<&Verdict>,
) -> Result<(NewMessage, Status), Refused> {
    let decision = verdict.map(|v| v.decision);
    let status = match decision {
        Some(Decision::Reject) => Status::Rejected,
        Some(Decision::Hold) => Status::Held,
        _ if v.data.send_at.is_some() => Status::Scheduled,
        _ => Status::Queued,
    };
    let data_json = serde_json::to_string(&v.data).map_err(|e| Refused::Internal(e.to_string()))?;
    let reasons = reason_codes(verdict).join(",");
    let ev = |status| Event {
        status,
        at: now,
        reason: (status != Status::Accepted && !reasons.is_empty()).then(|| reasons.clone()),
        detail: None,
    };
    Ok((
        NewMessage {
            id: v.data.id.clone(),
            tenant: v.data.tenant.clone(),
            channel: v.data.channel,
            to: v.data.to.clone(),
            client_ref: v.data.client_ref.clone(),
            status,
            due_ms: v.data.send_at,
            data_json,
            events: vec![ev(Status::Accepted), ev(status)],
            callbacks: v.callbacks.clone(),
            callback_url: v.data.callback_url.clone(),
            campaign: v.data.campaign.as_ref().map(|c| (c.id.clone(), c.step)),
        },
        status,
    ))
}

/// Parse, validate and route one message. A refusal is counted with the message's
/// channel when the request got far enough to name one.
fn prepare(
    app: &App,
    tenant: &TenantCtx,
    json: &str,
    now: i64,
    templates: &templates::Resolved,
) -> Result<Valid, Invalid> {
    let mut channel = "-";
    let result = (|| {
        let req = parse_request(json)?;
        let ch = req.channel;
        channel = ch.as_str();
        let template = match &req.template_id {
            Some(id) => Some(
                templates
                    .get(id, req.template_version)
                    .ok_or_else(|| {
                        Invalid::new(
                            Problem::UnknownTemplate,
                            match req.template_version {
                                Some(v) => {
                                    format!("this tenant has no template `{id}` version {v}")
                                }
                                None => format!("this tenant has no template `{id}`"),
                            },
                        )
                        .field("template_id")
                    })?
                    .as_ref(),
            ),
            None => None,
        };
        let mut v = validate(
            req,
            &tenant.cfg,
            &app.rules,
            app.store.partitions(),
            now,
            template,
        )?;
        let Some(lane) = app.router.route(ch, &v.data.tenant, &v.data.to) else {
            return Err(Invalid::new(
                Problem::NoRoute,
                format!("no connector is configured for {ch} messages to this destination"),
            )
            .field("channel"));
        };
        // 16-bit UDH leaves one character less per part: count as it will be sent.
        use goniec_connectors::text::{self, Concat};
        if let (Some(Concat::Udh16), Some(body)) = (lane.connector.concat(), &v.data.text) {
            if v.data.segments > 1 {
                let enc = text::analyze(body).encoding;
                v.data.segments = text::split(body, enc, Concat::Udh16).len() as u32;
            }
        }
        Ok(v)
    })();
    if let Err(e) = &result {
        refuse(app, &tenant.cfg.name, channel, e.code);
    }
    result
}

/// Count a refused message.
pub fn refuse(app: &App, tenant: &str, channel: &str, code: Problem) {
    app.metrics
        .refused
        .with_label_values(&[tenant, channel, code.as_str()])
        .inc();
}

/// The tenant's message rate, for `n` messages at once.
fn rate_limit(tenant: &TenantCtx, n: u32) -> Result<(), Refused> {
    let Some(l) = &tenant.limiter else {
        return Ok(());
    };
    let Some(n) = std::num::NonZeroU32::new(n) else {
        return Ok(());
    };
    match l.check_n(n) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(not_until)) => {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            Err(Refused::RateLimited {
                detail: format!(
                    "over this tenant's message rate; retry in {} ms",
                    wait.as_millis()
                ),
                retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
            })
        }
        Err(_) => Err(Refused::RateLimited {
            detail: format!(
                "{n} messages at once exceed this tenant's rate burst; send smaller batches"
            ),
            retry_after: 1,
        }),
    }
}
