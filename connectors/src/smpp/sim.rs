//! An SMSC simulator: a real SMPP 3.4 server on TCP, for `goniec demo`,
//! tests and benches.
//!
//! This module owns the server side of the protocol, built on the same
//! framer ([`super::frame`]) as the gateway and producing receipts in the text
//! shape [`super::receipt::parse`] reads:
//!
//! * **Sessions**: one task per connection (at most [`MAX_SESSIONS`]), each
//!   starting unbound. `bind_transmitter`/`bind_receiver`/`bind_transceiver`
//!   are checked against [`SimConfig::system_id`]/[`SimConfig::password`]
//!   (`ESME_RBINDFAIL` for an unknown system_id, `ESME_RINVPASWD` for a wrong
//!   password, then the connection is closed); any interface_version is
//!   accepted. Before a bind, requests other than bind/`enquire_link` get
//!   their `*_resp` with `ESME_RINVBNDSTS` (or `generic_nack` when they have
//!   no response). All writes go through one writer task per connection, so
//!   frames never interleave.
//! * **submit_sm**: every accepted message gets a unique id, a global counter
//!   in 10-digit zero-padded *uppercase* hex (`00000001A3`). The
//!   `submit_sm_resp` goes out after [`SimConfig::response_delay`] from a
//!   task of its own, so latency never blocks the other PDUs of the session.
//!   Every [`SimConfig::throttle_every`]-th `submit_sm` is answered
//!   `ESME_RTHROTTLED` instead.
//! * **Receipts**: when `registered_delivery` asks for one, a `deliver_sm`
//!   with esm_class 0x04 follows after [`SimConfig::receipt_delay`]:
//!   addresses swapped, the standard text
//!   (`id:00000001A3 sub:001 dlvrd:001 submit date:… done date:… stat:DELIVRD err:000 text:…`)
//!   and the TLVs `receipted_message_id` (deliberately *lowercase without
//!   leading zeros*, `1a3`, so the gateway has to normalise ids) and
//!   `message_state`; with [`SimConfig::receipts_as_data_sm`] the receipt is a
//!   `data_sm` instead (same TLVs, the text in `message_payload`), as some
//!   SMSCs send. Every [`SimConfig::undeliverable_every`]-th message is
//!   `UNDELIV`. Receipts go to a receiver/transceiver bound with the
//!   submitter's system_id (the submitting session first if it is a
//!   transceiver); with none bound they wait until one binds. At most
//!   [`SimConfig::window`] receipts per session await their `deliver_sm_resp`;
//!   one not acknowledged within [`SimConfig::resend_after`], or whose session
//!   drops, is sent again, like a real SMSC does. A `deliver_sm_resp` with an
//!   error status (or a `generic_nack` for the receipt) retries it after
//!   `resend_after`.
//! * **Robustness**: reads are bounded by [`SimConfig::max_frame`]; a frame
//!   that does not decode is answered with `generic_nack` (status from
//!   [`frame::Undecodable`]) and the session goes on (except an undecodable
//!   `deliver_sm_resp`, taken as an ack by its header, and an undecodable
//!   `generic_nack`, ignored so nacks never ping-pong); a bad `command_length`
//!   gets `generic_nack ESME_RINVCMDLEN` and the connection is closed; an
//!   unknown command_id gets `generic_nack ESME_RINVCMDID`. Nothing here
//!   panics on input from the network.
//! * **Counters**: [`SmscSim::stats`] returns a [`SimStats`] snapshot.
//!
//! Error responses carry no body (SMPP 3.4 §4: "the body is not returned if
//! the command_status field contains a non-zero value").

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusmpp::pdus::{
    BindReceiverResp, BindTransceiverResp, BindTransmitterResp, DeliverSm, SubmitSm, SubmitSmResp,
};
use rusmpp::tlvs::{MessageDeliveryRequestTlvValue, TlvValue};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{EsmClass, InterfaceVersion, MessageState, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::frame::{self, FrameLimits, ESME_RINVCMDID, ESME_ROK, GENERIC_NACK};

/// system_id the simulator answers binds with.
pub const SIM_SYSTEM_ID: &str = "goniec-sim";
/// Most connections served at once; more are accepted and closed at once.
pub const MAX_SESSIONS: usize = 1024;

pub use super::status::{
    ESME_RALYBND, ESME_RBINDFAIL, ESME_RINVBNDSTS, ESME_RINVPASWD, ESME_RTHROTTLED,
};

const SUBMIT_SM_RESP: u32 = 0x8000_0004;
/// Delayed `submit_sm_resp`s waiting at once per session; the reader stops
/// reading while they are all taken (back-pressure instead of unbounded tasks).
const MAX_DELAYED_RESPONSES: usize = 4096;
/// Frames queued for one connection's writer.
const WRITE_QUEUE: usize = 1024;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 8192;
/// Bytes the writer gathers into one write.
const WRITE_BATCH: usize = 64 * 1024;
/// How long a closing session waits for its writer to flush.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
/// Characters of the message copied into the receipt's `text:`.
const RECEIPT_TEXT_CHARS: usize = 20;

/// What the simulator accepts and how it behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The system_id binds must carry (at most 15 characters).
    pub system_id: String,
    /// The password binds must carry (at most 8 characters).
    pub password: String,
    /// Delay between accepting a submit_sm and sending its receipt.
    pub receipt_delay: Duration,
    /// Every n-th accepted message ends `UNDELIV` (0 = never).
    pub undeliverable_every: u64,
    /// Every n-th submit_sm is answered `ESME_RTHROTTLED` (0 = never).
    pub throttle_every: u64,
    /// Delay before each submit_sm_resp (emulated latency); other PDUs of the
    /// session are answered meanwhile.
    pub response_delay: Duration,
    /// Largest accepted command_length.
    pub max_frame: u32,
    /// Most receipts awaiting deliver_sm_resp per session.
    pub window: usize,
    /// A receipt not acknowledged within this time is sent again.
    pub resend_after: Duration,
    /// Send receipts as `data_sm` rather than `deliver_sm`.
    pub receipts_as_data_sm: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            system_id: "goniec".into(),
            password: "secret".into(),
            receipt_delay: Duration::from_millis(50),
            undeliverable_every: 0,
            throttle_every: 0,
            response_delay: Duration::ZERO,
            max_frame: frame::DEFAULT_MAX_LEN,
            window: 64,
            resend_after: Duration::from_secs(10),
            receipts_as_data_sm: false,
        }
    }
}

/// A snapshot of the simulator's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SimStats {
    /// Successful binds.
    pub binds: u64,
    /// Binds refused for bad credentials.
    pub bind_failures: u64,
    /// Connections open now.
    pub sessions: u64,
    /// submit_sm accepted (given a message id).
    pub submits: u64,
    /// submit_sm answered `ESME_RTHROTTLED`.
    pub throttled: u64,
    /// Receipt deliver_sm written, re-sends included.
    pub receipts_sent: u64,
    /// Of those, re-sends of a receipt sent before.
    pub receipts_resent: u64,
    /// Receipts acknowledged with deliver_sm_resp ESME_ROK.
    pub receipts_acked: u64,
    /// Receipts created and not acknowledged yet (waiting, queued or in flight).
    pub receipts_pending: u64,
    /// generic_nack PDUs sent.
    pub generic_nacks: u64,
}

#[derive(Debug, Default)]
struct Counters {
    binds: AtomicU64,
    bind_failures: AtomicU64,
    sessions: AtomicU64,
    submits: AtomicU64,
    throttled: AtomicU64,
    receipts_sent: AtomicU64,
    receipts_resent: AtomicU64,
    receipts_acked: AtomicU64,
    receipts_pending: AtomicU64,
    generic_nacks: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A running simulator. Cheap to clone; it serves until the
/// `CancellationToken` given to [`SmscSim::start`] is cancelled.
#[derive(Clone)]
pub struct SmscSim {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for SmscSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmscSim")
            .field("local_addr", &self.local_addr)
            .field("stats", &self.stats())
            .finish()
    }
}

