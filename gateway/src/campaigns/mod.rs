//! Campaigns: an audience, one or more steps, and a schedule. Each recipient
//! goes through the steps in order; a step is sent at its time (`after` the
//! previous one, or `at` a time relative to a date of the recipient's row),
//! on its channel with its stored template, if its condition on what happened
//! before holds. Payment, a reply or an opt-out stops a recipient.
//!
//! Every message goes through the normal accept path (validation, anti-fraud,
//! contact policy, suppression) in batches; the [`runner`] paces them and
//! keeps a campaign from sending outside contact hours. Progress is kept in
//! the store ([`goniec_store::campaigns`]) so a restart continues where it was.

use std::collections::BTreeMap;
use std::time::Duration;

use goniec_config::Channel;
use goniec_core::units::Rate;
use goniec_core::Problem;
use serde::{Deserialize, Serialize};

pub mod audience;
pub mod report;
pub mod runner;

use crate::accept::invalid::Invalid;

/// A condition on what happened to a recipient before a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// A person followed a tracked link of an earlier step.
    Clicked,
    /// Reported paid (`POST …/events`).
    Paid,
    /// Reported replied.
    Replied,
    /// The previous step's message was delivered (or read).
    Delivered,
    /// The previous step's message was read (RCS).
    Read,
    /// The previous step's message could not be delivered (undeliverable,
    /// expired, failed or rejected).
    Undeliverable,
}

/// What stops a recipient for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopEvent {
    Paid,
    Replied,
    OptedOut,
}

impl StopEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            StopEvent::Paid => "paid",
            StopEvent::Replied => "replied",
            StopEvent::OptedOut => "opted_out",
        }
    }

    pub fn parse(s: &str) -> Option<StopEvent> {
        match s {
            "paid" => Some(StopEvent::Paid),
            "replied" => Some(StopEvent::Replied),
            "opted_out" => Some(StopEvent::OptedOut),
            _ => None,
        }
    }
}

fn default_stop_on() -> Vec<StopEvent> {
    vec![StopEvent::Paid, StopEvent::Replied, StopEvent::OptedOut]
}

/// One step of a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[schema(value_type = String, example = "sms")]
    pub channel: Channel,
    pub template_id: String,
    /// Pinned when the campaign is created (the newest then, if not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<u32>,
    /// This long after the previous step was sent (after the start for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// A time relative to a date of the row: `due_date - 3d 09:00`,
    /// `due_date + 1d at 10:00`, `due_date 09:00` (the tenant's time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Send only if all of these happened.
    #[serde(default, rename = "if", skip_serializing_if = "Vec::is_empty")]
    pub if_all: Vec<Condition>,
    /// Send only if none of these happened.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub if_not: Vec<Condition>,
    /// For RCS: fall back to SMS (`["sms"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub fallback: Option<Vec<Channel>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// A campaign as the API takes it (without its audience).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub steps: Vec<Step>,
    /// RFC 3339; default: when it is started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
    /// RFC 3339: nothing is sent after it (the campaign completes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<String>,
    /// Messages per second or minute for the whole campaign (`"50/s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "50/s")]
    pub speed: Option<Rate>,
    /// Per channel, within `speed`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub speeds: BTreeMap<Channel, Rate>,
    /// What stops a recipient (default all: paid, replied, opted_out).
    #[serde(default = "default_stop_on")]
    pub stop_on: Vec<StopEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

/// A step's time, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    After(Duration),
    At {
        var: String,
        days: i32,
        time: (i8, i8),
    },
}

/// Most steps in a campaign.
pub const MAX_STEPS: usize = 10;

impl Step {
    /// The step's time; the error names the field (`steps[i].at`).
    pub fn when(&self, i: usize) -> Result<When, Invalid> {
        let field = |f: &str| format!("steps[{i}].{f}");
        match (&self.after, &self.at) {
            (Some(_), Some(_)) => Err(Invalid::new(
                Problem::ConflictingFields,
                "give a step `after` or `at`, not both",
            )
            .field(field("at"))),
            (Some(a), None) => humantime::parse_duration(a).map(When::After).map_err(|e| {
                Invalid::new(Problem::InvalidValue, format!("`after`: {e} (e.g. \"2d\", \"6h\")"))
                    .field(field("after"))
            }),
            (None, Some(at)) => parse_at(at).map_err(|e| {
                Invalid::new(
                    Problem::InvalidValue,
                    format!("`at`: {e}; write e.g. \"due_date - 3d 09:00\" or \"due_date + 1d at 10:00\""),
                )
                .field(field("at"))
            }),
            (None, None) => Ok(When::After(Duration::ZERO)),
        }
    }
}

/// `var [±Nd] [at] [HH:MM]`.
fn parse_at(s: &str) -> Result<When, String> {
    let mut toks = s.split_whitespace().peekable();
    let var = toks.next().ok_or("empty")?.to_string();
    if !var
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!("{var:?} is not a variable name"));
    }
    let mut days = 0i32;
    let mut time = (9i8, 0i8);
    while let Some(t) = toks.next() {
        if t == "at" {
            continue;
        }
        if let Some((h, m)) = t.split_once(':') {
            let h: i8 = h.parse().map_err(|_| format!("bad time {t:?}"))?;
            let m: i8 = m.parse().map_err(|_| format!("bad time {t:?}"))?;
            if !(0..24).contains(&h) || !(0..60).contains(&m) {
                return Err(format!("bad time {t:?}"));
            }
            time = (h, m);
            continue;
        }
        let (sign, rest) = match t {
            "+" | "-" => (t, toks.next().ok_or("a sign without days")?),
            _ if t.starts_with('+') || t.starts_with('-') => (&t[..1], &t[1..]),
            _ => return Err(format!("unexpected {t:?}")),
        };
        let n: i32 = rest
            .strip_suffix('d')
            .and_then(|n| n.parse().ok())
            .filter(|n: &i32| *n <= 3650)
            .ok_or_else(|| format!("days are written like 3d, got {rest:?}"))?;
        days = if sign == "-" { -n } else { n };
    }
    Ok(When::At { var, days, time })
}

