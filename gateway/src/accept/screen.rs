//! Anti-fraud screening on the accept path: every valid message gets a
//! [`Verdict`] from [`goniec_antifraud`] before it is stored.
//!
//! One store round trip reads the counters of a whole request (a batch is screened
//! at once); after the messages are stored, a second one records them
//! ([`Store::count`]). The phishing blocklist is held here and reloaded while
//! running ([`Screener::watch`]): when its file changes and on SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use goniec_antifraud::{
    check, mandatory, mandatory_needs, needs, Blocklist, BlocklistHandle, Screening, Verdict,
};
use goniec_config::Channel;
use tokio_util::sync::CancellationToken;

use crate::model::MessageData;
use crate::store::{Store, StoreError};
use crate::tenants::TenantCtx;

/// The blocklist file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the blocklist {path}: {source}")]
pub struct BlocklistError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// What validation learnt of a message that screening reuses.
pub struct Learnt<'a> {
    /// Its tracked links (code, target): the duplicate check reads them as
    /// their targets (see [`Screening::dup_text`]).
    pub links: &'a [(String, String)],
    /// Its recipient's number as validation parsed (and typed) it.
    pub phone: Option<&'a crate::address::Msisdn>,
}

/// Screening state shared by the API handlers.
pub struct Screener {
    pub enabled: bool,
    blocklist: BlocklistHandle,
    file: Option<PathBuf>,
    reload_every: Duration,
    salt: Vec<u8>,
}

impl Screener {
    /// Load the blocklist file, if one is configured: a missing or unreadable file
    /// is an error at start, not an empty list.
    pub fn new(cfg: &goniec_config::Antifraud) -> Result<Self, BlocklistError> {
        let file = cfg.blocklist.as_ref().map(PathBuf::from);
        let list = match &file {
            Some(path) => read_blocklist(path)?,
            None => Blocklist::default(),
        };
        if let Some(path) = &file {
            log_loaded(path, &list);
        }
        Ok(Screener {
            enabled: cfg.enabled,
            blocklist: BlocklistHandle::new(list),
            file,
            reload_every: cfg.reload_every,
            salt: cfg.key_salt.as_bytes().to_vec(),
        })
    }

    /// Domains on the current blocklist.
    pub fn blocklist_len(&self) -> usize {
        self.blocklist.get().len()
    }

    /// Read the blocklist file again; on failure the old list stays. Parsing a
    /// large list takes tens of milliseconds, so it runs off the async threads.
    pub async fn reload(&self) -> Result<usize, BlocklistError> {
        let Some(path) = self.file.clone() else {
            return Ok(0);
        };
        let list = tokio::task::spawn_blocking(move || {
            let list = read_blocklist(&path)?;
            log_loaded(&path, &list);
            Ok(list)
        })
        .await
        .unwrap_or_else(|e| {
            Err(BlocklistError {
                path: self.file.clone().unwrap_or_default(),
                source: std::io::Error::other(e),
            })
        })?;
        let n = list.len();
        self.blocklist.replace(list);
        Ok(n)
    }

