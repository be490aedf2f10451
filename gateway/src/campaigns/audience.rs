//! A campaign's audience, read as a stream: a CSV file as spreadsheets export
//! it (UTF-8 with or without BOM, `;` or `,` between fields, the header row
//! naming `to`, `email`, `client_ref` and the template variables) or NDJSON /
//! a JSON array of `{to, email, client_ref, vars}`. Rows are checked and
//! stored a thousand at a time, so a million rows never sit in memory; a bad
//! row goes to the rejects file with its line number and reason and never
//! sinks the others.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use goniec_config::Channel;
use goniec_core::Problem;
use serde::Serialize;
use tokio::sync::mpsc;

use super::{Recipient, Stored, When};
use crate::accept::invalid::Invalid;
use crate::address::{normalize_email, normalize_msisdn};
use crate::app::App;
use crate::store::campaigns::{NewRecipient, Reject};
use crate::templates::format::Format;
use crate::templates::Template;

/// Rows checked and written together.
const CHUNK: usize = 1_000;
/// Most columns of a row.
const MAX_COLUMNS: usize = 200;
/// Most bytes of one field.
const MAX_FIELD: usize = 4_096;

/// What an upload did.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Data rows read (the header not counted).
    pub rows: u64,
    pub accepted: u64,
    pub rejected: u64,
}

/// A row's fields by column name, or why it could not be read (reason, detail).
type Fields = Result<Vec<(String, String)>, (String, String)>;

/// One row as read: its line, and its fields.
struct RawRow {
    line: u64,
    fields: Fields,
}

/// What every row is checked against.
pub struct Rules {
    pub region: Option<phonenumber::country::Id>,
    pub needs_phone: bool,
    pub needs_email: bool,
    /// Variables every row must have (used without a default), with their format.
    pub required: BTreeMap<String, Format>,
    /// Variables with a format, checked when present.
    pub formats: BTreeMap<String, Format>,
    /// The first step's time.
    pub first: When,
    pub start_ms: i64,
    pub tz: jiff::tz::TimeZone,
}

impl Rules {
    pub fn new(
        app: &App,
        stored: &Stored,
        templates: &[Arc<Template>],
        tz: jiff::tz::TimeZone,
        now: i64,
    ) -> Result<Rules, Invalid> {
        let mut required = BTreeMap::new();
        let mut formats = BTreeMap::new();
        for t in templates {
            for (name, decl) in &t.doc.vars {
                if decl.format != Format::Text {
                    formats.insert(name.clone(), decl.format.clone());
                }
                if decl.default.is_none() {
                    required.insert(name.clone(), decl.format.clone());
                }
            }
        }
        // Dates the steps' times read are required too.
        for (i, s) in stored.doc.steps.iter().enumerate() {
            if let When::At { var, .. } = s.when(i)? {
                required.insert(var.clone(), Format::parse("date").unwrap_or_default());
            }
        }
        let channels: HashSet<Channel> = stored.doc.steps.iter().map(|s| s.channel).collect();
        Ok(Rules {
            region: app.rules.region,
            needs_phone: channels.contains(&Channel::Sms) || channels.contains(&Channel::Rcs),
            needs_email: channels.contains(&Channel::Email),
            required,
            formats,
            first: stored.doc.steps[0].when(0)?,
            start_ms: stored.start_ms.unwrap_or(now).max(now),
            tz,
        })
    }

    /// Check one row; the reason code and detail of a bad one.
    fn check(
        &self,
        line: u64,
        fields: Vec<(String, String)>,
    ) -> Result<(Recipient, i64), (String, String)> {
        let mut r = Recipient {
            line,
            ..Recipient::default()
        };
        for (k, v) in fields {
            let v = v.trim().to_string();
            match k.as_str() {
                "to" | "phone" | "msisdn" => r.to = Some(v).filter(|v| !v.is_empty()),
                "email" => r.email = Some(v).filter(|v| !v.is_empty()),
                "client_ref" => r.client_ref = Some(v).filter(|v| !v.is_empty()),
                _ => {
                    if !v.is_empty() {
                        r.vars.insert(k, v);
                    }
                }
            }
        }
        let bad = |code: &str, detail: String| (code.to_string(), detail);
        if self.needs_phone {
            let raw =
                r.to.take()
                    .ok_or_else(|| bad("missing_number", "no `to`".into()))?;
            r.to = Some(
                normalize_msisdn(&raw, self.region, true)
                    .map_err(|e| bad("invalid_number", e.detail))?,
            );
        }
        if self.needs_email {
            let raw = r
                .email
                .take()
                .ok_or_else(|| bad("missing_email", "no `email`".into()))?;
            r.email = Some(normalize_email(&raw).map_err(|e| bad("invalid_email", e.detail))?);
        }
        if let Some(c) = &r.client_ref {
            if c.len() > 128 || c.chars().any(char::is_control) {
                return Err(bad(
                    "invalid_client_ref",
                    "`client_ref` is 1 to 128 printable characters".into(),
                ));
            }
        }
        for (name, format) in &self.required {
            let Some(v) = r.vars.get(name) else {
                return Err(bad("missing_variable", format!("no value for `{name}`")));
            };
            format
                .apply(v)
                .map_err(|e| bad("invalid_value", format!("`{name}`: {e}")))?;
        }
        for (name, format) in &self.formats {
            if let Some(v) = r.vars.get(name) {
                format
                    .apply(v)
                    .map_err(|e| bad("invalid_value", format!("`{name}`: {e}")))?;
            }
        }
        let due = self
            .first
            .due(self.start_ms, &self.tz, &|n| r.vars.get(n).cloned())
            .map_err(|e| bad("invalid_date", e))?;
        Ok((r, due))
    }
}

