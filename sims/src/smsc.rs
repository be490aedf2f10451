//! An SMSC simulator: a real SMPP 3.4 server on TCP, for `goniec demo`,
//! tests and benches.
//!
//! This module owns the server side of the protocol, built on the same
//! framer ([`frame`](goniec_connectors::smpp::frame)) as the gateway and producing receipts in the text
//! shape [`receipt::parse`](goniec_connectors::smpp::receipt::parse) reads:
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
//!   Instead of an id, a `submit_sm` gets a body-less `submit_sm_resp` with:
//!   `ESME_RTHROTTLED` when it goes over [`SimConfig::max_tps`] (a token bucket
//!   shared by all sessions, refilled at `max_tps` per second, holding at most one
//!   second's worth), or when it is the [`SimConfig::throttle_every`]-th
//!   `submit_sm`; [`SimConfig::reject_status`] (e.g. `ESME_RINVDSTADR`) for every
//!   [`SimConfig::reject_every`]-th of those that got past throttling.
//! * **Receipts**: when `registered_delivery` asks for one, a `deliver_sm`
//!   with esm_class 0x04 follows after [`SimConfig::receipt_delay`]:
//!   addresses swapped, the standard text
//!   (`id:00000001A3 sub:001 dlvrd:001 submit date:… done date:… stat:DELIVRD err:000 text:…`)
//!   and the TLVs `receipted_message_id` (deliberately *lowercase without
//!   leading zeros*, `1a3`, so the gateway has to normalise ids; decimal with
//!   [`SimConfig::receipt_ids_decimal`]) and
//!   `message_state`; with [`SimConfig::receipts_as_data_sm`] the receipt is a
//!   `data_sm` instead (same TLVs, the text in `message_payload`), as some
//!   SMSCs send. Final states mix by message number (the id's counter):
//!   every [`SimConfig::undeliverable_every`]-th message is `UNDELIV`, else every
//!   [`SimConfig::expired_every`]-th `EXPIRED`, else every
//!   [`SimConfig::rejected_every`]-th `REJECTD` (with the matching
//!   `message_state`), the rest `DELIVRD`. Receipts go to a
//!   receiver/transceiver bound with the submitter's system_id (the
//!   submitting session first if it is a transceiver); with none bound they
//!   wait until one binds. At most
//!   [`SimConfig::window`] receipts per session await their `deliver_sm_resp`;
//!   one not acknowledged within [`SimConfig::resend_after`], or whose session
//!   drops, is sent again, like a real SMSC does. A `deliver_sm_resp` with an
//!   error status (or a `generic_nack` for the receipt) retries it after
//!   `resend_after`.
//! * **query_sm** (SMPP 3.4 §4.8), from a transmitter or transceiver: the
//!   simulator remembers the last [`MAX_KNOWN`] messages it accepted and answers
//!   with the state it knows: `ENROUTE` until the receipt is due, then the final
//!   state (with its `final_date` and an `error_code`). The id must be written
//!   exactly as `submit_sm_resp` gave it (10 uppercase hex digits, zero-padded),
//!   as a strict SMSC expects; anything else is answered `ESME_RQUERYFAIL`, as is
//!   a message it forgot.
//! * **Lost receipts** (the faults a gateway must recover from by asking): with
//!   [`SimConfig::lose_receipts_every`] = n, every n-th accepted message's receipt
//!   is never sent, as when the SMSC crashed with it or another bind with the same
//!   account took it; `query_sm` still knows the message, unless
//!   [`SimConfig::forget_lost`] (an SMSC that lost its store) makes it answer
//!   `ESME_RQUERYFAIL`. [`SimConfig::receipt_ids_decimal`] writes receipt ids in
//!   decimal while `submit_sm_resp` stays hex, as some SMSCs do, and
//!   [`SimConfig::first_id`] starts the id counter high, as real SMSCs' ids are.
//! * **Robustness**: reads are bounded by [`SimConfig::max_frame`]; a frame
//!   that does not decode is answered with `generic_nack` (status from
//!   [`frame::Undecodable`]) and the session goes on (except an undecodable
//!   `deliver_sm_resp`, taken as an ack by its header, and an undecodable
//!   `generic_nack`, ignored so nacks never ping-pong); a bad `command_length`
//!   gets `generic_nack ESME_RINVCMDLEN` and the connection is closed; an
//!   unknown command_id gets `generic_nack ESME_RINVCMDID`. Nothing here
//!   panics on input from the network.
//! * **Fault injection**, counted per connection over the PDUs received on it
//!   (the bind included): with [`SimConfig::drop_after`] = n, the first n are
//!   served and the next one closes the connection abruptly (no unbind, that PDU
//!   unanswered, whatever was queued for writing lost, delayed responses never
//!   sent); with [`SimConfig::silent_after`] = n, everything after the first n is
//!   read and ignored (no answers, no receipts: they go to other binds) while the
//!   connection stays open; with [`SimConfig::garbage_every`] = n, every n-th
//!   PDU is preceded by garbage written to the ESME, in turn a frame with an
//!   unknown request command_id and a random body, a response to nothing
//!   (unknown response command_id, random body), and a header with an impossible
//!   `command_length` followed by random bytes (which desynchronises the
//!   stream: the ESME is expected to nack and reconnect).
//! * **Injection on request**: [`SmscSim::send_mo`] queues a mobile-originated
//!   message, [`SmscSim::send_receipt_for_unknown_id`] a `DELIVRD` receipt for a
//!   message id never handed out (`F000000001`, ...), both to binds of a given
//!   system_id. `goniec smsc-sim --http` serves these and the counters over HTTP.
//! * **Counters**: [`SmscSim::stats`] returns a [`SimStats`] snapshot (serialisable).
//!
//! Error responses carry no body (SMPP 3.4 §4: "the body is not returned if
//! the command_status field contains a non-zero value").

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusmpp::pdus::{
    BindReceiverResp, BindTransceiverResp, BindTransmitterResp, DeliverSm, QuerySm, QuerySmResp,
    SubmitSm, SubmitSmResp,
};
use rusmpp::tlvs::{MessageDeliveryRequestTlvValue, TlvValue};
use rusmpp::types::{COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{EsmClass, InterfaceVersion, MessageState, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use goniec_connectors::smpp::frame::{self, FrameLimits, ESME_RINVCMDID, ESME_ROK, GENERIC_NACK};

/// system_id the simulator answers binds with.
pub const SIM_SYSTEM_ID: &str = "goniec-sim";
/// Most connections served at once; more are accepted and closed at once.
pub const MAX_SESSIONS: usize = 1024;

pub use goniec_connectors::smpp::status::{
    ESME_RALYBND, ESME_RBINDFAIL, ESME_RINVBNDSTS, ESME_RINVPASWD, ESME_RQUERYFAIL, ESME_RTHROTTLED,
};

/// Invalid destination address: [`SimConfig::reject_status`]'s default.
pub const ESME_RINVDSTADR: u32 = 0x0000_000B;
/// submit_sm failed: what a [`SimConfig::reject_status`] of 0 is sent as.
pub const ESME_RSUBMITFAIL: u32 = 0x0000_0045;
/// First message id number [`SmscSim::send_receipt_for_unknown_id`] uses (ids
/// `F000000001`, ...): far above anything handed out to a submit.
const UNKNOWN_ID_BASE: u64 = 0xF0_0000_0000;
/// Sequence numbers of garbage frames: far above those of the receipts.
const GARBAGE_SEQ_BASE: u32 = 0x7FFF_0000;
/// Command ids no SMPP version assigns, for garbage frames.
const GARBAGE_REQUEST_ID: u32 = 0x0000_0777;
const GARBAGE_RESPONSE_ID: u32 = 0x8000_0777;

const SUBMIT_SM_RESP: u32 = 0x8000_0004;
const QUERY_SM_RESP: u32 = 0x8000_0003;
/// Messages `query_sm` can ask about: the most recent ones; older ones are forgotten
/// (answered `ESME_RQUERYFAIL`), as an SMSC purges what it delivered long ago. Bounds
/// the simulator's memory in long bench runs (a few dozen bytes each).
pub const MAX_KNOWN: usize = 200_000;
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
    /// Every n-th accepted message (not already `UNDELIV`) ends `EXPIRED` (0 = never).
    pub expired_every: u64,
    /// Every n-th accepted message (not already `UNDELIV`/`EXPIRED`) ends
    /// `REJECTD` (0 = never).
    pub rejected_every: u64,
    /// Every n-th submit_sm that got past throttling is refused with
    /// [`Self::reject_status`] instead of an id (0 = never).
    pub reject_every: u64,
    /// The command_status of those refusals (0 is sent as `ESME_RSUBMITFAIL`).
    pub reject_status: u32,
    /// submit_sm per second over all sessions above which the answer is
    /// `ESME_RTHROTTLED` (0 = no limit).
    pub max_tps: u32,
    /// Close a connection abruptly when a PDU arrives after this many (0 = never).
    pub drop_after: u64,
    /// Ignore every PDU on a connection after this many, keeping it open (0 = never).
    pub silent_after: u64,
    /// Write garbage to the ESME before every n-th PDU of a connection (0 = never).
    pub garbage_every: u64,
    /// Never send the receipt of every n-th accepted message (0 = never): lost in a
    /// crash, or taken by another bind of the same account. `query_sm` still knows it.
    pub lose_receipts_every: u64,
    /// Forget the messages whose receipts were lost: `query_sm` answers
    /// `ESME_RQUERYFAIL` for them, as after an SMSC lost its store.
    pub forget_lost: bool,
    /// Write receipt ids (the `receipted_message_id` TLV and the text's `id:`) in
    /// decimal, while `submit_sm_resp` stays hex.
    pub receipt_ids_decimal: bool,
    /// Message ids count up from this number + 1 (0: ids 1, 2, ...).
    pub first_id: u64,
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
            expired_every: 0,
            rejected_every: 0,
            reject_every: 0,
            reject_status: ESME_RINVDSTADR,
            max_tps: 0,
            drop_after: 0,
            silent_after: 0,
            garbage_every: 0,
            lose_receipts_every: 0,
            forget_lost: false,
            receipt_ids_decimal: false,
            first_id: 0,
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
    /// submit_sm answered `ESME_RTHROTTLED` (both reasons).
    pub throttled: u64,
    /// Of those, for going over `max_tps`.
    pub throttled_tps: u64,
    /// submit_sm refused with `reject_status` (`reject_every`).
    pub submits_rejected: u64,
    /// Accepted messages given the final state `UNDELIV`.
    pub undeliverable: u64,
    /// Accepted messages given the final state `EXPIRED`.
    pub expired: u64,
    /// Accepted messages given the final state `REJECTD`.
    pub rejected: u64,
    /// Mobile-originated messages queued ([`SmscSim::send_mo`]).
    pub mo_queued: u64,
    /// Receipts for unknown ids queued ([`SmscSim::send_receipt_for_unknown_id`]).
    pub unknown_receipts_queued: u64,
    /// Connections closed by `drop_after`.
    pub faults_dropped: u64,
    /// Connections gone silent by `silent_after`.
    pub faults_silenced: u64,
    /// PDUs read and ignored on silent connections.
    pub faults_ignored_pdus: u64,
    /// Garbage writes (`garbage_every`).
    pub faults_garbage: u64,
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
    /// Receipts never sent (`lose_receipts_every`).
    pub receipts_lost: u64,
    /// query_sm answered with a state.
    pub queries: u64,
    /// query_sm answered `ESME_RQUERYFAIL` (unknown or forgotten message).
    pub queries_failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    binds: AtomicU64,
    bind_failures: AtomicU64,
    sessions: AtomicU64,
    submits: AtomicU64,
    throttled: AtomicU64,
    throttled_tps: AtomicU64,
    submits_rejected: AtomicU64,
    undeliverable: AtomicU64,
    expired: AtomicU64,
    rejected: AtomicU64,
    mo_queued: AtomicU64,
    unknown_receipts_queued: AtomicU64,
    faults_dropped: AtomicU64,
    faults_silenced: AtomicU64,
    faults_ignored_pdus: AtomicU64,
    faults_garbage: AtomicU64,
    receipts_sent: AtomicU64,
    receipts_resent: AtomicU64,
    receipts_acked: AtomicU64,
    receipts_pending: AtomicU64,
    generic_nacks: AtomicU64,
    receipts_lost: AtomicU64,
    queries: AtomicU64,
    queries_failed: AtomicU64,
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
        let cfg_max_tps = cfg.max_tps;
        let first_id = cfg.first_id;
        let inner = Arc::new(Inner {
            cfg,
            counters: Counters::default(),
            next_message: AtomicU64::new(first_id),
            known: Mutex::new(BTreeMap::new()),
            submits_seen: AtomicU64::new(0),
            past_throttle: AtomicU64::new(0),
            unknown_ids: AtomicU64::new(0),
            garbage: AtomicU64::new(0),
            bucket: Mutex::new(Bucket {
                tokens: f64::from(cfg_max_tps),
                last: Instant::now(),
            }),
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
        let (coding, bytes) = match goniec_connectors::text::encode_gsm7_unpacked(text) {
            Some(b) => (0u8, b),
            None => (8u8, goniec_connectors::text::encode_ucs2(text)),
        };
        let text = OctetString::from_slice(&bytes).map_err(|e| format!("text: {e:?}"))?;
        let (dest_ton, dest_npi) = match goniec_connectors::smpp::connector::sender_ton_npi(to) {
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
        bump(&self.inner.counters.mo_queued);
        self.inner.queue_now(mo);
        Ok(())
    }

    /// A `DELIVRD` receipt for a message id this simulator never handed out, to a
    /// receiver or transceiver bound as `system_id` (resent until acknowledged like
    /// any receipt). Returns the id, in the submit_sm_resp form (`F000000001`, ...);
    /// the `receipted_message_id` TLV carries it lowercase without leading zeros,
    /// like real receipts.
    pub fn send_receipt_for_unknown_id(&self, system_id: &str) -> String {
        let number = UNKNOWN_ID_BASE + self.inner.unknown_ids.fetch_add(1, Ordering::Relaxed) + 1;
        let message_id = format!("{number:010X}");
        let sm = SubmitSm::builder()
            .source_addr_ton(Ton::Alphanumeric)
            .source_addr(COctetString::from_str("Goniec").unwrap_or_default())
            .dest_addr_ton(Ton::International)
            .dest_addr_npi(Npi::Isdn)
            .destination_addr(COctetString::from_str("48600000000").unwrap_or_default())
            .short_message(OctetString::from_slice(b"never submitted").unwrap_or_default())
            .build();
        let receipt = receipt_for(
            &sm,
            &message_id,
            number,
            MessageState::Delivered,
            system_id.to_string(),
            u64::MAX,
            Duration::ZERO,
            self.inner.cfg.receipt_ids_decimal,
        );
        bump(&self.inner.counters.unknown_receipts_queued);
        self.inner.queue_now(receipt);
        message_id
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
            throttled_tps: get(&c.throttled_tps),
            submits_rejected: get(&c.submits_rejected),
            undeliverable: get(&c.undeliverable),
            expired: get(&c.expired),
            rejected: get(&c.rejected),
            mo_queued: get(&c.mo_queued),
            unknown_receipts_queued: get(&c.unknown_receipts_queued),
            faults_dropped: get(&c.faults_dropped),
            faults_silenced: get(&c.faults_silenced),
            faults_ignored_pdus: get(&c.faults_ignored_pdus),
            faults_garbage: get(&c.faults_garbage),
            receipts_sent: get(&c.receipts_sent),
            receipts_resent: get(&c.receipts_resent),
            receipts_acked: get(&c.receipts_acked),
            receipts_pending: get(&c.receipts_pending),
            generic_nacks: get(&c.generic_nacks),
            receipts_lost: get(&c.receipts_lost),
            queries: get(&c.queries),
            queries_failed: get(&c.queries_failed),
        }
    }
}

struct Inner {
    cfg: SimConfig,
    counters: Counters,
    /// Last message id handed out.
    next_message: AtomicU64,
    /// What `query_sm` can tell, by message number: the most recent [`MAX_KNOWN`].
    known: Mutex<BTreeMap<u64, Known>>,
    /// submit_sm seen (for throttle_every).
    submits_seen: AtomicU64,
    /// submit_sm that got past throttling (for reject_every).
    past_throttle: AtomicU64,
    /// Ids used by send_receipt_for_unknown_id.
    unknown_ids: AtomicU64,
    /// Garbage writes so far (picks the kind, seeds the bytes).
    garbage: AtomicU64,
    /// max_tps token bucket.
    bucket: Mutex<Bucket>,
    next_session: AtomicU64,
    hub: Mutex<Hub>,
    /// Wakes the receipt dispatcher.
    wake: Notify,
}

/// A message as `query_sm` sees it.
#[derive(Debug, Clone, Copy)]
struct Known {
    /// Its final state, reached at `final_at` (its receipt's due time); `ENROUTE` before.
    state: MessageState,
    final_at: Instant,
    final_wall: SystemTime,
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

/// Tokens for `max_tps`: refilled at `max_tps` per second, at most `max_tps`.
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Inner {
    fn hub(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a token for one submit_sm; false when over `max_tps`.
    fn take_tps_token(&self) -> bool {
        let rate = self.cfg.max_tps;
        if rate == 0 {
            return true;
        }
        let rate = f64::from(rate);
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.saturating_duration_since(b.last).as_secs_f64() * rate;
        b.tokens = (b.tokens + refill).min(rate.max(1.0));
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Note an accepted message for `query_sm`, forgetting the oldest beyond [`MAX_KNOWN`].
    fn remember(&self, number: u64, state: MessageState) {
        let now = Instant::now();
        let known = Known {
            state,
            final_at: now + self.cfg.receipt_delay,
            final_wall: SystemTime::now() + self.cfg.receipt_delay,
        };
        let mut k = self.known.lock().unwrap_or_else(|e| e.into_inner());
        k.insert(number, known);
        while k.len() > MAX_KNOWN {
            k.pop_first();
        }
    }

    /// What `query_sm` answers for `id`: `Err` with ESME_RQUERYFAIL for an id not
    /// written as handed out, or for a message it does not know.
    fn query(&self, id: &str) -> Result<QuerySmResp, u32> {
        let number = u64::from_str_radix(id, 16).map_err(|_| ESME_RQUERYFAIL)?;
        if id != format!("{number:010X}") {
            return Err(ESME_RQUERYFAIL);
        }
        let known = *self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&number)
            .ok_or(ESME_RQUERYFAIL)?;
        let message_id = COctetString::from_str(id).map_err(|_| ESME_RQUERYFAIL)?;
        let resp = if Instant::now() < known.final_at {
            QuerySmResp::builder()
                .message_id(message_id)
                .message_state(MessageState::Enroute)
                .build()
        } else {
            let date = format!("{}000+", yymmddhhmmss(known.final_wall));
            let error_code = match known.state {
                MessageState::Delivered => 0,
                MessageState::Rejected => 2,
                _ => 1,
            };
            QuerySmResp::builder()
                .message_id(message_id)
                .final_date(EmptyOrFullCOctetString::from_string(date).unwrap_or_default())
                .message_state(known.state)
                .error_code(error_code)
                .build()
        };
        Ok(resp)
    }

    /// Queue a receipt or MO message for sending now (no receipt_delay).
    fn queue_now(&self, receipt: Receipt) {
        bump(&self.counters.receipts_pending);
        self.hub()
            .ready
            .entry(receipt.system_id.clone())
            .or_default()
            .push_back(receipt);
        self.wake.notify_one();
    }

    /// One garbage write: the kinds in turn, random bytes (SplitMix64).
    fn garbage(&self) -> Vec<u8> {
        let n = self.garbage.fetch_add(1, Ordering::Relaxed);
        let mut state = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos().into()),
        );
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let seq = GARBAGE_SEQ_BASE | (n as u32 & 0xFFFF);
        let (id, declared, extra) = match n % 3 {
            // A request nobody defined, with a random body.
            0 => (GARBAGE_REQUEST_ID, None, next() % 64),
            // A response to nothing (unknown command_id), with a random body.
            1 => (GARBAGE_RESPONSE_ID, None, next() % 64),
            // A command_length no frame can have, then random bytes.
            _ => {
                let len: u32 = if next() % 2 == 0 { 8 } else { 0xFFFF_FFF0 };
                (GARBAGE_REQUEST_ID, Some(len), 16 + next() % 32)
            }
        };
        let mut f = frame::header_only(id, ESME_ROK, seq);
        f.extend((0..extra).map(|_| next() as u8));
        let len = declared.unwrap_or(f.len() as u32);
        f[..4].copy_from_slice(&len.to_be_bytes());
        f
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
        received: 0,
        silent: false,
    };
    let end = tokio::select! {
        _ = shutdown.cancelled() => End::Close,
        end = session.read_loop(rd) => end,
    };
    drop(session);
    inner.unregister(id);
    if end == End::Abrupt {
        // Whatever is queued is lost; dropping both halves closes the socket
        // (with a reset when unread input is left).
        writer_task.abort();
        let _ = writer_task.await;
    } else {
        let _ = tx.try_send(Out::Close);
        drop(tx);
        if tokio::time::timeout(FLUSH_TIMEOUT, &mut writer_task)
            .await
            .is_err()
        {
            writer_task.abort();
        }
    }
    inner.counters.sessions.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(session = id, "SMSC simulator: connection closed");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// How a session's read loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Flush what is queued, then close.
    Close,
    /// Close at once (`drop_after`).
    Abrupt,
}

/// What fault injection does with a received PDU.
enum Fault {
    /// Handle it.
    None,
    /// Write garbage, then handle it.
    Garbage,
    /// Read and ignore it (silent connection).
    Ignore,
    /// Close the connection abruptly, unanswered.
    Drop,
}

struct Session {
    inner: Arc<Inner>,
    id: u64,
    tx: mpsc::Sender<Out>,
    bound: Option<(BindMode, String)>,
    responders: Arc<Semaphore>,
    /// PDUs received on this connection.
    received: u64,
    /// `silent_after` passed: everything is read and ignored.
    silent: bool,
}

impl Session {
    async fn read_loop(&mut self, mut rd: OwnedReadHalf) -> End {
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
                    Ok(Some(f)) => match self.fault() {
                        Fault::None => {
                            if self.on_frame(&f).await == Flow::Close {
                                return End::Close;
                            }
                        }
                        Fault::Garbage => {
                            let garbage = self.inner.garbage();
                            bump(&self.inner.counters.faults_garbage);
                            tracing::debug!(session = self.id, "SMSC simulator: writing garbage");
                            if self.send(garbage).await == Flow::Close
                                || self.on_frame(&f).await == Flow::Close
                            {
                                return End::Close;
                            }
                        }
                        Fault::Ignore => {}
                        Fault::Drop => return End::Abrupt,
                    },
                    Ok(None) => break,
                    Err(_) if self.silent => {
                        // Cannot be framed, and nobody answers anyway.
                        buf.clear();
                        break;
                    }
                    Err(err) => {
                        tracing::debug!(session = self.id, %err, "closing: unframeable input");
                        bump(&self.inner.counters.generic_nacks);
                        let _ = self.send(err.generic_nack()).await;
                        return End::Close;
                    }
                }
            }
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return End::Close,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Counts a received PDU and says which fault, if any, it meets.
    fn fault(&mut self) -> Fault {
        let cfg = &self.inner.cfg;
        let c = &self.inner.counters;
        self.received = self.received.saturating_add(1);
        let n = self.received;
        if self.silent {
            bump(&c.faults_ignored_pdus);
            return Fault::Ignore;
        }
        if cfg.drop_after > 0 && n > cfg.drop_after {
            tracing::info!(
                session = self.id,
                pdus = n - 1,
                "SMSC simulator: dropping the connection (drop_after)"
            );
            bump(&c.faults_dropped);
            return Fault::Drop;
        }
        if cfg.silent_after > 0 && n > cfg.silent_after {
            tracing::info!(
                session = self.id,
                pdus = n - 1,
                "SMSC simulator: going silent (silent_after)"
            );
            self.silent = true;
            bump(&c.faults_silenced);
            bump(&c.faults_ignored_pdus);
            // Its receipts in flight, and the ones to come, go to other binds.
            self.inner.unregister(self.id);
            return Fault::Ignore;
        }
        if every(n, cfg.garbage_every) {
            return Fault::Garbage;
        }
        Fault::None
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
            Some(Pdu::QuerySm(q)) => match &self.bound {
                Some((mode, _)) if mode.can_submit() => self.on_query(seq, q).await,
                _ => {
                    self.send(frame::header_only(QUERY_SM_RESP, ESME_RINVBNDSTS, seq))
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
            // Requests we do not implement (cancel_sm, data_sm, ...), or that
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

    async fn on_query(&self, seq: u32, q: &QuerySm) -> Flow {
        match self.inner.query(q.message_id.as_str()) {
            Ok(resp) => {
                bump(&self.inner.counters.queries);
                self.send(frame::encode(&Command::new(
                    CommandStatus::EsmeRok,
                    seq,
                    resp,
                )))
                .await
            }
            Err(status) => {
                bump(&self.inner.counters.queries_failed);
                self.send(frame::header_only(QUERY_SM_RESP, status, seq))
                    .await
            }
        }
    }

    async fn on_submit(&self, seq: u32, sm: &SubmitSm, system_id: String) -> Flow {
        let cfg = &self.inner.cfg;
        let c = &self.inner.counters;
        let n = self.inner.submits_seen.fetch_add(1, Ordering::Relaxed) + 1;
        let resp = if !self.inner.take_tps_token() {
            bump(&c.throttled);
            bump(&c.throttled_tps);
            frame::header_only(SUBMIT_SM_RESP, ESME_RTHROTTLED, seq)
        } else if every(n, cfg.throttle_every) {
            bump(&c.throttled);
            frame::header_only(SUBMIT_SM_RESP, ESME_RTHROTTLED, seq)
        } else if every(
            self.inner.past_throttle.fetch_add(1, Ordering::Relaxed) + 1,
            cfg.reject_every,
        ) {
            bump(&c.submits_rejected);
            let status = match cfg.reject_status {
                ESME_ROK => ESME_RSUBMITFAIL,
                s => s,
            };
            frame::header_only(SUBMIT_SM_RESP, status, seq)
        } else {
            let number = self.inner.next_message.fetch_add(1, Ordering::Relaxed) + 1;
            bump(&c.submits);
            let message_id = format!("{number:010X}");
            let state = if every(number, cfg.undeliverable_every) {
                bump(&c.undeliverable);
                MessageState::Undeliverable
            } else if every(number, cfg.expired_every) {
                bump(&c.expired);
                MessageState::Expired
            } else if every(number, cfg.rejected_every) {
                bump(&c.rejected);
                MessageState::Rejected
            } else {
                MessageState::Delivered
            };
            // registered_delivery bits 0-1: 1 = receipt on any outcome,
            // 2 = on failure only (3 is reserved: treated as 1).
            let wanted = match u8::from(sm.registered_delivery) & 0x03 {
                1 | 3 => true,
                2 => state != MessageState::Delivered,
                _ => false,
            };
            let lost = wanted && every(number - cfg.first_id, cfg.lose_receipts_every);
            if !(lost && cfg.forget_lost) {
                self.inner.remember(number, state);
            }
            if lost {
                bump(&c.receipts_lost);
                tracing::debug!(
                    message_id,
                    "SMSC simulator: losing this receipt (lose_receipts_every)"
                );
            } else if wanted {
                self.inner.schedule(receipt_for(
                    sm,
                    &message_id,
                    number,
                    state,
                    system_id,
                    self.id,
                    cfg.receipt_delay,
                    cfg.receipt_ids_decimal,
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

/// Every n-th (`k` = 0: never).
fn every(n: u64, k: u64) -> bool {
    k > 0 && n.is_multiple_of(k)
}

/// A receipt ending in `state` (Delivered, Undeliverable, Expired or Rejected).
#[allow(clippy::too_many_arguments)]
fn receipt_for(
    sm: &SubmitSm,
    message_id: &str,
    number: u64,
    state: MessageState,
    system_id: String,
    origin: u64,
    receipt_delay: Duration,
    decimal_ids: bool,
) -> Receipt {
    let now = SystemTime::now();
    let (stat, dlvrd, err) = match state {
        MessageState::Delivered => ("DELIVRD", "001", "000"),
        MessageState::Expired => ("EXPIRED", "000", "000"),
        MessageState::Rejected => ("REJECTD", "000", "002"),
        _ => ("UNDELIV", "000", "001"),
    };
    let decimal = number.to_string();
    let text_id = if decimal_ids { &decimal } else { message_id };
    let text = format!(
        "id:{text_id} sub:001 dlvrd:{dlvrd} submit date:{} done date:{} stat:{stat} err:{err} text:{}",
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
        // Deliberately not the submit_sm_resp form: lowercase, no leading zeros
        // (or another base altogether).
        receipted_id: COctetString::from_str(&if decimal_ids {
            decimal
        } else {
            format!("{number:x}")
        })
        .unwrap_or_default(),
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

/// `YYMMDDhhmmss` in UTC.
fn yymmddhhmmss(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("{}{:02}", yymmddhhmm(t), secs % 60)
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
    use goniec_connectors::smpp::frame::HEADER_LEN;
    use goniec_connectors::smpp::frame::{split_frame, ESME_RINVCMDLEN};
    use goniec_connectors::smpp::receipt::{self, normalize_id, Stat};
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

        /// The next frame, undecoded (garbage included).
        async fn recv_frame(&mut self) -> Vec<u8> {
            let limits = FrameLimits::default();
            loop {
                if let Some(f) = split_frame(&mut self.buf, &limits).unwrap() {
                    return f;
                }
                let mut chunk = [0u8; 4096];
                let n = timeout(WAIT, self.stream.read(&mut chunk))
                    .await
                    .expect("a frame in time")
                    .unwrap();
                assert!(n > 0, "connection closed");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }

        /// At least `n` raw bytes, unframed.
        async fn recv_bytes(&mut self, n: usize) -> Vec<u8> {
            while self.buf.len() < n {
                let mut chunk = [0u8; 4096];
                let got = timeout(WAIT, self.stream.read(&mut chunk))
                    .await
                    .expect("bytes in time")
                    .unwrap();
                assert!(got > 0, "connection closed");
                self.buf.extend_from_slice(&chunk[..got]);
            }
            std::mem::take(&mut self.buf)
        }

        /// True when nothing arrives within `wait` and the connection stays open.
        async fn quiet_and_open(&mut self, wait: Duration) -> bool {
            let mut chunk = [0u8; 256];
            self.buf.is_empty() && timeout(wait, self.stream.read(&mut chunk)).await.is_err()
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

    /// Ask about `id` with query_sm; the answer's status and body.
    async fn query(c: &mut Client, id: &str) -> (CommandStatus, Option<QuerySmResp>) {
        let seq = c
            .send(
                QuerySm::builder()
                    .message_id(cstr(id))
                    .source_addr(cstr("Goniec"))
                    .build(),
            )
            .await;
        let resp = c.recv_not_deliver().await;
        assert_eq!(resp.sequence_number(), seq);
        assert_eq!(resp.id(), CommandId::QuerySmResp);
        let body = match resp.pdu() {
            Some(Pdu::QuerySmResp(r)) => Some(r.clone()),
            _ => None,
        };
        (resp.status(), body)
    }

    #[tokio::test]
    async fn query_sm_answers_with_the_state_it_knows() {
        let cfg = SimConfig {
            receipt_delay: Duration::from_millis(300),
            undeliverable_every: 2,
            ..SimConfig::default()
        };
        let (sim, token) = sim(cfg).await;
        let mut c = Client::bind(&sim, Kind::Trx).await;
        let first = c.submit_ok("one", true).await;
        let second = c.submit_ok("two", true).await;
        // Before its receipt is due the message is still on its way.
        let (st, r) = query(&mut c, &first).await;
        assert_eq!(st, CommandStatus::EsmeRok);
        let r = r.unwrap();
        assert_eq!(r.message_state, MessageState::Enroute);
        assert!(r.final_date.as_str().is_empty());
        assert_eq!(r.message_id.as_str(), first);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let (_, r) = query(&mut c, &first).await;
        let r = r.unwrap();
        assert_eq!(
            (r.message_state, r.error_code),
            (MessageState::Delivered, 0)
        );
        assert_eq!(r.final_date.as_str().len(), 16, "{:?}", r.final_date);
        assert!(r.final_date.as_str().ends_with("000+"));
        let (_, r) = query(&mut c, &second).await;
        let r = r.unwrap();
        assert_eq!(
            (r.message_state, r.error_code),
            (MessageState::Undeliverable, 1)
        );
        // Only the id as handed out is known: not the normalised form, not others.
        for id in [normalize_id(&first), "00000000FF".to_string(), "zz".into()] {
            let (st, r) = query(&mut c, &id).await;
            assert_eq!(
                (u32::from(st), r.is_none()),
                (ESME_RQUERYFAIL, true),
                "{id}"
            );
        }
        // A receiver may not ask.
        let mut rx = Client::bind(&sim, Kind::Rx).await;
        let (st, _) = query(&mut rx, &first).await;
        assert_eq!(u32::from(st), ESME_RINVBNDSTS);
        let s = sim.stats();
        assert_eq!((s.queries, s.queries_failed), (3, 3), "{s:?}");
        token.cancel();
    }

    #[tokio::test]
    async fn lost_receipts_are_never_sent_and_known_unless_forgotten() {
        for forget in [false, true] {
            // Receipts come after the four submits: submit_ok skips deliver_sm.
            let cfg = SimConfig {
                lose_receipts_every: 2,
                forget_lost: forget,
                receipt_delay: Duration::from_millis(200),
                ..SimConfig::default()
            };
            let (sim, token) = sim(cfg).await;
            let mut c = Client::bind(&sim, Kind::Trx).await;
            let mut ids = Vec::new();
            for i in 0..4 {
                ids.push(c.submit_ok(&format!("m{i}"), true).await);
            }
            let mut receipted = Vec::new();
            for _ in 0..2 {
                let (seq, d) = c.recv_receipt().await;
                receipted.push(receipted_id(&d).unwrap());
                c.ack(seq).await;
            }
            assert!(c.recv_within(Duration::from_millis(150)).await.is_none());
            receipted.sort();
            assert_eq!(receipted, [normalize_id(&ids[0]), normalize_id(&ids[2])]);
            let s = sim.stats();
            assert_eq!((s.receipts_lost, s.receipts_pending), (2, 0), "{s:?}");
            let (st, r) = query(&mut c, &ids[1]).await;
            if forget {
                assert_eq!(u32::from(st), ESME_RQUERYFAIL);
            } else {
                assert_eq!(r.unwrap().message_state, MessageState::Delivered);
            }
            // The ones whose receipts went out are known either way.
            let (_, r) = query(&mut c, &ids[0]).await;
            assert_eq!(r.unwrap().message_state, MessageState::Delivered);
            token.cancel();
        }
    }

    #[tokio::test]
    async fn receipt_ids_can_be_decimal_and_ids_start_high() {
        let cfg = SimConfig {
            receipt_ids_decimal: true,
            first_id: 0x10_0000_0000,
            ..quick()
        };
        let (sim, token) = sim(cfg).await;
        let mut c = Client::bind(&sim, Kind::Trx).await;
        let id = c.submit_ok("hex then decimal", true).await;
        assert_eq!(id, "1000000001");
        let (seq, d) = c.recv_receipt().await;
        let decimal = (0x10_0000_0001u64).to_string();
        assert_eq!(receipted_id(&d).as_deref(), Some(decimal.as_str()));
        let parsed = receipt::parse(d.short_message().as_ref()).unwrap();
        assert_eq!(parsed.id.as_deref(), Some(decimal.as_str()));
        c.ack(seq).await;
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
        c.send_raw(&frame::header_only(0x0000_0008, 0, 9)).await; // cancel_sm, no body
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
        use goniec_connectors::smpp::connector::read_receipt;
        use goniec_connectors::smpp::session::InboundPdu;
        use goniec_connectors::ReceiptState;
        let sm = SubmitSm::builder()
            .source_addr(cstr("Goniec"))
            .destination_addr(cstr("48600100200"))
            .short_message(OctetString::from_slice(b"Hello").unwrap())
            .build();
        for (message_state, want) in [
            (MessageState::Delivered, ReceiptState::Delivered),
            (MessageState::Undeliverable, ReceiptState::Undeliverable),
            (MessageState::Expired, ReceiptState::Expired),
            (MessageState::Rejected, ReceiptState::Rejected),
        ] {
            let failed = message_state != MessageState::Delivered;
            let r = receipt_for(
                &sm,
                "00000001A3",
                0x1a3,
                message_state,
                "goniec".into(),
                1,
                Duration::ZERO,
                false,
            );
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
                assert_eq!(error.is_some(), failed, "{error:?}");
            }
        }
    }

    /// A reply from the simulator reads back as sender, destination and text.
    #[tokio::test]
    async fn mobile_originated_replies_reach_a_receiver() {
        use goniec_connectors::smpp::connector::read_mo;
        use goniec_connectors::smpp::session::InboundPdu;
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
        let s = wait_stats(&sim, "ack", |s| s.receipts_acked == 1).await;
        assert_eq!((s.mo_queued, s.receipts_pending), (1, 0));
        token.cancel();
    }

    #[tokio::test]
    async fn final_states_mix_by_message_number() {
        let cfg = SimConfig {
            undeliverable_every: 5,
            expired_every: 2,
            rejected_every: 3,
            ..quick()
        };
        let (sim, token) = sim(cfg).await;
        let mut c = Client::bind(&sim, Kind::Trx).await;
        let mut ids = Vec::new();
        for i in 1..=6 {
            ids.push(normalize_id(&c.submit_ok(&format!("m{i}"), true).await));
        }
        let mut got = HashMap::new();
        for _ in 0..6 {
            let (seq, d) = c.recv_receipt().await;
            let parsed = receipt::parse(d.short_message().as_ref()).unwrap();
            let id = normalize_id(&parsed.id.unwrap());
            assert_eq!(receipted_id(&d).as_deref(), Some(id.as_str()));
            got.insert(id, (parsed.stat, message_state(&d), parsed.dlvrd));
            c.ack(seq).await;
        }
        let delivered = (
            Some(Stat::Delivered),
            Some(MessageState::Delivered),
            Some(1),
        );
        let expired = (Some(Stat::Expired), Some(MessageState::Expired), Some(0));
        let rejected = (Some(Stat::Rejected), Some(MessageState::Rejected), Some(0));
        let undeliv = (
            Some(Stat::Undeliverable),
            Some(MessageState::Undeliverable),
            Some(0),
        );
        // Message numbers 1..=6: undeliverable first, then expired, then rejected.
        let want = [delivered, expired, rejected, expired, undeliv, expired];
        for (id, want) in ids.iter().zip(want) {
            assert_eq!(got[id], want, "{id}");
        }
        let s = wait_stats(&sim, "acks", |s| s.receipts_acked == 6).await;
        assert_eq!((s.undeliverable, s.expired, s.rejected), (1, 3, 1));
        token.cancel();
    }

    #[tokio::test]
    async fn every_nth_submit_is_rejected_with_the_chosen_status() {
        let cfg = SimConfig {
            reject_every: 3,
            reject_status: ESME_RINVDSTADR,
            throttle_every: 4,
            ..quick()
        };
        let (sim, token) = sim(cfg).await;
        let mut c = Client::bind(&sim, Kind::Trx).await;
        // submit_sm 1..=7; the 4th is throttled and does not count toward
        // reject_every: the 3rd and the 7th (6th past throttling) are refused.
        let mut statuses = Vec::new();
        for i in 1..=7 {
            let seq = c.submit(&format!("m{i}"), true).await;
            let f = loop {
                let f = c.recv_frame().await;
                if frame::header(&f).unwrap().command_id != 0x0000_0005 {
                    break f;
                }
            };
            let h = frame::header(&f).unwrap();
            assert_eq!((h.command_id, h.sequence_number), (SUBMIT_SM_RESP, seq));
            if h.command_status != ESME_ROK {
                assert_eq!(f.len(), HEADER_LEN, "an error response has no body");
            }
            statuses.push(h.command_status);
        }
        assert_eq!(
            statuses,
            [
                ESME_ROK,
                ESME_ROK,
                ESME_RINVDSTADR,
                ESME_RTHROTTLED,
                ESME_ROK,
                ESME_ROK,
                ESME_RINVDSTADR
            ]
        );
        let s = sim.stats();
        assert_eq!((s.submits, s.submits_rejected, s.throttled), (4, 2, 1));
        token.cancel();

        // A status of 0 cannot refuse anything: it goes as ESME_RSUBMITFAIL.
        let cfg = SimConfig {
            reject_every: 1,
            reject_status: 0,
            ..quick()
        };
        let (sim2, token) = super::tests::sim(cfg).await;
        let mut c = Client::bind(&sim2, Kind::Tx).await;
        c.submit("x", true).await;
        assert_eq!(u32::from(c.recv().await.status()), ESME_RSUBMITFAIL);
        token.cancel();
    }

    #[tokio::test]
    async fn max_tps_throttles_across_sessions() {
        let cfg = SimConfig {
            max_tps: 5,
            ..quick()
        };
        let (sim, token) = sim(cfg).await;
        let mut a = Client::bind(&sim, Kind::Tx).await;
        let mut b = Client::bind(&sim, Kind::Tx).await;
        for i in 0..4 {
            a.submit(&format!("a{i}"), false).await;
            b.submit(&format!("b{i}"), false).await;
        }
        let mut ok = 0;
        for c in [&mut a, &mut b] {
            for _ in 0..4 {
                match u32::from(c.recv().await.status()) {
                    ESME_ROK => ok += 1,
                    st => assert_eq!(st, ESME_RTHROTTLED),
                }
            }
        }
        // A full bucket holds 5; at most one more token refills meanwhile.
        assert!((5..=6).contains(&ok), "{ok} accepted");
        let s = sim.stats();
        assert_eq!(
            (s.submits, s.throttled, s.throttled_tps),
            (ok, 8 - ok, 8 - ok)
        );
        // 5 per second: one token every 200 ms.
        tokio::time::sleep(Duration::from_millis(450)).await;
        a.submit_ok("later", false).await;
        b.submit_ok("later", false).await;
        token.cancel();
    }

    #[tokio::test]
    async fn drop_after_closes_the_connection_abruptly() {
        let cfg = SimConfig {
            drop_after: 3,
            ..quick()
        };
        let (sim, token) = sim(cfg).await;
        let mut c = Client::bind(&sim, Kind::Trx).await; // PDU 1
        c.enquire_link_ok().await; // 2
        c.submit_ok("accepted", false).await; // 3
        let started = Instant::now();
        c.submit("never answered", false).await; // 4: dropped
        assert!(c.recv_within(WAIT).await.is_none(), "no answer, no unbind");
        assert!(started.elapsed() < WAIT / 2, "closed, not just silent");
        let s = wait_stats(&sim, "session gone", |s| s.sessions == 0).await;
        assert_eq!((s.faults_dropped, s.submits), (1, 1));
        // Counted per connection: a new one is served again.
        let mut c = Client::bind(&sim, Kind::Trx).await;
        c.enquire_link_ok().await;
        c.submit_ok("again", false).await;
        token.cancel();
    }

    #[tokio::test]
    async fn silent_after_stops_answering_and_keeps_the_connection() {
        let cfg = SimConfig {
            silent_after: 3,
            ..quick()
        };
        let (sim, token) = sim(cfg).await;
        let mut c = Client::bind(&sim, Kind::Trx).await; // PDU 1
        let id = c.submit_ok("receipt in flight", true).await; // 2
        let (_, first) = c.recv_receipt().await; // not acknowledged
        assert_eq!(receipted_id(&first), Some(normalize_id(&id)));
        c.enquire_link_ok().await; // 3
        c.send(Pdu::EnquireLink).await; // 4: ignored from here on
        c.submit("ignored", true).await;
        // Even what cannot be framed gets no answer and does not close it.
        c.send_raw(&[0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 99])
            .await;
        assert!(c.quiet_and_open(Duration::from_millis(200)).await);
        // The receipt it held goes to another bind.
        let mut rx = Client::bind(&sim, Kind::Rx).await;
        let (seq, d) = rx.recv_receipt().await;
        assert_eq!(receipted_id(&d), Some(normalize_id(&id)));
        rx.ack(seq).await;
        let s = wait_stats(&sim, "ack", |s| s.receipts_acked == 1).await;
        assert_eq!(
            (
                s.faults_silenced,
                s.faults_ignored_pdus,
                s.submits,
                s.sessions
            ),
            (1, 2, 1, 2)
        );
        assert!(c.quiet_and_open(Duration::from_millis(50)).await);
        token.cancel();
    }

    #[tokio::test]
    async fn garbage_every_writes_each_kind_of_garbage() {
        let cfg = SimConfig {
            garbage_every: 2,
            ..quick()
        };
        let (sim, token) = sim(cfg).await;
        let mut c = Client::bind(&sim, Kind::Trx).await; // PDU 1
        let mut kinds = Vec::new();
        for _ in 0..2 {
            // PDU 2k: garbage first, then the answer.
            let seq = c.send(Pdu::EnquireLink).await;
            let g = c.recv_frame().await;
            let h = frame::header(&g).unwrap();
            assert!(h.sequence_number >= GARBAGE_SEQ_BASE, "{h:?}");
            kinds.push(h.command_id);
            let resp = frame::decode(&c.recv_frame().await).unwrap();
            assert_eq!(
                (resp.id(), resp.sequence_number()),
                (CommandId::EnquireLinkResp, seq)
            );
            c.enquire_link_ok().await; // PDU 2k+1: clean
        }
        assert_eq!(kinds, [GARBAGE_REQUEST_ID, GARBAGE_RESPONSE_ID]);
        // The third kind: a command_length no frame can have.
        c.send(Pdu::EnquireLink).await;
        let bytes = c.recv_bytes(HEADER_LEN).await;
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap());
        assert!(!(16..=frame::DEFAULT_MAX_LEN).contains(&len), "{len:#x}");
        assert!(split_frame(&mut bytes.clone(), &FrameLimits::default()).is_err());
        assert_eq!(sim.stats().faults_garbage, 3);
        // The simulator takes the ESME's nack for the garbage in its stride.
        c.send_raw(&frame::generic_nack(GARBAGE_SEQ_BASE, ESME_RINVCMDID))
            .await;
        c.send_raw(&frame::encode(&Command::new(
            CommandStatus::EsmeRok,
            500,
            Pdu::EnquireLink,
        )))
        .await;
        // ... and still answers (the garbage desynchronised only the ESME's side).
        let want = frame::encode(&Command::new(
            CommandStatus::EsmeRok,
            500,
            Pdu::EnquireLinkResp,
        ));
        let mut all = bytes;
        while !all.ends_with(&want) {
            all.extend(c.recv_bytes(1).await);
        }
        assert_eq!(sim.stats().sessions, 1);
        token.cancel();
    }

    #[tokio::test]
    async fn receipts_for_unknown_ids_reach_a_receiver() {
        let (sim, token) = sim(quick()).await;
        let mut c = Client::bind(&sim, Kind::Rx).await;
        let id = sim.send_receipt_for_unknown_id("goniec");
        assert_eq!(id, "F000000001");
        assert_eq!(sim.send_receipt_for_unknown_id("goniec"), "F000000002");
        for want in ["f000000001", "f000000002"] {
            let (seq, d) = c.recv_receipt().await;
            assert_eq!(u8::from(d.esm_class), 0x04);
            assert_eq!(receipted_id(&d).as_deref(), Some(want));
            let parsed = receipt::parse(d.short_message().as_ref()).unwrap();
            assert_eq!(parsed.stat, Some(Stat::Delivered));
            assert_eq!(normalize_id(&parsed.id.unwrap()), want);
            c.ack(seq).await;
        }
        let s = wait_stats(&sim, "acks", |s| s.receipts_acked == 2).await;
        assert_eq!(
            (s.unknown_receipts_queued, s.receipts_pending, s.submits),
            (2, 0, 0)
        );
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
    use goniec_connectors::test_rng::TestRng as XorShift;

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
