//! What operators do by hand, whether through `/v1/admin/*` with an operator
//! key or through the console with a session: pause and resume tenants and
//! connectors, send dead letters back or throw them away, release or drop
//! held messages. Every action is written to the admin log (who, when, what)
//! in the store, shared by every instance, and logged.
//!
//! Pauses are shared too: each instance reads them from the store every second
//! ([`refresh_pauses`]) and the instance that changes one applies it at once.
//! A paused connector keeps its binds and submits nothing; a paused tenant's
//! messages are not submitted. Either way messages wait in the queue and none
//! fails; `valid_until` still applies. A paused tenant's queues are left out
//! of claims ([`crate::store::Store::skip_tenants`]) and a lane whose every
//! connector is paused claims nothing, so a paused backlog costs no work; a
//! message claimed anyway (just before the pause, or routed to a paused
//! connector beside one that is not) goes back and looks again every
//! [`PAUSED_RECHECK_MS`], without using up an attempt.

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::model::Status;
use crate::model::{format_ms, now_ms};
use crate::store::operator::DeadLetter;
use crate::store::{Job, Lane, StoreError, Task};

pub mod paused;

/// How long a message of a paused tenant or connector waits before it looks again.
pub const PAUSED_RECHECK_MS: i64 = 5_000;

/// Who acts: `Ala (key sha256:1a2b3c4d)` from the console, `key sha256:1a2b3c4d`
/// with a bearer key. The key is named by the start of its configured hash,
/// never by the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who(pub String);

/// What can be paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PauseKind {
    Tenant,
    Connector,
}

impl PauseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseKind::Tenant => "tenant",
            PauseKind::Connector => "connector",
        }
    }

    fn target(self, name: &str) -> String {
        format!("{}:{name}", self.as_str())
    }
}

/// One paused target as the console and `/v1/admin/pauses` show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Pause {
    pub kind: PauseKind,
    pub name: String,
    pub by: String,
    pub at: String,
}