/// A `Read` over body chunks sent from the async side.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.recv() {
                Ok(b) => self.cur = b,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// The body's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Csv,
    /// One JSON object per line.
    NdJson,
}

/// Read `body` (CSV or NDJSON) on a blocking thread, handing rows over in
/// chunks; a fatal problem (not CSV at all) ends it with an error.
fn parse(
    kind: Kind,
    body: std::sync::mpsc::Receiver<Bytes>,
    first: Bytes,
    out: mpsc::Sender<Result<Vec<RawRow>, Invalid>>,
) {
    let reader = std::io::Cursor::new(first).chain(ChunkReader {
        rx: body,
        cur: Bytes::new(),
    });
    let send = |rows: Vec<RawRow>| out.blocking_send(Ok(rows)).is_ok();
    match kind {
        Kind::NdJson => {
            let mut lines = std::io::BufReader::new(reader);
            let mut buf = Vec::new();
            let mut line = 0;
            let mut rows = Vec::with_capacity(CHUNK);
            loop {
                buf.clear();
                match std::io::BufRead::read_until(&mut lines, b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        let _ = out.blocking_send(Err(Invalid::new(
                            Problem::UnreadableBody,
                            e.to_string(),
                        )));
                        return;
                    }
                }
                line += 1;
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                rows.push(RawRow {
                    line,
                    fields: json_row(&buf),
                });
                if rows.len() == CHUNK && !send(std::mem::take(&mut rows)) {
                    return;
                }
            }
            if !rows.is_empty() {
                send(rows);
            }
        }
        Kind::Csv => csv_rows(reader, out),
    }
}

fn json_row(line: &[u8]) -> Fields {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Row {
        #[serde(default)]
        to: Option<String>,
        #[serde(default)]
        email: Option<String>,
        #[serde(default)]
        client_ref: Option<String>,
        #[serde(default)]
        vars: BTreeMap<String, serde_json::Value>,
    }
    let r: Row =
        serde_json::from_slice(line).map_err(|e| ("malformed_row".to_string(), e.to_string()))?;
    let mut f = Vec::new();
    for (k, v) in [
        ("to", r.to),
        ("email", r.email),
        ("client_ref", r.client_ref),
    ] {
        if let Some(v) = v {
            f.push((k.to_string(), v));
        }
    }
    for (k, v) in r.vars {
        let v = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Null => continue,
            v => v.to_string(),
        };
        f.push((k, v));
    }
    Ok(f)
}

