//! The SMPP [`Connector`]: several binds to one SMSC (transceivers, or transmitter +
//! receiver pairs), messages spread over the bound ones that are not throttled, text encoded and split the way the API counted it
//! ([`crate::text`]), SMPP statuses classified once into [`DeliveryError`], and
//! `deliver_sm` receipts turned into [`Receipt`]s whose `deliver_sm_resp` waits until
//! the gateway stored them. When a receipt is overdue the gateway asks with
//! `query_sm` ([`Connector::query`]), by the id exactly as `submit_sm_resp` gave it.

use std::str::FromStr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use goniec_core::Channel;

pub use super::config::IdFormat;
use super::config::{BindType as BindMode, Config as SmppConfig};
use rusmpp::pdus::{QuerySm, SubmitSm};
use rusmpp::tlvs::{MessageSubmissionRequestTlvValue, TlvValue};
use rusmpp::types::{AnyOctetString, COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, MessagePayload, Npi, RegisteredDelivery, Ton};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::receipt::{self, Stat};
use super::session::{BindType, Inbound, InboundPdu, Session, SessionConfig, SubmitError};
use super::status;
use crate::text::{self, Concat, Encoding};
use crate::{
    BuildContext, BuildError, Connector, DeliveryError, Health, InboundMessage, Outbound,
    QueryAnswer, Receipt, ReceiptState, Submitted,
};

const CHANNELS: [Channel; 1] = [Channel::Sms];

/// An SMPP connector.
pub struct SmppConnector {
    name: String,
    cfg: SmppConfig,
    concat: Concat,
    /// Binds that submit (transceivers or transmitters).
    sessions: Vec<Session>,
    /// Receiver binds of transmitter + receiver pairs (empty for transceivers).
    receivers: Vec<Session>,
    next: AtomicUsize,
    /// Concatenation reference numbers (8-bit UDH uses the low byte).
    reference: AtomicU16,
    stop: CancellationToken,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for SmppConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmppConnector")
            .field("name", &self.name)
            .field("binds", &self.sessions.len())
            .field("receivers", &self.receivers.len())
            .finish()
    }
}

impl SmppConnector {
    pub fn new(name: &str, cfg: &SmppConfig, cx: BuildContext) -> Result<Self, BuildError> {
        let concat = cfg.concat;
        let stop = cx.shutdown.child_token();
        let pair = cfg.bind_type == BindMode::TransmitterReceiver;
        // Each bind keeps at most this many receipts with us unanswered (more wait at
        // the SMSC), and the queue to the receipts task has room for all of them, so a
        // bind never waits to hand one on.
        let max_receipts = cfg.window.max(1) * 4;
        let receiving_binds = cfg.binds.max(1) * if pair { 2 } else { 1 };
        let (inbound_tx, inbound_rx) = mpsc::channel(max_receipts * receiving_binds);
        let session_cfg = SessionConfig {
            addr: format!("{}:{}", cfg.host, cfg.port),
            system_id: cfg.system_id.clone(),
            password: cfg.password.clone(),
            system_type: cfg.system_type.clone(),
            address_range: cfg.address_range.clone(),
            window: cfg.window,
            response_timeout: cfg.response_timeout,
            enquire_link: cfg.enquire_link,
            write_timeout: cfg.write_timeout,
            max_receipts,
            interface_version: cfg.interface_version,
            ..SessionConfig::default()
        };
        let (mut sessions, mut receivers, mut tasks) = (Vec::new(), Vec::new(), Vec::new());
        let mut spawn = |bind_type| {
            let cfg = SessionConfig {
                bind_type,
                ..session_cfg.clone()
            };
            let (s, t) = Session::spawn(cfg, inbound_tx.clone(), stop.clone());
            tasks.push(t);
            s
        };
        for _ in 0..cfg.binds.max(1) {
            if pair {
                sessions.push(spawn(BindType::Transmitter));
                receivers.push(spawn(BindType::Receiver));
            } else {
                sessions.push(spawn(BindType::Transceiver));
            }
        }
        let ids = cfg.receipt_ids;
        tasks.push(tokio::spawn(receipts(
            name.to_string(),
            ids,
            inbound_rx,
            (cx.receipts, cx.inbound),
        )));
        Ok(SmppConnector {
            name: name.into(),
            cfg: cfg.clone(),
            concat,
            sessions,
            receivers,
            next: AtomicUsize::new(0),
            // Random start: restarts and other instances must not reuse the
            // references of long messages still being reassembled on phones.
            reference: AtomicU16::new(rand_u16()),
            stop,
            tasks: Mutex::new(tasks),
        })
    }