impl SmscSim {
    /// Bind `addr` (port 0 = a free port) and serve until `shutdown` is
    /// cancelled. Must be called inside a tokio runtime.
    pub async fn start(
        addr: SocketAddr,
        cfg: SimConfig,
        shutdown: CancellationToken,
    ) -> std::io::Result<SmscSim> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            cfg,
            counters: Counters::default(),
            next_message: AtomicU64::new(0),
            submits_seen: AtomicU64::new(0),
            next_session: AtomicU64::new(0),
            hub: Mutex::new(Hub::default()),
            wake: Notify::new(),
        });
        tokio::spawn(dispatcher(inner.clone(), shutdown.clone()));
        tokio::spawn(accept_loop(listener, inner.clone(), shutdown));
        tracing::info!(%local_addr, "SMSC simulator listening");
        Ok(SmscSim { inner, local_addr })
    }

    /// The address the simulator listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A recipient's reply (mobile originated) from `from` (E.164) to `to`, delivered
    /// as a `deliver_sm` to a receiver or transceiver bound as `system_id`, resent
    /// until acknowledged like a receipt. GSM-7 text goes as data_coding 0, other
    /// text as UCS-2.
    pub fn send_mo(&self, system_id: &str, from: &str, to: &str, text: &str) -> Result<(), String> {
        let addr = |a: &str| {
            COctetString::<1, 21>::from_str(a.trim_start_matches('+'))
                .map_err(|e| format!("address `{a}`: {e:?}"))
        };
        let (coding, bytes) = match crate::text::encode_gsm7_unpacked(text) {
            Some(b) => (0u8, b),
            None => (8u8, crate::text::encode_ucs2(text)),
        };
        let text = OctetString::from_slice(&bytes).map_err(|e| format!("text: {e:?}"))?;
        let (dest_ton, dest_npi) = match crate::smpp::connector::sender_ton_npi(to) {
            (5, _) => (Ton::Alphanumeric, Npi::Unknown),
            (3, _) => (Ton::NetworkSpecific, Npi::Unknown),
            _ => (Ton::International, Npi::Isdn),
        };
        let mo = Receipt {
            system_id: system_id.to_string(),
            origin: u64::MAX,
            source_ton: Ton::International,
            source_npi: Npi::Isdn,
            source_addr: addr(from)?,
            dest_ton,
            dest_npi,
            dest_addr: addr(to)?,
            text,
            receipted_id: COctetString::default(),
            state: MessageState::Delivered,
            attempts: 0,
            mo: Some(coding),
        };
        bump(&self.inner.counters.receipts_pending);
        self.inner
            .hub()
            .ready
            .entry(system_id.to_string())
            .or_default()
            .push_back(mo);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SimStats {
            binds: get(&c.binds),
            bind_failures: get(&c.bind_failures),
            sessions: get(&c.sessions),
            submits: get(&c.submits),
            throttled: get(&c.throttled),
            receipts_sent: get(&c.receipts_sent),
            receipts_resent: get(&c.receipts_resent),
            receipts_acked: get(&c.receipts_acked),
            receipts_pending: get(&c.receipts_pending),
            generic_nacks: get(&c.generic_nacks),
        }
    }
}

struct Inner {
    cfg: SimConfig,
    counters: Counters,
    /// Last message id handed out.
    next_message: AtomicU64,
    /// submit_sm seen (for throttle_every).
    submits_seen: AtomicU64,
    next_session: AtomicU64,
    hub: Mutex<Hub>,
    /// Wakes the receipt dispatcher.
    wake: Notify,
}

/// A receipt to deliver; everything but the sequence number is fixed when
/// the submit is accepted.
#[derive(Debug, Clone)]
struct Receipt {
    system_id: String,
    /// Session that submitted the message.
    origin: u64,
    source_ton: Ton,
    source_npi: Npi,
    source_addr: COctetString<1, 21>,
    dest_ton: Ton,
    dest_npi: Npi,
    dest_addr: COctetString<1, 21>,
    text: OctetString<0, 255>,
    receipted_id: COctetString<1, 65>,
    state: MessageState,
    /// Times written to a session so far.
    attempts: u32,
    /// A mobile-originated message with this data_coding, not a receipt.
    mo: Option<u8>,
}

impl Receipt {
    fn command(&self, sequence_number: u32, as_data_sm: bool) -> Vec<u8> {
        if let Some(coding) = self.mo {
            let pdu = DeliverSm::builder()
                .source_addr_ton(self.source_ton)
                .source_addr_npi(self.source_npi)
                .source_addr(self.source_addr.clone())
                .dest_addr_ton(self.dest_ton)
                .dest_addr_npi(self.dest_npi)
                .destination_addr(self.dest_addr.clone())
                .esm_class(EsmClass::from(0x00))
                .data_coding(rusmpp::values::DataCoding::from(coding))
                .short_message(self.text.clone())
                .build();
            return frame::encode(&Command::new(CommandStatus::EsmeRok, sequence_number, pdu));
        }
        if as_data_sm {
            return self.data_sm(sequence_number);
        }
        let pdu = DeliverSm::builder()
            .source_addr_ton(self.source_ton)
            .source_addr_npi(self.source_npi)
            .source_addr(self.source_addr.clone())
            .dest_addr_ton(self.dest_ton)
            .dest_addr_npi(self.dest_npi)
            .destination_addr(self.dest_addr.clone())
            .esm_class(EsmClass::from(0x04))
            .short_message(self.text.clone())
            .push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(
                self.receipted_id.clone(),
            ))
            .push_tlv(MessageDeliveryRequestTlvValue::MessageState(self.state))
            .build();
        frame::encode(&Command::new(CommandStatus::EsmeRok, sequence_number, pdu))
    }
}

impl Receipt {
    /// The receipt as a `data_sm`, encoded here: rusmpp's typed `DataSm` only takes
    /// submission TLVs, and a receipt needs `receipted_message_id`/`message_state`.
    fn data_sm(&self, sequence_number: u32) -> Vec<u8> {
        fn tlv(out: &mut Vec<u8>, tag: u16, value: &[u8]) {
            out.extend_from_slice(&tag.to_be_bytes());
            out.extend_from_slice(&(value.len() as u16).to_be_bytes());
            out.extend_from_slice(value);
        }
        let mut b = vec![0u8; 16];
        b.push(0); // service_type ""
        for (ton, npi, addr) in [
            (self.source_ton, self.source_npi, &self.source_addr),
            (self.dest_ton, self.dest_npi, &self.dest_addr),
        ] {
            b.extend_from_slice(&[u8::from(ton), u8::from(npi)]);
            b.extend_from_slice(addr.as_str().as_bytes());
            b.push(0);
        }
        b.extend_from_slice(&[0x04, 0x00, 0x00]); // esm_class, registered_delivery, data_coding
        let mut id = self.receipted_id.as_str().as_bytes().to_vec();
        id.push(0);
        tlv(&mut b, 0x001E, &id); // receipted_message_id
        tlv(&mut b, 0x0427, &[u8::from(self.state)]); // message_state
        tlv(&mut b, 0x0424, self.text.as_ref()); // message_payload
        let len = b.len() as u32;
        b[0..4].copy_from_slice(&len.to_be_bytes());
        b[4..8].copy_from_slice(&DATA_SM.to_be_bytes());
        b[12..16].copy_from_slice(&sequence_number.to_be_bytes());
        b
    }
}

const DATA_SM: u32 = 0x0000_0103;