impl When {
    /// When a recipient's step is due: `sent_ms` is when the previous step
    /// was sent (or the campaign started); `date` reads a row's variable.
    pub fn due(
        &self,
        sent_ms: i64,
        tz: &jiff::tz::TimeZone,
        date: &dyn Fn(&str) -> Option<String>,
    ) -> Result<i64, String> {
        match self {
            When::After(d) => Ok(sent_ms.saturating_add(d.as_millis() as i64)),
            When::At { var, days, time } => {
                let raw = date(var).ok_or_else(|| format!("no `{var}`"))?;
                let day: jiff::civil::Date =
                    raw.get(..10).unwrap_or(&raw).parse().map_err(|_| {
                        format!("`{var}` is not a date such as 2026-12-31: {raw:?}")
                    })?;
                let day = day
                    .checked_add(jiff::Span::new().days(*days))
                    .map_err(|e| e.to_string())?;
                let at = day
                    .at(time.0, time.1, 0, 0)
                    .to_zoned(tz.clone())
                    .map_err(|e| e.to_string())?;
                Ok(at.timestamp().as_millisecond())
            }
        }
    }
}

/// A campaign as stored: the definition with its templates pinned, and its
/// times.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub doc: CampaignDoc,
    /// Unix ms; `None` = when started.
    #[serde(default)]
    pub start_ms: Option<i64>,
    #[serde(default)]
    pub end_ms: Option<i64>,
    /// Unix ms when it was started.
    #[serde(default)]
    pub started_ms: Option<i64>,
}

/// Check a definition (templates are checked by the caller, which reads them).
pub fn check(doc: &CampaignDoc, now: i64) -> Result<(Option<i64>, Option<i64>), Invalid> {
    if doc.steps.is_empty() || doc.steps.len() > MAX_STEPS {
        return Err(Invalid::new(
            Problem::InvalidValue,
            format!("a campaign has 1 to {MAX_STEPS} steps"),
        )
        .field("steps"));
    }
    for (i, s) in doc.steps.iter().enumerate() {
        s.when(i)?;
        crate::templates::check_id(&s.template_id)
            .map_err(|e| e.field(format!("steps[{i}].template_id")))?;
        if i == 0 && !(s.if_all.is_empty() && s.if_not.is_empty()) {
            return Err(Invalid::new(
                Problem::InvalidValue,
                "the first step has nothing before it to have a condition on",
            )
            .field("steps[0].if"));
        }
    }
    let time = |field: &str, v: &Option<String>| -> Result<Option<i64>, Invalid> {
        v.as_deref()
            .map(|s| {
                s.parse::<jiff::Timestamp>()
                    .map(|t| t.as_millisecond())
                    .map_err(|_| {
                        Invalid::new(
                            Problem::InvalidTimestamp,
                            format!("`{field}` must be RFC 3339, e.g. 2026-12-06T09:00:00+01:00"),
                        )
                        .field(field)
                    })
            })
            .transpose()
    };
    let start = time("start_at", &doc.start_at)?;
    let end = time("end_at", &doc.end_at)?;
    if let Some(e) = end {
        if e <= start.unwrap_or(now) {
            return Err(Invalid::new(
                Problem::InvalidTimestamp,
                "`end_at` must be after the start (and in the future)",
            )
            .field("end_at"));
        }
    }
    if let Some(u) = &doc.callback_url {
        if !goniec_core::check::is_http_url(u) {
            return Err(Invalid::new(
                Problem::InvalidCallbackUrl,
                "`callback_url` must be http(s)",
            )
            .field("callback_url"));
        }
    }
    Ok((start, end))
}

/// A recipient of the audience as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    /// Phone number, E.164 (SMS and RCS steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ref: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// The line of the file it came from.
    pub line: u64,
}

/// A campaign of `tenant` that has not finished and uses template `id`.
pub async fn using_template(
    app: &crate::app::App,
    tenant: &str,
    template: &str,
) -> Result<Option<String>, goniec_store::StoreError> {
    let c = app.store.campaigns();
    for id in c.campaign_ids(tenant).await? {
        let Some(m) = c.campaign(tenant, &id).await? else {
            continue;
        };
        if matches!(m.state.as_str(), "completed" | "cancelled") {
            continue;
        }
        let uses = serde_json::from_str::<Stored>(&m.doc)
            .map(|s| s.doc.steps.iter().any(|st| st.template_id == template))
            .unwrap_or(false);
        if uses {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_expressions() {
        assert_eq!(
            parse_at("due_date - 3d 09:00").unwrap(),
            When::At {
                var: "due_date".into(),
                days: -3,
                time: (9, 0)
            }
        );
        assert_eq!(
            parse_at("due_date +1d at 10:30").unwrap(),
            When::At {
                var: "due_date".into(),
                days: 1,
                time: (10, 30)
            }
        );
        for bad in [
            "",
            "due date",
            "due_date - 3",
            "due_date 25:00",
            "due_date * 2d",
        ] {
            assert!(parse_at(bad).is_err(), "{bad}");
        }
        let tz = jiff::tz::TimeZone::get("Europe/Warsaw").unwrap();
        let w = parse_at("due - 3d 09:00").unwrap();
        let ms = w.due(0, &tz, &|_| Some("2026-12-10".into())).unwrap();
        let t = jiff::Timestamp::from_millisecond(ms).unwrap();
        assert_eq!(t.to_string(), "2026-12-07T08:00:00Z");
    }
}