    /// A bound session, round robin, preferring one the SMSC is not throttling (a
    /// throttled one holds its submits until its pause ends); `None` when no bind is up.
    fn session(&self) -> Option<&Session> {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut bound = (0..n)
            .map(|i| &self.sessions[(start + i) % n])
            .filter(|s| s.is_bound());
        let first = bound.next()?;
        if !first.is_throttled() {
            return Some(first);
        }
        Some(bound.find(|s| !s.is_throttled()).unwrap_or(first))
    }
}

/// A start value for concatenation references, without a RNG dependency: the
/// clock's nanoseconds mixed with the process id.
fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let x = u64::from(nanos) ^ (u64::from(std::process::id()) << 20);
    let x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    (x >> 48) as u16
}

/// TON/NPI for a sender: alphanumeric 5/0, short code 3/0, international 1/1.
pub fn sender_ton_npi(sender: &str) -> (u8, u8) {
    let digits = sender.trim_start_matches('+');
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        (5, 0)
    } else if digits.len() <= 8 && !sender.starts_with('+') {
        (3, 0)
    } else {
        (1, 1)
    }
}

/// Classify a failed submit, once.
pub fn classify(e: SubmitError) -> DeliveryError {
    match e {
        SubmitError::Throttled { .. } => DeliveryError::Throttled {
            retry_after: Some(Duration::from_secs(1)),
        },
        SubmitError::Rejected { status: s } => match s {
            // System errors and a full queue are the SMSC's trouble, not the message's.
            status::ESME_RSYSERR | status::ESME_RMSGQFUL => DeliveryError::Transient {
                reason: format!("{} ({s:#010x})", status::name(s)),
            },
            s => DeliveryError::Permanent {
                code: format!("{} ({s:#010x})", status::name(s)),
                reason: status::name(s).into(),
            },
        },
        SubmitError::Timeout(d) => DeliveryError::Uncertain {
            reason: format!("no submit_sm_resp within {d:?}"),
        },
        // The connection's fault, not the message's: retried without using up its
        // attempts, or a flapping SMSC would fail messages that did nothing wrong.
        SubmitError::Disconnected | SubmitError::Stopped => DeliveryError::Unavailable {
            reason: "SMPP bind dropped".into(),
        },
    }
}

fn bad(reason: String) -> DeliveryError {
    DeliveryError::Permanent {
        code: "invalid_message".into(),
        reason,
    }
}

/// One encoded part and its concatenation header.
struct Part {
    short_message: Vec<u8>,
    udh: bool,
    sar: Option<(u16, u8, u8)>,
    payload: bool,
}