    /// Reload the blocklist when its file changes (checked every `reload_every`)
    /// and on SIGHUP, until `shutdown`.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(path) = self.file.clone() else {
            return;
        };
        let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut seen: Option<SystemTime> = modified(&path);
        let mut tick = tokio::time::interval(self.reload_every.max(Duration::from_millis(100)));
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            let forced = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => false,
                _ = hangup => true,
            };
            let now = modified(&path);
            if !forced && now == seen {
                continue;
            }
            seen = now;
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "Blocklist reload failed; keeping the previous list.");
            }
        }
    }

    /// Screen messages of one tenant: one store round trip for all their counters.
    /// Verdicts come back in order.
    /// `learnt`: what validation learnt of each message (in order).
    pub async fn screen(
        &self,
        store: &dyn Store,
        tenant: &TenantCtx,
        messages: &[&MessageData],
        learnt: &[Learnt<'_>],
        now_ms: i64,
    ) -> Result<Vec<Verdict>, StoreError> {
        self.verdicts(store, tenant, messages, learnt, now_ms, true)
            .await
    }

    /// With anti-fraud off: only the checks that are duties rather than fraud
    /// rules, each recipient's opt-out and the sender's registration (one store
    /// round trip), as a verdict per message.
    pub async fn mandatory(
        &self,
        store: &dyn Store,
        tenant: &TenantCtx,
        messages: &[&MessageData],
        now_ms: i64,
    ) -> Result<Vec<Verdict>, StoreError> {
        self.verdicts(store, tenant, messages, &[], now_ms, false)
            .await
    }

    /// Every rule (`all`) or only the mandatory ones, in one store round trip.
    async fn verdicts(
        &self,
        store: &dyn Store,
        tenant: &TenantCtx,
        messages: &[&MessageData],
        learnt: &[Learnt<'_>],
        now_ms: i64,
        all: bool,
    ) -> Result<Vec<Verdict>, StoreError> {
        let now =
            jiff::Timestamp::from_millisecond(now_ms).unwrap_or_else(|_| jiff::Timestamp::now());
        let blocklist = self.blocklist.get();
        // The mandatory checks read no text: no need to gather it.
        let texts: Vec<String> = messages
            .iter()
            .map(|m| if all { scanned_text(m) } else { String::new() })
            .collect();
        let dup_texts: Vec<Option<String>> = texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let links = learnt.get(i).map(|l| l.links).filter(|l| !l.is_empty())?;
                Some(links.iter().fold(text.clone(), |t, (code, target)| {
                    t.replace(code.as_str(), target)
                }))
            })
            .collect();
        let policy = &tenant.cfg.antifraud;
        let screenings: Vec<Screening<'_>> = messages
            .iter()
            .zip(texts.iter().zip(&dup_texts))
            .enumerate()
            .map(|(i, (m, (text, dup_text)))| {
                let mut s = Screening::new(&tenant.cfg.name, m.channel, &m.to, text, now);
                s.dup_text = dup_text.as_deref();
                // The number validation parsed, when it is this recipient's.
                if let Some(p) = learnt
                    .get(i)
                    .and_then(|l| l.phone)
                    .filter(|p| p.e164 == m.to)
                {
                    s.number = Some(&p.number);
                    s.number_type = p.number_type;
                }
                s.sender = m.from.as_deref();
                s.send_at = m
                    .send_at
                    .filter(|&t| t > now_ms)
                    .and_then(|t| jiff::Timestamp::from_millisecond(t).ok());
                s.seed = rand::random();
                s.blocklist = &blocklist;
                s.key_salt = &self.salt;
                s
            })
            .collect();
        let wanted = screenings
            .iter()
            .map(|s| {
                if all {
                    needs(s, policy)
                } else {
                    mandatory_needs(s, policy)
                }
            })
            .collect();
        let counters = store.counters(wanted).await?;
        Ok(screenings
            .iter()
            .zip(&counters)
            .map(|(s, c)| {
                if all {
                    check(s, policy, c)
                } else {
                    mandatory(s, policy, c)
                }
            })
            .collect())
    }

    /// The store key of a recipient's opt-out for a tenant.
    pub fn opt_out_key(&self, tenant: &TenantCtx, channel_: Channel, to: &str) -> String {
        let mut s = Screening::new(&tenant.cfg.name, channel_, to, "", jiff::Timestamp::now());
        s.key_salt = &self.salt;
        needs(&s, &tenant.cfg.antifraud).opt_out_key().to_string()
    }
}

fn read_blocklist(path: &PathBuf) -> Result<Blocklist, BlocklistError> {
    std::fs::read_to_string(path)
        .map(|text| Blocklist::parse(&text))
        .map_err(|source| BlocklistError {
            path: path.clone(),
            source,
        })
}

fn log_loaded(path: &std::path::Path, list: &Blocklist) {
    tracing::info!(
        path = %path.display(),
        domains = list.len(),
        invalid_lines = list.invalid_lines(),
        "Blocklist loaded."
    );
}

/// Everything a recipient reads, where links can hide: the text, an e-mail's
/// subject and HTML, an RCS message's cards and suggestions, the fallback text.
fn scanned_text(m: &MessageData) -> String {
    let mut out = String::new();
    let mut add = |s: &str| {
        if !s.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(s);
        }
    };
    if let Some(e) = &m.email {
        add(&e.subject);
    }
    add(m.text.as_deref().unwrap_or(""));
    if let Some(e) = &m.email {
        add(e.html.as_deref().unwrap_or(""));
    }
    if let Some(rcs) = &m.rcs {
        add(&rcs.to_string());
    }
    add(m.fallback_text.as_deref().unwrap_or(""));
    out
}