fn csv_rows(mut reader: impl Read, out: mpsc::Sender<Result<Vec<RawRow>, Invalid>>) {
    // The delimiter from the header line: Polish Excel writes `;`.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while head.len() < 64 * 1024 {
        match reader.read(&mut byte) {
            Ok(1) => {
                head.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            _ => break,
        }
    }
    // csv places a record that follows a CRLF on the line of that CR.
    let crlf = u64::from(head.ends_with(b"\r\n"));
    let semi = head.iter().filter(|&&b| b == b';').count();
    let comma = head.iter().filter(|&&b| b == b',').count();
    let delimiter = if semi > comma { b';' } else { b',' };
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(false)
        .from_reader(std::io::Cursor::new(head).chain(reader));
    let mut header: Option<Vec<String>> = None;
    let mut rows = Vec::with_capacity(CHUNK);
    let mut record = csv::ByteRecord::new();
    loop {
        match r.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line()) + crlf;
                if header.is_none() {
                    let _ = out.blocking_send(Err(Invalid::new(
                        Problem::InvalidCsv,
                        format!("line {line}: {e}"),
                    )));
                    return;
                }
                rows.push(RawRow {
                    line,
                    fields: Err(("malformed_row".into(), e.to_string())),
                });
                continue;
            }
        }
        let line = record.position().map_or(0, |p| p.line()) + crlf;
        let Some(names) = &header else {
            let mut names = Vec::new();
            for (i, f) in record.iter().enumerate() {
                let Ok(s) = std::str::from_utf8(f) else {
                    let _ = out.blocking_send(Err(Invalid::new(
                        Problem::InvalidCsv,
                        "the header row is not UTF-8",
                    )));
                    return;
                };
                let s = if i == 0 {
                    s.trim_start_matches('\u{feff}')
                } else {
                    s
                };
                names.push(s.trim().to_string());
            }
            if names.len() > MAX_COLUMNS {
                let _ = out.blocking_send(Err(Invalid::new(
                    Problem::InvalidCsv,
                    format!("at most {MAX_COLUMNS} columns"),
                )));
                return;
            }
            if !names
                .iter()
                .any(|n| matches!(n.as_str(), "to" | "phone" | "msisdn" | "email"))
            {
                let _ = out.blocking_send(Err(Invalid::new(
                    Problem::InvalidCsv,
                    "the header row must name a `to` (or `email`) column",
                )));
                return;
            }
            header = Some(names);
            continue;
        };
        let fields = if record.len() != names.len() {
            Err((
                "wrong_field_count".to_string(),
                format!(
                    "{} fields where the header has {}",
                    record.len(),
                    names.len()
                ),
            ))
        } else {
            let mut f = Vec::with_capacity(names.len());
            let mut bad = None;
            for (n, v) in names.iter().zip(record.iter()) {
                if v.len() > MAX_FIELD {
                    bad = Some((
                        "field_too_long".to_string(),
                        format!("`{n}` is over {MAX_FIELD} bytes"),
                    ));
                    break;
                }
                match std::str::from_utf8(v) {
                    Ok(s) => f.push((n.clone(), s.to_string())),
                    Err(_) => {
                        bad = Some(("invalid_utf8".to_string(), format!("`{n}` is not UTF-8")));
                        break;
                    }
                }
            }
            match bad {
                Some(b) => Err(b),
                None => Ok(f),
            }
        };
        rows.push(RawRow { line, fields });
        if rows.len() == CHUNK && out.blocking_send(Ok(std::mem::take(&mut rows))).is_err() {
            return;
        }
    }
    if header.is_none() {
        let _ = out.blocking_send(Err(Invalid::new(
            Problem::InvalidCsv,
            "the file is empty (no header row)",
        )));
        return;
    }
    if !rows.is_empty() {
        let _ = out.blocking_send(Ok(rows));
    }
}