impl SmppConnector {
    /// Encode and split a text into submit_sm bodies, with the data_coding to use.
    fn parts(&self, body: &str) -> Result<(u8, Vec<Part>), DeliveryError> {
        let info = text::analyze(body);
        let (coding, enc) = match info.encoding {
            Encoding::Gsm7 => match self.cfg.data_coding {
                3 if text::encode_latin1(body).is_some() => (3u8, Encoding::Gsm7),
                3 => (8, Encoding::Ucs2),
                _ => (0, Encoding::Gsm7),
            },
            Encoding::Ucs2 => (8, Encoding::Ucs2),
        };
        let encode = |t: &str| -> Result<Vec<u8>, DeliveryError> {
            match (coding, enc) {
                (3, _) => text::encode_latin1(t).ok_or_else(|| bad("text is not Latin-1".into())),
                (0, _) => {
                    text::encode_gsm7_unpacked(t).ok_or_else(|| bad("text is not GSM-7".into()))
                }
                _ => Ok(text::encode_ucs2(t)),
            }
        };
        let single = match enc {
            Encoding::Gsm7 => info.units <= 160,
            Encoding::Ucs2 => info.units <= 70,
        };
        if single || self.concat == Concat::Payload {
            let bytes = encode(body)?;
            let payload = bytes.len() > 254;
            return Ok((
                coding,
                vec![Part {
                    short_message: bytes,
                    udh: false,
                    sar: None,
                    payload,
                }],
            ));
        }
        let chunks = text::split(body, enc, self.concat);
        let total = u8::try_from(chunks.len())
            .map_err(|_| bad(format!("{} parts is more than 255", chunks.len())))?;
        let reference = self.reference.fetch_add(1, Ordering::Relaxed);
        let mut parts = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            let seq = (i + 1) as u8;
            let mut bytes = encode(chunk)?;
            match self.concat {
                Concat::Sar => parts.push(Part {
                    short_message: bytes,
                    udh: false,
                    sar: Some((reference, total, seq)),
                    payload: false,
                }),
                _ => {
                    let mut sm = match self.concat {
                        Concat::Udh16 => vec![
                            0x06,
                            0x08,
                            0x04,
                            (reference >> 8) as u8,
                            reference as u8,
                            total,
                            seq,
                        ],
                        _ => vec![0x05, 0x00, 0x03, reference as u8, total, seq],
                    };
                    sm.append(&mut bytes);
                    parts.push(Part {
                        short_message: sm,
                        udh: true,
                        sar: None,
                        payload: false,
                    });
                }
            }
        }
        Ok((coding, parts))
    }

    /// The sender a message goes out from, with its TON/NPI.
    fn source(&self, msg: &Outbound) -> (String, u8, u8) {
        let sender = msg.from.as_deref().unwrap_or(&self.cfg.default_sender);
        let (ton, npi) = self
            .cfg
            .source_ton_npi
            .map_or_else(|| sender_ton_npi(sender), |[t, n]| (t, n));
        (sender.trim_start_matches('+').to_string(), ton, npi)
    }

    fn submit_sm(&self, msg: &Outbound, coding: u8, part: Part) -> Result<SubmitSm, DeliveryError> {
        let (source, ton, npi) = self.source(msg);
        let source = source.as_str();
        let dest = msg.to.trim_start_matches('+');
        let source: COctetString<1, 21> = source
            .parse()
            .map_err(|_| bad(format!("sender `{source}` does not fit SMPP")))?;
        let dest: COctetString<1, 21> = dest
            .parse()
            .map_err(|_| bad("destination does not fit SMPP".into()))?;
        let mut b = SubmitSm::builder()
            .source_addr_ton(Ton::from(ton))
            .source_addr_npi(Npi::from(npi))
            .source_addr(source)
            .dest_addr_ton(Ton::International)
            .dest_addr_npi(Npi::Isdn)
            .destination_addr(dest)
            .esm_class(EsmClass::from(if part.udh { 0x40 } else { 0x00 }))
            .registered_delivery(RegisteredDelivery::from(0x01))
            .data_coding(DataCoding::from(coding));
        let sar = part.sar;
        if part.payload {
            b = b.push_tlv(MessageSubmissionRequestTlvValue::MessagePayload(
                MessagePayload::new(AnyOctetString::from_vec(part.short_message)),
            ));
        } else {
            let sm = OctetString::from_vec(part.short_message)
                .map_err(|_| bad("part longer than 254 octets".into()))?;
            b = b.short_message(sm);
        }
        if let Some((reference, total, seq)) = sar {
            b = b
                .push_tlv(MessageSubmissionRequestTlvValue::SarMsgRefNum(reference))
                .push_tlv(MessageSubmissionRequestTlvValue::SarTotalSegments(total))
                .push_tlv(MessageSubmissionRequestTlvValue::SarSegmentSeqnum(seq));
        }
        Ok(b.build())
    }
}