struct Timed {
    due: Instant,
    receipt: Receipt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BindMode {
    Transmitter,
    Receiver,
    Transceiver,
}

impl BindMode {
    fn can_submit(self) -> bool {
        self != BindMode::Receiver
    }
    fn can_receive(self) -> bool {
        self != BindMode::Transmitter
    }
}

/// A bound session as the dispatcher sees it.
struct BoundSession {
    system_id: String,
    mode: BindMode,
    tx: mpsc::Sender<Out>,
    last_seq: u32,
    /// Receipts written and not acknowledged, by sequence number.
    inflight: HashMap<u32, (Receipt, Instant)>,
}

impl BoundSession {
    fn next_seq(&mut self) -> u32 {
        self.last_seq = if self.last_seq >= 0x7FFF_FFFF {
            1
        } else {
            self.last_seq + 1
        };
        self.last_seq
    }
}

/// Receipt routing state, behind one mutex (never held across an await).
#[derive(Default)]
struct Hub {
    sessions: HashMap<u64, BoundSession>,
    /// Waiting for receipt_delay; due times only grow (constant delay).
    delayed: VecDeque<Timed>,
    /// Waiting for resend_after after a negative ack; due times only grow.
    retry: VecDeque<Timed>,
    /// Ready to send, per system_id.
    ready: HashMap<String, VecDeque<Receipt>>,
}

impl Inner {
    fn hub(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn window(&self) -> usize {
        self.cfg.window.max(1)
    }

    fn schedule(&self, receipt: Receipt) {
        bump(&self.counters.receipts_pending);
        let mut hub = self.hub();
        let was_empty = hub.delayed.is_empty();
        hub.delayed.push_back(Timed {
            due: Instant::now() + self.cfg.receipt_delay,
            receipt,
        });
        drop(hub);
        // With receipts already waiting, the dispatcher wakes no later than
        // the first of them, which is due no later than this one.
        if was_empty {
            self.wake.notify_one();
        }
    }

    fn register(&self, id: u64, system_id: String, mode: BindMode, tx: mpsc::Sender<Out>) {
        self.hub().sessions.insert(
            id,
            BoundSession {
                system_id,
                mode,
                tx,
                last_seq: 0,
                inflight: HashMap::new(),
            },
        );
        if mode.can_receive() {
            self.wake.notify_one();
        }
    }

    /// The session is gone: its unacknowledged receipts go back to the front
    /// of the queue, for another (or a new) bind.
    fn unregister(&self, id: u64) {
        let mut hub = self.hub();
        let Some(session) = hub.sessions.remove(&id) else {
            return;
        };
        if session.inflight.is_empty() {
            return;
        }
        let mut back: Vec<(u32, Receipt)> = session
            .inflight
            .into_iter()
            .map(|(seq, (r, _))| (seq, r))
            .collect();
        back.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        let queue = hub.ready.entry(session.system_id).or_default();
        for (_, r) in back {
            queue.push_front(r);
        }
        drop(hub);
        self.wake.notify_one();
    }

    /// A deliver_sm_resp (or a generic_nack) for one of our receipts.
    fn ack(&self, session: u64, seq: u32, status: u32) {
        let mut hub = self.hub();
        let Some(s) = hub.sessions.get_mut(&session) else {
            return;
        };
        // Unknown seq: a late answer to a receipt already re-queued.
        let Some((receipt, _)) = s.inflight.remove(&seq) else {
            return;
        };
        if status == ESME_ROK {
            self.counters.receipts_acked.fetch_add(1, Ordering::Relaxed);
            self.counters
                .receipts_pending
                .fetch_sub(1, Ordering::Relaxed);
        } else {
            tracing::debug!(session, seq, status, "receipt refused; retrying later");
            let was_empty = hub.retry.is_empty();
            hub.retry.push_back(Timed {
                due: Instant::now() + self.cfg.resend_after,
                receipt,
            });
            if was_empty {
                drop(hub);
                self.wake.notify_one();
                return;
            }
        }
        // A window slot is free: wake the dispatcher if anything waits for one.
        let waiting = hub.ready.values().any(|q| !q.is_empty());
        drop(hub);
        if waiting {
            self.wake.notify_one();
        }
    }

    /// One dispatcher round: release due receipts, re-queue timed-out ones
    /// (when `scan`), write what the windows allow. Returns when the next
    /// timed receipt is due.
    fn dispatch(&self, now: Instant, scan: bool) -> Option<Instant> {
        let window = self.window();
        let mut hub = self.hub();
        let hub = &mut *hub;

        for queue in [&mut hub.delayed, &mut hub.retry] {
            while queue.front().is_some_and(|t| t.due <= now) {
                if let Some(t) = queue.pop_front() {
                    let sys = t.receipt.system_id.clone();
                    hub.ready.entry(sys).or_default().push_back(t.receipt);
                }
            }
        }

        if scan {
            let resend_after = self.cfg.resend_after;
            for s in hub.sessions.values_mut() {
                let expired: Vec<u32> = s
                    .inflight
                    .iter()
                    .filter(|(_, (_, sent))| now.saturating_duration_since(*sent) >= resend_after)
                    .map(|(seq, _)| *seq)
                    .collect();
                for seq in expired {
                    if let Some((r, _)) = s.inflight.remove(&seq) {
                        tracing::debug!(seq, "receipt not acknowledged in time; re-sending");
                        hub.ready
                            .entry(s.system_id.clone())
                            .or_default()
                            .push_front(r);
                    }
                }
            }
        }

        for (system_id, queue) in hub.ready.iter_mut() {
            // Sessions that cannot take more this round (window or write queue full).
            let mut skip: Vec<u64> = Vec::new();
            while let Some(front) = queue.front() {
                let Some(target) = pick(&hub.sessions, system_id, front.origin, window, &skip)
                else {
                    break;
                };
                let Some(mut receipt) = queue.pop_front() else {
                    break;
                };
                let Some(session) = hub.sessions.get_mut(&target) else {
                    queue.push_front(receipt);
                    break;
                };
                let seq = session.next_seq();
                let frame = receipt.command(seq, self.cfg.receipts_as_data_sm);
                match session.tx.try_send(Out::Frame(frame)) {
                    Ok(()) => {
                        bump(&self.counters.receipts_sent);
                        if receipt.attempts > 0 {
                            bump(&self.counters.receipts_resent);
                        }
                        receipt.attempts = receipt.attempts.saturating_add(1);
                        session.inflight.insert(seq, (receipt, now));
                    }
                    Err(_) => {
                        queue.push_front(receipt);
                        skip.push(target);
                    }
                }
            }
        }
        hub.ready.retain(|_, q| !q.is_empty());

        [hub.delayed.front(), hub.retry.front()]
            .into_iter()
            .flatten()
            .map(|t| t.due)
            .min()
    }
}

/// Where a receipt for `system_id` goes: the submitting session if it is a
/// transceiver with room, else the receiver/transceiver with the fewest
/// receipts in flight.
fn pick(
    sessions: &HashMap<u64, BoundSession>,
    system_id: &str,
    origin: u64,
    window: usize,
    skip: &[u64],
) -> Option<u64> {
    let usable = |id: &u64, s: &BoundSession| {
        s.system_id == system_id
            && s.mode.can_receive()
            && s.inflight.len() < window
            && !skip.contains(id)
    };
    if let Some(s) = sessions.get(&origin) {
        if s.mode == BindMode::Transceiver && usable(&origin, s) {
            return Some(origin);
        }
    }
    sessions
        .iter()
        .filter(|(id, s)| usable(id, s))
        .min_by_key(|(_, s)| s.inflight.len())
        .map(|(id, _)| *id)
}

/// Moves receipts from the timers to the sessions.
async fn dispatcher(inner: Arc<Inner>, shutdown: CancellationToken) {
    let scan_every =
        (inner.cfg.resend_after / 4).clamp(Duration::from_millis(5), Duration::from_millis(250));
    let mut next_scan = Instant::now() + scan_every;
    loop {
        let now = Instant::now();
        let scan = now >= next_scan;
        if scan {
            next_scan = now + scan_every;
        }
        let wake = inner
            .dispatch(now, scan)
            .map_or(next_scan, |due| due.min(next_scan));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_SESSIONS));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(err) => {
                // E.g. out of file descriptors: don't spin.
                tracing::warn!(%err, "SMSC simulator: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "SMSC simulator: too many sessions; closing the connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(run_session(inner.clone(), stream, shutdown.clone(), permit));
    }
    tracing::info!("SMSC simulator stopped accepting");
}

/// What the writer task is told.
#[derive(Debug)]
enum Out {
    Frame(Vec<u8>),
    /// Flush what came before, then close the connection.
    Close,
}

async fn writer(mut w: OwnedWriteHalf, mut rx: mpsc::Receiver<Out>) {
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        let mut close = match rx.recv().await {
            Some(Out::Frame(f)) => {
                buf.extend_from_slice(&f);
                false
            }
            Some(Out::Close) | None => true,
        };
        while !close && buf.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(Out::Frame(f)) => buf.extend_from_slice(&f),
                Ok(Out::Close) => close = true,
                Err(_) => break,
            }
        }
        if !buf.is_empty() {
            if w.write_all(&buf).await.is_err() {
                return;
            }
            buf.clear();
        }
        if close {
            let _ = w.shutdown().await;
            return;
        }
    }
}