/// Read an audience from `body` into campaign `id`, checking each row.
pub async fn ingest(
    app: &App,
    tenant: &crate::tenants::TenantCtx,
    id: &str,
    kind: Kind,
    body: axum::body::Body,
    rules: &Rules,
) -> Result<Summary, Invalid> {
    use http_body_util::BodyExt;
    let (btx, brx) = std::sync::mpsc::sync_channel::<Bytes>(8);
    let (rtx, mut rrx) = mpsc::channel(4);
    let parser = tokio::task::spawn_blocking(move || parse(kind, brx, Bytes::new(), rtx));
    // Feed the body to the parser as it arrives.
    let feeder = async move {
        let mut body = body;
        loop {
            let frame =
                tokio::time::timeout(std::time::Duration::from_secs(30), body.frame()).await;
            match frame {
                Ok(Some(Ok(f))) => {
                    if let Ok(data) = f.into_data() {
                        let tx = btx.clone();
                        // The channel is bounded: wait for the parser off the runtime.
                        let sent = tokio::task::spawn_blocking(move || tx.send(data).is_ok()).await;
                        if !matches!(sent, Ok(true)) {
                            return Ok(());
                        }
                    }
                }
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => {
                    return Err(Invalid::new(Problem::UnreadableBody, e.to_string()))
                }
                Err(_) => return Err(Invalid::new(Problem::BodyTimeout, "no data for 30 s")),
            }
        }
    };
    let feeder = tokio::spawn(feeder);
    let mut summary = Summary::default();
    let mut row_no = 0u64;
    let mut failure = None;
    while let Some(chunk) = rrx.recv().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        let mut good = Vec::with_capacity(chunk.len());
        let mut rejects = Vec::new();
        let mut emails = Vec::new();
        for raw in chunk {
            row_no += 1;
            summary.rows += 1;
            match raw.fields.and_then(|f| rules.check(raw.line, f)) {
                Ok((r, due)) => {
                    if let Some(e) = &r.email {
                        emails.push(crate::address::suppression_key(e));
                    }
                    good.push((row_no, r, due));
                }
                Err((reason, detail)) => rejects.push(Reject {
                    line: raw.line,
                    reason,
                    detail,
                }),
            }
        }
        // Opted-out recipients (any address of the row) are rejected here.
        let keys: Vec<(usize, String)> = good
            .iter()
            .enumerate()
            .flat_map(|(i, (_, r, _))| {
                let phone =
                    r.to.as_deref()
                        .map(|to| app.screener.opt_out_key(tenant, Channel::Sms, to));
                let mail = r
                    .email
                    .as_deref()
                    .map(|e| app.screener.opt_out_key(tenant, Channel::Email, e));
                phone.into_iter().chain(mail).map(move |k| (i, k))
            })
            .collect();
        if !keys.is_empty() {
            let flags = app
                .store
                .opted_out(&keys.iter().map(|(_, k)| k.clone()).collect::<Vec<_>>())
                .await
                .map_err(|_| Invalid::new(Problem::StoreUnavailable, "store unavailable"))?;
            let out: HashSet<usize> = keys
                .iter()
                .zip(flags)
                .filter(|(_, f)| *f)
                .map(|((i, _), _)| *i)
                .collect();
            if !out.is_empty() {
                let mut i = 0;
                good.retain(|(_, r, _)| {
                    let hit = out.contains(&i);
                    i += 1;
                    if hit {
                        rejects.push(Reject {
                            line: r.line,
                            reason: "opted_out".into(),
                            detail: "the recipient opted out".into(),
                        });
                    }
                    !hit
                });
                emails = good
                    .iter()
                    .filter_map(|(_, r, _)| r.email.as_deref().map(crate::address::suppression_key))
                    .collect();
            }
        }
        // Suppressed addresses (bounces, complaints) are rejected here.
        if !emails.is_empty() {
            let refs: Vec<&str> = emails.iter().map(String::as_str).collect();
            let suppressed = app
                .store
                .suppressed(&tenant.cfg.name, &refs)
                .await
                .map_err(|_| Invalid::new(Problem::StoreUnavailable, "store unavailable"))?;
            let gone: HashSet<&str> = refs
                .iter()
                .zip(&suppressed)
                .filter(|(_, s)| s.is_some())
                .map(|(e, _)| *e)
                .collect();
            if !gone.is_empty() {
                good.retain(|(_, r, _)| {
                    let hit = r.email.as_deref().is_some_and(|e| {
                        gone.contains(crate::address::suppression_key(e).as_str())
                    });
                    if hit {
                        rejects.push(Reject {
                            line: r.line,
                            reason: "suppressed".into(),
                            detail: "the address is on the suppression list".into(),
                        });
                    }
                    !hit
                });
            }
        }
        let rows: Vec<NewRecipient> = good
            .into_iter()
            .map(|(row, r, due)| NewRecipient {
                row,
                client_ref: r.client_ref.clone(),
                data: serde_json::to_string(&r).unwrap_or_default(),
                due_ms: due,
            })
            .collect();
        rejects.sort_by_key(|r| r.line);
        summary.accepted += rows.len() as u64;
        summary.rejected += rejects.len() as u64;
        app.store
            .campaigns()
            .add_recipients(id, &rows, &rejects, row_no)
            .await
            .map_err(|_| Invalid::new(Problem::StoreUnavailable, "store unavailable"))?;
    }
    drop(rrx);
    let fed = feeder.await.unwrap_or(Ok(()));
    let _ = parser.await;
    if let Some(e) = failure {
        return Err(e);
    }
    fed?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(csv: &str) -> Vec<(u64, Fields)> {
        let (tx, mut rx) = mpsc::channel(16);
        csv_rows(std::io::Cursor::new(csv.as_bytes().to_vec()), tx);
        let mut out = Vec::new();
        while let Ok(Ok(rows)) = rx.try_recv() {
            out.extend(rows.into_iter().map(|r| (r.line, r.fields)));
        }
        out
    }

    #[test]
    fn lines_delimiters_and_bom() {
        for (csv, sep) in [
            (
                "\u{feff}to;name\r\n1;a\r\n2;\"b\r\nc\"\r\n3\r\n4;d\r\n",
                ';',
            ),
            ("to,name\n1,a\n2,\"b\nc\"\n3\n4,d\n", ','),
        ] {
            let rows = read(csv);
            assert_eq!(rows.len(), 4, "{sep}");
            assert_eq!(rows[0].0, 2, "{sep}");
            assert_eq!(
                rows[0].1.as_ref().unwrap()[0],
                ("to".into(), "1".into()),
                "{sep}"
            );
            assert_eq!(rows[1].0, 3);
            assert_eq!(rows[1].1.as_ref().unwrap()[1].1.replace('\r', ""), "b\nc");
            assert_eq!(rows[2].1.as_ref().unwrap_err().0, "wrong_field_count");
            assert_eq!(rows[2].0, 5, "{sep}");
            assert_eq!(rows[3].0, 6, "{sep}");
        }
    }
}