#[async_trait]
impl Connector for SmppConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &CHANNELS
    }

    async fn submit(&self, msg: &Outbound) -> Result<Submitted, DeliveryError> {
        let body = msg.text.as_deref().unwrap_or("");
        let (coding, parts) = self.parts(body)?;
        let count = parts.len() as u32;
        let mut ids = Vec::with_capacity(parts.len());
        let mut raw = Vec::with_capacity(parts.len());
        for part in parts {
            let pdu = self.submit_sm(msg, coding, part)?;
            let session = self.session().ok_or_else(|| DeliveryError::Unavailable {
                reason: "no SMPP bind is up".into(),
            })?;
            let id = session.submit(pdu).await.map_err(classify)?;
            ids.push(receipt::normalize_id(&id));
            raw.push(id);
        }
        let provider_id = ids.first().cloned().unwrap_or_default();
        Ok(Submitted {
            provider_id,
            provider_ids: ids,
            parts: count,
            query_ids: raw,
        })
    }

    /// `query_sm` for one part, on a bind that can submit (receivers may not query).
    /// The SMSC not knowing the id (ESME_RQUERYFAIL, ESME_RINVMSGID), or refusing the
    /// query for good (ESME_RINVCMDID from one without the feature), is an answer:
    /// [`ReceiptState::Unknown`]. Throttling, timeouts and a dropped bind are errors:
    /// ask again later.
    async fn query(
        &self,
        msg: &Outbound,
        query_id: &str,
    ) -> Result<Option<QueryAnswer>, DeliveryError> {
        let unknown = |why: String| {
            Ok(Some(QueryAnswer {
                state: ReceiptState::Unknown,
                error: Some(why),
            }))
        };
        let Ok(message_id) = COctetString::<1, 65>::from_str(query_id) else {
            return unknown(format!("message id `{query_id}` does not fit query_sm"));
        };
        let (source, ton, npi) = self.source(msg);
        // The original source address: SMSCs that check it find the message by both.
        let source_addr = COctetString::<1, 21>::from_str(&source).unwrap_or_default();
        let pdu = QuerySm::builder()
            .message_id(message_id)
            .source_addr_ton(Ton::from(ton))
            .source_addr_npi(Npi::from(npi))
            .source_addr(source_addr)
            .build();
        let session = self.session().ok_or_else(|| DeliveryError::Unavailable {
            reason: "no SMPP bind is up".into(),
        })?;
        match session.query(pdu).await {
            Ok(a) => {
                let Some(stat) = receipt::stat_from_message_state(a.message_state) else {
                    return unknown(format!("query_sm: message_state {}", a.message_state));
                };
                let state = stat.receipt_state();
                let error = match state {
                    ReceiptState::Delivered | ReceiptState::Pending => None,
                    _ => Some(format!("stat:{} err:{:03}", stat.as_str(), a.error_code)),
                };
                Ok(Some(QueryAnswer { state, error }))
            }
            Err(SubmitError::Rejected { status: s }) => {
                unknown(format!("query_sm: {} ({s:#010x})", status::name(s)))
            }
            Err(e) => Err(classify(e)),
        }
    }

    fn concat(&self) -> Option<Concat> {
        Some(self.concat)
    }

    fn health(&self) -> Health {
        let all = || self.sessions.iter().chain(&self.receivers);
        let total = self.sessions.len() + self.receivers.len();
        let up = all().filter(|s| s.is_bound()).count();
        if up == total {
            Health::Up
        } else if self.sessions.iter().any(Session::is_bound) {
            // Submits flow; receipts for a missing receiver wait at the SMSC.
            Health::Degraded(format!("{up} of {total} binds up"))
        } else {
            // A stalled bind says so; otherwise the first reason a bind is down.
            let why = all()
                .find(|s| s.is_write_stalled())
                .or_else(|| all().find(|s| !s.is_bound()))
                .and_then(Session::down_reason)
                .unwrap_or_else(|| "not bound yet".into());
            Health::Down(why)
        }
    }

    fn binds(&self) -> Vec<crate::BindStatus> {
        let kind = |receiver: bool| match (receiver, self.receivers.is_empty()) {
            (true, _) => "receiver",
            (false, true) => "transceiver",
            (false, false) => "transmitter",
        };
        self.sessions
            .iter()
            .map(|s| (s, false))
            .chain(self.receivers.iter().map(|s| (s, true)))
            .enumerate()
            .map(|(i, (s, receiver))| {
                let st = s.status();
                let state = if s.is_write_stalled() {
                    "stalled"
                } else if !s.is_bound() {
                    "down"
                } else if s.is_throttled() {
                    "throttled"
                } else {
                    "up"
                };
                crate::BindStatus {
                    name: format!("bind {} ({})", i + 1, kind(receiver)),
                    state,
                    reason: s.down_reason(),
                    since_ms: st.since_ms,
                    in_flight: st.in_flight,
                    window: if receiver { 0 } else { st.window },
                    max_window: if receiver { 0 } else { self.cfg.window },
                    response_ms: st.response_us.map(|us| us as f64 / 1000.0),
                    throttles: st.throttles,
                    pause_ms: st.pause_ms,
                    reconnects: s.drops(),
                    reconnect_in_ms: if s.is_bound() { 0 } else { st.reconnect_ms },
                }
            })
            .collect()
    }

    async fn close(&self) {
        self.stop.cancel();
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// What a deliver_sm or data_sm receipt says: the receipted id, its state and the
/// carrier's error. `None` for anything that is not a receipt (MO messages).
pub fn read_receipt(pdu: &InboundPdu) -> Option<(String, ReceiptState, Option<String>)> {
    let (esm_class, short_message, tlvs) = match pdu {
        InboundPdu::Deliver(d) => (d.esm_class, d.short_message().as_ref(), d.tlvs()),
        // data_sm has no short_message; its text, if any, is in message_payload.
        InboundPdu::Data(d) => (d.esm_class, &[][..], d.tlvs()),
    };
    // Receipts have the MC delivery receipt bit in esm_class (0x04); others are MO messages.
    if u8::from(esm_class) & 0x3C == 0 {
        return None;
    }
    let payload = tlvs.iter().find_map(|t| match t.value() {
        Some(TlvValue::MessagePayload(p)) => Some(p.value.as_ref()),
        _ => None,
    });
    let text = receipt::parse(match payload {
        Some(p) if short_message.is_empty() => p,
        _ => short_message,
    });
    let mut id = None;
    let mut state = None;
    let mut net_err = None;
    for tlv in tlvs {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(v)) => id = Some(v.as_str().to_string()),
            Some(TlvValue::MessageState(s)) => {
                state = receipt::stat_from_message_state(u8::from(*s))
            }
            Some(TlvValue::NetworkErrorCode(e)) => {
                net_err = Some(format!("network error {}", e.error_code))
            }
            _ => {}
        }
    }
    let id = id.or_else(|| text.as_ref().and_then(|t| t.id.clone()))?;
    let stat = state
        .or_else(|| text.as_ref().and_then(|t| t.stat))
        .unwrap_or(Stat::Unknown);
    let st = stat.receipt_state();
    let error = match st {
        ReceiptState::Delivered | ReceiptState::Pending => None,
        _ => Some(
            net_err
                .or_else(|| {
                    text.as_ref()
                        .and_then(|t| t.err.clone())
                        .map(|e| format!("stat:{} err:{e}", stat.as_str()))
                })
                .unwrap_or_else(|| format!("stat:{}", stat.as_str())),
        ),
    };
    Some((id, st, error))
}

