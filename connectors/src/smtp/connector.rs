//! The SMTP [`Connector`], on lettre's pooled async transport (rustls, no OpenSSL):
//! builds the MIME message (plain + HTML alternatives, UTF-8 headers), gives it a
//! `Message-ID` made from the Goniec id so bounces can be matched, and classifies
//! the relay's answer once: 250 → submitted, 4xx → transient, 5xx → permanent (a
//! hard bounce, by [`crate::bounce::from_smtp_reply`], says so in its code: `smtp
//! 550 hard_bounce`), no answer → the relay is unavailable (retried without using
//! up attempts).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use goniec_core::Channel;

use super::config::{Config as SmtpConfig, TlsMode};
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment as LettreAttachment, Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::throttle::{domain_of, DomainThrottle};
use crate::bounce::{from_smtp_reply, BounceKind};
use crate::{BuildContext, BuildError, Connector, DeliveryError, Health, Outbound, Submitted};

const CHANNELS: [Channel; 1] = [Channel::Email];

/// An SMTP connector.
pub struct SmtpConnector {
    name: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    message_id_domain: String,
    /// Per-recipient-domain limits, when any are configured.
    throttle: Option<DomainThrottle>,
    /// The last send failed to reach the relay, and why (for readiness).
    down: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for SmtpConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConnector")
            .field("name", &self.name)
            .finish()
    }
}

impl SmtpConnector {
    pub fn new(name: &str, cfg: &SmtpConfig, _cx: BuildContext) -> Result<Self, BuildError> {
        let invalid = |reason: String| BuildError::Invalid {
            name: name.into(),
            reason,
        };
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| invalid(format!("`from` {:?} is not an address: {e}", cfg.from)))?;
        let message_id_domain = cfg
            .message_id_domain
            .clone()
            .unwrap_or_else(|| from.email.domain().to_string());
        let tls = || {
            TlsParameters::builder(cfg.host.clone())
                .dangerous_accept_invalid_certs(cfg.tls_accept_invalid_certs)
                .build_rustls()
                .map_err(|e| invalid(format!("TLS setup: {e}")))
        };
        let tls = match cfg.tls {
            TlsMode::None => Tls::None,
            TlsMode::Starttls => Tls::Required(tls()?),
            TlsMode::Tls => Tls::Wrapper(tls()?),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.as_str())
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(cfg.timeout))
            .pool_config(PoolConfig::new().max_size(cfg.pool_size));
        if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
            b = b.credentials(Credentials::new(user.clone(), pass.clone()));
        }
        Ok(SmtpConnector {
            name: name.into(),
            transport: b.build(),
            from,
            message_id_domain,
            throttle: DomainThrottle::new(
                cfg.domain_concurrency,
                cfg.domain_rate,
                &cfg.domain_limits,
            ),
            down: AtomicBool::new(false),
            last_error: Mutex::new(None),
        })
    }

    /// The `Message-ID` value (without angle brackets) for a Goniec message id; the
    /// provider id bounces are matched on.
    pub fn message_id(&self, id: &str) -> String {
        format!("{}@{}", id.to_ascii_lowercase(), self.message_id_domain)
    }

    fn build(&self, msg: &Outbound) -> Result<Message, DeliveryError> {
        let bad = |reason: String| DeliveryError::Permanent {
            code: "invalid_message".into(),
            reason,
        };
        let from = match &msg.from {
            Some(f) => f
                .parse::<Mailbox>()
                .map_err(|e| bad(format!("`from` is not an address: {e}")))?,
            None => self.from.clone(),
        };
        let to: Mailbox = msg
            .to
            .parse()
            .map_err(|e| bad(format!("recipient is not an address: {e}")))?;
        let email = msg.email.as_ref();
        let subject = email.map_or("", |e| e.subject.as_str());
        let mut builder = Message::builder()
            .from(from)
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{}>", self.message_id(&msg.message_id))));
        if let Some(value) = email.and_then(|e| e.list_unsubscribe.clone()) {
            builder = builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                value,
            ));
            if email.is_some_and(|e| e.one_click) {
                builder = builder.raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".into(),
                ));
            }
        }
        let text = msg.text.clone();
        let html = email.and_then(|e| e.html.clone());
        let attachments = email.map_or(&[][..], |e| e.attachments.as_slice());
        let built = if attachments.is_empty() {
            match (text, html) {
                (Some(t), Some(h)) => builder.multipart(MultiPart::alternative_plain_html(t, h)),
                (None, Some(h)) => builder.singlepart(SinglePart::html(h)),
                (t, None) => builder.singlepart(SinglePart::plain(t.unwrap_or_default())),
            }
        } else {
            // multipart/mixed: the body (alternatives or one part), then the files.
            let mut mixed = match (text, html) {
                (Some(t), Some(h)) => {
                    MultiPart::mixed().multipart(MultiPart::alternative_plain_html(t, h))
                }
                (None, Some(h)) => MultiPart::mixed().singlepart(SinglePart::html(h)),
                (t, None) => {
                    MultiPart::mixed().singlepart(SinglePart::plain(t.unwrap_or_default()))
                }
            };
            for a in attachments {
                let ct = ContentType::parse(&a.content_type).map_err(|e| {
                    bad(format!("attachment content type {:?}: {e}", a.content_type))
                })?;
                // Always base64: lettre would send ASCII bytes as 7bit with bare
                // LFs, which breaks RFC 5322, DKIM body hashes and strict relays.
                let body = Body::new_with_encoding(a.data.clone(), ContentTransferEncoding::Base64)
                    .map_err(|_| bad(format!("attachment {:?} cannot be encoded", a.filename)))?;
                mixed = mixed.singlepart(LettreAttachment::new(a.filename.clone()).body(body, ct));
            }
            builder.multipart(mixed)
        };
        let mut message = built.map_err(|e| bad(format!("cannot build the message: {e}")))?;
        if let Some(dkim) = email.and_then(|e| e.dkim.as_deref()) {
            message.sign(dkim);
        }
        Ok(message)
    }

    fn set_down(&self, why: Option<String>) {
        self.down.store(why.is_some(), Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }
}