/// Every paused target in the store, and this instance's view brought up to date.
pub async fn refresh_pauses(app: &App) -> Result<Vec<Pause>, StoreError> {
    let all = app.store.operator().pauses().await?;
    app.paused.set(all.iter().map(|(t, _)| t.clone()));
    // A paused tenant's messages stay in the queue, unclaimed.
    app.store.skip_tenants(
        all.iter()
            .filter_map(|(t, _)| t.strip_prefix("tenant:"))
            .map(str::to_string)
            .collect(),
    );
    Ok(all
        .into_iter()
        .filter_map(|(target, info)| {
            let (kind, name) = target.split_once(':')?;
            let kind = match kind {
                "tenant" => PauseKind::Tenant,
                "connector" => PauseKind::Connector,
                _ => return None,
            };
            let info: serde_json::Value = serde_json::from_str(&info).unwrap_or_default();
            Some(Pause {
                kind,
                name: name.to_string(),
                by: info["by"].as_str().unwrap_or_default().to_string(),
                at: info["at"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect())
}

/// Why an operator action did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Pause (`paused`) or resume a tenant or connector. Returns whether anything
/// changed (pausing a paused one changes nothing and is not logged again).
pub async fn set_pause(
    app: &App,
    who: &Who,
    kind: PauseKind,
    name: &str,
    paused: bool,
) -> Result<bool, ActionError> {
    let known = match kind {
        PauseKind::Tenant => app.tenants.by_name(name).is_some(),
        PauseKind::Connector => app.connectors.iter().any(|c| c.name() == name),
    };
    // A pause of something since removed from the configuration can still be lifted.
    if !known && paused {
        return Err(ActionError::NotFound(kind.as_str()));
    }
    let target = kind.target(name);
    let info =
        paused.then(|| serde_json::json!({"by": who.0, "at": format_ms(now_ms())}).to_string());
    let changed = app
        .store
        .operator()
        .set_pause(&target, info.as_deref())
        .await?;
    // This instance at once; the others within a second.
    let _ = refresh_pauses(app).await;
    if changed {
        let action = if paused { "pause" } else { "resume" };
        audit(app, who, action, &target, "").await;
    }
    Ok(changed)
}

/// Send dead letter `id` of `lane` back to its lane with its attempts reset.
/// A channel lane's message must still be waiting to be sent (a message that
/// failed after its last attempt is final: the customer was told).
pub async fn requeue_dead(
    app: &App,
    who: &Who,
    lane: Lane,
    id: &str,
) -> Result<DeadLetter, ActionError> {
    let op = app.store.operator();
    let d = op
        .dead_letter(lane, id)
        .await?
        .ok_or(ActionError::NotFound("dead letter"))?;
    let tenant = match lane {
        Lane::Webhook => String::new(),
        Lane::Channel(_) => {
            let rec = app.store.get(&d.job.id).await?.ok_or_else(|| {
                ActionError::Refused("its message is past retention; nothing to send".into())
            })?;
            if rec.status.is_final() {
                return Err(ActionError::Refused(format!(
                    "its message is {} (final; the sender was told), so it is not sent again; \
                     send a new message or discard this entry",
                    rec.status
                )));
            }
            rec.data.tenant
        }
    };
    let job = Job {
        attempt: 0,
        ..d.job.clone()
    };
    if !op.requeue_dead(lane, id, &job, &tenant, now_ms()).await? {
        return Err(ActionError::NotFound("dead letter"));
    }
    audit(app, who, "requeue", &format!("{lane}/{id}"), &d.reason).await;
    Ok(d)
}

/// Remove dead letter `id` of `lane`.
pub async fn discard_dead(app: &App, who: &Who, lane: Lane, id: &str) -> Result<(), ActionError> {
    let op = app.store.operator();
    let d = op
        .dead_letter(lane, id)
        .await?
        .ok_or(ActionError::NotFound("dead letter"))?;
    if !op.discard_dead(lane, id).await? {
        return Err(ActionError::NotFound("dead letter"));
    }
    audit(app, who, "discard", &format!("{lane}/{id}"), &d.reason).await;
    Ok(())
}

/// One entry of the admin log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AuditEntry {
    /// RFC 3339 time of the action.
    pub at: String,
    pub who: String,
    /// `login`, `logout`, `pause`, `resume`, `release`, `drop`, `requeue`,
    /// `discard`, `suppress`, `unsuppress`.
    pub action: String,
    /// What it was done to: `tenant:acme`, `connector:smsc`, a message id,
    /// `webhook/<dead letter id>`, `acme/<address>`.
    pub target: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Write an action to the admin log and the process log. A store failure is
/// logged, not returned: the action itself has happened.
pub async fn audit(app: &App, who: &Who, action: &str, target: &str, detail: &str) {
    let entry = AuditEntry {
        at: format_ms(now_ms()),
        who: who.0.clone(),
        action: action.to_string(),
        target: target.to_string(),
        detail: detail.to_string(),
    };
    // Targets may name an e-mail address (suppressions): masked in the process log.
    let shown = if target.contains('@') {
        crate::telemetry::mask(target)
    } else {
        target.to_string()
    };
    tracing::info!(who = %entry.who, action, target = %shown, "Operator action.");
    let line = serde_json::to_string(&entry).unwrap_or_default();
    if let Err(e) = app.store.operator().audit(&line).await {
        tracing::warn!(error = %e, action, target = %shown, "Could not write the admin log entry.");
    }
}

/// The newest `max` admin log entries, newest first.
pub async fn audit_log(app: &App, max: usize) -> Result<Vec<AuditEntry>, StoreError> {
    Ok(app
        .store
        .operator()
        .audit_log(max)
        .await?
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[derive(Serialize)]
pub struct DeadLetterView {
    /// What `POST /v1/admin/dead-letters/{lane}/{id}/requeue|discard` names.
    id: String,
    job_id: String,
    attempts: u32,
    reason: String,
    message_id: String,
    /// For callbacks: the status change that could not be reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
}

/// A held message as the operator sees it: enough to decide, including the text.
#[derive(Serialize)]
pub struct HeldView {
    id: String,
    tenant: String,
    channel: &'static str,
    to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    /// The anti-fraud reason codes.
    reasons: Vec<String>,
    held_at: String,
}

/// A lane's dead letters as the operator sees them, oldest first.
pub async fn dead_letter_views(
    app: &App,
    lane: Lane,
    limit: usize,
) -> Result<Vec<DeadLetterView>, crate::store::StoreError> {
    let jobs = app.store.dead_letters(lane, limit).await?;
    Ok(jobs
        .into_iter()
        .map(|d| {
            let (id, job, reason) = (d.id, d.job, d.reason);
            let cb = match &job.task {
                Task::Callback(c) => Some(c.clone()),
                _ => None,
            };
            let clicked = match &job.task {
                Task::Clicked(c) => Some(c.message_id.clone()),
                _ => None,
            };
            DeadLetterView {
                message_id: cb
                    .as_ref()
                    .map(|c| c.message_id.clone())
                    .or(clicked.clone())
                    .unwrap_or_else(|| job.id.clone()),
                status: cb
                    .map(|c| c.status.to_string())
                    .or(clicked.map(|_| "clicked".to_string())),
                id,
                job_id: job.id,
                attempts: job.attempt + 1,
                reason,
            }
        })
        .collect())
}

/// Held messages as the operator sees them (with the text and the reasons),
/// oldest first.
pub async fn held_views(
    app: &App,
    limit: usize,
) -> Result<Vec<HeldView>, crate::store::StoreError> {
    let ids = app.store.held(limit).await?;
    let records = app.store.get_many(&ids).await?;
    Ok(records
        .into_iter()
        .flatten()
        .filter(|r| r.status == Status::Held)
        .map(|r| {
            let held = r.events.iter().rev().find(|e| e.status == Status::Held);
            HeldView {
                reasons: held
                    .and_then(|e| e.reason.as_deref())
                    .map(|s| s.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
                held_at: held.map(|e| format_ms(e.at)).unwrap_or_default(),
                id: r.data.id,
                tenant: r.data.tenant,
                channel: r.data.channel.as_str(),
                to: r.data.to,
                from: r.data.from,
                text: r.data.text,
            }
        })
        .collect())
}