/// The receipt id in the form submit ids are stored in (normalised): converted as
/// the `receipt_ids` setting declares, or as written (normalised) when that
/// conversion cannot apply to it (the gateway then tries the other spellings, see
/// [`receipt::id_candidates`]). `None` only for an empty id.
pub fn receipt_key(id: &str, format: IdFormat) -> Option<String> {
    let id = receipt::normalize_id(id);
    if id.is_empty() {
        return None;
    }
    let converted = match format {
        IdFormat::Same => None,
        // Receipt in decimal, stored (submit) id in hex.
        IdFormat::HexToDecimal => id.parse::<u64>().ok().map(|n| format!("{n:x}")),
        // Receipt in hex, stored id in decimal.
        IdFormat::DecimalToHex => u64::from_str_radix(&id, 16).ok().map(|n| n.to_string()),
    };
    Some(converted.unwrap_or(id))
}

/// A mobile-originated message (`deliver_sm`/`data_sm` without the receipt bits):
/// sender (`+` for international numbers), destination and text decoded by its
/// data_coding.
pub fn read_mo(pdu: &InboundPdu) -> Option<(String, String, String)> {
    let (esm_class, coding, src, src_ton, dst, short_message, tlvs) = match pdu {
        InboundPdu::Deliver(d) => (
            d.esm_class,
            d.data_coding,
            d.source_addr.as_str(),
            d.source_addr_ton,
            d.destination_addr.as_str(),
            d.short_message().as_ref(),
            d.tlvs(),
        ),
        InboundPdu::Data(d) => (
            d.esm_class,
            d.data_coding,
            d.source_addr.as_str(),
            d.source_addr_ton,
            d.destination_addr.as_str(),
            &[][..],
            d.tlvs(),
        ),
    };
    let esm = u8::from(esm_class);
    if esm & 0x3C != 0 {
        return None;
    }
    let payload = tlvs.iter().find_map(|t| match t.value() {
        Some(TlvValue::MessagePayload(p)) => Some(p.value.as_ref()),
        _ => None,
    });
    let mut bytes = match payload {
        Some(p) if short_message.is_empty() => p,
        _ => short_message,
    };
    // A user data header (a long reply's part): skip it, keep the text.
    if esm & 0x40 != 0 {
        let udhl = usize::from(*bytes.first()?);
        bytes = bytes.get(udhl + 1..)?;
    }
    let text = match u8::from(coding) {
        8 => text::decode_ucs2(bytes),
        3 => bytes.iter().map(|&b| char::from(b)).collect(),
        _ => text::decode_gsm7_unpacked(bytes),
    };
    let from = if u8::from(src_ton) == 1 && !src.starts_with('+') {
        format!("+{src}")
    } else {
        src.to_string()
    };
    Some((from, dst.to_string(), text))
}