async fn run_session(
    inner: Arc<Inner>,
    stream: TcpStream,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let id = inner.next_session.fetch_add(1, Ordering::Relaxed) + 1;
    let peer = stream.peer_addr().ok();
    tracing::debug!(session = id, ?peer, "SMSC simulator: connection");
    bump(&inner.counters.sessions);
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    let mut writer_task = tokio::spawn(writer(wr, rx));
    let mut session = Session {
        inner: inner.clone(),
        id,
        tx: tx.clone(),
        bound: None,
        responders: Arc::new(Semaphore::new(MAX_DELAYED_RESPONSES)),
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = session.read_loop(rd) => {}
    }
    drop(session);
    inner.unregister(id);
    let _ = tx.try_send(Out::Close);
    drop(tx);
    if tokio::time::timeout(FLUSH_TIMEOUT, &mut writer_task)
        .await
        .is_err()
    {
        writer_task.abort();
    }
    inner.counters.sessions.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(session = id, "SMSC simulator: connection closed");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

struct Session {
    inner: Arc<Inner>,
    id: u64,
    tx: mpsc::Sender<Out>,
    bound: Option<(BindMode, String)>,
    responders: Arc<Semaphore>,
}

impl Session {
    async fn read_loop(&mut self, mut rd: OwnedReadHalf) {
        let limits = FrameLimits {
            max_len: self.inner.cfg.max_frame,
        };
        // Holds less than max_frame + READ_CHUNK bytes: split_frame takes
        // every whole frame and refuses a longer declared length at once.
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            loop {
                match frame::split_frame(&mut buf, &limits) {
                    Ok(Some(f)) => {
                        if self.on_frame(&f).await == Flow::Close {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(err) => {
                        tracing::debug!(session = self.id, %err, "closing: unframeable input");
                        bump(&self.inner.counters.generic_nacks);
                        let _ = self.send(err.generic_nack()).await;
                        return;
                    }
                }
            }
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    async fn send(&self, bytes: Vec<u8>) -> Flow {
        match self.tx.send(Out::Frame(bytes)).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }

    async fn nack(&self, seq: u32, status: u32) -> Flow {
        bump(&self.inner.counters.generic_nacks);
        self.send(frame::generic_nack(seq, status)).await
    }

    async fn on_frame(&mut self, f: &[u8]) -> Flow {
        let cmd = match frame::decode(f) {
            Ok(cmd) => cmd,
            Err(u) => {
                let h = u.header;
                if h.command_id == u32::from(CommandId::DeliverSmResp)
                    || h.command_id == u32::from(CommandId::DataSmResp)
                {
                    // Only the header matters for an ack; be lenient.
                    self.inner.ack(self.id, h.sequence_number, h.command_status);
                    return Flow::Continue;
                }
                if h.command_id == GENERIC_NACK {
                    // Never answer a nack with a nack (no ping-pong).
                    tracing::debug!(session = self.id, %u, "undecodable generic_nack ignored");
                    return Flow::Continue;
                }
                tracing::debug!(session = self.id, %u, "undecodable PDU");
                return self.nack(h.sequence_number, u.status).await;
            }
        };
        let seq = cmd.sequence_number();
        let id = cmd.id();
        match cmd.pdu() {
            Some(Pdu::BindTransmitter(b)) => {
                let creds = (b.system_id.as_str(), b.password.as_str());
                let version = u8::from(b.interface_version);
                self.on_bind(BindMode::Transmitter, creds, version, seq)
                    .await
            }
            Some(Pdu::BindReceiver(b)) => {
                let creds = (b.system_id.as_str(), b.password.as_str());
                let version = u8::from(b.interface_version);
                self.on_bind(BindMode::Receiver, creds, version, seq).await
            }
            Some(Pdu::BindTransceiver(b)) => {
                let creds = (b.system_id.as_str(), b.password.as_str());
                let version = u8::from(b.interface_version);
                self.on_bind(BindMode::Transceiver, creds, version, seq)
                    .await
            }
            Some(Pdu::EnquireLink) => {
                self.send(frame::encode(&Command::new(
                    CommandStatus::EsmeRok,
                    seq,
                    Pdu::EnquireLinkResp,
                )))
                .await
            }
            Some(Pdu::Unbind) => {
                let _ = self
                    .send(frame::encode(&Command::new(
                        CommandStatus::EsmeRok,
                        seq,
                        Pdu::UnbindResp,
                    )))
                    .await;
                Flow::Close
            }
            Some(Pdu::SubmitSm(sm)) => match &self.bound {
                Some((mode, system_id)) if mode.can_submit() => {
                    let system_id = system_id.clone();
                    self.on_submit(seq, sm, system_id).await
                }
                _ => {
                    self.send(frame::header_only(SUBMIT_SM_RESP, ESME_RINVBNDSTS, seq))
                        .await
                }
            },
            _ if id == CommandId::DeliverSmResp || id == CommandId::DataSmResp => {
                self.inner.ack(self.id, seq, u32::from(cmd.status()));
                Flow::Continue
            }
            _ if id == CommandId::GenericNack => {
                // The peer refused one of our PDUs; if it was a receipt, retry it later.
                let status = u32::from(cmd.status());
                self.inner.ack(
                    self.id,
                    seq,
                    if status == ESME_ROK {
                        ESME_RINVCMDID
                    } else {
                        status
                    },
                );
                Flow::Continue
            }
            _ if matches!(id, CommandId::Other(_)) => self.nack(seq, ESME_RINVCMDID).await,
            // Other answers (enquire_link_resp, unbind_resp, ...): nothing to do.
            _ if id.is_response() => Flow::Continue,
            // Requests we do not implement (query_sm, data_sm, ...), or that
            // an ESME must not send (outbind, alert_notification).
            _ => {
                let status = if self.bound.is_some() {
                    ESME_RINVCMDID
                } else {
                    ESME_RINVBNDSTS
                };
                match id.matching_response() {
                    CommandId::Other(_) => self.nack(seq, status).await,
                    resp => {
                        self.send(frame::header_only(u32::from(resp), status, seq))
                            .await
                    }
                }
            }
        }
    }

    async fn on_bind(
        &mut self,
        mode: BindMode,
        (system_id, password): (&str, &str),
        interface_version: u8,
        seq: u32,
    ) -> Flow {
        let resp_id = match mode {
            BindMode::Transmitter => CommandId::BindTransmitterResp,
            BindMode::Receiver => CommandId::BindReceiverResp,
            BindMode::Transceiver => CommandId::BindTransceiverResp,
        };
        if self.bound.is_some() {
            return self
                .send(frame::header_only(u32::from(resp_id), ESME_RALYBND, seq))
                .await;
        }
        let cfg = &self.inner.cfg;
        let refusal = if system_id != cfg.system_id {
            Some(ESME_RBINDFAIL)
        } else if password != cfg.password {
            Some(ESME_RINVPASWD)
        } else {
            None
        };
        if let Some(status) = refusal {
            tracing::info!(
                session = self.id,
                system_id,
                status,
                "SMSC simulator: bind refused"
            );
            bump(&self.inner.counters.bind_failures);
            let _ = self
                .send(frame::header_only(u32::from(resp_id), status, seq))
                .await;
            return Flow::Close;
        }
        // Any interface_version is accepted (0x33, 0x34, 0x50, ...); the
        // sc_interface_version TLV only exists from 3.4 on.
        let version = (interface_version >= 0x34).then_some(InterfaceVersion::Smpp3_4);
        let sim_id = COctetString::from_str(SIM_SYSTEM_ID).unwrap_or_default();
        let pdu: Pdu = match mode {
            BindMode::Transmitter => BindTransmitterResp::builder()
                .system_id(sim_id)
                .sc_interface_version(version)
                .build()
                .into(),
            BindMode::Receiver => BindReceiverResp::builder()
                .system_id(sim_id)
                .sc_interface_version(version)
                .build()
                .into(),
            BindMode::Transceiver => BindTransceiverResp::builder()
                .system_id(sim_id)
                .sc_interface_version(version)
                .build()
                .into(),
        };
        // Answer before the session can be handed receipts, so the bind
        // response is the first thing the ESME reads.
        let flow = self
            .send(frame::encode(&Command::new(
                CommandStatus::EsmeRok,
                seq,
                pdu,
            )))
            .await;
        if flow == Flow::Continue {
            bump(&self.inner.counters.binds);
            tracing::debug!(session = self.id, ?mode, system_id, "SMSC simulator: bound");
            self.bound = Some((mode, system_id.to_owned()));
            self.inner
                .register(self.id, system_id.to_owned(), mode, self.tx.clone());
        }
        flow
    }

    async fn on_submit(&self, seq: u32, sm: &SubmitSm, system_id: String) -> Flow {
        let cfg = &self.inner.cfg;
        let n = self.inner.submits_seen.fetch_add(1, Ordering::Relaxed) + 1;
        let resp = if cfg.throttle_every > 0 && n.is_multiple_of(cfg.throttle_every) {
            bump(&self.inner.counters.throttled);
            frame::header_only(SUBMIT_SM_RESP, ESME_RTHROTTLED, seq)
        } else {
            let number = self.inner.next_message.fetch_add(1, Ordering::Relaxed) + 1;
            bump(&self.inner.counters.submits);
            let message_id = format!("{number:010X}");
            let undeliverable =
                cfg.undeliverable_every > 0 && number.is_multiple_of(cfg.undeliverable_every);
            // registered_delivery bits 0-1: 1 = receipt on any outcome,
            // 2 = on failure only (3 is reserved: treated as 1).
            let wanted = match u8::from(sm.registered_delivery) & 0x03 {
                1 | 3 => true,
                2 => undeliverable,
                _ => false,
            };
            if wanted {
                self.inner.schedule(receipt_for(
                    sm,
                    &message_id,
                    number,
                    undeliverable,
                    system_id,
                    self.id,
                    cfg.receipt_delay,
                ));
            }
            let resp = SubmitSmResp::builder()
                .message_id(COctetString::from_str(&message_id).unwrap_or_default())
                .build();
            frame::encode(&Command::new(CommandStatus::EsmeRok, seq, resp))
        };
        let delay = cfg.response_delay;
        if delay.is_zero() {
            return self.send(resp).await;
        }
        // Bounded: with every slot taken, reading pauses until one frees.
        let Ok(permit) = self.responders.clone().acquire_owned().await else {
            return Flow::Close;
        };
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Out::Frame(resp)).await;
            drop(permit);
        });
        Flow::Continue
    }
}

fn receipt_for(
    sm: &SubmitSm,
    message_id: &str,
    number: u64,
    undeliverable: bool,
    system_id: String,
    origin: u64,
    receipt_delay: Duration,
) -> Receipt {
    let now = SystemTime::now();
    let (stat, dlvrd, err, state) = if undeliverable {
        ("UNDELIV", "000", "001", MessageState::Undeliverable)
    } else {
        ("DELIVRD", "001", "000", MessageState::Delivered)
    };
    let text = format!(
        "id:{message_id} sub:001 dlvrd:{dlvrd} submit date:{} done date:{} stat:{stat} err:{err} text:{}",
        yymmddhhmm(now),
        yymmddhhmm(now + receipt_delay),
        excerpt(sm),
    );
    Receipt {
        system_id,
        origin,
        source_ton: sm.dest_addr_ton,
        source_npi: sm.dest_addr_npi,
        source_addr: sm.destination_addr.clone(),
        dest_ton: sm.source_addr_ton,
        dest_npi: sm.source_addr_npi,
        dest_addr: sm.source_addr.clone(),
        text: OctetString::from_slice(text.as_bytes()).unwrap_or_default(),
        // Deliberately not the submit_sm_resp form: lowercase, no leading zeros.
        receipted_id: COctetString::from_str(&format!("{number:x}")).unwrap_or_default(),
        state,
        attempts: 0,
        mo: None,
    }
}

/// The first characters of the message, as printable ASCII (anything else
/// becomes `?`), for the receipt's `text:`.
fn excerpt(sm: &SubmitSm) -> String {
    let mut bytes: &[u8] = sm.short_message().as_ref();
    if bytes.is_empty() {
        for tlv in sm.tlvs() {
            if let Some(TlvValue::MessagePayload(p)) = tlv.value() {
                bytes = p.value.as_ref();
                break;
            }
        }
    }
    // Skip a user data header (esm_class UDHI bit).
    if u8::from(sm.esm_class) & 0x40 != 0 {
        if let Some(&udhl) = bytes.first() {
            bytes = bytes.get(1 + usize::from(udhl)..).unwrap_or_default();
        }
    }
    let printable = |c: char| {
        if c.is_ascii_graphic() || c == ' ' {
            c
        } else {
            '?'
        }
    };
    if u8::from(sm.data_coding) == 0x08 {
        let units = bytes
            .chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]));
        char::decode_utf16(units)
            .map(|c| c.unwrap_or('?'))
            .take(RECEIPT_TEXT_CHARS)
            .map(printable)
            .collect()
    } else {
        bytes
            .iter()
            .take(RECEIPT_TEXT_CHARS)
            .map(|&b| printable(char::from(b)))
            .collect()
    }
}