/// Classify a failed send, once.
fn classify(e: &lettre::transport::smtp::Error) -> DeliveryError {
    let text = e.to_string();
    match e.status() {
        Some(code) if e.is_permanent() => {
            let n: u16 = code.to_string().parse().unwrap_or(550);
            // Bad mailbox or domain (5.1.x, a disabled account): the address goes
            // on the suppression list. Full mailboxes and policy blocks do not.
            let hard = from_smtp_reply(n, None, &text) == BounceKind::Hard;
            DeliveryError::Permanent {
                code: format!("smtp {n}{}", if hard { " hard_bounce" } else { "" }),
                reason: text,
            }
        }
        Some(_) => DeliveryError::Transient { reason: text },
        // No answer from the relay: connection, TLS or timeout trouble.
        None => DeliveryError::Unavailable { reason: text },
    }
}

#[async_trait]
impl Connector for SmtpConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &CHANNELS
    }

    async fn submit(&self, msg: &Outbound) -> Result<Submitted, DeliveryError> {
        let message = self.build(msg)?;
        // Held until the relay answers: the domain's slot covers the whole send.
        let _slot = match &self.throttle {
            Some(t) => Some(t.acquire(&domain_of(&msg.to)).await?),
            None => None,
        };
        match self.transport.send(message).await {
            Ok(_) => {
                self.set_down(None);
                Ok(Submitted::single(self.message_id(&msg.message_id)))
            }
            Err(e) => {
                let err = classify(&e);
                if matches!(err, DeliveryError::Unavailable { .. }) {
                    self.set_down(Some(format!("relay unreachable: {e}")));
                }
                Err(err)
            }
        }
    }

    fn health(&self) -> Health {
        if self.down.load(Ordering::Relaxed) {
            let why = self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_default();
            Health::Degraded(why)
        } else {
            Health::Up
        }
    }

    async fn close(&self) {
        self.transport.shutdown().await;
    }
}