/// Turns deliver_sm into receipts and inbound messages; answers each only after the
/// gateway stored it. It never waits for a stored signal: each receipt's answer
/// waits in its own small task, so one the gateway holds (an unknown id is held for
/// seconds) does not hold up the next. How many wait at once is bounded by the
/// sessions ([`SessionConfig::max_receipts`] per bind).
async fn receipts(
    connector: String,
    ids: IdFormat,
    mut rx: mpsc::Receiver<Inbound>,
    (out, inbound): (mpsc::Sender<Receipt>, mpsc::Sender<InboundMessage>),
) {
    // Answer the SMSC once the gateway has handled it (or with an error if not).
    let answer_when_stored = |stored_rx: oneshot::Receiver<()>, ack: oneshot::Sender<u32>| {
        tokio::spawn(async move {
            let st = if stored_rx.await.is_ok() {
                status::ESME_ROK
            } else {
                status::ESME_RSYSERR
            };
            let _ = ack.send(st);
        });
    };
    while let Some(Inbound { pdu, ack }) = rx.recv().await {
        let Some((id, state, error)) = read_receipt(&pdu) else {
            let Some((from, to, text)) = read_mo(&pdu) else {
                let _ = ack.send(status::ESME_ROK);
                continue;
            };
            let (stored_tx, stored_rx) = oneshot::channel();
            let m = InboundMessage {
                connector: connector.clone(),
                channel: Channel::Sms,
                from,
                to,
                text,
                postback: None,
                at: SystemTime::now(),
                stored: Some(stored_tx),
            };
            if inbound.send(m).await.is_err() {
                return;
            }
            answer_when_stored(stored_rx, ack);
            continue;
        };
        let Some(provider_id) = receipt_key(&id, ids) else {
            tracing::info!(connector = %connector, receipt_id = %id, "Receipt with an empty id; acknowledged and dropped.");
            let _ = ack.send(status::ESME_ROK);
            continue;
        };
        let (stored_tx, stored_rx) = oneshot::channel();
        let r = Receipt {
            connector: connector.clone(),
            provider_id,
            state,
            at: SystemTime::now(),
            error,
            stored: Some(stored_tx),
        };
        if out.send(r).await.is_err() {
            return; // gateway gone; dropping `ack` answers an error, the SMSC resends
        }
        answer_when_stored(stored_rx, ack);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_ids_are_converted_only_as_declared() {
        assert_eq!(
            receipt_key("0000000014", IdFormat::Same).as_deref(),
            Some("14")
        );
        assert_eq!(
            receipt_key(" 1A2B ", IdFormat::Same).as_deref(),
            Some("1a2b")
        );
        assert_eq!(
            receipt_key("20", IdFormat::HexToDecimal).as_deref(),
            Some("14")
        );
        assert_eq!(
            receipt_key("14", IdFormat::DecimalToHex).as_deref(),
            Some("20")
        );
        // Not decimal, so not what hex_to_decimal expects: kept as written, for the
        // gateway's other spellings to try.
        assert_eq!(
            receipt_key("ZZ", IdFormat::HexToDecimal).as_deref(),
            Some("zz")
        );
        assert_eq!(receipt_key("", IdFormat::Same), None);
        assert_eq!(receipt_key(" \0", IdFormat::DecimalToHex), None);
    }

    #[test]
    fn sender_ton_npi_follows_the_sender_kind() {
        assert_eq!(sender_ton_npi("ACME"), (5, 0));
        assert_eq!(sender_ton_npi("Windykacja1"), (5, 0));
        assert_eq!(sender_ton_npi("8088"), (3, 0));
        assert_eq!(sender_ton_npi("+48500100200"), (1, 1));
        assert_eq!(sender_ton_npi("48500100200"), (1, 1));
    }

    #[test]
    fn smpp_statuses_map_to_delivery_errors() {
        let cases = [
            (SubmitError::Throttled { status: 0x58 }, "throttled"),
            (SubmitError::Throttled { status: 0x14 }, "throttled"),
            (SubmitError::Rejected { status: 0x08 }, "transient"),
            (SubmitError::Rejected { status: 0x0B }, "permanent"),
            (SubmitError::Rejected { status: 0x45 }, "permanent"),
            (SubmitError::Timeout(Duration::from_secs(10)), "uncertain"),
            (SubmitError::Disconnected, "unavailable"),
        ];
        for (e, kind) in cases {
            assert_eq!(classify(e.clone()).kind(), kind, "{e:?}");
        }
        match classify(SubmitError::Rejected { status: 0x0B }) {
            DeliveryError::Permanent { code, .. } => {
                assert_eq!(code, "ESME_RINVDSTADR (0x0000000b)")
            }
            other => panic!("{other:?}"),
        }
    }
}