/// `YYMMDDhhmm` in UTC.
fn yymmddhhmm(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{:02}{m:02}{d:02}{:02}{:02}",
        y.rem_euclid(100),
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smpp::frame::HEADER_LEN;
    use crate::smpp::frame::{split_frame, ESME_RINVCMDLEN};
    use crate::smpp::receipt::{self, normalize_id, Stat};
    use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSmResp};
    use rusmpp::values::RegisteredDelivery;
    use std::net::{Ipv4Addr, SocketAddr};
    use tokio::time::timeout;

    const WAIT: Duration = Duration::from_secs(2);

    fn cstr<const MIN: usize, const MAX: usize>(s: &str) -> COctetString<MIN, MAX> {
        COctetString::from_str(s).unwrap()
    }

    async fn sim(cfg: SimConfig) -> (SmscSim, CancellationToken) {
        let token = CancellationToken::new();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let sim = SmscSim::start(addr, cfg, token.clone()).await.unwrap();
        (sim, token)
    }

    fn quick() -> SimConfig {
        SimConfig {
            receipt_delay: Duration::from_millis(10),
            ..SimConfig::default()
        }
    }

    async fn wait_stats(sim: &SmscSim, what: &str, ok: impl Fn(&SimStats) -> bool) -> SimStats {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = sim.stats();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[derive(Clone, Copy)]
    enum Kind {
        Tx,
        Rx,
        Trx,
    }

    /// A raw ESME on frame.rs.
    struct Client {
        stream: TcpStream,
        buf: Vec<u8>,
        seq: u32,
    }

    impl Client {
        async fn connect(sim: &SmscSim) -> Client {
            Client {
                stream: TcpStream::connect(sim.local_addr()).await.unwrap(),
                buf: Vec::new(),
                seq: 0,
            }
        }

        async fn send_raw(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).await.unwrap();
        }

        async fn send(&mut self, pdu: impl Into<Pdu>) -> u32 {
            self.seq += 1;
            let seq = self.seq;
            let bytes = frame::encode(&Command::new(CommandStatus::EsmeRok, seq, pdu));
            self.send_raw(&bytes).await;
            seq
        }

        /// The next PDU, or None on EOF or after `wait`.
        async fn recv_within(&mut self, wait: Duration) -> Option<Command> {
            let limits = FrameLimits::default();
            let deadline = Instant::now() + wait;
            loop {
                if let Some(f) = split_frame(&mut self.buf, &limits).unwrap() {
                    return Some(frame::decode(&f).unwrap());
                }
                let mut chunk = [0u8; 4096];
                let n = match timeout(
                    deadline.saturating_duration_since(Instant::now()),
                    self.stream.read(&mut chunk),
                )
                .await
                {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => return None,
                };
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }

        async fn recv(&mut self) -> Command {
            self.recv_within(WAIT)
                .await
                .expect("a PDU from the simulator")
        }

        /// The next PDU that is not a deliver_sm (receipts may come at any time).
        async fn recv_not_deliver(&mut self) -> Command {
            loop {
                let cmd = self.recv().await;
                if cmd.id() != CommandId::DeliverSm {
                    return cmd;
                }
            }
        }

        async fn expect_closed(&mut self) {
            let mut chunk = [0u8; 256];
            loop {
                match timeout(WAIT, self.stream.read(&mut chunk)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Ok(Ok(_)) => continue,
                    Err(_) => panic!("connection not closed"),
                }
            }
        }

        async fn bind_as(&mut self, kind: Kind, system_id: &str, password: &str) -> Command {
            let (sid, pw, st) = (cstr(system_id), cstr(password), cstr("SMS"));
            let v = InterfaceVersion::Smpp3_4;
            match kind {
                Kind::Tx => {
                    let b = BindTransmitter::builder().system_id(sid).password(pw);
                    self.send(b.system_type(st).interface_version(v).build())
                        .await
                }
                Kind::Rx => {
                    let b = BindReceiver::builder().system_id(sid).password(pw);
                    self.send(b.system_type(st).interface_version(v).build())
                        .await
                }
                Kind::Trx => {
                    let b = BindTransceiver::builder().system_id(sid).password(pw);
                    self.send(b.system_type(st).interface_version(v).build())
                        .await
                }
            };
            self.recv().await
        }

        async fn bind(sim: &SmscSim, kind: Kind) -> Client {
            let mut c = Client::connect(sim).await;
            let resp = c.bind_as(kind, "goniec", "secret").await;
            assert_eq!(resp.status(), CommandStatus::EsmeRok);
            c
        }

        async fn submit(&mut self, text: &str, receipt: bool) -> u32 {
            let pdu = SubmitSm::builder()
                .source_addr_ton(Ton::Alphanumeric)
                .source_addr(cstr("Goniec"))
                .dest_addr_ton(Ton::International)
                .dest_addr_npi(Npi::Isdn)
                .destination_addr(cstr("48600100200"))
                .registered_delivery(RegisteredDelivery::from(u8::from(receipt)))
                .short_message(OctetString::from_str(text).unwrap())
                .build();
            self.send(pdu).await
        }

        async fn submit_ok(&mut self, text: &str, receipt: bool) -> String {
            let seq = self.submit(text, receipt).await;
            let resp = self.recv_not_deliver().await;
            assert_eq!(resp.sequence_number(), seq);
            assert_eq!(resp.status(), CommandStatus::EsmeRok);
            let Some(Pdu::SubmitSmResp(r)) = resp.pdu() else {
                panic!("not a submit_sm_resp: {resp:?}");
            };
            r.message_id().as_str().to_owned()
        }

        async fn recv_receipt(&mut self) -> (u32, DeliverSm) {
            let cmd = self.recv().await;
            let Some(Pdu::DeliverSm(d)) = cmd.pdu() else {
                panic!("not a deliver_sm: {cmd:?}");
            };
            (cmd.sequence_number(), d.clone())
        }

        async fn ack(&mut self, seq: u32) {
            let bytes = frame::encode(&Command::new(
                CommandStatus::EsmeRok,
                seq,
                DeliverSmResp::default(),
            ));
            self.send_raw(&bytes).await;
        }

        async fn enquire_link_ok(&mut self) {
            let seq = self.send(Pdu::EnquireLink).await;
            let resp = self.recv_not_deliver().await;
            assert_eq!(resp.id(), CommandId::EnquireLinkResp);
            assert_eq!(resp.sequence_number(), seq);
        }
    }

    fn receipted_id(d: &DeliverSm) -> Option<String> {
        d.tlvs().iter().find_map(|t| match t.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => Some(id.as_str().to_owned()),
            _ => None,
        })
    }

    fn message_state(d: &DeliverSm) -> Option<MessageState> {
        d.tlvs().iter().find_map(|t| match t.value() {
            Some(TlvValue::MessageState(s)) => Some(*s),
            _ => None,
        })
    }

    #[tokio::test]
    async fn binds_all_three_ways() {
        let (sim, token) = sim(quick()).await;
        for (kind, want) in [
            (Kind::Tx, CommandId::BindTransmitterResp),
            (Kind::Rx, CommandId::BindReceiverResp),
            (Kind::Trx, CommandId::BindTransceiverResp),
        ] {
            let mut c = Client::connect(&sim).await;
            let resp = c.bind_as(kind, "goniec", "secret").await;
            assert_eq!(resp.id(), want);
            assert_eq!(resp.status(), CommandStatus::EsmeRok);
            let system_id = match resp.pdu() {
                Some(Pdu::BindTransmitterResp(r)) => r.system_id.as_str().to_owned(),
                Some(Pdu::BindReceiverResp(r)) => r.system_id.as_str().to_owned(),
                Some(Pdu::BindTransceiverResp(r)) => r.system_id.as_str().to_owned(),
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(system_id, SIM_SYSTEM_ID);
            // Binding twice is refused, the session stays.
            let again = c.bind_as(kind, "goniec", "secret").await;
            assert_eq!(again.status(), CommandStatus::EsmeRalybnd);
            c.enquire_link_ok().await;
        }
        assert_eq!(sim.stats().binds, 3);
        token.cancel();
    }

    #[tokio::test]
    async fn bad_credentials_are_refused_and_closed() {
        let (sim, token) = sim(quick()).await;
        let mut c = Client::connect(&sim).await;
        let resp = c.bind_as(Kind::Trx, "goniec", "wrong").await;
        assert_eq!(resp.id(), CommandId::BindTransceiverResp);
        assert_eq!(resp.status(), CommandStatus::EsmeRinvpaswd);
        c.expect_closed().await;

        let mut c = Client::connect(&sim).await;
        let resp = c.bind_as(Kind::Tx, "nobody", "secret").await;
        assert_eq!(resp.status(), CommandStatus::EsmeRbindfail);
        c.expect_closed().await;
        let s = sim.stats();
        assert_eq!((s.binds, s.bind_failures), (0, 2));
        token.cancel();
    }

    #[tokio::test]
    async fn submit_before_bind_is_refused() {
        let (sim, token) = sim(quick()).await;
        let mut c = Client::connect(&sim).await;
        // enquire_link is fine unbound.
        c.enquire_link_ok().await;
        let seq = c.submit("hi", true).await;
        let resp = c.recv().await;
        assert_eq!(resp.id(), CommandId::SubmitSmResp);
        assert_eq!(resp.sequence_number(), seq);
        assert_eq!(resp.status(), CommandStatus::EsmeRinvbndsts);
        // A receiver may not submit either.
        let mut rx = Client::bind(&sim, Kind::Rx).await;
        rx.submit("hi", true).await;
        assert_eq!(rx.recv().await.status(), CommandStatus::EsmeRinvbndsts);
        assert_eq!(sim.stats().submits, 0);
        token.cancel();
    }

    #[tokio::test]
    async fn submit_then_receipt_round_trip() {
        let (sim, token) = sim(quick()).await;
        let mut c = Client::bind(&sim, Kind::Trx).await;
        let id = c.submit_ok("Hello from the Goniec simulator", true).await;
        assert_eq!(id.len(), 10, "{id}");
        assert!(
            id.chars()
                .all(|ch| ch.is_ascii_digit() || ch.is_ascii_uppercase()),
            "{id}"
        );
        assert!(id.starts_with('0'), "zero-padded: {id}");

        let (seq, d) = c.recv_receipt().await;
        assert_eq!(u8::from(d.esm_class), 0x04);
        assert_eq!(d.source_addr.as_str(), "48600100200");
        assert_eq!(d.destination_addr.as_str(), "Goniec");
        let parsed = receipt::parse(d.short_message().as_ref()).expect("receipt text");
        assert_eq!(parsed.stat, Some(Stat::Delivered));
        assert_eq!(parsed.id.as_deref(), Some(id.as_str()));
        assert_eq!(
            normalize_id(parsed.id.as_deref().unwrap()),
            normalize_id(&id)
        );
        assert_eq!((parsed.sub, parsed.dlvrd), (Some(1), Some(1)));
        assert!(parsed.submit_date.is_some() && parsed.done_date.is_some());
        assert_eq!(parsed.text.as_deref(), Some("Hello from the Gonie"));
        let tlv = receipted_id(&d).expect("receipted_message_id TLV");
        assert_ne!(tlv, id, "the TLV form differs on purpose");
        assert_eq!(tlv, normalize_id(&id));
        assert_eq!(message_state(&d), Some(MessageState::Delivered));

        c.ack(seq).await;
        let s = wait_stats(&sim, "ack", |s| s.receipts_acked == 1).await;
        assert_eq!((s.submits, s.receipts_sent, s.receipts_pending), (1, 1, 0));

        // No receipt unless asked for.
        c.submit_ok("quiet", false).await;
        assert!(c.recv_within(Duration::from_millis(100)).await.is_none());
        token.cancel();
    }

    #[tokio::test]
    async fn ids_are_unique_and_undeliverable_share() {
        let cfg = SimConfig {
            undeliverable_every: 2,
            ..quick()
        };
        let (sim, token) = sim(cfg).await;
        let mut c = Client::bind(&sim, Kind::Trx).await;
        let a = c.submit_ok("one", true).await;
        let b = c.submit_ok("two", true).await;
        assert_ne!(a, b);
        let mut states = HashMap::new();
        for _ in 0..2 {
            let (seq, d) = c.recv_receipt().await;
            let parsed = receipt::parse(d.short_message().as_ref()).unwrap();
            states.insert(
                normalize_id(&parsed.id.unwrap()),
                (parsed.stat, message_state(&d)),
            );
            c.ack(seq).await;
        }
        assert_eq!(
            states[&normalize_id(&a)],
            (Some(Stat::Delivered), Some(MessageState::Delivered))
        );
        assert_eq!(
            states[&normalize_id(&b)],
            (Some(Stat::Undeliverable), Some(MessageState::Undeliverable))
        );
        token.cancel();
    }

    #[tokio::test]
    async fn every_second_submit_is_throttled() {
        let cfg = SimConfig {
            throttle_every: 2,
            ..quick()
        };
        let (sim, token) = sim(cfg).await;
        let mut c = Client::bind(&sim, Kind::Tx).await;
        c.submit_ok("first", false).await;
        let seq = c.submit("second", false).await;
        let resp = c.recv().await;
        assert_eq!(resp.sequence_number(), seq);
        assert_eq!(resp.id(), CommandId::SubmitSmResp);
        assert_eq!(u32::from(resp.status()), ESME_RTHROTTLED);
        c.submit_ok("third", false).await;
        let s = sim.stats();
        assert_eq!((s.submits, s.throttled), (2, 1));
        token.cancel();
    }

    #[tokio::test]
    async fn receipts_wait_for_a_receiver() {
        let (sim, token) = sim(quick()).await;
        let mut tx = Client::bind(&sim, Kind::Tx).await;
        let id = tx.submit_ok("queued", true).await;
        // Nothing on the transmitter.
        assert!(tx.recv_within(Duration::from_millis(100)).await.is_none());
        assert_eq!(sim.stats().receipts_pending, 1);
        let mut rx = Client::bind(&sim, Kind::Rx).await;
        let (seq, d) = rx.recv_receipt().await;
        assert_eq!(receipted_id(&d), Some(normalize_id(&id)));
        rx.ack(seq).await;
        wait_stats(&sim, "ack", |s| {
            s.receipts_acked == 1 && s.receipts_pending == 0
        })
        .await;
        token.cancel();
    }

    #[tokio::test]
    async fn unacknowledged_receipt_is_resent_after_reconnect() {
        let (sim, token) = sim(quick()).await;
        let mut c = Client::bind(&sim, Kind::Trx).await;
        let id = c.submit_ok("resend me", true).await;
        let (_, first) = c.recv_receipt().await;
        assert_eq!(receipted_id(&first), Some(normalize_id(&id)));
        drop(c); // no deliver_sm_resp
        let mut again = Client::bind(&sim, Kind::Trx).await;
        let (seq, d) = again.recv_receipt().await;
        assert_eq!(receipted_id(&d), Some(normalize_id(&id)));
        again.ack(seq).await;
        let s = wait_stats(&sim, "ack", |s| s.receipts_acked == 1).await;
        assert_eq!(
            (s.receipts_sent, s.receipts_resent, s.receipts_pending),
            (2, 1, 0)
        );
        token.cancel();
    }

    #[tokio::test]
    async fn unacknowledged_receipt_is_resent_after_timeout() {
        let cfg = SimConfig {
            resend_after: Duration::from_millis(150),
            ..quick()
        };
        let (sim, token) = sim(cfg).await;
        let mut c = Client::bind(&sim, Kind::Trx).await;
        let id = c.submit_ok("slow ack", true).await;
        let (seq1, _) = c.recv_receipt().await;
        let (seq2, d) = c.recv_receipt().await;
        assert_ne!(seq1, seq2);
        assert_eq!(receipted_id(&d), Some(normalize_id(&id)));
        c.ack(seq2).await;
        // A late ack for the first copy is ignored.
        c.ack(seq1).await;
        let s = wait_stats(&sim, "ack", |s| s.receipts_acked == 1).await;
        assert_eq!(s.receipts_pending, 0);
        token.cancel();
    }

    #[tokio::test]
    async fn window_limits_receipts_in_flight() {
        let cfg = SimConfig {
            window: 2,
            ..quick()
        };
        let (sim, token) = sim(cfg).await;
        let mut c = Client::bind(&sim, Kind::Trx).await;
        for i in 0..4 {
            c.submit_ok(&format!("m{i}"), true).await;
        }
        let (s1, _) = c.recv_receipt().await;
        let (_, _) = c.recv_receipt().await;
        assert!(c.recv_within(Duration::from_millis(100)).await.is_none());
        c.ack(s1).await;
        c.recv_receipt().await;
        token.cancel();
    }

    #[tokio::test]
    async fn response_delay_does_not_block_the_session() {
        let cfg = SimConfig {
            response_delay: Duration::from_millis(300),
            ..quick()
        };
        let (sim, token) = sim(cfg).await;
        let mut c = Client::bind(&sim, Kind::Tx).await;
        let started = Instant::now();
        let submit_seq = c.submit("slow", false).await;
        c.enquire_link_ok().await;
        assert!(started.elapsed() < Duration::from_millis(250));
        let resp = c.recv().await;
        assert_eq!(resp.sequence_number(), submit_seq);
        assert!(started.elapsed() >= Duration::from_millis(300));
        token.cancel();
    }

    #[tokio::test]
    async fn garbage_gets_nacked_and_the_session_goes_on() {
        let (sim, token) = sim(quick()).await;
        let mut c = Client::bind(&sim, Kind::Trx).await;
        // A submit_sm whose body is 4 random bytes.
        let bad: Vec<u8> = [0x14u32, 0x04, 0, 7]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .chain([0xde, 0xad, 0xbe, 0xef])
            .collect();
        let want = frame::decode(&bad).unwrap_err().status;
        c.send_raw(&bad).await;
        let nack = c.recv().await;
        assert_eq!(nack.id(), CommandId::GenericNack);
        assert_eq!(nack.sequence_number(), 7);
        assert_eq!(u32::from(nack.status()), want);
        c.enquire_link_ok().await;

        // Unknown command_id.
        c.send_raw(&frame::header_only(0x0000_0777, 0, 8)).await;
        let nack = c.recv().await;
        assert_eq!(nack.id(), CommandId::GenericNack);
        assert_eq!(u32::from(nack.status()), ESME_RINVCMDID);
        c.enquire_link_ok().await;

        // A known request we do not implement gets its resp with an error.
        c.send_raw(&frame::header_only(0x0000_0003, 0, 9)).await; // query_sm, no body
        let resp = c.recv().await;
        assert_eq!(resp.sequence_number(), 9);
        c.enquire_link_ok().await;

        // A bad command_length cannot be resynchronised: nack, then close.
        c.send_raw(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 10])
            .await;
        let nack = c.recv().await;
        assert_eq!(nack.id(), CommandId::GenericNack);
        assert_eq!(u32::from(nack.status()), ESME_RINVCMDLEN);
        assert_eq!(nack.sequence_number(), 10);
        c.expect_closed().await;
        assert!(sim.stats().generic_nacks >= 3);
        token.cancel();
    }

    #[tokio::test]
    async fn unbind_closes() {
        let (sim, token) = sim(quick()).await;
        let mut c = Client::bind(&sim, Kind::Trx).await;
        let seq = c.send(Pdu::Unbind).await;
        let resp = c.recv().await;
        assert_eq!(
            (resp.id(), resp.sequence_number()),
            (CommandId::UnbindResp, seq)
        );
        c.expect_closed().await;
        wait_stats(&sim, "session gone", |s| s.sessions == 0).await;
        token.cancel();
    }

    #[tokio::test]
    async fn shutdown_closes_sessions_and_listener() {
        let (sim, token) = sim(quick()).await;
        let mut c = Client::bind(&sim, Kind::Trx).await;
        token.cancel();
        c.expect_closed().await;
        wait_stats(&sim, "sessions closed", |s| s.sessions == 0).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(TcpStream::connect(sim.local_addr()).await.is_err());
    }

    /// Both receipt PDUs decode and read the same: id, state and text.
    #[test]
    fn receipts_as_deliver_sm_and_data_sm_read_alike() {
        use crate::smpp::connector::read_receipt;
        use crate::smpp::session::InboundPdu;
        use crate::ReceiptState;
        let sm = SubmitSm::builder()
            .source_addr(cstr("Goniec"))
            .destination_addr(cstr("48600100200"))
            .short_message(OctetString::from_slice(b"Hello").unwrap())
            .build();
        for undeliverable in [false, true] {
            let r = receipt_for(
                &sm,
                "00000001A3",
                0x1a3,
                undeliverable,
                "goniec".into(),
                1,
                Duration::ZERO,
            );
            let want = if undeliverable {
                ReceiptState::Undeliverable
            } else {
                ReceiptState::Delivered
            };
            for as_data_sm in [false, true] {
                let bytes = r.command(9, as_data_sm);
                let cmd = frame::decode(&bytes).unwrap_or_else(|u| panic!("{}", u.reason));
                assert_eq!(cmd.sequence_number(), 9);
                let pdu = match cmd.pdu() {
                    Some(Pdu::DeliverSm(d)) if !as_data_sm => InboundPdu::Deliver(d.clone()),
                    Some(Pdu::DataSm(d)) if as_data_sm => {
                        assert_eq!(d.source_addr.as_str(), "48600100200");
                        InboundPdu::Data(d.clone())
                    }
                    other => panic!("data_sm={as_data_sm}: {other:?}"),
                };
                let (id, state, error) = read_receipt(&pdu).expect("a receipt");
                assert_eq!((id.as_str(), state), ("1a3", want), "data_sm={as_data_sm}");
                assert_eq!(error.is_some(), undeliverable, "{error:?}");
            }
        }
    }

    /// A reply from the simulator reads back as sender, destination and text.
    #[tokio::test]
    async fn mobile_originated_replies_reach_a_receiver() {
        use crate::smpp::connector::read_mo;
        use crate::smpp::session::InboundPdu;
        let (sim, token) = sim(quick()).await;
        let mut c = Client::bind(&sim, Kind::Rx).await;
        sim.send_mo("goniec", "+48601000099", "+48500100200", "Nie, dziękuję")
            .unwrap();
        let (seq, d) = c.recv_receipt().await;
        assert_eq!(u8::from(d.esm_class), 0, "not a receipt");
        let (from, to, text) = read_mo(&InboundPdu::Deliver(d)).expect("an MO message");
        assert_eq!(
            (from.as_str(), to.as_str(), text.as_str()),
            ("+48601000099", "48500100200", "Nie, dziękuję")
        );
        c.ack(seq).await;
        wait_stats(&sim, "ack", |s| s.receipts_acked == 1).await;
        token.cancel();
    }

    #[test]
    fn dates_render_as_yymmddhhmm() {
        let t = UNIX_EPOCH + Duration::from_secs(1_709_294_400 + 61); // 2024-03-01 12:01:01 UTC
        assert_eq!(yymmddhhmm(t), "2403011201");
        assert_eq!(yymmddhhmm(UNIX_EPOCH), "7001010000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(yymmddhhmm(leap), "0002290000");
    }

    #[test]
    fn excerpt_is_printable_ascii() {
        let ucs2: Vec<u8> = "Zażółć gęślą jaźń, and more"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        let sm = SubmitSm::builder()
            .data_coding(rusmpp::values::DataCoding::Ucs2)
            .short_message(OctetString::from_vec(ucs2).unwrap())
            .build();
        assert_eq!(excerpt(&sm), "Za???? g??l? ja??, a");
        let sm = SubmitSm::builder()
            .esm_class(EsmClass::from(0x40))
            .short_message(
                OctetString::from_slice(b"\x05\x00\x03\x2a\x02\x01Part one\x00").unwrap(),
            )
            .build();
        assert_eq!(excerpt(&sm), "Part one?");
    }
    use crate::test_rng::TestRng as XorShift;

    #[tokio::test]
    async fn random_frames_never_kill_the_session() {
        let (sim, token) = sim(SimConfig {
            receipt_delay: Duration::ZERO,
            ..SimConfig::default()
        })
        .await;
        let c = Client::bind(&sim, Kind::Trx).await;
        let valid = {
            let pdu = SubmitSm::builder()
                .source_addr(cstr("Goniec"))
                .destination_addr(cstr("48600100200"))
                .registered_delivery(RegisteredDelivery::from(1))
                .short_message(OctetString::from_str("Hello there").unwrap())
                .build();
            frame::encode(&Command::new(CommandStatus::EsmeRok, 1, pdu))
        };
        // Everything but binds and unbind, which would end the session by design.
        const IDS: &[u32] = &[
            0x03, 0x04, 0x05, 0x07, 0x08, 0x0B, 0x15, 0x21, 0x102, 0x103, 0x111, 0x80000000,
            0x80000004, 0x80000005, 0x80000015, 0x4242,
        ];
        let mut rng = XorShift::seeded(
            0x9E37_79B9_7F4A_7C15,
            "random_frames_never_kill_the_session",
        );
        let mut stream = Vec::new();
        for round in 0..2000u32 {
            let mut f = if round % 2 == 0 {
                let mut f = valid.clone();
                for _ in 0..1 + rng.next() % 4 {
                    let at = HEADER_LEN + (rng.next() as usize) % (f.len() - HEADER_LEN);
                    f[at] = rng.next() as u8;
                }
                f
            } else {
                let body = (rng.next() % 200) as usize;
                let mut f = vec![0u8; HEADER_LEN + body];
                f[4..8].copy_from_slice(&IDS[(rng.next() as usize) % IDS.len()].to_be_bytes());
                for b in &mut f[HEADER_LEN..] {
                    *b = rng.next() as u8;
                }
                f
            };
            let len = f.len() as u32;
            f[..4].copy_from_slice(&len.to_be_bytes());
            f[12..16].copy_from_slice(&(round + 100).to_be_bytes());
            stream.extend_from_slice(&f);
        }
        // Read while writing so neither side's buffers fill up.
        let (mut rd, mut wr) = c.stream.into_split();
        let writer = tokio::spawn(async move {
            wr.write_all(&stream).await.unwrap();
            let last = frame::encode(&Command::new(
                CommandStatus::EsmeRok,
                0x7000_0000,
                Pdu::EnquireLink,
            ));
            wr.write_all(&last).await.unwrap();
            wr
        });
        let limits = FrameLimits::default();
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 8192];
        let deadline = Instant::now() + Duration::from_secs(3);
        'read: loop {
            let n = timeout(
                deadline.saturating_duration_since(Instant::now()),
                rd.read(&mut chunk),
            )
            .await
            .expect("the final enquire_link_resp in time")
            .unwrap();
            assert!(n > 0, "session closed");
            buf.extend_from_slice(&chunk[..n]);
            while let Some(f) = split_frame(&mut buf, &limits).unwrap() {
                let h = frame::header(&f).unwrap();
                if h.command_id == 0x8000_0015 && h.sequence_number == 0x7000_0000 {
                    break 'read;
                }
            }
        }
        let _wr = writer.await.unwrap();
        assert!(sim.stats().generic_nacks > 0);
        // The server still takes new sessions.
        Client::bind(&sim, Kind::Tx).await.enquire_link_ok().await;
        token.cancel();
    }
}
